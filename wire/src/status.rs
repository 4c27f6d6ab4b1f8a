//! The sensor status message, retained on `tellijn/v1/sensors/{sensor}/status`.
//!
//! Parsed as strictly as a count message: a status topic must not become a side channel
//! out of the camera. Only the fields below exist; strings are short and bounded.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::Reason;
use crate::fields::{Fields, int_value, parse_utc};

/// A status message is at most this many bytes.
pub const MAX_STATUS_PAYLOAD: usize = 512;
const FIELDS: [&str; 10] = [
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
];

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
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = StatusMessage::parse(&bytes);
        }
    }
}
