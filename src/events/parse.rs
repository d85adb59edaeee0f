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

    if let Some(kind) = obj.get("type").and_then(Value::as_str)
        && kind.starts_with("reelay.")
    {
        return Err(EventError::NotANotification {
            kind: kind.to_string(),
        });
    }
    if let Some(records) = obj.get("Records") {
        return parse_s3_records(records);
    }
    if obj.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        let bucket = obj.get("Bucket").and_then(Value::as_str).unwrap_or("?");
        return Ok(vec![Notification::Ignored {
            reason: format!("s3:TestEvent for bucket `{bucket}`"),
        }]);
    }
    if let Some(sns_type) = obj.get("Type").and_then(Value::as_str)
        && (obj.contains_key("TopicArn") || obj.contains_key("Message"))
    {
        return parse_sns(sns_type, obj, depth);
    }
    if obj.contains_key("detail-type") && obj.contains_key("detail") {
        return parse_eventbridge(obj).map(|n| vec![n]);
    }
    if obj.contains_key("action") && obj.contains_key("object") {
        return parse_r2(obj).map(|n| vec![n]);
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

type Obj = serde_json::Map<String, Value>;

// ---------------------------------------------------------------- S3 records

const S3: &str = "S3";

fn parse_s3_records(records: &Value) -> Result<Vec<Notification>, EventError> {
    let records = records.as_array().ok_or_else(|| EventError::Malformed {
        shape: S3,
        field: "Records".into(),
        problem: format!("is a {}, expected an array", json_kind(records)),
    })?;
    records
        .iter()
        .enumerate()
        .map(|(i, r)| parse_s3_record(i, r))
        .collect()
}

fn parse_s3_record(i: usize, record: &Value) -> Result<Notification, EventError> {
    let at = |field: &str| format!("Records[{i}].{field}");
    let rec = record.as_object().ok_or_else(|| EventError::Malformed {
        shape: S3,
        field: format!("Records[{i}]"),
        problem: format!("is a {}, expected an object", json_kind(record)),
    })?;

    if let Some(version) = opt_str(rec, "eventVersion", S3, &at)? {
        check_event_version(version)?;
    }
    let event_name = opt_str(rec, "eventName", S3, &at)?.unwrap_or("");
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

    let s3 = req_obj(rec, "s3", S3, &at)?;
    let at_s3 = |field: &str| at(&format!("s3.{field}"));
    let bucket = req_obj(s3, "bucket", S3, &at_s3)?;
    let object = req_obj(s3, "object", S3, &at_s3)?;
    let bucket_name = req_str(bucket, "name", S3, &|f: &str| at_s3(&format!("bucket.{f}")))?;
    let at_obj = |f: &str| at_s3(&format!("object.{f}"));
    let raw_key = req_str(object, "key", S3, &at_obj)?;

    Ok(Notification::Created(ObjectCreated {
        bucket: bucket_name.to_string(),
        key: decode_s3_key(raw_key)?,
        size: opt_size(object, "size", S3, &at_obj)?,
        etag: opt_str(object, "eTag", S3, &at_obj)?.map(unquote_etag),
        version: opt_str(object, "versionId", S3, &at_obj)?.map(str::to_string),
        sequencer: opt_str(object, "sequencer", S3, &at_obj)?.map(str::to_string),
        time: opt_str(rec, "eventTime", S3, &at)?.map(str::to_string),
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
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(|| {
                    bad(format!(
                        "`%` at byte {i} is not followed by two hex digits (S3 escapes `%` as `%25`)"
                    ))
                })?;
                let hi = hex_val(hex[0]);
                let lo = hex_val(hex[1]);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => {
                        return Err(bad(format!(
                            "`%{}` at byte {i} is not a percent-escape (S3 escapes `%` as `%25`)",
                            String::from_utf8_lossy(hex)
                        )));
                    }
                }
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|e| {
        bad(format!(
            "the decoded bytes are not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        ))
    })
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

// ----------------------------------------------------------------------- SNS

const SNS: &str = "SNS";

fn parse_sns(sns_type: &str, obj: &Obj, depth: usize) -> Result<Vec<Notification>, EventError> {
    let at = |f: &str| f.to_string();
    if sns_type != "Notification" {
        // SubscriptionConfirmation / UnsubscribeConfirmation land in the
        // queue for cross-account subscriptions; they carry no upload.
        return Ok(vec![Notification::Ignored {
            reason: format!("SNS `{sns_type}` message"),
        }]);
    }
    let message = req_str(obj, "Message", SNS, &at)?;
    let inner: Value = serde_json::from_str(message).map_err(|e| EventError::Malformed {
        shape: SNS,
        field: "Message".into(),
        problem: format!("is not a JSON document ({e})"),
    })?;
    parse_value(&inner, depth + 1)
}

// --------------------------------------------------------------- EventBridge

const EVENTBRIDGE: &str = "EventBridge";

fn parse_eventbridge(obj: &Obj) -> Result<Notification, EventError> {
    let at = |f: &str| f.to_string();
    let source = opt_str(obj, "source", EVENTBRIDGE, &at)?.unwrap_or("");
    let detail_type = req_str(obj, "detail-type", EVENTBRIDGE, &at)?;
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
    let detail = req_obj(obj, "detail", EVENTBRIDGE, &at)?;
    let at_d = |f: &str| format!("detail.{f}");
    let bucket = req_obj(detail, "bucket", EVENTBRIDGE, &at_d)?;
    let object = req_obj(detail, "object", EVENTBRIDGE, &at_d)?;
    let at_o = |f: &str| format!("detail.object.{f}");
    Ok(Notification::Created(ObjectCreated {
        bucket: req_str(bucket, "name", EVENTBRIDGE, &|f: &str| {
            format!("detail.bucket.{f}")
        })?
        .to_string(),
        // EventBridge carries the key as it is, not urlencoded.
        key: req_str(object, "key", EVENTBRIDGE, &at_o)?.to_string(),
        size: opt_size(object, "size", EVENTBRIDGE, &at_o)?,
        etag: opt_str(object, "etag", EVENTBRIDGE, &at_o)?.map(unquote_etag),
        version: opt_str(object, "version-id", EVENTBRIDGE, &at_o)?.map(str::to_string),
        sequencer: opt_str(object, "sequencer", EVENTBRIDGE, &at_o)?.map(str::to_string),
        time: opt_str(obj, "time", EVENTBRIDGE, &at)?.map(str::to_string),
    }))
}

// ------------------------------------------------------------- Cloudflare R2

const R2: &str = "R2";

fn parse_r2(obj: &Obj) -> Result<Notification, EventError> {
    let at = |f: &str| f.to_string();
    let action = req_str(obj, "action", R2, &at)?;
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
    let bucket = req_str(obj, "bucket", R2, &at)?;
    let object = req_obj(obj, "object", R2, &at)?;
    let at_o = |f: &str| format!("object.{f}");
    Ok(Notification::Created(ObjectCreated {
        bucket: bucket.to_string(),
        // R2 sends keys as they are.
        key: req_str(object, "key", R2, &at_o)?.to_string(),
        size: opt_size(object, "size", R2, &at_o)?,
        etag: opt_str(object, "eTag", R2, &at_o)?.map(unquote_etag),
        version: None,
        sequencer: None,
        time: opt_str(obj, "eventTime", R2, &at)?.map(str::to_string),
    }))
}

// ------------------------------------------------------------------- helpers

fn unquote_etag(etag: &str) -> String {
    etag.trim_matches('"').to_string()
}

type FieldPath<'a> = &'a dyn Fn(&str) -> String;

fn req_obj<'v>(
    obj: &'v Obj,
    name: &str,
    shape: &'static str,
    at: FieldPath,
) -> Result<&'v Obj, EventError> {
    match obj.get(name) {
        Some(Value::Object(o)) => Ok(o),
        Some(other) => Err(EventError::Malformed {
            shape,
            field: at(name),
            problem: format!("is a {}, expected an object", json_kind(other)),
        }),
        None => Err(EventError::Malformed {
            shape,
            field: at(name),
            problem: "is missing".into(),
        }),
    }
}

fn req_str<'v>(
    obj: &'v Obj,
    name: &str,
    shape: &'static str,
    at: FieldPath,
) -> Result<&'v str, EventError> {
    match opt_str(obj, name, shape, at)? {
        Some(s) if !s.is_empty() => Ok(s),
        Some(_) => Err(EventError::Malformed {
            shape,
            field: at(name),
            problem: "is empty".into(),
        }),
        None => Err(EventError::Malformed {
            shape,
            field: at(name),
            problem: "is missing".into(),
        }),
    }
}

/// A string field that may be absent or null.
fn opt_str<'v>(
    obj: &'v Obj,
    name: &str,
    shape: &'static str,
    at: FieldPath,
) -> Result<Option<&'v str>, EventError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(EventError::Malformed {
            shape,
            field: at(name),
            problem: format!("is a {}, expected a string", json_kind(other)),
        }),
    }
}

/// A byte count: a JSON integer, or a string of digits.
fn opt_size(
    obj: &Obj,
    name: &str,
    shape: &'static str,
    at: FieldPath,
) -> Result<Option<u64>, EventError> {
    let bad = |v: &Value| EventError::Malformed {
        shape,
        field: at(name),
        problem: format!("is `{v}`, expected a byte count"),
    };
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_u64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) => s.parse::<u64>().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

#[cfg(test)]
mod tests;
