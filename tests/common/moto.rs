//! A real S3+SQS-compatible server for integration tests: moto, from PyPI,
//! installed by `make tools` into `.tools/venv`. This module installs
//! nothing; it finds `moto_server`, starts it on a free loopback port, waits
//! until it answers and kills it when dropped (and, through a pipe watchdog,
//! when the test process dies without dropping it).
//!
//! Moto delivers real bucket notifications: a put under a configured prefix
//! puts an S3 event message on the configured queue, keys urlencoded as AWS
//! does, and configuring notifications sends an `s3:TestEvent` first.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_s3::types::{
    Event, FilterRule, FilterRuleName, NotificationConfiguration, NotificationConfigurationFilter,
    QueueConfiguration, S3KeyFilter,
};
use aws_sdk_sqs::types::QueueAttributeName;

pub const REGION: &str = "us-east-1";
pub const ACCESS_KEY: &str = "testing";

/// A running moto server. Dropping it stops the server.
pub struct MotoServer {
    child: Child,
    /// Closing it tells the watchdog shell to kill moto.
    watchdog: Option<ChildStdin>,
    port: u16,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

/// An events queue and the dead-letter queue its redrive policy names.
#[derive(Debug, Clone)]
pub struct QueueWithDlq {
    pub url: String,
    pub arn: String,
    pub dlq_url: String,
    pub dlq_arn: String,
}

/// `moto_server` in `.tools/venv/bin`, looked for from the crate root up (a
/// git worktree or a nested crate finds the checkout's venv).
pub fn moto_server_path() -> PathBuf {
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in start.ancestors() {
        let candidate = dir.join(".tools/venv/bin/moto_server");
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "moto_server not found in .tools/venv/bin/ above {}: run `make tools` \
         (it installs tests/requirements.txt into .tools/venv)",
        start.display()
    );
}

impl MotoServer {
    /// Starts a fresh server; panics with what went wrong if it cannot.
    pub fn start() -> MotoServer {
        let bin = moto_server_path();
        let mut last_err = String::new();
        for _ in 0..3 {
            match Self::try_start(&bin) {
                Ok(server) => return server,
                Err(e) => last_err = e,
            }
        }
        panic!("moto server did not start: {last_err}");
    }

    fn try_start(bin: &Path) -> Result<MotoServer, String> {
        let port = free_port();
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).map_err(|e| e.to_string())?;
        // The shell starts moto, then blocks reading stdin; when the pipe
        // closes (drop, or this process dying) it kills moto.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(r#""$0" -H 127.0.0.1 -p "$1" & pid=$!; cat >/dev/null; kill $pid 2>/dev/null; wait $pid"#)
            .arg(bin)
            .arg(port.to_string())
            .stdin(Stdio::piped())
            .stdout(log_file.try_clone().map_err(|e| e.to_string())?)
            .stderr(log_file)
            .spawn()
            .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
        let watchdog = child.stdin.take();
        let mut server = MotoServer {
            child,
            watchdog,
            port,
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if server.ready() {
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(format!("moto exited ({status}): {}", server.log_text()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no answer on port {port} within 60 s: {}",
                    server.log_text()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn ready(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let req = format!(
            "GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            self.port
        );
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut head = [0u8; 12];
        s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Environment for a process that talks to this server through the
    /// default credential chain: dummy credentials, region, endpoint, path
    /// style, and no profile files or instance metadata.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", ACCESS_KEY.into()),
            ("AWS_REGION", REGION.into()),
            ("AWS_DEFAULT_REGION", REGION.into()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
            ("AWS_EC2_METADATA_DISABLED", "true".into()),
            ("AWS_CONFIG_FILE", "/dev/null".into()),
            ("AWS_SHARED_CREDENTIALS_FILE", "/dev/null".into()),
            ("REELAY_S3_PATH_STYLE", "true".into()),
        ]
    }

    /// The same settings as [`MotoServer::env`], without touching this
    /// process's environment (tests run in parallel threads).
    pub fn sdk_config(&self) -> SdkConfig {
        SdkConfig::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(REGION))
            .endpoint_url(self.endpoint())
            .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
                aws_sdk_s3::config::Credentials::new(ACCESS_KEY, ACCESS_KEY, None, None, "moto"),
            ))
            .build()
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        let conf = aws_sdk_s3::config::Builder::from(&self.sdk_config())
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(conf)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.sdk_config())
    }

    pub async fn create_bucket(&self, name: &str) {
        self.s3()
            .create_bucket()
            .bucket(name)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create bucket {name}: {e:?}"));
    }

    /// A standard queue; returns its URL and ARN.
    pub async fn create_queue(
        &self,
        name: &str,
        attributes: &[(QueueAttributeName, String)],
    ) -> (String, String) {
        let sqs = self.sqs();
        let mut req = sqs.create_queue().queue_name(name);
        for (k, v) in attributes {
            req = req.attributes(k.clone(), v);
        }
        let url = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("create queue {name}: {e:?}"))
            .queue_url
            .expect("queue url");
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .expect("queue attributes")
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .expect("queue arn");
        (url, arn)
    }

    /// `name` with a redrive policy to `name-dlq` after `max_receive_count`
    /// receives, and a default visibility timeout.
    pub async fn create_queue_with_dlq(
        &self,
        name: &str,
        max_receive_count: u32,
        visibility: Duration,
    ) -> QueueWithDlq {
        let (dlq_url, dlq_arn) = self.create_queue(&format!("{name}-dlq"), &[]).await;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dlq_arn,
            "maxReceiveCount": max_receive_count.to_string(),
        })
        .to_string();
        let (url, arn) = self
            .create_queue(
                name,
                &[
                    (QueueAttributeName::RedrivePolicy, redrive),
                    (
                        QueueAttributeName::VisibilityTimeout,
                        visibility.as_secs().to_string(),
                    ),
                ],
            )
            .await;
        QueueWithDlq {
            url,
            arn,
            dlq_url,
            dlq_arn,
        }
    }

    /// Bucket notifications as reelay's deploy configures them: every
    /// `s3:ObjectCreated:*` under each prefix (one configuration per prefix)
    /// to `queue_arn`. Moto then sends an `s3:TestEvent` to the queue.
    pub async fn configure_notifications(&self, bucket: &str, queue_arn: &str, prefixes: &[&str]) {
        let configs = prefixes
            .iter()
            .map(|prefix| {
                QueueConfiguration::builder()
                    .id(format!("reelay-{}", prefix.trim_end_matches('/')))
                    .queue_arn(queue_arn)
                    .events(Event::from("s3:ObjectCreated:*"))
                    .filter(
                        NotificationConfigurationFilter::builder()
                            .key(
                                S3KeyFilter::builder()
                                    .filter_rules(
                                        FilterRule::builder()
                                            .name(FilterRuleName::Prefix)
                                            .value(*prefix)
                                            .build(),
                                    )
                                    .build(),
                            )
                            .build(),
                    )
                    .build()
                    .expect("queue configuration")
            })
            .collect();
        self.s3()
            .put_bucket_notification_configuration()
            .bucket(bucket)
            .notification_configuration(
                NotificationConfiguration::builder()
                    .set_queue_configurations(Some(configs))
                    .build(),
            )
            .send()
            .await
            .unwrap_or_else(|e| panic!("notification configuration on {bucket}: {e:?}"));
    }

    /// The reelay layout in one call: `bucket`, `events` queue with a DLQ,
    /// and notifications for `sources/` and `jobs/`.
    pub async fn reelay_layout(
        &self,
        bucket: &str,
        queue: &str,
        max_receive_count: u32,
    ) -> QueueWithDlq {
        self.create_bucket(bucket).await;
        let q = self
            .create_queue_with_dlq(queue, max_receive_count, Duration::from_secs(30))
            .await;
        self.configure_notifications(bucket, &q.arn, &["sources/", "jobs/"])
            .await;
        q
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        drop(self.watchdog.take());
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}
