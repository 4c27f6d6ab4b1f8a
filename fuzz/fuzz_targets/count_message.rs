//! Any bytes on a counts or status topic: parse must return a message or a reason, never
//! panic, and whatever parses must serialise to something that parses the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellijn_wire::{CountMessage, Directory, StatusMessage};

struct Any;
impl Directory for Any {
    fn has_line(&self, _: &str, _: &str) -> bool {
        true
    }
    fn has_zone(&self, _: &str, _: &str) -> bool {
        true
    }
}

fuzz_target!(|data: &[u8]| {
    let now = chrono::DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default();
    if let Ok(m) = CountMessage::check(data, "lib-ent-1", &Any, now) {
        assert_eq!(CountMessage::parse(&m.to_json()), Ok(m));
    }
    if let Ok(s) = StatusMessage::parse(data) {
        assert_eq!(StatusMessage::parse(&s.to_json()), Ok(s));
    }
});
