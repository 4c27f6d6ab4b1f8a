//! What a SQL statement reads, for the audit log: its kind and the tables it reads — never its
//! results.
//!
//! Tables come from DataFusion's logical plan (every `TableScan`, subqueries included), so CTE
//! names are resolved and `SHOW TABLES` is seen as the `information_schema` query it is. A
//! statement DataFusion cannot plan (an unknown table, a cursor) falls back to the relations
//! its syntax tree names (sqlparser's visitor), minus the CTEs it defines. Names are written as
//! the session resolves them: `occupancy`, `pg_catalog.pg_class`, `information_schema.tables`
//! (the default `datafusion.public.` prefix left out).

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use datafusion::common::TableReference;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{
    Ident, ObjectName, Query, Statement, Visit, Visitor as SqlVisitor,
};

/// The kind of a statement that reads data, or `None` for one that reads none (session
/// `SET`/`SHOW` of a setting, transaction control, closing a cursor). `FETCH` reads from a
/// cursor whose `DECLARE` was audited with its tables, so it is not audited again.
pub fn read_kind(statement: &Statement) -> Option<&'static str> {
    match statement {
        Statement::Query(_) => Some("query"),
        Statement::Explain { .. } | Statement::ExplainTable { .. } => Some("explain"),
        Statement::ShowTables { .. }
        | Statement::ShowColumns { .. }
        | Statement::ShowCatalogs { .. } => Some("show"),
        Statement::Declare { .. } => Some("declare"),
        _ => None,
    }
}

/// How an audit names a table.
fn table_name(t: &TableReference) -> String {
    let schema = t.schema().filter(|s| *s != "public");
    let catalog = t.catalog().filter(|c| *c != "datafusion");
    match (catalog, schema) {
        (Some(c), s) => format!("{c}.{}.{}", s.unwrap_or("public"), t.table()),
        (None, Some(s)) => format!("{s}.{}", t.table()),
        (None, None) => t.table().to_owned(),
    }
}

/// The tables a logical plan scans, sorted, each once.
pub fn tables_in_plan(plan: &LogicalPlan) -> Vec<String> {
    let mut out = BTreeSet::new();
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node {
            out.insert(table_name(&scan.table_name));
        }
        Ok(TreeNodeRecursion::Continue)
    });
    out.into_iter().collect()
}

/// Relations and CTE names of a syntax tree.
#[derive(Default)]
struct Relations {
    names: BTreeSet<String>,
    ctes: BTreeSet<String>,
}

/// An identifier as the planner normalises it: unquoted ones in lower case.
fn ident(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

impl SqlVisitor for Relations {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        let parts: Vec<String> = relation
            .0
            .iter()
            .map(|p| match p.as_ident() {
                Some(i) => ident(i),
                None => p.to_string(),
            })
            .collect();
        let reference = match parts.as_slice() {
            [t] => TableReference::bare(t.as_str()),
            [s, t] => TableReference::partial(s.as_str(), t.as_str()),
            [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
            _ => {
                self.names.insert(parts.join("."));
                return ControlFlow::Continue(());
            }
        };
        self.names.insert(table_name(&reference));
        ControlFlow::Continue(())
    }

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.ctes.insert(ident(&cte.alias.name));
            }
        }
        ControlFlow::Continue(())
    }
}

/// The relations a statement's syntax names, minus the CTEs it defines, sorted, each once.
pub fn tables_in_statement(statement: &Statement) -> Vec<String> {
    let mut r = Relations::default();
    let _ = statement.visit(&mut r);
    let mut names = r.names;
    names.retain(|n| !r.ctes.contains(n));
    names.into_iter().collect()
}

/// The statement DataFusion would plan for `statement`, if it plans one that reads.
fn plannable(statement: &Statement) -> Option<Statement> {
    match statement {
        Statement::Query(_)
        | Statement::Explain { .. }
        | Statement::ShowTables { .. }
        | Statement::ShowColumns { .. } => Some(statement.clone()),
        Statement::Declare { stmts } => stmts
            .iter()
            .find_map(|d| d.for_query.clone())
            .map(Statement::Query),
        _ => None,
    }
}

/// The tables `statement` reads: from `plan` when given and it scans any, else from a plan of
/// the statement made now, else from its syntax tree.
pub async fn tables_read(
    statement: &Statement,
    plan: Option<&LogicalPlan>,
    ctx: &SessionContext,
) -> Vec<String> {
    if let Some(p) = plan {
        let t = tables_in_plan(p);
        if !t.is_empty() {
            return t;
        }
    }
    if let Some(s) = plannable(statement) {
        let planned = ctx
            .state()
            .statement_to_plan(datafusion::sql::parser::Statement::Statement(Box::new(s)))
            .await;
        if let Ok(p) = planned {
            return tables_in_plan(&p);
        }
    }
    tables_in_statement(statement)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::History;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    async fn session() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().unwrap();
        let campus = crate::example_campus();
        let h = History::open(dir.path(), Some(&campus))
            .await
            .unwrap()
            .with_pg_catalog()
            .unwrap();
        (dir, h)
    }

    async fn read(h: &History, sql: &str) -> Vec<String> {
        tables_read(&parse(sql), None, h.context()).await
    }

    #[tokio::test]
    async fn tables_come_from_the_plan() {
        let (_dir, h) = session().await;
        for (sql, tables) in [
            ("SELECT 1", vec![]),
            ("SELECT count(*) FROM occupancy", vec!["occupancy"]),
            (
                "SELECT o.room, r.name FROM occupancy o JOIN rooms r ON r.id = o.room",
                vec!["occupancy", "rooms"],
            ),
            // Subqueries in expressions, and a CTE that is no table of its own.
            (
                "WITH busy AS (SELECT room FROM occupancy WHERE occupancy_max > 5) \
                 SELECT * FROM busy WHERE room IN (SELECT id FROM rooms) \
                 AND EXISTS (SELECT 1 FROM counts)",
                vec!["counts", "occupancy", "rooms"],
            ),
            (
                "SELECT * FROM (SELECT sensor FROM ZONE_COUNTS) z",
                vec!["zone_counts"],
            ),
            ("EXPLAIN SELECT * FROM sensors", vec!["sensors"]),
            (
                "SELECT table_name FROM information_schema.tables",
                vec!["information_schema.tables"],
            ),
            // What psql's \dt sends, in short.
            (
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
                 LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace",
                vec!["pg_catalog.pg_class", "pg_catalog.pg_namespace"],
            ),
            (
                "SELECT * FROM datafusion.public.buildings",
                vec!["buildings"],
            ),
        ] {
            assert_eq!(read(&h, sql).await, tables, "{sql}");
        }
    }

    #[tokio::test]
    async fn unplannable_statements_fall_back_to_their_syntax() {
        let (_dir, h) = session().await;
        // An unknown table: the plan fails, the name is still what was asked for.
        assert_eq!(
            read(&h, "SELECT * FROM secrets JOIN occupancy USING (room)").await,
            ["occupancy", "secrets"]
        );
        assert_eq!(
            tables_in_statement(&parse(
                "WITH x AS (SELECT * FROM counts) SELECT * FROM x, \"Rooms\""
            )),
            ["Rooms", "counts"]
        );
        assert_eq!(
            read(&h, "DECLARE c CURSOR FOR SELECT * FROM occupancy").await,
            ["occupancy"]
        );
    }

    #[test]
    fn only_statements_that_read_are_audited() {
        for (sql, kind) in [
            ("SELECT 1", Some("query")),
            ("VALUES (1)", Some("query")),
            ("EXPLAIN SELECT 1", Some("explain")),
            ("SHOW TABLES", Some("show")),
            ("DECLARE c CURSOR FOR SELECT 1", Some("declare")),
            ("SHOW timezone", None),
            ("SET TIME ZONE 'UTC'", None),
            ("BEGIN", None),
            ("COMMIT", None),
            ("FETCH 10 FROM c", None),
        ] {
            assert_eq!(read_kind(&parse(sql)), kind, "{sql}");
        }
    }
}
