//! `s3://NAME[/PREFIX]` bucket URLs and S3's rules for bucket names: read
//! by the configuration check and by the S3 adapter alike, so they live
//! below both.

/// A parsed `s3://NAME[/PREFIX]` bucket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketUrl {
    pub bucket: String,
    /// Key prefix after the bucket, without a leading `/`; empty when none.
    /// It is returned for the caller to scope by; the S3 store itself works on
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

pub fn check_bucket_name(name: &str) -> Result<(), String> {
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
}
