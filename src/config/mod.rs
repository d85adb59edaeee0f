//! Configuration: `reelay.toml`, environment overrides, validation.

pub mod env;
