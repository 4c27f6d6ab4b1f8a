//! A feed's text → the occurrences that overlap a window.
//!
//! # How
//! The feed is cut into its top-level components (`lines`: `icalendar`'s parser refuses a
//! whole feed for one bad line, so each component is parsed by it on its own; a bad one is
//! skipped as `bad_event`). Each `VEVENT` is read with `icalendar::parser` (`read`: unfolding,
//! parameters, quoted values, TEXT unescaping); its values and zones in `time`. Recurrence
//! is expanded by `rrule` (an `RRuleSet` of the event's `RRULE`, `RDATE`s and `EXDATE`s,
//! anchored at `DTSTART` in the event's zone, so a weekly 09:00 lecture stays 09:00 local
//! across daylight-saving changes). Only room, start, end, status and a keyed UID hash leave
//! this module: titles, descriptions, organisers, attendees and the UID itself are read by
//! the parser and dropped, and no error message quotes the feed (they name a line or a
//! property). Nothing is logged.
//!
//! # Choices where RFC 5545 or the issue leave room
//! - **Zones.** A `TZID` is an IANA name, a Windows name as Exchange writes it
//!   ("W. Europe Standard Time", by CLDR's table in `localzone`), either of those after a
//!   path prefix (`/Europe/Amsterdam`, `/mozilla.org/…/Europe/Amsterdam`), quoted or not.
//!   Otherwise the feed's `VTIMEZONE` of that name is consulted: a zone without daylight
//!   saving at a whole-hour offset becomes `Etc/GMT±h`; standard and daylight offsets equal to
//!   the campus zone's (January, July) make it the campus zone. Anything else is read as the
//!   campus zone and the event counted in `skipped["unknown_tzid_as_local"]` (it is still
//!   kept). Floating times and all-day dates are in the campus zone; a `TZID` on a `DATE` is
//!   ignored.
//! - **DST edges.** An ambiguous local time is the first (earlier) instant; a local time in a
//!   spring-forward gap is read with the offset from before the gap (02:30 → 03:30 summer
//!   time), which is how `rrule` resolves recurring instances too.
//! - **Length.** `DTEND` gives an exact length applied to every instance (RFC 5545 §3.8.5.3);
//!   `DURATION` a nominal one (days in local time, then hours exact). All-day events end at the
//!   local midnight after their last day (23 h on the spring-forward day); without `DTEND` an
//!   all-day event is one day, and one whose `DTEND` equals its `DTSTART` too. A timed event
//!   without `DTEND` and `DURATION` (or with `DTEND` = `DTSTART`) ends when it starts and books
//!   nothing: skipped as `no_duration`. `DTEND` before `DTSTART`, a negative or bad
//!   `DURATION`, a length over 400 days, or a date outside 1900–2200: `bad_time`.
//! - **Recurrence.** `DTSTART` counts as an instance only if the `RRULE` yields it (as
//!   `rrule` and the `icalendar` crate do; RFC 5545 calls an unsynchronised `DTSTART`
//!   undefined), or if there is no `RRULE`. A floating or `DATE` `UNTIL` is read in the
//!   event's zone (a `DATE` `UNTIL` of a timed series as the end of that day); an `UNTIL`
//!   before `DTSTART` leaves `DTSTART` as the only instance. A `DATE` `EXDATE` on a timed
//!   series removes that local day's instances. `RDATE;VALUE=PERIOD` adds the period's start
//!   (with the event's length). An `RRULE` that `rrule` refuses: `bad_rrule`.
//! - **Overrides.** A `VEVENT` with `RECURRENCE-ID` replaces the instance of its UID that
//!   starts at that instant (matched as instants, whatever zones the two are written in). It
//!   is read as a single event of its own (its `RRULE`/`RDATE` ignored, `RANGE=THISANDFUTURE`
//!   treated as this instance only), inheriting the series' `LOCATION` and length if it has
//!   none. A transparent override removes the instance and books nothing. An override whose
//!   series is not in the feed is kept as a single event.
//! - **Status.** `CANCELLED` (or `CANCELED`) → cancelled, kept; `TENTATIVE` → tentative;
//!   anything else → confirmed. `TRANSP:TRANSPARENT` → skipped as `transparent`.
//! - **UID.** `uid_hash` is the hex of the first 16 bytes of SHA-256(key ‖ 0x00 ‖ UID). An
//!   event without a UID is kept, hashed from key ‖ 0x00 ‖ 0x01 ‖ its `DTSTART` (value and
//!   `TZID`) ‖ `LOCATION` (stable across fetches), and counted in `skipped["no_uid"]`.
//! - **Rooms.** [`FeedMap::Locations`]: the trimmed `LOCATION`, case-insensitively; if the
//!   whole does not match, its parts split at `,` and `;`, booking every part that matches.
//!   None: `unmapped_location` (so is an event without `LOCATION`).
//! - **Bounds.** Per event at most [`MAX_PER_EVENT`] occurrences in the window and
//!   [`MAX_STEPS_PER_EVENT`] recurrence instances stepped through (including those before the
//!   window); per feed [`MAX_PER_FEED`] occurrences and [`MAX_STEPS_PER_FEED`] steps. An event
//!   cut short keeps what it had and is counted in `too_many_occurrences`; so is every event
//!   after the feed's budget ran out.
//! - **Duplicates.** Of occurrences with the same (room, start, uid_hash) one is kept: the one
//!   that books (confirmed, then tentative, then cancelled), then the earliest end.
//! - **Errors.** Empty text, text not starting with `BEGIN:VCALENDAR`, or a NUL byte:
//!   [`FeedError::NotICalendar`]; a feed without its `END:VCALENDAR`: [`FeedError::Truncated`]
//!   (a cut-off download should not silently drop the bookings after the cut).

mod lines;
mod read;
mod time;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

use crate::{Occurrence, Status};
use lines::Kind;
use read::{Event, read_event, read_vtimezone};
use time::{Length, Value, Zones};

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
    /// Two counts are of events kept all the same: `unknown_tzid_as_local` and `no_uid`.
    pub skipped: BTreeMap<&'static str, u64>,
}

/// A feed that cannot be read at all. Messages name positions and property names, never an
/// event's text.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FeedError {
    #[error("not an iCalendar feed: {0}")]
    NotICalendar(String),
    /// The text ends (at this line) inside the calendar: a download cut short.
    #[error("iCalendar feed truncated: no END:VCALENDAR after line {0}")]
    Truncated(usize),
}

/// Occurrences kept of one event within the window (more: `too_many_occurrences`).
pub const MAX_PER_EVENT: usize = 10_000;
/// Occurrences kept of one feed.
pub const MAX_PER_FEED: usize = 500_000;
/// Recurrence instances stepped through for one event, before the window included.
pub const MAX_STEPS_PER_EVENT: u64 = 100_000;
/// Recurrence instances stepped through for one feed.
pub const MAX_STEPS_PER_FEED: u64 = 1_000_000;

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
    let blocks = lines::split(text)?;
    let mut out = Out::default();

    let mut vtimezones = HashMap::new();
    for b in blocks.iter().filter(|b| b.kind == Kind::Timezone) {
        if let Some((name, v)) = b.text.as_deref().and_then(read_vtimezone) {
            vtimezones.insert(name, v);
        }
    }
    let rooms = Rooms::new(map);
    let mut zones = Zones::new(tz, &vtimezones, time::year_of(from));

    let mut events = Vec::new();
    for b in blocks.iter().filter(|b| b.kind == Kind::Event) {
        match read_event(b, key) {
            Ok(e) => events.push(e),
            Err(reason) => out.skip(reason),
        }
    }
    if from >= to {
        return Ok(out.finish());
    }

    // Instances replaced by overrides: uid_hash → their RECURRENCE-ID instants.
    let mut replaced: HashMap<&str, HashSet<i64>> = HashMap::new();
    for e in &events {
        if let Some((v, tzid)) = &e.recurrence_id {
            let at = when(*v, tzid.as_deref(), &mut zones).0;
            replaced
                .entry(e.uid_hash.as_str())
                .or_default()
                .insert(at.timestamp());
        }
    }

    let ctx = Ctx {
        from,
        to,
        rooms: &rooms,
    };
    // Series first, so their overrides can inherit their location and length.
    let mut series: HashMap<&str, (Option<&str>, Option<Length>)> = HashMap::new();
    for e in events.iter().filter(|e| e.recurrence_id.is_none()) {
        let none = HashSet::new();
        let skip = replaced.get(e.uid_hash.as_str()).unwrap_or(&none);
        let len = guarded(&mut out, |out| expand(e, None, skip, &ctx, &mut zones, out));
        series
            .entry(e.uid_hash.as_str())
            .or_insert((e.location.as_deref(), len));
    }
    for e in events.iter().filter(|e| e.recurrence_id.is_some()) {
        let inherit = series.get(e.uid_hash.as_str()).copied();
        guarded(&mut out, |out| {
            expand(e, inherit, &HashSet::new(), &ctx, &mut zones, out)
        });
    }
    Ok(out.finish())
}

/// Runs one event's expansion; should anything in it (or in the libraries under it) panic,
/// the event is counted as `internal_error` and the feed goes on. (The fuzz target's panic
/// hook aborts first, so fuzzing still finds such panics.)
fn guarded<T>(out: &mut Out, f: impl FnOnce(&mut Out) -> Option<T>) -> Option<T> {
    match catch_unwind(AssertUnwindSafe(|| f(out))) {
        Ok(r) => r,
        Err(_) => {
            out.skip("internal_error");
            None
        }
    }
}

#[derive(Default)]
struct Out {
    parsed: Parsed,
    steps: u64,
    full: bool,
}

impl Out {
    fn skip(&mut self, reason: &'static str) {
        *self.parsed.skipped.entry(reason).or_insert(0) += 1;
    }

    fn finish(mut self) -> Parsed {
        let v = &mut self.parsed.occurrences;
        let rank = |s: Status| match s {
            Status::Confirmed => 0,
            Status::Tentative => 1,
            Status::Cancelled => 2,
        };
        v.sort_unstable_by(|a, b| {
            (&a.room, a.start, &a.uid_hash, rank(a.status), a.end).cmp(&(
                &b.room,
                b.start,
                &b.uid_hash,
                rank(b.status),
                b.end,
            ))
        });
        v.dedup_by(|b, a| a.room == b.room && a.start == b.start && a.uid_hash == b.uid_hash);
        v.sort_unstable_by(|a, b| {
            (&a.room, a.start, a.end, &a.uid_hash).cmp(&(&b.room, b.start, b.end, &b.uid_hash))
        });
        self.parsed
    }
}

struct Ctx<'a> {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    rooms: &'a Rooms<'a>,
}

/// Room lookup.
enum Rooms<'a> {
    One(&'a str),
    /// Lower-cased trimmed `LOCATION` → room.
    Map(HashMap<String, &'a str>),
}

impl<'a> Rooms<'a> {
    fn new(map: FeedMap<'a>) -> Self {
        match map {
            FeedMap::Room(r) => Rooms::One(r),
            FeedMap::Locations(m) => Rooms::Map(
                m.iter()
                    .map(|(k, v)| (k.trim().to_lowercase(), v.as_str()))
                    .collect(),
            ),
        }
    }

    /// The rooms an event with this `LOCATION` books (none: unmapped).
    fn of(&self, location: Option<&str>) -> Vec<&'a str> {
        let m = match self {
            Rooms::One(r) => return vec![*r],
            Rooms::Map(m) => m,
        };
        let Some(loc) = location else {
            return Vec::new();
        };
        let look = |s: &str| m.get(&s.trim().to_lowercase()).copied();
        if let Some(r) = look(loc) {
            return vec![r];
        }
        let mut rooms: Vec<&str> = Vec::new();
        for part in loc.split([',', ';']) {
            if let Some(r) = look(part)
                && !rooms.contains(&r)
            {
                rooms.push(r);
            }
        }
        rooms
    }
}

/// A stamp → its instant, its zone, and whether the zone was guessed.
fn when(v: Value, tzid: Option<&str>, zones: &mut Zones<'_>) -> (DateTime<Utc>, Tz, bool) {
    match (v, tzid) {
        (Value::Utc(_), _) => (v.to_utc(Tz::UTC), Tz::UTC, false),
        (Value::Local(_), Some(id)) => {
            let r = zones.resolve(id);
            (v.to_utc(r.zone), r.zone, r.guessed)
        }
        _ => (v.to_utc(zones.campus()), zones.campus(), false),
    }
}

/// One event's occurrences into `out`. Returns its length (for its overrides to inherit).
/// `inherit`: for an override, the series' location and length.
fn expand(
    e: &Event,
    inherit: Option<(Option<&str>, Option<Length>)>,
    replaced: &HashSet<i64>,
    ctx: &Ctx<'_>,
    zones: &mut Zones<'_>,
    out: &mut Out,
) -> Option<Length> {
    let uid_hash = e.uid_hash.as_str();
    if e.no_uid {
        out.skip("no_uid");
    }
    if e.transparent {
        out.skip("transparent");
        return None;
    }
    let location = e
        .location
        .as_deref()
        .or_else(|| inherit.and_then(|(l, _)| l));
    let rooms = ctx.rooms.of(location);
    if rooms.is_empty() {
        out.skip("unmapped_location");
        return None;
    }

    let (start, zone, mut guessed) = when(e.start.0, e.start.1.as_deref(), zones);
    let all_day = e.start.0.is_date();
    let inherited = inherit.and_then(|(_, l)| l);
    let len = match (&e.end, e.duration) {
        (Some((Value::Date(end), _)), _) if all_day => {
            let Value::Date(s) = e.start.0 else {
                return None;
            };
            let days = (*end - s).num_days();
            (days >= 0).then_some(Length {
                days: days.max(1),
                secs: 0,
            })
        }
        (Some((v, tzid)), _) => {
            let (end, _, g) = when(*v, tzid.as_deref(), zones);
            guessed |= g;
            let secs = (end - start).num_seconds();
            (secs >= 0).then_some(Length { days: 0, secs })
        }
        (None, Some(d)) => d,
        (None, None) if all_day => Some(Length { days: 1, secs: 0 }),
        (None, None) => Some(inherited.unwrap_or_default()),
    };
    let Some(len) = len.filter(|l| l.in_bounds()) else {
        out.skip("bad_time");
        return None;
    };
    if len.is_zero() {
        out.skip("no_duration");
        return None;
    }
    if guessed {
        out.skip("unknown_tzid_as_local");
    }

    if out.full {
        out.skip("too_many_occurrences");
        return Some(len);
    }
    let mut emit = Emitter {
        rooms: &rooms,
        uid_hash,
        status: e.status,
        len,
        zone,
        ctx,
        count: 0,
        steps: 0,
    };
    let is_override = e.recurrence_id.is_some();
    let done = if is_override || (e.rrule.is_none() && e.rdates.is_empty()) {
        let excluded = !is_override
            && e.exdates
                .iter()
                .any(|(v, tz)| when(*v, tz.as_deref(), zones).0 == start);
        if excluded || replaced.contains(&start.timestamp()) {
            Step::Go
        } else {
            emit.instance(start, out)
        }
    } else {
        match recurrence(e, start, zone, all_day, zones) {
            Some((set, ex_days)) => {
                let mut r = Step::Go;
                let set = set.limit();
                for at in &set {
                    let at = at.with_timezone(&Utc);
                    if at >= ctx.to {
                        break;
                    }
                    r = emit.step(out);
                    if r != Step::Go {
                        break;
                    }
                    if replaced.contains(&at.timestamp())
                        || (!ex_days.is_empty()
                            && ex_days.contains(&at.with_timezone(&zone).date_naive()))
                    {
                        continue;
                    }
                    r = emit.instance(at, out);
                    if r != Step::Go {
                        break;
                    }
                }
                r
            }
            None => {
                out.skip("bad_rrule");
                return None;
            }
        }
    };
    if done == Step::TooMany {
        out.skip("too_many_occurrences");
    }
    Some(len)
}

/// The event's `RRuleSet`, and the local days a `DATE` `EXDATE` removes from a timed series.
fn recurrence(
    e: &Event,
    start: DateTime<Utc>,
    zone: Tz,
    all_day: bool,
    zones: &mut Zones<'_>,
) -> Option<(rrule::RRuleSet, HashSet<NaiveDate>)> {
    let rz = rrule::Tz::Tz(zone);
    let dt = start.with_timezone(&rz);
    let mut set = rrule::RRuleSet::new(dt);
    let mut has_rule = false;
    if let Some(rule) = &e.rrule
        && let Some(rule) = rewrite_until(rule, start, zone, all_day)?
    {
        let rule: rrule::RRule<rrule::Unvalidated> = rule.parse().ok()?;
        set = set.rrule(rule.validate(dt).ok()?);
        has_rule = true;
    }
    if !has_rule {
        set = set.rdate(dt);
    }
    for (v, tzid) in &e.rdates {
        set = set.rdate(when(*v, tzid.as_deref(), zones).0.with_timezone(&rz));
    }
    let mut ex_days = HashSet::new();
    for (v, tzid) in &e.exdates {
        match v {
            Value::Date(d) if !all_day => {
                ex_days.insert(*d);
            }
            _ => set = set.exdate(when(*v, tzid.as_deref(), zones).0.with_timezone(&rz)),
        }
    }
    Some((set, ex_days))
}

/// `rrule` reads a floating `UNTIL` in the machine's zone and insists on UTC for a zoned
/// `DTSTART`; so every `UNTIL` is rewritten here to UTC, read in the event's zone.
/// `Some(None)`: `UNTIL` is before `DTSTART`, the rule yields nothing. `None`: a bad `UNTIL`
/// or a character outside the RRULE grammar.
fn rewrite_until(
    rule: &str,
    start: DateTime<Utc>,
    zone: Tz,
    all_day: bool,
) -> Option<Option<String>> {
    // The RRULE grammar is ASCII letters, digits and `=;,+-`. Anything else is refused here:
    // rrule 0.14 slices BYDAY values by bytes and panics (quoting the value) on non-ASCII.
    if !rule
        .trim()
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || b"=;,+-".contains(&c))
    {
        return None;
    }
    let mut parts = Vec::new();
    for part in rule.trim().split(';').filter(|p| !p.trim().is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        if !k.trim().eq_ignore_ascii_case("UNTIL") {
            parts.push(part.trim().to_owned());
            continue;
        }
        let until = match Value::parse(v, false)? {
            Value::Date(d) if !all_day => time::local_to_utc(d.and_hms_opt(23, 59, 59)?, zone),
            u @ (Value::Date(_) | Value::Local(_)) => u.to_utc(zone),
            u @ Value::Utc(_) => u.to_utc(Tz::UTC),
        };
        if until < start {
            return Some(None);
        }
        parts.push(format!("UNTIL={}", until.format("%Y%m%dT%H%M%SZ")));
    }
    Some(Some(parts.join(";")))
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Step {
    Go,
    TooMany,
}

/// Turns instances of one event into occurrences, within the bounds.
struct Emitter<'a> {
    rooms: &'a [&'a str],
    uid_hash: &'a str,
    status: Status,
    len: Length,
    zone: Tz,
    ctx: &'a Ctx<'a>,
    count: usize,
    steps: u64,
}

impl Emitter<'_> {
    /// One more recurrence instance stepped through.
    fn step(&mut self, out: &mut Out) -> Step {
        self.steps += 1;
        out.steps += 1;
        if out.steps > MAX_STEPS_PER_FEED {
            out.full = true;
            return Step::TooMany;
        }
        if self.steps > MAX_STEPS_PER_EVENT {
            return Step::TooMany;
        }
        Step::Go
    }

    /// An instance starting at `start`: an occurrence per room if it overlaps the window.
    fn instance(&mut self, start: DateTime<Utc>, out: &mut Out) -> Step {
        if start >= self.ctx.to {
            return Step::Go;
        }
        let end = self.len.end(start, self.zone);
        if end <= self.ctx.from || end <= start {
            return Step::Go;
        }
        for room in self.rooms {
            if self.count >= MAX_PER_EVENT {
                return Step::TooMany;
            }
            if out.parsed.occurrences.len() >= MAX_PER_FEED {
                out.full = true;
                return Step::TooMany;
            }
            self.count += 1;
            out.parsed.occurrences.push(Occurrence {
                room: (*room).to_owned(),
                start,
                end,
                status: self.status,
                uid_hash: self.uid_hash.to_owned(),
            });
        }
        Step::Go
    }
}
