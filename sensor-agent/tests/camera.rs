//! The camera source's process handling, with a stand-in counter (a shell script) so these
//! tests do not depend on the real one: the capture command's stdout reaches the counter
//! directly (the agent holds no end of that pipe), a counter that dies is restarted with its
//! capture command and the restart counted, a capture that ends lets the counter finish, and
//! stopping the source stops both. `tests/e2e/camera_e2e.rs` runs the real `tellijn-counter`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tellijn_agent::camera;
use tellijn_agent::config::{SourceConfig, SourceKind};
use tellijn_wire::StatusMessage;

/// A counter stand-in: writes its pid and arguments, one crossing per line of input, and a
/// status line at the end of its input.
const FAKE_COUNTER: &str = r#"#!/bin/sh
echo $$ >> "$(dirname "$0")/pids"
echo "$@" > "$(dirname "$0")/args"
echo "fake counter starting" >&2
n=0
while read -r frame; do
  n=$((n + 1))
  echo '{"line":"main","dir":"in"}'
done
echo "{\"status\":{\"frames\":$n,\"processed\":$n,\"dropped_behind\":0,\"dropped_late\":0,\"lifetime_p99_us\":1000,\"lifetime_max_us\":2000,\"privacy_level\":2}}"
"#;

fn fake(dir: &Path) -> PathBuf {
    let p = dir.join("fake-counter");
    std::fs::write(&p, FAKE_COUNTER).unwrap();
    std::process::Command::new("chmod")
        .args(["+x", p.to_str().unwrap()])
        .status()
        .unwrap();
    p
}

fn source(dir: &Path, capture: &[&str]) -> SourceConfig {
    SourceConfig {
        kind: SourceKind::Camera,
        lines: vec!["main".into()],
        zones: vec![],
        seed: None,
        counter: Some(dir.join("counter.toml")),
        counter_bin: Some(fake(dir)),
        capture: Some(capture.iter().map(|s| s.to_string()).collect()),
    }
}

fn pids(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Waits until `cond` holds, for at most `secs`.
async fn until(secs: u64, mut cond: impl FnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}

fn alive(pid: u32) -> bool {
    // A zombie has exited; only a running process counts.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, r)| r.trim_start().to_owned()))
        .is_some_and(|r| !r.starts_with('Z') && !r.starts_with('X'))
}

fn link(p: impl AsRef<Path>) -> Option<String> {
    std::fs::read_link(p)
        .ok()
        .map(|l| l.to_string_lossy().into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_counter_is_restarted_with_its_capture_and_the_pipe_bypasses_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    // Two "frames", then the capture stays open, as a live stream does.
    let (cam, task) = camera::start(&source(
        dir.path(),
        &["sh", "-c", "printf 'f1\\nf2\\n'; exec sleep 60"],
    ));
    let crossings = std::sync::Arc::new(std::sync::Mutex::new(0u32));
    let seen = |want: u32| {
        let r = cam.agg.lock().unwrap().take();
        let mut c = crossings.lock().unwrap();
        *c += r.lines[0].0;
        *c >= want
    };
    assert!(until(10, || seen(2)).await, "the two crossings never came");
    let first = pids(dir.path());
    assert_eq!(first.len(), 1, "{first:?}");
    let counter = first[0];
    assert_eq!(
        std::fs::read_to_string(dir.path().join("args"))
            .unwrap()
            .trim(),
        format!("--config {}", dir.path().join("counter.toml").display())
    );

    // The counter's stdin is a pipe that no descriptor of the agent's process refers to.
    let stdin = link(format!("/proc/{counter}/fd/0")).unwrap();
    assert!(stdin.starts_with("pipe:"), "{stdin}");
    let ours: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .flatten()
        .filter_map(|e| link(e.path()))
        .collect();
    assert!(
        !ours.contains(&stdin),
        "the agent holds an end of the frame pipe {stdin}: {ours:?}"
    );

    let mut s = StatusMessage::default();
    cam.fill_status(&mut s);
    assert_eq!(s.counter_restarts, Some(0));

    // Kill the counter: the capture is stopped, both come back after about a second.
    let capture_pid = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .find(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\x0060"))
                && link(format!("/proc/{p}/fd/1")).as_deref() == Some(stdin.as_str())
        })
        .expect("the capture (sleep 60) writing into the counter's pipe");
    std::process::Command::new("kill")
        .args(["-KILL", &counter.to_string()])
        .status()
        .unwrap();
    assert!(
        until(10, || pids(dir.path()).len() == 2).await,
        "the counter was not restarted"
    );
    assert!(!alive(capture_pid), "the old capture still runs");
    assert!(
        until(10, || seen(4)).await,
        "no crossings after the restart"
    );
    let mut s = StatusMessage::default();
    cam.fill_status(&mut s);
    assert_eq!(s.counter_restarts, Some(1));
    // The killed run never printed a status line.
    assert_eq!(s.frames, None);

    // Stopping the source stops the children.
    let second = pids(dir.path())[1];
    assert!(alive(second));
    task.abort();
    let _ = task.await;
    assert!(
        until(5, || !alive(second)).await,
        "the counter outlived the agent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capture_that_ends_lets_the_counter_finish_and_both_restart_with_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let (cam, task) = camera::start(&source(dir.path(), &["printf", "a\\nb\\nc\\n"]));
    let figures = || {
        let mut s = StatusMessage::default();
        cam.fill_status(&mut s);
        s
    };
    // The counter read the whole stream (3 frames) and printed its status line before it
    // ended: the capture's exit did not cut it short.
    assert!(until(10, || figures().frames.is_some()).await);
    let s = figures();
    assert_eq!(s.frames.unwrap() % 3, 0, "{s:?}");
    assert_eq!((s.frame_p99_us, s.frame_max_us), (Some(1000), Some(2000)));
    assert_eq!(s.privacy_level, Some(2));
    // Back-off: restarts after 1 s, then 2 s more (then 4 s).
    let t0 = std::time::Instant::now();
    assert!(until(10, || figures().counter_restarts == Some(2)).await);
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2500) && took < Duration::from_secs(6),
        "two restarts took {took:?}"
    );
    assert!(
        until(5, || figures().frames == Some(9)).await,
        "{:?}",
        figures()
    );
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_that_cannot_start_is_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = source(dir.path(), &["true"]);
    cfg.counter_bin = Some(dir.path().join("no-such-counter"));
    let (cam, task) = camera::start(&cfg);
    assert!(
        until(5, || {
            let mut s = StatusMessage::default();
            cam.fill_status(&mut s);
            s.counter_restarts == Some(1)
        })
        .await
    );
    task.abort();
}
