//! Statement handling: the audit line written before every statement that reads.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ParamValues;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::QueryHook;
use datafusion_postgres::hooks::HookClient;
use datafusion_postgres::pgwire::api::ClientInfo;
use datafusion_postgres::pgwire::api::METADATA_USER;
use datafusion_postgres::pgwire::api::results::Response;
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use tellijn_config::{AuditEvent, AuditLog};

/// Writes an audit line for every statement that reads, before it runs (see the module docs).
pub struct AuditHook {
    pub(super) audit: Arc<AuditLog>,
}

impl AuditHook {
    /// Audits `statement` run by `user`; an error when the line cannot be written.
    pub(super) async fn audit(
        &self,
        statement: &Statement,
        plan: Option<&LogicalPlan>,
        ctx: &SessionContext,
        user: &str,
    ) -> Option<PgWireResult<Response>> {
        let kind = crate::access::read_kind(statement)?;
        let tables = crate::access::tables_read(statement, plan, ctx).await;
        match self
            .audit
            .record_confirmed(AuditEvent::sql_read(user, kind, &tables))
        {
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
