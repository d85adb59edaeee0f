//! AWS-mode settings: the `[aws]` section of `reelay.toml`, the bucket and
//! queue URLs (`bucket`, `events_queue_url`, `gpu_queue_url` at the top level,
//! overridden by `REELAY_BUCKET`, `REELAY_EVENTS_QUEUE_URL`,
//! `REELAY_GPU_QUEUE_URL`).

use serde::{Deserialize, Serialize};

use crate::invalid::Invalid;

/// `[aws]`: how `reelay route`, `reelay work`, `reelay reconcile` and the
/// Lambda reach the bucket and the queues. Credentials and region come from
/// the standard `AWS_*` variables through aws-config's default chain, which
/// also honours `AWS_ENDPOINT_URL`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AwsSettings {
    /// Path-style addressing (moto, MinIO, some R2 setups); env
    /// `REELAY_S3_PATH_STYLE` overrides it.
    pub path_style: bool,
    /// S3-compatible endpoint, e.g. `https://ACCOUNT.r2.cloudflarestorage.com`;
    /// env `REELAY_S3_ENDPOINT` overrides it.
    pub endpoint: Option<String>,
    /// Region override for the bucket (R2 uses `auto`).
    pub region: Option<String>,
    /// Seconds each receive long-polls (SQS allows 0 to 20).
    pub poll_wait_seconds: u64,
    /// Seconds in-flight work may run after SIGTERM before it is handed back.
    /// Keep it below the container's stop timeout (ECS: 30 s by default).
    pub shutdown_grace_seconds: u64,
    /// Attempts per S3 or SQS call, the first included: 5xx answers,
    /// throttling, timeouts and reset connections are retried with
    /// exponential backoff and jitter before the step sees an error.
    pub max_attempts: u32,
    /// Seconds without a byte of an answer before a call is abandoned and
    /// retried; above `poll_wait_seconds`, or every long poll would time out.
    pub read_timeout_seconds: u64,
    /// Seconds to open a connection before the attempt is retried.
    pub connect_timeout_seconds: u64,
    /// The bucket's own keys, read at start from the secret named by
    /// `REELAY_S3_CREDENTIALS_SECRET`; never in a file, never logged.
    #[serde(skip)]
    pub bucket_keys: Option<super::bucket_keys::S3Keys>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            path_style: false,
            endpoint: None,
            region: None,
            poll_wait_seconds: 20,
            shutdown_grace_seconds: 25,
            max_attempts: 5,
            read_timeout_seconds: 30,
            connect_timeout_seconds: 5,
            bucket_keys: None,
        }
    }
}

/// Checks `[aws]` and the bucket and queue URLs of the file `object`.
pub fn validate(
    object: &str,
    aws: &AwsSettings,
    bucket: Option<&str>,
    queues: [(&str, Option<&str>); 2],
) -> Result<(), Invalid> {
    let err = |field: &str, problem: String, fix: String| Invalid::new(object, field, problem, fix);
    if aws.poll_wait_seconds > 20 {
        return Err(err(
            "aws.poll_wait_seconds",
            format!("{} is out of range", aws.poll_wait_seconds),
            "use 0 to 20 (SQS's longest long poll)".into(),
        ));
    }
    if aws.shutdown_grace_seconds > 3600 {
        return Err(err(
            "aws.shutdown_grace_seconds",
            format!("{} is out of range", aws.shutdown_grace_seconds),
            "use 0 to 3600, below the container's stop timeout".into(),
        ));
    }
    if !(1..=20).contains(&aws.max_attempts) {
        return Err(err(
            "aws.max_attempts",
            format!("{} is out of range", aws.max_attempts),
            "use 1 to 20 (5 is the default)".into(),
        ));
    }
    if aws.read_timeout_seconds <= aws.poll_wait_seconds || aws.read_timeout_seconds > 3600 {
        return Err(err(
            "aws.read_timeout_seconds",
            format!(
                "{} must be above aws.poll_wait_seconds ({}), or every long poll times out",
                aws.read_timeout_seconds, aws.poll_wait_seconds
            ),
            format!(
                "use {} to 3600 (30 is the default)",
                aws.poll_wait_seconds + 1
            ),
        ));
    }
    if !(1..=300).contains(&aws.connect_timeout_seconds) {
        return Err(err(
            "aws.connect_timeout_seconds",
            format!("{} is out of range", aws.connect_timeout_seconds),
            "use 1 to 300 (5 is the default)".into(),
        ));
    }
    if let Some(endpoint) = &aws.endpoint
        && !is_http_url(endpoint)
    {
        return Err(err(
            "aws.endpoint",
            format!("`{endpoint}` is not an http(s) URL"),
            "write e.g. https://ACCOUNT.r2.cloudflarestorage.com".into(),
        ));
    }
    if let Some(bucket) = bucket
        && let Some(Err(problem)) = super::bucket_url::parse_bucket_url(bucket)
    {
        return Err(err(
            "bucket",
            problem,
            format!(
                "write s3://NAME in `bucket` or {}",
                crate::config::env::BUCKET
            ),
        ));
    }
    for (field, url) in queues {
        if let Some(url) = url
            && !is_http_url(url)
        {
            return Err(err(
                field,
                format!("`{url}` is not a queue URL"),
                "give the queue's URL, e.g. https://sqs.us-east-1.amazonaws.com/123456789012/reelay-events".into(),
            ));
        }
    }
    Ok(())
}

fn is_http_url(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://"))
        && s.split_once("://")
            .is_some_and(|(_, rest)| !rest.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_QUEUES: [(&str, Option<&str>); 2] =
        [("events_queue_url", None), ("gpu_queue_url", None)];

    fn field_at_fault(aws: &AwsSettings) -> String {
        validate("reelay.toml", aws, None, NO_QUEUES)
            .unwrap_err()
            .field
    }

    #[test]
    fn urls_and_ranges_are_checked() {
        let aws = AwsSettings {
            poll_wait_seconds: 21,
            ..AwsSettings::default()
        };
        assert_eq!(field_at_fault(&aws), "aws.poll_wait_seconds");
        let aws = AwsSettings {
            poll_wait_seconds: 20,
            read_timeout_seconds: 20,
            ..AwsSettings::default()
        };
        assert_eq!(field_at_fault(&aws), "aws.read_timeout_seconds");
        let aws = AwsSettings {
            max_attempts: 0,
            ..AwsSettings::default()
        };
        assert_eq!(field_at_fault(&aws), "aws.max_attempts");
        let aws = AwsSettings {
            endpoint: Some("r2.example".into()),
            ..AwsSettings::default()
        };
        let e = validate("reelay.toml", &aws, None, NO_QUEUES).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("reelay.toml", "aws.endpoint")
        );
        assert!(e.fix.contains("https://"), "{e}");
        let d = AwsSettings::default();
        let e = validate("reelay.toml", &d, Some("s3://Bad_Bucket"), NO_QUEUES).unwrap_err();
        assert_eq!(e.field, "bucket");
        // A local folder is a bucket too (dev mode).
        assert!(validate("reelay.toml", &d, Some("/data/bucket"), NO_QUEUES).is_ok());
        let e = validate(
            "reelay.toml",
            &d,
            Some("s3://media"),
            [
                ("events_queue_url", Some("reelay-events")),
                ("gpu_queue_url", None),
            ],
        )
        .unwrap_err();
        assert_eq!(e.field, "events_queue_url");
    }
}
