//! Every argon2id secret Tellijn hashes or verifies: MQTT sensors and readers, HTTP Basic and
//! PostgreSQL wire logins, `tellijn hash-secret` and the demo.
//!
//! - [`hash`] (production, the crate's default OWASP cost) and [`hash_demo`] (low cost, only for
//!   the demo's throwaway credentials) make PHC strings for the config.
//! - [`check_phc`] is what `campus.toml` validation asks of every configured hash.
//! - [`matches`] verifies (blocking); [`verify_password`] does so off the async threads, at most
//!   one verification per core at a time.
//! - A login naming no known user is verified against [`DUMMY_HASH`] ([`dummy`]), so it costs
//!   the same deliberately slow hash as a known user with a wrong password: user names cannot be
//!   told apart by how long a refusal takes.
//! - [`demo_credentials`]: which configured secrets are the demo's password, so `serve` can
//!   refuse them. It verifies on every core at once and remembers, in
//!   `{data}/state/demo-password-checked`, the SHA-256 of every PHC string already found not to
//!   be the demo password, so a restart verifies only new or changed secrets. The file is a
//!   cache: lost or corrupt, everything is verified again.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use sha2::{Digest, Sha256};

use crate::Campus;

/// An argon2id hash (the default parameters `hash-secret` uses) of a random secret, verified
/// against for unknown users.
pub const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$dGVsbGlqbmR1bW15c2FsdA$2oNq0mKxVjzsR4pI6bq0m7U8qVjH8c8J9sQ2n0x3Yqk";

/// The demo's password (`tellijn demo` logs in as `demo`/`demo`); `serve` refuses any
/// configured secret that is it.
pub const DEMO_PASSWORD: &str = "demo";

/// Where [`demo_credentials`] remembers the secrets already checked, under the data directory.
pub const DEMO_CHECKED_FILE: &str = "state/demo-password-checked";

/// Why a secret could not be hashed, or the demo-password check could not run.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    /// argon2 refused to hash (a bug: the parameters are fixed).
    #[error("internal error: argon2id hashing failed ({0}); please report this")]
    Hash(String),
    /// The cache of checked secrets could not be written.
    #[error(
        "{}: cannot write the list of secrets already checked against the demo password ({source}); check that the data directory is writable",
        path.display()
    )]
    Cache {
        /// The cache file.
        path: PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}

/// Hashes a secret with argon2id at the crate's default (OWASP) cost: for production configs.
pub fn hash(secret: &str) -> Result<String, SecretsError> {
    hash_with(&Argon2::default(), secret)
}

/// Hashes a secret with argon2id at a low cost (4 MiB, 1 pass): only for the demo's throwaway
/// credentials, so hundreds of simulated sensors start in a second.
pub fn hash_demo(secret: &str) -> Result<String, SecretsError> {
    let params = Params::new(4096, 1, 1, None).map_err(|e| SecretsError::Hash(e.to_string()))?;
    hash_with(
        &Argon2::new(Algorithm::Argon2id, Version::V0x13, params),
        secret,
    )
}

fn hash_with(argon: &Argon2<'_>, secret: &str) -> Result<String, SecretsError> {
    let salt = SaltString::generate(&mut OsRng);
    Ok(argon
        .hash_password(secret.as_bytes(), &salt)
        .map_err(|e| SecretsError::Hash(e.to_string()))?
        .to_string())
}

/// What `campus.toml` requires of a configured hash: an argon2id PHC string that parses. The
/// message completes "users[0].password_hash …".
pub fn check_phc(hash: &str) -> Result<(), String> {
    if !hash.starts_with("$argon2id$") {
        return Err(
            "must be an argon2id hash from `tellijn hash-secret` (it starts with \"$argon2id$\")."
                .into(),
        );
    }
    PasswordHash::new(hash).map(|_| ()).map_err(|e| {
        format!("is not a valid argon2id hash ({e}); make a new one with `tellijn hash-secret`.")
    })
}

/// Checks `password` against an argon2id PHC string; false for a malformed hash. Blocking.
pub fn matches(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default().verify_password(password, &parsed).is_ok(),
        Err(_) => false,
    }
}

/// Spends one verification on [`DUMMY_HASH`] (always false). Blocking.
pub fn dummy(password: &[u8]) -> bool {
    matches(DUMMY_HASH, password)
}

/// At most one argon2id verification per core at a time for SQL and HTTP logins: each holds its
/// memory cost on a blocking thread, and a login storm would otherwise start one thread per
/// attempt whose allocator arena keeps that memory (the MQTT logins have their own bound in the
/// broker's hooks).
pub static VERIFICATIONS: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(cores()));

fn cores() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// [`matches`] on a blocking thread, waiting for one of the bounded verification slots.
pub async fn verify_password(hash: String, password: String) -> bool {
    let Ok(_slot) = VERIFICATIONS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || matches(&hash, password.as_bytes()))
        .await
        .unwrap_or(false)
}

/// The config keys whose secret is the demo's password (`demo`): `serve` refuses to start with
/// any, so no deployment runs on a default password. Remembers what it checked under
/// `data_dir` (see the module docs). Blocking: one argon2id verification per new secret,
/// spread over every core.
pub fn demo_credentials(campus: &Campus, data_dir: &Path) -> Result<Vec<String>, SecretsError> {
    demo_credentials_with(campus, &data_dir.join(DEMO_CHECKED_FILE), &|hash, pw| {
        matches(hash, pw)
    })
}

/// [`demo_credentials`] with its cache file and verifier given, so tests can count verifications.
pub fn demo_credentials_with(
    campus: &Campus,
    cache: &Path,
    verify: &(dyn Fn(&str, &[u8]) -> bool + Sync),
) -> Result<Vec<String>, SecretsError> {
    let secrets: Vec<(String, &str)> = campus
        .users
        .iter()
        .enumerate()
        .map(|(i, u)| (format!("users[{i}] ({})", u.name), u.password_hash.as_str()))
        .chain(campus.mqtt_readers.iter().enumerate().map(|(i, r)| {
            (
                format!("mqtt_readers[{i}] ({})", r.name),
                r.password_hash.as_str(),
            )
        }))
        .chain(
            campus
                .sensors
                .iter()
                .enumerate()
                .map(|(i, s)| (format!("sensors[{i}] ({})", s.id), s.secret_hash.as_str())),
        )
        .collect();
    let checked = read_checked(cache);
    let unchecked: Vec<usize> = (0..secrets.len())
        .filter(|&i| !checked.contains(&checked_key(secrets[i].1)))
        .collect();
    let hits = verify_parallel(&unchecked, &|i| {
        verify(secrets[i].1, DEMO_PASSWORD.as_bytes())
    });
    let mut found = Vec::new();
    let mut hit_keys = HashSet::new();
    for (&i, _) in unchecked.iter().zip(&hits).filter(|(_, hit)| **hit) {
        found.push(secrets[i].0.clone());
        hit_keys.insert(checked_key(secrets[i].1));
    }
    // Only what the config holds now, and never a hit: the file stays as small as the config,
    // and a demo password is verified (and refused) again on the next start.
    let mut keep: Vec<String> = secrets
        .iter()
        .map(|(_, h)| checked_key(h))
        .filter(|k| !hit_keys.contains(k))
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    if unchecked.is_empty() && keep.len() == checked.len() {
        return Ok(found);
    }
    keep.sort();
    let mut text = keep.join("\n");
    text.push('\n');
    tellijn_durable::write_atomic(cache, text.as_bytes()).map_err(|source| {
        SecretsError::Cache {
            path: cache.to_owned(),
            source,
        }
    })?;
    Ok(found)
}

/// The cache key of a PHC string: SHA-256 of the demo password and the string, so a changed
/// demo password invalidates every entry.
fn checked_key(phc: &str) -> String {
    let mut h = Sha256::new();
    h.update(DEMO_PASSWORD.as_bytes());
    h.update([0]);
    h.update(phc.as_bytes());
    hex::encode(h.finalize())
}

/// The keys in the cache file; nothing if it is missing or unreadable (then all is verified).
fn read_checked(cache: &Path) -> HashSet<String> {
    std::fs::read_to_string(cache)
        .map(|text| {
            text.lines()
                .map(str::trim)
                .filter(|l| l.len() == 64 && l.bytes().all(|b| b.is_ascii_hexdigit()))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// `check(i)` for every index, on one scoped thread per core; results in the order given.
fn verify_parallel(items: &[usize], check: &(dyn Fn(usize) -> bool + Sync)) -> Vec<bool> {
    if items.is_empty() {
        return Vec::new();
    }
    let chunk = items.len().div_ceil(cores().min(items.len()));
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().map(|&i| check(i)).collect::<Vec<bool>>()))
            .collect();
        handles
            .into_iter()
            // A panicking verifier is a bug; counting its secrets as hits refuses to start
            // rather than letting a demo password through.
            .flat_map(|h| h.join().unwrap_or_else(|_| vec![true; chunk]))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn the_dummy_hash_costs_a_real_verification() {
        // It parses (so the verification runs) and matches nothing.
        assert!(PasswordHash::new(DUMMY_HASH).is_ok());
        assert!(!dummy(b"not the password"));
        assert!(!dummy(b""));
    }

    #[test]
    fn passwords_are_checked_against_argon2() {
        let salt = SaltString::from_b64("c2FsdHNhbHRzYWx0").unwrap();
        let hash = Argon2::default()
            .hash_password(b"right", &salt)
            .unwrap()
            .to_string();
        assert!(matches(&hash, b"right"));
        assert!(!matches(&hash, b"wrong"));
        assert!(!matches("not a hash", b"right"));
        assert!(check_phc(&hash).is_ok());
        assert!(check_phc(&hash_demo("x").unwrap()).is_ok());
        assert!(check_phc("$argon2i$v=19$m=8,t=1,p=1$c2FsdA$aGFzaA").is_err());
    }

    /// Logins wait for a verification slot: with every slot taken, a verification does not
    /// run until one is given back.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn verifications_wait_for_a_slot() {
        let salt = SaltString::from_b64("c29tZXNhbHQ").unwrap();
        let hash = Argon2::default()
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        let all = u32::try_from(cores()).unwrap();
        let held = VERIFICATIONS.acquire_many(all).await.unwrap();
        let login = tokio::spawn(verify_password(hash.clone(), "pw".to_owned()));
        // Unbounded, one verification takes milliseconds; held, it must still be waiting.
        let waited = tokio::time::timeout(std::time::Duration::from_millis(500), async {
            while !login.is_finished() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        assert!(waited.is_err(), "a verification ran without a free slot");
        drop(held);
        assert!(login.await.unwrap());
        assert!(!verify_password(hash, "wrong".to_owned()).await);
    }

    fn campus(hashes: &[String]) -> Campus {
        let mut toml = String::from(
            "[[buildings]]\nid = \"b\"\nname = \"B\"\n\n[[rooms]]\nid = \"r\"\nbuilding = \"b\"\nname = \"R\"\nkind = \"study\"\ncapacity = 10\n",
        );
        for (i, h) in hashes.iter().enumerate() {
            toml.push_str(&format!(
                "\n[[sensors]]\nid = \"s{i}\"\nsecret_hash = \"{h}\"\nzones = [ {{ zone = \"z\", room = \"r\" }} ]\n"
            ));
        }
        Campus::parse(&toml, "campus.toml").unwrap()
    }

    #[test]
    fn a_restart_verifies_only_new_or_changed_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join(DEMO_CHECKED_FILE);
        let demo = hash_demo(DEMO_PASSWORD).unwrap();
        let mut hashes: Vec<String> = (0..5)
            .map(|i| hash_demo(&format!("s{i}")).unwrap())
            .collect();
        let count = AtomicUsize::new(0);
        let verify = |h: &str, pw: &[u8]| {
            count.fetch_add(1, Ordering::SeqCst);
            matches(h, pw)
        };
        let c = campus(&hashes);
        assert!(
            demo_credentials_with(&c, &cache, &verify)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            count.swap(0, Ordering::SeqCst),
            5,
            "a first start checks every secret"
        );
        assert!(
            demo_credentials_with(&c, &cache, &verify)
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            count.swap(0, Ordering::SeqCst),
            0,
            "cached secrets are not verified again"
        );

        // One changed secret, one turned into the demo password: only those two are verified.
        hashes[1] = hash_demo("new").unwrap();
        hashes[3] = demo.clone();
        let c = campus(&hashes);
        let found = demo_credentials_with(&c, &cache, &verify).unwrap();
        assert_eq!(found, vec!["sensors[3] (s3)".to_owned()]);
        assert_eq!(count.swap(0, Ordering::SeqCst), 2);
        // A hit is never cached: it is refused again on the next start.
        let found = demo_credentials_with(&c, &cache, &verify).unwrap();
        assert_eq!(found, vec!["sensors[3] (s3)".to_owned()]);
        assert_eq!(count.swap(0, Ordering::SeqCst), 1);

        // A corrupt cache only costs verifications.
        std::fs::write(&cache, "garbage\n").unwrap();
        assert_eq!(demo_credentials_with(&c, &cache, &verify).unwrap().len(), 1);
        assert_eq!(count.swap(0, Ordering::SeqCst), 5);
    }
}
