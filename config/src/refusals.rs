//! Unauthenticated refusals, aggregated before they reach the audit log.
//!
//! Anyone who can reach a port can make the server refuse them: a CONNECT with an unknown user
//! or a bad secret, a SUBSCRIBE or PUBLISH of an anonymous client, a wrong HTTP Basic or
//! PostgreSQL login. One audit line per attempt would let them fill the disk at network speed.
//! Instead each is [noted](Refusals::note) here and counted per `(refused, reason)` in windows
//! of one minute (aligned to the clock); when a window closes, one `refusals` line per
//! `(refused, reason)` seen in it is written: the window, how often, from how many source
//! addresses, and the first attempt's client id, user name and topic as an example.
//!
//! The bound: at most one line per `(refused, reason)` pair per minute. The pairs are a closed
//! set (the `tellijn_auth_failures_total` reasons and the payload gate's reasons), so the volume
//! does not grow with the number of attempts. Every attacker-chosen text that is written is cut
//! by [`field`].
//!
//! Authenticated actors (a sensor, a named reader or user) keep one line per event: they are
//! accountable, and their events are what an auditor looks for.
//!
//! Windows still open at a crash are lost (their counts are in the metrics); shutdown calls
//! [`Refusals::flush`]. A window that cannot be written (a full disk) is kept, at most
//! [`MAX_UNWRITTEN`] lines, and written with the next one.

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};
use serde::Serialize;

use crate::audit::{AuditEvent, AuditLog};

/// Characters kept of an attacker-chosen text (client id, user name, topic filter).
pub const FIELD_MAX: usize = 64;

/// Appended to a text that was cut or had characters replaced. Not ASCII, so an attacker's
/// own text (reduced to printable ASCII) can never end in it.
pub const CUT: char = '…';

/// Distinct source addresses remembered per line; more are counted as `sources_more`.
pub const MAX_SOURCES: usize = 1024;

/// Aggregated lines kept while the audit log cannot be written.
pub const MAX_UNWRITTEN: usize = 256;

/// An attacker-chosen text as it may be written: printable ASCII only (anything else becomes
/// `?`), at most [`FIELD_MAX`] characters, followed by [`CUT`] when anything was changed.
/// Nothing in it needs more than JSON's ordinary quoting.
pub fn field(text: &str) -> String {
    field_of(text, FIELD_MAX)
}

/// As [`field`], with room for `max` characters (longer texts such as error messages).
pub fn field_of(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(max.min(256) + 3);
    let mut changed = false;
    for (i, c) in text.chars().enumerate() {
        if i == max {
            changed = true;
            break;
        }
        if c.is_ascii_graphic() || c == ' ' {
            out.push(c);
        } else {
            out.push('?');
            changed = true;
        }
    }
    if changed {
        out.push(CUT);
    }
    out
}

/// The first attempt of a window, as an example (every text already cut by [`field`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Example {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}

impl Example {
    /// An example from raw, attacker-chosen texts.
    pub fn new(client: Option<&str>, username: Option<&str>, topic: Option<&str>) -> Example {
        Example {
            client: client.map(field),
            username: username.map(field),
            topic: topic.map(field),
        }
    }
}

/// Kinds of refusal (`refused` in the audit line); the same names as the per-attempt events.
pub mod kind {
    /// A refused login: MQTT CONNECT, HTTP Basic, PostgreSQL.
    pub const AUTH_FAILURE: &str = "auth_failure";
    pub const SUBSCRIBE_REFUSED: &str = "subscribe_refused";
    pub const PUBLISH_REFUSED: &str = "publish_refused";
    pub const PROTOCOL_ERROR: &str = "protocol_error";
}

struct Entry {
    count: u64,
    sources: HashSet<IpAddr>,
    sources_more: bool,
    example: Example,
}

#[derive(Default)]
struct Window {
    /// Start of the open window; `None` while nothing is counted.
    start: Option<DateTime<Utc>>,
    entries: BTreeMap<(&'static str, &'static str), Entry>,
    /// Lines of closed windows the audit log refused (disk full), oldest first.
    unwritten: Vec<AuditEvent>,
}

/// The aggregator in front of an [`AuditLog`]; share it between tasks.
pub struct Refusals {
    log: Arc<AuditLog>,
    window: TimeDelta,
    state: Mutex<Window>,
}

impl Refusals {
    /// Aggregates into `log` per minute.
    pub fn new(log: Arc<AuditLog>) -> Refusals {
        Refusals::with_window(log, TimeDelta::minutes(1))
    }

    /// Aggregates into `log` per `window` (tests use short ones).
    pub fn with_window(log: Arc<AuditLog>, window: TimeDelta) -> Refusals {
        Refusals {
            log,
            window: window.max(TimeDelta::seconds(1)),
            state: Mutex::new(Window::default()),
        }
    }

    /// The audit log it writes to.
    pub fn log(&self) -> &Arc<AuditLog> {
        &self.log
    }

    /// Counts one refusal now.
    pub fn note(
        &self,
        refused: &'static str,
        reason: &'static str,
        source: Option<IpAddr>,
        example: impl FnOnce() -> Example,
    ) {
        self.note_at(Utc::now(), refused, reason, source, example);
    }

    /// Counts one refusal at `now`; a window that `now` is past is written first.
    pub fn note_at(
        &self,
        now: DateTime<Utc>,
        refused: &'static str,
        reason: &'static str,
        source: Option<IpAddr>,
        example: impl FnOnce() -> Example,
    ) {
        let start = now.duration_trunc(self.window).unwrap_or(now);
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if w.start.is_some_and(|s| s != start) {
            self.close(&mut w);
        }
        w.start = Some(start);
        let e = w.entries.entry((refused, reason)).or_insert_with(|| Entry {
            count: 0,
            sources: HashSet::new(),
            sources_more: false,
            example: example(),
        });
        e.count += 1;
        if let Some(ip) = source
            && !e.sources.contains(&ip)
        {
            if e.sources.len() < MAX_SOURCES {
                e.sources.insert(ip);
            } else {
                e.sources_more = true;
            }
        }
    }

    /// Writes the open window if `now` is past its end (call this every few seconds).
    pub fn flush_due(&self, now: DateTime<Utc>) {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match w.start {
            Some(s) if now >= s + self.window => self.close(&mut w),
            None if !w.unwritten.is_empty() => self.close(&mut w),
            _ => {}
        }
    }

    /// Writes the open window now, however young (shutdown).
    pub fn flush(&self) {
        let mut w = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.close(&mut w);
    }

    /// Turns the open window into lines and writes them after any earlier unwritten ones.
    fn close(&self, w: &mut Window) {
        if let Some(start) = w.start.take() {
            let end = start + self.window;
            let ts = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
            for ((refused, reason), e) in std::mem::take(&mut w.entries) {
                // One log line per audit line, not per attempt: logs fill disks too.
                tracing::warn!(
                    refused,
                    reason,
                    count = e.count,
                    sources = e.sources.len(),
                    "Refused clients that had not authenticated, in the last window."
                );
                w.unwritten.push(AuditEvent::Refusals {
                    refused,
                    reason,
                    from: ts(start),
                    to: ts(end),
                    count: e.count,
                    sources: e.sources.len(),
                    sources_more: e.sources_more,
                    example: e.example,
                });
            }
        }
        let lines = std::mem::take(&mut w.unwritten);
        let mut rest = lines.into_iter();
        for event in rest.by_ref() {
            if let Err(e) = self.log.record_confirmed(event.clone()) {
                tracing::error!("Writing aggregated refusals to the audit log failed: {e}");
                w.unwritten.push(event);
                break;
            }
        }
        w.unwritten.extend(rest);
        let over = w.unwritten.len().saturating_sub(MAX_UNWRITTEN);
        if over > 0 {
            tracing::error!(
                lines = over,
                "Dropped aggregated refusal lines the audit log could not take; their counts are in the metrics."
            );
            w.unwritten.drain(..over);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(dir: &std::path::Path) -> Vec<serde_json::Value> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir.join("audit")).unwrap() {
            let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
            out.extend(text.lines().map(|l| serde_json::from_str(l).unwrap()));
        }
        out
    }

    fn at(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn a_field_is_cut_and_marked() {
        assert_eq!(field("door-a"), "door-a");
        let long = "x".repeat(2000);
        let cut = field(&long);
        assert_eq!(cut.chars().count(), FIELD_MAX + 1);
        assert!(cut.ends_with(CUT));
        // Control characters, quotes' friends and other scripts cannot reach the log as such.
        assert_eq!(field("a\nb\u{1b}[2Jc"), "a?b?[2Jc…");
        assert_eq!(field("gebruiker-ë"), "gebruiker-?…");
        assert_eq!(field(&format!("{}…", "y".repeat(10))), "yyyyyyyyyy?…");
        // Exactly the bound: nothing changed, no mark.
        let exact = "z".repeat(FIELD_MAX);
        assert_eq!(field(&exact), exact);
    }

    #[test]
    fn a_flood_of_refusals_is_one_line_per_reason_and_minute() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let r = Refusals::new(log);
        let t0 = at("2026-12-01T10:00:05Z");
        let huge = "A".repeat(2048);
        for i in 0..10_000u32 {
            let ip = IpAddr::from([10, 0, (i / 256) as u8, (i % 256) as u8]);
            r.note_at(t0, kind::AUTH_FAILURE, "unknown_user", Some(ip), || {
                Example::new(Some(&huge), Some(&huge), None)
            });
        }
        for _ in 0..500 {
            r.note_at(t0, kind::SUBSCRIBE_REFUSED, "not_allowed", None, || {
                Example::new(Some("c"), None, Some(&huge))
            });
        }
        // Nothing is written while the window is open.
        assert!(lines(dir.path()).is_empty());
        r.flush_due(at("2026-12-01T10:00:59Z"));
        assert!(lines(dir.path()).is_empty());
        r.flush_due(at("2026-12-01T10:01:00Z"));
        let l = lines(dir.path());
        assert_eq!(l.len(), 2, "{l:?}");
        let auth = l.iter().find(|v| v["refused"] == "auth_failure").unwrap();
        assert_eq!(auth["event"], "refusals");
        assert_eq!(auth["reason"], "unknown_user");
        assert_eq!(auth["count"], 10_000);
        assert_eq!(auth["sources"], MAX_SOURCES);
        assert_eq!(auth["sources_more"], true);
        assert_eq!(auth["from"], "2026-12-01T10:00:00Z");
        assert_eq!(auth["to"], "2026-12-01T10:01:00Z");
        let client = auth["example"]["client"].as_str().unwrap();
        assert_eq!(client.chars().count(), FIELD_MAX + 1);
        let sub = l
            .iter()
            .find(|v| v["refused"] == "subscribe_refused")
            .unwrap();
        assert_eq!(sub["count"], 500);
        assert_eq!(sub["sources"], 0);
        assert!(sub["example"]["topic"].as_str().unwrap().ends_with(CUT));
        // All of it is a few hundred bytes, and the chain holds.
        let bytes: u64 = std::fs::read_dir(dir.path().join("audit"))
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum();
        assert!(bytes < 2048, "{bytes} bytes");
        assert_eq!(crate::audit::verify(dir.path()).unwrap().lines, 2);
    }

    #[test]
    fn a_new_window_closes_the_old_one_and_shutdown_flushes() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let r = Refusals::new(log);
        r.note_at(
            at("2026-12-01T10:00:05Z"),
            kind::AUTH_FAILURE,
            "bad_secret",
            None,
            Example::default,
        );
        r.note_at(
            at("2026-12-01T10:00:50Z"),
            kind::AUTH_FAILURE,
            "bad_secret",
            None,
            Example::default,
        );
        r.note_at(
            at("2026-12-01T10:02:01Z"),
            kind::AUTH_FAILURE,
            "bad_secret",
            None,
            Example::default,
        );
        let l = lines(dir.path());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["count"], 2);
        r.flush();
        let l = lines(dir.path());
        assert_eq!(l.len(), 2);
        assert_eq!(l[1]["count"], 1);
        assert_eq!(l[1]["from"], "2026-12-01T10:02:00Z");
        // Nothing open: flushing again writes nothing.
        r.flush();
        assert_eq!(lines(dir.path()).len(), 2);
    }

    #[test]
    fn a_window_the_log_refused_is_written_later() {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(AuditLog::open(dir.path()).unwrap());
        let r = Refusals::new(log.clone());
        r.note_at(
            at("2026-12-01T10:00:05Z"),
            kind::AUTH_FAILURE,
            "bad_secret",
            None,
            Example::default,
        );
        // The audit directory becomes unwritable: a file where the directory was.
        let audit = dir.path().join("audit");
        std::fs::remove_dir_all(&audit).unwrap();
        std::fs::write(&audit, b"").unwrap();
        r.flush();
        std::fs::remove_file(&audit).unwrap();
        std::fs::create_dir(&audit).unwrap();
        assert!(lines(dir.path()).is_empty());
        r.flush_due(at("2026-12-01T10:05:00Z"));
        let l = lines(dir.path());
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["count"], 1);
    }
}
