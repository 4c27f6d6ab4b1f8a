//! Bookings in the server: the `[[calendars]]` feeds read on their `refresh`, each room's
//! booking state from them and the live occupancy, published as the retained topic
//! `tellijn/v1/rooms/{room}/booking` (and, through [`crate::live::Live`], in the API and on
//! the free-places page), and the `bookings` table.
//!
//! One task per feed fetches ([`tellijn_bookings::fetch`]) and parses
//! ([`tellijn_bookings::ical`], on a blocking thread) and hands the occurrences to the bookings
//! task; a feed that fails keeps its last good occurrences, says so in the log and in
//! `tellijn_calendar_feed_up` / `…_failures_total{reason}`. The bookings task follows each
//! room's occupancy from [`crate::live::Live`] and runs the [`Tracker`] on the server's clock.
//!
//! What is kept of an event is the [`tellijn_bookings::Occurrence`]: room, start, end, status,
//! keyed UID hash. The feed's text lives only while it is parsed.
//!
//! Only rooms some feed books are tracked: a room without a calendar is never "in use without
//! a booking" nor an open study place.

pub mod payload;
pub mod store;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use tellijn_bookings::fetch::{FeedHealth, Fetched, Fetcher, Validators};
use tellijn_bookings::ical::{FeedMap, parse_feed};
use tellijn_bookings::live::{Settings, Tracker};
use tellijn_bookings::{Occurrence, Status};
use tellijn_config::metrics::{CalendarLabels, CalendarReasonLabels, RoomLabels};
use tellijn_config::{Campus, Metrics};
use tellijn_processors::Output;
use tellijn_wire::Clock;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::live::Live;

/// How often the booking state is re-evaluated (real time).
const TICK: Duration = Duration::from_millis(250);
/// The longest one feed request may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(60);

/// What the bookings task needs.
#[derive(Clone)]
pub struct BookingsOptions {
    pub campus: Arc<Campus>,
    pub data_dir: PathBuf,
    pub clock: Clock,
    pub live: Arc<Live>,
    pub metrics: Metrics,
    pub history: Arc<tellijn_queries::History>,
    /// Into the bridge: the retained booking topics.
    pub out: mpsc::Sender<Output>,
}

/// The running feed and bookings tasks.
pub struct Bookings {
    tasks: Vec<JoinHandle<()>>,
}

impl Bookings {
    /// Stops every task (nothing to flush: every change is written when it is made).
    pub fn stop(self) {
        for t in self.tasks {
            t.abort();
        }
    }
}

struct FeedUpdate {
    calendar: usize,
    occurrences: Vec<Occurrence>,
}

/// The rooms some feed books (their booking state is tracked and published).
pub fn covered(campus: &Campus) -> BTreeSet<String> {
    campus.calendars.iter().flat_map(rooms_of).collect()
}

/// The rooms each feed books.
fn rooms_of(c: &tellijn_config::campus::Calendar) -> BTreeSet<String> {
    match &c.room {
        Some(r) => [r.clone()].into(),
        None => c.locations.values().cloned().collect(),
    }
}

/// The start of the kept window at `now`: the UTC day before.
fn window_from(now: DateTime<Utc>) -> DateTime<Utc> {
    let day = (now - TimeDelta::days(1)).date_naive();
    day.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc()
}

fn to_delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

/// The feeds' bearer tokens, read from their `token_file`s (a reload reads them before it
/// changes anything, so a missing file refuses it).
pub fn tokens(campus: &Campus) -> Result<Vec<Option<String>>> {
    campus
        .calendars
        .iter()
        .enumerate()
        .map(|(i, cal)| match &cal.token_file {
            Some(p) => Ok(Some(
                std::fs::read_to_string(p)
                    .with_context(|| {
                        format!("calendars[{i}].token_file: cannot read {}", p.display())
                    })?
                    .trim()
                    .to_owned(),
            )),
            None => Ok(None),
        })
        .collect()
}

/// Starts the bookings; `None` when no `[[calendars]]` are configured.
pub async fn start(o: BookingsOptions) -> Result<Option<Bookings>> {
    let campus = o.campus.clone();
    if campus.calendars.is_empty() {
        return Ok(None);
    }
    let key = store::key(&o.data_dir).context("cannot read or create the bookings key")?;
    let tz: chrono_tz::Tz = campus.server.timezone.parse().unwrap_or(chrono_tz::UTC);
    let fetcher = Fetcher::new(FETCH_TIMEOUT, campus.bookings.feed_max_bytes)
        .context("cannot set up the HTTP client for calendar feeds")?;
    let (tx, rx) = mpsc::channel(campus.calendars.len().max(1) * 2);
    let mut tasks = Vec::new();
    for ((i, cal), token) in campus.calendars.iter().enumerate().zip(tokens(&campus)?) {
        tasks.push(tokio::spawn(feed_loop(FeedTask {
            index: i,
            cal: cal.clone(),
            token,
            fetcher: fetcher.clone(),
            clock: o.clock,
            tz,
            key: key.clone(),
            horizon: to_delta(campus.bookings.horizon),
            metrics: o.metrics.clone(),
            tx: tx.clone(),
        })));
    }
    let now = o.clock.now();
    let stored = match store::load(&o.history, window_from(now)).await {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!(
                "Reading the stored bookings failed ({e}); starting from the feeds alone."
            );
            Vec::new()
        }
    };
    tasks.push(tokio::spawn(run(o, rx, stored)));
    Ok(Some(Bookings { tasks }))
}

struct FeedTask {
    index: usize,
    cal: tellijn_config::campus::Calendar,
    token: Option<String>,
    fetcher: Fetcher,
    clock: Clock,
    tz: chrono_tz::Tz,
    key: Vec<u8>,
    horizon: TimeDelta,
    metrics: Metrics,
    tx: mpsc::Sender<FeedUpdate>,
}

async fn feed_loop(f: FeedTask) {
    let label = CalendarLabels {
        calendar: f.index.to_string(),
    };
    let m = &f.metrics.bookings;
    let url = tellijn_bookings::fetch::redact_url(&f.cal.url);
    let mut health = FeedHealth::default();
    let mut parsed_to: Option<DateTime<Utc>> = None;
    loop {
        let now = f.clock.now();
        let (from, to) = (window_from(now), now + f.horizon);
        // The window moved on by a day since the feed was last parsed: read it whole again,
        // so occurrences that entered the window are expanded.
        let prev = if parsed_to.is_some_and(|p| to - p < TimeDelta::days(1)) {
            health.validators.clone()
        } else {
            Validators::default()
        };
        let failure = match f.fetcher.fetch(&f.cal.url, f.token.as_deref(), &prev).await {
            Ok(Fetched::Unchanged) => {
                health.record_unchanged(now);
                None
            }
            Ok(Fetched::Body { bytes, validators }) => {
                let (cal, tz, key) = (f.cal.clone(), f.tz, f.key.clone());
                let parsed = tokio::task::spawn_blocking(move || {
                    let text = String::from_utf8_lossy(&bytes);
                    let map = match &cal.room {
                        Some(r) => FeedMap::Room(r),
                        None => FeedMap::Locations(&cal.locations),
                    };
                    parse_feed(&text, map, from, to, tz, &key)
                })
                .await;
                match parsed {
                    Ok(Ok(p)) => {
                        for (reason, n) in &p.skipped {
                            m.feed_skipped
                                .get_or_create(&CalendarReasonLabels {
                                    calendar: label.calendar.clone(),
                                    reason,
                                })
                                .inc_by(*n);
                        }
                        m.feed_occurrences
                            .get_or_create(&label)
                            .set(p.occurrences.len() as i64);
                        health.record_success(now, validators);
                        parsed_to = Some(to);
                        let update = FeedUpdate {
                            calendar: f.index,
                            occurrences: p.occurrences,
                        };
                        if f.tx.send(update).await.is_err() {
                            return;
                        }
                        None
                    }
                    Ok(Err(e)) => Some(("garbage", e.to_string())),
                    Err(_) => Some(("panic", "the parser panicked".to_owned())),
                }
            }
            Err(e) => Some((e.reason(), e.to_string())),
        };
        match failure {
            None => {
                m.feed_up.get_or_create(&label).set(1);
                m.feed_last_success
                    .get_or_create(&label)
                    .set(now.timestamp());
            }
            Some((reason, message)) => {
                if health.is_ok() || health.last_success.is_none() {
                    tracing::warn!(
                        calendar = f.index,
                        %url,
                        reason,
                        "Reading a calendar feed failed: {message}. Its last good state stays in use; retrying every refresh."
                    );
                }
                health.record_failure(now, reason, message);
                m.feed_up.get_or_create(&label).set(0);
                m.feed_failures
                    .get_or_create(&CalendarReasonLabels {
                        calendar: label.calendar.clone(),
                        reason,
                    })
                    .inc();
            }
        }
        tokio::time::sleep(f.clock.real(f.cal.refresh).max(Duration::from_millis(100))).await;
    }
}

/// The bookings task: merges the feeds, runs the tracker, publishes, writes the table.
async fn run(o: BookingsOptions, mut rx: mpsc::Receiver<FeedUpdate>, stored: Vec<store::Row>) {
    let campus = o.campus.clone();
    let b = &campus.bookings;
    let covered: BTreeSet<String> = campus.calendars.iter().flat_map(rooms_of).collect();
    let feeds_of: BTreeMap<String, Vec<usize>> = covered
        .iter()
        .map(|r| {
            let feeds = (campus.calendars.iter().enumerate())
                .filter(|(_, c)| rooms_of(c).contains(r))
                .map(|(i, _)| i)
                .collect();
            (r.clone(), feeds)
        })
        .collect();
    let settings = Settings {
        no_show_after: to_delta(b.no_show_after),
        study_place_min: to_delta(b.study_place_min),
        study_place_margin: to_delta(b.study_place_margin),
        quiet_below: u64::from(campus.privacy.public_min_count.max(1)),
    };
    let now = o.clock.now();
    let rooms = campus
        .rooms
        .iter()
        .filter(|r| covered.contains(&r.id))
        .map(|r| {
            let eligible = r.public && b.study_place_kinds.contains(&r.kind);
            (r.id.clone(), eligible)
        });
    let mut tracker = Tracker::new(settings, rooms, now);
    let mut stored_by_room: HashMap<String, Vec<Occurrence>> = HashMap::new();
    for (occ, decided) in stored {
        if let Some(d) = decided {
            tracker.restore_decision(&occ.room, (occ.start, occ.uid_hash.clone()), d);
        }
        stored_by_room
            .entry(occ.room.clone())
            .or_default()
            .push(occ);
    }
    let mut feeds: Vec<Option<Vec<Occurrence>>> = vec![None; campus.calendars.len()];
    let building_of: HashMap<&str, &str> = campus
        .rooms
        .iter()
        .map(|r| (r.id.as_str(), r.building.as_str()))
        .collect();
    let labels = |room: &str| RoomLabels {
        room: room.to_owned(),
        building: building_of
            .get(room)
            .copied()
            .unwrap_or_default()
            .to_owned(),
    };
    // A room's occurrences: from its feeds once all of them answered, else also as stored.
    let merged = |feeds: &[Option<Vec<Occurrence>>], room: &str| -> Vec<Occurrence> {
        let ids = feeds_of.get(room).map(Vec::as_slice).unwrap_or_default();
        let mut out: Vec<Occurrence> = ids
            .iter()
            .filter_map(|i| feeds[*i].as_ref())
            .flatten()
            .filter(|x| x.room == room)
            .cloned()
            .collect();
        if ids.iter().any(|i| feeds[*i].is_none()) {
            out.extend(stored_by_room.get(room).into_iter().flatten().cloned());
        }
        out.sort();
        out.dedup_by(|a, b| (&a.room, a.start, &a.uid_hash) == (&b.room, b.start, &b.uid_hash));
        out
    };
    for room in &covered {
        tracker.set_bookings(room, &merged(&feeds, room));
    }
    let mut last_occupancy: HashMap<String, u64> = HashMap::new();
    let mut written: BTreeMap<NaiveDate, Vec<store::Row>> = BTreeMap::new();
    let mut dirty = true;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            update = rx.recv() => {
                let Some(u) = update else { return };
                let rooms = rooms_of(&campus.calendars[u.calendar]);
                feeds[u.calendar] = Some(u.occurrences);
                for room in rooms.iter().filter(|r| covered.contains(*r)) {
                    tracker.set_bookings(room, &merged(&feeds, room));
                }
                dirty = true;
            }
            _ = tick.tick() => {}
        }
        let now = o.clock.now();
        for room in &covered {
            let n = o.live.room(room).occupancy;
            if last_occupancy.get(room) != Some(&n) {
                tracker.occupancy(room, n, now);
                last_occupancy.insert(room.clone(), n);
            }
        }
        for st in tracker.tick(now) {
            let l = labels(&st.room);
            let m = &o.metrics.bookings;
            m.room_booked.get_or_create(&l).set(i64::from(st.booked));
            m.room_no_show
                .get_or_create(&l)
                .set(i64::from(st.booked && st.no_show));
            m.room_in_use_unbooked
                .get_or_create(&l)
                .set(i64::from(st.in_use_unbooked));
            m.room_study_place
                .get_or_create(&l)
                .set(i64::from(st.study_place.is_some()));
            let body = payload::BookingNow::from(&st);
            let Ok(bytes) = serde_json::to_vec(&body) else {
                continue;
            };
            let out = Output {
                topic: payload::topic(&st.room),
                payload: bytes,
            };
            if o.out.send(out).await.is_err() {
                return;
            }
        }
        for d in tracker.take_decisions() {
            let l = labels(&d.room);
            o.metrics.bookings.decided.get_or_create(&l).inc();
            if d.no_show {
                o.metrics.bookings.no_shows.get_or_create(&l).inc();
                tracing::info!(room = %d.room, start = %d.start, "A booking is a no-show: nobody came in its first {}.", humantime::format_duration(b.no_show_after));
            }
            dirty = true;
        }
        if dirty {
            dirty = false;
            let from = window_from(now);
            tracker.forget_before(from - TimeDelta::days(1));
            let mut rows: Vec<store::Row> = Vec::new();
            for room in &covered {
                let decided = tracker.decisions(room);
                for occ in merged(&feeds, room) {
                    if occ.start < from {
                        continue;
                    }
                    let d = decided.get(&(occ.start, occ.uid_hash.clone())).copied();
                    let d = if occ.status == Status::Cancelled {
                        None
                    } else {
                        d
                    };
                    rows.push((occ, d));
                }
            }
            let days = store::by_day(rows);
            let first = from.date_naive();
            // Days in the window that had rows before and have none now are emptied too.
            let mut due: Vec<(NaiveDate, Vec<store::Row>)> = written
                .keys()
                .filter(|d| **d >= first && !days.contains_key(d))
                .map(|d| (*d, Vec::new()))
                .collect();
            due.extend(
                days.into_iter()
                    .filter(|(day, rows)| written.get(day) != Some(rows)),
            );
            if !due.is_empty() {
                // Crash-safe writes fsync: off the runtime's threads.
                let dir = o.data_dir.clone();
                let done = tokio::task::spawn_blocking(move || {
                    due.into_iter()
                        .map(|(day, rows)| {
                            let ok = write(&dir, day, &rows);
                            (day, rows, ok)
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap_or_else(|_| {
                    dirty = true;
                    Vec::new()
                });
                for (day, rows, ok) in done {
                    if !ok {
                        dirty = true;
                    } else if rows.is_empty() {
                        written.remove(&day);
                    } else {
                        written.insert(day, rows);
                    }
                }
            }
            written.retain(|d, _| *d >= first);
        }
    }
}

fn write(data_dir: &std::path::Path, day: NaiveDate, rows: &[store::Row]) -> bool {
    match store::write_day(data_dir, day, rows) {
        Ok(()) => true,
        Err(e) => {
            tracing::error!(%day, "Writing the bookings table failed: {e}; retried at the next change.");
            false
        }
    }
}
