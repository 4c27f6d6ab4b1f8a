//! Audit lines of a command run while a server holds the log (`tellijn sensor add` before a
//! reload): queued in `{data}/audit/inbox/`, one file each, and recorded by the server — in
//! the order they were queued, each as a [`AuditEvent::Queued`] line in the one chain — when
//! it starts or reloads. A second writer would fork the chain; the inbox keeps one writer.
//!
//! Whoever can write the inbox can write the data directory, and so the log itself: the inbox
//! adds no way in. A file that is not a queued event (too large, not JSON) is recorded as
//! unreadable, by name and size, never by content, and removed.

use std::path::{Path, PathBuf};

use chrono::{SecondsFormat, Utc};

use super::{AuditError, AuditEvent, AuditLog};

/// The largest queued event read (a provisioning line is a few hundred bytes).
const MAX_BYTES: u64 = 64 * 1024;

fn dir_of(audit_dir: &Path) -> PathBuf {
    audit_dir.join("inbox")
}

/// Queues `event` for the server that holds the audit log of `data_dir`; durable when this
/// returns. Returns the file written.
pub fn queue(data_dir: &Path, event: &AuditEvent) -> Result<PathBuf, AuditError> {
    let dir = dir_of(&data_dir.join("audit"));
    let io = |source| AuditError::Io {
        dir: dir.clone(),
        source,
    };
    let now = Utc::now();
    let body = serde_json::json!({
        "queued_at": now.to_rfc3339_opts(SecondsFormat::Micros, true),
        "event": event,
    });
    let bytes = serde_json::to_vec(&body).map_err(|e| io(std::io::Error::other(e)))?;
    let path = dir.join(format!(
        "{:020}-{}.json",
        now.timestamp_micros().max(0),
        std::process::id()
    ));
    tellijn_durable::write_atomic(&path, &bytes).map_err(io)?;
    Ok(path)
}

/// One queued file as the line to record.
fn read(path: &Path) -> AuditEvent {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unreadable = |why: &str| AuditEvent::Queued {
        queued_at: String::new(),
        queued: serde_json::json!({ "unreadable": crate::refusals::field(&name), "why": why }),
    };
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(_) => return unreadable("cannot be read"),
    };
    if size > MAX_BYTES {
        return unreadable("too large");
    }
    let Ok(bytes) = std::fs::read(path) else {
        return unreadable("cannot be read");
    };
    let Ok(serde_json::Value::Object(mut v)) = serde_json::from_slice(&bytes) else {
        return unreadable("not a queued event");
    };
    match (v.remove("queued_at"), v.remove("event")) {
        (Some(serde_json::Value::String(at)), Some(event @ serde_json::Value::Object(_))) => {
            AuditEvent::Queued {
                queued_at: at,
                queued: event,
            }
        }
        _ => unreadable("not a queued event"),
    }
}

impl AuditLog {
    /// Records every queued event, oldest first, each confirmed before its file is removed.
    /// Returns how many were recorded.
    pub fn take_inbox(&self) -> Result<usize, AuditError> {
        let dir = dir_of(&self.dir);
        let io = |source| AuditError::Io {
            dir: dir.clone(),
            source,
        };
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(io(e)),
        };
        files.sort();
        for f in &files {
            self.record_confirmed(read(f))?;
            std::fs::remove_file(f).map_err(io)?;
        }
        if !files.is_empty() {
            tellijn_durable::sync_dir(&dir).map_err(io)?;
        }
        Ok(files.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_events_are_recorded_once_in_order_and_junk_by_name_only() {
        let dir = tempfile::tempdir().unwrap();
        let event = |n: &str| AuditEvent::SensorProvisioned {
            sensor: n.into(),
            action: "add".into(),
            source: "campus.toml".into(),
            config_sha256: "abc".into(),
        };
        // Queued while the log is held by someone else (here: not opened at all yet).
        queue(dir.path(), &event("s1")).unwrap();
        queue(dir.path(), &event("s2")).unwrap();
        let inbox = dir.path().join("audit").join("inbox");
        std::fs::write(
            inbox.join("99999999999999999999-1.json"),
            "secret-looking junk",
        )
        .unwrap();
        std::fs::write(inbox.join(".x.json.tmp"), "half written").unwrap();
        let log = AuditLog::open(dir.path()).unwrap();
        assert_eq!(log.take_inbox().unwrap(), 3);
        assert_eq!(log.take_inbox().unwrap(), 0, "recorded once");
        log.sync().unwrap();
        drop(log);
        let text: String = std::fs::read_dir(dir.path().join("audit"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "jsonl"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let queued: Vec<&serde_json::Value> =
            lines.iter().filter(|l| l["event"] == "queued").collect();
        assert_eq!(queued.len(), 3, "{lines:?}");
        assert_eq!(queued[0]["queued"]["sensor"], "s1");
        assert_eq!(queued[1]["queued"]["sensor"], "s2");
        assert_eq!(queued[2]["queued"]["why"], "not a queued event");
        assert!(
            !text.contains("secret-looking"),
            "junk is named, never copied"
        );
        assert!(
            inbox.join(".x.json.tmp").exists(),
            "a temporary file is not an event"
        );
        assert!(crate::audit::verify(dir.path()).is_ok(), "one intact chain");
    }
}
