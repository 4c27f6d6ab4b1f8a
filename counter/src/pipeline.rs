//! The counting loop: frames from the ring → detections → tracks → crossings and zone
//! readings, plus the counter's own status lines.
//!
//! The frame is zeroized as soon as detection has read it; tracking and counting work on
//! positions only. A frame that would outlive 200 ms given how long processing takes now is
//! dropped unprocessed.

use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::CounterConfig;
use crate::count::{Counting, Dir, Event};
use crate::detect::{DetectParams, Detection, Detector};
use crate::frame::Frame;
use crate::frame::{FrameCounts, Lifetimes, MAX_LIFETIME, Ring};
use crate::track::{Track, Tracker};

/// Where the loop's results go.
pub trait Sink {
    /// A crossing or zone reading.
    fn event(&mut self, counting: &Counting, ev: &Event);
    /// After every processed frame (for the view).
    fn frame(&mut self, _counting: &Counting, _tracks: &[Track]) {}
    /// A status line.
    fn status(&mut self, line: &str);
    /// The reader of the results went away (the agent stopped or was killed): stop counting.
    fn stopped(&self) -> bool {
        false
    }
    /// Tracks that ended (for calibration).
    fn ended(&mut self, _tracks: &[Track], _counting: &Counting) {}
}

/// The contract's JSON lines on stdout.
pub struct StdoutSink<W: Write> {
    pub out: W,
    /// A failed write (the reader went away) ends the counter.
    pub broken: bool,
}

impl<W: Write> StdoutSink<W> {
    fn line(&mut self, s: &str) {
        if self
            .out
            .write_all(s.as_bytes())
            .and_then(|_| self.out.write_all(b"\n"))
            .and_then(|_| self.out.flush())
            .is_err()
        {
            self.broken = true;
        }
    }
}

impl<W: Write> Sink for StdoutSink<W> {
    fn event(&mut self, c: &Counting, ev: &Event) {
        let s = event_json(c, ev);
        self.line(&s);
    }
    fn status(&mut self, line: &str) {
        self.line(line);
    }
    fn stopped(&self) -> bool {
        self.broken
    }
}

/// One event as the contract's JSON line.
pub fn event_json(c: &Counting, ev: &Event) -> String {
    match ev {
        // In the contract's field order; names are validated ids, quoted by serde_json anyway.
        Event::Crossing { line, dir } => {
            let name = serde_json::Value::from(c.lines[*line].name.as_str());
            format!("{{\"line\":{name},\"dir\":\"{}\"}}", dir.as_str())
        }
        Event::Zone { zone, count } => {
            let name = serde_json::Value::from(c.zones[*zone].name.as_str());
            format!("{{\"zone\":{name},\"count\":{count}}}")
        }
    }
}

/// The counter's status line.
pub fn status_json(counts: &FrameCounts, life: &Lifetimes, privacy_level: u8) -> String {
    serde_json::json!({"status": {
        "frames": counts.frames,
        "processed": counts.processed,
        "dropped_behind": counts.dropped_behind,
        "dropped_late": counts.dropped_late,
        "lifetime_p99_us": life.p99().as_micros() as u64,
        "lifetime_max_us": life.max().as_micros() as u64,
        "privacy_level": privacy_level,
    }})
    .to_string()
}

/// What a run did.
pub struct Report {
    pub counts: FrameCounts,
    pub lifetimes: Lifetimes,
    /// Per line: (in, out).
    pub crossings: Vec<(u64, u64)>,
}

/// Options of one run.
pub struct RunOptions {
    pub split: bool,
    pub fps: f64,
    /// Diagnostics on stderr: per crossing its frame and position (positions only, no pixels).
    pub trace: bool,
}

/// Detection, tracking and counting, frame by frame, without the ring's timing (tests and
/// benchmarks drive it directly, deterministically).
pub struct Engine {
    detector: Detector,
    tracker: Tracker,
    pub counting: Counting,
    dets: Vec<Detection>,
    events: Vec<Event>,
    fps: f64,
}

impl Engine {
    /// For frames of `width` × `height` at `fps`.
    pub fn new(cfg: &CounterConfig, width: usize, height: usize, fps: f64, split: bool) -> Engine {
        let params = DetectParams {
            person_size: cfg.people.size,
            threshold: cfg.detection.threshold,
            learning_rate: cfg.detection.learning_rate,
            split,
        };
        Engine {
            detector: Detector::new(width, height, params),
            tracker: Tracker::new(cfg.people.size, cfg.lines.len()),
            counting: Counting::new(cfg),
            dets: Vec::with_capacity(64),
            events: Vec::with_capacity(16),
            fps: fps.max(0.001),
        }
    }

    /// Reads a frame (the only step that sees pixels).
    pub fn detect(&mut self, frame: &Frame) {
        self.detector.detect(frame, &mut self.dets);
    }

    /// Tracks and counts the detections of frame `seq`; returns its events.
    pub fn count(&mut self, seq: u64, sink: &mut dyn Sink) -> &[Event] {
        let matched = self.tracker.update(&self.dets);
        if !self.tracker.ended().is_empty() {
            sink.ended(self.tracker.ended(), &self.counting);
        }
        self.events.clear();
        self.counting
            .crossings(self.tracker.tracks_mut(), &matched, &mut self.events);
        let t = Duration::from_secs_f64(seq as f64 / self.fps);
        self.counting
            .zones(self.tracker.tracks(), t, &mut self.events);
        for e in &self.events {
            sink.event(&self.counting, e);
        }
        sink.frame(&self.counting, self.tracker.tracks());
        &self.events
    }

    /// The end of input: tracks still alive go to the sink.
    pub fn finish(&mut self, sink: &mut dyn Sink) {
        sink.ended(self.tracker.tracks(), &self.counting);
    }

    /// Detections of the last frame (diagnostics).
    pub fn detections(&self) -> usize {
        self.dets.len()
    }
}

/// Processing-time samples kept for the 200 ms decision.
const RECENT: usize = 8;

/// Runs the loop until the ring ends.
pub fn run(cfg: &CounterConfig, ring: &Arc<Ring>, opts: RunOptions, sink: &mut dyn Sink) -> Report {
    let (w, h) = ring.size();
    let mut engine = Engine::new(cfg, w, h, opts.fps, opts.split);
    let slow = cfg.testing.slow_frame;
    // How long processing takes now: the maximum of the last few frames. When it drops a
    // frame, the largest sample decays, so a stall (the scheduler, a busy core) passes.
    let mut recent = [slow.unwrap_or(Duration::from_millis(5)); RECENT];
    let mut ri = 0;
    let mut last_status = Instant::now();
    let level = cfg.view.privacy_level;
    while let Some(frame) = ring.next() {
        let (imax, estimate) = recent
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|&(_, d)| d)
            .unwrap_or_default();
        if frame.age() + estimate >= MAX_LIFETIME {
            ring.done(frame, false);
            recent[imax] = estimate * 3 / 4;
            continue;
        }
        let t0 = Instant::now();
        engine.detect(&frame);
        if let Some(d) = slow {
            std::thread::sleep(d);
        }
        let seq = frame.seq();
        ring.done(frame, true);
        recent[ri % RECENT] = t0.elapsed();
        ri += 1;
        let n = engine.detections();
        let events = engine.count(seq, sink).to_vec();
        if opts.trace {
            let crossings = events
                .iter()
                .filter(|e| matches!(e, Event::Crossing { .. }));
            for (e, t) in crossings.zip(engine.counting.last.iter()) {
                eprintln!(
                    "trace: frame {seq}: {} ({n} detections; track {} after {} hits at {:?}, first seen at {:?})",
                    event_json(&engine.counting, e),
                    t.0,
                    t.1,
                    t.2,
                    t.3
                );
            }
        }
        if last_status.elapsed() >= cfg.status.interval {
            last_status = Instant::now();
            let (c, l) = ring.take_window();
            sink.status(&status_json(&c, &l, level));
        }
        if sink.stopped() {
            break;
        }
    }
    engine.finish(sink);
    let (c, l) = ring.take_window();
    sink.status(&status_json(&c, &l, level));
    let (counts, lifetimes) = ring.totals();
    Report {
        counts,
        lifetimes,
        crossings: engine.counting.totals.clone(),
    }
}

/// Counts in and out per line from a report, for summaries.
pub fn summary(cfg: &CounterConfig, r: &Report) -> String {
    let mut s = String::new();
    for (l, (i, o)) in cfg.lines.iter().zip(&r.crossings) {
        s.push_str(&format!(
            "{}: {} {}, {} {}; ",
            l.line,
            i,
            Dir::In.as_str(),
            o,
            Dir::Out.as_str()
        ));
    }
    s.push_str(&format!(
        "{} frames, {} processed, {} dropped behind, {} dropped late; frame lifetime p99 {:.1} ms, max {:.1} ms",
        r.counts.frames,
        r.counts.processed,
        r.counts.dropped_behind,
        r.counts.dropped_late,
        r.lifetimes.p99().as_secs_f64() * 1e3,
        r.lifetimes.max().as_secs_f64() * 1e3
    ));
    s
}
