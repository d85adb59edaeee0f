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
use crate::pipeline::task::{JobRef, StepKind, Task, canonical_json};
use crate::pipeline::{placement, source_bounds};
use crate::policy::declarations;
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
            Some(RuleAction::Job) => plan_job(store, config, &event.key, true).await,
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
                let mut plan = plan_job(store, config, &job.manifest, false).await?;
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
    Ok(crate::pipeline::manifest::read(store, key).await??)
}

/// `probe`: check the clips against the source's duration (on an upload;
/// a finished step's job was checked when it was dropped).
async fn plan_job(
    store: &dyn ObjectStore,
    config: &Config,
    manifest_key: &str,
    probe: bool,
) -> Result<Plan, PlanError> {
    let (manifest, _) = load_manifest(store, manifest_key).await?;
    let job = JobRef {
        id: job_id(&manifest),
        manifest: manifest_key.to_string(),
    };
    // Where it writes is checked before any step runs.
    declarations::check_job_output(&config.file.layout, manifest_key, &manifest)?;
    if let Err(StoreError::InvalidKey { reason, .. }) = store.check_writable(&manifest.output) {
        return Err(ManifestError {
            object: manifest_key.to_string(),
            field: "output".into(),
            problem: format!("`{}` cannot be written: {reason}", manifest.output),
            fix: "write the export to a real folder in the bucket".into(),
        }
        .into());
    }
    if probe {
        source_bounds::check(store, manifest_key, &manifest).await?;
    }
    declarations::declare_output(store, manifest_key, &job.id, &manifest.output).await??;
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
mod tests;
