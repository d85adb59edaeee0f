//! The stack's own IAM policies, enforced (issue 16, part 2).
//!
//! moto enforces IAM once `/moto-api/reset-auth` sets its no-auth count to 0:
//! every S3 and SQS call is then signature-checked and authorised against the
//! caller's IAM policies (S3: per bucket and per key for GetObject/HEAD,
//! PutObject incl. multipart, DeleteObject, ListBucket; SQS: per queue for
//! every action). Each reelay role gets a moto user whose only policy is what
//! the synthesized template gives that role (`infra/aws/scripts/role-policies.ts`
//! resolves the ARNs to moto's). Then `reelay route` (the Fargate router's
//! role), `reelay work` (the worker's) and the Lambda handler (the Lambda
//! role's, also receiving and deleting as the event source mapping does with
//! that role) run jobs through every step kind, a duplicate delivery, a
//! redelivered export task and claim release. A missing permission is an
//! AccessDenied: a failure record, a dead letter or a timeout, and the test
//! fails. What moto cannot check (ECS task protection, logs, Secrets Manager)
//! is evaluated against the same statements in infra/aws/test/iam-calls.test.ts.

mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use common::aws::{Aws, Layout, sigterm, wait_exit};
use reelay::adapters::s3::{S3Options, S3Store};
use reelay::adapters::sqs::SqsQueue;
use reelay::audit::AuditRecord;
use reelay::pipeline::message::InternalMessage;
use reelay::ports::store::{Metadata, ObjectStore, PutCondition};
use reelay::ports::{Queue, Received};
use reelay::runtime::aws::AwsRuntime;
use reelay::runtime::lambda::handle_sqs_event_with_backoff;
use reelay::tasks::StepKind;
use serde_json::json;

const ACCOUNT: &str = "123456789012";

#[derive(Debug, Clone, serde::Deserialize)]
struct Keys {
    id: String,
    secret: String,
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The template's statements per role, resolved to this moto's ARNs.
fn role_policies(aws: &Aws) -> serde_json::Value {
    let aws_dir = repo().join("infra/aws");
    assert!(
        aws_dir.join("node_modules/aws-cdk-lib").is_dir(),
        "infra/aws/node_modules is missing: run `make tools` (it runs npm ci there)"
    );
    let target = json!({
        "bucket": aws.bucket, "account": ACCOUNT, "region": "us-east-1", "cluster": "reelay-cluster",
        "queues": {"EventsQueue": aws.events.arn, "GpuQueue": aws.gpu.arn,
                   "EventsDlq": aws.events.dlq_arn, "GpuDlq": aws.gpu.dlq_arn},
    });
    let out = Command::new("node")
        .current_dir(&aws_dir)
        .args([
            "--import",
            "tsx",
            "scripts/role-policies.ts",
            &target.to_string(),
        ])
        .output()
        .expect("node (Node 20+) runs the CDK app");
    assert!(
        out.status.success(),
        "role-policies.ts: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Creates the users (and an admin for the test's own calls) while moto is
/// still open, then turns enforcement on.
fn users_then_enforce(aws: &Aws, roles: &serde_json::Value) -> BTreeMap<String, Keys> {
    let python = repo().join(".tools/venv/bin/python");
    let mut child = Command::new(&python)
        .arg(repo().join("tests/common/iam_users.py"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the moto venv's python (make tools)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            json!({"endpoint": aws.moto.endpoint(), "roles": roles})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "iam_users.py: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: BTreeMap<String, Keys> = serde_json::from_slice(&out.stdout).unwrap();
    // From here on every call is authenticated and authorised.
    let mut s = std::net::TcpStream::connect(("127.0.0.1", aws.moto.port())).unwrap();
    write!(
        s,
        "POST /moto-api/reset-auth HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nConnection: close\r\n\r\n0"
    )
    .unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut s, &mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    keys
}

fn sdk_for(aws: &Aws, k: &Keys) -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url(aws.moto.endpoint())
        .credentials_provider(aws_sdk_s3::config::SharedCredentialsProvider::new(
            aws_sdk_s3::config::Credentials::new(&k.id, &k.secret, None, None, "moto-iam"),
        ))
        .build()
}

fn store_for(aws: &Aws, k: &Keys) -> S3Store {
    let opts = S3Options {
        path_style: true,
        ..S3Options::default()
    };
    S3Store::from_sdk_config(&sdk_for(aws, k), &aws.bucket, opts).unwrap()
}

/// `reelay ARGS` with the role's keys and nothing else.
fn reelay_as(aws: &Aws, k: &Keys, log: &str, args: &[&str]) -> std::process::Child {
    aws.reelay(log)
        .env("AWS_ACCESS_KEY_ID", &k.id)
        .env("AWS_SECRET_ACCESS_KEY", &k.secret)
        .env("REELAY_DEVICE", "cpu")
        .args(args)
        .spawn()
        .unwrap()
}

async fn counts(admin: &aws_sdk_sqs::Client, url: &str) -> (u64, u64) {
    use aws_sdk_sqs::types::QueueAttributeName as A;
    let attrs = admin
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(A::All)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap_or_default();
    let n = |a: A| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
    (
        n(A::ApproximateNumberOfMessages),
        n(A::ApproximateNumberOfMessagesNotVisible),
    )
}

async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut done: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !done().await {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

async fn put(store: &S3Store, key: &str, bytes: &[u8]) {
    store
        .put_bytes(
            key,
            bytes,
            "application/octet-stream",
            &Metadata::new(),
            PutCondition::Overwrite,
        )
        .await
        .unwrap();
}

/// The failures, dead letters and leftover claims a missing permission leaves.
async fn assert_clean(aws: &Aws, admin: &S3Store, sqs: &aws_sdk_sqs::Client, logs: &[&str]) {
    let failures = admin.list("_reelay/failures/").await.unwrap();
    let mut text = String::new();
    for f in &failures {
        text.push_str(&String::from_utf8_lossy(
            &admin.get_bytes(&f.key).await.unwrap().0,
        ));
    }
    let logs: String = logs
        .iter()
        .map(|l| format!("--- {l}\n{}", aws.log(l)))
        .collect();
    assert!(
        failures.is_empty(),
        "failure records (a missing permission?):\n{text}\n{logs}"
    );
    for dlq in [&aws.events.dlq_url, &aws.gpu.dlq_url] {
        assert_eq!(
            counts(sqs, dlq).await,
            (0, 0),
            "dead letters in {dlq}\n{logs}"
        );
    }
    let claims = admin.list("_reelay/claims/").await.unwrap();
    assert!(
        claims.is_empty(),
        "claims left behind (no s3:DeleteObject?): {claims:?}\n{logs}"
    );
    assert!(
        !logs.contains("AccessDenied"),
        "an AccessDenied was logged:\n{logs}"
    );
}

fn task_kind(body: &str) -> Option<StepKind> {
    match InternalMessage::parse(body) {
        Some(Ok(InternalMessage::Task(t))) => Some(t.kind),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_work_and_the_lambda_run_every_step_with_only_the_templates_permissions() {
    let aws = Aws::start_with(
        "iam-media",
        Layout {
            visibility: Duration::from_secs(20),
            // The test itself receives gpu messages while it looks for the
            // export task; those receives count too.
            max_receive: 10,
            ..Layout::default()
        },
    )
    .await;
    let roles = role_policies(&aws);
    for role in ["lambda", "worker", "router"] {
        eprintln!("{role}: {}", serde_json::to_string(&roles[role]).unwrap());
    }
    let keys = users_then_enforce(&aws, &roles);
    let admin_sdk = sdk_for(&aws, &keys["admin"]);
    let admin = store_for(&aws, &keys["admin"]);
    let sqs = aws_sdk_sqs::Client::new(&admin_sdk);
    let gpu_admin = SqsQueue::from_sdk_config(&admin_sdk, &aws.gpu.url);

    // Enforcement is on: the harness's own keys are no IAM user's.
    assert!(
        aws.store().list("").await.is_err(),
        "moto still answers unknown keys"
    );
    // And a role may not step outside its statements: the worker reads no
    // bucket listing of other buckets and writes nothing under sources/.
    let worker_store = store_for(&aws, &keys["worker"]);
    let denied = worker_store
        .put_bytes(
            "sources/forged.mp4",
            b"x",
            "video/mp4",
            &Metadata::new(),
            PutCondition::Overwrite,
        )
        .await;
    assert!(denied.is_err(), "the worker wrote under sources/");

    // ---- phase 1: `reelay route` (Fargate router role) + `reelay work` ----
    let source_path = aws.dir.path().join("source.mp4");
    common::make_video(&source_path, 3.0, "320x180", 30, true);
    let source = std::fs::read(&source_path).unwrap();
    let mut route = reelay_as(&aws, &keys["router"], "route.log", &["route"]);
    put(&admin, "sources/m.mp4", &source).await;
    // Split: extract (cpu), frame (gpu), overlay (cpu), compile (cpu); the
    // upload itself triggers detect (gpu) through the default rule.
    let split = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/a.mp4",
        "placement": "fan-out",
        "clips": [{"start": 0.2, "end": 1.0, "caption": "Kick-off"},
                  {"start": 1.0, "end": 2.0,
                   "framing": {"crop": {"x": 120, "y": 60, "w": 64, "h": 36},
                               "model": "realesr-animevideov3", "size": "320x180"}},
                  {"start": 2.0, "end": 2.8,
                   "overlay": {"spotlight": {"keyframes": [{"t": 0, "x": 160, "y": 90, "rx": 60, "ry": 40}]}}}]});
    // Single container: one export task (gpu).
    let single = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/b.mp4",
        "placement": "single-container",
        "clips": [{"start": 0.5, "end": 1.5, "caption": "Plain"}]});
    put(&admin, "jobs/a.json", split.to_string().as_bytes()).await;
    put(&admin, "jobs/b.json", single.to_string().as_bytes()).await;

    // Before any worker runs, take the export task off the gpu queue, keep
    // its body, and deliver it twice (a duplicate delivery).
    let start = Instant::now();
    let export_body = loop {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no export task on the gpu queue"
        );
        let got: Vec<Received> = gpu_admin
            .receive(10, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .unwrap();
        let export = got
            .iter()
            .find(|m| task_kind(&m.body) == Some(StepKind::Export))
            .map(|m| m.body.clone());
        for m in &got {
            gpu_admin.extend(&m.handle, Duration::ZERO).await.unwrap();
        }
        if let Some(body) = export {
            gpu_admin.send(&body).await.unwrap();
            break body;
        }
    };

    let mut work = reelay_as(
        &aws,
        &keys["worker"],
        "work.log",
        &["work", "--device", "cpu"],
    );
    for key in ["exports/a.mp4", "exports/b.mp4"] {
        let start = Instant::now();
        while admin.head(key).await.unwrap().is_none() {
            // No faults are injected: the first failure record is a missing
            // permission, so say so now rather than at the timeout.
            if start.elapsed() > Duration::from_secs(300)
                || !admin.list("_reelay/failures/").await.unwrap().is_empty()
            {
                assert_clean(&aws, &admin, &sqs, &["route.log", "work.log"]).await;
                panic!("timed out waiting for {key}");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    let start = Instant::now();
    while admin.list("detections/").await.unwrap().is_empty() {
        if start.elapsed() > Duration::from_secs(120) {
            assert_clean(&aws, &admin, &sqs, &["route.log", "work.log"]).await;
            let keys: Vec<String> = admin
                .list("")
                .await
                .unwrap()
                .into_iter()
                .map(|o| o.key)
                .collect();
            panic!(
                "no detections and no failure; objects: {keys:?}\n{}",
                aws.log("work.log")
            );
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    wait_until("both queues drained", Duration::from_secs(120), || async {
        counts(&sqs, &aws.events.url).await == (0, 0) && counts(&sqs, &aws.gpu.url).await == (0, 0)
    })
    .await;
    let b_before = admin.head("exports/b.mp4").await.unwrap().unwrap();

    // A redelivered export task after success: the worker HEADs its output
    // (s3:GetObject on exports/), finds it and skips; nothing is rewritten.
    gpu_admin.send(&export_body).await.unwrap();
    wait_until(
        "the redelivered export settled",
        Duration::from_secs(60),
        || async { counts(&sqs, &aws.gpu.url).await == (0, 0) },
    )
    .await;
    assert_eq!(
        admin.head("exports/b.mp4").await.unwrap().unwrap().etag,
        b_before.etag
    );

    sigterm(&work);
    assert!(
        wait_exit(&mut work, Duration::from_secs(60)).success(),
        "{}",
        aws.log("work.log")
    );
    sigterm(&route);
    assert!(
        wait_exit(&mut route, Duration::from_secs(60)).success(),
        "{}",
        aws.log("route.log")
    );
    assert_clean(&aws, &admin, &sqs, &["route.log", "work.log"]).await;

    let mut kinds = std::collections::BTreeSet::new();
    for prefix in ["work/", "exports/", "detections/"] {
        for o in admin.list(prefix).await.unwrap() {
            let meta = admin.head(&o.key).await.unwrap().unwrap();
            if let Some(r) = AuditRecord::from_metadata(&meta.metadata) {
                kinds.insert(r.kind);
            }
        }
    }
    eprintln!("step kinds with audit records: {kinds:?}");

    // ---- phase 2: the Lambda handler with the Lambda role's keys ----
    let lambda_sdk = sdk_for(&aws, &keys["lambda"]);
    let lambda =
        Arc::new(AwsRuntime::assemble(&lambda_sdk, aws.config(), "lambda-iam", None).unwrap());
    // The event source mapping polls and deletes with the function's role.
    let esm = Arc::new(SqsQueue::from_sdk_config(&lambda_sdk, &aws.events.url));
    let plain = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/c.mp4",
        "clips": [{"start": 0.5, "end": 1.0}, {"start": 2.0, "end": 2.5}]});
    put(&admin, "jobs/c.json", plain.to_string().as_bytes()).await;
    let deadline = Instant::now() + Duration::from_secs(240);
    while admin.head("exports/c.mp4").await.unwrap().is_none()
        || counts(&sqs, &aws.events.url).await != (0, 0)
    {
        assert!(Instant::now() < deadline, "the Lambda did not finish job c");
        let got = esm
            .receive(5, Duration::from_secs(3600), Duration::from_secs(1))
            .await
            .unwrap();
        if got.is_empty() {
            continue;
        }
        let records: Vec<_> = got
            .iter()
            .map(|m| {
                json!({"messageId": m.message_id, "receiptHandle": m.handle.0, "body": m.body,
                            "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
                            "messageAttributes": {}, "eventSource": "aws:sqs",
                            "eventSourceARN": aws.events.arn, "awsRegion": "us-east-1"})
            })
            .collect();
        let event = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = handle_sqs_event_with_backoff(
            lambda.router.clone(),
            event,
            2,
            esm.clone() as Arc<dyn Queue>,
        )
        .await;
        let failed: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        let done: Vec<_> = got
            .iter()
            .filter(|m| !failed.contains(&m.message_id.as_str()))
            .map(|m| m.handle.clone())
            .collect();
        if !done.is_empty() {
            esm.ack(&done).await.unwrap();
        }
    }
    assert_clean(&aws, &admin, &sqs, &["route.log", "work.log"]).await;
    let c = admin.head("exports/c.mp4").await.unwrap().unwrap();
    assert_eq!(
        AuditRecord::from_metadata(&c.metadata).unwrap().kind,
        "compile"
    );

    for k in ["extract", "compile", "frame", "overlay", "detect", "export"] {
        assert!(
            kinds.contains(k),
            "no {k} output audited in phase 1: {kinds:?}"
        );
    }
}

/// R2's shape on AWS: the bucket signs with keys of its own (from a Secrets
/// Manager secret), SQS with the task's role. Here one moto user may only use
/// S3 and another only SQS; the router needs both to plan a job, so it works
/// only if each client signs with its own keys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bucket_keys_sign_s3_while_sqs_keeps_the_default_chain() {
    let aws = Aws::start_with(
        "r2-split",
        Layout {
            notify: false,
            ..Layout::default()
        },
    )
    .await;
    let bucket = format!("arn:aws:s3:::{}", aws.bucket);
    let roles = json!({
        "bucketonly": [
            {"Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"], "Resource": [format!("{bucket}/*")]},
            {"Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]}
        ],
        "queueonly": [
            {"Effect": "Allow", "Action": ["sqs:SendMessage", "sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"],
             "Resource": [aws.events.arn.clone(), aws.gpu.arn.clone()]},
            {"Effect": "Allow", "Action": ["secretsmanager:GetSecretValue", "secretsmanager:CreateSecret"], "Resource": ["*"]}
        ]
    });
    let keys = users_then_enforce(&aws, &roles);
    let queue_sdk = sdk_for(&aws, &keys["queueonly"]);
    let bucket_keys = &keys["bucketonly"];
    // The secret as an operator stores it; reelay reads it with the task's role.
    aws_sdk_secretsmanager::Client::new(&queue_sdk)
        .create_secret()
        .name("reelay-r2-keys")
        .secret_string(
            json!({"access_key_id": bucket_keys.id, "secret_access_key": bucket_keys.secret})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    let read = reelay::runtime::aws::bucket_keys_from_secret(&queue_sdk, "reelay-r2-keys")
        .await
        .unwrap();
    assert_eq!(read.access_key_id, bucket_keys.id);
    let missing = reelay::runtime::aws::bucket_keys_from_secret(&queue_sdk, "no-such-secret")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("no-such-secret") && !missing.contains(&bucket_keys.secret),
        "{missing}"
    );

    // Without the bucket keys, the queue-only identity cannot read the job.
    let job = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/r.mp4",
                     "clips": [{"start": 0.0, "end": 1.0}]});
    let admin_store = store_for(&aws, bucket_keys);
    put(&admin_store, "sources/m.mp4", b"not read by planning").await;
    put(&admin_store, "jobs/r.json", job.to_string().as_bytes()).await;
    let notification = json!({"account": "a", "action": "PutObject", "bucket": aws.bucket,
                              "object": {"key": "jobs/r.json", "size": 10}})
    .to_string();
    let shared = AwsRuntime::assemble(&queue_sdk, aws.config(), "router-shared", None).unwrap();
    let err = shared
        .router
        .handle_body(&notification, 1, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.to_lowercase().contains("denied") || err.contains("403"),
        "{err}"
    );

    let mut config = aws.config();
    config.file.aws.bucket_keys = Some(read);
    let split = AwsRuntime::assemble(&queue_sdk, config, "router-split", None).unwrap();
    split
        .router
        .handle_body(&notification, 1, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap();
    // The plan's first steps went out on the events queue with the SQS identity.
    let events = SqsQueue::from_sdk_config(&queue_sdk, &aws.events.url);
    let sent = events
        .receive(10, Duration::from_secs(30), Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        sent.iter()
            .any(|m| task_kind(&m.body) == Some(StepKind::Extract)),
        "{sent:?}"
    );
}
