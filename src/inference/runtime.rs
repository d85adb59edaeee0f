//! Loading ONNX Runtime (`load-dynamic`) once per process.
//!
//! `ort::init` would panic when the library is missing; reelay resolves the
//! path itself and goes through `ort::init_from`, so a missing or broken
//! library is an ordinary error that says how to fix it.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use super::InferenceError;
use crate::config::env;
use crate::models::{find_up, search_starts};

/// Where `models/setup-ort.sh` puts the library, relative to the checkout.
pub const LOCAL_LIB_DIR: &str = ".tools/onnxruntime/lib";
/// The command that installs the library.
pub const SETUP_HINT: &str = "run `bash models/setup-ort.sh` (it extracts libonnxruntime.so.1.31.1 from the onnxruntime==1.31.1 wheel into .tools/onnxruntime/lib/)";

/// The loaded runtime: the library's path and version, and ort's environment.
pub struct Runtime {
    pub library: PathBuf,
    pub version: String,
    pub(crate) env: ort::environment::Environment,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("library", &self.library)
            .field("version", &self.version)
            .finish()
    }
}

static RUNTIME: OnceLock<Runtime> = OnceLock::new();
static INIT: Mutex<()> = Mutex::new(());

/// Finds the library: `$ORT_DYLIB_PATH` when set, else
/// `.tools/onnxruntime/lib/libonnxruntime.so*` walking up from the working
/// directory and from the executable's folder.
pub fn find_library() -> Result<PathBuf, InferenceError> {
    find_library_from(std::env::var_os(env::ORT_DYLIB_PATH), &search_starts())
}

/// [`find_library`] with its inputs given: the value of `ORT_DYLIB_PATH` and
/// the folders to walk up from.
pub fn find_library_from(
    env_value: Option<std::ffi::OsString>,
    starts: &[PathBuf],
) -> Result<PathBuf, InferenceError> {
    if let Some(v) = env_value.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        if p.is_file() {
            return Ok(p);
        }
        return Err(InferenceError::MissingLibrary {
            looked: vec![p],
            hint: format!(
                "{} points at a file that does not exist; fix or unset it, or {SETUP_HINT}",
                env::ORT_DYLIB_PATH
            ),
        });
    }
    let found = find_up(starts, Path::new(LOCAL_LIB_DIR), |dir| {
        library_in(dir).is_some()
    })
    .and_then(|dir| library_in(&dir));
    found.ok_or_else(|| InferenceError::MissingLibrary {
        looked: starts
            .iter()
            .map(|s| s.join("…").join(LOCAL_LIB_DIR).join("libonnxruntime.so*"))
            .collect(),
        hint: format!(
            "{SETUP_HINT}, or set {} to the library's path",
            env::ORT_DYLIB_PATH
        ),
    })
}

/// `dir/libonnxruntime.so`, else the highest-versioned `libonnxruntime.so.*`.
fn library_in(dir: &Path) -> Option<PathBuf> {
    let plain = dir.join("libonnxruntime.so");
    if plain.is_file() {
        return Some(plain);
    }
    let mut versioned: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("libonnxruntime.so."))
        })
        .collect();
    versioned.sort();
    versioned.pop()
}

/// The process's runtime, loading it on first use from [`find_library`].
pub fn runtime() -> Result<&'static Runtime, InferenceError> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let path = find_library()?;
    init_from_path(&path)
}

/// Loads ONNX Runtime from `path` (once per process).
///
/// A path that does not exist is always an error, even when a runtime is
/// already loaded; otherwise, once loaded, later calls return the loaded
/// runtime (ONNX Runtime cannot be loaded twice into one process).
pub fn init_from_path(path: &Path) -> Result<&'static Runtime, InferenceError> {
    if !path.is_file() {
        return Err(InferenceError::MissingLibrary {
            looked: vec![path.to_path_buf()],
            hint: format!(
                "{SETUP_HINT}, or set {} to the library's path",
                env::ORT_DYLIB_PATH
            ),
        });
    }
    let _guard = INIT.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let load_err = |message: String| InferenceError::LoadLibrary {
        path: path.to_path_buf(),
        message,
    };
    let env = ort::init_from(path)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("reelay")
        .with_telemetry(false)
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    let version = library_version(path);
    tracing::info!(library = %path.display(), version = %version, "loaded ONNX Runtime");
    Ok(RUNTIME.get_or_init(|| Runtime {
        library: path.to_path_buf(),
        version,
        env,
    }))
}

/// The version in the file name (`libonnxruntime.so.1.31.1` → `1.31.1`), or
/// the link target's.
fn library_version(path: &Path) -> String {
    let resolved = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    resolved
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("libonnxruntime.so."))
        .unwrap_or("unknown")
        .to_string()
}

/// The execution providers the loaded ONNX Runtime was built with (e.g.
/// `CUDAExecutionProvider`, `CPUExecutionProvider`): what the library can
/// offer, before any of them is registered on this machine.
pub fn available_providers() -> Result<Vec<String>, InferenceError> {
    runtime()?;
    let api = ort::api();
    let mut list: *mut *mut std::ffi::c_char = std::ptr::null_mut();
    let mut n: std::ffi::c_int = 0;
    // SAFETY: the runtime is loaded; ONNX Runtime fills `list` with `n`
    // NUL-terminated names, released below with its own function.
    unsafe {
        let status = (api.GetAvailableProviders)(&mut list, &mut n);
        if !status.0.is_null() {
            let message = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status.0);
            return Err(InferenceError::Ort {
                context: "list its execution providers".into(),
                message,
            });
        }
        let names = (0..usize::try_from(n).unwrap_or(0))
            .map(|i| {
                std::ffi::CStr::from_ptr(*list.add(i))
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        let released = (api.ReleaseAvailableProviders)(list, n);
        if !released.0.is_null() {
            (api.ReleaseStatus)(released.0);
        }
        Ok(names)
    }
}
