//! The stream an rmqtt session runs on: the client's own socket (or TLS stream), with
//!
//! - **the CONNECT put back in front**: the door read it to check it; reads return those bytes
//!   first, then the stream's own;
//! - **writes gathered until the session waits for input**: rmqtt writes and flushes every
//!   packet on its own (a PUBACK is 4 bytes), which near the server's limit cost one `writev`
//!   and one TCP segment per PUBACK, a third of the server's CPU. Here a flush only marks the
//!   bytes as due; they are written when the session next reads (before it could wait for the
//!   client), when more than [`WRITE_LIMIT`] bytes wait, or at shutdown. rmqtt's session loop
//!   always has the socket's read in its `select!`, and closes the stream when it ends, so
//!   nothing written is left behind: a PUBACK waits at most for the packets the session had
//!   already read from the socket.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// At most this many bytes wait to be written; a write past it writes what waits first.
pub const WRITE_LIMIT: usize = 4096;

/// A write buffer larger than this is given back once written, so an idle connection does not
/// keep the memory of its busiest moment.
const KEEP_CAPACITY: usize = 512;

/// See the [module](self).
pub struct ClientIo<S> {
    prefix: Vec<u8>,
    at: usize,
    out: Vec<u8>,
    inner: S,
}

impl<S> ClientIo<S> {
    /// `prefix`: the bytes already read from `inner` (the CONNECT), to be read again first.
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        ClientIo {
            prefix,
            at: 0,
            out: Vec::new(),
            inner,
        }
    }

    /// Bytes written by the session and not yet handed to the stream.
    pub fn waiting(&self) -> usize {
        self.out.len()
    }
}

impl<S: AsyncWrite + Unpin> ClientIo<S> {
    /// Writes what waits, then flushes the stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.out.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.out))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.out.drain(..n);
        }
        if self.out.capacity() > KEEP_CAPACITY {
            self.out = Vec::new();
        }
        Pin::new(&mut self.inner).poll_flush(cx)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for ClientIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        // Before the session can wait for the client, the client gets what it is owed. If the
        // socket cannot take it now, its write readiness wakes this task as well.
        if !this.out.is_empty()
            && let Poll::Ready(Err(e)) = this.poll_drain(cx)
        {
            return Poll::Ready(Err(e));
        }
        if this.at < this.prefix.len() {
            let n = buf.remaining().min(this.prefix.len() - this.at);
            buf.put_slice(&this.prefix[this.at..this.at + n]);
            this.at += n;
            if this.at == this.prefix.len() {
                // Given back whole: its memory is not kept for the connection's life.
                this.prefix = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ClientIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.out.len() + buf.len() > WRITE_LIMIT {
            ready!(this.poll_drain(cx))?;
            if buf.len() > WRITE_LIMIT {
                return Pin::new(&mut this.inner).poll_write(cx, buf);
            }
        }
        this.out.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    /// Due, not yet written: see the [module](self).
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// The CONNECT the door read comes back first, whole, however small the reader's buffer,
    /// then the stream's own bytes.
    #[tokio::test]
    async fn the_prefix_comes_back_first_then_the_stream() {
        for chunk in [1, 3, 64] {
            let (near, mut far) = tokio::io::duplex(64);
            let mut io = ClientIo::new(b"CONNECT".to_vec(), near);
            far.write_all(b" then more").await.unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0u8; chunk];
            while got.len() < b"CONNECT then more".len() {
                let n = io.read(&mut buf).await.unwrap();
                assert!(n > 0 && n <= chunk);
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, b"CONNECT then more");
            assert_eq!(
                io.prefix.capacity(),
                0,
                "the prefix is freed once given back"
            );
            drop(far);
            assert_eq!(
                io.read(&mut buf).await.unwrap(),
                0,
                "the stream's end is the end"
            );
        }
    }

    /// Flushed writes wait until the session reads, then go out together, in order.
    #[tokio::test]
    async fn flushed_writes_go_out_when_the_session_next_reads() {
        let (near, mut far) = tokio::io::duplex(1024);
        let mut io = ClientIo::new(Vec::new(), near);
        for ack in [b"ack1", b"ack2", b"ack3"] {
            io.write_all(ack).await.unwrap();
            io.flush().await.unwrap();
        }
        assert_eq!(io.waiting(), 12);
        // The client has sent nothing: the session's read waits, but the acks are out.
        let mut buf = [0u8; 16];
        let mut rb = ReadBuf::new(&mut buf);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(Pin::new(&mut io).poll_read(&mut cx, &mut rb).is_pending());
        assert_eq!(io.waiting(), 0);
        let mut got = [0u8; 12];
        far.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ack1ack2ack3");
    }

    /// Shutdown writes what waits first; a write past the limit writes what waits first; a
    /// write larger than the limit goes straight through. Nothing is lost or reordered.
    #[tokio::test]
    async fn shutdown_and_the_limit_write_what_waits_in_order() {
        let (near, mut far) = tokio::io::duplex(64 * 1024);
        let mut io = ClientIo::new(Vec::new(), near);
        let small = vec![1u8; WRITE_LIMIT - 10];
        io.write_all(&small).await.unwrap();
        assert_eq!(io.waiting(), WRITE_LIMIT - 10);
        io.write_all(&[2u8; 20]).await.unwrap();
        assert_eq!(io.waiting(), 20, "what waited was written first");
        let big = vec![3u8; WRITE_LIMIT + 1];
        io.write_all(&big).await.unwrap();
        assert_eq!(io.waiting(), 0);
        io.write_all(b"last").await.unwrap();
        io.shutdown().await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        let mut want = small;
        want.extend([2u8; 20]);
        want.extend(big);
        want.extend(b"last");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes arrived reordered or changed");
        assert!(
            io.out.capacity() <= KEEP_CAPACITY,
            "the write buffer was kept"
        );
    }

    /// A client that has gone away is an error at the next read, not a hang.
    #[tokio::test]
    async fn a_write_to_a_closed_client_is_an_error_at_the_next_read() {
        let (near, far) = tokio::io::duplex(64);
        drop(far);
        let mut io = ClientIo::new(Vec::new(), near);
        io.write_all(b"ack").await.unwrap();
        let mut buf = [0u8; 4];
        assert!(io.read(&mut buf).await.is_err());
    }
}
