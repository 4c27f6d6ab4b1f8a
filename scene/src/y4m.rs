//! The YUV4MPEG2 stream: an 8-bit 4:2:0 (`C420jpeg`) header, then per frame `FRAME\n`, the luma
//! plane and two chroma planes of constant 128 (the scenes are grey).

use std::io::{self, Write};

/// Writes Y4M frames of a fixed size to `out`.
pub struct Y4mWriter<W: Write> {
    out: W,
    luma_len: usize,
    chroma: Vec<u8>,
}

impl<W: Write> Y4mWriter<W> {
    /// Writes the stream header. `width` and `height` must be even.
    pub fn new(mut out: W, width: u32, height: u32, fps: u32) -> io::Result<Self> {
        writeln!(
            out,
            "YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg"
        )?;
        let chroma_len = (width as usize / 2) * (height as usize / 2);
        Ok(Y4mWriter {
            out,
            luma_len: width as usize * height as usize,
            chroma: vec![128; 2 * chroma_len],
        })
    }

    /// Writes one frame given its luma plane (`width × height` bytes).
    pub fn frame(&mut self, luma: &[u8]) -> io::Result<()> {
        if luma.len() != self.luma_len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "a luma plane of {} bytes was given for frames of {} pixels (this is a bug)",
                    luma.len(),
                    self.luma_len
                ),
            ));
        }
        self.out.write_all(b"FRAME\n")?;
        self.out.write_all(luma)?;
        self.out.write_all(&self.chroma)
    }

    /// Flushes what has been written (for paced, live output).
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The writer, after flushing.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_frame_layout_are_exact() {
        let mut w = Y4mWriter::new(Vec::new(), 4, 2, 15).unwrap();
        w.frame(&[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        let bytes = w.finish().unwrap();
        let mut want = b"YUV4MPEG2 W4 H2 F15:1 Ip A1:1 C420jpeg\nFRAME\n".to_vec();
        want.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8, 128, 128, 128, 128]);
        assert_eq!(bytes, want);
    }

    #[test]
    fn a_wrong_plane_size_is_refused() {
        let mut w = Y4mWriter::new(Vec::new(), 4, 2, 15).unwrap();
        assert!(
            w.frame(&[0; 7])
                .unwrap_err()
                .to_string()
                .contains("7 bytes")
        );
    }
}
