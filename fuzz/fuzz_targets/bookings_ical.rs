//! Any bytes as an iCalendar feed (`tellijn-bookings`' `parse_feed`, lossy UTF-8 as a fetched
//! feed is decoded): it returns occurrences or an error, never panics or hangs, and what it
//! returns keeps its promises — sorted by (room, start, end, uid_hash), at most one per
//! (room, start, uid_hash), each overlapping the window with start < end, only mapped rooms,
//! a 32-hex-digit UID hash, within the per-feed cap — and errors have a message.
#![no_main]

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use tellijn_bookings::ical::{FeedMap, MAX_PER_FEED, parse_feed};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let from: DateTime<Utc> = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
    let to: DateTime<Utc> = DateTime::from_timestamp(1_798_761_600, 0).unwrap_or_default(); // 2027-01-01
    let map = BTreeMap::from([
        ("Room 1".to_owned(), "r1".to_owned()),
        ("hall a".to_owned(), "r2".to_owned()),
    ]);
    // One map per input (the first byte's parity), so a worst-case input runs once.
    let m = if data.first().is_some_and(|b| b % 2 == 0) {
        FeedMap::Room("r0")
    } else {
        FeedMap::Locations(&map)
    };
    {
        let p = match parse_feed(&text, m, from, to, chrono_tz::Europe::Amsterdam, b"key") {
            Ok(p) => p,
            Err(e) => {
                assert!(!e.to_string().is_empty(), "an error without a message");
                return;
            }
        };
        assert!(p.occurrences.len() <= MAX_PER_FEED);
        for w in p.occurrences.windows(2) {
            let (a, b) = (&w[0], &w[1]);
            assert!(
                (&a.room, a.start, a.end, &a.uid_hash) <= (&b.room, b.start, b.end, &b.uid_hash),
                "unsorted"
            );
        }
        let mut seen = std::collections::HashSet::new();
        for o in &p.occurrences {
            assert!(o.start < to && o.end > from && o.start < o.end, "{o:?}");
            assert!(["r0", "r1", "r2"].contains(&o.room.as_str()), "{o:?}");
            assert!(o.uid_hash.len() == 32 && o.uid_hash.bytes().all(|c| c.is_ascii_hexdigit()));
            assert!(
                seen.insert((&o.room, o.start, &o.uid_hash)),
                "a duplicate: {o:?}"
            );
        }
    }
});
