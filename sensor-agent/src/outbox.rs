//! The durable outbox: every count message is appended here, and fsync'd, *before* it is
//! published; it leaves only when the server's `ack` watermark covers its seq.
//!
//! On disk: `{outbox}/seg-{first_seq:020}.log` segment files of records
//! `[len u32 LE][crc32 u32 LE][seq u64 LE][payload]` (CRC over seq and payload), rotated at
//! [`SEGMENT_BYTES`], plus `{outbox}/acked` holding the last known watermark (a hint: losing it
//! only means resending what the server will drop as duplicates; replaced through a temporary
//! file and a rename, so never torn, but not fsync'd after every ack).
//!
//! An outbox created empty is marked `fresh` until the server's first ack: then its records are
//! renumbered to continue above the server's watermark ([`resync`]), so a camera whose outbox
//! was replaced does not start again at seq 1 into seqs the server already holds.
//!
//! The outbox assigns seqs: the next seq is one past the last intact record, so a crash before
//! a record is durable reuses its seq for the next message (it was never published), and a
//! crash after never reuses one. A torn or corrupt tail (power cut mid-write) is detected by
//! length and CRC on open, reported, and cut off; earlier records are kept.
//!
//! What a power cut can lose: nothing that was published (publishing follows the fsync); only
//! the readings of the interval being aggregated when power went, which never became a message.
//!
//! Bounded: past `max_bytes` the oldest never-sent records are merged (line counts summed over
//! windows of up to 15 minutes, zone readings thinned to the latest per zone and window); only
//! if that is not enough is the oldest segment dropped, and every drop is counted.
//!
//! Memory: only a per-segment index is held, never the messages, so a long outage costs disk,
//! not RAM.

use std::collections::{BTreeMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, TimeDelta, Utc};
use tellijn_wire::count::MAX_INTERVAL;
use tellijn_wire::{CountMessage, LineCount, ZoneCount};

mod resync;

/// Segments are rotated at this size.
pub const SEGMENT_BYTES: u64 = 1 << 20;
const HEADER: usize = 16;
const MAX_RECORD: usize = 1024;

/// Errors of the outbox.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(
        "outbox {path}: {source}; check that the outbox directory is writable and the disk not full"
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("internal error: message seq {got} where the outbox expected {want}")]
    Seq { got: u64, want: u64 },
}

#[derive(Debug, Clone)]
struct Segment {
    path: PathBuf,
    first_seq: u64,
    last_seq: u64,
    bytes: u64,
    records: u64,
    first_time: Option<DateTime<Utc>>,
}

/// Counters an auditor and the status topic see.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStats {
    /// Bytes cut off torn or corrupt tails since start.
    pub corrupt_bytes: u64,
    /// Records merged into fewer, longer ones because the outbox was full.
    pub merged: u64,
    /// Records dropped because the outbox was full even after merging.
    pub dropped: u64,
}

/// The outbox of one sensor.
pub struct Outbox {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    active: Option<File>,
    next_seq: u64,
    acked: u64,
    max_bytes: u64,
    /// Records above this seq were never published in this process (merge candidates).
    sent_high: u64,
    merged_segments: std::collections::BTreeSet<u64>,
    /// Created empty and not yet past the server's first ack ([`resync`]).
    fresh: bool,
    pub stats: OutboxStats,
}

/// What the server's watermark did to the outbox ([`Outbox::server_ack`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAck {
    /// An ordinary acknowledgement.
    Acked,
    /// A fresh outbox met the watermark: its `count` records now carry seqs from `first`.
    Resynced { first: u64, count: u64 },
    /// The server has stored seqs this (not fresh) outbox never wrote: it was restored from
    /// elsewhere or another agent runs as this sensor. The outbox continues above `watermark`.
    AheadOfOutbox { watermark: u64, unsent: u64 },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn crc(seq: u64, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&seq.to_le_bytes());
    h.update(payload);
    h.finalize()
}

fn encode(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc(seq, payload).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// One record: its seq and payload.
pub type Record = (u64, Vec<u8>);

/// Reads records until the end or the first bad one; returns them, the length of the good
/// prefix and the file length.
fn scan(path: &Path) -> std::io::Result<(Vec<Record>, u64, u64)> {
    let file = File::open(path)?;
    let total = file.metadata()?.len();
    let mut r = BufReader::new(file);
    let mut out = Vec::new();
    let mut good = 0u64;
    let mut header = [0u8; HEADER];
    loop {
        match r.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e),
        }
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let mut seq_bytes = [0u8; 8];
        seq_bytes.copy_from_slice(&header[8..16]);
        let seq = u64::from_le_bytes(seq_bytes);
        if len > MAX_RECORD {
            break;
        }
        let mut payload = vec![0u8; len];
        if r.read_exact(&mut payload).is_err() || crc(seq, &payload) != sum {
            break;
        }
        good += (HEADER + len) as u64;
        out.push((seq, payload));
    }
    Ok((out, good, total))
}

fn message_time(payload: &[u8]) -> Option<DateTime<Utc>> {
    CountMessage::parse(payload).ok().map(|m| match m {
        CountMessage::Line(l) => l.start,
        CountMessage::Zone(z) => z.at,
    })
}

impl Outbox {
    /// Opens (creates) the outbox in `dir`, repairing a torn tail.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Outbox, OutboxError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        resync::recover(dir)?;
        let mut names: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let first = name
                    .strip_prefix("seg-")?
                    .strip_suffix(".log")?
                    .parse()
                    .ok()?;
                Some((first, e.path()))
            })
            .collect();
        names.sort();
        let acked_text = std::fs::read_to_string(dir.join("acked")).ok();
        let fresh = dir.join(resync::FRESH).exists() || (names.is_empty() && acked_text.is_none());
        if fresh && !dir.join(resync::FRESH).exists() {
            resync::mark_fresh(dir)?;
        }
        let acked = acked_text.and_then(|s| s.trim().parse().ok()).unwrap_or(0);
        let mut ob = Outbox {
            dir: dir.to_path_buf(),
            segments: VecDeque::new(),
            active: None,
            next_seq: 1,
            acked,
            max_bytes: max_bytes.max(SEGMENT_BYTES * 2),
            sent_high: acked,
            merged_segments: Default::default(),
            fresh,
            stats: OutboxStats::default(),
        };
        let n = names.len();
        for (i, (first, path)) in names.into_iter().enumerate() {
            let (records, good, total) = scan(&path).map_err(io_err(&path))?;
            if good < total {
                let cut = total - good;
                ob.stats.corrupt_bytes += cut;
                tracing::warn!(
                    "Outbox {}: {cut} bytes after the last intact record are torn or corrupt (power cut?); \
                     they are cut off, the {} records before them are kept.",
                    path.display(),
                    records.len()
                );
                let f = OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                f.set_len(good).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
            }
            if records.is_empty() && i + 1 < n {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let last_seq = records.last().map_or(first.saturating_sub(1), |r| r.0);
            ob.next_seq = ob.next_seq.max(last_seq + 1);
            ob.segments.push_back(Segment {
                path,
                first_seq: records.first().map_or(first, |r| r.0),
                last_seq,
                bytes: good,
                records: records.len() as u64,
                first_time: records.first().and_then(|r| message_time(&r.1)),
            });
        }
        ob.next_seq = ob.next_seq.max(acked + 1);
        Ok(ob)
    }

    /// The next seq and the watermark of the outbox in `dir`, read without opening it: nothing
    /// is repaired, created or deleted, so a running agent's outbox can be looked at (tests,
    /// an operator's inspection) without changing what is measured.
    pub fn peek(dir: &Path) -> Result<(u64, u64), OutboxError> {
        let acked = std::fs::read_to_string(dir.join("acked"))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0u64);
        let mut next = acked + 1;
        for e in std::fs::read_dir(dir).map_err(io_err(dir))?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("seg-") && name.ends_with(".log") {
                let (records, _, _) = scan(&e.path()).map_err(io_err(&e.path()))?;
                if let Some(last) = records.last() {
                    next = next.max(last.0 + 1);
                }
            }
        }
        Ok((next, acked))
    }

    /// The seq the next appended message must carry.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// The highest seq the server has acknowledged.
    pub fn acked(&self) -> u64 {
        self.acked
    }

    /// Whether the outbox was created empty and has not yet met the server's watermark.
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Applies a watermark the server published. Call it for every ack, and publish nothing
    /// after a (re)connect before the first one: a fresh outbox renumbers its records to
    /// continue above the watermark ([`resync`]), and a watermark above anything this outbox
    /// wrote moves its next seq past it, so new messages are never taken for duplicates.
    pub fn server_ack(&mut self, watermark: u64) -> Result<ServerAck, OutboxError> {
        if self.fresh && watermark == 0 {
            // A new sensor: the seqs stand as they are. The mark goes (durably: were it to
            // come back after a crash, a later first ack would renumber records that had been
            // sent and stored) before anything is sent.
            let count = self.next_seq - 1;
            resync::unmark_fresh(&self.dir)?;
            self.fresh = false;
            return Ok(ServerAck::Resynced { first: 1, count });
        }
        if self.fresh {
            let stats = self.stats;
            let records = resync::all_records(self.segments.iter().map(|s| s.path.clone()))?;
            let count = records.len() as u64;
            self.active = None;
            let dropped = resync::renumber(&self.dir, records, watermark)?;
            let mut again = Outbox::open(&self.dir, self.max_bytes)?;
            again.stats = stats;
            again.stats.dropped += dropped;
            *self = again;
            return Ok(ServerAck::Resynced {
                first: watermark + 1,
                count: count - dropped,
            });
        }
        if watermark >= self.next_seq {
            let unsent = self.next_seq - 1 - self.acked.min(self.next_seq - 1);
            self.next_seq = watermark + 1;
            self.ack(watermark)?;
            return Ok(ServerAck::AheadOfOutbox { watermark, unsent });
        }
        self.ack(watermark)?;
        Ok(ServerAck::Acked)
    }

    /// Messages waiting for the server's acknowledgement.
    pub fn depth(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| {
                if s.first_seq > self.acked {
                    s.records
                } else {
                    s.last_seq.saturating_sub(self.acked).min(s.records)
                }
            })
            .sum()
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Age of the oldest unacknowledged message, by its own timestamp.
    pub fn oldest_unsent(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        let s = self
            .segments
            .iter()
            .find(|s| s.last_seq > self.acked && s.records > 0)?;
        if s.first_seq > self.acked {
            s.first_time.map(|t| now - t)
        } else {
            let (records, _, _) = scan(&s.path).ok()?;
            let first = records.iter().find(|r| r.0 > self.acked)?;
            message_time(&first.1).map(|t| now - t)
        }
    }

    /// Appends messages (seqs `next_seq()`, `next_seq()+1`, …) and fsyncs once.
    pub fn append(&mut self, msgs: &[CountMessage]) -> Result<(), OutboxError> {
        if msgs.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::with_capacity(msgs.len() * 220);
        let mut want = self.next_seq;
        for m in msgs {
            if m.seq() != want {
                return Err(OutboxError::Seq { got: m.seq(), want });
            }
            encode(m.seq(), &m.to_json(), &mut buf);
            want += 1;
        }
        let rotate = self
            .segments
            .back()
            .is_none_or(|s| s.bytes + buf.len() as u64 > SEGMENT_BYTES);
        if rotate || self.active.is_none() {
            if rotate {
                let path = self.dir.join(format!("seg-{:020}.log", self.next_seq));
                self.segments.push_back(Segment {
                    path,
                    first_seq: self.next_seq,
                    last_seq: self.next_seq - 1,
                    bytes: 0,
                    records: 0,
                    first_time: message_time(&msgs[0].to_json()),
                });
            }
            let Some(seg) = self.segments.back() else {
                unreachable!("a segment was just ensured")
            };
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&seg.path)
                .map_err(io_err(&seg.path))?;
            if rotate {
                // Make the new file's name durable too.
                File::open(&self.dir)
                    .and_then(|d| d.sync_all())
                    .map_err(io_err(&self.dir))?;
            }
            self.active = Some(f);
        }
        let Some(seg) = self.segments.back_mut() else {
            unreachable!("a segment exists")
        };
        let Some(f) = self.active.as_mut() else {
            unreachable!("the active file was just opened")
        };
        f.write_all(&buf).map_err(io_err(&seg.path))?;
        f.sync_data().map_err(io_err(&seg.path))?;
        seg.bytes += buf.len() as u64;
        seg.records += msgs.len() as u64;
        seg.last_seq = want - 1;
        self.next_seq = want;
        if self.bytes() > self.max_bytes {
            self.make_room()?;
        }
        Ok(())
    }

    /// Up to `limit` records with seq ≥ `from`, in seq order.
    pub fn read_from(&self, from: u64, limit: usize) -> Result<Vec<Record>, OutboxError> {
        let mut out = Vec::new();
        for s in self
            .segments
            .iter()
            .filter(|s| s.last_seq >= from && s.records > 0)
        {
            let (records, _, _) = scan(&s.path).map_err(io_err(&s.path))?;
            for r in records.into_iter().filter(|r| r.0 >= from) {
                out.push(r);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
        Ok(out)
    }

    /// Notes that records up to `seq` were published in this process.
    pub fn mark_sent(&mut self, seq: u64) {
        self.sent_high = self.sent_high.max(seq);
    }

    /// Applies the server's watermark: deletes fully acknowledged segments (never the newest,
    /// which carries the next seq across restarts).
    pub fn ack(&mut self, seq: u64) -> Result<(), OutboxError> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq.min(self.next_seq.saturating_sub(1)).max(self.acked);
        // A hint, written after every ack: replaced whole, but not fsync'd each time.
        let path = self.dir.join("acked");
        tellijn_durable::replace_unsynced(&path, self.acked.to_string().as_bytes())
            .map_err(io_err(&path))?;
        while self.segments.len() > 1
            && self
                .segments
                .front()
                .is_some_and(|s| s.last_seq <= self.acked)
        {
            if let Some(s) = self.segments.pop_front() {
                std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
            }
        }
        Ok(())
    }

    /// Over the size limit: merge the oldest never-sent segments, then drop if still needed.
    fn make_room(&mut self) -> Result<(), OutboxError> {
        let candidates: Vec<usize> = (0..self.segments.len().saturating_sub(1))
            .filter(|&i| {
                let s = &self.segments[i];
                s.first_seq > self.sent_high && !self.merged_segments.contains(&s.first_seq)
            })
            .collect();
        for i in candidates {
            if self.bytes() <= self.max_bytes {
                return Ok(());
            }
            self.merge_segment(i)?;
        }
        while self.bytes() > self.max_bytes && self.segments.len() > 1 {
            let Some(s) = self.segments.pop_front() else {
                break;
            };
            self.stats.dropped += s.records;
            tracing::error!(
                "Outbox full ({} bytes > {}): dropped {} messages, seq {}..={}; the server will count the gap.",
                self.bytes() + s.bytes,
                self.max_bytes,
                s.records,
                s.first_seq,
                s.last_seq
            );
            std::fs::remove_file(&s.path).map_err(io_err(&s.path))?;
        }
        Ok(())
    }

    fn merge_segment(&mut self, i: usize) -> Result<(), OutboxError> {
        let seg = self.segments[i].clone();
        let (records, _, _) = scan(&seg.path).map_err(io_err(&seg.path))?;
        let merged = merge(
            records
                .iter()
                .filter_map(|(_, p)| CountMessage::parse(p).ok())
                .collect(),
        );
        let mut buf = Vec::new();
        for m in &merged {
            encode(m.seq(), &m.to_json(), &mut buf);
        }
        let tmp = seg.path.with_extension("tmp");
        {
            let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
            f.write_all(&buf).map_err(io_err(&tmp))?;
            f.sync_all().map_err(io_err(&tmp))?;
        }
        std::fs::rename(&tmp, &seg.path).map_err(io_err(&seg.path))?;
        self.stats.merged += records.len() as u64 - merged.len() as u64;
        tracing::warn!(
            "Outbox over {} bytes: merged {} messages into {} (seq {}..={}).",
            self.max_bytes,
            records.len(),
            merged.len(),
            seg.first_seq,
            seg.last_seq
        );
        let s = &mut self.segments[i];
        s.bytes = buf.len() as u64;
        s.records = merged.len() as u64;
        self.merged_segments.insert(seg.first_seq);
        Ok(())
    }
}

/// Merges messages (in seq order): per line, consecutive intervals are summed while the result
/// spans at most 15 minutes; per zone, only the latest reading of each such window is kept.
/// A merged message carries the seq of the last message it absorbed, so seqs stay increasing.
pub fn merge(msgs: Vec<CountMessage>) -> Vec<CountMessage> {
    let mut lines: BTreeMap<String, LineCount> = BTreeMap::new();
    let mut zones: BTreeMap<String, ZoneCount> = BTreeMap::new();
    let mut zone_windows: BTreeMap<String, DateTime<Utc>> = BTreeMap::new();
    let mut out = Vec::new();
    for m in msgs {
        match m {
            CountMessage::Line(l) => match lines.get_mut(&l.line) {
                Some(acc)
                    if l.end - acc.start <= MAX_INTERVAL
                        && l.start >= acc.start
                        && l.end > acc.end =>
                {
                    acc.end = l.end;
                    acc.seq = l.seq;
                    acc.people_in = (acc.people_in + l.people_in).min(10_000);
                    acc.people_out = (acc.people_out + l.people_out).min(10_000);
                }
                _ => {
                    if let Some(prev) = lines.insert(l.line.clone(), l) {
                        out.push(CountMessage::Line(prev));
                    }
                }
            },
            CountMessage::Zone(z) => {
                let window = zone_windows.get(&z.zone).copied();
                match window {
                    Some(w) if z.at - w <= MAX_INTERVAL => {
                        zones.insert(z.zone.clone(), z);
                    }
                    _ => {
                        zone_windows.insert(z.zone.clone(), z.at);
                        if let Some(prev) = zones.insert(z.zone.clone(), z) {
                            out.push(CountMessage::Zone(prev));
                        }
                    }
                }
            }
        }
    }
    out.extend(lines.into_values().map(CountMessage::Line));
    out.extend(zones.into_values().map(CountMessage::Zone));
    out.sort_by_key(|m| m.seq());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, t0: i64, people_in: u32) -> CountMessage {
        let start = DateTime::from_timestamp(1_800_000_000 + t0, 0).unwrap();
        CountMessage::Line(LineCount {
            sensor: "s".into(),
            line: "main".into(),
            seq,
            start,
            end: start + TimeDelta::seconds(1),
            people_in,
            people_out: 0,
        })
    }

    fn fill(ob: &mut Outbox, n: u64) {
        let msgs: Vec<_> = (0..n)
            .map(|i| line(ob.next_seq() + i, (ob.next_seq() + i) as i64, 1))
            .collect();
        ob.append(&msgs).unwrap();
    }

    #[test]
    fn survives_reopen_and_acks_remove() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 100 << 20).unwrap();
        assert_eq!(ob.next_seq(), 1);
        fill(&mut ob, 10);
        assert_eq!(ob.depth(), 10);
        let ob2 = Outbox::open(dir.path(), 100 << 20).unwrap();
        assert_eq!(ob2.next_seq(), 11);
        assert_eq!(
            ob2.read_from(4, 3)
                .unwrap()
                .iter()
                .map(|r| r.0)
                .collect::<Vec<_>>(),
            [4, 5, 6]
        );
        let mut ob = ob2;
        ob.ack(7).unwrap();
        assert_eq!(ob.depth(), 3);
        let ob = Outbox::open(dir.path(), 100 << 20).unwrap();
        assert_eq!((ob.acked(), ob.next_seq(), ob.depth()), (7, 11, 3));
    }

    #[test]
    fn regression_truncated_tail_keeps_intact_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut ob = Outbox::open(dir.path(), 100 << 20).unwrap();
        fill(&mut ob, 5);
        let seg = ob.segments[0].path.clone();
        drop(ob);
        let len = std::fs::metadata(&seg).unwrap().len();
        // A power cut mid-record: the last record is half written.
        OpenOptions::new()
            .write(true)
            .open(&seg)
            .unwrap()
            .set_len(len - 30)
            .unwrap();
        let mut ob = Outbox::open(dir.path(), 100 << 20).unwrap();
        assert!(ob.stats.corrupt_bytes > 0);
        assert_eq!(ob.depth(), 4);
        assert_eq!(
            ob.next_seq(),
            5,
            "the torn record's seq was never published, so it is reused"
        );
        fill(&mut ob, 1);
        let seqs: Vec<u64> = ob.read_from(1, 100).unwrap().iter().map(|r| r.0).collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
        // A flipped byte (not a truncation) is caught by the CRC.
        drop(ob);
        let mut bytes = std::fs::read(&seg).unwrap();
        let n = bytes.len();
        bytes[n - 3] ^= 0xff;
        std::fs::write(&seg, bytes).unwrap();
        let ob = Outbox::open(dir.path(), 100 << 20).unwrap();
        assert_eq!(ob.depth(), 4);
    }

    #[test]
    fn full_outbox_merges_before_dropping() {
        let dir = tempfile::tempdir().unwrap();
        // The smallest limit is two segments; write four segments' worth.
        let mut ob = Outbox::open(dir.path(), 0).unwrap();
        let per_segment = SEGMENT_BYTES / 200;
        for _ in 0..4 {
            fill(&mut ob, per_segment);
        }
        assert!(
            ob.bytes() <= ob.max_bytes,
            "{} > {}",
            ob.bytes(),
            ob.max_bytes
        );
        assert!(ob.stats.merged > 0);
        // Everyone counted is still there: merging sums, it does not lose.
        let total: u64 = ob
            .read_from(0, usize::MAX)
            .unwrap()
            .iter()
            .map(|(_, p)| match CountMessage::parse(p).unwrap() {
                CountMessage::Line(l) => l.people_in as u64,
                CountMessage::Zone(_) => 0,
            })
            .sum();
        assert_eq!(total + ob.stats.dropped, ob.next_seq() - 1);
        assert_eq!(ob.stats.dropped, 0, "merging alone made room");
    }

    #[test]
    fn merge_respects_the_fifteen_minute_cap() {
        let msgs: Vec<_> = (1..=2000).map(|s| line(s, s as i64, 2)).collect();
        let merged = merge(msgs);
        assert!(merged.len() >= 2000 / 900);
        let mut sum = 0;
        let mut last = 0;
        for m in &merged {
            let CountMessage::Line(l) = m else { panic!() };
            assert!(l.end - l.start <= MAX_INTERVAL);
            assert!(m.seq() > last);
            last = m.seq();
            sum += l.people_in;
            assert!(CountMessage::parse(&m.to_json()).is_ok());
        }
        assert_eq!(sum, 4000);
    }
}
