//! The door: Tellijn's own accept loop in front of rmqtt.
//!
//! rmqtt 0.24 reads a connection's first bytes to detect the MQTT version with no timeout, so
//! a client that connects and sends nothing (or fewer than ~11 bytes) holds a socket and a
//! task forever; it also has no limit on connections or pending handshakes. The door closes
//! those holes before rmqtt sees a byte:
//!
//! 1. **Limits at accept**: at most `max_connections` open, `max_pending` connections that
//!    have not completed their CONNECT, and `max_pending_per_ip` of those per source address.
//!    Over a limit, the connection is closed at once.
//! 2. **A deadline for the CONNECT**: the TLS handshake (on the TLS listener) and the complete
//!    CONNECT packet must arrive within `connect_timeout`; the first packet must be a CONNECT
//!    of at most [`MAX_CONNECT`] bytes with a valid protocol name and a UTF-8 client id.
//! 3. **Then it steps aside**: the client's own stream, with the CONNECT it read put back in
//!    front and its writes gathered ([`ClientIo`]), is handed to rmqtt's MQTT session
//!    ([`rmqtt::v3::process`] or `v5`) with the client's real address. No loopback listener
//!    and no copying: authentication, ACLs and the payload gate stay in the
//!    [hooks](crate::hooks). (rmqtt 0.24 keeps that entry point crate-private; `vendor/`
//!    makes it public, see `vendor/README.md`.)
//!
//! Every refused connection is counted in `tellijn_mqtt_refused_connections_total{reason}`
//! (no audit line: nothing has identified itself yet, and an attacker must not be able to
//! fill the disk with them).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rmqtt::context::ServerContext;
use rmqtt::net::{Builder, Dispatcher, MqttStream};

use tellijn_config::Metrics;
use tellijn_config::metrics::ReasonLabels;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

use crate::client_io::ClientIo;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Largest CONNECT accepted (client id, username, password and a will fit easily).
pub const MAX_CONNECT: usize = 2048;

/// Why a connection was closed by the door (the `reason` label).
pub mod refusal {
    pub const CONNECTION_LIMIT: &str = "connection_limit";
    pub const PENDING_LIMIT: &str = "pending_limit";
    pub const CONNECT_TIMEOUT: &str = "connect_timeout";
    pub const TLS_HANDSHAKE: &str = "tls_handshake";
    pub const NOT_CONNECT: &str = "not_connect";
    pub const TOO_LARGE: &str = "too_large";
    pub const MALFORMED: &str = "malformed";
    pub const TRUNCATED: &str = "truncated";
    /// rmqtt's codec refused a packet after the CONNECT (counted by the hooks).
    pub const PROTOCOL_ERROR: &str = "protocol_error";
}

/// The door's limits (from `[limits]`).
#[derive(Debug, Clone)]
pub struct DoorLimits {
    pub max_connections: usize,
    pub max_pending: usize,
    pub max_pending_per_ip: usize,
    pub connect_timeout: Duration,
}

impl From<&tellijn_config::campus::Limits> for DoorLimits {
    fn from(l: &tellijn_config::campus::Limits) -> Self {
        DoorLimits {
            max_connections: l.max_connections,
            max_pending: l.max_pending,
            max_pending_per_ip: l.max_pending_per_ip,
            connect_timeout: l.connect_timeout,
        }
    }
}

/// Counts shared by all listeners of one broker.
pub(crate) struct Door {
    limits: DoorLimits,
    metrics: Metrics,
    open: AtomicUsize,
    pending: Mutex<Pending>,
    /// rmqtt's server state, where each admitted connection's session runs.
    scx: ServerContext,
    /// The listener settings rmqtt applies to every session (packet size, keep-alive…).
    listener: Arc<Builder>,
}

#[derive(Default)]
struct Pending {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Holds one connection's place in the counts; gives it back when dropped.
struct Place {
    door: Arc<Door>,
    ip: IpAddr,
    pending: bool,
}

impl Place {
    fn admitted(&mut self) {
        if self.pending {
            self.door.leave_pending(self.ip);
            self.pending = false;
        }
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.pending {
            self.door.leave_pending(self.ip);
        }
        self.door.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Door {
    pub(crate) fn new(
        limits: DoorLimits,
        metrics: Metrics,
        scx: ServerContext,
        listener: Arc<Builder>,
    ) -> Arc<Door> {
        Arc::new(Door {
            limits,
            metrics,
            open: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            scx,
            listener,
        })
    }

    fn refuse(&self, reason: &'static str) {
        self.metrics
            .refused_connections
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    fn leave_pending(&self, ip: IpAddr) {
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        p.total = p.total.saturating_sub(1);
        if let Some(n) = p.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                p.per_ip.remove(&ip);
            }
        }
    }

    /// Takes a place for a new connection, or says which limit is full.
    fn enter(self: &Arc<Door>, ip: IpAddr) -> Result<Place, &'static str> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.limits.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(refusal::CONNECTION_LIMIT);
        }
        let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        let from_ip = p.per_ip.get(&ip).copied().unwrap_or(0);
        if p.total >= self.limits.max_pending || from_ip >= self.limits.max_pending_per_ip {
            drop(p);
            self.open.fetch_sub(1, Ordering::Relaxed);
            return Err(refusal::PENDING_LIMIT);
        }
        p.total += 1;
        *p.per_ip.entry(ip).or_insert(0) += 1;
        Ok(Place {
            door: self.clone(),
            ip,
            pending: true,
        })
    }

    /// Accepts connections on `listener` until the task is aborted.
    pub(crate) async fn serve(self: Arc<Door>, listener: TcpListener, tls: Option<TlsAcceptor>) {
        loop {
            let (stream, peer) = match listener.accept().await {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors or similar: say so and let the moment pass.
                    tracing::warn!("MQTT accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let place = match self.enter(peer.ip()) {
                Ok(p) => p,
                Err(reason) => {
                    self.refuse(reason);
                    tracing::debug!(%peer, reason, "Refused an MQTT connection at the door.");
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let door = self.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                if let Err(reason) = door.handle(stream, peer, tls, place).await {
                    // Counted while the socket is still open: whoever sees it close can
                    // already see it counted.
                    door.refuse(reason);
                    tracing::debug!(%peer, reason, "Closed an MQTT connection at the door.");
                }
            });
        }
    }

    async fn handle(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        mut place: Place,
    ) -> Result<(), &'static str> {
        let deadline = tokio::time::Instant::now() + self.limits.connect_timeout;
        match tls {
            None => self.pass(stream, peer, deadline, &mut place).await,
            // Boxed: the handshake's and the TLS stream's state is large, and inline it would
            // make every plain connection's task as large as a TLS one.
            Some(acceptor) => {
                Box::pin(async move {
                    let stream = tokio::time::timeout_at(deadline, acceptor.accept(stream))
                        .await
                        .map_err(|_| refusal::CONNECT_TIMEOUT)?
                        .map_err(|e| {
                            // Says why (unknown issuer, expired certificate…), never what was
                            // sent.
                            tracing::warn!(%peer, "MQTT TLS handshake failed: {e}");
                            refusal::TLS_HANDSHAKE
                        })?;
                    self.pass(stream, peer, deadline, &mut place).await
                })
                .await
            }
        }
    }

    /// Reads the CONNECT by the deadline, then hands the stream (the CONNECT put back in front)
    /// to rmqtt's session for its protocol version, with the client's address.
    async fn pass<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static>(
        &self,
        mut client: S,
        peer: SocketAddr,
        deadline: tokio::time::Instant,
        place: &mut Place,
    ) -> Result<(), &'static str> {
        let connect = tokio::time::timeout_at(deadline, read_connect(&mut client))
            .await
            .map_err(|_| refusal::CONNECT_TIMEOUT)??;
        place.admitted();
        let io = ClientIo::new(connect, client);
        let dispatcher =
            Dispatcher::with_capacity(io, peer, None, self.listener.clone(), FRAME_BUFFER);
        let stream = match dispatcher.mqtt().await {
            Ok(s) => s,
            // The door checked the protocol name and level: rmqtt's codec refused the rest.
            Err(_) => return Err(refusal::MALFORMED),
        };
        // Errors here are the session's end (a disconnect, a refused login, a protocol
        // error): rmqtt and the hooks have counted and logged what there is to say.
        // Boxed, so a connection holds the state of its own protocol version's session only.
        let ended = match stream {
            MqttStream::V3(s) => {
                Box::pin(rmqtt::v3::process(self.scx.clone(), s, LISTENER_ID)).await
            }
            MqttStream::V5(s) => {
                Box::pin(rmqtt::v5::process(self.scx.clone(), s, LISTENER_ID)).await
            }
        };
        if let Err(e) = ended {
            tracing::debug!(%peer, "An MQTT session ended: {e}");
        }
        Ok(())
    }
}

/// Where each session's read and write buffers start (tokio-util's default is 8 KiB each): a
/// count message is a few hundred bytes, and the buffers grow for a larger packet (at most
/// [`crate::MAX_PACKET`]).
const FRAME_BUFFER: usize = 1024;

/// The id rmqtt knows the door's listener settings by (`ServerContext::listen_cfgs`).
pub(crate) const LISTENER_ID: rmqtt::types::ListenerId = 1;

/// Reads one complete CONNECT packet and checks its header; returns its bytes.
async fn read_connect<S: AsyncRead + Unpin>(s: &mut S) -> Result<Vec<u8>, &'static str> {
    let mut packet = Vec::with_capacity(64);
    let first = read_byte(s).await?;
    packet.push(first);
    if first != 0x10 {
        return Err(refusal::NOT_CONNECT);
    }
    let mut remaining: usize = 0;
    for i in 0..4 {
        let b = read_byte(s).await?;
        packet.push(b);
        remaining |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
        if i == 3 {
            return Err(refusal::MALFORMED);
        }
    }
    if remaining > MAX_CONNECT {
        return Err(refusal::TOO_LARGE);
    }
    let header = packet.len();
    packet.resize(header + remaining, 0);
    s.read_exact(&mut packet[header..])
        .await
        .map_err(|_| refusal::TRUNCATED)?;
    check_connect_body(&packet[header..])?;
    Ok(packet)
}

async fn read_byte<S: AsyncRead + Unpin>(s: &mut S) -> Result<u8, &'static str> {
    s.read_u8().await.map_err(|_| refusal::TRUNCATED)
}

/// Checks the variable header and the client id of a CONNECT body (MQTT 3.1, 3.1.1 and 5).
/// The rest (credentials, will, properties' contents) is rmqtt's and the gate's to judge.
pub fn check_connect_body(body: &[u8]) -> Result<(), &'static str> {
    let mut r = Reader(body);
    let name = r.string()?;
    let level = r.u8()?;
    match (name, level) {
        (b"MQTT", 4 | 5) | (b"MQIsdp", 3) => {}
        _ => return Err(refusal::MALFORMED),
    }
    let flags = r.u8()?;
    if flags & 0x01 != 0 {
        return Err(refusal::MALFORMED);
    }
    r.take(2)?; // keep-alive
    if level == 5 {
        let len = r.varint()?;
        r.take(len)?;
    }
    let client_id = r.string()?;
    std::str::from_utf8(client_id).map_err(|_| refusal::MALFORMED)?;
    if client_id.contains(&0) {
        return Err(refusal::MALFORMED);
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if self.0.len() < n {
            return Err(refusal::MALFORMED);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }
    fn string(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.take(2)?;
        self.take(usize::from(u16::from_be_bytes([len[0], len[1]])))
    }
    fn varint(&mut self) -> Result<usize, &'static str> {
        let mut value = 0usize;
        for i in 0..4 {
            let b = self.u8()?;
            value |= usize::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(refusal::MALFORMED)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(client_id: &[u8], level: u8) -> Vec<u8> {
        let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', level, 0x02, 0, 30];
        if level == 5 {
            body.push(0);
        }
        body.extend((client_id.len() as u16).to_be_bytes());
        body.extend(client_id);
        let mut p = vec![0x10, body.len() as u8];
        p.extend(body);
        p
    }

    async fn read(bytes: &[u8]) -> Result<Vec<u8>, &'static str> {
        let mut r = bytes;
        read_connect(&mut r).await
    }

    #[tokio::test]
    async fn connect_packets_are_read_whole_or_refused_with_a_reason() {
        let ok = connect(b"lib-ent-1", 4);
        assert_eq!(read(&ok).await, Ok(ok.clone()));
        let v5 = connect(b"lib-ent-1", 5);
        assert_eq!(read(&v5).await, Ok(v5.clone()));
        // A PUBLISH first, declaring ~256 MB: refused on its first byte, nothing allocated.
        assert_eq!(
            read(&[0x30, 0xff, 0xff, 0xff, 0x7f]).await,
            Err(refusal::NOT_CONNECT)
        );
        // A CONNECT declaring ~256 MB.
        assert_eq!(
            read(&[0x10, 0xff, 0xff, 0xff, 0x7f]).await,
            Err(refusal::TOO_LARGE)
        );
        assert_eq!(
            read(&[0x10, 0xff, 0xff, 0xff, 0xff, 0x01]).await,
            Err(refusal::MALFORMED)
        );
        assert_eq!(read(&ok[..ok.len() - 1]).await, Err(refusal::TRUNCATED));
        assert_eq!(read(&ok[..1]).await, Err(refusal::TRUNCATED));
        assert_eq!(read(&[]).await, Err(refusal::TRUNCATED));
        assert_eq!(
            read(&connect(b"bad-\xff-id", 4)).await,
            Err(refusal::MALFORMED)
        );
        assert_eq!(read(&connect(b"x", 9)).await, Err(refusal::MALFORMED));
        let mut wrong_name = ok.clone();
        wrong_name[4] = b'X';
        assert_eq!(read(&wrong_name).await, Err(refusal::MALFORMED));
    }

    #[tokio::test]
    async fn limits_count_and_give_back_places() {
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let door = Door::new(
            DoorLimits {
                max_connections: 3,
                max_pending: 2,
                max_pending_per_ip: 1,
                connect_timeout: Duration::from_secs(1),
            },
            metrics,
            ServerContext::new().build().await,
            Arc::new(Builder::new()),
        );
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let c: IpAddr = [10, 0, 0, 3].into();
        let mut first = door.enter(a).unwrap();
        assert_eq!(door.enter(a).err(), Some(refusal::PENDING_LIMIT));
        let second = door.enter(b).unwrap();
        assert_eq!(door.enter(c).err(), Some(refusal::PENDING_LIMIT));
        first.admitted();
        let mut third = door.enter(a).unwrap();
        third.admitted();
        assert_eq!(door.enter(c).err(), Some(refusal::CONNECTION_LIMIT));
        drop(second);
        drop(first);
        assert!(door.enter(c).is_ok());
        assert_eq!(door.open.load(Ordering::Relaxed), 1);
        drop(third);
        assert_eq!(door.open.load(Ordering::Relaxed), 0);
        assert!(door.pending.lock().unwrap().per_ip.is_empty());
    }

    /// Memory by construction: the task every plain connection holds stays small (the TLS
    /// handshake and the rmqtt session of the connection's protocol version are boxed, not
    /// inline: inline, it was 14 KiB per connection in a release build).
    #[tokio::test]
    async fn a_plain_connections_task_is_small() {
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let limits = DoorLimits {
            max_connections: 1,
            max_pending: 1,
            max_pending_per_ip: 1,
            connect_timeout: Duration::from_secs(1),
        };
        let scx = ServerContext::new().build().await;
        let door = Door::new(limits, metrics, scx, Arc::new(Builder::new()));
        let place = door.enter([10, 0, 0, 1].into()).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let peer = SocketAddr::from(([10, 0, 0, 1], 1));
        let task = door.handle(c, peer, None, place);
        let size = std::mem::size_of_val(&task);
        // 1.3 KiB in release and debug builds alike.
        assert!(size <= 2048, "a connection's task takes {size} bytes");
    }
}
