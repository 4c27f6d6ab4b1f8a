//! `campus.toml`: parsed, defaulted and validated in one pass that reports every error.
//!
//! - [`model`]: the structs, one per table, as serde reads and writes them.
//! - `defaults`: the explicit default of every optional key.
//! - `units`: durations and byte sizes as the file writes them ([`parse_bytes`], [`format_bytes`]).
//! - `load`: [`Campus::load`] and [`Campus::parse`], the errors ([`ConfigError`],
//!   [`ConfigErrors`]) and naming the key at a TOML syntax error.
//! - `validate`: [`Campus::validate`], the one pass that collects every error.

mod defaults;
mod load;
pub mod model;
mod units;
mod validate;

pub use load::{ConfigError, ConfigErrors};
pub use model::*;
pub use units::{format_bytes, parse_bytes};
pub use validate::{anonymous_filter, parse_reset};

#[cfg(test)]
use validate::derived_filter;

#[cfg(test)]
mod tests;
