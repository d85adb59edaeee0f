//! `export`: a whole job in one GPU task, the `single-container` placement.
//! Every clip is cut from the source, framed (with its overlay drawn in the
//! same pass) or overlaid, and the clips are compiled into the export, all
//! in this task's scratch folder: one cold start, one model load (the
//! process's session cache), no intermediate objects in the bucket.
//!
//! - **Inputs:** the source, then the detections files the clips' overlays
//!   track through; each clip names its own by index ([`ExportClip::detections`]).
//! - **Output:** the export, exactly as the fan-out DAG's `compile` writes it.
//!
//! Blocking: async callers run it in `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::compile::{self, CompileParams};
use super::extract::{self, ExtractParams};
use super::frame::{self, FrameParams};
use super::overlay::{self, OverlayParams};
use super::{StepOutput, TaskError};
use crate::audit::record::{DEVICE, MODEL};
use crate::inference::{self, Device};
use crate::media::{EncodeProfile, Ffmpeg, Progress};

/// Parameters of one `export` task: the job's clips and its compile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    pub clips: Vec<ExportClip>,
    pub accurate: bool,
    pub compile: CompileParams,
}

/// One clip of an export, and what is done to it after the cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportClip {
    pub start: f64,
    pub end: f64,
    /// Framing, with the clip's overlay fused in (`FrameParams::overlay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<FrameParams>,
    /// The clip's overlay when it has no framing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlayParams>,
    /// Indexes into the task's detections inputs (those after the source),
    /// in the order of this clip's overlay's `detections_sources()`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub detections: Vec<usize>,
}

impl ExportParams {
    /// Checks everything that can be checked without the files.
    pub fn validate(&self, detections_inputs: Option<usize>) -> Result<(), TaskError> {
        if self.clips.is_empty() {
            return Err(TaskError::permanent(
                Some("clips".into()),
                "an export needs at least one clip",
            ));
        }
        compile::validate_params(&self.compile, self.clips.len())?;
        for (i, c) in self.clips.iter().enumerate() {
            let field = |f: &str| Some(format!("clips[{i}].{f}"));
            if !(c.start.is_finite() && c.start >= 0.0 && c.end.is_finite() && c.end > c.start) {
                return Err(TaskError::permanent(
                    field("end"),
                    format!(
                        "clips[{i}]: end {} must be greater than start {} (and start 0 or more)",
                        c.end, c.start
                    ),
                ));
            }
            if c.framing.is_some() && c.overlay.is_some() {
                return Err(TaskError::permanent(
                    field("overlay"),
                    format!("clips[{i}]: a framed clip's overlay goes in `framing.overlay`"),
                ));
            }
            if let Some(f) = &c.framing {
                f.validate().map_err(|e| {
                    TaskError::permanent(field(&format!("framing.{}", e.field)), e.to_string())
                })?;
            }
            let drawn = c
                .framing
                .as_ref()
                .and_then(|f| f.overlay.as_ref())
                .or(c.overlay.as_ref());
            if let Some(o) = drawn {
                o.validate().map_err(|e| within(i, e))?;
            }
            let wanted = drawn.map_or(0, |o| o.spec.detections_sources().len());
            if c.detections.len() != wanted {
                return Err(TaskError::permanent(
                    field("detections"),
                    format!(
                        "clips[{i}]: the overlay tracks through {wanted} detections file(s), but {} are named",
                        c.detections.len()
                    ),
                ));
            }
            if let (Some(n), Some(&bad)) = (
                detections_inputs,
                c.detections.iter().find(|&&d| Some(d) >= detections_inputs),
            ) {
                return Err(TaskError::permanent(
                    field("detections"),
                    format!("clips[{i}]: detections input {bad} does not exist ({n} given)"),
                ));
            }
        }
        Ok(())
    }

    /// Clips that run a model.
    pub fn framed_clips(&self) -> usize {
        self.clips.iter().filter(|c| c.framing.is_some()).count()
    }
}

/// A clip's error, with the clip named.
fn within(i: usize, e: TaskError) -> TaskError {
    TaskError {
        class: e.class,
        field: Some(format!(
            "clips[{i}].{}",
            e.field.as_deref().unwrap_or("input")
        )),
        message: format!("clips[{i}]: {}", e.message),
    }
}

/// Runs the whole job into `output`. `inputs[0]` is the source,
/// `inputs[1..]` the detections files. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ff: &Ffmpeg,
    inputs: &[PathBuf],
    output: &Path,
    params: &ExportParams,
    profile: &EncodeProfile,
    default_device: Device,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    let Some((source, detections)) = inputs.split_first() else {
        return Err(TaskError::permanent(
            Some("input".into()),
            "export needs the source as its first input",
        ));
    };
    params.validate(Some(detections.len()))?;
    let scratch_parent = output.parent().unwrap_or(Path::new("."));
    let scratch = tempfile::Builder::new()
        .prefix(".export-")
        .tempdir_in(scratch_parent)
        .map_err(|e| TaskError::transient(format!("making a scratch folder: {e}")))?;
    let loads_before = inference::load_count();
    // Each clip is one part of the progress, the compile the last.
    let parts = (params.clips.len() + 1) as f64;
    let mut clip_files = Vec::with_capacity(params.clips.len());
    let mut framed: Option<StepOutput> = None;
    for (i, clip) in params.clips.iter().enumerate() {
        let mut progress = |p: Progress| {
            on_progress(Progress {
                fraction: p.fraction.map(|f| (i as f64 + f) / parts),
                ..p
            })
        };
        let cut = scratch.path().join(format!("cut-{i}.mp4"));
        extract::run(
            ff,
            source,
            &cut,
            &ExtractParams {
                start: clip.start,
                end: clip.end,
                accurate: params.accurate,
            },
            profile,
            &mut progress,
            cancel,
        )
        .map_err(|e| within(i, e))?;
        let mut clip_inputs = vec![cut.clone()];
        clip_inputs.extend(clip.detections.iter().map(|&d| detections[d].clone()));
        let done = scratch.path().join(format!("clip-{i}.mp4"));
        if let Some(f) = &clip.framing {
            let out = frame::run(
                ff,
                &clip_inputs,
                &done,
                f,
                profile,
                default_device,
                &mut progress,
                cancel,
            )
            .map_err(|e| within(i, e))?;
            framed.get_or_insert(out);
        } else if let Some(o) = &clip.overlay {
            let font = o.font()?;
            overlay::run(
                ff,
                &clip_inputs,
                &done,
                o,
                profile,
                font,
                &mut progress,
                cancel,
            )
            .map_err(|e| within(i, e))?;
        } else {
            clip_files.push(cut);
            continue;
        }
        // The cut is no longer needed; keep scratch space to one clip's worth.
        let _ = std::fs::remove_file(&cut);
        clip_files.push(done);
    }
    let font = compile::locate_font()?;
    let n = params.clips.len() as f64;
    compile::run(
        ff,
        &clip_files,
        output,
        &params.compile,
        profile,
        &font,
        &mut |p: Progress| {
            on_progress(Progress {
                fraction: p.fraction.map(|f| (n + f) / parts),
                ..p
            })
        },
        cancel,
    )?;
    Ok(metadata(params, loads_before, framed))
}

/// The export's audit metadata; a framed clip's model and device stand for
/// the export's.
fn metadata(params: &ExportParams, loads_before: u64, framed: Option<StepOutput>) -> StepOutput {
    let mut out = StepOutput::default();
    let m = &mut out.metadata;
    m.insert("reelay-placement".into(), "single-container".into());
    m.insert("reelay-clips".into(), params.clips.len().to_string());
    m.insert(
        "reelay-framed-clips".into(),
        params.framed_clips().to_string(),
    );
    // Sessions this process created during the task: 0 when the model was
    // already warm, never one per clip.
    m.insert(
        "reelay-model-loads".into(),
        (inference::load_count() - loads_before).to_string(),
    );
    if let Some(f) = framed {
        for key in [MODEL, DEVICE, "reelay-precision", "reelay-batch"] {
            if let Some(v) = f.metadata.get(key) {
                m.insert(key.into(), v.clone());
            }
        }
    }
    out
}
