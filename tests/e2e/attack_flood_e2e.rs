//! Floods, played by an attacker against the real server on loopback: thousands of refused
//! CONNECTs and SUBSCRIBEs with long client ids, user names and filters, anonymous publishers
//! with a fresh client id each, HTTP 401s, more HTTP connections than the limit, and user names
//! guessed by timing. Each test states the bound it proves and fails if the protection goes.

use crate::common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::raw_mqtt::{packet, string};
use common::*;
use tellijn_agent::outbox::Outbox;
use tellijn_config::metrics::{ReasonLabels, auth_reason};
use tellijn_wire::Clock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

// ---- raw MQTT 3.1.1 packets -------------------------------------------------------------

/// CONNECT (3.1.1, clean session) with an optional user name and an optional password.
fn connect(client_id: &[u8], user: Option<&[u8]>, password: Option<&[u8]>) -> Vec<u8> {
    let mut flags = 0x02;
    if user.is_some() {
        flags |= 0x80;
    }
    if password.is_some() {
        flags |= 0x40;
    }
    let mut body = string(b"MQTT");
    body.extend([4, flags, 0, 30]);
    body.extend(string(client_id));
    if let Some(u) = user {
        body.extend(string(u));
    }
    if let Some(p) = password {
        body.extend(string(p));
    }
    packet(0x10, &body)
}

/// SUBSCRIBE (QoS 0) to one filter with this packet id.
fn subscribe(id: u16, filter: &[u8]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend(string(filter));
    body.push(0);
    packet(0x82, &body)
}

/// PUBLISH at QoS 0.
fn publish0(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend(payload);
    packet(0x30, &body)
}

/// Sends a CONNECT and returns the CONNACK's return code (None if the server just closed).
async fn connack(mqtt: SocketAddr, connect: &[u8]) -> Option<(TcpStream, u8)> {
    let mut s = TcpStream::connect(mqtt).await.ok()?;
    s.write_all(connect).await.ok()?;
    let mut ack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(20), s.read_exact(&mut ack))
        .await
        .ok()?
        .ok()?;
    (ack[0] == 0x20).then_some((s, ack[3]))
}

// ---- helpers ----------------------------------------------------------------------------

fn stop_signal(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// Bytes in the audit log now.
fn audit_bytes(data: &std::path::Path) -> u64 {
    std::fs::read_dir(data.join("audit"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// GET over HTTP/1.1 with optional Basic credentials: (status, body).
async fn get(addr: SocketAddr, path: &str, basic: Option<&str>) -> (u16, String) {
    http_basic(addr, path, basic).await
}

fn auth_failures(server: &tellijn::server::Server, reason: &'static str) -> u64 {
    server
        .metrics
        .auth_failures
        .get_or_create(&ReasonLabels { reason })
        .get()
}

/// The ack watermark the agent holds on disk.
/// A running agent's watermark, read without opening (and so repairing) its outbox.
fn acked(outbox: &std::path::Path) -> u64 {
    Outbox::peek(outbox).map(|(_, acked)| acked).unwrap_or(0)
}

/// `[[users]]` for the HTTP tests: a steward `ada`.
fn users() -> String {
    format!(
        "\n[[users]]\nname = \"ada\"\npassword_hash = \"{}\"\nrole = \"steward\"\n",
        tellijn::secrets::hash_demo("ada-password").unwrap()
    )
}

// ---- the tests --------------------------------------------------------------------------

/// The audit bound: at most one line per (refused, reason) pair and minute. The flood below
/// uses five pairs and lasts less than two minutes, so at most 5 × 3 lines; each is under
/// 600 bytes. One line per attempt (the old behaviour) would be over 400 KiB.
const FLOOD_AUDIT_BOUND: u64 = 16 << 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connect_and_subscribe_flood_writes_a_bounded_audit_and_sensors_keep_delivering() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!(
        "{}\n[limits]\nmax_pending_per_ip = 4096\n",
        campus_text(&data, "200ms", "")
    );
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let mqtt = server.mqtt_addr();
    let http = server.http_addr();

    // A legitimate sensor, delivering throughout.
    let cfg = agent_config(&dir.path().join("agent"), &format!("mqtt://{mqtt}"), 20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = {
        let cfg = cfg.clone();
        let stop = stop_signal(&stop_rx);
        tokio::spawn(
            async move { tellijn_agent::run(&cfg, S1_SECRET, Clock::system(), stop).await },
        )
    };
    assert!(
        wait_for(20, || async { acked(&cfg.outbox) > 5 }).await,
        "the sensor never got acknowledged"
    );
    let before = audit_bytes(&data);
    let acked_before = acked(&cfg.outbox);

    // The attacker: long client ids and user names, many times over, eight at a time.
    let long_id = "i".repeat(1000);
    let long_user = "u".repeat(800);
    let long_filter = format!("tellijn/v1/sensors/{}", "f".repeat(900));
    const QUICK: usize = 2400; // refused without a hash: no secret, or anonymous as a sensor
    const HASHED: usize = 40; // unknown user with a password: one dummy argon2id each
    const SUBSCRIBES: usize = 2000;
    const PUBLISHERS: usize = 200;
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut tasks = Vec::new();
    for worker in 0..8usize {
        let (long_id, long_user, long_filter) =
            (long_id.clone(), long_user.clone(), long_filter.clone());
        tasks.push(tokio::spawn(async move {
            let mut refused = 0usize;
            for i in (worker..QUICK).step_by(8) {
                if Instant::now() > deadline {
                    break;
                }
                let id = format!("{long_id}{i}");
                let c = if i % 2 == 0 {
                    // A known sensor's name without its secret: bad_secret.
                    connect(id.as_bytes(), Some(b"s2"), None)
                } else {
                    // Anonymous, with a sensor's client id: client_id_mismatch.
                    connect(b"s2", None, None)
                };
                if matches!(connack(mqtt, &c).await, Some((_, code)) if code != 0) {
                    refused += 1;
                }
            }
            for i in (worker..HASHED).step_by(8) {
                let c = connect(
                    format!("{long_id}{i}").as_bytes(),
                    Some(format!("{long_user}{i}").as_bytes()),
                    Some(b"guess"),
                );
                if matches!(connack(mqtt, &c).await, Some((_, code)) if code != 0) {
                    refused += 1;
                }
            }
            // Anonymous (allowed to read rooms) but subscribing where it may not.
            let mut subacks = 0usize;
            if let Some((mut s, 0)) = connack(
                mqtt,
                &connect(format!("anon-{worker}").as_bytes(), None, None),
            )
            .await
            {
                for i in (worker..SUBSCRIBES).step_by(8) {
                    let filter = format!("{long_filter}{i}");
                    if s.write_all(&subscribe(1 + (i % 60000) as u16, filter.as_bytes()))
                        .await
                        .is_err()
                    {
                        break;
                    }
                    let mut ack = [0u8; 5];
                    if s.read_exact(&mut ack).await.is_ok() && ack[0] == 0x90 && ack[4] == 0x80 {
                        subacks += 1;
                    }
                }
            }
            // Anonymous publishers, a fresh client id each: refused, and no limiter entry.
            for i in (worker..PUBLISHERS).step_by(8) {
                let id = format!("pub-{i}-{long_id}");
                if let Some((mut s, 0)) = connack(mqtt, &connect(id.as_bytes(), None, None)).await {
                    let _ = s
                        .write_all(&publish0(b"tellijn/v1/sensors/s1/counts", b"{}"))
                        .await;
                    let mut buf = [0u8; 16];
                    let _ = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await;
                }
            }
            (refused, subacks)
        }));
    }
    // Meanwhile the server answers and the sensor is acknowledged.
    let mut healthy_during = 0;
    while tasks.iter().any(|t| !t.is_finished()) {
        let (status, body) = get(http, "/healthz", None).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        healthy_during += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut refused = 0;
    let mut subacks = 0;
    for t in tasks {
        let (r, s) = t.await.unwrap();
        refused += r;
        subacks += s;
    }
    assert!(Instant::now() < deadline, "the flood took too long");
    assert_eq!(refused, QUICK + HASHED, "not every CONNECT was refused");
    assert_eq!(subacks, SUBSCRIBES, "not every SUBSCRIBE was refused");
    assert!(healthy_during > 0);
    assert!(
        wait_for(20, || async { acked(&cfg.outbox) > acked_before + 20 }).await,
        "the sensor was not acknowledged during the flood"
    );

    // Every attempt is counted exactly...
    assert_eq!(
        auth_failures(&server, auth_reason::BAD_SECRET),
        (QUICK / 2) as u64
    );
    assert_eq!(
        auth_failures(&server, auth_reason::CLIENT_ID_MISMATCH),
        (QUICK / 2) as u64
    );
    assert_eq!(
        auth_failures(&server, auth_reason::UNKNOWN_USER),
        HASHED as u64
    );
    assert!(server.metrics.subscribe_refused.get() >= SUBSCRIBES as u64);
    // ...and the rate limiter holds state only for who the config names: s1 and one shared
    // key for all anonymous clients, not one per client id.
    let keys = server.metrics.publish_limiter_keys.get();
    assert!(
        (1..=3).contains(&keys),
        "the publish limiter holds {keys} keys after {PUBLISHERS} anonymous client ids"
    );

    // ...but the audit log grew by a bounded amount, aggregated, and stays a valid chain.
    let _ = stop_tx.send(true);
    let totals = agent.await.unwrap().unwrap();
    server.stop().await.unwrap();
    let grown = audit_bytes(&data) - before;
    assert!(
        grown < FLOOD_AUDIT_BOUND,
        "the audit log grew by {grown} bytes for {} refusals",
        QUICK + HASHED + SUBSCRIBES + PUBLISHERS
    );
    let lines = audit_lines(&data);
    let counted = |refused: &str, reason: &str| -> u64 {
        lines
            .iter()
            .filter(|l| {
                l["event"] == "refusals" && l["refused"] == refused && l["reason"] == reason
            })
            .map(|l| l["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(counted("auth_failure", "bad_secret"), (QUICK / 2) as u64);
    assert_eq!(
        counted("auth_failure", "client_id_mismatch"),
        (QUICK / 2) as u64
    );
    assert_eq!(counted("auth_failure", "unknown_user"), HASHED as u64);
    assert_eq!(
        counted("subscribe_refused", "not_allowed"),
        SUBSCRIBES as u64
    );
    assert_eq!(counted("publish_refused", "bad_topic"), PUBLISHERS as u64);
    // Sources are the clients' own addresses (loopback here), not the door's.
    let sources = lines
        .iter()
        .find(|l| l["event"] == "refusals" && l["reason"] == "bad_secret")
        .map(|l| l["sources"].as_u64().unwrap());
    assert_eq!(sources, Some(1));
    for l in &lines {
        let raw = l.to_string();
        assert!(
            raw.len() < 600,
            "an audit line of {} bytes: {raw}",
            raw.len()
        );
        assert!(
            !raw.contains(&"i".repeat(100)),
            "a long client id reached the log"
        );
    }
    let chain = tellijn_config::audit::verify(&data).unwrap();
    assert!(chain.lines >= 2);
    // The sensor lost nothing.
    assert_eq!(totals.unacked, 0);
    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert_eq!((rows, distinct), (max, max));
    assert_eq!((sum_in, sum_out), truth(max));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_401s_are_counted_aggregated_and_cost_the_same_for_unknown_users() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!("{}{}", campus_text(&data, "1h", ""), users());
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let http = server.http_addr();
    let before = audit_bytes(&data);

    // A good login works (and is audited as a read).
    assert_eq!(
        get(http, "/api/v1/rooms", Some("ada:ada-password")).await.0,
        200
    );
    // A flood of wrong ones: unknown (long) user names, a known name with wrong passwords.
    let long = "x".repeat(3000);
    const N: usize = 30;
    let mut unknown_time = Duration::ZERO;
    let mut bad_time = Duration::ZERO;
    for i in 0..N {
        let t = Instant::now();
        let (status, _) = get(http, "/api/v1/rooms", Some(&format!("{long}{i}:pw"))).await;
        unknown_time += t.elapsed();
        assert_eq!(status, 401);
        let t = Instant::now();
        let (status, _) = get(http, "/api/v1/rooms", Some(&format!("ada:wrong-{i}"))).await;
        bad_time += t.elapsed();
        assert_eq!(status, 401);
    }
    for _ in 0..N {
        assert_eq!(get(http, "/api/v1/rooms", Some("no colon")).await.0, 401);
    }
    assert_eq!(
        auth_failures(&server, auth_reason::HTTP_UNKNOWN_USER),
        N as u64
    );
    assert_eq!(
        auth_failures(&server, auth_reason::HTTP_BAD_PASSWORD),
        N as u64
    );
    assert_eq!(
        auth_failures(&server, auth_reason::HTTP_MALFORMED),
        N as u64
    );
    // Unknown names pay the same argon2id verification: no user names by timing. (Without
    // the dummy hash an unknown name is answered ~100× faster.)
    assert!(
        unknown_time * 2 > bad_time,
        "unknown users answered in {unknown_time:?}, known ones with a wrong password in {bad_time:?}"
    );
    // The cached credential still works.
    assert_eq!(
        get(http, "/api/v1/rooms", Some("ada:ada-password")).await.0,
        200
    );

    server.stop().await.unwrap();
    let grown = audit_bytes(&data) - before;
    assert!(grown < 8 << 10, "the audit log grew by {grown} bytes");
    let lines = audit_lines(&data);
    let per_reason = |reason: &str| -> u64 {
        lines
            .iter()
            .filter(|l| l["event"] == "refusals" && l["reason"] == reason)
            .map(|l| l["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(per_reason("http_unknown_user"), N as u64);
    assert_eq!(per_reason("http_bad_password"), N as u64);
    assert_eq!(per_reason("http_malformed"), N as u64);
    assert!(
        lines
            .iter()
            .all(|l| !l.to_string().contains(&"x".repeat(100)))
    );
    assert_eq!(
        lines.iter().filter(|l| l["event"] == "read").count(),
        2,
        "each good login is audited as a read"
    );
    tellijn_config::audit::verify(&data).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mqtt_unknown_users_cost_the_same_as_known_ones_and_cached_logins_do_not_queue() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_text(&data, &campus_text(&data, "1h", ""), "127.0.0.1:0").await;
    let mqtt = server.mqtt_addr();
    // s2's real secret once, so it is cached.
    let (s, code) = connack(
        mqtt,
        &connect(b"s2", Some(b"s2"), Some(S2_SECRET.as_bytes())),
    )
    .await
    .unwrap();
    assert_eq!(code, 0);
    drop(s);
    const N: usize = 12;
    let (mut unknown, mut known) = (Duration::ZERO, Duration::ZERO);
    for i in 0..N {
        let t = Instant::now();
        let name = format!("ghost-{i}");
        let c = connect(name.as_bytes(), Some(name.as_bytes()), Some(b"guess"));
        assert_eq!(connack(mqtt, &c).await.unwrap().1, 4);
        unknown += t.elapsed();
        let t = Instant::now();
        assert_eq!(
            connack(mqtt, &connect(b"s1", Some(b"s1"), Some(b"guess")))
                .await
                .unwrap()
                .1,
            4
        );
        known += t.elapsed();
    }
    assert!(
        unknown * 2 > known,
        "unknown users refused in {unknown:?}, known ones in {known:?}"
    );
    // While wrong guesses queue for every verification slot (four per slot), the cached
    // sensor gets in at once instead of waiting behind them.
    let slots = std::thread::available_parallelism().map_or(2, |n| n.get());
    let guesses: Vec<_> = (0..4 * slots)
        .map(|i| {
            tokio::spawn(async move {
                let name = format!("ghost-{i}");
                connack(
                    mqtt,
                    &connect(name.as_bytes(), Some(name.as_bytes()), Some(b"g")),
                )
                .await
            })
        })
        .collect();
    // Give the guesses a moment to reach the queue (they are refused either way).
    tokio::time::sleep(Duration::from_millis(20)).await;
    let t = Instant::now();
    let (_s, code) = connack(
        mqtt,
        &connect(b"s2", Some(b"s2"), Some(S2_SECRET.as_bytes())),
    )
    .await
    .unwrap();
    let cached = t.elapsed();
    assert_eq!(code, 0);
    for g in guesses {
        let _ = g.await;
    }
    let one = known / N as u32;
    assert!(
        cached < one * 3,
        "a cached login took {cached:?}; one verification takes {one:?}"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_connections_beyond_the_limit_are_closed_and_the_others_served() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!(
        "{}\n[limits]\nmax_http_connections = 4\n",
        campus_text(&data, "1h", "")
    );
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let http = server.http_addr();
    // Four idle connections take every place (the server has accepted each once it answers
    // a request on it).
    let mut open = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(http).await.unwrap();
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
        open.push(s);
    }
    // The fifth is closed at once, without an answer.
    let mut fifth = TcpStream::connect(http).await.unwrap();
    let _ = fifth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_secs(5), fifth.read(&mut buf))
        .await
        .expect("the connection over the limit was left open");
    assert!(matches!(read, Ok(0) | Err(_)), "answered over the limit");
    assert_eq!(server.metrics.http_refused_connections.get(), 1);
    // The four are still served.
    for s in &mut open {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let n = s.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    }
    // One leaves: its place is free again.
    drop(open.pop());
    let served = || async { get(http, "/healthz", None).await.0 == 200 };
    assert!(
        wait_for(10, served).await,
        "the freed place was not given back"
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_logins_cost_the_same_for_unknown_users_and_are_audited_aggregated() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = format!("{}{}", campus_text(&data, "1h", ""), users());
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let port = server.postgres_addr().port();
    let login = |user: String, password: &'static str| async move {
        let t = Instant::now();
        let r = tokio_postgres::connect(
            &format!("host=127.0.0.1 port={port} user={user} password={password} dbname=tellijn"),
            tokio_postgres::NoTls,
        )
        .await;
        (r.is_ok(), t.elapsed())
    };
    const N: usize = 10;
    let (mut unknown, mut known) = (Duration::ZERO, Duration::ZERO);
    for i in 0..N {
        let (ok, t) = login(format!("ghost{i}{}", "g".repeat(500)), "guess").await;
        assert!(!ok);
        unknown += t;
        let (ok, t) = login("ada".to_owned(), "guess").await;
        assert!(!ok);
        known += t;
    }
    assert!(
        unknown * 2 > known,
        "unknown users refused in {unknown:?}, known ones in {known:?}"
    );
    assert_eq!(
        auth_failures(&server, auth_reason::SQL_UNKNOWN_USER),
        N as u64
    );
    assert_eq!(
        auth_failures(&server, auth_reason::SQL_BAD_PASSWORD),
        N as u64
    );
    server.stop().await.unwrap();
    let lines = audit_lines(&data);
    let refusals: Vec<_> = lines.iter().filter(|l| l["event"] == "refusals").collect();
    let total: u64 = refusals.iter().map(|l| l["count"].as_u64().unwrap()).sum();
    assert_eq!(total, 2 * N as u64, "{refusals:?}");
    assert!(refusals.len() <= 4, "{refusals:?}");
    assert!(refusals.iter().all(|l| l["sources"] == 1));
}
