//! A task gives way, rather than fails, when what it was planned from has
//! changed: an input replaced since planning (a new upload, or one that was
//! still being written), or its job's manifest edited or removed. Its output
//! would belong to an old lineage, so it is not published; the job is planned
//! again from its current manifest, so the newer version runs instead.

use crate::pipeline::manifest::ManifestError;
use crate::pipeline::planner::{self, PlanError, job_id};
use crate::pipeline::task::{Task, split_reference};
use crate::ports::store::{ObjectStore, StoreError};

/// Why a task's plan is out of date.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stale {
    /// `key` now has another etag than the one the task names.
    Input { key: String, planned: String },
    /// The job's manifest now describes another job (or none).
    Manifest { key: String },
}

impl std::fmt::Display for Stale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Stale::Input { key, planned } => write!(
                f,
                "input `{key}` was replaced since the task was planned from its version {planned}"
            ),
            Stale::Manifest { key } => write!(
                f,
                "job manifest `{key}` was changed or removed since the task was planned"
            ),
        }
    }
}

/// `Some` when `task` was planned from inputs or a manifest that have since
/// changed. A missing input is not "stale" (the task fails, naming it).
pub async fn check(store: &dyn ObjectStore, task: &Task) -> Result<Option<Stale>, StoreError> {
    for reference in &task.inputs {
        let (key, planned) = split_reference(reference);
        if planned.is_empty() {
            continue;
        }
        if let Some(meta) = store.head(key).await?
            && meta.etag != planned
        {
            return Ok(Some(Stale::Input {
                key: key.to_string(),
                planned: planned.to_string(),
            }));
        }
    }
    let Some(job) = &task.job else {
        return Ok(None);
    };
    match planner::load_manifest(store, &job.manifest).await {
        Ok((manifest, _)) if job_id(&manifest) == job.id => Ok(None),
        Ok(_) | Err(PlanError::Manifest(ManifestError { .. })) => Ok(Some(Stale::Manifest {
            key: job.manifest.clone(),
        })),
        Err(PlanError::Store(e)) if e.is_not_found() => Ok(Some(Stale::Manifest {
            key: job.manifest.clone(),
        })),
        Err(PlanError::Store(e)) => Err(e),
    }
}

/// The event that plans a job from its manifest again.
pub fn manifest_event(manifest: &str) -> crate::events::ObjectCreated {
    crate::events::ObjectCreated::key_only("", manifest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_store::LocalStore;
    use crate::config::Config;
    use crate::events::ObjectCreated;
    use crate::pipeline::planner::{Trigger, plan};
    use crate::ports::store::{Metadata, PutCondition};

    async fn put(store: &LocalStore, key: &str, body: &[u8]) {
        store
            .put_bytes(key, body, "x", &Metadata::new(), PutCondition::Overwrite)
            .await
            .unwrap();
    }

    fn upload(key: &str) -> ObjectCreated {
        ObjectCreated::key_only("b", key)
    }

    /// A replaced source and an edited manifest make the planned task stale;
    /// an unchanged world does not.
    #[tokio::test]
    async fn a_replaced_input_or_edited_manifest_makes_the_task_stale() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let job = br#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4", "clips": [{"start": 0, "end": 1}]}"#;
        put(&store, "sources/m.mp4", b"partial").await;
        put(&store, "jobs/a.json", job).await;
        let p = plan(
            &store,
            &Config::defaults(),
            Trigger::Upload(&upload("jobs/a.json")),
        )
        .await
        .unwrap();
        let task = &p.ready[0];
        assert_eq!(check(&store, task).await.unwrap(), None);
        put(&store, "sources/m.mp4", b"partial, now complete").await;
        assert!(matches!(
            check(&store, task).await.unwrap(),
            Some(Stale::Input { key, .. }) if key == "sources/m.mp4"
        ));
        put(&store, "sources/m.mp4", b"partial").await;
        assert_eq!(check(&store, task).await.unwrap(), None);
        let edited = String::from_utf8_lossy(job).replace("\"end\": 1", "\"end\": 2");
        put(&store, "jobs/a.json", edited.as_bytes()).await;
        assert!(matches!(
            check(&store, task).await.unwrap(),
            Some(Stale::Manifest { .. })
        ));
        store.delete("jobs/a.json").await.unwrap();
        assert!(check(&store, task).await.unwrap().is_some());
    }
}
