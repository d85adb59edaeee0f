//! The streaming pipeline of the `frame` step. Five stages run at once, on
//! their own threads, joined by bounded channels, so memory stays the same
//! whatever the clip's length and the slowest stage (the model) sets the
//! pace:
//!
//! ```text
//! decode ──frames──▶ crop+tensor ──batches──▶ inference ──outputs──▶ pixels+resize ──frames──▶ encode
//! FFmpeg rgb24 pipe   [N,3,h,w] f32           Upscaler (tiles)       clamp, round, Catmull-Rom  FFmpeg stdin, H.264
//! ```
//!
//! 1. **decode**: FFmpeg decodes the first video stream to RGB24 on a pipe
//!    (NVDEC with `-hwaccel cuda` when enabled), frames read whole.
//! 2. **crop + tensor**: each frame's crop box (static, or keyframes
//!    interpolated at `index / fps`) into planar f32, `batch` frames a
//!    tensor (on CUDA the last batch is padded to keep one shape).
//! 3. **inference**: [`Upscaler::upscale_tensor`], tiled when the crop is
//!    larger than `tile`.
//! 4. **pixels + resize**: [`Resizer`]: to the output size, clamped and
//!    rounded to RGB24.
//! 5. **encode**: on the calling thread, which also reports progress:
//!    rawvideo into FFmpeg's stdin → H.264 (the profile's libx264, or
//!    NVENC) in MP4 with `+faststart`, the audio of the input copied.
//!
//! Every frame decoded is encoded, at the input's frame rate: the output
//! has exactly the input's frame count, rate and duration.

use std::ffi::OsString;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, sync_channel};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use ndarray::Array4;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::crop::{CropPlan, decode_region};
use super::params::{FrameParams, OutputSize, VideoAccel};
use super::resize::Resizer;
use super::yuv::rgb_to_yuv420p;
use crate::inference::{InferenceError, Upscaler};
use crate::media::filter::{fps_exact, fps_string};
use crate::media::{
    EncodeProfile, Ffmpeg, MediaError, MediaInfo, Pipe, PipedFfmpeg, Progress, path_arg,
};
use crate::overlay::Scene;
use crate::tasks::TaskError;

/// Audio codecs an MP4 can carry as they are; others are re-encoded with
/// the profile's audio settings.
const MP4_AUDIO: &[&str] = &["aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"];

/// How long a blocked stage waits before it looks at the cancel flag.
const POLL: Duration = Duration::from_millis(50);

/// What one run did, for audit metadata and the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRun {
    /// Frames decoded, and encoded: the same number.
    pub frames: u64,
    /// Frame rate (FFmpeg spelling, e.g. `30000/1001`) and its value.
    pub fps: String,
    pub fps_value: f64,
    /// Source frame size.
    pub source: (u32, u32),
    /// Model input size (the crop's).
    pub input: (u32, u32),
    pub size: OutputSize,
    /// `copy`, `encode` or `none`.
    pub audio: &'static str,
    /// Model runs per batch of the pipeline: 1, or the tile count.
    pub tiles: usize,
    pub batch: usize,
    pub nvdec: bool,
    pub nvenc: bool,
    /// Wall time from the first spawn to the output's close.
    pub seconds: f64,
    /// Per stage: busy time (working, not waiting on a neighbour).
    pub stages: Vec<StageStats>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageStats {
    pub name: &'static str,
    pub busy_seconds: f64,
    pub items: u64,
}

/// Hardware video decode/encode, once resolved for this worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accel {
    pub nvdec: bool,
    pub nvenc: bool,
}

/// Decides NVDEC/NVENC from the setting, the model's device, and what the
/// FFmpeg at hand can do (tested once per process and binary).
pub fn resolve_accel(ff: &Ffmpeg, setting: VideoAccel, cuda: bool) -> Result<Accel, TaskError> {
    match setting {
        VideoAccel::Off => Ok(Accel::default()),
        VideoAccel::Auto if !cuda => Ok(Accel::default()),
        VideoAccel::Auto => {
            let caps = capabilities(ff);
            Ok(Accel {
                nvdec: caps.cuda_hwaccel,
                nvenc: caps.nvenc,
            })
        }
        VideoAccel::Nvidia => {
            let caps = capabilities(ff);
            if !(caps.cuda_hwaccel && caps.nvenc) {
                return Err(TaskError::transient(format!(
                    "video_accel nvidia was asked for, but the FFmpeg at {} cannot use {}; use an FFmpeg built with NVENC/NVDEC on a machine with an NVIDIA driver, or set video_accel to auto or off",
                    ff.path().display(),
                    match (caps.cuda_hwaccel, caps.nvenc) {
                        (false, false) => "NVDEC (-hwaccel cuda) nor NVENC (h264_nvenc)",
                        (false, true) => "NVDEC (-hwaccel cuda)",
                        _ => "NVENC (h264_nvenc)",
                    }
                )));
            }
            Ok(Accel {
                nvdec: true,
                nvenc: true,
            })
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Capabilities {
    cuda_hwaccel: bool,
    nvenc: bool,
}

/// Whether FFmpeg lists the `cuda` hwaccel, and whether `h264_nvenc` really
/// encodes a frame here (it is compiled into most static builds, but needs
/// a GPU and a driver).
fn capabilities(ff: &Ffmpeg) -> Capabilities {
    static CACHE: OnceLock<Mutex<Vec<(std::path::PathBuf, Capabilities)>>> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, c)) = cache.iter().find(|(p, _)| p == ff.path()) {
        return *c;
    }
    let run = |args: &[&str]| {
        std::process::Command::new(ff.path())
            .args(args)
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
    };
    let cuda_hwaccel = run(&["-hide_banner", "-hwaccels"]).is_some_and(|o| {
        o.status.success()
            && String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "cuda")
    });
    let nvenc = run(&[
        "-hide_banner",
        "-nostdin",
        "-loglevel",
        "error",
        "-f",
        "lavfi",
        "-i",
        "color=c=black:s=256x144:d=0.1",
        "-frames:v",
        "1",
        "-c:v",
        "h264_nvenc",
        "-f",
        "null",
        "-",
    ])
    .is_some_and(|o| o.status.success());
    let caps = Capabilities {
        cuda_hwaccel,
        nvenc,
    };
    tracing::info!(ffmpeg = %ff.path().display(), nvdec = cuda_hwaccel, nvenc, "FFmpeg hardware video support");
    cache.push((ff.path().to_path_buf(), caps));
    caps
}

/// Everything a run needs.
pub struct FrameJob<'a> {
    pub ff: &'a Ffmpeg,
    pub input: &'a Path,
    pub output: &'a Path,
    pub params: &'a FrameParams,
    /// The probed input, with its crop already validated against it.
    pub info: &'a MediaInfo,
    pub profile: &'a EncodeProfile,
    pub upscaler: &'a Upscaler,
    pub accel: Accel,
    /// An overlay to draw on each output frame (fused frame + overlay):
    /// stage 4 then hands the encoder yuv420p instead of RGB24.
    pub scene: Option<&'a Scene>,
}

struct Decoded {
    index: u64,
    data: Vec<u8>,
}

struct Batch {
    /// Real frames in the tensor (the rest is padding).
    count: usize,
    tensor: Array4<f32>,
}

/// Shared by the stages: the first failure, and whether to stop.
struct Shared {
    stop: AtomicBool,
    error: Mutex<Option<TaskError>>,
    cancel: CancellationToken,
}

impl Shared {
    fn fail(&self, e: TaskError) {
        let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some(e);
        }
        self.stop.store(true, Ordering::SeqCst);
    }
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::SeqCst) || self.cancel.is_cancelled()
    }
}

/// Sends, blocking while the next stage is busy. `false`: the next stage
/// is gone (the pipeline is stopping), so stop this one.
fn send<T>(tx: &SyncSender<T>, item: T) -> bool {
    tx.send(item).is_ok()
}

/// Receives, giving up when the pipeline stops. `None`: the stream ended.
fn recv<T>(rx: &Receiver<T>, shared: &Shared) -> Option<T> {
    loop {
        match rx.recv_timeout(POLL) {
            Ok(v) => return Some(v),
            Err(RecvTimeoutError::Disconnected) => return None,
            Err(RecvTimeoutError::Timeout) => {
                if shared.stopped() {
                    return None;
                }
            }
        }
    }
}

pub(crate) fn inference_error(e: InferenceError) -> TaskError {
    use crate::models::ModelError;
    match &e {
        InferenceError::Model(ModelError::UnknownModel { .. })
        | InferenceError::Model(ModelError::NoVariant { .. })
        | InferenceError::BadInput(_) => TaskError::permanent(Some("model".into()), e.to_string()),
        _ => TaskError::transient(e.to_string()),
    }
}

/// The decoder: the first video stream, only `region` of it when that is
/// not the whole frame, as RGB24 on stdout, every frame (no rate change).
fn decode_args(
    input: &Path,
    accel: Accel,
    region: (u32, u32, u32, u32),
    frame: (u32, u32),
) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    if accel.nvdec {
        a.extend(["-hwaccel", "cuda"].map(OsString::from));
    }
    a.push("-i".into());
    a.push(path_arg(input));
    a.extend(["-map", "0:v:0", "-an", "-sn", "-dn"].map(OsString::from));
    let (x, y, w, h) = region;
    if (x, y, w, h) != (0, 0, frame.0, frame.1) {
        a.push("-vf".into());
        a.push(format!("crop=w={w}:h={h}:x={x}:y={y}:exact=1").into());
    }
    a.extend(
        [
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "pipe:1",
        ]
        .map(OsString::from),
    );
    a
}

/// The encoder's arguments, and what happens to the audio.
fn encode_args(job: &FrameJob<'_>, fps: &str) -> (Vec<OsString>, &'static str) {
    let size = job.params.size;
    let mut a: Vec<OsString> = [
        "-f",
        "rawvideo",
        "-pix_fmt",
        if job.scene.is_some() {
            "yuv420p"
        } else {
            "rgb24"
        },
        "-video_size",
        &size.to_string(),
        "-framerate",
        fps,
        "-i",
        "pipe:0",
    ]
    .map(OsString::from)
    .to_vec();
    let audio = match &job.info.audio {
        None => "none",
        Some(a) if MP4_AUDIO.contains(&a.codec.as_str()) => "copy",
        Some(_) => "encode",
    };
    if audio != "none" {
        a.push("-i".into());
        a.push(path_arg(job.input));
    }
    a.extend(["-map", "0:v:0"].map(OsString::from));
    if audio != "none" {
        a.extend(["-map", "1:a:0"].map(OsString::from));
    }
    a.extend(["-fps_mode", "passthrough"].map(OsString::from));
    if job.accel.nvenc {
        let cq = job.profile.crf.max(1).to_string();
        a.extend(
            [
                "-c:v",
                "h264_nvenc",
                "-preset",
                "p4",
                "-rc",
                "vbr",
                "-cq",
                &cq,
                "-b:v",
                "0",
                "-pix_fmt",
                "yuv420p",
            ]
            .map(OsString::from),
        );
    } else {
        a.extend(job.profile.video_args());
    }
    match audio {
        "copy" => a.extend(["-c:a", "copy"].map(OsString::from)),
        "encode" => a.extend(job.profile.audio_args()),
        _ => {}
    }
    a.extend(["-sn", "-dn"].map(OsString::from));
    a.extend(job.profile.container_args());
    a.push(path_arg(job.output));
    (a, audio)
}

/// Runs the pipeline on `job`. Blocking: the caller is a blocking thread.
pub fn run(
    job: &FrameJob<'_>,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<FrameRun, TaskError> {
    let started = Instant::now();
    let video = job
        .info
        .video
        .as_ref()
        .ok_or_else(|| TaskError::permanent(Some("input".into()), "the input has no video"))?;
    let fps = fps_string(video.fps);
    let fps_value = fps_exact(video.fps);
    let region = decode_region(&job.params.crop, video.width, video.height);
    let plan = CropPlan::new(&job.params.crop, fps_value, region);
    let up = job.upscaler;
    let scale = up.scale() as usize;
    let batch = up.batch_size();
    let pad_batches = up.model().device.is_cuda();
    let size = job.params.size;
    let expected = (job.info.duration * fps_value).round().max(1.0);

    let (mut decoder, mut encoder, audio) =
        spawn_codecs(job, region, (video.width, video.height), &fps)?;
    let dec_out = decoder.stdout.take().expect("piped stdout");
    let mut enc_in = encoder.stdin.take().expect("piped stdin");

    let shared = Shared {
        stop: AtomicBool::new(false),
        error: Mutex::new(None),
        cancel: cancel.clone(),
    };
    let (tx_frames, rx_frames) = sync_channel::<Decoded>(batch + 1);
    let (tx_batches, rx_batches) = sync_channel::<Batch>(1);
    let (tx_outputs, rx_outputs) = sync_channel::<Batch>(1);
    let (tx_pixels, rx_pixels) = sync_channel::<Vec<u8>>(batch + 1);

    let (stats, (written, write_busy, write_failed)) = std::thread::scope(|scope| {
        let shared = &shared;
        let plan = &plan;
        let decode = scope.spawn(move || decode_stage(dec_out, plan, job.input, shared, tx_frames));
        let crop = scope
            .spawn(move || crop_stage(rx_frames, plan, batch, pad_batches, shared, tx_batches));
        let infer = scope.spawn(move || infer_stage(rx_batches, up, shared, tx_outputs));
        let post = scope.spawn(move || {
            let out = Resized {
                scale,
                size,
                scene: job.scene,
                fps_value,
            };
            resize_stage(rx_outputs, plan, &out, shared, tx_pixels)
        });
        // 5. encode, here.
        let encoded = encode_stage(
            &rx_pixels,
            &mut enc_in,
            shared,
            fps_value,
            expected,
            on_progress,
        );
        if shared.stopped() {
            // Unblock the decoder's read: its stages are told to stop.
            decoder.kill();
            shared.stop.store(true, Ordering::SeqCst);
        }
        drop(rx_pixels);
        let stats: Vec<StageStats> = [decode, crop, infer, post]
            .into_iter()
            .map(|h| {
                h.join().unwrap_or(StageStats {
                    name: "panicked",
                    busy_seconds: 0.0,
                    items: 0,
                })
            })
            .collect();
        (stats, encoded)
    });
    drop(enc_in);

    let decoded = settle(
        job,
        decoder,
        encoder,
        &shared,
        &stats,
        written,
        write_failed,
    )?;
    let mut stages = stats;
    stages.push(StageStats {
        name: "encode",
        busy_seconds: write_busy.as_secs_f64(),
        items: written,
    });
    Ok(FrameRun {
        frames: decoded,
        fps,
        fps_value,
        source: (video.width, video.height),
        input: (plan.in_w as u32, plan.in_h as u32),
        size,
        audio,
        tiles: up.tiles_for(plan.in_h, plan.in_w),
        batch,
        nvdec: job.accel.nvdec,
        nvenc: job.accel.nvenc,
        seconds: started.elapsed().as_secs_f64(),
        stages,
    })
}

/// Starts the decoder (the region of the input as RGB24 on stdout) and the
/// encoder (frames on stdin); also says what became of the audio.
fn spawn_codecs(
    job: &FrameJob<'_>,
    region: (u32, u32, u32, u32),
    frame: (u32, u32),
    fps: &str,
) -> Result<(PipedFfmpeg, PipedFfmpeg, &'static str), TaskError> {
    let decoder = job
        .ff
        .spawn_piped(
            &decode_args(job.input, job.accel, region, frame),
            Pipe::Stdout,
            &format!("decoding `{}`", job.input.display()),
        )
        .map_err(|e: MediaError| e.into_task_error(Some("input")))?;
    let (enc_args, audio) = encode_args(job, fps);
    let encoder = job
        .ff
        .spawn_piped(
            &enc_args,
            Pipe::Stdin,
            &format!("encoding `{}`", job.output.display()),
        )
        .map_err(|e| e.into_task_error(None))?;
    Ok((decoder, encoder, audio))
}

/// After the stages: a cancel or the first failure wins (the encoder's own
/// words when it went away); otherwise both FFmpeg processes must end
/// cleanly and every decoded frame must have been encoded. Returns the
/// frames decoded.
fn settle(
    job: &FrameJob<'_>,
    mut decoder: PipedFfmpeg,
    mut encoder: PipedFfmpeg,
    shared: &Shared,
    stats: &[StageStats],
    written: u64,
    write_failed: bool,
) -> Result<u64, TaskError> {
    if shared.cancel.is_cancelled() {
        encoder.kill();
        decoder.kill();
        return Err(TaskError::transient(format!(
            "framing `{}` was cancelled",
            job.input.display()
        )));
    }
    if stats.iter().any(|s| s.name == "panicked") {
        shared.fail(TaskError::transient("a frame pipeline stage panicked"));
    }
    let failed = shared
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    if let Some(e) = failed {
        decoder.kill();
        if write_failed {
            // The encoder went away: its own words say why.
            if let Err(enc) = encoder.finish() {
                return Err(enc.into_task_error(None));
            }
            return Err(e);
        }
        encoder.kill();
        return Err(e);
    }
    let decoded = stats[0].items;
    decoder
        .finish()
        .map_err(|e| e.into_task_error(Some("input")))?;
    let last = encoder.finish().map_err(|e| e.into_task_error(None))?;
    if decoded == 0 {
        return Err(TaskError::permanent(
            Some("input".into()),
            format!(
                "no frames could be decoded from `{}`; the file is empty or corrupt, upload it again",
                job.input.display()
            ),
        ));
    }
    let encoded = last.map_or(0, |p| p.frame);
    if written != decoded || encoded != decoded {
        return Err(TaskError::transient(format!(
            "frame count mismatch: {decoded} decoded, {written} sent to the encoder, {encoded} encoded"
        )));
    }
    Ok(decoded)
}

/// Stage 1: raw frames from the decoder, numbered.
fn decode_stage(
    dec_out: impl Read,
    plan: &CropPlan,
    input: &Path,
    shared: &Shared,
    tx_frames: SyncSender<Decoded>,
) -> StageStats {
    let mut out = dec_out;
    let len = plan.frame_len();
    let mut busy = Duration::ZERO;
    let mut index = 0u64;
    while !shared.stopped() {
        let mut data = vec![0u8; len];
        let t = Instant::now();
        match read_frame(&mut out, &mut data) {
            Ok(true) => {}
            Ok(false) => break,
            Err(e) => {
                shared.fail(TaskError::transient(format!(
                    "reading decoded frames of `{}`: {e}",
                    input.display()
                )));
                break;
            }
        }
        busy += t.elapsed();
        if !send(&tx_frames, Decoded { index, data }) {
            break;
        }
        index += 1;
    }
    StageStats {
        name: "decode",
        busy_seconds: busy.as_secs_f64(),
        items: index,
    }
}

/// Stage 2: crop each frame and pack batches into the model's input tensor
/// (padded to a full batch on CUDA, whose graphs want one shape).
fn crop_stage(
    rx_frames: Receiver<Decoded>,
    plan: &CropPlan,
    batch: usize,
    pad_batches: bool,
    shared: &Shared,
    tx_batches: SyncSender<Batch>,
) -> StageStats {
    let mut busy = Duration::ZERO;
    let mut items = 0u64;
    let (ih, iw) = (plan.in_h, plan.in_w);
    let one = plan.input_len();
    let mut pending: Vec<Decoded> = Vec::with_capacity(batch);
    let mut ended = false;
    while !ended {
        match recv(&rx_frames, shared) {
            Some(f) => pending.push(f),
            None => ended = true,
        }
        let full = pending.len() == batch;
        let last = ended && !pending.is_empty();
        if !full && !last {
            continue;
        }
        let t = Instant::now();
        let count = pending.len();
        let n = if pad_batches { batch } else { count };
        let mut tensor = Array4::<f32>::zeros((n, 3, ih, iw));
        {
            let flat = tensor.as_slice_mut().expect("fresh arrays are contiguous");
            for (slot, f) in flat.chunks_exact_mut(one).zip(&pending) {
                plan.fill(f.index, &f.data, slot);
            }
            if n > count {
                let (done, rest) = flat.split_at_mut(count * one);
                let last = &done[(count - 1) * one..];
                for slot in rest.chunks_exact_mut(one) {
                    slot.copy_from_slice(last);
                }
            }
        }
        items += count as u64;
        pending.clear();
        busy += t.elapsed();
        if !send(&tx_batches, Batch { count, tensor }) {
            break;
        }
    }
    StageStats {
        name: "crop",
        busy_seconds: busy.as_secs_f64(),
        items,
    }
}

/// Stage 3: the model.
fn infer_stage(
    rx_batches: Receiver<Batch>,
    up: &Upscaler,
    shared: &Shared,
    tx_outputs: SyncSender<Batch>,
) -> StageStats {
    let mut busy = Duration::ZERO;
    let mut items = 0u64;
    while let Some(b) = recv(&rx_batches, shared) {
        let t = Instant::now();
        let out = match up.upscale_tensor(b.tensor.view()) {
            Ok(o) => o,
            Err(e) => {
                shared.fail(inference_error(e));
                break;
            }
        };
        busy += t.elapsed();
        items += b.count as u64;
        if !send(
            &tx_outputs,
            Batch {
                count: b.count,
                tensor: out,
            },
        ) {
            break;
        }
    }
    StageStats {
        name: "inference",
        busy_seconds: busy.as_secs_f64(),
        items,
    }
}

/// What stage 4 turns the model's output into.
struct Resized<'a> {
    scale: usize,
    size: OutputSize,
    scene: Option<&'a Scene>,
    fps_value: f64,
}

/// Stage 4: model output to pixels at the asked size, with the overlay
/// drawn when there is one.
fn resize_stage(
    rx_outputs: Receiver<Batch>,
    plan: &CropPlan,
    out: &Resized<'_>,
    shared: &Shared,
    tx_pixels: SyncSender<Vec<u8>>,
) -> StageStats {
    let (scale, size, fps_value) = (out.scale, out.size, out.fps_value);
    let mut busy = Duration::ZERO;
    let mut items = 0u64;
    let mut resizer = Resizer::new(
        plan.in_w as u32 * scale as u32,
        plan.in_h as u32 * scale as u32,
        size.width,
        size.height,
    );
    let one = 3 * plan.in_h * scale * plan.in_w * scale;
    let (ow, oh) = (size.width as usize, size.height as usize);
    'outer: while let Some(b) = recv(&rx_outputs, shared) {
        let flat = b.tensor.as_slice().expect("model outputs are contiguous");
        for src in flat.chunks_exact(one).take(b.count) {
            let t = Instant::now();
            let mut px = vec![0u8; resizer.out_len()];
            resizer.run(src, &mut px);
            if let Some(scene) = out.scene {
                let mut yuv = Vec::new();
                rgb_to_yuv420p(&px, ow, oh, &mut yuv);
                scene.draw(&mut yuv, items as f64 / fps_value);
                px = yuv;
            }
            busy += t.elapsed();
            items += 1;
            if !send(&tx_pixels, px) {
                break 'outer;
            }
        }
    }
    StageStats {
        name: "resize",
        busy_seconds: busy.as_secs_f64(),
        items,
    }
}

/// Stage 5, on the calling thread: frames into the encoder, with progress.
/// Returns the frames written, the time spent writing, and whether a write
/// failed (the encoder went away).
fn encode_stage(
    rx_pixels: &Receiver<Vec<u8>>,
    enc_in: &mut impl Write,
    shared: &Shared,
    fps_value: f64,
    expected: f64,
    on_progress: &mut dyn FnMut(Progress),
) -> (u64, Duration, bool) {
    let (mut written, mut write_busy, mut write_failed) = (0u64, Duration::ZERO, false);
    while let Some(px) = recv(rx_pixels, shared) {
        let t = Instant::now();
        if let Err(e) = enc_in.write_all(&px) {
            write_failed = true;
            shared.fail(TaskError::transient(format!(
                "writing frames to the encoder: {e}"
            )));
            break;
        }
        write_busy += t.elapsed();
        written += 1;
        on_progress(Progress {
            out_time: written as f64 / fps_value,
            frame: written,
            fraction: Some((written as f64 / expected).min(1.0)),
        });
    }
    (written, write_busy, write_failed)
}

/// Fills `buf` with one frame. `Ok(false)` at a clean end of stream (or a
/// partial frame, which only a killed FFmpeg leaves; its exit says why).
fn read_frame(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => return Ok(false),
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}
