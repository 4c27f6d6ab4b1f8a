//! `counter.toml`: where frames come from, the counting lines and zones, the person size.
//!
//! Parsed with `deny_unknown_fields`; one validation pass returns every error, each a sentence
//! that names the field and the fix.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// The counter's configuration.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    pub camera: CameraConfig,
    #[serde(default)]
    pub lines: Vec<LineConfig>,
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    pub people: PeopleConfig,
    #[serde(default)]
    pub view: ViewConfig,
    #[serde(default)]
    pub status: StatusConfig,
    #[serde(default)]
    pub detection: DetectionConfig,
    /// Only for tests of the 200 ms promise: makes each frame's processing this much slower.
    #[serde(default)]
    pub testing: TestingConfig,
}

/// Where frames come from.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    pub source: SourceKind,
    /// The V4L2 device (`source = "v4l2"`).
    #[serde(default)]
    pub device: Option<PathBuf>,
    #[serde(default)]
    pub width: Option<u32>,
    #[serde(default)]
    pub height: Option<u32>,
    #[serde(default)]
    pub fps: Option<u32>,
}

/// `y4m` (stdin) or `v4l2` (a device).
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum SourceKind {
    Y4m,
    V4l2,
}

/// A counting line.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineConfig {
    pub line: String,
    pub from: [f32; 2],
    pub to: [f32; 2],
    /// Any point on the side where an "in" crossing ends.
    pub inside: [f32; 2],
    /// Half-width of the hysteresis band around the line, in pixels (default: half the person
    /// size). A track must leave the band on the other side to count.
    #[serde(default)]
    pub band: Option<f32>,
}

/// A zone whose occupancy is reported.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub zone: String,
    pub polygon: Vec<[f32; 2]>,
    #[serde(default = "default_zone_interval", deserialize_with = "duration_de")]
    pub interval: Duration,
}

/// What a person looks like from above.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeopleConfig {
    /// Shoulder width of a person seen from above, in pixels at the delivered resolution.
    pub size: f32,
}

/// The installer's view (`--view`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ViewConfig {
    /// 3: only lines, zones and counts (the default). 2: tracked people also shown as dots;
    /// reported in every status line so the server lists the device.
    #[serde(default = "default_privacy_level")]
    pub privacy_level: u8,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig { privacy_level: 3 }
    }
}

/// The counter's own status lines.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    #[serde(default = "default_status_interval", deserialize_with = "duration_de")]
    pub interval: Duration,
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            interval: default_status_interval(),
        }
    }
}

/// Tuning of the foreground detection; the defaults suit most doorways.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// Smallest luma difference from the background that counts as foreground.
    #[serde(default = "default_threshold")]
    pub threshold: u8,
    /// How fast the background follows slow lighting changes (per frame, 0..1).
    #[serde(default = "default_learning_rate")]
    pub learning_rate: f32,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        DetectionConfig {
            threshold: default_threshold(),
            learning_rate: default_learning_rate(),
        }
    }
}

/// Test-only settings.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TestingConfig {
    #[serde(default, deserialize_with = "opt_duration_de")]
    pub slow_frame: Option<Duration>,
}

fn default_zone_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_status_interval() -> Duration {
    Duration::from_secs(10)
}
fn default_privacy_level() -> u8 {
    3
}
fn default_threshold() -> u8 {
    18
}
fn default_learning_rate() -> f32 {
    0.01
}

fn duration_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "must be a duration such as \"10s\" (found {s:?}: {e})"
        ))
    })
}

fn opt_duration_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration_de(d).map(Some)
}

/// The largest frame side the counter accepts (pixels).
pub const MAX_SIDE: u32 = 4096;

/// A config that cannot be used, with every reason.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Syntax(String),
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl CounterConfig {
    /// Parses and validates `counter.toml` text.
    pub fn parse(text: &str) -> Result<CounterConfig, ConfigError> {
        let cfg: CounterConfig = toml::from_str(text).map_err(|e| {
            // toml's message quotes the offending line of the config, never any frame data.
            ConfigError::Syntax(format!("counter.toml: {}", e.message()))
        })?;
        let errors = cfg.problems();
        if errors.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(errors))
        }
    }

    /// Every problem of a parsed config.
    pub fn problems(&self) -> Vec<String> {
        let mut e = Vec::new();
        let finite = |p: &[f32; 2]| {
            p.iter()
                .all(|v| v.is_finite() && v.abs() <= MAX_SIDE as f32 * 2.0)
        };
        if self.camera.source == SourceKind::V4l2 && self.camera.device.is_none() {
            e.push("counter.toml: camera.device is required for source = \"v4l2\" (e.g. \"/dev/video0\").".into());
        }
        for (k, v) in [("width", self.camera.width), ("height", self.camera.height)] {
            if let Some(v) = v
                && (v == 0 || v > MAX_SIDE)
            {
                e.push(format!(
                    "counter.toml: camera.{k} must be between 1 and {MAX_SIDE} (found {v})."
                ));
            }
        }
        if let Some(f) = self.camera.fps
            && !(1..=240).contains(&f)
        {
            e.push(format!(
                "counter.toml: camera.fps must be between 1 and 240 (found {f})."
            ));
        }
        if self.lines.is_empty() && self.zones.is_empty() {
            e.push("counter.toml: give at least one [[lines]] or [[zones]] entry; without them nothing is counted.".into());
        }
        let mut names: Vec<&str> = Vec::new();
        for (i, l) in self.lines.iter().enumerate() {
            let at = format!("counter.toml: lines[{i}] ({:?})", l.line);
            if !valid_name(&l.line) {
                e.push(format!(
                    "{at}: line must be 1-64 characters of a-z, 0-9, '-' or '_'."
                ));
            }
            if names.contains(&l.line.as_str()) {
                e.push(format!(
                    "{at}: the name is used twice; give each line its own name."
                ));
            }
            names.push(&l.line);
            if !finite(&l.from) || !finite(&l.to) || !finite(&l.inside) {
                e.push(format!(
                    "{at}: from, to and inside must be finite pixel coordinates."
                ));
                continue;
            }
            let len = ((l.to[0] - l.from[0]).powi(2) + (l.to[1] - l.from[1]).powi(2)).sqrt();
            if len < 2.0 {
                e.push(format!(
                    "{at}: from and to must be at least 2 pixels apart (found {len:.1})."
                ));
                continue;
            }
            let side = cross(l.from, l.to, l.inside) / len;
            if side.abs() < 1.0 {
                e.push(format!(
                    "{at}: inside {:?} lies on the line; move it to the side where an \"in\" crossing ends.",
                    l.inside
                ));
            }
            if let Some(b) = l.band
                && !(b.is_finite() && b > 0.0 && b < 1000.0)
            {
                e.push(format!(
                    "{at}: band must be a positive number of pixels (found {b})."
                ));
            }
        }
        let mut znames: Vec<&str> = Vec::new();
        for (i, z) in self.zones.iter().enumerate() {
            let at = format!("counter.toml: zones[{i}] ({:?})", z.zone);
            if !valid_name(&z.zone) {
                e.push(format!(
                    "{at}: zone must be 1-64 characters of a-z, 0-9, '-' or '_'."
                ));
            }
            if znames.contains(&z.zone.as_str()) {
                e.push(format!(
                    "{at}: the name is used twice; give each zone its own name."
                ));
            }
            znames.push(&z.zone);
            if z.polygon.len() < 3 || z.polygon.len() > 64 {
                e.push(format!(
                    "{at}: polygon must have 3 to 64 corners (found {}).",
                    z.polygon.len()
                ));
            } else if !z.polygon.iter().all(finite) {
                e.push(format!(
                    "{at}: polygon corners must be finite pixel coordinates."
                ));
            }
            if z.interval < Duration::from_secs(1) || z.interval > Duration::from_secs(3600) {
                e.push(format!("{at}: interval must be between 1s and 1h."));
            }
        }
        if !(self.people.size.is_finite() && self.people.size >= 4.0 && self.people.size <= 1000.0)
        {
            e.push(format!(
                "counter.toml: people.size must be the shoulder width in pixels, between 4 and 1000 (found {}); `tellijn-counter calibrate` suggests one.",
                self.people.size
            ));
        }
        if !(2..=3).contains(&self.view.privacy_level) {
            e.push(format!(
                "counter.toml: view.privacy_level must be 3 (lines only) or 2 (tracked people as dots) (found {}).",
                self.view.privacy_level
            ));
        }
        if self.status.interval < Duration::from_secs(1) {
            e.push("counter.toml: status.interval must be at least 1s.".into());
        }
        if self.detection.threshold < 4 {
            e.push(format!(
                "counter.toml: detection.threshold must be at least 4 (found {}).",
                self.detection.threshold
            ));
        }
        let lr = self.detection.learning_rate;
        if !(lr.is_finite() && lr > 0.0 && lr <= 0.5) {
            e.push(format!(
                "counter.toml: detection.learning_rate must be in (0, 0.5] (found {lr})."
            ));
        }
        if let Some(d) = self.testing.slow_frame
            && d > Duration::from_secs(5)
        {
            e.push("counter.toml: testing.slow_frame must be at most 5s.".into());
        }
        e
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Twice the signed area of (a, b, p): > 0 when p is left of a→b (y down: clockwise).
pub fn cross(a: [f32; 2], b: [f32; 2], p: [f32; 2]) -> f32 {
    (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[camera]
source = "y4m"
[[lines]]
line = "main"
from = [0, 120]
to = [320, 120]
inside = [160, 200]
[[zones]]
zone = "seats"
polygon = [[0, 0], [320, 0], [320, 100], [0, 100]]
interval = "10s"
[people]
size = 40
"#;

    #[test]
    fn the_contract_example_parses() {
        let c = CounterConfig::parse(GOOD).unwrap();
        assert_eq!(c.lines.len(), 1);
        assert_eq!(c.zones[0].interval, Duration::from_secs(10));
        assert_eq!(c.view.privacy_level, 3);
    }

    #[test]
    fn every_problem_is_reported_with_its_fix() {
        let bad = GOOD
            .replace("inside = [160, 200]", "inside = [160, 120]")
            .replace("size = 40", "size = 1")
            .replace("zone = \"seats\"", "zone = \"Seats!\"");
        let Err(ConfigError::Invalid(errs)) = CounterConfig::parse(&bad) else {
            panic!("accepted")
        };
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].contains("lies on the line"), "{}", errs[0]);
        assert!(errs[1].contains("zone must be"), "{}", errs[1]);
        assert!(errs[2].contains("people.size"), "{}", errs[2]);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused() {
        for (text, needle) in [
            (
                GOOD.replace("[people]", "[people]\ncolour = 1"),
                "unknown field",
            ),
            (GOOD.replace("\"y4m\"", "\"rtsp\""), "unknown variant"),
            (GOOD.replace("\"10s\"", "\"soon\""), "duration"),
            (
                GOOD.replace("source = \"y4m\"", "source = \"v4l2\""),
                "camera.device",
            ),
            (
                format!("{GOOD}\n[view]\nprivacy_level = 1\n"),
                "privacy_level",
            ),
        ] {
            let e = CounterConfig::parse(&text)
                .err()
                .expect("accepted")
                .to_string();
            assert!(e.contains(needle), "{needle}: {e}");
        }
    }
}
