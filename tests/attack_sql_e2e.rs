//! The penetration test's finding 1, played against a real server over real clients: the
//! "read-only" SQL endpoint must write no file, change no table, let no session change
//! another, and hold every session to its memory, time and connection limits.
//!
//! Attacks go over `psql` (the simple protocol, multi-statement queries, SQL `PREPARE`/
//! `EXECUTE`) and `tokio-postgres` (the extended protocol: Parse/Bind/Execute). After all of
//! them: no new or changed file under the data directory or the attacker's target directory,
//! the `rooms` table and the counts as before, a concurrent session's settings and timestamps
//! as before, the HTTP API's history as before.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use chrono::{TimeDelta, Utc};
use common::*;
use tellijn_processors::minutes::MinuteRow;
use tellijn_processors::parquet_sink::Buffer;
use tokio_postgres::error::SqlState;

const STEWARD: (&str, &str) = ("ada", "ada-steward-pw");

fn campus_with_steward(data: &Path, limits: &str) -> String {
    let h = tellijn::secrets::hash_demo(STEWARD.1).unwrap();
    format!(
        "{}\n[[users]]\nname = \"{}\"\npassword_hash = \"{h}\"\nrole = \"steward\"\n\n[limits]\n{limits}\n",
        campus_text(data, "200ms", ""),
        STEWARD.0,
    )
}

/// Occupancy rows for yesterday 09:00–09:30 (UTC) in room r1.
fn write_occupancy(data: &Path) -> chrono::DateTime<Utc> {
    let day = (Utc::now() - TimeDelta::days(1))
        .date_naive()
        .and_hms_opt(9, 0, 0)
        .unwrap()
        .and_utc();
    let mut b = Buffer::default();
    for m in 0..30u32 {
        b.occupancy.push(MinuteRow {
            room: "r1".into(),
            building: "b".into(),
            minute: (day + TimeDelta::minutes(m as i64)).timestamp_micros(),
            people_in: 1,
            people_out: 0,
            occupancy_min: m,
            occupancy_avg: m as f64 + 0.5,
            occupancy_max: m + 1,
            capacity: 10,
        });
    }
    b.flush(data, 0).unwrap();
    day
}

/// Every file under `dir` with its size and modification time.
fn tree(dir: &Path) -> BTreeMap<PathBuf, (u64, SystemTime)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let Ok(meta) = std::fs::symlink_metadata(&p) else {
                continue;
            };
            if meta.is_dir() {
                todo.push(p.clone());
            }
            // The audit log grows with every read: that is its job, and it is no file a
            // statement chose.
            if p.starts_with(dir.join("audit")) && meta.is_file() {
                continue;
            }
            out.insert(
                p,
                (
                    meta.len(),
                    meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
                ),
            );
        }
    }
    out
}

async fn connect(
    addr: SocketAddr,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user={} password={password} dbname=tellijn connect_timeout=10",
            addr.port(),
            STEWARD.0,
        ),
        tokio_postgres::NoTls,
    )
    .await?;
    tokio::spawn(conn);
    Ok(client)
}

/// The rows of a simple query, as text.
async fn rows(c: &tokio_postgres::Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_owned)).collect())
            }
            _ => None,
        })
        .collect()
}

/// What a session sees of its settings and of timestamps.
/// What a session sees of settings and of the seeded rows (`day`'s only: the running server
/// adds live per-minute rows for the current day as the test goes on).
async fn outlook(
    c: &tokio_postgres::Client,
    day: chrono::DateTime<Utc>,
) -> Vec<Vec<Vec<Option<String>>>> {
    let seeded = format!(
        "SELECT min(minute), max(minute) FROM occupancy WHERE date = '{}'",
        day.format("%Y-%m-%d")
    );
    let mut out = Vec::new();
    for sql in [
        "SHOW timezone",
        "SHOW TIME ZONE",
        "SHOW datafusion.execution.batch_size",
        "SELECT CAST('2026-06-01T12:00:00Z' AS TIMESTAMP WITH TIME ZONE) AS t",
        "SELECT CAST(TIMESTAMP '2026-06-01 12:00:00' AS TIMESTAMPTZ) AS t",
        seeded.as_str(),
    ] {
        out.push(rows(c, sql).await);
    }
    out
}

async fn http_history(addr: SocketAddr, day: chrono::DateTime<Utc>) -> String {
    let from = day.format("%Y-%m-%dT%H:00:00Z");
    let to = (day + TimeDelta::hours(1)).format("%Y-%m-%dT%H:00:00Z");
    let steward = format!("{}:{}", STEWARD.0, STEWARD.1);
    let path = format!("/api/v1/rooms/r1/history?from={from}&to={to}&step=15m");
    let (status, body) = http_basic(addr, &path, Some(&steward)).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Finding 1 and its variants over psql and tokio-postgres: nothing written, nothing changed,
/// no other session affected; the attacker's own session settings stay its own.
/// psql as a steward would run a script: every statement runs, errors or not.
async fn psql(addr: SocketAddr, user: (&str, &str), sql: &str) -> Psql {
    psql_run(addr, user, sql, false).await
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_attacks_write_nothing_and_change_no_other_session() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let target_dir = tempfile::tempdir().unwrap();
    let target = target_dir.path();
    let day = write_occupancy(&data);
    let server = start_text(&data, &campus_with_steward(&data, ""), "127.0.0.1:0").await;
    let pg = server.postgres_addr();

    // A steward minding their own business in a session of their own.
    let victim = connect(pg, STEWARD.1).await.unwrap();
    let seen = outlook(&victim, day).await;
    let rooms_before = rows(&victim, "SELECT * FROM rooms ORDER BY id").await;
    let counts_before = rows(&victim, "SELECT count(*) FROM counts").await;
    let history_before = http_history(server.http_addr(), day).await;
    let files_before = tree(&data);
    let targets_before = tree(target);

    let forged = data.join(format!("counts/date={}/forged.parquet", day.date_naive()));
    let forged = forged.display();
    let t = target.display();
    let row = "('x9', 'Forged', 'b', 'office', 1, true)";
    let copy = format!(
        "COPY (SELECT 'door-a' AS sensor, 'main' AS line, CAST(1 AS BIGINT) AS seq) TO '{forged}'"
    );
    let steal = format!("COPY (SELECT * FROM occupancy) TO '{t}/stolen.parquet'");
    // (statement, what the refusal says)
    let attacks: Vec<(String, &str)> = vec![
        (
            format!("EXPLAIN ANALYZE {copy}"),
            "EXPLAIN of \"COPY …\" is not allowed",
        ),
        (
            format!("EXPLAIN (ANALYZE) {steal}"),
            "EXPLAIN of \"COPY …\" is not allowed",
        ),
        (
            format!("explain analyze explain analyze {steal}"),
            "Explain must be root of the plan",
        ),
        (copy.clone(), "\"COPY …\" is not allowed"),
        (steal.clone(), "\"COPY …\" is not allowed"),
        (
            format!("/* harmless */ {steal}"),
            "\"COPY …\" is not allowed",
        ),
        (
            format!("EXPLAIN ANALYZE INSERT INTO rooms VALUES {row}"),
            "EXPLAIN of \"INSERT INTO …\" is not allowed",
        ),
        (
            format!("insert into rooms values {row}"),
            "\"INSERT INTO …\" is not allowed",
        ),
        (
            format!("WITH x AS (SELECT 1) INSERT INTO rooms VALUES {row}"),
            "\"INSERT INTO …\" inside a query is not allowed",
        ),
        (
            format!("EXPLAIN ANALYZE WITH x AS (SELECT 1) INSERT INTO rooms VALUES {row}"),
            "EXPLAIN of \"INSERT INTO …\" inside a query is not allowed",
        ),
        (
            "CREATE TABLE x AS SELECT * FROM rooms".into(),
            "\"CREATE TABLE …\" is not allowed",
        ),
        (
            format!("CREATE EXTERNAL TABLE ext (a INT) STORED AS CSV LOCATION '{t}/ext.csv'"),
            "sql parser error",
        ),
        (
            format!("CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '{t}/ext'"),
            "is not allowed",
        ),
        (
            "CREATE VIEW v AS SELECT 1".into(),
            "\"CREATE VIEW …\" is not allowed",
        ),
        ("DROP TABLE rooms".into(), "\"DROP TABLE …\" is not allowed"),
        (
            "DELETE FROM rooms".into(),
            "\"DELETE FROM …\" is not allowed",
        ),
        (
            "UPDATE rooms SET capacity = 1".into(),
            "\"UPDATE …\" is not allowed",
        ),
        // Multi-statement: the write is refused even after a read.
        (format!("SELECT 1; {steal}"), "\"COPY …\" is not allowed"),
        (
            format!("SELECT 1; INSERT INTO rooms VALUES {row}; SELECT 2"),
            "\"INSERT INTO …\" is not allowed",
        ),
        // Prepared statements in SQL, at PREPARE and at EXECUTE.
        (
            format!("PREPARE p AS INSERT INTO rooms VALUES {row}"),
            "\"PREPARE …\" is not allowed",
        ),
        (
            "PREPARE p AS SELECT 1; EXECUTE p".to_owned(),
            "\"PREPARE …\" is not allowed",
        ),
        ("EXECUTE p".into(), "\"EXECUTE …\" is not allowed"),
        // Settings beyond the session.
        (
            "SET datafusion.execution.batch_size = 1".into(),
            "SET datafusion.execution.batch_size is not allowed",
        ),
        (
            "SET \"datafusion\".execution.batch_size = 1".into(),
            "SET datafusion.execution.batch_size is not allowed",
        ),
        (
            "SET \"DataFusion\".\"Execution\".\"Time_Zone\" = '+07:00'".into(),
            "SET datafusion.execution.time_zone is not allowed",
        ),
        (
            "SET SESSION datafusion.runtime.memory_limit = '100G'".into(),
            "SET datafusion.runtime.memory_limit is not allowed",
        ),
        (
            "SET LOCAL timezone = '+07:00'".into(),
            "SET LOCAL is not supported",
        ),
        ("RESET ALL".into(), "\"RESET ALL\" is not allowed"),
    ];
    for (sql, why) in &attacks {
        let r = psql(pg, STEWARD, sql).await;
        assert!(!r.ok, "{sql} ran: {}", r.stdout);
        assert!(r.stderr.contains(why), "{sql}: {}", r.stderr);
    }
    // The extended protocol (Parse/Bind/Execute): refused at Parse, so never executed.
    let attacker = connect(pg, STEWARD.1).await.unwrap();
    for (sql, why) in &attacks {
        if sql.contains(';') {
            // A prepared statement is one statement; multi-statement text is refused as such.
            assert!(attacker.prepare(sql).await.is_err(), "{sql}");
            continue;
        }
        let e = attacker
            .query(sql.as_str(), &[])
            .await
            .expect_err(&format!("{sql} ran over the extended protocol"));
        let db = e.as_db_error().unwrap_or_else(|| panic!("{sql}: {e}"));
        assert!(db.message().contains(why), "{sql}: {}", db.message());
    }
    // With parameters.
    let e = attacker
        .execute(
            "INSERT INTO rooms VALUES ($1, 'Forged', 'b', 'office', 1, true)",
            &[&"x9"],
        )
        .await
        .unwrap_err();
    assert!(
        e.as_db_error()
            .is_some_and(|d| d.code() == &SqlState::READ_ONLY_SQL_TRANSACTION),
        "{e}"
    );
    // Simple-protocol multi-statement from a driver.
    assert!(
        attacker
            .batch_execute(&format!("SELECT 1; {steal}"))
            .await
            .is_err()
    );

    // The attacker's own settings are its own: they took effect in its session…
    let r = psql(
        pg,
        STEWARD,
        "SET timezone = '+07:00'; SET extra_float_digits = 1; SHOW timezone; SELECT CAST(TIMESTAMP '2026-06-01 12:00:00' AS TIMESTAMPTZ) AS t",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    assert!(r.stdout.contains("+07:00"), "{}", r.stdout);
    attacker
        .batch_execute("SET TIME ZONE 'Asia/Tokyo'")
        .await
        .unwrap();
    let shown = rows(&attacker, "SHOW timezone").await;
    assert!(
        shown.concat().contains(&Some("Asia/Tokyo".to_owned())),
        "{shown:?}"
    );
    // … and nowhere else: not in the concurrent session, not in a new one.
    assert_eq!(outlook(&victim, day).await, seen);
    let newcomer = connect(pg, STEWARD.1).await.unwrap();
    assert_eq!(outlook(&newcomer, day).await, seen);

    // Nothing was written, nothing changed.
    assert_eq!(
        tree(target),
        targets_before,
        "a file appeared in the target directory"
    );
    assert_eq!(
        tree(&data),
        files_before,
        "a file appeared or changed under the data directory"
    );
    assert_eq!(
        rows(&victim, "SELECT * FROM rooms ORDER BY id").await,
        rooms_before
    );
    assert_eq!(
        rows(&victim, "SELECT count(*) FROM counts").await,
        counts_before
    );
    assert_eq!(http_history(server.http_addr(), day).await, history_before);
    assert!(
        rows(
            &victim,
            "SELECT table_name FROM information_schema.tables WHERE table_name IN ('x', 'v', 'ext')"
        )
        .await
        .is_empty()
    );

    // Reads still run over both protocols, EXPLAIN ANALYZE of a read included.
    let r = psql(
        pg,
        STEWARD,
        "EXPLAIN ANALYZE SELECT count(*) FROM occupancy; SELECT count(*) FROM rooms",
    )
    .await;
    assert!(r.ok, "{}", r.stderr);
    let n: i64 = attacker
        .query_one("SELECT count(*) FROM occupancy WHERE room = $1", &[&"r1"])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 30);
    drop((victim, attacker, newcomer));
    server.stop().await.unwrap();
}

/// One steward cannot starve the rest: a statement running past `[limits]
/// sql_statement_timeout` is cancelled (57014), one needing more than `sql_memory_limit` fails
/// (53200), both naming the key; the session goes on.
#[tokio::test(flavor = "multi_thread")]
async fn sql_statement_timeout_and_memory_limit_fire() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(
        data,
        &campus_with_steward(
            data,
            "sql_statement_timeout = \"3s\"\nsql_memory_limit = \"32MiB\"",
        ),
        "127.0.0.1:0",
    )
    .await;
    let pg = server.postgres_addr();
    let files_before = tree(data);

    let greedy = "SELECT repeat('x', 2000) || CAST(value AS VARCHAR) AS s FROM generate_series(1, 200000) ORDER BY s DESC";
    let r = psql(pg, STEWARD, greedy).await;
    assert!(!r.ok, "{greedy} finished");
    assert!(
        r.stderr.contains("[limits] sql_memory_limit"),
        "{}",
        r.stderr
    );
    let c = connect(pg, STEWARD.1).await.unwrap();
    for extended in [false, true] {
        let e = if extended {
            c.query(greedy, &[]).await.unwrap_err()
        } else {
            c.simple_query(greedy).await.unwrap_err()
        };
        assert_eq!(e.code(), Some(&SqlState::OUT_OF_MEMORY), "{e}");
        assert!(
            e.as_db_error()
                .is_some_and(|d| d.message().contains("32MiB")),
            "{e}"
        );
        assert_eq!(rows(&c, "SELECT 2").await, vec![vec![Some("2".to_owned())]]);
    }
    drop(c);

    let long = "SELECT sum(value) FROM generate_series(1, 100000000000)";
    let started = Instant::now();
    let r = psql(pg, STEWARD, long).await;
    assert!(!r.ok, "{long} finished: {}", r.stdout);
    assert!(
        r.stderr
            .contains("canceling statement due to statement timeout"),
        "{}",
        r.stderr
    );
    assert!(
        r.stderr.contains("[limits] sql_statement_timeout"),
        "{}",
        r.stderr
    );
    assert!(started.elapsed() >= Duration::from_secs(3));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );

    let c = connect(pg, STEWARD.1).await.unwrap();
    for extended in [false, true] {
        let started = Instant::now();
        let e = if extended {
            c.query(long, &[]).await.unwrap_err()
        } else {
            c.simple_query(long).await.unwrap_err()
        };
        assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
        assert!(started.elapsed() < Duration::from_secs(30));
        // The session goes on.
        assert_eq!(rows(&c, "SELECT 1").await, vec![vec![Some("1".to_owned())]]);
    }
    // A lower timeout of the session's own applies.
    c.batch_execute("SET statement_timeout = '1s'")
        .await
        .unwrap();
    let started = Instant::now();
    let e = c.simple_query(long).await.unwrap_err();
    assert_eq!(e.code(), Some(&SqlState::QUERY_CANCELED), "{e}");
    assert!(
        started.elapsed() < Duration::from_millis(2900),
        "{:?}",
        started.elapsed()
    );
    c.batch_execute("SET statement_timeout = 0").await.unwrap();

    // Nothing spilled into the data directory: new files are only the server's own minutes.
    let own = |p: &Path| p.starts_with(data.join("occupancy")) || p.starts_with(data.join("state"));
    let after = tree(data);
    let new: Vec<&PathBuf> = after
        .keys()
        .filter(|p| !files_before.contains_key(*p) && !own(p))
        .collect();
    assert!(new.is_empty(), "{new:?}");
    drop(c);
    server.stop().await.unwrap();
}

/// `[limits] max_sql_connections`: the next connection is refused with 53300 before any
/// password is checked (a wrong one gets 53300 too, and no login failure is counted), the
/// open sessions go on, a flood holds no descriptors, a freed slot is usable again.
#[tokio::test(flavor = "multi_thread")]
async fn sql_connections_over_the_limit_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let server = start_text(
        data,
        &campus_with_steward(data, "max_sql_connections = 3"),
        "127.0.0.1:0",
    )
    .await;
    let pg = server.postgres_addr();
    let mut open = Vec::new();
    for _ in 0..3 {
        let c = connect(pg, STEWARD.1).await.unwrap();
        assert_eq!(rows(&c, "SELECT 1").await.len(), 1);
        open.push(c);
    }
    for password in [STEWARD.1, "wrong"] {
        let Err(e) = connect(pg, password).await else {
            panic!("a fourth connection was let in");
        };
        assert_eq!(e.code(), Some(&SqlState::TOO_MANY_CONNECTIONS), "{e}");
        let message = e.as_db_error().map(|d| d.message()).unwrap_or_default();
        assert!(
            message.contains("[limits] max_sql_connections"),
            "{message}"
        );
    }
    let r = psql(pg, STEWARD, "SELECT 1").await;
    assert!(!r.ok);
    assert!(
        r.stderr.contains("too many clients already"),
        "{}",
        r.stderr
    );
    let m = http_get(server.metrics_addr(), "/metrics").await;
    assert_eq!(
        metric(&m, "tellijn_sql_refused_connections_total"),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            "tellijn_auth_failures_total{reason=\"sql_bad_password\"}"
        ),
        0.0
    );

    // A flood of silent connections: each is closed at once or within seconds.
    let fds = || {
        std::fs::read_dir("/proc/self/fd")
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let baseline = fds();
    let mut flood = Vec::new();
    for _ in 0..200 {
        flood.push(tokio::net::TcpStream::connect(pg).await.unwrap());
    }
    assert!(
        wait_for(20, || async {
            let m = http_get(server.metrics_addr(), "/metrics").await;
            metric(&m, "tellijn_sql_refused_connections_total") >= 203.0
        })
        .await,
        "the flood was not refused"
    );
    // Ours: 200 client ends; the server's: at most the 16 being told, plus a little slack.
    assert!(
        fds() <= baseline + 200 + 16 + 8,
        "{} descriptors, {baseline} before",
        fds()
    );
    for c in &open {
        assert_eq!(rows(c, "SELECT 3").await.len(), 1);
    }
    drop(flood);

    // A closed session frees its slot.
    drop(open.pop());
    assert!(
        wait_for(20, || async { connect(pg, STEWARD.1).await.is_ok() }).await,
        "a freed slot was not given out again"
    );
    drop(open);
    server.stop().await.unwrap();
}
