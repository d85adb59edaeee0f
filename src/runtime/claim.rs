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
        // A claim released between our put and our read is gone, not
        // expired: put again, so two duplicates never both take it over.
        let mut released = 0;
        let held = loop {
            let outcome = claim.put(PutCondition::IfAbsent).await.map_err(transient)?;
            if let PutOutcome::Written(_) = outcome {
                return Ok(Claimed::Ours(claim));
            }
            match claim.store.get_bytes(&claim.key).await {
                Ok((bytes, _)) => break serde_json::from_slice::<ClaimBody>(&bytes).ok(),
                Err(e) if e.is_not_found() && released < 3 => released += 1,
                // Others keep claiming and releasing it: wait, never take over.
                Err(e) if e.is_not_found() => return Ok(Claimed::Busy(Duration::from_secs(1))),
                Err(e) => return Err(transient(e)),
            }
        };
        let now = unix_now();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_store::LocalStore;
    use crate::pipeline::task::StepKind;
    use crate::ports::store::{ObjectMeta, StoreResult};
    use std::sync::Mutex;

    /// A bucket where the claim's holder releases it the moment another
    /// worker's conditional put has found it, and which notes every put.
    struct ReleasedJustThen {
        inner: LocalStore,
        puts: Mutex<Vec<PutCondition>>,
    }

    #[async_trait]
    impl ObjectStore for ReleasedJustThen {
        fn describe(&self) -> String {
            self.inner.describe()
        }
        async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
            self.inner.head(key).await
        }
        async fn get_to_file(&self, key: &str, dest: &std::path::Path) -> StoreResult<ObjectMeta> {
            self.inner.get_to_file(key, dest).await
        }
        async fn get_bytes(&self, key: &str) -> StoreResult<(Vec<u8>, ObjectMeta)> {
            self.inner.get_bytes(key).await
        }
        async fn put_file(
            &self,
            key: &str,
            src: &std::path::Path,
            ct: &str,
            md: &Metadata,
        ) -> StoreResult<ObjectMeta> {
            self.inner.put_file(key, src, ct, md).await
        }
        async fn put_bytes(
            &self,
            key: &str,
            bytes: &[u8],
            ct: &str,
            md: &Metadata,
            condition: PutCondition,
        ) -> StoreResult<PutOutcome> {
            self.puts.lock().unwrap().push(condition);
            let outcome = self.inner.put_bytes(key, bytes, ct, md, condition).await?;
            if matches!(outcome, PutOutcome::AlreadyExists) {
                self.inner.delete(key).await?;
            }
            Ok(outcome)
        }
        async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
            self.inner.list(prefix).await
        }
        async fn delete(&self, key: &str) -> StoreResult<()> {
            self.inner.delete(key).await
        }
    }

    /// A duplicate that finds the claim released between its put and its
    /// read puts again, conditionally: it gets the claim, and never by
    /// overwriting one (a third worker may have taken it meanwhile).
    #[tokio::test]
    async fn a_claim_released_while_it_is_read_is_claimed_again_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(ReleasedJustThen {
            inner: LocalStore::open(dir.path()).unwrap(),
            puts: Mutex::new(Vec::new()),
        });
        let task = Task::new(
            StepKind::Extract,
            "extract-0",
            None,
            vec![],
            serde_json::json!({}),
            |id| format!("work/{id}.mp4"),
        );
        let lease = Duration::from_secs(30);
        let Claimed::Ours(holder) = Claim::take(store.clone(), &task, "a", lease).await.unwrap()
        else {
            panic!("the first claim is taken");
        };
        let Claimed::Ours(ours) = Claim::take(store.clone(), &task, "b", lease).await.unwrap()
        else {
            panic!("a released claim is free");
        };
        assert_eq!(
            *store.puts.lock().unwrap(),
            [
                PutCondition::IfAbsent,
                PutCondition::IfAbsent,
                PutCondition::IfAbsent
            ]
        );
        let (bytes, _) = store.get_bytes(&ours.key).await.unwrap();
        let body: ClaimBody = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            (body.worker.as_str(), body.token.as_str()),
            ("b", ours.token.as_str())
        );
        drop(holder);
    }
}
