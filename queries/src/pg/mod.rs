//! SQL for tools over the PostgreSQL wire protocol (`psql`, DBeaver, Metabase, Grafana).
//!
//! Built on `datafusion-postgres` (query handling, `pg_catalog`, `information_schema`) and its
//! `pgwire` re-export, with three things of Tellijn's own:
//! - [`PasswordStartup`]: password authentication against `[[users]]` (argon2id), never the
//!   library's no-op startup handler. Only role `steward` may log in; a `viewer` is refused with a
//!   message saying the HTTP API is theirs.
//! - read-only by construction ([`crate::readonly`], [`crate::session`]): every statement is
//!   allowed by its kind and its DataFusion plan (DDL, DML, `COPY` and state-changing statements
//!   refused anywhere in the tree, under `EXPLAIN ANALYZE` too), each connection has its own
//!   session state (a `SET` reaches no other session), a memory limit
//!   (`[limits] sql_memory_limit`, nothing spills to disk) and a statement timeout
//!   (`[limits] sql_statement_timeout`).
//! - at most `[limits] max_sql_connections` connections: the next is refused with SQLSTATE
//!   53300 before any password is checked, and counted.
//! - every refused login is reported to a callback (the server counts and audits it).
//! - [`AuditHook`]: every statement a logged-in user runs that reads (queries, `EXPLAIN`,
//!   `SHOW TABLES`/`COLUMNS`, `DECLARE … CURSOR`) is written to the audit log — who, the kind of
//!   statement and the tables it reads ([`crate::access`]), never its text or its results —
//!   before it runs. Simple-protocol statements are audited as they arrive, prepared statements
//!   at each execute (a parse or describe reads no data); catalogue queries (`psql`'s `\d`,
//!   `pg_catalog`, `information_schema`) are audited like any other, with their tables. When the
//!   audit log cannot be written, the statement is refused.
//! - a connection that sends no message for the idle timeout (`[limits] sql_idle_timeout`) is
//!   closed, with PostgreSQL's `idle_session_timeout` error when it is logged in; a statement
//!   that runs long is not idleness.
//!
//! Passwords arrive as PostgreSQL cleartext password messages (the hashes in the config are
//! argon2id, so SCRAM cannot be offered); the endpoint listens on loopback unless configured
//! otherwise. Put it behind TLS or an SSH tunnel before opening it to a network.
//!
//! # Layout
//! - `server`: [`PgServer`], the listener and each connection (limits, timeouts, handlers).
//! - `startup`: [`PasswordStartup`], the login.
//! - `audit`: [`AuditHook`], the audit line before every statement that reads.
//! - [`compat`]: `version()`, `current_setting()`, `to_regtype()`, `server_version` and
//!   savepoints as clients expect them.
//! - [`like_escape`]: `LIKE … ESCAPE 'c'` for any `c` (a plan rewrite).
//! - [`subquery_guard`]: refuses a subquery as a result column over campus tables, which the
//!   library's parser would silently answer with NULL.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::session::SessionLimits;
use tokio::time::Duration;

mod audit;
pub mod compat;
pub mod like_escape;
mod server;
mod startup;
pub mod subquery_guard;

pub use audit::AuditHook;
pub use server::PgServer;
pub use startup::PasswordStartup;

/// Why a login was refused (the label of `tellijn_auth_failures_total` for SQL logins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefusal {
    UnknownUser,
    BadPassword,
    NoSqlRole,
}

impl LoginRefusal {
    pub fn as_str(self) -> &'static str {
        match self {
            LoginRefusal::UnknownUser => "sql_unknown_user",
            LoginRefusal::BadPassword => "sql_bad_password",
            LoginRefusal::NoSqlRole => "sql_role_viewer",
        }
    }
}

/// Called for every refused login with the user name given and the reason.
pub type OnRefusal = Arc<dyn Fn(&str, LoginRefusal, SocketAddr) + Send + Sync>;

/// Called for every connection refused because `[limits] max_sql_connections` are open.
pub type OnBusy = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// What the endpoint and each of its sessions may cost (`[limits]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PgLimits {
    /// `sql_idle_timeout`.
    pub idle: Duration,
    /// `max_sql_connections`.
    pub max_connections: usize,
    /// `sql_memory_limit`, `sql_statement_timeout`.
    pub session: SessionLimits,
}

impl PgLimits {
    pub fn from_config(l: &tellijn_config::campus::Limits) -> PgLimits {
        PgLimits {
            idle: l.sql_idle_timeout,
            max_connections: l.max_sql_connections,
            session: SessionLimits {
                memory: l.sql_memory_limit,
                statement_timeout: l.sql_statement_timeout,
            },
        }
    }
}

#[cfg(test)]
mod tests;
