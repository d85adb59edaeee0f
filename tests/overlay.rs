//! The overlay step on media made here, with real FFmpeg: the spotlight's
//! darkening, tracking a moving box through detections, bad detections and
//! bad specs, and a job whose clip gets a tracked spotlight end to end.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use reelay::detect::{BBox, Detection, Detections, FrameDetections};
use reelay::overlay::spec::OverlaySpec;
use reelay::overlay::{Scene, SceneInputs};
use serde_json::json;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A config that encodes at high quality, so codec error stays small.
fn fine_config(dir: &Path) -> PathBuf {
    let path = dir.join("reelay.toml");
    std::fs::write(&path, "[output]\ncrf = 12\n").unwrap();
    path
}

fn overlay(
    config: &Path,
    input: &Path,
    output: &Path,
    spec: &serde_json::Value,
    extra: &[&Path],
) -> Output {
    let spec_path = output.with_extension("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(spec).unwrap()).unwrap();
    let mut cmd = reelay();
    cmd.arg("--config")
        .arg(config)
        .args(["run", "overlay", "--input"])
        .arg(input);
    for e in extra {
        cmd.arg("--input").arg(e);
    }
    cmd.arg("--output")
        .arg(output)
        .arg("--set")
        .arg(format!("spec=@{}", spec_path.display()))
        .output()
        .unwrap()
}

/// A 320×240 clip of the astronaut photo with a tone.
fn photo_clip(path: &Path, seconds: f64) {
    let status = Command::new(ffmpeg().path())
        .args([
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-loop",
            "1",
            "-framerate",
            "25",
            "-i",
        ])
        .arg(root().join(".tools/testdata/astronaut.png"))
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("sine=frequency=440:duration={seconds}"),
        ])
        .args([
            "-vf",
            "scale=320:240,format=yuv420p",
            "-t",
            &seconds.to_string(),
        ])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "10",
            "-c:a",
            "aac",
            "-shortest",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn the_spotlight_darkens_outside_by_dim_and_keeps_inside() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let clip = dir.path().join("clip.mp4");
    photo_clip(&clip, 2.0);
    let out = dir.path().join("out.mp4");
    let (cx, cy, rx, ry, dim, feather) = (150.0, 110.0, 60.0, 80.0, 0.5, 8.0);
    let spec = json!({"spotlight": {"keyframes": [{"t": 0, "x": cx, "y": cy, "rx": rx, "ry": ry}], "dim": dim, "feather": feather}});
    let o = overlay(&config, &clip, &out, &spec, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = ffmpeg().probe(&out).unwrap();
    assert!(info.audio.is_some(), "the clip's audio is kept");
    assert!((info.duration - 2.0).abs() < 0.1, "{}", info.duration);
    let (a, w, h) = frame_rgb(&clip, 1.0);
    let (b, w2, h2) = frame_rgb(&out, 1.0);
    assert_eq!((w, h), (w2, h2));
    let (mut inside, mut outside) = ((0.0, 0usize), (0.0, 0usize));
    let (mut sum_in, mut sum_out) = (0.0, 0.0);
    for y in 0..h as usize {
        for x in 0..w as usize {
            let r = (((x as f64 - cx) / rx).powi(2) + ((y as f64 - cy) / ry).powi(2)).sqrt();
            for c in 0..3 {
                let i = (y * w as usize + x) * 3 + c;
                let (src, dst) = (f64::from(a[i]), f64::from(b[i]));
                if r < 0.85 {
                    inside.0 += (dst - src).abs();
                    inside.1 += 1;
                } else if r > 1.35 {
                    outside.0 += (dst - dim * src).abs();
                    outside.1 += 1;
                    sum_in += src;
                    sum_out += dst;
                }
            }
        }
    }
    let inside = inside.0 / inside.1 as f64;
    let outside = outside.0 / outside.1 as f64;
    let ratio = sum_out / sum_in;
    eprintln!(
        "mean |out - in| inside {inside:.2}, mean |out - dim*in| outside {outside:.2}, ratio {ratio:.4}"
    );
    assert!(inside <= 2.5, "inside changed by {inside:.2} on average");
    assert!(
        outside <= 2.5,
        "outside is {outside:.2} off dim*in on average"
    );
    assert!(
        (ratio - dim).abs() <= 0.02,
        "outside brightness ratio {ratio:.4}"
    );
}

/// A dark 320×240 clip: a white 40×80 box moving right at 60 px/s from
/// x=20, and a grey one standing at x=250.
fn moving_box_clip(path: &Path, seconds: f64) {
    let status = Command::new(ffmpeg().path())
        .args(["-y", "-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!(
            "color=c=0x303030:s=320x240:r=25:d={seconds}[bg];color=c=white:s=40x80:r=25[fg];[bg][fg]overlay=x='20+60*t':y=80:shortest=1,drawbox=x=250:y=60:w=40:h=80:color=0x808080:t=fill,format=yuv420p"
        ))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-crf", "10"])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn moving_box_detections(seconds: f64) -> Detections {
    let frames = (0..(seconds * 5.0) as usize)
        .map(|k| {
            let t = k as f64 * 0.2;
            let mut detections = vec![Detection {
                bbox: BBox {
                    x: 250.0,
                    y: 60.0,
                    w: 40.0,
                    h: 80.0,
                },
                score: 0.9,
                class: 1,
                label: None,
                track: None,
            }];
            // Missed for 0.6 s in the middle.
            if !(6..9).contains(&k) {
                detections.push(Detection {
                    bbox: BBox {
                        x: 20.0 + 60.0 * t,
                        y: 80.0,
                        w: 40.0,
                        h: 80.0,
                    },
                    score: 0.8,
                    class: 1,
                    label: None,
                    track: None,
                });
            }
            FrameDetections { t, detections }
        })
        .collect();
    Detections {
        frames,
        video: None,
        model: None,
        sample_fps: Some(5.0),
        tracks: None,
    }
}

#[test]
fn a_tracked_spotlight_follows_the_moving_box() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let seconds = 3.0;
    let clip = dir.path().join("boxes.mp4");
    moving_box_clip(&clip, seconds);
    let dets = dir.path().join("d.json");
    std::fs::write(
        &dets,
        serde_json::to_vec(&moving_box_detections(seconds)).unwrap(),
    )
    .unwrap();
    let spec = json!({"spotlight": {"track": {"detections": dets.to_str().unwrap(), "pick": {"t": 0.0, "x": 45, "y": 120}}, "dim": 0.3, "scale": 1.4}});

    // The ellipse's centre stays on the box, through the gap too.
    let parsed = OverlaySpec::from_value(spec.clone()).unwrap();
    let scene = Scene::new(
        &parsed,
        &SceneInputs {
            width: 320,
            height: 240,
            duration: seconds,
            detections: &[("d.json".to_string(), moving_box_detections(seconds))],
            offset: None,
            font: None,
        },
    )
    .unwrap();
    for k in 0..28 {
        let t = k as f64 * 0.1;
        let (e, _, _) = scene.spotlight_at(t).unwrap();
        let truth = (40.0 + 60.0 * t, 120.0);
        assert!(
            (e.cx - truth.0).abs() <= 6.0 && (e.cy - truth.1).abs() <= 1.0,
            "t={t}: spotlight at ({:.1}, {:.1}), box centre {truth:?}",
            e.cx,
            e.cy
        );
    }

    // And in the rendered video: the moving box stays bright, the other dims.
    let out = dir.path().join("out.mp4");
    let o = overlay(&config, &clip, &out, &spec, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for t in [0.4, 1.4, 2.4] {
        let (px, w, _) = frame_rgb(&out, t);
        let at = |x: usize, y: usize| px[(y * w as usize + x) * 3 + 1];
        let bx = (40.0 + 60.0 * t) as usize;
        assert!(
            at(bx, 120) >= 225,
            "t={t}: the tracked box is {} at its centre",
            at(bx, 120)
        );
        let grey = at(270, 100);
        assert!(
            (28..=50).contains(&grey),
            "t={t}: the other box is {grey}, expected about 0.3·128"
        );
    }
}

#[test]
fn detections_that_do_not_match_the_video_are_rejected_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let clip = dir.path().join("boxes.mp4");
    moving_box_clip(&clip, 2.0);
    let spec = |path: &Path| json!({"ring": {"track": {"detections": path.to_str().unwrap(), "pick": {"t": 0.0, "x": 45, "y": 120}}}});

    // Times beyond the clip: detections of a longer video.
    let mut late = moving_box_detections(2.0);
    for f in &mut late.frames {
        f.t += 10.0;
    }
    let late_path = dir.path().join("late.json");
    std::fs::write(&late_path, serde_json::to_vec(&late).unwrap()).unwrap();
    let out = dir.path().join("out.mp4");
    let o = overlay(&config, &clip, &out, &spec(&late_path), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("`frames[0].t`")
            && err.contains("outside the video")
            && err.contains("lasts 2.00 s"),
        "{err}"
    );
    assert!(!out.exists());

    // Boxes outside the frame: detections of a larger video.
    let mut large = moving_box_detections(2.0);
    large.frames[3].detections[0].bbox.x = 600.0;
    let large_path = dir.path().join("large.json");
    std::fs::write(&large_path, serde_json::to_vec(&large).unwrap()).unwrap();
    let o = overlay(&config, &clip, &out, &spec(&large_path), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("`frames[3].detections[0].box`")
            && err.contains("not inside the 320x240 frame"),
        "{err}"
    );

    // Not a detections file at all.
    let bad_path = dir.path().join("bad.json");
    std::fs::write(&bad_path, br#"{"frames": [{"t": 0.0, "detections": [{"box": {"x": "1", "y": 2, "w": 3, "h": 4}, "score": 1, "class": 1}]}]}"#).unwrap();
    let o = overlay(&config, &clip, &out, &spec(&bad_path), &[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("`frames[0].detections[0].box.x`"),
        "{err}"
    );
}

#[test]
fn an_overlay_spec_with_wrong_types_is_rejected_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let clip = dir.path().join("boxes.mp4");
    moving_box_clip(&clip, 1.0);
    let out = dir.path().join("out.mp4");
    for (spec, field) in [
        (
            json!({"spotlight": {"keyframes": [{"t": 0, "x": "160", "y": 120, "rx": 50, "ry": 60}]}}),
            "spotlight.keyframes[0].x",
        ),
        (
            json!({"spotlight": {"keyframes": [{"t": 0, "x": 160, "y": 120, "rx": 50, "ry": 60}], "dim": "half"}}),
            "spotlight.dim",
        ),
        (
            json!({"text": [{"text": "#10", "x": 40, "y": 40, "size": [48]}]}),
            "text[0].size",
        ),
        (
            json!({"boxes": [{"keyframes": [{"t": 0, "x": 1, "y": 1, "w": 10, "h": 10}], "colour": "red"}]}),
            "boxes[0].colour",
        ),
    ] {
        let o = overlay(&config, &clip, &out, &spec, &[]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{spec}");
        assert!(err.contains(&format!("spec.{field}")), "{field}: {err}");
        assert!(!out.exists());
    }
}

#[test]
fn text_boxes_and_a_ring_render_where_they_are_asked() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let clip = dir.path().join("boxes.mp4");
    moving_box_clip(&clip, 1.0);
    let out = dir.path().join("out.mp4");
    let spec = json!({
        "ring": {"keyframes": [{"t": 0, "x": 160, "y": 200, "rx": 40, "ry": 12}], "color": "#ff0000", "thickness": 4},
        "boxes": [{"keyframes": [{"t": 0, "x": 100, "y": 20, "w": 60, "h": 30}], "color": "#00ff00", "thickness": 4}],
        "text": [{"text": "#10", "x": 10, "y": 150, "size": 40}]
    });
    let o = overlay(&config, &clip, &out, &spec, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let (px, w, _) = frame_rgb(&out, 0.5);
    let at = |x: usize, y: usize| {
        let i = (y * w as usize + x) * 3;
        (px[i], px[i + 1], px[i + 2])
    };
    let (r, g, b) = at(200, 200); // the ring's right end
    assert!(r > 180 && g < 90 && b < 90, "ring pixel {:?}", (r, g, b));
    let (r, g, b) = at(130, 20); // the box's top edge
    assert!(g > 180 && r < 90 && b < 90, "box pixel {:?}", (r, g, b));
    assert!(at(130, 35).1 < 70, "inside the box stays background");
    // Some text pixels are white, in the label's area only.
    let mut white = 0;
    for y in 150..200 {
        for x in 10..90 {
            if at(x, y).0 > 200 {
                white += 1;
            }
        }
    }
    assert!(white > 100, "{white} white pixels in the label");
}

#[test]
fn a_job_clip_gets_a_tracked_spotlight_after_detect_on_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    std::fs::create_dir_all(root.join("sources")).unwrap();
    // The astronaut panning left at 64 px/s, 4 s.
    let status = Command::new(ffmpeg().path())
        .args([
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-loop",
            "1",
            "-framerate",
            "25",
            "-i",
        ])
        .arg(reelay_root().join(".tools/testdata/astronaut.png"))
        .args([
            "-vf",
            "pad=1024:512:256:0:color=gray,crop=640:512:x='t*64':y=0,format=yuv420p",
            "-t",
            "4",
        ])
        .args(["-c:v", "libx264", "-preset", "ultrafast"])
        .arg(root.join("sources/pan.mp4"))
        .status()
        .unwrap();
    assert!(status.success());
    write_job(
        &root,
        "jobs/spot.json",
        &json!({"version": 1, "source": "sources/pan.mp4", "output": "exports/spot.mp4",
                "clips": [{"start": 0.5, "end": 2.5, "overlay": {
                              "spotlight": {"track": {"pick": {"t": 0.2, "x": 400, "y": 270}}, "dim": 0.4},
                              "text": [{"text": "#10", "x": 20, "y": 20}]}},
                          {"start": 2.5, "end": 3.5}]}),
    );
    dev_until_idle(&root, None);
    assert!(root.join("exports/spot.mp4").is_file());
    let d = Detections::parse(
        "d",
        &std::fs::read(root.join("detections/pan.mp4.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(d.frames.len(), 20);
    let audit = reelay()
        .args(["audit", "--root"])
        .arg(&root)
        .arg("exports/spot.mp4")
        .output()
        .unwrap();
    let tree = String::from_utf8(audit.stdout).unwrap();
    assert!(tree.contains("[overlay overlay-0]"), "{tree}");
    assert!(
        tree.contains("[detect detect]") || tree.contains("[detect "),
        "{tree}"
    );
    assert!((duration(&root.join("exports/spot.mp4")) - 3.0).abs() < 0.1);
    // The spotlight sits on the astronaut: at export time 1.0 (source 1.5)
    // her face is as in the source, and the grey canvas far left of her is
    // dimmed to 0.4.
    let (src, w, _) = frame_rgb(&root.join("sources/pan.mp4"), 1.5);
    let (exp, w2, _) = frame_rgb(&root.join("exports/spot.mp4"), 1.0);
    assert_eq!(w, w2);
    let patch = |px: &[u8], x0: usize, y0: usize| {
        let mut sum = 0.0;
        for y in y0..y0 + 10 {
            for x in x0..x0 + 10 {
                sum += f64::from(px[(y * w as usize + x) * 3 + 1]);
            }
        }
        sum / 100.0
    };
    let (face_src, face_exp) = (patch(&src, 380, 125), patch(&exp, 380, 125));
    assert!(
        (face_src - face_exp).abs() < 8.0,
        "face {face_src:.1} -> {face_exp:.1}"
    );
    let (grey_src, grey_exp) = (patch(&src, 15, 400), patch(&exp, 15, 400));
    assert!(
        (grey_exp / grey_src - 0.4).abs() < 0.05,
        "canvas {grey_src:.1} -> {grey_exp:.1}"
    );
}

/// Every frame of `path` as raw yuv420p.
fn decode_yuv(path: &Path) -> Vec<u8> {
    let out = Command::new(ffmpeg().path())
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    out.stdout
}

/// The overlay is drawn inside FFmpeg's graph from masks; the Rust
/// compositor (`Scene::draw`, which the framed clips use) is the
/// reference. On a lossless encode both must agree on every plane, for
/// every kind of layer, moving, with a text shown only in its window.
#[test]
fn the_graph_draws_every_layer_as_the_rust_compositor_does() {
    // An MP4's header shows its constant rate, so the graph takes its frames
    // as they come; an MKV is probed by FFmpeg and goes through `fps`.
    for container in ["mp4", "mkv"] {
        draws_every_layer_as_the_rust_compositor_does(container);
    }
}

fn draws_every_layer_as_the_rust_compositor_does(container: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reelay.toml");
    std::fs::write(&config, "[output]\ncrf = 0\n").unwrap();
    let clip = dir.path().join(format!("clip.{container}"));
    let status = Command::new(ffmpeg().path())
        .args([
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("testsrc2=s=320x240:r=25:d=1.2")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-qp",
            "0",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    let spec = json!({
        "spotlight": {"keyframes": [{"t": 0, "x": 20, "y": 60, "rx": 40, "ry": 50},
                                    {"t": 1.2, "x": 290, "y": 150, "rx": 60, "ry": 35}], "dim": 0.35},
        "ring": {"keyframes": [{"t": 0, "x": 160, "y": 200, "rx": 40, "ry": 12},
                               {"t": 1.2, "x": 120, "y": 180, "rx": 50, "ry": 14}], "color": "#ff0000", "thickness": 4},
        "boxes": [{"keyframes": [{"t": 0, "x": 100.5, "y": 20, "w": 60, "h": 30},
                                 {"t": 1.2, "x": 250, "y": 200, "w": 80, "h": 50}], "color": "#00ff00", "thickness": 3}],
        "text": [{"text": "#10 it's [a],b;c:", "x": 11, "y": 151, "size": 30, "start": 0.4, "end": 0.9}]
    });
    let out = dir.path().join("out.mp4");
    let o = overlay(&config, &clip, &out, &spec, &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let inputs = |font| SceneInputs {
        width: 320,
        height: 240,
        duration: 1.2,
        detections: &[],
        offset: None,
        font,
    };
    let scene = Scene::new(
        &OverlaySpec::from_value(spec.clone()).unwrap(),
        &inputs(Some(common::media::font())),
    )
    .unwrap();
    let (src, got) = (decode_yuv(&clip), decode_yuv(&out));
    let n = 320 * 240 * 3 / 2;
    assert_eq!(src.len(), 30 * n, "30 source frames");
    assert_eq!(got.len(), src.len(), "as many frames out as in");
    for k in [0usize, 5, 12, 20, 29] {
        let mut want = src[k * n..(k + 1) * n].to_vec();
        scene.draw(&mut want, k as f64 / 25.0);
        let have = &got[k * n..(k + 1) * n];
        for (plane, range) in [("Y", 0..320 * 240), ("Cb Cr", 320 * 240..n)] {
            let diffs: Vec<u8> = range.map(|i| want[i].abs_diff(have[i])).collect();
            let mean = diffs.iter().map(|&d| f64::from(d)).sum::<f64>() / diffs.len() as f64;
            let off = diffs.iter().filter(|&&d| d > 3).count();
            eprintln!(
                "{container} frame {k} {plane}: mean |diff| {mean:.3}, {off} samples off by more than 3"
            );
            let (most, share) = if plane == "Y" { (0.1, 500) } else { (0.5, 100) };
            assert!(
                mean < most,
                "{container} frame {k} {plane}: mean |diff| {mean:.3}"
            );
            // Chroma differs along thin edges only: the Rust compositor
            // rounds each element's chroma on its own, FFmpeg averages the
            // mask over each 2×2 block.
            assert!(
                off * share < diffs.len(),
                "{container} frame {k} {plane}: {off} samples off by more than 3"
            );
        }
    }
    // The text is drawn in its window only: against the same scene with
    // no text, frame 12 (0.48 s) differs in the label, frame 5 (0.2 s) not.
    let mut bare = OverlaySpec::from_value(spec).unwrap();
    bare.text.clear();
    let bare = Scene::new(&bare, &inputs(None)).unwrap();
    let text_pixels = |k: usize| {
        let mut want = src[k * n..(k + 1) * n].to_vec();
        bare.draw(&mut want, k as f64 / 25.0);
        (151..181)
            .flat_map(|y| (11..120).map(move |x| y * 320 + x))
            .filter(|&i| want[i].abs_diff(got[k * n + i]) > 40)
            .count()
    };
    assert!(
        text_pixels(12) > 100,
        "the text is drawn at 0.48 s ({} pixels)",
        text_pixels(12)
    );
    assert_eq!(text_pixels(5), 0, "no text before its start");
}

/// The spotlight's dimming is defined as FFmpeg's `eq` computes it
/// (`reelay::overlay::dim`): on every 8-bit value, in every plane and for
/// several factors, FFmpeg's output and the Rust map agree exactly, so the
/// graph and the compositor dim alike.
#[test]
fn ffmpeg_eq_and_the_rust_dim_map_agree_on_every_sample() {
    use reelay::overlay::dim::DimMap;
    let (w, h) = (512usize, 4usize);
    // Every value twice per luma row (wide enough for eq's SIMD and its tail),
    // every value once per chroma row.
    let mut frame: Vec<u8> = (0..w * h).map(|i| ((i % w) / 2) as u8).collect();
    let chroma: Vec<u8> = (0..(w / 2) * (h / 2))
        .map(|i| (i % (w / 2)) as u8)
        .collect();
    frame.extend(&chroma);
    frame.extend(&chroma);
    for dim in [0.0, 0.2, 0.35, 0.45, 0.8, 1.0] {
        let map = DimMap::new(dim);
        let mut child = Command::new(ffmpeg().path())
            .args([
                "-hide_banner",
                "-loglevel",
                "error",
                "-f",
                "rawvideo",
                "-pix_fmt",
                "yuv420p",
                "-s",
            ])
            .arg(format!("{w}x{h}"))
            .args(["-i", "-", "-vf"])
            .arg(map.eq_filter())
            .args(["-f", "rawvideo", "-pix_fmt", "yuv420p", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = frame.clone();
        let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
        let out = child.wait_with_output().unwrap();
        writer.join().unwrap().unwrap();
        assert!(out.status.success(), "eq failed for dim {dim}");
        assert_eq!(out.stdout.len(), frame.len());
        for (i, (&v, &got)) in frame.iter().zip(&out.stdout).enumerate() {
            let want = if i < w * h {
                map.luma(v)
            } else {
                map.chroma(v)
            };
            assert_eq!(
                got, want,
                "dim {dim}: sample {i} (value {v}): FFmpeg {got}, Rust {want}"
            );
        }
    }
}

/// A long clip with moving layers: each position is a tree of `if`s over
/// 1000 frames, a graph too long for one argument, so it goes to FFmpeg in
/// a file (`-/filter_complex`); the spotlight is still where it should be
/// at the end.
#[test]
fn a_long_moving_overlay_goes_through_a_graph_file_and_stays_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let config = fine_config(dir.path());
    let clip = dir.path().join("grey.mp4");
    let status = Command::new(ffmpeg().path())
        .args([
            "-y",
            "-hide_banner",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
        ])
        .arg("color=c=0xb0b0b0:s=160x120:r=25:d=40")
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "10",
            "-pix_fmt",
            "yuv420p",
        ])
        .arg(&clip)
        .status()
        .unwrap();
    assert!(status.success());
    // The spotlight darts between (30, 40) and (130, 80) every 0.2 s for
    // 40 s: a new place at every one of 1000 frames.
    let x_of = |k: usize| if k % 2 == 1 { 130.0 } else { 30.0 };
    let y_of = |k: usize| if k % 2 == 1 { 80 } else { 40 };
    let keys: Vec<_> = (0..=200)
        .map(|k| json!({"t": k as f64 * 0.2, "x": x_of(k), "y": y_of(k), "rx": 14, "ry": 20}))
        .collect();
    let spec = json!({
        "spotlight": {"keyframes": keys, "dim": 0.3, "feather": 3},
        "ring": {"keyframes": [{"t": 0, "x": 20, "y": 100, "rx": 12, "ry": 4},
                               {"t": 40, "x": 140, "y": 90, "rx": 12, "ry": 4}], "color": "#ff0000"}
    });
    let out = dir.path().join("out.mp4");
    let spec_path = dir.path().join("spec.json");
    std::fs::write(&spec_path, serde_json::to_vec(&spec).unwrap()).unwrap();
    let o = reelay()
        .env("RUST_LOG", "reelay=debug")
        .env("NO_COLOR", "1")
        .arg("--config")
        .arg(&config)
        .args(["run", "overlay", "--input"])
        .arg(&clip)
        .arg("--output")
        .arg(&out)
        .arg("--set")
        .arg(format!("spec=@{}", spec_path.display()))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{log}");
    assert!(
        log.contains("\"-/filter_complex\""),
        "the graph went inline: {log:.2000}"
    );
    for k in [5usize, 100, 191] {
        let t = k as f64 * 0.2;
        let (px, w, _) = frame_rgb(&out, t);
        let g = |x: f64, y: usize| f64::from(px[(y * w as usize + x as usize) * 3 + 1]);
        let lit = g(x_of(k), y_of(k));
        let far = g(x_of(k + 1), y_of(k + 1));
        assert!(
            (lit - 176.0).abs() < 6.0,
            "t={t}: the spotlight's centre is {lit}"
        );
        assert!((far - 0.3 * 176.0).abs() < 6.0, "t={t}: far from it {far}");
    }
}

fn reelay_root() -> PathBuf {
    root()
}
