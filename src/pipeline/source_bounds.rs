//! A job's clips checked against its source's duration at planning, so a
//! clip that ends past the source is refused naming the manifest, the
//! field (`clips[i].end`) and the fix before any step runs, not by the
//! extract under its step name. Done where the source is on local disk
//! (the local bucket): the router never downloads a source, so elsewhere
//! the extract finds it, and its failure is recorded against the same
//! field (`runtime::blame`).

use std::sync::OnceLock;

use crate::media::Ffmpeg;
use crate::pipeline::manifest::{JobManifest, ManifestError};
use crate::ports::store::ObjectStore;
use crate::tasks::extract::DURATION_SLACK;

/// FFmpeg, found once; `None` when there is none (the check is skipped).
fn ffmpeg() -> Option<&'static Ffmpeg> {
    static FFMPEG: OnceLock<Option<Ffmpeg>> = OnceLock::new();
    FFMPEG.get_or_init(|| Ffmpeg::locate().ok()).as_ref()
}

/// Probes the job's source when the store has it on disk and checks every
/// clip against its duration. A source that cannot be probed is left to
/// the extract, which says what is wrong with the file.
pub async fn check(
    store: &dyn ObjectStore,
    manifest_key: &str,
    manifest: &JobManifest,
) -> Result<(), ManifestError> {
    let Some(path) = store.local_path(&manifest.source).filter(|p| p.is_file()) else {
        return Ok(());
    };
    let Some(ff) = ffmpeg().cloned() else {
        return Ok(());
    };
    match tokio::task::spawn_blocking(move || ff.probe(&path)).await {
        Ok(Ok(info)) if info.video.is_some() => clips_within(manifest_key, manifest, info.duration),
        _ => Ok(()),
    }
}

/// Every clip ends within `duration` seconds of source.
pub fn clips_within(
    manifest_key: &str,
    manifest: &JobManifest,
    duration: f64,
) -> Result<(), ManifestError> {
    for (i, clip) in manifest.clips.iter().enumerate() {
        if clip.end > duration + DURATION_SLACK {
            return Err(ManifestError {
                object: manifest_key.to_string(),
                field: format!("clips[{i}].end"),
                problem: format!(
                    "end ({} s) is past the end of the source `{}`, which lasts {duration:.2} s",
                    clip.end, manifest.source
                ),
                fix: format!(
                    "set clips[{i}].end to at most {duration:.2}, or point source at the longer video"
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::local_store::LocalStore;

    fn manifest(ends: &[f64]) -> JobManifest {
        let clips: Vec<_> = ends
            .iter()
            .map(|e| serde_json::json!({"start": 0.0, "end": e}))
            .collect();
        serde_json::from_value(serde_json::json!({"version": 1, "source": "sources/a.mp4",
            "output": "exports/a.mp4", "clips": clips}))
        .unwrap()
    }

    #[test]
    fn a_clip_past_the_end_names_its_field_and_the_fix() {
        assert!(clips_within("jobs/a.json", &manifest(&[1.0, 2.0]), 2.0).is_ok());
        let e = clips_within("jobs/a.json", &manifest(&[1.0, 60.0]), 2.0).unwrap_err();
        assert_eq!(
            (e.object.as_str(), e.field.as_str()),
            ("jobs/a.json", "clips[1].end")
        );
        assert!(
            e.problem.contains("60 s") && e.problem.contains("`sources/a.mp4`"),
            "{e}"
        );
        assert!(e.fix.contains("at most 2.00"), "{e}");
    }

    /// Against a real 2 s video in a local bucket; a file that is no video
    /// is left to the extract.
    #[tokio::test]
    async fn the_local_source_is_probed() {
        let Some(ff) = ffmpeg() else {
            panic!("FFmpeg not found: run `make tools`");
        };
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path()).unwrap();
        let video = dir.path().join("sources/a.mp4");
        std::fs::create_dir_all(video.parent().unwrap()).unwrap();
        let args: Vec<std::ffi::OsString> = [
            "-y",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=64x48:rate=10:duration=2",
            "-pix_fmt",
            "yuv420p",
        ]
        .iter()
        .map(Into::into)
        .chain([video.clone().into_os_string()])
        .collect();
        let status = std::process::Command::new(ff.path())
            .args(&args)
            .status()
            .unwrap();
        assert!(status.success());
        assert!(
            check(&store, "jobs/a.json", &manifest(&[2.0]))
                .await
                .is_ok()
        );
        let e = check(&store, "jobs/a.json", &manifest(&[2.5]))
            .await
            .unwrap_err();
        assert_eq!(e.field, "clips[0].end");
        std::fs::write(&video, b"not a video").unwrap();
        assert!(
            check(&store, "jobs/a.json", &manifest(&[2.5]))
                .await
                .is_ok()
        );
    }
}
