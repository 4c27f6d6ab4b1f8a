//! `campus.toml`: parsed, defaulted and validated in one pass that reports every error.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One thing wrong with a config: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {} {}", self.file, self.key, self.message)
        }
    }
}

/// Every error found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

fn duration_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "must be a duration such as \"10s\", \"10m\" or \"30d\" (found {s:?}: {e})"
        ))
    })
}

/// The smallest `[limits] sql_memory_limit`: below it even catalogue queries fail.
const MIN_SQL_MEMORY: u64 = 16 << 20;

const BYTE_UNITS: [(&str, u64); 9] = [
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
    ("TB", 1_000_000_000_000),
    ("GB", 1_000_000_000),
    ("MB", 1_000_000),
    ("KB", 1_000),
    ("B", 1),
];

/// A size in bytes: "512MiB", "1GiB", "1500MB", "4096" or "4096B".
pub fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = BYTE_UNITS
        .iter()
        .find_map(|(suffix, unit)| {
            let n = t.len().checked_sub(suffix.len())?;
            let (number, tail) = t.split_at_checked(n)?;
            tail.eq_ignore_ascii_case(suffix)
                .then_some((number.trim(), *unit))
        })
        .unwrap_or((t, 1));
    number.parse::<u64>().ok()?.checked_mul(unit)
}

/// A size in bytes in the largest binary unit that divides it.
pub fn format_bytes(n: u64) -> String {
    for (suffix, unit) in &BYTE_UNITS[..4] {
        if n != 0 && n.is_multiple_of(*unit) {
            return format!("{}{suffix}", n / unit);
        }
    }
    format!("{n}B")
}

fn bytes_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Number(u64),
        Text(String),
    }
    match Size::deserialize(d)? {
        Size::Number(n) => Ok(n),
        Size::Text(s) => parse_bytes(&s).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "must be a size such as \"512MiB\", \"1GiB\" or a number of bytes (found {s:?})"
            ))
        }),
    }
}

fn bytes_ser<S: serde::Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_bytes(*n))
}

fn duration_ser<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

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

fn default_zone_max_age() -> Duration {
    Duration::from_secs(15 * 60)
}

fn default_gap_horizon() -> Duration {
    Duration::from_secs(600)
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_mqtt() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}
fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_postgres() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5433))
}
fn default_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}
fn default_timezone() -> String {
    "Europe/Amsterdam".into()
}
fn default_flush() -> Duration {
    Duration::from_secs(10)
}

impl Default for Server {
    fn default() -> Self {
        Server {
            data_dir: default_data_dir(),
            mqtt: default_mqtt(),
            mqtts: None,
            http: default_http(),
            postgres: default_postgres(),
            metrics: default_metrics(),
            metrics_token_sha256: None,
            timezone: default_timezone(),
            flush_interval: default_flush(),
            anonymous_read: Vec::new(),
            gap_horizon: default_gap_horizon(),
            zone_max_age: default_zone_max_age(),
        }
    }
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

fn default_raw() -> Duration {
    Duration::from_secs(30 * 86400)
}
fn default_agg() -> Duration {
    Duration::from_secs(730 * 86400)
}
fn default_min_count() -> u32 {
    5
}

impl Default for Privacy {
    fn default() -> Self {
        Privacy {
            raw_retention: default_raw(),
            aggregate_retention: default_agg(),
            public_min_count: default_min_count(),
        }
    }
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

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 30_000,
            max_pending: 4_096,
            max_pending_per_ip: 256,
            connect_timeout: Duration::from_secs(10),
            publish_rate: 50,
            publish_burst: 500,
            max_http_connections: 256,
            http_idle_timeout: Duration::from_secs(60),
            sql_idle_timeout: Duration::from_secs(15 * 60),
            max_sql_connections: 64,
            sql_statement_timeout: Duration::from_secs(5 * 60),
            sql_memory_limit: 1 << 30,
        }
    }
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

fn default_vacancy() -> Duration {
    Duration::from_secs(600)
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

impl Campus {
    /// Reads and validates a config file; every error names the file and the key.
    pub fn load(path: &Path) -> Result<Campus, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                key: String::new(),
                message: format!("cannot be read ({e}); check the path given to --config."),
            }])
        })?;
        Campus::parse(&text, &file)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Campus, ConfigErrors> {
        let campus: Campus = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| locate(text, s.start)).unwrap_or_default();
            let mut message = e.message().trim_end_matches('.').to_owned() + ".";
            let at_header = e
                .span()
                .and_then(|s| text.get(s.start..))
                .and_then(|rest| rest.lines().next())
                .is_some_and(|l| l.starts_with(key.as_str()) || l.contains(&format!("[{key}")));
            if at_header && message.starts_with("unknown field") && !key.contains(['.', '[']) {
                message = format!(
                    "is not a table campus.toml has; a table may stand anywhere in the file (after [[sensors]] too), and these exist: {}",
                    message
                        .split_once("expected one of ")
                        .map_or(message.as_str(), |(_, known)| known)
                );
            }
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                key,
                message,
            }])
        })?;
        let errors = campus.validate(file);
        if errors.is_empty() {
            Ok(campus)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The config as TOML (what `demo` writes so it can be inspected and re-used).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// SHA-256 (hex) of the config as loaded, for the audit log and transparency.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_toml().as_bytes()))
    }

    /// Every validation error, in file order.
    pub fn validate(&self, file: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut err = |key: String, message: String| {
            errs.push(ConfigError {
                file: file.to_owned(),
                key,
                message,
            })
        };
        let mut ids: BTreeMap<String, &'static str> = BTreeMap::new();
        let mut place_ids: BTreeSet<&str> = BTreeSet::new();

        if self.server.flush_interval.is_zero() {
            err(
                "server.flush_interval".into(),
                "must be longer than 0s (found 0s).".into(),
            );
        }
        let l = &self.limits;
        for (key, value) in [
            ("max_connections", l.max_connections as u64),
            ("max_pending", l.max_pending as u64),
            ("max_pending_per_ip", l.max_pending_per_ip as u64),
            ("publish_rate", u64::from(l.publish_rate)),
            ("publish_burst", u64::from(l.publish_burst)),
            ("max_http_connections", l.max_http_connections as u64),
            ("max_sql_connections", l.max_sql_connections as u64),
        ] {
            if value == 0 {
                err(
                    format!("limits.{key}"),
                    "must be at least 1 (found 0); leave it out for the default.".into(),
                );
            }
        }
        for (key, value) in [
            ("connect_timeout", l.connect_timeout),
            ("http_idle_timeout", l.http_idle_timeout),
            ("sql_idle_timeout", l.sql_idle_timeout),
            ("sql_statement_timeout", l.sql_statement_timeout),
        ] {
            if value.is_zero() {
                err(
                    format!("limits.{key}"),
                    "must be longer than 0s (found 0s); leave it out for the default.".into(),
                );
            }
        }
        if l.sql_memory_limit < MIN_SQL_MEMORY {
            err(
                "limits.sql_memory_limit".into(),
                format!(
                    "must be at least 16MiB (found {}); leave it out for the default (1GiB).",
                    format_bytes(l.sql_memory_limit)
                ),
            );
        }
        if self.server.timezone.parse::<chrono_tz::Tz>().is_err() {
            err(
                "server.timezone".into(),
                format!(
                    "must name an IANA time zone such as \"Europe/Amsterdam\" (found {:?}).",
                    self.server.timezone
                ),
            );
        }
        for (i, f) in self.server.anonymous_read.iter().enumerate() {
            if let Err(m) = anonymous_filter(f) {
                err(format!("server.anonymous_read[{i}]"), m);
            }
        }
        if let Some(h) = &self.server.metrics_token_sha256
            && (h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            err(
                "server.metrics_token_sha256".into(),
                "must be 64 hex digits, the SHA-256 of the token (`printf %s \"$TOKEN\" | sha256sum`).".into(),
            );
        }
        if self.tls.is_none() && self.server.mqtts.is_some() {
            err(
                "server.mqtts".into(),
                "needs a [tls] section with cert and key.".into(),
            );
        }
        if self.privacy.raw_retention.is_zero() {
            err(
                "privacy.raw_retention".into(),
                "must be longer than 0s.".into(),
            );
        }
        if self.privacy.aggregate_retention.is_zero() {
            err(
                "privacy.aggregate_retention".into(),
                "must be longer than 0s.".into(),
            );
        }
        let mut names = BTreeSet::new();
        for (i, u) in self.users.iter().enumerate() {
            if u.name.is_empty() || !names.insert(u.name.as_str()) {
                err(
                    format!("users[{i}].name"),
                    format!("must be a unique, non-empty name (found {:?}).", u.name),
                );
            }
            if let Err(m) = crate::secrets::check_phc(&u.password_hash) {
                err(format!("users[{i}].password_hash"), m);
            }
        }
        for (i, r) in self.mqtt_readers.iter().enumerate() {
            if !crate::is_valid_id(&r.name) || !names.insert(r.name.as_str()) {
                err(
                    format!("mqtt_readers[{i}].name"),
                    format!(
                        "must be a unique id of a-z, 0-9 and '-' (found {:?}).",
                        r.name
                    ),
                );
            }
            if let Err(m) = crate::secrets::check_phc(&r.password_hash) {
                err(format!("mqtt_readers[{i}].password_hash"), m);
            }
            for (j, f) in r.topics.iter().enumerate() {
                if !derived_filter(f) {
                    err(
                        format!("mqtt_readers[{i}].topics[{j}]"),
                        format!(
                            "must be a topic filter under tellijn/v1/rooms/, tellijn/v1/buildings/, tellijn/v1/public/ or homeassistant/ (found {f:?})."
                        ),
                    );
                }
            }
        }
        let mut check_id = |key: String,
                            id: &'_ str,
                            what: &'static str,
                            err: &mut dyn FnMut(String, String)| {
            if !crate::is_valid_id(id) {
                err(
                    key,
                    format!(
                        "must be an id of a-z, 0-9 and '-', at most 64 characters (found {id:?})."
                    ),
                );
            } else if let Some(prev) = ids.insert(id.to_owned(), what) {
                err(
                    key,
                    format!("{id:?} is already used by a {prev}; ids must be unique."),
                );
            }
        };
        let buildings: BTreeSet<&str> = self.buildings.iter().map(|b| b.id.as_str()).collect();
        for (i, b) in self.buildings.iter().enumerate() {
            check_id(format!("buildings[{i}].id"), &b.id, "building", &mut err);
            place_ids.insert(&b.id);
        }
        for (i, r) in self.rooms.iter().enumerate() {
            check_id(format!("rooms[{i}].id"), &r.id, "room", &mut err);
            place_ids.insert(&r.id);
            if !buildings.contains(r.building.as_str()) {
                err(
                    format!("rooms[{i}].building"),
                    format!("{:?} is not a building in [[buildings]].", r.building),
                );
            }
            if r.capacity == 0 {
                err(
                    format!("rooms[{i}].capacity"),
                    "must be a positive integer (found 0).".into(),
                );
            }
            if r.public && r.kind == RoomKind::Office {
                err(
                    format!("rooms[{i}].public"),
                    "must be false for an office: offices are never listed publicly.".into(),
                );
            }
            if let Some(reset) = &r.reset
                && parse_reset(reset).is_none()
            {
                err(
                    format!("rooms[{i}].reset"),
                    format!("must be a local time \"HH:MM\" (found {reset:?})."),
                );
            }
        }
        let rooms: BTreeSet<&str> = self.rooms.iter().map(|r| r.id.as_str()).collect();
        for (i, s) in self.sensors.iter().enumerate() {
            check_id(format!("sensors[{i}].id"), &s.id, "sensor", &mut err);
            if let Err(m) = crate::secrets::check_phc(&s.secret_hash) {
                err(format!("sensors[{i}].secret_hash"), m);
            }
            if s.lines.is_empty() && s.zones.is_empty() {
                err(
                    format!("sensors[{i}]"),
                    "has no lines and no zones; give it at least one.".into(),
                );
            }
            let mut seen = BTreeSet::new();
            for (j, l) in s.lines.iter().enumerate() {
                if !crate::is_valid_id(&l.line) || !seen.insert(l.line.as_str()) {
                    err(
                        format!("sensors[{i}].lines[{j}].line"),
                        format!("must be a unique id (found {:?}).", l.line),
                    );
                }
                if !place_ids.contains(l.into.as_str()) {
                    err(
                        format!("sensors[{i}].lines[{j}].into"),
                        format!("{:?} is not a room or building.", l.into),
                    );
                }
                if let Some(from) = &l.from {
                    if !place_ids.contains(from.as_str()) {
                        err(
                            format!("sensors[{i}].lines[{j}].from"),
                            format!("{from:?} is not a room or building."),
                        );
                    } else if from == &l.into {
                        err(
                            format!("sensors[{i}].lines[{j}].from"),
                            "must differ from into.".into(),
                        );
                    }
                }
            }
            let mut seen = BTreeSet::new();
            for (j, z) in s.zones.iter().enumerate() {
                if !crate::is_valid_id(&z.zone) || !seen.insert(z.zone.as_str()) {
                    err(
                        format!("sensors[{i}].zones[{j}].zone"),
                        format!("must be a unique id (found {:?}).", z.zone),
                    );
                }
                if !rooms.contains(z.room.as_str()) {
                    err(
                        format!("sensors[{i}].zones[{j}].room"),
                        format!("{:?} is not a room in [[rooms]].", z.room),
                    );
                }
            }
        }
        errs
    }

    /// The sensor with this id.
    pub fn sensor(&self, id: &str) -> Option<&Sensor> {
        self.sensors.iter().find(|s| s.id == id)
    }
    /// The room with this id.
    pub fn room(&self, id: &str) -> Option<&Room> {
        self.rooms.iter().find(|r| r.id == id)
    }
}

/// `"HH:MM"` → (hour, minute).
pub fn parse_reset(s: &str) -> Option<(u32, u32)> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some((h, m))
}

/// A topic filter that stays inside the derived topics.
/// Is `f` a well-formed topic filter: no empty level, `#` only as the whole last level, `+`
/// only as a whole level?
fn well_formed_filter(f: &str) -> bool {
    f.split('/').all(|l| !l.is_empty())
        && f.split('/')
            .enumerate()
            .all(|(i, l)| !l.contains('#') || (l == "#" && i == f.split('/').count() - 1))
        && f.split('/').all(|l| !l.contains('+') || l == "+")
}

/// An anonymous grant: only within the banded public tree, decided by topic matching (so
/// `tellijn/v1/+/rooms/#`, `+/#` and `tellijn/#` are refused like `tellijn/v1/rooms/#`).
pub fn anonymous_filter(f: &str) -> Result<(), String> {
    use tellijn_wire::topic::{PUBLIC_TREE, filter_within};
    if !well_formed_filter(f) {
        return Err(format!(
            "is not a well-formed topic filter (found {f:?}); grant {PUBLIC_TREE:?} for the public."
        ));
    }
    if !filter_within(f, PUBLIC_TREE) {
        return Err(format!(
            "could reach topics outside the public tree {PUBLIC_TREE:?} (found {f:?}): those carry offices and exact small numbers. Grant {PUBLIC_TREE:?} to anonymous readers (public rooms, small numbers as bands, as the free-places page shows them); give building automation a named [[mqtt_readers]] entry with the topics it needs instead."
        ));
    }
    Ok(())
}

fn derived_filter(f: &str) -> bool {
    (f.starts_with("tellijn/v1/rooms/")
        || f.starts_with("tellijn/v1/buildings/")
        || f.starts_with("tellijn/v1/public/")
        || f.starts_with("homeassistant/"))
        && well_formed_filter(f)
}

/// The name of a `[table]` or `[[array]]` header line.
fn header_name(line: &str) -> Option<&str> {
    let t = line.trim();
    let inner = t
        .strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
    Some(inner.trim())
}

/// The dotted key path at a byte offset of a TOML text, best effort (`rooms[2].capacity`).
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in before.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts
                .entry(name.to_owned())
                .and_modify(|c| *c += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.to_owned();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let whole_line = text[before.len() - line.len()..]
        .lines()
        .next()
        .unwrap_or("");
    // The error is in a table header itself (an unknown table, wherever it stands): name the
    // table, not the one before it.
    if let Some(name) = header_name(whole_line) {
        return name.to_owned();
    }
    let key = text[before.len() - line.len()..]
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or("");
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression (issue 17): a top-level table after `[[sensors]]` was reported as
    /// `sensors[1] unknown field …`.
    #[test]
    fn an_unknown_table_after_sensors_is_named_as_itself() {
        let text = format!("{}\n[bookings]\nsource = \"x.ics\"\n", example());
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert_eq!(e.0[0].key, "bookings", "{e}");
        assert!(
            e.to_string()
                .starts_with("campus.toml: bookings is not a table campus.toml has;"),
            "{e}"
        );
        assert!(e.0[0].message.contains("`privacy`"), "{e}");
        // A known table after [[sensors]] is fine.
        let text = format!("{}\n[limits]\npublish_rate = 10\n", example());
        assert!(Campus::parse(&text, "campus.toml").is_ok());
    }

    const HASH: &str =
        "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

    fn example() -> String {
        format!(
            r#"
[server]
data_dir = "./data"
flush_interval = "10s"

[privacy]
raw_retention = "30d"

[[users]]
name = "steward"
password_hash = "{HASH}"
role = "steward"

[[buildings]]
id = "lib"
name = "University Library"

[[rooms]]
id = "lib-2-study"
building = "lib"
name = "Study hall"
kind = "study"
capacity = 120
public = true
vacancy_delay = "10m"
reset = "03:00"

[[rooms]]
id = "lib-2-hall"
building = "lib"
name = "Hall"
kind = "hall"
capacity = 50

[[sensors]]
id = "lib-2-door-a"
secret_hash = "{HASH}"
lines = [ {{ line = "main", into = "lib-2-study", from = "lib-2-hall" }} ]
zones = [ {{ zone = "seats", room = "lib-2-study" }} ]
"#
        )
    }

    #[test]
    fn example_is_valid() {
        let c = Campus::parse(&example(), "campus.toml").unwrap();
        assert_eq!(c.rooms[0].capacity, 120);
        assert_eq!(c.server.flush_interval, Duration::from_secs(10));
        assert_eq!(c.rooms[1].vacancy_delay, Duration::from_secs(600));
        // What demo writes must load again unchanged.
        assert_eq!(Campus::parse(&c.to_toml(), "x").unwrap(), c);
    }

    #[test]
    fn negative_capacity_names_key() {
        let text = example().replace("capacity = 120", "capacity = -4");
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert_eq!(e.0.len(), 1);
        assert_eq!(e.0[0].key, "rooms[0].capacity", "{e}");
        assert!(
            e.to_string().starts_with("campus.toml: rooms[0].capacity"),
            "{e}"
        );
    }

    #[test]
    fn all_errors_at_once() {
        let text = example()
            .replace("capacity = 120", "capacity = 0")
            .replace(
                "building = \"lib\"\nname = \"Hall\"",
                "building = \"nope\"\nname = \"Hall\"",
            )
            .replace("into = \"lib-2-study\"", "into = \"mars\"")
            .replace("kind = \"study\"", "kind = \"office\"")
            .replace(
                &format!("secret_hash = \"{HASH}\""),
                "secret_hash = \"plain\"",
            );
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "rooms[0].capacity",
                "rooms[0].public",
                "rooms[1].building",
                "sensors[0].secret_hash",
                "sensors[0].lines[0].into"
            ],
            "{e}"
        );
        assert_eq!(
            e.0[0].to_string(),
            "campus.toml: rooms[0].capacity must be a positive integer (found 0)."
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        let text = example().replace(
            "flush_interval = \"10s\"",
            "flush_interval = \"10s\"\nflush = 3",
        );
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert!(e.to_string().contains("unknown field `flush`"), "{e}");
        assert_eq!(e.0[0].key, "server.flush");
    }

    #[test]
    fn bad_timezone_is_named() {
        let text = example().replace(
            "flush_interval = \"10s\"",
            "flush_interval = \"10s\"\ntimezone = \"Mars/Olympus\"",
        );
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert_eq!(e.0[0].key, "server.timezone");
        assert!(e.to_string().contains("Mars/Olympus"), "{e}");
    }

    #[test]
    fn bad_duration() {
        let text = example().replace("raw_retention = \"30d\"", "raw_retention = \"a month\"");
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert_eq!(e.0[0].key, "privacy.raw_retention", "{e}");
        assert!(e.to_string().contains("must be a duration"), "{e}");
    }

    #[test]
    fn limits_have_defaults_and_refuse_zero() {
        let c = Campus::parse(&example(), "campus.toml").unwrap();
        assert_eq!(c.limits, Limits::default());
        let text = format!(
            "{}\n[limits]\npublish_rate = 0\nmax_http_connections = 0\nconnect_timeout = \"0s\"\n",
            example()
        );
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "limits.publish_rate",
                "limits.max_http_connections",
                "limits.connect_timeout"
            ],
            "{e}"
        );
        assert_eq!(Limits::default().max_http_connections, 256);
        let text = format!(
            "{}\n[limits]\nmax_sql_connections = 0\nsql_statement_timeout = \"0s\"\nsql_memory_limit = \"1MiB\"\n",
            example()
        );
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "limits.max_sql_connections",
                "limits.sql_statement_timeout",
                "limits.sql_memory_limit"
            ],
            "{e}"
        );
        let text = format!(
            "{}\n[limits]\nsql_memory_limit = \"512MiB\"\nsql_statement_timeout = \"30s\"\n",
            example()
        );
        let c = Campus::parse(&text, "campus.toml").unwrap();
        assert_eq!(c.limits.sql_memory_limit, 512 << 20);
        assert_eq!(c.limits.sql_statement_timeout, Duration::from_secs(30));
        let text = format!("{}\n[limits]\nsql_memory_limit = \"lots\"\n", example());
        let e = Campus::parse(&text, "campus.toml").unwrap_err();
        assert!(e.to_string().contains("must be a size"), "{e}");
        let text = format!("{}\n[limits]\nmax_pending_per_ip = 3\n", example());
        let c = Campus::parse(&text, "campus.toml").unwrap();
        assert_eq!(c.limits.max_pending_per_ip, 3);
        assert_eq!(c.limits.publish_rate, Limits::default().publish_rate);
    }

    #[test]
    fn sizes_parse_in_bytes_and_units() {
        assert_eq!(parse_bytes("4096"), Some(4096));
        assert_eq!(parse_bytes("4096B"), Some(4096));
        assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
        assert_eq!(parse_bytes("1 gib"), Some(1 << 30));
        assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
        assert_eq!(parse_bytes("MiB"), None);
        assert_eq!(parse_bytes("-1MiB"), None);
        assert_eq!(parse_bytes("99999999999TiB"), None);
        assert_eq!(format_bytes(1 << 30), "1GiB");
        assert_eq!(format_bytes(1500), "1500B");
    }

    #[test]
    fn reset_times() {
        assert_eq!(parse_reset("03:00"), Some((3, 0)));
        assert_eq!(parse_reset("24:00"), None);
        assert_eq!(parse_reset("3:00"), None);
    }

    #[test]
    fn anonymous_grants_reach_only_the_public_tree() {
        let outside = |f: &str| {
            format!(
                "campus.toml: server.anonymous_read[0] could reach topics outside the public tree \"tellijn/v1/public/#\" (found {f:?}): those carry offices and exact small numbers. Grant \"tellijn/v1/public/#\" to anonymous readers (public rooms, small numbers as bands, as the free-places page shows them); give building automation a named [[mqtt_readers]] entry with the topics it needs instead."
            )
        };
        let malformed = |f: &str| {
            format!(
                "campus.toml: server.anonymous_read[0] is not a well-formed topic filter (found {f:?}); grant \"tellijn/v1/public/#\" for the public."
            )
        };
        for (filter, refusal) in [
            ("tellijn/v1/public/#", None),
            ("tellijn/v1/public/rooms/#", None),
            ("tellijn/v1/public/rooms/+", None),
            ("tellijn/v1/public/buildings/lib", None),
            ("tellijn/v1/public/+/lib-2-study", None),
            ("tellijn/v1/rooms/#", Some(outside("tellijn/v1/rooms/#"))),
            (
                "tellijn/v1/buildings/#",
                Some(outside("tellijn/v1/buildings/#")),
            ),
            (
                "tellijn/v1/rooms/lib-2-study/occupancy",
                Some(outside("tellijn/v1/rooms/lib-2-study/occupancy")),
            ),
            (
                "tellijn/v1/+/rooms/#",
                Some(outside("tellijn/v1/+/rooms/#")),
            ),
            ("tellijn/v1/+/#", Some(outside("tellijn/v1/+/#"))),
            ("tellijn/v1/#", Some(outside("tellijn/v1/#"))),
            ("tellijn/#", Some(outside("tellijn/#"))),
            ("+/#", Some(outside("+/#"))),
            ("#", Some(outside("#"))),
            ("+/v1/public/#", Some(outside("+/v1/public/#"))),
            ("homeassistant/#", Some(outside("homeassistant/#"))),
            // `a/#` matches `a` itself too (MQTT 4.7.1.2): nothing is published there.
            ("tellijn/v1/public", None),
            (
                "tellijn/v1/public/#/x",
                Some(malformed("tellijn/v1/public/#/x")),
            ),
            (
                "tellijn/v1/public/ro+",
                Some(malformed("tellijn/v1/public/ro+")),
            ),
            (
                "tellijn/v1/public//x",
                Some(malformed("tellijn/v1/public//x")),
            ),
        ] {
            let text = example().replace(
                "flush_interval = \"10s\"",
                &format!("flush_interval = \"10s\"\nanonymous_read = [{filter:?}]"),
            );
            match (Campus::parse(&text, "campus.toml"), refusal) {
                (Ok(_), None) => {}
                (Err(e), Some(m)) => {
                    assert_eq!(e.0.len(), 1, "{filter}: {e}");
                    assert_eq!(e.0[0].to_string(), m, "{filter}");
                }
                (Ok(_), Some(_)) => panic!("{filter} was accepted"),
                (Err(e), None) => panic!("{filter} was refused: {e}"),
            }
        }
    }

    #[test]
    fn the_metrics_token_is_a_sha256() {
        let ok = "a".repeat(64);
        for (value, fine) in [
            (ok.as_str(), true),
            ("secret", false),
            (&"g".repeat(64), false),
        ] {
            let text = example().replace(
                "flush_interval = \"10s\"",
                &format!("flush_interval = \"10s\"\nmetrics_token_sha256 = {value:?}"),
            );
            let r = Campus::parse(&text, "campus.toml");
            assert_eq!(r.is_ok(), fine, "{value}: {r:?}");
            if let Err(e) = r {
                assert_eq!(e.0[0].key, "server.metrics_token_sha256");
            }
        }
        let c = Campus::parse(&example(), "campus.toml").unwrap();
        assert_eq!(c.server.metrics, SocketAddr::from(([127, 0, 0, 1], 9464)));
        assert_eq!(c.server.metrics_token_sha256, None);
    }

    #[test]
    fn derived_filters() {
        assert!(derived_filter("tellijn/v1/rooms/#"));
        assert!(derived_filter("tellijn/v1/rooms/+/state"));
        assert!(!derived_filter("tellijn/v1/#"));
        assert!(!derived_filter("tellijn/v1/rooms/#/x"));
        assert!(!derived_filter("tellijn/v1/sensors/#"));
        assert!(!derived_filter("#"));
        assert!(derived_filter("homeassistant/#"));
        assert!(derived_filter("tellijn/v1/public/#"));
    }
}
