//! Parameters of the `frame` step. The same names serve task parameters,
//! the job manifest's per-clip `framing` (`crop`, `model`, `size`) and
//! `reelay run frame --set NAME=VALUE`.
//!
//! ```json
//! {"crop": {"x": 800, "y": 400, "w": 480, "h": 270},
//!  "model": "realesr-general-x4v3", "size": "1920x1080"}
//! {"crop": {"keyframes": [{"t": 0, "x": 100, "y": 50, "w": 480, "h": 270},
//!                         {"t": 2.5, "x": 900, "y": 300, "w": 480, "h": 270}]},
//!  "model": "realesr-general-x4v3", "size": "1920x1080"}
//! ```
//!
//! `crop` may also be written `"x,y,w,h"` (`--set crop=800,400,480,270`).
//! Keyframe times `t` are seconds from the start of the clip the step gets.

use std::fmt;
use std::str::FromStr;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::inference::Device;
use crate::invalid::Invalid;
use crate::models::Precision;

/// Largest output side (H.264 levels go to 8192).
pub const MAX_SIDE: u32 = 8192;
/// Most keyframes one crop may have.
pub const MAX_KEYFRAMES: usize = 10_000;
/// Largest batch the step accepts.
pub const MAX_BATCH: usize = 64;

/// Parameters of one `frame` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameParams {
    /// The region of the clip to upscale: a box, or keyframes.
    pub crop: Crop,
    /// An upscale model from `models/manifest.toml`.
    pub model: String,
    /// Output size `WxH` (even numbers).
    pub size: OutputSize,
    /// `cpu`, `cuda` or `auto`; absent: the worker's configured device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
    /// `fp32` or `fp16` (fp16 runs on CUDA only); absent: fp32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<Precision>,
    /// Frames per model run; absent: 1 on the CPU, 4 on CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<usize>,
    /// Largest crop side run in one piece; larger crops are tiled. Absent:
    /// the upscaler's default (1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile: Option<u32>,
    /// Context around each tile in input pixels; absent: the model's
    /// receptive-field radius (`context_px`), which makes tiling seamless.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tile_overlap: Option<u32>,
    /// Hardware video decode/encode: `auto` (NVDEC/NVENC when the model runs
    /// on CUDA and FFmpeg has them), `off` (software decode, the profile's
    /// encoder) or `nvidia` (required; an error where missing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video_accel: Option<VideoAccel>,
    /// An overlay drawn on each framed frame before the encode: the fused
    /// frame + overlay of a clip with both, with no intermediate clip. Its
    /// detections files are the step's inputs after the clip.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<crate::tasks::overlay::OverlayParams>,
}

/// The job manifest's per-clip `framing`: what a user writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framing {
    pub crop: Crop,
    pub model: String,
    pub size: OutputSize,
}

impl From<Framing> for FrameParams {
    fn from(f: Framing) -> FrameParams {
        FrameParams {
            crop: f.crop,
            model: f.model,
            size: f.size,
            device: None,
            precision: None,
            batch: None,
            tile: None,
            tile_overlap: None,
            video_accel: None,
            overlay: None,
        }
    }
}

/// A parameter problem: the field at fault (`crop.keyframes[1]`), what is
/// wrong and the fix. The object is the params until a caller knows better
/// (the clip, the manifest).
pub type ParamError = Invalid;

fn perr(
    field: impl Into<String>,
    problem: impl Into<String>,
    fix: impl Into<String>,
) -> ParamError {
    Invalid::new("frame params", field, problem, fix)
}

impl FrameParams {
    /// Checks everything that can be checked without the clip.
    pub fn validate(&self) -> Result<(), ParamError> {
        self.crop.validate("crop")?;
        if self.model.trim().is_empty() {
            return Err(perr(
                "model",
                "the model name is empty",
                "name an upscale model, e.g. realesr-general-x4v3 (`reelay models list`)",
            ));
        }
        if let Some(b) = self.batch
            && !(1..=MAX_BATCH).contains(&b)
        {
            return Err(perr(
                "batch",
                format!("{b} is out of range"),
                format!("use 1 to {MAX_BATCH}"),
            ));
        }
        if self.tile == Some(0) {
            return Err(perr(
                "tile",
                "0 is not a tile size",
                "give at least 1 (input pixels), or leave it out for no tiling below 1024",
            ));
        }
        if let Some(o) = &self.overlay {
            o.validate().map_err(|e| {
                perr(
                    format!("overlay.{}", e.field.unwrap_or_default()),
                    e.message,
                    "fix the overlay as the message says",
                )
            })?;
        }
        Ok(())
    }
}

/// A box in source pixels: left, top, width, height.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The box at `t` seconds from the clip's start.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyframe {
    pub t: f64,
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

impl Keyframe {
    pub fn rect(&self) -> Rect {
        Rect {
            x: self.x,
            y: self.y,
            w: self.w,
            h: self.h,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyframesRepr {
    keyframes: Vec<Keyframe>,
}

/// What to crop: one box for the whole clip, or keyframes interpolated
/// linearly per frame (held before the first and after the last).
#[derive(Debug, Clone, PartialEq)]
pub enum Crop {
    Static(Rect),
    Keyframes(Vec<Keyframe>),
}

const CROP_FORMS: &str = "write the crop as {\"x\": X, \"y\": Y, \"w\": W, \"h\": H}, as {\"keyframes\": [{\"t\": SECONDS, \"x\": X, \"y\": Y, \"w\": W, \"h\": H}, ...]}, or as \"X,Y,W,H\"";

impl Crop {
    /// Parses any accepted form from JSON.
    pub fn from_json(v: &serde_json::Value) -> Result<Crop, String> {
        match v {
            serde_json::Value::String(s) => s.parse(),
            serde_json::Value::Object(o) if o.contains_key("keyframes") => {
                serde_json::from_value::<KeyframesRepr>(v.clone())
                    .map(|k| Crop::Keyframes(k.keyframes))
                    .map_err(|e| format!("{e}; {CROP_FORMS}"))
            }
            serde_json::Value::Object(_) => serde_json::from_value::<Rect>(v.clone())
                .map(Crop::Static)
                .map_err(|e| format!("{e}; {CROP_FORMS}")),
            other => Err(format!("`{other}` is not a crop; {CROP_FORMS}")),
        }
    }

    /// The boxes the crop is made of, with the field naming each.
    pub fn boxes(&self, field: &str) -> Vec<(String, Rect)> {
        match self {
            Crop::Static(r) => vec![(field.to_string(), *r)],
            Crop::Keyframes(k) => k
                .iter()
                .enumerate()
                .map(|(i, k)| (format!("{field}.keyframes[{i}]"), k.rect()))
                .collect(),
        }
    }

    /// Structural checks: sizes at least 1, keyframes present, in time
    /// order, and of one aspect ratio (a crop may move and zoom, but its
    /// shape is the model's input shape).
    pub fn validate(&self, field: &str) -> Result<(), ParamError> {
        if let Crop::Keyframes(k) = self {
            if k.is_empty() {
                return Err(perr(
                    format!("{field}.keyframes"),
                    "there are no keyframes",
                    "give at least one {\"t\", \"x\", \"y\", \"w\", \"h\"}",
                ));
            }
            if k.len() > MAX_KEYFRAMES {
                return Err(perr(
                    format!("{field}.keyframes"),
                    format!("{} keyframes is over the limit of {MAX_KEYFRAMES}", k.len()),
                    "give fewer keyframes; the crop is interpolated between them",
                ));
            }
            for (i, kf) in k.iter().enumerate() {
                if !kf.t.is_finite() || kf.t < 0.0 {
                    return Err(perr(
                        format!("{field}.keyframes[{i}].t"),
                        format!("{} is not a time", kf.t),
                        "use seconds from the start of the clip, 0 or more",
                    ));
                }
                if i > 0 && kf.t <= k[i - 1].t {
                    return Err(perr(
                        format!("{field}.keyframes[{i}].t"),
                        format!(
                            "keyframes must be in time order: t {} does not come after {}",
                            kf.t,
                            k[i - 1].t
                        ),
                        "list the keyframes by increasing t",
                    ));
                }
            }
        }
        let boxes = self.boxes(field);
        let (_, first) = boxes[0];
        for (name, r) in &boxes {
            if r.w == 0 || r.h == 0 {
                return Err(perr(
                    name.clone(),
                    format!("the crop is {}x{}", r.w, r.h),
                    "give a width and height of at least 1",
                ));
            }
            if r.w > MAX_SIDE || r.h > MAX_SIDE {
                return Err(perr(
                    name.clone(),
                    format!("the crop is {}x{}", r.w, r.h),
                    format!("keep each side at most {MAX_SIDE}"),
                ));
            }
            // Same shape as the first box, to a pixel of rounding.
            let implied = f64::from(r.w) * f64::from(first.h) / f64::from(first.w);
            if (implied - f64::from(r.h)).abs() > 1.0 + 0.01 * f64::from(r.h) {
                return Err(perr(
                    name.clone(),
                    format!(
                        "{}x{} has another aspect ratio than the first keyframe's {}x{}",
                        r.w, r.h, first.w, first.h
                    ),
                    "keep one shape: keyframes may move and zoom the crop, not change its shape",
                ));
            }
        }
        Ok(())
    }

    /// Checks every box lies inside a `width`×`height` frame.
    pub fn validate_within(&self, field: &str, width: u32, height: u32) -> Result<(), ParamError> {
        for (name, r) in self.boxes(field) {
            let (right, bottom) = (
                u64::from(r.x) + u64::from(r.w),
                u64::from(r.y) + u64::from(r.h),
            );
            if right > u64::from(width) || bottom > u64::from(height) {
                return Err(perr(
                    name,
                    format!(
                        "the crop x={} y={} w={} h={} is outside the {width}x{height} frame (it reaches x={right}, y={bottom})",
                        r.x, r.y, r.w, r.h
                    ),
                    format!("keep x+w ≤ {width} and y+h ≤ {height}"),
                ));
            }
        }
        Ok(())
    }

    /// The model's input size: the crop's size, or the largest keyframe box
    /// (smaller boxes are resampled up to it, so zooming loses nothing).
    pub fn input_size(&self) -> (u32, u32) {
        match self {
            Crop::Static(r) => (r.w, r.h),
            Crop::Keyframes(k) => k
                .iter()
                .max_by_key(|k| u64::from(k.w) * u64::from(k.h))
                .map_or((1, 1), |k| (k.w, k.h)),
        }
    }

    /// The box at `t` seconds, in fractional pixels: keyframes interpolated
    /// linearly, held before the first and after the last.
    pub fn at(&self, t: f64) -> [f64; 4] {
        let v = |r: Rect| [r.x, r.y, r.w, r.h].map(f64::from);
        match self {
            Crop::Static(r) => v(*r),
            Crop::Keyframes(k) => {
                let Some(first) = k.first() else {
                    return [0.0, 0.0, 1.0, 1.0];
                };
                if t <= first.t {
                    return v(first.rect());
                }
                let last = k.last().expect("non-empty");
                if t >= last.t {
                    return v(last.rect());
                }
                let i = k.partition_point(|kf| kf.t <= t);
                let (a, b) = (&k[i - 1], &k[i]);
                let f = (t - a.t) / (b.t - a.t);
                let (va, vb) = (v(a.rect()), v(b.rect()));
                [0, 1, 2, 3].map(|j| va[j] + (vb[j] - va[j]) * f)
            }
        }
    }

    /// `static` or `keyframes:N`, for audit metadata.
    pub fn describe(&self) -> String {
        match self {
            Crop::Static(r) => format!("{},{},{},{}", r.x, r.y, r.w, r.h),
            Crop::Keyframes(k) => format!("keyframes:{}", k.len()),
        }
    }
}

impl FromStr for Crop {
    type Err = String;
    /// `X,Y,W,H`.
    fn from_str(s: &str) -> Result<Crop, String> {
        let parts: Vec<&str> = s.split(',').map(str::trim).collect();
        let nums: Option<Vec<u32>> = parts.iter().map(|p| p.parse().ok()).collect();
        match nums.as_deref() {
            Some(&[x, y, w, h]) => Ok(Crop::Static(Rect { x, y, w, h })),
            _ => Err(format!(
                "`{s}` is not X,Y,W,H in whole pixels; {CROP_FORMS}"
            )),
        }
    }
}

impl Serialize for Crop {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct KeyframesOut<'a> {
            keyframes: &'a [Keyframe],
        }
        match self {
            Crop::Static(r) => r.serialize(s),
            Crop::Keyframes(k) => KeyframesOut { keyframes: k }.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for Crop {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Crop, D::Error> {
        let v = serde_json::Value::deserialize(d)?;
        Crop::from_json(&v).map_err(D::Error::custom)
    }
}

/// The output size, written `WxH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputSize {
    pub width: u32,
    pub height: u32,
}

impl fmt::Display for OutputSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}x{}", self.width, self.height)
    }
}

impl FromStr for OutputSize {
    type Err = String;
    fn from_str(s: &str) -> Result<OutputSize, String> {
        let parsed = s.trim().split_once(['x', 'X']).and_then(|(w, h)| {
            Some((w.trim().parse::<u32>().ok()?, h.trim().parse::<u32>().ok()?))
        });
        let Some((width, height)) = parsed else {
            return Err(format!(
                "`{s}` is not a size; write WIDTHxHEIGHT, e.g. 1920x1080"
            ));
        };
        for v in [width, height] {
            if v < 2 || v % 2 != 0 || v > MAX_SIDE {
                return Err(format!(
                    "size {width}x{height}: {v} is not allowed; use even numbers from 2 to {MAX_SIDE} (H.264 in 4:2:0 needs them even)"
                ));
            }
        }
        Ok(OutputSize { width, height })
    }
}

impl Serialize for OutputSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for OutputSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<OutputSize, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Hardware video decode and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VideoAccel {
    /// NVDEC/NVENC when the model runs on CUDA and FFmpeg has them working.
    #[default]
    Auto,
    /// Software decode and the profile's encoder (libx264).
    Off,
    /// NVDEC/NVENC, or an error where FFmpeg cannot use them.
    Nvidia,
}

impl FromStr for VideoAccel {
    type Err = String;
    fn from_str(s: &str) -> Result<VideoAccel, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(VideoAccel::Auto),
            "off" | "none" | "cpu" => Ok(VideoAccel::Off),
            "nvidia" | "nvenc" | "cuda" => Ok(VideoAccel::Nvidia),
            other => Err(format!(
                "unknown video_accel `{other}`: use auto, off or nvidia"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn params(v: serde_json::Value) -> Result<FrameParams, String> {
        serde_json::from_value::<FrameParams>(v).map_err(|e| e.to_string())
    }

    #[test]
    fn crop_forms_parse_and_serialise_canonically() {
        let a = params(
            json!({"crop": {"x": 8, "y": 4, "w": 64, "h": 36}, "model": "m", "size": "256x144"}),
        )
        .unwrap();
        let b = params(json!({"crop": "8,4,64,36", "model": "m", "size": "256x144"})).unwrap();
        assert_eq!(a, b);
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            json!({"crop": {"x": 8, "y": 4, "w": 64, "h": 36}, "model": "m", "size": "256x144"})
        );
        let k = params(json!({"crop": {"keyframes": [{"t": 0, "x": 0, "y": 0, "w": 16, "h": 9}, {"t": 1.5, "x": 10, "y": 2, "w": 32, "h": 18}]}, "model": "m", "size": "64x36"})).unwrap();
        assert!(matches!(&k.crop, Crop::Keyframes(v) if v.len() == 2));
        k.validate().unwrap();
        let back: FrameParams = serde_json::from_value(serde_json::to_value(&k).unwrap()).unwrap();
        assert_eq!(back, k);
    }

    #[test]
    fn bad_params_say_what_is_wrong() {
        let e =
            params(json!({"crop": {"x": 1, "y": 1, "w": 2, "z": 2}, "model": "m", "size": "2x2"}))
                .unwrap_err();
        assert!(
            e.contains("unknown field `z`") && e.contains("X,Y,W,H"),
            "{e}"
        );
        let e = params(json!({"crop": "1,2,3", "model": "m", "size": "2x2"})).unwrap_err();
        assert!(e.contains("not X,Y,W,H"), "{e}");
        let e = params(json!({"crop": "1,2,3,4", "model": "m", "size": "1921x1080"})).unwrap_err();
        assert!(e.contains("even"), "{e}");
        let e = params(json!({"crop": "1,2,3,4", "model": "m", "size": "big"})).unwrap_err();
        assert!(e.contains("WIDTHxHEIGHT"), "{e}");
        let e = params(json!({"crop": "1,2,3,4", "model": "m", "size": "2x2", "colour": 1}))
            .unwrap_err();
        assert!(e.contains("unknown field `colour`"), "{e}");
        let e = params(json!({"crop": "1,2,3,4", "model": "m", "size": "2x2", "device": "tpu"}))
            .unwrap_err();
        assert!(e.contains("tpu"), "{e}");
    }

    #[test]
    fn structure_is_validated() {
        let kf = |t: f64, w: u32, h: u32| Keyframe {
            t,
            x: 0,
            y: 0,
            w,
            h,
        };
        let e = Crop::Keyframes(vec![]).validate("crop").unwrap_err();
        assert_eq!(e.field, "crop.keyframes");
        let e = Crop::Keyframes(vec![kf(1.0, 16, 9), kf(0.5, 16, 9)])
            .validate("crop")
            .unwrap_err();
        assert_eq!(e.field, "crop.keyframes[1].t");
        assert!(e.problem.contains("time order"));
        let e = Crop::Keyframes(vec![kf(0.0, 16, 9), kf(1.0, 16, 16)])
            .validate("crop")
            .unwrap_err();
        assert_eq!(e.field, "crop.keyframes[1]");
        assert!(e.problem.contains("aspect ratio"));
        Crop::Keyframes(vec![kf(0.0, 160, 90), kf(1.0, 100, 56)])
            .validate("crop")
            .unwrap();
        let e = Crop::Static(Rect {
            x: 0,
            y: 0,
            w: 0,
            h: 9,
        })
        .validate("crop")
        .unwrap_err();
        assert!(e.problem.contains("0x9"), "{e}");
        assert!(e.fix.contains("at least 1"), "{e}");
    }

    #[test]
    fn bounds_name_the_box() {
        let c = Crop::Static(Rect {
            x: 600,
            y: 0,
            w: 64,
            h: 36,
        });
        let e = c.validate_within("crop", 640, 360).unwrap_err();
        assert_eq!(e.field, "crop");
        assert!(e.problem.contains("outside the 640x360 frame"), "{e}");
        let k = Crop::Keyframes(vec![
            Keyframe {
                t: 0.0,
                x: 0,
                y: 0,
                w: 64,
                h: 36,
            },
            Keyframe {
                t: 1.0,
                x: 0,
                y: 330,
                w: 64,
                h: 36,
            },
        ]);
        assert_eq!(
            k.validate_within("crop", 640, 360).unwrap_err().field,
            "crop.keyframes[1]"
        );
        Crop::Static(Rect {
            x: 576,
            y: 324,
            w: 64,
            h: 36,
        })
        .validate_within("crop", 640, 360)
        .unwrap();
    }

    #[test]
    fn keyframes_interpolate_and_hold() {
        let k = Crop::Keyframes(vec![
            Keyframe {
                t: 1.0,
                x: 0,
                y: 10,
                w: 32,
                h: 18,
            },
            Keyframe {
                t: 3.0,
                x: 100,
                y: 30,
                w: 64,
                h: 36,
            },
        ]);
        assert_eq!(k.at(0.0), [0.0, 10.0, 32.0, 18.0]);
        assert_eq!(k.at(2.0), [50.0, 20.0, 48.0, 27.0]);
        assert_eq!(k.at(9.0), [100.0, 30.0, 64.0, 36.0]);
        assert_eq!(k.input_size(), (64, 36));
    }
}
