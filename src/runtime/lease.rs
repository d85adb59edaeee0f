//! The one lease keeper: everything that must be renewed while a step runs
//! (the message's SQS visibility, the task's claim, the container's ECS
//! scale-in protection) is a [`Lease`], and [`keep`] renews it in one loop
//! (invariant 3: a long task keeps ownership of its message and its claim).
//!
//! Every `period / 3` the keeper renews the lease for `period` from now, so
//! two renewals can be missed before it lapses. Each call has a timeout
//! (a hung call counts as a failure). When the lease is lost the keeper
//! cancels a [`CancellationToken`] that the step watches:
//!
//! - at once when the holder says the lease is gone for good
//!   ([`RenewError::Gone`]: a stale receipt handle, a closed queue);
//! - after retrying other failures (throttling, the network, a timeout)
//!   while at least one interval remains before the deadline, so the step
//!   stops before the message can reappear for another worker.
//!
//! A lease that is only an optimisation ([`Lease::critical`] false, like ECS
//! task protection) is retried until the deadline and then kept trying; it
//! never stops the step.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::ports::{Queue, QueueError, ReceiptHandle};

/// Longest pause between retries of a failed renewal.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);
/// Longest one renewal call may take before it counts as failed.
const MAX_CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a renewal failed.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    /// The lease cannot be renewed any more: stop at once.
    #[error("{0}")]
    Gone(String),
    /// May work on a retry.
    #[error("{0}")]
    Failed(String),
}

/// Something held for a while that must be renewed to be kept.
#[async_trait]
pub trait Lease: Send + Sync + 'static {
    /// What is held, for logs (`message`, `claim`, `task protection`).
    fn name(&self) -> &str;
    /// How long one renewal holds the lease.
    fn period(&self) -> Duration;
    /// Whether losing it must stop the step (true for ownership, false for
    /// an optimisation).
    fn critical(&self) -> bool {
        true
    }
    /// Holds the lease for another [`Lease::period`] from now.
    async fn renew(&self) -> Result<(), RenewError>;
}

/// Starts keeping `lease`. `lost` is cancelled when a critical lease is
/// lost (pass a child of the step's token so the step stops); cancelling it
/// from outside also ends the keeper: nothing is left to protect. Dropping
/// the guard stops renewing.
pub fn keep(lease: Arc<dyn Lease>, lost: CancellationToken) -> LeaseGuard {
    let stop = CancellationToken::new();
    let failure = Arc::new(Mutex::new(None));
    let task = tokio::spawn(run(lease, lost.clone(), stop.clone(), failure.clone()));
    LeaseGuard {
        lost,
        stop,
        failure,
        task: Some(task),
    }
}

/// Like [`keep`] with a fresh token.
pub fn start(queue: Arc<dyn Queue>, handle: ReceiptHandle, visibility: Duration) -> LeaseGuard {
    keep(
        Arc::new(QueueLease {
            queue,
            handle,
            visibility,
        }),
        CancellationToken::new(),
    )
}

/// Stops the keeper when dropped.
#[derive(Debug)]
pub struct LeaseGuard {
    lost: CancellationToken,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
    task: Option<JoinHandle<()>>,
}

impl LeaseGuard {
    /// Cancelled when the lease is lost: the step must stop, publish
    /// nothing and not acknowledge its message.
    pub fn lost(&self) -> &CancellationToken {
        &self.lost
    }

    /// Whether the lease was lost (not merely the token cancelled from outside).
    pub fn was_lost(&self) -> bool {
        self.failure().is_some()
    }

    /// Why the lease was lost, once it was.
    pub fn failure(&self) -> Option<String> {
        self.failure.lock().ok().and_then(|f| f.clone())
    }

    /// Stops renewing and waits until no renewal is in flight, so an
    /// acknowledgement or release that follows cannot race one.
    pub async fn stop(mut self) {
        self.stop.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// A received message's visibility on its queue.
pub struct QueueLease {
    pub queue: Arc<dyn Queue>,
    pub handle: ReceiptHandle,
    pub visibility: Duration,
}

#[async_trait]
impl Lease for QueueLease {
    fn name(&self) -> &str {
        "message visibility"
    }
    fn period(&self) -> Duration {
        self.visibility
    }
    async fn renew(&self) -> Result<(), RenewError> {
        match self.queue.extend(&self.handle, self.visibility).await {
            Ok(()) => Ok(()),
            Err(e @ (QueueError::StaleHandle | QueueError::Closed)) => Err(RenewError::Gone(
                format!("extending visibility failed: {e}"),
            )),
            Err(e) => Err(RenewError::Failed(e.to_string())),
        }
    }
}

async fn run(
    lease: Arc<dyn Lease>,
    lost: CancellationToken,
    stop: CancellationToken,
    failure: Arc<Mutex<Option<String>>>,
) {
    let period = lease.period();
    let interval = (period / 3).max(Duration::from_millis(1));
    let retry_delay = (interval / 4).clamp(Duration::from_millis(1), MAX_RETRY_DELAY);
    let call_timeout = interval.min(MAX_CALL_TIMEOUT);
    let mut deadline = Instant::now() + period;
    let mut next = Instant::now() + interval;
    let give_up = |why: String| {
        tracing::warn!(lease = lease.name(), reason = %why, "lease lost; stopping its step");
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
        let renewed = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            r = tokio::time::timeout(call_timeout, lease.renew()) => r.unwrap_or_else(|_| {
                Err(RenewError::Failed(format!("no answer within {call_timeout:?}")))
            }),
        };
        let now = Instant::now();
        match renewed {
            Ok(()) => {
                deadline = now + period;
                next = now + interval;
            }
            Err(RenewError::Gone(why)) if lease.critical() => {
                give_up(why);
                return;
            }
            Err(e) if now + retry_delay + interval <= deadline => {
                tracing::debug!(lease = lease.name(), error = %e, "renewing failed; retrying");
                next = now + retry_delay;
            }
            Err(e) if lease.critical() => {
                give_up(format!(
                    "renewing the {} kept failing and the deadline is near: {e}",
                    lease.name()
                ));
                return;
            }
            Err(e) => {
                // An optimisation: say so, and keep trying at the usual rhythm.
                tracing::warn!(lease = lease.name(), error = %e, "could not renew; will keep trying");
                deadline = now + period;
                next = now + interval;
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
        let lease = Arc::new(QueueLease {
            queue: q.clone(),
            handle: handle(),
            visibility: V,
        });
        let _guard = keep(lease, token.child_token());
        tokio::time::sleep(Duration::from_secs(15)).await;
        token.cancel();
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert_eq!(q.calls().len(), 1);
    }

    /// A renewal that hangs counts as failed after its timeout, and the
    /// step is stopped before the lease runs out.
    #[tokio::test(start_paused = true)]
    async fn a_hung_renewal_times_out_and_the_step_stops_before_the_deadline() {
        struct Hangs;
        #[async_trait]
        impl Lease for Hangs {
            fn name(&self) -> &str {
                "hangs"
            }
            fn period(&self) -> Duration {
                V
            }
            async fn renew(&self) -> Result<(), RenewError> {
                std::future::pending().await
            }
        }
        let step = CancellationToken::new();
        let guard = keep(Arc::new(Hangs), step.clone());
        tokio::time::timeout(V, step.cancelled())
            .await
            .expect("the step is stopped before the lease lapses");
        assert!(
            guard.failure().unwrap().contains("no answer within"),
            "{:?}",
            guard.failure()
        );
    }

    /// A lease that is an optimisation never stops the step.
    #[tokio::test(start_paused = true)]
    async fn a_non_critical_lease_keeps_trying_and_never_stops_the_step() {
        struct Flaky(Mutex<u32>);
        #[async_trait]
        impl Lease for Flaky {
            fn name(&self) -> &str {
                "flaky"
            }
            fn period(&self) -> Duration {
                V
            }
            fn critical(&self) -> bool {
                false
            }
            async fn renew(&self) -> Result<(), RenewError> {
                *self.0.lock().unwrap() += 1;
                Err(RenewError::Gone("refused".into()))
            }
        }
        let lease = Arc::new(Flaky(Mutex::new(0)));
        let step = CancellationToken::new();
        let _guard = keep(lease.clone(), step.clone());
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert!(!step.is_cancelled());
        assert!(*lease.0.lock().unwrap() > 10);
    }
}
