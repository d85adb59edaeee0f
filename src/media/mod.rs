//! Placeholder: replaced by the media branch.
pub mod profile;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

pub use profile::EncodeProfile;

#[derive(Debug, Clone)]
pub struct Ffmpeg {
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MediaError(pub String);

#[derive(Debug, Clone, Default)]
pub struct Progress {
    pub out_time: f64,
    pub frame: u64,
    pub fraction: Option<f64>,
}

#[derive(Debug, Clone, Default)]
pub struct MediaInfo {
    pub duration: f64,
}

impl Ffmpeg {
    pub fn locate() -> Result<Ffmpeg, MediaError> {
        Ok(Ffmpeg { path: "ffmpeg".into() })
    }
    pub fn at(path: impl Into<PathBuf>) -> Ffmpeg {
        Ffmpeg { path: path.into() }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn run(
        &self,
        _args: &[OsString],
        _expected_duration: Option<f64>,
        _on_progress: &mut dyn FnMut(Progress),
        _cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<(), MediaError> {
        Err(MediaError("stub".into()))
    }
    pub fn probe(&self, _path: &Path) -> Result<MediaInfo, MediaError> {
        Err(MediaError("stub".into()))
    }
}

pub fn path_arg(path: &Path) -> OsString {
    path.as_os_str().to_owned()
}

pub fn find_upwards(rel: &Path) -> Option<PathBuf> {
    let _ = rel;
    None
}
