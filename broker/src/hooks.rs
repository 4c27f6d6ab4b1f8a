//! rmqtt hooks that put the [`gate`](crate::gate) in the path of every CONNECT, SUBSCRIBE and
//! PUBLISH.
//!
//! - `ClientAuthenticate`: credentials, client id and the last will (rmqtt publishes a will
//!   without the publish ACL, so it is checked here and a bad one refuses the CONNECT). A
//!   credential verified before is decided at once; only new ones queue for an argon2id slot.
//! - `ClientSubscribeCheckAcl`: the topic filter.
//! - `MessagePublishCheckAcl`: topic and payload; an admitted message is handed to the
//!   processors *before* the PUBACK, through a bounded channel, so a slow processor slows its
//!   publishers instead of growing memory.
//!
//! Refusals of clients that have not authenticated (every refused CONNECT; SUBSCRIBE, PUBLISH
//! and protocol errors of anonymous clients) go to the audit log aggregated per reason and
//! minute ([`Refusals`]); those of sensors and named readers get a line each.
//!
//! The listener is built with `allow_anonymous(false)` and nobody is a superuser, so rmqtt
//! calls these hooks for every client and anonymity stays a decision of the gate.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use rmqtt::codec::types::MQTT_LEVEL_5;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType};
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, LastWill, PublishAclResult, Reason, SubscribeAclResult,
};
use tellijn_config::metrics::ReasonLabels;
use tellijn_config::refusals::{Example, kind};
use tellijn_config::{AuditEvent, AuditLog, Metrics, Refusals};
use tellijn_wire::{Clock, SensorEvent};
use tokio::sync::mpsc;

use crate::gate::{Admitted, AuthRefusal, Identity, Policy, Will};

/// Everything the hooks need; one instance serves all hook types.
pub(crate) struct GateHooks {
    /// Swapped whole by a reload ([`crate::Broker::set_policy`]).
    pub policy: arc_swap::ArcSwap<Policy>,
    pub metrics: Metrics,
    pub audit: Arc<AuditLog>,
    pub refusals: Arc<Refusals>,
    pub events: mpsc::Sender<SensorEvent>,
    pub clock: Clock,
    /// Per-client publish rate (`[limits] publish_rate`, `publish_burst`), keyed by
    /// [`rate_key`]: only configured identities (and one key for all anonymous clients) ever
    /// get an entry, so the limiter's memory is bounded by the config.
    pub rate: governor::DefaultKeyedRateLimiter<String>,
    /// Publishes seen, to refresh `tellijn_publish_limiter_keys` now and then.
    pub publishes: std::sync::atomic::AtomicU64,
    /// argon2id verifications running at once. Each holds its memory cost (a MiB or more) on a
    /// blocking thread; unbounded, a connect storm of N sensors would start N threads at once,
    /// and their allocator arenas keep that memory afterwards.
    pub verifications: tokio::sync::Semaphore,
}

/// How many argon2id verifications may run at once: one per core.
pub(crate) fn verification_slots() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The keyed rate limiter for `[limits]`.
pub(crate) fn rate_limiter(
    limits: &tellijn_config::campus::Limits,
) -> governor::DefaultKeyedRateLimiter<String> {
    let per_second =
        std::num::NonZeroU32::new(limits.publish_rate).unwrap_or(std::num::NonZeroU32::MIN);
    let burst =
        std::num::NonZeroU32::new(limits.publish_burst).unwrap_or(std::num::NonZeroU32::MIN);
    governor::RateLimiter::keyed(governor::Quota::per_second(per_second).allow_burst(burst))
}

/// The rate limiter's key for an authenticated identity: the sensor or reader name, never a
/// client id the client chose. All anonymous clients share one key (they may publish nothing;
/// their refusals are aggregated).
pub(crate) fn rate_key(who: &Identity) -> String {
    match who {
        Identity::Sensor(id) => format!("sensor/{id}"),
        Identity::Reader(name) => format!("reader/{name}"),
        Identity::Anonymous => "anonymous".to_owned(),
    }
}

/// The protocol error behind a disconnect, if it was one: not a close, a timeout, a kick or
/// the gate's own refusal (`MqttError`, already counted and audited by [`GateHooks::publish`]).
/// rmqtt reports codec failures as `Error("utf8 error")`, `Error("Invalid topic name")`,
/// `Error("Max size exceeded: …")`; its two internal queue errors are not the client's doing.
fn protocol_error(reason: &Reason) -> Option<String> {
    const INTERNAL: [&str; 2] = [
        "Message delivery queue is closed",
        "No message received from the Rx",
    ];
    match reason {
        Reason::ProtocolError(e) => Some(e.to_string()),
        Reason::Error(e) if !INTERNAL.contains(&&**e) => Some(e.to_string()),
        Reason::Reasons(all) => all.iter().find_map(protocol_error),
        _ => None,
    }
}

impl GateHooks {
    fn identity(&self, s: &Session) -> Identity {
        match &s.id.username {
            None => Identity::Anonymous,
            Some(u) if self.policy.load().is_sensor(u) => Identity::Sensor(u.to_string()),
            Some(u) => Identity::Reader(u.to_string()),
        }
    }

    fn audit(&self, event: AuditEvent) {
        if let Err(e) = self.audit.record(event) {
            tracing::error!("{e}");
        }
    }

    /// The client's own address (the door hands rmqtt the client's stream and address).
    fn source(&self, remote: Option<std::net::SocketAddr>) -> Option<std::net::IpAddr> {
        remote.map(|a| a.ip())
    }

    async fn authenticate(&self, info: &ConnectInfo) -> ReturnType {
        let client_id = info.id().client_id.to_string();
        let username = info.username().map(|u| u.to_string());
        let password = info.password().map(|p| p.to_vec());
        let will = info.last_will().map(|w| match w {
            LastWill::V3(w) => (w.topic.to_string(), w.message.to_vec()),
            LastWill::V5(w) => (w.topic.to_string(), w.message.to_vec()),
        });
        // A CONNECT decided under a policy that a reload replaced meanwhile gets no special
        // treatment: it may keep its connection, but every SUBSCRIBE and PUBLISH after it is
        // checked against the policy in force, so it gains nothing the new rules refuse.
        let policy = self.policy.load_full();
        let (cid, user) = (client_id.clone(), username.clone());
        let cached = match (info.username(), info.password()) {
            (Some(u), Some(p)) => policy.is_cached(u, p),
            _ => false,
        };
        let decide = move || {
            let will = will
                .as_ref()
                .map(|(topic, payload)| Will { topic, payload });
            policy.authenticate(&cid, user.as_deref(), password.as_deref(), will)
        };
        let decided = if cached {
            // Verified before: SHA-256 only, so no waiting behind other clients' argon2id.
            decide()
        } else {
            // argon2id is deliberately slow: keep it off the async worker threads, a few at a
            // time.
            let _slot = self.verifications.acquire().await;
            tokio::task::spawn_blocking(decide)
                .await
                .unwrap_or(Err(AuthRefusal(
                    tellijn_config::metrics::auth_reason::BAD_SECRET,
                )))
        };
        match decided {
            Ok(_) => (
                false,
                Some(HookResult::AuthResult(AuthResult::Allow(false, None))),
            ),
            Err(AuthRefusal(reason)) => {
                self.metrics
                    .auth_failures
                    .get_or_create(&ReasonLabels { reason })
                    .inc();
                tracing::debug!(reason, "Refused an MQTT connection.");
                let source = self.source(info.id().remote_addr);
                self.refusals.note(kind::AUTH_FAILURE, reason, source, || {
                    Example::new(Some(&client_id), username.as_deref(), None)
                });
                let result = if reason == tellijn_config::metrics::auth_reason::BAD_SECRET
                    || reason == tellijn_config::metrics::auth_reason::UNKNOWN_USER
                {
                    AuthResult::BadUsernameOrPassword
                } else {
                    AuthResult::NotAuthorized
                };
                (false, Some(HookResult::AuthResult(result)))
            }
        }
    }

    async fn publish(&self, s: &Session, p: &rmqtt::types::Publish) -> ReturnType {
        // Over its rate, a client waits here (its PUBACK too): it slows down, loses nothing,
        // and the other clients' sessions never wait for it. Keyed by who the CONNECT proved
        // the client to be, so no client id can create an entry of its own.
        let who = self.identity(s);
        let key = rate_key(&who);
        if self.rate.check_key(&key).is_err() {
            self.metrics.publish_throttled.inc();
            self.rate.until_key_ready(&key).await;
        }
        // Counting the keys visits every shard: not on each of a sensor's publishes.
        let n = self
            .publishes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !matches!(who, Identity::Sensor(_)) || n.is_multiple_of(4096) {
            self.metrics
                .publish_limiter_keys
                .set(self.rate.len() as i64);
        }
        let at = Instant::now();
        let received = self.clock.now();
        match self
            .policy
            .load()
            .check_publish(&who, &p.topic, &p.payload, p.retain, received)
        {
            Ok(admitted) => {
                let event = match admitted {
                    Admitted::Count(msg) => SensorEvent::Count { msg, received, at },
                    Admitted::Status(status) => SensorEvent::Status {
                        sensor: s.id.client_id.to_string(),
                        status,
                    },
                };
                self.metrics.processor_queue.inc();
                if self.events.send(event).await.is_err() {
                    // The processors are gone (shutting down): do not PUBACK what nobody stores.
                    self.metrics.processor_queue.dec();
                    let r = PublishAclResult::rejected(true, Some("server shutting down".into()));
                    return (false, Some(HookResult::PublishAclResult(r)));
                }
                (
                    false,
                    Some(HookResult::PublishAclResult(PublishAclResult::allow())),
                )
            }
            Err(reason) => {
                self.metrics.reject(reason);
                let client = s.id.client_id.to_string();
                if who == Identity::Anonymous {
                    let source = self.source(s.id.remote_addr);
                    self.refusals
                        .note(kind::PUBLISH_REFUSED, reason.as_str(), source, || {
                            Example::new(Some(&client), None, Some(&p.topic))
                        });
                } else {
                    tracing::warn!(client = %tellijn_config::refusals::field(&client), reason = reason.as_str(), "Refused a publish.");
                    self.audit(AuditEvent::publish_refused(
                        &client,
                        &p.topic,
                        reason.as_str(),
                        &p.payload,
                    ));
                }
                // MQTT 3.1.1 has no negative PUBACK: a refused QoS 1 publish would look
                // delivered, so the connection is closed instead. MQTT 5 gets reason 0x87.
                let v5 = s.protocol().await.is_ok_and(|v| v == MQTT_LEVEL_5);
                let r = PublishAclResult::rejected(!v5, Some(reason.as_str().into()));
                (false, Some(HookResult::PublishAclResult(r)))
            }
        }
    }

    fn subscribe(&self, s: &Session, sub: &rmqtt::types::Subscribe) -> ReturnType {
        let who = self.identity(s);
        if self.policy.load().may_subscribe(&who, &sub.topic_filter) {
            let ok = SubscribeAclResult::new_success(sub.opts.qos(), None);
            return (false, Some(HookResult::SubscribeAclResult(ok)));
        }
        self.metrics.subscribe_refused.inc();
        let client = s.id.client_id.to_string();
        if who == Identity::Anonymous {
            let source = self.source(s.id.remote_addr);
            self.refusals
                .note(kind::SUBSCRIBE_REFUSED, "not_allowed", source, || {
                    Example::new(Some(&client), None, Some(&sub.topic_filter))
                });
        } else {
            tracing::warn!(client = %tellijn_config::refusals::field(&client), filter = %tellijn_config::refusals::field(&sub.topic_filter), "Refused a subscription.");
            self.audit(AuditEvent::subscribe_refused(&client, &sub.topic_filter));
        }
        let no = SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized);
        (false, Some(HookResult::SubscribeAclResult(no)))
    }

    fn disconnected(&self, s: &Session, reason: &Reason) {
        let Some(error) = protocol_error(reason) else {
            return;
        };
        self.metrics
            .refused_connections
            .get_or_create(&ReasonLabels {
                reason: crate::door::refusal::PROTOCOL_ERROR,
            })
            .inc();
        let client = s.id.client_id.to_string();
        if self.identity(s) == Identity::Anonymous {
            let source = self.source(s.id.remote_addr);
            self.refusals.note(
                kind::PROTOCOL_ERROR,
                crate::door::refusal::PROTOCOL_ERROR,
                source,
                || Example::new(Some(&client), None, None),
            );
        } else {
            tracing::warn!(client = %tellijn_config::refusals::field(&client), %error, "Disconnected an MQTT client for a protocol error.");
            self.audit(AuditEvent::protocol_error(&client, &error));
        }
    }

    async fn connection(&self, s: &Session, up: bool) {
        if up {
            self.metrics.mqtt_connections.inc();
        } else {
            self.metrics.mqtt_connections.dec();
        }
        if let Identity::Sensor(sensor) = self.identity(s) {
            let event = if up {
                SensorEvent::Connected { sensor }
            } else {
                SensorEvent::Disconnected { sensor }
            };
            let _ = self.events.send(event).await;
        }
    }
}

/// The rmqtt handler: one per hook type, all sharing [`GateHooks`].
pub(crate) struct Hook(pub Arc<GateHooks>);

#[async_trait]
impl Handler for Hook {
    async fn hook(&self, param: &Parameter, acc: Option<HookResult>) -> ReturnType {
        match param {
            Parameter::ClientAuthenticate(info) => self.0.authenticate(info).await,
            Parameter::MessagePublishCheckAcl(s, p) => self.0.publish(s, p).await,
            Parameter::ClientSubscribeCheckAcl(s, sub) => self.0.subscribe(s, sub),
            Parameter::ClientConnected(s) => {
                self.0.connection(s, true).await;
                (true, acc)
            }
            Parameter::ClientDisconnected(s, reason) => {
                self.0.disconnected(s, reason);
                self.0.connection(s, false).await;
                (true, acc)
            }
            _ => (true, acc),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limiter_keys_come_from_the_identity_never_the_client_id() {
        let limits = tellijn_config::campus::Limits::default();
        let rate = rate_limiter(&limits);
        // Ten thousand anonymous clients, each with its own client id, share one key.
        for _ in 0..10_000 {
            let _ = rate.check_key(&rate_key(&Identity::Anonymous));
        }
        let _ = rate.check_key(&rate_key(&Identity::Sensor("door-a".into())));
        let _ = rate.check_key(&rate_key(&Identity::Reader("hvac".into())));
        assert_eq!(rate.len(), 3);
        // A reader named like a sensor does not share the sensor's budget.
        assert_ne!(
            rate_key(&Identity::Reader("door-a".into())),
            rate_key(&Identity::Sensor("door-a".into()))
        );
    }
}
