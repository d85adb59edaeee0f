//! The receive loop shared by every runtime: receive under a concurrency
//! limit, keep each message invisible with the lease keeper while it is handled,
//! acknowledge only after the work is committed, and hand failures back for
//! a later retry (the queue's DLQ takes them after its maximum receive count).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::ports::queue::{Queue, Received};
use crate::runtime::lease::{self, QueueLease};

/// What to do with a message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Committed: delete it.
    Ack,
    /// Not done: make it visible again after this delay.
    Retry(Duration),
    /// Turned away (busy elsewhere), not failed: back after this delay
    /// without spending one of its tries.
    Requeue(Duration),
}

#[async_trait]
pub trait MessageHandler: Send + Sync + 'static {
    /// Handles one message. `cancel` fires when the heartbeat loses the
    /// message (another worker may now own it) or on shutdown.
    async fn handle(&self, message: &Received, cancel: CancellationToken) -> Disposition;
}

#[derive(Debug, Clone)]
pub struct ConsumerSettings {
    pub visibility: Duration,
    /// Long-poll wait per receive.
    pub wait: Duration,
    pub concurrency: usize,
    /// How long in-flight work may run after shutdown before it is handed back.
    pub shutdown_grace: Duration,
}

/// Runs until `shutdown` fires, then stops receiving, lets in-flight messages
/// finish within the grace period, and hands back the rest (visibility 0).
pub async fn consume(
    queue: Arc<dyn Queue>,
    settings: ConsumerSettings,
    handler: Arc<dyn MessageHandler>,
    shutdown: CancellationToken,
) {
    let permits = Arc::new(Semaphore::new(settings.concurrency.max(1)));
    let mut in_flight = JoinSet::new();
    let work_cancel = CancellationToken::new();
    loop {
        while in_flight.try_join_next().is_some() {}
        // Wait for a free slot, then ask for as many messages as there are slots.
        let available = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = permits.clone().acquire_owned() => { drop(p); permits.available_permits() }
        };
        let received = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = queue.receive(available.clamp(1, 10), settings.visibility, settings.wait) => r,
        };
        let messages = match received {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(queue = queue.name(), error = %e, "receive failed; backing off");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        for message in messages {
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore is never closed");
            let (queue, handler, settings) = (queue.clone(), handler.clone(), settings.clone());
            let cancel = work_cancel.child_token();
            in_flight.spawn(async move {
                handle_one(queue, settings, handler, message, cancel).await;
                drop(permit);
            });
        }
    }
    // Shutdown: no more receives. Give in-flight work its grace, then cancel it.
    let drained = tokio::time::timeout(settings.shutdown_grace, async {
        while in_flight.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            queue = queue.name(),
            "grace period over; handing in-flight messages back"
        );
        work_cancel.cancel();
        while in_flight.join_next().await.is_some() {}
    }
}

async fn handle_one(
    queue: Arc<dyn Queue>,
    settings: ConsumerSettings,
    handler: Arc<dyn MessageHandler>,
    message: Received,
    cancel: CancellationToken,
) {
    // The keeper cancels `lost` only when the message's visibility is lost;
    // the handler's token also fires on shutdown.
    let lost = CancellationToken::new();
    let keeper = lease::keep(
        Arc::new(QueueLease {
            queue: queue.clone(),
            handle: message.handle.clone(),
            visibility: settings.visibility,
        }),
        lost.clone(),
    );
    let combined = cancel.child_token();
    let (watch, combined_for_task) = (lost.clone(), combined.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = combined_for_task.cancelled() => {}
            _ = watch.cancelled() => combined_for_task.cancel(),
        }
    });
    // A panic in one handler fails only its own message.
    let outcome = {
        let (handler, message, combined) = (handler.clone(), message.clone(), combined.clone());
        tokio::spawn(async move { handler.handle(&message, combined).await }).await
    };
    let was_lost = keeper.was_lost();
    keeper.stop().await;
    combined.cancel();
    let disposition = match outcome {
        Ok(d) => d,
        Err(e) => {
            tracing::error!(queue = queue.name(), message_id = %message.message_id, error = %e, "handler panicked");
            Disposition::Retry(Duration::from_secs(1))
        }
    };
    if was_lost {
        // Our hold on the message is gone; whoever has it now decides.
        tracing::warn!(queue = queue.name(), message_id = %message.message_id, "lost the message's visibility; left to its new owner");
        return;
    }
    let result = match disposition {
        Disposition::Ack => queue.ack(std::slice::from_ref(&message.handle)).await,
        Disposition::Retry(_) if cancel.is_cancelled() => {
            queue.extend(&message.handle, Duration::ZERO).await
        }
        Disposition::Retry(after) => queue.extend(&message.handle, after).await,
        Disposition::Requeue(after) => queue.requeue(&message, after).await,
    };
    if let Err(e) = result {
        tracing::warn!(queue = queue.name(), message_id = %message.message_id, error = %e, "could not settle a message; it will be redelivered");
    }
}
