//! The ground truth of a scene, computed from the same poses that are drawn: completed passages of
//! each torso centre over the line y = height/2, and zone occupancy per second.

use serde::{Deserialize, Serialize};

use crate::motion::Track;
use crate::spec::{Rect, SceneSpec};

/// Which way a passage went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// From the top half (y < h/2) to the bottom half.
    In,
    /// From the bottom half to the top half.
    Out,
}

/// One completed passage over a line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crossing {
    /// 0-based index of the first frame with the centre on the far side for the last time.
    pub frame: u64,
    /// Name of the line ("main").
    pub line: String,
    /// Direction of the passage.
    pub dir: Direction,
}

/// Zone occupancy readings.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneTruth {
    /// Name of the zone ("door").
    pub name: String,
    /// Per whole second of stream: the median over its frames of the people whose centre is in
    /// the zone (the lower median if a second has an even number of frames).
    pub per_second: Vec<u32>,
}

/// Everything a counter should have found in a scene.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truth {
    /// Frame width in pixels.
    pub width: u32,
    /// Frame height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Frames in the stream.
    pub frames: u64,
    /// Nominal shoulder width in pixels.
    pub person_size: u32,
    /// Scenario name.
    pub scenario: String,
    /// Seed the scene was generated from.
    pub seed: u64,
    /// People who appear in the stream (including those who turn back).
    pub people: u32,
    /// Completed passages, in frame order.
    pub crossings: Vec<Crossing>,
    /// Passages in.
    #[serde(rename = "in")]
    pub ins: u32,
    /// Passages out.
    pub out: u32,
    /// Zone readings, when the scene has a zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<ZoneTruth>,
}

fn below(y: f32, line_y: f32) -> bool {
    y >= line_y
}

/// The passage a track makes over the line, if it ends on the other side from where it began:
/// the frame at which the centre crossed for the last time, and the direction.
pub fn passage(track: &Track, line_y: f32) -> Option<(u64, Direction)> {
    let first = track.poses.first()?;
    let last = track.poses.last()?;
    let (from, to) = (below(first.y, line_y), below(last.y, line_y));
    if from == to {
        return None;
    }
    let i = track
        .poses
        .windows(2)
        .rposition(|w| below(w[0].y, line_y) != below(w[1].y, line_y))?;
    let dir = if to { Direction::In } else { Direction::Out };
    Some((track.start + i as u64 + 1, dir))
}

/// Per-second medians of the number of centres inside `zone`.
pub fn zone_per_second(tracks: &[Track], zone: &Rect, frames: u64, fps: u32) -> Vec<u32> {
    let mut per_frame = vec![0u32; frames as usize];
    for tr in tracks {
        for (i, p) in tr.poses.iter().enumerate() {
            let f = tr.start as usize + i;
            if f < per_frame.len() && zone.contains(p.x, p.y) {
                per_frame[f] += 1;
            }
        }
    }
    per_frame
        .chunks(fps as usize)
        .map(|second| {
            let mut s = second.to_vec();
            s.sort_unstable();
            s[(s.len() - 1) / 2]
        })
        .collect()
}

impl Truth {
    /// The truth of the scene made of `tracks`.
    pub fn of(spec: &SceneSpec, tracks: &[Track], frames: u64) -> Truth {
        let line_y = spec.line_y();
        let mut crossings: Vec<Crossing> = tracks
            .iter()
            .filter_map(|tr| passage(tr, line_y))
            .map(|(frame, dir)| Crossing {
                frame,
                line: "main".into(),
                dir,
            })
            .collect();
        crossings.sort_by_key(|c| c.frame);
        let ins = crossings.iter().filter(|c| c.dir == Direction::In).count() as u32;
        let zone = spec.zone_rect().map(|r| ZoneTruth {
            name: "door".into(),
            per_second: zone_per_second(tracks, &r, frames, spec.fps),
        });
        Truth {
            width: spec.width,
            height: spec.height,
            fps: spec.fps,
            frames,
            person_size: spec.person_size,
            scenario: spec.scenario.name().into(),
            seed: spec.seed,
            people: tracks.len() as u32,
            out: crossings.len() as u32 - ins,
            ins,
            crossings,
            zone,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::Pose;
    use crate::person::{Clothes, Look};

    fn track(start: u64, ys: &[f32]) -> Track {
        Track {
            start,
            poses: ys
                .iter()
                .map(|&y| Pose {
                    x: 10.0,
                    y,
                    heading: 0.0,
                })
                .collect(),
            look: Look {
                size: 40.0,
                head_luma: 40.0,
                clothes_luma: 60.0,
                clothes: Clothes::Dark,
                shadow_depth: 0.3,
            },
        }
    }

    #[test]
    fn a_straight_passage_crosses_once_where_it_reaches_the_line() {
        let t = track(100, &[-50.0, 60.0, 119.0, 120.0, 200.0, 300.0]);
        assert_eq!(passage(&t, 120.0), Some((103, Direction::In)));
        let t = track(0, &[300.0, 130.0, 110.0, -50.0]);
        assert_eq!(passage(&t, 120.0), Some((2, Direction::Out)));
    }

    #[test]
    fn dithering_on_the_line_counts_the_last_crossing_only() {
        let t = track(0, &[-50.0, 118.0, 121.0, 119.0, 122.0, 119.5, 125.0, 300.0]);
        assert_eq!(passage(&t, 120.0), Some((6, Direction::In)));
    }

    #[test]
    fn turning_back_on_the_line_is_no_passage() {
        let t = track(0, &[-50.0, 100.0, 121.0, 123.0, 119.0, 60.0, -50.0]);
        assert_eq!(passage(&t, 120.0), None);
    }

    #[test]
    fn zone_readings_are_medians_per_second() {
        let zone = Rect {
            x0: 0,
            y0: 180,
            x1: 320,
            y1: 240,
        };
        // In the zone during frames 1..=3 of the first second (of 4 frames) and frame 4 only.
        let t = track(0, &[0.0, 200.0, 200.0, 200.0, 200.0, 0.0, 0.0, 0.0]);
        assert_eq!(zone_per_second(&[t], &zone, 8, 4), vec![1, 0]);
    }
}
