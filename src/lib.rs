//! reelay: an event-driven video pipeline on object storage.

pub mod adapters;
pub mod config;
pub mod events;
pub mod ports;
pub mod tasks;
