//! Placeholder: replaced by the media branch.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncodeProfile {
    pub video_codec: String,
    pub preset: String,
    pub crf: u32,
}

impl Default for EncodeProfile {
    fn default() -> Self {
        EncodeProfile { video_codec: "libx264".into(), preset: "veryfast".into(), crf: 20 }
    }
}
