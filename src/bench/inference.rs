//! Model-only inference benchmark: frames/s of an upscaler on random input,
//! after warm-up, for a model, crop size, batch size, precision and device.
//!
//! Achieved TFLOP/s = fps × crop pixels × the model's MFLOP per input pixel
//! (manifest `mflop_per_pixel`: 2.42 for realesr-general-x4v3, 1.24 for
//! realesr-animevideov3) / 10⁶.

use std::time::Instant;

use ndarray::Array4;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::inference::{Device, InferenceError, LoadOptions, Upscaler, UpscalerConfig};
use crate::models::{Manifest, Precision};

/// What to measure.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceBenchConfig {
    pub model: String,
    /// Crop (model input) width and height in pixels.
    pub width: u32,
    pub height: u32,
    pub batch_size: usize,
    pub device: Device,
    pub precision: Precision,
    /// Untimed batches run first.
    pub warmup_batches: usize,
    /// Timed batches: at least this many...
    pub min_batches: usize,
    /// ...and for at least this long.
    pub min_seconds: f64,
    pub intra_threads: Option<usize>,
}

impl InferenceBenchConfig {
    pub fn new(model: impl Into<String>, width: u32, height: u32) -> Self {
        InferenceBenchConfig {
            model: model.into(),
            width,
            height,
            batch_size: 1,
            device: Device::Auto,
            precision: Precision::Fp32,
            warmup_batches: 2,
            min_batches: 5,
            min_seconds: 3.0,
            intra_threads: None,
        }
    }
}

/// The measurement, as printed in JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InferenceBenchReport {
    pub model: String,
    /// `name@sha256-prefix` of the file that ran.
    pub model_id: String,
    /// The precision that ran (fp16 asked on the CPU runs fp32).
    pub precision: Precision,
    pub device_requested: Device,
    /// `cpu` or `cuda:<GPU name>`.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub batch_size: usize,
    pub warmup_batches: usize,
    pub batches: usize,
    pub frames: usize,
    pub seconds: f64,
    pub fps: f64,
    pub ms_per_frame: f64,
    pub mflop_per_pixel: Option<f64>,
    pub tflops: Option<f64>,
    pub load_ms: u64,
    pub onnxruntime: String,
}

impl InferenceBenchReport {
    /// One line for a table: model, precision, device, crop, batch, fps, TFLOP/s.
    pub fn table_row(&self) -> String {
        format!(
            "{:<24} {:<5} {:<20} {:>9} {:>5} {:>9.2} {:>9.3} {:>8}",
            self.model,
            self.precision.to_string(),
            self.device,
            format!("{}x{}", self.width, self.height),
            self.batch_size,
            self.fps,
            self.ms_per_frame,
            self.tflops.map_or("-".to_string(), |t| format!("{t:.3}")),
        )
    }

    /// The header matching [`table_row`](Self::table_row).
    pub fn table_header() -> String {
        format!(
            "{:<24} {:<5} {:<20} {:>9} {:>5} {:>9} {:>9} {:>8}",
            "model", "prec", "device", "crop", "batch", "frames/s", "ms/frame", "TFLOP/s"
        )
    }
}

/// Runs the benchmark. The session is loaded (or reused) and warmed up first;
/// only model runs on random input are timed (for CUDA this includes the
/// host↔device copies of input and output, which IoBinding makes DMA copies
/// from pinned memory).
pub fn run(
    manifest: &Manifest,
    config: &InferenceBenchConfig,
) -> Result<InferenceBenchReport, InferenceError> {
    if config.width == 0 || config.height == 0 || config.batch_size == 0 {
        return Err(InferenceError::BadInput(
            "benchmark crop and batch size must be at least 1".into(),
        ));
    }
    let up = Upscaler::new(
        manifest,
        &UpscalerConfig {
            model: config.model.clone(),
            load: LoadOptions {
                device: config.device,
                precision: config.precision,
                intra_threads: config.intra_threads,
                ..LoadOptions::default()
            },
            batch_size: config.batch_size,
            tile: None,
            tile_overlap: None,
        },
    )?;
    let (w, h, b) = (
        config.width as usize,
        config.height as usize,
        config.batch_size,
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    let input = Array4::from_shape_simple_fn((b, 3, h, w), || rng.random::<f32>());
    let touch = |y: ndarray::ArrayView4<'_, f32>| y[[0, 0, 0, 0]];

    for _ in 0..config.warmup_batches {
        up.run(input.view(), touch)?;
    }
    let started = Instant::now();
    let mut batches = 0usize;
    while batches < config.min_batches.max(1)
        || started.elapsed().as_secs_f64() < config.min_seconds
    {
        up.run(input.view(), touch)?;
        batches += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    let frames = batches * b;
    let fps = frames as f64 / seconds;
    let model = up.model();
    let mflop = model.entry.mflop_per_pixel;
    Ok(InferenceBenchReport {
        model: model.entry.name.clone(),
        model_id: model.audit_id(),
        precision: model.precision,
        device_requested: config.device,
        device: model.device_name(),
        width: config.width,
        height: config.height,
        batch_size: b,
        warmup_batches: config.warmup_batches,
        batches,
        frames,
        seconds,
        fps,
        ms_per_frame: 1000.0 / fps,
        mflop_per_pixel: mflop,
        tflops: mflop.map(|m| fps * (w * h) as f64 * m / 1e6),
        load_ms: model.load_ms,
        onnxruntime: crate::inference::runtime()?.version.clone(),
    })
}
