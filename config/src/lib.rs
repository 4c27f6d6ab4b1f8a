//! # Tellijn config: the shared ground of the server roles
//!
//! What the broker, the processors and the queries all read, kept in one small crate so none
//! of them has to depend on another.
//!
//! # Layout
//! - [`campus`]: `campus.toml`, parsed and validated in one pass that reports every error with
//!   its file and key; a folder: the model (one struct per table), defaults, units, loading
//!   (and naming the key at a TOML error) and validation.
//! - [`metrics`]: every Prometheus metric name and label set, typed, in one place.
//! - [`process`]: process metrics (RSS, CPU, open fds) and data-disk space, read per scrape.
//! - [`audit`]: the audit log (JSON lines under `{data}/audit/`), never carrying a payload,
//!   written by its own thread from a bounded queue so no caller waits for the disk.
//! - [`refusals`]: unauthenticated refusals aggregated per reason and minute before they reach
//!   the audit log, and the bound on every attacker-chosen field that is written.
//! - [`health`]: whether the history and the audit log can be written (`/healthz`).
//! - [`secrets`]: every argon2id hash and verification (production and demo cost, bounded
//!   verification, the dummy hash unknown users are verified against, the demo-password check
//!   `serve` runs and its cache).

pub mod audit;
pub mod campus;
pub mod health;
pub mod metrics;
pub mod process;
pub mod refusals;
pub mod secrets;

pub use audit::{AuditEvent, AuditLog};
pub use campus::{Campus, ConfigError, ConfigErrors};
pub use metrics::Metrics;
pub use refusals::Refusals;
pub use tellijn_wire::is_valid_id;
