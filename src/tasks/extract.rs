//! Placeholder: replaced by the media branch.
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ExtractParams {
    pub start: f64,
    pub end: f64,
    #[serde(default = "yes")]
    pub accurate: bool,
}

fn yes() -> bool {
    true
}

#[allow(clippy::too_many_arguments)]
pub fn run(
    _ff: &crate::media::Ffmpeg,
    _input: &std::path::Path,
    _output: &std::path::Path,
    _params: &ExtractParams,
    _profile: &crate::media::EncodeProfile,
    _on_progress: &mut dyn FnMut(crate::media::Progress),
    _cancel: &tokio_util::sync::CancellationToken,
) -> Result<super::StepOutput, super::TaskError> {
    Err(super::TaskError::transient("stub"))
}
