//! How a person looks from the ceiling and how one is drawn: a soft shadow on the floor, the
//! shoulders/torso and the head, each an ellipse with coverage-based anti-aliased edges.

use rand::Rng;
use rand::rngs::StdRng;

use crate::motion::Pose;

/// What colour a person's clothes are relative to the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clothes {
    /// Darker than the floor.
    Dark,
    /// Lighter than the floor.
    Light,
    /// The floor's own luma: only the head and a faint edge give the person away.
    FloorColoured,
}

/// One person's appearance.
#[derive(Clone, Copy, Debug)]
pub struct Look {
    /// Shoulder width in pixels.
    pub size: f32,
    /// Luma of the hair (or scalp) seen from above.
    pub head_luma: f32,
    /// Luma of the clothes on the shoulders.
    pub clothes_luma: f32,
    /// Which kind of clothes `clothes_luma` is.
    pub clothes: Clothes,
    /// Fraction the shadow darkens the floor by (0.2–0.4).
    pub shadow_depth: f32,
}

impl Look {
    /// Draws a random person around the nominal shoulder width.
    pub fn random(rng: &mut StdRng, person_size: u32, floor_mean: u8) -> Look {
        let m = floor_mean as f32;
        let head_luma = if rng.random_bool(0.65) {
            rng.random_range(20.0..75.0)
        } else {
            rng.random_range(160.0..200.0)
        };
        let clothes = match rng.random_range(0..20) {
            0..8 => Clothes::Dark,
            8..15 => Clothes::Light,
            _ => Clothes::FloorColoured,
        };
        let clothes_luma = match clothes {
            Clothes::Dark => m - rng.random_range(40.0..80.0),
            Clothes::Light => m + rng.random_range(35.0..80.0),
            Clothes::FloorColoured => m,
        };
        Look {
            size: person_size as f32 * rng.random_range(0.85..1.15),
            head_luma,
            clothes_luma: clothes_luma.clamp(25.0, 235.0),
            clothes,
            shadow_depth: rng.random_range(0.2..0.4),
        }
    }
}

/// Where the light comes from: the shadow falls this many pixels away from the person.
#[derive(Clone, Copy, Debug)]
pub struct ShadowOffset {
    /// Offset in x, pixels.
    pub dx: f32,
    /// Offset in y, pixels.
    pub dy: f32,
}

/// A luma frame being composed, before gain and noise.
pub struct Canvas<'a> {
    /// Luma, row-major.
    pub luma: &'a mut [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
}

/// A rotated ellipse: centre, semi-axis `a` along the heading, `b` across it.
#[derive(Clone, Copy)]
struct Ellipse {
    cx: f32,
    cy: f32,
    cos: f32,
    sin: f32,
    a: f32,
    b: f32,
}

impl Ellipse {
    /// Approximate signed distance in pixels (negative inside) and the normalised radius².
    #[inline]
    fn distance(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let u = (dx * self.cos + dy * self.sin) / self.a;
        let v = (-dx * self.sin + dy * self.cos) / self.b;
        let q = u * u + v * v;
        let g = 2.0 * ((u * u) / (self.a * self.a) + (v * v) / (self.b * self.b)).sqrt();
        if g < 1e-6 {
            (-self.a.min(self.b), q)
        } else {
            ((q - 1.0) / g, q)
        }
    }

    /// The pixel rows and columns that `margin` px around the ellipse touch, clipped to the canvas.
    fn bounds(&self, margin: f32, c: &Canvas) -> Option<(usize, usize, usize, usize)> {
        let r = self.a.max(self.b) + margin + 1.0;
        let x0 = (self.cx - r).floor().max(0.0);
        let y0 = (self.cy - r).floor().max(0.0);
        let x1 = (self.cx + r).ceil().min(c.width as f32);
        let y1 = (self.cy + r).ceil().min(c.height as f32);
        (x0 < x1 && y0 < y1).then_some((x0 as usize, y0 as usize, x1 as usize, y1 as usize))
    }
}

fn torso(pose: &Pose, look: &Look) -> Ellipse {
    Ellipse {
        cx: pose.x,
        cy: pose.y,
        cos: pose.heading.cos(),
        sin: pose.heading.sin(),
        a: 0.275 * look.size,
        b: 0.5 * look.size,
    }
}

fn head(pose: &Pose, look: &Look) -> Ellipse {
    let (cos, sin) = (pose.heading.cos(), pose.heading.sin());
    let forward = 0.04 * look.size;
    Ellipse {
        cx: pose.x + cos * forward,
        cy: pose.y + sin * forward,
        cos,
        sin,
        a: 0.23 * look.size,
        b: 0.2 * look.size,
    }
}

/// Darkens the floor where the person's shadow falls, with an edge blurred over a fifth of their
/// width. Draw every shadow before any body so bodies cover shadows.
pub fn draw_shadow(c: &mut Canvas, pose: &Pose, look: &Look, light: ShadowOffset) {
    let mut e = torso(pose, look);
    e.cx += light.dx;
    e.cy += light.dy;
    e.a *= 1.1;
    e.b *= 1.05;
    let blur = 0.2 * look.size;
    let Some((x0, y0, x1, y1)) = e.bounds(blur, c) else {
        return;
    };
    for y in y0..y1 {
        let row = &mut c.luma[y * c.width..(y + 1) * c.width];
        for (x, p) in row.iter_mut().enumerate().take(x1).skip(x0) {
            let (d, _) = e.distance(x as f32 + 0.5, y as f32 + 0.5);
            let cov = (0.5 - d / blur).clamp(0.0, 1.0);
            if cov > 0.0 {
                *p = (*p as f32 * (1.0 - look.shadow_depth * cov)).round() as u8;
            }
        }
    }
}

/// Paints one ellipse; `shade` darkens towards the rim (rounded shoulders, the curve of a head).
fn paint(c: &mut Canvas, e: &Ellipse, luma: f32, shade: f32) {
    let Some((x0, y0, x1, y1)) = e.bounds(1.0, c) else {
        return;
    };
    for y in y0..y1 {
        let row = &mut c.luma[y * c.width..(y + 1) * c.width];
        for (x, p) in row.iter_mut().enumerate().take(x1).skip(x0) {
            let (d, q) = e.distance(x as f32 + 0.5, y as f32 + 0.5);
            let cov = (0.5 - d).clamp(0.0, 1.0);
            if cov > 0.0 {
                let col = luma * (1.0 - shade * q.min(1.0) * q.min(1.0));
                let v = *p as f32 + (col - *p as f32) * cov;
                *p = v.round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// Draws the shoulders/torso and then the head.
pub fn draw_body(c: &mut Canvas, pose: &Pose, look: &Look) {
    paint(c, &torso(pose, look), look.clothes_luma, 0.12);
    paint(c, &head(pose, look), look.head_luma, 0.08);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat_canvas(buf: &mut [u8]) -> Canvas<'_> {
        Canvas {
            luma: buf,
            width: 100,
            height: 100,
        }
    }

    fn look(clothes: Clothes, clothes_luma: f32, head_luma: f32) -> Look {
        Look {
            size: 40.0,
            head_luma,
            clothes_luma,
            clothes,
            shadow_depth: 0.3,
        }
    }

    const DOWN: Pose = Pose {
        x: 50.0,
        y: 50.0,
        heading: std::f32::consts::FRAC_PI_2,
    };

    #[test]
    fn floor_coloured_clothes_still_show_a_head() {
        let mut buf = vec![125u8; 100 * 100];
        let l = look(Clothes::FloorColoured, 125.0, 40.0);
        draw_body(&mut flat_canvas(&mut buf), &DOWN, &l);
        // The shoulder 14 px to the side of the centre is nearly the floor's luma...
        let shoulder = buf[50 * 100 + 64];
        assert!(shoulder.abs_diff(125) <= 8, "shoulder luma {shoulder}");
        // ...but the head at the centre is far from it, and there is a faint darker rim.
        let head = buf[50 * 100 + 50];
        assert!(head.abs_diff(125) >= 60, "head luma {head}");
        let rim = buf[50 * 100 + 69];
        assert!((105..125).contains(&rim), "rim luma {rim}");
    }

    #[test]
    fn torso_is_wider_across_the_walking_direction() {
        let mut buf = vec![125u8; 100 * 100];
        let l = look(Clothes::Dark, 50.0, 50.0);
        draw_body(&mut flat_canvas(&mut buf), &DOWN, &l);
        // Walking down: 18 px sideways is inside the shoulders, 18 px ahead is floor.
        assert!(buf[50 * 100 + 68] < 90);
        assert_eq!(buf[68 * 100 + 50], 125);
    }

    #[test]
    fn edges_are_anti_aliased() {
        let mut buf = vec![200u8; 100 * 100];
        let l = look(Clothes::Dark, 0.0, 0.0);
        draw_body(&mut flat_canvas(&mut buf), &DOWN, &l);
        assert!(
            buf.iter().any(|&v| v > 20 && v < 180),
            "no intermediate edge pixels"
        );
    }

    #[test]
    fn shadow_darkens_the_floor_beside_the_person() {
        let mut buf = vec![200u8; 100 * 100];
        let l = look(Clothes::Dark, 50.0, 50.0);
        let light = ShadowOffset { dx: 12.0, dy: 0.0 };
        draw_shadow(&mut flat_canvas(&mut buf), &DOWN, &l, light);
        let deepest = *buf.iter().min().unwrap();
        assert_eq!(deepest, 140, "a 30 % shadow on 200 is 140");
        // Offset to the right: the left edge of the torso is lit, the right one shadowed.
        assert_eq!(buf[50 * 100 + 32], 200);
        assert!(buf[50 * 100 + 74] < 200);
    }
}
