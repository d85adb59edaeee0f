//! CUDA tests that need an NVIDIA GPU: ignored elsewhere, run by
//! `make gpu-check` (`cargo test --release --features cuda --test gpu --
//! --ignored`) with ONNX Runtime GPU from `.tools/gpu-worker/lib`.
//!
//! On the real models and a real photo: the CUDA provider registers, fp16
//! agrees with fp32, batch 4 agrees with batch 1, and the IoBinding path
//! (pinned host memory, used for every CUDA run) agrees with the CPU.
#![cfg(feature = "cuda")]

use std::path::PathBuf;

use image::{RgbImage, imageops};
use reelay::inference::{self, Device, Frame, LoadOptions, Upscaler, UpscalerConfig};
use reelay::models::{Manifest, Precision};

const GENERAL: &str = "realesr-general-x4v3";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn manifest() -> Manifest {
    Manifest::load(&root().join("models")).expect("models/manifest.toml loads")
}

fn upscaler(device: Device, precision: Precision, batch_size: usize) -> Upscaler {
    let config = UpscalerConfig {
        load: LoadOptions {
            device,
            precision,
            ..LoadOptions::default()
        },
        batch_size,
        ..UpscalerConfig::new(GENERAL)
    };
    Upscaler::new(&manifest(), &config).unwrap_or_else(|e| panic!("{device} {precision}: {e}"))
}

/// Four 96x64 crops of the astronaut photo (`make setup`).
fn frames() -> Vec<Frame> {
    let path = root().join(".tools/testdata/astronaut.png");
    let img: RgbImage = image::open(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run `make setup`", path.display()))
        .to_rgb8();
    [(100, 60), (200, 200), (300, 120), (40, 380)]
        .iter()
        .map(|&(x, y)| {
            let c = imageops::crop_imm(&img, x, y, 96, 64).to_image();
            Frame::new(96, 64, c.into_raw()).unwrap()
        })
        .collect()
}

fn psnr(a: &[Frame], b: &[Frame]) -> f64 {
    let (mut se, mut n) = (0.0f64, 0usize);
    for (x, y) in a.iter().zip(b) {
        assert_eq!((x.width, x.height), (y.width, y.height));
        for (p, q) in x.data.iter().zip(&y.data) {
            se += (f64::from(*p) - f64::from(*q)).powi(2);
            n += 1;
        }
    }
    if se == 0.0 {
        return f64::INFINITY;
    }
    10.0 * (255.0f64 * 255.0 / (se / n as f64)).log10()
}

#[test]
#[ignore = "needs an NVIDIA GPU: make gpu-check"]
fn the_cuda_provider_registers_and_names_the_gpu() {
    let info = inference::cuda::probe_driver().expect("an NVIDIA driver and GPU");
    let up = upscaler(Device::Cuda, Precision::Fp16, 1);
    assert!(up.model().device.is_cuda(), "{:?}", up.model().device);
    assert_eq!(up.device_name(), format!("cuda:{}", info.gpus[0].name));
    assert_eq!(up.model().precision, Precision::Fp16);
    // auto on a GPU machine picks CUDA, with no reason to report.
    let auto = upscaler(Device::Auto, Precision::Fp32, 1);
    assert!(auto.model().device.is_cuda());
    assert_eq!(auto.model().device_reason, None);
}

#[test]
#[ignore = "needs an NVIDIA GPU: make gpu-check"]
fn fp16_agrees_with_fp32_on_a_photo() {
    let f = frames();
    let fp32 = upscaler(Device::Cuda, Precision::Fp32, 4)
        .upscale(&f)
        .unwrap();
    let fp16 = upscaler(Device::Cuda, Precision::Fp16, 4)
        .upscale(&f)
        .unwrap();
    let db = psnr(&fp16, &fp32);
    eprintln!("fp16 vs fp32 on CUDA: PSNR {db:.1} dB");
    assert!(db >= 40.0, "fp16 differs from fp32: PSNR {db:.1} dB");
    assert!(fp16[0].width == 384 && fp16[0].height == 256);
}

#[test]
#[ignore = "needs an NVIDIA GPU: make gpu-check"]
fn batch_4_agrees_with_batch_1() {
    let f = frames();
    let one = upscaler(Device::Cuda, Precision::Fp16, 1)
        .upscale(&f)
        .unwrap();
    let four = upscaler(Device::Cuda, Precision::Fp16, 4)
        .upscale(&f)
        .unwrap();
    let db = psnr(&one, &four);
    eprintln!("batch 4 vs batch 1 on CUDA fp16: PSNR {db:.1} dB");
    assert!(db >= 50.0, "batching changed the output: PSNR {db:.1} dB");
}

#[test]
#[ignore = "needs an NVIDIA GPU: make gpu-check"]
fn the_io_bound_cuda_path_agrees_with_the_cpu() {
    let f = frames();
    let cuda = upscaler(Device::Cuda, Precision::Fp32, 2)
        .upscale(&f)
        .unwrap();
    let cpu = upscaler(Device::Cpu, Precision::Fp32, 2)
        .upscale(&f)
        .unwrap();
    let db = psnr(&cuda, &cpu);
    eprintln!("CUDA (IoBinding, pinned memory) vs CPU, fp32: PSNR {db:.1} dB");
    assert!(
        db >= 45.0,
        "the CUDA path's output differs from the CPU's: PSNR {db:.1} dB"
    );
    // Not a blank or a copy of the wrong buffer: the output has the photo's detail.
    let mean = cuda[0].data.iter().map(|&v| f64::from(v)).sum::<f64>() / cuda[0].data.len() as f64;
    assert!(mean > 10.0 && mean < 245.0, "mean {mean}");
}
