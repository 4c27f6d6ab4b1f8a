//! Durations (`"10s"`, `"30d"`) and byte sizes (`"512MiB"`) as `campus.toml` writes them.

use std::time::Duration;

use serde::Deserialize;

pub(super) fn duration_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "must be a duration such as \"10s\", \"10m\" or \"30d\" (found {s:?}: {e})"
        ))
    })
}

const BYTE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// A size in bytes: "512MiB", "1GiB", "1500MB", "4096" or "4096B".
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = BYTE_UNITS
        .iter()
        .find_map(|(suffix, unit)| {
            let n = t.len().checked_sub(suffix.len())?;
            let (number, tail) = t.split_at_checked(n)?;
            tail.eq_ignore_ascii_case(suffix)
                .then_some((number.trim(), *unit))
        })
        .unwrap_or((t, 1));
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// A size in bytes in the largest binary unit that divides it.
pub fn format_bytes(n: u64) -> String {
    for (suffix, unit) in &BYTE_UNITS[..4] {
        if n != 0 && n.is_multiple_of(*unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    format!("{n}B")
}

pub(super) fn bytes_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(s) => parse_bytes(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "must be a size such as \"512MiB\", \"1GiB\" or a number of bytes (found {s:?})"
            ))
        }),
    }
}

pub(super) fn bytes_ser<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_bytes(*n))
}

pub(super) fn duration_ser<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}
