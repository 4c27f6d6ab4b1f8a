//! Local-time schedules (the nightly reset), correct across daylight-saving changes.

use std::collections::BTreeMap;

use chrono::{DateTime, LocalResult, NaiveDate, TimeDelta, TimeZone, Utc};
use chrono_tz::Tz;
use tellijn_config::Campus;

/// The local reset time (hour, minute) of every place that has one: rooms with `reset`, and
/// buildings with entrance lines at the earliest reset time of their rooms.
pub fn reset_times(campus: &Campus) -> BTreeMap<String, (u32, u32)> {
    let mut out = BTreeMap::new();
    for r in &campus.rooms {
        let Some(hm) = r
            .reset
            .as_deref()
            .and_then(tellijn_config::campus::parse_reset)
        else {
            continue;
        };
        out.insert(r.id.clone(), hm);
        let building = r.building.as_str();
        let entrance = campus
            .sensors
            .iter()
            .flat_map(|s| &s.lines)
            .any(|l| l.into == building || l.from.as_deref() == Some(building));
        if entrance {
            let b = out.entry(r.building.clone()).or_insert(hm);
            *b = (*b).min(hm);
        }
    }
    out
}

/// The first instant after `after` at which the local wall clock in `tz` reads `hh:mm`.
/// On a spring-forward night a time inside the gap fires at the first valid minute after it;
/// on a fall-back night an ambiguous time fires at its first occurrence.
pub fn next_local(after: DateTime<Utc>, tz: Tz, hh: u32, mm: u32) -> DateTime<Utc> {
    let mut day: NaiveDate = after.with_timezone(&tz).date_naive() - TimeDelta::days(1);
    for _ in 0..4 {
        if let Some(t) = at_local(day, tz, hh, mm)
            && t > after
        {
            return t;
        }
        day += TimeDelta::days(1);
    }
    // Unreachable for real time zones; fall back to a day later rather than never.
    after + TimeDelta::days(1)
}

fn at_local(day: NaiveDate, tz: Tz, hh: u32, mm: u32) -> Option<DateTime<Utc>> {
    let mut naive = day.and_hms_opt(hh, mm, 0)?;
    for _ in 0..=180 {
        match tz.from_local_datetime(&naive) {
            LocalResult::Single(t) => return Some(t.with_timezone(&Utc)),
            LocalResult::Ambiguous(first, _) => return Some(first.with_timezone(&Utc)),
            LocalResult::None => naive += TimeDelta::minutes(1),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn three_oclock_amsterdam_across_dst() {
        let ams: Tz = "Europe/Amsterdam".parse().unwrap();
        // An ordinary winter night: 03:00 CET = 02:00 UTC.
        assert_eq!(
            next_local(utc("2026-01-10T12:00:00Z"), ams, 3, 0),
            utc("2026-01-11T02:00:00Z")
        );
        // Spring forward (2026-03-29, 02:00 → 03:00): 03:00 CEST = 01:00 UTC.
        assert_eq!(
            next_local(utc("2026-03-28T12:00:00Z"), ams, 3, 0),
            utc("2026-03-29T01:00:00Z")
        );
        // Fall back (2026-10-25, 03:00 → 02:00): 03:00 CET = 02:00 UTC, once.
        assert_eq!(
            next_local(utc("2026-10-24T12:00:00Z"), ams, 3, 0),
            utc("2026-10-25T02:00:00Z")
        );
        assert_eq!(
            next_local(utc("2026-10-25T02:00:00Z"), ams, 3, 0),
            utc("2026-10-26T02:00:00Z")
        );
        // A time inside the spring gap fires when the gap ends; an ambiguous one at its first
        // occurrence.
        assert_eq!(
            next_local(utc("2026-03-28T12:00:00Z"), ams, 2, 30),
            utc("2026-03-29T01:00:00Z")
        );
        assert_eq!(
            next_local(utc("2026-10-24T12:00:00Z"), ams, 2, 30),
            utc("2026-10-25T00:30:00Z")
        );
        // Just before and at the instant.
        assert_eq!(
            next_local(utc("2026-01-11T01:59:59Z"), ams, 3, 0),
            utc("2026-01-11T02:00:00Z")
        );
        assert_eq!(
            next_local(utc("2026-01-11T02:00:00Z"), ams, 3, 0),
            utc("2026-01-12T02:00:00Z")
        );
    }
}
