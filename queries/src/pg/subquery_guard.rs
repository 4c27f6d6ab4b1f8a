//! Refuses what the PostgreSQL layer would answer wrongly without a word.
//!
//! `datafusion-pg-catalog`'s parser (which the wire protocol's handlers use for every
//! statement) rewrites a subquery that is itself a result column, `SELECT (SELECT …) AS x`: a
//! correlated one becomes `NULL`, any other gets `LIMIT 1`. For the catalogue queries of
//! SQLAlchemy, DBeaver and psql that is what makes them run at all (the defaults, identities and
//! collations they ask for do not exist here). Over the campus tables it would be a silent wrong
//! answer: `SELECT r.id, (SELECT b.name FROM buildings b WHERE b.id = r.building) FROM rooms r`
//! answered NULL for every room. So such a statement is refused with a clear error when the
//! subquery reads anything but `pg_catalog` or `information_schema`; the same statement runs
//! unchanged through `tellijn sql`, which does not rewrite.
//!
//! The check reads the statement as the client sent it (before the rewrite), with the same
//! condition the rewrite uses. A text the plain parser cannot read is left to the library's
//! parser, which reports its own error.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, ObjectName, Query, SelectItem, SetExpr, Visit, Visitor,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// Whether `name` is a catalogue relation (`pg_catalog.*`, `information_schema.*`, `pg_*`).
fn catalogue(name: &ObjectName) -> bool {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident().map(|i| i.value.to_ascii_lowercase()))
        .collect();
    match parts.as_slice() {
        [one] => one.starts_with("pg_"),
        [schema, _] | [_, schema, _] => schema == "pg_catalog" || schema == "information_schema",
        _ => false,
    }
}

/// The first relation a query reads that is not the catalogue's, if any.
fn data_relation(q: &Query) -> Option<String> {
    struct Relations(Option<String>);
    impl Visitor for Relations {
        type Break = ();
        fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
            if !catalogue(relation) {
                self.0 = Some(relation.to_string());
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        }
    }
    let mut v = Relations(None);
    let _ = q.visit(&mut v);
    v.0
}

struct Projections(Option<String>);

impl Visitor for Projections {
    type Break = ();
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_ref() {
            for item in &select.projection {
                if let SelectItem::UnnamedExpr(Expr::Subquery(sub))
                | SelectItem::ExprWithAlias {
                    expr: Expr::Subquery(sub),
                    ..
                } = item
                    && let Some(table) = data_relation(sub)
                {
                    self.0 = Some(table);
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// `Err(message)` when `sql` has a subquery as a result column that reads a campus table.
pub fn check(sql: &str) -> Result<(), String> {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
        return Ok(());
    };
    for s in &statements {
        let mut v = Projections(None);
        let _ = s.visit(&mut v);
        if let Some(table) = v.0 {
            return Err(format!(
                "a subquery as a result column (here over {table}) is not supported over the PostgreSQL protocol: its compatibility layer would answer it with NULL or its first row. Write it as a JOIN, or run it with `tellijn sql`, which answers it as written"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check;

    #[test]
    fn subqueries_as_columns_over_campus_tables_are_refused() {
        for sql in [
            "SELECT r.id, (SELECT b.name FROM buildings b WHERE b.id = r.building) FROM rooms r",
            "SELECT r.id, (SELECT max(people_in) FROM counts) AS m FROM rooms r",
            // Nested, quoted, schema-qualified, behind a CTE or a UNION: still a campus table.
            "SELECT * FROM (SELECT (SELECT 1 FROM \"counts\") AS x) t",
            "SELECT (SELECT id FROM public.rooms) AS x",
            "SELECT (SELECT id FROM datafusion.public.rooms) AS x",
            "WITH c AS (SELECT * FROM counts) SELECT (SELECT count(*) FROM c) AS n",
            "SELECT 1; SELECT (SELECT id FROM rooms) AS x",
        ] {
            assert!(check(sql).is_err(), "{sql}");
        }
    }

    #[test]
    fn catalogue_lookups_and_other_subqueries_pass() {
        for sql in [
            "SELECT a.attname, (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_catalog.pg_attribute a",
            "SELECT (SELECT count(*) FROM information_schema.tables) AS n",
            "SELECT (SELECT 1) AS one",
            // Not a result column of its own: DataFusion plans these as written.
            "SELECT (SELECT max(people_in) FROM counts) + 1 AS m",
            "SELECT id FROM rooms WHERE building IN (SELECT id FROM buildings)",
            "SELECT r.id FROM rooms r JOIN buildings b ON b.id = r.building",
            "this is not SQL",
        ] {
            assert_eq!(check(sql), Ok(()), "{sql}");
        }
    }
}
