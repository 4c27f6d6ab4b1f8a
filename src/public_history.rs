//! A room's history for anonymous readers: bands that survive arithmetic.
//!
//! - One fixed grid ([`tellijn_wire::query::public_range`]): cells aligned to multiples of
//!   15 minutes, 1 hour or 1 day in UTC, `from` and `to` snapped to it, nothing of the cell
//!   still filling. Two requests therefore never cover a cell partly, and their difference
//!   is no cell's part.
//! - Every cell is built from the 15-minute cells, each banded on its own (numbers below
//!   `public_min_count` are null). A coarser cell shows only what follows from its 15-minute
//!   cells as shown: its minimum and maximum (the band of the minimum and maximum of its
//!   cells), and its sums and mean only when none of its cells' is a band. So subtracting
//!   a day from its hours, or an hour from its quarters, uncovers nothing.

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type};
use chrono::{DateTime, Utc};
use tellijn_config::campus::Room;
use tellijn_wire::query::HistoryRange;

use crate::api::{Api, ApiError, HistoryRow, Reader, band};

/// Seconds of the finest public cell.
const QUARTER: i64 = 900;

/// One 15-minute cell as the public sees it (null: a band).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Quarter {
    min: Option<u64>,
    avg: Option<f64>,
    max: Option<u64>,
    people_in: Option<u64>,
    people_out: Option<u64>,
    /// Exact minimum and maximum, only to band a coarser cell's (whose band follows from
    /// the quarters' bands: min(cells) < N exactly when some cell's minimum is a band).
    exact_min: u64,
    exact_max: u64,
}

/// The anonymous history rows of `room` over `range`.
pub async fn rows(
    api: &Api,
    room: &Room,
    range: &HistoryRange,
) -> Result<Vec<HistoryRow>, ApiError> {
    let fmt = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // The room id exists in the config; the times were parsed and snapped to the grid.
    let batches = crate::api::occupancy_steps(api, &room.id, range, QUARTER).await?;
    let min = api.campus().privacy.public_min_count;
    let mut quarters = Vec::new();
    for batch in &batches {
        let col = |i: usize| batch.column(i).as_primitive::<Int64Type>();
        let (t, omin, omax, pin, pout) = (col(0), col(1), col(3), col(4), col(5));
        let oavg = batch.column(2).as_primitive::<Float64Type>();
        for i in 0..batch.num_rows() {
            if t.is_null(i) {
                continue;
            }
            quarters.push((
                t.value(i),
                quarter(
                    [omin.value(i), omax.value(i), pin.value(i), pout.value(i)],
                    oavg.value(i),
                    min,
                ),
            ));
        }
    }
    Ok(cells(&quarters, range.step, min)
        .into_iter()
        .map(|(start, row)| HistoryRow {
            start: fmt(DateTime::from_timestamp(start, 0).unwrap_or_default()),
            ..row
        })
        .collect())
}

fn quarter([omin, omax, pin, pout]: [i64; 4], avg: f64, min: u32) -> Quarter {
    let b = |v: i64| band(v.max(0) as u64, min, Reader::Anonymous);
    Quarter {
        min: b(omin),
        avg: (avg >= f64::from(min)).then_some((avg * 100.0).round() / 100.0),
        max: b(omax),
        people_in: b(pin),
        people_out: b(pout),
        exact_min: omin.max(0) as u64,
        exact_max: omax.max(0) as u64,
    }
}

/// Groups the (start, quarter) cells, in order, into cells of `step` seconds.
fn cells(quarters: &[(i64, Quarter)], step: i64, min: u32) -> Vec<(i64, HistoryRow)> {
    let mut out: Vec<(i64, HistoryRow)> = Vec::new();
    let mut i = 0;
    while i < quarters.len() {
        let start = quarters[i].0.div_euclid(step) * step;
        let mut j = i;
        while j < quarters.len() && quarters[j].0.div_euclid(step) * step == start {
            j += 1;
        }
        let group: Vec<Quarter> = quarters[i..j].iter().map(|(_, q)| *q).collect();
        out.push((start, combine(&group, min)));
        i = j;
    }
    out
}

/// One cell from its quarters: only what follows from the quarters as shown.
fn combine(group: &[Quarter], min: u32) -> HistoryRow {
    let sum = |f: fn(&Quarter) -> Option<u64>| -> Option<u64> {
        group.iter().map(f).sum::<Option<u64>>()
    };
    let avgs: Option<Vec<f64>> = group.iter().map(|q| q.avg).collect();
    let exact_min = group.iter().map(|q| q.exact_min).min().unwrap_or(0);
    let exact_max = group.iter().map(|q| q.exact_max).max().unwrap_or(0);
    HistoryRow {
        start: String::new(),
        occupancy_min: band(exact_min, min, Reader::Anonymous),
        occupancy_avg: avgs
            .filter(|a| !a.is_empty())
            .map(|a| (a.iter().sum::<f64>() / a.len() as f64 * 100.0).round() / 100.0),
        occupancy_max: band(exact_max, min, Reader::Anonymous),
        people_in: sum(|q| q.people_in),
        people_out: sum(|q| q.people_out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(min: i64, avg: f64, max: i64, pin: i64, pout: i64) -> Quarter {
        quarter([min, max, pin, pout], avg, 5)
    }

    #[test]
    fn a_coarse_cell_uncovers_no_band_of_its_quarters() {
        // An hour of four quarters, one of them a band (3 came in).
        let hour = [
            (0, q(5, 6.0, 7, 10, 9)),
            (900, q(6, 7.0, 8, 12, 11)),
            (1_800, q(2, 4.0, 6, 3, 4)),
            (2_700, q(5, 5.5, 6, 8, 8)),
        ];
        let quarters = cells(&hour, 900, 5);
        assert_eq!(quarters[2].1.people_in, None, "3 is a band");
        let whole = cells(&hour, 3_600, 5);
        assert_eq!(whole.len(), 1);
        let h = &whole[0].1;
        // Its sum would be 33; with the other quarters (30) it would give the 3 back.
        assert_eq!(h.people_in, None);
        assert_eq!(h.occupancy_avg, None);
        assert_eq!(h.occupancy_min, None, "min 2 is a band");
        assert_eq!(h.occupancy_max, Some(8));
        // people_out: every quarter shown (9, 11, _, 8)? The third (4) is a band: hidden.
        assert_eq!(h.people_out, None);
        // Every quarter shown: the sum and the mean of the quarters.
        let busy = [(0, q(5, 6.0, 7, 10, 9)), (900, q(6, 7.0, 8, 12, 11))];
        let h = &cells(&busy, 3_600, 5)[0].1;
        assert_eq!((h.people_in, h.people_out), (Some(22), Some(20)));
        assert_eq!(h.occupancy_avg, Some(6.5));
        assert_eq!((h.occupancy_min, h.occupancy_max), (Some(5), Some(8)));
    }

    #[test]
    fn cells_are_aligned_to_the_step_in_utc() {
        let day = 86_400 * 20_000;
        let quarters = [
            (day - 900, q(9, 9.0, 9, 9, 9)),
            (day, q(9, 9.0, 9, 9, 9)),
            (day + 3_600, q(9, 9.0, 9, 9, 9)),
        ];
        let starts: Vec<i64> = cells(&quarters, 86_400, 5).iter().map(|c| c.0).collect();
        assert_eq!(starts, [day - 86_400, day]);
        let starts: Vec<i64> = cells(&quarters, 3_600, 5).iter().map(|c| c.0).collect();
        assert_eq!(starts, [day - 3_600, day, day + 3_600]);
    }
}
