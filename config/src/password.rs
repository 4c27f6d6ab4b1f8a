//! argon2id password checks shared by every login (MQTT, HTTP Basic, PostgreSQL wire).
//!
//! A login naming no known user is verified against [`DUMMY_HASH`], so it costs the same
//! deliberately slow hash as a known user with a wrong password: user names cannot be told
//! apart by how long a refusal takes.

use argon2::{PasswordHash, PasswordVerifier};

/// An argon2id hash (the default parameters `hash-secret` uses) of a random secret, verified
/// against for unknown users.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVsbGlqbmR1bW15c2FsdA$2oNq0mKxVjzsR4pI6bq0m7U8qVjH8c8J9sQ2n0x3Yqk";

/// Checks `password` against an argon2id PHC string; false for a malformed hash. Blocking.
pub fn matches(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => argon2::Argon2::default()
            .verify_password(password, &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Spends one verification on [`DUMMY_HASH`] (always false). Blocking.
pub fn dummy(password: &[u8]) -> bool {
    matches(DUMMY_HASH, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_costs_a_real_verification() {
        // It parses (so the verification runs) and matches nothing.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!dummy(b"not the password"));
        assert!(!dummy(b""));
    }
}
