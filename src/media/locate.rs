//! Finding project-local tools (`.tools/bin/ffmpeg`, `.tools/fonts/…`).

use std::path::{Path, PathBuf};

/// `.tools/<relative>` in the nearest ancestor of the current directory, or
/// else of the running executable's directory, where it exists as a file.
///
/// `make setup` installs FFmpeg and the caption font there, so the binary
/// finds them from anywhere inside the checkout, including from
/// `target/debug/`.
pub fn find_tool(relative: &str) -> Option<PathBuf> {
    let mut starts: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        starts.push(cwd);
    }
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
    {
        starts.push(dir);
    }
    starts.iter().find_map(|start| {
        start
            .ancestors()
            .map(|dir| dir.join(".tools").join(relative))
            .find(|candidate| candidate.is_file())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_tool_is_none() {
        assert!(find_tool("bin/no-such-tool-reelay").is_none());
    }
}
