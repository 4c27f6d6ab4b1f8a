use axum::http::HeaderMap;
use base64::Engine;
use chrono::{DateTime, Utc};

use super::*;

#[test]
fn bands_hide_small_numbers_from_all_but_stewards() {
    let anon = Reader::Anonymous;
    let viewer = Reader::User(Role::Viewer);
    let steward = Reader::User(Role::Steward);
    for n in 0..5 {
        assert_eq!(band(n, 5, anon), None);
        assert_eq!(band(n, 5, viewer), None);
        assert_eq!(band(n, 5, steward), Some(n));
    }
    assert_eq!(band(5, 5, anon), Some(5));
    assert_eq!(band(0, 0, anon), Some(0));
}

#[test]
fn a_bad_history_parameter_is_a_400_with_its_message() {
    // The checks themselves are tested (and fuzzed) in tellijn_wire::query.
    let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
    let q = HistoryQuery {
        step: Some("90s".into()),
        ..HistoryQuery::default()
    };
    let e = ApiError::from(history_range(&q, now).unwrap_err());
    assert_eq!(e.status, StatusCode::BAD_REQUEST);
    assert!(e.message.starts_with("step=\"90s\" must be whole minutes"));
}

#[test]
fn the_openapi_document_names_every_route() {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/rooms",
        "/api/v1/rooms/{id}",
        "/api/v1/rooms/{id}/history",
        "/api/v1/buildings",
        "/api/v1/rooms/{id}/headcounts",
        "/api/v1/headcounts",
        "/api/v1/accuracy",
    ] {
        assert!(paths.contains_key(p), "{p} missing");
    }
}

#[test]
fn the_page_loads_nothing_from_elsewhere() {
    for needle in ["http://", "https://", "//cdn", "@import"] {
        assert!(
            !crate::page::html().contains(needle),
            "the page refers to {needle}"
        );
    }
}

#[tokio::test]
async fn a_named_read_that_cannot_be_audited_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let hash = crate::secrets::hash_demo("ada-pw").unwrap();
    let campus = Campus::parse(
        &format!(
            "[server]\ndata_dir = \"{}\"\n\n[[users]]\nname = \"ada\"\npassword_hash = \"{hash}\"\nrole = \"steward\"\n",
            dir.path().display()
        ),
        "test campus",
    )
    .unwrap();
    let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
    // Today's audit file cannot be opened: a directory stands in its place.
    std::fs::create_dir(
        dir.path()
            .join(format!("audit/{}.jsonl", Utc::now().date_naive())),
    )
    .unwrap();
    let history = Arc::new(History::open(dir.path(), Some(&campus)).await.unwrap());
    let api = Api::new(
        Arc::new(campus),
        Arc::new(Live::default()),
        history,
        Clock::system(),
        dir.path().to_path_buf(),
        Arc::new(Refusals::new(audit)),
        Metrics::new(&mut prometheus_client::registry::Registry::default()),
    );
    let mut headers = HeaderMap::new();
    let basic = base64::engine::general_purpose::STANDARD.encode("ada:ada-pw");
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
    );
    let e = reader(&api, &headers, "rooms", &["live", "rooms"])
        .await
        .unwrap_err();
    assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(e.message.contains("audit log"), "{}", e.message);
    // An anonymous request names nobody: no audit line, no refusal.
    let anonymous = reader(&api, &HeaderMap::new(), "rooms", &["live", "rooms"]).await;
    assert_eq!(anonymous.unwrap(), Reader::Anonymous);
}
