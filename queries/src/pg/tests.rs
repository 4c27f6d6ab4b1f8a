use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_postgres::pgwire::error::PgWireError;
use tellijn_config::AuditLog;

use super::*;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::readonly::{Refusal, check};

/// A steward's session as the server makes it: campus tables, `pg_catalog`, its own state.
pub(crate) async fn steward_session(dir: &std::path::Path) -> SessionContext {
    let campus = crate::example_campus();
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
