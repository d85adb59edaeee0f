//! Shared test helpers.

pub mod aws;
pub mod fault_proxy;
pub mod moto;
