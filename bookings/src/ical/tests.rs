use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use chrono_tz::Europe::Amsterdam;
use proptest::prelude::*;
use sha2::{Digest, Sha256};

use super::*;
use crate::Status::{Cancelled, Confirmed, Tentative};

const KEY: &[u8] = b"installation key";

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// A calendar around `body` (events separated however the test likes), CRLF line endings.
fn cal(body: &str) -> String {
    let mut s = String::from("BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//Tellijn//test//EN\n");
    s.push_str(body.trim_start_matches('\n'));
    if !s.ends_with('\n') {
        s.push('\n');
    }
    s.push_str("END:VCALENDAR\n");
    s.replace('\n', "\r\n")
}

fn parse_in(text: &str, from: &str, to: &str) -> Result<Parsed, FeedError> {
    parse_feed(text, FeedMap::Room("r1"), t(from), t(to), Amsterdam, KEY)
}

fn parse(text: &str) -> Parsed {
    parse_in(text, "2000-01-01T00:00:00Z", "2100-01-01T00:00:00Z").expect("parses")
}

/// (start, end, status) of each occurrence, UTC, minutes.
fn spans(p: &Parsed) -> Vec<(String, String, Status)> {
    p.occurrences
        .iter()
        .map(|o| {
            (
                o.start.format("%Y-%m-%dT%H:%MZ").to_string(),
                o.end.format("%Y-%m-%dT%H:%MZ").to_string(),
                o.status,
            )
        })
        .collect()
}

fn skipped(p: &Parsed) -> Vec<(&'static str, u64)> {
    p.skipped.iter().map(|(k, v)| (*k, *v)).collect()
}

const WEST_EUROPE_VTIMEZONE: &str = "BEGIN:VTIMEZONE
TZID:W. Europe Standard Time
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=10
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
RRULE:FREQ=YEARLY;INTERVAL=1;BYDAY=-1SU;BYMONTH=3
END:DAYLIGHT
END:VTIMEZONE
";

struct Case {
    name: &'static str,
    body: String,
    expect: Vec<(&'static str, &'static str, Status)>,
    skipped: Vec<(&'static str, u64)>,
}

fn case(
    name: &'static str,
    body: &str,
    expect: &[(&'static str, &'static str, Status)],
    skipped: &[(&'static str, u64)],
) -> Case {
    Case {
        name,
        body: body.to_owned(),
        expect: expect.to_vec(),
        skipped: skipped.to_vec(),
    }
}

fn cases() -> Vec<Case> {
    vec![
        case(
            "weekly 09:00 local lecture across the October change",
            "BEGIN:VEVENT
UID:lecture-oct
DTSTART;TZID=Europe/Amsterdam:20261019T090000
DTEND;TZID=Europe/Amsterdam:20261019T104500
RRULE:FREQ=WEEKLY;COUNT=3
END:VEVENT",
            &[
                ("2026-10-19T07:00Z", "2026-10-19T08:45Z", Confirmed),
                ("2026-10-26T08:00Z", "2026-10-26T09:45Z", Confirmed),
                ("2026-11-02T08:00Z", "2026-11-02T09:45Z", Confirmed),
            ],
            &[],
        ),
        case(
            "weekly 09:00 local lecture across the March change, UNTIL in UTC",
            "BEGIN:VEVENT
UID:lecture-mar
DTSTART;TZID=Europe/Amsterdam:20270322T090000
DTEND;TZID=Europe/Amsterdam:20270322T100000
RRULE:FREQ=WEEKLY;BYDAY=MO;UNTIL=20270405T070000Z
END:VEVENT",
            &[
                ("2027-03-22T08:00Z", "2027-03-22T09:00Z", Confirmed),
                ("2027-03-29T07:00Z", "2027-03-29T08:00Z", Confirmed),
                ("2027-04-05T07:00Z", "2027-04-05T08:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "a weekly 02:30 through the spring-forward night: 03:30 summer time that day",
            "BEGIN:VEVENT
UID:night
DTSTART;TZID=Europe/Amsterdam:20260322T023000
DTEND;TZID=Europe/Amsterdam:20260322T033000
RRULE:FREQ=WEEKLY;COUNT=3
END:VEVENT",
            &[
                ("2026-03-22T01:30Z", "2026-03-22T02:30Z", Confirmed),
                ("2026-03-29T01:30Z", "2026-03-29T02:30Z", Confirmed),
                ("2026-04-05T00:30Z", "2026-04-05T01:30Z", Confirmed),
            ],
            &[],
        ),
        case(
            "a nonexistent and an ambiguous local start",
            "BEGIN:VEVENT
UID:gap
DTSTART;TZID=Europe/Amsterdam:20260329T023000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:fold
DTSTART;TZID=Europe/Amsterdam:20261025T023000
DURATION:PT1H
END:VEVENT",
            &[
                ("2026-03-29T01:30Z", "2026-03-29T02:30Z", Confirmed),
                ("2026-10-25T00:30Z", "2026-10-25T01:30Z", Confirmed),
            ],
            &[],
        ),
        case(
            "EXDATE removes an instance",
            "BEGIN:VEVENT
UID:daily
DTSTART;TZID=Europe/Amsterdam:20260601T100000
DTEND;TZID=Europe/Amsterdam:20260601T110000
RRULE:FREQ=DAILY;COUNT=4
EXDATE;TZID=Europe/Amsterdam:20260602T100000
END:VEVENT",
            &[
                ("2026-06-01T08:00Z", "2026-06-01T09:00Z", Confirmed),
                ("2026-06-03T08:00Z", "2026-06-03T09:00Z", Confirmed),
                ("2026-06-04T08:00Z", "2026-06-04T09:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "EXDATE in UTC and as a DATE on a timed series",
            "BEGIN:VEVENT
UID:daily2
DTSTART;TZID=Europe/Amsterdam:20260601T100000
DTEND;TZID=Europe/Amsterdam:20260601T110000
RRULE:FREQ=DAILY;COUNT=4
EXDATE:20260601T080000Z
EXDATE;VALUE=DATE:20260603
END:VEVENT",
            &[
                ("2026-06-02T08:00Z", "2026-06-02T09:00Z", Confirmed),
                ("2026-06-04T08:00Z", "2026-06-04T09:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "RDATE adds instances (a list, and a PERIOD)",
            "BEGIN:VEVENT
UID:rdate
DTSTART;TZID=Europe/Amsterdam:20260605T140000
DTEND;TZID=Europe/Amsterdam:20260605T150000
RDATE;TZID=Europe/Amsterdam:20260610T140000,20260611T140000
RDATE;VALUE=PERIOD:20260612T120000Z/20260612T130000Z
END:VEVENT",
            &[
                ("2026-06-05T12:00Z", "2026-06-05T13:00Z", Confirmed),
                ("2026-06-10T12:00Z", "2026-06-10T13:00Z", Confirmed),
                ("2026-06-11T12:00Z", "2026-06-11T13:00Z", Confirmed),
                ("2026-06-12T12:00Z", "2026-06-12T13:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "RECURRENCE-ID: one instance moved, one cancelled",
            "BEGIN:VEVENT
UID:series-1
DTSTART;TZID=Europe/Amsterdam:20260601T090000
DTEND;TZID=Europe/Amsterdam:20260601T100000
RRULE:FREQ=WEEKLY;COUNT=4
LOCATION:Room 1
END:VEVENT
BEGIN:VEVENT
UID:series-1
RECURRENCE-ID;TZID=Europe/Amsterdam:20260608T090000
DTSTART;TZID=Europe/Amsterdam:20260609T130000
DTEND;TZID=Europe/Amsterdam:20260609T140000
END:VEVENT
BEGIN:VEVENT
UID:series-1
RECURRENCE-ID:20260615T070000Z
DTSTART;TZID=Europe/Amsterdam:20260615T090000
DTEND;TZID=Europe/Amsterdam:20260615T100000
STATUS:CANCELLED
END:VEVENT",
            &[
                ("2026-06-01T07:00Z", "2026-06-01T08:00Z", Confirmed),
                ("2026-06-09T11:00Z", "2026-06-09T12:00Z", Confirmed),
                ("2026-06-15T07:00Z", "2026-06-15T08:00Z", Cancelled),
                ("2026-06-22T07:00Z", "2026-06-22T08:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "STATUS: cancelled kept, tentative, confirmed",
            "BEGIN:VEVENT
UID:c
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
STATUS:CANCELLED
END:VEVENT
BEGIN:VEVENT
UID:t
DTSTART:20260601T110000Z
DTEND:20260601T120000Z
STATUS:TENTATIVE
END:VEVENT
BEGIN:VEVENT
UID:k
DTSTART:20260601T130000Z
DTEND:20260601T140000Z
STATUS:CONFIRMED
END:VEVENT",
            &[
                ("2026-06-01T09:00Z", "2026-06-01T10:00Z", Cancelled),
                ("2026-06-01T11:00Z", "2026-06-01T12:00Z", Tentative),
                ("2026-06-01T13:00Z", "2026-06-01T14:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "TRANSP:TRANSPARENT books nothing",
            "BEGIN:VEVENT
UID:free
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
TRANSP:TRANSPARENT
END:VEVENT
BEGIN:VEVENT
UID:busy
DTSTART:20260601T110000Z
DTEND:20260601T120000Z
TRANSP:OPAQUE
END:VEVENT",
            &[("2026-06-01T11:00Z", "2026-06-01T12:00Z", Confirmed)],
            &[("transparent", 1)],
        ),
        case(
            "Windows zone name with Exchange's VTIMEZONE, plain and quoted",
            &format!(
                "{WEST_EUROPE_VTIMEZONE}BEGIN:VEVENT
UID:exchange-1
DTSTART;TZID=W. Europe Standard Time:20260115T090000
DTEND;TZID=W. Europe Standard Time:20260115T100000
END:VEVENT
BEGIN:VEVENT
UID:exchange-2
DTSTART;TZID=\"W. Europe Standard Time\":20260715T090000
DTEND;TZID=\"W. Europe Standard Time\":20260715T100000
END:VEVENT"
            ),
            &[
                ("2026-01-15T08:00Z", "2026-01-15T09:00Z", Confirmed),
                ("2026-07-15T07:00Z", "2026-07-15T08:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "TZIDs: path prefixes, VTIMEZONE offsets, unknown names",
            "BEGIN:VTIMEZONE
TZID:(UTC+01:00) Amsterdam\\, Berlin\\, Bern\\, Rome\\, Stockholm\\, Vienna
BEGIN:STANDARD
DTSTART:16010101T030000
TZOFFSETFROM:+0200
TZOFFSETTO:+0100
END:STANDARD
BEGIN:DAYLIGHT
DTSTART:16010101T020000
TZOFFSETFROM:+0100
TZOFFSETTO:+0200
END:DAYLIGHT
END:VTIMEZONE
BEGIN:VTIMEZONE
TZID:Gulf
BEGIN:STANDARD
DTSTART:19700101T000000
TZOFFSETFROM:+0400
TZOFFSETTO:+0400
END:STANDARD
END:VTIMEZONE
BEGIN:VEVENT
UID:z1
DTSTART;TZID=/mozilla.org/20050126_1/Europe/Amsterdam:20260701T090000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:z2
DTSTART;TZID=/America/New_York:20260701T090000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:z3
DTSTART;TZID=\"(UTC+01:00) Amsterdam, Berlin, Bern, Rome, Stockholm, Vienna\":20260701T090000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:z4
DTSTART;TZID=Gulf:20260702T090000
DURATION:PT1H
END:VEVENT
BEGIN:VEVENT
UID:z5
DTSTART;TZID=Mars/Olympus_Mons:20260703T090000
DURATION:PT1H
END:VEVENT",
            &[
                ("2026-07-01T07:00Z", "2026-07-01T08:00Z", Confirmed),
                ("2026-07-01T07:00Z", "2026-07-01T08:00Z", Confirmed),
                ("2026-07-01T13:00Z", "2026-07-01T14:00Z", Confirmed),
                ("2026-07-02T05:00Z", "2026-07-02T06:00Z", Confirmed),
                ("2026-07-03T07:00Z", "2026-07-03T08:00Z", Confirmed),
            ],
            &[("unknown_tzid_as_local", 1)],
        ),
        case(
            "all-day events: a whole local day, 23 h on the spring-forward day, 25 h in autumn",
            "BEGIN:VEVENT
UID:d1
DTSTART;VALUE=DATE:20260601
DTEND;VALUE=DATE:20260602
END:VEVENT
BEGIN:VEVENT
UID:d2
DTSTART;VALUE=DATE:20260329
END:VEVENT
BEGIN:VEVENT
UID:d3
DTSTART;VALUE=DATE:20261024
DTEND;VALUE=DATE:20261026
END:VEVENT",
            &[
                ("2026-03-28T23:00Z", "2026-03-29T22:00Z", Confirmed),
                ("2026-05-31T22:00Z", "2026-06-01T22:00Z", Confirmed),
                ("2026-10-23T22:00Z", "2026-10-25T23:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "a recurring all-day event with a DATE EXDATE and a DATE UNTIL",
            "BEGIN:VEVENT
UID:d4
DTSTART;VALUE=DATE:20261023
DTEND;VALUE=DATE:20261024
RRULE:FREQ=DAILY;UNTIL=20261026
EXDATE;VALUE=DATE:20261024
END:VEVENT",
            &[
                ("2026-10-22T22:00Z", "2026-10-23T22:00Z", Confirmed),
                ("2026-10-24T22:00Z", "2026-10-25T23:00Z", Confirmed),
                ("2026-10-25T23:00Z", "2026-10-26T23:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "floating time is campus time; UTC times are UTC; DURATION",
            "BEGIN:VEVENT
UID:f
DTSTART:20260601T090000
DTEND:20260601T100000
END:VEVENT
BEGIN:VEVENT
UID:u
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
UID:dur
DTSTART;TZID=Europe/Amsterdam:20260601T120000
DURATION:PT1H30M
END:VEVENT",
            &[
                ("2026-06-01T07:00Z", "2026-06-01T08:00Z", Confirmed),
                ("2026-06-01T09:00Z", "2026-06-01T10:00Z", Confirmed),
                ("2026-06-01T10:00Z", "2026-06-01T11:30Z", Confirmed),
            ],
            &[],
        ),
        case(
            "a floating UNTIL is read in the event's zone and is inclusive",
            "BEGIN:VEVENT
UID:until
DTSTART;TZID=Europe/Amsterdam:20260601T090000
DTEND;TZID=Europe/Amsterdam:20260601T100000
RRULE:FREQ=WEEKLY;UNTIL=20260615T090000
END:VEVENT
BEGIN:VEVENT
UID:until-date
DTSTART:20260602T090000
DTEND:20260602T100000
RRULE:FREQ=WEEKLY;UNTIL=20260609
END:VEVENT",
            &[
                ("2026-06-01T07:00Z", "2026-06-01T08:00Z", Confirmed),
                ("2026-06-02T07:00Z", "2026-06-02T08:00Z", Confirmed),
                ("2026-06-08T07:00Z", "2026-06-08T08:00Z", Confirmed),
                ("2026-06-09T07:00Z", "2026-06-09T08:00Z", Confirmed),
                ("2026-06-15T07:00Z", "2026-06-15T08:00Z", Confirmed),
            ],
            &[],
        ),
        case(
            "bad events are skipped with a reason, the rest kept",
            "BEGIN:VEVENT
UID:no-end-alarm
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
BEGIN:VALARM
TRIGGER:-PT15M
END:VEVENT
BEGIN:VEVENT
UID:bad-time
DTSTART:2026-06-01 09:00
DTEND:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
UID:bad-rule
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
RRULE:FREQ=SOMETIMES
END:VEVENT
BEGIN:VEVENT
UID:no-start
DTEND:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
UID:backwards
DTSTART:20260601T100000Z
DTEND:20260601T090000Z
END:VEVENT
BEGIN:VEVENT
UID:instant
DTSTART:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
UID:good
DTSTART:20260601T110000Z
DTEND:20260601T120000Z
BEGIN:VALARM
TRIGGER:-PT15M
END:VALARM
END:VEVENT
BEGIN:VTODO
UID:todo
DTSTART:20260601T110000Z
END:VTODO",
            &[("2026-06-01T11:00Z", "2026-06-01T12:00Z", Confirmed)],
            &[
                ("bad_event", 1),
                ("bad_rrule", 1),
                ("bad_time", 2),
                ("no_duration", 1),
                ("no_start", 1),
            ],
        ),
        case(
            "duplicates collapse; an event without UID is kept and counted",
            "BEGIN:VEVENT
UID:dup
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
UID:dup
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
END:VEVENT
BEGIN:VEVENT
DTSTART:20260601T130000Z
DTEND:20260601T140000Z
END:VEVENT",
            &[
                ("2026-06-01T09:00Z", "2026-06-01T10:00Z", Confirmed),
                ("2026-06-01T13:00Z", "2026-06-01T14:00Z", Confirmed),
            ],
            &[("no_uid", 1)],
        ),
    ]
}

#[test]
fn tricky_feeds() {
    let mut failures = Vec::new();
    for c in cases() {
        let p = match parse_feed(
            &cal(&c.body),
            FeedMap::Room("r1"),
            t("2000-01-01T00:00:00Z"),
            t("2100-01-01T00:00:00Z"),
            Amsterdam,
            KEY,
        ) {
            Ok(p) => p,
            Err(e) => {
                failures.push(format!("{}: error {e}", c.name));
                continue;
            }
        };
        let want: Vec<_> = c
            .expect
            .iter()
            .map(|(s, e, st)| (s.to_string(), e.to_string(), *st))
            .collect();
        if spans(&p) != want || skipped(&p) != c.skipped {
            failures.push(format!(
                "{}:\n  got  {:?}\n       {:?}\n  want {:?}\n       {:?}",
                c.name,
                spans(&p),
                skipped(&p),
                want,
                c.skipped
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn line_endings_and_folding_do_not_matter() {
    let lf = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a-long-uid-that-is-\n folded\nDTSTART;TZID=Europe/Am\n\tsterdam:20260601T090000\nDTEND;TZID=Europe/Amsterdam:20260601T100000\nLOCATION:Ro\n om 1\nEND:VEVENT\nEND:VCALENDAR\n";
    let crlf = lf.replace('\n', "\r\n");
    // A mix, as files edited by hand end up.
    let mixed = lf.replacen('\n', "\r\n", 3);
    let unfolded = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:a-long-uid-that-is-folded\nDTSTART;TZID=Europe/Amsterdam:20260601T090000\nDTEND;TZID=Europe/Amsterdam:20260601T100000\nLOCATION:Room 1\nEND:VEVENT\nEND:VCALENDAR";
    let map = BTreeMap::from([("room 1".to_owned(), "r1".to_owned())]);
    let go = |s: &str| {
        parse_feed(
            s,
            FeedMap::Locations(&map),
            t("2026-01-01T00:00:00Z"),
            t("2027-01-01T00:00:00Z"),
            Amsterdam,
            KEY,
        )
        .unwrap()
    };
    let want = go(unfolded);
    assert_eq!(
        spans(&want),
        [(
            "2026-06-01T07:00Z".into(),
            "2026-06-01T08:00Z".into(),
            Confirmed
        )]
    );
    for s in [lf, &crlf, &mixed] {
        assert_eq!(go(s), want);
    }
}

#[test]
fn location_mapping() {
    let map = BTreeMap::from([
        ("Room 1.01".to_owned(), "r101".to_owned()),
        ("Hall A".to_owned(), "hall-a".to_owned()),
        ("Lab, North".to_owned(), "lab-n".to_owned()),
    ]);
    let body = "BEGIN:VEVENT
UID:1
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
LOCATION:   rOOm 1.01\t
END:VEVENT
BEGIN:VEVENT
UID:2
DTSTART:20260601T110000Z
DTEND:20260601T120000Z
LOCATION:Hall A\\, Room 1.01
END:VEVENT
BEGIN:VEVENT
UID:3
DTSTART:20260601T130000Z
DTEND:20260601T140000Z
LOCATION:hall a; Basement
END:VEVENT
BEGIN:VEVENT
UID:4
DTSTART:20260601T150000Z
DTEND:20260601T160000Z
LOCATION:Lab\\, North
END:VEVENT
BEGIN:VEVENT
UID:5
DTSTART:20260601T170000Z
DTEND:20260601T180000Z
LOCATION:Basement
END:VEVENT
BEGIN:VEVENT
UID:6
DTSTART:20260601T190000Z
DTEND:20260601T200000Z
END:VEVENT";
    let p = parse_feed(
        &cal(body),
        FeedMap::Locations(&map),
        t("2026-01-01T00:00:00Z"),
        t("2027-01-01T00:00:00Z"),
        Amsterdam,
        KEY,
    )
    .unwrap();
    let got: Vec<_> = p
        .occurrences
        .iter()
        .map(|o| (o.room.as_str(), o.start.format("%H").to_string()))
        .collect();
    assert_eq!(
        got,
        [
            ("hall-a", "11".into()),
            ("hall-a", "13".into()),
            ("lab-n", "15".into()),
            ("r101", "09".into()),
            ("r101", "11".into()),
        ]
    );
    assert_eq!(skipped(&p), [("unmapped_location", 2)]);
    // FeedMap::Room books every event in the one room, LOCATION or not.
    let p = parse(&cal(body));
    assert_eq!(p.occurrences.len(), 6);
    assert!(p.occurrences.iter().all(|o| o.room == "r1"));
}

#[test]
fn window_overlap_and_order() {
    let body = "BEGIN:VEVENT
UID:before
DTSTART:20260601T080000Z
DTEND:20260601T090000Z
END:VEVENT
BEGIN:VEVENT
UID:across-start
DTSTART:20260601T083000Z
DTEND:20260601T093000Z
END:VEVENT
BEGIN:VEVENT
UID:across-end
DTSTART:20260601T113000Z
DTEND:20260601T123000Z
END:VEVENT
BEGIN:VEVENT
UID:at-end
DTSTART:20260601T120000Z
DTEND:20260601T130000Z
END:VEVENT
BEGIN:VEVENT
UID:around
DTSTART:20260601T070000Z
DTEND:20260601T130000Z
END:VEVENT";
    let p = parse_in(&cal(body), "2026-06-01T09:00:00Z", "2026-06-01T12:00:00Z").unwrap();
    assert_eq!(
        spans(&p),
        [
            (
                "2026-06-01T07:00Z".into(),
                "2026-06-01T13:00Z".into(),
                Confirmed
            ),
            (
                "2026-06-01T08:30Z".into(),
                "2026-06-01T09:30Z".into(),
                Confirmed
            ),
            (
                "2026-06-01T11:30Z".into(),
                "2026-06-01T12:30Z".into(),
                Confirmed
            ),
        ]
    );
    // An empty window is empty.
    let p = parse_in(&cal(body), "2026-06-01T12:00:00Z", "2026-06-01T12:00:00Z").unwrap();
    assert!(p.occurrences.is_empty());
}

#[test]
fn an_unbounded_rule_is_limited_by_the_window() {
    let body = "BEGIN:VEVENT
UID:forever
DTSTART;TZID=Europe/Amsterdam:20200106T090000
DTEND;TZID=Europe/Amsterdam:20200106T100000
RRULE:FREQ=DAILY
END:VEVENT
BEGIN:VEVENT
UID:forever-weekly
DTSTART;TZID=Europe/Amsterdam:20200106T090000
DURATION:PT1H
RRULE:FREQ=WEEKLY;BYDAY=MO,WE
END:VEVENT";
    let started = Instant::now();
    let p = parse_in(&cal(body), "2026-06-01T00:00:00Z", "2026-06-08T00:00:00Z").unwrap();
    assert_eq!(p.occurrences.len(), 7 + 2);
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert_eq!(p.occurrences[0].start, t("2026-06-01T07:00:00Z"));
    assert!(started.elapsed().as_secs() < 10);
}

#[test]
fn too_many_occurrences_are_capped_and_counted() {
    // Every minute for a month: 43 200 in the window, 10 000 kept.
    let body = "BEGIN:VEVENT
UID:minutely
DTSTART:20260601T000000Z
DURATION:PT1M
RRULE:FREQ=MINUTELY
END:VEVENT
BEGIN:VEVENT
UID:secondly-since-long-ago
DTSTART:20200101T000000Z
DURATION:PT1S
RRULE:FREQ=SECONDLY
END:VEVENT
BEGIN:VEVENT
UID:fine
DTSTART:20260601T090000Z
DURATION:PT1H
END:VEVENT";
    let started = Instant::now();
    let p = parse_in(&cal(body), "2026-06-01T00:00:00Z", "2026-07-01T00:00:00Z").unwrap();
    assert_eq!(p.occurrences.len(), MAX_PER_EVENT + 1);
    assert_eq!(skipped(&p), [("too_many_occurrences", 2)]);
    assert!(started.elapsed().as_secs() < 30, "{:?}", started.elapsed());
}

#[test]
fn ten_thousand_events_parse_quickly() {
    let mut body = String::new();
    for i in 0..10_000u32 {
        let day = 1 + i % 28;
        let hour = 8 + i % 10;
        body.push_str(&format!(
            "BEGIN:VEVENT\nUID:event-{i}@uni.example\nDTSTAMP:20260101T000000Z\n\
             SUMMARY:Lecture {i}\nLOCATION:Room {}\n\
             DTSTART;TZID=Europe/Amsterdam:202606{day:02}T{hour:02}0000\n\
             DTEND;TZID=Europe/Amsterdam:202606{day:02}T{hour:02}4500\n\
             {}END:VEVENT\n",
            i % 50,
            if i % 10 == 0 {
                "RRULE:FREQ=WEEKLY;COUNT=10\n"
            } else {
                ""
            },
        ));
    }
    let text = cal(&body);
    let map: BTreeMap<String, String> = (0..50)
        .map(|r| (format!("Room {r}"), format!("r{r}")))
        .collect();
    let started = Instant::now();
    let p = parse_feed(
        &text,
        FeedMap::Locations(&map),
        t("2026-01-01T00:00:00Z"),
        t("2027-01-01T00:00:00Z"),
        Amsterdam,
        KEY,
    )
    .unwrap();
    let took = started.elapsed();
    assert_eq!(p.occurrences.len(), 9_000 + 1_000 * 10);
    assert!(p.skipped.is_empty(), "{:?}", p.skipped);
    assert!(took.as_secs_f64() < 5.0, "10 000 events took {took:?}");
}

#[test]
fn rrule_outside_its_grammar_is_refused_not_a_panic() {
    // Found by the fuzz target: rrule 0.14 panics on a non-ASCII BYDAY, quoting it.
    for rule in [
        "FREQ=WEEKLY;BYDAY=MO{UNTIL=20261214T080000\u{fffd}",
        "FREQ=WEEKLY;BYDAY=M\u{e9}",
        "FREQ=WEEKLY;BYDAY=\u{e9}MO",
        "FREQ=WEEKLY;BYDAY=MO TU",
    ] {
        let body = format!(
            "BEGIN:VEVENT\nUID:x\nDTSTART:20260601T090000Z\nDURATION:PT1H\nRRULE:{rule}\nEND:VEVENT"
        );
        assert_eq!(skipped(&parse(&cal(&body))), [("bad_rrule", 1)], "{rule}");
    }
}

#[test]
fn deep_nesting_is_a_bad_event_not_a_stack_overflow() {
    let mut body = String::from("BEGIN:VEVENT\nUID:deep\nDTSTART:20260601T090000Z\n");
    body.push_str(&"BEGIN:VALARM\n".repeat(5_000));
    body.push_str(&"END:VALARM\n".repeat(5_000));
    body.push_str("DURATION:PT1H\nEND:VEVENT\nBEGIN:VEVENT\nUID:ok\nDTSTART:20260601T090000Z\nDURATION:PT1H\nEND:VEVENT");
    let p = parse(&cal(&body));
    assert_eq!(p.occurrences.len(), 1);
    assert_eq!(skipped(&p), [("bad_event", 1)]);
}

#[test]
fn uid_hash_is_keyed_sha256_of_the_uid() {
    let body = "BEGIN:VEVENT
UID:  lecture-42@uni.example
DTSTART:20260601T090000Z
DTEND:20260601T100000Z
RRULE:FREQ=DAILY;COUNT=2
END:VEVENT";
    let p = parse(&cal(body));
    let mut h = Sha256::new();
    h.update(KEY);
    h.update([0]);
    h.update(b"lecture-42@uni.example");
    let want = hex::encode(&h.finalize()[..16]);
    assert_eq!(p.occurrences.len(), 2);
    assert!(p.occurrences.iter().all(|o| o.uid_hash == want));
    let other = parse_feed(
        &cal(body),
        FeedMap::Room("r1"),
        t("2000-01-01T00:00:00Z"),
        t("2100-01-01T00:00:00Z"),
        Amsterdam,
        b"another key",
    )
    .unwrap();
    assert_ne!(other.occurrences[0].uid_hash, want);
}

#[test]
fn garbage_is_an_error_not_a_panic() {
    let err = |s: &str| parse_in(s, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z").unwrap_err();
    assert_eq!(
        err("hello world\nBEGIN:VCALENDAR\n"),
        FeedError::NotICalendar("no BEGIN:VCALENDAR at line 1".into())
    );
    assert_eq!(
        err("\n\n<html><body>Login</body></html>"),
        FeedError::NotICalendar("no BEGIN:VCALENDAR at line 3".into())
    );
    assert_eq!(err(""), FeedError::NotICalendar("empty feed".into()));
    assert_eq!(
        err(" \r\n\t\n"),
        FeedError::NotICalendar("empty feed".into())
    );
    let blob: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let blob = String::from_utf8_lossy(&blob);
    assert!(matches!(err(&blob), FeedError::NotICalendar(_)));
    let nul = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nUID:\0\0\0\nEND:VEVENT\nEND:VCALENDAR\n";
    assert_eq!(
        err(nul),
        FeedError::NotICalendar("binary data (a NUL byte) at line 3".into())
    );
    // Cut off mid-download.
    let full = cal("BEGIN:VEVENT\nUID:a\nDTSTART:20260601T090000Z\nDURATION:PT1H\nEND:VEVENT");
    let cut = &full[..full.len() / 2];
    assert!(matches!(err(cut), FeedError::Truncated(_)));
    assert!(err(cut).to_string().contains("truncated"));
    // A calendar of nothing is fine.
    assert_eq!(parse(&cal("")), Parsed::default());
}

#[test]
fn privacy_nothing_personal_leaves() {
    let secrets = [
        "Exam Jan de Vries",
        "jan.devries@uni.example",
        "Jan de Vries",
        "Vries",
        "piet.jansen@uni.example",
        "Piet Jansen",
        "resit after illness",
        "call me on 06-12345678",
        "Secret Project Falcon",
        "uid-jan-de-vries-exam@uni.example",
        "Jansen",
    ];
    let event = |uid: &str, extra: &str| {
        format!(
            "BEGIN:VEVENT
UID:{uid}
SUMMARY:Exam Jan de Vries
DESCRIPTION:resit after illness\\, call me on 06-12345678
ORGANIZER;CN=Jan de Vries:mailto:jan.devries@uni.example
ATTENDEE;CN=\"Piet Jansen\";ROLE=REQ-PARTICIPANT:mailto:piet.jansen@uni.example
COMMENT:Secret Project Falcon
CONTACT:Jan de Vries
LOCATION:Room 1
{extra}END:VEVENT
"
        )
    };
    let body = [
        event("uid-jan-de-vries-exam@uni.example", "DTSTART:20260601T090000Z\nDTEND:20260601T100000Z\n"),
        event("uid-jan-de-vries-exam@uni.example", "RECURRENCE-ID:20260601T090000Z\nDTSTART:20260601T110000Z\nDTEND:20260601T120000Z\nSTATUS:CANCELLED\n"),
        event("Jan de Vries", "DTSTART;TZID=Jan de Vries:20260602T090000\nDTEND;TZID=Jan de Vries:20260602T100000\n"),
        event("Piet Jansen", "DTSTART:Jan de Vries\nDTEND:20260601T100000Z\n"),
        event("Vries", "DTSTART:20260601T090000Z\nRRULE:FREQ=Jan de Vries\nDTEND:20260601T100000Z\n"),
        event("Jansen", "DTSTART:20260601T090000Z\nDURATION:Jan de Vries\n"),
        event("Secret Project Falcon", "DTSTART:20260601T090000Z\nDTEND:20260601T100000Z\nBEGIN:VALARM\nDESCRIPTION:Jan de Vries\n"),
    ]
    .concat();
    let map = BTreeMap::from([("room 1".to_owned(), "r1".to_owned())]);
    let mut outputs = Vec::new();
    for m in [
        FeedMap::Room("r1"),
        FeedMap::Locations(&map),
        FeedMap::Locations(&BTreeMap::new()),
    ] {
        let p = parse_feed(
            &cal(&body),
            m,
            t("2026-01-01T00:00:00Z"),
            t("2027-01-01T00:00:00Z"),
            Amsterdam,
            KEY,
        )
        .unwrap();
        assert!(!p.skipped.is_empty());
        outputs.push(format!("{p:?}"));
        outputs.push(format!("{p:#?}"));
    }
    assert!(outputs[0].contains("r1") && outputs[0].contains("Cancelled"));
    // Errors: the same text made unreadable in several ways.
    let broken = [
        format!("SUMMARY:Exam Jan de Vries\n{}", cal(&body)),
        cal(&body).replace("END:VCALENDAR", ""),
        format!("{}\0Jan de Vries", cal(&body)),
        body.clone(),
    ];
    for b in &broken {
        let e = parse_in(b, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z").unwrap_err();
        outputs.push(format!("{e}"));
        outputs.push(format!("{e:?}"));
    }
    for out in &outputs {
        for s in secrets {
            assert!(!out.contains(s), "{s:?} leaked into {out}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = parse_in(&text, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    }

    #[test]
    fn arbitrary_strings_never_panic(s in ".{0,400}") {
        let _ = parse_in(&s, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    }

    /// Calendar-shaped noise: real property names and values, shuffled and cut.
    #[test]
    fn calendar_shaped_noise_never_panics(
        lines in proptest::collection::vec(
            (
                prop::sample::select(vec![
                    "BEGIN:VEVENT", "END:VEVENT", "BEGIN:VALARM", "END:VALARM",
                    "BEGIN:VTIMEZONE", "END:VTIMEZONE", "BEGIN:STANDARD", "END:STANDARD",
                    "UID:", "DTSTART:", "DTSTART;VALUE=DATE:", "DTSTART;TZID=Europe/Amsterdam:",
                    "DTSTART;TZID=W. Europe Standard Time:", "DTEND:", "DTEND;VALUE=DATE:",
                    "DURATION:", "RRULE:", "RDATE:", "EXDATE:", "EXDATE;VALUE=DATE:",
                    "RECURRENCE-ID:", "STATUS:", "TRANSP:", "LOCATION:", "TZID:", "TZOFFSETTO:",
                    " ", "END:VCALENDAR", "BEGIN:VCALENDAR",
                ]),
                prop::sample::select(vec![
                    "", "20260601T090000Z", "20260601T090000", "20260601", "99991231T235959Z",
                    "19000101", "20260329T023000", "PT1H", "P1D", "-PT1H", "P99999999W",
                    "FREQ=DAILY", "FREQ=SECONDLY", "FREQ=WEEKLY;UNTIL=20260101",
                    "FREQ=MONTHLY;BYMONTHDAY=31;BYMONTH=2", "FREQ=YEARLY;BYSETPOS=-1;BYDAY=MO",
                    "FREQ=DAILY;INTERVAL=0", "FREQ=DAILY;COUNT=0", "CANCELLED", "TRANSPARENT",
                    "+0100", "x", "a,b;c", "20260601T090000Z,20260602", "20260601T090000Z/PT1H",
                ]),
            ),
            0..40,
        )
    ) {
        let mut text = String::from("BEGIN:VCALENDAR\n");
        for (k, v) in lines {
            text.push_str(k);
            text.push_str(v);
            text.push('\n');
        }
        text.push_str("END:VCALENDAR\n");
        let _ = parse_in(&text, "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z");
    }
}
