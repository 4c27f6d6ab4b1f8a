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
//!
//! # Layout
//! - `auth`: who is asking ([`reader`]): HTTP Basic credentials and the audit line.
//! - `now`: current rooms and buildings ([`rooms`], [`room`], [`buildings`], [`band`]).
//! - `history`: a room's history ([`history`]).
//! - `documents`: [`openapi`], [`transparency`] and the free-places [`page`].
//! - `headcounts`: recording head counts ([`record_headcount`], [`import_headcounts`]) and the
//!   [`accuracy`] they give (see [`crate::headcounts`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tellijn_config::campus::Role;
use tellijn_config::{AuditLog, Campus, Metrics, Refusals};
use tellijn_queries::History;
use tellijn_wire::Clock;

use crate::live::Live;

mod auth;
mod documents;
mod headcounts;
mod history;
mod now;

use auth::Verified;
pub use auth::reader;
pub use documents::{openapi, openapi_for, page, service_worker, transparency};
pub use headcounts::{
    HeadcountResponse, ImportResponse, accuracy, import_headcounts, record_headcount,
};
pub(crate) use history::occupancy_steps;
pub use history::{HistoryResponse, HistoryRow, history};
use now::find_room;
pub use now::{BuildingNow, RoomNow, StudyPlace, band, buildings, room, rooms};

/// The OpenAPI document of `/api/v1`.
pub const OPENAPI: &str = include_str!("../openapi.json");
/// The free-places page: one file, no external assets.
// The query parameters are parsed and checked in the wire crate (light enough to fuzz).
pub use tellijn_wire::query::{
    HistoryQuery, HistoryRange, MAX_HISTORY_ROWS, QueryError, RoomsQuery, history_range,
};

/// What the API needs.
pub struct Api {
    /// Swapped whole by a reload ([`Api::set_campus`]).
    campus: arc_swap::ArcSwap<Campus>,
    pub live: Arc<Live>,
    pub history: Arc<History>,
    pub clock: Clock,
    pub data_dir: std::path::PathBuf,
    audit: Arc<AuditLog>,
    refusals: Arc<Refusals>,
    metrics: Metrics,
    verified: Mutex<HashMap<String, Verified>>,
    openapi: arc_swap::ArcSwap<String>,
    /// The processors' event queue, for head counts that set a room's occupancy (none in
    /// tests that run the API without processors: such a reset is a 503).
    occupancy: Option<tokio::sync::mpsc::Sender<tellijn_wire::SensorEvent>>,
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
            openapi: arc_swap::ArcSwap::from_pointee(openapi_for(&campus)),
            campus: arc_swap::ArcSwap::new(campus),
            occupancy: None,
        }
    }

    /// The campus in force.
    pub fn campus(&self) -> Arc<Campus> {
        self.campus.load_full()
    }

    /// Puts a reloaded campus in force: the next request sees its rooms, users and rules.
    /// Verified credentials are forgotten, so a removed user or a changed password or role
    /// takes effect at once rather than when the cache would have expired.
    pub fn set_campus(&self, campus: Arc<Campus>) {
        self.openapi.store(Arc::new(openapi_for(&campus)));
        self.campus.store(campus);
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Lets head counts set rooms' occupancy through the processors' event queue.
    pub fn with_occupancy(
        mut self,
        events: tokio::sync::mpsc::Sender<tellijn_wire::SensorEvent>,
    ) -> Api {
        self.occupancy = Some(events);
        self
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

#[cfg(test)]
mod tests;
