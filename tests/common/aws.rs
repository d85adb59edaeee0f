//! AWS mode against moto, shared by the end-to-end and reliability tests: a
//! moto server with the reelay layout (bucket, events and gpu queues with
//! DLQs, notifications), a config file pointing at it, the `reelay` binary
//! with a deployment's environment, and small process helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_sqs::types::QueueAttributeName;
use reelay::adapters::s3::{S3Options, S3Store};
use reelay::adapters::sqs::SqsQueue;
use reelay::config::Config;
use reelay::ports::store::{
    Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, StoreResult,
};
use reelay::runtime::aws::AwsRuntime;
use reelay::runtime::consumer::ConsumerSettings;
use reelay::runtime::journal::{Journal, JournalEntry};

use super::moto::{MotoServer, QueueWithDlq};

/// Receives before a message goes to its DLQ, unless a test asks otherwise.
pub const MAX_RECEIVE: u32 = 2;

/// How [`Aws::start_with`] lays things out.
#[derive(Debug, Clone)]
pub struct Layout {
    /// Extra TOML placed before `[queue]` (rules, placement).
    pub extra_toml: String,
    /// Configure bucket notifications for `sources/` and `jobs/`.
    pub notify: bool,
    pub max_receive: u32,
    pub visibility: Duration,
    /// Steps one router runs at once.
    pub concurrency: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            extra_toml: String::new(),
            notify: true,
            max_receive: MAX_RECEIVE,
            visibility: Duration::from_secs(5),
            concurrency: 2,
        }
    }
}

/// A moto server with the reelay layout, a config file pointing at it, and
/// a scratch folder.
pub struct Aws {
    pub moto: MotoServer,
    pub bucket: String,
    pub events: QueueWithDlq,
    pub gpu: QueueWithDlq,
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
}

impl Aws {
    /// `notify`: configure bucket notifications for `sources/` and `jobs/`.
    pub async fn start(bucket: &str, extra_toml: &str, notify: bool) -> Aws {
        Self::start_with(
            bucket,
            Layout {
                extra_toml: extra_toml.into(),
                notify,
                ..Layout::default()
            },
        )
        .await
    }

    /// A fresh moto server laid out as `layout` says.
    pub async fn start_with(bucket: &str, layout: Layout) -> Aws {
        let Layout {
            extra_toml,
            notify,
            max_receive,
            visibility,
            concurrency,
        } = layout;
        let moto = MotoServer::start();
        moto.create_bucket(bucket).await;
        let events = moto
            .create_queue_with_dlq("reelay-events", max_receive, visibility)
            .await;
        let gpu = moto
            .create_queue_with_dlq("reelay-gpu", max_receive, visibility)
            .await;
        if notify {
            moto.configure_notifications(bucket, &events.arn, &["sources/", "jobs/"])
                .await;
        }
        let dir = tempfile::tempdir().unwrap();
        let config_path = dir.path().join("reelay.toml");
        std::fs::write(
            &config_path,
            format!(
                "bucket = \"s3://{bucket}\"\nevents_queue_url = \"{}\"\ngpu_queue_url = \"{}\"\nconcurrency = {concurrency}\n{extra_toml}\n[queue]\nvisibility_seconds = {}\nmax_receive_count = {max_receive}\nretry_seconds = 1\n[aws]\npath_style = true\npoll_wait_seconds = 1\nshutdown_grace_seconds = 20\n",
                events.url,
                gpu.url,
                visibility.as_secs()
            ),
        )
        .unwrap();
        Aws {
            moto,
            bucket: bucket.into(),
            events,
            gpu,
            dir,
            config_path,
        }
    }

    pub fn config(&self) -> Config {
        let text = std::fs::read_to_string(&self.config_path).unwrap();
        let file = Config::parse_toml("reelay.toml", &text).unwrap();
        Config::from_file("reelay.toml", file).unwrap()
    }

    pub fn store(&self) -> S3Store {
        S3Store::from_sdk_config(
            &self.moto.sdk_config(),
            &self.bucket,
            S3Options {
                path_style: true,
                ..S3Options::default()
            },
        )
        .unwrap()
    }

    pub fn queue(&self, url: &str) -> SqsQueue {
        SqsQueue::from_sdk_config(&self.moto.sdk_config(), url)
    }

    pub fn journal_path(&self) -> PathBuf {
        self.dir.path().join("journal.jsonl")
    }

    pub fn journal(&self) -> Vec<JournalEntry> {
        Journal::read(&self.journal_path())
    }

    /// The in-process AWS runtime, logging executions to the journal.
    pub fn runtime(&self, worker: &str) -> Arc<AwsRuntime> {
        Arc::new(
            AwsRuntime::assemble(
                &self.moto.sdk_config(),
                self.config(),
                worker,
                Some(Journal::new(self.journal_path())),
            )
            .unwrap(),
        )
    }

    /// `reelay` with the environment a deployment would give it.
    pub fn reelay(&self, log_name: &str) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelay"));
        for (k, v) in self.moto.env() {
            cmd.env(k, v);
        }
        let log = std::fs::File::create(self.dir.path().join(log_name)).unwrap();
        cmd.env("REELAY_CONFIG", &self.config_path)
            .env(
                "RUST_LOG",
                "info,aws=warn,aws_config=warn,aws_smithy_runtime=warn",
            )
            .stderr(Stdio::from(log));
        cmd
    }

    pub fn log(&self, log_name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(log_name)).unwrap_or_default()
    }

    pub async fn queue_counts(&self, url: &str) -> (u64, u64) {
        let attrs = self
            .moto
            .sqs()
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::All)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        let get =
            |n: QueueAttributeName| attrs.get(&n).and_then(|v| v.parse().ok()).unwrap_or(0u64);
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Uploads the file at `path` as `key` (PutObject, which notifies).
    pub async fn put_file(&self, key: &str, path: &Path) -> ObjectMeta {
        self.store()
            .put_file(key, path, "video/mp4", &Metadata::new())
            .await
            .unwrap()
    }

    pub async fn put_job(&self, key: &str, job: &serde_json::Value) -> ObjectMeta {
        match self
            .store()
            .put_bytes(
                key,
                &serde_json::to_vec(job).unwrap(),
                "application/json",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
            .unwrap()
        {
            PutOutcome::Written(m) => m,
            other => panic!("{other:?}"),
        }
    }

    pub async fn wait_for_object(&self, key: &str, timeout: Duration) -> ObjectMeta {
        let store = self.store();
        let start = Instant::now();
        loop {
            if let Some(m) = store.head(key).await.unwrap() {
                return m;
            }
            assert!(
                start.elapsed() < timeout,
                "{key} did not appear within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The real bucket, with every download slowed down: a step that outlasts
/// the visibility timeout several times over.
pub struct SlowDownloads {
    pub inner: S3Store,
    pub delay: Duration,
}

#[async_trait]
impl ObjectStore for SlowDownloads {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get_to_file(&self, key: &str, dest: &Path) -> StoreResult<ObjectMeta> {
        tokio::time::sleep(self.delay).await;
        self.inner.get_to_file(key, dest).await
    }
    async fn get_bytes(&self, key: &str) -> StoreResult<(Vec<u8>, ObjectMeta)> {
        self.inner.get_bytes(key).await
    }
    async fn put_file(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta> {
        self.inner.put_file(key, src, content_type, metadata).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> StoreResult<PutOutcome> {
        self.inner
            .put_bytes(key, bytes, content_type, metadata, condition)
            .await
    }
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> StoreResult<()> {
        self.inner.delete(key).await
    }
}

pub fn settings(visibility: Duration, concurrency: usize) -> ConsumerSettings {
    ConsumerSettings {
        visibility,
        wait: Duration::from_secs(1),
        concurrency,
        shutdown_grace: Duration::from_secs(20),
    }
}

pub fn starts_per_task(entries: &[JournalEntry]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in entries.iter().filter(|e| e.event == "start") {
        *m.entry(e.task.clone()).or_insert(0) += 1;
    }
    m
}

pub fn sigterm(child: &Child) {
    // SAFETY: sending a signal to our own child process.
    assert_eq!(
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) },
        0,
        "kill(SIGTERM)"
    );
}

pub fn wait_exit(child: &mut Child, timeout: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            panic!("process did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
