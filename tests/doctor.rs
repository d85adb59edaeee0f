//! `reelay doctor` on this checkout's own tools (`make setup`): the CPU
//! branch, a device that cannot work, and a tampered model. Its CUDA branch
//! runs on the GPU worker's contents in tests/gpu_worker.rs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn doctor(args: &[&str], env: &[(&str, &Path)]) -> (Output, Value) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelay"));
    cmd.arg("doctor")
        .args(args)
        .arg("--json")
        .current_dir(repo())
        .env_remove("REELAY_DEVICE")
        .env_remove("ORT_DYLIB_PATH")
        .env_remove("REELAY_MODELS_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

#[test]
fn doctor_on_the_cpu_reports_every_part_and_passes() {
    let (out, j) = doctor(&["--device", "cpu"], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(j["ok"], true);
    assert_eq!(j["device"]["asked"], "cpu");
    assert_eq!(j["device"]["resolved"], "cpu");
    assert_eq!(j["onnxruntime"]["version"], "1.31.1");
    let ort = j["onnxruntime"]["path"].as_str().unwrap();
    assert!(
        ort.ends_with(".tools/onnxruntime/lib/libonnxruntime.so"),
        "{ort}"
    );
    let providers = j["onnxruntime"]["providers"].to_string();
    assert!(providers.contains("CPUExecutionProvider"), "{providers}");
    // The CPU wheel has no CUDA provider, and doctor says so.
    assert!(!providers.contains("CUDAExecutionProvider"), "{providers}");
    assert!(j["cuda"]["provider_library"].is_null());
    let why = j["cuda"]["register_error"].as_str().unwrap();
    assert!(
        why.contains("libonnxruntime_providers_cuda.so is not next to"),
        "{why}"
    );
    // Every model file in the manifest, each checked.
    let manifest = reelay::models::Manifest::load(&repo().join("models")).unwrap();
    let files = j["models"]["files"].as_array().unwrap();
    assert_eq!(files.len(), reelay::models::verify(&manifest).len());
    assert!(files.iter().all(|f| f["status"] == "ok"), "{files:?}");
    assert!(
        j["ffmpeg"]["version"].as_str().unwrap().contains("9."),
        "{}",
        j["ffmpeg"]
    );
    // NVENC and NVDEC were really tried; without a driver they do not work.
    assert!(j["ffmpeg"]["nvenc"]["ok"].is_boolean() && j["ffmpeg"]["nvdec"]["ok"].is_boolean());
    if !j["cuda"]["driver_error"].is_null() {
        assert_eq!(j["ffmpeg"]["nvenc"]["ok"], false);
        let why = j["ffmpeg"]["nvenc"]["error"].as_str().unwrap();
        assert!(why.contains("libcuda"), "{why}");
        assert_eq!(j["ffmpeg"]["nvdec"]["ok"], false);
    }
    assert!(
        j["font"]["path"]
            .as_str()
            .unwrap()
            .ends_with("Roboto-Bold.ttf")
    );
}

#[test]
fn doctor_fails_for_a_device_that_cannot_work_and_for_a_tampered_model() {
    // This build has no CUDA (make test builds without --features cuda).
    if !cfg!(feature = "cuda") {
        let (out, j) = doctor(&["--device", "cuda"], &[]);
        assert!(!out.status.success());
        assert_eq!(j["device"]["resolved"], "none");
        let problems = j["problems"].to_string();
        assert!(
            problems.contains("built without the `cuda` feature"),
            "{problems}"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("device cuda cannot work here"), "{stderr}");
        // auto works, on the CPU, and says why.
        let (out, j) = doctor(&["--device", "auto", "--quick"], &[]);
        assert!(out.status.success());
        assert_eq!(j["device"]["resolved"], "cpu");
        assert!(j["ffmpeg"]["nvenc"].is_null(), "--quick skips the trials");
        let reason = j["device"]["reason"].as_str().unwrap();
        assert!(
            reason.starts_with("auto picks cpu:") && reason.contains("cuda"),
            "{reason}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(repo().join("models")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    let victim = dir.path().join("realesr-general-x4v3.onnx");
    let mut bytes = std::fs::read(&victim).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&victim, bytes).unwrap();
    let (out, j) = doctor(
        &["--device", "cpu", "--quick"],
        &[("REELAY_MODELS_DIR", dir.path())],
    );
    assert!(!out.status.success());
    assert_eq!(j["models"]["ok"], false);
    let err = j["models"]["error"].as_str().unwrap();
    assert!(err.contains("realesr-general-x4v3 (fp32)"), "{err}");
    assert!(
        !err.contains("animevideov3"),
        "only the tampered file: {err}"
    );
}
