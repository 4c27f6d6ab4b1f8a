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
        if self.out.write_all(s.as_bytes()).and_then(|_| self.out.write_all(b"\n")).and_then(|_| self.out.flush()).is_err() {
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
}

/// One event as the contract's JSON line.
pub fn event_json(c: &Counting, ev: &Event) -> String {
    match ev {
        Event::Crossing { line, dir } => {
            serde_json::json!({"line": c.lines[*line].name, "dir": dir.as_str()}).to_string()
        }
        Event::Zone { zone, count } => serde_json::json!({"zone": c.zones[*zone].name, "count": count}).to_string(),
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
}

/// Runs the loop until the ring ends.
pub fn run(cfg: &CounterConfig, ring: &Arc<Ring>, opts: RunOptions, sink: &mut dyn Sink) -> Report {
    let (w, h) = ring.size();
    let params = DetectParams {
        person_size: cfg.people.size,
        threshold: cfg.detection.threshold,
        learning_rate: cfg.detection.learning_rate,
        split: opts.split,
    };
    let mut detector = Detector::new(w, h, params);
    let mut tracker = Tracker::new(cfg.people.size, cfg.lines.len());
    let mut counting = Counting::new(cfg);
    let mut dets: Vec<Detection> = Vec::with_capacity(64);
    let mut events: Vec<Event> = Vec::with_capacity(16);
    let slow = cfg.testing.slow_frame;
    // How long processing takes now: the maximum over the last 32 frames.
    let mut recent = [slow.unwrap_or(Duration::from_millis(5)); 32];
    let mut ri = 0;
    let mut last_status = Instant::now();
    let level = cfg.view.privacy_level;
    while let Some(frame) = ring.next() {
        let estimate = recent.iter().copied().max().unwrap_or_default();
        if frame.age() + estimate >= MAX_LIFETIME {
            ring.done(frame, false);
            continue;
        }
        let t0 = Instant::now();
        detector.detect(&frame, &mut dets);
        if let Some(d) = slow {
            std::thread::sleep(d);
        }
        let seq = frame.seq();
        ring.done(frame, true);
        recent[ri % recent.len()] = t0.elapsed();
        ri += 1;
        let matched = tracker.update(&dets);
        if !tracker.ended().is_empty() {
            sink.ended(tracker.ended(), &counting);
        }
        events.clear();
        counting.crossings(tracker.tracks_mut(), &matched, &mut events);
        let t = Duration::from_secs_f64(seq as f64 / opts.fps.max(0.001));
        counting.zones(tracker.tracks(), t, &mut events);
        for e in &events {
            sink.event(&counting, e);
        }
        sink.frame(&counting, tracker.tracks());
        if last_status.elapsed() >= cfg.status.interval {
            last_status = Instant::now();
            let (c, l) = ring.take_window();
            sink.status(&status_json(&c, &l, level));
        }
    }
    sink.ended(tracker.tracks(), &counting);
    let (c, l) = ring.take_window();
    sink.status(&status_json(&c, &l, level));
    let (counts, lifetimes) = ring.totals();
    Report { counts, lifetimes, crossings: counting.totals.clone() }
}

/// Counts in and out per line from a report, for summaries.
pub fn summary(cfg: &CounterConfig, r: &Report) -> String {
    let mut s = String::new();
    for (l, (i, o)) in cfg.lines.iter().zip(&r.crossings) {
        s.push_str(&format!("{}: {} {}, {} {}; ", l.line, i, Dir::In.as_str(), o, Dir::Out.as_str()));
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
