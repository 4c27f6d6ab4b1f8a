//! One PostgreSQL session: its own DataFusion session state, its limits, and the hooks that
//! make it read-only.
//!
//! - [`session_context`]: a `SessionContext` per connection that shares the tables, functions
//!   and object stores of the server's context but has its own settings and its own runtime:
//!   a memory pool of `[limits] sql_memory_limit` and no disk manager (nothing spills, so no
//!   statement creates a file). Nothing a session sets reaches another session or the HTTP API.
//! - [`ReadOnlyHook`] (first hook): refuses what [`crate::readonly::check`] refuses, before
//!   anything is audited or run, and applies the allowed `SET`s itself; checks the stored plan
//!   again at every execute of a prepared statement.
//! - [`ExecHook`] (last hook): a simple-protocol statement no other hook answered runs from its
//!   checked plan here, so the library never re-parses and runs the statement's text.
//! - [`Session`]: the library's handler with `[limits] sql_statement_timeout` over planning
//!   and every row sent, and memory errors that name `[limits] sql_memory_limit`.

use std::collections::HashMap;
use std::fmt::Debug;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::encode_dataframe;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::pgwire::api::Type;
use datafusion_postgres::pgwire::api::portal::{Format, Portal};
use datafusion_postgres::pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use datafusion_postgres::pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use datafusion_postgres::pgwire::api::stmt::QueryParser;
use datafusion_postgres::pgwire::api::store::PortalStore;
use datafusion_postgres::pgwire::api::{ClientInfo, ClientPortalStore};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use datafusion_postgres::pgwire::messages::PgWireBackendMessage;
use datafusion_postgres::pgwire::messages::startup::ParameterStatus;
use datafusion_postgres::pgwire::types::format::FormatOptions;
use datafusion_postgres::{DfSessionService, Parser, QueryHook};
use futures::{Sink, StreamExt};
use tokio::time::Instant;

use crate::readonly::{self, CheckError, Class, Refusal, Setting};

/// What one session may cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// `[limits] sql_memory_limit`, bytes.
    pub memory: u64,
    /// `[limits] sql_statement_timeout`.
    pub statement_timeout: Duration,
}

impl Default for SessionLimits {
    fn default() -> Self {
        let l = tellijn_config::campus::Limits::default();
        SessionLimits {
            memory: l.sql_memory_limit,
            statement_timeout: l.sql_statement_timeout,
        }
    }
}

/// A session of its own over `base`'s tables (see the module docs).
pub fn session_context(
    base: &SessionContext,
    limits: &SessionLimits,
) -> Result<SessionContext, DataFusionError> {
    let state = base.state();
    let memory = usize::try_from(limits.memory).unwrap_or(usize::MAX);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(memory),
            NonZeroUsize::new(3).unwrap_or(NonZeroUsize::MIN),
        )))
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .with_object_store_registry(state.runtime_env().object_store_registry.clone())
        .build_arc()?;
    let state = SessionStateBuilder::new_from_existing(state)
        .with_runtime_env(runtime)
        .build();
    Ok(SessionContext::new_with_state(state))
}

fn user_error(code: &str, message: String) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".to_owned(),
        code.to_owned(),
        message,
    )))
}

/// A refusal as the client sees it.
pub fn refused(r: &Refusal) -> PgWireError {
    user_error(r.sqlstate(), r.to_string())
}

fn check_error(e: CheckError) -> PgWireError {
    match e {
        CheckError::Refused(r) => refused(&r),
        CheckError::Plan(e) => PgWireError::ApiError(Box::new(e)),
    }
}

/// Applies an allowed `SET` to this session only.
async fn apply_set(
    setting: Setting,
    ctx: &SessionContext,
    client: &mut dyn HookClient,
) -> PgWireResult<Response> {
    match setting {
        Setting::TimeZone(tz) => {
            ctx.state_ref()
                .write()
                .config_mut()
                .options_mut()
                .execution
                .time_zone = tz.clone();
            // The library's `SHOW TIME ZONE` reads the client's metadata.
            let shown = match tz {
                Some(tz) => {
                    client
                        .metadata_mut()
                        .insert("timezone".to_owned(), tz.clone());
                    tz
                }
                None => {
                    client.metadata_mut().remove("timezone");
                    "UTC".to_owned()
                }
            };
            client
                .send_message(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                    "TimeZone".to_owned(),
                    shown,
                )))
                .await?;
            Ok(Response::Execution(Tag::new("SET")))
        }
        Setting::ClientEncoding | Setting::Transaction => Ok(Response::Execution(Tag::new("SET"))),
        Setting::Display(statement) => SetShowHook
            .handle_simple_query(&statement, ctx, client)
            .await
            .unwrap_or_else(|| Ok(Response::Execution(Tag::new("SET")))),
    }
}

/// First hook: refuses what may not run, applies allowed `SET`s (see the module docs).
#[derive(Debug)]
pub struct ReadOnlyHook;

#[async_trait]
impl QueryHook for ReadOnlyHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        match readonly::check(statement, ctx).await {
            Err(e) => Some(Err(check_error(e))),
            Ok(Class::Set(s)) => Some(apply_set(s, ctx, client).await),
            Ok(_) => None,
        }
    }

    async fn handle_extended_parse_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        match readonly::check(statement, ctx).await {
            Err(e) => Some(Err(check_error(e))),
            // The checked plan is the one every execute runs.
            Ok(Class::Read(Some(plan))) => Some(Ok(plan)),
            // `SET`, `SHOW`, cursors, transactions: the library's hooks give placeholders.
            Ok(_) => None,
        }
    }

    async fn handle_extended_query(
        &self,
        statement: &Statement,
        plan: &LogicalPlan,
        _params: &ParamValues,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        if let Err(r) = readonly::check_plan(plan) {
            return Some(Err(refused(&r)));
        }
        match readonly::classify(statement) {
            Err(r) => Some(Err(refused(&r))),
            Ok(Class::Set(s)) => Some(apply_set(s, ctx, client).await),
            Ok(_) => None,
        }
    }
}

/// Last hook: runs a simple-protocol statement from its checked plan (see the module docs).
#[derive(Debug)]
pub struct ExecHook;

#[async_trait]
impl QueryHook for ExecHook {
    async fn handle_simple_query(
        &self,
        statement: &Statement,
        ctx: &SessionContext,
        client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        let plan = match readonly::plan_read(statement, ctx).await {
            Ok(plan) => plan,
            Err(e) => return Some(Err(check_error(e))),
        };
        let run = async {
            let df = ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            encode_dataframe(df, &Format::UnifiedText, Some(options)).await
        };
        Some(run.await.map(Response::Query))
    }

    async fn handle_extended_parse_query(
        &self,
        _statement: &Statement,
        _ctx: &SessionContext,
        _client: &(dyn ClientInfo + Send + Sync),
    ) -> Option<PgWireResult<LogicalPlan>> {
        None
    }

    async fn handle_extended_query(
        &self,
        _statement: &Statement,
        _plan: &LogicalPlan,
        _params: &ParamValues,
        _ctx: &SessionContext,
        _client: &mut dyn HookClient,
    ) -> Option<PgWireResult<Response>> {
        // The library runs the plan checked at parse and again by [`ReadOnlyHook`], with the
        // portal's result formats.
        None
    }
}

/// The runtime SQL statements run on: DataFusion's partition tasks are spawned here, so a
/// statement busy computing holds none of the threads that serve MQTT, HTTP and the
/// connections themselves (and the statement timeout can fire while it computes).
static SQL_RUNTIME: std::sync::LazyLock<Option<tokio::runtime::Runtime>> =
    std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(std::thread::available_parallelism().map_or(2, |n| n.get()))
            .thread_name("tellijn-sql")
            .enable_all()
            .build()
            .inspect_err(|e| {
                tracing::warn!("No separate runtime for SQL ({e}); statements share the server's.")
            })
            .ok()
    });

/// A future polled with the SQL runtime entered: tasks it spawns run there.
struct OnSqlRuntime<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for OnSqlRuntime<F> {
    type Output = F::Output;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<F::Output> {
        let _entered = SQL_RUNTIME.as_ref().map(|r| r.enter());
        self.0.as_mut().poll(cx)
    }
}

fn on_sql_runtime<F: Future>(f: F) -> OnSqlRuntime<F> {
    OnSqlRuntime(Box::pin(f))
}

/// The library's metadata key for `SET statement_timeout` (milliseconds).
const CLIENT_TIMEOUT: &str = "statement_timeout_ms";

/// The statement timeout of a client: `[limits] sql_statement_timeout`, or less when the
/// session set `statement_timeout` lower.
fn timeout_of(metadata: &HashMap<String, String>, limits: &SessionLimits) -> (Duration, bool) {
    let own = metadata
        .get(CLIENT_TIMEOUT)
        .and_then(|ms| ms.parse::<u64>().ok())
        .map(Duration::from_millis)
        .filter(|d| !d.is_zero());
    match own {
        Some(d) if d < limits.statement_timeout => (d, true),
        _ => (limits.statement_timeout, false),
    }
}

/// Limits applied to one statement's run.
#[derive(Debug, Clone, Copy)]
struct Run {
    deadline: Instant,
    timeout: Duration,
    own_timeout: bool,
    memory: u64,
}

impl Run {
    /// Limits for a statement of the client whose metadata is `metadata`, starting now.
    fn start(metadata: &HashMap<String, String>, limits: &SessionLimits) -> Run {
        let (timeout, own_timeout) = timeout_of(metadata, limits);
        Run {
            deadline: Instant::now() + timeout,
            timeout,
            own_timeout,
            memory: limits.memory,
        }
    }

    fn timed_out(&self) -> PgWireError {
        let limit = humantime::format_duration(self.timeout);
        let message = if self.own_timeout {
            format!(
                "canceling statement due to statement timeout ({limit}, set by SET statement_timeout)"
            )
        } else {
            format!(
                "canceling statement due to statement timeout ({limit}, [limits] sql_statement_timeout); narrow the query or ask the administrator to raise the limit"
            )
        };
        user_error("57014", message) // query_canceled
    }

    /// A memory error named for what to change; other errors as they are.
    fn error(&self, e: PgWireError) -> PgWireError {
        let exhausted = match &e {
            PgWireError::ApiError(inner) => inner
                .downcast_ref::<DataFusionError>()
                .is_some_and(|d| matches!(d.find_root(), DataFusionError::ResourcesExhausted(_))),
            _ => false,
        };
        if exhausted {
            user_error(
                "53200", // out_of_memory
                format!(
                    "the statement needs more memory than one session may use ({}, [limits] sql_memory_limit); select fewer rows or columns, aggregate, or ask the administrator to raise the limit",
                    tellijn_config::campus::format_bytes(self.memory)
                ),
            )
        } else {
            e
        }
    }

    /// `f` within the deadline.
    async fn bound<T>(&self, f: impl Future<Output = PgWireResult<T>>) -> PgWireResult<T> {
        match tokio::time::timeout_at(self.deadline, on_sql_runtime(f)).await {
            Ok(r) => r.map_err(|e| self.error(e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// A response whose rows stop with an error at the deadline or on a memory error.
    fn response(self, response: Response) -> Response {
        let Response::Query(q) = response else {
            return response;
        };
        let tag = q.command_tag().to_owned();
        let schema = q.row_schema();
        // After an error the rows are dropped, which stops the statement's tasks.
        let rows = futures::stream::unfold(Some(q.data_rows), move |rows| async move {
            let mut rows = rows?;
            // A stream that is always ready never lets a timer fire: look at the clock too.
            if Instant::now() >= self.deadline {
                return Some((Err(self.timed_out()), None));
            }
            match tokio::time::timeout_at(self.deadline, on_sql_runtime(rows.next())).await {
                Ok(Some(Ok(row))) => Some((Ok(row), Some(rows))),
                Ok(Some(Err(e))) => Some((Err(self.error(e)), None)),
                Ok(None) => None,
                Err(_) => Some((Err(self.timed_out()), None)),
            }
        });
        let mut out = QueryResponse::new(schema, rows);
        out.set_command_tag(&tag);
        Response::Query(out)
    }
}

/// The library's parser of prepared statements, refusing more than one statement (the
/// library would keep the first and drop the rest silently), as PostgreSQL does.
pub struct OneStatement {
    inner: Arc<Parser>,
    sql: PostgresCompatibilityParser,
}

#[async_trait]
impl QueryParser for OneStatement {
    type Statement = <Parser as QueryParser>::Statement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Self::Statement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        crate::pg::subquery_guard::check(sql).map_err(|m| user_error("0A000", m))?;
        let statements = self
            .sql
            .parse(sql)
            .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601", // syntax_error
                "cannot insert multiple commands into a prepared statement".to_owned(),
            ));
        }
        self.inner.parse_sql(client, sql, types).await
    }

    fn get_parameter_types(&self, stmt: &Self::Statement) -> PgWireResult<Vec<Type>> {
        self.inner.get_parameter_types(stmt)
    }

    fn get_result_schema(
        &self,
        stmt: &Self::Statement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        self.inner.get_result_schema(stmt, column_format)
    }
}

/// The handler of one connection: the library's, in this session's context, with limits.
pub struct Session {
    inner: Arc<DfSessionService>,
    parser: Arc<OneStatement>,
    limits: SessionLimits,
}

impl Session {
    /// A session over `base`'s tables with `hooks` between the read-only check and the last
    /// hook that runs what is left.
    pub fn new(
        base: &SessionContext,
        limits: SessionLimits,
        middle: Vec<Arc<dyn QueryHook>>,
    ) -> Result<Session, DataFusionError> {
        let ctx = Arc::new(session_context(base, &limits)?);
        let mut hooks: Vec<Arc<dyn QueryHook>> = vec![Arc::new(ReadOnlyHook)];
        hooks.extend(middle);
        hooks.push(Arc::new(ExecHook));
        let inner = Arc::new(DfSessionService::new_with_hooks(ctx, hooks));
        Ok(Session {
            parser: Arc::new(OneStatement {
                inner: inner.query_parser(),
                sql: PostgresCompatibilityParser::new(),
            }),
            inner,
            limits,
        })
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        crate::pg::subquery_guard::check(query).map_err(|m| user_error("0A000", m))?;
        let run = Run::start(client.metadata(), &self.limits);
        let responses = run
            .bound(<DfSessionService as SimpleQueryHandler>::do_query(
                &self.inner,
                client,
                query,
            ))
            .await?;
        Ok(responses.into_iter().map(|r| run.response(r)).collect())
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = <DfSessionService as ExtendedQueryHandler>::Statement;
    type QueryParser = OneStatement;

    fn query_parser(&self) -> Arc<OneStatement> {
        self.parser.clone()
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Self::Statement>,
        max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let run = Run::start(client.metadata(), &self.limits);
        let response = run
            .bound(<DfSessionService as ExtendedQueryHandler>::do_query(
                &self.inner,
                client,
                portal,
                max_rows,
            ))
            .await?;
        Ok(run.response(response))
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
