//! Time-driven work on the loop, all of it cheap: nightly resets, pending switches to vacant,
//! stale zone readings, closing per-minute rows; and deciding when the janitor should write a
//! day-start snapshot, sweep retention or look for days to rebuild.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use tellijn_config::Campus;

use crate::janitor::Job;
use crate::{Output, Processors, schedule};

impl Processors {
    /// Time-driven work, called often (about once a simulated minute or once a second): nightly
    /// resets, pending switches to vacant, stale zone readings, closing per-minute rows, and once
    /// a day the retention sweep. Slow work (files) is only queued for the janitor. Returns the retained outputs that changed.
    pub fn housekeeping(&mut self) -> Vec<Output> {
        let now = self.clock.now();
        let now_us = now.timestamp_micros();
        let mut rooms: BTreeSet<String> = BTreeSet::new();
        let mut buildings: BTreeSet<String> = BTreeSet::new();
        let due: Vec<String> = self
            .resets
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(p, _)| p.clone())
            .collect();
        for place in due {
            let removed = self.engine.reset(&place);
            tracing::info!(%place, removed, "Nightly reset.");
            if let Some(b) = self.engine.building_of(&place) {
                buildings.insert(b.to_owned());
                rooms.insert(place.clone());
            } else {
                buildings.insert(place.clone());
            }
            let next = reset_schedule(&self.campus, now, self.tz);
            if let Some(t) = next.get(&place) {
                self.resets.insert(place, *t);
            }
        }
        for (room, v) in &self.vacancy {
            if v.pending() || self.engine.has_zones(room) {
                rooms.insert(room.clone());
                if let Some(b) = self.engine.building_of(room) {
                    buildings.insert(b.to_owned());
                }
            }
        }
        let out = self.outputs(&rooms, &buildings);
        let rows = self.minutes.roll(now_us);
        self.buffer.occupancy.extend(rows);
        self.snapshot_if_new_day(now);
        if self.retention_checked != Some(now.date_naive()) {
            self.retention_checked = Some(now.date_naive());
            self.janitor.submit(Job::Retention { now });
        }
        // Which finished days need compaction and a rebuild is found on the janitor's thread
        // (it lists directories); one such pass is queued at a time.
        self.janitor.rebuild_pass(now);
        self.janitor.pump();
        out
    }
    /// Keeps the engine state a new UTC day starts from (for the rebuild by message time once
    /// the day has ended): taken just before the first message of the day is applied, or when
    /// the clock passes midnight, whichever comes first.
    pub(crate) fn snapshot_if_new_day(&mut self, t: DateTime<Utc>) {
        let day = t.date_naive();
        if day <= self.snap_day {
            return;
        }
        self.snap_day = day;
        // Serialised now (the state moves on), written by the janitor before any later job.
        let state = serde_json::to_vec(&self.engine.state).unwrap_or_default();
        self.janitor.submit(Job::Snapshot { day, state });
    }
}

/// The next nightly reset of every room with a `reset` time, and of every building with
/// entrance lines (at the earliest reset of its rooms).
pub(crate) fn reset_schedule(
    campus: &Campus,
    now: DateTime<Utc>,
    tz: chrono_tz::Tz,
) -> BTreeMap<String, DateTime<Utc>> {
    schedule::reset_times(campus)
        .into_iter()
        .map(|(place, (h, m))| (place, schedule::next_local(now, tz, h, m)))
        .collect()
}
