//! The media layer: one FFmpeg wrapper (on `ffmpeg-sidecar`), probing, the
//! output encoding profile, and the safe spelling of paths and filter values.
//!
//! Everything here is **blocking**: FFmpeg is a subprocess and the wrapper
//! waits for it. Async callers run these functions inside
//! `tokio::task::spawn_blocking`.

mod error;
mod ffmpeg;
pub mod filter;
mod info;
mod locate;
mod mp4_header;
pub mod pipe;
mod probe;
mod profile;
pub mod splice;

use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use error::MediaError;
pub use ffmpeg::{Ffmpeg, Pipe, PipedFfmpeg, Progress};
pub use info::{AudioInfo, MediaInfo, VideoInfo};
pub use locate::find_tool;
pub use profile::EncodeProfile;

/// The argument FFmpeg gets for an input or output path.
///
/// The path is made absolute and prefixed with `file:`, so that it can never
/// read as an option (a name starting with `-`) nor as another protocol
/// (`http:`, `concat:`, `pipe:`): FFmpeg's `file` protocol takes everything
/// after the prefix verbatim. Non-UTF-8 bytes pass through untouched.
pub fn path_arg(path: &Path) -> OsString {
    let abs = absolute(path);
    let mut arg = OsString::from("file:");
    arg.push(abs.as_os_str());
    arg
}

/// `path` made absolute against the current directory (without touching the
/// file system beyond reading the current directory).
pub(crate) fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// A number as FFmpeg should read it: plain decimal, never exponent form.
pub(crate) fn secs(value: f64) -> String {
    let s = format!("{value:.6}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s.is_empty() || s == "-" {
        "0".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_arg_is_absolute_and_prefixed() {
        let arg = path_arg(Path::new("-i evil.mp4"));
        let s = arg.to_str().unwrap();
        assert!(s.starts_with("file:/"), "{s}");
        assert!(s.ends_with("/-i evil.mp4"), "{s}");
        let arg = path_arg(Path::new("http://example.com/x.mp4"));
        assert!(arg.to_str().unwrap().starts_with("file:/"));
    }

    #[test]
    fn secs_is_plain_decimal() {
        assert_eq!(secs(3.0), "3");
        assert_eq!(secs(0.5), "0.5");
        assert_eq!(secs(1e-7), "0");
        assert_eq!(secs(12.345678), "12.345678");
        assert_eq!(secs(1e9), "1000000000");
    }
}
