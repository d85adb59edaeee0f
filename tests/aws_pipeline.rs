//! AWS mode end to end against a real S3+SQS server (moto on 127.0.0.1):
//! real bucket notifications, the real `reelay` binary for `route`, `work`,
//! `reconcile`, `audit` and `cost`, the Lambda handler on real `SqsEvent`
//! payloads, and real FFmpeg on media made here.
//!
//! Needs `make setup tools` (FFmpeg, the caption font, moto in `.tools/venv`).

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aws::{Aws, SlowDownloads, settings, sigterm, starts_per_task, wait_exit};
use reelay::adapters::s3::S3Store;
use reelay::audit::AuditRecord;
use reelay::audit::failure::FailureRecord;
use reelay::events::ObjectCreated;
use reelay::pipeline::message::InternalMessage;
use reelay::pipeline::planner::{self, Trigger};
use reelay::ports::store::{Metadata, ObjectMeta, ObjectStore};
use reelay::ports::{Queue, Received};
use reelay::runtime::consumer::consume;
use reelay::runtime::executor::{CLAIMS_PREFIX, Executor};
use reelay::runtime::journal::{Journal, JournalEntry};
use reelay::runtime::lambda::handle_sqs_event;
use reelay::runtime::router::Router;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const MAX_RECEIVE: u32 = 2;

fn highlights(source: &str, output: &str) -> serde_json::Value {
    json!({"version": 1, "source": source, "output": output,
           "clips": [{"start": 0.5, "end": 1.5}, {"start": 1.5, "end": 2.5, "caption": "Goal!"}]})
}

/// Uploads a 3 s test video as `key` (PutObject, which notifies).
async fn put_source(aws: &Aws, key: &str) -> ObjectMeta {
    let path = aws.dir.path().join("source.mp4");
    if !path.exists() {
        common::make_video(&path, 3.0, "320x180", 30, true);
    }
    aws.put_file(key, &path).await
}

async fn probe_duration(store: &S3Store, key: &str, scratch: &Path) -> f64 {
    let local = scratch.join("download.mp4");
    store.get_to_file(key, &local).await.unwrap();
    common::duration(&local)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn happy_path_a_real_notification_becomes_an_export_with_audit_and_route_stops_on_sigterm() {
    let aws = Aws::start("happy", "", true).await;
    let mut route = aws.reelay("route.log").arg("route").spawn().unwrap();
    put_source(&aws, "sources/match day.mp4").await;
    aws.put_job(
        "jobs/h.json",
        &highlights("sources/match day.mp4", "exports/h.mp4"),
    )
    .await;

    let export = aws
        .wait_for_object("exports/h.mp4", Duration::from_secs(90))
        .await;
    let store = aws.store();
    let d = probe_duration(&store, "exports/h.mp4", aws.dir.path()).await;
    assert!((d - 2.0).abs() <= 0.1, "export lasts {d}s, want 2 s");

    // The audit record, read back through HeadObject.
    let head = store.head("exports/h.mp4").await.unwrap().unwrap();
    assert_eq!(head.etag, export.etag);
    let record = AuditRecord::from_metadata(&head.metadata).expect("audit metadata");
    assert_eq!(record.kind, "compile");
    assert_eq!(record.device, "cpu");
    assert_eq!(record.inputs.len(), 2);
    assert_eq!(record.manifest.as_deref(), Some("jobs/h.json"));
    assert!(record.worker.starts_with("router-"), "{}", record.worker);
    assert!(record.cost_usd.unwrap() > 0.0);
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));
    for input in &record.inputs {
        let (key, etag) = input.rsplit_once('@').unwrap();
        let clip = store.head(key).await.unwrap().expect("clip exists");
        assert_eq!(clip.etag, etag, "lineage names the clip's etag");
        let clip_record = AuditRecord::from_metadata(&clip.metadata).unwrap();
        assert_eq!(clip_record.kind, "extract");
        assert!(clip_record.inputs[0].starts_with("sources/match day.mp4@"));
    }

    // `reelay audit --bucket` and `reelay cost --bucket` read the same bucket.
    let out = aws
        .reelay("audit.log")
        .args(["audit", "--bucket", "s3://happy", "exports/h.mp4"])
        .output()
        .unwrap();
    let tree = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", aws.log("audit.log"));
    assert_eq!(tree.matches("[extract extract-").count(), 2, "{tree}");
    assert_eq!(
        tree.matches("sources/match day.mp4  [upload]").count(),
        2,
        "{tree}"
    );
    assert!(tree.contains("total: 3 step(s)"), "{tree}");
    let out = aws
        .reelay("cost.log")
        .args(["cost", "--json", "--bucket", "s3://happy"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", aws.log("cost.log"));
    let cost: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cost["total"]["steps"], 3, "{cost}");

    // Idle router: SIGTERM stops it at once with status 0.
    sigterm(&route);
    let status = wait_exit(&mut route, Duration::from_secs(15));
    assert!(status.success(), "{status}: {}", aws.log("route.log"));
    assert!(aws.log("route.log").contains("reelay route stopped"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_step_hands_the_message_back_and_exits_0() {
    let aws = Aws::start("sigterm", "", true).await;
    // A long accurate extract, so the step is in flight when the signal comes.
    let path = aws.dir.path().join("long.mp4");
    common::make_video(&path, 12.0, "640x360", 30, true);
    aws.store()
        .put_file("sources/long.mp4", &path, "video/mp4", &Metadata::new())
        .await
        .unwrap();
    let mut route = aws
        .reelay("route.log")
        .args(["route", "--grace", "0", "--concurrency", "1"])
        .spawn()
        .unwrap();
    aws.put_job(
        "jobs/long.json",
        &json!({"version": 1, "source": "sources/long.mp4", "output": "exports/long.mp4",
                "accurate": true, "clips": [{"start": 0.0, "end": 12.0}]}),
    )
    .await;
    let store = aws.store();
    let start = Instant::now();
    while store.list(CLAIMS_PREFIX).await.unwrap().is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no step started: {}",
            aws.log("route.log")
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sigterm(&route);
    let status = wait_exit(&mut route, Duration::from_secs(10));
    assert!(status.success(), "{status}: {}", aws.log("route.log"));
    assert!(
        store.head("exports/long.mp4").await.unwrap().is_none(),
        "nothing half-done is published"
    );
    assert!(
        store.list(CLAIMS_PREFIX).await.unwrap().is_empty(),
        "the claim is released"
    );
    assert!(
        store.list("_reelay/failures/").await.unwrap().is_empty(),
        "a shutdown is not a failure of the input"
    );
    // Handed back with visibility 0: nothing is left invisible (the queue's
    // timeout is 5 s), and the extract task is there to receive at once.
    let (visible, invisible) = aws.queue_counts(&aws.events.url).await;
    assert_eq!(invisible, 0, "{}", aws.log("route.log"));
    assert!(visible >= 1);
    // A new router finishes the job.
    let mut again = aws.reelay("route2.log").arg("route").spawn().unwrap();
    aws.wait_for_object("exports/long.mp4", Duration::from_secs(120))
        .await;
    sigterm(&again);
    assert!(wait_exit(&mut again, Duration::from_secs(30)).success());
}

/// An SQS record as Lambda delivers it.
fn sqs_record(id: &str, body: &str, receive_count: u32, queue_arn: &str) -> serde_json::Value {
    json!({
        "messageId": id,
        "receiptHandle": format!("handle-{id}"),
        "body": body,
        "attributes": {
            "ApproximateReceiveCount": receive_count.to_string(),
            "SentTimestamp": "1767225600000",
            "SenderId": "AIDAEXAMPLE",
            "ApproximateFirstReceiveTimestamp": "1767225600001"
        },
        "messageAttributes": {},
        "md5OfBody": "098f6bcd4621d373cade4e832627b4f6",
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1"
    })
}

fn s3_notification(bucket: &str, key: &str, meta: &ObjectMeta) -> String {
    json!({"Records": [{
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
        "eventTime": "2026-01-01T00:00:00.000Z", "eventName": "ObjectCreated:Put",
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "reelay-jobs",
               "bucket": {"name": bucket, "arn": format!("arn:aws:s3:::{bucket}")},
               "object": {"key": key, "size": meta.size, "eTag": meta.etag, "sequencer": "0A1B"}}
    }]})
    .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_handler_fails_only_the_bad_message_and_runs_the_job_to_its_export() {
    let aws = Aws::start("lambda", "", false).await;
    put_source(&aws, "sources/m.mp4").await;
    let job = aws
        .put_job("jobs/l.json", &highlights("sources/m.mp4", "exports/l.mp4"))
        .await;
    let rt = aws.runtime("lambda-test");
    let payload = json!({"Records": [
        sqs_record("m-good", &s3_notification("lambda", "jobs/l.json", &job), 1, &aws.events.arn),
        sqs_record("m-bad", r#"{"type": "reelay.task", "bogus": 1}"#, 1, &aws.events.arn),
        sqs_record("m-test", r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-01-01T00:00:00.000Z","Bucket":"lambda","RequestId":"R","HostId":"H"}"#, 1, &aws.events.arn),
    ]});
    let event: aws_lambda_events::event::sqs::SqsEvent =
        serde_json::from_value(payload).expect("a real SqsEvent payload");
    let response = handle_sqs_event(rt.router.clone(), event, 2).await;
    let failed: Vec<&str> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, ["m-bad"]);
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire,
        json!({"batchItemFailures": [{"itemIdentifier": "m-bad"}]})
    );
    let (record, _) = aws
        .store()
        .get_bytes("_reelay/failures/(message)/plan.json")
        .await
        .expect("a failure record for the bad message");
    let record: FailureRecord = serde_json::from_slice(&record).unwrap();
    assert!(record.error.contains("malformed"), "{}", record.error);

    // The job's steps went to the events queue; feed them back as Lambda would.
    let events = aws.queue(&aws.events.url);
    let mut rounds = 0;
    while aws.store().head("exports/l.mp4").await.unwrap().is_none() {
        rounds += 1;
        assert!(rounds <= 40, "the job did not finish through the handler");
        // A short visibility, so a handed-back message comes round again soon.
        let received = events
            .receive(10, Duration::from_secs(3), Duration::from_secs(1))
            .await
            .unwrap();
        let records: Vec<_> = received
            .iter()
            .map(|m| sqs_record(&m.message_id, &m.body, m.receive_count, &aws.events.arn))
            .collect();
        let event = serde_json::from_value(json!({ "Records": records })).unwrap();
        let response = handle_sqs_event(rt.router.clone(), event, 2).await;
        // A duplicate of a task another handler holds is handed back to be
        // retried (never acknowledged, which could lose the task); the
        // retry finds the output and skips. Only those may fail.
        let busy: Vec<&str> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.as_str())
            .collect();
        for id in &busy {
            let m = received.iter().find(|m| m.message_id == *id).unwrap();
            assert!(
                matches!(
                    InternalMessage::parse(&m.body),
                    Some(Ok(InternalMessage::Task(_)))
                ),
                "only a task message may be handed back: {}",
                m.body
            );
        }
        let handles: Vec<_> = received
            .iter()
            .filter(|m| !busy.contains(&m.message_id.as_str()))
            .map(|m| m.handle.clone())
            .collect();
        if !handles.is_empty() {
            events.ack(&handles).await.unwrap();
        }
    }
    let starts = starts_per_task(&aws.journal());
    assert_eq!(starts.len(), 3, "{starts:?}");
    assert!(starts.values().all(|n| *n == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_notification_sent_twice_runs_each_step_once() {
    let aws = Aws::start("dupes", "", true).await;
    put_source(&aws, "sources/m.mp4").await;
    aws.put_job("jobs/d.json", &highlights("sources/m.mp4", "exports/d.mp4"))
        .await;
    // Take the real notifications off the queue and put each back twice.
    let events = aws.queue(&aws.events.url);
    let mut bodies = Vec::new();
    let start = Instant::now();
    // Keys arrive form-urlencoded, as S3 sends them.
    while !bodies.iter().any(|b: &String| b.contains("jobs%2Fd.json")) {
        assert!(start.elapsed() < Duration::from_secs(30), "{bodies:?}");
        for m in events
            .receive(10, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .unwrap()
        {
            events.ack(&[m.handle]).await.unwrap();
            bodies.push(m.body);
        }
    }
    for body in &bodies {
        events.send(body).await.unwrap();
        events.send(body).await.unwrap();
    }
    let rt = aws.runtime("router-dupes");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (rt, stop) = (rt.clone(), stop.clone());
        async move { rt.route(settings(Duration::from_secs(5), 4), stop).await }
    });
    aws.wait_for_object("exports/d.mp4", Duration::from_secs(90))
        .await;
    // Let the duplicates drain.
    let start = Instant::now();
    while aws.queue_counts(&aws.events.url).await != (0, 0) {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.cancel();
    running.await.unwrap();
    let journal = aws.journal();
    let starts = starts_per_task(&journal);
    assert_eq!(starts.len(), 3, "{journal:#?}");
    assert!(starts.values().all(|n| *n == 1), "{starts:?}");
    assert!(
        journal
            .iter()
            .any(|e| e.event == "skip" || e.event == "busy"),
        "the duplicates reached the executor and were turned away"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_reaches_the_dlq_with_a_failure_record() {
    let aws = Aws::start("poison", "", true).await;
    aws.put_job(
        "jobs/bad.json",
        &json!({"version": 1, "source": "sources/m.mp4", "output": "exports/x.mp4",
                "clips": [{"start": 2.0, "end": 1.0}]}),
    )
    .await;
    let rt = aws.runtime("router-poison");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (rt, stop) = (rt.clone(), stop.clone());
        async move { rt.route(settings(Duration::from_secs(5), 2), stop).await }
    });
    let dlq = aws.queue(&aws.events.dlq_url);
    let start = Instant::now();
    let dead = loop {
        let got = dlq
            .receive(1, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .unwrap();
        if let Some(m) = got.into_iter().next() {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "nothing reached the DLQ"
        );
    };
    stop.cancel();
    running.await.unwrap();
    assert!(dead.body.contains("jobs%2Fbad.json"), "{}", dead.body);
    let (bytes, _) = aws
        .store()
        .get_bytes("_reelay/failures/jobs/bad.json/plan.json")
        .await
        .expect("failure record");
    let record: FailureRecord = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record.class, "permanent");
    assert_eq!(record.attempts, MAX_RECEIVE);
    assert!(record.dead_lettered);
    assert!(
        record.field.as_deref().unwrap_or("").contains("clips[0]"),
        "{record:?}"
    );
    assert!(
        aws.queue_counts(&aws.events.url).await == (0, 0),
        "the events queue is clear"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r2_notification_sent_with_send_message_routes_the_job() {
    let aws = Aws::start("r2-media", "", false).await;
    put_source(&aws, "sources/m.mp4").await;
    let job = aws
        .put_job(
            "jobs/r2 job.json",
            &highlights("sources/m.mp4", "exports/r2.mp4"),
        )
        .await;
    let r2 = json!({
        "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
        "action": "PutObject",
        "bucket": "r2-media",
        "object": {"key": "jobs/r2 job.json", "size": job.size, "eTag": job.etag},
        "eventTime": "2026-01-01T00:00:00.000Z"
    });
    aws.queue(&aws.events.url)
        .send(&r2.to_string())
        .await
        .unwrap();
    let rt = aws.runtime("router-r2");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (rt, stop) = (rt.clone(), stop.clone());
        async move { rt.route(settings(Duration::from_secs(5), 2), stop).await }
    });
    let export = aws
        .wait_for_object("exports/r2.mp4", Duration::from_secs(90))
        .await;
    stop.cancel();
    running.await.unwrap();
    let record = AuditRecord::from_metadata(&export.metadata).unwrap();
    assert_eq!(record.manifest.as_deref(), Some("jobs/r2 job.json"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_lasting_over_three_visibility_timeouts_runs_once() {
    let aws = Aws::start("heartbeat", "", false).await;
    put_source(&aws, "sources/m.mp4").await;
    aws.put_job(
        "jobs/hb.json",
        &highlights("sources/m.mp4", "exports/hb.mp4"),
    )
    .await;
    let base = aws.runtime("unused");
    let config = base.config.clone();
    let store = aws.store();
    let plan = planner::plan(
        &store,
        &config,
        Trigger::Upload(&ObjectCreated {
            bucket: "heartbeat".into(),
            key: "jobs/hb.json".into(),
            size: None,
            etag: None,
            version: None,
            sequencer: None,
            time: None,
        }),
    )
    .await
    .unwrap();
    let task = plan.ready[0].clone();
    let visibility = Duration::from_secs(2);
    let delay = Duration::from_secs(7);
    // Two workers on the gpu queue; the task message goes there.
    let gpu: Arc<dyn Queue> = Arc::new(aws.queue(&aws.gpu.url));
    gpu.send(&InternalMessage::Task(task.clone()).to_json())
        .await
        .unwrap();
    let stop = CancellationToken::new();
    let mut workers = Vec::new();
    for w in ["worker-a", "worker-b"] {
        let executor = Arc::new(Executor {
            store: Arc::new(SlowDownloads {
                inner: aws.store(),
                delay,
            }),
            config: config.clone(),
            dispatcher: base.dispatcher().clone(),
            ffmpeg: common::ffmpeg(),
            worker_id: w.into(),
            progress: Arc::new(reelay::runtime::progress::LogProgress),
            journal: Some(Journal::new(aws.journal_path())),
            metrics: Default::default(),
            claim_lease: visibility,
        });
        let router = Arc::new(Router { executor });
        workers.push(tokio::spawn(consume(
            gpu.clone(),
            settings(visibility, 1),
            router,
            stop.clone(),
        )));
    }
    let started = Instant::now();
    let out = aws
        .wait_for_object(&task.output, Duration::from_secs(60))
        .await;
    assert!(
        started.elapsed() > visibility * 3,
        "the task lasted {:?}",
        started.elapsed()
    );
    assert_eq!(out.metadata.get(planner::TASK_FIELD), Some(&task.id));
    // Past another visibility timeout: nobody got the message again.
    tokio::time::sleep(visibility * 2).await;
    stop.cancel();
    for w in workers {
        w.await.unwrap();
    }
    let journal = aws.journal();
    let mine: Vec<&JournalEntry> = journal.iter().filter(|e| e.task == task.id).collect();
    let events: Vec<&str> = mine.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        ["start", "done"],
        "received and run once, never seen by the other worker: {mine:#?}"
    );
    assert_eq!(aws.queue_counts(&aws.gpu.url).await, (0, 0));
    assert_eq!(
        aws.queue_counts(&aws.gpu.dlq_url).await,
        (0, 0),
        "no redelivery reached the DLQ"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconcile_redrives_a_deleted_gpu_task_and_reelay_work_runs_it() {
    // Extract is placed on the gpu queue, so `reelay work` runs it.
    // Jobs only: the default detect rule would put a third task on the gpu queue.
    let aws = Aws::start(
        "reconcile",
        "[placement]\nextract = \"gpu\"\n\n[[rules]]\nmatch = \"jobs/*.json\"\nkind = \"job\"\n",
        true,
    )
    .await;
    let rt = aws.runtime("router-reconcile");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (rt, stop) = (rt.clone(), stop.clone());
        async move { rt.route(settings(Duration::from_secs(5), 2), stop).await }
    });
    put_source(&aws, "sources/m.mp4").await;
    aws.put_job("jobs/r.json", &highlights("sources/m.mp4", "exports/r.mp4"))
        .await;
    // The router sends both extracts to the gpu queue...
    let start = Instant::now();
    while aws.queue_counts(&aws.gpu.url).await.0 < 2 {
        assert!(start.elapsed() < Duration::from_secs(30));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // ...and someone deletes them by hand.
    let gpu = aws.queue(&aws.gpu.url);
    let lost: Vec<Received> = gpu
        .receive(10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(lost.len(), 2);
    let handles: Vec<_> = lost.iter().map(|m| m.handle.clone()).collect();
    gpu.ack(&handles).await.unwrap();
    assert_eq!(aws.queue_counts(&aws.gpu.url).await, (0, 0));

    let dry = aws
        .reelay("dry.log")
        .args(["reconcile", "--bucket", "s3://reconcile", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8(dry.stdout).unwrap();
    assert!(dry.status.success(), "{}", aws.log("dry.log"));
    assert_eq!(text.matches("would backfill").count(), 2, "{text}");
    assert!(text.contains("via reelay-gpu"), "{text}");
    assert!(text.contains("dry run: nothing sent"), "{text}");
    assert_eq!(aws.queue_counts(&aws.gpu.url).await, (0, 0));

    let out = aws
        .reelay("reconcile.log")
        .args(["reconcile", "--bucket", "s3://reconcile", "jobs/"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{}", aws.log("reconcile.log"));
    assert_eq!(text.matches("backfilled").count(), 2, "{text}");
    assert_eq!(aws.queue_counts(&aws.gpu.url).await.0, 2);
    let mut ids: Vec<String> = lost
        .iter()
        .map(|m| match InternalMessage::parse(&m.body) {
            Some(Ok(InternalMessage::Task(t))) => t.id,
            other => panic!("{other:?}"),
        })
        .collect();
    ids.sort();

    // The worker loop runs them; their outputs trigger compile on the events queue.
    let mut work = aws
        .reelay("work.log")
        .args(["work", "--device", "cpu"])
        .spawn()
        .unwrap();
    let export = aws
        .wait_for_object("exports/r.mp4", Duration::from_secs(90))
        .await;
    sigterm(&work);
    let status = wait_exit(&mut work, Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", aws.log("work.log"));
    stop.cancel();
    running.await.unwrap();

    let record = AuditRecord::from_metadata(&export.metadata).unwrap();
    assert!(record.worker.starts_with("router-"), "{}", record.worker);
    let store = aws.store();
    let mut extract_ids = Vec::new();
    for input in &record.inputs {
        let (key, _) = input.rsplit_once('@').unwrap();
        let clip = store.head(key).await.unwrap().unwrap();
        let r = AuditRecord::from_metadata(&clip.metadata).unwrap();
        assert_eq!(r.kind, "extract");
        assert!(r.worker.starts_with("worker-"), "{}", r.worker);
        extract_ids.push(r.task);
    }
    extract_ids.sort();
    assert_eq!(extract_ids, ids, "the re-driven tasks are the deleted ones");

    // Nothing is left to do.
    let out = aws
        .reelay("final.log")
        .args(["reconcile", "--bucket", "s3://reconcile", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("1 upload(s): 1 complete, 0 task(s)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_single_container_job_runs_as_one_gpu_task_on_reelay_work() {
    // Jobs only: the default detect rule would put another task on the gpu queue.
    let aws = Aws::start(
        "single",
        "[[rules]]\nmatch = \"jobs/*.json\"\nkind = \"job\"\n",
        true,
    )
    .await;
    let rt = aws.runtime("router-single");
    let stop = CancellationToken::new();
    let running = tokio::spawn({
        let (rt, stop) = (rt.clone(), stop.clone());
        async move { rt.route(settings(Duration::from_secs(5), 2), stop).await }
    });
    let mut work = aws
        .reelay("work.log")
        .args(["work", "--device", "cpu"])
        .spawn()
        .unwrap();
    put_source(&aws, "sources/m.mp4").await;
    aws.put_job(
        "jobs/s.json",
        &json!({"version": 1, "source": "sources/m.mp4", "output": "exports/s.mp4",
                "placement": "single-container",
                "clips": [{"start": 0.5, "end": 1.5, "caption": "Plain"},
                          {"start": 1.5, "end": 2.5,
                           "framing": {"crop": {"x": 120, "y": 60, "w": 64, "h": 36},
                                       "model": "realesr-animevideov3", "size": "320x180"},
                           "overlay": {"spotlight": {"keyframes": [{"t": 0, "x": 160, "y": 90, "rx": 60, "ry": 40}]}}}]}),
    )
    .await;
    let export = aws
        .wait_for_object("exports/s.mp4", Duration::from_secs(90))
        .await;
    sigterm(&work);
    let status = wait_exit(&mut work, Duration::from_secs(30));
    assert!(status.success(), "{status}: {}", aws.log("work.log"));
    stop.cancel();
    running.await.unwrap();

    let record = AuditRecord::from_metadata(&export.metadata).unwrap();
    assert_eq!(record.kind, "export");
    assert!(record.worker.starts_with("worker-"), "{}", record.worker);
    assert_eq!(record.inputs.len(), 1, "the source only");
    assert_eq!(export.metadata["reelay-clips"], "2");
    assert_eq!(export.metadata["reelay-framed-clips"], "1");
    assert_eq!(export.metadata["reelay-model-loads"], "1");
    let store = aws.store();
    assert!(
        store.list("work/").await.unwrap().is_empty(),
        "no intermediate objects"
    );
    let duration = probe_duration(&store, "exports/s.mp4", aws.dir.path()).await;
    assert!((duration - 2.0).abs() < 0.1, "{duration}");
}
