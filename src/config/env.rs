//! Every environment variable reelay reads, in one place.
//!
//! The deploy stack (`infra/aws`) sets exactly these, and its tests parse this
//! file so the two cannot drift. `reelay env` prints the same table.

/// One variable the binary reads: its name and what it overrides.
pub struct EnvVar {
    pub name: &'static str,
    pub help: &'static str,
}

/// The bucket reelay works on: `s3://NAME` (S3 or R2) or a local folder path.
pub const BUCKET: &str = "REELAY_BUCKET";
/// SQS URL of the events queue: bucket notifications and CPU steps.
pub const EVENTS_QUEUE_URL: &str = "REELAY_EVENTS_QUEUE_URL";
/// SQS URL of the gpu queue: tasks for the GPU worker fleet.
pub const GPU_QUEUE_URL: &str = "REELAY_GPU_QUEUE_URL";
/// Path to `reelay.toml`.
pub const CONFIG: &str = "REELAY_CONFIG";
/// Local bucket folder for `reelay dev` and `reelay demo`.
pub const ROOT: &str = "REELAY_ROOT";
/// Inference device: `cpu`, `cuda` or `auto`.
pub const DEVICE: &str = "REELAY_DEVICE";
/// Steps run at once by one router or worker process.
pub const CONCURRENCY: &str = "REELAY_CONCURRENCY";
/// Folders job outputs may be written under, comma-separated (`exports/`);
/// the deploy stack scopes IAM writes to these and the rules' output folders.
pub const OUTPUT_PREFIXES: &str = "REELAY_OUTPUT_PREFIXES";
/// Device prices in USD per second, e.g. `t4=0.000164,cpu=0.0000262`.
pub const PRICES: &str = "REELAY_PRICES";
/// Folder that holds the model files named in `models/manifest.toml`.
pub const MODELS_DIR: &str = "REELAY_MODELS_DIR";
/// Path to `libonnxruntime.so`.
pub const ORT_DYLIB_PATH: &str = "ORT_DYLIB_PATH";
/// Path to the `ffmpeg` binary.
pub const FFMPEG: &str = "REELAY_FFMPEG";
/// TrueType font for captions and labels.
pub const FONT: &str = "REELAY_FONT";
/// Name written into audit records as the worker id.
pub const WORKER_ID: &str = "REELAY_WORKER_ID";
/// `json` for JSON log lines (the cloud default), `text` for people.
pub const LOG_FORMAT: &str = "REELAY_LOG_FORMAT";
/// `true` to address S3 path-style (moto, MinIO, some R2 setups).
pub const S3_PATH_STYLE: &str = "REELAY_S3_PATH_STYLE";
/// S3-compatible endpoint, e.g. `https://ACCOUNT.r2.cloudflarestorage.com`.
pub const S3_ENDPOINT: &str = "REELAY_S3_ENDPOINT";
/// Access key id for the bucket only (R2): S3 then signs with it, SQS keeps
/// the default AWS chain.
pub const S3_ACCESS_KEY_ID: &str = "REELAY_S3_ACCESS_KEY_ID";
/// Secret access key paired with `REELAY_S3_ACCESS_KEY_ID`; never logged.
pub const S3_SECRET_ACCESS_KEY: &str = "REELAY_S3_SECRET_ACCESS_KEY";
/// ARN of a Secrets Manager secret (JSON `access_key_id`, `secret_access_key`)
/// holding the bucket's own keys; read once at start.
pub const S3_CREDENTIALS_SECRET: &str = "REELAY_S3_CREDENTIALS_SECRET";
/// The consumed queue's visibility timeout, seconds (`queue.visibility_seconds`).
pub const QUEUE_VISIBILITY_SECONDS: &str = "REELAY_QUEUE_VISIBILITY_SECONDS";
/// The consumed queue's maxReceiveCount (`queue.max_receive_count`).
pub const QUEUE_MAX_RECEIVE_COUNT: &str = "REELAY_QUEUE_MAX_RECEIVE_COUNT";

/// The full table, for `reelay env` and for the deploy stack's tests.
pub const ALL: &[EnvVar] = &[
    EnvVar {
        name: BUCKET,
        help: "bucket: s3://NAME, or a local folder",
    },
    EnvVar {
        name: EVENTS_QUEUE_URL,
        help: "SQS URL of the events queue",
    },
    EnvVar {
        name: GPU_QUEUE_URL,
        help: "SQS URL of the gpu task queue",
    },
    EnvVar {
        name: CONFIG,
        help: "path to reelay.toml",
    },
    EnvVar {
        name: ROOT,
        help: "local bucket folder for dev and demo",
    },
    EnvVar {
        name: DEVICE,
        help: "inference device: cpu, cuda or auto",
    },
    EnvVar {
        name: CONCURRENCY,
        help: "steps run at once per process",
    },
    EnvVar {
        name: OUTPUT_PREFIXES,
        help: "folders job outputs go under, comma-separated: exports/",
    },
    EnvVar {
        name: PRICES,
        help: "device prices, USD/s: t4=0.000164,cpu=0.0000262",
    },
    EnvVar {
        name: MODELS_DIR,
        help: "folder holding the model files",
    },
    EnvVar {
        name: ORT_DYLIB_PATH,
        help: "path to libonnxruntime.so",
    },
    EnvVar {
        name: FFMPEG,
        help: "path to the ffmpeg binary",
    },
    EnvVar {
        name: FONT,
        help: "TrueType font for captions and labels",
    },
    EnvVar {
        name: WORKER_ID,
        help: "worker id written into audit records",
    },
    EnvVar {
        name: LOG_FORMAT,
        help: "json or text",
    },
    EnvVar {
        name: S3_PATH_STYLE,
        help: "true for path-style S3 addressing",
    },
    EnvVar {
        name: S3_ENDPOINT,
        help: "S3-compatible endpoint (R2)",
    },
    EnvVar {
        name: S3_ACCESS_KEY_ID,
        help: "bucket-only access key id (R2)",
    },
    EnvVar {
        name: S3_SECRET_ACCESS_KEY,
        help: "bucket-only secret access key (R2)",
    },
    EnvVar {
        name: S3_CREDENTIALS_SECRET,
        help: "Secrets Manager ARN holding the bucket keys (R2)",
    },
    EnvVar {
        name: QUEUE_VISIBILITY_SECONDS,
        help: "the consumed queue's visibility timeout, seconds",
    },
    EnvVar {
        name: QUEUE_MAX_RECEIVE_COUNT,
        help: "the consumed queue's maxReceiveCount",
    },
];
