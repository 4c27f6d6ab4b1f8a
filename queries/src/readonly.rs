//! SQL from users is read-only by construction: what a statement may do is decided on its
//! syntax tree's kind (an allowlist) and on DataFusion's plan of it, never on its text.
//!
//! - [`check`]: a statement runs only if its kind is on the list ([`Kind`]) and, for every kind
//!   that reads data (queries, `EXPLAIN [ANALYZE]` of anything, `DESCRIBE`, `SHOW TABLES`,
//!   the query of a `DECLARE … CURSOR`), its logical plan contains no DDL, DML, `COPY` or
//!   state-changing statement anywhere in the tree (under `EXPLAIN`/`ANALYZE` and in
//!   subqueries included): our own walk names what was found, DataFusion's
//!   `SQLOptions::verify_plan` (DDL, DML and statements forbidden) checks it once more.
//! - [`check_plan`]: the same check for a plan made elsewhere (prepared statements at execute).
//! - [`setting`]: `SET` only of a named list of per-session settings ([`SETTINGS`]), names
//!   normalised as PostgreSQL does (case, quotes).
//! - [`ReadOnlyTable`]: campus tables registered so that even a plan that got through could
//!   not insert into them.
//! - [`read_only_options`]: the `SQLOptions` every other entry point (HTTP API, `tellijn query`)
//!   plans with.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    ContextModifier, Expr as SqlExpr, ObjectName, Query, Set, SetExpr, Statement,
};

/// DDL, DML and statements that change state (`SET`, `PREPARE`, `EXECUTE`, …) forbidden.
pub fn read_only_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Why a statement may not run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A kind of statement that is not on the list.
    #[error(
        "Tellijn's SQL endpoint is read-only: {verb} is not allowed; only SELECT, WITH, VALUES, EXPLAIN, DESCRIBE, SHOW, cursors (DECLARE/FETCH/CLOSE), BEGIN/COMMIT/ROLLBACK and SET of a session setting run"
    )]
    Kind { verb: String },
    /// A read whose plan would write or change state.
    #[error(
        "Tellijn's SQL endpoint is read-only: this statement's plan contains {what}, which would change data, files or the catalogue; only reads run"
    )]
    Plan { what: String },
    /// `SET` of a setting that is not per-session here.
    #[error(
        "SET {name} is not allowed: only these per-session settings may be set: {list}",
        list = SETTINGS.join(", ")
    )]
    Setting { name: String },
    /// `SET` in a form that is not supported.
    #[error(
        "{form} is not supported: use SET name = value (it lasts for this session); settings that may be set: {list}",
        list = SETTINGS.join(", ")
    )]
    SetForm { form: &'static str },
    /// An allowed setting with a value that cannot be used.
    #[error("SET {name}: {message}")]
    Value { name: &'static str, message: String },
}

impl Refusal {
    /// The SQLSTATE the client is given.
    pub fn sqlstate(&self) -> &'static str {
        match self {
            Refusal::Kind { .. } | Refusal::Plan { .. } => "25006", // read_only_sql_transaction
            Refusal::Setting { .. } | Refusal::SetForm { .. } => "42501", // insufficient_privilege
            Refusal::Value { .. } => "22023",                       // invalid_parameter_value
        }
    }
}

/// What an allowed statement is.
#[derive(Debug)]
pub enum Class {
    /// Reads data; from [`check`], its checked plan.
    Read(Option<LogicalPlan>),
    /// `DECLARE … CURSOR FOR` a read (from [`check`]: its query's plan was checked; the
    /// cursor hook plans it again from the same tree).
    Cursor,
    /// `SET` of an allowed setting.
    Set(Setting),
    /// Reads no data and changes only this session: `SHOW name`, `FETCH`, `CLOSE`,
    /// `BEGIN`/`COMMIT`/`ROLLBACK` (no-ops).
    Session,
}

/// Settings a session may change, as `SET` names them (PostgreSQL's names, case-insensitive).
pub const SETTINGS: [&str; 10] = [
    "timezone (SET TIME ZONE)",
    "datestyle",
    "intervalstyle",
    "extra_float_digits",
    "client_encoding (UTF8 only)",
    "application_name",
    "search_path",
    "bytea_output",
    "statement_timeout (at most [limits] sql_statement_timeout)",
    "TRANSACTION / SESSION CHARACTERISTICS (no-ops: every transaction here is read-only)",
];

/// An allowed `SET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Setting {
    /// `SET TIME ZONE x`, `SET timezone = x`; `None` for `DEFAULT`/`LOCAL`.
    TimeZone(Option<String>),
    /// `SET client_encoding` to UTF8 (the only encoding spoken).
    ClientEncoding,
    /// `SET TRANSACTION …`, `SET SESSION CHARACTERISTICS AS TRANSACTION …`.
    Transaction,
    /// One of the PostgreSQL display settings the session keeps (`datestyle`, …,
    /// `statement_timeout`): the statement to hand to the library's `SET` hook, scope removed.
    Display(Box<Statement>),
}

/// Settings kept per session by the library's `SET`/`SHOW` hook (client metadata).
const DISPLAY: [&str; 7] = [
    "datestyle",
    "intervalstyle",
    "extra_float_digits",
    "application_name",
    "search_path",
    "bytea_output",
    "statement_timeout",
];

/// A setting's name as PostgreSQL looks it up: parts joined by dots, in lower case whether
/// quoted or not.
fn setting_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .map(|part| match part.as_ident() {
            Some(i) => i.value.to_lowercase(),
            None => part.to_string().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// A literal or bare word as text (`'UTC'`, `UTC`, `"UTC"`, `3`); `None` for anything else.
fn literal(e: &SqlExpr) -> Option<String> {
    match e {
        SqlExpr::Value(v) => v
            .value
            .clone()
            .into_string()
            .or_else(|| Some(v.value.to_string())),
        SqlExpr::Identifier(i) => Some(i.value.clone()),
        SqlExpr::UnaryOp { op, expr } => Some(format!("{op}{}", literal(expr)?)),
        _ => None,
    }
}

/// A time zone DataFusion and Arrow understand: an IANA name or a `+HH:MM` offset.
fn time_zone(value: &str) -> Result<Option<String>, Refusal> {
    if value.eq_ignore_ascii_case("default") || value.eq_ignore_ascii_case("local") {
        return Ok(None);
    }
    let offset = |v: &str| {
        let b = v.as_bytes();
        b.len() == 6
            && (b[0] == b'+' || b[0] == b'-')
            && b[3] == b':'
            && [1, 2, 4, 5].iter().all(|&i| b[i].is_ascii_digit())
    };
    if value.parse::<chrono_tz::Tz>().is_ok() || offset(value) {
        Ok(Some(value.to_owned()))
    } else {
        Err(Refusal::Value {
            name: "timezone",
            message: format!(
                "{value:?} is not a time zone; use an IANA name such as 'Europe/Amsterdam' or 'UTC', or an offset such as '+01:00'"
            ),
        })
    }
}

/// Whether `SET …` is allowed, and what it sets.
pub fn setting(set: &Set) -> Result<Setting, Refusal> {
    match set {
        Set::SetTimeZone { local: true, .. } => Err(Refusal::SetForm { form: "SET LOCAL" }),
        Set::SetTimeZone {
            local: false,
            value,
        } => {
            let v = literal(value).ok_or(Refusal::Value {
                name: "timezone",
                message: "the value must be a literal such as 'UTC'".to_owned(),
            })?;
            Ok(Setting::TimeZone(time_zone(&v)?))
        }
        Set::SingleAssignment {
            scope,
            hivevar,
            variable,
            values,
        } => {
            match scope {
                None | Some(ContextModifier::Session) => {}
                Some(ContextModifier::Local) => {
                    return Err(Refusal::SetForm { form: "SET LOCAL" });
                }
                Some(ContextModifier::Global) => {
                    return Err(Refusal::SetForm { form: "SET GLOBAL" });
                }
            }
            if *hivevar {
                return Err(Refusal::SetForm {
                    form: "SET HIVEVAR",
                });
            }
            let name = setting_name(variable);
            let value = match values.as_slice() {
                [one] => literal(one),
                _ => None,
            };
            match name.as_str() {
                "timezone" | "time.zone" => {
                    let v = value.ok_or(Refusal::Value {
                        name: "timezone",
                        message: "the value must be one literal such as 'UTC'".to_owned(),
                    })?;
                    Ok(Setting::TimeZone(time_zone(&v)?))
                }
                "client_encoding" => match value.as_deref().map(str::to_ascii_uppercase) {
                    Some(v) if matches!(v.as_str(), "UTF8" | "UTF-8" | "UNICODE") => {
                        Ok(Setting::ClientEncoding)
                    }
                    _ => Err(Refusal::Value {
                        name: "client_encoding",
                        message: "only UTF8 is spoken here".to_owned(),
                    }),
                },
                n if DISPLAY.contains(&n) => {
                    if value.is_none() {
                        return Err(Refusal::Setting { name });
                    }
                    Ok(Setting::Display(Box::new(Statement::Set(
                        Set::SingleAssignment {
                            scope: None,
                            hivevar: false,
                            variable: ObjectName::from(vec![
                                datafusion::sql::sqlparser::ast::Ident::new(n),
                            ]),
                            values: values.clone(),
                        },
                    ))))
                }
                _ => Err(Refusal::Setting { name }),
            }
        }
        Set::SetTransaction { .. } => Ok(Setting::Transaction),
        Set::MultipleAssignments { .. } | Set::ParenthesizedAssignments { .. } => {
            Err(Refusal::SetForm {
                form: "SET of several settings at once",
            })
        }
        Set::SetRole { .. } => Err(Refusal::SetForm { form: "SET ROLE" }),
        Set::SetSessionAuthorization(_) => Err(Refusal::SetForm {
            form: "SET SESSION AUTHORIZATION",
        }),
        Set::SetNames { .. } | Set::SetNamesDefault {} => Err(Refusal::SetForm {
            form: "SET NAMES (use SET client_encoding = 'UTF8')",
        }),
        Set::SetSessionParam(_) => Err(Refusal::SetForm {
            form: "SET of a server parameter",
        }),
    }
}

/// The leading keywords of a refused statement, for its message (the decision is the kind).
fn verb(statement: &Statement) -> String {
    let text = statement.to_string();
    let all: Vec<&str> = text.split_whitespace().collect();
    let words: Vec<&str> = all
        .iter()
        .take(2)
        .take_while(|w| w.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
        .copied()
        .collect();
    if words.is_empty() {
        return "this statement".to_owned();
    }
    let more = if all.len() > words.len() { " …" } else { "" };
    format!("\"{}{more}\"", words.join(" "))
}

/// What a plan node that is not a pure read is, if it is one.
fn not_a_read(node: &LogicalPlan) -> Option<String> {
    match node {
        LogicalPlan::Ddl(ddl) => Some(format!("DDL ({})", ddl.name())),
        LogicalPlan::Dml(dml) => Some(format!("DML ({} into {})", dml.op, dml.table_name)),
        LogicalPlan::Copy(copy) => Some(format!("COPY TO {}", copy.output_url)),
        LogicalPlan::Statement(s) => Some(format!("a statement ({})", s.name())),
        _ => None,
    }
}

/// Refuses a plan that anywhere (subqueries, `EXPLAIN`, `ANALYZE` included) would do more
/// than read.
pub fn check_plan(plan: &LogicalPlan) -> Result<(), Refusal> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        found = not_a_read(node);
        Ok(if found.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    if let Some(what) = found {
        return Err(Refusal::Plan { what });
    }
    // DataFusion's own check, in case a kind of node is added that the walk above misses.
    read_only_options()
        .verify_plan(plan)
        .map_err(|e| Refusal::Plan {
            what: e.strip_backtrace(),
        })
}

/// An error of a statement that may not run, or could not be planned.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Plan(#[from] DataFusionError),
}

/// Plans `statement` in `ctx` and checks the plan.
pub async fn plan_read(
    statement: &Statement,
    ctx: &SessionContext,
) -> Result<LogicalPlan, CheckError> {
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(
            statement.clone(),
        )))
        .await?;
    check_plan(&plan)?;
    Ok(plan)
}

/// The kind of `statement`, if it is on the list (its plan not yet looked at).
pub fn classify(statement: &Statement) -> Result<Class, Refusal> {
    match statement {
        Statement::Explain {
            statement: inner, ..
        } => match classify(inner) {
            Ok(Class::Read(_)) => Ok(Class::Read(None)),
            Err(Refusal::Kind { verb }) => Err(Refusal::Kind {
                verb: format!("EXPLAIN of {verb}"),
            }),
            _ => Err(Refusal::Kind {
                verb: format!("EXPLAIN of {}", verb(inner)),
            }),
        },
        Statement::Query(q) => match writes_in(q) {
            Some(w) => Err(Refusal::Kind {
                verb: format!("{} inside a query", verb(w)),
            }),
            None => Ok(Class::Read(None)),
        },
        Statement::ExplainTable { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Ok(Class::Read(None)),
        Statement::Declare { stmts } => {
            if stmts.iter().all(|d| d.for_query.is_some()) {
                Ok(Class::Cursor)
            } else {
                Err(Refusal::Kind {
                    verb: "DECLARE without a FOR query".to_owned(),
                })
            }
        }
        Statement::Set(set) => Ok(Class::Set(setting(set)?)),
        Statement::ShowVariable { .. }
        | Statement::ShowVariables { .. }
        | Statement::ShowStatus { .. }
        | Statement::ShowCatalogs { .. }
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Fetch { .. }
        | Statement::Close { .. } => Ok(Class::Session),
        other => Err(Refusal::Kind { verb: verb(other) }),
    }
}

/// A write a query holds as its body or in a CTE (`WITH x AS (…) INSERT …`), if any.
fn writes_in(q: &Query) -> Option<&Statement> {
    fn body(e: &SetExpr) -> Option<&Statement> {
        match e {
            SetExpr::Insert(s) | SetExpr::Update(s) | SetExpr::Delete(s) | SetExpr::Merge(s) => {
                Some(s)
            }
            SetExpr::SetOperation { left, right, .. } => body(left).or_else(|| body(right)),
            SetExpr::Query(q) => writes_in(q),
            _ => None,
        }
    }
    q.with
        .iter()
        .flat_map(|w| w.cte_tables.iter())
        .find_map(|cte| writes_in(&cte.query))
        .or_else(|| body(&q.body))
}

/// Whether `statement` may run in `ctx`, and what it is: [`classify`], and for every kind that
/// reads, its plan checked (see the module docs).
pub async fn check(statement: &Statement, ctx: &SessionContext) -> Result<Class, CheckError> {
    match classify(statement)? {
        Class::Read(_) => Ok(Class::Read(Some(plan_read(statement, ctx).await?))),
        Class::Cursor => {
            if let Statement::Declare { stmts } = statement {
                for q in stmts.iter().filter_map(|d| d.for_query.as_ref()) {
                    plan_read(&Statement::Query(q.clone()), ctx).await?;
                }
            }
            Ok(Class::Cursor)
        }
        other => Ok(other),
    }
}

/// A table that can be read and never written: whatever reaches it, `INSERT` is refused.
#[derive(Debug)]
pub struct ReadOnlyTable(pub Arc<dyn TableProvider>);

#[async_trait]
impl TableProvider for ReadOnlyTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    fn statistics(&self) -> Option<datafusion::common::Statistics> {
        self.0.statistics()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    // `insert_into`, `delete_from`, `update`, `truncate` and `merge_into` are TableProvider's
    // defaults, which refuse.
}

#[cfg(test)]
#[path = "readonly_tests.rs"]
mod tests;
