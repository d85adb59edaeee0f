//! `reelay bench placement`: the same framed job run single-container and
//! fan-out, for 1, 4 and 8 clips, as real `reelay run` processes.
//!
//! - **single-container:** one `reelay run export` process: its start,
//!   ONNX Runtime, one model load, every clip's cut, frame and overlay,
//!   and the compile.
//! - **fan-out (unfused):** per clip a `reelay run extract` (the router's
//!   work), a `reelay run frame` (a GPU worker: its own start and model
//!   load) and a `reelay run overlay` (the router again), then one
//!   `reelay run compile`. The processes run one at a time here (two
//!   cores), so the fleet's wall time is projected from the measured
//!   ones: the slowest extract, frame and overlay, plus the compile, as if
//!   every clip had its own worker. Bucket transfers between the steps are
//!   not counted, which flatters fan-out.
//!
//! Cost prices GPU-task seconds at the `t4` rate and router seconds at the
//! `cpu` rate of the price table. The figures are ratios, fan-out over
//! single-container, on the same machine in the same run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::prices::PriceTable;
use crate::media::{EncodeProfile, Ffmpeg};
use crate::pipeline::manifest::{JobManifest, Placement};
use crate::pipeline::placement;

#[derive(Debug, Clone, Serialize)]
pub struct PlacementBenchOptions {
    pub clip_counts: Vec<usize>,
    pub clip_seconds: f64,
    pub model: String,
    /// Crop size (model input), output size is 4× it.
    pub crop: (u32, u32),
    /// Runs of each process; the figures are medians.
    pub repetitions: u32,
    /// A GPU task's cold start on the fleet (container start and image
    /// pull), added to every GPU task in the fleet projection: processes
    /// here start warm.
    pub cold_start_secs: f64,
}

impl Default for PlacementBenchOptions {
    fn default() -> Self {
        PlacementBenchOptions {
            clip_counts: vec![1, 4, 8],
            clip_seconds: 1.0,
            model: "realesr-animevideov3".into(),
            crop: (96, 54),
            repetitions: 3,
            // The old platform's measured cold start.
            cold_start_secs: 7.0,
        }
    }
}

/// Seconds and dollars of one way of running a job.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Side {
    /// Wall time (projected for a fleet, for fan-out).
    pub wall: f64,
    /// Seconds of GPU tasks.
    pub gpu: f64,
    /// Seconds of router (CPU) tasks.
    pub router: f64,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct PricedSide {
    #[serde(flatten)]
    pub side: Side,
    pub usd: f64,
}

impl Side {
    /// With `gpu_tasks` cold starts of `c` seconds: paid once in wall time
    /// (they start together), `gpu_tasks` times in GPU time.
    fn cold(self, gpu_tasks: usize, c: f64) -> Side {
        Side {
            wall: self.wall + c,
            gpu: self.gpu + gpu_tasks as f64 * c,
            router: self.router,
        }
    }

    fn priced(self, gpu_price: f64, cpu_price: f64) -> PricedSide {
        PricedSide {
            side: self,
            usd: self.gpu * gpu_price + self.router * cpu_price,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementCase {
    pub clips: usize,
    pub frames: u64,
    /// One `export` task.
    pub single: PricedSide,
    /// reelay's fan-out: each clip's overlay fused into its frame step.
    pub fan_out: PricedSide,
    /// Fan-out with the overlay as its own step after the frame step.
    pub unfused: PricedSide,
    /// The same three on a fleet: one cold start per GPU task.
    pub fleet_single: PricedSide,
    pub fleet_fan_out: PricedSide,
    pub fleet_unfused: PricedSide,
    /// What the planner picks for this job with no `placement`.
    pub rule: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlacementReport {
    pub machine: String,
    pub options: PlacementBenchOptions,
    /// One `reelay run frame` on a one-frame clip: process start, runtime
    /// and model load, the per-task overhead fan-out pays per clip.
    pub task_overhead_secs: f64,
    /// Model-and-pipeline seconds per frame, from the single-container runs.
    pub secs_per_frame: f64,
    pub cases: Vec<PlacementCase>,
}

/// The median wall time of `repetitions` runs of `reelay ARGS`.
fn run_timed(exe: &Path, repetitions: u32, args: &[String]) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for _ in 0..repetitions.max(1) {
        let started = Instant::now();
        let out = Command::new(exe)
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .with_context(|| format!("running reelay {}", args.join(" ")))?;
        anyhow::ensure!(
            out.status.success(),
            "reelay {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        times.push(started.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn write_json(path: &Path, v: &serde_json::Value) -> anyhow::Result<String> {
    std::fs::write(path, serde_json::to_vec(v)?)?;
    Ok(format!("@{}", path.display()))
}

fn step(kind: &str, inputs: &[&Path], output: &Path, sets: &[String]) -> Vec<String> {
    let mut a = vec!["run".to_string(), kind.to_string(), "--input".into()];
    a.extend(inputs.iter().map(|p| p.display().to_string()));
    a.push("--output".into());
    a.push(output.display().to_string());
    for s in sets {
        a.push("--set".into());
        a.push(s.clone());
    }
    a
}

/// Runs the benchmark. Blocking; minutes on two cores.
pub fn run(
    ff: &Ffmpeg,
    profile: &EncodeProfile,
    prices: &PriceTable,
    scratch: &Path,
    opts: &PlacementBenchOptions,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<PlacementReport> {
    let setup = Setup::prepare(ff, profile, scratch, opts, log)?;
    let overhead = setup.task_overhead()?;
    log(&format!(
        "per-task overhead (a one-frame frame step): {overhead:.2} s"
    ));
    let rates = Rates {
        gpu: prices.get("t4").copied().unwrap_or(0.0),
        cpu: prices.get("cpu").copied().unwrap_or(0.0),
    };
    let mut cases = Vec::new();
    let mut per_frame = Vec::new();
    for &n in &opts.clip_counts {
        let manifest = setup.job(n)?;
        let (single, frames) = setup.single_container(ff, &manifest, n, log)?;
        per_frame.push((single - overhead).max(0.0) / frames.max(1) as f64);
        let (fan, unfused) = setup.fan_out(n, log)?;
        let single = Side {
            wall: single,
            gpu: single,
            router: 0.0,
        };
        let c = opts.cold_start_secs;
        let price = |side: Side| side.priced(rates.gpu, rates.cpu);
        cases.push(PlacementCase {
            clips: n,
            frames,
            single: price(single),
            fan_out: price(fan),
            unfused: price(unfused),
            fleet_single: price(single.cold(1, c)),
            fleet_fan_out: price(fan.cold(n, c)),
            fleet_unfused: price(unfused.cold(n, c)),
            rule: placement::choose(&manifest).as_str(),
        });
    }
    per_frame.sort_by(f64::total_cmp);
    Ok(PlacementReport {
        machine: super::frame::machine(),
        options: opts.clone(),
        task_overhead_secs: overhead,
        secs_per_frame: per_frame.get(per_frame.len() / 2).copied().unwrap_or(0.0),
        cases,
    })
}

/// USD per second of a GPU task and of a router task.
struct Rates {
    gpu: f64,
    cpu: f64,
}

/// What every case shares: the `reelay` to run, the source, and the frame
/// step's parameters with and without the fused overlay.
struct Setup<'a> {
    exe: PathBuf,
    scratch: &'a Path,
    opts: &'a PlacementBenchOptions,
    source: PathBuf,
    framing: serde_json::Value,
    spec: serde_json::Value,
    frame_sets: Vec<String>,
    fused_sets: Vec<String>,
}

impl<'a> Setup<'a> {
    /// Makes the source, long enough for the most clips, and the params.
    fn prepare(
        ff: &Ffmpeg,
        profile: &EncodeProfile,
        scratch: &'a Path,
        opts: &'a PlacementBenchOptions,
        log: &mut dyn FnMut(&str),
    ) -> anyhow::Result<Setup<'a>> {
        std::fs::create_dir_all(scratch)?;
        let max_clips = opts.clip_counts.iter().copied().max().unwrap_or(1);
        let source = scratch.join("placement-source.mp4");
        let source_opts = super::media::CpuBenchOptions {
            source_seconds: opts.clip_seconds * max_clips as f64 + 1.0,
            width: 640,
            height: 360,
            fps: 30,
            ..super::media::CpuBenchOptions::default()
        };
        log(&format!(
            "making a {:.0} s 640x360@30 source ...",
            source_opts.source_seconds
        ));
        super::media::make_source(
            ff,
            &source,
            &source_opts,
            profile,
            &CancellationToken::new(),
        )?;
        let (cw, ch) = opts.crop;
        let framing = serde_json::json!({"crop": {"x": 200, "y": 100, "w": cw, "h": ch},
            "model": opts.model, "size": format!("{}x{}", cw * 4, ch * 4)});
        let spec = serde_json::json!({"spotlight": {"keyframes": [{"t": 0, "x": cw * 2, "y": ch * 2,
            "rx": cw, "ry": ch}], "dim": 0.5}});
        let frame_sets: Vec<String> = framing
            .as_object()
            .expect("an object")
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let mut fused_sets = frame_sets.clone();
        fused_sets.push(format!(
            "overlay={}",
            write_json(
                &scratch.join("placement-fused-overlay.json"),
                &serde_json::json!({"spec": spec})
            )?
        ));
        Ok(Setup {
            exe: std::env::current_exe()?,
            scratch,
            opts,
            source,
            framing,
            spec,
            frame_sets,
            fused_sets,
        })
    }

    /// The median seconds of `reelay ARGS`.
    fn timed(&self, args: &[String]) -> anyhow::Result<f64> {
        run_timed(&self.exe, self.opts.repetitions, args)
    }

    /// Per-task overhead: a frame step on one frame.
    fn task_overhead(&self) -> anyhow::Result<f64> {
        let one = self.scratch.join("placement-one.mp4");
        let cut = ["start=0".into(), format!("end={}", 1.0 / 30.0)];
        self.timed(&step("extract", &[&self.source], &one, &cut))?;
        let framed = self.scratch.join("placement-one-framed.mp4");
        self.timed(&step("frame", &[&one], &framed, &self.frame_sets))
    }

    /// A job of `n` framed clips with a spotlight, faded together.
    fn job(&self, n: usize) -> anyhow::Result<JobManifest> {
        let clip_seconds = self.opts.clip_seconds;
        let clips: Vec<serde_json::Value> = (0..n)
            .map(|i| {
                let start = i as f64 * clip_seconds;
                serde_json::json!({"start": start, "end": start + clip_seconds,
                    "framing": self.framing, "overlay": self.spec})
            })
            .collect();
        Ok(serde_json::from_value(serde_json::json!({"version": 1,
            "source": "sources/s.mp4", "output": "exports/e.mp4", "clips": clips,
            "transition": {"kind": "fade", "seconds": 0.2}}))?)
    }

    /// One `export` task for the whole job: its seconds and the frames it
    /// wrote.
    fn single_container(
        &self,
        ff: &Ffmpeg,
        manifest: &JobManifest,
        n: usize,
        log: &mut dyn FnMut(&str),
    ) -> anyhow::Result<(f64, u64)> {
        let steps = crate::pipeline::planner::job_steps(&JobManifest {
            placement: Some(Placement::SingleContainer),
            ..manifest.clone()
        });
        let export = steps.last().expect("an export step");
        let mut sets = Vec::new();
        for (k, v) in export.params.as_object().expect("an object") {
            sets.push(
                write_json(&self.scratch.join(format!("placement-{k}.json")), v)
                    .map(|f| format!("{k}={f}"))?,
            );
        }
        log(&format!(
            "[{n} clips] single-container: one export task ..."
        ));
        let out = self.scratch.join(format!("placement-single-{n}.mp4"));
        let secs = self.timed(&step("export", &[&self.source], &out, &sets))?;
        Ok((secs, ff.count_frames(&out)?))
    }

    /// Fan-out, fused (extract, frame with the overlay, compile) and
    /// unfused (extract, frame, overlay, compile), projected onto a fleet
    /// with a worker per clip.
    fn fan_out(&self, n: usize, log: &mut dyn FnMut(&str)) -> anyhow::Result<(Side, Side)> {
        log(&format!(
            "[{n} clips] fan-out: {n} extract, {n} fused frame, then unfused: {n} frame + {n} overlay, compiles ..."
        ));
        let (mut ext, mut fused, mut frm, mut ovl) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut fused_clips, mut unfused_clips) = (Vec::new(), Vec::new());
        let overlay_set = write_json(&self.scratch.join("placement-spec.json"), &self.spec)?;
        let at = |name: String| self.scratch.join(name);
        for i in 0..n {
            let start = i as f64 * self.opts.clip_seconds;
            let cut = at(format!("placement-cut-{i}.mp4"));
            let range = [
                format!("start={start}"),
                format!("end={}", start + self.opts.clip_seconds),
            ];
            ext.push(self.timed(&step("extract", &[&self.source], &cut, &range))?);
            let fused_out = at(format!("placement-fused-{i}.mp4"));
            fused.push(self.timed(&step("frame", &[&cut], &fused_out, &self.fused_sets))?);
            fused_clips.push(fused_out);
            let framed = at(format!("placement-framed-{i}.mp4"));
            frm.push(self.timed(&step("frame", &[&cut], &framed, &self.frame_sets))?);
            let drawn = at(format!("placement-drawn-{i}.mp4"));
            let spec = [format!("spec={overlay_set}")];
            ovl.push(self.timed(&step("overlay", &[&framed], &drawn, &spec))?);
            unfused_clips.push(drawn);
        }
        let compile = |clips: &[PathBuf], name: &str| -> anyhow::Result<f64> {
            let refs: Vec<&Path> = clips.iter().map(PathBuf::as_path).collect();
            let out = at(format!("placement-{name}-{n}.mp4"));
            let transition = [r#"transition={"kind": "fade", "seconds": 0.2}"#.to_string()];
            self.timed(&step("compile", &refs, &out, &transition))
        };
        let compile_fused = compile(&fused_clips, "fan")?;
        let compile_unfused = compile(&unfused_clips, "unfused")?;
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let sum = |v: &[f64]| v.iter().sum::<f64>();
        let fan = Side {
            wall: max(&ext) + max(&fused) + compile_fused,
            gpu: sum(&fused),
            router: sum(&ext) + compile_fused,
        };
        let unfused = Side {
            wall: max(&ext) + max(&frm) + max(&ovl) + compile_unfused,
            gpu: sum(&frm),
            router: sum(&ext) + sum(&ovl) + compile_unfused,
        };
        Ok((fan, unfused))
    }
}

pub fn render(r: &PlacementReport) -> String {
    let mut s = format!(
        "placement: {} clips of {:.1} s, {} crop {}x{} with a spotlight, on {}\n\
         per-task overhead here {:.2} s (process, runtime, model load), {:.3} s per frame; medians of {} runs\n",
        r.options
            .clip_counts
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join("/"),
        r.options.clip_seconds,
        r.options.model,
        r.options.crop.0,
        r.options.crop.1,
        r.machine,
        r.task_overhead_secs,
        r.secs_per_frame,
        r.options.repetitions,
    );
    s += "\nmeasured here (processes start warm):\n";
    s += &table(r, |c| [&c.single, &c.fan_out, &c.unfused]);
    s += &format!(
        "\nfleet projection (+{:.1} s cold start per GPU task):\n",
        r.options.cold_start_secs
    );
    s += &table(r, |c| [&c.fleet_single, &c.fleet_fan_out, &c.fleet_unfused]);
    s += "\nf/s: fan-out over single-container; f/u: fused over unfused fan-out (below 1: the first wins).\n\
          Fan-out wall times are projected for one worker per clip; bucket transfers are not counted.\n\
          GPU-task seconds are priced at the t4 rate, router seconds at the cpu rate.\n";
    s
}

fn table(r: &PlacementReport, pick: impl Fn(&PlacementCase) -> [&PricedSide; 3]) -> String {
    let mut s = format!(
        "{:>5} {:>6} | {:>9} {:>9} {:>9} | {:>10} {:>10} {:>10} | {:>8} {:>8} {:>8} {:>8}  {}\n",
        "clips",
        "frames",
        "single s",
        "fan-out s",
        "unfused s",
        "single $",
        "fan-out $",
        "unfused $",
        "time f/s",
        "cost f/s",
        "time f/u",
        "cost f/u",
        "rule"
    );
    for c in &r.cases {
        let [single, fan, unfused] = pick(c);
        s += &format!(
            "{:>5} {:>6} | {:>9.2} {:>9.2} {:>9.2} | {:>10.6} {:>10.6} {:>10.6} | {:>8.2} {:>8.2} {:>8.2} {:>8.2}  {}\n",
            c.clips,
            c.frames,
            single.side.wall,
            fan.side.wall,
            unfused.side.wall,
            single.usd,
            fan.usd,
            unfused.usd,
            fan.side.wall / single.side.wall,
            fan.usd / single.usd.max(1e-12),
            fan.side.wall / unfused.side.wall,
            fan.usd / unfused.usd.max(1e-12),
            c.rule
        );
    }
    s
}
