//! Step kinds. Each module is one kind with a pure-ish contract: local input
//! files and parameters in, one local output file and extra audit fields out.

use crate::ports::Metadata;

/// Whether retrying can help. Both are retried up to the queue's maximum
/// receive count (the DLQ contract), but permanent ones are not logged as
/// infrastructure trouble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Bad input: the same attempt will fail the same way.
    Permanent,
    /// Infrastructure: a later attempt may succeed.
    Transient,
}

/// A step failure that names what was wrong and how to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub class: ErrorClass,
    /// The parameter or input at fault (`clips[1].end`, `input`), if any.
    pub field: Option<String>,
    pub message: String,
}

impl TaskError {
    pub fn permanent(field: impl Into<Option<String>>, message: impl Into<String>) -> Self {
        TaskError {
            class: ErrorClass::Permanent,
            field: field.into(),
            message: message.into(),
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        TaskError {
            class: ErrorClass::Transient,
            field: None,
            message: message.into(),
        }
    }
}

/// What a step hands back besides its output file.
#[derive(Debug, Default, Clone)]
pub struct StepOutput {
    /// Extra audit fields, e.g. `reelay-mode: fast`.
    pub metadata: Metadata,
}

pub mod compile;
pub mod detect;
pub mod export;
pub mod extract;
pub mod frame;
pub mod overlay;

/// Checks `params` deserialise for `kind`; the message names the problem.
pub fn validate_params(
    kind: crate::pipeline::task::StepKind,
    params: &serde_json::Value,
) -> Result<(), String> {
    use crate::pipeline::task::StepKind;
    fn check<T: serde::de::DeserializeOwned>(params: &serde_json::Value) -> Result<(), String> {
        serde_path_to_error::deserialize::<_, T>(params.clone())
            .map(|_| ())
            .map_err(|e| {
                let path = e.path().to_string();
                format!("{path}: {}", e.into_inner())
            })
    }
    match kind {
        StepKind::Extract => {
            check::<extract::ExtractParams>(params)?;
            let p: extract::ExtractParams =
                serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
            if !(p.start >= 0.0 && p.end > p.start) {
                return Err(format!(
                    "end {} must be greater than start {} (and start 0 or more)",
                    p.end, p.start
                ));
            }
            Ok(())
        }
        StepKind::Compile => check::<compile::CompileParams>(params),
        StepKind::Frame => {
            check::<frame::FrameParams>(params)?;
            let p: frame::FrameParams =
                serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
            p.validate().map_err(|e| e.to_string())
        }
        StepKind::Detect => {
            check::<detect::DetectParams>(params)?;
            let p: detect::DetectParams =
                serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
            detect::validate_params(&p)
        }
        StepKind::Overlay => {
            check::<overlay::OverlayParams>(params)?;
            let p: overlay::OverlayParams =
                serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
            p.spec.validate().map_err(|e| e.to_string())
        }
        StepKind::Export => {
            check::<export::ExportParams>(params)?;
            let p: export::ExportParams =
                serde_json::from_value(params.clone()).map_err(|e| e.to_string())?;
            p.validate(None).map_err(|e| e.to_string())
        }
    }
}
