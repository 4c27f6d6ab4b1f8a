//! Drops count messages already seen, by `(sensor, seq)`, and counts gaps in `seq`.
//!
//! Per sensor: the seen seqs as a set of disjoint closed ranges, merged as they touch, so an
//! agent sending in order costs one range. The set is bounded: past [`MAX_RANGES`] the two
//! lowest ranges are joined, and the gap between them is given up as lost (reported like a gap
//! past the horizon, with its own reason). A seq more than [`MAX_SEQ_AHEAD`] above the sensor's
//! highest is refused: one absurd seq (a bit flip, a forged message) would otherwise become the
//! watermark once the horizon passed and turn every later message into a "duplicate".
//! Persisted by the processors after every flush, so a restart keeps dropping what was stored
//! before it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Disjoint ranges kept per sensor before the oldest gap is given up.
pub const MAX_RANGES: usize = 10_000;

/// How far above a sensor's highest seq a new seq may lie. An agent consumes one seq per
/// message, merged ones included: 10^8 is three years of one message a second.
pub const MAX_SEQ_AHEAD: u64 = 100_000_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SensorSeqs {
    /// start → end (inclusive) of each run of seen seqs.
    ranges: BTreeMap<u64, u64>,
    max: Option<u64>,
    /// Since when the watermark has stood at this seq with a gap above it (server clock, µs).
    #[serde(default)]
    gap_since: Option<(u64, i64)>,
}

/// A gap in a sensor's seqs given up as lost.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LostGap {
    pub sensor: String,
    pub first: u64,
    pub last: u64,
    /// Why it was given up.
    #[serde(default)]
    pub why: GapReason,
}

/// Why a gap was given up (the audit line's `why`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// It stood open for the whole gap horizon.
    #[default]
    GapHorizon,
    /// The sensor had more than [`MAX_RANGES`] open gaps; the lowest was joined.
    TooManyGaps,
}

impl GapReason {
    /// The label and audit value.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::GapHorizon => "gap_horizon",
            GapReason::TooManyGaps => "too_many_gaps",
        }
    }
}

impl Default for SensorSeqs {
    /// Seqs start at 1: the range `[0, 0]` stands for "nothing before 1 is missing", so the
    /// watermark is the end of the run that starts at 1, and a sensor whose first message
    /// to arrive is seq 28 is not acknowledged past 0 until 1..=27 arrive or are given up.
    fn default() -> SensorSeqs {
        SensorSeqs {
            ranges: BTreeMap::from([(0, 0)]),
            max: Some(0),
            gap_since: None,
        }
    }
}

/// What [`Dedup::observe`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// New: store it. `gap` seqs were skipped between the previous highest and this one.
    New { gap: u64 },
    /// Already seen: drop it.
    Duplicate,
    /// More than [`MAX_SEQ_AHEAD`] above the sensor's highest seq: refused, not recorded.
    TooFarAhead { highest: u64 },
}

/// The dedup state of all sensors.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dedup {
    sensors: HashMap<String, SensorSeqs>,
    /// Gaps given up by [`Dedup::observe`] (past [`MAX_RANGES`]) and not yet reported by
    /// [`Dedup::watermarks`]; saved with the state so a crash does not forget them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    given_up: Vec<LostGap>,
}

impl Dedup {
    /// Records `(sensor, seq)`; says whether it is new.
    pub fn observe(&mut self, sensor: &str, seq: u64) -> Seen {
        let s = match self.sensors.get_mut(sensor) {
            Some(s) => s,
            None => self.sensors.entry(sensor.to_owned()).or_default(),
        };
        let left = s.ranges.range(..=seq).next_back().map(|(a, b)| (*a, *b));
        if left.is_some_and(|(_, end)| end >= seq) {
            return Seen::Duplicate;
        }
        let highest = s.max.unwrap_or(0);
        if seq - highest.min(seq) > MAX_SEQ_AHEAD {
            return Seen::TooFarAhead { highest };
        }
        let gap = match s.max {
            Some(m) if seq > m + 1 => seq - m - 1,
            _ => 0,
        };
        s.max = Some(s.max.map_or(seq, |m| m.max(seq)));
        let mut start = seq;
        let mut end = seq;
        if let Some((a, b)) = left
            && b + 1 == seq
        {
            s.ranges.remove(&a);
            start = a;
        }
        if let Some(next) = seq.checked_add(1)
            && let Some(b) = s.ranges.remove(&next)
        {
            end = b;
        }
        s.ranges.insert(start, end);
        while s.ranges.len() > MAX_RANGES {
            if let (Some((a, b)), Some((c, d))) = (s.ranges.pop_first(), s.ranges.pop_first()) {
                s.ranges.insert(a, d);
                self.given_up.push(LostGap {
                    sensor: sensor.to_owned(),
                    first: b + 1,
                    last: c - 1,
                    why: GapReason::TooManyGaps,
                });
                s.gap_since = None;
            }
        }
        Seen::New { gap }
    }

    /// The ack watermark of every sensor: the end of its first run of seqs. A gap above that
    /// run older than `horizon_us` (since first seen, at `now_us`) is given up as lost, so the
    /// watermark is never blocked forever. Returns the watermarks and the gaps given up.
    pub fn watermarks(
        &mut self,
        now_us: i64,
        horizon_us: i64,
    ) -> (Vec<(String, u64)>, Vec<LostGap>) {
        let mut marks = Vec::new();
        let mut lost = std::mem::take(&mut self.given_up);
        for (sensor, s) in &mut self.sensors {
            loop {
                let mut it = s.ranges.iter();
                let (Some((&a, &b)), Some((&c, &d))) = (it.next(), it.next()) else {
                    s.gap_since = None;
                    break;
                };
                let since = match s.gap_since {
                    Some((end, t)) if end == b => t,
                    _ => {
                        s.gap_since = Some((b, now_us));
                        now_us
                    }
                };
                if now_us - since < horizon_us {
                    break;
                }
                lost.push(LostGap {
                    sensor: sensor.clone(),
                    first: b + 1,
                    last: c - 1,
                    why: GapReason::GapHorizon,
                });
                s.ranges.remove(&c);
                s.ranges.insert(a, d);
                s.gap_since = None;
            }
            if let Some((_, &end)) = s.ranges.iter().next() {
                marks.push((sensor.clone(), end));
            }
        }
        marks.sort();
        (marks, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn duplicates_and_gaps() {
        let mut d = Dedup::default();
        assert_eq!(d.observe("a", 5), Seen::New { gap: 4 });
        assert_eq!(d.observe("a", 5), Seen::Duplicate);
        assert_eq!(d.observe("b", 1), Seen::New { gap: 0 });
        assert_eq!(d.observe("a", 8), Seen::New { gap: 2 });
        assert_eq!(d.observe("a", 7), Seen::New { gap: 0 });
        assert_eq!(d.observe("a", 6), Seen::New { gap: 0 });
        assert_eq!(d.observe("a", 6), Seen::Duplicate);
        assert_eq!(d.observe("a", 4), Seen::New { gap: 0 });
        assert_eq!(d.observe("a", 4), Seen::Duplicate);
    }

    #[test]
    fn watermark_waits_for_a_gap_then_gives_it_up() {
        let mut d = Dedup::default();
        d.observe("a", 2);
        // Seq 1 has not arrived: nothing is acknowledged yet.
        assert_eq!(d.watermarks(0, 100).0, vec![("a".to_owned(), 0)]);
        for s in [1, 3, 6, 7] {
            d.observe("a", s);
        }
        let (marks, lost) = d.watermarks(0, 100);
        assert_eq!((marks, lost), (vec![("a".to_owned(), 3)], vec![]));
        // The gap fills in time: no loss.
        d.observe("a", 4);
        assert_eq!(d.watermarks(50, 100).0, vec![("a".to_owned(), 4)]);
        // Seq 5 never comes: once the watermark has stood at 4 for the horizon, 5 is declared
        // lost.
        assert_eq!(d.watermarks(149, 100).0, vec![("a".to_owned(), 4)]);
        let (marks, lost) = d.watermarks(150, 100);
        assert_eq!(marks, vec![("a".to_owned(), 7)]);
        assert_eq!(
            lost,
            vec![LostGap {
                sensor: "a".into(),
                first: 5,
                last: 5,
                why: GapReason::GapHorizon,
            }]
        );
        // A late 5 now is a duplicate, not counted twice.
        assert_eq!(d.observe("a", 5), Seen::Duplicate);
    }

    /// Regression (issue 17, finding 2): one absurd seq became the watermark once the horizon
    /// passed, and every later message of that sensor was dropped as a duplicate.
    #[test]
    fn an_absurd_seq_is_refused_and_does_not_blackhole_the_sensor() {
        let mut d = Dedup::default();
        assert_eq!(d.observe("a", 1), Seen::New { gap: 0 });
        assert_eq!(
            d.observe("a", 9_000_000_000_000_000_000),
            Seen::TooFarAhead { highest: 1 }
        );
        assert_eq!(d.observe("a", u64::MAX), Seen::TooFarAhead { highest: 1 });
        // Far, but within reach: a long outage whose messages were merged.
        assert_eq!(
            d.observe("a", 1 + MAX_SEQ_AHEAD),
            Seen::New {
                gap: MAX_SEQ_AHEAD - 1
            }
        );
        assert_eq!(
            d.observe("a", 2 + 2 * MAX_SEQ_AHEAD),
            Seen::TooFarAhead {
                highest: 1 + MAX_SEQ_AHEAD
            }
        );
        for s in 2..=6 {
            assert_eq!(d.observe("a", s), Seen::New { gap: 0 }, "seq {s}");
        }
        // Long past the horizon the refused seq is not the watermark; the real ones are.
        let (marks, _) = d.watermarks(i64::MAX, 0);
        assert_eq!(marks, vec![("a".to_owned(), 1 + MAX_SEQ_AHEAD)]);
        assert_eq!(d.observe("a", 2 + MAX_SEQ_AHEAD), Seen::New { gap: 0 });
        // A first message far ahead is refused too (the highest of a new sensor is 0).
        assert_eq!(d.observe("b", u64::MAX), Seen::TooFarAhead { highest: 0 });
    }

    /// Regression (issue 17, finding 3): past MAX_RANGES the lowest gap was joined without
    /// being counted as lost.
    #[test]
    fn gaps_joined_past_the_range_bound_are_reported_lost() {
        let mut d = Dedup::default();
        // Every other seq: each arrival opens a new range.
        for i in 1..=(MAX_RANGES as u64 + 2) {
            d.observe("a", 2 * i);
        }
        let before: Dedup = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
        assert_eq!(before, d, "the gaps given up survive a restart");
        let (_, lost) = d.watermarks(0, i64::MAX);
        let joined: Vec<_> = lost
            .iter()
            .filter(|g| g.why == GapReason::TooManyGaps)
            .collect();
        assert!(!joined.is_empty(), "{lost:?}");
        assert!(joined.iter().all(|g| g.sensor == "a" && g.first <= g.last));
        // Every seq either arrived, is still awaited, or was reported lost: none vanished.
        let reported: u64 = joined.iter().map(|g| g.last - g.first + 1).sum();
        assert_eq!(reported, joined.len() as u64, "each joined gap is one seq");
        assert!(d.watermarks(0, i64::MAX).1.is_empty(), "reported once");
        // A late arrival of a given-up seq is a duplicate, not counted twice.
        assert_eq!(d.observe("a", joined[0].first), Seen::Duplicate);
    }

    proptest! {
        /// Whatever order and repetition seqs arrive in, each is new exactly once.
        #[test]
        fn each_seq_new_exactly_once(seqs in proptest::collection::vec(1u64..200, 0..400)) {
            let mut d = Dedup::default();
            let mut seen = std::collections::HashSet::new();
            for s in seqs {
                let fresh = seen.insert(s);
                prop_assert_eq!(matches!(d.observe("x", s), Seen::New { .. }), fresh);
            }
            let copy: Dedup = serde_json::from_str(&serde_json::to_string(&d).unwrap()).unwrap();
            prop_assert_eq!(copy, d);
        }
    }
}
