//! Audit: every object reelay writes says where it came from, on what device,
//! how long it took and what it cost. Failures are objects too.

pub mod cost;
pub mod failure;
pub mod lineage;
pub mod record;

pub use record::AuditRecord;
