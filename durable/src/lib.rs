//! # Crash-safe file writes
//!
//! Every file Tellijn's correctness depends on (processor state, day-start snapshots, sensor
//! statuses, rebuild markers, the agent's watermark, new history partitions) is written with
//! these two functions, so that after a power cut a file holds its old or its new content —
//! never a torn mix — and a file or directory that was reported written is still there.
//!
//! # Layout
//! - [`create_dir_all`]: creates missing directories and fsyncs the parent of each one it
//!   created (a new directory's name lives in its parent; without that fsync the first file of
//!   a new `date=…` partition can vanish after it was acknowledged).
//! - [`write_atomic`]: writes a temporary file beside the target, fsyncs it, renames it over
//!   the target, and fsyncs the directory.
//! - [`replace_unsynced`]: the same without the fsyncs, for frequently written hints: never
//!   torn, but a power cut may keep the previous content.
//! - [`sync_dir`]: fsyncs a directory (after a rename or remove in it).
//! - [`crash`]: named crash points for the fault-injection tests (feature `crash-points`).
//!
//! Errors are `std::io::Error`s whose message names the path and the operation, so callers
//! can pass them on as they are.
//!
//! Depends on nothing but `std`: the sensor agent uses it too and must stay small.

pub mod crash;

use std::fs::File;
use std::io::{Error, Write};
use std::path::Path;

fn with_path<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(Error) -> Error + 'a {
    move |e| Error::new(e.kind(), format!("cannot {op} {}: {e}", path.display()))
}

/// Fsyncs the directory `dir`.
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(with_path("sync the directory", dir))
}

/// Creates `dir` and its missing parents; fsyncs the parent of every directory it created.
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    // The missing ancestors, deepest last.
    let mut missing = Vec::new();
    let mut at = Some(dir);
    while let Some(d) = at {
        if d.as_os_str().is_empty() || d.is_dir() {
            break;
        }
        missing.push(d);
        at = d.parent();
    }
    for d in missing.into_iter().rev() {
        match std::fs::create_dir(d) {
            Ok(()) => {}
            // Created meanwhile by someone else: its parent is theirs to sync, but syncing
            // again costs little and keeps this call's promise.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && d.is_dir() => {}
            Err(e) => return Err(with_path("create the directory", d)(e)),
        }
        let parent = match d.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        sync_dir(parent)?;
    }
    Ok(())
}

/// Replaces `path` with `bytes` through a temporary file and a rename, without forcing either
/// to disk: readers and a crash see the old or the new content, never a torn mix, but a power
/// cut may keep the old one. For hints written often (the agent's watermark after every ack),
/// where an fsync each time would cost more than losing the latest value.
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    std::fs::write(&tmp, bytes).map_err(with_path("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        with_path("rename a temporary file to", path)(e)
    })
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Writes `bytes` to `path` crash-safely: parents created (durably), a temporary file beside
/// it written and fsync'd, renamed over `path`, the directory fsync'd.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", file_name(path)));
    let written = File::create(&tmp)
        .map_err(with_path("create", &tmp))
        .and_then(|mut f| {
            f.write_all(bytes).map_err(with_path("write", &tmp))?;
            f.sync_all().map_err(with_path("sync", &tmp))
        });
    if let Err(e) = written {
        // A full disk must not keep a half-written temporary file.
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    crash::point("atomic-write.before-rename");
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        with_path("rename a temporary file to", path)(e)
    })?;
    crash::point("atomic-write.before-dir-sync");
    sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_replace_whole_and_create_parents() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/c/state.json");
        write_atomic(&path, b"one").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"two, longer").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two, longer");
        // No temporary file is left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("state.json")]);
    }

    #[test]
    fn errors_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        // A file where a directory must go.
        std::fs::write(dir.path().join("f"), b"").unwrap();
        let e = write_atomic(&dir.path().join("f/x.json"), b"x").unwrap_err();
        assert!(e.to_string().contains("f"), "{e}");
        assert!(e.to_string().starts_with("cannot "), "{e}");
        let e = create_dir_all(&dir.path().join("f/g")).unwrap_err();
        assert!(e.to_string().contains("create the directory"), "{e}");
    }

    #[test]
    fn an_unsynced_replacement_is_whole_too() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acked");
        replace_unsynced(&path, b"12").unwrap();
        replace_unsynced(&path, b"7").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"7");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn an_existing_directory_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        create_dir_all(dir.path()).unwrap();
        create_dir_all(&dir.path().join("x/y")).unwrap();
        create_dir_all(&dir.path().join("x/y")).unwrap();
        assert!(dir.path().join("x/y").is_dir());
    }
}
