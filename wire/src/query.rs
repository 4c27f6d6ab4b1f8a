//! The query parameters of the HTTP API (`/api/v1`): parsed and checked here, with no web or
//! query engine types, so they can be unit-tested and fuzzed on their own.
//!
//! - [`RoomsQuery`]: `GET /api/v1/rooms?building=…`.
//! - [`HistoryQuery`] and [`history_range`]: `GET /api/v1/rooms/{id}/history?from=…&to=…&step=…`,
//!   checked into a [`HistoryRange`] or a [`QueryError`] that says what to send instead.

use chrono::{DateTime, TimeDelta, Utc};
use serde::Deserialize;

/// 2000-01-01T00:00:00Z (Unix seconds): history times before it are refused.
pub const EARLIEST: i64 = 946_684_800;
/// 2200-01-01T00:00:00Z (Unix seconds): history times after it are refused.
pub const LATEST: i64 = 7_258_118_400;
/// Most rows one history request may return.
pub const MAX_HISTORY_ROWS: i64 = 10_000;
/// The smallest and largest history step, in seconds (1 minute and 31 days).
pub const MIN_STEP: i64 = 60;
pub const MAX_STEP: i64 = 31 * 86_400;

/// The steps anonymous history comes in, with their seconds: one fixed grid of cells aligned
/// to multiples of the step in UTC, each cell of a coarser step made of whole cells of the
/// finer ones.
pub const PUBLIC_STEPS: [(&str, i64); 3] = [("15m", 900), ("1h", 3_600), ("1d", 86_400)];

/// `?building=…` of `GET /api/v1/rooms`.
#[derive(Debug, Default, Deserialize)]
pub struct RoomsQuery {
    pub building: Option<String>,
}

/// `?from=…&to=…&step=…` of a room's history, as sent.
#[derive(Debug, Default, Deserialize)]
pub struct HistoryQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub step: Option<String>,
}

/// Validated history parameters.
#[derive(Debug, PartialEq)]
pub struct HistoryRange {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// Seconds: whole minutes from [`MIN_STEP`] to [`MAX_STEP`].
    pub step: i64,
}

/// A query parameter that cannot be used, and what to send instead (an HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct QueryError(pub String);

/// Checks `from`, `to` and `step`; every error says what to send instead.
///
/// `to` defaults to `now`, `from` to a day before `to`, `step` to one hour.
pub fn history_range(q: &HistoryQuery, now: DateTime<Utc>) -> Result<HistoryRange, QueryError> {
    let time = |name: &str, v: &str| {
        let t = DateTime::parse_from_rfc3339(v)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                QueryError(format!(
                    "{name}={v:?} is not an RFC 3339 time ({e}); send e.g. {name}=2026-11-22T08:00:00Z"
                ))
            })?;
        if !(EARLIEST..=LATEST).contains(&t.timestamp()) {
            return Err(QueryError(format!(
                "{name}={v:?} is outside the years 2000 to 2199 that the history can hold"
            )));
        }
        Ok(t)
    };
    let to = match &q.to {
        Some(v) => time("to", v)?,
        None => now,
    };
    let from = match &q.from {
        Some(v) => time("from", v)?,
        None => to - TimeDelta::days(1),
    };
    if from >= to {
        return Err(QueryError(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    let step_text = q.step.as_deref().unwrap_or("1h");
    let step = humantime::parse_duration(step_text).map_err(|e| {
        QueryError(format!(
            "step={step_text:?} is not a duration ({e}); send e.g. step=15m, step=1h or step=1d"
        ))
    })?;
    let step = step.as_secs() as i64;
    if step < MIN_STEP || step % 60 != 0 || step > MAX_STEP {
        return Err(QueryError(format!(
            "step={step_text:?} must be whole minutes between 1m and 31d (occupancy is stored per minute)"
        )));
    }
    let rows = (to - from).num_seconds() / step;
    if rows > MAX_HISTORY_ROWS {
        return Err(QueryError(format!(
            "from…to at step {step_text} is {rows} rows, more than {MAX_HISTORY_ROWS}; use a larger step or a shorter range"
        )));
    }
    Ok(HistoryRange { from, to, step })
}

/// The anonymous form of [`history_range`]: `step` one of [`PUBLIC_STEPS`], `from` snapped
/// down and `to` up to the grid, and `to` no later than the end of the last complete cell
/// before `now` (a cell still filling would change between two requests, and the difference
/// would be the minutes in between).
pub fn public_range(q: &HistoryQuery, now: DateTime<Utc>) -> Result<HistoryRange, QueryError> {
    let r = history_range(q, now)?;
    let Some((name, step)) = PUBLIC_STEPS.iter().find(|(_, s)| *s == r.step) else {
        let names: Vec<&str> = PUBLIC_STEPS.iter().map(|(n, _)| *n).collect();
        return Err(QueryError(format!(
            "step={:?} is not one of {}: anonymous history comes on one fixed grid so that no two answers can be subtracted; send one of those steps, or sign in as a [[users]] entry",
            q.step.as_deref().unwrap_or("1h"),
            names.join(", ")
        )));
    };
    let at = |secs: i64| DateTime::from_timestamp(secs, 0).unwrap_or(now);
    let from = r.from.timestamp().div_euclid(*step) * step;
    let to = (r.to.timestamp() + step - 1).div_euclid(*step) * step;
    let complete = now.timestamp().div_euclid(*step) * step;
    let to = to.min(complete);
    if from >= to {
        return Err(QueryError(format!(
            "from…to holds no complete {name} cell before now; anonymous history ends at the last complete cell ({})",
            at(complete)
        )));
    }
    Ok(HistoryRange {
        from: at(from),
        to: at(to),
        step: *step,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(from: Option<&str>, to: Option<&str>, step: Option<&str>) -> HistoryQuery {
        HistoryQuery {
            from: from.map(Into::into),
            to: to.map(Into::into),
            step: step.map(Into::into),
        }
    }

    #[test]
    fn history_parameters_are_checked() {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let r = history_range(&q(None, None, None), now).unwrap();
        assert_eq!((r.to - r.from).num_hours(), 24);
        assert_eq!(r.step, 3600);
        let r = history_range(
            &q(
                Some("2026-11-22T08:00:00Z"),
                Some("2026-11-22T10:00:00+01:00"),
                Some("15m"),
            ),
            now,
        )
        .unwrap();
        assert_eq!(r.step, 900);
        assert_eq!(
            r.to,
            "2026-11-22T09:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        for (query, needle) in [
            (q(Some("yesterday"), None, None), "RFC 3339"),
            (q(None, Some("2026-13-01T00:00:00Z"), None), "RFC 3339"),
            (q(Some("2026-11-22T13:00:00Z"), None, None), "before"),
            (q(None, None, Some("banana")), "duration"),
            (
                q(None, Some("0222-01-20T02:25:06-19:00"), None),
                "2000 to 2199",
            ),
            (q(None, None, Some("30s")), "whole minutes"),
            (q(None, None, Some("90s")), "whole minutes"),
            (q(Some("2020-01-01T00:00:00Z"), None, Some("1m")), "rows"),
        ] {
            let e = history_range(&query, now).unwrap_err();
            assert!(e.0.contains(needle), "{query:?}: {e}");
        }
    }

    #[test]
    fn anonymous_history_comes_on_one_fixed_grid() {
        let now: DateTime<Utc> = "2026-11-22T12:34:56Z".parse().unwrap();
        let t = |s: &str| s.parse::<DateTime<Utc>>().unwrap();
        // Unaligned from and to are snapped outwards to the grid; to ends at the last
        // complete cell before now.
        let r = public_range(
            &q(
                Some("2026-11-22T08:07:00Z"),
                Some("2026-11-22T09:01:00Z"),
                Some("15m"),
            ),
            now,
        )
        .unwrap();
        assert_eq!(
            (r.from, r.to, r.step),
            (t("2026-11-22T08:00:00Z"), t("2026-11-22T09:15:00Z"), 900)
        );
        let r = public_range(&q(None, None, None), now).unwrap();
        assert_eq!(
            (r.from, r.to),
            (t("2026-11-21T12:00:00Z"), t("2026-11-22T12:00:00Z"))
        );
        let r = public_range(&q(Some("2026-11-20T05:00:00Z"), None, Some("1d")), now).unwrap();
        assert_eq!(
            (r.from, r.to),
            (t("2026-11-20T00:00:00Z"), t("2026-11-22T00:00:00Z"))
        );
        // Other steps are refused; so is a range inside the cell still filling.
        for step in ["1m", "14m", "16m", "30m", "2h", "90m", "7d"] {
            let e = public_range(&q(None, None, Some(step)), now).unwrap_err();
            assert!(e.0.contains("is not one of 15m, 1h, 1d"), "{step}: {e}");
        }
        let e = public_range(&q(Some("2026-11-22T12:31:00Z"), None, Some("15m")), now).unwrap_err();
        assert!(e.0.contains("no complete 15m cell"), "{e}");
    }

    #[test]
    fn the_row_limit_is_inclusive() {
        let now: DateTime<Utc> = "2026-11-22T12:00:00Z".parse().unwrap();
        let from = now - TimeDelta::minutes(MAX_HISTORY_ROWS);
        let ok = q(Some(&from.to_rfc3339()), None, Some("1m"));
        assert_eq!(history_range(&ok, now).unwrap().step, 60);
        let from = from - TimeDelta::minutes(1);
        let over = q(Some(&from.to_rfc3339()), None, Some("1m"));
        assert!(history_range(&over, now).unwrap_err().0.contains("rows"));
    }
}
