//! Accuracy regression on a few fixed generated scenes, in process and deterministic (the
//! detection and counting engine without the ring's timing). The full table, on seeds never
//! used for tuning, is `bench/counter.sh`; these thresholds only catch regressions.

use std::process::{Command, Stdio};

use tellijn_counter::config::CounterConfig;
use tellijn_counter::frame::Ring;
use tellijn_counter::pipeline::{Engine, Sink};
use tellijn_counter::y4m_source::parse_header;
use tellijn_scene::{Length, Scenario, SceneSpec};

struct Nothing;
impl Sink for Nothing {
    fn event(&mut self, _: &tellijn_counter::count::Counting, _: &tellijn_counter::count::Event) {}
    fn status(&mut self, _: &str) {}
}

/// Pushes every frame of a Y4M stream held in memory through the engine.
fn feed(cfg: &CounterConfig, y4m: &[u8], sink: &mut dyn Sink) -> Engine {
    let nl = y4m.iter().position(|&b| b == b'\n').unwrap() + 1;
    let g = parse_header(&y4m[..nl]).unwrap();
    let ring = Ring::new(g.width, g.height);
    let mut engine = Engine::new(
        cfg,
        g.width,
        g.height,
        g.fps.0 as f64 / g.fps.1 as f64,
        true,
    );
    let frame_len = 6 + g.width * g.height + g.chroma;
    let (mut at, mut seq) = (nl, 0);
    while at + frame_len <= y4m.len() {
        assert_eq!(&y4m[at..at + 6], b"FRAME\n");
        let mut f = ring.take_free();
        f.born_now();
        f.luma_mut()
            .copy_from_slice(&y4m[at + 6..at + 6 + g.width * g.height]);
        engine.detect(&f);
        ring.done(f, true);
        engine.count(seq, sink);
        seq += 1;
        at += frame_len;
    }
    engine.finish(sink);
    engine
}

/// Counts (in, out) of a Y4M stream held in memory.
fn count(cfg: &CounterConfig, y4m: &[u8]) -> (u64, u64) {
    feed(cfg, y4m, &mut Nothing).counting.totals[0]
}

fn accuracy(counted: u64, truth: u32) -> f64 {
    1.0 - (counted as f64 - truth as f64).abs() / (truth.max(1) as f64)
}

fn check(scenario: Scenario, seed: u64, secs: u32, min: f64, h264: bool) {
    let spec = SceneSpec {
        scenario,
        seed,
        length: Length::Seconds(secs),
        ..Default::default()
    };
    let mut y4m = Vec::new();
    let truth = tellijn_scene::render(&spec, &mut y4m).unwrap();
    if h264 {
        y4m = h264_round_trip(&y4m);
    }
    let cfg = CounterConfig::parse(&spec.counter_toml()).unwrap();
    let (i, o) = count(&cfg, &y4m);
    let (ai, ao) = (accuracy(i, truth.ins), accuracy(o, truth.out));
    // One miscount is always tolerated: on a few dozen crossings it is several per cent.
    let ok = |c: u64, t: u32, a: f64| a >= min || (c as i64 - t as i64).abs() <= 1;
    assert!(
        ok(i, truth.ins, ai) && ok(o, truth.out, ao),
        "{scenario:?} seed {seed}{}: in {i}/{} ({ai:.3}), out {o}/{} ({ao:.3}); threshold {min}",
        if h264 { " (H.264)" } else { "" },
        truth.ins,
        truth.out
    );
}

/// Through a real ffmpeg H.264 encode and decode.
fn h264_round_trip(y4m: &[u8]) -> Vec<u8> {
    let mut enc = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "yuv4mpegpipe",
            "-i",
            "-",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-crf",
            "23",
            "-f",
            "h264",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg (bash .ci/test installs it)");
    let dec = Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "h264",
            "-i",
            "-",
            "-f",
            "yuv4mpegpipe",
            "-pix_fmt",
            "yuv420p",
            "-",
        ])
        .stdin(enc.stdout.take().unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = enc.stdin.take().unwrap();
    let input = y4m.to_vec();
    let w = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let out = dec.wait_with_output().unwrap();
    w.join().unwrap().unwrap();
    assert!(enc.wait().unwrap().success() && out.status.success());
    out.stdout
}

#[test]
fn single_file_is_counted() {
    check(Scenario::Single, 31, 120, 0.95, false);
}

#[test]
fn groups_side_by_side_are_counted() {
    check(Scenario::Groups, 32, 120, 0.9, false);
}

#[test]
fn counterflow_is_counted() {
    check(Scenario::Counterflow, 33, 120, 0.9, false);
}

#[test]
fn people_turning_back_on_the_line_are_not_counted() {
    check(Scenario::Turnback, 34, 120, 0.9, false);
}

#[test]
fn lights_switched_and_flicker_do_not_count() {
    check(Scenario::Lighting, 35, 120, 0.95, false);
    let spec = SceneSpec {
        scenario: Scenario::Empty,
        seed: 36,
        length: Length::Seconds(60),
        ..Default::default()
    };
    let mut y4m = Vec::new();
    tellijn_scene::render(&spec, &mut y4m).unwrap();
    let cfg = CounterConfig::parse(&spec.counter_toml()).unwrap();
    assert_eq!(
        count(&cfg, &y4m),
        (0, 0),
        "an empty doorway with lighting steps counts nobody"
    );
}

#[test]
fn mixed_traffic_through_h264_is_counted() {
    check(Scenario::Mixed, 37, 120, 0.9, true);
}

/// Zone readings (one per second, the median of its frames) against the scene's truth.
#[test]
fn zone_readings_follow_the_people_present() {
    use tellijn_counter::count::{Counting, Event};
    struct Readings(Vec<u32>);
    impl Sink for Readings {
        fn event(&mut self, _: &Counting, e: &Event) {
            if let Event::Zone { count, .. } = e {
                self.0.push(*count);
            }
        }
        fn status(&mut self, _: &str) {}
    }
    let spec = SceneSpec {
        scenario: Scenario::Mixed,
        seed: 38,
        length: Length::Seconds(120),
        zone: true,
        ..Default::default()
    };
    let mut y4m = Vec::new();
    let truth = tellijn_scene::render(&spec, &mut y4m).unwrap();
    let cfg = CounterConfig::parse(&spec.counter_toml()).unwrap();
    assert_eq!(cfg.zones.len(), 1, "{}", spec.counter_toml());
    let mut sink = Readings(Vec::new());
    feed(&cfg, &y4m, &mut sink);
    let want = truth.zone.expect("a zone").per_second;
    let n = sink.0.len().min(want.len());
    assert!(
        n + 2 >= want.len(),
        "one reading per second: {} of {}",
        sink.0.len(),
        want.len()
    );
    assert!(want.iter().any(|&w| w > 0), "people pass through the zone");
    // Reading k covers second k; allow one person off (entering or leaving at the edge).
    let close = (0..n).filter(|&k| sink.0[k].abs_diff(want[k]) <= 1).count();
    assert!(
        close * 10 >= n * 9,
        "{close} of {n} readings within one person: {:?} vs {:?}",
        sink.0,
        want
    );
}
