//! Per-minute occupancy rows: for each room and minute, the people who came in and went out,
//! and the minimum, time-weighted average and maximum occupancy.
//!
//! Minutes follow the server clock (when counts are processed). Rows are provisional: a day's
//! rows can be rebuilt from the stored counts by message time at compaction.

use std::collections::BTreeMap;

const MINUTE_US: i64 = 60_000_000;

/// One row of the `occupancy` table.
#[derive(Debug, Clone, PartialEq)]
pub struct MinuteRow {
    pub room: String,
    pub building: String,
    /// Minute start, Unix µs (UTC).
    pub minute: i64,
    pub people_in: u32,
    pub people_out: u32,
    pub occupancy_min: u32,
    pub occupancy_avg: f64,
    pub occupancy_max: u32,
    pub capacity: u32,
}

#[derive(Debug, Clone)]
struct Acc {
    building: String,
    capacity: u32,
    people_in: u32,
    people_out: u32,
    min: u64,
    max: u64,
    weighted: f64,
    value: u64,
    since: i64,
}

/// The open minute of every room.
#[derive(Debug, Clone)]
pub struct Minutes {
    minute: i64,
    rooms: BTreeMap<String, Acc>,
}

impl Minutes {
    /// Starts the minute holding `now_us`; `rooms` are (room, building, capacity, occupancy).
    pub fn new(
        now_us: i64,
        rooms: impl IntoIterator<Item = (String, String, u32, u64)>,
    ) -> Minutes {
        let minute = now_us.div_euclid(MINUTE_US) * MINUTE_US;
        let rooms = rooms
            .into_iter()
            .map(|(room, building, capacity, v)| {
                let acc = Acc {
                    building,
                    capacity,
                    people_in: 0,
                    people_out: 0,
                    min: v,
                    max: v,
                    weighted: 0.0,
                    value: v,
                    since: now_us,
                };
                (room, acc)
            })
            .collect();
        Minutes { minute, rooms }
    }

    /// Start of the open minute, Unix µs.
    pub fn open_minute(&self) -> i64 {
        self.minute
    }

    /// People crossed into or out of a room.
    pub fn crossed(&mut self, room: &str, people_in: u32, people_out: u32) {
        if let Some(a) = self.rooms.get_mut(room) {
            a.people_in = a.people_in.saturating_add(people_in);
            a.people_out = a.people_out.saturating_add(people_out);
        }
    }

    /// A room's occupancy is `value` from `now_us` on.
    pub fn set(&mut self, room: &str, value: u64, now_us: i64) {
        if let Some(a) = self.rooms.get_mut(room) {
            let t = now_us.clamp(self.minute, self.minute + MINUTE_US);
            let elapsed = t - a.since.max(self.minute);
            a.weighted += a.value as f64 * elapsed as f64;
            if t == self.minute && a.since <= self.minute {
                // A change at the very start of the minute: the old value never lasted in it.
                a.min = value;
                a.max = value;
            } else {
                a.min = a.min.min(value);
                a.max = a.max.max(value);
            }
            a.since = t;
            a.value = value;
        }
    }

    /// Closes every minute that ended by `now_us`; returns their rows.
    pub fn roll(&mut self, now_us: i64) -> Vec<MinuteRow> {
        let mut rows = Vec::new();
        while now_us >= self.minute + MINUTE_US {
            let end = self.minute + MINUTE_US;
            for (room, a) in &mut self.rooms {
                let weighted =
                    a.weighted + a.value as f64 * (end - a.since.max(self.minute)) as f64;
                rows.push(MinuteRow {
                    room: room.clone(),
                    building: a.building.clone(),
                    minute: self.minute,
                    people_in: a.people_in,
                    people_out: a.people_out,
                    occupancy_min: a.min.min(u32::MAX as u64) as u32,
                    occupancy_avg: weighted / MINUTE_US as f64,
                    occupancy_max: a.max.min(u32::MAX as u64) as u32,
                    capacity: a.capacity,
                });
                *a = Acc {
                    people_in: 0,
                    people_out: 0,
                    min: a.value,
                    max: a.value,
                    weighted: 0.0,
                    since: end,
                    ..a.clone()
                };
            }
            self.minute = end;
            // After a long pause (a stopped clock), do not emit days of identical rows at once.
            if now_us - self.minute > 24 * 60 * MINUTE_US {
                self.minute = now_us.div_euclid(MINUTE_US) * MINUTE_US;
            }
        }
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_minute_with_a_visit() {
        let t0 = 1_800_000_000 * 1_000_000 / MINUTE_US * MINUTE_US;
        let mut m = Minutes::new(t0, [("r".into(), "b".into(), 10, 2)]);
        // 2 people for 15 s, then 4 for 30 s, then 1 for 15 s.
        m.crossed("r", 2, 0);
        m.set("r", 4, t0 + 15_000_000);
        m.crossed("r", 0, 3);
        m.set("r", 1, t0 + 45_000_000);
        assert!(m.roll(t0 + 59_000_000).is_empty());
        let rows = m.roll(t0 + 61_000_000);
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        assert_eq!(
            (
                r.minute,
                r.people_in,
                r.people_out,
                r.occupancy_min,
                r.occupancy_max
            ),
            (t0, 2, 3, 1, 4)
        );
        assert!(
            (r.occupancy_avg - (2.0 * 15.0 + 4.0 * 30.0 + 15.0) / 60.0).abs() < 1e-9,
            "{}",
            r.occupancy_avg
        );
        // The next minute starts from the last value.
        let rows = m.roll(t0 + 3 * MINUTE_US);
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.occupancy_min == 1
            && r.occupancy_max == 1
            && (r.occupancy_avg - 1.0).abs() < 1e-9));
    }
}
