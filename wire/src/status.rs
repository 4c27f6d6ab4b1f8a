//! The sensor status message, retained on `tellijn/v1/sensors/{sensor}/status`.
//!
//! Parsed as strictly as a count message: a status topic must not become a side channel
//! out of the camera. Only the fields below exist; strings are short and bounded.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::Reason;
use crate::fields::{Fields, int_value, parse_utc};

/// A status message is at most this many bytes. 1024 since issue 18: a message with every
/// field at its largest (the frame figures included) is 590 bytes, past the 512 of before.
pub const MAX_STATUS_PAYLOAD: usize = 1024;
const FIELDS: [&str; 17] = [
    "online",
    "since",
    "queue",
    "version",
    "oldest_unsent_s",
    "sends",
    "config_hash",
    "merged",
    "dropped",
    "corrupt_bytes",
    "frames",
    "frame_drops",
    "frame_late",
    "frame_p99_us",
    "frame_max_us",
    "privacy_level",
    "counter_restarts",
];

/// The privacy levels a counter reports: 3 shows nothing but lines, 2 lets the installer view
/// show tracked people as dots, 1 is reserved for a view with more (never built).
pub const PRIVACY_LEVELS: std::ops::RangeInclusive<u8> = 1..=3;

/// What an agent reports about itself. Everything but `online` is optional, so the last will
/// can be `{"online":false}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct StatusMessage {
    pub online: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Age in seconds of the oldest count not yet acknowledged by the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_unsent_s: Option<u64>,
    /// What the agent sends: the kinds of message (`"line"`, `"zone"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sends: Option<Vec<String>>,
    /// SHA-256 (hex) of the agent's effective configuration, secrets excluded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Messages merged into longer intervals because the outbox was full.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged: Option<u64>,
    /// Messages dropped because the outbox was full even after merging.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// Bytes of torn or corrupt outbox tail cut off at start (power cut).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub corrupt_bytes: Option<u64>,
    /// Frames the camera's counter has read since it started (`kind = "camera"` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frames: Option<u64>,
    /// Frames it dropped unprocessed, behind or late, since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_drops: Option<u64>,
    /// Of those, frames dropped because they would have outlived the 200 ms promise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_late: Option<u64>,
    /// The latest p99 of frame lifetime (first byte read → buffer zeroized), microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_p99_us: Option<u64>,
    /// The longest frame lifetime since the agent's previous status, microseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub frame_max_us: Option<u64>,
    /// The counter's privacy level (3: nothing but lines; 2: tracked people as dots).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub privacy_level: Option<u8>,
    /// Times the agent restarted the counter (and its capture command) since it started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counter_restarts: Option<u64>,
}

fn short_text(v: &Value, max: usize) -> Result<String, Reason> {
    let s = v.as_str().ok_or(Reason::WrongType)?;
    if s.len() > max || s.chars().any(|c| c.is_control()) {
        return Err(Reason::OutOfRange);
    }
    Ok(s.to_owned())
}

impl StatusMessage {
    /// Parses and checks a status payload.
    pub fn parse(payload: &[u8]) -> Result<StatusMessage, Reason> {
        let f = Fields::parse(payload, MAX_STATUS_PAYLOAD)?;
        f.only(&FIELDS)?;
        let online = f.get("online")?.as_bool().ok_or(Reason::WrongType)?;
        let since = match f.opt("since") {
            Some(v) => {
                let s = v.as_str().ok_or(Reason::WrongType)?;
                parse_utc(s)?;
                Some(s.to_owned())
            }
            None => None,
        };
        let queue = f
            .opt("queue")
            .map(|v| int_value(v, 0, i64::MAX))
            .transpose()?
            .map(|q| q as u64);
        let oldest_unsent_s = f
            .opt("oldest_unsent_s")
            .map(|v| int_value(v, 0, i64::MAX))
            .transpose()?
            .map(|q| q as u64);
        let count = |k: &str| {
            f.opt(k)
                .map(|v| int_value(v, 0, i64::MAX))
                .transpose()
                .map(|o| o.map(|q| q as u64))
        };
        let (merged, dropped, corrupt_bytes) =
            (count("merged")?, count("dropped")?, count("corrupt_bytes")?);
        let (frames, frame_drops, frame_late) = (
            count("frames")?,
            count("frame_drops")?,
            count("frame_late")?,
        );
        let (frame_p99_us, frame_max_us, counter_restarts) = (
            count("frame_p99_us")?,
            count("frame_max_us")?,
            count("counter_restarts")?,
        );
        let privacy_level = f
            .opt("privacy_level")
            .map(|v| {
                int_value(
                    v,
                    i64::from(*PRIVACY_LEVELS.start()),
                    i64::from(*PRIVACY_LEVELS.end()),
                )
            })
            .transpose()?
            .map(|l| l as u8);
        let version = f.opt("version").map(|v| short_text(v, 32)).transpose()?;
        let config_hash = match f.opt("config_hash") {
            Some(v) => {
                let s = short_text(v, 64)?;
                if s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Reason::OutOfRange);
                }
                Some(s)
            }
            None => None,
        };
        let sends = match f.opt("sends") {
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for i in items {
                    match i.as_str() {
                        Some(k @ ("line" | "zone")) if !out.iter().any(|o| o == k) => {
                            out.push(k.to_owned())
                        }
                        Some(_) => return Err(Reason::OutOfRange),
                        None => return Err(Reason::WrongType),
                    }
                }
                Some(out)
            }
            Some(_) => return Err(Reason::WrongType),
            None => None,
        };
        Ok(StatusMessage {
            online,
            since,
            queue,
            version,
            oldest_unsent_s,
            sends,
            config_hash,
            merged,
            dropped,
            corrupt_bytes,
            frames,
            frame_drops,
            frame_late,
            frame_p99_us,
            frame_max_us,
            privacy_level,
            counter_restarts,
        })
    }

    /// The offline message used as the last will.
    pub fn offline() -> StatusMessage {
        StatusMessage::default()
    }

    /// An online message.
    pub fn online(since: DateTime<Utc>, queue: u64, version: &str) -> StatusMessage {
        StatusMessage {
            online: true,
            since: Some(crate::count::rfc3339(since)),
            queue: Some(queue),
            version: Some(version.chars().take(32).collect()),
            ..Default::default()
        }
    }

    /// The JSON payload.
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn offline_will_round_trips() {
        assert_eq!(StatusMessage::offline().to_json(), br#"{"online":false}"#);
        assert_eq!(
            StatusMessage::parse(br#"{"online":false}"#),
            Ok(StatusMessage::offline())
        );
    }

    #[test]
    fn online_round_trips() {
        let mut s = StatusMessage::online("2026-11-22T10:00:00Z".parse().unwrap(), 3, "0.1.0");
        s.sends = Some(vec!["line".into()]);
        s.config_hash = Some("ab".repeat(32));
        s.oldest_unsent_s = Some(4);
        s.merged = Some(1);
        s.dropped = Some(2);
        s.corrupt_bytes = Some(3);
        assert!(s.to_json().len() <= MAX_STATUS_PAYLOAD);
        assert_eq!(StatusMessage::parse(&s.to_json()), Ok(s));
    }

    #[test]
    fn the_largest_message_fits() {
        let big = i64::MAX as u64;
        let s = StatusMessage {
            online: true,
            since: Some("2026-11-22T10:00:00.123456789Z".into()),
            queue: Some(big),
            version: Some("v".repeat(32)),
            oldest_unsent_s: Some(big),
            sends: Some(vec!["line".into(), "zone".into()]),
            config_hash: Some("ab".repeat(32)),
            merged: Some(big),
            dropped: Some(big),
            corrupt_bytes: Some(big),
            frames: Some(big),
            frame_drops: Some(big),
            frame_late: Some(big),
            frame_p99_us: Some(big),
            frame_max_us: Some(big),
            privacy_level: Some(3),
            counter_restarts: Some(big),
        };
        let json = s.to_json();
        assert_eq!(json.len(), 590, "{}", String::from_utf8_lossy(&json));
        assert!(json.len() <= MAX_STATUS_PAYLOAD);
        assert_eq!(StatusMessage::parse(&json), Ok(s));
    }

    #[test]
    fn frame_figures_round_trip_and_bad_values_are_refused() {
        let mut s = StatusMessage::online("2026-11-22T10:00:00Z".parse().unwrap(), 0, "0.1.0");
        s.frames = Some(1200);
        s.frame_drops = Some(3);
        s.frame_late = Some(1);
        s.frame_p99_us = Some(41_000);
        s.frame_max_us = Some(230_000);
        s.privacy_level = Some(2);
        s.counter_restarts = Some(0);
        assert_eq!(StatusMessage::parse(&s.to_json()), Ok(s));
        let fields = [
            "frames",
            "frame_drops",
            "frame_late",
            "frame_p99_us",
            "frame_max_us",
            "counter_restarts",
        ];
        for k in fields {
            for (v, want) in [
                ("-1", Reason::OutOfRange),
                ("1.5", Reason::WrongType),
                ("\"7\"", Reason::WrongType),
                ("null", Reason::WrongType),
                ("true", Reason::WrongType),
                ("[1]", Reason::WrongType),
                ("18446744073709551615", Reason::OutOfRange),
            ] {
                let p = format!(r#"{{"online":true,"{k}":{v}}}"#);
                assert_eq!(StatusMessage::parse(p.as_bytes()), Err(want), "{p}");
            }
            let p = format!(r#"{{"online":true,"{k}":0}}"#);
            assert!(StatusMessage::parse(p.as_bytes()).is_ok(), "{p}");
            let p = format!(r#"{{"online":true,"{k}":1,"{k}":2}}"#);
            assert_eq!(
                StatusMessage::parse(p.as_bytes()),
                Err(Reason::DuplicateField),
                "{p}"
            );
        }
        for (v, want) in [
            ("0", Err(Reason::OutOfRange)),
            ("1", Ok(1)),
            ("2", Ok(2)),
            ("3", Ok(3)),
            ("4", Err(Reason::OutOfRange)),
            ("-3", Err(Reason::OutOfRange)),
            ("2.0", Err(Reason::WrongType)),
            ("\"3\"", Err(Reason::WrongType)),
            ("null", Err(Reason::WrongType)),
        ] {
            let p = format!(r#"{{"online":true,"privacy_level":{v}}}"#);
            assert_eq!(
                StatusMessage::parse(p.as_bytes()).map(|s| s.privacy_level.unwrap_or(0)),
                want,
                "{p}"
            );
        }
        // Too large: the limit holds whatever the fields.
        let p = format!(r#"{{"online":true,"version":"{}"}}"#, " ".repeat(1024));
        assert_eq!(StatusMessage::parse(p.as_bytes()), Err(Reason::TooLarge));
    }

    #[test]
    fn side_channels_are_refused() {
        let cases: [(&[u8], Reason); 7] = [
            (br#"{"online":true,"image":"AAAA"}"#, Reason::UnknownField),
            (br#"{"online":"yes"}"#, Reason::WrongType),
            (br#"{"queue":1}"#, Reason::MissingField),
            (
                br#"{"online":true,"version":"0123456789012345678901234567890123456789"}"#,
                Reason::OutOfRange,
            ),
            (
                br#"{"online":true,"sends":["line","faces"]}"#,
                Reason::OutOfRange,
            ),
            (
                br#"{"online":true,"config_hash":"not-hex"}"#,
                Reason::OutOfRange,
            ),
            (b"\xff\xd8\xff\xe0", Reason::NotJson),
        ];
        for (p, want) in cases {
            assert_eq!(
                StatusMessage::parse(p),
                Err(want),
                "{}",
                String::from_utf8_lossy(p)
            );
        }
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1200)) {
            let _ = StatusMessage::parse(&bytes);
        }
    }
}
