//! Nothing lost, nothing counted twice: broker outages, `kill -9` of the agent and of the
//! server, with the real server on loopback and the real agent (library and binary).

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use rand::Rng;
use tellijn_agent::outbox::Outbox;
use tellijn_wire::Clock;
use tokio::sync::watch;

fn stop_signal(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_then_every_message_arrives_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = campus_text(&data, "100ms", "");
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let addr = server.mqtt_addr();
    let cfg = agent_config(&dir.path().join("agent"), &format!("mqtt://{addr}"), 20);
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = {
        let cfg = cfg.clone();
        let stop = stop_signal(&stop_rx);
        tokio::spawn(
            async move { tellijn_agent::run(&cfg, S1_SECRET, Clock::system(), stop).await },
        )
    };
    let http = server.metrics_addr();
    let accepted = |n: f64| async move {
        metric(
            &http_get(http, "/metrics").await,
            "tellijn_messages_total{outcome=\"accepted\"}",
        ) >= n
    };
    assert!(
        wait_for(20, || accepted(10.0)).await,
        "the agent never got through"
    );

    // The broker goes away; the agent keeps counting into its outbox.
    server.stop().await.unwrap();
    let outbox = cfg.outbox.clone();
    let grows = || {
        let outbox = outbox.clone();
        async move { Outbox::peek(&outbox).map(|(next, _)| next).unwrap_or(0) > 0 }
    };
    assert!(wait_for(5, grows).await);
    let before = Outbox::peek(&cfg.outbox).unwrap().0;
    let more = || {
        let outbox = outbox.clone();
        async move { Outbox::peek(&outbox).unwrap().0 > before + 20 }
    };
    assert!(
        wait_for(10, more).await,
        "the agent stopped counting while the broker was down"
    );

    // The broker comes back on the same address; the agent resends from the watermark.
    let server = start_text(&data, &text, &addr.to_string()).await;
    let http = server.metrics_addr();
    let caught_up = || async move {
        let m = http_get(http, "/metrics").await;
        metric(&m, "tellijn_messages_total{outcome=\"accepted\"}") > 10.0
    };
    assert!(wait_for(40, caught_up).await, "the agent did not reconnect");
    let _ = stop_tx.send(true);
    let totals = agent.await.unwrap().unwrap();
    assert_eq!(
        totals.unacked, 0,
        "the server did not acknowledge everything"
    );
    // Regression: the agent's own status must pass the gate (an unknown status field once
    // made the broker disconnect it on every connect).
    let m = http_get(http, "/metrics").await;
    assert_eq!(
        metric(&m, "tellijn_messages_total{outcome=\"rejected\"}"),
        0.0,
        "{m}"
    );
    let offline = || async move {
        metric(
            &http_get(http, "/metrics").await,
            "tellijn_sensor_online{sensor=\"s1\"}",
        ) == 0.0
    };
    assert!(
        wait_for(10, offline).await,
        "the sensor still shows online after it disconnected"
    );
    server.stop().await.unwrap();
    assert!(
        !audit_lines(&data)
            .iter()
            .any(|l| l["event"] == "publish_refused")
    );

    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert_eq!(rows, totals.messages, "lost or doubled messages");
    assert_eq!(distinct, rows);
    assert_eq!(max, totals.messages);
    assert_eq!((sum_in, sum_out), (totals.people_in, totals.people_out));
    assert_eq!((sum_in, sum_out), truth(max));
}

/// Regression (issue 17, finding 1): an agent sent 20 crossings (acked), its outbox was replaced
/// by an empty one (new SD card, reinstall), and everything it counted afterwards was dropped
/// by the server as duplicates of the old run's seqs — and acknowledged, so the agent deleted
/// it. Now the fresh outbox continues above the server's watermark and both runs are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_outbox_loses_nothing_counted_afterwards() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_text(&data, &campus_text(&data, "100ms", ""), "127.0.0.1:0").await;
    let cfg = agent_config(
        &dir.path().join("agent"),
        &format!("mqtt://{}", server.mqtt_addr()),
        20,
    );
    let run_until_acked = |at_least: u64| {
        let cfg = cfg.clone();
        async move {
            let (stop_tx, stop_rx) = watch::channel(false);
            let stop = stop_signal(&stop_rx);
            let agent = {
                let cfg = cfg.clone();
                tokio::spawn(async move {
                    tellijn_agent::run(&cfg, S1_SECRET, Clock::system(), stop).await
                })
            };
            let outbox = cfg.outbox.clone();
            let acked = || {
                let outbox = outbox.clone();
                async move { Outbox::peek(&outbox).is_ok_and(|(_, acked)| acked >= at_least) }
            };
            assert!(
                wait_for(30, acked).await,
                "never acknowledged up to {at_least}"
            );
            let _ = stop_tx.send(true);
            let totals = agent.await.unwrap().unwrap();
            assert_eq!(totals.unacked, 0, "{totals:?}");
            totals
        }
    };
    let first = run_until_acked(20).await;
    // A new SD card: the outbox directory is empty again.
    std::fs::remove_dir_all(&cfg.outbox).unwrap();
    std::fs::create_dir_all(&cfg.outbox).unwrap();
    let second = run_until_acked(first.messages + 7).await;
    server.stop().await.unwrap();
    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert_eq!(
        rows,
        first.messages + second.messages,
        "the second run was dropped: {first:?} {second:?}"
    );
    assert_eq!((distinct, max), (rows, rows));
    assert_eq!(
        (sum_in, sum_out),
        (
            first.people_in + second.people_in,
            first.people_out + second.people_out
        )
    );
}

fn spawn_agent(dir: &std::path::Path) -> Child {
    Command::new(agent_bin())
        .args(["--config", dir.join("agent.toml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tellijn-agent")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_killed_at_random_points_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_text(&data, &campus_text(&data, "100ms", ""), "127.0.0.1:0").await;
    let agent_dir = dir.path().join("agent");
    agent_config(&agent_dir, &format!("mqtt://{}", server.mqtt_addr()), 10);
    let mut rng = rand::rng();
    for _ in 0..6 {
        let mut child = spawn_agent(&agent_dir);
        // The kill lands at a random point: mid-append, mid-publish, mid-ack.
        tokio::time::sleep(Duration::from_millis(rng.random_range(150..700))).await;
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // A last, graceful run drains the outbox.
    let mut child = spawn_agent(&agent_dir);
    let pid = child.id().to_string();
    // Stopped once it is connected (its log says so), not after a guessed pause.
    let (line_tx, line_rx) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().expect("piped stderr");
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = line_tx.send(line);
        }
    });
    let mut log = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !log.contains("Connected to the broker") {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match line_rx.recv_timeout(left) {
            Ok(l) => {
                log.push_str(&l);
                log.push('\n');
            }
            Err(_) => panic!("the agent never connected: {log}"),
        }
    }
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = child.wait().unwrap();
    reader.join().unwrap();
    log.extend(line_rx.try_iter().map(|l| l + "\n"));
    assert!(status.success(), "{log}");
    let ob = Outbox::open(&agent_dir.join("outbox"), 100 << 20).unwrap();
    assert_eq!(ob.depth(), 0, "the outbox was not drained: {log}");
    let n = ob.next_seq() - 1;
    assert!(n > 20, "too few messages to mean anything: {n}");
    server.stop().await.unwrap();

    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert_eq!(
        (rows, distinct, max),
        (n, n, n),
        "every seq 1..={n} exactly once"
    );
    assert_eq!(
        (sum_in, sum_out),
        truth(n),
        "stored counts differ from what the agent counted"
    );
}

/// `tellijn serve` on these ports (MQTT, HTTP, metrics).
fn spawn_server(config: &std::path::Path, mqtt: u16, http: u16, metrics: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args([
            "--mqtt",
            &format!("127.0.0.1:{mqtt}"),
            "--http",
            &format!("127.0.0.1:{http}"),
            "--metrics",
            &format!("127.0.0.1:{metrics}"),
            "--postgres",
            "127.0.0.1:0",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tellijn serve")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_between_receipt_and_flush_recovers_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("campus.toml");
    // First life: nothing is flushed before the kill.
    std::fs::write(&config, campus_text(&data, "1h", "")).unwrap();
    let (mqtt, http, metrics) = (free_port(), free_port(), free_port());
    let mut server = spawn_server(&config, mqtt, http, metrics);
    let metrics_addr: std::net::SocketAddr = format!("127.0.0.1:{metrics}").parse().unwrap();
    let up = || async move { tokio::net::TcpStream::connect(metrics_addr).await.is_ok() };
    assert!(wait_for(20, up).await, "the server did not start");

    let cfg = agent_config(
        &dir.path().join("agent"),
        &format!("mqtt://127.0.0.1:{mqtt}"),
        20,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = {
        let cfg = cfg.clone();
        let stop = stop_signal(&stop_rx);
        tokio::spawn(
            async move { tellijn_agent::run(&cfg, S1_SECRET, Clock::system(), stop).await },
        )
    };
    let received = || async move {
        metric(
            &http_get(metrics_addr, "/metrics").await,
            "tellijn_messages_total{outcome=\"accepted\"}",
        ) >= 30.0
    };
    assert!(wait_for(20, received).await);
    server.kill().unwrap(); // SIGKILL: received, acknowledged by PUBACK, never flushed
    server.wait().unwrap();
    assert_eq!(
        stored(&data).await.0,
        0,
        "nothing should have been flushed yet"
    );

    // Second life, flushing quickly; the agent resends what was never acked.
    std::fs::write(&config, campus_text(&data, "100ms", "")).unwrap();
    let mut server = spawn_server(&config, mqtt, http, metrics);
    assert!(wait_for(20, up).await, "the server did not restart");
    let acked = || {
        let outbox = cfg.outbox.clone();
        async move { Outbox::peek(&outbox).is_ok_and(|(_, acked)| acked > 40) }
    };
    assert!(
        wait_for(40, acked).await,
        "the agent's outbox was never acknowledged"
    );
    let _ = stop_tx.send(true);
    let totals = agent.await.unwrap().unwrap();
    assert_eq!(totals.unacked, 0);
    assert!(
        Command::new("kill")
            .args(["-TERM", &server.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(server.wait().unwrap().success());

    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert_eq!(
        (rows, distinct, max),
        (totals.messages, totals.messages, totals.messages)
    );
    assert_eq!((sum_in, sum_out), (totals.people_in, totals.people_out));
}
