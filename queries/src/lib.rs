//! # Tellijn queries
//!
//! SQL over the Parquet history, with DataFusion.
//!
//! # Layout
//! - [`History::open`]: a DataFusion session with the history tables (`counts`, `zone_counts`:
//!   hive-partitioned listing tables with fixed schemas, so they answer even before the first
//!   file exists) and the campus tables from the config (`rooms`, `buildings`, `sensors`).
//! - [`retained`]: wraps the history tables so no query ever sees a day past retention.
//! - [`History::query`]: runs one statement and renders it as a table, CSV or JSON.
//! - [`pg`]: the PostgreSQL wire endpoint, a folder: `server` (listener, connection limit,
//!   timeouts), `startup` (login against `[[users]]`), `audit` (the audit line before every read).
//!   The tables' schemas and retention cutoff come from `tellijn-tables`.
//!
//! Reads only: every entry point plans statements with DDL, DML and `SET` forbidden
//! ([`readonly`]); the PostgreSQL endpoint gives each connection its own session ([`session`]).
//! Files appear whole (renamed into place by the processors), so querying while a
//! server writes is safe. Each query lists the files again, so new files are seen at once.

pub mod access;
pub mod fast_date_part;
pub mod pg;
pub mod readonly;
pub mod retained;
pub mod session;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringViewArray};
use arrow::datatypes::{DataType, Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::{ParquetFormat, transform_schema_to_view};
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::planner::ExprPlanner;
use datafusion::prelude::{SessionConfig, SessionContext};
use tellijn_config::Campus;
use tellijn_tables::schema;

/// How to print a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    Json,
}

/// Errors of SQL over the history.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(
        "there is no Tellijn data directory at {0}; pass the server's data directory with --data DIR"
    )]
    NoData(PathBuf),
    #[error("{0}")]
    Sql(String),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<datafusion::error::DataFusionError> for QueryError {
    fn from(e: datafusion::error::DataFusionError) -> Self {
        // DataFusion's messages name the bad column or syntax; strip its error-type prefixes.
        QueryError::Sql(e.strip_backtrace().to_string())
    }
}

/// SQL over one data directory.
pub struct History {
    ctx: SessionContext,
    data_dir: std::path::PathBuf,
}

impl History {
    /// Registers the tables of `data_dir`, and the campus tables when a config is given.
    pub async fn open(data_dir: &Path, campus: Option<&Campus>) -> Result<History, QueryError> {
        if !data_dir.is_dir() {
            return Err(QueryError::NoData(data_dir.to_path_buf()));
        }
        let ctx = SessionContext::new_with_state(session_state()?);
        register_history(&ctx, data_dir, campus)?;
        if let Some(c) = campus {
            register_campus(&ctx, c)?;
        }
        Ok(History {
            ctx,
            data_dir: data_dir.to_path_buf(),
        })
    }

    /// Puts a reloaded campus in force: its `rooms`, `buildings` and `sensors` tables and its
    /// retention periods (what is past them is no longer read), for every session started
    /// after this (an open session keeps the tables it began with).
    pub fn set_campus(&self, campus: &Campus) -> Result<(), QueryError> {
        register_history(&self.ctx, &self.data_dir, Some(campus))?;
        register_campus(&self.ctx, campus)
    }

    /// Runs one SQL statement; only a read ([`readonly::read_only_options`]: no DDL, DML,
    /// `COPY` or `SET`, checked on the plan).
    pub async fn batches(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        let df = self
            .ctx
            .sql_with_options(sql, readonly::read_only_options())
            .await?;
        Ok(df.collect().await?)
    }

    /// Runs one SQL statement and renders the result.
    pub async fn query(&self, sql: &str, format: Format) -> Result<String, QueryError> {
        let batches = self.batches(sql).await?;
        render(&batches, format)
    }

    /// The DataFusion session, for endpoints that serve SQL themselves.
    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Adds PostgreSQL's `pg_catalog` (for `psql`'s `\d`, DBeaver, Grafana) to the session.
    pub fn with_pg_catalog(self) -> Result<History, QueryError> {
        datafusion_postgres::datafusion_pg_catalog::pg_catalog::setup_pg_catalog(
            &self.ctx,
            "datafusion",
            datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider,
        )
        .map_err(|e| QueryError::Internal(e.to_string()))?;
        pg::compat::register(&self.ctx);
        pg::like_escape::register(&self.ctx);
        Ok(self)
    }
}

/// DataFusion's defaults, with `date_part` and `extract` computing hour, minute and weekday
/// of UTC timestamps by arithmetic ([`fast_date_part`]).
fn session_state() -> Result<SessionState, QueryError> {
    let config = SessionConfig::new().with_information_schema(true);
    let mut planners: Vec<Arc<dyn ExprPlanner>> = vec![Arc::new(fast_date_part::ExtractPlanner)];
    planners.extend(SessionStateDefaults::default_expr_planners());
    let mut state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_expr_planners(planners)
        .build();
    // In place of the built-in (same name and aliases).
    state.register_udf(Arc::new(fast_date_part::FastDatePart::udf()))?;
    Ok(state)
}

/// The history tables of `data_dir`, read within `campus`'s retention.
fn register_history(
    ctx: &SessionContext,
    data_dir: &Path,
    campus: Option<&Campus>,
) -> Result<(), QueryError> {
    let privacy = campus.map(|c| c.privacy.clone()).unwrap_or_default();
    for (name, schema, retention) in [
        (schema::COUNTS, schema::counts(), privacy.raw_retention),
        (
            schema::ZONE_COUNTS,
            schema::zone_counts(),
            privacy.raw_retention,
        ),
        (
            schema::OCCUPANCY,
            schema::occupancy(),
            privacy.aggregate_retention,
        ),
        (
            schema::BOOKINGS,
            schema::bookings(),
            privacy.aggregate_retention,
        ),
        (
            schema::HEADCOUNTS,
            schema::headcounts(),
            privacy.aggregate_retention,
        ),
    ] {
        let dir = data_dir.join(name);
        std::fs::create_dir_all(&dir)
            .map_err(|e| QueryError::Internal(format!("{}: {e}", dir.display())))?;
        let url =
            ListingTableUrl::parse(format!("{}/", dir.canonicalize().unwrap_or(dir).display()))?;
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_owned(), DataType::Utf8)]);
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            // Text columns as `Utf8View` (the files store them dictionary-encoded; views
            // decode without copying each value and group short keys such as room ids
            // cheaply: a full-year scan grouped by room spent 55 % copying and interning
            // strings before, `bench/sql.sh`). The files and their schema are unchanged.
            .with_schema(Arc::new(transform_schema_to_view(&schema)));
        let table = Arc::new(ListingTable::try_new(config)?);
        // A reload replaces the table (registering a name twice is an error).
        ctx.deregister_table(name)?;
        ctx.register_table(
            name,
            Arc::new(retained::Retained {
                inner: table,
                retention,
            }),
        )?;
    }
    Ok(())
}

/// `examples/campus.toml`, for tests.
#[cfg(test)]
pub(crate) fn example_campus() -> Campus {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campus.toml");
    let text = std::fs::read_to_string(path).expect("examples/campus.toml");
    Campus::parse(&text, "examples/campus.toml").expect("examples/campus.toml is valid")
}

fn register_campus(ctx: &SessionContext, c: &Campus) -> Result<(), QueryError> {
    // Text as `Utf8View`, like the history tables: a join of a year of `occupancy` with `rooms`
    // compares and copies 16-byte views instead of strings (and needs no cast of `rooms.id`
    // to the history's type per row): the join query of `bench/sql.sh` went from 9.5 to 6.5 s.
    let strings = |v: Vec<String>| Arc::new(StringViewArray::from(v)) as ArrayRef;
    let utf8 = |n: &str| Field::new(n, DataType::Utf8View, false);
    let rooms = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            utf8("id"),
            utf8("name"),
            utf8("building"),
            utf8("kind"),
            Field::new("capacity", DataType::Int64, false),
            Field::new("public", DataType::Boolean, false),
        ])),
        vec![
            strings(c.rooms.iter().map(|r| r.id.clone()).collect()),
            strings(c.rooms.iter().map(|r| r.name.clone()).collect()),
            strings(c.rooms.iter().map(|r| r.building.clone()).collect()),
            strings(c.rooms.iter().map(|r| r.kind.as_str().to_owned()).collect()),
            Arc::new(Int64Array::from(
                c.rooms
                    .iter()
                    .map(|r| r.capacity as i64)
                    .collect::<Vec<_>>(),
            )),
            Arc::new(BooleanArray::from(
                c.rooms.iter().map(|r| r.public).collect::<Vec<_>>(),
            )),
        ],
    )
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    let buildings = RecordBatch::try_new(
        Arc::new(Schema::new(vec![utf8("id"), utf8("name")])),
        vec![
            strings(c.buildings.iter().map(|b| b.id.clone()).collect()),
            strings(c.buildings.iter().map(|b| b.name.clone()).collect()),
        ],
    )
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    // Secrets are never exposed: only ids and what each line and zone counts into.
    let sensors = RecordBatch::try_new(
        Arc::new(Schema::new(vec![utf8("id"), utf8("lines"), utf8("zones")])),
        vec![
            strings(c.sensors.iter().map(|s| s.id.clone()).collect()),
            strings(
                c.sensors
                    .iter()
                    .map(|s| {
                        s.lines
                            .iter()
                            .map(|l| match &l.from {
                                Some(f) => format!("{}:{}->{}", l.line, f, l.into),
                                None => format!("{}:->{}", l.line, l.into),
                            })
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect(),
            ),
            strings(
                c.sensors
                    .iter()
                    .map(|s| {
                        s.zones
                            .iter()
                            .map(|z| format!("{}:{}", z.zone, z.room))
                            .collect::<Vec<_>>()
                            .join(",")
                    })
                    .collect(),
            ),
        ],
    )
    .map_err(|e| QueryError::Internal(e.to_string()))?;
    for (name, batch) in [
        ("rooms", rooms),
        ("buildings", buildings),
        ("sensors", sensors),
    ] {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        ctx.deregister_table(name)?;
        ctx.register_table(name, Arc::new(readonly::ReadOnlyTable(Arc::new(table))))?;
    }
    Ok(())
}

/// Renders batches as a text table, CSV (with header) or a JSON array of objects.
pub fn render(batches: &[RecordBatch], format: Format) -> Result<String, QueryError> {
    let internal = |e: arrow::error::ArrowError| QueryError::Internal(e.to_string());
    match format {
        Format::Table => Ok(arrow::util::pretty::pretty_format_batches(batches)
            .map_err(internal)?
            .to_string()),
        Format::Csv => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut buf);
                for b in batches {
                    w.write(b).map_err(internal)?;
                }
            }
            String::from_utf8(buf).map_err(|e| QueryError::Internal(e.to_string()))
        }
        Format::Json => {
            let mut buf = Vec::new();
            {
                let mut w = arrow::json::ArrayWriter::new(&mut buf);
                let refs: Vec<&RecordBatch> = batches.iter().collect();
                w.write_batches(&refs).map_err(internal)?;
                w.finish().map_err(internal)?;
            }
            if buf.is_empty() {
                buf.extend_from_slice(b"[]");
            }
            String::from_utf8(buf).map_err(|e| QueryError::Internal(e.to_string()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};
    use tellijn_processors::parquet_sink::Buffer;
    use tellijn_wire::LineCount;

    fn write(dir: &Path, n: u64) {
        let mut b = Buffer::default();
        let t: DateTime<Utc> = "2026-11-22T10:00:00Z".parse().unwrap();
        for seq in 0..n {
            let m = LineCount {
                sensor: "s".into(),
                line: "main".into(),
                seq,
                start: t,
                end: t + chrono::TimeDelta::seconds(1),
                people_in: 2,
                people_out: 1,
            };
            b.counts.push((m, t));
        }
        b.flush(dir, 1).unwrap();
    }

    #[tokio::test]
    async fn counts_answer_before_and_after_files_appear() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path(), None).await.unwrap();
        let empty = h
            .query("SELECT count(*) AS n FROM counts", Format::Csv)
            .await
            .unwrap();
        assert_eq!(empty, "n\n0\n");
        write(dir.path(), 3);
        // The same session sees the new file.
        let csv = h
            .query(
                "SELECT count(*) AS n, sum(people_in) AS i, min(date) AS d FROM counts",
                Format::Csv,
            )
            .await
            .unwrap();
        assert_eq!(csv, "n,i,d\n3,6,2026-11-22\n");
        let json = h
            .query("SELECT seq FROM counts ORDER BY seq LIMIT 2", Format::Json)
            .await
            .unwrap();
        assert_eq!(json, r#"[{"seq":0},{"seq":1}]"#);
        let table = h
            .query("SELECT count(*) AS n FROM zone_counts", Format::Table)
            .await
            .unwrap();
        assert!(table.contains("| 0 |"), "{table}");
    }

    #[tokio::test]
    async fn nothing_past_retention_is_shown() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), 2);
        // A partition from long ago, as if the server had not swept it yet.
        let old = dir.path().join("counts/date=2001-01-01");
        std::fs::create_dir_all(&old).unwrap();
        for f in std::fs::read_dir(dir.path().join("counts/date=2026-11-22")).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, old.join(f.file_name().unwrap())).unwrap();
        }
        let h = History::open(dir.path(), None).await.unwrap();
        let csv = h
            .query(
                "SELECT date, count(*) AS n FROM counts GROUP BY date ORDER BY date",
                Format::Csv,
            )
            .await
            .unwrap();
        assert_eq!(csv, "date,n\n2026-11-22,2\n");
        let csv = h
            .query(
                "SELECT count(*) AS n FROM counts WHERE date = '2001-01-01'",
                Format::Csv,
            )
            .await
            .unwrap();
        assert_eq!(csv, "n\n0\n");
    }

    /// What history and campus tables can hold: counts, times, ids from the config — no column
    /// for an image, a face, a device address or a secret.
    #[tokio::test]
    async fn tables_hold_only_these_columns() {
        let dir = tempfile::tempdir().unwrap();
        let campus = crate::example_campus();
        let h = History::open(dir.path(), Some(&campus)).await.unwrap();
        for (table, columns) in [
            (
                "counts",
                "sensor,line,seq,start,end,people_in,people_out,received,date",
            ),
            ("zone_counts", "sensor,zone,seq,at,people,received,date"),
            (
                "occupancy",
                "room,building,minute,people_in,people_out,occupancy_min,occupancy_avg,occupancy_max,capacity,date",
            ),
            ("rooms", "id,name,building,kind,capacity,public"),
            ("buildings", "id,name"),
            ("sensors", "id,lines,zones"),
        ] {
            let df = h.context().table(table).await.unwrap();
            let names: Vec<String> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(names.join(","), columns, "{table}");
        }
        let csv = h.query("SELECT * FROM sensors", Format::Csv).await.unwrap();
        assert!(
            !csv.contains("argon2"),
            "a secret hash in the sensors table: {csv}"
        );
    }

    /// A reload replaces the campus tables, for sessions started from the context before and
    /// after (the PostgreSQL endpoint's sessions are made from it).
    #[tokio::test]
    async fn a_reloaded_campus_replaces_the_campus_tables() {
        let dir = tempfile::tempdir().unwrap();
        let campus = crate::example_campus();
        let h = History::open(dir.path(), Some(&campus)).await.unwrap();
        let count = |h: &History| {
            let ctx = h.context().clone();
            async move {
                let b = ctx
                    .sql("SELECT count(*) FROM rooms")
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                b[0].column(0)
                    .as_any()
                    .downcast_ref::<arrow::array::Int64Array>()
                    .unwrap()
                    .value(0)
            }
        };
        let before = count(&h).await;
        let mut fewer = campus.clone();
        fewer.rooms.pop();
        h.set_campus(&fewer).unwrap();
        assert_eq!(count(&h).await, before - 1);
        h.set_campus(&campus).unwrap();
        assert_eq!(count(&h).await, before, "and back");
    }

    #[tokio::test]
    async fn bad_sql_is_a_readable_error() {
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path(), None).await.unwrap();
        let e = h
            .query("SELECT nope FROM counts", Format::Table)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("nope"), "{e}");
        let e = h.query("SELEC 1", Format::Table).await.unwrap_err();
        assert!(e.to_string().contains("SELEC"), "{e}");
        assert!(matches!(
            History::open(&dir.path().join("missing"), None).await,
            Err(QueryError::NoData(_))
        ));
    }

    #[tokio::test]
    async fn extract_and_date_part_use_the_fast_path_and_answer_as_postgres_does() {
        use datafusion::logical_expr::{Expr, LogicalPlan};
        let dir = tempfile::tempdir().unwrap();
        let h = History::open(dir.path(), None).await.unwrap();
        // 2026-11-22 is a Sunday; before the epoch too (1969-12-31 23:59, a Wednesday).
        let sql = "SELECT extract(hour FROM t) AS h, extract(MINUTE FROM t) AS m, \
                   date_part('dow', t) AS d, datepart('isodow', t) AS i \
                   FROM (VALUES (TIMESTAMP '2026-11-22 17:45:00'), (TIMESTAMP '1969-12-31 23:59:00')) v(t)";
        let plan = h.context().state().create_logical_plan(sql).await.unwrap();
        let LogicalPlan::Projection(p) = &plan else {
            panic!("a projection: {plan}")
        };
        for e in &p.expr {
            let mut e = e;
            while let Expr::Alias(a) = e {
                e = a.expr.as_ref();
            }
            let Expr::ScalarFunction(f) = e else {
                panic!("a function: {e}")
            };
            assert!(
                f.func
                    .inner()
                    .downcast_ref::<fast_date_part::FastDatePart>()
                    .is_some(),
                "{e} is planned to the built-in"
            );
        }
        let csv = h.query(sql, Format::Csv).await.unwrap();
        assert_eq!(csv, "h,m,d,i\n17,45,0,7\n23,59,3,3\n");
    }
}
