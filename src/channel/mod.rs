//! Channels as the data plane uses them: one provider endpoint + one API key + its settings,
//! built once per snapshot on the control thread from the validated config — pre-resolved
//! upstream addresses, pre-rendered request heads with the credentials, TLS client settings
//! ([`tls`]) and outbound-proxy handshakes ([`tunnel`]) as plain data.
//!
//! Invariants: immutable once built (`Send + Sync`, shared by every worker through the
//! snapshot); a channel's request head holds its API key, so `Debug` never prints it; no I/O
//! (DNS answers and TLS configs come in from the control thread). Not here: connecting
//! (`upstream`), choosing a channel (`routing`).

pub(crate) mod tls;
pub(crate) mod tunnel;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{ChannelConfig, Config, ProviderConfig, Scheme, Source};
use crate::presets::{AuthStyle, Family};
use tls::TlsTarget;
use tunnel::Tunnel;

/// How the gateway got its channels (shown in `/health` and `/v1/models`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// From a config file or string.
    Config,
    /// From provider environment variables.
    Environment,
    /// Demo mode on the built-in mock upstream.
    Demo,
}

impl Mode {
    /// Lower-case name.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Mode::Config => "config",
            Mode::Environment => "environment",
            Mode::Demo => "demo",
        }
    }
}

/// Upstream timeouts of one channel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    /// Per address connect (and TLS handshake).
    pub connect: Duration,
    /// Request written → first response byte.
    pub first_byte: Duration,
    /// Longest silence between reads of a started response.
    pub idle: Duration,
    /// Whole exchange.
    pub total: Duration,
}

/// Where a channel's requests go: scheme, authority, every resolved address, and the outbound
/// proxy in between, if any.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// Pool key: scheme, authority, TLS trust identity, and the proxy (scheme, address and a
    /// fingerprint of its credentials). Connections are shared by every channel with the same
    /// key.
    pub key: Box<str>,
    /// http or https.
    pub scheme: Scheme,
    /// `host[:port]` as sent in `Host`.
    pub authority: Box<str>,
    /// Resolved addresses, in resolver order (tried in turn on connect failure): the proxy's
    /// when there is a proxy (the upstream's own are then never resolved).
    pub addrs: Box<[SocketAddr]>,
    /// The tunnel through the provider's outbound proxy (none: direct).
    pub tunnel: Option<Tunnel>,
    /// TLS client settings for https.
    pub tls: Option<TlsTarget>,
    /// Idle pooled connections kept per worker.
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
}

/// A routable channel.
pub(crate) struct Channel {
    /// Config id.
    pub id: Box<str>,
    /// Provider id.
    pub provider: Box<str>,
    /// Provider kind.
    pub kind: Box<str>,
    /// The wire format the provider speaks.
    pub family: Family,
    /// `stream_options.include_usage` may be added to streamed requests.
    pub stream_usage: bool,
    /// The provider serves the Responses API itself: `/responses` is passed through.
    pub responses: bool,
    /// The provider's `on_unsupported = "drop"`: requests asking for fields its family lacks
    /// still route here, without them.
    pub drop_unsupported: bool,
    /// Set when the chat path names the model (`{model}`): the request line is built per
    /// request and `request_head` starts at `Host:`.
    pub path: Option<PathTemplate>,
    /// JSON members (`"k":v,` …) added at the start of every request body (the client's own
    /// members of the same name come later and win).
    pub extra_body: Box<[u8]>,
    /// Daily quotas.
    pub limits: crate::config::DailyLimits,
    /// Remove `<think>…</think>` blocks from whole answers.
    pub strip_think: bool,
    /// Rate limits this channel's provider allows (enforced per worker, see `limits`).
    pub rate: crate::config::RateLimits,
    /// The base URL's path (`/v1`): other endpoints (`/embeddings` …) are under it.
    pub base_path: Box<str>,
    /// Where the credentials (`Host:` onwards) start in `request_head`.
    pub credentials_at: usize,
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
    /// `GET <base><models_path>` with the same credentials: discovery and health probes.
    pub models_head: Box<[u8]>,
    /// First 8 hex digits of the API key's SHA-256 (safe to show; never the key).
    pub key_fingerprint: Box<str>,
    /// Whether discovery fetches this channel's model list.
    pub discover: bool,
    /// Lower-cased names of headers the provider config sets (client copies are dropped).
    pub managed_headers: Box<[Box<str>]>,
    /// Client headers forwarded beyond the allow-list (`forward_headers`: lower-case names,
    /// or prefixes ending in `*`).
    pub forward_headers: Box<[Box<str>]>,
    /// Upstream timeouts.
    pub timeouts: Timeouts,
    /// Skip the channel when a worker used it less than this long ago.
    pub min_request_interval: Duration,
    /// `max_concurrent` split across workers (rounded up).
    pub max_concurrent_per_worker: Option<u32>,
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

/// A chat path with the upstream model id in it (Gemini, Azure deployments).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathTemplate {
    /// `POST <base path><path up to {model}>`.
    pub before: Box<[u8]>,
    /// The rest of the path and ` HTTP/1.1\r\n`.
    pub after: Box<[u8]>,
    /// The same for a streamed request (Gemini's `:streamGenerateContent?alt=sse`).
    pub stream_after: Box<[u8]>,
}

impl PathTemplate {
    fn parse(base: &str, path: &str) -> Option<PathTemplate> {
        let (before, after) = path.split_once("{model}")?;
        let stream = if after.contains(":generateContent") {
            after.replacen(":generateContent", ":streamGenerateContent", 1)
        } else {
            after.to_string()
        };
        let stream = if stream.contains(":streamGenerateContent") && !stream.contains("alt=sse") {
            let sep = if stream.contains('?') { '&' } else { '?' };
            format!("{stream}{sep}alt=sse")
        } else {
            stream
        };
        let line_end = |s: &str| format!("{s} HTTP/1.1\r\n").into_bytes().into_boxed_slice();
        Some(PathTemplate {
            before: format!("POST {base}{before}").into_bytes().into(),
            after: line_end(after),
            stream_after: line_end(&stream),
        })
    }

    /// Writes the request line for `model` (percent-encoding anything outside the path-safe set,
    /// so no model id can break the request line).
    pub(crate) fn write_line(&self, out: &mut Vec<u8>, model: &str, stream: bool) {
        out.extend_from_slice(&self.before);
        for &b in model.as_bytes() {
            if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
                out.push(b);
            } else {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
            }
        }
        out.extend_from_slice(if stream {
            &self.stream_after
        } else {
            &self.after
        });
    }
}

/// Host names resolved by the control thread: `(host, port)` → addresses.
pub type Resolved = HashMap<(String, u16), Vec<SocketAddr>>;

/// TLS configs built by the control thread (it reads `ca_file` and the `[server.tls]` files):
/// upstream clients per provider, and the listener's.
#[derive(Debug, Clone, Default)]
pub struct TlsConfigs {
    /// Upstream TLS client configs by provider id.
    pub upstream: HashMap<String, tls::ClientTls>,
    /// The client listener's TLS (`[server.tls]`), if it serves HTTPS.
    pub inbound: Option<Arc<rustls::ServerConfig>>,
}

/// Admin overrides applied on top of the config (persisted in the state dir by the control
/// thread, so they survive reloads and restarts until cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Per channel id.
    pub(crate) channels: BTreeMap<String, ChannelOverride>,
}

/// One channel's overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelOverride {
    /// Enabled or disabled regardless of the config.
    pub enabled: Option<bool>,
    /// Priority regardless of the config.
    pub priority: Option<i32>,
}

/// `METHOD <base path><path> HTTP/1.1`, `Host`, the channel's credentials and the provider's
/// headers (no blank line).
fn request_head(
    method: &str,
    base: &str,
    path: &str,
    authority: &str,
    ch: &ChannelConfig,
    p: &ProviderConfig,
) -> Box<[u8]> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(method.as_bytes());
    head.push(b' ');
    head.extend_from_slice(base.as_bytes());
    head.extend_from_slice(path.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    head.extend_from_slice(&credentials_head(authority, ch, p));
    head.into()
}

/// `Host`, the channel's credentials and the provider's headers.
fn credentials_head(authority: &str, ch: &ChannelConfig, p: &ProviderConfig) -> Box<[u8]> {
    let mut head = Vec::with_capacity(256);
    head.extend_from_slice(b"Host: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
    if !ch.api_key.is_empty() {
        match p.auth {
            AuthStyle::Bearer => head.extend_from_slice(b"Authorization: Bearer "),
            AuthStyle::XApiKey => head.extend_from_slice(b"x-api-key: "),
            AuthStyle::ApiKey => head.extend_from_slice(b"api-key: "),
            AuthStyle::GoogApiKey => head.extend_from_slice(b"x-goog-api-key: "),
        }
        head.extend_from_slice(ch.api_key.expose().as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    for (k, v) in &p.headers {
        crate::h1::write_header(&mut head, k.as_bytes(), v.as_bytes());
    }
    head.into()
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

/// Host names (with ports) this config needs resolved: every non-literal upstream host, or
/// for a provider with an outbound proxy the proxy's host instead (the proxy resolves the
/// upstream's name).
pub fn hosts_to_resolve(cfg: &Config) -> Vec<(String, u16)> {
    let mut out: Vec<(String, u16)> = cfg
        .channels
        .iter()
        .filter_map(|ch| {
            let url = cfg.channel_base_url(ch)?;
            Some(
                match cfg
                    .providers
                    .get(ch.provider)
                    .and_then(|p| p.proxy.as_ref())
                {
                    Some(px) => (px.host.as_str(), px.port),
                    None => (url.host.as_str(), url.port),
                },
            )
        })
        .filter(|(host, port)| literal_addresses(host, *port).is_none())
        .map(|(host, port)| (host.to_string(), port))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// How the config got its channels.
pub(crate) fn mode_of(cfg: &Config) -> Mode {
    match cfg.source {
        Source::Environment(_) => Mode::Environment,
        Source::Demo => Mode::Demo,
        Source::File(_) | Source::Inline => Mode::Config,
    }
}

/// The channels of `cfg` for `workers` workers, with the addresses resolved so far, the TLS
/// settings per provider and the admin overrides. Channels whose host is not resolved yet get
/// no addresses (routing skips them until a later snapshot has them).
pub(crate) fn build(
    cfg: &Config,
    resolved: &Resolved,
    tls: &TlsConfigs,
    workers: usize,
    overrides: &Overrides,
) -> Vec<Channel> {
    let mut endpoints: HashMap<String, Arc<Endpoint>> = HashMap::new();
    let mut channels = Vec::with_capacity(cfg.channels.len());
    for ch in &cfg.channels {
        let p = &cfg.providers[ch.provider];
        let Some(url) = cfg.channel_base_url(ch) else {
            continue;
        };
        let tls_target = match url.scheme {
            Scheme::Https => tls.upstream.get(&p.id).map(|t| t.for_host(&url.host)),
            Scheme::Http => None,
        };
        let tunnel = p
            .proxy
            .as_ref()
            .map(|px| Tunnel::new(px, &url.host, url.port));
        let key = format!(
            "{}://{}#{}{}",
            if url.scheme == Scheme::Https {
                "https"
            } else {
                "http"
            },
            url.authority(),
            tls_target.as_ref().map_or(0, |t| t.identity()),
            tunnel.as_ref().map_or("", |t| t.key())
        );
        let endpoint = endpoints
            .entry(key.clone())
            .or_insert_with(|| {
                Arc::new(Endpoint {
                    key: key.into(),
                    scheme: url.scheme,
                    authority: url.authority().into(),
                    addrs: match &p.proxy {
                        Some(px) => addresses(&px.host, px.port, resolved),
                        None => addresses(&url.host, url.port, resolved),
                    }
                    .into(),
                    tunnel,
                    tls: tls_target,
                    pool_max_idle: p.pool_max_idle,
                    pool_idle_timeout: p.pool_idle_timeout,
                })
            })
            .clone();
        let path = PathTemplate::parse(&url.path, &p.chat_path);
        let head = if path.is_some() {
            credentials_head(&url.authority(), ch, p)
        } else {
            request_head("POST", &url.path, &p.chat_path, &url.authority(), ch, p)
        };
        let mut models_head =
            request_head("GET", &url.path, &p.models_path, &url.authority(), ch, p).into_vec();
        models_head
            .extend_from_slice(b"Accept: application/json\r\nAccept-Encoding: identity\r\n\r\n");
        let ov = overrides.channels.get(&ch.id).copied().unwrap_or_default();
        channels.push(Channel {
            id: ch.id.as_str().into(),
            provider: p.id.as_str().into(),
            kind: p.kind.as_str().into(),
            family: p.family,
            stream_usage: p.stream_usage,
            responses: p.responses && path.is_none(),
            drop_unsupported: p.drop_unsupported,
            credentials_at: if path.is_some() {
                0
            } else {
                head.iter().position(|&b| b == b'\n').map_or(0, |i| i + 1)
            },
            path,
            base_path: url.path.as_str().into(),
            extra_body: ch.extra_body.as_bytes().into(),
            limits: ch.limits,
            strip_think: ch.strip_think,
            rate: ch.rate,
            enabled: ov.enabled.unwrap_or(ch.enabled),
            priority: ov.priority.unwrap_or(ch.priority),
            weight: ch.weight,
            endpoint,
            request_head: head,
            models_head: models_head.into(),
            key_fingerprint: crate::secret::fingerprint(ch.api_key.expose()).into(),
            discover: ch.discover,
            managed_headers: p
                .headers
                .iter()
                .map(|(k, _)| k.to_ascii_lowercase().into())
                .collect(),
            forward_headers: p
                .forward_headers
                .iter()
                .map(|h| h.as_str().into())
                .collect(),
            timeouts: Timeouts {
                connect: p.connect_timeout,
                first_byte: p.first_byte_timeout,
                idle: p.idle_timeout,
                total: p.total_timeout,
            },
            min_request_interval: ch.min_request_interval,
            max_concurrent_per_worker: ch.max_concurrent.map(|m| m.div_ceil(workers.max(1) as u32)),
        });
    }
    channels
}
