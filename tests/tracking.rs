//! Players on synthetic match footage made here (the people in the
//! public-domain test photos, cropped, scaled to 12–55 % of the frame height
//! and moved by FFmpeg over a green pitch, `reelay::detect::players`):
//!
//! - `reelay run detect` with the default model (NanoDet-g) finds each of
//!   them in every sampled frame, at score ≥ 0.5 and IoU ≥ 0.5 with the box
//!   FFmpeg drew, each with one track id throughout, and nothing once they
//!   are gone.
//! - Two players cross paths, one first passing behind a board: the picked
//!   player keeps its track id, and `reelay run overlay` keeps the spotlight
//!   on it in the rendered frames (checked on pixels against the source).
//!
//! Needs `make setup` (ONNX Runtime, FFmpeg, the photos).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::*;
use reelay::detect::players::{ASTRONAUT, CAMERAMAN, Footage, Player};
use reelay::detect::{BBox, Detections};
use reelay::media::Ffmpeg;
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn testdata() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".tools/testdata");
    assert!(
        dir.join("astronaut.png").is_file(),
        "test photos missing in {}\n=> run `make setup`",
        dir.display()
    );
    dir
}

fn make(footage: &Footage, out: &Path) {
    let ff: Ffmpeg = ffmpeg();
    ff.run(
        &footage.args(out),
        Some(footage.seconds),
        &mut |_| {},
        &CancellationToken::new(),
    )
    .expect("FFmpeg makes the footage");
}

/// Runs `reelay run detect` at 5 frames/s: the detections, and what the
/// step printed (its audit metadata).
fn detect(video: &Path, out: &Path) -> (Detections, String) {
    let run = reelay()
        .args(["run", "detect", "--input"])
        .arg(video)
        .arg("--output")
        .arg(out)
        .args(["--set", "fps=5"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    (
        Detections::parse("d.json", &std::fs::read(out).unwrap()).unwrap(),
        String::from_utf8_lossy(&run.stdout).into_owned(),
    )
}

/// The detected person best overlapping `truth`: (IoU, score, track id).
fn best_match(d: &Detections, k: usize, truth: &BBox) -> (f64, f64, Option<u64>) {
    d.frames[k]
        .detections
        .iter()
        .filter(|x| x.label.as_deref() == Some("person"))
        .map(|x| (x.bbox.iou(truth), x.score, x.track))
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .unwrap_or((0.0, 0.0, None))
}

#[test]
fn players_at_12_to_55_percent_of_the_frame_are_found_in_every_sampled_frame() {
    let dir = tempfile::tempdir().unwrap();
    let photos = testdata();
    // 1280×720: heights 396 (55 %), 160 (22 %), 120 (17 %) and 86 (12 %),
    // walking in different directions, gone after 2.9 s.
    let mut players = vec![
        Player::new(&photos, ASTRONAUT, 396, (80.0, 260.0), (40.0, 0.0)),
        Player::new(&photos, CAMERAMAN, 160, (1100.0, 80.0), (-60.0, 10.0)),
        Player::new(&photos, CAMERAMAN, 120, (620.0, 560.0), (50.0, -20.0)),
        Player::new(&photos, ASTRONAUT, 86, (760.0, 300.0), (0.0, 30.0)),
    ];
    for p in &mut players {
        p.to = 2.9;
    }
    let footage = Footage {
        width: 1280,
        height: 720,
        fps: 25,
        seconds: 4.0,
        players,
        boards: vec![],
    };
    let video = dir.path().join("match.mp4");
    make(&footage, &video);
    let (d, printed) = detect(&video, &dir.path().join("d.json"));
    assert_eq!(d.frames.len(), 20, "4 s at 5 frames/s");
    // The audit metadata says what was sampled and what was found.
    for line in [
        "reelay-sample-fps: 5",
        "reelay-frames: 20",
        "reelay-tracks: 4",
    ] {
        assert!(printed.contains(line), "`{line}` missing from:\n{printed}");
    }
    let mut ids: BTreeMap<usize, Vec<Option<u64>>> = BTreeMap::new();
    for (k, f) in d.frames.iter().enumerate() {
        let mut expected = 0;
        for (i, p) in footage.players.iter().enumerate() {
            let Some(truth) = p.box_at(f.t, 1280, 720) else {
                continue;
            };
            expected += 1;
            let (iou, score, id) = best_match(&d, k, &truth);
            eprintln!(
                "t={:.1} player {i} ({} px): IoU {iou:.2}, score {score:.2}, track {id:?}",
                f.t, p.height
            );
            assert!(
                iou >= 0.5 && score >= 0.5,
                "t={}: player {i} ({} px tall) at {truth:?}: best IoU {iou:.2} score {score:.2}; found {:?}",
                f.t,
                p.height,
                f.detections
            );
            ids.entry(i).or_default().push(id);
        }
        if expected == 0 {
            assert!(
                f.detections.is_empty(),
                "t={}: nobody on the pitch, found {:?}",
                f.t,
                f.detections
            );
        }
    }
    // Each player keeps one track id, its own.
    let mut seen = Vec::new();
    for (i, v) in &ids {
        assert_eq!(v.len(), 15, "player {i} was on the pitch for 15 samples");
        let id = v[0].unwrap_or_else(|| panic!("player {i} has no track id"));
        assert!(v.iter().all(|x| *x == Some(id)), "player {i}: ids {v:?}");
        assert!(!seen.contains(&id), "player {i} shares id {id}");
        seen.push(id);
    }
    let tracks = d.tracks.as_ref().expect("a tracks summary");
    assert_eq!(tracks.len(), 4, "{tracks:?}");
    assert!(tracks.iter().all(|t| t.label.as_deref() == Some("person")));
}

/// Mean green level of a 12×12 patch centred at (x, y).
fn patch(px: &[u8], width: u32, x: f64, y: f64) -> f64 {
    let (x0, y0) = (x as usize - 6, y as usize - 6);
    let mut sum = 0.0;
    for yy in y0..y0 + 12 {
        for xx in x0..x0 + 12 {
            sum += f64::from(px[(yy * width as usize + xx) * 3 + 1]);
        }
    }
    sum / 144.0
}

#[test]
fn the_picked_player_keeps_its_id_and_the_spotlight_through_a_board_and_a_crossing() {
    let dir = tempfile::tempdir().unwrap();
    let photos = testdata();
    // 960×540: A (the astronaut, 130 px, 24 %) walks right and passes
    // behind a board at x 200..310 around t = 1.1 s; B (the cameraman,
    // drawn in front) walks left; they cross at t ≈ 2.8 s, where B hides A.
    let a = Player::new(&photos, ASTRONAUT, 130, (60.0, 300.0), (130.0, 0.0));
    let b = Player::new(&photos, CAMERAMAN, 130, (800.0, 306.0), (-130.0, 0.0));
    let footage = Footage {
        width: 960,
        height: 540,
        fps: 25,
        seconds: 5.0,
        players: vec![a.clone(), b.clone()],
        boards: vec![[200, 230, 110, 260]],
    };
    let video = dir.path().join("cross.mp4");
    make(&footage, &video);
    let dets_path = dir.path().join("d.json");
    let (d, _) = detect(&video, &dets_path);
    for f in &d.frames {
        let boxes: Vec<String> = f
            .detections
            .iter()
            .map(|x| {
                format!(
                    "#{:?} {:.0},{:.0} {:.0}x{:.0} {:.2}",
                    x.track, x.bbox.x, x.bbox.y, x.bbox.w, x.bbox.h, x.score
                )
            })
            .collect();
        eprintln!("t={:.1}: {}", f.t, boxes.join(" | "));
    }

    // A's id at the start is A's id after the board and after the crossing.
    let id_at = |t: f64, p: &Player| {
        let k = (t * 5.0).round() as usize;
        let (iou, _, id) = best_match(&d, k, &p.box_at(t, 960, 540).unwrap());
        assert!(
            iou >= 0.5,
            "t={t}: no detection of the player (IoU {iou:.2})"
        );
        id.unwrap_or_else(|| panic!("t={t}: the player's box has no track id"))
    };
    let a_id = id_at(0.2, &a);
    let b_id = id_at(0.2, &b);
    assert_ne!(a_id, b_id);
    for t in [0.6, 2.0, 3.6, 4.0, 4.8] {
        assert_eq!(id_at(t, &a), a_id, "A's id at t={t}");
    }
    for t in [2.0, 3.6] {
        assert_eq!(id_at(t, &b), b_id, "B's id at t={t}");
    }

    // The spotlight, picked on A at 0.2 s, stays on A in the rendered video.
    let config = dir.path().join("reelay.toml");
    std::fs::write(&config, "[output]\ncrf = 12\n").unwrap();
    let (ax, ay) = a.box_at(0.2, 960, 540).unwrap().center();
    let spec = json!({"spotlight": {"track": {"detections": dets_path.to_str().unwrap(),
                                              "pick": {"t": 0.2, "x": ax, "y": ay}},
                                    "dim": 0.3}});
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let out = dir.path().join("spot.mp4");
    let run = reelay()
        .arg("--config")
        .arg(&config)
        .args(["run", "overlay", "--input"])
        .arg(&video)
        .arg("--output")
        .arg(&out)
        .arg("--set")
        .arg(format!("spec=@{}", spec_path.display()))
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    // Between samples too (x.x0 and x.x2 times are interpolated).
    for t in [0.52, 1.1, 2.0, 3.48, 3.6, 4.0, 4.56] {
        let (src, w, _) = frame_rgb(&video, t);
        let (lit, _, _) = frame_rgb(&out, t);
        let (x, y) = a.box_at(t, 960, 540).unwrap().center();
        let (s, l) = (patch(&src, w, x, y), patch(&lit, w, x, y));
        eprintln!("t={t}: A at ({x:.0}, {y:.0}) {s:.1} -> {l:.1}");
        assert!(
            (l - s).abs() <= 0.08 * s + 3.0,
            "t={t}: the picked player at ({x:.0}, {y:.0}) went from {s:.1} to {l:.1}: the spotlight left it"
        );
        if t > 3.4 && t < 4.2 {
            let (x, y) = b.box_at(t, 960, 540).unwrap().center();
            let (s, l) = (patch(&src, w, x, y), patch(&lit, w, x, y));
            eprintln!("t={t}: B at ({x:.0}, {y:.0}) {s:.1} -> {l:.1}");
            assert!(
                (l - 0.3 * s).abs() <= 0.1 * s + 4.0,
                "t={t}: the other player at ({x:.0}, {y:.0}) went from {s:.1} to {l:.1}, expected 0.3 of it"
            );
        }
    }
}
