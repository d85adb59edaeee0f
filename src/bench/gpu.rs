//! `reelay bench gpu`: the GPU check's benchmarks in one process and one
//! table, for `make gpu-check` on a machine with an NVIDIA GPU.
//!
//! - the upscaler alone (model-only, after warm-up) for each precision and
//!   batch size: frames/s and achieved TFLOP/s (frames/s × input pixels ×
//!   the manifest's MFLOP per input pixel / 10⁶);
//! - the whole frame step against the model alone (`bench frame`);
//! - detection, model alone and end to end (`bench detect`);
//! - a T4 projection of each upscaler row: frames/s × (T4 peak / this GPU's
//!   peak) for the row's precision (T4: 65 TFLOPS fp16 tensor, 8.1 fp32).
//!   It is a projection by peak ratio, not a measurement: memory bandwidth
//!   and kernel choice do not scale with the peak.
//!
//! With `--device cpu` and tiny sizes it is a dry run of the same code.

use std::path::Path;

use serde::Serialize;

use super::detect::{DetectBenchOptions, run_detect_bench};
use super::frame::{FrameBenchConfig, machine, run as frame_bench};
use super::inference::{InferenceBenchConfig, InferenceBenchReport, run as inference_bench};
use crate::inference::cuda;
use crate::inference::{Device, LoadOptions};
use crate::media::{EncodeProfile, Ffmpeg};
use crate::models::{Manifest, Precision};

/// The T4's dense peaks in TFLOP/s: fp16 on tensor cores, fp32.
pub const T4_PEAK: Peaks = Peaks {
    fp16: 65.0,
    fp32: 8.1,
};

/// Dense peak TFLOP/s of one GPU (fp16 tensor cores, no sparsity; fp32).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Peaks {
    pub fp16: f64,
    pub fp32: f64,
}

impl Peaks {
    fn for_precision(&self, p: Precision) -> f64 {
        match p {
            Precision::Fp16 => self.fp16,
            Precision::Fp32 => self.fp32,
        }
    }
}

/// Published dense peaks of common data-centre GPUs, matched on the name
/// the driver reports (most specific first).
const KNOWN_PEAKS: &[(&str, Peaks)] = &[
    (
        "H200",
        Peaks {
            fp16: 989.0,
            fp32: 67.0,
        },
    ),
    (
        "H100 PCIe",
        Peaks {
            fp16: 756.0,
            fp32: 51.0,
        },
    ),
    (
        "H100",
        Peaks {
            fp16: 989.0,
            fp32: 67.0,
        },
    ),
    (
        "A100",
        Peaks {
            fp16: 312.0,
            fp32: 19.5,
        },
    ),
    (
        "L40S",
        Peaks {
            fp16: 362.0,
            fp32: 91.6,
        },
    ),
    (
        "A10G",
        Peaks {
            fp16: 125.0,
            fp32: 31.2,
        },
    ),
    (
        "L4",
        Peaks {
            fp16: 121.0,
            fp32: 30.3,
        },
    ),
    (
        "V100",
        Peaks {
            fp16: 125.0,
            fp32: 15.7,
        },
    ),
    ("T4", T4_PEAK),
];

/// This GPU's peaks, from [`KNOWN_PEAKS`] by name.
pub fn known_peaks(gpu_name: &str) -> Option<Peaks> {
    KNOWN_PEAKS
        .iter()
        .find(|(k, _)| gpu_name.contains(k))
        .map(|(_, p)| *p)
}

/// Frames/s on a T4, projected from `fps` measured on a GPU with `peaks`.
pub fn t4_projection(fps: f64, precision: Precision, peaks: Peaks) -> f64 {
    fps * T4_PEAK.for_precision(precision) / peaks.for_precision(precision)
}

/// Achieved TFLOP/s: frames/s × input pixels × MFLOP per input pixel / 10⁶.
pub fn achieved_tflops(fps: f64, width: u32, height: u32, mflop_per_pixel: f64) -> f64 {
    fps * f64::from(width) * f64::from(height) * mflop_per_pixel / 1e6
}

/// What to run.
#[derive(Debug, Clone)]
pub struct GpuBenchOptions {
    pub model: String,
    pub crop: (u32, u32),
    pub precisions: Vec<Precision>,
    pub batches: Vec<usize>,
    pub device: Device,
    /// Minimum timed seconds per upscaler row.
    pub seconds: f64,
    pub frame: Option<FrameBenchConfig>,
    pub detect: Option<DetectBenchOptions>,
    /// This GPU's peaks when it is not in the built-in table.
    pub peaks: Option<Peaks>,
}

/// One upscaler row and its T4 projection.
#[derive(Debug, Clone, Serialize)]
pub struct UpscaleRow {
    pub report: InferenceBenchReport,
    pub t4_fps: Option<f64>,
}

/// The frame step against the model alone.
#[derive(Debug, Clone, Serialize)]
pub struct FrameRow {
    pub precision: Precision,
    pub batch: usize,
    pub model_fps: f64,
    pub step_fps: f64,
    /// Whole step / model only.
    pub ratio: f64,
    pub video_accel: String,
}

/// Detection on the device.
#[derive(Debug, Clone, Serialize)]
pub struct DetectRow {
    pub model: String,
    pub device: String,
    pub model_fps: f64,
    pub end_to_end_fps: f64,
}

/// The whole check.
#[derive(Debug, Clone, Serialize)]
pub struct GpuBenchReport {
    /// The GPU's name, or `cpu (no GPU)` on a dry run.
    pub gpu: String,
    pub driver: Option<String>,
    pub machine: String,
    pub onnxruntime: String,
    pub model: String,
    pub crop: (u32, u32),
    pub mflop_per_pixel: Option<f64>,
    pub peaks: Option<Peaks>,
    pub upscale: Vec<UpscaleRow>,
    pub frame: Option<FrameRow>,
    pub detect: Option<DetectRow>,
}

/// Runs every benchmark in turn. Blocking.
pub fn run(
    ff: &Ffmpeg,
    manifest: &Manifest,
    profile: &EncodeProfile,
    scratch: &Path,
    o: &GpuBenchOptions,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<GpuBenchReport> {
    let driver = cuda::probe_driver().ok();
    let gpu = match (&driver, o.device) {
        (_, Device::Cpu) | (None, _) => "cpu (no GPU)".to_string(),
        (Some(d), _) => d
            .gpus
            .first()
            .map_or("unknown GPU".into(), |g| g.name.clone()),
    };
    let peaks = o.peaks.or_else(|| known_peaks(&gpu));
    let mut upscale = Vec::new();
    for &precision in &o.precisions {
        for &batch in &o.batches {
            let mut cfg = InferenceBenchConfig::new(&o.model, o.crop.0, o.crop.1);
            cfg.device = o.device;
            cfg.precision = precision;
            cfg.batch_size = batch;
            cfg.min_seconds = o.seconds;
            let r = inference_bench(manifest, &cfg)?;
            log(&format!(
                "upscale {precision} batch {batch}: {:.2} frames/s",
                r.fps
            ));
            let t4_fps = peaks
                .filter(|_| r.device.starts_with("cuda"))
                .map(|p| t4_projection(r.fps, r.precision, p));
            upscale.push(UpscaleRow { report: r, t4_fps });
        }
    }
    let frame = match &o.frame {
        Some(c) => {
            let r = frame_bench(ff, manifest, profile, scratch, c, log)?;
            Some(FrameRow {
                precision: r.model_only.precision,
                batch: c.batch,
                model_fps: r.model_only.fps,
                step_fps: r.end_to_end.fps,
                ratio: r.efficiency,
                video_accel: r.end_to_end.video_accel.clone(),
            })
        }
        None => None,
    };
    let detect = match &o.detect {
        Some(d) => {
            let r = run_detect_bench(ff, manifest, scratch, d, log)
                .map_err(|e| anyhow::anyhow!("detect benchmark: {e}"))?;
            Some(DetectRow {
                model: r.model,
                device: r.device,
                model_fps: r.model_only_fps,
                end_to_end_fps: r.end_to_end_fps,
            })
        }
        None => None,
    };
    Ok(GpuBenchReport {
        gpu,
        driver: driver.map(|d| {
            format!(
                "driver {}, CUDA {}",
                d.driver_version.as_deref().unwrap_or("?"),
                d.cuda_version
            )
        }),
        machine: machine(),
        onnxruntime: crate::inference::runtime()?.version.clone(),
        model: o.model.clone(),
        crop: o.crop,
        mflop_per_pixel: manifest.get(&o.model)?.mflop_per_pixel,
        peaks,
        upscale,
        frame,
        detect,
    })
}

/// Default options for the real check: 640x360, fp16 and fp32, batch
/// 1/2/4/8 on CUDA, the frame step at fp16 batch 4, detection on CUDA.
pub fn cuda_defaults(model: &str) -> GpuBenchOptions {
    let mut frame = FrameBenchConfig::new(model, 640, 360);
    frame.device = Device::Cuda;
    frame.precision = Precision::Fp16;
    frame.batch = 4;
    frame.frames = 96;
    frame.model_seconds = 3.0;
    frame.repetitions = 2;
    GpuBenchOptions {
        model: model.to_string(),
        crop: (640, 360),
        precisions: vec![Precision::Fp16, Precision::Fp32],
        batches: vec![1, 2, 4, 8],
        device: Device::Cuda,
        seconds: 2.0,
        frame: Some(frame),
        detect: Some(DetectBenchOptions {
            load: LoadOptions {
                device: Device::Cuda,
                ..LoadOptions::default()
            },
            seconds: 5.0,
            min_model_secs: 2.0,
            repetitions: 1,
            ..DetectBenchOptions::default()
        }),
        peaks: None,
    }
}

/// The report as one table.
pub fn render(r: &GpuBenchReport) -> String {
    let mut s = format!(
        "GPU check: {}{}\nmachine: {}; ONNX Runtime {}\n",
        r.gpu,
        r.driver
            .as_deref()
            .map_or(String::new(), |d| format!(" ({d})")),
        r.machine,
        r.onnxruntime
    );
    let mflop = r.mflop_per_pixel.map_or("?".into(), |m| format!("{m}"));
    s += &format!(
        "\nupscale, model only: {} at {}x{} input ({mflop} MFLOP per input pixel)\n",
        r.model, r.crop.0, r.crop.1
    );
    s += &format!(
        "{:<5} {:>5} {:>10} {:>9} {:>8} {:>14}\n",
        "prec", "batch", "frames/s", "ms/frame", "TFLOP/s", "T4 proj. f/s"
    );
    for row in &r.upscale {
        let u = &row.report;
        s += &format!(
            "{:<5} {:>5} {:>10.2} {:>9.2} {:>8} {:>14}\n",
            u.precision.to_string(),
            u.batch_size,
            u.fps,
            u.ms_per_frame,
            u.tflops.map_or("-".into(), |t| format!("{t:.3}")),
            row.t4_fps.map_or("-".into(), |t| format!("{t:.1}")),
        );
    }
    if let Some(f) = &r.frame {
        s += &format!(
            "\nframe step ({} batch {}, video accel {}): whole step {:.2} frames/s, model only {:.2} frames/s, ratio {:.3} (target 0.90)\n",
            f.precision, f.batch, f.video_accel, f.step_fps, f.model_fps, f.ratio
        );
    }
    if let Some(d) = &r.detect {
        s += &format!(
            "detect {} on {}: model only {:.1} frames/s, end to end {:.1} frames/s\n",
            d.model, d.device, d.model_fps, d.end_to_end_fps
        );
    }
    s += &match r.peaks {
        Some(p) if r.upscale.iter().any(|u| u.t4_fps.is_some()) => format!(
            "\nT4 projection (a projection, not a measurement): frames/s x T4 peak / this GPU's peak, fp16 {} / {} TFLOPS, fp32 {} / {} TFLOPS. Target on a T4: >= 30 frames/s fp16 at 640x360.\n",
            T4_PEAK.fp16, p.fp16, T4_PEAK.fp32, p.fp32
        ),
        _ => "\nT4 projection: none (no GPU, or its peak is unknown: pass --peak-fp16 and --peak-fp32)\n".into(),
    };
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tflops_is_frames_times_pixels_times_mflop_per_pixel() {
        // 100 frames/s of 640x360 at 2.42 MFLOP per pixel = 55.76 TFLOP/s.
        let t = achieved_tflops(100.0, 640, 360, 2.42);
        assert!((t - 55.7568).abs() < 1e-9, "{t}");
    }

    #[test]
    fn the_projection_scales_by_the_peak_of_the_rows_precision() {
        let h200 = known_peaks("NVIDIA H200").unwrap();
        assert_eq!(h200.fp16, 989.0);
        // 989 fp16 frames/s on an H200 project to 65 on a T4.
        assert!((t4_projection(989.0, Precision::Fp16, h200) - 65.0).abs() < 1e-9);
        assert!((t4_projection(67.0, Precision::Fp32, h200) - 8.1).abs() < 1e-9);
        // A T4 projects to itself; more specific names win.
        assert!(
            (t4_projection(31.0, Precision::Fp16, known_peaks("Tesla T4").unwrap()) - 31.0).abs()
                < 1e-9
        );
        assert_eq!(known_peaks("NVIDIA H100 PCIe").unwrap().fp16, 756.0);
        assert_eq!(known_peaks("NVIDIA GeForce GT 710"), None);
    }
}
