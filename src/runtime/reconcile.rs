//! `reelay reconcile`: the safety net for lost messages and the backfill for
//! objects uploaded before reelay was deployed.
//!
//! It lists the upload prefixes, plans every upload a rule matches with the
//! same stateless planner as the router, and dispatches each ready task that
//! has no output and no live claim. A task whose message still waits in a
//! queue gets a second message; that is harmless, since the executor skips a
//! finished output and a claimed task.

use std::collections::BTreeSet;
use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::audit::failure::FailureRecord;
use crate::config::Config;
use crate::events::ObjectCreated;
use crate::pipeline::planner::{self, StepState, Trigger};
use crate::pipeline::task::Task;
use crate::ports::queue::QueueError;
use crate::ports::store::{ObjectStore, StoreError};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::executor::CLAIMS_PREFIX;

#[derive(Debug, Clone, Default)]
pub struct ReconcileOptions {
    /// Only uploads whose key starts with this.
    pub prefix: String,
    /// List what would be dispatched; send nothing.
    pub dry_run: bool,
    /// Also re-drive tasks whose last failure sent them to the DLQ.
    pub retry_failed: bool,
}

/// What reconcile did (or would do) with one ready task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// A job under way whose next step never started.
    Redrive,
    /// An upload nothing was done for yet (made before deployment, or its
    /// notification was lost).
    Backfill,
    /// A live claim: a worker is running it now.
    Running,
    /// Its last attempt went to the DLQ; `--retry-failed` re-drives it.
    DeadLettered,
}

#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub action: Action,
    pub upload: String,
    pub step: String,
    pub kind: String,
    pub task: String,
    pub output: String,
    /// The queue it was (or would be) sent to.
    pub queue: String,
    /// Why it was left alone, for `running` and `dead-lettered`.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ReconcileReport {
    pub dry_run: bool,
    pub uploads: usize,
    /// Uploads whose work is all done.
    pub complete: usize,
    pub items: Vec<Item>,
    /// Uploads that could not be planned: (key, error).
    pub errors: Vec<(String, String)>,
}

impl ReconcileReport {
    /// Tasks dispatched (or, in a dry run, that would be).
    pub fn dispatched(&self) -> impl Iterator<Item = &Item> {
        self.items
            .iter()
            .filter(|i| matches!(i.action, Action::Redrive | Action::Backfill))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("sending a task: {0}")]
    Queue(#[from] QueueError),
}

/// Plans every upload under the upload prefixes (and `opts.prefix`) and
/// dispatches what is ready but neither done nor running.
pub async fn reconcile(
    store: &dyn ObjectStore,
    config: &Config,
    dispatcher: &Dispatcher,
    opts: &ReconcileOptions,
) -> Result<ReconcileReport, ReconcileError> {
    let mut report = ReconcileReport {
        dry_run: opts.dry_run,
        ..ReconcileReport::default()
    };
    let mut seen_tasks = BTreeSet::new();
    for upload_prefix in &config.file.layout.uploads {
        let list_prefix = if opts.prefix.starts_with(upload_prefix.as_str()) {
            opts.prefix.clone()
        } else if upload_prefix.starts_with(opts.prefix.as_str()) {
            upload_prefix.clone()
        } else {
            continue;
        };
        for meta in store.list(&list_prefix).await? {
            if config.rule_for(&meta.key).is_none() {
                continue;
            }
            report.uploads += 1;
            let event = ObjectCreated {
                bucket: store.describe(),
                key: meta.key.clone(),
                size: Some(meta.size),
                etag: Some(meta.etag.clone()),
                version: None,
                sequencer: None,
                time: None,
            };
            let plan = match planner::plan(store, config, Trigger::Upload(&event)).await {
                Ok(p) => p,
                Err(e) => {
                    report.errors.push((meta.key.clone(), e.to_string()));
                    continue;
                }
            };
            if plan.ready.is_empty() {
                report.complete += 1;
                continue;
            }
            let started = plan.steps.iter().any(|s| s.state == StepState::Done);
            for task in plan.ready {
                if !seen_tasks.insert(task.id.clone()) {
                    continue;
                }
                let queue = dispatcher
                    .queue_for(config.hardware_for(task.kind))
                    .name()
                    .to_string();
                let (action, note) = if let Some(worker) = live_claim(store, &task).await? {
                    (Action::Running, Some(format!("claimed by {worker}")))
                } else if let Some(error) = dead_lettered(store, config, &task).await?
                    && !opts.retry_failed
                {
                    (Action::DeadLettered, Some(error))
                } else if started {
                    (Action::Redrive, None)
                } else {
                    (Action::Backfill, None)
                };
                if matches!(action, Action::Redrive | Action::Backfill) && !opts.dry_run {
                    dispatcher
                        .dispatch_for(config, std::slice::from_ref(&task))
                        .await?;
                }
                report.items.push(Item {
                    action,
                    upload: meta.key.clone(),
                    step: task.step.clone(),
                    kind: task.kind.to_string(),
                    task: task.id.clone(),
                    output: task.output.clone(),
                    queue,
                    note,
                });
            }
        }
    }
    Ok(report)
}

/// The worker holding an unexpired claim on `task`, if any.
async fn live_claim(store: &dyn ObjectStore, task: &Task) -> Result<Option<String>, StoreError> {
    let key = format!("{CLAIMS_PREFIX}{}.json", task.id);
    let bytes = match store.get_bytes(&key).await {
        Ok((bytes, _)) => bytes,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let claim: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let live = claim["expires_at"].as_u64().is_some_and(|t| t > now);
    Ok(live.then(|| claim["worker"].as_str().unwrap_or("?").to_string()))
}

/// The error of `task`'s last failure, when that attempt sent it to the DLQ.
async fn dead_lettered(
    store: &dyn ObjectStore,
    config: &Config,
    task: &Task,
) -> Result<Option<String>, StoreError> {
    let key = task.failure_key(&config.file.layout.failures);
    match store.get_bytes(&key).await {
        Ok((bytes, _)) => Ok(serde_json::from_slice::<FailureRecord>(&bytes)
            .ok()
            .filter(|r| r.dead_lettered && r.task.as_ref().is_some_and(|t| t.id == task.id))
            .map(|r| format!("{} (see {key})", r.error))),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// The report as lines for people.
pub fn render(report: &ReconcileReport) -> String {
    let mut out = String::new();
    let verb = |a: Action| match (a, report.dry_run) {
        (Action::Redrive, false) => "re-drove",
        (Action::Redrive, true) => "would re-drive",
        (Action::Backfill, false) => "backfilled",
        (Action::Backfill, true) => "would backfill",
        (Action::Running, _) => "running",
        (Action::DeadLettered, _) => "dead-lettered",
    };
    for i in &report.items {
        let _ = write!(
            out,
            "{:<15} {}  {} ({}, task {}) -> {}",
            verb(i.action),
            i.upload,
            i.step,
            i.kind,
            i.task,
            i.output
        );
        match (&i.note, i.action) {
            (Some(note), _) => {
                let _ = writeln!(out, "  [{note}]");
            }
            (None, _) => {
                let _ = writeln!(out, "  via {}", i.queue);
            }
        }
    }
    for (key, error) in &report.errors {
        let _ = writeln!(out, "{:<15} {key}: {error}", "cannot plan");
    }
    let n = report.dispatched().count();
    let _ = writeln!(
        out,
        "{} upload(s): {} complete, {} task(s) {}, {} running, {} dead-lettered, {} error(s)",
        report.uploads,
        report.complete,
        n,
        if report.dry_run {
            "to dispatch (dry run: nothing sent)"
        } else {
            "dispatched"
        },
        report
            .items
            .iter()
            .filter(|i| i.action == Action::Running)
            .count(),
        report
            .items
            .iter()
            .filter(|i| i.action == Action::DeadLettered)
            .count(),
        report.errors.len()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_store::LocalStore;
    use crate::adapters::memory_queue::MemoryQueue;
    use crate::ports::queue::Queue;
    use crate::ports::store::{Metadata, PutCondition};

    const JOB: &str = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
        "clips": [{"start": 0, "end": 1}, {"start": 2, "end": 3}]}"#;

    async fn put(store: &LocalStore, key: &str, body: &[u8], md: Metadata) {
        store
            .put_bytes(key, body, "x", &md, PutCondition::Overwrite)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn backfills_new_uploads_redrives_started_jobs_and_leaves_claimed_tasks() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        // Jobs only: the default detect rule would add a GPU task per source.
        let rules = "[[rules]]\nmatch = \"jobs/*.json\"\nkind = \"job\"\n";
        let config = Config::from_file("test", Config::parse_toml("test", rules).unwrap()).unwrap();
        let (events, _) = MemoryQueue::with_dlq("events", 3);
        let (gpu, _) = MemoryQueue::with_dlq("gpu", 3);
        let dispatcher = Dispatcher {
            events: events.clone(),
            gpu: gpu.clone(),
        };
        put(&store, "sources/m.mp4", b"video", Metadata::new()).await;
        put(&store, "jobs/a.json", JOB.as_bytes(), Metadata::new()).await;
        put(&store, "jobs/broken.json", b"{", Metadata::new()).await;

        let dry = ReconcileOptions {
            dry_run: true,
            ..Default::default()
        };
        let r = reconcile(&store, &config, &dispatcher, &dry).await.unwrap();
        assert_eq!(r.uploads, 2);
        assert_eq!(r.dispatched().count(), 2);
        assert!(r.items.iter().all(|i| i.action == Action::Backfill));
        assert_eq!(r.errors.len(), 1);
        assert_eq!(r.errors[0].0, "jobs/broken.json");
        assert!(events.is_empty().await, "a dry run sends nothing");
        let text = render(&r);
        assert!(text.contains("would backfill"), "{text}");

        // One extract is done and the other is claimed by a live worker.
        let ready = &r.items;
        let mut md = Metadata::new();
        md.insert(planner::TASK_FIELD.into(), ready[0].task.clone());
        put(&store, &ready[0].output, b"clip", md).await;
        let claim = serde_json::json!({"worker": "w1", "expires_at": u64::MAX / 2});
        put(
            &store,
            &format!("{CLAIMS_PREFIX}{}.json", ready[1].task),
            claim.to_string().as_bytes(),
            Metadata::new(),
        )
        .await;
        let r = reconcile(&store, &config, &dispatcher, &ReconcileOptions::default())
            .await
            .unwrap();
        assert_eq!(r.dispatched().count(), 0);
        assert_eq!(r.items[0].action, Action::Running);
        assert!(events.is_empty().await);

        // The claim expired (its worker died): the job is re-driven.
        store
            .delete(&format!("{CLAIMS_PREFIX}{}.json", ready[1].task))
            .await
            .unwrap();
        let r = reconcile(&store, &config, &dispatcher, &ReconcileOptions::default())
            .await
            .unwrap();
        assert_eq!(r.items.len(), 1);
        assert_eq!(r.items[0].action, Action::Redrive);
        assert_eq!(r.items[0].task, ready[1].task);
        let sent = events
            .receive(
                10,
                std::time::Duration::from_secs(5),
                std::time::Duration::ZERO,
            )
            .await
            .unwrap();
        assert_eq!(sent.len(), 1);
        assert!(sent[0].body.contains(&ready[1].task));
        assert!(gpu.is_empty().await, "extract runs on the CPU by default");
    }
}
