//! Tests of [`super`]: plans that write, read-only tables, the other entry points.

use super::*;
use crate::{Format, History};

fn campus() -> tellijn_config::Campus {
    crate::example_campus()
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p.clone());
            }
            out.push(p);
        }
    }
    out.sort();
    out
}

/// The plan check holds on its own: plans DataFusion's own parser makes of writes (its `COPY`,
/// `CREATE EXTERNAL TABLE`, writes under `EXPLAIN ANALYZE`, nested) are refused by what they
/// contain.
#[tokio::test]
async fn plans_that_write_are_refused_wherever_they_hide() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Some(&campus())).await.unwrap();
    let state = h.context().state();
    let t = dir.path().join("x.parquet");
    let t = t.display();
    for (sql, what) in [
        (
            format!("COPY (SELECT 1 AS a) TO '{t}'"),
            format!("COPY TO {t}"),
        ),
        (
            format!("EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{t}'"),
            format!("COPY TO {t}"),
        ),
        (
            format!("EXPLAIN ANALYZE EXPLAIN ANALYZE COPY (SELECT 1 AS a) TO '{t}'"),
            format!("COPY TO {t}"),
        ),
        (
            "INSERT INTO rooms SELECT * FROM rooms".to_owned(),
            "DML (Insert Into into rooms)".to_owned(),
        ),
        (
            "EXPLAIN ANALYZE INSERT INTO rooms SELECT * FROM rooms".to_owned(),
            "DML (Insert Into into rooms)".to_owned(),
        ),
        (
            "WITH r AS (SELECT * FROM rooms) INSERT INTO rooms SELECT * FROM r".to_owned(),
            "DML (Insert Into into rooms)".to_owned(),
        ),
        (
            "CREATE TABLE x AS SELECT 1".to_owned(),
            "DDL (CreateMemoryTable)".to_owned(),
        ),
        (
            format!("CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION '{t}'"),
            "DDL (CreateExternalTable)".to_owned(),
        ),
        (
            "CREATE VIEW v AS SELECT 1".to_owned(),
            "DDL (CreateView)".to_owned(),
        ),
        ("DROP TABLE rooms".to_owned(), "DDL (DropTable)".to_owned()),
        (
            "SET datafusion.execution.batch_size = 1".to_owned(),
            "a statement (SetVariable)".to_owned(),
        ),
        (
            "PREPARE p AS SELECT 1".to_owned(),
            "a statement (Prepare)".to_owned(),
        ),
    ] {
        let plan = match state.create_logical_plan(&sql).await {
            Ok(plan) => plan,
            // Some nestings DataFusion refuses to plan at all, which is as good.
            Err(e) => {
                assert!(
                    sql.contains("EXPLAIN ANALYZE EXPLAIN") || sql.starts_with("WITH"),
                    "{sql}: {e}"
                );
                continue;
            }
        };
        assert_eq!(check_plan(&plan), Err(Refusal::Plan { what }), "{sql}");
        // And DataFusion's own check agrees.
        assert!(read_only_options().verify_plan(&plan).is_err(), "{sql}");
    }
    let read = state
        .create_logical_plan(
            "EXPLAIN ANALYZE SELECT * FROM rooms WHERE id IN (SELECT id FROM rooms)",
        )
        .await
        .unwrap();
    assert_eq!(check_plan(&read), Ok(()));
    assert!(!dir.path().join("x.parquet").exists());
}

/// Defence in depth: even a write that skipped every check cannot change a campus table or a
/// history table (no file is written).
#[tokio::test]
async fn tables_refuse_writes_even_past_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Some(&campus())).await.unwrap();
    let before = files_under(dir.path());
    let rooms = h
        .query("SELECT * FROM rooms ORDER BY id", Format::Csv)
        .await
        .unwrap();
    for sql in [
        "INSERT INTO rooms SELECT * FROM rooms",
        "INSERT INTO buildings SELECT * FROM buildings",
        "INSERT INTO sensors SELECT * FROM sensors",
        "INSERT INTO counts SELECT * FROM counts",
        "INSERT INTO occupancy SELECT * FROM occupancy",
        "DELETE FROM rooms",
    ] {
        // Straight to DataFusion, as if the plan check were not there.
        let run = async { h.context().sql(sql).await?.collect().await };
        assert!(run.await.is_err(), "{sql} ran");
    }
    assert_eq!(
        h.query("SELECT * FROM rooms ORDER BY id", Format::Csv)
            .await
            .unwrap(),
        rooms
    );
    assert_eq!(files_under(dir.path()), before);
}

/// The HTTP API and `tellijn query` plan with the same options: no write, no `SET`.
#[tokio::test]
async fn history_statements_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Some(&campus())).await.unwrap();
    let before = files_under(dir.path());
    let t = dir.path().join("counts/date=2026-11-30/forged.parquet");
    for sql in [
        format!("COPY (SELECT 'door-a' AS sensor) TO '{}'", t.display()),
        format!(
            "EXPLAIN ANALYZE COPY (SELECT 'door-a' AS sensor) TO '{}'",
            t.display()
        ),
        "INSERT INTO rooms SELECT * FROM rooms".to_owned(),
        "CREATE TABLE x AS SELECT 1".to_owned(),
        "SET datafusion.execution.time_zone = '+07:00'".to_owned(),
    ] {
        let e = h.query(&sql, Format::Csv).await.unwrap_err();
        assert!(e.to_string().contains("not supported"), "{sql}: {e}");
    }
    assert_eq!(files_under(dir.path()), before);
    assert_eq!(
        h.context().state().config().options().execution.time_zone,
        None
    );
    assert_eq!(
        h.query("SELECT count(*) AS n FROM rooms", Format::Csv)
            .await
            .unwrap(),
        format!("n\n{}\n", campus().rooms.len())
    );
}

/// No statement reads a file outside the registered tables: no URL tables, no file-reading
/// table functions.
#[tokio::test]
async fn files_outside_the_tables_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let h = History::open(dir.path(), Some(&campus()))
        .await
        .unwrap()
        .with_pg_catalog()
        .unwrap();
    let ctx = crate::session::session_context(h.context(), &Default::default()).unwrap();
    let secret = dir.path().join("secret.csv");
    std::fs::write(&secret, "a\n42\n").unwrap();
    let s = secret.display();
    for sql in [
        format!("SELECT * FROM '{s}'"),
        format!("SELECT * FROM \"{s}\""),
        format!("SELECT * FROM read_csv('{s}')"),
        format!("SELECT * FROM read_parquet('{s}')"),
        format!("SELECT * FROM parquet_metadata('{s}')"),
        format!("SELECT pg_read_file('{s}')"),
    ] {
        let parser =
            datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser::new();
        let statements = parser.parse(&sql).unwrap();
        let r = check(&statements[0], &ctx).await;
        assert!(matches!(r, Err(CheckError::Plan(_))), "{sql}: {r:?}");
    }
}

#[test]
fn setting_names_are_normalised() {
    let parse = |sql: &str| {
        datafusion::sql::sqlparser::parser::Parser::parse_sql(
            &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
            sql,
        )
        .unwrap()
        .remove(0)
    };
    let set = |sql: &str| match parse(sql) {
        Statement::Set(s) => setting(&s),
        other => panic!("{other}"),
    };
    assert_eq!(
        set("SET \"TimeZone\" = 'Europe/Amsterdam'"),
        Ok(Setting::TimeZone(Some("Europe/Amsterdam".to_owned())))
    );
    assert_eq!(set("SET TIME ZONE DEFAULT"), Ok(Setting::TimeZone(None)));
    assert_eq!(
        set("SET TIME ZONE '-03:30'"),
        Ok(Setting::TimeZone(Some("-03:30".to_owned())))
    );
    assert!(matches!(
        set("SET timezone = 'Mars/Olympus'"),
        Err(Refusal::Value {
            name: "timezone",
            ..
        })
    ));
    assert!(matches!(
        set("SET client_encoding = 'LATIN1'"),
        Err(Refusal::Value {
            name: "client_encoding",
            ..
        })
    ));
    assert_eq!(
        set("SET CLIENT_ENCODING TO 'utf8'"),
        Ok(Setting::ClientEncoding)
    );
    match set("SET SESSION \"ExtRa_Float_DIGITS\" = 3") {
        Ok(Setting::Display(s)) => assert_eq!(s.to_string(), "SET extra_float_digits = 3"),
        other => panic!("{other:?}"),
    }
    let why = set("SET \"datafusion\".\"execution\".batch_size = 1")
        .unwrap_err()
        .to_string();
    assert!(why.starts_with("SET datafusion.execution.batch_size is not allowed: only these per-session settings may be set: timezone (SET TIME ZONE), datestyle"), "{why}");
}
