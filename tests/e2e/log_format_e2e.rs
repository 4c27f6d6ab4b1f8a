//! `tellijn serve --log-format json`: every line on stderr is one JSON object an operator can
//! ship to Loki or ELK, the listening addresses can be read from it, and nothing an attacker
//! sends — a wrong MQTT secret, a bad payload, a wrong SQL password — appears in any line.

use crate::common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};

const STEWARD: (&str, &str) = ("ada", "ada-steward-pw");
const MARKERS: [&str; 3] = [
    "WRONG-MQTT-SECRET-4f1c",
    "PAYLOAD-MARKER-9b2e",
    "WRONG-SQL-PASSWORD-77aa",
];

/// The address in a "… listening on ADDR." message.
fn listening(message: &str, what: &str) -> Option<std::net::SocketAddr> {
    let rest = message.strip_prefix(what)?.strip_prefix(" listening on ")?;
    let rest = rest.strip_prefix("http://").unwrap_or(rest);
    rest.trim_end_matches('.')
        .trim_end_matches("/metrics")
        .trim_end_matches('/')
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_are_one_object_per_line_and_carry_nothing_sent() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("campus.toml");
    std::fs::write(
        &config,
        format!(
            "{}\n[[users]]\nname = \"{}\"\npassword_hash = \"{}\"\nrole = \"steward\"\n",
            campus_text(&data, "200ms", ""),
            STEWARD.0,
            tellijn::secrets::hash_demo(STEWARD.1).unwrap()
        ),
    )
    .unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["serve", "--config"])
        .arg(&config)
        .args([
            "--mqtt",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
            "--postgres",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .env(
            "RUST_LOG",
            "debug,rmqtt=info,datafusion=info,h2=info,hyper=info",
        )
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stderr.take().unwrap()).lines();
    let mut seen: Vec<String> = Vec::new();
    let (mut mqtt, mut pg) = (None, None);
    while mqtt.is_none() || pg.is_none() {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the server logged no listening addresses within 60 s")
            .unwrap()
            .expect("the server ended before it listened");
        let v: Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        let message = v["fields"]["message"].as_str().unwrap_or_default();
        mqtt = mqtt.or(listening(message, "MQTT broker"));
        pg = pg.or(listening(message, "PostgreSQL"));
        seen.push(line);
    }
    let (mqtt, pg) = (mqtt.unwrap(), pg.unwrap());
    let rest = tokio::spawn(async move {
        let mut out = Vec::new();
        while let Ok(Some(l)) = lines.next_line().await {
            out.push(l);
        }
        out
    });

    // What an attacker sends, each with a marker.
    let topic = "tellijn/v1/sensors/s1/counts";
    assert!(
        !mosquitto_pub(
            mqtt.port(),
            Some(("s1", MARKERS[0])),
            "s1",
            topic,
            Payload::Text(&line_msg(1, 1, 0))
        )
        .await
    );
    let bad = format!(r#"{{"v":1,"sensor":"s1","line":"{}","seq":2}}"#, MARKERS[1]);
    mosquitto_pub(
        mqtt.port(),
        Some(("s1", S1_SECRET)),
        "s1",
        topic,
        Payload::Text(&bad),
    )
    .await;
    let r = psql(pg, (STEWARD.0, MARKERS[2]), "SELECT 1").await;
    assert!(!r.ok);
    // A good count too, so the normal path logs as well.
    assert!(
        mosquitto_pub(
            mqtt.port(),
            Some(("s1", S1_SECRET)),
            "s1",
            topic,
            Payload::Text(&line_msg(3, 1, 0))
        )
        .await
    );
    // The bad payload is audited (so it has been handled) before the server stops; the logins
    // were refused before the clients returned.
    let refused = wait_for(30, || {
        let data = data.clone();
        async move {
            audit_lines(&data)
                .iter()
                .any(|l| l["event"] == "publish_refused")
        }
    })
    .await;
    let pid = server.id().unwrap().to_string();
    let _ = std::process::Command::new("kill")
        .args(["-INT", &pid])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(60), server.wait())
        .await
        .expect("the server did not stop within 60 s of SIGINT")
        .unwrap();
    seen.extend(rest.await.unwrap());
    assert!(status.success(), "the server's exit: {status}");
    assert!(
        refused,
        "the refusals were not audited: {:?}",
        audit_lines(&data)
    );

    let mut levels = std::collections::BTreeSet::new();
    for line in &seen {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(v[key].is_string(), "no {key} in {line}");
        }
        assert!(v["fields"].is_object(), "no fields in {line}");
        levels.insert(v["level"].as_str().unwrap_or_default().to_owned());
        for m in MARKERS.iter().chain([&S1_SECRET, &STEWARD.1]) {
            assert!(!line.contains(m), "a log line carries {m}: {line}");
        }
    }
    eprintln!("log lines: {}, levels {levels:?}", seen.len());
    assert!(levels.contains("INFO"), "{levels:?}");
    assert!(seen.len() > 5, "too few lines to judge: {seen:?}");
}
