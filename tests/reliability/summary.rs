//! The one summary table the suite prints at the end.

use crate::harness::Size;

/// One scenario's figures (one row per scenario and mode).
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub scenario: String,
    /// `moto` (S3+SQS) or `local` (`reelay dev` on a folder).
    pub mode: String,
    /// Cases tried: uploads, jobs, corpus entries, messages.
    pub cases: u64,
    /// Faults injected: kills, failed heartbeats, store errors, duplicate deliveries.
    pub faults: u64,
    pub completed: u64,
    pub lost: u64,
    /// Expensive steps that ran to completion more than once.
    pub duplicates: u64,
    /// Peak RSS of the reelay processes (VmHWM), KiB; 0 when not measured.
    pub peak_rss_kib: u64,
    pub seconds: f64,
    /// Scenario-specific figures.
    pub notes: String,
    pub failed: bool,
}

impl Row {
    pub fn new(scenario: &str, mode: &str) -> Row {
        Row {
            scenario: scenario.into(),
            mode: mode.into(),
            ..Row::default()
        }
    }

    pub fn failed(scenario: &str, seconds: f64) -> Row {
        Row {
            scenario: scenario.into(),
            mode: "-".into(),
            seconds,
            notes: "FAILED (see above)".into(),
            failed: true,
            ..Row::default()
        }
    }
}

pub fn render(rows: &[Row], size: Size, seconds: f64) -> String {
    let mut out = format!(
        "\nreliability summary ({} size, {:.0} s)\n",
        match size {
            Size::Reduced => "reduced",
            Size::Full => "full",
        },
        seconds
    );
    out += &format!(
        "{:<13} {:<6} {:>6} {:>7} {:>9} {:>5} {:>21} {:>13} {:>7}  notes\n",
        "scenario",
        "mode",
        "cases",
        "faults",
        "completed",
        "lost",
        "duplicate executions",
        "peak RSS",
        "time"
    );
    let mut total = Row::new("total", "");
    for r in rows {
        let rss = if r.peak_rss_kib > 0 {
            format!("{:.1} MiB", r.peak_rss_kib as f64 / 1024.0)
        } else {
            "-".into()
        };
        out += &format!(
            "{:<13} {:<6} {:>6} {:>7} {:>9} {:>5} {:>21} {:>13} {:>6.0}s  {}\n",
            r.scenario,
            r.mode,
            r.cases,
            r.faults,
            r.completed,
            r.lost,
            r.duplicates,
            rss,
            r.seconds,
            r.notes
        );
        total.cases += r.cases;
        total.faults += r.faults;
        total.completed += r.completed;
        total.lost += r.lost;
        total.duplicates += r.duplicates;
        total.peak_rss_kib = total.peak_rss_kib.max(r.peak_rss_kib);
    }
    let failed = rows.iter().filter(|r| r.failed).count();
    out += &format!(
        "{:<13} {:<6} {:>6} {:>7} {:>9} {:>5} {:>21} {:>13} {:>6.0}s  {}\n",
        "total",
        "",
        total.cases,
        total.faults,
        total.completed,
        total.lost,
        total.duplicates,
        format!("{:.1} MiB", total.peak_rss_kib as f64 / 1024.0),
        seconds,
        if failed == 0 {
            "all scenarios passed".to_string()
        } else {
            format!("{failed} scenario(s) FAILED")
        }
    );
    out
}
