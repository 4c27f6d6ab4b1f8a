//! SQL for tools over the PostgreSQL wire protocol (`psql`, DBeaver, Metabase, Grafana).
//!
//! Built on `datafusion-postgres` (query handling, `pg_catalog`, `information_schema`) and its
//! `pgwire` re-export, with three things of Tellijn's own:
//! - [`PasswordStartup`]: password authentication against `[[users]]` (argon2id), never the
//!   library's no-op startup handler. Only role `steward` may log in; a `viewer` is refused with a
//!   message saying the HTTP API is theirs.
//! - [`ReadOnlyHook`]: only queries, `EXPLAIN`, `SHOW`, session `SET`s and transaction no-ops run;
//!   anything that would write (`INSERT`, `COPY … TO`, `CREATE`, `DROP`, …) or change the shared
//!   DataFusion settings (`SET datafusion.…`) is refused.
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

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
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
use datafusion_postgres::{DfSessionService, QueryHook};
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

/// A running PostgreSQL wire endpoint.
pub struct PgServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PgServer {
    /// Binds `addr` and serves `ctx` to the `[[users]]` with role steward, auditing their reads
    /// in `audit` and closing connections silent for `idle`.
    pub async fn start(
        ctx: Arc<SessionContext>,
        users: &[User],
        addr: SocketAddr,
        on_refusal: OnRefusal,
        audit: Arc<AuditLog>,
        idle: Duration,
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
        let handlers = Arc::new(Handlers::new(ctx, users, on_refusal, audit));
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((socket, _)) => {
                        let h = handlers.clone();
                        tokio::spawn(async move {
                            if let Err(e) = serve_connection(socket, h, idle).await {
                                tracing::debug!("PostgreSQL connection ended: {e}");
                            }
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

/// One client connection: pgwire's message loop (`process_socket`) with an idle timeout on
/// every read. The timer runs only while waiting for the client, never while a statement runs.
async fn serve_connection(
    socket: TcpStream,
    handlers: Arc<Handlers>,
    idle: Duration,
) -> std::io::Result<()> {
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

struct Handlers {
    session: Arc<DfSessionService>,
    startup: Arc<PasswordStartup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl Handlers {
    fn new(
        ctx: Arc<SessionContext>,
        users: &[User],
        on_refusal: OnRefusal,
        audit: Arc<AuditLog>,
    ) -> Handlers {
        // Refused statements never reach the audit hook; every other one passes it before the
        // hooks and the session that answer it.
        let hooks: Vec<Arc<dyn QueryHook>> = vec![
            Arc::new(ReadOnlyHook),
            Arc::new(AuditHook { audit }),
            Arc::new(CursorStatementHook),
            Arc::new(SetShowHook),
            Arc::new(TransactionStatementHook),
        ];
        let manager = Arc::new(ConnectionManager::new());
        Handlers {
            session: Arc::new(DfSessionService::new_with_hooks(ctx, hooks)),
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

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.session.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.session.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.startup.clone()
    }

    fn cancel_handler(&self) -> Arc<impl datafusion_postgres::pgwire::api::cancel::CancelHandler> {
        self.cancel.clone()
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

/// At most one argon2id verification per core at a time for SQL and HTTP logins: each holds its
/// memory cost on a blocking thread, and a login storm would otherwise start one thread per
/// attempt whose allocator arena keeps that memory (the MQTT logins have their own bound in the
/// broker's hooks).
static VERIFICATIONS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| {
        tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get()))
    });

/// [`password_matches`] on a blocking thread, waiting for one of the bounded verification slots.
pub async fn verify_password(hash: String, password: String) -> bool {
    let Ok(_slot) = VERIFICATIONS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || password_matches(&hash, &password))
        .await
        .unwrap_or(false)
}

/// Checks a password against an argon2id PHC string.
pub fn password_matches(hash: &str, password: &str) -> bool {
    use argon2::{PasswordHash, PasswordVerifier};
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
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
use tellijn_config::password::DUMMY_HASH;

/// Refuses every statement that could write or change shared settings.
#[derive(Debug)]
pub struct ReadOnlyHook;

/// Why `statement` may not run, if it may not.
pub fn refusal(statement: &Statement) -> Option<String> {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ExplainTable { .. }
        | Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Declare { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. } => None,
        Statement::Set(_) => {
            let text = statement.to_string().to_lowercase();
            text.contains("datafusion.").then(|| {
                "SET of DataFusion settings is not allowed: they are shared by every session"
                    .to_owned()
            })
        }
        other => {
            let text = other.to_string();
            let verb: String = text
                .split_whitespace()
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Some(format!(
                "Tellijn's SQL endpoint is read-only: \"{verb} …\" is not allowed; use SELECT"
            ))
        }
    }
}

fn refused(message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        "25006".to_owned(), // read_only_sql_transaction
        message,
    )))
}

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refusal(statement).map(|m| Err(refused(m)))
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        refusal(statement).map(|m| Err(refused(m)))
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        refusal(statement).map(|m| Err(refused(m)))
    }
}

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

    fn check(sql: &str) -> Option<String> {
        let stmts = Parser::parse_sql(&PostgreSqlDialect {}, sql).unwrap();
        refusal(&stmts[0])
    }

    #[test]
    fn reads_pass_writes_are_refused() {
        for ok in [
            "SELECT 1",
            "WITH a AS (SELECT 1) SELECT * FROM a",
            "EXPLAIN SELECT 1",
            "SHOW timezone",
            "SET TIME ZONE 'UTC'",
            "SET extra_float_digits = 3",
            "BEGIN",
            "COMMIT",
        ] {
            assert_eq!(check(ok), None, "{ok}");
        }
        for bad in [
            "INSERT INTO counts VALUES (1)",
            "COPY counts TO '/tmp/x.parquet'",
            "CREATE TABLE x (a INT)",
            "CREATE VIEW v AS SELECT 1",
            "DROP TABLE counts",
            "DELETE FROM counts",
            "UPDATE counts SET seq = 1",
            "SET datafusion.execution.batch_size = 1",
        ] {
            let why = check(bad).unwrap_or_else(|| panic!("{bad} was allowed"));
            assert!(why.contains("not allowed"), "{why}");
        }
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

    /// Logins wait for a verification slot: with every slot taken, a verification does not
    /// run until one is given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifications_wait_for_a_slot() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::from_b64("c29tZXNhbHQ").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let all =
            u32::try_from(std::thread::available_parallelism().map_or(2, |n| n.get())).unwrap();
        let held = VERIFICATIONS.acquire_many(all).await.unwrap();
        let login = tokio::spawn(verify_password(hash.clone(), "pw".to_owned()));
        // Unbounded, one verification takes milliseconds; held, it must still be waiting.
        let waited = tokio::time::timeout(Duration::from_millis(500), async {
            while !login.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(waited.is_err(), "a verification ran without a free slot");
        drop(held);
        assert!(login.await.unwrap());
        assert!(!verify_password(hash, "wrong".to_owned()).await);
    }

    #[test]
    fn passwords_are_checked_against_argon2() {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let hash = argon2::Argon2::default()
            .hash_password(b"right", &salt)
            .unwrap()
            .to_string();
        assert!(password_matches(&hash, "right"));
        assert!(!password_matches(&hash, "wrong"));
        assert!(!password_matches("not a hash", "right"));
        // The dummy hash parses, so unknown users cost a real verification.
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
    }
}
