//! Shared test helpers.

pub mod moto;
