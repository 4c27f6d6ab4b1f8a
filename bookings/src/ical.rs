//! A feed's text → the occurrences that overlap a window. (Being written: see issue 19.)

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use crate::Occurrence;

/// Which room a feed's events book.
#[derive(Debug, Clone, Copy)]
pub enum FeedMap<'a> {
    /// Every event books this room (a room mailbox's calendar).
    Room(&'a str),
    /// `LOCATION` (trimmed, case-insensitive) → room id (a timetable of many rooms).
    Locations(&'a BTreeMap<String, String>),
}

/// What a feed gave.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed {
    /// Sorted by (room, start, end, uid_hash); at most one per (room, start, uid_hash).
    pub occurrences: Vec<Occurrence>,
    /// Events left out, by reason (e.g. `unmapped_location`, `transparent`, `no_start`,
    /// `bad_time`, `too_many_occurrences`): counted, never logged with their content.
    pub skipped: BTreeMap<&'static str, u64>,
}

/// A feed that cannot be read at all. Messages name positions and property names, never an
/// event's text.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedError {
    #[error("not an iCalendar feed: {0}")]
    NotICalendar(String),
}

/// Parses `text` and returns every occurrence overlapping `[from, to)`. Floating times and
/// all-day dates are read in `tz` (the campus time zone); `key` keys the UID hash.
pub fn parse_feed(
    text: &str,
    map: FeedMap<'_>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    tz: Tz,
    key: &[u8],
) -> Result<Parsed, FeedError> {
    let _ = (text, map, from, to, tz, key);
    Err(FeedError::NotICalendar("not yet built".into()))
}
