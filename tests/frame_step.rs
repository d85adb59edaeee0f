//! The `frame` step on real FFmpeg, real ONNX Runtime and the real models,
//! on media made here. Inputs are small crops (the models cost 1.2–2.4
//! MFLOP per input pixel) and short clips, so the file runs in about a
//! minute on two CPU cores.
//!
//! Needs `make setup` (FFmpeg, ONNX Runtime, the test photos).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use image::{RgbImage, imageops};
use reelay::adapters::local_store::LocalStore;
use reelay::audit::AuditRecord;
use reelay::inference::{self, Device, Frame, LoadOptions, Upscaler, UpscalerConfig};
use reelay::media::{EncodeProfile, Ffmpeg, path_arg};
use reelay::models::Manifest;
use reelay::ports::store::ObjectStore;
use reelay::tasks::frame::{self, FrameParams, FrameRun};
use reelay::tasks::{ErrorClass, StepOutput, TaskError};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const GENERAL: &str = "realesr-general-x4v3";
const ANIME: &str = "realesr-animevideov3";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn ff() -> Ffmpeg {
    common::ffmpeg()
}

fn runtime() {
    if let Err(e) = inference::runtime() {
        panic!("ONNX Runtime is needed for these tests: {e}\n=> run `bash models/setup-ort.sh`");
    }
}

fn photo(name: &str) -> RgbImage {
    let path = root().join(".tools/testdata").join(name);
    image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "test photo {} unavailable ({e}) => run `make setup`",
                path.display()
            )
        })
        .to_rgb8()
}

/// H.264 RGB with qp 0: what goes in comes out, so comparisons see the
/// model and the pipeline, not the encoder.
fn lossless() -> EncodeProfile {
    EncodeProfile {
        video_codec: "libx264rgb".into(),
        pix_fmt: "rgb24".into(),
        crf: 0,
        preset: "ultrafast".into(),
        ..EncodeProfile::default()
    }
}

fn params(v: serde_json::Value) -> FrameParams {
    serde_json::from_value(v).expect("test params parse")
}

/// Runs the step on the CPU.
fn frame_cpu(
    input: &Path,
    output: &Path,
    p: &FrameParams,
    profile: &EncodeProfile,
) -> Result<(StepOutput, FrameRun), TaskError> {
    frame::run_detailed(
        &ff(),
        &[input.to_path_buf()],
        output,
        p,
        profile,
        Device::Cpu,
        &mut |_| {},
        &CancellationToken::new(),
    )
}

/// Writes RGB frames as a video: lossless H.264 RGB, or the usual yuv420p;
/// with a tone when `audio`.
fn write_video(
    path: &Path,
    w: u32,
    h: u32,
    fps: u32,
    frames: &[Vec<u8>],
    lossless: bool,
    audio: bool,
) {
    let dir = path.parent().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    let raw = path.with_extension("rgb");
    std::fs::write(&raw, frames.concat()).unwrap();
    let mut args: Vec<std::ffi::OsString> = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size"]
        .map(Into::into)
        .to_vec();
    args.push(format!("{w}x{h}").into());
    args.extend([
        "-framerate".into(),
        fps.to_string().into(),
        "-i".into(),
        path_arg(&raw),
    ]);
    let seconds = frames.len() as f64 / f64::from(fps);
    if audio {
        args.extend(["-f", "lavfi", "-i"].map(Into::into));
        args.push(format!("sine=f=440:d={seconds}").into());
        args.extend(["-c:a", "aac"].map(Into::into));
    }
    if lossless {
        args.extend(["-c:v", "libx264rgb", "-qp", "0", "-pix_fmt", "rgb24"].map(Into::into));
    } else {
        args.extend(
            [
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-pix_fmt",
                "yuv420p",
            ]
            .map(Into::into),
        );
    }
    args.extend(["-f".into(), "mp4".into(), path_arg(path)]);
    ff().run(&args, None, &mut |_| {}, &CancellationToken::new())
        .expect("making a test video");
    std::fs::remove_file(raw).unwrap();
}

fn decode_all(path: &Path) -> (u32, u32, Vec<Vec<u8>>) {
    common::decode_all(path)
}

fn psnr(a: &[u8], b: &[u8]) -> f64 {
    common::psnr(a, b)
}

/// (max, share of values that differ).
fn diff(a: &[u8], b: &[u8]) -> (u8, f64) {
    assert_eq!(a.len(), b.len());
    let max = a
        .iter()
        .zip(b)
        .map(|(x, y)| x.abs_diff(*y))
        .max()
        .unwrap_or(0);
    let share = a.iter().zip(b).filter(|(x, y)| x != y).count() as f64 / a.len() as f64;
    (max, share)
}

/// ×`f` box (area) downscale.
fn area_downscale(img: &RgbImage, f: u32) -> RgbImage {
    RgbImage::from_fn(img.width() / f, img.height() / f, |x, y| {
        let mut sum = [0u32; 3];
        for dy in 0..f {
            for dx in 0..f {
                let p = img.get_pixel(x * f + dx, y * f + dy);
                for c in 0..3 {
                    sum[c] += u32::from(p[c]);
                }
            }
        }
        let n = f * f;
        image::Rgb(sum.map(|s| ((s + n / 2) / n) as u8))
    })
}

fn duration(path: &Path) -> f64 {
    ff().probe(path).unwrap().duration
}

/// The output has the input's frame count, frame rate, duration and audio,
/// at the asked size, with the default (yuv420p) profile; the audit
/// metadata says what ran where.
#[test]
fn output_has_the_inputs_frames_rate_and_duration_at_the_asked_size() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    let synth = common::media::Synth {
        seconds: 1.5,
        fps: 12,
        audio: Some((48000, 2)),
        ..Default::default()
    };
    common::media::make_video(&ff(), &input, &synth);
    let frames_in = ff().count_frames(&input).unwrap();
    assert_eq!(frames_in, 18);

    // 64x36 ×4 = 256x144, resized to 320x180 (same shape): the resize path.
    let output = dir.path().join("framed.mp4");
    let p = params(
        json!({"crop": {"x": 100, "y": 60, "w": 64, "h": 36}, "model": ANIME, "size": "320x180"}),
    );
    let (out, run) = frame_cpu(&input, &output, &p, &EncodeProfile::default()).unwrap();
    assert_eq!(run.frames, 18);
    assert_eq!(
        ff().count_frames(&output).unwrap(),
        frames_in,
        "frame count"
    );
    let (info_in, info_out) = (ff().probe(&input).unwrap(), ff().probe(&output).unwrap());
    let (vi, vo) = (info_in.video.unwrap(), info_out.video.unwrap());
    assert_eq!((vo.width, vo.height), (320, 180));
    assert_eq!(vo.fps, vi.fps, "frame rate");
    assert!(
        (info_out.duration - info_in.duration).abs() < 0.011,
        "duration {} vs {}",
        info_out.duration,
        info_in.duration
    );
    let audio = info_out.audio.expect("the source's audio is copied");
    assert_eq!(audio.codec, "aac");
    let m = &out.metadata;
    assert_eq!(m["reelay-device"], "cpu");
    assert_eq!(m["reelay-model"], "realesr-animevideov3@d900c5bf1fa4");
    assert_eq!(m["reelay-frames"], "18");
    assert_eq!(m["reelay-audio"], "copy");
    assert_eq!(m["reelay-size"], "320x180");
    assert_eq!(m["reelay-video-accel"], "off");

    // No audio in, none out; frames and duration still exact. Crop at the
    // frame's far corner (x+w = width, y+h = height) is inside.
    let silent = dir.path().join("silent.mp4");
    common::media::make_video(
        &ff(),
        &silent,
        &common::media::Synth {
            audio: None,
            ..synth
        },
    );
    let output = dir.path().join("framed-silent.mp4");
    let p = params(json!({"crop": "256,144,64,36", "model": ANIME, "size": "256x144"}));
    let (out, _) = frame_cpu(&silent, &output, &p, &EncodeProfile::default()).unwrap();
    assert_eq!(ff().count_frames(&output).unwrap(), 18);
    assert!(ff().probe(&output).unwrap().audio.is_none());
    assert!(
        (duration(&output) - 1.5).abs() < 0.011,
        "{}",
        duration(&output)
    );
    assert_eq!(out.metadata["reelay-audio"], "none");
}

/// Real quality, by the issue's measure, through the whole step: camera.png
/// area-downscaled ×4 (128x128) as a clip, framed whole to 512x512 by
/// realesr-animevideov3, is closer to the original photo (PSNR) than a
/// bicubic (Catmull-Rom) upscale of the same input.
///
/// With a lossless output profile (H.264 RGB, qp 0) the PSNR is the
/// model's through the pipeline (crop, tensor, model, clamp, encode) and
/// bicubic's frames are compared as computed (measured: 26.45 against
/// 26.28 dB). With the default profile (yuv420p, crf 20) both go through the
/// same encoder settings (measured: 26.54 against 26.21 dB). realesr-general-x4v3 does not beat
/// bicubic on PSNR for these photos (tests/inference.rs says why), so the
/// model here is animevideov3.
#[test]
fn quality_beats_bicubic_through_the_step() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let original = photo("camera.png");
    let small = area_downscale(&original, 4);
    let input = dir.path().join("small.mp4");
    write_video(
        &input,
        128,
        128,
        10,
        &[small.as_raw().clone(), small.as_raw().clone()],
        true,
        false,
    );
    let (_, _, decoded) = decode_all(&input);
    assert_eq!(
        decoded[0],
        *small.as_raw(),
        "the lossless input decodes exactly"
    );

    let output = dir.path().join("framed.mp4");
    let p = params(
        json!({"crop": {"x": 0, "y": 0, "w": 128, "h": 128}, "model": ANIME, "size": "512x512"}),
    );
    frame_cpu(&input, &output, &p, &lossless()).unwrap();
    let (w, h, frames) = decode_all(&output);
    assert_eq!((w, h, frames.len()), (512, 512, 2));
    let bicubic = imageops::resize(&small, 512, 512, imageops::FilterType::CatmullRom);
    let p_model = psnr(&frames[0], original.as_raw());
    let p_bicubic = psnr(bicubic.as_raw(), original.as_raw());
    eprintln!(
        "camera x4 through the frame step: {ANIME} PSNR {p_model:.2} dB, bicubic {p_bicubic:.2} dB"
    );
    assert!(
        p_model > p_bicubic,
        "model PSNR {p_model:.2} dB does not beat bicubic {p_bicubic:.2} dB"
    );

    // The same with the default profile (H.264 yuv420p, crf 20), bicubic's
    // frames going through the same encoder settings.
    let output = dir.path().join("framed-default.mp4");
    frame_cpu(&input, &output, &p, &EncodeProfile::default()).unwrap();
    let model_default = decode_all(&output).2.remove(0);
    let bicubic_video = dir.path().join("bicubic-default.mp4");
    encode_with_profile(
        &bicubic_video,
        512,
        512,
        bicubic.as_raw(),
        &EncodeProfile::default(),
    );
    let bicubic_default = decode_all(&bicubic_video).2.remove(0);
    let (pm, pb) = (
        psnr(&model_default, original.as_raw()),
        psnr(&bicubic_default, original.as_raw()),
    );
    eprintln!("camera x4, default profile: {ANIME} PSNR {pm:.2} dB, bicubic {pb:.2} dB");
    assert!(
        pm > pb,
        "default profile: model {pm:.2} dB, bicubic {pb:.2} dB"
    );
}

/// One frame, twice, encoded with `profile`'s video settings.
fn encode_with_profile(path: &Path, w: u32, h: u32, frame: &[u8], profile: &EncodeProfile) {
    let raw = path.with_extension("rgb");
    std::fs::write(&raw, [frame, frame].concat()).unwrap();
    let mut args: Vec<std::ffi::OsString> = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-video_size"]
        .map(Into::into)
        .to_vec();
    args.push(format!("{w}x{h}").into());
    args.extend([
        "-framerate".into(),
        "10".into(),
        "-i".into(),
        path_arg(&raw),
    ]);
    args.extend(profile.video_args());
    args.extend(profile.container_args());
    args.push(path_arg(path));
    ff().run(&args, None, &mut |_| {}, &CancellationToken::new())
        .unwrap();
}

/// Batch 1 and batch 4 give the same frames within 1/255 (10 frames, so the
/// last batch of 4 is partial), and the step's frame is the upscaler's own
/// output for the same crop: the crop lands where it should.
#[test]
fn batch_1_and_batch_4_agree_and_match_the_model() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    common::media::make_video(
        &ff(),
        &input,
        &common::media::Synth {
            seconds: 1.0,
            fps: 10,
            audio: None,
            ..Default::default()
        },
    );
    let crop = json!({"x": 137, "y": 71, "w": 48, "h": 40});
    let mut outs = Vec::new();
    for batch in [1, 4] {
        let output = dir.path().join(format!("b{batch}.mp4"));
        let p = params(json!({"crop": crop, "model": GENERAL, "size": "192x160", "batch": batch}));
        let (out, run) = frame_cpu(&input, &output, &p, &lossless()).unwrap();
        assert_eq!(out.metadata["reelay-batch"], batch.to_string());
        assert_eq!(run.frames, 10);
        outs.push(decode_all(&output).2);
    }
    for (i, (a, b)) in outs[0].iter().zip(&outs[1]).enumerate() {
        let (max, _) = diff(a, b);
        assert!(max <= 1, "frame {i}: batch 1 vs 4 differ by {max}/255");
    }

    // The same crop of decoded frame 0, upscaled directly.
    let (sw, _, src) = decode_all(&input);
    let mut crop0 = Vec::with_capacity(48 * 40 * 3);
    for y in 71..71 + 40 {
        let start = ((y * sw + 137) * 3) as usize;
        crop0.extend_from_slice(&src[0][start..start + 48 * 3]);
    }
    let up = Upscaler::new(
        &Manifest::load(&root().join("models")).unwrap(),
        &UpscalerConfig {
            load: LoadOptions {
                device: Device::Cpu,
                ..LoadOptions::default()
            },
            ..UpscalerConfig::new(GENERAL)
        },
    )
    .unwrap();
    let direct = up
        .upscale(&[Frame::new(48, 40, crop0).unwrap()])
        .unwrap()
        .remove(0);
    let (max, share) = diff(&direct.data, &outs[0][0]);
    eprintln!(
        "step vs direct upscaler: max {max}/255, {:.4}% differ",
        share * 100.0
    );
    assert!(
        max <= 1,
        "the step's frame is not the model's output: max diff {max}"
    );
}

/// Tiled and untiled crops agree.
///
/// Bound: max |diff| ≤ 1/255 and under 1% of values differing, with the
/// default overlap (the model's `context_px`, 18 for animevideov3): every
/// kept output pixel then sees exactly its untiled inputs, and only float
/// summation order differs. With no overlap the seams show (max > 1), so
/// this comparison can fail.
#[test]
fn tiled_and_untiled_agree_within_the_bound() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let img = imageops::crop_imm(&photo("astronaut.png"), 140, 30, 160, 120).to_image();
    let input = dir.path().join("clip.mp4");
    write_video(
        &input,
        160,
        120,
        10,
        &[img.as_raw().clone(), img.as_raw().clone()],
        true,
        false,
    );
    let base =
        json!({"crop": {"x": 30, "y": 20, "w": 96, "h": 64}, "model": ANIME, "size": "384x256"});
    let go = |extra: serde_json::Value, name: &str| {
        let mut v = base.clone();
        v.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let output = dir.path().join(format!("{name}.mp4"));
        let (out, _) = frame_cpu(&input, &output, &params(v), &lossless()).unwrap();
        (out.metadata["reelay-tiles"].clone(), decode_all(&output).2)
    };
    let (t_whole, whole) = go(json!({}), "whole");
    let (t_tiled, tiled) = go(json!({"tile": 48}), "tiled");
    let (_, seams) = go(json!({"tile": 48, "tile_overlap": 0}), "seams");
    assert_eq!((t_whole.as_str(), t_tiled.as_str()), ("1", "4"));
    let (max, share) = diff(&whole[0], &tiled[0]);
    eprintln!(
        "tiled (48, overlap 18) vs untiled: max {max}/255, {:.3}% differ",
        share * 100.0
    );
    assert!(
        max <= 1 && share < 0.01,
        "tiled differs: max {max}, share {share}"
    );
    let (max0, _) = diff(&whole[0], &seams[0]);
    eprintln!("tiled without overlap vs untiled: max {max0}/255");
    assert!(max0 > 1, "without overlap the tiles should show seams");
}

/// Centroid of the pixels brighter than half, in a frame of width `w`.
fn bright_centroid(frame: &[u8], w: u32) -> Option<(f64, f64)> {
    let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
    for (i, px) in frame.chunks_exact(3).enumerate() {
        let luma = (u32::from(px[0]) + u32::from(px[1]) + u32::from(px[2])) / 3;
        if luma > 128 {
            sx += (i as u32 % w) as f64;
            sy += (i as u32 / w) as f64;
            n += 1.0;
        }
    }
    (n > 0.0).then(|| (sx / n, sy / n))
}

/// A keyframed crop follows its path: a white marker moves right for a
/// second, then down (frames drawn here, encoded losslessly); keyframes at 0, 1 and 2 s put it at the crop's centre
/// and frames in between are interpolated. In every output frame the marker
/// sits at the centre, while in the source it travels 100 px across and
/// 80 px down. A static crop at the first keyframe loses it.
#[test]
fn a_keyframed_crop_follows_its_path() {
    runtime();
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("marker.mp4");
    // 2 s at 10 fps: the 8x8 marker's top-left at (60 + 10n, 50) for the
    // first second, then (160, 50 + 8(n - 10)).
    let frames: Vec<Vec<u8>> = (0..20u32)
        .map(|n| {
            let (mx, my) = (60 + 10 * n.min(10), 50 + 8 * n.saturating_sub(10));
            let mut f = vec![0u8; 320 * 180 * 3];
            for y in my..my + 8 {
                for x in mx..mx + 8 {
                    let i = ((y * 320 + x) * 3) as usize;
                    f[i..i + 3].copy_from_slice(&[255, 255, 255]);
                }
            }
            f
        })
        .collect();
    write_video(&input, 320, 180, 10, &frames, true, false);
    let (sw, _, src) = decode_all(&input);
    assert_eq!(src.len(), 20);
    let first = bright_centroid(&src[0], sw).unwrap();
    let last = bright_centroid(&src[19], sw).unwrap();
    assert!(
        (first.0 - 63.5).abs() < 1.0 && (first.1 - 53.5).abs() < 1.0,
        "{first:?}"
    );
    assert!(
        (last.0 - 163.5).abs() < 1.0 && (last.1 - 125.5).abs() < 1.0,
        "{last:?}"
    );

    let keyframes = json!({"keyframes": [
        {"t": 0, "x": 32, "y": 36, "w": 64, "h": 36},
        {"t": 1, "x": 132, "y": 36, "w": 64, "h": 36},
        {"t": 2, "x": 132, "y": 116, "w": 64, "h": 36}
    ]});
    let output = dir.path().join("followed.mp4");
    let p = params(json!({"crop": keyframes, "model": ANIME, "size": "256x144"}));
    let (out, _) = frame_cpu(&input, &output, &p, &EncodeProfile::default()).unwrap();
    assert_eq!(out.metadata["reelay-crop"], "keyframes:3");
    let (w, _, frames) = decode_all(&output);
    assert_eq!(frames.len(), 20);
    for (i, f) in frames.iter().enumerate() {
        let (cx, cy) = bright_centroid(f, w).unwrap_or_else(|| panic!("frame {i}: marker lost"));
        // The marker's centre is at crop (31.5, 17.5) → ×4 → (127.5, 71.5).
        assert!(
            (cx - 127.5).abs() < 3.0 && (cy - 71.5).abs() < 3.0,
            "frame {i}: marker at ({cx:.1}, {cy:.1}), not at the centre"
        );
    }

    let output = dir.path().join("static.mp4");
    let p = params(json!({"crop": "32,36,64,36", "model": ANIME, "size": "256x144"}));
    frame_cpu(&input, &output, &p, &EncodeProfile::default()).unwrap();
    let (w, _, frames) = decode_all(&output);
    assert!(bright_centroid(&frames[0], w).is_some());
    assert!(
        bright_centroid(&frames[19], w).is_none(),
        "a static crop loses the marker"
    );
}

fn permanent(e: &TaskError, field: &str, words: &[&str]) {
    assert_eq!(e.class, ErrorClass::Permanent, "{e}");
    assert_eq!(e.field.as_deref(), Some(field), "{e}");
    for w in words {
        assert!(e.message.contains(w), "`{w}` not in: {e}");
    }
}

/// A crop outside the frame and an unknown model fail before any work, as
/// permanent errors naming the field and the fix.
#[test]
fn bad_crop_and_unknown_model_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    common::media::make_video(
        &ff(),
        &input,
        &common::media::Synth {
            seconds: 0.5,
            fps: 10,
            audio: None,
            ..Default::default()
        },
    );
    let output = dir.path().join("out.mp4");
    let e = frame_cpu(
        &input,
        &output,
        &params(json!({"crop": "300,170,64,36", "model": ANIME, "size": "256x144"})),
        &lossless(),
    )
    .unwrap_err();
    permanent(
        &e,
        "crop",
        &["outside the 320x180 frame", "x+w ≤ 320", "clip.mp4"],
    );
    let keyframes = json!({"keyframes": [{"t": 0, "x": 0, "y": 0, "w": 64, "h": 36}, {"t": 0.4, "x": 0, "y": 150, "w": 64, "h": 36}]});
    let e = frame_cpu(
        &input,
        &output,
        &params(json!({"crop": keyframes, "model": ANIME, "size": "256x144"})),
        &lossless(),
    )
    .unwrap_err();
    permanent(&e, "crop.keyframes[1]", &["outside", "y+h ≤ 180"]);
    let e = frame_cpu(
        &input,
        &output,
        &params(json!({"crop": "0,0,64,36", "model": "realesrgan-x4plus", "size": "256x144"})),
        &lossless(),
    )
    .unwrap_err();
    permanent(
        &e,
        "model",
        &["unknown model `realesrgan-x4plus`", GENERAL, ANIME],
    );
    let e = frame_cpu(
        &input,
        &output,
        &params(json!({"crop": "0,0,64,36", "model": "ssdlite-person", "size": "256x144"})),
        &lossless(),
    )
    .unwrap_err();
    permanent(&e, "model", &["not an upscaler"]);
    assert!(!output.exists(), "nothing is written for bad parameters");
}

fn reelay_frame(input: &Path, output: &Path, sets: &[&str]) -> Command {
    let mut cmd = common::reelay();
    cmd.args(["run", "frame", "--input"])
        .arg(input)
        .arg("--output")
        .arg(output);
    for s in sets {
        cmd.args(["--set", s]);
    }
    cmd
}

/// `reelay run frame` takes the manifest's names, and its bad inputs fail
/// with the fix: a model file whose sha256 differs is not loaded, and a
/// missing ONNX Runtime library says how to get one.
#[test]
fn cli_runs_and_refuses_bad_models_and_missing_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("clip.mp4");
    common::media::make_video(
        &ff(),
        &input,
        &common::media::Synth {
            seconds: 0.5,
            fps: 10,
            ..Default::default()
        },
    );
    let output = dir.path().join("out.mp4");
    let sets = [
        r#"crop={"x": 10, "y": 20, "w": 32, "h": 18}"#,
        "model=realesr-animevideov3",
        "size=128x72",
        "device=cpu",
    ];
    let ok = reelay_frame(&input, &output, &sets).output().unwrap();
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(
        text.contains("reelay-device: cpu") && text.contains("reelay-frames: 5"),
        "{text}"
    );
    assert_eq!(ff().count_frames(&output).unwrap(), 5);

    // A tampered copy of the models folder.
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    std::fs::copy(
        root().join("models/manifest.toml"),
        models.join("manifest.toml"),
    )
    .unwrap();
    let mut bytes = std::fs::read(root().join("models/realesr-animevideov3-x4.onnx")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(models.join("realesr-animevideov3-x4.onnx"), bytes).unwrap();
    let bad = reelay_frame(&input, &dir.path().join("bad.mp4"), &sets)
        .env("REELAY_MODELS_DIR", &models)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success());
    assert!(
        err.contains("failed its sha256 check and was not loaded")
            && err.contains("d900c5bf1fa4a77992fc99c0a1a5655f91c4005b9e835d6e028bbbd4dcf094ed"),
        "{err}"
    );

    let missing = reelay_frame(&input, &dir.path().join("noort.mp4"), &sets)
        .env(
            "ORT_DYLIB_PATH",
            dir.path().join("nowhere/libonnxruntime.so"),
        )
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    assert!(
        err.contains("ONNX Runtime library not found") && err.contains("bash models/setup-ort.sh"),
        "{err}"
    );

    let outside = reelay_frame(
        &input,
        &dir.path().join("outside.mp4"),
        &[
            "crop=300,170,64,36",
            "model=realesr-animevideov3",
            "size=128x72",
        ],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&outside.stderr);
    assert!(
        !outside.status.success() && err.contains("outside the 320x180 frame"),
        "{err}"
    );
}

/// A fan-out job whose clip has `framing` runs end to end in `reelay dev`:
/// extract, then frame (through the gpu queue, on this machine's device),
/// then compile; the frame step's audit record names the device and the model.
#[tokio::test(flavor = "multi_thread")]
async fn a_job_with_framing_runs_in_dev_and_records_the_device() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("bucket");
    common::make_video(&bucket.join("sources/match.mp4"), 3.0, "320x180", 10, true);
    common::write_job(
        &bucket,
        "jobs/framed.json",
        &json!({"version": 1, "source": "sources/match.mp4", "output": "exports/framed.mp4",
                "placement": "fan-out",
                "clips": [{"start": 0.5, "end": 1.5},
                          {"start": 1.5, "end": 2.5, "caption": "Zoom",
                           "framing": {"crop": {"x": 120, "y": 60, "w": 64, "h": 36},
                                       "model": ANIME, "size": "320x180"}}]}),
    );
    tokio::task::spawn_blocking({
        let bucket = bucket.clone();
        move || common::dev_until_idle(&bucket, None)
    })
    .await
    .unwrap();

    let export = bucket.join("exports/framed.mp4");
    assert!(export.is_file(), "the export was not written");
    assert_eq!(ff().count_frames(&export).unwrap(), 20);
    let store = LocalStore::open(&bucket).unwrap();
    let work = store.list("work/").await.unwrap();
    let mut framed = Vec::new();
    for o in &work {
        let meta = store.head(&o.key).await.unwrap().unwrap();
        if let Some(r) = AuditRecord::from_metadata(&meta.metadata)
            && r.kind == "frame"
        {
            framed.push((o.key.clone(), r, meta.metadata));
        }
    }
    assert_eq!(framed.len(), 1, "one frame step: {work:?}");
    let (key, record, metadata) = &framed[0];
    if inference::device::CUDA_COMPILED {
        assert!(
            record.device == "cpu" || record.device.starts_with("cuda:"),
            "{}",
            record.device
        );
    } else {
        assert_eq!(record.device, "cpu");
    }
    assert_eq!(record.step, "frame-1");
    assert_eq!(
        record.model.as_deref(),
        Some("realesr-animevideov3@d900c5bf1fa4")
    );
    assert!(record.cost_usd.unwrap() > 0.0);
    assert_eq!(metadata["reelay-frames"], "10");
    assert_eq!(metadata["reelay-size"], "320x180");
    let clip = store.path_for(key).unwrap();
    assert_eq!(ff().count_frames(&clip).unwrap(), 10);

    let audit = common::reelay()
        .args(["audit", "--root"])
        .arg(&bucket)
        .arg("exports/framed.mp4")
        .output()
        .unwrap();
    let tree = String::from_utf8(audit.stdout).unwrap();
    assert!(audit.status.success());
    assert!(
        tree.contains(&format!("[frame frame-1] {}", record.device)),
        "{tree}"
    );
    assert!(tree.contains("total: 4 step(s)"), "{tree}");
}
