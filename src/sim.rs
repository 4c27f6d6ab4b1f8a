//! The demo's campus simulator: people who follow a timetable, and sensors that miss a few.
//!
//! Every simulated minute each room moves to its timetable's target:
//! - lecture halls: the weekly lectures of the demo timetable ([`crate::timetable`], also served
//!   as an iCalendar feed) start on the hour (8:00–17:00, not every hour, on weekdays);
//!   students arrive in the 10 minutes before, stay 45 minutes and leave in the 10 after;
//!   cancelled lectures and no-shows leave the hall empty;
//! - study halls and halls: fill from 9 to 17 with a dip at lunch, thin out in the evening;
//! - offices: 1–3 people on working days 8:30–17:30, some days nobody;
//! - meeting rooms: some hours a meeting of 3–10 people;
//! - nights (and most of the weekend) empty.
//!
//! Door counters see each crossing and miss 1–3 % of them (a fixed rate per sensor), so
//! occupancy drifts during the day and the nightly reset visibly corrects it; overhead zone
//! counters miss the same share of the people present, without drift. Building entrances see
//! everyone who enters or leaves a room of that building. The simulator keeps the truth, so the
//! demo can say how far the server's occupancy was from it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Datelike, TimeDelta, Timelike, Utc, Weekday};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tellijn_agent::source::StdinAggregator;
use tellijn_config::Campus;
use tellijn_config::campus::RoomKind;

/// A sensor's reading buffer, shared with its agent.
pub type Feed = Arc<Mutex<StdinAggregator>>;

#[derive(Debug, Clone, Copy)]
enum Counter {
    /// Line `index` of the sensor, counting into the room.
    Line(usize),
    /// Zone `index` of the sensor, over the room.
    Zone(usize),
}

struct SimRoom {
    id: String,
    building: usize,
    kind: RoomKind,
    capacity: u32,
    seed: u64,
    truth: u32,
    sensor: Option<(Feed, Counter, f64)>,
}

struct SimBuilding {
    entrance: Option<(Feed, usize, f64)>,
}

/// The simulated campus.
pub struct Simulator {
    tz: chrono_tz::Tz,
    rooms: Vec<SimRoom>,
    buildings: Vec<SimBuilding>,
    rng: StdRng,
    /// The last simulated minute stepped to.
    at: DateTime<Utc>,
    /// Truth of the last few steps, for comparing with a server that lags by an interval.
    recent: VecDeque<Vec<u32>>,
    err_sum: f64,
    /// The same error for a counter that counted nobody: the peer the accuracy is judged
    /// against, so that a loaded machine (the server hears later) does not decide the verdict.
    zero_sum: f64,
    err_n: u64,
    crossings: u64,
    missed: u64,
    /// Minutes stepped; samples start after [`WARM_UP`] of them.
    steps: u32,
}

/// Simulated minutes before accuracy samples count: agents are still connecting.
pub const WARM_UP: u32 = 5;

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn hash_str(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A deterministic fraction in [0, 1) for (seed, a, b).
pub(crate) fn frac(seed: u64, a: u64, b: u64) -> f64 {
    (mix(seed ^ mix(a ^ mix(b))) >> 11) as f64 / (1u64 << 53) as f64
}

/// Linear ramp from 0 at `a` to 1 at `b` (minutes of the day).
fn ramp(m: f64, a: f64, b: f64) -> f64 {
    ((m - a) / (b - a)).clamp(0.0, 1.0)
}

/// A room's seed in a simulator seeded with `seed` (the demo timetable uses the same).
pub fn room_seed(id: &str, seed: u64) -> u64 {
    hash_str(id) ^ seed
}

/// How many people the timetable puts in a room at local time `t`.
pub fn target(kind: RoomKind, capacity: u32, seed: u64, t: chrono::NaiveDateTime) -> u32 {
    let day = t.date().num_days_from_ce() as u64;
    let weekend = matches!(t.weekday(), Weekday::Sat | Weekday::Sun);
    let m = t.hour() as f64 * 60.0 + t.minute() as f64;
    let cap = capacity as f64;
    let n = match kind {
        RoomKind::LectureHall => {
            // The demo timetable's lectures (crate::timetable): cancelled ones and no-shows
            // leave the hall empty.
            crate::timetable::HOURS
                .filter(|h| {
                    crate::timetable::slot(seed, t.date(), *h)
                        == crate::timetable::Slot::Lecture { attended: true }
                })
                .map(|h| {
                    let h = u64::from(h);
                    let start = h as f64 * 60.0;
                    let size = cap * (0.4 + 0.55 * frac(seed ^ 1, day, h));
                    size * (ramp(m, start - 10.0, start) - ramp(m, start + 45.0, start + 55.0))
                })
                .sum()
        }
        RoomKind::Study | RoomKind::Hall => {
            let fill = 0.85 * ramp(m, 8.0 * 60.0, 10.0 * 60.0)
                - 0.3 * (ramp(m, 12.0 * 60.0, 12.5 * 60.0) - ramp(m, 13.0 * 60.0, 13.5 * 60.0))
                - 0.75 * ramp(m, 16.5 * 60.0, 18.0 * 60.0)
                - 0.1 * ramp(m, 18.0 * 60.0, 22.0 * 60.0);
            let busy = 0.8 + 0.2 * frac(seed, day, 0);
            cap * fill.max(0.0) * busy * if weekend { 0.3 } else { 1.0 }
        }
        RoomKind::Office => {
            let present = !weekend && frac(seed, day, 1) > 0.15 && (510.0..1050.0).contains(&m);
            let lunch = (720.0..765.0).contains(&m);
            if present {
                let people = 1.0 + (frac(seed, day, 2) * 3.0).floor();
                if lunch { people - 1.0 } else { people }
            } else {
                0.0
            }
        }
        RoomKind::Meeting => {
            let h = t.hour() as u64;
            if !weekend && (9..17).contains(&h) && frac(seed, day, h + 100) < 0.4 && t.minute() < 50
            {
                3.0 + (frac(seed, day, h + 200) * 8.0).floor()
            } else {
                0.0
            }
        }
    };
    (n.round().max(0.0) as u32).min(capacity)
}

impl Simulator {
    /// A simulator for `campus`, whose sensors read into `feeds` (by sensor id), from `start`.
    pub fn new(
        campus: &Campus,
        feeds: &HashMap<String, Feed>,
        start: DateTime<Utc>,
        seed: u64,
    ) -> Simulator {
        let tz: chrono_tz::Tz = campus.server.timezone.parse().unwrap_or(chrono_tz::UTC);
        let mut rng = StdRng::seed_from_u64(seed);
        let building_index: HashMap<&str, usize> = campus
            .buildings
            .iter()
            .enumerate()
            .map(|(i, b)| (b.id.as_str(), i))
            .collect();
        let mut buildings: Vec<SimBuilding> = campus
            .buildings
            .iter()
            .map(|_| SimBuilding { entrance: None })
            .collect();
        let mut counters: HashMap<&str, (Feed, Counter, f64)> = HashMap::new();
        for s in &campus.sensors {
            let Some(feed) = feeds.get(&s.id) else {
                continue;
            };
            let miss = rng.random_range(0.01..0.03);
            for (i, l) in s.lines.iter().enumerate() {
                if let Some(b) = building_index.get(l.into.as_str()) {
                    buildings[*b].entrance = Some((feed.clone(), i, miss));
                } else {
                    counters.insert(l.into.as_str(), (feed.clone(), Counter::Line(i), miss));
                }
            }
            for (i, z) in s.zones.iter().enumerate() {
                counters.insert(z.room.as_str(), (feed.clone(), Counter::Zone(i), miss));
            }
        }
        let rooms = campus
            .rooms
            .iter()
            .map(|r| SimRoom {
                id: r.id.clone(),
                building: building_index
                    .get(r.building.as_str())
                    .copied()
                    .unwrap_or(0),
                kind: r.kind,
                capacity: r.capacity,
                seed: room_seed(&r.id, seed),
                truth: 0,
                sensor: counters.remove(r.id.as_str()),
            })
            .collect::<Vec<_>>();
        let at = start
            - TimeDelta::seconds(start.second() as i64)
            - TimeDelta::nanoseconds(start.nanosecond() as i64);
        let mut sim = Simulator {
            tz,
            rooms,
            buildings,
            rng,
            at,
            recent: VecDeque::new(),
            err_sum: 0.0,
            zero_sum: 0.0,
            err_n: 0,
            crossings: 0,
            missed: 0,
            steps: 0,
        };
        // Start from the timetable, not from an empty campus: the server starts at zero, so
        // the first minute's arrivals would otherwise all be one burst. Reported as arrivals.
        sim.step_minute();
        sim
    }

    fn seen(&mut self, people: u32, miss: f64) -> u32 {
        let mut seen = 0;
        for _ in 0..people {
            if self.rng.random::<f64>() >= miss {
                seen += 1;
            }
        }
        self.crossings += people as u64;
        self.missed += (people - seen) as u64;
        seen
    }

    fn step_minute(&mut self) {
        self.steps += 1;
        let local = self.at.with_timezone(&self.tz).naive_local();
        let mut entering = vec![(0u32, 0u32); self.buildings.len()];
        for i in 0..self.rooms.len() {
            let (kind, capacity, seed, truth) = {
                let r = &self.rooms[i];
                (r.kind, r.capacity, r.seed, r.truth)
            };
            let goal = target(kind, capacity, seed, local);
            // A little coming and going in busy study halls, even at a steady count.
            let churn = if matches!(kind, RoomKind::Study | RoomKind::Hall) {
                (truth.min(goal) as f64 * 0.02).round() as u32
            } else {
                0
            };
            let arrivals = goal.saturating_sub(truth) + churn;
            let departures = truth.saturating_sub(goal) + churn;
            self.rooms[i].truth = goal;
            let b = self.rooms[i].building;
            entering[b].0 += arrivals;
            entering[b].1 += departures;
            if let Some((feed, counter, miss)) = self.rooms[i].sensor.clone() {
                match counter {
                    Counter::Line(l) => {
                        let (a, d) = (self.seen(arrivals, miss), self.seen(departures, miss));
                        lock(&feed).add_crossings(l, a, d);
                    }
                    Counter::Zone(z) => {
                        // An overhead counter misses people hidden behind others; no drift.
                        let n = (0..goal)
                            .filter(|_| self.rng.random::<f64>() >= miss)
                            .count();
                        lock(&feed).set_zone(z, n as u32);
                    }
                }
            }
        }
        for (b, (a, d)) in entering.into_iter().enumerate() {
            if let Some((feed, line, miss)) = self.buildings[b].entrance.clone() {
                let (a, d) = (self.seen(a, miss), self.seen(d, miss));
                lock(&feed).add_crossings(line, a, d);
            }
        }
        self.recent
            .push_back(self.rooms.iter().map(|r| r.truth).collect());
        while self.recent.len() > 3 {
            self.recent.pop_front();
        }
    }

    /// Steps every whole simulated minute up to `now` (at most a day's worth at once).
    pub fn advance(&mut self, now: DateTime<Utc>) {
        let mut steps = 0;
        while self.at + TimeDelta::minutes(1) <= now && steps < 1440 {
            self.at += TimeDelta::minutes(1);
            self.step_minute();
            steps += 1;
        }
    }

    /// Compares the server's occupancy (by room id) with the truth of the last few minutes: a
    /// room counts as exact when its number lies within the truth of the last three steps (the
    /// server hears of a minute's crossings up to a reporting interval later).
    pub fn sample(&mut self, served: impl Fn(&str) -> u64) {
        if self.steps <= WARM_UP {
            return;
        }
        for (i, r) in self.rooms.iter().enumerate() {
            let (lo, hi) = self
                .recent
                .iter()
                .map(|t| t[i] as f64)
                .fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
            if lo > hi {
                continue;
            }
            let s = served(&r.id) as f64;
            self.err_sum += if s < lo {
                lo - s
            } else if s > hi {
                s - hi
            } else {
                0.0
            };
            self.zero_sum += lo;
            self.err_n += 1;
        }
    }

    /// People in a room now, by the simulator's truth.
    pub fn truth(&self, room: &str) -> Option<u32> {
        self.rooms.iter().find(|r| r.id == room).map(|r| r.truth)
    }

    /// The accuracy summary line.
    pub fn summary(&self) -> String {
        let mae = self.mean_absolute_error();
        let zero = self.zero_counter_error();
        let missed = if self.crossings == 0 {
            0.0
        } else {
            100.0 * self.missed as f64 / self.crossings as f64
        };
        format!(
            "Accuracy: mean absolute error {mae:.2} people per room vs the simulator's truth, where a counter that counted nobody would be off by {zero:.2} ({} samples over {} rooms after a {WARM_UP}-minute warm-up; sensors missed {missed:.1} % of {} people counted; nightly resets correct the drift).",
            self.err_n,
            self.rooms.len(),
            self.crossings
        )
    }

    /// The mean absolute error so far.
    pub fn mean_absolute_error(&self) -> f64 {
        if self.err_n == 0 {
            0.0
        } else {
            self.err_sum / self.err_n as f64
        }
    }

    /// The mean absolute error a counter that counted nobody would have had on the same samples.
    pub fn zero_counter_error(&self) -> f64 {
        if self.err_n == 0 {
            0.0
        } else {
            self.zero_sum / self.err_n as f64
        }
    }
}

fn lock(f: &Feed) -> std::sync::MutexGuard<'_, StdinAggregator> {
    f.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(day: u32, h: u32, m: u32) -> chrono::NaiveDateTime {
        // 2026-11-23 is a Monday.
        NaiveDate::from_ymd_opt(2026, 11, day)
            .unwrap()
            .and_hms_opt(h, m, 0)
            .unwrap()
    }

    #[test]
    fn lectures_start_on_the_hour() {
        // Find a lecture in some hall on Monday and check its shape.
        let seed = (0..100)
            .find(|s| {
                crate::timetable::slot(*s, at(23, 0, 0).date(), 10)
                    == crate::timetable::Slot::Lecture { attended: true }
            })
            .unwrap();
        let n = |h, m| target(RoomKind::LectureHall, 300, seed, at(23, h, m));
        assert_eq!(n(9, 49), n(9, 49).min(n(10, 0)), "arriving");
        assert!(
            n(9, 55) > 0 && n(9, 55) < n(10, 0),
            "arriving in the 10 minutes before"
        );
        assert_eq!(n(10, 0), n(10, 30), "seated through the lecture");
        assert!(n(10, 0) >= 120, "at least 40 % of 300");
        assert!(n(3, 0) == 0 && n(22, 0) == 0, "nights are empty");
        assert_eq!(
            target(RoomKind::LectureHall, 300, seed, at(22, 10, 0)),
            0,
            "Sunday"
        );
    }

    #[test]
    fn study_halls_fill_by_day_with_a_lunch_dip() {
        let n = |h, m| target(RoomKind::Study, 120, 7, at(24, h, m));
        assert_eq!(n(6, 0), 0);
        assert!(n(11, 0) > 70);
        assert!(n(12, 45) < n(11, 0) - 20, "lunch dip");
        assert!(n(15, 0) > n(12, 45));
        assert!(n(19, 0) < 15);
        assert_eq!(n(23, 0), 0);
    }

    #[test]
    fn offices_hold_one_to_three_by_day() {
        for seed in 0..50 {
            let n = target(RoomKind::Office, 4, seed, at(24, 10, 0));
            assert!(n <= 3);
            assert_eq!(target(RoomKind::Office, 4, seed, at(24, 2, 0)), 0);
        }
        assert!((0..50).any(|s| target(RoomKind::Office, 4, s, at(24, 10, 0)) >= 1));
    }

    #[test]
    fn a_perfect_server_has_no_error_and_a_lagging_one_some() {
        let (campus, _) = crate::demo::campus(40).unwrap();
        let feeds: HashMap<String, Feed> = campus
            .sensors
            .iter()
            .map(|s| {
                let lines: Vec<String> = s.lines.iter().map(|l| l.line.clone()).collect();
                let zones: Vec<String> = s.zones.iter().map(|z| z.zone.clone()).collect();
                (
                    s.id.clone(),
                    Arc::new(Mutex::new(StdinAggregator::new(&lines, &zones))),
                )
            })
            .collect();
        let start: DateTime<Utc> = "2026-11-24T07:00:00Z".parse().unwrap();
        let mut sim = Simulator::new(&campus, &feeds, start, 1);
        let mut off = Simulator::new(&campus, &feeds, start, 1);
        for m in 1..=120 {
            let now = start + TimeDelta::minutes(m);
            sim.advance(now);
            off.advance(now);
            let truth: HashMap<String, u64> = campus
                .rooms
                .iter()
                .map(|r| (r.id.clone(), sim.truth(&r.id).unwrap() as u64))
                .collect();
            sim.sample(|id| truth[id]);
            off.sample(|id| truth[id] + 2);
        }
        assert_eq!(sim.mean_absolute_error(), 0.0);
        assert!(off.mean_absolute_error() > 0.5, "{}", off.summary());
        // Rooms were full enough that counting nobody is far off (the demo test's peer).
        assert!(sim.zero_counter_error() > 5.0, "{}", sim.summary());
        assert_eq!(sim.zero_counter_error(), off.zero_counter_error());
        // Crossings were read into the feeds, a few of them missed.
        assert!(sim.crossings > 100, "{}", sim.summary());
        assert!(sim.missed > 0 && (sim.missed as f64) < 0.05 * sim.crossings as f64);
    }
}
