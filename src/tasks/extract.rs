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
