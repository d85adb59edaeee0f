//! `detect`: run a detection model over a video sampled at `fps`, link the
//! boxes into tracks, and write the detections JSON
//! (`{"frames": [{"t", "detections": [{"box", "score", "class", "label",
//! "track"}]}], "tracks": [...]}`, boxes in source pixels). The model is
//! sha256-checked before it loads, and its format (TF OD API SSD or a
//! YOLO-style head) is told from its outputs. The audit metadata says what
//! was sampled (`reelay-sample-fps`, `reelay-frames`) and how many tracks
//! were found.
//!
//! Blocking: async callers run it in `tokio::task::spawn_blocking`.

use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{ErrorClass, StepOutput, TaskError};
use crate::audit::record::{DEVICE, MODEL};
use crate::detect::tracker::{TrackerConfig, track};
use crate::detect::video::{SampleRate, detect_video};
use crate::detect::{Detector, DetectorConfig};
use crate::inference::{Device, InferenceError, LoadOptions};
use crate::media::{Ffmpeg, Progress};
use crate::models::{Manifest, ModelError};

/// The model `detect` runs unless told otherwise.
pub const DEFAULT_MODEL: &str = "nanodet-g";
/// Default lowest score a box may have to continue a track.
pub const DEFAULT_TRACK_LOW: f32 = 0.1;

/// Parameters of one `detect` step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DetectParams {
    /// Frames per second to sample (default 5), or `"all"` for every frame.
    #[serde(default)]
    pub fps: SampleRate,
    /// A model from the manifest whose task is `detect`.
    #[serde(default = "default_model")]
    pub model: String,
    /// Boxes scoring below this are dropped (default 0.5), except those
    /// down to `track_low` that continue a track.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
    /// Link the boxes into tracks with ids (default true).
    #[serde(default = "default_track")]
    pub track: bool,
    /// Lowest score of a box that may continue a track (ByteTrack's second
    /// stage; default 0.1). At most `threshold`.
    #[serde(default = "default_track_low")]
    pub track_low: f32,
    /// NMS IoU threshold for YOLO models (default 0.45).
    #[serde(default = "default_iou")]
    pub iou: f32,
    /// YOLO input side when the model does not fix it (default 640).
    #[serde(default)]
    pub imgsz: Option<u32>,
    /// Keep only these class ids.
    #[serde(default)]
    pub classes: Option<Vec<u32>>,
}

fn default_model() -> String {
    DEFAULT_MODEL.into()
}
fn default_threshold() -> f32 {
    crate::detect::detector::DEFAULT_THRESHOLD
}
fn default_track() -> bool {
    true
}
fn default_track_low() -> f32 {
    DEFAULT_TRACK_LOW
}
fn default_iou() -> f32 {
    crate::detect::detector::DEFAULT_IOU
}

impl Default for DetectParams {
    fn default() -> Self {
        serde_json::from_value(serde_json::json!({})).expect("every field has a default")
    }
}

/// Checks the parameters on their own.
pub fn validate_params(p: &DetectParams) -> Result<(), String> {
    for (name, v) in [
        ("threshold", p.threshold),
        ("iou", p.iou),
        ("track_low", p.track_low),
    ] {
        if !(0.0..=1.0).contains(&v) {
            return Err(format!("{name}: {v} is not in 0..1"));
        }
    }
    if p.track_low > p.threshold {
        return Err(format!(
            "track_low: {} is above threshold {}; a box that may continue a track must be allowed to score below the threshold",
            p.track_low, p.threshold
        ));
    }
    if let Some(s) = p.imgsz
        && (s < 32 || s % 32 != 0 || s > 4096)
    {
        return Err(format!(
            "imgsz: {s} must be a multiple of 32 from 32 to 4096"
        ));
    }
    if p.model.trim().is_empty() {
        return Err("model: name a model from models/manifest.toml".into());
    }
    Ok(())
}

/// An inference failure as a step failure: a bad model choice or a damaged
/// model file will fail the same way again; a runtime hiccup may not.
pub fn inference_error(e: InferenceError) -> TaskError {
    let permanent = matches!(
        e,
        InferenceError::BadInput(_)
            | InferenceError::Model(ModelError::UnknownModel { .. } | ModelError::NoVariant { .. })
    );
    TaskError {
        class: if permanent {
            ErrorClass::Permanent
        } else {
            ErrorClass::Transient
        },
        field: permanent.then(|| "model".to_string()),
        message: e.to_string(),
    }
}

/// How `detect` loads its model: no intra-op spinning, since FFmpeg decodes
/// alongside on the same cores (spinning measured about 2× slower on the
/// 2-core machine; NOTES-detect.md).
pub fn detect_load_options(device: Device) -> LoadOptions {
    LoadOptions {
        device,
        spinning: false,
        ..LoadOptions::default()
    }
}

/// The detector for `params` on `device` (sessions are cached per process).
/// With tracking on it keeps boxes down to `track_low`.
pub fn detector(params: &DetectParams, device: Device) -> Result<Detector, TaskError> {
    let manifest = Manifest::load_default().map_err(|e| inference_error(e.into()))?;
    let config = DetectorConfig {
        load: detect_load_options(device),
        threshold: if params.track {
            params.track_low.min(params.threshold)
        } else {
            params.threshold
        },
        iou: params.iou,
        imgsz: params.imgsz,
        classes: params.classes.clone(),
        ..DetectorConfig::new(params.model.clone())
    };
    Detector::new(&manifest, &config).map_err(inference_error)
}

/// Detects on `input` and writes the detections JSON to `output`. Blocking.
pub fn run(
    ff: &Ffmpeg,
    input: &Path,
    output: &Path,
    params: &DetectParams,
    device: Device,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    validate_params(params).map_err(|e| TaskError::permanent(Some("params".to_string()), e))?;
    let info = ff
        .probe(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    info.require_video(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    let detector = detector(params, device)?;
    let (mut detections, stats) =
        detect_video(ff, &detector, input, &info, params.fps, on_progress, cancel).map_err(
            |e| match e {
                crate::detect::video::VideoDetectError::Media(m) => {
                    m.into_task_error(Some("input"))
                }
                crate::detect::video::VideoDetectError::Inference(i) => inference_error(i),
            },
        )?;
    if params.track {
        let config = TrackerConfig {
            high: f64::from(params.threshold),
            low: f64::from(params.track_low),
            ..TrackerConfig::default()
        };
        let entry = &detector.model().entry;
        let label = |c: u32| entry.class_name(c).map(str::to_string);
        detections.tracks = Some(track(&mut detections.frames, &config, &label));
    }
    let body = serde_json::to_vec(&detections).expect("detections serialise");
    std::fs::write(output, body)
        .map_err(|e| TaskError::transient(format!("writing {}: {e}", output.display())))?;
    let mut out = StepOutput::default();
    out.metadata
        .insert(MODEL.into(), detector.model().audit_id());
    out.metadata
        .insert(DEVICE.into(), detector.model().device_name());
    if let Some(reason) = &detector.model().device_reason {
        out.metadata
            .insert(crate::audit::record::DEVICE_REASON.into(), reason.clone());
    }
    out.metadata
        .insert("reelay-frames".into(), stats.frames.to_string());
    out.metadata.insert(
        "reelay-sample-fps".into(),
        detections
            .sample_fps
            .map_or_else(|| "all".to_string(), |f| f.to_string()),
    );
    if let Some(tracks) = &detections.tracks {
        out.metadata
            .insert("reelay-tracks".into(), tracks.len().to_string());
    }
    out.metadata
        .insert("reelay-format".into(), detector.format().name().to_string());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let p = DetectParams::default();
        assert_eq!(p.model, DEFAULT_MODEL);
        assert_eq!(p.fps, SampleRate::Fps(5.0));
        assert!(validate_params(&p).is_ok());
        let p: DetectParams = serde_json::from_value(serde_json::json!({"threshold": 2})).unwrap();
        assert!(validate_params(&p).unwrap_err().starts_with("threshold"));
        assert!(
            serde_json::from_value::<DetectParams>(serde_json::json!({"treshold": 0.5})).is_err()
        );
    }
}
