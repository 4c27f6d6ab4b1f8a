//! Applying one event: dedup, the occupancy engine, the per-minute rows and the buffer for
//! the next flush; and what sensors report about themselves.

use std::collections::{BTreeMap, BTreeSet};

use tellijn_config::AuditEvent;
use tellijn_config::metrics::{RoomLabels, SensorLabels, StageLabels, outcome, stage};
use tellijn_wire::{CountMessage, SensorEvent, StatusMessage};

use crate::dedup::Seen;
use crate::occupancy::Engine;
use crate::{Output, Processors, Summary};

impl Processors {
    /// Handles one event; returns the retained outputs it changed.
    pub fn handle(&mut self, event: SensorEvent, summary: &mut Summary) -> Vec<Output> {
        match event {
            SensorEvent::Count { msg, received, at } => {
                self.metrics.processor_queue.dec();
                let sensor = SensorLabels {
                    sensor: msg.sensor().to_owned(),
                };
                match self.dedup.observe(msg.sensor(), msg.seq()) {
                    Seen::Duplicate => {
                        self.metrics.outcome(outcome::DUPLICATE);
                        summary.duplicates += 1;
                        return Vec::new();
                    }
                    Seen::TooFarAhead { highest } => {
                        self.metrics.outcome(outcome::SEQ_TOO_FAR_AHEAD);
                        tracing::warn!(
                            sensor = %msg.sensor(),
                            seq = msg.seq(),
                            highest,
                            "Refused a count message whose seq lies implausibly far above the sensor's highest."
                        );
                        let event = AuditEvent::SeqTooFarAhead {
                            sensor: msg.sensor().to_owned(),
                            seq: msg.seq(),
                            highest,
                        };
                        if let Err(e) = self.audit.record(event) {
                            tracing::error!("{e}");
                        }
                        return Vec::new();
                    }
                    Seen::New { gap } => {
                        if gap > 0 {
                            self.metrics
                                .sensor_seq_gaps
                                .get_or_create(&sensor)
                                .inc_by(gap);
                        }
                    }
                }
                // A message for a minute already closed is stored all the same, and counted as
                // late: its minute's occupancy row was written without it.
                let late = msg.time().timestamp_micros() < self.minutes.open_minute() - 60_000_000;
                self.metrics.outcome(if late {
                    outcome::LATE
                } else {
                    outcome::ACCEPTED
                });
                summary.accepted += 1;
                summary.late += u64::from(late);
                self.metrics
                    .sensor_last_seen
                    .get_or_create(&sensor)
                    .set(received.timestamp());
                self.snapshot_if_new_day(msg.time());
                let (mut rooms, mut buildings) = (BTreeSet::new(), BTreeSet::new());
                let mut touch = |engine: &Engine, place: &str| {
                    if let Some(b) = engine.building_of(place) {
                        rooms.insert(place.to_owned());
                        buildings.insert(b.to_owned());
                    } else {
                        buildings.insert(place.to_owned());
                    }
                };
                match &msg {
                    CountMessage::Line(m) => {
                        if let Some((into, from)) = self.engine.line_ends(&m.sensor, &m.line) {
                            let (into, from) = (into.to_owned(), from.map(str::to_owned));
                            self.minutes.crossed(&into, m.people_in, m.people_out);
                            if let Some(f) = from {
                                self.minutes.crossed(&f, m.people_out, m.people_in);
                            }
                        }
                        for c in self
                            .engine
                            .line(&m.sensor, &m.line, m.people_in, m.people_out)
                        {
                            if c.clamped > 0
                                && let Some(b) = self.engine.building_of(&c.place)
                            {
                                let labels = RoomLabels {
                                    room: c.place.clone(),
                                    building: b.to_owned(),
                                };
                                self.metrics
                                    .occupancy_clamped
                                    .get_or_create(&labels)
                                    .inc_by(c.clamped);
                            }
                            touch(&self.engine, &c.place);
                        }
                    }
                    CountMessage::Zone(m) => {
                        if let Some(room) =
                            self.engine
                                .zone(&m.sensor, &m.zone, m.at.timestamp_micros(), m.count)
                        {
                            touch(&self.engine, &room);
                        }
                    }
                }
                let out = self.outputs(&rooms, &buildings);
                match msg {
                    CountMessage::Line(m) => self.buffer.counts.push((m, received)),
                    CountMessage::Zone(m) => self.buffer.zones.push((m, received)),
                }
                self.metrics
                    .processing_latency
                    .observe(at.elapsed().as_secs_f64());
                out
            }
            SensorEvent::Status { sensor, status } => {
                self.sensor_status(sensor, status);
                Vec::new()
            }
            SensorEvent::Connected { sensor } => {
                self.metrics
                    .sensor_online
                    .get_or_create(&SensorLabels { sensor })
                    .set(1);
                Vec::new()
            }
            SensorEvent::Disconnected { sensor } => {
                self.metrics
                    .sensor_online
                    .get_or_create(&SensorLabels { sensor })
                    .set(0);
                Vec::new()
            }
            SensorEvent::SetOccupancy { room, people } => self.set_occupancy(&room, people),
        }
    }

    /// A head count sets a line-counted room's occupancy (zone rooms take theirs from the next
    /// reading, so the API refuses them; an unknown or zone room here is only logged). The
    /// state is saved with the next flush.
    fn set_occupancy(&mut self, room: &str, people: u32) -> Vec<Output> {
        let Some(building) = self.engine.building_of(room).map(str::to_owned) else {
            tracing::warn!(%room, "A head count asked to set the occupancy of an unknown room.");
            return Vec::new();
        };
        if self.engine.has_zones(room) {
            tracing::warn!(%room, "A head count asked to set a zone room's occupancy; ignored.");
            return Vec::new();
        }
        let before = self.engine.set(room, u64::from(people));
        self.engine_dirty = true;
        tracing::info!(%room, before, people, "Occupancy set by a head count.");
        self.outputs(
            &BTreeSet::from([room.to_owned()]),
            &BTreeSet::from([building]),
        )
    }
    /// Publishes the depths of the Parquet buffer and of the retained-output channel.
    pub(crate) fn queue_depths(&self, out: &tokio::sync::mpsc::Sender<Output>) {
        let set = |stage, n: usize| {
            self.metrics
                .queue_depth
                .get_or_create(&StageLabels { stage })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        };
        set(stage::PARQUET_BUFFER, self.buffer.len());
        set(
            stage::PROCESSORS_IN,
            usize::try_from(self.metrics.processor_queue.get()).unwrap_or(0),
        );
        set(stage::RETAINED_OUT, out.max_capacity() - out.capacity());
    }

    /// Records what a sensor reports about itself. A change of its privacy-relevant settings
    /// (what it sends, its config hash, its version, its counter's privacy level) is audited,
    /// and the latest report of every sensor is kept in `{data}/state/sensors.json`, so an
    /// auditor can see each device's configuration from the server. A camera's frame figures
    /// become metrics at once and reach `sensors.json` at most every [`crate::FIGURES_EVERY`] (they
    /// change with every status; the settings are written with the next flush).
    fn sensor_status(&mut self, sensor: String, status: StatusMessage) {
        if !status.online {
            return;
        }
        if let Some(q) = status.queue {
            self.metrics
                .sensor_queue
                .get_or_create(&SensorLabels {
                    sensor: sensor.clone(),
                })
                .set(i64::try_from(q).unwrap_or(i64::MAX));
        }
        self.camera_metrics(&sensor, &status);
        let settings = |s: &StatusMessage| {
            (
                s.sends.clone(),
                s.config_hash.clone(),
                s.version.clone(),
                s.privacy_level,
            )
        };
        let figures = |s: &StatusMessage| {
            (
                s.frames,
                s.frame_drops,
                s.frame_late,
                s.frame_p99_us,
                s.frame_max_us,
                s.counter_restarts,
            )
        };
        let figures_changed = self
            .statuses
            .get(&sensor)
            .is_none_or(|old| figures(old) != figures(&status));
        let changed = self
            .statuses
            .get(&sensor)
            .is_none_or(|old| settings(old) != settings(&status));
        if changed {
            let event = AuditEvent::SensorSettings {
                sensor: sensor.clone(),
                sends: status.sends.clone().unwrap_or_default(),
                config_hash: status.config_hash.clone(),
                version: status.version.clone(),
                privacy_level: status.privacy_level,
            };
            if let Err(e) = self.audit.record(event) {
                tracing::error!("{e}");
            }
        }
        if status.corrupt_bytes.unwrap_or(0) > 0 || status.dropped.unwrap_or(0) > 0 {
            tracing::warn!(
                %sensor,
                corrupt_bytes = status.corrupt_bytes.unwrap_or(0),
                dropped = status.dropped.unwrap_or(0),
                "A sensor reports a damaged or overflowing outbox."
            );
        }
        if let Some(level) = status.privacy_level.filter(|l| *l != 3)
            && changed
        {
            tracing::warn!(
                %sensor,
                privacy_level = level,
                "A camera reports privacy level {level}: its installer view may show tracked people as dots (level 3 shows nothing but lines). The transparency report lists it."
            );
        }
        if let Some(max) = status.frame_max_us.filter(|m| *m > 200_000) {
            tracing::warn!(
                %sensor,
                frame_max_us = max,
                "A camera reports a frame kept longer than the promised 200 ms."
            );
        }
        self.statuses.insert(sensor, status);
        self.statuses_dirty |= changed;
        self.statuses_figures_dirty |= figures_changed;
    }

    /// Sets the camera gauges of the figures a status carries; a sensor without a camera never
    /// gets them (so an alert on the privacy level sees cameras only).
    fn camera_metrics(&self, sensor: &str, status: &StatusMessage) {
        let l = SensorLabels {
            sensor: sensor.to_owned(),
        };
        let m = &self.metrics;
        let int = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        for (family, value) in [
            (&m.sensor_frames, status.frames),
            (&m.sensor_frame_drops, status.frame_drops),
            (&m.sensor_frame_late, status.frame_late),
            (&m.sensor_counter_restarts, status.counter_restarts),
            (&m.sensor_privacy_level, status.privacy_level.map(u64::from)),
        ] {
            if let Some(v) = value {
                family.get_or_create(&l).set(int(v));
            }
        }
        for (family, value) in [
            (&m.sensor_frame_lifetime_p99, status.frame_p99_us),
            (&m.sensor_frame_lifetime_max, status.frame_max_us),
        ] {
            if let Some(us) = value {
                family.get_or_create(&l).set(us as f64 / 1e6);
            }
        }
    }

    /// The latest status each sensor reported (online reports only).
    pub fn statuses(&self) -> &BTreeMap<String, StatusMessage> {
        &self.statuses
    }
}
