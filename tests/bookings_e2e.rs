//! Bookings end to end, on an accelerated clock: an iCalendar feed served over real HTTP (with
//! ETags, then failing with 500 and with garbage), a lecture hall counted by a zone sensor over
//! real MQTT, and what comes out: the retained `tellijn/v1/rooms/{room}/booking` (read by a
//! named MQTT reader), the no-show and the booking that was used, the open study place in the
//! anonymous API and on the free-places page (headless Chromium), the `bookings` table, the
//! feed's metrics, and — searched for everywhere — none of the names the feed was full of.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;
use tellijn::server::{Server, ServerOptions};
use tellijn_config::Campus;
use tellijn_wire::Clock;

/// Simulated seconds per real second: a simulated minute is 0.1 s.
const SPEED: f64 = 600.0;
const STEWARD: (&str, &str) = ("ada", "ada-password-1");
const READER: (&str, &str) = ("hvac", "hvac-password-1");

/// What the feed carries: the names that must never come out anywhere.
const PERSONAL: [&str; 7] = [
    "Jan de Vries",
    "jan.devries",
    "Exam Contract Law",
    "Board meeting about redundancies",
    "Fatima",
    "student-4711",
    "uid-jan-devries-exam",
];

#[derive(Default)]
struct Feed {
    status: u16,
    body: String,
    hits: u32,
    not_modified: u32,
}

async fn feed_server(feed: Arc<Mutex<Feed>>) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new().route(
        "/rooms.ics",
        axum::routing::get(move |headers: HeaderMap| {
            let feed = feed.clone();
            async move {
                let mut f = feed.lock().unwrap();
                f.hits += 1;
                let etag = format!("\"{}\"", f.body.len());
                if f.status != 200 {
                    return (StatusCode::from_u16(f.status).unwrap(), "down").into_response();
                }
                if headers
                    .get(header::IF_NONE_MATCH)
                    .is_some_and(|v| v.as_bytes() == etag.as_bytes())
                {
                    f.not_modified += 1;
                    return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
                }
                (StatusCode::OK, [(header::ETAG, etag)], f.body.clone()).into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn z(t: DateTime<Utc>) -> String {
    t.format("%Y%m%dT%H%M%SZ").to_string()
}

/// A: nobody comes (minutes 20–80); B: used (100–160); C: later (400–460); all in hall `r2`,
/// full of personal data; plus an event elsewhere and a transparent one.
fn ics(t0: DateTime<Utc>) -> String {
    let m = |n: i64| z(t0 + TimeDelta::minutes(n));
    format!(
        "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//EN\r\n\
BEGIN:VEVENT\r\nUID:uid-jan-devries-exam@uni.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\n\
SUMMARY:Exam Contract Law (Jan de Vries)\r\nORGANIZER;CN=Jan de Vries:mailto:jan.devries@uni.example\r\n\
ATTENDEE;CN=Fatima:mailto:student-4711@student.example\r\nDESCRIPTION:Bring your student card\\, Fatima\r\nLOCATION:HALL R2\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:b@uni.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Board meeting about redundancies\r\nLOCATION:hall r2 \r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:c@uni.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Later\r\nLOCATION:HALL R2\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:d@uni.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Free busy only\r\nTRANSP:TRANSPARENT\r\nLOCATION:HALL R2\r\nEND:VEVENT\r\n\
BEGIN:VEVENT\r\nUID:e@uni.example\r\nDTSTAMP:20260101T000000Z\r\nDTSTART:{}\r\nDTEND:{}\r\nSUMMARY:Elsewhere\r\nLOCATION:Somewhere else\r\nEND:VEVENT\r\n\
END:VCALENDAR\r\n",
        m(20),
        m(80),
        m(100),
        m(160),
        m(400),
        m(460),
        m(170),
        m(200),
        m(30),
        m(60),
    )
}

fn campus_text(data: &Path, feed: std::net::SocketAddr) -> String {
    let h = |s: &str| tellijn::secrets::hash_demo(s).unwrap();
    tellijn_test_support::CampusToml::new()
        .section(&format!(
            "[server]\ndata_dir = \"{}\"\nflush_interval = \"1s\"\nanonymous_read = [\"tellijn/v1/public/#\"]\n\n[privacy]\npublic_min_count = 5\n\n[bookings]\nno_show_after = \"15m\"\nstudy_place_min = \"60m\"\nstudy_place_margin = \"10m\"\n\n[[calendars]]\nurl = \"http://{feed}/rooms.ics\"\nrefresh = \"5m\"\nlocations = {{ \"HALL R2\" = \"r2\" }}\n\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"steward\"\n\n[[mqtt_readers]]\nname = \"{}\"\npassword_hash = \"{}\"\ntopics = [\"tellijn/v1/rooms/#\"]\n",
            data.display(),
            STEWARD.0,
            h(STEWARD.1),
            READER.0,
            h(READER.1),
        ))
        .building("b", "Building")
        .room("r1", "b", "Room one", "study", 10)
        .with("public = true")
        .room("r2", "b", "Hall two", "lecture-hall", 100)
        .with("public = true")
        .line_sensor("s1", &h(S1_SECRET), &[("main", "r1", None)])
        .zone_sensor("s2", &h(S2_SECRET), &[("seats", "r2")])
        .toml()
}

async fn start(data: &Path, text: &str, clock: Clock) -> Server {
    Server::start(ServerOptions {
        campus: Arc::new(Campus::parse(text, "test campus").unwrap()),
        mqtt: Some("127.0.0.1:0".parse().unwrap()),
        mqtts: None,
        http: Some("127.0.0.1:0".parse().unwrap()),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        postgres: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.to_path_buf()),
        clock,
        source: "test".into(),
    })
    .await
    .unwrap()
}

/// The zone sensor: 20 people from minute 90 to 170, else nobody; a reading each simulated
/// minute, timed by the server's clock.
fn people_at(minute: i64) -> u32 {
    if (90..170).contains(&minute) { 20 } else { 0 }
}

async fn zone_sensor(port: u16, clock: Clock, t0: DateTime<Utc>) -> tokio::task::JoinHandle<()> {
    let mut o = MqttOptions::new("s2", "127.0.0.1", port);
    o.set_credentials("s2", S2_SECRET);
    let (client, mut events) = AsyncClient::new(o, 64);
    tokio::spawn(async move {
        let mut seq = 0u64;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tokio::select! {
                e = events.poll() => { if e.is_err() { tokio::time::sleep(Duration::from_millis(20)).await; } }
                _ = tick.tick() => {
                    seq += 1;
                    let now = clock.now();
                    let msg = format!(
                        r#"{{"v":1,"sensor":"s2","zone":"seats","seq":{seq},"at":"{}","count":{}}}"#,
                        now.to_rfc3339_opts(SecondsFormat::Millis, true),
                        people_at((now - t0).num_minutes())
                    );
                    let _ = client.publish("tellijn/v1/sensors/s2/counts", QoS::AtLeastOnce, false, msg).await;
                }
            }
        }
    })
}

/// Every booking payload the named reader sees, in order.
async fn reader(port: u16) -> (Arc<Mutex<Vec<Value>>>, tokio::task::JoinHandle<()>) {
    let mut o = MqttOptions::new("hvac", "127.0.0.1", port);
    o.set_credentials(READER.0, READER.1);
    let (client, mut events) = AsyncClient::new(o, 64);
    client
        .subscribe("tellijn/v1/rooms/+/booking", QoS::AtLeastOnce)
        .await
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let task = tokio::spawn(async move {
        let _client = client;
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if let Ok(v) = serde_json::from_slice::<Value>(&p.payload) {
                        s.lock().unwrap().push(v);
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    });
    (seen, task)
}

fn rfc(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Every byte of every file under `dir`, except Parquet (compressed: read through SQL).
fn plain_files(dir: &Path, out: &mut String) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            plain_files(&p, out);
        } else if p.extension().is_none_or(|x| x != "parquet") {
            out.push_str(&String::from_utf8_lossy(&std::fs::read(&p).unwrap()));
        }
    }
}

/// The server's log, captured (every level down to debug).
#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bookings_become_no_shows_used_bookings_and_study_places_and_nothing_personal_leaks() {
    let log = Log::default();
    let writer = log.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .init();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    // A simulated morning, 06:00 UTC of the next day.
    let t0 = (Utc::now() + TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(6, 0, 0)
        .unwrap()
        .and_utc();
    let feed = Arc::new(Mutex::new(Feed {
        status: 200,
        body: ics(t0),
        ..Feed::default()
    }));
    let feed_addr = feed_server(feed.clone()).await;
    // Headless Chromium (a phone's width) for the free-places page, started before the
    // simulated clock: its start takes both cores for seconds on a busy machine, and at 600×
    // a second is ten simulated minutes, enough to starve the zone sensor through the start of
    // booking B (seen once in CI: B decided a no-show).
    let mut chromium = chromium::Chromium::start(390, 844).await;
    let clock = Clock::accelerated(t0, SPEED);
    let text = campus_text(data, feed_addr);
    let server = start(data, &text, clock).await;
    let port = server.mqtt_addr().port();
    let (seen, reader_task) = reader(port).await;
    let sensor = zone_sensor(port, clock, t0).await;
    let http = server.http_addr();
    let minute = |m: i64| t0 + TimeDelta::minutes(m);
    let booking_of = |v: &Vec<Value>, pred: &dyn Fn(&Value) -> bool| v.iter().any(pred);

    // The no-show: A's first 15 minutes pass with nobody there.
    assert!(
        wait_for(30, || {
            let seen = seen.clone();
            async move {
                booking_of(&seen.lock().unwrap(), &|x| {
                    x["booked"] == true && x["no_show"] == true && x["start"] == rfc(minute(20))
                })
            }
        })
        .await,
        "no no-show for A: {:?}",
        seen.lock().unwrap()
    );
    // B is used: people were there when it began.
    assert!(
        wait_for(30, || {
            let seen = seen.clone();
            async move {
                booking_of(&seen.lock().unwrap(), &|x| {
                    x["booked"] == true
                        && x["start"] == rfc(minute(100))
                        && x["end"] == rfc(minute(160))
                })
            }
        })
        .await
    );
    // The study place: quiet from minute 170, open at 230, free until 10 minutes before C.
    let free_until = rfc(minute(390));
    assert!(
        wait_for(40, || async {
            let v: Value = serde_json::from_str(&http_get(http, "/api/v1/rooms/r2").await).unwrap();
            v["study_place"]["free_until"] == free_until.as_str()
        })
        .await,
        "r2 never opened as a study place"
    );
    let anonymous: Value = serde_json::from_str(&http_get(http, "/api/v1/rooms/r2").await).unwrap();
    assert!(
        anonymous.get("booking").is_none(),
        "the public sees no booking: {anonymous}"
    );
    let (status, body) = http_basic(
        http,
        "/api/v1/rooms/r2",
        Some(&format!("{}:{}", STEWARD.0, STEWARD.1)),
    )
    .await;
    assert_eq!(status, 200);
    let named: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(named["booking"]["next_start"], rfc(minute(400)));
    assert_eq!(named["booking"]["study_place"], true);
    let now_min = (clock.now() - t0).num_minutes();
    assert!(
        now_min < 390,
        "the test ran too slowly to see the study place open ({now_min})"
    );

    // The free-places page shows it (Chromium was started before the clock: on a busy machine
    // its start alone can outlast the study place's 15 s).
    chromium
        .call(
            "Page.navigate",
            serde_json::json!({"url": format!("http://{http}/")}),
        )
        .await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = chromium
            .eval("(() => { const s = document.querySelector('#study-places'); return s ? s.innerText : null; })()")
            .await;
        if shown
            .as_str()
            .is_some_and(|s| s.contains("Open study place · free until"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let shown = shown.as_str().unwrap_or_default().to_owned();
    let now_min = (clock.now() - t0).num_minutes();
    assert!(
        shown.contains("Hall two") && shown.contains("Open study place · free until"),
        "at simulated minute {now_min} (open from 230 to 390) the page showed: {shown}"
    );
    drop(chromium);

    // It closes before C, and the reader saw that.
    assert!(
        wait_for(30, || async {
            let v: Value = serde_json::from_str(&http_get(http, "/api/v1/rooms/r2").await).unwrap();
            v.get("study_place").is_none()
        })
        .await
    );
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .any(|x| x["study_place"] == true && x["free_until"] == free_until)
    );

    // The feed answered 304 while it was unchanged; now it fails: the last good state stays.
    assert!(
        feed.lock().unwrap().not_modified > 0,
        "no conditional request was answered 304"
    );
    let metrics_addr = server.metrics_addr();
    assert_eq!(
        metric(
            &http_get(metrics_addr, "/metrics").await,
            "tellijn_calendar_feed_up{calendar=\"0\"}"
        ),
        1.0
    );
    feed.lock().unwrap().status = 500;
    assert!(
        wait_for(20, || async {
            let m = http_get(metrics_addr, "/metrics").await;
            metric(&m, "tellijn_calendar_feed_up{calendar=\"0\"}") == 0.0
                && metric(
                    &m,
                    "tellijn_calendar_feed_failures_total{calendar=\"0\",reason=\"http_status\"}",
                ) >= 1.0
        })
        .await,
        "a failing feed is not reported"
    );
    {
        let mut f = feed.lock().unwrap();
        f.status = 200;
        f.body = "\u{0}\u{1}garbage, not a calendar".into();
    }
    assert!(
        wait_for(20, || async {
            metric(
                &http_get(metrics_addr, "/metrics").await,
                "tellijn_calendar_feed_failures_total{calendar=\"0\",reason=\"garbage\"}",
            ) >= 1.0
        })
        .await,
        "a garbage feed is not reported"
    );
    let (_, body) = http_basic(
        http,
        "/api/v1/rooms/r2",
        Some(&format!("{}:{}", STEWARD.0, STEWARD.1)),
    )
    .await;
    let named: Value = serde_json::from_str(&body).unwrap();
    assert!(
        named["booking"]["booked"] == true || named["booking"]["next_start"] == rfc(minute(400)),
        "the last good state was lost: {named}"
    );
    let metrics_text = http_get(metrics_addr, "/metrics").await;
    let transparency = http_get(http, "/transparency").await;
    assert!(
        transparency.contains("Room bookings are read from the calendar feeds")
            && transparency.contains(&format!("http://{feed_addr}/rooms.ics")),
        "the transparency report does not say where bookings come from"
    );
    assert!(
        metric(
            &metrics_text,
            "tellijn_bookings_no_shows_total{room=\"r2\",building=\"b\"}"
        ) >= 1.0
    );

    sensor.abort();
    reader_task.abort();
    let mqtt_seen = format!("{:?}", seen.lock().unwrap());
    server.stop().await.unwrap();

    // The table: A a no-show, B used, C not decided yet; the transparent event and the one
    // elsewhere not stored; UID hashes, never UIDs.
    let h = tellijn_queries::History::open(data, None).await.unwrap();
    let csv = h
        .query(
            "SELECT room, start, \"end\", status, no_show, uid_hash FROM bookings ORDER BY start",
            tellijn_queries::Format::Csv,
        )
        .await
        .unwrap();
    let rows: Vec<Vec<&str>> = csv
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 3, "{csv}");
    let decided: Vec<&str> = rows.iter().map(|r| r[4]).collect();
    // C (minute 400) may have been decided a no-show already, or not yet (timing).
    assert!(
        decided[..2] == ["true", "false"] && ["", "true"].contains(&decided[2]),
        "{csv}"
    );
    assert!(
        rows.iter()
            .all(|r| r[0] == "r2" && r[3] == "confirmed" && r[5].len() == 32)
    );
    assert_eq!(rows.iter().map(|r| r[5]).collect::<BTreeSet<_>>().len(), 3);

    // Nothing personal anywhere: files, every table, metrics, MQTT, API answers.
    let mut everything = String::new();
    plain_files(data, &mut everything);
    for table in [
        "bookings",
        "counts",
        "zone_counts",
        "occupancy",
        "headcounts",
    ] {
        everything.push_str(
            &h.query(
                &format!("SELECT * FROM {table}"),
                tellijn_queries::Format::Csv,
            )
            .await
            .unwrap(),
        );
    }
    everything.push_str(&metrics_text);
    everything.push_str(&transparency);
    let log_text = String::from_utf8_lossy(&log.0.lock().unwrap()).into_owned();
    assert!(
        log_text.contains("calendar feed failed"),
        "the log did not say the feed failed"
    );
    everything.push_str(&log_text);
    everything.push_str(&mqtt_seen);
    everything.push_str(&body);
    everything.push_str(&anonymous.to_string());
    for name in PERSONAL {
        assert!(
            !everything.to_lowercase().contains(&name.to_lowercase()),
            "{name:?} came out"
        );
    }
    assert!(everything.contains("bookings"), "the sweep read nothing");

    // A restart while the feed is down: the stored bookings stand in for it, the decisions
    // already made are not made again, and C is decided when due.
    feed.lock().unwrap().status = 500;
    let clock = Clock::accelerated(clock.now(), SPEED);
    let server = start(data, &text, clock).await;
    let http = server.http_addr();
    let steward = format!("{}:{}", STEWARD.0, STEWARD.1);
    let (_, body) = http_basic(http, "/api/v1/rooms/r2", Some(&steward)).await;
    let named: Value = serde_json::from_str(&body).unwrap();
    assert!(
        named["booking"]["start"] == rfc(minute(400))
            || named["booking"]["next_start"] == rfc(minute(400)),
        "the stored bookings did not stand in for the failing feed: {named}"
    );
    let metrics_addr = server.metrics_addr();
    assert!(
        wait_for(30, || async {
            (clock.now() - t0).num_minutes() > 420
                && metric(
                    &http_get(metrics_addr, "/metrics").await,
                    "tellijn_bookings_decided_total{room=\"r2\",building=\"b\"}",
                ) >= f64::from(u8::from(decided[2].is_empty()))
        })
        .await
    );
    let m = http_get(metrics_addr, "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "tellijn_bookings_decided_total{room=\"r2\",building=\"b\"}"
        ),
        f64::from(u8::from(decided[2].is_empty())),
        "a decision was made again after the restart"
    );
    server.stop().await.unwrap();
    let h = tellijn_queries::History::open(data, None).await.unwrap();
    let csv = h
        .query(
            "SELECT no_show FROM bookings ORDER BY start",
            tellijn_queries::Format::Csv,
        )
        .await
        .unwrap();
    assert_eq!(csv, "no_show\ntrue\nfalse\ntrue\n", "after the restart");
}
