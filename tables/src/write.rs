//! Writing a whole table file: for the small tables written outside the processors' flush
//! (bookings, head counts). The file is encoded in memory, then written crash-safely
//! (temporary file, fsync, rename, fsync of the directory): readers see it whole or not at all.

use std::path::Path;

use arrow::array::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// Why a table file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("encoding {path} as Parquet: {source}")]
    Parquet {
        path: String,
        source: parquet::errors::ParquetError,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Writes `batch` as the Parquet file `path` (zstd), replacing any file of that name.
pub fn write_parquet(path: &Path, batch: &RecordBatch) -> Result<(), WriteError> {
    let pq = |source| WriteError::Parquet {
        path: path.display().to_string(),
        source,
    };
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .build();
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(props)).map_err(pq)?;
    writer.write(batch).map_err(pq)?;
    writer.close().map_err(pq)?;
    tellijn_durable::write_atomic(path, &bytes)?;
    Ok(())
}
