//! The `reelay` command line.

mod aws;
mod bars;
#[cfg(feature = "bench")]
mod bench;
mod demo;
mod doctor;
mod models;
mod run_step;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::adapters::local_store::LocalStore;
use crate::audit::{cost, lineage};
use crate::config::{Config, env};
use crate::runtime::local::{LocalOptions, run_local};
use crate::runtime::progress::LogProgress;

#[derive(Parser, Debug)]
#[command(
    name = "reelay",
    version,
    about = "Drop a video or a JSON job into a bucket; get a finished export with its lineage and cost."
)]
pub struct Cli {
    /// Path to reelay.toml (default: $REELAY_CONFIG, then ./reelay.toml, then built-in defaults).
    #[arg(long, global = true, env = "REELAY_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Router, CPU pool and worker in one process, watching a local folder bucket.
    Dev {
        #[command(flatten)]
        root: RootArg,
        /// Exit once every upload is handled (for scripts and tests).
        #[arg(long)]
        exit_when_idle: bool,
    },
    /// Makes a sample match video and a highlights job, and runs it to the export.
    Demo {
        #[command(flatten)]
        root: RootArg,
    },
    /// Runs one step on local files, with no queue: for debugging and benchmarks.
    Run {
        /// Step kind: extract, compile, frame, detect, overlay or export. `detect`
        /// writes a detections JSON (--set fps=5|all, model=NAME, threshold=0.5);
        /// `overlay` draws `--set spec=@overlay.json` on a clip; `frame` takes
        /// `--set overlay=@params.json` to draw one in the same pass; `export`
        /// runs a whole job's clips and compile on one source (`--set clips=@...`).
        kind: String,
        #[arg(long, num_args = 1.., required = true)]
        input: Vec<PathBuf>,
        #[arg(long)]
        output: PathBuf,
        /// Parameter as key=value (value parsed as JSON when it can be; `@FILE` reads a file). Repeatable.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Prints the lineage of an object back to its uploads, with time and cost.
    Audit {
        #[command(flatten)]
        root: RootArg,
        /// The bucket, s3://NAME (instead of --root).
        #[arg(long)]
        bucket: Option<String>,
        key: String,
        /// Print JSON instead of a tree.
        #[arg(long)]
        json: bool,
    },
    /// Totals device time and cost per step kind and device under a prefix.
    Cost {
        #[command(flatten)]
        root: RootArg,
        /// The bucket, s3://NAME (instead of --root).
        #[arg(long)]
        bucket: Option<String>,
        #[arg(default_value = "")]
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// The router on the events queue (AWS mode): runs CPU steps, sends GPU steps to the gpu queue.
    Route(aws::RouteArgs),
    /// The worker loop on the gpu queue (AWS mode).
    Work(aws::WorkArgs),
    /// Re-drives jobs whose next step never started, and backfills earlier uploads.
    Reconcile(aws::ReconcileArgs),
    /// Validates a configuration file and prints the rules it defines.
    Check { file: Option<PathBuf> },
    /// Lists the environment variables reelay reads.
    Env,
    /// The ONNX models reelay runs, and their sha256 check.
    Models {
        #[command(subcommand)]
        which: models::ModelsCommand,
    },
    /// Checks this machine for the configured device: ONNX Runtime, CUDA
    /// (libraries, driver, GPU, provider), FFmpeg (NVENC/NVDEC), models, font.
    /// Exits non-zero when the device cannot work; the GPU worker's health check.
    Doctor(doctor::DoctorArgs),
    /// Benchmarks that print ratios against a reference run on this machine
    /// (built with `--features bench`).
    #[cfg(feature = "bench")]
    Bench {
        #[command(subcommand)]
        which: bench::BenchCommand,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct RootArg {
    /// Local bucket folder.
    #[arg(long, env = "REELAY_ROOT", default_value = "reelay-data")]
    pub root: PathBuf,
}

pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Dev {
            root,
            exit_when_idle,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let failures = config.file.layout.failures.clone();
            let shutdown = shutdown_on_signal();
            let summary = run_local(
                LocalOptions {
                    root: root.root,
                    config,
                    exit_when_idle,
                    poll: Duration::from_millis(250),
                    progress: Arc::new(LogProgress),
                },
                shutdown,
            )
            .await?;
            report_dead_letters(&summary.dead_letters);
            print!("{}", summary.metrics.summary());
            // A script running `reelay dev --exit-when-idle` learns from the
            // exit code whether anything was given up on.
            anyhow::ensure!(
                summary.dead_letters.is_empty(),
                "{} message(s) were dead-lettered; their failure records are under `{}` in the bucket",
                summary.dead_letters.len(),
                failures
            );
            Ok(())
        }
        Command::Demo { root } => demo::run(root.root, cli.config.as_deref())
            .await
            .map(|_| ()),
        Command::Models { which } => models::run(which),
        #[cfg(feature = "bench")]
        Command::Bench { which } => bench::run(which, cli.config).await,
        Command::Doctor(args) => doctor::run(args, cli.config.as_deref()),
        Command::Run {
            kind,
            input,
            output,
            set,
        } => run_step::run(&kind, &input, &output, &set, cli.config.as_deref()).await,
        Command::Audit {
            root,
            bucket,
            key,
            json,
        } => {
            let store =
                aws::open_store(bucket.as_deref(), &root.root, cli.config.as_deref()).await?;
            let tree = lineage::lineage(store.as_ref(), &key).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&tree)?);
            } else {
                print!("{}", lineage::render(&tree));
            }
            Ok(())
        }
        Command::Cost {
            root,
            bucket,
            prefix,
            json,
        } => {
            let store =
                aws::open_store(bucket.as_deref(), &root.root, cli.config.as_deref()).await?;
            let report = cost::cost(store.as_ref(), &prefix).await?;
            if json {
                let lines: Vec<_> = report.lines.iter().map(|((k, d), l)| serde_json::json!({"kind": k, "device": d, "steps": l.steps, "millis": l.millis, "cost_usd": l.cost_usd})).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &serde_json::json!({"lines": lines, "total": report.total})
                    )?
                );
            } else {
                print!("{}", cost::render(&report));
            }
            Ok(())
        }
        Command::Route(args) => aws::route(args, cli.config.as_deref()).await,
        Command::Work(args) => aws::work(args, cli.config.as_deref()).await,
        Command::Reconcile(args) => aws::reconcile(args, cli.config.as_deref()).await,
        Command::Check { file } => {
            let config = Config::load(file.as_deref().or(cli.config.as_deref()))?;
            let mut text = format!("{}: valid\n", config.source);
            text += &format!("uploads: {}\n", config.file.layout.uploads.join(", "));
            text += &format!("outputs: {}\n", config.output_prefixes().join(", "));
            for rule in &config.rules {
                text += &format!(
                    "rule {:<12} {:<24} {:?}\n",
                    rule.name, rule.pattern, rule.action
                );
            }
            print_all(&text)
        }
        Command::Env => {
            let text: String = env::ALL
                .iter()
                .map(|var| format!("{:<26} {}\n", var.name, var.help))
                .collect();
            print_all(&text)
        }
    }
}

fn open_local(root: &std::path::Path) -> anyhow::Result<LocalStore> {
    anyhow::ensure!(
        root.is_dir(),
        "no local bucket at {}; pass --root DIR or set REELAY_ROOT",
        root.display()
    );
    LocalStore::open(root).with_context(|| format!("opening {}", root.display()))
}

/// Cancels on Ctrl-C or SIGTERM, so loops stop receiving and finish cleanly.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("signal handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("stopping: finishing in-flight steps");
        t.cancel();
    });
    token
}

/// Prints to stdout; a reader that stops early (`reelay check | head -1`)
/// is not an error, where `println!` would panic on the broken pipe.
fn print_all(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(()),
    }
}

fn report_dead_letters(dead: &[String]) {
    if !dead.is_empty() {
        eprintln!(
            "{} message(s) went to the dead-letter queue; see _reelay/failures/ in the bucket",
            dead.len()
        );
    }
}
