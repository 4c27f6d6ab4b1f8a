//! argon2id hashing of secrets: a re-export of [`tellijn_config::secrets`], where every hash and
//! verification lives.

pub use tellijn_config::secrets::*;
