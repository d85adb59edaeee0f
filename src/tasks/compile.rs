//! Placeholder: replaced by the media branch.
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CompileParams {
    pub transition: Transition,
    pub captions: Vec<Option<String>>,
}

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Transition {
    pub kind: TransitionKind,
    #[serde(default)]
    pub seconds: f64,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum TransitionKind {
    Fade,
    None,
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    _ff: &crate::media::Ffmpeg,
    _inputs: &[std::path::PathBuf],
    _output: &std::path::Path,
    _params: &CompileParams,
    _profile: &crate::media::EncodeProfile,
    _font: &std::path::Path,
    _on_progress: &mut dyn FnMut(crate::media::Progress),
    _cancel: &tokio_util::sync::CancellationToken,
) -> Result<super::StepOutput, super::TaskError> {
    Err(super::TaskError::transient("stub"))
}

pub fn locate_font() -> Result<std::path::PathBuf, super::TaskError> {
    Err(super::TaskError::transient("stub"))
}
