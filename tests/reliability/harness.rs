//! What the scenarios share: the size knob, tiny media, counting executions
//! from the processes' structured logs, full decodes, RSS sampling.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use reelay::ports::store::ObjectStore;
use serde_json::json;

/// Reduced (`make test`) or full (`make reliability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    Reduced,
    Full,
}

impl Size {
    pub fn from_env() -> Size {
        match std::env::var("REELAY_RELIABILITY").as_deref() {
            Ok("full") => Size::Full,
            _ => Size::Reduced,
        }
    }

    /// `reduced` or `full` by size.
    pub fn pick<T>(self, reduced: T, full: T) -> T {
        match self {
            Size::Reduced => reduced,
            Size::Full => full,
        }
    }
}

/// A tiny real video (64x36, 30 fps, H.264) lasting `seconds`, made once
/// per path.
pub fn tiny_video(path: &Path, seconds: f64) -> PathBuf {
    if !path.exists() {
        crate::common::make_video(path, seconds, "64x36", 30, false);
    }
    path.to_path_buf()
}

/// Rules for sources only: every `sources/*.mp4` upload becomes one extract
/// (the expensive step) into `clips/`.
pub const EXTRACT_RULE: &str = "[[rules]]\nname = \"clip\"\nmatch = \"sources/*.mp4\"\nkind = \"extract\"\nparams = { start = 0.0, end = 0.5 }\noutput = \"clips/{name}\"\n";

/// Rules for jobs only: the default detect rule is left out.
pub const JOB_RULE: &str = "[[rules]]\nname = \"job\"\nmatch = \"jobs/*.json\"\nkind = \"job\"\n";

/// A two-clip job (two extracts, then a compile) on a 2 s source.
pub fn two_clip_job(source: &str, output: &str) -> serde_json::Value {
    json!({"version": 1, "source": source, "output": output,
           "clips": [{"start": 0.0, "end": 0.8}, {"start": 0.8, "end": 1.6}]})
}

/// One execution event from a process's log (`reelay::execution` lines).
#[derive(Debug, Clone)]
pub struct Execution {
    pub event: String,
    pub task: String,
    pub kind: String,
    pub worker: String,
    /// Which log file (process incarnation) it came from.
    pub log: String,
}

/// Parses `REELAY_LOG_FORMAT=json` lines; a torn last line (SIGKILL) is
/// skipped.
pub fn executions_in(log: &Path) -> Vec<Execution> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let name = log.file_name().unwrap().to_string_lossy().to_string();
    text.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["fields"]["message"] == "execution")
        .map(|v| {
            let f = &v["fields"];
            let s = |k: &str| f[k].as_str().unwrap_or("").to_string();
            Execution {
                event: s("event"),
                task: s("task"),
                kind: s("kind"),
                worker: s("worker"),
                log: name.clone(),
            }
        })
        .collect()
}

/// Every execution in every `*.log` under `dir`.
pub fn executions(dir: &Path) -> Vec<Execution> {
    let mut all = Vec::new();
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    for log in logs {
        all.extend(executions_in(&log));
    }
    all
}

/// `event` count per task id.
pub fn per_task(execs: &[Execution], event: &str) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for e in execs.iter().filter(|e| e.event == event) {
        *m.entry(e.task.clone()).or_insert(0) += 1;
    }
    m
}

/// Expensive steps that published their output more than once.
pub fn duplicate_dones(execs: &[Execution]) -> usize {
    per_task(execs, "done").values().map(|n| n - 1).sum()
}

/// Decodes every frame of `path` with FFmpeg; an error if FFmpeg fails or
/// reports anything at `error` level (a partial or corrupt file does).
pub fn decode_fully(path: &Path) -> Result<(), String> {
    let ff = crate::common::ffmpeg();
    let out = Command::new(ff.path())
        .args(["-hide_banner", "-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .map_err(|e| e.to_string())?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || !stderr.trim().is_empty() {
        return Err(format!("{}: {} {stderr}", path.display(), out.status));
    }
    Ok(())
}

/// Downloads `key` and decodes it fully; returns its duration.
pub async fn check_object(store: &dyn ObjectStore, key: &str, scratch: &Path) -> f64 {
    let local = scratch.join(format!("check-{}", key.replace('/', "_")));
    store
        .get_to_file(key, &local)
        .await
        .unwrap_or_else(|e| panic!("download {key}: {e}"));
    decode_fully(&local).unwrap_or_else(|e| panic!("{key} does not decode fully: {e}"));
    let d = crate::common::duration(&local);
    let _ = std::fs::remove_file(&local);
    d
}

/// `VmRSS` and `VmHWM` of `pid`, in KiB.
pub fn rss_kib(pid: u32) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

pub fn sigkill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// Waits for `done()` or panics with `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Percentile `p` (0..=100) of sorted `v`.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (v.len() - 1) as f64).round() as usize;
    v[i.min(v.len() - 1)]
}

/// `reelay ARGS` against `aws` with JSON logs in `dir/<log>`; `endpoint`
/// replaces moto's address (the fault proxy).
pub fn spawn_reelay(
    aws: &crate::common::aws::Aws,
    args: &[&str],
    log: &str,
    endpoint: Option<&str>,
) -> Child {
    let mut cmd = aws.reelay(log);
    cmd.env("REELAY_LOG_FORMAT", "json")
        .env(
            "RUST_LOG",
            "info,aws=warn,aws_config=warn,aws_smithy_runtime=warn,hyper=warn",
        )
        .env("REELAY_WORKER_ID", log.trim_end_matches(".log"));
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    // AWS mode prints an EMF metrics line per task on stdout; the counts
    // here come from the log, and the test output stays readable.
    cmd.args(args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("spawn reelay")
}

/// Keys under `prefix` with their etags.
pub async fn etags(store: &dyn ObjectStore, prefix: &str) -> BTreeMap<String, String> {
    store
        .list(prefix)
        .await
        .map(|v| v.into_iter().map(|m| (m.key, m.etag)).collect())
        .unwrap_or_default()
}

/// Uploads the same tiny video under each of `keys`, 8 at a time.
pub async fn upload_all(aws: &crate::common::aws::Aws, keys: &[String], file: &Path) {
    use futures::StreamExt;
    let store = std::sync::Arc::new(aws.store());
    futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let (store, file) = (store.clone(), file.to_path_buf());
            async move {
                store
                    .put_file(
                        &k,
                        &file,
                        "video/mp4",
                        &reelay::ports::store::Metadata::new(),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("upload {k}: {e}"));
            }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;
}

/// Messages visible and in flight on `url`.
pub async fn queue_counts(aws: &crate::common::aws::Aws, url: &str) -> (u64, u64) {
    aws.queue_counts(url).await
}

/// The last `n` lines of the newest `files` logs in `dir`, for failure
/// messages.
pub fn log_tails(dir: &Path, files: usize, n: usize) -> String {
    let mut logs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    logs.retain(|p| p.extension().is_some_and(|e| e == "log"));
    logs.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    let mut out = String::new();
    for p in logs.iter().rev().take(files) {
        let text = std::fs::read_to_string(p).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        out += &format!(
            "\n--- {}\n{}",
            p.display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        );
    }
    out
}

/// Uploads a 2 s source and a two-clip job, and plans it: its first ready
/// task (an extract), not yet sent anywhere.
pub async fn first_task(
    aws: &crate::common::aws::Aws,
    job: &str,
    source: &str,
    output: &str,
) -> reelay::pipeline::task::Task {
    let file = tiny_video(&aws.dir.path().join("tiny.mp4"), 2.0);
    aws.put_file(source, &file).await;
    aws.put_job(job, &two_clip_job(source, output)).await;
    let config = aws.config();
    let plan = reelay::pipeline::planner::plan(
        &aws.store(),
        &config,
        reelay::pipeline::planner::Trigger::Upload(&reelay::events::ObjectCreated {
            bucket: aws.bucket.clone(),
            key: job.into(),
            size: None,
            etag: None,
            version: None,
            sequencer: None,
            time: None,
        }),
    )
    .await
    .unwrap();
    plan.ready[0].clone()
}
