//! Progress bars, one per step, for `reelay demo` and `reelay run`.

use std::collections::HashMap;
use std::sync::Mutex;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::media::Progress;
use crate::pipeline::task::Task;
use crate::runtime::executor::Outcome;
use crate::runtime::progress::ProgressSink;
use crate::tasks::TaskError;

pub struct Bars {
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
}

const SCALE: u64 = 1000;

impl Bars {
    pub fn new() -> Bars {
        Bars {
            multi: MultiProgress::new(),
            bars: Mutex::new(HashMap::new()),
        }
    }

    pub fn bar(&self, label: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(SCALE));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>12} [{bar:30}] {percent:>3}% {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(label.to_string());
        bar
    }

    pub fn set_fraction(bar: &ProgressBar, p: &Progress) {
        if let Some(f) = p.fraction {
            bar.set_position((f.clamp(0.0, 1.0) * SCALE as f64) as u64);
        }
        bar.set_message(format!("{:.1}s", p.out_time));
    }
}

impl ProgressSink for Bars {
    fn started(&self, task: &Task) {
        let bar = self.bar(&task.step);
        bar.set_message("starting");
        self.bars
            .lock()
            .expect("bars lock")
            .insert(task.id.clone(), bar);
    }

    fn progress(&self, task: &Task, p: &Progress) {
        if let Some(bar) = self.bars.lock().expect("bars lock").get(&task.id) {
            Bars::set_fraction(bar, p);
        }
    }

    fn finished(&self, task: &Task, result: Result<&Outcome, &TaskError>) {
        if let Some(bar) = self.bars.lock().expect("bars lock").remove(&task.id) {
            match result {
                Ok(Outcome::Done { record, .. }) => {
                    bar.set_position(SCALE);
                    bar.finish_with_message(format!(
                        "done in {:.1}s on {}",
                        record.millis as f64 / 1000.0,
                        record.device
                    ));
                }
                Ok(_) => bar.finish_with_message("skipped"),
                Err(e) => bar.abandon_with_message(format!("failed: {e}")),
            }
        }
    }
}
