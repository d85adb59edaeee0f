//! End to end on a local folder bucket: real FFmpeg on media made here, the
//! real `reelay` binary, the in-process queues.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use reelay::adapters::local_store::LocalStore;
use reelay::audit::AuditRecord;
use reelay::ports::store::ObjectStore;
use serde_json::json;

fn highlights(source: &str, output: &str) -> serde_json::Value {
    json!({"version": 1, "source": source, "output": output,
           "clips": [{"start": 0.5, "end": 2.5}, {"start": 3.0, "end": 5.0, "caption": "Goal!"}, {"start": 5.5, "end": 7.5}],
           "transition": {"kind": "fade", "seconds": 0.5}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dropped_job_becomes_an_export_with_lineage_and_cost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/match.mp4"), 8.0, "320x180", 30, true);
    write_job(
        &root,
        "jobs/h.json",
        &highlights("sources/match.mp4", "exports/h.mp4"),
    );
    let dev = dev_until_idle(&root, None);
    // `reelay dev` prints its metrics at exit: three extracts and one
    // compile ran on the CPU, and the default rule's detect of the upload;
    // nothing else ended.
    let summary = String::from_utf8_lossy(&dev.stdout);
    let rows: Vec<Vec<&str>> = summary
        .lines()
        .skip_while(|l| !l.starts_with("kind "))
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    let counts: Vec<&[&str]> = rows.iter().map(|r| &r[..4]).collect();
    assert_eq!(
        counts,
        [
            ["extract", "cpu", "done", "3"].as_slice(),
            ["compile", "cpu", "done", "1"].as_slice(),
            ["detect", "cpu", "done", "1"].as_slice(),
        ],
        "{summary}"
    );
    for row in &rows {
        let mean_ms: u64 = row[4].parse().unwrap();
        assert!(mean_ms > 0, "{summary}");
        let cost: f64 = row[7].parse().unwrap();
        assert!(cost > 0.0, "{summary}");
    }

    let export = root.join("exports/h.mp4");
    let d = duration(&export);
    assert!(
        (d - (6.0 - 2.0 * 0.5)).abs() <= 1.0 / 30.0 + 1e-3,
        "export lasts {d}s"
    );
    let store = LocalStore::open(&root).unwrap();
    let meta = store.head("exports/h.mp4").await.unwrap().unwrap();
    let record =
        AuditRecord::from_metadata(&meta.metadata).expect("export carries an audit record");
    assert_eq!(record.kind, "compile");
    assert_eq!(record.device, "cpu");
    assert_eq!(record.inputs.len(), 3);
    assert!(record.cost_usd.unwrap() > 0.0);
    assert_eq!(record.manifest.as_deref(), Some("jobs/h.json"));

    let audit = reelay()
        .args(["audit", "--root"])
        .arg(&root)
        .arg("exports/h.mp4")
        .output()
        .unwrap();
    let tree = String::from_utf8(audit.stdout).unwrap();
    assert!(audit.status.success());
    assert_eq!(tree.matches("[extract extract-").count(), 3, "{tree}");
    assert_eq!(
        tree.matches("sources/match.mp4  [upload]").count(),
        3,
        "{tree}"
    );
    assert!(tree.contains("total: 4 step(s)"), "{tree}");

    let cost = reelay()
        .args(["cost", "--json", "--root"])
        .arg(&root)
        .output()
        .unwrap();
    let cost: serde_json::Value = serde_json::from_slice(&cost.stdout).unwrap();
    // The job's 4 steps, and the default rule's detect on the uploaded source.
    assert_eq!(cost["total"]["steps"], 5);
    assert!(root.join("detections/match.mp4.json").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_jobs_and_events_run_each_step_once() {
    use reelay::adapters::memory_queue::MemoryQueue;
    use reelay::config::Config;
    use reelay::events::ObjectCreated;
    use reelay::pipeline::message::InternalMessage;
    use reelay::ports::queue::Queue;
    use reelay::runtime::consumer::{ConsumerSettings, consume};
    use reelay::runtime::dispatch::Dispatcher;
    use reelay::runtime::executor::Executor;
    use reelay::runtime::journal::Journal;
    use reelay::runtime::progress::LogProgress;
    use reelay::runtime::router::Router;
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/match.mp4"), 8.0, "320x180", 30, true);
    // The same job twice, under two names.
    write_job(
        &root,
        "jobs/a.json",
        &highlights("sources/match.mp4", "exports/h.mp4"),
    );
    write_job(
        &root,
        "jobs/b.json",
        &highlights("sources/match.mp4", "exports/h.mp4"),
    );
    let store: Arc<dyn ObjectStore> = Arc::new(LocalStore::open(&root).unwrap());
    let (events, events_dlq) = MemoryQueue::with_dlq("events", 3);
    let (gpu, _) = MemoryQueue::with_dlq("gpu", 3);
    // Every step message is also sent twice: a queue that duplicates everything.
    let doubling = Arc::new(Doubling(events.clone()));
    let executor = Arc::new(Executor {
        store: store.clone(),
        config: Arc::new(Config::defaults()),
        dispatcher: Dispatcher {
            events: doubling.clone(),
            gpu: gpu.clone(),
        },
        ffmpeg: ffmpeg(),
        worker_id: "test".into(),
        progress: Arc::new(LogProgress),
        journal: Some(Journal::new(reelay::runtime::local::journal_path(&root))),
        metrics: Default::default(),
        claim_lease: Duration::from_secs(30),
    });
    for key in ["jobs/a.json", "jobs/b.json", "jobs/a.json", "jobs/b.json"] {
        let event = ObjectCreated {
            bucket: "local".into(),
            key: key.into(),
            size: None,
            etag: None,
            version: None,
            sequencer: None,
            time: None,
        };
        events
            .send(&InternalMessage::Upload(event).to_json())
            .await
            .unwrap();
    }
    let stop = tokio_util::sync::CancellationToken::new();
    let settings = ConsumerSettings {
        visibility: Duration::from_secs(30),
        wait: Duration::from_millis(100),
        concurrency: 4,
        shutdown_grace: Duration::from_secs(5),
    };
    let consumer = tokio::spawn(consume(
        events.clone(),
        settings,
        Arc::new(Router { executor }),
        stop.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !(events.is_empty().await && root.join("exports/h.mp4").exists()) {
        assert!(std::time::Instant::now() < deadline, "job did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    consumer.await.unwrap();
    assert!(events_dlq.is_empty().await);
    let entries = journal(&root);
    let starts = starts_per_task(&entries);
    assert_eq!(starts.len(), 4, "3 extracts and 1 compile: {starts:?}");
    assert!(
        starts.values().all(|&n| n == 1),
        "a step ran twice: {starts:?}"
    );
    let kinds: BTreeMap<String, usize> =
        entries
            .iter()
            .filter(|e| e.event == "start")
            .fold(BTreeMap::new(), |mut m, e| {
                *m.entry(e.kind.clone()).or_insert(0) += 1;
                m
            });
    assert_eq!(
        kinds,
        BTreeMap::from([("compile".to_string(), 1), ("extract".to_string(), 3)])
    );
    let deduped = entries
        .iter()
        .filter(|e| e.event == "skip" || e.event == "busy")
        .count();
    assert!(
        deduped >= 4,
        "the duplicates should have been seen and dropped, saw {deduped}"
    );
}

/// A queue that delivers every message twice.
struct Doubling(std::sync::Arc<reelay::adapters::memory_queue::MemoryQueue>);

#[async_trait::async_trait]
impl reelay::ports::queue::Queue for Doubling {
    fn name(&self) -> &str {
        "doubling"
    }
    async fn receive(
        &self,
        max: usize,
        v: Duration,
        w: Duration,
    ) -> reelay::ports::queue::QueueResult<Vec<reelay::ports::queue::Received>> {
        self.0.receive(max, v, w).await
    }
    async fn ack(
        &self,
        h: &[reelay::ports::queue::ReceiptHandle],
    ) -> reelay::ports::queue::QueueResult<()> {
        self.0.ack(h).await
    }
    async fn extend(
        &self,
        h: &reelay::ports::queue::ReceiptHandle,
        v: Duration,
    ) -> reelay::ports::queue::QueueResult<()> {
        self.0.extend(h, v).await
    }
    async fn send(&self, body: &str) -> reelay::ports::queue::QueueResult<()> {
        self.0.send(body).await?;
        self.0.send(body).await
    }
}

#[test]
fn a_killed_dev_resumes_without_redoing_finished_steps() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/long.mp4"), 24.0, "640x360", 30, true);
    write_job(
        &root,
        "jobs/long.json",
        &json!({"version": 1, "source": "sources/long.mp4", "output": "exports/long.mp4",
        "clips": [{"start": 0, "end": 6}, {"start": 6, "end": 12}, {"start": 12, "end": 18}, {"start": 18, "end": 24}],
        "transition": {"kind": "fade", "seconds": 0.5}}),
    );
    let mut child = reelay()
        .env("REELAY_CONCURRENCY", "1")
        .arg("dev")
        .arg("--root")
        .arg(&root)
        .spawn()
        .unwrap();
    // Kill it once the first step is published and before the export exists.
    wait_for("a finished extract", Duration::from_secs(120), || {
        journal(&root).iter().any(|e| e.event == "done")
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let before = journal(&root);
    let finished: Vec<String> = before
        .iter()
        .filter(|e| e.event == "done")
        .map(|e| e.task.clone())
        .collect();
    assert!(
        !root.join("exports/long.mp4").exists(),
        "the job finished before the kill; make it longer"
    );
    // No half-written object is visible: only complete outputs under work/.
    let out = dev_until_idle(&root, None);
    let _ = out;
    assert!(root.join("exports/long.mp4").exists());
    let after = journal(&root);
    let restarted: Vec<&str> = after[before.len()..]
        .iter()
        .filter(|e| e.event == "start")
        .map(|e| e.task.as_str())
        .collect();
    for task in &finished {
        assert!(
            !restarted.contains(&task.as_str()),
            "finished step {task} ran again"
        );
    }
    let done_per_task = after.iter().filter(|e| e.event == "done").fold(
        BTreeMap::<&str, usize>::new(),
        |mut m, e| {
            *m.entry(e.task.as_str()).or_insert(0) += 1;
            m
        },
    );
    assert_eq!(
        done_per_task.len(),
        6,
        "4 extracts, a compile and the default rule's detect: {done_per_task:?}"
    );
    assert!(done_per_task.values().all(|&n| n == 1), "{done_per_task:?}");
    let d = duration(&root.join("exports/long.mp4"));
    assert!((d - (24.0 - 3.0 * 0.5)).abs() <= 1.0 / 30.0 + 1e-3, "{d}");
}

/// Logs written to a pipe carry no colour escapes; the metrics summary is
/// printed at exit even when nothing ran.
#[test]
fn logs_to_a_pipe_have_no_ansi_escapes_and_dev_prints_its_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let out = reelay()
        .env("RUST_LOG", "info")
        .env_remove("REELAY_LOG_FORMAT")
        .args(["dev", "--exit-when-idle", "--root"])
        .arg(dir.path().join("bucket"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("reelay dev is watching"), "{stderr}");
    assert!(
        !stderr.contains('\x1b'),
        "ANSI escapes in piped logs: {stderr:?}"
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "metrics: no tasks ran\n"
    );
}
