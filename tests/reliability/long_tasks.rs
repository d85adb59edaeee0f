//! Scenario 3: Long tasks (moto, real SQS visibility): a task lasting 4x the
//! visibility timeout runs once while a second worker waits for the message;
//! and when a heartbeat fails (injected), the task stops at once and another
//! worker finishes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use reelay::adapters::sqs::SqsQueue;
use reelay::audit::AuditRecord;
use reelay::pipeline::message::InternalMessage;
use reelay::pipeline::planner;
use reelay::ports::queue::{QueueError, QueueResult, ReceiptHandle, Received};
use reelay::ports::{ObjectStore, Queue};
use reelay::runtime::consumer::consume;
use reelay::runtime::executor::Executor;
use reelay::runtime::journal::Journal;
use reelay::runtime::router::Router;
use tokio_util::sync::CancellationToken;

use crate::common::aws::{Aws, Layout, SlowDownloads, settings};
use crate::harness::{self, JOB_RULE, Size};
use crate::summary::Row;

/// The gpu queue with every visibility extension failing: a heartbeat that
/// cannot keep its message.
struct FailingExtend {
    inner: SqsQueue,
    failed: Arc<AtomicU64>,
}

#[async_trait]
impl Queue for FailingExtend {
    fn name(&self) -> &str {
        self.inner.name()
    }
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Received>> {
        self.inner.receive(max, visibility, wait).await
    }
    async fn ack(&self, handles: &[ReceiptHandle]) -> QueueResult<()> {
        self.inner.ack(handles).await
    }
    async fn extend(&self, _handle: &ReceiptHandle, _visibility: Duration) -> QueueResult<()> {
        self.failed.fetch_add(1, Ordering::SeqCst);
        Err(QueueError::Backend {
            queue: self.inner.name().to_string(),
            message: "injected: ChangeMessageVisibility failed".into(),
        })
    }
    async fn send(&self, body: &str) -> QueueResult<()> {
        self.inner.send(body).await
    }
}

fn executor(aws: &Aws, worker: &str, delay: Duration, lease: Duration) -> Arc<Router> {
    let base = aws.runtime("unused");
    Arc::new(Router {
        executor: Arc::new(Executor {
            store: Arc::new(SlowDownloads {
                inner: aws.store(),
                delay,
            }),
            config: base.config.clone(),
            dispatcher: base.dispatcher().clone(),
            ffmpeg: crate::common::ffmpeg(),
            worker_id: worker.into(),
            progress: Arc::new(reelay::runtime::progress::LogProgress),
            journal: Some(Journal::new(aws.journal_path())),
            metrics: Default::default(),
            claim_lease: lease,
        }),
    })
}

pub async fn run(_size: Size) -> Vec<Row> {
    let visibility = Duration::from_secs(2);
    let delay = visibility * 4;
    let aws = Aws::start_with(
        "long",
        Layout {
            extra_toml: JOB_RULE.into(),
            notify: false,
            max_receive: 5,
            // The config's floor; the workers below receive with `visibility`.
            visibility: Duration::from_secs(5),
            concurrency: 1,
        },
    )
    .await;
    let store = aws.store();

    // (a) 4x the visibility timeout, two workers: runs once.
    let task = harness::first_task(&aws, "jobs/a.json", "sources/a.mp4", "exports/a.mp4").await;
    let gpu: Arc<dyn Queue> = Arc::new(aws.queue(&aws.gpu.url));
    gpu.send(&InternalMessage::Task(task.clone()).to_json())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for w in ["long-a", "long-b"] {
        workers.push(tokio::spawn(consume(
            gpu.clone(),
            settings(visibility, 1),
            executor(&aws, w, delay, visibility),
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let out = aws
        .wait_for_object(&task.output, Duration::from_secs(60))
        .await;
    let lasted = started.elapsed();
    assert!(lasted >= visibility * 3, "the task lasted only {lasted:?}");
    assert_eq!(out.metadata.get(planner::TASK_FIELD), Some(&task.id));
    tokio::time::sleep(visibility * 2).await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let events: Vec<String> = aws
        .journal()
        .iter()
        .filter(|e| e.task == task.id)
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(events, ["start", "done"], "received and run once");
    assert_eq!(aws.queue_counts(&aws.gpu.dlq_url).await, (0, 0));

    // (b) The heartbeat fails: the task stops, and another worker finishes it.
    let task = harness::first_task(&aws, "jobs/b.json", "sources/b.mp4", "exports/b.mp4").await;
    gpu.send(&InternalMessage::Task(task.clone()).to_json())
        .await
        .unwrap();
    let failed = Arc::new(AtomicU64::new(0));
    let failing: Arc<dyn Queue> = Arc::new(FailingExtend {
        inner: aws.queue(&aws.gpu.url),
        failed: failed.clone(),
    });
    let stop = CancellationToken::new();
    let a = tokio::spawn(consume(
        failing,
        settings(visibility, 1),
        executor(&aws, "hb-a", delay, visibility),
        stop.clone(),
    ));
    // Worker a holds the task; when did it stop?
    let mine = |event: &str, worker: &str| {
        aws.journal()
            .iter()
            .any(|e| e.task == task.id && e.event == event && e.worker == worker)
    };
    harness::wait_until(
        "hb-a to start the task",
        Duration::from_secs(30),
        || async { mine("start", "hb-a") },
    )
    .await;
    let t0 = Instant::now();
    harness::wait_until("hb-a to stop the task", delay * 2, || async {
        mine("fail", "hb-a")
    })
    .await;
    let stopped_after = t0.elapsed();
    assert!(
        stopped_after < delay,
        "the task ran on for {stopped_after:?} after its heartbeat failed (its step takes {delay:?})"
    );
    assert!(
        failed.load(Ordering::SeqCst) >= 1,
        "a heartbeat was attempted and failed"
    );
    assert!(
        store.head(&task.output).await.unwrap().is_none(),
        "the stopped task published nothing"
    );
    let b = tokio::spawn(consume(
        gpu.clone(),
        settings(visibility, 1),
        executor(&aws, "hb-b", delay, visibility),
        stop.clone(),
    ));
    let out = aws
        .wait_for_object(&task.output, Duration::from_secs(60))
        .await;
    let record = AuditRecord::from_metadata(&out.metadata).unwrap();
    assert_eq!(record.worker, "hb-b", "the other worker finished it");
    stop.cancel();
    a.await.unwrap();
    b.await.unwrap();
    let journal = aws.journal();
    let done: Vec<_> = journal
        .iter()
        .filter(|e| e.task == task.id && e.event == "done")
        .collect();
    assert_eq!(done.len(), 1, "{journal:#?}");
    let dup: usize = harness_dups(&journal);
    let mut row = Row::new("long_tasks", "moto");
    row.cases = 2;
    row.faults = failed.load(Ordering::SeqCst);
    row.completed = 2;
    row.duplicates = dup as u64;
    row.notes = format!(
        "task of {:.1}s on {}s visibility ran once; failed heartbeat stopped its task after {:.1}s, other worker finished",
        lasted.as_secs_f64(),
        visibility.as_secs(),
        stopped_after.as_secs_f64()
    );
    vec![row]
}

fn harness_dups(journal: &[reelay::runtime::journal::JournalEntry]) -> usize {
    let mut m = std::collections::BTreeMap::new();
    for e in journal.iter().filter(|e| e.event == "done") {
        *m.entry(e.task.as_str()).or_insert(0usize) += 1;
    }
    m.values().map(|c| c - 1).sum()
}
