//! Probing with `ffmpeg -i` (there is no ffprobe): the header FFmpeg prints
//! about its input, parsed by ffmpeg-sidecar's log parser. A plain MP4 or
//! MOV is read directly instead ([`super::mp4_header`]), with the same
//! result.

use std::path::Path;

use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio_util::sync::CancellationToken;

use super::ffmpeg::os_args;
use super::info::{AudioInfo, MediaInfo, VideoInfo};
use super::{Ffmpeg, MediaError, path_arg};

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
                        constant_rate: false,
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
    use crate::media::mp4_header;

    /// Makes a short file with FFmpeg from lavfi sources; `args` go
    /// between the inputs and the output.
    fn make(
        ff: &Ffmpeg,
        dir: &Path,
        name: &str,
        video: &str,
        audio: bool,
        args: &[&str],
    ) -> std::path::PathBuf {
        let out = dir.join(name);
        let mut cmd = std::process::Command::new(ff.path());
        cmd.args(["-v", "error", "-y", "-f", "lavfi", "-i", video]);
        if audio {
            cmd.args(["-f", "lavfi", "-i", "sine=f=440:d=1.3", "-shortest"]);
        }
        let status = cmd.args(args).arg(&out).status().unwrap();
        assert!(status.success(), "making {name}");
        out
    }

    /// On every file the fast path takes, it says exactly what `ffmpeg -i`
    /// says; files it cannot describe so (fragmented, variable rate, not
    /// MP4, AAC that may carry SBR) are left to FFmpeg.
    #[test]
    fn the_header_reader_agrees_with_ffmpeg_or_declines() {
        const X264: &str = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p";
        let ff = Ffmpeg::locate().expect("ffmpeg (make tools)");
        let dir = tempfile::tempdir().unwrap();
        // name, size, rate, seconds, with sound, output options
        let file = |name: &str, size: &str, rate: &str, secs: &str, audio: bool, opts: &str| {
            let video = format!("testsrc2=s={size}:r={rate}:d={secs}");
            let opts: Vec<&str> = opts.split_whitespace().collect();
            make(&ff, dir.path(), name, &video, audio, &opts)
        };
        let x264 = |rest: &str| format!("{X264} {rest}");
        let taken = [
            file("aac30.mp4", "64x48", "30", "1", true, &x264("-c:a aac")),
            file(
                "ntsc.mp4",
                "66x50",
                "30000/1001",
                "1.2",
                true,
                &x264("-c:a aac"),
            ),
            file("pal_silent.mp4", "64x48", "25", "0.52", false, X264),
            file(
                "film.mov",
                "64x48",
                "24000/1001",
                "1",
                true,
                &x264("-c:a aac"),
            ),
            file(
                "fast.mp4",
                "64x48",
                "60",
                "0.5",
                true,
                &x264("-c:a aac -movflags +faststart"),
            ),
            file(
                "mp3.mp4",
                "64x48",
                "12.5",
                "1",
                true,
                &x264("-c:a libmp3lame"),
            ),
            file("opus.mp4", "64x48", "30", "1", true, &x264("-c:a libopus")),
            file("ac3.mov", "64x48", "30", "1", true, &x264("-c:a ac3")),
            file(
                "hevc.mp4",
                "64x48",
                "30",
                "1",
                true,
                "-c:v libx265 -preset ultrafast -x265-params log-level=error -tag:v hvc1 -c:a aac",
            ),
            file(
                "vp9.mp4",
                "64x48",
                "30",
                "0.5",
                false,
                "-c:v libvpx-vp9 -deadline realtime -cpu-used 8",
            ),
            file(
                "stereo48.mp4",
                "64x48",
                "30",
                "1",
                true,
                &x264("-c:a aac -ar 48000 -ac 2"),
            ),
        ];
        for file in &taken {
            let fast = mp4_header::read(file)
                .unwrap_or_else(|| panic!("{} should take the fast path", file.display()));
            let mut slow = probe_with_ffmpeg(&ff, file).unwrap();
            // Only the header can show a constant rate; these files have one.
            let video = fast.video.as_ref().unwrap();
            assert!(video.constant_rate, "{}", file.display());
            if let Some(v) = slow.video.as_mut() {
                v.constant_rate = true;
            }
            assert_eq!(fast, slow, "{}", file.display());
        }
        let ntsc = mp4_header::read(&taken[1]).unwrap();
        assert_eq!(
            ntsc.video.as_ref().map(|v| (v.width, v.height)),
            Some((66, 50))
        );
        assert!((ntsc.video.unwrap().fps - 29.97).abs() < 1e-4);
        assert!(mp4_header::read(&taken[2]).unwrap().audio.is_none());
        assert_eq!(
            mp4_header::read(&taken[5]).unwrap().audio.unwrap().codec,
            "mp3"
        );
        let stereo = mp4_header::read(&taken[10]).unwrap().audio.unwrap();
        assert_eq!((stereo.rate, stereo.channels), (48000, 2));

        let declined = [
            // AAC this slow may carry SBR, which only the decoder sees.
            file(
                "aac22k.mp4",
                "64x48",
                "30",
                "1",
                true,
                &x264("-c:a aac -ar 22050"),
            ),
            file(
                "frag.mp4",
                "64x48",
                "30",
                "1",
                true,
                &x264("-c:a aac -movflags frag_keyframe+empty_moov"),
            ),
            file(
                "vfr.mp4",
                "64x48",
                "30",
                "1",
                false,
                &x264("-vf setpts='if(lt(N,10),N,N*2)/30/TB' -fps_mode vfr"),
            ),
            file("clip.mkv", "64x48", "30", "1", true, &x264("-c:a aac")),
        ];
        for file in &declined {
            assert!(
                mp4_header::read(file).is_none(),
                "{} should go to ffmpeg",
                file.display()
            );
            assert!(probe_with_ffmpeg(&ff, file).unwrap().video.is_some());
        }
        let text = dir.path().join("notes.mp4");
        std::fs::write(&text, "not a video at all").unwrap();
        assert!(mp4_header::read(&text).is_none());
    }

    /// A cut or scribbled-on file is declined or read, never a panic.
    #[test]
    fn damaged_headers_are_declined_without_panicking() {
        let ff = Ffmpeg::locate().expect("ffmpeg (make tools)");
        let dir = tempfile::tempdir().unwrap();
        let src = "testsrc2=s=64x48:r=30:d=0.5";
        let args = ["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"];
        let args = [&args[..], &["-movflags", "+faststart"][..]].concat();
        let whole = std::fs::read(make(&ff, dir.path(), "whole.mp4", src, true, &args)).unwrap();
        let cut = dir.path().join("cut.mp4");
        let moov_end = whole.len().min(4096);
        for at in (0..moov_end).step_by(7) {
            std::fs::write(&cut, &whole[..at]).unwrap();
            let _ = mp4_header::read(&cut);
            let mut bad = whole.clone();
            bad[at] ^= 0xff;
            std::fs::write(&cut, &bad).unwrap();
            let _ = mp4_header::read(&cut);
        }
        std::fs::write(&cut, &whole).unwrap();
        assert!(
            mp4_header::read(&cut).is_some(),
            "the undamaged file is read"
        );
    }

    #[test]
    fn channel_words() {
        assert_eq!(channel_count("mono"), 1);
        assert_eq!(channel_count("stereo"), 2);
        assert_eq!(channel_count("5.1(side)"), 6);
        assert_eq!(channel_count("3 channels"), 3);
    }
}
