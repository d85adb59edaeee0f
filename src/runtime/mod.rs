//! Thin shells over the core: the queue consumer, the router logic, the
//! executor, the local all-in-one runtime, and AWS mode (`route`, `work`,
//! `reconcile`, the Lambda handler).

pub mod aws;
pub mod blame;
pub mod claim;
pub mod consumer;
pub mod dispatch;
pub mod ecs;
pub mod execution;
pub mod executor;
pub mod journal;
pub mod lambda;
pub mod lease;
pub mod local;
pub mod metrics;
pub mod progress;
pub mod reconcile;
pub mod router;
pub mod shutdown;
pub mod supersede;
pub mod watcher;
