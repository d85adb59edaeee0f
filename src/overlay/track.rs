//! Following one player through a detections JSON.
//!
//! 1. **Seed:** at the sampled frame nearest to `pick.t`, the box that
//!    contains `(pick.x, pick.y)` (the smallest, if several do), else the box
//!    whose centre is nearest.
//! 2. **Follow the id:** when the seed box has a `track` id (the `detect`
//!    step's tracker, [`crate::detect::tracker`]), the player is every box
//!    with that id, whichever other player comes near it. Detections without
//!    ids (older files, or written by hand) are followed by nearest match:
//! 3. **Follow by nearest match**, forwards and backwards from the seed: at each sampled
//!    frame, the box whose centre is nearest to where the player is expected
//!    (last position plus last velocity), if it is within a gate (half the
//!    box's larger side, growing by 3/4 of it per second since the player
//!    was last seen); none within the gate is
//!    a miss. After `max_gap` seconds of misses the player is lost and the
//!    track ends there.
//! 4. **Smooth:** centre and size, by a locally weighted straight-line fit
//!    (Gaussian weights, sigma `smoothing` seconds): jitter goes, steady
//!    motion stays where it is.
//! 5. **Bridge:** between observations the position is interpolated
//!    linearly; before the first and after the last it is held.

use super::spec::Track;
use crate::detect::{BBox, Detections};

/// A player's box over time (times in the detections' time base).
#[derive(Debug, Clone, PartialEq)]
pub struct TrackPath {
    /// `(t, box)`, increasing in `t`, smoothed.
    pub samples: Vec<(f64, BBox)>,
}

/// Why a player could not be tracked.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrackError {
    #[error(
        "the detections have no sampled frame within {window} s of pick.t = {t} s; pick a time the detections cover ({first:.2} to {last:.2} s)"
    )]
    NoFrameNear {
        t: f64,
        window: f64,
        first: f64,
        last: f64,
    },
    #[error("the detections have no frames at all; run detect on the video first")]
    Empty,
    #[error(
        "no player was detected within {window} s of pick.t = {t} s; pick a time when the player is visible"
    )]
    NoBoxNear { t: f64, window: f64 },
}

fn dist(a: (f64, f64), b: (f64, f64)) -> f64 {
    ((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt()
}

impl TrackPath {
    /// Tracks the player picked at `pick` (its `t` already in the
    /// detections' time base).
    pub fn follow(
        detections: &Detections,
        track: &Track,
        pick_t: f64,
    ) -> Result<TrackPath, TrackError> {
        let frames = &detections.frames;
        if frames.is_empty() {
            return Err(TrackError::Empty);
        }
        let window = track.max_gap.max(0.5);
        // Seed: the nearest sampled frame to pick_t that has any box.
        let mut order: Vec<usize> = (0..frames.len()).collect();
        order.sort_by(|&a, &b| {
            (frames[a].t - pick_t)
                .abs()
                .total_cmp(&(frames[b].t - pick_t).abs())
        });
        let nearest = order[0];
        if (frames[nearest].t - pick_t).abs() > window {
            return Err(TrackError::NoFrameNear {
                t: pick_t,
                window,
                first: frames[0].t,
                last: frames[frames.len() - 1].t,
            });
        }
        let seed_frame = order
            .iter()
            .copied()
            .take_while(|&i| (frames[i].t - pick_t).abs() <= window)
            .find(|&i| !frames[i].detections.is_empty())
            .ok_or(TrackError::NoBoxNear { t: pick_t, window })?;
        let p = (track.pick.x, track.pick.y);
        let boxes = &frames[seed_frame].detections;
        let containing = boxes
            .iter()
            .filter(|d| {
                p.0 >= d.bbox.x && p.0 <= d.bbox.x2() && p.1 >= d.bbox.y && p.1 <= d.bbox.y2()
            })
            .min_by(|a, b| a.bbox.area().total_cmp(&b.bbox.area()));
        let seed = containing
            .or_else(|| {
                boxes
                    .iter()
                    .min_by(|a, b| dist(a.bbox.center(), p).total_cmp(&dist(b.bbox.center(), p)))
            })
            .expect("the seed frame has boxes");
        if let Some(id) = seed.track {
            let mut observed: Vec<(f64, BBox)> = frames
                .iter()
                .filter_map(|f| {
                    f.detections
                        .iter()
                        .find(|d| d.track == Some(id))
                        .map(|d| (f.t, d.bbox))
                })
                .collect();
            observed.sort_by(|a, b| a.0.total_cmp(&b.0));
            return Ok(TrackPath {
                samples: smooth(&observed, track.smoothing),
            });
        }
        let seed = seed.bbox;

        let mut observed: Vec<(f64, BBox)> = vec![(frames[seed_frame].t, seed)];
        for forward in [true, false] {
            let mut last = (frames[seed_frame].t, seed);
            let mut velocity = (0.0, 0.0);
            let indices: Box<dyn Iterator<Item = usize>> = if forward {
                Box::new(seed_frame + 1..frames.len())
            } else {
                Box::new((0..seed_frame).rev())
            };
            for i in indices {
                let f = &frames[i];
                let dt = (f.t - last.0).abs();
                if dt > track.max_gap {
                    // Lost for longer than max_gap: the track ends here.
                    break;
                }
                let sign = if forward { 1.0 } else { -1.0 };
                let c = last.1.center();
                let expected = (c.0 + velocity.0 * dt * sign, c.1 + velocity.1 * dt * sign);
                let size = last.1.w.max(last.1.h);
                let gate = size * (0.5 + 0.75 * dt);
                let best = f
                    .detections
                    .iter()
                    .map(|d| (dist(d.bbox.center(), expected), d.bbox))
                    .filter(|(d, _)| *d <= gate)
                    .min_by(|a, b| a.0.total_cmp(&b.0));
                if let Some((_, b)) = best {
                    let nc = b.center();
                    if dt > 0.0 {
                        let v = ((nc.0 - c.0) / dt * sign, (nc.1 - c.1) / dt * sign);
                        // Damped, so one jumpy box does not throw the prediction.
                        velocity = (0.5 * velocity.0 + 0.5 * v.0, 0.5 * velocity.1 + 0.5 * v.1);
                    }
                    last = (f.t, b);
                    observed.push(last);
                }
            }
        }
        observed.sort_by(|a, b| a.0.total_cmp(&b.0));
        Ok(TrackPath {
            samples: smooth(&observed, track.smoothing),
        })
    }

    /// The box at time `t` (detections' time base): interpolated between
    /// samples, held before the first and after the last.
    pub fn at(&self, t: f64) -> BBox {
        let s = &self.samples;
        if t <= s[0].0 {
            return s[0].1;
        }
        if t >= s[s.len() - 1].0 {
            return s[s.len() - 1].1;
        }
        let i = s.partition_point(|(st, _)| *st <= t);
        let (t0, a) = s[i - 1];
        let (t1, b) = s[i];
        let f = if t1 > t0 { (t - t0) / (t1 - t0) } else { 0.0 };
        let l = |x: f64, y: f64| x + (y - x) * f;
        BBox {
            x: l(a.x, b.x),
            y: l(a.y, b.y),
            w: l(a.w, b.w),
            h: l(a.h, b.h),
        }
    }
}

/// Smoothing over time of centre and size: at each sample, a straight line
/// fitted by least squares with Gaussian weights (sigma seconds), read at
/// that time. Unlike a plain weighted mean, it does not pull a player moving
/// steadily back towards the middle at the ends of the track.
fn smooth(observed: &[(f64, BBox)], sigma: f64) -> Vec<(f64, BBox)> {
    if sigma <= 0.0 || observed.len() < 3 {
        return observed.to_vec();
    }
    observed
        .iter()
        .map(|&(t, _)| {
            let (mut s0, mut s1, mut s2) = (0.0, 0.0, 0.0);
            let mut sy = [0.0f64; 4];
            let mut sxy = [0.0f64; 4];
            for &(u, b) in observed {
                let d = u - t;
                if (d / sigma).abs() > 3.0 {
                    continue;
                }
                let k = (-0.5 * (d / sigma).powi(2)).exp();
                let c = b.center();
                let v = [c.0, c.1, b.w, b.h];
                s0 += k;
                s1 += k * d;
                s2 += k * d * d;
                for j in 0..4 {
                    sy[j] += k * v[j];
                    sxy[j] += k * d * v[j];
                }
            }
            let det = s0 * s2 - s1 * s1;
            let fit: [f64; 4] = std::array::from_fn(|j| {
                if det.abs() > 1e-12 * s0.max(1e-300) * s2.max(1e-300) && det > 0.0 {
                    // Intercept of the weighted line at d = 0.
                    (s2 * sy[j] - s1 * sxy[j]) / det
                } else {
                    sy[j] / s0
                }
            });
            let [cx, cy, w, h] = fit;
            (
                t,
                BBox {
                    x: cx - w / 2.0,
                    y: cy - h / 2.0,
                    w,
                    h,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Detection, FrameDetections};
    use crate::overlay::spec::Pick;

    fn det(x: f64, y: f64) -> Detection {
        Detection {
            bbox: BBox {
                x,
                y,
                w: 40.0,
                h: 80.0,
            },
            score: 0.9,
            class: 1,
            label: None,
            track: None,
        }
    }

    fn track(t: f64, x: f64, y: f64) -> Track {
        Track {
            detections: None,
            pick: Pick { t, x, y },
            smoothing: 0.0,
            max_gap: 2.0,
        }
    }

    #[test]
    fn follows_the_picked_player_past_a_gap_and_a_distractor() {
        // Player A walks right 10 px per 0.2 s; B stands still at x=300.
        let frames: Vec<FrameDetections> = (0..20)
            .map(|k| {
                let t = k as f64 * 0.2;
                let mut d = vec![det(300.0, 100.0)];
                if !(8..11).contains(&k) {
                    d.push(det(100.0 + 10.0 * k as f64, 100.0));
                }
                FrameDetections { t, detections: d }
            })
            .collect();
        let dets = Detections {
            frames,
            video: None,
            model: None,
            sample_fps: None,
            tracks: None,
        };
        let path = TrackPath::follow(&dets, &track(1.0, 160.0, 140.0), 1.0).unwrap();
        // Seen in 17 frames, the 3-frame gap bridged by interpolation.
        assert_eq!(path.samples.len(), 17);
        let mid = path.at(1.8); // k = 9, inside the gap
        assert!((mid.x - 190.0).abs() < 1e-9, "{mid:?}");
        assert!((path.at(3.8).x - 290.0).abs() < 1e-9);
        assert_eq!(path.at(-1.0).x, 100.0);
        // Picking B follows B.
        let b = TrackPath::follow(&dets, &track(0.0, 320.0, 140.0), 0.0).unwrap();
        assert!(b.samples.iter().all(|(_, bb)| bb.x == 300.0));
    }

    /// A walks right and is hidden for 0.8 s just as B stands where A was
    /// expected: by nearest match the spotlight would jump to B; by track id
    /// it stays on A's boxes only.
    #[test]
    fn a_track_id_is_followed_whoever_stands_where_the_player_was_expected() {
        let frames: Vec<FrameDetections> = (0..20)
            .map(|k| {
                let mut d = Vec::new();
                if !(9..13).contains(&k) {
                    d.push(Detection {
                        track: Some(1),
                        ..det(20.0 * k as f64, 100.0)
                    });
                }
                if k >= 9 {
                    d.push(Detection {
                        track: Some(2),
                        ..det(220.0, 100.0)
                    });
                }
                FrameDetections {
                    t: k as f64 * 0.2,
                    detections: d,
                }
            })
            .collect();
        let dets = Detections {
            frames,
            video: None,
            model: None,
            sample_fps: Some(5.0),
            tracks: None,
        };
        let path = TrackPath::follow(&dets, &track(0.0, 20.0, 140.0), 0.0).unwrap();
        assert_eq!(path.samples.len(), 16);
        for (t, b) in &path.samples {
            assert!((b.x - 100.0 * t).abs() < 1e-6, "t={t}: {b:?}");
        }
        // Between samples, in the gap, the box is interpolated on A's line.
        assert!((path.at(2.2).x - 220.0).abs() < 1e-6);
        assert!((path.at(3.9).x - 380.0).abs() < 1e-6);
    }

    #[test]
    fn no_frames_near_the_pick_is_an_error() {
        let dets = Detections {
            frames: vec![FrameDetections {
                t: 10.0,
                detections: vec![det(0.0, 0.0)],
            }],
            video: None,
            model: None,
            sample_fps: None,
            tracks: None,
        };
        let e = TrackPath::follow(&dets, &track(0.0, 0.0, 0.0), 0.0).unwrap_err();
        assert!(matches!(e, TrackError::NoFrameNear { .. }), "{e}");
    }
}
