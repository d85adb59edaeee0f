//! The S3 and SQS adapters against a real S3+SQS-compatible server (moto),
//! including real bucket notifications parsed by `parse_message`.
//!
//! Needs `make tools` (moto in `.tools/venv`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::moto::MotoServer;
use rand::RngCore;
use reelay::adapters::s3::{S3Options, S3Store};
use reelay::adapters::sqs::SqsQueue;
use reelay::events::{Notification, ObjectCreated, parse_message};
use reelay::ports::{
    Metadata, ObjectMeta, ObjectStore, PutCondition, PutOutcome, Queue, QueueError, ReceiptHandle,
};
use reelay::runtime::lease as heartbeat;
use sha2::{Digest, Sha256};

const NO_WAIT: Duration = Duration::ZERO;
const SHORT_WAIT: Duration = Duration::from_secs(1);

fn store(moto: &MotoServer, bucket: &str, opts: S3Options) -> S3Store {
    let opts = S3Options {
        path_style: true,
        ..opts
    };
    S3Store::from_sdk_config(&moto.sdk_config(), bucket, opts).expect("store")
}

fn queue(moto: &MotoServer, url: &str) -> SqsQueue {
    SqsQueue::from_sdk_config(&moto.sdk_config(), url)
}

fn meta(pairs: &[(&str, &str)]) -> Metadata {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(bytes))
}

/// Receives until `n` messages arrived or `tries` polls came back empty.
async fn receive_n(q: &SqsQueue, n: usize, visibility: Duration) -> Vec<reelay::ports::Received> {
    let mut got = Vec::new();
    let mut empty = 0;
    while got.len() < n && empty < 5 {
        let batch = q.receive(10, visibility, SHORT_WAIT).await.unwrap();
        if batch.is_empty() {
            empty += 1;
        }
        got.extend(batch);
    }
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_put_get_head_list_delete_with_metadata() {
    let moto = MotoServer::start();
    moto.create_bucket("media").await;
    let s = store(
        &moto,
        "media",
        S3Options {
            list_page_size: 2,
            ..S3Options::default()
        },
    );
    assert_eq!(s.describe(), "s3://media");

    let md = meta(&[
        ("reelay-task", "t-123"),
        ("reelay-inputs", "sources/a b.mp4@abc"),
    ]);
    let body = br#"{"clips":[]}"#;
    let out = s
        .put_bytes(
            "jobs/j1.json",
            body,
            "application/json",
            &md,
            PutCondition::Overwrite,
        )
        .await
        .unwrap();
    let PutOutcome::Written(written) = out else {
        panic!("{out:?}")
    };
    assert_eq!(written.etag, md5_hex(body), "etag is quoteless hex md5");
    assert_eq!(written.size, body.len() as u64);

    let head = s.head("jobs/j1.json").await.unwrap().expect("exists");
    assert_eq!(head.etag, written.etag);
    assert_eq!(head.size, body.len() as u64);
    assert_eq!(head.metadata, md, "metadata round-trips through HeadObject");
    assert_eq!(head.content_type.as_deref(), Some("application/json"));
    assert!(head.last_modified > 1_600_000_000, "{}", head.last_modified);

    let (bytes, got) = s.get_bytes("jobs/j1.json").await.unwrap();
    assert_eq!(bytes, body);
    assert_eq!(got.metadata, md);
    assert_eq!(got.etag, written.etag);

    // put_file + get_to_file
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("clip.mp4");
    std::fs::write(&src, b"not really a video").unwrap();
    let put = s
        .put_file(
            "out/clip.mp4",
            &src,
            "video/mp4",
            &meta(&[("reelay-kind", "extract")]),
        )
        .await
        .unwrap();
    assert_eq!(put.etag, md5_hex(b"not really a video"));
    let dest = dir.path().join("down.mp4");
    let got = s.get_to_file("out/clip.mp4", &dest).await.unwrap();
    assert_eq!(std::fs::read(&dest).unwrap(), b"not really a video");
    assert_eq!(got.content_type.as_deref(), Some("video/mp4"));
    assert_eq!(
        got.metadata.get("reelay-kind").map(String::as_str),
        Some("extract")
    );

    // list: paginated (2 per page here), in key order, prefix-scoped
    for k in ["out/e", "out/b", "out/d", "out/a"] {
        s.put_bytes(
            k,
            k.as_bytes(),
            "text/plain",
            &Metadata::new(),
            PutCondition::Overwrite,
        )
        .await
        .unwrap();
    }
    let listed: Vec<String> = s
        .list("out/")
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.key)
        .collect();
    assert_eq!(listed, ["out/a", "out/b", "out/clip.mp4", "out/d", "out/e"]);
    let all = s.list("").await.unwrap();
    assert_eq!(all.len(), 6);
    let a = all.iter().find(|m| m.key == "out/a").unwrap();
    assert_eq!((a.size, a.etag.as_str()), (5, md5_hex(b"out/a").as_str()));

    // missing keys
    assert_eq!(s.head("nope").await.unwrap(), None);
    let err = s.get_bytes("nope").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
    let err = s
        .get_to_file("nope", &dir.path().join("x"))
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");

    // delete, twice
    s.delete("out/a").await.unwrap();
    s.delete("out/a").await.unwrap();
    assert_eq!(s.head("out/a").await.unwrap(), None);

    // metadata S3 cannot hold is refused before any request
    let err = s
        .put_bytes(
            "x",
            b"",
            "text/plain",
            &meta(&[("k", "naïve")]),
            PutCondition::Overwrite,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("US-ASCII"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_put_first_writer_wins() {
    let moto = MotoServer::start();
    moto.create_bucket("media").await;
    let s = Arc::new(store(&moto, "media", S3Options::default()));
    let md = Metadata::new();

    let first = s
        .put_bytes(
            "claims/t1",
            b"first",
            "text/plain",
            &md,
            PutCondition::IfAbsent,
        )
        .await
        .unwrap();
    assert!(matches!(first, PutOutcome::Written(_)), "{first:?}");
    let second = s
        .put_bytes(
            "claims/t1",
            b"second",
            "text/plain",
            &md,
            PutCondition::IfAbsent,
        )
        .await
        .unwrap();
    assert_eq!(second, PutOutcome::AlreadyExists);
    assert_eq!(s.get_bytes("claims/t1").await.unwrap().0, b"first");

    // Overwrite still overwrites.
    s.put_bytes(
        "claims/t1",
        b"third",
        "text/plain",
        &md,
        PutCondition::Overwrite,
    )
    .await
    .unwrap();
    assert_eq!(s.get_bytes("claims/t1").await.unwrap().0, b"third");

    // A race: exactly one of many writers wins.
    let racers: Vec<_> = (0..8)
        .map(|i| {
            let s = s.clone();
            tokio::spawn(async move {
                s.put_bytes(
                    "claims/race",
                    format!("writer {i}").as_bytes(),
                    "text/plain",
                    &Metadata::new(),
                    PutCondition::IfAbsent,
                )
                .await
                .unwrap()
            })
        })
        .collect();
    let mut winners = 0;
    for r in racers {
        if matches!(r.await.unwrap(), PutOutcome::Written(_)) {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_upload_and_streaming_download_of_a_large_file() {
    let moto = MotoServer::start();
    moto.create_bucket("media").await;
    let s = store(&moto, "media", S3Options::default());

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.mp4");
    let size = 21 * 1024 * 1024 + 12_345; // over the 16 MiB threshold: 3 parts of 8 MiB
    let mut data = vec![0u8; size];
    rand::rng().fill_bytes(&mut data);
    std::fs::write(&src, &data).unwrap();
    let want = hex::encode(Sha256::digest(&data));
    drop(data);

    let md = meta(&[("reelay-kind", "compile")]);
    let put = s
        .put_file("exports/big.mp4", &src, "video/mp4", &md)
        .await
        .unwrap();
    assert!(
        put.etag.ends_with("-3"),
        "multipart etag, 3 parts: {}",
        put.etag
    );
    assert!(!put.etag.contains('"'));
    assert_eq!(put.size, size as u64);

    let head = s.head("exports/big.mp4").await.unwrap().unwrap();
    assert_eq!(head.size, size as u64);
    assert_eq!(head.etag, put.etag);
    assert_eq!(head.metadata, md);
    assert_eq!(head.content_type.as_deref(), Some("video/mp4"));

    let dest = dir.path().join("down.mp4");
    let got = s.get_to_file("exports/big.mp4", &dest).await.unwrap();
    assert_eq!(got.size, size as u64);
    let down = std::fs::read(&dest).unwrap();
    assert_eq!(hex::encode(Sha256::digest(&down)), want);

    // No upload left open.
    let open = moto
        .s3()
        .list_multipart_uploads()
        .bucket("media")
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "{:?}", open.uploads());

    // get_bytes refuses what it should not hold in memory.
    let err = s.get_bytes("exports/big.mp4").await;
    assert!(err.is_ok(), "64 MiB cap by default");
    let small_cap = store(
        &moto,
        "media",
        S3Options {
            max_in_memory: 1024 * 1024,
            ..S3Options::default()
        },
    );
    let err = small_cap.get_bytes("exports/big.mp4").await.unwrap_err();
    assert!(err.to_string().contains("into memory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn awkward_keys_round_trip_and_arrive_through_real_notifications() {
    let moto = MotoServer::start();
    let q = moto.reelay_layout("media", "events", 5).await;
    let s = store(&moto, "media", S3Options::default());
    let events = queue(&moto, &q.url);

    let keys = [
        "sources/match day.mp4",
        "sources/a+b=c&d.mp4",
        "sources/100% real.mp4",
        "sources/ünïcödé/日本語 ファイル.mov",
        "sources/-leading dash.mp4",
        "sources/emoji 🎬.mp4",
        "jobs/export one.json",
        "jobs/%2F not a slash.json",
    ];
    let mut etags = std::collections::BTreeMap::new();
    for key in keys {
        let PutOutcome::Written(m) = s
            .put_bytes(
                key,
                key.as_bytes(),
                "application/octet-stream",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
            .unwrap()
        else {
            unreachable!()
        };
        etags.insert(key.to_string(), m.etag);
        // round trip by name
        assert_eq!(s.get_bytes(key).await.unwrap().0, key.as_bytes(), "{key}");
    }
    // Outside the notified prefixes: no notification.
    s.put_bytes(
        "exports/done.mp4",
        b"x",
        "video/mp4",
        &Metadata::new(),
        PutCondition::Overwrite,
    )
    .await
    .unwrap();

    let messages = receive_n(&events, keys.len() + 1, Duration::from_secs(30)).await;
    let mut created: Vec<ObjectCreated> = Vec::new();
    let mut ignored = Vec::new();
    for m in &messages {
        for n in parse_message(&m.body).unwrap_or_else(|e| panic!("{e}: {}", m.body)) {
            match n {
                Notification::Created(c) => created.push(c),
                Notification::Ignored { reason } => ignored.push(reason),
            }
        }
    }
    events
        .ack(
            &messages
                .iter()
                .map(|m| m.handle.clone())
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();

    assert!(
        ignored.iter().any(|r| r.contains("s3:TestEvent")),
        "configuring notifications sends a test event: {ignored:?}"
    );
    let got: BTreeSet<&str> = created.iter().map(|c| c.key.as_str()).collect();
    let want: BTreeSet<&str> = keys.iter().copied().collect();
    assert_eq!(
        got,
        want,
        "raw bodies: {:#?}",
        messages.iter().map(|m| &m.body).collect::<Vec<_>>()
    );
    for c in &created {
        assert_eq!(c.bucket, "media");
        assert_eq!(c.size, Some(c.key.len() as u64), "{}", c.key);
        assert_eq!(c.etag.as_ref(), etags.get(&c.key), "{}", c.key);
        assert!(c.time.is_some());
        // The decoded key names the object.
        assert!(s.head(&c.key).await.unwrap().is_some(), "{}", c.key);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqs_send_receive_ack_in_batches() {
    let moto = MotoServer::start();
    let (url, _) = moto.create_queue("work", &[]).await;
    let q = queue(&moto, &url);
    assert_eq!(q.name(), "work");

    for i in 0..12 {
        q.send(&format!("message {i}")).await.unwrap();
    }
    let got = receive_n(&q, 12, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 12);
    assert!(got.iter().all(|m| m.receive_count == 1));
    let bodies: BTreeSet<String> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies.len(), 12);

    // One ack for all twelve: two DeleteMessageBatch calls.
    q.ack(&got.iter().map(|m| m.handle.clone()).collect::<Vec<_>>())
        .await
        .unwrap();
    assert!(
        q.receive(10, Duration::from_secs(30), SHORT_WAIT)
            .await
            .unwrap()
            .is_empty()
    );

    // A handle that never was: reported, not swallowed.
    let err = q.ack(&[ReceiptHandle("bogus".into())]).await;
    assert!(err.is_err(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extend_keeps_a_message_hidden_past_its_original_timeout() {
    let moto = MotoServer::start();
    let (url, _) = moto.create_queue("work", &[]).await;
    let q = queue(&moto, &url);
    q.send("long task").await.unwrap();

    let first = q
        .receive(1, Duration::from_secs(2), SHORT_WAIT)
        .await
        .unwrap();
    assert_eq!(first.len(), 1);
    q.extend(&first[0].handle, Duration::from_secs(6))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        q.receive(1, Duration::from_secs(2), NO_WAIT)
            .await
            .unwrap()
            .is_empty(),
        "still hidden after the original 2 s"
    );

    // Handing it back (visibility zero) makes it visible at once, counted twice.
    q.extend(&first[0].handle, Duration::ZERO).await.unwrap();
    let again = q
        .receive(1, Duration::from_secs(30), SHORT_WAIT)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, "long task");
    assert_eq!(again[0].receive_count, 2);

    // A deleted message's handle is stale.
    q.ack(&[again[0].handle.clone()]).await.unwrap();
    let err = q
        .extend(&again[0].handle, Duration::from_secs(10))
        .await
        .unwrap_err();
    assert!(matches!(err, QueueError::StaleHandle), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_over_sqs_keeps_ownership() {
    let moto = MotoServer::start();
    let (url, _) = moto.create_queue("work", &[]).await;
    let q = Arc::new(queue(&moto, &url));
    q.send("gpu task").await.unwrap();
    let visibility = Duration::from_secs(3);
    let m = q
        .receive(1, visibility, SHORT_WAIT)
        .await
        .unwrap()
        .remove(0);

    let guard = heartbeat::start(q.clone(), m.handle.clone(), visibility);
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert!(!guard.lost().is_cancelled(), "{:?}", guard.failure());
    assert!(q.receive(1, visibility, NO_WAIT).await.unwrap().is_empty());
    guard.stop().await;

    q.ack(std::slice::from_ref(&m.handle)).await.unwrap();
    // After the message is gone the next beat fails and the task is told.
    let guard = heartbeat::start(q.clone(), m.handle.clone(), visibility);
    tokio::time::timeout(Duration::from_secs(5), guard.lost().cancelled())
        .await
        .expect("lost after the message was deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_received_max_receive_count_times_lands_in_the_dlq() {
    let moto = MotoServer::start();
    let qs = moto
        .create_queue_with_dlq("events", 2, Duration::from_secs(30))
        .await;
    let events = queue(&moto, &qs.url);
    let dlq = queue(&moto, &qs.dlq_url);
    events.send("poison").await.unwrap();

    for attempt in 1..=2u32 {
        let got = events
            .receive(1, Duration::from_secs(30), SHORT_WAIT)
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        // The task failed: hand it back at once instead of waiting 30 s.
        events.extend(&got[0].handle, Duration::ZERO).await.unwrap();
    }
    assert!(
        events
            .receive(1, Duration::from_secs(30), SHORT_WAIT)
            .await
            .unwrap()
            .is_empty(),
        "the third receive moves it to the DLQ instead"
    );
    let dead = dlq
        .receive(1, Duration::from_secs(30), SHORT_WAIT)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
}

/// A turn-away (another worker holds the task's claim) is not a failure:
/// requeued as often as it takes, the message never reaches the DLQ,
/// though SQS counts every receive (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requeued_message_spends_no_receive_and_never_reaches_the_dlq() {
    let moto = MotoServer::start();
    let qs = moto
        .create_queue_with_dlq("events", 2, Duration::from_secs(30))
        .await;
    let events = queue(&moto, &qs.url);
    let dlq = queue(&moto, &qs.dlq_url);
    events.send("busy task").await.unwrap();
    for turn in 1..=4 {
        let got = receive_n(&events, 1, Duration::from_secs(30)).await;
        assert_eq!(got.len(), 1, "turn {turn}");
        assert_eq!(got[0].body, "busy task");
        assert_eq!(got[0].receive_count, 1, "turn {turn}: a fresh copy");
        events.requeue(&got[0], Duration::ZERO).await.unwrap();
    }
    assert!(
        dlq.receive(1, Duration::from_secs(30), SHORT_WAIT)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_r2_notification_forwarded_with_send_message_parses() {
    let moto = MotoServer::start();
    let (url, _) = moto.create_queue("events", &[]).await;
    let q = queue(&moto, &url);
    let body = include_str!("fixtures/events/r2_complete_multipart.json");
    q.send_with_attributes(body, &[("reelay-kind", "r2-notification")])
        .await
        .unwrap();

    // The attribute is on the message (read with the raw client).
    let raw = moto
        .sqs()
        .receive_message()
        .queue_url(&url)
        .message_attribute_names("All")
        .visibility_timeout(0)
        .wait_time_seconds(1)
        .send()
        .await
        .unwrap();
    let attrs = raw.messages()[0].message_attributes().unwrap();
    assert_eq!(attrs["reelay-kind"].string_value(), Some("r2-notification"));

    let got = receive_n(&q, 1, Duration::from_secs(30)).await;
    let parsed = parse_message(&got[0].body).unwrap();
    assert_eq!(
        parsed,
        vec![Notification::Created(ObjectCreated {
            bucket: "reelay-media".into(),
            key: "sources/café/long take.mov".into(),
            size: Some(734_003_200),
            etag: Some("8a3c1e2b4d5f60718293a4b5c6d7e8f9-88".into()),
            version: None,
            sequencer: None,
            time: Some("2025-03-04T19:40:00.000Z".into()),
        })]
    );
    q.ack(&[got[0].handle.clone()]).await.unwrap();
}

/// Fails `UploadPart` for one part number, as a dropped connection would.
#[derive(Debug)]
struct FailPart(i32);

impl aws_sdk_s3::config::Intercept for FailPart {
    fn name(&self) -> &'static str {
        "FailPart"
    }

    fn read_before_execution(
        &self,
        context: &aws_sdk_s3::config::interceptors::BeforeSerializationInterceptorContextRef<'_>,
        _cfg: &mut aws_sdk_s3::config::ConfigBag,
    ) -> Result<(), aws_sdk_s3::error::BoxError> {
        let input = context
            .input()
            .downcast_ref::<aws_sdk_s3::operation::upload_part::UploadPartInput>();
        if input.and_then(|i| i.part_number()) == Some(self.0) {
            return Err(format!("injected failure of part {}", self.0).into());
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_multipart_upload_is_aborted_and_publishes_nothing() {
    let moto = MotoServer::start();
    moto.create_bucket("media").await;
    let conf = aws_sdk_s3::config::Builder::from(&moto.sdk_config())
        .force_path_style(true)
        .interceptor(FailPart(2))
        .build();
    let s = S3Store::new(
        aws_sdk_s3::Client::from_conf(conf),
        "media",
        S3Options::default(),
    )
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("big.mp4");
    std::fs::write(&src, vec![7u8; 17 * 1024 * 1024]).unwrap();
    let err = s
        .put_file("exports/big.mp4", &src, "video/mp4", &Metadata::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("UploadPart 2"), "{err}");

    assert_eq!(s.head("exports/big.mp4").await.unwrap(), None);
    let open = moto
        .s3()
        .list_multipart_uploads()
        .bucket("media")
        .send()
        .await
        .unwrap();
    assert!(open.uploads().is_empty(), "aborted: {:?}", open.uploads());
}

/// A download names the version: `If-Match` on GetObject, so a replaced
/// object is `Changed` and nothing of the new one is downloaded (issue 15).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_asks_for_the_named_version_with_if_match() {
    let moto = MotoServer::start();
    moto.create_bucket("media").await;
    let s = store(&moto, "media", S3Options::default());
    let put = |body: &'static [u8]| {
        let s = s.clone();
        async move {
            match s
                .put_bytes(
                    "sources/a.mp4",
                    body,
                    "video/mp4",
                    &Metadata::new(),
                    PutCondition::Overwrite,
                )
                .await
                .unwrap()
            {
                PutOutcome::Written(m) => m,
                other => panic!("{other:?}"),
            }
        }
    };
    let old = put(b"first upload").await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a.mp4");
    let got = s
        .get_version_to_file("sources/a.mp4", &old.etag, &dest)
        .await
        .unwrap();
    assert_eq!(got.etag, old.etag);
    assert_eq!(std::fs::read(&dest).unwrap(), b"first upload");
    std::fs::remove_file(&dest).unwrap();
    let new = put(b"second upload, replacing the first").await;
    let err = s
        .get_version_to_file("sources/a.mp4", &old.etag, &dest)
        .await
        .unwrap_err();
    assert!(err.is_changed(), "{err}");
    assert!(err.to_string().contains("sources/a.mp4"), "{err}");
    assert!(!dest.exists(), "nothing of the new version is downloaded");
    s.get_version_to_file("sources/a.mp4", &new.etag, &dest)
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        b"second upload, replacing the first"
    );
}

/// The bucket, with a gate on versioned downloads: the test replaces the
/// object while the step waits at its download, then lets it go on, and
/// keeps what the bucket answered.
struct GatedDownloads {
    inner: S3Store,
    reached: tokio::sync::Notify,
    go: tokio::sync::Notify,
    answers: std::sync::Mutex<Vec<String>>,
}

#[async_trait::async_trait]
impl ObjectStore for GatedDownloads {
    fn describe(&self) -> String {
        self.inner.describe()
    }
    async fn head(&self, key: &str) -> reelay::ports::store::StoreResult<Option<ObjectMeta>> {
        self.inner.head(key).await
    }
    async fn get_to_file(
        &self,
        key: &str,
        dest: &std::path::Path,
    ) -> reelay::ports::store::StoreResult<ObjectMeta> {
        self.inner.get_to_file(key, dest).await
    }
    async fn get_version_to_file(
        &self,
        key: &str,
        etag: &str,
        dest: &std::path::Path,
    ) -> reelay::ports::store::StoreResult<ObjectMeta> {
        self.reached.notify_one();
        self.go.notified().await;
        let got = self.inner.get_version_to_file(key, etag, dest).await;
        let answer = match &got {
            Ok(m) => format!("ok {}", m.etag),
            Err(e) if e.is_changed() => "changed".to_string(),
            Err(e) => format!("error {e}"),
        };
        self.answers.lock().unwrap().push(answer);
        got
    }
    async fn get_bytes(
        &self,
        key: &str,
    ) -> reelay::ports::store::StoreResult<(Vec<u8>, ObjectMeta)> {
        self.inner.get_bytes(key).await
    }
    async fn put_file(
        &self,
        key: &str,
        src: &std::path::Path,
        content_type: &str,
        metadata: &Metadata,
    ) -> reelay::ports::store::StoreResult<ObjectMeta> {
        self.inner.put_file(key, src, content_type, metadata).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        bytes: &[u8],
        content_type: &str,
        metadata: &Metadata,
        condition: PutCondition,
    ) -> reelay::ports::store::StoreResult<PutOutcome> {
        self.inner
            .put_bytes(key, bytes, content_type, metadata, condition)
            .await
    }
    async fn list(&self, prefix: &str) -> reelay::ports::store::StoreResult<Vec<ObjectMeta>> {
        self.inner.list(prefix).await
    }
    async fn delete(&self, key: &str) -> reelay::ports::store::StoreResult<()> {
        self.inner.delete(key).await
    }
}

/// An upload replaced between planning and the step's download: the step
/// gets a 412 for the old version, gives way (superseded, not failed,
/// nothing published) and the job is planned again on the new upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_replaced_before_the_download_is_superseded_not_failed() {
    use reelay::pipeline::message::InternalMessage;
    use reelay::pipeline::planner::{Trigger, plan};
    use reelay::runtime::executor::{Executor, Outcome};
    let aws = common::aws::Aws::start("replaced", "", false).await;
    let base = aws.runtime("unused");
    let gated = Arc::new(GatedDownloads {
        inner: aws.store(),
        reached: tokio::sync::Notify::new(),
        go: tokio::sync::Notify::new(),
        answers: Default::default(),
    });
    let executor = Executor {
        store: gated.clone(),
        config: base.config.clone(),
        dispatcher: base.dispatcher().clone(),
        ffmpeg: common::ffmpeg(),
        worker_id: "replaced-worker".into(),
        progress: Arc::new(reelay::runtime::progress::LogProgress),
        journal: None,
        metrics: Default::default(),
        claim_lease: Duration::from_secs(30),
    };
    let (first, second) = (aws.dir.path().join("a.mp4"), aws.dir.path().join("b.mp4"));
    common::make_video(&first, 1.0, "160x120", 10, false);
    common::make_video(&second, 1.5, "160x120", 10, false);
    let old = aws.put_file("sources/r.mp4", &first).await;
    let job = serde_json::json!({"version": 1, "source": "sources/r.mp4",
        "output": "exports/r.mp4", "clips": [{"start": 0.0, "end": 0.5}]});
    aws.put_job("jobs/r.json", &job).await;
    let upload = ObjectCreated::key_only(&aws.bucket, "jobs/r.json");
    let task = plan(&aws.store(), &aws.config(), Trigger::Upload(&upload))
        .await
        .unwrap()
        .ready[0]
        .clone();
    assert_eq!(task.inputs, [old.reference()]);

    let step = tokio::spawn({
        let task = task.clone();
        async move {
            executor
                .handle(&task, tokio_util::sync::CancellationToken::new())
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(30), gated.reached.notified())
        .await
        .expect("the step reached its download");
    let new = aws.put_file("sources/r.mp4", &second).await;
    assert_ne!(new.etag, old.etag);
    gated.go.notify_one();
    let outcome = step.await.unwrap().expect("superseded, not failed");
    match &outcome {
        Outcome::Superseded { reason } => assert!(reason.contains("sources/r.mp4"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(*gated.answers.lock().unwrap(), ["changed"], "If-Match");
    let store = aws.store();
    assert_eq!(store.head(&task.output).await.unwrap(), None);
    assert!(store.list("_reelay/failures/").await.unwrap().is_empty());
    // The job is planned again, on the new upload.
    let events = queue(&aws.moto, &aws.events.url);
    let sent = receive_n(&events, 1, Duration::from_secs(30)).await;
    let replanned: Vec<_> = sent
        .iter()
        .filter_map(|m| match InternalMessage::parse(&m.body) {
            Some(Ok(InternalMessage::Task(t))) => Some(t.inputs),
            _ => None,
        })
        .collect();
    assert_eq!(replanned, [vec![new.reference()]]);
}
