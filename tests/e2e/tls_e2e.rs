//! MQTT over TLS with certificates made in the test (rcgen): a good chain works end to end;
//! a wrong CA and an expired client certificate are refused, with a clear error on both the
//! agent's and the server's side.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, name);
    let pem = p.self_signed(&key).unwrap().pem();
    Ca {
        issuer: Issuer::new(p, key),
        pem,
    }
}

/// A leaf certificate and key signed by `ca`, optionally long expired.
fn leaf(ca: &Ca, names: &[&str], expired: bool) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    if expired {
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2021, 1, 1);
    }
    (
        p.signed_by(&key, &ca.issuer).unwrap().pem(),
        key.serialize_pem(),
    )
}

/// Collects a child's stderr lines on a channel.
fn lines(child: &mut Child) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    let err = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    rx
}

/// Waits (up to 20 s) for a line containing every needle; returns it.
fn expect_line(rx: &mpsc::Receiver<String>, needles: &[&str], what: &str) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(l) if needles.iter().all(|n| l.contains(n)) => return l,
            Ok(l) => seen.push(l),
            Err(_) => break,
        }
    }
    panic!("{what}: no line with {needles:?} in:\n{}", seen.join("\n"));
}

struct Setup {
    dir: tempfile::TempDir,
    server: Child,
    server_log: mpsc::Receiver<String>,
    mqtt: u16,
    mqtts: u16,
    http: u16,
    metrics: u16,
}

fn start_server(ca: &Ca) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key) = leaf(ca, &["localhost", "127.0.0.1"], false);
    std::fs::write(d.join("server.pem"), cert).unwrap();
    std::fs::write(d.join("server.key"), key).unwrap();
    std::fs::write(d.join("ca.pem"), &ca.pem).unwrap();
    let data = d.join("data");
    let (mqtt, mqtts, http, metrics) = (free_port(), free_port(), free_port(), free_port());
    let text = format!(
        "{}\n[tls]\ncert = \"{}\"\nkey = \"{}\"\nclient_ca = \"{}\"\n",
        campus_text(&data, "100ms", &format!("mqtts = \"127.0.0.1:{mqtts}\"")),
        d.join("server.pem").display(),
        d.join("server.key").display(),
        d.join("ca.pem").display()
    );
    std::fs::write(d.join("campus.toml"), text).unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["serve", "--config", d.join("campus.toml").to_str().unwrap()])
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
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server_log = lines(&mut server);
    expect_line(&server_log, &["MQTT over TLS listening"], "server start");
    Setup {
        dir,
        server,
        server_log,
        mqtt,
        mqtts,
        http,
        metrics,
    }
}

fn agent(dir: &Path, mqtts: u16, ca_pem: &str, client: (String, String)) -> Child {
    let a = dir.join("agent");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("ca.pem"), ca_pem).unwrap();
    std::fs::write(a.join("client.pem"), client.0).unwrap();
    std::fs::write(a.join("client.key"), client.1).unwrap();
    std::fs::write(a.join("secret"), S1_SECRET).unwrap();
    std::fs::write(
        a.join("agent.toml"),
        format!(
            "sensor = \"s1\"\nbroker = \"mqtts://127.0.0.1:{mqtts}\"\nsecret_file = \"secret\"\nca = \"ca.pem\"\ncert = \"client.pem\"\nkey = \"client.key\"\noutbox = \"outbox\"\ninterval = \"50ms\"\n[source]\nkind = \"simulated\"\nseed = 42\n"
        ),
    )
    .unwrap();
    Command::new(agent_bin())
        .args(["--config", a.join("agent.toml").to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tellijn-agent is built by `cargo test --workspace`")
}

fn stop(mut c: Child) {
    let _ = c.kill();
    let _ = c.wait();
}

#[tokio::test]
async fn good_chain_delivers_counts_over_tls() {
    let ca = ca("Tellijn test CA");
    let s = start_server(&ca);
    let mut a = agent(s.dir.path(), s.mqtts, &ca.pem, leaf(&ca, &["s1"], false));
    let alog = lines(&mut a);
    expect_line(&alog, &["Connected to the broker"], "agent over TLS");
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", s.metrics).parse().unwrap();
    let accepted = || async move {
        metric(
            &http_get(http, "/metrics").await,
            "tellijn_messages_total{outcome=\"accepted\"}",
        ) >= 5.0
    };
    assert!(wait_for(20, accepted).await, "no counts arrived over TLS");
    stop(a);
    stop(s.server);
}

#[tokio::test]
async fn wrong_ca_is_refused_on_both_sides() {
    let ca_good = ca("Tellijn test CA");
    let ca_other = ca("Somebody else's CA");
    let s = start_server(&ca_good);
    // The agent trusts another CA: it must not talk to this server.
    let mut a = agent(
        s.dir.path(),
        s.mqtts,
        &ca_other.pem,
        leaf(&ca_good, &["s1"], false),
    );
    let alog = lines(&mut a);
    let line = expect_line(
        &alog,
        &["MQTT connection failed", "certificate"],
        "agent with a wrong CA",
    );
    assert!(
        line.contains("UnknownIssuer") || line.contains("issuer"),
        "{line}"
    );
    expect_line(
        &s.server_log,
        &["MQTT TLS handshake failed"],
        "server seeing the refused handshake",
    );
    // Regression (issue 17): the test never checked that nothing got through.
    let metrics: std::net::SocketAddr = format!("127.0.0.1:{}", s.metrics).parse().unwrap();
    let m = http_get(metrics, "/metrics").await;
    assert_eq!(
        metric(&m, "tellijn_messages_total{outcome=\"accepted\"}"),
        0.0,
        "a count got through a refused TLS handshake: {m}"
    );
    assert_eq!(
        metric(&m, "tellijn_sensor_online{sensor=\"s1\"}"),
        0.0,
        "{m}"
    );
    stop(a);
    stop(s.server);
}

#[tokio::test]
async fn expired_client_certificate_is_refused_on_both_sides() {
    let ca = ca("Tellijn test CA");
    let s = start_server(&ca);
    let mut a = agent(s.dir.path(), s.mqtts, &ca.pem, leaf(&ca, &["s1"], true));
    let alog = lines(&mut a);
    expect_line(
        &alog,
        &["MQTT connection failed"],
        "agent with an expired client certificate",
    );
    let server_line = expect_line(
        &s.server_log,
        &["MQTT TLS handshake failed"],
        "server refusing the expired certificate",
    );
    assert!(
        server_line.to_lowercase().contains("expired"),
        "{server_line}"
    );
    let http: std::net::SocketAddr = format!("127.0.0.1:{}", s.metrics).parse().unwrap();
    let m = http_get(http, "/metrics").await;
    assert_eq!(
        metric(&m, "tellijn_messages_total{outcome=\"accepted\"}"),
        0.0
    );
    stop(a);
    stop(s.server);
}

/// The TCP ports a process listens on: its socket descriptors matched against the kernel's
/// table of listening sockets (state 0A), IPv4 and IPv6.
fn listening_ports(pid: u32) -> Vec<u16> {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string())
        })
        .collect();
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() > 9 && f[3] == "0A" && inodes.contains(f[9]) {
                let port = f[1].rsplit(':').next().unwrap();
                ports.push(u16::from_str_radix(port, 16).unwrap());
            }
        }
    }
    ports.sort_unstable();
    ports
}

/// Nothing reaches the broker past the door: the server listens on its configured ports
/// (MQTT, MQTT over TLS, HTTP, metrics, PostgreSQL) and on nothing else. rmqtt runs each
/// session on the stream the door hands it; it has no listener of its own, not even on
/// loopback, where a local user could have reached it past the door's limits.
#[test]
fn the_server_listens_on_its_configured_ports_and_nothing_else() {
    let ca = ca("Tellijn test CA");
    let s = start_server(&ca);
    let pid = s.server.id();
    let wanted = [s.mqtt, s.mqtts, s.http, s.metrics];
    // PostgreSQL's port is ephemeral (`127.0.0.1:0`): one more, whatever its number.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut ports = listening_ports(pid);
    while !(wanted.iter().all(|p| ports.contains(p)) && ports.len() >= 5)
        && std::time::Instant::now() < deadline
    {
        // Polling the kernel's table until the last listener is bound, not waiting for it.
        std::thread::sleep(Duration::from_millis(20));
        ports = listening_ports(pid);
    }
    assert!(
        wanted.iter().all(|p| ports.contains(p)),
        "{ports:?} lacks one of {wanted:?}"
    );
    assert_eq!(
        ports.len(),
        5,
        "listening on {ports:?}; configured {wanted:?} and PostgreSQL"
    );
    stop(s.server);
}
