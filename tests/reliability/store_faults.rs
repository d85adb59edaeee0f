//! Scenario 6: Store faults: `reelay route` and `reelay work` talk to moto through a
//! proxy that fails a fraction of the S3 and SQS calls (500, 503, stalls past
//! the read timeout, resets before and after the call took effect). Calls
//! are retried with backoff; every job completes, once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use reelay::ports::ObjectStore;

use crate::common::aws::{Aws, Layout, sigterm, wait_exit};
use crate::common::fault_proxy::{ALL_FAULTS, Fault, FaultProxy};
use crate::harness::{self, JOB_RULE, Size, two_clip_job};
use crate::summary::Row;

pub async fn run(size: Size) -> Vec<Row> {
    vec![random_faults(size).await, claim_answer_lost().await]
}

/// The hardest store fault, made exact: a claim's conditional put reaches
/// the store, and its answer is lost. The SDK's retry then finds the claim
/// there (412): it is the worker's own, and must not turn the worker away.
async fn claim_answer_lost() -> Row {
    let aws = Aws::start_with(
        "claimfault",
        Layout {
            extra_toml: JOB_RULE.into(),
            notify: true,
            max_receive: 10,
            visibility: Duration::from_secs(20),
            concurrency: 2,
        },
    )
    .await;
    let upstream = format!("127.0.0.1:{}", aws.moto.port()).parse().unwrap();
    let proxy = FaultProxy::start(upstream, 0.0, &[], Duration::from_secs(6)).await;
    // The first put of each of the job's three claims: applied, answer lost.
    proxy.target("PUT /claimfault/_reelay/claims/", Fault::ResetAfter, 3);
    let file = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 2.0);
    aws.put_file("sources/k.mp4", &file).await;
    let endpoint = proxy.endpoint();
    let mut router =
        harness::spawn_reelay(&aws, &["route"], "claimfault-route.log", Some(&endpoint));
    let started = Instant::now();
    aws.put_job(
        "jobs/k.json",
        &two_clip_job("sources/k.mp4", "exports/k.mp4"),
    )
    .await;
    let store = aws.store();
    let mut done = false;
    while started.elapsed() < Duration::from_secs(90) {
        if store.head("exports/k.mp4").await.unwrap().is_some() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let took = started.elapsed();
    sigterm(&router);
    let _ = wait_exit(&mut router, Duration::from_secs(30));
    assert!(
        done,
        "the job did not finish{}",
        harness::log_tails(aws.dir.path(), 1, 15)
    );
    // Turned away by its own claim, a worker waits out the claim's lease
    // (the 20 s visibility); with its own claim recognised, about a second.
    assert!(
        took < Duration::from_secs(10),
        "the job took {took:?}: a worker waited out its own claim"
    );
    let resets = proxy.counts.resets_after.load(Ordering::Relaxed);
    assert_eq!(resets, 3, "the three claim puts lost their answers");
    let execs = harness::executions(aws.dir.path());
    // One process, so its log is in time order. A busy after the task's
    // start is a second message for a task already running (both extracts
    // plan the compile); a busy before any start can only be the worker
    // turned away by its own claim.
    let mut started = std::collections::BTreeSet::new();
    let mut busy = 0;
    for e in &execs {
        match e.event.as_str() {
            "start" => {
                started.insert(e.task.clone());
            }
            // Extracts are dispatched once each: any busy before their
            // start is self-inflicted. (A compile can race its duplicate.)
            "busy" if e.kind == "extract" && !started.contains(&e.task) => busy += 1,
            _ => {}
        }
    }
    assert_eq!(
        busy,
        0,
        "the only worker was turned away by its own claim {busy} time(s): {:?}",
        execs
            .iter()
            .map(|e| format!("{} {}", e.event, e.task))
            .collect::<Vec<_>>()
    );
    let mut row = Row::new("store_faults", "moto");
    row.cases = 1;
    row.faults = resets;
    row.completed = 1;
    row.duplicates = harness::duplicate_dones(&execs) as u64;
    row.notes = format!(
        "3 claim puts applied with their answers lost; job done in {:.1}s, no self-inflicted busy",
        took.as_secs_f64()
    );
    row
}

async fn random_faults(size: Size) -> Row {
    let m: usize = size.pick(8, 40);
    let rate = 0.10;
    let aws = Aws::start_with(
        "faults",
        Layout {
            // Short read timeout so a stall is noticed quickly.
            extra_toml: format!("{JOB_RULE}\n[placement]\nextract = \"gpu\"\n"),
            notify: true,
            max_receive: 10,
            visibility: Duration::from_secs(6),
            concurrency: 2,
        },
    )
    .await;
    // The [aws] section the harness wrote, with the timeouts this test needs.
    let text = std::fs::read_to_string(&aws.config_path).unwrap();
    std::fs::write(
        &aws.config_path,
        text.replace(
            "[aws]\n",
            "[aws]\nread_timeout_seconds = 3\nconnect_timeout_seconds = 2\nmax_attempts = 6\n",
        ),
    )
    .unwrap();
    let upstream = format!("127.0.0.1:{}", aws.moto.port()).parse().unwrap();
    // A stall outlasts any sane call: only a client read timeout ends it.
    let proxy = FaultProxy::start(upstream, rate, &ALL_FAULTS, Duration::from_secs(120)).await;
    let file = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 2.0);
    let sources: Vec<String> = (0..m).map(|i| format!("sources/f{i:03}.mp4")).collect();
    harness::upload_all(&aws, &sources, &file).await;
    let endpoint = proxy.endpoint();
    let mut router = harness::spawn_reelay(
        &aws,
        &["route", "--concurrency", "2"],
        "faults-route.log",
        Some(&endpoint),
    );
    let mut worker = harness::spawn_reelay(
        &aws,
        &["work", "--device", "cpu"],
        "faults-work.log",
        Some(&endpoint),
    );
    for (i, s) in sources.iter().enumerate() {
        aws.put_job(
            &format!("jobs/f{i:03}.json"),
            &two_clip_job(s, &format!("exports/f{i:03}.mp4")),
        )
        .await;
    }
    let store: Arc<dyn ObjectStore> = Arc::new(aws.store());
    let timeout = Duration::from_secs(size.pick(240, 900));
    let start = Instant::now();
    let mut peak = 0;
    let completed = loop {
        let n = store.list("exports/").await.unwrap().len();
        if n >= m || start.elapsed() > timeout {
            break n;
        }
        for c in [&router, &worker] {
            if let Some((_, hwm)) = harness::rss_kib(c.id()) {
                peak = peak.max(hwm);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    sigterm(&router);
    sigterm(&worker);
    let _ = wait_exit(&mut router, Duration::from_secs(40));
    let _ = wait_exit(&mut worker, Duration::from_secs(40));
    let counts = &proxy.counts;
    let faults = counts.faults();
    assert!(
        completed >= m,
        "{completed} of {m} jobs after {timeout:?} with {}; failures: {:?}{}",
        counts.describe(),
        store
            .list("_reelay/failures/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect::<Vec<_>>(),
        harness::log_tails(aws.dir.path(), 2, 15)
    );
    assert!(
        faults >= 10,
        "too few faults to mean anything: {}",
        counts.describe()
    );
    let scratch = aws.dir.path().join("decode");
    std::fs::create_dir_all(&scratch).unwrap();
    for o in store.list("exports/").await.unwrap() {
        let d = harness::check_object(store.as_ref(), &o.key, &scratch).await;
        assert!((d - 1.6).abs() < 0.1, "{} lasts {d}", o.key);
    }
    let execs = harness::executions(aws.dir.path());
    let dups = harness::duplicate_dones(&execs);
    assert_eq!(dups, 0, "steps published twice");
    let starts = harness::per_task(&execs, "start");
    let restarted: usize = starts.values().map(|c| c - 1).sum();
    let mut row = Row::new("store_faults", "moto");
    row.cases = m as u64;
    row.faults = faults;
    row.completed = completed as u64;
    row.lost = (m - completed.min(m)) as u64;
    row.duplicates = dups as u64;
    row.peak_rss_kib = peak;
    row.notes = format!(
        "{:.0}% of calls faulted: {}; {restarted} steps started again after a failed call",
        rate * 100.0,
        counts.describe()
    );
    row
}
