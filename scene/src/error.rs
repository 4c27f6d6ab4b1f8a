//! What can go wrong when generating or writing a scene.

use std::io;

/// A scene could not be generated or written.
#[derive(Debug, thiserror::Error)]
pub enum SceneError {
    /// The spec is wrong; every problem found is listed, one sentence each.
    #[error("the scene spec is invalid: {}", .0.join(" "))]
    Invalid(Vec<String>),
    /// Writing the Y4M stream failed (for instance the reader closed the pipe).
    #[error("writing the Y4M stream failed: {0}")]
    Write(#[from] io::Error),
}
