//! How people move: a walker simulated frame by frame (speed with acceleration, heading noise,
//! lateral sway, stops with dithering, turns), recorded as one torso-centre pose per frame. The
//! recorded poses are both what is drawn and what the truth is computed from.

use std::f32::consts::{PI, TAU};

use rand::Rng;
use rand::rngs::StdRng;

use crate::person::Look;

/// Where a person's torso centre is in one frame and which way they face.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pose {
    /// Torso centre x, pixels.
    pub x: f32,
    /// Torso centre y, pixels.
    pub y: f32,
    /// Facing direction in radians; (cos, sin) is the unit vector, x right, y down.
    pub heading: f32,
}

/// One person's whole appearance in the stream.
#[derive(Clone, Debug)]
pub struct Track {
    /// Frame index of `poses[0]`.
    pub start: u64,
    /// One pose per frame from `start`.
    pub poses: Vec<Pose>,
    /// How the person looks.
    pub look: Look,
}

impl Track {
    /// The frame after the last one this person is in.
    pub fn end(&self) -> u64 {
        self.start + self.poses.len() as u64
    }

    /// The pose in stream frame `frame`, if the person is in it.
    pub fn pose_at(&self, frame: u64) -> Option<&Pose> {
        frame
            .checked_sub(self.start)
            .and_then(|i| self.poses.get(i as usize))
    }
}

/// A standard normal sample (Box–Muller).
pub fn gauss(rng: &mut StdRng) -> f32 {
    let u1: f32 = rng.random_range(f32::EPSILON..1.0);
    let u2: f32 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (TAU * u2).cos()
}

/// The scale and timing every walker of a scene shares.
#[derive(Clone, Copy, Debug)]
pub struct Stage {
    /// Frame height in pixels.
    pub height: f32,
    /// Nominal shoulder width in pixels (0.45 m).
    pub person_size: f32,
    /// Frames per second.
    pub fps: f32,
}

impl Stage {
    /// Pixels per frame for a walking speed in metres per second.
    pub fn px_per_frame(&self, metres_per_second: f32) -> f32 {
        metres_per_second * self.person_size / 0.45 / self.fps
    }

    /// How far beyond the frame edges a person starts and ends, fully out of sight.
    pub fn off_frame(&self) -> f32 {
        1.6 * self.person_size
    }

    /// Frames for a duration in seconds (at least one).
    pub fn frames(&self, seconds: f32) -> usize {
        ((seconds * self.fps).round() as usize).max(1)
    }
}

/// A person being moved through the scene, recording a pose per frame.
pub struct Walker {
    stage: Stage,
    size: f32,
    x: f32,
    y: f32,
    lane_x: f32,
    /// +1 walking down the image ("in"), -1 walking up.
    dir: f32,
    v: f32,
    v_walk: f32,
    accel: f32,
    drift: f32,
    sway_amp: f32,
    sway_phase: f32,
    sway_step: f32,
    poses: Vec<Pose>,
}

impl Walker {
    /// A walker entering from the top (`dir` = +1) or bottom (-1) edge in lane `x`, `ahead` pixels
    /// further into the frame than the usual starting point (for groups not quite abreast).
    pub fn enter(
        rng: &mut StdRng,
        stage: Stage,
        look: &Look,
        x: f32,
        dir: f32,
        speed: f32,
    ) -> Self {
        let y = if dir > 0.0 {
            -stage.off_frame()
        } else {
            stage.height + stage.off_frame()
        };
        let v_walk = stage.px_per_frame(speed);
        Walker {
            stage,
            size: look.size,
            x,
            y,
            lane_x: x,
            dir,
            v: v_walk,
            v_walk,
            accel: v_walk / (0.5 * stage.fps),
            drift: 0.0,
            sway_amp: look.size * rng.random_range(0.02..0.05),
            sway_phase: rng.random_range(0.0..TAU),
            // Lateral sway follows the stride: about 0.9 Hz.
            sway_step: TAU * rng.random_range(0.8..1.0) / stage.fps,
            poses: Vec::new(),
        }
    }

    /// Moves the start `px` pixels back behind the edge (to arrive later than the others).
    pub fn hold_back(&mut self, px: f32) {
        self.y -= self.dir * px;
    }

    fn heading(&self, lateral: f32) -> f32 {
        self.dir.atan2(lateral)
    }

    fn step(&mut self, rng: &mut StdRng, v_target: f32) {
        self.v += (v_target - self.v).clamp(-self.accel, self.accel);
        self.drift = (self.drift * 0.93 + gauss(rng) * 0.01).clamp(-0.1, 0.1);
        let steer = ((self.lane_x - self.x) / self.size * 0.1).clamp(-0.06, 0.06);
        let lateral = self.drift + steer;
        self.y += self.v * self.dir;
        self.x += self.v * lateral;
        self.sway_phase += self.sway_step;
        let heading = self.heading(lateral);
        let sway = self.sway_amp * (self.v / self.v_walk).min(1.0) * self.sway_phase.sin();
        self.poses.push(Pose {
            x: self.x - heading.sin() * sway,
            y: self.y + heading.cos() * sway,
            heading,
        });
    }

    fn past_far_edge(&self) -> bool {
        let m = self.stage.off_frame();
        if self.dir > 0.0 {
            self.y > self.stage.height + m
        } else {
            self.y < -m
        }
    }

    /// Walks on until fully out of the frame at the far edge.
    pub fn walk_out(&mut self, rng: &mut StdRng) {
        while !self.past_far_edge() {
            self.step(rng, self.v_walk);
        }
    }

    /// Walks to `y_target` and comes to a halt there.
    pub fn walk_to(&mut self, rng: &mut StdRng, y_target: f32) {
        for _ in 0..100_000 {
            let dist = (y_target - self.y) * self.dir;
            if dist <= 0.5 && self.v <= self.accel * 1.5 {
                break;
            }
            // The fastest speed that still stops in `dist` braking by `accel` per frame:
            // v + (v - a) + … ≈ v²/2a + v/2.
            let d = dist.max(0.0);
            let a = self.accel;
            let v_brake = a * (-0.5 + (0.25 + 2.0 * d / a).sqrt());
            let v_target = v_brake.min(d).min(self.v_walk);
            self.step(rng, v_target);
        }
        self.v = 0.0;
    }

    /// Stands for `seconds`, shifting weight back and forth by up to `dither` pixels.
    pub fn stand(&mut self, rng: &mut StdRng, seconds: f32, dither: f32) {
        let n = self.stage.frames(seconds);
        let heading = self.heading(0.0);
        let (p1, p2) = (rng.random_range(0.0..TAU), rng.random_range(0.0..TAU));
        let w1 = TAU * rng.random_range(0.4..0.9) / self.stage.fps;
        let w2 = TAU * rng.random_range(1.0..1.6) / self.stage.fps;
        for i in 0..n {
            let t = i as f32;
            let envelope = (PI * (i as f32 + 0.5) / n as f32).sin();
            let shift =
                dither * envelope * (0.65 * (w1 * t + p1).sin() + 0.35 * (w2 * t + p2).sin());
            self.poses.push(Pose {
                x: self.x,
                y: self.y + shift * self.dir,
                heading: heading + 0.05 * envelope * (w1 * t).sin(),
            });
        }
    }

    /// Turns round on the spot over `seconds`; afterwards the walker faces the way it came.
    pub fn turn_round(&mut self, rng: &mut StdRng, seconds: f32) {
        let n = self.stage.frames(seconds);
        let from = self.heading(0.0);
        let way = if rng.random_bool(0.5) { PI } else { -PI };
        for i in 1..=n {
            let t = i as f32 / n as f32;
            let smooth = t * t * (3.0 - 2.0 * t);
            self.poses.push(Pose {
                x: self.x,
                y: self.y,
                heading: from + way * smooth,
            });
        }
        self.dir = -self.dir;
        self.drift = 0.0;
    }

    /// The recorded poses.
    pub fn finish(self) -> Vec<Pose> {
        self.poses
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::person::Clothes;
    use rand::SeedableRng;

    const STAGE: Stage = Stage {
        height: 240.0,
        person_size: 40.0,
        fps: 15.0,
    };

    fn look() -> Look {
        Look {
            size: 40.0,
            head_luma: 40.0,
            clothes_luma: 60.0,
            clothes: Clothes::Dark,
            shadow_depth: 0.3,
        }
    }

    #[test]
    fn walking_speed_is_converted_with_shoulder_width() {
        // 0.9 m/s with 0.45 m = 40 px is 80 px/s, 16/3 px per frame at 15 fps.
        assert!((STAGE.px_per_frame(0.9) - 80.0 / 15.0).abs() < 1e-4);
    }

    #[test]
    fn a_walker_crosses_the_whole_frame_near_its_lane() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut w = Walker::enter(&mut rng, STAGE, &look(), 160.0, 1.0, 1.2);
        w.walk_out(&mut rng);
        let poses = w.finish();
        assert!(poses[0].y < -50.0 && poses.last().unwrap().y > 300.0);
        assert!(poses.windows(2).all(|p| p[1].y > p[0].y));
        assert!(poses.iter().all(|p| (p.x - 160.0).abs() < 20.0));
        // 1.2 m/s over 240 + 2×64 px at 106.7 px/s is about 3.45 s.
        assert!((50..=54).contains(&poses.len()), "{} frames", poses.len());
    }

    #[test]
    fn a_walker_stops_at_its_target_and_turns_back() {
        let mut rng = StdRng::seed_from_u64(2);
        let mut w = Walker::enter(&mut rng, STAGE, &look(), 160.0, 1.0, 1.0);
        w.walk_to(&mut rng, 120.0);
        let stop = w.poses.last().unwrap().y;
        assert!((stop - 120.0).abs() < 1.5, "stopped at {stop}");
        w.stand(&mut rng, 2.0, 0.0);
        w.turn_round(&mut rng, 0.6);
        w.walk_out(&mut rng);
        let poses = w.finish();
        assert!(poses.last().unwrap().y < -60.0);
        let facing_up = poses.last().unwrap().heading;
        assert!((facing_up.sin() + 1.0).abs() < 0.05, "heading {facing_up}");
    }
}
