//! Where step progress goes: log lines in services, bars in `reelay demo`.

use crate::media::Progress;
use crate::pipeline::task::Task;
use crate::runtime::execution::Outcome;
use crate::tasks::TaskError;

pub trait ProgressSink: Send + Sync {
    fn started(&self, task: &Task);
    fn progress(&self, task: &Task, progress: &Progress);
    fn finished(&self, task: &Task, result: Result<&Outcome, &TaskError>);
}

/// Logs start and end of each step; progress is too chatty for logs.
pub struct LogProgress;

impl ProgressSink for LogProgress {
    fn started(&self, task: &Task) {
        tracing::info!(task = %task.id, kind = %task.kind, step = %task.step, output = %task.output, "step started");
    }
    fn progress(&self, _task: &Task, _progress: &Progress) {}
    fn finished(&self, task: &Task, result: Result<&Outcome, &TaskError>) {
        match result {
            Ok(Outcome::Done { record, .. }) => {
                tracing::info!(task = %task.id, kind = %task.kind, step = %task.step, device = %record.device, ms = record.millis, "step done")
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(task = %task.id, kind = %task.kind, step = %task.step, error = %e, "step failed")
            }
        }
    }
}
