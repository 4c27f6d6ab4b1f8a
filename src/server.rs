//! Starting and stopping the server's parts.
//!
//! Start: audit log → metrics → processors (load saved state) → broker → retained topics from
//! that state (and the public tree `tellijn/v1/public/…`, see [`crate::view`]) → HTTP and the
//! metrics listener. Stop: the broker stops accepting, the processors drain what was admitted
//! and flush it to Parquet, the audit log is synced.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use tellijn_broker::{Broker, BrokerConfig, Policy, TlsListener};
use tellijn_config::refusals::{Example, kind};
use tellijn_config::{AuditEvent, AuditLog, Campus, Metrics, Refusals};
use tellijn_processors::{Output, Processors, Summary};
use tellijn_wire::Clock;

use crate::live::Live;
use tellijn_processors::reload::Reload;
use tokio::sync::{mpsc, watch};

mod reload;
pub use reload::{ReloadError, Reloaded, needs_restart, reload_file};
use tokio::task::JoinHandle;

/// Capacity of the broker → processors channel. When it is full, publishers wait for their
/// PUBACK: back-pressure instead of unbounded memory.
pub const EVENT_QUEUE: usize = 4096;

/// At most this many waiting outputs are published as one batch ([`crate::view::last_per_topic`]).
const BRIDGE_BATCH: usize = 1024;

/// How often a closed window of aggregated refusals is looked for and written.
const REFUSALS_TICK: std::time::Duration = std::time::Duration::from_secs(5);

/// Connections the metrics listener serves at once (Prometheus uses one per scrape target).
const METRICS_CONNECTIONS: usize = 16;

/// What to start.
pub struct ServerOptions {
    pub campus: Arc<Campus>,
    /// Overrides of the config's addresses and data directory (flags).
    pub mqtt: Option<SocketAddr>,
    /// MQTT over TLS (used when the config has `[tls]`).
    pub mqtts: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    /// The metrics listener; `None` uses the config's `[server] metrics`.
    pub metrics: Option<SocketAddr>,
    /// PostgreSQL wire; `None` uses the config's address.
    pub postgres: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub clock: Clock,
    /// Where the config came from, for the audit log.
    pub source: String,
}

/// A running server.
pub struct Server {
    broker: Broker,
    http_addr: SocketAddr,
    metrics_addr: SocketAddr,
    data_dir: PathBuf,
    stop_tx: watch::Sender<bool>,
    processors: JoinHandle<Result<Summary, tellijn_processors::ProcessorError>>,
    bridge: JoinHandle<()>,
    http: JoinHandle<()>,
    metrics_http: JoinHandle<()>,
    pg: tellijn_queries::pg::PgServer,
    audit: Arc<AuditLog>,
    refusals: Arc<Refusals>,
    refusals_task: JoinHandle<()>,
    bookings: Option<crate::bookings::Bookings>,
    /// What the bookings were started with (a reload starts them again with a new campus).
    bookings_options: crate::bookings::BookingsOptions,
    /// The campus in force; the bridge follows it (the public tree).
    campus: watch::Sender<Arc<Campus>>,
    reloads: mpsc::Sender<Reload>,
    api: Arc<crate::api::Api>,
    history: Arc<tellijn_queries::History>,
    /// The current occupancy the API serves.
    pub live: Arc<Live>,
    pub metrics: Metrics,
}

async fn bind_http(addr: SocketAddr, flag: &str) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.with_context(|| {
        format!("cannot listen for HTTP on {addr}; choose another address with {flag} ADDR")
    })
}

impl Server {
    /// Starts everything; returns once all listeners are bound.
    pub async fn start(opts: ServerOptions) -> Result<Server> {
        // rmqtt links aws-lc-rs, the agent ring: with both linked, rustls has no default
        // provider, so install exactly one (ignored if one is installed already).
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let campus = opts.campus;
        // Fails closed: a token that cannot be read is an error, never an open endpoint.
        let token_sha256 = match campus.server.metrics_token_sha256.as_deref() {
            None => None,
            Some(h) => Some(crate::http::token_sha256(h).context(
                "server.metrics_token_sha256 must be 64 hex digits (`printf %s \"$TOKEN\" | sha256sum`)",
            )?),
        };
        let data_dir = opts
            .data_dir
            .unwrap_or_else(|| campus.server.data_dir.clone());
        std::fs::create_dir_all(&data_dir)
            .with_context(|| format!("cannot create the data directory {}", data_dir.display()))?;
        let audit = Arc::new(AuditLog::open(&data_dir)?);
        // Lines queued while another server held the log (`tellijn sensor add`), first.
        audit.take_inbox()?;
        audit.record(AuditEvent::ConfigLoaded {
            config_sha256: campus.hash(),
            source: opts.source,
        })?;

        let mut registry = Registry::default();
        let metrics = Metrics::new(&mut registry);
        Metrics::register_process(&mut registry, &data_dir);
        metrics.seed(&campus);
        audit.report_to(metrics.health.clone());
        let refusals = Arc::new(Refusals::new(audit.clone()));
        let refusals_task = {
            let refusals = refusals.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(REFUSALS_TICK);
                loop {
                    tick.tick().await;
                    refusals.flush_due(chrono::Utc::now());
                }
            })
        };

        let mut processors = Processors::open(
            campus.clone(),
            &data_dir,
            metrics.clone(),
            opts.clock,
            audit.clone(),
        )?;
        let initial = processors.initial_outputs();

        let http_listener = bind_http(opts.http.unwrap_or(campus.server.http), "--http").await?;
        let http_addr = http_listener.local_addr()?;
        let metrics_listener =
            bind_http(opts.metrics.unwrap_or(campus.server.metrics), "--metrics").await?;
        let metrics_addr = metrics_listener.local_addr()?;

        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let tls = match &campus.tls {
            Some(t) => Some(TlsListener {
                addr: opts
                    .mqtts
                    .or(campus.server.mqtts)
                    .unwrap_or(([127, 0, 0, 1], 8883).into()),
                cert: t.cert.clone(),
                key: t.key.clone(),
                client_ca: t.client_ca.clone(),
            }),
            None => None,
        };
        let broker = Broker::start(BrokerConfig {
            mqtt: opts.mqtt.unwrap_or(campus.server.mqtt),
            tls,
            policy: Arc::new(Policy::new(&campus)),
            metrics: metrics.clone(),
            audit: audit.clone(),
            refusals: refusals.clone(),
            events: events_tx.clone(),
            clock: opts.clock,
            limits: campus.limits.clone(),
        })
        .await?;
        for o in &initial {
            broker.publish_retained(&o.topic, o.payload.clone()).await?;
        }

        let live = Arc::new(Live::default());
        for o in &initial {
            live.apply(o);
        }
        // The public tree: what the anonymous API shows, published only when it changes.
        let mut public = crate::view::PublicTree::default();
        for (topic, payload) in public.all(&campus, &live) {
            broker.publish_retained(&topic, payload).await?;
        }
        let (out_tx, mut out_rx) = mpsc::channel::<Output>(EVENT_QUEUE);
        let (campus_tx, mut campus_rx) = watch::channel(campus.clone());
        let bridge = {
            let broker_scx = broker.publisher();
            let live = live.clone();
            tokio::spawn(async move {
                loop {
                    let changed = tokio::select! {
                        o = out_rx.recv() => {
                            let Some(o) = o else { break };
                            // Everything already waiting, each topic once with its last
                            // payload: the topics are retained state, so a reader only ever
                            // gets the latest; under load this publishes a room's occupancy
                            // once per batch instead of once per message.
                            let mut batch = vec![o];
                            while batch.len() < BRIDGE_BATCH {
                                match out_rx.try_recv() {
                                    Ok(o) => batch.push(o),
                                    Err(_) => break,
                                }
                            }
                            let campus = campus_rx.borrow().clone();
                            let mut changed = Vec::new();
                            for o in crate::view::last_per_topic(batch, |o| o.topic.as_str()) {
                                live.apply(&o);
                                changed.extend(public.after(&campus, &live, &o.topic));
                                if let Err(e) = broker_scx.publish_retained(&o.topic, o.payload).await {
                                    tracing::error!(topic = %o.topic, "Publishing a retained topic failed: {e}");
                                }
                            }
                            crate::view::last_per_topic(changed, |(t, _)| t.as_str())
                        }
                        // A reload: the public tree of the new campus, and the topics it
                        // no longer has cleared.
                        Ok(()) = campus_rx.changed() => {
                            let campus = campus_rx.borrow_and_update().clone();
                            public.reload(&campus, &live)
                        }
                    };
                    for (topic, payload) in changed {
                        if let Err(e) = broker_scx.publish_retained(&topic, payload).await {
                            tracing::error!(%topic, "Publishing a public topic failed: {e}");
                        }
                    }
                }
            })
        };
        let (stop_tx, mut stop_rx) = watch::channel(false);
        let flush = campus.server.flush_interval;
        let bookings_out = out_tx.clone();
        let (reloads, reloads_rx) = mpsc::channel(1);
        let processors = tokio::spawn(processors.run(
            events_rx,
            out_tx,
            flush,
            async move {
                let _ = stop_rx.wait_for(|s| *s).await;
            },
            reloads_rx,
        ));

        let history = Arc::new(
            tellijn_queries::History::open(&data_dir, Some(&campus))
                .await?
                .with_pg_catalog()?,
        );
        let bookings_options = crate::bookings::BookingsOptions {
            campus: campus.clone(),
            data_dir: data_dir.clone(),
            clock: opts.clock,
            live: live.clone(),
            metrics: metrics.clone(),
            history: history.clone(),
            out: bookings_out,
        };
        let bookings = crate::bookings::start(bookings_options.clone()).await?;
        let sql_audit = audit.clone();
        let pg = {
            let metrics = metrics.clone();
            let refusals = refusals.clone();
            let busy = metrics.sql_refused_connections.clone();
            let on_refusal: tellijn_queries::pg::OnRefusal = Arc::new(move |user, why, peer| {
                let reason = why.as_str();
                metrics
                    .auth_failures
                    .get_or_create(&tellijn_config::metrics::ReasonLabels { reason })
                    .inc();
                if why == tellijn_queries::pg::LoginRefusal::NoSqlRole {
                    // The password was right: a named, accountable user, one line each.
                    tracing::warn!(user, reason, %peer, "Refused a PostgreSQL login.");
                    if let Err(e) = refusals.log().record(AuditEvent::AuthFailure {
                        client: format!("postgres {peer}"),
                        username: Some(tellijn_config::refusals::field(user)),
                        reason,
                    }) {
                        tracing::error!("Writing the audit log failed: {e}");
                    }
                } else {
                    tracing::debug!(reason, %peer, "Refused a PostgreSQL login.");
                    refusals.note(kind::AUTH_FAILURE, reason, Some(peer.ip()), || {
                        Example::new(Some("postgres"), Some(user), None)
                    });
                }
            });
            let on_busy: tellijn_queries::pg::OnBusy = Arc::new(move |peer| {
                busy.inc();
                tracing::debug!(%peer, "Refused a PostgreSQL connection: [limits] max_sql_connections are open.");
            });
            tellijn_queries::pg::PgServer::start(
                Arc::new(history.context().clone()),
                &campus.users,
                opts.postgres.unwrap_or(campus.server.postgres),
                on_refusal,
                on_busy,
                sql_audit,
                tellijn_queries::pg::PgLimits::from_config(&campus.limits),
            )
            .await?
        };
        tracing::info!("PostgreSQL listening on {}.", pg.local_addr());

        let registry = Arc::new(Mutex::new(registry));
        let api = Arc::new(
            crate::api::Api::new(
                campus.clone(),
                live.clone(),
                history.clone(),
                opts.clock,
                data_dir.clone(),
                refusals.clone(),
                metrics.clone(),
            )
            .with_occupancy(events_tx),
        );
        let app = crate::http::router(api.clone(), metrics.health.clone());
        let http = tokio::spawn(crate::http::serve(
            http_listener,
            app,
            crate::http::ServeLimits {
                idle: campus.limits.http_idle_timeout,
                max_connections: campus.limits.max_http_connections,
                refused: metrics.http_refused_connections.clone(),
            },
        ));
        tracing::info!("HTTP listening on http://{http_addr}/.");
        let metrics_app = crate::http::metrics_router(crate::http::MetricsState {
            registry,
            token_sha256,
        });
        // Its own connection bound: scrapers never compete with the public for places.
        let metrics_http = tokio::spawn(crate::http::serve(
            metrics_listener,
            metrics_app,
            crate::http::ServeLimits {
                idle: campus.limits.http_idle_timeout,
                max_connections: METRICS_CONNECTIONS,
                refused: metrics.http_refused_connections.clone(),
            },
        ));
        tracing::info!("Metrics listening on http://{metrics_addr}/metrics.");
        Ok(Server {
            broker,
            http_addr,
            metrics_addr,
            data_dir,
            stop_tx,
            processors,
            bridge,
            http,
            metrics_http,
            pg,
            audit,
            refusals,
            refusals_task,
            bookings,
            bookings_options,
            campus: campus_tx,
            reloads,
            api,
            history,
            metrics,
            live,
        })
    }

    /// The MQTT address.
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// The MQTT-over-TLS address, when `[tls]` is configured.
    pub fn mqtts_addr(&self) -> Option<SocketAddr> {
        self.broker.tls_addr()
    }

    /// The HTTP address.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The metrics listener's address (`/metrics`).
    pub fn metrics_addr(&self) -> SocketAddr {
        self.metrics_addr
    }

    /// The PostgreSQL wire address.
    pub fn postgres_addr(&self) -> SocketAddr {
        self.pg.local_addr()
    }

    /// The data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        &self.data_dir
    }

    /// Writes the aggregated refusals counted so far now, without waiting for their minute to
    /// end (stop does it too).
    pub fn flush_refusals(&self) {
        self.refusals.flush();
    }

    /// Stops accepting, drains and flushes everything admitted; returns what was processed.
    pub async fn stop(self) -> Result<Summary> {
        self.broker.stop();
        self.pg.stop();
        let _ = self.stop_tx.send(true);
        if let Some(b) = self.bookings {
            b.stop();
        }
        let summary = self.processors.await.context("the processors panicked")??;
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), self.bridge).await;
        self.http.abort();
        self.metrics_http.abort();
        self.refusals_task.abort();
        self.refusals.flush();
        self.audit.sync()?;
        Ok(summary)
    }
}
