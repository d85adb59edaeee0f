//! Upload notifications. Every shape a bucket can send becomes one
//! [`ObjectCreated`].

use serde::{Deserialize, Serialize};

pub mod parse;

pub use parse::{EventError, Notification, parse_message};

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

impl ObjectCreated {
    /// An object known only by its key: what reelay builds itself to plan a
    /// key again (a superseded job's manifest, a test's upload).
    pub fn key_only(bucket: impl Into<String>, key: impl Into<String>) -> ObjectCreated {
        ObjectCreated {
            bucket: bucket.into(),
            key: key.into(),
            size: None,
            etag: None,
            version: None,
            sequencer: None,
            time: None,
        }
    }
}
