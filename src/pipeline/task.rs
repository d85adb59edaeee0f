//! A task: one step of work with a deterministic id. The same kind, the same
//! inputs (by etag) and the same canonical parameters always give the same id,
//! and the id decides the output key, so a redelivered message finds its own
//! finished output and skips.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the task message schema on the queues.
pub const TASK_MESSAGE_VERSION: u32 = 1;

pub use crate::tasks::registry::{Hardware, StepKind};

/// The job a task belongs to, when it came from a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRef {
    /// Hash of the canonical manifest; names `work/<id>/`.
    pub id: String,
    /// The manifest's key, so whoever finishes a step can re-plan the job.
    pub manifest: String,
}

/// One unit of work, as carried on the queues (`"type": "reelay.task"`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Task {
    pub version: u32,
    pub id: String,
    #[serde(default)]
    pub job: Option<JobRef>,
    /// Step name within its job (`extract-2`, `compile`), or the rule's name.
    pub step: String,
    pub kind: StepKind,
    /// `key@etag` of each input, in order.
    pub inputs: Vec<String>,
    pub params: serde_json::Value,
    pub output: String,
    #[serde(default)]
    pub attempt: u32,
    /// Unix milliseconds when the task was last put on a queue, for the
    /// queue-to-start latency metric. Not part of the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dispatched_at_ms: Option<u64>,
}

impl Task {
    /// Builds a task, deriving its id from kind, inputs and parameters.
    pub fn new(
        kind: StepKind,
        step: impl Into<String>,
        job: Option<JobRef>,
        inputs: Vec<String>,
        params: serde_json::Value,
        output: impl FnOnce(&str) -> String,
    ) -> Task {
        let id = task_id(kind, &inputs, &params);
        let output = output(&id);
        Task::with_id(id, kind, step, job, inputs, params, output)
    }

    /// A task whose output key is fixed (a job's export, a shared detect):
    /// the key is part of the id, so two jobs writing the same work to two
    /// outputs are two tasks, not one task run twice under one claim.
    pub fn to_output(
        kind: StepKind,
        step: impl Into<String>,
        job: Option<JobRef>,
        inputs: Vec<String>,
        params: serde_json::Value,
        output: String,
    ) -> Task {
        let keyed = serde_json::json!({"params": params, "output": output});
        let id = task_id(kind, &inputs, &keyed);
        Task::with_id(id, kind, step, job, inputs, params, output)
    }

    fn with_id(
        id: String,
        kind: StepKind,
        step: impl Into<String>,
        job: Option<JobRef>,
        inputs: Vec<String>,
        params: serde_json::Value,
        output: String,
    ) -> Task {
        Task {
            version: TASK_MESSAGE_VERSION,
            id,
            job,
            step: step.into(),
            kind,
            inputs,
            params,
            output,
            attempt: 0,
            dispatched_at_ms: None,
        }
    }

    /// The input keys without their etags.
    pub fn input_keys(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|r| split_reference(r).0)
    }

    /// Milliseconds since the task was dispatched, when it says.
    pub fn queued_for_ms(&self) -> Option<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_millis() as u64;
        self.dispatched_at_ms.map(|at| now.saturating_sub(at))
    }

    /// Where a failure of this task is recorded.
    pub fn failure_key(&self, failures_prefix: &str) -> String {
        match &self.job {
            Some(job) => format!("{failures_prefix}{}/{}.json", job.id, self.step),
            None => format!("{failures_prefix}rules/{}-{}.json", self.step, self.id),
        }
    }
}

pub use crate::keys::split_reference;

/// Canonical JSON: object keys sorted (serde_json's map is ordered), no spaces.
pub fn canonical_json(value: &serde_json::Value) -> String {
    serde_json::to_string(value).expect("a JSON value always serialises")
}

/// Short hex digest of canonical parameters, for audit records.
pub fn params_hash(params: &serde_json::Value) -> String {
    hex::encode(&Sha256::digest(canonical_json(params).as_bytes())[..8])
}

/// The deterministic id: a hash of the kind, the inputs' `key@etag` in order,
/// and the canonical parameters.
pub fn task_id(kind: StepKind, inputs: &[String], params: &serde_json::Value) -> String {
    let mut h = Sha256::new();
    h.update(b"reelay-task-v1\n");
    h.update(kind.as_str().as_bytes());
    for input in inputs {
        h.update(b"\n");
        h.update(input.as_bytes());
    }
    h.update(b"\n");
    h.update(canonical_json(params).as_bytes());
    hex::encode(&h.finalize()[..10])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn id_is_deterministic_and_sensitive_to_every_part() {
        let inputs = vec!["sources/a.mp4@e1".to_string()];
        let params = json!({"start": 1.0, "end": 2.0});
        let id = task_id(StepKind::Extract, &inputs, &params);
        assert_eq!(
            id,
            task_id(
                StepKind::Extract,
                &inputs,
                &json!({"end": 2.0, "start": 1.0})
            )
        );
        assert_ne!(id, task_id(StepKind::Compile, &inputs, &params));
        assert_ne!(
            id,
            task_id(
                StepKind::Extract,
                &["sources/a.mp4@e2".to_string()],
                &params
            )
        );
        assert_ne!(
            id,
            task_id(
                StepKind::Extract,
                &inputs,
                &json!({"start": 1.0, "end": 3.0})
            )
        );
        assert_eq!(id.len(), 20);
    }

    #[test]
    fn references_split_on_the_last_at() {
        assert_eq!(
            split_reference("sources/a@b.mp4@abc"),
            ("sources/a@b.mp4", "abc")
        );
    }
}
