//! What a probe says about a media file, by either of its paths
//! ([`super::mp4_header`] or `ffmpeg -i`).

use std::path::Path;

use super::MediaError;

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
    /// The header shows that every frame lasts exactly one frame at the
    /// exact rational of `fps`, so the overlay's graph needs no `fps` filter
    /// to put frames on its grid. False whenever FFmpeg probed the file.
    pub constant_rate: bool,
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
