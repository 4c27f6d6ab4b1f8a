//! Any text as `counter.toml`: parsing returns a config or errors, never panics. A config
//! that parses has no problems; a refusal has a message, and a refusal for problems names at
//! least one, each a sentence about `counter.toml`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tellijn_counter::config::{ConfigError, CounterConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match CounterConfig::parse(text) {
        Ok(c) => {
            let p = c.problems();
            assert!(p.is_empty(), "a config that parsed has problems: {p:?}");
            assert!(!c.lines.is_empty() || !c.zones.is_empty(), "nothing to count");
        }
        Err(ConfigError::Syntax(m)) => assert!(m.starts_with("counter.toml: ") && m.len() > 14, "{m:?}"),
        Err(ConfigError::Invalid(p)) => {
            assert!(!p.is_empty(), "refused without a reason");
            for m in &p {
                assert!(m.starts_with("counter.toml: ") && m.len() > 14, "{m:?}");
            }
        }
    }
});
