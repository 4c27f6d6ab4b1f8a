//! argon2id hashing of secrets.

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// Hashes a secret with argon2id at the crate's default (OWASP) cost: for production configs.
pub fn hash(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?
        .to_string())
}

/// Hashes a secret with argon2id at a low cost (4 MiB, 1 pass): only for the demo's throwaway
/// credentials, so hundreds of simulated sensors start in a second.
pub fn hash_demo(secret: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    let params = Params::new(4096, 1, 1, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))?
        .to_string())
}

/// The config keys whose secret is the demo's password (`demo`): `serve` refuses to start with
/// any, so no deployment runs on a default password.
pub fn demo_credentials(campus: &tellijn_config::Campus) -> Vec<String> {
    let demo = crate::demo::DEMO_USER.1;
    let mut found = Vec::new();
    for (i, u) in campus.users.iter().enumerate() {
        if tellijn_queries::pg::password_matches(&u.password_hash, demo) {
            found.push(format!("users[{i}] ({})", u.name));
        }
    }
    for (i, r) in campus.mqtt_readers.iter().enumerate() {
        if tellijn_queries::pg::password_matches(&r.password_hash, demo) {
            found.push(format!("mqtt_readers[{i}] ({})", r.name));
        }
    }
    for (i, s) in campus.sensors.iter().enumerate() {
        if tellijn_queries::pg::password_matches(&s.secret_hash, demo) {
            found.push(format!("sensors[{i}] ({})", s.id));
        }
    }
    found
}
