//! Any bytes as a head-count CSV (`tellijn headcounts import`, `POST /api/v1/headcounts`) and
//! as the JSON body of `POST /api/v1/rooms/{id}/headcounts`: parsing never panics, and what is
//! accepted is within bounds — at most MAX_ROWS rows, valid room ids, people 0..=MAX_PEOPLE,
//! times from 2000 to a minute after now — and writes back to the same rows.
#![no_main]

use chrono::DateTime;
use libfuzzer_sys::fuzz_target;
use tellijn_wire::headcount::{
    EARLIEST, MAX_AGE, MAX_AHEAD, MAX_PEOPLE, MAX_ROWS, parse_body, parse_csv, to_csv,
};

fuzz_target!(|data: &[u8]| {
    let now = DateTime::from_timestamp(1_795_348_800, 0).unwrap_or_default(); // 2026-11-22T08:00Z
    if let Ok(b) = parse_body(data, now) {
        assert!(b.people <= MAX_PEOPLE, "{b:?}");
        assert!(b.at <= now + MAX_AHEAD && b.at >= now - MAX_AGE, "{b:?}");
        // A reset is only ever of now.
        assert!(!b.reset || (now - b.at).num_seconds().abs() <= 60, "{b:?}");
    }
    let Ok(rows) = parse_csv(data, now) else {
        return;
    };
    assert!(rows.len() <= MAX_ROWS);
    for r in &rows {
        assert!(tellijn_wire::is_valid_id(&r.room), "{r:?}");
        assert!(r.people <= MAX_PEOPLE, "{r:?}");
        assert!(
            r.at <= now + MAX_AHEAD && r.at.timestamp() >= EARLIEST,
            "{r:?}"
        );
    }
    assert_eq!(parse_csv(to_csv(&rows).as_bytes(), now).as_ref(), Ok(&rows));
});
