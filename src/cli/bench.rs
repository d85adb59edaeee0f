//! `reelay bench ...`: benchmarks that print ratios against a reference run
//! on the same machine. Timed figures live here, never in tests.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::bench::frame::{FrameBenchConfig, render as render_frame, run as frame_bench};
use crate::bench::inference::{InferenceBenchConfig, InferenceBenchReport, run as inference_bench};
use crate::bench::media::{CpuBenchOptions, CpuBenchReport, run_cpu_bench};
use crate::bench::rss;
use crate::config::Config;
use crate::media::Ffmpeg;
use crate::models::Manifest;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// extract and compile against the bare FFmpeg commands with the same
    /// encoder settings (90 s 1080p30 source; 6 s and 30 s clips).
    Cpu(CpuArgs),
    /// Model-only upscaler throughput; with `--batch` above 1 it also runs
    /// batch 1 in the same process and prints the speed-up.
    Upscale(UpscaleArgs),
    /// The frame step against its model: (a) model-only frames/s on random
    /// input after warm-up, (b) the whole step's frames/s on a generated
    /// clip with the same model, crop size, batch and device; efficiency b/a.
    Frame(FrameArgs),
    /// Single-container against fan-out (fused and unfused) for 1, 4 and 8
    /// framed clips with a spotlight, as real `reelay run` processes: job
    /// time and cost, and what the placement rule picks.
    Placement(PlacementArgs),
    /// The overlay step at 1080p on the CPU against the same FFmpeg decode
    /// and encode without an overlay (frames/s and their ratio; target 0.90).
    Overlay(OverlayArgs),
    /// Detection frames/s: the model alone against end to end (decode, scale,
    /// model, boxes back in source pixels), on a 1080p pan across a photo.
    Detect(DetectArgs),
    /// The GPU check's benchmarks as one table (`make gpu-check`): the
    /// upscaler at each precision and batch (frames/s, TFLOP/s, T4
    /// projection), the frame step against the model, detection.
    Gpu(GpuArgs),
    /// The demo end to end: wall time against its critical path of steps,
    /// and peak RSS of reelay against that of its FFmpeg children.
    Demo(DemoArgs),
    /// Router cost per event (parse, match, plan) in process, and PutObject →
    /// step start latency on loopback against moto (p50, p99), with peak RSS.
    Router(RouterArgs),
}

// `reelay bench cpu`; the variant documents it.
#[derive(Args, Debug)]
pub struct CpuArgs {
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// Scratch folder for the generated source and outputs.
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// The model run both `bench upscale` and `bench frame` measure.
#[derive(Args, Debug)]
pub struct ModelRunArgs {
    #[arg(long, default_value = "realesr-general-x4v3")]
    pub model: String,
    /// Crop (model input) size, WxH.
    #[arg(long, default_value = "160x90")]
    pub crop: String,
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// fp32 or fp16 (fp16 runs on CUDA only).
    #[arg(long, default_value = "fp32")]
    pub precision: String,
}

// `reelay bench upscale`; the variant documents it.
#[derive(Args, Debug)]
pub struct UpscaleArgs {
    #[command(flatten)]
    pub run: ModelRunArgs,
    /// Minimum timed seconds per configuration.
    #[arg(long, default_value_t = 3.0)]
    pub seconds: f64,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench frame`; the variant documents it.
#[derive(Args, Debug)]
pub struct FrameArgs {
    #[command(flatten)]
    pub run: ModelRunArgs,
    /// Frames in the generated clip.
    #[arg(long, default_value_t = 48)]
    pub frames: u32,
    /// Generated clip size, WxH (30 fps, with audio).
    #[arg(long, default_value = "1280x720")]
    pub source: String,
    /// Output size, WxH; default: the crop times the model's scale.
    #[arg(long)]
    pub size: Option<String>,
    /// Minimum timed seconds of each model-only run.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// (a)-then-(b) pairs; the report gives medians.
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// Scratch folder for the generated clip and the output.
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench placement`; the variant documents it.
#[derive(Args, Debug)]
pub struct PlacementArgs {
    /// Clip counts, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 4, 8])]
    pub clips: Vec<usize>,
    /// Seconds per clip (30 frames/s).
    #[arg(long, default_value_t = 1.0)]
    pub clip_seconds: f64,
    /// Runs of each process (medians).
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    /// A GPU task's cold start on the fleet, for the projection.
    #[arg(long, default_value_t = 7.0)]
    pub cold_start: f64,
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench overlay`; the variant documents it.
#[derive(Args, Debug)]
pub struct OverlayArgs {
    /// Pairs of runs (bare and overlay, taking turns to go first) per case,
    /// each repetition running every case once; the ratio is their median.
    #[arg(long, default_value_t = 9)]
    pub repetitions: u32,
    /// Source length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Scratch folder for the generated source and outputs.
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    /// Run only this case (repeatable): spotlight, ring, box, text or
    /// spotlight+ring+box+text. Default: all five.
    #[arg(long = "case")]
    pub cases: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench detect`; the variant documents it.
#[derive(Args, Debug)]
pub struct DetectArgs {
    #[arg(long, default_value = crate::tasks::detect::DEFAULT_MODEL)]
    pub model: String,
    /// cpu, cuda or auto.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// YOLO input side, when the model does not fix it.
    #[arg(long)]
    pub imgsz: Option<u32>,
    /// Source length in seconds.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Minimum timed seconds of the model-only loop.
    #[arg(long, default_value_t = 3.0)]
    pub model_seconds: f64,
    #[arg(long, default_value_t = 3)]
    pub repetitions: u32,
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench gpu`; the variant documents it.
#[derive(Args, Debug)]
pub struct GpuArgs {
    #[arg(long, default_value = "realesr-general-x4v3")]
    pub model: String,
    /// cuda, or cpu for a dry run.
    #[arg(long, default_value = "cuda")]
    pub device: String,
    /// Upscaler input size, WxH.
    #[arg(long, default_value = "640x360")]
    pub crop: String,
    #[arg(long, value_delimiter = ',', default_values_t = vec![1usize, 2, 4, 8])]
    pub batches: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "fp16,fp32")]
    pub precisions: Vec<String>,
    /// Minimum timed seconds per upscaler row.
    #[arg(long, default_value_t = 2.0)]
    pub seconds: f64,
    /// Frames in the frame step's clip (0: skip the frame step).
    #[arg(long, default_value_t = 96)]
    pub frame_frames: u32,
    /// The frame step's source clip, WxH.
    #[arg(long, default_value = "1280x720")]
    pub frame_source: String,
    /// Seconds of the detection source (0: skip detection).
    #[arg(long, default_value_t = 5.0)]
    pub detect_seconds: f64,
    /// Detection source size, WxH.
    #[arg(long, default_value = "1920x1080")]
    pub detect_source: String,
    /// This GPU's dense fp16 tensor peak, TFLOP/s, when not built in.
    #[arg(long, requires = "peak_fp32")]
    pub peak_fp16: Option<f64>,
    /// This GPU's fp32 peak, TFLOP/s, when not built in.
    #[arg(long, requires = "peak_fp16")]
    pub peak_fp32: Option<f64>,
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    /// Also write the table here (and the JSON beside it, .json).
    #[arg(long)]
    pub out: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

// `reelay bench demo`; the variant documents it.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Bucket folder; emptied first so every step really runs.
    #[arg(long, default_value = ".cache/bench/demo-bucket")]
    pub root: PathBuf,
}

// `reelay bench router`; the variant documents it.
#[derive(Args, Debug)]
pub struct RouterArgs {
    /// Events timed in process.
    #[arg(long, default_value_t = 5000)]
    pub events: usize,
    /// Sequential uploads timed against the S3+SQS server.
    #[arg(long, default_value_t = 200)]
    pub uploads: usize,
    /// An S3+SQS endpoint (default: start moto from .tools/venv).
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, default_value = ".cache/bench")]
    pub scratch: PathBuf,
    #[arg(long)]
    pub json: bool,
}

/// `reelay bench cpu`: extract and compile against the bare FFmpeg command.
async fn cpu(args: CpuArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let CpuArgs {
        repetitions,
        scratch,
        json,
    } = args;
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
    print_report(&report, json, render_cpu)
}

pub async fn run(which: BenchCommand, config: Option<PathBuf>) -> anyhow::Result<()> {
    match which {
        BenchCommand::Gpu(args) => gpu(args, config).await,
        BenchCommand::Cpu(args) => cpu(args, config).await,
        BenchCommand::Upscale(args) => upscale(args).await,
        BenchCommand::Router(args) => router(args).await,
        BenchCommand::Frame(args) => frame(args, config).await,
        BenchCommand::Placement(args) => placement(args, config).await,
        BenchCommand::Overlay(args) => overlay(args, config).await,
        BenchCommand::Detect(args) => detect(args).await,
        BenchCommand::Demo(args) => demo(args, config).await,
    }
}

/// `reelay bench upscale`.
async fn upscale(args: UpscaleArgs) -> anyhow::Result<()> {
    let UpscaleArgs { run, seconds, json } = args;
    let ModelRunArgs {
        model,
        crop,
        batch,
        device,
        precision,
    } = run;
    let (w, h) = parse_wxh("--crop", &crop)?;
    let mut cfg = InferenceBenchConfig::new(model, w, h);
    cfg.device = device.parse().map_err(anyhow::Error::msg)?;
    cfg.precision = precision.parse().map_err(anyhow::Error::msg)?;
    cfg.min_seconds = seconds;
    let manifest = Manifest::load_default()?;
    let mut reports = Vec::new();
    if batch > 1 {
        reports.push(tokio::task::block_in_place(|| {
            inference_bench(&manifest, &cfg)
        })?);
    }
    cfg.batch_size = batch;
    reports.push(tokio::task::block_in_place(|| {
        inference_bench(&manifest, &cfg)
    })?);
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
        return Ok(());
    }
    println!("{}", InferenceBenchReport::table_header());
    for r in &reports {
        println!("{}", r.table_row());
    }
    if let [one, many] = reports.as_slice() {
        println!(
            "batch {} / batch 1 frames per second: {:.3}",
            many.batch_size,
            many.fps / one.fps
        );
    }
    Ok(())
}

/// `reelay bench router`.
async fn router(args: RouterArgs) -> anyhow::Result<()> {
    let RouterArgs {
        events,
        uploads,
        endpoint,
        scratch,
        json,
    } = args;
    let report = crate::bench::router::run(&crate::bench::router::RouterBenchOptions {
        events,
        uploads,
        endpoint,
        scratch,
    })
    .await?;
    print_report(&report, json, |r| r.render())
}

/// `reelay bench frame`.
async fn frame(args: FrameArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let FrameArgs {
        run,
        frames,
        source,
        size,
        seconds,
        repetitions,
        scratch,
        json,
    } = args;
    let ModelRunArgs {
        model,
        crop,
        batch,
        device,
        precision,
    } = run;
    let (w, h) = parse_wxh("--crop", &crop)?;
    let (sw, sh) = parse_wxh("--source", &source)?;
    let mut cfg = FrameBenchConfig::new(model, w, h);
    cfg.batch = batch;
    cfg.device = device.parse().map_err(anyhow::Error::msg)?;
    cfg.precision = precision.parse().map_err(anyhow::Error::msg)?;
    cfg.frames = frames.max(1);
    cfg.source_w = sw;
    cfg.source_h = sh;
    cfg.size = size
        .map(|s| s.parse().map_err(anyhow::Error::msg))
        .transpose()?;
    cfg.model_seconds = seconds;
    cfg.repetitions = repetitions.max(1);
    let ff = Ffmpeg::locate()?;
    let profile = Config::load(config.as_deref())?.file.output;
    let manifest = Manifest::load_default()?;
    let report = tokio::task::spawn_blocking(move || {
        frame_bench(&ff, &manifest, &profile, &scratch, &cfg, &mut |l| {
            eprintln!("{l}")
        })
    })
    .await??;
    print_report(&report, json, render_frame)
}

/// `reelay bench placement`.
async fn placement(args: PlacementArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let PlacementArgs {
        clips,
        clip_seconds,
        repetitions,
        cold_start,
        scratch,
        json,
    } = args;
    let ff = Ffmpeg::locate()?;
    let config = Config::load(config.as_deref())?;
    let opts = crate::bench::placement::PlacementBenchOptions {
        clip_counts: clips,
        clip_seconds,
        repetitions,
        cold_start_secs: cold_start,
        ..Default::default()
    };
    let report = tokio::task::spawn_blocking(move || {
        crate::bench::placement::run(
            &ff,
            &config.file.output,
            &config.file.prices,
            &scratch,
            &opts,
            &mut |l| eprintln!("{l}"),
        )
    })
    .await??;
    print_report(&report, json, crate::bench::placement::render)
}

/// `reelay bench overlay`.
async fn overlay(args: OverlayArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let OverlayArgs {
        repetitions,
        seconds,
        scratch,
        cases,
        json,
    } = args;
    let ff = Ffmpeg::locate()?;
    let profile = Config::load(config.as_deref())?.file.output;
    let font = crate::tasks::compile::locate_font().ok();
    let opts = crate::bench::overlay::OverlayBenchOptions {
        repetitions,
        seconds,
        cases,
        ..Default::default()
    };
    let report = tokio::task::spawn_blocking(move || {
        crate::bench::overlay::run_overlay_bench(&ff, &scratch, &opts, &profile, font, &mut |l| {
            eprintln!("{l}")
        })
    })
    .await??;
    print_report(&report, json, crate::bench::overlay::render)
}

/// `reelay bench detect`.
async fn detect(args: DetectArgs) -> anyhow::Result<()> {
    let DetectArgs {
        model,
        device,
        imgsz,
        seconds,
        model_seconds,
        repetitions,
        scratch,
        json,
    } = args;
    let ff = Ffmpeg::locate()?;
    let manifest = Manifest::load_default()?;
    let opts = crate::bench::detect::DetectBenchOptions {
        model,
        load: crate::tasks::detect::detect_load_options(
            device.parse().map_err(anyhow::Error::msg)?,
        ),
        imgsz,
        seconds,
        min_model_secs: model_seconds,
        repetitions,
        ..Default::default()
    };
    let report = tokio::task::spawn_blocking(move || {
        crate::bench::detect::run_detect_bench(&ff, &manifest, &scratch, &opts, &mut |l| {
            eprintln!("{l}")
        })
    })
    .await??;
    print_report(&report, json, crate::bench::detect::render)
}

/// `reelay bench demo`.
async fn demo(args: DemoArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    let DemoArgs { root } = args;
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
    println!(
        "  critical path        {critical:>8.2} s  (slowest extract + the other steps: frame, compile)"
    );
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

/// The report as JSON with `--json`, else as its table.
fn print_report<R: serde::Serialize>(
    report: &R,
    json: bool,
    render: impl FnOnce(&R) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(report)?);
    } else {
        print!("{}", render(report));
    }
    Ok(())
}

fn parse_wxh(flag: &str, value: &str) -> anyhow::Result<(u32, u32)> {
    value
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| *w > 0 && *h > 0)
        .ok_or_else(|| anyhow::anyhow!("{flag} {value:?}: expected WxH, e.g. 160x90"))
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

/// `reelay bench gpu`: options from the flags, one blocking run, the table.
async fn gpu(args: GpuArgs, config: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::bench::gpu::{GpuBenchOptions, Peaks, cuda_defaults, render, run};
    let GpuArgs {
        model,
        device,
        crop,
        batches,
        precisions,
        seconds,
        frame_frames,
        frame_source,
        detect_seconds,
        detect_source,
        peak_fp16,
        peak_fp32,
        scratch,
        out,
        json,
    } = args;
    let device: crate::inference::Device = device.parse().map_err(anyhow::Error::msg)?;
    let mut o: GpuBenchOptions = cuda_defaults(&model);
    o.device = device;
    o.crop = parse_wxh("--crop", &crop)?;
    o.batches = batches;
    o.precisions = precisions
        .iter()
        .map(|p| p.parse().map_err(anyhow::Error::msg))
        .collect::<anyhow::Result<_>>()?;
    o.seconds = seconds;
    o.peaks = peak_fp16
        .zip(peak_fp32)
        .map(|(fp16, fp32)| Peaks { fp16, fp32 });
    o.frame = match o.frame.take() {
        Some(mut f) if frame_frames > 0 => {
            (f.crop_w, f.crop_h) = o.crop;
            (f.source_w, f.source_h) = parse_wxh("--frame-source", &frame_source)?;
            f.frames = frame_frames;
            f.device = device;
            f.batch = o
                .batches
                .iter()
                .copied()
                .find(|&b| b == 4)
                .unwrap_or(o.batches[0]);
            f.precision = o.precisions[0];
            f.model_seconds = seconds;
            Some(f)
        }
        _ => None,
    };
    o.detect = match o.detect.take() {
        Some(mut d) if detect_seconds > 0.0 => {
            d.load.device = device;
            d.seconds = detect_seconds;
            d.min_model_secs = seconds;
            (d.width, d.height) = parse_wxh("--detect-source", &detect_source)?;
            Some(d)
        }
        _ => None,
    };
    let ff = Ffmpeg::locate()?;
    let profile = Config::load(config.as_deref())?.file.output;
    let manifest = Manifest::load_default()?;
    std::fs::create_dir_all(&scratch)?;
    let report = tokio::task::spawn_blocking(move || {
        run(&ff, &manifest, &profile, &scratch, &o, &mut |l| {
            eprintln!("{l}")
        })
    })
    .await??;
    let table = render(&report);
    let as_json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = out {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, &table)?;
        std::fs::write(path.with_extension("json"), &as_json)?;
    }
    if json {
        println!("{as_json}");
    } else {
        print!("{table}");
    }
    Ok(())
}
