//! A config reload: the processors take a new campus without stopping the loop.
//!
//! They go through the restart path, in-process: everything buffered is flushed and the state
//! saved (forced, even when nothing changed), the janitor finishes its queued jobs and stops,
//! and [`Processors::open`] starts them again from the saved state with the new campus —
//! the same load, repair and replay a restart does, and that `tests/crash_e2e.rs` tests.
//! Events keep waiting in the broker's bounded channel meanwhile (their publishers wait for
//! their PUBACK), so nothing is lost and nothing is counted twice.
//!
//! What a reload keeps beyond the saved state: the latest status of every sensor still
//! configured (a restart learns them again as the cameras reconnect; a reload has no reason
//! to forget them). A room or sensor that was removed leaves the engine with its state; a new
//! one starts at zero, as after a restart.

use std::sync::Arc;

use tellijn_config::Campus;
use tokio::sync::oneshot;

use crate::{Output, ProcessorError, Processors};

/// A reload request: the new campus, and where to say whether it took effect.
pub struct Reload {
    pub campus: Arc<Campus>,
    pub done: oneshot::Sender<Result<(), ProcessorError>>,
}

/// How a reload ended.
pub(crate) enum Reopened {
    /// In force: the outputs to publish (acks of the last flush, every retained topic).
    Done(Vec<Output>),
    /// Refused, the old campus still in force (the flush failed, or the new campus could not
    /// be opened and the old one was opened again): why, and what to publish.
    Refused(ProcessorError, Vec<Output>),
}

impl Processors {
    /// Flushes, saves, and opens again with `campus`. Only an error that leaves no processors
    /// running at all (the old campus cannot be opened again either) is returned as `Err`.
    pub(crate) async fn reopen(&mut self, campus: Arc<Campus>) -> Result<Reopened, ProcessorError> {
        // Saved even when no message came since the last flush: the state on disk must be
        // the state in memory before anything is opened from it.
        self.engine_dirty = true;
        let mut out = match self.flush().await {
            Ok(acks) => acks,
            Err(e @ ProcessorError::FlushLost(_)) => return Err(e),
            Err(e) => return Ok(Reopened::Refused(e, Vec::new())),
        };
        self.janitor.shutdown().await;
        let old = self.campus.clone();
        let refused = match self.open_again(campus).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(
                    "The processors could not open with the new config: {e}; opening the old one again."
                );
                self.open_again(old).await?;
                Some(e)
            }
        };
        out.extend(self.initial_outputs());
        Ok(match refused {
            None => Reopened::Done(out),
            Some(e) => Reopened::Refused(e, out),
        })
    }

    async fn open_again(&mut self, campus: Arc<Campus>) -> Result<(), ProcessorError> {
        let (dir, metrics, clock, audit) = (
            self.data_dir.clone(),
            self.metrics.clone(),
            self.clock,
            self.audit.clone(),
        );
        let opened = tokio::task::spawn_blocking(move || {
            Processors::open(campus, &dir, metrics, clock, audit)
        })
        .await
        .map_err(|e| ProcessorError::FlushLost(format!("opening the processors panicked: {e}")))?;
        let mut next = opened?;
        let mut statuses = std::mem::take(&mut self.statuses);
        statuses.retain(|sensor, _| next.campus.sensors.iter().any(|s| &s.id == sensor));
        next.statuses_dirty = !statuses.is_empty();
        next.statuses = statuses;
        *self = next;
        Ok(())
    }
}
