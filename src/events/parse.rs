//! One SQS message body in, the uploads it announces out.
//!
//! Shapes understood (detected by their fields, in this order):
//!
//! | shape | marker | key encoding |
//! |---|---|---|
//! | reelay's own messages | `"type": "reelay.…"` | n/a: [`EventError::NotANotification`] |
//! | S3 records straight to SQS | `Records: [...]` | form-urlencoded |
//! | S3 records wrapped in SNS | `Type: "Notification"`, `Message: "<json>"` | form-urlencoded |
//! | `s3:TestEvent` | `Event: "s3:TestEvent"` | ignored |
//! | EventBridge | `source: "aws.s3"`, `detail-type` | raw |
//! | Cloudflare R2 | `action`, `bucket`, `object.key` | raw |
//! | a JSON array of any of these | `[...]` | (a forwarder's batch) |
//!
//! Deletes, test events and every other non-create event become
//! [`Notification::Ignored`]: the caller acknowledges them and moves on.
//!
//! The shape is told by its marker fields; then the message is read into
//! types: `aws_lambda_events`' SNS envelope and EventBridge event, and small
//! structs of ours for S3 records and R2 (`aws_lambda_events`' S3 record
//! requires `eventTime`, `userIdentity` and `requestParameters`, which
//! S3-compatible servers such as moto leave out, and reads `size` only as a
//! number). Each is read with `serde_path_to_error`, so an error names the
//! field at fault by its full path (`Records[0].s3.object.key`).

use aws_lambda_events::eventbridge::EventBridgeEvent;
use aws_lambda_events::sns::SnsMessageObj;
use serde::Deserialize;
use serde::de::{self, Deserializer};
use serde_json::Value;

use super::ObjectCreated;

/// What one record of a message means for reelay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notification {
    /// A new object: plan work for it.
    Created(ObjectCreated),
    /// A test event, a delete, or another event that creates nothing:
    /// acknowledge it and do nothing.
    Ignored { reason: String },
}

impl Notification {
    /// The upload, when this is one.
    pub fn created(&self) -> Option<&ObjectCreated> {
        match self {
            Notification::Created(c) => Some(c),
            Notification::Ignored { .. } => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("message body is not JSON ({source}); bucket notifications are JSON objects")]
    NotJson {
        #[source]
        source: serde_json::Error,
    },
    /// One of reelay's own messages (`"type": "reelay.task"`, ...) on the
    /// events queue: not an error as such, the router dispatches it elsewhere.
    #[error("message is reelay's own `{kind}` message, not a bucket notification")]
    NotANotification { kind: String },
    #[error(
        "message is not a bucket notification reelay knows (S3 records, SNS-wrapped S3, \
         EventBridge `Object Created`, Cloudflare R2, s3:TestEvent): {detail}"
    )]
    UnknownShape { detail: String },
    #[error(
        "S3 record has eventVersion `{version}`; reelay reads 2.x event notifications only \
         (check the producer of this message)"
    )]
    UnsupportedVersion { version: String },
    #[error("{shape} notification: field `{field}` {problem}")]
    Malformed {
        shape: &'static str,
        field: String,
        problem: String,
    },
    #[error("object key `{key}` in the notification cannot be decoded: {reason}")]
    InvalidKey { key: String, reason: String },
}

impl EventError {
    /// True for reelay's own messages, which a router hands to its task
    /// dispatcher instead of treating as bad input.
    pub fn is_internal(&self) -> bool {
        matches!(self, EventError::NotANotification { .. })
    }
}

/// Parses one SQS message body. One S3 message can carry several records, so
/// the answer is a list, in record order.
pub fn parse_message(body: &str) -> Result<Vec<Notification>, EventError> {
    let value: Value =
        serde_json::from_str(body).map_err(|source| EventError::NotJson { source })?;
    parse_value(&value, 0)
}

/// SNS wraps one message; a forwarder may batch. Nothing nests deeper.
const MAX_DEPTH: usize = 2;

/// Tells the shape by its marker fields (the table above, in order) and
/// reads it.
fn parse_value(value: &Value, depth: usize) -> Result<Vec<Notification>, EventError> {
    if depth > MAX_DEPTH {
        return Err(EventError::UnknownShape {
            detail: "envelopes nested too deeply".into(),
        });
    }
    let obj = match value {
        Value::Object(obj) => obj,
        Value::Array(items) => {
            let mut out = Vec::new();
            for item in items {
                out.extend(parse_value(item, depth + 1)?);
            }
            return Ok(out);
        }
        other => {
            return Err(EventError::UnknownShape {
                detail: format!("the body is a JSON {}, not an object", json_kind(other)),
            });
        }
    };
    let marker = |name: &str| obj.get(name).and_then(Value::as_str);

    if let Some(kind) = marker("type")
        && kind.starts_with("reelay.")
    {
        return Err(EventError::NotANotification {
            kind: kind.to_string(),
        });
    }
    if let Some(records) = obj.get("Records") {
        return parse_s3_records(records);
    }
    if marker("Event") == Some("s3:TestEvent") {
        let bucket = marker("Bucket").unwrap_or("?");
        return Ok(vec![Notification::Ignored {
            reason: format!("s3:TestEvent for bucket `{bucket}`"),
        }]);
    }
    if let Some(sns_type) = marker("Type")
        && (obj.contains_key("TopicArn") || obj.contains_key("Message"))
    {
        return parse_sns(sns_type, value, depth);
    }
    if obj.contains_key("detail-type") && obj.contains_key("detail") {
        return parse_eventbridge(value).map(|n| vec![n]);
    }
    if obj.contains_key("action") && obj.contains_key("object") {
        return parse_r2(value).map(|n| vec![n]);
    }
    let mut fields: Vec<&str> = obj.keys().map(String::as_str).take(8).collect();
    fields.sort_unstable();
    Err(EventError::UnknownShape {
        detail: format!("top-level fields are {fields:?}"),
    })
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

// ---------------------------------------------------------------- S3 records

const S3: &str = "S3";

/// What a record is about; read first, so that a record that creates
/// nothing is ignored whatever the rest of it holds.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an S3 event record (an object)")]
struct S3RecordHead {
    event_version: Option<String>,
    event_name: Option<String>,
}

/// The upload a create record announces.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", expecting = "an S3 event record (an object)")]
struct S3RecordUpload {
    s3: S3Entity,
    event_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with `bucket` and `object`")]
struct S3Entity {
    bucket: BucketName,
    object: S3Object,
}

#[derive(Deserialize)]
#[serde(expecting = "an object with the bucket's `name`")]
struct BucketName {
    name: String,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with the object's `key`"
)]
struct S3Object {
    /// Form-urlencoded.
    key: String,
    #[serde(default, deserialize_with = "byte_count")]
    size: Option<u64>,
    e_tag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn parse_s3_records(records: &Value) -> Result<Vec<Notification>, EventError> {
    let records: Vec<Value> = typed(records, S3, "Records")?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| parse_s3_record(&format!("Records[{i}]"), r))
        .collect()
}

fn parse_s3_record(at: &str, record: &Value) -> Result<Notification, EventError> {
    let head: S3RecordHead = typed(record, S3, at)?;
    if let Some(version) = &head.event_version {
        check_event_version(version)?;
    }
    let event_name = head.event_name.as_deref().unwrap_or("");
    // AWS sends `ObjectCreated:Put`; S3-compatible servers often prefix `s3:`.
    let name = event_name.strip_prefix("s3:").unwrap_or(event_name);
    if !name.starts_with("ObjectCreated:") {
        let what = if event_name.is_empty() {
            "an S3 record without eventName".to_string()
        } else {
            format!("S3 event `{event_name}`")
        };
        return Ok(Notification::Ignored {
            reason: format!("{what} does not create an object"),
        });
    }

    let upload: S3RecordUpload = typed(record, S3, at)?;
    let S3Entity { bucket, object } = upload.s3;
    non_empty(&bucket.name, S3, &format!("{at}.s3.bucket.name"))?;
    non_empty(&object.key, S3, &format!("{at}.s3.object.key"))?;
    Ok(Notification::Created(ObjectCreated {
        bucket: bucket.name,
        key: decode_s3_key(&object.key)?,
        size: object.size,
        etag: object.e_tag.as_deref().map(unquote_etag),
        version: object.version_id,
        sequencer: object.sequencer,
        time: upload.event_time,
    }))
}

fn check_event_version(version: &str) -> Result<(), EventError> {
    let major = version.split('.').next().unwrap_or("");
    if major == "2" {
        Ok(())
    } else {
        Err(EventError::UnsupportedVersion {
            version: version.to_string(),
        })
    }
}

/// Decodes a key as S3 writes it into event notifications: form-urlencoded,
/// so `+` is a space and everything else is `%XX` escaped UTF-8.
pub fn decode_s3_key(raw: &str) -> Result<String, EventError> {
    let bad = |reason: String| EventError::InvalidKey {
        key: raw.to_string(),
        reason,
    };
    // The decoder passes a broken escape through as it is; S3 never writes
    // one, so a key that has one was mangled on its way and is refused.
    if let Some(reason) = broken_escape(raw) {
        return Err(bad(reason));
    }
    let spaced = raw.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8()
        .map(|key| key.into_owned())
        .map_err(|e| {
            bad(format!(
                "the decoded bytes are not valid UTF-8 (at byte {})",
                e.valid_up_to()
            ))
        })
}

/// The first `%` not followed by two hex digits, described.
fn broken_escape(raw: &str) -> Option<String> {
    let bytes = raw.as_bytes();
    raw.match_indices('%')
        .find_map(|(i, _)| match bytes.get(i + 1..i + 3) {
            None => Some(format!(
                "`%` at byte {i} is not followed by two hex digits (S3 escapes `%` as `%25`)"
            )),
            Some(hex) if !hex.iter().all(u8::is_ascii_hexdigit) => Some(format!(
                "`%{}` at byte {i} is not a percent-escape (S3 escapes `%` as `%25`)",
                String::from_utf8_lossy(hex)
            )),
            Some(_) => None,
        })
}

// ----------------------------------------------------------------------- SNS

const SNS: &str = "SNS";

fn parse_sns(sns_type: &str, value: &Value, depth: usize) -> Result<Vec<Notification>, EventError> {
    if sns_type != "Notification" {
        // SubscriptionConfirmation / UnsubscribeConfirmation land in the
        // queue for cross-account subscriptions; they carry no upload.
        return Ok(vec![Notification::Ignored {
            reason: format!("SNS `{sns_type}` message"),
        }]);
    }
    // `Message` is a JSON document in a string; the type reads it.
    let sns: SnsMessageObj<Value> = typed(value, SNS, "").map_err(|e| match e {
        EventError::Malformed {
            shape,
            field,
            problem,
        } if field == "Message" => EventError::Malformed {
            shape,
            field,
            problem: format!("{problem} (it should be the JSON of a bucket notification)"),
        },
        other => other,
    })?;
    parse_value(&sns.message, depth + 1)
}

// --------------------------------------------------------------- EventBridge

const EVENTBRIDGE: &str = "EventBridge";

/// `detail` of an S3 `Object Created` event.
#[derive(Deserialize)]
#[serde(expecting = "an object with `bucket` and `object`")]
struct EventBridgeS3Detail {
    bucket: BucketName,
    object: EventBridgeS3Object,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "kebab-case",
    expecting = "an object with the object's `key`"
)]
struct EventBridgeS3Object {
    /// As it is, not urlencoded.
    key: String,
    #[serde(default, deserialize_with = "byte_count")]
    size: Option<u64>,
    etag: Option<String>,
    version_id: Option<String>,
    sequencer: Option<String>,
}

fn parse_eventbridge(value: &Value) -> Result<Notification, EventError> {
    let event: EventBridgeEvent<Value> = typed(value, EVENTBRIDGE, "")?;
    let (source, detail_type) = (event.source.as_str(), event.detail_type.as_str());
    if source != "aws.s3" {
        return Ok(Notification::Ignored {
            reason: format!("EventBridge event `{detail_type}` from `{source}`, not from aws.s3"),
        });
    }
    if detail_type != "Object Created" {
        return Ok(Notification::Ignored {
            reason: format!("EventBridge S3 event `{detail_type}` does not create an object"),
        });
    }
    let detail: EventBridgeS3Detail = typed(&event.detail, EVENTBRIDGE, "detail")?;
    let EventBridgeS3Detail { bucket, object } = detail;
    non_empty(&bucket.name, EVENTBRIDGE, "detail.bucket.name")?;
    non_empty(&object.key, EVENTBRIDGE, "detail.object.key")?;
    Ok(Notification::Created(ObjectCreated {
        bucket: bucket.name,
        key: object.key,
        size: object.size,
        etag: object.etag.as_deref().map(unquote_etag),
        version: object.version_id,
        sequencer: object.sequencer,
        // RFC 3339 in UTC, as EventBridge writes it.
        time: event
            .time
            .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.fZ").to_string()),
    }))
}

// ------------------------------------------------------------- Cloudflare R2

const R2: &str = "R2";

#[derive(Deserialize)]
#[serde(expecting = "an R2 event notification (an object)")]
struct R2Head {
    action: String,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an R2 event notification (an object)"
)]
struct R2Upload {
    bucket: String,
    object: R2Object,
    event_time: Option<String>,
}

#[derive(Deserialize)]
#[serde(
    rename_all = "camelCase",
    expecting = "an object with the object's `key`"
)]
struct R2Object {
    /// As it is, not urlencoded.
    key: String,
    #[serde(default, deserialize_with = "byte_count")]
    size: Option<u64>,
    e_tag: Option<String>,
}

fn parse_r2(value: &Value) -> Result<Notification, EventError> {
    let head: R2Head = typed(value, R2, "")?;
    let action = head.action.as_str();
    non_empty(action, R2, "action")?;
    match action {
        "PutObject" | "CopyObject" | "CompleteMultipartUpload" => {}
        "DeleteObject" | "LifecycleDeletion" => {
            return Ok(Notification::Ignored {
                reason: format!("R2 `{action}` does not create an object"),
            });
        }
        other => {
            return Ok(Notification::Ignored {
                reason: format!("R2 action `{other}` is not one that creates an object"),
            });
        }
    }
    let upload: R2Upload = typed(value, R2, "")?;
    non_empty(&upload.bucket, R2, "bucket")?;
    non_empty(&upload.object.key, R2, "object.key")?;
    Ok(Notification::Created(ObjectCreated {
        bucket: upload.bucket,
        key: upload.object.key,
        size: upload.object.size,
        etag: upload.object.e_tag.as_deref().map(unquote_etag),
        version: None,
        sequencer: None,
        time: upload.event_time,
    }))
}

// ------------------------------------------------------------------- helpers

/// Reads `value` as a `T`; an error names the field at fault by its path
/// below `at` (where `value` sits in the message).
fn typed<'v, T: Deserialize<'v>>(
    value: &'v Value,
    shape: &'static str,
    at: &str,
) -> Result<T, EventError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let field = join_path(at, &e.path().to_string());
        let message = e.into_inner().to_string();
        // serde names a missing field in the message, not in the path.
        let (field, problem) = match missing_field(&message) {
            Some(name) => (join_path(&field, name), "is missing".to_string()),
            None => (field, format!("is not valid: {message}")),
        };
        EventError::Malformed {
            shape,
            field,
            problem,
        }
    })
}

/// `Records[0]` + `s3.object` → `Records[0].s3.object`; `Records` + `[1]`
/// → `Records[1]`; `.` is serde_path_to_error's empty path.
fn join_path(at: &str, path: &str) -> String {
    match path {
        "" | "." => at.to_string(),
        _ if at.is_empty() => path.to_string(),
        _ if path.starts_with('[') => format!("{at}{path}"),
        _ => format!("{at}.{path}"),
    }
}

fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.strip_suffix('`')
}

fn non_empty(value: &str, shape: &'static str, field: &str) -> Result<(), EventError> {
    if value.is_empty() {
        return Err(EventError::Malformed {
            shape,
            field: field.to_string(),
            problem: "is empty".into(),
        });
    }
    Ok(())
}

fn unquote_etag(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

/// A byte count: a JSON integer, or a string of digits (as some
/// S3-compatible servers write it); null is none.
fn byte_count<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct ByteCount;
    impl<'de> de::Visitor<'de> for ByteCount {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a byte count")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            v.parse()
                .map(Some)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
        }
    }
    d.deserialize_any(ByteCount)
}

#[cfg(test)]
mod tests;
