//! A fresh outbox meets the server's watermark.
//!
//! An outbox created empty (a new SD card, a reinstall) starts again at seq 1, but the server
//! may already have stored seqs 1…W of this sensor from the outbox it replaced: sent as they
//! are, the new messages would be dropped as duplicates and acknowledged, and the agent would
//! delete them — counted by nobody. So an outbox created empty is marked `fresh`; the agent
//! sends nothing until the first `ack` of a connection has arrived (the server keeps one
//! retained for every configured sensor, 0 before its first message); with a fresh outbox that
//! first ack renumbers every record to continue at W + 1, and only then is the mark removed.
//!
//! The renumbering is crash-safe: the new segments are written and fsync'd in `.renumber/`,
//! then `.renumber/commit` (holding W) is written and fsync'd — the commit point — and only
//! then are the old segments replaced. At open a committed `.renumber/` is finished, an
//! uncommitted one removed (the old segments and the mark are still there).

use std::fs::File;
use std::io::Write;
use std::path::Path;

use tellijn_wire::CountMessage;

use super::{OutboxError, SEGMENT_BYTES, encode, io_err, scan};

/// The mark of an outbox that has not yet met the server's watermark.
pub(super) const FRESH: &str = "fresh";
const DIR: &str = ".renumber";
const COMMIT: &str = "commit";

fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    tellijn_durable::sync_dir(dir).map_err(io_err(dir))
}

/// Writes `text` to `dir/name` crash-safely ([`tellijn_durable::write_atomic`]).
pub(super) fn write_atomic(dir: &Path, name: &str, text: &str) -> Result<(), OutboxError> {
    let path = dir.join(name);
    tellijn_durable::write_atomic(&path, text.as_bytes()).map_err(io_err(&path))
}

/// Creates the fresh mark, durably.
pub(super) fn mark_fresh(dir: &Path) -> Result<(), OutboxError> {
    write_atomic(
        dir,
        FRESH,
        "this outbox has not yet met the server's ack watermark\n",
    )
}

/// Removes the fresh mark, durably.
pub(super) fn unmark_fresh(dir: &Path) -> Result<(), OutboxError> {
    let fresh = dir.join(FRESH);
    match std::fs::remove_file(&fresh) {
        Ok(()) => sync_dir(dir),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(&fresh)(e)),
    }
}

/// Finishes or undoes a renumbering a crash interrupted (see the module docs).
pub(super) fn recover(dir: &Path) -> Result<(), OutboxError> {
    let work = dir.join(DIR);
    if !work.exists() {
        return Ok(());
    }
    let commit = std::fs::read_to_string(work.join(COMMIT))
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    match commit {
        Some(watermark) => finish(dir, watermark),
        None => std::fs::remove_dir_all(&work).map_err(io_err(&work)),
    }
}

/// Rewrites every record of the fresh outbox in `dir` (in seq order, from `records`) to
/// continue above `watermark`, up to the commit point, then finishes; returns how many records
/// could not be renumbered (a payload that no longer parses; none are expected) and were
/// dropped.
pub(super) fn renumber(
    dir: &Path,
    records: Vec<(u64, Vec<u8>)>,
    watermark: u64,
) -> Result<u64, OutboxError> {
    let dropped = prepare(dir, records, watermark)?;
    finish(dir, watermark)?;
    Ok(dropped)
}

/// [`renumber`] up to and including its commit point.
pub(super) fn prepare(
    dir: &Path,
    records: Vec<(u64, Vec<u8>)>,
    watermark: u64,
) -> Result<u64, OutboxError> {
    let work = dir.join(DIR);
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(io_err(&work))?;
    }
    std::fs::create_dir(&work).map_err(io_err(&work))?;
    let mut next = watermark + 1;
    let mut dropped = 0;
    let mut buf = Vec::new();
    let mut first = next;
    let flush = |buf: &mut Vec<u8>, first: u64| -> Result<(), OutboxError> {
        if buf.is_empty() {
            return Ok(());
        }
        let path = work.join(format!("seg-{first:020}.log"));
        let mut f = File::create(&path).map_err(io_err(&path))?;
        f.write_all(buf).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        buf.clear();
        Ok(())
    };
    for (_, payload) in records {
        let Ok(mut msg) = CountMessage::parse(&payload) else {
            dropped += 1;
            continue;
        };
        match &mut msg {
            CountMessage::Line(l) => l.seq = next,
            CountMessage::Zone(z) => z.seq = next,
        }
        let json = msg.to_json();
        if buf.len() as u64 + json.len() as u64 + 16 > SEGMENT_BYTES {
            flush(&mut buf, first)?;
            first = next;
        }
        encode(next, &json, &mut buf);
        next += 1;
    }
    flush(&mut buf, first)?;
    sync_dir(&work)?;
    write_atomic(&work, COMMIT, &format!("{watermark}\n"))?;
    Ok(dropped)
}

/// After the commit point: the renumbered segments replace the old ones, the watermark is
/// recorded and the fresh mark removed.
fn finish(dir: &Path, watermark: u64) -> Result<(), OutboxError> {
    let work = dir.join(DIR);
    for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("seg-") && name.ends_with(".log") {
            std::fs::remove_file(e.path()).map_err(io_err(&e.path()))?;
        }
    }
    for e in std::fs::read_dir(&work).map_err(io_err(&work))?.flatten() {
        let name = e.file_name();
        if name.to_string_lossy().starts_with("seg-") {
            let to = dir.join(&name);
            std::fs::rename(e.path(), &to).map_err(io_err(&to))?;
        }
    }
    write_atomic(dir, "acked", &watermark.to_string())?;
    let fresh = dir.join(FRESH);
    if fresh.exists() {
        std::fs::remove_file(&fresh).map_err(io_err(&fresh))?;
    }
    sync_dir(dir)?;
    std::fs::remove_dir_all(&work).map_err(io_err(&work))?;
    sync_dir(dir)
}

/// Scans every segment file of `dir` in order (for renumbering).
pub(super) fn all_records(
    paths: impl Iterator<Item = std::path::PathBuf>,
) -> Result<Vec<(u64, Vec<u8>)>, OutboxError> {
    let mut out = Vec::new();
    for p in paths {
        let (records, _, _) = scan(&p).map_err(io_err(&p))?;
        out.extend(records);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::{Outbox, ServerAck};
    use super::*;
    use chrono::{DateTime, TimeDelta};
    use tellijn_wire::LineCount;

    fn fill(ob: &mut Outbox, n: u64) {
        let msgs: Vec<_> = (0..n)
            .map(|i| {
                let seq = ob.next_seq() + i;
                let start = DateTime::from_timestamp(1_800_000_000 + seq as i64, 0).unwrap();
                CountMessage::Line(LineCount {
                    sensor: "s".into(),
                    line: "main".into(),
                    seq,
                    start,
                    end: start + TimeDelta::seconds(1),
                    people_in: 1,
                    people_out: 0,
                })
            })
            .collect();
        ob.append(&msgs).unwrap();
    }

    /// Every record's header seq and payload seq, in order.
    fn seqs(ob: &Outbox) -> Vec<(u64, u64)> {
        ob.read_from(0, usize::MAX)
            .unwrap()
            .into_iter()
            .map(|(seq, p)| (seq, CountMessage::parse(&p).unwrap().seq()))
            .collect()
    }

    /// Regression (issue 17, finding 1): an agent whose outbox was replaced started again at
    /// seq 1, and the server dropped and acknowledged everything it counted afterwards.
    #[test]
    fn a_replaced_outbox_continues_above_the_servers_watermark() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        assert!(ob.is_fresh());
        // Counted offline, before the first connect: seqs 1..=7, like the old outbox's.
        fill(&mut ob, 7);
        drop(ob);
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        assert!(
            ob.is_fresh(),
            "the mark survives a restart before the first ack"
        );
        assert_eq!(
            ob.server_ack(20).unwrap(),
            ServerAck::Resynced {
                first: 21,
                count: 7
            }
        );
        assert!(!ob.is_fresh());
        let want: Vec<(u64, u64)> = (21..=27).map(|s| (s, s)).collect();
        assert_eq!(seqs(&ob), want);
        assert_eq!((ob.acked(), ob.next_seq(), ob.depth()), (20, 28, 7));
        fill(&mut ob, 1);
        drop(ob);
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        assert!(!ob.is_fresh());
        assert_eq!(ob.next_seq(), 29);
        // From now on acks are ordinary.
        assert_eq!(ob.server_ack(25).unwrap(), ServerAck::Acked);
        assert_eq!(ob.depth(), 3);
    }

    #[test]
    fn a_new_sensor_keeps_its_seqs_and_an_empty_fresh_outbox_jumps() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        fill(&mut ob, 3);
        // A new sensor: the server holds nothing (ack 0).
        assert_eq!(
            ob.server_ack(0).unwrap(),
            ServerAck::Resynced { first: 1, count: 3 }
        );
        assert_eq!(seqs(&ob), vec![(1, 1), (2, 2), (3, 3)]);
        assert!(!Outbox::open(dir.path(), 1 << 30).unwrap().is_fresh());
        // An empty fresh outbox simply starts above the watermark.
        let other = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(other.path(), 1 << 30).unwrap();
        ob.server_ack(41).unwrap();
        assert_eq!(ob.next_seq(), 42);
        assert_eq!(Outbox::open(other.path(), 1 << 30).unwrap().next_seq(), 42);
    }

    #[test]
    fn an_outbox_that_is_not_fresh_moves_past_a_watermark_beyond_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        ob.server_ack(0).unwrap();
        fill(&mut ob, 5);
        assert_eq!(ob.server_ack(2).unwrap(), ServerAck::Acked);
        assert_eq!(
            ob.server_ack(100).unwrap(),
            ServerAck::AheadOfOutbox {
                watermark: 100,
                unsent: 3
            }
        );
        assert_eq!((ob.next_seq(), ob.acked()), (101, 100));
        assert_eq!(Outbox::open(dir.path(), 1 << 30).unwrap().next_seq(), 101);
    }

    /// A crash during the renumbering: before the commit point the old records and the mark
    /// stay (and the next ack renumbers again); after it, opening finishes the swap.
    #[test]
    fn a_crash_while_renumbering_is_undone_or_finished() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        fill(&mut ob, 4);
        let records = ob.read_from(0, usize::MAX).unwrap();
        drop(ob);
        // Uncommitted: segments half written.
        std::fs::create_dir(dir.path().join(DIR)).unwrap();
        std::fs::write(
            dir.path().join(DIR).join("seg-00000000000000000011.log"),
            b"torn",
        )
        .unwrap();
        let ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        assert!(ob.is_fresh());
        assert!(!dir.path().join(DIR).exists());
        assert_eq!(seqs(&ob), vec![(1, 1), (2, 2), (3, 3), (4, 4)]);
        drop(ob);
        // Committed, then the crash: the next open finishes.
        prepare(dir.path(), records, 10).unwrap();
        let ob = Outbox::open(dir.path(), 1 << 30).unwrap();
        assert!(!ob.is_fresh());
        assert_eq!(seqs(&ob), vec![(11, 11), (12, 12), (13, 13), (14, 14)]);
        assert_eq!((ob.acked(), ob.next_seq()), (10, 15));
    }
}
