//! reelay: an event-driven video pipeline on object storage.

pub mod adapters;
pub mod audit;
#[cfg(feature = "bench")]
pub mod bench;
pub mod cli;
pub mod config;
pub mod detect;
pub mod events;
pub mod inference;
pub mod invalid;
pub mod keys;
pub mod media;
pub mod models;
pub mod overlay;
pub mod pipeline;
pub mod policy;
pub mod ports;
pub mod runtime;
#[cfg(test)]
mod structure;
pub mod tasks;
