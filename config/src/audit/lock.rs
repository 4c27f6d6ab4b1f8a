//! One process per audit log: `{data}/audit.lock`, `flock`ed by the process that has the log
//! open, so a CLI (`tellijn sensor …`, `tellijn headcounts import`) cannot fork the hash chain
//! of a running server.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::AuditError;

/// The locks this process holds, by lock file: a server stopped and started again in one
/// process (tests, the demo) shares its lock with whatever of the old one is still alive;
/// another process is refused.
static HELD: Mutex<Vec<(PathBuf, std::sync::Weak<File>)>> = Mutex::new(Vec::new());

/// `{data}/audit.lock`, locked (`flock`) by this process, or [`AuditError::Held`].
pub(super) fn lock(data_dir: &Path, dir: &Path) -> Result<Arc<File>, AuditError> {
    let io = |source| AuditError::Io {
        dir: dir.to_path_buf(),
        source,
    };
    let path = data_dir.join("audit.lock");
    let key = data_dir.canonicalize().map_err(io)?.join("audit.lock");
    let mut held = HELD.lock().unwrap_or_else(|p| p.into_inner());
    held.retain(|(_, w)| w.strong_count() > 0);
    if let Some(f) = held
        .iter()
        .find(|(p, _)| *p == key)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(f);
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(AuditError::Held {
                dir: dir.to_path_buf(),
                lock: path,
            });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let file = Arc::new(file);
    held.push((key, Arc::downgrade(&file)));
    Ok(file)
}
