//! Job manifests, version 1: a JSON file in the bucket describing an export.
//! The field names are a contract with users; unknown fields are rejected.

use serde::{Deserialize, Serialize};

use crate::keys;
use crate::overlay::spec::OverlaySpec;
use crate::tasks::compile::{Transition, TransitionKind};
use crate::tasks::frame::{Crop, Framing};

/// Largest manifest reelay reads; anything bigger is not a job description.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;
/// Most clips one job may have.
pub const MAX_CLIPS: usize = 500;
/// Longest caption, in characters.
pub use crate::policy::bounds::MAX_CAPTION_CHARS;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobManifest {
    /// Always 1 for this format.
    pub version: u32,
    /// Key of the source video in the bucket.
    pub source: String,
    /// Key the finished export is written to (conventionally under `exports/`).
    pub output: String,
    pub clips: Vec<Clip>,
    /// Between clips; absent means a plain cut.
    #[serde(default)]
    pub transition: Option<Transition>,
    /// Frame-exact re-encoded cuts (default) or fast keyframe-snapped copies.
    #[serde(default = "default_accurate")]
    pub accurate: bool,
    /// How a job with framed clips uses the GPU fleet; absent: the planner
    /// decides ([`crate::pipeline::placement`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
}

/// Where a job's clips run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Placement {
    /// One GPU task runs every clip (extract, frame, overlay) and the
    /// compile, with the model loaded once and no intermediate objects.
    SingleContainer,
    /// One task per step: the clips spread over the workers.
    FanOut,
}

impl Placement {
    pub fn as_str(self) -> &'static str {
        match self {
            Placement::SingleContainer => "single-container",
            Placement::FanOut => "fan-out",
        }
    }
}

fn default_accurate() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Clip {
    /// Seconds from the start of the source.
    pub start: f64,
    pub end: f64,
    /// Text drawn over this clip in the export.
    #[serde(default)]
    pub caption: Option<String>,
    /// AI framing: crop this clip, upscale the crop with a model and resize
    /// it to `size` (a `frame` step on the GPU fleet between the clip's
    /// extract and the compile). Keyframe times are seconds from the clip's
    /// start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub framing: Option<Framing>,
    /// Drawn on this clip before it is compiled (the overlay spec format).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub overlay: Option<OverlaySpec>,
}

/// A manifest problem: which object, which field, what is wrong, how to fix it.
pub type ManifestError = crate::invalid::Invalid;

impl JobManifest {
    /// Refuses a manifest by its size alone, before anything reads it.
    pub fn check_size(object: &str, size: u64) -> Result<(), ManifestError> {
        if size > MAX_MANIFEST_BYTES as u64 {
            return Err(ManifestError {
                object: object.to_string(),
                field: "(file)".into(),
                problem: format!("the manifest is {size} bytes, over the 1 MiB limit"),
                fix: "describe the export in a smaller manifest".into(),
            });
        }
        Ok(())
    }

    /// Parses and validates; `object` is the manifest's key, named in errors.
    pub fn parse(object: &str, bytes: &[u8]) -> Result<JobManifest, ManifestError> {
        let err = |field: &str, problem: String, fix: &str| ManifestError {
            object: object.to_string(),
            field: field.to_string(),
            problem,
            fix: fix.to_string(),
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(err(
                "(file)",
                format!(
                    "the manifest is {} bytes, over the 1 MiB limit",
                    bytes.len()
                ),
                "describe the export in a smaller manifest",
            ));
        }
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(err(
                "(file)",
                "the manifest is empty".into(),
                "write a JSON job: {\"version\": 1, \"source\": ..., \"output\": ..., \"clips\": [...]}",
            ));
        }
        if bytes.starts_with(b"\xEF\xBB\xBF") {
            return Err(err(
                "(file)",
                "the manifest starts with a UTF-8 byte order mark (BOM), which JSON does not allow"
                    .into(),
                "save the file as UTF-8 without a BOM",
            ));
        }
        let mut de = serde_json::Deserializer::from_slice(bytes);
        let manifest: JobManifest = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let message = inner.to_string();
            let (field, fix) = if message.starts_with("unknown field") {
                (path.clone(), "remove the field or correct its spelling (manifest version 1 names: version, source, output, placement, clips[].start/end/caption/framing/overlay, clips[].framing.crop/model/size, transition.kind/seconds, accurate; clips[].overlay takes an overlay spec: spotlight, ring, boxes, text)")
            } else if message.starts_with("missing field") {
                (path.clone(), "add the field")
            } else if message.starts_with("duplicate field") {
                (path.clone(), "give the field once: JSON parsers disagree on which copy counts")
            } else if inner.is_syntax() || inner.is_eof() {
                ("(file)".to_string(), "make the file valid JSON")
            } else {
                (path.clone(), "give the field a value of the right type")
            };
            let field = if field == "." || field.is_empty() { "(top level)".to_string() } else { field };
            err(&field, message, fix)
        })?;
        // One JSON value per file: a second one (two jobs pasted together)
        // would otherwise be ignored without a word.
        de.end().map_err(|e| {
            err(
                "(file)",
                format!("there is more after the job's JSON object: {e}"),
                "keep one JSON object per manifest; put a second job in its own file",
            )
        })?;
        manifest.validate(object)?;
        Ok(manifest)
    }

    fn validate(&self, object: &str) -> Result<(), ManifestError> {
        let err = |field: String, problem: String, fix: &str| ManifestError {
            object: object.to_string(),
            field,
            problem,
            fix: fix.to_string(),
        };
        if self.version != 1 {
            return Err(err(
                "version".into(),
                format!("version {} is not supported", self.version),
                "set \"version\": 1",
            ));
        }
        for (field, key) in [("source", &self.source), ("output", &self.output)] {
            keys::validate(key).map_err(|e| {
                err(
                    field.into(),
                    e.to_string(),
                    "use a relative key such as `sources/match.mp4`",
                )
            })?;
        }
        if self.output == self.source {
            return Err(err(
                "output".into(),
                "the output is the source itself".into(),
                "write the export to its own key, e.g. under `exports/`",
            ));
        }
        if self.clips.is_empty() {
            return Err(err(
                "clips".into(),
                "there are no clips".into(),
                "add at least one {\"start\": S, \"end\": E}",
            ));
        }
        if self.clips.len() > MAX_CLIPS {
            return Err(err(
                "clips".into(),
                format!(
                    "{} clips is over the limit of {MAX_CLIPS}",
                    self.clips.len()
                ),
                "split the export into several jobs",
            ));
        }
        for (i, clip) in self.clips.iter().enumerate() {
            clip.validate(object, i)?;
        }
        self.validate_transition(object)
    }

    fn validate_transition(&self, object: &str) -> Result<(), ManifestError> {
        let err = |field: String, problem: String, fix: &str| ManifestError {
            object: object.to_string(),
            field,
            problem,
            fix: fix.to_string(),
        };
        if let Some(t) = &self.transition {
            if !t.seconds.is_finite() || t.seconds < 0.0 {
                return Err(err(
                    "transition.seconds".into(),
                    format!("{} is not a duration", t.seconds),
                    "use seconds, 0 or more",
                ));
            }
            if t.kind == TransitionKind::Fade && self.clips.len() > 1 {
                let shortest = self
                    .clips
                    .iter()
                    .map(|c| c.end - c.start)
                    .fold(f64::INFINITY, f64::min);
                if t.seconds >= shortest {
                    return Err(err(
                        "transition.seconds".into(),
                        format!(
                            "a {} s fade is not shorter than the shortest clip ({shortest:.3} s)",
                            t.seconds
                        ),
                        "use a shorter fade or longer clips",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl Clip {
    /// Clip `i` of the manifest at `object`, checked on its own.
    fn validate(&self, object: &str, i: usize) -> Result<(), ManifestError> {
        let err = |field: String, problem: String, fix: &str| ManifestError {
            object: object.to_string(),
            field,
            problem,
            fix: fix.to_string(),
        };
        let clip = self;
        if !clip.start.is_finite() || clip.start < 0.0 {
            return Err(err(
                format!("clips[{i}].start"),
                format!("{} is not a time in the source", clip.start),
                "use seconds from the start of the source, 0 or more",
            ));
        }
        if !clip.end.is_finite() || clip.end <= clip.start {
            return Err(err(
                format!("clips[{i}].end"),
                format!("end {} is not after start {}", clip.end, clip.start),
                "make end greater than start",
            ));
        }
        if let Some(spec) = &clip.overlay {
            spec.validate().map_err(|e| {
                err(
                    format!("clips[{i}].overlay.{}", e.field),
                    e.problem.clone(),
                    &e.fix,
                )
            })?;
            crate::policy::bounds::check_overlay(spec)
                .map_err(|e| err(format!("clips[{i}].overlay.{}", e.field), e.problem, &e.fix))?;
            if clip.framing.is_some()
                && let Some((field, _)) = spec.tracks().first()
            {
                return Err(err(
                    format!("clips[{i}].overlay.{field}"),
                    "a framed clip cannot follow a tracked player: detections are in source pixels, and framing crops and rescales them".into(),
                    "give the overlay keyframes in the framed clip's output pixels, or track on a clip without framing",
                ));
            }
            for (field, track) in spec.tracks() {
                if let Some(key) = &track.detections {
                    keys::validate(key).map_err(|e| {
                        err(
                            format!("clips[{i}].overlay.{field}.detections"),
                            e.to_string(),
                            "use the detections object's key, e.g. `detections/match.mp4.json`, or leave it out to detect on the source",
                        )
                    })?;
                }
            }
        }
        if let Some(caption) = &clip.caption {
            crate::policy::bounds::check_caption(caption)
                .map_err(|e| err(format!("clips[{i}].caption"), e.problem, &e.fix))?;
        }
        if let Some(framing) = &clip.framing {
            let field = format!("clips[{i}].framing.crop");
            framing.crop.validate(&field).map_err(|e| {
                err(
                    e.field.clone(),
                    e.problem.clone(),
                    "give a box {\"x\", \"y\", \"w\", \"h\"} in source pixels, or keyframes in time order with t in seconds from the clip's start",
                )
            })?;
            if let Crop::Keyframes(k) = &framing.crop {
                let length = clip.end - clip.start;
                if let Some((j, kf)) = k.iter().enumerate().find(|(_, kf)| kf.t > length + 1e-6) {
                    return Err(err(
                        format!("{field}.keyframes[{j}].t"),
                        format!(
                            "t {} is after the clip's end (the clip lasts {length:.3} s)",
                            kf.t
                        ),
                        "keyframe times are seconds from the clip's start: keep them within 0 and end - start",
                    ));
                }
            }
            if framing.model.trim().is_empty() {
                return Err(err(
                    format!("clips[{i}].framing.model"),
                    "the model name is empty".into(),
                    "name an upscale model, e.g. realesr-general-x4v3 (`reelay models list`)",
                ));
            }
        }
        Ok(())
    }
}

/// Reads the manifest at `key`, refusing an oversized one by its size
/// before reading it. The outer error is the store's; the inner, the manifest's.
pub async fn read(
    store: &dyn crate::ports::store::ObjectStore,
    key: &str,
) -> Result<
    Result<(JobManifest, crate::ports::store::ObjectMeta), ManifestError>,
    crate::ports::store::StoreError,
> {
    if let Some(meta) = store.head(key).await?
        && let Err(e) = JobManifest::check_size(key, meta.size)
    {
        return Ok(Err(e));
    }
    let (bytes, meta) = store.get_bytes(key).await?;
    Ok(JobManifest::parse(key, &bytes).map(|m| (m, meta)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"version": 1,
       "source": "sources/match.mp4",
       "output": "exports/highlights.mp4",
       "clips": [{"start": 3.0, "end": 9.0}, {"start": 33.0, "end": 40.0, "caption": "Goal!"}],
       "transition": {"kind": "fade", "seconds": 0.5},
       "accurate": true}"#;

    #[test]
    fn parses_the_documented_example() {
        let m = JobManifest::parse("jobs/a.json", GOOD.as_bytes()).unwrap();
        assert_eq!(m.clips.len(), 2);
        assert_eq!(m.clips[1].caption.as_deref(), Some("Goal!"));
        assert_eq!(m.transition.unwrap().kind, TransitionKind::Fade);
    }

    #[test]
    fn framing_parses_and_is_checked() {
        let framed = GOOD.replace(
            "\"caption\": \"Goal!\"",
            "\"caption\": \"Goal!\", \"framing\": {\"crop\": {\"x\": 800, \"y\": 400, \"w\": 480, \"h\": 270}, \"model\": \"realesr-general-x4v3\", \"size\": \"1920x1080\"}",
        );
        let m = JobManifest::parse("jobs/a.json", framed.as_bytes()).unwrap();
        let f = m.clips[1].framing.as_ref().unwrap();
        assert_eq!(f.size.to_string(), "1920x1080");
        assert_eq!(f.crop.describe(), "800,400,480,270");
        // A manifest without framing keeps its job id: framing is not serialised when absent.
        let plain = JobManifest::parse("jobs/a.json", GOOD.as_bytes()).unwrap();
        assert!(!serde_json::to_string(&plain).unwrap().contains("framing"));

        let e = error_for(&framed.replace("\"size\"", "\"sise\""));
        assert_eq!(e.field, "clips[1].framing.sise");
        let e = error_for(&framed.replace("\"w\": 480", "\"width\": 480"));
        assert_eq!(e.field, "clips[1].framing.crop");
        assert!(e.problem.contains("unknown field `width`"), "{e}");
        let e = error_for(&framed.replace("1920x1080", "1921x1080"));
        assert_eq!(e.field, "clips[1].framing.size");
        let keyframes = framed.replace(
            "{\"x\": 800, \"y\": 400, \"w\": 480, \"h\": 270}",
            "{\"keyframes\": [{\"t\": 0, \"x\": 0, \"y\": 0, \"w\": 480, \"h\": 270}, {\"t\": 9, \"x\": 10, \"y\": 0, \"w\": 480, \"h\": 270}]}",
        );
        let e = error_for(&keyframes);
        assert_eq!(e.field, "clips[1].framing.crop.keyframes[1].t");
        assert!(e.problem.contains("after the clip's end"), "{e}");
        JobManifest::parse(
            "jobs/a.json",
            keyframes.replace("\"t\": 9", "\"t\": 6").as_bytes(),
        )
        .unwrap();
        let e = error_for(&framed.replace("\"w\": 480", "\"w\": 0"));
        assert_eq!(e.field, "clips[1].framing.crop");
    }

    fn error_for(json: &str) -> ManifestError {
        JobManifest::parse("jobs/bad.json", json.as_bytes()).unwrap_err()
    }

    #[test]
    fn unknown_field_is_named_with_its_path() {
        let e = error_for(&GOOD.replace("\"caption\"", "\"captoin\""));
        assert_eq!(e.field, "clips[1].captoin");
        assert!(e.problem.contains("captoin"), "{e}");
        assert!(
            e.to_string()
                .starts_with("jobs/bad.json: `clips[1].captoin`")
        );
    }

    #[test]
    fn end_before_start_is_named() {
        let e = error_for(&GOOD.replace("\"end\": 9.0", "\"end\": 2.0"));
        assert_eq!(e.field, "clips[0].end");
        assert!(e.fix.contains("greater"));
    }

    #[test]
    fn other_bad_fields() {
        assert_eq!(
            error_for(&GOOD.replace("\"version\": 1", "\"version\": 2")).field,
            "version"
        );
        assert_eq!(
            error_for(&GOOD.replace("sources/match.mp4", "../etc/passwd")).field,
            "source"
        );
        assert_eq!(
            error_for(&GOOD.replace("\"start\": 3.0", "\"start\": \"3\"")).field,
            "clips[0].start"
        );
        assert_eq!(
            error_for(&GOOD.replace("\"seconds\": 0.5", "\"seconds\": 9")).field,
            "transition.seconds"
        );
        assert_eq!(error_for("{").field, "(file)");
        assert_eq!(error_for("").field, "(file)");
        assert_eq!(
            error_for(r#"{"version":1,"output":"exports/x.mp4","clips":[]}"#).field,
            "(top level)"
        );
    }

    #[test]
    fn a_tracked_overlay_on_a_framed_clip_is_refused_with_the_fix() {
        let e = error_for(
            r#"{"version": 1, "source": "sources/a.mp4", "output": "exports/a.mp4",
                "clips": [{"start": 0, "end": 2,
                           "framing": {"crop": {"x": 0, "y": 0, "w": 64, "h": 36},
                                       "model": "realesr-general-x4v3", "size": "256x144"},
                           "overlay": {"spotlight": {"track": {"pick": {"t": 0, "x": 1, "y": 1}}}}}]}"#,
        );
        assert_eq!(e.field, "clips[0].overlay.spotlight.track");
        assert!(e.problem.contains("source pixels"), "{e}");
        assert!(e.fix.contains("keyframes"), "{e}");
    }

    /// JSON the parser took silently or blamed vaguely: a second value after
    /// the job, a UTF-8 BOM, a key given twice, a NUL in a caption.
    #[test]
    fn strict_json_names_the_problem_and_the_fix() {
        let e = error_for(&format!("{GOOD}\n{GOOD}"));
        assert_eq!(e.field, "(file)");
        assert!(e.fix.contains("one JSON object"), "{e}");
        let e = error_for(&format!("\u{feff}{GOOD}"));
        assert_eq!(e.field, "(file)");
        assert!(
            e.problem.contains("BOM") && e.fix.contains("without a BOM"),
            "{e}"
        );
        let e = error_for(&GOOD.replace(
            "\"output\": \"exports/highlights.mp4\"",
            "\"output\": \"exports/a.mp4\", \"output\": \"exports/b.mp4\"",
        ));
        assert!(e.problem.contains("duplicate field `output`"), "{e}");
        assert!(e.fix.contains("once"), "{e}");
        let e = error_for(&GOOD.replace("Goal!", "Goal\\u0000 hidden"));
        assert_eq!(e.field, "clips[1].caption");
        assert!(e.problem.contains("control character"), "{e}");
        // Whitespace after the object is fine.
        JobManifest::parse("jobs/a.json", format!("{GOOD}\n\n").as_bytes()).unwrap();
    }
}
