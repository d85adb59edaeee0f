//! Metrics made from execution events (see ARCHITECTURE.md, "Metrics
//! contract"): a count per event and durations per step kind, device and
//! outcome, plus queue-to-start latency. In AWS mode each outcome is one
//! CloudWatch Embedded Metric Format line on stdout, which CloudWatch Logs
//! turns into metrics with no API call; `reelay dev` prints a summary at exit.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::json;

use crate::pipeline::task::StepKind;
use crate::runtime::execution::{ExecutionEvent, MetricOutcome as Outcome};

/// The CloudWatch namespace of every reelay metric.
pub const NAMESPACE: &str = "reelay";
/// The `device` dimension when no step ran (skipped, busy, superseded...).
pub const NO_DEVICE: &str = "none";

/// Totals for one (kind, device, outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    pub tasks: u64,
    pub task_ms: u64,
    pub max_task_ms: u64,
    pub cost_usd: f64,
    pub queue_to_start_ms: u64,
    pub queue_to_start_count: u64,
}

/// Counts execution events; optionally writes EMF lines.
#[derive(Debug, Default)]
pub struct Metrics {
    emf: bool,
    totals: Mutex<BTreeMap<(StepKind, String, Outcome), Totals>>,
}

impl Metrics {
    /// Counts only (`reelay dev`, tests): [`Metrics::summary`] reads them.
    pub fn counting() -> Metrics {
        Metrics::default()
    }

    /// Counts and writes one EMF line per outcome on stdout (AWS mode).
    pub fn emf() -> Metrics {
        Metrics {
            emf: true,
            ..Metrics::default()
        }
    }

    /// Counts `event` of a `kind` task (and writes its EMF line in AWS mode).
    pub fn observe(&self, kind: StepKind, event: &ExecutionEvent) {
        let Some((outcome, device, values)) = measure(event) else {
            return;
        };
        if let Ok(mut totals) = self.totals.lock() {
            let t = totals.entry((kind, device.clone(), outcome)).or_default();
            t.tasks += 1;
            if let Some(ms) = values.task_ms {
                t.task_ms += ms;
                t.max_task_ms = t.max_task_ms.max(ms);
            }
            t.cost_usd += values.cost_usd.unwrap_or(0.0);
            if let Some(q) = values.queue_to_start_ms {
                t.queue_to_start_ms += q;
                t.queue_to_start_count += 1;
            }
        }
        if self.emf {
            let line = emf_line(kind, event, unix_millis()).expect("an outcome has a line");
            // `println!` writes the line whole under stdout's lock (and a
            // test's output capture takes it).
            println!("{line}");
        }
    }

    /// A copy of the totals so far.
    pub fn totals(&self) -> BTreeMap<(StepKind, String, Outcome), Totals> {
        self.totals.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// A table per kind, device and outcome: what `reelay dev` prints at exit.
    pub fn summary(&self) -> String {
        let totals = self.totals();
        if totals.is_empty() {
            return "metrics: no tasks ran\n".into();
        }
        let mut out = format!(
            "{:<8} {:<6} {:<13} {:>6} {:>10} {:>10} {:>12} {:>10}\n",
            "kind", "device", "outcome", "tasks", "mean ms", "max ms", "queue ms", "cost usd"
        );
        for ((kind, device, outcome), t) in &totals {
            let mean = |sum: u64, n: u64| {
                sum.checked_div(n)
                    .map_or_else(|| "-".to_string(), |m| m.to_string())
            };
            let timed = if t.task_ms > 0 || *outcome == Outcome::Done {
                t.tasks
            } else {
                0
            };
            out.push_str(&format!(
                "{:<8} {:<6} {:<13} {:>6} {:>10} {:>10} {:>12} {:>10.6}\n",
                kind.as_str(),
                device,
                outcome.as_str(),
                t.tasks,
                mean(t.task_ms, timed),
                if timed == 0 {
                    "-".to_string()
                } else {
                    t.max_task_ms.to_string()
                },
                mean(t.queue_to_start_ms, t.queue_to_start_count),
                t.cost_usd,
            ));
        }
        out
    }
}

/// What an outcome event measures.
struct Values {
    task_ms: Option<u64>,
    cost_usd: Option<f64>,
    queue_to_start_ms: Option<u64>,
}

fn measure(event: &ExecutionEvent) -> Option<(Outcome, String, Values)> {
    let outcome = event.outcome()?;
    let none = Values {
        task_ms: None,
        cost_usd: None,
        queue_to_start_ms: None,
    };
    Some(match event {
        ExecutionEvent::Finished {
            device,
            ms,
            cost_usd,
            queue_to_start_ms,
        } => (
            outcome,
            device.clone(),
            Values {
                task_ms: Some(*ms),
                cost_usd: *cost_usd,
                queue_to_start_ms: *queue_to_start_ms,
            },
        ),
        ExecutionEvent::Failed {
            queue_to_start_ms, ..
        } => (
            outcome,
            NO_DEVICE.into(),
            Values {
                queue_to_start_ms: *queue_to_start_ms,
                ..none
            },
        ),
        _ => (outcome, NO_DEVICE.into(), none),
    })
}

/// The EMF line for `event`, or `None` for events that are not an outcome.
/// The contract (ARCHITECTURE.md): namespace `reelay`; dimension sets
/// `[["kind","device","outcome"],["outcome"]]`; metrics `tasks` (Count, 1
/// per event), `task_ms` (Milliseconds, on finished), `queue_to_start_ms`
/// (Milliseconds, when the task started), `cost_usd` (None, on finished).
pub fn emf_line(kind: StepKind, event: &ExecutionEvent, timestamp_ms: u64) -> Option<String> {
    let (outcome, device, values) = measure(event)?;
    let mut metrics = vec![json!({"Name": "tasks", "Unit": "Count"})];
    let mut doc = json!({
        "kind": kind.as_str(),
        "device": device,
        "outcome": outcome.as_str(),
        "tasks": 1,
    });
    if let Some(ms) = values.task_ms {
        metrics.push(json!({"Name": "task_ms", "Unit": "Milliseconds"}));
        doc["task_ms"] = json!(ms);
    }
    if let Some(q) = values.queue_to_start_ms {
        metrics.push(json!({"Name": "queue_to_start_ms", "Unit": "Milliseconds"}));
        doc["queue_to_start_ms"] = json!(q);
    }
    if let Some(c) = values.cost_usd {
        metrics.push(json!({"Name": "cost_usd", "Unit": "None"}));
        doc["cost_usd"] = json!(c);
    }
    doc["_aws"] = json!({
        "Timestamp": timestamp_ms,
        "CloudWatchMetrics": [{
            "Namespace": NAMESPACE,
            "Dimensions": [["kind", "device", "outcome"], ["outcome"]],
            "Metrics": metrics,
        }],
    });
    Some(doc.to_string())
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::ErrorClass;
    use std::time::Duration;

    fn parse(line: &str) -> serde_json::Value {
        serde_json::from_str(line).expect("an EMF line is one JSON object")
    }

    /// Checks `doc` against the EMF specification's rules: every dimension
    /// and every metric named in the directive is a top-level member.
    fn assert_valid_emf(doc: &serde_json::Value) {
        let directive = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(directive["Namespace"], "reelay");
        assert!(doc["_aws"]["Timestamp"].is_u64());
        assert_eq!(
            directive["Dimensions"],
            json!([["kind", "device", "outcome"], ["outcome"]])
        );
        for set in directive["Dimensions"].as_array().unwrap() {
            for d in set.as_array().unwrap() {
                assert!(
                    doc[d.as_str().unwrap()].is_string(),
                    "dimension {d} missing"
                );
            }
        }
        for m in directive["Metrics"].as_array().unwrap() {
            let name = m["Name"].as_str().unwrap();
            assert!(doc[name].is_number(), "metric {name} missing: {doc}");
            assert!(["Count", "Milliseconds", "None"].contains(&m["Unit"].as_str().unwrap()));
        }
    }

    fn metric_names(doc: &serde_json::Value) -> Vec<String> {
        doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                format!(
                    "{}:{}",
                    m["Name"].as_str().unwrap(),
                    m["Unit"].as_str().unwrap()
                )
            })
            .collect()
    }

    #[test]
    fn a_finished_step_is_one_emf_line_with_its_duration_cost_and_latency() {
        let event = ExecutionEvent::Finished {
            device: "cuda".into(),
            ms: 1500,
            cost_usd: Some(0.00025),
            queue_to_start_ms: Some(40),
        };
        let doc = parse(&emf_line(StepKind::Frame, &event, 1_700_000_000_000).unwrap());
        assert_valid_emf(&doc);
        assert_eq!(doc["_aws"]["Timestamp"], 1_700_000_000_000u64);
        assert_eq!(
            (
                doc["kind"].as_str(),
                doc["device"].as_str(),
                doc["outcome"].as_str()
            ),
            (Some("frame"), Some("cuda"), Some("done"))
        );
        assert_eq!(doc["tasks"], 1);
        assert_eq!(doc["task_ms"], 1500);
        assert_eq!(doc["queue_to_start_ms"], 40);
        assert_eq!(doc["cost_usd"], 0.00025);
        assert_eq!(
            metric_names(&doc),
            [
                "tasks:Count",
                "task_ms:Milliseconds",
                "queue_to_start_ms:Milliseconds",
                "cost_usd:None"
            ]
        );
    }

    #[test]
    fn every_outcome_has_its_contract_value_and_only_outcomes_have_lines() {
        let cases = [
            (ExecutionEvent::SkippedAsDone, "skipped"),
            (
                ExecutionEvent::Busy {
                    retry_after: Duration::from_secs(3),
                },
                "busy",
            ),
            (
                ExecutionEvent::Failed {
                    class: ErrorClass::Permanent,
                    ms: Some(10),
                    queue_to_start_ms: Some(5),
                },
                "failed",
            ),
            (
                ExecutionEvent::DeadLettered {
                    class: ErrorClass::Transient,
                },
                "dead_lettered",
            ),
            (ExecutionEvent::Interrupted, "superseded"),
            (ExecutionEvent::Superseded, "superseded"),
        ];
        for (event, outcome) in cases {
            let doc = parse(&emf_line(StepKind::Extract, &event, 1).unwrap());
            assert_valid_emf(&doc);
            assert_eq!(doc["outcome"], outcome);
            assert_eq!(doc["device"], NO_DEVICE);
            assert!(doc.get("cost_usd").is_none(), "{doc}");
        }
        for event in [
            ExecutionEvent::Received,
            ExecutionEvent::Claimed,
            ExecutionEvent::Started {
                queue_to_start_ms: Some(1),
            },
        ] {
            assert_eq!(emf_line(StepKind::Extract, &event, 1), None, "{event:?}");
        }
        let names: Vec<&str> = Outcome::ALL.iter().map(|o| o.as_str()).collect();
        assert_eq!(
            names,
            [
                "done",
                "skipped",
                "busy",
                "failed",
                "dead_lettered",
                "superseded"
            ]
        );
    }

    #[test]
    fn totals_and_summary_add_up_per_kind_device_and_outcome() {
        let m = Metrics::counting();
        for ms in [100, 300] {
            m.observe(
                StepKind::Extract,
                &ExecutionEvent::Finished {
                    device: "cpu".into(),
                    ms,
                    cost_usd: Some(0.5),
                    queue_to_start_ms: Some(10),
                },
            );
        }
        m.observe(StepKind::Extract, &ExecutionEvent::SkippedAsDone);
        m.observe(
            StepKind::Extract,
            &ExecutionEvent::Started {
                queue_to_start_ms: Some(10),
            },
        );
        let totals = m.totals();
        let done = totals[&(StepKind::Extract, "cpu".to_string(), Outcome::Done)];
        assert_eq!((done.tasks, done.task_ms, done.max_task_ms), (2, 400, 300));
        assert_eq!(done.cost_usd, 1.0);
        assert_eq!(totals.len(), 2, "{totals:?}");
        let summary = m.summary();
        let row = summary.lines().find(|l| l.contains("done")).unwrap();
        let cols: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            cols,
            [
                "extract", "cpu", "done", "2", "200", "300", "10", "1.000000"
            ]
        );
        assert!(
            summary
                .lines()
                .any(|l| l.starts_with("extract") && l.contains("skipped"))
        );
    }
}
