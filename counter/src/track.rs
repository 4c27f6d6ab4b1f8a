//! Tracks across frames: constant-velocity prediction and a globally optimal assignment of
//! detections to tracks (the Hungarian method, `pathfinding::kuhn_munkres`), with a gate.
//!
//! A track is confirmed after [`CONFIRM`] matched frames; only confirmed tracks count. A track
//! that is not matched for [`MAX_MISSES`] frames ends. Tracks hold positions only, never pixels.

use pathfinding::matrix::Matrix;

use crate::detect::Detection;

/// Matched frames before a track counts.
pub const CONFIRM: u32 = 3;
/// Frames a track survives without a match.
pub const MAX_MISSES: u32 = 8;

/// A tracked person: where, how fast, and on which side of each line it was last seen.
#[derive(Clone, Debug)]
pub struct Track {
    pub id: u64,
    pub x: f32,
    pub y: f32,
    pub vx: f32,
    pub vy: f32,
    pub hits: u32,
    pub misses: u32,
    /// Per line: the side last confirmed outside the hysteresis band (+1 inside, -1 outside).
    pub side: Vec<i8>,
    /// Mean detected area (for calibration).
    pub area: f32,
    /// Where the track was first confirmed (for calibration).
    pub first: (f32, f32),
}

impl Track {
    /// Whether the track counts.
    pub fn confirmed(&self) -> bool {
        self.hits >= CONFIRM
    }
}

/// The tracker.
pub struct Tracker {
    tracks: Vec<Track>,
    next_id: u64,
    gate: f32,
    lines: usize,
    ended: Vec<Track>,
}

impl Tracker {
    /// A tracker for people of this size (pixels) and this many lines.
    pub fn new(person_size: f32, lines: usize) -> Tracker {
        Tracker {
            tracks: Vec::new(),
            next_id: 1,
            gate: 0.9 * person_size,
            lines,
            ended: Vec::new(),
        }
    }

    /// The live tracks.
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Tracks that ended in the last update (for calibration).
    pub fn ended(&self) -> &[Track] {
        &self.ended
    }

    /// Advances one frame with its detections. Returns the indices of tracks matched this frame.
    pub fn update(&mut self, dets: &[Detection]) -> Vec<usize> {
        self.ended.clear();
        let nt = self.tracks.len();
        let nd = dets.len();
        let mut matched_det = vec![false; nd];
        let mut matched = Vec::new();
        if nt > 0 && nd > 0 {
            // Rows: tracks. Columns: detections, then one "unmatched" column per track.
            const SCALE: f32 = 100.0;
            let forbid = -((self.gate * 4.0 * SCALE) as i64) - 1_000_000;
            let mut m = Matrix::new(nt, nd + nt, forbid);
            for (i, t) in self.tracks.iter().enumerate() {
                let (px, py) = (t.x + t.vx, t.y + t.vy);
                let gate = self.gate + 0.5 * (t.vx.hypot(t.vy)) + t.misses as f32 * 0.1 * self.gate;
                for (j, d) in dets.iter().enumerate() {
                    let dist = (d.x - px).hypot(d.y - py);
                    if dist <= gate {
                        m[(i, j)] = -((dist * SCALE) as i64);
                    }
                }
                m[(i, nd + i)] = -((gate * SCALE) as i64);
            }
            let (_, assign) = pathfinding::kuhn_munkres::kuhn_munkres(&m);
            for (i, &j) in assign.iter().enumerate() {
                if j < nd && m[(i, j)] != forbid {
                    matched_det[j] = true;
                    let t = &mut self.tracks[i];
                    let d = &dets[j];
                    let (nvx, nvy) = (d.x - t.x, d.y - t.y);
                    let steps = (t.misses + 1) as f32;
                    t.vx = 0.5 * t.vx + 0.5 * nvx / steps;
                    t.vy = 0.5 * t.vy + 0.5 * nvy / steps;
                    t.x = d.x;
                    t.y = d.y;
                    t.hits += 1;
                    t.misses = 0;
                    t.area = if t.hits == 1 {
                        d.area
                    } else {
                        t.area + (d.area - t.area) / t.hits as f32
                    };
                    if t.hits == CONFIRM {
                        t.first = (t.x, t.y);
                    }
                    matched.push(i);
                }
            }
        }
        for (i, t) in self.tracks.iter_mut().enumerate() {
            if !matched.contains(&i) {
                t.x += t.vx;
                t.y += t.vy;
                t.misses += 1;
            }
        }
        for (j, d) in dets.iter().enumerate() {
            if !matched_det[j] {
                matched.push(self.tracks.len());
                self.tracks.push(Track {
                    id: self.next_id,
                    x: d.x,
                    y: d.y,
                    vx: 0.0,
                    vy: 0.0,
                    hits: 1,
                    misses: 0,
                    side: vec![0; self.lines],
                    area: d.area,
                    first: (d.x, d.y),
                });
                self.next_id += 1;
            }
        }
        // End lost tracks; keep indices of matched ones valid by remapping.
        let mut keep = Vec::with_capacity(self.tracks.len());
        let mut remap = vec![usize::MAX; self.tracks.len()];
        for (i, t) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if t.misses > MAX_MISSES {
                self.ended.push(t);
            } else {
                remap[i] = keep.len();
                keep.push(t);
            }
        }
        self.tracks = keep;
        let matched: Vec<usize> = matched
            .into_iter()
            .map(|i| remap[i])
            .filter(|&i| i != usize::MAX)
            .collect();
        self.merge_duplicates(matched)
    }

    /// Two tracks closer than two people can stand are one person seen twice (a blob split
    /// in two, a shadow): the younger one ends, the older one keeps its sides.
    fn merge_duplicates(&mut self, matched: Vec<usize>) -> Vec<usize> {
        let near = 0.45 * self.gate / 0.9;
        let mut gone = vec![false; self.tracks.len()];
        for i in 0..self.tracks.len() {
            for j in i + 1..self.tracks.len() {
                if gone[i] || gone[j] {
                    continue;
                }
                let (a, b) = (&self.tracks[i], &self.tracks[j]);
                // Only two tracks both seen in this frame: a track coasting past another (people
                // passing each other, one hidden in a merged blob) is not a duplicate.
                if a.misses == 0 && b.misses == 0 && (a.x - b.x).hypot(a.y - b.y) < near {
                    // Tracks are kept in creation order: j is the younger.
                    gone[j] = true;
                }
            }
        }
        if !gone.contains(&true) {
            return matched;
        }
        let mut remap = vec![usize::MAX; self.tracks.len()];
        let mut keep = Vec::with_capacity(self.tracks.len());
        for (i, t) in std::mem::take(&mut self.tracks).into_iter().enumerate() {
            if !gone[i] {
                remap[i] = keep.len();
                keep.push(t);
            }
        }
        self.tracks = keep;
        matched
            .into_iter()
            .map(|i| remap[i])
            .filter(|&i| i != usize::MAX)
            .collect()
    }

    /// Mutable access for the counting stage.
    pub fn tracks_mut(&mut self) -> &mut [Track] {
        &mut self.tracks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32) -> Detection {
        Detection { x, y, area: 100.0 }
    }

    #[test]
    fn two_people_passing_keep_their_tracks() {
        let mut t = Tracker::new(40.0, 1);
        for step in 0..30 {
            let s = step as f32 * 6.0;
            t.update(&[det(100.0, 10.0 + s), det(140.0, 190.0 - s)]);
        }
        assert_eq!(t.tracks().len(), 2);
        let ids: Vec<u64> = t.tracks().iter().map(|t| t.id).collect();
        assert_eq!(
            ids,
            vec![1, 2],
            "no track was lost or swapped for a new one"
        );
        assert!(t.tracks()[0].y > t.tracks()[1].y);
    }

    #[test]
    fn a_track_survives_a_few_missed_frames_then_ends() {
        let mut t = Tracker::new(40.0, 1);
        for i in 0..5 {
            t.update(&[det(50.0, 50.0 + i as f32 * 5.0)]);
        }
        for _ in 0..MAX_MISSES {
            t.update(&[]);
        }
        assert_eq!(t.tracks().len(), 1);
        t.update(&[det(50.0, 50.0 + 13.0 * 5.0)]);
        assert_eq!(
            t.tracks()[0].id,
            1,
            "picked up again where it was predicted"
        );
        for _ in 0..=MAX_MISSES {
            t.update(&[]);
        }
        assert!(t.tracks().is_empty());
        assert_eq!(t.ended().len(), 1);
    }
}
