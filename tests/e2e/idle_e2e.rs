//! Idle timeouts (`[limits] http_idle_timeout`, `sql_idle_timeout`): a connection that sends
//! nothing, or a request header too slowly, is closed; one in use is not. A real server on
//! ephemeral loopback ports with both timeouts at one second.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The configured idle timeout, and how long a test waits for the close at most.
const IDLE: Duration = Duration::from_secs(1);
const PATIENCE: Duration = Duration::from_secs(10);

const STEWARD: (&str, &str) = ("ada", "ada-steward-pw");

fn campus_with_short_timeouts(data: &Path) -> String {
    let h = tellijn::secrets::hash_demo(STEWARD.1).unwrap();
    format!(
        "{}\n[[users]]\nname = \"{}\"\npassword_hash = \"{h}\"\nrole = \"steward\"\n\n[limits]\nhttp_idle_timeout = \"1s\"\nsql_idle_timeout = \"1s\"\n",
        campus_text(data, "1h", ""),
        STEWARD.0
    )
}

/// Reads until the server closes the connection; returns what it sent and when it closed.
/// Fails if it stays open for `PATIENCE`.
async fn until_closed(s: &mut TcpStream) -> (String, Duration) {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Err(_) => panic!(
                "the connection was still open after {PATIENCE:?}: {:?}",
                String::from_utf8_lossy(&got)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_and_slow_http_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(data, &campus_with_short_timeouts(data), "127.0.0.1:0").await;
    let http = server.http_addr();

    // A connection that never sends a byte.
    let mut silent = TcpStream::connect(http).await.unwrap();
    let (got, after) = until_closed(&mut silent).await;
    assert!(got.is_empty(), "{got}");
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed after {after:?}"
    );

    // A request header that stops halfway.
    let mut half = TcpStream::connect(http).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let (got, _) = until_closed(&mut half).await;
    assert!(!got.contains("200 OK"), "{got}");

    // A header dripped a byte at a time (slowloris): the whole header must arrive in time.
    let mut drip = TcpStream::connect(http).await.unwrap();
    let (mut rd, mut wr) = drip.split();
    let header = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let start = Instant::now();
    let writer = async {
        for b in header {
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        std::future::pending::<()>().await
    };
    let reader = async {
        let mut got = Vec::new();
        let _ = tokio::time::timeout(PATIENCE, rd.read_to_end(&mut got))
            .await
            .expect("a dripped header kept the connection open");
        (String::from_utf8_lossy(&got).into_owned(), start.elapsed())
    };
    let (got, after) = tokio::select! {
        r = reader => r,
        () = writer => unreachable!(),
    };
    assert!(!got.contains("200 OK"), "{got}");
    assert!(
        after < Duration::from_millis(100) * header.len() as u32 / 2,
        "closed only after {after:?}, when most of the header had arrived"
    );

    // Keep-alive: answered, answered again, then closed once it falls silent.
    let mut keep = TcpStream::connect(http).await.unwrap();
    for _ in 0..2 {
        keep.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        let mut got = String::new();
        while !got.ends_with("ok\n") {
            let n = tokio::time::timeout(PATIENCE, keep.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "closed while in use: {got}");
            got.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        assert!(got.starts_with("HTTP/1.1 200 OK"), "{got}");
    }
    let (got, after) = until_closed(&mut keep).await;
    assert!(got.is_empty(), "{got}");
    assert!(
        after >= IDLE - Duration::from_millis(100),
        "closed after {after:?}"
    );

    server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn silent_sql_connections_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(data, &campus_with_short_timeouts(data), "127.0.0.1:0").await;
    let pg = server.postgres_addr();

    // A TCP connection that never starts the protocol.
    let mut silent = TcpStream::connect(pg).await.unwrap();
    let (got, _) = until_closed(&mut silent).await;
    assert!(got.is_empty(), "{got}");

    // A logged-in client in use stays connected: a query every 400 ms for 2 s.
    let (client, conn) = pg_client(pg, STEWARD).await;
    for i in 0..6 {
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(400)).await;
        }
        client.simple_query("SELECT 1").await.unwrap();
    }
    assert!(!conn.is_finished(), "a connection in use was closed");

    // Then silence: the server ends the session with PostgreSQL's idle-session error.
    let start = Instant::now();
    let ended = tokio::time::timeout(PATIENCE, conn)
        .await
        .expect("a silent SQL session stayed open")
        .unwrap();
    assert!(start.elapsed() >= IDLE - Duration::from_millis(100));
    let e = ended.expect_err("the session ended without saying why");
    let db = e.as_db_error().unwrap_or_else(|| panic!("{e:?}"));
    assert_eq!(db.code().code(), "57P05", "{db:?}");
    assert!(db.message().contains("idle-session timeout"), "{db:?}");
    assert!(client.simple_query("SELECT 1").await.is_err());

    server.stop().await.unwrap();
}
