//! `reelay doctor [--device cpu|cuda|auto] [--json] [--quick]`: what a user
//! runs first on a new machine, and what the GPU worker's health check runs.
//!
//! It reports ONNX Runtime (path, version, execution providers), the CUDA
//! side (the libraries next to ONNX Runtime, the NVIDIA driver and its GPUs,
//! whether the CUDA provider really registers on a real model), FFmpeg (path,
//! version, whether NVENC and NVDEC really work on a one-frame trial), the
//! models' sha256 check and the caption font; and it exits non-zero when the
//! configured device cannot work here. `--quick` (the health check) skips
//! what costs GPU time: the CUDA session and the NVENC/NVDEC trials.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::config::Config;
use crate::inference::cuda::{self, DriverInfo, LibraryStatus};
use crate::inference::{self, Device, LoadOptions};
use crate::media::Ffmpeg;
use crate::models::{self, Manifest, Precision, Task};

#[derive(clap::Args, Debug)]
pub struct DoctorArgs {
    /// The device to check: cpu, cuda or auto (default: `device` in
    /// reelay.toml, or REELAY_DEVICE).
    #[arg(long)]
    pub device: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Health-check mode: skip the CUDA session and the NVENC/NVDEC trials.
    #[arg(long)]
    pub quick: bool,
}

/// Everything `doctor` found, as printed with `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub reelay_version: String,
    /// Built with `--features cuda`.
    pub cuda_compiled: bool,
    pub device: DeviceCheck,
    pub onnxruntime: OrtCheck,
    pub cuda: CudaCheck,
    pub ffmpeg: FfmpegCheck,
    pub models: ModelsCheck,
    pub font: Check,
    /// Every problem that makes the configured device fail, in words.
    pub problems: Vec<String>,
    pub ok: bool,
}

/// The device asked for, what it resolves to here, and why.
#[derive(Debug, Serialize)]
pub struct DeviceCheck {
    pub asked: Device,
    /// `cpu` or `cuda`, or `none` when the asked device cannot work.
    pub resolved: String,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct OrtCheck {
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    pub providers: Vec<String>,
    pub ok: bool,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, Default)]
pub struct CudaCheck {
    /// Whether `libonnxruntime_providers_cuda.so` is next to ONNX Runtime.
    pub provider_library: Option<PathBuf>,
    pub libraries: Vec<LibraryStatus>,
    pub libraries_ok: bool,
    pub driver: Option<DriverInfo>,
    pub driver_error: Option<String>,
    /// The CUDA execution provider registered on a real model (`None`: not tried).
    pub registers: Option<bool>,
    /// Why it did not register, or why it was not tried.
    pub register_error: Option<String>,
    pub ok: bool,
}

#[derive(Debug, Serialize, Default)]
pub struct FfmpegCheck {
    pub path: Option<PathBuf>,
    pub version: Option<String>,
    pub ok: bool,
    pub error: Option<String>,
    pub nvenc: Option<Check>,
    pub nvdec: Option<Check>,
}

#[derive(Debug, Serialize, Default)]
pub struct ModelsCheck {
    pub dir: Option<PathBuf>,
    pub files: Vec<models::VerifyResult>,
    pub ok: bool,
    pub error: Option<String>,
}

/// A yes/no with the path checked or why not.
#[derive(Debug, Serialize, Default, Clone)]
pub struct Check {
    pub ok: bool,
    pub path: Option<PathBuf>,
    pub error: Option<String>,
}

pub fn run(args: DoctorArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let asked: Device = match &args.device {
        Some(d) => d.parse().map_err(anyhow::Error::msg)?,
        None => Config::load(config)?
            .file
            .device
            .parse()
            .map_err(anyhow::Error::msg)?,
    };
    let report = diagnose(asked, args.quick);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    if !report.ok {
        anyhow::bail!(
            "device {} cannot work here: {}",
            report.device.asked,
            report.problems.join("; ")
        );
    }
    Ok(())
}

/// Runs every check for `asked`.
pub fn diagnose(asked: Device, quick: bool) -> Report {
    let onnxruntime = check_ort();
    let models = check_models();
    let cuda = check_cuda(asked, quick, &onnxruntime, &models);
    let ffmpeg = check_ffmpeg(quick);
    let font = match crate::tasks::compile::locate_font() {
        Ok(p) => Check {
            ok: true,
            path: Some(p),
            error: None,
        },
        Err(e) => Check {
            ok: false,
            path: None,
            error: Some(e.to_string()),
        },
    };
    let mut problems = Vec::new();
    let mut need = |ok: bool, what: &str, err: &Option<String>| {
        if !ok {
            problems.push(format!("{what}: {}", err.as_deref().unwrap_or("failed")));
        }
    };
    need(onnxruntime.ok, "ONNX Runtime", &onnxruntime.error);
    need(models.ok, "models", &models.error);
    need(ffmpeg.ok, "FFmpeg", &ffmpeg.error);
    need(font.ok, "caption font", &font.error);
    let cuda_reason = cuda_problem(&cuda);
    let device = match asked {
        Device::Cpu => DeviceCheck {
            asked,
            resolved: "cpu".into(),
            reason: None,
        },
        Device::Cuda => {
            if let Some(r) = &cuda_reason {
                problems.push(format!("CUDA: {r}"));
            }
            DeviceCheck {
                asked,
                resolved: if cuda_reason.is_none() {
                    "cuda"
                } else {
                    "none"
                }
                .into(),
                reason: cuda_reason,
            }
        }
        Device::Auto => DeviceCheck {
            asked,
            resolved: if cuda_reason.is_none() { "cuda" } else { "cpu" }.into(),
            reason: cuda_reason.map(|r| format!("auto picks cpu: {r}")),
        },
    };
    Report {
        reelay_version: env!("CARGO_PKG_VERSION").to_string(),
        cuda_compiled: inference::device::CUDA_COMPILED,
        device,
        onnxruntime,
        cuda,
        ffmpeg,
        models,
        font,
        ok: problems.is_empty(),
        problems,
    }
}

/// Why CUDA cannot be used, the most basic reason first; `None` when it can.
fn cuda_problem(c: &CudaCheck) -> Option<String> {
    if !inference::device::CUDA_COMPILED {
        return Some(inference::InferenceError::CudaNotCompiled.to_string());
    }
    if let Some(e) = &c.driver_error {
        return Some(e.clone());
    }
    if !c.libraries_ok {
        let bad = c.libraries.iter().find(|l| !l.ok);
        return Some(match bad {
            Some(l) => format!(
                "{} ({}) cannot be loaded: {}",
                l.name,
                l.role,
                l.error.as_deref().unwrap_or("")
            ),
            None => c
                .register_error
                .clone()
                .unwrap_or_else(|| "the CUDA libraries are incomplete".into()),
        });
    }
    if c.registers == Some(false) {
        return c.register_error.clone();
    }
    None
}

fn check_ort() -> OrtCheck {
    let mut out = OrtCheck::default();
    match inference::runtime() {
        Ok(rt) => {
            out.path = Some(rt.library.clone());
            out.version = Some(rt.version.clone());
            match inference::available_providers() {
                Ok(p) => {
                    out.providers = p;
                    out.ok = true;
                }
                Err(e) => out.error = Some(e.to_string()),
            }
        }
        Err(e) => {
            out.path = inference::find_library().ok();
            out.error = Some(e.to_string());
        }
    }
    out
}

fn check_models() -> ModelsCheck {
    let mut out = ModelsCheck::default();
    match Manifest::load_default() {
        Ok(m) => {
            out.dir = Some(m.dir.clone());
            out.files = models::verify(&m);
            let bad: Vec<String> = out
                .files
                .iter()
                .filter(|r| !r.ok())
                .map(|r| format!("{} ({}) at {}", r.name, r.precision, r.path.display()))
                .collect();
            out.ok = !out.files.is_empty() && bad.is_empty();
            if !bad.is_empty() {
                out.error = Some(format!(
                    "failed the sha256 check: {}; restore them (git checkout -- models/, or rebuild the image)",
                    bad.join(", ")
                ));
            }
        }
        Err(e) => out.error = Some(e.to_string()),
    }
    out
}

/// The driver always; the libraries when built with CUDA and ONNX Runtime
/// loaded; the provider on a real model when everything before it is there,
/// the device asks for CUDA, and not `quick`.
fn check_cuda(asked: Device, quick: bool, ort: &OrtCheck, models: &ModelsCheck) -> CudaCheck {
    let mut out = CudaCheck::default();
    match cuda::probe_driver() {
        Ok(d) => out.driver = Some(d),
        Err(e) => out.driver_error = Some(e.to_string()),
    }
    let Some(lib) = ort.path.as_deref().filter(|_| ort.ok) else {
        out.register_error = Some("not tried: ONNX Runtime did not load".into());
        return out;
    };
    let provider = std::fs::canonicalize(lib)
        .unwrap_or_else(|_| lib.to_path_buf())
        .with_file_name(cuda::PROVIDER_LIBRARY);
    if provider.is_file() {
        out.provider_library = Some(provider);
        out.libraries = cuda::load_libraries(lib);
        out.libraries_ok = out.libraries.iter().all(|l| l.ok);
    } else {
        out.register_error = cuda::require_libraries(lib).err();
    }
    let ready =
        inference::device::CUDA_COMPILED && out.driver.is_some() && out.libraries_ok && models.ok;
    if !ready {
        if out.register_error.is_none() {
            out.register_error = Some("not tried: see the driver and libraries above".into());
        }
    } else if quick || asked == Device::Cpu {
        out.register_error = Some("not tried (--quick or --device cpu)".into());
    } else {
        let r = register_on_a_model();
        out.registers = Some(r.is_ok());
        out.register_error = r.err();
    }
    out.ok = cuda_problem(&out).is_none();
    out
}

/// Loads the first upscaling model (fp16 where it has one) on CUDA through
/// the worker's own path, warm-up run included.
fn register_on_a_model() -> Result<String, String> {
    let manifest = Manifest::load_default().map_err(|e| e.to_string())?;
    let entry = manifest
        .models
        .iter()
        .find(|m| m.task == Task::Upscale)
        .ok_or("the manifest has no upscaling model to try")?;
    let precision = if entry.variant(Precision::Fp16).is_some() {
        Precision::Fp16
    } else {
        Precision::Fp32
    };
    let options = LoadOptions {
        device: Device::Cuda,
        precision,
        ..LoadOptions::default()
    };
    inference::load(&manifest, &entry.name, &options)
        .map(|m| format!("{} on {}", m.audit_id(), m.device_name()))
        .map_err(|e| e.to_string())
}

fn check_ffmpeg(quick: bool) -> FfmpegCheck {
    let mut out = FfmpegCheck::default();
    let ff = match Ffmpeg::locate() {
        Ok(ff) => ff,
        Err(e) => {
            out.error = Some(e.to_string());
            return out;
        }
    };
    out.path = Some(ff.path().to_path_buf());
    out.version = Command::new(ff.path())
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .and_then(|l| l.strip_prefix("ffmpeg version "))
                .and_then(|l| l.split_whitespace().next())
                .map(str::to_string)
        });
    out.ok = true;
    if !quick {
        out.nvenc = Some(trial(ff.path(), &nvenc_args()));
        out.nvdec = Some(nvdec_trial(ff.path()));
    }
    out
}

fn nvenc_args() -> Vec<String> {
    [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=256x144:rate=1",
        "-frames:v",
        "1",
        "-c:v",
        "h264_nvenc",
        "-f",
        "null",
        "-",
    ]
    .map(String::from)
    .to_vec()
}

/// Encodes a one-frame H.264 clip on the CPU, then decodes it with `-hwaccel cuda`.
fn nvdec_trial(ff: &Path) -> Check {
    let Ok(dir) = tempfile::tempdir() else {
        return Check {
            error: Some("no temporary folder".into()),
            ..Check::default()
        };
    };
    let clip = dir.path().join("one.mp4").to_string_lossy().into_owned();
    let make = [
        "-f",
        "lavfi",
        "-i",
        "testsrc2=size=256x144:rate=1",
        "-frames:v",
        "1",
        "-c:v",
        "libx264",
        "-pix_fmt",
        "yuv420p",
        &clip,
    ]
    .map(String::from)
    .to_vec();
    let made = trial(ff, &make);
    if !made.ok {
        return made;
    }
    let decode = [
        "-hwaccel",
        "cuda",
        "-hwaccel_output_format",
        "cuda",
        "-i",
        &clip,
        "-f",
        "null",
        "-",
    ]
    .map(String::from)
    .to_vec();
    trial(ff, &decode)
}

/// Runs FFmpeg once; the error is its first stderr line (the cause; later
/// lines are consequences), without FFmpeg's `[component @ 0x...]` prefixes.
fn trial(ff: &Path, args: &[String]) -> Check {
    let out = Command::new(ff)
        .args(["-hide_banner", "-nostdin", "-y", "-loglevel", "error"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => Check {
            ok: true,
            ..Check::default()
        },
        Ok(o) => Check {
            ok: false,
            path: None,
            error: Some(first_cause(&String::from_utf8_lossy(&o.stderr))),
        },
        Err(e) => Check {
            error: Some(e.to_string()),
            ..Check::default()
        },
    }
}

/// The first non-empty line, past any leading `[name @ 0x...] ` tags.
fn first_cause(stderr: &str) -> String {
    let mut line = stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("failed");
    while let Some(rest) = line.strip_prefix('[').and_then(|r| r.split_once("] ")) {
        line = rest.1.trim_start();
    }
    line.to_string()
}

fn yes_no(c: &Option<Check>) -> String {
    match c {
        None => "not tried".into(),
        Some(c) if c.ok => "works".into(),
        Some(c) => format!("no ({})", c.error.as_deref().unwrap_or("failed")),
    }
}

/// The report as a table for people.
pub fn render(r: &Report) -> String {
    let mut s = String::new();
    let mut line = |k: &str, v: String| s.push_str(&format!("{k:<16} {v}\n"));
    let shown = |p: &Option<PathBuf>| p.as_ref().map_or("-".into(), |p| p.display().to_string());
    line(
        "reelay",
        format!(
            "{} (cuda feature: {})",
            r.reelay_version,
            if r.cuda_compiled { "yes" } else { "no" }
        ),
    );
    let reason = r
        .device
        .reason
        .as_deref()
        .map_or(String::new(), |x| format!("  ({x})"));
    line(
        "device",
        format!("{} -> {}{reason}", r.device.asked, r.device.resolved),
    );
    let o = &r.onnxruntime;
    line(
        "onnxruntime",
        match &o.error {
            None => format!(
                "{} at {}",
                o.version.as_deref().unwrap_or("?"),
                shown(&o.path)
            ),
            Some(e) => format!("FAILED: {e}"),
        },
    );
    line("  providers", o.providers.join(", "));
    line("cuda libraries", cuda_libraries(&r.cuda));
    line("nvidia driver", nvidia_driver(&r.cuda));
    line("cuda provider", cuda_provider(&r.cuda));
    let f = &r.ffmpeg;
    line(
        "ffmpeg",
        match &f.error {
            None => format!(
                "{} at {}",
                f.version.as_deref().unwrap_or("?"),
                shown(&f.path)
            ),
            Some(e) => format!("FAILED: {e}"),
        },
    );
    line("  nvenc", yes_no(&f.nvenc));
    line("  nvdec", yes_no(&f.nvdec));
    let m = &r.models;
    let good = m.files.iter().filter(|x| x.ok()).count();
    line(
        "models",
        match &m.error {
            None => format!(
                "{good} of {} files match their sha256 in {}",
                m.files.len(),
                shown(&m.dir)
            ),
            Some(e) => format!("FAILED: {e}"),
        },
    );
    line(
        "font",
        match &r.font.error {
            None => shown(&r.font.path),
            Some(e) => format!("FAILED: {e}"),
        },
    );
    line(
        "result",
        if r.ok {
            format!(
                "OK: device {} works here ({})",
                r.device.asked, r.device.resolved
            )
        } else {
            format!("FAIL: {}", r.problems.join("; "))
        },
    );
    s
}

/// Whether the CUDA provider's libraries load, naming the first that does not.
fn cuda_libraries(c: &CudaCheck) -> String {
    let loaded = c.libraries.iter().filter(|l| l.ok).count();
    match (&c.provider_library, c.libraries.iter().find(|l| !l.ok)) {
        (None, _) => "no CUDA provider next to ONNX Runtime".into(),
        (Some(_), None) => format!("{loaded} of {} load", c.libraries.len()),
        (Some(_), Some(bad)) => format!(
            "{loaded} of {} load; {} FAILED: {}",
            c.libraries.len(),
            bad.name,
            bad.error.as_deref().unwrap_or("")
        ),
    }
}

/// The driver's version and its GPUs, or why there is none.
fn nvidia_driver(c: &CudaCheck) -> String {
    match (&c.driver, &c.driver_error) {
        (Some(d), _) => format!(
            "{} (CUDA {}); {}",
            d.driver_version.as_deref().unwrap_or("version unknown"),
            d.cuda_version,
            d.gpus
                .iter()
                .map(|g| format!(
                    "GPU {}: {} ({} MiB, cc {})",
                    g.id, g.name, g.memory_mib, g.compute_capability
                ))
                .collect::<Vec<_>>()
                .join("; ")
        ),
        (None, e) => format!("none: {}", e.as_deref().unwrap_or("?")),
    }
}

fn cuda_provider(c: &CudaCheck) -> String {
    match c.registers {
        Some(true) => "registers".into(),
        Some(false) => format!("FAILED: {}", c.register_error.as_deref().unwrap_or("")),
        None => c
            .register_error
            .clone()
            .unwrap_or_else(|| "not tried".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ffmpeg_failure_is_reported_by_its_first_cause() {
        let stderr = "[CUDA @ 0x563d4f0b5380] Cannot load libcuda.so.1\n[CUDA @ 0x5] Could not dynamically load CUDA\nDevice creation failed: -1.\n";
        assert_eq!(first_cause(stderr), "Cannot load libcuda.so.1");
        let nested =
            "[vost#0:0/h264_nvenc @ 0x55] [enc:h264_nvenc @ 0x55] Error while opening encoder\n";
        assert_eq!(first_cause(nested), "Error while opening encoder");
        assert_eq!(first_cause("\n"), "failed");
    }
}
