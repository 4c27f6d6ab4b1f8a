//! Any text as `campus.toml` or `agent.toml`: parsing returns a config or errors, never
//! panics. A campus that loads is valid, and written back (`to_toml`, what `demo` writes)
//! it loads again as the same campus with the same hash. An agent config that parses can be
//! checked without panicking, and if it checks out it round-trips through TOML too.
#![no_main]

use agent::AgentConfig;
use libfuzzer_sys::fuzz_target;
use tellijn_config::Campus;

// The agent's own `agent.toml` parser (see Cargo.toml for why not the crate).
#[allow(dead_code)]
#[path = "../../sensor-agent/src/config.rs"]
mod agent;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Campus::parse(text, "campus.toml") {
        Ok(c) => {
            assert!(c.validate("campus.toml").is_empty());
            let again = Campus::parse(&c.to_toml(), "written.toml")
                .unwrap_or_else(|e| panic!("written back, the campus no longer loads:\n{e}"));
            assert_eq!(again, c);
            assert_eq!(again.hash(), c.hash());
        }
        Err(e) => assert!(!e.0.is_empty(), "an error without a message"),
    }
    if let Ok(a) = toml::from_str::<AgentConfig>(text) {
        let _ = a.broker_addr();
        if a.check().is_ok() {
            let written = toml::to_string(&a).expect("an agent config serialises");
            let again: AgentConfig = toml::from_str(&written)
                .unwrap_or_else(|e| panic!("written back, the agent config no longer parses: {e}"));
            assert_eq!(again, a);
            assert_eq!(again.check(), Ok(()));
        }
    }
});
