//! `reelay dev` and `reelay demo`: router, CPU pool and worker loop in one
//! process over a local folder bucket, with in-process queues that behave
//! like SQS. At start it reconciles: every upload present is announced, and
//! the stateless planner skips what is already done.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::adapters::local_store::LocalStore;
use crate::adapters::memory_queue::MemoryQueue;
use crate::config::Config;
use crate::keys::LOCAL_RESERVED;
use crate::media::Ffmpeg;
use crate::ports::queue::Queue;
use crate::ports::store::ObjectStore;
use crate::runtime::consumer::{ConsumerSettings, consume};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::executor::{CLAIMS_PREFIX, Executor};
use crate::runtime::journal::Journal;
use crate::runtime::metrics::Metrics;
use crate::runtime::progress::ProgressSink;
use crate::runtime::router::Router;
use crate::runtime::watcher::Watcher;

pub struct LocalOptions {
    pub root: PathBuf,
    pub config: Config,
    /// Return once every upload is handled and the queues are empty.
    pub exit_when_idle: bool,
    pub poll: Duration,
    pub progress: Arc<dyn ProgressSink>,
}

/// What the run left behind.
#[derive(Debug)]
pub struct LocalSummary {
    /// Bodies of messages that went to a dead-letter queue.
    pub dead_letters: Vec<String>,
    /// What the run's tasks did, per kind, device and outcome.
    pub metrics: Arc<Metrics>,
}

/// Path of the execution journal in a local bucket.
pub fn journal_path(root: &Path) -> PathBuf {
    root.join(LOCAL_RESERVED).join("journal.jsonl")
}

pub async fn run_local(
    opts: LocalOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<LocalSummary> {
    let store = Arc::new(LocalStore::open(&opts.root)?);
    // One `reelay dev` per folder: two would race on claims and the journal.
    let lock_path = store.root().join(LOCAL_RESERVED).join("dev.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&lock_path)?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "{} is in use by another `reelay dev`; stop it first, or use another --root",
            store.root().display()
        );
    }
    // Claims left by a killed run of this folder are void: we are its only worker.
    for claim in store.list(CLAIMS_PREFIX).await? {
        store.delete(&claim.key).await?;
    }
    let config = Arc::new(opts.config);
    let q = &config.file.queue;
    let (events, events_dlq) = MemoryQueue::with_dlq("events", q.max_receive_count);
    let (gpu, gpu_dlq) = MemoryQueue::with_dlq("gpu", q.max_receive_count);
    let dyn_store: Arc<dyn ObjectStore> = store.clone();
    let metrics = Arc::new(Metrics::counting());
    let executor = Arc::new(Executor {
        store: dyn_store.clone(),
        config: config.clone(),
        dispatcher: Dispatcher {
            events: events.clone(),
            gpu: gpu.clone(),
        },
        ffmpeg: Ffmpeg::locate()?,
        worker_id: format!("dev-{}", std::process::id()),
        progress: opts.progress.clone(),
        journal: Some(Journal::new(journal_path(store.root()))),
        metrics: metrics.clone(),
        claim_lease: Duration::from_secs(q.visibility_seconds),
    });
    let router = Arc::new(Router { executor });
    let settings = ConsumerSettings {
        visibility: Duration::from_secs(q.visibility_seconds),
        wait: Duration::from_millis(500),
        concurrency: config.file.concurrency,
        shutdown_grace: Duration::from_secs(10),
    };
    let idle = Arc::new(AtomicBool::new(false));
    let stop = shutdown.child_token();
    let watcher = Watcher {
        store: dyn_store,
        prefixes: config.file.layout.uploads.clone(),
        events: events.clone(),
        interval: opts.poll,
        idle: idle.clone(),
        failures: config.file.layout.failures.clone(),
    };
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(watcher.run(stop.clone()));
    tasks.spawn(consume(
        events.clone() as Arc<dyn Queue>,
        settings.clone(),
        router.clone(),
        stop.clone(),
    ));
    // The GPU worker loop: one at a time, like one GPU.
    tasks.spawn(consume(
        gpu.clone() as Arc<dyn Queue>,
        ConsumerSettings {
            concurrency: 1,
            ..settings
        },
        router,
        stop.clone(),
    ));
    tracing::info!(root = %store.root().display(), "reelay dev is watching {}", config.file.layout.uploads.join(", "));
    if opts.exit_when_idle {
        let mut quiet_polls = 0;
        while !stop.is_cancelled() {
            tokio::time::sleep(opts.poll).await;
            let quiet =
                idle.load(Ordering::SeqCst) && events.is_empty().await && gpu.is_empty().await;
            quiet_polls = if quiet { quiet_polls + 1 } else { 0 };
            if quiet_polls >= 3 {
                stop.cancel();
            }
        }
    } else {
        stop.cancelled().await;
    }
    while tasks.join_next().await.is_some() {}
    let mut dead_letters = events_dlq.bodies().await;
    dead_letters.extend(gpu_dlq.bodies().await);
    drop(lock);
    Ok(LocalSummary {
        dead_letters,
        metrics,
    })
}
