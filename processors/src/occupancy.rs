//! The occupancy engine: pure arithmetic over the campus, no I/O, no clock.
//!
//! - A line crossing "in" moves people from the line's `from` (if any) into its `into`;
//!   "out" moves them back. Rooms and buildings alike can be either end.
//! - A room with zones takes its occupancy from the sum of its zones' latest readings.
//! - A count never goes below zero: what would, is clamped and reported.
//! - A building's occupancy comes from its entrance lines, or, when it has none, from the sum
//!   of its rooms.
//! - A zone reading older than `server.zone_max_age` is stale and not counted.
//! - [`Engine::reset`] sets a place's line count to zero (the nightly drift correction);
//!   [`Engine::set`] to a head count's number.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use tellijn_config::Campus;

/// Where a line's crossings go.
#[derive(Debug, Clone)]
struct LineEnds {
    into: String,
    from: Option<String>,
}

/// A place whose count changed, with how many people were clamped away (miscounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub place: String,
    pub clamped: u64,
}

/// Counts per place, derived from line and zone messages.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
pub struct State {
    /// People per room or building, from lines.
    pub lines: HashMap<String, u64>,
    /// Latest reading per room, per zone: (time in Unix microseconds, count).
    pub zones: BTreeMap<String, BTreeMap<String, (i64, u64)>>,
}

/// The engine: the campus layout plus the [`State`].
pub struct Engine {
    lines: HashMap<(String, String), LineEnds>,
    zones: HashMap<(String, String), String>,
    room_building: HashMap<String, String>,
    /// Each building's rooms, so a building's count does not scan every room of the campus.
    building_rooms: HashMap<String, Vec<String>>,
    rooms_with_zones: HashMap<String, bool>,
    buildings_with_entrances: HashMap<String, bool>,
    zone_max_age_us: i64,
    pub state: State,
}

impl Engine {
    /// An engine for this campus, every count at zero.
    pub fn new(campus: &Campus) -> Engine {
        let mut lines = HashMap::new();
        let mut zones = HashMap::new();
        let mut rooms_with_zones: HashMap<String, bool> =
            campus.rooms.iter().map(|r| (r.id.clone(), false)).collect();
        let mut buildings_with_entrances: HashMap<String, bool> = campus
            .buildings
            .iter()
            .map(|b| (b.id.clone(), false))
            .collect();
        for s in &campus.sensors {
            for l in &s.lines {
                for end in std::iter::once(&l.into).chain(l.from.iter()) {
                    if let Some(b) = buildings_with_entrances.get_mut(end) {
                        *b = true;
                    }
                }
                lines.insert(
                    (s.id.clone(), l.line.clone()),
                    LineEnds {
                        into: l.into.clone(),
                        from: l.from.clone(),
                    },
                );
            }
            for z in &s.zones {
                rooms_with_zones.insert(z.room.clone(), true);
                zones.insert((s.id.clone(), z.zone.clone()), z.room.clone());
            }
        }
        let mut building_rooms: HashMap<String, Vec<String>> = HashMap::new();
        for r in &campus.rooms {
            building_rooms
                .entry(r.building.clone())
                .or_default()
                .push(r.id.clone());
        }
        Engine {
            lines,
            zones,
            building_rooms,
            room_building: campus
                .rooms
                .iter()
                .map(|r| (r.id.clone(), r.building.clone()))
                .collect(),
            rooms_with_zones,
            buildings_with_entrances,
            zone_max_age_us: campus.server.zone_max_age.as_micros().min(i64::MAX as u128) as i64,
            state: State::default(),
        }
    }

    fn add(&mut self, place: &str, delta: i64, changes: &mut Vec<Change>) {
        if delta == 0 {
            return;
        }
        let n = self.state.lines.entry(place.to_owned()).or_insert(0);
        let want = *n as i64 + delta;
        let clamped = if want < 0 { (-want) as u64 } else { 0 };
        *n = want.max(0) as u64;
        changes.push(Change {
            place: place.to_owned(),
            clamped,
        });
    }

    /// Applies a line message; returns the places whose line count changed.
    pub fn line(
        &mut self,
        sensor: &str,
        line: &str,
        people_in: u32,
        people_out: u32,
    ) -> Vec<Change> {
        let mut changes = Vec::new();
        let Some(ends) = self
            .lines
            .get(&(sensor.to_owned(), line.to_owned()))
            .cloned()
        else {
            return changes;
        };
        let net = people_in as i64 - people_out as i64;
        // Apply the ins before the outs so a message "3 in, 3 out" on an empty room
        // does not clamp.
        self.add(&ends.into, people_in as i64, &mut changes);
        self.add(&ends.into, -(people_out as i64), &mut changes);
        if let Some(from) = &ends.from {
            if net < 0 {
                self.add(from, people_out as i64, &mut changes);
                self.add(from, -(people_in as i64), &mut changes);
            } else {
                self.add(from, -(people_in as i64), &mut changes);
                self.add(from, people_out as i64, &mut changes);
            }
        }
        merge(changes)
    }

    /// Applies a zone reading (older readings than the latest are ignored); returns the room.
    pub fn zone(&mut self, sensor: &str, zone: &str, at_micros: i64, count: u32) -> Option<String> {
        let room = self
            .zones
            .get(&(sensor.to_owned(), zone.to_owned()))?
            .clone();
        let readings = self.state.zones.entry(room.clone()).or_default();
        match readings.get(zone) {
            Some((t, _)) if *t > at_micros => None,
            _ => {
                readings.insert(zone.to_owned(), (at_micros, count as u64));
                Some(room)
            }
        }
    }

    /// People in a room at `now_us` (Unix µs; zone readings older than the max age are stale).
    pub fn room(&self, room: &str, now_us: i64) -> u64 {
        if self.rooms_with_zones.get(room).copied().unwrap_or(false) {
            let fresh = |t: i64| now_us.saturating_sub(t) <= self.zone_max_age_us;
            self.state.zones.get(room).map_or(0, |z| {
                z.values().filter(|(t, _)| fresh(*t)).map(|(_, c)| c).sum()
            })
        } else {
            self.state.lines.get(room).copied().unwrap_or(0)
        }
    }

    /// People in a building at `now_us`.
    pub fn building(&self, building: &str, now_us: i64) -> u64 {
        if self
            .buildings_with_entrances
            .get(building)
            .copied()
            .unwrap_or(false)
        {
            self.state.lines.get(building).copied().unwrap_or(0)
        } else {
            self.building_rooms
                .get(building)
                .map_or(0, |rooms| rooms.iter().map(|r| self.room(r, now_us)).sum())
        }
    }

    /// Sets a room's or building's line count to zero; returns how many people that removed.
    pub fn reset(&mut self, place: &str) -> u64 {
        self.state.lines.insert(place.to_owned(), 0).unwrap_or(0)
    }

    /// Sets a room's or building's line count to `people` (a head count); returns the count
    /// it had.
    pub fn set(&mut self, place: &str, people: u64) -> u64 {
        self.state
            .lines
            .insert(place.to_owned(), people)
            .unwrap_or(0)
    }

    /// Where a line's crossings go: (`into`, `from`).
    pub fn line_ends(&self, sensor: &str, line: &str) -> Option<(&str, Option<&str>)> {
        self.lines
            .get(&(sensor.to_owned(), line.to_owned()))
            .map(|e| (e.into.as_str(), e.from.as_deref()))
    }

    /// Does this room take its occupancy from zones?
    pub fn has_zones(&self, room: &str) -> bool {
        self.rooms_with_zones.get(room).copied().unwrap_or(false)
    }

    /// The building a room is in.
    pub fn building_of(&self, room: &str) -> Option<&str> {
        self.room_building.get(room).map(String::as_str)
    }

    /// Is this id a room (rather than a building)?
    pub fn is_room(&self, id: &str) -> bool {
        self.room_building.contains_key(id)
    }
}

fn merge(changes: Vec<Change>) -> Vec<Change> {
    let mut out: Vec<Change> = Vec::new();
    for c in changes {
        match out.iter_mut().find(|o| o.place == c.place) {
            Some(o) => o.clamped += c.clamped,
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use tellijn_test_support::{CampusToml, HASH};

    fn campus() -> Campus {
        let text = CampusToml::new()
            .building("lib", "Library")
            .building("eng", "Engineering")
            .room("hall", "lib", "Hall", "hall", 100)
            .room("study", "lib", "Study", "study", 50)
            .room("lab", "eng", "Lab", "meeting", 20)
            .room("aula", "eng", "Aula", "lecture-hall", 300)
            .line_sensor(
                "ent",
                HASH,
                &[("main", "lib", None), ("inner", "hall", None)],
            )
            .line_sensor("door-a", HASH, &[("main", "study", Some("hall"))])
            .line_sensor("door-b", HASH, &[("main", "study", Some("hall"))])
            .line_sensor("lab-door", HASH, &[("main", "lab", None)])
            .zone_sensor("aula-cam", HASH, &[("left", "aula"), ("right", "aula")])
            .toml();
        Campus::parse(&text, "t").unwrap()
    }

    #[test]
    fn lines_move_people_and_clamp() {
        let mut e = Engine::new(&campus());
        e.line("ent", "main", 10, 0);
        e.line("ent", "inner", 6, 0);
        e.line("door-a", "main", 4, 0);
        assert_eq!(
            (e.building("lib", 1), e.room("hall", 1), e.room("study", 1)),
            (10, 2, 4)
        );
        let ch = e.line("lab-door", "main", 0, 3);
        assert_eq!(
            ch,
            vec![Change {
                place: "lab".into(),
                clamped: 3
            }]
        );
        assert_eq!(e.room("lab", 1), 0);
        // eng has no entrance lines: it is the sum of its rooms.
        e.line("lab-door", "main", 2, 0);
        e.zone("aula-cam", "left", 1, 40);
        e.zone("aula-cam", "right", 1, 30);
        assert_eq!(e.room("aula", 1), 70);
        assert_eq!(e.building("eng", 1), 72);
        // An older zone reading does not replace a newer one.
        assert_eq!(e.zone("aula-cam", "left", 0, 5), None);
        assert_eq!(e.room("aula", 1), 70);
        assert_eq!(e.zone("ghost", "left", 2, 5), None);
        // Fifteen minutes later the readings are stale: the hall counts as empty.
        assert_eq!(e.room("aula", 1 + 15 * 60 * 1_000_000), 70);
        assert_eq!(e.room("aula", 2 + 15 * 60 * 1_000_000), 0);
        // The nightly reset empties what the lines say.
        assert_eq!(e.reset("lab"), 2);
        assert_eq!(e.room("lab", 1), 0);
    }

    proptest! {
        /// Counts never go negative, and people are conserved: what the rooms hold is what
        /// came in from outside plus what was clamped away (a doorway between two rooms moves
        /// people, it does not make or lose them).
        #[test]
        fn conserves_people(moves in proptest::collection::vec((0usize..4, 0u32..5, 0u32..5), 0..300)) {
            let mut e = Engine::new(&campus());
            let doors = [("ent", "main"), ("ent", "inner"), ("door-a", "main"), ("door-b", "main")];
            let (mut net_lib, mut net_rooms) = (0i64, 0i64);
            let (mut clamped_lib, mut clamped_rooms) = (0i64, 0i64);
            for (d, i, o) in moves {
                let (s, l) = doors[d];
                match d {
                    0 => net_lib += i as i64 - o as i64,
                    1 => net_rooms += i as i64 - o as i64,
                    _ => {}
                }
                for c in e.line(s, l, i, o) {
                    if c.place == "lib" { clamped_lib += c.clamped as i64 } else { clamped_rooms += c.clamped as i64 }
                }
                prop_assert_eq!(e.building("lib", 1) as i64, net_lib + clamped_lib);
                prop_assert_eq!((e.room("hall", 1) + e.room("study", 1)) as i64, net_rooms + clamped_rooms);
            }
        }
    }

    proptest! {
        /// With perfect sensors the engine's count equals the true number of people in every
        /// room after every message: a simulated crowd walks in from outside, between rooms
        /// through an inner door, and out again, and every crossing is counted exactly.
        #[test]
        fn perfect_sensors_give_the_true_count(moves in proptest::collection::vec((0u8..4, 1u32..6), 0..300)) {
            let mut e = Engine::new(&campus());
            // "door-a" counts hall → study; "ent"/"inner" counts outside → hall.
            let (mut hall, mut study) = (0u64, 0u64);
            for (kind, k) in moves {
                match kind {
                    0 => { e.line("ent", "inner", k, 0); hall += k as u64; }
                    1 => { let k = (k as u64).min(hall); e.line("ent", "inner", 0, k as u32); hall -= k; }
                    2 => { let k = (k as u64).min(hall); e.line("door-a", "main", k as u32, 0); hall -= k; study += k; }
                    _ => { let k = (k as u64).min(study); e.line("door-b", "main", 0, k as u32); study -= k; hall += k; }
                }
                prop_assert_eq!(e.room("hall", 1), hall);
                prop_assert_eq!(e.room("study", 1), study);
            }
        }
    }
}
