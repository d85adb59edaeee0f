//! Decoding the Ultralytics YOLOv8/YOLO11 detection head.
//!
//! The head is one f32 output `[b, 4+C, N]`: for each of N anchors, the box
//! centre and size `(cx, cy, w, h)` in model input pixels, then C class
//! scores (already sigmoided; no objectness). An anchor's score is its best
//! class score; anchors above the threshold go to NMS ([`super::nms`]).
//! Some exports transpose the head to `[b, N, 4+C]`; [`HeadLayout`] tells
//! which, from the shape (C+4 is always the smaller dimension).

use super::nms::Candidate;

/// How the head's two trailing dimensions are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLayout {
    /// Class count C.
    pub classes: usize,
    /// Anchor count N.
    pub anchors: usize,
    /// `[N, 4+C]` instead of `[4+C, N]`.
    pub transposed: bool,
}

impl HeadLayout {
    /// From one image's `[d1, d2]`; `None` when it cannot be a YOLO head.
    pub fn from_dims(d1: usize, d2: usize) -> Option<HeadLayout> {
        let (rows, anchors, transposed) = if d1 <= d2 {
            (d1, d2, false)
        } else {
            (d2, d1, true)
        };
        (rows > 4).then(|| HeadLayout {
            classes: rows - 4,
            anchors,
            transposed,
        })
    }

    fn at(&self, head: &[f32], row: usize, anchor: usize) -> f32 {
        if self.transposed {
            head[anchor * (self.classes + 4) + row]
        } else {
            head[row * self.anchors + anchor]
        }
    }
}

/// The candidates of one image's head: best class per anchor, kept when its
/// score is above `threshold` (strictly, as Ultralytics) and its class is in
/// `classes` (when given). Boxes in model input pixels, corners form.
pub fn decode(
    head: &[f32],
    layout: HeadLayout,
    threshold: f32,
    classes: Option<&[u32]>,
) -> Vec<Candidate> {
    debug_assert_eq!(head.len(), (layout.classes + 4) * layout.anchors);
    let mut out = Vec::new();
    for a in 0..layout.anchors {
        let mut best = f32::NEG_INFINITY;
        let mut class = 0usize;
        for c in 0..layout.classes {
            let s = layout.at(head, 4 + c, a);
            if s > best {
                best = s;
                class = c;
            }
        }
        if best.partial_cmp(&threshold) != Some(std::cmp::Ordering::Greater) {
            continue;
        }
        if let Some(keep) = classes
            && !keep.contains(&(class as u32))
        {
            continue;
        }
        let (cx, cy, w, h) = (
            layout.at(head, 0, a),
            layout.at(head, 1, a),
            layout.at(head, 2, a),
            layout.at(head, 3, a),
        );
        out.push(Candidate {
            x1: cx - w / 2.0,
            y1: cy - h / 2.0,
            x2: cx + w / 2.0,
            y2: cy + h / 2.0,
            score: best,
            class: class as u32,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_from_shape() {
        assert_eq!(
            HeadLayout::from_dims(84, 8400),
            Some(HeadLayout {
                classes: 80,
                anchors: 8400,
                transposed: false
            })
        );
        assert!(HeadLayout::from_dims(2100, 22).unwrap().transposed);
        assert_eq!(HeadLayout::from_dims(4, 100), None);
    }

    #[test]
    fn decodes_best_class_above_threshold() {
        // 2 classes, 3 anchors, [4+C, N].
        #[rustfmt::skip]
        let head = [
            10.0, 20.0, 30.0, // cx
            10.0, 20.0, 30.0, // cy
            4.0, 4.0, 4.0,    // w
            2.0, 2.0, 2.0,    // h
            0.9, 0.1, 0.2,    // class 0
            0.3, 0.2, 0.8,    // class 1
        ];
        // (A real head has far more anchors than rows; from_dims relies on it.)
        let l = HeadLayout {
            classes: 2,
            anchors: 3,
            transposed: false,
        };
        let c = decode(&head, l, 0.5, None);
        assert_eq!(c.len(), 2);
        assert_eq!(
            (c[0].x1, c[0].y1, c[0].x2, c[0].y2, c[0].class),
            (8.0, 9.0, 12.0, 11.0, 0)
        );
        assert_eq!((c[1].score, c[1].class), (0.8, 1));
        assert_eq!(decode(&head, l, 0.5, Some(&[1])).len(), 1);
    }
}
