//! Tests of [`super`]: per-session state and limits.

use super::*;

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

/// What one session sets (even through DataFusion directly, past the `SET` allowlist) reaches
/// neither another session nor the server's own context (the HTTP API's).
#[tokio::test]
async fn sessions_do_not_share_settings() {
    let dir = tempfile::tempdir().unwrap();
    let history = crate::History::open(dir.path(), None).await.unwrap();
    let base = history.context();
    let a = session_context(base, &SessionLimits::default()).unwrap();
    let b = session_context(base, &SessionLimits::default()).unwrap();
    for sql in [
        "SET datafusion.execution.time_zone = '+07:00'",
        "SET datafusion.execution.batch_size = 1",
    ] {
        a.sql(sql).await.unwrap().collect().await.unwrap();
    }
    let tz = |ctx: &SessionContext| ctx.state().config().options().execution.time_zone.clone();
    let batch = |ctx: &SessionContext| {
        ctx.state()
            .config()
            .options()
            .execution
            .batch_size
            .to_string()
    };
    assert_eq!(tz(&a).as_deref(), Some("+07:00"));
    assert_eq!(batch(&a), "1");
    for other in [&b, base] {
        assert_eq!(tz(other), None);
        assert_ne!(batch(other), "1");
    }
    // The tables are shared: every session reads the same history.
    let n = b
        .sql("SELECT count(*) FROM counts")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(n[0].num_rows(), 1);
}

/// A statement needing more than `[limits] sql_memory_limit` fails with a message naming the
/// key, and spills nothing to disk (no file appears anywhere under the data directory or the
/// system's temporary directory).
#[tokio::test]
async fn memory_limit_fails_a_statement_and_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let history = crate::History::open(dir.path(), None).await.unwrap();
    let limits = SessionLimits {
        memory: 16 << 20,
        statement_timeout: Duration::from_secs(60),
    };
    let ctx = session_context(history.context(), &limits).unwrap();
    let before = files_under(dir.path());
    let err = ctx
        .sql("SELECT v, count(*) FROM (SELECT value % 5000000 AS v FROM generate_series(1, 20000000)) GROUP BY v ORDER BY v")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap_err();
    assert!(
        matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
        "{err}"
    );
    let run = Run::start(&HashMap::new(), &limits);
    match run.error(PgWireError::ApiError(Box::new(err))) {
        PgWireError::UserError(e) => {
            assert_eq!(e.code, "53200");
            assert!(
                e.message.contains("[limits] sql_memory_limit"),
                "{}",
                e.message
            );
            assert!(e.message.contains("16MiB"), "{}", e.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(files_under(dir.path()), before);
    // The same statement in a session with room for it runs.
    let roomy = session_context(history.context(), &SessionLimits::default()).unwrap();
    roomy
        .sql("SELECT count(*) FROM (SELECT value % 5000000 AS v FROM generate_series(1, 2000000)) GROUP BY v")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
}

/// Rows stop with SQLSTATE 57014 naming `[limits] sql_statement_timeout` once a statement has
/// run its time, whether its rows never come or always come at once.
#[tokio::test]
async fn statement_timeout_cancels_rows_and_names_the_key() {
    let limits = SessionLimits {
        memory: 1 << 30,
        statement_timeout: Duration::from_millis(200),
    };
    let schema = Arc::new(Vec::<FieldInfo>::new());
    let never = QueryResponse::new(schema.clone(), futures::stream::pending());
    let always = QueryResponse::new(
        schema.clone(),
        futures::stream::repeat_with(|| {
            Ok(datafusion_postgres::pgwire::messages::data::DataRow::new(
                Default::default(),
                0,
            ))
        }),
    );
    for response in [never, always] {
        let run = Run::start(&HashMap::new(), &limits);
        let started = Instant::now();
        let Response::Query(mut q) = run.response(Response::Query(response)) else {
            panic!("not a query response");
        };
        let mut rows = 0;
        let err = loop {
            match q.data_rows.next().await {
                Some(Ok(_)) => rows += 1,
                Some(Err(e)) => break e,
                None => panic!("rows ended without the timeout"),
            }
            if rows % 1000 == 0 {
                tokio::task::yield_now().await;
            }
        };
        assert!(started.elapsed() >= Duration::from_millis(200));
        assert!(started.elapsed() < Duration::from_secs(10));
        match err {
            PgWireError::UserError(e) => {
                assert_eq!(e.code, "57014");
                assert!(
                    e.message.contains("[limits] sql_statement_timeout"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(q.data_rows.next().await.is_none(), "rows after the timeout");
    }
    // A session's own lower `SET statement_timeout` applies, never a higher one.
    let mut own = HashMap::new();
    own.insert(CLIENT_TIMEOUT.to_owned(), "50".to_owned());
    assert_eq!(timeout_of(&own, &limits), (Duration::from_millis(50), true));
    own.insert(CLIENT_TIMEOUT.to_owned(), "600000".to_owned());
    assert_eq!(timeout_of(&own, &limits), (limits.statement_timeout, false));
}
