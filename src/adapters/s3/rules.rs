//! What S3 accepts as a key and as user metadata, checked before a request
//! so the refusal names the key and the reason.

use crate::ports::store::StoreResult;
use crate::ports::{Metadata, StoreError};

/// S3's limit on user metadata: names plus values, in bytes.
const MAX_METADATA_BYTES: usize = 2048;
/// S3's longest key, in UTF-8 bytes.
const MAX_KEY_BYTES: usize = 1024;

pub(super) fn check_key(key: &str) -> StoreResult<()> {
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
pub(super) fn check_metadata(key: &str, metadata: &Metadata) -> StoreResult<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
