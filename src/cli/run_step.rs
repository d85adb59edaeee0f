//! `reelay run KIND`: one step on local files, no queue, no bucket.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::media::Ffmpeg;
use crate::pipeline::task::StepKind;
use crate::tasks::{self, compile, detect, extract, frame, overlay};

use super::bars::Bars;

/// Builds a JSON object from `key=value` pairs; dotted keys nest, values are
/// JSON when they parse as JSON, `@FILE` reads a JSON file, else a string.
pub fn params_from_sets(sets: &[String]) -> anyhow::Result<serde_json::Value> {
    let mut root = serde_json::Map::new();
    for set in sets {
        let (key, raw) = set
            .split_once('=')
            .with_context(|| format!("`--set {set}` is not KEY=VALUE"))?;
        let value = if let Some(file) = raw.strip_prefix('@') {
            let text = std::fs::read_to_string(file)
                .with_context(|| format!("reading `{file}` for --set {key}"))?;
            serde_json::from_str(&text)
                .with_context(|| format!("`{file}` (for --set {key}) is not JSON"))?
        } else {
            serde_json::from_str(raw).unwrap_or_else(|_| serde_json::Value::String(raw.to_string()))
        };
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            node = node
                .entry(part.to_string())
                .or_insert_with(|| serde_json::Value::Object(Default::default()))
                .as_object_mut()
                .with_context(|| {
                    format!("`--set {key}`: `{part}` is already a value, not an object")
                })?;
        }
        node.insert(parts[parts.len() - 1].to_string(), value);
    }
    Ok(serde_json::Value::Object(root))
}

pub async fn run(
    kind: &str,
    inputs: &[PathBuf],
    output: &Path,
    sets: &[String],
    config: Option<&Path>,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let kind = StepKind::parse(kind).with_context(|| {
        format!(
            "`{kind}` is not a step kind; use one of: {}",
            StepKind::ALL
                .iter()
                .map(|k| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    let mut params = params_from_sets(sets)?;
    if kind == StepKind::Compile {
        let obj = params.as_object_mut().expect("params are an object");
        obj.entry("transition")
            .or_insert(serde_json::json!({"kind": "none"}));
        obj.entry("captions").or_insert(serde_json::json!(vec![
            serde_json::Value::Null;
            inputs.len()
        ]));
    }
    tasks::validate_params(kind, &params).map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    for input in inputs {
        anyhow::ensure!(input.is_file(), "input `{}` is not a file", input.display());
    }
    crate::policy::fs::ensure_not_an_input(output, inputs)?;
    let mut inputs = inputs.to_vec();
    let drawn: Option<overlay::OverlayParams> = match kind {
        StepKind::Overlay => Some(serde_json::from_value(params.clone()).expect("validated")),
        StepKind::Frame => {
            serde_json::from_value::<frame::FrameParams>(params.clone())
                .expect("validated")
                .overlay
        }
        _ => None,
    };
    if let Some(p) = drawn.filter(|_| inputs.len() == 1) {
        // The spec's `track.detections` are local paths here (relative to
        // the working directory), unless given as further --input files.
        for source in p.spec.detections_sources() {
            let path = source.with_context(|| {
                "the overlay spec tracks a player but names no `track.detections` file; set it to the detections JSON's path"
            })?;
            anyhow::ensure!(
                Path::new(&path).is_file(),
                "track.detections `{path}` is not a file; run `reelay run detect` first, or fix the path"
            );
            inputs.push(PathBuf::from(path));
        }
    }
    let device: crate::inference::Device =
        config.file.device.parse().map_err(anyhow::Error::msg)?;
    let ff = Ffmpeg::locate()?;
    let profile = config.file.output.clone();
    let output = output.to_path_buf();
    let bars = Bars::new();
    let bar = bars.bar(kind.as_str());
    let started = std::time::Instant::now();
    let cancel = CancellationToken::new();
    let result = tokio::task::spawn_blocking(move || {
        let mut on_progress = |p: crate::media::Progress| Bars::set_fraction(&bar, &p);
        let out = match kind {
            StepKind::Extract => {
                if inputs.len() != 1 {
                    return Err(tasks::TaskError::permanent(
                        Some("input".into()),
                        "extract takes exactly one --input",
                    ));
                }
                let p: extract::ExtractParams = serde_json::from_value(params).expect("validated");
                extract::run(
                    &ff,
                    &inputs[0],
                    &output,
                    &p,
                    &profile,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Compile => {
                let p: compile::CompileParams = serde_json::from_value(params).expect("validated");
                let font = compile::locate_font()?;
                compile::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    &font,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Frame => {
                // The clip, then the detections of a fused overlay's tracks.
                let p: frame::FrameParams = serde_json::from_value(params).expect("validated");
                frame::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Detect => {
                if inputs.len() != 1 {
                    return Err(tasks::TaskError::permanent(
                        Some("input".into()),
                        "detect takes exactly one --input",
                    ));
                }
                let p: detect::DetectParams = serde_json::from_value(params).expect("validated");
                detect::run(
                    &ff,
                    &inputs[0],
                    &output,
                    &p,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Export => {
                // The source, then the detections files the clips name.
                let p: tasks::export::ExportParams =
                    serde_json::from_value(params).expect("validated");
                tasks::export::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    device,
                    &mut on_progress,
                    &cancel,
                )
            }
            StepKind::Overlay => {
                let p: overlay::OverlayParams = serde_json::from_value(params).expect("validated");
                let font = p.font()?;
                overlay::run(
                    &ff,
                    &inputs,
                    &output,
                    &p,
                    &profile,
                    font,
                    &mut on_progress,
                    &cancel,
                )
            }
        };
        bar.finish();
        out
    })
    .await?;
    match result {
        Ok(out) => {
            println!("{kind} done in {:.2}s", started.elapsed().as_secs_f64());
            for (k, v) in out.metadata {
                println!("  {k}: {v}");
            }
            Ok(())
        }
        Err(e) => bail!("{kind} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_nest_and_parse_json() {
        let v = params_from_sets(&[
            "start=3".into(),
            "end=9.5".into(),
            "transition.kind=fade".into(),
            "transition.seconds=0.5".into(),
            "accurate=false".into(),
            "crop=800,400,480,270".into(),
            "size=1920x1080".into(),
        ])
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"start": 3, "end": 9.5, "accurate": false, "transition": {"kind": "fade", "seconds": 0.5},
                               "crop": "800,400,480,270", "size": "1920x1080"})
        );
        assert!(params_from_sets(&["novalue".into()]).is_err());
    }
}
