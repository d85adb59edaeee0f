//! The one planner. Whoever learns of a new object (the router for uploads,
//! any worker after writing an output, `reconcile` for a backlog) calls
//! [`plan`], which answers which steps are ready and not yet done.
//!
//! It keeps no state: a step is done when its output exists carrying its task
//! id, so planning twice, late, or after a crash gives the same answer.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::config::rules::{DEFAULT_DETECTIONS_OUTPUT, RuleAction, render_template};
use crate::events::ObjectCreated;
use crate::overlay::spec::OverlaySpec;
use crate::pipeline::manifest::{Clip, JobManifest, ManifestError, Placement};
use crate::pipeline::placement;
use crate::pipeline::task::{JobRef, StepKind, Task, canonical_json};
use crate::policy::outputs;
use crate::ports::store::{ObjectMeta, ObjectStore, StoreError};
use crate::tasks::compile::{CompileParams, Transition, TransitionKind};
use crate::tasks::export::{ExportClip, ExportParams};
use crate::tasks::extract::ExtractParams;
use crate::tasks::frame::FrameParams;
use crate::tasks::overlay::OverlayParams;

/// Audit field holding the id of the task that wrote an object.
pub const TASK_FIELD: &str = "reelay-task";

/// What caused planning.
#[derive(Debug, Clone, Copy)]
pub enum Trigger<'a> {
    /// A user upload (a notification, the local watcher, or reconcile).
    Upload(&'a ObjectCreated),
    /// A step finished and wrote its output.
    Finished(&'a Task),
}

/// A step of a job's DAG before its inputs are known.
#[derive(Debug, Clone)]
pub struct PlannedStep {
    pub name: String,
    pub kind: StepKind,
    pub inputs: Vec<StepInput>,
    pub params: serde_json::Value,
    /// `None`: derived from the task id under the job's work folder.
    pub output: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepInput {
    /// An object users put in the bucket.
    Object(String),
    /// The output of an earlier step, by index.
    Step(usize),
}

/// Where each step of a job stands.
#[derive(Debug, Clone, Serialize)]
pub struct StepStatus {
    pub name: String,
    pub kind: StepKind,
    pub state: StepState,
    /// The output key, once the inputs are known.
    pub output: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepState {
    Done,
    Ready,
    Waiting,
}

/// The planner's answer.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub ready: Vec<Task>,
    pub job: Option<JobRef>,
    pub steps: Vec<StepStatus>,
}

impl Plan {
    /// True when the job's final output exists.
    pub fn complete(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.state == StepState::Done)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PlanError {
    /// Bad input (retrying cannot help) versus a storage hiccup.
    pub fn is_permanent(&self) -> bool {
        match self {
            PlanError::Manifest(_) => true,
            PlanError::Store(e) => matches!(
                e,
                StoreError::InvalidKey { .. } | StoreError::NotFound { .. }
            ),
        }
    }
}

/// The one planning function.
pub async fn plan(
    store: &dyn ObjectStore,
    config: &Config,
    trigger: Trigger<'_>,
) -> Result<Plan, PlanError> {
    match trigger {
        Trigger::Upload(event) => match config.rule_for(&event.key).map(|r| r.action.clone()) {
            None => Ok(Plan::default()),
            Some(RuleAction::Job) => plan_job(store, config, &event.key).await,
            Some(RuleAction::Step {
                kind,
                params,
                output,
            }) => {
                let Some(meta) = store.head(&event.key).await? else {
                    // Deleted since the notification: nothing to do.
                    return Ok(Plan::default());
                };
                let rule = config
                    .rule_for(&event.key)
                    .map(|r| r.name.clone())
                    .unwrap_or_default();
                let inputs = vec![meta.reference()];
                let task = if output.contains("{task}") {
                    Task::new(kind, rule, None, inputs, params, |id| {
                        render_template(&output, &event.key, id)
                    })
                } else {
                    let output = render_template(&output, &event.key, "");
                    Task::to_output(kind, rule, None, inputs, params, output)
                };
                let done = is_done(store, &task.output, &task.id).await?.is_some();
                Ok(Plan {
                    ready: if done { vec![] } else { vec![task] },
                    job: None,
                    steps: vec![],
                })
            }
        },
        Trigger::Finished(task) => match &task.job {
            Some(job) => {
                // Only the finished step's successors: its siblings were dispatched
                // by whoever made them ready, and `reconcile` re-drives lost ones.
                let mut plan = plan_job(store, config, &job.manifest).await?;
                plan.ready
                    .retain(|next| next.input_keys().any(|k| k == task.output));
                Ok(plan)
            }
            None => Ok(Plan::default()),
        },
    }
}

/// The id of a job: a hash of its canonical manifest, so the same job dropped
/// twice (even under two names) shares its work folder and its steps.
pub fn job_id(manifest: &JobManifest) -> String {
    let canonical = canonical_json(&serde_json::to_value(manifest).expect("manifests serialise"));
    hex::encode(&Sha256::digest(canonical.as_bytes())[..6])
}

/// The DAG of a job, by its placement ([`placement::choose`]).
///
/// - **fan-out:** `extract` per clip; then per clip `frame` (with the
///   clip's overlay drawn in the same pass) or `overlay`; then `compile`
///   over every clip's last step.
/// - **single-container:** one `export` task does all of that on one GPU
///   worker, writing the export and nothing else.
///
/// Either way, overlays that track through the source's own detections
/// wait for one shared `detect` step, the same task as the default rule's.
pub fn job_steps(manifest: &JobManifest) -> Vec<PlannedStep> {
    match placement::choose(manifest) {
        Placement::FanOut => fan_out_steps(manifest),
        Placement::SingleContainer => single_container_steps(manifest),
    }
}

fn compile_params(manifest: &JobManifest) -> CompileParams {
    CompileParams {
        transition: manifest.transition.clone().unwrap_or(Transition {
            kind: TransitionKind::None,
            seconds: 0.0,
        }),
        captions: manifest.clips.iter().map(|c| c.caption.clone()).collect(),
    }
}

/// A clip's overlay as step parameters: clip time + its start = source time.
fn overlay_params(clip: &Clip) -> Option<OverlayParams> {
    clip.overlay.as_ref().map(|spec| OverlayParams {
        spec: spec.clone(),
        offset: Some(clip.start),
    })
}

/// The detections a job's overlays track through: uploaded objects as they
/// are, the source's own from one `detect` step added on first use.
struct DetectionsInputs {
    own: String,
    source: String,
    detect_step: Option<usize>,
}

impl DetectionsInputs {
    fn new(manifest: &JobManifest) -> Self {
        DetectionsInputs {
            own: render_template(DEFAULT_DETECTIONS_OUTPUT, &manifest.source, ""),
            source: manifest.source.clone(),
            detect_step: None,
        }
    }

    /// One input per distinct detections source of `spec`, in order.
    fn for_spec(&mut self, spec: &OverlaySpec, steps: &mut Vec<PlannedStep>) -> Vec<StepInput> {
        spec.detections_sources()
            .into_iter()
            .map(|source| match source {
                Some(key) if key != self.own => StepInput::Object(key),
                _ => StepInput::Step(*self.detect_step.get_or_insert_with(|| {
                    steps.push(PlannedStep {
                        name: "detect".into(),
                        kind: StepKind::Detect,
                        inputs: vec![StepInput::Object(self.source.clone())],
                        params: serde_json::json!({}),
                        output: Some(self.own.clone()),
                    });
                    steps.len() - 1
                })),
            })
            .collect()
    }
}

fn fan_out_steps(manifest: &JobManifest) -> Vec<PlannedStep> {
    let mut steps: Vec<PlannedStep> = manifest
        .clips
        .iter()
        .enumerate()
        .map(|(i, clip)| PlannedStep {
            name: format!("extract-{i}"),
            kind: StepKind::Extract,
            inputs: vec![StepInput::Object(manifest.source.clone())],
            params: serde_json::to_value(ExtractParams {
                start: clip.start,
                end: clip.end,
                accurate: manifest.accurate,
            })
            .expect("params serialise"),
            output: None,
        })
        .collect();
    let mut detections = DetectionsInputs::new(manifest);
    // The step whose output is each clip: its extract, or the frame or
    // overlay step after it; compile takes these.
    let mut clip_step: Vec<usize> = (0..steps.len()).collect();
    for (i, clip) in manifest.clips.iter().enumerate() {
        let mut inputs = vec![StepInput::Step(clip_step[i])];
        if let Some(spec) = &clip.overlay {
            inputs.extend(detections.for_spec(spec, &mut steps));
        }
        let (name, kind, params) = match (&clip.framing, overlay_params(clip)) {
            (Some(framing), overlay) => {
                let params = FrameParams {
                    overlay,
                    ..FrameParams::from(framing.clone())
                };
                ("frame", StepKind::Frame, serde_json::to_value(params))
            }
            (None, Some(overlay)) => ("overlay", StepKind::Overlay, serde_json::to_value(overlay)),
            (None, None) => continue,
        };
        steps.push(PlannedStep {
            name: format!("{name}-{i}"),
            kind,
            inputs,
            params: params.expect("params serialise"),
            output: None,
        });
        clip_step[i] = steps.len() - 1;
    }
    steps.push(PlannedStep {
        name: "compile".into(),
        kind: StepKind::Compile,
        inputs: clip_step.into_iter().map(StepInput::Step).collect(),
        params: serde_json::to_value(compile_params(manifest)).expect("params serialise"),
        output: Some(manifest.output.clone()),
    });
    steps
}

fn single_container_steps(manifest: &JobManifest) -> Vec<PlannedStep> {
    let mut steps = Vec::new();
    let mut detections = DetectionsInputs::new(manifest);
    // The export's inputs: the source, then each distinct detections input.
    let mut inputs = vec![StepInput::Object(manifest.source.clone())];
    let mut clips = Vec::with_capacity(manifest.clips.len());
    for clip in &manifest.clips {
        let mut indexes = Vec::new();
        if let Some(spec) = &clip.overlay {
            for input in detections.for_spec(spec, &mut steps) {
                let at = match inputs.iter().position(|i| *i == input) {
                    Some(at) => at,
                    None => {
                        inputs.push(input);
                        inputs.len() - 1
                    }
                };
                indexes.push(at - 1);
            }
        }
        let overlay = overlay_params(clip);
        clips.push(ExportClip {
            start: clip.start,
            end: clip.end,
            framing: clip.framing.clone().map(|f| FrameParams {
                overlay: overlay.clone(),
                ..FrameParams::from(f)
            }),
            overlay: overlay.filter(|_| clip.framing.is_none()),
            detections: indexes,
        });
    }
    steps.push(PlannedStep {
        name: "export".into(),
        kind: StepKind::Export,
        inputs,
        params: serde_json::to_value(ExportParams {
            clips,
            accurate: manifest.accurate,
            compile: compile_params(manifest),
        })
        .expect("params serialise"),
        output: Some(manifest.output.clone()),
    });
    steps
}

/// Loads and validates a manifest from the bucket.
pub async fn load_manifest(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<(JobManifest, ObjectMeta), PlanError> {
    // The size first: a huge file in `jobs/` is refused without reading it.
    if let Some(meta) = store.head(key).await? {
        JobManifest::check_size(key, meta.size)?;
    }
    let (bytes, meta) = store.get_bytes(key).await?;
    Ok((JobManifest::parse(key, &bytes)?, meta))
}

async fn plan_job(
    store: &dyn ObjectStore,
    config: &Config,
    manifest_key: &str,
) -> Result<Plan, PlanError> {
    let (manifest, _) = load_manifest(store, manifest_key).await?;
    let job = JobRef {
        id: job_id(&manifest),
        manifest: manifest_key.to_string(),
    };
    // Where it writes is checked before any step runs.
    outputs::check_job_output(&config.file.layout, manifest_key, &manifest)?;
    if let Err(StoreError::InvalidKey { reason, .. }) = store.check_writable(&manifest.output) {
        return Err(ManifestError {
            object: manifest_key.to_string(),
            field: "output".into(),
            problem: format!("`{}` cannot be written: {reason}", manifest.output),
            fix: "write the export to a real folder in the bucket".into(),
        }
        .into());
    }
    outputs::declare_output(store, manifest_key, &job.id, &manifest.output).await??;
    // Intermediate outputs are named by their task alone: a task id is a
    // hash of its kind, inputs and parameters, so jobs that need the same
    // step (8 jobs cutting one clip) share one execution and one object.
    let work = format!("{}steps/", config.file.layout.work);
    let steps = job_steps(&manifest);
    let mut done: Vec<Option<ObjectMeta>> = Vec::with_capacity(steps.len());
    let mut plan = Plan {
        job: Some(job.clone()),
        ..Plan::default()
    };
    for step in &steps {
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for input in &step.inputs {
            match input {
                StepInput::Object(key) => {
                    match input_head(store, manifest_key, &manifest, key).await? {
                        Some(meta) => inputs.push(Some(meta.reference())),
                        None => {
                            let field = input_field(&manifest, key);
                            return Err(ManifestError {
                            object: manifest_key.to_string(),
                            field: field.into(),
                            problem: format!("object `{key}` is not in the bucket"),
                            fix: "upload it first, then drop the job again (or run `reelay reconcile`)".into(),
                        }
                        .into());
                        }
                    }
                }
                StepInput::Step(i) => inputs.push(done[*i].as_ref().map(|m| m.reference())),
            }
        }
        let status = if inputs.iter().all(Option::is_some) {
            let inputs = inputs.into_iter().map(Option::unwrap).collect();
            let (kind, name, job, params) = (
                step.kind,
                step.name.clone(),
                Some(job.clone()),
                step.params.clone(),
            );
            let task = match &step.output {
                Some(output) => Task::to_output(kind, name, job, inputs, params, output.clone()),
                None => Task::new(kind, name, job, inputs, params, |id| {
                    format!("{work}{kind}-{id}.{}", kind.output_extension())
                }),
            };
            let existing = is_done(store, &task.output, &task.id).await?;
            let state = if existing.is_some() {
                StepState::Done
            } else {
                StepState::Ready
            };
            let output = Some(task.output.clone());
            done.push(existing);
            if state == StepState::Ready {
                plan.ready.push(task);
            }
            StepStatus {
                name: step.name.clone(),
                kind: step.kind,
                state,
                output,
            }
        } else {
            done.push(None);
            StepStatus {
                name: step.name.clone(),
                kind: step.kind,
                state: StepState::Waiting,
                output: None,
            }
        };
        plan.steps.push(status);
    }
    Ok(plan)
}

fn input_field(manifest: &JobManifest, key: &str) -> &'static str {
    if key == manifest.source {
        "source"
    } else {
        "clips[].overlay.track.detections"
    }
}

/// An input object's metadata; a key the store refuses (a symlink, a key it
/// cannot hold) is the manifest's fault and named as such.
async fn input_head(
    store: &dyn ObjectStore,
    manifest_key: &str,
    manifest: &JobManifest,
    key: &str,
) -> Result<Option<ObjectMeta>, PlanError> {
    match store.head(key).await {
        Ok(meta) => Ok(meta),
        Err(StoreError::InvalidKey { reason, .. }) => Err(ManifestError {
            object: manifest_key.to_string(),
            field: input_field(manifest, key).into(),
            problem: format!("object `{key}` cannot be read: {reason}"),
            fix: "upload the file itself under that key (not a symlink), then drop the job again"
                .into(),
        }
        .into()),
        Err(e) => Err(e.into()),
    }
}

/// The output's metadata when it exists and was written by task `id`.
pub async fn is_done(
    store: &dyn ObjectStore,
    output: &str,
    id: &str,
) -> Result<Option<ObjectMeta>, StoreError> {
    Ok(store
        .head(output)
        .await?
        .filter(|m| m.metadata.get(TASK_FIELD).map(String::as_str) == Some(id)))
}

#[cfg(test)]
mod tests {
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
        ObjectCreated {
            bucket: "b".into(),
            key: key.into(),
            size: None,
            etag: None,
            version: None,
            sequencer: None,
            time: None,
        }
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
        std::os::unix::fs::symlink(dir.path().join("sources"), dir.path().join("exports/in"))
            .unwrap();
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
}
