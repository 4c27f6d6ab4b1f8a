//! Deterministic crash points for the fault-injection harness (`tests/crash_e2e.rs`).
//!
//! Compiled in only with the feature `crash-points` (tests); without it [`point`] is an empty
//! inline function and release builds contain no seam. With it, `TELLIJN_CRASH_AT=name:n` makes
//! the process abort the `n`-th time (default 1) it reaches the point `name`: no destructor,
//! buffer flush or fsync runs after it, so what is on disk is what a `kill -9` at that instant
//! would leave. The name and count make a failure replay.

/// Marks a crash point.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &'static str) {}

/// Marks a crash point: aborts the process when `TELLIJN_CRASH_AT` names it and this is the
/// chosen hit.
#[cfg(feature = "crash-points")]
pub fn point(name: &'static str) {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static TARGET: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static HITS: AtomicU64 = AtomicU64::new(0);
    let target = TARGET.get_or_init(|| {
        let spec = std::env::var("TELLIJN_CRASH_AT").ok()?;
        let (n, k) = match spec.split_once(':') {
            Some((n, k)) => (n.to_owned(), k.parse().ok()?),
            None => (spec, 1),
        };
        Some((n, k))
    });
    if let Some((target, nth)) = target
        && target == name
        && HITS.fetch_add(1, Ordering::SeqCst) + 1 == *nth
    {
        eprintln!("TELLIJN-CRASH-POINT {name}:{nth}");
        std::process::abort();
    }
}
