//! Scenario 1: Duplicates and reordering: every real bucket notification is taken off
//! the queue and put back 2 or 3 times, all shuffled, then two `reelay
//! route` processes race through them. Exactly one output per upload; each
//! extract runs exactly once, counted from the processes' execution logs and
//! from the audit metadata on the outputs.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use rand::Rng;
use rand::seq::SliceRandom;
use reelay::audit::AuditRecord;
use reelay::ports::{ObjectStore, Queue};

use crate::common::aws::{Aws, Layout, sigterm, wait_exit};
use crate::harness::{self, EXTRACT_RULE, Size};
use crate::summary::Row;

pub async fn run(size: Size) -> Vec<Row> {
    let n: usize = size.pick(40, 500);
    let aws = Aws::start_with(
        "dupes",
        Layout {
            extra_toml: EXTRACT_RULE.into(),
            notify: true,
            max_receive: 5,
            visibility: Duration::from_secs(10),
            concurrency: 2,
        },
    )
    .await;
    let file = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 1.0);
    let keys: Vec<String> = (0..n).map(|i| format!("sources/d{i:04}.mp4")).collect();
    harness::upload_all(&aws, &keys, &file).await;

    // Take every real notification off the queue...
    let events = aws.queue(&aws.events.url);
    let mut bodies = Vec::new();
    let start = std::time::Instant::now();
    while bodies.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "only {} of {n} notifications arrived",
            bodies.len()
        );
        let got = events
            .receive(10, Duration::from_secs(60), Duration::from_secs(1))
            .await
            .unwrap();
        if got.is_empty() {
            continue;
        }
        let handles: Vec<_> = got.iter().map(|m| m.handle.clone()).collect();
        events.ack(&handles).await.unwrap();
        bodies.extend(
            got.into_iter()
                .map(|m| m.body)
                .filter(|b| b.contains("ObjectCreated")),
        );
    }
    assert_eq!(bodies.len(), n, "one notification per upload");
    // ...and put each back 2 or 3 times, in random order.
    let mut copies = Vec::new();
    {
        let mut rng = rand::rng();
        for b in &bodies {
            for _ in 0..rng.random_range(2..=3) {
                copies.push(b.clone());
            }
        }
        copies.shuffle(&mut rng);
    }
    let sent = copies.len();
    let queue = std::sync::Arc::new(events);
    futures::stream::iter(copies)
        .map(|b| {
            let q = queue.clone();
            async move { q.send(&b).await.unwrap() }
        })
        .buffer_unordered(8)
        .collect::<Vec<_>>()
        .await;

    let mut routers = vec![
        harness::spawn_reelay(&aws, &["route"], "dup-route-a.log", None),
        harness::spawn_reelay(&aws, &["route"], "dup-route-b.log", None),
    ];
    let store = aws.store();
    let mut peak = 0;
    let timeout = Duration::from_secs(size.pick(240, 1500) as u64);
    let start = std::time::Instant::now();
    loop {
        for r in &routers {
            if let Some((_, hwm)) = harness::rss_kib(r.id()) {
                peak = peak.max(hwm);
            }
        }
        let outputs = store.list("clips/").await.unwrap().len();
        if outputs >= n && aws.queue_counts(&aws.events.url).await == (0, 0) {
            break;
        }
        assert!(
            start.elapsed() < timeout,
            "{outputs} of {n} outputs after {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for r in &routers {
        sigterm(r);
    }
    for r in &mut routers {
        assert!(wait_exit(r, Duration::from_secs(30)).success());
    }

    // Exactly n outputs, one per upload, each from its own extract task.
    let outputs = store.list("clips/").await.unwrap();
    assert_eq!(outputs.len(), n, "exactly one output per upload");
    let mut audit_tasks = BTreeSet::new();
    for o in &outputs {
        let head = store.head(&o.key).await.unwrap().unwrap();
        let r = AuditRecord::from_metadata(&head.metadata).expect("audit metadata");
        assert_eq!(r.kind, "extract", "{}", o.key);
        let source = o.key.replacen("clips/", "sources/", 1);
        assert!(
            r.inputs[0].starts_with(&format!("{source}@")),
            "{} comes from {:?}",
            o.key,
            r.inputs
        );
        assert!(audit_tasks.insert(r.task.clone()), "task {} twice", r.task);
    }
    // Execution logs: one start and one done per task, the same tasks.
    let execs = harness::executions(aws.dir.path());
    let starts = harness::per_task(&execs, "start");
    let dones = harness::per_task(&execs, "done");
    let turned_away = execs
        .iter()
        .filter(|e| e.event == "skip" || e.event == "busy")
        .count();
    assert_eq!(starts.len(), n, "every task started");
    let dup_starts: usize = starts.values().map(|c| c - 1).sum();
    assert_eq!(
        dup_starts,
        0,
        "tasks started more than once: {:?}",
        starts.iter().filter(|(_, c)| **c > 1).collect::<Vec<_>>()
    );
    assert_eq!(
        starts.keys().cloned().collect::<BTreeSet<_>>(),
        audit_tasks,
        "the tasks run are the tasks on the outputs"
    );
    assert_eq!(dones.len(), n);
    assert_eq!(
        aws.queue_counts(&aws.events.dlq_url).await,
        (0, 0),
        "nothing dead-lettered"
    );
    let mut row = Row::new("duplicates", "moto");
    row.cases = n as u64;
    row.faults = (sent - n) as u64;
    row.completed = outputs.len() as u64;
    row.lost = (n - outputs.len().min(n)) as u64;
    row.duplicates = (dup_starts + harness::duplicate_dones(&execs)) as u64;
    row.peak_rss_kib = peak;
    row.notes = format!(
        "{sent} deliveries of {n} notifications, 2 routers; {turned_away} duplicates turned away (skip/busy)"
    );
    vec![row]
}
