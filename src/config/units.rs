//! Parsing of the config's unit-carrying strings: durations (`"250ms"`, `"30s"`, `"1h30m"`),
//! sizes (`"16KiB"`, `"32MiB"`, `"512"`), base URLs and listen addresses.
//!
//! Invariants: every parser returns a message that names the accepted forms; none panics.
//! Not here: key paths (the caller adds them) and defaults (`config::defaults`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

/// Parses a duration with units: one or more `<number><unit>` groups, unit one of
/// `ns us ms s m h d`. Decimals are allowed (`"1.5s"`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration; write e.g. \"250ms\", \"30s\" or \"6h\"".into());
    }
    let bytes = t.as_bytes();
    let mut i = 0;
    let mut total = 0f64;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && (bytes[i].is_ascii_digit() || bytes[i] == b'.') {
            i += 1;
        }
        if start == i {
            return Err(format!(
                "\"{s}\" is not a duration; write a number with a unit, e.g. \"250ms\", \"30s\", \"6h\""
            ));
        }
        let num: f64 = t[start..i]
            .parse()
            .map_err(|_| format!("\"{s}\" has a malformed number"))?;
        let ustart = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        let scale = match &t[ustart..i] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86400.0,
            "" => {
                return Err(format!(
                    "\"{s}\" has no unit; durations need one of ns, us, ms, s, m, h, d (e.g. \"{}s\")",
                    &t[start..i]
                ));
            }
            u => {
                return Err(format!(
                    "\"{s}\" has unknown unit \"{u}\"; use one of ns, us, ms, s, m, h, d"
                ));
            }
        };
        total += num * scale;
    }
    if !total.is_finite() || total > 10.0 * 365.0 * 86400.0 {
        return Err(format!("\"{s}\" is too long"));
    }
    Ok(Duration::from_secs_f64(total))
}

/// Parses a byte size: a plain integer (bytes) or a number with `B`, `KB`, `KiB`, `MB`, `MiB`,
/// `GB`, `GiB` (case-insensitive; `K`/`M`/`G` alone mean the binary units).
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let num: f64 = num.parse().map_err(|_| {
        format!(
            "\"{s}\" is not a size; write bytes or a number with a unit, e.g. \"16KiB\", \"32MiB\""
        )
    })?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "k" | "kib" => 1024.0,
        "mb" => 1e6,
        "m" | "mib" => 1024.0 * 1024.0,
        "gb" => 1e9,
        "g" | "gib" => 1024.0 * 1024.0 * 1024.0,
        u => {
            return Err(format!(
                "\"{s}\" has unknown unit \"{u}\"; use B, KiB, MiB, GiB (or KB, MB, GB)"
            ));
        }
    };
    let v = num * scale;
    if !v.is_finite() || v > (1u64 << 50) as f64 {
        return Err(format!("\"{s}\" is too large"));
    }
    Ok(v as u64)
}

/// Scheme of an upstream URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// Plain HTTP/1.1.
    Http,
    /// HTTP/1.1 over TLS.
    Https,
}

/// A parsed upstream base URL: scheme, host, port and a path prefix without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// http or https.
    pub scheme: Scheme,
    /// Host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// Port (scheme default when absent).
    pub port: u16,
    /// Path prefix, empty or starting with `/`, never ending with `/`.
    pub path: String,
}

impl BaseUrl {
    /// Parses `http(s)://host[:port][/path]`. Userinfo, query and fragment are rejected: they
    /// would be silently dropped or leak credentials into logs.
    pub(crate) fn parse(s: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = if let Some(r) = s.strip_prefix("http://") {
            (Scheme::Http, r)
        } else if let Some(r) = s.strip_prefix("https://") {
            (Scheme::Https, r)
        } else {
            return Err(format!(
                "\"{s}\" must start with http:// or https:// (e.g. \"https://api.openai.com/v1\")"
            ));
        };
        if rest.contains(['?', '#']) {
            return Err(format!("\"{s}\" must not have a query or fragment"));
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(format!(
                "\"{s}\" must not carry credentials; put the key in the channel's api_key"
            ));
        }
        let default_port = match scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        let (host, port) =
            split_host_port(authority, default_port).map_err(|e| format!("\"{s}\": {e}"))?;
        if path.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err(format!(
                "\"{s}\" has spaces or control characters in its path"
            ));
        }
        Ok(BaseUrl {
            scheme,
            host,
            port,
            path: path.trim_end_matches('/').to_string(),
        })
    }

    /// The `Host` header value: host, bracketed if IPv6, with the port when not the default.
    pub(crate) fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let default = match self.scheme {
            Scheme::Http => 80,
            Scheme::Https => 443,
        };
        if self.port == default {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// The URL back as text (for logs and `check`; carries no secret).
    pub fn to_url(&self) -> String {
        let scheme = match self.scheme {
            Scheme::Http => "http",
            Scheme::Https => "https",
        };
        format!("{scheme}://{}{}", self.authority(), self.path)
    }

    /// True for loopback, private (RFC 1918, ULA), link-local and `.local`/`.lan` hosts: the
    /// endpoints the router counts as `local`.
    pub(crate) fn is_private(&self) -> bool {
        if self.is_loopback() || self.host.ends_with(".local") || self.host.ends_with(".lan") {
            return true;
        }
        match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_private() || v4.is_link_local(),
            Ok(IpAddr::V6(v6)) => {
                let first = v6.segments()[0];
                (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
            }
            Err(_) => false,
        }
    }

    /// True when the host is a loopback literal or `localhost`.
    pub(crate) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<IpAddr>()
                .map(|ip| ip.is_loopback())
                .unwrap_or(false)
    }
}

fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    if authority.is_empty() {
        return Err("missing host".into());
    }
    if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or("unclosed [ in IPv6 host")?;
        let host = &rest[..end];
        host.parse::<Ipv6Addr>()
            .map_err(|_| format!("\"{host}\" is not an IPv6 address"))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(p)?,
            None if after.is_empty() => default_port,
            None => return Err("unexpected text after ]".into()),
        };
        return Ok((host.to_string(), port));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => (authority, default_port),
    };
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!("\"{host}\" is not a valid host name"));
    }
    Ok((host.to_ascii_lowercase(), port))
}

fn parse_port(p: &str) -> Result<u16, String> {
    p.parse::<u16>()
        .map_err(|_| format!("\"{p}\" is not a port number (0-65535)"))
}

/// Parses a listen address: `IP:PORT`, `[IPv6]:PORT` or `localhost:PORT`.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    if let Some(p) = s.strip_prefix("localhost:") {
        return Ok(SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            parse_port(p)?,
        ));
    }
    Err(format!(
        "\"{s}\" is not a listen address; write IP:PORT, e.g. \"127.0.0.1:7601\" or \"[::1]:7601\""
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(6 * 3600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert!(parse_duration("30").unwrap_err().contains("no unit"));
        assert!(parse_duration("3 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("ms").is_err());
    }

    #[test]
    fn sizes_with_units() {
        assert_eq!(parse_size("16KiB").unwrap(), 16 * 1024);
        assert_eq!(parse_size("32MiB").unwrap(), 32 << 20);
        assert_eq!(parse_size("1kb").unwrap(), 1000);
        assert_eq!(parse_size("512").unwrap(), 512);
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("lots").is_err());
    }

    #[test]
    fn base_urls_keep_version_paths() {
        let u = BaseUrl::parse("https://ark.cn-beijing.volces.com/api/v3/").unwrap();
        assert_eq!(u.scheme, Scheme::Https);
        assert_eq!(u.port, 443);
        assert_eq!(u.path, "/api/v3");
        assert_eq!(u.authority(), "ark.cn-beijing.volces.com");
        let u = BaseUrl::parse("http://127.0.0.1:9000/v1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 9000, "/v1")
        );
        assert_eq!(u.authority(), "127.0.0.1:9000");
        assert!(u.is_loopback() && u.is_private());
        assert!(
            BaseUrl::parse("http://192.168.1.5:11434/v1")
                .unwrap()
                .is_private()
        );
        assert!(
            BaseUrl::parse("http://gpu-box.local:8000")
                .unwrap()
                .is_private()
        );
        assert!(
            !BaseUrl::parse("https://api.openai.com/v1")
                .unwrap()
                .is_private()
        );
        let u = BaseUrl::parse("http://[::1]:8080").unwrap();
        assert_eq!((u.host.as_str(), u.path.as_str()), ("::1", ""));
        assert_eq!(u.authority(), "[::1]:8080");
        assert!(BaseUrl::parse("ftp://x").is_err());
        assert!(BaseUrl::parse("https://user:pw@x/v1").is_err());
        assert!(BaseUrl::parse("https://x/v1?k=1").is_err());
        assert!(BaseUrl::parse("https://bad host/v1").is_err());
        assert!(BaseUrl::parse("https://x:99999").is_err());
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            parse_listen("127.0.0.1:7601").unwrap(),
            "127.0.0.1:7601".parse().unwrap()
        );
        assert_eq!(parse_listen("[::1]:0").unwrap(), "[::1]:0".parse().unwrap());
        assert_eq!(
            parse_listen("localhost:80").unwrap(),
            "127.0.0.1:80".parse().unwrap()
        );
        assert!(parse_listen("7601").is_err());
    }
}
