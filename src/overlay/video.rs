//! The overlay step's video: FFmpeg decodes, draws and encodes in one
//! process, the drawing done by its own filters from small per-frame masks
//! that Rust writes to its stdin ([`super::graph`]); no decoded frame
//! leaves FFmpeg. The clip's audio is copied. A scene that changes no
//! pixel is a plain re-encode ([`direct_args`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;
use std::process::ChildStdin;
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Scene;
use super::graph::{GraphPlan, planned_frames};
use crate::media::Pipe;
use crate::media::filter::{fps_exact, fps_string};
use crate::media::pipe::enlarge_pipe;
use crate::media::splice::SplicedFrames;
use crate::media::{EncodeProfile, Ffmpeg, MediaError, MediaInfo, Progress, path_arg};

/// Audio codecs MP4 takes as they are; anything else is re-encoded.
const MP4_AUDIO: &[&str] = &["aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"];
/// Longest graph passed as an argument; a longer one (a long clip with a
/// moving layer) goes through a file (`-/filter_complex`, FFmpeg 7 and
/// later), as one argument may not exceed 128 KiB on Linux.
const INLINE_GRAPH: usize = 96 * 1024;
/// Atlas packets FFmpeg's demuxer may queue ahead of the graph: a deeper
/// queue only holds more fresh frame-sized packets in memory.
const ATLAS_QUEUE: &str = "2";

/// Timings of one render, for benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenderStats {
    pub frames: u64,
    /// Seconds spent drawing masks in Rust.
    pub draw_secs: f64,
    pub total_secs: f64,
}

/// The clip's audio, mapped from input 0: copied when MP4 takes it as it
/// is, else re-encoded with the profile.
fn audio_args(info: &MediaInfo, profile: &EncodeProfile) -> Vec<OsString> {
    let mut a = Vec::new();
    if let Some(audio) = &info.audio {
        a.extend(["-map", "0:a:0"].iter().map(OsString::from));
        if MP4_AUDIO.contains(&audio.codec.as_str()) {
            a.extend(["-c:a", "copy"].iter().map(OsString::from));
        } else {
            a.extend(profile.audio_args());
        }
    }
    a
}

/// The drawing FFmpeg's arguments: the clip as input 0, the atlas of
/// `plan` as raw 8-bit gray frames on stdin as input 1, the graph (`graph_arg`:
/// `-filter_complex GRAPH` or `-/filter_complex FILE`), the audio, the
/// profile.
pub fn graph_args(
    input: &Path,
    output: &Path,
    info: &MediaInfo,
    plan: &GraphPlan,
    fps: f64,
    graph_arg: [OsString; 2],
    profile: &EncodeProfile,
) -> Vec<OsString> {
    // The layers are small: waking a thread pool for each blend costs more
    // than the blend, and the encoder keeps every core busy anyway.
    let mut a: Vec<OsString> = ["-filter_complex_threads", "1", "-i"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(path_arg(input));
    a.extend(
        [
            "-thread_queue_size",
            ATLAS_QUEUE,
            "-f",
            "rawvideo",
            "-pix_fmt",
            "gray",
            "-s",
        ]
        .iter()
        .map(OsString::from),
    );
    a.push(format!("{}x{}", plan.atlas_width, plan.atlas_height).into());
    a.push("-framerate".into());
    a.push(fps_string(fps).into());
    a.extend(["-i".into(), "pipe:0".into()]);
    a.extend(graph_arg);
    a.extend(["-map", "[v]"].iter().map(OsString::from));
    a.extend(audio_args(info, profile));
    a.extend(profile.video_args());
    a.extend(profile.container_args());
    a.push(path_arg(output));
    a
}

/// The arguments of the direct path, for a scene that draws nothing: one
/// FFmpeg decodes and encodes with the output profile at the clip's
/// constant frame rate, the audio as [`graph_args`] treats it.
pub fn direct_args(
    input: &Path,
    output: &Path,
    info: &MediaInfo,
    fps: f64,
    profile: &EncodeProfile,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-i".into(), path_arg(input)];
    a.extend(
        ["-map", "0:v:0", "-fps_mode", "cfr", "-r"]
            .iter()
            .map(OsString::from),
    );
    a.push(fps_string(fps).into());
    a.extend(audio_args(info, profile));
    a.extend(profile.video_args());
    a.extend(profile.container_args());
    a.push(path_arg(output));
    a
}

/// Draws `scene` on every frame of `input` into `output`. Blocking.
#[allow(clippy::too_many_arguments)]
pub fn render(
    ff: &Ffmpeg,
    input: &Path,
    output: &Path,
    info: &MediaInfo,
    scene: &Scene,
    profile: &EncodeProfile,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<RenderStats, MediaError> {
    let started = Instant::now();
    let video = info.require_video(input)?;
    let fps = fps_exact(video.fps.max(0.001));
    let frames = planned_frames(info.duration, fps);
    let Some(plan) = GraphPlan::new(scene, video.fps, frames) else {
        let args = direct_args(input, output, info, video.fps, profile);
        ff.run(&args, Some(info.duration), on_progress, cancel)?;
        return Ok(RenderStats {
            frames,
            draw_secs: 0.0,
            total_secs: started.elapsed().as_secs_f64(),
        });
    };
    let plan = if video.constant_rate {
        plan.for_constant_rate()
    } else {
        plan
    };
    let graph = plan.filter(scene);
    // Kept until FFmpeg has read it.
    let mut script = None;
    let graph_arg: [OsString; 2] = if graph.len() <= INLINE_GRAPH {
        ["-filter_complex".into(), graph.into()]
    } else {
        let file = write_script(&graph)?;
        let arg = ["-/filter_complex".into(), path_arg(file.path())];
        script = Some(file);
        arg
    };
    let args = graph_args(input, output, info, &plan, video.fps, graph_arg, profile);
    let what = format!("drawing the overlay on `{}`", input.display());
    let mut child = ff.spawn_piped(&args, Pipe::Stdin, &what)?;
    let stdin = child.stdin.take().expect("stdin is piped");
    enlarge_pipe(&stdin, plan.atlas_bytes());
    let fed = feed_atlas(stdin, &plan, scene, info.duration, on_progress, cancel);
    if let Err(e @ MediaError::Cancelled { .. }) = fed {
        child.kill();
        return Err(e);
    }
    // FFmpeg's own failure explains a broken pipe, so it goes first.
    let last = child.finish()?;
    let draw_secs = fed?;
    drop(script);
    Ok(RenderStats {
        frames: last.map_or(frames, |p| p.frame),
        draw_secs,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

fn write_script(graph: &str) -> Result<tempfile::NamedTempFile, MediaError> {
    let mut file = tempfile::Builder::new()
        .prefix("reelay-overlay-")
        .suffix(".graph")
        .tempfile()
        .map_err(|source| MediaError::Io {
            path: std::env::temp_dir(),
            source,
        })?;
    file.write_all(graph.as_bytes())
        .map_err(|source| MediaError::Io {
            path: file.path().to_path_buf(),
            source,
        })?;
    Ok(file)
}

/// Writes atlas frames until FFmpeg has the whole clip and stops reading
/// (the graph ends with the clip, `shortest=1`). Returns the seconds spent
/// drawing.
fn feed_atlas(
    stdin: ChildStdin,
    plan: &GraphPlan,
    scene: &Scene,
    duration: f64,
    on_progress: &mut dyn FnMut(Progress),
    cancel: &CancellationToken,
) -> Result<f64, MediaError> {
    let mut frames = SplicedFrames::new(stdin, plan.atlas_bytes());
    // What each buffer of the ring holds, so an unchanged mask is kept.
    let mut caches = vec![Vec::new(); frames.ring()];
    let (mut draw_secs, mut k) = (0.0, 0u64);
    loop {
        if cancel.is_cancelled() {
            return Err(MediaError::Cancelled {
                what: "drawing the overlay".into(),
            });
        }
        let t0 = Instant::now();
        let (i, buf) = frames.next_buffer();
        plan.render_atlas(scene, k, buf, &mut caches[i]);
        draw_secs += t0.elapsed().as_secs_f64();
        match frames.send() {
            Ok(()) => {}
            // FFmpeg has ended; `finish` says whether it went well.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(draw_secs),
            Err(source) => {
                return Err(MediaError::Io {
                    path: "(ffmpeg stdin)".into(),
                    source,
                });
            }
        }
        k += 1;
        let frame = plan.frames_covered(k);
        let t = plan.time(frame);
        on_progress(Progress {
            out_time: t.min(duration),
            frame,
            fraction: (duration > 0.0).then(|| (t / duration).clamp(0.0, 1.0)),
        });
    }
}
