//! The empty floor, computed once per scene: mid-grey tiles with grout, low-frequency smudges and
//! a fine static texture.

use rand::Rng;
use rand::rngs::StdRng;

/// The floor's luma, one byte per pixel, row-major.
pub struct Floor {
    /// Luma of every pixel.
    pub luma: Vec<u8>,
    /// The luma the floor is centred on (what floor-coloured clothes take).
    pub mean: u8,
}

impl Floor {
    /// Draws a floor for a frame of `width × height` with people `person_size` px wide.
    pub fn generate(rng: &mut StdRng, width: u32, height: u32, person_size: u32) -> Floor {
        let (w, h) = (width as usize, height as usize);
        let s = person_size as f32;
        let mean: u8 = rng.random_range(110..=140);
        let mut f = vec![mean as f32; w * h];

        // Tiles: each a little lighter or darker, with darker grout between them.
        let tile = (s * rng.random_range(1.0..1.8)).max(6.0);
        let (ox, oy) = (rng.random_range(0.0..tile), rng.random_range(0.0..tile));
        let grout_depth: f32 = rng.random_range(8.0..16.0);
        let cols = (w as f32 / tile) as usize + 2;
        let rows = (h as f32 / tile) as usize + 2;
        let tile_offset: Vec<f32> = (0..cols * rows)
            .map(|_| rng.random_range(-5.0..5.0))
            .collect();
        for y in 0..h {
            let ty = (y as f32 + oy) / tile;
            let fy = ty.fract() * tile;
            for x in 0..w {
                let tx = (x as f32 + ox) / tile;
                let fx = tx.fract() * tile;
                let p = &mut f[y * w + x];
                *p += tile_offset[ty as usize * cols + tx as usize];
                // Grout 1.5 px wide with soft edges.
                let d = fx.min(tile - fx).min(fy.min(tile - fy));
                *p -= grout_depth * (1.0 - (d - 0.75).clamp(0.0, 1.0));
            }
        }

        // Smudges: broad blobs a little lighter or darker than the floor.
        for _ in 0..rng.random_range(6..=12) {
            let cx = rng.random_range(0.0..w as f32);
            let cy = rng.random_range(0.0..h as f32);
            let r = s * rng.random_range(0.5..3.0);
            let amp = rng.random_range(-10.0..8.0);
            let inv = 1.0 / (2.0 * r * r);
            for y in 0..h {
                let dy = y as f32 - cy;
                for x in 0..w {
                    let dx = x as f32 - cx;
                    f[y * w + x] += amp * (-(dx * dx + dy * dy) * inv).exp();
                }
            }
        }

        // Fine texture: static per-pixel grain.
        for p in &mut f {
            *p += rng.random_range(-4.0..4.0);
        }

        let luma = f
            .iter()
            .map(|&v| v.round().clamp(80.0, 170.0) as u8)
            .collect();
        Floor { luma, mean }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn floor_is_mid_grey_and_textured() {
        let floor = Floor::generate(&mut StdRng::seed_from_u64(3), 320, 240, 40);
        assert_eq!(floor.luma.len(), 320 * 240);
        let avg = floor.luma.iter().map(|&v| v as f64).sum::<f64>() / floor.luma.len() as f64;
        assert!((100.0..150.0).contains(&avg), "average floor luma {avg}");
        let (min, max) = (
            floor.luma.iter().min().unwrap(),
            floor.luma.iter().max().unwrap(),
        );
        assert!(max - min >= 15, "floor has no texture: {min}..{max}");
    }
}
