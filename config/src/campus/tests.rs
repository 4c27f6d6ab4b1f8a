use std::net::SocketAddr;
use std::time::Duration;

use super::*;

/// Regression (issue 17): a top-level table after `[[sensors]]` was reported as
/// `sensors[1] unknown field …`.
#[test]
fn an_unknown_table_after_sensors_is_named_as_itself() {
    let text = format!("{}\n[timetable]\nsource = \"x.ics\"\n", example());
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert_eq!(e.0[0].key, "timetable", "{e}");
    assert!(
        e.to_string()
            .starts_with("campus.toml: timetable is not a table campus.toml has;"),
        "{e}"
    );
    assert!(e.0[0].message.contains("`privacy`"), "{e}");
    // A known table after [[sensors]] is fine.
    let text = format!("{}\n[limits]\npublish_rate = 10\n", example());
    assert!(Campus::parse(&text, "campus.toml").is_ok());
}

const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

fn example() -> String {
    format!(
        r#"
[server]
data_dir = "./data"
flush_interval = "10s"

[privacy]
raw_retention = "30d"

[[users]]
name = "steward"
password_hash = "{HASH}"
role = "steward"

[[buildings]]
id = "lib"
name = "University Library"

[[rooms]]
id = "lib-2-study"
building = "lib"
name = "Study hall"
kind = "study"
capacity = 120
public = true
vacancy_delay = "10m"
reset = "03:00"

[[rooms]]
id = "lib-2-hall"
building = "lib"
name = "Hall"
kind = "hall"
capacity = 50

[[sensors]]
id = "lib-2-door-a"
secret_hash = "{HASH}"
lines = [ {{ line = "main", into = "lib-2-study", from = "lib-2-hall" }} ]
zones = [ {{ zone = "seats", room = "lib-2-study" }} ]
"#
    )
}

#[test]
fn example_is_valid() {
    let c = Campus::parse(&example(), "campus.toml").unwrap();
    assert_eq!(c.rooms[0].capacity, 120);
    assert_eq!(c.server.flush_interval, Duration::from_secs(10));
    assert_eq!(c.rooms[1].vacancy_delay, Duration::from_secs(600));
    // What demo writes must load again unchanged.
    assert_eq!(Campus::parse(&c.to_toml(), "x").unwrap(), c);
}

#[test]
fn negative_capacity_names_key() {
    let text = example().replace("capacity = 120", "capacity = -4");
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert_eq!(e.0.len(), 1);
    assert_eq!(e.0[0].key, "rooms[0].capacity", "{e}");
    assert!(
        e.to_string().starts_with("campus.toml: rooms[0].capacity"),
        "{e}"
    );
}

#[test]
fn all_errors_at_once() {
    let text = example()
        .replace("capacity = 120", "capacity = 0")
        .replace(
            "building = \"lib\"\nname = \"Hall\"",
            "building = \"nope\"\nname = \"Hall\"",
        )
        .replace("into = \"lib-2-study\"", "into = \"mars\"")
        .replace("kind = \"study\"", "kind = \"office\"")
        .replace(
            &format!("secret_hash = \"{HASH}\""),
            "secret_hash = \"plain\"",
        );
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rooms[0].capacity",
            "rooms[0].public",
            "rooms[1].building",
            "sensors[0].secret_hash",
            "sensors[0].lines[0].into"
        ],
        "{e}"
    );
    assert_eq!(
        e.0[0].to_string(),
        "campus.toml: rooms[0].capacity must be a positive integer (found 0)."
    );
}

#[test]
fn unknown_key_is_refused() {
    let text = example().replace(
        "flush_interval = \"10s\"",
        "flush_interval = \"10s\"\nflush = 3",
    );
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert!(e.to_string().contains("unknown field `flush`"), "{e}");
    assert_eq!(e.0[0].key, "server.flush");
}

#[test]
fn bad_timezone_is_named() {
    let text = example().replace(
        "flush_interval = \"10s\"",
        "flush_interval = \"10s\"\ntimezone = \"Mars/Olympus\"",
    );
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert_eq!(e.0[0].key, "server.timezone");
    assert!(e.to_string().contains("Mars/Olympus"), "{e}");
}

#[test]
fn bad_duration() {
    let text = example().replace("raw_retention = \"30d\"", "raw_retention = \"a month\"");
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert_eq!(e.0[0].key, "privacy.raw_retention", "{e}");
    assert!(e.to_string().contains("must be a duration"), "{e}");
}

#[test]
fn limits_have_defaults_and_refuse_zero() {
    let c = Campus::parse(&example(), "campus.toml").unwrap();
    assert_eq!(c.limits, Limits::default());
    let text = format!(
        "{}\n[limits]\npublish_rate = 0\nmax_http_connections = 0\nconnect_timeout = \"0s\"\n",
        example()
    );
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "limits.publish_rate",
            "limits.max_http_connections",
            "limits.connect_timeout"
        ],
        "{e}"
    );
    assert_eq!(Limits::default().max_http_connections, 256);
    let text = format!(
        "{}\n[limits]\nmax_sql_connections = 0\nsql_statement_timeout = \"0s\"\nsql_memory_limit = \"1MiB\"\n",
        example()
    );
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "limits.max_sql_connections",
            "limits.sql_statement_timeout",
            "limits.sql_memory_limit"
        ],
        "{e}"
    );
    let text = format!(
        "{}\n[limits]\nsql_memory_limit = \"512MiB\"\nsql_statement_timeout = \"30s\"\n",
        example()
    );
    let c = Campus::parse(&text, "campus.toml").unwrap();
    assert_eq!(c.limits.sql_memory_limit, 512 << 20);
    assert_eq!(c.limits.sql_statement_timeout, Duration::from_secs(30));
    let text = format!("{}\n[limits]\nsql_memory_limit = \"lots\"\n", example());
    let e = Campus::parse(&text, "campus.toml").unwrap_err();
    assert!(e.to_string().contains("must be a size"), "{e}");
    let text = format!("{}\n[limits]\nmax_pending_per_ip = 3\n", example());
    let c = Campus::parse(&text, "campus.toml").unwrap();
    assert_eq!(c.limits.max_pending_per_ip, 3);
    assert_eq!(c.limits.publish_rate, Limits::default().publish_rate);
}

#[test]
fn sizes_parse_in_bytes_and_units() {
    assert_eq!(parse_bytes("4096"), Some(4096));
    assert_eq!(parse_bytes("4096B"), Some(4096));
    assert_eq!(parse_bytes("512MiB"), Some(512 << 20));
    assert_eq!(parse_bytes("1 gib"), Some(1 << 30));
    assert_eq!(parse_bytes("2GB"), Some(2_000_000_000));
    assert_eq!(parse_bytes("MiB"), None);
    assert_eq!(parse_bytes("-1MiB"), None);
    assert_eq!(parse_bytes("99999999999TiB"), None);
    assert_eq!(format_bytes(1 << 30), "1GiB");
    assert_eq!(format_bytes(1500), "1500B");
}

#[test]
fn reset_times() {
    assert_eq!(parse_reset("03:00"), Some((3, 0)));
    assert_eq!(parse_reset("24:00"), None);
    assert_eq!(parse_reset("3:00"), None);
}

#[test]
fn anonymous_grants_reach_only_the_public_tree() {
    let outside = |f: &str| {
        format!(
            "campus.toml: server.anonymous_read[0] could reach topics outside the public tree \"tellijn/v1/public/#\" (found {f:?}): those carry offices and exact small numbers. Grant \"tellijn/v1/public/#\" to anonymous readers (public rooms, small numbers as bands, as the free-places page shows them); give building automation a named [[mqtt_readers]] entry with the topics it needs instead."
        )
    };
    let malformed = |f: &str| {
        format!(
            "campus.toml: server.anonymous_read[0] is not a well-formed topic filter (found {f:?}); grant \"tellijn/v1/public/#\" for the public."
        )
    };
    for (filter, refusal) in [
        ("tellijn/v1/public/#", None),
        ("tellijn/v1/public/rooms/#", None),
        ("tellijn/v1/public/rooms/+", None),
        ("tellijn/v1/public/buildings/lib", None),
        ("tellijn/v1/public/+/lib-2-study", None),
        ("tellijn/v1/rooms/#", Some(outside("tellijn/v1/rooms/#"))),
        (
            "tellijn/v1/buildings/#",
            Some(outside("tellijn/v1/buildings/#")),
        ),
        (
            "tellijn/v1/rooms/lib-2-study/occupancy",
            Some(outside("tellijn/v1/rooms/lib-2-study/occupancy")),
        ),
        (
            "tellijn/v1/+/rooms/#",
            Some(outside("tellijn/v1/+/rooms/#")),
        ),
        ("tellijn/v1/+/#", Some(outside("tellijn/v1/+/#"))),
        ("tellijn/v1/#", Some(outside("tellijn/v1/#"))),
        ("tellijn/#", Some(outside("tellijn/#"))),
        ("+/#", Some(outside("+/#"))),
        ("#", Some(outside("#"))),
        ("+/v1/public/#", Some(outside("+/v1/public/#"))),
        ("homeassistant/#", Some(outside("homeassistant/#"))),
        // `a/#` matches `a` itself too (MQTT 4.7.1.2): nothing is published there.
        ("tellijn/v1/public", None),
        (
            "tellijn/v1/public/#/x",
            Some(malformed("tellijn/v1/public/#/x")),
        ),
        (
            "tellijn/v1/public/ro+",
            Some(malformed("tellijn/v1/public/ro+")),
        ),
        (
            "tellijn/v1/public//x",
            Some(malformed("tellijn/v1/public//x")),
        ),
    ] {
        let text = example().replace(
            "flush_interval = \"10s\"",
            &format!("flush_interval = \"10s\"\nanonymous_read = [{filter:?}]"),
        );
        match (Campus::parse(&text, "campus.toml"), refusal) {
            (Ok(_), None) => {}
            (Err(e), Some(m)) => {
                assert_eq!(e.0.len(), 1, "{filter}: {e}");
                assert_eq!(e.0[0].to_string(), m, "{filter}");
            }
            (Ok(_), Some(_)) => panic!("{filter} was accepted"),
            (Err(e), None) => panic!("{filter} was refused: {e}"),
        }
    }
}

#[test]
fn the_metrics_token_is_a_sha256() {
    let ok = "a".repeat(64);
    for (value, fine) in [
        (ok.as_str(), true),
        ("secret", false),
        (&"g".repeat(64), false),
    ] {
        let text = example().replace(
            "flush_interval = \"10s\"",
            &format!("flush_interval = \"10s\"\nmetrics_token_sha256 = {value:?}"),
        );
        let r = Campus::parse(&text, "campus.toml");
        assert_eq!(r.is_ok(), fine, "{value}: {r:?}");
        if let Err(e) = r {
            assert_eq!(e.0[0].key, "server.metrics_token_sha256");
        }
    }
    let c = Campus::parse(&example(), "campus.toml").unwrap();
    assert_eq!(c.server.metrics, SocketAddr::from(([127, 0, 0, 1], 9464)));
    assert_eq!(c.server.metrics_token_sha256, None);
}

#[test]
fn derived_filters() {
    assert!(derived_filter("tellijn/v1/rooms/#"));
    assert!(derived_filter("tellijn/v1/rooms/+/state"));
    assert!(!derived_filter("tellijn/v1/#"));
    assert!(!derived_filter("tellijn/v1/rooms/#/x"));
    assert!(!derived_filter("tellijn/v1/sensors/#"));
    assert!(!derived_filter("#"));
    assert!(derived_filter("homeassistant/#"));
    assert!(derived_filter("tellijn/v1/public/#"));
}

#[test]
fn calendars_name_one_mapping_known_rooms_and_no_secret_in_errors() {
    let ok = format!(
        "{}\n[[calendars]]\nurl = \"https://t.example/rooms.ics\"\nroom = \"lib-2-study\"\n\n[[calendars]]\nurl = \"file:///srv/t.ics\"\nrefresh = \"1h\"\nlocations = {{ \"LIB 2\" = \"lib-2-hall\" }}\n\n[bookings]\nno_show_after = \"10m\"\n",
        example()
    );
    let c = Campus::parse(&ok, "campus.toml").unwrap();
    assert_eq!(c.calendars.len(), 2);
    assert_eq!(c.calendars[0].refresh, Duration::from_secs(300));
    assert_eq!(c.bookings.no_show_after, Duration::from_secs(600));
    assert_eq!(c.bookings.study_place_min, Duration::from_secs(3600));
    assert_eq!(Campus::parse(&c.to_toml(), "x").unwrap(), c);

    let bad = format!(
        "{}\n[[calendars]]\nurl = \"ftp://user:hunter2@t.example/x.ics?token=s3cret\"\nroom = \"nope\"\nlocations = {{ \"A\" = \"lib-2-hall\" }}\n\n[[calendars]]\nurl = \"https://t.example/x.ics\"\nrefresh = \"1s\"\n\n[bookings]\nhorizon = \"7d\"\nstudy_place_kinds = [\"office\"]\n",
        example()
    );
    let e = Campus::parse(&bad, "campus.toml").unwrap_err();
    let keys: Vec<&str> = e.0.iter().map(|x| x.key.as_str()).collect();
    for k in [
        "calendars[0].url",
        "calendars[0]",
        "calendars[0].room",
        "calendars[1].refresh",
        "calendars[1]",
        "bookings.horizon",
        "bookings.study_place_kinds",
    ] {
        assert!(keys.contains(&k), "no error for {k}: {e}");
    }
    let text = e.to_string();
    assert!(
        !text.contains("hunter2") && !text.contains("s3cret"),
        "{text}"
    );
}
