//! `reelay bench overlay`: the overlay step's frames per second at 1080p on
//! the CPU, against the same FFmpeg decode and encode with no overlay.
//!
//! The source is `testsrc2` at 1920×1080, 30 frames/s, with a tone (made
//! once, not timed). Each case alternates reelay's overlay step and the bare
//! command `ffmpeg -i SRC -map 0:v:0 -map 0:a:0 <profile video args> -c:a
//! copy OUT` `repetitions` times; the figure is overlay fps / bare fps
//! (target ≥ 0.90). Three specs: nothing drawn (the pipes' overhead alone,
//! on the bare command's very pixels), a moving spotlight, and spotlight,
//! ring, box and text together. A darkened frame is cheaper for x264 to
//! encode, so the drawn cases can beat the bare command; the first case is
//! the one that isolates reelay's own cost.
//!
//! Blocking and long (a minute or more on two cores): run it off the async
//! runtime.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::media::{BenchError, CpuBenchOptions, make_source};
use crate::media::{EncodeProfile, Ffmpeg, MediaError, path_arg};
use crate::overlay::spec::OverlaySpec;
use crate::tasks::overlay::{self, OverlayParams};

#[derive(Debug, Clone, Serialize)]
pub struct OverlayBenchOptions {
    pub repetitions: u32,
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// overlay fps / bare fps to reach.
    pub target_ratio: f64,
}

impl Default for OverlayBenchOptions {
    fn default() -> Self {
        OverlayBenchOptions {
            repetitions: 3,
            seconds: 10.0,
            width: 1920,
            height: 1080,
            fps: 30,
            target_ratio: 0.90,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayCase {
    pub name: String,
    pub frames: u64,
    pub overlay_secs: Vec<f64>,
    pub bare_secs: Vec<f64>,
    /// Frames per second from the medians.
    pub overlay_fps: f64,
    pub bare_fps: f64,
    /// `overlay_fps / bare_fps`: the figure to report.
    pub ratio: f64,
    /// From the best run of each side.
    pub ratio_best: f64,
    /// Share of the overlay's wall time spent drawing in Rust.
    pub draw_share: f64,
    pub target: f64,
    pub within_target: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverlayBenchReport {
    pub ffmpeg: String,
    pub options: OverlayBenchOptions,
    pub profile: EncodeProfile,
    pub cpus: usize,
    pub cases: Vec<OverlayCase>,
}

fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The specs timed: a moving spotlight alone, and everything at once.
pub fn bench_specs(w: f64, h: f64, seconds: f64) -> Vec<(&'static str, OverlaySpec)> {
    let spot = serde_json::json!({"spotlight": {"keyframes": [
        {"t": 0, "x": w * 0.3, "y": h * 0.5, "rx": h * 0.17, "ry": h * 0.24},
        {"t": seconds, "x": w * 0.7, "y": h * 0.45, "rx": h * 0.2, "ry": h * 0.28}], "dim": 0.45}});
    let mut all = spot.clone();
    all["ring"] = serde_json::json!({"keyframes": [{"t": 0, "x": w * 0.3, "y": h * 0.75, "rx": h * 0.12, "ry": h * 0.04},
        {"t": seconds, "x": w * 0.7, "y": h * 0.72, "rx": h * 0.12, "ry": h * 0.04}]});
    all["boxes"] = serde_json::json!([{"keyframes": [{"t": 0, "x": w * 0.25, "y": h * 0.25, "w": h * 0.2, "h": h * 0.5}]}]);
    all["text"] = serde_json::json!([{"text": "#10 Player", "x": 60, "y": 60, "size": 64}]);
    // Nothing drawn (dim 1): the decode pipe, the copies and the encode pipe
    // alone, on exactly the bare command's pixels. Darkening makes frames
    // cheaper to encode, so this is the honest measure of the overhead.
    let mut pass = spot.clone();
    pass["spotlight"]["dim"] = serde_json::json!(1.0);
    vec![
        (
            "pipes only (nothing drawn)",
            OverlaySpec::from_value(pass).expect("the bench spec is valid"),
        ),
        (
            "spotlight",
            OverlaySpec::from_value(spot).expect("the bench spec is valid"),
        ),
        (
            "spotlight+ring+box+text",
            OverlaySpec::from_value(all).expect("the bench spec is valid"),
        ),
    ]
}

/// The bare command: the same decode and encode, nothing drawn.
pub fn bare_args(source: &Path, out: &Path, profile: &EncodeProfile) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-i".into(), path_arg(source)];
    a.extend(
        ["-map", "0:v:0", "-map", "0:a:0", "-c:a", "copy"]
            .iter()
            .map(OsString::from),
    );
    a.extend(profile.video_args());
    a.extend(profile.container_args());
    a.push(path_arg(out));
    a
}

pub fn run_overlay_bench(
    ff: &Ffmpeg,
    scratch: &Path,
    opts: &OverlayBenchOptions,
    profile: &EncodeProfile,
    font: Option<PathBuf>,
    log: &mut dyn FnMut(&str),
) -> Result<OverlayBenchReport, BenchError> {
    if opts.repetitions == 0 {
        return Err(BenchError::Other("repetitions must be at least 1".into()));
    }
    std::fs::create_dir_all(scratch).map_err(|source| MediaError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    let cancel = CancellationToken::new();
    let source = scratch.join(format!(
        "overlay-source-{}x{}-{}s.mp4",
        opts.width, opts.height, opts.seconds
    ));
    if !source.is_file() {
        log(&format!(
            "making a {} s {}x{}@{} source with audio",
            opts.seconds, opts.width, opts.height, opts.fps
        ));
        let media_opts = CpuBenchOptions {
            source_seconds: opts.seconds,
            width: opts.width,
            height: opts.height,
            fps: opts.fps,
            ..CpuBenchOptions::default()
        };
        make_source(ff, &source, &media_opts, profile, &cancel)?;
    }
    let frames = ff.count_frames(&source)?;
    let bare_out = scratch.join("overlay-bare.mp4");
    let ours_out = scratch.join("overlay-reelay.mp4");
    let bare = bare_args(&source, &bare_out, profile);
    let mut cases = Vec::new();
    for (name, spec) in bench_specs(f64::from(opts.width), f64::from(opts.height), opts.seconds) {
        let params = OverlayParams { spec, offset: None };
        let draw_secs = draw_secs_estimate(&params, opts, font.clone(), frames)?;
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for rep in 0..opts.repetitions {
            let t = Instant::now();
            ff.run(&bare, Some(opts.seconds), &mut |_| {}, &cancel)?;
            theirs.push(t.elapsed().as_secs_f64());
            let t = Instant::now();
            overlay::run(
                ff,
                std::slice::from_ref(&source),
                &ours_out,
                &params,
                profile,
                font.clone(),
                &mut |_| {},
                &cancel,
            )?;
            let secs = t.elapsed().as_secs_f64();
            ours.push(secs);
            log(&format!(
                "{name} #{}: bare {:.2} s, overlay {:.2} s",
                rep + 1,
                theirs[theirs.len() - 1],
                secs
            ));
        }
        let (om, bm) = (median(&ours), median(&theirs));
        let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
        let ratio = bm / om;
        cases.push(OverlayCase {
            name: name.to_string(),
            frames,
            overlay_fps: frames as f64 / om,
            bare_fps: frames as f64 / bm,
            ratio,
            ratio_best: best(&theirs) / best(&ours),
            draw_share: draw_secs / om,
            overlay_secs: ours,
            bare_secs: theirs,
            target: opts.target_ratio,
            within_target: ratio >= opts.target_ratio,
        });
    }
    Ok(OverlayBenchReport {
        ffmpeg: ff.path().display().to_string(),
        options: opts.clone(),
        profile: profile.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
    })
}

/// Seconds the Rust compositing of `frames` frames takes on its own (on a
/// grey frame, in this thread): the drawing's share of the step.
fn draw_secs_estimate(
    params: &OverlayParams,
    opts: &OverlayBenchOptions,
    font: Option<PathBuf>,
    frames: u64,
) -> Result<f64, BenchError> {
    let scene = crate::overlay::Scene::new(
        &params.spec,
        &crate::overlay::SceneInputs {
            width: opts.width,
            height: opts.height,
            duration: opts.seconds,
            detections: &[],
            offset: None,
            font: if params.spec.text.is_empty() {
                None
            } else {
                font
            },
        },
    )
    .map_err(|e| BenchError::Other(e.to_string()))?;
    let bytes = crate::media::pipe::PixelFormat::Yuv420p.frame_bytes(opts.width, opts.height);
    let mut buf = vec![128u8; bytes];
    let n = frames.min(60);
    let t = Instant::now();
    for i in 0..n {
        scene.draw(&mut buf, i as f64 / f64::from(opts.fps));
    }
    Ok(t.elapsed().as_secs_f64() / n.max(1) as f64 * frames as f64)
}

pub fn render(report: &OverlayBenchReport) -> String {
    let o = &report.options;
    let mut out = format!(
        "bench overlay: {} s {}x{}@{} source, {} repetition(s), {} CPU(s), preset {} crf {}\n{:<28} {:>7} {:>11} {:>9} {:>8} {:>8} {:>7}  target\n",
        o.seconds,
        o.width,
        o.height,
        o.fps,
        o.repetitions,
        report.cpus,
        report.profile.preset,
        report.profile.crf,
        "case",
        "frames",
        "overlay fps",
        "bare fps",
        "ratio",
        "best",
        "draw %",
    );
    for c in &report.cases {
        out.push_str(&format!(
            "{:<28} {:>7} {:>11.2} {:>9.2} {:>8.3} {:>8.3} {:>6.1}%  >= {:.2} {}\n",
            c.name,
            c.frames,
            c.overlay_fps,
            c.bare_fps,
            c.ratio,
            c.ratio_best,
            c.draw_share * 100.0,
            c.target,
            if c.within_target { "ok" } else { "MISSED" }
        ));
    }
    out
}
