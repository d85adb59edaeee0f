//! Helpers for tests that run real FFmpeg on media they make themselves.
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use reelay::media::{Ffmpeg, path_arg};
use tokio_util::sync::CancellationToken;

/// The project's FFmpeg (`.tools/bin/ffmpeg`, or `REELAY_FFMPEG`).
pub fn ffmpeg() -> Ffmpeg {
    Ffmpeg::locate().expect("ffmpeg for tests: run `make setup` or set REELAY_FFMPEG")
}

/// The caption font (`.tools/fonts/Roboto-Bold.ttf`, or `REELAY_FONT`).
pub fn font() -> PathBuf {
    reelay::tasks::compile::locate_font().expect("caption font for tests: run `make setup`")
}

/// What a synthetic source looks like.
#[derive(Clone, Debug)]
pub struct Synth {
    pub seconds: f64,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// `Some((rate, channels))` for a sine tone, `None` for no audio track.
    pub audio: Option<(u32, u32)>,
    /// Keyframe every `gop` frames, no scene-cut keyframes.
    pub gop: u32,
    /// Index at the front of the file (`+faststart`).
    pub faststart: bool,
}

impl Default for Synth {
    fn default() -> Self {
        Synth {
            seconds: 4.0,
            width: 320,
            height: 180,
            fps: 30,
            audio: Some((48000, 2)),
            gop: 30,
            faststart: false,
        }
    }
}

fn os(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// Makes `path`: `testsrc2` video (and a `sine` tone) as H.264/AAC MP4.
pub fn make_video(ff: &Ffmpeg, path: &Path, s: &Synth) {
    let mut args = os(&[
        "-f",
        "lavfi",
        "-i",
        &format!(
            "testsrc2=s={}x{}:r={}:d={}",
            s.width, s.height, s.fps, s.seconds
        ),
    ]);
    if let Some((rate, channels)) = s.audio {
        let layout = if channels == 1 { "mono" } else { "stereo" };
        args.extend(os(&[
            "-f",
            "lavfi",
            "-i",
            &format!("sine=f=440:r={rate}:d={}", s.seconds),
            "-af",
            &format!("aformat=channel_layouts={layout}"),
        ]));
    }
    args.extend(os(&[
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        "-x264-params",
        &format!("keyint={0}:min-keyint={0}:scenecut=0", s.gop),
    ]));
    if s.audio.is_some() {
        args.extend(os(&["-c:a", "aac", "-b:a", "64k"]));
    }
    if s.faststart {
        args.extend(os(&["-movflags", "+faststart"]));
    }
    args.extend(os(&["-f", "mp4"]));
    args.push(path_arg(path));
    ff.run(&args, None, &mut |_| {}, &CancellationToken::new())
        .expect("making a test video");
}

/// One decoded frame at `t` seconds as packed RGB24 (`width * height * 3`).
pub fn frame_rgb(ff: &Ffmpeg, path: &Path, t: f64, scratch: &Path) -> Vec<u8> {
    let out = scratch.join(format!("frame-{}.rgb", (t * 1000.0) as u64));
    let mut args = os(&["-ss", &format!("{t}"), "-i"]);
    args.push(path_arg(path));
    args.extend(os(&[
        "-frames:v",
        "1",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
    ]));
    args.push(path_arg(&out));
    ff.run(&args, None, &mut |_| {}, &CancellationToken::new())
        .expect("decoding a frame");
    std::fs::read(&out).expect("reading the decoded frame")
}

/// A rectangle of a frame: x, y, width, height in pixels.
#[derive(Clone, Copy, Debug)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// Mean absolute difference per channel between two RGB24 frames of
/// `width`, inside `rect`.
pub fn mad(a: &[u8], b: &[u8], width: u32, rect: Rect) -> f64 {
    assert_eq!(a.len(), b.len(), "frames differ in size");
    let mut sum = 0u64;
    let mut n = 0u64;
    for y in rect.y..rect.y + rect.h {
        for x in rect.x..rect.x + rect.w {
            let i = ((y * width + x) * 3) as usize;
            for c in 0..3 {
                sum += u64::from(a[i + c].abs_diff(b[i + c]));
                n += 1;
            }
        }
    }
    sum as f64 / n as f64
}

/// Runs `f` on a thread and fails the test if it takes longer than `limit`:
/// bad input must give an error, never a hang.
pub fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("no result within {limit:?}: a hang"),
        Err(mpsc::RecvTimeoutError::Disconnected) => panic!("the step panicked"),
    }
}
