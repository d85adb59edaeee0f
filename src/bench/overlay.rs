//! `reelay bench overlay`: the overlay step's frames per second at 1080p on
//! the CPU, against the same FFmpeg decode and encode with no overlay.
//!
//! The source is `testsrc2` at 1920×1080, 30 frames/s, with a tone (made
//! once, not timed). Each repetition runs, for every case in turn, a pair
//! of the bare command
//! `ffmpeg -i SRC -map 0:v:0 -map 0:a:0 <profile video args> -c:a copy
//! OUT` and reelay's overlay step, each going first in every other pair.
//! The figure is the median over the pairs of bare seconds / overlay
//! seconds (target ≥ 0.90): the two runs of a pair share the machine's
//! state, which on a shared VM moves both by ±10 % from one minute to the
//! next, so a paired ratio is steadier than a ratio of medians. Pairs
//! still differ, so the median comes with a 95 % interval
//! ([`median_interval`]) and the table says when that interval spans the
//! target: another run could land on either side. Each
//! side's CPU time (user + system, reelay and its FFmpeg children) per
//! frame is reported too, with its paired ratio.
//!
//! One case per shape a user can ask for, each moving: a spotlight, a
//! ring, a box, a text label, then all four together. (Until issue 17 the
//! overlay piped raw frames out of FFmpeg and back, and a "pipes only"
//! case measured that; the overlay now draws inside FFmpeg's graph and a
//! spec that draws nothing is a plain re-encode, so there is no pipe to
//! measure.) A darkened frame is cheaper for x264 to encode, but the lit
//! ellipse gives most of that back.
//!
//! Blocking and long (about six minutes on two cores): run it off the async
//! runtime.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::media::{BenchError, CpuBenchOptions, make_source};
use super::stats::{median, median_interval};
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
    /// Names of the cases to run (see [`bench_specs`]); empty: all.
    pub cases: Vec<String>,
}

impl Default for OverlayBenchOptions {
    fn default() -> Self {
        OverlayBenchOptions {
            repetitions: 9,
            seconds: 10.0,
            width: 1920,
            height: 1080,
            fps: 30,
            target_ratio: 0.90,
            cases: Vec::new(),
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
    /// Median over the pairs of bare seconds / overlay seconds: the
    /// figure to report.
    pub ratio: f64,
    /// A distribution-free interval of about 95 % for that median (see
    /// [`median_interval`]): on a shared VM one pair can swing by ±10 %,
    /// so a median is only as good as this says.
    pub ratio_low: f64,
    pub ratio_high: f64,
    /// From the best run of each side.
    pub ratio_best: f64,
    /// CPU time (user + system, reelay and its FFmpeg children) per frame,
    /// medians, in milliseconds.
    pub overlay_cpu_ms: f64,
    pub bare_cpu_ms: f64,
    /// Median over the pairs of bare CPU time / overlay CPU time.
    pub cpu_ratio: f64,
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

/// The specs timed: each shape alone, moving across the frame, then all
/// of them together.
pub fn bench_specs(w: f64, h: f64, seconds: f64) -> Vec<(&'static str, OverlaySpec)> {
    let spot = serde_json::json!({"spotlight": {"keyframes": [
        {"t": 0, "x": w * 0.3, "y": h * 0.5, "rx": h * 0.17, "ry": h * 0.24},
        {"t": seconds, "x": w * 0.7, "y": h * 0.45, "rx": h * 0.2, "ry": h * 0.28}], "dim": 0.45}});
    let ring = serde_json::json!({"keyframes": [{"t": 0, "x": w * 0.3, "y": h * 0.75, "rx": h * 0.12, "ry": h * 0.04},
        {"t": seconds, "x": w * 0.7, "y": h * 0.72, "rx": h * 0.12, "ry": h * 0.04}]});
    let boxes = serde_json::json!([{"keyframes": [{"t": 0, "x": w * 0.25, "y": h * 0.25, "w": h * 0.2, "h": h * 0.5},
        {"t": seconds, "x": w * 0.6, "y": h * 0.2, "w": h * 0.22, "h": h * 0.55}]}]);
    let text = serde_json::json!([{"text": "#10 Player", "x": 60, "y": 60, "size": 64}]);
    let mut all = spot.clone();
    all["ring"] = ring.clone();
    all["boxes"] = boxes.clone();
    all["text"] = text.clone();
    let spec = |v: serde_json::Value| OverlaySpec::from_value(v).expect("the bench spec is valid");
    vec![
        ("spotlight", spec(spot)),
        ("ring", spec(serde_json::json!({ "ring": ring }))),
        ("box", spec(serde_json::json!({ "boxes": boxes }))),
        ("text", spec(serde_json::json!({ "text": text }))),
        ("spotlight+ring+box+text", spec(all)),
    ]
}

/// CPU seconds (user + system) used so far by this process and by its
/// children that have been waited for.
pub fn cpu_secs() -> f64 {
    let one = |who| {
        // SAFETY: getrusage fills the struct it is given; nothing else is shared.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        if unsafe { libc::getrusage(who, &mut u) } != 0 {
            return 0.0;
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(u.ru_utime) + tv(u.ru_stime)
    };
    one(libc::RUSAGE_SELF) + one(libc::RUSAGE_CHILDREN)
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

/// Times `f`: wall seconds and CPU seconds (this process and the children
/// it waited for).
fn timed(f: impl FnOnce() -> Result<(), BenchError>) -> Result<(f64, f64), BenchError> {
    let (t, cpu) = (Instant::now(), cpu_secs());
    f()?;
    Ok((t.elapsed().as_secs_f64(), cpu_secs() - cpu))
}

/// The source video: made once per size and length, not timed.
fn bench_source(
    ff: &Ffmpeg,
    scratch: &Path,
    opts: &OverlayBenchOptions,
    profile: &EncodeProfile,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf, BenchError> {
    std::fs::create_dir_all(scratch).map_err(|source| MediaError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
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
        make_source(ff, &source, &media_opts, profile, &CancellationToken::new())?;
    }
    Ok(source)
}

/// One case's runs: wall and CPU seconds of each side, pair by pair.
#[derive(Default)]
struct Runs {
    ours: Vec<f64>,
    theirs: Vec<f64>,
    ours_cpu: Vec<f64>,
    theirs_cpu: Vec<f64>,
}

/// The case's figures from its runs.
fn summarise(name: &str, frames: u64, r: Runs, target: f64) -> OverlayCase {
    let Runs {
        ours,
        theirs,
        ours_cpu,
        theirs_cpu,
    } = r;
    let (om, bm) = (median(&ours), median(&theirs));
    let (oc, bc) = (median(&ours_cpu), median(&theirs_cpu));
    let best = |v: &[f64]| v.iter().copied().fold(f64::INFINITY, f64::min);
    // bare / ours, pair by pair.
    let paired = |bare: &[f64], ours: &[f64]| -> Vec<f64> {
        bare.iter().zip(ours).map(|(b, o)| b / o).collect()
    };
    let ratios = paired(&theirs, &ours);
    let ratio = median(&ratios);
    let (ratio_low, ratio_high) = median_interval(&ratios);
    OverlayCase {
        name: name.to_string(),
        frames,
        overlay_fps: frames as f64 / om,
        bare_fps: frames as f64 / bm,
        ratio,
        ratio_low,
        ratio_high,
        ratio_best: best(&theirs) / best(&ours),
        overlay_cpu_ms: oc * 1000.0 / frames.max(1) as f64,
        bare_cpu_ms: bc * 1000.0 / frames.max(1) as f64,
        cpu_ratio: median(&paired(&theirs_cpu, &ours_cpu)),
        overlay_secs: ours,
        bare_secs: theirs,
        target,
        within_target: ratio >= target,
    }
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
    let mut specs = bench_specs(f64::from(opts.width), f64::from(opts.height), opts.seconds);
    if let Some(unknown) = opts
        .cases
        .iter()
        .find(|c| !specs.iter().any(|(name, _)| name == c))
    {
        let names: Vec<&str> = specs.iter().map(|(name, _)| *name).collect();
        return Err(BenchError::Other(format!(
            "--case {unknown}: no such case; the cases are {}",
            names.join(", ")
        )));
    }
    if !opts.cases.is_empty() {
        specs.retain(|(name, _)| opts.cases.iter().any(|c| c == name));
    }
    let cancel = CancellationToken::new();
    let source = bench_source(ff, scratch, opts, profile, log)?;
    let frames = ff.count_frames(&source)?;
    let bare_out = scratch.join("overlay-bare.mp4");
    let ours_out = scratch.join("overlay-reelay.mp4");
    let bare = bare_args(&source, &bare_out, profile);
    let mut runs: Vec<Runs> = specs.iter().map(|_| Runs::default()).collect();
    // Each repetition runs every case once, so a slow minute of this shared
    // machine weighs on all the cases alike instead of on one.
    for rep in 0..opts.repetitions {
        for ((name, spec), r) in specs.iter().zip(&mut runs) {
            let params = OverlayParams {
                spec: spec.clone(),
                offset: None,
            };
            let run_bare =
                || timed(|| Ok(ff.run(&bare, Some(opts.seconds), &mut |_| {}, &cancel)?));
            let run_ours = || {
                timed(|| {
                    overlay::run(
                        ff,
                        std::slice::from_ref(&source),
                        &ours_out,
                        &params,
                        profile,
                        font.clone(),
                        &mut |_| {},
                        &cancel,
                    )
                    .map(|_| ())
                    .map_err(|e| BenchError::Other(e.to_string()))
                })
            };
            // Alternate which runs first, so that going first or second in
            // a pair (a warm cache, a neighbour's burst) favours neither.
            let ((wall_b, cpu_b), (wall, cpu)) = if rep % 2 == 0 {
                let b = run_bare()?;
                (b, run_ours()?)
            } else {
                let o = run_ours()?;
                (run_bare()?, o)
            };
            r.theirs.push(wall_b);
            r.theirs_cpu.push(cpu_b);
            r.ours.push(wall);
            r.ours_cpu.push(cpu);
            log(&format!(
                "{name} #{}: bare {wall_b:.2} s ({cpu_b:.2} s CPU), overlay {wall:.2} s ({cpu:.2} s CPU)",
                rep + 1,
            ));
        }
    }
    let cases = specs
        .iter()
        .zip(runs)
        .map(|((name, _), r)| summarise(name, frames, r, opts.target_ratio))
        .collect();
    Ok(OverlayBenchReport {
        ffmpeg: ff.path().display().to_string(),
        options: opts.clone(),
        profile: profile.clone(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cases,
    })
}

pub fn render(report: &OverlayBenchReport) -> String {
    let o = &report.options;
    let mut out = format!(
        "bench overlay: {} s {}x{}@{} source, {} repetition(s), {} CPU(s), preset {} crf {}\n{:<26} {:>6} {:>11} {:>9} {:>7} {:>13} {:>7} {:>13} {:>9}  target\n",
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
        "95 % interval",
        "best",
        "CPU ms/frame",
        "CPU ratio",
    );
    for c in &report.cases {
        out.push_str(&format!(
            "{:<26} {:>6} {:>11.2} {:>9.2} {:>7.3} {:>6.3}-{:<6.3} {:>7.3} {:>6.1}/{:<6.1} {:>9.3}  >= {:.2} {}{}\n",
            c.name,
            c.frames,
            c.overlay_fps,
            c.bare_fps,
            c.ratio,
            c.ratio_low,
            c.ratio_high,
            c.ratio_best,
            c.overlay_cpu_ms,
            c.bare_cpu_ms,
            c.cpu_ratio,
            c.target,
            if c.within_target { "ok" } else { "MISSED" },
            // The median's own interval decides nothing, but says whether
            // another run could well land on the other side of the target.
            if c.ratio_low < c.target && c.target <= c.ratio_high {
                " (the interval spans the target)"
            } else {
                ""
            }
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_case_reports_the_paired_median_and_its_interval() {
        // Bare is slower by exactly its pair's factor, so the ratios are
        // known: 0.80, 0.85, ..., 1.20 shuffled across the nine pairs.
        let factors = [1.0, 0.85, 1.2, 0.8, 0.95, 1.1, 0.9, 1.15, 1.05];
        let ours: Vec<f64> = (0..9).map(|i| 4.0 + 0.1 * f64::from(i)).collect();
        let theirs: Vec<f64> = ours.iter().zip(factors).map(|(o, f)| o * f).collect();
        let runs = Runs {
            ours: ours.clone(),
            theirs: theirs.clone(),
            ours_cpu: ours.iter().map(|o| o * 2.0).collect(),
            theirs_cpu: theirs.iter().map(|b| b * 2.0).collect(),
        };
        let c = summarise("case", 300, runs, 0.9);
        assert!((c.ratio - 1.0).abs() < 1e-12, "{}", c.ratio);
        assert!((c.ratio_low - 0.85).abs() < 1e-12, "{}", c.ratio_low);
        assert!((c.ratio_high - 1.15).abs() < 1e-12, "{}", c.ratio_high);
        assert!((c.cpu_ratio - 1.0).abs() < 1e-12);
        assert!(c.within_target);
        let report = OverlayBenchReport {
            ffmpeg: "ffmpeg".into(),
            options: OverlayBenchOptions::default(),
            profile: EncodeProfile::default(),
            cpus: 2,
            cases: vec![c],
        };
        let table = render(&report);
        assert!(table.contains("0.850-1.150"), "{table}");
        assert!(
            table.contains("ok (the interval spans the target)"),
            "{table}"
        );
    }
}
