//! # Tellijn server
//!
//! The `tellijn` binary's parts, as a library so end-to-end tests can start them.
//!
//! # Layout
//! - [`server`]: starts the broker, the processors, the bridge that publishes their retained
//!   topics into the broker, and HTTP; stops them in the order that loses nothing.
//! - [`http`]: `/metrics` (Prometheus text format) and `/healthz`.
//! - [`demo`]: a generated campus with simulated agents, each its own MQTT connection with its
//!   own credential.
//! - [`secrets`]: argon2id hashing for `hash-secret` and the demo.

pub mod demo;
pub mod http;
pub mod secrets;
pub mod server;
