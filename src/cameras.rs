//! `tellijn demo`'s cameras: every building entrance runs the real `tellijn-counter` on a
//! generated doorway scene (`tellijn-scene --realtime` as its capture command), through the
//! real agent's camera source, so the demo shows the whole path from pixels to occupancy.
//!
//! The standalone binaries are used when they sit beside `tellijn` (after `cargo build
//! --release --workspace`; `.ci/test` builds them). Otherwise, so that `cargo run --release --
//! demo` stays one command, the demo links `{data}/bin/tellijn-counter` and
//! `{data}/bin/tellijn-scene` to its own executable, which then runs the same library code
//! under that name ([`invoked_as`]), confined the same way. On a camera computer use the
//! standalone `tellijn-counter`: it links no network code and zeroizes every freed block.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use tellijn_agent::config::{SourceConfig, SourceKind};
use tellijn_scene::{Length, Scenario, SceneSpec};

/// A tool the `tellijn` binary can run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Counter,
    Scene,
}

/// Which tool this process was started as (by the name it was started under).
pub fn invoked_as() -> Option<Tool> {
    let arg0 = std::env::args_os().next()?;
    match Path::new(&arg0).file_name()?.to_str()? {
        "tellijn-counter" => Some(Tool::Counter),
        "tellijn-scene" => Some(Tool::Scene),
        _ => None,
    }
}

/// Where the demo's cameras' programs are.
#[derive(Debug, Clone)]
pub struct Tools {
    pub counter: PathBuf,
    pub scene: PathBuf,
    /// Run from the `tellijn` binary (no standalone build found).
    pub embedded: bool,
}

/// Finds the standalone binaries beside this executable, or links this executable under
/// their names in `{data}/bin/`.
pub fn tools(data_dir: &Path) -> Result<Tools> {
    let exe = std::env::current_exe().context("cannot find the tellijn executable")?;
    let beside = |name: &str| exe.with_file_name(name);
    if beside("tellijn-counter").is_file() && beside("tellijn-scene").is_file() {
        return Ok(Tools {
            counter: beside("tellijn-counter"),
            scene: beside("tellijn-scene"),
            embedded: false,
        });
    }
    let bin = data_dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("cannot create {}", bin.display()))?;
    let link = |name: &str| -> Result<PathBuf> {
        let p = bin.join(name);
        let _ = std::fs::remove_file(&p);
        std::os::unix::fs::symlink(&exe, &p)
            .with_context(|| format!("cannot link {}", p.display()))?;
        Ok(p)
    };
    Ok(Tools {
        counter: link("tellijn-counter")?,
        scene: link("tellijn-scene")?,
        embedded: true,
    })
}

/// One entrance camera: its agent source, and where the scene's truth is written.
pub struct Camera {
    pub source: SourceConfig,
    pub truth: PathBuf,
    pub fps: u32,
}

/// Writes the counter config for `sensor` and returns its camera source.
pub fn camera(
    tools: &Tools,
    data_dir: &Path,
    sensor: &str,
    line: &str,
    seed: u64,
) -> Result<Camera> {
    let dir = data_dir.join("cameras").join(sensor);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let spec = SceneSpec {
        scenario: Scenario::Mixed,
        seed,
        length: Length::Seconds(24 * 3600),
        ..Default::default()
    };
    let counter = dir.join("counter.toml");
    std::fs::write(
        &counter,
        spec.counter_toml()
            .replace("line = \"main\"", &format!("line = {line:?}")),
    )
    .with_context(|| format!("cannot write {}", counter.display()))?;
    let truth = dir.join("truth.json");
    let capture = vec![
        tools.scene.display().to_string(),
        "--scenario".into(),
        "mixed".into(),
        "--seconds".into(),
        (24 * 3600).to_string(),
        "--seed".into(),
        seed.to_string(),
        "--realtime".into(),
        "--truth".into(),
        truth.display().to_string(),
    ];
    Ok(Camera {
        source: SourceConfig {
            kind: SourceKind::Camera,
            lines: vec![line.to_owned()],
            zones: Vec::new(),
            seed: None,
            counter: Some(counter),
            counter_bin: Some(tools.counter.clone()),
            capture: Some(capture),
        },
        truth,
        fps: spec.fps,
    })
}

/// The scene's true crossings (in, out) in its first `frames` frames.
pub fn truth_until(truth: &Path, frames: u64) -> Option<(u64, u64)> {
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(truth).ok()?).ok()?;
    let mut r = (0, 0);
    for c in t.get("crossings")?.as_array()? {
        if c.get("frame")?.as_u64()? < frames {
            match c.get("dir")?.as_str()? {
                "in" => r.0 += 1,
                _ => r.1 += 1,
            }
        }
    }
    Some(r)
}
