//! The gate: who may connect, what they may subscribe to, and which publishes are admitted.
//!
//! Pure Tellijn policy with no broker types in it, so the MQTT broker underneath stays
//! replaceable and every rule is unit-tested here. [`crate::hooks`] adapts it to rmqtt.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use tellijn_config::Campus;
use tellijn_config::metrics::auth_reason;
use tellijn_wire::topic::{self, SensorTopic};
use tellijn_wire::{CountMessage, Directory, Reason, StatusMessage};

/// Who a connected client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// A sensor agent, authenticated by its secret.
    Sensor(String),
    /// A named MQTT reader (building automation) from `[[mqtt_readers]]`.
    Reader(String),
    /// A client without credentials, allowed only where `anonymous_read` says so.
    Anonymous,
}

/// A CONNECT's last will, as the gate sees it.
pub struct Will<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
}

/// A CONNECT the gate refused, with the metric label for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthRefusal(pub &'static str);

/// A publish the gate admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admitted {
    Count(CountMessage),
    Status(StatusMessage),
}

#[derive(Clone, PartialEq, Eq)]
struct SensorEntry {
    secret_hash: String,
    lines: BTreeSet<String>,
    zones: BTreeSet<String>,
}

#[derive(Clone, PartialEq, Eq)]
struct ReaderEntry {
    password_hash: String,
    filters: Vec<String>,
}

/// What a user name stands for in a policy (compared across a reload).
#[derive(PartialEq, Eq)]
enum Entry<'a> {
    Sensor(&'a SensorEntry),
    Reader(&'a ReaderEntry),
}

/// The access policy, built from the campus config (again at each reload).
pub struct Policy {
    sensors: HashMap<String, SensorEntry>,
    readers: BTreeMap<String, ReaderEntry>,
    anonymous: Vec<String>,
    /// SHA-256 of secrets already verified against their argon2id hash, so a reconnect does
    /// not cost another deliberately slow hash. Never holds a secret itself.
    verified: Mutex<HashMap<String, [u8; 32]>>,
}

impl Directory for Policy {
    fn has_line(&self, sensor: &str, line: &str) -> bool {
        self.sensors
            .get(sensor)
            .is_some_and(|s| s.lines.contains(line))
    }
    fn has_zone(&self, sensor: &str, zone: &str) -> bool {
        self.sensors
            .get(sensor)
            .is_some_and(|s| s.zones.contains(zone))
    }
}

impl Policy {
    /// Builds the policy from a validated config.
    pub fn new(campus: &Campus) -> Policy {
        let sensors = campus
            .sensors
            .iter()
            .map(|s| {
                let entry = SensorEntry {
                    secret_hash: s.secret_hash.clone(),
                    lines: s.lines.iter().map(|l| l.line.clone()).collect(),
                    zones: s.zones.iter().map(|z| z.zone.clone()).collect(),
                };
                (s.id.clone(), entry)
            })
            .collect();
        let readers = campus
            .mqtt_readers
            .iter()
            .map(|r| {
                let entry = ReaderEntry {
                    password_hash: r.password_hash.clone(),
                    filters: r.topics.clone(),
                };
                (r.name.clone(), entry)
            })
            .collect();
        Policy {
            sensors,
            readers,
            anonymous: campus.server.anonymous_read.clone(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// Decides a CONNECT. Blocking (argon2id): call it off the async threads.
    pub fn authenticate(
        &self,
        client_id: &str,
        username: Option<&str>,
        password: Option<&[u8]>,
        will: Option<Will<'_>>,
    ) -> Result<Identity, AuthRefusal> {
        let identity = match username {
            None => {
                if self.anonymous.is_empty() || password.is_some() {
                    return Err(AuthRefusal(auth_reason::NO_CREDENTIALS));
                }
                Identity::Anonymous
            }
            Some(user) => {
                let password = password.ok_or(AuthRefusal(auth_reason::BAD_SECRET))?;
                // The secret is checked first, for every user name, known or not: a refusal
                // costs the same time whatever the name, so names cannot be told apart.
                if let Some(sensor) = self.sensors.get(user) {
                    self.verify(user, &sensor.secret_hash, password)?;
                    if client_id != user {
                        return Err(AuthRefusal(auth_reason::CLIENT_ID_MISMATCH));
                    }
                    Identity::Sensor(user.to_owned())
                } else if let Some(reader) = self.readers.get(user) {
                    self.verify(user, &reader.password_hash, password)?;
                    Identity::Reader(user.to_owned())
                } else {
                    tellijn_config::secrets::dummy(password);
                    return Err(AuthRefusal(auth_reason::UNKNOWN_USER));
                }
            }
        };
        // Only a sensor may hold a sensor's client id: another client taking it would
        // disconnect the sensor (MQTT session takeover).
        if !matches!(identity, Identity::Sensor(_)) && self.sensors.contains_key(client_id) {
            return Err(AuthRefusal(auth_reason::CLIENT_ID_MISMATCH));
        }
        if let Some(will) = will {
            let ok = match &identity {
                Identity::Sensor(id) => {
                    will.topic == topic::sensor(id, SensorTopic::Status)
                        && StatusMessage::parse(will.payload).is_ok_and(|s| !s.online)
                }
                _ => false,
            };
            if !ok {
                return Err(AuthRefusal(auth_reason::BAD_WILL));
            }
        }
        Ok(identity)
    }

    /// Whether `user`'s `password` was verified before, so [`Self::authenticate`] will not run
    /// argon2id for it (cheap: one SHA-256). Lets a reconnect skip the queue of verifications.
    pub fn is_cached(&self, user: &str, password: &[u8]) -> bool {
        let digest: [u8; 32] = Sha256::digest(password).into();
        let cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(user) == Some(&digest)
    }

    fn verify(&self, user: &str, hash: &str, password: &[u8]) -> Result<(), AuthRefusal> {
        let digest: [u8; 32] = Sha256::digest(password).into();
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.get(user) == Some(&digest) {
            return Ok(());
        }
        drop(cache);
        if !tellijn_config::secrets::matches(hash, password) {
            return Err(AuthRefusal(auth_reason::BAD_SECRET));
        }
        cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(user.to_owned(), digest);
        Ok(())
    }

    /// May this client subscribe to this topic filter?
    pub fn may_subscribe(&self, who: &Identity, filter: &str) -> bool {
        match who {
            Identity::Sensor(id) => filter == topic::sensor(id, SensorTopic::Ack),
            Identity::Reader(name) => self.readers.get(name).is_some_and(|r| {
                r.filters
                    .iter()
                    .any(|allowed| filter_within(filter, allowed))
            }),
            Identity::Anonymous => self
                .anonymous
                .iter()
                .any(|allowed| filter_within(filter, allowed)),
        }
    }

    /// Admits or refuses a publish. Nothing refused here reaches a subscriber.
    pub fn check_publish(
        &self,
        who: &Identity,
        topic_name: &str,
        payload: &[u8],
        retain: bool,
        now: DateTime<Utc>,
    ) -> Result<Admitted, Reason> {
        let Identity::Sensor(id) = who else {
            return Err(Reason::BadTopic);
        };
        match topic::parse_sensor(topic_name) {
            Some((sensor, SensorTopic::Counts)) if sensor == id => {
                if retain {
                    return Err(Reason::BadRetain);
                }
                CountMessage::check(payload, id, self, now).map(Admitted::Count)
            }
            Some((sensor, SensorTopic::Status)) if sensor == id => {
                StatusMessage::parse(payload).map(Admitted::Status)
            }
            _ => Err(Reason::BadTopic),
        }
    }

    /// Is this client id a configured sensor?
    pub fn is_sensor(&self, id: &str) -> bool {
        self.sensors.contains_key(id)
    }

    fn entry(&self, user: &str) -> Option<Entry<'_>> {
        match self.sensors.get(user) {
            Some(s) => Some(Entry::Sensor(s)),
            None => self.readers.get(user).map(Entry::Reader),
        }
    }

    /// After a reload from `self` to `new`: must a client connected as `username` (none:
    /// anonymous) with `client_id` reconnect? Yes when what admitted it changed at all — its
    /// sensor or reader removed, its secret, lines, zones or topics changed, the anonymous
    /// filters changed for an anonymous client — or when its client id became a sensor's.
    /// Its subscriptions were checked against the old rules; reconnecting checks them again.
    pub fn must_reconnect(&self, new: &Policy, username: Option<&str>, client_id: &str) -> bool {
        let changed = match username {
            None => self.anonymous != new.anonymous,
            Some(u) => self.entry(u) != new.entry(u),
        };
        changed || (new.sensors.contains_key(client_id) && username != Some(client_id))
    }

    /// Keeps the secrets verified under `old` for the users whose entry did not change, so a
    /// reload costs no argon2id for the clients that stay.
    pub fn keep_verified(&self, old: &Policy) {
        if std::ptr::eq(self, old) {
            return;
        }
        let old_cache = old.verified.lock().unwrap_or_else(|p| p.into_inner());
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        for (user, digest) in old_cache.iter() {
            if old.entry(user).is_some() && old.entry(user) == self.entry(user) {
                cache.insert(user.clone(), *digest);
            }
        }
    }
}

pub use tellijn_wire::topic::filter_within;

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::Argon2;
    use argon2::password_hash::{PasswordHasher, SaltString, rand_core::OsRng};

    fn hash(secret: &str) -> String {
        let salt = SaltString::generate(&mut OsRng);
        let params = argon2::Params::new(1024, 1, 1, None).unwrap();
        Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
            .hash_password(secret.as_bytes(), &salt)
            .unwrap()
            .to_string()
    }

    fn policy() -> Policy {
        let text = tellijn_test_support::CampusToml::new()
            .section("[server]\nanonymous_read = [\"tellijn/v1/public/rooms/#\"]")
            .section(&format!(
                "[[mqtt_readers]]\nname = \"hvac\"\npassword_hash = \"{}\"\ntopics = [\"tellijn/v1/rooms/+/state\"]",
                hash("hvac-pw")
            ))
            .building("lib", "Library")
            .room("r1", "lib", "Room", "study", 10)
            .line_sensor("s1", &hash("s1-secret"), &[("main", "r1", None)])
            .zone_sensor("s2", &hash("s2-secret"), &[("seats", "r1")])
            .toml();
        Policy::new(&Campus::parse(&text, "test.toml").unwrap())
    }

    /// The same rules (the same hashes), nothing verified yet.
    fn copy(p: &Policy) -> Policy {
        Policy {
            sensors: p.sensors.clone(),
            readers: p.readers.clone(),
            anonymous: p.anonymous.clone(),
            verified: Mutex::new(HashMap::new()),
        }
    }

    #[test]
    fn a_reload_reconnects_exactly_the_clients_whose_rules_changed() {
        let p = policy();
        // Nothing changed: nobody reconnects.
        assert!(!p.must_reconnect(&p, Some("s1"), "s1"));
        assert!(!p.must_reconnect(&p, Some("hvac"), "hvac-1"));
        assert!(!p.must_reconnect(&p, None, "anon-1"));
        // s2 removed, the reader's topics widened, the anonymous filters narrowed.
        let mut new = copy(&p);
        new.sensors.remove("s2");
        if let Some(r) = new.readers.get_mut("hvac") {
            r.filters.push("tellijn/v1/rooms/+/occupancy".into());
        }
        assert!(
            !p.must_reconnect(&new, Some("s1"), "s1"),
            "s1 did not change"
        );
        assert!(p.must_reconnect(&new, Some("s2"), "s2"), "a removed sensor");
        assert!(
            p.must_reconnect(&new, Some("hvac"), "hvac-1"),
            "changed topics"
        );
        assert!(
            !p.must_reconnect(&new, None, "anon-1"),
            "same anonymous filters"
        );
        new.anonymous = vec!["tellijn/v1/public/buildings/#".into()];
        assert!(
            p.must_reconnect(&new, None, "anon-1"),
            "anonymous filters changed"
        );
        // A removed reader; a sensor whose lines changed; a new sensor whose id a client holds.
        let mut new = copy(&p);
        new.readers.clear();
        if let Some(s) = new.sensors.get_mut("s1") {
            s.lines.insert("side".into());
        }
        new.sensors.insert(
            "anon-1".into(),
            SensorEntry {
                secret_hash: hash("x"),
                lines: BTreeSet::new(),
                zones: BTreeSet::new(),
            },
        );
        assert!(
            p.must_reconnect(&new, Some("hvac"), "hvac-1"),
            "a removed reader"
        );
        assert!(p.must_reconnect(&new, Some("s1"), "s1"), "changed lines");
        assert!(!p.must_reconnect(&new, Some("s2"), "s2"));
        assert!(
            p.must_reconnect(&new, None, "anon-1"),
            "its id is a sensor's now"
        );
        // A new hash is a new entry, even of the same secret (a rotation to the same value).
        let mut rehashed = copy(&p);
        if let Some(s) = rehashed.sensors.get_mut("s1") {
            s.secret_hash = hash("s1-secret");
        }
        assert!(p.must_reconnect(&rehashed, Some("s1"), "s1"));
    }

    #[test]
    fn a_reload_keeps_verified_secrets_only_for_unchanged_users() {
        let old = policy();
        old.authenticate("s1", Some("s1"), Some(b"s1-secret"), None)
            .unwrap();
        old.authenticate("s2", Some("s2"), Some(b"s2-secret"), None)
            .unwrap();
        old.authenticate("hvac-1", Some("hvac"), Some(b"hvac-pw"), None)
            .unwrap();
        // The new policy: the same entries, s2 with a new secret, the reader gone.
        let mut new = copy(&old);
        new.readers.clear();
        if let Some(s) = new.sensors.get_mut("s2") {
            s.secret_hash = hash("new");
        }
        new.keep_verified(&old);
        assert!(new.is_cached("s1", b"s1-secret"));
        assert!(!new.is_cached("s2", b"s2-secret"), "s2's secret changed");
        assert!(!new.is_cached("hvac", b"hvac-pw"), "the reader is gone");
        assert!(!old.must_reconnect(&new, Some("s1"), "s1"));
        assert!(old.must_reconnect(&new, Some("s2"), "s2"));
        assert!(old.must_reconnect(&new, Some("hvac"), "hvac-1"));
        new.keep_verified(&new);
    }

    #[test]
    fn authentication() {
        let p = policy();
        assert_eq!(
            p.authenticate("s1", Some("s1"), Some(b"s1-secret"), None),
            Ok(Identity::Sensor("s1".into()))
        );
        // Cached the second time, same answer.
        assert_eq!(
            p.authenticate("s1", Some("s1"), Some(b"s1-secret"), None),
            Ok(Identity::Sensor("s1".into()))
        );
        let refused = |c, u, pw: Option<&[u8]>| p.authenticate(c, u, pw, None).unwrap_err().0;
        assert_eq!(
            refused("s1", Some("s1"), Some(b"wrong")),
            auth_reason::BAD_SECRET
        );
        assert_eq!(refused("s1", Some("s1"), None), auth_reason::BAD_SECRET);
        assert_eq!(
            refused("x", Some("s1"), Some(b"s1-secret")),
            auth_reason::CLIENT_ID_MISMATCH
        );
        assert_eq!(
            refused("s1", Some("s2"), Some(b"s2-secret")),
            auth_reason::CLIENT_ID_MISMATCH
        );
        assert_eq!(
            refused("ghost", Some("ghost"), Some(b"x")),
            auth_reason::UNKNOWN_USER
        );
        // Anonymous and readers may not take a sensor's client id.
        assert_eq!(refused("s1", None, None), auth_reason::CLIENT_ID_MISMATCH);
        assert_eq!(
            refused("s1", Some("hvac"), Some(b"hvac-pw")),
            auth_reason::CLIENT_ID_MISMATCH
        );
        assert_eq!(
            p.authenticate("viewer", None, None, None),
            Ok(Identity::Anonymous)
        );
        assert_eq!(
            p.authenticate("bms", Some("hvac"), Some(b"hvac-pw"), None),
            Ok(Identity::Reader("hvac".into()))
        );
    }

    #[test]
    fn wills_must_be_own_offline_status() {
        let p = policy();
        let will = |topic, payload| Some(Will { topic, payload });
        let ok = p.authenticate(
            "s1",
            Some("s1"),
            Some(b"s1-secret"),
            will("tellijn/v1/sensors/s1/status", br#"{"online":false}"#),
        );
        assert!(ok.is_ok());
        for (t, payload) in [
            ("tellijn/v1/sensors/s1/counts", &br#"{"online":false}"#[..]),
            ("tellijn/v1/sensors/s2/status", br#"{"online":false}"#),
            ("tellijn/v1/rooms/r1/state", br#""vacant""#),
            ("tellijn/v1/sensors/s1/status", b"\x89PNG garbage"),
            ("tellijn/v1/sensors/s1/status", br#"{"online":true}"#),
        ] {
            let r = p.authenticate("s1", Some("s1"), Some(b"s1-secret"), will(t, payload));
            assert_eq!(r, Err(AuthRefusal(auth_reason::BAD_WILL)), "{t}");
        }
        assert_eq!(
            p.authenticate("v", None, None, will("tellijn/v1/rooms/r1/state", b"x")),
            Err(AuthRefusal(auth_reason::BAD_WILL))
        );
    }

    #[test]
    fn subscriptions() {
        let p = policy();
        let s1 = Identity::Sensor("s1".into());
        assert!(p.may_subscribe(&s1, "tellijn/v1/sensors/s1/ack"));
        assert!(!p.may_subscribe(&s1, "tellijn/v1/sensors/s2/ack"));
        assert!(!p.may_subscribe(&s1, "tellijn/v1/sensors/+/ack"));
        assert!(!p.may_subscribe(&s1, "#"));
        let anon = Identity::Anonymous;
        assert!(p.may_subscribe(&anon, "tellijn/v1/public/rooms/#"));
        assert!(p.may_subscribe(&anon, "tellijn/v1/public/rooms/r1"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/rooms/#"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/rooms/r1/occupancy"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/+/rooms/#"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/#"));
        assert!(!p.may_subscribe(&anon, "#"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/sensors/s1/counts"));
        assert!(!p.may_subscribe(&anon, "tellijn/v1/buildings/lib/occupancy"));
        let hvac = Identity::Reader("hvac".into());
        assert!(p.may_subscribe(&hvac, "tellijn/v1/rooms/r1/state"));
        assert!(p.may_subscribe(&hvac, "tellijn/v1/rooms/+/state"));
        assert!(!p.may_subscribe(&hvac, "tellijn/v1/rooms/r1/occupancy"));
        assert!(!p.may_subscribe(&hvac, "tellijn/v1/rooms/#"));
    }

    #[test]
    fn publishes() {
        let p = policy();
        let now: DateTime<Utc> = "2026-11-22T10:16:00Z".parse().unwrap();
        let s1 = Identity::Sensor("s1".into());
        let good = br#"{"v":1,"sensor":"s1","line":"main","seq":1,"start":"2026-11-22T10:15:00Z","end":"2026-11-22T10:15:01Z","in":3,"out":1}"#;
        let counts = "tellijn/v1/sensors/s1/counts";
        assert!(matches!(
            p.check_publish(&s1, counts, good, false, now),
            Ok(Admitted::Count(_))
        ));
        assert_eq!(
            p.check_publish(&s1, counts, good, true, now),
            Err(Reason::BadRetain)
        );
        assert_eq!(
            p.check_publish(&s1, counts, b"garbage", false, now),
            Err(Reason::NotJson)
        );
        assert_eq!(
            p.check_publish(&s1, "tellijn/v1/sensors/s2/counts", good, false, now),
            Err(Reason::BadTopic)
        );
        assert_eq!(
            p.check_publish(&s1, "tellijn/v1/rooms/r1/state", b"\"vacant\"", true, now),
            Err(Reason::BadTopic)
        );
        assert_eq!(
            p.check_publish(&s1, "tellijn/v1/sensors/s1/ack", b"{\"seq\":9}", true, now),
            Err(Reason::BadTopic)
        );
        let other = String::from_utf8_lossy(good).replace("\"s1\"", "\"s2\"");
        assert_eq!(
            p.check_publish(&s1, counts, other.as_bytes(), false, now),
            Err(Reason::SensorMismatch)
        );
        let status = "tellijn/v1/sensors/s1/status";
        assert!(matches!(
            p.check_publish(&s1, status, br#"{"online":true}"#, true, now),
            Ok(Admitted::Status(_))
        ));
        assert_eq!(
            p.check_publish(&s1, status, br#"{"online":true,"img":1}"#, true, now),
            Err(Reason::UnknownField)
        );
        assert_eq!(
            p.check_publish(&Identity::Anonymous, counts, good, false, now),
            Err(Reason::BadTopic)
        );
        assert_eq!(
            p.check_publish(
                &Identity::Reader("hvac".into()),
                "tellijn/v1/rooms/r1/state",
                b"x",
                true,
                now
            ),
            Err(Reason::BadTopic)
        );
    }

    #[test]
    fn filter_containment() {
        assert!(filter_within("a/b/c", "a/#"));
        assert!(filter_within("a/#", "a/#"));
        assert!(filter_within("a/+/c", "a/#"));
        assert!(filter_within("a/x/c", "a/+/c"));
        assert!(filter_within("a/+/c", "a/+/c"));
        assert!(!filter_within("a/#", "a/+/c"));
        assert!(!filter_within("a/+/c", "a/x/c"));
        assert!(!filter_within("a", "a/+"));
        assert!(!filter_within("a/b/c", "a/+"));
        assert!(!filter_within("#", "a/#"));
    }
}
