//! Symlink-safe filesystem writes inside a local bucket folder.
//!
//! A user controls the bucket folder, so any folder in it (even reelay's own
//! `.reelay/`) may be a symlink to somewhere else. Every write therefore checks
//! each path component below the root with `lstat`, refuses a symlink, and
//! opens files with `O_NOFOLLOW` where it appends.

use std::fs::File;
use std::io::{Error, ErrorKind, Result, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};

/// The error reelay gives for a write (or read) that would pass through a
/// symlink or leave `root`: it names the path and the fix.
fn refused(path: &Path, why: &str) -> Error {
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{} {why}; reelay only reads and writes real files and folders inside the bucket folder. Fix: replace the symlink with a real folder or file",
            path.display()
        ),
    )
}

/// The first component of `path` below `root` that is a symlink, if any.
/// Components that do not exist yet end the walk (they will be created as
/// real folders). `path` must be `root` joined with normal components.
pub fn first_symlink(root: &Path, path: &Path) -> Result<Option<PathBuf>> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| refused(path, "is outside the bucket folder"))?;
    let mut current = root.to_path_buf();
    for component in rel.components() {
        match component {
            Component::Normal(part) => current.push(part),
            _ => return Err(refused(path, "is not a plain path below the bucket folder")),
        }
        match std::fs::symlink_metadata(&current) {
            Ok(m) if m.file_type().is_symlink() => return Ok(Some(current)),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Fails when any component of `path` below `root` is a symlink.
pub fn ensure_no_symlink(root: &Path, path: &Path) -> Result<()> {
    match first_symlink(root, path)? {
        Some(link) => Err(refused(&link, "is a symlink")),
        None => Ok(()),
    }
}

/// `create_dir_all`, refusing symlinks before and after (a folder created
/// between the checks by someone else is caught by the second).
pub fn create_dirs(root: &Path, dir: &Path) -> Result<()> {
    ensure_no_symlink(root, dir)?;
    std::fs::create_dir_all(dir)?;
    ensure_no_symlink(root, dir)
}

/// Writes `bytes` to `path` atomically (temp file in `tmp_dir`, then rename),
/// never through a symlink. A rename replaces a symlink at `path` itself
/// rather than following it.
pub fn write_atomic(root: &Path, tmp_dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        create_dirs(root, parent)?;
    }
    let mut tmp = new_temp(root, tmp_dir)?;
    tmp.write_all(bytes)?;
    ensure_no_symlink(root, path)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A temp file in `tmp_dir`, which must be a real folder inside `root`.
pub fn new_temp(root: &Path, tmp_dir: &Path) -> Result<tempfile::NamedTempFile> {
    ensure_no_symlink(root, tmp_dir)?;
    tempfile::NamedTempFile::new_in(tmp_dir)
}

/// Opens `path` for appending (creating it), refusing a symlinked file or a
/// symlinked parent folder.
pub fn open_append(path: &Path) -> Result<File> {
    if let Some(parent) = path.parent()
        && std::fs::symlink_metadata(parent).is_ok_and(|m| m.file_type().is_symlink())
    {
        return Err(refused(parent, "is a symlink"));
    }
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                refused(path, "is a symlink")
            } else {
                e
            }
        })
}

/// Refuses an output path that is one of the inputs under another name
/// (`sub/../a.mp4`, a hard link, a symlink): writing it would truncate the
/// input before it is read.
pub fn ensure_not_an_input(output: &Path, inputs: &[PathBuf]) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let Ok(out) = std::fs::metadata(output) else {
        return Ok(());
    };
    for input in inputs {
        if let Ok(inp) = std::fs::metadata(input)
            && inp.dev() == out.dev()
            && inp.ino() == out.ino()
        {
            return Err(Error::new(
                ErrorKind::AlreadyExists,
                format!(
                    "--output `{}` is the input `{}` itself; writing it would destroy the input. Fix: write the output to another file",
                    output.display(),
                    input.display()
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_symlinked_folder_anywhere_below_the_root_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("a")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("a/link")).unwrap();
        let target = root.path().join("a/link/b/c.json");
        assert!(first_symlink(root.path(), &target).unwrap().is_some());
        let tmp = root.path().join("tmp");
        std::fs::create_dir_all(&tmp).unwrap();
        let e = write_atomic(root.path(), &tmp, &target, b"x").unwrap_err();
        assert!(e.to_string().contains("is a symlink"), "{e}");
        assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
        // Not yet existing folders are fine and get created for real.
        write_atomic(root.path(), &tmp, &root.path().join("a/new/c.json"), b"x").unwrap();
    }

    #[test]
    fn an_output_that_is_an_input_under_another_name_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a.mp4"), b"video").unwrap();
        let inputs = [dir.path().join("a.mp4")];
        let e = ensure_not_an_input(&dir.path().join("sub/../a.mp4"), &inputs).unwrap_err();
        assert!(e.to_string().contains("is the input"), "{e}");
        ensure_not_an_input(&dir.path().join("sub/b.mp4"), &inputs).unwrap();
    }

    #[test]
    fn append_refuses_a_symlinked_file() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, b"keep").unwrap();
        std::os::unix::fs::symlink(&victim, root.path().join("journal.jsonl")).unwrap();
        assert!(open_append(&root.path().join("journal.jsonl")).is_err());
        assert_eq!(std::fs::read(&victim).unwrap(), b"keep");
    }
}
