//! What audit lines carry, and the tamper-evident chain.

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

/// One process per log: within a process the log may be opened again (a server stopped and
/// started in a test or the demo) and the chain stays intact. Another process is refused:
/// `tests/e2e/headcounts_e2e.rs` and `tests/e2e/provision_e2e.rs` run the CLI while a server runs.
#[test]
fn a_log_reopened_in_its_own_process_keeps_its_chain() {
    let dir = tempfile::tempdir().unwrap();
    let first = AuditLog::open(dir.path()).unwrap();
    first
        .record(AuditEvent::SubscribeRefused {
            client: "c".into(),
            filter: "#".into(),
        })
        .unwrap();
    first.sync().unwrap();
    drop(first);
    let again = AuditLog::open(dir.path()).unwrap();
    again
        .record(AuditEvent::SubscribeRefused {
            client: "d".into(),
            filter: "#".into(),
        })
        .unwrap();
    again.sync().unwrap();
    assert_eq!(verify(dir.path()).unwrap().lines, 2);
    assert!(dir.path().join("audit.lock").exists());
}
