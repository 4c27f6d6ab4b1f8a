//! `agent.toml`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

fn duration_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s).map_err(|e| {
        serde::de::Error::custom(format!(
            "must be a duration such as \"1s\" (found {s:?}: {e})"
        ))
    })
}

fn duration_ser<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

/// The agent's configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// This sensor's id (also its MQTT client id and username).
    pub sensor: String,
    /// `mqtt://host:port` (TLS, `mqtts://`, is not built yet).
    pub broker: String,
    /// File holding the sensor's secret.
    pub secret_file: PathBuf,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Directory for the agent's durable state.
    pub outbox: PathBuf,
    /// How long one count message covers.
    #[serde(
        default = "default_interval",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub interval: Duration,
    pub source: SourceConfig,
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// Where counts come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `simulated` (more kinds to come).
    pub kind: SourceKind,
    /// Line names this sensor counts (as in the server config).
    #[serde(default = "default_lines")]
    pub lines: Vec<String>,
    /// Zone names this sensor counts.
    #[serde(default)]
    pub zones: Vec<String>,
    /// Seed for the simulated source (reproducible runs).
    #[serde(default)]
    pub seed: Option<u64>,
}

fn default_lines() -> Vec<String> {
    vec!["main".into()]
}

/// Kinds of count source.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Simulated,
}

/// Errors in the agent config.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}: cannot be read ({source}); check the path given to --config")]
    Read {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl AgentConfig {
    /// Reads and checks `agent.toml`.
    pub fn load(path: &Path) -> Result<AgentConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: file.clone(),
            source,
        })?;
        let mut cfg: AgentConfig = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: file.clone(),
            message: e.message().to_owned(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for p in [&mut cfg.secret_file, &mut cfg.outbox] {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
        cfg.check()
            .map_err(|message| ConfigError::Invalid { file, message })?;
        Ok(cfg)
    }

    /// Checks values; the message names the key and the fix.
    pub fn check(&self) -> Result<(), String> {
        if !tellijn_wire::is_valid_id(&self.sensor) {
            return Err(format!(
                "sensor must be an id of a-z, 0-9 and '-' (found {:?}).",
                self.sensor
            ));
        }
        self.broker_addr()?;
        if self.interval.is_zero() || self.interval > Duration::from_secs(15 * 60) {
            return Err("interval must be between 1ms and 15m.".into());
        }
        if self.source.lines.is_empty() && self.source.zones.is_empty() {
            return Err("source needs at least one of lines or zones.".into());
        }
        for id in self.source.lines.iter().chain(&self.source.zones) {
            if !tellijn_wire::is_valid_id(id) {
                return Err(format!(
                    "source line or zone {id:?} must be an id of a-z, 0-9 and '-'."
                ));
            }
        }
        if self.ca.is_some() || self.cert.is_some() || self.key.is_some() {
            return Err("ca, cert and key (TLS) are not supported by this version; use mqtt:// on a trusted network.".into());
        }
        Ok(())
    }

    /// Host and port from `broker`.
    pub fn broker_addr(&self) -> Result<BrokerAddr, String> {
        let rest = self.broker.strip_prefix("mqtt://").ok_or_else(|| {
            format!(
                "broker must look like \"mqtt://host:1883\" (found {:?}).",
                self.broker
            )
        })?;
        let (host, port) = rest.rsplit_once(':').unwrap_or((rest, "1883"));
        let port = port
            .parse()
            .map_err(|_| format!("broker port must be a number (found {port:?})."))?;
        if host.is_empty() {
            return Err("broker needs a host.".into());
        }
        Ok(BrokerAddr {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_loads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(
            &p,
            "sensor = \"lib-2-door-a\"\nbroker = \"mqtt://127.0.0.1:1883\"\nsecret_file = \"secret\"\noutbox = \"./outbox\"\ninterval = \"1s\"\n[source]\nkind = \"simulated\"\n",
        )
        .unwrap();
        let c = AgentConfig::load(&p).unwrap();
        assert_eq!(
            c.broker_addr().unwrap(),
            BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883
            }
        );
        assert_eq!(c.secret_file, dir.path().join("secret"));
        assert_eq!(c.source.lines, ["main"]);
    }

    #[test]
    fn bad_broker_is_explained() {
        let mut c: AgentConfig = toml::from_str(
            "sensor = \"a\"\nbroker = \"tcp://x\"\nsecret_file = \"s\"\noutbox = \"o\"\n[source]\nkind = \"simulated\"\n",
        )
        .unwrap();
        assert!(c.check().unwrap_err().contains("mqtt://host:1883"));
        c.broker = "mqtt://h:99999".into();
        assert!(c.check().unwrap_err().contains("port"));
    }
}
