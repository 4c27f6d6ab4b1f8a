//! The writer thread reports what it could not write.

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
