//! Per-worker upstream connections: connect to pre-resolved addresses (never a name), through
//! the provider's outbound proxy when it has one ([`tunnel`]), TLS via [`tls`], `TCP_NODELAY`,
//! and a keep-alive pool keyed by endpoint (scheme, authority, trust, proxy).
//!
//! Invariants: the pool is `!Send` worker state (`RefCell`, no locks). A connection goes back to
//! the pool only when its response was read completely and both sides allow reuse; after an
//! error, a timeout or a cancel it is dropped (closed). Idle connections expire after the
//! endpoint's `pool_idle_timeout`, checked on checkout and swept on the worker tick. With a
//! proxy, the addresses are the proxy's and the tunnel handshake is part of the connect (same
//! timeout); a pooled connection is a whole tunnel, reused like a direct one.
//! Not here: HTTP semantics (`proxy`), DNS (`control`).

pub(crate) mod body;
pub(crate) mod coding;
pub(crate) mod tls;
pub(crate) mod tunnel;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::channel::Endpoint;

/// A connected upstream stream, plain or TLS.
#[derive(Debug)]
pub(crate) enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(Box<tls::TlsStream>),
}

impl AsyncReadRent for Stream {
    async fn read<T: IoBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.read(buf).await,
            Stream::Tls(s) => s.read(buf).await,
        }
    }

    async fn readv<T: monoio::buf::IoVecBufMut>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.readv(buf).await,
            Stream::Tls(s) => s.readv(buf).await,
        }
    }
}

impl AsyncWriteRent for Stream {
    async fn write<T: monoio::buf::IoBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.write(buf).await,
            Stream::Tls(s) => s.write(buf).await,
        }
    }

    async fn writev<T: monoio::buf::IoVecBuf>(&mut self, buf: T) -> monoio::BufResult<usize, T> {
        match self {
            Stream::Plain(s) => s.writev(buf).await,
            Stream::Tls(s) => s.writev(buf).await,
        }
    }

    async fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush().await,
            Stream::Tls(s) => s.flush().await,
        }
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        match self {
            Stream::Plain(s) => s.shutdown().await,
            Stream::Tls(s) => s.shutdown().await,
        }
    }
}

/// One upstream connection with its read buffer.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: Stream,
    /// The TCP socket under `stream` (valid as long as `stream` lives).
    fd: RawFd,
    /// Bytes read and not yet consumed.
    pub buf: Vec<u8>,
    /// True when it came from the pool (a failure before any response byte may then be the
    /// server having closed it while idle, and is retried once on a fresh connection).
    pub reused: bool,
}

/// Initial read buffer per upstream connection.
const READ_CHUNK: usize = 16 * 1024;

impl Conn {
    /// True when an idle connection can no longer carry a request: the peer closed it, it
    /// errored, or it holds bytes nobody asked for (a late `408`, a `close_notify`). Reading
    /// those as the next response would hand one client another exchange's answer.
    fn is_stale(&self) -> bool {
        use nix::sys::socket::{MsgFlags, recv};
        let mut probe = [0u8; 1];
        match recv(
            self.fd,
            &mut probe,
            MsgFlags::MSG_PEEK | MsgFlags::MSG_DONTWAIT,
        ) {
            Err(nix::errno::Errno::EAGAIN) => false,
            Ok(_) | Err(_) => true,
        }
    }

    /// Writes all of `data`; hands the buffer back for reuse.
    pub(crate) async fn write_all(&mut self, data: Vec<u8>) -> (io::Result<()>, Vec<u8>) {
        let (r, data) = self.stream.write_all(data).await;
        (r.map(|_| ()), data)
    }

    /// Reads more bytes onto the end of `buf`. `Ok(0)` is end of stream.
    pub(crate) async fn read_more(&mut self) -> io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        }
        let buf = std::mem::take(&mut self.buf);
        let len = buf.len();
        let cap = buf.capacity();
        let (r, slice) = self.stream.read(buf.slice_mut(len..cap)).await;
        self.buf = slice.into_inner();
        r
    }
}

/// Why a connection could not be made.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The endpoint has no resolved address yet.
    NoAddress,
    /// Every address refused or failed; the last error.
    Io(io::Error),
    /// Connect or TLS handshake took longer than the connect timeout.
    Timeout,
    /// TLS handshake failed (certificate, protocol).
    Tls(io::Error),
    /// The outbound proxy could not be reached or broke off the tunnel handshake (the next
    /// proxy address is tried). The message names the proxy, never its credentials.
    ProxyIo(String),
    /// The outbound proxy refused the tunnel: a non-2xx `CONNECT` answer, a SOCKS5 failure
    /// reply, rejected credentials, or not the protocol configured.
    Proxy(String),
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::NoAddress => f.write_str("upstream address not resolved yet"),
            ConnectError::Io(e) => write!(f, "connect failed: {e}"),
            ConnectError::Timeout => f.write_str("connect timed out"),
            ConnectError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            ConnectError::ProxyIo(m) | ConnectError::Proxy(m) => f.write_str(m),
        }
    }
}

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// A worker's upstream connection pool.
#[derive(Default)]
pub(crate) struct Pool {
    idle: RefCell<HashMap<Box<str>, Vec<Idle>>>,
    next_addr: Cell<usize>,
    opened: Cell<u64>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("keys", &self.idle.borrow().len())
            .field("opened", &self.opened.get())
            .finish()
    }
}

impl Pool {
    /// An empty pool.
    pub(crate) fn new() -> Pool {
        Pool::default()
    }

    /// The most recently used idle connection for `ep` that has not expired and is still
    /// clean (see [`Conn::is_stale`]); stale ones are closed on the way.
    pub(crate) fn take_idle(&self, ep: &Endpoint, now: Instant) -> Option<Conn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&*ep.key)?;
        while let Some(i) = list.pop() {
            if i.expires > now && !i.conn.is_stale() {
                let mut conn = i.conn;
                conn.reused = true;
                return Some(conn);
            }
        }
        None
    }

    /// Returns a connection whose exchange completed cleanly.
    pub(crate) fn put(&self, ep: &Endpoint, mut conn: Conn, now: Instant) {
        if ep.pool_max_idle == 0 {
            return;
        }
        conn.buf.clear();
        if conn.buf.capacity() > 4 * READ_CHUNK {
            conn.buf = Vec::with_capacity(READ_CHUNK);
        }
        let mut idle = self.idle.borrow_mut();
        let list = match idle.get_mut(&*ep.key) {
            Some(l) => l,
            None => idle.entry(ep.key.clone()).or_default(),
        };
        if list.len() >= ep.pool_max_idle {
            list.remove(0);
        }
        list.push(Idle {
            conn,
            expires: now + ep.pool_idle_timeout,
        });
    }

    /// Drops expired idle connections (called on the worker tick).
    pub(crate) fn sweep(&self, now: Instant) {
        let mut idle = self.idle.borrow_mut();
        idle.retain(|_, list| {
            list.retain(|i| i.expires > now);
            !list.is_empty()
        });
    }

    /// Drops every idle connection (shutdown).
    pub(crate) fn clear(&self) {
        self.idle.borrow_mut().clear();
    }

    /// Opens a new connection to `ep`, trying its addresses in turn (starting at a rotating
    /// offset so load spreads over all of them), each within `timeout` including the proxy
    /// tunnel and TLS. A TLS failure or a proxy's refusal ends the attempt at once: another
    /// address would answer the same.
    pub(crate) async fn connect(
        &self,
        ep: &Endpoint,
        timeout: Duration,
    ) -> Result<Conn, ConnectError> {
        if ep.addrs.is_empty() {
            return Err(ConnectError::NoAddress);
        }
        let start = self.next_addr.get();
        self.next_addr.set(start.wrapping_add(1));
        let mut last = ConnectError::NoAddress;
        for k in 0..ep.addrs.len() {
            let addr = ep.addrs[(start + k) % ep.addrs.len()];
            // Boxed: opening (tunnel + TLS handshake) is a 3 KiB state machine that would
            // otherwise sit inside every request's future for its whole life, streams
            // included; one allocation per new connection is nothing next to a handshake.
            match monoio::time::timeout(timeout, Box::pin(open(ep, addr))).await {
                Ok(Ok(conn)) => {
                    self.opened.set(self.opened.get() + 1);
                    return Ok(conn);
                }
                Ok(Err(e @ (ConnectError::Tls(_) | ConnectError::Proxy(_)))) => return Err(e),
                Ok(Err(e)) => last = e,
                Err(_) => last = ConnectError::Timeout,
            }
        }
        Err(last)
    }
}

async fn open(ep: &Endpoint, addr: SocketAddr) -> Result<Conn, ConnectError> {
    let mut tcp = match (TcpStream::connect_addr(addr).await, &ep.tunnel) {
        (Ok(tcp), _) => tcp,
        (Err(e), None) => return Err(ConnectError::Io(e)),
        (Err(e), Some(t)) => {
            return Err(ConnectError::ProxyIo(format!(
                "connect to proxy {} failed: {e}",
                t.proxy()
            )));
        }
    };
    let _ = tcp.set_nodelay(true);
    if let Some(t) = &ep.tunnel {
        tunnel::establish(t, &mut tcp).await.map_err(|e| match e {
            tunnel::TunnelError::Broken(m) => ConnectError::ProxyIo(m),
            tunnel::TunnelError::Refused(m) => ConnectError::Proxy(m),
        })?;
    }
    let fd = tcp.as_raw_fd();
    let stream = match &ep.tls {
        None => Stream::Plain(tcp),
        Some(t) => Stream::Tls(Box::new(tls::handshake(t, tcp).await.map_err(|e| {
            if e.kind() == io::ErrorKind::InvalidData {
                ConnectError::Tls(e)
            } else {
                ConnectError::Io(e)
            }
        })?)),
    };
    Ok(Conn {
        stream,
        fd,
        buf: Vec::with_capacity(READ_CHUNK),
        reused: false,
    })
}
