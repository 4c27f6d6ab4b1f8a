//! Historical occupancy of one room (`/api/v1/rooms/{id}/history`) from the `occupancy` table.

use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use axum::Json;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::{
    Api, ApiError, HistoryQuery, Reader, band, find_room, history_range, no_store, path_error,
    query_error, reader,
};

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
    let min = api.campus().privacy.public_min_count;
    if reader == Reader::Anonymous {
        let range = tellijn_wire::query::public_range(&q, api.clock.now())?;
        let rows = crate::public_history::rows(&api, &room, &range).await?;
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
