//! The router as a Lambda function on the events queue: an `SqsEvent` in, an
//! `SqsBatchResponse` out with partial batch failures, so only the messages
//! that failed come back (the event source mapping must enable
//! `ReportBatchItemFailures`). Each message goes through the same
//! [`Router::handle_body`] as `reelay route`; an error or a panic in one fails
//! only that one.
//!
//! Lambda keeps the messages invisible for the function's run, so there is no
//! heartbeat here: set the queue's visibility timeout above the function's
//! timeout (AWS asks for six times).

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::{FutureExt, StreamExt};
use tokio_util::sync::CancellationToken;

use crate::runtime::router::Router;

/// One message of the batch, as the handler needs it.
#[derive(Debug, Clone)]
pub struct BatchMessage {
    pub message_id: String,
    pub body: String,
    pub receive_count: u32,
}

/// Handles every message of `event` with `router`, `concurrency` at a time,
/// and names the failed ones.
pub async fn handle_sqs_event(
    router: Arc<Router>,
    event: SqsEvent,
    concurrency: usize,
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
        })
        .collect();
    let failed = handle_batch(messages, concurrency, move |m| {
        let router = router.clone();
        async move {
            match router
                .handle_body(&m.body, m.receive_count, CancellationToken::new())
                .await
            {
                Ok(None) => Ok(()),
                // Another worker holds the task's claim, and this message may
                // be the task's only one (its worker died): fail it, so SQS
                // delivers it again after the visibility timeout.
                Ok(Some(_)) => Err("another worker holds this task's claim; retried later".into()),
                Err(e) => Err(e),
            }
        }
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
                tracing::warn!(message = %id, error = %e, "message failed; it returns to the queue");
                Some((i, id))
            }
        })
        .collect();
    failed.sort();
    failed.into_iter().map(|(_, id)| id).collect()
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
}
