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

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};
use std::sync::{Arc, Mutex};

use chrono::{NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::health::Health;
use crate::metrics::storage;
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
    },
    /// A day partition past retention was deleted.
    RetentionDeleted {
        table: &'static str,
        date: String,
        files: usize,
        retention: String,
    },
    /// The server started with a config.
    ConfigLoaded {
        config_sha256: String,
        source: String,
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
}

impl AuditLog {
    /// Opens (creates) `{data}/audit/` and starts its writer thread.
    pub fn open(data_dir: &Path) -> Result<AuditLog, AuditError> {
        let dir = data_dir.join("audit");
        let io = |source| AuditError::Io {
            dir: dir.clone(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
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

/// The writer thread's side: the open file and the chain.
struct Writer {
    dir: PathBuf,
    state: State,
    health: Arc<std::sync::OnceLock<Health>>,
}

impl Writer {
    fn run(mut self, rx: Receiver<Cmd>) {
        for cmd in rx {
            match cmd {
                Cmd::Line { at, event, reply } => {
                    let r = self.write(at, &event);
                    match (reply, r) {
                        (Some(reply), r) => {
                            let _ = reply.send(r);
                        }
                        (None, Err(e)) => tracing::error!("{e}"),
                        (None, Ok(())) => {}
                    }
                }
                Cmd::Sync(reply) => {
                    let r = match self.state.open.as_ref() {
                        Some(o) => o.file.sync_all().map_err(|source| AuditError::Io {
                            dir: self.dir.clone(),
                            source,
                        }),
                        None => Ok(()),
                    };
                    let _ = reply.send(r);
                }
            }
        }
        if let Some(o) = self.state.open.as_ref() {
            let _ = o.file.sync_all();
        }
    }

    fn write(&mut self, now: chrono::DateTime<Utc>, event: &AuditEvent) -> Result<(), AuditError> {
        let line = Line {
            ts: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            event,
            prev: &self.state.last,
        };
        let body = serde_json::to_string(&line).unwrap_or_default();
        let (mut text, hash) = seal(&body);
        text.push('\n');
        let io = |source| AuditError::Io {
            dir: self.dir.clone(),
            source,
        };
        let today = now.date_naive();
        let written = Self::append(&self.dir, &mut self.state, today, text.as_bytes()).map_err(io);
        if let Some(h) = self.health.get() {
            match &written {
                Ok(()) => h.succeeded(storage::AUDIT),
                Err(e) => h.failed(storage::AUDIT, &e.to_string()),
            }
        }
        written?;
        self.state.last = hash;
        Ok(())
    }

    /// Appends `text` to today's file whole, or not at all: a partial write (the disk filled
    /// during it) is cut off again so the next line does not continue a torn one.
    fn append(dir: &Path, guard: &mut State, today: NaiveDate, text: &[u8]) -> std::io::Result<()> {
        if guard.open.as_ref().map(|o| o.date) != Some(today) {
            // The day rolled over: the finished file is made durable before it is let go
            // (it was synced only at stop before), and the new file's name with its directory.
            if let Some(old) = guard.open.take() {
                old.file.sync_all()?;
            }
            let path = dir.join(format!("{today}.jsonl"));
            let file = OpenOptions::new().create(true).append(true).open(path)?;
            std::fs::File::open(dir)?.sync_all()?;
            guard.open = Some(Open { date: today, file });
        }
        let Some(o) = guard.open.as_mut() else {
            return Err(std::io::Error::other("the audit file is not open"));
        };
        let before = o.file.metadata()?.len();
        if let Err(e) = o.file.write_all(text) {
            if o.file.set_len(before).is_err() {
                // Cannot even cut it: reopen next time, and let `verify` name the torn line.
                guard.open = None;
            }
            return Err(e);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refused_publish_carries_no_payload() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let secret = b"FACE-OF-A-STUDENT-4711";
        log.record(AuditEvent::publish_refused(
            "cam-1",
            "tellijn/v1/sensors/cam-1/counts",
            "not_json",
            secret,
        ))
        .unwrap();
        log.sync().unwrap();
        let files: Vec<_> = std::fs::read_dir(log.dir()).unwrap().collect();
        assert_eq!(files.len(), 1);
        let text = std::fs::read_to_string(files[0].as_ref().unwrap().path()).unwrap();
        assert!(!text.contains("FACE"), "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["event"], "publish_refused");
        assert_eq!(v["reason"], "not_json");
        assert_eq!(v["payload_bytes"], 22);
        assert_eq!(v["payload_sha256"], hex::encode(Sha256::digest(secret)));
    }

    #[test]
    fn a_read_names_who_when_and_which_tables() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        log.record(AuditEvent::sql_read(
            "ada",
            "query",
            &["occupancy".to_owned(), "rooms".to_owned()],
        ))
        .unwrap();
        log.record(AuditEvent::api_read(
            "vic",
            "rooms/r1/history",
            &["occupancy"],
        ))
        .unwrap();
        log.sync().unwrap();
        let text = std::fs::read_to_string(
            dir.path()
                .join(format!("audit/{}.jsonl", Utc::now().date_naive())),
        )
        .unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k.join(",")
        };
        assert_eq!(
            keys(&lines[0]),
            "event,hash,prev,statement,tables,ts,user,via"
        );
        assert_eq!(
            keys(&lines[1]),
            "event,hash,prev,resource,tables,ts,user,via"
        );
        assert_eq!(lines[0]["event"], "read");
        assert_eq!(lines[0]["via"], "sql");
        assert_eq!(
            lines[0]["tables"],
            serde_json::json!(["occupancy", "rooms"])
        );
        assert_eq!(lines[1]["via"], "api");
        assert_eq!(lines[1]["resource"], "rooms/r1/history");
        assert!(verify(dir.path()).is_ok());
        // A statement naming thousands of tables cannot bloat the log.
        let many: Vec<String> = (0..1000)
            .map(|i| format!("t{i}{}", "x".repeat(500)))
            .collect();
        let AuditEvent::Read { tables, .. } = AuditEvent::sql_read("ada", "query", &many) else {
            unreachable!()
        };
        assert_eq!(tables.len(), 64);
        assert!(tables.iter().all(|t| t.chars().count() == 128));
    }

    fn event(n: usize) -> AuditEvent {
        AuditEvent::ConfigLoaded {
            config_sha256: format!("{n:064}"),
            source: format!("test {n}"),
        }
    }

    /// A log of `n` lines over two files (yesterday's and today's) written by two opens.
    fn chained(n: usize) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in 0..n / 2 {
            log.record(event(i)).unwrap();
        }
        drop(log);
        // Yesterday's file: the same lines as if written a day earlier.
        let today = dir
            .path()
            .join(format!("audit/{}.jsonl", Utc::now().date_naive()));
        let yesterday = dir.path().join(format!(
            "audit/{}.jsonl",
            Utc::now().date_naive().pred_opt().unwrap()
        ));
        std::fs::rename(&today, &yesterday).unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for i in n / 2..n {
            log.record(event(i)).unwrap();
        }
        (dir, today)
    }

    fn edit(path: &Path, f: impl FnOnce(&mut Vec<String>)) {
        let text = std::fs::read_to_string(path).unwrap();
        let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
        f(&mut lines);
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }

    #[test]
    fn the_chain_runs_across_files_and_restarts() {
        let (dir, _) = chained(6);
        let r = verify(dir.path()).unwrap();
        assert_eq!((r.files, r.lines), (2, 6));
        assert_ne!(r.head, GENESIS);
        // The first line starts the chain.
        let files = files(&dir.path().join("audit")).unwrap();
        let first = std::fs::read_to_string(&files[0]).unwrap();
        assert!(first.lines().next().unwrap().contains(GENESIS));
        // An empty log is an intact chain.
        let empty = tempfile::tempdir().unwrap();
        AuditLog::open(empty.path()).unwrap();
        assert_eq!(verify(empty.path()).unwrap().lines, 0);
    }

    fn broken_at(dir: &Path) -> (String, usize, String) {
        match verify(dir) {
            Err(ChainError::Broken { file, line, why }) => (file, line, why),
            other => panic!("not broken: {other:?}"),
        }
    }

    #[test]
    fn a_changed_line_is_named() {
        let (dir, today) = chained(6);
        edit(&today, |l| l[1] = l[1].replace("test 4", "test 9"));
        let (file, line, why) = broken_at(dir.path());
        assert!(file.ends_with(".jsonl") && today.ends_with(&file));
        assert_eq!(line, 2);
        assert!(why.contains("changed"), "{why}");
    }

    #[test]
    fn a_deleted_line_is_named() {
        let (dir, today) = chained(6);
        edit(&today, |l| {
            l.remove(0);
        });
        let (_, line, why) = broken_at(dir.path());
        assert_eq!(line, 1);
        assert!(why.contains("deleted"), "{why}");
    }

    #[test]
    fn an_inserted_line_is_named() {
        let (dir, today) = chained(6);
        // A well-formed line copied from elsewhere, sealed and all.
        edit(&today, |l| {
            let copy = l[0].clone();
            l.insert(2, copy);
        });
        let (_, line, why) = broken_at(dir.path());
        assert_eq!(line, 3);
        assert!(why.contains("inserted"), "{why}");
        // A forged line with a correct hash but the wrong predecessor is found as well.
        let (dir, today) = chained(4);
        edit(&today, |l| {
            let (forged, _) = seal(&format!(
                "{{\"ts\":\"2026-01-01T00:00:00Z\",\"event\":\"config_loaded\",\"prev\":\"{GENESIS}\"}}"
            ));
            l.insert(1, forged);
        });
        assert_eq!(broken_at(dir.path()).1, 2);
    }
}

#[cfg(test)]
mod bound_tests {
    use super::*;
    use crate::refusals::{CUT, FIELD_MAX};

    #[test]
    fn attacker_chosen_fields_are_cut_in_every_line() {
        let long = format!("{}\n\"}}", "t".repeat(3000));
        let events = [
            AuditEvent::publish_refused(&long, &long, "not_json", b"x"),
            AuditEvent::subscribe_refused(&long, &long),
            AuditEvent::protocol_error(&long, &long),
        ];
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        for e in events {
            log.record(e).unwrap();
        }
        log.sync().unwrap();
        let text = std::fs::read_to_string(
            dir.path()
                .join(format!("audit/{}.jsonl", Utc::now().date_naive())),
        )
        .unwrap();
        assert_eq!(text.lines().count(), 3);
        for line in text.lines() {
            assert!(line.len() < 700, "{} bytes: {line}", line.len());
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let client = v["client"].as_str().unwrap();
            assert_eq!(client.chars().count(), FIELD_MAX + 1);
            assert!(client.ends_with(CUT));
        }
        assert_eq!(verify(dir.path()).unwrap().lines, 3);
    }
}

#[cfg(test)]
mod writer_tests {
    use super::*;

    /// `record` only queues; a line that cannot be written is reported at once to a confirmed
    /// caller (and to the log and `/healthz` for the others).
    #[test]
    fn a_failed_write_is_reported_to_confirmed_callers() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        let event = || AuditEvent::api_read("vic", "rooms", &["rooms"]);
        log.record(event()).unwrap();
        log.sync().unwrap();
        // The audit directory becomes unwritable: a file where it was, and a new UTC day
        // cannot be opened either. Force a reopen by pretending the day rolled over.
        let audit = dir.path().join("audit");
        std::fs::remove_dir_all(&audit).unwrap();
        std::fs::write(&audit, b"").unwrap();
        let (reply, rx) = std::sync::mpsc::channel();
        log.send(Cmd::Line {
            at: Utc::now() + chrono::TimeDelta::days(1),
            event: event(),
            reply: Some(reply),
        })
        .unwrap();
        let e = rx
            .recv()
            .unwrap()
            .expect_err("the failed line was reported as written");
        assert_eq!(
            e.to_string().matches("cannot write the audit log").count(),
            1,
            "{e}"
        );
        std::fs::remove_file(&audit).unwrap();
        std::fs::create_dir(&audit).unwrap();
        log.record_confirmed(event()).unwrap();
    }
}
