//! The documents served beside the data: the OpenAPI document, the transparency report and the
//! free-places page.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use tellijn_config::Campus;

use super::{Api, OPENAPI};

/// The OpenAPI document with this campus's building ids as the `building` filter's values.
pub fn openapi_for(campus: &Campus) -> String {
    let mut doc: serde_json::Value = match serde_json::from_str(OPENAPI) {
        Ok(d) => d,
        Err(_) => return OPENAPI.to_owned(),
    };
    let ids: Vec<&str> = campus.buildings.iter().map(|b| b.id.as_str()).collect();
    if let Some(params) = doc
        .pointer_mut("/paths/~1api~1v1~1rooms/get/parameters")
        .and_then(|p| p.as_array_mut())
    {
        for p in params {
            if p["name"] == "building" && !ids.is_empty() {
                p["schema"]["enum"] = serde_json::json!(ids);
            }
        }
    }
    doc.to_string()
}

pub async fn openapi(State(api): State<Arc<Api>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        api.openapi.load().to_string(),
    )
}

pub async fn transparency(State(api): State<Arc<Api>>) -> impl IntoResponse {
    // Without the head counts (an error reading them) the rest of the report still shows.
    let accuracy = crate::headcounts::accuracy(&api.campus(), &api.history)
        .await
        .map_err(|e| tracing::warn!("The transparency report has no accuracy section: {e}"))
        .ok();
    let md = crate::transparency::report_with(
        &api.campus(),
        &api.data_dir,
        api.clock.now(),
        accuracy.as_ref(),
    );
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; style-src 'unsafe-inline'",
            ),
        ],
        Html(crate::transparency::page(&md)),
    )
}

pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CACHE_CONTROL, "no-cache"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; worker-src 'self'",
            ),
        ],
        Html(crate::page::html()),
    )
}

/// The page's service worker: keeps the page and the last public numbers for offline use.
pub async fn service_worker() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, "default-src 'self'"),
        ],
        crate::page::SERVICE_WORKER,
    )
}
