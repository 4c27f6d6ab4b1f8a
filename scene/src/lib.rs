//! Synthetic top-down doorway scenes with their exact ground truth, for testing and benchmarking
//! `tellijn-counter`: a camera on the ceiling looks straight down at an entrance; people walk
//! through it, and the stream comes with the crossings of the counting line they really made.
//!
//! # Layout
//!
//! In the order a scene is made:
//!
//! - `spec.rs`: [`SceneSpec`] (scenario, frame size, fps, duration, person size, seed, zone), its
//!   validation, and [`SceneSpec::counter_toml`], the counter config whose line "main"
//!   (y = height/2, "in" = downwards) and zone "door" match the truth.
//! - `floor.rs`: the empty floor, computed once: tiles, grout, smudges, grain.
//! - `scenario.rs`: the people of a scenario as episodes (one person, a group abreast,
//!   counterflow, turn back on the line, stop and go on) placed one after another.
//! - `motion.rs`: a walker simulated frame by frame (speed, heading noise, sway, stops with
//!   dithering, turns), recorded as one torso-centre pose per frame.
//! - `person.rs`: how a person looks from above and how one is drawn: shadow, shoulders, head,
//!   anti-aliased.
//! - `lighting.rs`: one gain per frame: lights switched, mains flicker, drift.
//! - `render.rs`: [`Scene`]: generation from the spec, and the frame loop (floor copy, shadows,
//!   bodies, gain and noise).
//! - `y4m.rs`: the YUV4MPEG2 writer.
//! - `truth.rs`: [`Truth`], computed from the same poses that are drawn.
//!
//! Everything random comes from `StdRng::seed_from_u64` streams derived from the spec's seed, so a
//! spec always renders the same bytes.

pub mod cli;
mod error;
pub mod floor;
pub mod lighting;
pub mod motion;
pub mod person;
mod render;
mod scenario;
pub mod spec;
pub mod truth;
pub mod y4m;

use std::io::Write;

pub use error::SceneError;
pub use render::{Pacing, Scene};
pub use spec::{Length, Scenario, SceneSpec};
pub use truth::{Crossing, Direction, Truth};

/// Renders the scene `spec` describes to `out` as Y4M, as fast as possible, and returns its truth.
pub fn render<W: Write>(spec: &SceneSpec, out: W) -> Result<Truth, SceneError> {
    let scene = Scene::generate(spec)?;
    scene.render(out, Pacing::Unpaced)?;
    Ok(scene.truth())
}

#[cfg(test)]
mod tests;
