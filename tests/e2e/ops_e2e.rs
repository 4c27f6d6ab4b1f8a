//! Operations: the metrics pass `promtool check metrics`, the alert rules pass `promtool check
//! rules` and their unit tests, the dashboards are well formed, and every dashboard query
//! answers against a real Prometheus scraping a real demo (PromQL) and against the demo's
//! PostgreSQL endpoint (SQL).

use crate::common;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(repo().join("grafana/dashboards")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "json") {
            let v = serde_json::from_str(&std::fs::read_to_string(&p).unwrap())
                .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            out.push((p.file_name().unwrap().to_string_lossy().into_owned(), v));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every (dashboard, panel title, datasource type, query) of the dashboards.
fn queries() -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    for (file, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                let q = t["expr"].as_str().or(t["rawSql"].as_str()).unwrap();
                out.push((
                    file.clone(),
                    p["title"].as_str().unwrap().to_owned(),
                    t["datasource"]["type"].as_str().unwrap().to_owned(),
                    q.to_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed() {
    let provisioning =
        std::fs::read_to_string(repo().join("grafana/provisioning/datasources/tellijn.yaml"))
            .unwrap();
    let boards = dashboards();
    let titles: Vec<&str> = boards
        .iter()
        .map(|(_, d)| d["title"].as_str().unwrap())
        .collect();
    for t in [
        "Campus now",
        "Room utilisation",
        "Sensor health",
        "Energy",
        "Booked vs used",
    ] {
        assert!(
            titles.iter().any(|x| x.ends_with(t)),
            "no {t} board: {titles:?}"
        );
    }
    for (file, d) in &boards {
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{file}");
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(!title.is_empty(), "{file}: a panel without a title");
            let unit = p["fieldConfig"]["defaults"]["unit"]
                .as_str()
                .unwrap_or_default();
            assert!(!unit.is_empty(), "{file}: {title} has no unit");
            let targets = p["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{file}: {title} has no query");
            for t in targets.iter().chain(std::iter::once(p)) {
                let ds = &t["datasource"];
                let uid = ds["uid"].as_str().unwrap_or_default();
                let kind = ds["type"].as_str().unwrap_or_default();
                assert!(
                    provisioning.contains(&format!("uid: {uid}\n    type: {kind}\n")),
                    "{file}: {title} uses data source {uid} ({kind}), which is not provisioned"
                );
            }
            for t in targets {
                let q = t["expr"].as_str().or(t["rawSql"].as_str());
                assert!(
                    q.is_some_and(|q| !q.trim().is_empty()),
                    "{file}: {title} has an empty query"
                );
            }
        }
    }
    // Both kinds of data source are in use.
    let kinds: std::collections::BTreeSet<String> =
        queries().into_iter().map(|(_, _, k, _)| k).collect();
    assert_eq!(kinds.len(), 2, "{kinds:?}");
}

#[test]
fn alert_rules_pass_promtool_with_their_tests() {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("promtool")
            .args(args)
            .current_dir(repo().join("grafana/alerts"))
            .output()
            .expect("promtool must be installed (apt-get install prometheus)");
        assert!(
            out.status.success(),
            "promtool {args:?}:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let checked = run(&["check", "rules", "tellijn-rules.yaml"]);
    assert!(checked.contains("14 rules found"), "{checked}");
    run(&["test", "rules", "tests/tellijn-rules-test.yaml"]);
    // Every alert has a firing and a non-firing case.
    let rules = std::fs::read_to_string(repo().join("grafana/alerts/tellijn-rules.yaml")).unwrap();
    let tests =
        std::fs::read_to_string(repo().join("grafana/alerts/tests/tellijn-rules-test.yaml"))
            .unwrap();
    for name in rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
    {
        let cases: Vec<&str> = tests
            .split("alertname: ")
            .skip(1)
            .filter(|c| c.starts_with(&format!("{name}\n")))
            .collect();
        assert!(
            cases.iter().any(|c| c.contains("exp_alerts: []")),
            "{name} has no non-firing case"
        );
        assert!(
            cases.iter().any(|c| c.contains("exp_labels")),
            "{name} has no firing case"
        );
    }
}

async fn raw_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String) {
    try_get(addr, path, accept)
        .await
        .unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

/// A GET that returns `None` while nothing listens yet.
async fn try_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> Option<(String, String)> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n{accept}\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let (head, body) = buf.split_once("\r\n\r\n")?;
    Some((head.to_owned(), body.to_owned()))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_pass_promtool_check_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let (head, body) = raw_get(server.metrics_addr(), "/metrics", None).await;
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    let mut promtool = tokio::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool must be installed (apt-get install prometheus)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .await
        .unwrap();
    let out = promtool.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The contract's metrics, process metrics, queue depths and flush durations are there.
    for name in [
        "tellijn_room_occupancy{",
        "tellijn_room_capacity{",
        "tellijn_building_occupancy{",
        "tellijn_messages_total{",
        "tellijn_rejected_messages_total{",
        "tellijn_sensor_online{",
        "tellijn_sensor_seq_gaps_total{",
        "tellijn_processing_latency_seconds_bucket{",
        "tellijn_mqtt_connections ",
        "tellijn_auth_failures_total{",
        "tellijn_queue_depth{stage=\"processors_in\"}",
        "tellijn_flush_duration_seconds_bucket{",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "process_open_fds ",
        "tellijn_data_disk_free_bytes ",
    ] {
        assert!(body.contains(name), "{name} missing from /metrics");
    }
    // Label values come from the config only: rooms, buildings and sensors are the campus's.
    for l in body.lines().filter(|l| l.contains("room=\"")) {
        assert!(
            l.contains("room=\"r1\"") || l.contains("room=\"r2\""),
            "unexpected room label: {l}"
        );
    }
    // Prometheus asks for OpenMetrics and gets it.
    let (head, body) = raw_get(
        server.metrics_addr(),
        "/metrics",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"),
    )
    .await;
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(body.trim_end().ends_with("# EOF"));
    server.stop().await.unwrap();
}

fn encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Expands the Grafana PostgreSQL macros the dashboards use, for a window around now.
fn expand_sql(sql: &str) -> String {
    let from = (Utc::now() - TimeDelta::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let to = (Utc::now() + TimeDelta::days(2)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut s = sql.replace(
        "$__timeFilter(minute)",
        &format!("minute BETWEEN '{from}' AND '{to}'"),
    );
    s = s.replace("$__timeFrom()", &format!("'{from}'"));
    s = s.replace("$__timeTo()", &format!("'{to}'"));
    s = s.replace(
        "$__timeGroupAlias(minute, '1h')",
        "floor(extract(epoch from minute)/3600)*3600 AS \"time\"",
    );
    assert!(!s.contains("$__"), "an unexpanded macro: {s}");
    s
}

async fn psql(addr: &str, sql: &str) -> (bool, String, String) {
    let out = tokio::process::Command::new("psql")
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", addr, "-c", sql])
        .output()
        .await
        .expect("psql must be installed (apt-get install postgresql-client)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_answers_against_real_prometheus_and_sql() {
    tokio::time::timeout(Duration::from_secs(400), dashboard_queries())
        .await
        .expect("the dashboard test took over 400 s");
}

async fn dashboard_queries() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A demo as a user starts it, on ephemeral ports, from early morning: before the first
    // lectures every lecture hall is empty for the whole hour, so the "empty lecture-hall
    // hours" panel has rows whatever the timetable draws.
    let args = ["--sensors", "60", "--speed", "60", "--start", "06:00"];
    let (mut demo, printed) = crate::common::demo(&data, &args).await;
    let (mut metrics, mut pg, mut prom_cfg) = (None, None, None);
    for l in &printed {
        if let Some(rest) = l.strip_prefix("Metrics    http://") {
            metrics = rest.strip_suffix("/metrics").map(str::to_owned);
        }
        if let Some(rest) = l.strip_prefix("PostgreSQL psql \"") {
            pg = rest.split('"').next().map(str::to_owned);
        }
        if let Some(rest) = l.strip_prefix("Prometheus prometheus --config.file=") {
            prom_cfg = rest.split(' ').next().map(PathBuf::from);
        }
    }
    let (metrics, pg, prom_cfg) = (metrics.unwrap(), pg.unwrap(), prom_cfg.unwrap());
    let cfg = std::fs::read_to_string(&prom_cfg).unwrap();
    assert!(cfg.contains(&metrics), "{cfg}");
    // The generated config, scraping every second for the test.
    std::fs::write(
        &prom_cfg,
        cfg.replace("scrape_interval: 5s", "scrape_interval: 1s"),
    )
    .unwrap();

    let port = free_port();
    let prom_addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let _prometheus = tokio::process::Command::new("prometheus")
        .arg(format!("--config.file={}", prom_cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("tsdb").display()
        ))
        .arg(format!("--web.listen-address={prom_addr}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("prometheus must be installed (apt-get install prometheus)");

    let query = |q: String| async move {
        match try_get(
            prom_addr,
            &format!("/api/v1/query?query={}", encode(&q)),
            None,
        )
        .await
        {
            Some((_, body)) => serde_json::from_str::<Value>(&body).unwrap_or(Value::Null),
            None => Value::Null,
        }
    };
    // Prometheus is up, has loaded Tellijn's rules and has scraped the demo for a while.
    assert!(
        wait_for(120, || {
            async move {
                query("count_over_time(up{job=\"tellijn\"}[1m]) >= 10".into()).await["data"]
                    ["result"]
                    .as_array()
                    .is_some_and(|r| !r.is_empty())
            }
        })
        .await,
        "Prometheus never scraped the demo"
    );
    let (_, rules) = raw_get(prom_addr, "/api/v1/rules", None).await;
    assert!(rules.contains("TellijnPayloadRejected"), "{rules}");

    for (file, title, kind, q) in queries() {
        // Some series appear only after the first messages and flushes: retry for a while.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        if kind == "prometheus" {
            let q = q.replace("$__rate_interval", "15s");
            loop {
                let r = query(q.clone()).await;
                if r["status"] == "success"
                    && r["data"]["result"]
                        .as_array()
                        .is_some_and(|r| !r.is_empty())
                {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{file}: {title}: {q} returned no series: {r}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        } else {
            let sql = expand_sql(&q);
            loop {
                let (ok, rows, err) = psql(&pg, &sql).await;
                if ok && !rows.trim().is_empty() {
                    break;
                }
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "{file}: {title}: no rows over PostgreSQL:\n{sql}\n{rows}\n{err}"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
    let _ = demo.kill().await;
}
