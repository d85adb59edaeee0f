//! Detection on real models with real ONNX Runtime, on the CPU.
//!
//! - The SSD person model (models/ssdlite-person.onnx) on scikit-image's
//!   public-domain photos, against boxes checked by hand.
//! - YOLO decoding and NMS on the real YOLOv8n export inside the PyPI
//!   `nudenet` wheel (AGPL-3.0: fetched into .cache/yolo when the tests run
//!   by tests/yolo/fetch.sh, never committed), against an independent
//!   numpy + onnxruntime reference (tests/yolo/reference.py).
//! - `reelay run detect` on a panning video made here from a photo.
//!
//! Needs `make setup` (ONNX Runtime, FFmpeg, the photos) and python3 with
//! pip and network access to PyPI for the YOLO test.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use image::RgbImage;
use reelay::detect::{BBox, Detection, Detections, Detector, DetectorConfig};
use reelay::inference::{self, Device, Frame, LoadOptions};
use reelay::models::Manifest;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn runtime() {
    if let Err(e) = inference::runtime() {
        panic!("ONNX Runtime is needed for these tests: {e}\n=> run `bash models/setup-ort.sh`");
    }
}

fn photo(name: &str) -> RgbImage {
    let path = root().join(".tools/testdata").join(name);
    match image::open(&path) {
        Ok(img) => img.to_rgb8(),
        Err(e) => panic!(
            "test photo {} unavailable ({e})\n=> run `make setup`",
            path.display()
        ),
    }
}

fn frame(img: &RgbImage) -> Frame {
    Frame::new(img.width(), img.height(), img.as_raw().clone()).unwrap()
}

fn cpu(model: &str) -> DetectorConfig {
    DetectorConfig {
        load: LoadOptions {
            device: Device::Cpu,
            intra_threads: Some(2),
            ..LoadOptions::default()
        },
        ..DetectorConfig::new(model)
    }
}

// Hand-checked person boxes (x1, y1, x2, y2), read off the 512×512 photos
// in an image viewer:
// - astronaut.png: from the left edge of her left sleeve (x≈18) to the
//   right shoulder of the suit (x≈362), from the top of her hair (y≈14) to
//   the bottom of the photo (y=512), where the suit is cut off.
// - camera.png: the cameraman from the photo's left edge (his coat, x=0) to
//   his right hand on the camera (x≈332), from the top of his hair (y≈64) to
//   the bottom of the photo (y=512), where the coat is cut off.
const ASTRONAUT_PERSON: (f64, f64, f64, f64) = (18.0, 14.0, 362.0, 512.0);
const CAMERA_PERSON: (f64, f64, f64, f64) = (0.0, 64.0, 332.0, 512.0);

#[test]
fn ssd_finds_exactly_one_person_in_each_photo_where_it_is() {
    runtime();
    let manifest = Manifest::load(&root().join("models")).unwrap();
    let detector = Detector::new(
        &manifest,
        &DetectorConfig {
            threshold: 0.3,
            ..cpu("ssdlite-person")
        },
    )
    .unwrap();
    assert_eq!(detector.format().name(), "tf-ssd");
    for (name, (x1, y1, x2, y2)) in [
        ("astronaut.png", ASTRONAUT_PERSON),
        ("camera.png", CAMERA_PERSON),
    ] {
        let found = detector.detect(&frame(&photo(name))).unwrap();
        let strong: Vec<&Detection> = found.iter().filter(|d| d.score >= 0.8).collect();
        assert_eq!(strong.len(), 1, "{name}: {found:?}");
        let d = strong[0];
        assert_eq!(d.class, 1, "{name}: class 1 is person");
        let hand = BBox::from_corners(x1, y1, x2, y2);
        let iou = d.bbox.iou(&hand);
        eprintln!(
            "{name}: {:?} score {:.3}, IoU with the hand-checked box {iou:.3}",
            d.bbox, d.score
        );
        assert!(
            iou >= 0.5,
            "{name}: IoU {iou:.3} of {:?} with {hand:?}",
            d.bbox
        );
    }
}

#[test]
fn ssd_boxes_are_in_source_pixels_whatever_size_the_frame_is_handed_over_at() {
    runtime();
    let manifest = Manifest::load(&root().join("models")).unwrap();
    let detector = Detector::new(&manifest, &cpu("ssdlite-person")).unwrap();
    let img = photo("astronaut.png");
    let full = detector.detect(&frame(&img)).unwrap();
    let half = image::imageops::resize(&img, 256, 256, image::imageops::FilterType::Triangle);
    let scaled = detector.detect_scaled(&frame(&half), (512, 512)).unwrap();
    assert_eq!(full.len(), 1);
    assert_eq!(scaled.len(), 1);
    let iou = full[0].bbox.iou(&scaled[0].bbox);
    assert!(iou > 0.9, "{:?} vs {:?}", full[0].bbox, scaled[0].bbox);
}

/// The nudenet YOLOv8n export and the reference python, fetched on demand.
fn yolo_fixture() -> (PathBuf, PathBuf) {
    let out = Command::new("bash")
        .arg(root().join("tests/yolo/fetch.sh"))
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "tests/yolo/fetch.sh failed (it needs python3 with pip and PyPI): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    (
        PathBuf::from(lines.next().unwrap()),
        PathBuf::from(lines.next().unwrap()),
    )
}

/// A models folder holding only the YOLO model, its sha256 pinned.
fn yolo_manifest(dir: &Path, model: &Path) -> Manifest {
    std::os::unix::fs::symlink(model, dir.join("yolov8n-nudenet.onnx")).unwrap();
    std::fs::write(
        dir.join("manifest.toml"),
        r#"[[model]]
name = "yolov8n-nudenet"
file = "yolov8n-nudenet.onnx"
sha256 = "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f"
licence = "AGPL-3.0"
provenance = "test only: PyPI nudenet==3.4.2 nudenet/320n.onnx, fetched by tests/yolo/fetch.sh"
task = "detect"
inputs = ["images"]
outputs = ["output0"]
"#,
    )
    .unwrap();
    Manifest::load(dir).unwrap()
}

fn reference(python: &Path, model: &Path, img: &RgbImage, conf: f32, iou: f32) -> Vec<[f64; 6]> {
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("img.rgb");
    std::fs::write(&raw, img.as_raw()).unwrap();
    let out = Command::new(python)
        .arg(root().join("tests/yolo/reference.py"))
        .arg(model)
        .arg(&raw)
        .args([
            img.width().to_string(),
            img.height().to_string(),
            "320".into(),
            conf.to_string(),
            iou.to_string(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn yolo_decode_and_nms_equal_an_independent_reference() {
    runtime();
    let (model, python) = yolo_fixture();
    let dir = tempfile::tempdir().unwrap();
    let manifest = yolo_manifest(dir.path(), &model);
    let iou = 0.45f32;
    let mut total = 0;
    // 0.25 is Ultralytics' default; 0.05 lets many overlapping candidates of
    // several classes through to NMS.
    for conf in [0.25f32, 0.05] {
        let pad_only_at_low_threshold = conf < 0.1;
        let detector = Detector::new(
            &manifest,
            &DetectorConfig {
                threshold: conf,
                iou,
                imgsz: Some(320),
                ..cpu("yolov8n-nudenet")
            },
        )
        .unwrap();
        assert_eq!(detector.format().name(), "yolo");
        let astronaut = photo("astronaut.png");
        let cases = [
            // Already 320 wide: letterbox pads only, so both sides see the same
            // input bytes and must agree to float precision.
            (
                "astronaut crop 320x240",
                image::imageops::crop_imm(&astronaut, 100, 20, 320, 240).to_image(),
                0.05,
                1e-4,
            ),
            // Resized to 320x320 by each side's own bilinear resize: equal up
            // to a rounding step in a few pixels.
            ("astronaut 512x512", astronaut.clone(), 0.5, 2e-3),
            ("camera 512x512", photo("camera.png"), 0.5, 2e-3),
            (
                "astronaut 512x384 (pads and resizes)",
                image::imageops::crop_imm(&astronaut, 0, 60, 512, 384).to_image(),
                0.5,
                2e-3,
            ),
        ];
        for (name, img, px_tol, score_tol) in cases {
            if pad_only_at_low_threshold && px_tol > 0.1 {
                // Low scores move with a rounding step of the resize; compare the
                // low threshold where both sides see identical input bytes.
                continue;
            }
            let ours = detector.detect(&frame(&img)).unwrap();
            let theirs = reference(&python, &model, &img, conf, iou);
            eprintln!(
                "{name} at {conf}: {} detections, reference {}",
                ours.len(),
                theirs.len()
            );
            assert_eq!(
                ours.len(),
                theirs.len(),
                "{name}: ours {ours:?}\nreference {theirs:?}"
            );
            for r in &theirs {
                let rb = BBox {
                    x: r[0],
                    y: r[1],
                    w: r[2],
                    h: r[3],
                };
                let m = ours
                    .iter()
                    .find(|d| {
                        d.class == r[5] as u32
                            && (d.bbox.x - rb.x).abs() <= px_tol
                            && (d.bbox.y - rb.y).abs() <= px_tol
                            && (d.bbox.w - rb.w).abs() <= px_tol
                            && (d.bbox.h - rb.h).abs() <= px_tol
                    })
                    .unwrap_or_else(|| panic!("{name}: reference {r:?} has no match in {ours:?}"));
                assert!(
                    (m.score - r[4]).abs() <= score_tol,
                    "{name}: score {} vs {}",
                    m.score,
                    r[4]
                );
            }
            total += theirs.len();
        }
    }
    assert!(
        total >= 5,
        "the photos should give some detections ({total})"
    );

    // The video path: FFmpeg scales to the letterbox's inner size and reelay
    // only pads; the boxes come back in source pixels, on every sample.
    let video = dir.path().join("pan.mp4");
    panning_video(&video, 2.0, 64.0);
    let info = ffmpeg().probe(&video).unwrap();
    let detector = Detector::new(
        &manifest,
        &DetectorConfig {
            threshold: 0.25,
            imgsz: Some(320),
            ..cpu("yolov8n-nudenet")
        },
    )
    .unwrap();
    assert_eq!(detector.working_size(640, 512), (320, 256));
    let (d, stats) = reelay::detect::video::detect_video(
        &ffmpeg(),
        &detector,
        &video,
        &info,
        reelay::detect::video::SampleRate::Fps(5.0),
        &mut |_| {},
        &tokio_util::sync::CancellationToken::new(),
    )
    .unwrap();
    assert_eq!(stats.frames, 10);
    d.check_against("yolo", 640, 512, info.duration).unwrap();
    // The face the photo test found is found on the video too, moving left.
    let faces: Vec<(f64, f64)> = d
        .frames
        .iter()
        .filter_map(|f| {
            f.detections
                .iter()
                .find(|x| x.class == 1)
                .map(|x| (f.t, x.bbox.center().0))
        })
        .collect();
    assert!(faces.len() >= 8, "{:?}", d.frames);
    let (t0, x0) = faces[0];
    for (t, x) in &faces {
        assert!(
            (x - (x0 - 64.0 * (t - t0))).abs() <= 16.0,
            "t={t}: face x {x:.1}"
        );
    }
}

#[test]
fn a_model_that_fails_its_sha256_check_is_not_loaded() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        root().join("models/ssdlite-person.onnx"),
        dir.path().join("ssdlite-person.onnx"),
    )
    .unwrap();
    let text = std::fs::read_to_string(root().join("models/manifest.toml")).unwrap();
    let text = text.replace(
        "208edbfa665e271add12350a9db2d6a2bc2103a0f4350b5e10c83cb9f43b6cad",
        "0000000000000000000000000000000000000000000000000000000000000000",
    );
    std::fs::write(dir.path().join("manifest.toml"), text).unwrap();
    let manifest = Manifest::load(dir.path()).unwrap();
    let e = Detector::new(&manifest, &cpu("ssdlite-person"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("sha256") && e.contains("ssdlite-person.onnx"),
        "{e}"
    );
}

/// A video panning across a photo: the astronaut on a grey canvas, seen
/// through a 640×512 window moving right at `speed` px/s (so she moves left).
fn panning_video(path: &Path, seconds: f64, speed: f64) {
    let photo = root().join(".tools/testdata/astronaut.png");
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
        .arg(&photo)
        .args([
            "-vf",
            &format!("pad=1024:512:256:0:color=gray,crop=640:512:x='t*{speed}':y=0,format=yuv420p"),
            "-t",
            &seconds.to_string(),
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-crf",
            "18",
        ])
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn detections_move_with_a_pan() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("pan.mp4");
    let speed = 64.0;
    panning_video(&video, 4.0, speed);
    let out = dir.path().join("d.json");
    let run = reelay()
        .args(["run", "detect", "--input"])
        .arg(&video)
        .arg("--output")
        .arg(&out)
        // A person filling the frame is the SSD model's case; NanoDet-g's
        // box on it jumps between head-to-waist and shoulders-to-feet.
        .args(["--set", "fps=5", "--set", "threshold=0.5"])
        .args(["--set", "model=ssdlite-person"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let d = Detections::parse("d.json", &std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        d.video.as_ref().map(|v| (v.width, v.height)),
        Some((640, 512))
    );
    assert_eq!(d.frames.len(), 20, "4 s at 5 frames/s");
    assert!((d.frames[1].t - 0.2).abs() < 1e-9);
    d.check_against("d.json", 640, 512, 4.0).unwrap();
    // The person's centre moves left at the pan's speed.
    let first = d.frames[0]
        .detections
        .iter()
        .filter(|d| d.label.as_deref() == Some("person"))
        .max_by(|a, b| a.score.total_cmp(&b.score))
        .unwrap();
    let (x0, y0) = first.bbox.center();
    let mut seen = 0;
    for f in &d.frames {
        let persons: Vec<&Detection> = f
            .detections
            .iter()
            .filter(|d| d.label.as_deref() == Some("person"))
            .collect();
        assert_eq!(persons.len(), 1, "t={}: {:?}", f.t, f.detections);
        let (x, y) = persons[0].bbox.center();
        let expected = x0 - speed * f.t;
        assert!(
            (x - expected).abs() <= 16.0,
            "t={}: centre x {x:.1}, expected {expected:.1}",
            f.t
        );
        assert!(
            (y - y0).abs() <= 16.0,
            "t={}: centre y {y:.1} vs {y0:.1}",
            f.t
        );
        seen += 1;
    }
    assert_eq!(seen, 20);
}

#[test]
fn detect_names_bad_input_and_unknown_models() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk.mp4");
    std::fs::write(&junk, b"not a video").unwrap();
    let out = dir.path().join("d.json");
    let run = reelay()
        .args(["run", "detect", "--input"])
        .arg(&junk)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(err.contains("not a readable media file"), "{err}");

    let video = dir.path().join("v.mp4");
    make_video(&video, 1.0, "160x120", 10, false);
    let run = reelay()
        .args(["run", "detect", "--input"])
        .arg(&video)
        .arg("--output")
        .arg(&out)
        .args(["--set", "model=nope"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("unknown model `nope`"),
        "{err}"
    );
    let run = reelay()
        .args(["run", "detect", "--input"])
        .arg(&video)
        .arg("--output")
        .arg(&out)
        .args(["--set", "fps=fast"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(
        !run.status.success() && err.contains("fps") && err.contains("not a sample rate"),
        "{err}"
    );
    assert!(!out.exists());
}
