//! Scenario 5: Load: uploads at a steady rate for minutes (full size: 5) against one
//! `reelay route`, at the rate a short calibration burst shows it keeps up
//! with on this machine. Nothing is lost; throughput, p50/p99 latency (upload
//! to output) and RSS are reported, and RSS must stay flat.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use reelay::ports::ObjectStore;

use crate::common::aws::{Aws, Layout, sigterm, wait_exit};
use crate::harness::{self, EXTRACT_RULE, Size};
use crate::summary::Row;

pub async fn run(size: Size) -> Vec<Row> {
    let duration = Duration::from_secs(size.pick(30, 300));
    let aws = Aws::start_with(
        "load",
        Layout {
            extra_toml: EXTRACT_RULE.into(),
            notify: true,
            max_receive: 5,
            visibility: Duration::from_secs(20),
            concurrency: 2,
        },
    )
    .await;
    let file = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 1.0);
    let mut router = harness::spawn_reelay(
        &aws,
        &["route", "--concurrency", "2"],
        "load-route.log",
        None,
    );
    let pid = router.id();
    let store = aws.store();

    // Calibration: a burst, timed to the last output.
    let burst: Vec<String> = (0..12).map(|i| format!("sources/warm{i:02}.mp4")).collect();
    let t = Instant::now();
    harness::upload_all(&aws, &burst, &file).await;
    harness::wait_until(
        "the calibration burst",
        Duration::from_secs(180),
        || async { store.list("clips/warm").await.unwrap().len() >= burst.len() },
    )
    .await;
    let capacity = burst.len() as f64 / t.elapsed().as_secs_f64();
    // Below saturation (the machine is shared), so the backlog stays bounded.
    let rate = (capacity * 0.7).max(0.2);
    eprintln!(
        "load: calibration {capacity:.2} jobs/s; sustaining {rate:.2} uploads/s for {duration:?}"
    );

    // The uploader keeps its own schedule; this loop only watches.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(String, Instant)>();
    let start = Instant::now();
    let uploader = tokio::spawn({
        let (store, file) = (aws.store(), file.clone());
        async move {
            let interval = Duration::from_secs_f64(1.0 / rate);
            let mut i = 0u32;
            while start.elapsed() < duration {
                tokio::time::sleep_until((start + interval * i).into()).await;
                let key = format!("sources/l{i:05}.mp4");
                store
                    .put_file(
                        &key,
                        &file,
                        "video/mp4",
                        &reelay::ports::store::Metadata::new(),
                    )
                    .await
                    .unwrap();
                let _ = tx.send((key.replacen("sources/", "clips/", 1), Instant::now()));
                i += 1;
            }
        }
    });
    let mut put_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut seen_at: BTreeMap<String, Instant> = BTreeMap::new();
    let mut rss: Vec<(f64, u64)> = Vec::new();
    // After the last upload, wait while the router still has work queued; a
    // backlog is slow, not lost. Only when the queue has been empty for 10 s
    // are the outputs still missing lost (or at the hard cap).
    let hard_cap = duration + Duration::from_secs(900);
    let mut idle_since: Option<Instant> = None;
    let mut backlog_at_end = None;
    loop {
        while let Ok((k, t)) = rx.try_recv() {
            put_at.insert(k, t);
        }
        let uploading = !uploader.is_finished();
        // HEAD only the outputs still awaited: a listing of thousands of
        // keys would make the measurement slower than the router.
        let pending: Vec<String> = put_at
            .keys()
            .filter(|k| !seen_at.contains_key(*k))
            .cloned()
            .collect();
        if !uploading && pending.is_empty() && rx.is_empty() {
            break;
        }
        if !uploading {
            if backlog_at_end.is_none() {
                backlog_at_end = Some(pending.len());
            }
            if aws.queue_counts(&aws.events.url).await == (0, 0) {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(10) {
                    break;
                }
            } else {
                idle_since = None;
            }
        }
        if start.elapsed() > hard_cap {
            break;
        }
        let found: Vec<String> = futures::stream::iter(pending)
            .map(|k| {
                let store = &store;
                async move { store.head(&k).await.ok().flatten().map(|_| k) }
            })
            .buffer_unordered(8)
            .filter_map(|k| async move { k })
            .collect()
            .await;
        let now = Instant::now();
        for k in found {
            seen_at.entry(k).or_insert(now);
        }
        if let Some((now, _)) = harness::rss_kib(pid) {
            rss.push((start.elapsed().as_secs_f64(), now));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    uploader.await.unwrap();
    let uploaded = put_at.len();
    let hwm = harness::rss_kib(pid).map(|(_, h)| h).unwrap_or(0);
    sigterm(&router);
    assert!(wait_exit(&mut router, Duration::from_secs(30)).success());

    let lost: Vec<&String> = put_at
        .keys()
        .filter(|k| !seen_at.contains_key(*k))
        .collect();
    assert!(
        lost.is_empty(),
        "{} of {uploaded} uploads never produced an output: {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let mut latencies: Vec<f64> = put_at
        .iter()
        .map(|(k, put)| seen_at[k].saturating_duration_since(*put).as_secs_f64())
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let first = put_at.values().min().copied().unwrap();
    let last = seen_at
        .iter()
        .filter(|(k, _)| put_at.contains_key(*k))
        .map(|(_, t)| *t)
        .max()
        .unwrap();
    let throughput = uploaded as f64 / last.duration_since(first).as_secs_f64();
    let (p50, p99) = (
        harness::percentile(&latencies, 50.0),
        harness::percentile(&latencies, 99.0),
    );
    // RSS flat: the second half's peak within 25% (+8 MiB) of the first half's.
    let half = duration.as_secs_f64() / 2.0;
    let max_in = |lo: f64, hi: f64| {
        rss.iter()
            .filter(|(t, _)| *t >= lo && *t < hi)
            .map(|(_, r)| *r)
            .max()
            .unwrap_or(0)
    };
    let (first_half, second_half) = (max_in(0.0, half), max_in(half, f64::MAX));
    assert!(
        first_half > 0 && second_half > 0,
        "RSS was sampled: {rss:?}"
    );
    assert!(
        second_half as f64 <= first_half as f64 * 1.25 + 8192.0,
        "RSS grows: first half peak {first_half} KiB, second half {second_half} KiB"
    );
    let execs = harness::executions(aws.dir.path());
    let dups = harness::duplicate_dones(&execs)
        + harness::per_task(&execs, "start")
            .values()
            .map(|c| c - 1)
            .sum::<usize>();
    let mut row = Row::new("load", "moto");
    row.cases = uploaded as u64;
    row.completed = seen_at.keys().filter(|k| put_at.contains_key(*k)).count() as u64;
    row.lost = lost.len() as u64;
    row.duplicates = dups as u64;
    row.peak_rss_kib = hwm;
    row.notes = format!(
        "{:.0}s at {rate:.2} uploads/s (calibrated {capacity:.2}/s, backlog at the last upload {}): throughput {throughput:.2} jobs/s, latency p50 {p50:.2}s p99 {p99:.2}s; RSS peak 1st half {:.1} MiB, 2nd half {:.1} MiB",
        duration.as_secs_f64(),
        backlog_at_end.unwrap_or(0),
        first_half as f64 / 1024.0,
        second_half as f64 / 1024.0
    );
    vec![row]
}
