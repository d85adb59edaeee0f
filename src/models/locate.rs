//! Finding the models folder: `REELAY_MODELS_DIR`, or `models/` above the
//! working directory or the executable.

use std::path::{Path, PathBuf};

use super::{MANIFEST_FILE, ModelError};
use crate::config::env;

/// The models folder: `$REELAY_MODELS_DIR`, else a `models/` folder holding
/// `manifest.toml`, found by walking up from the working directory and then
/// from the executable's folder.
pub fn models_dir() -> Result<PathBuf, ModelError> {
    if let Some(dir) = std::env::var_os(env::MODELS_DIR).filter(|v| !v.is_empty()) {
        let dir = PathBuf::from(dir);
        if dir.join(MANIFEST_FILE).is_file() {
            return Ok(dir);
        }
        return Err(ModelError::NoModelsDir {
            reason: format!(
                "{} is set to {}, which has no {MANIFEST_FILE}",
                env::MODELS_DIR,
                dir.display()
            ),
        });
    }
    let starts = search_starts();
    find_up(&starts, Path::new("models"), |p| {
        p.join(MANIFEST_FILE).is_file()
    })
    .ok_or_else(|| ModelError::NoModelsDir {
        reason: format!(
            "no models/{MANIFEST_FILE} above {}",
            starts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        ),
    })
}

/// The working directory and the executable's folder: where project-local
/// folders are searched from.
pub(crate) fn search_starts() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        v.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        v.push(dir);
    }
    v
}

/// The first `ancestor/rel` (for each start, walking up) that satisfies `ok`.
pub(crate) fn find_up(
    starts: &[PathBuf],
    rel: &Path,
    ok: impl Fn(&Path) -> bool,
) -> Option<PathBuf> {
    starts.iter().find_map(|start| {
        start
            .ancestors()
            .map(|a| a.join(rel))
            .find(|candidate| ok(candidate))
    })
}
