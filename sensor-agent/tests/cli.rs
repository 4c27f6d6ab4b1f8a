//! The `tellijn-agent` binary as an operator meets it. (Having an integration test here also
//! makes `cargo test --workspace` build the binary that the root crate's crash tests run.)

use std::process::Command;

#[test]
fn bad_config_is_a_readable_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.toml");
    std::fs::write(&p, "sensor = \"Bad Id\"\nbroker = \"mqtt://127.0.0.1:1\"\nsecret_file = \"s\"\noutbox = \"o\"\n[source]\nkind = \"simulated\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tellijn-agent"))
        .args(["--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("agent.toml") && err.contains("sensor must be an id"),
        "{err}"
    );
}

#[test]
fn missing_secret_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("agent.toml");
    std::fs::write(&p, "sensor = \"s1\"\nbroker = \"mqtt://127.0.0.1:1\"\nsecret_file = \"nope\"\noutbox = \"o\"\n[source]\nkind = \"simulated\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tellijn-agent"))
        .args(["--config", p.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
}
