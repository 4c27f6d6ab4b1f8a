//! Any query string on `/api/v1/rooms` and `/api/v1/rooms/{id}/history`, decoded as axum's
//! `Query` does (serde_urlencoded): decoding and checking never panic, and a history range
//! that is accepted is one the handler can run: from < to, both within the years the history
//! holds, a step of whole minutes within bounds, and at most MAX_HISTORY_ROWS rows; the
//! anonymous form is on the fixed grid.
#![no_main]

use chrono::{DateTime, TimeDelta};
use libfuzzer_sys::fuzz_target;
use tellijn_wire::query::{
    EARLIEST, HistoryQuery, LATEST, MAX_HISTORY_ROWS, MAX_STEP, MIN_STEP, PUBLIC_STEPS, RoomsQuery,
    history_range, public_range,
};

fuzz_target!(|data: &[u8]| {
    let _ = serde_urlencoded::from_bytes::<RoomsQuery>(data);
    let Ok(q) = serde_urlencoded::from_bytes::<HistoryQuery>(data) else {
        return;
    };
    let now = DateTime::from_timestamp(1_795_348_800, 0).unwrap_or_default(); // 2026-11-22T08:00Z
    let Ok(r) = history_range(&q, now) else {
        return;
    };
    assert!(r.from < r.to, "{q:?} → {r:?}");
    let (lo, hi) = (EARLIEST - 86_400, LATEST.max(now.timestamp()));
    assert!((lo..=hi).contains(&r.from.timestamp()), "{q:?} → {r:?}");
    assert!((lo..=hi).contains(&r.to.timestamp()), "{q:?} → {r:?}");
    assert!(
        (MIN_STEP..=MAX_STEP).contains(&r.step) && r.step % 60 == 0,
        "{q:?} → {r:?}"
    );
    assert!(
        (r.to - r.from).num_seconds() / r.step <= MAX_HISTORY_ROWS,
        "{q:?} → {r:?}"
    );
    // The anonymous grid: one of the fixed steps, aligned, ending before now.
    if let Ok(p) = public_range(&q, now) {
        assert!(PUBLIC_STEPS.iter().any(|(_, s)| *s == p.step), "{q:?} → {p:?}");
        assert!(p.from < p.to && p.to <= now, "{q:?} → {p:?}");
        assert!(
            p.from.timestamp() % p.step == 0 && p.to.timestamp() % p.step == 0,
            "{q:?} → {p:?}"
        );
    }
    // What the handler computes from the range.
    let _ = (r.from - TimeDelta::days(1)).format("%Y-%m-%d").to_string();
    let _ = (r.to + TimeDelta::days(1)).format("%Y-%m-%d").to_string();
});
