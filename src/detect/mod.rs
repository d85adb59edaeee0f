//! Object detection: a model over frames, and the detections JSON.
//!
//! - [`Detector`] runs a detection model from the manifest on RGB frames and
//!   returns boxes in the frame's pixels. The model's format is detected
//!   from its outputs ([`ModelFormat`]):
//!   - **TF Object Detection API SSD** (`detection_boxes`, `detection_scores`,
//!     `detection_classes`, `num_detections`): the graph resizes and runs
//!     NMS itself; reelay maps normalised boxes to pixels ([`ssd`]).
//!   - **Ultralytics YOLOv8/YOLO11** (one output `[b, 4+C, N]`): reelay
//!     letterboxes the frame ([`letterbox`]), decodes the head ([`yolo`]) and
//!     runs per-class NMS ([`nms`]).
//! - [`video`] samples a video through an FFmpeg rawvideo pipe and runs the
//!   detector on each sampled frame.
//! - [`tracker`] links the boxes of successive sampled frames into tracks
//!   with stable ids (ByteTrack-style).
//! - [`Detections`] is the JSON contract:
//!   `{"frames": [{"t": 0.2, "detections": [{"box": {"x","y","w","h"}, "score", "class", "label", "track"}]}], "tracks": [...]}`
//!   with boxes in source pixels (`x`, `y` the top-left corner); `label`,
//!   `track` and `tracks` are optional.

pub mod detector;
pub mod letterbox;
pub mod nms;
pub mod players;
pub mod ssd;
pub mod tracker;
pub mod video;
pub mod yolo;

use serde::{Deserialize, Serialize};

pub use detector::{Detector, DetectorConfig, ModelFormat};

/// A box in pixels: top-left corner, width and height.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BBox {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

impl BBox {
    /// From corners `(x1, y1, x2, y2)`.
    pub fn from_corners(x1: f64, y1: f64, x2: f64, y2: f64) -> BBox {
        BBox {
            x: x1,
            y: y1,
            w: (x2 - x1).max(0.0),
            h: (y2 - y1).max(0.0),
        }
    }

    pub fn x2(&self) -> f64 {
        self.x + self.w
    }

    pub fn y2(&self) -> f64 {
        self.y + self.h
    }

    pub fn center(&self) -> (f64, f64) {
        (self.x + self.w / 2.0, self.y + self.h / 2.0)
    }

    pub fn area(&self) -> f64 {
        self.w.max(0.0) * self.h.max(0.0)
    }

    /// Intersection over union; 0 when both are empty.
    pub fn iou(&self, other: &BBox) -> f64 {
        let iw = (self.x2().min(other.x2()) - self.x.max(other.x)).max(0.0);
        let ih = (self.y2().min(other.y2()) - self.y.max(other.y)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }

    /// Rounded to 1/100 pixel, for compact JSON.
    pub fn rounded(&self) -> BBox {
        let r = |v: f64| (v * 100.0).round() / 100.0;
        BBox {
            x: r(self.x),
            y: r(self.y),
            w: r(self.w),
            h: r(self.h),
        }
    }
}

/// One detected object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detection {
    #[serde(rename = "box")]
    pub bbox: BBox,
    /// 0..1.
    pub score: f64,
    /// The model's class id: 1 = person for the TF OD API models (COCO label
    /// map ids), 0-based indices for Ultralytics models.
    pub class: u32,
    /// The class's name, from the manifest's `class_names` ("person").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The id of the track this box belongs to ([`tracker`]); absent for a
    /// box that started no confirmed track.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub track: Option<u64>,
}

/// The detections of one sampled frame.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameDetections {
    /// Seconds from the start of the video.
    pub t: f64,
    pub detections: Vec<Detection>,
}

/// The video the detections were made on (informational; lets a reader
/// check that detections and video belong together).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoRef {
    pub width: u32,
    pub height: u32,
    /// Seconds.
    pub duration: f64,
}

/// The detections JSON (a contract: `frames` is what readers rely on; the
/// other fields are informational and optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Detections {
    pub frames: Vec<FrameDetections>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub video: Option<VideoRef>,
    /// `name@sha256-prefix` of the model that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Sampled frames per second; absent when every frame was run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_fps: Option<f64>,
    /// One entry per track id found in `frames` ([`tracker`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracks: Option<Vec<tracker::TrackSummary>>,
}

/// A detections file that cannot be used with a video, naming the field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{source_name}: `{field}`: {problem}")]
pub struct DetectionsError {
    pub source_name: String,
    pub field: String,
    pub problem: String,
}

/// Slack on times past the video's end (FFmpeg prints durations to 10 ms,
/// and the last sample sits up to one frame before the end).
pub const TIME_SLACK: f64 = 0.05;
/// Slack on boxes past the frame's edge, in pixels.
pub const EDGE_SLACK: f64 = 1.0;

impl Detections {
    /// Parses a detections JSON; errors name the field (`frames[3].t`).
    pub fn parse(source_name: &str, bytes: &[u8]) -> Result<Detections, DetectionsError> {
        let mut de = serde_json::Deserializer::from_slice(bytes);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            DetectionsError {
                source_name: source_name.to_string(),
                field: if path == "." || path.is_empty() {
                    "(top level)".into()
                } else {
                    path
                },
                problem: format!(
                    "{}; a detections file looks like {{\"frames\": [{{\"t\": 0.2, \"detections\": [{{\"box\": {{\"x\": 1, \"y\": 2, \"w\": 3, \"h\": 4}}, \"score\": 0.9, \"class\": 1}}]}}]}}",
                    e.into_inner()
                ),
            }
        })
    }

    /// Checks that these detections can belong to a `width`×`height` video
    /// lasting `duration` seconds: times within it and increasing, boxes
    /// inside the frame, scores in 0..1.
    pub fn check_against(
        &self,
        source_name: &str,
        width: u32,
        height: u32,
        duration: f64,
    ) -> Result<(), DetectionsError> {
        let err = |field: String, problem: String| DetectionsError {
            source_name: source_name.to_string(),
            field,
            problem,
        };
        if let Some(v) = &self.video
            && (v.width != width || v.height != height)
        {
            return Err(err(
                "video".into(),
                format!(
                    "the detections were made on a {}x{} video, but this video is {width}x{height}; run detect on this video",
                    v.width, v.height
                ),
            ));
        }
        let (w, h) = (f64::from(width), f64::from(height));
        let mut last = f64::NEG_INFINITY;
        for (i, f) in self.frames.iter().enumerate() {
            if !f.t.is_finite() || f.t < 0.0 || f.t > duration + TIME_SLACK {
                return Err(err(
                    format!("frames[{i}].t"),
                    format!(
                        "time {} s is outside the video, which lasts {duration:.2} s; these detections belong to another (longer) video: run detect on this one",
                        f.t
                    ),
                ));
            }
            if f.t <= last {
                return Err(err(
                    format!("frames[{i}].t"),
                    format!(
                        "time {} s is not after the previous frame's {last} s; frames must be in time order",
                        f.t
                    ),
                ));
            }
            last = f.t;
            for (j, d) in f.detections.iter().enumerate() {
                let b = &d.bbox;
                let finite = [b.x, b.y, b.w, b.h].iter().all(|v| v.is_finite());
                if !finite
                    || b.w < 0.0
                    || b.h < 0.0
                    || b.x < -EDGE_SLACK
                    || b.y < -EDGE_SLACK
                    || b.x2() > w + EDGE_SLACK
                    || b.y2() > h + EDGE_SLACK
                {
                    return Err(err(
                        format!("frames[{i}].detections[{j}].box"),
                        format!(
                            "box x={} y={} w={} h={} is not inside the {width}x{height} frame; these detections belong to another (larger) video: run detect on this one",
                            b.x, b.y, b.w, b.h
                        ),
                    ));
                }
                if !(0.0..=1.0).contains(&d.score) {
                    return Err(err(
                        format!("frames[{i}].detections[{j}].score"),
                        format!("score {} is not in 0..1", d.score),
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_boxes() {
        let a = BBox::from_corners(0.0, 0.0, 10.0, 10.0);
        let b = BBox::from_corners(5.0, 0.0, 15.0, 10.0);
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-12);
        assert_eq!(a.iou(&BBox::from_corners(20.0, 20.0, 30.0, 30.0)), 0.0);
        assert_eq!(a.iou(&a), 1.0);
    }

    #[test]
    fn json_contract_round_trips() {
        let text = r#"{"frames": [{"t": 0.2, "detections": [{"box": {"x": 1, "y": 2, "w": 3, "h": 4}, "score": 0.9, "class": 1}]}]}"#;
        let d = Detections::parse("d.json", text.as_bytes()).unwrap();
        assert_eq!(d.frames[0].detections[0].bbox.w, 3.0);
        let back = serde_json::to_string(&d).unwrap();
        assert_eq!(Detections::parse("back", back.as_bytes()).unwrap(), d);
        assert!(
            back.starts_with(r#"{"frames":[{"t":0.2,"detections":[{"box":{"x":1.0,"#),
            "{back}"
        );
        let e = Detections::parse("d.json", br#"{"frames": [{"t": "x", "detections": []}]}"#)
            .unwrap_err();
        assert_eq!(e.field, "frames[0].t");
    }

    #[test]
    fn mismatched_detections_are_named() {
        let d = Detections::parse(
            "d.json",
            br#"{"frames": [{"t": 0.0, "detections": []}, {"t": 9.0, "detections": []}]}"#,
        )
        .unwrap();
        let e = d.check_against("d.json", 320, 240, 2.0).unwrap_err();
        assert_eq!(e.field, "frames[1].t");
        assert!(e.to_string().contains("lasts 2.00 s"), "{e}");
        let d = Detections::parse(
            "d.json",
            br#"{"frames": [{"t": 0.0, "detections": [{"box": {"x": 300, "y": 2, "w": 100, "h": 4}, "score": 0.9, "class": 1}]}]}"#,
        )
        .unwrap();
        let e = d.check_against("d.json", 320, 240, 2.0).unwrap_err();
        assert_eq!(e.field, "frames[0].detections[0].box");
        assert!(d.check_against("d.json", 640, 480, 2.0).is_ok());
    }
}
