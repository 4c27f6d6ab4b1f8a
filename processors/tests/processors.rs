//! The processors driven directly (no broker): state across restarts, vacancy timing with
//! paused tokio time, Home Assistant discovery, late messages, retention.

use std::sync::Arc;
use std::time::{Duration, Instant};
use tellijn_test_support::{CampusToml, HASH};

use chrono::{DateTime, TimeDelta, Utc};
use prometheus_client::registry::Registry;
use tellijn_config::{AuditLog, Campus, Metrics};
use tellijn_processors::{Output, Processors, Summary};
use tellijn_wire::{Clock, CountMessage, LineCount, SensorEvent};

fn campus(extra: &str) -> Arc<Campus> {
    let text = CampusToml::new()
        .section("[privacy]\nraw_retention = \"30d\"\naggregate_retention = \"60d\"")
        .section(extra)
        .building("b", "B")
        .room("r1", "b", "Study hall", "study", 50)
        .with("public = true\nvacancy_delay = \"10m\"")
        .room("r2", "b", "Office", "office", 3)
        .line_sensor("s1", HASH, &[("main", "r1", None)])
        .line_sensor("s2", HASH, &[("main", "r2", Some("r1"))])
        .toml();
    Arc::new(Campus::parse(&text, "test").unwrap())
}

fn open(dir: &std::path::Path, campus: &Arc<Campus>) -> Processors {
    let mut reg = Registry::default();
    let metrics = Metrics::new(&mut reg);
    let audit = Arc::new(AuditLog::open(dir).unwrap());
    Processors::open(campus.clone(), dir, metrics, Clock::system(), audit).unwrap()
}

fn line(
    sensor: &str,
    seq: u64,
    end: DateTime<Utc>,
    people_in: u32,
    people_out: u32,
) -> SensorEvent {
    SensorEvent::Count {
        msg: CountMessage::Line(LineCount {
            sensor: sensor.into(),
            line: "main".into(),
            seq,
            start: end - TimeDelta::seconds(1),
            end,
            people_in,
            people_out,
        }),
        received: Utc::now(),
        at: Instant::now(),
    }
}

fn payload<'a>(outs: &'a [Output], topic: &str) -> Option<&'a [u8]> {
    outs.iter()
        .rev()
        .find(|o| o.topic == topic)
        .map(|o| o.payload.as_slice())
}

fn occupancy(outs: &[Output], room: &str) -> Option<u64> {
    let p = payload(outs, &format!("tellijn/v1/rooms/{room}/occupancy"))?;
    serde_json::from_slice::<serde_json::Value>(p).ok()?["occupancy"].as_u64()
}

#[tokio::test]
async fn restart_mid_day_resumes_retained_occupancy() {
    let dir = tempfile::tempdir().unwrap();
    let c = campus("");
    let mut p = open(dir.path(), &c);
    let mut s = Summary::default();
    let now = Utc::now();
    p.handle(line("s1", 1, now, 7, 0), &mut s);
    let outs = p.handle(line("s2", 1, now, 2, 0), &mut s);
    assert_eq!(
        (occupancy(&outs, "r1"), occupancy(&outs, "r2")),
        (Some(5), Some(2))
    );
    p.flush().await.unwrap();
    drop(p);
    // A new process on the same data: the retained values are right before any message.
    let mut again = open(dir.path(), &c);
    let outs = again.initial_outputs();
    assert_eq!(
        (occupancy(&outs, "r1"), occupancy(&outs, "r2")),
        (Some(5), Some(2))
    );
    assert_eq!(
        payload(&outs, "tellijn/v1/rooms/r1/state"),
        Some(&b"\"occupied\""[..])
    );
    assert_eq!(
        payload(&outs, "tellijn/v1/sensors/s1/ack"),
        Some(&b"{\"seq\":1}"[..])
    );
}

#[tokio::test(start_paused = true)]
async fn vacancy_delay_with_paused_time() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &campus(""));
    let mut s = Summary::default();
    let state = "tellijn/v1/rooms/r1/state";
    p.initial_outputs();
    let now = Utc::now();
    let outs = p.handle(line("s1", 1, now, 1, 0), &mut s);
    assert_eq!(payload(&outs, state), Some(&b"\"occupied\""[..]));
    // A miscount takes the room to zero for a minute: the state does not flap.
    let outs = p.handle(line("s1", 2, now, 0, 1), &mut s);
    assert_eq!(payload(&outs, state), None);
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(payload(&p.housekeeping(), state), None);
    p.handle(line("s1", 3, now, 1, 0), &mut s);
    tokio::time::advance(Duration::from_secs(3600)).await;
    assert_eq!(payload(&p.housekeeping(), state), None);
    // A real departure: vacant once the room has stood at zero for the 10-minute delay.
    p.handle(line("s1", 4, now, 0, 1), &mut s);
    tokio::time::advance(Duration::from_secs(599)).await;
    assert_eq!(payload(&p.housekeeping(), state), None);
    tokio::time::advance(Duration::from_secs(1)).await;
    assert_eq!(payload(&p.housekeeping(), state), Some(&b"\"vacant\""[..]));
    // Published on change only.
    tokio::time::advance(Duration::from_secs(60)).await;
    assert_eq!(payload(&p.housekeeping(), state), None);
}

#[tokio::test]
async fn home_assistant_discovery_when_enabled() {
    let dir = tempfile::tempdir().unwrap();
    let outs = open(
        dir.path(),
        &campus("[integrations]\nhome_assistant = true\n"),
    )
    .initial_outputs();
    let cfg: serde_json::Value = serde_json::from_slice(
        payload(
            &outs,
            "homeassistant/binary_sensor/tellijn_r1/occupied/config",
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["state_topic"], "tellijn/v1/rooms/r1/state");
    assert_eq!(cfg["device_class"], "occupancy");
    assert_eq!(cfg["payload_on"], "occupied");
    let cfg: serde_json::Value = serde_json::from_slice(
        payload(&outs, "homeassistant/sensor/tellijn_r2/people/config").unwrap(),
    )
    .unwrap();
    assert_eq!(cfg["value_template"], "{{ value_json.occupancy }}");
    let off = open(tempfile::tempdir().unwrap().path(), &campus("")).initial_outputs();
    assert!(!off.iter().any(|o| o.topic.starts_with("homeassistant/")));
}

#[tokio::test]
async fn late_messages_are_stored_and_counted_late() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = open(dir.path(), &campus(""));
    let mut s = Summary::default();
    p.handle(line("s1", 1, Utc::now(), 1, 0), &mut s);
    p.handle(
        line("s1", 2, Utc::now() - TimeDelta::minutes(5), 1, 0),
        &mut s,
    );
    assert_eq!((s.accepted, s.late), (2, 1));
    p.flush().await.unwrap();
    let n: usize = std::fs::read_dir(dir.path().join("counts"))
        .unwrap()
        .count();
    assert!(n >= 1);
}

#[tokio::test]
async fn retention_deletes_exactly_the_expired_partitions_and_audits_them() {
    let dir = tempfile::tempdir().unwrap();
    let today = Utc::now().date_naive();
    let day = |n: i64| (today - TimeDelta::days(n)).to_string();
    for (table, ages) in [
        ("counts", [31, 30, 29]),
        ("zone_counts", [40, 2, 1]),
        ("occupancy", [61, 60, 59]),
    ] {
        for a in ages {
            let d = dir.path().join(table).join(format!("date={}", day(a)));
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("old.parquet"), b"never read").unwrap();
        }
    }
    let mut p = open(dir.path(), &campus(""));
    p.housekeeping();
    p.housekeeping_idle().await;
    let left = |table: &str| {
        let mut v: Vec<String> = std::fs::read_dir(dir.path().join(table))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // 30 days of raw counts: a partition whose day ended more than 30 days ago is gone.
    assert_eq!(
        left("counts"),
        [format!("date={}", day(30)), format!("date={}", day(29))]
    );
    assert_eq!(
        left("zone_counts"),
        [format!("date={}", day(2)), format!("date={}", day(1))]
    );
    assert_eq!(
        left("occupancy"),
        [format!("date={}", day(60)), format!("date={}", day(59))]
    );
    let audit = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect::<String>();
    let deleted: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|l| l["event"] == "retention_deleted")
        .collect();
    assert_eq!(deleted.len(), 3, "{audit}");
    assert!(
        deleted
            .iter()
            .any(|l| l["table"] == "counts" && l["date"] == day(31).as_str() && l["files"] == 1)
    );
}

/// Opens a FIFO for reading without blocking and removes it, so a flush blocked opening it for
/// writing goes on (and fails: a pipe cannot be synced) even if the test stopped early.
struct Unblock(std::path::PathBuf);

impl Drop for Unblock {
    fn drop(&mut self) {
        use std::os::unix::fs::OpenOptionsExt;
        const O_NONBLOCK: i32 = 0o4000; // Linux
        let _reader = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(O_NONBLOCK)
            .open(&self.0);
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Receives outputs until `done` holds for everything received so far (60 s at most).
async fn receive_until(
    rx: &mut tokio::sync::mpsc::Receiver<Output>,
    seen: &mut Vec<Output>,
    done: impl Fn(&[Output]) -> bool,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !done(seen) {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(o)) => seen.push(o),
            Ok(None) => panic!("the processors stopped; received {seen:?}"),
            Err(_) => panic!("timed out; received {seen:?}"),
        }
    }
}

fn parquet_rows(dir: &std::path::Path) -> Vec<(std::path::PathBuf, i64)> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(dir) else {
        return out;
    };
    for day in days.flatten() {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            let path = f.path();
            if path.extension().is_some_and(|e| e == "parquet") {
                let file = std::fs::File::open(&path).unwrap();
                let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
                use parquet::file::reader::FileReader;
                out.push((path, reader.metadata().file_metadata().num_rows()));
            }
        }
    }
    out
}

/// A flush runs beside the event loop: while its files are being written (here: held open on
/// the state file, a FIFO nobody reads yet) a new message is handled and its occupancy
/// published at once; no ack is published before the write is done; the flush that then fails
/// (a pipe cannot be synced) leaves no files behind, and its retry stores each message once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_handled_while_a_flush_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let p = open(dir.path(), &campus(""));
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let fifo = state.join(".processors.json.tmp"); // tellijn_durable::write_atomic's temporary file
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let unblock = Unblock(fifo.clone());
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (_reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    let run = tokio::spawn(p.run(
        rx,
        out_tx,
        Duration::from_millis(20),
        async {
            let _ = stop_rx.await;
        },
        reloads,
    ));
    let mut seen = Vec::new();
    tx.send(line("s1", 1, Utc::now(), 1, 0)).await.unwrap();
    receive_until(&mut out_rx, &mut seen, |o| occupancy(o, "r1") == Some(1)).await;
    // The first flush wrote its Parquet file and now waits to open the state file.
    let counts = dir.path().join("counts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while parquet_rows(&counts).is_empty() {
        assert!(Instant::now() < deadline, "no flush started");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.send(line("s1", 2, Utc::now(), 1, 0)).await.unwrap();
    receive_until(&mut out_rx, &mut seen, |o| occupancy(o, "r1") == Some(2)).await;
    let ack = "tellijn/v1/sensors/s1/ack";
    assert_eq!(payload(&seen, ack), None, "acked before the flush was done");
    // Let the flush go on: it fails, removes its file, and the retry writes both messages.
    drop(unblock);
    receive_until(&mut out_rx, &mut seen, |o| {
        payload(o, ack) == Some(&b"{\"seq\":2}"[..])
    })
    .await;
    stop_tx.send(()).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(summary.accepted, 2);
    let rows = parquet_rows(&counts);
    assert_eq!(
        rows.iter().map(|r| r.1).sum::<i64>(),
        2,
        "each message stored once: {rows:?}"
    );
}

/// Regression (issue 17, finding 2): a valid message with seq 9·10^18 became the watermark once
/// the gap horizon passed, and all 5 later messages of the sensor were dropped as duplicates.
/// Now it is refused with its own outcome and audit line, and the later messages are stored.
#[tokio::test]
async fn an_absurd_seq_does_not_blackhole_the_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let c = campus("[server]\ngap_horizon = \"1s\"\n");
    // Campus time runs 100× faster, so the 1 s horizon passes in 10 ms.
    let clock = Clock::accelerated(Utc::now(), 100.0);
    let mut reg = Registry::default();
    let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
    let mut p =
        Processors::open(c.clone(), dir.path(), Metrics::new(&mut reg), clock, audit).unwrap();
    let mut s = Summary::default();
    let now = clock.now();
    p.handle(line("s1", 1, now, 1, 0), &mut s);
    p.handle(line("s1", 9_000_000_000_000_000_000, now, 100, 0), &mut s);
    p.flush().await.unwrap();
    // Past the horizon: before the fix the absurd seq became the watermark here.
    let horizon_passed = clock.now() + TimeDelta::seconds(2);
    while clock.now() < horizon_passed {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    p.flush().await.unwrap();
    for seq in 2..=6 {
        p.handle(line("s1", seq, now, 1, 0), &mut s);
    }
    let outs = p.flush().await.unwrap();
    assert_eq!((s.accepted, s.duplicates), (6, 0), "{s:?}");
    assert_eq!(
        payload(&outs, "tellijn/v1/sensors/s1/ack"),
        Some(&b"{\"seq\":6}"[..])
    );
    let rows: i64 = parquet_rows(&dir.path().join("counts"))
        .iter()
        .map(|r| r.1)
        .sum();
    assert_eq!(rows, 6);
    let audit = std::fs::read_to_string(
        dir.path()
            .join(format!("audit/{}.jsonl", Utc::now().date_naive())),
    )
    .unwrap();
    assert!(
        audit.contains(
            r#""event":"seq_too_far_ahead","sensor":"s1","seq":9000000000000000000,"highest":1"#
        ),
        "{audit}"
    );
}

/// A reload while counts flow: the new campus (a room and a sensor added, one sensor removed)
/// is in force for the next message, the occupancy and the dedup state carry over (a resent
/// message stays a duplicate), the new room is published, and every message is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_keeps_every_count_and_takes_the_new_campus() {
    let dir = tempfile::tempdir().unwrap();
    let c = campus("");
    let p = open(dir.path(), &c);
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel(1024);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (reload_tx, reloads) = tokio::sync::mpsc::channel(1);
    let run = tokio::spawn(p.run(
        rx,
        out_tx,
        Duration::from_secs(3600),
        async {
            let _ = stop_rx.await;
        },
        reloads,
    ));
    let mut seen = Vec::new();
    let now = Utc::now();
    tx.send(line("s1", 1, now, 4, 0)).await.unwrap();
    tx.send(line("s2", 1, now, 1, 0)).await.unwrap();
    receive_until(&mut out_rx, &mut seen, |o| {
        occupancy(o, "r1") == Some(3) && occupancy(o, "r2") == Some(1)
    })
    .await;
    // The new campus: r3 and its sensor s3 added, s2 removed (r2 stays).
    let text = CampusToml::new()
        .section("[privacy]\nraw_retention = \"30d\"\naggregate_retention = \"60d\"")
        .building("b", "B")
        .room("r1", "b", "Study hall", "study", 50)
        .with("public = true\nvacancy_delay = \"10m\"")
        .room("r2", "b", "Office", "office", 3)
        .room("r3", "b", "New hall", "study", 80)
        .line_sensor("s1", HASH, &[("main", "r1", None)])
        .line_sensor("s3", HASH, &[("main", "r3", None)])
        .toml();
    let next = Arc::new(Campus::parse(&text, "test").unwrap());
    let (done, result) = tokio::sync::oneshot::channel();
    reload_tx
        .send(tellijn_processors::reload::Reload { campus: next, done })
        .await
        .unwrap();
    result.await.unwrap().expect("the reload took effect");
    // The reload flushed: both messages are stored and acknowledged.
    receive_until(&mut out_rx, &mut seen, |o| {
        payload(o, "tellijn/v1/sensors/s1/ack") == Some(&b"{\"seq\":1}"[..])
            && occupancy(o, "r3") == Some(0)
    })
    .await;
    // s1 resends seq 1 (its ack was lost): a duplicate, not counted again; s3 counts into r3.
    tx.send(line("s1", 1, now, 4, 0)).await.unwrap();
    tx.send(line("s1", 2, now, 1, 0)).await.unwrap();
    tx.send(line("s3", 1, now, 6, 0)).await.unwrap();
    receive_until(&mut out_rx, &mut seen, |o| {
        occupancy(o, "r1") == Some(4) && occupancy(o, "r3") == Some(6)
    })
    .await;
    stop_tx.send(()).unwrap();
    let summary = run.await.unwrap().unwrap();
    assert_eq!(
        (summary.accepted, summary.duplicates),
        (4, 1),
        "{summary:?}"
    );
    let rows: i64 = parquet_rows(&dir.path().join("counts"))
        .iter()
        .map(|r| r.1)
        .sum();
    assert_eq!(rows, 4, "every message stored once");
}
