//! The writer thread: owns the open file and the chain, writes lines in queue order, and
//! cuts a line that could not be written whole.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::Receiver;

use chrono::{NaiveDate, SecondsFormat, Utc};

use super::{AuditError, AuditEvent, Cmd, Line, Open, State, seal};
use crate::health::Health;
use crate::metrics::storage;

/// The writer thread's side: the open file and the chain.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) state: State,
    pub(super) health: Arc<std::sync::OnceLock<Health>>,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Cmd>) {
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
