//! The explicit default of every optional key of `campus.toml`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::model::{Limits, Privacy, Server};

pub(super) fn default_zone_max_age() -> Duration {
    Duration::from_secs(15 * 60)
}

pub(super) fn default_gap_horizon() -> Duration {
    Duration::from_secs(600)
}

pub(super) fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}

pub(super) fn default_mqtt() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1883))
}

pub(super) fn default_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}

pub(super) fn default_postgres() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5433))
}

pub(super) fn default_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

pub(super) fn default_timezone() -> String {
    "Europe/Amsterdam".into()
}

pub(super) fn default_flush() -> Duration {
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

pub(super) fn default_raw() -> Duration {
    Duration::from_secs(30 * 86400)
}

pub(super) fn default_agg() -> Duration {
    Duration::from_secs(730 * 86400)
}

pub(super) fn default_min_count() -> u32 {
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

pub(super) fn default_vacancy() -> Duration {
    Duration::from_secs(600)
}

pub(super) fn default_calendar_refresh() -> Duration {
    Duration::from_secs(300)
}

pub(super) fn default_no_show_after() -> Duration {
    Duration::from_secs(15 * 60)
}

pub(super) fn default_study_place_min() -> Duration {
    Duration::from_secs(60 * 60)
}

pub(super) fn default_study_place_kinds() -> Vec<super::model::RoomKind> {
    vec![super::model::RoomKind::LectureHall]
}

pub(super) fn default_study_place_margin() -> Duration {
    Duration::from_secs(10 * 60)
}

pub(super) fn default_bookings_horizon() -> Duration {
    Duration::from_secs(28 * 24 * 3600)
}

pub(super) fn default_feed_max_bytes() -> u64 {
    16 << 20
}
