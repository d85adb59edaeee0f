//! Implementations of the ports: a local directory bucket and an in-process
//! queue (for `reelay dev`, `reelay demo` and tests).

pub mod local_store;
pub mod memory_queue;
