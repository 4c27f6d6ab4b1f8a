//! The attacker's side of "the public sees only what the public page shows" (issue 16,
//! findings 2–4), against a real server over its real protocols: raw HTTP, Debian's
//! `mosquitto_sub`, rumqttc and headless Chromium.
//!
//! The campus: building `law` with an office (`law-office-19`, never public), a small public
//! study nook and a public hall. The counts are driven by real sensor messages
//! (`mosquitto_pub`), history by per-minute rows written as the processors write them.

use crate::common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tellijn_processors::minutes::MinuteRow;
use tellijn_processors::parquet_sink::Buffer;

const METRICS_TOKEN: &str = "metrics-token-4f1c9e";
const STEWARD: (&str, &str) = ("ada", "ada-steward-pw");
/// A user name that is HTML: the transparency page must show it as text.
const ODD_VIEWER: &str = "<script>alert(1)</script>";
const OFFICE: &str = "law-office-19";

fn secret(sensor: &str) -> String {
    format!("{sensor}-secret-0123")
}

fn campus_text(data: &Path, server_extra: &str) -> String {
    let h = |s: &str| tellijn::secrets::hash_demo(s).unwrap();
    let sensor = |id: &str, into: &str| {
        format!(
            "[[sensors]]\nid = \"{id}\"\nsecret_hash = \"{}\"\nlines = [{{ line = \"door\", into = \"{into}\" }}]\n",
            h(&secret(id))
        )
    };
    format!(
        r#"
[server]
data_dir = "{}"
flush_interval = "200ms"
anonymous_read = ["tellijn/v1/public/#"]
{server_extra}

[privacy]
public_min_count = 5

[[users]]
name = "{}"
password_hash = "{}"
role = "steward"

[[users]]
name = "{ODD_VIEWER}"
password_hash = "{}"
role = "viewer"

[[buildings]]
id = "law"
name = "Law School"

[[rooms]]
id = "{OFFICE}"
building = "law"
name = "Office 19"
kind = "office"
capacity = 4

[[rooms]]
id = "nook"
building = "law"
name = "Study nook"
kind = "study"
capacity = 8
public = true

[[rooms]]
id = "hall"
building = "law"
name = "Study hall"
kind = "study"
capacity = 50
public = true

{}
{}
{}
"#,
        data.display(),
        STEWARD.0,
        h(STEWARD.1),
        h("odd-viewer-pw"),
        sensor("office-door", OFFICE),
        sensor("nook-door", "nook"),
        sensor("hall-door", "hall"),
    )
}

fn token_line() -> String {
    format!(
        "metrics_token_sha256 = \"{}\"",
        hex::encode(Sha256::digest(METRICS_TOKEN.as_bytes()))
    )
}

/// A raw GET: (status, head, body).
async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, String, String) {
    http_request(addr, path, headers).await
}

async fn json(addr: SocketAddr, path: &str, user: Option<(&str, &str)>) -> Value {
    let auth = user.map(|(u, p)| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{u}:{p}"))
        )
    });
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = get(addr, path, &headers).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// `people_in` people through the door of `room`'s sensor, as message `seq`.
async fn door(server: &tellijn::server::Server, sensor: &str, seq: u64, people_in: u32) {
    let msg = line_msg(seq, people_in, 0)
        .replace("\"s1\"", &format!("\"{sensor}\""))
        .replace("\"main\"", "\"door\"");
    assert!(
        mosquitto_pub(
            server.mqtt_addr().port(),
            Some((sensor, &secret(sensor))),
            sensor,
            &format!("tellijn/v1/sensors/{sensor}/counts"),
            Payload::Text(&msg),
        )
        .await
    );
}

/// Waits until a steward sees `n` people in `room`.
async fn steward_sees(http: SocketAddr, room: &str, n: u64) {
    assert!(
        wait_for(20, || async {
            json(http, &format!("/api/v1/rooms/{room}"), Some(STEWARD)).await["occupancy"] == n
        })
        .await,
        "{room} never showed {n} people"
    );
}

/// The office holds 2, the nook 3, the hall 12.
async fn populated(data: &Path, extra: &str) -> tellijn::server::Server {
    let server = start_text(data, &campus_text(data, extra), "127.0.0.1:0").await;
    let http = server.http_addr();
    door(&server, "office-door", 1, 2).await;
    door(&server, "nook-door", 1, 3).await;
    door(&server, "hall-door", 1, 12).await;
    steward_sees(http, OFFICE, 2).await;
    steward_sees(http, "nook", 3).await;
    steward_sees(http, "hall", 12).await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_are_not_on_the_public_port_and_need_their_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = populated(dir.path(), &token_line()).await;
    let (http, metrics) = (server.http_addr(), server.metrics_addr());
    assert_ne!(http, metrics);

    // The public port: /metrics and anything but the page, the API, /healthz and
    // /transparency is a 404, and nothing it serves names the office.
    for path in [
        "/metrics",
        "/metrics/",
        "/Metrics",
        "/metrics?format=prometheus",
        "/api/v1/../metrics",
        "/%6detrics",
        "/api/v1/metrics",
        "/debug/vars",
        "/admin",
    ] {
        let (status, _, body) = get(http, path, &[]).await;
        assert_eq!(status, 404, "{path} on the public port: {body}");
        assert!(!body.contains("tellijn_room_occupancy"), "{path}: {body}");
    }
    for path in [
        "/",
        "/healthz",
        "/transparency",
        "/api/v1/rooms",
        "/api/v1/buildings",
        "/api/v1/openapi.json",
    ] {
        let (status, _, body) = get(http, path, &[]).await;
        assert_eq!(status, 200, "{path}");
        // The transparency report names where counting happens (the office's door counter
        // too), never a number of people in it.
        if path != "/transparency" {
            assert!(!body.contains(OFFICE), "{path} names the office: {body}");
        }
    }

    // The metrics listener: the token is required, compared exactly.
    let bearer = format!("Bearer {METRICS_TOKEN}");
    let wrong = format!("Bearer {METRICS_TOKEN}x");
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("x:{METRICS_TOKEN}"))
    );
    for headers in [
        vec![],
        vec![("Authorization", wrong.as_str())],
        vec![("Authorization", "Bearer ")],
        vec![("Authorization", basic.as_str())],
        vec![("Authorization", METRICS_TOKEN)],
    ] {
        let (status, head, body) = get(metrics, "/metrics", &headers).await;
        assert_eq!(status, 401, "{headers:?}: {body}");
        assert!(
            head.to_lowercase().contains("www-authenticate: bearer"),
            "{head}"
        );
        assert!(!body.contains("tellijn_room_occupancy"), "{body}");
    }
    let (status, _, body) = get(metrics, "/metrics", &[("Authorization", &bearer)]).await;
    assert_eq!(status, 200);
    assert_eq!(
        metric(
            &body,
            &format!("tellijn_room_occupancy{{room=\"{OFFICE}\",building=\"law\"}}")
        ),
        2.0,
        "the operators' metrics keep exact numbers"
    );
    // The metrics listener serves nothing else.
    for path in ["/", "/api/v1/rooms", "/transparency", "/healthz"] {
        let (status, _, _) = get(metrics, path, &[("Authorization", &bearer)]).await;
        assert_eq!(status, 404, "{path} on the metrics listener");
    }
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_token_the_metrics_listener_is_open_on_loopback_only_by_default() {
    let c = tellijn_config::Campus::parse("", "empty").unwrap();
    assert!(c.server.metrics.ip().is_loopback());
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (status, _, body) = get(server.metrics_addr(), "/metrics", &[]).await;
    assert_eq!(status, 200);
    assert!(body.contains("tellijn_room_occupancy"));
    let (status, _, _) = get(server.http_addr(), "/metrics", &[]).await;
    assert_eq!(status, 404);
    server.stop().await.unwrap();
}

/// Runs `mosquitto_sub` anonymously on these filters until it has `count` messages (or 10 s);
/// returns (exit ok, stdout lines "topic payload", stderr).
async fn mosquitto_sub(port: u16, filters: &[&str], count: usize) -> (bool, Vec<String>, String) {
    let mut cmd = tokio::process::Command::new("mosquitto_sub");
    cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-v", "-W", "10"])
        .args(["-C", &count.to_string()]);
    for f in filters {
        cmd.args(["-t", f]);
    }
    let out = cmd
        .output()
        .await
        .expect("mosquitto_sub must be installed (apt-get install mosquitto-clients)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every public payload: no office, and every number below 5 a band.
fn assert_public(topic: &str, v: &Value) {
    assert!(
        topic.starts_with("tellijn/v1/public/"),
        "a topic outside the public tree: {topic}"
    );
    assert!(
        !topic.contains("office") && !v.to_string().contains("office"),
        "{topic}: {v}"
    );
    if let Some(n) = v["occupancy"].as_u64() {
        assert!(n >= 5, "{topic}: an exact small number: {v}");
    } else {
        assert!(
            v["state"].is_null() && v["updated"].is_null(),
            "{topic}: {v}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn anonymous_mqtt_learns_no_office_and_no_small_number() {
    let dir = tempfile::tempdir().unwrap();
    let server = populated(dir.path(), "").await;
    let port = server.mqtt_addr().port();

    // mosquitto_sub: every filter that reaches beyond the public tree is refused.
    for filter in [
        "tellijn/v1/#",
        "tellijn/v1/rooms/#",
        "tellijn/v1/+/rooms/#",
        "tellijn/v1/rooms/law-office-19/occupancy",
        "tellijn/v1/buildings/#",
        "tellijn/#",
        "+/#",
        "#",
        "+/+/+/+/+",
        "homeassistant/#",
        "$SYS/#",
    ] {
        // mosquitto_sub 2.0 says so on stderr and exits.
        let (_, lines, stderr) = mosquitto_sub(port, &[filter], 1).await;
        assert!(lines.is_empty(), "{filter}: {lines:?}");
        assert!(stderr.contains("denied"), "{filter}: {stderr}");
    }
    // Granted together with the public tree, the refused filter still delivers nothing: the
    // three retained public topics arrive, all public and banded.
    let (ok, lines, stderr) =
        mosquitto_sub(port, &["tellijn/v1/rooms/#", "tellijn/v1/public/#"], 3).await;
    assert!(ok, "{stderr}");
    let mut topics = Vec::new();
    for l in &lines {
        let (topic, payload) = l.split_once(' ').unwrap();
        let v: Value = serde_json::from_str(payload).unwrap();
        assert_public(topic, &v);
        topics.push(topic.to_owned());
        match topic {
            "tellijn/v1/public/rooms/nook" => {
                assert_eq!(
                    (v["occupancy"].clone(), v["fewer_than"].clone()),
                    (Value::Null, 5.into())
                );
            }
            "tellijn/v1/public/rooms/hall" => assert_eq!(v["occupancy"], 12),
            // Its public total (15) with the hall (12) would give the nook's 3 back.
            "tellijn/v1/public/buildings/law" => {
                assert_eq!(v["occupancy"], Value::Null);
                assert_eq!(v["capacity"], 58, "public rooms only");
            }
            other => panic!("unexpected {other}"),
        }
    }
    topics.sort();
    assert_eq!(
        topics,
        [
            "tellijn/v1/public/buildings/law",
            "tellijn/v1/public/rooms/hall",
            "tellijn/v1/public/rooms/nook"
        ]
    );

    // rumqttc: the same refusals, and live updates that never carry a band's movement.
    let mut opts = MqttOptions::new("anon-watcher", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    type Seen = Arc<Mutex<Vec<(String, Value)>>>;
    let seen: Seen = Arc::default();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let (s, a) = (seen.clone(), acks.clone());
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::Publish(p)) => s.lock().unwrap().push((
                    p.topic.clone(),
                    serde_json::from_slice(&p.payload).unwrap_or(Value::Null),
                )),
                Event::Incoming(Packet::SubAck(ack)) => a.lock().unwrap().extend(ack.return_codes),
                _ => {}
            }
        }
    });
    for f in [
        "tellijn/v1/+/rooms/#",
        "tellijn/v1/rooms/+/occupancy",
        "#",
        "tellijn/v1/public/#",
    ] {
        client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
    }
    assert!(wait_for(10, || async { acks.lock().unwrap().len() == 4 }).await);
    assert_eq!(
        acks.lock().unwrap()[..3].to_vec(),
        vec![SubscribeReasonCode::Failure; 3],
        "anonymous grants beyond the public tree"
    );
    assert!(wait_for(10, || async { seen.lock().unwrap().len() >= 3 }).await);
    // The nook moves inside its band (3 → 4), the office too (2 → 3); then the hall moves.
    door(&server, "nook-door", 2, 1).await;
    door(&server, "office-door", 2, 1).await;
    steward_sees(server.http_addr(), "nook", 4).await;
    steward_sees(server.http_addr(), OFFICE, 3).await;
    door(&server, "hall-door", 2, 1).await;
    let hall_13 = || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, v)| t == "tellijn/v1/public/rooms/hall" && v["occupancy"] == 13)
    };
    assert!(wait_for(20, hall_13).await, "the hall's 13 never arrived");
    {
        let seen = seen.lock().unwrap();
        for (t, v) in seen.iter() {
            assert_public(t, v);
        }
        // The bridge publishes in order: a nook update would have come before the hall's.
        let nook = seen
            .iter()
            .filter(|(t, _)| t == "tellijn/v1/public/rooms/nook")
            .count();
        assert_eq!(nook, 1, "the band's movement was published: {seen:?}");
    }
    // The nook reaches 5: now it and the building total are shown, the total being the
    // public rooms' sum (5 + 13), never the office's share.
    door(&server, "nook-door", 3, 1).await;
    let building_18 = || async {
        seen.lock()
            .unwrap()
            .iter()
            .any(|(t, v)| t == "tellijn/v1/public/buildings/law" && v["occupancy"] == 18)
    };
    assert!(
        wait_for(20, building_18).await,
        "{:?}",
        seen.lock().unwrap()
    );
    let anon = json(server.http_addr(), "/api/v1/buildings", None).await;
    assert_eq!(anon[0]["occupancy"], 18, "MQTT and the API agree");
    let steward = json(server.http_addr(), "/api/v1/buildings", Some(STEWARD)).await;
    assert_eq!(steward[0]["occupancy"], 21, "with the office's 3");
    server.stop().await.unwrap();
}

/// Yesterday 09:00–10:00 UTC in the nook, per minute, as the processors write it:
/// quarter 0: 7 came in (2 in its first minute); quarter 1: 3 (a band); quarters 2, 3: 6, 5.
fn write_history(data: &Path) -> DateTime<Utc> {
    let day = (Utc::now() - TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let ins: Vec<(u32, u32)> = vec![(0, 2), (1, 1), (2, 1), (3, 1), (4, 1), (5, 1)]
        .into_iter()
        .chain((15..18).map(|m| (m, 1)))
        .chain((30..36).map(|m| (m, 1)))
        .chain((45..50).map(|m| (m, 1)))
        .collect();
    let mut b = Buffer::default();
    let mut present = 0u32;
    for m in 0..60u32 {
        let people_in = ins.iter().find(|(x, _)| *x == m).map_or(0, |(_, n)| *n);
        let before = present;
        present += people_in;
        b.occupancy.push(MinuteRow {
            room: "nook".into(),
            building: "law".into(),
            minute: (day + TimeDelta::minutes(m as i64)).timestamp_micros(),
            people_in,
            people_out: 0,
            occupancy_min: before,
            occupancy_avg: f64::from(before + present) / 2.0,
            occupancy_max: present,
            capacity: 8,
        });
    }
    b.flush(data, 0).unwrap();
    day
}

fn rows(h: &Value) -> Vec<Value> {
    h["rows"].as_array().unwrap().clone()
}

const FIELDS: [&str; 5] = [
    "occupancy_min",
    "occupancy_avg",
    "occupancy_max",
    "people_in",
    "people_out",
];

#[tokio::test(flavor = "multi_thread")]
async fn differencing_the_anonymous_history_gives_back_no_band() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let day = write_history(data);
    let server = start_text(data, &campus_text(data, ""), "127.0.0.1:0").await;
    let http = server.http_addr();
    let at = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let hist = |from: DateTime<Utc>, to: DateTime<Utc>, step: &str| {
        format!(
            "/api/v1/rooms/nook/history?from={}&to={}&step={step}",
            at(from),
            at(to)
        )
    };
    let hour = day + TimeDelta::hours(1);

    // The steward's exact quarters, for reference: 7, 3, 6, 5 came in.
    let exact = json(http, &hist(day, hour, "15m"), Some(STEWARD)).await;
    let ins: Vec<u64> = rows(&exact)
        .iter()
        .map(|r| r["people_in"].as_u64().unwrap())
        .collect();
    assert_eq!(ins, [7, 3, 6, 5]);

    // Overlapping windows: from one minute later. Before, the first quarter then held 5, and
    // 7 − 5 gave back the 2 of its first minute; now from is snapped to the grid.
    let aligned = json(http, &hist(day, hour, "15m"), None).await;
    for shift in [1, 7, 14] {
        let later = json(
            http,
            &hist(day + TimeDelta::minutes(shift), hour, "15m"),
            None,
        )
        .await;
        assert_eq!(later, aligned, "from + {shift} min");
        let earlier_to = json(
            http,
            &hist(day, hour - TimeDelta::minutes(shift), "15m"),
            None,
        )
        .await;
        assert_eq!(earlier_to, aligned, "to - {shift} min");
    }
    assert_eq!(aligned["from"], at(day));
    let quarters = rows(&aligned);
    assert_eq!(quarters.len(), 4);
    assert_eq!(quarters[1]["people_in"], Value::Null, "3 is a band");

    // Odd steps: refused, so no two grids overlap partly.
    for step in ["1m", "5m", "14m", "16m", "30m", "45m", "2h", "7d"] {
        let (status, _, body) = get(http, &hist(day, hour, step), &[]).await;
        assert_eq!(status, 400, "{step}: {body}");
        assert!(body.contains("one fixed grid"), "{body}");
    }

    // A coarser cell minus its finer cells: the hour's sums and mean are hidden while one of
    // its quarters is a band (21 − 7 − 6 − 5 would be 3); min and max follow from the quarters.
    let whole = json(http, &hist(day, hour, "1h"), None).await;
    let h = &rows(&whole)[0];
    let daily = json(http, &hist(day, day + TimeDelta::days(1), "1d"), None).await;
    let d = &rows(&daily)[0];
    for f in FIELDS {
        let any_band = quarters.iter().any(|q| q[f].is_null());
        for (name, cell) in [("hour", h), ("day", d)] {
            if cell[f].is_null() {
                continue;
            }
            assert!(
                !any_band || f == "occupancy_max",
                "the {name}'s {f} ({}) is shown although a quarter's is a band: {quarters:?}",
                cell[f]
            );
            if f == "people_in" || f == "people_out" {
                let sum: u64 = quarters.iter().map(|q| q[f].as_u64().unwrap()).sum();
                assert_eq!(cell[f].as_u64(), Some(sum), "{name} {f}");
            }
        }
    }
    assert_eq!(h["people_in"], Value::Null);
    assert_eq!(
        h["occupancy_max"], 21,
        "the largest quarter maximum, shown there too"
    );
    assert_eq!(
        h["occupancy_min"],
        Value::Null,
        "the first quarter's minimum (0) is a band"
    );
    // Every number shown anywhere is at least 5.
    for r in quarters.iter().chain([h, d]) {
        for f in FIELDS {
            if let Some(n) = r[f].as_f64() {
                assert!(n >= 5.0, "{f} = {n} shown: {r}");
            }
        }
    }

    // The cell still filling is never served: two requests a minute apart cannot differ.
    let now = json(http, "/api/v1/rooms/nook/history?step=15m", None).await;
    let to: DateTime<Utc> = now["to"].as_str().unwrap().parse().unwrap();
    assert!(to <= Utc::now() && to.timestamp() % 900 == 0, "{now}");
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn transparency_is_an_html_page_a_phone_can_read() {
    tokio::time::timeout(Duration::from_secs(180), transparency_page())
        .await
        .expect("the transparency page test took over 3 minutes");
}

async fn transparency_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_text(dir.path(), &campus_text(dir.path(), ""), "127.0.0.1:0").await;
    let http = server.http_addr();
    let (status, head, body) = get(http, "/transparency", &[]).await;
    assert_eq!(status, 200);
    assert!(
        head.to_lowercase()
            .contains("content-type: text/html; charset=utf-8"),
        "{head}"
    );
    assert!(body.starts_with("<!doctype html>"), "{body}");
    assert!(body.contains("<h2>Who may read it</h2>"), "{body}");
    assert!(
        body.contains("<code>/metrics</code> on 127.0.0.1:9464 only, without a token"),
        "the report says where the exact numbers are: {body}"
    );
    assert!(
        body.contains("User <code>&lt;script&gt;alert(1)&lt;/script&gt;</code>"),
        "a config string must be escaped: {body}"
    );
    for needle in ["<pre>", "http://", "https://", "<script"] {
        assert!(!body.contains(needle), "{needle} in the page");
    }

    let mut chromium = chromium::Chromium::start(390, 844).await;
    chromium
        .call(
            "Page.navigate",
            serde_json::json!({"url": format!("http://{http}/transparency")}),
        )
        .await;
    let mut shown = Value::Null;
    for _ in 0..100 {
        shown = chromium
            .eval("document.readyState === 'complete' && document.querySelector('h1') ? document.querySelector('h1').textContent : null")
            .await;
        if !shown.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(shown, "Tellijn transparency report");
    let facts = chromium
        .eval(
            "JSON.stringify({h2: [...document.querySelectorAll('h2')].map(e => e.textContent), \
             tables: document.querySelectorAll('table').length, \
             scripts: document.querySelectorAll('script').length, \
             pageWidth: document.documentElement.scrollWidth, viewport: window.innerWidth, \
             fontPx: parseFloat(getComputedStyle(document.body).fontSize), \
             text: document.body.innerText})",
        )
        .await;
    let facts: Value = serde_json::from_str(facts.as_str().unwrap()).unwrap();
    assert_eq!(
        facts["h2"],
        serde_json::json!([
            "What is collected",
            "Where it is kept",
            "How long it is kept",
            "Who may read it",
            "Sensors",
            "Cameras",
            "Accuracy from head counts",
            "Refused in the last 30 days"
        ])
    );
    assert!(facts["tables"].as_u64().unwrap() >= 2, "{facts}");
    assert_eq!(facts["scripts"], 0, "a config string became markup");
    assert!(
        facts["pageWidth"].as_u64() <= facts["viewport"].as_u64(),
        "the page is wider than the phone: {facts}"
    );
    assert!(facts["fontPx"].as_f64().unwrap() >= 14.0, "{facts}");
    assert!(
        facts["text"].as_str().unwrap().contains(ODD_VIEWER),
        "{facts}"
    );
    let png = chromium.screenshot().await;
    assert!(png.starts_with(b"\x89PNG"));
    let artifact = Path::new(env!("CARGO_TARGET_TMPDIR")).join("transparency-phone.png");
    std::fs::write(&artifact, &png).unwrap();
    let _ = std::fs::write("/tmp/transparency-phone.png", &png);
    eprintln!("screenshot: {}", artifact.display());
    let _ = chromium.child.kill().await;
    server.stop().await.unwrap();
}

#[test]
fn check_config_refuses_anonymous_grants_beyond_the_public_tree() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("campus.toml");
    let run = |filters: &str| {
        let text = campus_text(dir.path(), "").replace(
            "anonymous_read = [\"tellijn/v1/public/#\"]",
            &format!("anonymous_read = [{filters}]"),
        );
        std::fs::write(&p, text).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
            .args(["check-config", p.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = run(r#""tellijn/v1/public/#", "tellijn/v1/+/rooms/#", "+/#", "tellijn/v1/rooms/#""#);
    assert!(
        !out.status.success(),
        "an office-reaching anonymous grant was accepted"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    for (i, f) in [
        (1, "tellijn/v1/+/rooms/#"),
        (2, "+/#"),
        (3, "tellijn/v1/rooms/#"),
    ] {
        assert!(
            err.contains(&format!(
                "{file}: server.anonymous_read[{i}] could reach topics outside the public tree \"tellijn/v1/public/#\" (found {f:?})"
            )),
            "{f}: {err}"
        );
    }
    assert!(!err.contains("anonymous_read[0]"), "{err}");
    assert!(err.contains("named [[mqtt_readers]] entry"), "{err}");
    assert!(err.contains("3 error(s)."), "{err}");
    let out = run(r#""tellijn/v1/public/rooms/+", "tellijn/v1/public/buildings/#""#);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
