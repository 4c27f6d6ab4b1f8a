//! The janitor beside the loop: a finished day is compacted and rebuilt while the loop keeps
//! taking counts (it used to wait for an empty buffer, which steady load never gives).

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use prometheus_client::registry::Registry;
use tellijn_config::{AuditLog, Metrics};
use tellijn_wire::Clock;

use crate::flush_faults::{campus, line_at as line, parquet_files};
use crate::{Processors, Summary, occupancy, rebuild};

fn open(dir: &std::path::Path, now: DateTime<Utc>) -> Processors {
    let audit = Arc::new(AuditLog::open(dir).unwrap());
    let clock = Clock::accelerated(now, 1.0);
    Processors::open(
        campus(),
        dir,
        Metrics::new(&mut Registry::default()),
        clock,
        audit,
    )
    .unwrap()
}

#[tokio::test]
async fn a_finished_day_is_rebuilt_while_counts_are_buffered() {
    let dir = tempfile::tempdir().unwrap();
    let day: NaiveDate = "2026-11-30".parse().unwrap();
    let evening = day.and_hms_opt(21, 0, 0).unwrap().and_utc();
    // Two flushes of the day: two files to compact.
    let mut p = open(dir.path(), evening);
    let mut s = Summary::default();
    for seq in 1..=2 {
        p.handle(line(seq, evening + TimeDelta::minutes(seq as i64)), &mut s);
        p.flush().await.unwrap();
    }
    drop(p);
    let start = serde_json::to_vec(&occupancy::State::default()).unwrap();
    tellijn_durable::write_atomic(&rebuild::snapshot_path(dir.path(), day), &start).unwrap();
    assert_eq!(parquet_files(&dir.path().join("counts")).len(), 2);

    let next = (day + TimeDelta::days(1))
        .and_hms_opt(0, 20, 0)
        .unwrap()
        .and_utc();
    let mut p = open(dir.path(), next);
    p.handle(line(3, next), &mut s);
    assert!(!p.buffer.is_empty());
    p.housekeeping();
    p.housekeeping_idle().await;
    let counts = dir.path().join("counts").join(format!("date={day}"));
    assert_eq!(parquet_files(&counts).len(), 1, "the day was not compacted");
    let occupancy = dir.path().join("occupancy").join(format!("date={day}"));
    assert_eq!(
        parquet_files(&occupancy).len(),
        1,
        "the day was not rebuilt"
    );
    assert!(
        dir.path()
            .join("state/rebuilt")
            .join(day.to_string())
            .exists()
    );
    // The buffered count of the new day is untouched and written by the next flush.
    assert!(!p.buffer.is_empty());
    p.flush().await.unwrap();
    let today = dir
        .path()
        .join("counts")
        .join(format!("date={}", next.date_naive()));
    assert_eq!(parquet_files(&today).len(), 1);
}
