//! The processors' loop: events, flush completions and housekeeping ticks in one `select!`.
//! Nothing on it waits for the disk: flushes run on a blocking thread, compaction, rebuild,
//! retention and snapshots on the janitor's.

use std::future::Future;
use std::time::Duration;

use tellijn_wire::SensorEvent;
use tokio::sync::mpsc;

use crate::flushing::{PendingFlush, wait_flush};
use crate::reload::{Reload, Reopened};
use crate::{Output, ProcessorError, Processors, Summary};

impl Processors {
    /// Runs until `shutdown` resolves or the event channel closes, then drains and flushes.
    ///
    /// A flush runs beside the event loop: messages arriving while the files are written and
    /// synced are handled (and their occupancy published) at once, into the next buffer. One
    /// flush is in flight at a time; a tick that finds one still running is skipped.
    ///
    /// A [`Reload`] from `reloads` puts a new campus in force between two events
    /// ([`crate::reload`]); its `done` says whether it did.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<SensorEvent>,
        out: mpsc::Sender<Output>,
        flush_every: Duration,
        shutdown: impl Future<Output = ()>,
        mut reloads: mpsc::Receiver<Reload>,
    ) -> Result<Summary, ProcessorError> {
        let mut summary = Summary::default();
        let mut tick = tokio::time::interval(flush_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        // Housekeeping about twice per simulated minute, at most once a second.
        let house_every = self
            .clock
            .real(Duration::from_secs(30))
            .clamp(Duration::from_millis(20), Duration::from_secs(1));
        let mut house = tokio::time::interval(house_every);
        house.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending: Option<PendingFlush> = None;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                biased;
                _ = &mut shutdown => break,
                Some(r) = reloads.recv() => {
                    self.finish_pending(pending.take(), &out).await?;
                    let (outputs, result) = match self.reopen(r.campus).await? {
                        Reopened::Done(o) => (o, Ok(())),
                        Reopened::Refused(e, o) => (o, Err(e)),
                    };
                    for o in outputs {
                        let _ = out.send(o).await;
                    }
                    let _ = r.done.send(result);
                }
                joined = wait_flush(&mut pending) => {
                    let Some(p) = pending.take() else { continue };
                    self.complete_flush(p, joined, &out).await?;
                    self.queue_depths(&out);
                }
                _ = house.tick() => {
                    for o in self.housekeeping() {
                        let _ = out.send(o).await;
                    }
                }
                // While flushes fail (a full disk) the buffer grows; past a bound, stop taking
                // events: the broker's channel fills and publishers wait for their PUBACK, so
                // the agents keep the rest in their outboxes instead of this process in memory.
                ev = events.recv(), if !self.held_back() => match ev {
                    Some(ev) => {
                        for o in self.handle(ev, &mut summary) {
                            let _ = out.send(o).await;
                        }
                        self.queue_depths(&out);
                    }
                    None => break,
                },
                _ = tick.tick(), if pending.is_none() => {
                    pending = self.begin_flush();
                }
            }
        }
        // Finish the flush in flight, refuse new publishes (the broker then withholds their
        // PUBACK), drain what was already admitted, and write it all.
        self.finish_pending(pending.take(), &out).await?;
        events.close();
        while let Some(ev) = events.recv().await {
            for o in self.handle(ev, &mut summary) {
                let _ = out.send(o).await;
            }
        }
        for o in self.flush().await? {
            let _ = out.send(o).await;
        }
        // The jobs already queued (a day-start snapshot) run to the end; then the thread stops.
        self.janitor.shutdown().await;
        Ok(summary)
    }

    /// Waits for the flush in flight, if any, and completes it ([`Self::complete_flush`]).
    async fn finish_pending(
        &mut self,
        pending: Option<PendingFlush>,
        out: &mpsc::Sender<Output>,
    ) -> Result<(), ProcessorError> {
        let Some(mut p) = pending else {
            return Ok(());
        };
        let joined = (&mut p.task).await;
        self.complete_flush(p, joined, out).await
    }

    /// Completes a joined flush and publishes its acks. Only a lost write is an error; a
    /// failed one keeps its rows for the next flush.
    async fn complete_flush(
        &mut self,
        p: PendingFlush,
        joined: Result<crate::flushing::SaveResult, tokio::task::JoinError>,
        out: &mpsc::Sender<Output>,
    ) -> Result<(), ProcessorError> {
        match self.finish_flush(p, joined) {
            Ok(acks) => {
                for o in acks {
                    let _ = out.send(o).await;
                }
            }
            Err(e @ ProcessorError::FlushLost(_)) => return Err(e),
            Err(e) => tracing::error!("Flushing history failed, will retry: {e}"),
        }
        Ok(())
    }

    /// Waits until the housekeeping jobs queued so far (snapshots, retention, rebuilds) are
    /// done: for tests and tools that read what they write.
    pub async fn housekeeping_idle(&mut self) {
        self.janitor.idle().await;
    }
}
