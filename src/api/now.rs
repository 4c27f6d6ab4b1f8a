//! The current occupancy of rooms and buildings, banded for everyone but stewards.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use tellijn_config::campus::Room;

use super::{Api, ApiError, Reader, RoomsQuery, no_store, path_error, query_error, reader};

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
    /// Set while the room is an open study place (empty and unbooked for `[bookings]
    /// study_place_min`): until when it is free. Shown to everyone who sees the room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_place: Option<StudyPlace>,
    /// The booking state, for named readers only (absent for rooms without a calendar).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub booking: Option<crate::bookings::payload::BookingNow>,
}

/// An open study place.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StudyPlace {
    /// RFC 3339 UTC: when it stops being free (shortly before its next booking); null when
    /// nothing is booked ahead.
    pub free_until: Option<String>,
}

pub(super) fn room_now(api: &Api, r: &Room, reader: Reader) -> RoomNow {
    crate::view::room(&api.campus(), &api.live, r, reader)
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
        && !api.campus().buildings.iter().any(|x| &x.id == b)
    {
        return Err(ApiError::bad(format!(
            "unknown building {b:?}; GET /api/v1/buildings lists them"
        )));
    }
    let list: Vec<RoomNow> = api
        .campus()
        .rooms
        .iter()
        .filter(|r| r.public || reader.sees_all_rooms())
        .filter(|r| q.building.as_ref().is_none_or(|b| &r.building == b))
        .map(|r| room_now(&api, r, reader))
        .collect();
    Ok(no_store(Json(list)))
}

pub(super) fn find_room(api: &Api, id: &str, reader: Reader) -> Result<Room, ApiError> {
    match api.campus().room(id) {
        Some(r) if r.public || reader.sees_all_rooms() => Ok(r.clone()),
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
    Ok(no_store(Json(room_now(&api, &r, reader))))
}

pub async fn buildings(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let reader = reader(&api, &headers, "buildings", &["buildings", "live", "rooms"]).await?;
    let list: Vec<BuildingNow> = api
        .campus()
        .buildings
        .iter()
        .map(|b| crate::view::building(&api.campus(), &api.live, b, reader))
        .collect();
    Ok(no_store(Json(list)))
}
