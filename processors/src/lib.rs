//! # Tellijn processors
//!
//! Turn admitted sensor events into occupancy, retained topics and Parquet history.
//!
//! # Layout
//! Data meets these parts in this order:
//! - [`dedup`]: drops a `(sensor, seq)` seen before, counts gaps.
//! - [`occupancy`]: the pure engine — rooms and buildings from line and zone messages.
//! - [`Processors::run`]: publishes changed room and building occupancy and room state as
//!   retained [`Output`]s, and updates the metrics.
//! - [`parquet_sink`]: buffers accepted messages and writes them every `flush_interval` and on
//!   shutdown, in the tables of [`schema`].
//!
//! - flushes run on a blocking thread beside the event loop, one at a time, so a message that
//!   arrives while files are written and synced is still handled at once.
//! - acks: after each successful flush, every sensor's watermark (the end of its first run of
//!   stored seqs; a gap overdue longer than `gap_horizon` is declared lost, counted and
//!   audited) is published retained on `tellijn/v1/sensors/{sensor}/ack`.
//! - a failed flush (a full disk) acks nothing: its rows go back into the buffer and are
//!   written by the next flush that succeeds; `tellijn_storage_failing{what="history"}` and
//!   `/healthz` say so meanwhile. Past [`MAX_BUFFERED_WHILE_FAILING`] rows no more events are
//!   taken, so publishers wait and the agents keep their counts.
//!
//! State and recovery: the dedup sets, occupancy counts and the flush number are saved to
//! `{data}/state/processors.json` after the Parquet files of each flush (write aside, fsync,
//! rename). At start the state is loaded and [`recover`] replays files with a higher flush
//! number (a crash between files and state). Messages buffered but not flushed at a crash were
//! never acknowledged, so the agents still hold them in their outboxes and resend them.

pub mod dedup;
#[cfg(test)]
mod flush_faults;
pub mod hvac;
pub mod minutes;
pub mod occupancy;
pub mod parquet_sink;
pub mod rebuild;
pub mod recover;
pub mod retention;
pub mod schedule;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tellijn_config::metrics::{
    BuildingLabels, RoomLabels, SensorLabels, StageLabels, TableLabels, outcome, stage, storage,
};
use tellijn_config::{AuditEvent, AuditLog, Campus, Metrics};
use tellijn_wire::count::rfc3339;
use tellijn_wire::{Clock, CountMessage, SensorEvent, StatusMessage, topic};
use tokio::sync::mpsc;

use dedup::{Dedup, Seen};
use occupancy::Engine;
use parquet_sink::Buffer;

/// A retained message for the broker to publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// Errors of the processors.
#[derive(Debug, thiserror::Error)]
pub enum ProcessorError {
    #[error(
        "cannot read the processor state {path}: {source}; check its permissions and the disk, then start again. Do not move it aside while it can be repaired (see the corrupt-state message for what that costs)"
    )]
    State {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the processor state {path} is corrupt ({source}). Safe: restore it from a backup. Also safe, but slow for a long history: move it aside; the server then replays every stored count file to learn which messages it holds (nothing is stored twice, except messages resent for days already deleted by retention) and occupancy follows every stored count until each room's nightly reset"
    )]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "cannot write the processor state {path}: {source}; check free disk space and permissions of the data directory. Nothing is acknowledged until it is written; do not move the state aside (that would forget which messages are stored)"
    )]
    StateWrite {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "internal error: a history write was lost ({0}); the processors stop so that nothing unstored is acknowledged. Restart the server: agents resend what was not acknowledged"
    )]
    FlushLost(String),
    #[error(transparent)]
    Sink(#[from] parquet_sink::SinkError),
    #[error(transparent)]
    Recover(#[from] recover::RecoverError),
}

#[derive(Serialize, Deserialize, Default)]
struct Saved {
    dedup: Dedup,
    occupancy: occupancy::State,
    /// The number of the last flush whose files this state includes.
    #[serde(default)]
    flushes: u64,
}

#[derive(Serialize)]
struct OccupancyPayload<'a> {
    room: &'a str,
    building: &'a str,
    occupancy: u64,
    capacity: u32,
    ts: String,
}

#[derive(Serialize)]
struct BuildingPayload<'a> {
    building: &'a str,
    occupancy: u64,
    capacity: u64,
    ts: String,
}

/// The stream processors.
pub struct Processors {
    campus: Arc<Campus>,
    data_dir: PathBuf,
    metrics: Metrics,
    clock: Clock,
    engine: Engine,
    dedup: Dedup,
    buffer: Buffer,
    published: HashMap<String, Vec<u8>>,
    flushes: u64,
    audit: Arc<AuditLog>,
    gap_horizon: Duration,
    statuses: BTreeMap<String, StatusMessage>,
    /// `statuses` changed since `sensors.json` was last written (it is written with the next
    /// flush, beside the event loop: 370 sensors connecting at once made 370 fsync'd writes
    /// on the loop).
    statuses_dirty: bool,
    vacancy: BTreeMap<String, hvac::Vacancy>,
    minutes: minutes::Minutes,
    /// Next nightly reset per room or building (UTC).
    resets: BTreeMap<String, DateTime<Utc>>,
    tz: chrono_tz::Tz,
    retention_checked: Option<chrono::NaiveDate>,
    /// The UTC day the engine state was last snapshotted for.
    snap_day: chrono::NaiveDate,
    /// Index of each room in `campus.rooms`, and each building's capacity: looked up for every
    /// message, so not by scanning the campus (370 rooms made that most of the processors' time).
    room_index: HashMap<String, usize>,
    building_capacity: HashMap<String, u64>,
}

/// What a run processed, for the demo's summary.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Messages stored (including late ones).
    pub accepted: u64,
    pub duplicates: u64,
    /// Stored messages whose minute had already been closed.
    pub late: u64,
}

impl Processors {
    /// Loads saved state from `{data}/state/` if there is any.
    pub fn open(
        campus: Arc<Campus>,
        data_dir: &Path,
        metrics: Metrics,
        clock: Clock,
        audit: Arc<AuditLog>,
    ) -> Result<Self, ProcessorError> {
        rebuild::repair(data_dir).map_err(|source| ProcessorError::State {
            path: data_dir.join(".rebuild"),
            source,
        })?;
        let path = state_path(data_dir);
        let saved = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|source| ProcessorError::Corrupt { path, source })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved::default(),
            Err(source) => return Err(ProcessorError::State { path, source }),
        };
        let mut engine = Engine::new(&campus);
        engine.state = saved.occupancy;
        let mut dedup = saved.dedup;
        let (flushes, newer) = recover::newer_than(data_dir, saved.flushes)?;
        if !newer.is_empty() {
            tracing::warn!(
                "Replaying {} stored messages newer than the saved state (the server stopped between writing history and state).",
                newer.len()
            );
        }
        for m in newer {
            match m {
                recover::Stored::Line {
                    sensor,
                    line,
                    seq,
                    people_in,
                    people_out,
                } => {
                    if matches!(dedup.observe(&sensor, seq), Seen::New { .. }) {
                        engine.line(&sensor, &line, people_in, people_out);
                    }
                }
                recover::Stored::Zone {
                    sensor,
                    zone,
                    seq,
                    at_us,
                    people,
                } => {
                    if matches!(dedup.observe(&sensor, seq), Seen::New { .. }) {
                        engine.zone(&sensor, &zone, at_us, people);
                    }
                }
            }
        }
        let gap_horizon = campus.server.gap_horizon;
        let now = clock.now();
        let now_us = now.timestamp_micros();
        let tz: chrono_tz::Tz = campus.server.timezone.parse().unwrap_or(chrono_tz::Tz::UTC);
        let vacancy = campus
            .rooms
            .iter()
            .map(|r| (r.id.clone(), hvac::Vacancy::new(engine.room(&r.id, now_us))))
            .collect();
        let minutes = minutes::Minutes::new(
            now_us,
            campus.rooms.iter().map(|r| {
                let n = engine.room(&r.id, now_us);
                (r.id.clone(), r.building.clone(), r.capacity, n)
            }),
        );
        let resets = reset_schedule(&campus, now, tz);
        let room_index = campus
            .rooms
            .iter()
            .enumerate()
            .map(|(i, r)| (r.id.clone(), i))
            .collect();
        let mut building_capacity = HashMap::new();
        for r in &campus.rooms {
            *building_capacity.entry(r.building.clone()).or_insert(0) += u64::from(r.capacity);
        }
        Ok(Processors {
            room_index,
            building_capacity,
            campus,
            data_dir: data_dir.to_path_buf(),
            metrics,
            clock,
            engine,
            dedup,
            buffer: Buffer::default(),
            published: HashMap::new(),
            flushes,
            audit,
            gap_horizon,
            statuses: BTreeMap::new(),
            statuses_dirty: false,
            vacancy,
            minutes,
            resets,
            tz,
            retention_checked: None,
            snap_day: now.date_naive(),
        })
    }

    /// Retained topics for every room and building, from the current state: published before
    /// any sensor connects, so subscribers see correct values after a restart.
    pub fn initial_outputs(&mut self) -> Vec<Output> {
        let rooms: BTreeSet<String> = self.campus.rooms.iter().map(|r| r.id.clone()).collect();
        let buildings: BTreeSet<String> =
            self.campus.buildings.iter().map(|b| b.id.clone()).collect();
        let mut out = self.outputs(&rooms, &buildings);
        for o in self.acks(false) {
            self.push_raw_if_changed(&mut out, o.topic, o.payload);
        }
        if self.campus.integrations.home_assistant {
            out.extend(self.home_assistant());
        }
        out
    }

    /// Home Assistant MQTT discovery: per room an occupancy `binary_sensor` and a people-count
    /// `sensor`, retained under `homeassistant/`, so rooms appear with no manual setup.
    fn home_assistant(&self) -> Vec<Output> {
        let mut out = Vec::new();
        for r in &self.campus.rooms {
            let device = serde_json::json!({
                "identifiers": [format!("tellijn_{}", r.id)],
                "name": r.name,
                "manufacturer": "Tellijn",
                "suggested_area": r.name,
            });
            let occupied = serde_json::json!({
                "name": "Occupied",
                "unique_id": format!("tellijn_{}_occupied", r.id),
                "state_topic": topic::room_state(&r.id),
                "value_template": "{{ value_json }}",
                "payload_on": "occupied",
                "payload_off": "vacant",
                "device_class": "occupancy",
                "device": device,
            });
            let count = serde_json::json!({
                "name": "People",
                "unique_id": format!("tellijn_{}_people", r.id),
                "state_topic": topic::room_occupancy(&r.id),
                "value_template": "{{ value_json.occupancy }}",
                "unit_of_measurement": "people",
                "state_class": "measurement",
                "device": device,
            });
            for (kind, object, cfg) in [
                ("binary_sensor", "occupied", occupied),
                ("sensor", "people", count),
            ] {
                out.push(Output {
                    topic: format!("homeassistant/{kind}/tellijn_{}/{object}/config", r.id),
                    payload: serde_json::to_vec(&cfg).unwrap_or_default(),
                });
            }
        }
        out
    }

    /// Time-driven work, called often (about once a simulated minute or once a second): nightly
    /// resets, pending switches to vacant, stale zone readings, closing per-minute rows, and once
    /// a day the retention sweep. Returns the retained outputs that changed.
    pub fn housekeeping(&mut self) -> Vec<Output> {
        let now = self.clock.now();
        let now_us = now.timestamp_micros();
        let mut rooms: BTreeSet<String> = BTreeSet::new();
        let mut buildings: BTreeSet<String> = BTreeSet::new();
        let due: Vec<String> = self
            .resets
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for place in due {
            let removed = self.engine.reset(&place);
            tracing::info!(%place, removed, "Nightly reset.");
            if let Some(b) = self.engine.building_of(&place) {
                buildings.insert(b.to_owned());
                rooms.insert(place.clone());
            } else {
                buildings.insert(place.clone());
            }
            let next = reset_schedule(&self.campus, now, self.tz);
            if let Some(t) = next.get(&place) {
                self.resets.insert(place, *t);
            }
        }
        for (room, v) in &self.vacancy {
            if v.pending() || self.engine.has_zones(room) {
                rooms.insert(room.clone());
                if let Some(b) = self.engine.building_of(room) {
                    buildings.insert(b.to_owned());
                }
            }
        }
        let out = self.outputs(&rooms, &buildings);
        let rows = self.minutes.roll(now_us);
        self.buffer.occupancy.extend(rows);
        self.snapshot_if_new_day(now);
        if self.retention_checked != Some(now.date_naive()) {
            self.retention_checked = Some(now.date_naive());
            self.retention(now);
        }
        out
    }

    /// Keeps the engine state a new UTC day starts from (for the rebuild by message time once
    /// the day has ended): taken just before the first message of the day is applied, or when
    /// the clock passes midnight, whichever comes first.
    fn snapshot_if_new_day(&mut self, t: DateTime<Utc>) {
        let day = t.date_naive();
        if day <= self.snap_day {
            return;
        }
        self.snap_day = day;
        let path = rebuild::snapshot_path(&self.data_dir, day);
        let text = serde_json::to_vec(&self.engine.state).unwrap_or_default();
        if let Err(e) = tellijn_durable::write_atomic(&path, &text) {
            tracing::error!(
                "Cannot save the day-start snapshot ({e}); the day's occupancy rows will not be rebuilt by message time."
            );
        }
    }

    /// Rebuilds the per-minute rows of every finished day that has a start snapshot and whose
    /// inputs changed since its last rebuild (late files), off the async threads.
    pub async fn rebuild_due(&mut self) {
        let now = self.clock.now();
        let dir = self.data_dir.join("state").join("day-start");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut days: Vec<chrono::NaiveDate> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        days.sort();
        for day in days {
            let end =
                day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() + chrono::TimeDelta::days(1);
            if now < end + chrono::TimeDelta::minutes(10) || !self.buffer.counts.is_empty() {
                continue;
            }
            // Compaction itself changes the version; mark with the version after it (below).
            let version = rebuild::inputs_version(&self.data_dir, day);
            let marker = self
                .data_dir
                .join("state")
                .join("rebuilt")
                .join(day.to_string());
            let done: u64 = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            if done >= version && marker.exists() {
                continue;
            }
            let snapshot = rebuild::snapshot_path(&self.data_dir, day);
            let start: occupancy::State = match std::fs::read(&snapshot) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(s) => s,
                    Err(e) => {
                        // An empty start would rebuild the day wrong: keep its live rows.
                        tracing::error!(
                            "The day-start snapshot {} is damaged ({e}); {day} keeps the occupancy rows recorded live and is not rebuilt. Deleting the file is safe: it only stops this message.",
                            snapshot.display()
                        );
                        continue;
                    }
                },
                Err(_) => continue,
            };
            // Rows of that day still buffered would land beside the rebuilt file: write them
            // first so the swap replaces them too.
            let pending = std::mem::take(&mut self.buffer);
            if let Err(e) = self.save(Some(pending)).await {
                tracing::error!("Flushing before a rebuild failed: {e}");
                return;
            }
            self.flushes += 3;
            let (data, campus, tz, flush) = (
                self.data_dir.clone(),
                self.campus.clone(),
                self.tz,
                self.flushes,
            );
            let result = tokio::task::spawn_blocking(move || {
                // One file per table per finished day: compact the raw tables first (their
                // content is unchanged), then rebuild the occupancy rows from them.
                for (i, table) in [schema::COUNTS, schema::ZONE_COUNTS]
                    .into_iter()
                    .enumerate()
                {
                    let n = flush - 2 + i as u64;
                    if let Some(rows) = rebuild::compact(&data, table, day, n)? {
                        tracing::info!(table, %day, rows, "Compacted the day into one file.");
                    }
                }
                rebuild::rebuild_and_swap(&data, &campus, tz, day, start, flush)
            })
            .await;
            match result {
                Ok(Ok(rows)) => {
                    tracing::info!(%day, rows, "Rebuilt the day's occupancy from its counts by message time.");
                    let version = rebuild::inputs_version(&self.data_dir, day);
                    if let Err(e) =
                        tellijn_durable::write_atomic(&marker, version.to_string().as_bytes())
                    {
                        // Harmless: the day is rebuilt again at the next pass.
                        tracing::error!("Cannot record the rebuild of {day}: {e}");
                    }
                }
                Ok(Err(e)) => tracing::error!("{e}"),
                Err(e) => tracing::error!("The occupancy rebuild of {day} failed: {e}"),
            }
        }
    }

    /// Deletes expired day partitions and audits each deletion.
    fn retention(&mut self, now: DateTime<Utc>) {
        let p = &self.campus.privacy;
        for (table, keep) in [
            (schema::COUNTS, p.raw_retention),
            (schema::ZONE_COUNTS, p.raw_retention),
            (schema::OCCUPANCY, p.aggregate_retention),
        ] {
            let cutoff = retention::cutoff(now, keep);
            for (date, path) in retention::expired(&self.data_dir, table, cutoff) {
                let files = std::fs::read_dir(&path).map(|d| d.count()).unwrap_or(0);
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::info!(table, %date, files, "Deleted a partition past retention.");
                        let event = AuditEvent::RetentionDeleted {
                            table,
                            date: date.to_string(),
                            files,
                            retention: humantime_secs(keep),
                        };
                        if let Err(e) = self.audit.record(event) {
                            tracing::error!("{e}");
                        }
                    }
                    Err(e) => {
                        tracing::error!("Cannot delete {} past retention: {e}", path.display())
                    }
                }
            }
        }
    }

    /// Ack outputs for every sensor's watermark (changed or not: the caller publishes those
    /// that changed); with `give_up`, gaps overdue past the horizon are declared lost first.
    fn acks(&mut self, give_up: bool) -> Vec<Output> {
        let now = self.clock.now().timestamp_micros();
        let horizon = if give_up {
            self.gap_horizon.as_micros().min(i64::MAX as u128) as i64
        } else {
            i64::MAX
        };
        let (marks, lost) = self.dedup.watermarks(now, horizon);
        for g in lost {
            let n = g.last - g.first + 1;
            tracing::warn!(
                sensor = %g.sensor,
                why = g.why.as_str(),
                "Seqs {}..={} given up as lost.",
                g.first,
                g.last
            );
            let labels = SensorLabels {
                sensor: g.sensor.clone(),
            };
            self.metrics
                .sensor_seq_lost
                .get_or_create(&labels)
                .inc_by(n);
            let event = AuditEvent::SeqGapLost {
                sensor: g.sensor,
                first: g.first,
                last: g.last,
                why: g.why.as_str(),
            };
            if let Err(e) = self.audit.record(event) {
                tracing::error!("{e}");
            }
        }
        // Every configured sensor has a retained ack, 0 before its first message is stored:
        // an agent waits for it after connecting before it sends, so one whose outbox was
        // replaced learns where the server stands and continues above it.
        let mut marks = marks;
        let known: std::collections::HashSet<&str> =
            marks.iter().map(|(s, _)| s.as_str()).collect();
        let unseen: Vec<(String, u64)> = self
            .campus
            .sensors
            .iter()
            .filter(|s| !known.contains(s.id.as_str()))
            .map(|s| (s.id.clone(), 0))
            .collect();
        marks.extend(unseen);
        marks
            .into_iter()
            .map(|(sensor, seq)| Output {
                topic: topic::sensor(&sensor, topic::SensorTopic::Ack),
                payload: format!("{{\"seq\":{seq}}}").into_bytes(),
            })
            .collect()
    }

    fn outputs(&mut self, rooms: &BTreeSet<String>, buildings: &BTreeSet<String>) -> Vec<Output> {
        let now = self.clock.now();
        let now_us = now.timestamp_micros();
        let ts = rfc3339(now);
        let instant = tokio::time::Instant::now();
        let mut out = Vec::new();
        let campus = self.campus.clone();
        for room in rooms {
            let Some(r) = self.room_index.get(room).and_then(|&i| campus.rooms.get(i)) else {
                continue;
            };
            let n = self.engine.room(room, now_us);
            self.minutes.set(room, n, now_us);
            let delay = self.clock.real(r.vacancy_delay);
            let state = self
                .vacancy
                .entry(room.clone())
                .or_insert_with(|| hvac::Vacancy::new(n));
            let occupied = state.update(n, instant, delay);
            let state = state.payload();
            let labels = RoomLabels {
                room: r.id.clone(),
                building: r.building.clone(),
            };
            self.metrics
                .room_vacant
                .get_or_create(&labels)
                .set(i64::from(!occupied));
            self.metrics
                .room_occupancy
                .get_or_create(&labels)
                .set(n as i64);
            let payload = OccupancyPayload {
                room,
                building: &r.building,
                occupancy: n,
                capacity: r.capacity,
                ts: ts.clone(),
            };
            self.push_if_changed(&mut out, topic::room_occupancy(room), &payload, n);
            self.push_raw_if_changed(&mut out, topic::room_state(room), state.to_vec());
        }
        for b in buildings {
            let n = self.engine.building(b, now_us);
            self.metrics
                .building_occupancy
                .get_or_create(&BuildingLabels {
                    building: b.clone(),
                })
                .set(n as i64);
            let capacity = self.building_capacity.get(b).copied().unwrap_or(0);
            let payload = BuildingPayload {
                building: b,
                occupancy: n,
                capacity,
                ts: ts.clone(),
            };
            self.push_if_changed(&mut out, topic::building_occupancy(b), &payload, n);
        }
        out
    }

    /// Publishes occupancy payloads only when the number changed (the timestamp alone does not
    /// make a change).
    fn push_if_changed<T: Serialize>(
        &mut self,
        out: &mut Vec<Output>,
        topic: String,
        payload: &T,
        n: u64,
    ) {
        let key = n.to_le_bytes().to_vec();
        if self.published.get(&topic) == Some(&key) {
            return;
        }
        self.published.insert(topic.clone(), key);
        out.push(Output {
            topic,
            payload: serde_json::to_vec(payload).unwrap_or_default(),
        });
    }

    fn push_raw_if_changed(&mut self, out: &mut Vec<Output>, topic: String, payload: Vec<u8>) {
        if self.published.get(&topic) == Some(&payload) {
            return;
        }
        self.published.insert(topic.clone(), payload.clone());
        out.push(Output { topic, payload });
    }

    /// Handles one event; returns the retained outputs it changed.
    pub fn handle(&mut self, event: SensorEvent, summary: &mut Summary) -> Vec<Output> {
        match event {
            SensorEvent::Count { msg, received, at } => {
                self.metrics.processor_queue.dec();
                let sensor = SensorLabels {
                    sensor: msg.sensor().to_owned(),
                };
                match self.dedup.observe(msg.sensor(), msg.seq()) {
                    Seen::Duplicate => {
                        self.metrics.outcome(outcome::DUPLICATE);
                        summary.duplicates += 1;
                        return Vec::new();
                    }
                    Seen::TooFarAhead { highest } => {
                        self.metrics.outcome(outcome::SEQ_TOO_FAR_AHEAD);
                        tracing::warn!(
                            sensor = %msg.sensor(),
                            seq = msg.seq(),
                            highest,
                            "Refused a count message whose seq lies implausibly far above the sensor's highest."
                        );
                        let event = AuditEvent::SeqTooFarAhead {
                            sensor: msg.sensor().to_owned(),
                            seq: msg.seq(),
                            highest,
                        };
                        if let Err(e) = self.audit.record(event) {
                            tracing::error!("{e}");
                        }
                        return Vec::new();
                    }
                    Seen::New { gap } => {
                        if gap > 0 {
                            self.metrics
                                .sensor_seq_gaps
                                .get_or_create(&sensor)
                                .inc_by(gap);
                        }
                    }
                }
                // A message for a minute already closed is stored all the same, and counted as
                // late: its minute's occupancy row was written without it.
                let late = msg.time().timestamp_micros() < self.minutes.open_minute() - 60_000_000;
                self.metrics.outcome(if late {
                    outcome::LATE
                } else {
                    outcome::ACCEPTED
                });
                summary.accepted += 1;
                summary.late += u64::from(late);
                self.metrics
                    .sensor_last_seen
                    .get_or_create(&sensor)
                    .set(received.timestamp());
                self.snapshot_if_new_day(msg.time());
                let (mut rooms, mut buildings) = (BTreeSet::new(), BTreeSet::new());
                let mut touch = |engine: &Engine, place: &str| {
                    if let Some(b) = engine.building_of(place) {
                        rooms.insert(place.to_owned());
                        buildings.insert(b.to_owned());
                    } else {
                        buildings.insert(place.to_owned());
                    }
                };
                match &msg {
                    CountMessage::Line(m) => {
                        if let Some((into, from)) = self.engine.line_ends(&m.sensor, &m.line) {
                            let (into, from) = (into.to_owned(), from.map(str::to_owned));
                            self.minutes.crossed(&into, m.people_in, m.people_out);
                            if let Some(f) = from {
                                self.minutes.crossed(&f, m.people_out, m.people_in);
                            }
                        }
                        for c in self
                            .engine
                            .line(&m.sensor, &m.line, m.people_in, m.people_out)
                        {
                            if c.clamped > 0
                                && let Some(b) = self.engine.building_of(&c.place)
                            {
                                let labels = RoomLabels {
                                    room: c.place.clone(),
                                    building: b.to_owned(),
                                };
                                self.metrics
                                    .occupancy_clamped
                                    .get_or_create(&labels)
                                    .inc_by(c.clamped);
                            }
                            touch(&self.engine, &c.place);
                        }
                    }
                    CountMessage::Zone(m) => {
                        if let Some(room) =
                            self.engine
                                .zone(&m.sensor, &m.zone, m.at.timestamp_micros(), m.count)
                        {
                            touch(&self.engine, &room);
                        }
                    }
                }
                let out = self.outputs(&rooms, &buildings);
                match msg {
                    CountMessage::Line(m) => self.buffer.counts.push((m, received)),
                    CountMessage::Zone(m) => self.buffer.zones.push((m, received)),
                }
                self.metrics
                    .processing_latency
                    .observe(at.elapsed().as_secs_f64());
                out
            }
            SensorEvent::Status { sensor, status } => {
                self.sensor_status(sensor, status);
                Vec::new()
            }
            SensorEvent::Connected { sensor } => {
                self.metrics
                    .sensor_online
                    .get_or_create(&SensorLabels { sensor })
                    .set(1);
                Vec::new()
            }
            SensorEvent::Disconnected { sensor } => {
                self.metrics
                    .sensor_online
                    .get_or_create(&SensorLabels { sensor })
                    .set(0);
                Vec::new()
            }
        }
    }

    /// Publishes the depths of the Parquet buffer and of the retained-output channel.
    fn queue_depths(&self, out: &tokio::sync::mpsc::Sender<Output>) {
        let set = |stage, n: usize| {
            self.metrics
                .queue_depth
                .get_or_create(&StageLabels { stage })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set(stage::PARQUET_BUFFER, self.buffer.len());
        set(
            stage::PROCESSORS_IN,
            usize::try_from(self.metrics.processor_queue.get()).unwrap_or(0),
        );
        set(stage::RETAINED_OUT, out.max_capacity() - out.capacity());
    }

    /// Records what a sensor reports about itself. A change of its privacy-relevant settings
    /// (what it sends, its config hash, its version) is audited, and the latest report of every
    /// sensor is kept in `{data}/state/sensors.json`, so an auditor can see each device's
    /// configuration from the server.
    fn sensor_status(&mut self, sensor: String, status: StatusMessage) {
        if !status.online {
            return;
        }
        if let Some(q) = status.queue {
            self.metrics
                .sensor_queue
                .get_or_create(&SensorLabels {
                    sensor: sensor.clone(),
                })
                .set(i64::try_from(q).unwrap_or(i64::MAX));
        }
        let settings =
            |s: &StatusMessage| (s.sends.clone(), s.config_hash.clone(), s.version.clone());
        let changed = self
            .statuses
            .get(&sensor)
            .is_none_or(|old| settings(old) != settings(&status));
        if changed {
            let event = AuditEvent::SensorSettings {
                sensor: sensor.clone(),
                sends: status.sends.clone().unwrap_or_default(),
                config_hash: status.config_hash.clone(),
                version: status.version.clone(),
            };
            if let Err(e) = self.audit.record(event) {
                tracing::error!("{e}");
            }
        }
        if status.corrupt_bytes.unwrap_or(0) > 0 || status.dropped.unwrap_or(0) > 0 {
            tracing::warn!(
                %sensor,
                corrupt_bytes = status.corrupt_bytes.unwrap_or(0),
                dropped = status.dropped.unwrap_or(0),
                "A sensor reports a damaged or overflowing outbox."
            );
        }
        self.statuses.insert(sensor, status);
        self.statuses_dirty |= changed;
    }

    /// The latest status each sensor reported (online reports only).
    pub fn statuses(&self) -> &BTreeMap<String, StatusMessage> {
        &self.statuses
    }

    /// Writes buffered messages to Parquet, saves the state, and returns the acks that became
    /// true. On failure the messages stay buffered for the next attempt and nothing is acked.
    pub async fn flush(&mut self) -> Result<Vec<Output>, ProcessorError> {
        match self.begin_flush() {
            Some(mut pending) => {
                let joined = (&mut pending.task).await;
                self.finish_flush(pending, joined)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Starts writing the buffer and the state on a blocking thread; events keep being handled
    /// meanwhile (into a new buffer). `None` when there is nothing to write. The acks are
    /// computed now, from the dedup state the written files include, and published only by
    /// [`Self::finish_flush`] after the write succeeded.
    fn begin_flush(&mut self) -> Option<PendingFlush> {
        // Give up overdue gaps first, so the saved state and the acks agree.
        let acks = self.acks(true);
        let acks_changed = acks
            .iter()
            .any(|o| self.published.get(&o.topic) != Some(&o.payload));
        if self.buffer.is_empty() && !acks_changed && !self.statuses_dirty {
            return None;
        }
        // With an empty buffer this persists given-up gaps before they are acked.
        let buffer = std::mem::take(&mut self.buffer);
        Some(self.begin_save(buffer, acks))
    }

    /// Completes a flush begun by [`Self::begin_flush`]: on success the acks that changed, on
    /// failure the unwritten messages go back ahead of newer ones and the error is returned.
    fn finish_flush(
        &mut self,
        mut pending: PendingFlush,
        joined: Result<SaveResult, tokio::task::JoinError>,
    ) -> Result<Vec<Output>, ProcessorError> {
        let acks = std::mem::take(&mut pending.acks);
        match self.finish_save(pending, joined) {
            Ok(()) => {
                self.metrics.health.succeeded(storage::HISTORY);
                let mut out = Vec::new();
                for o in acks {
                    self.push_raw_if_changed(&mut out, o.topic, o.payload);
                }
                Ok(out)
            }
            Err(e) => {
                self.metrics
                    .flush_failures
                    .get_or_create(&TableLabels {
                        table: schema::COUNTS,
                    })
                    .inc();
                self.metrics.health.failed(
                    storage::HISTORY,
                    &format!(
                        "writing the history failed: {e}; the messages stay buffered and unacknowledged (the sensors keep them) until a flush succeeds; free space on the data directory's disk"
                    ),
                );
                Err(e)
            }
        }
    }

    /// Writes `buffer` and the state and waits for it (no acks).
    async fn save(&mut self, buffer: Option<Buffer>) -> Result<(), ProcessorError> {
        let mut pending = self.begin_save(buffer.unwrap_or_default(), Vec::new());
        let joined = (&mut pending.task).await;
        self.finish_save(pending, joined)
    }

    fn begin_save(&mut self, mut buffer: Buffer, acks: Vec<Output>) -> PendingFlush {
        let dir = self.data_dir.clone();
        let flush = self.flushes + 1;
        let saved = serde_json::to_vec(&Saved {
            dedup: self.dedup.clone(),
            occupancy: self.engine.state.clone(),
            flushes: flush,
        })
        .unwrap_or_default();
        let started = std::time::Instant::now();
        let statuses = std::mem::take(&mut self.statuses_dirty)
            .then(|| serde_json::to_vec_pretty(&self.statuses).unwrap_or_default());
        let task = tokio::task::spawn_blocking(move || {
            if let Some(text) = statuses {
                let path = dir.join("state").join("sensors.json");
                if let Err(e) = tellijn_durable::write_atomic(&path, &text) {
                    tracing::error!("Cannot save the sensors' statuses: {e}");
                }
            }
            let r = buffer
                .flush(&dir, flush)
                .map_err(ProcessorError::from)
                .and_then(|w| {
                    let saved = std::panic::catch_unwind(|| save_state(&dir, &saved))
                        .unwrap_or_else(|p| {
                            Err(ProcessorError::Sink(parquet_sink::SinkError::Panicked(
                                parquet_sink::panic_message(p.as_ref()),
                            )))
                        });
                    match saved {
                        Ok(()) => Ok(w),
                        Err(e) => {
                            // Nothing is acked; the rows stay buffered and are written again.
                            w.remove_files();
                            Err(e)
                        }
                    }
                });
            if r.is_ok() {
                // Written and recorded in the state: nothing to put back on failure.
                buffer = Buffer::default();
            }
            (buffer, r)
        });
        PendingFlush {
            flush,
            started,
            task,
            acks,
        }
    }

    fn finish_save(
        &mut self,
        pending: PendingFlush,
        joined: Result<SaveResult, tokio::task::JoinError>,
    ) -> Result<(), ProcessorError> {
        // The write catches its own panics, so the task fails only when it is cancelled at
        // shutdown: its buffer is gone, and acknowledging anything now could cover messages
        // that were never written. The caller stops (see `run`).
        let (buffer, result) = match joined {
            Ok(r) => r,
            Err(e) => return Err(ProcessorError::FlushLost(e.to_string())),
        };
        self.metrics
            .flush_duration
            .observe(pending.started.elapsed().as_secs_f64());
        match result {
            Ok(w) => {
                self.flushes = pending.flush;
                for (table, n) in [
                    (schema::COUNTS, w.counts),
                    (schema::ZONE_COUNTS, w.zones),
                    (schema::OCCUPANCY, w.minutes),
                ] {
                    self.metrics
                        .rows_written
                        .get_or_create(&TableLabels { table })
                        .inc_by(n as u64);
                }
                tracing::debug!(
                    counts = w.counts,
                    zones = w.zones,
                    minutes = w.minutes,
                    "Flushed history."
                );
                Ok(())
            }
            Err(e) => {
                // Put back what was not written, ahead of anything newer.
                let mut rest = buffer;
                rest.append(std::mem::take(&mut self.buffer));
                self.buffer = rest;
                Err(e)
            }
        }
    }

    /// Runs until `shutdown` resolves or the event channel closes, then drains and flushes.
    ///
    /// A flush runs beside the event loop: messages arriving while the files are written and
    /// synced are handled (and their occupancy published) at once, into the next buffer. One
    /// flush is in flight at a time; a tick that finds one still running is skipped.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SensorEvent>,
        out: mpsc::Sender<Output>,
        flush_every: Duration,
        shutdown: impl Future<Output = ()>,
    ) -> Result<Summary, ProcessorError> {
        let mut summary = Summary::default();
        let mut tick = tokio::time::interval(flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Housekeeping about twice per simulated minute, at most once a second.
        let house_every = self
            .clock
            .real(Duration::from_secs(30))
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut house = tokio::time::interval(house_every);
        house.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Option<PendingFlush> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                joined = wait_flush(&mut pending) => {
                    let Some(p) = pending.take() else { continue };
                    match self.finish_flush(p, joined) {
                        Ok(acks) => {
                            for o in acks {
                                let _ = out.send(o).await;
                            }
                        }
                        Err(e @ ProcessorError::FlushLost(_)) => return Err(e),
                        Err(e) => tracing::error!("Flushing history failed, will retry: {e}"),
                    }
                    self.queue_depths(&out);
                }
                _ = house.tick() => {
                    for o in self.housekeeping() {
                        let _ = out.send(o).await;
                    }
                    // A rebuild writes files and bumps the flush number itself.
                    if pending.is_none() {
                        self.rebuild_due().await;
                    }
                }
                // While flushes fail (a full disk) the buffer grows; past a bound, stop taking
                // events: the broker's channel fills and publishers wait for their PUBACK, so
                // the agents keep the rest in their outboxes instead of this process in memory.
                ev = events.recv(), if !self.held_back() => match ev {
                    Some(ev) => {
                        for o in self.handle(ev, &mut summary) {
                            let _ = out.send(o).await;
                        }
                        self.queue_depths(&out);
                    }
                    None => break,
                },
                _ = tick.tick(), if pending.is_none() => {
                    pending = self.begin_flush();
                }
            }
        }
        // Finish the flush in flight, refuse new publishes (the broker then withholds their
        // PUBACK), drain what was already admitted, and write it all.
        if let Some(mut p) = pending.take() {
            let joined = (&mut p.task).await;
            match self.finish_flush(p, joined) {
                Ok(acks) => {
                    for o in acks {
                        let _ = out.send(o).await;
                    }
                }
                Err(e @ ProcessorError::FlushLost(_)) => return Err(e),
                Err(e) => tracing::error!("Flushing history failed, will retry: {e}"),
            }
        }
        events.close();
        while let Some(ev) = events.recv().await {
            for o in self.handle(ev, &mut summary) {
                let _ = out.send(o).await;
            }
        }
        for o in self.flush().await? {
            let _ = out.send(o).await;
        }
        Ok(summary)
    }
}

/// Rows buffered while flushes fail before the processors stop taking events.
pub const MAX_BUFFERED_WHILE_FAILING: usize = 200_000;

impl Processors {
    /// Whether to stop taking events: the history cannot be written and the buffer is full.
    fn held_back(&self) -> bool {
        self.buffer.len() >= MAX_BUFFERED_WHILE_FAILING
            && self
                .metrics
                .health
                .problems()
                .iter()
                .any(|(what, _)| *what == storage::HISTORY)
    }
}

type SaveResult = (Buffer, Result<parquet_sink::Written, ProcessorError>);

/// A flush whose files and state are being written on a blocking thread.
struct PendingFlush {
    /// The flush number it writes.
    flush: u64,
    started: std::time::Instant,
    task: tokio::task::JoinHandle<SaveResult>,
    /// Acks to publish once it succeeded.
    acks: Vec<Output>,
}

/// Resolves when the flush in flight is done; never while there is none.
async fn wait_flush(
    pending: &mut Option<PendingFlush>,
) -> Result<SaveResult, tokio::task::JoinError> {
    match pending {
        Some(p) => (&mut p.task).await,
        None => std::future::pending().await,
    }
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("processors.json")
}

fn save_state(data_dir: &Path, bytes: &[u8]) -> Result<(), ProcessorError> {
    let path = state_path(data_dir);
    let io = |source| ProcessorError::StateWrite {
        path: path.clone(),
        source,
    };
    tellijn_durable::write_atomic(&path, bytes).map_err(io)
}

/// The next nightly reset of every room with a `reset` time, and of every building with
/// entrance lines (at the earliest reset of its rooms).
fn reset_schedule(
    campus: &Campus,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> BTreeMap<String, DateTime<Utc>> {
    schedule::reset_times(campus)
        .into_iter()
        .map(|(place, (h, m))| (place, schedule::next_local(now, tz, h, m)))
        .collect()
}

fn humantime_secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
