//! AWS mode, assembled from configuration: the S3 (or R2) bucket, the events
//! and gpu SQS queues, and the executor and router over them. `reelay route`,
//! `reelay work`, `reelay reconcile` and the Lambda bootstrap all start here,
//! so they share one core and differ only in which queue they consume.

use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use tokio_util::sync::CancellationToken;

use crate::adapters::s3::{S3Keys, S3Options, S3Store, parse_bucket_url};
use crate::adapters::sqs::SqsQueue;
use crate::config::aws::AwsSettings;
use crate::config::{Config, ConfigError, env};
use crate::media::{Ffmpeg, MediaError};
use crate::ports::queue::Queue;
use crate::ports::store::{ObjectStore, StoreError};
use crate::runtime::consumer::{ConsumerSettings, MessageHandler, consume};
use crate::runtime::dispatch::Dispatcher;
use crate::runtime::executor::Executor;
use crate::runtime::journal::Journal;
use crate::runtime::metrics::Metrics;
use crate::runtime::progress::LogProgress;
use crate::runtime::router::Router;

/// Why AWS mode could not start; each names what to set.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("opening the bucket: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Media(#[from] MediaError),
}

/// The bucket, the two queues and the router over them.
pub struct AwsRuntime {
    pub config: Arc<Config>,
    pub store: Arc<S3Store>,
    pub events: Arc<SqsQueue>,
    pub gpu: Arc<SqsQueue>,
    pub router: Arc<Router>,
}

/// Loads aws-config's default chain: `AWS_*` credentials and region, and
/// `AWS_ENDPOINT_URL`, with the default `[aws]` retry and timeout settings.
pub async fn load_sdk_config() -> SdkConfig {
    load_sdk_config_for(&AwsSettings::default()).await
}

/// The default chain with `[aws]`'s retries and timeouts: without a read
/// timeout a stalled connection hangs a step forever, and without enough
/// attempts one 503 from the store fails a whole step.
pub async fn load_sdk_config_for(aws: &AwsSettings) -> SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry_config(aws))
        .timeout_config(timeout_config(aws))
        .load()
        .await
}

/// Standard retries (exponential backoff with jitter) for `aws.max_attempts`.
pub fn retry_config(aws: &AwsSettings) -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(aws.max_attempts.max(1))
        .with_initial_backoff(Duration::from_millis(200))
        .with_max_backoff(Duration::from_secs(5))
}

/// Connect and read timeouts per attempt; no whole-call timeout, so a large
/// upload that keeps moving is never cut off.
pub fn timeout_config(aws: &AwsSettings) -> TimeoutConfig {
    TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(aws.connect_timeout_seconds.max(1)))
        .read_timeout(Duration::from_secs(aws.read_timeout_seconds.max(1)))
        .build()
}

fn missing(config: &Config, field: &str, var: &str, example: &str) -> ConfigError {
    ConfigError {
        object: config.source.clone(),
        field: field.into(),
        problem: "AWS mode needs it and it is not set".into(),
        fix: format!("set {var}={example}, or `{field} = \"{example}\"` in reelay.toml"),
    }
}

/// S3 options from `[aws]`, with `REELAY_S3_PATH_STYLE` and
/// `REELAY_S3_ENDPOINT` taking precedence.
pub fn s3_options(config: &Config) -> Result<S3Options, StoreError> {
    let mut opts = S3Options::from_env()?;
    let aws = &config.file.aws;
    if std::env::var_os(env::S3_PATH_STYLE).is_none() {
        opts.path_style = aws.path_style;
    }
    if opts.endpoint.is_none() {
        opts.endpoint = aws.endpoint.clone();
    }
    if aws.region.is_some() {
        opts.region = aws.region.clone();
    }
    if opts.credentials.is_none() {
        opts.credentials = aws.bucket_keys.clone();
    }
    Ok(opts)
}

/// The bucket's own keys from the Secrets Manager secret `secret` (an ARN or
/// name; JSON `access_key_id`, `secret_access_key`), read with the default
/// AWS chain. Errors name the secret, never its value.
pub async fn bucket_keys_from_secret(sdk: &SdkConfig, secret: &str) -> Result<S3Keys, StoreError> {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let fail = |message: String| StoreError::Backend {
        key: String::new(),
        message,
    };
    let out = client
        .get_secret_value()
        .secret_id(secret)
        .send()
        .await
        .map_err(|e| {
            fail(format!(
                "reading the bucket keys from secret {secret} ({}): {}; \
                 check the secret exists and the role may secretsmanager:GetSecretValue on it",
                env::S3_CREDENTIALS_SECRET,
                aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
            ))
        })?;
    let text = out.secret_string().ok_or_else(|| {
        fail(format!(
            "secret {secret} holds binary data: store JSON {{\"access_key_id\": ..., \"secret_access_key\": ...}}"
        ))
    })?;
    S3Keys::from_secret_json(text, secret).map_err(fail)
}

/// Opens `url` (`s3://NAME`) as a store, for the commands that need only the
/// bucket (`audit`, `cost`).
pub fn open_bucket(sdk: &SdkConfig, config: &Config, url: &str) -> Result<S3Store, SetupError> {
    let bucket = match parse_bucket_url(url) {
        Some(Ok(b)) => b,
        Some(Err(problem)) => {
            return Err(ConfigError {
                object: config.source.clone(),
                field: "bucket".into(),
                problem,
                fix: "give s3://NAME".into(),
            }
            .into());
        }
        None => {
            return Err(ConfigError {
                object: config.source.clone(),
                field: "bucket".into(),
                problem: format!("`{url}` is not an s3:// URL"),
                fix: "give s3://NAME; for a local folder bucket use --root DIR or `reelay dev`"
                    .into(),
            }
            .into());
        }
    };
    if !bucket.prefix.is_empty() {
        return Err(ConfigError {
            object: config.source.clone(),
            field: "bucket".into(),
            problem: format!(
                "`{url}` names a prefix; reelay works on whole keys, as notifications carry them"
            ),
            fix: format!("give s3://{} alone", bucket.bucket),
        }
        .into());
    }
    Ok(S3Store::from_sdk_config(
        sdk,
        &bucket.bucket,
        s3_options(config)?,
    )?)
}

/// The worker id written into audit records: `REELAY_WORKER_ID`, else
/// `<role>-<hostname>-<pid>`.
pub fn worker_id(role: &str) -> String {
    if let Ok(id) = std::env::var(env::WORKER_ID)
        && !id.trim().is_empty()
    {
        return id.trim().to_string();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "host".into());
    format!("{role}-{host}-{}", std::process::id())
}

/// The three addresses AWS mode needs, each required.
#[derive(Debug, Clone)]
pub struct AwsUrls {
    pub bucket: String,
    pub events_queue: String,
    pub gpu_queue: String,
}

impl AwsUrls {
    /// From the loaded configuration (file, then `REELAY_*` overrides).
    pub fn from_config(config: &Config) -> Result<AwsUrls, ConfigError> {
        let f = &config.file;
        Ok(AwsUrls {
            bucket: f
                .bucket
                .clone()
                .ok_or_else(|| missing(config, "bucket", env::BUCKET, "s3://my-bucket"))?,
            events_queue: f.events_queue_url.clone().ok_or_else(|| {
                missing(
                    config,
                    "events_queue_url",
                    env::EVENTS_QUEUE_URL,
                    "https://sqs.REGION.amazonaws.com/ACCOUNT/reelay-events",
                )
            })?,
            gpu_queue: f.gpu_queue_url.clone().ok_or_else(|| {
                missing(
                    config,
                    "gpu_queue_url",
                    env::GPU_QUEUE_URL,
                    "https://sqs.REGION.amazonaws.com/ACCOUNT/reelay-gpu",
                )
            })?,
        })
    }
}

impl AwsRuntime {
    /// Assembles everything from `config` and the default AWS chain.
    pub async fn from_env(mut config: Config, role: &str) -> Result<AwsRuntime, SetupError> {
        let sdk = load_sdk_config_for(&config.file.aws).await;
        if let Ok(secret) = std::env::var(env::S3_CREDENTIALS_SECRET)
            && !secret.trim().is_empty()
        {
            config.file.aws.bucket_keys = Some(bucket_keys_from_secret(&sdk, secret.trim()).await?);
        }
        Self::assemble(&sdk, config, &worker_id(role), None)
    }

    /// Assembles everything from an already loaded SDK configuration;
    /// `journal` logs each execution (tests count them with it).
    pub fn assemble(
        sdk: &SdkConfig,
        config: Config,
        worker_id: &str,
        journal: Option<Journal>,
    ) -> Result<AwsRuntime, SetupError> {
        let urls = AwsUrls::from_config(&config)?;
        let store = Arc::new(open_bucket(sdk, &config, &urls.bucket)?);
        let events = Arc::new(SqsQueue::from_sdk_config(sdk, &urls.events_queue));
        let gpu = Arc::new(SqsQueue::from_sdk_config(sdk, &urls.gpu_queue));
        let config = Arc::new(config);
        let executor = Arc::new(Executor {
            store: store.clone() as Arc<dyn ObjectStore>,
            config: config.clone(),
            dispatcher: Dispatcher {
                events: events.clone() as Arc<dyn Queue>,
                gpu: gpu.clone() as Arc<dyn Queue>,
            },
            ffmpeg: Ffmpeg::locate()?,
            worker_id: worker_id.to_string(),
            progress: Arc::new(LogProgress),
            journal,
            // AWS mode: every outcome is also an EMF line for CloudWatch.
            metrics: Arc::new(Metrics::emf()),
            claim_lease: Duration::from_secs(config.file.queue.visibility_seconds),
        });
        Ok(AwsRuntime {
            config,
            store,
            events,
            gpu,
            router: Arc::new(Router { executor }),
        })
    }

    /// The dispatcher the router uses: for `reconcile`.
    pub fn dispatcher(&self) -> &Dispatcher {
        &self.router.executor.dispatcher
    }

    /// Receive-loop settings from the configuration.
    pub fn consumer_settings(&self, concurrency: usize, grace: Duration) -> ConsumerSettings {
        ConsumerSettings {
            visibility: Duration::from_secs(self.config.file.queue.visibility_seconds),
            wait: Duration::from_secs(self.config.file.aws.poll_wait_seconds),
            concurrency,
            shutdown_grace: grace,
        }
    }

    /// `reelay route`: consumes the events queue (notifications and CPU
    /// steps) until `shutdown`, then drains within the grace period.
    pub async fn route(&self, settings: ConsumerSettings, shutdown: CancellationToken) {
        tracing::info!(
            bucket = %self.store.describe(),
            queue = self.events.name(),
            concurrency = settings.concurrency,
            "reelay route is receiving"
        );
        consume(
            self.events.clone() as Arc<dyn Queue>,
            settings,
            self.router.clone() as Arc<dyn MessageHandler>,
            shutdown,
        )
        .await;
        tracing::info!("reelay route stopped");
    }

    /// `reelay work`: consumes the gpu queue with `handler` (the router,
    /// possibly wrapped in ECS task protection) until `shutdown`.
    pub async fn work(
        &self,
        settings: ConsumerSettings,
        handler: Arc<dyn MessageHandler>,
        shutdown: CancellationToken,
    ) {
        tracing::info!(
            bucket = %self.store.describe(),
            queue = self.gpu.name(),
            device = %self.config.file.device,
            concurrency = settings.concurrency,
            "reelay work is receiving"
        );
        consume(
            self.gpu.clone() as Arc<dyn Queue>,
            settings,
            handler,
            shutdown,
        )
        .await;
        tracing::info!("reelay work stopped");
    }
}
