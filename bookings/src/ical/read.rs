//! One `VEVENT` or `VTIMEZONE` block → what is kept of it, through `icalendar::parser`.
//! Of an event only its times, recurrence, status, transparency, location and a keyed hash of
//! its UID are kept; every other property (SUMMARY, DESCRIPTION, ORGANIZER, ATTENDEE, …) is
//! parsed by `icalendar` and dropped with the component.

use chrono::NaiveDate;
use icalendar::parser::{Component, Property};
use sha2::{Digest, Sha256};

use super::lines::Block;
use super::time::{self, Length, VTimezone, Value};
use crate::Status;

/// A date or date-time with its `TZID`, if any.
pub(super) type Stamp = (Value, Option<String>);

/// Of one `VEVENT`, what is needed (the UID only as its hash; nothing else personal).
pub(super) struct Event {
    pub uid_hash: String,
    /// No `UID`: `uid_hash` is of the start and location.
    pub no_uid: bool,
    pub start: Stamp,
    pub end: Option<Stamp>,
    /// `Some(None)`: a `DURATION` that does not parse.
    pub duration: Option<Option<Length>>,
    pub rrule: Option<String>,
    pub rdates: Vec<Stamp>,
    pub exdates: Vec<Stamp>,
    pub recurrence_id: Option<Stamp>,
    pub status: Status,
    pub transparent: bool,
    pub location: Option<String>,
}

fn is(p: &Property<'_>, name: &str) -> bool {
    p.name.as_str().eq_ignore_ascii_case(name)
}

fn param<'p>(p: &'p Property<'_>, name: &str) -> Option<&'p str> {
    p.params
        .iter()
        .find(|x| x.key.as_str().eq_ignore_ascii_case(name))
        .and_then(|x| x.val.as_ref())
        .map(|v| v.as_str())
}

fn is_date(p: &Property<'_>) -> bool {
    param(p, "VALUE").is_some_and(|v| v.trim().eq_ignore_ascii_case("DATE"))
}

fn stamp(p: &Property<'_>) -> Option<Stamp> {
    let v = Value::parse(p.val.as_str(), is_date(p))?;
    Some((v, param(p, "TZID").map(str::to_owned)))
}

/// A list property (`RDATE`, `EXDATE`): its comma-separated values, bad ones dropped.
fn stamps(p: &Property<'_>, into: &mut Vec<Stamp>) {
    let date = is_date(p);
    let tzid = param(p, "TZID");
    for part in p.val.as_str().split(',').take(10_000) {
        // VALUE=PERIOD: start/end or start/duration; the start is the instance.
        let start = part.split('/').next().unwrap_or(part);
        if let Some(v) = Value::parse(start, date) {
            into.push((v, tzid.map(str::to_owned)));
        }
    }
}

fn parse_component(text: &str) -> Option<Component<'_>> {
    // `read_calendar_simple`'s error holds a slice of the input: it is dropped unread.
    icalendar::parser::read_calendar_simple(text)
        .ok()?
        .into_iter()
        .next()
}

pub(super) fn read_vtimezone(text: &str) -> Option<(String, VTimezone)> {
    let unfolded = icalendar::parser::unfold(text);
    let c = parse_component(&unfolded)?;
    let name = c.properties.iter().find(|p| is(p, "TZID"))?.val.as_str();
    let mut v = VTimezone::default();
    for sub in &c.components {
        let offset = sub
            .properties
            .iter()
            .find(|p| is(p, "TZOFFSETTO"))
            .and_then(|p| time::parse_utc_offset(p.val.as_str()));
        let Some(offset) = offset else { continue };
        if sub.name.as_str().eq_ignore_ascii_case("STANDARD") {
            v.standard.push(offset);
        } else if sub.name.as_str().eq_ignore_ascii_case("DAYLIGHT") {
            v.daylight.push(offset);
        }
    }
    Some((time::tz_key(name), v))
}

/// The block → an [`Event`], or why it is skipped.
pub(super) fn read_event(b: &Block, key: &[u8]) -> Result<Event, &'static str> {
    let text = b.text.as_deref().ok_or("bad_event")?;
    let unfolded = icalendar::parser::unfold(text);
    let c = parse_component(&unfolded).ok_or("bad_event")?;
    if !c.name.as_str().eq_ignore_ascii_case("VEVENT") {
        return Err("bad_event");
    }
    let mut uid = None;
    let mut start_prop = None;
    let mut e = Event {
        uid_hash: String::new(),
        no_uid: false,
        start: (Value::Date(NaiveDate::MIN), None),
        end: None,
        duration: None,
        rrule: None,
        rdates: Vec::new(),
        exdates: Vec::new(),
        recurrence_id: None,
        status: Status::Confirmed,
        transparent: false,
        location: None,
    };
    let mut bad_time = false;
    for p in &c.properties {
        let val = p.val.as_str();
        if is(p, "UID") {
            uid = Some(val);
        } else if is(p, "DTSTART") {
            start_prop = Some(p);
        } else if is(p, "DTEND") {
            match stamp(p) {
                Some(s) => e.end = Some(s),
                None => bad_time = true,
            }
        } else if is(p, "DURATION") {
            e.duration = Some(time::parse_duration(val));
        } else if is(p, "RRULE") {
            e.rrule.get_or_insert_with(|| val.to_owned());
        } else if is(p, "RDATE") {
            stamps(p, &mut e.rdates);
        } else if is(p, "EXDATE") {
            stamps(p, &mut e.exdates);
        } else if is(p, "RECURRENCE-ID") {
            match stamp(p) {
                Some(s) => e.recurrence_id = Some(s),
                None => bad_time = true,
            }
        } else if is(p, "STATUS") {
            e.status = match val.trim().to_ascii_uppercase().as_str() {
                "CANCELLED" | "CANCELED" => Status::Cancelled,
                "TENTATIVE" => Status::Tentative,
                _ => Status::Confirmed,
            };
        } else if is(p, "TRANSP") {
            e.transparent = val.trim().eq_ignore_ascii_case("TRANSPARENT");
        } else if is(p, "LOCATION") {
            let l = val.trim();
            if !l.is_empty() {
                e.location = Some(l.to_owned());
            }
        }
    }
    match start_prop {
        Some(p) => e.start = stamp(p).ok_or("bad_time")?,
        // An override without DTSTART is at its RECURRENCE-ID.
        None => e.start = e.recurrence_id.clone().ok_or("no_start")?,
    }
    if bad_time {
        return Err("bad_time");
    }
    let mut h = Sha256::new();
    h.update(key);
    h.update([0]);
    match uid.map(str::trim).filter(|u| !u.is_empty()) {
        Some(uid) => h.update(uid.as_bytes()),
        None => {
            // Stable across fetches: the start as written, its zone, the location.
            let (v, tzid) = &e.start;
            h.update([1]);
            h.update(v.naive().format("%Y%m%dT%H%M%S").to_string().as_bytes());
            h.update([u8::from(v.is_date()), u8::from(matches!(v, Value::Utc(_)))]);
            h.update(tzid.as_deref().unwrap_or("").as_bytes());
            h.update([0]);
            h.update(e.location.as_deref().unwrap_or("").as_bytes());
            e.no_uid = true;
        }
    }
    e.uid_hash = hex::encode(&h.finalize()[..16]);
    Ok(e)
}
