//! [`ObjectStore`] over S3 and S3-compatible stores (Cloudflare R2, moto,
//! MinIO) with aws-sdk-s3.
//!
//! - Gets stream into the destination file; nothing holds a whole object in
//!   memory except [`ObjectStore::get_bytes`], which is capped.
//! - Files above [`S3Options::multipart_threshold`] go up in parts, a few at
//!   a time, each read straight from the file; a failed upload is aborted so
//!   no parts are left behind. Either way the object appears whole or not at
//!   all.
//! - A conditional put sends `If-None-Match: *`; the loser of a race gets
//!   [`PutOutcome::AlreadyExists`].

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncWriteExt;

use crate::config::env;
use crate::ports::store::StoreResult;
use crate::ports::{Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, StoreError};

const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last).
const MIN_PART_SIZE: u64 = 5 * MIB;
/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;
/// S3's limit on user metadata: names plus values, in bytes.
const MAX_METADATA_BYTES: usize = 2048;
/// S3's longest key, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;

/// How reelay talks to the bucket. [`S3Options::from_env`] reads the two
/// `REELAY_S3_*` variables; credentials, region and `AWS_ENDPOINT_URL` come
/// from aws-config's default chain.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Address buckets as `endpoint/bucket/key` instead of
    /// `bucket.endpoint/key` (`REELAY_S3_PATH_STYLE=true`): moto, MinIO,
    /// some R2 setups.
    pub path_style: bool,
    /// An S3-compatible endpoint (`REELAY_S3_ENDPOINT`), e.g.
    /// `https://ACCOUNT.r2.cloudflarestorage.com`. Setting it also sets the
    /// region to `auto` (R2's) unless [`S3Options::region`] says otherwise,
    /// and computes request checksums only where an operation requires one,
    /// which S3-compatible stores accept.
    pub endpoint: Option<String>,
    /// Overrides the region from the default chain.
    pub region: Option<String>,
    /// Files of at least this many bytes go up as a multipart upload.
    pub multipart_threshold: u64,
    /// Bytes per part (at least 5 MiB; grown if a file would need more than
    /// 10,000 parts).
    pub part_size: u64,
    /// Parts in flight at once; memory is not the bound (parts stream from
    /// the file), sockets and bandwidth are.
    pub upload_concurrency: usize,
    /// Largest object [`ObjectStore::get_bytes`] reads into memory.
    pub max_in_memory: u64,
    /// Keys per `ListObjectsV2` page (S3 returns at most 1000).
    pub list_page_size: i32,
    /// The bucket's own keys (R2): the S3 client signs with them while SQS
    /// keeps the default AWS chain. `None`: the default chain for both.
    pub credentials: Option<S3Keys>,
}

/// An access key pair for the bucket alone. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct S3Keys {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for S3Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Keys")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"(redacted)")
            .finish()
    }
}

impl S3Keys {
    /// `REELAY_S3_ACCESS_KEY_ID` and `REELAY_S3_SECRET_ACCESS_KEY` from
    /// `lookup`: both or neither.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Option<S3Keys>, String> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        match (get(env::S3_ACCESS_KEY_ID), get(env::S3_SECRET_ACCESS_KEY)) {
            (Some(access_key_id), Some(secret_access_key)) => Ok(Some(S3Keys {
                access_key_id,
                secret_access_key,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(format!(
                "{} is set without {}: set both (the bucket's own keys) or neither",
                env::S3_ACCESS_KEY_ID,
                env::S3_SECRET_ACCESS_KEY
            )),
            (None, Some(_)) => Err(format!(
                "{} is set without {}: set both (the bucket's own keys) or neither",
                env::S3_SECRET_ACCESS_KEY,
                env::S3_ACCESS_KEY_ID
            )),
        }
    }

    /// The JSON a Secrets Manager secret holds:
    /// `{"access_key_id": "...", "secret_access_key": "..."}`.
    pub fn from_secret_json(secret: &str, name: &str) -> Result<S3Keys, String> {
        #[derive(serde::Deserialize)]
        struct Keys {
            access_key_id: String,
            secret_access_key: String,
        }
        let keys: Keys = serde_json::from_str(secret).map_err(|e| {
            format!(
                "secret {name} is not JSON with access_key_id and secret_access_key ({})",
                e.classify_name()
            )
        })?;
        Ok(S3Keys {
            access_key_id: keys.access_key_id,
            secret_access_key: keys.secret_access_key,
        })
    }
}

/// Names serde_json's error class without echoing any of the secret.
trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "unreadable",
            serde_json::error::Category::Syntax => "not valid JSON",
            serde_json::error::Category::Data => "a field is missing or not a string",
            serde_json::error::Category::Eof => "cut short",
        }
    }
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            path_style: false,
            endpoint: None,
            region: None,
            multipart_threshold: 16 * MIB,
            part_size: 8 * MIB,
            upload_concurrency: 4,
            max_in_memory: 64 * MIB,
            list_page_size: 1000,
            credentials: None,
        }
    }
}

impl S3Options {
    /// Defaults, with `REELAY_S3_PATH_STYLE`, `REELAY_S3_ENDPOINT` and the
    /// bucket's own keys (`REELAY_S3_ACCESS_KEY_ID`,
    /// `REELAY_S3_SECRET_ACCESS_KEY`) applied.
    pub fn from_env() -> Result<Self, StoreError> {
        let credentials =
            S3Keys::from_lookup(|name| std::env::var(name).ok()).map_err(|message| {
                StoreError::Backend {
                    key: String::new(),
                    message,
                }
            })?;
        let mut opts = S3Options {
            credentials,
            ..S3Options::default()
        };
        if let Ok(v) = std::env::var(env::S3_PATH_STYLE) {
            opts.path_style = parse_bool(&v).ok_or_else(|| StoreError::Backend {
                key: String::new(),
                message: format!("{} is `{v}`: set it to true or false", env::S3_PATH_STYLE),
            })?;
        }
        if let Ok(v) = std::env::var(env::S3_ENDPOINT)
            && !v.trim().is_empty()
        {
            opts.endpoint = Some(v.trim().to_string());
        }
        Ok(opts)
    }

    fn validate(&self) -> Result<(), String> {
        if self.part_size < MIN_PART_SIZE {
            return Err(format!(
                "part size {} is below S3's minimum of 5 MiB",
                self.part_size
            ));
        }
        if self.multipart_threshold < self.part_size {
            return Err(format!(
                "multipart threshold {} is below the part size {}",
                self.multipart_threshold, self.part_size
            ));
        }
        if !(1..=1000).contains(&self.list_page_size) {
            return Err("list page size must be 1 to 1000".into());
        }
        if self.upload_concurrency == 0 {
            return Err("upload concurrency must be at least 1".into());
        }
        Ok(())
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// A parsed `s3://NAME[/PREFIX]` bucket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub bucket: String,
    /// Key prefix after the bucket, without a leading `/`; empty when none.
    /// It is returned for the caller to scope by; [`S3Store`] itself works on
    /// whole keys, the same keys notifications carry.
    pub prefix: String,
}

/// Parses `s3://NAME` or `s3://NAME/PREFIX`; `None` when `url` is not an
/// `s3://` URL (a local folder, say). An `s3://` URL with a bad bucket name is
/// an error that says what is wrong.
pub fn parse_bucket_url(url: &str) -> Option<Result<BucketUrl, String>> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = match rest.split_once('/') {
        Some((b, p)) => (b, p),
        None => (rest, ""),
    };
    Some(check_bucket_name(bucket).map(|()| BucketUrl {
        bucket: bucket.to_string(),
        prefix: prefix.trim_start_matches('/').to_string(),
    }))
}

fn check_bucket_name(name: &str) -> Result<(), String> {
    let fix = "bucket names are 3-63 characters of a-z, 0-9, `.` and `-`, \
               starting and ending with a letter or digit";
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
    let ok_ends = name
        .bytes()
        .next()
        .zip(name.bytes().last())
        .is_some_and(|(a, z)| a.is_ascii_alphanumeric() && z.is_ascii_alphanumeric());
    if (3..=63).contains(&name.len()) && ok_chars && ok_ends {
        Ok(())
    } else {
        Err(format!(
            "`s3://{name}`: `{name}` is not a bucket name: {fix}"
        ))
    }
}

/// A bucket on S3 or an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    opts: S3Options,
}

impl S3Store {
    /// Credentials and region from aws-config's default chain (which also
    /// honours `AWS_ENDPOINT_URL`), then `opts` on top.
    pub async fn from_env(bucket: &str, opts: S3Options) -> StoreResult<Self> {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::from_sdk_config(&sdk, bucket, opts)
    }

    /// Same as [`S3Store::from_env`] from an already loaded configuration.
    pub fn from_sdk_config(
        sdk: &aws_config::SdkConfig,
        bucket: &str,
        opts: S3Options,
    ) -> StoreResult<Self> {
        let mut conf = aws_sdk_s3::config::Builder::from(sdk).force_path_style(opts.path_style);
        if let Some(endpoint) = &opts.endpoint {
            conf = conf
                .endpoint_url(endpoint)
                .region(aws_sdk_s3::config::Region::new("auto"))
                .request_checksum_calculation(RequestChecksumCalculation::WhenRequired);
        }
        if let Some(region) = &opts.region {
            conf = conf.region(aws_sdk_s3::config::Region::new(region.clone()));
        }
        if let Some(keys) = &opts.credentials {
            conf = conf.credentials_provider(aws_sdk_s3::config::Credentials::new(
                keys.access_key_id.clone(),
                keys.secret_access_key.clone(),
                None,
                None,
                "reelay-bucket-keys",
            ));
        }
        Self::new(Client::from_conf(conf.build()), bucket, opts)
    }

    /// Wraps a client built by the caller.
    pub fn new(client: Client, bucket: &str, opts: S3Options) -> StoreResult<Self> {
        check_bucket_name(bucket).map_err(|message| StoreError::Backend {
            key: String::new(),
            message,
        })?;
        opts.validate().map_err(|message| StoreError::Backend {
            key: String::new(),
            message: format!("S3 options: {message}"),
        })?;
        Ok(S3Store {
            client,
            bucket: bucket.to_string(),
            opts,
        })
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn options(&self) -> &S3Options {
        &self.opts
    }

    fn backend<E, R>(&self, key: &str, op: &str, err: SdkError<E, R>) -> StoreError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        StoreError::Backend {
            key: key.to_string(),
            message: format!(
                "{op} on s3://{}: {}",
                self.bucket,
                DisplayErrorContext(&err)
            ),
        }
    }

    async fn put_single(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta> {
        let body = ByteStream::from_path(src)
            .await
            .map_err(|e| io_err(key, std::io::Error::other(e)))?;
        let out = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .content_length(size as i64)
            .body(body)
            .send()
            .await
            .map_err(|e| self.backend(key, "PutObject", e))?;
        Ok(written_meta(key, size, out.e_tag(), content_type, metadata))
    }

    async fn put_multipart(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .send()
            .await
            .map_err(|e| self.backend(key, "CreateMultipartUpload", e))?;
        let upload_id = created.upload_id().ok_or_else(|| StoreError::Backend {
            key: key.to_string(),
            message: "CreateMultipartUpload returned no upload id".into(),
        })?;

        match self.upload_parts(key, src, size, upload_id).await {
            Ok(parts) => {
                let done = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                match done {
                    Ok(out) => Ok(written_meta(key, size, out.e_tag(), content_type, metadata)),
                    Err(e) => {
                        let err = self.backend(key, "CompleteMultipartUpload", e);
                        self.abort(key, upload_id).await;
                        Err(err)
                    }
                }
            }
            Err(err) => {
                self.abort(key, upload_id).await;
                Err(err)
            }
        }
    }

    async fn upload_parts(
        &self,
        key: &str,
        src: &Path,
        size: u64,
        upload_id: &str,
    ) -> StoreResult<Vec<CompletedPart>> {
        let part_size = part_size_for(size, self.opts.part_size);
        let count = size.div_ceil(part_size);
        let uploads = (0..count).map(|i| {
            let offset = i * part_size;
            let len = part_size.min(size - offset);
            let number = (i + 1) as i32;
            async move {
                let body = ByteStream::read_from()
                    .path(src)
                    .offset(offset)
                    .length(Length::Exact(len))
                    .build()
                    .await
                    .map_err(|e| io_err(key, std::io::Error::other(e)))?;
                let out = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(key)
                    .upload_id(upload_id)
                    .part_number(number)
                    .content_length(len as i64)
                    .body(body)
                    .send()
                    .await
                    .map_err(|e| self.backend(key, &format!("UploadPart {number}"), e))?;
                Ok::<_, StoreError>(
                    CompletedPart::builder()
                        .part_number(number)
                        .set_e_tag(out.e_tag().map(str::to_string))
                        .set_checksum_crc32(out.checksum_crc32().map(str::to_string))
                        .set_checksum_crc32_c(out.checksum_crc32_c().map(str::to_string))
                        .set_checksum_crc64_nvme(out.checksum_crc64_nvme().map(str::to_string))
                        .set_checksum_sha1(out.checksum_sha1().map(str::to_string))
                        .set_checksum_sha256(out.checksum_sha256().map(str::to_string))
                        .build(),
                )
            }
        });
        let mut parts: Vec<CompletedPart> = futures::stream::iter(uploads)
            .buffer_unordered(self.opts.upload_concurrency)
            .try_collect()
            .await?;
        parts.sort_by_key(|p| p.part_number());
        Ok(parts)
    }

    /// Best effort: a failed abort leaves parts that a bucket lifecycle rule
    /// for incomplete uploads cleans up.
    async fn abort(&self, key: &str, upload_id: &str) {
        if let Err(e) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload_id)
            .send()
            .await
        {
            tracing::warn!(
                bucket = %self.bucket,
                key,
                upload_id,
                error = %DisplayErrorContext(&e),
                "could not abort a failed multipart upload"
            );
        }
    }
}

/// The part size for a file of `size` bytes: `preferred`, grown to whole
/// MiB when the file would otherwise need more than 10,000 parts.
fn part_size_for(size: u64, preferred: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
    preferred.max(needed).max(MIN_PART_SIZE)
}

fn io_err(key: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        source,
    }
}

fn unquote(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

fn now_secs() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn secs(t: Option<&DateTime>) -> i64 {
    t.map(DateTime::secs).unwrap_or(0)
}

/// What a successful put tells: S3 does not return the modification time, so
/// it is the local clock's, within the request's duration of the real one.
fn written_meta(
    key: &str,
    size: u64,
    etag: Option<&str>,
    content_type: &str,
    metadata: &Metadata,
) -> ObjectMeta {
    ObjectMeta {
        key: key.to_string(),
        size,
        etag: etag.map(unquote).unwrap_or_default(),
        last_modified: now_secs(),
        content_type: Some(content_type.to_string()),
        metadata: metadata.clone(),
    }
}

fn check_key(key: &str) -> StoreResult<()> {
    let reason = if key.is_empty() {
        "it is empty"
    } else if key.len() > MAX_KEY_BYTES {
        "it is longer than S3's 1024 bytes"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    })
}

/// S3 user metadata: lower-case names (S3 lower-cases them anyway, so a
/// mixed-case name would not read back), printable US-ASCII values, 2 KB in
/// all.
fn check_metadata(key: &str, metadata: &Metadata) -> StoreResult<()> {
    let bad = |reason: String| StoreError::InvalidMetadata {
        key: key.to_string(),
        reason,
    };
    let mut total = 0;
    for (name, value) in metadata {
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if !name_ok {
            return Err(bad(format!(
                "name `{name}` must be lower-case a-z, 0-9, `-` or `_`"
            )));
        }
        if let Some(c) = value.chars().find(|c| !(' '..='~').contains(c)) {
            return Err(bad(format!(
                "value of `{name}` has {c:?}; S3 metadata values are printable US-ASCII \
                 (percent-encode anything else)"
            )));
        }
        total += name.len() + value.len();
    }
    if total > MAX_METADATA_BYTES {
        return Err(bad(format!(
            "{total} bytes of names and values, over S3's {MAX_METADATA_BYTES}"
        )));
    }
    Ok(())
}

#[async_trait]
impl ObjectStore for S3Store {
    fn bucket_name(&self) -> Option<&str> {
        Some(&self.bucket)
    }

    fn describe(&self) -> String {
        format!("s3://{}", self.bucket)
    }

    async fn head(&self, key: &str) -> StoreResult<Option<ObjectMeta>> {
        check_key(key)?;
        let out = match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_404(&e) => return Ok(None),
            Err(e) => return Err(self.backend(key, "HeadObject", e)),
        };
        Ok(Some(ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            last_modified: secs(out.last_modified()),
            content_type: out.content_type().map(str::to_string),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        }))
    }

    async fn get_to_file(&self, key: &str, dest: &Path) -> StoreResult<ObjectMeta> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_404(&e) => {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.backend(key, "GetObject", e)),
        };
        let meta = ObjectMeta {
            key: key.to_string(),
            size: out.content_length().unwrap_or(0).max(0) as u64,
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            last_modified: secs(out.last_modified()),
            content_type: out.content_type().map(str::to_string),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        };
        let written = async {
            let file = tokio::fs::File::create(dest).await?;
            let mut file = tokio::io::BufWriter::with_capacity(256 * 1024, file);
            let mut body = out.body;
            let mut n: u64 = 0;
            while let Some(chunk) = body.try_next().await.map_err(std::io::Error::other)? {
                file.write_all(&chunk).await?;
                n += chunk.len() as u64;
            }
            file.flush().await?;
            file.into_inner().sync_all().await?;
            Ok::<u64, std::io::Error>(n)
        }
        .await;
        match written {
            Ok(n) if n == meta.size => Ok(meta),
            Ok(n) => {
                let _ = tokio::fs::remove_file(dest).await;
                Err(StoreError::Backend {
                    key: key.to_string(),
                    message: format!(
                        "GetObject on s3://{} ended after {n} of {} bytes",
                        self.bucket, meta.size
                    ),
                })
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(dest).await;
                Err(io_err(key, e))
            }
        }
    }

    async fn get_bytes(&self, key: &str) -> StoreResult<(Vec<u8>, ObjectMeta)> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_404(&e) => {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            Err(e) => return Err(self.backend(key, "GetObject", e)),
        };
        let size = out.content_length().unwrap_or(0).max(0) as u64;
        if size > self.opts.max_in_memory {
            return Err(StoreError::Backend {
                key: key.to_string(),
                message: format!(
                    "object is {size} bytes, over the {} bytes reelay reads into memory; \
                     it is not a manifest or a small artifact",
                    self.opts.max_in_memory
                ),
            });
        }
        let meta = ObjectMeta {
            key: key.to_string(),
            size,
            etag: out.e_tag().map(unquote).unwrap_or_default(),
            last_modified: secs(out.last_modified()),
            content_type: out.content_type().map(str::to_string),
            metadata: out
                .metadata()
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default(),
        };
        let bytes = out
            .body
            .collect()
            .await
            .map_err(|e| io_err(key, std::io::Error::other(e)))?
            .to_vec();
        Ok((bytes, meta))
    }

    async fn put_file(
        &self,
        key: &str,
        src: &Path,
        content_type: &str,
        metadata: &Metadata,
    ) -> StoreResult<ObjectMeta> {
        check_key(key)?;
        check_metadata(key, metadata)?;
        let size = tokio::fs::metadata(src)
            .await
            .map_err(|e| io_err(key, e))?
            .len();
        if size >= self.opts.multipart_threshold {
            self.put_multipart(key, src, size, content_type, metadata)
                .await
        } else {
            self.put_single(key, src, size, content_type, metadata)
                .await
        }
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> StoreResult<PutOutcome> {
        check_key(key)?;
        check_metadata(key, metadata)?;
        let mut req = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type(content_type)
            .set_metadata(Some(metadata.clone().into_iter().collect()))
            .body(ByteStream::from(bytes.to_vec()));
        if condition == PutCondition::IfAbsent {
            req = req.if_none_match("*");
        }
        match req.send().await {
            Ok(out) => Ok(PutOutcome::Written(written_meta(
                key,
                bytes.len() as u64,
                out.e_tag(),
                content_type,
                metadata,
            ))),
            Err(e) if condition == PutCondition::IfAbsent && is_already_exists(&e) => {
                Ok(PutOutcome::AlreadyExists)
            }
            Err(e) => Err(self.backend(key, "PutObject", e)),
        }
    }

    async fn list(&self, prefix: &str) -> StoreResult<Vec<ObjectMeta>> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .page_size(self.opts.list_page_size)
            .send();
        let mut all = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.backend(prefix, "ListObjectsV2", e))?;
            for obj in page.contents() {
                let Some(key) = obj.key() else { continue };
                all.push(ObjectMeta {
                    key: key.to_string(),
                    size: obj.size().unwrap_or(0).max(0) as u64,
                    etag: obj.e_tag().map(unquote).unwrap_or_default(),
                    last_modified: secs(obj.last_modified()),
                    // Listing carries neither; `head` has them.
                    content_type: None,
                    metadata: Metadata::new(),
                });
            }
        }
        // S3 lists in UTF-8 binary order already; S3-compatible stores may not.
        all.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(all)
    }

    async fn delete(&self, key: &str) -> StoreResult<()> {
        check_key(key)?;
        match self
            .client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_404(&e) => Ok(()),
            Err(e) => Err(self.backend(key, "DeleteObject", e)),
        }
    }
}

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

fn is_404<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(404)
        || matches!(
            err.as_service_error().and_then(ProvideErrorMetadata::code),
            Some("NoSuchKey" | "NotFound")
        )
}

/// 412 Precondition Failed: the key exists. 409 ConditionalRequestConflict:
/// another conditional write to the key is in flight or just won.
fn is_already_exists<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code);
    status(err) == Some(412)
        || code == Some("PreconditionFailed")
        || code == Some("ConditionalRequestConflict")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_urls() {
        assert_eq!(
            parse_bucket_url("s3://media").unwrap().unwrap(),
            BucketUrl {
                bucket: "media".into(),
                prefix: String::new()
            }
        );
        assert_eq!(
            parse_bucket_url("s3://my.media-1/team/a/")
                .unwrap()
                .unwrap(),
            BucketUrl {
                bucket: "my.media-1".into(),
                prefix: "team/a/".into()
            }
        );
        assert_eq!(parse_bucket_url("s3://media/").unwrap().unwrap().prefix, "");
        assert!(parse_bucket_url("./reelay-data").is_none());
        assert!(parse_bucket_url("/abs/path").is_none());
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Media",
            "s3://-media",
            "s3://me_dia/x",
        ] {
            let err = parse_bucket_url(bad).unwrap().unwrap_err();
            assert!(err.contains("bucket name"), "{bad}: {err}");
        }
    }

    #[test]
    fn part_sizes() {
        assert_eq!(part_size_for(20 * MIB, 8 * MIB), 8 * MIB);
        assert_eq!(part_size_for(1, 8 * MIB), 8 * MIB);
        // 200 GiB needs parts over 8 MiB to stay within 10,000 parts.
        let size = 200 * 1024 * MIB;
        let part = part_size_for(size, 8 * MIB);
        assert!(size.div_ceil(part) <= MAX_PARTS);
        assert_eq!(part % MIB, 0);
        assert!(part_size_for(10, 1) >= MIN_PART_SIZE);
    }

    #[test]
    fn options_validate() {
        assert!(S3Options::default().validate().is_ok());
        let small = S3Options {
            part_size: MIB,
            ..S3Options::default()
        };
        assert!(small.validate().unwrap_err().contains("5 MiB"));
        let low = S3Options {
            multipart_threshold: 6 * MIB,
            ..S3Options::default()
        };
        assert!(low.validate().is_err());
    }

    #[test]
    fn bools() {
        assert_eq!(parse_bool("TRUE"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("maybe"), None);
    }

    #[test]
    fn metadata_rules() {
        let ok: Metadata = [("reelay-task".to_string(), "abc 123".to_string())].into();
        assert!(check_metadata("k", &ok).is_ok());
        let upper: Metadata = [("Reelay".to_string(), "x".to_string())].into();
        assert!(check_metadata("k", &upper).is_err());
        let unicode: Metadata = [("a".to_string(), "café".to_string())].into();
        let err = check_metadata("k", &unicode).unwrap_err().to_string();
        assert!(err.contains("US-ASCII"), "{err}");
        let big: Metadata = [("a".to_string(), "x".repeat(2048))].into();
        assert!(check_metadata("k", &big).is_err());
    }

    #[test]
    fn keys() {
        assert!(check_key("a b/ü+%.mp4").is_ok());
        assert!(check_key("").is_err());
        assert!(check_key(&"k".repeat(1025)).is_err());
    }

    #[test]
    fn bucket_keys_come_in_pairs_and_never_show_the_secret() {
        let both = |k: &str| match k {
            "REELAY_S3_ACCESS_KEY_ID" => Some("AKIDR2".to_string()),
            "REELAY_S3_SECRET_ACCESS_KEY" => Some("s3cr3t-value".to_string()),
            _ => None,
        };
        let keys = S3Keys::from_lookup(both).unwrap().unwrap();
        assert_eq!(keys.access_key_id, "AKIDR2");
        let shown = format!("{keys:?}");
        assert!(
            shown.contains("AKIDR2") && !shown.contains("s3cr3t"),
            "{shown}"
        );
        assert_eq!(S3Keys::from_lookup(|_| None).unwrap(), None);
        let e = S3Keys::from_lookup(|k| (k == "REELAY_S3_ACCESS_KEY_ID").then(|| "AKID".into()))
            .unwrap_err();
        assert!(e.contains("REELAY_S3_SECRET_ACCESS_KEY"), "{e}");
        let parsed =
            S3Keys::from_secret_json(r#"{"access_key_id":"a","secret_access_key":"b"}"#, "r2")
                .unwrap();
        assert_eq!(
            (
                parsed.access_key_id.as_str(),
                parsed.secret_access_key.as_str()
            ),
            ("a", "b")
        );
        let e = S3Keys::from_secret_json(r#"{"access_key_id":"a","secret":"hunter2"}"#, "r2")
            .unwrap_err();
        assert!(e.contains("secret r2") && !e.contains("hunter2"), "{e}");
    }
}
