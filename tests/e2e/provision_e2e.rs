//! `tellijn sensor add` / `rotate`, as an installer runs them: the config keeps its comments,
//! the secret exists only in the file written for the camera, the real broker accepts it (and,
//! after a rotation, only the new one), every refusal leaves the config byte for byte as it was,
//! and each change is one audit line in an intact chain.

use crate::common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use common::*;

const TOPIC: &str = "tellijn/v1/sensors/s9/counts";

fn tellijn(args: &[&str], paths: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_tellijn"));
    c.args(args);
    for p in paths {
        c.arg(p);
    }
    c.output().unwrap()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `tellijn serve` as its own process (as in production: the CLI and the server are two
/// processes), on ephemeral ports; returns it and its MQTT port, read from its JSON log.
pub(crate) async fn serve(config: &Path) -> (tokio::process::Child, u16, Log) {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["serve", "--config"])
        .arg(config)
        .args(["--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--metrics", "127.0.0.1:0", "--postgres", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    let port = loop {
        let line = lines
            .next_line()
            .await
            .unwrap()
            .expect("the server ended before it listened");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        if let Some(addr) = v["fields"]["message"]
            .as_str()
            .and_then(|m| m.strip_prefix("MQTT broker listening on "))
        {
            break addr
                .trim_end_matches('.')
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .port();
        }
    };
    let log = Log::default();
    let kept = log.clone();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            if l.contains("\"ERROR\"") {
                eprintln!("server: {l}");
            }
            kept.0.lock().unwrap().push(l);
        }
    });
    (child, port, log)
}

/// The server's log lines (JSON) so far.
#[derive(Clone, Default)]
pub(crate) struct Log(std::sync::Arc<std::sync::Mutex<Vec<String>>>);

impl Log {
    /// Waits (up to a minute) for a line whose message starts with `prefix`; returns it.
    pub(crate) async fn wait_for(&self, prefix: &str) -> serde_json::Value {
        let found = || {
            let lines = self.0.lock().unwrap();
            lines
                .iter()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| {
                    v["fields"]["message"]
                        .as_str()
                        .is_some_and(|m| m.starts_with(prefix))
                })
        };
        assert!(
            wait_for(60, || async { found().is_some() }).await,
            "the server never logged {prefix:?}: {:?}",
            self.0.lock().unwrap()
        );
        found().unwrap_or_default()
    }
}

/// SIGHUP: the server reads its config again.
pub(crate) fn hangup(child: &tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let hup = Command::new("kill").args(["-HUP", &pid]).status().unwrap();
    assert!(hup.success());
}

/// SIGINT, and the server's clean exit.
pub(crate) async fn stop(mut child: tokio::process::Child) {
    let pid = child.id().unwrap().to_string();
    let _ = Command::new("kill").args(["-INT", &pid]).status();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "the server's exit: {status}");
}

fn s9_msg(seq: u64) -> String {
    line_msg(seq, 1, 0).replace("\"sensor\":\"s1\"", "\"sensor\":\"s9\"")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sensors_are_added_and_rotated_without_touching_a_secret_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("campus.toml");
    let original = format!(
        "# Our campus. Keep this comment.\n{}\n# The end of the file, kept too.\n",
        campus_text(&data, "200ms", "")
    );
    std::fs::write(&config, &original).unwrap();
    let out = dir.path().join("s9");

    // Refused, and nothing changes: a taken id, an unknown room, a bad spec, no line or zone.
    for (args, why) in [
        (
            vec!["sensor", "add", "s1", "--line", "main:r1"],
            "is already used",
        ),
        (
            vec!["sensor", "add", "s9", "--line", "main:nowhere"],
            "nowhere",
        ),
        (vec!["sensor", "add", "s9", "--line", "main"], "LINE:INTO"),
        (vec!["sensor", "add", "s9"], "at least one --line"),
    ] {
        let mut a = args.clone();
        a.extend(["--broker", "mqtt://127.0.0.1:1883", "--config"]);
        let o = tellijn(&a, &[&config, Path::new("--out"), &out]);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(err(&o).contains(why), "{args:?}: {}", err(&o));
        assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
        assert!(!out.join("secret").exists(), "{args:?} left a secret");
    }

    // Added.
    let o = Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args([
            "sensor", "add", "s9", "--line", "main:r1", "--zone", "seats:r2",
        ])
        .args(["--broker", "mqtt://127.0.0.1:1883", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    let text = std::fs::read_to_string(&config).unwrap();
    // One block of new lines, after the last [[sensors]]; every other byte as it was.
    let at = original
        .bytes()
        .zip(text.bytes())
        .take_while(|(a, b)| a == b)
        .count();
    let added = &text[at..at + text.len() - original.len()];
    assert_eq!(
        format!("{}{}", &text[..at], &text[at + added.len()..]),
        original,
        "the config's other bytes changed:\n{text}"
    );
    assert!(
        added.contains("[[sensors]]") && added.contains("id = \"s9\""),
        "{added}"
    );
    let secret = std::fs::read_to_string(out.join("secret")).unwrap();
    let secret = secret.trim();
    assert_eq!(secret.len(), 64);
    assert!(!text.contains(secret), "the config holds the secret");
    for f in ["secret", "agent.toml"] {
        let mode = std::fs::metadata(out.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "{f} is readable by others: {mode:o}");
    }
    let agent = tellijn_agent::AgentConfig::load(&out.join("agent.toml")).unwrap();
    assert_eq!(agent.sensor, "s9");
    let check = tellijn(&["check-config"], &[&config]);
    assert!(check.status.success(), "{}", err(&check));
    // The output files are never overwritten.
    let again = Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["sensor", "add", "s8", "--line", "main:r1"])
        .args(["--broker", "mqtt://127.0.0.1:1883", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(
        err(&again).contains("nothing is overwritten"),
        "{}",
        err(&again)
    );
    assert_eq!(std::fs::read_to_string(&config).unwrap(), text);

    // The real broker takes the new sensor's secret.
    let (server, port, log) = serve(&config).await;
    assert!(
        mosquitto_pub(
            port,
            Some(("s9", secret)),
            "s9",
            TOPIC,
            Payload::Text(&s9_msg(1))
        )
        .await
    );
    // Rotated while the server runs: one line of the config changes, the audit line waits in
    // the server's inbox, and nothing changes for the server until it is reloaded.
    let rot = dir.path().join("s9-new");
    let o = Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(["sensor", "rotate", "s9", "--config"])
        .arg(&config)
        .arg("--out")
        .arg(&rot)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("once reloaded (`systemctl reload tellijn`"),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let rotated = std::fs::read_to_string(&config).unwrap();
    let changed: Vec<(&str, &str)> = text
        .lines()
        .zip(rotated.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].0.starts_with("secret_hash = \"$argon2id$"));
    let new_secret = std::fs::read_to_string(rot.join("secret")).unwrap();
    let new_secret = new_secret.trim();
    assert_ne!(new_secret, secret);
    assert_eq!(
        std::fs::read_dir(data.join("audit").join("inbox"))
            .unwrap()
            .count(),
        1,
        "one queued audit line"
    );
    assert!(
        mosquitto_pub(
            port,
            Some(("s9", secret)),
            "s9",
            TOPIC,
            Payload::Text(&s9_msg(2))
        )
        .await,
        "before the reload the old secret is still the one in force"
    );
    // Reloaded: the old secret is refused, the new one taken.
    hangup(&server);
    log.wait_for("Reloaded the config").await;
    assert!(
        !mosquitto_pub(
            port,
            Some(("s9", secret)),
            "s9",
            TOPIC,
            Payload::Text(&s9_msg(3))
        )
        .await,
        "the old secret still works after the reload"
    );
    assert!(
        mosquitto_pub(
            port,
            Some(("s9", new_secret)),
            "s9",
            TOPIC,
            Payload::Text(&s9_msg(3))
        )
        .await
    );
    stop(server).await;

    // Audited: add, then the rotation (queued while the server ran, recorded by it before
    // the reload that put it in force), never a secret or a hash; the chain is intact.
    let lines = audit_lines(&data);
    let actions: Vec<_> = lines
        .iter()
        .filter_map(|l| match l["event"].as_str() {
            Some("sensor_provisioned") => Some(l),
            Some("queued") => Some(&l["queued"]),
            _ => None,
        })
        .map(|l| (l["sensor"].as_str(), l["action"].as_str()))
        .collect();
    assert_eq!(
        actions,
        vec![(Some("s9"), Some("add")), (Some("s9"), Some("rotate"))]
    );
    let kinds: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    let queued_at = kinds.iter().position(|k| *k == "queued").unwrap();
    assert_eq!(
        kinds[queued_at + 1..]
            .iter()
            .find(|k| k.starts_with("config_")),
        Some(&"config_loaded"),
        "the queued line comes before the reload: {kinds:?}"
    );
    let new_hash = tellijn_config::Campus::load(&config).unwrap().hash();
    let loaded = lines
        .iter()
        .rev()
        .find(|l| l["event"] == "config_loaded")
        .unwrap();
    assert_eq!(loaded["config_sha256"], new_hash.as_str());
    assert!(
        loaded["source"].as_str().unwrap().ends_with("(reload)"),
        "{loaded}"
    );
    assert_eq!(
        std::fs::read_dir(data.join("audit").join("inbox"))
            .unwrap()
            .count(),
        0,
        "the inbox is empty again"
    );
    let raw = std::fs::read_dir(data.join("audit"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(!raw.contains(secret) && !raw.contains(new_secret) && !raw.contains("$argon2id$"));
    let v = tellijn(&["audit", "verify", "--data"], &[&data]);
    assert!(v.status.success(), "{}", err(&v));
}
