//! Line crossings with a hysteresis band, and zone occupancy.
//!
//! A track has a side per line only once it is farther than `band` from the line (and within
//! the segment's extent): standing on the line, or walking up to it and turning back, never
//! changes the side, so it never counts. A crossing is a change of confirmed side of a
//! confirmed track; its direction is "in" when the new side is the one holding `inside`.

use std::time::Duration;

use crate::config::{CounterConfig, cross};
use crate::track::Track;

/// Which way someone crossed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    In,
    Out,
}

impl Dir {
    /// As in the contract.
    pub fn as_str(self) -> &'static str {
        match self {
            Dir::In => "in",
            Dir::Out => "out",
        }
    }
}

/// One counting line.
#[derive(Clone, Debug)]
pub struct Line {
    pub name: String,
    pub from: [f32; 2],
    pub to: [f32; 2],
    len: f32,
    inside_sign: f32,
    pub band: f32,
}

impl Line {
    /// Signed distance from the line, positive on the inside.
    pub fn distance(&self, p: [f32; 2]) -> f32 {
        cross(self.from, self.to, p) / self.len * self.inside_sign
    }

    /// Position along the segment: 0 at `from`, 1 at `to`.
    pub fn along(&self, p: [f32; 2]) -> f32 {
        let (dx, dy) = (self.to[0] - self.from[0], self.to[1] - self.from[1]);
        ((p[0] - self.from[0]) * dx + (p[1] - self.from[1]) * dy) / (self.len * self.len)
    }

    fn side(&self, p: [f32; 2]) -> i8 {
        let t = self.along(p);
        if !(-0.05..=1.05).contains(&t) {
            return 0;
        }
        let d = self.distance(p);
        if d > self.band {
            1
        } else if d < -self.band {
            -1
        } else {
            0
        }
    }
}

/// A zone and its readings.
pub struct Zone {
    pub name: String,
    pub polygon: Vec<[f32; 2]>,
    interval: Duration,
    start: Option<Duration>,
    samples: Vec<u32>,
}

impl Zone {
    /// Whether a point lies inside the polygon (even-odd rule).
    pub fn contains(&self, p: [f32; 2]) -> bool {
        let mut inside = false;
        let n = self.polygon.len();
        for i in 0..n {
            let (a, b) = (self.polygon[i], self.polygon[(i + n - 1) % n]);
            if (a[1] > p[1]) != (b[1] > p[1])
                && p[0] < (b[0] - a[0]) * (p[1] - a[1]) / (b[1] - a[1]) + a[0]
            {
                inside = !inside;
            }
        }
        inside
    }
}

/// An event for stdout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Crossing { line: usize, dir: Dir },
    Zone { zone: usize, count: u32 },
}

/// A crossing's track: id, hits, position, first position.
pub type CrossingTrace = (u64, u32, [f32; 2], (f32, f32));

/// Lines and zones.
pub struct Counting {
    pub lines: Vec<Line>,
    pub zones: Vec<Zone>,
    /// Crossings per line: (in, out).
    pub totals: Vec<(u64, u64)>,
    /// Per crossing of the last frame: the track's id, hits, position and first position
    /// (for `--trace`; positions only).
    pub last: Vec<CrossingTrace>,
}

impl Counting {
    /// From a validated config.
    pub fn new(cfg: &CounterConfig) -> Counting {
        let lines: Vec<Line> = cfg
            .lines
            .iter()
            .map(|l| {
                let len = (l.to[0] - l.from[0]).hypot(l.to[1] - l.from[1]).max(1e-3);
                let s = cross(l.from, l.to, l.inside);
                Line {
                    name: l.line.clone(),
                    from: l.from,
                    to: l.to,
                    len,
                    inside_sign: if s >= 0.0 { 1.0 } else { -1.0 },
                    band: l.band.unwrap_or(cfg.people.size * 0.5),
                }
            })
            .collect();
        let zones = cfg
            .zones
            .iter()
            .map(|z| Zone {
                name: z.zone.clone(),
                polygon: z.polygon.clone(),
                interval: z.interval,
                start: None,
                samples: Vec::new(),
            })
            .collect();
        let totals = vec![(0, 0); lines.len()];
        Counting {
            last: Vec::new(),
            lines,
            zones,
            totals,
        }
    }

    /// Crossings of the tracks matched in this frame.
    pub fn crossings(&mut self, tracks: &mut [Track], matched: &[usize], out: &mut Vec<Event>) {
        self.last.clear();
        for &i in matched {
            let t = &mut tracks[i];
            for (l, line) in self.lines.iter().enumerate() {
                let s = line.side([t.x, t.y]);
                if s == 0 {
                    continue;
                }
                let old = t.side[l];
                t.side[l] = s;
                if old != 0 && old != s && t.confirmed() {
                    let dir = if s > 0 { Dir::In } else { Dir::Out };
                    match dir {
                        Dir::In => self.totals[l].0 += 1,
                        Dir::Out => self.totals[l].1 += 1,
                    }
                    out.push(Event::Crossing { line: l, dir });
                    self.last.push((t.id, t.hits, [t.x, t.y], t.first));
                }
            }
        }
    }

    /// Samples the zones at stream time `t`; emits a reading (the median) per finished interval.
    pub fn zones(&mut self, tracks: &[Track], t: Duration, out: &mut Vec<Event>) {
        for (zi, z) in self.zones.iter_mut().enumerate() {
            let start = *z.start.get_or_insert(t);
            if t >= start + z.interval && !z.samples.is_empty() {
                out.push(Event::Zone {
                    zone: zi,
                    count: median(&mut z.samples),
                });
                z.samples.clear();
                z.start = Some(
                    start + z.interval * ((t - start).as_nanos() / z.interval.as_nanos()) as u32,
                );
            }
            let n = tracks
                .iter()
                .filter(|k| k.confirmed() && k.misses <= 2 && z.contains([k.x, k.y]))
                .count();
            z.samples.push(n as u32);
        }
    }
}

fn median(v: &mut [u32]) -> u32 {
    v.sort_unstable();
    v[v.len() / 2]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::track::Tracker;

    fn config() -> CounterConfig {
        CounterConfig::parse(
            "[camera]\nsource=\"y4m\"\n[[lines]]\nline=\"main\"\nfrom=[0,120]\nto=[320,120]\ninside=[160,200]\n\
             [[zones]]\nzone=\"z\"\npolygon=[[0,0],[320,0],[320,100],[0,100]]\ninterval=\"1s\"\n[people]\nsize=40\n",
        )
        .unwrap()
    }

    /// Walks one person along `ys` and returns the crossings.
    fn walk(ys: &[f32]) -> Vec<Event> {
        let cfg = config();
        let mut c = Counting::new(&cfg);
        let mut tr = Tracker::new(40.0, 1);
        let mut ev = Vec::new();
        for &y in ys {
            let m = tr.update(&[crate::detect::Detection {
                x: 160.0,
                y,
                area: 800.0,
            }]);
            c.crossings(tr.tracks_mut(), &m, &mut ev);
        }
        ev
    }

    fn ramp(a: f32, b: f32, step: f32) -> Vec<f32> {
        let n = ((b - a) / step).abs() as usize;
        (0..=n).map(|i| a + (b - a) * i as f32 / n as f32).collect()
    }

    #[test]
    fn walking_down_is_in_and_up_is_out() {
        assert_eq!(
            walk(&ramp(10.0, 230.0, 6.0)),
            vec![Event::Crossing {
                line: 0,
                dir: Dir::In
            }]
        );
        assert_eq!(
            walk(&ramp(230.0, 10.0, 6.0)),
            vec![Event::Crossing {
                line: 0,
                dir: Dir::Out
            }]
        );
    }

    #[test]
    fn standing_on_the_line_and_turning_back_counts_nothing() {
        let mut ys = ramp(20.0, 135.0, 6.0);
        for i in 0..60 {
            ys.push(120.0 + (i as f32 * 0.9).sin() * 12.0);
        }
        ys.extend(ramp(125.0, 20.0, 6.0));
        assert_eq!(walk(&ys), vec![]);
    }

    #[test]
    fn dithering_on_the_line_then_going_through_counts_once() {
        let mut ys = ramp(20.0, 120.0, 6.0);
        for i in 0..40 {
            ys.push(120.0 + (i as f32).sin() * 15.0);
        }
        ys.extend(ramp(120.0, 230.0, 6.0));
        assert_eq!(
            walk(&ys),
            vec![Event::Crossing {
                line: 0,
                dir: Dir::In
            }]
        );
    }

    #[test]
    fn zone_readings_are_medians_per_interval() {
        let cfg = config();
        let mut c = Counting::new(&cfg);
        let mut tr = Tracker::new(40.0, 1);
        let mut ev = Vec::new();
        for f in 0..46u64 {
            tr.update(&[crate::detect::Detection {
                x: 50.0,
                y: 50.0,
                area: 800.0,
            }]);
            c.zones(tr.tracks(), Duration::from_millis(f * 1000 / 15), &mut ev);
        }
        assert_eq!(
            ev,
            vec![
                Event::Zone { zone: 0, count: 1 },
                Event::Zone { zone: 0, count: 1 },
                Event::Zone { zone: 0, count: 1 }
            ]
        );
        assert!(c.zones[0].contains([10.0, 10.0]) && !c.zones[0].contains([10.0, 110.0]));
    }
}
