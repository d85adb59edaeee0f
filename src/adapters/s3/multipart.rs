//! Large files go up in parts, a few at a time, each read straight from
//! the file; a failed upload is aborted so no parts are left behind.

use std::path::Path;

use aws_sdk_s3::error::DisplayErrorContext;
use aws_sdk_s3::primitives::{ByteStream, Length};
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use futures::{StreamExt, TryStreamExt};

use crate::ports::store::StoreResult;
use crate::ports::{Metadata, ObjectMeta, StoreError};

use super::S3Store;
use super::errors::io_err;
use super::options::{MIB, MIN_PART_SIZE};
use super::store::written_meta;

/// S3's most parts per upload.
const MAX_PARTS: u64 = 10_000;

impl S3Store {
    pub(super) async fn put_multipart(
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
