//! The people of a scene: episodes (one person, a group abreast, a counterflow encounter, a turn
//! back, a stop-and-go) chosen by scenario and placed one after another on the timeline.

use rand::Rng;
use rand::rngs::StdRng;

use crate::motion::{Pose, Stage, Track, Walker};
use crate::person::Look;
use crate::spec::{Length, Scenario, SceneSpec};

/// A person of an episode: first frame relative to the episode, poses, looks.
type Person = (u64, Vec<Pose>, Look);

/// One kind of short happening at the doorway.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Episode {
    Single,
    Group,
    Counterflow,
    TurnBack,
    StopAndGo,
}

/// The episodes a scenario is made of, with their weights.
fn episodes(scenario: Scenario) -> &'static [(Episode, u32)] {
    use Episode::*;
    match scenario {
        Scenario::Single | Scenario::Lighting => &[(Single, 1)],
        Scenario::Groups => &[(Group, 1)],
        Scenario::Counterflow => &[(Counterflow, 1)],
        Scenario::Turnback => &[(TurnBack, 5), (StopAndGo, 4), (Single, 1)],
        Scenario::Mixed => &[
            (Single, 7),
            (Group, 4),
            (Counterflow, 3),
            (TurnBack, 2),
            (StopAndGo, 2),
        ],
        Scenario::Empty => &[],
    }
}

/// Every person of a scene and how many frames it has.
pub struct Plan {
    /// People, ordered by their first frame.
    pub tracks: Vec<Track>,
    /// Frames in the stream.
    pub frames: u64,
}

struct Ctx<'a> {
    rng: &'a mut StdRng,
    stage: Stage,
    width: f32,
    person_size: u32,
    floor_mean: u8,
}

impl Ctx<'_> {
    fn look(&mut self) -> Look {
        Look::random(self.rng, self.person_size, self.floor_mean)
    }

    fn dir(&mut self) -> f32 {
        if self.rng.random_bool(0.5) { 1.0 } else { -1.0 }
    }

    fn speed(&mut self) -> f32 {
        self.rng.random_range(0.8..1.6)
    }

    /// A lane x for someone `half_width` px wide (with sway) who must stay in the frame.
    fn lane(&mut self, half_width: f32) -> f32 {
        let m = half_width.min(self.width / 2.0 - 1.0);
        self.rng.random_range(m..=self.width - m)
    }

    fn single(&mut self) -> Vec<Person> {
        let look = self.look();
        let (dir, speed) = (self.dir(), self.speed());
        let x = self.lane(0.7 * look.size);
        let mut w = Walker::enter(self.rng, self.stage, &look, x, dir, speed);
        w.walk_out(self.rng);
        vec![(0, w.finish(), look)]
    }

    fn group(&mut self, max: u32) -> Vec<Person> {
        let s = self.stage.person_size;
        // 4 abreast at up to 1.3 × 1.15 of the nominal width each must fit in the frame.
        let fits = ((self.width - 0.4 * s) / (1.5 * s)).floor() as u32;
        let k = self.rng.random_range(2..=4u32).min(max).min(fits.max(1));
        if k < 2 {
            return self.single();
        }
        let looks: Vec<Look> = (0..k).map(|_| self.look()).collect();
        let (dir, speed) = (self.dir(), self.speed());
        let mut offsets = vec![0.0f32];
        for i in 1..k as usize {
            let gap = self.rng.random_range(1.05..1.3) * (looks[i - 1].size + looks[i].size) / 2.0;
            offsets.push(offsets[i - 1] + gap);
        }
        let span = offsets[k as usize - 1];
        let half = span / 2.0 + 0.6 * looks[0].size.max(looks[k as usize - 1].size);
        let centre = self.lane(half);
        let mut out = Vec::new();
        for (look, off) in looks.iter().zip(&offsets) {
            let x = centre - span / 2.0 + off;
            let mut w = Walker::enter(self.rng, self.stage, look, x, dir, speed);
            w.hold_back(self.rng.random_range(0.0..0.15) * s);
            w.walk_out(self.rng);
            out.push((0, w.finish(), *look));
        }
        out
    }

    fn counterflow(&mut self, max: u32) -> Vec<Person> {
        let s = self.stage.person_size;
        let lanes = ((self.width - 0.4 * s) / (1.45 * s)).floor().max(1.0) as usize;
        if max < 2 || lanes < 2 {
            return self.single();
        }
        let n = self.rng.random_range(2..=4u32).min(max).min(lanes as u32) as usize;
        let first_dir = self.dir();
        // Distinct lanes, shuffled, so that no two people walk into each other.
        let mut free: Vec<usize> = (0..lanes).collect();
        let lane_w = (self.width - 0.4 * s) / lanes as f32;
        let meet = self.rng.random_range(0.0..1.0);
        let mut out = Vec::new();
        for i in 0..n {
            let lane = free.swap_remove(self.rng.random_range(0..free.len()));
            let x = 0.2 * s + lane_w * (lane as f32 + 0.5);
            let dir = if i % 2 == 0 { first_dir } else { -first_dir };
            let look = self.look();
            let speed = self.speed();
            let mut w = Walker::enter(self.rng, self.stage, &look, x, dir, speed);
            w.walk_out(self.rng);
            let poses = w.finish();
            // Start so that everyone reaches the line within about half a second of the others.
            let line = self.stage.height / 2.0;
            let at_line = poses
                .iter()
                .position(|p| (p.y - line) * dir >= 0.0)
                .unwrap_or(0);
            let jitter = self.rng.random_range(-0.5..0.5);
            let want = ((meet + jitter + 3.0) * self.stage.fps).round() as i64;
            out.push((want - at_line as i64, poses, look));
        }
        let first = out.iter().map(|o| o.0).min().unwrap_or(0);
        out.into_iter()
            .map(|(start, p, l)| ((start - first) as u64, p, l))
            .collect()
    }

    /// Walks to the line, stands on it for 1–3 s (dithering across it), turns and goes back.
    fn turn_back(&mut self) -> Vec<Person> {
        let look = self.look();
        let (dir, speed) = (self.dir(), self.speed());
        let x = self.lane(0.7 * look.size);
        let line = self.stage.height / 2.0;
        let stop = line + self.rng.random_range(-0.12..0.12) * look.size;
        let mut w = Walker::enter(self.rng, self.stage, &look, x, dir, speed);
        w.walk_to(self.rng, stop);
        let (secs, dither) = (
            self.rng.random_range(1.0..3.0),
            self.rng.random_range(0.0..0.15),
        );
        w.stand(self.rng, secs, dither * look.size);
        let turn = self.rng.random_range(0.5..0.9);
        w.turn_round(self.rng, turn);
        w.walk_out(self.rng);
        vec![(0, w.finish(), look)]
    }

    /// Walks to near the line (up to half a width before it, or on it), stands 1–3 s, goes on.
    fn stop_and_go(&mut self) -> Vec<Person> {
        let look = self.look();
        let (dir, speed) = (self.dir(), self.speed());
        let x = self.lane(0.7 * look.size);
        let line = self.stage.height / 2.0;
        let stop = line - dir * self.rng.random_range(-0.1..0.5) * look.size;
        let mut w = Walker::enter(self.rng, self.stage, &look, x, dir, speed);
        w.walk_to(self.rng, stop);
        let (secs, dither) = (
            self.rng.random_range(1.0..3.0),
            self.rng.random_range(0.0..0.15),
        );
        w.stand(self.rng, secs, dither * look.size);
        w.walk_out(self.rng);
        vec![(0, w.finish(), look)]
    }

    fn episode(&mut self, kind: Episode, max: u32) -> Vec<Person> {
        match kind {
            Episode::Single => self.single(),
            Episode::Group => self.group(max),
            Episode::Counterflow => self.counterflow(max),
            Episode::TurnBack => self.turn_back(),
            Episode::StopAndGo => self.stop_and_go(),
        }
    }
}

fn pick(rng: &mut StdRng, table: &[(Episode, u32)]) -> Episode {
    let total: u32 = table.iter().map(|t| t.1).sum();
    let mut r = rng.random_range(0..total);
    for &(e, w) in table {
        if r < w {
            return e;
        }
        r -= w;
    }
    table[table.len() - 1].0
}

/// Places the scenario's episodes one after another, each starting 0.3–2.5 s after the previous
/// one has left the frame.
pub fn plan(spec: &SceneSpec, rng: &mut StdRng, floor_mean: u8) -> Plan {
    let stage = Stage {
        height: spec.height as f32,
        person_size: spec.person_size as f32,
        fps: spec.fps as f32,
    };
    let fps = spec.fps as u64;
    let table = episodes(spec.scenario);
    let mut ctx = Ctx {
        rng,
        stage,
        width: spec.width as f32,
        person_size: spec.person_size,
        floor_mean,
    };
    let limit_frames = match spec.length {
        Length::Seconds(s) => Some(s as u64 * fps),
        Length::People(_) => None,
    };
    let mut wanted = match spec.length {
        Length::Seconds(_) => u32::MAX,
        Length::People(n) => n,
    };
    let mut tracks = Vec::new();
    let mut t = stage.frames(ctx.rng.random_range(0.3..1.5)) as u64;
    while !table.is_empty() && wanted > 0 {
        let kind = pick(ctx.rng, table);
        let people = ctx.episode(kind, wanted);
        let len = people
            .iter()
            .map(|(s, p, _)| s + p.len() as u64)
            .max()
            .unwrap_or(0);
        if limit_frames.is_some_and(|limit| t + len > limit) {
            break;
        }
        wanted -= people.len() as u32;
        for (start, poses, look) in people {
            tracks.push(Track {
                start: t + start,
                poses,
                look,
            });
        }
        t += len + stage.frames(ctx.rng.random_range(0.3..2.5)) as u64;
    }
    tracks.sort_by_key(|tr| tr.start);
    let frames = limit_frames.unwrap_or_else(|| t.div_ceil(fps).max(1) * fps);
    Plan { tracks, frames }
}
