use super::*;
use crate::adapters::local_store::LocalStore;
use crate::ports::store::{Metadata, PutCondition};

const JOB: &str = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
    "clips": [{"start": 0, "end": 1}, {"start": 2, "end": 3, "caption": "Hi"}],
    "transition": {"kind": "fade", "seconds": 0.25}}"#;

async fn put(store: &LocalStore, key: &str, body: &[u8], task: Option<&str>) {
    let mut md = Metadata::new();
    if let Some(t) = task {
        md.insert(TASK_FIELD.into(), t.into());
    }
    store
        .put_bytes(key, body, "x", &md, PutCondition::Overwrite)
        .await
        .unwrap();
}

fn upload(key: &str) -> ObjectCreated {
    ObjectCreated::key_only("b", key)
}

#[tokio::test]
async fn fans_out_extracts_then_fans_in_to_compile() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/a.json", JOB.as_bytes(), None).await;
    let first = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    assert_eq!(first.ready.len(), 2);
    assert!(first.ready.iter().all(|t| t.kind == StepKind::Extract));
    assert_eq!(first.steps[2].state, StepState::Waiting);
    // Planning again changes nothing: same ids, same outputs.
    let again = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    assert_eq!(again.ready, first.ready);
    // Finish one extract: compile still waits for the other.
    let t0 = &first.ready[0];
    put(&store, &t0.output, b"clip0", Some(&t0.id)).await;
    let mid = plan(&store, &config, Trigger::Finished(t0)).await.unwrap();
    assert!(mid.ready.is_empty(), "a sibling is not a successor");
    assert_eq!(mid.steps[1].state, StepState::Ready);
    let t1 = &first.ready[1];
    put(&store, &t1.output, b"clip1", Some(&t1.id)).await;
    let last = plan(&store, &config, Trigger::Finished(t1)).await.unwrap();
    assert_eq!(last.ready.len(), 1);
    let compile = &last.ready[0];
    assert_eq!(compile.kind, StepKind::Compile);
    assert_eq!(compile.output, "exports/h.mp4");
    assert_eq!(compile.inputs.len(), 2);
    assert!(compile.inputs[0].starts_with(&t0.output));
    put(&store, &compile.output, b"export", Some(&compile.id)).await;
    let end = plan(&store, &config, Trigger::Finished(compile))
        .await
        .unwrap();
    assert!(end.ready.is_empty() && end.complete());
}

#[tokio::test]
async fn a_framed_clip_goes_extract_then_frame_on_the_gpu_then_compile() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    let job = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
        "placement": "fan-out",
        "clips": [{"start": 0, "end": 1},
                  {"start": 2, "end": 3, "framing": {"crop": {"x": 8, "y": 4, "w": 64, "h": 36},
                                                     "model": "realesr-general-x4v3", "size": "256x144"}}]}"#;
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/a.json", job.as_bytes(), None).await;
    let first = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    let names: Vec<_> = first
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.kind))
        .collect();
    assert_eq!(
        names,
        [
            ("extract-0", StepKind::Extract),
            ("extract-1", StepKind::Extract),
            ("frame-1", StepKind::Frame),
            ("compile", StepKind::Compile)
        ]
    );
    assert_eq!(
        StepKind::Frame.hardware(),
        crate::pipeline::task::Hardware::Gpu
    );
    let (e0, e1) = (&first.ready[0], &first.ready[1]);
    put(&store, &e1.output, b"clip1", Some(&e1.id)).await;
    let after = plan(&store, &config, Trigger::Finished(e1)).await.unwrap();
    assert_eq!(after.ready.len(), 1, "the frame step, not the compile");
    let frame = &after.ready[0];
    assert_eq!(frame.kind, StepKind::Frame);
    assert!(frame.inputs[0].starts_with(&e1.output));
    assert_eq!(frame.params["model"], "realesr-general-x4v3");
    assert_eq!(frame.params["crop"]["w"], 64);
    assert_eq!(frame.params["size"], "256x144");
    put(&store, &e0.output, b"clip0", Some(&e0.id)).await;
    let waiting = plan(&store, &config, Trigger::Finished(e0)).await.unwrap();
    assert!(waiting.ready.is_empty(), "compile waits for the frame step");
    put(&store, &frame.output, b"framed", Some(&frame.id)).await;
    let last = plan(&store, &config, Trigger::Finished(frame))
        .await
        .unwrap();
    let compile = &last.ready[0];
    assert_eq!(compile.kind, StepKind::Compile);
    assert!(compile.inputs[0].starts_with(&e0.output));
    assert!(
        compile.inputs[1].starts_with(&frame.output),
        "compile takes the frame output"
    );
}

#[tokio::test]
async fn an_output_by_another_task_does_not_count_as_done() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/a.json", JOB.as_bytes(), None).await;
    let p = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    put(&store, &p.ready[0].output, b"stale", Some("someone-else")).await;
    let again = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    assert_eq!(again.ready.len(), 2);
}

#[tokio::test]
async fn a_new_source_version_gives_new_task_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/a.json", JOB.as_bytes(), None).await;
    let before = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    put(&store, "sources/m.mp4", b"video v2", None).await;
    let after = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    assert_ne!(before.ready[0].id, after.ready[0].id);
}

#[tokio::test]
async fn missing_source_and_bad_manifest_are_permanent_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "jobs/a.json", JOB.as_bytes(), None).await;
    let e = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap_err();
    assert!(e.is_permanent());
    assert!(e.to_string().contains("jobs/a.json: `source`"), "{e}");
    put(
        &store,
        "jobs/b.json",
        b"{\"version\": 1, \"sauce\": 1}",
        None,
    )
    .await;
    let e = plan(&store, &config, Trigger::Upload(&upload("jobs/b.json")))
        .await
        .unwrap_err();
    assert!(e.is_permanent() && e.to_string().contains("sauce"), "{e}");
}

#[tokio::test]
async fn uploads_without_a_rule_plan_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    put(&store, "sources/notes.txt", b"text", None).await;
    let p = plan(
        &store,
        &Config::defaults(),
        Trigger::Upload(&upload("sources/notes.txt")),
    )
    .await
    .unwrap();
    assert!(p.ready.is_empty() && p.job.is_none());
}

#[tokio::test]
async fn an_uploaded_video_is_detected_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    put(&store, "sources/a/m.mp4", b"video", None).await;
    let p = plan(
        &store,
        &Config::defaults(),
        Trigger::Upload(&upload("sources/a/m.mp4")),
    )
    .await
    .unwrap();
    assert_eq!(p.ready.len(), 1);
    assert_eq!(p.ready[0].kind, StepKind::Detect);
    assert_eq!(p.ready[0].output, "detections/a/m.mp4.json");
}

#[tokio::test]
async fn overlays_chain_after_their_clip_and_share_the_rules_detect_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    let job = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
        "clips": [{"start": 0, "end": 1},
                  {"start": 2, "end": 3, "overlay": {"spotlight": {"track": {"pick": {"t": 0.5, "x": 10, "y": 10}}}}}]}"#;
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/a.json", job.as_bytes(), None).await;
    let p = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        ["extract-0", "extract-1", "detect", "overlay-1", "compile"]
    );
    assert_eq!(p.ready.len(), 3, "two extracts and the detect");
    let detect = p.ready.iter().find(|t| t.kind == StepKind::Detect).unwrap();
    // The default rule's task for the source upload is the same task.
    let rule = plan(&store, &config, Trigger::Upload(&upload("sources/m.mp4")))
        .await
        .unwrap();
    assert_eq!(rule.ready[0].id, detect.id);
    assert_eq!(rule.ready[0].output, detect.output);
    // The overlay waits for its clip and the detections; compile for the overlay.
    let e1 = p.ready.iter().find(|t| t.step == "extract-1").unwrap();
    put(&store, &e1.output, b"clip", Some(&e1.id)).await;
    put(&store, &detect.output, b"{}", Some(&detect.id)).await;
    let next = plan(&store, &config, Trigger::Finished(e1)).await.unwrap();
    assert_eq!(next.ready.len(), 1);
    let overlay = &next.ready[0];
    assert_eq!(overlay.kind, StepKind::Overlay);
    assert_eq!(overlay.inputs.len(), 2);
    assert!(overlay.inputs[1].starts_with("detections/m.mp4.json@"));
    assert_eq!(overlay.params["offset"], 2.0);
    let e0 = p.ready.iter().find(|t| t.step == "extract-0").unwrap();
    put(&store, &e0.output, b"clip", Some(&e0.id)).await;
    put(&store, &overlay.output, b"clip", Some(&overlay.id)).await;
    let last = plan(&store, &config, Trigger::Finished(overlay))
        .await
        .unwrap();
    assert_eq!(last.ready.len(), 1);
    assert_eq!(last.ready[0].kind, StepKind::Compile);
    assert!(last.ready[0].inputs[1].starts_with(&overlay.output));
}

const MIXED: &str = r#"{"version": 1, "source": "sources/m.mp4", "output": "exports/h.mp4",
    "placement": "PLACEMENT",
    "clips": [{"start": 0, "end": 1},
              {"start": 2, "end": 3,
               "framing": {"crop": {"x": 8, "y": 4, "w": 64, "h": 36},
                           "model": "realesr-general-x4v3", "size": "256x144"},
               "overlay": {"spotlight": {"keyframes": [{"t": 0, "x": 128, "y": 72, "rx": 40, "ry": 30}]}}},
              {"start": 4, "end": 5,
               "overlay": {"spotlight": {"track": {"pick": {"t": 0.5, "x": 10, "y": 10}}}}}]}"#;

#[tokio::test]
async fn fan_out_fuses_a_framed_clips_overlay_into_its_frame_step() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    let job = MIXED.replace("PLACEMENT", "fan-out");
    put(&store, "jobs/a.json", job.as_bytes(), None).await;
    let p = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "extract-0",
            "extract-1",
            "extract-2",
            "frame-1",
            "detect",
            "overlay-2",
            "compile"
        ],
        "no overlay step for the framed clip"
    );
    let e1 = p.ready.iter().find(|t| t.step == "extract-1").unwrap();
    put(&store, &e1.output, b"clip", Some(&e1.id)).await;
    let next = plan(&store, &config, Trigger::Finished(e1)).await.unwrap();
    let frame = &next.ready[0];
    assert_eq!(frame.kind, StepKind::Frame);
    assert_eq!(frame.inputs.len(), 1, "keyframes need no detections");
    assert_eq!(
        frame.params["overlay"]["spec"]["spotlight"]["keyframes"][0]["x"],
        128.0
    );
    assert_eq!(frame.params["overlay"]["offset"], 2.0);
}

#[tokio::test]
async fn single_container_is_one_export_task_after_the_detect_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    let job = MIXED.replace("PLACEMENT", "single-container");
    put(&store, "jobs/a.json", job.as_bytes(), None).await;
    let p = plan(&store, &config, Trigger::Upload(&upload("jobs/a.json")))
        .await
        .unwrap();
    let names: Vec<&str> = p.steps.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["detect", "export"]);
    assert_eq!(p.ready.len(), 1);
    let detect = &p.ready[0];
    assert_eq!(detect.kind, StepKind::Detect);
    put(&store, &detect.output, b"{}", Some(&detect.id)).await;
    let next = plan(&store, &config, Trigger::Finished(detect))
        .await
        .unwrap();
    assert_eq!(next.ready.len(), 1);
    let export = &next.ready[0];
    assert_eq!(export.kind, StepKind::Export);
    assert_eq!(export.output, "exports/h.mp4", "straight to the export");
    assert_eq!(export.inputs.len(), 2);
    assert!(export.inputs[0].starts_with("sources/m.mp4@"));
    assert!(export.inputs[1].starts_with("detections/m.mp4.json@"));
    let clips = &export.params["clips"];
    assert!(clips[0].get("framing").is_none() && clips[0].get("overlay").is_none());
    assert_eq!(clips[1]["framing"]["overlay"]["offset"], 2.0);
    assert!(clips[1].get("overlay").is_none());
    assert_eq!(clips[2]["overlay"]["offset"], 4.0);
    assert_eq!(clips[2]["detections"], serde_json::json!([0]));
    crate::tasks::validate_params(StepKind::Export, &export.params).unwrap();
}

fn job_to(output: &str) -> String {
    JOB.replace("exports/h.mp4", output)
}

/// The adversarial cases: a job's `output` over another upload, over its
/// own manifest, under `jobs/` (it would run as a job), under `sources/`
/// (it would retrigger the default rule), or under reelay's reserved
/// prefixes. Each is refused at planning, before any step, naming the
/// object, the field and the fix.
#[tokio::test]
async fn outputs_over_user_objects_or_reserved_prefixes_are_refused_at_planning() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "sources/keep.mp4", b"keep", None).await;
    for output in [
        "sources/keep.mp4",
        "jobs/j.json",
        "jobs/other.json",
        "sources/new.mp4",
        "_reelay/claims/x.json",
        "_reelay/failures/x.json",
        "work/x.mp4",
        "elsewhere/x.mp4",
    ] {
        put(&store, "jobs/j.json", job_to(output).as_bytes(), None).await;
        let e = plan(&store, &config, Trigger::Upload(&upload("jobs/j.json")))
            .await
            .unwrap_err();
        assert!(e.is_permanent(), "{e}");
        let PlanError::Manifest(m) = &e else {
            panic!("{e}")
        };
        assert_eq!(
            (m.object.as_str(), m.field.as_str()),
            ("jobs/j.json", "output"),
            "{e}"
        );
        assert!(m.problem.contains(output), "{e}");
        assert!(m.fix.contains("`exports/`"), "{e}");
    }
    assert_eq!(
        store.get_bytes("sources/keep.mp4").await.unwrap().0,
        b"keep"
    );
    // The configured prefixes are what is allowed.
    let mut file = crate::config::ConfigFile::default();
    crate::config::apply_env(&mut file, |k| {
        (k == "REELAY_OUTPUT_PREFIXES").then(|| "elsewhere,exports/".to_string())
    })
    .unwrap();
    let config = Config::from_file("env", file).unwrap();
    put(
        &store,
        "jobs/j.json",
        job_to("elsewhere/x.mp4").as_bytes(),
        None,
    )
    .await;
    plan(&store, &config, Trigger::Upload(&upload("jobs/j.json")))
        .await
        .unwrap();
}

/// Two jobs with one output took turns overwriting it; now the second
/// is refused, naming the first. The same job under two names is one job.
#[tokio::test]
async fn a_second_job_with_the_same_output_is_refused_naming_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let config = Config::defaults();
    put(&store, "sources/m.mp4", b"video", None).await;
    put(&store, "jobs/first.json", JOB.as_bytes(), None).await;
    let other = JOB.replace("\"end\": 1}", "\"end\": 1.5}");
    put(&store, "jobs/second.json", other.as_bytes(), None).await;
    put(&store, "jobs/copy.json", JOB.as_bytes(), None).await;
    plan(&store, &config, Trigger::Upload(&upload("jobs/first.json")))
        .await
        .unwrap();
    let e = plan(
        &store,
        &config,
        Trigger::Upload(&upload("jobs/second.json")),
    )
    .await
    .unwrap_err();
    let PlanError::Manifest(m) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        (m.object.as_str(), m.field.as_str()),
        ("jobs/second.json", "output")
    );
    assert!(m.problem.contains("jobs/first.json"), "{e}");
    plan(&store, &config, Trigger::Upload(&upload("jobs/copy.json")))
        .await
        .unwrap();
    // Once the first job names another output, the second may have it.
    put(
        &store,
        "jobs/first.json",
        job_to("exports/other.mp4").as_bytes(),
        None,
    )
    .await;
    plan(
        &store,
        &config,
        Trigger::Upload(&upload("jobs/second.json")),
    )
    .await
    .unwrap();
}

/// A store that fails the test if a manifest over the limit is read.
struct NoBigReads(LocalStore);

#[async_trait::async_trait]
impl ObjectStore for NoBigReads {
    fn describe(&self) -> String {
        self.0.describe()
    }
    async fn head(&self, key: &str) -> Result<Option<ObjectMeta>, StoreError> {
        self.0.head(key).await
    }
    async fn get_to_file(
        &self,
        key: &str,
        dest: &std::path::Path,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.get_to_file(key, dest).await
    }
    async fn get_bytes(&self, key: &str) -> Result<(Vec<u8>, ObjectMeta), StoreError> {
        let size = self.0.head(key).await?.map_or(0, |m| m.size);
        assert!(
            size <= crate::pipeline::manifest::MAX_MANIFEST_BYTES as u64,
            "read {size} bytes of {key}"
        );
        self.0.get_bytes(key).await
    }
    async fn put_file(
        &self,
        key: &str,
        src: &std::path::Path,
        ct: &str,
        md: &Metadata,
    ) -> Result<ObjectMeta, StoreError> {
        self.0.put_file(key, src, ct, md).await
    }
    async fn put_bytes(
        &self,
        key: &str,
        b: &[u8],
        ct: &str,
        md: &Metadata,
        c: PutCondition,
    ) -> Result<crate::ports::store::PutOutcome, StoreError> {
        self.0.put_bytes(key, b, ct, md, c).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        self.0.list(prefix).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.0.delete(key).await
    }
}

#[tokio::test]
async fn a_huge_manifest_is_refused_by_its_size_without_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = NoBigReads(LocalStore::open(dir.path()).unwrap());
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let f = std::fs::File::create(dir.path().join("jobs/huge.json")).unwrap();
    f.set_len(64 << 20).unwrap();
    let e = plan(
        &store,
        &Config::defaults(),
        Trigger::Upload(&upload("jobs/huge.json")),
    )
    .await
    .unwrap_err();
    assert!(
        e.is_permanent() && e.to_string().contains("over the 1 MiB limit"),
        "{e}"
    );
}

/// An output under an existing symlinked folder is refused at planning.
#[tokio::test]
async fn an_output_under_a_symlinked_folder_is_refused_at_planning() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    put(&store, "sources/m.mp4", b"video", None).await;
    std::fs::create_dir_all(dir.path().join("exports")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("sources"), dir.path().join("exports/in")).unwrap();
    put(
        &store,
        "jobs/a.json",
        job_to("exports/in/m.mp4").as_bytes(),
        None,
    )
    .await;
    let e = plan(
        &store,
        &Config::defaults(),
        Trigger::Upload(&upload("jobs/a.json")),
    )
    .await
    .unwrap_err();
    let PlanError::Manifest(m) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        (m.object.as_str(), m.field.as_str()),
        ("jobs/a.json", "output")
    );
    assert!(m.problem.contains("`exports/in` is a symlink"), "{e}");
    assert_eq!(store.get_bytes("sources/m.mp4").await.unwrap().0, b"video");
}

/// A symlinked source is named as the manifest's `source` problem.
#[tokio::test]
async fn a_symlinked_source_is_named_by_field_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(dir.path()).unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("m.mp4"), b"video").unwrap();
    std::fs::create_dir_all(dir.path().join("sources")).unwrap();
    std::os::unix::fs::symlink(
        outside.path().join("m.mp4"),
        dir.path().join("sources/m.mp4"),
    )
    .unwrap();
    put(&store, "jobs/a.json", JOB.as_bytes(), None).await;
    let e = plan(
        &store,
        &Config::defaults(),
        Trigger::Upload(&upload("jobs/a.json")),
    )
    .await
    .unwrap_err();
    let PlanError::Manifest(m) = &e else {
        panic!("{e}")
    };
    assert_eq!(
        (m.object.as_str(), m.field.as_str()),
        ("jobs/a.json", "source")
    );
    assert!(
        m.problem.contains("symlink") && m.fix.contains("not a symlink"),
        "{e}"
    );
}
