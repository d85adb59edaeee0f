//! `reelay demo`: the first thing a new user runs. It makes a local bucket, a
//! sample match (small players cut from public-domain photos, walking and
//! crossing, with sound), drops a
//! highlights job, runs everything to the export with a bar per step, and
//! prints what each step cost and the export's lineage.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::adapters::local_store::LocalStore;
use crate::audit::lineage;
use crate::config::Config;
use crate::detect::players::{ASTRONAUT, CAMERAMAN, Footage, Player};
use crate::media::{Ffmpeg, path_arg};
use crate::pipeline::manifest::JobManifest;
use crate::pipeline::placement;
use crate::ports::store::{Metadata, ObjectStore};
use crate::runtime::local::{LocalOptions, run_local};

use super::bars::Bars;

pub const SOURCE_KEY: &str = "sources/match.mp4";
pub const JOB_KEY: &str = "jobs/highlights.json";
pub const EXPORT_KEY: &str = "exports/highlights.mp4";
/// Seconds of sample footage.
const SOURCE_SECONDS: u32 = 24;
/// Where the astronaut (the player who walks right, 200 px tall) is one
/// second into the first clip (2 s into the source), in source pixels: the
/// spotlight's pick. She crosses behind the cameraman at 4 s.
const PICKED_AT: (f64, f64) = (770.0, 700.0);

/// The sample match's players: copies of the public-domain photos at 12–25 %
/// of the 1080-line frame, walking in straight lines; the first two cross
/// at 4 s, the cameraman in front.
fn demo_players(photos: &Path) -> Vec<Player> {
    vec![
        Player::new(photos, ASTRONAUT, 200, (500.0, 600.0), (100.0, 0.0)),
        Player::new(photos, CAMERAMAN, 200, (1300.0, 610.0), (-100.0, 0.0)),
        Player::new(photos, ASTRONAUT, 150, (300.0, 250.0), (20.0, 5.0)),
        Player::new(photos, CAMERAMAN, 170, (1500.0, 200.0), (-25.0, 10.0)),
        Player::new(photos, ASTRONAUT, 130, (1000.0, 860.0), (15.0, -8.0)),
        Player::new(photos, CAMERAMAN, 260, (1700.0, 640.0), (-12.0, 0.0)),
    ]
}

pub fn demo_job() -> serde_json::Value {
    serde_json::json!({
        "version": 1,
        "source": SOURCE_KEY,
        "output": EXPORT_KEY,
        "clips": [
            // A tracked spotlight on one small player: `detect` runs on the
            // source (NanoDet-g, with tracking), and the overlay follows the
            // picked box's track id through the clip, across the crossing.
            {"start": 1.0, "end": 7.0, "caption": "Kick-off",
             "overlay": {"spotlight": {"track": {"pick": {"t": 1.0, "x": PICKED_AT.0, "y": PICKED_AT.1}},
                                       "dim": 0.4},
                         "text": [{"text": "#10", "x": 60, "y": 60, "size": 64}]}},
            // AI framing: the centre of the pitch, upscaled x4 by Real-ESRGAN
            // and resized to the export's size (a `frame` step on the gpu
            // queue, on whatever device this machine has). A small crop keeps
            // the demo quick on a CPU.
            {"start": 8.0, "end": 13.0, "caption": "The build-up",
             "framing": {"crop": {"x": 880, "y": 495, "w": 160, "h": 90},
                         "model": "realesr-general-x4v3", "size": "1920x1080"}},
            {"start": 16.0, "end": 22.0, "caption": "Goal!"}
        ],
        "transition": {"kind": "fade", "seconds": 0.5},
        "accurate": true,
        // On one machine every step shares one process and one loaded
        // model, so fan-out's parallel steps win; on a GPU fleet the
        // planner's rule would run this job in a single container.
        "placement": "fan-out"
    })
}

/// What one demo run measured, for `reelay bench demo`.
#[cfg_attr(not(feature = "bench"), allow(dead_code))]
pub struct DemoOutcome {
    /// Making the sample source (zero when it was already in the bucket).
    pub source_secs: f64,
    /// From the job's drop to the export's audit tree being readable.
    pub pipeline_secs: f64,
    /// Wall time of each step, from its audit record.
    pub step_secs: Vec<(String, f64)>,
}

pub async fn run(root: PathBuf, config: Option<&Path>) -> anyhow::Result<DemoOutcome> {
    let started = Instant::now();
    let mut source_secs = 0.0;
    let config = Config::load(config)?;
    let store = LocalStore::open(&root)
        .with_context(|| format!("creating the bucket folder {}", root.display()))?;
    let ff = Ffmpeg::locate()?;
    println!("bucket: {}", store.root().display());
    if store.head(SOURCE_KEY).await?.is_none() {
        make_sample_source(&store, &ff).await?;
        source_secs = started.elapsed().as_secs_f64();
    }
    let pipeline_started = Instant::now();
    let job = serde_json::to_vec_pretty(&demo_job())?;
    store
        .put_bytes(
            JOB_KEY,
            &job,
            "application/json",
            &Metadata::new(),
            crate::ports::store::PutCondition::Overwrite,
        )
        .await?;
    println!(
        "dropped {JOB_KEY}: 3 clips with captions and 0.5 s fades; the first spotlights one small player through a crossing (tracked through `detect`), the second is framed by realesr-general-x4v3"
    );
    let manifest = JobManifest::parse(JOB_KEY, &job)?;
    let (framed, frames) = placement::framed_work(&manifest);
    let fleet = placement::choose(&JobManifest {
        placement: None,
        ..manifest.clone()
    });
    println!(
        "placement: {} on this one machine (on a GPU fleet the rule would pick {} for {framed} framed clip(s) of {frames:.0} frames)\n",
        placement::choose(&manifest).as_str(),
        fleet.as_str()
    );
    let bars = Arc::new(Bars::new());
    let summary = run_local(
        LocalOptions {
            root: root.clone(),
            config,
            exit_when_idle: true,
            poll: Duration::from_millis(200),
            progress: bars,
        },
        crate::cli::shutdown_on_signal(),
    )
    .await?;
    println!();
    if !summary.dead_letters.is_empty() {
        anyhow::bail!(
            "{} message(s) failed for good; see {}/_reelay/failures/",
            summary.dead_letters.len(),
            store.root().display()
        );
    }
    let tree = lineage::lineage(&store, EXPORT_KEY)
        .await
        .context("the export was not written; see _reelay/failures/ in the bucket")?;
    let pipeline_secs = pipeline_started.elapsed().as_secs_f64();
    let step_secs = print_steps(&tree);
    println!("\nexport: {}", store.path_for(EXPORT_KEY)?.display());
    println!(
        "\nlineage (reelay audit --root {} {EXPORT_KEY}):",
        root.display()
    );
    print!("{}", lineage::render(&tree));
    println!("\ndemo finished in {:.1}s", started.elapsed().as_secs_f64());
    Ok(DemoOutcome {
        source_secs,
        pipeline_secs,
        step_secs,
    })
}

/// Makes the sample match at [`SOURCE_KEY`], appearing complete or not at
/// all: the watcher must never see half a file.
async fn make_sample_source(store: &LocalStore, ff: &Ffmpeg) -> anyhow::Result<()> {
    println!("making a {SOURCE_SECONDS} s 1080p30 sample match with sound ...");
    let photos = find_photos();
    if photos.is_none() {
        println!(
            "  (public-domain photos not found in .tools/testdata; run `make setup` for real-looking footage — using a test pattern)"
        );
    }
    let dest = store.path_for(SOURCE_KEY)?;
    std::fs::create_dir_all(dest.parent().expect("source key has a folder"))?;
    let tmp = dest.with_extension("partial.mp4");
    let args = sample_source_args(photos.as_ref(), &tmp);
    let ff2 = ff.clone();
    tokio::task::spawn_blocking(move || {
        ff2.run(
            &args,
            Some(SOURCE_SECONDS as f64),
            &mut |_| {},
            &CancellationToken::new(),
        )
    })
    .await??;
    std::fs::rename(&tmp, &dest)?;
    Ok(())
}

/// Prints each step of the export's lineage (kind, device, time, cost) and
/// returns the steps' wall times.
fn print_steps(tree: &lineage::LineageNode) -> Vec<(String, f64)> {
    let mut step_secs = Vec::new();
    println!(
        "{:<12} {:<9} {:<10} {:>9} {:>12}",
        "step", "kind", "device", "time", "cost"
    );
    let mut steps = tree.steps();
    steps.sort_by(|a, b| {
        a.record
            .as_ref()
            .map(|r| r.step.clone())
            .cmp(&b.record.as_ref().map(|r| r.step.clone()))
    });
    for node in steps {
        let r = node.record.as_ref().expect("steps have records");
        step_secs.push((r.kind.to_string(), r.millis as f64 / 1000.0));
        println!(
            "{:<12} {:<9} {:<10} {:>8.2}s {:>12}",
            r.step,
            r.kind,
            r.device,
            r.millis as f64 / 1000.0,
            r.cost_usd.map_or("unpriced".into(), |c| format!("${c:.6}"))
        );
    }
    step_secs
}

/// The folder holding `astronaut.png` and `camera.png` from scikit-image's
/// data (public domain), fetched by `make setup` into `.tools/testdata/`.
fn find_photos() -> Option<PathBuf> {
    crate::media::find_tool("testdata/camera.png")?;
    Some(
        crate::media::find_tool("testdata/astronaut.png")?
            .parent()?
            .to_path_buf(),
    )
}

/// FFmpeg arguments for the sample: six small players walking on a pitch
/// (two crossing), a halfway line, a moving ball, and crowd-like noise
/// with a tone.
fn sample_source_args(photos: Option<&PathBuf>, out: &Path) -> Vec<OsString> {
    let secs = SOURCE_SECONDS.to_string();
    let mut args: Vec<OsString> = vec!["-y".into(), "-hide_banner".into()];
    let (video, inputs) = match photos {
        Some(dir) => {
            let footage = Footage {
                width: 1920,
                height: 1080,
                fps: 30,
                seconds: f64::from(SOURCE_SECONDS),
                players: demo_players(dir),
                boards: vec![],
            };
            args.extend(footage.inputs());
            let graph = footage.graph();
            let graph = graph.strip_suffix("[v]").unwrap_or(&graph).to_string();
            (
                format!(
                    "{graph},drawbox=x=958:y=0:w=4:h=1080:color=white@0.7:t=fill,\
                     drawbox=x='960+700*sin(t*0.9)':y='700+200*cos(t*1.3)':w=24:h=24:color=white@0.9:t=fill[v]"
                ),
                footage.players.len(),
            )
        }
        None => {
            args.extend([
                "-f".into(),
                "lavfi".into(),
                "-i".into(),
                format!("testsrc2=size=1920x1080:rate=30:duration={secs}").into(),
            ]);
            ("[0:v]format=yuv420p[v]".to_string(), 1)
        }
    };
    let audio_index = inputs;
    args.extend([
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("anoisesrc=color=pink:amplitude=0.08:duration={secs}").into(),
    ]);
    args.extend([
        "-f".into(),
        "lavfi".into(),
        "-i".into(),
        format!("sine=frequency=330:duration={secs}").into(),
    ]);
    let graph = format!(
        "{video};[{audio_index}:a][{}:a]amix=inputs=2:duration=shortest,aformat=sample_rates=48000:channel_layouts=stereo[aout]",
        audio_index + 1
    );
    args.extend([
        "-filter_complex".into(),
        graph.into(),
        "-map".into(),
        "[v]".into(),
        "-map".into(),
        "[aout]".into(),
        "-t".into(),
        secs.into(),
        "-r".into(),
        "30".into(),
        "-c:v".into(),
        "libx264".into(),
        "-preset".into(),
        "veryfast".into(),
        "-crf".into(),
        "23".into(),
        "-pix_fmt".into(),
        "yuv420p".into(),
        "-g".into(),
        "60".into(),
        "-c:a".into(),
        "aac".into(),
        "-b:a".into(),
        "128k".into(),
        "-movflags".into(),
        "+faststart".into(),
        path_arg(out),
    ]);
    args
}
