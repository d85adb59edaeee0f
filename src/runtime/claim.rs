//! Claims: a task's short-lived lock in the bucket, so a concurrent
//! duplicate of a running task waits instead of running twice. A claim is
//! `_reelay/claims/<task-id>.json`, written if absent, renewed by the lease
//! keeper while the step runs, deleted when it ends, and taken over once
//! its lease has expired (its worker died).

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::pipeline::task::Task;
use crate::ports::store::{Metadata, ObjectStore, PutCondition, PutOutcome};
use crate::runtime::lease::{Lease, RenewError};
use crate::tasks::TaskError;

/// Prefix of claim objects: `_reelay/claims/<task-id>.json`.
pub const CLAIMS_PREFIX: &str = "_reelay/claims/";

#[derive(Debug, Serialize, Deserialize)]
struct ClaimBody {
    worker: String,
    /// Unix seconds after which the claim may be taken over.
    expires_at: u64,
    /// Unique per attempt: a conditional put retried after its answer was
    /// lost finds its own claim, and must not take it for someone else's.
    #[serde(default)]
    token: String,
}

/// One worker's claim on one task.
pub struct Claim {
    store: Arc<dyn ObjectStore>,
    key: String,
    worker: String,
    token: String,
    /// How long the claim lasts without a renewal.
    lease: Duration,
}

/// What trying to claim a task found.
pub enum Claimed {
    /// The claim is ours; renew it with [`crate::runtime::lease::keep`].
    Ours(Claim),
    /// A live worker holds it; try again after this long.
    Busy(Duration),
}

impl Claim {
    /// Claims `task` for `worker`, or says how long its live holder has left.
    pub async fn take(
        store: Arc<dyn ObjectStore>,
        task: &Task,
        worker: &str,
        lease: Duration,
    ) -> Result<Claimed, TaskError> {
        let claim = Claim {
            store,
            key: format!("{CLAIMS_PREFIX}{}.json", task.id),
            worker: worker.to_string(),
            token: format!("{:032x}", rand::random::<u128>()),
            lease,
        };
        let outcome = claim.put(PutCondition::IfAbsent).await.map_err(transient)?;
        if let PutOutcome::Written(_) = outcome {
            return Ok(Claimed::Ours(claim));
        }
        let now = unix_now();
        let held = match claim.store.get_bytes(&claim.key).await {
            Ok((bytes, _)) => serde_json::from_slice::<ClaimBody>(&bytes).ok(),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(transient(e)),
        };
        match held {
            // Our own put, retried after its answer was lost: ours.
            Some(c) if c.token == claim.token => Ok(Claimed::Ours(claim)),
            Some(c) if c.expires_at > now => Ok(Claimed::Busy(Duration::from_secs(
                (c.expires_at - now).clamp(1, 30),
            ))),
            _ => {
                // Expired (its worker died) or unreadable: take it over.
                tracing::info!(task = %task.id, "taking over an expired claim");
                claim
                    .put(PutCondition::Overwrite)
                    .await
                    .map_err(transient)?;
                Ok(Claimed::Ours(claim))
            }
        }
    }

    /// Deletes the claim; one that cannot be deleted expires on its own.
    pub async fn release(&self) {
        if let Err(e) = self.store.delete(&self.key).await {
            tracing::warn!(claim = %self.key, error = %e, "could not release a claim; it expires on its own");
        }
    }

    async fn put(
        &self,
        condition: PutCondition,
    ) -> Result<PutOutcome, crate::ports::store::StoreError> {
        let body = serde_json::to_vec(&ClaimBody {
            worker: self.worker.clone(),
            expires_at: unix_now() + self.lease.as_secs().max(1),
            token: self.token.clone(),
        })
        .expect("claims serialise");
        self.store
            .put_bytes(
                &self.key,
                &body,
                "application/json",
                &Metadata::new(),
                condition,
            )
            .await
    }
}

#[async_trait]
impl Lease for Claim {
    fn name(&self) -> &str {
        "claim"
    }
    fn period(&self) -> Duration {
        self.lease
    }
    async fn renew(&self) -> Result<(), RenewError> {
        self.put(PutCondition::Overwrite)
            .await
            .map(|_| ())
            .map_err(|e| RenewError::Failed(format!("refreshing claim `{}`: {e}", self.key)))
    }
}

fn transient(e: impl std::fmt::Display) -> TaskError {
    TaskError::transient(e.to_string())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
