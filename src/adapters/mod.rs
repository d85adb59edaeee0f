//! Implementations of the ports: a local directory bucket and an in-process
//! queue (for `reelay dev`, `reelay demo` and tests); S3/R2 storage and SQS
//! queues for the cloud.

pub mod local_store;
pub mod memory_queue;
pub mod s3;
pub mod sqs;
