//! The janitor: a thread beside the processors' loop for the slow file work — day-start
//! snapshots, compaction and the rebuild of finished days, deletion past retention.
//!
//! - Jobs arrive through a bounded queue ([`QUEUE`]). Jobs that must happen (a snapshot, the
//!   day's retention sweep) wait in the loop's own list while the queue is full and are sent
//!   at the next tick; a rebuild pass is only queued while none is queued or running, so a
//!   slow disk makes passes rarer instead of piling them up. Nothing here makes the loop wait.
//! - Jobs run one at a time, in the order queued: a day's snapshot is on disk before that day
//!   can be rebuilt.
//! - A flush and a job never work on the same days at once ([`DayLocks`]): compacting day D
//!   while a flush writes late rows into D would lose them in the swap. The flush waits on its
//!   own blocking thread; under steady load (today's rows) it never meets a job (a finished
//!   day), so the rebuild runs however busy the loop is.
//! - Metrics: `tellijn_queue_depth{stage="housekeeping"}`, and per job
//!   `tellijn_housekeeping_duration_seconds` and `tellijn_housekeeping_failures_total`.
//! - At shutdown the queued jobs are finished and the thread is joined
//!   ([`Janitor::shutdown`]), so a restart in the same process never meets a job still running.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tellijn_config::metrics::{JobLabels, StageLabels, job, stage};
use tellijn_config::{AuditEvent, AuditLog, Campus, Metrics};
use tellijn_durable::crash;

use crate::{occupancy, rebuild, retention, schema};

/// Jobs the queue holds before the loop keeps them itself.
pub(crate) const QUEUE: usize = 16;

/// What the janitor works with.
pub(crate) struct Context {
    pub data_dir: PathBuf,
    pub campus: Arc<Campus>,
    pub tz: chrono_tz::Tz,
    pub audit: Arc<AuditLog>,
    pub metrics: Metrics,
    /// The highest flush number handed out, shared with the flushes.
    pub numbers: Arc<AtomicU64>,
    pub locks: Arc<DayLocks>,
}

/// A job for the janitor.
pub(crate) enum Job {
    /// Save the engine state `day` (UTC) starts from.
    Snapshot { day: NaiveDate, state: Vec<u8> },
    /// Delete the partitions past retention at `now`, each deletion audited.
    Retention { now: DateTime<Utc> },
    /// Compact and rebuild every finished day that is due at `now`.
    Rebuild { now: DateTime<Utc> },
    /// Answered once every job queued before it is done.
    Barrier(std::sync::mpsc::Sender<()>),
}

impl Job {
    fn name(&self) -> &'static str {
        match self {
            Job::Snapshot { .. } => job::SNAPSHOT,
            Job::Retention { .. } => job::RETENTION,
            Job::Rebuild { .. } | Job::Barrier(_) => job::REBUILD,
        }
    }
}

/// Ranges of UTC days (inclusive) someone is writing; [`DayLocks::lock`] waits until a range
/// overlaps none of them.
#[derive(Default)]
pub(crate) struct DayLocks {
    held: Mutex<Vec<(u64, NaiveDate, NaiveDate)>>,
    freed: Condvar,
    next: AtomicU64,
}

/// Held days, released on drop.
pub(crate) struct DayGuard {
    locks: Arc<DayLocks>,
    id: u64,
}

impl DayLocks {
    /// Takes the days `lo..=hi`, waiting (on this thread) while another holder has any of them.
    pub(crate) fn lock(self: &Arc<Self>, (lo, hi): (NaiveDate, NaiveDate)) -> DayGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while held.iter().any(|&(_, l, h)| l <= hi && lo <= h) {
            held = self.freed.wait(held).unwrap_or_else(|p| p.into_inner());
        }
        held.push((id, lo, hi));
        DayGuard {
            locks: self.clone(),
            id,
        }
    }
}

impl Drop for DayGuard {
    fn drop(&mut self) {
        let mut held = self.locks.held.lock().unwrap_or_else(|p| p.into_inner());
        held.retain(|&(id, _, _)| id != self.id);
        self.locks.freed.notify_all();
    }
}

/// The loop's handle on the janitor thread.
pub(crate) struct Janitor {
    tx: Option<SyncSender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Jobs that must run, waiting for room in the queue.
    waiting: VecDeque<Job>,
    /// A rebuild pass is queued or running.
    rebuild_queued: Arc<AtomicBool>,
    queued: Arc<AtomicU64>,
    metrics: Metrics,
}

impl Janitor {
    /// Starts the thread.
    pub(crate) fn start(cx: Context) -> std::io::Result<Janitor> {
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        let rebuild_queued = Arc::new(AtomicBool::new(false));
        let queued = Arc::new(AtomicU64::new(0));
        let metrics = cx.metrics.clone();
        let worker = Worker {
            cx,
            rebuild_queued: rebuild_queued.clone(),
            queued: queued.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("tellijn-janitor".into())
            .spawn(move || worker.run(rx))?;
        Ok(Janitor {
            tx: Some(tx),
            thread: Some(thread),
            waiting: VecDeque::new(),
            rebuild_queued,
            queued,
            metrics,
        })
    }

    /// Queues a job that must run (kept here while the queue is full).
    pub(crate) fn submit(&mut self, job: Job) {
        self.waiting.push_back(job);
        self.pump();
    }

    /// Queues a rebuild pass unless one is queued or running.
    pub(crate) fn rebuild_pass(&mut self, now: DateTime<Utc>) {
        if self.rebuild_queued.swap(true, Ordering::SeqCst) {
            return;
        }
        match self.try_send(Job::Rebuild { now }) {
            Ok(()) => {}
            // Full or stopped: the next tick tries again.
            Err(_) => self.rebuild_queued.store(false, Ordering::SeqCst),
        }
    }

    /// Moves waiting jobs into the queue while it has room.
    pub(crate) fn pump(&mut self) {
        while let Some(job) = self.waiting.pop_front() {
            if let Err(job) = self.try_send(job) {
                self.waiting.push_front(job);
                break;
            }
        }
        self.depth();
    }

    fn try_send(&mut self, job: Job) -> Result<(), Job> {
        let Some(tx) = &self.tx else { return Err(job) };
        self.queued.fetch_add(1, Ordering::SeqCst);
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.queued.fetch_sub(1, Ordering::SeqCst);
                Err(job)
            }
        }
    }

    fn depth(&self) {
        let n = self.queued.load(Ordering::SeqCst) + self.waiting.len() as u64;
        self.metrics
            .queue_depth
            .get_or_create(&StageLabels {
                stage: stage::HOUSEKEEPING,
            })
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// Waits (off the async threads) until every job queued so far is done: for tests and
    /// for callers that read what the janitor writes.
    pub(crate) async fn idle(&mut self) {
        let (done, rx) = std::sync::mpsc::channel();
        let mut jobs: Vec<Job> = self.waiting.drain(..).collect();
        jobs.push(Job::Barrier(done));
        let Some(tx) = self.tx.clone() else { return };
        let queued = self.queued.clone();
        // Blocking sends wait for room in the queue off the async threads (no polling).
        let _ = tokio::task::spawn_blocking(move || {
            for job in jobs {
                queued.fetch_add(1, Ordering::SeqCst);
                if tx.send(job).is_err() {
                    return;
                }
            }
            let _ = rx.recv();
        })
        .await;
    }

    /// Finishes the queued jobs, then stops and joins the thread.
    pub(crate) async fn shutdown(&mut self) {
        let waiting: Vec<Job> = self.waiting.drain(..).collect();
        let (tx, thread) = (self.tx.take(), self.thread.take());
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(tx) = tx {
                for job in waiting {
                    if tx.send(job).is_err() {
                        break;
                    }
                }
            }
            if let Some(t) = thread {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Janitor {
    fn drop(&mut self) {
        // Without `shutdown` (a test that drops its processors): hand over what waits, close
        // the queue and let the thread finish on its own.
        if let Some(tx) = self.tx.take() {
            for job in self.waiting.drain(..) {
                if tx.try_send(job).is_err() {
                    break;
                }
            }
        }
    }
}

struct Worker {
    cx: Context,
    rebuild_queued: Arc<AtomicBool>,
    queued: Arc<AtomicU64>,
}

impl Worker {
    fn run(self, rx: Receiver<Job>) {
        for job in rx {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let name = job.name();
            let started = Instant::now();
            let ok = match job {
                Job::Snapshot { day, state } => self.snapshot(day, &state),
                Job::Retention { now } => self.retention(now),
                Job::Rebuild { now } => {
                    self.rebuild_queued.store(false, Ordering::SeqCst);
                    self.rebuild_due(now)
                }
                Job::Barrier(done) => {
                    let _ = done.send(());
                    continue;
                }
            };
            let labels = JobLabels { job: name };
            self.cx
                .metrics
                .housekeeping_duration
                .get_or_create(&labels)
                .observe(started.elapsed().as_secs_f64());
            if !ok {
                self.cx
                    .metrics
                    .housekeeping_failures
                    .get_or_create(&labels)
                    .inc();
            }
        }
    }

    fn snapshot(&self, day: NaiveDate, state: &[u8]) -> bool {
        let path = rebuild::snapshot_path(&self.cx.data_dir, day);
        crash::point("snapshot.before-write");
        match tellijn_durable::write_atomic(&path, state) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    "Cannot save the day-start snapshot ({e}); the day's occupancy rows will not be rebuilt by message time."
                );
                false
            }
        }
    }

    /// Deletes expired day partitions. Each deletion is audited (and the audit log synced)
    /// *before* the partition is removed: a crash in between leaves a line for a partition
    /// still there, which the next sweep deletes and audits again — never a silent deletion.
    fn retention(&self, now: DateTime<Utc>) -> bool {
        let p = &self.cx.campus.privacy;
        let mut ok = true;
        for (table, keep) in [
            (schema::COUNTS, p.raw_retention),
            (schema::ZONE_COUNTS, p.raw_retention),
            (schema::OCCUPANCY, p.aggregate_retention),
            (schema::BOOKINGS, p.aggregate_retention),
            (schema::HEADCOUNTS, p.aggregate_retention),
        ] {
            let cutoff = retention::cutoff(now, keep);
            let expired = retention::expired(&self.cx.data_dir, table, cutoff);
            let Some(last) = expired.last().map(|(d, _)| *d) else {
                continue;
            };
            let _held = self.cx.locks.lock((NaiveDate::MIN, last));
            for (date, path) in expired {
                let files = std::fs::read_dir(&path).map(|d| d.count()).unwrap_or(0);
                let event = AuditEvent::RetentionDeleted {
                    table,
                    date: date.to_string(),
                    files,
                    retention: format!("{}s", keep.as_secs()),
                };
                if let Err(e) = self
                    .cx
                    .audit
                    .record_confirmed(event)
                    .and_then(|()| self.cx.audit.sync())
                {
                    // Not deleted unaudited: retried at the next sweep.
                    tracing::error!("{e}; {} is kept until it can be audited", path.display());
                    ok = false;
                    continue;
                }
                crash::point("retention.before-delete");
                match std::fs::remove_dir_all(&path) {
                    Ok(()) => {
                        tracing::info!(table, %date, files, "Deleted a partition past retention.");
                        crash::point("retention.after-delete");
                    }
                    Err(e) => {
                        tracing::error!("Cannot delete {} past retention: {e}", path.display());
                        ok = false;
                    }
                }
            }
            // The removals durable before the sweep counts as done.
            if let Err(e) = tellijn_durable::sync_dir(&self.cx.data_dir.join(table)) {
                tracing::error!("{e}");
            }
        }
        ok
    }

    /// Compacts and rebuilds, by message time, every finished day that has a start snapshot
    /// and whose inputs changed since its last rebuild (late files). A day whose own snapshot
    /// is missing (the server was down, or killed, as the day began) starts from the state the
    /// rebuild of the day before ends with, so a crash at midnight does not leave the day
    /// unrebuilt.
    fn rebuild_due(&self, now: DateTime<Utc>) -> bool {
        let data = &self.cx.data_dir;
        let dir = data.join("state").join("day-start");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return true;
        };
        let mut days: std::collections::BTreeSet<NaiveDate> = entries
            .flatten()
            .filter_map(|e| {
                e.file_name()
                    .to_string_lossy()
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .collect();
        let finished = |day: NaiveDate| {
            let end = day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc() + TimeDelta::days(1);
            now >= end + TimeDelta::minutes(10)
        };
        let mut ok = true;
        while let Some(day) = days.pop_first() {
            if !finished(day) {
                continue;
            }
            let next = day + TimeDelta::days(1);
            let next_missing =
                next <= now.date_naive() && !rebuild::snapshot_path(data, next).exists();
            let marker = data.join("state").join("rebuilt").join(day.to_string());
            let done: Option<u64> = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| s.trim().parse().ok());
            let current = done.is_some_and(|done| done >= rebuild::inputs_version(data, day));
            if current && !next_missing {
                continue;
            }
            let snapshot = rebuild::snapshot_path(data, day);
            let start: occupancy::State = match std::fs::read(&snapshot) {
                Ok(b) => match serde_json::from_slice(&b) {
                    Ok(s) => s,
                    Err(e) => {
                        // An empty start would rebuild the day wrong: keep its live rows.
                        tracing::error!(
                            "The day-start snapshot {} is damaged ({e}); {day} keeps the occupancy rows recorded live and is not rebuilt. Deleting the file is safe: it only stops this message.",
                            snapshot.display()
                        );
                        continue;
                    }
                },
                Err(_) => continue,
            };
            let end = if current {
                let _held = self.cx.locks.lock((day - TimeDelta::days(1), day));
                match rebuild::rebuild_day(data, &self.cx.campus, self.cx.tz, day, start) {
                    Ok((_, end)) => Some(end),
                    Err(e) => {
                        tracing::error!("{e}");
                        None
                    }
                }
            } else {
                self.rebuild_day(day, start, &marker)
            };
            ok &= end.is_some();
            if let Some(end) = end.filter(|_| next_missing) {
                tracing::warn!(
                    %next,
                    "The day-start snapshot is missing (the server was not running as the day began); it starts from the end of the rebuilt day before."
                );
                let bytes = serde_json::to_vec(&end).unwrap_or_default();
                if self.snapshot(next, &bytes) {
                    days.insert(next);
                }
            }
        }
        ok
    }

    /// Compacts and rebuilds one day; the state it ends with, or `None` when it failed.
    fn rebuild_day(
        &self,
        day: NaiveDate,
        start: occupancy::State,
        marker: &std::path::Path,
    ) -> Option<occupancy::State> {
        let data = &self.cx.data_dir;
        // The rebuild reads the counts of the day before too (a crossing that began then).
        let _held = self.cx.locks.lock((day - TimeDelta::days(1), day));
        // Three file numbers: compacted counts, compacted zone counts, rebuilt occupancy.
        let first = self.cx.numbers.fetch_add(3, Ordering::SeqCst) + 1;
        let result = (|| {
            // One file per table per finished day: compact the raw tables first (their
            // content is unchanged), then rebuild the occupancy rows from them.
            for (i, table) in [schema::COUNTS, schema::ZONE_COUNTS]
                .into_iter()
                .enumerate()
            {
                if let Some(rows) = rebuild::compact(data, table, day, first + i as u64)? {
                    tracing::info!(table, %day, rows, "Compacted the day into one file.");
                }
            }
            rebuild::rebuild_and_swap(data, &self.cx.campus, self.cx.tz, day, start, first + 2)
        })();
        match result {
            Ok((rows, end)) => {
                tracing::info!(%day, rows, "Rebuilt the day's occupancy from its counts by message time.");
                crash::point("rebuild.before-marker");
                let version = rebuild::inputs_version(data, day);
                if let Err(e) =
                    tellijn_durable::write_atomic(marker, version.to_string().as_bytes())
                {
                    // Harmless: the day is rebuilt again at the next pass.
                    tracing::error!("Cannot record the rebuild of {day}: {e}");
                }
                Some(end)
            }
            Err(e) => {
                tracing::error!("{e}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_range_waits_for_an_overlapping_holder_only() {
        let locks = Arc::new(DayLocks::default());
        let job = locks.lock((d("2026-11-30"), d("2026-12-01")));
        // Other days are free at once.
        drop(locks.lock((d("2026-12-02"), d("2026-12-02"))));
        let (tx, rx) = std::sync::mpsc::channel();
        let waiter = {
            let locks = locks.clone();
            std::thread::spawn(move || {
                let _g = locks.lock((d("2026-12-01"), d("2026-12-03")));
                tx.send(()).unwrap();
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(100)).is_err(),
            "an overlapping range was taken while held"
        );
        drop(job);
        rx.recv().unwrap();
        waiter.join().unwrap();
        assert!(locks.held.lock().unwrap().is_empty());
    }
}
