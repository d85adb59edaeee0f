//! The bucket itself: a client on one bucket, and the object operations.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::config::RequestChecksumCalculation;
use aws_sdk_s3::error::{DisplayErrorContext, SdkError};
use aws_sdk_s3::primitives::{ByteStream, DateTime};
use tokio::io::AsyncWriteExt;

use crate::ports::store::StoreResult;
use crate::ports::{Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, StoreError};

use super::errors::{io_err, is_404, is_already_exists, is_precondition_failed};
use super::options::S3Options;
use super::rules::{check_key, check_metadata};
use crate::config::bucket_url::check_bucket_name;

/// A bucket on S3 or an S3-compatible store.
#[derive(Debug, Clone)]
pub struct S3Store {
    pub(super) client: Client,
    pub(super) bucket: String,
    pub(super) opts: S3Options,
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

    pub(super) fn backend<E, R>(&self, key: &str, op: &str, err: SdkError<E, R>) -> StoreError
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

    /// Streams `key` into `dest`; with `if_match`, only that version
    /// (`If-Match`: S3 answers 412 for any other).
    async fn download(
        &self,
        key: &str,
        if_match: Option<&str>,
        dest: &Path,
    ) -> StoreResult<ObjectMeta> {
        check_key(key)?;
        let out = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_if_match(if_match.map(|etag| format!("\"{etag}\"")))
            .send()
            .await
        {
            Ok(out) => out,
            Err(e) if is_404(&e) => {
                return Err(StoreError::NotFound {
                    key: key.to_string(),
                });
            }
            Err(e) if if_match.is_some() && is_precondition_failed(&e) => {
                return Err(StoreError::Changed {
                    key: key.to_string(),
                    expected: if_match.unwrap_or_default().to_string(),
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
pub(super) fn written_meta(
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
        self.download(key, None, dest).await
    }

    async fn get_version_to_file(
        &self,
        key: &str,
        etag: &str,
        dest: &Path,
    ) -> StoreResult<ObjectMeta> {
        self.download(key, Some(etag), dest).await
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
