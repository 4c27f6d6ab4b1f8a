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
    /// `mqtt://host:1883`, or `mqtts://host:8883` for TLS (then `ca` is required).
    pub broker: String,
    /// File holding the sensor's secret.
    pub secret_file: PathBuf,
    #[serde(default)]
    pub ca: Option<PathBuf>,
    #[serde(default)]
    pub cert: Option<PathBuf>,
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// Directory of the durable outbox.
    pub outbox: PathBuf,
    /// Largest size of the outbox on disk ("100MB"); past it the oldest messages are merged,
    /// then dropped.
    #[serde(default = "default_outbox_max")]
    pub outbox_max: String,
    /// How long one count message covers.
    #[serde(
        default = "default_interval",
        deserialize_with = "duration_de",
        serialize_with = "duration_ser"
    )]
    pub interval: Duration,
    pub source: SourceConfig,
}

fn default_outbox_max() -> String {
    "100MB".into()
}

/// Parses "100MB", "512KB", "1GB" or a plain number of bytes.
pub fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(split);
    let n: u64 = n.parse().ok()?;
    let mul = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mul)
}

fn default_interval() -> Duration {
    Duration::from_secs(1)
}

/// Where counts come from.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// `simulated`, or `stdin` (JSON lines from a local counting process).
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
    Stdin,
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
    pub tls: bool,
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
        for p in [&mut cfg.ca, &mut cfg.cert, &mut cfg.key]
            .into_iter()
            .flatten()
        {
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
        for (what, ids) in [("lines", &self.source.lines), ("zones", &self.source.zones)] {
            if let Some((i, id)) = ids
                .iter()
                .enumerate()
                .find(|(i, id)| ids[..*i].contains(id))
            {
                return Err(format!(
                    "source {what} lists {id:?} twice (entries {} and {i}); list each once.",
                    ids.iter().position(|x| x == id).unwrap_or(0)
                ));
            }
        }
        let addr = self.broker_addr()?;
        if addr.tls && self.ca.is_none() {
            return Err("broker is mqtts:// but no ca is set; give the CA file that signed the broker's certificate.".into());
        }
        if !addr.tls && (self.ca.is_some() || self.cert.is_some()) {
            return Err("ca and cert are only used with an mqtts:// broker.".into());
        }
        if self.cert.is_some() != self.key.is_some() {
            return Err(
                "cert and key go together: give both for a client certificate, or neither.".into(),
            );
        }
        if parse_size(&self.outbox_max).is_none_or(|b| b == 0) {
            return Err(format!(
                "outbox_max must be a size such as \"100MB\" (found {:?}).",
                self.outbox_max
            ));
        }
        Ok(())
    }

    /// Host and port from `broker`.
    pub fn broker_addr(&self) -> Result<BrokerAddr, String> {
        let (tls, rest) = if let Some(r) = self.broker.strip_prefix("mqtts://") {
            (true, r)
        } else if let Some(r) = self.broker.strip_prefix("mqtt://") {
            (false, r)
        } else {
            return Err(format!(
                "broker must look like \"mqtt://host:1883\" or \"mqtts://host:8883\" (found {:?}).",
                self.broker
            ));
        };
        let (host, port) = rest
            .rsplit_once(':')
            .unwrap_or((rest, if tls { "8883" } else { "1883" }));
        let port = port
            .parse()
            .map_err(|_| format!("broker port must be a number (found {port:?})."))?;
        if host.is_empty() {
            return Err("broker needs a host.".into());
        }
        Ok(BrokerAddr {
            host: host.trim_matches(['[', ']']).to_owned(),
            port,
            tls,
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
                port: 1883,
                tls: false
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
        c.broker = "mqtts://h".into();
        assert!(c.check().unwrap_err().contains("no ca"));
        assert_eq!(parse_size("100MB"), Some(100 << 20));
        assert_eq!(parse_size("12"), Some(12));
        assert_eq!(parse_size("1 TB"), None);
        c.broker = "mqtt://h:99999".into();
        assert!(c.check().unwrap_err().contains("port"));
    }

    #[test]
    fn a_line_listed_twice_is_refused() {
        let mut c: AgentConfig = toml::from_str(
            "sensor = \"a\"\nbroker = \"mqtt://h\"\nsecret_file = \"s\"\noutbox = \"o\"\n[source]\nkind = \"stdin\"\nlines = [\"main\", \"side\", \"main\"]\n",
        )
        .unwrap();
        assert_eq!(
            c.check().unwrap_err(),
            "source lines lists \"main\" twice (entries 0 and 2); list each once."
        );
        c.source.lines.pop();
        c.source.zones = vec!["main".into(), "main".into()];
        assert!(
            c.check()
                .unwrap_err()
                .starts_with("source zones lists \"main\" twice")
        );
        c.source.zones.pop();
        assert_eq!(c.check(), Ok(()));
    }
}
