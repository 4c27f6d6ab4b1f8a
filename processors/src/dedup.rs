//! Drops count messages already seen, by `(sensor, seq)`, and counts gaps in `seq`.
//!
//! Per sensor: the seen seqs as a set of disjoint closed ranges, merged as they touch, so an
//! agent sending in order costs one range. The set is bounded: past [`MAX_RANGES`] the two
//! lowest ranges are joined, and the gap between them is no longer waited for. Persisted by
//! the processors after every flush, so a restart keeps dropping what was stored before it.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

/// Disjoint ranges kept per sensor before the oldest gap is given up.
pub const MAX_RANGES: usize = 10_000;

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostGap {
    pub sensor: String,
    pub first: u64,
    pub last: u64,
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
}

/// The dedup state of all sensors.
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dedup {
    sensors: HashMap<String, SensorSeqs>,
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
            if let (Some((a, _)), Some((_, d))) = (s.ranges.pop_first(), s.ranges.pop_first()) {
                s.ranges.insert(a, d);
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
        let mut lost = Vec::new();
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
                last: 5
            }]
        );
        // A late 5 now is a duplicate, not counted twice.
        assert_eq!(d.observe("a", 5), Seen::Duplicate);
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
