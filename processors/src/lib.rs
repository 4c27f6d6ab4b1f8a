//! # Tellijn processors
//!
//! Turn admitted sensor events into occupancy, retained topics and Parquet history.
//!
//! # Layout
//! Data meets these parts in this order:
//! - [`dedup`]: drops a `(sensor, seq)` seen before, counts gaps, refuses a seq implausibly
//!   far ahead.
//! - [`occupancy`]: the pure engine — rooms and buildings from line and zone messages.
//! - `events`: [`Processors::handle`] applies one event (dedup, engine, per-minute rows, the
//!   buffer) and records sensor statuses.
//! - `publish`: the retained [`Output`]s — room and building occupancy, room state, acks —
//!   published only when they change; `home_assistant`: MQTT discovery.
//! - `flushing` and [`parquet_sink`]: buffered messages are written every `flush_interval` and
//!   on shutdown, in the tables of [`schema`], on a blocking thread beside the loop, one flush
//!   at a time; the acks are published only after the files and the state are on disk.
//! - `housekeeping` (on the loop, cheap): nightly resets, vacancy switches, closing minutes,
//!   deciding when a snapshot, retention or rebuild is due. `janitor` (its own thread, beside
//!   the loop): writes day-start snapshots, compacts and [`rebuild`]s finished days, deletes
//!   partitions past [`retention`]. Jobs reach it through a bounded queue; a flush and a job
//!   never work on the same days at once (`janitor::DayLocks`).
//! - `run_loop`: [`Processors::run`], the `select!` loop tying it together. Nothing on it
//!   waits for the disk except the channel to the broker.
//! - `state`: the saved state and recovery at start ([`recover`], [`rebuild::repair`]).
//! - [`reload`]: a new campus in force without a restart, through the restart path.
//!
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
//! `tests/crash_e2e.rs` kills the server at named points of a simulated day
//! ([`tellijn_durable::crash`]) and checks this after every restart.

pub mod dedup;
mod events;
#[cfg(test)]
mod flush_faults;
mod flushing;
#[cfg(test)]
mod headcount_tests;
mod home_assistant;
mod housekeeping;
#[cfg(test)]
mod housekeeping_tests;
pub mod hvac;
mod janitor;
pub mod minutes;
pub mod occupancy;
pub mod parquet_sink;
mod publish;
pub mod rebuild;
pub mod recover;
pub mod reload;
pub mod retention;
mod run_loop;
pub mod schedule;
pub mod schema;
mod state;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tellijn_config::{AuditLog, Campus, Metrics};
use tellijn_wire::{Clock, StatusMessage};

use dedup::Dedup;
use occupancy::Engine;
use parquet_sink::Buffer;

pub use flushing::MAX_BUFFERED_WHILE_FAILING;

/// How often, at most, `sensors.json` is rewritten when only cameras' frame figures changed
/// (every status carries new ones; 370 cameras would rewrite it with every flush).
pub const FIGURES_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

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
    /// The highest flush number handed out (files are named by it; the saved state records
    /// the last flush it includes). Shared with the janitor, which numbers its files too.
    numbers: Arc<AtomicU64>,
    /// The days a flush or a housekeeping job is writing, so they never overlap.
    locks: Arc<janitor::DayLocks>,
    janitor: janitor::Janitor,
    audit: Arc<AuditLog>,
    gap_horizon: Duration,
    statuses: BTreeMap<String, StatusMessage>,
    /// `statuses` changed since `sensors.json` was last written (it is written with the next
    /// flush, beside the event loop: 370 sensors connecting at once made 370 fsync'd writes
    /// on the loop).
    statuses_dirty: bool,
    /// Only a camera's frame figures changed since then: written at most every
    /// [`FIGURES_EVERY`], measured by `statuses_written`.
    statuses_figures_dirty: bool,
    statuses_written: std::time::Instant,
    /// A head count set a room's occupancy since the state was last saved (saved with the
    /// next flush even when no message came).
    engine_dirty: bool,
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
