//! AWS-mode commands: `reelay route`, `reelay work` and `reelay reconcile`,
//! and opening `--bucket s3://B` for `audit` and `cost`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::adapters::sqs::SqsQueue;
use crate::config::Config;
use crate::ports::queue::Queue;
use crate::ports::store::ObjectStore;
use crate::runtime::aws::{AwsRuntime, AwsUrls, load_sdk_config_for, open_bucket};
use crate::runtime::consumer::MessageHandler;
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::ecs::{ProtectedHandler, TaskProtection};
use crate::runtime::reconcile::{self, ReconcileOptions};
use crate::runtime::shutdown;

#[derive(clap::Args, Debug)]
pub struct RouteArgs {
    /// CPU steps run at once (default: `concurrency` in reelay.toml, or REELAY_CONCURRENCY).
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Seconds in-flight work may run after SIGTERM before it is handed back
    /// (default: `aws.shutdown_grace_seconds`).
    #[arg(long)]
    pub grace: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct WorkArgs {
    /// Inference device: cpu, cuda or auto (default: `device` in reelay.toml, or REELAY_DEVICE).
    #[arg(long)]
    pub device: Option<String>,
    /// Tasks run at once (one per GPU is the usual).
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Seconds in-flight work may run after SIGTERM before it is handed back
    /// (default: `aws.shutdown_grace_seconds`).
    #[arg(long)]
    pub grace: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct ReconcileArgs {
    /// The bucket, s3://NAME (default: REELAY_BUCKET or `bucket` in reelay.toml).
    #[arg(long)]
    pub bucket: Option<String>,
    /// Only uploads whose key starts with this.
    #[arg(default_value = "")]
    pub prefix: String,
    /// List what would be dispatched; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also re-drive tasks whose last attempt went to the dead-letter queue.
    #[arg(long)]
    pub retry_failed: bool,
    /// Print JSON instead of lines.
    #[arg(long)]
    pub json: bool,
}

pub async fn route(args: RouteArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config)?;
    if let Some(n) = args.concurrency {
        config.file.concurrency = n;
        config = Config::from_file(&config.source.clone(), config.file)?;
    }
    // Signal handlers first: a SIGTERM during start-up must not kill us mid-way.
    let stop = shutdown::on_signals()?;
    let rt = AwsRuntime::from_env(config, "router").await?;
    let grace = Duration::from_secs(
        args.grace
            .unwrap_or(rt.config.file.aws.shutdown_grace_seconds),
    );
    let settings = rt.consumer_settings(rt.config.file.concurrency, grace);
    rt.route(settings, stop).await;
    Ok(())
}

pub async fn work(args: WorkArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config)?;
    if let Some(device) = args.device {
        config.file.device = device;
        config = Config::from_file(&config.source.clone(), config.file)?;
    }
    anyhow::ensure!(
        (1..=64).contains(&args.concurrency),
        "--concurrency {} is out of range: use 1 to 64",
        args.concurrency
    );
    let stop = shutdown::on_signals()?;
    let rt = AwsRuntime::from_env(config, "worker").await?;
    let grace = Duration::from_secs(
        args.grace
            .unwrap_or(rt.config.file.aws.shutdown_grace_seconds),
    );
    let handler: Arc<dyn MessageHandler> = match TaskProtection::from_env() {
        Some(p) => {
            let p = p?;
            tracing::info!(
                path = p.path(),
                "ECS task scale-in protection is on while tasks run"
            );
            Arc::new(ProtectedHandler::new(rt.router.clone(), p))
        }
        None => rt.router.clone(),
    };
    let settings = rt.consumer_settings(args.concurrency, grace);
    rt.work(settings, handler, stop).await;
    Ok(())
}

pub async fn reconcile(args: ReconcileArgs, config: Option<&Path>) -> anyhow::Result<()> {
    let mut config = Config::load(config)?;
    if let Some(bucket) = args.bucket {
        config.file.bucket = Some(bucket);
        config = Config::from_file(&config.source.clone(), config.file)?;
    }
    let urls = AwsUrls::from_config(&config)?;
    let sdk = load_sdk_config_for(&config.file.aws).await;
    let store = open_bucket(&sdk, &config, &urls.bucket)?;
    let dispatcher = Dispatcher {
        events: Arc::new(SqsQueue::from_sdk_config(&sdk, &urls.events_queue)) as Arc<dyn Queue>,
        gpu: Arc::new(SqsQueue::from_sdk_config(&sdk, &urls.gpu_queue)) as Arc<dyn Queue>,
    };
    let opts = ReconcileOptions {
        prefix: args.prefix,
        dry_run: args.dry_run,
        retry_failed: args.retry_failed,
    };
    let report = reconcile::reconcile(&store, &config, &dispatcher, &opts)
        .await
        .with_context(|| format!("reconciling {}", store.describe()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", reconcile::render(&report));
    }
    Ok(())
}

/// The store `audit` and `cost` read: `--bucket s3://B`, `--bucket DIR` (a
/// local folder, like `--root`), or the local `--root`.
pub async fn open_store(
    bucket: Option<&str>,
    root: &Path,
    config: Option<&Path>,
) -> anyhow::Result<Box<dyn ObjectStore>> {
    match bucket {
        Some(url) if url.starts_with("s3://") => {
            let config = Config::load(config)?;
            let sdk = load_sdk_config_for(&config.file.aws).await;
            Ok(Box::new(open_bucket(&sdk, &config, url)?))
        }
        Some(dir) => Ok(Box::new(super::open_local(Path::new(dir))?)),
        None => Ok(Box::new(super::open_local(root)?)),
    }
}
