//! Scenario 2: Crashes: the router and the worker (moto), and `reelay dev` (local),
//! are killed with SIGKILL at random points while jobs flow, and restarted.
//! Every job completes; every output decodes fully; no key is ever seen
//! with two different contents; no expensive step publishes twice.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use reelay::ports::{ObjectStore, Queue};
use tokio_util::sync::CancellationToken;

use crate::common::aws::{Aws, Layout, sigterm, wait_exit};
use crate::harness::{self, JOB_RULE, Size, two_clip_job};
use crate::summary::Row;

pub async fn run(size: Size) -> Vec<Row> {
    vec![
        moto(size).await,
        claim_outlives_message().await,
        local(size).await,
    ]
}

/// The worst moment for a kill, made exact: a worker died holding its claim,
/// and its message came back before the claim expired (the claim is
/// refreshed on its own clock, after the message's heartbeat). The message
/// that comes back is the task's only one; it must not be dropped.
async fn claim_outlives_message() -> Row {
    let aws = Aws::start_with(
        "claim",
        Layout {
            extra_toml: JOB_RULE.into(),
            notify: false,
            max_receive: 10,
            visibility: Duration::from_secs(5),
            concurrency: 2,
        },
    )
    .await;
    let task = harness::first_task(&aws, "jobs/k.json", "sources/k.mp4", "exports/k.mp4").await;
    let store = aws.store();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claim = serde_json::json!({"worker": "killed-worker", "expires_at": now + 8});
    store
        .put_bytes(
            &format!(
                "{}{}.json",
                reelay::runtime::executor::CLAIMS_PREFIX,
                task.id
            ),
            claim.to_string().as_bytes(),
            "application/json",
            &reelay::ports::store::Metadata::new(),
            reelay::ports::store::PutCondition::Overwrite,
        )
        .await
        .unwrap();
    aws.queue(&aws.events.url)
        .send(&reelay::pipeline::message::InternalMessage::Task(task.clone()).to_json())
        .await
        .unwrap();
    let mut router = harness::spawn_reelay(&aws, &["route"], "claim-route.log", None);
    let start = Instant::now();
    let mut done = false;
    while start.elapsed() < Duration::from_secs(45) {
        if store.head(&task.output).await.unwrap().is_some() {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    sigterm(&router);
    let _ = wait_exit(&mut router, Duration::from_secs(30));
    assert!(
        done,
        "the task was lost: its message came back while the dead worker's claim was live, and was dropped{}",
        harness::log_tails(aws.dir.path(), 1, 12)
    );
    let execs = harness::executions(aws.dir.path());
    let mut row = Row::new("crashes", "moto");
    row.cases = 1;
    row.faults = 1;
    row.completed = 1;
    row.duplicates = harness::duplicate_dones(&execs) as u64;
    row.notes = format!(
        "killed worker's claim outlived its message: taken over after {:.1}s",
        start.elapsed().as_secs_f64()
    );
    row
}

/// Records each key's first etag under `prefixes`; any later different etag
/// is a violation (an output written twice with different content).
fn watch_contents(
    store: Arc<dyn ObjectStore>,
    prefixes: &'static [&'static str],
    stop: CancellationToken,
) -> (tokio::task::JoinHandle<()>, Arc<Mutex<Vec<String>>>) {
    let violations = Arc::new(Mutex::new(Vec::new()));
    let v = violations.clone();
    let handle = tokio::spawn(async move {
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        while !stop.is_cancelled() {
            for p in prefixes {
                for (k, etag) in harness::etags(store.as_ref(), p).await {
                    match seen.get(&k) {
                        Some(old) if *old != etag => v
                            .lock()
                            .unwrap()
                            .push(format!("{k}: etag {old} then {etag}")),
                        Some(_) => {}
                        None => {
                            seen.insert(k, etag);
                        }
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    });
    (handle, violations)
}

async fn moto(size: Size) -> Row {
    let m: usize = size.pick(10, 60);
    let kills: usize = size.pick(6, 24);
    let aws = Aws::start_with(
        "crashes",
        Layout {
            extra_toml: format!("{JOB_RULE}\n[placement]\nextract = \"gpu\"\n"),
            notify: true,
            // Every kill costs an in-flight message one receive.
            max_receive: 30,
            visibility: Duration::from_secs(5),
            concurrency: 2,
        },
    )
    .await;
    let file = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 2.0);
    let sources: Vec<String> = (0..m).map(|i| format!("sources/c{i:03}.mp4")).collect();
    harness::upload_all(&aws, &sources, &file).await;
    let store: Arc<dyn ObjectStore> = Arc::new(aws.store());
    let stop_watch = CancellationToken::new();
    let (watcher, violations) =
        watch_contents(store.clone(), &["exports/", "work/"], stop_watch.clone());

    let mut incarnation = 0;
    // The process and its worker id (what its claims name).
    let mut spawn = |role: &str, aws: &Aws| {
        incarnation += 1;
        let args: &[&str] = if role == "route" {
            &["route", "--concurrency", "2"]
        } else {
            &["work", "--device", "cpu"]
        };
        let id = format!("crash-{role}-{incarnation:03}");
        (
            harness::spawn_reelay(aws, args, &format!("{id}.log"), None),
            id,
        )
    };
    let (mut router, mut router_id) = spawn("route", &aws);
    let (mut worker, mut worker_id) = spawn("work", &aws);
    let mut mid_step = 0;
    let mut peak = 0;
    let mut done_kills = 0;
    let mut uploaded = 0;
    let (mut killed_router, mut killed_worker) = (0, 0);
    // Jobs arrive while processes die: one or two jobs per kill, the rest at the end.
    while done_kills < kills {
        let per = m.div_ceil(kills).max(1);
        for _ in 0..per {
            if uploaded < m {
                aws.put_job(
                    &format!("jobs/c{uploaded:03}.json"),
                    &two_clip_job(&sources[uploaded], &format!("exports/c{uploaded:03}.mp4")),
                )
                .await;
                uploaded += 1;
            }
        }
        // Half the kills at a random moment, half in the middle of a step:
        // the process named on a live claim dies while it holds it.
        let (wait, target_step) = {
            let mut rng = rand::rng();
            (
                Duration::from_millis(rng.random_range(300..2500)),
                rng.random_bool(0.5),
            )
        };
        let mut victim = None;
        if target_step {
            let deadline = Instant::now() + Duration::from_secs(10);
            while victim.is_none() && Instant::now() < deadline {
                victim = claim_holder(store.as_ref()).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        } else {
            tokio::time::sleep(wait).await;
        }
        for c in [&router, &worker] {
            if let Some((_, hwm)) = harness::rss_kib(c.id()) {
                peak = peak.max(hwm);
            }
        }
        let kill_router = match &victim {
            Some(id) if *id == router_id => true,
            Some(id) if *id == worker_id => false,
            _ => rand::rng().random_bool(0.5),
        };
        if victim
            .as_ref()
            .is_some_and(|v| *v == router_id || *v == worker_id)
        {
            mid_step += 1;
        }
        if kill_router {
            harness::sigkill(&mut router);
            (router, router_id) = spawn("route", &aws);
            killed_router += 1;
        } else {
            harness::sigkill(&mut worker);
            (worker, worker_id) = spawn("work", &aws);
            killed_worker += 1;
        }
        done_kills += 1;
    }
    while uploaded < m {
        aws.put_job(
            &format!("jobs/c{uploaded:03}.json"),
            &two_clip_job(&sources[uploaded], &format!("exports/c{uploaded:03}.mp4")),
        )
        .await;
        uploaded += 1;
    }
    let timeout = Duration::from_secs(size.pick(240, 900));
    let start = Instant::now();
    let completed = loop {
        let n = store.list("exports/").await.unwrap().len();
        if n >= m || start.elapsed() > timeout {
            break n;
        }
        for c in [&mut router, &mut worker] {
            if let Ok(Some(status)) = c.try_wait() {
                panic!(
                    "a reelay process exited ({status}): {}",
                    harness::log_tails(aws.dir.path(), 2, 15)
                );
            }
        }
        for c in [&router, &worker] {
            if let Some((_, hwm)) = harness::rss_kib(c.id()) {
                peak = peak.max(hwm);
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    // One more lap of the watcher after everything is published.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop_watch.cancel();
    watcher.await.unwrap();
    sigterm(&router);
    sigterm(&worker);
    let _ = wait_exit(&mut router, Duration::from_secs(30));
    let _ = wait_exit(&mut worker, Duration::from_secs(30));
    let missing: Vec<String> = (0..m)
        .map(|i| format!("exports/c{i:03}.mp4"))
        .filter(|k| !store_has(&aws, k))
        .collect();
    assert!(
        completed >= m,
        "{} of {m} jobs lost after {kills} kills: {missing:?}; failures: {:?}{}",
        m - completed,
        failure_keys(&aws),
        harness::log_tails(aws.dir.path(), 3, 15)
    );
    let v = violations.lock().unwrap().clone();
    assert!(
        v.is_empty(),
        "outputs rewritten with different content: {v:?}"
    );
    // Every output decodes fully: exports last 1.6 s, clips 0.8 s.
    let scratch = aws.dir.path().join("decode");
    std::fs::create_dir_all(&scratch).unwrap();
    for o in store.list("exports/").await.unwrap() {
        let d = harness::check_object(store.as_ref(), &o.key, &scratch).await;
        assert!((d - 1.6).abs() < 0.1, "{} lasts {d}", o.key);
    }
    let mut clips = 0;
    for o in store.list("work/").await.unwrap() {
        if o.key.ends_with(".mp4") {
            let d = harness::check_object(store.as_ref(), &o.key, &scratch).await;
            assert!((d - 0.8).abs() < 0.1, "{} lasts {d}", o.key);
            clips += 1;
        }
    }
    assert_eq!(clips, 2 * m, "two clips per job");
    let execs = harness::executions(aws.dir.path());
    let dups = harness::duplicate_dones(&execs);
    assert_eq!(dups, 0, "steps published twice");
    let starts: usize = harness::per_task(&execs, "start").values().sum();
    let dones: usize = harness::per_task(&execs, "done").values().sum();
    let mut row = Row::new("crashes", "moto");
    row.cases = m as u64;
    row.faults = kills as u64;
    row.completed = completed as u64;
    row.lost = (m - completed.min(m)) as u64;
    row.duplicates = dups as u64;
    row.peak_rss_kib = peak;
    row.notes = format!(
        "kill -9: {killed_router} router, {killed_worker} worker ({mid_step} right after being seen holding a claim); {} interrupted steps re-run; {} outputs decoded",
        starts.saturating_sub(dones),
        m + clips
    );
    row
}

/// The worker id on some live claim (a step in flight), if any.
async fn claim_holder(store: &dyn ObjectStore) -> Option<String> {
    let claims = store
        .list(reelay::runtime::executor::CLAIMS_PREFIX)
        .await
        .ok()?;
    for c in claims {
        if let Ok((bytes, _)) = store.get_bytes(&c.key).await
            && let Ok(v) = serde_json::from_slice::<serde_json::Value>(&bytes)
            && let Some(w) = v["worker"].as_str()
        {
            return Some(w.to_string());
        }
    }
    None
}

fn store_has(aws: &Aws, key: &str) -> bool {
    let store = aws.store();
    let key = key.to_string();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current()
            .block_on(async { store.head(&key).await.ok().flatten().is_some() })
    })
}

fn failure_keys(aws: &Aws) -> Vec<String> {
    let store = aws.store();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            store
                .list("_reelay/failures/")
                .await
                .map(|v| v.into_iter().map(|m| m.key).collect())
                .unwrap_or_default()
        })
    })
}

/// `reelay dev` on a folder, killed at random points and started again.
async fn local(size: Size) -> Row {
    let m: usize = size.pick(6, 30);
    let kills: usize = size.pick(4, 12);
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = dir.path().join("reelay.toml");
    std::fs::write(
        &config,
        format!("concurrency = 2\n{JOB_RULE}\n[queue]\nvisibility_seconds = 5\nmax_receive_count = 5\nretry_seconds = 1\n"),
    )
    .unwrap();
    let file = harness::tiny_video(&dir.path().join("tiny.mp4"), 2.0);
    for i in 0..m {
        let p = root.join(format!("sources/c{i:03}.mp4"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::copy(&file, &p).unwrap();
    }
    let spawn = || {
        crate::common::reelay()
            .arg("--config")
            .arg(&config)
            .arg("dev")
            .arg("--root")
            .arg(&root)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut dev = spawn();
    let mut peak = 0;
    let mut written = 0;
    for _ in 0..kills {
        for _ in 0..m.div_ceil(kills) {
            if written < m {
                crate::common::write_job(
                    &root,
                    &format!("jobs/c{written:03}.json"),
                    &two_clip_job(
                        &format!("sources/c{written:03}.mp4"),
                        &format!("exports/c{written:03}.mp4"),
                    ),
                );
                written += 1;
            }
        }
        let wait = Duration::from_millis(rand::rng().random_range(400..3000));
        tokio::time::sleep(wait).await;
        if let Some((_, hwm)) = harness::rss_kib(dev.id()) {
            peak = peak.max(hwm);
        }
        harness::sigkill(&mut dev);
        dev = spawn();
    }
    harness::sigkill(&mut dev);
    // The last run: everything that is left, then exit when idle.
    let out = tokio::task::spawn_blocking({
        let (root, config) = (root.clone(), config.clone());
        move || crate::common::dev_until_idle(&root, Some(&config))
    })
    .await
    .unwrap();
    let _ = out;
    let mut completed = 0;
    for i in 0..m {
        let p = root.join(format!("exports/c{i:03}.mp4"));
        if p.exists() {
            harness::decode_fully(&p).unwrap();
            let d = crate::common::duration(&p);
            assert!((d - 1.6).abs() < 0.1, "{} lasts {d}", p.display());
            completed += 1;
        }
    }
    assert_eq!(completed, m, "jobs lost in local mode after {kills} kills");
    let no_partial = walk_files(&root.join("work"));
    for p in &no_partial {
        if p.extension().is_some_and(|e| e == "mp4") {
            harness::decode_fully(p).unwrap();
        }
    }
    let journal = crate::common::journal(&root);
    let mut dones: BTreeMap<&str, usize> = BTreeMap::new();
    for e in journal.iter().filter(|e| e.event == "done") {
        *dones.entry(e.task.as_str()).or_insert(0) += 1;
    }
    let dups: usize = dones.values().map(|c| c - 1).sum();
    if dups > 0 {
        let twice: Vec<&str> = dones
            .iter()
            .filter(|(_, c)| **c > 1)
            .map(|(t, _)| *t)
            .collect();
        let history: Vec<String> = journal
            .iter()
            .filter(|e| twice.contains(&e.task.as_str()))
            .map(|e| format!("{} {} {} {}", e.event, e.task, e.step, e.worker))
            .collect();
        let kept = dir.keep();
        panic!(
            "steps published twice: {history:#?}; bucket kept at {}",
            kept.display()
        );
    }
    let starts = journal.iter().filter(|e| e.event == "start").count();
    let mut row = Row::new("crashes", "local");
    row.cases = m as u64;
    row.faults = kills as u64;
    row.completed = completed as u64;
    row.lost = (m - completed) as u64;
    row.duplicates = dups as u64;
    row.peak_rss_kib = peak;
    row.notes = format!(
        "kill -9 of reelay dev; {} interrupted steps re-run",
        starts.saturating_sub(dones.values().sum())
    );
    row
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk_files(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
