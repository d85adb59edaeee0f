//! Sessions: one per process, model, precision and device, loaded after a
//! sha256 check and warmed up once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use ort::session::Session;
use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::value::Tensor;

use super::device::{CUDA_COMPILED, Device, ResolvedDevice};
use super::runtime::{Runtime, runtime};
use super::{InferenceError, ort_err};
use crate::models::{Manifest, ModelEntry, Precision, Task, VerifiedModel};

/// How to load a model.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LoadOptions {
    pub device: Device,
    /// fp16 is used only on CUDA; on the CPU the fp32 file is loaded instead.
    pub precision: Precision,
    /// CUDA device ordinal.
    pub cuda_device: i32,
    /// Threads inside one operator on the CPU; `None` lets ONNX Runtime pick
    /// (one per physical core).
    pub intra_threads: Option<usize>,
    /// Let intra-op threads spin between runs (ONNX Runtime's default).
    /// Spinning costs about 2× on a small, busy machine where other
    /// processes (FFmpeg) want the cores too; `detect` turns it off.
    pub spinning: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            device: Device::Auto,
            precision: Precision::Fp32,
            cuda_device: 0,
            intra_threads: None,
            spinning: true,
        }
    }
}

/// A loaded, warmed-up model. Shared (`Arc`) by everything in the process
/// that uses the same model, precision and device.
pub struct LoadedModel {
    pub entry: ModelEntry,
    /// The precision that really runs (fp16 asked on the CPU runs fp32).
    pub precision: Precision,
    /// sha256 of the file that was checked and loaded.
    pub sha256: String,
    pub device: ResolvedDevice,
    /// Why `auto` picked the CPU (no GPU, no driver, built without CUDA), for
    /// the log and the audit record; `None` when the device was not `auto`
    /// or CUDA was picked.
    pub device_reason: Option<String>,
    /// Milliseconds spent reading, checking, creating and warming up.
    pub load_ms: u64,
    pub(crate) session: Mutex<Session>,
}

impl std::fmt::Debug for LoadedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModel")
            .field("model", &self.entry.name)
            .field("precision", &self.precision)
            .field("device", &self.device)
            .field("sha256", &self.sha256)
            .finish()
    }
}

impl LoadedModel {
    /// `cpu` or `cuda:<GPU name>`, for audit records.
    pub fn device_name(&self) -> String {
        self.device.device_name()
    }

    /// `name@<sha256 prefix>` of the file that runs, for audit records.
    pub fn audit_id(&self) -> String {
        format!("{}@{}", self.entry.name, &self.sha256[..12])
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Session> {
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    /// The models folder: the same name and digest elsewhere is another file,
    /// which must be checked before it is used.
    dir: std::path::PathBuf,
    name: String,
    sha256: String,
    options: LoadOptions,
}

static CACHE: Mutex<Option<HashMap<Key, Arc<LoadedModel>>>> = Mutex::new(None);
static LOADS: AtomicU64 = AtomicU64::new(0);

/// How many sessions this process has created (each after a sha256 check).
/// A job that loads its model once moves this by exactly one.
pub fn load_count() -> u64 {
    LOADS.load(Ordering::SeqCst)
}

/// The process's session for `name` under `options`: from the cache, or
/// verified, loaded and warmed up now.
pub fn load(
    manifest: &Manifest,
    name: &str,
    options: &LoadOptions,
) -> Result<Arc<LoadedModel>, InferenceError> {
    let entry = manifest.get(name)?;
    let key = Key {
        dir: manifest.dir.clone(),
        name: entry.name.clone(),
        sha256: entry.sha256.clone(),
        options: options.clone(),
    };
    // Held through the load so two threads never load the same model twice.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(m) = cache.get_or_insert_with(HashMap::new).get(&key) {
        return Ok(Arc::clone(m));
    }
    let rt = runtime()?;
    let started = Instant::now();
    let (verified, mut session, device, device_reason) = create(rt, manifest, name, options)?;
    warm_up(&verified.entry, &mut session)?;
    let model = Arc::new(LoadedModel {
        entry: verified.entry,
        precision: verified.precision,
        sha256: verified.sha256,
        device,
        device_reason,
        load_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        session: Mutex::new(session),
    });
    LOADS.fetch_add(1, Ordering::SeqCst);
    tracing::info!(
        model = %model.audit_id(),
        precision = %model.precision,
        device = %model.device_name(),
        load_ms = model.load_ms,
        "model loaded"
    );
    cache
        .get_or_insert_with(HashMap::new)
        .insert(key, Arc::clone(&model));
    Ok(model)
}

type Created = (VerifiedModel, Session, ResolvedDevice, Option<String>);

fn create(
    rt: &Runtime,
    manifest: &Manifest,
    name: &str,
    options: &LoadOptions,
) -> Result<Created, InferenceError> {
    let plain = |(v, s, d): (VerifiedModel, Session, ResolvedDevice)| (v, s, d, None);
    match options.device {
        Device::Cpu => create_cpu(rt, manifest, name, options).map(plain),
        Device::Cuda => {
            if !CUDA_COMPILED {
                return Err(InferenceError::CudaNotCompiled);
            }
            create_cuda(rt, manifest, name, options).map(plain)
        }
        Device::Auto => {
            let reason = if CUDA_COMPILED {
                match create_cuda(rt, manifest, name, options) {
                    Ok(r) => {
                        tracing::info!(model = name, device = %r.2, "device auto: picked CUDA");
                        return Ok(plain(r));
                    }
                    // A bad model file is not a device problem: report it.
                    Err(e @ InferenceError::Model(_)) => return Err(e),
                    Err(e) => auto_reason(&e),
                }
            } else {
                "auto picked cpu: this reelay was built without the `cuda` feature".to_string()
            };
            tracing::info!(model = name, reason = %reason, "device auto: picked cpu");
            let (v, s, d) = create_cpu(rt, manifest, name, options)?;
            Ok((v, s, d, Some(reason)))
        }
    }
}

/// Why `auto` did not get CUDA, short and US-ASCII for audit metadata.
fn auto_reason(e: &InferenceError) -> String {
    let why = match e {
        InferenceError::NoCudaDevice { reason } | InferenceError::CudaUnavailable { reason } => {
            reason.as_str()
        }
        _ => "",
    };
    let why = if why.is_empty() {
        e.to_string()
    } else {
        why.to_string()
    };
    let mut s = super::device::sanitize(&format!("auto picked cpu: {why}"));
    if s.len() > 200 {
        s.truncate(197);
        s.push_str("...");
    }
    s
}

fn builder(rt: &Runtime, options: &LoadOptions) -> Result<SessionBuilder, InferenceError> {
    let mut b = Session::builder(&rt.env)
        .map_err(ort_err("create a session builder"))?
        .with_optimization_level(GraphOptimizationLevel::All)
        .map_err(ort_err("set the optimisation level"))?;
    if !options.spinning {
        b = b
            .with_intra_op_spinning(false)
            .map_err(ort_err("turn off intra-op spinning"))?;
    }
    if let Some(n) = options.intra_threads {
        b = b
            .with_intra_threads(n)
            .map_err(ort_err("set intra-op threads"))?;
    }
    Ok(b)
}

fn create_cpu(
    rt: &Runtime,
    manifest: &Manifest,
    name: &str,
    options: &LoadOptions,
) -> Result<(VerifiedModel, Session, ResolvedDevice), InferenceError> {
    if options.precision != Precision::Fp32 {
        tracing::info!(
            model = name,
            asked = %options.precision,
            "fp16 is used only on CUDA; loading the fp32 model on the cpu"
        );
    }
    let verified = manifest.load_verified(name, Precision::Fp32)?;
    let session = builder(rt, options)?
        .commit_from_memory(&verified.bytes)
        .map_err(|e| InferenceError::Ort {
            context: format!("load {} on the cpu", verified.path.display()),
            message: e.to_string(),
        })?;
    Ok((verified, session, ResolvedDevice::Cpu))
}

#[cfg(feature = "cuda")]
fn create_cuda(
    rt: &Runtime,
    manifest: &Manifest,
    name: &str,
    options: &LoadOptions,
) -> Result<(VerifiedModel, Session, ResolvedDevice), InferenceError> {
    use ort::ep::{CUDA, ExecutionProvider};

    let id = options.cuda_device;
    // The driver and the libraries first: their errors name what is missing,
    // where ONNX Runtime's would be a loader message about its provider.
    let driver = super::cuda::require_device(id).map_err(|e| InferenceError::NoCudaDevice {
        reason: e.to_string(),
    })?;
    let unavailable = |reason: String| InferenceError::CudaUnavailable { reason };
    super::cuda::require_libraries(&rt.library).map_err(unavailable)?;
    let verified = manifest.load_verified(name, options.precision)?;
    if !CUDA::is_available().unwrap_or(false) {
        return Err(unavailable(format!(
            "the ONNX Runtime at {} has no CUDA execution provider (the CPU wheel was installed; CUDA needs onnxruntime-gpu's libraries)",
            rt.library.display()
        )));
    }
    let session = builder(rt, options)?
        .with_execution_providers([CUDA::default()
            .with_device_id(id)
            .build()
            .error_on_failure()])
        .map_err(|e| unavailable(e.to_string()))?
        .commit_from_memory(&verified.bytes)
        .map_err(|e| unavailable(format!("load {}: {e}", verified.path.display())))?;
    let gpu = driver.gpus.iter().find(|g| g.id == id);
    let device = ResolvedDevice::Cuda {
        id,
        name: gpu.map_or_else(
            || super::device::gpu_name(id),
            |g| super::device::sanitize(&g.name),
        ),
    };
    Ok((verified, session, device))
}

#[cfg(not(feature = "cuda"))]
fn create_cuda(
    _rt: &Runtime,
    _manifest: &Manifest,
    _name: &str,
    _options: &LoadOptions,
) -> Result<(VerifiedModel, Session, ResolvedDevice), InferenceError> {
    Err(InferenceError::CudaNotCompiled)
}

/// One small run, so the first real batch does not pay for lazy
/// initialisation (allocators, kernels, cuDNN plans for small shapes).
fn warm_up(entry: &ModelEntry, session: &mut Session) -> Result<(), InferenceError> {
    let input = entry.inputs[0].as_str();
    let started = Instant::now();
    match entry.task {
        Task::Upscale => {
            let x = Tensor::from_array(([1usize, 3, 16, 16], vec![0.5f32; 3 * 16 * 16]))
                .map_err(ort_err("make the warm-up tensor"))?;
            session
                .run(ort::inputs![input => x])
                .map_err(ort_err("run the warm-up batch"))?;
        }
        Task::Detect => {
            // u8 NHWC (TF OD API), or f32 NCHW (Ultralytics YOLO): the
            // input's own type says which.
            let (ty, shape) = match session.inputs().first().map(|i| i.dtype()) {
                Some(ort::value::ValueType::Tensor { ty, shape, .. }) => {
                    (Some(*ty), shape.to_vec())
                }
                _ => (None, Vec::new()),
            };
            if ty == Some(ort::value::TensorElementType::Float32) {
                let dim = |i: usize, d: usize| {
                    shape
                        .get(i)
                        .copied()
                        .filter(|v| *v > 0)
                        .map_or(d, |v| v as usize)
                };
                let (c, h, w) = (dim(1, 3), dim(2, 64), dim(3, 64));
                let x = Tensor::from_array(([1usize, c, h, w], vec![0.5f32; c * h * w]))
                    .map_err(ort_err("make the warm-up tensor"))?;
                session
                    .run(ort::inputs![input => x])
                    .map_err(ort_err("run the warm-up batch"))?;
            } else {
                let x = Tensor::from_array(([1usize, 32, 32, 3], vec![128u8; 32 * 32 * 3]))
                    .map_err(ort_err("make the warm-up tensor"))?;
                session
                    .run(ort::inputs![input => x])
                    .map_err(ort_err("run the warm-up batch"))?;
            }
        }
    }
    tracing::debug!(model = %entry.name, ms = started.elapsed().as_millis() as u64, "warmed up");
    Ok(())
}
