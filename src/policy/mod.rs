//! Where reelay may write, and what it may show: one rule for every writer.
//!
//! - [`fs`]: in a local bucket, every write stays inside the bucket folder and
//!   never goes through a symlink (store data, sidecars, journal, temp files).
//! - [`outputs`]: which keys a job or a rule may produce (configured output
//!   prefixes, never an upload, a manifest, a reserved prefix or another
//!   job's declared output).
//! - [`declarations`]: a job's output at planning, declared once per key.
//! - [`text`]: text from metadata or manifests made safe for a terminal.

pub mod bounds;
pub mod declarations;
pub mod fs;
pub mod outputs;
pub mod text;
