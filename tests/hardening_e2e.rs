//! Hardening, end to end against the real server on loopback: malformed MQTT packets over raw
//! TCP, a stolen sensor secret, a flooding sensor, silent connections (plain and TLS), the
//! limit on pending connections per address, and what an agent actually puts on the wire.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::raw_mqtt::{packet, string};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

// ---- raw MQTT 3.1.1 packets -------------------------------------------------------------

/// CONNECT (3.1.1, clean session, keep-alive 30 s) with optional username and password.
fn connect(client_id: &[u8], login: Option<(&str, &str)>) -> Vec<u8> {
    let flags = if login.is_some() { 0xc2 } else { 0x02 };
    let mut body = string(b"MQTT");
    body.extend([4, flags, 0, 30]);
    body.extend(string(client_id));
    if let Some((u, p)) = login {
        body.extend(string(u.as_bytes()));
        body.extend(string(p.as_bytes()));
    }
    packet(0x10, &body)
}

/// PUBLISH at QoS 1 with packet id 1.
fn publish(topic: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut body = string(topic);
    body.extend([0, 1]);
    body.extend(payload);
    packet(0x32, &body)
}

/// Reads until the server closes the connection; false if it is still open after `secs`.
async fn closed_within<S: AsyncRead + Unpin>(s: &mut S, secs: u64) -> bool {
    let mut buf = [0u8; 256];
    let read_to_end = async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(secs), read_to_end)
        .await
        .is_ok()
}

/// Connects as `s1` over raw TCP and reads the CONNACK.
async fn logged_in(mqtt: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(mqtt).await.unwrap();
    s.write_all(&connect(b"s1", Some(("s1", S1_SECRET))))
        .await
        .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00], "s1 was not let in");
    s
}

/// The test campus with a `[limits]` table (TOML lines), started on ephemeral ports.
async fn with_limits(dir: &std::path::Path, limits: &str) -> tellijn::server::Server {
    let text = format!("{}\n[limits]\n{limits}", campus_text(dir, "1h", ""));
    start_text(dir, &text, "127.0.0.1:0").await
}

/// Waits until the server holds no MQTT session (a new login with the same client id would
/// otherwise race the old session's teardown).
async fn no_sessions(http: SocketAddr) {
    let idle = || async {
        metric(
            &http_get(http, "/metrics").await,
            "tellijn_mqtt_connections",
        ) == 0.0
    };
    assert!(wait_for(10, idle).await, "MQTT sessions stayed open");
}

/// Waits until the processors have taken `n` count messages in (a PUBACK comes when a
/// message is handed to them, a moment before they count it).
async fn accepted(http: SocketAddr, n: f64) -> bool {
    let series = "tellijn_messages_total{outcome=\"accepted\"}";
    wait_for(10, || async {
        metric(&http_get(http, "/metrics").await, series) == n
    })
    .await
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    kb * 1024
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn refused(m: &str, reason: &str) -> f64 {
    metric(
        m,
        &format!("tellijn_mqtt_refused_connections_total{{reason=\"{reason}\"}}"),
    )
}

// ---- the tests --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_packets_are_refused_counted_and_harm_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_limits(dir.path(), "connect_timeout = \"2s\"\n").await;
    let mqtt = server.mqtt_addr();
    let rss_before = rss_bytes();

    let huge = [0xff, 0xff, 0xff, 0x7f]; // remaining length 268 435 455
    let mut valid_connect = connect(b"s1", Some(("s1", S1_SECRET)));
    let truncated = valid_connect.split_off(valid_connect.len() / 2);
    drop(truncated);
    let mut publish_huge = vec![0x30];
    publish_huge.extend(huge);
    publish_huge.extend(string(b"tellijn/v1/sensors/s1/counts"));
    let mut connect_huge = vec![0x10];
    connect_huge.extend(huge);
    connect_huge.extend(string(b"MQTT"));
    // Before the CONNECT: (what is sent, the reason it is counted under).
    let before_connect: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "a PUBLISH declaring ~256 MB as the first packet",
            publish_huge.clone(),
            "not_connect",
        ),
        ("a CONNECT declaring ~256 MB", connect_huge, "too_large"),
        ("a truncated CONNECT", valid_connect, "truncated"),
        (
            "invalid UTF-8 in the client id",
            connect(b"s1-\xff\xfe", None),
            "malformed",
        ),
        (
            "a PUBLISH before any CONNECT",
            publish(
                b"tellijn/v1/sensors/s1/counts",
                line_msg(1, 1, 0).as_bytes(),
            ),
            "not_connect",
        ),
        (
            "a remaining length of five bytes",
            vec![0x10, 0xff, 0xff, 0xff, 0xff, 0x01],
            "malformed",
        ),
        (
            "an unknown protocol name",
            packet(
                0x10,
                &[0, 4, b'H', b'T', b'T', b'P', 4, 2, 0, 30, 0, 1, b'x'],
            ),
            "malformed",
        ),
    ];
    for (what, bytes, _) in &before_connect {
        let mut s = TcpStream::connect(mqtt).await.unwrap();
        s.write_all(bytes).await.unwrap();
        // The truncated CONNECT is followed by the client closing its side.
        let _ = s.shutdown().await;
        assert!(closed_within(&mut s, 10).await, "{what}: still open");
    }
    // After a good login: packets rmqtt's codec refuses close the connection.
    let mut bad_topic_utf8 = publish(b"tellijn/v1/sensors/s1/\xff\xfe", b"{}");
    let empty_topic = publish(b"", line_msg(2, 1, 0).as_bytes());
    let mut too_big = vec![0x32];
    too_big.extend(huge);
    too_big.extend(string(b"tellijn/v1/sensors/s1/counts"));
    let after_connect: Vec<(&str, Vec<u8>)> = vec![
        (
            "invalid UTF-8 in a topic",
            std::mem::take(&mut bad_topic_utf8),
        ),
        ("a zero-length topic", empty_topic),
        ("a PUBLISH declaring ~256 MB", too_big),
    ];
    for (what, bytes) in &after_connect {
        no_sessions(server.metrics_addr()).await;
        let mut s = logged_in(mqtt).await;
        s.write_all(bytes).await.unwrap();
        assert!(closed_within(&mut s, 10).await, "{what}: still open");
    }

    // Counted, each under its reason.
    let http = server.metrics_addr();
    let m = http_get(http, "/metrics").await;
    for reason in ["not_connect", "too_large", "truncated", "malformed"] {
        let want = before_connect
            .iter()
            .filter(|(_, _, r)| *r == reason)
            .count() as f64;
        assert_eq!(refused(&m, reason), want, "{reason}\n{m}");
    }
    // The empty topic may be refused by the codec or by the gate (bad_topic); either way
    // the connection is closed and counted, and nothing reached a subscriber.
    let closed_after_login = || async {
        let m = http_get(http, "/metrics").await;
        refused(&m, "protocol_error")
            + metric(&m, "tellijn_rejected_messages_total{reason=\"bad_topic\"}")
            == 3.0
    };
    assert!(wait_for(10, closed_after_login).await, "{m}");
    assert_eq!(
        metric(&m, "tellijn_messages_total{outcome=\"accepted\"}"),
        0.0
    );
    // Audited with the client, not the bytes.
    let audit = audit_lines(dir.path());
    let protocol: Vec<_> = audit
        .iter()
        .filter(|l| l["event"] == "protocol_error")
        .collect();
    assert!(!protocol.is_empty(), "{audit:?}");
    assert!(protocol.iter().all(|l| l["client"] == "s1"), "{protocol:?}");

    // Memory stayed bounded: nothing allocated the declared 256 MB.
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(grown < 64 << 20, "RSS grew by {grown} bytes");

    // And the server still works for everyone else.
    let counts = "tellijn/v1/sensors/s1/counts";
    let s1 = Some(("s1", S1_SECRET));
    assert!(
        mosquitto_pub(
            mqtt.port(),
            s1,
            "s1",
            counts,
            Payload::Text(&line_msg(3, 2, 0))
        )
        .await
    );
    assert!(accepted(http, 1.0).await);
    server.stop().await.unwrap();
}

/// What a client sees of its connection: CONNACK refused, SUBACK failures, or being closed.
async fn rumqtt_session(
    mqtt: SocketAddr,
    client_id: &str,
    login: (&str, &str),
    will: Option<(&str, &str)>,
) -> (AsyncClient, Arc<Mutex<Vec<String>>>) {
    let mut opts = MqttOptions::new(client_id, "127.0.0.1", mqtt.port());
    opts.set_credentials(login.0, login.1);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((topic, payload)) = will {
        opts.set_last_will(rumqttc::LastWill::new(
            topic,
            payload,
            QoS::AtLeastOnce,
            true,
        ));
    }
    let (client, mut events) = AsyncClient::new(opts, 16);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        loop {
            let ev = events.poll().await;
            let line = match &ev {
                Ok(Event::Incoming(Packet::ConnAck(a))) => format!("connack {:?}", a.code),
                Ok(Event::Incoming(Packet::SubAck(a))) => format!("suback {:?}", a.return_codes),
                Ok(Event::Incoming(Packet::PubAck(a))) => format!("puback {}", a.pkid),
                Ok(Event::Incoming(Packet::Publish(p))) => format!("publish {}", p.topic),
                Ok(_) => continue,
                Err(e) => format!("error {e}"),
            };
            let stop = line.starts_with("error");
            log.lock().unwrap().push(line);
            if stop {
                return;
            }
        }
    });
    (client, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stolen_sensor_secret_works_only_as_that_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mqtt = server.mqtt_addr();
    let stolen = ("s1", S1_SECRET);
    let has = |seen: &Arc<Mutex<Vec<String>>>, needle: &str| {
        let seen = seen.clone();
        let needle = needle.to_owned();
        async move { seen.lock().unwrap().iter().any(|l| l.contains(&needle)) }
    };

    // From another client id.
    let (_c, seen) = rumqtt_session(mqtt, "laptop", stolen, None).await;
    assert!(
        wait_for(10, || has(&seen, "NotAuthorized")).await,
        "{seen:?}"
    );
    // As another sensor (its id as client id, s1's name and secret).
    let (_c, seen) = rumqtt_session(mqtt, "s2", stolen, None).await;
    assert!(
        wait_for(10, || has(&seen, "NotAuthorized")).await,
        "{seen:?}"
    );
    // With a will on another sensor's status.
    let will = Some(("tellijn/v1/sensors/s2/status", "{\"online\":false}"));
    let (_c, seen) = rumqtt_session(mqtt, "s1", stolen, will).await;
    assert!(
        wait_for(10, || has(&seen, "NotAuthorized")).await,
        "{seen:?}"
    );

    // As s1 itself: another sensor's topic and a derived topic are refused (the connection
    // closes, as MQTT 3.1.1 has no negative PUBACK), and so are other sensors' acks and `#`.
    for topic in [
        "tellijn/v1/sensors/s2/counts",
        "tellijn/v1/rooms/r1/occupancy",
        "tellijn/v1/buildings/b/occupancy",
    ] {
        no_sessions(server.metrics_addr()).await;
        let (c, seen) = rumqtt_session(mqtt, "s1", stolen, None).await;
        assert!(
            wait_for(10, || has(&seen, "connack Success")).await,
            "{seen:?}"
        );
        c.publish(topic, QoS::AtLeastOnce, false, line_msg(1, 1, 0))
            .await
            .unwrap();
        assert!(
            wait_for(10, || has(&seen, "error")).await,
            "{topic}: {seen:?}"
        );
        assert!(!seen.lock().unwrap().iter().any(|l| l.starts_with("puback")));
    }
    no_sessions(server.metrics_addr()).await;
    let (c, seen) = rumqtt_session(mqtt, "s1", stolen, None).await;
    c.subscribe("tellijn/v1/sensors/s2/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    c.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    c.subscribe("tellijn/v1/sensors/s1/ack", QoS::AtLeastOnce)
        .await
        .unwrap();
    let want = [
        format!("suback {:?}", [SubscribeReasonCode::Failure]),
        format!("suback {:?}", [SubscribeReasonCode::Failure]),
        format!(
            "suback {:?}",
            [SubscribeReasonCode::Success(QoS::AtLeastOnce)]
        ),
    ];
    let subacks = || {
        let seen = seen.clone();
        async move {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with("suback"))
                .count()
                == 3
        }
    };
    assert!(wait_for(10, subacks).await, "{seen:?}");
    let got: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.starts_with("suback"))
        .cloned()
        .collect();
    assert_eq!(got, want);

    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(
        metric(
            &m,
            "tellijn_auth_failures_total{reason=\"client_id_mismatch\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric(&m, "tellijn_auth_failures_total{reason=\"bad_will\"}"),
        1.0
    );
    assert_eq!(
        metric(&m, "tellijn_rejected_messages_total{reason=\"bad_topic\"}"),
        3.0
    );
    assert_eq!(metric(&m, "tellijn_subscribe_refused_total"), 2.0);
    assert_eq!(
        metric(&m, "tellijn_messages_total{outcome=\"accepted\"}"),
        0.0
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flooding_sensor_is_slowed_down_and_the_others_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_limits(dir.path(), "publish_rate = 20\npublish_burst = 10\n").await;
    let mqtt = server.mqtt_addr();

    // s1 floods 100 valid messages as fast as its client can send them.
    const FLOOD: u64 = 100;
    let (flooder, flood_seen) = rumqtt_session(mqtt, "s1", ("s1", S1_SECRET), None).await;
    for seq in 1..=FLOOD {
        flooder
            .publish(
                "tellijn/v1/sensors/s1/counts",
                QoS::AtLeastOnce,
                false,
                line_msg(seq, 1, 0),
            )
            .await
            .unwrap();
    }
    let flood_acks = || {
        let s = flood_seen.clone();
        async move {
            s.lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with("puback"))
                .count() as u64
        }
    };
    // Meanwhile s2 sends its zone counts and each is acknowledged while s1 still waits.
    let (other, other_seen) = rumqtt_session(mqtt, "s2", ("s2", S2_SECRET), None).await;
    for seq in 1..=5u64 {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let msg = format!(
            r#"{{"v":1,"sensor":"s2","zone":"seats","seq":{seq},"at":"{at}","count":{seq}}}"#
        );
        other
            .publish("tellijn/v1/sensors/s2/counts", QoS::AtLeastOnce, false, msg)
            .await
            .unwrap();
        let acked = || {
            let s = other_seen.clone();
            async move {
                s.lock()
                    .unwrap()
                    .iter()
                    .filter(|l| l.starts_with("puback"))
                    .count() as u64
                    == seq
            }
        };
        assert!(wait_for(10, acked).await, "s2 waited: {other_seen:?}");
    }
    let acked_when_s2_done = flood_acks().await;
    assert!(
        acked_when_s2_done < FLOOD,
        "the flood was not slowed: all {FLOOD} acknowledged while s2 sent 5"
    );
    // Nothing of the flood is lost: it is only slower (≥ (100 − 10) / 20 s).
    assert!(
        wait_for(30, || async { flood_acks().await == FLOOD }).await,
        "the flood was not fully acknowledged: {}",
        flood_acks().await
    );
    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert!(
        metric(&m, "tellijn_mqtt_publish_throttled_total") >= 50.0,
        "{m}"
    );
    assert!(accepted(server.metrics_addr(), (FLOOD + 5) as f64).await);
    server.stop().await.unwrap();
}

/// A self-signed server certificate for 127.0.0.1, and a TLS client config trusting it.
fn tls_setup(dir: &std::path::Path) -> (String, Arc<rustls::ClientConfig>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let section = format!(
        "[tls]\ncert = \"{}\"\nkey = \"{}\"\n",
        dir.join("server.pem").display(),
        dir.join("server.key").display()
    );
    (section, Arc::new(config))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_are_closed_and_their_descriptors_come_back() {
    // Client and server share this process: about 1 100 descriptors at the peak.
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    if limit.current.is_some_and(|c| c < 4096) {
        let raised = rustix::process::Rlimit {
            current: limit.maximum.map(|m| m.min(4096)),
            maximum: limit.maximum,
        };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, raised).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let (tls_section, client_tls) = tls_setup(dir.path());
    let limits = format!(
        "connect_timeout = \"2s\"\nmax_pending_per_ip = 1000\nmax_pending = 1000\n{tls_section}"
    );
    let server = with_limits(dir.path(), &limits).await;
    let (mqtt, mqtts) = (server.mqtt_addr(), server.mqtts_addr().unwrap());
    let baseline = open_fds();

    // 250 plain and 250 TLS connections that open and send nothing; 10 more that finish
    // the TLS handshake and then stay silent, and 10 that send 5 bytes of a CONNECT.
    let mut silent = Vec::new();
    for i in 0..500 {
        let addr = if i % 2 == 0 { mqtt } else { mqtts };
        silent.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            closed_within(&mut s, 20).await
        }));
    }
    for _ in 0..10 {
        let tls = tokio_rustls::TlsConnector::from(client_tls.clone());
        silent.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(mqtts).await.unwrap();
            let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
            let mut s = tls.connect(name, tcp).await.unwrap();
            closed_within(&mut s, 20).await
        }));
        silent.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(mqtt).await.unwrap();
            s.write_all(&[0x10, 0x20, 0x00, 0x04, b'M']).await.unwrap();
            closed_within(&mut s, 20).await
        }));
    }
    // Real sensors connect and deliver while the silent ones wait.
    let counts = "tellijn/v1/sensors/s1/counts";
    let s1 = Some(("s1", S1_SECRET));
    for seq in 1..=3 {
        assert!(
            mosquitto_pub(
                mqtt.port(),
                s1,
                "s1",
                counts,
                Payload::Text(&line_msg(seq, 1, 0))
            )
            .await,
            "a sensor could not deliver while silent connections were open"
        );
    }
    assert!(accepted(server.metrics_addr(), 3.0).await);

    let mut closed = 0;
    for t in silent {
        closed += usize::from(t.await.unwrap());
    }
    assert_eq!(closed, 520, "silent connections were left open");
    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(refused(&m, "connect_timeout"), 520.0, "{m}");
    // Every descriptor of theirs is back (the test's own sockets are gone too).
    assert!(
        wait_for(10, || async { open_fds() <= baseline + 2 }).await,
        "open fds: {} at the start, {} now",
        baseline,
        open_fds()
    );
    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_pending_place() {
    let dir = tempfile::tempdir().unwrap();
    let server = with_limits(dir.path(), "max_pending_per_ip = 5\n").await;
    let mqtt = server.mqtt_addr();
    let from = |ip: [u8; 4]| async move {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::from((ip, 0))).unwrap();
        socket.connect(mqtt).await.unwrap()
    };
    // Five silent connections from 127.0.0.2 are held; the next five are closed at once.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(from([127, 0, 0, 2]).await);
    }
    for _ in 0..5 {
        let mut s = from([127, 0, 0, 2]).await;
        assert!(closed_within(&mut s, 5).await);
    }
    // Another address still gets in and logs in.
    let mut s = from([127, 0, 0, 3]).await;
    s.write_all(&connect(b"s1", Some(("s1", S1_SECRET))))
        .await
        .unwrap();
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).await.unwrap();
    assert_eq!(ack, [0x20, 0x02, 0x00, 0x00]);
    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(refused(&m, "pending_limit"), 5.0, "{m}");
    drop(held);
    server.stop().await.unwrap();
}

/// The broker sees each client's own address, not a relay's: failed logins from three loopback
/// addresses are audited as three sources (with one address they would be one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_traced_to_the_clients_own_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let mqtt = server.mqtt_addr();
    for last in [2u8, 3, 4] {
        let socket = TcpSocket::new_v4().unwrap();
        socket
            .bind(SocketAddr::from(([127, 0, 0, last], 0)))
            .unwrap();
        let mut s = socket.connect(mqtt).await.unwrap();
        s.write_all(&connect(b"nobody", Some(("nobody", "guess"))))
            .await
            .unwrap();
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).await.unwrap();
        assert_eq!(&ack[..3], &[0x20, 0x02, 0x00], "a CONNACK");
        assert_ne!(ack[3], 0, "an unknown user was let in");
    }
    server.stop().await.unwrap();
    let lines = audit_lines(dir.path());
    let line = lines
        .iter()
        .find(|l| l["event"] == "refusals" && l["reason"] == "unknown_user")
        .unwrap_or_else(|| panic!("no refusals line for unknown_user in {lines:?}"));
    assert_eq!(line["count"], 3, "{line}");
    assert_eq!(line["sources"], 3, "{line}");
}

/// One MQTT packet as a client sent it: (type, flags, body).
fn split_packets(mut bytes: &[u8]) -> Vec<(u8, u8, Vec<u8>)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        let first = bytes[0];
        let (mut len, mut i, mut shift) = (0usize, 1usize, 0);
        loop {
            let b = bytes[i];
            len |= usize::from(b & 0x7f) << shift;
            i += 1;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
        out.push((first >> 4, first & 0x0f, bytes[i..i + len].to_vec()));
        bytes = &bytes[i + len..];
    }
    out
}

fn take_string(b: &[u8]) -> (String, &[u8]) {
    let n = usize::from(u16::from_be_bytes([b[0], b[1]]));
    (
        String::from_utf8(b[2..2 + n].to_vec()).unwrap(),
        &b[2 + n..],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_wire_an_agent_sends_only_its_own_counts_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let broker = server.mqtt_addr();

    // A recording relay between the agent and the broker: every byte the agent sends.
    let relay = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let relay_addr = relay.local_addr().unwrap();
    let sent = Arc::new(Mutex::new(Vec::<u8>::new()));
    let record = sent.clone();
    tokio::spawn(async move {
        let (mut agent_side, _) = relay.accept().await.unwrap();
        let mut broker_side = TcpStream::connect(broker).await.unwrap();
        let (mut ar, mut aw) = agent_side.split();
        let (mut br, mut bw) = broker_side.split();
        let up = async {
            let mut buf = [0u8; 4096];
            loop {
                let n = ar.read(&mut buf).await.unwrap_or(0);
                if n == 0 {
                    let _ = bw.shutdown().await;
                    return;
                }
                record.lock().unwrap().extend_from_slice(&buf[..n]);
                if bw.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        };
        let down = tokio::io::copy(&mut br, &mut aw);
        let _ = tokio::join!(up, down);
    });

    let cfg = agent_config(
        &dir.path().join("agent"),
        &format!("mqtt://{relay_addr}"),
        20,
    );
    let (stop_tx, stop) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(async move {
        let stop = async move {
            let _ = stop.await;
        };
        tellijn_agent::run(&cfg, S1_SECRET, tellijn_wire::Clock::system(), stop).await
    });
    let http = server.metrics_addr();
    assert!(
        wait_for(30, || async {
            metric(
                &http_get(http, "/metrics").await,
                "tellijn_messages_total{outcome=\"accepted\"}",
            ) >= 20.0
        })
        .await,
        "the agent delivered nothing through the relay"
    );
    stop_tx.send(()).unwrap();
    agent.await.unwrap().unwrap();

    let bytes = sent.lock().unwrap().clone();
    let packets = split_packets(&bytes);
    let directory = tellijn_broker::Policy::new(&campus(dir.path()));
    let mut topics = std::collections::BTreeMap::<String, usize>::new();
    for (kind, flags, body) in &packets {
        match kind {
            1 => {
                // CONNECT: client id s1, will (if any) on its own status topic.
                let (name, rest) = take_string(body);
                assert_eq!(name, "MQTT");
                let connect_flags = rest[1];
                let (client_id, mut rest) = take_string(&rest[4..]);
                assert_eq!(client_id, "s1");
                if connect_flags & 0x04 != 0 {
                    let (will_topic, r) = take_string(rest);
                    assert_eq!(will_topic, "tellijn/v1/sensors/s1/status");
                    rest = r;
                }
                let _ = rest;
            }
            3 => {
                let (topic, rest) = take_string(body);
                let payload = if (flags >> 1) & 0x03 > 0 {
                    &rest[2..]
                } else {
                    rest
                };
                *topics.entry(topic.clone()).or_default() += 1;
                match topic.as_str() {
                    "tellijn/v1/sensors/s1/counts" => {
                        let now = chrono::Utc::now();
                        tellijn_wire::CountMessage::check(payload, "s1", &directory, now)
                            .unwrap_or_else(|e| panic!("invalid count on the wire: {e:?}"));
                    }
                    "tellijn/v1/sensors/s1/status" => {
                        tellijn_wire::StatusMessage::parse(payload)
                            .unwrap_or_else(|e| panic!("invalid status on the wire: {e:?}"));
                    }
                    other => panic!("the agent published to {other}"),
                }
            }
            8 => {
                // SUBSCRIBE: only its own ack.
                let mut rest = &body[2..];
                while !rest.is_empty() {
                    let (filter, r) = take_string(rest);
                    assert_eq!(filter, "tellijn/v1/sensors/s1/ack");
                    rest = &r[1..];
                }
            }
            // PUBACK, PUBREC/PUBREL/PUBCOMP, UNSUBSCRIBE, PINGREQ, DISCONNECT: no data.
            4..=7 | 10 | 12 | 14 => {}
            other => panic!("unexpected packet type {other} from the agent"),
        }
    }
    assert!(topics["tellijn/v1/sensors/s1/counts"] >= 20, "{topics:?}");
    assert!(
        topics.contains_key("tellijn/v1/sensors/s1/status"),
        "{topics:?}"
    );
    server.stop().await.unwrap();
}
