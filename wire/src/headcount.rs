//! Head counts as people send them: the JSON body of `POST /api/v1/rooms/{id}/headcounts` and
//! the CSV of `tellijn headcounts import` and `POST /api/v1/headcounts`, parsed and checked
//! here (no web, Arrow or query engine types) so they can be unit-tested and fuzzed on their
//! own. Every error is a sentence saying what to send instead; the CSV's name the line and the
//! column. Nothing here panics on any input.
//!
//! - [`parse_body`]: `{"people": N, "at": "RFC 3339"}` (`at` optional: now).
//! - [`parse_csv`]: `room,at,people` with that header, at most [`MAX_ROWS`] rows.
//!
//! Times are RFC 3339 with an offset (`2026-11-30T10:15:00+01:00` or `…Z`) only: a local time
//! without an offset would mean a different moment on either side of a daylight-saving change.

use chrono::{DateTime, TimeDelta, Utc};

/// The most people one head count may report.
pub const MAX_PEOPLE: u32 = 100_000;
/// The most rows one CSV import may hold.
pub const MAX_ROWS: usize = 10_000;
/// The longest CSV line accepted, in bytes (without its line ending).
pub const MAX_LINE: usize = 256;
/// The largest JSON body accepted, in bytes.
pub const MAX_BODY: usize = 1024;
/// The largest CSV accepted, in bytes: [`MAX_ROWS`] lines of [`MAX_LINE`] bytes and a header.
pub const MAX_CSV: usize = (MAX_ROWS + 1) * (MAX_LINE + 2);
/// How far in the future a head count's time may lie (clocks differ a little).
pub const MAX_AHEAD: TimeDelta = TimeDelta::minutes(1);
/// How old a head count sent through the API one at a time may be.
pub const MAX_AGE: TimeDelta = TimeDelta::days(7);
/// Head counts before 2000-01-01T00:00:00Z are refused (as history times are).
pub const EARLIEST: i64 = 946_684_800;

/// One head count, checked: the room is a valid id (whether it exists is the caller's check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Headcount {
    pub room: String,
    pub at: DateTime<Utc>,
    pub people: u32,
}

/// The body of `POST /api/v1/rooms/{id}/headcounts`, checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Body {
    pub people: u32,
    pub at: DateTime<Utc>,
    /// True when `at` was not sent (the head count is of now).
    pub now: bool,
    /// `"reset": true`: also set the room's occupancy to `people` (a head count of now only).
    pub reset: bool,
}

/// A head count that cannot be used, and what to send instead (an HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HeadcountError(pub String);

/// A CSV that cannot be imported: where, and what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsvError {
    /// 1-based; the header is line 1.
    pub line: Option<usize>,
    pub column: Option<&'static str>,
    pub message: String,
}

impl std::fmt::Display for CsvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.line, self.column) {
            (Some(l), Some(c)) => write!(f, "line {l}, column {c}: {}", self.message),
            (Some(l), None) => write!(f, "line {l}: {}", self.message),
            _ => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for CsvError {}

fn err(message: impl Into<String>) -> HeadcountError {
    HeadcountError(message.into())
}

/// Parses an RFC 3339 time with an offset and checks it against `now`: not more than
/// [`MAX_AHEAD`] ahead, not before `earliest`.
fn time(
    v: &str,
    now: DateTime<Utc>,
    earliest: DateTime<Utc>,
    age: &str,
) -> Result<DateTime<Utc>, String> {
    let shown: String = v.chars().take(64).collect();
    let t = DateTime::parse_from_rfc3339(v.trim())
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| {
            format!(
                "{shown:?} is not an RFC 3339 time with an offset; send e.g. 2026-11-30T10:15:00+01:00 or 2026-11-30T09:15:00Z (a local time without an offset is ambiguous)"
            )
        })?;
    if t > now + MAX_AHEAD {
        return Err(format!(
            "{shown:?} lies in the future (it is now {}); send the time the people were counted",
            now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ));
    }
    if t < earliest {
        return Err(format!("{shown:?} is {age}; send a more recent head count"));
    }
    Ok(t)
}

/// Parses `people` as sent.
fn people_of(v: &serde_json::Value) -> Result<u32, HeadcountError> {
    let bad = || {
        err(format!(
            "\"people\" must be a whole number from 0 to {MAX_PEOPLE} (found {})",
            v.to_string().chars().take(32).collect::<String>()
        ))
    };
    let n = v.as_u64().ok_or_else(bad)?;
    u32::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_PEOPLE)
        .ok_or_else(bad)
}

/// Checks the JSON body of `POST /api/v1/rooms/{id}/headcounts`:
/// `{"people": N, "at": "RFC 3339", "reset": true}`, `at` optional (default `now`), not more
/// than a minute ahead of `now` nor older than [`MAX_AGE`]; `reset` optional (default false),
/// and only with a head count of now (no `at`, or one within a minute of `now`): a count of
/// the past cannot set the present. No other keys.
pub fn parse_body(bytes: &[u8], now: DateTime<Utc>) -> Result<Body, HeadcountError> {
    const SHAPE: &str = "send a JSON object {\"people\": N} or {\"people\": N, \"at\": \"2026-11-30T10:15:00+01:00\"}";
    if bytes.len() > MAX_BODY {
        return Err(err(format!(
            "the body has {} bytes, more than {MAX_BODY}; {SHAPE}",
            bytes.len()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| err(format!("the body is not JSON ({e}); {SHAPE}")))?;
    let serde_json::Value::Object(o) = v else {
        return Err(err(format!("the body is not a JSON object; {SHAPE}")));
    };
    if let Some(k) = o
        .keys()
        .find(|k| !matches!(k.as_str(), "people" | "at" | "reset"))
    {
        let k: String = k.chars().take(32).collect();
        return Err(err(format!("unknown field {k:?}; {SHAPE}")));
    }
    let people = people_of(
        o.get("people")
            .ok_or_else(|| err(format!("\"people\" is missing; {SHAPE}")))?,
    )?;
    let (at, is_now) = match o.get("at") {
        None | Some(serde_json::Value::Null) => (now, true),
        Some(serde_json::Value::String(s)) => {
            let t = time(s, now, now - MAX_AGE, "older than 7 days")
                .map_err(|m| err(format!("\"at\": {m}")))?;
            (t, false)
        }
        Some(_) => {
            return Err(err(
                "\"at\" must be a string, an RFC 3339 time with an offset such as 2026-11-30T10:15:00+01:00 (or leave it out for now)",
            ));
        }
    };
    let reset = match o.get("reset") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(b)) => *b,
        Some(_) => {
            return Err(err(
                "\"reset\" must be true or false (true: also set the room's occupancy to the number counted)",
            ));
        }
    };
    if reset && (now - at).num_seconds().abs() > 60 {
        return Err(err(
            "\"reset\" sets the room's occupancy now, so it needs a head count of now: leave out \"at\" (or send reset only with counts taken this minute)",
        ));
    }
    Ok(Body {
        people,
        at,
        now: is_now,
        reset,
    })
}

/// The CSV header: exactly these columns, in this order.
pub const CSV_HEADER: &str = "room,at,people";

/// Parses a head-count CSV: the header `room,at,people`, then one head count per line
/// (`lib-2-study,2026-11-30T10:15:00+01:00,23`), at most [`MAX_ROWS`]; blank lines are
/// skipped, `\r\n` line endings and a UTF-8 byte-order mark accepted, fields trimmed; no
/// quoting (no field needs a comma). Times may not lie more than a minute after `now`.
pub fn parse_csv(bytes: &[u8], now: DateTime<Utc>) -> Result<Vec<Headcount>, CsvError> {
    Ok(parse_csv_lines(bytes, now)?
        .into_iter()
        .map(|(_, h)| h)
        .collect())
}

/// [`parse_csv`], each head count with its line number (the header is line 1), for errors
/// found later (an unknown room, a minute without history).
pub fn parse_csv_lines(
    bytes: &[u8],
    now: DateTime<Utc>,
) -> Result<Vec<(usize, Headcount)>, CsvError> {
    let at = |line: Option<usize>, column: Option<&'static str>, message: String| CsvError {
        line,
        column,
        message,
    };
    if bytes.len() > MAX_CSV {
        return Err(at(
            None,
            None,
            format!(
                "the file has {} bytes, more than {MAX_CSV}; split it into files of at most {MAX_ROWS} rows",
                bytes.len()
            ),
        ));
    }
    let text = std::str::from_utf8(bytes).map_err(|e| {
        // The line of the first byte that is not UTF-8.
        let line = bytes[..e.valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count()
            + 1;
        at(
            Some(line),
            None,
            "is not UTF-8 text; save the file as UTF-8".into(),
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let earliest = DateTime::from_timestamp(EARLIEST, 0).unwrap_or_default();
    let mut rows = Vec::new();
    let mut header = false;
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        if line.len() > MAX_LINE {
            return Err(at(
                Some(n),
                None,
                format!(
                    "is {} bytes long, more than {MAX_LINE}; one head count per line",
                    line.len()
                ),
            ));
        }
        if line.trim().is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if !header {
            if fields != ["room", "at", "people"] {
                return Err(at(
                    Some(n),
                    None,
                    format!(
                        "the header must be {CSV_HEADER:?} (found {:?})",
                        line.chars().take(64).collect::<String>()
                    ),
                ));
            }
            header = true;
            continue;
        }
        if fields.len() != 3 {
            return Err(at(
                Some(n),
                None,
                format!(
                    "has {} fields; send room,at,people (e.g. lib-2-study,2026-11-30T10:15:00+01:00,23)",
                    fields.len()
                ),
            ));
        }
        if rows.len() == MAX_ROWS {
            return Err(at(
                Some(n),
                None,
                format!("more than {MAX_ROWS} rows; split the file"),
            ));
        }
        let room = fields[0];
        if !crate::is_valid_id(room) {
            return Err(at(
                Some(n),
                Some("room"),
                format!(
                    "{:?} is not a room id (lower-case letters, digits and '-', as in campus.toml)",
                    room.chars().take(64).collect::<String>()
                ),
            ));
        }
        let t = time(fields[1], now, earliest, "before 2000")
            .map_err(|m| at(Some(n), Some("at"), m))?;
        let people = fields[2]
            .parse::<u32>()
            .ok()
            .filter(|p| *p <= MAX_PEOPLE && !fields[2].starts_with('+'))
            .ok_or_else(|| {
                at(
                    Some(n),
                    Some("people"),
                    format!(
                        "{:?} is not a whole number from 0 to {MAX_PEOPLE}",
                        fields[2].chars().take(32).collect::<String>()
                    ),
                )
            })?;
        rows.push((
            n,
            Headcount {
                room: room.to_owned(),
                at: t,
                people,
            },
        ));
    }
    if !header {
        return Err(at(
            None,
            None,
            format!("the file is empty; its first line must be the header {CSV_HEADER:?}"),
        ));
    }
    Ok(rows)
}

/// Writes head counts as the CSV [`parse_csv`] reads (times in UTC, to the microsecond).
pub fn to_csv(rows: &[Headcount]) -> String {
    let mut s = format!("{CSV_HEADER}\n");
    for r in rows {
        s.push_str(&format!(
            "{},{},{}\n",
            r.room,
            r.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            r.people
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn now() -> DateTime<Utc> {
        "2026-11-30T12:00:00Z".parse().unwrap()
    }

    #[test]
    fn a_body_with_people_only_is_a_count_of_now() {
        let b = parse_body(br#"{"people": 23}"#, now()).unwrap();
        assert_eq!(
            b,
            Body {
                people: 23,
                at: now(),
                now: true,
                reset: false,
            }
        );
        let b = parse_body(br#"{"people": 4, "reset": true}"#, now()).unwrap();
        assert!(b.reset && b.now && b.people == 4);
        // Within the minute a reset is still a count of now; null is absent.
        let b = parse_body(
            br#"{"people": 4, "at": "2026-11-30T11:59:30Z", "reset": true}"#,
            now(),
        )
        .unwrap();
        assert!(b.reset && !b.now);
        assert!(
            !parse_body(br#"{"people": 4, "reset": null}"#, now())
                .unwrap()
                .reset
        );
        let b = parse_body(
            br#"{"people": 0, "at": "2026-11-30T12:30:00+01:00"}"#,
            now(),
        )
        .unwrap();
        assert_eq!(
            b.at,
            "2026-11-30T11:30:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert!(!b.now);
    }

    #[test]
    fn bad_bodies_say_what_to_fix() {
        for (body, message) in [
            (&b"{}"[..], "\"people\" is missing; send a JSON object"),
            (b"[]", "the body is not a JSON object;"),
            (b"23", "the body is not a JSON object;"),
            (b"{", "the body is not JSON ("),
            (
                br#"{"people": -1}"#,
                "\"people\" must be a whole number from 0 to 100000 (found -1)",
            ),
            (
                br#"{"people": 2.5}"#,
                "\"people\" must be a whole number from 0 to 100000 (found 2.5)",
            ),
            (
                br#"{"people": "3"}"#,
                "\"people\" must be a whole number from 0 to 100000 (found \"3\")",
            ),
            (br#"{"people": 100001}"#, "(found 100001)"),
            (br#"{"people": 1, "room": "x"}"#, "unknown field \"room\";"),
            (br#"{"people": 1, "at": 5}"#, "\"at\" must be a string"),
            (
                br#"{"people": 1, "reset": "yes"}"#,
                "\"reset\" must be true or false",
            ),
            (
                br#"{"people": 1, "reset": 1}"#,
                "\"reset\" must be true or false",
            ),
            (
                br#"{"people": 1, "at": "2026-11-30T11:58:59Z", "reset": true}"#,
                "\"reset\" sets the room's occupancy now, so it needs a head count of now",
            ),
            (
                br#"{"people": 1, "at": "2026-11-30 10:00"}"#,
                "\"at\": \"2026-11-30 10:00\" is not an RFC 3339 time with an offset",
            ),
            (
                br#"{"people": 1, "at": "2026-11-30T10:00:00"}"#,
                "is not an RFC 3339 time with an offset",
            ),
            (
                br#"{"people": 1, "at": "2026-11-30T12:01:01Z"}"#,
                "lies in the future (it is now 2026-11-30T12:00:00Z)",
            ),
            (
                br#"{"people": 1, "at": "2026-11-23T11:59:59Z"}"#,
                "is older than 7 days; send a more recent head count",
            ),
        ] {
            let e = parse_body(body, now()).unwrap_err();
            assert!(
                e.0.starts_with(message) || e.0.contains(message),
                "{}: {}",
                String::from_utf8_lossy(body),
                e.0
            );
        }
        let big = format!("{{\"people\": 1, \"x\": \"{}\"}}", "a".repeat(2000));
        assert!(
            parse_body(big.as_bytes(), now())
                .unwrap_err()
                .0
                .starts_with("the body has 2022 bytes, more than 1024")
        );
        // A minute ahead is still accepted (clocks differ).
        assert!(parse_body(br#"{"people": 1, "at": "2026-11-30T12:01:00Z"}"#, now()).is_ok());
    }

    #[test]
    fn a_csv_is_read_with_its_header() {
        let rows = parse_csv(
            b"\xef\xbb\xbfroom,at,people\r\nr1,2026-11-30T10:15:00+01:00,23\r\n\r\n r2 , 2026-11-29T08:00:00Z , 0 \n",
            now(),
        )
        .unwrap();
        assert_eq!(
            rows,
            vec![
                Headcount {
                    room: "r1".into(),
                    at: "2026-11-30T09:15:00Z".parse().unwrap(),
                    people: 23
                },
                Headcount {
                    room: "r2".into(),
                    at: "2026-11-29T08:00:00Z".parse().unwrap(),
                    people: 0
                },
            ]
        );
        assert_eq!(parse_csv(b"room,at,people\n", now()).unwrap(), vec![]);
    }

    #[test]
    fn bad_csvs_name_the_line_and_column() {
        for (csv, message) in [
            (
                &b""[..],
                "the file is empty; its first line must be the header \"room,at,people\"",
            ),
            (
                b"at,room,people\n",
                "line 1: the header must be \"room,at,people\" (found \"at,room,people\")",
            ),
            (
                b"room,at,people\nr1,2026-11-30T10:00:00Z\n",
                "line 2: has 2 fields; send room,at,people",
            ),
            (
                b"room,at,people\n\nR1,2026-11-30T10:00:00Z,3\n",
                "line 3, column room: \"R1\" is not a room id",
            ),
            (
                b"room,at,people\nr1,2026-11-30 10:00,3\n",
                "line 2, column at: \"2026-11-30 10:00\" is not an RFC 3339 time with an offset",
            ),
            (
                b"room,at,people\nr1,2026-12-30T10:00:00Z,3\n",
                "line 2, column at: \"2026-12-30T10:00:00Z\" lies in the future",
            ),
            (
                b"room,at,people\nr1,1999-12-31T23:59:59Z,3\n",
                "line 2, column at: \"1999-12-31T23:59:59Z\" is before 2000",
            ),
            (
                b"room,at,people\nr1,2026-11-30T10:00:00Z,-3\n",
                "line 2, column people: \"-3\" is not a whole number from 0 to 100000",
            ),
            (
                b"room,at,people\nr1,2026-11-30T10:00:00Z,+3\n",
                "line 2, column people: \"+3\" is not",
            ),
            (
                b"room,at,people\nr1,2026-11-30T10:00:00Z,100001\n",
                "line 2, column people: \"100001\" is not",
            ),
            (
                b"room,at,people\nr1,2026-11-30T10:00:00Z,\xff\n",
                "line 2: is not UTF-8 text",
            ),
        ] {
            let e = parse_csv(csv, now()).unwrap_err().to_string();
            assert!(
                e.starts_with(message),
                "{}: {e}",
                String::from_utf8_lossy(csv)
            );
        }
        let long = format!("room,at,people\nr1,{},3\n", "x".repeat(300));
        assert!(
            parse_csv(long.as_bytes(), now())
                .unwrap_err()
                .to_string()
                .starts_with("line 2: is 305 bytes long, more than 256")
        );
        let mut many = String::from("room,at,people\n");
        for _ in 0..=MAX_ROWS {
            many.push_str("r1,2026-11-30T10:00:00Z,3\n");
        }
        assert_eq!(
            parse_csv(many.as_bytes(), now()).unwrap_err().to_string(),
            "line 10002: more than 10000 rows; split the file"
        );
    }

    fn headcount() -> impl Strategy<Value = Headcount> {
        (
            "[a-z0-9][a-z0-9-]{0,20}",
            EARLIEST..1_795_348_800i64,
            0..1_000_000u32,
            0..=MAX_PEOPLE,
        )
            .prop_map(|(room, s, us, people)| Headcount {
                room,
                at: DateTime::from_timestamp(s, us).unwrap(),
                people,
            })
    }

    proptest! {
        #[test]
        fn csv_round_trips(rows in proptest::collection::vec(headcount(), 0..50)) {
            prop_assert_eq!(parse_csv(to_csv(&rows).as_bytes(), now()).unwrap(), rows);
        }

        #[test]
        fn any_bytes_are_a_csv_or_an_error(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut b = b"room,at,people\n".to_vec();
            b.extend(&bytes);
            if let Ok(rows) = parse_csv(&b, now()) {
                for r in rows {
                    prop_assert!(r.people <= MAX_PEOPLE && r.at <= now() + MAX_AHEAD);
                }
            }
            let _ = parse_csv(&bytes, now());
            let _ = parse_body(&bytes, now());
        }

        #[test]
        fn accepted_bodies_are_in_range(people in any::<i64>(), ahead in -800_000i64..800_000) {
            let at = (now() + TimeDelta::seconds(ahead)).to_rfc3339();
            let body = format!("{{\"people\": {people}, \"at\": \"{at}\"}}");
            match parse_body(body.as_bytes(), now()) {
                Ok(b) => {
                    prop_assert!((0..=i64::from(MAX_PEOPLE)).contains(&people));
                    prop_assert!(b.at <= now() + MAX_AHEAD && b.at >= now() - MAX_AGE);
                }
                Err(_) => prop_assert!(
                    !(0..=i64::from(MAX_PEOPLE)).contains(&people) || !(-7 * 86_400..=60).contains(&ahead)
                ),
            }
        }
    }
}
