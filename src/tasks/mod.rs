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

/// Bad input, located: a permanent error on its field, its message the
/// whole object/field/problem/fix line.
impl From<crate::invalid::Invalid> for TaskError {
    fn from(e: crate::invalid::Invalid) -> Self {
        TaskError::permanent(Some(e.field.clone()), e.to_string())
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
mod media_error;
pub mod overlay;

pub mod registry;

pub use registry::{Hardware, StepKind, step};

/// Checks `params` deserialise and validate for `kind`; the message names
/// the field at fault.
pub fn validate_params(kind: StepKind, params: &serde_json::Value) -> Result<(), String> {
    step(kind).validate(params)
}
