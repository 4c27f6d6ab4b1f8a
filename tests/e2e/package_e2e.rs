//! The Debian packages as an operator installs them: `cargo deb` builds `tellijn` and
//! `tellijn-camera` from this build's binaries, `dpkg -i` installs them on this machine, the
//! installed `tellijn` checks and serves the default `/etc/tellijn/campus.toml` as the `tellijn`
//! user with its data in `/var/lib/tellijn`, `systemd-analyze security --offline=yes` rates both
//! units, and `dpkg --purge` leaves nothing behind.
//!
//! Needs root (dpkg) and `cargo deb` (`bash .ci/test --install-only` installs it). It refuses to
//! touch a machine where Tellijn is installed already.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::http_get;

async fn run(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

async fn ok(program: &str, args: &[&str]) -> String {
    let (success, text) = run(program, args).await;
    assert!(success, "{program} {args:?}:\n{text}");
    text
}

/// `systemd-analyze security --offline=yes`'s overall exposure of a unit file (0 best, 10 worst).
async fn exposure(unit: &str) -> f64 {
    let text = ok(
        "systemd-analyze",
        &["security", "--offline=yes", "--no-pager", unit],
    )
    .await;
    text.lines()
        .find_map(|l| l.split("Overall exposure level for ").nth(1))
        .and_then(|rest| rest.split(": ").nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"))
}

struct Purge;

impl Drop for Purge {
    fn drop(&mut self) {
        let _ = std::process::Command::new("dpkg")
            .args(["--purge", "tellijn-camera", "tellijn"])
            .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_packages_install_serve_the_default_config_and_purge_cleanly() {
    tokio::time::timeout(Duration::from_secs(300), packages())
        .await
        .expect("the package test took over 5 minutes");
}

async fn packages() {
    assert!(
        rustix::process::geteuid().is_root(),
        "installing packages needs root: run the tests as root, or skip this one with `-- --skip package_e2e`"
    );
    let (installed, _) = run("dpkg-query", &["-W", "-f=${Status}", "tellijn"]).await;
    let (camera, _) = run("dpkg-query", &["-W", "-f=${Status}", "tellijn-camera"]).await;
    assert!(
        !installed && !camera,
        "Tellijn is installed on this machine already; this test installs and purges its packages, so it will not run here"
    );
    assert!(
        !Path::new("/etc/tellijn").exists() && !Path::new("/var/lib/tellijn").exists(),
        "/etc/tellijn or /var/lib/tellijn exists; this test would purge them"
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    // This build's binaries (debug: a release build takes half an hour here); `cargo deb`
    // without --no-build --profile dev makes the release packages (packaging/README.md).
    for package in ["tellijn", "tellijn-agent"] {
        let text = ok(
            "cargo",
            &[
                "deb",
                "--manifest-path",
                &format!("{root}/Cargo.toml"),
                "-p",
                package,
                "--no-build",
                "--profile",
                "dev",
                "--fast",
                "-Z",
                "gz",
                "--compress-system",
                "-o",
                out,
            ],
        )
        .await;
        assert!(text.contains(".deb"), "{text}");
    }
    let server = format!("{out}/tellijn_0.1.0-1_amd64.deb");
    let camera = format!("{out}/tellijn-camera_0.1.0-1_amd64.deb");
    let _purge = Purge;
    ok("dpkg", &["-i", &server, &camera]).await;

    // What the packages put where.
    for f in [
        "/usr/bin/tellijn",
        "/usr/bin/tellijn-agent",
        "/usr/bin/tellijn-counter",
        "/usr/lib/systemd/system/tellijn.service",
        "/usr/lib/systemd/system/tellijn-camera.service",
        "/usr/share/doc/tellijn/PRIVACY.md",
        "/usr/share/tellijn/grafana/dashboards/campus-now.json",
    ] {
        assert!(Path::new(f).is_file(), "{f} missing");
    }
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", "tellijn"]).await;
    assert!(
        conffiles.contains("/etc/tellijn/campus.toml"),
        "{conffiles}"
    );
    let ls = ok(
        "stat",
        &[
            "-c",
            "%U:%G %a %n",
            "/etc/tellijn/campus.toml",
            "/var/lib/tellijn",
            "/var/lib/tellijn-agent/outbox",
        ],
    )
    .await;
    assert_eq!(
        ls.lines().collect::<Vec<_>>(),
        [
            "root:tellijn 640 /etc/tellijn/campus.toml",
            "tellijn:tellijn 750 /var/lib/tellijn",
            "tellijn:tellijn 700 /var/lib/tellijn-agent/outbox",
        ]
    );

    // The installed binary checks and serves the installed config, as the service's user.
    let checked = ok(
        "/usr/bin/tellijn",
        &["check-config", "/etc/tellijn/campus.toml"],
    )
    .await;
    assert!(checked.contains("OK"), "{checked}");
    let mut serve = Command::new("runuser")
        .args([
            "-u",
            "tellijn",
            "--",
            "/usr/bin/tellijn",
            "--log-format",
            "json",
            "serve",
        ])
        .args(["--config", "/etc/tellijn/campus.toml"])
        .args([
            "--http",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
            "--metrics",
            "127.0.0.1:0",
        ])
        .args(["--postgres", "127.0.0.1:0"])
        .current_dir("/")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(serve.stderr.take().unwrap()).lines();
    let http = tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(l) = lines.next_line().await.unwrap() {
            let v: serde_json::Value =
                serde_json::from_str(&l).unwrap_or_else(|_| panic!("not JSON: {l}"));
            if let Some(rest) = v["fields"]["message"]
                .as_str()
                .and_then(|m| m.strip_prefix("HTTP listening on http://"))
            {
                return rest
                    .trim_end_matches("/.")
                    .parse::<std::net::SocketAddr>()
                    .unwrap();
            }
        }
        panic!("the installed server exited before listening");
    })
    .await
    .expect("the installed server did not start");
    let (reloaded_tx, reloaded) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut tx = Some(reloaded_tx);
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("holds the config already in force")
                && let Some(t) = tx.take()
            {
                let _ = t.send(());
            }
        }
    });
    assert_eq!(http_get(http, "/healthz").await.trim(), "ok");
    assert!(http_get(http, "/").await.contains("Free study places"));
    let rooms = http_get(http, "/api/v1/rooms").await;
    assert!(rooms.contains("lib-study"), "{rooms}");
    // `systemctl reload`: the installed unit's ExecReload lines, run as systemd runs them.
    let pid = serve.id().unwrap();
    let main_pid = ok("pgrep", &["-P", &pid.to_string()]).await;
    let unit = std::fs::read_to_string("/usr/lib/systemd/system/tellijn.service").unwrap();
    let reload: Vec<&str> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("ExecReload="))
        .collect();
    assert_eq!(reload.len(), 2, "{unit}");
    for line in reload {
        let line = line.replace("$MAINPID", main_pid.trim());
        let mut words = line.split_whitespace();
        let program = words.next().unwrap();
        ok(program, &words.collect::<Vec<_>>()).await;
    }
    tokio::time::timeout(Duration::from_secs(60), reloaded)
        .await
        .expect("the installed server did not reload")
        .unwrap();
    // SIGTERM (what systemctl stop sends): it drains, stores and exits 0.
    ok("pkill", &["-TERM", "-P", &pid.to_string()]).await;
    let status = tokio::time::timeout(Duration::from_secs(60), serve.wait())
        .await
        .expect("the server did not stop on SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let audit = ok("stat", &["-c", "%U", "/var/lib/tellijn/audit"]).await;
    assert_eq!(
        audit.trim(),
        "tellijn",
        "the data belong to the service's user"
    );

    // Both units as systemd would rate them (below 2.0 is "OK" in its words).
    for unit in ["tellijn.service", "tellijn-camera.service"] {
        let e = exposure(&format!("/usr/lib/systemd/system/{unit}")).await;
        assert!(e <= 2.0, "{unit}: exposure {e}");
    }

    // Purge leaves nothing: no config, no data, no user.
    ok("dpkg", &["--purge", "tellijn-camera", "tellijn"]).await;
    for p in [
        "/usr/bin/tellijn",
        "/etc/tellijn",
        "/var/lib/tellijn",
        "/var/lib/tellijn-agent",
    ] {
        assert!(!Path::new(p).exists(), "{p} left after purge");
    }
    let (user, _) = run("id", &["tellijn"]).await;
    assert!(!user, "the tellijn user is left after purge");
}
