//! What to render: scenario, frame geometry, duration, seed; its validation and the counter config
//! that matches its geometry.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use crate::SceneError;

/// Which kind of traffic a scene shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// One person at a time, both directions.
    Single,
    /// Groups of 2–4 walking side by side, shoulder to shoulder.
    Groups,
    /// People in both directions passing each other at the line.
    Counterflow,
    /// People who stop on the line and turn back, and others who stop near it and go on.
    Turnback,
    /// Single file under light switched on and off, mains flicker and slow drift.
    Lighting,
    /// All of the above in one stream.
    Mixed,
    /// Nobody; only the lighting effects.
    Empty,
}

impl Scenario {
    /// Every scenario, in the order the CLI help lists them.
    pub const ALL: [Scenario; 7] = [
        Scenario::Single,
        Scenario::Groups,
        Scenario::Counterflow,
        Scenario::Turnback,
        Scenario::Lighting,
        Scenario::Mixed,
        Scenario::Empty,
    ];

    /// The name used on the command line and in the truth file.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Single => "single",
            Scenario::Groups => "groups",
            Scenario::Counterflow => "counterflow",
            Scenario::Turnback => "turnback",
            Scenario::Lighting => "lighting",
            Scenario::Mixed => "mixed",
            Scenario::Empty => "empty",
        }
    }

    /// Whether light steps, flicker and drift are part of this scenario.
    pub fn has_lighting_effects(self) -> bool {
        matches!(self, Scenario::Lighting | Scenario::Mixed | Scenario::Empty)
    }
}

impl fmt::Display for Scenario {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Scenario::ALL
            .into_iter()
            .find(|sc| sc.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Scenario::ALL.iter().map(|s| s.name()).collect();
                format!("unknown scenario {s:?}; use one of {}", names.join(", "))
            })
    }
}

/// How long a scene runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Length {
    /// Exactly this many seconds; only passages that finish inside it are scheduled.
    Seconds(u32),
    /// Until this many people have passed (or turned back), rounded up to whole seconds.
    People(u32),
}

/// Everything that determines a scene; the same spec always gives the same bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct SceneSpec {
    /// Kind of traffic.
    pub scenario: Scenario,
    /// Frame width in pixels (even).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Duration.
    pub length: Length,
    /// Nominal shoulder width in pixels; each person varies ±15 % around it.
    pub person_size: u32,
    /// Seed of every random choice.
    pub seed: u64,
    /// Whether the scene has the zone "door" (the bottom quarter of the frame).
    pub zone: bool,
}

impl Default for SceneSpec {
    fn default() -> Self {
        SceneSpec {
            scenario: Scenario::Single,
            width: 320,
            height: 240,
            fps: 15,
            length: Length::Seconds(60),
            person_size: 40,
            seed: 0,
            zone: false,
        }
    }
}

/// An axis-aligned rectangle `[x0, x1) × [y0, y1)` in pixels.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rect {
    /// Left edge.
    pub x0: u32,
    /// Top edge.
    pub y0: u32,
    /// Right edge (exclusive).
    pub x1: u32,
    /// Bottom edge (exclusive).
    pub y1: u32,
}

impl Rect {
    /// Whether the point lies inside (left/top edges inclusive, right/bottom exclusive).
    pub fn contains(&self, x: f32, y: f32) -> bool {
        x >= self.x0 as f32 && x < self.x1 as f32 && y >= self.y0 as f32 && y < self.y1 as f32
    }
}

impl SceneSpec {
    /// The default person size for a frame size: 40 px at 320×240, scaled with the smaller side.
    pub fn default_person_size(width: u32, height: u32) -> u32 {
        let scale = (width as f32 / 320.0).min(height as f32 / 240.0);
        ((40.0 * scale).round() as u32).max(8)
    }

    /// The y coordinate of the counting line "main".
    pub fn line_y(&self) -> f32 {
        (self.height / 2) as f32
    }

    /// The zone "door", when the scene has one: the bottom quarter of the frame.
    pub fn zone_rect(&self) -> Option<Rect> {
        self.zone.then(|| Rect {
            x0: 0,
            y0: self.height * 3 / 4,
            x1: self.width,
            y1: self.height,
        })
    }

    /// Checks the spec, reporting every problem at once.
    pub fn validate(&self) -> Result<(), SceneError> {
        let mut errors = Vec::new();
        for (name, v) in [("width", self.width), ("height", self.height)] {
            if !(64..=4096).contains(&v) || v % 2 != 0 {
                errors.push(format!(
                    "{name} must be an even number of pixels from 64 to 4096 (found {v})."
                ));
            }
        }
        if !(1..=120).contains(&self.fps) {
            errors.push(format!("fps must be from 1 to 120 (found {}).", self.fps));
        }
        let max_size = self.width.min(self.height) / 3;
        if self.person_size < 8 || self.person_size > max_size {
            errors.push(format!(
                "person size must be from 8 px to a third of the smaller frame side, {max_size} px \
                 (found {}).",
                self.person_size
            ));
        }
        match self.length {
            Length::Seconds(0) => errors.push("seconds must be at least 1 (found 0).".into()),
            Length::Seconds(s) if s > 7 * 24 * 3600 => errors.push(format!(
                "seconds must be at most a week, 604800 (found {s})."
            )),
            Length::People(0) => errors.push("people must be at least 1 (found 0).".into()),
            Length::People(n) if n > 1_000_000 => {
                errors.push(format!("people must be at most 1000000 (found {n})."))
            }
            Length::People(_) if self.scenario == Scenario::Empty => errors.push(
                "the scenario empty has no people; give its length with --seconds instead.".into(),
            ),
            _ => {}
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SceneError::Invalid(errors))
        }
    }

    /// The tellijn-counter config whose line (and zone) match this scene's truth.
    pub fn counter_toml(&self) -> String {
        let (w, h) = (self.width, self.height);
        let mut s = format!(
            "[camera]\nsource = \"y4m\"\n\n[[lines]]\nline = \"main\"\nfrom = [0, {}]\nto = [{w}, {}]\n\
             inside = [{}, {}]\n\n[people]\nsize = {}\n",
            h / 2,
            h / 2,
            w / 2,
            h * 3 / 4,
            self.person_size
        );
        if let Some(r) = self.zone_rect() {
            s.push_str(&format!(
                "\n[[zones]]\nzone = \"door\"\npolygon = [[{}, {}], [{}, {}], [{}, {}], [{}, {}]]\n\
                 interval = \"1s\"\n",
                r.x0, r.y0, r.x1, r.y0, r.x1, r.y1, r.x0, r.y1
            ));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_toml_has_the_line_at_half_height() {
        let spec = SceneSpec::default();
        assert_eq!(
            spec.counter_toml(),
            "[camera]\nsource = \"y4m\"\n\n[[lines]]\nline = \"main\"\nfrom = [0, 120]\n\
             to = [320, 120]\ninside = [160, 180]\n\n[people]\nsize = 40\n"
        );
    }

    #[test]
    fn counter_toml_has_the_zone_when_asked() {
        let spec = SceneSpec {
            zone: true,
            ..SceneSpec::default()
        };
        let toml = spec.counter_toml();
        assert!(toml.ends_with(
            "[[zones]]\nzone = \"door\"\npolygon = [[0, 180], [320, 180], [320, 240], [0, 240]]\n\
             interval = \"1s\"\n"
        ));
    }

    #[test]
    fn validation_reports_every_error() {
        let spec = SceneSpec {
            width: 321,
            fps: 0,
            person_size: 200,
            ..SceneSpec::default()
        };
        let msg = spec.validate().unwrap_err().to_string();
        assert_eq!(
            msg,
            "the scene spec is invalid: width must be an even number of pixels from 64 to 4096 \
             (found 321). fps must be from 1 to 120 (found 0). person size must be from 8 px to \
             a third of the smaller frame side, 80 px (found 200)."
        );
    }

    #[test]
    fn empty_scenario_refuses_a_people_count() {
        let spec = SceneSpec {
            scenario: Scenario::Empty,
            length: Length::People(3),
            ..SceneSpec::default()
        };
        assert!(
            spec.validate()
                .unwrap_err()
                .to_string()
                .contains("--seconds")
        );
    }

    #[test]
    fn scenario_names_round_trip() {
        for sc in Scenario::ALL {
            assert_eq!(sc.name().parse::<Scenario>(), Ok(sc));
        }
        assert!(
            "crowd"
                .parse::<Scenario>()
                .unwrap_err()
                .contains("single, groups")
        );
    }
}
