//! `tellijn demo` as a user runs it, then `tellijn sql` and DuckDB over the same files.

use std::process::Command;

fn tellijn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .args(args)
        .output()
        .expect("run tellijn")
}

#[test]
fn demo_writes_history_that_sql_and_duckdb_agree_on() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let data_s = data.to_str().unwrap();
    let out = tellijn(&[
        "demo",
        "--duration",
        "20s",
        "--speed",
        "60",
        "--start",
        "09:50",
        "--data",
        data_s,
        "--mqtt",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--postgres",
        "127.0.0.1:0",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("370 sensors"), "{stdout}");
    assert!(stdout.contains("Done: 370 agents"), "{stdout}");
    // 20 minutes of a campus morning, from 09:50: lectures fill, and the accuracy is printed.
    // Judged against its peer in the same run, a counter that counted nobody: on a loaded
    // machine the server hears later, and at 60x a second late is a minute of arrivals.
    let accuracy = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Accuracy: mean absolute error "))
        .unwrap_or_else(|| panic!("no accuracy line: {stdout}"));
    let mae: f64 = accuracy
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no error in: {accuracy}"));
    let zero: f64 = accuracy
        .split("counted nobody would be off by ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no peer in: {accuracy}"));
    eprintln!("Accuracy: mean absolute error {accuracy}");
    assert!(zero > 10.0, "the rooms stayed nearly empty: {stdout}");
    assert!(
        mae < 0.35 * zero,
        "occupancy is far from the truth: {stdout}"
    );
    eprintln!("{}", stdout.lines().last().unwrap_or_default());
    let people: u64 = stdout
        .split(" % of ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(people > 1000, "the campus stayed empty: {stdout}");
    // The building entrances counted pixels: the real counter on generated scenes, through the
    // camera agent (.ci/test builds tellijn-counter and tellijn-scene beside tellijn).
    assert!(
        stdout.contains("6 building entrances count pixels"),
        "{stdout}"
    );
    let cams = stdout
        .lines()
        .find(|l| l.starts_with("Cameras: 6 entrances counted "))
        .unwrap_or_else(|| panic!("no camera line: {stdout}"));
    let n: Vec<u64> = cams
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    // counted in, counted out, truth in, truth out.
    assert!(
        n.len() >= 5 && n[1] + n[2] > 0,
        "the cameras counted nobody: {cams}"
    );

    let out = tellijn(&[
        "sql",
        "--data",
        data_s,
        "--format",
        "csv",
        "SELECT count(*) AS n FROM counts",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let n: u64 = text.lines().nth(1).unwrap().trim().parse().unwrap();
    assert!(n > 0, "no counts stored: {text}");

    let script = format!(
        "import duckdb; print(duckdb.sql(\"SELECT count(*) FROM read_parquet('{}/counts/**/*.parquet', hive_partitioning=true)\").fetchall()[0][0])",
        data_s
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "DuckDB (pip install duckdb) failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let duck: u64 = String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(duck, n, "DuckDB reads a different number of rows");

    // Per-minute occupancy history for every room (20 s at speed 60 ≈ 20 simulated minutes).
    let out = tellijn(&[
        "sql",
        "--data",
        data_s,
        "--format",
        "csv",
        "SELECT count(DISTINCT room) AS rooms, count(DISTINCT minute) AS minutes, min(occupancy_min) AS lo FROM occupancy",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let v: Vec<i64> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split(',')
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(v.len(), 3, "{text}");
    assert_eq!(v[0], 364, "every room has rows: {text}");
    assert!(v[1] >= 10, "about one row per simulated minute: {text}");
    assert!(v[2] >= 0);

    // The demo's timetable reached the bookings table: every lecture hall, weeks ahead.
    assert!(stdout.contains("Timetable  http://127.0.0.1:"), "{stdout}");
    let out = tellijn(&[
        "sql",
        "--data",
        data_s,
        "--format",
        "csv",
        "SELECT count(DISTINCT room) AS rooms, count(*) AS n, count(*) FILTER (WHERE status = 'cancelled') AS cancelled, max(start) > now() + INTERVAL '24 days' AS ahead FROM bookings",
    ]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let row: Vec<&str> = text.lines().nth(1).unwrap_or_default().split(',').collect();
    assert_eq!(row.len(), 4, "{text}");
    let halls: i64 = row[0].parse().unwrap_or(0);
    let n: i64 = row[1].parse().unwrap_or(0);
    assert!(
        halls >= 50 && n > halls * 10,
        "the timetable was not stored: {text}"
    );
    assert!(
        row[2].parse::<i64>().unwrap_or(0) > 0,
        "no cancelled lecture: {text}"
    );
    assert_eq!(row[3], "true", "bookings do not reach weeks ahead: {text}");

    // A bad query: non-zero exit and a message that names the problem.
    let out = tellijn(&["sql", "--data", data_s, "SELECT nosuchcolumn FROM counts"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nosuchcolumn"));
    // The campus tables come from the config the demo wrote.
    let campus = data.join("demo-campus.toml");
    let out = tellijn(&[
        "sql",
        "--data",
        data_s,
        "--config",
        campus.to_str().unwrap(),
        "--format",
        "csv",
        "SELECT count(*) AS n FROM sensors",
    ]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n370\n");
}

#[test]
fn examples_are_valid() {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = tellijn(&["check-config", &format!("{root}/examples/campus.toml")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    tellijn_agent::AgentConfig::load(std::path::Path::new(&format!("{root}/examples/agent.toml")))
        .unwrap();
}

#[test]
fn check_config_reports_every_error_with_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("campus.toml");
    std::fs::write(
        &p,
        "[[buildings]]\nid = \"b\"\nname = \"B\"\n[[rooms]]\nid = \"r\"\nbuilding = \"x\"\nname = \"R\"\nkind = \"office\"\ncapacity = 0\npublic = true\n",
    )
    .unwrap();
    let out = tellijn(&["check-config", p.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let file = p.display().to_string();
    for key in ["rooms[0].building", "rooms[0].capacity", "rooms[0].public"] {
        assert!(
            err.contains(&format!("{file}: {key}")),
            "{key} missing in:\n{err}"
        );
    }
    assert!(err.contains("3 error(s)."), "{err}");
}

#[test]
fn hash_secret_prints_an_argon2id_hash() {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tellijn"))
        .arg("hash-secret")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("$argon2id$"));
}

#[test]
fn sql_shows_progress_on_a_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let sql = "SELECT count(*) AS n FROM generate_series(1, 50000000)";
    // Piped: the result alone, no progress line.
    let out = tellijn(&["sql", "--data", data, "--format", "csv", sql]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "n\n50000000\n");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("running query"),
        "progress on a pipe"
    );
    // On a terminal (util-linux `script` gives it one): the progress line, then the result.
    let cmd = format!(
        "{} sql --data {data} --format csv '{sql}'",
        env!("CARGO_BIN_EXE_tellijn")
    );
    let out = Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .expect("script (util-linux) gives the command a terminal");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("running query"), "{text:?}");
    assert!(text.trim_end().ends_with("50000000"), "{text:?}");
}

#[test]
fn serve_refuses_the_demo_password() {
    let dir = tempfile::tempdir().unwrap();
    let hash = tellijn::secrets::hash_demo("demo").unwrap();
    let config = dir.path().join("campus.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\ndata_dir = \"{}\"\n\n[[buildings]]\nid = \"b\"\nname = \"B\"\n\n[[users]]\nname = \"demo\"\npassword_hash = \"{hash}\"\nrole = \"steward\"\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let out = tellijn(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--mqtt",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--postgres",
        "127.0.0.1:0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "serve started with the demo password"
    );
    assert!(
        stderr.contains("users[0] (demo)") && stderr.contains("demo password"),
        "{stderr}"
    );
}

#[test]
fn the_demo_binds_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let out = tellijn(&[
        "demo",
        "--duration",
        "1s",
        "--data",
        dir.path().to_str().unwrap(),
        "--http",
        "0.0.0.0:0",
    ]);
    assert!(!out.status.success(), "the demo listened beyond loopback");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("loopback"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn transparency_prints_the_report_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/campus.toml");
    let out = tellijn(&[
        "transparency",
        "--config",
        config,
        "--data",
        dir.path().to_str().unwrap(),
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.starts_with("# Tellijn transparency report"), "{text}");
    assert!(
        text.contains("| lib-2-door-a | line main → lib-2-study |"),
        "{text}"
    );
    assert!(text.contains("Count messages: 30 days"), "{text}");
    assert!(!text.contains("$argon2"), "a secret hash in the report");
}
