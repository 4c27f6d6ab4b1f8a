//! The current occupancy of every room and building, as the processors last published it.
//!
//! The HTTP API and the free-places page read this; it is fed from the same retained outputs
//! that go to the broker (`tellijn/v1/rooms/{room}/occupancy`, `…/state`,
//! `tellijn/v1/buildings/{building}/occupancy`, and the bookings' `…/rooms/{room}/booking`), so
//! the API and MQTT never disagree.

use std::collections::HashMap;
use std::sync::RwLock;

use tellijn_processors::Output;
use tellijn_wire::topic::PREFIX;

/// A room's or building's latest numbers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Now {
    pub occupancy: u64,
    /// When the processors last computed it (RFC 3339), as in the retained payload.
    pub ts: Option<String>,
    /// For rooms: `Some(true)` when the HVAC state is occupied.
    pub occupied: Option<bool>,
    /// For rooms with a calendar: the booking state (`tellijn/v1/rooms/{room}/booking`).
    pub booking: Option<crate::bookings::payload::BookingNow>,
}

/// Latest numbers, keyed by id.
#[derive(Debug, Default)]
pub struct Live {
    rooms: RwLock<HashMap<String, Now>>,
    buildings: RwLock<HashMap<String, Now>>,
}

fn occupancy_of(payload: &[u8]) -> Option<(u64, Option<String>)> {
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    let n = v.get("occupancy")?.as_u64()?;
    let ts = v.get("ts").and_then(|t| t.as_str()).map(str::to_owned);
    Some((n, ts))
}

impl Live {
    /// Takes in one retained output of the processors; other topics are ignored.
    pub fn apply(&self, o: &Output) {
        let Some(rest) = o.topic.strip_prefix(PREFIX) else {
            return;
        };
        let mut parts = rest.split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("rooms"), Some(id), Some("occupancy"), None) => {
                if let Some((n, ts)) = occupancy_of(&o.payload) {
                    let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
                    let e = rooms.entry(id.to_owned()).or_default();
                    e.occupancy = n;
                    e.ts = ts;
                }
            }
            (Some("rooms"), Some(id), Some("state"), None) => {
                let occupied = match o.payload.as_slice() {
                    b"\"occupied\"" => Some(true),
                    b"\"vacant\"" => Some(false),
                    _ => None,
                };
                let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
                rooms.entry(id.to_owned()).or_default().occupied = occupied;
            }
            (Some("rooms"), Some(id), Some("booking"), None) => {
                if let Ok(b) = serde_json::from_slice(&o.payload) {
                    let mut rooms = self.rooms.write().unwrap_or_else(|p| p.into_inner());
                    rooms.entry(id.to_owned()).or_default().booking = Some(b);
                }
            }
            (Some("buildings"), Some(id), Some("occupancy"), None) => {
                if let Some((n, ts)) = occupancy_of(&o.payload) {
                    let mut b = self.buildings.write().unwrap_or_else(|p| p.into_inner());
                    let e = b.entry(id.to_owned()).or_default();
                    e.occupancy = n;
                    e.ts = ts;
                }
            }
            _ => {}
        }
    }

    /// A room's latest numbers (zero before the first publication).
    pub fn room(&self, id: &str) -> Now {
        let rooms = self.rooms.read().unwrap_or_else(|p| p.into_inner());
        rooms.get(id).cloned().unwrap_or_default()
    }

    /// A building's latest numbers (zero before the first publication).
    pub fn building(&self, id: &str) -> Now {
        let b = self.buildings.read().unwrap_or_else(|p| p.into_inner());
        b.get(id).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(topic: &str, payload: &str) -> Output {
        Output {
            topic: topic.into(),
            payload: payload.as_bytes().to_vec(),
        }
    }

    #[test]
    fn follows_the_retained_outputs() {
        let live = Live::default();
        assert_eq!(live.room("r1").occupancy, 0);
        live.apply(&out(
            "tellijn/v1/rooms/r1/occupancy",
            r#"{"room":"r1","building":"b","occupancy":7,"capacity":10,"ts":"2026-11-22T10:00:00Z"}"#,
        ));
        live.apply(&out("tellijn/v1/rooms/r1/state", "\"occupied\""));
        live.apply(&out(
            "tellijn/v1/buildings/b/occupancy",
            r#"{"building":"b","occupancy":9,"capacity":10,"ts":"2026-11-22T10:00:00Z"}"#,
        ));
        // Not ours, or malformed: ignored.
        live.apply(&out("tellijn/v1/sensors/s/ack", r#"{"seq":3}"#));
        live.apply(&out("tellijn/v1/rooms/r1/occupancy", "garbage"));
        let r = live.room("r1");
        assert_eq!(r.occupancy, 7);
        assert_eq!(r.occupied, Some(true));
        assert_eq!(r.ts.as_deref(), Some("2026-11-22T10:00:00Z"));
        assert_eq!(live.building("b").occupancy, 9);
        live.apply(&out("tellijn/v1/rooms/r1/state", "\"vacant\""));
        assert_eq!(live.room("r1").occupied, Some(false));
    }
}
