//! The real `tellijn-counter` binary: bad input, the sandbox, frame lifetimes under a slow
//! pipeline, the end of input, and the installer's view in tmux.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_tellijn-counter");
const MARKER: &[u8] = b"PIXELSECRET";

const CONFIG: &str = r#"
[camera]
source = "y4m"
[[lines]]
line = "main"
from = [0, 8]
to = [16, 8]
inside = [8, 14]
[people]
size = 6
"#;

fn dir() -> PathBuf {
    let thread = format!("{:?}", std::thread::current().id())
        .replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let d = std::env::temp_dir().join(format!(
        "tellijn-counter-cli-{}-{thread}",
        std::process::id()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn config(extra: &str) -> PathBuf {
    let p = dir().join(format!("counter-{}.toml", extra.len()));
    std::fs::write(&p, format!("{CONFIG}{extra}")).unwrap();
    p
}

fn header() -> Vec<u8> {
    b"YUV4MPEG2 W16 H16 F15:1 Ip A1:1 C420jpeg\n".to_vec()
}

/// A frame whose pixels spell the marker.
fn frame() -> Vec<u8> {
    let mut f = b"FRAME\n".to_vec();
    f.extend(MARKER.iter().cycle().take(256 + 128));
    f
}

fn run(cfg: &Path, input: Vec<u8>, args: &[&str]) -> Output {
    let mut c = Command::new(BIN)
        .arg("--config")
        .arg(cfg)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let w = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = c.wait_with_output().unwrap();
    w.join().unwrap();
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn last_status(stdout: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("{\"status\""))
        .expect("a status line");
    serde_json::from_str::<serde_json::Value>(line).unwrap()["status"].clone()
}

#[test]
fn bad_streams_give_a_clear_error_no_panic_and_no_pixel_in_any_message() {
    let f = frame();
    let mut truncated = header();
    truncated.extend_from_slice(&f);
    truncated.extend_from_slice(&f[..100]);
    let mut resized = header();
    resized.extend_from_slice(&f);
    resized.extend_from_slice(b"YUV4MPEG2 W32 H32 F15:1 C420jpeg\n");
    let mut garbage = header();
    garbage.extend_from_slice(&f);
    garbage.extend(MARKER.iter().cycle().take(500));
    let mut bad_header = b"YUV4MPEG2 W16 H16 F15:1 C".to_vec();
    bad_header.extend_from_slice(MARKER);
    bad_header.push(b'\n');
    let mut not_y4m = MARKER.to_vec();
    not_y4m.extend(MARKER.iter().cycle().take(400));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", Vec::new(), "the input is empty"),
        ("not y4m", not_y4m, "not a Y4M stream"),
        ("bad header", bad_header, "colorspace"),
        (
            "10-bit",
            b"YUV4MPEG2 W16 H16 F15:1 C420p10\n".to_vec(),
            "only 8-bit",
        ),
        (
            "truncated",
            truncated,
            "frame 1: the stream ended in the middle of the frame (94 of 384 bytes)",
        ),
        (
            "size changes",
            resized,
            "frame 1: a new stream header appeared mid-stream",
        ),
        ("garbage", garbage, "frame 1: expected a \"FRAME\" header"),
    ];
    let cfg = config("");
    for (name, input, want) in cases {
        let out = run(&cfg, input, &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{name}: {err}");
        assert!(err.contains(want), "{name}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("internal error"),
            "{name}: {err}"
        );
        assert!(
            !contains(&out.stderr, MARKER) && !contains(&out.stdout, MARKER),
            "{name}: a pixel reached a message"
        );
    }
}

#[test]
fn a_bad_config_names_every_problem() {
    let p = dir().join("bad.toml");
    std::fs::write(
        &p,
        CONFIG
            .replace("size = 6", "size = 0")
            .replace("inside = [8, 14]", "inside = [8, 8]"),
    )
    .unwrap();
    let out = run(&p, Vec::new(), &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("lies on the line") && err.contains("people.size"),
        "{err}"
    );
}

#[test]
fn the_confined_counter_cannot_open_files_sockets_or_run_programs() {
    let out = Command::new(BIN)
        .arg("--config")
        .arg(config(""))
        .arg("sandbox-check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for call in [
        "socket(AF_INET",
        "socket(AF_UNIX",
        "open(/etc/hostname)",
        "openat(",
        "creat(",
        "execve(",
        "ptrace(",
        "fork()",
        "ioctl(stdin, TIOCSTI)",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(call))
            .unwrap_or_else(|| panic!("{call} not probed: {text}"));
        assert!(line.contains("denied"), "{line}");
    }
    assert!(
        text.contains("landlock: Ok(Confinement { landlock: Full, no_new_privs: true })"),
        "{text}"
    );
}

fn proc_status(c: &Child) -> String {
    std::fs::read_to_string(format!("/proc/{}/status", c.id())).unwrap_or_default()
}

#[test]
fn while_it_counts_the_kernel_shows_seccomp_filtering_and_no_new_privs() {
    let mut c = Command::new(BIN)
        .arg("--config")
        .arg(config(""))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    stdin.write_all(&header()).unwrap();
    stdin.write_all(&frame()).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut st = proc_status(&c);
    while !(st.contains("Seccomp:\t2") && st.contains("NoNewPrivs:\t1")) {
        assert!(Instant::now() < deadline, "not confined: {st}");
        std::thread::yield_now();
        st = proc_status(&c);
    }
    // Every thread, not only the main one.
    for t in std::fs::read_dir(format!("/proc/{}/task", c.id())).unwrap() {
        let s = std::fs::read_to_string(t.unwrap().path().join("status")).unwrap_or_default();
        if !s.is_empty() {
            assert!(
                s.contains("Seccomp:\t2") && s.contains("NoNewPrivs:\t1"),
                "{s}"
            );
        }
    }
    stdin.write_all(&frame()).unwrap();
    drop(stdin);
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(last_status(&out.stdout)["frames"], 2);
}

#[test]
fn a_slow_pipeline_drops_frames_that_would_live_past_200_ms_and_measures_every_lifetime() {
    // Processing takes 120 ms. Whole frames arrive at once and are processed (lifetime ≈ 120 ms);
    // frames trickling in over 100 ms would live ≈ 220 ms and are dropped unprocessed; frames
    // trickling for 300 ms are zeroized mid-read at 190 ms.
    let cfg = config("[testing]\nslow_frame = \"120ms\"\n");
    let mut c = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .arg("--replay")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&header()).unwrap();
        let f = frame();
        for i in 0..9 {
            match i % 3 {
                0 => stdin.write_all(&f).unwrap(),
                k => {
                    stdin.write_all(&f[..50]).unwrap();
                    // Pacing the producer (a slow camera), not synchronisation.
                    std::thread::sleep(Duration::from_millis(if k == 1 { 100 } else { 300 }));
                    stdin.write_all(&f[50..]).unwrap();
                }
            }
        }
    });
    writer.join().unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = last_status(&out.stdout);
    assert_eq!(s["frames"], 9, "{s}");
    // Which trickled frames the estimate or the read deadline catches depends on when their
    // first byte was read (the pipe holds the start of a frame while the reader waits).
    let n = |k: &str| s[k].as_u64().unwrap();
    assert!(n("dropped_late") >= 3, "{s}");
    assert!(n("processed") >= 1, "{s}");
    assert_eq!(
        n("processed") + n("dropped_late") + n("dropped_behind"),
        9,
        "{s}"
    );
    let max = s["lifetime_max_us"].as_u64().unwrap();
    assert!(
        max >= 100_000,
        "the slow processing shows in the lifetimes: {s}"
    );
    assert!(max < 200_000, "no frame lived 200 ms: {s}");
}

/// A generated doorway scene of `secs` seconds: its spec, its Y4M bytes and its truth.
fn scene(
    seed: u64,
    secs: u32,
) -> (
    tellijn_scene::SceneSpec,
    Vec<u8>,
    tellijn_scene::truth::Truth,
) {
    let spec = tellijn_scene::SceneSpec {
        seed,
        length: tellijn_scene::Length::Seconds(secs),
        ..Default::default()
    };
    let mut y4m = Vec::new();
    let truth = tellijn_scene::render(&spec, &mut y4m).unwrap();
    (spec, y4m, truth)
}

#[test]
fn a_generated_scene_is_counted_and_the_counter_exits_0_at_its_end() {
    let (spec, y4m, truth) = scene(4242, 30);
    let cfg = dir().join("scene.toml");
    std::fs::write(&cfg, spec.counter_toml()).unwrap();
    let out = run(&cfg, y4m, &["--replay"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let ins = text
        .lines()
        .filter(|l| *l == r#"{"line":"main","dir":"in"}"#)
        .count() as i64;
    let outs = text
        .lines()
        .filter(|l| *l == r#"{"line":"main","dir":"out"}"#)
        .count() as i64;
    assert!(truth.ins + truth.out >= 4, "a scene with people: {truth:?}");
    assert!(
        (ins - truth.ins as i64).abs() <= 1 && (outs - truth.out as i64).abs() <= 1,
        "{ins}/{outs} vs {}/{}",
        truth.ins,
        truth.out
    );
    let s = last_status(&out.stdout);
    assert_eq!(s["frames"], truth.frames);
    assert_eq!(s["privacy_level"], 3);
}

fn tmux(args: &[&str]) -> String {
    let o = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux (bash .ci/test installs it)");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_view_shows_only_lines_and_counts_in_a_terminal() {
    let (spec, y4m, truth) = scene(77, 20);
    let d = dir();
    let scene = d.join("view.y4m");
    std::fs::write(&scene, y4m).unwrap();
    let cfg = d.join("view.toml");
    std::fs::write(&cfg, spec.counter_toml()).unwrap();
    let session = format!("tellijn-view-{}", std::process::id());
    let cmd = format!(
        "{BIN} --view --replay --config {} < {} > /dev/null; echo VIEW-EXIT=$?; sleep 600",
        cfg.display(),
        scene.display()
    );
    let _ = tmux(&["kill-session", "-t", &session]);
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "100",
        "-y",
        "32",
        &cmd,
    ]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut screen = String::new();
    while !screen.contains("VIEW-EXIT=") {
        assert!(
            Instant::now() < deadline,
            "the view did not finish: {screen}"
        );
        std::thread::yield_now();
        screen = tmux(&["capture-pane", "-p", "-S", "-100", "-t", &session]);
    }
    let coloured = tmux(&["capture-pane", "-p", "-e", "-S", "-100", "-t", &session]);
    let _ = tmux(&["kill-session", "-t", &session]);
    assert!(screen.contains("VIEW-EXIT=0"), "{screen}");
    assert!(
        screen.contains("privacy level 3: no image is shown"),
        "{screen}"
    );
    let counts = screen
        .lines()
        .find(|l| l.starts_with("main  in "))
        .unwrap_or_else(|| panic!("no counts: {screen}"));
    let n: Vec<i64> = counts
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(n.len(), 2, "{counts}");
    assert!(
        (n[0] - truth.ins as i64).abs() <= 1 && (n[1] - truth.out as i64).abs() <= 1,
        "{counts} vs {truth:?}"
    );
    assert!(
        screen.contains("━━━━━━━━━━"),
        "the counting line is drawn: {screen}"
    );
    // Nothing but the title, the line, the counts and blank canvas.
    for l in screen.lines() {
        let body: String = l.chars().filter(|c| !c.is_whitespace()).collect();
        let ok = body.is_empty()
            || body.chars().all(|c| c == '━')
            || l.starts_with("tellijn-counter")
            || l.starts_with("main ")
            || l.starts_with("VIEW-EXIT")
            || l.starts_with("tellijn-counter: main:")
            || l.starts_with("me lifetime");
        assert!(ok, "unexpected content on the canvas: {l:?}");
    }
    assert!(
        coloured.contains("\x1b[40m") || coloured.contains("[40m"),
        "a black canvas"
    );
}

#[test]
fn calibration_learns_the_person_size_from_tracks_even_from_a_wrong_start() {
    let (spec, y4m, _) = scene(5, 60);
    for start in ["25", "60"] {
        let cfg = dir().join(format!("calibrate-{start}.toml"));
        std::fs::write(
            &cfg,
            spec.counter_toml()
                .replace("size = 40", &format!("size = {start}")),
        )
        .unwrap();
        let out = run(&cfg, y4m.clone(), &["--replay", "calibrate"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        let size: f64 = text
            .lines()
            .skip_while(|l| *l != "[people]")
            .nth(1)
            .and_then(|l| l.strip_prefix("size = "))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no [people] suggestion: {text}"));
        // The scene's people are 40 px ± 15 % wide.
        assert!(
            (30.0..=48.0).contains(&size),
            "from {start}: suggested {size}: {text}"
        );
        assert!(text.contains("# line \"main\": "), "{text}");
        assert!(
            !contains(&out.stdout, b"\x1b["),
            "calibration draws nothing"
        );
    }
}

#[test]
fn a_counter_whose_agent_is_gone_stops_although_frames_keep_coming() {
    // The agent killed with SIGKILL cannot stop its children: the capture command keeps
    // sending frames, and only the closed stdout tells the counter nobody reads its counts.
    let mut c = Command::new(BIN)
        .arg("--config")
        .arg(config("[status]\ninterval = \"1s\"\n"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || {
        let mut sent = 0u64;
        if stdin.write_all(&header()).is_err() {
            return sent;
        }
        while stdin.write_all(&frame()).is_ok() {
            sent += 1;
            std::thread::sleep(Duration::from_millis(10));
        }
        sent
    });
    let mut stdout = std::io::BufReader::new(c.stdout.take().unwrap());
    let mut first = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut first).unwrap();
    if !first.contains("status") {
        let mut err = String::new();
        std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
        panic!("{first:?}: {err}");
    }
    drop(stdout);
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = c.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the counter kept running without a reader"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(1));
    let sent = feeder.join().unwrap();
    assert!(sent > 0);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut c.stderr.take().unwrap(), &mut err).unwrap();
    assert!(err.contains("its output was closed"), "{err}");
}
