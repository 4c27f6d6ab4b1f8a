//! The demo's timetable: weekly lectures in every lecture hall, a few instances cancelled and a
//! few that nobody attends, as one iCalendar feed (the way Syllabus Plus, TimeEdit or Celcat
//! export a timetable: `LOCATION` names the room) served to the demo itself over HTTP.
//!
//! The simulator fills a lecture hall from the same [`slot`]s, so the feed and the simulated
//! people agree: a cancelled lecture or a no-show leaves the hall empty, and a hall without a
//! lecture for a while opens as a study place. Every event carries a made-up title and
//! organiser, which the server must drop (the privacy tests look for them).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{Datelike, NaiveDate, TimeDelta, Weekday};
use tellijn_config::Campus;
use tellijn_config::campus::{Calendar, RoomKind};

/// Lecture hours: a lecture starts on the hour, from 8:00 to 17:00.
pub const HOURS: std::ops::RangeInclusive<u32> = 8..=17;
/// A lecture's booking: from the hour to 45 minutes past.
pub const LENGTH_MIN: i64 = 45;
/// Weeks of recurrences in the feed (from two weeks back).
const WEEKS: i64 = 8;

/// What the timetable holds for one hall at one hour of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    Free,
    /// A lecture; `attended: false` is a booking nobody comes to.
    Lecture {
        attended: bool,
    },
    /// A weekly lecture cancelled this once.
    Cancelled,
}

/// Is there a weekly lecture in the hall with `seed` on `weekday` at `hour`?
pub fn weekly(seed: u64, weekday: Weekday, hour: u32) -> bool {
    !matches!(weekday, Weekday::Sat | Weekday::Sun)
        && HOURS.contains(&hour)
        && crate::sim::frac(
            seed,
            1000 + u64::from(weekday.num_days_from_monday()),
            u64::from(hour),
        ) < 0.6
}

/// The slot of the hall with `seed` on local `date` at `hour`.
pub fn slot(seed: u64, date: NaiveDate, hour: u32) -> Slot {
    if !weekly(seed, date.weekday(), hour) {
        return Slot::Free;
    }
    let day = date.num_days_from_ce() as u64;
    if crate::sim::frac(seed ^ 0xCA_CE11, day, u64::from(hour)) < 0.08 {
        Slot::Cancelled
    } else {
        Slot::Lecture {
            attended: crate::sim::frac(seed ^ 0x05_0500, day, u64::from(hour)) >= 0.12,
        }
    }
}

/// A hall's `LOCATION` text in the feed.
fn location(building: &str, name: &str) -> String {
    format!("{} {name}", building.to_uppercase())
}

/// The `[[calendars]]` entry of the demo's feed at `url`: `LOCATION` → lecture hall.
pub fn calendar(campus: &Campus, url: String) -> Calendar {
    let locations: BTreeMap<String, String> = campus
        .rooms
        .iter()
        .filter(|r| r.kind == RoomKind::LectureHall)
        .map(|r| (location(&r.building, &r.name), r.id.clone()))
        .collect();
    Calendar {
        url,
        refresh: std::time::Duration::from_secs(300),
        room: None,
        locations,
        token_file: None,
    }
}

const VTIMEZONE: &str = "BEGIN:VTIMEZONE\r\nTZID:Europe/Amsterdam\r\nBEGIN:DAYLIGHT\r\nTZOFFSETFROM:+0100\r\nTZOFFSETTO:+0200\r\nTZNAME:CEST\r\nDTSTART:19700329T020000\r\nRRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r\nEND:DAYLIGHT\r\nBEGIN:STANDARD\r\nTZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nTZNAME:CET\r\nDTSTART:19701025T030000\r\nRRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n";

const COURSES: [&str; 6] = [
    "Linear Algebra",
    "Contract Law",
    "Organic Chemistry",
    "Art History",
    "Thermodynamics",
    "Macroeconomics",
];
const LECTURERS: [(&str, &str); 4] = [
    ("Dr. Anna de Vries", "a.devries"),
    ("Prof. Jan Jansen", "j.jansen"),
    ("Dr. Fatima El Amrani", "f.elamrani"),
    ("Dr. Pieter Bakker", "p.bakker"),
];

/// The feed: every lecture hall's weekly lectures from two weeks before `today` (local), for
/// eight weeks, with this week's and later cancellations as `STATUS:CANCELLED` overrides.
/// `seed_of` gives a hall's simulator seed.
pub fn ics(campus: &Campus, today: NaiveDate, seed_of: impl Fn(&str) -> u64) -> String {
    let tz = campus.server.timezone.as_str();
    let mut s = String::from(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//Tellijn//demo timetable//EN\r\nCALSCALE:GREGORIAN\r\n",
    );
    if tz == "Europe/Amsterdam" {
        s.push_str(VTIMEZONE);
    }
    let first_day = today - TimeDelta::days(14);
    for (i, r) in campus
        .rooms
        .iter()
        .filter(|r| r.kind == RoomKind::LectureHall)
        .enumerate()
    {
        let seed = seed_of(&r.id);
        for wd in 0..5u32 {
            // The first date on or after `first_day` with this weekday.
            let offset = (7 + wd as i64 - first_day.weekday().num_days_from_monday() as i64) % 7;
            let first = first_day + TimeDelta::days(offset);
            for hour in HOURS {
                if !weekly(seed, first.weekday(), hour) {
                    continue;
                }
                let uid = format!("lecture-{}-{wd}-{hour}@timetable.demo.invalid", r.id);
                let (name, mail) = LECTURERS[(i + hour as usize) % LECTURERS.len()];
                let course = COURSES[(i + wd as usize) % COURSES.len()];
                let at = |d: NaiveDate, min: i64| {
                    let t = d.and_hms_opt(hour, 0, 0).unwrap_or_default() + TimeDelta::minutes(min);
                    t.format("%Y%m%dT%H%M%S").to_string()
                };
                let _ = write!(
                    s,
                    "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nDTSTART;TZID={tz}:{}\r\nDTEND;TZID={tz}:{}\r\nRRULE:FREQ=WEEKLY;COUNT={WEEKS}\r\nSUMMARY:{course} ({name})\r\nDESCRIPTION:Lecture by {name}. Questions: {mail}@uni.demo.invalid\r\nORGANIZER;CN={name}:mailto:{mail}@uni.demo.invalid\r\nATTENDEE;CN=Student Sam Peters:mailto:s.peters@student.demo.invalid\r\nLOCATION:{}\r\nEND:VEVENT\r\n",
                    at(first, 0),
                    at(first, LENGTH_MIN),
                    location(&r.building, &r.name)
                );
                for week in 0..WEEKS {
                    let d = first + TimeDelta::weeks(week);
                    if slot(seed, d, hour) == Slot::Cancelled {
                        let _ = write!(
                            s,
                            "BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20260101T000000Z\r\nRECURRENCE-ID;TZID={tz}:{}\r\nDTSTART;TZID={tz}:{}\r\nDTEND;TZID={tz}:{}\r\nSTATUS:CANCELLED\r\nSUMMARY:CANCELLED {course} ({name} is ill)\r\nLOCATION:{}\r\nEND:VEVENT\r\n",
                            at(d, 0),
                            at(d, 0),
                            at(d, LENGTH_MIN),
                            location(&r.building, &r.name)
                        );
                    }
                }
            }
        }
    }
    s.push_str("END:VCALENDAR\r\n");
    s
}

/// Serves `body` at `/timetable.ics` (with an ETag, answering `If-None-Match` with 304) on an
/// ephemeral loopback port; returns the feed's URL.
pub async fn serve(body: String) -> anyhow::Result<(String, tokio::task::JoinHandle<()>)> {
    use sha2::Digest;
    let etag = format!(
        "\"{}\"",
        hex::encode(&sha2::Sha256::digest(body.as_bytes())[..8])
    );
    let body = Arc::new(body);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    let app = Router::new().route(
        "/timetable.ics",
        get(move |headers: HeaderMap| {
            let (body, etag) = (body.clone(), etag.clone());
            async move { feed(&headers, &body, &etag) }
        }),
    );
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((format!("http://{addr}/timetable.ics"), task))
}

fn feed(headers: &HeaderMap, body: &str, etag: &str) -> Response {
    let tag = HeaderValue::from_str(etag).unwrap_or(HeaderValue::from_static("\"demo\""));
    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, tag)]).into_response();
    }
    (
        StatusCode::OK,
        [
            (header::ETAG, tag),
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/calendar; charset=utf-8"),
            ),
        ],
        body.to_owned(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_parses_into_the_slots_the_simulator_uses() {
        let (campus, _) = crate::demo::campus(40).expect("campus");
        let today: NaiveDate = "2026-12-01".parse().expect("date");
        let seed_of = |id: &str| crate::sim::room_seed(id, 7);
        let text = ics(&campus, today, seed_of);
        let cal = calendar(&campus, "http://x/timetable.ics".into());
        let tz: chrono_tz::Tz = "Europe/Amsterdam".parse().expect("tz");
        let from = today.and_hms_opt(0, 0, 0).expect("t").and_utc();
        let to = from + TimeDelta::days(7);
        let parsed = tellijn_bookings::ical::parse_feed(
            &text,
            tellijn_bookings::ical::FeedMap::Locations(&cal.locations),
            from,
            to,
            tz,
            b"k",
        )
        .expect("the demo feed parses");
        assert_eq!(parsed.skipped.get("unmapped_location"), None);
        let mut expected = Vec::new();
        for r in campus
            .rooms
            .iter()
            .filter(|r| r.kind == RoomKind::LectureHall)
        {
            for d in 0..7 {
                let date = today + TimeDelta::days(d);
                for h in HOURS {
                    let s = slot(seed_of(&r.id), date, h);
                    if s != Slot::Free {
                        let start = date
                            .and_hms_opt(h, 0, 0)
                            .and_then(|t| t.and_local_timezone(tz).single())
                            .expect("local time")
                            .to_utc();
                        expected.push((r.id.clone(), start, s == Slot::Cancelled));
                    }
                }
            }
        }
        let mut got: Vec<_> = parsed
            .occurrences
            .iter()
            .map(|o| {
                (
                    o.room.clone(),
                    o.start,
                    o.status == tellijn_bookings::Status::Cancelled,
                )
            })
            .collect();
        got.sort();
        expected.sort();
        assert_eq!(got, expected);
        assert!(
            expected.iter().any(|e| e.2),
            "no cancelled lecture this week"
        );
        assert!(
            parsed
                .occurrences
                .iter()
                .all(|o| o.end - o.start == TimeDelta::minutes(LENGTH_MIN))
        );
    }
}
