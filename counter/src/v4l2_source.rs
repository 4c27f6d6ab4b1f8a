//! Frames straight from a V4L2 device (`source = "v4l2"`, feature `v4l2`).
//!
//! The device is opened before the counter confines itself (Landlock forbids opening files
//! afterwards); the memory-mapped stream is started afterwards, on the reader thread. Each
//! dequeued buffer's luma is copied into a ring frame (YUYV: every other byte; GREY, NV12,
//! YU12: the first plane) and the buffer is handed back to the driver at once. The driver's
//! own buffers are the kernel's: like the pipe in front of a Y4M stream, they are outside the
//! frame-lifetime measure, which starts when the counter takes a frame.

use std::path::Path;

use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use crate::config::CameraConfig;
use crate::frame::{Frame, Ring};
use crate::y4m_source::{Geometry, SourceError};

/// An opened device and the format it agreed to.
pub struct V4l2Device {
    dev: Device,
    fourcc: [u8; 4],
    stride: usize,
    pub geometry: Geometry,
}

fn io(e: std::io::Error) -> SourceError {
    SourceError::Io(e.kind().to_string())
}

/// Opens the device and sets its format (before confinement).
pub fn open(cam: &CameraConfig, device: &Path) -> Result<V4l2Device, SourceError> {
    let dev = Device::with_path(device).map_err(io)?;
    let mut fmt = dev.format().map_err(io)?;
    if let Some(w) = cam.width {
        fmt.width = w;
    }
    if let Some(h) = cam.height {
        fmt.height = h;
    }
    fmt.fourcc = FourCC::new(b"YUYV");
    let fmt = dev.set_format(&fmt).map_err(io)?;
    let fourcc = fmt.fourcc.repr;
    if !matches!(&fourcc, b"YUYV" | b"GREY" | b"NV12" | b"YU12") {
        return Err(SourceError::BadHeader(
            "the camera delivers only compressed or unsupported frames; put `ffmpeg -f v4l2 -i DEVICE -f yuv4mpegpipe -pix_fmt yuv420p -` in front and use source = \"y4m\"",
        ));
    }
    let (width, height) = (fmt.width as usize, fmt.height as usize);
    if !(16..=crate::config::MAX_SIDE as usize).contains(&width)
        || !(16..=crate::config::MAX_SIDE as usize).contains(&height)
    {
        return Err(SourceError::Size { width, height });
    }
    let fps = cam.fps.unwrap_or(15) as usize;
    Ok(V4l2Device {
        dev,
        fourcc,
        stride: fmt.stride as usize,
        geometry: Geometry {
            width,
            height,
            fps: (fps, 1),
            chroma: 0,
        },
    })
}

impl V4l2Device {
    /// Streams frames into the ring until the device fails (after confinement).
    pub fn read_all(&self, ring: &Ring) -> Result<(), SourceError> {
        let mut stream = Stream::with_buffers(&self.dev, Type::VideoCapture, 4).map_err(io)?;
        loop {
            let mut f = ring.take_free();
            let (buf, _meta) = match stream.next() {
                Ok(b) => b,
                Err(e) => {
                    ring.abandon(f);
                    return Err(io(e));
                }
            };
            f.born_now();
            if self.copy_luma(buf, &mut f) {
                ring.publish(f);
            } else {
                ring.abandon(f);
                return Err(SourceError::Truncated {
                    frame: 0,
                    got: buf.len(),
                    want: self.stride * self.geometry.height,
                });
            }
        }
    }

    fn copy_luma(&self, buf: &[u8], f: &mut Frame) -> bool {
        let (w, h) = (self.geometry.width, self.geometry.height);
        let bpp = if &self.fourcc == b"YUYV" { 2 } else { 1 };
        let stride = self.stride.max(w * bpp);
        if buf.len() < stride * (h - 1) + w * bpp {
            return false;
        }
        let luma = f.luma_mut();
        for y in 0..h {
            let row = &buf[y * stride..y * stride + w * bpp];
            let out = &mut luma[y * w..(y + 1) * w];
            if bpp == 2 {
                for (o, px) in out.iter_mut().zip(row.chunks_exact(2)) {
                    *o = px[0];
                }
            } else {
                out.copy_from_slice(row);
            }
        }
        true
    }
}
