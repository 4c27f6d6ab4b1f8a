//! Buffers accepted messages and writes them as Parquet, hive-partitioned by UTC date:
//! `{data}/counts/date=YYYY-MM-DD/part-….parquet` and likewise `zone_counts`.
//!
//! Files are named `f{flush:012}-{random}.parquet` by flush number, so recovery can tell
//! which files are newer than the saved processor state. Files appear whole: each is written under a hidden temporary name, fsync'd, renamed, and
//! its directory fsync'd. Rows are sorted by (sensor, seq) so row-group statistics prune well.
//! zstd compression.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::SchemaRef;
use chrono::{DateTime, NaiveDate, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use tellijn_wire::{LineCount, ZoneCount};

use crate::minutes::MinuteRow;
use crate::schema;

/// Errors writing history.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(
        "cannot write {path}: {source}; check free disk space and permissions of the data directory"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot encode {path} as Parquet: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("internal error building a record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error(
        "internal error: writing the history panicked ({0}); the files it wrote were removed and its messages stay buffered"
    )]
    Panicked(String),
}

/// The message of a caught panic.
pub fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned())
}

/// Test seam: a flush into one of these data directories panics after its first file.
#[cfg(test)]
pub static PANIC_AFTER_FIRST_FILE: std::sync::Mutex<Vec<PathBuf>> =
    std::sync::Mutex::new(Vec::new());

/// Accepted messages not yet written.
#[derive(Debug, Default, Clone)]
pub struct Buffer {
    pub counts: Vec<(LineCount, DateTime<Utc>)>,
    pub zones: Vec<(ZoneCount, DateTime<Utc>)>,
    pub occupancy: Vec<MinuteRow>,
}

/// What a flush wrote.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Written {
    pub counts: usize,
    pub zones: usize,
    pub minutes: usize,
    pub files: Vec<PathBuf>,
}

impl Buffer {
    pub fn is_empty(&self) -> bool {
        self.counts.is_empty() && self.zones.is_empty() && self.occupancy.is_empty()
    }

    pub fn len(&self) -> usize {
        self.counts.len() + self.zones.len() + self.occupancy.len()
    }

    /// The first and last UTC day the buffered rows are written to (`None` when empty): the
    /// days a flush of them must not share with a housekeeping job.
    pub fn days(&self) -> Option<(NaiveDate, NaiveDate)> {
        let counts = self.counts.iter().map(|(m, _)| m.start.date_naive());
        let zones = self.zones.iter().map(|(m, _)| m.at.date_naive());
        let minutes = self.occupancy.iter().map(|r| {
            DateTime::from_timestamp_micros(r.minute)
                .unwrap_or_default()
                .date_naive()
        });
        counts
            .chain(zones)
            .chain(minutes)
            .fold(None, |acc, d| match acc {
                None => Some((d, d)),
                Some((lo, hi)) => Some((lo.min(d), hi.max(d))),
            })
    }

    /// Puts `newer` after what is buffered (after a failed flush).
    pub fn append(&mut self, mut newer: Buffer) {
        self.counts.append(&mut newer.counts);
        self.zones.append(&mut newer.zones);
        self.occupancy.append(&mut newer.occupancy);
    }

    /// Writes everything buffered as flush number `flush`. The buffer is left as it is: the
    /// caller drops it once everything the flush depends on is durable. On error the files this
    /// call already wrote are removed again (the retry writes the rows once more; keeping them
    /// would store them twice).
    ///
    /// A panic while writing (a bug) is caught and treated like an error: the files written so
    /// far are removed, so a retry never stores a row twice and nothing is acknowledged that was
    /// not stored (issue 17, finding 4).
    pub fn flush(&self, data_dir: &Path, flush: u64) -> Result<Written, SinkError> {
        let mut written = Written::default();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.write_tables(data_dir, flush, &mut written)
        }));
        match result {
            Ok(Ok(())) => Ok(written),
            Ok(Err(e)) => {
                written.remove_files();
                Err(e)
            }
            Err(p) => {
                written.remove_files();
                Err(SinkError::Panicked(panic_message(p.as_ref())))
            }
        }
    }

    fn write_tables(
        &self,
        data_dir: &Path,
        flush: u64,
        written: &mut Written,
    ) -> Result<(), SinkError> {
        let mut by_day: BTreeMap<NaiveDate, Vec<&(LineCount, DateTime<Utc>)>> = BTreeMap::new();
        for row in &self.counts {
            by_day
                .entry(row.0.start.date_naive())
                .or_default()
                .push(row);
        }
        for (day, mut rows) in by_day {
            rows.sort_by(|a, b| (&a.0.sensor, a.0.seq).cmp(&(&b.0.sensor, b.0.seq)));
            let batch = counts_batch(&rows)?;
            written.files.push(write_file(
                data_dir,
                schema::COUNTS,
                day,
                flush,
                schema::counts(),
                batch,
            )?);
            tellijn_durable::crash::point("flush.after-file");
            written.counts += rows.len();
            #[cfg(test)]
            if PANIC_AFTER_FIRST_FILE
                .lock()
                .is_ok_and(|d| d.iter().any(|d| d == data_dir))
            {
                panic!("injected: the flush panics after its first file");
            }
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<&(ZoneCount, DateTime<Utc>)>> = BTreeMap::new();
        for row in &self.zones {
            by_day.entry(row.0.at.date_naive()).or_default().push(row);
        }
        for (day, mut rows) in by_day {
            rows.sort_by(|a, b| (&a.0.sensor, a.0.seq).cmp(&(&b.0.sensor, b.0.seq)));
            let batch = zones_batch(&rows)?;
            written.files.push(write_file(
                data_dir,
                schema::ZONE_COUNTS,
                day,
                flush,
                schema::zone_counts(),
                batch,
            )?);
            tellijn_durable::crash::point("flush.after-file");
            written.zones += rows.len();
        }
        let mut by_day: BTreeMap<NaiveDate, Vec<&MinuteRow>> = BTreeMap::new();
        for row in &self.occupancy {
            let day = DateTime::from_timestamp_micros(row.minute)
                .unwrap_or_default()
                .date_naive();
            by_day.entry(day).or_default().push(row);
        }
        for (day, mut rows) in by_day {
            rows.sort_by(|a, b| (&a.room, a.minute).cmp(&(&b.room, b.minute)));
            let batch = minutes_batch(&rows)?;
            written.files.push(write_file(
                data_dir,
                schema::OCCUPANCY,
                day,
                flush,
                schema::occupancy(),
                batch,
            )?);
            tellijn_durable::crash::point("flush.after-file");
            written.minutes += rows.len();
        }
        Ok(())
    }
}

impl Written {
    /// Removes the files of a flush that did not complete. Best effort: a file that cannot be
    /// removed is logged, and its rows would be in history twice once the retry succeeds.
    pub fn remove_files(&self) {
        for f in &self.files {
            if let Err(e) = std::fs::remove_file(f) {
                tracing::error!("Cannot remove {} of a failed flush: {e}", f.display());
            }
        }
    }
}

fn micros(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

fn counts_batch(rows: &[&(LineCount, DateTime<Utc>)]) -> Result<RecordBatch, SinkError> {
    let n = rows.len();
    let (mut sensor, mut line) = (
        StringBuilder::with_capacity(n, n * 16),
        StringBuilder::with_capacity(n, n * 8),
    );
    let mut seq = Int64Builder::with_capacity(n);
    let (mut start, mut end, mut received) = (
        TimestampMicrosecondBuilder::with_capacity(n),
        TimestampMicrosecondBuilder::with_capacity(n),
        TimestampMicrosecondBuilder::with_capacity(n),
    );
    let (mut pin, mut pout) = (
        Int32Builder::with_capacity(n),
        Int32Builder::with_capacity(n),
    );
    for (m, r) in rows.iter().map(|x| (&x.0, x.1)) {
        sensor.append_value(&m.sensor);
        line.append_value(&m.line);
        seq.append_value(m.seq as i64);
        start.append_value(micros(m.start));
        end.append_value(micros(m.end));
        pin.append_value(m.people_in as i32);
        pout.append_value(m.people_out as i32);
        received.append_value(micros(r));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(sensor.finish()),
        Arc::new(line.finish()),
        Arc::new(seq.finish()),
        Arc::new(start.finish()),
        Arc::new(end.finish()),
        Arc::new(pin.finish()),
        Arc::new(pout.finish()),
        Arc::new(received.finish()),
    ];
    Ok(RecordBatch::try_new(schema::counts(), cols)?)
}

fn zones_batch(rows: &[&(ZoneCount, DateTime<Utc>)]) -> Result<RecordBatch, SinkError> {
    let n = rows.len();
    let (mut sensor, mut zone) = (
        StringBuilder::with_capacity(n, n * 16),
        StringBuilder::with_capacity(n, n * 8),
    );
    let mut seq = Int64Builder::with_capacity(n);
    let (mut at, mut received) = (
        TimestampMicrosecondBuilder::with_capacity(n),
        TimestampMicrosecondBuilder::with_capacity(n),
    );
    let mut people = Int32Builder::with_capacity(n);
    for (m, r) in rows.iter().map(|x| (&x.0, x.1)) {
        sensor.append_value(&m.sensor);
        zone.append_value(&m.zone);
        seq.append_value(m.seq as i64);
        at.append_value(micros(m.at));
        people.append_value(m.count as i32);
        received.append_value(micros(r));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(sensor.finish()),
        Arc::new(zone.finish()),
        Arc::new(seq.finish()),
        Arc::new(at.finish()),
        Arc::new(people.finish()),
        Arc::new(received.finish()),
    ];
    Ok(RecordBatch::try_new(schema::zone_counts(), cols)?)
}

fn minutes_batch(rows: &[&MinuteRow]) -> Result<RecordBatch, SinkError> {
    let n = rows.len();
    let mut room = StringBuilder::with_capacity(n, n * 16);
    let mut building = StringBuilder::with_capacity(n, n * 8);
    let mut minute = TimestampMicrosecondBuilder::with_capacity(n);
    let ints = || Int32Builder::with_capacity(n);
    let (mut pin, mut pout, mut min, mut max, mut cap) = (ints(), ints(), ints(), ints(), ints());
    let mut avg = arrow::array::Float64Builder::with_capacity(n);
    let i32_of = |v: u32| v.min(i32::MAX as u32) as i32;
    for r in rows {
        room.append_value(&r.room);
        building.append_value(&r.building);
        minute.append_value(r.minute);
        pin.append_value(i32_of(r.people_in));
        pout.append_value(i32_of(r.people_out));
        min.append_value(i32_of(r.occupancy_min));
        avg.append_value(r.occupancy_avg);
        max.append_value(i32_of(r.occupancy_max));
        cap.append_value(i32_of(r.capacity));
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(room.finish()),
        Arc::new(building.finish()),
        Arc::new(minute.finish()),
        Arc::new(pin.finish()),
        Arc::new(pout.finish()),
        Arc::new(min.finish()),
        Arc::new(avg.finish()),
        Arc::new(max.finish()),
        Arc::new(cap.finish()),
    ];
    Ok(RecordBatch::try_new(schema::occupancy(), cols)?)
}

pub(crate) fn write_file(
    data_dir: &Path,
    table: &str,
    day: NaiveDate,
    flush: u64,
    schema: SchemaRef,
    batch: RecordBatch,
) -> Result<PathBuf, SinkError> {
    let dir = data_dir.join(table).join(format!("date={day}"));
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SinkError::Io { path, source }
    };
    // A new `date=…` directory's name must be durable before its first file is acknowledged.
    tellijn_durable::create_dir_all(&dir).map_err(io(&dir))?;
    let name = format!(
        "f{flush:012}-{}.parquet",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(&name);
    let file = File::create(&tmp).map_err(io(&tmp))?;
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .build();
    let pq = |source| SinkError::Parquet {
        path: tmp.clone(),
        source,
    };
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(pq)?;
    writer.write(&batch).map_err(pq)?;
    let file = writer.into_inner().map_err(pq)?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(io(&path))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io(&dir))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    #[test]
    fn writes_partitioned_files_that_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        let mut b = Buffer::default();
        for (seq, day) in [(2, "2026-11-22"), (1, "2026-11-22"), (3, "2026-11-23")] {
            let start = t(&format!("{day}T10:00:00Z"));
            let m = LineCount {
                sensor: "s".into(),
                line: "main".into(),
                seq,
                start,
                end: start + chrono::TimeDelta::seconds(1),
                people_in: 3,
                people_out: 1,
            };
            b.counts.push((m, start));
        }
        let w = b.flush(dir.path(), 1).unwrap();
        assert_eq!(w.counts, 3);
        assert_eq!(w.files.len(), 2);
        assert_eq!(
            b.len(),
            3,
            "the caller drops the buffer once the state is saved"
        );
        let f = &w.files[0];
        assert!(
            f.parent().unwrap().ends_with("counts/date=2026-11-22"),
            "{f:?}"
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(f).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(|b| b.unwrap()).collect();
        let seqs = batches[0]
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::Int64Array>()
            .unwrap();
        assert_eq!(seqs.values(), &[1, 2], "sorted by seq");
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(f.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }
}
