//! `reelay cost PREFIX`: totals of device time and cost per step kind and
//! device, read from the audit records of every object under a prefix.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::audit::record::AuditRecord;
use crate::ports::store::{ObjectStore, StoreError};

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct CostLine {
    pub steps: u64,
    pub millis: u64,
    pub cost_usd: f64,
    /// Steps on a device without a price.
    pub unpriced: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CostReport {
    /// (kind, device) → totals.
    pub lines: BTreeMap<(String, String), CostLine>,
    pub total: CostLine,
}

impl CostLine {
    fn add(&mut self, r: &AuditRecord) {
        self.steps += 1;
        self.millis += r.millis;
        match r.cost_usd {
            Some(c) => self.cost_usd += c,
            None => self.unpriced += 1,
        }
    }
}

pub async fn cost(store: &dyn ObjectStore, prefix: &str) -> Result<CostReport, StoreError> {
    let mut report = CostReport::default();
    for meta in store.list(prefix).await? {
        // S3 listings carry no user metadata; a head does.
        let metadata = if meta.metadata.is_empty() {
            match store.head(&meta.key).await? {
                Some(m) => m.metadata,
                None => continue,
            }
        } else {
            meta.metadata
        };
        if let Some(r) = AuditRecord::from_metadata(&metadata) {
            report
                .lines
                .entry((r.kind.clone(), r.device.clone()))
                .or_default()
                .add(&r);
            report.total.add(&r);
        }
    }
    Ok(report)
}

pub fn render(report: &CostReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<10} {:<24} {:>6} {:>12} {:>12}",
        "kind", "device", "steps", "device s", "USD"
    );
    for ((kind, device), l) in &report.lines {
        let _ = writeln!(
            out,
            "{kind:<10} {device:<24} {:>6} {:>12.2} {:>12.6}",
            l.steps,
            l.millis as f64 / 1000.0,
            l.cost_usd
        );
    }
    let t = &report.total;
    let _ = writeln!(
        out,
        "{:<10} {:<24} {:>6} {:>12.2} {:>12.6}",
        "total",
        "",
        t.steps,
        t.millis as f64 / 1000.0,
        t.cost_usd
    );
    if t.unpriced > 0 {
        let _ = writeln!(
            out,
            "{} step(s) ran on devices without a price; add them under [prices] in reelay.toml",
            t.unpriced
        );
    }
    out
}
