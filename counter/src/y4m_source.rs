//! Y4M frames from a file descriptor (stdin), read straight into the frame ring.
//!
//! The `y4m` crate parses the stream header. Its decoder keeps a whole frame of its own
//! (chroma included) in a buffer nobody can zeroize, so frames are not read through it: each
//! frame's luma plane is read directly into a ring buffer, and its chroma planes are read
//! through a small scratch buffer that is zeroized after every frame and never leaves this
//! module. Nothing read from the stream ever appears in an error message: errors name sizes and
//! positions, never bytes.
//!
//! Every read waits with `poll` for at most the time the frame has left: a frame whose bytes
//! arrive so slowly that it would live past 200 ms is zeroized mid-read, the rest of it is read
//! and discarded, and it counts as dropped late.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use zeroize::Zeroize;

use crate::config::MAX_SIDE;
use crate::frame::{Frame, MAX_LIFETIME};

/// Margin kept below the 200 ms promise for zeroizing and bookkeeping.
const SAFETY: Duration = Duration::from_millis(10);
const MAX_HEADER: usize = 1024;
const SCRATCH: usize = 16 * 1024;

/// Why frames cannot be read. Messages never contain stream bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    #[error(
        "the input is empty: no Y4M stream header (expected \"YUV4MPEG2 W… H…\"; ffmpeg writes it with -f yuv4mpegpipe)."
    )]
    Empty,
    #[error(
        "the input is not a Y4M stream: its first line is not a \"YUV4MPEG2\" header (use ffmpeg … -f yuv4mpegpipe -pix_fmt yuv420p -)."
    )]
    NotY4m,
    #[error("the Y4M stream header is longer than {MAX_HEADER} bytes or has no end of line.")]
    HeaderTooLong,
    #[error("the Y4M stream header is invalid: {0}.")]
    BadHeader(&'static str),
    #[error(
        "the Y4M stream is {0} bits per sample; only 8-bit is supported (add -pix_fmt yuv420p)."
    )]
    BitDepth(usize),
    #[error("the frame size {width}×{height} is outside 16…{MAX_SIDE} pixels per side.")]
    Size { width: usize, height: usize },
    #[error("frame {frame}: the stream ended in the middle of the frame ({got} of {want} bytes).")]
    Truncated { frame: u64, got: usize, want: usize },
    #[error("frame {frame}: expected a \"FRAME\" header; the stream is corrupt.")]
    BadFrameHeader { frame: u64 },
    #[error(
        "frame {frame}: a new stream header appeared mid-stream (the frame size may have changed); restart the counter for the new stream."
    )]
    SizeChanged { frame: u64 },
    #[error("reading the input failed: {0}.")]
    Io(String),
}

/// Frame geometry from the stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub width: usize,
    pub height: usize,
    /// Frames per second (numerator, denominator).
    pub fps: (usize, usize),
    /// Bytes of chroma after each luma plane.
    pub chroma: usize,
}

/// What reading one frame gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Read1 {
    /// A whole frame in the buffer.
    Frame,
    /// A whole frame arrived, but too slowly: its buffer was zeroized mid-read.
    Late,
    /// The stream ended cleanly between frames.
    End,
}

/// A Y4M stream on a file descriptor.
pub struct Y4mSource {
    file: File,
    geometry: Geometry,
    scratch: Box<[u8]>,
    frames: u64,
}

impl Y4mSource {
    /// Reads and checks the stream header (blocking until it arrives).
    pub fn open(fd: OwnedFd) -> Result<Y4mSource, SourceError> {
        let mut file = File::from(fd);
        let mut header = Vec::with_capacity(MAX_HEADER);
        let mut byte = [0u8; 1];
        loop {
            match file.read(&mut byte) {
                Ok(0) if header.is_empty() => return Err(SourceError::Empty),
                Ok(0) => return Err(SourceError::BadHeader("it ends before its end of line")),
                Ok(_) => {
                    header.push(byte[0]);
                    if header.len() == 9 && &header[..] != b"YUV4MPEG2" {
                        return Err(SourceError::NotY4m);
                    }
                    if byte[0] == b'\n' {
                        break;
                    }
                    if header.len() >= MAX_HEADER {
                        return Err(SourceError::HeaderTooLong);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Io(e.kind().to_string())),
            }
        }
        if !header.starts_with(b"YUV4MPEG2") {
            return Err(SourceError::NotY4m);
        }
        let geometry = parse_header(&header)?;
        Ok(Y4mSource {
            file,
            geometry,
            scratch: vec![0u8; SCRATCH].into_boxed_slice(),
            frames: 0,
        })
    }

    /// The stream's geometry.
    pub fn geometry(&self) -> Geometry {
        self.geometry
    }

    /// Reads the next frame into `frame` (sized to the geometry).
    pub fn read_frame(&mut self, frame: &mut Frame) -> Result<Read1, SourceError> {
        let r = self.read_frame_inner(frame);
        self.scratch.zeroize();
        if r.is_err() {
            frame.wipe();
        }
        self.frames += 1;
        r
    }

    fn read_frame_inner(&mut self, frame: &mut Frame) -> Result<Read1, SourceError> {
        let index = self.frames;
        // The first byte: block without a deadline, the frame does not exist yet.
        let mut first = [0u8; 1];
        loop {
            match self.file.read(&mut first) {
                Ok(0) => return Ok(Read1::End),
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SourceError::Io(e.kind().to_string())),
            }
        }
        frame.born_now();
        let deadline = Instant::now() + MAX_LIFETIME - SAFETY;
        // The rest of "FRAME[ params]\n".
        let mut line = [0u8; 256];
        line[0] = first[0];
        let mut len = 1;
        let mut b = [0u8; 1];
        while line[len - 1] != b'\n' {
            if len == line.len() {
                return Err(SourceError::BadFrameHeader { frame: index });
            }
            match self.read_some(&mut b, deadline, frame)? {
                0 => {
                    return Err(SourceError::Truncated {
                        frame: index,
                        got: 0,
                        want: self.frame_bytes(),
                    });
                }
                _ => {
                    line[len] = b[0];
                    len += 1;
                }
            }
            if len == 9 && &line[..9] == b"YUV4MPEG2" {
                return Err(SourceError::SizeChanged { frame: index });
            }
        }
        let head = &line[..len - 1];
        if !(head == b"FRAME" || head.starts_with(b"FRAME ")) {
            if head.starts_with(b"YUV4MPEG2") {
                return Err(SourceError::SizeChanged { frame: index });
            }
            return Err(SourceError::BadFrameHeader { frame: index });
        }
        // Luma, into the ring buffer.
        let want = self.frame_bytes();
        let luma_len = frame.luma().len();
        let mut got = 0;
        while got < luma_len {
            let n = if frame.wiped() {
                let take = (luma_len - got).min(self.scratch.len());
                let (scratch, file) = (&mut self.scratch, &mut self.file);
                read_deadline(file, &mut scratch[..take], None)?
            } else {
                let file = &mut self.file;
                let buf = &mut frame.luma_mut()[got..];
                match read_deadline(file, buf, Some(deadline))? {
                    Some(n) => Some(n),
                    None => {
                        // Too slow: this frame's pixels die now.
                        frame.wipe();
                        continue;
                    }
                }
            };
            match n {
                Some(0) => {
                    return Err(SourceError::Truncated {
                        frame: index,
                        got,
                        want,
                    });
                }
                Some(n) => got += n,
                None => {}
            }
        }
        // Chroma: read through the scratch buffer and discarded.
        let mut left = self.geometry.chroma;
        while left > 0 {
            let take = left.min(self.scratch.len());
            let (scratch, file) = (&mut self.scratch, &mut self.file);
            match read_deadline(file, &mut scratch[..take], None)? {
                Some(0) => {
                    return Err(SourceError::Truncated {
                        frame: index,
                        got: want - left,
                        want,
                    });
                }
                Some(n) => left -= n,
                None => {}
            }
        }
        if !frame.wiped() && Instant::now() >= deadline {
            frame.wipe();
        }
        Ok(if frame.wiped() {
            Read1::Late
        } else {
            Read1::Frame
        })
    }

    fn read_some(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        frame: &mut Frame,
    ) -> Result<usize, SourceError> {
        loop {
            let d = if frame.wiped() { None } else { Some(deadline) };
            match read_deadline(&mut self.file, buf, d)? {
                Some(n) => return Ok(n),
                None => frame.wipe(),
            }
        }
    }

    fn frame_bytes(&self) -> usize {
        self.geometry.width * self.geometry.height + self.geometry.chroma
    }
}

/// Reads once; `None` when the deadline passed before any byte arrived.
fn read_deadline(
    file: &mut File,
    buf: &mut [u8],
    deadline: Option<Instant>,
) -> Result<Option<usize>, SourceError> {
    loop {
        if let Some(d) = deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            let mut pfd = libc::pollfd {
                fd: file.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
            // SAFETY: one valid pollfd for the duration of the call.
            let r = unsafe { libc::poll(&mut pfd, 1, ms) };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(SourceError::Io(e.kind().to_string()));
            }
            if r == 0 {
                return Ok(None);
            }
        }
        match file.read(buf) {
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(SourceError::Io(e.kind().to_string())),
        }
    }
}

/// The frame size a header line declares, read as the `y4m` crate reads it (fields after the
/// magic, separated by single spaces, up to the end of line; the last `W` and `H` win), so that
/// sides too large to multiply are refused before the crate multiplies them: `y4m` 0.8 computes
/// the plane sizes unchecked (found by the `counter_y4m` fuzz target).
fn declared_sides(header: &[u8]) -> Result<(usize, usize), SourceError> {
    let params = header.strip_prefix(b"YUV4MPEG2").unwrap_or(header);
    let params = params.split(|&b| b == b'\n').next().unwrap_or_default();
    let (mut width, mut height) = (0usize, 0usize);
    for field in params.split(|&b| b == b' ') {
        let (side, value) = match field.split_first() {
            Some((b'W', v)) => (&mut width, v),
            Some((b'H', v)) => (&mut height, v),
            _ => continue,
        };
        *side = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse().ok())
            .ok_or(SourceError::BadHeader(
                "W and H must be positive numbers and F, A ratios",
            ))?;
    }
    Ok((width, height))
}

/// Parses a stream header line (with its end of line) by the `y4m` crate.
pub fn parse_header(header: &[u8]) -> Result<Geometry, SourceError> {
    let (width, height) = declared_sides(header)?;
    if width > MAX_SIDE as usize || height > MAX_SIDE as usize {
        return Err(if width == 0 || height == 0 {
            SourceError::BadHeader("W and H must be positive numbers and F, A ratios")
        } else {
            SourceError::Size { width, height }
        });
    }
    let limits = y4m::Limits {
        bytes: (MAX_SIDE as usize).pow(2) * 3,
    };
    let d = y4m::Decoder::new_with_limits(header, limits).map_err(|e| match e {
        y4m::Error::UnknownColorspace => SourceError::BadHeader("its colorspace (C…) is unknown"),
        y4m::Error::OutOfMemory => {
            SourceError::BadHeader("its frames would be larger than 4096×4096")
        }
        y4m::Error::ParseError(_) => {
            SourceError::BadHeader("W and H must be positive numbers and F, A ratios")
        }
        _ => SourceError::BadHeader("it cannot be parsed"),
    })?;
    let (width, height) = (d.get_width(), d.get_height());
    if d.get_bit_depth() != 8 {
        return Err(SourceError::BitDepth(d.get_bit_depth()));
    }
    if !(16..=MAX_SIDE as usize).contains(&width) || !(16..=MAX_SIDE as usize).contains(&height) {
        return Err(SourceError::Size { width, height });
    }
    let fr = d.get_framerate();
    if fr.num == 0 || fr.den == 0 {
        return Err(SourceError::BadHeader(
            "its frame rate F must be a positive ratio",
        ));
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let chroma = match d.get_colorspace() {
        y4m::Colorspace::Cmono | y4m::Colorspace::Cmono12 => 0,
        y4m::Colorspace::C422 | y4m::Colorspace::C422p10 | y4m::Colorspace::C422p12 => {
            2 * cw * height
        }
        y4m::Colorspace::C444 | y4m::Colorspace::C444p10 | y4m::Colorspace::C444p12 => {
            2 * width * height
        }
        _ => 2 * cw * ch,
    };
    Ok(Geometry {
        width,
        height,
        fps: (fr.num, fr.den),
        chroma,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers() {
        let g = parse_header(b"YUV4MPEG2 W320 H240 F15:1 Ip A1:1 C420jpeg\n").unwrap();
        assert_eq!(
            g,
            Geometry {
                width: 320,
                height: 240,
                fps: (15, 1),
                chroma: 2 * 160 * 120
            }
        );
        assert_eq!(
            parse_header(b"YUV4MPEG2 W33 H17 F25:1 Cmono\n")
                .unwrap()
                .chroma,
            0
        );
        assert_eq!(
            parse_header(b"YUV4MPEG2 W320 H240 F25:1 C420p10\n"),
            Err(SourceError::BitDepth(10))
        );
        assert_eq!(
            parse_header(b"YUV4MPEG2 W8 H8 F25:1\n"),
            Err(SourceError::Size {
                width: 8,
                height: 8
            })
        );
        assert!(matches!(
            parse_header(b"YUV4MPEG2 W320 F25:1\n"),
            Err(SourceError::BadHeader(_))
        ));
        assert!(matches!(
            parse_header(b"YUV4MPEG2 W320 H240 Cxyz\n"),
            Err(SourceError::BadHeader(_))
        ));
        assert_eq!(
            parse_header(b"YUV4MPEG2 W99999 H99999\n"),
            Err(SourceError::Size {
                width: 99999,
                height: 99999
            })
        );
    }

    /// Sides whose product overflows are refused before `y4m` multiplies them (it panics in
    /// a build with overflow checks): the fuzz target's crash, and its neighbours.
    #[test]
    fn sides_too_large_to_multiply_are_refused_before_the_crate_sees_them() {
        let crash = b"YUV4MPEG2 W17 H8111111111111111115 \x01\x00\x01\n";
        assert_eq!(
            parse_header(crash),
            Err(SourceError::Size {
                width: 17,
                height: 8111111111111111115
            })
        );
        let max = usize::MAX;
        assert_eq!(
            parse_header(format!("YUV4MPEG2 W{max} H{max} F25:1\n").as_bytes()),
            Err(SourceError::Size {
                width: max,
                height: max
            })
        );
        // The last W wins, as in the crate: a huge first W followed by a valid one is fine.
        assert_eq!(
            parse_header(b"YUV4MPEG2 W99999999999 H240 W320 F25:1\n")
                .unwrap()
                .width,
            320
        );
        // A huge side with the other missing is a header error, not a size.
        assert!(matches!(
            parse_header(b"YUV4MPEG2 H99999999999999 F25:1\n"),
            Err(SourceError::BadHeader(_))
        ));
        assert!(matches!(
            parse_header(b"YUV4MPEG2 W18446744073709551616 H240\n"),
            Err(SourceError::BadHeader(_))
        ));
    }
}

#[cfg(test)]
mod stream_tests {
    use std::io::Write;

    use super::*;
    use crate::app::read_all;
    use crate::frame::Ring;

    /// A source over bytes written into a pipe (closed after writing).
    fn source(bytes: &[u8]) -> Result<Y4mSource, SourceError> {
        let (r, mut w) = std::io::pipe().unwrap();
        let bytes = bytes.to_vec();
        let t = std::thread::spawn(move || {
            let _ = w.write_all(&bytes);
        });
        let s = Y4mSource::open(OwnedFd::from(r));
        // On an error the writer may still be blocked on a full pipe: leave it to fail.
        if s.is_ok() {
            t.join().unwrap();
        }
        s
    }

    fn stream(frames: &[&[u8]]) -> Vec<u8> {
        let mut v = b"YUV4MPEG2 W16 H16 F15:1 Ip A1:1 C420jpeg\n".to_vec();
        for f in frames {
            v.extend_from_slice(b"FRAME\n");
            v.extend_from_slice(f);
        }
        v
    }

    #[test]
    fn a_truncated_frame_is_zeroized_and_reported_without_its_bytes() {
        let whole = [0xABu8; 256 + 128];
        let mut bytes = stream(&[&whole]);
        bytes.extend_from_slice(b"FRAME\n");
        bytes.extend_from_slice(&[0xCD; 200]);
        let mut src = source(&bytes).unwrap();
        let ring = Ring::new(16, 16);
        let e = read_all(&mut src, &ring).unwrap_err();
        assert_eq!(
            e,
            SourceError::Truncated {
                frame: 1,
                got: 200,
                want: 384
            }
        );
        assert!(!e.to_string().contains('\u{ab}') && !e.to_string().contains('\u{cd}'));
        // The whole frame waits for the pipeline; drain it, then every buffer must be zero.
        ring.end();
        let f = ring.next().unwrap();
        assert!(f.luma().iter().all(|&b| b == 0xAB));
        ring.done(f, true);
        assert!(
            ring.all_free_zero(),
            "the truncated frame's buffer was zeroized"
        );
    }

    #[test]
    fn a_bad_frame_header_or_a_new_stream_header_is_an_error_and_zeroized() {
        for (tail, want) in [
            (&b"FRAMX\n"[..], SourceError::BadFrameHeader { frame: 1 }),
            (
                &b"YUV4MPEG2 W32 H32 F15:1\n"[..],
                SourceError::SizeChanged { frame: 1 },
            ),
            (&[0xEEu8; 300][..], SourceError::BadFrameHeader { frame: 1 }),
        ] {
            let mut bytes = stream(&[&[7u8; 384]]);
            bytes.extend_from_slice(tail);
            let mut src = source(&bytes).unwrap();
            let ring = Ring::new(16, 16);
            assert_eq!(read_all(&mut src, &ring).unwrap_err(), want);
            ring.end();
            if let Some(f) = ring.next() {
                ring.done(f, true);
            }
            assert!(ring.all_free_zero());
        }
    }

    #[test]
    fn the_end_of_input_between_frames_is_a_clean_end_and_every_buffer_is_zero() {
        let mut src = source(&stream(&[
            &[1u8; 384],
            &[2u8; 384],
            &[3u8; 384],
            &[4u8; 384],
        ]))
        .unwrap();
        let ring = Ring::new(16, 16);
        read_all(&mut src, &ring).unwrap();
        ring.end();
        while let Some(f) = ring.next() {
            ring.done(f, true);
        }
        let (c, l) = ring.totals();
        assert_eq!(c.frames, 4);
        assert_eq!(l.count(), 4, "every frame's lifetime was measured");
        assert!(ring.all_free_zero());
    }

    #[test]
    fn headers_that_are_not_y4m_are_refused() {
        assert_eq!(source(b"").err(), Some(SourceError::Empty));
        assert_eq!(
            source(b"GIF89a...........\n").err(),
            Some(SourceError::NotY4m)
        );
        assert_eq!(source(&[b'Y'; 2000]).err(), Some(SourceError::NotY4m));
        let mut long = b"YUV4MPEG2 ".to_vec();
        long.extend(std::iter::repeat_n(b'X', 2000));
        assert_eq!(source(&long).err(), Some(SourceError::HeaderTooLong));
    }
}
