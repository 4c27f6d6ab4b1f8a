//! # Tellijn tables: the Parquet history as both sides see it
//!
//! What the processors write and the queries read, in a crate of its own so the query side
//! need not depend on the processors (only on Arrow and chrono).
//!
//! # Layout
//! - [`schema`]: each table's directory name, SQL name and Arrow schema.
//! - [`retention`]: the first day a table's retention still keeps ([`retention::cutoff`]).
//! - [`write`]: a whole small table file written crash-safely ([`write::write_parquet`]).

pub mod retention;
pub mod schema;
pub mod write;
