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
//!   `MessagePublishCheckAcl` hooks, counts and audits every refusal, and hands admitted
//!   messages to the processors through a bounded channel.
//! - [`retain`]: the retained-message store rmqtt 0.24 leaves to the embedder.
//! - [`Broker`]: binds the listener, starts rmqtt, and publishes derived topics in process.
//!
//! State: sessions and retained messages live in memory only. Retained derived topics are
//! republished by the processors at start, so a restart loses nothing durable here.

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
use rmqtt::server::MqttServer;
use rmqtt::session::SessionState;
use rmqtt::types::{From, Id, Publish};
use tellijn_config::{AuditLog, Metrics};
use tellijn_wire::{Clock, SensorEvent};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use gate::Policy;

/// Largest MQTT packet accepted. Larger than any valid message (≤ 512 bytes) on purpose: an
/// oversized payload up to this size reaches the gate, so it is refused as `too_large`, counted
/// and audited; a larger one is dropped by the codec with the connection.
pub const MAX_PACKET: u32 = 256 * 1024;

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
    /// Admitted sensor events go here (bounded: a full channel slows publishers).
    pub events: mpsc::Sender<SensorEvent>,
    pub clock: Clock,
}

/// A running broker.
pub struct Broker {
    scx: ServerContext,
    addr: SocketAddr,
    tls_addr: Option<SocketAddr>,
    task: JoinHandle<()>,
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
            policy: cfg.policy,
            metrics: cfg.metrics,
            audit: cfg.audit,
            events: cfg.events,
            clock: cfg.clock,
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
        let listener = listener_builder("tellijn/tcp", cfg.mqtt)
            .bind()
            .map_err(bind_err)?
            .tcp()
            .map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        let mut server = MqttServer::new(scx.clone()).listener_by_id(listener, 1);
        let mut tls_addr = None;
        if let Some(t) = &cfg.tls {
            let tls_err = |source| BrokerError::BindTls {
                addr: t.addr,
                source,
            };
            let mut b = listener_builder("tellijn/tls", t.addr)
                .tls_cert(Some(t.cert.display().to_string()))
                .tls_key(Some(t.key.display().to_string()));
            if let Some(ca) = &t.client_ca {
                b = b
                    .tls_client_ca_certs(Some(ca.display().to_string()))
                    .tls_cross_certificate(true);
            }
            let l = b.bind().map_err(tls_err)?.tls().map_err(tls_err)?;
            tls_addr = Some(l.local_addr().map_err(tls_err)?);
            server = server.listener_by_id(l, 2);
        }
        let server = server.build();
        let task = tokio::spawn(async move {
            if let Err(e) = server.run().await {
                tracing::error!("The MQTT broker stopped: {e}");
            }
        });
        tracing::info!("MQTT broker listening on {addr}.");
        if let Some(a) = tls_addr {
            tracing::info!("MQTT over TLS listening on {a}.");
        }
        Ok(Broker {
            scx,
            addr,
            tls_addr,
            task,
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
        self.task.abort();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.task.abort();
    }
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
