//! The `bookings` table: one file per UTC day of the occurrences' starts,
//! `{data}/bookings/date=D/bookings.parquet`, rewritten whole when that day's rows change
//! (crash-safely: readers see the old file or the new one). Days before the feeds' window are
//! never rewritten, so history stays when a feed drops its past.
//!
//! The UID hash is keyed with `{data}/state/bookings-key` (32 random bytes, created at the
//! first start, mode 0600): without it a UID (which may hold an organiser's address) cannot be
//! confirmed by hashing guesses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate, Utc};
use tellijn_bookings::{Occurrence, Status};
use tellijn_tables::schema;

/// A stored row: the occurrence and its no-show decision (`None`: not decided).
pub type Row = (Occurrence, Option<bool>);

/// The installation's key for UID hashes; created on first use.
pub fn key(data_dir: &Path) -> std::io::Result<Vec<u8>> {
    let path = data_dir.join("state").join("bookings-key");
    match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => return Ok(k),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is not 32 bytes: restore it from a backup, or delete it (the UID hashes of new rows will then differ from the stored ones)",
                path.display()
            )));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let k: [u8; 32] = rand::random();
    tellijn_durable::write_atomic(&path, &k)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(k.to_vec())
}

fn day_file(data_dir: &Path, day: NaiveDate) -> PathBuf {
    data_dir
        .join(schema::BOOKINGS)
        .join(format!("date={day}"))
        .join("bookings.parquet")
}

/// Writes `rows` (all of one day) as that day's file; no rows removes it.
pub fn write_day(
    data_dir: &Path,
    day: NaiveDate,
    rows: &[Row],
) -> Result<(), tellijn_tables::write::WriteError> {
    let path = day_file(data_dir, day);
    if rows.is_empty() {
        if path.exists() {
            std::fs::remove_file(&path)?;
            if let Some(dir) = path.parent() {
                tellijn_durable::sync_dir(dir)?;
            }
        }
        return Ok(());
    }
    let us = |t: DateTime<Utc>| t.timestamp_micros();
    let batch = RecordBatch::try_new(
        schema::bookings(),
        vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(o, _)| o.room.as_str()),
            )) as ArrayRef,
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|(o, _)| us(o.start)),
            )),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|(o, _)| us(o.end)),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(o, _)| o.status.as_str()),
            )),
            Arc::new(BooleanArray::from(
                rows.iter().map(|(_, d)| *d).collect::<Vec<_>>(),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(o, _)| o.uid_hash.as_str()),
            )),
        ],
    )
    .map_err(|e| std::io::Error::other(format!("building the bookings rows: {e}")))?;
    tellijn_tables::write::write_parquet(&path, &batch)
}

/// The stored rows whose start is at or after `from` (at start: the state before the feeds
/// answer, and the no-show decisions already made).
pub async fn load(
    history: &tellijn_queries::History,
    from: DateTime<Utc>,
) -> Result<Vec<Row>, String> {
    let sql = format!(
        "SELECT room, start, \"end\", status, no_show, uid_hash FROM bookings WHERE start >= TIMESTAMP '{}'",
        from.format("%Y-%m-%dT%H:%M:%S%.6f")
    );
    let batches = history.batches(&sql).await.map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    for b in batches {
        // Text comes back as `Utf8View` (the session reads it so): cast to plain strings.
        let text = |i: usize| {
            arrow::compute::cast(b.column(i), &arrow::datatypes::DataType::Utf8)
                .ok()
                .and_then(|a| a.as_any().downcast_ref::<StringArray>().cloned())
        };
        let time = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .cloned()
        };
        let (Some(room), Some(start), Some(end), Some(status), Some(uid)) =
            (text(0), time(1), time(2), text(3), text(5))
        else {
            return Err("the bookings table has unexpected column types".into());
        };
        let no_show = b.column(4).as_any().downcast_ref::<BooleanArray>();
        for r in 0..b.num_rows() {
            let (Some(s), Some(e)) = (
                DateTime::from_timestamp_micros(start.value(r)),
                DateTime::from_timestamp_micros(end.value(r)),
            ) else {
                continue;
            };
            let status = match status.value(r) {
                "cancelled" => Status::Cancelled,
                "tentative" => Status::Tentative,
                _ => Status::Confirmed,
            };
            let decided = no_show.and_then(|a| (!a.is_null(r)).then(|| a.value(r)));
            out.push((
                Occurrence {
                    room: room.value(r).to_owned(),
                    start: s,
                    end: e,
                    status,
                    uid_hash: uid.value(r).to_owned(),
                },
                decided,
            ));
        }
    }
    Ok(out)
}

/// Groups rows by the UTC day of their start, each day sorted.
pub fn by_day(rows: impl IntoIterator<Item = Row>) -> BTreeMap<NaiveDate, Vec<Row>> {
    let mut out: BTreeMap<NaiveDate, Vec<Row>> = BTreeMap::new();
    for r in rows {
        out.entry(r.0.start.date_naive()).or_default().push(r);
    }
    for v in out.values_mut() {
        v.sort();
        v.dedup_by(|a, b| a.0 == b.0);
    }
    out
}
