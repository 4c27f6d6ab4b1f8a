//! The saved state and recovery at start: the dedup sets, occupancy counts and the number of
//! the last flush they include, in `{data}/state/processors.json`; files with a higher flush
//! number are replayed ([`crate::recover`]), and a rebuild swap a crash interrupted is finished
//! or undone first ([`crate::rebuild::repair`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use serde::{Deserialize, Serialize};
use tellijn_config::{AuditLog, Campus, Metrics};
use tellijn_wire::Clock;

use crate::dedup::{Dedup, Seen};
use crate::occupancy::{self, Engine};
use crate::parquet_sink::Buffer;
use crate::{ProcessorError, Processors, hvac, janitor, minutes, rebuild, recover};

#[derive(Serialize, Deserialize, Default)]
pub(crate) struct Saved {
    pub(crate) dedup: Dedup,
    pub(crate) occupancy: occupancy::State,
    /// The number of the last flush whose files this state includes.
    #[serde(default)]
    pub(crate) flushes: u64,
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
        let resets = crate::housekeeping::reset_schedule(&campus, now, tz);
        let numbers = Arc::new(AtomicU64::new(flushes));
        let locks = Arc::new(janitor::DayLocks::default());
        let janitor = janitor::Janitor::start(janitor::Context {
            data_dir: data_dir.to_path_buf(),
            campus: campus.clone(),
            tz,
            audit: audit.clone(),
            metrics: metrics.clone(),
            numbers: numbers.clone(),
            locks: locks.clone(),
        })
        .map_err(|source| ProcessorError::State {
            path: data_dir.to_path_buf(),
            source,
        })?;
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
            numbers,
            locks,
            janitor,
            audit,
            gap_horizon,
            statuses: BTreeMap::new(),
            statuses_dirty: false,
            engine_dirty: false,
            statuses_figures_dirty: false,
            statuses_written: std::time::Instant::now(),
            vacancy,
            minutes,
            resets,
            tz,
            retention_checked: None,
            snap_day: now.date_naive(),
        })
    }
}

fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join("state").join("processors.json")
}

/// Writes the saved state crash-safely.
pub(crate) fn save_state(data_dir: &Path, bytes: &[u8]) -> Result<(), ProcessorError> {
    let path = state_path(data_dir);
    let io = |source| ProcessorError::StateWrite {
        path: path.clone(),
        source,
    };
    tellijn_durable::write_atomic(&path, bytes).map_err(io)
}
