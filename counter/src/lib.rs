//! # tellijn-counter
//!
//! Turns camera frames into anonymous counts on the camera computer, and never touches the
//! network: no crate of it can open a socket, and the process forbids itself to (seccomp,
//! Landlock) before it reads the first frame.
//!
//! # Layout
//! In the order data meets it:
//! - `config`: `counter.toml`.
//! - `y4m_source`: Y4M frames from stdin, luma straight into the ring; chroma discarded.
//!   `v4l2_source` (feature `v4l2`): a V4L2 device's luma into the ring.
//! - `frame`: the ring of preallocated frame buffers, zeroized on reuse and exit; lifetimes.
//! - `detect`: background model, foreground, morphology, components, blob splitting.
//! - `track`: tracks across frames (Hungarian assignment).
//! - `count`: line crossings with hysteresis, zones.
//! - `pipeline`: the loop and the stdout lines (counts and status).
//! - `view`, `calibrate`: the installer's view at privacy level 3, and calibration.
//! - `sandbox`: the confinement. `alloc`: a zeroizing global allocator.
//! - `app`: the command.

pub mod alloc;
pub mod app;
pub mod calibrate;
pub mod config;
pub mod count;
pub mod detect;
pub mod frame;
pub mod pipeline;
pub mod sandbox;
pub mod track;
#[cfg(feature = "v4l2")]
pub mod v4l2_source;
pub mod view;
pub mod y4m_source;
