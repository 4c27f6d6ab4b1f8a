//! `tellijn report rooms` (booked vs used): the SQL of docs/sql/booked-vs-used.sql gives known
//! figures on a small fixture campus, DuckDB gives the same answers on the same Parquet files,
//! the Grafana board's queries agree with the report, and the command writes Markdown, CSV and
//! HTML (escaped) with those figures.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use chrono::{Datelike, NaiveDate, NaiveDateTime, TimeDelta, TimeZone, Utc};
use tellijn::report::{self, Window};
use tellijn_config::Campus;
use tellijn_queries::History;
use tellijn_tables::schema;

const TZ: chrono_tz::Tz = chrono_tz::Europe::Amsterdam;
const HALL: &str = "Lecture hall <script>alert(1)</script>";

/// A Monday two to three weeks back: inside retention, in the past, and not next to a change
/// of summer time (those fall on Sundays; the fixture only touches Sunday 23:30 onwards).
fn monday() -> NaiveDate {
    let today = Utc::now().with_timezone(&TZ).date_naive();
    let back = today.weekday().num_days_from_monday() as i64 + 14;
    today - TimeDelta::days(back)
}

/// Local time on `day` (+ `days`) at `hh:mm`, as UTC µs.
fn at(day: NaiveDate, days: i64, hh: u32, mm: u32) -> i64 {
    let local = (day + TimeDelta::days(days))
        .and_hms_opt(hh, mm, 0)
        .unwrap();
    TZ.from_local_datetime(&local)
        .unwrap()
        .naive_utc()
        .and_utc()
        .timestamp_micros()
}

fn utc_date(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .unwrap()
        .date_naive()
        .to_string()
}

fn campus_toml(data: &Path) -> String {
    format!(
        r#"[server]
data_dir = "{}"
timezone = "Europe/Amsterdam"

[[buildings]]
id = "b"
name = "Building"

[[rooms]]
id = "hall"
building = "b"
name = "{HALL}"
kind = "lecture-hall"
capacity = 100

[[rooms]]
id = "meet"
building = "b"
name = "Meeting room"
kind = "meeting"
capacity = 10

[[rooms]]
id = "study"
building = "b"
name = "Study hall"
kind = "study"
capacity = 50
"#,
        data.display()
    )
}

/// The fixture (local times, day D a Monday, window D..D):
/// - hall (100): B1 09:00–10:00 used (80 people until 09:50, then empty); B2 11:00–12:00 a
///   no-show (empty); B3 12:00–13:00 cancelled, 5 people 12:00–12:30 (used without a booking);
///   B6 the next day (outside the window).
/// - study (50): B4 10:00–12:00, 10 people 10:00–11:00 (peak 20 %: under 30 %); B7 Sunday
///   23:30 – Monday 00:30 (half inside the window, no measurements).
/// - meet (10): 3 people 09:00–09:45 without a booking; B5 tentative 11:00–11:30, undecided,
///   4 people (peak 40 %).
///
/// Occupancy minutes 09:00–12:59 for every room.
fn write_fixture(data: &Path, d: NaiveDate) {
    // room, start, end, status, no_show, uid_hash
    type Booking<'a> = (&'a str, i64, i64, &'a str, Option<bool>, &'a str);
    let bookings: Vec<Booking> = vec![
        (
            "hall",
            at(d, 0, 9, 0),
            at(d, 0, 10, 0),
            "confirmed",
            Some(false),
            "u1",
        ),
        (
            "hall",
            at(d, 0, 11, 0),
            at(d, 0, 12, 0),
            "confirmed",
            Some(true),
            "u2",
        ),
        (
            "hall",
            at(d, 0, 12, 0),
            at(d, 0, 13, 0),
            "cancelled",
            None,
            "u3",
        ),
        (
            "study",
            at(d, 0, 10, 0),
            at(d, 0, 12, 0),
            "confirmed",
            Some(false),
            "u4",
        ),
        (
            "meet",
            at(d, 0, 11, 0),
            at(d, 0, 11, 30),
            "tentative",
            None,
            "u5",
        ),
        (
            "hall",
            at(d, 1, 9, 0),
            at(d, 1, 10, 0),
            "confirmed",
            None,
            "u6",
        ),
        (
            "study",
            at(d, -1, 23, 30),
            at(d, 0, 0, 30),
            "confirmed",
            Some(false),
            "u7",
        ),
    ];
    let mut dates: Vec<String> = bookings.iter().map(|b| utc_date(b.1)).collect();
    dates.sort();
    dates.dedup();
    for date in dates {
        let rows: Vec<_> = bookings.iter().filter(|b| utc_date(b.1) == date).collect();
        let batch = RecordBatch::try_new(
            schema::bookings(),
            vec![
                Arc::new(StringArray::from_iter_values(rows.iter().map(|b| b.0))) as ArrayRef,
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|b| b.1),
                )),
                Arc::new(TimestampMicrosecondArray::from_iter_values(
                    rows.iter().map(|b| b.2),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|b| b.3))),
                Arc::new(BooleanArray::from(
                    rows.iter().map(|b| b.4).collect::<Vec<_>>(),
                )),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|b| b.5))),
            ],
        )
        .unwrap();
        let dir = data.join(format!("bookings/date={date}"));
        std::fs::create_dir_all(&dir).unwrap();
        tellijn_tables::write::write_parquet(&dir.join("part-0.parquet"), &batch).unwrap();
    }

    let t = |hh, mm| at(d, 0, hh, mm);
    let people = |room: &str, m: i64| -> i32 {
        match room {
            "hall" if m < t(9, 50) => 80,
            "hall" if m >= t(12, 0) && m < t(12, 30) => 5,
            "study" if m >= t(10, 0) && m < t(11, 0) => 10,
            "meet" if m < t(9, 45) => 3,
            "meet" if m >= t(11, 0) && m < t(11, 30) => 4,
            _ => 0,
        }
    };
    let mut rows: Vec<(&str, i64, i32, i32)> = Vec::new();
    for (room, cap) in [("hall", 100), ("meet", 10), ("study", 50)] {
        for i in 0..240 {
            let m = t(9, 0) + i * 60_000_000;
            rows.push((room, m, people(room, m), cap));
        }
    }
    let date = utc_date(t(9, 0));
    assert_eq!(date, utc_date(t(12, 59)));
    let n = rows.len();
    let batch = RecordBatch::try_new(
        schema::occupancy(),
        vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))) as ArrayRef,
            Arc::new(StringArray::from_iter_values(std::iter::repeat_n("b", n))),
            Arc::new(TimestampMicrosecondArray::from_iter_values(
                rows.iter().map(|r| r.1),
            )),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int32Array::from(vec![0; n])),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.2 as f64),
            )),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Int32Array::from_iter_values(rows.iter().map(|r| r.3))),
        ],
    )
    .unwrap();
    let dir = data.join(format!("occupancy/date={date}"));
    std::fs::create_dir_all(&dir).unwrap();
    tellijn_tables::write::write_parquet(&dir.join("part-0.parquet"), &batch).unwrap();
}

fn setup() -> (tempfile::TempDir, std::path::PathBuf, Campus, NaiveDate) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let d = monday();
    write_fixture(&data, d);
    let toml = campus_toml(&data);
    std::fs::write(dir.path().join("campus.toml"), &toml).unwrap();
    let campus = Campus::parse(&toml, "campus.toml").unwrap();
    (dir, data, campus, d)
}

fn rows(t: &report::Table) -> Vec<Vec<String>> {
    t.rows
        .iter()
        .map(|r| r.iter().map(|c| c.clone().unwrap_or_default()).collect())
        .collect()
}

/// Batches as text cells, nulls empty (timestamps are not in the board's results).
fn cells(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let opts = arrow::util::display::FormatOptions::default();
    let mut out = Vec::new();
    for b in batches {
        let f: Vec<_> = b
            .columns()
            .iter()
            .map(|c| arrow::util::display::ArrayFormatter::try_new(c.as_ref(), &opts).unwrap())
            .collect();
        for i in 0..b.num_rows() {
            out.push(f.iter().map(|f| f.value(i).to_string()).collect());
        }
    }
    out
}

fn strs(v: &[&[&str]]) -> Vec<Vec<String>> {
    v.iter()
        .map(|r| r.iter().map(|s| s.to_string()).collect())
        .collect()
}

/// Runs `sql` in DuckDB over the Parquet files of `data`, with `rooms` from the campus; cells
/// printed as the report prints them (timestamps `YYYY-MM-DD HH:MM`, nulls empty).
fn duckdb(data: &Path, campus: &Campus, sql: &str) -> Vec<Vec<String>> {
    let rooms: Vec<String> = campus
        .rooms
        .iter()
        .map(|r| {
            format!(
                "('{}', '{}', '{}', '{}', {}, {})",
                r.id,
                r.name.replace('\'', "''"),
                r.building,
                r.kind.as_str(),
                r.capacity,
                r.public
            )
        })
        .collect();
    let script = r#"
import datetime, duckdb, json, sys
data, rooms, sql = sys.argv[1], sys.argv[2], sys.argv[3]
con = duckdb.connect()
for t in ("occupancy", "bookings"):
    con.sql(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{data}/{t}/*/*.parquet', hive_partitioning=true)")
con.sql(f"CREATE TABLE rooms AS SELECT * FROM (VALUES {rooms}) t(id, name, building, kind, capacity, public)")
def cell(x):
    if x is None: return ""
    if isinstance(x, bool): return "true" if x else "false"
    if isinstance(x, datetime.datetime): return x.strftime("%Y-%m-%d %H:%M")
    return str(x)
print(json.dumps([[cell(x) for x in r] for r in con.sql(sql).fetchall()]))
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &data.display().to_string(),
            &rooms.join(", "),
            sql,
        ])
        .output()
        .expect("python3 with duckdb (pip install duckdb)");
    assert!(
        out.status.success(),
        "DuckDB refused:\n{sql}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn report_sql_gives_known_figures_and_duckdb_agrees() {
    let (_dir, data, campus, d) = setup();
    let day = d.to_string();
    let w = Window::parse(&day, &day, &campus.server.timezone).unwrap();
    let history = History::open(&data, Some(&campus)).await.unwrap();
    let tables = report::run(&history, &w).await.unwrap();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["summary", "booked_empty", "under_30", "unbooked"]);

    // room, name, capacity, bookings, booked h, used h, decided, no-shows, no-show share.
    assert_eq!(
        tables[0].columns,
        [
            "room",
            "name",
            "capacity",
            "bookings",
            "booked_hours",
            "used_hours",
            "decided",
            "no_shows",
            "no_show_share"
        ]
    );
    assert_eq!(
        rows(&tables[0]),
        strs(&[
            &["hall", HALL, "100", "2", "2.0", "1.33", "2", "1", "0.5"],
            &[
                "meet",
                "Meeting room",
                "10",
                "1",
                "0.5",
                "1.25",
                "0",
                "0",
                ""
            ],
            &[
                "study",
                "Study hall",
                "50",
                "2",
                "2.5",
                "1.0",
                "2",
                "0",
                "0.0"
            ],
        ])
    );
    // Booked-but-empty: hall 09:50–10:00 and 11:00–12:00 (no-show), study 11:00–12:00; Monday.
    assert_eq!(
        rows(&tables[1]),
        strs(&[
            &["hall", HALL, "1", "9", "0.17"],
            &["hall", HALL, "1", "11", "1.0"],
            &["study", "Study hall", "1", "11", "1.0"],
        ])
    );
    // Under 30 %: the no-show in the hall, the study-hall booking at 20 %.
    let local = |hh: u32| format!("{day} {hh:02}:00");
    assert_eq!(
        rows(&tables[2]),
        vec![
            vec![
                "hall".to_string(),
                HALL.into(),
                local(11),
                local(12),
                "0".into(),
                "100".into(),
                "0.0".into(),
                "true".into(),
                "u2".into()
            ],
            vec![
                "study".to_string(),
                "Study hall".into(),
                local(10),
                local(12),
                "10".into(),
                "50".into(),
                "0.2".into(),
                "false".into(),
                "u4".into()
            ],
        ]
    );
    // Used without a booking: meet 45 min, hall 30 min (its booking was cancelled).
    assert_eq!(
        rows(&tables[3]),
        strs(&[&["meet", "Meeting room", "0.75"], &["hall", HALL, "0.5"]])
    );

    // The same statements, as documented, in DuckDB over the same files.
    for (s, t) in report::sections().iter().zip(&tables) {
        assert_eq!(
            duckdb(&data, &campus, &w.fill(&s.sql)),
            rows(t),
            "DuckDB differs on section {}",
            s.name
        );
    }

    // A window with nothing booked and nothing measured still answers (every room listed).
    let empty = Window::parse("2026-01-05", "2026-01-05", "Europe/Amsterdam").unwrap();
    let tables = report::run(&history, &empty).await.unwrap();
    assert_eq!(tables[0].rows.len(), 3);
    assert!(tables[1..].iter().all(|t| t.rows.is_empty()));
}

fn board_queries() -> Vec<(String, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("grafana/dashboards/booked-vs-used.json");
    let board: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(board["title"], "Tellijn · Booked vs used");
    board["panels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["title"].as_str().unwrap().to_owned(),
                p["targets"][0]["rawSql"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn grafana_board_agrees_with_the_report() {
    let (_dir, data, campus, d) = setup();
    let day = d.to_string();
    let w = Window::parse(&day, &day, "Europe/Amsterdam").unwrap();
    let history = History::open(&data, Some(&campus)).await.unwrap();
    let rfc = |t: NaiveDateTime| format!("'{}'", t.format("%Y-%m-%dT%H:%M:%SZ"));
    let expand = |sql: &str| {
        sql.replace("$__timeFrom()", &rfc(w.from_utc))
            .replace("$__timeTo()", &rfc(w.to_utc))
    };
    let run = |sql: String| {
        let history = &history;
        async move {
            let batches = history
                .batches(&sql)
                .await
                .unwrap_or_else(|e| panic!("{e}\n{sql}"));
            cells(&batches)
        }
    };
    let q = board_queries();
    let find = |t: &str| {
        q.iter()
            .find(|(title, _)| title == t)
            .unwrap_or_else(|| panic!("no panel {t}"))
            .1
            .clone()
    };
    // The per-room table is the documented summary, with Grafana's macros.
    let summary = &report::sections()[0].sql;
    assert_eq!(
        find("Booked and used hours per room"),
        summary
            .replace("'{from}'", "$__timeFrom()")
            .replace("'{to}'", "$__timeTo()")
    );
    assert_eq!(
        run(expand(&find("Booked and used hours (campus)"))).await,
        strs(&[&["5.0", "3.58"]])
    );
    assert_eq!(
        run(expand(&find(
            "Booked-but-empty hours by weekday and hour (campus time)"
        )))
        .await,
        strs(&[
            &["1", "9", "0.17"],
            &["1", "10", "0.0"],
            &["1", "11", "2.0"],
            &["1", "12", "0.0"]
        ])
    );
    assert_eq!(
        run(expand(&find("Bookings under 30 % of capacity per room"))).await,
        strs(&[
            &["hall", HALL, "1", "2"],
            &["study", "Study hall", "1", "1"],
            &["meet", "Meeting room", "0", "1"]
        ])
    );
    assert_eq!(
        run(expand(&find("Rooms used without a booking"))).await,
        strs(&[
            &["meet", "Meeting room", "0.75"],
            &["hall", HALL, "0.5"],
            &["study", "Study hall", "0.0"]
        ])
    );
    // Every panel answers in DuckDB too (common SQL), with the same rows as DataFusion.
    for (title, sql) in &q {
        let sql = expand(sql);
        let ours = cells(&history.batches(&sql).await.unwrap());
        assert_eq!(duckdb(&data, &campus, &sql), ours, "{title}");
    }
}

fn tellijn(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn report_command_writes_markdown_csv_and_html() {
    let (dir, data, _campus, d) = setup();
    let day = d.to_string();
    let config = dir.path().join("campus.toml");
    let config = config.to_str().unwrap();
    let base = [
        "report", "rooms", "--config", config, "--from", &day, "--to", &day,
    ];

    // Markdown on stdout: title, window, definitions, a table per section.
    let (ok, md, err) = tellijn(&base);
    assert!(ok, "{err}");
    assert!(md.starts_with("# Booked vs used\n"), "{md}");
    assert!(md.contains(&format!("Window: {day} to {day}")), "{md}");
    assert!(md.contains("## Definitions"), "{md}");
    assert!(md.contains("**No-show share**"), "{md}");
    assert!(
        md.contains("| hall | Lecture hall \\<script\\>alert(1)\\</script\\> | 100 | 2 | 2.0 | 1.33 | 2 | 1 | 50 % |"),
        "{md}"
    );
    assert!(
        md.contains("| study | Study hall | Mon | 11:00–12:00 | 1.0 |"),
        "{md}"
    );
    assert!(
        md.contains(&format!(
            "| {day} 10:00 | {day} 12:00 | 10 | 50 | 20 % | no | u4 |"
        )),
        "{md}"
    );
    assert!(md.contains("| meet | Meeting room | 0.75 |"), "{md}");

    // Markdown to a file.
    let out = dir.path().join("report.md");
    let mut args = base.to_vec();
    args.extend(["--out", out.to_str().unwrap()]);
    let (ok, _, err) = tellijn(&args);
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), md);

    // CSV: one file per section.
    let csv_dir = dir.path().join("csv");
    let mut args = base.to_vec();
    args.extend(["--format", "csv", "--out", csv_dir.to_str().unwrap()]);
    let (ok, _, err) = tellijn(&args);
    assert!(ok, "{err}");
    let summary = std::fs::read_to_string(csv_dir.join("summary.csv")).unwrap();
    assert_eq!(
        summary,
        format!(
            "room,name,capacity,bookings,booked_hours,used_hours,decided,no_shows,no_show_share\n\
             hall,{HALL},100,2,2.0,1.33,2,1,0.5\n\
             meet,Meeting room,10,1,0.5,1.25,0,0,\n\
             study,Study hall,50,2,2.5,1.0,2,0,0.0\n"
        )
    );
    let unbooked = std::fs::read_to_string(csv_dir.join("unbooked.csv")).unwrap();
    assert!(unbooked.contains("meet,Meeting room,0.75\n"), "{unbooked}");
    for f in ["booked_empty.csv", "under_30.csv"] {
        assert!(csv_dir.join(f).is_file(), "{f}");
    }
    // CSV on stdout: the sections one after the other.
    let mut args = base.to_vec();
    args.extend(["--format", "csv"]);
    let (ok, csv, err) = tellijn(&args);
    assert!(ok, "{err}");
    assert!(csv.contains("# under_30: "), "{csv}");
    assert!(csv.contains("study,Study hall,1,11,1.0\n"), "{csv}");

    // HTML: one self-contained page, every value escaped.
    let mut args = base.to_vec();
    args.extend(["--format", "html"]);
    let (ok, html, err) = tellijn(&args);
    assert!(ok, "{err}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(!html.contains("<script"), "{html}");
    assert!(
        html.contains("<td>Lecture hall &lt;script&gt;alert(1)&lt;/script&gt;</td>"),
        "{html}"
    );
    assert!(html.contains("<td>1.33</td>"), "{html}");
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );

    // Errors: one readable line, non-zero exit.
    let fails = |args: &[&str], want: &str| {
        let (ok, out, err) = tellijn(args);
        assert!(!ok, "{out}");
        assert!(err.contains(want), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    };
    fails(
        &[
            "report",
            "rooms",
            "--config",
            config,
            "--from",
            "2026-13-01",
            "--to",
            &day,
        ],
        "is not a date",
    );
    fails(
        &[
            "report",
            "rooms",
            "--config",
            config,
            "--from",
            &day,
            "--to",
            "2020-01-01",
        ],
        "is after --to",
    );
    let missing = dir.path().join("nowhere");
    fails(
        &[
            "report",
            "rooms",
            "--config",
            config,
            "--data",
            missing.to_str().unwrap(),
            "--from",
            &day,
            "--to",
            &day,
        ],
        "there is no data directory",
    );
    assert!(data.is_dir());
}
