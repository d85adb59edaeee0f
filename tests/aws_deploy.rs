//! What a deployed stack needs from reelay (issue 16), against moto: a failed
//! Lambda message comes back after its backoff, not the queue's hour-long
//! visibility; a notification for a bucket that is not reelay's own is refused
//! with a failure record naming both.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::aws::{Aws, Layout};
use reelay::audit::failure::FailureRecord;
use reelay::ports::store::ObjectStore;
use reelay::ports::{Queue, Received};
use reelay::runtime::lambda::{handle_sqs_event, handle_sqs_event_with_backoff};
use serde_json::json;

/// Lambda's queue visibility on the stack (6 x the function's timeout).
const STACK_VISIBILITY: Duration = Duration::from_secs(3600);

fn sqs_event(m: &Received, queue_arn: &str) -> aws_lambda_events::event::sqs::SqsEvent {
    serde_json::from_value(json!({"Records": [{
        "messageId": m.message_id,
        "receiptHandle": m.handle.0,
        "body": m.body,
        "attributes": {"ApproximateReceiveCount": m.receive_count.to_string()},
        "messageAttributes": {},
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": "us-east-1"
    }]}))
    .unwrap()
}

/// Receives one message as the event source mapping does: hidden for the
/// stack's full visibility timeout.
async fn receive_one(queue: &dyn Queue) -> Received {
    let start = Instant::now();
    loop {
        let got = queue
            .receive(1, STACK_VISIBILITY, Duration::from_secs(1))
            .await
            .unwrap();
        if let Some(m) = got.into_iter().next() {
            return m;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no message");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_lambda_message_comes_back_after_its_backoff_not_the_queue_visibility() {
    let aws = Aws::start_with(
        "backoff",
        Layout {
            notify: false,
            max_receive: 5,
            ..Layout::default()
        },
    )
    .await;
    let rt = aws.runtime("lambda-backoff");
    let events = Arc::new(aws.queue(&aws.events.url));
    events
        .send(r#"{"type": "reelay.task", "bogus": 1}"#)
        .await
        .unwrap();

    // Without the backoff the message stays hidden for the whole hour.
    let first = receive_one(events.as_ref()).await;
    let response = handle_sqs_event(rt.router.clone(), sqs_event(&first, &aws.events.arn), 1).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    let again = events
        .receive(1, STACK_VISIBILITY, Duration::from_secs(3))
        .await
        .unwrap();
    assert!(
        again.is_empty(),
        "visible again without a backoff: {again:?}"
    );
    // Hand it back to run the same message through the Lambda's handler.
    events.extend(&first.handle, Duration::ZERO).await.unwrap();

    let second = receive_one(events.as_ref()).await;
    assert_eq!(second.receive_count, 2);
    let started = Instant::now();
    let response = handle_sqs_event_with_backoff(
        rt.router.clone(),
        sqs_event(&second, &aws.events.arn),
        1,
        events.clone() as Arc<dyn Queue>,
    )
    .await;
    assert_eq!(
        response.batch_item_failures[0].item_identifier,
        second.message_id
    );
    let backoff = rt.router.backoff(2);
    assert!(backoff < Duration::from_secs(60), "{backoff:?}");
    let third = receive_one(events.as_ref()).await;
    assert_eq!(third.message_id, second.message_id);
    assert_eq!(third.receive_count, 3);
    let waited = started.elapsed();
    assert!(
        waited >= backoff.saturating_sub(Duration::from_millis(500))
            && waited < Duration::from_secs(30),
        "came back after {waited:?}, backoff {backoff:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_for_another_bucket_is_refused_with_a_record_naming_both() {
    let aws = Aws::start("own-media", "", false).await;
    let rt = aws.runtime("router-own");
    // An R2 notification (as the Cloudflare bridge forwards it) for a bucket
    // that shares the queue but is not reelay's.
    let body = json!({
        "account": "3f4b7e3dcab231cbfdaa90a6a28bd548",
        "action": "PutObject",
        "bucket": "someone-elses-media",
        "object": {"key": "jobs/x.json", "size": 120, "eTag": "e0c1f5f8c0b3b4a0f1c2d3e4f5a6b7c8"},
        "eventTime": "2026-01-01T00:00:00.000Z"
    })
    .to_string();
    let err = rt
        .router
        .handle_body(&body, 1, tokio_util::sync::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        err.contains("someone-elses-media") && err.contains("own-media"),
        "{err}"
    );
    let store = aws.store();
    let records = store.list("_reelay/failures/").await.unwrap();
    assert_eq!(records.len(), 1, "{records:?}");
    let (bytes, _) = store.get_bytes(&records[0].key).await.unwrap();
    let record: FailureRecord = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(record.object, "jobs/x.json");
    assert_eq!(record.field.as_deref(), Some("bucket"));
    assert_eq!(record.class, "permanent");
    assert!(
        record.error.contains("`someone-elses-media`") && record.error.contains("`own-media`"),
        "{}",
        record.error
    );
    // Its own bucket's notification still goes through (nothing to plan here).
    let own = body.replace("someone-elses-media", "own-media");
    let result = rt
        .router
        .handle_body(&own, 1, tokio_util::sync::CancellationToken::new())
        .await;
    assert!(
        result
            .as_ref()
            .err()
            .is_none_or(|e| !e.contains("works on bucket")),
        "{result:?}"
    );
}

/// A turn-away by a live claim is not a failure in the Lambda either (issue
/// 15): SQS counts every receive, so failing the batch item would bring the
/// task nearer the DLQ at each turn-away. Turned away three times with a
/// DLQ after two receives, the task still runs, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_turn_away_in_the_lambda_spends_no_receive_and_the_task_runs_once() {
    use reelay::pipeline::message::InternalMessage;
    use reelay::pipeline::planner::{Trigger, plan};
    use reelay::ports::store::{Metadata, PutCondition};
    let aws = Aws::start_with(
        "busy-lambda",
        Layout {
            notify: false,
            max_receive: 2,
            ..Layout::default()
        },
    )
    .await;
    let rt = aws.runtime("lambda-busy");
    let store = aws.store();
    let video = aws.dir.path().join("v.mp4");
    common::make_video(&video, 2.0, "160x120", 10, false);
    aws.put_file("sources/v.mp4", &video).await;
    let job = json!({"version": 1, "source": "sources/v.mp4", "output": "exports/v.mp4",
                     "clips": [{"start": 0.0, "end": 1.0}]});
    aws.put_job("jobs/v.json", &job).await;
    let upload = reelay::events::ObjectCreated::key_only(&aws.bucket, "jobs/v.json");
    let task = plan(&store, &aws.config(), Trigger::Upload(&upload))
        .await
        .unwrap()
        .ready[0]
        .clone();
    let claim_key = format!(
        "{}{}.json",
        reelay::runtime::executor::CLAIMS_PREFIX,
        task.id
    );
    // Another worker's live claim, as a running worker keeps it.
    let hold = |secs: u64| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        json!({"worker": "other-worker", "expires_at": now + secs, "token": "t"}).to_string()
    };
    let events = Arc::new(aws.queue(&aws.events.url));
    events
        .send(&InternalMessage::Task(task.clone()).to_json())
        .await
        .unwrap();
    for turn in 1..=3 {
        let m = receive_one(events.as_ref()).await;
        assert_eq!(m.receive_count, 1, "turn {turn}: a fresh copy each time");
        store
            .put_bytes(
                &claim_key,
                hold(3).as_bytes(),
                "application/json",
                &Metadata::new(),
                PutCondition::Overwrite,
            )
            .await
            .unwrap();
        let response = handle_sqs_event_with_backoff(
            rt.router.clone(),
            sqs_event(&m, &aws.events.arn),
            1,
            events.clone() as Arc<dyn Queue>,
        )
        .await;
        assert!(
            response.batch_item_failures.is_empty(),
            "turn {turn}: a turn-away was reported as a failure"
        );
        // Lambda deletes what the response does not name.
        events.ack(std::slice::from_ref(&m.handle)).await.unwrap();
    }
    // The other worker is gone; its claim with it.
    store.delete(&claim_key).await.unwrap();
    let m = receive_one(events.as_ref()).await;
    assert_eq!(m.receive_count, 1);
    assert_eq!(
        InternalMessage::parse(&m.body).unwrap().unwrap(),
        InternalMessage::Task(task.clone())
    );
    let response = handle_sqs_event_with_backoff(
        rt.router.clone(),
        sqs_event(&m, &aws.events.arn),
        1,
        events.clone() as Arc<dyn Queue>,
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(store.head(&task.output).await.unwrap().is_some());
    let journal = aws.journal();
    let count = |event: &str| {
        journal
            .iter()
            .filter(|e| e.task == task.id && e.event == event)
            .count()
    };
    assert_eq!((count("busy"), count("start"), count("done")), (3, 1, 1));
    let dead = aws
        .queue(&aws.events.dlq_url)
        .receive(10, Duration::from_secs(30), Duration::from_secs(1))
        .await
        .unwrap();
    assert!(dead.is_empty(), "dead-lettered: {dead:?}");
}
