//! `reelay bench router`: what the router costs per event, and how long an
//! upload waits before its step starts.
//!
//! - In process: parse a real S3 notification, match the rules, plan the job
//!   (on a local folder bucket), in µs per event, stage by stage.
//! - On loopback against a real S3+SQS server (moto, started here from
//!   `.tools/venv` unless `--endpoint` names one): PutObject of a small video
//!   → bucket notification → router plans → CPU task on the events queue →
//!   router receives it → the step starts. p50 and p99 over sequential
//!   uploads, so queueing behind other uploads does not count.
//! - The router's peak RSS (this process: the router and the bench driver).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::adapters::local_store::LocalStore;
use crate::adapters::s3::{S3Options, S3Store};
use crate::adapters::sqs::SqsQueue;
use crate::config::Config;
use crate::events::{Notification, parse_message};
use crate::media::{Ffmpeg, Progress, path_arg};
use crate::pipeline::planner::{self, Trigger};
use crate::pipeline::task::Task;
use crate::ports::queue::Queue;
use crate::ports::store::{Metadata, ObjectStore, PutCondition};
use crate::runtime::consumer::{ConsumerSettings, consume};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::executor::{Executor, Outcome};
use crate::runtime::progress::ProgressSink;
use crate::runtime::router::Router;
use crate::tasks::TaskError;

#[derive(Debug, Clone)]
pub struct RouterBenchOptions {
    /// Events timed in process.
    pub events: usize,
    /// Uploads timed against the S3+SQS server.
    pub uploads: usize,
    /// An S3+SQS endpoint to use instead of starting moto.
    pub endpoint: Option<String>,
    pub scratch: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouterBenchReport {
    pub events: usize,
    pub parse_match_us: f64,
    pub parse_match_plan_us: f64,
    pub uploads: usize,
    pub latency_p50_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_max_ms: f64,
    pub peak_rss_bytes: Option<u64>,
}

impl RouterBenchReport {
    pub fn render(&self) -> String {
        let mib = |b: Option<u64>| b.map_or(f64::NAN, |b| b as f64 / 1048576.0);
        format!(
            "bench router\n\
             in process, per event ({} events; plan reads a 3-clip manifest from a local folder bucket):\n\
             \x20 parse+match          {:>10.2} µs\n\
             \x20 parse+match+plan     {:>10.2} µs   (planning is {:.1}x parse+match)\n\
             PutObject -> step start, loopback S3+SQS ({} sequential uploads; two queue hops):\n\
             \x20 p50                  {:>10.1} ms\n\
             \x20 p99                  {:>10.1} ms   (p99 / p50: {:.2})\n\
             \x20 max                  {:>10.1} ms\n\
             router peak RSS          {:>10.1} MiB  (this process: router and bench driver)\n",
            self.events,
            self.parse_match_us,
            self.parse_match_plan_us,
            (self.parse_match_plan_us - self.parse_match_us) / self.parse_match_us.max(1e-9),
            self.uploads,
            self.latency_p50_ms,
            self.latency_p99_ms,
            self.latency_p99_ms / self.latency_p50_ms.max(1e-9),
            self.latency_max_ms,
            mib(self.peak_rss_bytes),
        )
    }
}

const MANIFEST: &str = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
  "clips": [{"start": 0, "end": 1}, {"start": 2, "end": 3, "caption": "Goal"}, {"start": 4, "end": 5}],
  "transition": {"kind": "fade", "seconds": 0.25}}"#;

fn notification(key: &str) -> String {
    serde_json::json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "reelay-jobs",
               "bucket": {"name": "bench", "arn": "arn:aws:s3:::bench"},
               "object": {"key": key, "size": MANIFEST.len(), "eTag": "0f343b0931126a20f133d67c2b018a3b", "sequencer": "0A1B"}}
    }]})
    .to_string()
}

/// Times parse+match, and parse+match+plan, per event in µs. (Parse and
/// match apart are too close to tell on a busy machine.)
async fn in_process(events: usize, scratch: &Path) -> anyhow::Result<(f64, f64)> {
    let dir = tempfile::Builder::new()
        .prefix("bench-router-")
        .tempdir_in(scratch)?;
    let store = LocalStore::open(dir.path())?;
    let config = Config::defaults();
    let none = Metadata::new();
    store
        .put_bytes(
            "sources/m.mp4",
            b"video",
            "video/mp4",
            &none,
            PutCondition::Overwrite,
        )
        .await?;
    store
        .put_bytes(
            "jobs/h.json",
            MANIFEST.as_bytes(),
            "application/json",
            &none,
            PutCondition::Overwrite,
        )
        .await?;
    let body = notification("jobs/h.json");
    let parse_one = || match parse_message(&body) {
        Ok(mut n) => match n.pop() {
            Some(Notification::Created(e)) => e,
            other => panic!("unexpected {other:?}"),
        },
        Err(e) => panic!("{e}"),
    };
    // Warm up caches and the allocator before timing anything.
    for _ in 0..events.div_ceil(10) {
        let e = parse_one();
        planner::plan(&store, &config, Trigger::Upload(&e)).await?;
    }
    let t = Instant::now();
    for _ in 0..events {
        let e = parse_one();
        std::hint::black_box(config.rule_for(&e.key).is_some());
    }
    let parse_match = t.elapsed().as_secs_f64() * 1e6 / events as f64;
    let t = Instant::now();
    for _ in 0..events {
        let e = parse_one();
        if config.rule_for(&e.key).is_some() {
            let plan = planner::plan(&store, &config, Trigger::Upload(&e)).await?;
            assert_eq!(plan.ready.len(), 3);
        }
    }
    let full = t.elapsed().as_secs_f64() * 1e6 / events as f64;
    Ok((parse_match, full))
}

/// Records when each step starts, by its first input key.
#[derive(Default)]
struct StartTimes(Mutex<HashMap<String, Instant>>);

impl ProgressSink for StartTimes {
    fn started(&self, task: &Task) {
        if let Some(key) = task.input_keys().next() {
            self.0
                .lock()
                .unwrap()
                .insert(key.to_string(), Instant::now());
        }
    }
    fn progress(&self, _: &Task, _: &Progress) {}
    fn finished(&self, _: &Task, _: Result<&Outcome, &TaskError>) {}
}

/// moto, killed on drop.
struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_moto() -> anyhow::Result<(Moto, String)> {
    let bin = crate::media::find_tool("venv/bin/moto_server").ok_or_else(|| {
        anyhow::anyhow!(
            "moto_server not found under .tools/venv: run `make tools`, or pass --endpoint URL"
        )
    })?;
    let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port();
    let child = Command::new(bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok((Moto(child), format!("http://127.0.0.1:{port}")))
}

fn sdk_config(endpoint: &str) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(endpoint)
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "bench"),
        ))
        .build()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// PutObject → step start latencies, in ms.
async fn loopback(opts: &RouterBenchOptions) -> anyhow::Result<Vec<f64>> {
    let (_moto, endpoint) = match &opts.endpoint {
        Some(e) => (None, e.clone()),
        None => {
            let (m, e) = start_moto()?;
            (Some(m), e)
        }
    };
    let sdk = sdk_config(&endpoint);
    let (bucket, [events_url, gpu_url]) = provision(&sdk, &endpoint).await?;
    let router = start_router(&sdk, &bucket, &events_url, &gpu_url)?;
    let video = opts.scratch.join("bench-router-source.mp4");
    make_clip(&router.ffmpeg, &video)?;
    let latencies = time_uploads(&router, &video, opts.uploads).await;
    router.stop.cancel();
    let _ = router.consumer.await;
    latencies
}

/// A bucket whose `sources/` uploads notify a new events queue, and a gpu
/// queue: (bucket, [events queue URL, gpu queue URL]).
async fn provision(sdk: &SdkConfig, endpoint: &str) -> anyhow::Result<(String, [String; 2])> {
    let s3 = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(true)
            .build(),
    );
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let bucket = format!("reelay-bench-{}", std::process::id());
    let deadline = Instant::now() + Duration::from_secs(60);
    while s3.create_bucket().bucket(&bucket).send().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "no S3 at {endpoint}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut urls = [String::new(), String::new()];
    for (url, name) in urls.iter_mut().zip(["bench-events", "bench-gpu"]) {
        *url = sqs
            .create_queue()
            .queue_name(format!("{name}-{}", std::process::id()))
            .send()
            .await?
            .queue_url
            .unwrap_or_default();
    }
    let arn = sqs
        .get_queue_attributes()
        .queue_url(&urls[0])
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await?
        .attributes
        .and_then(|mut a| a.remove(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
        .unwrap_or_default();
    s3.put_bucket_notification_configuration()
        .bucket(&bucket)
        .notification_configuration(sources_notify(arn)?)
        .send()
        .await?;
    Ok((bucket, urls))
}

/// Every object created under `sources/` notifies the queue `queue_arn`.
fn sources_notify(
    queue_arn: String,
) -> anyhow::Result<aws_sdk_s3::types::NotificationConfiguration> {
    use aws_sdk_s3::types::{
        Event, FilterRule, FilterRuleName, NotificationConfiguration,
        NotificationConfigurationFilter, QueueConfiguration, S3KeyFilter,
    };
    let filter = NotificationConfigurationFilter::builder()
        .key(
            S3KeyFilter::builder()
                .filter_rules(
                    FilterRule::builder()
                        .name(FilterRuleName::Prefix)
                        .value("sources/")
                        .build(),
                )
                .build(),
        )
        .build();
    Ok(NotificationConfiguration::builder()
        .queue_configurations(
            QueueConfiguration::builder()
                .queue_arn(queue_arn)
                .events(Event::from("s3:ObjectCreated:*"))
                .filter(filter)
                .build()?,
        )
        .build())
}

/// A router consuming the events queue, as `reelay route` runs it, with a
/// rule that makes every `sources/*.mp4` upload start an extract.
struct RunningRouter {
    store: Arc<dyn ObjectStore>,
    ffmpeg: Ffmpeg,
    starts: Arc<StartTimes>,
    stop: CancellationToken,
    consumer: tokio::task::JoinHandle<()>,
}

fn start_router(
    sdk: &SdkConfig,
    bucket: &str,
    events_url: &str,
    gpu_url: &str,
) -> anyhow::Result<RunningRouter> {
    let toml = "[[rules]]\nname = \"preview\"\nmatch = \"sources/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 0.5 }\noutput = \"previews/{name}\"\n";
    let config = Arc::new(Config::from_file(
        "(bench)",
        Config::parse_toml("(bench)", toml)?,
    )?);
    let store: Arc<dyn ObjectStore> = Arc::new(S3Store::from_sdk_config(
        sdk,
        bucket,
        S3Options {
            path_style: true,
            ..S3Options::default()
        },
    )?);
    let events: Arc<dyn Queue> = Arc::new(SqsQueue::from_sdk_config(sdk, events_url));
    let gpu: Arc<dyn Queue> = Arc::new(SqsQueue::from_sdk_config(sdk, gpu_url));
    let starts = Arc::new(StartTimes::default());
    let ffmpeg = Ffmpeg::locate()?;
    let executor = Arc::new(Executor {
        store: store.clone(),
        config,
        dispatcher: Dispatcher {
            events: events.clone(),
            gpu,
        },
        ffmpeg: ffmpeg.clone(),
        worker_id: "bench-router".into(),
        progress: starts.clone(),
        journal: None,
        metrics: Default::default(),
        claim_lease: Duration::from_secs(60),
    });
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(consume(
        events,
        ConsumerSettings {
            visibility: Duration::from_secs(60),
            wait: Duration::from_secs(20),
            concurrency: 2,
            shutdown_grace: Duration::from_secs(30),
        },
        Arc::new(Router { executor }),
        stop.clone(),
    ));
    Ok(RunningRouter {
        store,
        ffmpeg,
        starts,
        stop,
        consumer,
    })
}

/// A 1 s 160x90 clip, uploaded under a new key each time.
fn make_clip(ffmpeg: &Ffmpeg, video: &Path) -> anyhow::Result<()> {
    let args: Vec<std::ffi::OsString> = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=s=160x90:r=30:d=1",
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-f",
        "mp4",
    ]
    .iter()
    .map(Into::into)
    .chain([path_arg(video)])
    .collect();
    ffmpeg.run(&args, None, &mut |_| {}, &CancellationToken::new())?;
    Ok(())
}

/// Milliseconds from each PutObject to the start of the step it caused,
/// one upload at a time.
async fn time_uploads(
    router: &RunningRouter,
    video: &Path,
    uploads: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(uploads);
    for i in 0..uploads {
        let key = format!("sources/u{i:05}.mp4");
        let put = Instant::now();
        router
            .store
            .put_file(&key, video, "video/mp4", &Metadata::new())
            .await?;
        let started = loop {
            if let Some(t) = router.starts.0.lock().unwrap().get(&key) {
                break *t;
            }
            anyhow::ensure!(
                put.elapsed() < Duration::from_secs(60),
                "upload {key} never started a step"
            );
            tokio::time::sleep(Duration::from_micros(500)).await;
        };
        latencies.push(started.duration_since(put).as_secs_f64() * 1e3);
    }
    Ok(latencies)
}

pub async fn run(opts: &RouterBenchOptions) -> anyhow::Result<RouterBenchReport> {
    std::fs::create_dir_all(&opts.scratch)?;
    let (parse_match_us, parse_match_plan_us) =
        in_process(opts.events.max(1), &opts.scratch).await?;
    let mut latencies = loopback(opts).await?;
    anyhow::ensure!(!latencies.is_empty(), "--uploads must be at least 1");
    latencies.sort_by(f64::total_cmp);
    Ok(RouterBenchReport {
        events: opts.events.max(1),
        parse_match_us,
        parse_match_plan_us,
        uploads: latencies.len(),
        latency_p50_ms: percentile(&latencies, 50.0),
        latency_p99_ms: percentile(&latencies, 99.0),
        latency_max_ms: *latencies.last().unwrap(),
        peak_rss_bytes: super::rss::peak_self_bytes(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let v: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 100.0);
        assert_eq!(percentile(&v, 99.0), 198.0);
        assert_eq!(percentile(&[5.0], 99.0), 5.0);
    }

    #[tokio::test]
    async fn in_process_figures_are_positive_and_ordered_by_work() {
        let dir = tempfile::tempdir().unwrap();
        let (m, full) = in_process(50, dir.path()).await.unwrap();
        assert!(m > 0.0 && full > 0.0);
        assert!(full > m, "planning reads the bucket: {full} vs {m}");
    }
}
