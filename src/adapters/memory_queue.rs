//! An in-process queue with the SQS semantics reelay relies on: visibility
//! timeouts, redelivery, receive counts, and a dead-letter queue after a
//! maximum receive count.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, Notify};
use tokio::time::Instant;

use crate::ports::queue::{Queue, QueueError, QueueResult, ReceiptHandle, Received};

#[derive(Debug)]
struct Message {
    id: String,
    body: String,
    receive_count: u32,
    visible_at: Instant,
    /// Set while received; a new receive invalidates the old handle, as in SQS.
    handle: Option<String>,
}

#[derive(Debug)]
pub struct MemoryQueue {
    name: String,
    messages: Mutex<Vec<Message>>,
    arrived: Notify,
    next_id: AtomicU64,
    max_receive_count: u32,
    dead_letter: Option<Arc<MemoryQueue>>,
}

impl MemoryQueue {
    /// A queue whose messages move to `dead_letter` once received
    /// `max_receive_count` times without being acknowledged.
    pub fn new(name: &str, max_receive_count: u32, dead_letter: Option<Arc<MemoryQueue>>) -> Self {
        MemoryQueue {
            name: name.to_string(),
            messages: Mutex::new(Vec::new()),
            arrived: Notify::new(),
            next_id: AtomicU64::new(1),
            max_receive_count: max_receive_count.max(1),
            dead_letter,
        }
    }

    /// A queue with its own DLQ named `NAME-dlq`.
    pub fn with_dlq(name: &str, max_receive_count: u32) -> (Arc<Self>, Arc<Self>) {
        let dlq = Arc::new(MemoryQueue::new(&format!("{name}-dlq"), u32::MAX, None));
        (
            Arc::new(MemoryQueue::new(name, max_receive_count, Some(dlq.clone()))),
            dlq,
        )
    }

    /// Messages stored, visible or in flight.
    pub async fn len(&self) -> usize {
        self.messages.lock().await.len()
    }

    pub async fn is_empty(&self) -> bool {
        self.len().await == 0
    }

    /// Bodies currently held (tests and `reelay dev`'s DLQ report).
    pub async fn bodies(&self) -> Vec<String> {
        self.messages
            .lock()
            .await
            .iter()
            .map(|m| m.body.clone())
            .collect()
    }

    fn fresh_id(&self) -> String {
        format!(
            "{}-{}",
            self.name,
            self.next_id.fetch_add(1, Ordering::Relaxed)
        )
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    fn name(&self) -> &str {
        &self.name
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> QueueResult<Vec<Received>> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.arrived.notified();
            let mut next_visible: Option<Instant> = None;
            {
                let mut messages = self.messages.lock().await;
                let now = Instant::now();
                let mut out = Vec::new();
                let mut dead = Vec::new();
                for (index, msg) in messages.iter_mut().enumerate() {
                    if out.len() >= max {
                        break;
                    }
                    if msg.visible_at > now {
                        next_visible =
                            Some(next_visible.map_or(msg.visible_at, |t| t.min(msg.visible_at)));
                        continue;
                    }
                    if msg.receive_count >= self.max_receive_count && self.dead_letter.is_some() {
                        dead.push(index);
                        continue;
                    }
                    msg.receive_count += 1;
                    msg.visible_at = now + visibility;
                    let handle = format!("{}#{}", msg.id, msg.receive_count);
                    msg.handle = Some(handle.clone());
                    out.push(Received {
                        message_id: msg.id.clone(),
                        handle: ReceiptHandle(handle),
                        body: msg.body.clone(),
                        receive_count: msg.receive_count,
                    });
                }
                for index in dead.into_iter().rev() {
                    let msg = messages.remove(index);
                    if let Some(dlq) = &self.dead_letter {
                        tracing::warn!(queue = %self.name, message_id = %msg.id, receives = msg.receive_count, "message moved to the dead-letter queue");
                        dlq.send(&msg.body).await?;
                    }
                }
                if !out.is_empty() {
                    return Ok(out);
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn ack(&self, handles: &[ReceiptHandle]) -> QueueResult<()> {
        let mut messages = self.messages.lock().await;
        let mut stale = false;
        for handle in handles {
            match messages
                .iter()
                .position(|m| m.handle.as_deref() == Some(handle.0.as_str()))
            {
                Some(index) => {
                    messages.remove(index);
                }
                None => stale = true,
            }
        }
        if stale {
            Err(QueueError::StaleHandle)
        } else {
            Ok(())
        }
    }

    async fn extend(&self, handle: &ReceiptHandle, visibility: Duration) -> QueueResult<()> {
        let mut messages = self.messages.lock().await;
        let msg = messages
            .iter_mut()
            .find(|m| m.handle.as_deref() == Some(handle.0.as_str()))
            .ok_or(QueueError::StaleHandle)?;
        msg.visible_at = Instant::now() + visibility;
        drop(messages);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn requeue(&self, message: &Received, delay: Duration) -> QueueResult<()> {
        let mut messages = self.messages.lock().await;
        let msg = messages
            .iter_mut()
            .find(|m| m.handle.as_deref() == Some(message.handle.0.as_str()))
            .ok_or(QueueError::StaleHandle)?;
        // As if it had not been received: SQS gets the same effect by a
        // fresh copy (see `SqsQueue::requeue`).
        msg.receive_count = msg.receive_count.saturating_sub(1);
        msg.visible_at = Instant::now() + delay;
        msg.handle = None;
        drop(messages);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn send(&self, body: &str) -> QueueResult<()> {
        self.send_later(body, Duration::ZERO).await
    }

    async fn send_later(&self, body: &str, delay: Duration) -> QueueResult<()> {
        let id = self.fresh_id();
        self.messages.lock().await.push(Message {
            id,
            body: body.to_string(),
            receive_count: 0,
            visible_at: Instant::now() + delay,
            handle: None,
        });
        self.arrived.notify_waiters();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NO_WAIT: Duration = Duration::ZERO;

    #[tokio::test(start_paused = true)]
    async fn hidden_until_visibility_expires_then_redelivered() {
        let (q, _dlq) = MemoryQueue::with_dlq("q", 5);
        q.send("a").await.unwrap();
        let first = q
            .receive(10, Duration::from_secs(30), NO_WAIT)
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            q.receive(10, Duration::from_secs(30), NO_WAIT)
                .await
                .unwrap()
                .is_empty()
        );
        tokio::time::advance(Duration::from_secs(31)).await;
        let again = q
            .receive(10, Duration::from_secs(30), NO_WAIT)
            .await
            .unwrap();
        assert_eq!(again[0].receive_count, 2);
        // The first handle went stale with the redelivery.
        assert!(matches!(
            q.ack(&[first[0].handle.clone()]).await,
            Err(QueueError::StaleHandle)
        ));
        q.ack(&[again[0].handle.clone()]).await.unwrap();
        assert!(q.is_empty().await);
    }

    #[tokio::test(start_paused = true)]
    async fn extend_keeps_it_hidden_and_zero_hands_it_back() {
        let (q, _dlq) = MemoryQueue::with_dlq("q", 5);
        q.send("a").await.unwrap();
        let got = q
            .receive(1, Duration::from_secs(10), NO_WAIT)
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        q.extend(&got[0].handle, Duration::from_secs(10))
            .await
            .unwrap();
        tokio::time::advance(Duration::from_secs(8)).await;
        assert!(
            q.receive(1, Duration::from_secs(10), NO_WAIT)
                .await
                .unwrap()
                .is_empty()
        );
        q.extend(&got[0].handle, Duration::ZERO).await.unwrap();
        assert_eq!(
            q.receive(1, Duration::from_secs(10), NO_WAIT)
                .await
                .unwrap()
                .len(),
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn dead_letter_after_max_receives() {
        let (q, dlq) = MemoryQueue::with_dlq("q", 3);
        q.send("poison").await.unwrap();
        for _ in 0..3 {
            assert_eq!(
                q.receive(1, Duration::from_secs(1), NO_WAIT)
                    .await
                    .unwrap()
                    .len(),
                1
            );
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert!(
            q.receive(1, Duration::from_secs(1), NO_WAIT)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(dlq.bodies().await, ["poison"]);
        assert!(q.is_empty().await);
    }

    /// A busy turn-away comes back as often as it takes and never reaches
    /// the dead-letter queue.
    #[tokio::test(start_paused = true)]
    async fn a_requeue_spends_no_try() {
        let (q, dlq) = MemoryQueue::with_dlq("q", 2);
        q.send("busy").await.unwrap();
        for _ in 0..10 {
            let got = q
                .receive(1, Duration::from_secs(30), NO_WAIT)
                .await
                .unwrap();
            assert_eq!(got.len(), 1);
            assert_eq!(got[0].receive_count, 1);
            q.requeue(&got[0], Duration::from_secs(1)).await.unwrap();
            assert!(
                q.receive(1, Duration::from_secs(30), NO_WAIT)
                    .await
                    .unwrap()
                    .is_empty(),
                "hidden for the delay"
            );
            tokio::time::advance(Duration::from_secs(2)).await;
        }
        assert!(dlq.is_empty().await);
    }

    #[tokio::test(start_paused = true)]
    async fn long_poll_wakes_on_send() {
        let (q, _dlq) = MemoryQueue::with_dlq("q", 3);
        let q2 = q.clone();
        let waiter = tokio::spawn(async move {
            q2.receive(1, Duration::from_secs(5), Duration::from_secs(20))
                .await
        });
        tokio::time::advance(Duration::from_secs(1)).await;
        q.send("late").await.unwrap();
        let got = waiter.await.unwrap().unwrap();
        assert_eq!(got[0].body, "late");
    }
}
