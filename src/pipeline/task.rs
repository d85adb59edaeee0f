//! A task: one step of work with a deterministic id. The same kind, the same
//! inputs (by etag) and the same canonical parameters always give the same id,
//! and the id decides the output key, so a redelivered message finds its own
//! finished output and skips.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the task message schema on the queues.
pub const TASK_MESSAGE_VERSION: u32 = 1;

/// The step kinds reelay knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Extract,
    Compile,
    /// Crop, upscale with a model, resize, encode: on the GPU fleet.
    Frame,
    Detect,
    Overlay,
    /// A whole job in one GPU task (the `single-container` placement).
    Export,
}

/// Where a step runs: in the router, or on the GPU fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardware {
    Cpu,
    Gpu,
}

impl StepKind {
    pub const ALL: &'static [StepKind] = &[
        StepKind::Extract,
        StepKind::Compile,
        StepKind::Frame,
        StepKind::Detect,
        StepKind::Overlay,
        StepKind::Export,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StepKind::Extract => "extract",
            StepKind::Compile => "compile",
            StepKind::Frame => "frame",
            StepKind::Detect => "detect",
            StepKind::Overlay => "overlay",
            StepKind::Export => "export",
        }
    }

    pub fn hardware(self) -> Hardware {
        match self {
            StepKind::Extract | StepKind::Compile | StepKind::Overlay => Hardware::Cpu,
            StepKind::Frame | StepKind::Detect | StepKind::Export => Hardware::Gpu,
        }
    }

    /// Extension of the object the step writes.
    pub fn output_extension(self) -> &'static str {
        match self {
            StepKind::Detect => "json",
            _ => "mp4",
        }
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        StepKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
        }
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
        }
    }

    /// The input keys without their etags.
    pub fn input_keys(&self) -> impl Iterator<Item = &str> {
        self.inputs.iter().map(|r| split_reference(r).0)
    }

    /// Where a failure of this task is recorded.
    pub fn failure_key(&self, failures_prefix: &str) -> String {
        match &self.job {
            Some(job) => format!("{failures_prefix}{}/{}.json", job.id, self.step),
            None => format!("{failures_prefix}rules/{}-{}.json", self.step, self.id),
        }
    }
}

/// `key@etag` → (`key`, `etag`). Etags never contain `@`; keys may.
pub fn split_reference(reference: &str) -> (&str, &str) {
    reference.rsplit_once('@').unwrap_or((reference, ""))
}

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
