//! A head count that sets a room (`SensorEvent::SetOccupancy`): live, saved with the next
//! flush even when no message follows, and replayed by the day's rebuild from the
//! `headcounts` rows with `reset` true (files from before the column hold none).

use std::sync::Arc;

use arrow::array::{BooleanArray, Int32Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::{DateTime, NaiveDate, Utc};
use prometheus_client::registry::Registry;
use tellijn_config::{AuditLog, Metrics};
use tellijn_wire::{Clock, SensorEvent};

use crate::flush_faults::{campus, line_at as line};
use crate::{Processors, Summary, occupancy, rebuild, schema};

fn open(dir: &std::path::Path, now: DateTime<Utc>) -> Processors {
    let audit = Arc::new(AuditLog::open(dir).unwrap());
    Processors::open(
        campus(),
        dir,
        Metrics::new(&mut Registry::default()),
        Clock::accelerated(now, 1.0),
        audit,
    )
    .unwrap()
}

fn set(people: u32) -> SensorEvent {
    SensorEvent::SetOccupancy {
        room: "r1".into(),
        people,
    }
}

/// A `headcounts` file of one row for r1, with or without the `reset` column.
fn headcount_file(dir: &std::path::Path, at: DateTime<Utc>, people: i32, reset: Option<bool>) {
    let mut fields: Vec<Field> = schema::headcounts()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut columns: Vec<Arc<dyn arrow::array::Array>> = vec![
        Arc::new(StringArray::from(vec!["r1"])),
        Arc::new(TimestampMicrosecondArray::from(vec![at.timestamp_micros()])),
        Arc::new(Int32Array::from(vec![people])),
        Arc::new(StringArray::from(vec!["ada"])),
        Arc::new(Int32Array::from(vec![0])),
    ];
    match reset {
        Some(r) => columns.push(Arc::new(BooleanArray::from(vec![r]))),
        None => {
            fields.pop();
        }
    }
    assert_eq!(
        fields.last().map(|f| f.data_type() == &DataType::Boolean),
        Some(reset.is_some())
    );
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap();
    let path = dir
        .join(schema::HEADCOUNTS)
        .join(format!("date={}", at.date_naive()))
        .join(format!("h-{}-{people}.parquet", at.timestamp_micros()));
    tellijn_tables::write::write_parquet(&path, &batch).unwrap();
}

#[tokio::test]
async fn a_set_room_is_saved_with_the_next_flush_without_a_message_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let now: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
    let mut p = open(dir.path(), now);
    let mut s = Summary::default();
    for seq in 1..=3 {
        p.handle(line(seq, now), &mut s);
    }
    p.flush().await.unwrap();
    assert_eq!(p.engine.room("r1", 0), 3);
    assert!(p.begin_flush().is_none(), "nothing to save yet");

    let out = p.handle(set(1), &mut s);
    assert_eq!(p.engine.room("r1", 0), 1);
    let published = out
        .iter()
        .find(|o| o.topic == "tellijn/v1/rooms/r1/occupancy")
        .expect("r1's occupancy was not published");
    let v: serde_json::Value = serde_json::from_slice(&published.payload).unwrap();
    assert_eq!(v["occupancy"], 1);
    // The periodic flush saves the state although no message came.
    let mut pending = p.begin_flush().expect("the set room was not saved");
    let joined = (&mut pending.task).await;
    p.finish_flush(pending, joined).unwrap();
    assert!(p.begin_flush().is_none(), "saved twice");
    drop(p);
    let p = open(dir.path(), now);
    assert_eq!(p.engine.room("r1", 0), 1, "the restart lost the set number");
}

#[tokio::test]
async fn an_unknown_room_is_not_set() {
    let dir = tempfile::tempdir().unwrap();
    let now: DateTime<Utc> = "2026-11-30T10:00:00Z".parse().unwrap();
    let mut p = open(dir.path(), now);
    let mut s = Summary::default();
    p.flush().await.unwrap();
    assert!(p.begin_flush().is_none());
    let out = p.handle(
        SensorEvent::SetOccupancy {
            room: "nowhere".into(),
            people: 4,
        },
        &mut s,
    );
    assert!(out.is_empty());
    assert!(p.begin_flush().is_none());
}

#[test]
fn the_rebuild_applies_a_set_at_its_time() {
    let dir = tempfile::tempdir().unwrap();
    let day: NaiveDate = "2026-11-30".parse().unwrap();
    let t = |h: u32, m: u32| day.and_hms_opt(h, m, 0).unwrap().and_utc();
    // Four in by 10:00; a head count of 2 at 10:05 that set r1; one more in at 10:10. A plain
    // head count (reset false) and one from before the column existed change nothing.
    let mut buffer = crate::parquet_sink::Buffer::default();
    for (seq, at) in [(1, t(9, 0)), (2, t(9, 30)), (3, t(10, 10))] {
        let SensorEvent::Count { msg, .. } = line(seq, at) else {
            unreachable!()
        };
        let tellijn_wire::CountMessage::Line(mut m) = msg else {
            unreachable!()
        };
        m.people_in = if seq == 3 { 1 } else { m.people_in + 1 };
        buffer.counts.push((m, at));
    }
    buffer.flush(dir.path(), 1).unwrap();
    headcount_file(dir.path(), t(10, 5), 2, Some(true));
    headcount_file(dir.path(), t(10, 7), 40, Some(false));
    headcount_file(dir.path(), t(10, 8), 30, None);
    let campus = campus();
    let (rows, end) = rebuild::rebuild_day(
        dir.path(),
        &campus,
        chrono_tz::Europe::Amsterdam,
        day,
        occupancy::State::default(),
    )
    .unwrap();
    assert_eq!(end.lines.get("r1"), Some(&3), "2 set at 10:05, 1 in after");
    let at = |h, m| {
        rows.iter()
            .find(|r| r.room == "r1" && r.minute == t(h, m).timestamp_micros())
            .map(|r| r.occupancy_max)
    };
    assert_eq!(at(10, 0), Some(4));
    assert_eq!(at(10, 6), Some(2));
    assert_eq!(at(10, 9), Some(2));
    assert_eq!(at(10, 11), Some(3));
}
