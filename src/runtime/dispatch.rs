//! Sends ready tasks to the queue for their hardware: CPU steps to the events
//! queue (the router runs them), GPU steps to the gpu queue (the fleet).

use std::sync::Arc;

use crate::pipeline::message::InternalMessage;
use crate::pipeline::task::{Hardware, Task};
use crate::ports::queue::{Queue, QueueError};

#[derive(Clone)]
pub struct Dispatcher {
    pub events: Arc<dyn Queue>,
    pub gpu: Arc<dyn Queue>,
}

impl Dispatcher {
    pub async fn dispatch(&self, tasks: &[Task]) -> Result<(), QueueError> {
        for task in tasks {
            let queue = match task.kind.hardware() {
                Hardware::Cpu => &self.events,
                Hardware::Gpu => &self.gpu,
            };
            tracing::debug!(task = %task.id, kind = %task.kind, queue = queue.name(), "dispatching step");
            queue
                .send(&InternalMessage::Task(task.clone()).to_json())
                .await?;
        }
        Ok(())
    }
}
