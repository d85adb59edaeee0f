//! What can go wrong with FFmpeg, each case naming the file, the problem and
//! the fix.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// No FFmpeg binary could be found or run.
    #[error(
        "no working ffmpeg found ({tried}): set {var} to an ffmpeg binary, or run `make setup` to install one into .tools/bin",
        var = crate::config::env::FFMPEG
    )]
    NotFound { tried: String },

    /// The binary exists but could not be started.
    #[error("could not start ffmpeg `{}`: {source}; check {var} or run `make setup`", path.display(), var = crate::config::env::FFMPEG)]
    Spawn {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The input is not something FFmpeg can read as media (empty, truncated,
    /// not a video at all).
    #[error("`{}` is not a readable media file: {reason}; upload a complete video file (MP4, MOV, MKV, WebM)", path.display())]
    Unreadable { path: PathBuf, reason: String },

    /// The input reads, but lacks what the step needs.
    #[error("`{}`: {reason}", path.display())]
    Unsuitable { path: PathBuf, reason: String },

    /// FFmpeg ran and exited with an error.
    #[error("ffmpeg failed while {what} (exit status {status}): {stderr}")]
    Failed {
        what: String,
        status: String,
        stderr: String,
    },

    /// The run was cancelled; the child was killed.
    #[error("ffmpeg was cancelled while {what}")]
    Cancelled { what: String },

    #[error("I/O on `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
