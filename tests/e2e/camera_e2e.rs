//! The `camera` source end to end, with the real programs: `tellijn-scene` (a synthetic
//! doorway, Y4M on stdout) as the capture command, piped by the agent straight into the real
//! `tellijn-counter`, whose crossings reach the real server as count messages and whose status
//! lines reach it inside the agent's status (through the broker's gate, which parses them as
//! strictly as counts). Killing the counter makes the agent restart it, and say so.
//!
//! Needs `cargo build -p tellijn-counter -p tellijn-scene -p tellijn-agent` (`.ci/test` and
//! `cargo test --workspace` build them).

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use common::*;

/// A binary of this workspace beside the test's target directory.
fn built(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with cargo build -p {name}",
        bin.display()
    );
    bin
}

/// Processes whose parent is `parent` and whose command name is `comm`.
fn children(parent: u32, comm: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // pid (comm) state ppid …; comm may hold spaces, so split at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let name = &stat[open + 1..close];
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().unwrap_or("");
        let ppid: u32 = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        // `comm` is cut to 15 bytes by the kernel.
        if ppid == parent && comm.starts_with(name) && state != "Z" {
            out.push(pid);
        }
    }
    out
}

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn write_agent(dir: &Path, broker: &str, scene: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("secret"), S1_SECRET).unwrap();
    // Paced as a live camera (15 fps), so the counter does not fall behind.
    let capture = [
        scene.to_str().unwrap(),
        "--scenario",
        "single",
        "--people",
        "6",
        "--seed",
        "3",
        "--realtime",
    ];
    let capture = capture
        .iter()
        .map(|a| format!("{a:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    std::fs::write(
        dir.join("agent.toml"),
        format!(
            "sensor = \"s1\"\nbroker = \"mqtt://{broker}\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\ninterval = \"200ms\"\n[source]\nkind = \"camera\"\ncounter = \"counter.toml\"\ncapture = [{capture}]\nlines = [\"main\"]\n"
        ),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_runs_the_real_counter_behind_a_capture_and_restarts_it_when_killed() {
    let (counter, scene, agent) = (
        built("tellijn-counter"),
        built("tellijn-scene"),
        agent_bin(),
    );
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_text(&data, &campus_text(&data, "100ms", ""), "127.0.0.1:0").await;
    let a = dir.path().join("agent");
    write_agent(&a, &server.mqtt_addr().to_string(), &scene);
    // The scene's own counter config (line "main" across the middle) and its truth.
    let made = Command::new(&scene)
        .args(["--scenario", "single", "--people", "6", "--seed", "3"])
        .arg("--truth")
        .arg(a.join("t.json"))
        .arg("--counter-config")
        .arg(a.join("counter.toml"))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(made.success());
    let truth: serde_json::Value =
        serde_json::from_slice(&std::fs::read(a.join("t.json")).unwrap()).unwrap();
    let crossings = truth["in"].as_u64().unwrap() + truth["out"].as_u64().unwrap();
    assert!(crossings > 0, "{truth}");

    let mut child = Command::new(&agent)
        .args(["--config", a.join("agent.toml").to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the log as it comes, so a full pipe never blocks the agent.
    let log = Arc::new(Mutex::new(String::new()));
    let reader = {
        let (log, mut err) = (log.clone(), child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                log.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    let log_text = || log.lock().unwrap().clone();
    let agent_pid = child.id();

    // The agent started the counter (the one beside it) and the capture as its children.
    assert!(
        wait_for(10, || async {
            !children(agent_pid, "tellijn-counter").is_empty()
        })
        .await,
        "the agent started no counter: {}",
        log_text()
    );
    let first = children(agent_pid, "tellijn-counter")[0];
    let exe = std::fs::read_link(format!("/proc/{first}/exe")).unwrap();
    assert_eq!(exe, counter, "the counter beside the agent's executable");
    assert_eq!(children(agent_pid, "tellijn-scene").len(), 1);

    // Crossings reach the server as counts.
    assert!(
        wait_for(60, || async {
            stored(&data).await.3 + stored(&data).await.4 > 0
        })
        .await,
        "no crossing arrived: {:?}\n{}",
        stored(&data).await,
        log_text()
    );
    // The counter's status lines reach the server inside the agent's status.
    let http = server.metrics_addr();
    let m = |series: &'static str| async move { metric(&http_get(http, "/metrics").await, series) };
    assert!(
        wait_for(30, || async {
            m("tellijn_sensor_frames{sensor=\"s1\"}").await > 0.0
        })
        .await,
        "no frame figures arrived: {}",
        log_text()
    );
    let metrics = http_get(http, "/metrics").await;
    assert_eq!(
        metric(&metrics, "tellijn_sensor_privacy_level{sensor=\"s1\"}"),
        3.0
    );
    let max = metric(
        &metrics,
        "tellijn_sensor_frame_lifetime_max_seconds{sensor=\"s1\"}",
    );
    // Whether the counter kept its 200 ms promise on this (loaded, debug-built) machine is
    // the counter's own tests' business, and TellijnFrameTooOld's; here the figure must arrive.
    assert!(max > 0.0, "frame lifetime max {max} s");
    eprintln!("frame lifetime max {max} s");
    assert!(
        metrics.contains("tellijn_sensor_frame_lifetime_p99_seconds{sensor=\"s1\"}")
            && metrics.contains("tellijn_sensor_frame_drops{sensor=\"s1\"}")
    );

    // Kill the counter: the agent stops the capture, starts both again, and counts it.
    let before = m("tellijn_sensor_counter_restarts{sensor=\"s1\"}").await;
    let victims = children(agent_pid, "tellijn-counter");
    let captures = children(agent_pid, "tellijn-scene");
    assert_eq!(victims.len(), 1, "{victims:?}");
    assert!(
        Command::new("kill")
            .args(["-KILL", &victims[0].to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(
        wait_for(20, || async {
            m("tellijn_sensor_counter_restarts{sensor=\"s1\"}").await >= before + 1.0
        })
        .await,
        "the restart never reached the server: {}",
        log_text()
    );
    assert!(
        log_text().contains("The counter was killed by signal 9"),
        "{}",
        log_text()
    );
    assert!(
        wait_for(10, || async {
            children(agent_pid, "tellijn-counter")
                .iter()
                .any(|p| !victims.contains(p))
        })
        .await,
        "no new counter: {}",
        log_text()
    );
    assert!(
        wait_for(5, || async { captures.iter().all(|c| !running(*c)) }).await,
        "the capture of the killed counter still runs"
    );

    // Stop the agent: its children go with it.
    let now = children(agent_pid, "tellijn-counter");
    assert!(
        Command::new("kill")
            .args(["-INT", &agent_pid.to_string()])
            .status()
            .unwrap()
            .success()
    );
    assert!(child.wait().unwrap().success());
    reader.join().unwrap();
    assert!(
        wait_for(5, || async { now.iter().all(|p| !running(*p)) }).await,
        "a counter outlived its agent"
    );
    let log = log_text();
    eprintln!("The agent's log:\n{log}");
    // Everything the counter wrote is what the agent understands.
    assert!(!log.contains("Refused counter line"), "{log}");
    assert!(
        log.contains("Restarting the counter (restart 1 since the agent started)."),
        "{log}"
    );
    let (_, _, _, sum_in, sum_out) = stored(&data).await;
    eprintln!(
        "stored {sum_in} in / {sum_out} out; one pass of the scene holds {} in / {} out",
        truth["in"], truth["out"]
    );
    server.stop().await.unwrap();
    assert!(
        !audit_lines(&data)
            .iter()
            .any(|l| l["event"] == "publish_refused"),
        "the broker refused something the agent sent"
    );
}
