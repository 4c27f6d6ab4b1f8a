//! The audit log: one JSON object per line in `{data}/audit/YYYY-MM-DD.jsonl` (UTC date of the
//! event). It records who was refused what and why — never a payload: a refused payload is
//! described by its size and SHA-256 only.
//!
//! Lines are written by a thread of the log's own (`tellijn-audit`), fed by a bounded queue
//! ([`QUEUE`] lines): [`AuditLog::record`] only queues, so a broker hook or the processors'
//! loop never waits for the disk (only, when the queue is full, for room in it: back-pressure,
//! never a dropped line). [`AuditLog::record_confirmed`] waits until its line is written, for
//! callers that must not go on without it (a SQL or API read); [`AuditLog::sync`] waits for
//! every queued line and makes them durable (on shutdown, before a retention deletion). Lines
//! are flushed to the OS as they are written. A line that cannot be written whole (a full disk) is cut off again, so the
//! file never holds half a line and the chain stays intact; the failure is returned, counted in
//! `tellijn_storage_errors_total{what="audit"}` and shown by `/healthz` until a line is written
//! again.
//!
//! Volume: refusals of clients that have not authenticated reach the log only aggregated, per
//! reason and minute ([`crate::refusals`]); every text an attacker chooses (client id, user
//! name, topic) is cut by [`crate::refusals::field`]. Authenticated actors get a line per event.
//!
//! Tamper evidence: every line carries `prev`, the hash of the line before it (across daily
//! files and restarts; the very first line has [`GENESIS`]), and ends with `hash`, the SHA-256
//! of the line's text up to that field. [`verify`] recomputes both and names the first line
//! where they disagree, so a changed, deleted or inserted line is found. (Whoever can rewrite
//! every later line can hide a change; the latest hash, printed by `tellijn audit verify`,
//! should be kept elsewhere to guard against that.)

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::health::Health;
use crate::refusals::{field, field_of};

/// Something worth an audit line.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AuditEvent {
    /// An MQTT CONNECT was refused.
    AuthFailure {
        client: String,
        username: Option<String>,
        reason: &'static str,
    },
    /// A publish was refused before routing.
    PublishRefused {
        client: String,
        topic: String,
        reason: &'static str,
        payload_bytes: usize,
        payload_sha256: String,
    },
    /// A subscription of an authenticated client was refused.
    SubscribeRefused { client: String, filter: String },
    /// A logged-in MQTT client was disconnected for a packet the protocol does not allow
    /// (too large, invalid UTF-8, an empty topic); the packet itself is not kept.
    ProtocolError { client: String, error: String },
    /// A gap in a sensor's seqs was given up as lost: after the gap horizon (`why`:
    /// `gap_horizon`) or because the sensor had too many open gaps (`too_many_gaps`).
    SeqGapLost {
        sensor: String,
        first: u64,
        last: u64,
        why: &'static str,
    },
    /// A count message whose seq lies implausibly far above the sensor's highest was refused
    /// (not stored, not acknowledged).
    SeqTooFarAhead {
        sensor: String,
        seq: u64,
        highest: u64,
    },
    /// A sensor reported new privacy-relevant settings in its status.
    SensorSettings {
        sensor: String,
        sends: Vec<String>,
        config_hash: Option<String>,
        version: Option<String>,
        /// A camera counter's privacy level (3: nothing but lines shown); absent without one,
        /// so the lines of other sensors read as before.
        #[serde(skip_serializing_if = "Option::is_none")]
        privacy_level: Option<u8>,
    },
    /// A day partition past retention was deleted.
    RetentionDeleted {
        table: &'static str,
        date: String,
        files: usize,
        retention: String,
    },
    /// The server started with a config, or a reload put one in force (`source` ends in
    /// "(reload)").
    ConfigLoaded {
        config_sha256: String,
        source: String,
    },
    /// An event a command queued while the server held the log ([`inbox`]), recorded at the
    /// server's next start or reload: when it was queued and the event as queued.
    Queued {
        queued_at: String,
        queued: serde_json::Value,
    },
    /// A reload was refused and the running config stayed: the file, its hash when it could
    /// be read, and why (the config's own errors: names of rooms, sensors and keys, never a
    /// secret, which the config holds only as hashes).
    ConfigRefused {
        source: String,
        config_sha256: Option<String>,
        reason: String,
    },
    /// `tellijn sensor add|rotate` changed a sensor in the config: the sensor, `add` or
    /// `rotate`, the config file and its hash after the change. Never the secret or its hash.
    SensorProvisioned {
        sensor: String,
        action: String,
        source: String,
        config_sha256: String,
    },
    /// Refusals of clients that had not authenticated, aggregated over `from`..`to` (see
    /// [`crate::refusals`]): what was refused (`auth_failure`, `subscribe_refused`, …), why,
    /// how often, from how many distinct source addresses (`sources_more`: more than were
    /// kept), and the window's first attempt as an example.
    Refusals {
        refused: &'static str,
        reason: &'static str,
        from: String,
        to: String,
        count: u64,
        sources: usize,
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        sources_more: bool,
        example: crate::refusals::Example,
    },
    /// A named user (`[[users]]`) read: who, through what, which tables — never the results.
    /// `via` is `sql` (PostgreSQL wire; `statement` is the kind, e.g. `query`) or `api` (HTTP
    /// with Basic credentials; `resource` is the path under `/api/v1/`). `tables` are the SQL
    /// tables read, plus `live` for the current occupancy the API holds in memory.
    Read {
        user: String,
        via: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        statement: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        resource: Option<String>,
        tables: Vec<String>,
    },
    /// A head count was recorded (HTTP: `via` is `api`): who, which room, when, the people they
    /// counted and Tellijn's occupancy then (`counted`). Written before the row is stored.
    Headcount {
        user: String,
        via: &'static str,
        room: String,
        at: String,
        people: u32,
        counted: i32,
        /// The room's occupancy was set to `people` (`[bookings] headcount_resets`).
        #[serde(skip_serializing_if = "std::ops::Not::not")]
        reset: bool,
    },
    /// Head counts were imported from a CSV (`via`: `cli` or `api`): who, how many rows, of
    /// which rooms (at most 64 named), over which times. One line per import, written before
    /// its rows are stored.
    HeadcountImport {
        user: String,
        via: &'static str,
        rows: usize,
        rooms: Vec<String>,
        from: String,
        to: String,
    },
}

impl AuditEvent {
    /// A refused publish, described without its payload.
    pub fn publish_refused(
        client: &str,
        topic: &str,
        reason: &'static str,
        payload: &[u8],
    ) -> AuditEvent {
        AuditEvent::PublishRefused {
            client: field(client),
            topic: field(topic),
            reason,
            payload_bytes: payload.len(),
            payload_sha256: hex::encode(Sha256::digest(payload)),
        }
    }

    /// A refused subscription of an authenticated client (texts cut by [`field`]).
    pub fn subscribe_refused(client: &str, filter: &str) -> AuditEvent {
        AuditEvent::SubscribeRefused {
            client: field(client),
            filter: field(filter),
        }
    }

    /// A protocol error of a logged-in, authenticated client.
    pub fn protocol_error(client: &str, error: &str) -> AuditEvent {
        AuditEvent::ProtocolError {
            client: field(client),
            error: field_of(error, 200),
        }
    }

    /// A SQL statement of kind `statement` run by `user`, reading `tables`.
    pub fn sql_read(user: &str, statement: &'static str, tables: &[String]) -> AuditEvent {
        AuditEvent::Read {
            user: user.chars().take(128).collect(),
            via: "sql",
            statement: Some(statement),
            resource: None,
            tables: bounded(tables),
        }
    }

    /// An API request of `user` for `resource` (the path under `/api/v1/`), reading `tables`.
    pub fn api_read(user: &str, resource: &str, tables: &[&str]) -> AuditEvent {
        let tables: Vec<String> = tables.iter().map(|t| (*t).to_owned()).collect();
        AuditEvent::Read {
            user: user.chars().take(128).collect(),
            via: "api",
            statement: None,
            resource: Some(field_of(resource, 256)),
            tables: bounded(&tables),
        }
    }
}

impl AuditEvent {
    /// A head count of `room` by `user` (texts cut by [`field`]).
    pub fn headcount(
        user: &str,
        via: &'static str,
        room: &str,
        at: String,
        people: u32,
        counted: i32,
        reset: bool,
    ) -> AuditEvent {
        AuditEvent::Headcount {
            user: field(user),
            via,
            room: field(room),
            at,
            people,
            counted,
            reset,
        }
    }

    /// An import of `rows` head counts of `rooms` between `from` and `to`.
    pub fn headcount_import(
        user: &str,
        via: &'static str,
        rows: usize,
        rooms: &[String],
        from: String,
        to: String,
    ) -> AuditEvent {
        AuditEvent::HeadcountImport {
            user: field(user),
            via,
            rows,
            rooms: bounded(rooms),
            from,
            to,
        }
    }
}

/// At most 64 table names of at most 128 characters each: a statement cannot bloat the log.
fn bounded(tables: &[String]) -> Vec<String> {
    tables
        .iter()
        .take(64)
        .map(|t| t.chars().take(128).collect())
        .collect()
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

/// The `prev` of the first line ever written.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// `,"hash":"` + 64 hex digits + `"}`.
const HASH_SUFFIX_LEN: usize = 9 + 64 + 2;

/// Seals a line's JSON text (an object without `hash`): returns the line and its hash.
fn seal(body: &str) -> (String, String) {
    let hash = hex::encode(Sha256::digest(body.as_bytes()));
    let open = body.strip_suffix('}').unwrap_or(body);
    (format!("{open},\"hash\":\"{hash}\"}}"), hash)
}

/// Splits a sealed line into (the text its hash covers, the hash it claims).
fn unseal(line: &str) -> Option<(String, &str)> {
    if line.len() < HASH_SUFFIX_LEN || !line.is_char_boundary(line.len() - HASH_SUFFIX_LEN) {
        return None;
    }
    let (head, suffix) = line.split_at(line.len() - HASH_SUFFIX_LEN);
    let hash = suffix.strip_prefix(",\"hash\":\"")?.strip_suffix("\"}")?;
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    Some((format!("{head}}}"), hash))
}

/// The audit files of a directory, oldest first.
fn files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    out.sort();
    Ok(out)
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("{file}:{line}: {why}")]
    Broken {
        file: String,
        line: usize,
        why: String,
    },
    #[error("cannot read the audit log in {dir}: {message}")]
    Io { dir: PathBuf, message: String },
}

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainReport {
    pub files: usize,
    pub lines: usize,
    /// The hash of the last line (keep it elsewhere to detect a rewrite of the whole tail).
    pub head: String,
}

/// Checks the hash chain of every audit file under `{data}/audit/`, oldest first.
pub fn verify(data_dir: &Path) -> Result<ChainReport, ChainError> {
    let dir = data_dir.join("audit");
    let io = |e: std::io::Error| ChainError::Io {
        dir: dir.clone(),
        message: e.to_string(),
    };
    let mut expected = GENESIS.to_owned();
    let mut lines = 0;
    let files = files(&dir).map_err(io)?;
    for path in &files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let bytes = std::fs::read(path).map_err(io)?;
        let text = String::from_utf8_lossy(&bytes);
        for (i, line) in text.lines().enumerate() {
            let broken = |why: String| ChainError::Broken {
                file: name.clone(),
                line: i + 1,
                why,
            };
            let (body, hash) = unseal(line)
                .ok_or_else(|| broken("the line has no hash: it was changed".into()))?;
            if hex::encode(Sha256::digest(body.as_bytes())) != hash {
                return Err(broken(
                    "the line does not match its hash: it was changed".into(),
                ));
            }
            let prev = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("prev").and_then(|p| p.as_str()).map(str::to_owned))
                .ok_or_else(|| broken("the line has no prev hash: it was changed".into()))?;
            if prev != expected {
                return Err(broken(
                    "the line does not follow the one before it: a line before it was deleted, or this one was inserted"
                        .into(),
                ));
            }
            expected = hash.to_owned();
            lines += 1;
        }
    }
    Ok(ChainReport {
        files: files.len(),
        lines,
        head: expected,
    })
}

/// The hash of the last line of the newest file, to continue the chain after a restart.
fn last_hash(dir: &Path) -> String {
    let Ok(files) = files(dir) else {
        return GENESIS.to_owned();
    };
    for path in files.iter().rev() {
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        if let Some(line) = text.lines().rev().find(|l| !l.trim().is_empty()) {
            // An unsealed last line (torn by a crash) is chained over by its content hash, so
            // `verify` reports it instead of the chain silently restarting.
            return match unseal(line) {
                Some((_, h)) => h.to_owned(),
                None => hex::encode(Sha256::digest(line.as_bytes())),
            };
        }
    }
    GENESIS.to_owned()
}

/// Errors opening or writing the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot write the audit log in {dir}: {source}; check that the data directory is writable and its disk has space"
    )]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Another process holds this audit log: two writers would each chain to their own last
    /// line, and `tellijn audit verify` would report the second as inserted.
    #[error(
        "another Tellijn process (a running server?) writes the audit log in {dir} ({lock} is locked); stop it first, or do this through the running server's API"
    )]
    Held { dir: PathBuf, lock: PathBuf },
}

struct Open {
    date: NaiveDate,
    file: File,
}

struct State {
    open: Option<Open>,
    /// The hash of the last line written.
    last: String,
}

/// Lines the writer's queue holds before `record` waits for room.
pub const QUEUE: usize = 4096;

enum Cmd {
    /// A line to write; the reply, if any, gets the write's result.
    Line {
        at: chrono::DateTime<Utc>,
        event: AuditEvent,
        reply: Option<std::sync::mpsc::Sender<Result<(), AuditError>>>,
    },
    /// Once everything before it is written: fsync, and reply.
    Sync(std::sync::mpsc::Sender<Result<(), AuditError>>),
}

/// An append-only, hash-chained audit log, safe to share between tasks.
pub struct AuditLog {
    dir: PathBuf,
    tx: Mutex<Option<SyncSender<Cmd>>>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Where write failures are reported, once the server has metrics.
    health: Arc<std::sync::OnceLock<Health>>,
    /// `{data}/audit.lock`, locked for as long as this log is open: one process per log.
    _lock: Arc<File>,
}

impl AuditLog {
    /// Opens (creates) `{data}/audit/` and starts its writer thread. Refused with
    /// [`AuditError::Held`] while another process has it open (a running server, for
    /// `tellijn headcounts import` and `tellijn sensor`).
    pub fn open(data_dir: &Path) -> Result<AuditLog, AuditError> {
        let dir = data_dir.join("audit");
        let io = |source| AuditError::Io {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let lock = lock(data_dir, &dir)?;
        let last = last_hash(&dir);
        let health: Arc<std::sync::OnceLock<Health>> = Arc::default();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let writer = Writer {
            dir: dir.clone(),
            state: State { open: None, last },
            health: health.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tellijn-audit".into())
            .spawn(move || writer.run(rx))
            .map_err(io)?;
        Ok(AuditLog {
            dir,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(thread)),
            health,
            _lock: lock,
        })
    }

    /// Reports write failures (and recoveries) to `health` from now on.
    pub fn report_to(&self, health: Health) {
        let _ = self.health.set(health);
    }

    /// The directory holding the log files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn send(&self, cmd: Cmd) -> Result<(), AuditError> {
        let tx = self
            .tx
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .cloned();
        match tx {
            Some(tx) => tx.send(cmd).map_err(|_| self.stopped()),
            None => Err(self.stopped()),
        }
    }

    fn stopped(&self) -> AuditError {
        AuditError::Io {
            dir: self.dir.clone(),
            source: std::io::Error::other("the audit writer has stopped"),
        }
    }

    fn wait(
        &self,
        rx: std::sync::mpsc::Receiver<Result<(), AuditError>>,
    ) -> Result<(), AuditError> {
        rx.recv().unwrap_or_else(|_| Err(self.stopped()))
    }

    /// Queues one event; it is written (in order, chained) by the writer thread. Waits only
    /// while the queue is full. A write failure is logged, counted and shown by `/healthz`;
    /// callers that must know use [`Self::record_confirmed`].
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        self.send(Cmd::Line {
            at: Utc::now(),
            event,
            reply: None,
        })
    }

    /// Writes one event and waits until it is written: for callers that must not go on
    /// without an audit trail (they refuse their request on an error).
    pub fn record_confirmed(&self, event: AuditEvent) -> Result<(), AuditError> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.send(Cmd::Line {
            at: Utc::now(),
            event,
            reply: Some(reply),
        })?;
        self.wait(rx)
    }

    /// Waits until every line queued so far is written and makes them durable.
    pub fn sync(&self) -> Result<(), AuditError> {
        let (reply, rx) = std::sync::mpsc::channel();
        self.send(Cmd::Sync(reply))?;
        self.wait(rx)
    }
}

impl Drop for AuditLog {
    fn drop(&mut self) {
        // Close the queue; the writer writes what is queued and ends.
        drop(self.tx.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(t) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = t.join();
        }
    }
}

pub mod inbox;
mod lock;
use lock::lock;
mod writer;
use writer::Writer;

#[cfg(test)]
mod bound_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod writer_tests;
