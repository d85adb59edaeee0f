//! The router's per-message logic, shared by `reelay route`, the Lambda
//! bootstrap, `reelay work` and `reelay dev`: an upload is planned and its
//! ready steps dispatched; a task is executed. Failures become failure
//! records and retries; the queue's DLQ takes a message after N tries.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

use crate::audit::failure::FailureRecord;
use crate::events::ObjectCreated;
use crate::pipeline::message::InternalMessage;
use crate::pipeline::planner::{self, Trigger};
use crate::pipeline::task::Task;
use crate::ports::queue::Received;
use crate::runtime::consumer::{Disposition, MessageHandler};
use crate::runtime::execution::ExecutionEvent;
use crate::runtime::executor::{Executor, Outcome};
use crate::tasks::{ErrorClass, TaskError};

pub struct Router {
    pub executor: Arc<Executor>,
}

/// A message's failure, with what the failure record needs.
struct Failure {
    object: String,
    job: Option<String>,
    step: String,
    task: Option<Task>,
    error: TaskError,
}

impl Router {
    /// Handles one message body; `Ok(())` means it may be acknowledged.
    pub async fn handle_body(
        &self,
        body: &str,
        receive_count: u32,
        cancel: CancellationToken,
    ) -> Result<Option<Duration>, String> {
        let stopped = cancel.clone();
        let result = match InternalMessage::parse(body) {
            Some(Ok(InternalMessage::Task(task))) => self.run_task(task, cancel).await,
            Some(Ok(InternalMessage::Upload(event))) => self.on_upload(&event).await.map(|_| None),
            Some(Err(e)) => Err(Failure {
                object: "(message)".into(),
                job: None,
                step: "message".into(),
                task: None,
                error: TaskError::permanent(None, format!("malformed reelay message: {e}")),
            }),
            None => self.on_notification(body).await.map(|_| None),
        };
        match result {
            Ok(busy) => Ok(busy),
            Err(failure) => {
                let message = failure.error.to_string();
                // Stopped from outside (shutdown, lost message): not the input's fault.
                if !stopped.is_cancelled() {
                    self.record_failure(failure, receive_count).await;
                }
                Err(message)
            }
        }
    }

    async fn run_task(
        &self,
        mut task: Task,
        cancel: CancellationToken,
    ) -> Result<Option<Duration>, Failure> {
        self.executor.record(&task, &ExecutionEvent::Received);
        match self.executor.handle(&task, cancel).await {
            Ok(Outcome::Busy { retry_after }) => Ok(Some(retry_after)),
            Ok(_) => Ok(None),
            Err(mut error) => {
                task.attempt += 1;
                let object = crate::runtime::blame::locate(&task, &mut error);
                Err(Failure {
                    object,
                    job: task.job.as_ref().map(|j| j.id.clone()),
                    step: task.step.clone(),
                    task: Some(task),
                    error,
                })
            }
        }
    }

    /// Plans an upload and dispatches its ready steps.
    async fn on_upload(&self, event: &ObjectCreated) -> Result<usize, Failure> {
        let exec = &self.executor;
        let plan = planner::plan(exec.store.as_ref(), &exec.config, Trigger::Upload(event))
            .await
            .map_err(|e| Failure {
                object: event.key.clone(),
                job: None,
                step: "plan".into(),
                task: None,
                error: match &e {
                    planner::PlanError::Manifest(m) => {
                        TaskError::permanent(Some(m.field.clone()), e.to_string())
                    }
                    _ if e.is_permanent() => TaskError::permanent(None, e.to_string()),
                    _ => TaskError::transient(e.to_string()),
                },
            })?;
        exec.dispatcher
            .dispatch_for(&exec.config, &plan.ready)
            .await
            .map_err(|e| Failure {
                object: event.key.clone(),
                job: None,
                step: "plan".into(),
                task: None,
                error: TaskError::transient(e.to_string()),
            })?;
        if !plan.ready.is_empty() {
            tracing::info!(key = %event.key, ready = plan.ready.len(), "planned upload");
        }
        Ok(plan.ready.len())
    }

    async fn on_notification(&self, body: &str) -> Result<(), Failure> {
        let notifications = crate::events::parse_message(body).map_err(|e| Failure {
            object: "(notification)".into(),
            job: None,
            step: "notification".into(),
            task: None,
            error: TaskError::permanent(None, e.to_string()),
        })?;
        for notification in notifications {
            match notification {
                crate::events::Notification::Created(event) => {
                    if let Some(refused) = self.foreign_bucket(&event) {
                        return Err(refused);
                    }
                    self.on_upload(&event).await?;
                }
                crate::events::Notification::Ignored { reason } => {
                    tracing::debug!(%reason, "ignored notification");
                }
            }
        }
        Ok(())
    }

    /// A notification names its bucket; one for another bucket (a second
    /// R2 bucket on the same queue, a mis-wired notification) would otherwise
    /// look its key up in this one. Refused for good, naming both.
    fn foreign_bucket(&self, event: &ObjectCreated) -> Option<Failure> {
        match self.executor.store.bucket_name() {
            Some(own) if own != event.bucket => Some(Failure {
                object: event.key.clone(),
                job: None,
                step: "notification".into(),
                task: None,
                error: TaskError::permanent(
                    Some("bucket".into()),
                    format!(
                        "notification for `{}` in bucket `{}`, but this reelay works on bucket `{own}`; \
                         send only `{own}`'s notifications to this queue, or run a reelay for `{}`",
                        event.key, event.bucket, event.bucket
                    ),
                ),
            }),
            _ => None,
        }
    }

    async fn record_failure(&self, f: Failure, attempts: u32) {
        let exec = &self.executor;
        let max = exec.config.file.queue.max_receive_count;
        let record = FailureRecord {
            object: f.object,
            job: f.job,
            step: f.step,
            field: f.error.field.clone(),
            error: f.error.message.clone(),
            class: match f.error.class {
                ErrorClass::Permanent => "permanent".into(),
                ErrorClass::Transient => "transient".into(),
            },
            attempts,
            max_attempts: max,
            dead_lettered: attempts >= max,
            task: f.task,
            worker: exec.worker_id.clone(),
            time: time::OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
        };
        tracing::warn!(object = %record.object, step = %record.step, attempts, max, error = %record.error, "step failed");
        if let (true, Some(task)) = (record.dead_lettered, &record.task) {
            exec.record(
                task,
                &ExecutionEvent::DeadLettered {
                    class: f.error.class,
                },
            );
        }
        if let Err(e) = record
            .write(exec.store.as_ref(), &exec.config.file.layout.failures)
            .await
        {
            tracing::error!(error = %e, "could not write a failure record");
        }
    }

    /// Delay before retry `attempt`: doubling from the configured base, capped
    /// below the visibility timeout.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let q = &self.executor.config.file.queue;
        let secs = q
            .retry_seconds
            .saturating_mul(1 << attempt.saturating_sub(1).min(10));
        Duration::from_secs(secs.min(q.visibility_seconds))
    }
}

#[async_trait]
impl MessageHandler for Router {
    async fn handle(&self, message: &Received, cancel: CancellationToken) -> Disposition {
        match self
            .handle_body(&message.body, message.receive_count, cancel)
            .await
        {
            Ok(None) => Disposition::Ack,
            // Another worker holds this task's claim. This message may be the
            // only one left for the task (a killed worker's message comes back
            // while its claim has not yet expired), so it is never dropped:
            // it comes back after the claim's remaining lease, and then finds
            // the output (skip) or an expired claim (take over).
            Ok(Some(retry_after)) => Disposition::Requeue(retry_after),
            Err(_) => Disposition::Retry(self.backoff(message.receive_count)),
        }
    }
}
