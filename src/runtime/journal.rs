//! An append-only log of step executions (`.reelay/journal.jsonl` in a local
//! bucket). It is how tests and `reelay dev` count that every expensive step
//! ran exactly once.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::pipeline::task::Task;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JournalEntry {
    /// `start`, `done`, `skip` (output existed), `busy` (claimed elsewhere) or `fail`.
    pub event: String,
    pub task: String,
    pub kind: String,
    pub step: String,
    pub job: Option<String>,
    pub worker: String,
    pub millis: Option<u64>,
}

#[derive(Clone)]
pub struct Journal {
    path: PathBuf,
    lock: Arc<Mutex<()>>,
}

impl Journal {
    pub fn new(path: PathBuf) -> Journal {
        Journal {
            path,
            lock: Arc::new(Mutex::new(())),
        }
    }

    pub fn record(&self, event: &str, task: &Task, worker: &str, millis: Option<u64>) {
        let entry = JournalEntry {
            event: event.into(),
            task: task.id.clone(),
            kind: task.kind.to_string(),
            step: task.step.clone(),
            job: task.job.as_ref().map(|j| j.id.clone()),
            worker: worker.into(),
            millis,
        };
        let line = serde_json::to_string(&entry).expect("entries serialise") + "\n";
        let _guard = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        // One write per line with O_APPEND keeps lines whole across processes.
        // Never through a symlink: the journal lives in the user's folder.
        let written = crate::policy::fs::open_append(&self.path)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "could not append to the journal");
        }
    }

    /// Every entry so far (a torn last line is skipped).
    pub fn read(path: &std::path::Path) -> Vec<JournalEntry> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}
