//! Failure records: `_reelay/failures/<job>/<step>.json`, holding the input,
//! the error and the attempts, so a user sees what went wrong in the bucket.

use serde::{Deserialize, Serialize};

use crate::pipeline::task::Task;
use crate::ports::store::{Metadata, ObjectStore, PutCondition, StoreError};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailureRecord {
    /// The object the failure is about (the manifest, or the step's input).
    pub object: String,
    pub job: Option<String>,
    pub step: String,
    /// The field at fault, when known (`clips[1].end`).
    pub field: Option<String>,
    pub error: String,
    /// `permanent` (bad input) or `transient` (infrastructure).
    pub class: String,
    /// Deliveries so far, and how many the queue allows before the DLQ.
    pub attempts: u32,
    pub max_attempts: u32,
    /// True on the last attempt: the message goes to the DLQ next.
    pub dead_lettered: bool,
    pub task: Option<Task>,
    pub worker: String,
    pub time: String,
}

impl FailureRecord {
    /// Where the record for a failed planning of `manifest` goes.
    pub fn plan_key(failures_prefix: &str, object: &str) -> String {
        format!("{failures_prefix}{object}/plan.json")
    }

    pub fn key(&self, failures_prefix: &str) -> String {
        match &self.task {
            Some(task) => task.failure_key(failures_prefix),
            None => Self::plan_key(failures_prefix, &self.object),
        }
    }

    /// Writes (or overwrites, one per attempt) the record.
    pub async fn write(
        &self,
        store: &dyn ObjectStore,
        failures_prefix: &str,
    ) -> Result<String, StoreError> {
        let key = self.key(failures_prefix);
        let body = serde_json::to_vec_pretty(self).expect("failure records serialise");
        store
            .put_bytes(
                &key,
                &body,
                "application/json",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await?;
        Ok(key)
    }
}
