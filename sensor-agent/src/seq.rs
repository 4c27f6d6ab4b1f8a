//! The next sequence number, kept in `{outbox}/seq` so it survives restarts. The number is
//! written and fsync'd *before* a message with it is published, so a crash can skip a number
//! (a gap the server counts) but never reuse one (which the server would drop as a duplicate).

use std::io::Write;
use std::path::{Path, PathBuf};

/// A persistent counter.
pub struct SeqFile {
    path: PathBuf,
    next: u64,
}

impl SeqFile {
    /// Opens `{dir}/seq`, creating the directory; starts at 1 when there is no file.
    pub fn open(dir: &Path) -> std::io::Result<SeqFile> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("seq");
        let next = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().parse::<u64>().map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} does not hold a number; delete it only if the sensor was also removed from the server", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 1,
            Err(e) => return Err(e),
        };
        Ok(SeqFile { path, next })
    }

    /// Takes the next number, durably.
    pub fn take(&mut self) -> std::io::Result<u64> {
        let n = self.next;
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all((n + 1).to_string().as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.next = n + 1;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SeqFile::open(dir.path()).unwrap();
        assert_eq!(s.take().unwrap(), 1);
        assert_eq!(s.take().unwrap(), 2);
        let mut s = SeqFile::open(dir.path()).unwrap();
        assert_eq!(s.take().unwrap(), 3);
        std::fs::write(dir.path().join("seq"), "x").unwrap();
        assert!(SeqFile::open(dir.path()).is_err());
    }
}
