//! Adapters behind the ports: S3/R2 storage, SQS queues, and the visibility
//! heartbeat that works over any queue.

pub mod heartbeat;
pub mod s3;
pub mod sqs;
