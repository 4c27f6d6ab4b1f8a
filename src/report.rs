//! `tellijn report rooms`: booked vs used, per room, as one document for a timetabling office
//! (Markdown, CSV or HTML).
//!
//! The report runs the statements of `docs/sql/booked-vs-used.sql` (compiled in with
//! `include_str!`, so the documented SQL and the report cannot drift): each `-- @section NAME:
//! title` line starts a statement; `{from}`, `{to}` (UTC, `YYYY-MM-DD HH:MM:SS`) and `{tz}`
//! (the campus time zone) are filled in here. The window is local midnight of `--from` to local
//! midnight after `--to`, in `server.timezone`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::{NaiveDate, NaiveDateTime, TimeZone};
use tellijn_config::Campus;
use tellijn_queries::History;

/// The documented SQL, sections and all.
pub const SQL: &str = include_str!("../docs/sql/booked-vs-used.sql");

/// One statement of [`SQL`].
#[derive(Debug, Clone)]
pub struct Section {
    /// The name after `@section` (`summary`, `booked_empty`, `under_30`, `unbooked`).
    pub name: String,
    /// The text after the name: what the section shows.
    pub title: String,
    /// The statement, placeholders unfilled.
    pub sql: String,
}

/// The sections of [`SQL`], in order.
pub fn sections() -> Vec<Section> {
    let mut out: Vec<Section> = Vec::new();
    for line in SQL.lines() {
        if let Some(rest) = line.strip_prefix("-- @section ") {
            let (name, title) = rest.split_once(':').unwrap_or((rest, ""));
            out.push(Section {
                name: name.trim().to_owned(),
                title: title.trim().trim_end_matches('.').to_owned(),
                sql: String::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.sql.push_str(line);
            s.sql.push('\n');
        }
    }
    for s in &mut out {
        s.sql = s.sql.trim().to_owned();
    }
    out
}

/// The report window: whole local days `from..=to`, and the UTC instants they span.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub tz: chrono_tz::Tz,
    /// Local midnight starting `from`, UTC (inclusive).
    pub from_utc: NaiveDateTime,
    /// Local midnight after `to`, UTC (exclusive).
    pub to_utc: NaiveDateTime,
}

fn local_midnight_utc(tz: chrono_tz::Tz, day: NaiveDate) -> NaiveDateTime {
    // A midnight inside a spring-forward gap (a few zones) starts the day at the gap's end.
    let mut t = day.and_hms_opt(0, 0, 0).expect("midnight exists");
    for _ in 0..4 {
        if let Some(l) = tz.from_local_datetime(&t).earliest() {
            return l.naive_utc();
        }
        t += chrono::TimeDelta::minutes(30);
    }
    day.and_hms_opt(0, 0, 0).expect("midnight exists")
}

impl Window {
    /// Parses `--from` / `--to` (`YYYY-MM-DD`, both included) in the time zone `tz`.
    pub fn parse(from: &str, to: &str, tz: &str) -> Result<Window> {
        let date = |flag: &str, s: &str| {
            NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").map_err(|_| {
                anyhow::anyhow!(
                    "{flag} {s:?} is not a date; write it as YYYY-MM-DD, e.g. 2026-11-02"
                )
            })
        };
        let (f, t) = (date("--from", from)?, date("--to", to)?);
        if f > t {
            bail!(
                "--from {f} is after --to {t}; the window runs from --from to --to, both days included"
            );
        }
        let tz: chrono_tz::Tz = tz
            .parse()
            .map_err(|_| anyhow::anyhow!("server.timezone {tz:?} is not a time zone"))?;
        let next = t.succ_opt().context("--to is the last day chrono knows")?;
        Ok(Window {
            from: f,
            to: t,
            tz,
            from_utc: local_midnight_utc(tz, f),
            to_utc: local_midnight_utc(tz, next),
        })
    }

    /// `sql` with the placeholders filled for this window.
    pub fn fill(&self, sql: &str) -> String {
        let ts = |t: NaiveDateTime| t.format("%Y-%m-%d %H:%M:%S").to_string();
        sql.replace("{from}", &ts(self.from_utc))
            .replace("{to}", &ts(self.to_utc))
            // Time zone names are [A-Za-z0-9/_+-]; a quote could not come from chrono-tz.
            .replace("{tz}", &self.tz.name().replace('\'', "''"))
    }
}

/// A section's result as text cells (nulls as `None`), column names as the SQL gives them.
#[derive(Debug, Clone)]
pub struct Table {
    pub name: String,
    pub title: String,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
}

/// A result row: one text cell per column, `None` for null.
pub type Row = Vec<Option<String>>;

fn cells(batches: &[RecordBatch]) -> Result<(Vec<String>, Vec<Row>)> {
    let mut columns = Vec::new();
    let mut rows = Vec::new();
    let opts = FormatOptions::default();
    for b in batches {
        if columns.is_empty() {
            columns = b
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
        }
        let formatters = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<Vec<_>, _>>()?;
        for i in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .zip(&formatters)
                    .map(|(c, f)| {
                        (!c.is_null(i)).then(|| {
                            let s = f.value(i).to_string();
                            // Timestamps (local, with their offset): `YYYY-MM-DD HH:MM`.
                            if matches!(c.data_type(), DataType::Timestamp(..)) && s.len() >= 16 {
                                s[..16].replacen('T', " ", 1)
                            } else {
                                s
                            }
                        })
                    })
                    .collect(),
            );
        }
    }
    Ok((columns, rows))
}

/// Runs every section over `history` for `window`.
pub async fn run(history: &History, window: &Window) -> Result<Vec<Table>> {
    let mut out = Vec::new();
    for s in sections() {
        let batches = history
            .batches(&window.fill(&s.sql))
            .await
            .map_err(|e| anyhow::anyhow!("section {}: {e}", s.name))?;
        let (columns, rows) = cells(&batches)?;
        out.push(Table {
            name: s.name,
            title: s.title,
            columns,
            rows,
        });
    }
    Ok(out)
}

/// Output formats of `tellijn report rooms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Markdown,
    Csv,
    Html,
}

/// The definitions printed with the report (the same as the SQL file's header).
pub const DEFINITIONS: &[(&str, &str)] = &[
    (
        "Booking",
        "an occurrence from the calendars that is not cancelled (confirmed or tentative) and overlaps the window; its time is cut to the window.",
    ),
    (
        "Booked hours",
        "the bookings' durations added up, per room (two bookings of a room at the same time both count).",
    ),
    (
        "Used hours",
        "minutes in which at least one person was in the room, divided by 60.",
    ),
    (
        "No-show share",
        "no-shows among the decided bookings (a booking is decided once `no_show_after` has passed after its start).",
    ),
    (
        "Booked-but-empty hours",
        "booked minutes in which nobody was in the room, by weekday (Mon–Sun) and hour, in campus time. Minutes without a measurement count as neither used nor empty.",
    ),
    (
        "Under 30 %",
        "bookings whose peak occupancy stayed below 30 % of the room's capacity: a smaller room would do. Bookings without measurements are left out; no-shows are listed and marked.",
    ),
    (
        "Used without a booking",
        "minutes in which people were in a room that no booking covered, divided by 60.",
    ),
];

fn heading(column: &str) -> String {
    match column {
        "room" => "Room".into(),
        "name" => "Name".into(),
        "peak_people" => "Peak (people)".into(),
        "peak_share" => "Peak / capacity".into(),
        "no_show" => "No-show".into(),
        "no_shows" => "No-shows".into(),
        "no_show_share" => "No-show share".into(),
        "decided" => "Decided".into(),
        "booked_empty_hours" => "Booked-but-empty hours".into(),
        "unbooked_used_hours" => "Used without a booking (hours)".into(),
        other => {
            let s = other.replace('_', " ");
            let mut c = s.chars();
            match c.next() {
                Some(f) => f.to_uppercase().chain(c).collect(),
                None => s,
            }
        }
    }
}

/// A cell as a person reads it (Markdown and HTML): weekday names, yes/no, a dash for none.
fn readable(column: &str, cell: &Option<String>) -> String {
    let Some(v) = cell else {
        return match column {
            "no_show" => "undecided".into(),
            _ => "–".into(),
        };
    };
    match (column, v.as_str()) {
        ("weekday", d) => match d {
            "1" => "Mon",
            "2" => "Tue",
            "3" => "Wed",
            "4" => "Thu",
            "5" => "Fri",
            "6" => "Sat",
            "7" => "Sun",
            other => other,
        }
        .into(),
        ("hour", h) => h.parse::<u32>().map_or_else(
            |_| h.to_owned(),
            |h| format!("{h:02}:00–{:02}:00", (h + 1) % 24),
        ),
        (c, v) if c.ends_with("_share") && v.parse::<f64>().is_ok() => {
            let pct = (v.parse::<f64>().unwrap_or_default() * 1000.0).round() / 10.0;
            format!("{pct} %")
        }
        ("no_show", "true") => "yes".into(),
        ("no_show", "false") => "no".into(),
        _ => v.clone(),
    }
}

fn md_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '|' | '<' | '>' | '[' | ']' | '`' | '*' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// Escapes text for HTML element content and attribute values (the transparency page's).
pub use crate::transparency_html::escape as html_escape;

fn csv_field(s: &str) -> String {
    // Spreadsheets run a cell that starts with = + - @ as a formula: such text gets a leading '.
    let s = if s.starts_with(['=', '+', '-', '@']) && s.parse::<f64>().is_err() {
        format!("'{s}")
    } else {
        s.to_owned()
    };
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s
    }
}

/// One section as CSV (header line, then rows; empty cells for none).
pub fn csv(table: &Table) -> String {
    let mut out = String::new();
    let line = |v: Vec<String>| v.iter().map(|c| csv_field(c)).collect::<Vec<_>>().join(",");
    out.push_str(&line(table.columns.clone()));
    out.push('\n');
    for r in &table.rows {
        out.push_str(&line(
            r.iter().map(|c| c.clone().unwrap_or_default()).collect(),
        ));
        out.push('\n');
    }
    out
}

fn window_line(w: &Window) -> String {
    format!(
        "{} to {} (both days included), campus time {} ({} to {} UTC)",
        w.from,
        w.to,
        w.tz.name(),
        w.from_utc.format("%Y-%m-%d %H:%M"),
        w.to_utc.format("%Y-%m-%d %H:%M")
    )
}

const TITLE: &str = "Booked vs used";

/// The whole report as Markdown.
pub fn markdown(tables: &[Table], w: &Window) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {TITLE}\n");
    let _ = writeln!(out, "Window: {}.\n", window_line(w));
    let _ = writeln!(out, "## Definitions\n");
    for (term, def) in DEFINITIONS {
        let _ = writeln!(out, "- **{term}**: {def}");
    }
    for t in tables {
        let _ = writeln!(out, "\n## {}\n", md_escape(&t.title));
        if t.rows.is_empty() {
            let _ = writeln!(out, "None.");
            continue;
        }
        let head: Vec<String> = t.columns.iter().map(|c| heading(c)).collect();
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(head.len()));
        for r in &t.rows {
            let cells: Vec<String> = t
                .columns
                .iter()
                .zip(r)
                .map(|(c, v)| md_escape(&readable(c, v)))
                .collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    let _ = writeln!(
        out,
        "\nMade by `tellijn report rooms` from docs/sql/booked-vs-used.sql."
    );
    out
}

/// The whole report as one self-contained HTML page (no scripts, no external resources; every
/// value escaped).
pub fn html(tables: &[Table], w: &Window) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{TITLE}</title>\n\
         <style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:70em}}\
         table{{border-collapse:collapse;margin:0.5em 0 1.5em}}\
         th,td{{border:1px solid #bbb;padding:0.25em 0.6em;text-align:left}}\
         th{{background:#eee}}</style>\n</head>\n<body>\n<h1>{TITLE}</h1>\n<p>Window: {}.</p>\n\
         <h2>Definitions</h2>\n<dl>\n",
        html_escape(&window_line(w))
    );
    for (term, def) in DEFINITIONS {
        let _ = writeln!(
            out,
            "<dt>{}</dt><dd>{}</dd>",
            html_escape(term),
            html_escape(def)
        );
    }
    out.push_str("</dl>\n");
    for t in tables {
        let _ = writeln!(out, "<h2>{}</h2>", html_escape(&t.title));
        if t.rows.is_empty() {
            out.push_str("<p>None.</p>\n");
            continue;
        }
        out.push_str("<table>\n<tr>");
        for c in &t.columns {
            let _ = write!(out, "<th>{}</th>", html_escape(&heading(c)));
        }
        out.push_str("</tr>\n");
        for r in &t.rows {
            out.push_str("<tr>");
            for (c, v) in t.columns.iter().zip(r) {
                let _ = write!(out, "<td>{}</td>", html_escape(&readable(c, v)));
            }
            out.push_str("</tr>\n");
        }
        out.push_str("</table>\n");
    }
    out.push_str("<p>Made by <code>tellijn report rooms</code> from docs/sql/booked-vs-used.sql.</p>\n</body>\n</html>\n");
    out
}

/// What `tellijn report rooms` was asked for.
pub struct RoomsOptions {
    pub data: Option<PathBuf>,
    pub from: String,
    pub to: String,
    pub format: ReportFormat,
    /// Markdown and HTML: the file; CSV: a directory (one `NAME.csv` per section). None: stdout.
    pub out: Option<PathBuf>,
}

/// `tellijn report rooms`: runs the report and writes it; returns what was written where
/// (for the command's last line), or the document itself when it goes to stdout.
pub async fn rooms(campus: &Campus, opts: RoomsOptions) -> Result<Output> {
    let window = Window::parse(&opts.from, &opts.to, &campus.server.timezone)?;
    let data = opts.data.unwrap_or_else(|| campus.server.data_dir.clone());
    if !data.is_dir() {
        bail!(
            "there is no data directory at {}; pass the server's data directory with --data DIR",
            data.display()
        );
    }
    let history = History::open(&data, Some(campus))
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let tables = run(&history, &window).await?;
    match (opts.format, opts.out) {
        (ReportFormat::Markdown, None) => Ok(Output::Stdout(markdown(&tables, &window))),
        (ReportFormat::Html, None) => Ok(Output::Stdout(html(&tables, &window))),
        (ReportFormat::Csv, None) => {
            let mut out = String::new();
            for (i, t) in tables.iter().enumerate() {
                if i > 0 {
                    out.push('\n');
                }
                let _ = writeln!(out, "# {}: {}", t.name, t.title);
                out.push_str(&csv(t));
            }
            Ok(Output::Stdout(out))
        }
        (ReportFormat::Markdown, Some(p)) => write(&p, &markdown(&tables, &window)),
        (ReportFormat::Html, Some(p)) => write(&p, &html(&tables, &window)),
        (ReportFormat::Csv, Some(dir)) => {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create the directory {}", dir.display()))?;
            let mut files = Vec::new();
            for t in &tables {
                let p = dir.join(format!("{}.csv", t.name));
                write(&p, &csv(t))?;
                files.push(p);
            }
            Ok(Output::Files(files))
        }
    }
}

fn write(path: &Path, text: &str) -> Result<Output> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Output::Files(vec![path.to_path_buf()]))
}

/// Where the report went.
pub enum Output {
    /// The document, for stdout.
    Stdout(String),
    /// The files written.
    Files(Vec<PathBuf>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_are_the_documented_ones() {
        let names: Vec<String> = sections().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["summary", "booked_empty", "under_30", "unbooked"]);
        for s in sections() {
            assert!(s.sql.starts_with("WITH"), "{}: {}", s.name, s.sql);
            assert!(!s.title.is_empty());
        }
    }

    #[test]
    fn window_is_local_days_in_utc() {
        // November: Amsterdam is UTC+1. Across the end of summer time (2026-10-25): +2, then +1.
        let w = Window::parse("2026-11-16", "2026-11-16", "Europe/Amsterdam").unwrap();
        assert_eq!(w.from_utc.to_string(), "2026-11-15 23:00:00");
        assert_eq!(w.to_utc.to_string(), "2026-11-16 23:00:00");
        let w = Window::parse("2026-10-24", "2026-10-25", "Europe/Amsterdam").unwrap();
        assert_eq!(w.from_utc.to_string(), "2026-10-23 22:00:00");
        assert_eq!(w.to_utc.to_string(), "2026-10-25 23:00:00");
        let filled = w.fill("'{from}' '{to}' '{tz}'");
        assert_eq!(
            filled,
            "'2026-10-23 22:00:00' '2026-10-25 23:00:00' 'Europe/Amsterdam'"
        );
        for s in sections() {
            assert!(!w.fill(&s.sql).contains('{'), "{}", s.name);
        }
    }

    #[test]
    fn bad_windows_are_named() {
        let e = Window::parse("2026-13-01", "2026-12-02", "UTC").unwrap_err();
        assert!(
            e.to_string()
                .contains("--from \"2026-13-01\" is not a date"),
            "{e}"
        );
        let e = Window::parse("2026-12-03", "2026-12-02", "UTC").unwrap_err();
        assert!(e.to_string().contains("is after --to"), "{e}");
    }

    #[test]
    fn escaping() {
        assert_eq!(
            html_escape("<script>a&\"'</script>"),
            "&lt;script&gt;a&amp;&quot;&#39;&lt;/script&gt;"
        );
        assert_eq!(md_escape("a|b<c>"), "a\\|b\\<c\\>");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("-1.5"), "-1.5");
        assert_eq!(csv_field("a,\"b\""), "\"a,\"\"b\"\"\"");
    }
}
