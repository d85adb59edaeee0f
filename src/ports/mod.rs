//! The two ports the core depends on. Adapters live in `crate::adapters`; the
//! core never names AWS.

pub mod queue;
pub mod store;

pub use queue::{Queue, QueueError, ReceiptHandle, Received};
pub use store::{Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, Skipped, StoreError};
