//! HTTP: the public port (the free-places page `/`, the anonymous API `/api/v1/…`, `/healthz`
//! and `/transparency`, nothing else) and the metrics listener (`/metrics` in the Prometheus
//! text format, on its own address, loopback by default, optionally behind a bearer token):
//! the metrics hold every room's exact numbers, so they never share the public port.
//!
//! Served by hyper's HTTP/1.1 connection directly rather than `axum::serve`, for its header read
//! timeout: a connection that has not sent a complete request header `[limits]
//! http_idle_timeout` after it opened, or after its last response, is closed. That closes idle
//! keep-alive connections and slow ("slowloris") headers alike. At most `[limits]
//! max_http_connections` are open at once; one more is closed at accept and counted in
//! `tellijn_http_refused_connections_total`, so HTTP cannot take the file descriptors the
//! sensors' MQTT connections need.
//!
//! `/healthz` answers 503 with the reason while the history or the audit log cannot be written
//! (a full disk, say), and `ok` again once they can.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use prometheus_client::registry::Registry;

/// Shared state of the metrics handler.
#[derive(Clone)]
pub struct MetricsState {
    pub registry: Arc<Mutex<Registry>>,
    /// SHA-256 of the bearer token a scrape must send; `None`: no token asked for.
    pub token_sha256: Option<[u8; 32]>,
}

/// The metrics listener's router: `/metrics` only.
pub fn metrics_router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Parses `[server] metrics_token_sha256` (validated as 64 hex digits by the config).
pub fn token_sha256(hex_text: &str) -> Option<[u8; 32]> {
    let bytes = hex::decode(hex_text).ok()?;
    bytes.try_into().ok()
}

/// Does the request carry the bearer token? Compares SHA-256 digests in constant time (one
/// SHA-256 per scrape, no argon2: the token is random, not a password).
fn bearer_ok(expected: &[u8; 32], headers: &axum::http::HeaderMap) -> bool {
    use sha2::{Digest, Sha256};
    let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let got: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
    let diff = got
        .iter()
        .zip(expected)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    std::hint::black_box(diff) == 0
}

/// The public router: the page, the anonymous API, `/healthz` and `/transparency`; every other
/// path is a 404.
pub fn router(api: Arc<crate::api::Api>, health: tellijn_config::health::Health) -> Router {
    use crate::api;
    let api_routes = Router::new()
        .route("/", get(api::page))
        .route("/sw.js", get(api::service_worker))
        .route("/transparency", get(api::transparency))
        .route("/api/v1/openapi.json", get(api::openapi))
        .route("/api/v1/rooms", get(api::rooms))
        .route("/api/v1/rooms/{id}", get(api::room))
        .route("/api/v1/rooms/{id}/history", get(api::history))
        .route("/api/v1/buildings", get(api::buildings))
        .route(
            "/api/v1/rooms/{id}/headcounts",
            post(api::record_headcount)
                .layer(DefaultBodyLimit::max(tellijn_wire::headcount::MAX_BODY)),
        )
        .route(
            "/api/v1/headcounts",
            post(api::import_headcounts)
                .layer(DefaultBodyLimit::max(tellijn_wire::headcount::MAX_CSV)),
        )
        .route("/api/v1/accuracy", get(api::accuracy))
        .with_state(api);
    Router::new()
        .route("/healthz", get(healthz))
        .with_state(health)
        .merge(api_routes)
}

/// OpenMetrics for scrapers that ask for it (Prometheus does), else the Prometheus text format.
async fn metrics(
    State(s): State<MetricsState>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    if let Some(expected) = &s.token_sha256
        && !bearer_ok(expected, &headers)
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer realm=\"tellijn metrics\"")],
            "send the metrics token as Authorization: Bearer (Prometheus: authorization: { type: Bearer, credentials_file: … })\n",
        )
            .into_response();
    }
    let mut body = String::new();
    let openmetrics = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    let registry = s.registry.lock().unwrap_or_else(|p| p.into_inner());
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) if openmetrics => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        ),
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            tellijn_config::metrics::to_prometheus_text(&body),
        ),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            e.to_string(),
        ),
    }
    .into_response()
}

/// How [`serve`] bounds its connections (from `[limits]`).
#[derive(Clone)]
pub struct ServeLimits {
    /// A connection with no complete request header for this long is closed.
    pub idle: Duration,
    /// Connections open at once; more are closed at accept.
    pub max_connections: usize,
    /// Counts the connections closed for `max_connections`.
    pub refused: prometheus_client::metrics::counter::Counter,
}

/// Serves `app` on `listener` until the task is aborted, closing connections idle for
/// `limits.idle` and any beyond `limits.max_connections`.
pub async fn serve(listener: tokio::net::TcpListener, app: Router, limits: ServeLimits) {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("HTTP accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = open.clone().try_acquire_owned() else {
            // Closed at once: waiting would hold the descriptor this limit is there to save.
            limits.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let idle = limits.idle;
        tokio::spawn(async move {
            let _place = place;
            let mut conn = hyper::server::conn::http1::Builder::new();
            conn.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(idle);
            if let Err(e) = conn
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await
            {
                tracing::debug!("HTTP connection ended: {e}");
            }
        });
    }
}

/// `ok`, or 503 naming what cannot be stored and why.
async fn healthz(State(health): State<tellijn_config::health::Health>) -> impl IntoResponse {
    let problems = health.problems();
    if problems.is_empty() {
        return (StatusCode::OK, "ok\n".to_owned());
    }
    let mut body = String::new();
    for (what, message) in problems {
        body.push_str(&format!("failing: {what}: {message}\n"));
    }
    (StatusCode::SERVICE_UNAVAILABLE, body)
}
