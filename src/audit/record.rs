//! The audit record, stored as S3 user metadata (`x-amz-meta-reelay-*`):
//! US-ASCII and within 2 KB. Keys are percent-encoded so any key fits.

use serde::Serialize;

use crate::keys::split_reference;
use crate::keys::{decode_from_metadata, encode_for_metadata};
use crate::ports::store::Metadata;

pub const TASK: &str = "reelay-task";
pub const JOB: &str = "reelay-job";
pub const KIND: &str = "reelay-kind";
pub const STEP: &str = "reelay-step";
pub const INPUTS: &str = "reelay-inputs";
pub const PARAMS: &str = "reelay-params";
pub const MODEL: &str = "reelay-model";
pub const DEVICE: &str = "reelay-device";
/// Why `device = auto` ran on the CPU (absent when it got a GPU, or was not auto).
pub const DEVICE_REASON: &str = "reelay-device-reason";
pub const STARTED: &str = "reelay-started";
pub const MILLIS: &str = "reelay-ms";
pub const COST: &str = "reelay-cost-usd";
pub const VERSION: &str = "reelay-version";
pub const WORKER: &str = "reelay-worker";
pub const MANIFEST: &str = "reelay-manifest";

/// Marks `reelay-inputs` as a pointer to an object holding the full list,
/// used when the inputs alone would break S3's 2 KB metadata limit.
pub const INPUTS_POINTER: char = '>';

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub task: String,
    pub job: Option<String>,
    pub kind: String,
    pub step: String,
    /// `key@etag`, decoded.
    pub inputs: Vec<String>,
    /// Key of an object listing the inputs, when they did not fit.
    pub inputs_pointer: Option<String>,
    pub params_hash: String,
    /// `name@sha256-prefix`.
    pub model: Option<String>,
    /// `cpu`, `cuda:Tesla T4`.
    pub device: String,
    /// RFC 3339.
    pub started: String,
    pub millis: u64,
    /// `None` when the device has no price in the table.
    pub cost_usd: Option<f64>,
    pub version: String,
    pub worker: String,
    pub manifest: Option<String>,
}

impl AuditRecord {
    /// Encodes the inputs as `enc(key)@etag,...`.
    pub fn encode_inputs(inputs: &[String]) -> String {
        inputs
            .iter()
            .map(|r| {
                let (key, etag) = split_reference(r);
                format!("{}@{}", encode_for_metadata(key), etag)
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn decode_inputs(value: &str) -> Vec<String> {
        value
            .split(',')
            .filter(|s| !s.is_empty())
            .filter_map(|r| {
                let (key, etag) = split_reference(r);
                decode_from_metadata(key).map(|k| format!("{k}@{etag}"))
            })
            .collect()
    }

    pub fn to_metadata(&self) -> Metadata {
        let mut m = Metadata::new();
        m.insert(TASK.into(), self.task.clone());
        if let Some(job) = &self.job {
            m.insert(JOB.into(), job.clone());
        }
        m.insert(KIND.into(), self.kind.clone());
        m.insert(STEP.into(), encode_for_metadata(&self.step));
        let inputs = match &self.inputs_pointer {
            Some(pointer) => format!("{INPUTS_POINTER}{}", encode_for_metadata(pointer)),
            None => Self::encode_inputs(&self.inputs),
        };
        m.insert(INPUTS.into(), inputs);
        m.insert(PARAMS.into(), self.params_hash.clone());
        if let Some(model) = &self.model {
            m.insert(MODEL.into(), model.clone());
        }
        m.insert(
            DEVICE.into(),
            self.device.chars().filter(char::is_ascii).collect(),
        );
        m.insert(STARTED.into(), self.started.clone());
        m.insert(MILLIS.into(), self.millis.to_string());
        m.insert(
            COST.into(),
            self.cost_usd
                .map_or_else(|| "unpriced".to_string(), |c| format!("{c:.9}")),
        );
        m.insert(VERSION.into(), self.version.clone());
        m.insert(WORKER.into(), encode_for_metadata(&self.worker));
        if let Some(manifest) = &self.manifest {
            m.insert(MANIFEST.into(), encode_for_metadata(manifest));
        }
        m
    }

    /// Reads a record back; `None` for objects reelay did not write.
    pub fn from_metadata(m: &Metadata) -> Option<AuditRecord> {
        let get = |k: &str| m.get(k).cloned();
        let task = get(TASK)?;
        let raw_inputs = get(INPUTS).unwrap_or_default();
        let (inputs, inputs_pointer) = match raw_inputs.strip_prefix(INPUTS_POINTER) {
            Some(pointer) => (Vec::new(), decode_from_metadata(pointer)),
            None => (Self::decode_inputs(&raw_inputs), None),
        };
        Some(AuditRecord {
            task,
            job: get(JOB),
            kind: get(KIND).unwrap_or_default(),
            step: get(STEP)
                .and_then(|s| decode_from_metadata(&s))
                .unwrap_or_default(),
            inputs,
            inputs_pointer,
            params_hash: get(PARAMS).unwrap_or_default(),
            model: get(MODEL),
            device: get(DEVICE).unwrap_or_else(|| "unknown".into()),
            started: get(STARTED).unwrap_or_default(),
            millis: get(MILLIS).and_then(|v| v.parse().ok()).unwrap_or(0),
            // Metadata is user-writable: `NaN` or `inf` is no price.
            cost_usd: get(COST)
                .and_then(|v| v.parse::<f64>().ok())
                .filter(|c| c.is_finite() && *c >= 0.0),
            version: get(VERSION).unwrap_or_default(),
            worker: get(WORKER)
                .and_then(|s| decode_from_metadata(&s))
                .unwrap_or_default(),
            manifest: get(MANIFEST).and_then(|s| decode_from_metadata(&s)),
        })
    }
}

/// Bytes the metadata takes as S3 counts it (names plus values).
pub fn metadata_size(m: &Metadata) -> usize {
    m.iter().map(|(k, v)| k.len() + v.len()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> AuditRecord {
        AuditRecord {
            task: "abc".into(),
            job: Some("j1".into()),
            kind: "extract".into(),
            step: "extract-0".into(),
            inputs: vec!["sources/my clip,é@1.mp4@e1".into()],
            inputs_pointer: None,
            params_hash: "ph".into(),
            model: None,
            device: "cuda:Tesla T4".into(),
            started: "2026-11-26T18:00:00Z".into(),
            millis: 1234,
            cost_usd: Some(0.000202),
            version: "0.1.0".into(),
            worker: "host-1".into(),
            manifest: Some("jobs/a b.json".into()),
        }
    }

    #[test]
    fn round_trips_through_ascii_metadata() {
        let r = record();
        let m = r.to_metadata();
        assert!(m.values().all(|v| v.is_ascii()));
        let back = AuditRecord::from_metadata(&m).unwrap();
        assert_eq!(back.inputs, r.inputs);
        assert_eq!(back.manifest, r.manifest);
        assert_eq!(back.millis, 1234);
        assert!((back.cost_usd.unwrap() - 0.000202).abs() < 1e-12);
    }

    #[test]
    fn pointer_replaces_long_input_lists() {
        let mut r = record();
        r.inputs_pointer = Some("_reelay/inputs/abc.json".into());
        let back = AuditRecord::from_metadata(&r.to_metadata()).unwrap();
        assert!(back.inputs.is_empty());
        assert_eq!(
            back.inputs_pointer.as_deref(),
            Some("_reelay/inputs/abc.json")
        );
    }
}
