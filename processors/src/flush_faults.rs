//! Faults injected into a flush (test only): what a failing or panicking write may never do.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeDelta, Utc};
use prometheus_client::registry::Registry;
use tellijn_config::{AuditLog, Campus, Metrics};
use tellijn_wire::{Clock, CountMessage, LineCount, SensorEvent};

use crate::parquet_sink::PANIC_AFTER_FIRST_FILE;
use crate::{Processors, Summary};

pub(crate) fn campus() -> Arc<Campus> {
    let text = tellijn_test_support::CampusToml::new()
        .building("b", "B")
        .room("r1", "b", "Hall", "study", 50)
        .with("public = true")
        .line_sensor("s1", tellijn_test_support::HASH, &[("main", "r1", None)])
        .toml();
    Arc::new(Campus::parse(&text, "test").unwrap())
}

fn line(seq: u64) -> SensorEvent {
    line_at(seq, Utc::now())
}

/// A line count of `s1` with this seq, ending at `end`.
pub(crate) fn line_at(seq: u64, end: chrono::DateTime<Utc>) -> SensorEvent {
    SensorEvent::Count {
        msg: CountMessage::Line(LineCount {
            sensor: "s1".into(),
            line: "main".into(),
            seq,
            start: end - TimeDelta::seconds(1),
            end,
            people_in: 1,
            people_out: 0,
        }),
        received: end,
        at: Instant::now(),
    }
}

pub(crate) fn parquet_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out
}

/// Regression (issue 17, finding 4): when the flush thread panicked, its buffer was replaced by
/// an empty one while dedup already counted its messages, and the next flush acknowledged rows
/// that were never written.
#[tokio::test]
async fn a_panicking_flush_keeps_its_messages_and_acknowledges_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
    let mut p = Processors::open(
        campus(),
        dir.path(),
        Metrics::new(&mut reg),
        Clock::system(),
        audit,
    )
    .unwrap();
    let mut s = Summary::default();
    p.handle(line(1), &mut s);
    p.handle(line(2), &mut s);
    PANIC_AFTER_FIRST_FILE
        .lock()
        .unwrap()
        .push(dir.path().to_path_buf());
    let failed = p.flush().await;
    PANIC_AFTER_FIRST_FILE
        .lock()
        .unwrap()
        .retain(|d| d != dir.path());
    let e = failed.expect_err("a panicking flush reported success");
    assert!(e.to_string().contains("panicked"), "{e}");
    assert!(
        parquet_files(dir.path()).is_empty(),
        "the panicking flush left {:?}",
        parquet_files(dir.path())
    );
    // The retry writes both messages, once, and only then acknowledges them.
    let acks = p.flush().await.unwrap();
    let ack = acks
        .iter()
        .find(|o| o.topic == "tellijn/v1/sensors/s1/ack")
        .map(|o| String::from_utf8_lossy(&o.payload).into_owned());
    assert_eq!(ack.as_deref(), Some(r#"{"seq":2}"#));
    let files = parquet_files(&dir.path().join("counts"));
    assert_eq!(files.len(), 1, "{files:?}");
    let reader =
        parquet::file::reader::SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap())
            .unwrap();
    use parquet::file::reader::FileReader;
    assert_eq!(reader.metadata().file_metadata().num_rows(), 2);
}
