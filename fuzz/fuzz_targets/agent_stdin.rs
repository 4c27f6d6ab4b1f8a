//! Any text on the agent's stdin: `feed` accepts or refuses each line and never panics; a
//! refused line changes nothing; every interval's reading has one entry per configured line
//! and zone, within the bounds a count message allows, and no more crossings than accepted
//! lines.
//!
//! Input: the first line names the sensor's lines, the second its zones (comma-separated, so
//! the fuzzer also tries odd configs); every further line is fed, except `---`, which ends
//! the interval (`take`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use source::{Reading, StdinAggregator};

// The agent's own source file (see Cargo.toml for why not the crate).
#[allow(dead_code)]
#[path = "../../sensor-agent/src/source.rs"]
mod source;

const MAX: u32 = 10_000;

fn names(l: Option<&str>) -> Vec<String> {
    l.unwrap_or("")
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn check(r: &Reading, lines: usize, zones: usize, accepted: u64) {
    assert_eq!(r.lines.len(), lines, "one entry per configured line");
    assert_eq!(r.zones.len(), zones, "one entry per configured zone");
    let mut crossings = 0u64;
    for &(i, o) in &r.lines {
        assert!(i <= MAX && o <= MAX, "line count over {MAX}: {r:?}");
        crossings += u64::from(i) + u64::from(o);
    }
    assert!(
        crossings <= accepted,
        "{crossings} crossings from {accepted} lines"
    );
    for z in r.zones.iter().flatten() {
        assert!(*z <= MAX, "zone count over {MAX}: {r:?}");
    }
    if accepted == 0 {
        assert!(r.zones.iter().all(Option::is_none));
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut input = text.split('\n');
    let (lines, zones) = (names(input.next()), names(input.next()));
    // `all` sees every line; `kept` only those `all` accepted: their readings must agree.
    let mut all = StdinAggregator::new(&lines, &zones);
    let mut kept = StdinAggregator::new(&lines, &zones);
    let mut accepted = 0u64;
    for line in input {
        if line == "---" {
            let r = all.take();
            check(&r, lines.len(), zones.len(), accepted);
            assert_eq!(r, kept.take(), "a refused line changed the reading");
            accepted = 0;
        } else if all.feed(line).is_ok() {
            accepted += 1;
            assert_eq!(
                kept.feed(line),
                Ok(()),
                "accepted once, refused later: {line:?}"
            );
        }
    }
    let r = all.take();
    check(&r, lines.len(), zones.len(), accepted);
    assert_eq!(r, kept.take(), "a refused line changed the reading");
    check(&all.take(), lines.len(), zones.len(), 0);
});
