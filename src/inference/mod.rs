//! The inference engine over ONNX Runtime (`ort`, `load-dynamic`).
//!
//! - [`runtime`]: loads `libonnxruntime.so` once per process via
//!   `ort::init_from`, with a clear error when it is missing.
//! - [`device`]: `cpu | cuda | auto`; CUDA never falls back silently.
//! - [`cuda`]: the NVIDIA driver and the CUDA libraries, checked before the
//!   CUDA execution provider is registered (also what `reelay doctor` shows).
//! - [`session`]: one warmed-up session per process, model, precision and
//!   device, each loaded after a sha256 check; [`load_count`] counts loads.
//! - [`upscale`]: batches of RGB frames → frames ×scale, with tiling.

pub mod cuda;
pub mod device;
pub mod runtime;
pub mod session;
pub mod upscale;

use std::path::PathBuf;

pub use device::{Device, ResolvedDevice};
pub use runtime::{Runtime, available_providers, find_library, init_from_path, runtime};
pub use session::{LoadOptions, LoadedModel, load, load_count};
pub use upscale::{Frame, Upscaler, UpscalerConfig};

use crate::models::ModelError;

/// Everything that can go wrong in inference. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("ONNX Runtime library not found (looked at: {}); {hint}", looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    MissingLibrary { looked: Vec<PathBuf>, hint: String },
    #[error(
        "cannot load ONNX Runtime from {path}: {message}. reelay needs ONNX Runtime 1.31: run `bash models/setup-ort.sh`, or point ORT_DYLIB_PATH at a libonnxruntime.so of version 1.31"
    )]
    LoadLibrary { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "device cuda was asked for, but this reelay was built without the `cuda` feature; rebuild with `cargo build --features cuda`, or use --device cpu or auto"
    )]
    CudaNotCompiled,
    #[error(
        "device cuda was asked for, but the CUDA execution provider did not register: {reason}. reelay does not fall back to the CPU on its own: fix the CUDA setup (onnxruntime-gpu 1.31 libraries, CUDA 13, cuDNN 9, driver ≥ 580; `reelay doctor --device cuda` shows each), or use --device cpu or auto"
    )]
    CudaUnavailable { reason: String },
    #[error(
        "device cuda was asked for, but this machine has no usable NVIDIA GPU: {reason}. reelay does not fall back to the CPU on its own: run on a GPU machine, or use --device cpu or auto"
    )]
    NoCudaDevice { reason: String },
    #[error("ONNX Runtime failed to {context}: {message}")]
    Ort { context: String, message: String },
    #[error("bad inference input: {0}")]
    BadInput(String),
}

/// Maps an `ort` error into [`InferenceError::Ort`] with what was being done.
pub(crate) fn ort_err<E: std::fmt::Display>(context: &'static str) -> impl Fn(E) -> InferenceError {
    move |e| InferenceError::Ort {
        context: context.to_string(),
        message: e.to_string(),
    }
}
