//! The listener and each connection: the connection limit, the startup and idle timeouts, and
//! the handlers every connection is served with.

use std::net::SocketAddr;
use std::sync::Arc;

use super::{AuditHook, OnBusy, OnRefusal, PasswordStartup, PgLimits};
use crate::session::Session;
use datafusion::prelude::SessionContext;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::cursor::CursorStatementHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire::api::ErrorHandler;
use datafusion_postgres::pgwire::api::auth::{
    DefaultServerParameterProvider, LoginInfo, StartupHandler,
};
use datafusion_postgres::pgwire::api::cancel::DefaultCancelHandler;
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::{
    ClientInfo, ConnectionManager, PgWireConnectionState, PgWireServerHandlers,
    RandomPidSecretKeyGenerator,
};
use datafusion_postgres::pgwire::error::ErrorInfo;
use datafusion_postgres::pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use datafusion_postgres::pgwire::tokio::server::{negotiate_tls, process_error, process_message};
use futures::{SinkExt, StreamExt};
use tellijn_config::AuditLog;
use tellijn_config::campus::{Role, User};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio::time::{Duration, Instant};

/// Connections being told "too many connections" at once; beyond this they are closed unread,
/// so a flood holds no more descriptors than the limit and this.
const REFUSING_AT_ONCE: usize = 16;

/// How long a refused connection may take to send its startup message.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(2);

/// The logins: each user's argon2id hash and role.
pub(super) type Users = std::collections::HashMap<String, (String, Role)>;

fn users_of(users: &[User]) -> Users {
    users
        .iter()
        .map(|u| (u.name.clone(), (u.password_hash.clone(), u.role)))
        .collect()
}

/// A running PostgreSQL wire endpoint.
pub struct PgServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
    users: tokio::sync::watch::Sender<Arc<Users>>,
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
        let users = shared.users.clone();
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
        Ok(PgServer { addr, task, users })
    }

    /// Puts reloaded `[[users]]` in force: new logins are checked against them, and an open
    /// connection whose user was removed or whose password hash or role changed is closed
    /// (SQLSTATE 57P01) before its next statement; the others go on.
    pub fn set_users(&self, users: &[User]) {
        self.users.send_replace(Arc::new(users_of(users)));
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
pub(super) async fn serve_connection(
    socket: TcpStream,
    shared: Arc<Shared>,
) -> std::io::Result<()> {
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
    let handlers = Connection::new(shared.clone()).map_err(std::io::Error::other)?;
    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    let mut users = shared.users.subscribe();
    let mut login: Option<(String, Option<(String, Role)>)> = None;
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
        // Who logged in, with the entry that let them, once they did.
        if login.is_none() && !starting {
            let user = LoginInfo::from_client_info(&socket)
                .user()
                .unwrap_or_default()
                .to_owned();
            let entry = users.borrow_and_update().get(&user).cloned();
            login = Some((user, entry));
        }
        let next = tokio::select! {
            next = tokio::time::timeout_at(deadline, socket.next()) => next,
            Ok(()) = users.changed(), if login.is_some() => {
                let Some((user, entry)) = &login else { continue };
                if users.borrow_and_update().get(user) == entry.as_ref() {
                    continue;
                }
                tracing::info!(user, "Closing a PostgreSQL connection: its user was removed or changed by a config reload.");
                let bye = ErrorInfo::new(
                    "FATAL".to_owned(),
                    "57P01".to_owned(), // admin_shutdown
                    format!("terminating connection: user \"{user}\" was removed or changed by a config reload; log in again"),
                );
                let _ = tokio::time::timeout(
                    Duration::from_secs(1),
                    socket.send(PgWireBackendMessage::ErrorResponse(bye.into())),
                )
                .await;
                break;
            }
        };
        let msg = match next {
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
pub(super) struct Shared {
    base: Arc<SessionContext>,
    audit: Arc<AuditLog>,
    limits: PgLimits,
    startup: Arc<PasswordStartup>,
    cancel: Arc<DefaultCancelHandler>,
    /// The logins in force (a reload sends new ones).
    users: tokio::sync::watch::Sender<Arc<Users>>,
}

impl Shared {
    pub(super) fn new(
        base: Arc<SessionContext>,
        users: &[User],
        on_refusal: OnRefusal,
        audit: Arc<AuditLog>,
        limits: PgLimits,
    ) -> Shared {
        let manager = Arc::new(ConnectionManager::new());
        let (users, users_rx) = tokio::sync::watch::channel(Arc::new(users_of(users)));
        Shared {
            base,
            audit,
            limits,
            users,
            startup: Arc::new(PasswordStartup {
                users: users_rx,
                params: {
                    let mut p = DefaultServerParameterProvider::default();
                    p.server_version = super::compat::server_version();
                    // Honest: no login here can change anything.
                    p.is_superuser = false;
                    p.default_transaction_read_only = true;
                    p
                },
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
            Arc::new(super::compat::ShowSettingHook),
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
