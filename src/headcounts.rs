//! Head counts: a person counts a room and Tellijn compares their number with its own.
//!
//! A head count is stored in the `headcounts` table (`{data}/headcounts/date=D/h-….parquet`,
//! one file per request or per day of an import, written whole with
//! `tellijn_tables::write::write_parquet`) as `(room, at, people, recorded_by, counted, reset)`, where
//! `counted` is the occupancy Tellijn had for the room at that moment: the live figure for a
//! count of now (within a minute), else the per-minute history's `occupancy_avg` of that
//! minute, rounded. A head count with neither is refused: there is nothing to compare it with.
//!
//! Accuracy ([`accuracy`]) is computed in SQL over the `headcounts` table (so days past
//! retention are left out, as everywhere): per room, and per sensor over the head counts of
//! the rooms its lines and zones count into (a line's `into` and `from`, a zone's `room`) —
//! mean absolute error (mean of |counted − people|), bias (mean of counted − people: positive
//! when Tellijn counts too many) and the number of checks. The same SQL is documented in
//! `docs/sql/accuracy.sql` and drawn by `grafana/dashboards/accuracy.json`.
//!
//! Who: HTTP Basic credentials of a `[[users]]` steward, or of a user with `headcounts = true`
//! (someone a steward authorises). `recorded_by` is that user's name; every stored head count
//! is audited (`headcount`) before it is written, so none is stored without its line.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use arrow::datatypes::Int64Type;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tellijn_config::Campus;
use tellijn_queries::History;
use tellijn_wire::headcount::Headcount;

/// A head count with Tellijn's figure beside it, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub room: String,
    pub at: DateTime<Utc>,
    pub people: u32,
    pub recorded_by: String,
    pub counted: i32,
    /// The head count also set the room's occupancy to `people`.
    pub reset: bool,
}

/// Why head counts cannot be stored.
#[derive(Debug, thiserror::Error)]
pub enum HeadcountError {
    /// The input is wrong (a 400): the message says what to fix.
    #[error("{0}")]
    Input(String),
    /// The audit line could not be written, so nothing was stored.
    #[error("the audit log cannot be written ({0}), so nothing was stored")]
    Audit(String),
    /// Reading the history or writing the table failed.
    #[error("{0}")]
    Internal(String),
}

/// The minute `t` lies in (Unix seconds of its start).
fn minute_of(t: DateTime<Utc>) -> i64 {
    t.timestamp() - t.timestamp().rem_euclid(60)
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The rounded `occupancy_avg` of each (room, minute start) asked for that the per-minute
/// history holds. Room ids must be valid ids (they are formatted into the SQL).
pub async fn history_counts(
    history: &History,
    keys: &BTreeSet<(String, i64)>,
) -> Result<HashMap<(String, i64), i32>, HeadcountError> {
    let mut out = HashMap::new();
    let keys: Vec<&(String, i64)> = keys.iter().collect();
    for chunk in keys.chunks(200) {
        let mut rooms = BTreeSet::new();
        let mut dates = BTreeSet::new();
        let mut minutes = BTreeSet::new();
        for (room, m) in chunk {
            if !tellijn_wire::is_valid_id(room) {
                return Err(HeadcountError::Input(format!("{room:?} is not a room id")));
            }
            let t = DateTime::from_timestamp(*m, 0).unwrap_or_default();
            rooms.insert(format!("'{room}'"));
            dates.insert(format!("'{}'", t.format("%Y-%m-%d")));
            minutes.insert(format!("TIMESTAMP '{}'", rfc3339(t)));
        }
        let join = |s: BTreeSet<String>| s.into_iter().collect::<Vec<_>>().join(", ");
        let sql = format!(
            "SELECT room, CAST(extract(epoch FROM minute) AS BIGINT) AS m, \
             CAST(round(avg(occupancy_avg)) AS BIGINT) AS o FROM occupancy \
             WHERE date IN ({}) AND room IN ({}) AND minute IN ({}) GROUP BY room, minute",
            join(dates),
            join(rooms),
            join(minutes)
        );
        let batches = history
            .batches(&sql)
            .await
            .map_err(|e| HeadcountError::Internal(format!("reading the history failed: {e}")))?;
        for b in &batches {
            let room = b.column(0);
            let m = b.column(1).as_primitive::<Int64Type>();
            let o = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                if m.is_null(i) || o.is_null(i) {
                    continue;
                }
                let Some(r) = text(room.as_ref(), i) else {
                    continue;
                };
                let n = i32::try_from(o.value(i).max(0)).unwrap_or(i32::MAX);
                out.insert((r, m.value(i)), n);
            }
        }
    }
    Ok(out)
}

/// The text at row `i` of a `Utf8` or `Utf8View` column.
fn text(col: &dyn Array, i: usize) -> Option<String> {
    if col.is_null(i) {
        return None;
    }
    if let Some(a) = col.as_string_opt::<i32>() {
        return Some(a.value(i).to_owned());
    }
    col.as_string_view_opt().map(|a| a.value(i).to_owned())
}

/// Tellijn's figure for one head count: `live` when the count is of now (within a minute of
/// `now`), else the history's minute. `None`: nothing to compare with.
pub async fn counted_at(
    history: &History,
    live: Option<u64>,
    room: &str,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<i32>, HeadcountError> {
    if let Some(n) = live
        && (now - at).num_seconds().abs() <= 60
    {
        return Ok(Some(i32::try_from(n).unwrap_or(i32::MAX)));
    }
    let key = (room.to_owned(), minute_of(at));
    let found = history_counts(history, &BTreeSet::from([key.clone()])).await?;
    Ok(found.get(&key).copied())
}

/// Checks an import's rows (with their line numbers, from
/// [`tellijn_wire::headcount::parse_csv_lines`]) against the campus and the history: every
/// room must be configured, every minute in the history. Errors name the lines.
pub async fn check_import(
    campus: &Campus,
    history: &History,
    lines: &[(usize, Headcount)],
    recorded_by: &str,
) -> Result<Vec<Checked>, HeadcountError> {
    let rows: Vec<&Headcount> = lines.iter().map(|(_, h)| h).collect();
    let line = |i: usize| lines[i].0;
    for (i, r) in rows.iter().enumerate() {
        if campus.room(&r.room).is_none() {
            return Err(HeadcountError::Input(format!(
                "line {}, column room: no room {:?} in the campus configuration",
                line(i),
                r.room
            )));
        }
    }
    let keys: BTreeSet<(String, i64)> = rows
        .iter()
        .map(|r| (r.room.clone(), minute_of(r.at)))
        .collect();
    let found = history_counts(history, &keys).await?;
    let mut out = Vec::with_capacity(rows.len());
    let mut missing = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        match found.get(&(r.room.clone(), minute_of(r.at))) {
            Some(&counted) => out.push(Checked {
                room: r.room.clone(),
                at: r.at,
                people: r.people,
                recorded_by: recorded_by.to_owned(),
                counted,
                reset: false,
            }),
            None => missing.push(line(i)),
        }
    }
    if !missing.is_empty() {
        let shown: Vec<String> = missing.iter().take(5).map(|l| l.to_string()).collect();
        return Err(HeadcountError::Input(format!(
            "line{} {}{}, column at: Tellijn has no occupancy for that room and minute, so there is nothing to compare with; remove {} or fix the time (nothing was imported)",
            if missing.len() > 1 { "s" } else { "" },
            shown.join(", "),
            if missing.len() > 5 {
                format!(" and {} more", missing.len() - 5)
            } else {
                String::new()
            },
            if missing.len() > 1 {
                "those lines"
            } else {
                "the line"
            },
        )));
    }
    Ok(out)
}

/// Writes head counts into the `headcounts` table: one file per UTC day, named after the
/// first row's time and a random suffix, each written whole. Returns the files.
pub fn write(data_dir: &Path, rows: &[Checked]) -> Result<Vec<PathBuf>, HeadcountError> {
    let mut by_day: BTreeMap<NaiveDate, Vec<&Checked>> = BTreeMap::new();
    for r in rows {
        by_day.entry(r.at.date_naive()).or_default().push(r);
    }
    let mut files = Vec::new();
    for (day, rows) in by_day {
        let batch = RecordBatch::try_new(
            tellijn_tables::schema::headcounts(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.room))),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|r| r.at.timestamp_micros()),
                )),
                Arc::new(Int32Array::from_iter_values(
                    rows.iter()
                        .map(|r| i32::try_from(r.people).unwrap_or(i32::MAX)),
                )),
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| &r.recorded_by),
                )),
                Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.counted))),
                Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.reset)))),
            ],
        )
        .map_err(|e| HeadcountError::Internal(format!("building the head-count rows: {e}")))?;
        let first = rows.first().map_or(0, |r| r.at.timestamp_micros());
        let path = data_dir
            .join(tellijn_tables::schema::HEADCOUNTS)
            .join(format!("date={}", day.format("%Y-%m-%d")))
            .join(format!("h-{first}-{:016x}.parquet", rand::random::<u64>()));
        if let Err(e) = tellijn_tables::write::write_parquet(&path, &batch) {
            // Whole files only: a day written before this one stays, the caller is told.
            return Err(HeadcountError::Internal(format!(
                "writing {} failed: {e}{}",
                path.display(),
                if files.is_empty() {
                    String::new()
                } else {
                    format!(" (already written: {})", display(&files))
                }
            )));
        }
        files.push(path);
    }
    Ok(files)
}

fn display(files: &[PathBuf]) -> String {
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Accuracy figures of one room or sensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Figures {
    pub id: String,
    /// How many head counts they rest on.
    pub checks: u64,
    /// Mean of |counted − people|; null without checks.
    pub mean_abs_error: Option<f64>,
    /// Mean of counted − people (positive: Tellijn counts too many); null without checks.
    pub bias: Option<f64>,
}

/// Accuracy per room and per sensor, every configured room and sensor listed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accuracy {
    pub rooms: Vec<Figures>,
    pub sensors: Vec<Figures>,
}

impl Accuracy {
    /// Head counts in all.
    pub fn checks(&self) -> u64 {
        self.rooms.iter().map(|r| r.checks).sum()
    }
}

/// Sums per room: (checks, Σ|counted − people|, Σ(counted − people)).
type Sums = (u64, i64, i64);

fn figures(id: &str, (n, abs, diff): Sums) -> Figures {
    let mean = |s: i64| (n > 0).then(|| s as f64 / n as f64);
    Figures {
        id: id.to_owned(),
        checks: n,
        mean_abs_error: mean(abs),
        bias: mean(diff),
    }
}

/// The rooms a sensor counts into: its lines' `into` and `from`, its zones' `room`.
pub fn sensor_rooms(s: &tellijn_config::campus::Sensor) -> BTreeSet<&str> {
    s.lines
        .iter()
        .flat_map(|l| std::iter::once(l.into.as_str()).chain(l.from.as_deref()))
        .chain(s.zones.iter().map(|z| z.room.as_str()))
        .collect()
}

/// Accuracy from the `headcounts` table (SQL; days past retention are not seen).
pub async fn accuracy(campus: &Campus, history: &History) -> Result<Accuracy, HeadcountError> {
    let sql = "SELECT room, CAST(count(*) AS BIGINT) AS n, \
               CAST(sum(abs(counted - people)) AS BIGINT) AS abs_sum, \
               CAST(sum(counted - people) AS BIGINT) AS diff_sum \
               FROM headcounts GROUP BY room";
    let batches = history
        .batches(sql)
        .await
        .map_err(|e| HeadcountError::Internal(format!("reading the head counts failed: {e}")))?;
    let mut sums: HashMap<String, Sums> = HashMap::new();
    for b in &batches {
        let col = |i: usize| b.column(i).as_primitive::<Int64Type>();
        let (n, abs, diff) = (col(1), col(2), col(3));
        for i in 0..b.num_rows() {
            if let Some(room) = text(b.column(0).as_ref(), i) {
                sums.insert(
                    room,
                    (n.value(i).max(0) as u64, abs.value(i), diff.value(i)),
                );
            }
        }
    }
    Ok(accuracy_of(campus, &sums))
}

fn accuracy_of(campus: &Campus, sums: &HashMap<String, Sums>) -> Accuracy {
    let get = |room: &str| sums.get(room).copied().unwrap_or((0, 0, 0));
    let rooms = campus
        .rooms
        .iter()
        .map(|r| figures(&r.id, get(&r.id)))
        .collect();
    let sensors = campus
        .sensors
        .iter()
        .map(|s| {
            let total = sensor_rooms(s)
                .into_iter()
                .map(get)
                .fold((0, 0, 0), |(n, a, d), (n2, a2, d2)| {
                    (n + n2, a + a2, d + d2)
                });
            figures(&s.id, total)
        })
        .collect();
    Accuracy { rooms, sensors }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sensor_is_judged_by_the_rooms_it_counts_into() {
        let h = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let text = tellijn_test_support::CampusToml::new()
            .building("b", "B")
            .room("r1", "b", "One", "study", 10)
            .room("r2", "b", "Two", "study", 10)
            .room("r3", "b", "Three", "study", 10)
            .line_sensor("s1", h, &[("main", "r1", Some("r2"))])
            .zone_sensor("s2", h, &[("seats", "r3")])
            .toml();
        let campus = Campus::parse(&text, "test").unwrap();
        // r1: errors +2 and -4; r2: +1; r3 none.
        let sums = HashMap::from([("r1".to_owned(), (2, 6, -2)), ("r2".to_owned(), (1, 1, 1))]);
        let a = accuracy_of(&campus, &sums);
        assert_eq!(
            a.rooms[0],
            Figures {
                id: "r1".into(),
                checks: 2,
                mean_abs_error: Some(3.0),
                bias: Some(-1.0)
            }
        );
        assert_eq!(
            a.rooms[2],
            Figures {
                id: "r3".into(),
                checks: 0,
                mean_abs_error: None,
                bias: None
            }
        );
        assert_eq!(
            a.sensors[0],
            Figures {
                id: "s1".into(),
                checks: 3,
                mean_abs_error: Some(7.0 / 3.0),
                bias: Some(-1.0 / 3.0)
            }
        );
        assert_eq!(a.sensors[1].checks, 0);
        assert_eq!(a.checks(), 3);
    }
}

/// What an import stored.
#[derive(Debug)]
pub struct Imported {
    pub rows: Vec<Checked>,
    pub files: Vec<PathBuf>,
}

/// Where an import goes: the campus its rows are checked against, the history giving
/// `counted`, the audit log and the data directory.
pub struct Target<'a> {
    pub campus: &'a Campus,
    pub history: &'a History,
    pub audit: &'a tellijn_config::AuditLog,
    pub data_dir: &'a Path,
}

/// Imports a head-count CSV recorded by `recorded_by`: parses and checks every row (nothing is
/// stored when one is wrong), writes one audit line for the import (`headcount_import`, `via`)
/// and waits for it, then stores the rows (one file per UTC day).
pub async fn import(
    target: &Target<'_>,
    csv: &[u8],
    recorded_by: &str,
    via: &'static str,
    now: DateTime<Utc>,
) -> Result<Imported, HeadcountError> {
    let lines = tellijn_wire::headcount::parse_csv_lines(csv, now)
        .map_err(|e| HeadcountError::Input(e.to_string()))?;
    if lines.is_empty() {
        return Err(HeadcountError::Input(
            "the file has a header but no head counts; add lines such as lib-2-study,2026-11-30T10:15:00+01:00,23".into(),
        ));
    }
    let rows = check_import(target.campus, target.history, &lines, recorded_by).await?;
    let rooms: Vec<String> = rows
        .iter()
        .map(|r| r.room.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let from = rows.iter().map(|r| r.at).min().unwrap_or(now);
    let to = rows.iter().map(|r| r.at).max().unwrap_or(now);
    target
        .audit
        .record_confirmed(tellijn_config::AuditEvent::headcount_import(
            recorded_by,
            via,
            rows.len(),
            &rooms,
            rfc3339(from),
            rfc3339(to),
        ))
        .map_err(|e| HeadcountError::Audit(e.to_string()))?;
    let files = write(target.data_dir, &rows)?;
    Ok(Imported { rows, files })
}
