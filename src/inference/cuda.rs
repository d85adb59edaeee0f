//! The CUDA side of ONNX Runtime, checked before the CUDA execution provider
//! is registered, so that a machine without a GPU, or an image that lacks a
//! library, fails with an error that names what is missing instead of a
//! loader message from deep inside ONNX Runtime.
//!
//! - [`probe_driver`] opens the NVIDIA driver (`libcuda.so.1`, which the host
//!   provides: the container runtime mounts it) and counts the GPUs.
//! - [`load_libraries`] opens the CUDA 13 runtime, cuBLAS(Lt), cuRAND, NVRTC
//!   and cuDNN 9 that `libonnxruntime_providers_cuda.so` links or loads at
//!   run time, from the folder of the loaded ONNX Runtime (the worker image's
//!   `/opt/reelay/lib`, laid out by `containers/assemble-worker.sh`), else by
//!   the loader's own search. Once they are loaded, the provider's own
//!   `dlopen` finds them by their sonames, with no `LD_LIBRARY_PATH`.
//!
//! Everything goes through `dlopen`, so a binary built with `--features cuda`
//! still starts, and reports, on a machine with no CUDA at all.

use std::ffi::{CStr, CString, c_char, c_int, c_uint, c_void};
use std::path::{Path, PathBuf};

use serde::Serialize;

/// The NVIDIA driver's CUDA library; never shipped in the image.
pub const DRIVER_LIBRARY: &str = "libcuda.so.1";

/// One library the CUDA provider needs, by soname, and what it is.
#[derive(Debug, Clone, Copy)]
pub struct CudaLibrary {
    pub soname: &'static str,
    pub role: &'static str,
}

/// What `libonnxruntime_providers_cuda.so` (onnxruntime-gpu 1.31.1) needs
/// besides the driver, in load order (each after what it links). Its
/// `NEEDED` entries are the first four; it `dlopen`s NVRTC and cuDNN, and
/// cuDNN `dlopen`s its sub-libraries.
pub const LIBRARIES: &[CudaLibrary] = &[
    CudaLibrary {
        soname: "libcudart.so.13",
        role: "CUDA 13 runtime",
    },
    CudaLibrary {
        soname: "libcublasLt.so.13",
        role: "cuBLASLt",
    },
    CudaLibrary {
        soname: "libcublas.so.13",
        role: "cuBLAS",
    },
    CudaLibrary {
        soname: "libcurand.so.10",
        role: "cuRAND",
    },
    CudaLibrary {
        soname: "libnvrtc.so.13",
        role: "NVRTC",
    },
    CudaLibrary {
        soname: "libcudnn_graph.so.9",
        role: "cuDNN 9 graph",
    },
    CudaLibrary {
        soname: "libcudnn_ops.so.9",
        role: "cuDNN 9 ops",
    },
    CudaLibrary {
        soname: "libcudnn_cnn.so.9",
        role: "cuDNN 9 convolutions",
    },
    CudaLibrary {
        soname: "libcudnn_adv.so.9",
        role: "cuDNN 9 advanced",
    },
    CudaLibrary {
        soname: "libcudnn_engines_precompiled.so.9",
        role: "cuDNN 9 precompiled engines",
    },
    CudaLibrary {
        soname: "libcudnn_engines_runtime_compiled.so.9",
        role: "cuDNN 9 runtime-compiled engines",
    },
    CudaLibrary {
        soname: "libcudnn_heuristic.so.9",
        role: "cuDNN 9 heuristics",
    },
    CudaLibrary {
        soname: "libcudnn.so.9",
        role: "cuDNN 9",
    },
];

/// The provider library ONNX Runtime loads from its own folder.
pub const PROVIDER_LIBRARY: &str = "libonnxruntime_providers_cuda.so";

/// How one library loaded.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryStatus {
    pub name: String,
    pub role: String,
    /// The file loaded, or `None` when found by the loader's search (or not at all).
    pub path: Option<PathBuf>,
    pub ok: bool,
    pub error: Option<String>,
}

/// Loads every [`LIBRARIES`] entry (`RTLD_NOW | RTLD_GLOBAL`, so all their
/// symbols bind now) from `ort_library`'s folder, else by name. Loading twice
/// is harmless: the loader counts references.
pub fn load_libraries(ort_library: &Path) -> Vec<LibraryStatus> {
    let dir = ort_dir(ort_library);
    LIBRARIES
        .iter()
        .map(|lib| {
            let local = dir.join(lib.soname);
            let (path, result) = if local.is_file() {
                (Some(local.clone()), dlopen(&local.to_string_lossy()))
            } else {
                (None, dlopen(lib.soname))
            };
            LibraryStatus {
                name: lib.soname.to_string(),
                role: lib.role.to_string(),
                path,
                ok: result.is_ok(),
                error: result
                    .err()
                    .map(|e| format!("{e} (looked in {} and the loader's path)", dir.display())),
            }
        })
        .collect()
}

/// [`load_libraries`], as one error naming the first library that failed
/// (and the provider library, when it is not next to ONNX Runtime).
pub fn require_libraries(ort_library: &Path) -> Result<(), String> {
    let provider = ort_dir(ort_library).join(PROVIDER_LIBRARY);
    if !provider.is_file() {
        return Err(format!(
            "{} is not next to {} (the CPU onnxruntime wheel has no CUDA provider; CUDA needs onnxruntime-gpu's libraries, laid out by containers/assemble-worker.sh)",
            PROVIDER_LIBRARY,
            ort_library.display()
        ));
    }
    match load_libraries(ort_library).into_iter().find(|s| !s.ok) {
        Some(bad) => Err(format!(
            "{} ({}) cannot be loaded: {}",
            bad.name,
            bad.role,
            bad.error.unwrap_or_default()
        )),
        None => Ok(()),
    }
}

/// The folder of the real file behind `ort_library` (links followed).
fn ort_dir(ort_library: &Path) -> PathBuf {
    std::fs::canonicalize(ort_library)
        .unwrap_or_else(|_| ort_library.to_path_buf())
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// One GPU as the driver reports it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct GpuInfo {
    pub id: i32,
    pub name: String,
    pub memory_mib: u64,
    /// `major.minor`, e.g. `7.5` for a T4.
    pub compute_capability: String,
}

/// The driver and its GPUs.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DriverInfo {
    /// The newest CUDA the driver runs, e.g. `13.0`.
    pub cuda_version: String,
    /// The driver's own version (e.g. `580.95.05`), from NVML when it loads.
    pub driver_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
}

/// Why there is no usable GPU.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum DriverError {
    #[error(
        "no NVIDIA driver: {DRIVER_LIBRARY} cannot be loaded ({detail}); install the NVIDIA driver (580 or newer for CUDA 13), or start the container with the NVIDIA runtime (docker --gpus all; ECS gpuCount)"
    )]
    NoDriver { detail: String },
    #[error(
        "the NVIDIA driver ({DRIVER_LIBRARY}) is there but lacks {symbol}: it is too old for CUDA 13"
    )]
    MissingSymbol { symbol: &'static str },
    #[error("the NVIDIA driver failed to initialise: {call} returned {code} ({name})")]
    Call {
        call: &'static str,
        code: i32,
        name: String,
    },
    #[error("the NVIDIA driver loads but sees no CUDA device (cuDeviceGetCount = 0)")]
    NoDevice,
    #[error("CUDA device {id} was asked for, but the driver sees {count} device(s) (0..{count})")]
    NoSuchDevice { id: i32, count: i32 },
}

type CuInit = unsafe extern "C" fn(c_uint) -> c_int;
type CuCount = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CuAttr = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;
type CuErrName = unsafe extern "C" fn(c_int, *mut *const c_char) -> c_int;

/// `CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR` / `_MINOR`.
const CC_MAJOR: c_int = 75;
const CC_MINOR: c_int = 76;

/// Opens the driver, initialises CUDA and lists the GPUs. Cheap (no context
/// is created); safe to call on any machine.
pub fn probe_driver() -> Result<DriverInfo, DriverError> {
    let handle = dlopen(DRIVER_LIBRARY).map_err(|detail| DriverError::NoDriver { detail })?;
    let sym =
        |symbol: &'static str| dlsym(handle, symbol).ok_or(DriverError::MissingSymbol { symbol });
    // SAFETY: each symbol is the CUDA driver API function of that name, cast
    // to its documented C signature.
    unsafe {
        let cu_init = std::mem::transmute::<*mut c_void, CuInit>(sym("cuInit")?);
        let count_fn = std::mem::transmute::<*mut c_void, CuCount>(sym("cuDeviceGetCount")?);
        let get = std::mem::transmute::<*mut c_void, CuGet>(sym("cuDeviceGet")?);
        let name_fn = std::mem::transmute::<*mut c_void, CuName>(sym("cuDeviceGetName")?);
        let version_fn = std::mem::transmute::<*mut c_void, CuVersion>(sym("cuDriverGetVersion")?);
        let mem_fn = std::mem::transmute::<*mut c_void, CuTotalMem>(sym("cuDeviceTotalMem_v2")?);
        let attr_fn = std::mem::transmute::<*mut c_void, CuAttr>(sym("cuDeviceGetAttribute")?);
        let err_name: Option<CuErrName> = dlsym(handle, "cuGetErrorName")
            .map(|p| std::mem::transmute::<*mut c_void, CuErrName>(p));
        let check = |call: &'static str, code: c_int| -> Result<(), DriverError> {
            if code == 0 {
                return Ok(());
            }
            let mut p: *const c_char = std::ptr::null();
            let name = match err_name {
                Some(f) if f(code, &mut p) == 0 && !p.is_null() => {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
                _ => "unknown".to_string(),
            };
            Err(DriverError::Call { call, code, name })
        };
        check("cuInit", cu_init(0))?;
        let mut version = 0;
        check("cuDriverGetVersion", version_fn(&mut version))?;
        let mut count = 0;
        check("cuDeviceGetCount", count_fn(&mut count))?;
        if count == 0 {
            return Err(DriverError::NoDevice);
        }
        let mut gpus = Vec::new();
        for id in 0..count {
            let mut dev = 0;
            check("cuDeviceGet", get(&mut dev, id))?;
            let mut buf = [0 as c_char; 256];
            check("cuDeviceGetName", name_fn(buf.as_mut_ptr(), 256, dev))?;
            let mut bytes = 0usize;
            check("cuDeviceTotalMem", mem_fn(&mut bytes, dev))?;
            let (mut major, mut minor) = (0, 0);
            check("cuDeviceGetAttribute", attr_fn(&mut major, CC_MAJOR, dev))?;
            check("cuDeviceGetAttribute", attr_fn(&mut minor, CC_MINOR, dev))?;
            gpus.push(GpuInfo {
                id,
                name: CStr::from_ptr(buf.as_ptr())
                    .to_string_lossy()
                    .trim()
                    .to_string(),
                memory_mib: (bytes / (1024 * 1024)) as u64,
                compute_capability: format!("{major}.{minor}"),
            });
        }
        Ok(DriverInfo {
            cuda_version: format!("{}.{}", version / 1000, (version % 1000) / 10),
            driver_version: nvml_driver_version(),
            gpus,
        })
    }
}

/// [`probe_driver`] for one device ordinal.
pub fn require_device(id: i32) -> Result<DriverInfo, DriverError> {
    let info = probe_driver()?;
    let count = i32::try_from(info.gpus.len()).unwrap_or(i32::MAX);
    if id < 0 || id >= count {
        return Err(DriverError::NoSuchDevice { id, count });
    }
    Ok(info)
}

/// The driver version string from NVML (`libnvidia-ml.so.1`), if it loads.
fn nvml_driver_version() -> Option<String> {
    type Init = unsafe extern "C" fn() -> c_int;
    type Version = unsafe extern "C" fn(*mut c_char, c_uint) -> c_int;
    let handle = dlopen("libnvidia-ml.so.1").ok()?;
    // SAFETY: NVML functions of these names, with their C signatures.
    unsafe {
        let init = std::mem::transmute::<*mut c_void, Init>(dlsym(handle, "nvmlInit_v2")?);
        let version = std::mem::transmute::<*mut c_void, Version>(dlsym(
            handle,
            "nvmlSystemGetDriverVersion",
        )?);
        if init() != 0 {
            return None;
        }
        let mut buf = [0 as c_char; 96];
        if version(buf.as_mut_ptr(), 96) != 0 {
            return None;
        }
        Some(CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned())
    }
}

/// `dlopen(name, RTLD_NOW | RTLD_GLOBAL)`; the handle is kept for the life
/// of the process. The error is `dlerror()`'s message.
fn dlopen(name: &str) -> Result<*mut c_void, String> {
    let c = CString::new(name).map_err(|_| format!("{name}: bad library name"))?;
    // SAFETY: a NUL-terminated name; dlerror is read right after on this thread.
    unsafe {
        let h = libc::dlopen(c.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL);
        if h.is_null() {
            let e = libc::dlerror();
            return Err(if e.is_null() {
                format!("{name}: cannot be loaded")
            } else {
                CStr::from_ptr(e).to_string_lossy().into_owned()
            });
        }
        Ok(h)
    }
}

fn dlsym(handle: *mut c_void, name: &str) -> Option<*mut c_void> {
    let c = CString::new(name).ok()?;
    // SAFETY: a handle from dlopen and a NUL-terminated name.
    let p = unsafe { libc::dlsym(handle, c.as_ptr()) };
    (!p.is_null()).then_some(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_that_is_not_there_is_named_with_where_it_was_looked_for() {
        let dir = tempfile::tempdir().unwrap();
        let ort = dir.path().join("libonnxruntime.so.1.31.1");
        std::fs::write(&ort, b"").unwrap();
        let err = require_libraries(&ort).unwrap_err();
        assert!(err.contains(PROVIDER_LIBRARY), "{err}");
        std::fs::write(dir.path().join(PROVIDER_LIBRARY), b"").unwrap();
        // Where CUDA 13 is installed system-wide the loader finds it by name.
        if dlopen("libcudart.so.13").is_err() {
            let err = require_libraries(&ort).unwrap_err();
            assert!(
                err.starts_with("libcudart.so.13 (CUDA 13 runtime) cannot be loaded"),
                "{err}"
            );
            assert!(err.contains(&dir.path().display().to_string()), "{err}");
        }
    }

    #[test]
    fn driver_errors_say_what_to_do() {
        let e = DriverError::NoDriver {
            detail: "libcuda.so.1: cannot open shared object file".into(),
        };
        let s = e.to_string();
        assert!(
            s.contains("libcuda.so.1") && s.contains("--gpus all"),
            "{s}"
        );
        let s = DriverError::NoSuchDevice { id: 2, count: 1 }.to_string();
        assert!(s.contains("device 2") && s.contains("1 device"), "{s}");
    }
}
