//! Head counts: recorded through the API (JSON and CSV), the CLI import and the free-places
//! page's form in headless Chromium; stored beside Tellijn's number (`counted`), audited, and
//! turned into accuracy figures (API, SQL as documented in docs/sql/accuracy.sql,
//! `/transparency`, `tellijn transparency`).

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use serde_json::{Value, json};
use tellijn_processors::minutes::MinuteRow;
use tellijn_processors::parquet_sink::Buffer;

const STEWARD: (&str, &str) = ("ada", "ada-steward-pw");
const VIEWER: (&str, &str) = ("vic", "vic-viewer-pw");
/// A viewer a steward authorised to record head counts.
const COUNTER: (&str, &str) = ("hugo", "hugo-counter-pw");

/// The common campus (s1: a door into r1; s2: a zone over r2) plus a steward, a viewer and an
/// authorised viewer.
fn campus_with_users(data: &Path) -> String {
    let h = |s: &str| tellijn::secrets::hash_demo(s).unwrap();
    format!(
        "{}\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"steward\"\n\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"viewer\"\n\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"viewer\"\nheadcounts = true\n",
        campus_text(data, "200ms", ""),
        STEWARD.0,
        h(STEWARD.1),
        VIEWER.0,
        h(VIEWER.1),
        COUNTER.0,
        h(COUNTER.1),
    )
}

/// Per-minute occupancy rows as the processors write them: (room, minute, occupancy_avg).
fn write_occupancy(data: &Path, rows: &[(&str, DateTime<Utc>, f64)]) {
    let mut b = Buffer::default();
    for (room, minute, avg) in rows {
        b.occupancy.push(MinuteRow {
            room: (*room).into(),
            building: "b".into(),
            minute: minute.timestamp_micros(),
            people_in: 0,
            people_out: 0,
            occupancy_min: avg.floor() as u32,
            occupancy_avg: *avg,
            occupancy_max: avg.ceil() as u32,
            capacity: 10,
        });
    }
    b.flush(data, 0).unwrap();
}

fn minute_floor(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(60), 0).unwrap()
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A raw HTTP/1.1 request with a body: (status, body).
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    user: Option<(&str, &str)>,
    content_type: &str,
    body: &str,
) -> (u16, String) {
    use base64::Engine;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let auth = user
        .map(|(u, p)| {
            format!(
                "Authorization: Basic {}\r\n",
                base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
            )
        })
        .unwrap_or_default();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf.split_once("\r\n\r\n").map_or("", |x| x.1).to_owned();
    (status, body)
}

async fn post_json(
    addr: SocketAddr,
    room: &str,
    user: Option<(&str, &str)>,
    body: &str,
) -> (u16, Value) {
    let (s, b) = send(
        addr,
        "POST",
        &format!("/api/v1/rooms/{room}/headcounts"),
        user,
        "application/json",
        body,
    )
    .await;
    (
        s,
        serde_json::from_str(&b).unwrap_or_else(|e| panic!("{e}: {b:?}")),
    )
}

/// Sends one count message for `s1` (door into r1).
async fn door(server: &tellijn::server::Server, seq: u64, people_in: u32) {
    assert!(
        mosquitto_pub(
            server.mqtt_addr().port(),
            Some(("s1", S1_SECRET)),
            "s1",
            "tellijn/v1/sensors/s1/counts",
            Payload::Text(&line_msg(seq, people_in, 0)),
        )
        .await
    );
}

async fn r1_shows(http: SocketAddr, n: u64) {
    assert!(
        wait_for(20, || async {
            let (_, b) = http_basic(
                http,
                "/api/v1/rooms/r1",
                Some(&format!("{}:{}", STEWARD.0, STEWARD.1)),
            )
            .await;
            serde_json::from_str::<Value>(&b).is_ok_and(|v| v["occupancy"] == n)
        })
        .await,
        "r1 never showed {n} people"
    );
}

/// The stored head counts: (room, people, counted, recorded_by), oldest first.
async fn stored(data: &Path) -> Vec<(String, i64, i64, String)> {
    let h = tellijn_queries::History::open(data, None).await.unwrap();
    let json = h
        .query(
            "SELECT room, people, counted, recorded_by FROM headcounts ORDER BY at, room",
            tellijn_queries::Format::Json,
        )
        .await
        .unwrap();
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    rows.iter()
        .map(|r| {
            (
                r["room"].as_str().unwrap().to_owned(),
                r["people"].as_i64().unwrap(),
                r["counted"].as_i64().unwrap(),
                r["recorded_by"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn figures(list: &Value, id: &str) -> (u64, Option<f64>, Option<f64>) {
    let f = list
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["id"] == id)
        .unwrap_or_else(|| panic!("no {id} in {list}"));
    (
        f["checks"].as_u64().unwrap(),
        f["mean_abs_error"].as_f64(),
        f["bias"].as_f64(),
    )
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_count_through_the_api_is_stored_audited_and_judged() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // Ten minutes ago r1 averaged 6.4 people, the minute after 7.5 (rounded: 6 and 8).
    let t0 = minute_floor(Utc::now()) - TimeDelta::minutes(10);
    let t1 = t0 + TimeDelta::minutes(1);
    write_occupancy(data, &[("r1", t0, 6.4), ("r1", t1, 7.5)]);
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 3).await;
    r1_shows(http, 3).await;

    // Now: compared with the live number (3).
    let (s, b) = post_json(http, "r1", Some(STEWARD), r#"{"people": 5}"#).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (&b["room"], &b["people"], &b["counted"], &b["error"]),
        (&json!("r1"), &json!(5), &json!(3), &json!(-2)),
        "{b}"
    );
    // Earlier: compared with that minute of the history.
    let (s, b) = post_json(
        http,
        "r1",
        Some(STEWARD),
        &format!(
            r#"{{"people": 4, "at": "{}"}}"#,
            rfc(t0 + TimeDelta::seconds(30))
        ),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!((&b["counted"], &b["error"]), (&json!(6), &json!(2)), "{b}");
    // A viewer a steward authorised (headcounts = true) may record a count of now, and sees
    // Tellijn's number (3) as the band viewers see; an earlier time only stewards may send.
    let (s, b) = post_json(
        http,
        "r1",
        Some(COUNTER),
        &format!(
            r#"{{"people": 10, "at": "{}"}}"#,
            rfc(t1 + TimeDelta::seconds(10))
        ),
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert_eq!(
        b["error"],
        "user \"hugo\" may record head counts of now only (leave out \"at\"); a steward may record earlier ones"
    );
    let (s, b) = post_json(http, "r1", Some(COUNTER), r#"{"people": 10}"#).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (&b["counted"], &b["error"], &b["fewer_than"]),
        (&Value::Null, &Value::Null, &json!(5)),
        "{b}"
    );

    // Refusals, each with what to fix.
    let (s, b) = post_json(http, "r1", None, r#"{"people": 5}"#).await;
    assert_eq!(s, 401, "{b}");
    assert!(b["error"].as_str().unwrap().contains("steward"), "{b}");
    let (s, b) = post_json(http, "r1", Some(VIEWER), r#"{"people": 5}"#).await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .starts_with("user \"vic\" may not record head counts"),
        "{b}"
    );
    let (s, b) = post_json(http, "nowhere", Some(STEWARD), r#"{"people": 5}"#).await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(
        b["error"],
        "no room \"nowhere\"; GET /api/v1/rooms lists them"
    );
    let hour_ago = rfc(t0 - TimeDelta::minutes(50));
    for (body, message) in [
        ("{}".to_owned(), "\"people\" is missing"),
        (
            r#"{"people": -1}"#.into(),
            "\"people\" must be a whole number from 0 to 100000 (found -1)",
        ),
        ("people=5".into(), "the body is not JSON"),
        (
            r#"{"people": 1, "at": "2026-11-30 10:00"}"#.into(),
            "\"at\": \"2026-11-30 10:00\" is not an RFC 3339 time with an offset",
        ),
        (
            format!(
                r#"{{"people": 1, "at": "{}"}}"#,
                rfc(Utc::now() + TimeDelta::hours(1))
            ),
            "lies in the future",
        ),
        (
            format!(
                r#"{{"people": 1, "at": "{}"}}"#,
                rfc(Utc::now() - TimeDelta::days(8))
            ),
            "is older than 7 days",
        ),
        (
            format!(r#"{{"people": 1, "at": "{hour_ago}"}}"#),
            "Tellijn has no occupancy of room \"r1\" for",
        ),
    ] {
        let (s, b) = post_json(http, "r1", Some(STEWARD), &body).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(
            b["error"].as_str().unwrap().contains(message),
            "{body}: {b}"
        );
    }
    let (s, _) = send(
        http,
        "POST",
        "/api/v1/rooms/r1/headcounts",
        Some(STEWARD),
        "application/json",
        &format!(r#"{{"people": 1, "x": "{}"}}"#, "a".repeat(5000)),
    )
    .await;
    assert_eq!(s, 413);

    // Stored, with who recorded it and Tellijn's number.
    let rows = stored(data).await;
    let mut sorted: Vec<_> = rows.iter().map(|r| (r.1, r.2, r.3.as_str())).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        vec![(4, 6, "ada"), (5, 3, "ada"), (10, 3, "hugo")],
        "{rows:?}"
    );

    // Audited: one line per head count, with its numbers.
    let lines: Vec<Value> = audit_lines(data)
        .into_iter()
        .filter(|l| l["event"] == "headcount")
        .collect();
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut audited: Vec<(i64, i64, String)> = lines
        .iter()
        .map(|l| {
            assert_eq!(l["room"], "r1");
            assert_eq!(l["via"], "api");
            (
                l["people"].as_i64().unwrap(),
                l["counted"].as_i64().unwrap(),
                l["user"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    audited.sort();
    assert_eq!(
        audited,
        vec![
            (4, 6, "ada".into()),
            (5, 3, "ada".into()),
            (10, 3, "hugo".into())
        ]
    );
    assert!(tellijn_config::audit::verify(data).is_ok());

    // A CSV through the API (stewards only: it brings in earlier times), checked as the CLI
    // checks it.
    let csv = format!("room,at,people\nr1,{},9\n", rfc(t1));
    let (s, b) = send(
        http,
        "POST",
        "/api/v1/headcounts",
        Some(STEWARD),
        "text/plain",
        &csv,
    )
    .await;
    assert_eq!(s, 415, "{b}");
    let (s, b) = send(
        http,
        "POST",
        "/api/v1/headcounts",
        Some(COUNTER),
        "text/csv",
        &csv,
    )
    .await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b.contains("user \\\"hugo\\\" may not import head counts; a steward may"),
        "{b}"
    );
    let bad = format!("room,at,people\nr1,{},9\nr9,{},1\n", rfc(t1), rfc(t1));
    let (s, b) = send(
        http,
        "POST",
        "/api/v1/headcounts",
        Some(STEWARD),
        "text/csv",
        &bad,
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b.contains("line 3, column room: no room \\\"r9\\\" in the campus configuration"),
        "{b}"
    );
    let (s, b) = send(
        http,
        "POST",
        "/api/v1/headcounts",
        Some(STEWARD),
        "text/csv",
        &csv,
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        serde_json::from_str::<Value>(&b).unwrap(),
        json!({"rows": 1, "rooms": ["r1"]})
    );
    assert_eq!(
        audit_lines(data)
            .iter()
            .filter(|l| l["event"] == "headcount_import" && l["user"] == "ada" && l["rows"] == 1)
            .count(),
        1
    );

    // Accuracy: r1 errors -2, +2, -7 and -1 (the CSV's: counted 8, people 9).
    let (s, b) = http_basic(http, "/api/v1/accuracy", None).await;
    assert_eq!(s, 401, "{b}");
    let (s, b) = http_basic(
        http,
        "/api/v1/accuracy",
        Some(&format!("{}:{}", VIEWER.0, VIEWER.1)),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let a: Value = serde_json::from_str(&b).unwrap();
    let (n, mae, bias) = figures(&a["rooms"], "r1");
    assert_eq!(n, 4, "{a}");
    assert!(close(mae, 3.0), "{a}");
    assert!(close(bias, -2.0), "{a}");
    assert_eq!(figures(&a["rooms"], "r2"), (0, None, None));
    let (n, mae, bias) = figures(&a["sensors"], "s1");
    assert_eq!(n, 4);
    assert!(close(mae, 3.0) && close(bias, -2.0), "{a}");
    assert_eq!(figures(&a["sensors"], "s2"), (0, None, None));

    // The transparency report shows them per room and sensor.
    let page = http_get(http, "/transparency").await;
    assert!(
        page.contains("<h2>Accuracy from head counts</h2>"),
        "{page}"
    );
    for row in [
        "<tr><td>r1</td><td>4</td><td>3.00</td><td>-2.00</td></tr>",
        "<tr><td>s1</td><td>4</td><td>3.00</td><td>-2.00</td></tr>",
    ] {
        assert!(page.contains(row), "{row} missing:\n{page}");
    }
    server.stop().await.unwrap();
}

/// The statements of docs/sql/accuracy.sql, without their comments.
fn documented_sql() -> Vec<String> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/sql/accuracy.sql"
    ))
    .unwrap();
    let code: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("{l}\n"))
        .collect();
    code.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_csv_import_through_the_cli_gives_exact_accuracy_figures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let config = dir.path().join("campus.toml");
    std::fs::write(&config, campus_with_users(&data)).unwrap();
    // Thirty days ago (older than the API's 7 days: an import may bring in old paper counts).
    let t = minute_floor(Utc::now() - TimeDelta::days(30));
    let m = |i: i64| t + TimeDelta::minutes(i);
    write_occupancy(
        &data,
        &[
            ("r1", m(0), 10.0),
            ("r1", m(1), 12.4),
            ("r2", m(0), 50.0),
            ("r2", m(5), 40.6),
        ],
    );
    // r1: counted 10 vs 12 (-2), 12 vs 9 (+3); r2: 50 vs 50 (0), 41 vs 45 (-4).
    let csv = format!(
        "room,at,people\nr1,{},12\nr1,{},9\n\nr2,{},50\nr2,{},45\n",
        rfc(m(0)),
        rfc(m(1) + TimeDelta::seconds(59)),
        m(0).with_timezone(&chrono::FixedOffset::east_opt(3600).unwrap())
            .to_rfc3339(),
        rfc(m(5)),
    );
    let file = dir.path().join("counts.csv");
    let import = |file: &Path, user: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
            .args(["headcounts", "import", "--config"])
            .arg(&config)
            .args(["--recorded-by", user])
            .arg(file)
            .output()
            .unwrap()
    };
    // Refused as a whole: a viewer without headcounts = true, a line without history.
    std::fs::write(&file, &csv).unwrap();
    let out = import(&file, VIEWER.0);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--recorded-by \"vic\" is not a steward"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, format!("{csv}r1,{},3\n", rfc(m(7)))).unwrap();
    let out = import(&bad, STEWARD.0);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("line 7, column at: Tellijn has no occupancy for that room and minute"),
        "{err}"
    );
    std::fs::write(&bad, "room,at,people\nr1,yesterday,3\n").unwrap();
    let err = String::from_utf8_lossy(&import(&bad, STEWARD.0).stderr).into_owned();
    assert!(
        err.contains("line 2, column at: \"yesterday\" is not an RFC 3339 time with an offset"),
        "{err}"
    );
    assert!(
        stored(&data).await.is_empty(),
        "a refused import stored rows"
    );

    let out = import(&file, STEWARD.0);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("Imported 4 head counts"));
    let rows = stored(&data).await;
    assert_eq!(
        rows,
        vec![
            ("r1".into(), 12, 10, "ada".into()),
            ("r2".into(), 50, 50, "ada".into()),
            ("r1".into(), 9, 12, "ada".into()),
            ("r2".into(), 45, 41, "ada".into()),
        ]
    );
    let lines: Vec<Value> = audit_lines(&data)
        .into_iter()
        .filter(|l| l["event"] == "headcount_import")
        .collect();
    assert_eq!(lines.len(), 1, "one line per import: {lines:?}");
    assert_eq!(
        (
            &lines[0]["user"],
            &lines[0]["via"],
            &lines[0]["rows"],
            &lines[0]["rooms"]
        ),
        (
            &json!("ada"),
            &json!("cli"),
            &json!(4),
            &json!(["r1", "r2"])
        )
    );

    // The figures: r1 MAE 2.5, bias 0.5; r2 MAE 2, bias -2; s1 counts r1, s2 r2.
    let campus = tellijn_config::Campus::load(&config).unwrap();
    let history = tellijn_queries::History::open(&data, Some(&campus))
        .await
        .unwrap();
    let a = tellijn::headcounts::accuracy(&campus, &history)
        .await
        .unwrap();
    let a = serde_json::to_value(&a).unwrap();
    assert_eq!(figures(&a["rooms"], "r1"), (2, Some(2.5), Some(0.5)));
    assert_eq!(figures(&a["rooms"], "r2"), (2, Some(2.0), Some(-2.0)));
    assert_eq!(figures(&a["sensors"], "s1"), (2, Some(2.5), Some(0.5)));
    assert_eq!(figures(&a["sensors"], "s2"), (2, Some(2.0), Some(-2.0)));

    // The documented SQL says the same.
    let sql = documented_sql();
    assert_eq!(sql.len(), 3, "{sql:?}");
    let csv_of = |q: String| {
        let history = &history;
        async move {
            history
                .query(&q, tellijn_queries::Format::Csv)
                .await
                .unwrap_or_else(|e| panic!("{q}: {e}"))
        }
    };
    assert_eq!(
        csv_of(sql[0].clone()).await,
        "room,checks,mean_abs_error,bias\nr1,2,2.5,0.5\nr2,2,2.0,-2.0\n"
    );
    assert_eq!(
        csv_of(sql[1].clone()).await,
        "sensor,checks,mean_abs_error,bias\ns1,2,2.5,0.5\ns2,2,2.0,-2.0\n"
    );
    assert_eq!(csv_of(sql[2].clone()).await.lines().count(), 5);

    // `tellijn transparency` prints them.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["transparency", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.contains("## Accuracy from head counts"), "{md}");
    assert!(md.contains("| r1 | 2 | 2.50 | 0.50 |"), "{md}");
    assert!(md.contains("| s2 | 2 | 2.00 | -2.00 |"), "{md}");
    assert!(md.contains("User `hugo` — viewer: the API for every room, small numbers as bands; no SQL; records head counts."), "{md}");

    // While a server runs on the data directory the import is refused (two writers would fork
    // the audit chain), and the chain stays intact.
    let server = start_text(
        &data,
        &std::fs::read_to_string(&config).unwrap(),
        "127.0.0.1:0",
    )
    .await;
    let out = import(&file, STEWARD.0);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("another Tellijn process (a running server?) writes the audit log"),
        "{err}"
    );
    server.stop().await.unwrap();
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_accuracy_sql_answers_on_an_empty_table() {
    let dir = tempfile::tempdir().unwrap();
    let campus = tellijn_config::Campus::parse(&campus_with_users(dir.path()), "test").unwrap();
    let history = tellijn_queries::History::open(dir.path(), Some(&campus))
        .await
        .unwrap();
    let sql = documented_sql();
    let q = |i: usize| history.query(&sql[i], tellijn_queries::Format::Csv);
    assert_eq!(
        q(0).await.unwrap(),
        "room,checks,mean_abs_error,bias\nr1,0,,\nr2,0,,\n"
    );
    assert_eq!(
        q(1).await.unwrap(),
        "sensor,checks,mean_abs_error,bias\ns1,0,,\ns2,0,,\n"
    );
    let a = tellijn::headcounts::accuracy(&campus, &history)
        .await
        .unwrap();
    assert_eq!(a.checks(), 0);
    let md = tellijn::transparency::report_with(&campus, dir.path(), Utc::now(), Some(&a));
    assert!(md.contains("No head counts have been recorded yet"), "{md}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_head_count_form_in_chromium() {
    tokio::time::timeout(Duration::from_secs(180), head_count_form())
        .await
        .expect("the Chromium test took over 3 minutes");
}

async fn head_count_form() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 2).await;
    r1_shows(http, 2).await;

    let mut cdp = chromium::Chromium::start(390, 844).await;
    cdp.call("Page.navigate", json!({"url": format!("http://{http}/")}))
        .await;
    // The form is there, collapsed, and offers the public room only.
    let mut options = Value::Null;
    for _ in 0..200 {
        options = cdp
            .eval("JSON.stringify([...document.querySelectorAll('#hc-room option')].map(o => o.value))")
            .await;
        if options.as_str().is_some_and(|o| o != "[]") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(options, "[\"r1\"]");
    assert_eq!(
        cdp.eval("document.getElementById('headcount').open").await,
        false
    );
    let visible = cdp
        .eval("!document.getElementById('hc-people').checkVisibility()")
        .await;
    assert_eq!(visible, true, "the collapsed form's fields are hidden");

    let submit = |user: &str, password: &str, people: u32| {
        format!(
            "(() => {{ document.getElementById('headcount').open = true; \
             document.getElementById('hc-user').value = {user:?}; \
             document.getElementById('hc-password').value = {password:?}; \
             document.getElementById('hc-people').value = '{people}'; \
             document.getElementById('hc-form').requestSubmit(); return true; }})()"
        )
    };
    let result = "document.getElementById('hc-result').textContent";
    // A viewer without permission: the API's message is shown, nothing stored.
    cdp.eval(&submit(VIEWER.0, VIEWER.1, 3)).await;
    let mut shown = Value::Null;
    for _ in 0..200 {
        shown = cdp.eval(result).await;
        if shown
            .as_str()
            .is_some_and(|s| s.starts_with("Not recorded"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        shown,
        "Not recorded: user \"vic\" may not record head counts; a steward may, or a user given headcounts = true in [[users]]"
    );
    // The steward: stored beside the live number (2).
    cdp.eval(&submit(STEWARD.0, STEWARD.1, 3)).await;
    for _ in 0..200 {
        shown = cdp.eval(result).await;
        if shown.as_str().is_some_and(|s| s.starts_with("Recorded")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, "Recorded 3 people. Tellijn counted 2 (-1).");
    assert_eq!(stored(data).await, vec![("r1".into(), 3, 2, "ada".into())]);
    // Nothing of the credentials stays in the page's storage.
    let kept = cdp
        .eval("JSON.stringify([localStorage.length, sessionStorage.length, document.cookie])")
        .await;
    assert_eq!(kept, "[0,0,\"\"]");
    let png = cdp.screenshot().await;
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("headcount-form.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    let _ = cdp.child.kill().await;
    server.stop().await.unwrap();
}

/// The head-count form's campus with `[bookings] headcount_resets = true`.
fn campus_with_resets(data: &Path) -> String {
    format!(
        "{}\n[bookings]\nheadcount_resets = true\n",
        campus_with_users(data)
    )
}

/// The stored head counts' `reset` flags, oldest first.
async fn stored_resets(data: &Path) -> Vec<(i64, bool)> {
    let h = tellijn_queries::History::open(data, None).await.unwrap();
    let json = h
        .query(
            "SELECT people, reset FROM headcounts ORDER BY at, people",
            tellijn_queries::Format::Json,
        )
        .await
        .unwrap();
    let rows: Vec<Value> = serde_json::from_str(&json).unwrap();
    rows.iter()
        .map(|r| (r["people"].as_i64().unwrap(), r["reset"].as_bool().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_count_of_now_sets_a_line_counted_room_when_the_campus_allows_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();

    // Off by default: refused, and nothing stored or audited.
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 5).await;
    r1_shows(http, 5).await;
    let (s, b) = post_json(http, "r1", Some(STEWARD), r#"{"people": 2, "reset": true}"#).await;
    assert_eq!(s, 403, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("[bookings] headcount_resets = true"),
        "{b}"
    );
    r1_shows(http, 5).await;
    server.stop().await.unwrap();
    assert!(
        stored_resets(data).await.is_empty(),
        "a refused reset was stored"
    );

    // Allowed: 6 in r1 (one more came), a counter finds 2, and r1 is at 2 from then on.
    let server = start_text(data, &campus_with_resets(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 2, 1).await;
    r1_shows(http, 6).await;
    let (s, b) = post_json(http, "r1", Some(COUNTER), r#"{"people": 2, "reset": true}"#).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (&b["people"], &b["reset"]),
        (&json!(2), &json!(true)),
        "{b}"
    );
    r1_shows(http, 2).await;
    // The metric the boards draw follows too.
    let metrics = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(
        metric(
            &metrics,
            "tellijn_room_occupancy{room=\"r1\",building=\"b\"}"
        ),
        2.0,
        "{metrics}"
    );
    // Audited with what Tellijn had (6) and the flag, before the row was stored.
    let line = audit_lines(data)
        .into_iter()
        .rfind(|l| l["event"] == "headcount")
        .expect("no headcount audit line");
    assert_eq!(
        (
            &line["user"],
            &line["room"],
            &line["people"],
            &line["counted"],
            &line["reset"]
        ),
        (
            &json!("hugo"),
            &json!("r1"),
            &json!(2),
            &json!(6),
            &json!(true)
        ),
        "{line}"
    );

    // Not for a zone room (its next reading replaces it), nor for a count of the past.
    let (s, b) = post_json(http, "r2", Some(STEWARD), r#"{"people": 9, "reset": true}"#).await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"].as_str().unwrap().contains("camera zones"), "{b}");
    let (s, b) = post_json(
        http,
        "r1",
        Some(STEWARD),
        &format!(
            r#"{{"people": 9, "at": "{}", "reset": true}}"#,
            rfc(Utc::now() - TimeDelta::minutes(5))
        ),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]
            .as_str()
            .unwrap()
            .contains("needs a head count of now"),
        "{b}"
    );
    r1_shows(http, 2).await;
    // A plain head count still only compares.
    let (s, b) = post_json(http, "r1", Some(STEWARD), r#"{"people": 4}"#).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!(
        (&b["counted"], &b["reset"]),
        (&json!(2), &json!(false)),
        "{b}"
    );
    r1_shows(http, 2).await;
    assert_eq!(stored_resets(data).await, vec![(2, true), (4, false)]);

    // The set number is saved with the state even though no message came after it: a restart
    // shows 2, not the 6 of the last flush before it.
    server.stop().await.unwrap();
    let server = start_text(data, &campus_with_resets(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    r1_shows(http, 2).await;
    // Crossings go on from the number counted.
    door(&server, 3, 1).await;
    r1_shows(http, 3).await;
    server.stop().await.unwrap();
}
