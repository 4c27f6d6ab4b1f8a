//! The model of a campus: one struct per table of `campus.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::defaults::*;
use super::units::{bytes_de, bytes_ser, duration_de, duration_ser};

/// The whole `campus.toml`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Campus {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub tls: Option<Tls>,
    #[serde(default)]
    pub privacy: Privacy,
    #[serde(default)]
    pub integrations: Integrations,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub mqtt_readers: Vec<MqttReader>,
    #[serde(default)]
    pub buildings: Vec<Building>,
    #[serde(default)]
    pub rooms: Vec<Room>,
    #[serde(default)]
    pub sensors: Vec<Sensor>,
    /// `[[calendars]]`: iCalendar feeds of room bookings.
    #[serde(default)]
    pub calendars: Vec<Calendar>,
    /// `[bookings]`: how bookings meet the counts.
    #[serde(default)]
    pub bookings: Bookings,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Server {
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default = "default_mqtt")]
    pub mqtt: SocketAddr,
    #[serde(default)]
    pub mqtts: Option<SocketAddr>,
    #[serde(default = "default_http")]
    pub http: SocketAddr,
    #[serde(default = "default_postgres")]
    pub postgres: SocketAddr,
    /// Where `/metrics` is served: its own listener, loopback by default, never the public
    /// HTTP port (the metrics hold every room's exact occupancy).
    #[serde(default = "default_metrics")]
    pub metrics: SocketAddr,
    /// SHA-256 (hex) of the bearer token `/metrics` requires; none: no token is asked for.
    /// Prometheus sends it with `authorization: { type: Bearer, credentials_file: … }`.
    #[serde(default)]
    pub metrics_token_sha256: Option<String>,
    #[serde(default = "default_timezone")]
    pub timezone: String,
    #[serde(
        default = "default_flush",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub flush_interval: Duration,
    /// Topic filters anonymous MQTT clients may subscribe to (none unless set); only within
    /// the banded public tree `tellijn/v1/public/#`.
    #[serde(default)]
    pub anonymous_read: Vec<String>,
    /// How long a missing seq is waited for before it is declared lost and the ack moves on.
    #[serde(
        default = "default_gap_horizon",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub gap_horizon: Duration,
    /// A zone reading older than this is stale and not used for its room's occupancy.
    #[serde(
        default = "default_zone_max_age",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub zone_max_age: Duration,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    pub cert: PathBuf,
    pub key: PathBuf,
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// `[privacy]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Privacy {
    #[serde(
        default = "default_raw",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub raw_retention: Duration,
    #[serde(
        default = "default_agg",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub aggregate_retention: Duration,
    #[serde(default = "default_min_count")]
    pub public_min_count: u32,
}

/// `[limits]`: what one client, one address or everyone together may cost the server.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// MQTT connections open at once (plain and TLS together); more are closed at accept.
    pub max_connections: usize,
    /// Connections that have not yet sent a complete CONNECT, in all.
    pub max_pending: usize,
    /// Connections that have not yet sent a complete CONNECT, per source address.
    pub max_pending_per_ip: usize,
    /// From TCP accept to a complete CONNECT (the TLS handshake included); slower is closed.
    #[serde(deserialize_with = "duration_de", serialize_with = "duration_ser")]
    pub connect_timeout: Duration,
    /// Publishes per second one client may make on average; faster ones wait (nothing is dropped).
    pub publish_rate: u32,
    /// Publishes one client may make at once before `publish_rate` applies.
    pub publish_burst: u32,
    /// HTTP connections open at once; more are closed at accept (the default leaves the file
    /// descriptors every sensor's MQTT connection needs).
    pub max_http_connections: usize,
    /// An HTTP connection with no request for this long is closed.
    #[serde(deserialize_with = "duration_de", serialize_with = "duration_ser")]
    pub http_idle_timeout: Duration,
    /// A PostgreSQL-wire connection with no message for this long is closed.
    #[serde(deserialize_with = "duration_de", serialize_with = "duration_ser")]
    pub sql_idle_timeout: Duration,
    /// PostgreSQL-wire connections open at once; more are refused (SQLSTATE 53300) before any
    /// password is checked.
    pub max_sql_connections: usize,
    /// One SQL statement (planning and sending its rows) may run this long; then it is
    /// cancelled (SQLSTATE 57014).
    #[serde(deserialize_with = "duration_de", serialize_with = "duration_ser")]
    pub sql_statement_timeout: Duration,
    /// Memory one PostgreSQL session's statements may hold at once (sorts, joins, aggregates),
    /// in bytes or as "512MiB", "1GiB"; more fails the statement. Nothing spills to disk.
    #[serde(deserialize_with = "bytes_de", serialize_with = "bytes_ser")]
    pub sql_memory_limit: u64,
}

/// `[integrations]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Integrations {
    #[serde(default)]
    pub home_assistant: bool,
}

/// What a reader of SQL and the HTTP API may do.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// SQL and the API, exact numbers.
    Steward,
    /// The API only.
    Viewer,
}

/// `[[users]]`: SQL and HTTP API readers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct User {
    pub name: String,
    pub password_hash: String,
    pub role: Role,
    /// May record head counts (`POST /api/v1/rooms/{id}/headcounts`) though not a steward:
    /// someone a steward authorises, as a viewer. Stewards always may.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub headcounts: bool,
}

impl User {
    /// May this user record head counts?
    pub fn records_headcounts(&self) -> bool {
        self.role == Role::Steward || self.headcounts
    }
}

/// `[[mqtt_readers]]`: MQTT clients (building automation) that may subscribe to derived topics.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttReader {
    pub name: String,
    pub password_hash: String,
    /// Topic filters under `tellijn/v1/rooms/` or `tellijn/v1/buildings/`.
    pub topics: Vec<String>,
}

/// `[[buildings]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Building {
    pub id: String,
    pub name: String,
}

/// What a room is used for.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum RoomKind {
    LectureHall,
    Study,
    Office,
    Meeting,
    Hall,
}

impl RoomKind {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RoomKind::LectureHall => "lecture-hall",
            RoomKind::Study => "study",
            RoomKind::Office => "office",
            RoomKind::Meeting => "meeting",
            RoomKind::Hall => "hall",
        }
    }
}

/// `[[rooms]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Room {
    pub id: String,
    pub building: String,
    pub name: String,
    pub kind: RoomKind,
    pub capacity: u32,
    #[serde(default)]
    pub public: bool,
    #[serde(
        default = "default_vacancy",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub vacancy_delay: Duration,
    #[serde(default)]
    pub reset: Option<String>,
}

/// A counting line of a sensor.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub line: String,
    /// A room or building id: crossing "in" enters it.
    pub into: String,
    /// A room or building id that crossing "in" leaves.
    #[serde(default)]
    pub from: Option<String>,
}

/// A counting zone of a sensor.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Zone {
    pub zone: String,
    pub room: String,
}

/// `[[sensors]]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sensor {
    pub id: String,
    pub secret_hash: String,
    #[serde(default)]
    pub lines: Vec<Line>,
    #[serde(default)]
    pub zones: Vec<Zone>,
}

/// `[[calendars]]`: one iCalendar (RFC 5545) feed. Exactly one of `room` (every event books
/// that room, as a room mailbox publishes) and `locations` (each event's `LOCATION` names its
/// room, as timetabling systems export) is given.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Calendar {
    /// `https://…`, `http://…` or `file:///…`.
    pub url: String,
    #[serde(
        default = "default_calendar_refresh",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub refresh: Duration,
    #[serde(default)]
    pub room: Option<String>,
    /// `LOCATION` text (trimmed, compared case-insensitively) → room id.
    #[serde(default)]
    pub locations: std::collections::BTreeMap<String, String>,
    /// A file holding a bearer token sent with HTTP(S) requests (never logged).
    #[serde(default)]
    pub token_file: Option<PathBuf>,
}

/// `[bookings]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Bookings {
    /// A booking with nobody present this long after its start is a no-show.
    #[serde(
        default = "default_no_show_after",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub no_show_after: Duration,
    /// A room of a `study_place_kinds` kind, empty and unbooked this long, is listed as an
    /// open study place until shortly before its next booking.
    #[serde(
        default = "default_study_place_min",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub study_place_min: Duration,
    /// The room kinds that may become open study places (public rooms only).
    #[serde(default = "default_study_place_kinds")]
    pub study_place_kinds: Vec<RoomKind>,
    /// An open study place disappears this long before its next booking starts.
    #[serde(
        default = "default_study_place_margin",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub study_place_margin: Duration,
    /// Bookings are kept this far ahead (at least 28 days).
    #[serde(
        default = "default_bookings_horizon",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub horizon: Duration,
    /// The largest feed body read; a bigger one is refused and the last good state kept.
    #[serde(
        default = "default_feed_max_bytes",
        deserialize_with = "bytes_de",
        serialize_with = "bytes_ser"
    )]
    pub feed_max_bytes: u64,
    /// Whether a head count of now may also set its room's occupancy to the number counted
    /// (`"reset": true` in `POST /api/v1/rooms/{id}/headcounts`; audited). Off by default:
    /// the number drives HVAC, so the operator decides who may change it by hand.
    #[serde(default)]
    pub headcount_resets: bool,
}

impl Default for Bookings {
    fn default() -> Self {
        Bookings {
            no_show_after: default_no_show_after(),
            study_place_min: default_study_place_min(),
            study_place_kinds: default_study_place_kinds(),
            study_place_margin: default_study_place_margin(),
            horizon: default_bookings_horizon(),
            feed_max_bytes: default_feed_max_bytes(),
            headcount_resets: false,
        }
    }
}

impl Campus {
    /// The sensor with this id.
    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.id == id)
    }
    /// The room with this id.
    pub fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.id == id)
    }
}
