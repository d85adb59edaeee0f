//! The Lambda bootstrap: the router as a function on the events queue.
//! Configured like `reelay route` (REELAY_BUCKET, REELAY_EVENTS_QUEUE_URL,
//! REELAY_GPU_QUEUE_URL, REELAY_CONFIG, AWS_*); the event source mapping must
//! report batch item failures, so only failed messages return to the queue.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use reelay::config::Config;
use reelay::runtime::aws::AwsRuntime;
use reelay::runtime::lambda::handle_sqs_event;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .json()
        .init();
    // Assembled once per container, outside the handler: later invocations
    // reuse the clients and their connections.
    let config = Config::load(None)?;
    let rt = AwsRuntime::from_env(config, "lambda").await?;
    let router = rt.router.clone();
    let concurrency = rt.config.file.concurrency;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let router = router.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(
                handle_sqs_event(Arc::clone(&router), event.payload, concurrency).await,
            )
        }
    }))
    .await
}
