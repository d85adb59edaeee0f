//! Reading S3's answers: not found, precondition failed, already exists.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::ports::StoreError;

type HttpResponse = aws_sdk_s3::config::http::HttpResponse;

pub(super) fn status<E>(err: &SdkError<E, HttpResponse>) -> Option<u16> {
    err.raw_response().map(|r| r.status().as_u16())
}

pub(super) fn is_404<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    status(err) == Some(404)
        || matches!(
            err.as_service_error().and_then(ProvideErrorMetadata::code),
            Some("NoSuchKey" | "NotFound")
        )
}

/// 412 Precondition Failed: on a get with `If-Match`, another version.
pub(super) fn is_precondition_failed<E: ProvideErrorMetadata>(
    err: &SdkError<E, HttpResponse>,
) -> bool {
    status(err) == Some(412)
        || err.as_service_error().and_then(ProvideErrorMetadata::code) == Some("PreconditionFailed")
}

/// 412 Precondition Failed: the key exists. 409 ConditionalRequestConflict:
/// another conditional write to the key is in flight or just won.
pub(super) fn is_already_exists<E: ProvideErrorMetadata>(err: &SdkError<E, HttpResponse>) -> bool {
    let code = err.as_service_error().and_then(ProvideErrorMetadata::code);
    status(err) == Some(412)
        || code == Some("PreconditionFailed")
        || code == Some("ConditionalRequestConflict")
}

pub(super) fn io_err(key: &str, source: std::io::Error) -> StoreError {
    StoreError::Io {
        key: key.to_string(),
        source,
    }
}
