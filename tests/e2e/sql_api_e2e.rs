//! What people see: SQL over the PostgreSQL wire (real `psql`, `tokio-postgres`), the HTTP
//! API with bands for small numbers (checked against its OpenAPI document by `schemathesis`),
//! and the free-places page in headless Chromium.

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

/// The common campus plus a steward, a viewer and an office (never public).
fn campus_with_users(data: &Path) -> String {
    let h = |s: &str| tellijn::secrets::hash_demo(s).unwrap();
    format!(
        "{}\n[[rooms]]\nid = \"r3\"\nbuilding = \"b\"\nname = \"Office three\"\nkind = \"office\"\ncapacity = 2\n\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"steward\"\n\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"viewer\"\n",
        campus_text(data, "200ms", ""),
        STEWARD.0,
        h(STEWARD.1),
        VIEWER.0,
        h(VIEWER.1)
    )
}

/// Per-minute occupancy rows for yesterday (UTC), written as the processors write them.
fn write_occupancy(data: &Path, flush: u64, rooms: &[(&str, u32)]) -> DateTime<Utc> {
    let day = (Utc::now() - TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let mut b = Buffer::default();
    for (i, (room, peak)) in rooms.iter().enumerate() {
        for m in 0..30u32 {
            let n = (peak * (m + 1) / 30).max(1);
            b.occupancy.push(MinuteRow {
                room: (*room).into(),
                building: "b".into(),
                minute: (day + TimeDelta::minutes(m as i64 + i as i64)).timestamp_micros(),
                people_in: 1,
                people_out: 0,
                occupancy_min: n - 1,
                occupancy_avg: n as f64 - 0.5,
                occupancy_max: n,
                capacity: 10,
            });
        }
    }
    b.flush(data, flush).unwrap();
    day
}

fn duckdb(data: &Path, sql: &str) -> String {
    let script = format!(
        "import duckdb\nfor r in duckdb.sql(\"\"\"{}\"\"\").fetchall(): print(','.join(str(x) for x in r))",
        sql.replace(
            "FROM occupancy",
            &format!(
                "FROM read_parquet('{}/occupancy/*/*.parquet', hive_partitioning=true)",
                data.display()
            )
        )
    );
    let out = std::process::Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3 with duckdb (pip install duckdb)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn psql_serves_every_table_to_stewards_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    write_occupancy(data, 0, &[("r1", 8), ("r2", 40)]);
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let pg = server.postgres_addr();

    // Every contract table answers.
    for table in [
        "counts",
        "zone_counts",
        "occupancy",
        "rooms",
        "buildings",
        "sensors",
    ] {
        let r = psql(pg, STEWARD, &format!("SELECT count(*) FROM {table}")).await;
        assert!(r.ok, "{table}: {}", r.stderr);
        let n: u64 = r.stdout.trim().parse().unwrap();
        let expected = match table {
            "occupancy" => 60,
            "rooms" => 3,
            "buildings" => 1,
            "sensors" => 2,
            _ => 0,
        };
        assert_eq!(n, expected, "{table}");
    }
    // psql's own catalogue commands.
    let r = psql(pg, STEWARD, "\\dt").await;
    assert!(r.ok, "{}", r.stderr);
    for t in ["counts", "occupancy", "rooms", "sensors"] {
        assert!(r.stdout.contains(t), "\\dt lacks {t}: {}", r.stdout);
    }
    let r = psql(pg, STEWARD, "\\d occupancy").await;
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("occupancy_max"), "{}", r.stdout);

    // The same answer as DuckDB over the same files.
    let sql = "SELECT room, max(occupancy_max) FROM occupancy GROUP BY room ORDER BY room";
    let r = psql(pg, STEWARD, sql).await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, duckdb(data, sql));
    assert_eq!(r.stdout, "r1,8\nr2,40\n");

    // What Grafana's PostgreSQL data source sends for a time-series panel
    // ($__timeGroupAlias(minute, 5m) and $__timeFilter(minute), expanded).
    let day = (Utc::now() - TimeDelta::days(1)).date_naive();
    let grafana = format!(
        "SELECT floor(extract(epoch from minute)/300)*300 AS \"time\", room AS metric, max(occupancy_max) AS value \
         FROM occupancy WHERE minute BETWEEN '{day}T08:00:00Z' AND '{day}T10:00:00Z' \
         GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let r = psql(pg, STEWARD, &grafana).await;
    assert!(r.ok, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 13, "{}", r.stdout); // r1: 09:00…09:25, r2: 09:00…09:30
    let r = psql(
        pg,
        STEWARD,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(
        r.stdout,
        "bookings\nbuildings\ncounts\nheadcounts\noccupancy\nrooms\nsensors\nzone_counts\n"
    );

    // Read-only.
    for write in [
        "COPY counts TO '/tmp/tellijn-steal.parquet'",
        "CREATE TABLE x (a INT)",
        "DROP TABLE counts",
        "SET datafusion.execution.batch_size = 1",
    ] {
        let r = psql(pg, STEWARD, write).await;
        assert!(!r.ok, "{write} ran");
        assert!(r.stderr.contains("not allowed"), "{write}: {}", r.stderr);
    }

    // A wrong password, an unknown user and a viewer are refused, counted and audited.
    let r = psql(pg, (STEWARD.0, "wrong"), "SELECT 1").await;
    assert!(!r.ok && r.stdout.is_empty(), "{}", r.stderr);
    let r = psql(pg, ("mallory", "x"), "SELECT 1").await;
    assert!(!r.ok && r.stdout.is_empty(), "{}", r.stderr);
    let r = psql(pg, VIEWER, "SELECT count(*) FROM counts").await;
    assert!(!r.ok && r.stdout.is_empty(), "a viewer ran SQL");
    assert!(r.stderr.contains("viewer"), "{}", r.stderr);
    let m = http_get(server.metrics_addr(), "/metrics").await;
    for reason in ["sql_bad_password", "sql_unknown_user", "sql_role_viewer"] {
        assert_eq!(
            metric(
                &m,
                &format!("tellijn_auth_failures_total{{reason=\"{reason}\"}}")
            ),
            1.0,
            "{reason}"
        );
    }
    let audit = audit_lines(data);
    assert!(audit.iter().any(|l| l["event"] == "auth_failure"
        && l["reason"] == "sql_role_viewer"
        && l["username"] == "vic"));
    assert!(
        !audit.iter().any(|l| l.to_string().contains("wrong")),
        "a password reached the audit log"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_connected_session_sees_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let pg = server.postgres_addr();
    let (client, _conn) = pg_client(pg, STEWARD).await;
    assert_eq!(occupancy_rows(&client).await, 0);
    write_occupancy(data, 0, &[("r1", 3)]);
    assert_eq!(occupancy_rows(&client).await, 30);
    // Prepared statements (the extended protocol DBeaver and Metabase use) work too.
    let rows = client
        .query(
            "SELECT room, max(occupancy_max) AS m FROM occupancy WHERE room = $1 GROUP BY room",
            &[&"r1"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, String>(0), "r1");
    drop(client);
    server.stop().await.unwrap();
}

async fn occupancy_rows(c: &tokio_postgres::Client) -> u64 {
    let rows = c
        .simple_query("SELECT count(*) FROM occupancy")
        .await
        .unwrap();
    rows.iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(|v| v.parse().unwrap()),
            _ => None,
        })
        .unwrap()
}

/// A GET with optional Basic credentials: (status, body).
async fn get(addr: SocketAddr, path: &str, user: Option<(&str, &str)>) -> (u16, String) {
    let basic = user.map(|(u, p)| format!("{u}:{p}"));
    http_basic(addr, path, basic.as_deref()).await
}

async fn get_json(addr: SocketAddr, path: &str, user: Option<(&str, &str)>) -> (u16, Value) {
    let (status, body) = get(addr, path, user).await;
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}")),
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

/// Waits until the API (as a steward) shows `n` people in r1.
async fn steward_sees_r1(http: SocketAddr, n: u64) {
    assert!(
        wait_for(20, || async {
            get_json(http, "/api/v1/rooms/r1", Some(STEWARD)).await.1["occupancy"] == n
        })
        .await,
        "r1 never showed {n} people"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_bands_small_numbers_for_all_but_stewards() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let day = write_occupancy(data, 0, &[("r1", 8)]);
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 2).await;
    steward_sees_r1(http, 2).await;
    // Two people: the steward sees 2, everyone else a band.
    let (s, r) = get_json(http, "/api/v1/rooms/r1", Some(STEWARD)).await;
    assert_eq!(s, 200);
    assert_eq!(r["occupancy"], 2);
    assert_eq!(r["fewer_than"], Value::Null);
    assert_eq!(r["free"], 8);
    assert_eq!(r["state"], "occupied");
    for user in [None, Some(VIEWER)] {
        let (s, r) = get_json(http, "/api/v1/rooms/r1", user).await;
        assert_eq!(s, 200);
        assert_eq!(r["occupancy"], Value::Null, "{user:?}: {r}");
        assert_eq!(r["fewer_than"], 5);
        assert_eq!(r["free"], 6, "a lower bound: capacity minus 4");
        assert!(!r.to_string().contains(":2,"), "{r}");
    }
    // The building: for the public the sum over its public rooms, hidden while one of them is
    // a band (it would give the band back); a viewer sees the entrances' total as a band.
    let (_, b) = get_json(http, "/api/v1/buildings", None).await;
    assert_eq!(b[0]["occupancy"], Value::Null);
    assert_eq!(b[0]["fewer_than"], Value::Null);
    assert_eq!(b[0]["capacity"], 10, "public rooms only");
    let (_, b) = get_json(http, "/api/v1/buildings", Some(VIEWER)).await;
    assert_eq!(b[0]["occupancy"], Value::Null);
    assert_eq!(b[0]["fewer_than"], 5);
    let (_, b) = get_json(http, "/api/v1/buildings", Some(STEWARD)).await;
    assert_eq!(b[0]["occupancy"], 2);

    // Anonymous readers see public rooms only; the office never.
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (_, anon) = get_json(http, "/api/v1/rooms", None).await;
    assert_eq!(ids(&anon), ["r1"]);
    let (_, all) = get_json(http, "/api/v1/rooms", Some(VIEWER)).await;
    assert_eq!(ids(&all), ["r1", "r2", "r3"]);
    let (s, e) = get_json(http, "/api/v1/rooms/r3", None).await;
    assert_eq!(s, 404);
    assert!(e["error"].as_str().unwrap().contains("not public"), "{e}");

    // Enough people: exact for everyone.
    door(&server, 2, 5).await;
    assert!(
        wait_for(20, || async {
            get_json(http, "/api/v1/rooms/r1", None).await.1["occupancy"] == 7
        })
        .await
    );
    // Every public room shown: the public building total is their sum.
    let (_, b) = get_json(http, "/api/v1/buildings", None).await;
    assert_eq!(b[0]["occupancy"], 7);

    // History: per step from the occupancy table; small numbers banded for the public.
    let from = day.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (day + TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let path = format!("/api/v1/rooms/r1/history?from={from}&to={to}&step=15m");
    let (s, h) = get_json(http, &path, Some(STEWARD)).await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["step_seconds"], 900);
    assert_eq!(h["fewer_than"], Value::Null);
    let rows = h["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 2, "{h}");
    assert_eq!(rows[0]["start"], from);
    assert_eq!(rows[0]["occupancy_max"], 4); // minutes 0..14 of a ramp to 8 over 30
    assert_eq!(rows[1]["occupancy_max"], 8);
    assert_eq!(rows[0]["people_in"], 15);
    let (_, h) = get_json(http, &path, None).await;
    assert_eq!(h["fewer_than"], 5);
    assert_eq!(h["rows"][0]["occupancy_max"], Value::Null);
    assert_eq!(h["rows"][1]["occupancy_max"], 8);

    // Bad parameters: 400 with a message that says what to fix; bad credentials: 401.
    for (path, needle) in [
        ("/api/v1/rooms/r1/history?from=yesterday", "RFC 3339"),
        ("/api/v1/rooms/r1/history?step=30s", "whole minutes"),
        (
            "/api/v1/rooms/r1/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z",
            "before",
        ),
        ("/api/v1/rooms?building=nope", "unknown building"),
    ] {
        let (s, e) = get_json(http, path, None).await;
        assert_eq!(s, 400, "{path}");
        assert!(e["error"].as_str().unwrap().contains(needle), "{path}: {e}");
    }
    // The transparency page, from the running config.
    let (s, t) = get(http, "/transparency", None).await;
    assert_eq!(s, 200);
    for needle in [
        "<h1>Tellijn transparency report</h1>",
        "<td>s1</td><td>line main → r1</td>",
        "User <code>ada</code> — steward",
        "User <code>vic</code> — viewer",
        "fewer than 5 people are shown as a band",
    ] {
        assert!(t.contains(needle), "{needle} missing:\n{t}");
    }
    assert!(
        !t.contains("$argon2"),
        "a password hash on the transparency page"
    );
    let (s, e) = get_json(http, "/api/v1/rooms/nope", None).await;
    assert_eq!(s, 404, "{e}");
    let (s, _) = get_json(http, "/api/v1/rooms", Some((STEWARD.0, "wrong"))).await;
    assert_eq!(s, 401);
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_matches_its_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    write_occupancy(data, 0, &[("r1", 8)]);
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 7).await;
    let out = tokio::process::Command::new("schemathesis")
        .args([
            "run",
            &format!("http://{http}/api/v1/openapi.json"),
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance",
            "--phases",
            "examples,coverage,fuzzing",
            "--max-examples",
            "40",
            "--workers",
            "1",
            "--seed",
            "1",
        ])
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .await
        .expect("schemathesis must be installed (pip install schemathesis)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found differences between the API and its document:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It really exercised the seven operations.
    assert!(stdout.contains("Tested: 7"), "{stdout}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn the_free_places_page_in_chromium() {
    tokio::time::timeout(Duration::from_secs(180), free_places_page())
        .await
        .expect("the Chromium test took over 3 minutes");
}

async fn free_places_page() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, 1, 2).await;
    steward_sees_r1(http, 2).await;

    let mut cdp = chromium::Chromium::start(412, 915).await;
    cdp.call("Page.navigate", json!({"url": format!("http://{http}/")}))
        .await;

    let rooms = "JSON.stringify([...document.querySelectorAll('[data-room]')].map(e => [e.dataset.room, e.querySelector('.people').textContent, e.querySelector('.free').textContent]))";
    let mut shown = Value::Null;
    for _ in 0..200 {
        let v = cdp.eval(rooms).await;
        shown = serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap();
        if shown.as_array().is_some_and(|a| !a.is_empty()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Only the public room, and its two people as a band.
    assert_eq!(
        shown,
        json!([["r1", "fewer than 5 people · 10 places", "at least 6 free"]])
    );
    let text = cdp.eval("document.body.innerText").await;
    assert!(!text.as_str().unwrap().contains("Office"), "{text}");

    // A live update without a reload: a marker set now must survive.
    cdp.eval("window.tellijnMarker = 42").await;
    door(&server, 2, 5).await;
    let mut updated = false;
    for _ in 0..300 {
        let v = cdp.eval(rooms).await;
        let now: Value = serde_json::from_str(v.as_str().unwrap_or("[]")).unwrap();
        if now == json!([["r1", "7 of 10 places taken", "3 free"]]) {
            updated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(updated, "the page did not show 7 people");
    assert_eq!(
        cdp.eval("window.tellijnMarker").await,
        42,
        "the page reloaded"
    );

    let png = cdp.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("free-places.png");
    std::fs::write(&artifact, &png).unwrap();
    eprintln!("screenshot: {}", artifact.display());
    let _ = cdp.child.kill().await;
    server.stop().await.unwrap();
}

/// Audit lines of `event = "read"`, and every audit line's text without its hashes (which are
/// hex and could hold any digits by chance).
fn reads_and_text(data: &Path) -> (Vec<Value>, String) {
    let lines = audit_lines(data);
    let text = lines
        .iter()
        .map(|l| {
            let mut l = l.clone();
            let o = l.as_object_mut().unwrap();
            o.remove("prev");
            o.remove("hash");
            l.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n");
    let reads = lines.into_iter().filter(|l| l["event"] == "read").collect();
    (reads, text)
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_by_named_users_are_audited_without_results() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // A distinctive peak that no audit line may hold.
    let day = write_occupancy(data, 0, &[("r1", 8), ("r2", 9371)]);
    let server = start_text(data, &campus_with_users(data), "127.0.0.1:0").await;
    let (pg, http) = (server.postgres_addr(), server.http_addr());

    // SQL, simple protocol (psql): a query, a campus table, psql's catalogue command.
    let r = psql(
        pg,
        STEWARD,
        "SELECT max(occupancy_max) FROM occupancy WHERE room = 'r2'",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert_eq!(r.stdout, "9371\n");
    let r = psql(pg, STEWARD, "SELECT name FROM rooms WHERE kind = 'office'").await;
    assert_eq!(r.stdout, "Office three\n", "{}", r.stderr);
    let r = psql(pg, STEWARD, "\\dt").await;
    assert!(r.ok, "{}", r.stderr);

    // SQL, extended protocol: one prepared statement executed twice is two reads.
    let (client, _conn) = pg_client(pg, STEWARD).await;
    let stmt = client
        .prepare(
            "WITH peak AS (SELECT room, max(occupancy_max) AS m FROM occupancy GROUP BY room) \
             SELECT CAST(m AS BIGINT) FROM peak WHERE room = $1",
        )
        .await
        .unwrap();
    for _ in 0..2 {
        let rows = client.query(&stmt, &[&"r2"]).await.unwrap();
        assert_eq!(rows[0].get::<_, i64>(0), 9371);
    }
    // Session settings read nothing and are not audited.
    client.simple_query("SET TIME ZONE 'UTC'").await.unwrap();
    drop(client);

    // The API: a steward's history, a viewer's room list; an anonymous list is no named read.
    let from = day.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (day + TimeDelta::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (s, h) = get_json(
        http,
        &format!("/api/v1/rooms/r2/history?from={from}&to={to}&step=1h"),
        Some(STEWARD),
    )
    .await;
    assert_eq!(s, 200, "{h}");
    assert_eq!(h["rows"][0]["occupancy_max"], 9371);
    let (s, rooms) = get_json(http, "/api/v1/rooms", Some(VIEWER)).await;
    assert_eq!(s, 200);
    assert!(rooms.to_string().contains("Office three"));
    let (s, _) = get_json(http, "/api/v1/rooms", None).await;
    assert_eq!(s, 200);
    let (s, _) = get_json(http, "/api/v1/buildings", None).await;
    assert_eq!(s, 200);
    server.stop().await.unwrap();

    let (reads, text) = reads_and_text(data);
    let summary = |l: &Value| {
        format!(
            "{} {} {} {}",
            l["user"].as_str().unwrap(),
            l["via"].as_str().unwrap(),
            l["statement"]
                .as_str()
                .or(l["resource"].as_str())
                .unwrap_or("-"),
            l["tables"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(",")
        )
    };
    let all: Vec<String> = reads.iter().map(summary).collect();
    let count = |s: &str| all.iter().filter(|x| *x == s).count();
    // psql's query and the two executes of the prepared statement (its CTE is no table).
    assert_eq!(count("ada sql query occupancy"), 3, "{all:#?}");
    assert_eq!(count("ada sql query rooms"), 1, "{all:#?}");
    // \dt reads the catalogue, and is audited with the catalogue's tables.
    assert!(
        all.iter()
            .any(|x| x.starts_with("ada sql query ") && x.contains("pg_catalog.pg_class")),
        "{all:#?}"
    );
    assert_eq!(
        count("ada api rooms/r2/history occupancy,rooms"),
        1,
        "{all:#?}"
    );
    assert_eq!(count("vic api rooms live,rooms"), 1, "{all:#?}");
    // Only named users: every read names ada or vic, and there are no other API reads.
    assert!(
        all.iter()
            .all(|x| x.starts_with("ada ") || x.starts_with("vic "))
    );
    assert_eq!(
        all.iter().filter(|x| x.contains(" api ")).count(),
        2,
        "{all:#?}"
    );
    // Nothing but a read touches no table: no SET or transaction statement was audited.
    assert!(reads.iter().all(|l| l["statement"] != "set"));
    // When: every line has its time.
    for l in &reads {
        DateTime::parse_from_rfc3339(l["ts"].as_str().unwrap()).unwrap();
    }
    // Never the results: not the peak, not a room's name, not the SQL text.
    for needle in ["9371", "Office three", "Room two", "max(", "WHERE", "kind"] {
        assert!(
            !text.contains(needle),
            "{needle} is in the audit log:\n{text}"
        );
    }
    tellijn_config::audit::verify(data).unwrap();
}
