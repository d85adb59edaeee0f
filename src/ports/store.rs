//! Object storage as the core sees it: whole objects, user metadata, atomic
//! puts, and a conditional put so the first writer of an output wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

/// User metadata, as S3 keeps it under `x-amz-meta-`: lower-case ASCII names
/// to US-ASCII values.
pub type Metadata = BTreeMap<String, String>;

/// What a `head` or `list` tells about one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    /// Quoteless hex etag; task ids hash it, so it must change with content.
    pub etag: String,
    /// Seconds since the Unix epoch.
    pub last_modified: i64,
    pub content_type: Option<String>,
    pub metadata: Metadata,
}

impl ObjectMeta {
    /// `key@etag`, the form inputs take in task ids and audit records.
    pub fn reference(&self) -> String {
        format!("{}@{}", self.key, self.etag)
    }
}

/// An entry a listing left out because it cannot be an object: a file
/// whose name is not a key, or one that cannot be read. The rest of the
/// listing is whole; whoever lists records these once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Skipped {
    /// The entry's name relative to the bucket, escaped for display.
    pub name: String,
    /// What is wrong with it and how to fix it.
    pub reason: String,
}

/// Whether a put may replace an existing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutCondition {
    /// Always write.
    Overwrite,
    /// `If-None-Match: *`: write only if no object has the key.
    IfAbsent,
}

/// Result of a put: written, or refused because the key already existed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutOutcome {
    Written(ObjectMeta),
    AlreadyExists,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object `{key}` not found: upload it first, or fix the key that names it")]
    NotFound { key: String },
    #[error("key `{key}` is not allowed: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("metadata for `{key}` is not valid: {reason}")]
    InvalidMetadata { key: String, reason: String },
    #[error("storage I/O on `{key}`: {source}")]
    Io {
        key: String,
        #[source]
        source: std::io::Error,
    },
    #[error("storage backend on `{key}`: {message}")]
    Backend { key: String, message: String },
    /// The object is no longer the version a task names: it was replaced.
    #[error(
        "object `{key}` is no longer version {expected}: it was replaced, and the new version is planned on its own"
    )]
    Changed { key: String, expected: String },
}

impl StoreError {
    pub fn is_not_found(&self) -> bool {
        matches!(self, StoreError::NotFound { .. })
    }

    /// The object is there, but not the version that was asked for.
    pub fn is_changed(&self) -> bool {
        matches!(self, StoreError::Changed { .. })
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// A bucket. Implemented by the local directory store and by S3/R2.
#[async_trait]
pub trait ObjectStore: Send + Sync {
    /// Human-readable bucket name for logs and audit output (`s3://b`, a path).
    fn describe(&self) -> String;

    /// The bucket's name where notifications name one (S3, R2), so a
    /// notification for another bucket is refused, not looked up here.
    /// `None` (a local folder): notifications are not checked.
    fn bucket_name(&self) -> Option<&str> {
        None
    }

    /// Metadata of `key`, or `None` when it does not exist.
    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>>;

    /// Streams `key` into the file `dest` (created or truncated).
    async fn get_to_file(&self, key: &str, dest: &Path) -> StoreResult<ObjectMeta>;

    /// Streams version `etag` of `key` into `dest`: a task's input is the
    /// exact `key@etag` its id was made from, so an upload replaced mid-job
    /// is never processed under the old one's lineage. Another version is
    /// [`StoreError::Changed`]. The default compares after the download
    /// (the etag `get_to_file` reports is the one of the bytes it wrote);
    /// S3 asks with `If-Match` and downloads nothing else.
    async fn get_version_to_file(
        &self,
        key: &str,
        etag: &str,
        dest: &Path,
    ) -> StoreResult<ObjectMeta> {
        let meta = self.get_to_file(key, dest).await?;
        if meta.etag == etag {
            return Ok(meta);
        }
        let _ = std::fs::remove_file(dest);
        Err(StoreError::Changed {
            key: key.to_string(),
            expected: etag.to_string(),
        })
    }

    /// Whole small objects (manifests, claims, detections).
    async fn get_bytes(&self, key: &str) -> StoreResult<(Vec<u8>, ObjectMeta)>;

    /// A path FFmpeg may read directly, when the store is on local disk; saves a copy.
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }

    /// Whether the store could hold an object at `key` (the local store
    /// refuses a key whose folder is a symlink), asked at planning so the
    /// refusal names the job's field before any step runs.
    fn check_writable(&self, _key: &str) -> StoreResult<()> {
        Ok(())
    }

    /// Uploads a file atomically (multipart for large files where the backend has it).
    async fn put_file(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta>;

    /// Writes a small object, optionally only when absent.
    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> StoreResult<PutOutcome>;

    /// Every object whose key starts with `prefix`, in key order.
    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>>;

    /// As [`ObjectStore::list`], with the entries under `prefix` it left
    /// out. Only a local folder has such entries (every S3 key is a key).
    async fn list_checked(&self, prefix: &str) -> StoreResult<(Vec<ObjectMeta>, Vec<Skipped>)> {
        Ok((self.list(prefix).await?, Vec::new()))
    }

    /// Removes `key`; absent keys are not an error.
    async fn delete(&self, key: &str) -> StoreResult<()>;
}

/// Content type from a key's extension, for puts and for S3 consoles.
pub fn content_type_for(key: &str) -> &'static str {
    let ext = key.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "mp4" | "m4v" => "video/mp4",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "webm" => "video/webm",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        _ => "application/octet-stream",
    }
}
