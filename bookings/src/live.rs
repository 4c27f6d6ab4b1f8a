//! Live booking state: per room, booked now or not, until when, the next booking, no-shows,
//! use without a booking and open study places.
//!
//! The [`Tracker`] is pure: it is told a room's bookings ([`Tracker::set_bookings`]) and its
//! occupancy as it changes ([`Tracker::occupancy`]), and asked for the state at a moment
//! ([`Tracker::tick`]). Time only moves through its arguments, so tests drive it on any clock.
//!
//! Rules:
//! - **Booked**: a non-cancelled occurrence covers the moment (`start <= now < end`); when
//!   several do, the one that started first (then the longest) is "the" booking.
//! - **No-show**: a booking during whose first `no_show_after` the room's occupancy never rose
//!   above 0. Decided once, at `start + no_show_after` (or at the first tick after it), and
//!   then kept: somebody arriving later does not undo it. A booking shorter than
//!   `no_show_after` is decided at its end.
//! - **In use without a booking**: no booking now, and the room has been occupied (above 0)
//!   for at least `no_show_after` without one.
//! - **Open study place** (rooms marked eligible: public, of a kind `[bookings]
//!   study_place_kinds` allows): opens when the room has been empty and unbooked for at least
//!   `study_place_min` and its next booking starts more than `study_place_margin` from now;
//!   stays open (people may come to study) while unbooked, until `study_place_margin` before
//!   the next booking. "Free until" is that moment; `None` when nothing is booked ahead.
//!   Emptiness is only known from the moment the tracker started: a restart waits
//!   `study_place_min` again. "Empty" here means fewer than `quiet_below` people (the
//!   public band, `public_min_count`): an open study place is public, and would otherwise
//!   tell the public that a room it shows as "fewer than 5" held nobody at all. The public
//!   learns from it nothing the banded numbers and the timetable did not already say.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};

use crate::Occurrence;

/// The `[bookings]` durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    pub no_show_after: TimeDelta,
    pub study_place_min: TimeDelta,
    pub study_place_margin: TimeDelta,
    /// Occupancy below this counts as empty for study places (`public_min_count`, ≥ 1).
    pub quiet_below: u64,
}

/// Identifies one occurrence (for no-show decisions).
pub type Key = (DateTime<Utc>, String);

/// A room's booking state at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomState {
    pub room: String,
    pub booked: bool,
    /// The current booking's start and end.
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
    /// The current booking was decided a no-show.
    pub no_show: bool,
    /// The next booking's start (after the current one, if any).
    pub next_start: Option<DateTime<Utc>>,
    /// Occupied for at least `no_show_after` without a booking.
    pub in_use_unbooked: bool,
    /// An open study place: `Some(free_until)`, where `None` inside means nothing is booked
    /// ahead.
    pub study_place: Option<Option<DateTime<Utc>>>,
}

/// A no-show decision, for the `bookings` table and the metric.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub room: String,
    pub start: DateTime<Utc>,
    pub uid_hash: String,
    pub no_show: bool,
}

#[derive(Debug, Default)]
struct Track {
    eligible: bool,
    /// Non-cancelled occurrences, sorted by start.
    bookings: Vec<Occurrence>,
    occupancy: u64,
    /// When the current run of occupancy above 0 began.
    busy_since: Option<DateTime<Utc>>,
    /// When the last run above 0 ended.
    busy_until: Option<DateTime<Utc>>,
    /// Since when occupancy has been below `quiet_below` (`None` while it is not).
    quiet_since: Option<DateTime<Utc>>,
    decided: BTreeMap<Key, bool>,
    study_open: bool,
    last: Option<RoomState>,
}

/// The live booking state of every room.
#[derive(Debug)]
pub struct Tracker {
    settings: Settings,
    rooms: BTreeMap<String, Track>,
    /// Decisions made since [`Tracker::take_decisions`] was last called.
    new_decisions: Vec<Decision>,
}

impl Tracker {
    /// `rooms`: (id, may become an open study place). Every room starts empty at `now`.
    pub fn new(
        settings: Settings,
        rooms: impl IntoIterator<Item = (String, bool)>,
        now: DateTime<Utc>,
    ) -> Tracker {
        let rooms = rooms
            .into_iter()
            .map(|(id, eligible)| {
                (
                    id,
                    Track {
                        eligible,
                        quiet_since: Some(now),
                        ..Track::default()
                    },
                )
            })
            .collect();
        Tracker {
            settings,
            rooms,
            new_decisions: Vec::new(),
        }
    }

    /// The rooms tracked.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Replaces a room's bookings (cancelled ones are ignored here). Unknown rooms are ignored.
    pub fn set_bookings(&mut self, room: &str, occurrences: &[Occurrence]) {
        if let Some(t) = self.rooms.get_mut(room) {
            let mut b: Vec<Occurrence> = occurrences
                .iter()
                .filter(|o| o.status.books() && o.end > o.start)
                .cloned()
                .collect();
            b.sort_by(|x, y| (x.start, y.end, &x.uid_hash).cmp(&(y.start, x.end, &y.uid_hash)));
            t.bookings = b;
        }
    }

    /// Decisions already made (after a restart, from the `bookings` table): not made again.
    pub fn restore_decision(&mut self, room: &str, key: Key, no_show: bool) {
        if let Some(t) = self.rooms.get_mut(room) {
            t.decided.insert(key, no_show);
        }
    }

    /// A room's occupancy is `value` from `at` on.
    pub fn occupancy(&mut self, room: &str, value: u64, at: DateTime<Utc>) {
        let Some(t) = self.rooms.get_mut(room) else {
            return;
        };
        match (t.occupancy > 0, value > 0) {
            (false, true) => t.busy_since = Some(at),
            (true, false) => {
                t.busy_since = None;
                t.busy_until = Some(at);
            }
            _ => {}
        }
        let q = self.settings.quiet_below.max(1);
        match (t.occupancy < q, value < q) {
            (true, false) => t.quiet_since = None,
            (false, true) => t.quiet_since = Some(at),
            _ => {}
        }
        t.occupancy = value;
    }

    /// Decides what is due at `now` and returns the states that changed since the last tick.
    pub fn tick(&mut self, now: DateTime<Utc>) -> Vec<RoomState> {
        let s = self.settings;
        let mut changed = Vec::new();
        for (id, t) in &mut self.rooms {
            // No-show decisions that are due.
            for b in &t.bookings {
                if b.start > now {
                    break;
                }
                let due = (b.start + s.no_show_after).min(b.end);
                let key = (b.start, b.uid_hash.clone());
                if now >= due && !t.decided.contains_key(&key) {
                    let present = t.busy_since.is_some_and(|since| since < due)
                        || t.busy_until.is_some_and(|until| until > b.start);
                    t.decided.insert(key, !present);
                    self.new_decisions.push(Decision {
                        room: id.clone(),
                        start: b.start,
                        uid_hash: b.uid_hash.clone(),
                        no_show: !present,
                    });
                }
            }
            let state = state_of(id, t, now, s);
            if t.last.as_ref() != Some(&state) {
                t.last = Some(state.clone());
                changed.push(state);
            }
        }
        changed
    }

    /// A room's state at `now` (without deciding anything).
    pub fn state(&self, room: &str, now: DateTime<Utc>) -> Option<RoomState> {
        let t = self.rooms.get(room)?;
        let mut t2 = Track {
            eligible: t.eligible,
            bookings: t.bookings.clone(),
            occupancy: t.occupancy,
            busy_since: t.busy_since,
            busy_until: t.busy_until,
            quiet_since: t.quiet_since,
            decided: t.decided.clone(),
            study_open: t.study_open,
            last: None,
        };
        Some(state_of(room, &mut t2, now, self.settings))
    }

    /// The decisions made since the last call.
    pub fn take_decisions(&mut self) -> Vec<Decision> {
        std::mem::take(&mut self.new_decisions)
    }

    /// Every decision known for `room` (for rewriting its rows of the `bookings` table).
    pub fn decisions(&self, room: &str) -> BTreeMap<Key, bool> {
        self.rooms
            .get(room)
            .map(|t| t.decided.clone())
            .unwrap_or_default()
    }

    /// Forgets decisions for bookings that started before `before` (memory stays bounded).
    pub fn forget_before(&mut self, before: DateTime<Utc>) {
        for t in self.rooms.values_mut() {
            t.decided.retain(|(start, _), _| *start >= before);
        }
    }

    /// The rooms that are open study places at `now`, with their "free until".
    pub fn study_places(&self) -> BTreeSet<String> {
        self.rooms
            .iter()
            .filter(|(_, t)| t.study_open)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

fn state_of(id: &str, t: &mut Track, now: DateTime<Utc>, s: Settings) -> RoomState {
    let current = t.bookings.iter().find(|b| b.start <= now && now < b.end);
    let next = t
        .bookings
        .iter()
        .find(|b| b.start > now && current.is_none_or(|c| b.start >= c.end))
        .map(|b| b.start);
    let next_any = t.bookings.iter().find(|b| b.start > now).map(|b| b.start);
    let no_show = current.is_some_and(|b| {
        t.decided
            .get(&(b.start, b.uid_hash.clone()))
            .copied()
            .unwrap_or(false)
    });
    // The last moment a booking covered, before now.
    let last_booked_end = t
        .bookings
        .iter()
        .filter(|b| b.start <= now)
        .map(|b| b.end.min(now))
        .max();
    let in_use_unbooked = current.is_none()
        && t.busy_since.is_some_and(|since| {
            let unbooked_from = last_booked_end.map_or(since, |e| e.max(since));
            now - unbooked_from >= s.no_show_after
        });
    let free_until = next_any.map(|n| n - s.study_place_margin);
    let open = if !t.eligible || current.is_some() || free_until.is_some_and(|f| now >= f) {
        false
    } else if t.study_open {
        true
    } else {
        let quiet_for = t.quiet_since.map(|e| {
            let from = last_booked_end.map_or(e, |b| b.max(e));
            now - from
        });
        quiet_for.is_some_and(|d| d >= s.study_place_min)
    };
    t.study_open = open;
    RoomState {
        room: id.to_owned(),
        booked: current.is_some(),
        start: current.map(|b| b.start),
        end: current.map(|b| b.end),
        no_show,
        next_start: next,
        in_use_unbooked,
        study_place: open.then_some(free_until),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Status;

    fn t(hm: &str) -> DateTime<Utc> {
        format!("2026-12-01T{hm}:00Z").parse().unwrap()
    }

    fn occ(start: &str, end: &str, uid: &str) -> Occurrence {
        Occurrence {
            room: "hall".into(),
            start: t(start),
            end: t(end),
            status: Status::Confirmed,
            uid_hash: uid.into(),
        }
    }

    fn settings() -> Settings {
        Settings {
            no_show_after: TimeDelta::minutes(15),
            study_place_min: TimeDelta::minutes(60),
            study_place_margin: TimeDelta::minutes(10),
            quiet_below: 1,
        }
    }

    fn tracker(now: &str) -> Tracker {
        Tracker::new(settings(), [("hall".to_owned(), true)], t(now))
    }

    #[test]
    fn a_booking_nobody_comes_to_is_a_no_show_once_its_first_minutes_pass() {
        let mut tr = tracker("08:00");
        tr.set_bookings("hall", &[occ("09:00", "10:00", "a")]);
        tr.tick(t("08:30"));
        let s = tr.state("hall", t("09:05")).unwrap();
        assert!(s.booked && !s.no_show);
        assert_eq!(s.end, Some(t("10:00")));
        tr.tick(t("09:14"));
        assert!(tr.take_decisions().is_empty(), "decided before 15 minutes");
        let changed = tr.tick(t("09:15"));
        assert!(changed[0].no_show);
        let d = tr.take_decisions();
        assert_eq!(d.len(), 1);
        assert!(d[0].no_show);
        // Somebody coming later does not undo it, and it is not decided twice.
        tr.occupancy("hall", 3, t("09:20"));
        tr.tick(t("09:25"));
        assert!(tr.take_decisions().is_empty());
        assert!(tr.state("hall", t("09:30")).unwrap().no_show);
    }

    #[test]
    fn anyone_present_in_the_first_minutes_means_it_was_used() {
        // Present before the start and still there.
        let mut tr = tracker("08:00");
        tr.set_bookings("hall", &[occ("09:00", "10:00", "a")]);
        tr.occupancy("hall", 5, t("08:55"));
        tr.tick(t("09:20"));
        assert!(!tr.take_decisions()[0].no_show);
        // Came and went within the window.
        let mut tr = tracker("08:00");
        tr.set_bookings("hall", &[occ("09:00", "10:00", "a")]);
        tr.occupancy("hall", 2, t("09:05"));
        tr.occupancy("hall", 0, t("09:08"));
        tr.tick(t("09:20"));
        assert!(!tr.take_decisions()[0].no_show);
        // Left just before the start: a no-show.
        let mut tr = tracker("08:00");
        tr.set_bookings("hall", &[occ("09:00", "10:00", "a")]);
        tr.occupancy("hall", 2, t("08:40"));
        tr.occupancy("hall", 0, t("08:59"));
        tr.tick(t("09:20"));
        assert!(tr.take_decisions()[0].no_show);
    }

    #[test]
    fn cancelled_bookings_do_not_book_and_are_never_no_shows() {
        let mut tr = tracker("08:00");
        let mut c = occ("09:00", "10:00", "a");
        c.status = Status::Cancelled;
        tr.set_bookings("hall", &[c]);
        tr.tick(t("09:30"));
        assert!(tr.take_decisions().is_empty());
        assert!(!tr.state("hall", t("09:30")).unwrap().booked);
    }

    #[test]
    fn next_booking_and_restored_decisions() {
        let mut tr = tracker("08:00");
        tr.set_bookings(
            "hall",
            &[occ("09:00", "10:00", "a"), occ("11:00", "12:00", "b")],
        );
        tr.restore_decision("hall", (t("09:00"), "a".into()), false);
        tr.tick(t("09:30"));
        assert!(
            tr.take_decisions().is_empty(),
            "a restored decision is kept"
        );
        let s = tr.state("hall", t("09:30")).unwrap();
        assert_eq!(s.next_start, Some(t("11:00")));
        assert!(!s.no_show);
        let s = tr.state("hall", t("10:30")).unwrap();
        assert!(!s.booked);
        assert_eq!(s.next_start, Some(t("11:00")));
    }

    #[test]
    fn a_room_used_without_a_booking_is_marked_after_the_no_show_delay() {
        let mut tr = tracker("08:00");
        tr.set_bookings("hall", &[occ("09:00", "10:00", "a")]);
        tr.occupancy("hall", 4, t("09:30"));
        // Still booked until 10:00; from then on unbooked use.
        assert!(!tr.state("hall", t("10:10")).unwrap().in_use_unbooked);
        assert!(tr.state("hall", t("10:15")).unwrap().in_use_unbooked);
        tr.occupancy("hall", 0, t("10:20"));
        assert!(!tr.state("hall", t("10:21")).unwrap().in_use_unbooked);
    }

    #[test]
    fn an_empty_unbooked_hall_opens_as_a_study_place_until_before_its_next_booking() {
        let mut tr = tracker("08:00");
        tr.set_bookings(
            "hall",
            &[occ("07:00", "08:30", "a"), occ("14:00", "15:00", "b")],
        );
        tr.tick(t("09:00"));
        assert_eq!(tr.state("hall", t("09:29")).unwrap().study_place, None);
        let changed = tr.tick(t("09:30"));
        assert_eq!(changed[0].study_place, Some(Some(t("13:50"))));
        // Students come: it stays open.
        tr.occupancy("hall", 12, t("10:00"));
        assert!(tr.tick(t("10:00")).is_empty());
        assert!(tr.study_places().contains("hall"));
        // It closes before the next booking.
        let changed = tr.tick(t("13:50"));
        assert_eq!(changed[0].study_place, None);
        assert!(tr.study_places().is_empty());
        // And after that booking, with people still inside, it does not reopen at once.
        tr.tick(t("15:30"));
        assert!(tr.study_places().is_empty());
    }

    #[test]
    fn ineligible_rooms_never_open_and_a_close_booking_keeps_a_hall_closed() {
        let mut tr = Tracker::new(settings(), [("hall".to_owned(), false)], t("06:00"));
        tr.tick(t("09:00"));
        assert!(tr.study_places().is_empty());
        let mut tr = tracker("06:00");
        tr.set_bookings("hall", &[occ("09:05", "10:00", "a")]);
        tr.tick(t("09:00"));
        assert!(
            tr.study_places().is_empty(),
            "free until 08:55 is already past"
        );
    }

    #[test]
    fn a_study_place_depends_on_the_band_only_never_on_0_against_1() {
        // With the public band at 5, a hall that held 3 people and one that held nobody open
        // at the same moment: the opening tells the public nothing the band did not.
        let s = Settings {
            quiet_below: 5,
            ..settings()
        };
        let run = |people: u64| {
            let mut tr = Tracker::new(s, [("hall".to_owned(), true)], t("06:00"));
            tr.occupancy("hall", 7, t("06:00"));
            tr.occupancy("hall", people, t("07:00"));
            (0..=180)
                .map(|m| {
                    let now = t("06:00") + TimeDelta::minutes(m);
                    tr.tick(now);
                    tr.state("hall", now).and_then(|x| x.study_place)
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(0), run(3));
        assert!(run(0).iter().any(|x| x.is_some()), "never opened");
        assert!(
            run(5).iter().all(|x| x.is_none()),
            "opened while 5 were there"
        );
    }

    #[test]
    fn unknown_rooms_are_ignored() {
        let mut tr = tracker("08:00");
        tr.set_bookings("nowhere", &[occ("09:00", "10:00", "a")]);
        tr.occupancy("nowhere", 3, t("09:00"));
        assert!(tr.state("nowhere", t("09:00")).is_none());
        tr.tick(t("09:30"));
        assert!(tr.take_decisions().is_empty());
    }
}
