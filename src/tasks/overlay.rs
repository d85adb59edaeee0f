//! `overlay`: draw a spotlight, a ring, boxes and text on a clip, from an
//! overlay spec ([`crate::overlay::spec`]).
//!
//! Inputs: the clip, then one detections JSON per distinct
//! `track.detections` of the spec, in order of first appearance
//! ([`OverlaySpec::detections_sources`]).
//!
//! Blocking: async callers run it in `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{StepOutput, TaskError};
use crate::detect::Detections;
use crate::media::{EncodeProfile, Ffmpeg, Progress};
use crate::overlay::spec::OverlaySpec;
use crate::overlay::{Scene, SceneError, SceneInputs, video};

/// Parameters of one `overlay` step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OverlayParams {
    pub spec: OverlaySpec,
    /// Seconds to add to clip time to get detections time: the clip's start
    /// in the source the detections were made on. Absent: the detections
    /// were made on this very clip (and are checked to fit it exactly).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<f64>,
}

fn scene_error(e: SceneError) -> TaskError {
    match e {
        SceneError::Spec(s) => {
            TaskError::permanent(Some(format!("spec.{}", s.field)), s.to_string())
        }
        SceneError::Detections(d) => {
            TaskError::permanent(Some("detections".to_string()), d.to_string())
        }
        SceneError::Font(f) => TaskError::transient(f),
    }
}

impl OverlayParams {
    /// The caption font, located only when the spec has text to draw.
    pub fn font(&self) -> Result<Option<PathBuf>, TaskError> {
        if self.spec.text.is_empty() {
            Ok(None)
        } else {
            super::compile::locate_font().map(Some)
        }
    }

    /// Checks the spec and the offset, before any file is read.
    pub fn validate(&self) -> Result<(), TaskError> {
        self.spec
            .validate()
            .map_err(|e| TaskError::permanent(Some(format!("spec.{}", e.field)), e.to_string()))?;
        if let Some(o) = self.offset
            && !(o.is_finite() && o >= 0.0)
        {
            return Err(TaskError::permanent(
                Some("offset".to_string()),
                format!("offset {o} must be 0 or more seconds"),
            ));
        }
        Ok(())
    }
}

/// Resolves `params` for a clip of `size` and `duration`: reads the
/// detections files (one per distinct `track.detections`, in order),
/// follows the tracks and rasterises the text. Shared by the `overlay`
/// step and the fused frame + overlay.
pub fn scene(
    params: &OverlayParams,
    detections_files: &[PathBuf],
    size: (u32, u32),
    duration: f64,
    font: Option<PathBuf>,
) -> Result<Scene, TaskError> {
    let sources = params.spec.detections_sources();
    if detections_files.len() != sources.len() {
        return Err(TaskError::permanent(
            Some("input".to_string()),
            format!(
                "the spec tracks through {} detections file(s), but {} were given after the clip",
                sources.len(),
                detections_files.len()
            ),
        ));
    }
    let mut detections = Vec::with_capacity(sources.len());
    for (path, source) in detections_files.iter().zip(&sources) {
        let name = source.clone().unwrap_or_else(|| path.display().to_string());
        let bytes = std::fs::read(path).map_err(|e| {
            TaskError::permanent(
                Some("detections".to_string()),
                format!("cannot read detections `{name}`: {e}"),
            )
        })?;
        let d = Detections::parse(&name, &bytes)
            .map_err(|e| TaskError::permanent(Some("detections".to_string()), e.to_string()))?;
        detections.push((name, d));
    }
    Scene::new(
        &params.spec,
        &SceneInputs {
            width: size.0,
            height: size.1,
            duration,
            detections: &detections,
            offset: params.offset,
            font: if params.spec.text.is_empty() {
                None
            } else {
                font
            },
        },
    )
    .map_err(scene_error)
}

/// Draws `params.spec` on `inputs[0]` into `output`; `inputs[1..]` are the
/// detections files. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ff: &Ffmpeg,
    inputs: &[PathBuf],
    output: &Path,
    params: &OverlayParams,
    profile: &EncodeProfile,
    font: Option<PathBuf>,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    if let Err((field, message)) = profile.validate() {
        return Err(TaskError::permanent(
            Some(format!("output.{field}")),
            format!("output.{field}: {message}"),
        ));
    }
    params.validate()?;
    let Some(clip) = inputs.first() else {
        return Err(TaskError::permanent(
            Some("input".to_string()),
            "overlay needs the clip as its first input",
        ));
    };
    let info = ff
        .probe(clip)
        .map_err(|e| e.into_task_error(Some("input")))?;
    let video = info
        .require_video(clip)
        .map_err(|e| e.into_task_error(Some("input")))?;
    let scene = scene(
        params,
        &inputs[1..],
        (video.width, video.height),
        info.duration,
        font,
    )?;
    let stats = video::render(
        ff,
        clip,
        output,
        &info,
        &scene,
        profile,
        on_progress,
        cancel,
    )
    .map_err(|e| e.into_task_error(Some("input")))?;
    let mut out = StepOutput::default();
    out.metadata
        .insert("reelay-frames".into(), stats.frames.to_string());
    Ok(out)
}
