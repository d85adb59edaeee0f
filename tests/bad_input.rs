//! Bad input gets a clear error and a failure record, goes to the DLQ after
//! N tries, and never stops a good job dropped alongside it.

mod common;

use common::*;
use serde_json::json;

fn job(source: &str, output: &str, end: f64) -> serde_json::Value {
    json!({"version": 1, "source": source, "output": output, "clips": [{"start": 0.0, "end": end}]})
}

fn failure(root: &std::path::Path, rel: &str) -> serde_json::Value {
    let path = root.join("_reelay/failures").join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|_| {
        let found: Vec<_> = walk(&root.join("_reelay/failures"));
        panic!(
            "no failure record at {}; records: {found:?}",
            path.display()
        )
    });
    serde_json::from_str(&text).unwrap()
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

fn failures_for_object(root: &std::path::Path, object: &str) -> Vec<serde_json::Value> {
    walk(&root.join("_reelay/failures"))
        .into_iter()
        .map(|p| {
            serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(p).unwrap()).unwrap()
        })
        .filter(|v| {
            v["object"] == object
                || v["task"]["inputs"].as_array().is_some_and(|i| {
                    i.iter()
                        .any(|x| x.as_str().unwrap_or("").starts_with(object))
                })
        })
        .collect()
}

#[test]
fn every_bad_input_is_recorded_and_the_good_job_still_finishes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = fast_retry_config(dir.path());
    make_video(&root.join("sources/good.mp4"), 4.0, "320x180", 30, true);
    make_video(&root.join("sources/whole.mp4"), 4.0, "320x180", 30, true);
    let whole = std::fs::read(root.join("sources/whole.mp4")).unwrap();
    std::fs::write(
        root.join("sources/truncated.mp4"),
        &whole[..whole.len() / 3],
    )
    .unwrap();
    std::fs::write(root.join("sources/empty.mp4"), b"").unwrap();
    std::fs::write(
        root.join("sources/text.mp4"),
        b"this is not a video, just text\n",
    )
    .unwrap();
    write_job(
        &root,
        "jobs/good.json",
        &job("sources/good.mp4", "exports/good.mp4", 2.0),
    );
    write_job(
        &root,
        "jobs/truncated.json",
        &job("sources/truncated.mp4", "exports/t.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/empty.json",
        &job("sources/empty.mp4", "exports/e.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/text.json",
        &job("sources/text.mp4", "exports/x.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/beyond.json",
        &job("sources/good.mp4", "exports/b.mp4", 60.0),
    );
    write_job(
        &root,
        "jobs/missing.json",
        &job("sources/nowhere.mp4", "exports/m.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/backwards.json",
        &json!({"version": 1, "source": "sources/good.mp4", "output": "exports/r.mp4", "clips": [{"start": 3.0, "end": 1.0}]}),
    );
    write_job(
        &root,
        "jobs/unknown.json",
        &json!({"version": 1, "source": "sources/good.mp4", "output": "exports/u.mp4", "clips": [{"start": 0.0, "end": 1.0}], "speed": 2}),
    );
    let out = dev_until_idle(&root, Some(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "dead letters must make `reelay dev --exit-when-idle` fail"
    );

    // The good job is unharmed.
    assert!((duration(&root.join("exports/good.mp4")) - 2.0).abs() <= 1.0 / 30.0 + 1e-3);

    // Manifest problems: recorded against the manifest, naming the field.
    let backwards = failure(&root, "jobs/backwards.json/plan.json");
    assert_eq!(backwards["field"], "clips[0].end");
    assert!(
        backwards["error"]
            .as_str()
            .unwrap()
            .contains("end must be greater")
            || backwards["error"]
                .as_str()
                .unwrap()
                .contains("greater than start"),
        "{backwards}"
    );
    let unknown = failure(&root, "jobs/unknown.json/plan.json");
    assert!(
        unknown["error"].as_str().unwrap().contains("speed"),
        "{unknown}"
    );
    let missing = failure(&root, "jobs/missing.json/plan.json");
    assert_eq!(missing["field"], "source");
    assert!(
        missing["error"]
            .as_str()
            .unwrap()
            .contains("sources/nowhere.mp4"),
        "{missing}"
    );
    for record in [&backwards, &unknown, &missing] {
        assert_eq!(record["class"], "permanent");
        assert_eq!(
            record["attempts"], 2,
            "retried up to max_receive_count: {record}"
        );
        assert_eq!(record["dead_lettered"], true);
    }

    // Media problems: recorded against the step, with a message about the file.
    for (source, hint) in [
        ("sources/truncated.mp4", ""),
        ("sources/empty.mp4", ""),
        ("sources/text.mp4", ""),
    ] {
        let (detect, records): (Vec<_>, Vec<_>) = failures_for_object(&root, source)
            .into_iter()
            .partition(|r| r["step"] == "detect");
        // The default rule's detect on the upload fails too, on its own record.
        assert_eq!(
            detect.len(),
            1,
            "one detect record for {source}: {detect:?}"
        );
        assert_eq!(detect[0]["class"], "permanent", "{:?}", detect[0]);
        assert_eq!(records.len(), 1, "one record for {source}: {records:?}");
        let r = &records[0];
        assert_eq!(r["dead_lettered"], true, "{r}");
        assert!(
            !r["error"].as_str().unwrap().is_empty() && r["error"].as_str().unwrap().contains(hint)
        );
    }
    // A clip past the source's end is found at planning, before any step
    // runs: named in the manifest's terms (its key, the clip's field, the
    // source's key, not the worker's local path) with the fix.
    let beyond = failure(&root, "jobs/beyond.json/plan.json");
    assert_eq!(beyond["field"], "clips[0].end", "{beyond}");
    assert_eq!(beyond["object"], "jobs/beyond.json", "{beyond}");
    assert_eq!(beyond["step"], "plan", "{beyond}");
    assert_eq!(beyond["class"], "permanent", "{beyond}");
    let error = beyond["error"].as_str().unwrap();
    assert!(
        error.contains("60")
            && error.contains("`sources/good.mp4`")
            && error.contains("at most 4.00"),
        "{beyond}"
    );
    assert!(!error.contains(root.to_str().unwrap()), "{beyond}");
    assert!(
        !failures_for_object(&root, "sources/good.mp4")
            .iter()
            .any(|r| r["task"]["params"]["end"] == 60.0),
        "no extract ran for the clip past the end"
    );

    // Nothing else was exported, and the DLQ got all seven, and the default
    // rule's detect on each of the three bad uploads.
    for k in ["t", "e", "x", "b", "m", "r", "u"] {
        assert!(!root.join(format!("exports/{k}.mp4")).exists());
    }
    assert!(
        stderr.contains("10 message(s) went to the dead-letter queue"),
        "{stderr}"
    );
}

#[test]
fn awkward_keys_are_handled_and_nothing_leaves_the_bucket() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = fast_retry_config(dir.path());
    for name in ["my match.mp4", "été ü.mp4", "-rf.mp4"] {
        make_video(&root.join("sources").join(name), 3.0, "320x180", 30, false);
    }
    write_job(
        &root,
        "jobs/spaces.json",
        &job("sources/my match.mp4", "exports/my export.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/unicode.json",
        &job("sources/été ü.mp4", "exports/été.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/-dash.json",
        &job("sources/-rf.mp4", "exports/-rf.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/escape.json",
        &job("../outside.mp4", "exports/o.mp4", 1.0),
    );
    write_job(
        &root,
        "jobs/escape-out.json",
        &job("sources/my match.mp4", "../../outside.mp4", 1.0),
    );
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    dev_until_idle(&root, Some(&config));
    for out in [
        "exports/my export.mp4",
        "exports/été.mp4",
        "exports/-rf.mp4",
    ] {
        assert!(
            (duration(&root.join(out)) - 1.0).abs() <= 1.0 / 30.0 + 1e-3,
            "{out}"
        );
    }
    assert_eq!(
        failure(&root, "jobs/escape.json/plan.json")["field"],
        "source"
    );
    assert_eq!(
        failure(&root, "jobs/escape-out.json/plan.json")["field"],
        "output"
    );
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(before, after, "something was written beside the bucket");
    assert!(!dir.path().parent().unwrap().join("outside.mp4").exists());
}

/// The adversarial case: with `concurrency = 8`, 8 jobs cutting the same
/// clip gave 3 exports; the turn-aways of the busy claim counted as failed
/// receives and 5 messages were dead-lettered without a failure record.
#[test]
fn identical_work_started_together_is_never_dead_lettered() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = dir.path().join("reelay.toml");
    std::fs::write(
        &config,
        "concurrency = 8\n[queue]\nvisibility_seconds = 5\nmax_receive_count = 2\nretry_seconds = 1\n",
    )
    .unwrap();
    make_video(&root.join("sources/clip.mp4"), 3.0, "320x180", 30, false);
    for i in 0..8 {
        write_job(
            &root,
            &format!("jobs/same-{i}.json"),
            &job("sources/clip.mp4", &format!("exports/same-{i}.mp4"), 1.0),
        );
    }
    let out = dev_until_idle(&root, Some(&config));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("dead-letter"), "{stderr}");
    for i in 0..8 {
        let d = duration(&root.join(format!("exports/same-{i}.mp4")));
        assert!((d - 1.0).abs() <= 1.0 / 30.0 + 1e-3, "export {i} lasts {d}");
    }
    assert!(walk(&root.join("_reelay/failures")).is_empty());
    // Turned away is not failed: the journal has busy events, no failures.
    let entries = journal(&root);
    assert!(entries.iter().all(|e| e.event != "fail"), "{entries:?}");
}

/// The adversarial case: `reelay run extract --input a.mp4 --output
/// sub/../a.mp4` truncated its own input.
#[test]
fn reelay_run_never_writes_over_its_own_input() {
    let dir = tempfile::tempdir().unwrap();
    make_video(&dir.path().join("a.mp4"), 2.0, "320x180", 30, false);
    std::fs::create_dir_all(dir.path().join("sub")).unwrap();
    let before = std::fs::read(dir.path().join("a.mp4")).unwrap();
    let out = reelay()
        .current_dir(dir.path())
        .args([
            "run",
            "extract",
            "--input",
            "a.mp4",
            "--output",
            "sub/../a.mp4",
        ])
        .args(["--set", "start=0", "--set", "end=1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("is the input") && stderr.contains("Fix:"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(dir.path().join("a.mp4")).unwrap(), before);
}

/// The adversarial case: `reelay check | head -1` panicked on the broken pipe.
#[test]
fn check_into_a_closed_pipe_is_not_a_panic() {
    use std::process::Stdio;
    let mut child = reelay()
        .args(["check"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Close the reading end before reelay writes: `head -1` after one line.
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

fn executor_for(
    root: &std::path::Path,
) -> (
    std::sync::Arc<reelay::runtime::executor::Executor>,
    std::sync::Arc<reelay::adapters::memory_queue::MemoryQueue>,
) {
    use reelay::adapters::local_store::LocalStore;
    use reelay::adapters::memory_queue::MemoryQueue;
    use reelay::runtime::dispatch::Dispatcher;
    use reelay::runtime::executor::Executor;
    use std::sync::Arc;
    let (events, _) = MemoryQueue::with_dlq("events", 3);
    let (gpu, _) = MemoryQueue::with_dlq("gpu", 3);
    let executor = Executor {
        store: Arc::new(LocalStore::open(root).unwrap()),
        config: Arc::new(reelay::config::Config::defaults()),
        dispatcher: Dispatcher {
            events: events.clone(),
            gpu,
        },
        ffmpeg: ffmpeg(),
        worker_id: "test".into(),
        progress: Arc::new(reelay::runtime::progress::LogProgress),
        journal: Some(reelay::runtime::journal::Journal::new(
            reelay::runtime::local::journal_path(root),
        )),
        claim_lease: std::time::Duration::from_secs(30),
        metrics: Default::default(),
    };
    (Arc::new(executor), events)
}

async fn plan_job(
    executor: &reelay::runtime::executor::Executor,
    key: &str,
) -> reelay::pipeline::planner::Plan {
    let event = reelay::runtime::supersede::manifest_event(key);
    reelay::pipeline::planner::plan(
        executor.store.as_ref(),
        &executor.config,
        reelay::pipeline::planner::Trigger::Upload(&event),
    )
    .await
    .unwrap()
}

/// The adversarial cases: a manifest edited while its compile ran (the old
/// compile finished last and overwrote the newer export), and a source
/// replaced (or still being written) after its task was planned (processed
/// under the old lineage, or failed and dead-lettered). Both now give way:
/// superseded, nothing published, the job planned again from its manifest.
#[tokio::test(flavor = "multi_thread")]
async fn the_latest_manifest_and_the_latest_upload_win() {
    use reelay::runtime::executor::Outcome;
    use tokio_util::sync::CancellationToken;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/m.mp4"), 3.0, "320x180", 30, false);
    write_job(
        &root,
        "jobs/a.json",
        &job("sources/m.mp4", "exports/h.mp4", 1.0),
    );
    let (executor, events) = executor_for(&root);
    let plan = plan_job(&executor, "jobs/a.json").await;
    let extract = &plan.ready[0];
    let done = executor
        .execute(extract, CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(done, Outcome::Done { .. }), "{done:?}");
    let compile = plan_job(&executor, "jobs/a.json").await.ready[0].clone();
    assert_eq!(compile.output, "exports/h.mp4");
    // The user edits the job before its compile publishes.
    write_job(
        &root,
        "jobs/a.json",
        &job("sources/m.mp4", "exports/h.mp4", 2.0),
    );
    let outcome = executor
        .handle(&compile, CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Superseded { .. }), "{outcome:?}");
    assert!(
        !root.join("exports/h.mp4").exists(),
        "the old compile published"
    );
    // The newer version was planned and dispatched instead.
    assert!(
        events
            .bodies()
            .await
            .iter()
            .any(|b| b.contains("extract-0")),
        "the edited job was not planned again"
    );

    // A source replaced after planning: the task gives way, not fails.
    let newer = plan_job(&executor, "jobs/a.json").await.ready[0].clone();
    make_video(&root.join("sources/other.mp4"), 3.0, "160x90", 30, false);
    std::fs::rename(root.join("sources/other.mp4"), root.join("sources/m.mp4")).unwrap();
    let outcome = executor
        .execute(&newer, CancellationToken::new())
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Superseded { .. }), "{outcome:?}");
    assert!(!root.join(&newer.output).exists());
    assert!(walk(&root.join("_reelay/failures")).is_empty());
}

/// The adversarial cases: a folder symlink under `.reelay/meta/` made
/// reelay write metadata outside the bucket (an upload was enough), and a
/// symlinked `.reelay/journal.jsonl` was appended to outside the bucket.
#[test]
fn reelay_dev_writes_nothing_through_symlinks_in_its_own_folders() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/m.mp4"), 2.0, "320x180", 30, false);
    write_job(
        &root,
        "jobs/a.json",
        &job("sources/m.mp4", "exports/a.mp4", 1.0),
    );
    std::fs::create_dir_all(root.join(".reelay/meta")).unwrap();
    std::fs::write(outside.path().join("victim.txt"), b"keep").unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join(".reelay/meta/sources")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join(".reelay/meta/jobs")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("victim.txt"),
        root.join(".reelay/journal.jsonl"),
    )
    .unwrap();
    dev_until_idle(&root, None);
    assert!((duration(&root.join("exports/a.mp4")) - 1.0).abs() <= 1.0 / 30.0 + 1e-3);
    let names: Vec<_> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["victim.txt"], "written outside the bucket");
    assert_eq!(
        std::fs::read(outside.path().join("victim.txt")).unwrap(),
        b"keep"
    );
}

/// Edits the job's manifest the moment its first compile starts, as a user
/// saving a changed job while the export is being made.
struct EditOnCompile {
    manifest: std::path::PathBuf,
    edited: Vec<u8>,
    first_compile: std::sync::Mutex<Option<String>>,
}

impl reelay::runtime::progress::ProgressSink for EditOnCompile {
    fn started(&self, task: &reelay::pipeline::task::Task) {
        let mut first = self.first_compile.lock().unwrap();
        if task.kind == reelay::pipeline::task::StepKind::Compile && first.is_none() {
            *first = Some(task.id.clone());
            std::fs::write(&self.manifest, &self.edited).unwrap();
        }
    }
    fn progress(&self, _: &reelay::pipeline::task::Task, _: &reelay::media::Progress) {}
    fn finished(
        &self,
        _: &reelay::pipeline::task::Task,
        _: Result<&reelay::runtime::execution::Outcome, &reelay::tasks::TaskError>,
    ) {
    }
}

/// Latest manifest wins (issue 15): a manifest edited while its compile
/// runs. The old compile checks the manifest before it publishes and gives
/// way (superseded, not failed); the export left is the newer job's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_edited_while_its_compile_runs_leaves_the_newer_export() {
    use reelay::runtime::local::{LocalOptions, run_local};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    make_video(&root.join("sources/m.mp4"), 4.0, "320x180", 30, true);
    let old = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
                     "clips": [{"start": 0.0, "end": 1.0}]});
    let new = json!({"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
                     "clips": [{"start": 0.0, "end": 1.0}, {"start": 2.0, "end": 3.0}]});
    write_job(&root, "jobs/h.json", &old);
    let sink = std::sync::Arc::new(EditOnCompile {
        manifest: root.join("jobs/h.json"),
        edited: serde_json::to_vec_pretty(&new).unwrap(),
        first_compile: Default::default(),
    });
    let summary = run_local(
        LocalOptions {
            root: root.clone(),
            config: reelay::config::Config::defaults(),
            exit_when_idle: true,
            poll: std::time::Duration::from_millis(200),
            progress: sink.clone(),
        },
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    assert!(
        summary.dead_letters.is_empty(),
        "{:?}",
        summary.dead_letters
    );
    let old_compile = sink
        .first_compile
        .lock()
        .unwrap()
        .clone()
        .expect("a compile ran");
    let entries = journal(&root);
    if std::env::var_os("DUMPJ").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(root.join(".reelay/journal.jsonl")).unwrap()
        );
    }
    let of_old: Vec<&str> = entries
        .iter()
        .filter(|e| e.task == old_compile)
        .map(|e| e.event.as_str())
        .collect();
    assert!(
        of_old.contains(&"start") && !of_old.contains(&"done"),
        "the old compile published: {of_old:?}"
    );
    // The export is the newer job's: two 1 s clips, written by another task.
    let export = root.join("exports/h.mp4");
    let got = duration(&export);
    assert!(
        (got - 2.0).abs() <= 0.1,
        "export lasts {got} s, not the new job's 2 s"
    );
    let store = reelay::adapters::local_store::LocalStore::open(&root).unwrap();
    let meta = reelay::ports::ObjectStore::head(&store, "exports/h.mp4")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(
        meta.metadata.get("reelay-task"),
        Some(&old_compile),
        "the old compile's export was left"
    );
    let failures: Vec<String> = walk(&root.join("_reelay/failures"))
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect();
    assert!(
        failures.is_empty(),
        "giving way is not a failure: {failures:?}"
    );
}

/// A listing skips one bad entry and records it (issue 15): files in
/// `jobs/` whose names are no keys (a newline, bytes that are not UTF-8)
/// are left out with a failure record naming each, and the good job beside
/// them runs.
#[test]
fn a_bad_name_in_a_listing_is_skipped_and_recorded_and_the_rest_run() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = fast_retry_config(dir.path());
    make_video(&root.join("sources/good.mp4"), 2.0, "320x180", 30, false);
    write_job(
        &root,
        "jobs/good.json",
        &job("sources/good.mp4", "exports/good.mp4", 1.0),
    );
    let body = serde_json::to_vec(&job("sources/good.mp4", "exports/bad.mp4", 1.0)).unwrap();
    std::fs::write(root.join("jobs/bad\nname.json"), &body).unwrap();
    let not_utf8 = std::ffi::OsStr::from_bytes(b"caf\xe9.json");
    std::fs::write(root.join("jobs").join(not_utf8), &body).unwrap();

    let out = dev_until_idle(&root, Some(&config));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!((duration(&root.join("exports/good.mp4")) - 1.0).abs() <= 1.0 / 30.0 + 1e-3);
    assert!(!root.join("exports/bad.mp4").exists());
    let listed: Vec<serde_json::Value> = walk(&root.join("_reelay/failures"))
        .into_iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap())
        .filter(|r: &serde_json::Value| r["step"] == "list")
        .collect();
    let named = |object: &str| {
        listed
            .iter()
            .filter(|r| r["object"] == object)
            .collect::<Vec<_>>()
    };
    let newline = named("jobs/bad\\u{a}name.json");
    assert_eq!(newline.len(), 1, "{listed:?}");
    let error = newline[0]["error"].as_str().unwrap();
    assert!(
        error.contains("control character") && error.contains("remove it"),
        "{error}"
    );
    assert_eq!(newline[0]["field"], "key");
    let latin1 = named("jobs/caf\u{fffd}.json");
    assert_eq!(latin1.len(), 1, "{listed:?}");
    assert!(
        latin1[0]["error"].as_str().unwrap().contains("not UTF-8"),
        "{:?}",
        latin1[0]
    );
    assert_eq!(listed.len(), 2, "{listed:?}");
}
