//! A scripted day with known truth, through the real broker and a real MQTT client: the
//! per-minute `occupancy` rows of the finished day equal the expected values exactly, and the
//! nightly reset happens at 03:00 Europe/Amsterdam on the night the clocks go forward.

use crate::common;

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use common::*;
use rumqttc::{AsyncClient, MqttOptions, QoS};
use tellijn::server::{Server, ServerOptions};
use tellijn_config::Campus;
use tellijn_queries::{Format, History};
use tellijn_wire::Clock;

const DAY: &str = "2026-03-29"; // Europe/Amsterdam: 02:00 CET → 03:00 CEST (01:00 UTC)

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripted_day_rows_equal_the_truth_and_reset_at_three_on_the_dst_night() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let text = tellijn_test_support::CampusToml::new()
        .section("[server]\nflush_interval = \"50ms\"\ntimezone = \"Europe/Amsterdam\"")
        .building("b", "B")
        .room("r1", "b", "Study", "study", 40)
        .with("reset = \"03:00\"")
        .line_sensor(
            "s1",
            &tellijn::secrets::hash_demo(S1_SECRET).unwrap(),
            &[("main", "r1", None)],
        )
        .toml();
    let midnight: DateTime<Utc> = format!("{DAY}T00:00:00Z").parse().unwrap();
    // A day in about 12 s: the clock starts an hour before the day and runs 7200× real time.
    let clock = Clock::accelerated(midnight - TimeDelta::hours(1), 7200.0);
    let server = Server::start(ServerOptions {
        campus: Arc::new(Campus::parse(&text, "scripted").unwrap()),
        mqtt: Some("127.0.0.1:0".parse().unwrap()),
        mqtts: None,
        http: Some("127.0.0.1:0".parse().unwrap()),
        metrics: Some("127.0.0.1:0".parse().unwrap()),
        postgres: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: Some(data.clone()),
        clock,
        source: "test".into(),
    })
    .await
    .unwrap();

    let mut opts = MqttOptions::new("s1", "127.0.0.1", server.mqtt_addr().port());
    opts.set_credentials("s1", S1_SECRET)
        .set_clean_session(false);
    let (client, mut events) = AsyncClient::new(opts, 64);
    tokio::spawn(async move {
        loop {
            if let Err(e) = events.poll().await {
                eprintln!("test publisher: {e}; reconnecting");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    // (seconds after midnight UTC, in, out)
    // The last one arrives late: it is sent after the day has ended.
    let script: [(i64, u32, u32); 7] = [
        (630, 5, 0),
        (3030, 0, 2),
        (21630, 4, 0),
        (43230, 0, 1),
        (66630, 0, 3),
        (86370, 1, 0),
        (50430, 2, 0),
    ];
    let f = |t: DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for (seq, (s, i, o)) in script.iter().enumerate() {
        let end = midnight + TimeDelta::seconds(*s);
        // The late one is sent two minutes after midnight of the next day.
        let send_at = if seq == 6 {
            midnight + TimeDelta::seconds(86400 + 120)
        } else {
            end
        };
        while clock.now() < send_at {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let payload = format!(
            r#"{{"v":1,"sensor":"s1","line":"main","seq":{},"start":"{}","end":"{}","in":{i},"out":{o}}}"#,
            seq + 1,
            f(end - TimeDelta::seconds(1)),
            f(end)
        );
        client
            .publish(
                "tellijn/v1/sensors/s1/counts",
                QoS::AtLeastOnce,
                false,
                payload,
            )
            .await
            .unwrap();
    }

    // The day is rebuilt from its counts by message time some minutes after it ends.
    let http = server.metrics_addr();
    // All seven stored; the one sent after the day ended is counted late (at 7200x a loaded
    // machine may make another one late too: its minute closes within milliseconds).
    let stored_all = || async move {
        let m = http_get(http, "/metrics").await;
        let late = metric(&m, "tellijn_messages_total{outcome=\"late\"}");
        late >= 1.0 && late + metric(&m, "tellijn_messages_total{outcome=\"accepted\"}") == 7.0
    };
    assert!(
        wait_for(30, stored_all).await,
        "not all seven messages were stored, the late one counted late"
    );
    // Rebuilt after the late message was stored: the marker names a version at least as new as
    // every counts file of the day.
    let marker = data.join("state/rebuilt").join(DAY);
    let counts_dir = data.join("counts").join(format!("date={DAY}"));
    let rebuilt = || {
        let (marker, counts_dir) = (marker.clone(), counts_dir.clone());
        async move {
            let done: u64 = std::fs::read_to_string(&marker)
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(0);
            let newest = std::fs::read_dir(&counts_dir)
                .map(|d| {
                    d.flatten()
                        .filter_map(|e| {
                            let n = e.file_name().to_string_lossy().into_owned();
                            n.strip_prefix('f')?.split('-').next()?.parse::<u64>().ok()
                        })
                        .max()
                        .unwrap_or(u64::MAX)
                })
                .unwrap_or(u64::MAX);
            done >= newest
        }
    };
    assert!(
        wait_for(60, rebuilt).await,
        "the day was never rebuilt after its late message"
    );
    let h = History::open(&data, None).await.unwrap();
    let csv = h
        .query(
            &format!("SELECT people_in, people_out, occupancy_min, occupancy_avg, occupancy_max FROM occupancy WHERE room = 'r1' AND date = '{DAY}' ORDER BY minute"),
            Format::Csv,
        )
        .await
        .unwrap();
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 1440, "one row per minute");

    // The truth, second by second: the reset empties the room at 01:00:00 UTC (03:00 CEST).
    let reset = 3600;
    let value = |sec: i64| -> i64 {
        let mut v = 0i64;
        let mut events: Vec<(i64, i64, bool)> = script
            .iter()
            .map(|(s, i, o)| (*s, *i as i64 - *o as i64, false))
            .collect();
        events.push((reset, 0, true));
        events.sort();
        for (t, d, is_reset) in events {
            if t <= sec {
                v = if is_reset { 0 } else { (v + d).max(0) };
            }
        }
        v
    };
    for (m, row) in rows.iter().enumerate() {
        let m = m as i64 * 60;
        let vals: Vec<i64> = (m..m + 60).map(value).collect();
        let (i, o): (u32, u32) = script
            .iter()
            .filter(|(s, _, _)| (m..m + 60).contains(s))
            .fold((0, 0), |(a, b), (_, i, o)| (a + i, b + o));
        let avg = vals.iter().sum::<i64>() as f64 / 60.0;
        let want = format!(
            "{i},{o},{},{avg},{}",
            vals.iter().min().unwrap(),
            vals.iter().max().unwrap()
        );
        let got: Vec<&str> = row.split(',').collect();
        let got_avg: f64 = got[3].parse().unwrap();
        assert!(
            (got_avg - avg).abs() < 1e-9,
            "minute {} avg: got {row}, want {want}",
            m / 60
        );
        assert_eq!(
            (got[0], got[1], got[2], got[4]),
            (
                i.to_string().as_str(),
                o.to_string().as_str(),
                vals.iter().min().unwrap().to_string().as_str(),
                vals.iter().max().unwrap().to_string().as_str()
            ),
            "minute {}: got {row}, want {want}",
            m / 60
        );
    }
    // The late message was stored, counted late, and is in its own minute (14:00).
    assert!(rows[840].starts_with("2,0,3,"), "{}", rows[840]);
    // One file per table for the finished day.
    for table in ["counts", "occupancy"] {
        let n = std::fs::read_dir(data.join(table).join(format!("date={DAY}")))
            .unwrap()
            .count();
        assert_eq!(n, 1, "{table} has {n} files for {DAY}");
    }
    // Spot checks a reader can follow: 3 people at 00:59, none from 01:00 UTC = 03:00 CEST.
    assert_eq!(rows[59], "0,0,3,3.0,3");
    assert_eq!(rows[60], "0,0,0,0.0,0");
    server.stop().await.unwrap();
}
