//! `[providers.ID] proxy`: the outbound proxy URL (`http://`, `socks5://`, `socks5h://`) parsed
//! into plain data that `upstream` builds its tunnels from.
//!
//! Invariants: the credentials live in [`Secret`]s, and no error message or display form ever
//! repeats them. Not here: connecting through the proxy (`upstream::tunnel`).

use super::BaseUrl;
use crate::secret::Secret;

/// The protocol spoken to a provider's outbound proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// `http://`: an HTTP proxy, tunnelled with `CONNECT` (for http and https upstreams alike).
    Http,
    /// `socks5://`: SOCKS5 (RFC 1928), optional username/password (RFC 1929).
    Socks5,
    /// `socks5h://`: SOCKS5 with the proxy resolving the upstream name. The gateway sends
    /// upstream names to the proxy with `socks5://` too, so both behave the same; the spelling
    /// is accepted because users copy it from curl and other tools.
    Socks5h,
}

impl ProxyKind {
    /// The URL scheme.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ProxyKind::Http => "http",
            ProxyKind::Socks5 => "socks5",
            ProxyKind::Socks5h => "socks5h",
        }
    }
}

/// `[providers.X] proxy`: where a provider's connections are tunnelled through. The
/// credentials are [`Secret`]s: `Debug` and [`ProxyUrl::display`] never show them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The protocol spoken to the proxy.
    pub kind: ProxyKind,
    /// Host name (lower-cased) or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (always written explicitly in the URL).
    pub port: u16,
    /// User name, percent-decoded; empty when the URL has no credentials.
    pub username: Secret,
    /// Password, percent-decoded; may be empty.
    pub password: Secret,
}

impl ProxyUrl {
    /// Parses `http://[user[:pass]@]host:port`, `socks5://…` or `socks5h://…`. A trailing `/`
    /// is allowed; a path, query or fragment is not, and the port must be written. Error
    /// messages never repeat the credentials.
    pub(crate) fn parse(s: &str) -> Result<ProxyUrl, String> {
        let Some((scheme, rest)) = s.split_once("://") else {
            return Err(
                "a proxy URL starts with http://, socks5:// or socks5h:// (e.g. \"http://127.0.0.1:3128\")"
                    .into(),
            );
        };
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" => ProxyKind::Socks5,
            "socks5h" => ProxyKind::Socks5h,
            _ => {
                // The scheme part holds no credentials, but may be anything: show a bounded,
                // escaped copy.
                let shown: String = scheme.chars().take(16).collect();
                return Err(format!(
                    "\"{}\" is not a supported proxy scheme; use http://, socks5:// or socks5h:// (HTTPS proxies are not supported)",
                    shown.escape_debug()
                ));
            }
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // Split the credentials off first, so nothing below can echo them.
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        let shown = format!(
            "{}://{}{}",
            kind.as_str(),
            if userinfo.is_some() { "***@" } else { "" },
            hostport.escape_debug()
        );
        if hostport.contains(['/', '?', '#']) {
            return Err(format!(
                "\"{shown}\" must be just scheme://[user:password@]host:port, without a path, query or fragment"
            ));
        }
        let explicit_port = match hostport.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => hostport.contains(':'),
        };
        if hostport.is_empty() || !explicit_port {
            return Err(format!(
                "\"{shown}\" needs a host and a port, e.g. \"{}://127.0.0.1:{}\"",
                kind.as_str(),
                if kind == ProxyKind::Http { 3128 } else { 1080 }
            ));
        }
        // Same host and port rules as base URLs.
        let addr = BaseUrl::parse(&format!("http://{hostport}"))
            .map_err(|_| format!("\"{shown}\" does not have a valid host:port"))?;
        if addr.port == 0 {
            return Err(format!("\"{shown}\": port 0 is not a proxy port"));
        }
        let (username, password) = match userinfo {
            None => (String::new(), String::new()),
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let bad = || {
                    format!(
                        "\"{shown}\": the user name and password must be percent-encoded UTF-8 without control characters"
                    )
                };
                let user = percent_decode(user).ok_or_else(bad)?;
                let pass = percent_decode(pass).ok_or_else(bad)?;
                if user.is_empty() {
                    return Err(format!(
                        "\"{shown}\": the user name before the ':' is empty"
                    ));
                }
                if kind == ProxyKind::Http && user.contains(':') {
                    return Err(format!(
                        "\"{shown}\": a user name for HTTP Basic auth cannot contain ':'"
                    ));
                }
                if kind != ProxyKind::Http
                    && (user.len() > 255 || pass.is_empty() || pass.len() > 255)
                {
                    return Err(format!(
                        "\"{shown}\": SOCKS5 needs a user name and a password of 1-255 bytes each"
                    ));
                }
                (user, pass)
            }
        };
        Ok(ProxyUrl {
            kind,
            host: addr.host,
            port: addr.port,
            username: Secret::new(username),
            password: Secret::new(password),
        })
    }

    /// `host:port` (IPv6 bracketed), for messages: never the credentials.
    pub(crate) fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port`, with `***@` when credentials are set (safe to print).
    pub(crate) fn display(&self) -> String {
        format!(
            "{}://{}{}",
            self.kind.as_str(),
            if self.username.is_empty() { "" } else { "***@" },
            self.authority()
        )
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape, invalid UTF-8 or a control character.
/// The `percent-encoding` crate decodes, and passes a broken escape through as text; in a
/// credential that is a typo, so it is refused first.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let escapes_whole = b.iter().enumerate().all(|(i, &c)| {
        c != b'%'
            || b.get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
    });
    if !escapes_whole {
        return None;
    }
    let out = percent_encoding::percent_decode_str(s).decode_utf8().ok()?;
    (!out.chars().any(char::is_control)).then(|| out.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_parse_with_percent_encoded_credentials() {
        let p = ProxyUrl::parse("http://user:p%40ss%3Aw0rd@Proxy.Example:3128/").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.username.expose(), "user");
        assert_eq!(p.password.expose(), "p@ss:w0rd");
        assert_eq!(p.display(), "http://***@proxy.example:3128");
        assert!(!format!("{p:?}").contains("p@ss"));
        let p = ProxyUrl::parse("socks5h://[::1]:1080").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5h);
        assert_eq!((p.host.as_str(), p.port), ("::1", 1080));
        assert!(p.username.is_empty());
        assert_eq!(p.authority(), "[::1]:1080");
        assert_eq!(p.display(), "socks5h://[::1]:1080");
        let p = ProxyUrl::parse("SOCKS5://a:b@10.0.0.1:1080").unwrap();
        assert_eq!(p.kind, ProxyKind::Socks5);
        // a raw '@' in the password still splits at the last '@'
        let p = ProxyUrl::parse("http://u:a@b@h:1").unwrap();
        assert_eq!((p.password.expose(), p.host.as_str()), ("a@b", "h"));
    }

    #[test]
    fn bad_proxy_urls_are_refused_without_echoing_credentials() {
        for (url, expect) in [
            ("https://h:1", "not a supported proxy scheme"),
            ("socks4://h:1", "not a supported proxy scheme"),
            ("h:3128", "starts with http://"),
            ("http://u:hunter2@h", "needs a host and a port"),
            ("http://u:hunter2@", "needs a host and a port"),
            ("http://u:hunter2@h:3128/path", "without a path"),
            ("http://u:hunter2@h:3128?x", "without a path"),
            ("http://u:hunter2@h:x", "valid host:port"),
            ("http://u:hunter2@h:0", "port 0"),
            ("http://u:hunter2@[::1:1", "needs a host and a port"),
            ("http://u:hunter2@[zz]:1", "valid host:port"),
            ("http://:hunter2@h:1", "user name before the ':' is empty"),
            ("http://u:hunter2%zz@h:1", "percent-encoded"),
            ("http://u%0a:hunter2@h:1", "percent-encoded"),
            ("socks5://u@h:1", "1-255 bytes"),
        ] {
            let e = ProxyUrl::parse(url).unwrap_err();
            assert!(e.contains(expect), "{url}: {e}");
            assert!(!e.contains("hunter2"), "{url}: {e}");
        }
        let long = format!("socks5://{}:p@h:1", "u".repeat(256));
        assert!(ProxyUrl::parse(&long).unwrap_err().contains("1-255"));
    }
}
