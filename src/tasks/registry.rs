//! The step registry: every step kind is one type implementing [`Step`] (its
//! params type, validation, hardware and `run`), and every caller (the
//! executor, `reelay run`, rule and manifest validation, the planner) reaches
//! a kind through [`step`]. That function holds the only `match` on
//! [`StepKind`] in the codebase, so adding a kind is one type plus one arm.
//!
//! The registry also owns what all kinds share, so it is done the same way
//! for each: parameters that do not deserialise or validate are a permanent
//! error naming the field; a task with the wrong number of inputs is a
//! permanent error naming `inputs` (never an index panic); a bad `device` is a
//! permanent error naming `device`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{StepOutput, TaskError, compile, detect, export, extract, frame, overlay};
use crate::inference::Device;
use crate::media::{EncodeProfile, Ffmpeg, Progress};

/// The step kinds reelay knows; [`step`] gives each one's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    Extract,
    Compile,
    /// Crop, upscale with a model, resize, encode: on the GPU fleet.
    Frame,
    Detect,
    Overlay,
    /// A whole job in one GPU task (the `single-container` placement).
    Export,
}

/// Where a step runs: in the router, or on the GPU fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hardware {
    Cpu,
    Gpu,
}

/// How many input files a kind takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arity {
    /// Exactly one (a clip to cut, a video to scan).
    One,
    /// The main input, then optional extras (detections files, more clips).
    AtLeastOne,
}

/// What a running step gets besides its inputs, output and params.
pub struct StepContext<'a> {
    pub ffmpeg: &'a Ffmpeg,
    /// The encoding settings of `[output]`.
    pub profile: &'a EncodeProfile,
    /// The configured inference device (`cpu`, `cuda`, `auto`).
    pub device: &'a str,
    pub on_progress: &'a mut dyn FnMut(Progress),
    pub cancel: &'a CancellationToken,
}

impl StepContext<'_> {
    /// The configured device, parsed once the same way for every kind: a
    /// device that does not parse is the configuration's fault, permanent.
    pub fn device(&self) -> Result<Device, TaskError> {
        self.device.parse().map_err(|e: String| {
            TaskError::permanent(
                Some("device".into()),
                format!("device: {e} (set `device` in reelay.toml or REELAY_DEVICE)"),
            )
        })
    }
}

/// One step kind: the single place its behaviour is declared.
pub trait Step: Send + Sync + 'static {
    /// The kind's parameters, as carried in a task's `params`.
    type Params: DeserializeOwned + Send;
    /// The kind's name in tasks, rules and `reelay run`.
    const NAME: &'static str;
    /// Where the kind runs unless `[placement]` says otherwise.
    const HARDWARE: Hardware;
    /// How many inputs the kind takes.
    const ARITY: Arity;
    /// Extension of the object the kind writes.
    const OUTPUT_EXTENSION: &'static str = "mp4";

    /// Checks parsed params beyond their shape; the message names the field.
    fn validate(_params: &Self::Params) -> Result<(), String> {
        Ok(())
    }

    /// Fills defaults `reelay run` users should not have to type.
    fn local_defaults(_params: &mut serde_json::Map<String, serde_json::Value>, _inputs: usize) {}

    /// Detections files an overlay in the params reads (`reelay run` adds
    /// them as inputs); `None` where a track names none.
    fn detections_sources(_params: &Self::Params) -> Vec<Option<String>> {
        Vec::new()
    }

    /// Runs the step on local files.
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        params: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError>;
}

/// A kind's behaviour with its params still as JSON: what callers hold.
pub trait RegisteredStep: Send + Sync {
    fn name(&self) -> &'static str;
    fn hardware(&self) -> Hardware;
    fn output_extension(&self) -> &'static str;
    /// Checks `params` deserialise and validate; the message starts with
    /// the field at fault (`clips[1].end: ...`).
    fn validate(&self, params: &serde_json::Value) -> Result<(), String>;
    /// Fills defaults for `reelay run`.
    fn local_defaults(
        &self,
        params: &mut serde_json::Map<String, serde_json::Value>,
        inputs: usize,
    );
    /// Detections files the params' overlay reads (see [`Step::detections_sources`]).
    fn detections_sources(
        &self,
        params: &serde_json::Value,
    ) -> Result<Vec<Option<String>>, TaskError>;
    /// Checks inputs and params, then runs the step.
    fn run(
        &self,
        inputs: &[PathBuf],
        output: &Path,
        params: &serde_json::Value,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError>;
}

struct Registered<S>(std::marker::PhantomData<S>);

impl<S: Step> Registered<S> {
    const INSTANCE: Registered<S> = Registered(std::marker::PhantomData);

    fn parse(params: &serde_json::Value) -> Result<S::Params, TaskError> {
        let params =
            serde_path_to_error::deserialize::<_, S::Params>(params.clone()).map_err(|e| {
                let path = e.path().to_string();
                let field = if path == "." {
                    "params".to_string()
                } else {
                    format!("params.{path}")
                };
                TaskError::permanent(Some(field), format!("{path}: {}", e.into_inner()))
            })?;
        S::validate(&params).map_err(|e| TaskError::permanent(Some("params".into()), e))?;
        Ok(params)
    }
}

impl<S: Step> RegisteredStep for Registered<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }
    fn hardware(&self) -> Hardware {
        S::HARDWARE
    }
    fn output_extension(&self) -> &'static str {
        S::OUTPUT_EXTENSION
    }
    fn validate(&self, params: &serde_json::Value) -> Result<(), String> {
        Self::parse(params).map(|_| ()).map_err(|e| e.message)
    }
    fn local_defaults(
        &self,
        params: &mut serde_json::Map<String, serde_json::Value>,
        inputs: usize,
    ) {
        S::local_defaults(params, inputs)
    }
    fn detections_sources(
        &self,
        params: &serde_json::Value,
    ) -> Result<Vec<Option<String>>, TaskError> {
        Self::parse(params).map(|p| S::detections_sources(&p))
    }
    fn run(
        &self,
        inputs: &[PathBuf],
        output: &Path,
        params: &serde_json::Value,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        let fits = match S::ARITY {
            Arity::One => inputs.len() == 1,
            Arity::AtLeastOne => !inputs.is_empty(),
        };
        if !fits {
            let wanted = match S::ARITY {
                Arity::One => "exactly one input",
                Arity::AtLeastOne => "at least one input",
            };
            return Err(TaskError::permanent(
                Some("inputs".into()),
                format!(
                    "inputs: `{}` takes {wanted}, got {}; give the task its input(s)",
                    S::NAME,
                    inputs.len()
                ),
            ));
        }
        let params = Self::parse(params)?;
        S::run(inputs, output, &params, ctx)
    }
}

/// The behaviour of `kind`: the one `match` on the step kind.
pub fn step(kind: StepKind) -> &'static dyn RegisteredStep {
    match kind {
        StepKind::Extract => &Registered::<ExtractStep>::INSTANCE,
        StepKind::Compile => &Registered::<CompileStep>::INSTANCE,
        StepKind::Frame => &Registered::<FrameStep>::INSTANCE,
        StepKind::Detect => &Registered::<DetectStep>::INSTANCE,
        StepKind::Overlay => &Registered::<OverlayStep>::INSTANCE,
        StepKind::Export => &Registered::<ExportStep>::INSTANCE,
    }
}

impl StepKind {
    pub const ALL: &'static [StepKind] = &[
        StepKind::Extract,
        StepKind::Compile,
        StepKind::Frame,
        StepKind::Detect,
        StepKind::Overlay,
        StepKind::Export,
    ];

    pub fn as_str(self) -> &'static str {
        step(self).name()
    }

    pub fn hardware(self) -> Hardware {
        step(self).hardware()
    }

    /// Extension of the object the step writes.
    pub fn output_extension(self) -> &'static str {
        step(self).output_extension()
    }

    pub fn parse(s: &str) -> Option<StepKind> {
        StepKind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// `extract, compile, ...`: for messages that list the choices.
    pub fn names() -> String {
        StepKind::ALL
            .iter()
            .map(|k| k.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for StepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `extract`: cut one clip out of a source.
pub struct ExtractStep;
impl Step for ExtractStep {
    type Params = extract::ExtractParams;
    const NAME: &'static str = "extract";
    const HARDWARE: Hardware = Hardware::Cpu;
    const ARITY: Arity = Arity::One;
    fn validate(p: &Self::Params) -> Result<(), String> {
        if !(p.start >= 0.0 && p.end > p.start) {
            return Err(format!(
                "end {} must be greater than start {} (and start 0 or more)",
                p.end, p.start
            ));
        }
        Ok(())
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        extract::run(
            ctx.ffmpeg,
            &inputs[0],
            output,
            p,
            ctx.profile,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

/// `compile`: join clips with transitions and captions.
pub struct CompileStep;
impl Step for CompileStep {
    type Params = compile::CompileParams;
    const NAME: &'static str = "compile";
    const HARDWARE: Hardware = Hardware::Cpu;
    const ARITY: Arity = Arity::AtLeastOne;
    fn local_defaults(params: &mut serde_json::Map<String, serde_json::Value>, inputs: usize) {
        params
            .entry("transition")
            .or_insert(serde_json::json!({"kind": "none"}));
        params
            .entry("captions")
            .or_insert(serde_json::json!(vec![serde_json::Value::Null; inputs]));
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        let font = compile::locate_font()?;
        compile::run(
            ctx.ffmpeg,
            inputs,
            output,
            p,
            ctx.profile,
            &font,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

/// `frame`: crop, upscale with a model, resize, encode (the clip, then the
/// detections of a fused overlay's tracks).
pub struct FrameStep;
impl Step for FrameStep {
    type Params = frame::FrameParams;
    const NAME: &'static str = "frame";
    const HARDWARE: Hardware = Hardware::Gpu;
    const ARITY: Arity = Arity::AtLeastOne;
    fn validate(p: &Self::Params) -> Result<(), String> {
        p.validate().map_err(|e| e.to_string())
    }
    fn detections_sources(p: &Self::Params) -> Vec<Option<String>> {
        p.overlay
            .as_ref()
            .map(|o| o.spec.detections_sources())
            .unwrap_or_default()
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        // The worker's device when the task names none; the model records
        // the device it really ran on.
        let device = ctx.device()?;
        frame::run(
            ctx.ffmpeg,
            inputs,
            output,
            p,
            ctx.profile,
            device,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

/// `detect`: find players, write their tracks as JSON.
pub struct DetectStep;
impl Step for DetectStep {
    type Params = detect::DetectParams;
    const NAME: &'static str = "detect";
    const HARDWARE: Hardware = Hardware::Gpu;
    const ARITY: Arity = Arity::One;
    const OUTPUT_EXTENSION: &'static str = "json";
    fn validate(p: &Self::Params) -> Result<(), String> {
        detect::validate_params(p)
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        let device = ctx.device()?;
        detect::run(
            ctx.ffmpeg,
            &inputs[0],
            output,
            p,
            device,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

/// `overlay`: draw a spec over a clip (the clip, then detections files).
pub struct OverlayStep;
impl Step for OverlayStep {
    type Params = overlay::OverlayParams;
    const NAME: &'static str = "overlay";
    const HARDWARE: Hardware = Hardware::Cpu;
    const ARITY: Arity = Arity::AtLeastOne;
    fn validate(p: &Self::Params) -> Result<(), String> {
        p.spec.validate().map_err(|e| e.to_string())
    }
    fn detections_sources(p: &Self::Params) -> Vec<Option<String>> {
        p.spec.detections_sources()
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        let font = p.font()?;
        overlay::run(
            ctx.ffmpeg,
            inputs,
            output,
            p,
            ctx.profile,
            font,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

/// `export`: a whole job in one GPU task (the source, then the detections
/// files its clips name).
pub struct ExportStep;
impl Step for ExportStep {
    type Params = export::ExportParams;
    const NAME: &'static str = "export";
    const HARDWARE: Hardware = Hardware::Gpu;
    const ARITY: Arity = Arity::AtLeastOne;
    fn validate(p: &Self::Params) -> Result<(), String> {
        p.validate(None).map_err(|e| e.to_string())
    }
    fn run(
        inputs: &[PathBuf],
        output: &Path,
        p: &Self::Params,
        ctx: &mut StepContext<'_>,
    ) -> Result<StepOutput, TaskError> {
        let device = ctx.device()?;
        export::run(
            ctx.ffmpeg,
            inputs,
            output,
            p,
            ctx.profile,
            device,
            ctx.on_progress,
            ctx.cancel,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx_parts() -> (Ffmpeg, EncodeProfile, CancellationToken) {
        (
            Ffmpeg::at("/nonexistent/ffmpeg"),
            EncodeProfile::default(),
            CancellationToken::new(),
        )
    }

    fn run_with(
        kind: StepKind,
        inputs: &[PathBuf],
        params: serde_json::Value,
        device: &str,
    ) -> TaskError {
        let (ff, profile, cancel) = ctx_parts();
        let mut on_progress = |_: Progress| {};
        let mut ctx = StepContext {
            ffmpeg: &ff,
            profile: &profile,
            device,
            on_progress: &mut on_progress,
            cancel: &cancel,
        };
        step(kind)
            .run(inputs, Path::new("/nonexistent/out.mp4"), &params, &mut ctx)
            .expect_err("must fail before running anything")
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for &kind in StepKind::ALL {
            assert_eq!(StepKind::parse(kind.as_str()), Some(kind));
            assert_eq!(serde_json::to_value(kind).unwrap(), json!(kind.as_str()));
        }
        assert_eq!(StepKind::Detect.output_extension(), "json");
        assert_eq!(StepKind::Frame.hardware(), Hardware::Gpu);
        assert_eq!(StepKind::Compile.hardware(), Hardware::Cpu);
    }

    /// Was an `inputs[0]` panic in the executor for extract and detect: a
    /// transient "step thread failed" retried until the dead-letter queue.
    #[test]
    fn no_inputs_is_a_permanent_error_naming_the_field_for_every_kind() {
        for &kind in StepKind::ALL {
            let e = run_with(kind, &[], json!({}), "cpu");
            assert_eq!(e.class, crate::tasks::ErrorClass::Permanent, "{kind}: {e}");
            assert_eq!(e.field.as_deref(), Some("inputs"), "{kind}: {e}");
            assert!(e.message.contains(kind.as_str()), "{kind}: {e}");
        }
        let two = [PathBuf::from("a.mp4"), PathBuf::from("b.mp4")];
        let e = run_with(
            StepKind::Extract,
            &two,
            json!({"start": 0, "end": 1}),
            "cpu",
        );
        assert!(e.message.contains("exactly one input, got 2"), "{e}");
    }

    /// Was a permanent error for detect but silently the default device for
    /// frame and export.
    #[test]
    fn a_bad_device_is_a_permanent_error_for_every_kind_that_uses_one() {
        let input = [PathBuf::from("clip.mp4")];
        let cases = [
            (StepKind::Detect, json!({})),
            (
                StepKind::Frame,
                json!({"crop": "8,4,64,36", "model": "m", "size": "256x144"}),
            ),
        ];
        for (kind, params) in cases {
            step(kind)
                .validate(&params)
                .unwrap_or_else(|e| panic!("{kind}: {e}"));
            let e = run_with(kind, &input, params, "tpu");
            assert_eq!(e.class, crate::tasks::ErrorClass::Permanent, "{kind}: {e}");
            assert_eq!(e.field.as_deref(), Some("device"), "{kind}: {e}");
            assert!(e.message.contains("unknown device `tpu`"), "{kind}: {e}");
        }
    }

    /// Was `expect("validated")` in `reelay run` and a bare serde message in
    /// the executor: now one permanent error naming the field.
    #[test]
    fn bad_params_are_a_permanent_error_naming_the_field() {
        let input = [PathBuf::from("clip.mp4")];
        let e = run_with(
            StepKind::Extract,
            &input,
            json!({"start": "x", "end": 2}),
            "cpu",
        );
        assert_eq!(e.class, crate::tasks::ErrorClass::Permanent);
        assert_eq!(e.field.as_deref(), Some("params.start"), "{e}");
        assert!(e.message.starts_with("start: "), "{e}");
        let e = run_with(
            StepKind::Extract,
            &input,
            json!({"start": 3, "end": 2}),
            "cpu",
        );
        assert_eq!(e.field.as_deref(), Some("params"), "{e}");
        assert!(e.message.contains("must be greater than start"), "{e}");
        for &kind in StepKind::ALL {
            let e = run_with(kind, &input, json!("not an object"), "cpu");
            assert_eq!(e.class, crate::tasks::ErrorClass::Permanent, "{kind}: {e}");
            assert!(
                e.field.as_deref().unwrap().starts_with("params"),
                "{kind}: {e}"
            );
        }
    }
}
