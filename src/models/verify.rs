//! Checking the models folder against the manifest: every file's sha256, for
//! `reelay models verify` and `reelay models list`.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// sha256 of a file, streamed, as lowercase hex.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// One row of `reelay models list`.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub name: String,
    pub task: Task,
    pub scale: Option<u32>,
    pub precisions: Vec<Precision>,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    pub provenance: String,
}

/// The manifest's models, for `reelay models list`.
pub fn list(manifest: &Manifest) -> Vec<ModelInfo> {
    manifest
        .models
        .iter()
        .map(|m| ModelInfo {
            name: m.name.clone(),
            task: m.task,
            scale: m.scale,
            precisions: std::iter::once(Precision::Fp32)
                .chain(m.fp16.as_ref().map(|_| Precision::Fp16))
                .collect(),
            file: m.file.clone(),
            sha256: m.sha256.clone(),
            licence: m.licence.clone(),
            inputs: m.inputs.clone(),
            outputs: m.outputs.clone(),
            provenance: m.provenance.clone(),
        })
        .collect()
}

/// Outcome of checking one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum VerifyStatus {
    Ok,
    Missing,
    Mismatch { actual: String },
    Unreadable { error: String },
}

/// One row of `reelay models verify`.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyResult {
    pub name: String,
    pub precision: Precision,
    pub path: PathBuf,
    pub expected: String,
    #[serde(flatten)]
    pub status: VerifyStatus,
}

impl VerifyResult {
    pub fn ok(&self) -> bool {
        self.status == VerifyStatus::Ok
    }
}

/// Checks every file (fp32 and variants) of the manifest, for
/// `reelay models verify`; the command fails when any row is not ok.
pub fn verify(manifest: &Manifest) -> Vec<VerifyResult> {
    let mut out = Vec::new();
    for m in &manifest.models {
        for precision in [Precision::Fp32, Precision::Fp16] {
            let Some((file, expected)) = m.variant(precision) else {
                continue;
            };
            let path = manifest.dir.join(file);
            let status = match sha256_file(&path) {
                Ok(actual) if actual.eq_ignore_ascii_case(expected) => VerifyStatus::Ok,
                Ok(actual) => VerifyStatus::Mismatch { actual },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => VerifyStatus::Missing,
                Err(e) => VerifyStatus::Unreadable {
                    error: e.to_string(),
                },
            };
            out.push(VerifyResult {
                name: m.name.clone(),
                precision,
                path,
                expected: expected.to_string(),
                status,
            });
        }
    }
    out
}
