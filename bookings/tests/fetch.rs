//! The feed fetcher against real HTTP/1.1 servers on ephemeral loopback ports (hand-rolled, so
//! a test can lie about lengths, trickle or stall), and against files.

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tellijn_bookings::fetch::{FetchError, Fetched, Fetcher, Validators};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

const LIMIT: u64 = 64 * 1024;

/// A request as the server saw it; header names lower-cased.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    headers: Vec<(String, String)>,
}

impl Seen {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.all(name).first().copied()
    }
}

/// A connection, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}
type Stream = Box<dyn Io>;

struct Server {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    scheme: &'static str,
}

impl Server {
    fn url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.scheme, self.addr)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// Serves each connection's first request with `handler`, which owns the stream from then on.
async fn serve<F, Fut>(handler: F) -> Server
where
    F: Fn(Seen, Stream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    serve_on(None, handler).await
}

/// [`serve`], over TLS when given an acceptor.
async fn serve_on<F, Fut>(tls: Option<tokio_rustls::TlsAcceptor>, handler: F) -> Server
where
    F: Fn(Seen, Stream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let handler = Arc::new(handler);
    let log = seen.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            let log = log.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let mut stream: Stream = match tls {
                    None => Box::new(tcp),
                    Some(acceptor) => match acceptor.accept(tcp).await {
                        Ok(s) => Box::new(s),
                        Err(_) => return,
                    },
                };
                let Some(request) = read_head(&mut stream).await else {
                    return;
                };
                log.lock().unwrap().push(request.clone());
                handler(request, stream).await;
            });
        }
    });
    Server { addr, seen, scheme }
}

async fn read_head(stream: &mut Stream) -> Option<Seen> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > 64 * 1024 || stream.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let text = String::from_utf8(buf).ok()?;
    let mut lines = text.split("\r\n");
    let path = lines.next()?.split(' ').nth(1)?.to_owned();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Seen { path, headers })
}

/// A complete response with a Content-Length, then the connection closes.
async fn reply(mut stream: Stream, status: &str, headers: &[(&str, &str)], body: &[u8]) {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.write_all(body).await;
    let _ = stream.shutdown().await;
}

/// Holds the connection open until the client closes it (no timer involved).
async fn hold(mut stream: Stream) {
    let mut buf = [0u8; 1024];
    while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
}

fn fetcher(timeout: Duration) -> Fetcher {
    Fetcher::new(timeout, LIMIT).unwrap()
}

const FEED: &[u8] = b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n";

fn body(fetched: Fetched) -> (Vec<u8>, Validators) {
    match fetched {
        Fetched::Body { bytes, validators } => (bytes, validators),
        Fetched::Unchanged => panic!("expected a body, got Unchanged"),
    }
}

#[tokio::test]
async fn etag_is_sent_back_and_304_is_unchanged() {
    let server = serve(|req: Seen, stream| async move {
        if req.header("if-none-match") == Some("\"v1\"") {
            reply(stream, "304 Not Modified", &[("ETag", "\"v1\"")], b"").await;
        } else {
            reply(stream, "200 OK", &[("ETag", "\"v1\"")], FEED).await;
        }
    })
    .await;
    let f = fetcher(Duration::from_secs(10));
    let url = server.url("/rooms.ics");
    let (bytes, validators) = body(f.fetch(&url, None, &Validators::default()).await.unwrap());
    assert_eq!(bytes, FEED);
    assert_eq!(validators.etag.as_deref(), Some("\"v1\""));
    assert_eq!(validators.last_modified, None);
    assert_eq!(
        f.fetch(&url, None, &validators).await.unwrap(),
        Fetched::Unchanged
    );
    let seen = server.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].path, "/rooms.ics");
    assert_eq!(seen[0].header("if-none-match"), None);
    assert_eq!(seen[1].header("if-none-match"), Some("\"v1\""));
    assert_eq!(seen[1].header("if-modified-since"), None);
}

#[tokio::test]
async fn last_modified_is_sent_back_and_304_is_unchanged() {
    const DATE: &str = "Tue, 01 Dec 2026 08:00:00 GMT";
    let server = serve(|req: Seen, stream| async move {
        if req.header("if-modified-since") == Some(DATE) {
            reply(stream, "304 Not Modified", &[], b"").await;
        } else {
            reply(stream, "200 OK", &[("Last-Modified", DATE)], FEED).await;
        }
    })
    .await;
    let f = fetcher(Duration::from_secs(10));
    let url = server.url("/rooms.ics");
    let (_, validators) = body(f.fetch(&url, None, &Validators::default()).await.unwrap());
    assert_eq!(validators.last_modified.as_deref(), Some(DATE));
    assert_eq!(validators.etag, None);
    assert_eq!(
        f.fetch(&url, None, &validators).await.unwrap(),
        Fetched::Unchanged
    );
    let seen = server.seen();
    assert_eq!(seen[0].header("if-modified-since"), None);
    assert_eq!(seen[1].header("if-modified-since"), Some(DATE));
    assert_eq!(seen[1].header("if-none-match"), None);
}

#[tokio::test]
async fn a_changed_feed_comes_back_whole_despite_validators() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "200 OK", &[("ETag", "\"v2\"")], b"new").await;
    })
    .await;
    let prev = Validators {
        etag: Some("\"v1\"".into()),
        last_modified: None,
    };
    let got = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/r.ics"), None, &prev)
        .await
        .unwrap();
    let (bytes, validators) = body(got);
    assert_eq!(bytes, b"new");
    assert_eq!(validators.etag.as_deref(), Some("\"v2\""));
}

#[tokio::test]
async fn server_error_is_http_status_naming_the_status() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "500 Internal Server Error", &[], b"oops").await;
    })
    .await;
    let err = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/rooms.ics"), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "http_status");
    assert_eq!(err.status().map(|s| s.as_u16()), Some(500));
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "GET {} answered 500 Internal Server Error",
            server.url("/rooms.ics")
        )),
        "{msg}"
    );
    assert!(msg.contains("last good copy stays in use"), "{msg}");
}

#[tokio::test]
async fn not_found_is_http_status_with_a_hint() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "404 Not Found", &[], b"").await;
    })
    .await;
    let err = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/gone.ics"), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "http_status");
    assert!(
        err.to_string()
            .contains("404 Not Found (check the calendar url)"),
        "{err}"
    );
}

fn assert_too_large(result: Result<Fetched, FetchError>, started: Instant) {
    let err = match result {
        Err(e) => e,
        Ok(got) => panic!("expected TooLarge, got {got:?}"),
    };
    assert_eq!(err.reason(), "too_large", "{err}");
    assert!(
        err.to_string()
            .contains("larger than 64 KiB (bookings.feed_max_bytes)"),
        "{err}"
    );
    assert!(matches!(err, FetchError::TooLarge { limit: LIMIT, .. }));
    // The fetcher's timeout is 10 s: it gave up on the size, not on the clock.
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn content_length_over_the_limit_is_refused_before_reading() {
    // Announces 1 MiB, then sends nothing: only a fetcher that checks the length first
    // returns before its timeout.
    let server = serve(|_req: Seen, mut stream| async move {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        hold(stream).await;
    })
    .await;
    let started = Instant::now();
    let result = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/big.ics"), None, &Validators::default())
        .await;
    assert_too_large(result, started);
}

/// Sends `head`, then `chunk` until the client goes away or 64 MiB went out.
async fn endless(mut stream: Stream, head: &'static str, chunk: Vec<u8>) {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let mut sent = 0usize;
    while sent < 64 << 20 && stream.write_all(&chunk).await.is_ok() {
        sent += chunk.len();
    }
}

#[tokio::test]
async fn an_endless_body_without_length_is_cut_at_the_limit() {
    let server = serve(|_req: Seen, stream| async move {
        let head = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n";
        endless(stream, head, vec![b'x'; 16 * 1024]).await;
    })
    .await;
    let started = Instant::now();
    let result = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/big.ics"), None, &Validators::default())
        .await;
    assert_too_large(result, started);
}

#[tokio::test]
async fn an_endless_chunked_body_is_cut_at_the_limit() {
    let server = serve(|_req: Seen, stream| async move {
        let head = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut chunk = b"2000\r\n".to_vec();
        chunk.extend(vec![b'x'; 0x2000]);
        chunk.extend(b"\r\n");
        endless(stream, head, chunk).await;
    })
    .await;
    let started = Instant::now();
    let result = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/big.ics"), None, &Validators::default())
        .await;
    assert_too_large(result, started);
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_read() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "200 OK", &[], &vec![b'y'; LIMIT as usize]).await;
    })
    .await;
    let got = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/full.ics"), None, &Validators::default())
        .await
        .unwrap();
    assert_eq!(body(got).0.len() as u64, LIMIT);
}

fn assert_timeout(result: Result<Fetched, FetchError>, started: Instant) {
    let elapsed = started.elapsed();
    let err = match result {
        Err(e) => e,
        Ok(got) => panic!("expected Timeout, got {got:?}"),
    };
    assert_eq!(err.reason(), "timeout", "{err}");
    assert!(err.to_string().contains("within 500 ms"), "{err}");
    assert!(elapsed >= Duration::from_millis(450), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(3), "{elapsed:?}");
}

#[tokio::test]
async fn a_trickling_body_hits_the_timeout() {
    // One byte every 50 ms: each read makes progress, only a bound on the whole fetch ends it.
    let server = serve(|_req: Seen, mut stream| async move {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        for _ in 0..200 {
            if stream.write_all(b"x").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let started = Instant::now();
    let result = fetcher(Duration::from_millis(500))
        .fetch(&server.url("/slow.ics"), None, &Validators::default())
        .await;
    assert_timeout(result, started);
}

#[tokio::test]
async fn a_server_stalling_after_the_headers_hits_the_timeout() {
    let server = serve(|_req: Seen, mut stream| async move {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n";
        let _ = stream.write_all(head.as_bytes()).await;
        hold(stream).await;
    })
    .await;
    let started = Instant::now();
    let result = fetcher(Duration::from_millis(500))
        .fetch(&server.url("/stall.ics"), None, &Validators::default())
        .await;
    assert_timeout(result, started);
}

#[tokio::test]
async fn a_server_that_never_answers_hits_the_timeout() {
    let server = serve(|_req: Seen, stream| hold(stream)).await;
    let started = Instant::now();
    let result = fetcher(Duration::from_millis(500))
        .fetch(&server.url("/mute.ics"), None, &Validators::default())
        .await;
    assert_timeout(result, started);
}

#[tokio::test]
async fn garbage_is_returned_as_is() {
    let garbage: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    let sent = garbage.clone();
    let server = serve(move |_req: Seen, stream| {
        let sent = sent.clone();
        async move { reply(stream, "200 OK", &[("Content-Type", "image/png")], &sent).await }
    })
    .await;
    let got = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/x.ics"), None, &Validators::default())
        .await
        .unwrap();
    assert_eq!(body(got).0, garbage);
}

#[tokio::test]
async fn the_bearer_token_is_sent_alone() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "200 OK", &[], FEED).await;
    })
    .await;
    let f = fetcher(Duration::from_secs(10));
    let plain = server.url("/r.ics");
    let with_user = format!("http://bob:pw@{}/r.ics", server.addr);
    f.fetch(&plain, Some("tok-123\n"), &Validators::default())
        .await
        .unwrap();
    f.fetch(&with_user, Some("tok-123"), &Validators::default())
        .await
        .unwrap();
    f.fetch(&with_user, None, &Validators::default())
        .await
        .unwrap();
    f.fetch(&plain, None, &Validators::default()).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen[0].all("authorization"), ["Bearer tok-123"]);
    assert_eq!(seen[1].all("authorization"), ["Bearer tok-123"]);
    // base64("bob:pw")
    assert_eq!(seen[2].all("authorization"), ["Basic Ym9iOnB3"]);
    assert!(seen[3].all("authorization").is_empty());
}

#[tokio::test]
async fn a_token_unfit_for_a_header_is_refused() {
    let err = fetcher(Duration::from_secs(10))
        .fetch(
            "http://127.0.0.1:9/r.ics",
            Some("a\nb"),
            &Validators::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "bad_token");
    assert!(!err.to_string().contains("a\nb"));
}

fn assert_no_secret(err: &FetchError) {
    let shown = format!("{err} / {err:?}");
    for secret in ["s3cret", "alice", "Bearer", "token="] {
        assert!(!shown.contains(secret), "{secret:?} shown in {shown}");
    }
}

#[tokio::test]
async fn secrets_never_show_in_errors() {
    let server = serve(|req: Seen, stream| async move {
        match req.path.as_str() {
            p if p.starts_with("/500") => {
                reply(stream, "500 Internal Server Error", &[], b"").await
            }
            p if p.starts_with("/big") => {
                reply(stream, "200 OK", &[], &vec![b'x'; LIMIT as usize + 1]).await
            }
            _ => hold(stream).await,
        }
    })
    .await;
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let f = fetcher(Duration::from_millis(500));
    let token = Some("tok-s3cret");
    for (path, addr, reason) in [
        ("/500", server.addr, "http_status"),
        ("/big", server.addr, "too_large"),
        ("/stall", server.addr, "timeout"),
        ("/x", closed, "connect"),
    ] {
        let url = format!("http://alice:pw-s3cret@{addr}{path}/rooms.ics?token=q-s3cret&x=1");
        let err = f
            .fetch(&url, token, &Validators::default())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), reason, "{err}");
        assert_no_secret(&err);
        assert!(
            err.to_string()
                .contains(&format!("http://{addr}{path}/rooms.ics?…")),
            "{err}"
        );
    }
    for url in [
        "ftp://alice:s3cret@host/x?token=s3cret",
        "http://[s3cret/x",
        "s3cret",
    ] {
        let err = f
            .fetch(url, token, &Validators::default())
            .await
            .unwrap_err();
        assert_eq!(err.reason(), "bad_url", "{err}");
        assert_no_secret(&err);
    }
}

#[tokio::test]
async fn a_closed_port_is_connect() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let err = fetcher(Duration::from_secs(10))
        .fetch(
            &format!("http://{addr}/r.ics"),
            None,
            &Validators::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "connect", "{err}");
    assert!(err.to_string().contains("cannot connect"), "{err}");
}

#[tokio::test]
async fn https_to_a_plain_http_server_is_tls() {
    // Also shows the client has an explicit crypto provider: with `rustls-no-provider` and none
    // installed process-wide, reqwest panics on its first https request.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                .await;
            let _ = stream.shutdown().await;
        }
    });
    let err = fetcher(Duration::from_secs(10))
        .fetch(
            &format!("https://{addr}/r.ics"),
            None,
            &Validators::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "tls", "{err}");
}

#[tokio::test]
async fn redirects_are_followed_a_few_times_only() {
    let server = serve(|req: Seen, stream| async move {
        match req.path.as_str() {
            "/moved" => {
                reply(
                    stream,
                    "301 Moved Permanently",
                    &[("Location", "/r.ics")],
                    b"",
                )
                .await
            }
            "/r.ics" => reply(stream, "200 OK", &[], FEED).await,
            _ => reply(stream, "302 Found", &[("Location", "/loop")], b"").await,
        }
    })
    .await;
    let f = fetcher(Duration::from_secs(10));
    let got = f
        .fetch(&server.url("/moved"), None, &Validators::default())
        .await
        .unwrap();
    assert_eq!(body(got).0, FEED);
    assert_eq!(server.seen().len(), 2);

    let err = f
        .fetch(&server.url("/loop"), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "redirect", "{err}");
    assert!(err.to_string().contains("more than 5 redirects"), "{err}");
    // The first request and 5 redirects followed.
    assert_eq!(server.seen().len(), 2 + 6);
}

#[tokio::test]
async fn a_304_without_validators_is_an_error() {
    let server = serve(|_req: Seen, stream| async move {
        reply(stream, "304 Not Modified", &[], b"").await;
    })
    .await;
    let err = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/r.ics"), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "http_status", "{err}");
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("fetch-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn file_url(path: &std::path::Path) -> String {
    format!("file://{}", path.display())
}

#[tokio::test]
async fn a_file_is_read_and_unchanged_detected() {
    let path = temp_dir("read").join("rooms.ics");
    std::fs::write(&path, FEED).unwrap();
    let f = fetcher(Duration::from_secs(10));
    let url = file_url(&path);
    let (bytes, validators) = body(
        f.fetch(&url, Some("ignored"), &Validators::default())
            .await
            .unwrap(),
    );
    assert_eq!(bytes, FEED);
    let etag = validators.etag.clone().unwrap();
    assert!(etag.starts_with(&format!("file:{}:", FEED.len())), "{etag}");
    assert_eq!(
        f.fetch(&url, None, &validators).await.unwrap(),
        Fetched::Unchanged
    );

    std::fs::write(&path, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n").unwrap();
    let (bytes, next) = body(f.fetch(&url, None, &validators).await.unwrap());
    assert_eq!(bytes, b"BEGIN:VCALENDAR\r\nEND:VCALENDAR\r\n");
    assert_ne!(next, validators);
}

#[tokio::test]
async fn a_file_over_the_limit_is_too_large() {
    let dir = temp_dir("large");
    let at = dir.join("at.ics");
    let over = dir.join("over.ics");
    std::fs::write(&at, vec![b'x'; LIMIT as usize]).unwrap();
    std::fs::write(&over, vec![b'x'; LIMIT as usize + 1]).unwrap();
    let f = fetcher(Duration::from_secs(10));
    let got = f
        .fetch(&file_url(&at), None, &Validators::default())
        .await
        .unwrap();
    assert_eq!(body(got).0.len() as u64, LIMIT);
    let result = f
        .fetch(&file_url(&over), None, &Validators::default())
        .await;
    assert_too_large(result, Instant::now());
}

#[tokio::test]
async fn a_missing_file_is_io_naming_the_path() {
    let path = temp_dir("missing").join("nope.ics");
    let err = fetcher(Duration::from_secs(10))
        .fetch(&file_url(&path), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "io", "{err}");
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    let dir = path.parent().unwrap();
    let err = fetcher(Duration::from_secs(10))
        .fetch(&file_url(dir), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "io", "{err}");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

#[tokio::test]
async fn file_urls_with_a_host_are_refused() {
    let err = fetcher(Duration::from_secs(10))
        .fetch(
            "file://server/share/rooms.ics",
            None,
            &Validators::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "bad_url", "{err}");
}

#[tokio::test]
async fn the_token_is_not_sent_to_another_host_on_redirect() {
    let other = serve(|_req: Seen, stream| async move {
        reply(stream, "200 OK", &[], FEED).await;
    })
    .await;
    let target = other.url("/r.ics");
    let first = serve(move |_req: Seen, stream| {
        let target = target.clone();
        async move { reply(stream, "302 Found", &[("Location", &target)], b"").await }
    })
    .await;
    let got = fetcher(Duration::from_secs(10))
        .fetch(
            &first.url("/r.ics"),
            Some("tok-123"),
            &Validators::default(),
        )
        .await
        .unwrap();
    assert_eq!(body(got).0, FEED);
    assert_eq!(first.seen()[0].all("authorization"), ["Bearer tok-123"]);
    let seen = other.seen();
    assert_eq!(seen.len(), 1);
    assert!(seen[0].all("authorization").is_empty(), "{seen:?}");
}

/// A TLS acceptor for a self-signed 127.0.0.1 certificate, and the roots trusting it.
fn tls_pair() -> (tokio_rustls::TlsAcceptor, rustls::RootCertStore) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), roots)
}

#[tokio::test]
async fn https_with_a_trusted_certificate_is_fetched() {
    let (acceptor, roots) = tls_pair();
    let server = serve_on(Some(acceptor), |req: Seen, stream| async move {
        if req.header("if-none-match") == Some("\"t1\"") {
            reply(stream, "304 Not Modified", &[], b"").await;
        } else {
            reply(stream, "200 OK", &[("ETag", "\"t1\"")], FEED).await;
        }
    })
    .await;
    let f = Fetcher::with_roots(Duration::from_secs(10), LIMIT, roots).unwrap();
    let url = server.url("/rooms.ics");
    assert!(url.starts_with("https://"));
    let (bytes, validators) = body(
        f.fetch(&url, Some("tok"), &Validators::default())
            .await
            .unwrap(),
    );
    assert_eq!(bytes, FEED);
    assert_eq!(
        f.fetch(&url, None, &validators).await.unwrap(),
        Fetched::Unchanged
    );
    assert_eq!(server.seen()[0].all("authorization"), ["Bearer tok"]);
}

#[tokio::test]
async fn https_with_an_unknown_issuer_is_tls() {
    let (acceptor, _) = tls_pair();
    let server = serve_on(Some(acceptor), |_req: Seen, stream| async move {
        reply(stream, "200 OK", &[], FEED).await;
    })
    .await;
    let err = fetcher(Duration::from_secs(10))
        .fetch(&server.url("/rooms.ics"), None, &Validators::default())
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "tls", "{err}");
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    assert!(server.seen().is_empty());
}

#[tokio::test]
async fn https_never_redirects_to_http() {
    let plain = serve(|_req: Seen, stream| async move {
        reply(stream, "200 OK", &[], FEED).await;
    })
    .await;
    let target = plain.url("/rooms.ics");
    let (acceptor, roots) = tls_pair();
    let secure = serve_on(Some(acceptor), move |_req: Seen, stream| {
        let target = target.clone();
        async move {
            reply(
                stream,
                "301 Moved Permanently",
                &[("Location", &target)],
                b"",
            )
            .await
        }
    })
    .await;
    let err = Fetcher::with_roots(Duration::from_secs(10), LIMIT, roots)
        .unwrap()
        .fetch(
            &secure.url("/rooms.ics"),
            Some("tok"),
            &Validators::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.reason(), "redirect", "{err}");
    assert!(err.to_string().contains("from https to http"), "{err}");
    assert_eq!(secure.seen().len(), 1);
    assert!(plain.seen().is_empty());
}
