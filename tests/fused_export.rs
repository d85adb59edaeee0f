//! Fusion and placement on real FFmpeg, ONNX Runtime and the real models:
//! a framed clip's overlay drawn in the frame step's own pass matches the
//! frame step followed by the overlay step, a fan-out job writes no
//! intermediate overlay clip, and a single-container job writes nothing
//! but its export and loads its model once for all its clips.
//!
//! Needs `make setup` (FFmpeg, ONNX Runtime).

mod common;

use std::path::{Path, PathBuf};

use reelay::adapters::local_store::LocalStore;
use reelay::audit::AuditRecord;
use reelay::inference::Device;
use reelay::media::EncodeProfile;
use reelay::ports::store::ObjectStore;
use reelay::tasks::frame::{self, FrameParams};
use reelay::tasks::overlay::{self, OverlayParams};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MODEL: &str = "realesr-animevideov3";
const DIM: f64 = 0.4;

fn spotlight() -> serde_json::Value {
    json!({"spotlight": {"keyframes": [{"t": 0, "x": 128, "y": 72, "rx": 50, "ry": 36},
                                       {"t": 1, "x": 150, "y": 80, "rx": 50, "ry": 36}],
                         "dim": DIM, "feather": 4},
           "boxes": [{"keyframes": [{"t": 0, "x": 10, "y": 10, "w": 40, "h": 30}], "color": "#ffcc00"}]})
}

fn framing() -> serde_json::Value {
    json!({"crop": {"x": 120, "y": 60, "w": 64, "h": 36}, "model": MODEL, "size": "256x144"})
}

/// The frame step on the CPU, the overlay fused in when `overlay` is given.
fn frame_step(clip: &Path, out: &Path, overlay: Option<&OverlayParams>, profile: &EncodeProfile) {
    let mut p: FrameParams = serde_json::from_value(framing()).unwrap();
    p.overlay = overlay.cloned();
    frame::run(
        &common::ffmpeg(),
        &[clip.to_path_buf()],
        out,
        &p,
        profile,
        Device::Cpu,
        &mut |_| {},
        &CancellationToken::new(),
    )
    .unwrap_or_else(|e| panic!("frame: {e}"));
}

/// Mean luma-ish level (mean of RGB) of `frame` inside and outside the
/// ellipse centred on (cx, cy).
fn levels(frame: &[u8], w: u32, (cx, cy, rx, ry): (f64, f64, f64, f64)) -> (f64, f64) {
    let (mut inside, mut outside) = ((0.0, 0usize), (0.0, 0usize));
    for (i, px) in frame.chunks_exact(3).enumerate() {
        let (x, y) = ((i as u32 % w) as f64, (i as u32 / w) as f64);
        let d = ((x - cx) / rx).powi(2) + ((y - cy) / ry).powi(2);
        let v = px.iter().map(|&c| f64::from(c)).sum::<f64>() / 3.0;
        if d < 0.6 {
            inside = (inside.0 + v, inside.1 + 1);
        } else if d > 1.6 && y > 50.0 {
            // Below the box, so only the spotlight changes these pixels.
            outside = (outside.0 + v, outside.1 + 1);
        }
    }
    (inside.0 / inside.1 as f64, outside.0 / outside.1 as f64)
}

#[test]
fn fused_frame_and_overlay_match_the_two_steps_within_40_db() {
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("clip.mp4");
    common::make_video(&clip, 1.0, "320x180", 10, true);
    // High quality, so the comparison sees the pipelines, not the encoder.
    let profile = EncodeProfile {
        crf: 8,
        ..EncodeProfile::default()
    };
    let spec: OverlayParams = serde_json::from_value(json!({"spec": spotlight()})).unwrap();

    let framed = dir.path().join("framed.mp4");
    frame_step(&clip, &framed, None, &profile);
    let unfused = dir.path().join("unfused.mp4");
    overlay::run(
        &common::ffmpeg(),
        std::slice::from_ref(&framed),
        &unfused,
        &spec,
        &profile,
        None,
        &mut |_| {},
        &CancellationToken::new(),
    )
    .unwrap();
    let fused = dir.path().join("fused.mp4");
    frame_step(&clip, &fused, Some(&spec), &profile);

    let (w, h, a) = common::decode_all(&unfused);
    let (w2, h2, b) = common::decode_all(&fused);
    let (_, _, plain) = common::decode_all(&framed);
    assert_eq!((w, h, a.len()), (w2, h2, b.len()));
    assert_eq!((w, h, a.len()), (256, 144, 10));
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| common::psnr(x, y))
        .fold(f64::INFINITY, f64::min);
    println!("fused against unfused: worst frame {worst:.1} dB");
    assert!(worst >= 40.0, "fused and unfused differ: {worst:.1} dB");
    // And the overlay is really there: darker outside, the same inside.
    let (in_plain, out_plain) = levels(&plain[0], w, (128.0, 72.0, 50.0, 36.0));
    let (in_fused, out_fused) = levels(&b[0], w, (128.0, 72.0, 50.0, 36.0));
    assert!(
        (in_fused - in_plain).abs() < 2.0,
        "{in_fused} vs {in_plain}"
    );
    let ratio = out_fused / out_plain;
    assert!(
        (ratio - DIM).abs() < 0.06,
        "outside the spotlight: {out_fused:.1} against {out_plain:.1} unlit, ratio {ratio:.3}, dim {DIM}"
    );
}

fn job(placement: &str, output: &str) -> serde_json::Value {
    json!({"version": 1, "source": "sources/match.mp4", "output": output,
           "placement": placement,
           "clips": [{"start": 0.0, "end": 1.0, "caption": "Plain"},
                     {"start": 1.0, "end": 2.0, "framing": framing(), "overlay": spotlight()},
                     {"start": 2.0, "end": 3.0,
                      "framing": {"crop": {"x": 20, "y": 100, "w": 64, "h": 36},
                                  "model": MODEL, "size": "256x144"}}],
           "transition": {"kind": "fade", "seconds": 0.2}})
}

/// `reelay dev --exit-when-idle` with info logs; the logs.
fn dev_logging_loads(bucket: &Path) -> String {
    let out = common::reelay()
        .env("RUST_LOG", "info")
        .args(["dev", "--exit-when-idle", "--root"])
        .arg(bucket)
        .output()
        .unwrap();
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "reelay dev failed: {logs}");
    logs
}

/// Every key in the bucket outside reelay's own `_reelay/` folder.
async fn user_visible_keys(store: &LocalStore) -> Vec<String> {
    let mut keys: Vec<String> = store
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .filter(|k| !k.starts_with("_reelay/"))
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread")]
async fn single_container_loads_once_writes_only_the_export_and_matches_fan_out() {
    let dir = tempfile::tempdir().unwrap();
    let bucket: PathBuf = dir.path().join("bucket");
    common::make_video(&bucket.join("sources/match.mp4"), 3.0, "320x180", 10, true);
    let store = LocalStore::open(&bucket).unwrap();

    // 1. single-container: one task, one model load, no intermediate objects.
    common::write_job(
        &bucket,
        "jobs/single.json",
        &job("single-container", "exports/single.mp4"),
    );
    let logs = tokio::task::spawn_blocking({
        let bucket = bucket.clone();
        move || dev_logging_loads(&bucket)
    })
    .await
    .unwrap();
    let loads = logs
        .lines()
        .filter(|l| l.contains("model loaded") && l.contains(MODEL))
        .count();
    assert_eq!(loads, 1, "two framed clips, one load:\n{logs}");
    // The job writes its export and nothing else; the detections are the
    // default `sources/` rule's, not the job's.
    assert_eq!(
        user_visible_keys(&store).await,
        [
            "detections/match.mp4.json",
            "exports/single.mp4",
            "jobs/single.json",
            "sources/match.mp4"
        ],
        "nothing but the export is written"
    );
    let meta = store.head("exports/single.mp4").await.unwrap().unwrap();
    let record = AuditRecord::from_metadata(&meta.metadata).unwrap();
    assert_eq!(
        (record.kind.as_str(), record.step.as_str()),
        ("export", "export")
    );
    assert_eq!(
        record.model.as_deref(),
        Some("realesr-animevideov3@d900c5bf1fa4")
    );
    assert_eq!(record.device, "cpu");
    assert_eq!(meta.metadata["reelay-clips"], "3");
    assert_eq!(meta.metadata["reelay-framed-clips"], "2");
    assert_eq!(meta.metadata["reelay-model-loads"], "1");
    let starts = common::starts_per_task(&common::journal(&bucket));
    assert_eq!(
        starts.values().collect::<Vec<_>>(),
        [&1, &1],
        "the rule's detect and the export, once each: {starts:?}"
    );
    let single = bucket.join("exports/single.mp4");
    // 3 clips of 10 frames, two 0.2 s (2-frame) fades.
    assert_eq!(common::ffmpeg().count_frames(&single).unwrap(), 26);

    // 2. fan-out of the same clips: the framed clip's overlay is fused into
    // its frame step, so no overlay clip is written.
    common::write_job(&bucket, "jobs/fan.json", &job("fan-out", "exports/fan.mp4"));
    tokio::task::spawn_blocking({
        let bucket = bucket.clone();
        move || common::dev_until_idle(&bucket, None)
    })
    .await
    .unwrap();
    let mut kinds = Vec::new();
    for o in store.list("work/").await.unwrap() {
        let meta = store.head(&o.key).await.unwrap().unwrap();
        let r = AuditRecord::from_metadata(&meta.metadata).unwrap();
        if r.step == "frame-1" {
            assert_eq!(meta.metadata["reelay-overlay"], "fused");
        }
        kinds.push(r.step);
    }
    kinds.sort();
    assert_eq!(
        kinds,
        ["extract-0", "extract-1", "extract-2", "frame-1", "frame-2"],
        "no overlay-1 intermediate"
    );

    // 3. The two placements give the same export.
    let (_, _, a) = common::decode_all(&single);
    let (_, _, b) = common::decode_all(&bucket.join("exports/fan.mp4"));
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(&b)
        .map(|(x, y)| common::psnr(x, y))
        .fold(f64::INFINITY, f64::min);
    println!("single-container against fan-out: worst frame {worst:.1} dB");
    assert!(worst >= 40.0, "placements disagree: {worst:.1} dB");
}
