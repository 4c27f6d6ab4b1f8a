//! A camera agent's status (issue 18): its frame figures become per-sensor metrics, a privacy
//! level other than 3 is audited as a settings change, and `sensors.json` (what the
//! transparency report reads) holds the figures.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tellijn_config::{AuditLog, Campus, Metrics};
use tellijn_processors::{Processors, Summary};
use tellijn_test_support::{CampusToml, HASH};
use tellijn_wire::{Clock, SensorEvent, StatusMessage};

fn campus() -> Arc<Campus> {
    let text = CampusToml::new()
        .building("b", "B")
        .room("r1", "b", "Study hall", "study", 50)
        .line_sensor("cam-1", HASH, &[("main", "r1", None)])
        .line_sensor("s2", HASH, &[("main", "r1", None)])
        .toml();
    Arc::new(Campus::parse(&text, "test").unwrap())
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn status(level: u8, max_us: u64) -> StatusMessage {
    let mut s = StatusMessage::online("2026-11-22T10:00:00Z".parse().unwrap(), 0, "0.1.0");
    s.sends = Some(vec!["line".into()]);
    s.frames = Some(1500);
    s.frame_drops = Some(4);
    s.frame_late = Some(1);
    s.frame_p99_us = Some(42_000);
    s.frame_max_us = Some(max_us);
    s.privacy_level = Some(level);
    s.counter_restarts = Some(2);
    s
}

#[tokio::test]
async fn a_cameras_figures_become_metrics_and_its_privacy_level_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut reg = Registry::default();
    let metrics = Metrics::new(&mut reg);
    let c = campus();
    metrics.seed(&c);
    let audit = Arc::new(AuditLog::open(dir.path()).unwrap());
    let mut p = Processors::open(
        c.clone(),
        dir.path(),
        metrics,
        Clock::system(),
        audit.clone(),
    )
    .unwrap();
    let mut sum = Summary::default();
    let ev = |sensor: &str, status| SensorEvent::Status {
        sensor: sensor.into(),
        status,
    };
    p.handle(ev("cam-1", status(3, 51_000)), &mut sum);
    let mut plain = StatusMessage::online("2026-11-22T10:00:00Z".parse().unwrap(), 0, "0.1.0");
    plain.sends = Some(vec!["line".into()]);
    p.handle(ev("s2", plain), &mut sum);

    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &reg).unwrap();
    let m = |s: &str| metric(&text, s);
    assert_eq!(m("tellijn_sensor_frames{sensor=\"cam-1\"}"), Some(1500.0));
    assert_eq!(m("tellijn_sensor_frame_drops{sensor=\"cam-1\"}"), Some(4.0));
    assert_eq!(m("tellijn_sensor_frame_late{sensor=\"cam-1\"}"), Some(1.0));
    assert_eq!(
        m("tellijn_sensor_frame_lifetime_p99_seconds{sensor=\"cam-1\"}"),
        Some(0.042)
    );
    assert_eq!(
        m("tellijn_sensor_frame_lifetime_max_seconds{sensor=\"cam-1\"}"),
        Some(0.051)
    );
    assert_eq!(
        m("tellijn_sensor_privacy_level{sensor=\"cam-1\"}"),
        Some(3.0)
    );
    assert_eq!(
        m("tellijn_sensor_counter_restarts{sensor=\"cam-1\"}"),
        Some(2.0)
    );
    // A sensor without a camera has none of these series (an alert on the level would
    // otherwise fire for it).
    assert!(
        !text.contains("tellijn_sensor_privacy_level{sensor=\"s2\"}"),
        "{text}"
    );
    assert!(!text.contains("tellijn_sensor_frames{sensor=\"s2\"}"));

    // Level 2: a settings change, audited; the figures alone are not.
    p.handle(ev("cam-1", status(3, 60_000)), &mut sum);
    p.handle(ev("cam-1", status(2, 60_000)), &mut sum);
    p.flush().await.unwrap();
    audit.sync().unwrap();
    let lines: Vec<serde_json::Value> = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .flatten()
        .flat_map(|f| {
            std::fs::read_to_string(f.path())
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect::<Vec<_>>()
        })
        .filter(|l: &serde_json::Value| l["event"] == "sensor_settings" && l["sensor"] == "cam-1")
        .collect();
    let levels: Vec<_> = lines.iter().map(|l| l["privacy_level"].clone()).collect();
    assert_eq!(
        levels,
        [serde_json::json!(3), serde_json::json!(2)],
        "{lines:?}"
    );
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("state/sensors.json")).unwrap())
            .unwrap();
    assert_eq!(json["cam-1"]["privacy_level"], 2);
    assert_eq!(json["cam-1"]["frame_max_us"], 60_000);
    assert_eq!(json["cam-1"]["counter_restarts"], 2);
    assert!(json["s2"].get("privacy_level").is_none());
}
