//! Tunnels through a provider's outbound proxy: HTTP `CONNECT` or SOCKS5 (RFC 1928, with
//! RFC 1929 username/password), run on a freshly connected TCP socket to the proxy before TLS.
//!
//! Invariants: the upstream host always goes to the proxy by name (SOCKS5 address type 3, or
//! the `CONNECT` authority), so workers never need the upstream's addresses; IP literals go as
//! the address they are. The proxy messages are rendered once on the control thread, when the
//! snapshot is built; they hold the proxy credentials, so `Debug` and every error message show
//! only the proxy's `host:port` and the target. A tunnel is either established with nothing
//! left over on the socket, or refused with an error naming the proxy and its answer.
//! Not here: connecting to the proxy or timing the handshake (the pool runs it under the
//! connect timeout), TLS (runs over the tunnel afterwards, unchanged).

use std::fmt;
use std::io;

use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncReadRentExt, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::config::{ProxyKind, ProxyUrl};

/// Largest `CONNECT` answer head read from an HTTP proxy.
const MAX_CONNECT_HEAD: usize = 8 * 1024;

/// Why a tunnel could not be set up. The messages name the proxy and never its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TunnelError {
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

/// How to open a tunnel to one upstream `host:port` through one proxy.
pub struct Tunnel {
    kind: ProxyKind,
    /// The proxy's `host:port` (messages).
    proxy: Box<str>,
    /// The upstream's `host:port` (messages).
    target: Box<str>,
    /// Pool key suffix: scheme, proxy authority and a fingerprint of the credentials.
    key: Box<str>,
    /// HTTP: the whole `CONNECT` request. SOCKS5: the connect request, or empty when the
    /// target cannot be encoded (a name longer than 255 bytes). Holds credentials (HTTP).
    request: Box<[u8]>,
    /// SOCKS5 RFC 1929 sub-negotiation message, when credentials are set.
    socks_auth: Option<Box<[u8]>>,
}

impl fmt::Debug for Tunnel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tunnel")
            .field("kind", &self.kind)
            .field("proxy", &self.proxy)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl Tunnel {
    /// Renders the handshake for reaching `host:port` (host as in a base URL: lower-cased,
    /// IPv6 without brackets) through `proxy`.
    pub fn new(proxy: &ProxyUrl, host: &str, port: u16) -> Tunnel {
        let target = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let user = proxy.username.expose();
        let pass = proxy.password.expose();
        let fp = if user.is_empty() {
            "none".to_string()
        } else {
            crate::secret::fingerprint(&format!("{user}:{pass}"))
        };
        let key = format!(" via {}://{}#{fp}", proxy.kind.as_str(), proxy.authority());
        let (request, socks_auth) = match proxy.kind {
            ProxyKind::Http => {
                let mut r = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
                if !user.is_empty() {
                    r.push_str("Proxy-Authorization: Basic ");
                    r.push_str(&base64(format!("{user}:{pass}").as_bytes()));
                    r.push_str("\r\n");
                }
                r.push_str("\r\n");
                (r.into_bytes(), None)
            }
            ProxyKind::Socks5 | ProxyKind::Socks5h => {
                let auth = (!user.is_empty()).then(|| socks_auth_message(user, pass));
                (socks_connect_request(host, port).unwrap_or_default(), auth)
            }
        };
        Tunnel {
            kind: proxy.kind,
            proxy: proxy.authority().into(),
            target: target.into(),
            key: key.into(),
            request: request.into(),
            socks_auth: socks_auth.map(Into::into),
        }
    }

    /// What sets this tunnel's connections apart in a pool key (no secret: a fingerprint of
    /// the credentials, like API key fingerprints).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The proxy's `host:port`.
    pub fn proxy(&self) -> &str {
        &self.proxy
    }

    /// Runs the handshake on `tcp`, freshly connected to the proxy. On success the socket
    /// carries bytes to and from the upstream and nothing of the handshake is left unread.
    pub async fn establish(&self, tcp: &mut TcpStream) -> Result<(), TunnelError> {
        match self.kind {
            ProxyKind::Http => self.http_connect(tcp).await,
            ProxyKind::Socks5 | ProxyKind::Socks5h => self.socks5(tcp).await,
        }
    }

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

/// RFC 1929: version 1, then the length-prefixed user name and password (both 1-255 bytes,
/// checked at config load; longer values are cut rather than mis-framed).
fn socks_auth_message(user: &str, pass: &str) -> Vec<u8> {
    let user = user.as_bytes().get(..255).unwrap_or(user.as_bytes());
    let pass = pass.as_bytes().get(..255).unwrap_or(pass.as_bytes());
    let mut m = Vec::with_capacity(3 + user.len() + pass.len());
    m.push(1);
    m.push(user.len() as u8);
    m.extend_from_slice(user);
    m.push(pass.len() as u8);
    m.extend_from_slice(pass);
    m
}

/// RFC 1928 CONNECT: IP literals as addresses, names as a domain name for the proxy to
/// resolve. `None` when the name does not fit the one-byte length.
fn socks_connect_request(host: &str, port: u16) -> Option<Vec<u8>> {
    let mut r = vec![5, 1, 0];
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(ip)) => {
            r.push(1);
            r.extend_from_slice(&ip.octets());
        }
        Ok(std::net::IpAddr::V6(ip)) => {
            r.push(4);
            r.extend_from_slice(&ip.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len()).ok().filter(|&l| l > 0)?;
            r.push(3);
            r.push(len);
            r.extend_from_slice(host.as_bytes());
        }
    }
    r.extend_from_slice(&port.to_be_bytes());
    Some(r)
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

/// Standard base64 with padding (RFC 4648), for `Proxy-Authorization: Basic`.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET[(v & 63) as usize]);
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let n = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(n >> 18));
        out.push(sym(n >> 12));
        out.push(if chunk.len() > 1 { sym(n >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(n) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
            ("Aladdin:open sesame", "QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        ] {
            assert_eq!(base64(plain.as_bytes()), enc);
        }
    }

    #[test]
    fn connect_requests_carry_the_target_by_name_and_basic_auth() {
        let p = ProxyUrl::parse("http://alice:s%40cret@proxy.example:3128").unwrap();
        let t = Tunnel::new(&p, "api.openai.com", 443);
        assert_eq!(
            std::str::from_utf8(&t.request).unwrap(),
            format!(
                "CONNECT api.openai.com:443 HTTP/1.1\r\nHost: api.openai.com:443\r\nProxy-Authorization: Basic {}\r\n\r\n",
                base64(b"alice:s@cret")
            )
        );
        assert_eq!(t.proxy(), "proxy.example:3128");
        assert!(t.key().starts_with(" via http://proxy.example:3128#"));
        assert!(!t.key().contains("alice") && !t.key().contains("cret"));
        let dbg = format!("{t:?}");
        assert!(!dbg.contains("alice") && !dbg.contains("cret") && !dbg.contains("Basic"));
        // no credentials, no header; IPv6 targets bracketed
        let p = ProxyUrl::parse("http://127.0.0.1:3128").unwrap();
        let t = Tunnel::new(&p, "::1", 8443);
        assert_eq!(
            &*t.request,
            b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n"
        );
        assert!(t.key().ends_with("#none"));
        // different credentials through the same proxy are different pools
        let a = Tunnel::new(&ProxyUrl::parse("http://a:1@p:1").unwrap(), "h", 1);
        let b = Tunnel::new(&ProxyUrl::parse("http://a:2@p:1").unwrap(), "h", 1);
        assert_ne!(a.key(), b.key());
    }

    #[test]
    fn socks5_requests_send_names_as_domains_and_literals_as_addresses() {
        assert_eq!(
            socks_connect_request("api.example.com", 443).unwrap(),
            [&[5u8, 1, 0, 3, 15][..], b"api.example.com", &[1, 187]].concat()
        );
        assert_eq!(
            socks_connect_request("10.1.2.3", 80).unwrap(),
            [5, 1, 0, 1, 10, 1, 2, 3, 0, 80]
        );
        let v6 = socks_connect_request("::1", 1).unwrap();
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        assert!(socks_connect_request(&"a".repeat(256), 1).is_none());
        assert_eq!(
            socks_auth_message("bob", "pw"),
            [1, 3, b'b', b'o', b'b', 2, b'p', b'w']
        );
        let p = ProxyUrl::parse("socks5h://bob:pw@127.0.0.1:1080").unwrap();
        let t = Tunnel::new(&p, "localhost", 9);
        assert!(t.socks_auth.is_some());
        assert!(t.key().starts_with(" via socks5h://127.0.0.1:1080#"));
        let t = Tunnel::new(&ProxyUrl::parse("socks5://127.0.0.1:1080").unwrap(), "h", 9);
        assert!(t.socks_auth.is_none());
    }
}
