//! `compile`: join N clips into one export, with fades and captions.
//!
//! Every clip is first normalised to one shape: the first clip's size and
//! frame rate (or the profile's `width`/`height`/`fps` when set), square
//! pixels, letterboxed when the aspect differs; audio resampled to the
//! profile's rate and layout, silence for a clip without audio. Each clip's
//! caption is drawn on that clip only (`drawtext`, the text read from a
//! temporary file so that no caption can break the filtergraph). Then:
//!
//! - `kind: fade` chains `xfade` and `acrossfade` of `seconds`, so the
//!   export lasts `sum - (N - 1) * seconds`;
//! - `kind: none` concatenates.
//!
//! Blocking: FFmpeg runs as a child process and this waits for it. Async
//! callers run it in `tokio::task::spawn_blocking`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{StepOutput, TaskError};
use crate::media::filter::{escape_path, fps_exact, fps_string};
use crate::media::{EncodeProfile, Ffmpeg, MediaInfo, Progress, find_tool, path_arg, secs};

/// The caption font `make setup` installs, relative to `.tools/`.
pub const DEFAULT_FONT: &str = "fonts/Roboto-Bold.ttf";

/// Parameters of one `compile` step.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompileParams {
    /// How one clip gives way to the next.
    pub transition: Transition,
    /// One optional caption per clip, in clip order; may be shorter than the
    /// clip list (the rest have none).
    #[serde(default)]
    pub captions: Vec<Option<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub kind: TransitionKind,
    /// Length of each fade in seconds (`kind: fade`).
    #[serde(default)]
    pub seconds: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    /// Cross-fade video (`xfade`) and audio (`acrossfade`).
    Fade,
    /// Plain cut: clips back to back.
    None,
}

/// The caption font: `REELAY_FONT`, else `.tools/fonts/Roboto-Bold.ttf` in
/// the nearest ancestor of the current or the executable's directory.
pub fn locate_font() -> Result<PathBuf, TaskError> {
    let var = crate::config::env::FONT;
    if let Some(value) = std::env::var_os(var).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(value);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(TaskError::transient(format!(
                "{var}={} is not a font file; point {var} at a .ttf file, or unset it and run `make setup`",
                path.display()
            )))
        };
    }
    find_tool(DEFAULT_FONT).ok_or_else(|| {
        TaskError::transient(format!(
            "no caption font found (.tools/{DEFAULT_FONT}); run `make setup`, or set {var} to a .ttf file"
        ))
    })
}

/// Checks the parameters against the number of clips, before any probing.
pub fn validate_params(params: &CompileParams, clips: usize) -> Result<(), TaskError> {
    if clips == 0 {
        return Err(TaskError::permanent(
            Some("inputs".to_string()),
            "compile needs at least one clip; list the clips to join",
        ));
    }
    let t = params.transition.seconds;
    if !t.is_finite() || t < 0.0 {
        return Err(TaskError::permanent(
            Some("transition.seconds".to_string()),
            format!("transition.seconds ({t}) must be 0 or more"),
        ));
    }
    if params.transition.kind == TransitionKind::Fade && t <= 0.0 && clips > 1 {
        return Err(TaskError::permanent(
            Some("transition.seconds".to_string()),
            "transition.seconds must be above 0 for kind \"fade\"; set a length such as 0.5, or use kind \"none\" for plain cuts",
        ));
    }
    if params.captions.len() > clips {
        return Err(TaskError::permanent(
            Some("captions".to_string()),
            format!(
                "{} captions for {} clips; give at most one caption per clip",
                params.captions.len(),
                clips
            ),
        ));
    }
    Ok(())
}

/// The shape every clip is normalised to.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub width: u32,
    pub height: u32,
    /// FFmpeg spelling of the frame rate (`30`, `30000/1001`).
    pub fps: String,
    pub fps_value: f64,
}

/// The profile's size and rate where set, else the first clip's (sizes
/// rounded down to even numbers, which H.264 in 4:2:0 needs).
pub fn output_shape(first: &MediaInfo, profile: &EncodeProfile) -> Shape {
    let v = first.video.as_ref().expect("probed clips have video");
    let even = |x: u32| (x / 2 * 2).max(2);
    let width = profile.width.unwrap_or(v.width);
    let height = profile.height.unwrap_or(v.height);
    let fps = profile.fps.unwrap_or(v.fps);
    Shape {
        width: even(width),
        height: even(height),
        fps: fps_string(fps),
        fps_value: fps_exact(fps),
    }
}

/// Joins `inputs` into `output` (an MP4, written in place; the caller
/// publishes it). `font` is needed only when a caption is set. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn run(
    ff: &Ffmpeg,
    inputs: &[PathBuf],
    output: &Path,
    params: &CompileParams,
    profile: &EncodeProfile,
    font: &Path,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<StepOutput, TaskError> {
    validate_params(params, inputs.len())?;
    if let Err((field, message)) = profile.validate() {
        return Err(TaskError::permanent(
            Some(format!("output.{field}")),
            format!("output.{field}: {message}"),
        ));
    }
    let infos = probe_inputs(ff, inputs)?;
    let durations: Vec<f64> = infos.iter().map(|i| i.duration).collect();
    let fade = match params.transition.kind {
        TransitionKind::Fade if inputs.len() > 1 => Some(params.transition.seconds),
        _ => None,
    };
    if let Some(t) = fade {
        check_fade_fits(t, &durations, inputs)?;
    }

    // The caption files live as long as this function.
    let scratch = tempfile::Builder::new()
        .prefix("reelay-captions-")
        .tempdir()
        .map_err(|e| {
            TaskError::transient(format!("cannot make a scratch folder for captions: {e}"))
        })?;
    let caption_files = write_captions(params, inputs.len(), font, scratch.path())?;
    let captioned = caption_files.iter().flatten().count();

    let shape = output_shape(&infos[0], profile);
    let graph = filter_graph(&infos, &shape, profile, fade, &caption_files, font)
        .map_err(|m| TaskError::permanent(None, m))?;
    let total: f64 =
        durations.iter().sum::<f64>() - fade.map_or(0.0, |t| t * (inputs.len() - 1) as f64);

    let mut args: Vec<OsString> = Vec::new();
    for input in inputs {
        args.push("-i".into());
        args.push(path_arg(input));
    }
    for s in [
        "-filter_complex",
        &graph,
        "-map",
        "[vout]",
        "-map",
        "[aout]",
    ] {
        args.push(s.into());
    }
    args.extend(profile.video_args());
    args.extend(profile.audio_args());
    args.extend(profile.container_args());
    args.push(path_arg(output));

    let what = format!(
        "compiling {} clips into `{}`",
        inputs.len(),
        output.display()
    );
    let log = ff
        .run_logged(&args, Some(total), on_progress, cancel, false, &what)
        .map_err(|e| e.into_task_error(Some("inputs")))?;

    let mut out = StepOutput::default();
    let m = &mut out.metadata;
    m.insert("reelay-clips".into(), inputs.len().to_string());
    m.insert(
        "reelay-transition".into(),
        match fade {
            Some(t) => format!("fade:{}", secs(t)),
            None => "none".into(),
        },
    );
    m.insert("reelay-captions".into(), captioned.to_string());
    m.insert(
        "reelay-frames".into(),
        log.last.map_or(0, |p| p.frame).to_string(),
    );
    m.insert("reelay-duration".into(), format!("{total:.3}"));
    m.insert("reelay-fps".into(), shape.fps.clone());
    m.insert(
        "reelay-size".into(),
        format!("{}x{}", shape.width, shape.height),
    );
    Ok(out)
}

/// Each clip's caption in its own file under `scratch` (drawtext reads it
/// with `textfile=`, so no caption is ever parsed as filter syntax); a
/// warning when the font lacks characters the captions use.
fn write_captions(
    params: &CompileParams,
    count: usize,
    font: &Path,
    scratch: &Path,
) -> Result<Vec<Option<PathBuf>>, TaskError> {
    let captions: Vec<Option<&str>> = (0..count)
        .map(|i| {
            params
                .captions
                .get(i)
                .and_then(|c| c.as_deref())
                .filter(|c| !c.trim().is_empty())
        })
        .collect();
    let captioned = captions.iter().filter(|c| c.is_some()).count();
    let missing = crate::policy::bounds::missing_glyphs(font, captions.iter().flatten().copied());
    if !missing.is_empty() {
        tracing::warn!(
            characters = %crate::policy::text::for_terminal(&missing.iter().collect::<String>()),
            font = %font.display(),
            "captions use characters the caption font lacks; they are drawn as boxes (set REELAY_FONT to a font that has them)"
        );
    }
    let mut caption_files: Vec<Option<PathBuf>> = Vec::with_capacity(count);
    for (i, caption) in captions.iter().enumerate() {
        match caption {
            Some(text) => {
                let path = scratch.join(format!("caption-{i}.txt"));
                std::fs::write(&path, text.as_bytes()).map_err(|e| {
                    TaskError::transient(format!("cannot write `{}`: {e}", path.display()))
                })?;
                caption_files.push(Some(path));
            }
            None => caption_files.push(None),
        }
    }
    if captioned > 0 && !font.is_file() {
        return Err(TaskError::transient(format!(
            "caption font `{}` not found; run `make setup`, or set {} to a .ttf file",
            font.display(),
            crate::config::env::FONT
        )));
    }
    Ok(caption_files)
}

/// Probes every input, each a video.
fn probe_inputs(ff: &Ffmpeg, inputs: &[PathBuf]) -> Result<Vec<MediaInfo>, TaskError> {
    let mut infos = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let field = format!("inputs[{i}]");
        let info = ff
            .probe(input)
            .map_err(|e| e.into_task_error(Some(&field)))?;
        info.require_video(input)
            .map_err(|e| e.into_task_error(Some(&field)))?;
        infos.push(info);
    }
    Ok(infos)
}

/// A fade must fit inside every clip: the first and last clips overlap one
/// neighbour, middle clips two.
fn check_fade_fits(t: f64, durations: &[f64], inputs: &[PathBuf]) -> Result<(), TaskError> {
    let n = durations.len();
    for (i, d) in durations.iter().enumerate() {
        let fades = if i == 0 || i == n - 1 { 1.0 } else { 2.0 };
        if t * fades >= *d {
            return Err(TaskError::permanent(
                Some("transition.seconds".to_string()),
                format!(
                    "transition.seconds ({t} s) does not fit clip {i} (`{}`, {d:.2} s){}; use a fade shorter than {:.2} s, or longer clips",
                    inputs[i].display(),
                    if fades > 1.0 {
                        ", which fades in and out"
                    } else {
                        ""
                    },
                    d / fades
                ),
            ));
        }
    }
    Ok(())
}

/// The whole `-filter_complex` graph; outputs `[vout]` and `[aout]`.
pub fn filter_graph(
    infos: &[MediaInfo],
    shape: &Shape,
    profile: &EncodeProfile,
    fade: Option<f64>,
    captions: &[Option<PathBuf>],
    font: &Path,
) -> Result<String, String> {
    let (w, h) = (shape.width, shape.height);
    let rate = profile.audio_rate;
    let layout = profile.channel_layout();
    let mut parts: Vec<String> = Vec::new();
    for (i, info) in infos.iter().enumerate() {
        let d = secs(info.duration);
        let mut v = format!(
            "[{i}:v:0]setpts=PTS-STARTPTS,scale={w}:{h}:force_original_aspect_ratio=decrease,\
             pad={w}:{h}:(ow-iw)/2:(oh-ih)/2,setsar=1,fps={fps},format={pix},\
             tpad=stop_mode=clone:stop_duration={d},trim=duration={d}",
            fps = shape.fps,
            pix = profile.pix_fmt,
        );
        if let Some(Some(text_file)) = captions.get(i) {
            v.push(',');
            v.push_str(&drawtext(font, text_file, h)?);
        }
        v.push_str(&format!("[v{i}]"));
        parts.push(v);
        let a = if info.audio.is_some() {
            format!(
                "[{i}:a:0]asetpts=PTS-STARTPTS,aresample={rate},\
                 aformat=sample_fmts=fltp:sample_rates={rate}:channel_layouts={layout},\
                 apad,atrim=duration={d}[a{i}]"
            )
        } else {
            format!(
                "anullsrc=r={rate}:cl={layout},aformat=sample_fmts=fltp,atrim=duration={d}[a{i}]"
            )
        };
        parts.push(a);
    }
    let n = infos.len();
    if n == 1 {
        parts.push("[v0]null[vout]".into());
        parts.push("[a0]anull[aout]".into());
    } else if let Some(t) = fade {
        let mut acc = infos[0].duration;
        let mut vprev = "v0".to_string();
        let mut aprev = "a0".to_string();
        for (k, info) in infos.iter().enumerate().skip(1) {
            let offset = acc - t;
            acc += info.duration - t;
            let (vnext, anext) = if k == n - 1 {
                ("vout".to_string(), "aout".to_string())
            } else {
                (format!("vx{k}"), format!("ax{k}"))
            };
            parts.push(format!(
                "[{vprev}][v{k}]xfade=transition=fade:duration={}:offset={}[{vnext}]",
                secs(t),
                secs(offset)
            ));
            parts.push(format!(
                "[{aprev}][a{k}]acrossfade=d={}:c1=tri:c2=tri[{anext}]",
                secs(t)
            ));
            vprev = vnext;
            aprev = anext;
        }
    } else {
        let mut s = String::new();
        for i in 0..n {
            s.push_str(&format!("[v{i}][a{i}]"));
        }
        s.push_str(&format!("concat=n={n}:v=1:a=1[vout][aout]"));
        parts.push(s);
    }
    Ok(parts.join(";"))
}

/// White bold text with a dark outline, centred near the bottom.
fn drawtext(font: &Path, text_file: &Path, height: u32) -> Result<String, String> {
    let size = (height / 12).max(12);
    let border = (size / 12).max(2);
    Ok(format!(
        "drawtext=fontfile={font}:textfile={text}:expansion=none:fontsize={size}:\
         fontcolor=white:borderw={border}:bordercolor=black:\
         x=(w-text_w)/2:y=h-text_h-h/10",
        font = escape_path(font)?,
        text = escape_path(text_file)?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_parse() {
        let p: CompileParams = serde_json::from_str(
            r#"{"transition": {"kind": "fade", "seconds": 0.5}, "captions": [null, "Goal!"]}"#,
        )
        .unwrap();
        assert_eq!(p.transition.kind, TransitionKind::Fade);
        assert_eq!(p.captions[1].as_deref(), Some("Goal!"));
        let p: CompileParams = serde_json::from_str(r#"{"transition": {"kind": "none"}}"#).unwrap();
        assert_eq!(p.transition.seconds, 0.0);
        assert!(
            serde_json::from_str::<CompileParams>(r#"{"transition": {"kind": "wipe"}}"#).is_err()
        );
    }

    #[test]
    fn validation() {
        let p = |kind, seconds, captions: usize| CompileParams {
            transition: Transition { kind, seconds },
            captions: vec![None; captions],
        };
        assert!(validate_params(&p(TransitionKind::Fade, 0.5, 2), 2).is_ok());
        let e = validate_params(&p(TransitionKind::Fade, 0.0, 0), 2).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("transition.seconds"));
        let e = validate_params(&p(TransitionKind::None, 0.0, 3), 2).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("captions"));
        let e = validate_params(&p(TransitionKind::None, 0.0, 0), 0).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("inputs"));
    }

    #[test]
    fn fade_must_fit() {
        let inputs = vec![PathBuf::from("a"), PathBuf::from("b"), PathBuf::from("c")];
        assert!(check_fade_fits(0.5, &[2.0, 2.0, 2.0], &inputs).is_ok());
        let e = check_fade_fits(0.6, &[2.0, 1.0, 2.0], &inputs).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("transition.seconds"));
        assert!(e.message.contains("clip 1"), "{}", e.message);
    }
}
