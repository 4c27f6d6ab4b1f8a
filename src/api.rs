//! The HTTP API (`/api/v1`), its OpenAPI document and the public free-places page (`/`).
//!
//! Who may see what:
//! - anonymous: the public rooms (never offices) and the buildings' totals over their public
//!   rooms ([`crate::view`]); every number below `public_min_count` is a band
//!   (`occupancy: null`, `fewer_than: N`), never exact; history on one fixed grid
//!   ([`crate::public_history`]);
//! - `[[users]]` with HTTP Basic credentials: every room; role `viewer` still sees bands,
//!   role `steward` exact numbers. Wrong credentials are a 401, never a silent anonymous view.
//!
//! Every request of a named user (steward or viewer) to `/api/v1/rooms…` and
//! `/api/v1/buildings` is audited (`read`: user, resource, tables) before anything is read; when
//! the audit log cannot be written the request fails. Anonymous requests name nobody and are
//! not audited; neither are the public page, the transparency report and the OpenAPI document.
//! Refused credentials (401) are counted and audited aggregated per reason and minute; an
//! unknown user name costs the same argon2id verification as a wrong password.
//!
//! Current numbers come from [`Live`] (the processors' retained outputs); history from the
//! `occupancy` table through DataFusion.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tellijn_config::campus::{Role, Room};
use tellijn_config::metrics::{ReasonLabels, auth_reason};
use tellijn_config::refusals::{Example, kind};
use tellijn_config::{AuditEvent, AuditLog, Campus, Metrics, Refusals};
use tellijn_queries::History;
use tellijn_wire::Clock;

use crate::live::Live;

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");
/// The free-places page: one file, no external assets.
pub const PAGE: &str = include_str!("page.html");

// The query parameters are parsed and checked in the wire crate (light enough to fuzz).
pub use tellijn_wire::query::{
    HistoryQuery, HistoryRange, MAX_HISTORY_ROWS, QueryError, RoomsQuery, history_range,
};

/// How long a verified Basic credential is remembered (argon2 is deliberately slow).
const CREDENTIAL_TTL: Duration = Duration::from_secs(300);

/// A credential checked recently: SHA-256 of the password, the role, when.
type Verified = ([u8; 32], Role, Instant);

/// What the API needs.
pub struct Api {
    pub campus: Arc<Campus>,
    pub live: Arc<Live>,
    pub history: Arc<History>,
    pub clock: Clock,
    pub data_dir: std::path::PathBuf,
    audit: Arc<AuditLog>,
    refusals: Arc<Refusals>,
    metrics: Metrics,
    verified: Mutex<HashMap<String, Verified>>,
    openapi: String,
}

impl Api {
    pub fn new(
        campus: Arc<Campus>,
        live: Arc<Live>,
        history: Arc<History>,
        clock: Clock,
        data_dir: std::path::PathBuf,
        refusals: Arc<Refusals>,
        metrics: Metrics,
    ) -> Api {
        Api {
            data_dir,
            audit: refusals.log().clone(),
            refusals,
            metrics,
            live,
            history,
            clock,
            verified: Mutex::new(HashMap::new()),
            openapi: openapi_for(&campus),
            campus,
        }
    }
}

/// Who is asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    Anonymous,
    User(Role),
}

impl Reader {
    fn exact(self) -> bool {
        self == Reader::User(Role::Steward)
    }
    fn sees_all_rooms(self) -> bool {
        matches!(self, Reader::User(_))
    }
}

/// An API error: a status and a message that says what to fix.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }
    pub(crate) fn internal(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }
    fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: message.into(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> ApiError {
        ApiError::bad(e.0)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(serde_json::json!({ "error": self.message })),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"tellijn\""),
            );
        }
        r
    }
}

/// Checks HTTP Basic credentials, if any, against `[[users]]`.
/// The named user and role, or `None` for an anonymous request. A refusal (401) is counted in
/// `tellijn_auth_failures_total{reason="http_…"}` and audited aggregated, like every login of
/// someone who has not authenticated.
async fn authenticate(api: &Api, headers: &HeaderMap) -> Result<Option<(String, Role)>, ApiError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let refuse = |reason: &'static str, user: Option<&str>, message: &str| {
        api.metrics
            .auth_failures
            .get_or_create(&ReasonLabels { reason })
            .inc();
        api.refusals.note(kind::AUTH_FAILURE, reason, None, || {
            Example::new(Some("http"), user, None)
        });
        ApiError::unauthorized(message)
    };
    let malformed = || {
        refuse(
            auth_reason::HTTP_MALFORMED,
            None,
            "send HTTP Basic credentials of a [[users]] entry, or none for the public view",
        )
    };
    let value = value.to_str().map_err(|_| malformed())?;
    let encoded = value.strip_prefix("Basic ").ok_or_else(malformed)?.trim();
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| malformed())?;
    let text = String::from_utf8(decoded).map_err(|_| malformed())?;
    let (name, password) = text.split_once(':').ok_or_else(malformed)?;
    // A credential verified recently is answered from the cache, before and without waiting
    // for a verification slot.
    let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
    {
        let cache = api.verified.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((d, role, at)) = cache.get(name)
            && *d == digest
            && at.elapsed() < CREDENTIAL_TTL
        {
            return Ok(Some((name.to_owned(), *role)));
        }
    }
    const WRONG: &str = "wrong user name or password";
    let pw = password.to_owned();
    let Some(user) = api.campus.users.iter().find(|u| u.name == name) else {
        // The same deliberately slow hash as for a known user: no user names by timing.
        let hash = tellijn_config::secrets::DUMMY_HASH.to_owned();
        tellijn_config::secrets::verify_password(hash, pw).await;
        return Err(refuse(auth_reason::HTTP_UNKNOWN_USER, Some(name), WRONG));
    };
    let hash = user.password_hash.clone();
    let ok = tellijn_config::secrets::verify_password(hash, pw).await;
    if !ok {
        return Err(refuse(auth_reason::HTTP_BAD_PASSWORD, Some(name), WRONG));
    }
    let mut cache = api.verified.lock().unwrap_or_else(|p| p.into_inner());
    // Only configured users are ever cached: the map is bounded by `[[users]]`.
    cache.insert(name.to_owned(), (digest, user.role, Instant::now()));
    Ok(Some((user.name.clone(), user.role)))
}

/// Checks HTTP Basic credentials, if any, against `[[users]]`; a named user's request for
/// `resource` (the path under `/api/v1/`), reading `tables`, is audited before anything is
/// read (`live` is the current occupancy held in memory).
pub async fn reader(
    api: &Api,
    headers: &HeaderMap,
    resource: &str,
    tables: &[&str],
) -> Result<Reader, ApiError> {
    let Some((name, role)) = authenticate(api, headers).await? else {
        return Ok(Reader::Anonymous);
    };
    if let Err(e) = api
        .audit
        .record(AuditEvent::api_read(&name, resource, tables))
    {
        tracing::error!("Writing the audit log failed, refusing an API read: {e}");
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the audit log cannot be written, so no data is read; tell the administrator"
                .to_owned(),
        });
    }
    Ok(Reader::User(role))
}

/// A number as the reader may see it: exact, or `None` below `min` for everyone but stewards.
pub fn band(n: u64, min: u32, reader: Reader) -> Option<u64> {
    if reader.exact() || n >= u64::from(min) {
        Some(n)
    } else {
        None
    }
}

/// One room now.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct RoomNow {
    pub id: String,
    pub name: String,
    pub building: String,
    pub kind: String,
    pub capacity: u32,
    pub public: bool,
    /// Exact people present, or null when below `fewer_than`.
    pub occupancy: Option<u64>,
    /// Set when `occupancy` is a band: fewer than this many people are present.
    pub fewer_than: Option<u32>,
    /// Free places; a lower bound when `occupancy` is a band.
    pub free: u64,
    /// `occupied` / `vacant` as sent to HVAC and lighting, once known.
    pub state: Option<String>,
    /// When the number was computed.
    pub updated: Option<String>,
}

fn room_now(api: &Api, r: &Room, reader: Reader) -> RoomNow {
    crate::view::room(&api.campus, &api.live, r, reader)
}

/// One building now.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct BuildingNow {
    pub id: String,
    pub name: String,
    /// Sum of the capacities of its rooms.
    pub capacity: u64,
    pub occupancy: Option<u64>,
    pub fewer_than: Option<u32>,
    pub updated: Option<String>,
}

pub async fn rooms(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    q: Result<Query<RoomsQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(query_error)?;
    let reader = reader(&api, &headers, "rooms", &["live", "rooms"]).await?;
    if let Some(b) = &q.building
        && !api.campus.buildings.iter().any(|x| &x.id == b)
    {
        return Err(ApiError::bad(format!(
            "unknown building {b:?}; GET /api/v1/buildings lists them"
        )));
    }
    let list: Vec<RoomNow> = api
        .campus
        .rooms
        .iter()
        .filter(|r| r.public || reader.sees_all_rooms())
        .filter(|r| q.building.as_ref().is_none_or(|b| &r.building == b))
        .map(|r| room_now(&api, r, reader))
        .collect();
    Ok(no_store(Json(list)))
}

fn find_room<'a>(api: &'a Api, id: &str, reader: Reader) -> Result<&'a Room, ApiError> {
    match api.campus.room(id) {
        Some(r) if r.public || reader.sees_all_rooms() => Ok(r),
        Some(_) => Err(ApiError::not_found(format!(
            "room {id:?} is not public; sign in with HTTP Basic credentials of a [[users]] entry to see it"
        ))),
        None => Err(ApiError::not_found(format!(
            "no room {id:?}; GET /api/v1/rooms lists them"
        ))),
    }
}

pub async fn room(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(path_error)?;
    let reader = reader(&api, &headers, &format!("rooms/{id}"), &["live", "rooms"]).await?;
    let r = find_room(&api, &id, reader)?;
    Ok(no_store(Json(room_now(&api, r, reader))))
}

pub async fn buildings(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reader = reader(&api, &headers, "buildings", &["buildings", "live", "rooms"]).await?;
    let list: Vec<BuildingNow> = api
        .campus
        .buildings
        .iter()
        .map(|b| crate::view::building(&api.campus, &api.live, b, reader))
        .collect();
    Ok(no_store(Json(list)))
}

/// One room's occupancy rows between `range.from` and `range.to`, grouped by `step` seconds
/// (one DataFusion query over `occupancy`, pruned by `date`): columns t, omin, oavg, omax, pin,
/// pout. The caller has validated every value formatted in: the room id exists in the config,
/// the times were parsed, the step is one of the allowed ones.
pub(crate) async fn occupancy_steps(
    api: &Api,
    room: &str,
    range: &tellijn_wire::query::HistoryRange,
    step: i64,
) -> Result<Vec<arrow::array::RecordBatch>, ApiError> {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let day = |t: DateTime<Utc>| t.format("%Y-%m-%d").to_string();
    let sql = format!(
        "SELECT CAST(floor(extract(epoch FROM minute) / {step}) AS BIGINT) * {step} AS t, \
         CAST(min(occupancy_min) AS BIGINT) AS omin, CAST(avg(occupancy_avg) AS DOUBLE) AS oavg, \
         CAST(max(occupancy_max) AS BIGINT) AS omax, CAST(sum(people_in) AS BIGINT) AS pin, \
         CAST(sum(people_out) AS BIGINT) AS pout \
         FROM occupancy WHERE room = '{room}' AND date >= '{d0}' AND date <= '{d1}' \
         AND minute >= TIMESTAMP '{from}' AND minute < TIMESTAMP '{to}' GROUP BY 1 ORDER BY 1",
        d0 = day(range.from - TimeDelta::days(1)),
        d1 = day(range.to + TimeDelta::days(1)),
        from = fmt(range.from),
        to = fmt(range.to),
    );
    api.history
        .batches(&sql)
        .await
        .map_err(|e| ApiError::internal(format!("reading the history failed: {e}")))
}

/// One step of a room's history.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryRow {
    pub start: String,
    pub occupancy_min: Option<u64>,
    pub occupancy_avg: Option<f64>,
    pub occupancy_max: Option<u64>,
    pub people_in: Option<u64>,
    pub people_out: Option<u64>,
}

/// A room's history.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HistoryResponse {
    pub room: String,
    pub from: String,
    pub to: String,
    pub step_seconds: i64,
    /// Set for readers who see bands: a null value means fewer than this.
    pub fewer_than: Option<u32>,
    pub rows: Vec<HistoryRow>,
}

pub async fn history(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    q: Result<Query<HistoryQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(path_error)?;
    let Query(q) = q.map_err(query_error)?;
    let reader = reader(
        &api,
        &headers,
        &format!("rooms/{id}/history"),
        &["occupancy", "rooms"],
    )
    .await?;
    let room = find_room(&api, &id, reader)?;
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let min = api.campus.privacy.public_min_count;
    if reader == Reader::Anonymous {
        let range = tellijn_wire::query::public_range(&q, api.clock.now())?;
        let rows = crate::public_history::rows(&api, room, &range).await?;
        return Ok(no_store(Json(HistoryResponse {
            room: room.id.clone(),
            from: fmt(range.from),
            to: fmt(range.to),
            step_seconds: range.step,
            fewer_than: Some(min),
            rows,
        })));
    }
    let range = history_range(&q, api.clock.now())?;
    // The room id exists in the config and the times were parsed above.
    let batches = occupancy_steps(&api, &room.id, &range, range.step).await?;
    let b = |v: i64| band(v.max(0) as u64, min, reader);
    let mut rows = Vec::new();
    for batch in &batches {
        let col = |i: usize| batch.column(i).as_primitive::<Int64Type>();
        let (t, omin, omax, pin, pout) = (col(0), col(1), col(3), col(4), col(5));
        let oavg = batch.column(2).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            if t.is_null(i) {
                continue;
            }
            let start = DateTime::from_timestamp(t.value(i), 0).unwrap_or_default();
            let avg = oavg.value(i);
            rows.push(HistoryRow {
                start: fmt(start),
                occupancy_min: b(omin.value(i)),
                occupancy_avg: (reader.exact() || avg >= f64::from(min))
                    .then_some((avg * 100.0).round() / 100.0),
                occupancy_max: b(omax.value(i)),
                people_in: b(pin.value(i)),
                people_out: b(pout.value(i)),
            });
        }
    }
    Ok(no_store(Json(HistoryResponse {
        room: room.id.clone(),
        from: fmt(range.from),
        to: fmt(range.to),
        step_seconds: range.step,
        fewer_than: (!reader.exact()).then_some(min),
        rows,
    })))
}

fn query_error(e: QueryRejection) -> ApiError {
    ApiError::bad(format!(
        "bad query string ({}); send each parameter at most once",
        e.body_text()
    ))
}

fn path_error(e: PathRejection) -> ApiError {
    ApiError::bad(format!("bad path ({})", e.body_text()))
}

fn no_store(j: impl IntoResponse) -> Response {
    let mut r = j.into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

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
        api.openapi.clone(),
    )
}

pub async fn transparency(State(api): State<Arc<Api>>) -> impl IntoResponse {
    let md = crate::transparency::report(&api.campus, &api.data_dir, api.clock.now());
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
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'",
            ),
        ],
        Html(PAGE),
    )
}

#[cfg(test)]
mod tests {
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
        ] {
            assert!(paths.contains_key(p), "{p} missing");
        }
    }

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for needle in ["http://", "https://", "//cdn", "@import"] {
            assert!(!PAGE.contains(needle), "the page refers to {needle}");
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
}
