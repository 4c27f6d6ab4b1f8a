//! Reading `campus.toml`: the errors it reports, parsing, and naming the key at a TOML error.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::model::Campus;

/// One thing wrong with a config: where, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: {} {}", self.file, self.key, self.message)
        }
    }
}

/// Every error found in a config file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl Campus {
    /// Reads and validates a config file; every error names the file and the key.
    pub fn load(path: &Path) -> Result<Campus, ConfigErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: file.clone(),
                key: String::new(),
                message: format!("cannot be read ({e}); check the path given to --config."),
            }])
        })?;
        Campus::parse(&text, &file)
    }

    /// Parses and validates config text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Campus, ConfigErrors> {
        let campus: Campus = toml::from_str(text).map_err(|e| {
            let key = e.span().map(|s| locate(text, s.start)).unwrap_or_default();
            let mut message = e.message().trim_end_matches('.').to_owned() + ".";
            let at_header = e
                .span()
                .and_then(|s| text.get(s.start..))
                .and_then(|rest| rest.lines().next())
                .is_some_and(|l| l.starts_with(key.as_str()) || l.contains(&format!("[{key}")));
            if at_header && message.starts_with("unknown field") && !key.contains(['.', '[']) {
                message = format!(
                    "is not a table campus.toml has; a table may stand anywhere in the file (after [[sensors]] too), and these exist: {}",
                    message
                        .split_once("expected one of ")
                        .map_or(message.as_str(), |(_, known)| known)
                );
            }
            ConfigErrors(vec![ConfigError {
                file: file.to_owned(),
                key,
                message,
            }])
        })?;
        let errors = campus.validate(file);
        if errors.is_empty() {
            Ok(campus)
        } else {
            Err(ConfigErrors(errors))
        }
    }

    /// The config as TOML (what `demo` writes so it can be inspected and re-used).
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }

    /// SHA-256 (hex) of the config as loaded, for the audit log and transparency.
    pub fn hash(&self) -> String {
        hex::encode(Sha256::digest(self.to_toml().as_bytes()))
    }
}

/// The name of a `[table]` or `[[array]]` header line.
fn header_name(line: &str) -> Option<&str> {
    let t = line.trim();
    let inner = t
        .strip_prefix("[[")
        .and_then(|r| r.strip_suffix("]]"))
        .or_else(|| t.strip_prefix('[').and_then(|r| r.strip_suffix(']')))?;
    Some(inner.trim())
}

/// The dotted key path at a byte offset of a TOML text, best effort (`rooms[2].capacity`).
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let mut table = String::new();
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for line in before.lines() {
        let t = line.trim();
        if let Some(name) = t.strip_prefix("[[").and_then(|r| r.strip_suffix("]]")) {
            let n = counts
                .entry(name.to_owned())
                .and_modify(|c| *c += 1)
                .or_insert(0);
            table = format!("{name}[{n}]");
        } else if let Some(name) = t.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
            table = name.to_owned();
        }
    }
    let line = before.rsplit('\n').next().unwrap_or("");
    let whole_line = text[before.len() - line.len()..]
        .lines()
        .next()
        .unwrap_or("");
    // The error is in a table header itself (an unknown table, wherever it stands): name the
    // table, not the one before it.
    if let Some(name) = header_name(whole_line) {
        return name.to_owned();
    }
    let key = text[before.len() - line.len()..]
        .split('=')
        .next()
        .map(str::trim)
        .filter(|k| !k.is_empty() && !k.starts_with('['))
        .unwrap_or("");
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_owned(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
