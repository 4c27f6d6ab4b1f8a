//! Fault injection: the server is killed at named points of a simulated two days — mid-flush,
//! between Parquet and state, between state and ack, inside crash-safe writes, during the
//! retention sweep, at the UTC day boundary (the day-start snapshot), during compaction, the
//! rebuild swap and its marker — and after every crash:
//! - the acknowledged watermark never goes back,
//! - every acknowledged count is stored, none twice,
//! - the restarted server's occupancy equals the stored counts' sum,
//!
//! and at the end every count ever sent is stored exactly once and the rebuilt per-minute
//! occupancy rows of the finished day equal a recomputation from the messages themselves.
//!
//! The server runs in a child process (this test binary again, `crash_child`), built with the
//! feature `crash-points`: `TELLIJN_CRASH_AT=point:n` aborts it at the n-th hit of `point`
//! (see `durable/src/crash.rs`), which leaves the disk as a `kill -9` at that instant would;
//! the first child is killed with a real SIGKILL at an arbitrary moment. The publisher plays an
//! agent: it keeps every count until the server's retained ack covers it, and resends the rest
//! after each restart. Run: `cargo test --features crash-points --test crash_e2e`.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, TimeDelta, Timelike, Utc};
use common::*;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tellijn::server::{Server, ServerOptions};
use tellijn_config::Campus;
use tellijn_wire::Clock;

const CHILD: &str = "TELLIJN_CRASH_CHILD";
/// Simulated seconds per real second.
const SPEED: f64 = 3_600.0;
/// The day whose rebuilt rows are checked (yesterday, so that the queries' retention cutoff,
/// taken from the real clock, keeps it); the run starts the evening before the day before it.
fn day() -> NaiveDate {
    (Utc::now() - TimeDelta::days(1)).date_naive()
}
/// Old partitions the retention sweep must delete (and audit) across crashes.
const OLD: [(&str, &str); 2] = [("counts", "2001-01-01"), ("occupancy", "2001-01-02")];

fn campus_text(data: &Path) -> String {
    tellijn_test_support::CampusToml::new()
        .section(&format!(
            "[server]\ndata_dir = \"{}\"\nflush_interval = \"40ms\"\ntimezone = \"UTC\"",
            data.display()
        ))
        .section("[limits]\npublish_rate = 1000\npublish_burst = 5000")
        .building("b", "Building")
        .room("r1", "b", "Hall", "study", 100_000)
        .with("public = true")
        .line_sensor(
            "s1",
            &tellijn::secrets::hash_demo(S1_SECRET).unwrap(),
            &[("main", "r1", None)],
        )
        .toml()
}

/// The server process: started by [`acknowledged_counts_survive_a_kill_at_every_crash_point`]
/// with `TELLIJN_CRASH_CHILD` set; otherwise it returns at once.
#[test]
fn crash_child() {
    let Ok(data) = std::env::var(CHILD) else {
        return;
    };
    let data = PathBuf::from(data);
    // The harness's simulated clock, shared through the wall clock: this process starts late.
    let sim = Sim {
        t0: std::env::var("TELLIJN_SIM_T0").unwrap().parse().unwrap(),
        wall0: std::env::var("TELLIJN_SIM_WALL0").unwrap().parse().unwrap(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .try_init();
    rt.block_on(async move {
        let server = Server::start(ServerOptions {
            campus: Arc::new(Campus::parse(&campus_text(&data), "crash").unwrap()),
            mqtt: Some("127.0.0.1:0".parse().unwrap()),
            mqtts: None,
            http: Some("127.0.0.1:0".parse().unwrap()),
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            postgres: Some("127.0.0.1:0".parse().unwrap()),
            data_dir: Some(data.clone()),
            clock: Clock::accelerated(sim.now(), SPEED),
            source: "crash".into(),
        })
        .await
        .unwrap();
        // The occupancy as restored, read from the server's own /metrics before READY: once
        // READY is out, a flush crash point may end this process before the harness could ask.
        let metrics = http_get(server.metrics_addr(), "/metrics").await;
        let restored = room_occupancy(&metrics).map_or("none".to_owned(), |n| n.to_string());
        println!(
            "READY {} {} {restored}",
            server.mqtt_addr().port(),
            server.metrics_addr()
        );
        // Until the harness closes stdin (the last, orderly stop) or kills this process.
        let _ = tokio::task::spawn_blocking(|| {
            let mut s = String::new();
            while std::io::stdin()
                .read_line(&mut s)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await;
        server.stop().await.unwrap();
    });
}

/// The simulated time: `t0` at the wall-clock instant `wall0`, running `SPEED` times faster.
struct Sim {
    t0: DateTime<Utc>,
    wall0: DateTime<Utc>,
}

impl Sim {
    fn now(&self) -> DateTime<Utc> {
        let real = (Utc::now() - self.wall0).num_microseconds().unwrap_or(0);
        self.t0 + TimeDelta::microseconds((real as f64 * SPEED) as i64)
    }
}

struct Running {
    child: Child,
    port: u16,
    metrics: std::net::SocketAddr,
    /// `tellijn_room_occupancy` of r1 as the child read it before READY.
    restored: Option<i64>,
}

/// Starts the server child; `Err` with its exit status when it died before it was ready (a
/// crash point reached during start).
fn spawn(
    data: &Path,
    sim: &Sim,
    crash_at: Option<&str>,
) -> Result<Running, std::process::ExitStatus> {
    let mut cmd = Command::new(std::env::current_exe().unwrap());
    cmd.args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, data)
        .env("TELLIJN_SIM_T0", sim.t0.to_rfc3339())
        .env("TELLIJN_SIM_WALL0", sim.wall0.to_rfc3339())
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    match crash_at {
        Some(p) => cmd.env("TELLIJN_CRASH_AT", p),
        None => cmd.env_remove("TELLIJN_CRASH_AT"),
    };
    let mut child = cmd.spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap()).lines();
    while let Some(line) = out.next() {
        let line = line.unwrap();
        // libtest may print "test crash_child ... " before it on the same line.
        if let Some((_, rest)) = line.split_once("READY ") {
            let mut fields = rest.split(' ');
            let (port, metrics, restored) = (
                fields.next().unwrap(),
                fields.next().unwrap(),
                fields.next().unwrap(),
            );
            // Keep reading, so the child's test harness can still write its result line.
            std::thread::spawn(move || out.for_each(drop));
            return Ok(Running {
                child,
                port: port.parse().unwrap(),
                metrics: metrics.parse().unwrap(),
                restored: restored.parse().ok(),
            });
        }
    }
    let status = child.wait().unwrap();
    assert!(
        crash_at.is_some() && !status.success(),
        "the server child ended before it was ready: {status}"
    );
    Err(status)
}

/// A count message as the agent sends it.
fn line_json(seq: u64, end: DateTime<Utc>, people_in: u32, people_out: u32) -> String {
    let f = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    format!(
        r#"{{"v":1,"sensor":"s1","line":"main","seq":{seq},"start":"{}","end":"{}","in":{people_in},"out":{people_out}}}"#,
        f(end - TimeDelta::seconds(1)),
        f(end)
    )
}

#[derive(Clone, Copy)]
struct Sent {
    end: DateTime<Utc>,
    people_in: u32,
    people_out: u32,
}

/// The publishing side, as an agent with an outbox: everything above the acknowledged
/// watermark is kept and sent again to each new server process.
struct Agent {
    sent: BTreeMap<u64, Sent>,
    acked: u64,
}

/// What the data directory holds: (rows, distinct seqs, seqs at or below `acked`, sum in - out).
async fn stored(data: &Path, acked: u64) -> (u64, u64, u64, i64) {
    let v = &sql_numbers(
        data,
        &format!("SELECT count(*), count(DISTINCT seq), count(DISTINCT CASE WHEN seq <= {acked} THEN seq END), coalesce(sum(people_in), 0) - coalesce(sum(people_out), 0) FROM counts WHERE sensor = 's1'"),
    )
    .await[0];
    (v[0] as u64, v[1] as u64, v[2] as u64, v[3])
}

fn room_occupancy(metrics: &str) -> Option<i64> {
    metrics
        .lines()
        .find(|l| l.starts_with("tellijn_room_occupancy{") && l.contains("room=\"r1\""))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Connects as `s1`, learns the retained ack, resends what it does not cover, then sends new
/// counts until the child exits (a crash point) or `until` (simulated) passes. Returns whether
/// the child exited by itself.
async fn drive(
    run: &mut Running,
    agent: &mut Agent,
    sim: &Sim,
    until: DateTime<Utc>,
    stop_at_until: bool,
    send_new: bool,
) -> bool {
    let mut opts = MqttOptions::new("s1", "127.0.0.1", run.port);
    opts.set_credentials("s1", S1_SECRET);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_clean_session(true);
    let (client, mut events) = AsyncClient::new(opts, 4096);
    let ack_topic = "tellijn/v1/sensors/s1/ack";
    client.subscribe(ack_topic, QoS::AtLeastOnce).await.unwrap();
    let counts = "tellijn/v1/sensors/s1/counts";
    // The event loop runs on its own task; acks come back over a channel.
    let (acks_tx, mut acks) = tokio::sync::mpsc::unbounded_channel();
    let poller = tokio::spawn(async move {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                    let v: serde_json::Value = serde_json::from_slice(&p.payload).unwrap();
                    if acks_tx.send(v["seq"].as_u64().unwrap()).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // The child died or is not listening yet: its exit is seen by the caller.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    });
    // The first ack is the retained one: the server's watermark after its restart. Nothing
    // is sent before it (as the agent does).
    let mut synced = false;
    let mut tick = tokio::time::interval(Duration::from_millis(15));
    let crashed = loop {
        if let Ok(Some(status)) = run.child.try_wait() {
            assert!(
                !(status.success() && stop_at_until),
                "the server child exited by itself: {status}"
            );
            break true;
        }
        if sim.now() >= until {
            break false;
        }
        tokio::select! {
            Some(seq) = acks.recv() => {
                assert!(
                    seq >= agent.acked,
                    "the acknowledged watermark went back from {} to {seq}",
                    agent.acked
                );
                assert!(seq <= agent.sent.len() as u64, "ack {seq} above anything sent");
                agent.acked = seq;
                if !synced {
                    synced = true;
                    eprintln!("crash harness: synced at ack {seq} of {}", agent.sent.len());
                    for (seq, m) in agent.sent.range(agent.acked + 1..) {
                        let _ = client
                            .publish(counts, QoS::AtLeastOnce, false, line_json(*seq, m.end, m.people_in, m.people_out))
                            .await;
                    }
                }
            }
            // Re-check the child and the deadline now and then, whatever else happens.
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = tick.tick(), if synced && send_new => {
                // No new counts in the 30 minutes around midnight: the day-start snapshot is
                // then exact whichever way a message and the clock race.
                let now = sim.now();
                let minute = now.time().hour() * 60 + now.time().minute();
                if (15..23 * 60 + 45).contains(&minute) {
                    let seq = agent.sent.len() as u64 + 1;
                    let m = Sent { end: now, people_in: 2, people_out: u32::from(seq.is_multiple_of(3)) };
                    agent.sent.insert(seq, m);
                    let _ = client
                        .publish(counts, QoS::AtLeastOnce, false, line_json(seq, m.end, m.people_in, m.people_out))
                        .await;
                }
            }
        }
    };
    poller.abort();
    crashed
}

/// Copies a data directory (to check it as a restart will find it without racing the server).
fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// After a crash, on a copy of the directory repaired as the restart will repair it (an
/// interrupted swap finished or undone): every acknowledged count is stored, none twice.
/// Returns the stored sum of in - out.
async fn check_stored(data: &Path, agent: &Agent, after: &str) -> i64 {
    let copy = tempfile::tempdir().unwrap();
    copy_dir(data, copy.path());
    tellijn_processors::rebuild::repair(copy.path()).unwrap();
    let (rows, distinct, acked_stored, net) = stored(copy.path(), agent.acked).await;
    assert_eq!(rows, distinct, "after {after}: a count is stored twice");
    assert_eq!(
        acked_stored, agent.acked,
        "after {after}: an acknowledged count is missing (acked {}, stored {acked_stored})",
        agent.acked
    );
    net
}

/// Partitions past retention, as real Parquet of another sensor (the queries read them).
fn old_partitions(data: &Path) {
    let at = |d: &str| format!("{d}T12:00:00Z").parse::<DateTime<Utc>>().unwrap();
    let count = tellijn_wire::LineCount {
        sensor: "s0".into(),
        line: "main".into(),
        seq: 1,
        start: at(OLD[0].1) - TimeDelta::seconds(1),
        end: at(OLD[0].1),
        people_in: 1,
        people_out: 0,
    };
    let row = tellijn_processors::minutes::MinuteRow {
        room: "r1".into(),
        building: "b".into(),
        minute: at(OLD[1].1).timestamp_micros(),
        people_in: 0,
        people_out: 0,
        occupancy_min: 0,
        occupancy_avg: 0.0,
        occupancy_max: 0,
        capacity: 1,
    };
    let buffer = tellijn_processors::parquet_sink::Buffer {
        counts: vec![(count, at(OLD[0].1))],
        zones: Vec::new(),
        occupancy: vec![row],
    };
    buffer.flush(data, 0).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_counts_survive_a_kill_at_every_crash_point() {
    let day = day();
    #[allow(non_snake_case)]
    let DAY = day.to_string();
    let day = || day;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    old_partitions(&data);
    let start = (day() - TimeDelta::days(2))
        .and_hms_opt(18, 0, 0)
        .unwrap()
        .and_utc();
    let sim = Sim {
        t0: start,
        wall0: Utc::now(),
    };
    let at = |d: i64, h: u32, m: u32| {
        (day() + TimeDelta::days(d))
            .and_hms_opt(h, m, 0)
            .unwrap()
            .and_utc()
    };
    let mut agent = Agent {
        sent: BTreeMap::new(),
        acked: 0,
    };

    // 1. The retention sweep at start: killed before and after deleting the first old partition.
    for point in ["retention.before-delete:1", "retention.after-delete:1"] {
        eprintln!("crash harness: {point} at {}", sim.now());
        if let Ok(mut run) = spawn(&data, &sim, Some(point)) {
            assert!(
                drive(&mut run, &mut agent, &sim, at(-2, 23, 0), false, true).await,
                "the crash point {point} was not reached"
            );
        }
        check_stored(&data, &agent, point).await;
    }

    // 2. A real SIGKILL at an arbitrary moment, once the day before has begun (and its
    //    start snapshot has been taken).
    let mut run = spawn(&data, &sim, None).unwrap();
    assert!(!drive(&mut run, &mut agent, &sim, at(-1, 1, 0), false, true).await);
    run.child.kill().unwrap();
    run.child.wait().unwrap();
    let mut net = check_stored(&data, &agent, "SIGKILL").await;

    // 3. Named points, in the order the simulated days reach them; each must fire before its
    //    deadline.
    let points: [(&str, DateTime<Utc>); 12] = [
        ("flush.after-file:3", at(-1, 12, 0)),
        ("flush.before-state:3", at(-1, 12, 0)),
        ("flush.before-ack:3", at(-1, 18, 0)),
        ("atomic-write.before-rename:3", at(-1, 18, 0)),
        ("atomic-write.before-dir-sync:3", at(-1, 23, 0)),
        // The UTC day boundary: the day-start snapshot of DAY is never written.
        ("snapshot.before-write:1", at(0, 1, 0)),
        // The day before is compacted and rebuilt from 00:10.
        ("compact.before-swap:1", at(0, 6, 0)),
        ("swap.between-renames:1", at(0, 10, 0)),
        ("swap.before-delete-old:1", at(0, 14, 0)),
        ("rebuild.before-swap:1", at(0, 18, 0)),
        ("rebuild.before-marker:1", at(0, 21, 0)),
        ("flush.after-file:2", at(0, 23, 0)),
    ];
    for (point, deadline) in points {
        eprintln!("crash harness: {point} at {}", sim.now());
        let Ok(mut run) = spawn(&data, &sim, Some(point)) else {
            net = check_stored(&data, &agent, point).await;
            continue;
        };
        assert_eq!(
            run.restored,
            Some(net),
            "before {point}: the restarted server's occupancy is not the stored counts' sum"
        );
        let crashed = drive(&mut run, &mut agent, &sim, deadline, false, true).await;
        if !crashed {
            let _ = run.child.kill();
            let _ = run.child.wait();
            panic!("the crash point {point} was not reached by {deadline}");
        }
        net = check_stored(&data, &agent, point).await;
    }

    // 4. An orderly run past the end of DAY: everything sent gets acknowledged, DAY is
    //    compacted and rebuilt (from the end of the day before: its own snapshot was lost).
    let mut run = spawn(&data, &sim, None).unwrap();
    let metrics = http_get(run.metrics, "/metrics").await;
    assert_eq!(room_occupancy(&metrics), Some(net), "before the last run");
    assert!(!drive(&mut run, &mut agent, &sim, at(1, 0, 20), true, true).await);
    let marker = data.join("state/rebuilt").join(&DAY);
    let last = agent.sent.len() as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(marker.exists() && agent.acked == last) {
        assert!(
            Instant::now() < deadline,
            "not all acknowledged ({} of {last}) or {DAY} not rebuilt",
            agent.acked
        );
        drive(
            &mut run,
            &mut agent,
            &sim,
            sim.now() + TimeDelta::minutes(30),
            true,
            false,
        )
        .await;
    }
    drop(run.child.stdin.take());
    assert!(run.child.wait().unwrap().success());

    let (rows, distinct, acked_stored, _) = stored(&data, agent.acked).await;
    let last = agent.sent.len() as u64;
    assert_eq!(
        (rows, distinct, acked_stored),
        (last, last, last),
        "every count sent is stored exactly once"
    );
    // Retention deleted the old partitions, each audited (perhaps twice: a crash between the
    // line and the deletion repeats both).
    let audit = audit_lines(&data);
    for (table, date) in OLD {
        assert!(!data.join(table).join(format!("date={date}")).exists());
        assert!(
            audit.iter().any(|l| l["event"] == "retention_deleted"
                && l["table"] == table
                && l["date"] == date),
            "no audit line for deleting {table} {date}"
        );
    }
    // DAY's rows, rebuilt, against a recomputation from the messages themselves.
    let got = sql_numbers(
        &data,
        &format!("SELECT people_in, people_out, occupancy_min, occupancy_max FROM occupancy WHERE room = 'r1' AND date = '{DAY}' ORDER BY minute"),
    )
    .await;
    assert_eq!(got.len(), 1440, "one row per minute of {DAY}");
    let t0 = at(0, 0, 0);
    let before: i64 = agent
        .sent
        .values()
        .filter(|m| m.end < t0)
        .map(|m| i64::from(m.people_in) - i64::from(m.people_out))
        .sum();
    let mut value = before;
    for (i, row) in got.iter().enumerate() {
        let (lo, hi) = (
            t0 + TimeDelta::minutes(i as i64),
            t0 + TimeDelta::minutes(i as i64 + 1),
        );
        let mut people = (0i64, 0i64);
        let (mut min, mut max) = (value, value);
        for m in agent.sent.values().filter(|m| m.end >= lo && m.end < hi) {
            people.0 += i64::from(m.people_in);
            people.1 += i64::from(m.people_out);
            value += i64::from(m.people_in) - i64::from(m.people_out);
            if m.end == lo {
                // A change at the very first microsecond of the minute: the value before it
                // never lasted in this minute (as the server counts it).
                (min, max) = (value, value);
            } else {
                min = min.min(value);
                max = max.max(value);
            }
        }
        assert_eq!(
            (row[0], row[1]),
            people,
            "{DAY} minute {i}: people in/out differ from the messages"
        );
        assert_eq!(
            (row[2], row[3]),
            (min, max),
            "{DAY} minute {i}: occupancy min/max differ from the messages"
        );
    }
    for table in ["counts", "occupancy"] {
        let files = std::fs::read_dir(data.join(table).join(format!("date={DAY}")))
            .unwrap()
            .count();
        assert_eq!(files, 1, "{table} of {DAY} is not one compacted file");
    }
}
