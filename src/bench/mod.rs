//! Benchmarks: the logic behind `reelay bench`.

pub mod inference;
