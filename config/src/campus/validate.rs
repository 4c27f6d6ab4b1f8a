//! The one validation pass over a parsed campus: every error, each naming its key.

use std::collections::{BTreeMap, BTreeSet};

use super::*;

/// The smallest `[limits] sql_memory_limit`: below it even catalogue queries fail.
const MIN_SQL_MEMORY: u64 = 16 << 20;

impl Campus {
    /// Every validation error, in file order.
    pub fn validate(&self, file: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: String, message: String| {
            errs.push(ConfigError {
                file: file.to_owned(),
                key,
                message,
            })
        };
        let mut ids: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut place_ids: BTreeSet<&str> = BTreeSet::new();

        if self.server.flush_interval.is_zero() {
            err(
                "server.flush_interval".into(),
                "must be longer than 0s (found 0s).".into(),
            );
        }
        let l = &self.limits;
        for (key, value) in [
            ("max_connections", l.max_connections as u64),
            ("max_pending", l.max_pending as u64),
            ("max_pending_per_ip", l.max_pending_per_ip as u64),
            ("publish_rate", u64::from(l.publish_rate)),
            ("publish_burst", u64::from(l.publish_burst)),
            ("max_http_connections", l.max_http_connections as u64),
            ("max_sql_connections", l.max_sql_connections as u64),
        ] {
            if value == 0 {
                err(
                    format!("limits.{key}"),
                    "must be at least 1 (found 0); leave it out for the default.".into(),
                );
            }
        }
        for (key, value) in [
            ("connect_timeout", l.connect_timeout),
            ("http_idle_timeout", l.http_idle_timeout),
            ("sql_idle_timeout", l.sql_idle_timeout),
            ("sql_statement_timeout", l.sql_statement_timeout),
        ] {
            if value.is_zero() {
                err(
                    format!("limits.{key}"),
                    "must be longer than 0s (found 0s); leave it out for the default.".into(),
                );
            }
        }
        if l.sql_memory_limit < MIN_SQL_MEMORY {
            err(
                "limits.sql_memory_limit".into(),
                format!(
                    "must be at least 16MiB (found {}); leave it out for the default (1GiB).",
                    format_bytes(l.sql_memory_limit)
                ),
            );
        }
        if self.server.timezone.parse::<chrono_tz::Tz>().is_err() {
            err(
                "server.timezone".into(),
                format!(
                    "must name an IANA time zone such as \"Europe/Amsterdam\" (found {:?}).",
                    self.server.timezone
                ),
            );
        }
        for (i, f) in self.server.anonymous_read.iter().enumerate() {
            if let Err(m) = anonymous_filter(f) {
                err(format!("server.anonymous_read[{i}]"), m);
            }
        }
        if let Some(h) = &self.server.metrics_token_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            err(
                "server.metrics_token_sha256".into(),
                "must be 64 hex digits, the SHA-256 of the token (`printf %s \"$TOKEN\" | sha256sum`).".into(),
            );
        }
        if self.tls.is_none() && self.server.mqtts.is_some() {
            err(
                "server.mqtts".into(),
                "needs a [tls] section with cert and key.".into(),
            );
        }
        if self.privacy.raw_retention.is_zero() {
            err(
                "privacy.raw_retention".into(),
                "must be longer than 0s.".into(),
            );
        }
        if self.privacy.aggregate_retention.is_zero() {
            err(
                "privacy.aggregate_retention".into(),
                "must be longer than 0s.".into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() || !names.insert(u.name.as_str()) {
                err(
                    format!("users[{i}].name"),
                    format!("must be a unique, non-empty name (found {:?}).", u.name),
                );
            }
            if let Err(m) = crate::secrets::check_phc(&u.password_hash) {
                err(format!("users[{i}].password_hash"), m);
            }
        }
        for (i, r) in self.mqtt_readers.iter().enumerate() {
            if !crate::is_valid_id(&r.name) || !names.insert(r.name.as_str()) {
                err(
                    format!("mqtt_readers[{i}].name"),
                    format!(
                        "must be a unique id of a-z, 0-9 and '-' (found {:?}).",
                        r.name
                    ),
                );
            }
            if let Err(m) = crate::secrets::check_phc(&r.password_hash) {
                err(format!("mqtt_readers[{i}].password_hash"), m);
            }
            for (j, f) in r.topics.iter().enumerate() {
                if !derived_filter(f) {
                    err(
                        format!("mqtt_readers[{i}].topics[{j}]"),
                        format!(
                            "must be a topic filter under tellijn/v1/rooms/, tellijn/v1/buildings/, tellijn/v1/public/ or homeassistant/ (found {f:?})."
                        ),
                    );
                }
            }
        }
        let mut check_id = |key: String,
                            id: &'_ str,
                            what: &'static str,
                            err: &mut dyn FnMut(String, String)| {
            if !crate::is_valid_id(id) {
                err(
                    key,
                    format!(
                        "must be an id of a-z, 0-9 and '-', at most 64 characters (found {id:?})."
                    ),
                );
            } else if let Some(prev) = ids.insert(id.to_owned(), what) {
                err(
                    key,
                    format!("{id:?} is already used by a {prev}; ids must be unique."),
                );
            }
        };
        let buildings: BTreeSet<&str> = self.buildings.iter().map(|b| b.id.as_str()).collect();
        for (i, b) in self.buildings.iter().enumerate() {
            check_id(format!("buildings[{i}].id"), &b.id, "building", &mut err);
            place_ids.insert(&b.id);
        }
        for (i, r) in self.rooms.iter().enumerate() {
            check_id(format!("rooms[{i}].id"), &r.id, "room", &mut err);
            place_ids.insert(&r.id);
            if !buildings.contains(r.building.as_str()) {
                err(
                    format!("rooms[{i}].building"),
                    format!("{:?} is not a building in [[buildings]].", r.building),
                );
            }
            if r.capacity == 0 {
                err(
                    format!("rooms[{i}].capacity"),
                    "must be a positive integer (found 0).".into(),
                );
            }
            if r.public && r.kind == RoomKind::Office {
                err(
                    format!("rooms[{i}].public"),
                    "must be false for an office: offices are never listed publicly.".into(),
                );
            }
            if let Some(reset) = &r.reset
                && parse_reset(reset).is_none()
            {
                err(
                    format!("rooms[{i}].reset"),
                    format!("must be a local time \"HH:MM\" (found {reset:?})."),
                );
            }
        }
        let rooms: BTreeSet<&str> = self.rooms.iter().map(|r| r.id.as_str()).collect();
        for (i, s) in self.sensors.iter().enumerate() {
            check_id(format!("sensors[{i}].id"), &s.id, "sensor", &mut err);
            if let Err(m) = crate::secrets::check_phc(&s.secret_hash) {
                err(format!("sensors[{i}].secret_hash"), m);
            }
            if s.lines.is_empty() && s.zones.is_empty() {
                err(
                    format!("sensors[{i}]"),
                    "has no lines and no zones; give it at least one.".into(),
                );
            }
            let mut seen = BTreeSet::new();
            for (j, l) in s.lines.iter().enumerate() {
                if !crate::is_valid_id(&l.line) || !seen.insert(l.line.as_str()) {
                    err(
                        format!("sensors[{i}].lines[{j}].line"),
                        format!("must be a unique id (found {:?}).", l.line),
                    );
                }
                if !place_ids.contains(l.into.as_str()) {
                    err(
                        format!("sensors[{i}].lines[{j}].into"),
                        format!("{:?} is not a room or building.", l.into),
                    );
                }
                if let Some(from) = &l.from {
                    if !place_ids.contains(from.as_str()) {
                        err(
                            format!("sensors[{i}].lines[{j}].from"),
                            format!("{from:?} is not a room or building."),
                        );
                    } else if from == &l.into {
                        err(
                            format!("sensors[{i}].lines[{j}].from"),
                            "must differ from into.".into(),
                        );
                    }
                }
            }
            let mut seen = BTreeSet::new();
            for (j, z) in s.zones.iter().enumerate() {
                if !crate::is_valid_id(&z.zone) || !seen.insert(z.zone.as_str()) {
                    err(
                        format!("sensors[{i}].zones[{j}].zone"),
                        format!("must be a unique id (found {:?}).", z.zone),
                    );
                }
                if !rooms.contains(z.room.as_str()) {
                    err(
                        format!("sensors[{i}].zones[{j}].room"),
                        format!("{:?} is not a room in [[rooms]].", z.room),
                    );
                }
            }
        }
        for (i, c) in self.calendars.iter().enumerate() {
            let url = c.url.to_ascii_lowercase();
            if !(url.starts_with("https://")
                || url.starts_with("http://")
                || url.starts_with("file:///"))
            {
                err(
                    format!("calendars[{i}].url"),
                    format!(
                        "must be an https://, http:// or file:/// URL of an iCalendar feed (found one starting {:?}; the rest is not shown, it may hold a token).",
                        c.url.chars().take(8).collect::<String>()
                    ),
                );
            }
            if c.refresh < std::time::Duration::from_secs(10) {
                err(
                    format!("calendars[{i}].refresh"),
                    "must be at least 10s; feeds are re-read on this interval.".into(),
                );
            }
            match (&c.room, c.locations.is_empty()) {
                (Some(_), false) => err(
                    format!("calendars[{i}]"),
                    "gives both room and locations; give room for a feed of one room, or locations for a timetable of many.".into(),
                ),
                (None, true) => err(
                    format!("calendars[{i}]"),
                    "gives neither room nor locations; say which room the feed books (room = \"…\") or map each LOCATION to a room (locations = { \"LIB 2.01\" = \"lib-2-study\" }).".into(),
                ),
                _ => {}
            }
            if let Some(r) = &c.room
                && !rooms.contains(r.as_str())
            {
                err(
                    format!("calendars[{i}].room"),
                    format!("{r:?} is not a room in [[rooms]]."),
                );
            }
            for (loc, r) in &c.locations {
                if !rooms.contains(r.as_str()) {
                    err(
                        format!("calendars[{i}].locations.{loc:?}"),
                        format!("{r:?} is not a room in [[rooms]]."),
                    );
                }
            }
        }
        let b = &self.bookings;
        if b.no_show_after.is_zero() {
            err(
                "bookings.no_show_after".into(),
                "must be longer than 0s (found 0s).".into(),
            );
        }
        if b.study_place_min.is_zero() {
            err(
                "bookings.study_place_min".into(),
                "must be longer than 0s (found 0s).".into(),
            );
        }
        if b.horizon < std::time::Duration::from_secs(28 * 24 * 3600) {
            err(
                "bookings.horizon".into(),
                "must be at least 28d: the timetabling reports look four weeks ahead.".into(),
            );
        }
        if b.study_place_kinds.contains(&RoomKind::Office) {
            err(
                "bookings.study_place_kinds".into(),
                "must not contain \"office\": offices are never listed publicly.".into(),
            );
        }
        if b.feed_max_bytes < 1024 {
            err(
                "bookings.feed_max_bytes".into(),
                format!(
                    "must be at least 1KiB (found {}).",
                    format_bytes(b.feed_max_bytes)
                ),
            );
        }
        errs
    }
}

/// `"HH:MM"` → (hour, minute).
pub fn parse_reset(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// A topic filter that stays inside the derived topics.
/// Is `f` a well-formed topic filter: no empty level, `#` only as the whole last level, `+`
/// only as a whole level?
fn well_formed_filter(f: &str) -> bool {
    f.split('/').all(|l| !l.is_empty())
        && f.split('/')
            .enumerate()
            .all(|(i, l)| !l.contains('#') || (l == "#" && i == f.split('/').count() - 1))
        && f.split('/').all(|l| !l.contains('+') || l == "+")
}

/// An anonymous grant: only within the banded public tree, decided by topic matching (so
/// `tellijn/v1/+/rooms/#`, `+/#` and `tellijn/#` are refused like `tellijn/v1/rooms/#`).
pub fn anonymous_filter(f: &str) -> Result<(), String> {
    use tellijn_wire::topic::{PUBLIC_TREE, filter_within};
    if !well_formed_filter(f) {
        return Err(format!(
            "is not a well-formed topic filter (found {f:?}); grant {PUBLIC_TREE:?} for the public."
        ));
    }
    if !filter_within(f, PUBLIC_TREE) {
        return Err(format!(
            "could reach topics outside the public tree {PUBLIC_TREE:?} (found {f:?}): those carry offices and exact small numbers. Grant {PUBLIC_TREE:?} to anonymous readers (public rooms, small numbers as bands, as the free-places page shows them); give building automation a named [[mqtt_readers]] entry with the topics it needs instead."
        ));
    }
    Ok(())
}

pub(super) fn derived_filter(f: &str) -> bool {
    (f.starts_with("tellijn/v1/rooms/")
        || f.starts_with("tellijn/v1/buildings/")
        || f.starts_with("tellijn/v1/public/")
        || f.starts_with("homeassistant/"))
        && well_formed_filter(f)
}
