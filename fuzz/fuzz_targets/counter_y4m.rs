//! Any bytes as the counter's Y4M input: the stream header parses to a geometry within the
//! limits or to an error, and reading the stream from a pipe (`Y4mSource` into a `Ring`, as
//! the counter's reader does) ends in the end of input or an error, never a panic. Every
//! frame read has its lifetime measured, and no error message quotes the stream: apart from
//! numbers (sizes and positions) it is the variant's fixed text.
//!
//! The input is written into a pipe before it is read (so at most what the pipe holds), and
//! streams whose frames would be larger than 256×256 are skipped: that is only allocation.
#![no_main]

use std::collections::HashSet;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};

use libfuzzer_sys::fuzz_target;
use tellijn_counter::app::read_all;
use tellijn_counter::config::MAX_SIDE;
use tellijn_counter::frame::Ring;
use tellijn_counter::y4m_source::{SourceError, Y4mSource, parse_header};

const MAX_PIXELS: usize = 256 * 256;
const WINDOW: usize = 12;
/// The source's limit on the header line (`y4m_source::MAX_HEADER`, private).
const MAX_HEADER: usize = 1024;

/// Digit runs collapsed to one `0`: numbers may come from the stream, nothing else may.
fn shape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    for &b in s {
        if b.is_ascii_digit() {
            if out.last() != Some(&b'0') {
                out.push(b'0');
            }
        } else {
            out.push(b);
        }
    }
    out
}

/// The error with everything that could carry stream data replaced: its fixed text.
fn fixed(e: &SourceError) -> SourceError {
    match e {
        SourceError::Empty => SourceError::Empty,
        SourceError::NotY4m => SourceError::NotY4m,
        SourceError::HeaderTooLong => SourceError::HeaderTooLong,
        SourceError::BadHeader(s) => SourceError::BadHeader(s),
        SourceError::BitDepth(_) => SourceError::BitDepth(0),
        SourceError::Size { .. } => SourceError::Size { width: 0, height: 0 },
        SourceError::Truncated { .. } => SourceError::Truncated { frame: 0, got: 0, want: 0 },
        SourceError::BadFrameHeader { .. } => SourceError::BadFrameHeader { frame: 0 },
        SourceError::SizeChanged { .. } => SourceError::SizeChanged { frame: 0 },
        SourceError::Io(_) => SourceError::Io(String::new()),
    }
}

/// No run of `WINDOW` input bytes appears in the message unless it is the fixed text.
fn check_message(e: &SourceError, input: &[u8]) {
    let msg = e.to_string();
    assert!(!msg.is_empty(), "an error without a message: {e:?}");
    assert!(!msg.chars().any(char::is_control), "a control character in {msg:?}");
    if let SourceError::Io(s) = e {
        assert!(s.len() <= 64 && s.is_ascii(), "an I/O error that is not an error kind: {s:?}");
    }
    let windows: HashSet<&[u8]> = msg.as_bytes().windows(WINDOW).collect();
    if windows.is_empty() {
        return;
    }
    let template = shape(fixed(e).to_string().as_bytes());
    for w in input.windows(WINDOW) {
        if windows.contains(w) {
            let s = shape(w);
            assert!(
                template.windows(s.len()).any(|t| t == &s[..]),
                "the message quotes the stream: {msg:?}"
            );
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The header line, as the source reads it: up to and including the first end of line.
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(i) => &data[..=i],
        None => data,
    };
    let y4m = line.starts_with(b"YUV4MPEG2");
    // What the source refuses before parsing: a line of more than 1024 bytes (end of line
    // included), or 1024 bytes without one.
    let too_long = y4m && (line.len() > MAX_HEADER || (line.len() == MAX_HEADER && !line.ends_with(b"\n")));
    let header = if y4m && !too_long && line.ends_with(b"\n") {
        let r = parse_header(line);
        match &r {
            Ok(g) => {
                let side = 16..=MAX_SIDE as usize;
                assert!(side.contains(&g.width) && side.contains(&g.height), "{g:?}");
                assert!(g.fps.0 > 0 && g.fps.1 > 0, "{g:?}");
                assert!(g.chroma <= 2 * g.width * g.height, "{g:?}");
                if g.width * g.height > MAX_PIXELS {
                    return;
                }
            }
            Err(e) => check_message(e, data),
        }
        Some(r)
    } else {
        None
    };

    let (reader, mut writer) = std::io::pipe().expect("a pipe");
    // SAFETY: F_GETPIPE_SZ on an open pipe descriptor.
    let capacity = unsafe { libc::fcntl(writer.as_raw_fd(), libc::F_GETPIPE_SZ) };
    if capacity < 0 || data.len() > capacity as usize {
        return;
    }
    writer.write_all(data).expect("the input fits in the pipe");
    drop(writer);

    let mut src = match Y4mSource::open(OwnedFd::from(reader)) {
        Ok(s) => s,
        Err(e) => {
            check_message(&e, data);
            match &header {
                Some(Err(h)) => assert_eq!(e, *h, "the source and parse_header disagree"),
                Some(Ok(g)) => panic!("a header line parse_header accepts ({g:?}) was refused: {e:?}"),
                None if too_long => assert_eq!(e, SourceError::HeaderTooLong),
                None => {}
            }
            return;
        }
    };
    let g = src.geometry();
    match &header {
        Some(Ok(h)) => assert_eq!(*h, g, "the source and parse_header disagree"),
        _ => panic!("a stream opened whose header line parse_header refuses: {header:?}"),
    }

    let ring = Ring::new(g.width, g.height);
    let result = read_all(&mut src, &ring);
    if let Err(e) = &result {
        check_message(e, data);
    }
    // Nobody processes: the waiting frame (if any) is given back unprocessed.
    ring.end();
    while let Some(f) = ring.next() {
        ring.done(f, false);
    }
    let (c, lifetimes) = ring.totals();
    let per_frame = b"FRAME\n".len() + g.width * g.height + g.chroma;
    assert!(c.frames as usize <= data.len() / per_frame, "{} frames from {} bytes", c.frames, data.len());
    assert_eq!(c.processed, 0);
    assert_eq!(c.dropped_behind + c.dropped_late, c.frames, "every frame read is dropped once: {c:?}");
    // Every frame whose first byte was read has its lifetime measured, the one an error
    // abandoned included (an error always comes after a frame's first byte here).
    assert_eq!(
        lifetimes.count(),
        c.frames + u64::from(result.is_err()),
        "{c:?}, {result:?}"
    );
});
