//! The privacy gate, end to end: a real server on loopback, Debian's `mosquitto_pub` as the
//! third-party publisher and rumqttc as a subscriber.

use crate::common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
use tellijn_queries::{Format, History};

type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

/// An anonymous subscriber that first tries `#` and then the public tree `tellijn/v1/public/#`.
async fn watcher(port: u16) -> (Seen, Arc<Mutex<Vec<SubscribeReasonCode>>>) {
    let mut opts = MqttOptions::new("watcher", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(opts, 64);
    let seen: Seen = Arc::default();
    let acks = Arc::new(Mutex::new(Vec::new()));
    let (s, a) = (seen.clone(), acks.clone());
    tokio::spawn(async move {
        while let Ok(ev) = events.poll().await {
            match ev {
                Event::Incoming(Packet::Publish(p)) => s
                    .lock()
                    .unwrap()
                    .push((p.topic.clone(), p.payload.to_vec())),
                Event::Incoming(Packet::SubAck(ack)) => a.lock().unwrap().extend(ack.return_codes),
                _ => {}
            }
        }
    });
    client.subscribe("#", QoS::AtLeastOnce).await.unwrap();
    client
        .subscribe("tellijn/v1/public/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    // Keep the client alive for the test's duration.
    std::mem::forget(client);
    (seen, acks)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_refuses_everything_but_valid_counts_and_stores_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let port = server.mqtt_addr().port();
    let (seen, acks) = watcher(port).await;
    assert!(
        wait_for(10, || async { acks.lock().unwrap().len() == 2 }).await,
        "no SUBACKs"
    );
    assert_eq!(
        *acks.lock().unwrap(),
        [
            SubscribeReasonCode::Failure,
            SubscribeReasonCode::Success(QoS::AtLeastOnce)
        ],
        "an anonymous client may not subscribe to #, only to the public tree"
    );

    let s1 = Some(("s1", S1_SECRET));
    let counts = "tellijn/v1/sensors/s1/counts";
    // A valid message is accepted and moves the room.
    assert!(mosquitto_pub(port, s1, "s1", counts, Payload::Text(&line_msg(1, 3, 1))).await);
    let metrics = server.metrics_addr();
    let occupancy_is_2 = || async {
        metric(
            &http_get(metrics, "/metrics").await,
            "tellijn_room_occupancy{room=\"r1\",building=\"b\"}",
        ) == 2.0
    };
    assert!(wait_for(10, occupancy_is_2).await, "the room did not move");
    // The public tree shows the public room, its 2 people as a band.
    let banded = || async {
        seen.lock().unwrap().iter().any(|(t, p)| {
            t == "tellijn/v1/public/rooms/r1"
                && serde_json::from_slice::<serde_json::Value>(p)
                    .is_ok_and(|v| v["occupancy"].is_null() && v["fewer_than"] == 5)
        })
    };
    assert!(
        wait_for(10, banded).await,
        "the public room was not published"
    );

    // The same message twice is stored once.
    let twice = line_msg(2, 1, 0);
    assert!(mosquitto_pub(port, s1, "s1", counts, Payload::Text(&twice)).await);
    assert!(mosquitto_pub(port, s1, "s1", counts, Payload::Text(&twice)).await);

    // Refused publishes, each for its reason.
    let blob = dir.path().join("image.jpg");
    let mut jpeg = vec![0xff, 0xd8, 0xff, 0xe0];
    jpeg.extend((0..2_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    std::fs::write(&blob, &jpeg).unwrap();
    // A whole photo is larger than any MQTT packet the broker takes (4 KiB): the codec
    // closes the connection before the gate, counted as a protocol error.
    let photo = dir.path().join("photo.jpg");
    let mut big = jpeg.clone();
    big.resize(100_000, 0x5a);
    std::fs::write(&photo, &big).unwrap();
    let other_sensor = line_msg(3, 1, 0).replace("\"s1\"", "\"s2\"");
    mosquitto_pub(port, s1, "s1", counts, Payload::Text("hello-garbage")).await;
    mosquitto_pub(port, s1, "s1", counts, Payload::File(&blob)).await;
    mosquitto_pub(port, s1, "s1", counts, Payload::File(&photo)).await;
    mosquitto_pub(port, s1, "s1", counts, Payload::Text(&other_sensor)).await;
    mosquitto_pub(
        port,
        s1,
        "s1",
        "tellijn/v1/sensors/s2/counts",
        Payload::Text(&line_msg(4, 1, 0)),
    )
    .await;
    mosquitto_pub(
        port,
        s1,
        "s1",
        "tellijn/v1/rooms/r1/state",
        Payload::Text("\"FORGED\""),
    )
    .await;
    mosquitto_pub(
        port,
        None,
        "anon",
        "tellijn/v1/rooms/r1/state",
        Payload::Text("\"FORGED\""),
    )
    .await;

    // Refused connections.
    assert!(
        !mosquitto_pub(
            port,
            Some(("s1", "wrong")),
            "s1",
            counts,
            Payload::Text(&line_msg(5, 1, 0))
        )
        .await
    );
    assert!(
        !mosquitto_pub(
            port,
            Some(("ghost", "x")),
            "ghost",
            counts,
            Payload::Text(&line_msg(5, 1, 0))
        )
        .await
    );
    assert!(
        !mosquitto_pub(
            port,
            Some(("s2", S2_SECRET)),
            "s1",
            counts,
            Payload::Text(&line_msg(5, 1, 0))
        )
        .await
    );

    let http = server.metrics_addr();
    let metrics_ok = || async {
        let m = http_get(http, "/metrics").await;
        metric(
            &m,
            "tellijn_auth_failures_total{reason=\"client_id_mismatch\"}",
        ) == 1.0
            && metric(&m, "tellijn_rejected_messages_total{reason=\"bad_topic\"}") == 3.0
    };
    assert!(
        wait_for(10, metrics_ok).await,
        "{}",
        http_get(http, "/metrics").await
    );
    let m = http_get(http, "/metrics").await;
    for (series, want) in [
        ("tellijn_rejected_messages_total{reason=\"not_json\"}", 1.0),
        ("tellijn_rejected_messages_total{reason=\"too_large\"}", 1.0),
        (
            "tellijn_rejected_messages_total{reason=\"sensor_mismatch\"}",
            1.0,
        ),
        ("tellijn_rejected_messages_total{reason=\"bad_topic\"}", 3.0),
        ("tellijn_messages_total{outcome=\"rejected\"}", 6.0),
        ("tellijn_messages_total{outcome=\"accepted\"}", 2.0),
        ("tellijn_messages_total{outcome=\"duplicate\"}", 1.0),
        ("tellijn_auth_failures_total{reason=\"bad_secret\"}", 1.0),
        (
            "tellijn_mqtt_refused_connections_total{reason=\"protocol_error\"}",
            1.0,
        ),
        ("tellijn_auth_failures_total{reason=\"unknown_user\"}", 1.0),
        ("tellijn_room_occupancy{room=\"r1\",building=\"b\"}", 3.0),
    ] {
        assert_eq!(metric(&m, series), want, "{series}\n{m}");
    }

    // Nothing refused reached the subscriber; nothing but the public tree did.
    {
        let seen = seen.lock().unwrap();
        assert!(
            seen.iter()
                .all(|(t, _)| t.starts_with("tellijn/v1/public/")),
            "{seen:?}"
        );
        assert!(
            !seen
                .iter()
                .any(|(_, p)| p.windows(6).any(|w| w == b"FORGED")),
            "a forged state was delivered"
        );
    }

    // Every refusal is audited, without the payload: the logged-in sensor's one line each,
    // those of clients that had not authenticated aggregated per reason and minute.
    server.flush_refusals();
    let audit = audit_lines(dir.path());
    let reasons: Vec<&str> = audit
        .iter()
        .filter(|l| l["event"] == "publish_refused")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    for r in ["not_json", "too_large", "sensor_mismatch", "bad_topic"] {
        assert!(reasons.contains(&r), "{r} not audited: {audit:?}");
    }
    let blob_line = audit.iter().find(|l| l["reason"] == "too_large").unwrap();
    assert_eq!(blob_line["payload_bytes"], jpeg.len());
    let aggregated = |refused: &str| -> u64 {
        audit
            .iter()
            .filter(|l| l["event"] == "refusals" && l["refused"] == refused)
            .map(|l| l["count"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(aggregated("auth_failure"), 3, "{audit:?}");
    assert_eq!(aggregated("subscribe_refused"), 1, "{audit:?}");
    assert!(audit.iter().any(|l| l["event"] == "refusals"
        && l["refused"] == "subscribe_refused"
        && l["example"]["topic"] == "#"));
    // The anonymous client's forged publish is aggregated too.
    assert_eq!(aggregated("publish_refused"), 1, "{audit:?}");
    let raw = serde_json::to_string(&audit).unwrap();
    assert!(
        !raw.contains("hello-garbage") && !raw.contains("FORGED"),
        "a payload leaked into the audit log"
    );

    // After the flush, SQL holds each accepted message once.
    server.stop().await.unwrap();
    let h = History::open(dir.path(), None).await.unwrap();
    let csv = h
        .query(
            "SELECT seq, people_in, people_out FROM counts ORDER BY seq",
            Format::Csv,
        )
        .await
        .unwrap();
    assert_eq!(csv, "seq,people_in,people_out\n1,3,1\n2,1,0\n");

    // The refusals above form an intact hash chain; `tellijn audit verify` says so, and names
    // the line once one is changed.
    let verify = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
            .args(["audit", "verify", "--data"])
            .arg(dir.path())
            .output()
            .unwrap()
    };
    let out = verify();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && stdout.starts_with("OK"), "{stdout}");
    let file = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replacen("publish_refused", "publish_allowed", 1),
    )
    .unwrap();
    let out = verify();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a changed line passed");
    assert!(
        stderr.starts_with("BROKEN: ") && stderr.contains(".jsonl:") && stderr.contains("changed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn last_will_on_a_foreign_topic_refuses_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let port = server.mqtt_addr().port();
    let out = tokio::process::Command::new("mosquitto_pub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-i",
            "s1",
            "-u",
            "s1",
            "-P",
            S1_SECRET,
            "-q",
            "1",
        ])
        .args([
            "--will-topic",
            "tellijn/v1/rooms/r1/state",
            "--will-payload",
            "\"FORGED\"",
            "--will-retain",
        ])
        .args([
            "-t",
            "tellijn/v1/sensors/s1/counts",
            "-m",
            &line_msg(1, 1, 0),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        !out.status.success(),
        "a CONNECT with a forged will was accepted"
    );
    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(
        metric(&m, "tellijn_auth_failures_total{reason=\"bad_will\"}"),
        1.0
    );
    server.stop().await.unwrap();
}
