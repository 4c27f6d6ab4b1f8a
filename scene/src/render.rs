//! Generating a scene (floor, people, light) from its spec, and rendering it frame by frame:
//! floor copy, shadows, bodies, then gain and sensor noise in one pass over the frame.

use std::f32::consts::TAU;
use std::io::Write;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::SceneError;
use crate::floor::Floor;
use crate::lighting::Lighting;
use crate::motion::{Track, gauss};
use crate::person::{Canvas, ShadowOffset, draw_body, draw_shadow};
use crate::scenario::{Plan, plan};
use crate::spec::SceneSpec;
use crate::truth::Truth;
use crate::y4m::Y4mWriter;

/// How fast frames are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pacing {
    /// As fast as the writer takes them.
    Unpaced,
    /// One frame per 1/fps of wall time, flushed each time (a live camera).
    Realtime,
}

/// Independent random streams, so that e.g. the noise does not shift when people change.
mod stream {
    pub const FLOOR: u64 = 1;
    pub const PEOPLE: u64 = 2;
    pub const LIGHT: u64 = 3;
    pub const NOISE: u64 = 4;
    pub const NOISE_FRAMES: u64 = 5;
}

fn sub_rng(seed: u64, stream: u64) -> StdRng {
    StdRng::seed_from_u64(seed ^ stream.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Frames pick their noise at a random offset into a table this much longer than a frame.
const NOISE_SPAN: usize = 1 << 20;

/// A generated scene, ready to render or to give its truth.
pub struct Scene {
    spec: SceneSpec,
    floor: Floor,
    plan: Plan,
    lighting: Lighting,
    light: ShadowOffset,
    noise: Vec<i8>,
}

impl Scene {
    /// Validates the spec and draws everything in the scene from its seed.
    pub fn generate(spec: &SceneSpec) -> Result<Scene, SceneError> {
        spec.validate()?;
        let floor = Floor::generate(
            &mut sub_rng(spec.seed, stream::FLOOR),
            spec.width,
            spec.height,
            spec.person_size,
        );
        let plan = plan(spec, &mut sub_rng(spec.seed, stream::PEOPLE), floor.mean);
        let mut light_rng = sub_rng(spec.seed, stream::LIGHT);
        let angle = light_rng.random_range(0.0..TAU);
        let reach = spec.person_size as f32 * light_rng.random_range(0.15..0.3);
        let light = ShadowOffset {
            dx: angle.cos() * reach,
            dy: angle.sin() * reach,
        };
        let lighting = if spec.scenario.has_lighting_effects() {
            Lighting::effects(&mut light_rng, plan.frames, spec.fps)
        } else {
            Lighting::constant(plan.frames)
        };
        let mut noise_rng = sub_rng(spec.seed, stream::NOISE);
        let sigma = noise_rng.random_range(2.0..4.0);
        let area = spec.width as usize * spec.height as usize;
        let noise = (0..NOISE_SPAN + area)
            .map(|_| (gauss(&mut noise_rng) * sigma).round().clamp(-127.0, 127.0) as i8)
            .collect();
        Ok(Scene {
            spec: spec.clone(),
            floor,
            plan,
            lighting,
            light,
            noise,
        })
    }

    /// The spec this scene was generated from.
    pub fn spec(&self) -> &SceneSpec {
        &self.spec
    }

    /// Frames in the stream.
    pub fn frames(&self) -> u64 {
        self.plan.frames
    }

    /// Every person, ordered by first frame.
    pub fn tracks(&self) -> &[Track] {
        &self.plan.tracks
    }

    /// What a counter should find in this scene.
    pub fn truth(&self) -> Truth {
        Truth::of(&self.spec, &self.plan.tracks, self.plan.frames)
    }

    /// The luma of frame `n` before gain and noise, for the people in `active`.
    fn compose(&self, n: u64, active: &[usize], work: &mut [u8]) {
        work.copy_from_slice(&self.floor.luma);
        let mut canvas = Canvas {
            luma: work,
            width: self.spec.width as usize,
            height: self.spec.height as usize,
        };
        let people = || {
            active.iter().filter_map(|&i| {
                let tr = &self.plan.tracks[i];
                tr.pose_at(n).map(|p| (p, &tr.look))
            })
        };
        for (pose, look) in people() {
            draw_shadow(&mut canvas, pose, look, self.light);
        }
        for (pose, look) in people() {
            draw_body(&mut canvas, pose, look);
        }
    }

    /// Writes the whole stream as Y4M to `out` and returns the writer.
    pub fn render<W: Write>(&self, out: W, pacing: Pacing) -> Result<W, SceneError> {
        let spec = &self.spec;
        let mut y4m = Y4mWriter::new(out, spec.width, spec.height, spec.fps)?;
        let area = spec.width as usize * spec.height as usize;
        let mut work = vec![0u8; area];
        let mut luma = vec![0u8; area];
        let mut offsets = sub_rng(spec.seed, stream::NOISE_FRAMES);
        let tracks = &self.plan.tracks;
        let (mut next, mut active) = (0usize, Vec::<usize>::new());
        let started = Instant::now();
        let frame_time = Duration::from_secs_f64(1.0 / spec.fps as f64);
        for n in 0..self.plan.frames {
            while next < tracks.len() && tracks[next].start <= n {
                active.push(next);
                next += 1;
            }
            active.retain(|&i| tracks[i].end() > n);
            self.compose(n, &active, &mut work);
            let gain = self.lighting.gain_q8(n) as i32;
            let off = offsets.random_range(0..NOISE_SPAN);
            let noise = &self.noise[off..off + area];
            for ((o, &w), &z) in luma.iter_mut().zip(&work).zip(noise) {
                *o = (((w as i32 * gain + 128) >> 8) + z as i32).clamp(0, 255) as u8;
            }
            y4m.frame(&luma)?;
            if pacing == Pacing::Realtime {
                y4m.flush()?;
                let due = started + frame_time * (n as u32 + 1);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok(y4m.finish()?)
    }
}

#[cfg(test)]
impl Scene {
    /// The composed luma of frame `n` with only the people `active` (indices into `tracks`).
    pub(crate) fn compose_for_test(&self, n: u64, active: &[usize], work: &mut [u8]) {
        self.compose(n, active, work);
    }
}
