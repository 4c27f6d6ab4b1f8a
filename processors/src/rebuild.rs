//! Rebuilding a finished day's per-minute occupancy from the stored counts, by message time.
//!
//! Live rows follow arrival order and the server clock; once a (UTC) day has ended, its rows are
//! recomputed from the day's `counts` and `zone_counts` ordered by message time (line `end`,
//! zone `at`), starting from the engine state saved at the day's start and applying the nightly
//! resets and the head counts that set a room (`headcounts.reset`) at their instants. Late messages are thereby counted in the minutes they speak of.
//! The result replaces the day's `occupancy` partition as one file, swapped in by renaming
//! directories; a crash mid-swap is repaired at the next start ([`repair`]). Raw counts are
//! never touched here.

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BooleanArray, Int32Array, StringArray, TimestampMicrosecondArray,
};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use tellijn_config::Campus;

use crate::minutes::{MinuteRow, Minutes};
use crate::occupancy::{Engine, State};
use crate::{schedule, schema};

/// Errors rebuilding a day.
#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("cannot rebuild occupancy of {day}: {path}: {message}")]
    Io {
        day: NaiveDate,
        path: PathBuf,
        message: String,
    },
}

enum Event {
    Line {
        sensor: String,
        line: String,
        people_in: u32,
        people_out: u32,
    },
    Zone {
        sensor: String,
        zone: String,
        people: u32,
    },
    Reset {
        place: String,
    },
    /// A head count set the room to this number (`headcounts` rows with `reset` true).
    Set {
        place: String,
        people: u32,
    },
}

fn day_start(day: NaiveDate) -> DateTime<Utc> {
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

/// Where the engine state at the start of a day is kept.
pub fn snapshot_path(data_dir: &Path, day: NaiveDate) -> PathBuf {
    data_dir
        .join("state")
        .join("day-start")
        .join(format!("{day}.json"))
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// The highest flush number among the raw files a rebuild of `day` reads (to tell whether new,
/// late files arrived since).
pub fn inputs_version(data_dir: &Path, day: NaiveDate) -> u64 {
    let prev = day - TimeDelta::days(1);
    [
        (schema::COUNTS, prev),
        (schema::COUNTS, day),
        (schema::ZONE_COUNTS, day),
    ]
    .iter()
    .flat_map(|(t, d)| files(&data_dir.join(t).join(format!("date={d}"))))
    .filter_map(|p| crate::recover::flush_number(&p.file_name()?.to_string_lossy()))
    .max()
    .unwrap_or(0)
}

fn read_events(data_dir: &Path, day: NaiveDate) -> Result<Vec<(i64, Event)>, RebuildError> {
    let (lo, hi) = (
        day_start(day).timestamp_micros(),
        day_start(day + TimeDelta::days(1)).timestamp_micros(),
    );
    let mut out = Vec::new();
    let err = |path: &Path, e: &dyn std::fmt::Display| RebuildError::Io {
        day,
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    for (table, d) in [
        (schema::COUNTS, day - TimeDelta::days(1)),
        (schema::COUNTS, day),
        (schema::ZONE_COUNTS, day),
    ] {
        for path in files(&data_dir.join(table).join(format!("date={d}"))) {
            let file = File::open(&path).map_err(|e| err(&path, &e))?;
            let reader = ParquetRecordBatchReaderBuilder::try_new(file)
                .map_err(|e| err(&path, &e))?
                .build()
                .map_err(|e| err(&path, &e))?;
            for batch in reader {
                let b = batch.map_err(|e| err(&path, &e))?;
                let get = |i: usize| b.column(i).clone();
                let (sensor, name) = (get(0), get(1));
                let sensor = sensor
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| err(&path, &"sensor column"))?;
                let name = name
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| err(&path, &"name column"))?;
                if table == schema::COUNTS {
                    let end = get(4);
                    let end = end
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .ok_or_else(|| err(&path, &"end column"))?;
                    let (pin, pout) = (get(5), get(6));
                    let pin = pin
                        .as_any()
                        .downcast_ref::<Int32Array>()
                        .ok_or_else(|| err(&path, &"people_in column"))?;
                    let pout = pout
                        .as_any()
                        .downcast_ref::<Int32Array>()
                        .ok_or_else(|| err(&path, &"people_out column"))?;
                    for r in 0..b.num_rows() {
                        let t = end.value(r);
                        if t >= lo && t < hi {
                            out.push((
                                t,
                                Event::Line {
                                    sensor: sensor.value(r).to_owned(),
                                    line: name.value(r).to_owned(),
                                    people_in: pin.value(r).max(0) as u32,
                                    people_out: pout.value(r).max(0) as u32,
                                },
                            ));
                        }
                    }
                } else {
                    let at = get(3);
                    let at = at
                        .as_any()
                        .downcast_ref::<TimestampMicrosecondArray>()
                        .ok_or_else(|| err(&path, &"at column"))?;
                    let people = get(4);
                    let people = people
                        .as_any()
                        .downcast_ref::<Int32Array>()
                        .ok_or_else(|| err(&path, &"people column"))?;
                    for r in 0..b.num_rows() {
                        let t = at.value(r);
                        if t >= lo && t < hi {
                            out.push((
                                t,
                                Event::Zone {
                                    sensor: sensor.value(r).to_owned(),
                                    zone: name.value(r).to_owned(),
                                    people: people.value(r).max(0) as u32,
                                },
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The head counts of `day` that set their room's occupancy (`reset` true), by their time.
/// Files without the `reset` column (written before it existed) hold none.
fn read_sets(data_dir: &Path, day: NaiveDate) -> Result<Vec<(i64, Event)>, RebuildError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| RebuildError::Io {
        day,
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let mut out = Vec::new();
    let dir = data_dir
        .join(schema::HEADCOUNTS)
        .join(format!("date={day}"));
    for path in files(&dir) {
        let file = File::open(&path).map_err(|e| err(&path, &e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| err(&path, &e))?
            .build()
            .map_err(|e| err(&path, &e))?;
        for batch in reader {
            let b = batch.map_err(|e| err(&path, &e))?;
            let Some(reset) = b.column_by_name("reset") else {
                continue;
            };
            let reset: &BooleanArray = reset
                .as_boolean_opt()
                .ok_or_else(|| err(&path, &"reset column"))?;
            let col = |name: &'static str| {
                b.column_by_name(name)
                    .ok_or_else(|| err(&path, &format!("no {name} column")))
            };
            let room = col("room")?;
            let room = room
                .as_string_opt::<i32>()
                .ok_or_else(|| err(&path, &"room column"))?;
            let at = col("at")?;
            let at = at
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .ok_or_else(|| err(&path, &"at column"))?;
            let people = col("people")?;
            let people = people
                .as_any()
                .downcast_ref::<Int32Array>()
                .ok_or_else(|| err(&path, &"people column"))?;
            for r in 0..b.num_rows() {
                if reset.is_valid(r) && reset.value(r) {
                    out.push((
                        at.value(r),
                        Event::Set {
                            place: room.value(r).to_owned(),
                            people: people.value(r).max(0) as u32,
                        },
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// Recomputes the day's rows from its counts, starting from `start`. Returns the rows and the
/// engine state the day ends with (the next day's start, should its snapshot be missing).
pub fn rebuild_day(
    data_dir: &Path,
    campus: &Campus,
    tz: Tz,
    day: NaiveDate,
    start: State,
) -> Result<(Vec<MinuteRow>, State), RebuildError> {
    let t0 = day_start(day);
    let t1 = day_start(day + TimeDelta::days(1));
    let mut events = read_events(data_dir, day)?;
    events.extend(read_sets(data_dir, day)?);
    // The nightly resets that fall inside the day, in local time.
    let resets = schedule::reset_times(campus);
    for (place, (h, m)) in resets {
        let mut t = schedule::next_local(t0 - TimeDelta::microseconds(1), tz, h, m);
        while t < t1 {
            events.push((
                t.timestamp_micros(),
                Event::Reset {
                    place: place.clone(),
                },
            ));
            t = schedule::next_local(t, tz, h, m);
        }
    }
    // Resets first at equal times, head counts last (what the person saw includes the
    // crossings of that instant); otherwise message time order (stable for equal times).
    events.sort_by_key(|(t, e)| {
        let rank = match e {
            Event::Reset { .. } => 0,
            Event::Set { .. } => 2,
            _ => 1,
        };
        (*t, rank)
    });
    let mut engine = Engine::new(campus);
    engine.state = start;
    let t0_us = t0.timestamp_micros();
    let mut minutes = Minutes::new(
        t0_us,
        campus.rooms.iter().map(|r| {
            (
                r.id.clone(),
                r.building.clone(),
                r.capacity,
                engine.room(&r.id, t0_us),
            )
        }),
    );
    let mut rows = Vec::new();
    for (t, e) in events {
        rows.extend(minutes.roll(t));
        let touched: Vec<String> = match e {
            Event::Line {
                sensor,
                line,
                people_in,
                people_out,
            } => {
                if let Some((into, from)) = engine.line_ends(&sensor, &line) {
                    let (into, from) = (into.to_owned(), from.map(str::to_owned));
                    minutes.crossed(&into, people_in, people_out);
                    if let Some(f) = &from {
                        minutes.crossed(f, people_out, people_in);
                    }
                }
                engine
                    .line(&sensor, &line, people_in, people_out)
                    .into_iter()
                    .map(|c| c.place)
                    .collect()
            }
            Event::Zone {
                sensor,
                zone,
                people,
            } => engine.zone(&sensor, &zone, t, people).into_iter().collect(),
            Event::Reset { place } => {
                engine.reset(&place);
                vec![place]
            }
            Event::Set { place, people } => {
                // As live: line-counted rooms only.
                if engine.is_room(&place) && !engine.has_zones(&place) {
                    engine.set(&place, u64::from(people));
                    vec![place]
                } else {
                    Vec::new()
                }
            }
        };
        for place in touched {
            if engine.is_room(&place) {
                minutes.set(&place, engine.room(&place, t), t);
            }
        }
    }
    rows.extend(minutes.roll(t1.timestamp_micros()));
    rows.retain(|r| r.minute >= t0_us && r.minute < t1.timestamp_micros());
    Ok((rows, engine.state))
}

/// Puts a partition built aside (under `{data}/.rebuild/`) in place of `{table}/date={day}`: the
/// old partition is renamed away, the new one renamed in, the old one deleted. Each rename is
/// atomic; [`repair`] finishes or undoes a swap a crash interrupted.
pub fn swap_in(data_dir: &Path, table: &str, day: NaiveDate, built: &Path) -> std::io::Result<()> {
    let target = data_dir.join(table).join(format!("date={day}"));
    let old = data_dir.join(".rebuild").join(format!("old-{table}@{day}"));
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    if target.exists() {
        std::fs::rename(&target, &old)?;
        tellijn_durable::sync_dir(&data_dir.join(".rebuild"))?;
    }
    tellijn_durable::crash::point("swap.between-renames");
    tellijn_durable::create_dir_all(&data_dir.join(table))?;
    std::fs::rename(built, &target)?;
    // Both renames durable before the old partition goes: a crash then finds the new one.
    tellijn_durable::sync_dir(&data_dir.join(table))?;
    if let Some(from) = built.parent() {
        tellijn_durable::sync_dir(from)?;
    }
    tellijn_durable::crash::point("swap.before-delete-old");
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// At start: finishes or undoes a swap a crash interrupted.
pub fn repair(data_dir: &Path) -> std::io::Result<()> {
    let dir = data_dir.join(".rebuild");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some((table, day)) = name.strip_prefix("old-").and_then(|r| r.split_once('@')) {
            let target = data_dir.join(table).join(format!("date={day}"));
            if target.exists() {
                // The new partition is in place: the old one only waits to be deleted.
                std::fs::remove_dir_all(e.path())?;
            } else {
                // Crashed between the two renames: put the old partition back.
                std::fs::rename(e.path(), &target)?;
                if let Some(parent) = target.parent() {
                    tellijn_durable::sync_dir(parent)?;
                }
            }
        } else {
            // A rebuild that never got swapped in.
            std::fs::remove_dir_all(e.path())?;
        }
    }
    Ok(())
}

/// Rebuilds `day` and swaps the result in; `flush` numbers the new file. Returns the row count
/// and the state the day ends with.
pub fn rebuild_and_swap(
    data_dir: &Path,
    campus: &Campus,
    tz: Tz,
    day: NaiveDate,
    start: State,
    flush: u64,
) -> Result<(usize, State), RebuildError> {
    let (rows, end) = rebuild_day(data_dir, campus, tz, day, start)?;
    let n = rows.len();
    let base = data_dir.join(".rebuild").join(format!("new-{day}"));
    let io = |e: &dyn std::fmt::Display| RebuildError::Io {
        day,
        path: base.clone(),
        message: e.to_string(),
    };
    if base.exists() {
        std::fs::remove_dir_all(&base).map_err(|e| io(&e))?;
    }
    let buffer = crate::parquet_sink::Buffer {
        occupancy: rows,
        ..Default::default()
    };
    buffer.flush(&base, flush).map_err(|e| io(&e))?;
    tellijn_durable::crash::point("rebuild.before-swap");
    let built = base.join(schema::OCCUPANCY).join(format!("date={day}"));
    if built.exists() {
        swap_in(data_dir, schema::OCCUPANCY, day, &built).map_err(|e| io(&e))?;
    }
    std::fs::remove_dir_all(&base).map_err(|e| io(&e))?;
    Ok((n, end))
}

/// Compacts a finished day's partition of `counts` or `zone_counts` into one file (rows sorted
/// by sensor and seq), swapped in like a rebuild. Returns the row count, or `None` when the
/// partition already is one file (or absent).
pub fn compact(
    data_dir: &Path,
    table: &'static str,
    day: NaiveDate,
    flush: u64,
) -> Result<Option<usize>, RebuildError> {
    let dir = data_dir.join(table).join(format!("date={day}"));
    let inputs = files(&dir);
    if inputs.len() <= 1 {
        return Ok(None);
    }
    let err = |path: &Path, e: &dyn std::fmt::Display| RebuildError::Io {
        day,
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let schema = if table == schema::COUNTS {
        schema::counts()
    } else {
        schema::zone_counts()
    };
    let mut batches = Vec::new();
    for path in &inputs {
        let file = File::open(path).map_err(|e| err(path, &e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| err(path, &e))?
            .build()
            .map_err(|e| err(path, &e))?;
        for b in reader {
            batches.push(b.map_err(|e| err(path, &e))?);
        }
    }
    let all = arrow::compute::concat_batches(&schema, &batches).map_err(|e| err(&dir, &e))?;
    let keys = [
        arrow::compute::SortColumn {
            values: all.column(0).clone(),
            options: None,
        },
        arrow::compute::SortColumn {
            values: all.column(2).clone(),
            options: None,
        },
    ];
    let order = arrow::compute::lexsort_to_indices(&keys, None).map_err(|e| err(&dir, &e))?;
    let sorted = arrow::compute::take_record_batch(&all, &order).map_err(|e| err(&dir, &e))?;
    let rows = sorted.num_rows();
    let base = data_dir.join(".rebuild").join(format!("new-{table}@{day}"));
    if base.exists() {
        std::fs::remove_dir_all(&base).map_err(|e| err(&base, &e))?;
    }
    crate::parquet_sink::write_file(&base, table, day, flush, schema, sorted)
        .map_err(|e| err(&base, &e))?;
    tellijn_durable::crash::point("compact.before-swap");
    swap_in(
        data_dir,
        table,
        day,
        &base.join(table).join(format!("date={day}")),
    )
    .map_err(|e| err(&dir, &e))?;
    std::fs::remove_dir_all(&base).map_err(|e| err(&base, &e))?;
    Ok(Some(rows))
}
