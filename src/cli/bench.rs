//! `reelay bench ...`: benchmarks that print ratios against a reference run
//! on the same machine. Timed figures live here, never in tests.

use std::path::PathBuf;

use clap::Subcommand;

use crate::bench::media::{CpuBenchOptions, CpuBenchReport, run_cpu_bench};
use crate::bench::rss;
use crate::config::Config;
use crate::media::Ffmpeg;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// extract and compile against the bare FFmpeg commands with the same
    /// encoder settings (90 s 1080p30 source; 6 s and 30 s clips).
    Cpu {
        #[arg(long, default_value_t = 3)]
        repetitions: u32,
        /// Scratch folder for the generated source and outputs.
        #[arg(long, default_value = ".cache/bench")]
        scratch: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The demo end to end: wall time against its critical path of steps,
    /// and peak RSS of reelay against that of its FFmpeg children.
    Demo {
        /// Bucket folder; emptied first so every step really runs.
        #[arg(long, default_value = ".cache/bench/demo-bucket")]
        root: PathBuf,
    },
}

pub async fn run(which: BenchCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    match which {
        BenchCommand::Cpu {
            repetitions,
            scratch,
            json,
        } => {
            let ff = Ffmpeg::locate()?;
            let profile = Config::load(config.as_deref())?.file.output;
            let font = crate::tasks::compile::locate_font().ok();
            let opts = CpuBenchOptions {
                repetitions,
                ..CpuBenchOptions::default()
            };
            let report = tokio::task::spawn_blocking(move || {
                run_cpu_bench(&ff, &scratch, &opts, &profile, font.as_deref(), &mut |l| {
                    eprintln!("{l}")
                })
            })
            .await??;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", render_cpu(&report));
            }
            Ok(())
        }
        BenchCommand::Demo { root } => {
            // Keep the source between runs; drop everything the pipeline made.
            for dir in ["jobs", "work", "exports", "_reelay"] {
                let _ = std::fs::remove_dir_all(root.join(dir));
            }
            let outcome = super::demo::run(root, config.as_deref()).await?;
            let extract_max = outcome
                .step_secs
                .iter()
                .filter(|(k, _)| k == "extract")
                .map(|(_, s)| *s)
                .fold(0.0, f64::max);
            let others: f64 = outcome
                .step_secs
                .iter()
                .filter(|(k, _)| k != "extract")
                .map(|(_, s)| s)
                .sum();
            let critical = extract_max + others;
            let total: f64 = outcome.step_secs.iter().map(|(_, s)| s).sum();
            let own = rss::peak_self_bytes().unwrap_or(0) as f64 / 1048576.0;
            let child = rss::peak_children_bytes().unwrap_or(0) as f64 / 1048576.0;
            println!("\nbench demo ({} steps)", outcome.step_secs.len());
            println!(
                "  end to end           {:>8.2} s  (source making {:.2} s not counted)",
                outcome.pipeline_secs, outcome.source_secs
            );
            println!("  step time, summed    {total:>8.2} s");
            println!("  critical path        {critical:>8.2} s  (slowest extract + compile)");
            println!(
                "  end to end / critical path  {:.3}  (orchestration overhead; 1.0 is none)",
                outcome.pipeline_secs / critical
            );
            println!(
                "  peak RSS: reelay {own:.1} MiB, largest FFmpeg child {child:.1} MiB, ratio {:.3}",
                own / child.max(1.0)
            );
            Ok(())
        }
    }
}

fn render_cpu(report: &CpuBenchReport) -> String {
    let mut out = format!(
        "bench cpu: {} s {}x{}@{} source, {} repetition(s), {}\n{:<18} {:>10} {:>10} {:>8} {:>8}  target\n",
        report.options.source_seconds,
        report.options.width,
        report.options.height,
        report.options.fps,
        report.options.repetitions,
        report.ffmpeg,
        "case",
        "reelay s",
        "bare s",
        "ratio",
        "best-of",
    );
    for c in &report.cases {
        out.push_str(&format!(
            "{:<18} {:>10.2} {:>10.2} {:>8.3} {:>8.3}  <= {:.2} {}\n",
            c.name,
            c.reelay_median,
            c.bare_median,
            c.ratio,
            c.ratio_min,
            c.target,
            if c.within_target { "ok" } else { "MISSED" }
        ));
    }
    out
}
