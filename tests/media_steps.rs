//! The CPU steps (`extract`, `compile`) on real FFmpeg, on media the tests
//! make with lavfi. Each test asserts what came out, not only that it ran.

mod common;
use common::media as media_helpers;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use media_helpers::{Rect, Synth, ffmpeg, font, frame_rgb, mad, make_video, within};
use reelay::media::{EncodeProfile, MediaError, Progress, path_arg};
use reelay::tasks::compile::{self, CompileParams, Transition, TransitionKind};
use reelay::tasks::extract::{self, ExtractParams};
use reelay::tasks::{ErrorClass, TaskError};
use tokio_util::sync::CancellationToken;

const LIMIT: Duration = Duration::from_secs(60);

fn extract_to(
    input: &Path,
    output: &Path,
    start: f64,
    end: f64,
    accurate: bool,
) -> Result<reelay::tasks::StepOutput, TaskError> {
    let (input, output) = (input.to_path_buf(), output.to_path_buf());
    within(LIMIT, move || {
        extract::run(
            &ffmpeg(),
            &input,
            &output,
            &ExtractParams {
                start,
                end,
                accurate,
            },
            &EncodeProfile::default(),
            &mut |_| {},
            &CancellationToken::new(),
        )
    })
}

fn compile_to(
    inputs: &[PathBuf],
    output: &Path,
    kind: TransitionKind,
    seconds: f64,
    captions: Vec<Option<String>>,
    profile: EncodeProfile,
) -> Result<reelay::tasks::StepOutput, TaskError> {
    let (inputs, output) = (inputs.to_vec(), output.to_path_buf());
    within(LIMIT, move || {
        compile::run(
            &ffmpeg(),
            &inputs,
            &output,
            &CompileParams {
                transition: Transition { kind, seconds },
                captions,
            },
            &profile,
            &font(),
            &mut |_| {},
            &CancellationToken::new(),
        )
    })
}

/// Three 2 s clips, 320x180 at 30 fps with audio.
fn three_clips(dir: &Path) -> Vec<PathBuf> {
    let ff = ffmpeg();
    (0..3)
        .map(|i| {
            let p = dir.join(format!("clip{i}.mp4"));
            make_video(
                &ff,
                &p,
                &Synth {
                    seconds: 2.0,
                    ..Default::default()
                },
            );
            p
        })
        .collect()
}

#[test]
fn accurate_extract_gives_exact_frames_duration_and_audio() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let src = dir.path().join("src.mp4");
    make_video(&ff, &src, &Synth::default());
    for (start, end) in [(1.0, 3.5), (0.37, 2.11), (2.0, 4.0)] {
        let out = dir.path().join(format!("cut-{start}.mp4"));
        let step = extract_to(&src, &out, start, end, true).unwrap();
        let expected = ((end - start) * 30.0_f64).round() as u64;
        assert_eq!(ff.count_frames(&out).unwrap(), expected, "{start}..{end}");
        let info = ff.probe(&out).unwrap();
        assert!(
            (info.duration - (end - start)).abs() <= 1.0 / 30.0 + 1e-9,
            "{start}..{end}: duration {}",
            info.duration
        );
        let audio = info.audio.expect("audio kept");
        assert_eq!(
            (audio.rate, audio.channels, audio.codec.as_str()),
            (48000, 2, "aac")
        );
        let video = info.video.unwrap();
        assert_eq!(
            (video.width, video.height, video.codec.as_str()),
            (320, 180, "h264")
        );
        assert_eq!(step.metadata["reelay-mode"], "accurate");
        assert_eq!(step.metadata["reelay-frames"], expected.to_string());
        assert!(step.metadata.values().all(|v| v.is_ascii()));
    }
}

#[test]
fn accurate_extract_without_audio_has_no_audio_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let src = dir.path().join("silent.mp4");
    make_video(
        &ff,
        &src,
        &Synth {
            audio: None,
            ..Default::default()
        },
    );
    let out = dir.path().join("cut.mp4");
    let mut last: Option<Progress> = None;
    let step = extract::run(
        &ff,
        &src,
        &out,
        &ExtractParams {
            start: 0.5,
            end: 3.0,
            accurate: true,
        },
        &EncodeProfile::default(),
        &mut |p| last = Some(p),
        &CancellationToken::new(),
    )
    .unwrap();
    let last = last.expect("progress was reported");
    assert_eq!(last.frame, 75);
    assert!(last.fraction.unwrap() > 0.9, "{last:?}");
    assert_eq!(step.metadata["reelay-audio"], "no");
    assert!(ff.probe(&out).unwrap().audio.is_none());
    assert_eq!(ff.count_frames(&out).unwrap(), 75);
}

#[test]
fn fast_extract_copies_snaps_to_keyframe_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let src = dir.path().join("src.mp4");
    // A keyframe every second.
    make_video(&ff, &src, &Synth::default());
    let out = dir.path().join("fast.mp4");
    let step = extract_to(&src, &out, 2.5, 3.5, false).unwrap();
    assert_eq!(step.metadata["reelay-mode"], "fast");
    assert_eq!(step.metadata["reelay-snapped-start"], "2.000");
    let info = ff.probe(&out).unwrap();
    assert!(info.audio.is_some());
    // It starts at the keyframe at 2.0, so it is about 1.5 s long, not 1.
    assert!(
        info.duration > 1.4 && info.duration < 1.7,
        "{}",
        info.duration
    );
}

#[test]
fn compile_three_clips_with_fades_lasts_sum_minus_fades() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let clips = three_clips(dir.path());
    let sum: f64 = clips.iter().map(|c| ff.probe(c).unwrap().duration).sum();
    let out = dir.path().join("joined.mp4");
    let step = compile_to(
        &clips,
        &out,
        TransitionKind::Fade,
        0.5,
        vec![],
        EncodeProfile::default(),
    )
    .unwrap();
    let info = ff.probe(&out).unwrap();
    let expected = sum - 2.0 * 0.5;
    assert!(
        (info.duration - expected).abs() <= 1.0 / 30.0 + 1e-9,
        "duration {} vs {expected}",
        info.duration
    );
    let frames = ff.count_frames(&out).unwrap() as f64;
    assert!(
        (frames / 30.0 - expected).abs() <= 1.0 / 30.0 + 1e-9,
        "{frames} frames"
    );
    assert!(info.audio.is_some());
    assert_eq!(step.metadata["reelay-transition"], "fade:0.5");
    assert_eq!(step.metadata["reelay-clips"], "3");
}

#[test]
fn compile_none_concatenates_and_one_clip_works() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let clips = three_clips(dir.path());
    let out = dir.path().join("cut.mp4");
    compile_to(
        &clips,
        &out,
        TransitionKind::None,
        0.0,
        vec![],
        EncodeProfile::default(),
    )
    .unwrap();
    assert_eq!(ff.count_frames(&out).unwrap(), 180);
    let one = dir.path().join("one.mp4");
    compile_to(
        &clips[..1],
        &one,
        TransitionKind::Fade,
        0.5,
        vec![Some("Solo".into())],
        EncodeProfile::default(),
    )
    .unwrap();
    assert_eq!(ff.count_frames(&one).unwrap(), 60);
}

#[test]
fn caption_is_really_drawn_in_its_region_and_clip() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let clips = three_clips(dir.path());
    let plain = dir.path().join("plain.mp4");
    let captioned = dir.path().join("captioned.mp4");
    compile_to(
        &clips,
        &plain,
        TransitionKind::Fade,
        0.5,
        vec![],
        EncodeProfile::default(),
    )
    .unwrap();
    let step = compile_to(
        &clips,
        &captioned,
        TransitionKind::Fade,
        0.5,
        vec![Some("GOAL!".into()), None, None],
        EncodeProfile::default(),
    )
    .unwrap();
    assert_eq!(step.metadata["reelay-captions"], "1");
    // Caption: centred, bottom, font size h/12 = 15 px, bottom at h - h/10.
    let caption = Rect {
        x: 110,
        y: 135,
        w: 100,
        h: 30,
    };
    let top = Rect {
        x: 0,
        y: 0,
        w: 320,
        h: 90,
    };
    // 0.7 s: inside clip 0, before its fade.
    let a = frame_rgb(&ff, &plain, 0.7, dir.path());
    let b = frame_rgb(&ff, &captioned, 0.7, dir.path());
    let inside = mad(&a, &b, 320, caption);
    let outside = mad(&a, &b, 320, top);
    assert!(inside > 15.0, "caption region barely changed: {inside}");
    assert!(outside < 3.0, "the rest of the frame changed: {outside}");
    // 3.5 s: well inside clip 2, which has no caption.
    let a2 = frame_rgb(&ff, &plain, 3.8, dir.path());
    let b2 = frame_rgb(&ff, &captioned, 3.8, dir.path());
    let later = mad(&a2, &b2, 320, caption);
    assert!(later < 3.0, "caption leaked into clip 2: {later}");
}

#[test]
fn mixed_inputs_are_normalised_to_the_first_clip() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let specs = [
        Synth {
            seconds: 2.0,
            ..Default::default()
        },
        Synth {
            seconds: 2.0,
            width: 480,
            height: 360,
            fps: 25,
            audio: None,
            gop: 25,
            ..Default::default()
        },
        Synth {
            seconds: 1.5,
            width: 160,
            height: 90,
            fps: 24,
            audio: Some((44100, 1)),
            gop: 24,
            ..Default::default()
        },
    ];
    let clips: Vec<PathBuf> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = dir.path().join(format!("mixed{i}.mp4"));
            make_video(&ff, &p, s);
            p
        })
        .collect();
    let sum: f64 = clips.iter().map(|c| ff.probe(c).unwrap().duration).sum();
    let out = dir.path().join("mixed.mp4");
    compile_to(
        &clips,
        &out,
        TransitionKind::Fade,
        0.4,
        vec![None, Some("no audio here".into()), Some("mono".into())],
        EncodeProfile::default(),
    )
    .unwrap();
    let info = ff.probe(&out).unwrap();
    let v = info.video.unwrap();
    assert_eq!((v.width, v.height), (320, 180));
    assert!((v.fps - 30.0).abs() < 0.01, "{}", v.fps);
    let a = info
        .audio
        .expect("audio, with silence for the clip without");
    assert_eq!((a.rate, a.channels), (48000, 2));
    let expected = sum - 2.0 * 0.4;
    assert!(
        (info.duration - expected).abs() <= 1.0 / 30.0 + 1e-9,
        "{} vs {expected}",
        info.duration
    );

    // The profile's size and rate win over the first clip's.
    let out2 = dir.path().join("profiled.mp4");
    let profile = EncodeProfile {
        width: Some(256),
        height: Some(144),
        fps: Some(15.0),
        ..Default::default()
    };
    compile_to(&clips, &out2, TransitionKind::None, 0.0, vec![], profile).unwrap();
    let v = ff.probe(&out2).unwrap().video.unwrap();
    assert_eq!((v.width, v.height), (256, 144));
    assert!((v.fps - 15.0).abs() < 0.01);
}

fn assert_permanent(err: &TaskError, field: &str, needles: &[&str]) {
    assert_eq!(err.class, ErrorClass::Permanent, "{err}");
    assert_eq!(err.field.as_deref(), Some(field), "{err}");
    for n in needles {
        assert!(err.message.contains(n), "`{}` lacks `{n}`", err.message);
    }
}

#[test]
fn bad_inputs_give_clear_permanent_errors() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let src = dir.path().join("src.mp4");
    make_video(&ff, &src, &Synth::default());
    let out = dir.path().join("out.mp4");

    // Truncated: the index (at the end) is cut off.
    let truncated = dir.path().join("truncated.mp4");
    let bytes = std::fs::read(&src).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = extract_to(&truncated, &out, 0.0, 1.0, true).unwrap_err();
    assert_permanent(&e, "input", &["truncated.mp4", "truncated"]);

    // Truncated with the index up front: the media data ends early.
    let fs = dir.path().join("fs.mp4");
    make_video(
        &ff,
        &fs,
        &Synth {
            faststart: true,
            ..Default::default()
        },
    );
    let bytes = std::fs::read(&fs).unwrap();
    let fs_cut = dir.path().join("fs-cut.mp4");
    std::fs::write(&fs_cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = extract_to(&fs_cut, &out, 0.5, 3.5, true).unwrap_err();
    assert_permanent(&e, "input", &["fs-cut.mp4"]);

    let empty = dir.path().join("empty.mp4");
    std::fs::write(&empty, b"").unwrap();
    let e = extract_to(&empty, &out, 0.0, 1.0, true).unwrap_err();
    assert_permanent(&e, "input", &["empty.mp4", "empty"]);

    let text = dir.path().join("notes.mp4");
    std::fs::write(&text, "this is not a video\n".repeat(50)).unwrap();
    let e = extract_to(&text, &out, 0.0, 1.0, true).unwrap_err();
    assert_permanent(&e, "input", &["notes.mp4", "not a readable media file"]);

    let e = extract_to(&src, &out, 1.0, 9.5, true).unwrap_err();
    assert_permanent(&e, "end", &["end (9.5 s)", "4.00 s", "set end to at most"]);

    let e = extract_to(&src, &out, 3.0, 2.0, true).unwrap_err();
    assert_permanent(&e, "end", &["end (2)", "start (3)", "greater than start"]);

    // Audio only: no video to cut.
    let audio = dir.path().join("tone.m4a");
    let args: Vec<std::ffi::OsString> =
        ["-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", "-f", "mp4"]
            .iter()
            .map(Into::into)
            .chain([path_arg(&audio)])
            .collect();
    ff.run(&args, None, &mut |_| {}, &CancellationToken::new())
        .unwrap();
    let e = extract_to(&audio, &out, 0.0, 1.0, true).unwrap_err();
    assert_permanent(&e, "input", &["no video stream"]);

    // Compile: a bad clip is named by its index; a fade longer than a clip
    // names transition.seconds.
    let clips = three_clips(dir.path());
    let e = compile_to(
        &[clips[0].clone(), truncated.clone()],
        &out,
        TransitionKind::Fade,
        0.5,
        vec![],
        EncodeProfile::default(),
    )
    .unwrap_err();
    assert_permanent(&e, "inputs[1]", &["truncated.mp4"]);
    let e = compile_to(
        &clips,
        &out,
        TransitionKind::Fade,
        1.5,
        vec![],
        EncodeProfile::default(),
    )
    .unwrap_err();
    assert_permanent(
        &e,
        "transition.seconds",
        &["transition.seconds (1.5 s)", "clip 1"],
    );
}

#[test]
fn awkward_paths_and_captions_are_safe() {
    let dir = tempfile::tempdir().unwrap();
    let ff = ffmpeg();
    let weird = dir.path().join("with space, ünïcode [x]; it's");
    std::fs::create_dir(&weird).unwrap();
    let src = weird.join("-i clip ü.mp4");
    make_video(&ff, &src, &Synth::default());
    let cut = weird.join("-y out é.mp4");
    let step = extract_to(&src, &cut, 0.5, 1.5, true).unwrap();
    assert_eq!(step.metadata["reelay-frames"], "30");
    assert_eq!(ff.count_frames(&cut).unwrap(), 30);
    // The font from a folder whose name needs filtergraph escaping.
    let font_dir = weird.join("fonts: 'a', [b]; c\\d");
    std::fs::create_dir(&font_dir).unwrap();
    let font_copy = font_dir.join("Roboto Bold.ttf");
    std::fs::copy(font(), &font_copy).unwrap();
    let joined = weird.join("-joined.mp4");
    let (clips, joined2, font2) = (
        vec![cut.clone(), cut.clone()],
        joined.clone(),
        font_copy.clone(),
    );
    within(LIMIT, move || {
        compile::run(
            &ffmpeg(),
            &clips,
            &joined2,
            &CompileParams {
                transition: Transition {
                    kind: TransitionKind::Fade,
                    seconds: 0.25,
                },
                captions: vec![
                    Some("It's 100%: a, b [c]; d\\e %{pts} 'q'".into()),
                    Some("-filter_complex \"x\"".into()),
                ],
            },
            &EncodeProfile::default(),
            &font2,
            &mut |_| {},
            &CancellationToken::new(),
        )
    })
    .unwrap();
    assert!(ff.count_frames(&joined).unwrap() > 45);
    // Nothing was written outside the folder (no stray `-y out` files etc.).
    let strays: Vec<_> = std::fs::read_dir(std::env::current_dir().unwrap())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with('-'))
        .collect();
    assert!(strays.is_empty(), "{strays:?}");
}

#[test]
fn cancel_kills_ffmpeg_promptly() {
    let ff = ffmpeg();
    let cancel = CancellationToken::new();
    let c2 = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        c2.cancel();
    });
    let args: Vec<std::ffi::OsString> = [
        "-re",
        "-f",
        "lavfi",
        "-i",
        "testsrc2=d=600",
        "-f",
        "null",
        "-",
    ]
    .iter()
    .map(Into::into)
    .collect();
    let started = Instant::now();
    let err = ff
        .run(&args, Some(600.0), &mut |_| {}, &cancel)
        .unwrap_err();
    assert!(matches!(err, MediaError::Cancelled { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn ffmpeg_errors_quote_the_reason() {
    let ff = ffmpeg();
    let args: Vec<std::ffi::OsString> = ["-f", "lavfi", "-i", "nosuchfilter", "-f", "null", "-"]
        .iter()
        .map(Into::into)
        .collect();
    let err = ff
        .run(&args, None, &mut |_| {}, &CancellationToken::new())
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, MediaError::Failed { .. }), "{msg}");
    assert!(msg.to_lowercase().contains("nosuchfilter"), "{msg}");
}

#[cfg(feature = "bench")]
#[test]
fn cpu_bench_runs_on_a_tiny_configuration() {
    use reelay::bench::media::{CpuBenchOptions, run_cpu_bench};
    let dir = tempfile::tempdir().unwrap();
    let opts = CpuBenchOptions {
        repetitions: 1,
        source_seconds: 5.0,
        width: 320,
        height: 180,
        fps: 30,
        extract_start: 1.0,
        extract_lengths: vec![1.0, 2.0],
        compile_clips: 3,
        compile_clip_seconds: 1.2,
        fade_seconds: 0.3,
        target_ratio: 1.10,
    };
    let font = font();
    let mut lines = Vec::new();
    let report = within(LIMIT, move || {
        run_cpu_bench(
            &ffmpeg(),
            dir.path(),
            &opts,
            &EncodeProfile::default(),
            Some(&font),
            &mut |l| lines.push(l.to_string()),
        )
    })
    .unwrap();
    let names: Vec<&str> = report.cases.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["extract 1s", "extract 2s", "compile 3 clips"]);
    for case in &report.cases {
        assert_eq!(case.reelay_secs.len(), 1);
        assert_eq!(case.bare_secs.len(), 1);
        assert!(case.ratio.is_finite() && case.ratio > 0.0, "{case:?}");
        assert!(case.bare_command.contains("libx264"));
    }
    let json = serde_json::to_value(&report).unwrap();
    assert!(json["cases"][0]["ratio"].is_number());
}
