//! Sends ready tasks to the queue for their hardware: CPU steps to the events
//! queue (the router runs them), GPU steps to the gpu queue (the fleet).
//! `[placement]` in `reelay.toml` may move a kind to the other queue.

use std::sync::Arc;

use crate::config::Config;
use crate::pipeline::message::InternalMessage;
use crate::pipeline::task::{Hardware, StepKind, Task};
use crate::ports::queue::{Queue, QueueError};

#[derive(Clone)]
pub struct Dispatcher {
    pub events: Arc<dyn Queue>,
    pub gpu: Arc<dyn Queue>,
}

impl Dispatcher {
    /// Sends each task to the queue of its kind's own hardware.
    pub async fn dispatch(&self, tasks: &[Task]) -> Result<(), QueueError> {
        self.dispatch_with(tasks, StepKind::hardware).await
    }

    /// Sends each task to the queue `config`'s `[placement]` names for it.
    pub async fn dispatch_for(&self, config: &Config, tasks: &[Task]) -> Result<(), QueueError> {
        self.dispatch_with(tasks, |k| config.hardware_for(k)).await
    }

    /// The queue a task of `hardware` goes to.
    pub fn queue_for(&self, hardware: Hardware) -> &Arc<dyn Queue> {
        match hardware {
            Hardware::Cpu => &self.events,
            Hardware::Gpu => &self.gpu,
        }
    }

    async fn dispatch_with(
        &self,
        tasks: &[Task],
        hardware: impl Fn(StepKind) -> Hardware,
    ) -> Result<(), QueueError> {
        for task in tasks {
            let queue = self.queue_for(hardware(task.kind));
            tracing::debug!(task = %task.id, kind = %task.kind, queue = queue.name(), "dispatching step");
            let mut task = task.clone();
            task.dispatched_at_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis() as u64);
            queue.send(&InternalMessage::Task(task).to_json()).await?;
        }
        Ok(())
    }
}
