//! Benchmarks: each prints its figures as ratios against a reference run in
//! the same process on the same machine, so they mean something anywhere.

pub mod detect;
pub mod frame;
pub mod gpu;
pub mod inference;
pub mod media;
pub mod overlay;
pub mod placement;
pub mod router;
pub mod rss;
pub mod stats;
