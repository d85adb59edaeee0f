//! The two CPU step kinds on real media made here, through the one FFmpeg
//! wrapper: exact frame counts, durations, fast mode, fades, captions and
//! normalisation of mixed inputs.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use reelay::media::{EncodeProfile, Ffmpeg};
use reelay::tasks::compile::{self, CompileParams, Transition, TransitionKind};
use reelay::tasks::extract::{self, ExtractParams};
use tokio_util::sync::CancellationToken;

fn extract(ff: &Ffmpeg, input: &Path, output: &Path, start: f64, end: f64, accurate: bool) -> Result<reelay::tasks::StepOutput, reelay::tasks::TaskError> {
    extract::run(ff, input, output, &ExtractParams { start, end, accurate }, &EncodeProfile::default(), &mut |_| {}, &CancellationToken::new())
}

fn compile(ff: &Ffmpeg, inputs: &[PathBuf], output: &Path, fade: Option<f64>, captions: Vec<Option<String>>) -> Result<reelay::tasks::StepOutput, reelay::tasks::TaskError> {
    let transition = match fade {
        Some(seconds) => Transition { kind: TransitionKind::Fade, seconds },
        None => Transition { kind: TransitionKind::None, seconds: 0.0 },
    };
    let font = compile::locate_font().expect("caption font: run `make setup`");
    compile::run(ff, inputs, output, &CompileParams { transition, captions }, &EncodeProfile::default(), &font, &mut |_| {}, &CancellationToken::new())
}

#[test]
fn accurate_extract_has_the_exact_frame_count_and_keeps_audio() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    make_video(&src, 6.0, "320x180", 30, true);
    let out = dir.path().join("clip.mp4");
    let meta = extract(&ff, &src, &out, 1.1, 3.6, true).unwrap().metadata;
    let expected = ((3.6f64 - 1.1) * 30.0).round() as u64;
    assert_eq!(ff.count_frames(&out).unwrap(), expected);
    assert!((duration(&out) - 2.5).abs() <= 1.0 / 30.0 + 1e-3);
    assert_eq!(meta["reelay-mode"], "accurate");
    assert!(ff.probe(&out).unwrap().audio.is_some(), "audio was dropped");
}

#[test]
fn fast_extract_is_marked_fast() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.mp4");
    make_video(&src, 6.0, "320x180", 30, true);
    let out = dir.path().join("clip.mp4");
    let meta = extract(&ff, &src, &out, 1.5, 4.0, false).unwrap().metadata;
    assert_eq!(meta["reelay-mode"], "fast");
    assert!(duration(&out) > 2.0);
}

#[test]
fn compile_with_fades_lasts_the_sum_minus_the_overlaps() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let clips: Vec<PathBuf> = [2.0, 3.0, 2.5]
        .iter()
        .enumerate()
        .map(|(i, secs)| {
            let p = dir.path().join(format!("c{i}.mp4"));
            make_video(&p, *secs, "320x180", 30, true);
            p
        })
        .collect();
    let out = dir.path().join("out.mp4");
    compile(&ff, &clips, &out, Some(0.5), vec![None, None, None]).unwrap();
    let d = duration(&out);
    assert!((d - (7.5 - 2.0 * 0.5)).abs() <= 1.0 / 30.0 + 1e-3, "{d}");
    let plain = dir.path().join("plain.mp4");
    compile(&ff, &clips, &plain, None, vec![None, None, None]).unwrap();
    assert!((duration(&plain) - 7.5).abs() <= 1.0 / 30.0 + 1e-3);
}

/// Mean absolute difference over a rectangle of two RGB frames.
fn region_diff(a: &[u8], b: &[u8], width: u32, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> f64 {
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in y0..y1 {
        for x in x0..x1 {
            for c in 0..3 {
                let i = ((y * width + x) * 3 + c) as usize;
                sum += (a[i] as i32 - b[i] as i32).unsigned_abs() as u64;
                n += 1;
            }
        }
    }
    sum as f64 / n as f64
}

#[test]
fn a_caption_is_really_drawn() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let clip = dir.path().join("c.mp4");
    make_video(&clip, 2.0, "640x360", 30, true);
    let with = dir.path().join("with.mp4");
    let without = dir.path().join("without.mp4");
    compile(&ff, &[clip.clone()], &with, None, vec![Some("GOAL GOAL GOAL".into())]).unwrap();
    compile(&ff, &[clip], &without, None, vec![None]).unwrap();
    let (a, w, h) = frame_rgb(&with, 1.0);
    let (b, _, _) = frame_rgb(&without, 1.0);
    // Compare the bottom band (where captions go) and the top band (untouched).
    let bottom = region_diff(&a, &b, w, (0, h * 3 / 4, w, h));
    let top = region_diff(&a, &b, w, (0, 0, w, h / 4));
    assert!(bottom > 5.0, "no caption drawn in the bottom band: diff {bottom}");
    assert!(top < 1.5, "pixels changed outside the caption band: diff {top}");
}

#[test]
fn mixed_inputs_are_normalised_to_the_first_clip() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.mp4");
    let b = dir.path().join("b.mp4");
    let c = dir.path().join("c.mp4");
    make_video(&a, 2.0, "320x180", 30, true);
    make_video(&b, 2.0, "640x480", 25, true);
    make_video(&c, 2.0, "200x200", 24, false);
    let out = dir.path().join("out.mp4");
    compile(&ff, &[a, b, c], &out, Some(0.25), vec![None, Some("two".into()), None]).unwrap();
    let info = ff.probe(&out).unwrap();
    let v = info.video.unwrap();
    assert_eq!((v.width, v.height), (320, 180));
    assert!((v.fps - 30.0).abs() < 0.01, "fps {}", v.fps);
    assert!(info.audio.is_some());
    assert!((duration(&out) - (6.0 - 2.0 * 0.25)).abs() <= 1.0 / 30.0 + 1e-3);
}

#[test]
fn bad_media_fails_with_clear_errors() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.mp4");
    make_video(&good, 3.0, "320x180", 30, true);
    let bytes = std::fs::read(&good).unwrap();
    let truncated = dir.path().join("truncated.mp4");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let text = dir.path().join("text.mp4");
    std::fs::write(&text, b"hello, not a video\n").unwrap();
    let out = dir.path().join("out.mp4");
    for bad in [&truncated, &empty, &text] {
        let e = extract(&ff, bad, &out, 0.0, 1.0, true).unwrap_err();
        assert!(!e.message.is_empty());
        assert_eq!(e.class, reelay::tasks::ErrorClass::Permanent, "{bad:?}: {e}");
    }
    let beyond = extract(&ff, &good, &out, 0.0, 9.0, true).unwrap_err();
    assert_eq!(beyond.field.as_deref(), Some("end"), "{beyond}");
    assert!(beyond.message.contains('9'), "{beyond}");
    let backwards = extract(&ff, &good, &out, 2.0, 1.0, true).unwrap_err();
    assert_eq!(backwards.field.as_deref(), Some("end"), "{backwards}");
    assert!(!out.exists(), "no output is left behind by a failed step");
}

#[test]
fn paths_with_spaces_unicode_and_a_leading_dash_work() {
    let ff = ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    for name in ["my clip.mp4", "été ü.mp4", "-i.mp4"] {
        let src = dir.path().join(name);
        make_video(&src, 2.0, "320x180", 30, false);
        let out = dir.path().join(format!("-out {name}"));
        extract(&ff, &src, &out, 0.0, 1.0, true).unwrap();
        assert_eq!(ff.count_frames(&out).unwrap(), 30, "{name}");
    }
}
