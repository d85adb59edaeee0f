//! `reelay audit KEY`: walks an object's lineage back to the uploads, as a
//! tree with each step's kind, device, time and cost.

use std::collections::HashSet;
use std::fmt::Write;

use serde::Serialize;

use crate::audit::record::AuditRecord;
use crate::keys::split_reference;
use crate::ports::store::{ObjectStore, StoreError};

/// Deepest lineage walked.
const MAX_DEPTH: usize = 32;
/// Most nodes one lineage shows; metadata is user-writable, so a crafted
/// graph must not make `reelay audit` walk for ever.
const MAX_NODES: usize = 10_000;

/// Why a node is shown without its inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cut {
    /// The object is already on the path from the root: its metadata loops.
    Cycle,
    /// The same step output was shown earlier in the tree (counted once).
    ShownAbove,
    /// The walk reached its depth or node limit.
    Limit,
}

#[derive(Debug, Clone, Serialize)]
pub struct LineageNode {
    pub key: String,
    pub etag: String,
    pub size: Option<u64>,
    /// `None` for uploads (objects reelay did not write).
    pub record: Option<AuditRecord>,
    /// True when the object now has another etag than the one consumed.
    pub changed_since: bool,
    pub missing: bool,
    pub inputs: Vec<LineageNode>,
    /// Set when the walk did not expand this node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
}

impl LineageNode {
    /// Cost of this object and everything upstream of it.
    pub fn total_cost(&self) -> f64 {
        self.record
            .as_ref()
            .and_then(|r| r.cost_usd)
            .filter(|c| c.is_finite())
            .unwrap_or(0.0)
            + self.inputs.iter().map(|n| n.total_cost()).sum::<f64>()
    }

    /// Device milliseconds of this object and everything upstream of it.
    pub fn total_millis(&self) -> u64 {
        self.inputs
            .iter()
            .fold(self.record.as_ref().map_or(0, |r| r.millis), |sum, n| {
                sum.saturating_add(n.total_millis())
            })
    }

    /// Every reelay-written node, depth first.
    pub fn steps(&self) -> Vec<&LineageNode> {
        let mut out = Vec::new();
        fn walk<'a>(n: &'a LineageNode, out: &mut Vec<&'a LineageNode>) {
            if n.record.is_some() {
                out.push(n);
            }
            for i in &n.inputs {
                walk(i, out);
            }
        }
        walk(self, &mut out);
        out
    }
}

/// Builds the lineage tree of `key`.
pub async fn lineage(store: &dyn ObjectStore, key: &str) -> Result<LineageNode, StoreError> {
    let meta = store
        .head(key)
        .await?
        .ok_or_else(|| StoreError::NotFound { key: key.into() })?;
    let mut walker = Walker {
        store,
        path: Vec::new(),
        seen: HashSet::new(),
        nodes: 0,
    };
    Box::pin(walker.walk(key, Some(meta.etag.clone()))).await
}

/// One lineage walk: the keys on the current path (cycle check) and the
/// step outputs already shown (each counted once).
struct Walker<'a> {
    store: &'a dyn ObjectStore,
    path: Vec<String>,
    seen: HashSet<String>,
    nodes: usize,
}

impl Walker<'_> {
    async fn walk(
        &mut self,
        key: &str,
        expected_etag: Option<String>,
    ) -> Result<LineageNode, StoreError> {
        self.nodes += 1;
        let cut = if self.path.iter().any(|k| k == key) {
            Some(Cut::Cycle)
        } else if self.path.len() >= MAX_DEPTH || self.nodes > MAX_NODES {
            Some(Cut::Limit)
        } else {
            None
        };
        if let Some(cut) = cut {
            return Ok(LineageNode {
                key: key.into(),
                etag: expected_etag.unwrap_or_default(),
                size: None,
                record: None,
                changed_since: false,
                missing: false,
                inputs: vec![],
                cut: Some(cut),
            });
        }
        self.path.push(key.to_string());
        let node = Box::pin(self.expand(key, expected_etag)).await;
        self.path.pop();
        node
    }

    async fn expand(
        &mut self,
        key: &str,
        expected_etag: Option<String>,
    ) -> Result<LineageNode, StoreError> {
        let store = self.store;
        let Some(meta) = store.head(key).await? else {
            return Ok(LineageNode {
                key: key.into(),
                etag: expected_etag.unwrap_or_default(),
                size: None,
                record: None,
                changed_since: false,
                missing: true,
                inputs: vec![],
                cut: None,
            });
        };
        let changed_since = expected_etag
            .as_deref()
            .is_some_and(|e| !e.is_empty() && e != meta.etag);
        let mut record = AuditRecord::from_metadata(&meta.metadata);
        let mut inputs = Vec::new();
        let mut cut = None;
        if record.is_some() && !self.seen.insert(format!("{key}@{}", meta.etag)) {
            // A step output shown already: once in the tree, once in the totals.
            record = None;
            cut = Some(Cut::ShownAbove);
        }
        if let Some(r) = record.as_mut() {
            if let Some(pointer) = &r.inputs_pointer
                && let Ok((bytes, _)) = store.get_bytes(pointer).await
            {
                r.inputs = serde_json::from_slice(&bytes).unwrap_or_default();
            }
            for reference in r.inputs.clone() {
                let (input_key, etag) = split_reference(&reference);
                inputs.push(Box::pin(self.walk(input_key, Some(etag.to_string()))).await?);
            }
        }
        Ok(LineageNode {
            key: key.into(),
            etag: meta.etag,
            size: Some(meta.size),
            record,
            changed_since,
            missing: false,
            inputs,
            cut,
        })
    }
}

/// Renders the tree for a terminal.
pub fn render(root: &LineageNode) -> String {
    let mut out = String::new();
    line(&mut out, root, "", "");
    let _ = writeln!(
        out,
        "total: {} step(s), {:.1} s device time, ${:.6}",
        root.steps().len(),
        root.total_millis() as f64 / 1000.0,
        root.total_cost()
    );
    out
}

fn describe(n: &LineageNode) -> String {
    match n.cut {
        Some(Cut::Cycle) => {
            return format!(
                "{}  (cycle: this object is already on the path above; its audit metadata loops)",
                n.key
            );
        }
        Some(Cut::ShownAbove) => return format!("{}  (shown above)", n.key),
        Some(Cut::Limit) => {
            return format!("{}  (not expanded: lineage too deep or too large)", n.key);
        }
        None => {}
    }
    if n.missing {
        return format!("{}  (missing)", n.key);
    }
    let note = if n.changed_since {
        "  (changed since it was used)"
    } else {
        ""
    };
    match &n.record {
        Some(r) => format!(
            "{}  [{} {}] {} {:.2}s {}  task {}{note}",
            n.key,
            r.kind,
            r.step,
            r.device,
            r.millis as f64 / 1000.0,
            r.cost_usd
                .map_or_else(|| "unpriced".to_string(), |c| format!("${c:.6}")),
            r.task,
        ),
        None => format!(
            "{}  [upload] {} bytes, etag {}{note}",
            n.key,
            n.size.unwrap_or(0),
            n.etag
        ),
    }
}

fn line(out: &mut String, n: &LineageNode, first: &str, rest: &str) {
    // Keys and metadata come from the bucket: never let them drive the terminal.
    let _ = writeln!(
        out,
        "{first}{}",
        crate::policy::text::for_terminal(&describe(n))
    );
    let count = n.inputs.len();
    for (i, child) in n.inputs.iter().enumerate() {
        let last = i + 1 == count;
        let (branch, cont) = if last {
            ("└── ", "    ")
        } else {
            ("├── ", "│   ")
        };
        line(
            out,
            child,
            &format!("{rest}{branch}"),
            &format!("{rest}{cont}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_store::LocalStore;
    use crate::ports::store::{PutCondition, PutOutcome};

    fn record(task: &str, inputs: &[&str], cost: &str) -> crate::ports::store::Metadata {
        let r = AuditRecord {
            task: task.into(),
            job: None,
            kind: "extract".into(),
            step: "extract-0\u{1b}]0;owned\u{7}".into(),
            inputs: inputs.iter().map(|s| s.to_string()).collect(),
            inputs_pointer: None,
            params_hash: "p".into(),
            model: None,
            device: "cpu".into(),
            started: "2026-12-01T00:00:00Z".into(),
            millis: 1000,
            cost_usd: Some(0.5),
            version: "0".into(),
            worker: "w".into(),
            manifest: None,
        };
        let mut m = r.to_metadata();
        m.insert(crate::audit::record::COST.into(), cost.into());
        m
    }

    async fn put(store: &LocalStore, key: &str, m: crate::ports::store::Metadata) -> String {
        match store
            .put_bytes(key, key.as_bytes(), "x", &m, PutCondition::Overwrite)
            .await
            .unwrap()
        {
            PutOutcome::Written(meta) => meta.etag,
            PutOutcome::AlreadyExists => unreachable!(),
        }
    }

    /// The adversarial cases: an object whose metadata names itself twice,
    /// two objects feeding each other, and a 40-deep chain where each step
    /// names its predecessor twice (2^32 paths without a visited set).
    #[tokio::test]
    async fn looping_or_exploding_metadata_ends_with_a_cycle_report() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        put(
            &store,
            "work/self",
            record("t", &["work/self@x", "work/self@x"], "NaN"),
        )
        .await;
        put(&store, "work/a", record("a", &["work/b@x"], "0.5")).await;
        put(&store, "work/b", record("b", &["work/a@x"], "0.5")).await;
        put(&store, "work/c0", record("c0", &[], "0.5")).await;
        for i in 1..40 {
            let prev = format!("work/c{}@x", i - 1);
            put(
                &store,
                &format!("work/c{i}"),
                record(&format!("c{i}"), &[&prev, &prev], "0.5"),
            )
            .await;
        }
        let within = std::time::Duration::from_secs(20);
        let tree = tokio::time::timeout(within, lineage(&store, "work/self"))
            .await
            .expect("audit returns")
            .unwrap();
        let text = render(&tree);
        assert_eq!(text.matches("(cycle:").count(), 2, "{text}");
        assert!(!text.contains("NaN"), "{text}");
        assert!(
            !text.chars().any(|c| c.is_control() && c != '\n'),
            "{text:?}"
        );
        let tree = tokio::time::timeout(within, lineage(&store, "work/a"))
            .await
            .expect("audit returns")
            .unwrap();
        assert!(render(&tree).contains("(cycle:"));
        let tree = tokio::time::timeout(within, lineage(&store, "work/c39"))
            .await
            .expect("audit returns")
            .unwrap();
        assert_eq!(tree.steps().len(), 32, "depth-limited, each step once");
        assert!((tree.total_cost() - 32.0 * 0.5).abs() < 1e-9);
    }
}
