//! The Lambda bootstrap: the router as a function on the events queue.
//! Configured like `reelay route` (REELAY_BUCKET, REELAY_EVENTS_QUEUE_URL,
//! REELAY_GPU_QUEUE_URL, REELAY_CONFIG, AWS_*); the event source mapping must
//! report batch item failures, so only failed messages return to the queue,
//! each after its backoff.
//!
//! Every line it writes is JSON, the last one too: an init error (a missing
//! REELAY_BUCKET, an unreadable secret) is logged, posted to the Runtime API's
//! init-error endpoint, and the process exits 1.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use reelay::config::Config;
use reelay::ports::queue::Queue;
use reelay::runtime::aws::AwsRuntime;
use reelay::runtime::lambda::{handle_sqs_event_with_backoff, report_init_error};
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .json()
        .init();
    // Assembled once per container, outside the handler: later invocations
    // reuse the clients and their connections.
    let rt = match init().await {
        Ok(rt) => rt,
        Err(e) => {
            let message = e.to_string();
            tracing::error!(error = %message, "reelay-lambda could not start");
            if let Ok(api) = std::env::var("AWS_LAMBDA_RUNTIME_API") {
                match report_init_error(&api, "Reelay.InitError", &message).await {
                    Ok(status) => {
                        tracing::info!(status, "init error reported to the Lambda Runtime API")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "could not report the init error to the Lambda Runtime API")
                    }
                }
            }
            std::process::exit(1);
        }
    };
    let router = rt.router.clone();
    let events: Arc<dyn Queue> = rt.events.clone();
    let concurrency = rt.config.file.concurrency;
    let served = lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let router = router.clone();
        let events = events.clone();
        async move {
            Ok::<SqsBatchResponse, Error>(
                handle_sqs_event_with_backoff(
                    Arc::clone(&router),
                    event.payload,
                    concurrency,
                    events,
                )
                .await,
            )
        }
    }))
    .await;
    if let Err(e) = served {
        tracing::error!(error = %e, "the Lambda runtime loop ended");
        std::process::exit(1);
    }
}

async fn init() -> Result<AwsRuntime, Error> {
    let config = Config::load(None)?;
    Ok(AwsRuntime::from_env(config, "lambda").await?)
}
