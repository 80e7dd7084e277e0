//! How to reach an upstream through a provider's outbound proxy, as plain data: the proxy
//! messages (HTTP `CONNECT`, or SOCKS5 per RFC 1928 with RFC 1929 username/password), rendered
//! once on the control thread when a snapshot is built. `upstream::tunnel` runs them.
//!
//! Invariants: the upstream host always goes to the proxy by name (SOCKS5 address type 3, or
//! the `CONNECT` authority), so workers never need the upstream's addresses; IP literals go as
//! the address they are. The messages hold the proxy credentials, so `Debug` shows only the
//! proxy's `host:port` and the target, and the pool key carries a fingerprint, never a secret.
//! No I/O here.

use std::fmt;

use crate::config::{ProxyKind, ProxyUrl};

/// How to open a tunnel to one upstream `host:port` through one proxy.
pub(crate) struct Tunnel {
    pub(crate) kind: ProxyKind,
    /// The proxy's `host:port` (messages).
    pub(crate) proxy: Box<str>,
    /// The upstream's `host:port` (messages).
    pub(crate) target: Box<str>,
    /// Pool key suffix: scheme, proxy authority and a fingerprint of the credentials.
    pub(crate) key: Box<str>,
    /// HTTP: the whole `CONNECT` request. SOCKS5: the connect request, or empty when the
    /// target cannot be encoded (a name longer than 255 bytes). Holds credentials (HTTP).
    pub(crate) request: Box<[u8]>,
    /// SOCKS5 RFC 1929 sub-negotiation message, when credentials are set.
    pub(crate) socks_auth: Option<Box<[u8]>>,
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
    pub(crate) fn new(proxy: &ProxyUrl, host: &str, port: u16) -> Tunnel {
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
    pub(crate) fn key(&self) -> &str {
        &self.key
    }

    /// The proxy's `host:port`.
    pub(crate) fn proxy(&self) -> &str {
        &self.proxy
    }
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
