//! Device selection: `cpu`, `cuda` or `auto`.
//!
//! `cuda` registers ONNX Runtime's CUDA execution provider with
//! `error_on_failure`: if it does not register, the load fails; it never falls
//! back to the CPU silently. `auto` tries CUDA and logs which device it got.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The device asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Cuda,
    #[default]
    Auto,
}

impl FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(format!("unknown device `{other}`: use cpu, cuda or auto")),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::Auto => "auto",
        })
    }
}

/// The device a session really runs on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase", tag = "kind")]
pub enum ResolvedDevice {
    Cpu,
    Cuda { id: i32, name: String },
}

impl ResolvedDevice {
    /// The audit form: `cpu` or `cuda:<GPU name>` (e.g. `cuda:Tesla T4`).
    pub fn device_name(&self) -> String {
        match self {
            ResolvedDevice::Cpu => "cpu".to_string(),
            ResolvedDevice::Cuda { name, .. } => format!("cuda:{name}"),
        }
    }

    pub fn is_cuda(&self) -> bool {
        matches!(self, ResolvedDevice::Cuda { .. })
    }
}

impl fmt::Display for ResolvedDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.device_name())
    }
}

/// Whether this binary was built with the `cuda` feature.
pub const CUDA_COMPILED: bool = cfg!(feature = "cuda");

/// The name of CUDA device `id` for audit records, without linking CUDA:
/// `nvidia-smi`, else the driver's `/proc` entries, else `GPU <id>`.
pub fn gpu_name(id: i32) -> String {
    let from_smi = std::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name",
            "--format=csv,noheader",
            &format!("--id={id}"),
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    if let Some(name) = from_smi {
        return sanitize(&name);
    }
    let from_proc = std::fs::read_dir("/proc/driver/nvidia/gpus")
        .ok()
        .and_then(|d| {
            let mut dirs: Vec<_> = d.filter_map(|e| e.ok().map(|e| e.path())).collect();
            dirs.sort();
            let info =
                std::fs::read_to_string(dirs.get(usize::try_from(id).ok()?)?.join("information"))
                    .ok()?;
            info.lines()
                .find_map(|l| l.strip_prefix("Model:"))
                .map(|m| m.trim().to_string())
        });
    from_proc.map_or_else(|| format!("GPU {id}"), |n| sanitize(&n))
}

/// Audit metadata is US-ASCII: keep printable ASCII only.
pub(crate) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_names() {
        assert_eq!("CUDA".parse::<Device>().unwrap(), Device::Cuda);
        assert_eq!("auto".parse::<Device>().unwrap(), Device::Auto);
        assert!(
            "tpu"
                .parse::<Device>()
                .unwrap_err()
                .contains("cpu, cuda or auto")
        );
        assert_eq!(ResolvedDevice::Cpu.device_name(), "cpu");
        let t4 = ResolvedDevice::Cuda {
            id: 0,
            name: "Tesla T4".into(),
        };
        assert_eq!(t4.device_name(), "cuda:Tesla T4");
    }
}
