//! How reelay talks to the bucket: addressing, endpoint and region (R2,
//! moto, MinIO), part sizes, and the bucket's own keys, from the
//! `REELAY_S3_*` variables.

use crate::config::env;
use crate::ports::StoreError;

use crate::config::bucket_keys::S3Keys;

pub(super) const MIB: u64 = 1024 * 1024;
/// S3's smallest part (except the last).
pub(super) const MIN_PART_SIZE: u64 = 5 * MIB;

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

    pub(super) fn validate(&self) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
