//! `tellijn-counter calibrate`: the installer walks across the line a few times; the counter
//! learns the person size from the tracks' areas and checks the lines against the tracks.
//! Nothing of the image is shown or kept: only track positions and areas.

use crate::config::CounterConfig;
use crate::count::{Counting, Dir, Event};
use crate::pipeline::Sink;
use crate::track::Track;

/// What calibration has seen.
pub struct Calibration {
    areas: Vec<f32>,
    crossings: Vec<(u64, u64)>,
    /// Per line: |cos| of the angle between the walking direction and the line, per crossing
    /// track, and where along the line it crossed.
    angles: Vec<Vec<f32>>,
    along: Vec<Vec<f32>>,
    configured: f32,
}

impl Calibration {
    /// For a config.
    pub fn new(cfg: &CounterConfig) -> Calibration {
        let n = cfg.lines.len();
        Calibration {
            areas: Vec::new(),
            crossings: vec![(0, 0); n],
            angles: vec![Vec::new(); n],
            along: vec![Vec::new(); n],
            configured: cfg.people.size,
        }
    }

    /// The suggestion and the checks, as text for the installer.
    pub fn report(&self, cfg: &CounterConfig) -> String {
        let mut s = String::new();
        s.push_str(&format!(
            "# tellijn-counter calibrate: {} walks tracked.\n",
            self.areas.len()
        ));
        if self.areas.len() < 3 {
            s.push_str("# Too few walks to suggest a size: walk across the line at least 3 times, one person at a time.\n");
        } else {
            let mut a = self.areas.clone();
            a.sort_by(|x, y| x.total_cmp(y));
            let median = a[a.len() / 2];
            // A person's blob is about 0.55 × size² (shoulders and head, seen from above).
            let size = (median / 0.55).sqrt().round();
            s.push_str(&format!(
                "# configured size: {}; measured from the tracks: {size}\n",
                self.configured
            ));
            s.push_str(&format!("[people]\nsize = {size}\n"));
        }
        for (l, line) in cfg.lines.iter().enumerate() {
            let (i, o) = self.crossings[l];
            s.push_str(&format!("# line {:?}: {i} in, {o} out.", line.line));
            if i + o == 0 {
                s.push_str(
                    " Nobody crossed it: is it placed across the walking path, within the frame?",
                );
            } else {
                let cosines = &self.angles[l];
                let mean = cosines.iter().sum::<f32>() / cosines.len().max(1) as f32;
                if mean > 0.7 {
                    s.push_str(
                        " People walk along it more than across it: turn it to cross the path.",
                    );
                }
                if self.along[l].iter().any(|&t| !(0.1..=0.9).contains(&t)) {
                    s.push_str(" Some crossed near its ends: lengthen it to the door's edges.");
                }
                s.push_str(" If you walked in and it says out, swap the line's inside point to the other side.");
            }
            s.push('\n');
        }
        s
    }
}

impl Sink for Calibration {
    fn event(&mut self, _c: &Counting, ev: &Event) {
        if let Event::Crossing { line, dir } = *ev {
            match dir {
                Dir::In => self.crossings[line].0 += 1,
                Dir::Out => self.crossings[line].1 += 1,
            }
        }
    }

    fn status(&mut self, _line: &str) {}

    fn ended(&mut self, tracks: &[Track], c: &Counting) {
        for t in tracks.iter().filter(|t| t.hits >= 10) {
            self.areas.push(t.area);
            let (dx, dy) = (t.x - t.first.0, t.y - t.first.1);
            let len = dx.hypot(dy);
            for (l, line) in c.lines.iter().enumerate() {
                let crossed = line.distance([t.x, t.y]).signum()
                    != line.distance([t.first.0, t.first.1]).signum();
                if crossed && len > 1.0 {
                    let (lx, ly) = (line.to[0] - line.from[0], line.to[1] - line.from[1]);
                    let cos = ((dx * lx + dy * ly) / (len * lx.hypot(ly))).abs();
                    self.angles[l].push(cos);
                    self.along[l]
                        .push(line.along([(t.x + t.first.0) / 2.0, (t.y + t.first.1) / 2.0]));
                }
            }
        }
    }
}
