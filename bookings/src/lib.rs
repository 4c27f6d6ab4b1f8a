//! # Tellijn bookings: what rooms are booked for, and whether anyone came
//!
//! Room bookings arrive as iCalendar (RFC 5545) feeds, the format every timetabling and
//! calendar system exports. Of each event only the room, start, end, status and a keyed hash
//! of its UID are kept ([`Occurrence`]); titles, descriptions, organisers and attendees are
//! dropped as the feed is parsed and never reach a log, a metric, a file or a message.
//!
//! # Layout
//! - [`ical`]: a feed's text → the occurrences in a window (recurrences expanded with
//!   `rrule` through `icalendar`, Windows zone names mapped by CLDR's table in `localzone`).
//! - [`fetch`]: a feed's bytes over HTTP(S) or from a file, conditional, bounded and timed.
//! - [`live`]: per room, booked now or not, the next booking, no-shows, use without a booking
//!   and open study places, from the occurrences and the room's occupancy over time.

#[cfg(feature = "fetch")]
pub mod fetch;
pub mod ical;
pub mod live;

use chrono::{DateTime, Utc};

/// A booking's status, as stored in the `bookings` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    Confirmed,
    Tentative,
    Cancelled,
}

impl Status {
    /// The spelling in the `bookings` table.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Confirmed => "confirmed",
            Status::Tentative => "tentative",
            Status::Cancelled => "cancelled",
        }
    }

    /// Does it book the room (not cancelled)?
    pub fn books(self) -> bool {
        self != Status::Cancelled
    }
}

/// One occurrence of a booking: everything Tellijn keeps of a calendar event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Occurrence {
    pub room: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: Status,
    /// Hex of a keyed SHA-256 of the event's UID (16 bytes): the same for every occurrence of
    /// a series, not reversible to the UID without the installation's key.
    pub uid_hash: String,
}
