//! `reelay run KIND`: one step on local files, no queue, no bucket.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::media::Ffmpeg;
use crate::pipeline::task::StepKind;
use crate::tasks::{self, registry::StepContext};

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
            StepKind::names()
        )
    })?;
    let step = tasks::step(kind);
    let mut params = params_from_sets(sets)?;
    if let Some(obj) = params.as_object_mut() {
        step.local_defaults(obj, inputs.len());
    }
    step.validate(&params)
        .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
    for input in inputs {
        anyhow::ensure!(input.is_file(), "input `{}` is not a file", input.display());
    }
    crate::policy::fs::ensure_not_an_input(output, inputs)?;
    let mut inputs = inputs.to_vec();
    if inputs.len() == 1 {
        // The spec's `track.detections` are local paths here (relative to
        // the working directory), unless given as further --input files.
        for source in step.detections_sources(&params)? {
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
    let ff = Ffmpeg::locate()?;
    let profile = config.file.output.clone();
    let device = config.file.device.clone();
    let output = output.to_path_buf();
    let bars = Bars::new();
    let bar = bars.bar(kind.as_str());
    let started = std::time::Instant::now();
    let cancel = CancellationToken::new();
    let result = tokio::task::spawn_blocking(move || {
        let mut on_progress = |p: crate::media::Progress| Bars::set_fraction(&bar, &p);
        let mut ctx = StepContext {
            ffmpeg: &ff,
            profile: &profile,
            device: &device,
            on_progress: &mut on_progress,
            cancel: &cancel,
        };
        let out = step.run(&inputs, &output, &params, &mut ctx);
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
