//! The one immutable value the control thread publishes to every worker: channels with their
//! pre-resolved upstream endpoints and pre-rendered request heads, the model catalog, and the
//! server and routing settings workers apply.
//!
//! Invariants: a `Snapshot` has no interior mutability and is `Send + Sync` (asserted below);
//! it is built only by [`Snapshot::build`] on the control thread and replaced whole, stamped
//! with a strictly increasing `epoch`. Workers wrap it once in an `Rc` per publication and never
//! clone the `Arc` per request.
//! Not here: DNS (the caller passes resolved addresses), file reads other than `ca_file` (done
//! by the control thread that calls `build`), any per-request work.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::Catalog;
use crate::config::{Config, RoutingConfig, Scheme, ServerConfig, Source};
use crate::providers::AuthStyle;
use crate::upstream::tls::TlsTarget;

/// How the gateway got its channels (shown in `/health` and `/v1/models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// From a config file or string.
    Config,
    /// From provider environment variables.
    Environment,
    /// Demo mode on the built-in mock upstream.
    Demo,
}

impl Mode {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Config => "config",
            Mode::Environment => "environment",
            Mode::Demo => "demo",
        }
    }
}

/// Upstream timeouts of one channel.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Per address connect (and TLS handshake).
    pub connect: Duration,
    /// Request written → first response byte.
    pub first_byte: Duration,
    /// Longest silence between reads of a started response.
    pub idle: Duration,
    /// Whole exchange.
    pub total: Duration,
}

/// Where a channel's requests go: scheme, authority and every resolved address.
#[derive(Debug)]
pub struct Endpoint {
    /// Pool key: scheme, authority, and TLS trust identity. Connections are shared by every
    /// channel with the same key.
    pub key: Box<str>,
    /// http or https.
    pub scheme: Scheme,
    /// `host[:port]` as sent in `Host`.
    pub authority: Box<str>,
    /// Resolved addresses, in resolver order (tried in turn on connect failure).
    pub addrs: Box<[SocketAddr]>,
    /// TLS client settings for https.
    pub tls: Option<TlsTarget>,
    /// Idle pooled connections kept per worker.
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// A routable channel.
pub struct Channel {
    /// Config id.
    pub id: Box<str>,
    /// Provider id.
    pub provider: Box<str>,
    /// Provider kind.
    pub kind: Box<str>,
    /// Disabled channels are never tried.
    pub enabled: bool,
    /// Higher is tried first.
    pub priority: i32,
    /// Share among tied candidates.
    pub weight: f64,
    /// Upstream target.
    pub endpoint: Arc<Endpoint>,
    /// `POST <path> HTTP/1.1\r\nHost: …\r\n<auth>\r\n<provider headers>` — holds the API key,
    /// so `Debug` never prints it.
    pub request_head: Box<[u8]>,
    /// Lower-cased names of headers the provider config sets (client copies are dropped).
    pub managed_headers: Box<[Box<str>]>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Channel")
            .field("id", &self.id)
            .field("provider", &self.provider)
            .field("enabled", &self.enabled)
            .field("priority", &self.priority)
            .field("endpoint", &self.endpoint.key)
            .field("addrs", &self.endpoint.addrs)
            .finish_non_exhaustive()
    }
}

/// The published state.
#[derive(Debug)]
pub struct Snapshot {
    /// Strictly increasing publication number (1 for the first).
    pub epoch: u64,
    /// Where the channels came from.
    pub mode: Mode,
    /// Downstream server settings (limits, timeouts, CORS).
    pub server: ServerConfig,
    /// Failover settings.
    pub routing: RoutingConfig,
    /// Channels, in config order.
    pub channels: Box<[Channel]>,
    /// Models → candidates, and pre-rendered model listings.
    pub catalog: Catalog,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
};

/// Host names resolved by the control thread: `(host, port)` → addresses.
pub type Resolved = HashMap<(String, u16), Vec<SocketAddr>>;

/// TLS client configs per provider, built by the control thread (reads `ca_file`).
pub type TlsConfigs = HashMap<String, crate::upstream::tls::ClientTls>;

impl Snapshot {
    /// Builds a snapshot from a validated config, the addresses resolved so far and the TLS
    /// settings per provider. Channels whose host is not resolved yet get no addresses (they
    /// are skipped by routing until a later snapshot has them).
    pub fn build(cfg: &Config, epoch: u64, resolved: &Resolved, tls: &TlsConfigs) -> Snapshot {
        let mut endpoints: HashMap<String, Arc<Endpoint>> = HashMap::new();
        let mut channels = Vec::with_capacity(cfg.channels.len());
        for ch in &cfg.channels {
            let p = &cfg.providers[ch.provider];
            let Some(url) = cfg.channel_base_url(ch) else {
                continue;
            };
            let tls_target = match url.scheme {
                Scheme::Https => tls.get(&p.id).map(|t| t.for_host(&url.host)),
                Scheme::Http => None,
            };
            let key = format!(
                "{}://{}#{}",
                if url.scheme == Scheme::Https {
                    "https"
                } else {
                    "http"
                },
                url.authority(),
                tls_target.as_ref().map_or(0, |t| t.identity())
            );
            let endpoint = endpoints
                .entry(key.clone())
                .or_insert_with(|| {
                    Arc::new(Endpoint {
                        key: key.into(),
                        scheme: url.scheme,
                        authority: url.authority().into(),
                        addrs: addresses(&url.host, url.port, resolved).into(),
                        tls: tls_target,
                        pool_max_idle: p.pool_max_idle,
                        pool_idle_timeout: p.pool_idle_timeout,
                    })
                })
                .clone();
            let mut head = Vec::with_capacity(256);
            head.extend_from_slice(b"POST ");
            head.extend_from_slice(url.path.as_bytes());
            head.extend_from_slice(p.chat_path.as_bytes());
            head.extend_from_slice(b" HTTP/1.1\r\nHost: ");
            head.extend_from_slice(url.authority().as_bytes());
            head.extend_from_slice(b"\r\n");
            if !ch.api_key.is_empty() {
                match p.auth {
                    AuthStyle::Bearer => head.extend_from_slice(b"Authorization: Bearer "),
                    AuthStyle::XApiKey => head.extend_from_slice(b"x-api-key: "),
                    AuthStyle::ApiKey => head.extend_from_slice(b"api-key: "),
                }
                head.extend_from_slice(ch.api_key.expose().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            for (k, v) in &p.headers {
                crate::h1::write_header(&mut head, k.as_bytes(), v.as_bytes());
            }
            channels.push(Channel {
                id: ch.id.as_str().into(),
                provider: p.id.as_str().into(),
                kind: p.kind.as_str().into(),
                enabled: ch.enabled,
                priority: ch.priority,
                weight: ch.weight,
                endpoint,
                request_head: head.into(),
                managed_headers: p
                    .headers
                    .iter()
                    .map(|(k, _)| k.to_ascii_lowercase().into())
                    .collect(),
                timeouts: Timeouts {
                    connect: p.connect_timeout,
                    first_byte: p.first_byte_timeout,
                    idle: p.idle_timeout,
                    total: p.total_timeout,
                },
            });
        }
        let mode = match cfg.source {
            Source::Environment(_) => Mode::Environment,
            Source::Demo => Mode::Demo,
            Source::File(_) | Source::Inline => Mode::Config,
        };
        let catalog = Catalog::build(cfg, &channels, mode);
        Snapshot {
            epoch,
            mode,
            server: cfg.server.clone(),
            routing: cfg.routing.clone(),
            channels: channels.into(),
            catalog,
        }
    }

    /// Host names (with ports) this config needs resolved: every non-literal upstream host.
    pub fn hosts_to_resolve(cfg: &Config) -> Vec<(String, u16)> {
        let mut out: Vec<(String, u16)> = cfg
            .channels
            .iter()
            .filter_map(|ch| cfg.channel_base_url(ch))
            .filter(|u| literal_addresses(&u.host, u.port).is_none())
            .map(|u| (u.host.clone(), u.port))
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Addresses for a host: literal IPs and `localhost` directly, others from the resolver map.
fn addresses(host: &str, port: u16, resolved: &Resolved) -> Vec<SocketAddr> {
    literal_addresses(host, port).unwrap_or_else(|| {
        resolved
            .get(&(host.to_string(), port))
            .cloned()
            .unwrap_or_default()
    })
}

fn literal_addresses(host: &str, port: u16) -> Option<Vec<SocketAddr>> {
    if host == "localhost" {
        return Some(vec![
            SocketAddr::from(([127, 0, 0, 1], port)),
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        ]);
    }
    host.parse::<std::net::IpAddr>()
        .ok()
        .map(|ip| vec![SocketAddr::new(ip, port)])
}

/// Exposes whether a config's hosts are all literal (no resolver round needed).
pub fn all_literal(cfg: &Config) -> bool {
    Snapshot::hosts_to_resolve(cfg).is_empty()
}
