//! Placeholder: replaced by the media branch.
pub mod profile;
pub use profile::EncodeProfile;
