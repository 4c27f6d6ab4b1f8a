//! Every metric Tellijn exports, by name, with bounded label sets: room, building and sensor
//! ids come from the config, reasons and outcomes from closed enums, never from a payload.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

use crate::Campus;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomLabels {
    pub room: String,
    pub building: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildingLabels {
    pub building: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SensorLabels {
    pub sensor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RoomInfoLabels {
    pub room: String,
    pub building: String,
    pub kind: String,
    pub public: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    pub stage: &'static str,
}

/// The stages whose queues are measured, for `tellijn_queue_depth{stage}`.
pub mod stage {
    /// Admitted by the gate, waiting for the processors.
    pub const PROCESSORS_IN: &str = "processors_in";
    /// Retained outputs waiting to be published into the broker.
    pub const RETAINED_OUT: &str = "retained_out";
    /// Rows buffered for the next Parquet flush.
    pub const PARQUET_BUFFER: &str = "parquet_buffer";
    /// Housekeeping jobs (compaction and rebuild, retention, day-start snapshots) waiting for
    /// the housekeeping thread beside the processors' loop.
    pub const HOUSEKEEPING: &str = "housekeeping";
}

/// Jobs of the housekeeping thread, in `tellijn_housekeeping_*`.
pub mod job {
    /// Compaction and rebuild by message time of the finished days that are due.
    pub const REBUILD: &str = "rebuild";
    /// Deleting day partitions past retention.
    pub const RETENTION: &str = "retention";
    /// Saving the engine state a UTC day starts from.
    pub const SNAPSHOT: &str = "snapshot";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    pub job: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TableLabels {
    pub table: &'static str,
}

/// Outcomes of a count message in `tellijn_messages_total`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const REJECTED: &str = "rejected";
    pub const DUPLICATE: &str = "duplicate";
    pub const LATE: &str = "late";
    /// A seq implausibly far above the sensor's highest (processors' dedup), not stored.
    pub const SEQ_TOO_FAR_AHEAD: &str = "seq_too_far_ahead";
}

/// Why an MQTT connection was refused, for `tellijn_auth_failures_total`.
pub mod auth_reason {
    pub const UNKNOWN_USER: &str = "unknown_user";
    pub const BAD_SECRET: &str = "bad_secret";
    pub const CLIENT_ID_MISMATCH: &str = "client_id_mismatch";
    pub const NO_CREDENTIALS: &str = "no_credentials";
    pub const BAD_WILL: &str = "bad_will";
    pub const SQL_UNKNOWN_USER: &str = "sql_unknown_user";
    pub const SQL_BAD_PASSWORD: &str = "sql_bad_password";
    pub const SQL_ROLE_VIEWER: &str = "sql_role_viewer";
    /// HTTP Basic credentials naming no `[[users]]` entry.
    pub const HTTP_UNKNOWN_USER: &str = "http_unknown_user";
    /// HTTP Basic credentials of a user with the wrong password.
    pub const HTTP_BAD_PASSWORD: &str = "http_bad_password";
    /// An `Authorization` header that is not well-formed HTTP Basic.
    pub const HTTP_MALFORMED: &str = "http_malformed";
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WhatLabels {
    pub what: &'static str,
}

/// What could not be stored, for `tellijn_storage_errors_total{what}` and
/// `tellijn_storage_failing{what}`.
pub mod storage {
    /// Parquet history and the processors' state (a failed flush; nothing is acked).
    pub const HISTORY: &str = "history";
    /// The audit log.
    pub const AUDIT: &str = "audit";
    pub const ALL: [&str; 2] = [HISTORY, AUDIT];
}

/// All metric handles. Cloning is cheap (handles share their values).
#[derive(Clone)]
pub struct Metrics {
    pub room_occupancy: Family<RoomLabels, Gauge>,
    pub room_capacity: Family<RoomLabels, Gauge>,
    pub building_occupancy: Family<BuildingLabels, Gauge>,
    pub occupancy_clamped: Family<RoomLabels, Counter>,
    pub messages: Family<OutcomeLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub auth_failures: Family<ReasonLabels, Counter>,
    pub subscribe_refused: Counter,
    /// MQTT connections closed before or outside the gate (limits, timeouts, malformed packets).
    pub refused_connections: Family<ReasonLabels, Counter>,
    /// Publishes that waited for the per-client rate limit.
    pub publish_throttled: Counter,
    /// PostgreSQL connections refused because `[limits] max_sql_connections` were open.
    pub sql_refused_connections: Counter,
    /// Config reloads (`SIGHUP`) by outcome: `applied`, `unchanged`, `refused`.
    pub config_reloads: Family<OutcomeLabels, Counter>,
    pub sensor_last_seen: Family<SensorLabels, Gauge>,
    pub sensor_online: Family<SensorLabels, Gauge>,
    pub sensor_seq_gaps: Family<SensorLabels, Counter>,
    pub sensor_seq_lost: Family<SensorLabels, Counter>,
    pub processing_latency: Histogram,
    pub mqtt_connections: Gauge,
    pub rows_written: Family<TableLabels, Counter>,
    pub flush_failures: Family<TableLabels, Counter>,
    pub processor_queue: Gauge,
    pub queue_depth: Family<StageLabels, Gauge>,
    pub flush_duration: Histogram,
    /// Time each housekeeping job took, and the jobs that failed (they are retried).
    pub housekeeping_duration: Family<JobLabels, Histogram>,
    pub housekeeping_failures: Family<JobLabels, Counter>,
    pub room_vacant: Family<RoomLabels, Gauge>,
    pub sensor_queue: Family<SensorLabels, Gauge>,
    /// A camera agent's frame figures, as its last status reported. Created only for sensors
    /// that report them (not seeded: a sensor without a camera has no privacy level).
    pub sensor_frames: Family<SensorLabels, Gauge>,
    pub sensor_frame_drops: Family<SensorLabels, Gauge>,
    pub sensor_frame_late: Family<SensorLabels, Gauge>,
    pub sensor_frame_lifetime_p99: Family<SensorLabels, Gauge<f64, AtomicU64>>,
    pub sensor_frame_lifetime_max: Family<SensorLabels, Gauge<f64, AtomicU64>>,
    pub sensor_privacy_level: Family<SensorLabels, Gauge>,
    pub sensor_counter_restarts: Family<SensorLabels, Gauge>,
    pub room_info: Family<RoomInfoLabels, Gauge>,
    /// HTTP connections closed at accept because `[limits] max_http_connections` were open.
    pub http_refused_connections: Counter,
    /// Keys the publish rate limiter holds (configured sensors and readers, one for anonymous).
    pub publish_limiter_keys: Gauge,
    /// Whether storage works, shared with `/healthz`; counts and flags storage errors.
    pub health: crate::health::Health,
    /// Bookings from the `[[calendars]]` feeds.
    pub bookings: BookingMetrics,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CalendarLabels {
    /// The feed's index in `[[calendars]]` (`0`, `1`, …): its URL may hold a secret.
    pub calendar: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CalendarReasonLabels {
    pub calendar: String,
    pub reason: &'static str,
}

/// Bookings: the feeds' health and each room's booking state. Per-room numbers, like every
/// metric here, are for operations (the metrics listener), never public.
#[derive(Clone, Default)]
pub struct BookingMetrics {
    pub room_booked: Family<RoomLabels, Gauge>,
    pub room_no_show: Family<RoomLabels, Gauge>,
    pub room_in_use_unbooked: Family<RoomLabels, Gauge>,
    pub room_study_place: Family<RoomLabels, Gauge>,
    pub no_shows: Family<RoomLabels, Counter>,
    pub decided: Family<RoomLabels, Counter>,
    pub feed_up: Family<CalendarLabels, Gauge>,
    pub feed_last_success: Family<CalendarLabels, Gauge>,
    pub feed_occurrences: Family<CalendarLabels, Gauge>,
    pub feed_failures: Family<CalendarReasonLabels, Counter>,
    pub feed_skipped: Family<CalendarReasonLabels, Counter>,
}

impl BookingMetrics {
    fn register(&self, r: &mut Registry) {
        for (name, help, m) in [
            (
                "tellijn_room_booked",
                "1 while a booking of a room is running",
                &self.room_booked,
            ),
            (
                "tellijn_room_no_show",
                "1 while a room's running booking is a no-show (nobody came in its first no_show_after)",
                &self.room_no_show,
            ),
            (
                "tellijn_room_in_use_unbooked",
                "1 while a room is occupied without a booking (for at least no_show_after)",
                &self.room_in_use_unbooked,
            ),
            (
                "tellijn_room_study_place",
                "1 while a room is listed as an open study place",
                &self.room_study_place,
            ),
        ] {
            r.register(name, help, m.clone());
        }
        r.register(
            "tellijn_bookings_no_shows",
            "Bookings decided a no-show",
            self.no_shows.clone(),
        );
        r.register(
            "tellijn_bookings_decided",
            "Bookings decided used or no-show (the no-show share's denominator)",
            self.decided.clone(),
        );
        for (name, help, m) in [
            (
                "tellijn_calendar_feed_up",
                "1 when a calendar feed's last refresh worked, 0 while it fails (its last good state stays in use)",
                &self.feed_up,
            ),
            (
                "tellijn_calendar_feed_last_success_timestamp_seconds",
                "When a calendar feed was last read (or found unchanged) successfully",
                &self.feed_last_success,
            ),
            (
                "tellijn_calendar_feed_occurrences",
                "Booking occurrences a calendar feed gave in the kept window",
                &self.feed_occurrences,
            ),
        ] {
            r.register(name, help, m.clone());
        }
        r.register(
            "tellijn_calendar_feed_failures",
            "Failed refreshes of a calendar feed, by reason",
            self.feed_failures.clone(),
        );
        r.register(
            "tellijn_calendar_feed_skipped_events",
            "Events of a calendar feed left out, by reason (unmapped location, transparent, bad time, …)",
            self.feed_skipped.clone(),
        );
    }

    /// Creates every series the config implies, so they read 0 before the first change.
    pub fn seed(&self, campus: &Campus) {
        for r in &campus.rooms {
            let l = RoomLabels {
                room: r.id.clone(),
                building: r.building.clone(),
            };
            for g in [
                &self.room_booked,
                &self.room_no_show,
                &self.room_in_use_unbooked,
                &self.room_study_place,
            ] {
                let _ = g.get_or_create(&l);
            }
            let _ = self.no_shows.get_or_create(&l);
            let _ = self.decided.get_or_create(&l);
        }
        for i in 0..campus.calendars.len() {
            let l = CalendarLabels {
                calendar: i.to_string(),
            };
            for g in [
                &self.feed_up,
                &self.feed_last_success,
                &self.feed_occurrences,
            ] {
                let _ = g.get_or_create(&l);
            }
        }
    }
}

impl Metrics {
    /// Creates the metrics and registers them.
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            room_occupancy: Family::default(),
            room_capacity: Family::default(),
            building_occupancy: Family::default(),
            occupancy_clamped: Family::default(),
            messages: Family::default(),
            rejected: Family::default(),
            auth_failures: Family::default(),
            subscribe_refused: Counter::default(),
            refused_connections: Family::default(),
            publish_throttled: Counter::default(),
            sql_refused_connections: Counter::default(),
            config_reloads: Family::default(),
            sensor_last_seen: Family::default(),
            sensor_online: Family::default(),
            sensor_seq_gaps: Family::default(),
            sensor_seq_lost: Family::default(),
            // Fine around the targets (5 ms at campus load, 50 ms at 100×), so benchmarks can
            // tell "below" from "at" them.
            processing_latency: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.003, 0.004, 0.005, 0.01, 0.02, 0.03, 0.04,
                0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
            ]),
            mqtt_connections: Gauge::default(),
            rows_written: Family::default(),
            flush_failures: Family::default(),
            processor_queue: Gauge::default(),
            queue_depth: Family::default(),
            flush_duration: Histogram::new([
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            housekeeping_duration: Family::new_with_constructor(|| {
                Histogram::new([0.001, 0.01, 0.1, 1.0, 10.0, 60.0, 600.0])
            }),
            housekeeping_failures: Family::default(),
            room_vacant: Family::default(),
            sensor_queue: Family::default(),
            sensor_frames: Family::default(),
            sensor_frame_drops: Family::default(),
            sensor_frame_late: Family::default(),
            sensor_frame_lifetime_p99: Family::default(),
            sensor_frame_lifetime_max: Family::default(),
            sensor_privacy_level: Family::default(),
            sensor_counter_restarts: Family::default(),
            room_info: Family::default(),
            http_refused_connections: Counter::default(),
            publish_limiter_keys: Gauge::default(),
            health: crate::health::Health::default(),
            bookings: BookingMetrics::default(),
        };
        let r = registry;
        r.register(
            "tellijn_room_occupancy",
            "People in a room now",
            m.room_occupancy.clone(),
        );
        r.register(
            "tellijn_room_capacity",
            "Seats or places in a room, from the config",
            m.room_capacity.clone(),
        );
        r.register(
            "tellijn_building_occupancy",
            "People in a building now",
            m.building_occupancy.clone(),
        );
        r.register(
            "tellijn_occupancy_clamped",
            "People subtracted below zero and clamped away (miscounts)",
            m.occupancy_clamped.clone(),
        );
        r.register(
            "tellijn_messages",
            "Count messages by outcome",
            m.messages.clone(),
        );
        r.register(
            "tellijn_rejected_messages",
            "Publishes refused by the payload gate, by reason",
            m.rejected.clone(),
        );
        r.register(
            "tellijn_auth_failures",
            "Connections and logins refused (MQTT; SQL logins: sql_*; HTTP Basic: http_*), by reason",
            m.auth_failures.clone(),
        );
        r.register(
            "tellijn_config_reloads",
            "Config reloads (SIGHUP, systemctl reload) by outcome: applied, unchanged, refused (the running config stayed; the log and the audit log say why)",
            m.config_reloads.clone(),
        );
        r.register(
            "tellijn_sql_refused_connections",
            "PostgreSQL connections refused because [limits] max_sql_connections were open",
            m.sql_refused_connections.clone(),
        );
        r.register(
            "tellijn_subscribe_refused",
            "MQTT subscriptions refused by the ACL",
            m.subscribe_refused.clone(),
        );
        r.register(
            "tellijn_mqtt_refused_connections",
            "MQTT connections closed by the door or for a protocol error, by reason",
            m.refused_connections.clone(),
        );
        r.register(
            "tellijn_mqtt_publish_throttled",
            "Publishes that waited for their client's rate limit",
            m.publish_throttled.clone(),
        );
        r.register(
            "tellijn_sensor_last_seen_timestamp_seconds",
            "When a sensor's last accepted message arrived (Unix seconds)",
            m.sensor_last_seen.clone(),
        );
        r.register(
            "tellijn_sensor_online",
            "1 while a sensor is connected",
            m.sensor_online.clone(),
        );
        r.register(
            "tellijn_sensor_seq_gaps",
            "Missing sequence numbers seen per sensor",
            m.sensor_seq_gaps.clone(),
        );
        r.register(
            "tellijn_sensor_seq_lost",
            "Sequence numbers given up as lost after the gap horizon",
            m.sensor_seq_lost.clone(),
        );
        r.register(
            "tellijn_processing_latency_seconds",
            "Broker receipt to occupancy update",
            m.processing_latency.clone(),
        );
        r.register(
            "tellijn_mqtt_connections",
            "Open MQTT connections",
            m.mqtt_connections.clone(),
        );
        r.register(
            "tellijn_parquet_rows_written",
            "Rows written to Parquet history",
            m.rows_written.clone(),
        );
        r.register(
            "tellijn_flush_failures",
            "Failed Parquet flushes (retried)",
            m.flush_failures.clone(),
        );
        r.register(
            "tellijn_processor_queue_depth",
            "Accepted messages waiting for the processors",
            m.processor_queue.clone(),
        );
        r.register(
            "tellijn_queue_depth",
            "Items waiting between pipeline stages, by stage",
            m.queue_depth.clone(),
        );
        r.register(
            "tellijn_flush_duration_seconds",
            "Time to write one flush (Parquet files and state)",
            m.flush_duration.clone(),
        );
        r.register(
            "tellijn_housekeeping_duration_seconds",
            "Time a housekeeping job took beside the processors' loop (compaction and rebuild, retention, day-start snapshot)",
            m.housekeeping_duration.clone(),
        );
        r.register(
            "tellijn_housekeeping_failures",
            "Housekeeping jobs that failed; each is retried at the next pass",
            m.housekeeping_failures.clone(),
        );
        m.bookings.register(r);
        r.register(
            "tellijn_room_vacant",
            "1 while a room's HVAC/lighting state is vacant, 0 while occupied",
            m.room_vacant.clone(),
        );
        r.register(
            "tellijn_sensor_queue",
            "Count messages waiting in a sensor's outbox, as its last status reported",
            m.sensor_queue.clone(),
        );
        r.register(
            "tellijn_sensor_frames",
            "Frames a camera's counter read since its agent started, as the last status reported",
            m.sensor_frames.clone(),
        );
        r.register(
            "tellijn_sensor_frame_drops",
            "Frames a camera's counter dropped unprocessed (behind or late) since its agent started",
            m.sensor_frame_drops.clone(),
        );
        r.register(
            "tellijn_sensor_frame_late",
            "Of the dropped frames, those dropped because they would have outlived 200 ms",
            m.sensor_frame_late.clone(),
        );
        r.register(
            "tellijn_sensor_frame_lifetime_p99_seconds",
            "p99 of frame lifetime (first byte read to buffer zeroized), the counter's latest figure",
            m.sensor_frame_lifetime_p99.clone(),
        );
        r.register(
            "tellijn_sensor_frame_lifetime_max_seconds",
            "Longest frame lifetime since the agent's previous status (the promise: at most 0.2 s)",
            m.sensor_frame_lifetime_max.clone(),
        );
        r.register(
            "tellijn_sensor_privacy_level",
            "A camera counter's privacy level (3: nothing but lines shown; 2: tracked people as dots)",
            m.sensor_privacy_level.clone(),
        );
        r.register(
            "tellijn_sensor_counter_restarts",
            "Times a camera agent restarted its counter since the agent started",
            m.sensor_counter_restarts.clone(),
        );
        r.register(
            "tellijn_room_info",
            "1 per room, with its kind and whether it is public (from the config), for joins",
            m.room_info.clone(),
        );
        r.register(
            "tellijn_http_refused_connections",
            "HTTP connections closed at accept: [limits] max_http_connections were open",
            m.http_refused_connections.clone(),
        );
        r.register(
            "tellijn_publish_limiter_keys",
            "Clients the publish rate limiter holds state for (configured identities only)",
            m.publish_limiter_keys.clone(),
        );
        r.register(
            "tellijn_storage_errors",
            "Writes to the data directory that failed (history flushes, audit lines), by what",
            m.health.errors.clone(),
        );
        r.register(
            "tellijn_storage_failing",
            "1 while the last write of this kind failed (e.g. the disk is full), else 0",
            m.health.failing.clone(),
        );
        m
    }

    /// Adds process metrics (RSS, CPU, open fds) and the data directory's disk space.
    pub fn register_process(registry: &mut Registry, data_dir: &std::path::Path) {
        registry.register_collector(Box::new(crate::process::ProcessCollector {
            data_dir: data_dir.to_path_buf(),
        }));
    }

    /// Pre-creates every labelled series the config implies, so dashboards see zeros, not gaps.
    pub fn seed(&self, campus: &Campus) {
        self.bookings.seed(campus);
        for r in &campus.rooms {
            let l = RoomLabels {
                room: r.id.clone(),
                building: r.building.clone(),
            };
            self.room_capacity.get_or_create(&l).set(r.capacity as i64);
            let _ = self.room_occupancy.get_or_create(&l);
            let _ = self.room_vacant.get_or_create(&l);
            self.room_info
                .get_or_create(&RoomInfoLabels {
                    room: r.id.clone(),
                    building: r.building.clone(),
                    kind: r.kind.as_str().to_owned(),
                    public: r.public.to_string(),
                })
                .set(1);
            let _ = self.occupancy_clamped.get_or_create(&l);
        }
        for b in &campus.buildings {
            let _ = self.building_occupancy.get_or_create(&BuildingLabels {
                building: b.id.clone(),
            });
        }
        for s in &campus.sensors {
            let l = SensorLabels {
                sensor: s.id.clone(),
            };
            let _ = self.sensor_online.get_or_create(&l);
            let _ = self.sensor_seq_gaps.get_or_create(&l);
            let _ = self.sensor_queue.get_or_create(&l);
        }
        for o in [
            outcome::ACCEPTED,
            outcome::REJECTED,
            outcome::DUPLICATE,
            outcome::LATE,
            outcome::SEQ_TOO_FAR_AHEAD,
        ] {
            let _ = self.messages.get_or_create(&OutcomeLabels { outcome: o });
        }
        for r in tellijn_wire::Reason::ALL {
            let _ = self
                .rejected
                .get_or_create(&ReasonLabels { reason: r.as_str() });
        }
        for r in [
            auth_reason::UNKNOWN_USER,
            auth_reason::BAD_SECRET,
            auth_reason::CLIENT_ID_MISMATCH,
            auth_reason::NO_CREDENTIALS,
            auth_reason::BAD_WILL,
            auth_reason::SQL_UNKNOWN_USER,
            auth_reason::SQL_BAD_PASSWORD,
            auth_reason::SQL_ROLE_VIEWER,
            auth_reason::HTTP_UNKNOWN_USER,
            auth_reason::HTTP_BAD_PASSWORD,
            auth_reason::HTTP_MALFORMED,
        ] {
            let _ = self
                .auth_failures
                .get_or_create(&ReasonLabels { reason: r });
        }
        for stage in [
            stage::PROCESSORS_IN,
            stage::RETAINED_OUT,
            stage::PARQUET_BUFFER,
        ] {
            let _ = self.queue_depth.get_or_create(&StageLabels { stage });
        }
        for what in storage::ALL {
            let _ = self.health.errors.get_or_create(&WhatLabels { what });
            let _ = self.health.failing.get_or_create(&WhatLabels { what });
        }
        for table in ["counts", "zone_counts", "occupancy"] {
            let _ = self.flush_failures.get_or_create(&TableLabels { table });
            let _ = self.rows_written.get_or_create(&TableLabels { table });
        }
    }

    /// Counts a refused publish under its reason and as a rejected message.
    pub fn reject(&self, reason: tellijn_wire::Reason) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
        self.messages
            .get_or_create(&OutcomeLabels {
                outcome: outcome::REJECTED,
            })
            .inc();
    }

    /// Counts a message outcome.
    pub fn outcome(&self, outcome: &'static str) {
        self.messages
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
    }
}

/// Turns OpenMetrics text (what the encoder writes) into the Prometheus text format 0.0.4, for
/// scrapers and tools that do not ask for OpenMetrics (`promtool check metrics`, curl): counter
/// families get their `_total` name on `# HELP`/`# TYPE`, `# UNIT` and `# EOF` go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut counters = std::collections::HashSet::new();
    for l in openmetrics.lines() {
        if let Some(rest) = l.strip_prefix("# TYPE ")
            && let Some((name, "counter")) = rest.split_once(' ')
        {
            counters.insert(name.to_owned());
        }
    }
    let mut out = String::with_capacity(openmetrics.len());
    for l in openmetrics.lines() {
        if l == "# EOF" || l.starts_with("# UNIT ") {
            continue;
        }
        let meta = l
            .strip_prefix("# HELP ")
            .map(|r| ("# HELP ", r))
            .or_else(|| l.strip_prefix("# TYPE ").map(|r| ("# TYPE ", r)));
        match meta {
            Some((kind, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{kind}{name}_total {tail}"));
                } else {
                    out.push_str(l);
                }
            }
            None => out.push_str(l),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn counters_get_their_total_names() {
        let om = "# HELP a_things Things.\n# TYPE a_things counter\na_things_total{x=\"1\"} 3\n# HELP b Gauge.\n# TYPE b gauge\n# UNIT b seconds\nb 1\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_things_total Things.\n# TYPE a_things_total counter\na_things_total{x=\"1\"} 3\n# HELP b Gauge.\n# TYPE b gauge\nb 1\n"
        );
    }
}
