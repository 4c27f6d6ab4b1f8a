//! The retained booking topic `tellijn/v1/rooms/{room}/booking` and what the API shows of it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use tellijn_bookings::live::RoomState;

/// The payload of `tellijn/v1/rooms/{room}/booking` (times UTC RFC 3339, absent when none).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookingNow {
    pub room: String,
    pub booked: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub no_show: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_start: Option<String>,
    /// Occupied for at least `no_show_after` without a booking.
    #[serde(default)]
    pub in_use_unbooked: bool,
    /// Listed as an open study place.
    #[serde(default)]
    pub study_place: bool,
    /// Until when an open study place is free (absent: nothing booked ahead).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free_until: Option<String>,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl From<&RoomState> for BookingNow {
    fn from(s: &RoomState) -> BookingNow {
        BookingNow {
            room: s.room.clone(),
            booked: s.booked,
            start: s.start.map(rfc3339),
            end: s.end.map(rfc3339),
            no_show: s.no_show,
            next_start: s.next_start.map(rfc3339),
            in_use_unbooked: s.in_use_unbooked,
            study_place: s.study_place.is_some(),
            free_until: s.study_place.flatten().map(rfc3339),
        }
    }
}

/// The topic of a room's booking state.
pub fn topic(room: &str) -> String {
    format!("{}rooms/{room}/booking", tellijn_wire::topic::PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_has_the_contract_fields_and_leaves_out_absent_times() {
        let s = RoomState {
            room: "hall-a".into(),
            booked: true,
            start: Some("2026-12-01T09:00:00Z".parse().unwrap()),
            end: Some("2026-12-01T10:45:00Z".parse().unwrap()),
            no_show: true,
            next_start: None,
            in_use_unbooked: false,
            study_place: None,
        };
        let v: serde_json::Value = serde_json::to_value(BookingNow::from(&s)).expect("serialises");
        assert_eq!(
            v,
            serde_json::json!({"room":"hall-a","booked":true,"start":"2026-12-01T09:00:00Z",
                "end":"2026-12-01T10:45:00Z","no_show":true,"in_use_unbooked":false,
                "study_place":false})
        );
        assert_eq!(topic("hall-a"), "tellijn/v1/rooms/hall-a/booking");
    }
}
