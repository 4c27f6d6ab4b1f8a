//! A full disk under the data directory, for real: a small tmpfs mounted there, filled up while
//! the real agent keeps sending over MQTT. Nothing is acknowledged that is not stored, the
//! server says what is wrong (`/healthz` 503, `tellijn_storage_failing`), a named read that
//! cannot be audited is refused, the audit chain stays intact, and once space returns every
//! count is stored exactly once.
//!
//! Needs root (or CAP_SYS_ADMIN) for `mount -t tmpfs`; without it the test says so and passes
//! without running.

use crate::common;

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use tellijn_agent::outbox::Outbox;
use tellijn_config::metrics::{WhatLabels, storage};
use tellijn_wire::Clock;
use tokio::sync::watch;

/// Unmounts the tmpfs when the test ends, however it ends.
struct Mounted(PathBuf);

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Mounts a tmpfs of `size` at `dir`, or `None` where mounting is not permitted.
fn mount_tmpfs(dir: &Path, size: &str) -> Option<Mounted> {
    std::fs::create_dir_all(dir).unwrap();
    let ok = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    ok.then(|| Mounted(dir.to_path_buf()))
}

/// Fills the filesystem of `dir` until not one more byte fits; returns the filler's path.
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    for chunk in [1 << 16, 1 << 12, 1 << 8, 1] {
        let buf = vec![0u8; chunk];
        while f.write_all(&buf).is_ok() {}
    }
    let _ = f.flush();
    path
}

fn stop_signal(rx: &watch::Receiver<bool>) -> impl std::future::Future<Output = ()> + use<> {
    let mut rx = rx.clone();
    async move {
        let _ = rx.wait_for(|s| *s).await;
    }
}

/// GET with optional Basic credentials: (status, body).
async fn get(addr: SocketAddr, path: &str, basic: Option<&str>) -> (u16, String) {
    http_basic(addr, path, basic).await
}

/// A running agent's (watermark, next seq), read without opening (and so repairing) its outbox.
fn outbox(path: &Path) -> (u64, u64) {
    Outbox::peek(path)
        .map(|(next, acked)| (acked, next))
        .unwrap_or((0, 0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_acks_nothing_unstored_says_so_and_recovers_without_loss() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let Some(_mounted) = mount_tmpfs(&data, "8m") else {
        eprintln!(
            "SKIPPED a_full_disk_acks_nothing_unstored_says_so_and_recovers_without_loss: \
             `mount -t tmpfs` is not permitted here (run as root or with CAP_SYS_ADMIN)"
        );
        return;
    };
    let users = format!(
        "\n[[users]]\nname = \"ada\"\npassword_hash = \"{}\"\nrole = \"steward\"\n",
        tellijn::secrets::hash_demo("ada-password").unwrap()
    );
    let text = format!("{}{users}", campus_text(&data, "200ms", ""));
    let server = start_text(&data, &text, "127.0.0.1:0").await;
    let http = server.http_addr();
    let ada = Some("ada:ada-password");
    assert_eq!(get(http, "/api/v1/rooms", ada).await.0, 200);

    // The real agent, its outbox on another disk, sending every 20 ms.
    let cfg = agent_config(
        &dir.path().join("agent"),
        &format!("mqtt://{}", server.mqtt_addr()),
        20,
    );
    let (stop_tx, stop_rx) = watch::channel(false);
    let agent = {
        let cfg = cfg.clone();
        let stop = stop_signal(&stop_rx);
        tokio::spawn(
            async move { tellijn_agent::run(&cfg, S1_SECRET, Clock::system(), stop).await },
        )
    };
    assert!(
        wait_for(20, || async { outbox(&cfg.outbox).0 > 5 }).await,
        "the agent was never acknowledged"
    );

    // The disk fills up.
    let filler = fill(&data);
    let (status, body) = {
        let failing = || async {
            let (s, b) = get(http, "/healthz", None).await;
            s == 503 && b.contains("history")
        };
        assert!(
            wait_for(20, failing).await,
            "/healthz never said the disk is full"
        );
        get(http, "/healthz", None).await
    };
    assert_eq!(status, 503);
    assert!(body.contains("No space left on device"), "{body}");
    let history = WhatLabels {
        what: storage::HISTORY,
    };
    assert!(server.metrics.health.errors.get_or_create(&history).get() > 0);
    assert_eq!(
        server.metrics.health.failing.get_or_create(&history).get(),
        1
    );

    // While it is full, nothing is acknowledged beyond what is stored, and nothing new is
    // stored, though the agent keeps sending.
    let (_, _, stored_full, _, _) = stored(&data).await;
    let (_, sent_when_full) = outbox(&cfg.outbox);
    let mut sent_meanwhile = sent_when_full;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    while tokio::time::Instant::now() < deadline || sent_meanwhile < sent_when_full + 30 {
        let (acked, next) = outbox(&cfg.outbox);
        let (rows, distinct, max, _, _) = stored(&data).await;
        assert!(acked <= max, "seq {acked} acknowledged, only {max} stored");
        assert_eq!(
            (rows, distinct, max),
            (stored_full, stored_full, stored_full)
        );
        sent_meanwhile = next;
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            tokio::time::Instant::now() < deadline + Duration::from_secs(20),
            "the agent stopped sending"
        );
    }
    // A named read must be audited first; once the audit log cannot take a line, the read is
    // refused (the audit file's last page may take a few lines before that).
    let mut refused = false;
    for _ in 0..200 {
        let (s, b) = get(http, "/api/v1/rooms", ada).await;
        if s == 503 {
            assert!(b.contains("audit log"), "{b}");
            refused = true;
            break;
        }
        assert_eq!(s, 200);
    }
    assert!(refused, "a read was served that could not be audited");
    assert!(get(http, "/healthz", None).await.1.contains("audit"));

    // Space returns: the server says so and catches up, losing nothing.
    std::fs::remove_file(&filler).unwrap();
    let healthy = || async { get(http, "/healthz", None).await == (200, "ok\n".to_owned()) };
    assert!(
        wait_for(20, || async {
            // A written audit line clears the audit's failure; a named read writes one.
            let _ = get(http, "/api/v1/rooms", ada).await;
            healthy().await
        })
        .await
    );
    assert_eq!(
        server.metrics.health.failing.get_or_create(&history).get(),
        0
    );
    let caught_up = || async { outbox(&cfg.outbox).0 >= sent_meanwhile };
    assert!(
        wait_for(20, caught_up).await,
        "the backlog was not acknowledged"
    );
    let _ = stop_tx.send(true);
    let totals = agent.await.unwrap().unwrap();
    assert_eq!(totals.unacked, 0);
    server.stop().await.unwrap();

    // Every count exactly once, including those sent while the disk was full.
    let (rows, distinct, max, sum_in, sum_out) = stored(&data).await;
    assert!(
        max >= sent_meanwhile,
        "stored up to {max}, sent {sent_meanwhile}"
    );
    assert_eq!((rows, distinct), (max, max), "lost or doubled counts");
    assert_eq!((sum_in, sum_out), truth(max));
    // The audit log's chain survived the failed writes: no torn line.
    let chain = tellijn_config::audit::verify(&data).unwrap();
    assert!(chain.lines > 0);
}
