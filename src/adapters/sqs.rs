//! [`Queue`] over Amazon SQS with aws-sdk-sqs.
//!
//! - `receive` long-polls (up to SQS's 20 s) for up to 10 messages and reads
//!   `ApproximateReceiveCount`, which the redrive policy compares with its
//!   `maxReceiveCount` to move a message to the DLQ.
//! - `ack` deletes in batches of 10 and reports every entry SQS refused.
//! - `extend` changes the visibility timeout; a handle SQS no longer honours
//!   (expired, redelivered, deleted) is [`QueueError::StaleHandle`].

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
};

use crate::ports::queue::QueueResult;
use crate::ports::{Queue, QueueError, ReceiptHandle, Received};

/// SQS's most messages per receive and per batch.
pub const MAX_BATCH: usize = 10;
/// SQS's longest long poll.
pub const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's longest visibility timeout (12 hours).
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 60 * 60);

/// One SQS queue, named by its URL.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    url: String,
    name: String,
}

impl SqsQueue {
    /// Credentials, region and `AWS_ENDPOINT_URL` from aws-config's default
    /// chain.
    pub async fn from_env(queue_url: &str) -> Self {
        let sdk = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        Self::from_sdk_config(&sdk, queue_url)
    }

    pub fn from_sdk_config(sdk: &aws_config::SdkConfig, queue_url: &str) -> Self {
        Self::new(Client::new(sdk), queue_url)
    }

    pub fn new(client: Client, queue_url: &str) -> Self {
        let name = queue_url
            .trim_end_matches('/')
            .rsplit('/')
            .next()
            .unwrap_or(queue_url)
            .to_string();
        SqsQueue {
            client,
            url: queue_url.to_string(),
            name,
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Sends `body` with string message attributes, e.g.
    /// `[("reelay-kind", "extract")]`, which consumers and SQS subscriptions
    /// can filter on without parsing the body.
    pub async fn send_with_attributes(
        &self,
        body: &str,
        attrs: &[(&str, &str)],
    ) -> QueueResult<()> {
        let mut req = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(body);
        for (name, value) in attrs {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(*value)
                .build()
                .map_err(|e| self.error(format!("message attribute `{name}`: {e}")))?;
            req = req.message_attributes(*name, value);
        }
        req.send()
            .await
            .map_err(|e| self.sdk_error("SendMessage", e))?;
        Ok(())
    }

    fn error(&self, message: String) -> QueueError {
        QueueError::Backend {
            queue: self.name.clone(),
            message,
        }
    }

    fn sdk_error<E, R>(&self, op: &str, err: SdkError<E, R>) -> QueueError
    where
        E: std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.error(format!("{op}: {}", DisplayErrorContext(&err)))
    }
}

/// Whole seconds for SQS, rounded up so a short timeout is never zero by
/// accident, and capped at SQS's maximum.
fn visibility_secs(d: Duration) -> i32 {
    let d = d.min(MAX_VISIBILITY);
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    secs as i32
}

/// SQS's longest delay on one message.
pub const MAX_DELAY: Duration = Duration::from_secs(900);

/// Whole seconds of delay, rounded up and capped at SQS's 15 minutes.
fn delay_secs(d: Duration) -> i32 {
    visibility_secs(d.min(MAX_DELAY))
}

fn wait_secs(d: Duration) -> i32 {
    d.min(MAX_WAIT).as_secs() as i32
}

/// Error codes SQS uses for a receipt handle it will not honour any more.
fn is_stale_handle(code: Option<&str>, message: Option<&str>) -> bool {
    let code = code.unwrap_or("");
    let message = message.unwrap_or("").to_ascii_lowercase();
    code.contains("ReceiptHandleIsInvalid")
        || code.contains("MessageNotInflight")
        || (code.contains("InvalidParameterValue")
            && (message.contains("receipt handle") || message.contains("receipthandle")))
}

#[async_trait]
impl Queue for SqsQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Received>> {
        let max = max.clamp(1, MAX_BATCH) as i32;
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility_secs(visibility))
            .wait_time_seconds(wait_secs(wait))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.sdk_error("ReceiveMessage", e))?;
        let mut received = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let (Some(id), Some(handle)) = (m.message_id, m.receipt_handle) else {
                return Err(self.error(
                    "ReceiveMessage returned a message without id or receipt handle".into(),
                ));
            };
            let receive_count = m
                .attributes
                .as_ref()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|v| v.parse().ok())
                .unwrap_or(1);
            received.push(Received {
                message_id: id,
                handle: ReceiptHandle(handle),
                body: m.body.unwrap_or_default(),
                receive_count,
            });
        }
        Ok(received)
    }

    async fn ack(&self, handles: &[ReceiptHandle]) -> QueueResult<()> {
        let mut failures = Vec::new();
        for (chunk_no, chunk) in handles.chunks(MAX_BATCH).enumerate() {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, h)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&h.0)
                        .build()
                        .map_err(|e| self.error(format!("DeleteMessageBatch entry: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            let out = self
                .client
                .delete_message_batch()
                .queue_url(&self.url)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| self.sdk_error("DeleteMessageBatch", e))?;
            for f in out.failed() {
                let index = chunk_no * MAX_BATCH + f.id().parse::<usize>().unwrap_or(0);
                failures.push(format!(
                    "message {index}: {} {}",
                    f.code(),
                    f.message().unwrap_or("")
                ));
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!(
                "DeleteMessageBatch: {} of {} not deleted (they will be redelivered): {}",
                failures.len(),
                handles.len(),
                failures.join("; ")
            )))
        }
    }

    async fn extend(&self, handle: &ReceiptHandle, visibility: Duration) -> QueueResult<()> {
        match self
            .client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(&handle.0)
            .visibility_timeout(visibility_secs(visibility))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let stale = e
                    .as_service_error()
                    .is_some_and(|se| is_stale_handle(se.code(), se.message()));
                if stale {
                    Err(QueueError::StaleHandle)
                } else {
                    Err(self.sdk_error("ChangeMessageVisibility", e))
                }
            }
        }
    }

    async fn send(&self, body: &str) -> QueueResult<()> {
        self.send_with_attributes(body, &[]).await
    }

    /// SQS counts every receive, so a turn-away that only hid the message
    /// again would spend a try: send a fresh copy (receive count 0) with the
    /// delay, then delete the original. A crash between the two leaves two
    /// copies, which the task's claim and its output make harmless.
    async fn requeue(&self, message: &Received, delay: Duration) -> QueueResult<()> {
        self.send_later(&message.body, delay).await?;
        self.ack(std::slice::from_ref(&message.handle)).await
    }

    async fn send_later(&self, body: &str, delay: Duration) -> QueueResult<()> {
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay_secs(delay))
            .send()
            .await
            .map_err(|e| self.sdk_error("SendMessage", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visibility_rounds_up_and_caps() {
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        assert_eq!(visibility_secs(Duration::from_millis(1)), 1);
        assert_eq!(visibility_secs(Duration::from_millis(30_000)), 30);
        assert_eq!(visibility_secs(Duration::from_millis(30_001)), 31);
        assert_eq!(visibility_secs(Duration::from_secs(1 << 30)), 43_200);
        assert_eq!(wait_secs(Duration::from_secs(60)), 20);
        assert_eq!(delay_secs(Duration::from_millis(1500)), 2);
        assert_eq!(delay_secs(Duration::from_secs(3600)), 900);
        assert_eq!(wait_secs(Duration::from_millis(1500)), 1);
    }

    #[test]
    fn stale_handle_codes() {
        assert!(is_stale_handle(Some("ReceiptHandleIsInvalid"), None));
        assert!(is_stale_handle(
            Some("AWS.SimpleQueueService.MessageNotInflight"),
            None
        ));
        assert!(is_stale_handle(
            Some("InvalidParameterValue"),
            Some(
                "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired."
            )
        ));
        assert!(!is_stale_handle(
            Some("InvalidParameterValue"),
            Some("VisibilityTimeout")
        ));
        assert!(!is_stale_handle(Some("ThrottlingException"), None));
        assert!(!is_stale_handle(None, None));
    }

    #[test]
    fn queue_name_from_url() {
        let client = Client::from_conf(
            aws_sdk_sqs::Config::builder()
                .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
                .region(aws_sdk_sqs::config::Region::new("us-east-1"))
                .build(),
        );
        let q = SqsQueue::new(
            client,
            "https://sqs.us-east-1.amazonaws.com/123456789012/reelay-events",
        );
        assert_eq!(q.name(), "reelay-events");
    }
}
