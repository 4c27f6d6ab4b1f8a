//! The Parquet history's tables: their Arrow schemas, shared with the query side.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Directory (under the data dir) and SQL name of the accepted line messages.
pub const COUNTS: &str = "counts";
/// Directory and SQL name of the accepted zone messages.
pub const ZONE_COUNTS: &str = "zone_counts";

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, None)
}

/// `counts(sensor, line, seq, start, end, people_in, people_out, received)`.
pub fn counts() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Utf8, false),
        Field::new("line", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("start", ts(), false),
        Field::new("end", ts(), false),
        Field::new("people_in", DataType::Int32, false),
        Field::new("people_out", DataType::Int32, false),
        Field::new("received", ts(), false),
    ]))
}

/// `zone_counts(sensor, zone, seq, at, people, received)`.
pub fn zone_counts() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("sensor", DataType::Utf8, false),
        Field::new("zone", DataType::Utf8, false),
        Field::new("seq", DataType::Int64, false),
        Field::new("at", ts(), false),
        Field::new("people", DataType::Int32, false),
        Field::new("received", ts(), false),
    ]))
}

/// Directory and SQL name of the per-minute occupancy history.
pub const OCCUPANCY: &str = "occupancy";

/// `occupancy(room, building, minute, people_in, people_out, occupancy_min, occupancy_avg,
/// occupancy_max, capacity)`.
pub fn occupancy() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("room", DataType::Utf8, false),
        Field::new("building", DataType::Utf8, false),
        Field::new("minute", ts(), false),
        Field::new("people_in", DataType::Int32, false),
        Field::new("people_out", DataType::Int32, false),
        Field::new("occupancy_min", DataType::Int32, false),
        Field::new("occupancy_avg", DataType::Float64, false),
        Field::new("occupancy_max", DataType::Int32, false),
        Field::new("capacity", DataType::Int32, false),
    ]))
}

/// Directory and SQL name of the booking occurrences (from the `[[calendars]]` feeds).
pub const BOOKINGS: &str = "bookings";

/// `bookings(room, start, end, status, no_show, uid_hash)`: one row per occurrence, recurrences
/// expanded, partitioned by the UTC date of `start`. `status` is `confirmed`, `tentative` or
/// `cancelled`; `no_show` is null until `no_show_after` has passed after the start (and for
/// cancelled occurrences), then true or false. `uid_hash` is a keyed hash of the event's UID
/// (the same for every occurrence of a series); nothing else of an event is kept.
pub fn bookings() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("room", DataType::Utf8, false),
        Field::new("start", ts(), false),
        Field::new("end", ts(), false),
        Field::new("status", DataType::Utf8, false),
        Field::new("no_show", DataType::Boolean, true),
        Field::new("uid_hash", DataType::Utf8, false),
    ]))
}

/// Directory and SQL name of the manual head counts.
pub const HEADCOUNTS: &str = "headcounts";

/// `headcounts(room, at, people, recorded_by, counted, reset)`: a person's count of a room at
/// `at`, who recorded it (a configured user name), the occupancy Tellijn had for the room at
/// that moment (`counted`, the figure the accuracy reports compare against), and whether the
/// count also set the room's occupancy (`reset`).
pub fn headcounts() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("room", DataType::Utf8, false),
        Field::new("at", ts(), false),
        Field::new("people", DataType::Int32, false),
        Field::new("recorded_by", DataType::Utf8, false),
        Field::new("counted", DataType::Int32, false),
        // True when the head count also set the room's occupancy (`[bookings]
        // headcount_resets`); null in files written before the column existed.
        Field::new("reset", DataType::Boolean, true),
    ]))
}
