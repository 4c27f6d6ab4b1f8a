//! A simulated counter: people wander in and out through each line at random, and each zone
//! holds a random-walking number of people. Nobody is imaged; this is the test double of a
//! camera's own counting process.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The simulated source of one sensor.
pub struct Simulated {
    rng: StdRng,
    /// People each line has let in and not out again (so outs never exceed ins).
    inside: Vec<u32>,
    zones: Vec<u32>,
}

/// One interval's readings: per line (in, out), per zone count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading {
    pub lines: Vec<(u32, u32)>,
    pub zones: Vec<u32>,
}

impl Simulated {
    pub fn new(lines: usize, zones: usize, seed: u64) -> Simulated {
        Simulated {
            rng: StdRng::seed_from_u64(seed),
            inside: vec![0; lines],
            zones: vec![0; zones],
        }
    }

    /// The next interval.
    pub fn next_reading(&mut self) -> Reading {
        let mut lines = Vec::with_capacity(self.inside.len());
        for inside in &mut self.inside {
            let i = self.rng.random_range(0..=3u32);
            let o = self.rng.random_range(0..=3u32).min(*inside + i);
            *inside = *inside + i - o;
            lines.push((i, o));
        }
        for z in &mut self.zones {
            let step: i32 = self.rng.random_range(-2..=2);
            *z = (*z as i32 + step).clamp(0, 200) as u32;
        }
        Reading {
            lines,
            zones: self.zones.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_lets_out_more_than_went_in() {
        let mut s = Simulated::new(2, 1, 7);
        let (mut i, mut o) = (0u64, 0u64);
        for _ in 0..10_000 {
            let r = s.next_reading();
            i += r.lines[0].0 as u64;
            o += r.lines[0].1 as u64;
            assert!(o <= i);
            assert!(r.zones[0] <= 200);
        }
    }
}
