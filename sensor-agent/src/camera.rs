//! The `camera` source: the agent runs `tellijn-counter` (and, optionally, a capture command
//! such as ffmpeg in front of it) as child processes and reads the counter's JSON lines.
//!
//! The capture's stdout is an OS pipe straight into the counter's stdin: the agent — the only
//! process here that reaches the network — never holds either end of it after spawning, so it
//! never sees a pixel. Without a capture command the counter's stdin is empty (`/dev/null`) and
//! it reads its own device (v4l2).
//!
//! The counter's stdout carries crossings and zone readings (fed to the same
//! [`StdinAggregator`] as the `stdin` source) and its own status lines
//! (`{"status":{"frames":…}}`, [`CounterStatus`]), whose figures go into the agent's next status
//! message ([`FrameFigures`]). Every line is read with a length bound; none is ever logged.
//! The children's stderr goes to the agent's log, line by line, cut to [`LOG_LINE_MAX`]
//! characters, at most [`LOG_BURST`] lines per [`LOG_WINDOW`] per child.
//!
//! When either child exits — also with status 0: a camera stream that ends must come back —
//! the other is stopped, and both are started again after a back-off of 1 s doubling to 60 s
//! (back to 1 s once a pair has run for 60 s). Each restart is logged and counted
//! (`counter_restarts`). Nothing here survives the agent: the children are killed when it
//! stops (`kill_on_drop`), and a counter whose agent died gets EPIPE on its next line.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tellijn_wire::StatusMessage;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};
use tokio::process::{Child, Command};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::SourceConfig;
use crate::source::StdinAggregator;

/// The first wait before a restart; it doubles up to [`BACKOFF_MAX`].
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// The longest wait before a restart.
pub const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// A pair that ran this long restarts after [`BACKOFF_MIN`] again.
pub const BACKOFF_RESET: Duration = Duration::from_secs(60);
/// After the capture command ends, how long the counter may take to finish the frames it
/// holds (and print its last status line) before it is stopped.
pub const DRAIN: Duration = Duration::from_secs(5);
/// Longest line read from the counter's stdout; the rest of a longer line is discarded.
pub const LINE_MAX: usize = 1024;
/// Longest stderr line logged (characters); the rest is cut.
pub const LOG_LINE_MAX: usize = 200;
/// Stderr (and refused stdout) lines logged per child per [`LOG_WINDOW`]; the rest are counted.
pub const LOG_BURST: u32 = 20;
/// See [`LOG_BURST`].
pub const LOG_WINDOW: Duration = Duration::from_secs(10);

/// The counter's status line: `{"status":{"frames":N,…,"privacy_level":3}}`. Every field is
/// required and no other is allowed, as strictly as the agent's own status is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterStatus {
    /// Frames read since the counter started.
    pub frames: u64,
    /// Frames processed since it started.
    pub processed: u64,
    /// Frames dropped because processing fell behind, since it started.
    pub dropped_behind: u64,
    /// Frames dropped unprocessed because they would have outlived 200 ms, since it started.
    pub dropped_late: u64,
    /// p99 of frame lifetime over the frames since its previous status line, microseconds.
    pub lifetime_p99_us: u64,
    /// Longest frame lifetime over the frames since its previous status line, microseconds.
    pub lifetime_max_us: u64,
    /// 3: nothing but lines shown; 2: the installer view may show tracked people as dots.
    pub privacy_level: u8,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusLine {
    status: CounterStatus,
}

/// What a line of the counter's stdout is.
#[derive(Debug, PartialEq, Eq)]
pub enum CounterLine {
    /// A status line.
    Status(CounterStatus),
    /// Anything else: a crossing or zone reading for the aggregator (which refuses the rest).
    Count,
}

/// Why a status line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusRefusal {
    #[error(
        "a status line must be exactly {{\"status\":{{\"frames\",\"processed\",\"dropped_behind\",\"dropped_late\",\"lifetime_p99_us\",\"lifetime_max_us\",\"privacy_level\"}}}} with integers ≥ 0"
    )]
    Shape,
    #[error("privacy_level must be 1, 2 or 3 (found {0})")]
    PrivacyLevel(u8),
}

/// Tells a status line from a count line; a line that starts as a status object must be a
/// whole, valid one.
pub fn classify(text: &str) -> Result<CounterLine, StatusRefusal> {
    let t = text.trim();
    let Some(rest) = t.strip_prefix('{') else {
        return Ok(CounterLine::Count);
    };
    if !rest.trim_start().starts_with("\"status\"") {
        return Ok(CounterLine::Count);
    }
    let s = serde_json::from_str::<StatusLine>(t)
        .map_err(|_| StatusRefusal::Shape)?
        .status;
    if !tellijn_wire::status::PRIVACY_LEVELS.contains(&s.privacy_level) {
        return Err(StatusRefusal::PrivacyLevel(s.privacy_level));
    }
    Ok(CounterLine::Status(s))
}

/// The frame figures the agent puts in its status messages, kept across counter restarts.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct FrameFigures {
    /// Frames and drops of the counter runs that have ended.
    done: (u64, u64, u64),
    /// The current run's latest cumulative figures.
    run: (u64, u64, u64),
    /// Whether any status line came since the agent started.
    seen: bool,
    p99_us: Option<u64>,
    /// The longest lifetime since the agent last published its status.
    window_max_us: Option<u64>,
    /// What was published last, repeated while no status line comes.
    published_max_us: Option<u64>,
    privacy_level: Option<u8>,
    /// Times the counter was restarted.
    pub restarts: u64,
}

impl FrameFigures {
    /// Takes one status line of the current run.
    pub fn observe(&mut self, s: &CounterStatus) {
        self.seen = true;
        self.run = (
            s.frames,
            s.dropped_behind.saturating_add(s.dropped_late),
            s.dropped_late,
        );
        self.p99_us = Some(s.lifetime_p99_us);
        self.window_max_us = Some(self.window_max_us.unwrap_or(0).max(s.lifetime_max_us));
        self.privacy_level = Some(s.privacy_level);
    }

    /// The counter stopped: its figures become part of the totals.
    pub fn run_ended(&mut self) {
        let (d, r) = (&mut self.done, std::mem::take(&mut self.run));
        *d = (
            d.0.saturating_add(r.0),
            d.1.saturating_add(r.1),
            d.2.saturating_add(r.2),
        );
    }

    /// Writes the figures into a status message and starts a new window for the maximum.
    pub fn publish(&mut self, s: &mut StatusMessage) {
        s.counter_restarts = Some(self.restarts.min(i64::MAX as u64));
        if !self.seen {
            return;
        }
        // The wire takes integers up to i64::MAX; past it the whole status would be refused.
        let cap = |v: u64| v.min(i64::MAX as u64);
        s.frames = Some(cap(self.done.0.saturating_add(self.run.0)));
        s.frame_drops = Some(cap(self.done.1.saturating_add(self.run.1)));
        s.frame_late = Some(cap(self.done.2.saturating_add(self.run.2)));
        s.frame_p99_us = self.p99_us.map(cap);
        let max = self.window_max_us.take().or(self.published_max_us);
        self.published_max_us = max;
        s.frame_max_us = max.map(cap);
        s.privacy_level = self.privacy_level;
    }
}

/// What the camera source shares with the agent's status publisher.
#[derive(Debug)]
pub struct Camera {
    /// Crossings and zone readings, taken every interval.
    pub agg: Arc<Mutex<StdinAggregator>>,
    /// The frame figures for the next status message.
    pub figures: Mutex<FrameFigures>,
    /// Notified when a status should go out now rather than at the next [`crate::STATUS_EVERY`]:
    /// the first status line after a (re)start, and every restart. Both come at most once per
    /// [`BACKOFF_MIN`], so this cannot flood the broker.
    pub status_due: Notify,
}

impl Camera {
    /// Fills the frame figures into `s`.
    pub fn fill_status(&self, s: &mut StatusMessage) {
        self.figures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .publish(s);
    }

    fn figures(&self) -> std::sync::MutexGuard<'_, FrameFigures> {
        self.figures.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Where the counter's executable is: `counter_bin`, else `tellijn-counter` beside the
/// agent's own executable, else `tellijn-counter` on PATH.
pub fn counter_program(cfg: &SourceConfig) -> PathBuf {
    if let Some(b) = &cfg.counter_bin {
        return b.clone();
    }
    let beside = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("tellijn-counter")));
    match beside {
        Some(p) if p.is_file() => p,
        _ => PathBuf::from("tellijn-counter"),
    }
}

/// Starts the camera source: the returned [`Camera`] fills as the children run. The task
/// runs until it is aborted (the agent stops), which kills the children.
pub fn start(cfg: &SourceConfig) -> (Arc<Camera>, tokio::task::JoinHandle<()>) {
    let camera = Arc::new(Camera {
        agg: Arc::new(Mutex::new(StdinAggregator::new(&cfg.lines, &cfg.zones))),
        figures: Mutex::new(FrameFigures::default()),
        status_due: Notify::new(),
    });
    let counter = Invocation {
        program: counter_program(cfg),
        config: cfg.counter.clone().unwrap_or_default(),
        capture: cfg.capture.clone(),
    };
    let task = tokio::spawn(supervise(counter, camera.clone()));
    (camera, task)
}

/// How the children are started.
#[derive(Debug, Clone)]
struct Invocation {
    program: PathBuf,
    config: PathBuf,
    capture: Option<Vec<String>>,
}

/// Runs the pair, restarting it with back-off, forever.
async fn supervise(inv: Invocation, camera: Arc<Camera>) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let ended = match run_once(&inv, &camera).await {
            Ok(e) => e,
            Err(e) => e,
        };
        camera.figures().run_ended();
        if started.elapsed() >= BACKOFF_RESET {
            backoff = BACKOFF_MIN;
        }
        tracing::warn!("{ended}; starting it again in {}.", secs(backoff));
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
        let n = {
            let mut f = camera.figures();
            f.restarts += 1;
            f.restarts
        };
        tracing::info!("Restarting the counter (restart {n} since the agent started).");
        camera.status_due.notify_one();
    }
}

fn secs(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

/// Starts the pair once and returns a sentence about how it ended.
async fn run_once(inv: &Invocation, camera: &Arc<Camera>) -> Result<String, String> {
    let (mut counter, mut capture) = spawn(inv)?;
    let stdout = counter.stdout.take();
    let reader = stdout.map(|o| {
        let camera = camera.clone();
        tokio::spawn(async move { read_counter(tokio::io::BufReader::new(o), &camera).await })
    });
    for (name, err) in [
        ("tellijn-counter", counter.stderr.take()),
        ("capture", capture.as_mut().and_then(|c| c.stderr.take())),
    ] {
        if let Some(e) = err {
            tokio::spawn(log_stderr(name, tokio::io::BufReader::new(e)));
        }
    }
    let capture_name = inv
        .capture
        .as_ref()
        .and_then(|c| c.first())
        .map(|p| short_name(p))
        .unwrap_or_default();
    let ended = match capture.as_mut() {
        None => describe("The counter", counter.wait().await, ""),
        Some(cap) => {
            tokio::select! {
                st = counter.wait() => {
                    let _ = cap.start_kill();
                    let _ = cap.wait().await;
                    describe("The counter", st, &format!("; stopped the capture command ({capture_name})"))
                }
                st = cap.wait() => {
                    // Its last frames are still in the pipe: let the counter finish them and
                    // print its last status line before it is stopped.
                    let what = format!("The capture command ({capture_name})");
                    match tokio::time::timeout(DRAIN, counter.wait()).await {
                        Ok(c) => describe(&what, st, &format!("; the counter then {}", exit_text(c))),
                        Err(_) => {
                            let _ = counter.start_kill();
                            let _ = counter.wait().await;
                            describe(&what, st, &format!("; stopped the counter, which had not finished {} later", secs(DRAIN)))
                        }
                    }
                }
            }
        }
    };
    // The counter is gone, so its stdout ends (unless it handed it on to a process of its
    // own); what it wrote last still counts.
    if let Some(r) = reader {
        let abort = r.abort_handle();
        if tokio::time::timeout(Duration::from_secs(2), r)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    Ok(ended)
}

fn short_name(p: &str) -> String {
    Path::new(p)
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(40).collect())
        .unwrap_or_default()
}

fn exit_text(st: std::io::Result<ExitStatus>) -> String {
    match st {
        Ok(s) if s.success() => "exited with status 0".into(),
        Ok(s) => match (s.code(), std::os::unix::process::ExitStatusExt::signal(&s)) {
            (Some(c), _) => format!("exited with status {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig}"),
            _ => format!("ended ({s})"),
        },
        Err(e) => format!("could not be waited for ({e})"),
    }
}

fn describe(what: &str, st: std::io::Result<ExitStatus>, then: &str) -> String {
    let hint = match &st {
        Ok(s) if s.success() => " (its input ended)",
        Ok(s) if s.code().is_some() => " (its stderr, logged above, says why)",
        _ => "",
    };
    format!("{what} {}{hint}{then}", exit_text(st))
}

/// Spawns the counter, and the capture command feeding it through a pipe.
fn spawn(inv: &Invocation) -> Result<(Child, Option<Child>), String> {
    let (stdin, writer) = match &inv.capture {
        Some(_) => {
            let (r, w) = std::io::pipe().map_err(|e| {
                format!("Cannot create the pipe between the capture command and the counter ({e})")
            })?;
            (Stdio::from(r), Some(w))
        }
        None => (Stdio::null(), None),
    };
    // The Command holds its ends of the pipe until dropped: it must not outlive the spawn, or
    // the counter would never see the end of its input.
    let counter = {
        let mut c = Command::new(&inv.program);
        c.arg("--config")
            .arg(&inv.config)
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        c.spawn().map_err(|e| {
            format!(
                "Cannot start the counter {} ({e}; build it with cargo build -p tellijn-counter, or set counter_bin in [source])",
                inv.program.display()
            )
        })?
    };
    let capture = match (&inv.capture, writer) {
        (Some(argv), Some(w)) => {
            let mut c = Command::new(&argv[0]);
            c.args(&argv[1..])
                .stdin(Stdio::null())
                .stdout(Stdio::from(w))
                .stderr(Stdio::piped())
                .kill_on_drop(true);
            match c.spawn() {
                Ok(child) => Some(child),
                Err(e) => {
                    // `counter` is dropped here, which kills it.
                    return Err(format!(
                        "Cannot start the capture command {:?} ({e}; check capture in [source])",
                        short_name(&argv[0])
                    ));
                }
            }
        }
        _ => None,
    };
    Ok((counter, capture))
}

/// Reads one line of at most `max` bytes into `buf` (without its newline); the rest of a
/// longer line is read and discarded. `Ok(None)` at the end of the input; `Ok(Some(true))`
/// when the line was cut.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let mut cut = false;
    let mut any = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..take.min(room)]);
        cut |= take > room;
        r.consume(if done { take + 1 } else { take });
        if done {
            return Ok(Some(cut));
        }
    }
}

/// A log budget: at most [`LOG_BURST`] lines per [`LOG_WINDOW`].
struct Budget {
    window: Instant,
    used: u32,
    suppressed: u64,
}

impl Budget {
    fn new() -> Budget {
        Budget {
            window: Instant::now(),
            used: 0,
            suppressed: 0,
        }
    }

    /// Whether one more line may be logged; says how many were held back when a window ends.
    fn allow(&mut self, what: &str) -> bool {
        if self.window.elapsed() >= LOG_WINDOW {
            if self.suppressed > 0 {
                tracing::warn!(
                    "Left {} more lines of {what} out of the log in the last {}.",
                    self.suppressed,
                    secs(LOG_WINDOW)
                );
            }
            *self = Budget::new();
        }
        if self.used < LOG_BURST {
            self.used += 1;
            true
        } else {
            self.suppressed += 1;
            false
        }
    }
}

/// Reads the counter's stdout into the aggregator and the frame figures until it ends.
async fn read_counter<R: AsyncBufRead + Unpin>(mut r: R, camera: &Camera) {
    let mut buf = Vec::with_capacity(256);
    let (mut n, mut first_status) = (0u64, true);
    let mut budget = Budget::new();
    loop {
        let cut = match read_line_bounded(&mut r, &mut buf, LINE_MAX).await {
            Ok(Some(cut)) => cut,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!("Stopped reading the counter's output: {e}.");
                return;
            }
        };
        n += 1;
        let refusal = match std::str::from_utf8(&buf) {
            _ if cut => Some(format!("longer than {LINE_MAX} bytes")),
            Err(_) => Some("not UTF-8 text".to_owned()),
            Ok(text) => match classify(text) {
                Ok(CounterLine::Status(s)) => {
                    camera.figures().observe(&s);
                    if std::mem::take(&mut first_status) {
                        camera.status_due.notify_one();
                    }
                    None
                }
                Ok(CounterLine::Count) => camera
                    .agg
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .feed(text)
                    .err()
                    .map(|e| e.to_string()),
                Err(e) => Some(e.to_string()),
            },
        };
        if let Some(e) = refusal
            && budget.allow("refused counter output")
        {
            // The line itself is never logged: it is output we do not understand.
            tracing::warn!("Refused counter line {n} ({} bytes): {e}.", buf.len());
        }
    }
}

/// Logs a child's stderr: one log line per line, cut and rate-limited, URL passwords hidden.
async fn log_stderr<R: AsyncBufRead + Unpin>(child: &'static str, mut r: R) {
    let mut buf = Vec::with_capacity(256);
    let mut budget = Budget::new();
    while let Ok(Some(_)) = read_line_bounded(&mut r, &mut buf, LOG_LINE_MAX * 4).await {
        if budget.allow(child) {
            tracing::info!(child, "{}", log_text(&buf));
        }
    }
}

/// A stderr line as it may be logged: at most [`LOG_LINE_MAX`] characters, control
/// characters replaced, and the user info of URLs (`rtsp://user:password@cam`) hidden.
pub fn log_text(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(line);
    let mut out = String::new();
    let mut rest = text.trim_end();
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let host_end = tail
            .find(|c: char| c == '/' || c.is_whitespace() || c == '\'' || c == '"')
            .unwrap_or(tail.len());
        match tail[..host_end].rfind('@') {
            Some(at) => {
                out.push_str("…@");
                rest = &tail[at + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    let mut cut: String = out
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .take(LOG_LINE_MAX)
        .collect();
    if out.chars().count() > LOG_LINE_MAX {
        cut.push('…');
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = r#"{"status":{"frames":300,"processed":297,"dropped_behind":2,"dropped_late":1,"lifetime_p99_us":41000,"lifetime_max_us":52000,"privacy_level":3}}"#;

    fn st(frames: u64, late: u64, max: u64, level: u8) -> CounterStatus {
        CounterStatus {
            frames,
            processed: frames - late,
            dropped_behind: 0,
            dropped_late: late,
            lifetime_p99_us: max / 2,
            lifetime_max_us: max,
            privacy_level: level,
        }
    }

    #[test]
    fn status_lines_are_read_strictly() {
        assert_eq!(
            classify(STATUS),
            Ok(CounterLine::Status(CounterStatus {
                frames: 300,
                processed: 297,
                dropped_behind: 2,
                dropped_late: 1,
                lifetime_p99_us: 41000,
                lifetime_max_us: 52000,
                privacy_level: 3
            }))
        );
        assert_eq!(
            classify(&format!(
                "  {}\n",
                STATUS.replace("{\"status\"", "{ \"status\"")
            )),
            classify(STATUS)
        );
        for line in [
            r#"{"line":"main","dir":"in"}"#,
            r#"{"zone":"seats","count":12}"#,
            "JFIF",
            "",
        ] {
            assert_eq!(classify(line), Ok(CounterLine::Count), "{line}");
        }
        let bad = [
            (STATUS.replace("\"frames\":300,", ""), StatusRefusal::Shape),
            (
                STATUS.replace("\"frames\":300", "\"frames\":-1"),
                StatusRefusal::Shape,
            ),
            (
                STATUS.replace("\"frames\":300", "\"frames\":3.5"),
                StatusRefusal::Shape,
            ),
            (
                STATUS.replace("\"frames\":300", "\"frames\":\"300\""),
                StatusRefusal::Shape,
            ),
            (
                STATUS.replace(
                    "\"privacy_level\":3",
                    "\"privacy_level\":3,\"jpeg\":\"/9j/\"",
                ),
                StatusRefusal::Shape,
            ),
            (STATUS.replace("}}", "},\"face\":1}"), StatusRefusal::Shape),
            (
                STATUS.replace("\"privacy_level\":3", "\"privacy_level\":0"),
                StatusRefusal::PrivacyLevel(0),
            ),
            (
                STATUS.replace("\"privacy_level\":3", "\"privacy_level\":4"),
                StatusRefusal::PrivacyLevel(4),
            ),
            (
                STATUS.replace("\"privacy_level\":3", "\"privacy_level\":300"),
                StatusRefusal::Shape,
            ),
            (r#"{"status":"ok"}"#.to_owned(), StatusRefusal::Shape),
            (STATUS[..40].to_owned(), StatusRefusal::Shape),
        ];
        for (line, want) in bad {
            assert_eq!(classify(&line), Err(want), "{line}");
        }
    }

    #[test]
    fn frame_figures_add_up_across_restarts_and_the_max_is_per_publication() {
        let mut f = FrameFigures::default();
        let mut s = StatusMessage::default();
        f.publish(&mut s);
        assert_eq!(
            (s.counter_restarts, s.frames, s.frame_max_us),
            (Some(0), None, None)
        );

        f.observe(&st(100, 1, 90_000, 3));
        f.observe(&st(200, 2, 30_000, 3));
        let mut s = StatusMessage::default();
        f.publish(&mut s);
        assert_eq!(s.frames, Some(200));
        assert_eq!((s.frame_drops, s.frame_late), (Some(2), Some(2)));
        assert_eq!(s.frame_max_us, Some(90_000), "the max over the window");
        assert_eq!(s.frame_p99_us, Some(15_000), "the latest p99");
        assert_eq!(s.privacy_level, Some(3));

        // A new run starts from zero: the agent keeps the totals.
        f.run_ended();
        f.restarts += 1;
        f.observe(&st(50, 0, 20_000, 2));
        let mut s = StatusMessage::default();
        f.publish(&mut s);
        assert_eq!((s.frames, s.frame_late), (Some(250), Some(2)));
        assert_eq!(s.frame_max_us, Some(20_000), "a new window");
        assert_eq!((s.privacy_level, s.counter_restarts), (Some(2), Some(1)));

        // No status line since: the last figures are repeated.
        let mut again = StatusMessage::default();
        f.publish(&mut again);
        assert_eq!(again, s);
    }

    #[tokio::test]
    async fn long_lines_are_cut_and_the_rest_discarded() {
        let input = format!("short\n{}\nnext\nlast", "x".repeat(5000));
        let mut r = tokio::io::BufReader::with_capacity(64, input.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(cut) = read_line_bounded(&mut r, &mut buf, 100).await.unwrap() {
            got.push((String::from_utf8(buf.clone()).unwrap(), cut));
        }
        assert_eq!(
            got,
            [
                ("short".to_owned(), false),
                ("x".repeat(100), true),
                ("next".to_owned(), false),
                ("last".to_owned(), false)
            ]
        );
    }

    #[tokio::test]
    async fn the_counters_output_feeds_counts_and_figures_and_refuses_the_rest() {
        let camera = Camera {
            agg: Arc::new(Mutex::new(StdinAggregator::new(
                &["main".into()],
                &["seats".into()],
            ))),
            figures: Mutex::new(FrameFigures::default()),
            status_due: Notify::new(),
        };
        let out = format!(
            "{{\"line\":\"main\",\"dir\":\"in\"}}\n{{\"line\":\"main\",\"dir\":\"out\"}}\n{{\"zone\":\"seats\",\"count\":4}}\n{STATUS}\n{}\n\u{ff}\u{fe}\n{{\"status\":{{\"frames\":1}}}}\n{{\"line\":\"main\",\"dir\":\"in\"}}\n",
            "y".repeat(3000)
        );
        read_counter(tokio::io::BufReader::new(out.as_bytes()), &camera).await;
        let r = camera.agg.lock().unwrap().take();
        assert_eq!((r.lines, r.zones), (vec![(2, 1)], vec![Some(4)]));
        let mut s = StatusMessage::default();
        camera.fill_status(&mut s);
        assert_eq!(
            (s.frames, s.frame_drops, s.frame_late),
            (Some(300), Some(3), Some(1))
        );
        assert_eq!(
            (s.frame_p99_us, s.frame_max_us),
            (Some(41_000), Some(52_000))
        );
        // The first status line asks for a status at once.
        tokio::time::timeout(Duration::from_secs(1), camera.status_due.notified())
            .await
            .unwrap();
    }

    proptest::proptest! {
        #[test]
        fn any_counter_output_never_panics(text in ".{0,400}", prefix in proptest::bool::ANY) {
            let text = if prefix { format!("{{\"status\":{text}") } else { text };
            if let Ok(CounterLine::Status(s)) = classify(&text) {
                proptest::prop_assert!((1..=3).contains(&s.privacy_level));
            }
            let _ = log_text(text.as_bytes());
        }

        #[test]
        fn status_lines_round_trip_and_figures_past_i64_max_are_capped_not_refused(
            v in proptest::collection::vec(proptest::num::u64::ANY, 6),
            level in 1u8..=3,
        ) {
            let line = format!(
                r#"{{"status":{{"frames":{},"processed":{},"dropped_behind":{},"dropped_late":{},"lifetime_p99_us":{},"lifetime_max_us":{},"privacy_level":{level}}}}}"#,
                v[0], v[1], v[2], v[3], v[4], v[5]
            );
            let want = CounterStatus {
                frames: v[0],
                processed: v[1],
                dropped_behind: v[2],
                dropped_late: v[3],
                lifetime_p99_us: v[4],
                lifetime_max_us: v[5],
                privacy_level: level,
            };
            proptest::prop_assert_eq!(classify(&line), Ok(CounterLine::Status(want)));
            // Whatever the counter reports, the agent's status stays valid on the wire.
            let mut f = FrameFigures::default();
            f.observe(&want);
            f.run_ended();
            f.observe(&want);
            let mut s = StatusMessage { online: true, ..Default::default() };
            f.publish(&mut s);
            proptest::prop_assert_eq!(StatusMessage::parse(&s.to_json()), Ok(s));
        }
    }

    #[test]
    fn logged_stderr_hides_passwords_and_is_cut() {
        assert_eq!(
            log_text(b"Input #0, rtsp, from 'rtsp://admin:hunter2@10.9.0.2:554/stream1':\n"),
            "Input #0, rtsp, from 'rtsp://…@10.9.0.2:554/stream1':"
        );
        assert_eq!(
            log_text(b"rtsp://a:b@h/x and http://c@d/ and ftp://plain/"),
            "rtsp://…@h/x and http://…@d/ and ftp://plain/"
        );
        assert_eq!(log_text(b"bell\x07 esc\x1b[31m"), "bell? esc?[31m");
        let long = log_text("é".repeat(500).as_bytes());
        assert_eq!(long.chars().count(), LOG_LINE_MAX + 1);
        assert!(long.ends_with('…'));
    }
}
