//! # Tellijn wire format
//!
//! The only things a sensor agent may send, and the topics it sends them on.
//!
//! # Layout
//! - [`topic`]: the MQTT topic names of the contract, built and parsed.
//! - [`count`]: count message v1 (line crossings and zone counts): strict parsing into a
//!   [`CountMessage`] or a [`Reason`] from a closed set, semantic validation against the
//!   sender and the campus ([`Directory`]), and serialisation.
//! - [`status`]: the sensor status message (`online`, `since`, `queue`, …), parsed just as
//!   strictly, so that nothing but counts and a few health figures can leave a sensor.
//! - [`reason`]: the closed set of rejection reasons, used as metric labels and audit fields.
//! - [`event`]: what the broker hands the processors once a message passed the gate.
//! - [`clock`]: the clock all timestamps are read from (real, or accelerated in the demo).
//! - [`query`]: the HTTP API's query parameters (`?building=`, `?from=&to=&step=`), checked.
//! - [`headcount`]: head counts as people send them (the API's JSON body, the import CSV), checked.
//!
//! This crate has no heavy dependencies: the sensor agent links it.

pub mod clock;
pub mod count;
pub mod event;
mod fields;
pub mod headcount;
pub mod query;
pub mod reason;
pub mod status;
pub mod topic;

pub use clock::Clock;
pub use count::{CountMessage, Directory, LineCount, MAX_PAYLOAD, ZoneCount};
pub use event::SensorEvent;
pub use reason::Reason;
pub use status::StatusMessage;

/// True when `s` is a valid Tellijn id: `[a-z0-9][a-z0-9-]{0,63}`.
pub fn is_valid_id(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        assert!(is_valid_id("lib-ent-1"));
        assert!(is_valid_id("0"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("-a"));
        assert!(!is_valid_id("Lib"));
        assert!(!is_valid_id("a/b"));
        assert!(!is_valid_id("a+"));
        assert!(!is_valid_id("a#"));
        assert!(!is_valid_id("é"));
    }
}
