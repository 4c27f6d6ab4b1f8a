//! The `tellijn-scene` command: writes a synthetic doorway scene as Y4M to stdout, its truth as
//! JSON to a file, and optionally the matching counter config.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use crate::{Length, Pacing, Scenario, Scene, SceneError, SceneSpec};
use anyhow::Context;
use clap::Parser;

/// Renders a top-down doorway scene (camera on the ceiling) as a Y4M stream on stdout, with its
/// exact ground truth: the passages of each person's centre over the line y = height/2
/// ("in" = downwards).
#[derive(Parser, Debug)]
#[command(name = "tellijn-scene", version)]
struct Args {
    /// single, groups, counterflow, turnback, lighting, mixed or empty.
    #[arg(long, default_value = "single")]
    scenario: Scenario,
    /// Length in seconds (only passages that finish in it are scheduled); default 60.
    #[arg(long, conflicts_with = "people")]
    seconds: Option<u32>,
    /// Length as a number of people, rounded up to whole seconds.
    #[arg(long)]
    people: Option<u32>,
    /// Frames per second.
    #[arg(long, default_value_t = 15)]
    fps: u32,
    /// Frame width in pixels (even).
    #[arg(long, default_value_t = 320)]
    width: u32,
    /// Frame height in pixels (even).
    #[arg(long, default_value_t = 240)]
    height: u32,
    /// Nominal shoulder width in pixels; default 40 at 320×240, scaled with the frame.
    #[arg(long)]
    person_size: Option<u32>,
    /// Seed of every random choice; the same arguments give the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Add the zone "door" (the bottom quarter of the frame) to the truth and counter config.
    #[arg(long)]
    zone: bool,
    /// Write the truth JSON here (before the stream starts).
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Write the matching tellijn-counter config (TOML) here.
    #[arg(long)]
    counter_config: Option<PathBuf>,
    /// Write frames at the frame rate in wall time, like a live camera.
    #[arg(long)]
    realtime: bool,
    /// Print the truth summary instead of rendering (no stream on stdout).
    #[arg(long)]
    truth_only: bool,
}

/// Runs the command with the process's arguments.
pub fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A reader that stopped reading (`| head -c`) is not an error worth a message.
            let closed = e.downcast_ref::<SceneError>().is_some_and(
                |e| matches!(e, SceneError::Write(io) if io.kind() == io::ErrorKind::BrokenPipe),
            );
            if closed {
                return ExitCode::SUCCESS;
            }
            eprintln!("tellijn-scene: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let length = match (args.seconds, args.people) {
        (_, Some(n)) => Length::People(n),
        (Some(s), None) => Length::Seconds(s),
        (None, None) => Length::Seconds(60),
    };
    let spec = SceneSpec {
        scenario: args.scenario,
        width: args.width,
        height: args.height,
        fps: args.fps,
        length,
        person_size: args
            .person_size
            .unwrap_or_else(|| SceneSpec::default_person_size(args.width, args.height)),
        seed: args.seed,
        zone: args.zone,
    };
    let scene = Scene::generate(&spec)?;
    let truth = scene.truth();
    if let Some(path) = &args.truth {
        let json = serde_json::to_string_pretty(&truth).context("serialising the truth")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("could not write the truth to {}", path.display()))?;
    }
    if let Some(path) = &args.counter_config {
        std::fs::write(path, spec.counter_toml())
            .with_context(|| format!("could not write the counter config to {}", path.display()))?;
    }
    if args.truth_only {
        println!(
            "{} frames, {} people, {} in, {} out",
            truth.frames, truth.people, truth.ins, truth.out
        );
        return Ok(());
    }
    let pacing = if args.realtime {
        Pacing::Realtime
    } else {
        Pacing::Unpaced
    };
    let stdout = io::stdout().lock();
    let out = scene.render(BufWriter::with_capacity(1 << 20, stdout), pacing)?;
    drop(out);
    io::stdout().flush().context("flushing stdout")?;
    Ok(())
}
