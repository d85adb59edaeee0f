//! Upload notifications. Every shape a bucket can send becomes one
//! [`ObjectCreated`].

use serde::{Deserialize, Serialize};

/// A new object in the bucket, whatever announced it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectCreated {
    pub bucket: String,
    /// Decoded key (S3 sends it form-urlencoded).
    pub key: String,
    pub size: Option<u64>,
    pub etag: Option<String>,
    pub version: Option<String>,
    /// S3's per-key ordering token; lets a consumer drop stale duplicates.
    pub sequencer: Option<String>,
    /// RFC 3339 event time, when the notification carried one.
    pub time: Option<String>,
}

/// Bucket notifications in `body` as uploads; ignored shapes give none.
/// Until the AWS shapes land this understands a bare `ObjectCreated`.
pub fn parse_notifications(body: &str) -> Result<Vec<ObjectCreated>, String> {
    serde_json::from_str::<ObjectCreated>(body)
        .map(|e| vec![e])
        .map_err(|e| format!("not a notification reelay understands: {e}"))
}
