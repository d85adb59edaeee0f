//! `frame`: crop a clip around the action, upscale the crop ×4 with a
//! Real-ESRGAN model on ONNX Runtime, resize to the output size and encode,
//! streamed at model speed (see [`pipeline`]).
//!
//! - **Inputs:** one clip; [`FrameParams`]: a crop (a box, or keyframes
//!   interpolated per frame), a model, an output size, and optional device,
//!   precision, batch, tiling and hardware-video settings.
//! - **Output:** an H.264 MP4 (`+faststart`) with exactly the input's frame
//!   count, frame rate and duration, the input's audio copied.
//! - **Device:** `device` in the parameters, else the worker's configured
//!   device (`device` in reelay.toml, `REELAY_DEVICE`). The device the model
//!   really ran on goes into the audit metadata (`cpu`, `cuda:Tesla T4`), and
//!   the model file as `name@sha256-prefix`.
//! - **Sessions:** one per process, model, precision and device, verified
//!   and warmed up on first use ([`crate::inference::load`]); every later
//!   step reuses it.
//!
//! Blocking: async callers run it in `tokio::task::spawn_blocking`.

pub mod crop;
pub mod params;
pub mod pipeline;
pub mod resize;
pub mod yuv;

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;

pub use params::{Crop, FrameParams, Framing, Keyframe, OutputSize, Rect, VideoAccel};
pub use pipeline::{Accel, FrameRun, StageStats};

use super::{StepOutput, TaskError, overlay};
use crate::audit::record::{DEVICE, DEVICE_REASON, MODEL};
use crate::inference::{Device, LoadOptions, Upscaler, UpscalerConfig};
use crate::invalid::Invalid;
use crate::media::{EncodeProfile, Ffmpeg, MediaInfo, Progress, secs};
use crate::models::{Manifest, Precision};
use crate::overlay::Scene;

/// Batch size on CUDA when the parameters give none (the CPU gains nothing
/// from batching, so it runs 1).
pub const DEFAULT_CUDA_BATCH: usize = 4;

/// Checks the parameters on their own, before anything is probed or loaded.
pub fn validate_params(params: &FrameParams) -> Result<(), TaskError> {
    Ok(params.validate()?)
}

/// The upscaler for `params`: its session comes from the process's cache,
/// or is verified, loaded and warmed up now. `default_device` applies when
/// the parameters name none.
pub fn upscaler(
    manifest: &Manifest,
    params: &FrameParams,
    default_device: Device,
) -> Result<Upscaler, TaskError> {
    let mut config = UpscalerConfig {
        load: LoadOptions {
            device: params.device.unwrap_or(default_device),
            precision: params.precision.unwrap_or(Precision::Fp32),
            ..LoadOptions::default()
        },
        batch_size: params.batch.unwrap_or(1),
        tile_overlap: params.tile_overlap,
        ..UpscalerConfig::new(params.model.clone())
    };
    if let Some(t) = params.tile {
        config.tile = Some(t);
    }
    let up = Upscaler::new(manifest, &config).map_err(pipeline::inference_error)?;
    if params.batch.is_none() && up.model().device.is_cuda() {
        config.batch_size = DEFAULT_CUDA_BATCH;
        return Upscaler::new(manifest, &config).map_err(pipeline::inference_error);
    }
    Ok(up)
}

/// Frames `inputs[0]` into `output` (an MP4, written in place; the caller
/// publishes it). `inputs[1..]` are the detections files of a fused
/// overlay's tracks. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ff: &Ffmpeg,
    inputs: &[PathBuf],
    output: &Path,
    params: &FrameParams,
    profile: &EncodeProfile,
    default_device: Device,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    run_detailed(
        ff,
        inputs,
        output,
        params,
        profile,
        default_device,
        on_progress,
        cancel,
    )
    .map(|(out, _)| out)
}

/// [`run`], also handing back what the pipeline measured.
#[allow(clippy::too_many_arguments)]
pub fn run_detailed(
    ff: &Ffmpeg,
    inputs: &[PathBuf],
    output: &Path,
    params: &FrameParams,
    profile: &EncodeProfile,
    default_device: Device,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<(StepOutput, FrameRun), TaskError> {
    validate_params(params)?;
    let Some(input) = inputs.first().map(PathBuf::as_path) else {
        return Err(TaskError::permanent(
            Some("input".to_string()),
            "frame needs the clip as its first input",
        ));
    };
    if let Err((field, message)) = profile.validate() {
        return Err(TaskError::permanent(
            Some(format!("output.{field}")),
            format!("output.{field}: {message}"),
        ));
    }
    let info = probe_clip(ff, input, params)?;
    let scene = fused_scene(params, &inputs[1..], info.duration)?;
    let manifest = Manifest::load_default().map_err(|e| TaskError::transient(e.to_string()))?;
    let up = upscaler(&manifest, params, default_device)?;
    let accel = pipeline::resolve_accel(
        ff,
        params.video_accel.unwrap_or_default(),
        up.model().device.is_cuda(),
    )?;
    let job = pipeline::FrameJob {
        ff,
        input,
        output,
        params,
        info: &info,
        profile,
        upscaler: &up,
        accel,
        scene: scene.as_ref(),
    };
    let run = pipeline::run(&job, on_progress, cancel)?;
    tracing::info!(
        input = %input.display(),
        frames = run.frames,
        seconds = run.seconds,
        fps = run.frames as f64 / run.seconds,
        device = %up.device_name(),
        "framed"
    );
    let out = audit_metadata(params, &up, &run, scene.is_some());
    Ok((out, run))
}

/// Probes the clip and checks the crop fits its picture.
fn probe_clip(ff: &Ffmpeg, input: &Path, params: &FrameParams) -> Result<MediaInfo, TaskError> {
    let info = ff
        .probe(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    let video = info
        .require_video(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    params
        .crop
        .validate_within("crop", video.width, video.height)
        .map_err(|e| Invalid {
            object: format!("clip `{}`", input.display()),
            ..e
        })?;
    Ok(info)
}

/// The overlay drawn in the same pass, when the params carry one; its
/// tracks' detections files are the inputs after the clip.
fn fused_scene(
    params: &FrameParams,
    detections: &[PathBuf],
    duration: f64,
) -> Result<Option<Scene>, TaskError> {
    match &params.overlay {
        Some(o) => Ok(Some(overlay::scene(
            o,
            detections,
            (params.size.width, params.size.height),
            duration,
            o.font()?,
        )?)),
        None if !detections.is_empty() => Err(TaskError::permanent(
            Some("input".to_string()),
            "frame takes one clip, plus detections files only for an overlay's tracks",
        )),
        None => Ok(None),
    }
}

/// The audit fields of a framed clip: model and device, what was cropped
/// and made, and how fast.
fn audit_metadata(params: &FrameParams, up: &Upscaler, run: &FrameRun, fused: bool) -> StepOutput {
    let mut out = StepOutput::default();
    let m = &mut out.metadata;
    let model = up.model();
    m.insert(MODEL.into(), model.audit_id());
    m.insert(DEVICE.into(), up.device_name());
    if let Some(reason) = &model.device_reason {
        m.insert(DEVICE_REASON.into(), reason.clone());
    }
    m.insert("reelay-precision".into(), model.precision.to_string());
    m.insert("reelay-batch".into(), run.batch.to_string());
    m.insert("reelay-tiles".into(), run.tiles.to_string());
    m.insert("reelay-crop".into(), params.crop.describe());
    m.insert(
        "reelay-crop-size".into(),
        format!("{}x{}", run.input.0, run.input.1),
    );
    m.insert("reelay-size".into(), run.size.to_string());
    m.insert("reelay-frames".into(), run.frames.to_string());
    m.insert("reelay-fps".into(), run.fps.clone());
    m.insert(
        "reelay-duration".into(),
        format!("{:.3}", run.frames as f64 / run.fps_value),
    );
    m.insert("reelay-audio".into(), run.audio.into());
    if fused {
        // Drawn in this pass, so no overlay step and no intermediate clip.
        m.insert("reelay-overlay".into(), "fused".into());
    }
    m.insert(
        "reelay-video-accel".into(),
        match (run.nvdec, run.nvenc) {
            (false, false) => "off".into(),
            (d, e) => [d.then_some("nvdec"), e.then_some("nvenc")]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join("+"),
        },
    );
    m.insert(
        "reelay-frames-per-second".into(),
        format!("{:.3}", run.frames as f64 / run.seconds.max(1e-9)),
    );
    m.insert("reelay-pipeline-seconds".into(), secs(run.seconds));
    out
}
