//! Flushing: the buffer and the saved state are written on a blocking thread beside the
//! loop, one flush at a time; its acks are published only once both are on disk. A failed or
//! panicking write keeps its rows (back in the buffer, ahead of newer ones) and acks nothing.

use std::sync::atomic::Ordering;

use tellijn_config::metrics::{TableLabels, storage};
use tellijn_durable::crash;

use crate::parquet_sink::{self, Buffer};
use crate::state::{Saved, save_state};
use crate::{Output, ProcessorError, Processors, schema};

/// Rows buffered while flushes fail before the processors stop taking events.
pub const MAX_BUFFERED_WHILE_FAILING: usize = 200_000;

impl Processors {
    /// Writes buffered messages to Parquet, saves the state, and returns the acks that became
    /// true. On failure the messages stay buffered for the next attempt and nothing is acked.
    pub async fn flush(&mut self) -> Result<Vec<Output>, ProcessorError> {
        match self.begin_flush() {
            Some(mut pending) => {
                let joined = (&mut pending.task).await;
                self.finish_flush(pending, joined)
            }
            None => Ok(Vec::new()),
        }
    }

    /// Starts writing the buffer and the state on a blocking thread; events keep being handled
    /// meanwhile (into a new buffer). `None` when there is nothing to write. The acks are
    /// computed now, from the dedup state the written files include, and published only by
    /// [`Self::finish_flush`] after the write succeeded.
    pub(crate) fn begin_flush(&mut self) -> Option<PendingFlush> {
        // Give up overdue gaps first, so the saved state and the acks agree.
        let acks = self.acks(true);
        let acks_changed = acks
            .iter()
            .any(|o| self.published.get(&o.topic) != Some(&o.payload));
        if self.statuses_figures_dirty && self.statuses_written.elapsed() >= crate::FIGURES_EVERY {
            self.statuses_dirty = true;
        }
        if self.buffer.is_empty() && !acks_changed && !self.statuses_dirty && !self.engine_dirty {
            return None;
        }
        // A head count set a room: its state is saved with this flush.
        self.engine_dirty = false;
        // With an empty buffer this persists given-up gaps before they are acked.
        let buffer = std::mem::take(&mut self.buffer);
        Some(self.begin_save(buffer, acks))
    }

    /// Completes a flush begun by [`Self::begin_flush`]: on success the acks that changed, on
    /// failure the unwritten messages go back ahead of newer ones and the error is returned.
    pub(crate) fn finish_flush(
        &mut self,
        mut pending: PendingFlush,
        joined: Result<SaveResult, tokio::task::JoinError>,
    ) -> Result<Vec<Output>, ProcessorError> {
        let acks = std::mem::take(&mut pending.acks);
        match self.finish_save(pending, joined) {
            Ok(()) => {
                self.metrics.health.succeeded(storage::HISTORY);
                let mut out = Vec::new();
                for o in acks {
                    self.push_raw_if_changed(&mut out, o.topic, o.payload);
                }
                Ok(out)
            }
            Err(e) => {
                self.metrics
                    .flush_failures
                    .get_or_create(&TableLabels {
                        table: schema::COUNTS,
                    })
                    .inc();
                self.metrics.health.failed(
                    storage::HISTORY,
                    &format!(
                        "writing the history failed: {e}; the messages stay buffered and unacknowledged (the sensors keep them) until a flush succeeds; free space on the data directory's disk"
                    ),
                );
                Err(e)
            }
        }
    }

    fn begin_save(&mut self, mut buffer: Buffer, acks: Vec<Output>) -> PendingFlush {
        let dir = self.data_dir.clone();
        let flush = self.numbers.fetch_add(1, Ordering::SeqCst) + 1;
        // A housekeeping job may be compacting or rebuilding a finished day; a flush holding
        // late rows of it waits for that job (on this blocking thread, not on the loop).
        let (locks, days) = (self.locks.clone(), buffer.days());
        let saved = serde_json::to_vec(&Saved {
            dedup: self.dedup.clone(),
            occupancy: self.engine.state.clone(),
            flushes: flush,
        })
        .unwrap_or_default();
        let started = std::time::Instant::now();
        let statuses = std::mem::take(&mut self.statuses_dirty).then(|| {
            self.statuses_figures_dirty = false;
            self.statuses_written = std::time::Instant::now();
            serde_json::to_vec_pretty(&self.statuses).unwrap_or_default()
        });
        let task = tokio::task::spawn_blocking(move || {
            let _held = days.map(|d| locks.lock(d));
            if let Some(text) = statuses {
                let path = dir.join("state").join("sensors.json");
                if let Err(e) = tellijn_durable::write_atomic(&path, &text) {
                    tracing::error!("Cannot save the sensors' statuses: {e}");
                }
            }
            let r = buffer
                .flush(&dir, flush)
                .map_err(ProcessorError::from)
                .and_then(|w| {
                    crash::point("flush.before-state");
                    let saved = std::panic::catch_unwind(|| save_state(&dir, &saved))
                        .unwrap_or_else(|p| {
                            Err(ProcessorError::Sink(parquet_sink::SinkError::Panicked(
                                parquet_sink::panic_message(p.as_ref()),
                            )))
                        });
                    match saved {
                        Ok(()) => {
                            crash::point("flush.before-ack");
                            Ok(w)
                        }
                        Err(e) => {
                            // Nothing is acked; the rows stay buffered and are written again.
                            w.remove_files();
                            Err(e)
                        }
                    }
                });
            if r.is_ok() {
                // Written and recorded in the state: nothing to put back on failure.
                buffer = Buffer::default();
            }
            (buffer, r)
        });
        PendingFlush {
            flush,
            started,
            task,
            acks,
        }
    }

    fn finish_save(
        &mut self,
        pending: PendingFlush,
        joined: Result<SaveResult, tokio::task::JoinError>,
    ) -> Result<(), ProcessorError> {
        // The write catches its own panics, so the task fails only when it is cancelled at
        // shutdown: its buffer is gone, and acknowledging anything now could cover messages
        // that were never written. The caller stops (see `run`).
        let (buffer, result) = match joined {
            Ok(r) => r,
            Err(e) => return Err(ProcessorError::FlushLost(e.to_string())),
        };
        self.metrics
            .flush_duration
            .observe(pending.started.elapsed().as_secs_f64());
        match result {
            Ok(w) => {
                for (table, n) in [
                    (schema::COUNTS, w.counts),
                    (schema::ZONE_COUNTS, w.zones),
                    (schema::OCCUPANCY, w.minutes),
                ] {
                    self.metrics
                        .rows_written
                        .get_or_create(&TableLabels { table })
                        .inc_by(n as u64);
                }
                tracing::debug!(
                    flush = pending.flush,
                    counts = w.counts,
                    zones = w.zones,
                    minutes = w.minutes,
                    "Flushed history."
                );
                Ok(())
            }
            Err(e) => {
                // Put back what was not written, ahead of anything newer.
                let mut rest = buffer;
                rest.append(std::mem::take(&mut self.buffer));
                self.buffer = rest;
                Err(e)
            }
        }
    }

    /// Whether to stop taking events: the history cannot be written and the buffer is full.
    pub(crate) fn held_back(&self) -> bool {
        self.buffer.len() >= MAX_BUFFERED_WHILE_FAILING
            && self
                .metrics
                .health
                .problems()
                .iter()
                .any(|(what, _)| *what == storage::HISTORY)
    }
}

pub(crate) type SaveResult = (Buffer, Result<parquet_sink::Written, ProcessorError>);

/// A flush whose files and state are being written on a blocking thread.
pub(crate) struct PendingFlush {
    /// The flush number it writes.
    flush: u64,
    started: std::time::Instant,
    pub(crate) task: tokio::task::JoinHandle<SaveResult>,
    /// Acks to publish once it succeeded.
    acks: Vec<Output>,
}

/// Resolves when the flush in flight is done; never while there is none.
pub(crate) async fn wait_flush(
    pending: &mut Option<PendingFlush>,
) -> Result<SaveResult, tokio::task::JoinError> {
    match pending {
        Some(p) => (&mut p.task).await,
        None => std::future::pending().await,
    }
}
