//! The local stand-in for bucket notifications: polls the upload prefixes of
//! a local bucket and announces each new or changed object once it has
//! stopped growing. Its first scan is the start-up reconcile.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::events::ObjectCreated;
use crate::pipeline::message::InternalMessage;
use crate::ports::queue::Queue;
use crate::ports::store::ObjectStore;

pub struct Watcher {
    pub store: Arc<dyn ObjectStore>,
    pub prefixes: Vec<String>,
    pub events: Arc<dyn Queue>,
    pub interval: Duration,
    /// True while nothing seen is waiting to settle or be announced.
    pub idle: Arc<AtomicBool>,
}

impl Watcher {
    pub async fn run(self, shutdown: CancellationToken) {
        // key → (size, etag) announced; key → size seen last poll but not yet stable.
        let mut announced: HashMap<String, (u64, String)> = HashMap::new();
        let mut settling: HashMap<String, (u64, String)> = HashMap::new();
        loop {
            let mut pending = false;
            for prefix in &self.prefixes {
                let objects = match self.store.list(prefix).await {
                    Ok(o) => o,
                    Err(e) => {
                        tracing::warn!(prefix = %prefix, error = %e, "could not list uploads");
                        continue;
                    }
                };
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
}
