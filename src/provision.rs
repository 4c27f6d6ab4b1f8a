//! `tellijn sensor add` and `tellijn sensor rotate`: provisioning without hand-editing secrets.
//!
//! `add` generates a strong secret (32 random bytes from the operating system's generator, as
//! 64 hex digits), appends the sensor with its argon2id hash to `campus.toml` with `toml_edit`
//! (every comment and the layout stay), and writes `agent.toml` and `secret` (mode 0600) for the
//! installer to copy to the camera computer. `rotate` replaces one sensor's hash and writes the
//! new secret. Each is audited (`sensor_provisioned`: sensor, action, config file and hash —
//! never the secret nor its hash).
//!
//! Order, so that nothing changes unaudited: the audit log is opened first (refused while a
//! running server holds it: the change takes effect only at its next start anyway), the new
//! text is validated as a whole config (rooms exist, ids unique, …), the output files are
//! created (never overwritten), the audit line is written and synced, and only then is the
//! config replaced (written aside, then renamed over it).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rand::TryRngCore;
use tellijn_config::{AuditEvent, AuditLog, Campus};
use toml_edit::{Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, value};

/// What to add: the sensor's id, its lines (`line:into[:from]`) and zones (`zone:room`).
pub struct NewSensor {
    pub id: String,
    pub lines: Vec<String>,
    pub zones: Vec<String>,
    /// The broker URL as the camera computer reaches it (`mqtts://campus.example:8883`).
    pub broker: String,
}

/// What was written.
pub struct Provisioned {
    pub config: PathBuf,
    pub secret: PathBuf,
    pub agent: Option<PathBuf>,
    /// A server was running (it holds the audit log): the audit line waits in its inbox and
    /// the change takes effect at its next reload (`systemctl reload tellijn`) or start.
    pub queued: bool,
}

/// Where a change's audit line goes: the log itself, or, while a server holds it, its inbox
/// (recorded at the server's next reload or start; [`tellijn_config::audit::inbox`]).
enum Trail {
    Log(AuditLog),
    Inbox(PathBuf),
}

/// 32 bytes from the operating system's generator, as 64 hex digits.
pub fn new_secret() -> anyhow::Result<String> {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .context("the operating system's random generator failed")?;
    Ok(hex::encode(bytes))
}

fn line_table(spec: &str) -> anyhow::Result<InlineTable> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (line, into, from) = match parts.as_slice() {
        [line, into] => (*line, *into, None),
        [line, into, from] => (*line, *into, Some(*from)),
        _ => bail!(
            "--line {spec:?}: write LINE:INTO or LINE:INTO:FROM, e.g. main:lib-2-study:lib-2-hall"
        ),
    };
    let mut t = InlineTable::new();
    t.insert("line", line.into());
    t.insert("into", into.into());
    if let Some(from) = from {
        t.insert("from", from.into());
    }
    Ok(t)
}

fn zone_table(spec: &str) -> anyhow::Result<InlineTable> {
    let Some((zone, room)) = spec.split_once(':') else {
        bail!("--zone {spec:?}: write ZONE:ROOM, e.g. seats:lib-2-study");
    };
    let mut t = InlineTable::new();
    t.insert("zone", zone.into());
    t.insert("room", room.into());
    Ok(t)
}

/// The config text with `sensor` appended to `[[sensors]]`; every other byte stays.
pub fn with_sensor(text: &str, sensor: &NewSensor, hash: &str) -> anyhow::Result<String> {
    let mut doc: DocumentMut = text.parse().context("the config is not valid TOML")?;
    let mut t = Table::new();
    t.insert("id", value(sensor.id.as_str()));
    t.insert("secret_hash", value(hash));
    if !sensor.lines.is_empty() {
        let mut a = Array::new();
        for l in &sensor.lines {
            a.push(line_table(l)?);
        }
        t.insert("lines", value(a));
    }
    if !sensor.zones.is_empty() {
        let mut a = Array::new();
        for z in &sensor.zones {
            a.push(zone_table(z)?);
        }
        t.insert("zones", value(a));
    }
    match doc.get_mut("sensors") {
        None => {
            let mut a = ArrayOfTables::new();
            a.push(t);
            doc.insert("sensors", Item::ArrayOfTables(a));
        }
        Some(Item::ArrayOfTables(a)) => a.push(t),
        Some(_) => bail!("sensors in the config is not an array of [[sensors]] tables"),
    }
    Ok(doc.to_string())
}

/// The config text with `id`'s `secret_hash` replaced; every other byte stays.
pub fn with_hash(text: &str, id: &str, hash: &str) -> anyhow::Result<String> {
    let mut doc: DocumentMut = text.parse().context("the config is not valid TOML")?;
    let Some(Item::ArrayOfTables(sensors)) = doc.get_mut("sensors") else {
        bail!("the config has no [[sensors]]");
    };
    let Some(t) = sensors
        .iter_mut()
        .find(|t| t.get("id").and_then(|v| v.as_str()) == Some(id))
    else {
        bail!("the config has no sensor {id:?}");
    };
    let decor = t
        .get("secret_hash")
        .and_then(|v| v.as_value())
        .map(|v| v.decor().clone());
    let mut v = toml_edit::Value::from(hash);
    if let Some(d) = decor {
        *v.decor_mut() = d;
    }
    t.insert("secret_hash", Item::Value(v));
    Ok(doc.to_string())
}

fn agent_toml(sensor: &NewSensor) -> String {
    format!(
        "# Written by `tellijn sensor add` for {id}. Copy this file and `secret` (mode 0600) to the\n\
         # camera computer; the secret is nowhere else (the server keeps only its argon2id hash).\n\
         # With the tellijn-camera package: both go to /etc/tellijn/ (secret owned by root, group\n\
         # tellijn, mode 0640), and the outbox is the package's /var/lib/tellijn-agent/outbox.\n\
         sensor = \"{id}\"\n\
         broker = \"{broker}\"\n\
         secret_file = \"secret\"          # relative to this file\n\
         outbox = \"./outbox\"             # counts wait here until acked; package: /var/lib/tellijn-agent/outbox\n\
         interval = \"1s\"\n\
         \n\
         [source]\n\
         kind = \"stdin\"                  # or \"camera\" with counter = \"counter.toml\" (docs/CAMERA.md)\n",
        id = sensor.id,
        broker = sensor.broker,
    )
}

/// Creates `path` with `text`, mode 0600; refuses to overwrite.
fn create_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| {
            format!(
                "cannot create {} (it must not exist yet: nothing is overwritten)",
                path.display()
            )
        })?;
    f.write_all(text.as_bytes())
        .and_then(|()| f.sync_all())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Replaces `path` with `text`: written aside, synced, renamed over it, keeping its mode.
fn replace(path: &Path, text: &str) -> anyhow::Result<()> {
    let aside = path.with_extension("toml.new");
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions();
    {
        let mut f = std::fs::File::create(&aside)
            .with_context(|| format!("cannot write {}", aside.display()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .with_context(|| format!("cannot write {}", aside.display()))?;
    }
    std::fs::set_permissions(&aside, mode)
        .with_context(|| format!("cannot set the mode of {}", aside.display()))?;
    std::fs::rename(&aside, path).with_context(|| format!("cannot replace {}", path.display()))
}

/// Opens the audit log of the config's data directory (or `data`), or its inbox while a
/// server holds it, and the config's text.
fn begin(config: &Path, data: Option<&Path>) -> anyhow::Result<(String, Trail)> {
    let text = std::fs::read_to_string(config)
        .with_context(|| format!("cannot read {}", config.display()))?;
    let campus = Campus::parse(&text, &config.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the config has errors already; fix them first (tellijn check-config)")?;
    let data = data.map_or_else(|| campus.server.data_dir.clone(), Path::to_path_buf);
    let trail = match AuditLog::open(&data) {
        Ok(audit) => Trail::Log(audit),
        Err(tellijn_config::audit::AuditError::Held { .. }) => Trail::Inbox(data),
        Err(e) => return Err(e.into()),
    };
    Ok((text, trail))
}

/// Records the change (before the config is replaced: no change without its audit line) and
/// replaces the config. Returns whether the line was queued for a running server.
fn finish(
    config: &Path,
    trail: &Trail,
    new_text: &str,
    sensor: &str,
    action: &str,
) -> anyhow::Result<bool> {
    let campus = Campus::parse(new_text, &config.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let event = AuditEvent::SensorProvisioned {
        sensor: sensor.to_owned(),
        action: action.to_owned(),
        source: config.display().to_string(),
        config_sha256: campus.hash(),
    };
    let queued = match trail {
        Trail::Log(audit) => {
            audit.record_confirmed(event)?;
            audit.sync()?;
            false
        }
        Trail::Inbox(data) => {
            tellijn_config::audit::inbox::queue(data, &event)?;
            true
        }
    };
    replace(config, new_text)?;
    Ok(queued)
}

/// `tellijn sensor add`.
pub fn add(
    config: &Path,
    data: Option<&Path>,
    sensor: &NewSensor,
    out: &Path,
) -> anyhow::Result<Provisioned> {
    if sensor.lines.is_empty() && sensor.zones.is_empty() {
        bail!("a sensor needs at least one --line LINE:INTO[:FROM] or --zone ZONE:ROOM");
    }
    let (text, trail) = begin(config, data)?;
    let secret = new_secret()?;
    let hash = tellijn_config::secrets::hash(&secret)?;
    let new_text = with_sensor(&text, sensor, &hash)?;
    // Validated whole before anything is written: unknown rooms, a taken id, a bad name.
    Campus::parse(&new_text, &config.display().to_string())
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the sensor was not added")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let (secret_path, agent_path) = (out.join("secret"), out.join("agent.toml"));
    create_private(&secret_path, &format!("{secret}\n"))?;
    if let Err(e) = create_private(&agent_path, &agent_toml(sensor)) {
        let _ = std::fs::remove_file(&secret_path);
        return Err(e);
    }
    let queued = finish(config, &trail, &new_text, &sensor.id, "add")?;
    Ok(Provisioned {
        config: config.to_path_buf(),
        secret: secret_path,
        agent: Some(agent_path),
        queued,
    })
}

/// `tellijn sensor rotate`.
pub fn rotate(
    config: &Path,
    data: Option<&Path>,
    id: &str,
    out: &Path,
) -> anyhow::Result<Provisioned> {
    let (text, trail) = begin(config, data)?;
    let secret = new_secret()?;
    let hash = tellijn_config::secrets::hash(&secret)?;
    let new_text = with_hash(&text, id, &hash)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let secret_path = out.join("secret");
    create_private(&secret_path, &format!("{secret}\n"))?;
    let queued = finish(config, &trail, &new_text, id, "rotate")?;
    Ok(Provisioned {
        config: config.to_path_buf(),
        secret: secret_path,
        agent: None,
        queued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# The campus.\n[server]\ndata_dir = \"./data\"  # here\n\n[[buildings]]\nid = \"b\"\nname = \"B\"\n\n[[rooms]]\nid = \"r1\"\nbuilding = \"b\"\nname = \"R\"\nkind = \"study\"\ncapacity = 10\n\n# The door.\n[[sensors]]\nid = \"s1\"\nsecret_hash = \"OLD\"   # keep me\nlines = [ { line = \"main\", into = \"r1\" } ]\n\n[[users]]\nname = \"u\"\npassword_hash = \"x\"\nrole = \"steward\"\n";

    fn sensor(id: &str) -> NewSensor {
        NewSensor {
            id: id.into(),
            lines: vec!["main:r1:b".into()],
            zones: vec!["seats:r1".into()],
            broker: "mqtt://x:1883".into(),
        }
    }

    #[test]
    fn a_sensor_is_appended_and_every_other_byte_stays() {
        let out = with_sensor(TEXT, &sensor("s2"), "HASH").unwrap();
        assert!(out.starts_with(TEXT.split("[[users]]").next().unwrap()));
        assert!(out.contains("# The door.") && out.contains("# keep me") && out.contains("# here"));
        let doc: toml::Value = toml::from_str(&out).unwrap();
        let s = &doc["sensors"].as_array().unwrap()[1];
        assert_eq!(s["id"].as_str(), Some("s2"));
        assert_eq!(s["secret_hash"].as_str(), Some("HASH"));
        assert_eq!(s["lines"][0]["from"].as_str(), Some("b"));
        assert_eq!(s["zones"][0]["room"].as_str(), Some("r1"));
        // The users table is still a table of its own, after the sensors.
        assert_eq!(doc["users"][0]["name"].as_str(), Some("u"));
    }

    #[test]
    fn a_rotation_replaces_one_hash_and_keeps_its_comment() {
        let out = with_hash(TEXT, "s1", "NEW").unwrap();
        assert_eq!(out, TEXT.replace("\"OLD\"", "\"NEW\""));
        assert!(with_hash(TEXT, "nope", "NEW").is_err());
    }

    #[test]
    fn bad_specs_say_how_to_write_them() {
        let mut s = sensor("s2");
        s.lines = vec!["main".into()];
        let e = with_sensor(TEXT, &s, "H").unwrap_err().to_string();
        assert!(e.contains("LINE:INTO"), "{e}");
        let mut s = sensor("s2");
        s.zones = vec!["seats".into()];
        let e = with_sensor(TEXT, &s, "H").unwrap_err().to_string();
        assert!(e.contains("ZONE:ROOM"), "{e}");
    }

    #[test]
    fn secrets_are_long_random_and_distinct() {
        let (a, b) = (new_secret().unwrap(), new_secret().unwrap());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
