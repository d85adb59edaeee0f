//! Model-only upscaler benchmark until `reelay bench` is wired:
//!
//!     cargo run --release --example bench_inference -- MODEL WxH BATCH [cpu|cuda|auto] [fp32|fp16]
//!
//! Prints a table row and the JSON report.

use reelay::bench::inference::{InferenceBenchConfig, InferenceBenchReport, run};
use reelay::models::Manifest;

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("realesr-general-x4v3", |s| s.as_str());
    let (w, h) = args
        .get(1)
        .and_then(|s| s.split_once('x'))
        .map(|(w, h)| (w.parse().unwrap(), h.parse().unwrap()))
        .unwrap_or((160, 90));
    let mut cfg = InferenceBenchConfig::new(model, w, h);
    cfg.batch_size = args.get(2).map_or(1, |s| s.parse().unwrap());
    if let Some(d) = args.get(3) {
        cfg.device = d.parse().map_err(anyhow::Error::msg)?;
    }
    if let Some(p) = args.get(4) {
        cfg.precision = p.parse().map_err(anyhow::Error::msg)?;
    }
    let report = run(&Manifest::load_default()?, &cfg)?;
    println!("{}", InferenceBenchReport::table_header());
    println!("{}", report.table_row());
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
