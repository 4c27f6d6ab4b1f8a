//! The light on the scene, one gain per frame: lights switched (the whole frame ×0.5 or ×1.8 and
//! back), mains flicker (a few per cent at 100 Hz, aliased by the frame rate) and slow drift.

use std::f32::consts::TAU;

use rand::Rng;
use rand::rngs::StdRng;

/// Gain per frame in 1/256 steps (256 = unchanged).
pub struct Lighting {
    gain_q8: Vec<u16>,
}

impl Lighting {
    /// Constant light: gain 1 in every frame.
    pub fn constant(frames: u64) -> Lighting {
        Lighting {
            gain_q8: vec![256; frames as usize],
        }
    }

    /// Switched light, flicker and drift over `frames` frames at `fps`.
    pub fn effects(rng: &mut StdRng, frames: u64, fps: u32) -> Lighting {
        let fps = fps as f32;
        let flicker_amp = rng.random_range(0.015..0.04);
        let flicker_hz: f64 = 100.0 + rng.random_range(-0.05..0.05);
        let flicker_phase = rng.random_range(0.0..TAU);
        let drift_amp = rng.random_range(0.03..0.08);
        let drift_period = rng.random_range(60.0..300.0);
        let drift_phase = rng.random_range(0.0..TAU);
        let mut level = 1.0f32;
        let mut next_switch = rng.random_range(3.0..15.0) * fps;
        let gain_q8 = (0..frames)
            .map(|n| {
                let nf = n as f32;
                if nf >= next_switch {
                    level = if level == 1.0 {
                        if rng.random_bool(0.5) { 0.5 } else { 1.8 }
                    } else {
                        1.0
                    };
                    next_switch = nf + rng.random_range(5.0..25.0) * fps;
                }
                let t = n as f64 / fps as f64;
                // The flicker's phase in f64: 100 Hz × an hour is beyond f32's precision.
                let flick = ((TAU as f64 * flicker_hz * t).rem_euclid(TAU as f64)) as f32;
                let drift = 1.0 + drift_amp * (TAU * t as f32 / drift_period + drift_phase).sin();
                let g = level * drift * (1.0 + flicker_amp * (flick + flicker_phase).sin());
                (g * 256.0).round().clamp(0.0, 1023.0) as u16
            })
            .collect();
        Lighting { gain_q8 }
    }

    /// The gain of frame `n` in 1/256 steps.
    pub fn gain_q8(&self, n: u64) -> u16 {
        self.gain_q8.get(n as usize).copied().unwrap_or(256)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn lights_are_switched_and_flicker() {
        let l = Lighting::effects(&mut StdRng::seed_from_u64(5), 120 * 15, 15);
        let gains: Vec<f32> = (0..120 * 15).map(|n| l.gain_q8(n) as f32 / 256.0).collect();
        assert!(gains.iter().any(|&g| g < 0.6), "never dimmed to half");
        assert!(gains.iter().any(|&g| g > 1.6), "never brightened to 1.8");
        let jumps = gains
            .windows(2)
            .filter(|w| (w[1] / w[0] - 1.0).abs() > 0.3)
            .count();
        assert!(jumps >= 3, "only {jumps} switches in two minutes");
        // Flicker: neighbouring frames differ by a few per cent without a switch.
        let small = gains
            .windows(2)
            .filter(|w| (0.005..0.1).contains(&(w[1] / w[0] - 1.0).abs()))
            .count();
        assert!(small > 1000, "flicker too weak: {small}");
    }

    #[test]
    fn constant_light_is_unity_gain() {
        let l = Lighting::constant(10);
        assert!((0..10).all(|n| l.gain_q8(n) == 256));
    }
}
