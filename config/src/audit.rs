//! The audit log: one JSON object per line in `{data}/audit/YYYY-MM-DD.jsonl` (UTC date of the
//! event). It records who was refused what and why — never a payload: a refused payload is
//! described by its size and SHA-256 only.
//!
//! Lines are written and flushed to the OS as they happen; `sync` (called on shutdown) makes
//! them durable.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use chrono::{NaiveDate, SecondsFormat, Utc};
use serde::Serialize;
use sha2::{Digest, Sha256};

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
    /// A subscription was refused.
    SubscribeRefused { client: String, filter: String },
    /// A gap in a sensor's seqs was given up as lost after the gap horizon.
    SeqGapLost {
        sensor: String,
        first: u64,
        last: u64,
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
            client: client.chars().take(128).collect(),
            topic: topic.chars().take(256).collect(),
            reason,
            payload_bytes: payload.len(),
            payload_sha256: hex::encode(Sha256::digest(payload)),
        }
    }
}

#[derive(Serialize)]
struct Line<'a> {
    ts: String,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

/// Errors opening or writing the audit log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error(
        "cannot write the audit log in {dir}: {source}; check that the data directory is writable"
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

/// An append-only audit log, safe to share between tasks.
pub struct AuditLog {
    dir: PathBuf,
    open: Mutex<Option<Open>>,
}

impl AuditLog {
    /// Opens (creates) `{data}/audit/`.
    pub fn open(data_dir: &Path) -> Result<AuditLog, AuditError> {
        let dir = data_dir.join("audit");
        std::fs::create_dir_all(&dir).map_err(|source| AuditError::Io {
            dir: dir.clone(),
            source,
        })?;
        Ok(AuditLog {
            dir,
            open: Mutex::new(None),
        })
    }

    /// The directory holding the log files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one event. A failure is logged, never fatal to the caller's request, and
    /// returned so a caller that must not go on without an audit trail can stop.
    pub fn record(&self, event: AuditEvent) -> Result<(), AuditError> {
        let now = Utc::now();
        let line = Line {
            ts: now.to_rfc3339_opts(SecondsFormat::Micros, true),
            event: &event,
        };
        let mut text = serde_json::to_string(&line).unwrap_or_default();
        text.push('\n');
        let mut guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let io = |source| AuditError::Io {
            dir: self.dir.clone(),
            source,
        };
        let today = now.date_naive();
        if guard.as_ref().map(|o| o.date) != Some(today) {
            let path = self.dir.join(format!("{today}.jsonl"));
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(io)?;
            *guard = Some(Open { date: today, file });
        }
        if let Some(o) = guard.as_mut() {
            o.file.write_all(text.as_bytes()).map_err(io)?;
        }
        Ok(())
    }

    /// Makes every written line durable.
    pub fn sync(&self) -> Result<(), AuditError> {
        let guard = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(o) = guard.as_ref() {
            o.file.sync_all().map_err(|source| AuditError::Io {
                dir: self.dir.clone(),
                source,
            })?;
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
}
