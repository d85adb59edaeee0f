//! The detector: a detection model from the manifest (loaded after its
//! sha256 check, once per process), its format told from its outputs, run on
//! RGB frames.

use std::sync::Arc;

use ort::value::{TensorElementType, TensorRef, ValueType};
use serde::Serialize;

use super::letterbox::Letterbox;
use super::nms::nms;
use super::{BBox, Detection, ssd, yolo};
use crate::inference::{Frame, InferenceError, LoadOptions, LoadedModel, load};
use crate::models::{Manifest, Task};

/// Default score threshold.
pub const DEFAULT_THRESHOLD: f32 = 0.5;
/// Default NMS IoU threshold (YOLO).
pub const DEFAULT_IOU: f32 = 0.45;
/// Default YOLO input side when the graph does not fix it.
pub const DEFAULT_IMGSZ: u32 = 640;
/// Most boxes kept per frame.
pub const DEFAULT_MAX_DETECTIONS: usize = 300;
/// Longest side SSD frames are handed over at: the graph resizes to 300×300
/// itself, so larger frames only cost copying.
pub const SSD_WORKING_SIDE: u32 = 640;

/// Which output layout the model has.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ModelFormat {
    /// TF Object Detection API SSD: u8 NHWC input, post-processed outputs.
    TfSsd {
        input: String,
        num: String,
        boxes: String,
        scores: String,
        classes: String,
    },
    /// Ultralytics YOLOv8/YOLO11: f32 NCHW input, raw `[b, 4+C, N]` head.
    Yolo {
        input: String,
        output: String,
        /// Input height and width when the graph fixes them.
        fixed: Option<(u32, u32)>,
    },
}

impl ModelFormat {
    pub fn name(&self) -> &'static str {
        match self {
            ModelFormat::TfSsd { .. } => "tf-ssd",
            ModelFormat::Yolo { .. } => "yolo",
        }
    }

    /// Tells the format from the graph's inputs and outputs:
    /// `(name, element type, shape with -1 for dynamic)` each.
    pub fn detect(
        inputs: &[(String, Option<TensorElementType>, Vec<i64>)],
        outputs: &[(String, Option<TensorElementType>, Vec<i64>)],
    ) -> Result<ModelFormat, String> {
        let describe = || {
            outputs
                .iter()
                .map(|(n, t, s)| format!("{n} {t:?} {s:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some((input, in_ty, in_shape)) = inputs.first() else {
            return Err("the model has no input".into());
        };
        let find = |stem: &str| {
            outputs
                .iter()
                .find(|(n, _, _)| {
                    n.split(':').next() == Some(stem) || n.ends_with(&format!("/{stem}"))
                })
                .map(|(n, _, _)| n.clone())
        };
        if let (Some(boxes), Some(scores), Some(classes), Some(num)) = (
            find("detection_boxes"),
            find("detection_scores"),
            find("detection_classes"),
            find("num_detections"),
        ) {
            if *in_ty != Some(TensorElementType::Uint8) || in_shape.len() != 4 {
                return Err(format!(
                    "the outputs are TF Object Detection API SSD outputs, but input `{input}` is {in_ty:?} {in_shape:?}, not u8 [N,H,W,3]"
                ));
            }
            return Ok(ModelFormat::TfSsd {
                input: input.clone(),
                num,
                boxes,
                scores,
                classes,
            });
        }
        if let [(output, Some(TensorElementType::Float32), shape)] = outputs
            && shape.len() == 3
        {
            let fixed_ok = match (shape[1], shape[2]) {
                (a, b) if a > 0 && b > 0 => {
                    yolo::HeadLayout::from_dims(a as usize, b as usize).is_some()
                }
                (a, _) if a > 0 => a > 4,
                _ => true,
            };
            if fixed_ok && *in_ty == Some(TensorElementType::Float32) && in_shape.len() == 4 {
                let fixed = (in_shape[2] > 0 && in_shape[3] > 0)
                    .then(|| (in_shape[2] as u32, in_shape[3] as u32));
                return Ok(ModelFormat::Yolo {
                    input: input.clone(),
                    output: output.clone(),
                    fixed,
                });
            }
        }
        Err(format!(
            "its outputs ({}) are neither the TF Object Detection API SSD outputs (detection_boxes, detection_scores, detection_classes, num_detections) nor one Ultralytics YOLOv8/YOLO11 head [b, 4+C, N] with an f32 [b,3,H,W] input",
            describe()
        ))
    }
}

/// Detector settings.
#[derive(Debug, Clone)]
pub struct DetectorConfig {
    /// A model from the manifest whose task is `detect`.
    pub model: String,
    pub load: LoadOptions,
    /// Boxes scoring below this are dropped.
    pub threshold: f32,
    /// NMS IoU threshold (YOLO; the SSD graph runs its own NMS).
    pub iou: f32,
    /// YOLO input side when the graph does not fix it (default 640).
    pub imgsz: Option<u32>,
    /// Keep only these class ids.
    pub classes: Option<Vec<u32>>,
    pub max_detections: usize,
}

impl DetectorConfig {
    pub fn new(model: impl Into<String>) -> DetectorConfig {
        DetectorConfig {
            model: model.into(),
            load: LoadOptions::default(),
            threshold: DEFAULT_THRESHOLD,
            iou: DEFAULT_IOU,
            imgsz: None,
            classes: None,
            max_detections: DEFAULT_MAX_DETECTIONS,
        }
    }
}

/// A loaded detection model with its format and settings.
#[derive(Debug, Clone)]
pub struct Detector {
    model: Arc<LoadedModel>,
    format: ModelFormat,
    config: DetectorConfig,
}

fn outlet(o: &ort::value::Outlet) -> (String, Option<TensorElementType>, Vec<i64>) {
    match o.dtype() {
        ValueType::Tensor { ty, shape, .. } => (o.name().to_string(), Some(*ty), shape.to_vec()),
        _ => (o.name().to_string(), None, Vec::new()),
    }
}

fn bad(message: String) -> InferenceError {
    InferenceError::BadInput(message)
}

impl Detector {
    /// Loads (or reuses) the model's session after its sha256 check and tells
    /// its format.
    pub fn new(manifest: &Manifest, config: &DetectorConfig) -> Result<Detector, InferenceError> {
        let entry = manifest.get(&config.model)?;
        if entry.task != Task::Detect {
            return Err(bad(format!(
                "model `{}` is a {} model, not a detector; pick a model whose task is detect",
                entry.name, entry.task
            )));
        }
        if !(0.0..=1.0).contains(&config.threshold) || !(0.0..=1.0).contains(&config.iou) {
            return Err(bad(format!(
                "threshold {} and iou {} must be in 0..1",
                config.threshold, config.iou
            )));
        }
        if config
            .imgsz
            .is_some_and(|s| s < 32 || s % 32 != 0 || s > 4096)
        {
            return Err(bad(format!(
                "imgsz {} must be a multiple of 32 from 32 to 4096",
                config.imgsz.unwrap_or(0)
            )));
        }
        let model = load(manifest, &config.model, &config.load)?;
        let format = {
            let session = model.lock();
            let inputs: Vec<_> = session.inputs().iter().map(outlet).collect();
            let outputs: Vec<_> = session.outputs().iter().map(outlet).collect();
            ModelFormat::detect(&inputs, &outputs).map_err(|e| {
                bad(format!(
                    "model `{}` cannot be used for detection: {e}",
                    config.model
                ))
            })?
        };
        tracing::debug!(model = %model.audit_id(), format = format.name(), "detector ready");
        Ok(Detector {
            model,
            format,
            config: config.clone(),
        })
    }

    pub fn model(&self) -> &Arc<LoadedModel> {
        &self.model
    }

    pub fn format(&self) -> &ModelFormat {
        &self.format
    }

    pub fn config(&self) -> &DetectorConfig {
        &self.config
    }

    /// YOLO input height and width: fixed by the graph, else `imgsz`, else
    /// the manifest's letterbox, else 640×640.
    fn yolo_input(&self) -> (u32, u32) {
        match (&self.format, self.config.imgsz, self.model.entry.letterbox) {
            (
                ModelFormat::Yolo {
                    fixed: Some((h, w)),
                    ..
                },
                _,
                _,
            ) => (*h, *w),
            (_, Some(s), _) => (s, s),
            (_, None, Some(l)) => (l.height, l.width),
            _ => (DEFAULT_IMGSZ, DEFAULT_IMGSZ),
        }
    }

    /// Grey level of the letterbox padding: the manifest's, else 114.
    fn pad_value(&self) -> u8 {
        self.model
            .entry
            .letterbox
            .map_or(super::letterbox::PAD_VALUE, |l| l.pad)
    }

    /// The size frames of a `width`×`height` source are best handed over
    /// at: YOLO's letterbox inner size (only padding is left to do), or for
    /// SSD the source fitted into 640×640 (the graph resizes to 300×300).
    /// Always even, so FFmpeg can scale to it.
    pub fn working_size(&self, width: u32, height: u32) -> (u32, u32) {
        match &self.format {
            ModelFormat::Yolo { .. } => {
                let (ih, iw) = self.yolo_input();
                let l = Letterbox::plan(width, height, iw, ih);
                (l.inner_w, l.inner_h)
            }
            ModelFormat::TfSsd { .. } => {
                let side = width.max(height);
                if side <= SSD_WORKING_SIDE {
                    return (width, height);
                }
                let r = f64::from(SSD_WORKING_SIDE) / f64::from(side);
                let even = |v: u32| ((f64::from(v) * r / 2.0).round() as u32 * 2).max(2);
                (even(width), even(height))
            }
        }
    }

    /// Detections on `frame`, boxes in its own pixels.
    pub fn detect(&self, frame: &Frame) -> Result<Vec<Detection>, InferenceError> {
        self.detect_scaled(frame, (frame.width, frame.height))
    }

    /// Detections on `frame`, a scaled copy of a `source` (width, height)
    /// image, with boxes in the source's pixels.
    pub fn detect_scaled(
        &self,
        frame: &Frame,
        source: (u32, u32),
    ) -> Result<Vec<Detection>, InferenceError> {
        let (sw, sh) = (f64::from(source.0), f64::from(source.1));
        let mut out = match &self.format {
            ModelFormat::TfSsd {
                input,
                num,
                boxes,
                scores,
                classes,
            } => {
                let x = ndarray::ArrayView4::from_shape(
                    (1, frame.height as usize, frame.width as usize, 3),
                    &frame.data,
                )
                .map_err(|e| bad(e.to_string()))?;
                let x = TensorRef::from_array_view(x)
                    .map_err(crate::inference::ort_err("wrap the input"))?;
                let mut session = self.model.lock();
                let outputs = session
                    .run(ort::inputs![input.as_str() => x])
                    .map_err(crate::inference::ort_err("run the detector"))?;
                let get = |name: &str| -> Result<Vec<f32>, InferenceError> {
                    let v = outputs
                        .get(name)
                        .ok_or_else(|| bad(format!("the model gave no `{name}`")))?;
                    let (_, data) = v
                        .try_extract_tensor::<f32>()
                        .map_err(crate::inference::ort_err("read a detector output"))?;
                    Ok(data.to_vec())
                };
                let (n, b, s, c) = (get(num)?, get(boxes)?, get(scores)?, get(classes)?);
                ssd::read(
                    n.first().copied().unwrap_or(0.0),
                    &b,
                    &s,
                    &c,
                    sw,
                    sh,
                    self.config.threshold,
                    self.config.classes.as_deref(),
                )
            }
            ModelFormat::Yolo { input, output, .. } => {
                let (ih, iw) = self.yolo_input();
                let from_source = Letterbox::plan(source.0, source.1, iw, ih);
                // A frame already at the source's letterbox size is only
                // padded; any other frame is letterboxed itself and its
                // boxes then scaled to the source.
                let (plan, rescale) = if (frame.width, frame.height)
                    == (from_source.inner_w, from_source.inner_h)
                    || (frame.width, frame.height) == source
                {
                    (from_source, (1.0, 1.0))
                } else {
                    (
                        Letterbox::plan(frame.width, frame.height, iw, ih),
                        (sw / f64::from(frame.width), sh / f64::from(frame.height)),
                    )
                };
                let x = plan.apply(frame, self.pad_value());
                let x = TensorRef::from_array_view(([1usize, 3, ih as usize, iw as usize], &x[..]))
                    .map_err(crate::inference::ort_err("wrap the input"))?;
                let mut session = self.model.lock();
                let outputs = session
                    .run(ort::inputs![input.as_str() => x])
                    .map_err(crate::inference::ort_err("run the detector"))?;
                let v = outputs
                    .get(output)
                    .ok_or_else(|| bad(format!("the model gave no `{output}`")))?;
                let (shape, head) = v
                    .try_extract_tensor::<f32>()
                    .map_err(crate::inference::ort_err("read the detector head"))?;
                let dims: Vec<i64> = shape.to_vec();
                let layout = match dims.as_slice() {
                    [1, a, b] => yolo::HeadLayout::from_dims(*a as usize, *b as usize),
                    _ => None,
                }
                .ok_or_else(|| bad(format!("the YOLO head has shape {dims:?}, not [1, 4+C, N]")))?;
                let candidates = yolo::decode(
                    head,
                    layout,
                    self.config.threshold,
                    self.config.classes.as_deref(),
                );
                let kept = nms(
                    candidates,
                    self.config.iou,
                    false,
                    self.config.max_detections,
                );
                kept.into_iter()
                    .map(|c| {
                        let (x1, y1) = plan.unmap(f64::from(c.x1), f64::from(c.y1));
                        let (x2, y2) = plan.unmap(f64::from(c.x2), f64::from(c.y2));
                        let (fw, fh) = (f64::from(plan.src_w), f64::from(plan.src_h));
                        let cx = |v: f64| v.clamp(0.0, fw) * rescale.0;
                        let cy = |v: f64| v.clamp(0.0, fh) * rescale.1;
                        Detection {
                            bbox: BBox::from_corners(cx(x1), cy(y1), cx(x2), cy(y2)),
                            score: f64::from(c.score),
                            class: c.class,
                            label: None,
                            track: None,
                        }
                    })
                    .collect()
            }
        };
        out.truncate(self.config.max_detections);
        let entry = &self.model.entry;
        for d in &mut out {
            d.label = entry.class_name(d.class).map(str::to_string);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(
        n: &str,
        ty: TensorElementType,
        s: &[i64],
    ) -> (String, Option<TensorElementType>, Vec<i64>) {
        (n.to_string(), Some(ty), s.to_vec())
    }

    #[test]
    fn formats_are_told_from_outputs() {
        use TensorElementType::{Float32, Uint8};
        let ssd = ModelFormat::detect(
            &[t("image_tensor:0", Uint8, &[-1, -1, -1, 3])],
            &[
                t("num_detections:0", Float32, &[-1]),
                t("detection_boxes:0", Float32, &[-1, -1, -1]),
                t("detection_scores:0", Float32, &[-1, -1]),
                t("detection_classes:0", Float32, &[-1, -1]),
            ],
        )
        .unwrap();
        assert_eq!(ssd.name(), "tf-ssd");
        let yolo = ModelFormat::detect(
            &[t("images", Float32, &[1, 3, 640, 640])],
            &[t("output0", Float32, &[1, 84, 8400])],
        )
        .unwrap();
        assert_eq!(
            yolo,
            ModelFormat::Yolo {
                input: "images".into(),
                output: "output0".into(),
                fixed: Some((640, 640))
            }
        );
        let e = ModelFormat::detect(
            &[t("input", Float32, &[1, 3, -1, -1])],
            &[t("output", Float32, &[1, 3, -1, -1])],
        )
        .unwrap_err();
        assert!(e.contains("neither"), "{e}");
    }
}
