//! Date, date-time and duration values, and time zone names → zones.
//!
//! Values are read here rather than through `icalendar::DatePerhapsTime` because that type
//! cannot say "a TZID that is a Windows name" or "a TZID plus a trailing Z", and because every
//! value is bounded here to the years [`MIN_YEAR`]..=[`MAX_YEAR`], which keeps all later
//! arithmetic (ours, chrono's and rrule's) far from overflow.

use std::collections::HashMap;

use chrono::{
    DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, NaiveTime, Offset, TimeZone, Utc,
};
use chrono_tz::Tz;

/// Values outside these years are refused (`bad_time`): no room is booked in them, and the
/// bound keeps date arithmetic from overflowing.
pub(crate) const MIN_YEAR: i32 = 1900;
pub(crate) const MAX_YEAR: i32 = 2200;

/// The longest booking kept (an all-day booking of a room for a whole academic year fits).
pub(crate) const MAX_LENGTH_DAYS: i64 = 400;

/// A `DATE` or `DATE-TIME` value as written, before a zone is applied.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Value {
    /// `VALUE=DATE` (or eight digits): an all-day date.
    Date(NaiveDate),
    /// A date-time ending in `Z`.
    Utc(NaiveDateTime),
    /// A date-time without `Z`: local in its `TZID`'s zone, or floating (the campus zone).
    Local(NaiveDateTime),
}

impl Value {
    /// Parses `YYYYMMDD`, `YYYYMMDDTHHMMSS` or `YYYYMMDDTHHMMSSZ`. `date` is whether the
    /// property says `VALUE=DATE`; a date-time then is read as its date (lenient).
    pub(crate) fn parse(s: &str, date: bool) -> Option<Value> {
        let s = s.trim().as_bytes();
        let d = parse_date(s.get(..8)?)?;
        let rest = &s[8..];
        if rest.is_empty() {
            return Some(Value::Date(d));
        }
        if date {
            // `VALUE=DATE` with a time after it: take the date.
            return (rest.len() >= 7 && (rest[0] == b'T' || rest[0] == b't'))
                .then_some(Value::Date(d));
        }
        if rest.len() < 7 || !(rest[0] == b'T' || rest[0] == b't') {
            return None;
        }
        let t = parse_time(&rest[1..7])?;
        match &rest[7..] {
            b"" => Some(Value::Local(d.and_time(t))),
            b"Z" | b"z" => Some(Value::Utc(d.and_time(t))),
            _ => None,
        }
    }

    pub(crate) fn is_date(self) -> bool {
        matches!(self, Value::Date(_))
    }

    /// The instant, reading a date as local midnight and a local time in `zone`.
    pub(crate) fn to_utc(self, zone: Tz) -> DateTime<Utc> {
        match self {
            Value::Date(d) => local_to_utc(d.and_time(NaiveTime::MIN), zone),
            Value::Utc(n) => Utc.from_utc_datetime(&n),
            Value::Local(n) => local_to_utc(n, zone),
        }
    }

    /// The date-time as written (a date at midnight).
    pub(crate) fn naive(self) -> NaiveDateTime {
        match self {
            Value::Date(d) => d.and_time(NaiveTime::MIN),
            Value::Utc(n) | Value::Local(n) => n,
        }
    }
}

fn digits(s: &[u8]) -> Option<u32> {
    if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(s.iter().fold(0, |n, &c| n * 10 + u32::from(c - b'0')))
}

fn parse_date(s: &[u8]) -> Option<NaiveDate> {
    let year = i32::try_from(digits(s.get(0..4)?)?).ok()?;
    if !(MIN_YEAR..=MAX_YEAR).contains(&year) {
        return None;
    }
    NaiveDate::from_ymd_opt(year, digits(s.get(4..6)?)?, digits(s.get(6..8)?)?)
}

fn parse_time(s: &[u8]) -> Option<NaiveTime> {
    let (h, m, mut sec) = (
        digits(s.get(0..2)?)?,
        digits(s.get(2..4)?)?,
        digits(s.get(4..6)?)?,
    );
    if sec == 60 {
        sec = 59; // a leap second, as RFC 5545 allows: the second before will do
    }
    NaiveTime::from_hms_opt(h, m, sec)
}

/// A local time in `zone` → the instant. An ambiguous time (the repeated hour when clocks go
/// back) is the first of the two; a time that does not exist (skipped when clocks go forward)
/// is read with the offset from before the gap, so 02:30 on the spring-forward day in
/// Europe/Amsterdam is 01:30 UTC (03:30 summer time), as `rrule` itself resolves it.
pub(crate) fn local_to_utc(local: NaiveDateTime, zone: Tz) -> DateTime<Utc> {
    if let Some(dt) = zone.from_local_datetime(&local).earliest() {
        return dt.with_timezone(&Utc);
    }
    // In a gap: the offset in force half a day earlier (gaps are an hour or so, and months
    // apart), applied to the written time.
    let before = local - Duration::hours(12);
    let offset = zone
        .offset_from_utc_datetime(&before)
        .fix()
        .local_minus_utc();
    Utc.from_utc_datetime(&(local - Duration::seconds(i64::from(offset))))
}

/// A length as RFC 5545 counts it: whole days are nominal (a day is 23 h on the day clocks go
/// forward), the rest exact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) struct Length {
    pub days: i64,
    pub secs: i64,
}

impl Length {
    /// `start` (local time in `zone`) + this length → the end instant.
    pub(crate) fn end(self, start: DateTime<Utc>, zone: Tz) -> DateTime<Utc> {
        let base = if self.days == 0 {
            start
        } else {
            let local = start.with_timezone(&zone).naive_local() + Duration::days(self.days);
            local_to_utc(local, zone)
        };
        base + Duration::seconds(self.secs)
    }

    pub(crate) fn is_zero(self) -> bool {
        self.days == 0 && self.secs == 0
    }

    /// Within [`MAX_LENGTH_DAYS`] and not negative.
    pub(crate) fn in_bounds(self) -> bool {
        self.days >= 0 && self.secs >= 0 && self.days + self.secs / 86_400 <= MAX_LENGTH_DAYS
    }
}

/// An RFC 5545 `DURATION` value (`P1W`, `P1D`, `PT1H30M`, `P1DT2H`, with an optional sign).
/// A negative duration is refused. Weeks and days are nominal, hours/minutes/seconds exact.
pub(crate) fn parse_duration(s: &str) -> Option<Length> {
    let s = s.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return None;
    }
    let s = s.strip_prefix(['P', 'p'])?;
    let (mut len, mut in_time, mut num, mut any) = (Length::default(), false, None::<i64>, false);
    for c in s.chars() {
        match c {
            '0'..='9' => {
                let d = i64::from(c as u8 - b'0');
                let n = num.unwrap_or(0).checked_mul(10)?.checked_add(d)?;
                if n > 10_000_000 {
                    return None;
                }
                num = Some(n);
            }
            'T' | 't' if !in_time && num.is_none() => in_time = true,
            _ => {
                let n = num.take()?;
                any = true;
                match (c.to_ascii_uppercase(), in_time) {
                    ('W', false) => len.days += n * 7,
                    ('D', false) => len.days += n,
                    ('H', true) => len.secs += n * 3600,
                    ('M', true) => len.secs += n * 60,
                    ('S', true) => len.secs += n,
                    _ => return None,
                }
            }
        }
    }
    (any && num.is_none() && len.in_bounds()).then_some(len)
}

/// `+0100`, `-0500`, `+053000` → seconds east of UTC.
pub(crate) fn parse_utc_offset(s: &str) -> Option<i32> {
    let s = s.trim().as_bytes();
    let sign = match s.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let h = digits(s.get(1..3)?)?;
    let m = digits(s.get(3..5)?)?;
    let sec = match s.get(5..) {
        None | Some(b"") => 0,
        Some(rest) => digits(rest.get(..2)?)?,
    };
    if h > 23 || m > 59 || sec > 59 {
        return None;
    }
    Some(sign * i32::try_from(h * 3600 + m * 60 + sec).ok()?)
}

/// What a `VTIMEZONE` says of its offsets (`TZOFFSETTO` of its `STANDARD` and `DAYLIGHT`
/// parts), for a `TZID` that names no zone we know.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct VTimezone {
    pub standard: Vec<i32>,
    pub daylight: Vec<i32>,
}

/// A `TZID` resolved: the zone, and whether it was a guess (unknown name, read as the campus
/// zone: counted in `skipped["unknown_tzid_as_local"]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub zone: Tz,
    pub guessed: bool,
}

/// Resolves `TZID`s, each name once.
pub(crate) struct Zones<'a> {
    campus: Tz,
    vtimezones: &'a HashMap<String, VTimezone>,
    year: i32,
    cache: HashMap<String, Resolved>,
}

impl<'a> Zones<'a> {
    pub(crate) fn new(campus: Tz, vtimezones: &'a HashMap<String, VTimezone>, year: i32) -> Self {
        Zones {
            campus,
            vtimezones,
            year,
            cache: HashMap::new(),
        }
    }

    pub(crate) fn campus(&self) -> Tz {
        self.campus
    }

    pub(crate) fn resolve(&mut self, tzid: &str) -> Resolved {
        if let Some(r) = self.cache.get(tzid) {
            return *r;
        }
        let r = match zone_by_name(tzid) {
            Some(zone) => Resolved {
                zone,
                guessed: false,
            },
            None => self.by_offsets(tzid).unwrap_or(Resolved {
                zone: self.campus,
                guessed: true,
            }),
        };
        if self.cache.len() < 1000 {
            self.cache.insert(tzid.to_owned(), r);
        }
        r
    }

    /// An unknown name with a `VTIMEZONE`: a zone without daylight saving at a whole hour →
    /// `Etc/GMT±h`; standard and daylight offsets equal to the campus zone's (January and
    /// July) → the campus zone (e.g. Exchange's "(UTC+01:00) Amsterdam, Berlin, …").
    fn by_offsets(&self, tzid: &str) -> Option<Resolved> {
        let v = self.vtimezones.get(&tz_key(tzid))?;
        let known = |zone| Resolved {
            zone,
            guessed: false,
        };
        let std = *v.standard.first().or(v.daylight.first())?;
        if v.daylight.iter().chain(&v.standard).all(|&o| o == std) {
            if std % 3600 == 0 && (-12..=14).contains(&(std / 3600)) {
                let h = std / 3600;
                // POSIX-style names: Etc/GMT-1 is UTC+1.
                let name = match h {
                    0 => "Etc/GMT".to_owned(),
                    h if h > 0 => format!("Etc/GMT-{h}"),
                    h => format!("Etc/GMT+{}", -h),
                };
                return name.parse::<Tz>().ok().map(known);
            }
            return None;
        }
        let dst = *v.daylight.first()?;
        let campus = |m| {
            let d = NaiveDate::from_ymd_opt(self.year, m, 15)?.and_time(NaiveTime::MIN);
            Some(
                self.campus
                    .offset_from_utc_datetime(&d)
                    .fix()
                    .local_minus_utc(),
            )
        };
        (campus(1)? == std && campus(7)? == dst || campus(1)? == dst && campus(7)? == std)
            .then(|| known(self.campus))
    }
}

/// A `TZID` as a `VTIMEZONE`'s name and as a parameter compare: unquoted, trimmed, with
/// TEXT escapes of `,` and `;` undone.
pub(crate) fn tz_key(tzid: &str) -> String {
    clean(tzid).replace("\\,", ",").replace("\\;", ";")
}

/// Trims space and double quotes.
fn clean(tzid: &str) -> &str {
    tzid.trim().trim_matches('"').trim()
}

/// An IANA name, a Windows name (CLDR's table in `localzone`), or either after a path-like
/// prefix (`/Europe/Amsterdam`, `/mozilla.org/20050126_1/Europe/Amsterdam`,
/// `/softwarestudio.org/Olson_20011030_5/Europe/Amsterdam`).
pub(crate) fn zone_by_name(tzid: &str) -> Option<Tz> {
    let name = clean(tzid);
    if name.is_empty() || name.len() > 200 {
        return None;
    }
    let direct = |n: &str| {
        n.parse::<Tz>().ok().or_else(|| {
            localzone::win_zone_to_iana(n, None).and_then(|iana| iana.parse::<Tz>().ok())
        })
    };
    if let Some(z) = direct(name) {
        return Some(z);
    }
    // Each tail after a '/': the longest that names a zone.
    name.match_indices('/')
        .map(|(i, _)| &name[i + 1..])
        .find_map(|tail| (!tail.is_empty()).then(|| direct(tail)).flatten())
}

/// The year of `t`, for the campus zone's January and July offsets.
pub(crate) fn year_of(t: DateTime<Utc>) -> i32 {
    t.year().clamp(MIN_YEAR, MAX_YEAR)
}
