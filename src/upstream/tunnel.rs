//! Tunnels through a provider's outbound proxy: HTTP `CONNECT` or SOCKS5 (RFC 1928, with
//! RFC 1929 username/password), run on a freshly connected TCP socket to the proxy before TLS.
//!
//! Invariants: the proxy messages come rendered in the channel's [`Tunnel`] (built once on the
//! control thread); every error message shows only the proxy's `host:port` and the target,
//! never its credentials. A tunnel is either established with nothing
//! left over on the socket, or refused with an error naming the proxy and its answer.
//! Not here: connecting to the proxy or timing the handshake (the pool runs it under the
//! connect timeout), TLS (runs over the tunnel afterwards, unchanged).

use std::fmt;
use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::channel::tunnel::Tunnel;
use crate::config::ProxyKind;

/// Largest `CONNECT` answer head read from an HTTP proxy.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Why a tunnel could not be set up. The messages name the proxy and never its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TunnelError {
    /// The socket failed or closed mid-handshake: another proxy address may do better.
    Broken(String),
    /// The proxy answered, and the answer was no (or was not the protocol configured): trying
    /// it again will not help.
    Refused(String),
}

impl fmt::Display for TunnelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TunnelError::Broken(m) | TunnelError::Refused(m) => f.write_str(m),
        }
    }
}

/// Runs `t`'s handshake on `tcp`, freshly connected to the proxy. On success the socket
/// carries bytes to and from the upstream and nothing of the handshake is left unread.
pub(crate) async fn establish(t: &Tunnel, tcp: &mut TcpStream) -> Result<(), TunnelError> {
    let run = Run(t);
    match t.kind {
        ProxyKind::Http => run.http_connect(tcp).await,
        ProxyKind::Socks5 | ProxyKind::Socks5h => run.socks5(tcp).await,
    }
}

/// One handshake in progress (the tunnel's messages, and the errors that name its proxy).
struct Run<'t>(&'t Tunnel);

impl std::ops::Deref for Run<'_> {
    type Target = Tunnel;
    fn deref(&self) -> &Tunnel {
        self.0
    }
}

impl Run<'_> {
    fn broken(&self, e: &io::Error) -> TunnelError {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            TunnelError::Broken(format!(
                "proxy {} closed the connection during the handshake for {}",
                self.proxy, self.target
            ))
        } else {
            TunnelError::Broken(format!(
                "proxy {} failed during the handshake for {}: {e}",
                self.proxy, self.target
            ))
        }
    }

    fn refused(&self, what: impl fmt::Display) -> TunnelError {
        TunnelError::Refused(format!("proxy {} {what}", self.proxy))
    }

    async fn send(&self, tcp: &mut TcpStream, bytes: Vec<u8>) -> Result<(), TunnelError> {
        let (r, _) = tcp.write_all(bytes).await;
        r.map(|_| ()).map_err(|e| self.broken(&e))
    }

    async fn recv_exact(&self, tcp: &mut TcpStream, n: usize) -> Result<Box<[u8]>, TunnelError> {
        let (r, buf) = tcp.read_exact(vec![0u8; n].into_boxed_slice()).await;
        r.map_err(|e| self.broken(&e))?;
        Ok(buf)
    }

    async fn http_connect(&self, tcp: &mut TcpStream) -> Result<(), TunnelError> {
        self.send(tcp, self.request.to_vec()).await?;
        let mut buf: Vec<u8> = Vec::with_capacity(1024);
        let (status, len) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut headers);
            match resp.parse(&buf) {
                Ok(httparse::Status::Complete(len)) => break (resp.code.unwrap_or(0), len),
                Ok(httparse::Status::Partial) if buf.len() < MAX_CONNECT_HEAD => {}
                Ok(httparse::Status::Partial) | Err(_) => {
                    return Err(self.refused(format_args!(
                        "sent a malformed answer to CONNECT {} (is it an HTTP proxy?)",
                        self.target
                    )));
                }
            }
            if buf.capacity() - buf.len() < 512 {
                buf.reserve(1024);
            }
            let (len, cap) = (buf.len(), buf.capacity());
            let (r, slice) = tcp.read(buf.slice_mut(len..cap)).await;
            buf = slice.into_inner();
            match r {
                Ok(0) => {
                    return Err(self.broken(&io::Error::from(io::ErrorKind::UnexpectedEof)));
                }
                Ok(_) => {}
                Err(e) => return Err(self.broken(&e)),
            }
        };
        if !(200..300).contains(&status) {
            return Err(self.refused(format_args!("answered {status} to CONNECT {}", self.target)));
        }
        // The upstream has nothing to say before the gateway speaks (TLS and HTTP both start
        // with the client), so bytes after the answer are the proxy misbehaving; handing them
        // to TLS or to the response parser would corrupt the exchange.
        if buf.len() > len {
            return Err(self.refused(format_args!(
                "sent unexpected bytes after its answer to CONNECT {}",
                self.target
            )));
        }
        Ok(())
    }

    async fn socks5(&self, tcp: &mut TcpStream) -> Result<(), TunnelError> {
        if self.request.is_empty() {
            return Err(self.refused(format_args!(
                "cannot be asked for {}: SOCKS5 host names are at most 255 bytes",
                self.target
            )));
        }
        // Greeting: offer "no authentication", and username/password when configured (the
        // proxy picks).
        let greeting = if self.socks_auth.is_some() {
            vec![5, 2, 0, 2]
        } else {
            vec![5, 1, 0]
        };
        self.send(tcp, greeting).await?;
        let choice = self.recv_exact(tcp, 2).await?;
        let (version, method) = (byte(&choice, 0), byte(&choice, 1));
        if version != 5 {
            return Err(self.refused("did not answer as a SOCKS5 proxy"));
        }
        match (method, &self.socks_auth) {
            (0, _) => {}
            (2, Some(auth)) => {
                self.send(tcp, auth.to_vec()).await?;
                let status = self.recv_exact(tcp, 2).await?;
                if byte(&status, 1) != 0 {
                    return Err(self.refused(format_args!(
                        "rejected the SOCKS5 user name and password (status {})",
                        byte(&status, 1)
                    )));
                }
            }
            (0xff, None) | (2, None) => {
                return Err(self.refused(
                    "requires SOCKS5 authentication; put user:password@ in the proxy URL",
                ));
            }
            (0xff, Some(_)) => {
                return Err(self.refused(
                    "accepted none of the offered SOCKS5 methods (none, username/password)",
                ));
            }
            (m, _) => {
                return Err(self.refused(format_args!(
                    "chose SOCKS5 method {m}, which was not offered"
                )));
            }
        }
        self.send(tcp, self.request.to_vec()).await?;
        let head = self.recv_exact(tcp, 4).await?;
        if byte(&head, 0) != 5 {
            return Err(self.refused("sent a malformed SOCKS5 reply"));
        }
        let reply = byte(&head, 1);
        if reply != 0 {
            return Err(self.refused(format_args!(
                "answered SOCKS5 reply {reply} ({}) to CONNECT {}",
                socks_reply_text(reply),
                self.target
            )));
        }
        // The bound address that follows is of no use to a client; read it so nothing of the
        // handshake is left for TLS or HTTP to trip over.
        let rest = match byte(&head, 3) {
            1 => 4 + 2,
            4 => 16 + 2,
            3 => usize::from(byte(&self.recv_exact(tcp, 1).await?, 0)) + 2,
            _ => return Err(self.refused("sent a malformed SOCKS5 reply")),
        };
        self.recv_exact(tcp, rest).await?;
        Ok(())
    }
}

fn byte(b: &[u8], i: usize) -> u8 {
    b.get(i).copied().unwrap_or(0)
}

fn socks_reply_text(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by ruleset",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply",
    }
}
