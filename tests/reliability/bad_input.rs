//! Scenario 4: Bad input (local mode, `reelay dev`): a corpus of broken media,
//! broken manifests and hostile keys, dropped beside good jobs. Each case gets
//! a failure record with a clear message and goes to the DLQ after N tries;
//! `reelay dev` neither crashes nor loops; nothing is written outside the
//! bucket; the good jobs finish.

use std::path::Path;
use std::time::{Duration, Instant};

use reelay::ports::ObjectStore;
use serde_json::{Value, json};

use crate::harness::{self, JOB_RULE, Size};
use crate::summary::Row;

const MAX_RECEIVE: u64 = 2;

/// One bad input: the manifest dropped at `jobs/<name>` and what its failure
/// record must say (a substring of the error or the field; "" for any).
struct Case {
    manifest: String,
    body: Vec<u8>,
    hint: &'static str,
}

fn job(source: &str, output: &str, clips: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"version": 1, "source": source, "output": output, "clips": clips}))
        .unwrap()
}

fn one_clip(source: &str, output: &str) -> Vec<u8> {
    job(source, output, json!([{"start": 0.0, "end": 0.5}]))
}

fn case(manifest: &str, body: Vec<u8>, hint: &'static str) -> Case {
    Case {
        manifest: format!("jobs/{manifest}"),
        body,
        hint,
    }
}

fn corpus(long: &str) -> Vec<Case> {
    let deep = format!("{}{}", "[".repeat(400), "]".repeat(400));
    let many: Vec<Value> = (0..600)
        .map(|i| json!({"start": i as f64 * 0.001, "end": i as f64 * 0.001 + 0.5}))
        .collect();
    vec![
        // Broken media.
        case("corrupt.json", one_clip("sources/corrupt.mp4", "exports/corrupt.mp4"), ""),
        case("truncated.json", one_clip("sources/truncated.mp4", "exports/truncated.mp4"), ""),
        case("empty.json", one_clip("sources/empty.mp4", "exports/empty.mp4"), ""),
        case("text.json", one_clip("sources/text.mp4", "exports/text.mp4"), ""),
        case("json-video.json", one_clip("sources/json.mp4", "exports/json.mp4"), ""),
        case("random.json", one_clip("sources/random.mp4", "exports/random.mp4"), ""),
        case("space é.json", one_clip("sources/bad file é.mp4", "exports/bad é.mp4"), ""),
        case("-dash.json", one_clip("sources/-i.mp4", "exports/-y.mp4"), ""),
        case("fast-corrupt.json", serde_json::to_vec(&json!({"version": 1, "source": "sources/corrupt.mp4", "output": "exports/fc.mp4", "accurate": false, "clips": [{"start": 0.0, "end": 0.5}]})).unwrap(), ""),
        // Times.
        case("beyond.json", job("sources/good.mp4", "exports/beyond.mp4", json!([{"start": 0.0, "end": 60.0}])), "60"),
        case("zero-length.json", job("sources/good.mp4", "exports/zero.mp4", json!([{"start": 1.0, "end": 1.0}])), "clips[0]"),
        case("backwards.json", job("sources/good.mp4", "exports/back.mp4", json!([{"start": 1.5, "end": 0.5}])), "clips[0]"),
        case("negative.json", job("sources/good.mp4", "exports/neg.mp4", json!([{"start": -1.0, "end": 0.5}])), "clips[0]"),
        case("out-of-range.json", br#"{"version": 1, "source": "sources/good.mp4", "output": "exports/r.mp4", "clips": [{"start": 0, "end": 1e400}]}"#.to_vec(), ""),
        case("huge-dims.json", one_clip("sources/huge.y4m", "exports/huge-dims.mp4"), ""),
        case("absurd-size.json", job("sources/good.mp4", "exports/huge.mp4", json!([{"start": 0.0, "end": 0.5, "framing": {"crop": {"x": 0, "y": 0, "w": 32, "h": 18}, "model": "realesr-general-x4v3", "size": "100000x100000"}}])), "100000"),
        // Wrong types and shapes.
        case("start-string.json", job("sources/good.mp4", "exports/s.mp4", json!([{"start": "zero", "end": 0.5}])), "start"),
        case("clips-object.json", job("sources/good.mp4", "exports/o.mp4", json!({"start": 0.0, "end": 0.5})), "clips"),
        case("version-string.json", serde_json::to_vec(&json!({"version": "1", "source": "sources/good.mp4", "output": "exports/v.mp4", "clips": [{"start": 0.0, "end": 0.5}]})).unwrap(), "version"),
        case("version-2.json", serde_json::to_vec(&json!({"version": 2, "source": "sources/good.mp4", "output": "exports/v2.mp4", "clips": [{"start": 0.0, "end": 0.5}]})).unwrap(), "version"),
        case("no-source.json", serde_json::to_vec(&json!({"version": 1, "output": "exports/ns.mp4", "clips": [{"start": 0.0, "end": 0.5}]})).unwrap(), "source"),
        case("no-clips.json", serde_json::to_vec(&json!({"version": 1, "source": "sources/good.mp4", "output": "exports/nc.mp4"})).unwrap(), "clips"),
        case("empty-clips.json", job("sources/good.mp4", "exports/ec.mp4", json!([])), "clips"),
        case("huge-array.json", job("sources/good.mp4", "exports/many.mp4", Value::Array(many)), "500"),
        case("deep-nesting.json", format!(r#"{{"version": 1, "source": "sources/good.mp4", "output": "exports/d.mp4", "clips": {deep}}}"#).into_bytes(), ""),
        case("unknown-field.json", serde_json::to_vec(&json!({"version": 1, "source": "sources/good.mp4", "output": "exports/u.mp4", "clips": [{"start": 0.0, "end": 0.5}], "speed": 2})).unwrap(), "speed"),
        case("bad-transition.json", serde_json::to_vec(&json!({"version": 1, "source": "sources/good.mp4", "output": "exports/t.mp4", "clips": [{"start": 0.0, "end": 0.5}], "transition": {"kind": "wipe", "seconds": 0.2}})).unwrap(), "transition"),
        case("long-caption.json", job("sources/good.mp4", "exports/c.mp4", json!([{"start": 0.0, "end": 0.5, "caption": "x".repeat(300)}])), "caption"),
        case("not-json.json", b"\x00\x01\x02 this is not json \xff".to_vec(), ""),
        case("bad-utf8.json", b"{\"version\": 1, \"source\": \"sources/\xff\xfe.mp4\"}".to_vec(), ""),
        case("array.json", b"[1, 2, 3]".to_vec(), ""),
        case("null.json", b"null".to_vec(), ""),
        case("oversized.json", {
            let mut b = br#"{"version": 1, "source": "sources/good.mp4", "output": "exports/big.mp4", "clips": [{"start": 0.0, "end": 0.5}], "pad": ""#.to_vec();
            b.extend(std::iter::repeat_n(b'a', 1_200_000));
            b.extend(br#""}"#);
            b
        }, "MiB"),
        // Hostile keys.
        case("escape-source.json", one_clip("../outside.mp4", "exports/e1.mp4"), "source"),
        case("escape-output.json", one_clip("sources/good.mp4", "../../outside.mp4"), "output"),
        case("absolute-output.json", one_clip("sources/good.mp4", "/tmp/reelay-escape.mp4"), "output"),
        case("long-output.json", one_clip("sources/good.mp4", &format!("exports/{long}.mp4")), "output"),
        case("long-source.json", one_clip(&format!("sources/{long}.mp4"), "exports/ls.mp4"), "source"),
        case("missing-source.json", one_clip("sources/nowhere.mp4", "exports/m.mp4"), "sources/nowhere.mp4"),
        case("nul-key.json", one_clip("sources/a\u{0}b.mp4", "exports/nul.mp4"), "source"),
        case("newline-key.json", one_clip("sources/good.mp4", "exports/a\nb.mp4"), "output"),
        // Outputs over user objects or reelay's own (issue 15).
        case("over-upload.json", one_clip("sources/good.mp4", "sources/keep.mp4"), "output"),
        case("over-itself.json", one_clip("sources/good.mp4", "jobs/over-itself.json"), "output"),
        case("over-jobs.json", one_clip("sources/good.mp4", "jobs/spawned.json"), "output"),
        case("over-claims.json", one_clip("sources/good.mp4", "_reelay/claims/x.json"), "output"),
        case("outside-outputs.json", one_clip("sources/good.mp4", "elsewhere/x.mp4"), "output"),
        case("zz-same-output.json", job("sources/good.mp4", "exports/good.mp4", json!([{"start": 0.0, "end": 0.25}])), "jobs/good.json"),
        case("symlinked-source.json", one_clip("sources/link.mp4", "exports/link.mp4"), "symlink"),
        // Strict JSON and bounded drawing.
        case("bom.json", [b"\xEF\xBB\xBF".as_slice(), &one_clip("sources/good.mp4", "exports/bom.mp4")].concat(), "BOM"),
        case("two-values.json", [one_clip("sources/good.mp4", "exports/tv.mp4"), one_clip("sources/good.mp4", "exports/tv2.mp4")].concat(), "more after"),
        case("duplicate-key.json", br#"{"version": 1, "source": "sources/good.mp4", "output": "exports/dk.mp4", "output": "exports/dk2.mp4", "clips": [{"start": 0.0, "end": 0.5}]}"#.to_vec(), "duplicate"),
        case("nul-caption.json", job("sources/good.mp4", "exports/nc2.mp4", json!([{"start": 0.0, "end": 0.5, "caption": "Goal\u{0} hidden"}])), "caption"),
        case("long-name-output.json", one_clip("sources/good.mp4", &format!("exports/{}.mp4", "n".repeat(300))), "output"),
        // Names that made listing `jobs/` fail, so no job at all ran.
        case(&format!("{}.json", "n".repeat(250)), one_clip("sources/nowhere-long.mp4", "exports/ln.mp4"), "source"),
        case("pair.json", one_clip("sources/nowhere-pair.mp4", "exports/pair.mp4"), "source"),
        case("thirty-texts.json", job("sources/good.mp4", "exports/texts.mp4", json!([{"start": 0.0, "end": 0.5, "overlay": {"text": vec![json!({"text": "W".repeat(200), "x": 0, "y": 0, "size": 1000}); 30]}}])), "overlay.text"),
    ]
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.path().is_dir() {
                out.extend(walk(&e.path()));
            } else {
                out.push(e.path());
            }
        }
    }
    out
}

/// Every failure record in the bucket.
fn records(root: &Path) -> Vec<Value> {
    walk(&root.join("_reelay/failures"))
        .into_iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap())
        .collect()
}

fn belongs_to(record: &Value, manifest: &str) -> bool {
    record["object"] == manifest || record["task"]["job"]["manifest"] == manifest
}

pub async fn run(_size: Size) -> Vec<Row> {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = dir.path().join("reelay.toml");
    std::fs::write(
        &config,
        format!("concurrency = 2\n{JOB_RULE}\n[queue]\nvisibility_seconds = 10\nmax_receive_count = {MAX_RECEIVE}\nretry_seconds = 1\n"),
    )
    .unwrap();
    let good = harness::tiny_video(&root.join("sources/good.mp4"), 2.0);
    let bytes = std::fs::read(&good).unwrap();
    let put = |key: &str, b: &[u8]| {
        let p = root.join(key);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, b).unwrap();
    };
    let mut corrupt = bytes.clone();
    for b in corrupt.iter_mut().take(256) {
        *b ^= 0x5a;
    }
    put("sources/corrupt.mp4", &corrupt);
    put("sources/truncated.mp4", &bytes[..bytes.len() / 3]);
    put("sources/empty.mp4", b"");
    put("sources/text.mp4", b"this is not a video, just text\n");
    put("sources/json.mp4", br#"{"not": "a video"}"#);
    let noise: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    put("sources/random.mp4", &noise);
    put("sources/bad file é.mp4", &corrupt);
    put("sources/-i.mp4", &corrupt);
    // A video whose header claims 100000x100000 pixels (10 G per frame).
    put(
        "sources/huge.y4m",
        b"YUV4MPEG2 W100000 H100000 F30:1 Ip A1:1 C420jpeg\nFRAME\n\x10\x10\x10\x10",
    );
    // User objects a bad job must never change, and a symlinked source.
    put("sources/keep.mp4", &bytes);
    put("jobs/pair.json.json/x.json", b"{}");
    std::os::unix::fs::symlink(root.join("sources/good.mp4"), root.join("sources/link.mp4"))
        .unwrap();
    // Awkward keys that are fine: they must succeed.
    put("sources/ok space é.mp4", &bytes);
    put("sources/-ok.mp4", &bytes);
    let long = "l".repeat(1100);
    let cases = corpus(&long);
    for c in &cases {
        put(&c.manifest, &c.body);
    }
    let goods = [
        ("jobs/good.json", "sources/good.mp4", "exports/good.mp4"),
        (
            "jobs/ok space é.json",
            "sources/ok space é.mp4",
            "exports/ok é.mp4",
        ),
        ("jobs/-ok.json", "sources/-ok.mp4", "exports/-ok.mp4"),
    ];
    for (m, s, o) in goods {
        put(m, &one_clip(s, o));
    }
    let before: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let user_objects: Vec<(std::path::PathBuf, Vec<u8>)> = walk(&root.join("sources"))
        .into_iter()
        .chain(walk(&root.join("jobs")))
        .map(|p| {
            let b = std::fs::read(&p).unwrap_or_default();
            (p, b)
        })
        .collect();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (root, config) = (root.clone(), config.clone());
        move || crate::common::dev_until_idle(&root, Some(&config))
    })
    .await
    .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        took < Duration::from_secs(240),
        "reelay dev took {took:?}: a crash loop?"
    );

    // The good jobs finished.
    for (_, _, o) in goods {
        let p = root.join(o);
        harness::decode_fully(&p).unwrap_or_else(|e| panic!("{o}: {e}"));
        let d = crate::common::duration(&p);
        assert!((d - 0.5).abs() < 0.1, "{o} lasts {d}");
    }
    // Every case: a record, clear, dead-lettered after N tries, nothing exported.
    let all = records(&root);
    let mut problems = Vec::new();
    for c in &cases {
        let mine: Vec<&Value> = all.iter().filter(|r| belongs_to(r, &c.manifest)).collect();
        let Some(r) = mine.first() else {
            problems.push(format!("{}: no failure record", c.manifest));
            continue;
        };
        let error = r["error"].as_str().unwrap_or("");
        let field = r["field"].as_str().unwrap_or("");
        if mine.len() != 1 {
            problems.push(format!("{}: {} records", c.manifest, mine.len()));
        }
        if error.trim().len() < 10 {
            problems.push(format!("{}: unclear error {error:?}", c.manifest));
        }
        if !(error.contains(c.hint) || field.contains(c.hint)) {
            problems.push(format!(
                "{}: error {error:?} / field {field:?} does not mention {:?}",
                c.manifest, c.hint
            ));
        }
        if error.contains("Unrecognized option") || error.contains("Option not found") {
            problems.push(format!(
                "{}: a key was read as an FFmpeg option: {error}",
                c.manifest
            ));
        }
        if r["dead_lettered"] != true || r["attempts"] != MAX_RECEIVE {
            problems.push(format!(
                "{}: not dead-lettered after {MAX_RECEIVE} tries: {r}",
                c.manifest
            ));
        }
    }
    let dlq_line = format!("{} message(s) went to the dead-letter queue", cases.len());
    if !stderr.contains(&dlq_line) {
        problems.push(format!(
            "want `{dlq_line}` in: {}",
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ));
    }
    let exported: Vec<String> = walk(&root.join("exports"))
        .into_iter()
        .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
        .collect();
    if exported.len() != goods.len() {
        problems.push(format!("exports: {exported:?}"));
    }
    let after: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    if before != after {
        problems.push(format!(
            "written beside the bucket: {before:?} -> {after:?}"
        ));
    }
    for (path, bytes) in &user_objects {
        if std::fs::read(path).unwrap_or_default() != *bytes {
            problems.push(format!("user object {} changed", path.display()));
        }
    }
    for reserved in [
        "jobs/spawned.json",
        "_reelay/claims/x.json",
        "elsewhere/x.mp4",
    ] {
        if root.join(reserved).exists() {
            problems.push(format!("a job wrote {reserved}"));
        }
    }
    if Path::new("/tmp/reelay-escape.mp4").exists()
        || dir.path().parent().unwrap().join("outside.mp4").exists()
    {
        problems.push("a file was written outside the bucket".into());
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}",
        problems.len(),
        problems.join("\n")
    );
    let mut row = Row::new("bad_input", "local");
    row.cases = cases.len() as u64;
    row.faults = cases.len() as u64;
    row.completed = goods.len() as u64;
    row.notes = format!(
        "{} bad inputs, each recorded and dead-lettered after {MAX_RECEIVE} tries; {} good jobs beside them finished; {:.0}s",
        cases.len(),
        goods.len(),
        took.as_secs_f64()
    );
    vec![row, identical_work().await, moto().await]
}

/// The corpus's classes that mean the same on S3 (no symlinks, no file
/// names): strict JSON, shapes, times, hostile and forbidden outputs,
/// missing and broken sources, bounded drawing.
const MOTO_CASES: &[&str] = &[
    "jobs/bom.json",
    "jobs/two-values.json",
    "jobs/duplicate-key.json",
    "jobs/unknown-field.json",
    "jobs/backwards.json",
    "jobs/beyond.json",
    "jobs/missing-source.json",
    "jobs/escape-output.json",
    "jobs/over-upload.json",
    "jobs/over-itself.json",
    "jobs/over-claims.json",
    "jobs/outside-outputs.json",
    "jobs/nul-caption.json",
    "jobs/thirty-texts.json",
    "jobs/corrupt.json",
];

/// The bad-input corpus on moto, through real bucket notifications and
/// `reelay route` (issue 15): every case is recorded against its manifest
/// with the field and the fix and dead-lettered; the good job beside them
/// finishes; no user object changes; nothing is written outside reelay's
/// own prefixes and the good job's export, and nothing in another bucket.
async fn moto() -> Row {
    use crate::common::aws::{Aws, Layout, sigterm, wait_exit};
    let aws = Aws::start_with(
        "bad-input",
        Layout {
            extra_toml: JOB_RULE.into(),
            max_receive: MAX_RECEIVE as u32,
            ..Layout::default()
        },
    )
    .await;
    aws.moto.create_bucket("neighbour").await;
    let store = aws.store();
    let tiny = harness::tiny_video(&aws.dir.path().join("tiny.mp4"), 2.0);
    let bytes = std::fs::read(&tiny).unwrap();
    let mut corrupt = bytes.clone();
    for b in corrupt.iter_mut().take(256) {
        *b ^= 0x5a;
    }
    let put = |key: String, body: Vec<u8>| {
        let store = store.clone();
        async move {
            let meta = reelay::ports::store::Metadata::new();
            let condition = reelay::ports::store::PutCondition::Overwrite;
            store
                .put_bytes(&key, &body, "application/octet-stream", &meta, condition)
                .await
                .unwrap();
        }
    };
    put("sources/good.mp4".into(), bytes.clone()).await;
    put("sources/keep.mp4".into(), bytes).await;
    put("sources/corrupt.mp4".into(), corrupt).await;
    let cases: Vec<Case> = corpus("l")
        .into_iter()
        .filter(|c| MOTO_CASES.contains(&c.manifest.as_str()))
        .collect();
    assert_eq!(cases.len(), MOTO_CASES.len());
    put(
        "jobs/good.json".into(),
        one_clip("sources/good.mp4", "exports/good.mp4"),
    )
    .await;
    for c in &cases {
        put(c.manifest.clone(), c.body.clone()).await;
    }
    // Their notifications wait in the queue until the router starts.
    let before = harness::etags(&store, "").await;
    let started = Instant::now();
    let mut router = harness::spawn_reelay(&aws, &["route"], "bad-route.log", None);
    let store_records = || async {
        let mut out = Vec::new();
        for m in store.list("_reelay/failures/").await.unwrap() {
            let (b, _) = store.get_bytes(&m.key).await.unwrap();
            out.push(serde_json::from_slice::<Value>(&b).unwrap());
        }
        out
    };
    let settled = |all: &[Value]| {
        cases.iter().all(|c| {
            all.iter()
                .any(|r| belongs_to(r, &c.manifest) && r["dead_lettered"] == true)
        })
    };
    let mut all = Vec::new();
    while started.elapsed() < Duration::from_secs(150) {
        all = store_records().await;
        if settled(&all) && store.head("exports/good.mp4").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    sigterm(&router);
    let _ = wait_exit(&mut router, Duration::from_secs(30));
    let took = started.elapsed();
    let logs = harness::log_tails(aws.dir.path(), 1, 15);

    let export = aws.dir.path().join("good.mp4");
    store
        .get_to_file("exports/good.mp4", &export)
        .await
        .unwrap_or_else(|e| panic!("the good job did not finish: {e}{logs}"));
    let d = crate::common::duration(&export);
    assert!((d - 0.5).abs() < 0.1, "exports/good.mp4 lasts {d}");
    let mut problems = Vec::new();
    for c in &cases {
        let mine: Vec<&Value> = all.iter().filter(|r| belongs_to(r, &c.manifest)).collect();
        let Some(r) = mine.first() else {
            problems.push(format!("{}: no failure record", c.manifest));
            continue;
        };
        let error = r["error"].as_str().unwrap_or("");
        let field = r["field"].as_str().unwrap_or("");
        if mine.len() != 1 || r["dead_lettered"] != true || r["attempts"] != MAX_RECEIVE {
            problems.push(format!(
                "{}: want one record, dead-lettered after {MAX_RECEIVE} tries: {mine:?}",
                c.manifest
            ));
        }
        if field.is_empty() || !(error.contains(c.hint) || field.contains(c.hint)) {
            problems.push(format!(
                "{}: field {field:?} / error {error:?} does not name {:?}",
                c.manifest, c.hint
            ));
        }
        // A refusal at planning names the manifest and says the fix.
        if r["step"] == "plan" && (r["object"] != c.manifest.as_str() || !error.contains("Fix:")) {
            problems.push(format!(
                "{}: the refusal does not name the manifest and the fix: {r}",
                c.manifest
            ));
        }
    }
    // On S3 the extract finds the clip past the end; the record is still the manifest's field.
    let beyond = all.iter().find(|r| belongs_to(r, "jobs/beyond.json"));
    if beyond.is_some_and(|r| r["object"] != "jobs/beyond.json" || r["field"] != "clips[0].end") {
        problems.push(format!(
            "jobs/beyond.json: not named in the manifest's terms: {beyond:?}"
        ));
    }
    let after = harness::etags(&store, "").await;
    for (key, etag) in &before {
        if !key.starts_with("_reelay/") && after.get(key) != Some(etag) {
            problems.push(format!("user object {key} changed"));
        }
    }
    for key in after.keys() {
        let reelays = key.starts_with("_reelay/") || key.starts_with("work/");
        if !before.contains_key(key) && !reelays && key != "exports/good.mp4" {
            problems.push(format!("written outside reelay's places: {key}"));
        }
    }
    let neighbour = aws
        .moto
        .s3()
        .list_objects_v2()
        .bucket("neighbour")
        .send()
        .await
        .unwrap();
    if neighbour.key_count().unwrap_or(0) != 0 {
        problems.push(format!(
            "written to another bucket: {:?}",
            neighbour.contents()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s):\n{}{logs}",
        problems.len(),
        problems.join("\n")
    );
    let mut row = Row::new("bad_input", "moto");
    row.cases = cases.len() as u64;
    row.faults = cases.len() as u64;
    row.completed = 1;
    row.notes = format!(
        "{} bad inputs through real notifications, each recorded with its field and dead-lettered; the good job beside them finished; {:.0}s",
        cases.len(),
        took.as_secs_f64()
    );
    row
}

/// Identical work started together (issue 15): with `concurrency = 8`, 8
/// jobs cutting the same clip gave 3 exports, and the busy turn-aways were
/// dead-lettered without a failure record. Now: 8 exports, the shared
/// extract runs once, nothing dead-lettered.
async fn identical_work() -> Row {
    const JOBS: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("bucket");
    let config = dir.path().join("reelay.toml");
    std::fs::write(
        &config,
        format!("concurrency = {JOBS}\n{JOB_RULE}\n[queue]\nvisibility_seconds = 5\nmax_receive_count = {MAX_RECEIVE}\nretry_seconds = 1\n"),
    )
    .unwrap();
    harness::tiny_video(&root.join("sources/clip.mp4"), 2.0);
    for i in 0..JOBS {
        let p = root.join(format!("jobs/same-{i}.json"));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(
            p,
            one_clip("sources/clip.mp4", &format!("exports/same-{i}.mp4")),
        )
        .unwrap();
    }
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let (root, config) = (root.clone(), config.clone());
        move || crate::common::dev_until_idle(&root, Some(&config))
    })
    .await
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let completed = (0..JOBS)
        .filter(|i| harness::decode_fully(&root.join(format!("exports/same-{i}.mp4"))).is_ok())
        .count();
    let entries = crate::common::journal(&root);
    let mut dones = std::collections::BTreeMap::new();
    for e in entries.iter().filter(|e| e.event == "done") {
        *dones.entry(e.task.clone()).or_insert(0usize) += 1;
    }
    let busy = entries.iter().filter(|e| e.event == "busy").count();
    assert!(
        out.status.success() && !stderr.contains("dead-letter"),
        "{stderr}"
    );
    assert_eq!(
        completed, JOBS,
        "exports decoded: {completed} of {JOBS}: {stderr}"
    );
    assert!(
        records(&root).is_empty(),
        "failure records: {:?}",
        records(&root)
    );
    let mut row = Row::new("identical_work", "local");
    row.cases = JOBS as u64;
    row.faults = busy as u64;
    row.completed = completed as u64;
    row.lost = (JOBS - completed) as u64;
    row.duplicates = dones.values().map(|n| n - 1).sum::<usize>() as u64;
    row.notes = format!(
        "{JOBS} jobs cutting one clip at concurrency {JOBS}: {completed} exports, {busy} busy turn-aways requeued without spending a try, 0 dead letters; {:.0}s",
        started.elapsed().as_secs_f64()
    );
    row
}
