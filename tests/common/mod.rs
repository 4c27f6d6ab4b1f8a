//! Helpers for end-to-end tests: a real server on ephemeral loopback ports.

#![allow(dead_code)]

pub mod raw_mqtt;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub mod chromium;

use tellijn::server::{Server, ServerOptions};
use tellijn_config::Campus;
use tellijn_wire::Clock;

pub const S1_SECRET: &str = "s1-secret-0123";
pub const S2_SECRET: &str = "s2-secret-4567";

/// Two sensors: `s1` counts a door into room `r1`; `s2` an overhead zone of `r2`.
/// Anonymous clients may read the public tree.
pub fn campus(data: &Path) -> Campus {
    Campus::parse(&campus_text(data, "1h", ""), "test campus").unwrap()
}

/// The test campus as TOML, with a flush interval and extra `[server]` lines.
pub fn campus_text(data: &Path, flush: &str, server_extra: &str) -> String {
    let h = |s: &str| tellijn::secrets::hash_demo(s).unwrap();
    tellijn_test_support::CampusToml::new()
        .section(&format!(
            "[server]\ndata_dir = \"{}\"\nflush_interval = \"{flush}\"\nanonymous_read = [\"tellijn/v1/public/#\"]\n{server_extra}",
            data.display()
        ))
        .building("b", "Building")
        .room("r1", "b", "Room one", "study", 10)
        .with("public = true")
        .room("r2", "b", "Room two", "lecture-hall", 100)
        .line_sensor("s1", &h(S1_SECRET), &[("main", "r1", None)])
        .zone_sensor("s2", &h(S2_SECRET), &[("seats", "r2")])
        .toml()
}

/// Starts a server from campus text on the given MQTT address (port 0 for any).
pub async fn start_text(data: &Path, text: &str, mqtt: &str) -> Server {
    Server::start(ServerOptions {
        campus: Arc::new(Campus::parse(text, "test campus").unwrap()),
        mqtt: Some(mqtt.parse().unwrap()),
        mqtts: Some("127.0.0.1:0".parse().unwrap()),
        http: Some("127.0.0.1:0".parse().unwrap()),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        postgres: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.to_path_buf()),
        clock: Clock::system(),
        source: "test".into(),
    })
    .await
    .unwrap()
}

/// An agent config for `s1` against `broker`, simulated with a fixed seed.
pub fn agent_config(dir: &Path, broker: &str, interval_ms: u64) -> tellijn_agent::AgentConfig {
    let text = format!(
        "sensor = \"s1\"\nbroker = \"{broker}\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\ninterval = \"{interval_ms}ms\"\n[source]\nkind = \"simulated\"\nlines = [\"main\"]\nseed = 42\n"
    );
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("agent.toml"), text).unwrap();
    std::fs::write(dir.join("secret"), S1_SECRET).unwrap();
    tellijn_agent::AgentConfig::load(&dir.join("agent.toml")).unwrap()
}

/// The rows SQL answers over a data directory's history, as numbers.
pub async fn sql_numbers(data: &Path, sql: &str) -> Vec<Vec<i64>> {
    let h = tellijn_queries::History::open(data, None).await.unwrap();
    let csv = h.query(sql, tellijn_queries::Format::Csv).await.unwrap();
    csv.lines()
        .skip(1)
        .map(|l| l.split(',').map(|x| x.parse().unwrap()).collect())
        .collect()
}

/// What SQL holds for `s1`: (rows, distinct seqs, max seq, sum in, sum out).
pub async fn stored(data: &Path) -> (u64, u64, u64, u64, u64) {
    let rows = sql_numbers(
        data,
        "SELECT count(*), count(DISTINCT seq), coalesce(max(seq), 0), coalesce(sum(people_in), 0), coalesce(sum(people_out), 0) FROM counts WHERE sensor = 's1'",
    )
    .await;
    let v: Vec<u64> = rows[0].iter().map(|&x| x as u64).collect();
    (v[0], v[1], v[2], v[3], v[4])
}

/// The simulated truth for seqs 1..=n of line 0 with seed 42: (sum in, sum out).
pub fn truth(n: u64) -> (u64, u64) {
    (1..=n).fold((0, 0), |(i, o), s| {
        let (a, b) = tellijn_agent::source::simulated_line(42, 0, s);
        (i + a as u64, o + b as u64)
    })
}

/// Starts a server with the common campus, every listener on an ephemeral loopback port.
pub async fn start(data: &Path) -> Server {
    start_text(data, &campus_text(data, "1h", ""), "127.0.0.1:0").await
}

/// A valid line message from `s1` with this seq, timed now.
pub fn line_msg(seq: u64, people_in: u32, people_out: u32) -> String {
    let end = chrono::Utc::now();
    let start = end - chrono::TimeDelta::seconds(1);
    let f = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    format!(
        r#"{{"v":1,"sensor":"s1","line":"main","seq":{seq},"start":"{}","end":"{}","in":{people_in},"out":{people_out}}}"#,
        f(start),
        f(end)
    )
}

/// Runs `mosquitto_pub` (QoS 1) and returns whether it exited 0.
pub async fn mosquitto_pub(
    port: u16,
    user: Option<(&str, &str)>,
    client_id: &str,
    topic: &str,
    payload: Payload<'_>,
) -> bool {
    let mut cmd = tokio::process::Command::new("mosquitto_pub");
    cmd.args([
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
        "-i",
        client_id,
        "-q",
        "1",
        "-t",
        topic,
    ]);
    if let Some((u, p)) = user {
        cmd.args(["-u", u, "-P", p]);
    }
    match payload {
        Payload::Text(m) => {
            cmd.args(["-m", m]);
        }
        Payload::File(f) => {
            cmd.arg("-f").arg(f);
        }
    }
    let out = cmd
        .output()
        .await
        .expect("mosquitto_pub must be installed (apt-get install mosquitto-clients)");
    out.status.success()
}

pub enum Payload<'a> {
    Text(&'a str),
    File(&'a Path),
}

/// GET a path from the HTTP server; returns the body.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    http_request(addr, path, &[]).await.2
}

/// A raw HTTP/1.1 GET with extra headers: (status, head, body). Status 0 and empty texts when
/// the server closed the connection without an answer (a refused connection).
pub async fn http_request(
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let _ = s
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\n{extra}Connection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf).await;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = buf.split_once("\r\n\r\n").unwrap_or((&buf, ""));
    (status, head.to_owned(), body.to_owned())
}

/// A GET with optional HTTP Basic credentials `user:password`: (status, body).
pub async fn http_basic(
    addr: std::net::SocketAddr,
    path: &str,
    basic: Option<&str>,
) -> (u16, String) {
    use base64::Engine;
    let auth = basic.map(|b| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    });
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", a.as_str())).collect();
    let (status, _, body) = http_request(addr, path, &headers).await;
    (status, body)
}

/// The value of one sample line in Prometheus text (`name{labels}`), or 0.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(series)
                .and_then(|rest| rest.trim().split(' ').next()?.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Waits for `cond` to hold, polling, up to `secs`.
pub async fn wait_for<F, Fut>(secs: u64, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if cond().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// All audit lines in a data directory, parsed, in order (the daily `*.jsonl` files).
pub fn audit_lines(data: &Path) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    for f in files {
        let text = std::fs::read_to_string(f).unwrap();
        out.extend(
            text.lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()),
        );
    }
    out
}

/// A free loopback port (for a server that must come back on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `tellijn-agent` binary next to this test's target directory (built by
/// `cargo test --workspace`, for the agent package's own integration tests).
pub fn agent_bin() -> std::path::PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("tellijn-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p tellijn-agent`)",
        bin.display()
    );
    bin
}

/// What `psql` printed and whether it succeeded.
pub struct Psql {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs Debian's `psql` against a Tellijn PostgreSQL endpoint (unaligned, comma-separated,
/// tuples only), stopping at the first error.
pub async fn psql(addr: std::net::SocketAddr, user: (&str, &str), sql: &str) -> Psql {
    psql_run(addr, user, sql, true).await
}

/// Like [`psql`]; with `stop_on_error` false every statement of `sql` runs, as psql does by
/// default.
pub async fn psql_run(
    addr: std::net::SocketAddr,
    user: (&str, &str),
    sql: &str,
    stop_on_error: bool,
) -> Psql {
    let port = addr.port().to_string();
    let mut args = vec!["-X", "-A", "-t", "-F", ","];
    if stop_on_error {
        args.extend(["-v", "ON_ERROR_STOP=1"]);
    }
    args.extend([
        "-h",
        "127.0.0.1",
        "-p",
        &port,
        "-U",
        user.0,
        "-d",
        "tellijn",
        "-c",
        sql,
    ]);
    let out = tokio::process::Command::new("psql")
        .args(&args)
        .env("PGPASSWORD", user.1)
        .env("PGCONNECT_TIMEOUT", "10")
        .env("PGSSLMODE", "disable")
        .output()
        .await
        .expect("psql must be installed (apt-get install postgresql-client)");
    Psql {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `tellijn demo` as a user starts it, on ephemeral ports, with its data in `data` and `extra`
/// arguments: the child (killed when dropped) and the lines it printed up to "Press Ctrl-C"
/// (its addresses). The rest of its output is read and dropped.
pub async fn demo(data: &Path, extra: &[&str]) -> (tokio::process::Child, Vec<String>) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .arg("demo")
        .args(extra)
        .args(["--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args([
            "--metrics",
            "127.0.0.1:0",
            "--postgres",
            "127.0.0.1:0",
            "--data",
        ])
        .arg(data)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = Vec::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        if l.starts_with("Press Ctrl-C") {
            break;
        }
        printed.push(l.trim().to_owned());
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, printed)
}

/// A tokio-postgres client logged in to `addr` as `user` (name, password); the connection's task.
pub async fn pg_client(
    addr: std::net::SocketAddr,
    user: (&str, &str),
) -> (
    tokio_postgres::Client,
    tokio::task::JoinHandle<Result<(), tokio_postgres::Error>>,
) {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={} dbname=tellijn",
            addr.port(),
            user.0,
            user.1
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap_or_else(|e| panic!("logging in to {addr} as {}: {e}", user.0));
    (client, tokio::spawn(conn))
}
