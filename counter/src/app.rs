//! The `tellijn-counter` command: config, input, confinement, the reader thread, the loop.

use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc;

use clap::{Parser, Subcommand};

use crate::config::{CounterConfig, SourceKind};
use crate::frame::Ring;
use crate::pipeline::{self, RunOptions, StdoutSink};
use crate::sandbox;
use crate::y4m_source::{Geometry, Read1, SourceError, Y4mSource};

/// Turns camera frames into anonymous counts. Never touches the network.
#[derive(Parser)]
#[command(name = "tellijn-counter", version, about)]
pub struct Args {
    /// The counter's configuration.
    #[arg(long, default_value = "counter.toml", global = true)]
    pub config: PathBuf,
    /// Show the installer's view on the terminal (stderr): a black canvas with the counting
    /// lines, which light up when someone crosses. No image is ever shown.
    #[arg(long)]
    pub view: bool,
    /// Recorded input (a file, a test): wait for the counting instead of dropping frames.
    /// Never for a live camera: its frames would wait in the pipe, outside the 200 ms measure.
    #[arg(long, global = true)]
    pub replay: bool,
    /// Diagnostics: each crossing's frame number on stderr (positions only, never pixels).
    #[arg(long, hide = true)]
    pub trace: bool,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Walk across the line a few times: suggests the [people] section from the tracks.
    Calibrate,
    /// Confines itself as when counting, then tries what it must not be able to do.
    SandboxCheck,
}

/// Runs the command; the exit code says how it ended.
pub fn main(args: Args) -> ExitCode {
    install_panic_hook();
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "tellijn-counter: cannot read {}: {e}.",
                args.config.display()
            );
            return ExitCode::from(2);
        }
    };
    let cfg = match CounterConfig::parse(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if matches!(args.command, Some(Command::SandboxCheck)) {
        return sandbox_check();
    }
    #[cfg(not(feature = "v4l2"))]
    if cfg.camera.source == SourceKind::V4l2 {
        eprintln!(
            "tellijn-counter: this build reads Y4M on stdin only; use source = \"y4m\" with `ffmpeg -f v4l2 -i {} -f yuv4mpegpipe -pix_fmt yuv420p -` in front of it.",
            cfg.camera
                .device
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
        return ExitCode::from(2);
    }
    let input = match open_input(&cfg) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("tellijn-counter: {e}");
            return ExitCode::from(2);
        }
    };
    let term = if args.view {
        Some(crate::view::terminal_size())
    } else {
        None
    };
    let calibrate = matches!(args.command, Some(Command::Calibrate));

    // Confinement, part 1 (inherited by the reader thread).
    match sandbox::landlock() {
        Ok(c) if c.landlock == sandbox::Level::Full && c.no_new_privs => {}
        Ok(c) => eprintln!(
            "tellijn-counter: warning: this kernel enforces Landlock only {:?} (no_new_privs: {}); seccomp still denies files and sockets.",
            c.landlock, c.no_new_privs
        ),
        Err(e) => {
            eprintln!("tellijn-counter: {e}; refusing to read frames unconfined.");
            return ExitCode::from(3);
        }
    }
    let replay = args.replay;
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let (ring_tx, ring_rx) = mpsc::channel::<Result<(Geometry, Arc<Ring>), SourceError>>();
    let reader = std::thread::Builder::new()
        .name("frames".into())
        .spawn(move || reader(input, go_rx, ring_tx, replay))
        .map_err(|e| e.to_string());
    let reader = match reader {
        Ok(r) => r,
        Err(e) => {
            eprintln!("tellijn-counter: cannot start the reader thread: {e}.");
            return ExitCode::from(3);
        }
    };
    // Confinement, part 2: all threads, before any byte of the input is read.
    if let Err(e) = sandbox::seccomp() {
        eprintln!("tellijn-counter: {e}; refusing to read frames unconfined.");
        return ExitCode::from(3);
    }
    let _ = go_tx.send(());
    let (geometry, ring) = match ring_rx.recv() {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            eprintln!("tellijn-counter: {e}");
            return ExitCode::from(1);
        }
        Err(_) => {
            eprintln!("tellijn-counter: the reader thread ended before the stream header.");
            return ExitCode::from(1);
        }
    };
    let fps = geometry.fps.0 as f64 / geometry.fps.1 as f64;
    let opts = RunOptions {
        split: !calibrate,
        fps,
        trace: args.trace,
    };
    let stdout = std::io::stdout().lock();
    let report = if calibrate {
        let mut sink = crate::calibrate::Calibration::new(&cfg);
        let r = pipeline::run(&cfg, &ring, opts, &mut sink);
        let mut out = stdout;
        let _ = out.write_all(sink.report(&cfg).as_bytes());
        r
    } else if let Some(size) = term {
        let mut sink = crate::view::View::new(
            &cfg,
            geometry,
            size,
            StdoutSink {
                out: stdout,
                broken: false,
            },
        );
        let r = pipeline::run(&cfg, &ring, opts, &mut sink);
        orphaned(pipeline::Sink::stopped(&sink), &cfg, &r);
        r
    } else {
        let mut sink = StdoutSink {
            out: stdout,
            broken: false,
        };
        let r = pipeline::run(&cfg, &ring, opts, &mut sink);
        orphaned(sink.broken, &cfg, &r);
        r
    };
    let read = reader
        .join()
        .unwrap_or(Err(SourceError::Io("the reader thread failed".into())));
    drop(ring);
    eprintln!("tellijn-counter: {}.", pipeline::summary(&cfg, &report));
    match read {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tellijn-counter: {e}");
            ExitCode::from(1)
        }
    }
}

/// When nobody reads the counts any more (the agent stopped, or was killed and could not stop
/// its children), the counter ends at once: the reader thread may still be blocked on a camera
/// or a capture command that keeps sending, so it is not waited for. The frames in the ring die
/// with the process.
fn orphaned(broken: bool, cfg: &CounterConfig, report: &pipeline::Report) {
    if broken {
        eprintln!(
            "tellijn-counter: its output was closed (the agent stopped); stopping. {}.",
            pipeline::summary(cfg, report)
        );
        std::process::exit(1);
    }
}

/// Where frames come from, opened before confinement.
enum Input {
    Y4m(OwnedFd),
    #[cfg(feature = "v4l2")]
    V4l2(crate::v4l2_source::V4l2Device),
}

fn open_input(cfg: &CounterConfig) -> Result<Input, String> {
    match cfg.camera.source {
        SourceKind::Y4m => std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(Input::Y4m)
            .map_err(|e| format!("cannot use stdin: {e}.")),
        #[cfg(feature = "v4l2")]
        SourceKind::V4l2 => {
            let path = cfg.camera.device.clone().unwrap_or_default();
            crate::v4l2_source::open(&cfg.camera, &path)
                .map(Input::V4l2)
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        #[cfg(not(feature = "v4l2"))]
        SourceKind::V4l2 => Err("this build has no V4L2 source.".into()),
    }
}

/// The reader thread: stream header, then frames into the ring until the input ends.
fn reader(
    input: Input,
    go: mpsc::Receiver<()>,
    ring_tx: mpsc::Sender<Result<(Geometry, Arc<Ring>), SourceError>>,
    replay: bool,
) -> Result<(), SourceError> {
    if go.recv().is_err() {
        return Ok(());
    }
    // One arm without the `v4l2` feature, two with it.
    #[allow(clippy::infallible_destructuring_match)]
    let input = match input {
        Input::Y4m(fd) => fd,
        #[cfg(feature = "v4l2")]
        Input::V4l2(dev) => {
            let ring = Arc::new(Ring::new(dev.geometry.width, dev.geometry.height));
            if ring_tx.send(Ok((dev.geometry, ring.clone()))).is_err() {
                return Ok(());
            }
            let r = dev.read_all(&ring);
            ring.end();
            return r;
        }
    };
    let mut src = match Y4mSource::open(input) {
        Ok(s) => s,
        Err(e) => {
            let _ = ring_tx.send(Err(e));
            return Ok(());
        }
    };
    let g = src.geometry();
    let ring = Arc::new(Ring::new(g.width, g.height));
    ring.set_replay(replay);
    if ring_tx.send(Ok((g, ring.clone()))).is_err() {
        return Ok(());
    }
    let result = read_all(&mut src, &ring);
    ring.end();
    result
}

/// Reads frames into the ring until the input ends or fails.
pub fn read_all(src: &mut Y4mSource, ring: &Ring) -> Result<(), SourceError> {
    loop {
        let mut f = ring.take_free();
        match src.read_frame(&mut f) {
            Ok(Read1::Frame) | Ok(Read1::Late) => ring.publish(f),
            Ok(Read1::End) => {
                ring.abandon(f);
                return Ok(());
            }
            Err(e) => {
                ring.abandon(f);
                return Err(e);
            }
        }
    }
}

fn sandbox_check() -> ExitCode {
    let l = sandbox::landlock();
    let s = sandbox::seccomp();
    println!("landlock: {l:?}");
    println!(
        "seccomp: {}",
        if s.is_ok() {
            "on".to_string()
        } else {
            format!("{s:?}")
        }
    );
    let mut all_denied = l.is_ok() && s.is_ok();
    for (what, r) in sandbox::probe() {
        match r {
            Ok(()) => {
                all_denied = false;
                println!("{what}: ALLOWED");
            }
            Err(errno) => println!("{what}: denied (errno {errno})"),
        }
    }
    if all_denied {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// A panic prints where, never what: a payload could carry data.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let at = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!(
            "tellijn-counter: internal error at {at} (its message is withheld: it might quote input); please report it."
        );
    }));
}
