//! The router as a Lambda function on the events queue: an `SqsEvent` in, an
//! `SqsBatchResponse` out with partial batch failures, so only the messages
//! that failed come back (the event source mapping must enable
//! `ReportBatchItemFailures`). Each message goes through the same
//! [`Router::handle_body`] as `reelay route`; an error or a panic in one fails
//! only that one.
//!
//! Lambda keeps the messages invisible for the function's run, so there is no
//! heartbeat here: set the queue's visibility timeout above the function's
//! timeout (AWS asks for six times). A failed message would then come back
//! only after that whole timeout (an hour on the stack's queue), so
//! [`handle_sqs_event_with_backoff`] shortens its visibility to the router's
//! backoff first: tries come seconds apart, not hours.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::ports::queue::{Queue, ReceiptHandle};
use crate::runtime::router::Router;

/// One message of the batch, as the handler needs it.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
    /// Lambda's receipt handle, to shorten a failed message's visibility.
    pub receipt_handle: Option<String>,
}

/// Handles every message of `event` with `router`, `concurrency` at a time,
/// and names the failed ones; they come back after the queue's visibility.
pub async fn handle_sqs_event(
    router: Arc<Router>,
    event: SqsEvent,
    concurrency: usize,
) -> SqsBatchResponse {
    handle_event(router, event, concurrency, None).await
}

/// As [`handle_sqs_event`], and each failed message's visibility on `queue`
/// (the one the event came from) is set to the router's backoff for its
/// receive count, so it is retried then instead of after the full timeout.
/// A message turned away because another worker holds its task's claim is
/// not failed: a copy is sent to `queue`, delayed by the claim's remaining
/// lease, and the original reported done, so a turn-away never brings the
/// task nearer the dead-letter queue. Without a queue
/// ([`handle_sqs_event`]) a turn-away can only fail its message.
pub async fn handle_sqs_event_with_backoff(
    router: Arc<Router>,
    event: SqsEvent,
    concurrency: usize,
    queue: Arc<dyn Queue>,
) -> SqsBatchResponse {
    handle_event(router, event, concurrency, Some(queue)).await
}

async fn handle_event(
    router: Arc<Router>,
    event: SqsEvent,
    concurrency: usize,
    queue: Option<Arc<dyn Queue>>,
) -> SqsBatchResponse {
    let messages = event
        .records
        .into_iter()
        .enumerate()
        .map(|(i, m)| BatchMessage {
            // Without an id a failure cannot be reported alone; SQS always sets one.
            message_id: m.message_id.unwrap_or_else(|| format!("(record {i})")),
            body: m.body.unwrap_or_default(),
            receive_count: m
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|v| v.parse().ok())
                .unwrap_or(1),
            receipt_handle: m.receipt_handle,
        })
        .collect();
    let failed = handle_batch(messages, concurrency, move |m| {
        let router = router.clone();
        let queue = queue.clone();
        async move { handle_one(&router, queue.as_deref(), m).await }
    })
    .await;
    let mut response = SqsBatchResponse::default();
    for id in failed {
        let mut failure = BatchItemFailure::default();
        failure.item_identifier = id;
        response.batch_item_failures.push(failure);
    }
    response
}

/// One message: `Ok` when Lambda may delete it.
async fn handle_one(
    router: &Router,
    queue: Option<&dyn Queue>,
    m: BatchMessage,
) -> Result<(), String> {
    let (result, retry_in) = match router
        .handle_body(&m.body, m.receive_count, CancellationToken::new())
        .await
    {
        Ok(None) => (Ok(()), None),
        // Another worker holds the task's claim, and this message may be the
        // task's only one (its worker died), so it must come back when the
        // claim's lease is over. A turn-away is not a failure: a delayed copy
        // starts with no receive spent, and the original is reported done.
        Ok(Some(retry_after)) => match queue {
            Some(queue) => match turn_away(queue, &m, retry_after).await {
                Ok(()) => (Ok(()), None),
                Err(e) => (Err(e), Some(retry_after)),
            },
            None => (
                Err("another worker holds this task's claim; retried later".into()),
                Some(retry_after),
            ),
        },
        Err(e) => (Err(e), Some(router.backoff(m.receive_count))),
    };
    if let (Some(queue), Some(delay), Some(handle)) = (queue, retry_in, m.receipt_handle) {
        retry_after(queue, &m.message_id, handle, delay).await;
    }
    result
}

/// Sends a copy of a turned-away message, visible after `delay`. Should
/// the send fail, the original fails instead (spending one receive), so the
/// task is never left without a message.
async fn turn_away(
    queue: &dyn Queue,
    m: &BatchMessage,
    delay: std::time::Duration,
) -> Result<(), String> {
    match queue.send_later(&m.body, delay).await {
        Ok(()) => {
            tracing::info!(
                message_id = %m.message_id,
                retry_in_seconds = delay.as_secs(),
                "another worker holds this task's claim; a copy comes back after its lease"
            );
            Ok(())
        }
        Err(e) => Err(format!(
            "another worker holds this task's claim, and its delayed copy could not be sent ({e}); retried later"
        )),
    }
}

/// Makes a failed message visible again after `delay`. If that fails the
/// message still comes back after the queue's visibility timeout: slower,
/// never lost.
async fn retry_after(
    queue: &dyn Queue,
    message_id: &str,
    handle: String,
    delay: std::time::Duration,
) {
    if let Err(e) = queue.extend(&ReceiptHandle(handle), delay).await {
        tracing::warn!(message_id, error = %e, "could not shorten a failed message's visibility; it returns after the queue's timeout");
    } else {
        tracing::info!(
            message_id,
            retry_in_seconds = delay.as_secs(),
            "failed message retried after its backoff"
        );
    }
}

/// Runs `handle` on each message, `concurrency` at a time, and returns the
/// ids of those that returned an error or panicked, in batch order.
pub async fn handle_batch<F, Fut>(
    messages: Vec<BatchMessage>,
    concurrency: usize,
    handle: F,
) -> Vec<String>
where
    F: Fn(BatchMessage) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let results: Vec<(usize, String, Result<(), String>)> =
        futures::stream::iter(messages.into_iter().enumerate())
            .map(|(i, m)| {
                let id = m.message_id.clone();
                let run = AssertUnwindSafe(handle(m)).catch_unwind();
                async move {
                    let result = match run.await {
                        Ok(r) => r,
                        Err(panic) => Err(format!("panicked: {}", panic_message(&panic))),
                    };
                    (i, id, result)
                }
            })
            .buffer_unordered(concurrency.max(1))
            .collect()
            .await;
    let mut failed: Vec<(usize, String)> = results
        .into_iter()
        .filter_map(|(i, id, r)| match r {
            Ok(()) => None,
            Err(e) => {
                tracing::warn!(message_id = %id, error = %e, "message failed; it returns to the queue");
                Some((i, id))
            }
        })
        .collect();
    failed.sort();
    failed.into_iter().map(|(_, id)| id).collect()
}

/// Tells the Lambda Runtime API (`AWS_LAMBDA_RUNTIME_API`, plain HTTP on
/// the sandbox's loopback) that initialisation failed, so the invocation
/// reports `errorType` and the message instead of an opaque "Runtime exited".
/// Returns the API's HTTP status (202 when accepted).
pub async fn report_init_error(
    runtime_api: &str,
    error_type: &str,
    message: &str,
) -> std::io::Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let body = serde_json::json!({ "errorMessage": message, "errorType": error_type }).to_string();
    let request = format!(
        "POST /2018-06-01/runtime/init/error HTTP/1.1\r\nHost: {runtime_api}\r\n\
         Lambda-Runtime-Function-Error-Type: {error_type}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut stream = tokio::net::TcpStream::connect(runtime_api).await?;
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::new();
    let mut buf = [0u8; 256];
    while !head.windows(2).any(|w| w == b"\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_line = String::from_utf8_lossy(&head);
    status_line
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "no HTTP status from the Runtime API: {status_line:?}"
            ))
        })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(id: &str, body: &str) -> BatchMessage {
        BatchMessage {
            message_id: id.into(),
            body: body.into(),
            receive_count: 1,
            receipt_handle: None,
        }
    }

    #[tokio::test]
    async fn an_error_or_a_panic_fails_only_its_own_message() {
        let batch = vec![
            msg("a", "ok"),
            msg("b", "panic"),
            msg("c", "ok"),
            msg("d", "err"),
            msg("e", "ok"),
        ];
        let failed = handle_batch(batch, 3, |m| async move {
            match m.body.as_str() {
                "panic" => panic!("step blew up"),
                "err" => Err("bad input".to_string()),
                _ => Ok(()),
            }
        })
        .await;
        assert_eq!(failed, vec!["b".to_string(), "d".to_string()]);
    }

    #[tokio::test]
    async fn an_init_error_is_posted_to_the_runtime_api() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let api = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            // Headers, then the body its Content-Length announces.
            loop {
                let n = conn.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        break;
                    }
                }
            }
            conn.write_all(
                b"HTTP/1.1 202 Accepted\r\nContent-Length: 16\r\n\r\n{\"status\":\"OK\"}",
            )
            .await
            .unwrap();
            String::from_utf8(request).unwrap()
        });
        let status = report_init_error(&api, "Reelay.InitError", "REELAY_BUCKET is not set")
            .await
            .unwrap();
        assert_eq!(status, 202);
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /2018-06-01/runtime/init/error HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(request.contains("Lambda-Runtime-Function-Error-Type: Reelay.InitError\r\n"));
        let body: serde_json::Value =
            serde_json::from_str(request.split_once("\r\n\r\n").unwrap().1).unwrap();
        assert_eq!(body["errorType"], "Reelay.InitError");
        assert_eq!(body["errorMessage"], "REELAY_BUCKET is not set");
    }

    /// Collects what a JSON subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_failed_message_logs_one_json_line_with_one_message_key() {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_writer(move || writer.clone())
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let failed = handle_batch(vec![msg("m-1", "err")], 1, |_| async {
            Err("bad input".to_string())
        })
        .await;
        assert_eq!(failed, ["m-1"]);
        let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let line = text
            .lines()
            .find(|l| l.contains("message failed"))
            .expect(&text);
        assert_eq!(line.matches("\"message\":").count(), 1, "{line}");
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(v["fields"]["message_id"], "m-1");
    }

    #[test]
    fn no_tracing_call_names_a_field_message() {
        // A `message = ...` field beside the event's text makes two "message"
        // keys in one JSON line; CloudWatch Logs Insights keeps one of them.
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offenders = Vec::new();
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, line) in text.lines().enumerate() {
                        let t = line.trim_start();
                        let is_macro = [
                            "tracing::",
                            "info!(",
                            "warn!(",
                            "error!(",
                            "debug!(",
                            "trace!(",
                        ]
                        .iter()
                        .any(|m| t.contains(m));
                        if is_macro && (t.contains("(message = ") || t.contains(", message = ")) {
                            offenders.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
        assert!(offenders.is_empty(), "{offenders:?}");
    }
}
