//! `tellijn demo`: a generated campus, the server, and one simulated agent per sensor, each
//! its own MQTT connection with its own credential. Loopback only.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::Rng;
use tellijn_agent::config::{SourceConfig, SourceKind};
use tellijn_agent::{AgentConfig, Totals};
use tellijn_config::Campus;
use tellijn_config::campus::{Building, Line, Room, RoomKind, Sensor, User, Zone};
use tellijn_wire::Clock;
use tokio::sync::watch;

use crate::server::{Server, ServerOptions};
use crate::sim::Simulator;

/// Options of `tellijn demo`.
pub struct DemoOptions {
    pub sensors: usize,
    /// `HH:MM`: start the simulated clock at the next such campus time instead of now.
    pub start: Option<String>,
    pub speed: f64,
    pub duration: Option<Duration>,
    pub data_dir: PathBuf,
    pub mqtt: SocketAddr,
    pub http: SocketAddr,
    pub metrics: SocketAddr,
    pub postgres: SocketAddr,
    /// Building entrances run the real counter on generated scenes (src/cameras.rs).
    pub cameras: bool,
}

/// The demo's SQL user and password.
pub const DEMO_USER: (&str, &str) = ("demo", crate::secrets::DEMO_PASSWORD);

const BUILDINGS: [(&str, &str); 6] = [
    ("lib", "University Library"),
    ("eng", "Engineering Hall"),
    ("sci", "Science Park"),
    ("arts", "Arts Faculty"),
    ("law", "Law School"),
    ("hub", "Student Hub"),
];

/// A campus of `sensors` sensors: every building has an entrance counter; rooms are lecture
/// halls (overhead zone cameras), study halls, offices and meeting rooms (door counters).
/// Returns the campus and each sensor's secret.
pub fn campus(sensors: usize) -> Result<(Campus, Vec<(String, String)>)> {
    let sensors = sensors.max(1);
    let nb = BUILDINGS.len().min(sensors.div_ceil(8)).max(1);
    let mut c: Campus = toml_default();
    c.server.anonymous_read = vec![tellijn_wire::topic::PUBLIC_TREE.into()];
    c.server.flush_interval = Duration::from_secs(5);
    c.users.push(User {
        name: DEMO_USER.0.into(),
        password_hash: crate::secrets::hash_demo(DEMO_USER.1)?,
        role: tellijn_config::campus::Role::Steward,
        headcounts: false,
    });
    let mut secrets = Vec::new();
    let mut rng = rand::rng();
    let mut add_sensor =
        |c: &mut Campus, id: String, lines: Vec<Line>, zones: Vec<Zone>| -> Result<()> {
            let secret: String = (0..24)
                .map(|_| format!("{:02x}", rng.random::<u8>()))
                .collect();
            c.sensors.push(Sensor {
                id: id.clone(),
                secret_hash: crate::secrets::hash_demo(&secret)?,
                lines,
                zones,
            });
            secrets.push((id, secret));
            Ok(())
        };
    for (id, name) in BUILDINGS.iter().take(nb) {
        c.buildings.push(Building {
            id: (*id).into(),
            name: (*name).into(),
        });
        let line = Line {
            line: "main".into(),
            into: (*id).into(),
            from: None,
        };
        add_sensor(&mut c, format!("{id}-entrance"), vec![line], vec![])?;
    }
    let kinds = [
        RoomKind::LectureHall,
        RoomKind::Study,
        RoomKind::Office,
        RoomKind::Meeting,
        RoomKind::Office,
    ];
    let mut n = 0usize;
    while c.sensors.len() < sensors {
        let b = BUILDINGS[n % nb].0;
        let kind = kinds[(n / nb) % kinds.len()];
        let room = format!("{b}-{}-{}", kind.as_str(), n / nb);
        let (capacity, name) = match kind {
            RoomKind::LectureHall => (300, "Lecture hall"),
            RoomKind::Study => (120, "Study hall"),
            RoomKind::Office => (4, "Office"),
            RoomKind::Meeting => (12, "Meeting room"),
            RoomKind::Hall => (200, "Hall"),
        };
        c.rooms.push(Room {
            id: room.clone(),
            building: b.into(),
            name: format!("{name} {}", n / nb),
            kind,
            capacity,
            public: matches!(kind, RoomKind::Study | RoomKind::LectureHall),
            vacancy_delay: Duration::from_secs(600),
            reset: Some("03:00".into()),
        });
        let sensor = format!("{room}-s");
        if kind == RoomKind::LectureHall {
            add_sensor(
                &mut c,
                sensor,
                vec![],
                vec![Zone {
                    zone: "seats".into(),
                    room,
                }],
            )?;
        } else {
            add_sensor(
                &mut c,
                sensor,
                vec![Line {
                    line: "door".into(),
                    into: room,
                    from: None,
                }],
                vec![],
            )?;
        }
        n += 1;
    }
    let errors = c.validate("demo campus");
    anyhow::ensure!(
        errors.is_empty(),
        "the generated demo campus is invalid (a bug): {errors:?}"
    );
    Ok((c, secrets))
}

/// Tellijn's alerting rules, written beside the generated Prometheus config.
const RULES: &str = include_str!("../grafana/alerts/tellijn-rules.yaml");

/// Writes `{data}/prometheus.yml` (scraping this demo, with Tellijn's alert rules) and returns
/// its path.
pub fn write_prometheus_config(data_dir: &std::path::Path, metrics: SocketAddr) -> Result<PathBuf> {
    let rules = data_dir.join("tellijn-rules.yaml");
    std::fs::write(&rules, RULES).with_context(|| format!("cannot write {}", rules.display()))?;
    let path = data_dir.join("prometheus.yml");
    let text = format!(
        "# Generated by `tellijn demo`: prometheus --config.file={}\n\
         global:\n  scrape_interval: 5s\n  evaluation_interval: 15s\n\
         rule_files:\n  - tellijn-rules.yaml\n\
         scrape_configs:\n  - job_name: tellijn\n    static_configs:\n      - targets: [\"{metrics}\"]\n",
        path.display()
    );
    std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// The next time after `now` that is `hhmm` on the campus's clock.
pub fn next_local(
    timezone: &str,
    hhmm: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<chrono::DateTime<chrono::Utc>> {
    use chrono::TimeZone;
    let (h, m) = tellijn_config::campus::parse_reset(hhmm).with_context(|| {
        format!("--start {hhmm:?} is not a time of day; write e.g. --start 07:30")
    })?;
    let tz: chrono_tz::Tz = timezone
        .parse()
        .map_err(|_| anyhow::anyhow!("unknown time zone {timezone}"))?;
    let mut day = now.with_timezone(&tz).date_naive();
    for _ in 0..3 {
        let local = day
            .and_hms_opt(h, m, 0)
            .context("--start must be a valid time of day")?;
        if let Some(t) = tz.from_local_datetime(&local).earliest()
            && t.with_timezone(&chrono::Utc) > now
        {
            return Ok(t.with_timezone(&chrono::Utc));
        }
        day = day.succ_opt().context("date out of range")?;
    }
    anyhow::bail!("--start {hhmm} does not occur on the campus clock in the next days")
}

fn toml_default() -> Campus {
    // Every section has defaults; an empty document is a valid, empty campus.
    toml::from_str("").unwrap_or_else(|_| unreachable!("an empty campus always parses"))
}

/// What a demo run did.
#[derive(Debug, Clone, Copy)]
pub struct DemoSummary {
    pub agents: usize,
    pub sent: Totals,
    pub server: tellijn_processors::Summary,
}

/// Runs the demo until `stop` resolves or the duration ends.
pub async fn run(
    opts: DemoOptions,
    stop: impl std::future::Future<Output = ()>,
) -> Result<DemoSummary> {
    for (flag, addr) in [
        ("--mqtt", opts.mqtt),
        ("--http", opts.http),
        ("--metrics", opts.metrics),
        ("--postgres", opts.postgres),
    ] {
        anyhow::ensure!(
            addr.ip().is_loopback(),
            "the demo binds loopback only; {flag} {addr} is not a loopback address (use `tellijn serve` for a real deployment)"
        );
    }
    let (mut campus, secrets) = campus(opts.sensors)?;
    campus.server.data_dir = opts.data_dir.clone();
    campus.server.mqtt = opts.mqtt;
    campus.server.http = opts.http;
    campus.server.metrics = opts.metrics;
    campus.server.postgres = opts.postgres;
    std::fs::create_dir_all(&opts.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            opts.data_dir.display()
        )
    })?;
    // The timetable: weekly lectures in every lecture hall, served to the demo over HTTP.
    let sim_seed: u64 = rand::rng().random();
    let start = match &opts.start {
        Some(hhmm) => next_local(&campus.server.timezone, hhmm, chrono::Utc::now())?,
        None => chrono::Utc::now(),
    };
    let tz: chrono_tz::Tz = campus.server.timezone.parse().unwrap_or(chrono_tz::UTC);
    let feed = crate::timetable::ics(&campus, start.with_timezone(&tz).date_naive(), |id| {
        crate::sim::room_seed(id, sim_seed)
    });
    let (feed_url, feed_server) = crate::timetable::serve(feed).await?;
    campus
        .calendars
        .push(crate::timetable::calendar(&campus, feed_url.clone()));
    // Short enough that no-shows and open study places show in the first minutes.
    campus.bookings.no_show_after = Duration::from_secs(10 * 60);
    campus.bookings.study_place_min = Duration::from_secs(5 * 60);
    // The head-count form may also set a room's count (audited), to try it.
    campus.bookings.headcount_resets = true;
    let campus_file = opts.data_dir.join("demo-campus.toml");
    std::fs::write(&campus_file, campus.to_toml())
        .with_context(|| format!("cannot write {}", campus_file.display()))?;

    let clock = Clock::accelerated(start, opts.speed);
    let campus = Arc::new(campus);
    let server = Server::start(ServerOptions {
        campus: campus.clone(),
        mqtt: None,
        mqtts: None,
        http: None,
        metrics: None,
        postgres: None,
        data_dir: None,
        clock,
        source: "demo".into(),
    })
    .await?;

    println!(
        "Tellijn demo: {} sensors in {} buildings, {} rooms; speed {}x from {} campus time.",
        campus.sensors.len(),
        campus.buildings.len(),
        campus.rooms.len(),
        opts.speed,
        clock
            .now()
            .with_timezone(
                &campus
                    .server
                    .timezone
                    .parse::<chrono_tz::Tz>()
                    .unwrap_or(chrono_tz::UTC)
            )
            .format("%a %Y-%m-%d %H:%M")
    );
    println!(
        "  MQTT       mqtt://{}  (anonymous read: tellijn/v1/public/#, as the free-places page)",
        server.mqtt_addr()
    );
    println!("  Free places http://{}/", server.http_addr());
    println!(
        "  API        http://{}/api/v1/rooms  (OpenAPI: /api/v1/openapi.json)",
        server.http_addr()
    );
    println!(
        "  Timetable  {feed_url}  (iCalendar; bookings: tellijn/v1/rooms/+/booking, SQL table bookings)"
    );
    println!("  Metrics    http://{}/metrics", server.metrics_addr());
    println!("  Health     http://{}/healthz", server.http_addr());
    println!(
        "  SQL        tellijn sql --data {} --config {} \"SELECT count(*) FROM counts\"",
        opts.data_dir.display(),
        campus_file.display()
    );
    println!(
        "  PostgreSQL psql \"postgres://{}:{}@{}/tellijn\"  (also HTTP Basic for exact API numbers)",
        DEMO_USER.0,
        DEMO_USER.1,
        server.postgres_addr()
    );
    let prometheus = write_prometheus_config(&opts.data_dir, server.metrics_addr())?;
    println!(
        "  Prometheus prometheus --config.file={} --storage.tsdb.path={}  (alerts: grafana/alerts/, boards: grafana/)",
        prometheus.display(),
        opts.data_dir.join("prometheus").display()
    );
    println!(
        "  Data       {}  (campus config: {})",
        opts.data_dir.display(),
        campus_file.display()
    );
    // Building entrances: the real counter on generated doorway scenes.
    let mut cameras = std::collections::HashMap::new();
    if opts.cameras {
        let tools = crate::cameras::tools(&opts.data_dir)?;
        for (i, s) in campus.sensors.iter().enumerate() {
            if s.id.ends_with("-entrance")
                && let Some(l) = s.lines.first()
            {
                let cam = crate::cameras::camera(
                    &tools,
                    &opts.data_dir,
                    &s.id,
                    &l.line,
                    1000 + i as u64,
                )?;
                cameras.insert(s.id.clone(), cam);
            }
        }
        println!(
            "  Cameras    {} building entrances count pixels: tellijn-counter on generated doorway scenes ({}), through the camera agent.",
            cameras.len(),
            if tools.embedded {
                "run from this binary; build the workspace for the standalone ones"
            } else {
                "the standalone binaries"
            }
        );
    }
    println!("Press Ctrl-C to stop.");

    let cameras_started = std::time::Instant::now();
    let interval = Duration::from_secs_f64(opts.speed.clamp(1.0, 900.0));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut agents = tokio::task::JoinSet::new();
    let mut feeds = std::collections::HashMap::new();
    for s in campus
        .sensors
        .iter()
        .filter(|s| !cameras.contains_key(&s.id))
    {
        let lines: Vec<String> = s.lines.iter().map(|l| l.line.clone()).collect();
        let zones: Vec<String> = s.zones.iter().map(|z| z.zone.clone()).collect();
        feeds.insert(
            s.id.clone(),
            Arc::new(std::sync::Mutex::new(
                tellijn_agent::source::StdinAggregator::new(&lines, &zones),
            )),
        );
    }
    let simulator = {
        let sim = Arc::new(std::sync::Mutex::new(Simulator::new(
            &campus,
            &feeds,
            clock.now(),
            sim_seed,
        )));
        let live = server.live.clone();
        let mut stop_rx = stop_rx.clone();
        let task_sim = sim.clone();
        // One step per simulated minute; the server's numbers are compared with the truth
        // once a step.
        let mut tick = tokio::time::interval(
            clock
                .real(Duration::from_secs(60))
                .max(Duration::from_millis(20)),
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => break,
                    _ = tick.tick() => {}
                }
                let mut s = task_sim.lock().unwrap_or_else(|p| p.into_inner());
                s.sample(|room| live.room(room).occupancy);
                s.advance(clock.now());
            }
        });
        sim
    };
    for (id, secret) in secrets {
        let Some(sensor) = campus.sensor(&id) else {
            continue;
        };
        let feed = feeds.get(&id).cloned();
        let cfg = AgentConfig {
            sensor: id.clone(),
            broker: format!("mqtt://{}", server.mqtt_addr()),
            secret_file: PathBuf::new(),
            ca: None,
            cert: None,
            key: None,
            outbox: opts.data_dir.join("agents").join(&id),
            outbox_max: "100MB".into(),
            interval,
            source: match cameras.get(&id) {
                Some(cam) => cam.source.clone(),
                None => SourceConfig {
                    kind: SourceKind::Simulated,
                    lines: sensor.lines.iter().map(|l| l.line.clone()).collect(),
                    zones: sensor.zones.iter().map(|z| z.zone.clone()).collect(),
                    seed: None,
                    counter: None,
                    counter_bin: None,
                    capture: None,
                },
            },
        };
        let mut stop_rx = stop_rx.clone();
        agents.spawn(async move {
            let stopped = async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            };
            (
                id,
                tellijn_agent::run_fed(&cfg, &secret, clock, stopped, feed).await,
            )
        });
    }

    // One line when the sensors are in, instead of one per sensor (those are at debug level).
    {
        let metrics = server.metrics.clone();
        let ids: Vec<String> = campus.sensors.iter().map(|s| s.id.clone()).collect();
        let mut stop_rx = stop_rx.clone();
        tokio::spawn(async move {
            let online = || {
                ids.iter()
                    .filter(|id| {
                        metrics
                            .sensor_online
                            .get_or_create(&tellijn_config::metrics::SensorLabels {
                                sensor: (*id).clone(),
                            })
                            .get()
                            > 0
                    })
                    .count()
            };
            let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
            let mut tick = tokio::time::interval(Duration::from_millis(250));
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return,
                    _ = tick.tick() => {}
                }
                let n = online();
                if n == ids.len() {
                    println!("{n} of {} sensors connected.", ids.len());
                    return;
                }
                if tokio::time::Instant::now() >= deadline {
                    println!(
                        "{n} of {} sensors connected after 60 s; the others keep retrying (RUST_LOG=debug shows each).",
                        ids.len()
                    );
                    return;
                }
            }
        });
    }

    match opts.duration {
        Some(d) => {
            tokio::select! {
                _ = tokio::time::sleep(d) => {}
                _ = stop => {}
            }
        }
        None => stop.await,
    }
    println!("Stopping: agents send what they have, the server flushes to Parquet…");
    let camera_frames = |fps: u32| (cameras_started.elapsed().as_secs_f64() * fps as f64) as u64;
    let horizon: Vec<(String, u64)> = cameras
        .iter()
        .map(|(id, c)| (id.clone(), camera_frames(c.fps)))
        .collect();
    let _ = stop_tx.send(true);
    let mut sent = Totals::default();
    let mut n = 0;
    let mut counted = (0u64, 0u64);
    while let Some(r) = agents.join_next().await {
        match r {
            Ok((id, Ok(t))) => {
                if cameras.contains_key(&id) {
                    counted.0 += t.people_in;
                    counted.1 += t.people_out;
                }
                n += 1;
                sent.messages += t.messages;
                sent.unacked += t.unacked;
                sent.people_in += t.people_in;
                sent.people_out += t.people_out;
            }
            Ok((_, Err(e))) => tracing::error!("An agent failed: {e}"),
            Err(e) => tracing::error!("An agent task failed: {e}"),
        }
    }
    let server_summary = server.stop().await?;
    feed_server.abort();
    println!(
        "Done: {} agents sent {} count messages ({} await the server's ack in their outboxes); the server stored {} and dropped {} duplicates.",
        n, sent.messages, sent.unacked, server_summary.accepted, server_summary.duplicates
    );
    println!(
        "{}",
        simulator
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .summary()
    );
    if !cameras.is_empty() {
        let mut truth = (0u64, 0u64);
        for (id, frames) in &horizon {
            if let Some(t) = cameras
                .get(id)
                .and_then(|c| crate::cameras::truth_until(&c.truth, *frames))
            {
                truth.0 += t.0;
                truth.1 += t.1;
            }
        }
        let pct = |c: u64, t: u64| {
            if t == 0 {
                100.0
            } else {
                100.0 * (1.0 - (c as f64 - t as f64).abs() / t as f64)
            }
        };
        println!(
            "Cameras: {} entrances counted {} in and {} out from pixels; the scenes' truth is {} in and {} out ({:.1} % and {:.1} %; the last second's crossings may still be in flight).",
            cameras.len(),
            counted.0,
            counted.1,
            truth.0,
            truth.1,
            pct(counted.0, truth.0),
            pct(counted.1, truth.1)
        );
    }
    Ok(DemoSummary {
        agents: n,
        sent,
        server: server_summary,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_the_next_such_campus_time() {
        let now: chrono::DateTime<chrono::Utc> = "2026-11-23T05:00:00Z".parse().unwrap();
        // 06:00 in Amsterdam: 07:30 is later today, 05:00 tomorrow.
        let t = next_local("Europe/Amsterdam", "07:30", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-23T06:30:00+00:00");
        let t = next_local("Europe/Amsterdam", "05:00", now).unwrap();
        assert_eq!(t.to_rfc3339(), "2026-11-24T04:00:00+00:00");
        assert!(next_local("Europe/Amsterdam", "25:00", now).is_err());
        assert!(next_local("Europe/Amsterdam", "morning", now).is_err());
    }

    #[test]
    fn campus_has_the_requested_sensors() {
        for n in [1, 7, 50] {
            let (c, secrets) = campus(n).unwrap();
            assert_eq!(c.sensors.len(), n);
            assert_eq!(secrets.len(), n);
            assert!(
                c.rooms
                    .iter()
                    .all(|r| !(r.public && r.kind == RoomKind::Office))
            );
        }
    }
}
