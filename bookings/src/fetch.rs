//! Fetching a feed's bytes: `https://…`, `http://…` or `file:///…`, conditional, bounded, timed.
//!
//! One [`Fetcher`] holds one HTTP client (HTTP/1.1 over rustls with the aws-lc-rs provider and
//! the system's root certificates) and serves every `[[calendars]]` feed. A fetch
//! - sends `If-None-Match` / `If-Modified-Since` from the [`Validators`] of the last good copy
//!   and turns a `304 Not Modified` into [`Fetched::Unchanged`] (a file: its length and mtime);
//! - refuses a body larger than `bookings.feed_max_bytes`, by its `Content-Length` and by
//!   counting while it reads (a server may omit the length or lie about it);
//! - is bounded as a whole by the timeout: connecting, redirects, headers and the body;
//! - follows at most [`MAX_REDIRECTS`] redirects and never one from `https` to `http`;
//! - sends `Authorization: Bearer …` when given a token, else the URL's `user:pass@` as basic
//!   authentication; reqwest drops either on a redirect to another host.
//!
//! It is content-agnostic: garbage comes back as a [`Fetched::Body`], for the parser to refuse.
//!
//! No error message or `Debug` output holds the token, a password, or the URL's query string:
//! URLs are shown as `scheme://host[:port]/path` ([`redact_url`]), with `?…` for a query.
//!
//! The server keeps a [`FeedHealth`] per feed and the last good occurrences beside it:
//! ```ignore
//! match fetcher.fetch(&cal.url, token.as_deref(), &health.validators).await {
//!     Ok(Fetched::Unchanged) => health.record_unchanged(now),
//!     Ok(Fetched::Body { bytes, validators }) => match parse(&bytes) {
//!         Ok(feed) => { keep(feed); health.record_success(now, validators) }
//!         Err(e) => health.record_failure(now, "garbage", e.to_string()),
//!     },
//!     Err(e) => health.record_error(now, &e),
//! }
//! ```
//! As the validators change only with a good copy, a `304` always means "still the good copy".

use std::error::Error as StdError;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use reqwest::header::{
    AUTHORIZATION, ETAG, HeaderValue, IF_MODIFIED_SINCE, IF_NONE_MATCH, LAST_MODIFIED,
};
use reqwest::{StatusCode, Url};
use tokio::io::AsyncReadExt;

/// The most redirects one fetch follows.
pub const MAX_REDIRECTS: usize = 5;

/// What identifies the copy last read, to ask for a new one only if it changed.
///
/// HTTP: the response's `ETag` and `Last-Modified`, sent back verbatim. A file: `etag` is
/// `file:{len}:{mtime_ns}` and `last_modified` is `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Validators {
    /// Neither validator: the next fetch is unconditional.
    pub fn is_empty(&self) -> bool {
        self.etag.is_none() && self.last_modified.is_none()
    }
}

/// The outcome of a successful fetch.
#[derive(Clone, PartialEq, Eq)]
pub enum Fetched {
    /// The feed is the copy that `prev` describes (HTTP 304, or a file of the same length and
    /// mtime): keep using it.
    Unchanged,
    /// A new body (at most `max_bytes`), with the validators to send next time.
    Body {
        bytes: Vec<u8>,
        validators: Validators,
    },
}

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fetched::Unchanged => f.write_str("Unchanged"),
            Fetched::Body { bytes, validators } => f
                .debug_struct("Body")
                .field("len", &bytes.len())
                .field("validators", validators)
                .finish(),
        }
    }
}

/// Why a fetch failed. Each message names what to change; URLs in it are redacted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    #[error(
        "calendar url {url}: {why}; write https://host/path, http://host/path or file:///absolute/path"
    )]
    BadUrl { url: String, why: &'static str },
    #[error(
        "the calendar token (token_file) holds characters not allowed in an HTTP header; \
         it must be one line of printable text"
    )]
    BadToken,
    #[error("GET {url} answered {status}{hint}; the last good copy stays in use")]
    Status {
        url: String,
        status: StatusCode,
        hint: &'static str,
    },
    #[error(
        "{url}: the feed is larger than {} (bookings.feed_max_bytes); raise the limit or \
         export a shorter window; the last good copy stays in use",
        human_bytes(*limit)
    )]
    TooLarge { url: String, limit: u64 },
    #[error(
        "{url}: no complete answer within {}; the server is slow or stalled; \
         the last good copy stays in use",
        human_duration(*timeout)
    )]
    Timeout { url: String, timeout: Duration },
    #[error(
        "GET {url}: cannot connect ({detail}); check the host name, the port and the network; \
         the last good copy stays in use"
    )]
    Connect { url: String, detail: String },
    #[error(
        "GET {url}: TLS failed ({detail}); check that the server speaks HTTPS with a \
         certificate the system trusts; the last good copy stays in use"
    )]
    Tls { url: String, detail: String },
    #[error(
        "GET {url}: redirect refused ({detail}); point the calendar url at the final \
         https address; the last good copy stays in use"
    )]
    Redirect { url: String, detail: String },
    #[error("GET {url} failed ({detail}); the last good copy stays in use")]
    Transport { url: String, detail: String },
    #[error("cannot read calendar file {}: {source}; the last good copy stays in use", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Setup(String),
}

impl FetchError {
    /// A short, fixed label for metrics and logs: `bad_url`, `bad_token`, `http_status`,
    /// `too_large`, `timeout`, `connect`, `tls`, `redirect`, `transport`, `io`, `setup`.
    pub fn reason(&self) -> &'static str {
        match self {
            FetchError::BadUrl { .. } => "bad_url",
            FetchError::BadToken => "bad_token",
            FetchError::Status { .. } => "http_status",
            FetchError::TooLarge { .. } => "too_large",
            FetchError::Timeout { .. } => "timeout",
            FetchError::Connect { .. } => "connect",
            FetchError::Tls { .. } => "tls",
            FetchError::Redirect { .. } => "redirect",
            FetchError::Transport { .. } => "transport",
            FetchError::Io { .. } => "io",
            FetchError::Setup(_) => "setup",
        }
    }

    /// The HTTP status, for [`FetchError::Status`].
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            FetchError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// Fetches feeds. Cheap to share (`&self`); holds one connection-pooling HTTP client.
#[derive(Debug, Clone)]
pub struct Fetcher {
    client: reqwest::Client,
    timeout: Duration,
    max_bytes: u64,
}

impl Fetcher {
    /// A fetcher whose every fetch takes at most `timeout` and reads at most `max_bytes`,
    /// trusting the system's root certificates for `https`.
    pub fn new(timeout: Duration, max_bytes: u64) -> Result<Fetcher, FetchError> {
        let loaded = rustls_native_certs::load_native_certs();
        let mut roots = rustls::RootCertStore::empty();
        // Unparsable system certificates are skipped; with none at all, https fails per fetch
        // with a TLS error naming the unknown issuer, while http and file feeds still work.
        let _ = roots.add_parsable_certificates(loaded.certs);
        Fetcher::with_roots(timeout, max_bytes, roots)
    }

    /// [`Fetcher::new`] trusting exactly `roots` for `https` (a campus's own CA; tests).
    pub fn with_roots(
        timeout: Duration,
        max_bytes: u64,
        roots: rustls::RootCertStore,
    ) -> Result<Fetcher, FetchError> {
        // Explicit: both `ring` and `aws-lc-rs` are linked, so rustls has no default provider.
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| FetchError::Setup(format!("TLS versions: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::custom(
                |attempt| match redirect_refusal(attempt.previous(), attempt.url()) {
                    Some(why) => attempt.error(why),
                    None => attempt.follow(),
                },
            ))
            .connect_timeout(timeout)
            .timeout(timeout)
            .user_agent(concat!("tellijn/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Setup(chain(&e.without_url())))?;
        Ok(Fetcher {
            client,
            timeout,
            max_bytes,
        })
    }

    /// The bound on one fetch's duration.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The bound on a body's size.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Fetches `url` unless it is still the copy `prev` describes. `token` (trimmed) goes out
    /// as `Authorization: Bearer …` on HTTP(S) and is ignored for files.
    pub async fn fetch(
        &self,
        url: &str,
        token: Option<&str>,
        prev: &Validators,
    ) -> Result<Fetched, FetchError> {
        let parsed = Url::parse(url.trim()).map_err(|_| FetchError::BadUrl {
            url: redact_url(url),
            why: "not a URL",
        })?;
        let shown = redact_parsed(&parsed);
        let work = async {
            match parsed.scheme() {
                "http" | "https" => self.fetch_http(parsed, &shown, token, prev).await,
                "file" => self.fetch_file(&parsed, &shown, prev).await,
                _ => Err(FetchError::BadUrl {
                    url: shown.clone(),
                    why: "only https, http and file URLs are fetched",
                }),
            }
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout {
                url: shown.clone(),
                timeout: self.timeout,
            }),
        }
    }

    async fn fetch_http(
        &self,
        mut url: Url,
        shown: &str,
        token: Option<&str>,
        prev: &Validators,
    ) -> Result<Fetched, FetchError> {
        if url.host_str().is_none_or(str::is_empty) {
            return Err(FetchError::BadUrl {
                url: shown.to_owned(),
                why: "no host",
            });
        }
        // Take `user:pass@` off the URL ourselves: reqwest would add it as a second
        // Authorization header next to the bearer token.
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode);
        let _ = url.set_username("");
        let _ = url.set_password(None);

        let mut request = self.client.get(url);
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", token.trim()))
                .map_err(|_| FetchError::BadToken)?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        } else if !user.is_empty() || password.is_some() {
            request = request.basic_auth(user, password);
        }
        let conditional = !prev.is_empty();
        if let Some(etag) = prev.etag.as_deref().and_then(header_value) {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(date) = prev.last_modified.as_deref().and_then(header_value) {
            request = request.header(IF_MODIFIED_SINCE, date);
        }

        let mut response = request
            .send()
            .await
            .map_err(|e| self.transport_error(e, shown))?;
        let status = response.status();
        if status == StatusCode::NOT_MODIFIED && conditional {
            return Ok(Fetched::Unchanged);
        }
        if !status.is_success() {
            return Err(FetchError::Status {
                url: shown.to_owned(),
                status,
                hint: status_hint(status),
            });
        }
        let too_large = || FetchError::TooLarge {
            url: shown.to_owned(),
            limit: self.max_bytes,
        };
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes)
        {
            return Err(too_large());
        }
        let validators = Validators {
            etag: header_text(response.headers(), ETAG),
            last_modified: header_text(response.headers(), LAST_MODIFIED),
        };
        let mut bytes = Vec::with_capacity(
            response
                .content_length()
                .unwrap_or(0)
                .min(self.max_bytes)
                .min(1 << 20) as usize,
        );
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.transport_error(e, shown))?
        {
            if (bytes.len() + chunk.len()) as u64 > self.max_bytes {
                return Err(too_large());
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Fetched::Body { bytes, validators })
    }

    async fn fetch_file(
        &self,
        url: &Url,
        shown: &str,
        prev: &Validators,
    ) -> Result<Fetched, FetchError> {
        if url.query().is_some() || url.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(FetchError::BadUrl {
                url: shown.to_owned(),
                why: "a file URL has no host and no query",
            });
        }
        let path = url.to_file_path().map_err(|_| FetchError::BadUrl {
            url: shown.to_owned(),
            why: "not a local absolute path",
        })?;
        let io = |source| FetchError::Io {
            path: path.clone(),
            source,
        };
        let meta = tokio::fs::metadata(&path).await.map_err(io)?;
        if !meta.is_file() {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            )));
        }
        let validators = file_validators(&meta);
        if prev.etag.is_some() && prev.etag == validators.etag {
            return Ok(Fetched::Unchanged);
        }
        let too_large = || FetchError::TooLarge {
            url: shown.to_owned(),
            limit: self.max_bytes,
        };
        if meta.len() > self.max_bytes {
            return Err(too_large());
        }
        let file = tokio::fs::File::open(&path).await.map_err(io)?;
        let mut bytes = Vec::with_capacity(meta.len() as usize);
        // One byte past the limit tells a file that grew since `metadata` from one at the limit.
        file.take(self.max_bytes.saturating_add(1))
            .read_to_end(&mut bytes)
            .await
            .map_err(io)?;
        if bytes.len() as u64 > self.max_bytes {
            return Err(too_large());
        }
        Ok(Fetched::Body { bytes, validators })
    }

    fn transport_error(&self, e: reqwest::Error, shown: &str) -> FetchError {
        let url = shown.to_owned();
        let e = e.without_url();
        if e.is_timeout() {
            return FetchError::Timeout {
                url,
                timeout: self.timeout,
            };
        }
        let detail = chain(&e);
        if e.is_redirect() {
            FetchError::Redirect { url, detail }
        } else if has_tls_error(&e) {
            FetchError::Tls { url, detail }
        } else if e.is_connect() {
            FetchError::Connect { url, detail }
        } else {
            FetchError::Transport { url, detail }
        }
    }
}

/// Why the redirect to `next` after visiting `previous` (the first URL first) is refused.
fn redirect_refusal(previous: &[Url], next: &Url) -> Option<&'static str> {
    if previous.len() > MAX_REDIRECTS {
        return Some("more than 5 redirects");
    }
    match next.scheme() {
        "https" => None,
        "http" if previous.iter().any(|u| u.scheme() == "https") => {
            Some("a redirect from https to http")
        }
        "http" => None,
        _ => Some("a redirect to neither https nor http"),
    }
}

/// Why a status failed, when the fix is clear.
fn status_hint(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 | 403 => " (check the calendar's token_file)",
        404 | 410 => " (check the calendar url)",
        304 => " (without a validator having been sent)",
        300..=399 => " (a redirect not followed)",
        _ => "",
    }
}

/// The validators of a file: its length and modification time in nanoseconds.
fn file_validators(meta: &std::fs::Metadata) -> Validators {
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    Validators {
        etag: Some(format!("file:{}:{mtime_ns}", meta.len())),
        last_modified: None,
    }
}

fn header_value(text: &str) -> Option<HeaderValue> {
    HeaderValue::from_str(text).ok()
}

fn header_text(
    headers: &reqwest::header::HeaderMap,
    name: reqwest::header::HeaderName,
) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The error and its sources, joined by ": ".
fn chain(e: &dyn StdError) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(source) = next {
        let text = source.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = source.source();
    }
    out
}

/// Is a rustls error somewhere in the chain? (`io::Error::source` skips the error it wraps,
/// so look inside each `io::Error` too.)
fn has_tls_error(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        if err.is::<rustls::Error>() {
            return true;
        }
        if let Some(inner) = err
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            && has_tls_error(inner)
        {
            return true;
        }
        next = err.source();
    }
    false
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex_digit(bytes[i + 1]), hex_digit(bytes[i + 2]))
        {
            out.push(h << 4 | l);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// A URL as it may be shown in a log, a metric or a message: `scheme://host[:port]/path`,
/// with `?…` where a query was, without `user:pass@` or a fragment, and with each path
/// segment that looks like a secret (16 characters or more, 4 of them digits, as in the
/// "secret address" of Google or Outlook calendars) shown as `…`. Not a URL → `(not a URL)`.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(parsed) => redact_parsed(&parsed),
        Err(_) => "(not a URL)".to_owned(),
    }
}

fn redact_parsed(url: &Url) -> String {
    let mut out = format!("{}://", url.scheme());
    if let Some(host) = url.host_str() {
        out.push_str(host);
    }
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    if url.cannot_be_a_base() {
        out.push('…');
    } else {
        for segment in url.path().split('/').skip(1) {
            out.push('/');
            let digits = segment.bytes().filter(u8::is_ascii_digit).count();
            if segment.len() >= 16 && digits >= 4 {
                out.push('…');
            } else {
                out.push_str(segment);
            }
        }
    }
    if url.query().is_some() {
        out.push_str("?…");
    }
    out
}

fn human_bytes(n: u64) -> String {
    const KIB: u64 = 1024;
    const MIB: u64 = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else if n >= KIB && n.is_multiple_of(KIB) {
        format!("{} KiB", n / KIB)
    } else {
        format!("{n} bytes")
    }
}

fn human_duration(d: Duration) -> String {
    if d.subsec_millis() == 0 && d.as_secs() > 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// A feed's fetching health, kept per feed by the server beside its last good copy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedHealth {
    /// The validators of the last good copy: what the next fetch sends as `prev`.
    pub validators: Validators,
    /// When the feed was last fetched and found good (new and parsed, or unchanged).
    pub last_success: Option<DateTime<Utc>>,
    /// When the last attempt ended, good or not.
    pub last_attempt: Option<DateTime<Utc>>,
    /// The reason of the last failure ([`FetchError::reason`], or e.g. `garbage` from the
    /// parser); `None` after a success.
    pub last_error: Option<&'static str>,
    /// The last failure's message, redacted as every [`FetchError`] is; `None` after a success.
    pub last_error_message: Option<String>,
    /// Failures since the last success.
    pub consecutive_failures: u32,
}

impl FeedHealth {
    /// A new copy was fetched and parsed: its validators are sent next time.
    pub fn record_success(&mut self, at: DateTime<Utc>, validators: Validators) {
        self.validators = validators;
        self.record_unchanged(at);
    }

    /// The feed is still the last good copy.
    pub fn record_unchanged(&mut self, at: DateTime<Utc>) {
        self.last_success = Some(at);
        self.last_attempt = Some(at);
        self.last_error = None;
        self.last_error_message = None;
        self.consecutive_failures = 0;
    }

    /// A fetch failed; the validators (and the copy) stay the last good one's.
    pub fn record_error(&mut self, at: DateTime<Utc>, error: &FetchError) {
        self.record_failure(at, error.reason(), error.to_string());
    }

    /// The feed failed for `reason` (e.g. `garbage`: fetched, but not a feed).
    pub fn record_failure(&mut self, at: DateTime<Utc>, reason: &'static str, message: String) {
        self.last_attempt = Some(at);
        self.last_error = Some(reason);
        self.last_error_message = Some(message);
        self.consecutive_failures = self.consecutive_failures.saturating_add(1);
    }

    /// Did the last attempt succeed?
    pub fn is_ok(&self) -> bool {
        self.last_success.is_some() && self.consecutive_failures == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[test]
    fn redirects_never_go_from_https_to_http_nor_on_forever() {
        let https = u("https://a.example/x.ics");
        let http = u("http://b.example/x.ics");
        assert_eq!(redirect_refusal(std::slice::from_ref(&http), &https), None);
        assert_eq!(redirect_refusal(std::slice::from_ref(&http), &http), None);
        assert!(redirect_refusal(std::slice::from_ref(&https), &http).is_some());
        assert!(redirect_refusal(&[http.clone(), https.clone()], &http).is_some());
        assert!(redirect_refusal(std::slice::from_ref(&https), &u("ftp://a.example/x")).is_some());
        let five = vec![http.clone(); MAX_REDIRECTS];
        assert_eq!(redirect_refusal(&five, &http), None);
        let six = vec![http.clone(); MAX_REDIRECTS + 1];
        assert!(redirect_refusal(&six, &http).is_some());
    }

    #[test]
    fn redaction_keeps_host_and_path_only() {
        assert_eq!(
            redact_url("https://alice:pw@t.example:8443/a/rooms.ics?token=s3cret#frag"),
            "https://t.example:8443/a/rooms.ics?…"
        );
        assert_eq!(
            redact_url("https://calendar.example/ical/x/private-0a1b2c3d4e5f6789/basic.ics"),
            "https://calendar.example/ical/x/…/basic.ics"
        );
        assert_eq!(
            redact_url("file:///srv/cal/rooms.ics"),
            "file:///srv/cal/rooms.ics"
        );
        assert_eq!(redact_url("not a url s3cret"), "(not a URL)");
    }

    #[test]
    fn sizes_and_durations_read_naturally() {
        assert_eq!(human_bytes(16 << 20), "16 MiB");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(1000), "1000 bytes");
        assert_eq!(human_duration(Duration::from_millis(500)), "500 ms");
        assert_eq!(human_duration(Duration::from_secs(30)), "30 s");
    }

    #[test]
    fn health_counts_failures_and_keeps_the_good_validators() {
        let t = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap();
        let mut h = FeedHealth::default();
        assert!(!h.is_ok());
        let v = Validators {
            etag: Some("\"1\"".into()),
            last_modified: None,
        };
        h.record_success(t, v.clone());
        assert!(h.is_ok());
        h.record_failure(t, "garbage", "not a feed".into());
        h.record_failure(t, "timeout", "slow".into());
        assert_eq!(h.consecutive_failures, 2);
        assert_eq!(h.last_error, Some("timeout"));
        assert_eq!(h.validators, v);
        assert!(!h.is_ok());
        h.record_unchanged(t);
        assert!(h.is_ok());
        assert_eq!(h.last_error, None);
        assert_eq!(h.validators, v);
    }
}
