//! How a media failure becomes a step failure. It lives with the steps, not
//! with FFmpeg: `media` knows nothing of tasks, the steps decide what is
//! the input's fault (permanent) and what the machine's (transient).

use super::{ErrorClass, TaskError};
use crate::media::MediaError;

impl MediaError {
    /// Whether retrying could help.
    pub fn class(&self) -> ErrorClass {
        match self {
            MediaError::Unreadable { .. } | MediaError::Unsuitable { .. } => ErrorClass::Permanent,
            MediaError::Failed { stderr, .. } => {
                let s = stderr.to_ascii_lowercase();
                let infra = [
                    "no space left",
                    "cannot allocate memory",
                    "resource temporarily unavailable",
                    "too many open files",
                    "input/output error",
                    "permission denied",
                    "read-only file system",
                    "disk quota exceeded",
                ];
                if infra.iter().any(|m| s.contains(m)) {
                    ErrorClass::Transient
                } else {
                    ErrorClass::Permanent
                }
            }
            MediaError::NotFound { .. }
            | MediaError::Spawn { .. }
            | MediaError::Cancelled { .. }
            | MediaError::Io { .. } => ErrorClass::Transient,
        }
    }

    /// As a step failure blaming `field` (for example `input`, `inputs[1]`).
    pub fn into_task_error(self, field: Option<&str>) -> TaskError {
        let class = self.class();
        TaskError {
            class,
            field: match class {
                ErrorClass::Permanent => field.map(str::to_string),
                ErrorClass::Transient => None,
            },
            message: self.to_string(),
        }
    }
}

impl From<MediaError> for TaskError {
    fn from(e: MediaError) -> Self {
        e.into_task_error(None)
    }
}
