//! Thin shells over the core: the queue consumer, the router logic, the
//! executor, and the local all-in-one runtime.

pub mod consumer;
pub mod dispatch;
pub mod executor;
pub mod journal;
pub mod local;
pub mod progress;
pub mod router;
pub mod watcher;
