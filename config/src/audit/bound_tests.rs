//! Bounds on attacker-chosen fields in every line.

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
