//! Which placement a job gets when its manifest names none.
//!
//! A fan-out job pays, per GPU task, a cold start, a model load and the
//! clip's round trip through the bucket, and in exchange runs its framed
//! clips on as many workers at once. A single-container job pays the cold
//! start and the load once and runs the clips one after another. So
//! fan-out only pays off when there are several framed clips and each is
//! long enough that its model time dwarfs the per-task overhead:
//!
//! - no framed clip: `fan-out` (nothing needs a GPU; the router runs the
//!   CPU steps and any overlay);
//! - fewer than [`FAN_OUT_MIN_FRAMED_CLIPS`] framed clips, or fewer than
//!   [`FAN_OUT_MIN_FRAMES_PER_CLIP`] frames per framed clip on average:
//!   `single-container`;
//! - otherwise `fan-out`.
//!
//! The thresholds come from `reelay bench placement` (figures in the
//! README): with per-task overhead `o` (cold start + load + transfer) and
//! model time `t` per frame, fanning `n` clips of `f` frames out saves
//! `(n − 1)·f·t` of wall time for `(n − 1)·o` of extra GPU time; at
//! `f ≥ 150` frames even a 4 fps GPU spends over 37 s per clip on the
//! model, three times the old platform's 11 s overhead, so the extra cost
//! stays under a third of the job's.
//!
//! Frames are counted at [`NOMINAL_FPS`]: the planner does not probe the
//! source.

use crate::pipeline::manifest::{JobManifest, Placement};

/// Framed clips below which one container always wins.
pub const FAN_OUT_MIN_FRAMED_CLIPS: usize = 2;
/// Average frames per framed clip below which the per-task overhead
/// dominates.
pub const FAN_OUT_MIN_FRAMES_PER_CLIP: f64 = 150.0;
/// Frame rate assumed when turning clip seconds into frames.
pub const NOMINAL_FPS: f64 = 30.0;

/// The placement of `manifest`: its own, or the rule's.
pub fn choose(manifest: &JobManifest) -> Placement {
    manifest.placement.unwrap_or_else(|| {
        let (clips, frames) = framed_work(manifest);
        if clips == 0 {
            Placement::FanOut
        } else if clips < FAN_OUT_MIN_FRAMED_CLIPS
            || frames / (clips as f64) < FAN_OUT_MIN_FRAMES_PER_CLIP
        {
            Placement::SingleContainer
        } else {
            Placement::FanOut
        }
    })
}

/// Framed clips, and their frames at [`NOMINAL_FPS`].
pub fn framed_work(manifest: &JobManifest) -> (usize, f64) {
    manifest
        .clips
        .iter()
        .filter(|c| c.framing.is_some())
        .fold((0, 0.0), |(n, f), c| {
            (n + 1, f + (c.end - c.start) * NOMINAL_FPS)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(clips: &[(f64, bool)], placement: Option<&str>) -> JobManifest {
        let clips: Vec<serde_json::Value> = clips
            .iter()
            .map(|&(secs, framed)| {
                let mut c = serde_json::json!({"start": 0.0, "end": secs});
                if framed {
                    c["framing"] = serde_json::json!({"crop": {"x": 0, "y": 0, "w": 64, "h": 36},
                        "model": "realesr-general-x4v3", "size": "256x144"});
                }
                c
            })
            .collect();
        let mut m = serde_json::json!({"version": 1, "source": "sources/a.mp4",
            "output": "exports/a.mp4", "clips": clips});
        if let Some(p) = placement {
            m["placement"] = p.into();
        }
        JobManifest::parse("jobs/a.json", &serde_json::to_vec(&m).unwrap()).unwrap()
    }

    #[test]
    fn the_rule_weighs_clip_count_against_frames_per_clip() {
        use Placement::*;
        assert_eq!(
            choose(&job(&[(10.0, false); 8], None)),
            FanOut,
            "no GPU work"
        );
        assert_eq!(
            choose(&job(&[(60.0, true)], None)),
            SingleContainer,
            "one clip"
        );
        assert_eq!(
            choose(&job(&[(2.0, true); 8], None)),
            SingleContainer,
            "8 short clips: 60 frames each"
        );
        assert_eq!(
            choose(&job(&[(5.0, true); 4], None)),
            FanOut,
            "4 × 150 frames"
        );
        assert_eq!(
            choose(&job(&[(4.9, true), (5.1, true), (1.0, false)], None)),
            FanOut,
            "the average of the framed clips only"
        );
        assert_eq!(choose(&job(&[(1.0, true); 2], None)), SingleContainer);
    }

    #[test]
    fn the_manifest_overrides_the_rule() {
        assert_eq!(
            choose(&job(&[(60.0, true); 8], Some("single-container"))),
            Placement::SingleContainer
        );
        assert_eq!(
            choose(&job(&[(1.0, true)], Some("fan-out"))),
            Placement::FanOut
        );
        let e = JobManifest::parse(
            "jobs/b.json",
            br#"{"version": 1, "source": "s/a.mp4", "output": "e/a.mp4",
                 "clips": [{"start": 0, "end": 1}], "placement": "everywhere"}"#,
        )
        .unwrap_err();
        assert_eq!(e.field, "placement");
        assert!(e.problem.contains("single-container"), "{e}");
    }
}
