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

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::catalog::{Catalog, DiscoveryMap};
use crate::config::{
    ChannelConfig, Config, ProviderConfig, RoutingConfig, Scheme, ServerConfig, Source,
    StrategyConfig,
};
use crate::live::Live;
use crate::presets::{AuthStyle, Family};
use crate::upstream::tls::TlsTarget;
use crate::upstream::tunnel::Tunnel;

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

/// Where a channel's requests go: scheme, authority, every resolved address, and the outbound
/// proxy in between, if any.
#[derive(Debug)]
pub struct Endpoint {
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
pub struct Channel {
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
pub struct PathTemplate {
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
    pub fn write_line(&self, out: &mut Vec<u8>, model: &str, stream: bool) {
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

/// The published state. Its parts are shared `Arc`s, so a new epoch that only changes live
/// health re-uses the channels and the catalog.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Strictly increasing publication number (1 for the first).
    pub epoch: u64,
    /// Where the channels came from.
    pub mode: Mode,
    /// Downstream server settings (limits, timeouts, CORS).
    pub server: ServerConfig,
    /// Routing and failover settings.
    pub routing: RoutingConfig,
    /// User-defined strategies.
    pub strategies: Arc<[StrategyConfig]>,
    /// Channels, in config order.
    pub channels: Arc<[Channel]>,
    /// Entries, tags, groups and model listings.
    pub catalog: Arc<Catalog>,
    /// Health and live averages, indexed like the catalog.
    pub live: Arc<Live>,
    /// Units of the configured currency per USD (entry prices are USD; costs are reported in
    /// the configured currency).
    pub cost_rate: f64,
    /// Daily quotas spent (set by the control thread from its usage ledger).
    pub quota: Arc<Quota>,
    /// Client keys, with their allowances resolved against this catalog.
    pub clients: Arc<crate::auth::Clients>,
    /// TLS of the client listener (`[server.tls]`): accepted connections do a handshake.
    pub inbound_tls: Option<Arc<rustls::ServerConfig>>,
}

/// Which daily quotas are spent for the current UTC day.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Quota {
    /// By channel index: the channel's request, token or budget limit is reached.
    pub channels: Box<[bool]>,
    /// The global `[pricing] daily_budget` is spent: why, for the 429.
    pub global: Option<Box<str>>,
    /// By client key index: the key's `daily_budget` is spent (why, for the 429).
    pub clients: Box<[Option<Box<str>>]>,
    /// Some daily limit is configured: workers hand usage records over at once instead of
    /// on the tick, so a limit is judged on counts at most a control-loop turn old.
    pub limited: bool,
}

impl Quota {
    /// True when channel `i` is out for the day.
    pub fn channel_spent(&self, i: usize) -> bool {
        self.channels.get(i).copied().unwrap_or(false)
    }

    /// Why client key `i` may spend nothing more today, if it may not.
    pub fn client_spent(&self, i: u32) -> Option<&str> {
        self.clients.get(i as usize).and_then(|w| w.as_deref())
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
};

/// Host names resolved by the control thread: `(host, port)` → addresses.
pub type Resolved = HashMap<(String, u16), Vec<SocketAddr>>;

/// TLS configs built by the control thread (it reads `ca_file` and the `[server.tls]` files):
/// upstream clients per provider, and the listener's.
#[derive(Debug, Clone, Default)]
pub struct TlsConfigs {
    /// Upstream TLS client configs by provider id.
    pub upstream: HashMap<String, crate::upstream::tls::ClientTls>,
    /// The client listener's TLS (`[server.tls]`), if it serves HTTPS.
    pub inbound: Option<Arc<rustls::ServerConfig>>,
}

impl Snapshot {
    /// Builds a snapshot from a validated config, the addresses resolved so far and the TLS
    /// settings per provider, for `workers` workers, with catalog `generation` and fresh live
    /// state. Channels whose host is not resolved yet get no addresses (they are skipped by
    /// routing until a later snapshot has them).
    pub fn build(
        cfg: &Config,
        epoch: u64,
        resolved: &Resolved,
        tls: &TlsConfigs,
        workers: usize,
        generation: u64,
    ) -> Snapshot {
        Self::build_with(
            cfg,
            epoch,
            resolved,
            tls,
            workers,
            generation,
            &DiscoveryMap::new(),
            &Overrides::default(),
        )
    }

    /// [`Snapshot::build`] with discovered models and admin overrides.
    #[allow(clippy::too_many_arguments)]
    pub fn build_with(
        cfg: &Config,
        epoch: u64,
        resolved: &Resolved,
        tls: &TlsConfigs,
        workers: usize,
        generation: u64,
        discovered: &DiscoveryMap,
        overrides: &Overrides,
    ) -> Snapshot {
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
            models_head.extend_from_slice(
                b"Accept: application/json\r\nAccept-Encoding: identity\r\n\r\n",
            );
            let ov = overrides.channels.get(&ch.id).copied().unwrap_or_default();
            channels.push(Channel {
                id: ch.id.as_str().into(),
                provider: p.id.as_str().into(),
                kind: p.kind.as_str().into(),
                family: p.family,
                stream_usage: p.stream_usage,
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
                max_concurrent_per_worker: ch
                    .max_concurrent
                    .map(|m| m.div_ceil(workers.max(1) as u32)),
            });
        }
        let mode = match cfg.source {
            Source::Environment(_) => Mode::Environment,
            Source::Demo => Mode::Demo,
            Source::File(_) | Source::Inline => Mode::Config,
        };
        let catalog = Catalog::build(cfg, &channels, mode, generation, discovered);
        let live = Live::new(generation, channels.len(), catalog.entries.len());
        let clients = crate::auth::Clients::build(&cfg.auth.keys, &catalog);
        Snapshot {
            epoch,
            mode,
            server: cfg.server.clone(),
            routing: cfg.routing.clone(),
            strategies: cfg.strategies.clone().into(),
            channels: channels.into(),
            catalog: Arc::new(catalog),
            live: Arc::new(live),
            cost_rate: cfg.pricing.from_usd(1.0),
            quota: Arc::new(Quota::default()),
            clients: Arc::new(clients),
            inbound_tls: tls.inbound.clone(),
        }
    }

    /// The same snapshot with new quota state, as epoch `epoch`.
    pub fn with_quota(&self, epoch: u64, quota: Arc<Quota>) -> Snapshot {
        Snapshot {
            epoch,
            quota,
            ..self.clone()
        }
    }

    /// The same snapshot with new live state, as epoch `epoch`.
    pub fn with_live(&self, epoch: u64, live: Arc<Live>) -> Snapshot {
        Snapshot {
            epoch,
            live,
            ..self.clone()
        }
    }

    /// The same config with new endpoints (after DNS), keeping catalog and live state.
    pub fn with_channels(&self, epoch: u64, fresh: &Snapshot) -> Snapshot {
        Snapshot {
            epoch,
            channels: fresh.channels.clone(),
            ..self.clone()
        }
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
}

/// Admin overrides applied on top of the config (persisted in the state dir by the control
/// thread, so they survive reloads and restarts until cleared).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Overrides {
    /// Per channel id.
    pub channels: BTreeMap<String, ChannelOverride>,
}

/// One channel's overrides.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelOverride {
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

/// Exposes whether a config's hosts are all literal (no resolver round needed).
pub fn all_literal(cfg: &Config) -> bool {
    Snapshot::hosts_to_resolve(cfg).is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Snapshot {
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        let tls = crate::control::build_tls(&cfg).unwrap();
        Snapshot::build(&cfg, 7, &Resolved::new(), &tls, 1, 1)
    }

    fn head(s: &Snapshot, i: usize) -> String {
        String::from_utf8(s.channels[i].request_head.to_vec()).unwrap()
    }

    #[test]
    fn request_heads_follow_each_auth_style_and_keep_version_paths() {
        let s = build(
            r#"
[providers.b]
base_url = "http://127.0.0.1:9/v1"
[providers.x]
base_url = "http://127.0.0.1:9/anthropic-compatible"
auth = "x-api-key"
[providers.z]
kind = "azure"
base_url = "http://127.0.0.1:9/openai/deployments/gpt4o"
headers = { "X-Extra" = "1" }
[providers.v3]
kind = "doubao"
base_url = "http://[::1]:8443/api/v3"
[[channels]]
id = "b"
provider = "b"
api_key = "kb"
models = ["m"]
[[channels]]
id = "x"
provider = "x"
api_key = "kx"
models = ["m"]
[[channels]]
id = "z"
provider = "z"
api_key = "kz"
models = ["m"]
[[channels]]
id = "v3"
provider = "v3"
models = ["m"]
"#,
        );
        assert_eq!(s.epoch, 7);
        assert_eq!(
            head(&s, 0),
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer kb\r\n"
        );
        assert!(head(&s, 1).contains("\r\nx-api-key: kx\r\n"));
        assert!(head(&s, 1).starts_with("POST /anthropic-compatible/chat/completions "));
        assert!(head(&s, 2).contains("\r\napi-key: kz\r\nX-Extra: 1\r\n"));
        assert_eq!(
            &*s.channels[2].managed_headers,
            &["x-extra".into()] as &[Box<str>]
        );
        // keyless channel: no auth header at all; IPv6 authority bracketed
        assert_eq!(
            head(&s, 3),
            "POST /api/v3/chat/completions HTTP/1.1\r\nHost: [::1]:8443\r\n"
        );
        assert_eq!(
            &*s.channels[3].endpoint.addrs,
            &["[::1]:8443".parse().unwrap()]
        );
        // the same authority shares one endpoint (and so one pool)
        assert!(Arc::ptr_eq(
            &s.channels[0].endpoint,
            &s.channels[1].endpoint
        ));
        // secrets do not appear in Debug output
        assert!(!format!("{s:?}").contains("kb"));
    }

    #[test]
    fn proxied_endpoints_connect_to_the_proxy_and_key_their_pool_by_it() {
        let text = r#"
[providers.a]
base_url = "https://api.example.com/v1"
proxy = "http://u:pw@proxy.internal:3128"
[providers.b]
base_url = "https://api.example.com/v1"
proxy = "socks5h://127.0.0.1:1080"
[providers.c]
base_url = "https://api.example.com/v1"
[[channels]]
id = "a"
provider = "a"
models = ["m"]
[[channels]]
id = "b"
provider = "b"
models = ["m"]
[[channels]]
id = "c"
provider = "c"
models = ["m"]
"#;
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        // the proxy's name is resolved instead of the upstream's behind it; the literal
        // SOCKS proxy needs no resolving; the direct provider still needs the upstream's
        assert_eq!(
            Snapshot::hosts_to_resolve(&cfg),
            vec![
                ("api.example.com".to_string(), 443),
                ("proxy.internal".to_string(), 3128)
            ]
        );
        let tls = crate::control::build_tls(&cfg).unwrap();
        let mut r = Resolved::new();
        r.insert(
            ("proxy.internal".into(), 3128),
            vec!["192.0.2.9:3128".parse().unwrap()],
        );
        let s = Snapshot::build(&cfg, 1, &r, &tls, 1, 1);
        let ep = |i: usize| &s.channels[i].endpoint;
        assert_eq!(&*ep(0).addrs, &["192.0.2.9:3128".parse().unwrap()]);
        assert_eq!(&*ep(1).addrs, &["127.0.0.1:1080".parse().unwrap()]);
        assert!(ep(2).addrs.is_empty(), "the direct upstream waits for DNS");
        assert_eq!(
            ep(0).tunnel.as_ref().map(|t| t.proxy()),
            Some("proxy.internal:3128")
        );
        assert!(ep(2).tunnel.is_none());
        assert_eq!(&*ep(0).authority, "api.example.com");
        assert!(
            ep(0).tls.is_some(),
            "TLS still runs end to end, over the tunnel"
        );
        // three pools: same upstream, different ways there
        assert_ne!(ep(0).key, ep(1).key);
        assert_ne!(ep(0).key, ep(2).key);
        assert!(!format!("{s:?}").contains("pw@"));
        assert!(!format!("{:?}", ep(0)).contains("Basic"));
    }

    #[test]
    fn host_names_wait_for_the_resolver() {
        let text = r#"
[providers.p]
base_url = "https://api.example.com/v1"
[[channels]]
id = "c"
provider = "p"
models = ["m"]
"#;
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        assert_eq!(
            Snapshot::hosts_to_resolve(&cfg),
            vec![("api.example.com".to_string(), 443)]
        );
        let tls = crate::control::build_tls(&cfg).unwrap();
        let s = Snapshot::build(&cfg, 1, &Resolved::new(), &tls, 1, 1);
        assert!(s.channels[0].endpoint.addrs.is_empty());
        assert!(s.channels[0].endpoint.tls.is_some());
        let mut r = Resolved::new();
        r.insert(
            ("api.example.com".into(), 443),
            vec![
                "192.0.2.1:443".parse().unwrap(),
                "192.0.2.2:443".parse().unwrap(),
            ],
        );
        let s = Snapshot::build(&cfg, 2, &r, &tls, 1, 1);
        assert_eq!(
            s.channels[0].endpoint.addrs.len(),
            2,
            "every address is kept"
        );
    }
}
