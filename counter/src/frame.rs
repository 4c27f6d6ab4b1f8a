//! Frames: a fixed ring of preallocated luma buffers, and how long each frame lived.
//!
//! A [`Frame`] is the only type that holds pixels of the camera. It has no `Clone`, `Copy`,
//! `Debug`, `Display` or `Serialize` (see `tests/ui/`): pixels can be read where the pipeline
//! needs them and nowhere else. Its buffer is zeroized every time it goes back to the ring and
//! when it is dropped. A frame lives from the moment the first byte of it is read until its
//! buffer is zeroized; that lifetime is measured for every frame, processed or dropped.
//!
//! The ring holds [`RING`] frames: one being read, at most one waiting, one being processed.
//! When a new frame is complete while the previous one still waits, the waiting one is dropped
//! (zeroized and counted): frames are never queued behind a slow pipeline.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use zeroize::Zeroize;

/// The number of preallocated frame buffers.
pub const RING: usize = 3;
/// The promise: no frame lives longer than this.
pub const MAX_LIFETIME: Duration = Duration::from_millis(200);

/// One frame's luma plane. Deliberately without `Clone`, `Copy`, `Debug`, `Display`, `Serialize`.
pub struct Frame {
    luma: Box<[u8]>,
    width: usize,
    height: usize,
    born: Option<Instant>,
    /// Set when the buffer was zeroized: how long the frame had lived.
    life: Option<Duration>,
    seq: u64,
}

impl Frame {
    fn new(width: usize, height: usize) -> Frame {
        Frame {
            luma: vec![0u8; width * height].into_boxed_slice(),
            width,
            height,
            born: None,
            life: None,
            seq: 0,
        }
    }

    /// Width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// The luma plane, row by row.
    pub fn luma(&self) -> &[u8] {
        &self.luma
    }

    /// The buffer a source reads into.
    pub fn luma_mut(&mut self) -> &mut [u8] {
        &mut self.luma
    }

    /// Marks the moment the first byte of this frame was read.
    pub fn born_now(&mut self) {
        self.born = Some(Instant::now());
    }

    /// How long ago its first byte was read.
    pub fn age(&self) -> Duration {
        self.born.map(|b| b.elapsed()).unwrap_or_default()
    }

    /// The frame's number in the stream (from 0).
    pub fn seq(&self) -> u64 {
        self.seq
    }

    pub(crate) fn set_seq(&mut self, seq: u64) {
        self.seq = seq;
    }

    /// Zeroizes the buffer now (also mid-read, when a frame would outlive its 200 ms); the
    /// frame's lifetime ends here.
    pub fn wipe(&mut self) {
        self.luma.zeroize();
        if let Some(b) = self.born.take() {
            self.life = Some(b.elapsed());
        }
    }

    /// Whether the buffer was wiped while its frame was being read.
    pub fn wiped(&self) -> bool {
        self.life.is_some()
    }

    #[cfg(test)]
    pub(crate) fn is_zero(&self) -> bool {
        self.luma.iter().all(|&b| b == 0)
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        self.luma.zeroize();
    }
}

/// Lifetimes of frames, in a fixed histogram of 1 ms buckets up to 1 s (and one above).
pub struct Lifetimes {
    buckets: [u64; 1002],
    max: Duration,
    n: u64,
}

impl Default for Lifetimes {
    fn default() -> Self {
        Lifetimes {
            buckets: [0; 1002],
            max: Duration::ZERO,
            n: 0,
        }
    }
}

impl Lifetimes {
    /// Records one lifetime.
    pub fn record(&mut self, d: Duration) {
        let ms = d.as_micros().div_ceil(1000) as usize;
        self.buckets[ms.min(1001)] += 1;
        self.max = self.max.max(d);
        self.n += 1;
    }

    /// Frames recorded.
    pub fn count(&self) -> u64 {
        self.n
    }

    /// The longest lifetime recorded.
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The 99th percentile, rounded up to the bucket's upper edge (never above the maximum).
    pub fn p99(&self) -> Duration {
        if self.n == 0 {
            return Duration::ZERO;
        }
        let rank = self.n.saturating_mul(99).div_ceil(100);
        let mut seen = 0;
        for (ms, c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Duration::from_millis(ms as u64).min(self.max);
            }
        }
        self.max
    }

    /// Merges another histogram into this one.
    pub fn merge(&mut self, o: &Lifetimes) {
        for (a, b) in self.buckets.iter_mut().zip(o.buckets.iter()) {
            *a += b;
        }
        self.max = self.max.max(o.max);
        self.n += o.n;
    }
}

/// What happened to frames, since the start.
#[derive(Default, Clone, Copy, PartialEq, Eq, Debug)]
pub struct FrameCounts {
    /// Frames read (whole or not).
    pub frames: u64,
    /// Frames counted.
    pub processed: u64,
    /// Dropped because the pipeline was still busy with an earlier one.
    pub dropped_behind: u64,
    /// Dropped unprocessed because they would have lived past 200 ms.
    pub dropped_late: u64,
}

struct RingState {
    free: Vec<Frame>,
    ready: Option<Frame>,
    ended: bool,
    counts: FrameCounts,
    /// Lifetimes since the last status line, and since the start.
    window: Lifetimes,
    total: Lifetimes,
    next_seq: u64,
    /// Replay: the reader waits for the pipeline instead of dropping a waiting frame.
    replay: bool,
}

/// The ring of frames shared by the reader and the pipeline.
pub struct Ring {
    state: Mutex<RingState>,
    wake: Condvar,
    width: usize,
    height: usize,
}

impl Ring {
    /// Allocates the ring's buffers once, for frames of this size.
    pub fn new(width: usize, height: usize) -> Ring {
        Ring {
            state: Mutex::new(RingState {
                free: (0..RING).map(|_| Frame::new(width, height)).collect(),
                ready: None,
                ended: false,
                counts: FrameCounts::default(),
                window: Lifetimes::default(),
                total: Lifetimes::default(),
                next_seq: 0,
                replay: false,
            }),
            wake: Condvar::new(),
            width,
            height,
        }
    }

    /// Recorded input: wait for the pipeline before reading the next frame, drop nothing.
    /// The wait happens before a frame's first byte is read, so lifetimes stay as short; a
    /// live camera must not use it, since its frames would wait in the pipe instead.
    pub fn set_replay(&self, on: bool) {
        self.lock().replay = on;
    }

    /// Frame width and height.
    pub fn size(&self) -> (usize, usize) {
        (self.width, self.height)
    }

    fn lock(&self) -> MutexGuard<'_, RingState> {
        // A panic elsewhere never leaves the state half-changed: every change is one statement.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A free buffer for the reader (always one: at most one waits and one is processed).
    pub fn take_free(&self) -> Frame {
        let mut s = self.lock();
        loop {
            if s.replay && s.ready.is_some() {
                s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
                continue;
            }
            if let Some(mut f) = s.free.pop() {
                f.set_seq(s.next_seq);
                s.next_seq += 1;
                return f;
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// A whole frame from the reader. A frame still waiting is dropped: never queue.
    pub fn publish(&self, frame: Frame) {
        let mut s = self.lock();
        s.counts.frames += 1;
        if let Some(old) = s.ready.take() {
            s.counts.dropped_behind += 1;
            Self::give_back(&mut s, old);
        }
        if frame.wiped() || frame.age() >= MAX_LIFETIME {
            // Reading it alone took too long (a trickling source): it is never processed.
            s.counts.dropped_late += 1;
            Self::give_back(&mut s, frame);
        } else {
            s.ready = Some(frame);
        }
        drop(s);
        self.wake.notify_all();
    }

    /// A frame the reader could not finish (truncated, bad): zeroized, not counted as a frame.
    pub fn abandon(&self, frame: Frame) {
        let mut s = self.lock();
        Self::give_back(&mut s, frame);
        drop(s);
        self.wake.notify_all();
    }

    /// The input has ended (or failed): the pipeline stops once the waiting frame is done.
    pub fn end(&self) {
        self.lock().ended = true;
        self.wake.notify_all();
    }

    /// The next frame for the pipeline, or `None` at the end of input.
    pub fn next(&self) -> Option<Frame> {
        let mut s = self.lock();
        loop {
            if let Some(f) = s.ready.take() {
                return Some(f);
            }
            if s.ended {
                return None;
            }
            s = self.wake.wait(s).unwrap_or_else(|p| p.into_inner());
        }
    }

    /// Returns a frame after processing it (or deciding not to): zeroized, lifetime recorded.
    pub fn done(&self, frame: Frame, processed: bool) {
        let mut s = self.lock();
        if processed {
            s.counts.processed += 1;
        } else {
            s.counts.dropped_late += 1;
        }
        Self::give_back(&mut s, frame);
        drop(s);
        self.wake.notify_all();
    }

    fn give_back(s: &mut RingState, mut frame: Frame) {
        frame.wipe();
        if let Some(life) = frame.life.take() {
            s.window.record(life);
            s.total.record(life);
        }
        s.free.push(frame);
    }

    /// Counts so far, and the lifetimes since the previous call (then reset).
    pub fn take_window(&self) -> (FrameCounts, Lifetimes) {
        let mut s = self.lock();
        (s.counts, std::mem::take(&mut s.window))
    }

    /// Counts and lifetimes since the start.
    pub fn totals(&self) -> (FrameCounts, Lifetimes) {
        let s = self.lock();
        let mut l = Lifetimes::default();
        l.merge(&s.total);
        (s.counts, l)
    }

    /// Every buffer back in the ring is zero (for tests).
    #[cfg(test)]
    pub(crate) fn all_free_zero(&self) -> bool {
        let s = self.lock();
        s.free.len() == RING && s.free.iter().all(Frame::is_zero)
    }
}

impl Drop for Ring {
    fn drop(&mut self) {
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(mut f) = s.ready.take() {
            f.wipe();
        }
        for f in s.free.iter_mut() {
            f.wipe();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filled(ring: &Ring, v: u8) -> Frame {
        let mut f = ring.take_free();
        f.born_now();
        f.luma_mut().fill(v);
        f
    }

    #[test]
    fn a_buffer_is_zeroized_when_it_goes_back() {
        let ring = Ring::new(8, 4);
        let f = filled(&ring, 0xAB);
        ring.publish(f);
        let f = ring.next().unwrap();
        assert!(f.luma().iter().all(|&b| b == 0xAB));
        ring.done(f, true);
        assert!(ring.all_free_zero());
        let (c, l) = ring.take_window();
        assert_eq!((c.frames, c.processed), (1, 1));
        assert_eq!(l.count(), 1);
    }

    #[test]
    fn a_waiting_frame_is_dropped_not_queued() {
        let ring = Ring::new(8, 4);
        let a = filled(&ring, 1);
        ring.publish(a);
        let b = filled(&ring, 2);
        ring.publish(b);
        let f = ring.next().unwrap();
        assert_eq!(f.luma()[0], 2, "the newest frame wins");
        ring.done(f, true);
        ring.end();
        assert!(ring.next().is_none());
        let (c, l) = ring.totals();
        assert_eq!((c.frames, c.processed, c.dropped_behind), (2, 1, 1));
        assert_eq!(l.count(), 2, "the dropped frame's lifetime is measured too");
        assert!(ring.all_free_zero());
    }

    #[test]
    fn an_abandoned_frame_is_zeroized_and_not_counted() {
        let ring = Ring::new(8, 4);
        let f = filled(&ring, 9);
        ring.abandon(f);
        assert!(ring.all_free_zero());
        assert_eq!(ring.totals().0.frames, 0);
    }

    #[test]
    fn a_frame_that_took_too_long_to_read_is_never_processed() {
        let ring = Ring::new(8, 4);
        let mut f = filled(&ring, 5);
        f.born = Some(Instant::now() - MAX_LIFETIME);
        ring.publish(f);
        ring.end();
        assert!(ring.next().is_none());
        assert_eq!(ring.totals().0.dropped_late, 1);
        assert!(ring.all_free_zero());
    }

    #[test]
    fn p99_and_max() {
        let mut l = Lifetimes::default();
        for i in 0..100 {
            l.record(Duration::from_micros(if i == 99 { 150_000 } else { 2_500 }));
        }
        assert_eq!(l.p99(), Duration::from_millis(3));
        assert_eq!(l.max(), Duration::from_millis(150));
        l.record(Duration::from_secs(5));
        assert_eq!(l.max(), Duration::from_secs(5));
    }
}
