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

use std::collections::HashMap;
use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::session::{Session, SessionLimits};
use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler, finish_authentication,
    protocol_negotiation, save_startup_parameters_to_metadata,
};
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::api::{ErrorHandler, METADATA_USER};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::startup::Authentication;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use futures::{Sink, SinkExt, StreamExt};
use tellijn_config::campus::{Role, User};
use tellijn_config::{AuditEvent, AuditLog};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

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

/// Connections being told "too many connections" at once; beyond this they are closed unread,
/// so a flood holds no more descriptors than the limit and this.
const REFUSING_AT_ONCE: usize = 16;

/// How long a refused connection may take to send its startup message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// A running PostgreSQL wire endpoint.
pub struct PgServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PgServer {
    /// Binds `addr` and serves `ctx`'s tables to the `[[users]]` with role steward, each
    /// connection in a session of its own, auditing their reads in `audit`, within `limits`.
    pub async fn start(
        ctx: Arc<SessionContext>,
        users: &[User],
        addr: SocketAddr,
        on_refusal: OnRefusal,
        on_busy: OnBusy,
        audit: Arc<AuditLog>,
        limits: PgLimits,
    ) -> std::io::Result<PgServer> {
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot listen for PostgreSQL on {addr} ({e}); choose another address with --postgres ADDR"
                ),
            )
        })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(ctx, users, on_refusal, audit, limits));
        let slots = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
        let refusing = Arc::new(tokio::sync::Semaphore::new(REFUSING_AT_ONCE));
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((socket, peer)) => {
                        let Ok(slot) = slots.clone().try_acquire_owned() else {
                            on_busy(peer);
                            tracing::debug!(%peer, "Refusing a PostgreSQL connection: [limits] max_sql_connections are open.");
                            if let Ok(turn) = refusing.clone().try_acquire_owned() {
                                tokio::spawn(async move {
                                    refuse_busy(socket, limits.max_connections).await;
                                    drop(turn);
                                });
                            }
                            continue;
                        };
                        let h = shared.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_connection(socket, h).await {
                                tracing::debug!("PostgreSQL connection ended: {e}");
                            }
                            drop(slot);
                        });
                    }
                    Err(e) => {
                        tracing::warn!("PostgreSQL accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    }
                }
            }
        });
        Ok(PgServer { addr, task })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a client has to finish startup and authentication (pgwire's own limit).
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Tells a client over `[limits] max_sql_connections` so, as PostgreSQL does: after its
/// startup message, with SQLSTATE 53300; no password is asked for.
async fn refuse_busy(socket: TcpStream, max: usize) {
    let _ = tokio::time::timeout(REFUSAL_TIMEOUT, async {
        let Ok(Some(mut socket)) = negotiate_tls::<()>(socket, None).await else {
            return;
        };
        // The startup message (or whatever comes first) is read and not looked at.
        let _ = socket.next().await;
        let busy = ErrorInfo::new(
            "FATAL".to_owned(),
            "53300".to_owned(), // too_many_connections
            format!(
                "sorry, too many clients already: {max} PostgreSQL connections are open ([limits] max_sql_connections); close idle sessions or try again later"
            ),
        );
        let _ = socket
            .send(PgWireBackendMessage::ErrorResponse(busy.into()))
            .await;
    })
    .await;
}

/// One client connection: pgwire's message loop (`process_socket`) with an idle timeout on
/// every read, in a session of its own. The timer runs only while waiting for the client, never
/// while a statement runs.
async fn serve_connection(socket: TcpStream, shared: Arc<Shared>) -> std::io::Result<()> {
    let idle = shared.limits.idle;
    let startup_deadline = Instant::now() + STARTUP_TIMEOUT;
    let Ok(negotiated) =
        tokio::time::timeout_at(startup_deadline.min(Instant::now() + idle), async {
            negotiate_tls(socket, None).await
        })
        .await
    else {
        return Ok(());
    };
    let Some(mut socket) = negotiated? else {
        // A direct TLS handshake, and no TLS here.
        return Ok(());
    };
    let handlers = Connection::new(shared).map_err(std::io::Error::other)?;
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let starting = matches!(
            socket.state(),
            PgWireConnectionState::AwaitingStartup
                | PgWireConnectionState::AuthenticationInProgress
        );
        let deadline = if starting {
            startup_deadline.min(Instant::now() + idle)
        } else {
            Instant::now() + idle
        };
        let msg = match tokio::time::timeout_at(deadline, socket.next()).await {
            Ok(Some(Ok(msg))) => msg,
            Ok(_) => break,
            Err(_) => {
                if !starting {
                    tracing::debug!(peer = %socket.socket_addr(), "Closing an idle PostgreSQL connection.");
                    let bye = ErrorInfo::new(
                        "FATAL".to_owned(),
                        "57P05".to_owned(), // idle_session_timeout
                        format!(
                            "terminating connection due to idle-session timeout ({} without a message; [limits] sql_idle_timeout)",
                            secs(idle)
                        ),
                    );
                    let _ = tokio::time::timeout(
                        Duration::from_secs(1),
                        socket.send(PgWireBackendMessage::ErrorResponse(bye.into())),
                    )
                    .await;
                }
                break;
            }
        };
        // A Terminate means the client is leaving: drop the socket (as pgwire does).
        if matches!(msg, PgWireFrontendMessage::Terminate(_)) {
            break;
        }
        let is_extended_query = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => msg.is_extended_query(),
        };
        if let Err(mut e) = process_message(
            msg,
            &mut socket,
            startup.clone(),
            simple.clone(),
            extended.clone(),
            copy.clone(),
            cancel.clone(),
        )
        .await
        {
            errors.on_error(&socket, &mut e);
            process_error(&mut socket, e, is_extended_query).await?;
        }
    }
    Ok(())
}

/// A duration in whole seconds, for messages.
fn secs(d: Duration) -> String {
    format!("{}s", d.as_secs())
}

/// What every connection shares.
struct Shared {
    base: Arc<SessionContext>,
    audit: Arc<AuditLog>,
    limits: PgLimits,
    startup: Arc<PasswordStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Shared {
    fn new(
        base: Arc<SessionContext>,
        users: &[User],
        on_refusal: OnRefusal,
        audit: Arc<AuditLog>,
        limits: PgLimits,
    ) -> Shared {
        let manager = Arc::new(ConnectionManager::new());
        Shared {
            base,
            audit,
            limits,
            startup: Arc::new(PasswordStartup {
                users: users
                    .iter()
                    .map(|u| (u.name.clone(), (u.password_hash.clone(), u.role)))
                    .collect(),
                params: DefaultServerParameterProvider::default(),
                keys: RandomPidSecretKeyGenerator::default(),
                manager: manager.clone(),
                on_refusal,
            }),
            cancel: Arc::new(DefaultCancelHandler::new(manager)),
        }
    }
}

/// The handlers of one connection: its own session, the shared login and cancel handlers.
struct Connection {
    session: Arc<Session>,
    shared: Arc<Shared>,
}

impl Connection {
    fn new(shared: Arc<Shared>) -> Result<Connection, datafusion::error::DataFusionError> {
        // Between the read-only check (first) and running what is left (last): refused
        // statements never reach the audit hook; every other one passes it before the hooks
        // that answer it.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(AuditHook {
                audit: shared.audit.clone(),
            }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let session = Session::new(&shared.base, shared.limits.session, hooks)?;
        Ok(Connection {
            session: Arc::new(session),
            shared,
        })
    }
}

impl PgWireServerHandlers for Connection {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.shared.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::cancel::CancelHandler> {
        self.shared.cancel.clone()
    }
}

/// Cleartext-password startup checked against argon2id hashes.
pub struct PasswordStartup {
    users: HashMap<String, (String, Role)>,
    params: DefaultServerParameterProvider,
    keys: RandomPidSecretKeyGenerator,
    manager: Arc<ConnectionManager>,
    on_refusal: OnRefusal,
}

fn fatal(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message,
    )))
}

#[async_trait]
impl StartupHandler for PasswordStartup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::CleartextPassword,
                    ))
                    .await?;
            }
            PgWireFrontendMessage::PasswordMessageFamily(pwd) => {
                let pwd = pwd.into_password()?;
                let user = LoginInfo::from_client_info(client)
                    .user()
                    .unwrap_or_default()
                    .to_owned();
                let peer = client.socket_addr();
                let Some((hash, role)) = self.users.get(&user).cloned() else {
                    // Spend the same effort as for a known user: no user enumeration by timing.
                    verify_password(DUMMY_HASH.to_owned(), "not the password".to_owned()).await;
                    (self.on_refusal)(&user, LoginRefusal::UnknownUser, peer);
                    return Err(PgWireError::InvalidPassword(user));
                };
                let password = pwd.password;
                let ok = verify_password(hash, password).await;
                if !ok {
                    (self.on_refusal)(&user, LoginRefusal::BadPassword, peer);
                    return Err(PgWireError::InvalidPassword(user));
                }
                if role != Role::Steward {
                    (self.on_refusal)(&user, LoginRefusal::NoSqlRole, peer);
                    return Err(fatal(
                        "42501",
                        format!(
                            "user \"{user}\" has role viewer: the HTTP API (/api/v1) is open to it, SQL only to role steward"
                        ),
                    ));
                }
                let (pid, secret_key) = self.keys.generate(client);
                client.set_pid_and_secret_key(pid, secret_key);
                let (handle, guard) = self.manager.register(pid, client.pid_and_secret_key().1);
                client.session_extensions().insert(handle);
                client.session_extensions().insert(guard);
                finish_authentication(client, &self.params).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

// Unknown users are verified against the dummy hash every login shares.
use tellijn_config::secrets::{DUMMY_HASH, verify_password};

/// Writes an audit line for every statement that reads, before it runs (see the module docs).
pub struct AuditHook {
    audit: Arc<AuditLog>,
}

impl AuditHook {
    /// Audits `statement` run by `user`; an error when the line cannot be written.
    async fn audit(
        &self,
        statement: &Statement,
        plan: Option<&LogicalPlan>,
        ctx: &SessionContext,
        user: &str,
    ) -> Option<PgWireResult<Response>> {
        let kind = crate::access::read_kind(statement)?;
        let tables = crate::access::tables_read(statement, plan, ctx).await;
        match self.audit.record(AuditEvent::sql_read(user, kind, &tables)) {
            Ok(()) => None,
            Err(e) => {
                tracing::error!("Writing the audit log failed, refusing a SQL read: {e}");
                Some(Err(PgWireError::UserError(Box::new(ErrorInfo::new(
                    "ERROR".to_owned(),
                    "58030".to_owned(), // io_error
                    "the audit log cannot be written, so no data is read; tell the administrator"
                        .to_owned(),
                )))))
            }
        }
    }
}

/// The user a client logged in as: statements run only after [`PasswordStartup`] let it in
/// under this name.
fn user_of(client: &dyn HookClient) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

#[async_trait]
impl QueryHook for AuditHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.audit(statement, None, ctx, &user_of(client)).await
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        // Parsing reads no data; each execute is audited.
        None
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        self.audit(statement, Some(plan), ctx, &user_of(client))
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use crate::readonly::{Refusal, check};

    /// A steward's session as the server makes it: campus tables, `pg_catalog`, its own state.
    pub(crate) async fn steward_session(dir: &std::path::Path) -> SessionContext {
        let campus = tellijn_config::Campus::parse(
            &std::fs::read_to_string(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../examples/campus.toml"
            ))
            .unwrap(),
            "examples/campus.toml",
        )
        .unwrap();
        let history = crate::History::open(dir, Some(&campus))
            .await
            .unwrap()
            .with_pg_catalog()
            .unwrap();
        crate::session::session_context(history.context(), &SessionLimits::default()).unwrap()
    }

    /// Every statement of `sql` as the server parses it, checked: `Ok` if it may run.
    async fn verdicts(ctx: &SessionContext, sql: &str) -> Vec<Result<(), String>> {
        let parser =
            datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        let statements = parser.parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert!(!statements.is_empty(), "{sql}");
        let mut out = Vec::new();
        for s in &statements {
            out.push(check(s, ctx).await.map(|_| ()).map_err(|e| e.to_string()));
        }
        out
    }

    fn kind(verb: &str) -> String {
        Refusal::Kind {
            verb: verb.to_owned(),
        }
        .to_string()
    }

    fn setting(name: &str) -> String {
        Refusal::Setting {
            name: name.to_owned(),
        }
        .to_string()
    }

    fn form(form: &'static str) -> String {
        Refusal::SetForm { form }.to_string()
    }

    /// Finding 1 of the penetration test and its variants: every form that could write a file,
    /// change a table or the catalogue, or change settings beyond the session is refused with
    /// its reason; reads, psql's catalogue queries and per-session settings still run.
    #[tokio::test]
    async fn reads_pass_writes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = steward_session(dir.path()).await;
        let target = dir.path().join("counts/date=2026-11-30/forged.parquet");
        let t = target.display();
        let row = "('x', 'X', 'b', 'office', 1, true)";
        let copy = format!("COPY (SELECT 'door-a' AS sensor) TO '{t}'");
        let refused: Vec<(String, String)> = vec![
            // Writes, in every case and with comments.
            (
                format!("INSERT INTO rooms VALUES {row}"),
                kind("\"INSERT INTO …\""),
            ),
            (
                format!("insert into rooms values {row}"),
                kind("\"INSERT INTO …\""),
            ),
            (
                format!("/* hi */ INSERT INTO rooms VALUES {row}"),
                kind("\"INSERT INTO …\""),
            ),
            (
                format!("-- hi\nInSeRt INTO \"rooms\" VALUES {row}"),
                kind("\"INSERT INTO …\""),
            ),
            (
                "INSERT INTO counts SELECT * FROM counts".into(),
                kind("\"INSERT INTO …\""),
            ),
            (copy.clone(), kind("\"COPY …\"")),
            ("COPY rooms TO STDOUT".into(), kind("\"COPY …\"")),
            ("COPY rooms FROM '/etc/passwd'".into(), kind("\"COPY …\"")),
            ("DELETE FROM rooms".into(), kind("\"DELETE FROM …\"")),
            ("UPDATE rooms SET capacity = 1".into(), kind("\"UPDATE …\"")),
            ("TRUNCATE rooms".into(), kind("\"TRUNCATE …\"")),
            ("DROP TABLE rooms".into(), kind("\"DROP TABLE …\"")),
            ("DROP VIEW v".into(), kind("\"DROP VIEW …\"")),
            ("CREATE TABLE x (a INT)".into(), kind("\"CREATE TABLE …\"")),
            (
                "CREATE TABLE x AS SELECT * FROM rooms".into(),
                kind("\"CREATE TABLE …\""),
            ),
            (
                "CREATE VIEW v AS SELECT 1".into(),
                kind("\"CREATE VIEW …\""),
            ),
            (
                "CREATE FUNCTION f() RETURNS INT AS 'SELECT 1' LANGUAGE SQL".into(),
                kind("\"CREATE FUNCTION …\""),
            ),
            ("CREATE SCHEMA s".into(), kind("\"CREATE SCHEMA …\"")),
            (
                "ALTER TABLE rooms RENAME TO r".into(),
                kind("\"ALTER TABLE …\""),
            ),
            // EXPLAIN executes what it wraps (ANALYZE) or plans it: refused by what it wraps.
            (
                format!("EXPLAIN ANALYZE {copy}"),
                kind("EXPLAIN of \"COPY …\""),
            ),
            (format!("EXPLAIN {copy}"), kind("EXPLAIN of \"COPY …\"")),
            (
                format!("EXPLAIN (ANALYZE) {copy}"),
                kind("EXPLAIN of \"COPY …\""),
            ),
            (
                format!("explain analyze verbose {copy}"),
                kind("EXPLAIN of \"COPY …\""),
            ),
            (
                format!("EXPLAIN ANALYZE INSERT INTO rooms VALUES {row}"),
                kind("EXPLAIN of \"INSERT INTO …\""),
            ),
            (
                format!("/* x */ EXPLAIN /* y */ ANALYZE INSERT INTO rooms VALUES {row}"),
                kind("EXPLAIN of \"INSERT INTO …\""),
            ),
            (
                "EXPLAIN ANALYZE CREATE TABLE x AS SELECT 1".into(),
                kind("EXPLAIN of \"CREATE TABLE …\""),
            ),
            (
                "EXPLAIN ANALYZE DELETE FROM rooms".into(),
                kind("EXPLAIN of \"DELETE FROM …\""),
            ),
            (
                "EXPLAIN ANALYZE SET datafusion.execution.batch_size = 1".into(),
                kind("EXPLAIN of \"SET …\""),
            ),
            // DML inside a query.
            (
                format!("WITH x AS (SELECT 1) INSERT INTO rooms VALUES {row}"),
                kind("\"INSERT INTO …\" inside a query"),
            ),
            (
                format!("EXPLAIN ANALYZE WITH x AS (SELECT 1) INSERT INTO rooms VALUES {row}"),
                kind("EXPLAIN of \"INSERT INTO …\" inside a query"),
            ),
            (
                "WITH x AS (DELETE FROM rooms RETURNING *) SELECT * FROM x".into(),
                kind("\"DELETE FROM …\" inside a query"),
            ),
            (
                format!("SELECT 1 UNION ALL (WITH y AS (SELECT 1) INSERT INTO rooms VALUES {row})"),
                kind("\"INSERT INTO …\" inside a query"),
            ),
            // Prepared statements in SQL, at PREPARE and at EXECUTE.
            (
                format!("PREPARE p AS INSERT INTO rooms VALUES {row}"),
                kind("\"PREPARE …\""),
            ),
            ("PREPARE p AS SELECT 1".into(), kind("\"PREPARE …\"")),
            ("EXECUTE p".into(), kind("\"EXECUTE …\"")),
            ("DEALLOCATE p".into(), kind("\"DEALLOCATE …\"")),
            // Settings beyond the session, in every quoting and case.
            (
                "SET datafusion.execution.batch_size = 1".into(),
                setting("datafusion.execution.batch_size"),
            ),
            (
                "SET \"datafusion\".execution.batch_size = 1".into(),
                setting("datafusion.execution.batch_size"),
            ),
            (
                "SET \"DataFusion\".\"Execution\".\"batch_size\" TO 1".into(),
                setting("datafusion.execution.batch_size"),
            ),
            (
                "set DATAFUSION.EXECUTION.BATCH_SIZE to 1".into(),
                setting("datafusion.execution.batch_size"),
            ),
            (
                "SET datafusion.runtime.memory_limit = '100G'".into(),
                setting("datafusion.runtime.memory_limit"),
            ),
            (
                "SET datafusion.catalog.information_schema = false".into(),
                setting("datafusion.catalog.information_schema"),
            ),
            (
                "SET SESSION datafusion.execution.batch_size = 1".into(),
                setting("datafusion.execution.batch_size"),
            ),
            ("SET work_mem = '1GB'".into(), setting("work_mem")),
            ("SET LOCAL timezone = 'UTC'".into(), form("SET LOCAL")),
            ("SET LOCAL TIME ZONE 'UTC'".into(), form("SET LOCAL")),
            ("SET ROLE postgres".into(), form("SET ROLE")),
            (
                "SET SESSION AUTHORIZATION postgres".into(),
                form("SET SESSION AUTHORIZATION"),
            ),
            (
                "SET NAMES 'LATIN1'".into(),
                form("SET NAMES (use SET client_encoding = 'UTF8')"),
            ),
            ("RESET ALL".into(), kind("\"RESET ALL\"")),
            ("RESET timezone".into(), kind("\"RESET …\"")),
            ("DISCARD ALL".into(), kind("\"DISCARD ALL\"")),
        ];
        for (sql, why) in &refused {
            let got = verdicts(&ctx, sql).await;
            assert_eq!(got, vec![Err(why.clone())], "{sql}");
        }
        // A nested EXPLAIN does not even parse.
        let parser =
            datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        assert!(
            parser
                .parse(&format!("EXPLAIN ANALYZE EXPLAIN ANALYZE {copy}"))
                .is_err()
        );
        // Each statement of a multi-statement query is checked on its own.
        assert_eq!(
            verdicts(&ctx, &format!("SELECT 1; {copy}; SELECT 2")).await,
            vec![Ok(()), Err(kind("\"COPY …\"")), Ok(())]
        );
        assert_eq!(
            verdicts(
                &ctx,
                "SELECT 1; SET \"datafusion\".execution.batch_size = 1"
            )
            .await,
            vec![Ok(()), Err(setting("datafusion.execution.batch_size"))]
        );
        for ok in [
            "SELECT 1",
            "select * from rooms",
            "/* comment */ SELECT count(*) FROM counts",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "VALUES (1), (2)",
            "SELECT * FROM (SELECT id FROM rooms) r WHERE r.id IN (SELECT id FROM rooms)",
            "EXPLAIN SELECT 1",
            "EXPLAIN ANALYZE SELECT count(*) FROM rooms",
            "EXPLAIN VERBOSE SELECT * FROM occupancy",
            "DESCRIBE rooms",
            "SHOW timezone",
            "SHOW TIME ZONE",
            "SHOW TABLES",
            "SHOW COLUMNS FROM rooms",
            "SHOW ALL",
            "SET TIME ZONE 'UTC'",
            "SET TIME ZONE 'Europe/Amsterdam'",
            "SET timezone = '+07:00'",
            "SET SESSION timezone TO 'UTC'",
            "SET TimeZone TO DEFAULT",
            "SET extra_float_digits = 3",
            "SET application_name = 'psql'",
            "SET datestyle = 'ISO, MDY'",
            "SET client_encoding = 'UTF8'",
            "SET search_path = public",
            "SET statement_timeout = '10s'",
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "BEGIN",
            "BEGIN READ ONLY",
            "COMMIT",
            "ROLLBACK",
            "DECLARE c CURSOR FOR SELECT * FROM rooms",
            "FETCH NEXT FROM c",
            "CLOSE c",
            // psql's \dt and \d rooms.
            "SELECT n.nspname as \"Schema\", c.relname as \"Name\", CASE c.relkind WHEN 'r' THEN 'table' WHEN 'v' THEN 'view' END as \"Type\" FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r','p','') AND n.nspname <> 'pg_catalog' AND n.nspname !~ '^pg_toast' AND n.nspname <> 'information_schema' AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 1,2",
            "SELECT c.oid, n.nspname, c.relname FROM pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE c.relname OPERATOR(pg_catalog.~) '^(rooms)$' COLLATE pg_catalog.default AND pg_catalog.pg_table_is_visible(c.oid) ORDER BY 2, 3",
        ] {
            assert_eq!(verdicts(&ctx, ok).await, vec![Ok(())], "{ok}");
        }
        // A cursor over a write is refused at DECLARE.
        let declare = verdicts(&ctx, "DECLARE c CURSOR FOR SELECT * FROM nope").await;
        assert!(
            declare[0].as_ref().is_err_and(|e| e.contains("nope")),
            "{declare:?}"
        );
        assert!(!target.exists());
    }

    #[tokio::test]
    async fn reads_are_audited_and_refused_when_they_cannot_be() {
        let dir = tempfile::tempdir().unwrap();
        let history = crate::History::open(dir.path(), None).await.unwrap();
        let hook = AuditHook {
            audit: Arc::new(AuditLog::open(dir.path()).unwrap()),
        };
        let stmt = |sql: &str| {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .unwrap()
                .remove(0)
        };
        let ctx = history.context();
        let select = stmt("SELECT count(*) FROM counts");
        assert!(hook.audit(&select, None, ctx, "ada").await.is_none());
        assert!(
            hook.audit(&stmt("SET TIME ZONE 'UTC'"), None, ctx, "ada")
                .await
                .is_none()
        );
        let text = std::fs::read_to_string(
            dir.path()
                .join(format!("audit/{}.jsonl", chrono::Utc::now().date_naive())),
        )
        .unwrap();
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(
            text.contains(r#""user":"ada","via":"sql","statement":"query","tables":["counts"]"#),
            "{text}"
        );
        // A log that cannot be written: today's file is a directory.
        let broken = tempfile::tempdir().unwrap();
        let hook = AuditHook {
            audit: Arc::new(AuditLog::open(broken.path()).unwrap()),
        };
        std::fs::create_dir(
            broken
                .path()
                .join(format!("audit/{}.jsonl", chrono::Utc::now().date_naive())),
        )
        .unwrap();
        match hook.audit(&select, None, ctx, "ada").await {
            Some(Err(PgWireError::UserError(e))) => assert_eq!(e.code, "58030"),
            other => panic!("a read ran without an audit line: {other:?}"),
        }
        // Statements that read nothing need no line, so they still run.
        assert!(hook.audit(&stmt("BEGIN"), None, ctx, "ada").await.is_none());
    }
}
