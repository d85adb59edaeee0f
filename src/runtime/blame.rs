//! Says a step's failure in the user's terms: the manifest and its field
//! (`clips[2].end`) rather than the step (`extract-2`, `end`), and bucket keys
//! rather than the worker's local paths.

use std::path::PathBuf;

use crate::pipeline::task::Task;
use crate::tasks::TaskError;

/// The manifest field a step's parameter came from: `extract-2` + `end` →
/// `clips[2].end`. `None` when the step is not per clip.
pub fn manifest_field(step: &str, field: &str) -> Option<String> {
    let (name, index) = step.rsplit_once('-')?;
    let index: usize = index.parse().ok()?;
    match (name, field) {
        ("extract", "start" | "end") => Some(format!("clips[{index}].{field}")),
        ("frame" | "overlay", _) => Some(format!("clips[{index}].{name}")),
        _ => None,
    }
}

/// The object and field a failure of `task` is recorded against: the job's
/// manifest and its field when the parameter came from it, else the input.
pub fn locate(task: &Task, error: &mut TaskError) -> String {
    let input = task.input_keys().next().unwrap_or("").to_string();
    let (Some(job), Some(field)) = (&task.job, error.field.as_deref()) else {
        return input;
    };
    match manifest_field(&task.step, field) {
        Some(mapped) => {
            error.field = Some(mapped);
            job.manifest.clone()
        }
        None => input,
    }
}

/// Replaces the worker's local input paths in `message` by the keys they hold.
pub fn keys_for_paths(message: &str, inputs: &[(PathBuf, String)]) -> String {
    let mut out = message.to_string();
    for (path, key) in inputs {
        let shown = path.display().to_string();
        if !shown.is_empty() {
            out = out.replace(&shown, key);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_fields_become_manifest_fields() {
        assert_eq!(
            manifest_field("extract-2", "end").as_deref(),
            Some("clips[2].end")
        );
        assert_eq!(manifest_field("compile", "captions"), None);
        assert_eq!(manifest_field("extract-x", "end"), None);
        let msg = "end (60 s) is beyond the end of the source `/tmp/reelay-1/input-0.mp4`";
        let inputs = [(
            PathBuf::from("/tmp/reelay-1/input-0.mp4"),
            "sources/a.mp4".to_string(),
        )];
        assert_eq!(
            keys_for_paths(msg, &inputs),
            "end (60 s) is beyond the end of the source `sources/a.mp4`"
        );
    }
}
