//! Shared helpers for the end-to-end tests: real FFmpeg making real media, a
//! local bucket, and the `reelay` binary.
#![allow(dead_code)]

pub mod aws;
pub mod fault_proxy;
pub mod media;
pub mod moto;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use reelay::media::Ffmpeg;
use reelay::runtime::journal::{Journal, JournalEntry};
use reelay::runtime::local::journal_path;

pub fn ffmpeg() -> Ffmpeg {
    Ffmpeg::locate().expect("ffmpeg not found: run `make setup` first")
}

/// A test video: moving pattern, optional tone, H.264/AAC.
pub fn make_video(path: &Path, seconds: f64, size: &str, fps: u32, audio: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut args: Vec<String> = vec![
        "-y".into(),
        "-hide_banner".into(),
        "-loglevel".into(),
        "error".into(),
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("testsrc2=size={size}:rate={fps}:duration={seconds}"),
    ];
    if audio {
        args.extend([
            "-f".into(),
            "lavfi".into(),
            "-i".into(),
            format!("sine=frequency=440:duration={seconds}"),
        ]);
    }
    args.extend([
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "ultrafast".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-g".into(),
        format!("{fps}"),
    ]);
    if audio {
        args.extend(["-c:a".into(), "aac".into(), "-shortest".into()]);
    }
    args.push(path.to_str().unwrap().into());
    let status = Command::new(ffmpeg().path()).args(&args).status().unwrap();
    assert!(status.success(), "ffmpeg could not make {}", path.display());
}

pub fn duration(path: &Path) -> f64 {
    ffmpeg().probe(path).expect("probe").duration
}

pub fn reelay() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelay"));
    cmd.env("RUST_LOG", "warn");
    cmd
}

/// Runs `reelay dev --exit-when-idle` on `root` with `config`.
pub fn dev_until_idle(root: &Path, config: Option<&Path>) -> Output {
    let mut cmd = reelay();
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    let out = cmd
        .arg("dev")
        .arg("--root")
        .arg(root)
        .arg("--exit-when-idle")
        .output()
        .unwrap();
    // The exit code says whether anything was dead-lettered, and only that.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let dead_lettered = stderr.contains("went to the dead-letter queue");
    assert_eq!(
        out.status.success(),
        !dead_lettered,
        "reelay dev exited {} (dead letters: {dead_lettered}): {stderr}",
        out.status
    );
    out
}

/// A config with fast retries so bad input reaches the DLQ quickly.
pub fn fast_retry_config(dir: &Path) -> PathBuf {
    let path = dir.join("reelay.toml");
    std::fs::write(&path, "concurrency = 2\n[queue]\nvisibility_seconds = 10\nmax_receive_count = 2\nretry_seconds = 1\n").unwrap();
    path
}

pub fn write_job(root: &Path, key: &str, job: &serde_json::Value) {
    let path = root.join(key);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, serde_json::to_vec_pretty(job).unwrap()).unwrap();
}

pub fn journal(root: &Path) -> Vec<JournalEntry> {
    Journal::read(&journal_path(root))
}

/// Executions started per task id.
pub fn starts_per_task(entries: &[JournalEntry]) -> std::collections::BTreeMap<String, usize> {
    let mut m = std::collections::BTreeMap::new();
    for e in entries.iter().filter(|e| e.event == "start") {
        *m.entry(e.task.clone()).or_insert(0) += 1;
    }
    m
}

pub fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One frame as raw RGB24 at `t` seconds.
pub fn frame_rgb(path: &Path, t: f64) -> (Vec<u8>, u32, u32) {
    let info = ffmpeg().probe(path).unwrap();
    let v = info.video.expect("video stream");
    let out = Command::new(ffmpeg().path())
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-ss",
            &format!("{t}"),
            "-i",
        ])
        .arg(path)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"])
        .output()
        .unwrap();
    assert!(out.status.success());
    (out.stdout, v.width, v.height)
}

/// Every frame of `path` as RGB24, and the frame size.
pub fn decode_all(path: &Path) -> (u32, u32, Vec<Vec<u8>>) {
    let v = ffmpeg().probe(path).unwrap().video.expect("video stream");
    let out = Command::new(ffmpeg().path())
        .args(["-hide_banner", "-loglevel", "error", "-i"])
        .arg(path)
        .args([
            "-map",
            "0:v:0",
            "-fps_mode",
            "passthrough",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let len = (v.width * v.height * 3) as usize;
    assert_eq!(out.stdout.len() % len, 0);
    (
        v.width,
        v.height,
        out.stdout.chunks_exact(len).map(<[u8]>::to_vec).collect(),
    )
}

/// Peak signal-to-noise ratio of two 8-bit buffers, in dB.
pub fn psnr(a: &[u8], b: &[u8]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mse = a
        .iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.len() as f64;
    10.0 * (255.0f64 * 255.0 / mse).log10()
}
