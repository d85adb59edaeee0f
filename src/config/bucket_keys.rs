//! The bucket's own access keys (R2): from two variables or a Secrets
//! Manager secret, never shown.

use crate::config::env;

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

#[cfg(test)]
mod tests {
    use super::*;

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
