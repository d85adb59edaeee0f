//! Reading the TF Object Detection API SSD outputs: `num_detections` `[N]`,
//! `detection_boxes` `[N, K, 4]` as normalised `(y1, x1, y2, x2)`,
//! `detection_scores` `[N, K]` and `detection_classes` `[N, K]` (label map
//! ids as floats). The graph has already resized and run NMS.

use super::{BBox, Detection};

/// One image's detections from its slices of the four outputs, in the pixels
/// of a `width`×`height` image, clipped to it; kept when the score is at
/// least `threshold` and the class is in `classes` (when given).
#[allow(clippy::too_many_arguments)]
pub fn read(
    num: f32,
    boxes: &[f32],
    scores: &[f32],
    classes: &[f32],
    width: f64,
    height: f64,
    threshold: f32,
    keep: Option<&[u32]>,
) -> Vec<Detection> {
    let n = (num.max(0.0) as usize)
        .min(scores.len())
        .min(boxes.len() / 4);
    let mut out = Vec::new();
    for k in 0..n {
        let score = scores[k];
        if score < threshold {
            continue;
        }
        let class = classes.get(k).copied().unwrap_or(0.0).round().max(0.0) as u32;
        if let Some(keep) = keep
            && !keep.contains(&class)
        {
            continue;
        }
        let b = &boxes[k * 4..k * 4 + 4];
        let clip = |v: f32, size: f64| (f64::from(v).clamp(0.0, 1.0)) * size;
        let (y1, x1, y2, x2) = (
            clip(b[0], height),
            clip(b[1], width),
            clip(b[2], height),
            clip(b[3], width),
        );
        out.push(Detection {
            bbox: BBox::from_corners(x1, y1, x2, y2),
            score: f64::from(score),
            class,
            label: None,
            track: None,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_normalised_boxes_to_pixels() {
        let boxes = [0.1, 0.2, 0.5, 0.6, 0.0, 0.0, 1.0, 1.0];
        let d = read(
            2.0,
            &boxes,
            &[0.9, 0.3],
            &[1.0, 1.0],
            200.0,
            100.0,
            0.5,
            None,
        );
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        assert!((b.x - 40.0).abs() < 1e-4 && (b.y - 10.0).abs() < 1e-4);
        assert!((b.w - 80.0).abs() < 1e-4 && (b.h - 40.0).abs() < 1e-4);
        assert_eq!(d[0].class, 1);
        assert!(
            read(
                2.0,
                &boxes,
                &[0.9, 0.3],
                &[1.0, 1.0],
                200.0,
                100.0,
                0.5,
                Some(&[2])
            )
            .is_empty()
        );
    }
}
