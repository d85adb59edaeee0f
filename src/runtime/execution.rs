//! Typed execution events: what happens to a task, said once. The journal,
//! the `reelay::execution` log line and the metrics are all made from an
//! [`ExecutionEvent`], so they cannot disagree.

use std::time::Duration;

use crate::audit::record::AuditRecord;
use crate::ports::store::ObjectMeta;
use crate::tasks::ErrorClass;

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
    /// or not published, and not a failure (`runtime::supersede`).
    Superseded { reason: String },
}

/// One thing that happened to a task.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutionEvent {
    /// Its message was received and is about to be handled.
    Received,
    /// Its output already existed with this task id: nothing to do.
    SkippedAsDone,
    /// Another live worker holds its claim; it comes back later.
    Busy { retry_after: Duration },
    /// This worker took the task's claim.
    Claimed,
    /// The step started; `queue_to_start_ms` since it was dispatched, when known.
    Started { queue_to_start_ms: Option<u64> },
    /// The step published its output.
    Finished {
        device: String,
        ms: u64,
        /// The configured price of the device time, when there is one.
        cost_usd: Option<f64>,
        queue_to_start_ms: Option<u64>,
    },
    /// The step failed; it is retried up to the queue's maximum.
    Failed {
        class: ErrorClass,
        ms: Option<u64>,
        queue_to_start_ms: Option<u64>,
    },
    /// The last allowed attempt failed: the message goes to the DLQ.
    DeadLettered { class: ErrorClass },
    /// The step stopped because its lease was lost or the worker is
    /// stopping; another attempt takes over.
    Interrupted,
    /// Its input or job manifest changed since it was planned: it gave way
    /// to the newer version, which is planned instead.
    Superseded,
}

/// A metric outcome: the `outcome` dimension of the metrics contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MetricOutcome {
    Done,
    Skipped,
    Busy,
    Failed,
    DeadLettered,
    Superseded,
}

impl MetricOutcome {
    pub const ALL: [MetricOutcome; 6] = [
        MetricOutcome::Done,
        MetricOutcome::Skipped,
        MetricOutcome::Busy,
        MetricOutcome::Failed,
        MetricOutcome::DeadLettered,
        MetricOutcome::Superseded,
    ];

    /// The value of the `outcome` dimension.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricOutcome::Done => "done",
            MetricOutcome::Skipped => "skipped",
            MetricOutcome::Busy => "busy",
            MetricOutcome::Failed => "failed",
            MetricOutcome::DeadLettered => "dead_lettered",
            MetricOutcome::Superseded => "superseded",
        }
    }
}

impl ExecutionEvent {
    /// The event's name in the journal and in `reelay::execution` lines
    /// (`start`, `done`, `skip`, `busy`, `fail` as before).
    pub fn name(&self) -> &'static str {
        match self {
            ExecutionEvent::Received => "received",
            ExecutionEvent::SkippedAsDone => "skip",
            ExecutionEvent::Busy { .. } => "busy",
            ExecutionEvent::Claimed => "claimed",
            ExecutionEvent::Started { .. } => "start",
            ExecutionEvent::Finished { .. } => "done",
            ExecutionEvent::Failed { .. } => "fail",
            ExecutionEvent::DeadLettered { .. } => "dead_letter",
            ExecutionEvent::Interrupted => "interrupted",
            ExecutionEvent::Superseded => "superseded",
        }
    }

    /// The journal's name for it: the journal keeps its five events
    /// (`start`, `done`, `skip`, `busy`, `fail`; an interrupted attempt is a
    /// `fail` there) plus `superseded`, so counts made from it keep their meaning.
    pub fn journal_name(&self) -> Option<&'static str> {
        match self {
            ExecutionEvent::Received
            | ExecutionEvent::Claimed
            | ExecutionEvent::DeadLettered { .. } => None,
            ExecutionEvent::Interrupted => Some("fail"),
            other => Some(other.name()),
        }
    }

    /// The outcome it counts as; `None` for events on the way to one.
    pub fn outcome(&self) -> Option<MetricOutcome> {
        Some(match self {
            ExecutionEvent::Received | ExecutionEvent::Claimed | ExecutionEvent::Started { .. } => {
                return None;
            }
            ExecutionEvent::SkippedAsDone => MetricOutcome::Skipped,
            ExecutionEvent::Busy { .. } => MetricOutcome::Busy,
            ExecutionEvent::Finished { .. } => MetricOutcome::Done,
            ExecutionEvent::Failed { .. } => MetricOutcome::Failed,
            ExecutionEvent::DeadLettered { .. } => MetricOutcome::DeadLettered,
            ExecutionEvent::Interrupted | ExecutionEvent::Superseded => MetricOutcome::Superseded,
        })
    }

    /// The step's running time, for the journal's `millis`.
    pub fn millis(&self) -> Option<u64> {
        match self {
            ExecutionEvent::Finished { ms, .. } => Some(*ms),
            ExecutionEvent::Failed { ms, .. } => *ms,
            _ => None,
        }
    }
}
