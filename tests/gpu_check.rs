//! `make gpu-check` without a GPU: its script's dry run (`--dry-run`: the
//! same `reelay bench gpu` on the CPU at tiny sizes) writes the table and
//! the JSON under `$OUT`, with the TFLOP/s arithmetic and no T4 projection.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_gpu_check_dry_run_writes_one_table_under_out() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(repo.join("containers/gpu-check.sh"))
        .arg("--dry-run")
        .env("OUT", out.path())
        .env("REELAY_BIN", env!("CARGO_BIN_EXE_reelay"))
        .env_remove("REELAY_DEVICE")
        .output()
        .unwrap();
    let log = std::fs::read_to_string(out.path().join("gpu-check.log")).unwrap_or_default();
    assert!(
        run.status.success(),
        "{}\n{log}",
        String::from_utf8_lossy(&run.stderr)
    );
    let table = std::fs::read_to_string(out.path().join("gpu-check.txt")).unwrap();
    assert!(table.starts_with("GPU check: cpu (no GPU)"), "{table}");
    assert!(
        table.contains("realesr-general-x4v3 at 32x18 input (2.42 MFLOP per input pixel)"),
        "{table}"
    );
    assert!(table.contains("T4 projection: none"), "{table}");

    let j: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("gpu-check.json")).unwrap())
            .unwrap();
    let rows = j["upscale"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "fp32 at batch 1 and 2");
    for (row, batch) in rows.iter().zip([1, 2]) {
        let r = &row["report"];
        assert_eq!(r["batch_size"], batch);
        assert_eq!(r["device"], "cpu");
        assert_eq!(r["precision"], "fp32");
        let fps = r["fps"].as_f64().unwrap();
        assert!(fps > 0.0);
        // TFLOP/s = frames/s x input pixels x MFLOP per pixel / 10^6.
        let want = fps * 32.0 * 18.0 * 2.42 / 1e6;
        let got = r["tflops"].as_f64().unwrap();
        assert!((got - want).abs() <= want * 1e-9, "{got} vs {want}");
        assert!(row["t4_fps"].is_null(), "no projection from a CPU run");
        // Each table row shows the measured frames/s.
        assert!(table.contains(&format!("{fps:>10.2}")), "{table}");
    }
    let frame = &j["frame"];
    assert!(frame["step_fps"].as_f64().unwrap() > 0.0, "{frame}");
    assert!(frame["model_fps"].as_f64().unwrap() > 0.0, "{frame}");
    assert!(frame["ratio"].as_f64().unwrap() > 0.0, "{frame}");
    assert!(table.contains("frame step (fp32 batch 1"), "{table}");
    let detect = &j["detect"];
    assert_eq!(detect["device"], "cpu");
    assert!(detect["model_fps"].as_f64().unwrap() > 0.0, "{detect}");
    assert!(
        table.contains(&format!(
            "detect {} on cpu",
            detect["model"].as_str().unwrap()
        )),
        "{table}"
    );
}

#[test]
fn the_real_gpu_check_refuses_a_machine_without_a_gpu() {
    if reelay::inference::cuda::probe_driver().is_ok() {
        eprintln!("skipped: this machine has an NVIDIA GPU (make gpu-check runs here)");
        return;
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = tempfile::tempdir().unwrap();
    let run = Command::new("bash")
        .arg(repo.join("containers/gpu-check.sh"))
        .env("OUT", out.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no NVIDIA GPU here"), "{stderr}");
    // It stopped before installing or building anything.
    assert!(!stderr.contains("install:"), "{stderr}");
    assert!(out.path().join("gpu-check.log").is_file());
}
