//! The Parquet history's tables: their Arrow schemas, in `tellijn-tables` so the query side
//! shares them without depending on the processors.

pub use tellijn_tables::schema::*;
