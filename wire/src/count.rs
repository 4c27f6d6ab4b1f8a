//! Count message v1.
//!
//! Two stages, so the broker can refuse early and tests can say exactly why:
//! [`CountMessage::parse`] checks the shape (JSON object, known fields, types, ranges, the
//! 15-minute interval cap); [`CountMessage::validate`] checks it against the world (the sender,
//! the campus config, the server clock). [`CountMessage::check`] does both.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::Reason;
use crate::fields::Fields;

/// A count message is at most this many bytes.
pub const MAX_PAYLOAD: usize = 512;
/// The largest `in`, `out` or `count`.
pub const MAX_COUNT: i64 = 10_000;
/// The longest interval one line message may cover.
pub const MAX_INTERVAL: TimeDelta = TimeDelta::minutes(15);
/// How far ahead of the server clock a message time may be.
pub const MAX_CLOCK_SKEW: TimeDelta = TimeDelta::minutes(5);

/// People crossing one counting line during `[start, end)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCount {
    pub sensor: String,
    pub line: String,
    pub seq: u64,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub people_in: u32,
    pub people_out: u32,
}

/// People present in one zone at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneCount {
    pub sensor: String,
    pub zone: String,
    pub seq: u64,
    pub at: DateTime<Utc>,
    pub count: u32,
}

/// A count message v1: line crossings or a zone count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountMessage {
    Line(LineCount),
    Zone(ZoneCount),
}

/// What the validator needs to know about the campus: which lines and zones a sensor has.
pub trait Directory {
    fn has_line(&self, sensor: &str, line: &str) -> bool;
    fn has_zone(&self, sensor: &str, zone: &str) -> bool;
}

const LINE_FIELDS: [&str; 8] = ["v", "sensor", "line", "seq", "start", "end", "in", "out"];
const ZONE_FIELDS: [&str; 6] = ["v", "sensor", "zone", "seq", "at", "count"];

impl CountMessage {
    /// Parses a payload; checks everything that does not need the sender, config or clock.
    pub fn parse(payload: &[u8]) -> Result<CountMessage, Reason> {
        let f = Fields::parse(payload, MAX_PAYLOAD)?;
        let kind_line = f.has("line");
        if kind_line {
            f.only(&LINE_FIELDS)?;
        } else {
            f.only(&ZONE_FIELDS)?;
        }
        match f.get("v")? {
            Value::Number(n) if n.as_u64() == Some(1) => {}
            Value::Number(_) => return Err(Reason::BadVersion),
            _ => return Err(Reason::WrongType),
        }
        let sensor = f.id("sensor")?;
        // Seqs start at 1: the server acknowledges the run of seqs from 1 upwards.
        let seq = f.int("seq", 1, i64::MAX)? as u64;
        if kind_line {
            let line = f.id("line")?;
            let start = f.time("start")?;
            let end = f.time("end")?;
            let people_in = f.int("in", 0, MAX_COUNT)? as u32;
            let people_out = f.int("out", 0, MAX_COUNT)? as u32;
            if end <= start || end - start > MAX_INTERVAL {
                return Err(Reason::BadInterval);
            }
            Ok(CountMessage::Line(LineCount {
                sensor,
                line,
                seq,
                start,
                end,
                people_in,
                people_out,
            }))
        } else {
            let zone = f.id("zone")?;
            let at = f.time("at")?;
            let count = f.int("count", 0, MAX_COUNT)? as u32;
            Ok(CountMessage::Zone(ZoneCount {
                sensor,
                zone,
                seq,
                at,
                count,
            }))
        }
    }

    /// Checks a parsed message against its sender, the campus and the server clock.
    pub fn validate(
        &self,
        sender: &str,
        dir: &dyn Directory,
        now: DateTime<Utc>,
    ) -> Result<(), Reason> {
        if self.sensor() != sender {
            return Err(Reason::SensorMismatch);
        }
        let latest = match self {
            CountMessage::Line(m) => {
                if !dir.has_line(&m.sensor, &m.line) {
                    return Err(Reason::UnknownLine);
                }
                m.end
            }
            CountMessage::Zone(m) => {
                if !dir.has_zone(&m.sensor, &m.zone) {
                    return Err(Reason::UnknownZone);
                }
                m.at
            }
        };
        if latest > now + MAX_CLOCK_SKEW {
            return Err(Reason::FutureTime);
        }
        Ok(())
    }

    /// Parses and validates a payload sent by `sender`.
    pub fn check(
        payload: &[u8],
        sender: &str,
        dir: &dyn Directory,
        now: DateTime<Utc>,
    ) -> Result<CountMessage, Reason> {
        let m = Self::parse(payload)?;
        m.validate(sender, dir, now)?;
        Ok(m)
    }

    /// The sensor that sent it.
    pub fn sensor(&self) -> &str {
        match self {
            CountMessage::Line(m) => &m.sensor,
            CountMessage::Zone(m) => &m.sensor,
        }
    }

    /// Its per-sensor sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            CountMessage::Line(m) => m.seq,
            CountMessage::Zone(m) => m.seq,
        }
    }

    /// The time the message speaks of: `end` for lines, `at` for zones.
    pub fn time(&self) -> DateTime<Utc> {
        match self {
            CountMessage::Line(m) => m.end,
            CountMessage::Zone(m) => m.at,
        }
    }

    /// The JSON payload, fields in contract order.
    pub fn to_json(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Line<'a> {
            v: u8,
            sensor: &'a str,
            line: &'a str,
            seq: u64,
            start: String,
            end: String,
            #[serde(rename = "in")]
            people_in: u32,
            #[serde(rename = "out")]
            people_out: u32,
        }
        #[derive(Serialize)]
        struct Zone<'a> {
            v: u8,
            sensor: &'a str,
            zone: &'a str,
            seq: u64,
            at: String,
            count: u32,
        }
        // Serialising strings and integers cannot fail.
        match self {
            CountMessage::Line(m) => serde_json::to_vec(&Line {
                v: 1,
                sensor: &m.sensor,
                line: &m.line,
                seq: m.seq,
                start: rfc3339(m.start),
                end: rfc3339(m.end),
                people_in: m.people_in,
                people_out: m.people_out,
            }),
            CountMessage::Zone(m) => serde_json::to_vec(&Zone {
                v: 1,
                sensor: &m.sensor,
                zone: &m.zone,
                seq: m.seq,
                at: rfc3339(m.at),
                count: m.count,
            }),
        }
        .unwrap_or_default()
    }
}

/// UTC RFC 3339 with `Z`, sub-second digits only when present.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Campus;
    impl Directory for Campus {
        fn has_line(&self, sensor: &str, line: &str) -> bool {
            sensor == "lib-ent-1" && line == "main"
        }
        fn has_zone(&self, sensor: &str, zone: &str) -> bool {
            sensor == "hall-a-1" && zone == "seats"
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-22T10:16:00Z".parse().unwrap()
    }

    const LINE: &str = r#"{"v":1,"sensor":"lib-ent-1","line":"main","seq":1834,"start":"2026-11-22T10:15:00Z","end":"2026-11-22T10:15:01Z","in":3,"out":1}"#;
    const ZONE: &str = r#"{"v":1,"sensor":"hall-a-1","zone":"seats","seq":77,"at":"2026-11-22T10:15:00Z","count":42}"#;

    #[test]
    fn contract_examples_are_accepted() {
        let m = CountMessage::check(LINE.as_bytes(), "lib-ent-1", &Campus, now()).unwrap();
        assert_eq!(m.seq(), 1834);
        let CountMessage::Line(l) = &m else { panic!() };
        assert_eq!((l.people_in, l.people_out), (3, 1));
        let z = CountMessage::check(ZONE.as_bytes(), "hall-a-1", &Campus, now()).unwrap();
        assert_eq!(z.sensor(), "hall-a-1");
        assert_eq!(z.to_json(), ZONE.as_bytes());
        assert_eq!(m.to_json(), LINE.as_bytes());
    }

    /// Each bad input with the exact reason it must be refused for.
    #[test]
    fn bad_inputs_table() {
        let big = format!(r#"{{"v":1,"pad":"{}"}}"#, "x".repeat(600));
        let cases: Vec<(&str, String, Reason)> = vec![
            ("binary", "\u{89}PNG\r\n".into(), Reason::NotJson),
            ("empty", "".into(), Reason::NotJson),
            ("truncated", LINE[..40].into(), Reason::NotJson),
            ("too large", big, Reason::TooLarge),
            ("array", "[1,2]".into(), Reason::NotObject),
            ("string", "\"hi\"".into(), Reason::NotObject),
            (
                "extra field",
                LINE.replace("\"out\":1", "\"out\":1,\"face\":\"x\""),
                Reason::UnknownField,
            ),
            (
                "both kinds",
                LINE.replace("\"out\":1", "\"out\":1,\"zone\":\"seats\""),
                Reason::UnknownField,
            ),
            (
                "duplicate",
                LINE.replace("\"out\":1", "\"out\":1,\"in\":4"),
                Reason::DuplicateField,
            ),
            (
                "missing end",
                LINE.replace(",\"end\":\"2026-11-22T10:15:01Z\"", ""),
                Reason::MissingField,
            ),
            (
                "no kind",
                r#"{"v":1,"sensor":"a","seq":1}"#.into(),
                Reason::MissingField,
            ),
            (
                "v=2",
                LINE.replace("\"v\":1", "\"v\":2"),
                Reason::BadVersion,
            ),
            (
                "v string",
                LINE.replace("\"v\":1", "\"v\":\"1\""),
                Reason::WrongType,
            ),
            (
                "in float",
                LINE.replace("\"in\":3", "\"in\":3.5"),
                Reason::WrongType,
            ),
            (
                "in string",
                LINE.replace("\"in\":3", "\"in\":\"3\""),
                Reason::WrongType,
            ),
            (
                "in negative",
                LINE.replace("\"in\":3", "\"in\":-1"),
                Reason::OutOfRange,
            ),
            (
                "in huge",
                LINE.replace("\"in\":3", "\"in\":10001"),
                Reason::OutOfRange,
            ),
            (
                "seq huge",
                LINE.replace("1834", "18446744073709551615"),
                Reason::OutOfRange,
            ),
            (
                "seq negative",
                LINE.replace("1834", "-1"),
                Reason::OutOfRange,
            ),
            (
                "bad sensor id",
                LINE.replace("lib-ent-1", "Lib/ent"),
                Reason::BadId,
            ),
            (
                "bad time",
                LINE.replace("10:15:00Z", "10:15:00"),
                Reason::BadTime,
            ),
            (
                "local time",
                LINE.replace("10:15:00Z", "11:15:00+01:00"),
                Reason::BadTime,
            ),
            (
                "end before start",
                LINE.replace("10:15:01Z", "10:14:59Z"),
                Reason::BadInterval,
            ),
            (
                "end equals start",
                LINE.replace("10:15:01Z", "10:15:00Z"),
                Reason::BadInterval,
            ),
            (
                "interval 16 min",
                LINE.replace("10:15:01Z", "10:31:00Z"),
                Reason::BadInterval,
            ),
            (
                "other sensor",
                LINE.replace("lib-ent-1", "lib-ent-2"),
                Reason::SensorMismatch,
            ),
            (
                "unknown line",
                LINE.replace("\"main\"", "\"back\""),
                Reason::UnknownLine,
            ),
            (
                "unknown zone",
                ZONE.replace("\"seats\"", "\"floor\""),
                Reason::UnknownZone,
            ),
            (
                "future",
                ZONE.replace("10:15:00Z", "10:21:01Z"),
                Reason::FutureTime,
            ),
        ];
        for (name, payload, want) in cases {
            let sender = if payload.contains("zone\":\"") && !payload.contains("\"line\"") {
                "hall-a-1"
            } else {
                "lib-ent-1"
            };
            let got = CountMessage::check(payload.as_bytes(), sender, &Campus, now());
            assert_eq!(got.err(), Some(want), "case {name:?}: {payload}");
        }
    }

    #[test]
    fn fifteen_minutes_exactly_is_allowed() {
        let p = LINE.replace("10:15:01Z", "10:30:00Z");
        assert!(CountMessage::parse(p.as_bytes()).is_ok());
    }

    fn arb_time() -> impl Strategy<Value = DateTime<Utc>> {
        (1_500_000_000i64..2_000_000_000, 0u32..1_000_000)
            .prop_map(|(s, us)| DateTime::from_timestamp(s, us * 1000).unwrap())
    }

    fn arb_id() -> impl Strategy<Value = String> {
        "[a-z0-9][a-z0-9-]{0,63}"
    }

    fn arb_msg() -> impl Strategy<Value = CountMessage> {
        let line = (
            arb_id(),
            arb_id(),
            1..i64::MAX as u64,
            arb_time(),
            1i64..=900_000_000,
            0u32..=10_000,
            0u32..=10_000,
        )
            .prop_map(
                |(sensor, line, seq, start, dur_us, people_in, people_out)| {
                    CountMessage::Line(LineCount {
                        sensor,
                        line,
                        seq,
                        start,
                        end: start + TimeDelta::microseconds(dur_us),
                        people_in,
                        people_out,
                    })
                },
            );
        let zone = (
            arb_id(),
            arb_id(),
            1..i64::MAX as u64,
            arb_time(),
            0u32..=10_000,
        )
            .prop_map(|(sensor, zone, seq, at, count)| {
                CountMessage::Zone(ZoneCount {
                    sensor,
                    zone,
                    seq,
                    at,
                    count,
                })
            });
        prop_oneof![line, zone]
    }

    proptest! {
        #[test]
        fn round_trip(m in arb_msg()) {
            let bytes = m.to_json();
            prop_assert!(bytes.len() <= MAX_PAYLOAD, "{} bytes", bytes.len());
            prop_assert_eq!(CountMessage::parse(&bytes), Ok(m));
        }

        #[test]
        fn any_bytes_parse_or_give_a_reason(bytes in proptest::collection::vec(any::<u8>(), 0..700)) {
            let _ = CountMessage::check(&bytes, "lib-ent-1", &Campus, now());
        }

        #[test]
        fn mutated_valid_messages_never_panic(m in arb_msg(), pos in 0usize..400, byte in any::<u8>()) {
            let mut bytes = m.to_json();
            let i = pos % bytes.len();
            bytes[i] = byte;
            if let Ok(parsed) = CountMessage::parse(&bytes) {
                // Whatever parses must serialise back to something that parses the same.
                prop_assert_eq!(CountMessage::parse(&parsed.to_json()), Ok(parsed));
            }
        }
    }
}
