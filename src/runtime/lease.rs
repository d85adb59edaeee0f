//! Keeps one in-flight message invisible while its task runs (invariant 3:
//! a long task keeps ownership of its message).
//!
//! Every `visibility / 3` the heartbeat extends the message's visibility to
//! `visibility` from now, so two extensions can be missed before another
//! worker could receive it. When ownership is lost it cancels a
//! [`CancellationToken`] that the task watches:
//!
//! - at once when the queue says the receipt handle is stale (the message was
//!   redelivered, or deleted) or the queue is closed;
//! - after retrying other failures (throttling, the network) while at least
//!   one interval remains before the deadline, so the task stops before the
//!   message can reappear for another worker.
//!
//! Works over any [`Queue`]: SQS and the in-process queue alike.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::{Queue, QueueError, ReceiptHandle};

/// Longest pause between retries of a failed extension.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Starts a heartbeat for a message received just now with `visibility`.
/// The returned guard's [`HeartbeatGuard::lost`] token is cancelled if
/// ownership is lost; dropping the guard stops the heartbeat.
pub fn start(queue: Arc<dyn Queue>, handle: ReceiptHandle, visibility: Duration) -> HeartbeatGuard {
    start_with_token(queue, handle, visibility, CancellationToken::new())
}

/// Like [`start`], cancelling `lost` (say, a child of the task's own token)
/// when ownership is lost. Cancelling `lost` from outside also ends the
/// heartbeat: nothing is left to protect.
pub fn start_with_token(
    queue: Arc<dyn Queue>,
    handle: ReceiptHandle,
    visibility: Duration,
    lost: CancellationToken,
) -> HeartbeatGuard {
    let stop = CancellationToken::new();
    let failure = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run(
        queue,
        handle,
        visibility,
        lost.clone(),
        stop.clone(),
        failure.clone(),
    ));
    HeartbeatGuard {
        lost,
        stop,
        failure,
        task: Some(task),
    }
}

/// Stops the heartbeat when dropped.
#[derive(Debug)]
pub struct HeartbeatGuard {
    lost: CancellationToken,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
    task: Option<JoinHandle<()>>,
}

impl HeartbeatGuard {
    /// Cancelled when the message's ownership is lost: the task must stop,
    /// publish nothing and not acknowledge the message.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Why ownership was lost, once it was.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Stops extending and waits until no extension is in flight, so an
    /// acknowledgement that follows cannot race one.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for HeartbeatGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn run(
    queue: Arc<dyn Queue>,
    handle: ReceiptHandle,
    visibility: Duration,
    lost: CancellationToken,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
) {
    let interval = (visibility / 3).max(Duration::from_millis(1));
    let retry_delay = (interval / 4).clamp(Duration::from_millis(1), MAX_RETRY_DELAY);
    let mut deadline = Instant::now() + visibility;
    let mut next = Instant::now() + interval;
    let give_up = |why: String| {
        tracing::warn!(queue = queue.name(), reason = %why, "message ownership lost; stopping its task");
        if let Ok(mut f) = failure.lock() {
            *f = Some(why);
        }
        lost.cancel();
    };
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = lost.cancelled() => return,
            _ = tokio::time::sleep_until(next) => {}
        }
        let extend = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = queue.extend(&handle, visibility) => r,
        };
        match extend {
            Ok(()) => {
                let now = Instant::now();
                deadline = now + visibility;
                next = now + interval;
            }
            Err(e @ (QueueError::StaleHandle | QueueError::Closed)) => {
                give_up(format!("extending visibility failed: {e}"));
                return;
            }
            Err(e) => {
                let now = Instant::now();
                if now + retry_delay + interval <= deadline {
                    tracing::debug!(queue = queue.name(), error = %e, "extending visibility failed; retrying");
                    next = now + retry_delay;
                } else {
                    give_up(format!(
                        "extending visibility kept failing and the deadline is near: {e}"
                    ));
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Received;
    use crate::ports::queue::QueueResult;
    use async_trait::async_trait;

    /// Records extensions; fails them as scripted.
    #[derive(Default)]
    struct FakeQueue {
        calls: Mutex<Vec<(Duration, Duration)>>,
        script: Mutex<Vec<Outcome>>,
        start: Mutex<Option<Instant>>,
    }

    #[derive(Clone, Copy)]
    enum Outcome {
        Ok,
        Stale,
        Transient,
    }

    impl FakeQueue {
        fn new(script: Vec<Outcome>) -> Arc<Self> {
            Arc::new(FakeQueue {
                script: Mutex::new(script.into_iter().rev().collect()),
                start: Mutex::new(Some(Instant::now())),
                ..Default::default()
            })
        }
        /// (time since start, visibility asked) per extension.
        fn calls(&self) -> Vec<(Duration, Duration)> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl Queue for FakeQueue {
        fn name(&self) -> &str {
            "fake"
        }
        async fn receive(&self, _: usize, _: Duration, _: Duration) -> QueueResult<Vec<Received>> {
            Ok(vec![])
        }
        async fn ack(&self, _: &[ReceiptHandle]) -> QueueResult<()> {
            Ok(())
        }
        async fn extend(&self, _: &ReceiptHandle, visibility: Duration) -> QueueResult<()> {
            let at = self.start.lock().unwrap().unwrap().elapsed();
            self.calls.lock().unwrap().push((at, visibility));
            match self.script.lock().unwrap().pop().unwrap_or(Outcome::Ok) {
                Outcome::Ok => Ok(()),
                Outcome::Stale => Err(QueueError::StaleHandle),
                Outcome::Transient => Err(QueueError::Backend {
                    queue: "fake".into(),
                    message: "throttled".into(),
                }),
            }
        }
        async fn send(&self, _: &str) -> QueueResult<()> {
            Ok(())
        }
    }

    fn handle() -> ReceiptHandle {
        ReceiptHandle("h".into())
    }

    const V: Duration = Duration::from_secs(30);

    #[tokio::test(start_paused = true)]
    async fn extends_every_third_of_the_visibility() {
        let q = FakeQueue::new(vec![]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::sleep(Duration::from_secs(65)).await;
        let calls = q.calls();
        let at: Vec<u64> = calls.iter().map(|(t, _)| t.as_secs()).collect();
        assert_eq!(at, vec![10, 20, 30, 40, 50, 60]);
        assert!(calls.iter().all(|(_, v)| *v == V));
        assert!(!guard.lost().is_cancelled());
        assert_eq!(guard.failure(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stale_handle_cancels_the_task_at_once() {
        let q = FakeQueue::new(vec![Outcome::Ok, Outcome::Stale]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::timeout(Duration::from_secs(25), guard.lost().cancelled())
            .await
            .expect("lost by the second extension");
        assert_eq!(q.calls().len(), 2);
        assert!(guard.failure().unwrap().contains("no longer valid"));
        // Nothing more after giving up.
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn transient_failures_are_retried_before_the_deadline() {
        let q = FakeQueue::new(vec![Outcome::Transient, Outcome::Transient, Outcome::Ok]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::sleep(Duration::from_secs(45)).await;
        assert!(!guard.lost().is_cancelled(), "{:?}", guard.failure());
        let at: Vec<u64> = q
            .calls()
            .iter()
            .map(|(t, _)| t.as_millis() as u64)
            .collect();
        // 10 s fails, retried 1 s later twice; the third try succeeds at 12 s,
        // and the rhythm restarts from there.
        assert_eq!(at, vec![10_000, 11_000, 12_000, 22_000, 32_000, 42_000]);
    }

    #[tokio::test(start_paused = true)]
    async fn persistent_failures_cancel_before_the_message_reappears() {
        let q = FakeQueue::new(vec![Outcome::Transient; 1000]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::timeout(V, guard.lost().cancelled())
            .await
            .expect("cancelled before the visibility deadline");
        let last = q.calls().last().unwrap().0;
        assert!(last <= Duration::from_secs(20), "{last:?}");
        assert!(guard.failure().unwrap().contains("throttled"));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_guard_stops_it() {
        let q = FakeQueue::new(vec![]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::sleep(Duration::from_secs(15)).await;
        drop(guard);
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.calls().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn stop_waits_and_nothing_follows() {
        let q = FakeQueue::new(vec![]);
        let guard = start(q.clone(), handle(), V);
        tokio::time::sleep(Duration::from_secs(25)).await;
        guard.stop().await;
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.calls().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn cancelling_the_token_from_outside_ends_it() {
        let q = FakeQueue::new(vec![]);
        let token = CancellationToken::new();
        let _guard = start_with_token(q.clone(), handle(), V, token.child_token());
        tokio::time::sleep(Duration::from_secs(15)).await;
        token.cancel();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.calls().len(), 1);
    }
}
