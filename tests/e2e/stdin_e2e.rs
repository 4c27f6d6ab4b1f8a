//! The `stdin` source: a local counting process writes one JSON line per crossing; the agent
//! aggregates them into count messages. Anything else on stdin is refused and never forwarded.

use crate::common;

use std::io::Write;
use std::process::{Command, Stdio};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossings_on_stdin_arrive_as_counts_and_junk_goes_nowhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start_text(&data, &campus_text(&data, "100ms", ""), "127.0.0.1:0").await;
    let a = dir.path().join("agent");
    std::fs::create_dir_all(&a).unwrap();
    std::fs::write(a.join("secret"), S1_SECRET).unwrap();
    std::fs::write(
        a.join("agent.toml"),
        format!(
            "sensor = \"s1\"\nbroker = \"mqtt://{}\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\ninterval = \"50ms\"\n[source]\nkind = \"stdin\"\nlines = [\"main\"]\n",
            server.mqtt_addr()
        ),
    )
    .unwrap();
    let mut child = Command::new(agent_bin())
        .args(["--config", a.join("agent.toml").to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("tellijn-agent is built by `cargo test --workspace`");
    {
        let mut stdin = child.stdin.take().unwrap();
        let mut input = String::new();
        for i in 0..40 {
            let dir = if i % 4 == 3 { "out" } else { "in" };
            input.push_str(&format!("{{\"line\":\"main\",\"dir\":\"{dir}\"}}\n"));
            if i % 10 == 0 {
                // What a compromised or buggy counter might try to push through.
                input.push_str("{\"line\":\"main\",\"dir\":\"in\",\"face\":\"/9j/4AAQSkZJRg\"}\n");
                input.push_str("JFIF-binary-garbage\n");
                input.push_str("{\"line\":\"back\",\"dir\":\"in\"}\n");
            }
        }
        stdin.write_all(input.as_bytes()).unwrap();
    }
    let stored_30_in = || {
        let data = data.clone();
        async move { stored(&data).await.3 == 30 }
    };
    // The server flushes every 100 ms; wait for the crossings to be stored.
    let http = server.metrics_addr();
    let seen = || async move {
        metric(
            &http_get(http, "/metrics").await,
            "tellijn_messages_total{outcome=\"accepted\"}",
        ) > 0.0
    };
    assert!(wait_for(20, seen).await);
    assert!(
        wait_for(20, stored_30_in).await,
        "the 30 crossings in never arrived: {:?}",
        stored(&data).await
    );
    assert!(
        Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap()
            .success()
    );
    let out = child.wait_with_output().unwrap();
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("Refused stdin line").count(), 12, "{log}");
    assert!(
        !log.contains("4AAQ") && !log.contains("JFIF"),
        "refused input must not be logged: {log}"
    );
    server.stop().await.unwrap();
    let (_, _, _, sum_in, sum_out) = stored(&data).await;
    assert_eq!((sum_in, sum_out), (30, 10));
    assert!(
        !audit_lines(&data)
            .iter()
            .any(|l| l["event"] == "publish_refused")
    );
}
