//! reelay: an event-driven video pipeline on object storage.

pub mod bench;
pub mod config;
pub mod events;
pub mod inference;
pub mod models;
pub mod ports;
pub mod tasks;
