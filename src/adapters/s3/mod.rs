//! [`ObjectStore`](crate::ports::ObjectStore) over S3 and S3-compatible stores (Cloudflare R2, moto,
//! MinIO) with aws-sdk-s3.
//!
//! - Gets stream into the destination file; nothing holds a whole object in
//!   memory except `get_bytes`, which is capped.
//! - Files above [`S3Options::multipart_threshold`] go up in parts, a few at
//!   a time, each read straight from the file; a failed upload is aborted so
//!   no parts are left behind. Either way the object appears whole or not at
//!   all.
//! - A conditional put sends `If-None-Match: *`; the loser of a race gets
//!   `PutOutcome::AlreadyExists`.
//!
//! One idea per file: `options` (addressing, endpoint, R2 settings, part
//! sizes), `store` (the object operations), `multipart`, `rules` (what S3
//! accepts as keys and metadata) and `errors` (reading S3's answers).
//! Bucket URLs and the bucket's own keys are configuration:
//! `config::bucket_url`, `config::bucket_keys`.

mod errors;
mod multipart;
mod options;
mod rules;
mod store;

pub use crate::config::bucket_keys::S3Keys;
pub use crate::config::bucket_url::{BucketUrl, parse_bucket_url};
pub use options::S3Options;
pub use store::S3Store;
