//! The local stand-in for bucket notifications: polls the upload prefixes of
//! a local bucket and announces each new or changed object once it has
//! stopped growing. Its first scan is the start-up reconcile. An entry that
//! cannot be an object (a name that is no key) is skipped, not the prefix,
//! and gets one failure record naming it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::audit::failure::FailureRecord;
use crate::events::ObjectCreated;
use crate::pipeline::message::InternalMessage;
use crate::ports::queue::Queue;
use crate::ports::store::{Metadata, ObjectStore, PutCondition, Skipped};

pub struct Watcher {
    pub store: Arc<dyn ObjectStore>,
    pub prefixes: Vec<String>,
    pub events: Arc<dyn Queue>,
    pub interval: Duration,
    /// True while nothing seen is waiting to settle or be announced.
    pub idle: Arc<AtomicBool>,
    /// Where failure records go (`layout.failures`).
    pub failures: String,
}

impl Watcher {
    pub async fn run(self, shutdown: CancellationToken) {
        // key → (size, etag) announced; key → size seen last poll but not yet stable.
        let mut announced: HashMap<String, (u64, String)> = HashMap::new();
        let mut settling: HashMap<String, (u64, String)> = HashMap::new();
        let mut recorded: HashSet<Skipped> = HashSet::new();
        loop {
            let mut pending = false;
            for prefix in &self.prefixes {
                let (objects, skipped) = match self.store.list_checked(prefix).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(prefix = %prefix, error = %e, "could not list uploads");
                        continue;
                    }
                };
                for entry in skipped {
                    if !recorded.contains(&entry) && self.record_skipped(&entry).await {
                        recorded.insert(entry);
                    }
                }
                for meta in objects {
                    let seen = (meta.size, meta.etag.clone());
                    if announced.get(&meta.key) == Some(&seen) {
                        continue;
                    }
                    if settling.get(&meta.key) != Some(&seen) {
                        // New or still changing: announce once it is the same twice.
                        settling.insert(meta.key.clone(), seen);
                        pending = true;
                        continue;
                    }
                    settling.remove(&meta.key);
                    let event = ObjectCreated {
                        bucket: self.store.describe(),
                        key: meta.key.clone(),
                        size: Some(meta.size),
                        etag: Some(meta.etag.clone()),
                        version: None,
                        sequencer: None,
                        time: None,
                    };
                    match self
                        .events
                        .send(&InternalMessage::Upload(event).to_json())
                        .await
                    {
                        Ok(()) => {
                            tracing::debug!(key = %meta.key, "upload seen");
                            announced.insert(meta.key, seen);
                        }
                        Err(e) => {
                            tracing::warn!(key = %meta.key, error = %e, "could not queue an upload");
                            pending = true;
                        }
                    }
                }
            }
            self.idle.store(!pending, Ordering::SeqCst);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(self.interval) => {}
            }
        }
    }

    /// One failure record for an entry the listing skipped, at a key made
    /// from a hash of its name (the name itself is no key). True once
    /// written.
    async fn record_skipped(&self, entry: &Skipped) -> bool {
        use sha2::{Digest, Sha256};
        let record = FailureRecord {
            object: entry.name.clone(),
            job: None,
            step: "list".into(),
            field: Some("key".into()),
            error: format!(
                "`{}` is skipped, and every other upload still runs: {}",
                entry.name, entry.reason
            ),
            class: "permanent".into(),
            attempts: 1,
            max_attempts: 1,
            dead_lettered: false,
            task: None,
            worker: "watcher".into(),
            time: time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
        };
        let hash = hex::encode(&Sha256::digest(entry.name.as_bytes())[..8]);
        let key = format!("{}skipped/{hash}.json", self.failures);
        let body = serde_json::to_vec_pretty(&record).expect("failure records serialise");
        match self
            .store
            .put_bytes(
                &key,
                &body,
                "application/json",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
        {
            Ok(_) => true,
            Err(e) => {
                tracing::warn!(entry = %entry.name, error = %e, "could not record a skipped entry");
                false
            }
        }
    }
}
