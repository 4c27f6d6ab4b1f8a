//! The transparency report: from the running config (and what the server recorded), what is
//! collected, where it is kept, who may read it, for how long, which sensors exist, and how many
//! messages and logins were refused in the last 30 days. `tellijn transparency` prints it as
//! Markdown; `/transparency` serves the same content as an HTML page.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tellijn_config::Campus;
use tellijn_config::campus::{Role, RoomKind};

/// Refusal counts per (event, reason).
type Counts = BTreeMap<(String, String), u64>;

/// What has been counted of one audit file: up to which byte, and the counts so far.
#[derive(Default)]
struct FileCounts {
    read: u64,
    counts: Counts,
}

/// Counts of every audit file read so far, by path. An audit file only grows (lines are
/// appended, whole), so each byte is read once: a closed day's file is never read again, and
/// today's only from where the last request stopped. Anonymous `/transparency` requests thus
/// cost a directory listing and a `stat` per day, never a re-read of the log.
static CACHE: std::sync::LazyLock<std::sync::Mutex<HashMap<PathBuf, FileCounts>>> =
    std::sync::LazyLock::new(Default::default);

/// Refusals per (event, reason) in the audit files of the last `days` days. Aggregated lines
/// (`refusals`, see `tellijn_config::refusals`) count with their `count`.
pub fn refusals(data_dir: &Path, now: DateTime<Utc>, days: i64) -> Counts {
    let mut out = BTreeMap::new();
    let since = (now - TimeDelta::days(days)).date_naive();
    let Ok(entries) = std::fs::read_dir(data_dir.join("audit")) else {
        return out;
    };
    let mut cache = CACHE.lock().unwrap_or_else(|p| p.into_inner());
    for e in entries.flatten() {
        let path = e.path();
        let date = path
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok());
        if date.is_none_or(|d| d < since) {
            continue;
        }
        let Ok(len) = e.metadata().map(|m| m.len()) else {
            continue;
        };
        let file = cache.entry(path.clone()).or_default();
        if len < file.read {
            // Shorter than what was counted: not the file counted before. Count it afresh.
            *file = FileCounts::default();
        }
        if len > file.read {
            read_more(&path, file);
        }
        for (k, n) in &file.counts {
            *out.entry(k.clone()).or_insert(0) += n;
        }
    }
    // Forget files that left the window or the disk, so the cache stays one entry per day.
    cache.retain(|path, _| {
        path.exists()
            && path
                .file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| NaiveDate::parse_from_str(s, "%Y-%m-%d").ok())
                .is_some_and(|d| d >= since)
    });
    out
}

/// Counts the whole lines of `path` after `file.read`; a torn last line waits for its end.
fn read_more(path: &Path, file: &mut FileCounts) {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return;
    };
    let mut bytes = Vec::new();
    if f.seek(SeekFrom::Start(file.read)).is_err() || f.read_to_end(&mut bytes).is_err() {
        return;
    }
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n') else {
        return;
    };
    let text = String::from_utf8_lossy(&bytes[..=end]);
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let event = v["event"].as_str().unwrap_or_default();
        let (event, n) = match event {
            "publish_refused" | "auth_failure" | "subscribe_refused" => (event, 1),
            "refusals" => match v["refused"].as_str() {
                Some(refused @ ("publish_refused" | "auth_failure" | "subscribe_refused")) => {
                    (refused, v["count"].as_u64().unwrap_or(0))
                }
                _ => continue,
            },
            _ => continue,
        };
        let reason = v["reason"].as_str().unwrap_or("-").to_owned();
        *file.counts.entry((event.to_owned(), reason)).or_insert(0) += n;
    }
    file.read += end as u64 + 1;
}

/// "30 days" for whole days, else humantime's form.
fn duration_text(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if secs > 0 && secs.is_multiple_of(86_400) {
        format!("{} days", secs / 86_400)
    } else {
        humantime::format_duration(d).to_string()
    }
}

fn kind_text(kind: RoomKind) -> &'static str {
    match kind {
        RoomKind::LectureHall => "lecture halls",
        RoomKind::Study => "study halls",
        RoomKind::Office => "offices",
        RoomKind::Meeting => "meeting rooms",
        RoomKind::Hall => "halls",
    }
}

/// The report, in Markdown.
pub fn report(campus: &Campus, data_dir: &Path, now: DateTime<Utc>) -> String {
    report_with(campus, data_dir, now, None)
}

/// [`report`] with the section "Accuracy from head counts" (computed in SQL by
/// [`crate::headcounts::accuracy`]; `None` leaves the section out).
pub fn report_with(
    campus: &Campus,
    data_dir: &Path,
    now: DateTime<Utc>,
    accuracy: Option<&crate::headcounts::Accuracy>,
) -> String {
    let mut s = String::new();
    let p = &campus.privacy;
    let _ = writeln!(s, "# Tellijn transparency report");
    let _ = writeln!(
        s,
        "\nGenerated {} from the configuration this server runs (config SHA-256 `{}`).",
        now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        campus.hash()
    );

    let _ = writeln!(s, "\n## What is collected\n");
    let _ = writeln!(
        s,
        "Only counts. A camera's own counter turns what it sees into numbers on the device; the sensor agent sends those numbers and nothing else, and the broker refuses anything that is not a valid count message. No image, video, face, name, card or device identifier of a person is received or stored.\n"
    );
    let mut kinds: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    for r in &campus.rooms {
        let lines = campus
            .sensors
            .iter()
            .flat_map(|x| &x.lines)
            .filter(|l| l.into == r.id || l.from.as_deref() == Some(r.id.as_str()))
            .count();
        let zones = campus
            .sensors
            .iter()
            .flat_map(|x| &x.zones)
            .filter(|z| z.room == r.id)
            .count();
        let e = kinds.entry(kind_text(r.kind)).or_default();
        e.0 += 1;
        e.1 += lines;
        e.2 += zones;
    }
    let _ = writeln!(
        s,
        "| rooms | how many | door lines (people in / out per interval) | overhead zones (people present per reading) |"
    );
    let _ = writeln!(s, "|---|---|---|---|");
    for (k, (n, l, z)) in &kinds {
        let _ = writeln!(s, "| {k} | {n} | {l} | {z} |");
    }
    let entrances = campus
        .sensors
        .iter()
        .flat_map(|x| &x.lines)
        .filter(|l| campus.buildings.iter().any(|b| b.id == l.into))
        .count();
    let _ = writeln!(
        s,
        "\nBuilding entrances: {entrances} counting lines. From these counts the server derives the number of people per room and building, and per room and minute."
    );

    let _ = writeln!(s, "\n## Where it is kept\n");
    let dir = data_dir.display();
    let _ = writeln!(
        s,
        "- Count messages: `{dir}/counts/` and `{dir}/zone_counts/` (Parquet files, one folder per day)."
    );
    let _ = writeln!(s, "- People per room and minute: `{dir}/occupancy/`.");
    if !campus.calendars.is_empty() {
        let _ = writeln!(
            s,
            "- Room bookings from the calendar feeds (room, start, end, status, a hash of the event's id; no titles or names): `{dir}/bookings/`."
        );
    }
    let _ = writeln!(
        s,
        "- Head counts staff recorded to check the counting (room, time, number of people, the recording user's name, Tellijn's number then): `{dir}/headcounts/`."
    );
    let _ = writeln!(
        s,
        "- Audit log (refusals, logins, configuration, deletions; never a payload): `{dir}/audit/`, hash-chained (`tellijn audit verify`)."
    );
    let _ = writeln!(
        s,
        "- Current numbers: in the server's memory and as retained MQTT topics for building automation."
    );
    let _ = writeln!(
        s,
        "- On this server only: MQTT {}, HTTP {}, SQL {}.",
        campus.server.mqtt, campus.server.http, campus.server.postgres
    );
    let _ = writeln!(
        s,
        "- Operators' metrics (exact numbers per room, for monitoring): `/metrics` on {} only, {}.",
        campus.server.metrics,
        if campus.server.metrics_token_sha256.is_some() {
            "behind a bearer token"
        } else {
            "without a token (keep it on loopback or a private network)"
        }
    );

    let _ = writeln!(s, "\n## How long it is kept\n");
    let _ = writeln!(
        s,
        "- Count messages: {}; then the day's files are deleted and the deletion is audited.",
        duration_text(p.raw_retention)
    );
    let _ = writeln!(
        s,
        "- People per room and minute: {}.",
        duration_text(p.aggregate_retention)
    );
    let _ = writeln!(
        s,
        "- Head counts: {}.",
        duration_text(p.aggregate_retention)
    );
    let _ = writeln!(s, "- Audit log: kept (it holds no counts of people).");

    let _ = writeln!(s, "\n## Who may read it\n");
    let _ = writeln!(
        s,
        "- Everyone: the free-places page (`/`) and the anonymous API, for public rooms only (never offices); fewer than {} people are shown as a band, never as a number.",
        p.public_min_count
    );
    if campus.server.anonymous_read.is_empty() {
        let _ = writeln!(s, "- Anonymous MQTT: nobody.");
    } else {
        let _ = writeln!(
            s,
            "- Anonymous MQTT clients may read: {} (public rooms and buildings as the free-places page shows them, small numbers as bands).",
            campus
                .server
                .anonymous_read
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for r in &campus.mqtt_readers {
        let _ = writeln!(
            s,
            "- MQTT reader `{}` may read: {}.",
            r.name,
            r.topics
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if campus.users.is_empty() {
        let _ = writeln!(s, "- SQL and the signed-in API: nobody (no `[[users]]`).");
    }
    for u in &campus.users {
        let what = match u.role {
            Role::Steward => "steward: SQL (read-only) and the API with exact numbers",
            Role::Viewer => "viewer: the API for every room, small numbers as bands; no SQL",
        };
        let heads = if u.records_headcounts() {
            "; records head counts"
        } else {
            ""
        };
        let _ = writeln!(s, "- User `{}` — {what}{heads}.", u.name);
    }

    let _ = writeln!(s, "\n## Sensors\n");
    let statuses: BTreeMap<String, serde_json::Value> =
        std::fs::read(data_dir.join("state/sensors.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
    let _ = writeln!(
        s,
        "| sensor | counts | reports it sends | reported config hash | last status (online since) | agent version |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    for x in &campus.sensors {
        let counts: Vec<String> = x
            .lines
            .iter()
            .map(|l| format!("line {} → {}", l.line, l.into))
            .chain(
                x.zones
                    .iter()
                    .map(|z| format!("zone {} over {}", z.zone, z.room)),
            )
            .collect();
        let st = statuses.get(&x.id);
        let field = |k: &str| {
            st.and_then(|v| v.get(k))
                .map(|v| match v {
                    serde_json::Value::String(t) => t.clone(),
                    serde_json::Value::Array(a) => a
                        .iter()
                        .filter_map(|e| e.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    serde_json::Value::Null => "—".into(),
                    other => other.to_string(),
                })
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            x.id,
            counts.join("; "),
            field("sends"),
            field("config_hash"),
            field("since"),
            field("version")
        );
    }

    cameras(&mut s, campus, &statuses);
    bookings_section(&mut s, campus, data_dir);
    if let Some(a) = accuracy {
        accuracy_section(&mut s, a);
    }

    let _ = writeln!(s, "\n## Refused in the last 30 days\n");
    let refused = refusals(data_dir, now, 30);
    if refused.is_empty() {
        let _ = writeln!(s, "Nothing was refused.");
    } else {
        let _ = writeln!(s, "| what | reason | how often |");
        let _ = writeln!(s, "|---|---|---|");
        for ((event, reason), n) in &refused {
            let what = match event.as_str() {
                "publish_refused" => "message refused by the broker",
                "auth_failure" => "login refused",
                _ => "subscription refused",
            };
            let _ = writeln!(s, "| {what} | {reason} | {n} |");
        }
    }
    s
}

/// Where bookings come from and what is kept of them (only when `[[calendars]]` are set).
fn bookings_section(s: &mut String, campus: &Campus, data_dir: &Path) {
    if campus.calendars.is_empty() {
        return;
    }
    let b = &campus.bookings;
    let _ = writeln!(s, "\n## Bookings\n");
    let _ = writeln!(
        s,
        "Room bookings are read from the calendar feeds below. Of each event only the room, start, end, status (confirmed, tentative, cancelled) and a keyed hash of its UID are kept, in `{}/bookings/` for {}; its title, description, organiser and attendees are dropped while the feed is read and are never stored, logged or published.\n",
        data_dir.display(),
        duration_text(campus.privacy.aggregate_retention)
    );
    let _ = writeln!(
        s,
        "A booking nobody came to in its first {} is marked a no-show; a public room ({}) unbooked for {} while fewer than {} people were counted is listed on the free-places page as an open study place, until {} before its next booking. Whether a room is booked, and no-shows, are for signed-in users and the MQTT readers granted `tellijn/v1/rooms/…/booking` only.\n",
        duration_text(b.no_show_after),
        b.study_place_kinds
            .iter()
            .map(|k| kind_text(*k))
            .collect::<Vec<_>>()
            .join(" or "),
        duration_text(b.study_place_min),
        campus.privacy.public_min_count,
        duration_text(b.study_place_margin)
    );
    let _ = writeln!(s, "| feed | from | rooms | read every |");
    let _ = writeln!(s, "|---|---|---|---|");
    for (i, c) in campus.calendars.iter().enumerate() {
        let rooms = match &c.room {
            Some(r) => format!("`{r}`"),
            None => format!("{} locations mapped to rooms", c.locations.len()),
        };
        let _ = writeln!(
            s,
            "| {i} | `{}` | {rooms} | {} |",
            tellijn_bookings::fetch::redact_url(&c.url),
            duration_text(c.refresh)
        );
    }
}

/// How far Tellijn's numbers were from people's head counts, per room and per sensor. About
/// the system, not about people: only errors and how many checks they rest on.
fn accuracy_section(s: &mut String, a: &crate::headcounts::Accuracy) {
    let _ = writeln!(s, "\n## Accuracy from head counts\n");
    if a.checks() == 0 {
        let _ = writeln!(
            s,
            "No head counts have been recorded yet: staff can count a room and record the number (the free-places page, `POST /api/v1/rooms/{{id}}/headcounts`, `tellijn headcounts import`), and Tellijn compares it with its own number at that moment."
        );
        return;
    }
    let _ = writeln!(
        s,
        "Staff counted rooms and recorded the number; each is compared with Tellijn's number at that moment. Mean absolute error: the mean of |Tellijn − head count|, in people. Bias: the mean of Tellijn − head count (positive: Tellijn counts too many)."
    );
    let f = |v: Option<f64>| v.map_or("—".to_owned(), |v| format!("{v:.2}"));
    for (title, list) in [("room", &a.rooms), ("sensor", &a.sensors)] {
        let _ = writeln!(
            s,
            "\n| {title} | checks | mean absolute error | bias |\n|---|---|---|---|"
        );
        for x in list.iter().filter(|x| x.checks > 0) {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                x.id,
                x.checks,
                f(x.mean_abs_error),
                f(x.bias)
            );
        }
    }
    let _ = writeln!(
        s,
        "\nA sensor's figures are those of the rooms its lines and zones count into."
    );
}

/// The cameras' privacy levels and frame figures, as their agents last reported them
/// (`[source] kind = "camera"`): every device not at privacy level 3 is named.
fn cameras(s: &mut String, campus: &Campus, statuses: &BTreeMap<String, serde_json::Value>) {
    let _ = writeln!(s, "\n## Cameras\n");
    let _ = writeln!(
        s,
        "A camera's counter (`tellijn-counter`) turns frames into counts on the camera computer and cannot reach the network. It keeps a frame at most 200 ms (first byte read to buffer zeroed; a frame that would be kept longer is dropped unprocessed) and shows nothing but the counting lines at privacy level 3, the default. At level 2 the installer view on the camera computer may also show tracked people as dots; no level sends more than counts."
    );
    let num = |st: &serde_json::Value, k: &str| st.get(k).and_then(serde_json::Value::as_u64);
    let reported: Vec<(&str, &serde_json::Value)> = campus
        .sensors
        .iter()
        .filter_map(|x| Some((x.id.as_str(), statuses.get(&x.id)?)))
        .filter(|(_, st)| num(st, "privacy_level").is_some() || num(st, "frames").is_some())
        .collect();
    let not_3: Vec<String> = reported
        .iter()
        .filter_map(|(id, st)| {
            let level = num(st, "privacy_level")?;
            (level != 3).then(|| format!("`{id}` (level {level})"))
        })
        .collect();
    if reported.is_empty() {
        let _ = writeln!(
            s,
            "\nNo sensor has reported a camera counter (they count with other means, or have not reported yet)."
        );
        return;
    }
    if not_3.is_empty() {
        let _ = writeln!(s, "\nEvery camera reports privacy level 3.");
    } else {
        let _ = writeln!(s, "\nDevices not at privacy level 3: {}.", not_3.join(", "));
    }
    let _ = writeln!(
        s,
        "\n| sensor | privacy level | frames | dropped (of them late) | frame lifetime p99 / max | counter restarts |"
    );
    let _ = writeln!(s, "|---|---|---|---|---|---|");
    let ms = |us: Option<u64>| {
        us.map(|u| format!("{:.1} ms", u as f64 / 1000.0))
            .unwrap_or_else(|| "—".into())
    };
    let n = |v: Option<u64>| v.map(|v| v.to_string()).unwrap_or_else(|| "—".into());
    for (id, st) in &reported {
        let _ = writeln!(
            s,
            "| {id} | {} | {} | {} ({}) | {} / {} | {} |",
            n(num(st, "privacy_level")),
            n(num(st, "frames")),
            n(num(st, "frame_drops")),
            n(num(st, "frame_late")),
            ms(num(st, "frame_p99_us")),
            ms(num(st, "frame_max_us")),
            n(num(st, "counter_restarts")),
        );
    }
}

/// The report as a self-contained HTML page ([`crate::transparency_html`]).
pub fn page(markdown: &str) -> String {
    crate::transparency_html::page(markdown)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusal cache is one per process: a report for a date 40 days ahead forgets the
    /// files another test is counting (a race that failed
    /// `the_refusal_summary_counts_aggregated_lines_and_reads_each_byte_once` once a third
    /// test ran beside it). Tests that read the audit files take turns.
    static CACHE_USERS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn serial() -> std::sync::MutexGuard<'static, ()> {
        CACHE_USERS.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[test]
    fn the_report_follows_the_config_and_the_audit_log() {
        let _turn = serial();
        let dir = tempfile::tempdir().unwrap();
        let text =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/campus.toml"))
                .unwrap();
        let campus = Campus::parse(&text, "examples/campus.toml").unwrap();
        let log = tellijn_config::AuditLog::open(dir.path()).unwrap();
        for _ in 0..3 {
            log.record_confirmed(tellijn_config::AuditEvent::publish_refused(
                "x",
                "t",
                "not_json",
                b"secret-payload",
            ))
            .unwrap();
        }
        log.record_confirmed(tellijn_config::AuditEvent::AuthFailure {
            client: "c".into(),
            username: None,
            reason: "bad_secret",
        })
        .unwrap();
        let r = report(&campus, dir.path(), Utc::now());
        for needle in [
            "## What is collected",
            "## Who may read it",
            "## How long it is kept",
            "Count messages: 30 days",
            "People per room and minute: 730 days",
            &campus.hash(),
            "| message refused by the broker | not_json | 3 |",
            "| login refused | bad_secret | 1 |",
        ] {
            assert!(r.contains(needle), "{needle} missing:\n{r}");
        }
        for s in &campus.sensors {
            assert!(r.contains(&format!("| {} |", s.id)), "{}", s.id);
        }
        for u in &campus.users {
            assert!(r.contains(&format!("User `{}`", u.name)));
            assert!(
                !r.contains(&u.password_hash),
                "a password hash in the report"
            );
        }
        assert!(!r.contains("secret-payload"));
        // Older than 30 days: not counted.
        let later = Utc::now() + TimeDelta::days(40);
        assert!(report(&campus, dir.path(), later).contains("Nothing was refused."));
        assert!(page("<b>&").contains("&lt;b&gt;&amp;"));
    }

    #[test]
    fn the_report_names_every_camera_not_at_privacy_level_3() {
        let _turn = serial();
        let dir = tempfile::tempdir().unwrap();
        use tellijn_test_support::{CampusToml, HASH};
        let text = CampusToml::new()
            .building("b", "B")
            .room("r1", "b", "Study hall", "study", 50)
            .line_sensor("cam-1", HASH, &[("main", "r1", None)])
            .line_sensor("cam-2", HASH, &[("main", "r1", None)])
            .line_sensor("door-3", HASH, &[("main", "r1", None)])
            .toml();
        let campus = Campus::parse(&text, "test").unwrap();
        let ids = ["cam-1", "cam-2"];
        let r = report(&campus, dir.path(), Utc::now());
        assert!(r.contains("No sensor has reported a camera counter"), "{r}");
        std::fs::create_dir_all(dir.path().join("state")).unwrap();
        let mut statuses = serde_json::Map::new();
        statuses.insert(
            ids[0].into(),
            serde_json::json!({"online":true,"frames":1500,"frame_drops":4,"frame_late":1,"frame_p99_us":42000,"frame_max_us":51234,"privacy_level":2,"counter_restarts":3}),
        );
        statuses.insert(
            ids[1].into(),
            serde_json::json!({"online":true,"frames":10,"frame_drops":0,"frame_late":0,"frame_p99_us":1000,"frame_max_us":2000,"privacy_level":3,"counter_restarts":0}),
        );
        // Not a configured sensor: never listed.
        statuses.insert(
            "ghost".into(),
            serde_json::json!({"online":true,"privacy_level":1}),
        );
        std::fs::write(
            dir.path().join("state/sensors.json"),
            serde_json::to_vec(&statuses).unwrap(),
        )
        .unwrap();
        let r = report(&campus, dir.path(), Utc::now());
        for needle in [
            format!("Devices not at privacy level 3: `{}` (level 2).", ids[0]),
            format!("| {} | 2 | 1500 | 4 (1) | 42.0 ms / 51.2 ms | 3 |", ids[0]),
            format!("| {} | 3 | 10 | 0 (0) | 1.0 ms / 2.0 ms | 0 |", ids[1]),
        ] {
            assert!(r.contains(&needle), "{needle} missing:\n{r}");
        }
        assert!(!r.contains("ghost"));
        assert!(
            !r.contains("| door-3 | 3") && !r.contains("`door-3`"),
            "{r}"
        );
        assert!(page(&r).contains("<td>42.0 ms / 51.2 ms</td>"));
    }

    fn sealed_lines(dir: &Path) -> PathBuf {
        dir.join(format!("audit/{}.jsonl", Utc::now().date_naive()))
    }

    #[test]
    fn the_refusal_summary_counts_aggregated_lines_and_reads_each_byte_once() {
        let _turn = serial();
        use tellijn_config::refusals::{Example, kind};
        let dir = tempfile::tempdir().unwrap();
        let log = std::sync::Arc::new(tellijn_config::AuditLog::open(dir.path()).unwrap());
        let agg = tellijn_config::Refusals::new(log.clone());
        for _ in 0..1000 {
            agg.note(kind::AUTH_FAILURE, "unknown_user", None, Example::default);
        }
        agg.flush();
        log.record_confirmed(tellijn_config::AuditEvent::publish_refused(
            "s", "t", "not_json", b"x",
        ))
        .unwrap();
        let now = Utc::now();
        let key = |e: &str, r: &str| (e.to_owned(), r.to_owned());
        let r = refusals(dir.path(), now, 30);
        assert_eq!(r[&key("auth_failure", "unknown_user")], 1000);
        assert_eq!(r[&key("publish_refused", "not_json")], 1);
        // An older day's file, counted once.
        let old = dir.path().join(format!(
            "audit/{}.jsonl",
            (now - TimeDelta::days(3)).date_naive()
        ));
        let line = |reason: &str| {
            format!(
                "{{\"event\":\"refusals\",\"refused\":\"subscribe_refused\",\"reason\":\"{reason}\",\"count\":7}}\n"
            )
        };
        std::fs::write(&old, line("aaaa")).unwrap();
        assert_eq!(
            refusals(dir.path(), now, 30)[&key("subscribe_refused", "aaaa")],
            7
        );
        // Rewritten in place with the same length: the counted bytes are not read again.
        std::fs::write(&old, line("bbbb")).unwrap();
        let r = refusals(dir.path(), now, 30);
        assert_eq!(r[&key("subscribe_refused", "aaaa")], 7);
        assert!(!r.contains_key(&key("subscribe_refused", "bbbb")));
        // Today's file: only what was appended since is read.
        let today = sealed_lines(dir.path());
        let before = std::fs::read(&today).unwrap();
        log.record_confirmed(tellijn_config::AuditEvent::publish_refused(
            "s", "t", "not_json", b"y",
        ))
        .unwrap();
        let mut forged = std::fs::read(&today).unwrap();
        let n = before.len();
        forged[..n].copy_from_slice(&vec![b' '; n]);
        std::fs::write(&today, &forged).unwrap();
        let r = refusals(dir.path(), now, 30);
        assert_eq!(r[&key("auth_failure", "unknown_user")], 1000);
        assert_eq!(r[&key("publish_refused", "not_json")], 2);
        // A torn last line waits until it is whole.
        let mut f = std::fs::OpenOptions::new().append(true).open(&old).unwrap();
        std::io::Write::write_all(&mut f, line("cccc").trim_end().as_bytes()).unwrap();
        assert!(!refusals(dir.path(), now, 30).contains_key(&key("subscribe_refused", "cccc")));
        std::io::Write::write_all(&mut f, b"\n").unwrap();
        assert_eq!(
            refusals(dir.path(), now, 30)[&key("subscribe_refused", "cccc")],
            7
        );
        // Out of the window: not counted, and forgotten by the cache.
        assert!(refusals(dir.path(), now + TimeDelta::days(40), 30).is_empty());
    }
}
