//! # Tellijn test support
//!
//! Campus files for tests, built from a few calls instead of copied TOML, so a change to the
//! config format is made once. Only a dev-dependency; depends on nothing.
//!
//! # Layout
//! - [`CampusToml`]: a `campus.toml` text from free sections (`[server]`, `[privacy]`,
//!   `[[users]]` …), buildings, rooms and sensors; [`CampusToml::with`] adds lines to the table
//!   added last.
//! - [`HASH`]: a well-formed argon2id hash for campuses whose secrets no test checks.
//!
//! ```
//! let text = tellijn_test_support::CampusToml::new()
//!     .building("b", "B")
//!     .room("r1", "b", "Hall", "study", 50)
//!     .with("public = true")
//!     .line_sensor("s1", tellijn_test_support::HASH, &[("main", "r1", None)])
//!     .toml();
//! assert!(text.contains("[[sensors]]\nid = \"s1\""));
//! ```

/// A valid argon2id PHC string (of no secret anyone uses): for campuses whose sensors never
/// log in.
pub const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$RdescudvJCsgt3ub+b+dWRWJTmaaJObG";

/// A `campus.toml` under construction.
#[derive(Debug, Clone, Default)]
pub struct CampusToml {
    parts: Vec<String>,
}

impl CampusToml {
    pub fn new() -> CampusToml {
        CampusToml::default()
    }

    /// Free TOML (a `[server]` or `[privacy]` section, `[[users]]`, …), placed as it comes.
    pub fn section(mut self, toml: &str) -> CampusToml {
        self.parts.push(toml.trim_matches('\n').to_owned());
        self
    }

    /// A line added to the table added last (`public = true`, `reset = "03:00"`, …).
    pub fn with(mut self, line: &str) -> CampusToml {
        if let Some(last) = self.parts.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
        self
    }

    pub fn building(self, id: &str, name: &str) -> CampusToml {
        self.section(&format!("[[buildings]]\nid = \"{id}\"\nname = \"{name}\""))
    }

    pub fn room(
        self,
        id: &str,
        building: &str,
        name: &str,
        kind: &str,
        capacity: u32,
    ) -> CampusToml {
        self.section(&format!(
            "[[rooms]]\nid = \"{id}\"\nbuilding = \"{building}\"\nname = \"{name}\"\nkind = \"{kind}\"\ncapacity = {capacity}"
        ))
    }

    /// A sensor counting lines: `(line, into, from)`.
    pub fn line_sensor(
        self,
        id: &str,
        secret_hash: &str,
        lines: &[(&str, &str, Option<&str>)],
    ) -> CampusToml {
        let lines: Vec<String> = lines
            .iter()
            .map(|(line, into, from)| match from {
                Some(f) => format!("{{ line = \"{line}\", into = \"{into}\", from = \"{f}\" }}"),
                None => format!("{{ line = \"{line}\", into = \"{into}\" }}"),
            })
            .collect();
        self.section(&format!(
            "[[sensors]]\nid = \"{id}\"\nsecret_hash = \"{secret_hash}\"\nlines = [{}]",
            lines.join(", ")
        ))
    }

    /// A sensor counting people in zones: `(zone, room)`.
    pub fn zone_sensor(self, id: &str, secret_hash: &str, zones: &[(&str, &str)]) -> CampusToml {
        let zones: Vec<String> = zones
            .iter()
            .map(|(zone, room)| format!("{{ zone = \"{zone}\", room = \"{room}\" }}"))
            .collect();
        self.section(&format!(
            "[[sensors]]\nid = \"{id}\"\nsecret_hash = \"{secret_hash}\"\nzones = [{}]",
            zones.join(", ")
        ))
    }

    /// The file's text.
    pub fn toml(&self) -> String {
        let mut s = self.parts.join("\n");
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_out_in_order_with_their_extra_lines() {
        let t = CampusToml::new()
            .section("[server]\nflush_interval = \"1s\"")
            .building("b", "B")
            .room("r1", "b", "Hall", "study", 50)
            .with("public = true")
            .line_sensor(
                "s1",
                "H",
                &[("main", "r1", None), ("inner", "r1", Some("b"))],
            )
            .zone_sensor("s2", "H", &[("seats", "r1")])
            .toml();
        assert_eq!(
            t,
            "[server]\nflush_interval = \"1s\"\n[[buildings]]\nid = \"b\"\nname = \"B\"\n[[rooms]]\nid = \"r1\"\nbuilding = \"b\"\nname = \"Hall\"\nkind = \"study\"\ncapacity = 50\npublic = true\n[[sensors]]\nid = \"s1\"\nsecret_hash = \"H\"\nlines = [{ line = \"main\", into = \"r1\" }, { line = \"inner\", into = \"r1\", from = \"b\" }]\n[[sensors]]\nid = \"s2\"\nsecret_hash = \"H\"\nzones = [{ zone = \"seats\", room = \"r1\" }]\n"
        );
    }
}
