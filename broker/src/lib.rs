//! # Tellijn broker
//!
//! The embedded MQTT broker (rmqtt, in our own process) with Tellijn's gate in front of it.
//!
//! # Layout
//! - [`gate`]: the policy — who may connect (argon2id secrets, client id = username, the last
//!   will), subscribe (a sensor only to its own `ack`, readers and anonymous clients only to
//!   the derived topics the config grants) and publish (a sensor only valid count and status
//!   messages on its own topics). No broker types; unit-tested on its own.
//! - [`hooks`]: adapts the gate to rmqtt's `ClientAuthenticate`, `ClientSubscribeCheckAcl` and
//!   `MessagePublishCheckAcl` hooks, counts and audits every refusal (aggregated per reason
//!   and minute for clients that have not authenticated), and hands admitted messages to the
//!   processors through a bounded channel.
//! - [`retain`]: the retained-message store rmqtt 0.24 leaves to the embedder.
//! - [`door`]: our own accept loop in front of rmqtt: connection limits, a deadline for the TLS
//!   handshake and the CONNECT, the first packet checked; then the client's stream is handed
//!   to an rmqtt session in the same task (no loopback listener, no relay).
//! - [`client_io`]: the stream a session runs on: the CONNECT the door read put back in front,
//!   and writes gathered until the session next reads (one `writev` for many PUBACKs).
//! - [`Broker`]: binds the listeners, starts rmqtt, and publishes derived topics in process.
//!
//! State: sessions and retained messages live in memory only. Retained derived topics are
//! republished by the processors at start, so a restart loses nothing durable here.

pub mod client_io;
pub mod door;
pub mod gate;
mod hooks;
pub mod retain;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use bytestring::ByteString;
use rmqtt::codec::types::{Publish as CodecPublish, QoS};
use rmqtt::context::ServerContext;
use rmqtt::hook::Type;
use rmqtt::net::Builder;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, Publish};
use tellijn_config::{AuditLog, Metrics, Refusals};
use tellijn_wire::{Clock, SensorEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use gate::Policy;

/// Largest MQTT packet accepted. Larger than any valid message (≤ 512 bytes) on purpose: an
/// oversized payload up to this size reaches the gate, so it is refused as `too_large`, counted
/// and audited; a larger packet closes the connection (counted as `protocol_error` and audited
/// with the sender, never the bytes).
pub const MAX_PACKET: u32 = 4096;

/// Errors starting the broker.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot listen for MQTT on {addr}: {source}; choose another address with --mqtt ADDR")]
    Bind {
        addr: SocketAddr,
        source: anyhow::Error,
    },
    #[error(
        "cannot listen for MQTT over TLS on {addr}: {source:#}; check [tls] cert and key, or choose another address with --mqtts ADDR"
    )]
    BindTls {
        addr: SocketAddr,
        source: anyhow::Error,
    },
}

/// An MQTT-over-TLS listener.
#[derive(Debug, Clone)]
pub struct TlsListener {
    pub addr: SocketAddr,
    /// PEM certificate chain and key of the server.
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// When set, clients must present a certificate signed by this CA (PEM).
    pub client_ca: Option<std::path::PathBuf>,
}

/// What the broker needs to start.
pub struct BrokerConfig {
    /// Where to listen for plain MQTT (port 0 for an ephemeral port).
    pub mqtt: SocketAddr,
    /// MQTT over TLS, if configured.
    pub tls: Option<TlsListener>,
    pub policy: Arc<Policy>,
    pub metrics: Metrics,
    pub audit: Arc<AuditLog>,
    /// Where refusals of clients that have not authenticated are aggregated.
    pub refusals: Arc<Refusals>,
    /// Admitted sensor events go here (bounded: a full channel slows publishers).
    pub events: mpsc::Sender<SensorEvent>,
    pub clock: Clock,
    /// Connection limits, the CONNECT deadline and the per-client publish rate.
    pub limits: tellijn_config::campus::Limits,
}

/// A running broker.
pub struct Broker {
    scx: ServerContext,
    hooks: Arc<hooks::GateHooks>,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    doors: Vec<JoinHandle<()>>,
}

fn listener_builder(name: &str, addr: SocketAddr) -> Builder {
    Builder::new()
        .name(name)
        .laddr(addr)
        .reuseaddr(Some(true))
        .allow_anonymous(false)
        .max_packet_size(MAX_PACKET)
        .max_inflight(std::num::NonZeroU16::new(64).unwrap_or(std::num::NonZeroU16::MIN))
        .handshake_timeout(std::time::Duration::from_secs(10))
}

impl Broker {
    /// Binds the listeners and starts serving.
    pub async fn start(cfg: BrokerConfig) -> Result<Broker, BrokerError> {
        // rmqtt's busy check refuses CONNECTs on load average and has a units bug: off.
        let scx = ServerContext::new().busy_check_enable(false).build().await;
        *scx.extends.retain_mut().await = Box::new(retain::RetainStore::default());

        let hooks = Arc::new(hooks::GateHooks {
            policy: arc_swap::ArcSwap::new(cfg.policy),
            metrics: cfg.metrics,
            audit: cfg.audit,
            refusals: cfg.refusals,
            events: cfg.events,
            clock: cfg.clock,
            rate: hooks::rate_limiter(&cfg.limits),
            publishes: std::sync::atomic::AtomicU64::new(0),
            verifications: tokio::sync::Semaphore::new(hooks::verification_slots()),
        });
        let register = scx.extends.hook_mgr().register();
        for typ in [
            Type::ClientAuthenticate,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
            Type::ClientConnected,
            Type::ClientDisconnected,
        ] {
            register
                .add(typ, Box::new(hooks::Hook(hooks.clone())))
                .await;
        }
        register.start().await;

        let bind_err = |source| BrokerError::Bind {
            addr: cfg.mqtt,
            source,
        };
        // rmqtt does not listen itself: the door accepts, checks, and hands each admitted
        // stream to an rmqtt session with these settings.
        let listener = Arc::new(listener_builder("tellijn", cfg.mqtt));
        scx.listen_cfgs.insert(door::LISTENER_ID, listener.clone());
        scx.extends.hook_mgr().before_startup().await;
        let door = door::Door::new(
            (&cfg.limits).into(),
            hooks.metrics.clone(),
            scx.clone(),
            listener,
        );
        let plain = tokio::net::TcpListener::bind(cfg.mqtt)
            .await
            .map_err(|e| bind_err(e.into()))?;
        let addr = plain.local_addr().map_err(|e| bind_err(e.into()))?;
        let mut doors = vec![tokio::spawn(door.clone().serve(plain, None))];
        let mut tls_addr = None;
        if let Some(t) = &cfg.tls {
            let tls_err = |source| BrokerError::BindTls {
                addr: t.addr,
                source,
            };
            let acceptor = tls_acceptor(t).map_err(tls_err)?;
            let l = tokio::net::TcpListener::bind(t.addr)
                .await
                .map_err(|e| tls_err(e.into()))?;
            tls_addr = Some(l.local_addr().map_err(|e| tls_err(e.into()))?);
            doors.push(tokio::spawn(door.serve(l, Some(acceptor))));
        }
        tracing::info!("MQTT broker listening on {addr}.");
        if let Some(a) = tls_addr {
            tracing::info!("MQTT over TLS listening on {a}.");
        }
        Ok(Broker {
            scx,
            hooks,
            addr,
            tls_addr,
            doors,
        })
    }

    /// The address the broker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The MQTT-over-TLS address, if configured.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Puts a new policy in force (a config reload) and disconnects every client whose rules
    /// changed ([`Policy::must_reconnect`]): a removed sensor or reader, a changed secret or
    /// topic list, anonymous clients when `anonymous_read` changed. Secrets verified for
    /// unchanged users stay verified. Returns how many clients were disconnected.
    pub async fn set_policy(&self, new: Policy) -> usize {
        let old = self.hooks.policy.load_full();
        new.keep_verified(&old);
        let new = Arc::new(new);
        self.hooks.policy.store(new.clone());
        let ids: Vec<Id> = {
            let shared = self.scx.extends.shared().await;
            shared
                .iter()
                .filter_map(|e| e.session())
                .map(|s| s.id.clone())
                .filter(|id| old.must_reconnect(&new, id.username.as_deref(), &id.client_id))
                .collect()
        };
        let mut kicked = 0;
        for id in ids {
            let mut entry = self.scx.extends.shared().await.entry(id.clone());
            match entry.kick(true, true, true).await {
                Ok(_) => {
                    kicked += 1;
                    tracing::info!(
                        client = %tellijn_config::refusals::field(&id.client_id),
                        "Disconnected an MQTT client: its rules changed with the new config; it may reconnect under them."
                    );
                }
                Err(e) => tracing::warn!(
                    client = %tellijn_config::refusals::field(&id.client_id),
                    "Disconnecting an MQTT client after a reload failed: {e}"
                ),
            }
        }
        kicked
    }

    /// Publishes a retained message from inside the server (the processors), past the ACL.
    pub async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        self.publisher().publish_retained(topic, payload).await
    }

    /// A handle that publishes into this broker from other tasks.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            scx: self.scx.clone(),
        }
    }

    /// Stops accepting connections.
    pub fn stop(&self) {
        for d in &self.doors {
            d.abort();
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The server side of MQTT over TLS: our certificate, and when `client_ca` is set, a client
/// certificate signed by that CA is required.
fn tls_acceptor(t: &TlsListener) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use anyhow::Context;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(&t.cert)
        .and_then(|i| i.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificate chain {}", t.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&t.key)
        .with_context(|| format!("cannot read the private key {}", t.key.display()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier = match &t.client_ca {
        None => rustls::server::WebPkiClientVerifier::no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_file_iter(ca)
                .with_context(|| format!("cannot read the client CA {}", ca.display()))?
            {
                let c = c.with_context(|| format!("cannot read the client CA {}", ca.display()))?;
                roots
                    .add(c)
                    .context("the client CA is not a usable certificate")?;
            }
            rustls::server::WebPkiClientVerifier::builder_with_provider(
                roots.into(),
                provider.clone(),
            )
            .build()
            .context("cannot use the client CA")?
        }
    };
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certs, key)
        .context("the certificate does not match the key")?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// Publishes derived topics into the broker from inside the process.
#[derive(Clone)]
pub struct Publisher {
    scx: ServerContext,
}

impl Publisher {
    /// Publishes a retained QoS 1 message as the system (no ACL: only in-process code has this).
    pub async fn publish_retained(&self, topic: &str, payload: Vec<u8>) -> anyhow::Result<()> {
        let p = CodecPublish {
            dup: false,
            retain: true,
            qos: QoS::AtLeastOnce,
            topic: ByteString::from(topic),
            packet_id: None,
            payload: Bytes::from(payload),
            properties: None,
        };
        let publish = Publish::from(p).create_time(chrono::Utc::now().timestamp_millis());
        let from = From::from_system(Id::from(
            self.scx.node.id(),
            ByteString::from_static("tellijn-processors"),
        ));
        SessionState::forwards(&self.scx, from, publish, false, None).await?;
        Ok(())
    }
}
