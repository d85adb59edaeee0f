//! `reelay bench cpu`: the CPU steps against the bare `ffmpeg` commands that
//! do the same work with the same encoder settings.
//!
//! The configuration is the old system's test: a 90 s 1080p30 source with
//! audio, an accurate `extract` of a 6 s and of a 30 s clip, and a `compile`
//! of three clips with 0.5 s fades (and captions when a font is given). Each
//! case runs reelay's step and the bare command alternately, in this
//! process, `repetitions` times; the report gives every wall time, the
//! medians and their ratio (target: reelay/bare ≤ 1.10).
//!
//! Blocking, and long (minutes on two cores): run it off the async runtime.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::stats::median;
use crate::media::filter::escape_path;
use crate::media::{EncodeProfile, Ffmpeg, MediaError, path_arg, secs};
use crate::tasks::TaskError;
use crate::tasks::compile::{self, CompileParams, Transition, TransitionKind};
use crate::tasks::extract::{self, ExtractParams};

/// What to measure. The defaults are the old system's test configuration.
#[derive(Debug, Clone, Serialize)]
pub struct CpuBenchOptions {
    /// Timed runs of each side of each case.
    pub repetitions: u32,
    /// Source length in seconds.
    pub source_seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Where the extract cuts start, seconds into the source.
    pub extract_start: f64,
    /// One extract case per clip length.
    pub extract_lengths: Vec<f64>,
    /// Clips joined by the compile case, and their length.
    pub compile_clips: usize,
    pub compile_clip_seconds: f64,
    pub fade_seconds: f64,
    /// reelay/bare ratio to meet.
    pub target_ratio: f64,
}

impl Default for CpuBenchOptions {
    fn default() -> Self {
        CpuBenchOptions {
            repetitions: 3,
            source_seconds: 90.0,
            width: 1920,
            height: 1080,
            fps: 30,
            extract_start: 30.0,
            extract_lengths: vec![6.0, 30.0],
            compile_clips: 3,
            compile_clip_seconds: 6.0,
            fade_seconds: 0.5,
            target_ratio: 1.10,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuBenchReport {
    pub ffmpeg: String,
    pub options: CpuBenchOptions,
    pub profile: EncodeProfile,
    /// Seconds spent making the source (not part of any case).
    pub source_make_secs: f64,
    pub cases: Vec<BenchCase>,
    /// Every case's ratio is at most the target.
    pub all_within_target: bool,
}

/// One step measured against its bare command.
#[derive(Debug, Clone, Serialize)]
pub struct BenchCase {
    /// `extract 6s`, `compile 3 clips`.
    pub name: String,
    pub reelay_secs: Vec<f64>,
    pub bare_secs: Vec<f64>,
    pub reelay_median: f64,
    pub bare_median: f64,
    /// `reelay_median / bare_median`: the figure to report.
    pub ratio: f64,
    /// Best of each side, and their ratio: less sensitive to a noisy
    /// neighbour on a shared machine.
    pub reelay_min: f64,
    pub bare_min: f64,
    pub ratio_min: f64,
    pub target: f64,
    pub within_target: bool,
    /// The bare command, for anyone who wants to reproduce it.
    pub bare_command: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("benchmark: {0}")]
    Media(#[from] MediaError),
    #[error("benchmark step failed: {0}")]
    Task(#[from] TaskError),
    #[error("benchmark: {0}")]
    Other(String),
}

/// Runs the CPU benchmark in `scratch` (which it fills with a few hundred
/// MB of video). `font` adds a caption per clip to both sides of the compile
/// case. `log` gets one line per stage.
pub fn run_cpu_bench(
    ff: &Ffmpeg,
    scratch: &Path,
    opts: &CpuBenchOptions,
    profile: &EncodeProfile,
    font: Option<&Path>,
    log: &mut dyn FnMut(&str),
) -> Result<CpuBenchReport, BenchError> {
    if opts.repetitions == 0 {
        return Err(BenchError::Other("repetitions must be at least 1".into()));
    }
    std::fs::create_dir_all(scratch).map_err(|source| MediaError::Io {
        path: scratch.to_path_buf(),
        source,
    })?;
    let cancel = CancellationToken::new();
    let source = scratch.join("bench-source.mp4");
    log(&format!(
        "making a {} s {}x{}@{} source with audio",
        opts.source_seconds, opts.width, opts.height, opts.fps
    ));
    let t = Instant::now();
    make_source(ff, &source, opts, profile, &cancel)?;
    let source_make_secs = t.elapsed().as_secs_f64();

    let bench = CpuBench {
        ff,
        scratch,
        source,
        opts,
        profile,
        cancel,
    };
    let mut cases = Vec::new();
    for &length in &opts.extract_lengths {
        let case = bench.extract_case(length, log)?;
        log(&summary(&case));
        cases.push(case);
    }
    let case = bench.compile_case(font, log)?;
    log(&summary(&case));
    cases.push(case);

    let all_within_target = cases.iter().all(|c| c.within_target);
    Ok(CpuBenchReport {
        ffmpeg: ff.path().display().to_string(),
        options: opts.clone(),
        profile: profile.clone(),
        source_make_secs,
        cases,
        all_within_target,
    })
}

/// What the cases share: FFmpeg, the generated source, the settings.
struct CpuBench<'a> {
    ff: &'a Ffmpeg,
    scratch: &'a Path,
    source: PathBuf,
    opts: &'a CpuBenchOptions,
    profile: &'a EncodeProfile,
    cancel: CancellationToken,
}

impl CpuBench<'_> {
    /// `extract` of `length` seconds against the bare FFmpeg cut.
    fn extract_case(
        &self,
        length: f64,
        log: &mut dyn FnMut(&str),
    ) -> Result<BenchCase, BenchError> {
        let (ff, opts, profile, cancel) = (self.ff, self.opts, self.profile, &self.cancel);
        let start = opts
            .extract_start
            .min((opts.source_seconds - length).max(0.0));
        let params = ExtractParams {
            start,
            end: start + length,
            accurate: true,
        };
        let ours = self.scratch.join("extract-reelay.mp4");
        let bare = self.scratch.join("extract-bare.mp4");
        let bare_args = bare_extract_args(&self.source, &bare, &params, profile, true);
        let name = format!("extract {}s", secs(length));
        log(&format!("timing {name}"));
        time_case(
            &name,
            opts,
            ff,
            &bare_args,
            || {
                extract::run(
                    ff,
                    &self.source,
                    &ours,
                    &params,
                    profile,
                    &mut |_| {},
                    cancel,
                )?;
                Ok(())
            },
            cancel,
        )
    }

    /// `compile` of the clips (cut once, untimed) against the bare FFmpeg
    /// join, with captions when there is a font.
    fn compile_case(
        &self,
        font: Option<&Path>,
        log: &mut dyn FnMut(&str),
    ) -> Result<BenchCase, BenchError> {
        let (ff, opts, profile, cancel) = (self.ff, self.opts, self.profile, &self.cancel);
        let clips = self.cut_compile_clips()?;
        let durations = clips
            .iter()
            .map(|c| ff.probe(c).map(|i| i.duration))
            .collect::<Result<Vec<f64>, _>>()?;
        let captions: Vec<Option<String>> = (0..clips.len())
            .map(|i| font.map(|_| format!("Clip {}", i + 1)))
            .collect();
        let params = CompileParams {
            transition: Transition {
                kind: TransitionKind::Fade,
                seconds: opts.fade_seconds,
            },
            captions: captions.clone(),
        };
        let ours = self.scratch.join("compile-reelay.mp4");
        let bare = self.scratch.join("compile-bare.mp4");
        let bare_args = bare_compile_args(
            &clips,
            &durations,
            &bare,
            opts.fade_seconds,
            &captions,
            font,
            profile,
        )?;
        let name = format!("compile {} clips", clips.len());
        log(&format!("timing {name}"));
        let no_font = PathBuf::new();
        time_case(
            &name,
            opts,
            ff,
            &bare_args,
            || {
                compile::run(
                    ff,
                    &clips,
                    &ours,
                    &params,
                    profile,
                    font.unwrap_or(&no_font),
                    &mut |_| {},
                    cancel,
                )?;
                Ok(())
            },
            cancel,
        )
    }

    /// The clips `compile` joins, spread over the source.
    fn cut_compile_clips(&self) -> Result<Vec<PathBuf>, BenchError> {
        let opts = self.opts;
        let mut clips: Vec<PathBuf> = Vec::new();
        for i in 0..opts.compile_clips {
            let start = (i as f64 * (opts.compile_clip_seconds + 1.0))
                % (opts.source_seconds - opts.compile_clip_seconds).max(1.0);
            let clip = self.scratch.join(format!("compile-clip-{i}.mp4"));
            extract::run(
                self.ff,
                &self.source,
                &clip,
                &ExtractParams {
                    start,
                    end: start + opts.compile_clip_seconds,
                    accurate: true,
                },
                self.profile,
                &mut |_| {},
                &self.cancel,
            )?;
            clips.push(clip);
        }
        Ok(clips)
    }
}

fn summary(c: &BenchCase) -> String {
    format!(
        "{}: reelay {:.2} s, bare ffmpeg {:.2} s (medians), ratio {:.3} (target <= {:.2}; best-of ratio {:.3})",
        c.name, c.reelay_median, c.bare_median, c.ratio, c.target, c.ratio_min
    )
}

/// Alternates the two sides `repetitions` times and summarises.
fn time_case(
    name: &str,
    opts: &CpuBenchOptions,
    ff: &Ffmpeg,
    bare_args: &[OsString],
    mut ours: impl FnMut() -> Result<(), BenchError>,
    cancel: &CancellationToken,
) -> Result<BenchCase, BenchError> {
    let mut reelay_secs = Vec::new();
    let mut bare_secs = Vec::new();
    for rep in 0..opts.repetitions {
        // Alternate which side goes first so neither always gets the warmer
        // cache.
        for side in [rep % 2, 1 - rep % 2] {
            let t = Instant::now();
            if side == 0 {
                ours()?;
                reelay_secs.push(t.elapsed().as_secs_f64());
            } else {
                ff.run(bare_args, None, &mut |_| {}, cancel)?;
                bare_secs.push(t.elapsed().as_secs_f64());
            }
        }
    }
    let reelay_median = median(&reelay_secs);
    let bare_median = median(&bare_secs);
    let ratio = if bare_median > 0.0 {
        reelay_median / bare_median
    } else {
        f64::INFINITY
    };
    let reelay_min = reelay_secs.iter().copied().fold(f64::INFINITY, f64::min);
    let bare_min = bare_secs.iter().copied().fold(f64::INFINITY, f64::min);
    Ok(BenchCase {
        name: name.to_string(),
        reelay_secs,
        bare_secs,
        reelay_median,
        bare_median,
        ratio,
        reelay_min,
        bare_min,
        ratio_min: reelay_min / bare_min,
        target: opts.target_ratio,
        within_target: ratio <= opts.target_ratio,
        bare_command: shell_words(ff, bare_args),
    })
}

/// The command as a person would type it (display only; never executed
/// through a shell).
fn shell_words(ff: &Ffmpeg, args: &[OsString]) -> String {
    let mut words = vec![ff.path().display().to_string()];
    words.extend(args.iter().map(|a| {
        let s = a.to_string_lossy();
        if s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:+=@,".contains(c))
        {
            s.into_owned()
        } else {
            format!("'{}'", s.replace('\'', r"'\''"))
        }
    }));
    words.join(" ")
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The synthetic source: `testsrc2` (moving, detailed) and a tone, encoded
/// once with the profile's settings.
pub fn make_source(
    ff: &Ffmpeg,
    path: &Path,
    opts: &CpuBenchOptions,
    profile: &EncodeProfile,
    cancel: &CancellationToken,
) -> Result<(), MediaError> {
    let d = secs(opts.source_seconds);
    let mut args = os(&[
        "-f",
        "lavfi",
        "-i",
        &format!(
            "testsrc2=s={}x{}:r={}:d={d}",
            opts.width, opts.height, opts.fps
        ),
        "-f",
        "lavfi",
        "-i",
        &format!("sine=f=440:r={}:d={d}", profile.audio_rate),
        "-map",
        "0:v",
        "-map",
        "1:a",
    ]);
    args.extend(profile.video_args());
    args.extend(profile.audio_args());
    args.extend(profile.container_args());
    args.push(path_arg(path));
    ff.run(&args, Some(opts.source_seconds), &mut |_| {}, cancel)
}

/// What a person would run by hand for an accurate cut: input seek, then
/// encode with the same settings.
pub fn bare_extract_args(
    input: &Path,
    output: &Path,
    params: &ExtractParams,
    profile: &EncodeProfile,
    audio: bool,
) -> Vec<OsString> {
    let mut args = os(&[
        "-ss",
        &secs(params.start),
        "-t",
        &secs(params.end - params.start),
        "-i",
    ]);
    args.push(path_arg(input));
    args.extend(os(&["-map", "0:v:0"]));
    if audio {
        args.extend(os(&["-map", "0:a:0"]));
    }
    args.extend(profile.video_args());
    if audio {
        args.extend(profile.audio_args());
    }
    args.extend(profile.container_args());
    args.push(path_arg(output));
    args
}

/// What a person would run by hand to join same-shaped clips with fades
/// (and captions): `xfade` and `acrossfade` chains, nothing else.
pub fn bare_compile_args(
    clips: &[PathBuf],
    durations: &[f64],
    output: &Path,
    fade: f64,
    captions: &[Option<String>],
    font: Option<&Path>,
    profile: &EncodeProfile,
) -> Result<Vec<OsString>, BenchError> {
    let mut args = Vec::new();
    for clip in clips {
        args.push(OsString::from("-i"));
        args.push(path_arg(clip));
    }
    let mut parts = Vec::new();
    for (i, caption) in captions.iter().enumerate() {
        match (caption, font) {
            (Some(text), Some(font)) => {
                let font = escape_path(font).map_err(BenchError::Other)?;
                parts.push(format!(
                    "[{i}:v]drawtext=fontfile={font}:text={text}:fontsize=90:fontcolor=white:\
                     borderw=7:bordercolor=black:x=(w-text_w)/2:y=h-text_h-h/10[v{i}]",
                    text = crate::media::filter::escape_value(text),
                ));
            }
            _ => parts.push(format!("[{i}:v]null[v{i}]")),
        }
    }
    let n = clips.len();
    let mut acc = durations[0];
    let (mut vprev, mut aprev) = ("v0".to_string(), "0:a".to_string());
    for (k, d) in durations.iter().enumerate().take(n).skip(1) {
        let offset = acc - fade;
        acc += d - fade;
        let (vnext, anext) = if k == n - 1 {
            ("vout".to_string(), "aout".to_string())
        } else {
            (format!("x{k}"), format!("y{k}"))
        };
        parts.push(format!(
            "[{vprev}][v{k}]xfade=transition=fade:duration={}:offset={}[{vnext}]",
            secs(fade),
            secs(offset)
        ));
        parts.push(format!(
            "[{aprev}][{k}:a]acrossfade=d={}[{anext}]",
            secs(fade)
        ));
        vprev = vnext;
        aprev = anext;
    }
    args.extend(os(&[
        "-filter_complex",
        &parts.join(";"),
        "-map",
        "[vout]",
        "-map",
        "[aout]",
    ]));
    args.extend(profile.video_args());
    args.extend(profile.audio_args());
    args.extend(profile.container_args());
    args.push(path_arg(output));
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_extract_uses_the_profile() {
        let args = bare_extract_args(
            Path::new("/a.mp4"),
            Path::new("/b.mp4"),
            &ExtractParams {
                start: 30.0,
                end: 36.0,
                accurate: true,
            },
            &EncodeProfile::default(),
            true,
        );
        let s: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(s.windows(2).any(|w| w == ["-preset", "veryfast"]));
        assert!(s.windows(2).any(|w| w == ["-t", "6"]));
        assert_eq!(s.last().unwrap(), "file:/b.mp4");
    }
}
