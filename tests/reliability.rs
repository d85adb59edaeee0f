//! The reliability suite: tries hard to break ARCHITECTURE.md's five invariants
//! with real parts (moto S3+SQS with real notifications, the real `reelay`
//! binary killed with SIGKILL, real FFmpeg on tiny media made here, a
//! fault-injecting proxy in front of moto) and prints one summary table.
//!
//! Size: `REELAY_RELIABILITY=full` runs the full size (`make reliability`);
//! anything else runs the reduced size (`make test`). `REELAY_RELIABILITY_ONLY`
//! (comma-separated scenario names) runs a subset.
//!
//! Needs `make setup tools` (FFmpeg, moto in `.tools/venv`).

mod common;

#[path = "reliability/bad_input.rs"]
mod bad_input;
#[path = "reliability/crashes.rs"]
mod crashes;
#[path = "reliability/duplicates.rs"]
mod duplicates;
#[path = "reliability/harness.rs"]
mod harness;
#[path = "reliability/load.rs"]
mod load;
#[path = "reliability/long_tasks.rs"]
mod long_tasks;
#[path = "reliability/store_faults.rs"]
mod store_faults;
#[path = "reliability/summary.rs"]
mod summary;

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use futures::FutureExt;
use harness::Size;
use summary::Row;

type Scenario = fn(Size) -> futures::future::BoxFuture<'static, Vec<Row>>;

#[test]
fn reliability_suite() {
    let size = Size::from_env();
    let only: Option<Vec<String>> = std::env::var("REELAY_RELIABILITY_ONLY")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.split(',').map(|x| x.trim().to_string()).collect());
    let scenarios: Vec<(&str, Scenario)> = vec![
        ("duplicates", |s| duplicates::run(s).boxed()),
        ("crashes", |s| crashes::run(s).boxed()),
        ("long_tasks", |s| long_tasks::run(s).boxed()),
        ("bad_input", |s| bad_input::run(s).boxed()),
        ("store_faults", |s| store_faults::run(s).boxed()),
        ("load", |s| load::run(s).boxed()),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut failures = Vec::new();
    for (name, scenario) in scenarios {
        if only.as_ref().is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        eprintln!("== reliability: {name} ({size:?} size)");
        let t = Instant::now();
        match rt.block_on(AssertUnwindSafe(scenario(size)).catch_unwind()) {
            Ok(mut r) => {
                for row in &mut r {
                    row.seconds = t.elapsed().as_secs_f64();
                }
                rows.extend(r);
            }
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "panic".into());
                eprintln!("== reliability: {name} FAILED: {message}");
                failures.push(format!("{name}: {message}"));
                rows.push(Row::failed(name, t.elapsed().as_secs_f64()));
            }
        }
    }
    let table = summary::render(&rows, size, started.elapsed().as_secs_f64());
    println!("{table}");
    if let Ok(path) = std::env::var("REELAY_RELIABILITY_REPORT") {
        let _ = std::fs::write(path, &table);
    }
    assert!(
        failures.is_empty(),
        "scenarios failed:\n{}",
        failures.join("\n")
    );
    for row in &rows {
        assert_eq!(row.lost, 0, "{}: jobs lost", row.scenario);
        assert_eq!(row.duplicates, 0, "{}: duplicate executions", row.scenario);
    }
}
