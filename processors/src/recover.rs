//! Crash recovery: Parquet files written after the last saved processor state.
//!
//! A flush writes its Parquet files first and the state second. A crash between the two
//! leaves files whose messages the saved dedup and occupancy state do not know; they are
//! found here by flush number and replayed, so they are neither stored twice when the agent
//! resends them nor missing from occupancy.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Int32Array, Int64Array, StringArray, TimestampMicrosecondArray};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::schema;

/// A stored message found in a file newer than the saved state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Line {
        sensor: String,
        line: String,
        seq: u64,
        people_in: u32,
        people_out: u32,
    },
    Zone {
        sensor: String,
        zone: String,
        seq: u64,
        at_us: i64,
        people: u32,
    },
}

/// Errors reading history back.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    #[error(
        "cannot read {path} to recover after a crash: {message}; move the file aside if it is damaged"
    )]
    Read { path: PathBuf, message: String },
}

/// The flush number in a file name `f{n:012}-….parquet`.
pub fn flush_number(name: &str) -> Option<u64> {
    name.strip_prefix('f')?.split('-').next()?.parse().ok()
}

fn files(data_dir: &Path, table: &str) -> Vec<(u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(data_dir.join(table)) else {
        return out;
    };
    for day in days.flatten() {
        let Ok(entries) = std::fs::read_dir(day.path()) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let (Some(n), true) = (flush_number(&name), name.ends_with(".parquet")) {
                out.push((n, e.path()));
            }
        }
    }
    out
}

fn col<'a, T: 'static>(
    b: &'a arrow::array::RecordBatch,
    i: usize,
    path: &Path,
) -> Result<&'a T, RecoverError> {
    b.column(i)
        .as_any()
        .downcast_ref::<T>()
        .ok_or_else(|| RecoverError::Read {
            path: path.to_path_buf(),
            message: format!("column {i} has an unexpected type"),
        })
}

/// Every message in files with a flush number above `after`, and the highest flush number seen.
pub fn newer_than(data_dir: &Path, after: u64) -> Result<(u64, Vec<Stored>), RecoverError> {
    let mut max = after;
    let mut out = Vec::new();
    for table in [schema::COUNTS, schema::ZONE_COUNTS] {
        for (n, path) in files(data_dir, table) {
            max = max.max(n);
            if n <= after {
                continue;
            }
            let err = |e: &dyn std::fmt::Display| RecoverError::Read {
                path: path.clone(),
                message: e.to_string(),
            };
            let file = File::open(&path).map_err(|e| err(&e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| err(&e))?
                .build()
                .map_err(|e| err(&e))?;
            for batch in reader {
                let b = batch.map_err(|e| err(&e))?;
                let sensor = col::<StringArray>(&b, 0, &path)?;
                let name = col::<StringArray>(&b, 1, &path)?;
                let seq = col::<Int64Array>(&b, 2, &path)?;
                for r in 0..b.num_rows() {
                    if table == schema::COUNTS {
                        out.push(Stored::Line {
                            sensor: sensor.value(r).to_owned(),
                            line: name.value(r).to_owned(),
                            seq: seq.value(r) as u64,
                            people_in: col::<Int32Array>(&b, 5, &path)?.value(r) as u32,
                            people_out: col::<Int32Array>(&b, 6, &path)?.value(r) as u32,
                        });
                    } else {
                        out.push(Stored::Zone {
                            sensor: sensor.value(r).to_owned(),
                            zone: name.value(r).to_owned(),
                            seq: seq.value(r) as u64,
                            at_us: col::<TimestampMicrosecondArray>(&b, 3, &path)?.value(r),
                            people: col::<Int32Array>(&b, 4, &path)?.value(r) as u32,
                        });
                    }
                }
            }
        }
    }
    Ok((max, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parquet_sink::Buffer;
    use chrono::{DateTime, Utc};
    use tellijn_wire::LineCount;

    #[test]
    fn finds_only_newer_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let t: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        for (flush, seq) in [(1, 10), (2, 11)] {
            let mut b = Buffer::default();
            let m = LineCount {
                sensor: "s".into(),
                line: "main".into(),
                seq,
                start: t,
                end: t + chrono::TimeDelta::seconds(1),
                people_in: 4,
                people_out: 1,
            };
            b.counts.push((m, t));
            b.flush(dir.path(), flush).unwrap();
        }
        let (max, found) = newer_than(dir.path(), 1).unwrap();
        assert_eq!(max, 2);
        assert_eq!(
            found,
            vec![Stored::Line {
                sensor: "s".into(),
                line: "main".into(),
                seq: 11,
                people_in: 4,
                people_out: 1
            }]
        );
        assert_eq!(newer_than(dir.path(), 2).unwrap().1, vec![]);
        assert_eq!(flush_number("f000000000012-ab.parquet"), Some(12));
        assert_eq!(flush_number("part-1-ab.parquet"), None);
    }
}
