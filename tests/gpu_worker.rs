//! The GPU worker image's contents, checked on a machine without a GPU.
//!
//! `make worker-image` lays them out with the image's own recipe
//! (`containers/assemble-worker.sh`, reelay built with `--features cuda`)
//! into `$REELAY_WORKER_IMAGE` (default `.tools/gpu-worker`). These tests run
//! that real binary with the environment the Dockerfile sets, and prove the
//! CUDA chain up to the driver:
//!
//! - every library `libonnxruntime_providers_cuda.so` links resolves inside
//!   the image except the driver's `libcuda.so.1`, and so does cuDNN's;
//! - `--device cuda` fails naming the missing driver, not a library or a
//!   build without CUDA; `--device auto` picks the CPU and says why;
//! - a deliberately broken copy (a library removed, reelay built without
//!   `--features cuda`) fails the same checks.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The laid-out image; missing means `make worker-image` did not run.
fn image() -> PathBuf {
    let dir = std::env::var_os("REELAY_WORKER_IMAGE")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".tools/gpu-worker"));
    assert!(
        dir.join("bin/reelay").is_file() && dir.join("lib").is_dir(),
        "no GPU worker image contents at {}\n=> run `make worker-image` (containers/assemble-worker.sh --profile dev)",
        dir.display()
    );
    // Paths in reports are the real files' (links followed).
    std::fs::canonicalize(&dir).unwrap()
}

/// The final stage's `ENV` of containers/gpu-worker.Dockerfile, with
/// `/opt/reelay` mapped to `dir`: the environment the worker runs with.
fn image_env(dir: &Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(repo().join("containers/gpu-worker.Dockerfile")).unwrap();
    let joined = text.replace("\\\n", " ");
    let last_stage = joined.rsplit("\nFROM ").next().unwrap();
    let mut env = Vec::new();
    for line in last_stage.lines().filter(|l| l.starts_with("ENV ")) {
        for pair in line["ENV ".len()..].split_whitespace() {
            let (k, v) = pair.split_once('=').expect("ENV KEY=VALUE");
            let v = v
                .replace("/opt/reelay", &dir.to_string_lossy())
                .replace("$PATH", "/usr/bin:/bin");
            env.push((k.to_string(), v));
        }
    }
    assert!(
        env.iter().any(|(k, _)| k == "ORT_DYLIB_PATH"),
        "the Dockerfile sets ORT_DYLIB_PATH"
    );
    env
}

/// `dir/bin/reelay ARGS` with only the image's environment, in a scratch folder.
fn reelay_in(dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Output {
    let scratch = tempfile::tempdir().unwrap();
    Command::new(dir.join("bin/reelay"))
        .args(args)
        .env_clear()
        .envs(image_env(dir))
        .envs(extra.iter().copied())
        .env("HOME", scratch.path())
        .current_dir(scratch.path())
        .output()
        .unwrap()
}

/// These tests are about a machine without a GPU; on one with a driver they
/// say so and pass (`make gpu-check` covers that side).
fn gpu_here() -> bool {
    match reelay::inference::cuda::probe_driver() {
        Ok(d) => {
            eprintln!(
                "skipped: this machine has an NVIDIA driver and {} GPU(s)",
                d.gpus.len()
            );
            true
        }
        Err(_) => false,
    }
}

fn doctor(dir: &Path, device: &str) -> (Output, Value) {
    let out = reelay_in(dir, &["doctor", "--device", device, "--json"], &[]);
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "doctor printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

/// Libraries that come from the base OS, not from the image's lib/.
const SYSTEM: &[&str] = &[
    "linux-vdso.so.1",
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libstdc++.so.6",
    "libgcc_s.so.1",
    "libz.so.1",
    "ld-linux-x86-64.so.2",
];

/// `ldd -r` over the CUDA provider and every cuDNN library in `dir/lib`,
/// with only that folder on the search path: every dependency outside the
/// OS's own must resolve there, except `libcuda.so.1`, and every undefined
/// symbol must be the driver's (`cu*`). Returns what breaks that rule.
fn chain_problems(dir: &Path) -> Vec<String> {
    let lib = dir.join("lib");
    let mut targets = vec![lib.join("libonnxruntime_providers_cuda.so")];
    let mut cudnn: Vec<PathBuf> = std::fs::read_dir(&lib)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("libcudnn")
        })
        .collect();
    cudnn.sort();
    targets.extend(cudnn);
    let mut problems = Vec::new();
    if targets.len() < 2 {
        problems.push(format!("no cuDNN library in {}", lib.display()));
    }
    for target in &targets {
        if !target.is_file() {
            problems.push(format!("{} is missing", target.display()));
            continue;
        }
        let out = Command::new("ldd")
            .arg("-r")
            .arg(target)
            .env("LD_LIBRARY_PATH", &lib)
            // ONNX Runtime loads its provider bridge before the provider.
            .env("LD_PRELOAD", lib.join("libonnxruntime_providers_shared.so"))
            .output()
            .expect("ldd runs");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        let name = target.file_name().unwrap().to_string_lossy();
        for line in text.lines().map(str::trim) {
            if let Some((dep, at)) = line.split_once(" => ") {
                let at = at.split(" (").next().unwrap_or("");
                if at == "not found" {
                    if dep != "libcuda.so.1" {
                        problems.push(format!("{name}: {dep} not found"));
                    }
                } else if !Path::new(at).starts_with(&lib) && !SYSTEM.contains(&dep) {
                    problems.push(format!("{name}: {dep} resolved outside the image, at {at}"));
                }
            } else if let Some(sym) = line.strip_prefix("undefined symbol: ") {
                let sym = sym
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .trim_end_matches(',');
                let driver_api =
                    sym.starts_with("cu") && sym[2..].starts_with(|c: char| c.is_ascii_uppercase());
                if !driver_api {
                    problems.push(format!("{name}: undefined symbol {sym}"));
                }
            }
        }
        if name == "libonnxruntime_providers_cuda.so" && !text.contains("libcuda.so.1 => not found")
        {
            problems.push(format!(
                "{name}: does not link libcuda.so.1 (not the CUDA provider?)"
            ));
        }
    }
    for (loader, wanted) in loaded_at_run_time(&lib) {
        if !lib.join(&wanted).is_file() {
            problems.push(format!(
                "{loader} loads {wanted} at run time: not in the image"
            ));
        }
    }
    problems.sort();
    problems.dedup();
    problems
}

/// What is `dlopen`ed by name rather than linked: the CUDA provider loads
/// cuDNN (`libcudnn.so.9`); cuDNN names its sub-libraries and NVRTC as
/// `libcudnn_*.so` / `libnvrtc.so` strings, to which it appends the major.
fn loaded_at_run_time(lib: &Path) -> Vec<(String, String)> {
    let mut out = vec![(
        "libonnxruntime_providers_cuda.so".to_string(),
        "libcudnn.so.9".to_string(),
    )];
    for loader in ["libcudnn.so.9", "libcudnn_graph.so.9"] {
        let Ok(bytes) = std::fs::read(lib.join(loader)) else {
            out.push((loader.to_string(), loader.to_string()));
            continue;
        };
        for token in bytes.split(|b| !b.is_ascii_graphic()) {
            let t = String::from_utf8_lossy(token);
            if t.starts_with("libcudnn_") && t.ends_with(".so") {
                out.push((loader.to_string(), format!("{t}.9")));
            } else if t == "libnvrtc.so" {
                out.push((loader.to_string(), "libnvrtc.so.13".to_string()));
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn every_cuda_library_resolves_inside_the_image_except_the_driver() {
    let dir = image();
    assert_eq!(chain_problems(&dir), Vec::<String>::new());
    // cuDNN's run-time loads were found (and are all in the image).
    let loaded: BTreeSet<String> = loaded_at_run_time(&dir.join("lib"))
        .into_iter()
        .map(|(_, w)| w)
        .collect();
    for want in [
        "libcudnn.so.9",
        "libcudnn_cnn.so.9",
        "libcudnn_ops.so.9",
        "libcudnn_engines_precompiled.so.9",
        "libcudnn_heuristic.so.9",
        "libnvrtc.so.13",
    ] {
        assert!(loaded.contains(want), "{want} not among {loaded:?}");
    }
    // What the provider links, by name: the CUDA 13 set the pins name.
    let needed = Command::new("readelf")
        .arg("-d")
        .arg(dir.join("lib/libonnxruntime_providers_cuda.so"))
        .output()
        .expect("readelf runs");
    let needed: BTreeSet<String> = String::from_utf8_lossy(&needed.stdout)
        .lines()
        .filter(|l| l.contains("(NEEDED)"))
        .filter_map(|l| l.split('[').nth(1)?.split(']').next().map(str::to_string))
        .filter(|n| n.starts_with("libcu"))
        .collect();
    let want: BTreeSet<String> = [
        "libcublasLt.so.13",
        "libcublas.so.13",
        "libcurand.so.10",
        "libcudart.so.13",
        "libcuda.so.1",
    ]
    .map(String::from)
    .into();
    assert_eq!(needed, want);
}

#[test]
fn the_image_ships_onnx_runtime_under_its_versioned_name() {
    let dir = image();
    let lib: BTreeSet<String> = std::fs::read_dir(dir.join("lib"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(lib.contains("libonnxruntime.so.1.31.1"), "{lib:?}");
    assert!(
        !lib.contains("libonnxruntime.so"),
        "renamed: the audit could not read the version"
    );
    let env = image_env(&dir);
    let ort = &env.iter().find(|(k, _)| k == "ORT_DYLIB_PATH").unwrap().1;
    assert!(
        Path::new(ort).is_file(),
        "ORT_DYLIB_PATH={ort} is not in the image"
    );
    // Every file the recipe wrote is listed with its digest.
    let contents = std::fs::read_to_string(dir.join("CONTENTS.sha256")).unwrap();
    for want in [
        "./bin/reelay",
        "./bin/ffmpeg",
        "./lib/libcudnn.so.9",
        "./models/manifest.toml",
        "./fonts/Roboto-Bold.ttf",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(want)),
            "{want} not in CONTENTS.sha256"
        );
    }
}

#[test]
fn device_cuda_without_a_gpu_fails_naming_the_driver() {
    let dir = image();
    if gpu_here() {
        return;
    }
    let (out, j) = doctor(&dir, "cuda");
    assert!(
        !out.status.success(),
        "doctor --device cuda passed on a machine without a GPU"
    );
    assert_eq!(
        j["cuda_compiled"], true,
        "the image's reelay lacks --features cuda"
    );
    assert_eq!(j["onnxruntime"]["version"], "1.31.1");
    assert_eq!(
        j["onnxruntime"]["path"],
        dir.join("lib/libonnxruntime.so.1.31.1")
            .to_string_lossy()
            .as_ref()
    );
    let providers: Vec<&str> = j["onnxruntime"]["providers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert!(
        providers.contains(&"CUDAExecutionProvider"),
        "{providers:?}"
    );
    assert!(providers.contains(&"CPUExecutionProvider"), "{providers:?}");
    // Every CUDA library loaded (RTLD_NOW) from the image's lib/.
    let libs = j["cuda"]["libraries"].as_array().unwrap();
    assert!(libs.len() >= 12, "{libs:?}");
    for l in libs {
        assert_eq!(l["ok"], true, "{l}");
        let path = l["path"]
            .as_str()
            .unwrap_or_else(|| panic!("{l}: not from the image"));
        assert!(Path::new(path).starts_with(dir.join("lib")), "{l}");
    }
    assert_eq!(j["cuda"]["libraries_ok"], true);
    let driver = j["cuda"]["driver_error"].as_str().unwrap();
    assert!(
        driver.starts_with("no NVIDIA driver: libcuda.so.1 cannot be loaded"),
        "{driver}"
    );
    assert_eq!(j["device"]["resolved"], "none");
    let problems: Vec<&str> = j["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    assert_eq!(
        problems.len(),
        1,
        "only the driver is missing: {problems:?}"
    );
    assert!(
        problems[0].starts_with("CUDA: no NVIDIA driver"),
        "{problems:?}"
    );
    // What else the image must have.
    assert_eq!(j["models"]["ok"], true, "{}", j["models"]);
    assert_eq!(
        j["ffmpeg"]["path"],
        dir.join("bin/ffmpeg").to_string_lossy().as_ref()
    );
    assert_eq!(
        j["font"]["path"],
        dir.join("fonts/Roboto-Bold.ttf").to_string_lossy().as_ref()
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("libcuda.so.1"), "{stderr}");
    assert!(!stderr.contains("built without"), "{stderr}");

    // A real step on --device cuda: the same error, before any model work.
    let scratch = tempfile::tempdir().unwrap();
    let video = small_video(&dir, scratch.path());
    let out_json = scratch.path().join("d.json");
    let run = run_detect(&dir, &video, &out_json, "cuda");
    let err = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success(), "{err}");
    assert!(
        err.contains("no usable NVIDIA GPU: no NVIDIA driver: libcuda.so.1 cannot be loaded"),
        "{err}"
    );
    assert!(
        !err.contains("built without") && !err.contains("providers_cuda"),
        "{err}"
    );
    assert!(!out_json.exists());
}

#[test]
fn device_auto_without_a_gpu_picks_the_cpu_and_says_why() {
    let dir = image();
    if gpu_here() {
        return;
    }
    let (out, j) = doctor(&dir, "auto");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(j["device"]["resolved"], "cpu");
    let reason = j["device"]["reason"].as_str().unwrap();
    assert!(reason.contains("libcuda.so.1"), "{reason}");

    let scratch = tempfile::tempdir().unwrap();
    let video = small_video(&dir, scratch.path());
    let out_json = scratch.path().join("d.json");
    let run = run_detect(&dir, &video, &out_json, "auto");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    assert!(out_json.is_file());
    // The log says which device and why...
    let line = stderr
        .lines()
        .find(|l| l.contains("device auto: picked cpu"))
        .unwrap_or_else(|| panic!("no device line in the log:\n{stderr}"));
    assert!(
        line.contains("no NVIDIA driver") && line.contains("libcuda.so.1"),
        "{line}"
    );
    // ...and so does the audit metadata of the output.
    assert!(stdout.contains("reelay-device: cpu"), "{stdout}");
    let meta = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("reelay-device-reason: "))
        .unwrap_or_else(|| panic!("no reelay-device-reason:\n{stdout}"));
    assert!(
        meta.starts_with("auto picked cpu: no NVIDIA driver: libcuda.so.1"),
        "{meta}"
    );
    assert!(meta.is_ascii() && meta.len() <= 200, "{meta}");
}

#[test]
fn a_broken_copy_of_the_image_fails_the_checks() {
    let dir = image();
    // Beside the image, so hard links work: cheap, and the original is not
    // touched by what is removed from the copy.
    let scratch = tempfile::Builder::new()
        .prefix(".broken-")
        .tempdir_in(dir.parent().unwrap())
        .unwrap();
    let copy = scratch.path().join("image");
    let cp = Command::new("cp")
        .arg("-al")
        .arg(&dir)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(cp.success());

    // A library missing from the recipe.
    std::fs::remove_file(copy.join("lib/libcublasLt.so.13")).unwrap();
    let problems = chain_problems(&copy);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("libcublasLt.so.13 not found")),
        "{problems:?}"
    );
    let (out, j) = doctor(&copy, "cuda");
    assert!(!out.status.success());
    assert_eq!(j["cuda"]["libraries_ok"], false);
    let bad: Vec<&Value> = j["cuda"]["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["ok"] == false)
        .collect();
    assert!(
        bad.iter().any(|l| l["name"] == "libcublasLt.so.13"),
        "{bad:?}"
    );

    // A cuDNN sub-library missing: cuDNN loads it at run time.
    std::fs::remove_file(copy.join("lib/libcudnn_cnn.so.9")).unwrap();
    let problems = chain_problems(&copy);
    assert!(
        problems.contains(
            &"libcudnn.so.9 loads libcudnn_cnn.so.9 at run time: not in the image".to_string()
        ),
        "{problems:?}"
    );

    // reelay built without --features cuda (the test binary, when `cargo
    // test` ran without the feature as `make test` does).
    let plain = PathBuf::from(env!("CARGO_BIN_EXE_reelay"));
    if !cfg!(feature = "cuda") {
        std::fs::remove_file(copy.join("bin/reelay")).unwrap();
        std::fs::copy(&plain, copy.join("bin/reelay")).unwrap();
        let (out, j) = doctor(&copy, "cuda");
        assert!(!out.status.success());
        assert_eq!(j["cuda_compiled"], false);
        let problems = j["problems"].to_string();
        assert!(
            problems.contains("built without the `cuda` feature"),
            "{problems}"
        );
    }
}

/// One second of 160x120 video made by the image's FFmpeg.
fn small_video(dir: &Path, at: &Path) -> PathBuf {
    let video = at.join("v.mp4");
    let st = Command::new(dir.join("bin/ffmpeg"))
        .args(["-hide_banner", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=160x120:rate=10:duration=1")
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(&video)
        .status()
        .unwrap();
    assert!(st.success());
    video
}

fn run_detect(dir: &Path, video: &Path, out: &Path, device: &str) -> Output {
    let (v, o) = (video.to_string_lossy(), out.to_string_lossy());
    reelay_in(
        dir,
        &[
            "run", "detect", "--input", &v, "--output", &o, "--set", "fps=2",
        ],
        &[("REELAY_DEVICE", device), ("REELAY_LOG_FORMAT", "text")],
    )
}
