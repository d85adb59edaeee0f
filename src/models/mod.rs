//! The model manifest (`models/manifest.toml`), sha256 checks and the models
//! folder.
//!
//! Every model load goes through [`Manifest::load_verified`], which reads the
//! file once, hashes those bytes and hands the same bytes to ONNX Runtime, so
//! what runs is exactly what was checked.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::env;

mod locate;
mod verify;

pub use locate::models_dir;
pub(crate) use locate::{find_up, search_starts};
pub use verify::{ModelInfo, VerifyResult, VerifyStatus, list, sha256_file, verify};

/// The manifest's file name inside the models folder.
pub const MANIFEST_FILE: &str = "manifest.toml";

/// Errors from the manifest and the model files. Each names the file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "no models folder found: {reason}. Set {var} to the folder holding manifest.toml and the model files, or run from inside the reelay checkout (its models/ folder is found by walking up from the working directory and from the executable's folder)",
        var = env::MODELS_DIR
    )]
    NoModelsDir { reason: String },
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not a valid model manifest: {message}. Fix the file (see the field list at its top)"
    )]
    Manifest { path: PathBuf, message: String },
    #[error("unknown model `{name}`; known models: {}. Pick one of these, or add an entry to {manifest}", known.join(", "))]
    UnknownModel {
        name: String,
        known: Vec<String>,
        manifest: PathBuf,
    },
    #[error(
        "model `{name}` has no {precision} variant in {manifest}; use fp32, or make the variant with `bash models/fp16.sh --install` and add its [model.fp16] entry"
    )]
    NoVariant {
        name: String,
        precision: Precision,
        manifest: PathBuf,
    },
    #[error("model file {path} is missing (model `{name}`). Restore it (`git checkout -- models/`), or point {var} at a folder that has it", var = env::MODELS_DIR)]
    MissingFile { name: String, path: PathBuf },
    #[error(
        "model file {path} failed its sha256 check and was not loaded: expected {expected}, actual {actual}. The file is damaged or was replaced: restore it (`git checkout -- models/`), or if the new file is intended, put its sha256 into {manifest}"
    )]
    Sha256Mismatch {
        path: PathBuf,
        expected: String,
        actual: String,
        manifest: PathBuf,
    },
}

/// What a model does, which fixes its input and output layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `input` f32 `[N,3,H,W]` RGB 0..1 → `output` f32 `[N,3,sH,sW]` (not clamped).
    Upscale,
    /// A detector: TF OD API SSD (`image_tensor:0` u8 `[N,H,W,3]` → boxes,
    /// scores, classes, count) or a YOLO-style head (f32 `[N,3,H,W]` →
    /// `[N, 4+C, anchors]`), told apart by the graph's outputs.
    Detect,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Upscale => "upscale",
            Task::Detect => "detect",
        })
    }
}

/// Numeric precision of a model file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Fp16,
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Precision::Fp32 => "fp32",
            Precision::Fp16 => "fp16",
        })
    }
}

impl FromStr for Precision {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Ok(Precision::Fp32),
            "fp16" | "f16" | "float16" | "half" => Ok(Precision::Fp16),
            other => Err(format!("unknown precision `{other}`: use fp32 or fp16")),
        }
    }
}

/// A variant of a model in another precision (`[model.fp16]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variant {
    pub file: String,
    pub sha256: String,
}

/// One `[[model]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelEntry {
    pub name: String,
    pub file: String,
    pub sha256: String,
    pub licence: String,
    pub provenance: String,
    pub task: Task,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mflop_per_pixel: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_px: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp16: Option<Variant>,
    /// Detectors with a YOLO-style head: how a frame becomes the input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub letterbox: Option<LetterboxSpec>,
    /// Detectors: the name of each class id (index = the id the model
    /// outputs), so detections say what they found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
}

/// A detector's preprocessing (`[model.letterbox]`): scale the frame to fit
/// `width`×`height` keeping its aspect ratio, pad the rest with grey `pad`
/// evenly on both sides, RGB in 0..1. Written down in the manifest so a
/// model is run the way it was converted.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LetterboxSpec {
    pub height: u32,
    pub width: u32,
    /// Grey level (0..255) of the padding.
    pub pad: u8,
}

impl ModelEntry {
    /// File name and expected sha256 of the given precision.
    pub fn variant(&self, precision: Precision) -> Option<(&str, &str)> {
        match precision {
            Precision::Fp32 => Some((&self.file, &self.sha256)),
            Precision::Fp16 => self.fp16.as_ref().map(|v| (&*v.file, &*v.sha256)),
        }
    }

    /// The name of class `id`, when the manifest lists class names.
    pub fn class_name(&self, id: u32) -> Option<&str> {
        self.class_names
            .as_ref()
            .and_then(|n| n.get(id as usize))
            .map(String::as_str)
    }

    /// `name@` and the first 12 hex digits of the sha256: the audit form.
    pub fn audit_id(&self, precision: Precision) -> String {
        let sha = self.variant(precision).map_or("", |(_, s)| s);
        format!("{}@{}", self.name, &sha[..sha.len().min(12)])
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ManifestFile {
    #[serde(rename = "model")]
    models: Vec<ModelEntry>,
}

/// The parsed manifest and the folder it lives in (where the model files are).
#[derive(Debug, Clone)]
pub struct Manifest {
    pub dir: PathBuf,
    pub models: Vec<ModelEntry>,
}

/// A model file read into memory whose bytes matched the manifest's sha256.
#[derive(Debug, Clone)]
pub struct VerifiedModel {
    pub entry: ModelEntry,
    pub precision: Precision,
    pub path: PathBuf,
    pub sha256: String,
    pub bytes: Vec<u8>,
}

impl Manifest {
    /// Loads the manifest from [`models_dir`].
    pub fn load_default() -> Result<Manifest, ModelError> {
        Manifest::load(&models_dir()?)
    }

    /// Loads `dir/manifest.toml`.
    pub fn load(dir: &Path) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| ModelError::Io {
            path: path.clone(),
            source,
        })?;
        Manifest::parse(dir, &text)
    }

    /// Parses manifest text as if it were `dir/manifest.toml`.
    pub fn parse(dir: &Path, text: &str) -> Result<Manifest, ModelError> {
        let path = dir.join(MANIFEST_FILE);
        let bad = |message: String| ModelError::Manifest {
            path: path.clone(),
            message,
        };
        let file: ManifestFile = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
        let mut seen = std::collections::HashSet::new();
        for m in &file.models {
            if !seen.insert(m.name.as_str()) {
                return Err(bad(format!("model `{}` appears twice", m.name)));
            }
            let mut digests = vec![(&m.file, &m.sha256)];
            if let Some(v) = &m.fp16 {
                digests.push((&v.file, &v.sha256));
            }
            for (file, sha) in digests {
                if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "model `{}`: sha256 of {file} must be 64 hex digits, got `{sha}`",
                        m.name
                    )));
                }
                if file.contains('/') || file.contains('\\') {
                    return Err(bad(format!(
                        "model `{}`: file `{file}` must be a bare file name in the models folder",
                        m.name
                    )));
                }
            }
            if m.task == Task::Upscale && m.scale.unwrap_or(0) < 1 {
                return Err(bad(format!(
                    "model `{}`: an upscale model needs `scale` (e.g. 4)",
                    m.name
                )));
            }
            if let Some(l) = &m.letterbox
                && (l.height < 32 || l.width < 32 || l.height % 32 != 0 || l.width % 32 != 0)
            {
                return Err(bad(format!(
                    "model `{}`: letterbox {}x{} (width x height) must be multiples of 32",
                    m.name, l.width, l.height
                )));
            }
            if m.inputs.is_empty() || m.outputs.is_empty() {
                return Err(bad(format!(
                    "model `{}`: `inputs` and `outputs` must name the graph's tensors",
                    m.name
                )));
            }
        }
        Ok(Manifest {
            dir: dir.to_path_buf(),
            models: file.models,
        })
    }

    /// Path of the manifest file.
    pub fn path(&self) -> PathBuf {
        self.dir.join(MANIFEST_FILE)
    }

    /// Known model names, in manifest order.
    pub fn names(&self) -> Vec<String> {
        self.models.iter().map(|m| m.name.clone()).collect()
    }

    /// The entry called `name`, or an error listing the known names.
    pub fn get(&self, name: &str) -> Result<&ModelEntry, ModelError> {
        self.models
            .iter()
            .find(|m| m.name == name)
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_string(),
                known: self.names(),
                manifest: self.path(),
            })
    }

    fn variant_of<'a>(
        &self,
        entry: &'a ModelEntry,
        precision: Precision,
    ) -> Result<(&'a str, &'a str), ModelError> {
        entry
            .variant(precision)
            .ok_or_else(|| ModelError::NoVariant {
                name: entry.name.clone(),
                precision,
                manifest: self.path(),
            })
    }

    /// Reads the model file, checks its sha256 against the manifest and
    /// returns its bytes. Call this before every load: a mismatch is an
    /// error naming the file, both digests and the fix.
    pub fn load_verified(
        &self,
        name: &str,
        precision: Precision,
    ) -> Result<VerifiedModel, ModelError> {
        let entry = self.get(name)?;
        let (file, expected) = self.variant_of(entry, precision)?;
        let path = self.dir.join(file);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ModelError::MissingFile {
                    name: entry.name.clone(),
                    path,
                });
            }
            Err(source) => return Err(ModelError::Io { path, source }),
        };
        let actual = hex::encode(Sha256::digest(&bytes));
        if !actual.eq_ignore_ascii_case(expected) {
            return Err(ModelError::Sha256Mismatch {
                path,
                expected: expected.to_string(),
                actual,
                manifest: self.path(),
            });
        }
        Ok(VerifiedModel {
            entry: entry.clone(),
            precision,
            path,
            sha256: actual,
            bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "406ecc51037178a5de1f499c24cd6352cca5fbff6e5831334561dabb4b46dafa";

    fn manifest(dir: &Path, sha: &str) -> Manifest {
        Manifest::parse(
            dir,
            &format!(
                r#"
[[model]]
name = "m"
file = "m.onnx"
sha256 = "{sha}"
licence = "MIT"
provenance = "test"
task = "upscale"
inputs = ["input"]
outputs = ["output"]
scale = 4
"#
            ),
        )
        .unwrap()
    }

    #[test]
    fn the_repository_manifest_parses() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        let m = Manifest::load(&dir).unwrap();
        assert!(m.get("realesr-general-x4v3").unwrap().scale == Some(4));
        assert!(m.get("ssdlite-person").unwrap().task == Task::Detect);
        assert!(verify(&m).iter().all(VerifyResult::ok), "{:?}", verify(&m));
    }

    #[test]
    fn unknown_model_lists_known_names() {
        let m = manifest(Path::new("/nowhere"), SHA);
        let e = m.get("nope").unwrap_err().to_string();
        assert!(
            e.contains("unknown model `nope`") && e.contains("known models: m"),
            "{e}"
        );
    }

    #[test]
    fn mismatch_names_file_digests_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("m.onnx"), b"not the model").unwrap();
        let m = manifest(dir.path(), SHA);
        let e = m.load_verified("m", Precision::Fp32).unwrap_err();
        let text = e.to_string();
        assert!(matches!(e, ModelError::Sha256Mismatch { .. }));
        assert!(
            text.contains("m.onnx") && text.contains(SHA) && text.contains("restore"),
            "{text}"
        );
        assert!(!verify(&m)[0].ok());
        let e = m
            .load_verified("m", Precision::Fp16)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no fp16 variant"), "{e}");
    }

    #[test]
    fn bad_manifest_is_named() {
        let e = Manifest::parse(Path::new("/x"), "[[model]]\nname = 1\n").unwrap_err();
        assert!(e.to_string().contains("/x/manifest.toml"), "{e}");
        let bad_sha = SHA.replace('4', "g");
        let e = Manifest::parse(
            Path::new("/x"),
            &format!(
                "[[model]]\nname='a'\nfile='a'\nsha256='{bad_sha}'\nlicence='x'\nprovenance='x'\ntask='detect'\ninputs=['i']\noutputs=['o']\n"
            ),
        )
        .unwrap_err();
        assert!(e.to_string().contains("64 hex digits"), "{e}");
    }

    #[test]
    fn precision_parses() {
        assert_eq!("FP16".parse::<Precision>().unwrap(), Precision::Fp16);
        assert!("int8".parse::<Precision>().is_err());
    }
}
