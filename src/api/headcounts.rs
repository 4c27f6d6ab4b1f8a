//! Head counts through the API (`POST /api/v1/rooms/{id}/headcounts`, a CSV import at
//! `POST /api/v1/headcounts`) and the accuracy figures they give (`GET /api/v1/accuracy`).
//! The checks live in `tellijn_wire::headcount`, the storage in [`crate::headcounts`].
//!
//! Recording needs HTTP Basic credentials of a steward or of a user with `headcounts = true`:
//! none is a 401, another user a 403. Only stewards see exact numbers, so only they may
//! record earlier times (`at`) or import a CSV; anyone else records a count of now and sees
//! `counted` banded like every other number. With `"reset": true` (a count of now, a
//! line-counted room, `[bookings] headcount_resets = true`) the count also sets the room's
//! occupancy: audited (`reset` in the line) and stored (`reset` in the row) before the
//! processors are told. The audit line (`headcount`, `headcount_import`) is
//! written and waited for before the row is stored; when it cannot be written nothing is
//! stored and the answer is a 503, as for audited reads.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use tellijn_config::AuditEvent;
use tellijn_config::campus::Role;

use super::auth::authenticate;
use super::{Api, ApiError, Reader, band, no_store, path_error, reader};
use crate::headcounts::{Checked, HeadcountError};

/// A stored head count, as answered.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct HeadcountResponse {
    pub room: String,
    pub at: String,
    pub people: u32,
    /// Tellijn's occupancy of the room at that moment; null when it is a band for this user.
    pub counted: Option<i32>,
    /// counted − people; null with `counted`.
    pub error: Option<i64>,
    /// Set when `counted` is a band: Tellijn counted fewer than this.
    pub fewer_than: Option<u32>,
    /// The room's occupancy was set to `people` (`"reset": true`).
    #[serde(default)]
    pub reset: bool,
}

fn status(status: StatusCode, message: impl Into<String>) -> ApiError {
    ApiError {
        status,
        message: message.into(),
    }
}

fn audit_failed(e: impl std::fmt::Display) -> ApiError {
    tracing::error!("Writing the audit log failed, refusing a head count: {e}");
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "the audit log cannot be written, so the head count was not stored; tell the administrator",
    )
}

impl From<HeadcountError> for ApiError {
    fn from(e: HeadcountError) -> ApiError {
        match e {
            HeadcountError::Input(m) => ApiError::bad(m),
            HeadcountError::Audit(m) => audit_failed(m),
            HeadcountError::Internal(m) => {
                tracing::error!("Storing head counts failed: {m}");
                ApiError::internal(m)
            }
        }
    }
}

fn body_error(e: BytesRejection, max: usize) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return status(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {max} bytes; send less"),
        );
    }
    ApiError::bad(format!("the body cannot be read ({})", e.body_text()))
}

/// The user recording head counts (name, role): a steward, or a user with `headcounts = true`.
async fn recorder(api: &Api, headers: &HeaderMap) -> Result<(String, Role), ApiError> {
    let Some((name, role)) = authenticate(api, headers).await? else {
        return Err(ApiError::unauthorized(
            "recording a head count needs HTTP Basic credentials of a steward or of a [[users]] entry with headcounts = true",
        ));
    };
    match api.campus().users.iter().find(|u| u.name == name) {
        Some(u) if u.records_headcounts() => Ok((name, role)),
        _ => Err(status(
            StatusCode::FORBIDDEN,
            format!(
                "user {name:?} may not record head counts; a steward may, or a user given headcounts = true in [[users]]"
            ),
        )),
    }
}

/// `POST /api/v1/rooms/{id}/headcounts`: `{"people": N, "at": "RFC 3339"}` (`at` optional).
pub async fn record_headcount(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let Path(id) = id.map_err(path_error)?;
    let (user, role) = recorder(&api, &headers).await?;
    let campus = api.campus();
    let Some(room) = campus.room(&id) else {
        return Err(ApiError::not_found(format!(
            "no room {id:?}; GET /api/v1/rooms lists them"
        )));
    };
    let max = tellijn_wire::headcount::MAX_BODY;
    let body = body.map_err(|e| body_error(e, max))?;
    let now = api.clock.now();
    let b = tellijn_wire::headcount::parse_body(&body, now).map_err(|e| ApiError::bad(e.0))?;
    // Only stewards see exact numbers: anyone else could learn a past minute's exact
    // occupancy from `counted` (or from the accuracy figures) by recording a made-up count.
    // They count what is in front of them, now, and see Tellijn's number banded.
    if role != Role::Steward && (now - b.at).num_seconds().abs() > 60 {
        return Err(status(
            StatusCode::FORBIDDEN,
            format!(
                "user {user:?} may record head counts of now only (leave out \"at\"); a steward may record earlier ones"
            ),
        ));
    }
    if b.reset {
        if !api.campus().bookings.headcount_resets {
            return Err(status(
                StatusCode::FORBIDDEN,
                "this campus does not let head counts set a room's occupancy; leave out \"reset\", or ask the administrator to set [bookings] headcount_resets = true",
            ));
        }
        if api
            .campus()
            .sensors
            .iter()
            .any(|s| s.zones.iter().any(|z| z.room == room.id))
        {
            return Err(ApiError::bad(format!(
                "room {:?} takes its occupancy from camera zones, whose next reading replaces any number set by hand; leave out \"reset\"",
                room.id
            )));
        }
    }
    let live = api.live.room(&room.id);
    let live = live.ts.is_some().then_some(live.occupancy);
    let Some(counted) =
        crate::headcounts::counted_at(&api.history, live, &room.id, b.at, now).await?
    else {
        return Err(ApiError::bad(format!(
            "Tellijn has no occupancy of room {:?} for {}, so there is nothing to compare with; record a head count as you take it (leave out \"at\"), or give a time the history covers",
            room.id,
            b.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        )));
    };
    let row = Checked {
        room: room.id.clone(),
        at: b.at,
        people: b.people,
        recorded_by: user.clone(),
        counted,
        reset: b.reset,
    };
    let at = row.at.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true);
    api.audit
        .record_confirmed(AuditEvent::headcount(
            &user,
            "api",
            &row.room,
            at.clone(),
            row.people,
            row.counted,
            row.reset,
        ))
        .map_err(audit_failed)?;
    crate::headcounts::write(&api.data_dir, std::slice::from_ref(&row))?;
    if row.reset {
        // Stored first: the day's rebuild applies it even should the server stop now.
        let set = tellijn_wire::SensorEvent::SetOccupancy {
            room: row.room.clone(),
            people: row.people,
        };
        let sent = api
            .occupancy
            .as_ref()
            .is_some_and(|tx| tx.try_send(set).is_ok());
        if !sent {
            return Err(status(
                StatusCode::SERVICE_UNAVAILABLE,
                "the head count is stored, but the server is too busy to set the room's occupancy now; send it again with \"reset\": true",
            ));
        }
    }
    let min = api.campus().privacy.public_min_count;
    let shown = band(row.counted.max(0) as u64, min, Reader::User(role));
    let answer = HeadcountResponse {
        room: row.room,
        at,
        people: row.people,
        counted: shown.map(|_| row.counted),
        error: shown.map(|_| i64::from(row.counted) - i64::from(row.people)),
        fewer_than: shown.is_none().then_some(min),
        reset: row.reset,
    };
    Ok((StatusCode::CREATED, no_store(Json(answer))).into_response())
}

/// What a CSV import through the API stored.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
pub struct ImportResponse {
    pub rows: usize,
    pub rooms: Vec<String>,
}

/// `POST /api/v1/headcounts` with `Content-Type: text/csv`: `room,at,people` lines.
pub async fn import_headcounts(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let (user, role) = recorder(&api, &headers).await?;
    if role != Role::Steward {
        // Imports bring in earlier times, whose exact numbers only stewards see.
        return Err(status(
            StatusCode::FORBIDDEN,
            format!("user {user:?} may not import head counts; a steward may"),
        ));
    }
    let csv = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("text/csv"));
    if !csv {
        return Err(status(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the head counts as Content-Type: text/csv, with the header room,at,people",
        ));
    }
    let body = body.map_err(|e| body_error(e, tellijn_wire::headcount::MAX_CSV))?;
    let target = crate::headcounts::Target {
        campus: &api.campus(),
        history: &api.history,
        audit: &api.audit,
        data_dir: &api.data_dir,
    };
    let imported = crate::headcounts::import(&target, &body, &user, "api", api.clock.now()).await?;
    let rooms: std::collections::BTreeSet<String> =
        imported.rows.iter().map(|r| r.room.clone()).collect();
    Ok((
        StatusCode::CREATED,
        no_store(Json(ImportResponse {
            rows: imported.rows.len(),
            rooms: rooms.into_iter().collect(),
        })),
    )
        .into_response())
}

/// `GET /api/v1/accuracy`: per room and per sensor, for signed-in users (an audited read).
pub async fn accuracy(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reader = reader(
        &api,
        &headers,
        "accuracy",
        &["headcounts", "rooms", "sensors"],
    )
    .await?;
    if reader == Reader::Anonymous {
        return Err(ApiError::unauthorized(
            "the accuracy figures need HTTP Basic credentials of a [[users]] entry; /transparency shows them per room",
        ));
    }
    let a = crate::headcounts::accuracy(&api.campus(), &api.history).await?;
    Ok(no_store(Json(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::live::Live;
    use axum::http::HeaderValue;
    use tellijn_config::{AuditLog, Campus, Metrics, Refusals};
    use tellijn_queries::History;
    use tellijn_wire::Clock;

    #[tokio::test]
    async fn a_head_count_that_cannot_be_audited_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let hash = crate::secrets::hash_demo("ada-pw").unwrap();
        let text = tellijn_test_support::CampusToml::new()
            .section(&format!(
                "[server]\ndata_dir = \"{}\"\n\n[[users]]\nname = \"ada\"\npassword_hash = \"{hash}\"\nrole = \"steward\"\n",
                dir.path().display()
            ))
            .building("b", "B")
            .room("r1", "b", "One", "study", 10)
            .toml();
        let campus = Campus::parse(&text, "test campus").unwrap();
        let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
        // Today's audit file cannot be opened: a directory stands in its place.
        std::fs::create_dir(
            dir.path()
                .join(format!("audit/{}.jsonl", chrono::Utc::now().date_naive())),
        )
        .unwrap();
        let history = Arc::new(History::open(dir.path(), Some(&campus)).await.unwrap());
        let live = Arc::new(Live::default());
        live.apply(&tellijn_processors::Output {
            topic: "tellijn/v1/rooms/r1/occupancy".into(),
            payload: br#"{"occupancy":3,"ts":"2026-11-30T10:00:00Z"}"#.to_vec(),
        });
        let api = Arc::new(Api::new(
            Arc::new(campus),
            live,
            history,
            Clock::system(),
            dir.path().to_path_buf(),
            Arc::new(Refusals::new(audit)),
            Metrics::new(&mut prometheus_client::registry::Registry::default()),
        ));
        let mut headers = HeaderMap::new();
        let basic =
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "ada:ada-pw");
        headers.insert(
            header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).unwrap(),
        );
        let e = record_headcount(
            State(api),
            headers,
            Ok(Path("r1".to_owned())),
            Ok(Bytes::from_static(br#"{"people": 4}"#)),
        )
        .await
        .unwrap_err();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(e.message.contains("not stored"), "{}", e.message);
        assert!(
            !dir.path()
                .join("headcounts")
                .read_dir()
                .unwrap()
                .any(|_| true),
            "a head count was stored without its audit line"
        );
    }
}
