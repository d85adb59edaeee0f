//! `extract`: cut `[start, end]` out of a source video.
//!
//! - **Accurate** (the default) re-encodes with the [`EncodeProfile`] and
//!   gives exactly `round((end - start) * fps)` frames, the duration within
//!   one frame, the audio kept when the source has it.
//! - **Fast** copies the streams without re-encoding, so the cut starts at
//!   the keyframe at or before `start`. The output metadata says so
//!   (`reelay-mode: fast`, `reelay-snapped-start`).
//!
//! Blocking: FFmpeg runs as a child process and this waits for it. Async
//! callers run it in `tokio::task::spawn_blocking`.

use std::ffi::OsString;
use std::path::Path;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{StepOutput, TaskError};
use crate::media::filter::{fps_exact, fps_string};
use crate::media::{EncodeProfile, Ffmpeg, MediaError, MediaInfo, Progress, path_arg, secs};

/// Tolerance on `end` against the probed duration, which FFmpeg prints to
/// 10 ms (truncated).
pub const DURATION_SLACK: f64 = 0.01;
/// How far before `start` fast mode looks for the keyframe it snaps to,
/// before it falls back to scanning from the beginning.
const KEYFRAME_WINDOW: f64 = 60.0;

/// Parameters of one `extract` step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    /// Start of the cut, seconds from the beginning of the source.
    pub start: f64,
    /// End of the cut, seconds from the beginning; must be after `start` and
    /// within the source.
    pub end: f64,
    /// Re-encode for a frame-exact cut (default). `false` copies the streams
    /// and snaps the start back to a keyframe: much faster, less exact.
    #[serde(default = "yes")]
    pub accurate: bool,
}

fn yes() -> bool {
    true
}

/// Checks the parameters on their own, before anything is probed.
pub fn validate_params(params: &ExtractParams) -> Result<(), TaskError> {
    if !params.start.is_finite() || params.start < 0.0 {
        return Err(TaskError::permanent(
            Some("start".to_string()),
            format!(
                "start ({}) must be a number of seconds, 0 or more; set start to where the clip begins",
                params.start
            ),
        ));
    }
    if !params.end.is_finite() || params.end <= params.start {
        return Err(TaskError::permanent(
            Some("end".to_string()),
            format!(
                "end ({}) must be greater than start ({}); set end to where the clip stops, after start",
                params.end, params.start
            ),
        ));
    }
    Ok(())
}

/// Probes `input` and checks the cut against it. Returns the probe.
pub fn validate_against(
    ff: &Ffmpeg,
    input: &Path,
    params: &ExtractParams,
) -> Result<MediaInfo, TaskError> {
    validate_params(params)?;
    let info = ff
        .probe(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    info.require_video(input)
        .map_err(|e| e.into_task_error(Some("input")))?;
    if params.end > info.duration + DURATION_SLACK {
        return Err(TaskError::permanent(
            Some("end".to_string()),
            format!(
                "end ({} s) is beyond the end of the source `{}`, which lasts {:.2} s; set end to at most {:.2}",
                params.end,
                input.display(),
                info.duration,
                info.duration
            ),
        ));
    }
    if params.start >= info.duration {
        return Err(TaskError::permanent(
            Some("start".to_string()),
            format!(
                "start ({} s) is at or past the end of the source `{}`, which lasts {:.2} s",
                params.start,
                input.display(),
                info.duration
            ),
        ));
    }
    Ok(info)
}

/// Cuts `params.start..params.end` of `input` into `output` (an MP4, written
/// in place; the caller publishes it). Blocking.
pub fn run(
    ff: &Ffmpeg,
    input: &Path,
    output: &Path,
    params: &ExtractParams,
    profile: &EncodeProfile,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    if let Err((field, message)) = profile.validate() {
        return Err(TaskError::permanent(
            Some(format!("output.{field}")),
            format!("output.{field}: {message}"),
        ));
    }
    let info = validate_against(ff, input, params)?;
    if params.accurate {
        run_accurate(
            ff,
            input,
            output,
            params,
            profile,
            &info,
            on_progress,
            cancel,
        )
    } else {
        run_fast(
            ff,
            input,
            output,
            params,
            profile,
            &info,
            on_progress,
            cancel,
        )
    }
}

/// The argument vector of an accurate cut: input seek (FFmpeg decodes from
/// the keyframe before and drops frames until `start`), constant frame rate
/// at the source's rate, exactly `frames` frames, and the profile's
/// encoders. The benchmark's bare reference is the same minus the frame
/// exactness (`setpts`/`fps` filter and `-frames:v`).
pub fn accurate_args(
    input: &Path,
    output: &Path,
    params: &ExtractParams,
    profile: &EncodeProfile,
    info: &MediaInfo,
) -> (Vec<OsString>, u64) {
    let video = info.video.as_ref().expect("validated: has video");
    let fps = fps_exact(video.fps);
    let duration = params.end - params.start;
    let frames = (duration * fps).round().max(1.0) as u64;
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |s: &str| args.push(OsString::from(s));
    push("-ss");
    push(&secs(params.start));
    push("-t");
    push(&secs(duration));
    push("-i");
    args.push(path_arg(input));
    let mut push = |s: &str| args.push(OsString::from(s));
    push("-map");
    push("0:v:0");
    if info.audio.is_some() {
        push("-map");
        push("0:a:0");
    }
    push("-vf");
    push(&format!(
        "setpts=PTS-STARTPTS,fps={}",
        fps_string(video.fps)
    ));
    push("-frames:v");
    push(&frames.to_string());
    args.extend(profile.video_args());
    if info.audio.is_some() {
        args.extend(profile.audio_args());
    }
    args.push(OsString::from("-sn"));
    args.push(OsString::from("-dn"));
    args.extend(profile.container_args());
    args.push(path_arg(output));
    (args, frames)
}

#[allow(clippy::too_many_arguments)]
fn run_accurate(
    ff: &Ffmpeg,
    input: &Path,
    output: &Path,
    params: &ExtractParams,
    profile: &EncodeProfile,
    info: &MediaInfo,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    let video = info.video.as_ref().expect("validated: has video");
    let (args, frames) = accurate_args(input, output, params, profile, info);
    let duration = params.end - params.start;
    let what = format!(
        "extracting {}..{} s of `{}`",
        params.start,
        params.end,
        input.display()
    );
    let log = ff
        .run_logged(&args, Some(duration), on_progress, cancel, false, &what)
        .map_err(|e| e.into_task_error(Some("input")))?;
    let written = log.last.map_or(0, |p| p.frame);
    if written != frames {
        return Err(TaskError::permanent(
            Some("input".to_string()),
            format!(
                "`{}` ended early: {} of the {} frames between {} s and {} s could be decoded; the file is truncated or corrupt, upload it again",
                input.display(),
                written,
                frames,
                params.start,
                params.end
            ),
        ));
    }
    let fps = fps_exact(video.fps);
    let mut out = StepOutput::default();
    let m = &mut out.metadata;
    m.insert("reelay-mode".into(), "accurate".into());
    m.insert("reelay-start".into(), secs(params.start));
    m.insert("reelay-end".into(), secs(params.end));
    m.insert("reelay-frames".into(), frames.to_string());
    m.insert(
        "reelay-duration".into(),
        format!("{:.3}", frames as f64 / fps),
    );
    m.insert("reelay-fps".into(), fps_string(video.fps));
    m.insert(
        "reelay-size".into(),
        format!("{}x{}", video.width, video.height),
    );
    m.insert(
        "reelay-audio".into(),
        if info.audio.is_some() { "yes" } else { "no" }.into(),
    );
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn run_fast(
    ff: &Ffmpeg,
    input: &Path,
    output: &Path,
    params: &ExtractParams,
    profile: &EncodeProfile,
    info: &MediaInfo,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    let input_err = |e: MediaError| e.into_task_error(Some("input"));
    let snapped = keyframe_at_or_before(ff, input, params.start, cancel).map_err(input_err)?;
    let duration = params.end - params.start;
    let mut args: Vec<OsString> = Vec::new();
    for s in ["-ss", &secs(params.start), "-t", &secs(duration), "-i"] {
        args.push(s.into());
    }
    args.push(path_arg(input));
    for s in ["-map", "0:v:0"] {
        args.push(s.into());
    }
    if info.audio.is_some() {
        for s in ["-map", "0:a:0"] {
            args.push(s.into());
        }
    }
    for s in [
        "-c",
        "copy",
        "-sn",
        "-dn",
        "-avoid_negative_ts",
        "make_zero",
    ] {
        args.push(s.into());
    }
    args.extend(profile.container_args());
    args.push(path_arg(output));
    let what = format!(
        "copying {}..{} s of `{}`",
        params.start,
        params.end,
        input.display()
    );
    let log = ff
        .run_logged(
            &args,
            Some(params.end - snapped),
            on_progress,
            cancel,
            false,
            &what,
        )
        .map_err(input_err)?;
    let got = ff.probe(output).map_err(input_err)?;
    let mut out = StepOutput::default();
    let m = &mut out.metadata;
    m.insert("reelay-mode".into(), "fast".into());
    m.insert("reelay-start".into(), secs(params.start));
    m.insert("reelay-end".into(), secs(params.end));
    m.insert("reelay-snapped-start".into(), format!("{snapped:.3}"));
    m.insert(
        "reelay-frames".into(),
        log.last.map_or(0, |p| p.frame).to_string(),
    );
    m.insert("reelay-duration".into(), format!("{:.3}", got.duration));
    if let Some(v) = &got.video {
        m.insert("reelay-fps".into(), fps_string(v.fps));
        m.insert("reelay-size".into(), format!("{}x{}", v.width, v.height));
    }
    m.insert(
        "reelay-audio".into(),
        if got.audio.is_some() { "yes" } else { "no" }.into(),
    );
    Ok(out)
}

/// The time of the last video keyframe at or before `at`: where a stream
/// copy cut from `at` really starts. Decodes keyframes only.
pub fn keyframe_at_or_before(
    ff: &Ffmpeg,
    input: &Path,
    at: f64,
    cancel: &CancellationToken,
) -> Result<f64, MediaError> {
    let window_start = (at - KEYFRAME_WINDOW).max(0.0);
    if let Some(t) = scan_keyframes(ff, input, window_start, at, cancel)? {
        return Ok(t);
    }
    if window_start > 0.0
        && let Some(t) = scan_keyframes(ff, input, 0.0, at, cancel)?
    {
        return Ok(t);
    }
    Ok(0.0)
}

fn scan_keyframes(
    ff: &Ffmpeg,
    input: &Path,
    from: f64,
    to: f64,
    cancel: &CancellationToken,
) -> Result<Option<f64>, MediaError> {
    let mut args: Vec<OsString> = Vec::new();
    for s in [
        "-skip_frame",
        "nokey",
        "-copyts",
        "-ss",
        &secs(from),
        "-t",
        &secs(to - from + 0.001),
        "-i",
    ] {
        args.push(s.into());
    }
    args.push(path_arg(input));
    for s in [
        "-map",
        "0:v:0",
        "-vf",
        "showinfo",
        "-fps_mode",
        "passthrough",
        "-f",
        "null",
        "-",
    ] {
        args.push(s.into());
    }
    let what = format!("finding keyframes in `{}`", input.display());
    let log = ff.run_logged(&args, None, &mut |_| {}, cancel, true, &what)?;
    let mut best: Option<f64> = None;
    for event in &log.events {
        if let ffmpeg_sidecar::event::FfmpegEvent::Log(_, line) = event
            && line.contains("Parsed_showinfo")
            && let Some(t) = line
                .split("pts_time:")
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|s| s.parse::<f64>().ok())
            && t <= to + 1e-6
        {
            best = Some(best.map_or(t, |b: f64| b.max(t)));
        }
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse_with_default_accurate() {
        let p: ExtractParams = serde_json::from_str(r#"{"start": 1, "end": 2.5}"#).unwrap();
        assert!(p.accurate);
        assert!(
            serde_json::from_str::<ExtractParams>(r#"{"start": 1, "end": 2, "x": 1}"#).is_err()
        );
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let e = validate_params(&ExtractParams {
            start: 5.0,
            end: 2.0,
            accurate: true,
        })
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("end"));
        assert!(e.message.contains("greater than start"), "{}", e.message);
        let e = validate_params(&ExtractParams {
            start: -1.0,
            end: 2.0,
            accurate: true,
        })
        .unwrap_err();
        assert_eq!(e.field.as_deref(), Some("start"));
    }
}
