//! Probing with `ffmpeg -i` (there is no ffprobe): the header FFmpeg prints
//! about its input, parsed by ffmpeg-sidecar's log parser. A plain MP4 or
//! MOV is read directly instead ([`super::mp4_header`]), with the same
//! result.

use std::path::Path;

use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio_util::sync::CancellationToken;

use super::ffmpeg::os_args;
use super::{Ffmpeg, MediaError, path_arg};

/// What a probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct MediaInfo {
    /// Container duration in seconds (FFmpeg prints it to 10 ms).
    pub duration: f64,
    /// The first video stream, if any.
    pub video: Option<VideoInfo>,
    /// The first audio stream, if any.
    pub audio: Option<AudioInfo>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second as FFmpeg prints it (`30`, `29.97`); see
    /// [`super::filter::fps_exact`] for the exact rational.
    pub fps: f64,
    /// Codec name, e.g. `h264`.
    pub codec: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioInfo {
    /// Sample rate in Hz.
    pub rate: u32,
    pub channels: u32,
    /// Codec name, e.g. `aac`.
    pub codec: String,
}

impl MediaInfo {
    /// The video stream, or an error saying the file has none.
    pub fn require_video(&self, path: &Path) -> Result<&VideoInfo, MediaError> {
        self.video.as_ref().ok_or_else(|| MediaError::Unsuitable {
            path: path.to_path_buf(),
            reason: "has no video stream; give a video file, not audio only or an image".into(),
        })
    }
}

/// Channel count from FFmpeg's layout word (`mono`, `stereo`, `5.1(side)`,
/// `3 channels`).
fn channel_count(layout: &str) -> u32 {
    let layout = layout.trim();
    let base = layout.split('(').next().unwrap_or(layout);
    match base {
        "mono" => 1,
        "stereo" | "downmix" => 2,
        "2.1" | "3.0" => 3,
        "quad" | "4.0" | "3.1" => 4,
        "5.0" | "4.1" => 5,
        "5.1" | "6.0" => 6,
        "6.1" | "7.0" => 7,
        "7.1" => 8,
        other => other
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(2),
    }
}

// The method lives here, beside the parsing it needs, so `ffmpeg.rs` (which
// this file uses to run FFmpeg) does not reach back into this one.
impl Ffmpeg {
    /// Probes `path` with `ffmpeg -i` (no ffprobe here): duration and the
    /// first video and audio streams. An empty, truncated or non-media file
    /// is a [`MediaError::Unreadable`].
    pub fn probe(&self, path: &Path) -> Result<MediaInfo, MediaError> {
        probe(self, path)
    }
}

fn probe(ff: &Ffmpeg, path: &Path) -> Result<MediaInfo, MediaError> {
    let unreadable = |reason: String| MediaError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Err(e) => {
            return Err(MediaError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
        Ok(m) if !m.is_file() => return Err(unreadable("it is not a regular file".into())),
        Ok(m) if m.len() == 0 => return Err(unreadable("the file is empty (0 bytes)".into())),
        Ok(_) => {}
    }
    match super::mp4_header::read(path) {
        Some(info) => Ok(info),
        None => probe_with_ffmpeg(ff, path),
    }
}

/// The probe by `ffmpeg -i`, for any file FFmpeg reads.
pub(super) fn probe_with_ffmpeg(ff: &Ffmpeg, path: &Path) -> Result<MediaInfo, MediaError> {
    let unreadable = |reason: String| MediaError::Unreadable {
        path: path.to_path_buf(),
        reason,
    };
    // `ffmpeg -i X` with no output prints the input header and exits with an
    // error ("At least one output file must be specified"), so the exit
    // status says nothing: the parsed header does.
    let args = os_args([std::ffi::OsString::from("-i"), path_arg(path)]);
    let what = format!("probing `{}`", path.display());
    let (_, log, _) = ff.spawn_and_drain(
        &args,
        None,
        &mut |_| {},
        &CancellationToken::new(),
        true,
        &what,
    )?;

    let mut saw_input = false;
    let mut duration = None;
    let mut video = None;
    let mut audio = None;
    let mut errors = Vec::new();
    for event in &log.events {
        match event {
            FfmpegEvent::ParsedInput(input) if input.index == 0 => saw_input = true,
            FfmpegEvent::ParsedDuration(d) if d.input_index == 0 => duration = Some(d.duration),
            FfmpegEvent::ParsedInputStream(s) if s.parent_index == 0 => {
                if let (None, Some(v)) = (&video, s.video_data()) {
                    video = Some(VideoInfo {
                        width: v.width,
                        height: v.height,
                        fps: f64::from(v.fps),
                        codec: s.format.clone(),
                    });
                } else if let (None, Some(a)) = (&audio, s.audio_data()) {
                    audio = Some(AudioInfo {
                        rate: a.sample_rate,
                        channels: channel_count(&a.channels),
                        codec: s.format.clone(),
                    });
                }
            }
            FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line)
                if !line.contains("At least one output file") =>
            {
                let line = line.trim();
                let line = line.rsplit("] ").next().unwrap_or(line);
                errors.push(line.to_string());
            }
            _ => {}
        }
    }
    if !saw_input {
        // The first error is the cause; the rest repeat it in other words.
        let reason = errors
            .first()
            .cloned()
            .unwrap_or_else(|| "ffmpeg could not open it".to_string());
        return Err(unreadable(explain(&reason)));
    }
    let Some(duration) = duration.filter(|d| d.is_finite() && *d > 0.0) else {
        return Err(unreadable(
            "it has no known duration (a still image, or a stream without an index)".into(),
        ));
    };
    // A video stream whose line could not be parsed (no frame rate) counts
    // as no video: there is nothing to cut by frames.
    Ok(MediaInfo {
        duration,
        video,
        audio,
    })
}

/// FFmpeg's terse reasons, said so that the fix is obvious.
fn explain(reason: &str) -> String {
    if reason.contains("moov atom not found") {
        format!("{reason} (the file is truncated, unfinished, or not an MP4 at all)")
    } else if reason.contains("Invalid data found") {
        format!("{reason} (not a video, or a corrupt one)")
    } else {
        reason.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_words() {
        assert_eq!(channel_count("mono"), 1);
        assert_eq!(channel_count("stereo"), 2);
        assert_eq!(channel_count("5.1(side)"), 6);
        assert_eq!(channel_count("3 channels"), 3);
    }
}
