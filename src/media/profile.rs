//! The output encoding profile: `[output]` in `reelay.toml`.

use std::ffi::OsString;

use serde::{Deserialize, Serialize};

/// How reelay encodes what it writes: H.264 video and AAC audio in MP4, with
/// the index at the front (`+faststart`) so players can start before the
/// download ends.
///
/// ```toml
/// [output]
/// preset = "veryfast"
/// crf = 20
/// width = 1280     # optional: otherwise the first clip's size
/// height = 720
/// fps = 30         # optional: otherwise the first clip's frame rate
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeProfile {
    /// FFmpeg video encoder. Default `libx264`.
    pub video_codec: String,
    /// Encoder speed/size trade-off (`ultrafast` … `veryslow`). Default `veryfast`.
    pub preset: String,
    /// Constant rate factor, 0 (lossless) to 51; lower is better. Default 20.
    pub crf: u8,
    /// Pixel format; `yuv420p` plays everywhere. Default `yuv420p`.
    pub pix_fmt: String,
    /// FFmpeg audio encoder. Default `aac`.
    pub audio_codec: String,
    /// Audio bit rate. Default `128k`.
    pub audio_bitrate: String,
    /// Audio sample rate in Hz. Default 48000.
    pub audio_rate: u32,
    /// Audio channels, 1 to 8. Default 2.
    pub audio_channels: u32,
    /// Output width of compiled exports (even); default: the first clip's.
    pub width: Option<u32>,
    /// Output height of compiled exports (even); default: the first clip's.
    pub height: Option<u32>,
    /// Output frame rate of compiled exports; default: the first clip's.
    pub fps: Option<f64>,
}

impl Default for EncodeProfile {
    fn default() -> Self {
        EncodeProfile {
            video_codec: "libx264".into(),
            preset: "veryfast".into(),
            crf: 20,
            pix_fmt: "yuv420p".into(),
            audio_codec: "aac".into(),
            audio_bitrate: "128k".into(),
            audio_rate: 48000,
            audio_channels: 2,
            width: None,
            height: None,
            fps: None,
        }
    }
}

fn plain_token(field: &str, value: &str) -> Result<(), (String, String)> {
    let ok = !value.is_empty()
        && !value.starts_with('-')
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '+'));
    if ok {
        Ok(())
    } else {
        Err((
            field.to_string(),
            format!("`{value}` is not a valid value; use a plain name such as the default"),
        ))
    }
}

/// Pixel formats every encoding step accepts with the default encoder.
pub const PIX_FMTS: &[&str] = &["yuv420p", "yuvj420p", "yuv422p", "yuv444p"];
/// Pixel formats of the lossless RGB encoder (`libx264rgb`).
pub const RGB_PIX_FMTS: &[&str] = &["rgb24", "bgr24", "bgr0"];

impl EncodeProfile {
    /// Checks every field; the error is `(field, message with the fix)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        plain_token("video_codec", &self.video_codec)?;
        plain_token("preset", &self.preset)?;
        plain_token("pix_fmt", &self.pix_fmt)?;
        // A plain token is not enough: any other format fails every encode
        // later (the encoders take 8-bit YUV; RGB needs another encoder).
        let formats = if self.video_codec == "libx264rgb" {
            RGB_PIX_FMTS
        } else {
            PIX_FMTS
        };
        if !formats.contains(&self.pix_fmt.as_str()) {
            return Err((
                "pix_fmt".into(),
                format!(
                    "`{}` is not a pixel format reelay encodes with {}; use one of {} (default yuv420p)",
                    self.pix_fmt,
                    self.video_codec,
                    formats.join(", ")
                ),
            ));
        }
        plain_token("audio_codec", &self.audio_codec)?;
        plain_token("audio_bitrate", &self.audio_bitrate)?;
        if self.crf > 51 {
            return Err((
                "crf".into(),
                format!("{} is out of range; use 0 to 51 (default 20)", self.crf),
            ));
        }
        if !(8000..=192_000).contains(&self.audio_rate) {
            return Err((
                "audio_rate".into(),
                format!(
                    "{} Hz is out of range; use 8000 to 192000 (default 48000)",
                    self.audio_rate
                ),
            ));
        }
        if !(1..=8).contains(&self.audio_channels) {
            return Err((
                "audio_channels".into(),
                format!(
                    "{} is out of range; use 1 to 8 (default 2)",
                    self.audio_channels
                ),
            ));
        }
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = v
                && (v == 0 || v % 2 != 0 || v > 8192)
            {
                return Err((
                    name.into(),
                    format!("{v} is not allowed; use an even number from 2 to 8192"),
                ));
            }
        }
        if self.width.is_some() != self.height.is_some() {
            return Err((
                "width".into(),
                "width and height go together: set both, or neither to keep the first clip's size"
                    .into(),
            ));
        }
        if let Some(fps) = self.fps
            && !(fps.is_finite() && fps > 0.0 && fps <= 240.0)
        {
            return Err((
                "fps".into(),
                format!("{fps} is not allowed; use a frame rate above 0 and at most 240"),
            ));
        }
        Ok(())
    }

    /// Video encoder arguments (codec, preset, quality, pixel format).
    pub fn video_args(&self) -> Vec<OsString> {
        [
            "-c:v",
            &self.video_codec,
            "-preset",
            &self.preset,
            "-crf",
            &self.crf.to_string(),
            "-pix_fmt",
            &self.pix_fmt,
        ]
        .iter()
        .map(OsString::from)
        .collect()
    }

    /// Audio encoder arguments (codec, bit rate, sample rate, channels).
    pub fn audio_args(&self) -> Vec<OsString> {
        [
            "-c:a",
            &self.audio_codec,
            "-b:a",
            &self.audio_bitrate,
            "-ar",
            &self.audio_rate.to_string(),
            "-ac",
            &self.audio_channels.to_string(),
        ]
        .iter()
        .map(OsString::from)
        .collect()
    }

    /// Container arguments: MP4 with the index up front. Goes right before
    /// the output path.
    pub fn container_args(&self) -> Vec<OsString> {
        ["-movflags", "+faststart", "-f", "mp4"]
            .iter()
            .map(OsString::from)
            .collect()
    }

    /// FFmpeg's name for the channel layout of `audio_channels`.
    pub fn channel_layout(&self) -> &'static str {
        channel_layout(self.audio_channels)
    }
}

/// FFmpeg's default layout name for a channel count.
pub(crate) fn channel_layout(channels: u32) -> &'static str {
    match channels {
        1 => "mono",
        2 => "stereo",
        3 => "2.1",
        4 => "quad",
        5 => "5.0",
        6 => "5.1",
        7 => "6.1",
        _ => "7.1",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_toml() {
        let p: EncodeProfile = toml::from_str("crf = 23\nwidth = 1280\nheight = 720").unwrap();
        assert_eq!(p.crf, 23);
        assert_eq!(p.preset, "veryfast");
        assert_eq!(p.width, Some(1280));
        p.validate().unwrap();
        let err = toml::from_str::<EncodeProfile>("crff = 23").unwrap_err();
        assert!(err.to_string().contains("crff"), "{err}");
    }

    #[test]
    fn validation_names_the_field() {
        let p = EncodeProfile {
            crf: 60,
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "crf");
        let p = EncodeProfile {
            preset: "-i".into(),
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "preset");
        let p = EncodeProfile {
            width: Some(641),
            height: Some(360),
            ..Default::default()
        };
        assert_eq!(p.validate().unwrap_err().0, "width");
    }

    #[test]
    fn args_carry_the_settings() {
        let p = EncodeProfile::default();
        let v: Vec<String> = p
            .video_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            v,
            [
                "-c:v", "libx264", "-preset", "veryfast", "-crf", "20", "-pix_fmt", "yuv420p"
            ]
        );
        let a: Vec<String> = p
            .audio_args()
            .into_iter()
            .map(|s| s.into_string().unwrap())
            .collect();
        assert_eq!(
            a,
            ["-c:a", "aac", "-b:a", "128k", "-ar", "48000", "-ac", "2"]
        );
    }
}
