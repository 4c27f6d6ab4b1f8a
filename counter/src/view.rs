//! The installer's view at privacy level 3: a black canvas on the terminal with the counting
//! lines and zone outlines; a line lights up when someone crosses it (green in, orange out)
//! and the counts tick. No image, blob or silhouette is ever drawn: the view is made from the
//! config and the counts only. At privacy level 2 (an explicit setting, reported in every
//! status line) confirmed tracks are drawn as dots as well.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::config::CounterConfig;
use crate::count::{Counting, Dir, Event};
use crate::pipeline::{Sink, StdoutSink};
use crate::track::Track;
use crate::y4m_source::Geometry;

const LIT: Duration = Duration::from_millis(700);
const REDRAW: Duration = Duration::from_millis(100);

/// ANSI colours used.
pub const GREEN: &str = "\x1b[1;92m";
pub const ORANGE: &str = "\x1b[1;38;5;208m";
const DIM: &str = "\x1b[2;37m";
const ZONE: &str = "\x1b[34m";
const RESET: &str = "\x1b[0m";
const BLACK: &str = "\x1b[40m";

/// Terminal columns and rows (read before confinement: it needs an ioctl).
pub fn terminal_size() -> (usize, usize) {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ fills a winsize; on failure it stays zero.
    let r = unsafe { libc::ioctl(2, libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col >= 20 && ws.ws_row >= 8 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

/// The view, drawn on stderr, wrapping the stdout sink.
pub struct View<W: Write> {
    inner: StdoutSink<W>,
    cols: usize,
    rows: usize,
    sx: f32,
    sy: f32,
    level: u8,
    lit: Vec<Option<(Dir, Instant)>>,
    last: Option<Instant>,
    dots: Vec<(usize, usize)>,
    totals: Vec<(u64, u64)>,
    zone_counts: Vec<u32>,
}

impl<W: Write> View<W> {
    /// A view for frames of `g` on a terminal of `size` (columns, rows).
    pub fn new(
        cfg: &CounterConfig,
        g: Geometry,
        size: (usize, usize),
        inner: StdoutSink<W>,
    ) -> View<W> {
        let (cols, rows) = (size.0.min(200), size.1.saturating_sub(4).clamp(4, 60));
        View {
            inner,
            cols,
            rows,
            sx: cols as f32 / g.width as f32,
            sy: rows as f32 / g.height as f32,
            level: cfg.view.privacy_level,
            lit: vec![None; cfg.lines.len()],
            last: None,
            dots: Vec::new(),
            totals: vec![(0, 0); cfg.lines.len()],
            zone_counts: vec![0; cfg.zones.len()],
        }
    }

    /// The canvas as text with ANSI colours.
    pub fn render(&self, c: &Counting) -> String {
        let mut cells: Vec<Vec<(char, &str)>> = vec![vec![(' ', ""); self.cols]; self.rows];
        let now = Instant::now();
        for z in &c.zones {
            let n = z.polygon.len();
            for i in 0..n {
                self.segment(&mut cells, z.polygon[i], z.polygon[(i + 1) % n], '·', ZONE);
            }
        }
        for (l, line) in c.lines.iter().enumerate() {
            let colour = match self.lit[l] {
                Some((Dir::In, t)) if now - t < LIT => GREEN,
                Some((Dir::Out, t)) if now - t < LIT => ORANGE,
                _ => DIM,
            };
            self.segment(&mut cells, line.from, line.to, '━', colour);
        }
        if self.level < 3 {
            for &(x, y) in &self.dots {
                if y < self.rows && x < self.cols {
                    cells[y][x] = ('●', "\x1b[97m");
                }
            }
        }
        let mut s = String::from("\x1b[H");
        s.push_str(&format!(
            "{RESET}tellijn-counter — privacy level {}: {}\x1b[K\r\n",
            self.level,
            if self.level == 3 {
                "no image is shown, only the counting lines"
            } else {
                "tracked people shown as dots"
            }
        ));
        for row in &cells {
            s.push_str(BLACK);
            for &(ch, col) in row {
                if col.is_empty() {
                    s.push(' ');
                } else {
                    s.push_str(col);
                    s.push(ch);
                    s.push_str(RESET);
                    s.push_str(BLACK);
                }
            }
            s.push_str(RESET);
            s.push_str("\r\n");
        }
        let mut foot = String::new();
        for (l, line) in c.lines.iter().enumerate() {
            let (i, o) = self.totals[l];
            foot.push_str(&format!(
                "{}  {GREEN}in {i}{RESET}  {ORANGE}out {o}{RESET}    ",
                line.name
            ));
        }
        for (z, zone) in c.zones.iter().enumerate() {
            foot.push_str(&format!("{} {}    ", zone.name, self.zone_counts[z]));
        }
        s.push_str(&foot);
        s.push_str("\x1b[K\r\n");
        s
    }

    fn segment<'a>(
        &self,
        cells: &mut [Vec<(char, &'a str)>],
        a: [f32; 2],
        b: [f32; 2],
        ch: char,
        colour: &'a str,
    ) {
        let (ax, ay, bx, by) = (
            a[0] * self.sx,
            a[1] * self.sy,
            b[0] * self.sx,
            b[1] * self.sy,
        );
        let steps = ((bx - ax).abs().max((by - ay).abs()) * 2.0).ceil().max(1.0) as usize;
        for i in 0..=steps {
            let t = i as f32 / steps as f32;
            let (x, y) = ((ax + (bx - ax) * t) as isize, (ay + (by - ay) * t) as isize);
            let x = x.clamp(0, self.cols as isize - 1) as usize;
            let y = y.clamp(0, self.rows as isize - 1) as usize;
            cells[y][x] = (ch, colour);
        }
    }

    fn draw(&mut self, c: &Counting) {
        let frame = self.render(c);
        let mut e = std::io::stderr().lock();
        let _ = e.write_all(frame.as_bytes());
        let _ = e.flush();
        self.last = Some(Instant::now());
    }
}

impl<W: Write> Sink for View<W> {
    fn stopped(&self) -> bool {
        self.inner.stopped()
    }
    fn event(&mut self, c: &Counting, ev: &Event) {
        match *ev {
            Event::Crossing { line, dir } => {
                self.lit[line] = Some((dir, Instant::now()));
                match dir {
                    Dir::In => self.totals[line].0 += 1,
                    Dir::Out => self.totals[line].1 += 1,
                }
                self.draw(c);
            }
            Event::Zone { zone, count } => self.zone_counts[zone] = count,
        }
        self.inner.event(c, ev);
    }

    fn frame(&mut self, c: &Counting, tracks: &[Track]) {
        if self.level < 3 {
            self.dots = tracks
                .iter()
                .filter(|t| t.confirmed())
                .map(|t| ((t.x * self.sx) as usize, (t.y * self.sy) as usize))
                .collect();
        }
        if self.last.is_none_or(|t| t.elapsed() >= REDRAW) {
            if self.last.is_none() {
                let _ = std::io::stderr().write_all(b"\x1b[2J");
            }
            self.draw(c);
        }
    }

    fn status(&mut self, line: &str) {
        self.inner.status(line);
    }

    fn ended(&mut self, _tracks: &[Track], c: &Counting) {
        self.draw(c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(level: u8) -> (View<Vec<u8>>, Counting) {
        let cfg = CounterConfig::parse(&format!(
            "[camera]\nsource=\"y4m\"\n[[lines]]\nline=\"main\"\nfrom=[0,120]\nto=[320,120]\ninside=[160,200]\n[people]\nsize=40\n[view]\nprivacy_level={level}\n"
        ))
        .unwrap();
        let g = Geometry {
            width: 320,
            height: 240,
            fps: (15, 1),
            chroma: 0,
        };
        (
            View::new(
                &cfg,
                g,
                (80, 24),
                StdoutSink {
                    out: Vec::new(),
                    broken: false,
                },
            ),
            Counting::new(&cfg),
        )
    }

    #[test]
    fn a_crossing_lights_the_line_in_its_direction_colour_and_ticks_the_count() {
        let (mut v, c) = view(3);
        let idle = v.render(&c);
        assert!(
            idle.contains(DIM) && !idle.contains(&format!("{GREEN}━")),
            "idle line is dim"
        );
        v.lit[0] = Some((Dir::In, Instant::now()));
        v.totals[0] = (1, 0);
        let lit = v.render(&c);
        assert!(lit.contains(&format!("{GREEN}━")), "lit green for in");
        assert!(lit.contains("in 1"));
        v.lit[0] = Some((Dir::Out, Instant::now()));
        assert!(
            v.render(&c).contains(&format!("{ORANGE}━")),
            "orange for out"
        );
    }

    #[test]
    fn level_3_never_draws_people_level_2_draws_dots() {
        let (mut v3, c) = view(3);
        v3.dots = vec![(10, 5)];
        assert!(!v3.render(&c).contains('●'));
        let (mut v2, c) = view(2);
        v2.dots = vec![(10, 5)];
        assert!(v2.render(&c).contains('●'));
    }
}
