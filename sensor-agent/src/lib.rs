//! # Tellijn sensor agent
//!
//! Runs on (or beside) a camera and sends counts — only counts — to the Tellijn broker.
//!
//! # Layout
//! Data meets these parts in this order:
//! - [`source`]: the count source (`simulated`, or `stdin` from the camera's own counter),
//!   aggregated into one reading per `interval`.
//! - [`camera`]: the `camera` source — `tellijn-counter` (behind an optional capture command)
//!   run as child processes and restarted with back-off; its crossings go to the same
//!   aggregator, its frame figures into the status.
//! - [`outbox`]: every count message v1 (built with `tellijn-wire`, the code the broker
//!   validates with) is appended and fsync'd before it is published; it leaves the outbox only
//!   when the server's retained `ack` watermark covers it.
//! - [`run`]: a sender publishes the outbox in seq order at QoS 1 (rumqttc), from one past the
//!   watermark after every (re)connect — once the connection's first (retained) ack has
//!   arrived, so a fresh outbox continues above what the server holds — so nothing is lost when rumqttc drops unacknowledged
//!   messages on reconnect; the server drops the duplicates. A retained status (with a last
//!   will) reports queue depth, oldest unsent age, version and the agent's privacy settings
//!   (with a camera: frames, drops, frame lifetime, privacy level, counter restarts).
//! - [`tls`]: `mqtts://` with a CA file and an optional client certificate.
//! - [`config`]: the `agent.toml` file.
//!
//! This crate must stay small: no DataFusion, Arrow or Parquet (checked in CI with
//! `cargo tree -p tellijn-agent`).

pub mod camera;
pub mod config;
pub mod logging;
pub mod outbox;
pub mod source;
pub mod tls;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand::Rng;
use rumqttc::{
    AsyncClient, Event, LastWill, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use sha2::{Digest, Sha256};
use tellijn_wire::topic::{self, SensorTopic};
use tellijn_wire::{Clock, CountMessage, LineCount, StatusMessage, ZoneCount};
use tokio::sync::{Notify, watch};

pub use config::AgentConfig;
use outbox::Outbox;

/// The agent's version, reported in its status.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// How often the status is republished while connected.
pub const STATUS_EVERY: Duration = Duration::from_secs(30);
/// How long a graceful stop waits for the server to acknowledge outstanding messages.
pub const DRAIN: Duration = Duration::from_secs(10);
/// After a connect, how long the sender waits for the server's ack before it says so.
const ACK_WAIT_WARNING: Duration = Duration::from_secs(30);
/// Messages read from the outbox per send batch.
const SEND_BATCH: usize = 256;

/// Errors that stop the agent.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent.toml: {0}")]
    Config(String),
    #[error(transparent)]
    Outbox(#[from] outbox::OutboxError),
    #[error("the MQTT client stopped: {0}")]
    Client(#[from] rumqttc::ClientError),
}

/// What an agent counted, for summaries and tests.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Count messages put in the outbox.
    pub messages: u64,
    /// Messages still waiting for the server's acknowledgement at exit.
    pub unacked: u64,
    pub people_in: u64,
    pub people_out: u64,
}

/// The SHA-256 of the agent's effective configuration (the secret is not part of it).
pub fn config_hash(cfg: &AgentConfig) -> String {
    let text = toml::to_string(cfg).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn status(
    cfg: &AgentConfig,
    ob: &Outbox,
    since: DateTime<Utc>,
    now: DateTime<Utc>,
    camera: Option<&camera::Camera>,
) -> StatusMessage {
    let mut s = StatusMessage::online(since, ob.depth(), VERSION);
    s.oldest_unsent_s = ob.oldest_unsent(now).map(|d| d.num_seconds().max(0) as u64);
    let mut sends = Vec::new();
    if !cfg.source.lines.is_empty() {
        sends.push("line".to_owned());
    }
    if !cfg.source.zones.is_empty() {
        sends.push("zone".to_owned());
    }
    s.sends = Some(sends);
    s.config_hash = Some(config_hash(cfg));
    s.merged = Some(ob.stats.merged);
    s.dropped = Some(ob.stats.dropped);
    s.corrupt_bytes = Some(ob.stats.corrupt_bytes);
    if let Some(c) = camera {
        c.fill_status(&mut s);
    }
    s
}

fn lock(ob: &Mutex<Outbox>) -> std::sync::MutexGuard<'_, Outbox> {
    ob.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the agent until `shutdown` resolves; then waits (up to [`DRAIN`]) for the server to
/// acknowledge what is outstanding, marks itself offline and disconnects. What the server has
/// not yet acknowledged stays in the outbox for the next start.
pub async fn run(
    cfg: &AgentConfig,
    secret: &str,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
) -> Result<Totals, AgentError> {
    run_fed(cfg, secret, clock, shutdown, None).await
}

/// As [`run`], but the readings come from `feed` (filled by the caller, e.g. the demo's campus
/// simulator) instead of the configured source.
pub async fn run_fed(
    cfg: &AgentConfig,
    secret: &str,
    clock: Clock,
    shutdown: impl Future<Output = ()>,
    feed: Option<Arc<Mutex<source::StdinAggregator>>>,
) -> Result<Totals, AgentError> {
    cfg.check().map_err(AgentError::Config)?;
    let addr = cfg.broker_addr().map_err(AgentError::Config)?;
    let max = config::parse_size(&cfg.outbox_max).unwrap_or(100 << 20);
    let outbox = Arc::new(Mutex::new(Outbox::open(&cfg.outbox, max)?));
    let status_topic = topic::sensor(&cfg.sensor, SensorTopic::Status);
    let counts_topic = topic::sensor(&cfg.sensor, SensorTopic::Counts);
    let ack_topic = topic::sensor(&cfg.sensor, SensorTopic::Ack);

    let mut opts = MqttOptions::new(cfg.sensor.clone(), addr.host.clone(), addr.port);
    opts.set_credentials(cfg.sensor.clone(), secret.to_owned())
        .set_keep_alive(Duration::from_secs(30))
        .set_clean_session(true)
        .set_max_packet_size(4096, 1024)
        .set_inflight(64)
        .set_last_will(LastWill::new(
            status_topic.clone(),
            StatusMessage::offline().to_json(),
            QoS::AtLeastOnce,
            true,
        ));
    if addr.tls {
        let ca = cfg
            .ca
            .as_deref()
            .ok_or_else(|| AgentError::Config("mqtts:// needs ca".into()))?;
        let pair = cfg.cert.as_deref().zip(cfg.key.as_deref());
        let tls = tls::client_config(ca, pair).map_err(AgentError::Config)?;
        opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    }
    let (client, mut events) = AsyncClient::new(opts, 512);

    // Bumped on every CONNACK: the sender restarts from the watermark once the first ack of
    // that connection (`synced`, the epoch it arrived in) has been applied.
    let (epoch_tx, mut epoch_rx) = watch::channel(0u64);
    let (synced_tx, mut synced_rx) = watch::channel(0u64);
    let wake = Arc::new(Notify::new());
    let since = clock.now();
    let camera = match (&feed, cfg.source.kind) {
        (None, config::SourceKind::Camera) => Some(camera::start(&cfg.source)),
        _ => None,
    };
    let camera_state = camera.as_ref().map(|(c, _)| c.clone());

    let poller = {
        let (client, outbox, wake) = (client.clone(), outbox.clone(), wake.clone());
        let camera = camera_state.clone();
        let (status_topic, ack_topic, sensor) =
            (status_topic.clone(), ack_topic.clone(), cfg.sensor.clone());
        let cfg = cfg.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(250);
            let mut status_tick = tokio::time::interval(STATUS_EVERY);
            let mut connected = false;
            loop {
                let due = async {
                    match &camera {
                        Some(c) => c.status_due.notified().await,
                        None => std::future::pending().await,
                    }
                };
                let ev = tokio::select! {
                    ev = events.poll() => ev,
                    _ = status_tick.tick(), if connected => {
                        let s = status(&cfg, &lock(&outbox), since, clock.now(), camera.as_deref());
                        let _ = client.try_publish(status_topic.clone(), QoS::AtLeastOnce, true, s.to_json());
                        continue;
                    }
                    // Not while disconnected: the status of the next CONNACK carries it.
                    _ = due, if connected => {
                        let s = status(&cfg, &lock(&outbox), since, clock.now(), camera.as_deref());
                        let _ = client.try_publish(status_topic.clone(), QoS::AtLeastOnce, true, s.to_json());
                        continue;
                    }
                };
                match ev {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connected = true;
                        backoff = Duration::from_millis(250);
                        tracing::info!(%sensor, "Connected to the broker.");
                        let _ = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce);
                        let s = status(&cfg, &lock(&outbox), since, clock.now(), camera.as_deref());
                        let _ = client.try_publish(
                            status_topic.clone(),
                            QoS::AtLeastOnce,
                            true,
                            s.to_json(),
                        );
                        epoch_tx.send_modify(|e| *e += 1);
                        wake.notify_one();
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                        #[derive(serde::Deserialize)]
                        struct Ack {
                            seq: u64,
                        }
                        match serde_json::from_slice::<Ack>(&p.payload) {
                            Ok(a) => {
                                match lock(&outbox).server_ack(a.seq) {
                                    Ok(outbox::ServerAck::Acked) => {}
                                    Ok(outbox::ServerAck::Resynced { first, count }) => {
                                        if a.seq > 0 {
                                            tracing::warn!(
                                                %sensor,
                                                "This outbox is new but the server already holds seqs up to {}: continuing at seq {first} ({count} unsent messages renumbered).",
                                                a.seq
                                            );
                                        }
                                    }
                                    Ok(outbox::ServerAck::AheadOfOutbox { watermark, unsent }) => {
                                        tracing::error!(
                                            %sensor,
                                            "The server holds seqs up to {watermark}, beyond anything this outbox wrote: it was restored from elsewhere, or another agent runs as this sensor. Continuing at seq {}; {unsent} unsent messages are taken as stored.",
                                            watermark + 1
                                        );
                                    }
                                    Err(e) => tracing::error!(%sensor, "{e}"),
                                }
                                // The sender waits for the first ack of each connection.
                                synced_tx.send_replace(*epoch_tx.borrow());
                            }
                            Err(_) => {
                                tracing::warn!(%sensor, "Ignored a malformed ack from the server.")
                            }
                        }
                    }
                    // Our own DISCONNECT went out: stop, do not reconnect.
                    Ok(Event::Outgoing(rumqttc::Outgoing::Disconnect)) => break,
                    Ok(_) => {}
                    Err(rumqttc::ConnectionError::RequestsDone) => break,
                    Err(e) => {
                        connected = false;
                        let hint = if e.to_string().contains("certificate")
                            || e.to_string().contains("Tls")
                        {
                            " (check ca, cert and key in agent.toml against the broker's certificates)"
                        } else {
                            ""
                        };
                        tracing::warn!(%sensor, "MQTT connection failed: {e}{hint}; retrying in about {backoff:?}.");
                        let jitter = rand::rng().random_range(0.5..1.5);
                        tokio::time::sleep(backoff.mul_f64(jitter)).await;
                        backoff = (backoff * 2).min(Duration::from_secs(30));
                    }
                }
            }
        })
    };

    // The sender: publishes the outbox in seq order, from the watermark after each connect.
    let sender = {
        let (client, outbox, wake, counts_topic) = (
            client.clone(),
            outbox.clone(),
            wake.clone(),
            counts_topic.clone(),
        );
        tokio::spawn(async move {
            let mut cursor = 0u64;
            let mut seen_epoch = 0u64;
            loop {
                let epoch = *epoch_rx.borrow_and_update();
                if epoch == 0 {
                    if epoch_rx.changed().await.is_err() {
                        return;
                    }
                    continue;
                }
                if epoch != seen_epoch {
                    // Nothing is sent before the server's watermark is known: a fresh outbox
                    // renumbers its records above it first (outbox::resync).
                    if *synced_rx.borrow_and_update() != epoch {
                        tokio::select! {
                            r = synced_rx.changed() => if r.is_err() { return },
                            r = epoch_rx.changed() => if r.is_err() { return },
                            _ = tokio::time::sleep(ACK_WAIT_WARNING) => {
                                tracing::warn!(
                                    "No acknowledgement watermark from the server {ACK_WAIT_WARNING:?} after connecting; nothing is sent until it arrives (the server keeps one for every configured sensor)."
                                );
                            }
                        }
                        continue;
                    }
                    seen_epoch = epoch;
                    cursor = lock(&outbox).acked() + 1;
                }
                let batch = match lock(&outbox).read_from(cursor, SEND_BATCH) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::error!("{e}");
                        Vec::new()
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        _ = wake.notified() => {}
                        r = epoch_rx.changed() => if r.is_err() { return },
                    }
                    continue;
                }
                for (seq, payload) in batch {
                    if *epoch_rx.borrow() != seen_epoch {
                        break;
                    }
                    if client
                        .publish(counts_topic.clone(), QoS::AtLeastOnce, false, payload)
                        .await
                        .is_err()
                    {
                        return;
                    }
                    lock(&outbox).mark_sent(seq);
                    cursor = seq + 1;
                }
            }
        })
    };

    let stdin = match cfg.source.kind {
        _ if feed.is_some() => feed,
        config::SourceKind::Stdin => {
            let agg = Arc::new(Mutex::new(source::StdinAggregator::new(
                &cfg.source.lines,
                &cfg.source.zones,
            )));
            tokio::spawn(source::read_stdin(agg.clone()));
            Some(agg)
        }
        config::SourceKind::Camera => camera_state.as_ref().map(|c| c.agg.clone()),
        config::SourceKind::Simulated => None,
    };
    let seed = cfg.source.seed.unwrap_or_else(|| rand::rng().random());
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
        let reading = stdin
            .as_ref()
            .map(|a| a.lock().unwrap_or_else(|p| p.into_inner()).take());
        let mut ob = lock(&outbox);
        let mut seq = ob.next_seq();
        let mut messages = Vec::new();
        for (i, name) in cfg.source.lines.iter().enumerate() {
            let (people_in, people_out) = match &reading {
                Some(r) => r.lines[i],
                None => source::simulated_line(seed, i, seq),
            };
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
            seq += 1;
        }
        for (i, name) in cfg.source.zones.iter().enumerate() {
            let count = match &reading {
                Some(r) => match r.zones[i] {
                    Some(c) => c,
                    None => continue,
                },
                None => source::simulated_zone(seed, i, seq),
            };
            messages.push(CountMessage::Zone(ZoneCount {
                sensor: cfg.sensor.clone(),
                zone: name.clone(),
                seq,
                at: end,
                count,
            }));
            seq += 1;
        }
        // Durable before published: the append fsyncs.
        ob.append(&messages)?;
        drop(ob);
        totals.messages += messages.len() as u64;
        wake.notify_one();
    }

    // The counter and its capture stop with the agent (kill_on_drop).
    if let Some((_, task)) = &camera {
        task.abort();
    }
    // Give the server up to DRAIN to store and acknowledge what is outstanding; what it has
    // not acknowledged by then stays in the outbox for the next start.
    let deadline = tokio::time::Instant::now() + DRAIN;
    while lock(&outbox).depth() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sender.abort();
    let _ = client
        .publish(
            status_topic,
            QoS::AtLeastOnce,
            true,
            StatusMessage::offline().to_json(),
        )
        .await;
    let _ = client.disconnect().await;
    let abort = poller.abort_handle();
    if tokio::time::timeout(Duration::from_secs(2), poller)
        .await
        .is_err()
    {
        abort.abort();
    }
    totals.unacked = lock(&outbox).depth();
    Ok(totals)
}
