//! What each reader sees of a room or building now: one projection for the HTTP API and the
//! public MQTT tree (`tellijn/v1/public/…`), so anonymous MQTT carries exactly what the
//! anonymous API carries.
//!
//! Anonymous readers (the free-places page, the anonymous API, anonymous MQTT):
//! - public rooms only; a number below `public_min_count` is a band (`occupancy: null`,
//!   `fewer_than: N`), and then neither its HVAC state (which would tell 0 from 1) nor when it
//!   last changed is shown;
//! - a building's total is the sum over its public rooms, shown only when none of them is a
//!   band: it is then the sum of numbers already shown, so subtracting rooms from it uncovers
//!   neither a band nor a non-public room. Otherwise it is null (and `fewer_than` null too).
//!
//! Named readers see every room and the building totals from its entrances, as before.

use std::collections::HashMap;

use tellijn_config::Campus;
use tellijn_config::campus::{Building, Room};
use tellijn_wire::topic::{self, PREFIX};

use crate::api::{BuildingNow, Reader, RoomNow, band};
use crate::live::Live;

/// A room as `reader` may see it.
pub fn room(campus: &Campus, live: &Live, r: &Room, reader: Reader) -> RoomNow {
    let now = live.room(&r.id);
    let min = campus.privacy.public_min_count;
    let occupancy = band(now.occupancy, min, reader);
    let shown = occupancy.unwrap_or(u64::from(min.saturating_sub(1)));
    // A band hides the state and the time of change from the public as well: "vacant" would
    // say 0, and a new time would say that someone came or went.
    let hide = reader == Reader::Anonymous && occupancy.is_none();
    RoomNow {
        id: r.id.clone(),
        name: r.name.clone(),
        building: r.building.clone(),
        kind: r.kind.as_str().to_owned(),
        capacity: r.capacity,
        public: r.public,
        occupancy,
        fewer_than: occupancy.is_none().then_some(min),
        free: u64::from(r.capacity).saturating_sub(shown),
        state: now
            .occupied
            .filter(|_| !hide)
            .map(|o| if o { "occupied" } else { "vacant" }.to_owned()),
        updated: now.ts.filter(|_| !hide),
        study_place: now.booking.as_ref().filter(|b| b.study_place).map(|b| {
            crate::api::StudyPlace {
                free_until: b.free_until.clone(),
            }
        }),
        booking: now.booking.filter(|_| reader != Reader::Anonymous),
    }
}

/// A building as `reader` may see it.
pub fn building(campus: &Campus, live: &Live, b: &Building, reader: Reader) -> BuildingNow {
    let min = campus.privacy.public_min_count;
    let rooms = campus.rooms.iter().filter(|r| r.building == b.id);
    if reader != Reader::Anonymous {
        let now = live.building(&b.id);
        let occupancy = band(now.occupancy, min, reader);
        return BuildingNow {
            id: b.id.clone(),
            name: b.name.clone(),
            capacity: rooms.map(|r| u64::from(r.capacity)).sum(),
            occupancy,
            fewer_than: occupancy.is_none().then_some(min),
            updated: now.ts,
        };
    }
    let public: Vec<RoomNow> = rooms
        .filter(|r| r.public)
        .map(|r| room(campus, live, r, reader))
        .collect();
    let all_shown = !public.is_empty() && public.iter().all(|r| r.occupancy.is_some());
    BuildingNow {
        id: b.id.clone(),
        name: b.name.clone(),
        capacity: public.iter().map(|r| u64::from(r.capacity)).sum(),
        occupancy: all_shown.then(|| public.iter().filter_map(|r| r.occupancy).sum()),
        fewer_than: None,
        updated: if all_shown {
            public.iter().filter_map(|r| r.updated.clone()).max()
        } else {
            None
        },
    }
}

/// Publishes the public tree: after each retained output, the public room and building
/// objects it changes, each only when its payload changed.
#[derive(Debug, Default)]
pub struct PublicTree {
    last: HashMap<String, Vec<u8>>,
}

impl PublicTree {
    /// Every public topic whose payload differs from what was last returned.
    pub fn all(&mut self, campus: &Campus, live: &Live) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        for r in campus.rooms.iter().filter(|r| r.public) {
            self.room(campus, live, r, &mut out);
        }
        for b in &campus.buildings {
            self.building(campus, live, b, &mut out);
        }
        out
    }

    /// After a reload: every public topic of `campus` that changed, and an empty payload
    /// (which clears a retained message) for each topic published before that `campus` no
    /// longer has — a room removed or made non-public, a building removed.
    pub fn reload(&mut self, campus: &Campus, live: &Live) -> Vec<(String, Vec<u8>)> {
        let mut out = self.all(campus, live);
        let kept: std::collections::HashSet<String> = (campus.rooms.iter())
            .filter(|r| r.public)
            .map(|r| topic::public_room(&r.id))
            .chain(
                campus
                    .buildings
                    .iter()
                    .map(|b| topic::public_building(&b.id)),
            )
            .collect();
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|t| !kept.contains(*t))
            .cloned()
            .collect();
        for t in gone {
            self.last.remove(&t);
            out.push((t, Vec::new()));
        }
        out
    }

    /// The public topics that the retained output on `output_topic` may change, where their
    /// payload changed. Outputs about non-public rooms change nothing public.
    pub fn after(
        &mut self,
        campus: &Campus,
        live: &Live,
        output_topic: &str,
    ) -> Vec<(String, Vec<u8>)> {
        let mut out = Vec::new();
        let Some(rest) = output_topic.strip_prefix(PREFIX) else {
            return out;
        };
        let mut parts = rest.split('/');
        if let (Some("rooms"), Some(id)) = (parts.next(), parts.next())
            && let Some(r) = campus.room(id)
            && r.public
        {
            self.room(campus, live, r, &mut out);
            if let Some(b) = campus.buildings.iter().find(|b| b.id == r.building) {
                self.building(campus, live, b, &mut out);
            }
        }
        out
    }

    fn room(&mut self, c: &Campus, live: &Live, r: &Room, out: &mut Vec<(String, Vec<u8>)>) {
        let v = room(c, live, r, Reader::Anonymous);
        self.changed(topic::public_room(&r.id), &v, out);
    }

    fn building(&mut self, c: &Campus, l: &Live, b: &Building, out: &mut Vec<(String, Vec<u8>)>) {
        let v = building(c, l, b, Reader::Anonymous);
        self.changed(topic::public_building(&b.id), &v, out);
    }

    fn changed(
        &mut self,
        topic: String,
        v: &impl serde::Serialize,
        out: &mut Vec<(String, Vec<u8>)>,
    ) {
        let Ok(payload) = serde_json::to_vec(v) else {
            return;
        };
        if self.last.get(&topic) != Some(&payload) {
            self.last.insert(topic.clone(), payload.clone());
            out.push((topic, payload));
        }
    }
}

/// Each topic once, with its last item, in the order of those last items (what a reader of
/// retained topics would end with, published with the fewest messages).
pub fn last_per_topic<T>(items: Vec<T>, topic: impl Fn(&T) -> &str) -> Vec<T> {
    if items.len() < 2 {
        return items;
    }
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    let mut out: Vec<T> = Vec::with_capacity(items.len());
    for item in items.into_iter().rev() {
        if seen.insert(topic(&item).to_owned()) {
            out.push(item);
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use tellijn_processors::Output;

    fn campus() -> Campus {
        Campus::parse(
            r#"
[privacy]
public_min_count = 5
[[buildings]]
id = "b"
name = "B"
[[rooms]]
id = "hall"
building = "b"
name = "Hall"
kind = "study"
capacity = 50
public = true
[[rooms]]
id = "nook"
building = "b"
name = "Nook"
kind = "study"
capacity = 8
public = true
[[rooms]]
id = "office"
building = "b"
name = "Office"
kind = "office"
capacity = 2
"#,
            "test",
        )
        .unwrap()
    }

    fn set(live: &Live, room: &str, n: u64, ts: &str) {
        live.apply(&Output {
            topic: format!("tellijn/v1/rooms/{room}/occupancy"),
            payload: format!(r#"{{"occupancy":{n},"ts":"{ts}"}}"#).into_bytes(),
        });
        live.apply(&Output {
            topic: format!("tellijn/v1/rooms/{room}/state"),
            payload: if n > 0 {
                &b"\"occupied\""[..]
            } else {
                b"\"vacant\""
            }
            .to_vec(),
        });
    }

    #[test]
    fn a_public_building_total_never_uncovers_a_band_or_an_office() {
        let c = campus();
        let live = Live::default();
        set(&live, "hall", 20, "t1");
        set(&live, "nook", 3, "t2");
        set(&live, "office", 2, "t3");
        live.apply(&Output {
            topic: "tellijn/v1/buildings/b/occupancy".into(),
            payload: br#"{"occupancy":25,"ts":"t3"}"#.to_vec(),
        });
        let b = &c.buildings[0];
        // The nook is a band: the total would uncover it (23 - 20), so it is not shown.
        let anon = building(&c, &live, b, Reader::Anonymous);
        assert_eq!((anon.occupancy, anon.fewer_than), (None, None));
        assert_eq!(anon.capacity, 58, "public rooms only");
        // Every public room shown: the total is their sum, never the entrances' 25.
        set(&live, "nook", 6, "t4");
        let anon = building(&c, &live, b, Reader::Anonymous);
        assert_eq!(anon.occupancy, Some(26));
        let steward = building(
            &c,
            &live,
            b,
            Reader::User(tellijn_config::campus::Role::Steward),
        );
        assert_eq!(steward.occupancy, Some(25));
        // A banded room hides its state and when it changed.
        set(&live, "nook", 0, "t5");
        let r = room(&c, &live, &c.rooms[1], Reader::Anonymous);
        assert_eq!((r.occupancy, r.state, r.updated), (None, None, None));
    }

    #[test]
    fn the_public_tree_changes_only_with_what_it_shows() {
        let c = campus();
        let live = Live::default();
        let mut tree = PublicTree::default();
        let first: Vec<String> = tree.all(&c, &live).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            first,
            [
                "tellijn/v1/public/rooms/hall",
                "tellijn/v1/public/rooms/nook",
                "tellijn/v1/public/buildings/b"
            ]
        );
        assert!(tree.all(&c, &live).is_empty(), "nothing changed");
        // An office moving publishes nothing; a band moving inside the band neither.
        set(&live, "office", 1, "t1");
        assert!(
            tree.after(&c, &live, "tellijn/v1/rooms/office/occupancy")
                .is_empty()
        );
        set(&live, "nook", 1, "t2");
        assert!(
            tree.after(&c, &live, "tellijn/v1/rooms/nook/occupancy")
                .is_empty()
        );
        set(&live, "nook", 4, "t3");
        assert!(
            tree.after(&c, &live, "tellijn/v1/rooms/nook/state")
                .is_empty()
        );
        set(&live, "hall", 9, "t4");
        let changed = tree.after(&c, &live, "tellijn/v1/rooms/hall/occupancy");
        assert_eq!(
            changed.len(),
            1,
            "the hall; the building stays hidden (the nook is a band)"
        );
        let v: serde_json::Value = serde_json::from_slice(&changed[0].1).unwrap();
        assert_eq!(v["occupancy"], 9);
    }

    #[test]
    fn a_reload_clears_the_public_topics_of_rooms_made_private_or_removed() {
        let c = campus();
        let live = Live::default();
        let mut tree = PublicTree::default();
        tree.all(&c, &live);
        assert!(
            tree.reload(&c, &live).is_empty(),
            "the same campus: nothing"
        );
        // The nook made private, a new public room in a new building.
        let mut next = c.clone();
        for r in next.rooms.iter_mut().filter(|r| r.id == "nook") {
            r.public = false;
        }
        next.buildings.push(Building {
            id: "c".into(),
            name: "C".into(),
        });
        let changed: Vec<(String, bool)> = tree
            .reload(&next, &live)
            .into_iter()
            .map(|(t, p)| (t, p.is_empty()))
            .collect();
        assert!(
            changed.contains(&("tellijn/v1/public/rooms/nook".into(), true)),
            "the nook's public topic is cleared: {changed:?}"
        );
        assert!(
            changed.contains(&("tellijn/v1/public/buildings/c".into(), false)),
            "{changed:?}"
        );
        assert!(
            !changed.iter().any(|(t, _)| t.ends_with("/hall")),
            "{changed:?}"
        );
        assert!(tree.reload(&next, &live).is_empty(), "cleared once");
    }

    #[test]
    fn a_batch_keeps_each_topic_once_with_its_last_payload_in_order() {
        let batch = vec![("a", 1), ("b", 1), ("a", 2), ("c", 1), ("b", 2), ("a", 3)];
        assert_eq!(
            last_per_topic(batch, |(t, _)| t),
            vec![("c", 1), ("b", 2), ("a", 3)]
        );
        assert_eq!(last_per_topic(vec![("a", 1)], |(t, _)| t), vec![("a", 1)]);
        assert!(last_per_topic(Vec::<(&str, u8)>::new(), |(t, _)| t).is_empty());
    }
}
