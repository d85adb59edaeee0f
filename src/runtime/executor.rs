//! Runs one task with exactly-once effect: skip when the output already
//! carries the task id, claim the task so a concurrent duplicate waits, run
//! the step, publish the output atomically with its audit record, then call
//! the planner and dispatch what is ready downstream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::audit::record::{AuditRecord, metadata_size};
use crate::config::Config;
use crate::config::prices::cost_usd;
use crate::media::{Ffmpeg, Progress};
use crate::pipeline::planner::{self, Trigger};
use crate::pipeline::task::{Task, params_hash};
use crate::ports::store::{Metadata, ObjectMeta, ObjectStore, PutCondition, content_type_for};
pub use crate::runtime::claim::CLAIMS_PREFIX;
use crate::runtime::claim::{Claim, Claimed};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::execution::ExecutionEvent;
pub use crate::runtime::execution::Outcome;
use crate::runtime::journal::Journal;
use crate::runtime::lease;
use crate::runtime::metrics::Metrics;
use crate::runtime::progress::ProgressSink;
use crate::runtime::{blame, supersede};
use crate::tasks::registry::StepContext;
use crate::tasks::{self, StepOutput, TaskError};

/// Prefix of input lists too long for metadata.
pub const INPUTS_PREFIX: &str = "_reelay/inputs/";

pub struct Executor {
    pub store: Arc<dyn ObjectStore>,
    pub config: Arc<Config>,
    pub dispatcher: Dispatcher,
    pub ffmpeg: Ffmpeg,
    pub worker_id: String,
    pub progress: Arc<dyn ProgressSink>,
    pub journal: Option<Journal>,
    /// Counts execution events (and writes EMF lines in AWS mode).
    pub metrics: Arc<Metrics>,
    /// How long a claim lasts without a refresh.
    pub claim_lease: Duration,
}

impl Executor {
    /// Runs `task`, then plans and dispatches its successors.
    pub async fn handle(
        &self,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Outcome, TaskError> {
        let outcome = self.execute(task, cancel).await?;
        if let Outcome::Superseded { reason } = &outcome {
            // The newer version runs instead: plan the job from its manifest now.
            tracing::info!(task = %task.id, %reason, "superseded");
            if let Some(job) = &task.job {
                let event = supersede::manifest_event(&job.manifest);
                if let Ok(next) =
                    planner::plan(self.store.as_ref(), &self.config, Trigger::Upload(&event)).await
                {
                    self.dispatcher
                        .dispatch_for(&self.config, &next.ready)
                        .await
                        .map_err(|e| {
                            TaskError::transient(format!("dispatching the newer version: {e}"))
                        })?;
                }
            }
        } else if !matches!(outcome, Outcome::Busy { .. }) {
            // Also after a skip: a crash between publish and dispatch is healed here.
            let next = planner::plan(self.store.as_ref(), &self.config, Trigger::Finished(task))
                .await
                .map_err(|e| {
                    if e.is_permanent() {
                        TaskError::permanent(None, e.to_string())
                    } else {
                        TaskError::transient(e.to_string())
                    }
                })?;
            self.dispatcher
                .dispatch_for(&self.config, &next.ready)
                .await
                .map_err(|e| TaskError::transient(format!("dispatching the next steps: {e}")))?;
        }
        Ok(outcome)
    }

    /// Runs `task` unless its output exists; no downstream planning.
    pub async fn execute(
        &self,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Outcome, TaskError> {
        let store = self.store.as_ref();
        if let Some(meta) = planner::is_done(store, &task.output, &task.id)
            .await
            .map_err(transient)?
        {
            self.record(task, &ExecutionEvent::SkippedAsDone);
            return Ok(Outcome::Skipped { meta });
        }
        let claim =
            match Claim::take(self.store.clone(), task, &self.worker_id, self.claim_lease).await? {
                Claimed::Ours(claim) => Arc::new(claim),
                Claimed::Busy(retry_after) => {
                    self.record(task, &ExecutionEvent::Busy { retry_after });
                    return Ok(Outcome::Busy { retry_after });
                }
            };
        self.record(task, &ExecutionEvent::Claimed);
        // The claim is ours; another worker may have finished just before we took it.
        if let Some(meta) = planner::is_done(store, &task.output, &task.id)
            .await
            .map_err(transient)?
        {
            claim.release().await;
            self.record(task, &ExecutionEvent::SkippedAsDone);
            return Ok(Outcome::Skipped { meta });
        }
        if let Some(stale) = supersede::check(store, task).await.map_err(transient)? {
            claim.release().await;
            self.record(task, &ExecutionEvent::Superseded);
            return Ok(Outcome::Superseded {
                reason: stale.to_string(),
            });
        }
        // The lease keeper renews the claim; losing it stops the step.
        let step_cancel = cancel.child_token();
        let keeper = lease::keep(claim.clone(), step_cancel.clone());
        let queue_to_start_ms = task.queued_for_ms();
        self.record(task, &ExecutionEvent::Started { queue_to_start_ms });
        let started = Instant::now();
        let result = self.run_claimed(task, step_cancel.clone()).await;
        let lost = keeper.was_lost();
        keeper.stop().await;
        if !lost {
            // A lost claim may be someone else's by now: leave it to expire.
            claim.release().await;
        }
        let event = match &result {
            Ok(Outcome::Done { record, .. }) => ExecutionEvent::Finished {
                device: record.device.clone(),
                ms: record.millis,
                cost_usd: record.cost_usd,
                queue_to_start_ms,
            },
            Ok(Outcome::Superseded { .. }) => ExecutionEvent::Superseded,
            Err(_) if lost || cancel.is_cancelled() => ExecutionEvent::Interrupted,
            Err(e) => ExecutionEvent::Failed {
                class: e.class,
                ms: Some(started.elapsed().as_millis() as u64),
                queue_to_start_ms,
            },
            Ok(_) => return result,
        };
        self.record(task, &event);
        result
    }

    async fn run_claimed(
        &self,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Outcome, TaskError> {
        self.progress.started(task);
        let scratch = tempfile::Builder::new()
            .prefix("reelay-")
            .tempdir()
            .map_err(|e| TaskError::transient(format!("scratch folder: {e}")))?;
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for (i, reference) in task.inputs.iter().enumerate() {
            // A lost message or claim, or a shutdown, stops a long
            // download too, not only the FFmpeg step after it.
            let fetched = tokio::select! {
                r = self.fetch(reference, i, scratch.path()) => r,
                _ = cancel.cancelled() => Err(TaskError::transient(
                    "stopped while downloading the inputs: the message was lost or the worker is stopping",
                )),
            };
            match fetched {
                Ok(Fetched::Path(path)) => inputs.push(path),
                Ok(Fetched::Replaced(stale)) => {
                    let outcome = Outcome::Superseded {
                        reason: stale.to_string(),
                    };
                    self.progress.finished(task, Ok(&outcome));
                    return Ok(outcome);
                }
                Err(e) => {
                    self.progress.finished(task, Err(&e));
                    return Err(e);
                }
            }
        }
        let output = scratch.path().join(format!(
            "output.{}",
            task.output.rsplit('.').next().unwrap_or("bin")
        ));
        let started_wall = SystemTime::now();
        let started = Instant::now();
        let shown: Vec<(PathBuf, String)> = inputs
            .iter()
            .cloned()
            .zip(task.input_keys().map(str::to_string))
            .collect();
        let step = self
            .run_step(task, inputs, output.clone(), cancel)
            .await
            .map_err(|mut e| {
                e.message = blame::keys_for_paths(&e.message, &shown);
                e
            });
        let millis = started.elapsed().as_millis() as u64;
        // A step that failed on an input replaced under it (an upload still
        // being written), or whose job was edited meanwhile, gives way; so
        // does a finished one: its output must not be published.
        if let Some(stale) = supersede::check(self.store.as_ref(), task)
            .await
            .map_err(transient)?
        {
            let outcome = Outcome::Superseded {
                reason: stale.to_string(),
            };
            self.progress.finished(task, Ok(&outcome));
            return Ok(outcome);
        }
        let step = match step {
            Ok(s) => s,
            Err(e) => {
                self.progress.finished(task, Err(&e));
                return Err(e);
            }
        };
        let record = self.audit_record(task, &step, started_wall, millis);
        let (meta, record) = self.publish(task, &output, record, step.metadata).await?;
        let outcome = Outcome::Done {
            meta,
            record: Box::new(record),
        };
        self.progress.finished(task, Ok(&outcome));
        Ok(outcome)
    }

    /// The audit record of a step that just ran.
    fn audit_record(
        &self,
        task: &Task,
        step: &StepOutput,
        started_wall: SystemTime,
        millis: u64,
    ) -> AuditRecord {
        let device = step
            .metadata
            .get(crate::audit::record::DEVICE)
            .cloned()
            .unwrap_or_else(|| "cpu".into());
        AuditRecord {
            task: task.id.clone(),
            job: task.job.as_ref().map(|j| j.id.clone()),
            kind: task.kind.to_string(),
            step: task.step.clone(),
            inputs: task.inputs.clone(),
            inputs_pointer: None,
            params_hash: params_hash(&task.params),
            model: step.metadata.get(crate::audit::record::MODEL).cloned(),
            cost_usd: cost_usd(&self.config.file.prices, &device, millis),
            device,
            started: time::OffsetDateTime::from(started_wall)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            millis,
            version: env!("CARGO_PKG_VERSION").into(),
            worker: self.worker_id.clone(),
            manifest: task.job.as_ref().map(|j| j.manifest.clone()),
        }
    }

    /// Writes the output with its audit record as metadata, in one put; an
    /// input list too long for metadata goes beside it, pointed at.
    async fn publish(
        &self,
        task: &Task,
        output: &Path,
        mut record: AuditRecord,
        step_metadata: Metadata,
    ) -> Result<(ObjectMeta, AuditRecord), TaskError> {
        let mut metadata = record.to_metadata();
        metadata.extend(step_metadata.clone());
        if metadata_size(&metadata) > 2048 {
            // Keep the full input list next to the output; the metadata points at it.
            let pointer = format!("{INPUTS_PREFIX}{}.json", task.id);
            let body = serde_json::to_vec(&task.inputs).expect("inputs serialise");
            self.store
                .put_bytes(
                    &pointer,
                    &body,
                    "application/json",
                    &Metadata::new(),
                    PutCondition::Overwrite,
                )
                .await
                .map_err(transient)?;
            record.inputs_pointer = Some(pointer);
            metadata = record.to_metadata();
            metadata.extend(step_metadata);
        }
        let meta = self
            .store
            .put_file(
                &task.output,
                output,
                content_type_for(&task.output),
                &metadata,
            )
            .await
            .map_err(transient)?;
        Ok((meta, record))
    }

    async fn run_step(
        &self,
        task: &Task,
        inputs: Vec<PathBuf>,
        output: PathBuf,
        cancel: CancellationToken,
    ) -> Result<StepOutput, TaskError> {
        let ff = self.ffmpeg.clone();
        let profile = self.config.file.output.clone();
        let device = self.config.file.device.clone();
        let params = task.params.clone();
        let kind = task.kind;
        let progress = self.progress.clone();
        let task_for_progress = task.clone();
        let mut on_progress = move |p: Progress| progress.progress(&task_for_progress, &p);
        tokio::task::spawn_blocking(move || {
            let mut ctx = StepContext {
                ffmpeg: &ff,
                profile: &profile,
                device: &device,
                on_progress: &mut on_progress,
                cancel: &cancel,
            };
            tasks::step(kind).run(&inputs, &output, &params, &mut ctx)
        })
        .await
        .map_err(|e| TaskError::transient(format!("step thread failed: {e}")))?
    }

    /// A local path for input `reference` (`key@etag`): the store's own
    /// file when it has one, else a download of that version.
    async fn fetch(
        &self,
        reference: &str,
        index: usize,
        scratch: &Path,
    ) -> Result<Fetched, TaskError> {
        let (key, etag) = crate::keys::split_reference(reference);
        let replaced = || {
            Fetched::Replaced(supersede::Stale::Input {
                key: key.to_string(),
                planned: etag.to_string(),
            })
        };
        if let Some(path) = self.store.local_path(key)
            && path.is_file()
        {
            // The store compares: FFmpeg reads the file in place, and the
            // check after the step catches a replacement while it reads.
            let now = self.store.head(key).await.map_err(transient)?;
            return Ok(match now {
                Some(m) if !etag.is_empty() && m.etag != etag => replaced(),
                _ => Fetched::Path(path),
            });
        }
        let ext = key
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("bin");
        let dest = scratch.join(format!("input-{index}.{ext}"));
        let got = if etag.is_empty() {
            self.store.get_to_file(key, &dest).await
        } else {
            self.store.get_version_to_file(key, etag, &dest).await
        };
        match got {
            Ok(_) => Ok(Fetched::Path(dest)),
            Err(e) if e.is_changed() => Ok(replaced()),
            Err(e) if e.is_not_found() => Err(TaskError::permanent(
                Some("input".into()),
                format!("input `{key}` is gone from the bucket; re-upload it"),
            )),
            Err(e) => Err(transient(e)),
        }
    }

    /// Logs, journals and counts one execution event: the one place an
    /// execution event goes out, so the three cannot disagree.
    pub fn record(&self, task: &Task, event: &ExecutionEvent) {
        let name = event.name();
        let millis = event.millis();
        // One structured line per execution event, so a fleet's logs count
        // executions as the journal does in a local bucket. Where there is a
        // journal (`reelay dev`, tests) the line is debug, keeping the
        // console to progress.
        macro_rules! execution {
            ($level:ident) => {
                tracing::$level!(
                    target: "reelay::execution",
                    event = name,
                    task = %task.id,
                    kind = %task.kind,
                    step = %task.step,
                    job = task.job.as_ref().map(|j| j.id.as_str()).unwrap_or(""),
                    worker = %self.worker_id,
                    millis = millis.unwrap_or(0),
                    "execution"
                )
            };
        }
        match &self.journal {
            Some(j) => {
                execution!(debug);
                if let Some(entry) = event.journal_name() {
                    j.record(entry, task, &self.worker_id, millis);
                }
            }
            None => execution!(info),
        }
        self.metrics.observe(task.kind, event);
    }
}

/// What fetching one input gave.
enum Fetched {
    /// The version the task names, at this path.
    Path(PathBuf),
    /// The input was replaced since the task was planned.
    Replaced(supersede::Stale),
}

fn transient(e: impl std::fmt::Display) -> TaskError {
    TaskError::transient(e.to_string())
}
