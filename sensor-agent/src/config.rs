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
    /// `camera`: the counter's own config file (`counter.toml`), relative to agent.toml.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter: Option<PathBuf>,
    /// `camera`: the counter's executable. Default: `tellijn-counter` beside the agent's
    /// executable, else on `PATH`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counter_bin: Option<PathBuf>,
    /// `camera`: a command (argv, never a shell string) whose stdout carries Y4M frames to the
    /// counter's stdin, e.g. ffmpeg reading an RTSP stream. Without it the counter reads its
    /// own device (v4l2) and its stdin is empty.
    #[serde(
        default,
        deserialize_with = "argv_de",
        skip_serializing_if = "Option::is_none"
    )]
    pub capture: Option<Vec<String>>,
}

fn argv_de<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Argv {
        List(Vec<String>),
        Other(toml::Value),
    }
    match Argv::deserialize(d)? {
        Argv::List(v) => Ok(Some(v)),
        Argv::Other(toml::Value::String(s)) => Err(serde::de::Error::custom(format!(
            "capture must be an array of arguments such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"], never a shell string (found {:?})",
            s.chars().take(40).collect::<String>()
        ))),
        Argv::Other(_) => Err(serde::de::Error::custom(
            "capture must be an array of strings such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"]",
        )),
    }
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
    /// `tellijn-counter` (and optionally a capture command) run by the agent as children.
    Camera,
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
        // `counter_bin` is resolved against agent.toml only when it names a path: a bare
        // name is looked up on PATH, as a shell would.
        let bin_is_path = cfg
            .source
            .counter_bin
            .as_ref()
            .is_some_and(|b| b.components().count() > 1);
        let bin = cfg.source.counter_bin.as_mut().filter(|_| bin_is_path);
        for p in [
            &mut cfg.ca,
            &mut cfg.cert,
            &mut cfg.key,
            &mut cfg.source.counter,
        ]
        .into_iter()
        .flatten()
        .chain(bin)
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
        let camera = self.source.kind == SourceKind::Camera;
        if camera && self.source.counter.is_none() {
            return Err("source kind \"camera\" needs counter = \"counter.toml\", the counter's config file.".into());
        }
        if !camera {
            for (key, set) in [
                ("counter", self.source.counter.is_some()),
                ("counter_bin", self.source.counter_bin.is_some()),
                ("capture", self.source.capture.is_some()),
            ] {
                if set {
                    return Err(format!(
                        "source {key} is only used with kind = \"camera\"; remove it or set kind = \"camera\"."
                    ));
                }
            }
        }
        if let Some(argv) = &self.source.capture
            && argv.first().is_none_or(|a| a.trim().is_empty())
        {
            return Err("source capture must be a non-empty array whose first entry is the program, such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"]; leave it out to let the counter read its v4l2 device.".into());
        }
        if let Some(argv) = &self.source.capture
            && let Some(i) = argv.iter().position(|a| a.contains('\0'))
        {
            return Err(format!(
                "source capture[{i}] holds a NUL character, which no argument can carry."
            ));
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

    const BASE: &str = "sensor = \"cam-1\"\nbroker = \"mqtt://127.0.0.1:1883\"\nsecret_file = \"secret\"\noutbox = \"outbox\"\n[source]\n";

    fn load(source: &str) -> Result<AgentConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, format!("{BASE}{source}")).unwrap();
        AgentConfig::load(&p)
            .map(|mut c| {
                // Paths relative to the temporary directory, for comparisons.
                for p in [&mut c.source.counter, &mut c.source.counter_bin]
                    .into_iter()
                    .flatten()
                {
                    if let Ok(r) = p.strip_prefix(dir.path()) {
                        *p = Path::new("DIR").join(r);
                    }
                }
                c
            })
            .map_err(|e| {
                e.to_string()
                    .replace(&p.display().to_string(), "agent.toml")
            })
    }

    #[test]
    fn a_camera_source_is_accepted() {
        let c = load(
            "kind = \"camera\"\ncounter = \"counter.toml\"\ncapture = [\"ffmpeg\", \"-rtsp_transport\", \"tcp\", \"-i\", \"rtsp://cam/stream\", \"-f\", \"yuv4mpegpipe\", \"-pix_fmt\", \"yuv420p\", \"-\"]\nlines = [\"main\"]\nzones = [\"seats\"]\n",
        )
        .unwrap();
        assert_eq!(c.source.kind, SourceKind::Camera);
        assert_eq!(
            c.source.counter.as_deref(),
            Some(Path::new("DIR/counter.toml"))
        );
        assert_eq!(c.source.counter_bin, None);
        assert_eq!(c.source.capture.as_ref().map(Vec::len), Some(10));
        assert_eq!(c.source.zones, ["seats"]);
        // Without capture (v4l2), and with a counter_bin by name (PATH) or by path.
        let c = load("kind = \"camera\"\ncounter = \"/etc/tellijn/counter.toml\"\ncounter_bin = \"tellijn-counter\"\n").unwrap();
        assert_eq!(c.source.capture, None);
        assert_eq!(
            c.source.counter.as_deref(),
            Some(Path::new("/etc/tellijn/counter.toml"))
        );
        assert_eq!(
            c.source.counter_bin.as_deref(),
            Some(Path::new("tellijn-counter"))
        );
        let c = load(
            "kind = \"camera\"\ncounter = \"c.toml\"\ncounter_bin = \"bin/tellijn-counter\"\n",
        )
        .unwrap();
        assert_eq!(
            c.source.counter_bin.as_deref(),
            Some(Path::new("DIR/bin/tellijn-counter"))
        );
    }

    #[test]
    fn camera_mistakes_are_explained() {
        let cases = [
            (
                "kind = \"camera\"\n",
                "agent.toml: source kind \"camera\" needs counter = \"counter.toml\", the counter's config file.",
            ),
            (
                "kind = \"camera\"\ncounter = \"c.toml\"\ncapture = []\n",
                "agent.toml: source capture must be a non-empty array whose first entry is the program, such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"]; leave it out to let the counter read its v4l2 device.",
            ),
            (
                "kind = \"camera\"\ncounter = \"c.toml\"\ncapture = [\"\", \"-i\"]\n",
                "agent.toml: source capture must be a non-empty array whose first entry is the program, such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"]; leave it out to let the counter read its v4l2 device.",
            ),
            (
                "kind = \"camera\"\ncounter = \"c.toml\"\ncapture = \"ffmpeg -i rtsp://cam | tee\"\n",
                "agent.toml: capture must be an array of arguments such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"], never a shell string (found \"ffmpeg -i rtsp://cam | tee\")",
            ),
            (
                "kind = \"camera\"\ncounter = \"c.toml\"\ncapture = [\"ffmpeg\", 3]\n",
                "agent.toml: capture must be an array of strings such as [\"ffmpeg\", \"-i\", \"rtsp://…\", \"-f\", \"yuv4mpegpipe\", \"-\"]",
            ),
            (
                "kind = \"stdin\"\ncounter = \"c.toml\"\n",
                "agent.toml: source counter is only used with kind = \"camera\"; remove it or set kind = \"camera\".",
            ),
            (
                "kind = \"simulated\"\ncapture = [\"ffmpeg\"]\n",
                "agent.toml: source capture is only used with kind = \"camera\"; remove it or set kind = \"camera\".",
            ),
            (
                "kind = \"camera\"\ncounter = \"c.toml\"\ndevice = \"/dev/video0\"\n",
                "agent.toml: unknown field `device`, expected one of `kind`, `lines`, `zones`, `seed`, `counter`, `counter_bin`, `capture`",
            ),
            (
                "kind = \"webcam\"\n",
                "agent.toml: unknown variant `webcam`, expected one of `simulated`, `stdin`, `camera`",
            ),
        ];
        for (source, want) in cases {
            assert_eq!(load(source).unwrap_err(), want, "{source}");
        }
    }

    #[test]
    fn the_config_hash_of_a_config_without_camera_keys_is_unchanged() {
        // The new optional keys serialise to nothing when absent, so existing agents keep the
        // config hash the server audited.
        let c: AgentConfig = toml::from_str(&format!("{BASE}kind = \"stdin\"\n")).unwrap();
        let text = toml::to_string(&c).unwrap();
        assert!(
            !text.contains("counter") && !text.contains("capture"),
            "{text}"
        );
    }
}
