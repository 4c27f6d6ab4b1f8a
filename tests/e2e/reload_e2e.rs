//! A config change without a restart, as an operator makes it: `tellijn serve` as its own
//! process, real MQTT clients (two sensors and a named reader) and PostgreSQL sessions
//! connected, the config edited and `SIGHUP` sent (what `systemctl reload tellijn` does).
//!
//! Then: the removed sensor is disconnected and cannot come back, the other clients never
//! noticed, the new room and sensor count, the removed SQL user's open session is closed and
//! its login and HTTP credentials refused, the new user gets in, and the audit log holds the
//! new config's hash. An invalid file (two errors) and a change only a restart can make are
//! refused, each with every reason, and the running config stays.

use crate::common;
use crate::provision_e2e::{hangup, serve, stop};

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

const S3_SECRET: &str = "s3-secret-89ab";
const ADA: (&str, &str) = ("ada", "ada-password-1");
const BOB: (&str, &str) = ("bob", "bob-password-1");
const CAROL: (&str, &str) = ("carol", "carol-password-1");
const HVAC: (&str, &str) = ("hvac", "hvac-password-1");

/// The campus: `v2` removes s2 and bob, adds room r3 with sensor s3, and carol, and makes r2
/// private. Every secret
/// is hashed once, as in a file an operator edits (a new hash would be a new secret to the
/// broker, and its client would be asked to reconnect).
fn config(data: &std::path::Path, v2: bool) -> String {
    static HASHES: std::sync::OnceLock<std::collections::HashMap<&str, String>> =
        std::sync::OnceLock::new();
    let hashes = HASHES.get_or_init(|| {
        [
            S1_SECRET, S2_SECRET, S3_SECRET, ADA.1, BOB.1, CAROL.1, HVAC.1,
        ]
        .into_iter()
        .map(|s| (s, tellijn::secrets::hash_demo(s).unwrap()))
        .collect()
    });
    let h = |s: &str| hashes[s].clone();
    let users = if v2 { [ADA, CAROL] } else { [ADA, BOB] };
    let mut t = tellijn_test_support::CampusToml::new().section(&format!(
        "[server]\ndata_dir = \"{}\"\nflush_interval = \"200ms\"\nanonymous_read = [\"tellijn/v1/public/#\"]\n\n[[mqtt_readers]]\nname = \"{}\"\npassword_hash = \"{}\"\ntopics = [\"tellijn/v1/rooms/+/occupancy\"]\n",
        data.display(),
        HVAC.0,
        h(HVAC.1)
    ));
    for (name, pw) in users {
        t = t.section(&format!(
            "[[users]]\nname = \"{name}\"\npassword_hash = \"{}\"\nrole = \"steward\"\n",
            h(pw)
        ));
    }
    t = t
        .building("b", "Building")
        .room("r1", "b", "Room one", "study", 50)
        .with("public = true")
        .room("r2", "b", "Room two", "study", 20)
        .with(if v2 {
            "public = false"
        } else {
            "public = true"
        });
    if v2 {
        t = t
            .room("r3", "b", "Room three", "study", 30)
            .with("public = true");
    }
    t = t.line_sensor("s1", &h(S1_SECRET), &[("main", "r1", None)]);
    t = if v2 {
        t.line_sensor("s3", &h(S3_SECRET), &[("main", "r3", None)])
    } else {
        t.line_sensor("s2", &h(S2_SECRET), &[("main", "r2", None)])
    };
    t.toml()
}

/// What a client's event loop saw: connections, errors, acknowledgements, messages.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn count(&self, prefix: &str) -> usize {
        let v = self.0.lock().unwrap();
        v.iter().filter(|e| e.starts_with(prefix)).count()
    }
    fn all(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// A persistent MQTT client (rumqttc) that reconnects as rumqttc does, recording what it saw.
fn client(port: u16, id: &str, user: (&str, &str)) -> (AsyncClient, Seen) {
    let mut o = MqttOptions::new(id, "127.0.0.1", port);
    o.set_credentials(user.0, user.1);
    o.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(o, 64);
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let e = match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => "connected".to_owned(),
                Ok(Event::Incoming(Packet::PubAck(_))) => "puback".to_owned(),
                Ok(Event::Incoming(Packet::Publish(p))) => format!("message {}", p.topic),
                Ok(_) => continue,
                Err(e) => {
                    s.0.lock().unwrap().push(format!("error {e}"));
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
            };
            s.0.lock().unwrap().push(e);
        }
    });
    (client, seen)
}

fn msg(sensor: &str, seq: u64, people_in: u32) -> String {
    line_msg(seq, people_in, 0).replace("\"sensor\":\"s1\"", &format!("\"sensor\":\"{sensor}\""))
}

/// The address after `prefix` in the server's log ("HTTP listening on http://ADDR/.").
async fn addr(log: &crate::provision_e2e::Log, prefix: &str) -> std::net::SocketAddr {
    let v = log.wait_for(prefix).await;
    let m = v["fields"]["message"].as_str().unwrap();
    let rest = m[prefix.len()..]
        .trim_start_matches("http://")
        .trim_end_matches('.')
        .trim_end_matches("/metrics")
        .trim_end_matches('/');
    rest.parse().unwrap_or_else(|e| panic!("{m}: {e}"))
}

async fn occupancy(http: std::net::SocketAddr, room: &str) -> Option<u64> {
    let (status, body) = http_basic(
        http,
        &format!("/api/v1/rooms/{room}"),
        Some(&format!("{}:{}", ADA.0, ADA.1)),
    )
    .await;
    if status != 200 {
        return None;
    }
    serde_json::from_str::<serde_json::Value>(&body).ok()?["occupancy"].as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_changes_rooms_sensors_and_users_and_refuses_what_it_cannot_apply() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = dir.path().join("campus.toml");
    std::fs::write(&path, config(&data, false)).unwrap();
    let (server, port, log) = serve(&path).await;
    let http = addr(&log, "HTTP listening on ").await;
    let pg = addr(&log, "PostgreSQL listening on ").await;
    let metrics = addr(&log, "Metrics listening on ").await;

    let (s1, s1_seen) = client(port, "s1", ("s1", S1_SECRET));
    let (s2, s2_seen) = client(port, "s2", ("s2", S2_SECRET));
    let (hvac, hvac_seen) = client(port, "hvac-1", HVAC);
    hvac.subscribe("tellijn/v1/rooms/+/occupancy", QoS::AtLeastOnce)
        .await
        .unwrap();
    s1.publish(
        "tellijn/v1/sensors/s1/counts",
        QoS::AtLeastOnce,
        false,
        msg("s1", 1, 3),
    )
    .await
    .unwrap();
    s2.publish(
        "tellijn/v1/sensors/s2/counts",
        QoS::AtLeastOnce,
        false,
        msg("s2", 1, 2),
    )
    .await
    .unwrap();
    assert!(
        wait_for(30, || async {
            occupancy(http, "r1").await == Some(3) && occupancy(http, "r2").await == Some(2)
        })
        .await,
        "the first counts never arrived: s1 {:?}, s2 {:?}",
        s1_seen.all(),
        s2_seen.all()
    );
    let (bob, bob_conn) = pg_client(pg, BOB).await;
    let (ada, _ada_conn) = pg_client(pg, ADA).await;
    let rooms = |rows: Vec<tokio_postgres::Row>| rows[0].get::<_, i64>(0);
    assert_eq!(
        rooms(bob.query("SELECT count(*) FROM rooms", &[]).await.unwrap()),
        2
    );
    assert_eq!(s1_seen.count("connected"), 1);
    assert!(
        wait_for(30, || async { hvac_seen.count("message") > 0 }).await,
        "the reader saw no occupancy: {:?}",
        hvac_seen.all()
    );

    // The new config, and SIGHUP.
    let v2 = config(&data, true);
    std::fs::write(&path, &v2).unwrap();
    hangup(&server);
    log.wait_for("Reloaded the config").await;

    // The removed sensor was disconnected and cannot come back.
    assert!(
        wait_for(30, || async { s2_seen.count("error") > 0 }).await,
        "s2 was never disconnected: {:?}",
        s2_seen.all()
    );
    let refused_before = s2_seen.count("error");
    assert!(
        wait_for(30, || async { s2_seen.count("error") > refused_before }).await,
        "s2 did not try again: {:?}",
        s2_seen.all()
    );
    assert_eq!(
        s2_seen.count("connected"),
        1,
        "s2 came back: {:?}",
        s2_seen.all()
    );
    // The others never noticed, and s1 keeps counting.
    s1.publish(
        "tellijn/v1/sensors/s1/counts",
        QoS::AtLeastOnce,
        false,
        msg("s1", 2, 1),
    )
    .await
    .unwrap();
    assert!(wait_for(30, || async { occupancy(http, "r1").await == Some(4) }).await);
    assert_eq!(
        (s1_seen.count("connected"), s1_seen.count("error")),
        (1, 0),
        "s1: {:?}",
        s1_seen.all()
    );
    assert_eq!(hvac_seen.count("error"), 0, "hvac: {:?}", hvac_seen.all());
    // The new sensor counts into the new room, which everyone can see.
    let (s3, s3_seen) = client(port, "s3", ("s3", S3_SECRET));
    s3.publish(
        "tellijn/v1/sensors/s3/counts",
        QoS::AtLeastOnce,
        false,
        msg("s3", 1, 6),
    )
    .await
    .unwrap();
    assert!(
        wait_for(30, || async { occupancy(http, "r3").await == Some(6) }).await,
        "s3: {:?}",
        s3_seen.all()
    );
    let public = http_get(http, "/api/v1/rooms").await;
    assert!(
        public.contains("\"r3\"") && !public.contains("\"r2\""),
        "{public}"
    );
    // Anonymous MQTT: the new room is in the public tree, the room made private is not.
    let mut o = MqttOptions::new("anon-1", "127.0.0.1", port);
    o.set_keep_alive(Duration::from_secs(30));
    let (anon, mut anon_events) = AsyncClient::new(o, 64);
    anon.subscribe("tellijn/v1/public/rooms/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let mut retained = std::collections::BTreeSet::new();
    tokio::time::timeout(Duration::from_secs(30), async {
        while !(retained.contains("r1") && retained.contains("r3")) {
            if let Ok(Event::Incoming(Packet::Publish(p))) = anon_events.poll().await {
                retained.insert(p.topic.rsplit('/').next().unwrap_or_default().to_owned());
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the public tree after the reload: {retained:?}"));
    assert!(!retained.contains("r2"), "r2 is still public: {retained:?}");
    assert!(
        wait_for(30, || async {
            let n = hvac_seen.all();
            n.iter()
                .any(|e| e == "message tellijn/v1/rooms/r3/occupancy")
        })
        .await,
        "the reader never saw the new room: {:?}",
        hvac_seen.all()
    );

    // SQL: bob's open session is closed and his login refused; carol gets in; ada goes on.
    let err = bob
        .query("SELECT count(*) FROM rooms", &[])
        .await
        .expect_err("bob's session outlived his removal");
    // Told why (SQLSTATE 57P01, admin_shutdown) as the server closed the connection: the
    // client's connection task ends with that error, the query with "connection closed".
    let why = bob_conn
        .await
        .unwrap()
        .expect_err("bob's connection ended without an error");
    let text = format!("{why:?} {why}");
    assert!(
        text.contains("57P01") && text.contains("config reload"),
        "not closed for the reload: {text} (the query: {err})"
    );
    let login = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname=tellijn",
            pg.port(),
            BOB.0,
            BOB.1
        ),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(login.is_err(), "bob still logs in");
    let (carol, _carol_conn) = pg_client(pg, CAROL).await;
    assert_eq!(
        rooms(
            carol
                .query("SELECT count(*) FROM rooms", &[])
                .await
                .unwrap()
        ),
        3
    );
    ada.query("SELECT 1", &[])
        .await
        .expect("ada's session goes on");
    let (status, _) = http_basic(
        http,
        "/api/v1/rooms/r1",
        Some(&format!("{}:{}", BOB.0, BOB.1)),
    )
    .await;
    assert_eq!(status, 401, "bob's HTTP credentials");
    let (status, _) = http_basic(
        http,
        "/api/v1/rooms/r1",
        Some(&format!("{}:{}", CAROL.0, CAROL.1)),
    )
    .await;
    assert_eq!(status, 200, "carol's HTTP credentials");

    // An invalid file, with two errors: both reported, nothing changes.
    let broken = v2
        .replace("into = \"r3\"", "into = \"nowhere\"")
        .replace("id = \"r2\"", "id = \"r1\"");
    std::fs::write(&path, &broken).unwrap();
    hangup(&server);
    let refused = log.wait_for("Refused to reload").await;
    let why = refused["fields"]["message"].as_str().unwrap().to_owned();
    assert!(why.contains("nowhere") && why.contains("r1"), "{why}");
    assert_eq!(
        occupancy(http, "r3").await,
        Some(6),
        "the running config stays"
    );
    // A change only a restart can make: refused and named.
    std::fs::write(
        &path,
        v2.replace(
            "flush_interval = \"200ms\"",
            "flush_interval = \"1s\"\nhttp = \"127.0.0.1:1\"",
        ),
    )
    .unwrap();
    hangup(&server);
    assert!(
        wait_for(30, || async {
            audit_lines(&data)
                .iter()
                .filter(|l| l["event"] == "config_refused")
                .count()
                == 2
        })
        .await
    );
    let text = http_get(metrics, "/metrics").await;
    assert_eq!(
        (
            metric(&text, "tellijn_config_reloads_total{outcome=\"applied\"}"),
            metric(&text, "tellijn_config_reloads_total{outcome=\"refused\"}"),
        ),
        (1.0, 2.0),
        "{text}"
    );
    stop(server).await;

    // The audit log: the reload's hash, both refusals with their reasons; one intact chain.
    let lines = audit_lines(&data);
    let v2_hash = tellijn_config::Campus::parse(&v2, "v2").unwrap().hash();
    assert!(
        lines.iter().any(|l| l["event"] == "config_loaded"
            && l["config_sha256"] == v2_hash.as_str()
            && l["source"]
                .as_str()
                .is_some_and(|s| s.ends_with("(reload)"))),
        "no reload in the audit log"
    );
    let refusals: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "config_refused")
        .filter_map(|l| l["reason"].as_str())
        .collect();
    assert!(refusals[0].contains("nowhere"), "{refusals:?}");
    assert!(
        refusals[1].contains("[server] flush_interval") && refusals[1].contains("[server] http"),
        "{refusals:?}"
    );
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["audit", "verify", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
