//! Runs one task with exactly-once effect: skip when the output already
//! carries the task id, claim the task so a concurrent duplicate waits, run
//! the step, publish the output atomically with its audit record, then call
//! the planner and dispatch what is ready downstream.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::audit::record::{AuditRecord, metadata_size};
use crate::config::Config;
use crate::config::prices::cost_usd;
use crate::media::{Ffmpeg, Progress};
use crate::pipeline::planner::{self, Trigger};
use crate::pipeline::task::{StepKind, Task, params_hash};
use crate::ports::store::{
    Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, content_type_for,
};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::journal::Journal;
use crate::runtime::progress::ProgressSink;
use crate::runtime::{blame, supersede};
use crate::tasks::{self, StepOutput, TaskError};

/// Prefix of claim objects: `_reelay/claims/<task-id>.json`.
pub const CLAIMS_PREFIX: &str = "_reelay/claims/";
/// Prefix of input lists too long for metadata.
pub const INPUTS_PREFIX: &str = "_reelay/inputs/";

/// How a task ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Ran and published its output.
    Done {
        meta: ObjectMeta,
        record: Box<AuditRecord>,
    },
    /// The output already existed with this task id.
    Skipped { meta: ObjectMeta },
    /// Another live worker holds the claim; try again later.
    Busy { retry_after: Duration },
    /// Planned from an input or manifest that has since changed: not run
    /// or not published, and not a failure ([`supersede`]).
    Superseded { reason: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Claim {
    worker: String,
    /// Unix seconds after which the claim may be taken over.
    expires_at: u64,
    /// Unique per attempt: a conditional put retried after its answer was
    /// lost finds its own claim, and must not take it for someone else's.
    #[serde(default)]
    token: String,
}

pub struct Executor {
    pub store: Arc<dyn ObjectStore>,
    pub config: Arc<Config>,
    pub dispatcher: Dispatcher,
    pub ffmpeg: Ffmpeg,
    pub worker_id: String,
    pub progress: Arc<dyn ProgressSink>,
    pub journal: Option<Journal>,
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
            self.journal("skip", task, None);
            return Ok(Outcome::Skipped { meta });
        }
        if let Some(retry_after) = self.claim(task).await? {
            self.journal("busy", task, None);
            return Ok(Outcome::Busy { retry_after });
        }
        // The claim is ours; another worker may have finished just before we took it.
        if let Some(meta) = planner::is_done(store, &task.output, &task.id)
            .await
            .map_err(transient)?
        {
            self.release(task).await;
            self.journal("skip", task, None);
            return Ok(Outcome::Skipped { meta });
        }
        if let Some(stale) = supersede::check(store, task).await.map_err(transient)? {
            self.release(task).await;
            self.journal("superseded", task, None);
            return Ok(Outcome::Superseded {
                reason: stale.to_string(),
            });
        }
        let refresher = self.keep_claim(task);
        let result = self.run_claimed(task, cancel).await;
        refresher.cancel();
        self.release(task).await;
        match &result {
            Ok(Outcome::Done { record, .. }) => self.journal("done", task, Some(record.millis)),
            Ok(Outcome::Superseded { .. }) => self.journal("superseded", task, None),
            Err(_) => self.journal("fail", task, None),
            _ => {}
        }
        result
    }

    async fn run_claimed(
        &self,
        task: &Task,
        cancel: CancellationToken,
    ) -> Result<Outcome, TaskError> {
        self.journal("start", task, None);
        self.progress.started(task);
        let scratch = tempfile::Builder::new()
            .prefix("reelay-")
            .tempdir()
            .map_err(|e| TaskError::transient(format!("scratch folder: {e}")))?;
        let mut inputs = Vec::with_capacity(task.inputs.len());
        for (i, key) in task.input_keys().enumerate() {
            // A lost message (failed heartbeat) or a shutdown stops a long
            // download too, not only the FFmpeg step after it.
            let fetched = tokio::select! {
                r = self.fetch(key, i, scratch.path()) => r,
                _ = cancel.cancelled() => Err(TaskError::transient(
                    "stopped while downloading the inputs: the message was lost or the worker is stopping",
                )),
            };
            match fetched {
                Ok(path) => inputs.push(path),
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
        let device = step
            .metadata
            .get(crate::audit::record::DEVICE)
            .cloned()
            .unwrap_or_else(|| "cpu".into());
        let mut record = AuditRecord {
            task: task.id.clone(),
            job: task.job.as_ref().map(|j| j.id.clone()),
            kind: task.kind.to_string(),
            step: task.step.clone(),
            inputs: task.inputs.clone(),
            inputs_pointer: None,
            params_hash: params_hash(&task.params),
            model: step.metadata.get(crate::audit::record::MODEL).cloned(),
            device: device.clone(),
            started: time::OffsetDateTime::from(started_wall)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            millis,
            cost_usd: cost_usd(&self.config.file.prices, &device, millis),
            version: env!("CARGO_PKG_VERSION").into(),
            worker: self.worker_id.clone(),
            manifest: task.job.as_ref().map(|j| j.manifest.clone()),
        };
        let mut metadata = record.to_metadata();
        metadata.extend(step.metadata.clone());
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
            metadata.extend(step.metadata);
        }
        let meta = self
            .store
            .put_file(
                &task.output,
                &output,
                content_type_for(&task.output),
                &metadata,
            )
            .await
            .map_err(transient)?;
        let outcome = Outcome::Done {
            meta,
            record: Box::new(record),
        };
        self.progress.finished(task, Ok(&outcome));
        Ok(outcome)
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
        tokio::task::spawn_blocking(move || match kind {
            StepKind::Extract => {
                let p = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                tasks::extract::run(
                    &ff,
                    &inputs[0],
                    &output,
                    &p,
                    &profile,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Compile => {
                let p = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                let font = tasks::compile::locate_font()?;
                tasks::compile::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    &font,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Frame => {
                let p = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                // The worker's device when the task names none; the model
                // records the device it really ran on.
                let device = device.parse().unwrap_or_default();
                tasks::frame::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Detect => {
                let p = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                let device = device
                    .parse()
                    .map_err(|e: String| TaskError::permanent(Some("device".into()), e))?;
                tasks::detect::run(
                    &ff,
                    &inputs[0],
                    &output,
                    &p,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Export => {
                let p = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                let device = device.parse().unwrap_or_default();
                tasks::export::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Overlay => {
                let p: tasks::overlay::OverlayParams = serde_json::from_value(params)
                    .map_err(|e| TaskError::permanent(Some("params".into()), e.to_string()))?;
                let font = p.font()?;
                tasks::overlay::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    font,
                    &mut on_progress,
                    &cancel,
                )
            }
        })
        .await
        .map_err(|e| TaskError::transient(format!("step thread failed: {e}")))?
    }

    /// A local path for input `key`: the store's own file when it has one.
    async fn fetch(&self, key: &str, index: usize, scratch: &Path) -> Result<PathBuf, TaskError> {
        if let Some(path) = self.store.local_path(key)
            && path.is_file()
        {
            return Ok(path);
        }
        let ext = key
            .rsplit_once('.')
            .map(|(_, e)| e)
            .filter(|e| e.len() <= 5 && e.chars().all(|c| c.is_ascii_alphanumeric()))
            .unwrap_or("bin");
        let dest = scratch.join(format!("input-{index}.{ext}"));
        match self.store.get_to_file(key, &dest).await {
            Ok(_) => Ok(dest),
            Err(e) if e.is_not_found() => Err(TaskError::permanent(
                Some("input".into()),
                format!("input `{key}` is gone from the bucket; re-upload it"),
            )),
            Err(e) => Err(transient(e)),
        }
    }

    /// `None` when the claim is ours; `Some(wait)` when a live worker holds it.
    async fn claim(&self, task: &Task) -> Result<Option<Duration>, TaskError> {
        let key = format!("{CLAIMS_PREFIX}{}.json", task.id);
        let token = claim_token();
        let body = self.claim_body(&token);
        match self
            .store
            .put_bytes(
                &key,
                &body,
                "application/json",
                &Metadata::new(),
                PutCondition::IfAbsent,
            )
            .await
            .map_err(transient)?
        {
            PutOutcome::Written(_) => Ok(None),
            PutOutcome::AlreadyExists => {
                let now = unix_now();
                let held = match self.store.get_bytes(&key).await {
                    Ok((bytes, _)) => serde_json::from_slice::<Claim>(&bytes).ok(),
                    Err(e) if e.is_not_found() => None,
                    Err(e) => return Err(transient(e)),
                };
                match held {
                    // Our own put, retried after its answer was lost: ours.
                    Some(c) if c.token == token => Ok(None),
                    Some(c) if c.expires_at > now => {
                        Ok(Some(Duration::from_secs((c.expires_at - now).clamp(1, 30))))
                    }
                    _ => {
                        // Expired (its worker died) or unreadable: take it over.
                        tracing::info!(task = %task.id, "taking over an expired claim");
                        self.store
                            .put_bytes(
                                &key,
                                &body,
                                "application/json",
                                &Metadata::new(),
                                PutCondition::Overwrite,
                            )
                            .await
                            .map_err(transient)?;
                        Ok(None)
                    }
                }
            }
        }
    }

    fn claim_body(&self, token: &str) -> Vec<u8> {
        serde_json::to_vec(&Claim {
            worker: self.worker_id.clone(),
            expires_at: unix_now() + self.claim_lease.as_secs().max(1),
            token: token.to_string(),
        })
        .expect("claims serialise")
    }

    /// Refreshes the claim every third of its lease while the step runs.
    fn keep_claim(&self, task: &Task) -> CancellationToken {
        let stop = CancellationToken::new();
        let (store, key, lease) = (
            self.store.clone(),
            format!("{CLAIMS_PREFIX}{}.json", task.id),
            self.claim_lease,
        );
        let worker = self.worker_id.clone();
        let token = stop.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = token.cancelled() => return,
                    _ = tokio::time::sleep(lease / 3) => {}
                }
                let body = serde_json::to_vec(&Claim {
                    worker: worker.clone(),
                    expires_at: unix_now() + lease.as_secs().max(1),
                    token: claim_token(),
                })
                .expect("claims serialise");
                if let Err(e) = store
                    .put_bytes(
                        &key,
                        &body,
                        "application/json",
                        &Metadata::new(),
                        PutCondition::Overwrite,
                    )
                    .await
                {
                    tracing::warn!(claim = %key, error = %e, "could not refresh a claim");
                }
            }
        });
        stop
    }

    async fn release(&self, task: &Task) {
        let key = format!("{CLAIMS_PREFIX}{}.json", task.id);
        if let Err(e) = self.store.delete(&key).await {
            tracing::warn!(claim = %key, error = %e, "could not release a claim; it expires on its own");
        }
    }

    fn journal(&self, event: &str, task: &Task, millis: Option<u64>) {
        // One structured line per execution event, so a fleet's logs count
        // executions as the journal does in a local bucket. Where there is a
        // journal (`reelay dev`, tests) the line is debug, keeping the
        // console to progress.
        macro_rules! execution {
            ($level:ident) => {
                tracing::$level!(
                    target: "reelay::execution",
                    event,
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
                j.record(event, task, &self.worker_id, millis);
            }
            None => execution!(info),
        }
    }
}

fn transient(e: impl std::fmt::Display) -> TaskError {
    TaskError::transient(e.to_string())
}

/// A fresh random token for one claim attempt.
fn claim_token() -> String {
    format!("{:032x}", rand::random::<u128>())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
