//! A config reload (`SIGHUP`, `systemctl reload tellijn`): a new `campus.toml` in force
//! without a restart.
//!
//! Refused, with the running config left as it was, when the file does not load (every error
//! is reported), when it changes what only a restart can change (the listeners' addresses,
//! the data directory, TLS, `[limits]`: everything in `[server]` but `anonymous_read`), when
//! a calendar's token file cannot be read, or when the processors cannot take it.
//!
//! Otherwise, in this order: the processors (flush, save, open again with the new campus:
//! [`tellijn_processors::reload`]); the broker's policy, disconnecting every client whose
//! rules changed ([`tellijn_broker::Policy::must_reconnect`]); the API (rooms, users — its
//! verified-credential cache is emptied), the SQL campus tables and retention, the
//! PostgreSQL logins (connections of removed or changed users are closed); the public tree
//! (topics of rooms removed or made private are cleared); the metrics' labels; the bookings,
//! started again with the new feeds. The audit log records the new config's hash.

use std::path::Path;
use std::sync::Arc;

use tellijn_config::{AuditEvent, Campus};
use tellijn_processors::reload::Reload;

use super::Server;

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reloaded {
    /// SHA-256 of the config now in force.
    pub config_sha256: String,
    /// False when the file held the config already in force (nothing was done).
    pub changed: bool,
    /// MQTT clients disconnected because their rules changed.
    pub disconnected: usize,
}

/// Why a reload was refused; the running config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error(
        "the new config changes what only a restart can change ({}); nothing was changed. Restart the server (`systemctl restart tellijn`) to apply it, or undo those changes and reload again",
        .0.join(", ")
    )]
    NeedsRestart(Vec<String>),
    #[error("the new config cannot be used: {0:#}; nothing was changed")]
    Unusable(anyhow::Error),
    #[error(
        "the processors could not take the new config ({0}); nothing was changed and the running config stays in force"
    )]
    Processors(String),
}

/// The settings of `old` and `new` that differ and that only a restart can apply, as
/// `[table] key`.
pub fn needs_restart(old: &Campus, new: &Campus) -> Vec<String> {
    let mut out = Vec::new();
    let table = |v: toml::Value| match v {
        toml::Value::Table(t) => t,
        _ => toml::Table::new(),
    };
    let pairs = [
        (
            "server",
            toml::Value::try_from(&old.server),
            toml::Value::try_from(&new.server),
        ),
        (
            "limits",
            toml::Value::try_from(&old.limits),
            toml::Value::try_from(&new.limits),
        ),
    ];
    for (name, a, b) in pairs {
        let (a, b) = match (a, b) {
            (Ok(a), Ok(b)) => (table(a), table(b)),
            _ => {
                out.push(format!("[{name}]"));
                continue;
            }
        };
        let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            // Who may read the public tree anonymously is the broker's policy: reloadable.
            if name == "server" && k == "anonymous_read" {
                continue;
            }
            if a.get(k) != b.get(k) {
                out.push(format!("[{name}] {k}"));
            }
        }
    }
    if old.tls != new.tls {
        out.push("[tls]".to_owned());
    }
    out
}

/// The retained topics `old` had and `new` no longer has, to clear with an empty payload:
/// the occupancy, state and booking of a room removed (or no longer booked by any feed), its
/// Home Assistant discovery, a removed building's occupancy, a removed sensor's ack. (The
/// public tree is the bridge's: [`crate::view::PublicTree::reload`].)
pub fn retired_topics(old: &Campus, new: &Campus) -> Vec<String> {
    use tellijn_wire::topic;
    let mut out = Vec::new();
    let has_room = |c: &Campus, id: &str| c.rooms.iter().any(|r| r.id == id);
    for r in old.rooms.iter().filter(|r| !has_room(new, &r.id)) {
        out.push(topic::room_occupancy(&r.id));
        out.push(topic::room_state(&r.id));
    }
    let (booked, still) = (crate::bookings::covered(old), crate::bookings::covered(new));
    for r in booked.difference(&still) {
        out.push(crate::bookings::payload::topic(r));
    }
    if old.integrations.home_assistant {
        for r in old
            .rooms
            .iter()
            .filter(|r| !(new.integrations.home_assistant && has_room(new, &r.id)))
        {
            for kind_object in ["binary_sensor", "sensor"]
                .iter()
                .zip(["occupied", "people"])
            {
                let (kind, object) = kind_object;
                out.push(format!(
                    "homeassistant/{kind}/tellijn_{}/{object}/config",
                    r.id
                ));
            }
        }
    }
    for b in old
        .buildings
        .iter()
        .filter(|b| !new.buildings.iter().any(|x| x.id == b.id))
    {
        out.push(topic::building_occupancy(&b.id));
    }
    for s in old
        .sensors
        .iter()
        .filter(|s| !new.sensors.iter().any(|x| x.id == s.id))
    {
        out.push(topic::sensor(&s.id, topic::SensorTopic::Ack));
    }
    out
}

impl Server {
    /// The campus in force.
    pub fn campus(&self) -> Arc<Campus> {
        self.campus.borrow().clone()
    }

    /// Puts `campus` in force (see the module's documentation); `source` says where it came
    /// from, for the audit log ("/etc/tellijn/campus.toml (SIGHUP)").
    pub async fn reload(&mut self, campus: Campus, source: &str) -> Result<Reloaded, ReloadError> {
        let old = self.campus();
        let restart = needs_restart(&old, &campus);
        if !restart.is_empty() {
            return Err(ReloadError::NeedsRestart(restart));
        }
        let config_sha256 = campus.hash();
        if config_sha256 == old.hash() {
            return Ok(Reloaded {
                config_sha256,
                changed: false,
                disconnected: 0,
            });
        }
        crate::bookings::tokens(&campus).map_err(ReloadError::Unusable)?;
        let campus = Arc::new(campus);

        // The processors first: the only part that can still refuse.
        let (done, result) = tokio::sync::oneshot::channel();
        let gone = || ReloadError::Processors("they are not running".to_owned());
        self.reloads
            .send(Reload {
                campus: campus.clone(),
                done,
            })
            .await
            .map_err(|_| gone())?;
        result
            .await
            .map_err(|_| gone())?
            .map_err(|e| ReloadError::Processors(e.to_string()))?;

        let disconnected = self
            .broker
            .set_policy(tellijn_broker::Policy::new(&campus))
            .await;
        self.api.set_campus(campus.clone());
        if let Err(e) = self.history.set_campus(&campus) {
            tracing::error!("The SQL campus tables could not be replaced after a reload: {e}");
        }
        self.pg.set_users(&campus.users);
        self.metrics.seed(&campus);
        self.campus.send_replace(campus.clone());
        if let Some(b) = self.bookings.take() {
            b.stop();
        }
        self.bookings_options.campus = campus.clone();
        match crate::bookings::start(self.bookings_options.clone()).await {
            Ok(b) => self.bookings = b,
            Err(e) => tracing::error!(
                "The bookings could not start again after a reload: {e:#}; they stay stopped until the next reload or restart"
            ),
        }
        for topic in retired_topics(&old, &campus) {
            if let Err(e) = self.broker.publish_retained(&topic, Vec::new()).await {
                tracing::error!(%topic, "Clearing a retained topic after a reload failed: {e}");
            }
        }
        if let Err(e) = self.audit.record(AuditEvent::ConfigLoaded {
            config_sha256: config_sha256.clone(),
            source: source.to_owned(),
        }) {
            tracing::error!("Writing the audit log failed: {e}");
        }
        tracing::info!(
            config_sha256,
            disconnected,
            "Reloaded the config: {} rooms, {} sensors, {} users, {} MQTT readers, {} calendars.",
            campus.rooms.len(),
            campus.sensors.len(),
            campus.users.len(),
            campus.mqtt_readers.len(),
            campus.calendars.len()
        );
        Ok(Reloaded {
            config_sha256,
            changed: true,
            disconnected,
        })
    }
}

/// Reads `path` again and puts it in force (what `SIGHUP` does). A refusal is logged with
/// every reason and recorded in the audit log; the running config stays.
pub async fn reload_file(
    server: &mut Server,
    path: &Path,
    data_dir: &Path,
) -> Result<Reloaded, ReloadError> {
    let source = format!("{} (reload)", path.display());
    // What `tellijn sensor add|rotate` queued while this server held the log, before the
    // reload that puts it in force.
    match server.audit.take_inbox() {
        Ok(0) => {}
        Ok(n) => tracing::info!("Recorded {n} audit lines queued in the inbox."),
        Err(e) => tracing::error!("Recording the audit inbox failed: {e}"),
    }
    let mut hash = None;
    let result = async {
        let campus =
            Campus::load(path).map_err(|e| ReloadError::Unusable(anyhow::anyhow!("{e}")))?;
        hash = Some(campus.hash());
        // Blocking (argon2id), as at the start; only new or changed secrets cost anything.
        let dir = data_dir.to_path_buf();
        let (campus, demo) = tokio::task::spawn_blocking(move || {
            let demo = tellijn_config::secrets::demo_credentials(&campus, &dir);
            (campus, demo)
        })
        .await
        .map_err(|e| {
            ReloadError::Unusable(anyhow::anyhow!("checking the secrets panicked: {e}"))
        })?;
        let demo = demo.map_err(|e| ReloadError::Unusable(e.into()))?;
        if !demo.is_empty() {
            return Err(ReloadError::Unusable(anyhow::anyhow!(
                "{} use the demo password; give each its own secret (`tellijn hash-secret`)",
                demo.join(", ")
            )));
        }
        server.reload(campus, &source).await
    }
    .await;
    let outcome = match &result {
        Ok(r) if r.changed => "applied",
        Ok(_) => "unchanged",
        Err(_) => "refused",
    };
    server
        .metrics
        .config_reloads
        .get_or_create(&tellijn_config::metrics::OutcomeLabels { outcome })
        .inc();
    match &result {
        Ok(r) if r.changed => {}
        Ok(_) => tracing::info!(
            "Reloaded {}: it holds the config already in force.",
            path.display()
        ),
        Err(e) => {
            tracing::error!("Refused to reload {}: {e}", path.display());
            if let Err(audit) = server.audit.record(AuditEvent::ConfigRefused {
                source,
                config_sha256: hash,
                reason: e.to_string(),
            }) {
                tracing::error!("Writing the audit log failed: {audit}");
            }
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn campus(server: &str, limits: &str) -> Campus {
        let text = tellijn_test_support::CampusToml::new()
            .section(&format!("[server]\n{server}"))
            .section(&format!("[limits]\n{limits}"))
            .building("b", "B")
            .room("r1", "b", "Room", "study", 10)
            .toml();
        Campus::parse(&text, "test").unwrap()
    }

    #[test]
    fn the_topics_of_what_was_removed_are_retired_and_no_others() {
        let text = tellijn_test_support::CampusToml::new()
            .section("[integrations]\nhome_assistant = true")
            .section("[[calendars]]\nurl = \"http://127.0.0.1:1/x.ics\"\nroom = \"r2\"")
            .building("b", "B")
            .building("c", "C")
            .room("r1", "b", "Room", "study", 10)
            .room("r2", "c", "Hall", "lecture-hall", 100)
            .line_sensor("s1", tellijn_test_support::HASH, &[("main", "r1", None)])
            .line_sensor("s2", tellijn_test_support::HASH, &[("main", "r2", None)])
            .toml();
        let old = Campus::parse(&text, "test").unwrap();
        assert!(retired_topics(&old, &old).is_empty());
        let mut new = old.clone();
        new.rooms.retain(|r| r.id != "r2");
        new.buildings.retain(|b| b.id != "c");
        new.sensors.retain(|s| s.id != "s2");
        new.calendars.clear();
        assert_eq!(
            retired_topics(&old, &new),
            [
                "tellijn/v1/rooms/r2/occupancy",
                "tellijn/v1/rooms/r2/state",
                "tellijn/v1/rooms/r2/booking",
                "homeassistant/binary_sensor/tellijn_r2/occupied/config",
                "homeassistant/sensor/tellijn_r2/people/config",
                "tellijn/v1/buildings/c/occupancy",
                "tellijn/v1/sensors/s2/ack",
            ]
        );
    }

    #[test]
    fn what_only_a_restart_can_change_is_named_and_the_rest_is_not() {
        let base = campus("http = \"127.0.0.1:8080\"", "");
        assert!(needs_restart(&base, &base).is_empty());
        let mut more_rooms = base.clone();
        more_rooms.rooms.clear();
        assert!(needs_restart(&base, &more_rooms).is_empty(), "rooms reload");
        let anon = campus(
            "http = \"127.0.0.1:8080\"\nanonymous_read = [\"tellijn/v1/public/#\"]",
            "",
        );
        assert!(
            needs_restart(&base, &anon).is_empty(),
            "anonymous_read reloads"
        );
        let moved = campus(
            "http = \"127.0.0.1:9090\"\ndata_dir = \"/elsewhere\"",
            "max_connections = 7",
        );
        assert_eq!(
            needs_restart(&base, &moved),
            [
                "[server] data_dir",
                "[server] http",
                "[limits] max_connections"
            ]
        );
    }
}
