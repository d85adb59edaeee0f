//! `reelay audit KEY`: walks an object's lineage back to the uploads, as a
//! tree with each step's kind, device, time and cost.

use std::fmt::Write;

use serde::Serialize;

use crate::audit::record::AuditRecord;
use crate::keys::split_reference;
use crate::ports::store::{ObjectStore, StoreError};

/// Deepest lineage walked; guards against a metadata cycle.
const MAX_DEPTH: usize = 32;

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
}

impl LineageNode {
    /// Cost of this object and everything upstream of it.
    pub fn total_cost(&self) -> f64 {
        self.record.as_ref().and_then(|r| r.cost_usd).unwrap_or(0.0)
            + self.inputs.iter().map(|n| n.total_cost()).sum::<f64>()
    }

    /// Device milliseconds of this object and everything upstream of it.
    pub fn total_millis(&self) -> u64 {
        self.record.as_ref().map_or(0, |r| r.millis)
            + self.inputs.iter().map(|n| n.total_millis()).sum::<u64>()
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
    Box::pin(walk(store, key, Some(meta.etag.clone()), 0)).await
}

async fn walk(
    store: &dyn ObjectStore,
    key: &str,
    expected_etag: Option<String>,
    depth: usize,
) -> Result<LineageNode, StoreError> {
    let Some(meta) = store.head(key).await? else {
        return Ok(LineageNode {
            key: key.into(),
            etag: expected_etag.unwrap_or_default(),
            size: None,
            record: None,
            changed_since: false,
            missing: true,
            inputs: vec![],
        });
    };
    let changed_since = expected_etag
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != meta.etag);
    let mut record = AuditRecord::from_metadata(&meta.metadata);
    let mut inputs = Vec::new();
    if let Some(r) = record.as_mut() {
        if let Some(pointer) = &r.inputs_pointer
            && let Ok((bytes, _)) = store.get_bytes(pointer).await
        {
            r.inputs = serde_json::from_slice(&bytes).unwrap_or_default();
        }
        if depth < MAX_DEPTH {
            for reference in r.inputs.clone() {
                let (input_key, etag) = split_reference(&reference);
                inputs.push(
                    Box::pin(walk(store, input_key, Some(etag.to_string()), depth + 1)).await?,
                );
            }
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
    })
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
    let _ = writeln!(out, "{first}{}", describe(n));
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
