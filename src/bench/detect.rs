//! `reelay bench detect`: the detector's frames per second on the model
//! alone against end to end (FFmpeg decode and scale through the rawvideo
//! pipe, the model, boxes back in source pixels).
//!
//! The source is a 1080p30 pan across scikit-image's astronaut photo (made
//! once, not timed), so there is a person to find. Model-only runs the
//! detector on frames already decoded to its working size, in memory; end to
//! end is `detect` over the whole video, every frame, and again sampled at
//! 5 frames/s.

use std::ffi::OsString;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::media::BenchError;
use super::stats::median;
use crate::detect::video::{SampleRate, detect_video};
use crate::detect::{Detector, DetectorConfig};
use crate::inference::{Frame, LoadOptions};
use crate::media::pipe::{FrameReader, PixelFormat};
use crate::media::{Ffmpeg, MediaError, MediaInfo, path_arg};
use crate::models::Manifest;

#[derive(Debug, Clone, Serialize)]
pub struct DetectBenchOptions {
    pub model: String,
    #[serde(skip)]
    pub load: LoadOptions,
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Minimum timed seconds of the model-only loop.
    pub min_model_secs: f64,
    pub imgsz: Option<u32>,
    /// Alternating model-only and end-to-end runs; medians are reported.
    pub repetitions: u32,
}

impl Default for DetectBenchOptions {
    fn default() -> Self {
        DetectBenchOptions {
            model: crate::tasks::detect::DEFAULT_MODEL.into(),
            load: LoadOptions::default(),
            seconds: 10.0,
            width: 1920,
            height: 1080,
            fps: 30,
            min_model_secs: 3.0,
            imgsz: None,
            repetitions: 3,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DetectBenchReport {
    pub model: String,
    pub format: String,
    pub device: String,
    pub cpus: usize,
    pub options: DetectBenchOptions,
    /// Size frames reach the model at.
    pub working_size: (u32, u32),
    pub model_only_fps: f64,
    /// Every frame: frames / wall seconds.
    pub end_to_end_fps: f64,
    /// Share of the end-to-end run spent in the model.
    pub end_to_end_model_share: f64,
    /// Sampled at 5 frames/s: sampled frames / wall seconds.
    pub sampled_fps: f64,
    /// Video seconds per wall second at 5 frames/s.
    pub sampled_realtime: f64,
    /// Mean boxes per frame (a sanity check: the person is found).
    pub boxes_per_frame: f64,
}

/// The source: the astronaut photo on a grey canvas, a window panning
/// across it; `testsrc2` when the photo is not there.
fn make_source(ff: &Ffmpeg, path: &Path, o: &DetectBenchOptions) -> Result<(), MediaError> {
    let photo = crate::media::find_tool("testdata/astronaut.png");
    let d = crate::media::secs(o.seconds);
    let mut args: Vec<OsString> = Vec::new();
    match photo {
        Some(p) => {
            let canvas_w = o.width + o.height;
            let speed = f64::from(o.height) / o.seconds;
            args.extend(["-loop", "1", "-framerate"].iter().map(OsString::from));
            args.push(o.fps.to_string().into());
            args.extend(["-i".into(), path_arg(&p), "-vf".into()]);
            args.push(
                format!(
                    "scale={h}:{h},pad={canvas_w}:{h}:{x}:0:color=gray,crop={w}:{h}:x='t*{speed}':y=0,format=yuv420p",
                    h = o.height,
                    w = o.width,
                    x = o.width / 2,
                )
                .into(),
            );
            args.extend(["-t".into(), d.clone().into()]);
        }
        None => {
            args.extend(["-f", "lavfi", "-i"].iter().map(OsString::from));
            args.push(format!("testsrc2=s={}x{}:r={}:d={d}", o.width, o.height, o.fps).into());
        }
    }
    args.extend(
        ["-c:v", "libx264", "-preset", "veryfast", "-crf", "20"]
            .iter()
            .map(OsString::from),
    );
    args.push(path_arg(path));
    ff.run(
        &args,
        Some(o.seconds),
        &mut |_| {},
        &CancellationToken::new(),
    )
}

/// Frames decoded to the detector's working size, in memory: what the
/// model-only side runs on.
fn decoded_frames(
    ff: &Ffmpeg,
    source: &Path,
    (ww, wh): (u32, u32),
    count: u32,
) -> Result<Vec<Frame>, BenchError> {
    let mut args: Vec<OsString> = vec![
        "-i".into(),
        path_arg(source),
        "-frames:v".into(),
        count.to_string().into(),
        "-vf".into(),
    ];
    args.push(format!("scale={ww}:{wh}:flags=bicubic").into());
    args.extend(
        ["-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:1"]
            .iter()
            .map(OsString::from),
    );
    let mut reader = FrameReader::spawn(
        ff,
        &args,
        PixelFormat::Rgb24,
        ww,
        wh,
        "decoding bench frames",
    )?;
    let mut frames = Vec::new();
    let mut buf = Vec::new();
    while reader.read_frame(&mut buf)? {
        frames.push(Frame {
            width: ww,
            height: wh,
            data: buf.clone(),
        });
    }
    if frames.is_empty() {
        return Err(BenchError::Other(
            "the bench source decoded to no frames".into(),
        ));
    }
    Ok(frames)
}

/// Model-only frames/s: `frames` in turn through one reused buffer (as the
/// end-to-end path reads every frame into), for at least `min_secs`.
fn model_only_fps(
    detector: &Detector,
    frames: &[Frame],
    source_size: (u32, u32),
    min_secs: f64,
) -> Result<f64, BenchError> {
    let t = Instant::now();
    let mut n = 0u64;
    let mut current = frames[0].clone();
    while t.elapsed().as_secs_f64() < min_secs || n < frames.len() as u64 {
        current
            .data
            .copy_from_slice(&frames[n as usize % frames.len()].data);
        detector
            .detect_scaled(&current, source_size)
            .map_err(|e| BenchError::Other(e.to_string()))?;
        n += 1;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// One end-to-end run of `reelay run detect`'s loop: frames/s, the
/// model's share of the wall time, boxes per frame, frames, seconds.
fn end_to_end(
    ff: &Ffmpeg,
    detector: &Detector,
    source: &Path,
    info: &MediaInfo,
    rate: SampleRate,
) -> Result<(f64, f64, f64, u64, f64), BenchError> {
    let t = Instant::now();
    let (all, stats) = detect_video(
        ff,
        detector,
        source,
        info,
        rate,
        &mut |_| {},
        &CancellationToken::new(),
    )
    .map_err(|e| BenchError::Other(e.to_string()))?;
    let secs = t.elapsed().as_secs_f64();
    let boxes = all.frames.iter().map(|f| f.detections.len()).sum::<usize>() as f64
        / all.frames.len().max(1) as f64;
    Ok((
        stats.frames as f64 / secs,
        stats.model_secs / secs,
        boxes,
        stats.frames,
        secs,
    ))
}

pub fn run_detect_bench(
    ff: &Ffmpeg,
    manifest: &Manifest,
    scratch: &Path,
    o: &DetectBenchOptions,
    log: &mut dyn FnMut(&str),
) -> Result<DetectBenchReport, BenchError> {
    std::fs::create_dir_all(scratch).map_err(|source| MediaError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    let source = scratch.join(format!(
        "detect-source-{}x{}-{}s.mp4",
        o.width, o.height, o.seconds
    ));
    if !source.is_file() {
        log(&format!(
            "making a {} s {}x{}@{} pan across a photo",
            o.seconds, o.width, o.height, o.fps
        ));
        make_source(ff, &source, o)?;
    }
    let info = ff.probe(&source)?;
    let config = DetectorConfig {
        load: o.load.clone(),
        imgsz: o.imgsz,
        ..DetectorConfig::new(o.model.clone())
    };
    let detector =
        Detector::new(manifest, &config).map_err(|e| BenchError::Other(e.to_string()))?;
    let (ww, wh) = detector.working_size(o.width, o.height);
    log(&format!(
        "model {} ({}) on {}, frames handed over at {ww}x{wh}",
        detector.model().audit_id(),
        detector.format().name(),
        detector.model().device_name()
    ));
    let frames = decoded_frames(ff, &source, (ww, wh), 30)?;
    // Untimed warm-up at this size (first runs allocate and plan).
    for f in frames.iter().take(5) {
        detector
            .detect_scaled(f, (o.width, o.height))
            .map_err(|e| BenchError::Other(e.to_string()))?;
    }
    // Alternate the two sides `repetitions` times; report medians, so a
    // noisy neighbour on a shared machine moves both alike.
    let (mut model_fps, mut e2e_fps, mut shares) = (Vec::new(), Vec::new(), Vec::new());
    let mut boxes = 0.0;
    for rep in 0..o.repetitions.max(1) {
        model_fps.push(model_only_fps(
            &detector,
            &frames,
            (o.width, o.height),
            o.min_model_secs,
        )?);
        let (fps, share, b, n, secs) =
            end_to_end(ff, &detector, &source, &info, SampleRate::EveryFrame)?;
        e2e_fps.push(fps);
        shares.push(share);
        boxes = b;
        log(&format!(
            "#{}: model only {:.2} frames/s; end to end, every frame: {n} frames in {secs:.2} s, {fps:.2} frames/s",
            rep + 1,
            model_fps[model_fps.len() - 1],
        ));
    }
    let (_, _, _, sampled, s) = end_to_end(ff, &detector, &source, &info, SampleRate::Fps(5.0))?;
    log(&format!(
        "end to end at 5 frames/s: {sampled} frames in {s:.2} s"
    ));
    Ok(DetectBenchReport {
        model: detector.model().audit_id(),
        format: detector.format().name().into(),
        device: detector.model().device_name(),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        options: o.clone(),
        working_size: (ww, wh),
        model_only_fps: median(&model_fps),
        end_to_end_fps: median(&e2e_fps),
        end_to_end_model_share: median(&shares),
        sampled_fps: sampled as f64 / s,
        sampled_realtime: info.duration / s,
        boxes_per_frame: boxes,
    })
}

pub fn render(r: &DetectBenchReport) -> String {
    format!(
        "bench detect: {} ({}) on {}, {} CPU(s), {} s {}x{}@{} source, frames at {}x{}\n\
         {:<34} {:>10}\n\
         {:<34} {:>10.2}\n\
         {:<34} {:>10.2}\n\
         {:<34} {:>10.3}   (model share of end to end {:.0}%)\n\
         {:<34} {:>10.2}   ({:.2}x real time)\n\
         boxes per frame: {:.2}\n",
        r.model,
        r.format,
        r.device,
        r.cpus,
        r.options.seconds,
        r.options.width,
        r.options.height,
        r.options.fps,
        r.working_size.0,
        r.working_size.1,
        "case",
        "frames/s",
        "model only",
        r.model_only_fps,
        "end to end, every frame",
        r.end_to_end_fps,
        "end to end / model only",
        r.end_to_end_fps / r.model_only_fps,
        r.end_to_end_model_share * 100.0,
        "end to end, sampled at 5 fps",
        r.sampled_fps,
        r.sampled_realtime,
        r.boxes_per_frame,
    )
}
