//! Rules, job manifests, tasks and the planner.

pub mod manifest;
pub mod message;
pub mod placement;
pub mod planner;
pub mod source_bounds;
pub mod task;
