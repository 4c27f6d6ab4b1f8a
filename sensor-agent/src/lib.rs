//! # Tellijn sensor agent
//!
//! Runs on (or beside) a camera and sends counts — only counts — to the Tellijn broker.
//!
//! # Layout
//! Data meets these parts in this order:
//! - [`simulated`]: the count source (the camera's own counter stands here in production).
//! - [`seq`]: the durable per-sensor sequence number.
//! - [`run`]: aggregates a reading per `interval` into count messages v1 (built and checked
//!   with `tellijn-wire`, the same code the broker validates with), publishes them at QoS 1
//!   over MQTT (rumqttc) with the sensor's own credential, keeps a retained status with a
//!   last will, and reconnects with backoff.
//! - [`config`]: the `agent.toml` file.
//!
//! This crate must stay small: no DataFusion, Arrow or Parquet (checked in CI with
//! `cargo tree -p tellijn-agent`).
//!
//! Not yet: the durable outbox and ack watermark (messages unacknowledged when a connection
//! drops are lost, as rumqttc drops them on reconnect), TLS, the stdin source.

pub mod config;
pub mod seq;
pub mod simulated;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use tellijn_wire::topic::{self, SensorTopic};
use tellijn_wire::{Clock, CountMessage, LineCount, StatusMessage, ZoneCount};

pub use config::AgentConfig;

/// The agent's version, reported in its status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent.toml: {0}")]
    Config(String),
    #[error("cannot keep the sequence number in {dir}: {source}")]
    Seq { dir: String, source: std::io::Error },
    #[error("the MQTT client stopped: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// What an agent sent, for summaries and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Count messages published.
    pub messages: u64,
    /// Count messages the broker acknowledged (PUBACK).
    pub acked: u64,
    pub people_in: u64,
    pub people_out: u64,
}

#[derive(Default)]
struct Shared {
    published: AtomicU64,
    acked: AtomicU64,
    connected: AtomicU64,
}

/// Runs the agent until `shutdown` resolves, then waits (up to 10 s) for outstanding
/// acknowledgements, marks itself offline and disconnects.
pub async fn run(
    cfg: &AgentConfig,
    secret: &str,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<Totals, AgentError> {
    let addr = cfg.broker_addr().map_err(AgentError::Config)?;
    let mut seq = seq::SeqFile::open(&cfg.outbox).map_err(|source| AgentError::Seq {
        dir: cfg.outbox.display().to_string(),
        source,
    })?;
    let status_topic = topic::sensor(&cfg.sensor, SensorTopic::Status);
    let counts_topic = topic::sensor(&cfg.sensor, SensorTopic::Counts);

    let mut opts = MqttOptions::new(cfg.sensor.clone(), addr.host, addr.port);
    opts.set_credentials(cfg.sensor.clone(), secret.to_owned())
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(4096, 1024)
        .set_last_will(LastWill::new(
            status_topic.clone(),
            StatusMessage::offline().to_json(),
            QoS::AtLeastOnce,
            true,
        ));
    let (client, mut events) = AsyncClient::new(opts, 512);

    let shared = Arc::new(Shared::default());
    let since = clock.now();
    let poller = {
        let shared = shared.clone();
        let client = client.clone();
        let status_topic = status_topic.clone();
        let sensor = cfg.sensor.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        backoff = Duration::from_millis(250);
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                        let status = StatusMessage::online(since, 0, VERSION).to_json();
                        if client
                            .try_publish(status_topic.clone(), QoS::AtLeastOnce, true, status)
                            .is_ok()
                        {
                            shared.published.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        shared.acked.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        tracing::warn!(%sensor, "MQTT connection failed ({e}); retrying in {backoff:?}.");
                        let jitter = rand::rng().random_range(0.5..1.5);
                        tokio::time::sleep(backoff.mul_f64(jitter)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        })
    };

    let mut source = simulated::Simulated::new(
        cfg.source.lines.len(),
        cfg.source.zones.len(),
        cfg.source.seed.unwrap_or_else(|| rand::rng().random()),
    );
    let interval = TimeDelta::from_std(cfg.interval).unwrap_or(TimeDelta::seconds(1));
    let mut window_end: DateTime<Utc> = clock.now();
    let mut tick = tokio::time::interval(clock.real(cfg.interval));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut totals = Totals::default();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = tick.tick() => {}
        }
        let start = window_end;
        let end = (start + interval)
            .min(clock.now())
            .max(start + TimeDelta::microseconds(1));
        window_end = end;
        let reading = source.next_reading();
        let mut messages = Vec::new();
        for (name, (people_in, people_out)) in cfg.source.lines.iter().zip(reading.lines) {
            let seq = seq.take().map_err(|source| AgentError::Seq {
                dir: cfg.outbox.display().to_string(),
                source,
            })?;
            totals.people_in += people_in as u64;
            totals.people_out += people_out as u64;
            messages.push(CountMessage::Line(LineCount {
                sensor: cfg.sensor.clone(),
                line: name.clone(),
                seq,
                start,
                end,
                people_in,
                people_out,
            }));
        }
        for (name, count) in cfg.source.zones.iter().zip(reading.zones) {
            let seq = seq.take().map_err(|source| AgentError::Seq {
                dir: cfg.outbox.display().to_string(),
                source,
            })?;
            messages.push(CountMessage::Zone(ZoneCount {
                sensor: cfg.sensor.clone(),
                zone: name.clone(),
                seq,
                at: end,
                count,
            }));
        }
        for m in messages {
            client
                .publish(counts_topic.clone(), QoS::AtLeastOnce, false, m.to_json())
                .await?;
            shared.published.fetch_add(1, Ordering::Relaxed);
            totals.messages += 1;
        }
    }

    // Wait for the broker to acknowledge what was sent, then say goodbye.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while shared.acked.load(Ordering::Relaxed) < shared.published.load(Ordering::Relaxed)
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let status_msgs = shared.connected.load(Ordering::Relaxed);
    totals.acked = shared
        .acked
        .load(Ordering::Relaxed)
        .saturating_sub(status_msgs)
        .min(totals.messages);
    let _ = client
        .publish(
            status_topic,
            QoS::AtLeastOnce,
            true,
            StatusMessage::offline().to_json(),
        )
        .await;
    let _ = client.disconnect().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), poller).await;
    Ok(totals)
}
