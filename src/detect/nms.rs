//! Non-maximum suppression, as Ultralytics does it: candidates sorted by
//! score (highest first), each kept unless it overlaps an already kept box
//! of the same class by IoU above the threshold (`torchvision.ops.nms` with
//! class offsets), at most `max_det` kept.

/// A box before NMS, in model input pixels, corners form.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    pub x1: f32,
    pub y1: f32,
    pub x2: f32,
    pub y2: f32,
    pub score: f32,
    pub class: u32,
}

impl Candidate {
    fn area(&self) -> f32 {
        (self.x2 - self.x1) * (self.y2 - self.y1)
    }

    /// IoU as torchvision computes it.
    pub fn iou(&self, o: &Candidate) -> f32 {
        let iw = (self.x2.min(o.x2) - self.x1.max(o.x1)).max(0.0);
        let ih = (self.y2.min(o.y2) - self.y1.max(o.y1)).max(0.0);
        let inter = iw * ih;
        let union = self.area() + o.area() - inter;
        if union <= 0.0 { 0.0 } else { inter / union }
    }
}

/// Keeps the best boxes: per class unless `agnostic`. The order of the
/// result is by score, highest first (ties: the earlier candidate first).
pub fn nms(
    mut candidates: Vec<Candidate>,
    iou: f32,
    agnostic: bool,
    max_det: usize,
) -> Vec<Candidate> {
    // Stable: equal scores keep their anchor order, as numpy's stable argsort.
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::new();
    for c in candidates {
        if kept.len() >= max_det {
            break;
        }
        let suppressed = kept
            .iter()
            .any(|k| (agnostic || k.class == c.class) && k.iou(&c) > iou);
        if !suppressed {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(x1: f32, score: f32, class: u32) -> Candidate {
        Candidate {
            x1,
            y1: 0.0,
            x2: x1 + 10.0,
            y2: 10.0,
            score,
            class,
        }
    }

    #[test]
    fn suppresses_overlaps_of_the_same_class_only() {
        let kept = nms(
            vec![
                c(0.0, 0.8, 0),
                c(1.0, 0.9, 0),
                c(1.0, 0.7, 1),
                c(50.0, 0.6, 0),
            ],
            0.45,
            false,
            300,
        );
        assert_eq!(kept, vec![c(1.0, 0.9, 0), c(1.0, 0.7, 1), c(50.0, 0.6, 0)]);
        let kept = nms(
            vec![c(0.0, 0.8, 0), c(1.0, 0.9, 0), c(1.0, 0.7, 1)],
            0.45,
            true,
            300,
        );
        assert_eq!(kept, vec![c(1.0, 0.9, 0)]);
        assert_eq!(
            nms(vec![c(0.0, 0.8, 0), c(50.0, 0.9, 0)], 0.45, false, 1).len(),
            1
        );
    }
}
