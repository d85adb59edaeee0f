//! `reelay bench frame`: how much of the model's speed the whole `frame`
//! step keeps.
//!
//! - **(a) model only:** frames/s of the upscaler on random input after
//!   warm-up ([`super::inference`]), the crop size and batch given.
//! - **(b) end to end:** frames/s of the `frame` step on a generated clip
//!   (decode, crop, inference, resize, encode, audio copy), with the same
//!   model, device, precision, batch and crop size, the session already
//!   warm (as in a worker after its first task). The clock runs from the
//!   step's call to its return: probing and FFmpeg start-up count.
//! - **efficiency = b / a**: 1.0 means the pipeline around the model costs
//!   nothing. The target on the CPU is 0.90.
//!
//! CPU seconds per frame (this process and its waited-for FFmpeg children,
//! user + system) are reported next to the wall-clock figures: on a shared
//! machine they move less with the neighbours' load.
//!
//! (a) and (b) alternate `repetitions` times and the report gives the
//! median of each and of the per-pair ratios, so a neighbour's load that
//! comes and goes moves both halves of a pair alike. The load average at
//! the start is in the report.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::inference::{InferenceBenchConfig, InferenceBenchReport, run as model_only};
use super::stats::median;
use crate::inference::Device;
use crate::media::{EncodeProfile, Ffmpeg, path_arg};
use crate::models::{Manifest, Precision};
use crate::tasks::frame::{self, FrameParams, OutputSize, Rect, StageStats};

/// Pipeline efficiency the CPU must reach.
pub const CPU_TARGET: f64 = 0.90;

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameBenchConfig {
    pub model: String,
    /// Crop (model input) size.
    pub crop_w: u32,
    pub crop_h: u32,
    pub batch: usize,
    pub device: Device,
    pub precision: Precision,
    /// Frames in the generated clip.
    pub frames: u32,
    /// Generated clip size and rate.
    pub source_w: u32,
    pub source_h: u32,
    pub fps: u32,
    /// Output size; `None`: the crop × the model's scale (no resize).
    pub size: Option<OutputSize>,
    /// Minimum timed seconds of each model-only run.
    pub model_seconds: f64,
    /// (a)-then-(b) pairs.
    pub repetitions: u32,
}

impl FrameBenchConfig {
    pub fn new(model: impl Into<String>, crop_w: u32, crop_h: u32) -> FrameBenchConfig {
        FrameBenchConfig {
            model: model.into(),
            crop_w,
            crop_h,
            batch: 1,
            device: Device::Auto,
            precision: Precision::Fp32,
            frames: 48,
            source_w: 1280,
            source_h: 720,
            fps: 30,
            size: None,
            model_seconds: 5.0,
            repetitions: 3,
        }
    }
}

/// The end-to-end half of the report.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEnd {
    pub frames: u64,
    pub seconds: f64,
    pub fps: f64,
    pub ms_per_frame: f64,
    /// CPU seconds per frame, this process and FFmpeg.
    pub cpu_seconds_per_frame: f64,
    pub source: String,
    pub size: String,
    pub device: String,
    pub video_accel: String,
    /// Busy seconds per pipeline stage.
    pub stages: Vec<StageStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct FrameBenchReport {
    pub machine: String,
    /// `/proc/loadavg` when the benchmark started.
    pub load_average: String,
    pub ffmpeg: String,
    pub config: FrameBenchConfig,
    /// The model-only run with the median frames/s.
    pub model_only: InferenceBenchReport,
    /// The end-to-end run with the median frames/s.
    pub end_to_end: EndToEnd,
    /// CPU seconds per frame of the median model-only run.
    pub model_cpu_seconds_per_frame: f64,
    /// Each pair's (a) and (b) frames/s, in order.
    pub pairs: Vec<(f64, f64)>,
    /// Median of the pairs' (a) / (b) CPU seconds per frame: the share of
    /// the step's CPU time that is the model's.
    pub cpu_efficiency: f64,
    /// Median of the pairs' b / a.
    pub efficiency: f64,
    /// The CPU target, when the device is the CPU.
    pub target: Option<f64>,
    pub within_target: Option<bool>,
}

/// `model name, N cores` of this machine, from `/proc/cpuinfo`.
pub fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or("unknown CPU", |(_, m)| m.trim())
        .to_string();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{model}, {cores} logical cores")
}

/// Makes a `frames`-frame testsrc2 clip with a tone (libx264, AAC).
fn make_clip(ff: &Ffmpeg, path: &Path, c: &FrameBenchConfig) -> anyhow::Result<()> {
    let seconds = f64::from(c.frames) / f64::from(c.fps);
    let mut args: Vec<OsString> = Vec::new();
    for a in [
        "-f".to_string(),
        "lavfi".into(),
        "-i".into(),
        format!(
            "testsrc2=s={}x{}:r={}:d={seconds}",
            c.source_w, c.source_h, c.fps
        ),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=f=440:d={seconds}"),
        "-frames:v".into(),
        c.frames.to_string(),
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "veryfast".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-c:a".into(),
        "aac".into(),
        "-f".into(),
        "mp4".into(),
    ] {
        args.push(a.into());
    }
    args.push(path_arg(path));
    ff.run(&args, None, &mut |_| {}, &CancellationToken::new())?;
    Ok(())
}

/// Runs (a), then (b), in this process. Blocking.
pub fn run(
    ff: &Ffmpeg,
    manifest: &Manifest,
    profile: &EncodeProfile,
    scratch: &Path,
    c: &FrameBenchConfig,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<FrameBenchReport> {
    anyhow::ensure!(
        c.crop_w <= c.source_w && c.crop_h <= c.source_h,
        "the {}x{} crop does not fit the {}x{} source; pass a smaller --crop or a larger --source",
        c.crop_w,
        c.crop_h,
        c.source_w,
        c.source_h
    );
    let load_average = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let clip = source_clip(ff, scratch, c, log)?;
    let pair = Pair {
        ff,
        manifest,
        profile,
        c,
        clip,
        output: scratch.join("frame-output.mp4"),
        params: step_params(manifest, c)?,
    };
    let mut models = Vec::new();
    let mut ends = Vec::new();
    let mut pairs = Vec::new();
    let mut cpu_pairs: Vec<(f64, f64)> = Vec::new();
    for rep in 1..=c.repetitions.max(1) {
        let (m, cpu_a) = pair.model_only(rep, log)?;
        let end = pair.end_to_end(rep, log)?;
        log(&format!(
            "    (a) {:.2} frames/s, {:.3} cpu s/frame; (b) {:.2} frames/s, {:.3} cpu s/frame; b/a {:.3}, cpu a/b {:.3}",
            m.fps,
            cpu_a,
            end.fps,
            end.cpu_seconds_per_frame,
            end.fps / m.fps,
            cpu_a / end.cpu_seconds_per_frame
        ));
        pairs.push((m.fps, end.fps));
        cpu_pairs.push((cpu_a, end.cpu_seconds_per_frame));
        ends.push(end);
        models.push(m);
    }
    let efficiency = median(&pairs.iter().map(|(a, b)| b / a).collect::<Vec<_>>());
    let cpu_efficiency = median(&cpu_pairs.iter().map(|(a, b)| a / b).collect::<Vec<_>>());
    let model_cpu = {
        let mut order: Vec<usize> = (0..models.len()).collect();
        order.sort_by(|&x, &y| models[x].fps.total_cmp(&models[y].fps));
        cpu_pairs[order[order.len() / 2]].0
    };
    models.sort_by(|x, y| x.fps.total_cmp(&y.fps));
    ends.sort_by(|x, y| x.fps.total_cmp(&y.fps));
    let model = models.swap_remove(models.len() / 2);
    let end = ends.swap_remove(ends.len() / 2);
    let target = (end.device == "cpu").then_some(CPU_TARGET);
    Ok(FrameBenchReport {
        machine: machine(),
        load_average,
        ffmpeg: ff.path().display().to_string(),
        config: c.clone(),
        end_to_end: end,
        model_only: model,
        model_cpu_seconds_per_frame: model_cpu,
        pairs,
        cpu_efficiency,
        efficiency,
        target,
        within_target: target.map(|t| efficiency >= t),
    })
}

/// The generated clip, made once per size and length and kept in `scratch`.
fn source_clip(
    ff: &Ffmpeg,
    scratch: &Path,
    c: &FrameBenchConfig,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(scratch)?;
    let clip = scratch.join(format!(
        "frame-source-{}x{}-{}f.mp4",
        c.source_w, c.source_h, c.frames
    ));
    if !clip.is_file() {
        log(&format!(
            "making a {}-frame {}x{}@{} clip ...",
            c.frames, c.source_w, c.source_h, c.fps
        ));
        let partial = clip.with_extension("partial.mp4");
        make_clip(ff, &partial, c)?;
        std::fs::rename(&partial, &clip)?;
    }
    Ok(clip)
}

/// The frame step's params: the crop centred in the source, the output
/// the crop times the model's scale unless `c.size` says otherwise.
fn step_params(manifest: &Manifest, c: &FrameBenchConfig) -> anyhow::Result<FrameParams> {
    let scale = manifest.get(&c.model)?.scale.unwrap_or(1);
    let size = match c.size {
        Some(s) => s,
        None => format!("{}x{}", c.crop_w * scale / 2 * 2, c.crop_h * scale / 2 * 2)
            .parse()
            .map_err(anyhow::Error::msg)?,
    };
    Ok(FrameParams {
        crop: frame::Crop::Static(Rect {
            x: (c.source_w - c.crop_w) / 2,
            y: (c.source_h - c.crop_h) / 2,
            w: c.crop_w,
            h: c.crop_h,
        }),
        model: c.model.clone(),
        size,
        device: Some(c.device),
        precision: Some(c.precision),
        batch: Some(c.batch),
        tile: None,
        tile_overlap: None,
        video_accel: None,
        overlay: None,
    })
}

/// The two halves of one (a)-then-(b) pair.
struct Pair<'a> {
    ff: &'a Ffmpeg,
    manifest: &'a Manifest,
    profile: &'a EncodeProfile,
    c: &'a FrameBenchConfig,
    clip: PathBuf,
    output: PathBuf,
    params: FrameParams,
}

impl Pair<'_> {
    /// (a): the model alone, and its CPU seconds per frame.
    fn model_only(
        &self,
        rep: u32,
        log: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(InferenceBenchReport, f64)> {
        let c = self.c;
        log(&format!(
            "[{rep}/{}] (a) model only: {} {}x{} batch {} on {} ...",
            c.repetitions.max(1),
            c.model,
            c.crop_w,
            c.crop_h,
            c.batch,
            c.device
        ));
        let mut a = InferenceBenchConfig::new(c.model.clone(), c.crop_w, c.crop_h);
        a.batch_size = c.batch;
        a.device = c.device;
        a.precision = c.precision;
        a.min_seconds = c.model_seconds;
        let cpu0 = cpu_seconds();
        let m = model_only(self.manifest, &a)?;
        let cpu_a = (cpu_seconds() - cpu0) / m.frames.max(1) as f64;
        Ok((m, cpu_a))
    }

    /// (b): the whole frame step on the clip.
    fn end_to_end(&self, rep: u32, log: &mut dyn FnMut(&str)) -> anyhow::Result<EndToEnd> {
        let c = self.c;
        let size = self.params.size;
        log(&format!(
            "[{rep}/{}] (b) frame step: {} frames, crop {}x{} -> {size} ...",
            c.repetitions.max(1),
            c.frames,
            c.crop_w,
            c.crop_h
        ));
        let cpu0 = cpu_seconds();
        let started = Instant::now();
        let (out, run) = frame::run_detailed(
            self.ff,
            std::slice::from_ref(&self.clip),
            &self.output,
            &self.params,
            self.profile,
            c.device,
            &mut |_| {},
            &CancellationToken::new(),
        )
        .map_err(|e| anyhow::anyhow!("the frame step failed: {e}"))?;
        let seconds = started.elapsed().as_secs_f64();
        let meta = |name: &str| out.metadata.get(name).cloned().unwrap_or_default();
        Ok(EndToEnd {
            frames: run.frames,
            seconds,
            fps: run.frames as f64 / seconds,
            ms_per_frame: 1000.0 * seconds / run.frames.max(1) as f64,
            cpu_seconds_per_frame: (cpu_seconds() - cpu0) / run.frames.max(1) as f64,
            source: format!("{}x{}@{}", run.source.0, run.source.1, run.fps),
            size: size.to_string(),
            device: meta(crate::audit::record::DEVICE),
            video_accel: meta("reelay-video-accel"),
            stages: run.stages,
        })
    }
}

/// User + system CPU seconds of this process and its waited-for children.
pub fn cpu_seconds() -> f64 {
    let get = |who| {
        // SAFETY: getrusage only writes into the zeroed struct we pass.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    get(libc::RUSAGE_SELF) + get(libc::RUSAGE_CHILDREN)
}

/// The report as a table.
pub fn render(r: &FrameBenchReport) -> String {
    let e = &r.end_to_end;
    let m = &r.model_only;
    let mut out = format!(
        "bench frame: {} {} on {}, crop {}x{} -> {}, batch {}, {} frames of {}\nmachine: {} (load average at start {})\n",
        m.model,
        m.precision,
        e.device,
        m.width,
        m.height,
        e.size,
        m.batch_size,
        e.frames,
        e.source,
        r.machine,
        r.load_average
    );
    out.push_str(&format!(
        "{:<24} {:>10} {:>10} {:>12} {:>9}\n",
        "", "frames/s", "ms/frame", "cpu s/frame", "TFLOP/s"
    ));
    out.push_str(&format!(
        "{:<24} {:>10.2} {:>10.1} {:>12.3} {:>9}\n",
        "(a) model only, median",
        m.fps,
        m.ms_per_frame,
        r.model_cpu_seconds_per_frame,
        m.tflops.map_or("-".into(), |t| format!("{t:.3}"))
    ));
    out.push_str(&format!(
        "{:<24} {:>10.2} {:>10.1} {:>12.3} {:>9}\n",
        "(b) frame step, median",
        e.fps,
        e.ms_per_frame,
        e.cpu_seconds_per_frame,
        m.mflop_per_pixel.map_or("-".into(), |mf| format!(
            "{:.3}",
            e.fps * f64::from(m.width * m.height) * mf / 1e6
        ))
    ));
    out.push_str(&format!(
        "efficiency b/a           {:>10.3}{}  (median of {} pairs: {})\n",
        r.efficiency,
        match (r.target, r.within_target) {
            (Some(t), Some(ok)) => format!(
                "  (target >= {t:.2} on CPU: {})",
                if ok { "ok" } else { "MISSED" }
            ),
            _ => String::new(),
        },
        r.pairs.len(),
        r.pairs
            .iter()
            .map(|(a, b)| format!("{:.3}", b / a))
            .collect::<Vec<_>>()
            .join(" ")
    ));
    out.push_str(&format!(
        "cpu time a/b             {:>10.3}  (the model's share of the step's CPU time)\n",
        r.cpu_efficiency
    ));
    out.push_str("stage busy seconds:     ");
    out.push_str(
        &e.stages
            .iter()
            .map(|s| format!("{} {:.2}", s.name, s.busy_seconds))
            .collect::<Vec<_>>()
            .join(", "),
    );
    out.push_str(&format!("  (wall {:.2} s)\n", e.seconds));
    out
}
