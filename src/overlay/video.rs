//! The overlay's CPU path: FFmpeg decodes the clip to raw yuv420p on a
//! pipe, Rust draws the [`Scene`] on each frame in place, and a second FFmpeg
//! encodes the frames read from its stdin with the output profile, copying
//! the clip's audio. Three threads (read, draw, write) overlap the pipes
//! with the drawing; frames are recycled, not reallocated.

use std::ffi::OsString;
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::Scene;
use crate::media::filter::{fps_exact, fps_string};
use crate::media::pipe::{FrameReader, FrameWriter, PixelFormat};
use crate::media::{EncodeProfile, Ffmpeg, MediaError, MediaInfo, Progress, path_arg};

/// Audio codecs MP4 takes as they are; anything else is re-encoded.
const MP4_AUDIO: &[&str] = &["aac", "mp3", "ac3", "eac3", "opus", "alac", "flac"];
/// Frames in flight between the threads, each way.
const DEPTH: usize = 3;

/// Timings of one render, for benchmarks.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RenderStats {
    pub frames: u64,
    /// Seconds spent drawing (the Rust compositing alone).
    pub draw_secs: f64,
    pub total_secs: f64,
}

/// The decoder's arguments: the clip's first video stream as raw yuv420p at
/// its constant frame rate.
pub fn decode_args(input: &Path, fps: f64) -> Vec<OsString> {
    let mut a: Vec<OsString> = vec!["-i".into(), path_arg(input)];
    a.extend(
        [
            "-map",
            "0:v:0",
            "-an",
            "-sn",
            "-dn",
            "-fps_mode",
            "cfr",
            "-r",
        ]
        .iter()
        .map(OsString::from),
    );
    a.push(fps_string(fps).into());
    a.extend(
        ["-f", "rawvideo", "-pix_fmt", "yuv420p", "pipe:1"]
            .iter()
            .map(OsString::from),
    );
    a
}

/// The encoder's arguments: raw frames on stdin, the clip's audio copied
/// (or re-encoded when MP4 cannot hold it), the profile's video settings.
pub fn encode_args(
    input: &Path,
    output: &Path,
    info: &MediaInfo,
    width: u32,
    height: u32,
    fps: f64,
    profile: &EncodeProfile,
) -> Vec<OsString> {
    let mut a: Vec<OsString> = ["-f", "rawvideo", "-pix_fmt", "yuv420p", "-s"]
        .iter()
        .map(OsString::from)
        .collect();
    a.push(format!("{width}x{height}").into());
    a.push("-framerate".into());
    a.push(fps_string(fps).into());
    a.extend(["-i".into(), "pipe:0".into(), "-i".into(), path_arg(input)]);
    a.extend(["-map", "0:v:0"].iter().map(OsString::from));
    if let Some(audio) = &info.audio {
        a.extend(["-map", "1:a:0"].iter().map(OsString::from));
        if MP4_AUDIO.contains(&audio.codec.as_str()) {
            a.extend(["-c:a", "copy"].iter().map(OsString::from));
        } else {
            a.extend(profile.audio_args());
        }
    }
    a.extend(profile.video_args());
    a.extend(profile.container_args());
    a.push(path_arg(output));
    a
}

/// The arguments of the direct path, for a scene that draws nothing: one
/// FFmpeg decodes and encodes with the output profile at the clip's
/// constant frame rate, the audio as [`encode_args`] treats it.
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
    if let Some(audio) = &info.audio {
        a.extend(["-map", "0:a:0"].iter().map(OsString::from));
        if MP4_AUDIO.contains(&audio.codec.as_str()) {
            a.extend(["-c:a", "copy"].iter().map(OsString::from));
        } else {
            a.extend(profile.audio_args());
        }
    }
    a.extend(profile.video_args());
    a.extend(profile.container_args());
    a.push(path_arg(output));
    a
}

/// Draws `scene` on every frame of `input` into `output`. Blocking. A scene
/// that draws nothing takes the direct path ([`direct_args`]): raw frames
/// through two pipes cost about 15 % of the codec's speed for nothing.
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
    let (w, h) = (video.width, video.height);
    let fps = fps_exact(video.fps.max(0.001));
    if scene.is_empty() {
        let args = direct_args(input, output, info, video.fps, profile);
        ff.run(&args, Some(info.duration), on_progress, cancel)?;
        let frames = (info.duration * fps).round() as u64;
        return Ok(RenderStats {
            frames,
            draw_secs: 0.0,
            total_secs: started.elapsed().as_secs_f64(),
        });
    }
    let mut reader = FrameReader::spawn(
        ff,
        &decode_args(input, video.fps),
        PixelFormat::Yuv420p,
        w,
        h,
        format!("decoding `{}` for the overlay", input.display()),
    )?;
    let mut writer = FrameWriter::spawn(
        ff,
        &encode_args(input, output, info, w, h, video.fps, profile),
        format!("encoding the overlay onto `{}`", output.display()),
    )?;
    let frame_bytes = reader.frame_bytes();
    let (to_draw, drawn_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(DEPTH);
    let (to_write, write_rx): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(DEPTH);
    let (recycle, recycled): (SyncSender<Vec<u8>>, Receiver<Vec<u8>>) = sync_channel(2 * DEPTH + 2);
    let what = format!("drawing the overlay on `{}`", input.display());
    let mut draw_secs = 0.0;
    let mut frames = 0u64;
    let (read_result, write_result) = std::thread::scope(|s| {
        let read = s.spawn(move || -> Result<(), MediaError> {
            loop {
                let mut buf = recycled
                    .try_recv()
                    .unwrap_or_else(|_| Vec::with_capacity(frame_bytes));
                if !reader.read_frame(&mut buf)? {
                    return Ok(());
                }
                if to_draw.send(buf).is_err() {
                    // The drawing side stopped (cancel or a write error).
                    return Ok(());
                }
            }
        });
        let write = s.spawn(move || -> Result<(), MediaError> {
            for buf in write_rx {
                writer.write_frame(&buf)?;
                let _ = recycle.try_send(buf);
            }
            writer.finish()
        });
        for mut buf in drawn_rx.iter() {
            if cancel.is_cancelled() {
                break;
            }
            let t = frames as f64 / fps;
            let t0 = Instant::now();
            scene.draw(&mut buf, t);
            draw_secs += t0.elapsed().as_secs_f64();
            frames += 1;
            if to_write.send(buf).is_err() {
                break;
            }
            on_progress(Progress {
                out_time: t,
                frame: frames,
                fraction: (info.duration > 0.0).then(|| (t / info.duration).clamp(0.0, 1.0)),
            });
        }
        drop(drawn_rx);
        drop(to_write);
        (
            read.join().expect("the reader thread does not panic"),
            write.join().expect("the writer thread does not panic"),
        )
    });
    if cancel.is_cancelled() {
        return Err(MediaError::Cancelled { what });
    }
    // The encoder's error explains a reader's broken pipe, so it goes first.
    write_result?;
    read_result?;
    if frames == 0 {
        return Err(MediaError::Unsuitable {
            path: input.to_path_buf(),
            reason: "decoded to no video frames; give a clip with video".into(),
        });
    }
    Ok(RenderStats {
        frames,
        draw_secs,
        total_secs: started.elapsed().as_secs_f64(),
    })
}
