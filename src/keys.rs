//! Object keys as reelay accepts them. One check, used by every store and by
//! manifest validation, so a key can never name a path outside the bucket.

/// S3's own limit.
pub const MAX_KEY_BYTES: usize = 1024;

/// Longest folder or file name: what local file systems hold (S3 holds more,
/// but a key must work in every mode).
pub const MAX_SEGMENT_BYTES: usize = 255;

/// Prefix reelay keeps for its own bookkeeping in a local bucket.
pub const LOCAL_RESERVED: &str = ".reelay";

/// `key@etag` → (`key`, `etag`): how tasks and audit records name one
/// version of an object. Etags never contain `@`; keys may.
pub fn split_reference(reference: &str) -> (&str, &str) {
    reference.rsplit_once('@').unwrap_or((reference, ""))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("key `{key}` is not allowed: {reason}")]
pub struct KeyError {
    pub key: String,
    pub reason: String,
}

/// Checks `key` is a relative, normalised path: no absolute paths, no `.` or
/// `..` segments, no empty segments, no NUL or control characters.
pub fn validate(key: &str) -> Result<(), KeyError> {
    let fail = |reason: &str| {
        Err(KeyError {
            key: key.escape_debug().to_string(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() {
        return fail("it is empty; name an object such as `sources/match.mp4`");
    }
    if key.len() > MAX_KEY_BYTES {
        return fail("it is longer than 1024 bytes; use a shorter key");
    }
    if key.chars().any(|c| c == '\0' || c.is_control()) {
        return fail("it contains a NUL or control character; remove it");
    }
    if key.starts_with('/') || key.starts_with('\\') {
        return fail("it is absolute; keys are relative to the bucket, drop the leading `/`");
    }
    if key.contains('\\') {
        return fail("it contains `\\`; use `/` to separate folders");
    }
    for segment in key.split('/') {
        match segment {
            "" => return fail("it has an empty segment (`//` or a trailing `/`); remove it"),
            "." | ".." => {
                return fail(
                    "it has a `.` or `..` segment, which could leave the bucket; name the object directly",
                );
            }
            s if s.len() > MAX_SEGMENT_BYTES => {
                return fail(
                    "a folder or file name in it is longer than 255 bytes, more than a file system holds; shorten it",
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// Percent-encodes a key for US-ASCII metadata values: unreserved characters
/// and `/` stay, everything else (spaces, unicode, `,`, `@`) becomes `%XX`.
pub fn encode_for_metadata(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for b in key.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Inverse of [`encode_for_metadata`]; `None` when it is not valid UTF-8.
pub fn decode_from_metadata(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_awkward_but_safe_keys() {
        for key in [
            "sources/match.mp4",
            "sources/my clip.mp4",
            "sources/-rf.mp4",
            "sources/été/ü.mp4",
            "a+b%20c",
        ] {
            validate(key).unwrap();
        }
    }

    #[test]
    fn rejects_escapes() {
        for key in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/./b",
            "a//b",
            "a/",
            "a\0b",
            "a\\b",
            "a\nb",
        ] {
            assert!(validate(key).is_err(), "{key:?} should be rejected");
        }
        assert!(validate(&"k".repeat(1025)).is_err());
        // A name too long for a file: refused (permanent) rather than failing
        // every write as an I/O error (transient).
        assert!(validate(&format!("exports/{}.mp4", "n".repeat(300))).is_err());
        validate(&format!("exports/{}.mp4", "n".repeat(251))).unwrap();
    }

    #[test]
    fn metadata_encoding_round_trips_and_is_ascii() {
        for key in [
            "sources/my clip.mp4",
            "sources/été,1@2.mp4",
            "sources/100%.mp4",
        ] {
            let enc = encode_for_metadata(key);
            assert!(
                enc.is_ascii() && !enc.contains(',') && !enc.contains('@') && !enc.contains(' ')
            );
            assert_eq!(decode_from_metadata(&enc).unwrap(), key);
        }
    }
}
