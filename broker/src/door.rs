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
//! 3. **Then it steps aside**: the CONNECT is written to rmqtt's own listener on loopback and
//!    bytes are copied both ways until either side closes. Authentication, ACLs and the
//!    payload gate stay in the [hooks](crate::hooks).
//!
//! Every refused connection is counted in `tellijn_mqtt_refused_connections_total{reason}`
//! (no audit line: nothing has identified itself yet, and an attacker must not be able to
//! fill the disk with them).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tellijn_config::Metrics;
use tellijn_config::metrics::ReasonLabels;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

/// Largest CONNECT accepted (client id, username, password and a will fit easily).
pub const MAX_CONNECT: usize = 2048;

/// Buffer per direction for the copy to rmqtt: MQTT packets here are at most
/// [`crate::MAX_PACKET`] bytes, and 20 000 idle sensors must not cost 8 KiB × 2 each.
const COPY_BUFFER: usize = 2048;

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

/// The client address behind each of the door's loopback connections to rmqtt (rmqtt sees
/// only loopback), so the hooks can count the sources of refusals. One entry per open
/// connection.
#[derive(Default)]
pub(crate) struct Peers(Mutex<HashMap<SocketAddr, IpAddr>>);

impl Peers {
    /// The client address behind rmqtt's `remote_addr` of a connection.
    pub(crate) fn get(&self, inner_local: SocketAddr) -> Option<IpAddr> {
        let m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        m.get(&inner_local).copied()
    }
}

/// Removes a connection's entry from [`Peers`] when it ends.
struct PeerEntry<'a> {
    peers: &'a Peers,
    local: SocketAddr,
}

impl Drop for PeerEntry<'_> {
    fn drop(&mut self) {
        let mut m = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
        m.remove(&self.local);
    }
}

/// Counts shared by all listeners of one broker.
pub(crate) struct Door {
    limits: DoorLimits,
    metrics: Metrics,
    open: AtomicUsize,
    pending: Mutex<Pending>,
    /// rmqtt's loopback listener.
    inner: SocketAddr,
    peers: Arc<Peers>,
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
        inner: SocketAddr,
        peers: Arc<Peers>,
    ) -> Arc<Door> {
        Arc::new(Door {
            limits,
            metrics,
            open: AtomicUsize::new(0),
            pending: Mutex::new(Pending::default()),
            inner,
            peers,
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
                let mut stream = stream;
                if let Err(reason) = door.handle(&mut stream, peer, tls, place).await {
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
        stream: &mut TcpStream,
        peer: SocketAddr,
        tls: Option<TlsAcceptor>,
        mut place: Place,
    ) -> Result<(), &'static str> {
        let deadline = tokio::time::Instant::now() + self.limits.connect_timeout;
        match tls {
            None => self.pass(stream, deadline, &mut place).await,
            Some(acceptor) => {
                let stream = tokio::time::timeout_at(deadline, acceptor.accept(stream))
                    .await
                    .map_err(|_| refusal::CONNECT_TIMEOUT)?
                    .map_err(|e| {
                        // Says why (unknown issuer, expired certificate…), never what was sent.
                        tracing::warn!(%peer, "MQTT TLS handshake failed: {e}");
                        refusal::TLS_HANDSHAKE
                    })?;
                self.pass(stream, deadline, &mut place).await
            }
        }
    }

    /// Reads the CONNECT by the deadline, then copies both ways to rmqtt.
    async fn pass<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        mut client: S,
        deadline: tokio::time::Instant,
        place: &mut Place,
    ) -> Result<(), &'static str> {
        let connect = tokio::time::timeout_at(deadline, read_connect(&mut client))
            .await
            .map_err(|_| refusal::CONNECT_TIMEOUT)??;
        let mut inner = TcpStream::connect(self.inner).await.map_err(|e| {
            tracing::error!(
                "The MQTT door cannot reach the broker on {}: {e}",
                self.inner
            );
            refusal::CONNECTION_LIMIT
        })?;
        let _ = inner.set_nodelay(true);
        let _peer = inner.local_addr().ok().map(|local| {
            let mut m = self.peers.0.lock().unwrap_or_else(|e| e.into_inner());
            m.insert(local, place.ip);
            PeerEntry {
                peers: &self.peers,
                local,
            }
        });
        place.admitted();
        if inner.write_all(&connect).await.is_err() {
            return Ok(());
        }
        // Either side closing ends both; errors here are ordinary disconnects.
        let _ = tokio::io::copy_bidirectional_with_sizes(
            &mut client,
            &mut inner,
            COPY_BUFFER,
            COPY_BUFFER,
        )
        .await;
        Ok(())
    }
}

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

    #[test]
    fn limits_count_and_give_back_places() {
        let metrics = Metrics::new(&mut prometheus_client::registry::Registry::default());
        let door = Door::new(
            DoorLimits {
                max_connections: 3,
                max_pending: 2,
                max_pending_per_ip: 1,
                connect_timeout: Duration::from_secs(1),
            },
            metrics,
            SocketAddr::from(([127, 0, 0, 1], 9)),
            Arc::new(Peers::default()),
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
}
