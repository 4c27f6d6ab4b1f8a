//! From a frame's luma to people's positions: background model, foreground, morphology,
//! connected components, and splitting of merged blobs by the person size.
//!
//! Works on a downscaled copy (a box average to about 16 pixels per shoulder width) kept in
//! this module's own preallocated buffers; they are zeroized on drop. The background model
//! follows slow lighting changes per pixel and whole-frame gain changes (lights switched,
//! flicker) at once; when most of the frame still differs for a while it starts again.
//!
//! Background: an exponential running mean per pixel, fast while learning and slow once it
//! knows the empty scene; pixels covered by people learn twenty times slower, so someone who
//! stops for a few seconds is still seen.

use image::{GrayImage, Luma};
use imageproc::distance_transform::Norm;
use imageproc::region_labelling::{Connectivity, connected_components};
use zeroize::Zeroize;

use crate::frame::Frame;

/// A person (or what looks like one) in one frame, in the frame's own pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Detection {
    pub x: f32,
    pub y: f32,
    /// Area in frame pixels.
    pub area: f32,
}

/// Detector settings derived from the config.
#[derive(Clone, Copy, Debug)]
pub struct DetectParams {
    pub person_size: f32,
    pub threshold: u8,
    pub learning_rate: f32,
    /// Split blobs larger than about one person.
    pub split: bool,
}

/// The detector and its buffers.
pub struct Detector {
    p: DetectParams,
    scale: usize,
    w: usize,
    h: usize,
    cur: Vec<u8>,
    bg: Vec<f32>,
    mask: Vec<u8>,
    prev_fg: Vec<u8>,
    frames: u64,
    flooded: u32,
    /// Pixels of one person at the working scale.
    person_area: f32,
    pts: Vec<(u16, u16)>,
    /// The area of one person as seen here (working pixels), learned from lone people.
    single_area: f32,
}

/// Frames during which the background learns fast.
const WARMUP: u64 = 20;

impl Detector {
    /// A detector for frames of this size.
    pub fn new(width: usize, height: usize, p: DetectParams) -> Detector {
        let scale = ((p.person_size / 16.0).floor() as usize).clamp(1, 8);
        let (w, h) = (width / scale, height / scale);
        let n = w * h;
        let size = p.person_size / scale as f32;
        Detector {
            p,
            scale,
            w,
            h,
            cur: vec![0; n],
            bg: vec![0.0; n],
            mask: vec![0; n],
            prev_fg: vec![0; n],
            frames: 0,
            flooded: 0,
            person_area: 0.55 * size * size,
            pts: Vec::with_capacity(n),
            single_area: 0.55 * size * size,
        }
    }

    /// The working scale (frame pixels per working pixel).
    pub fn scale(&self) -> usize {
        self.scale
    }

    /// Finds the people in a frame.
    pub fn detect(&mut self, frame: &Frame, out: &mut Vec<Detection>) {
        out.clear();
        self.downscale(frame);
        self.detect_scaled(out);
        self.cur[..].zeroize();
    }

    fn detect_scaled(&mut self, out: &mut Vec<Detection>) {
        self.frames += 1;
        if self.frames == 1 {
            for (b, &c) in self.bg.iter_mut().zip(&self.cur) {
                *b = c as f32;
            }
            return;
        }
        let gain = self.gain();
        let thr = self.p.threshold as f32;
        let warm = self.frames <= WARMUP;
        let a_bg = if warm {
            1.0 / self.frames as f32
        } else {
            self.p.learning_rate
        };
        let a_fg = a_bg / 20.0;
        let mut fg_count = 0usize;
        for i in 0..self.cur.len() {
            let b = self.bg[i] * gain;
            let c = self.cur[i] as f32;
            // Brighter backgrounds get a proportionally larger threshold (sensor noise grows).
            let t = thr * (0.6 + b / 320.0);
            let fg = (c - b).abs() > t && !warm;
            self.mask[i] = if fg { 255 } else { 0 };
            fg_count += fg as usize;
            let a = if fg { a_fg } else { a_bg };
            self.bg[i] = b + a * (c - b);
        }
        if fg_count * 2 > self.cur.len() {
            self.flooded += 1;
            if self.flooded >= 5 {
                // The scene changed under us (a lamp, a moved camera): learn it again.
                self.frames = 1;
                self.flooded = 0;
                for (b, &c) in self.bg.iter_mut().zip(&self.cur) {
                    *b = c as f32;
                }
                self.mask[..].zeroize();
                self.prev_fg[..].zeroize();
                return;
            }
        } else {
            self.flooded = 0;
        }
        self.clean_mask();
        self.prev_fg.copy_from_slice(&self.mask);
        self.components(out);
    }

    fn downscale(&mut self, frame: &Frame) {
        let (fw, s) = (frame.width(), self.scale);
        let luma = frame.luma();
        let inv = 1.0 / (s * s) as f32;
        for y in 0..self.h {
            for x in 0..self.w {
                let mut sum = 0u32;
                for dy in 0..s {
                    let row = (y * s + dy) * fw + x * s;
                    for &v in &luma[row..row + s] {
                        sum += v as u32;
                    }
                }
                self.cur[y * self.w + x] = (sum as f32 * inv + 0.5) as u8;
            }
        }
    }

    /// Whole-frame gain of this frame against the background, over pixels that were background.
    fn gain(&self) -> f32 {
        let (mut sc, mut sb) = (0f64, 0f64);
        for i in (0..self.cur.len()).step_by(3) {
            if self.prev_fg[i] == 0 {
                sc += self.cur[i] as f64;
                sb += self.bg[i] as f64;
            }
        }
        if sb < 1.0 {
            1.0
        } else {
            (sc / sb).clamp(0.2, 5.0) as f32
        }
    }

    fn clean_mask(&mut self) {
        let mask = std::mem::take(&mut self.mask);
        let Some(mut img) = GrayImage::from_raw(self.w as u32, self.h as u32, mask) else {
            return;
        };
        imageproc::morphology::open_mut(&mut img, Norm::LInf, 1);
        imageproc::morphology::close_mut(&mut img, Norm::LInf, 1);
        self.mask = img.into_raw();
    }

    fn components(&mut self, out: &mut Vec<Detection>) {
        let mask = std::mem::take(&mut self.mask);
        let Some(img) = GrayImage::from_raw(self.w as u32, self.h as u32, mask) else {
            return;
        };
        let labels = connected_components(&img, Connectivity::Eight, Luma([0u8]));
        self.mask = img.into_raw();
        let mut labels = labels.into_raw();
        let n = labels.iter().copied().max().unwrap_or(0) as usize;
        let mut stats = vec![Blob::default(); n + 1];
        for (i, &l) in labels.iter().enumerate() {
            if l != 0 {
                let (x, y) = ((i % self.w) as u32, (i / self.w) as u32);
                stats[l as usize].add(x, y);
            }
        }
        // Parts of one person (head, shoulders, a shadow's rim) can fall apart into several
        // components: components closer than part of a person are joined first.
        let size = self.p.person_size / self.scale as f32;
        let join = 0.6 * size;
        let mut group: Vec<usize> = (0..stats.len()).collect();
        let centre = |b: &Blob| (b.sx as f32 / b.n as f32, b.sy as f32 / b.n as f32);
        let live: Vec<usize> = (1..stats.len()).filter(|&i| stats[i].n >= 3).collect();
        for (a, &i) in live.iter().enumerate() {
            for &j in &live[a + 1..] {
                let (ci, cj) = (centre(&stats[i]), centre(&stats[j]));
                if (ci.0 - cj.0).hypot(ci.1 - cj.1) < join {
                    let (ri, rj) = (root(&mut group, i), root(&mut group, j));
                    if ri != rj {
                        group[rj] = ri;
                    }
                }
            }
        }
        for &i in &live {
            let r = root(&mut group, i);
            if r != i {
                let b = stats[i];
                stats[r].merge(&b);
                stats[i].n = 0;
            }
        }
        let min_area = (0.15 * self.person_area).max(3.0);
        let s = self.scale as f32;
        for (id, b) in stats.iter().enumerate().skip(1) {
            if (b.n as f32) < min_area {
                continue;
            }
            let k = if self.p.split { self.people_in(b) } else { 1 };
            if k <= 1 {
                out.push(Detection {
                    x: (b.sx as f32 / b.n as f32 + 0.5) * s,
                    y: (b.sy as f32 / b.n as f32 + 0.5) * s,
                    area: b.n as f32 * s * s,
                });
            } else {
                self.pts.clear();
                for y in b.y0..=b.y1 {
                    for x in b.x0..=b.x1 {
                        let l = labels[y as usize * self.w + x as usize] as usize;
                        if l != 0 && root(&mut group, l) == id {
                            self.pts.push((x as u16, y as u16));
                        }
                    }
                }
                split(&self.pts, k, b, s, out);
                self.pts.iter_mut().for_each(|p| *p = (0, 0));
            }
        }
        labels.zeroize();
        self.mask[..].zeroize();
    }

    /// How many people a blob holds: from its length across its long axis (people side by
    /// side), and from its area against the learned area of one person, which may take one
    /// off. Length alone over-splits wide groups; area alone over-splits shadows.
    fn people_in(&mut self, b: &Blob) -> usize {
        let size = self.p.person_size / self.scale as f32;
        let (major, _) = b.axes();
        // A single person is about 1.1 sizes long along their shoulders, with a shadow 1.3.
        let by_length = (major / (1.1 * size) + 0.25).floor().max(1.0);
        let area = b.n as f32;
        if by_length <= 1.0 {
            let nominal = 0.55 * size * size;
            if (0.5 * nominal..2.0 * nominal).contains(&area) {
                self.single_area += 0.02 * (area - self.single_area);
            }
            return 1;
        }
        let by_area = (area / self.single_area).round().max(1.0);
        let k = by_length.min(by_area.max(by_length - 1.0));
        (k as usize).clamp(1, 8)
    }
}

impl Drop for Detector {
    fn drop(&mut self) {
        self.cur[..].zeroize();
        self.bg[..].zeroize();
        self.mask[..].zeroize();
        self.prev_fg[..].zeroize();
        self.pts.iter_mut().for_each(|p| *p = (0, 0));
    }
}

#[derive(Clone, Copy, Default)]
struct Blob {
    n: u64,
    sx: u64,
    sy: u64,
    sxx: u64,
    syy: u64,
    sxy: u64,
    x0: u32,
    y0: u32,
    x1: u32,
    y1: u32,
}

fn root(g: &mut [usize], mut i: usize) -> usize {
    while g[i] != i {
        g[i] = g[g[i]];
        i = g[i];
    }
    i
}

impl Blob {
    fn merge(&mut self, o: &Blob) {
        self.n += o.n;
        self.sx += o.sx;
        self.sy += o.sy;
        self.sxx += o.sxx;
        self.syy += o.syy;
        self.sxy += o.sxy;
        self.x0 = self.x0.min(o.x0);
        self.y0 = self.y0.min(o.y0);
        self.x1 = self.x1.max(o.x1);
        self.y1 = self.y1.max(o.y1);
    }

    fn add(&mut self, x: u32, y: u32) {
        if self.n == 0 {
            (self.x0, self.y0, self.x1, self.y1) = (x, y, x, y);
        }
        let (xu, yu) = (x as u64, y as u64);
        self.n += 1;
        self.sx += xu;
        self.sy += yu;
        self.sxx += xu * xu;
        self.syy += yu * yu;
        self.sxy += xu * yu;
        self.x0 = self.x0.min(x);
        self.y0 = self.y0.min(y);
        self.x1 = self.x1.max(x);
        self.y1 = self.y1.max(y);
    }

    /// Covariance of the blob's pixels.
    fn cov(&self) -> (f32, f32, f32) {
        let n = self.n as f64;
        let (mx, my) = (self.sx as f64 / n, self.sy as f64 / n);
        (
            (self.sxx as f64 / n - mx * mx) as f32,
            (self.syy as f64 / n - my * my) as f32,
            (self.sxy as f64 / n - mx * my) as f32,
        )
    }

    /// Full lengths of the major and minor axes (as of a uniform ellipse) and the major axis.
    fn axes(&self) -> (f32, f32) {
        let (a, c, b) = self.cov();
        let tr = a + c;
        let det = a * c - b * b;
        let disc = (tr * tr / 4.0 - det).max(0.0).sqrt();
        let (l1, l2) = (tr / 2.0 + disc, (tr / 2.0 - disc).max(0.0));
        (4.0 * l1.sqrt(), 4.0 * l2.sqrt())
    }

    fn major_dir(&self) -> (f32, f32) {
        let (a, c, b) = self.cov();
        let theta = 0.5 * (2.0 * b).atan2(a - c);
        (theta.cos(), theta.sin())
    }
}

/// Splits a blob's pixels into `k` people by k-means, seeded along its long axis.
fn split(pts: &[(u16, u16)], k: usize, b: &Blob, s: f32, out: &mut Vec<Detection>) {
    let n = b.n as f32;
    let (mx, my) = (b.sx as f32 / n, b.sy as f32 / n);
    let (major, _) = b.axes();
    let (dx, dy) = b.major_dir();
    let mut c: Vec<(f32, f32)> = (0..k)
        .map(|i| {
            let t = ((i as f32 + 0.5) / k as f32 - 0.5) * major;
            (mx + t * dx, my + t * dy)
        })
        .collect();
    let mut acc = vec![(0f32, 0f32, 0u32); k];
    for _ in 0..6 {
        acc.iter_mut().for_each(|a| *a = (0.0, 0.0, 0));
        for &(x, y) in pts {
            let (x, y) = (x as f32, y as f32);
            let j = nearest(&c, x, y);
            acc[j].0 += x;
            acc[j].1 += y;
            acc[j].2 += 1;
        }
        for (cj, a) in c.iter_mut().zip(&acc) {
            if a.2 > 0 {
                *cj = (a.0 / a.2 as f32, a.1 / a.2 as f32);
            }
        }
    }
    for (cj, a) in c.iter().zip(&acc) {
        if a.2 > 0 {
            out.push(Detection {
                x: (cj.0 + 0.5) * s,
                y: (cj.1 + 0.5) * s,
                area: a.2 as f32 * s * s,
            });
        }
    }
}

fn nearest(c: &[(f32, f32)], x: f32, y: f32) -> usize {
    let mut best = (f32::MAX, 0);
    for (j, &(cx, cy)) in c.iter().enumerate() {
        let d = (cx - x).powi(2) + (cy - y).powi(2);
        if d < best.0 {
            best = (d, j);
        }
    }
    best.1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Ring;

    fn params() -> DetectParams {
        DetectParams {
            person_size: 32.0,
            threshold: 18,
            learning_rate: 0.02,
            split: true,
        }
    }

    /// Draws discs of `r` at `centres` on a floor of 120 into a ring frame and detects.
    fn detect_discs(
        d: &mut Detector,
        ring: &Ring,
        centres: &[(f32, f32)],
        r: f32,
        floor: u8,
    ) -> Vec<Detection> {
        let (w, h) = ring.size();
        let mut f = ring.take_free();
        f.born_now();
        let luma = f.luma_mut();
        for y in 0..h {
            for x in 0..w {
                let inside = centres
                    .iter()
                    .any(|&(cx, cy)| (x as f32 - cx).powi(2) + (y as f32 - cy).powi(2) < r * r);
                luma[y * w + x] = if inside { 40 } else { floor };
            }
        }
        let mut out = Vec::new();
        d.detect(&f, &mut out);
        ring.done(f, true);
        out
    }

    #[test]
    fn a_person_is_found_where_they_are_and_side_by_side_pairs_are_split() {
        let ring = Ring::new(320, 240);
        let mut d = Detector::new(320, 240, params());
        for _ in 0..WARMUP + 1 {
            assert!(detect_discs(&mut d, &ring, &[], 14.0, 120).is_empty());
        }
        let one = detect_discs(&mut d, &ring, &[(100.0, 80.0)], 14.0, 120);
        assert_eq!(one.len(), 1, "{one:?}");
        assert!(
            (one[0].x - 100.0).abs() < 3.0 && (one[0].y - 80.0).abs() < 3.0,
            "{one:?}"
        );
        let two = detect_discs(&mut d, &ring, &[(150.0, 120.0), (178.0, 120.0)], 14.0, 120);
        assert_eq!(two.len(), 2, "{two:?}");
        assert!(ring.all_free_zero());
    }

    #[test]
    fn lights_switched_on_are_not_people() {
        let ring = Ring::new(320, 240);
        let mut d = Detector::new(320, 240, params());
        for _ in 0..WARMUP + 5 {
            detect_discs(&mut d, &ring, &[], 14.0, 60);
        }
        // The whole floor doubles in brightness at once: the gain follows, nobody appears.
        for _ in 0..10 {
            assert!(detect_discs(&mut d, &ring, &[], 14.0, 120).is_empty());
        }
        let one = detect_discs(&mut d, &ring, &[(100.0, 80.0)], 14.0, 120);
        assert_eq!(one.len(), 1, "{one:?}");
    }
}
