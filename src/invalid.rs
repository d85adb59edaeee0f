//! One shape for every "this input is wrong" error: the object it is in,
//! the field at fault, what is wrong with it, and how to fix it. The
//! configuration (`ConfigError`), job manifests (`ManifestError`) and the
//! checks they call all answer with it, so a message reads the same
//! wherever it comes from.

/// A wrong value, located: `reelay.toml: `queue.visibility_seconds`: 2 is
/// out of range. Fix: use 5 to 43200`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{object}: `{field}`: {problem}. Fix: {fix}")]
pub struct Invalid {
    /// The file or bucket object, e.g. `reelay.toml`, `jobs/a.json`.
    pub object: String,
    /// A path such as `rules[0].output` or `clips[1].end`.
    pub field: String,
    pub problem: String,
    pub fix: String,
}

impl Invalid {
    pub fn new(
        object: impl Into<String>,
        field: impl Into<String>,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) -> Invalid {
        Invalid {
            object: object.into(),
            field: field.into(),
            problem: problem.into(),
            fix: fix.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_object_field_problem_and_fix() {
        let e = Invalid::new(
            "reelay.toml",
            "concurrency",
            "0 is out of range",
            "use 1 to 256",
        );
        assert_eq!(
            e.to_string(),
            "reelay.toml: `concurrency`: 0 is out of range. Fix: use 1 to 256"
        );
    }
}
