//! A message queue with SQS semantics, modelled on Quickwit's queue sources:
//! receive with a visibility timeout, extend it while working, ack only after
//! the result is committed.

use std::time::Duration;

use async_trait::async_trait;

/// Opaque handle that acknowledges or extends one received message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

/// One message as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub message_id: String,
    pub handle: ReceiptHandle,
    pub body: String,
    /// 1 on first delivery; the DLQ takes it past the queue's maximum.
    pub receive_count: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("receipt handle is no longer valid (the message was redelivered or deleted)")]
    StaleHandle,
    #[error("queue `{queue}`: {message}")]
    Backend { queue: String, message: String },
    #[error("the queue is closed")]
    Closed,
}

pub type QueueResult<T> = Result<T, QueueError>;

#[async_trait]
pub trait Queue: Send + Sync {
    /// Name for logs.
    fn name(&self) -> &str;

    /// Up to `max` messages, hidden from other receivers for `visibility`.
    /// Waits up to `wait` for the first one (SQS long poll).
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Received>>;

    /// Deletes messages whose work is committed.
    async fn ack(&self, handles: &[ReceiptHandle]) -> QueueResult<()>;

    /// Keeps a message hidden for `visibility` from now; `ZERO` hands it back.
    async fn extend(&self, handle: &ReceiptHandle, visibility: Duration) -> QueueResult<()>;

    /// Enqueues one message body.
    async fn send(&self, body: &str) -> QueueResult<()>;

    /// Enqueues one message body, visible after `delay` (SQS caps it at 15
    /// minutes): a fresh message, so it starts with no receive spent. The
    /// default sends at once, for queues without delays.
    async fn send_later(&self, body: &str, _delay: Duration) -> QueueResult<()> {
        self.send(body).await
    }

    /// Hands `message` back for later without spending one of its tries: a
    /// turn-away (another worker holds the task's claim) is not a failure,
    /// so it must never bring the message nearer the dead-letter queue.
    /// The default hides it again, which on a queue that counts every
    /// receive (SQS) does spend a try; queues override it.
    async fn requeue(&self, message: &Received, delay: Duration) -> QueueResult<()> {
        self.extend(&message.handle, delay).await
    }
}
