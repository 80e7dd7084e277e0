//! TOML → validated [`Config`]: `${VAR}` expansion, a serde mirror that denies unknown keys
//! (`raw`), defaults with units (`defaults`), and validation that collects every problem and
//! names each key path with its fix. Also the two config-less modes: channels from provider
//! environment variables, and demo mode.
//!
//! Invariants: the rest of the program sees only validated types (`Duration`, `SocketAddr`,
//! [`BaseUrl`], [`Secret`]), never raw TOML. API keys live in [`Secret`], which never prints.
//! Not here: reading files on a worker (only `bootstrap`/`control` call [`Config::load_file`]),
//! DNS resolution (`control`), snapshot building (`snapshot`).

pub mod defaults;
mod raw;
pub mod units;

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use units::{BaseUrl, Scheme};

use crate::presets::{self, AuthStyle};
pub use crate::secret::Secret;

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
    pub fn as_str(self) -> &'static str {
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
    /// Protocol.
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
    pub fn parse(s: &str) -> Result<ProxyUrl, String> {
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
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// `scheme://host:port`, with `***@` when credentials are set (safe to print).
    pub fn display(&self) -> String {
        format!(
            "{}://{}{}",
            self.kind.as_str(),
            if self.username.is_empty() { "" } else { "***@" },
            self.authority()
        )
    }
}

/// Decodes `%XX` escapes; `None` for a broken escape, invalid UTF-8 or a control character.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = b.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    let out = String::from_utf8(out).ok()?;
    (!out.chars().any(char::is_control)).then_some(out)
}

/// Which event-loop driver workers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DriverChoice {
    /// io_uring when the kernel allows, else the legacy epoll driver.
    Auto,
    /// io_uring, or fail at start.
    IoUring,
    /// The legacy epoll driver.
    Legacy,
}

/// CORS policy for browser clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cors {
    /// No CORS headers (the default: browsers cannot call the gateway cross-origin).
    Off,
    /// `Access-Control-Allow-Origin: *`.
    Any,
    /// Only these exact origins are echoed back.
    List(Vec<String>),
}

/// Rate limits of a client key (`[[auth.keys]]`) or a channel: `rps`, `rpm`, `tpm`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RateLimits {
    /// Requests per second.
    pub rps: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<u32>,
    /// Tokens (prompt + completion) per minute.
    pub tpm: Option<u32>,
}

impl RateLimits {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.tpm.is_some()
    }
}

/// `[server]`.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Listen address of the client API.
    pub listen: SocketAddr,
    /// Worker threads (0 = one per CPU in the affinity mask).
    pub workers: usize,
    /// Event-loop driver.
    pub driver: DriverChoice,
    /// Pin worker `i` to the `i`-th CPU of the affinity mask.
    pub pin_workers: bool,
    /// Worker tick: snapshot polling and report flushing.
    pub tick: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Most request headers.
    pub max_headers: usize,
    /// Largest request body.
    pub max_body: usize,
    /// Request and response body bytes a worker may hold; over it, new requests get 503.
    pub max_buffered: usize,
    /// Most open client connections per worker.
    pub max_connections: usize,
    /// Deadline for a whole request head.
    pub header_timeout: Duration,
    /// Deadline for a whole request body.
    pub body_timeout: Duration,
    /// Keep-alive idle timeout between requests.
    pub idle_timeout: Duration,
    /// Shutdown drain time.
    pub drain_timeout: Duration,
    /// DNS re-resolution period.
    pub dns_refresh: Duration,
    /// CORS policy.
    pub cors: Cors,
    /// `[server.tls]`: serve HTTPS with this certificate chain and key (PEM files).
    pub tls: Option<TlsFiles>,
    /// Static host overrides consulted before DNS (`/etc/hosts` format), re-read at every
    /// `dns_refresh`.
    pub hosts_file: Option<PathBuf>,
}

/// `[server.tls]`: certificate chain and private key files (PEM), re-read on every reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain, leaf first.
    pub cert: PathBuf,
    /// Private key of the leaf.
    pub key: PathBuf,
}

/// `[providers.ID]`.
#[derive(Debug, Clone)]
pub struct ProviderConfig {
    /// The table name.
    pub id: String,
    /// Wire family or preset.
    pub kind: String,
    /// The wire format the kind speaks.
    pub family: presets::Family,
    /// Whether streamed requests may carry `stream_options.include_usage` (added when the
    /// client did not ask, so every stream's usage is known; the usage chunk is then stripped).
    pub stream_usage: bool,
    /// Client request headers forwarded beyond the allow-list (lower-case names, or prefixes
    /// ending in `*`); see `proxy::headers`.
    pub forward_headers: Vec<String>,
    /// Base URL (may be overridden per channel).
    pub base_url: Option<BaseUrl>,
    /// Path appended to the base URL for chat completions.
    pub chat_path: String,
    /// Auth header style.
    pub auth: AuthStyle,
    /// Extra headers sent on every request (preset headers first, config overrides by name).
    pub headers: Vec<(String, String)>,
    /// Extra PEM trust roots for this provider's TLS (private CAs, tests).
    pub ca_file: Option<PathBuf>,
    /// Connect timeout per address.
    pub connect_timeout: Duration,
    /// Request sent → first response byte.
    pub first_byte_timeout: Duration,
    /// Longest silence between reads of a started response.
    pub idle_timeout: Duration,
    /// Whole exchange.
    pub total_timeout: Duration,
    /// Idle pooled connections per worker and address.
    pub pool_max_idle: usize,
    /// How long an idle pooled connection is kept.
    pub pool_idle_timeout: Duration,
    /// Path of the model list under the base URL (discovery and probes).
    pub models_path: String,
    /// Outbound proxy every connection to this provider goes through (none: direct).
    pub proxy: Option<ProxyUrl>,
}

/// `[discovery]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Fetch model lists from providers.
    pub enabled: bool,
    /// Refresh period (with up to 10 % jitter).
    pub interval: Duration,
    /// Per-channel timeout.
    pub timeout: Duration,
    /// Channels fetched at once.
    pub concurrency: usize,
}

/// `[health]`: recovery probes for channels out of rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// Probe channels that are cooling down or out on 401/403.
    pub enabled: bool,
    /// Probe period.
    pub interval: Duration,
    /// Probe timeout.
    pub timeout: Duration,
}

/// `[usage]`: the usage log in the state dir.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageConfig {
    /// Write one JSON line per request to `usage/YYYY-MM-DD.jsonl` (daily counters for quotas
    /// and budgets are kept either way).
    pub log: bool,
    /// Delete daily usage files older than this many days (0: keep them all).
    pub retain_days: u32,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            log: true,
            retain_days: 90,
        }
    }
}

/// `[cluster]`: several instances sharing cooldowns, limits, quotas and usage through Redis.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterConfig {
    /// `redis://`, `rediss://` or `redis+unix://` URL; may carry a password, so it is a secret
    /// (shown only through [`ClusterConfig::redis_shown`]).
    pub redis: Secret,
    /// This instance's name in Redis (default: hostname and listen port).
    pub instance_id: String,
    /// How often the control plane pushes local events and pulls the fleet's state.
    pub sync_interval: Duration,
    /// Key prefix (`{prefix}:…`, one Redis Cluster hash slot), to share a Redis between fleets.
    pub prefix: String,
}

impl ClusterConfig {
    /// The Redis URL with any password replaced by `***`, for logs and the admin API.
    pub fn redis_shown(&self) -> String {
        let url = self.redis.expose();
        let Some((scheme, rest)) = url.split_once("://") else {
            return "***".into();
        };
        // A query may carry the password too (`redis+unix:///sock?pass=…`): never shown.
        let (rest, query) = match rest.split_once('?') {
            Some((r, _)) => (r, "?***"),
            None => (rest, ""),
        };
        match rest.rsplit_once('@') {
            Some((user, host)) => {
                let user = user.split_once(':').map_or(user, |(u, _)| u);
                format!("{scheme}://{user}:***@{host}{query}")
            }
            None => format!("{scheme}://{rest}{query}"),
        }
    }
}

/// One client key (`[[auth.keys]]` or a keys file entry): its name and the SHA-256 of the key,
/// never the key.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientKeyConfig {
    /// Shown in records, logs and metrics.
    pub name: String,
    /// SHA-256 of the key.
    pub sha256: [u8; 32],
    /// Unix milliseconds from which the key is refused.
    pub expires_ms: Option<u64>,
    /// Model expressions the key may use (empty: any).
    pub models: Vec<String>,
    /// Rate limits.
    pub limits: RateLimits,
    /// Spend allowed per UTC day, in the `[pricing]` currency.
    pub daily_budget: Option<f64>,
}

/// `[auth]`: who may call the client API.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Keys from the config and the keys file, config first.
    pub keys: Vec<ClientKeyConfig>,
    /// Serve a non-loopback listener without any key.
    pub allow_unauthenticated: bool,
    /// Where `keys add|list|revoke` keep keys (read at every (re)load).
    pub keys_file: Option<PathBuf>,
}

/// `[admin]`: the operator API on its own listener.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token (none: loopback only).
    pub token: Option<Secret>,
}

/// Prices per 1M tokens in `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Prompt tokens.
    pub input: f64,
    /// Completion tokens.
    pub output: f64,
    /// Prompt tokens read from a prompt cache (defaults to `input`).
    pub cached: Option<f64>,
    /// Prompt tokens written to a prompt cache (defaults to `input`).
    pub cache_write: Option<f64>,
    /// Currency code, upper case (converted through `[pricing] rates`).
    pub currency: String,
}

impl Price {
    /// The same prices as a [`crate::pricing::Price`], still in `currency`.
    pub fn per_million(&self) -> crate::pricing::Price {
        crate::pricing::Price {
            input: self.input,
            output: self.output,
            cached: self.cached,
            cache_write: self.cache_write,
        }
    }
}

/// What config says about one model of a channel (wins over discovery and heuristics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelInfo {
    /// Context length in tokens.
    pub context: Option<u32>,
    /// Parameters in millions.
    pub params_m: Option<u32>,
    /// Takes images.
    pub vision: Option<bool>,
    /// Calls tools.
    pub tools: Option<bool>,
    /// Supports JSON mode.
    pub json: Option<bool>,
    /// Is an embedding model.
    pub embedding: Option<bool>,
    /// Quality in [0, 1].
    pub quality: Option<f32>,
    /// Price for this model (wins over the channel's).
    pub pricing: Option<Price>,
}

/// `[[channels]]`.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// Unique id (appears in `x-router-channel`).
    pub id: String,
    /// Index into [`Config::providers`].
    pub provider: usize,
    /// API key (may be empty for keyless local servers).
    pub api_key: Secret,
    /// Base URL override.
    pub base_url: Option<BaseUrl>,
    /// Models this channel serves (upstream ids).
    pub models: Vec<String>,
    /// Client-facing name → upstream model id.
    pub aliases: Vec<(String, String)>,
    /// Extra tags (used by tag routing).
    pub tags: Vec<String>,
    /// Higher is tried first.
    pub priority: i32,
    /// Share among tied candidates.
    pub weight: f64,
    /// Disabled channels are never routed to.
    pub enabled: bool,
    /// Price for every model of the channel (per 1M tokens).
    pub pricing: Option<Price>,
    /// Per-model facts.
    pub model_info: Vec<(String, ModelInfo)>,
    /// Skip the channel when it was used less than this long ago (per worker).
    pub min_request_interval: Duration,
    /// Most requests in flight on the channel (split evenly across workers).
    pub max_concurrent: Option<u32>,
    /// Fetch this channel's model list (when `[discovery]` is enabled).
    pub discover: bool,
    /// Daily quotas (UTC days).
    pub limits: DailyLimits,
    /// Rate limits (`rps`, `rpm`, `tpm`): what the provider allows this key.
    pub rate: RateLimits,
    /// Remove `<think>…</think>` blocks from whole (non-streamed) answers.
    pub strip_think: bool,
    /// JSON members added to every request body sent on this channel, rendered
    /// (`"k":v,` each); the client's own members of the same name win.
    pub extra_body: String,
}

/// A channel's daily quotas; an exhausted channel leaves rotation until 00:00 UTC.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct DailyLimits {
    /// Requests sent on the channel per day.
    pub requests: Option<u64>,
    /// Prompt plus completion tokens per day.
    pub tokens: Option<u64>,
    /// Spend per day, in the `[pricing]` currency.
    pub budget: Option<f64>,
}

impl DailyLimits {
    /// True when any limit is set.
    pub fn any(&self) -> bool {
        self.requests.is_some() || self.tokens.is_some() || self.budget.is_some()
    }
}

/// How long channels cool down after failures (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownPolicy {
    /// First backoff after a transient failure; doubles per consecutive failure.
    pub base: Duration,
    /// Longest backoff.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// How long a channel stays out after a 401/403.
    pub auth: Duration,
    /// How long a (channel, model) stays out after a 404 naming the model.
    pub model_missing: Duration,
}

/// `[routing]`.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Candidates tried per request.
    pub max_attempts: usize,
    /// Strategy when the request names none.
    pub default_strategy: String,
    /// Scores this close are tied and spread by weight.
    pub tie_epsilon: f32,
    /// Cooldown durations.
    pub cooldown: CooldownPolicy,
}

/// `[strategies.NAME]`: a user-defined weight vector.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyConfig {
    /// Name.
    pub name: String,
    /// Weights.
    pub weights: crate::strategy::Weights,
}

/// `[groups."auto:NAME"]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// `auto:NAME`.
    pub name: String,
    /// The model expression the group stands for.
    pub query: String,
    /// Strategy (else the routing default).
    pub strategy: Option<String>,
    /// Filters applied to every request through the group.
    pub options: crate::strategy::Options,
}

/// `[pricing]`: the reporting currency, exchange rates and the daily budget.
///
/// Prices are compared in USD (routing) and reported in `currency`; `rates` converts both
/// ways and always holds USD and `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct PricingConfig {
    /// The currency costs and budgets are reported in (upper case).
    pub currency: String,
    /// Units of each currency per 1 USD (upper-case codes; USD = 1 is always present, and so
    /// is `currency`).
    pub rates: Vec<(String, f64)>,
    /// Most spend per day, in `currency` (none: no budget). Parsed and validated here;
    /// enforcement lives elsewhere.
    pub daily_budget: Option<f64>,
}

impl PricingConfig {
    /// Units of `code` per 1 USD (case-insensitive), if known.
    pub fn rate(&self, code: &str) -> Option<f64> {
        self.rates
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|(_, r)| *r)
    }

    /// `amount` of `code` in USD, if the rate is known.
    pub fn to_usd(&self, amount: f64, code: &str) -> Option<f64> {
        self.rate(code).map(|r| amount / r)
    }

    /// `usd` in the reporting currency.
    pub fn from_usd(&self, usd: f64) -> f64 {
        // Validation guarantees the rate; 1.0 keeps a hand-built config usable.
        usd * self.rate(&self.currency).unwrap_or(1.0)
    }

    /// The daily budget in USD.
    pub fn daily_budget_usd(&self) -> Option<f64> {
        self.daily_budget
            .and_then(|b| self.to_usd(b, &self.currency))
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `key=value` lines.
    Logfmt,
    /// One JSON object per line.
    Json,
}

/// `[log]`.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// Least severe level printed.
    pub level: tracing::Level,
    /// One `access` line per request (written by the control thread from usage records).
    pub access: bool,
}

/// Where the config came from (reported at start and by `check`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A TOML file.
    File(PathBuf),
    /// A TOML string given in code (tests).
    Inline,
    /// Built from provider keys found in these environment variables.
    Environment(Vec<String>),
    /// Demo mode: the built-in mock upstream.
    Demo,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `[server]`.
    pub server: ServerConfig,
    /// `[providers.*]`, sorted by id.
    pub providers: Vec<ProviderConfig>,
    /// `[[channels]]`, in file order.
    pub channels: Vec<ChannelConfig>,
    /// `[routing]`.
    pub routing: RoutingConfig,
    /// `[strategies.*]`, user-defined.
    pub strategies: Vec<StrategyConfig>,
    /// `[groups."auto:*"]`.
    pub groups: Vec<GroupConfig>,
    /// `[pricing]`.
    pub pricing: PricingConfig,
    /// `[discovery]`.
    pub discovery: DiscoveryConfig,
    /// `[health]`.
    pub health: HealthConfig,
    /// `[state] dir`: discovery cache and admin overrides (none: nothing persists).
    pub state_dir: Option<PathBuf>,
    /// `[usage]`: the per-request usage log.
    pub usage: UsageConfig,
    /// `[admin]`: present (and not `enabled = false`) turns the admin API on.
    pub admin: Option<AdminConfig>,
    /// `[log]`.
    pub log: LogConfig,
    /// `[auth]`: client keys.
    pub auth: AuthConfig,
    /// `[cluster]`: shared state through Redis (none: this instance alone).
    pub cluster: Option<ClusterConfig>,
    /// Where it came from.
    pub source: Source,
}

/// One problem in a config: the key path and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Key path, e.g. `channels[0].provider`.
    pub path: String,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Every problem found in a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, when there is one.
    pub origin: Option<PathBuf>,
    /// The problems, in key order.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Some(p) => writeln!(f, "invalid config {}:", p.display())?,
            None => writeln!(f, "invalid config:")?,
        }
        for p in &self.problems {
            if p.path.is_empty() {
                writeln!(f, "  - {}", p.message)?;
            } else {
                writeln!(f, "  - `{}`: {}", p.path, p.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    fn one(origin: Option<PathBuf>, path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            origin,
            problems: vec![Problem {
                path: path.into(),
                message: message.into(),
            }],
        }
    }
}

/// A source of environment variables (injectable so tests never call `set_var`).
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

impl Config {
    /// Reads and validates a TOML file. Blocking file I/O: call from `main`/control only.
    #[allow(clippy::disallowed_methods)] // control-side: config files are read off the data plane
    pub fn load_file(path: &Path, env: &dyn Env) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigError::one(
                Some(path.to_path_buf()),
                "",
                format!("cannot read {}: {e}", path.display()),
            )
        })?;
        let mut cfg = Self::parse(&text, env).map_err(|mut e| {
            e.origin = Some(path.to_path_buf());
            e
        })?;
        cfg.source = Source::File(path.to_path_buf());
        cfg.merge_keys_file()?;
        Ok(cfg)
    }

    /// Adds the keys of `[auth] keys_file` to the config's own (a key or name the config
    /// already has is an error). Then a keys file left empty on a non-loopback listener without
    /// `allow_unauthenticated` is refused, as a config without keys is.
    pub fn merge_keys_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.auth.keys_file.clone() else {
            return Ok(());
        };
        for k in read_keys_file(&path)? {
            if self
                .auth
                .keys
                .iter()
                .any(|o| o.name == k.name || o.sha256 == k.sha256)
            {
                return Err(ConfigError::one(
                    Some(path),
                    "keys",
                    format!(
                        "key \"{}\" repeats a name or key of [[auth.keys]] in the config",
                        k.name
                    ),
                ));
            }
            self.auth.keys.push(k);
        }
        if self.auth.keys.is_empty()
            && !self.auth.allow_unauthenticated
            && !self.server.listen.ip().is_loopback()
        {
            return Err(ConfigError::one(
                Some(path.clone()),
                "auth",
                format!(
                    "server.listen ({}) is not a loopback address and {} holds no key: add one with \
                     `smart-ai-router keys add NAME`, or set auth.allow_unauthenticated = true",
                    self.server.listen,
                    path.display()
                ),
            ));
        }
        Ok(())
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str, env: &dyn Env) -> Result<Config, ConfigError> {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| {
            // Position and message only: the parser's own rendering quotes the source line,
            // which may hold an API key, into logs and admin answers.
            let at = e.span().map_or(String::new(), |span| {
                let before = &text.as_bytes()[..span.start.min(text.len())];
                let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
                let col = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
                format!(" at line {line}, column {col}")
            });
            ConfigError::one(
                None,
                "",
                format!("not valid TOML{at}: {}", e.message().trim()),
            )
        })?;
        let mut problems = Vec::new();
        expand_env_table(&mut table, "", env, &mut problems);
        if !problems.is_empty() {
            return Err(ConfigError {
                origin: None,
                problems,
            });
        }
        let raw: raw::Root =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                ConfigError {
                    origin: None,
                    problems: vec![serde_problem(&e)],
                }
            })?;
        let mut cfg = build(raw)?;
        if cfg.state_dir.is_none() {
            cfg.state_dir = default_state_dir(env);
        }
        Ok(cfg)
    }

    /// Channels from well-known provider environment variables, or `None` when none is set.
    pub fn from_environment(env: &dyn Env) -> Option<Config> {
        let mut providers = Vec::new();
        let mut channels = Vec::new();
        let mut used = Vec::new();
        for preset in presets::PRESETS {
            let (Some(var), false) = (preset.env_key, preset.env_models.is_empty()) else {
                continue;
            };
            let Some(key) = env.var(var).filter(|k| !k.trim().is_empty()) else {
                continue;
            };
            if key.trim().bytes().any(|b| b.is_ascii_control()) {
                tracing::warn!(var, "ignored: the key contains control characters");
                continue;
            }
            let base = env
                .var(&format!("{}_BASE_URL", var.trim_end_matches("_API_KEY")))
                .and_then(|u| BaseUrl::parse(&u).ok())
                .or_else(|| BaseUrl::parse(preset.base_url).ok());
            used.push(var.to_string());
            providers.push(provider_from_preset(preset.kind, preset, base));
            channels.push(ChannelConfig {
                id: preset.kind.to_string(),
                provider: providers.len() - 1,
                api_key: Secret::new(key.trim()),
                base_url: None,
                models: preset.env_models.iter().map(|m| m.to_string()).collect(),
                aliases: Vec::new(),
                tags: Vec::new(),
                priority: defaults::PRIORITY,
                weight: defaults::WEIGHT,
                enabled: true,
                pricing: None,
                model_info: Vec::new(),
                min_request_interval: Duration::ZERO,
                max_concurrent: None,
                discover: true,
                limits: DailyLimits::default(),
                rate: RateLimits::default(),
                extra_body: String::new(),
                strip_think: false,
            });
        }
        if channels.is_empty() {
            return None;
        }
        let mut cfg = Self::empty();
        cfg.providers = providers;
        cfg.channels = channels;
        cfg.source = Source::Environment(used);
        cfg.state_dir = default_state_dir(env);
        Some(cfg)
    }

    /// Demo mode: one channel on the built-in mock upstream at `mock`.
    pub fn demo(mock: SocketAddr, models: &[&str]) -> Config {
        let base = BaseUrl::parse(&format!("http://{mock}/v1")).ok();
        let preset = presets::preset("openai").expect("openai preset exists");
        let mut cfg = Self::empty();
        cfg.providers = vec![provider_from_preset("demo", preset, base)];
        cfg.channels = vec![ChannelConfig {
            id: "demo".into(),
            provider: 0,
            api_key: Secret::new("demo-key"),
            base_url: None,
            models: models.iter().map(|m| m.to_string()).collect(),
            aliases: Vec::new(),
            tags: vec!["demo".into(), "free".into()],
            priority: defaults::PRIORITY,
            weight: defaults::WEIGHT,
            enabled: true,
            pricing: None,
            model_info: Vec::new(),
            min_request_interval: Duration::ZERO,
            max_concurrent: None,
            discover: true,
            limits: DailyLimits::default(),
            rate: RateLimits::default(),
            extra_body: String::new(),
            strip_think: false,
        }];
        cfg.source = Source::Demo;
        cfg
    }

    /// Whether the config declares no provider and no channel, as the packaged starter file
    /// does. The binary runs such a file as it runs no file at all (channels from provider keys
    /// in the environment, else demo mode, at start and on every reload), keeping everything
    /// else the file says: listeners, admin, auth, log, state.
    pub fn declares_no_channels(&self) -> bool {
        self.providers.is_empty() && self.channels.is_empty()
    }

    /// Serves the providers and channels of `from` (built by [`Config::from_environment`] or
    /// [`Config::demo`]); the rest of this config, and its source, stay.
    pub fn adopt_channels(&mut self, from: Config) {
        self.providers = from.providers;
        self.channels = from.channels;
    }

    /// A config with every default and no channels.
    pub fn empty() -> Config {
        build(raw::Root::default()).expect("defaults validate")
    }

    /// The effective base URL of a channel (its own, else its provider's).
    pub fn channel_base_url<'a>(&'a self, ch: &'a ChannelConfig) -> Option<&'a BaseUrl> {
        ch.base_url
            .as_ref()
            .or(self.providers[ch.provider].base_url.as_ref())
    }

    /// A human summary for `check` and the startup banner (no secrets).
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let workers = if self.server.workers == 0 {
            "auto".to_string()
        } else {
            self.server.workers.to_string()
        };
        s.push_str(&format!(
            "listen {} · workers {} · {} provider(s) · {} channel(s)\n",
            self.server.listen,
            workers,
            self.providers.len(),
            self.channels.len()
        ));
        for ch in &self.channels {
            let p = &self.providers[ch.provider];
            let url = self
                .channel_base_url(ch)
                .map(|u| u.to_url())
                .unwrap_or_default();
            s.push_str(&format!(
                "  channel {} → provider {} ({}) {}{} · {} model(s){}{}\n",
                ch.id,
                p.id,
                p.kind,
                url,
                p.proxy
                    .as_ref()
                    .map(|x| format!(" via {}", x.display()))
                    .unwrap_or_default(),
                ch.models.len(),
                if ch.priority != 0 {
                    format!(" · priority {}", ch.priority)
                } else {
                    String::new()
                },
                if ch.enabled { "" } else { " · disabled" }
            ));
        }
        s
    }
}

/// `$XDG_STATE_HOME/smart-ai-router`, else `$HOME/.local/state/smart-ai-router`, else none.
pub fn default_state_dir(env: &dyn Env) -> Option<PathBuf> {
    let base = env
        .var("XDG_STATE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| {
            env.var("HOME")
                .filter(|v| v.starts_with('/'))
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("smart-ai-router"))
}

fn provider_from_preset(
    id: &str,
    preset: &presets::Preset,
    base_url: Option<BaseUrl>,
) -> ProviderConfig {
    ProviderConfig {
        id: id.to_string(),
        kind: preset.kind.to_string(),
        family: preset.family,
        stream_usage: preset.stream_usage,
        forward_headers: Vec::new(),
        base_url,
        chat_path: preset.chat_path.to_string(),
        auth: preset.auth,
        headers: preset
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ca_file: None,
        connect_timeout: defaults::CONNECT_TIMEOUT,
        first_byte_timeout: defaults::FIRST_BYTE_TIMEOUT,
        idle_timeout: defaults::UPSTREAM_IDLE_TIMEOUT,
        total_timeout: defaults::TOTAL_TIMEOUT,
        pool_max_idle: defaults::POOL_MAX_IDLE,
        pool_idle_timeout: defaults::POOL_IDLE_TIMEOUT,
        models_path: preset.models_path.to_string(),
        proxy: None,
    }
}

// ---------------------------------------------------------------------------------------------
// ${VAR} expansion

fn expand_env_table(table: &mut toml::Table, path: &str, env: &dyn Env, out: &mut Vec<Problem>) {
    for (k, v) in table.iter_mut() {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        expand_env_value(v, &p, env, out);
    }
}

fn expand_env_value(v: &mut toml::Value, path: &str, env: &dyn Env, out: &mut Vec<Problem>) {
    match v {
        toml::Value::String(s) => match expand_vars(s, env) {
            Ok(Some(n)) => *s = n,
            Ok(None) => {}
            Err(m) => out.push(Problem {
                path: path.to_string(),
                message: m,
            }),
        },
        toml::Value::Array(a) => {
            for (i, item) in a.iter_mut().enumerate() {
                expand_env_value(item, &format!("{path}[{i}]"), env, out);
            }
        }
        toml::Value::Table(t) => expand_env_table(t, path, env, out),
        _ => {}
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`. `Ok(None)` = unchanged.
fn expand_vars(s: &str, env: &dyn Env) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in \"{s}\"; write ${{VAR}}"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "\"${{{inner}}}\" is not a variable reference; names are letters, digits and _"
            ));
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set; export it, or write ${{{name}:-default}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

// ---------------------------------------------------------------------------------------------
// serde errors → problems with key paths and suggestions

fn serde_problem(e: &serde_path_to_error::Error<toml::de::Error>) -> Problem {
    let parent = e.path().to_string();
    let parent = if parent == "." { String::new() } else { parent };
    let inner = e.inner().to_string();
    let inner = inner.trim();
    if let Some(rest) = inner.strip_prefix("unknown field `") {
        let (field, tail) = rest.split_once('`').unwrap_or((rest, ""));
        let expected: Vec<&str> = tail.split('`').skip(1).step_by(2).collect();
        // The path already ends with the unknown key.
        let path = if parent.is_empty() {
            field.to_string()
        } else {
            parent
        };
        let message = match closest(field, &expected) {
            Some(s) => format!("unknown key; did you mean `{s}`?"),
            None if !expected.is_empty() => {
                format!("unknown key; known keys here: {}", expected.join(", "))
            }
            None => "unknown key; this table takes no keys".to_string(),
        };
        return Problem { path, message };
    }
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return Problem {
            path: join_path(&parent, field),
            message: "required key is missing".into(),
        };
    }
    let message = if inner.starts_with("data did not match any variant") {
        "wrong type; sizes are strings like \"16KiB\", durations strings like \"30s\"".into()
    } else {
        inner
            .replace("i64", "an integer")
            .replace("f64", "a number")
    };
    Problem {
        path: parent,
        message,
    }
}

fn join_path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_string()
    } else {
        format!("{parent}.{field}")
    }
}

/// The known name closest to `name` by edit distance, if it is plausibly a typo. Bounded work:
/// names longer than 64 characters are never matched, and only names of similar length are
/// compared, so an attacker's huge or random input costs next to nothing.
pub fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    if name.len() > 64 {
        return None;
    }
    let mut best: Option<(usize, &'a str)> = None;
    for k in known {
        let limit = 2.max(k.len() / 3);
        if k.len() > 64 || k.len().abs_diff(name.len()) > limit {
            continue;
        }
        let limit = best.map_or(limit, |(d, _)| limit.min(d.saturating_sub(1)));
        if let Some(d) = edit_distance_within(name.as_bytes(), k.as_bytes(), limit) {
            best = Some((d, k));
        }
    }
    best.map(|(_, k)| k)
}

/// Levenshtein distance between `a` and `b` (bytes, both at most 64 long) if it is at most
/// `limit`; gives up as soon as every path exceeds it.
fn edit_distance_within(a: &[u8], b: &[u8], limit: usize) -> Option<usize> {
    let mut prev = [0usize; 65];
    let mut cur = [0usize; 65];
    for (j, p) in prev.iter_mut().enumerate().take(b.len() + 1) {
        *p = j;
    }
    for (i, &ca) in a.iter().enumerate() {
        cur[0] = i + 1;
        let mut row_min = cur[0];
        for (j, &cb) in b.iter().enumerate() {
            let cost = usize::from(!ca.eq_ignore_ascii_case(&cb));
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
            row_min = row_min.min(cur[j + 1]);
        }
        if row_min > limit {
            return None;
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    (prev[b.len()] <= limit).then_some(prev[b.len()])
}

// ---------------------------------------------------------------------------------------------
// raw → validated

struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }

    fn duration(
        &mut self,
        path: &str,
        v: Option<raw::DurationValue>,
        default: Duration,
        min: Duration,
    ) -> Duration {
        let d = match v {
            None => return default,
            Some(raw::DurationValue::Text(s)) => match units::parse_duration(&s) {
                Ok(d) => d,
                Err(m) => {
                    self.err(path, m);
                    return default;
                }
            },
            Some(raw::DurationValue::Number(n)) => {
                self.err(
                    path,
                    format!("durations are strings with a unit; write \"{n}s\" or \"{n}ms\""),
                );
                return default;
            }
        };
        if d < min {
            self.err(path, format!("must be at least {min:?}"));
            return default;
        }
        d
    }

    fn size(
        &mut self,
        path: &str,
        v: Option<raw::SizeValue>,
        default: u64,
        min: u64,
        max: u64,
    ) -> u64 {
        let n = match v {
            None => return default,
            Some(raw::SizeValue::Bytes(n)) if n >= 0 => n as u64,
            Some(raw::SizeValue::Bytes(n)) => {
                self.err(path, format!("{n} is negative"));
                return default;
            }
            Some(raw::SizeValue::Text(s)) => match units::parse_size(&s) {
                Ok(n) => n,
                Err(m) => {
                    self.err(path, m);
                    return default;
                }
            },
        };
        if n < min || n > max {
            self.err(
                path,
                format!("must be between {min} and {max} bytes, got {n}"),
            );
            return default;
        }
        n
    }

    fn int(&mut self, path: &str, v: Option<i64>, default: usize, min: i64, max: i64) -> usize {
        match v {
            None => default,
            Some(n) if n >= min && n <= max => n as usize,
            Some(n) => {
                self.err(path, format!("must be between {min} and {max}, got {n}"));
                default
            }
        }
    }
}

fn build(raw: raw::Root) -> Result<Config, ConfigError> {
    let mut c = Checker {
        problems: Vec::new(),
    };
    let server = build_server(&mut c, raw.server);

    let mut providers = Vec::new();
    for (id, p) in raw.providers {
        providers.push(build_provider(&mut c, id, p));
    }

    let mut channels = Vec::new();
    let mut ids = HashSet::new();
    let discovery_on = raw.discovery.enabled.unwrap_or(true);
    for (i, ch) in raw.channels.into_iter().enumerate() {
        if let Some(ch) = build_channel(&mut c, i, ch, &providers, &mut ids, discovery_on) {
            channels.push(ch);
        }
    }
    for (i, ch) in channels.iter().enumerate() {
        let p = &providers[ch.provider];
        if ch.base_url.is_none() && p.base_url.is_none() {
            c.err(
                format!("channels[{i}].base_url"),
                format!(
                    "neither the channel nor provider `{}` has a base_url; set providers.{}.base_url",
                    p.id, p.id
                ),
            );
        }
    }

    let pricing = build_pricing(&mut c, raw.pricing);
    for (i, ch) in channels.iter().enumerate() {
        let prices = ch
            .pricing
            .iter()
            .map(|p| (format!("channels[{i}].pricing"), p))
            .chain(ch.model_info.iter().filter_map(|(m, info)| {
                info.pricing
                    .as_ref()
                    .map(|p| (format!("channels[{i}].model_info.\"{m}\".pricing"), p))
            }));
        for (path, p) in prices {
            if pricing.rate(&p.currency).is_none() {
                c.err(
                    format!("{path}.currency"),
                    format!(
                        "no rate for \"{}\"; add it to [pricing] rates (units per USD), e.g. rates = {{ {} = 7.1 }}",
                        p.currency, p.currency
                    ),
                );
            }
        }
    }

    let mut strategies = Vec::new();
    for (name, st) in raw.strategies {
        let at = |k: &str| format!("strategies.{name}.{k}");
        if crate::strategy::builtin(&name).is_some() {
            c.err(
                format!("strategies.{name}"),
                "this name is a built-in strategy; choose another name for your weights",
            );
        }
        let mut weight = |key: &str, v: Option<f64>| -> f32 {
            match v {
                None => 0.0,
                Some(x) if x.is_finite() && x >= 0.0 => x as f32,
                Some(x) => {
                    c.err(
                        at(key),
                        format!("weights are non-negative numbers, got {x}"),
                    );
                    0.0
                }
            }
        };
        let weights = crate::strategy::Weights {
            cost: weight("cost", st.cost),
            speed: weight("speed", st.speed),
            quality: weight("quality", st.quality),
            reliability: weight("reliability", st.reliability),
            context: weight("context", st.context),
            parameters: weight("parameters", st.parameters),
            free: weight("free", st.free),
            local: weight("local", st.local),
        };
        if weights.sum() <= 0.0 {
            c.err(
                format!("strategies.{name}"),
                "give at least one positive weight (cost, speed, quality, reliability, context, parameters, free, local)",
            );
        }
        strategies.push(StrategyConfig { name, weights });
    }
    let strategy_known = |name: &str| {
        crate::strategy::builtin(name).is_some() || strategies.iter().any(|s| s.name == name)
    };
    let strategy_hint = |name: &str| -> String {
        let mut known: Vec<&str> = crate::strategy::BUILTIN.iter().map(|(n, _)| *n).collect();
        known.extend(strategies.iter().map(|s| s.name.as_str()));
        match closest(name, &known) {
            Some(k) => format!("unknown strategy \"{name}\"; did you mean \"{k}\"?"),
            None => format!("unknown strategy \"{name}\"; known: {}", known.join(", ")),
        }
    };

    let default_strategy = raw
        .routing
        .default_strategy
        .unwrap_or_else(|| defaults::DEFAULT_STRATEGY.to_string());
    if !strategy_known(&default_strategy) {
        c.err("routing.default_strategy", strategy_hint(&default_strategy));
    }
    let tie_epsilon = match raw.routing.tie_epsilon {
        None => defaults::TIE_EPSILON,
        Some(e) if (0.0..=1.0).contains(&e) => e as f32,
        Some(e) => {
            c.err(
                "routing.tie_epsilon",
                format!("must be between 0 and 1, got {e}"),
            );
            defaults::TIE_EPSILON
        }
    };
    let ms = Duration::from_millis(1);
    let cooldown = CooldownPolicy {
        base: c.duration(
            "routing.cooldown_base",
            raw.routing.cooldown_base,
            defaults::COOLDOWN_BASE,
            ms,
        ),
        max: c.duration(
            "routing.cooldown_max",
            raw.routing.cooldown_max,
            defaults::COOLDOWN_MAX,
            ms,
        ),
        retry_after_max: c.duration(
            "routing.retry_after_max",
            raw.routing.retry_after_max,
            defaults::RETRY_AFTER_MAX,
            ms,
        ),
        auth: c.duration(
            "routing.auth_cooldown",
            raw.routing.auth_cooldown,
            defaults::AUTH_COOLDOWN,
            ms,
        ),
        model_missing: c.duration(
            "routing.model_missing_cooldown",
            raw.routing.model_missing_cooldown,
            defaults::MODEL_MISSING_COOLDOWN,
            ms,
        ),
    };
    let routing = RoutingConfig {
        max_attempts: c.int(
            "routing.max_attempts",
            raw.routing.max_attempts,
            defaults::MAX_ATTEMPTS,
            1,
            20,
        ),
        default_strategy,
        tie_epsilon,
        cooldown,
    };

    let mut groups = Vec::new();
    for (name, g) in raw.groups {
        let at = |k: &str| format!("groups.\"{name}\".{k}");
        if !name.to_ascii_lowercase().starts_with("auto:") || name.len() <= 5 {
            c.err(
                format!("groups.\"{name}\""),
                "group names start with `auto:`, e.g. [groups.\"auto:fast\"]",
            );
        }
        let Some(query) = g.query else {
            c.err(
                at("query"),
                "required key is missing; give the model expression the group stands for",
            );
            continue;
        };
        match crate::expr::parse(&query) {
            Err(e) => c.err(at("query"), e),
            Ok(crate::expr::Expr::Group(_)) => {
                c.err(at("query"), "a group's query cannot be another group")
            }
            Ok(_) => {}
        }
        if let Some(s) = &g.strategy
            && !strategy_known(s)
        {
            c.err(at("strategy"), strategy_hint(s));
        }
        let mut options = crate::strategy::Options::default();
        if let Some(caps) = &g.required_capabilities {
            for (i, cap) in caps.iter().enumerate() {
                match crate::expr::Caps::parse(cap) {
                    Some(x) => options.required = options.required.union(x),
                    None => c.err(
                        format!("groups.\"{name}\".required_capabilities[{i}]"),
                        format!("\"{cap}\" is not a capability; use vision, tools or json"),
                    ),
                }
            }
        }
        if let Some(m) = g.max_cost_per_1k {
            if m.is_finite() && m >= 0.0 {
                options.max_cost_per_1k = Some(m);
            } else {
                c.err(
                    at("max_cost_per_1k"),
                    format!("must be a non-negative number, got {m}"),
                );
            }
        }
        options.prefer_local = g.prefer_local;
        options.exclude_providers = g.exclude_providers.unwrap_or_default();
        groups.push(GroupConfig {
            name,
            query,
            strategy: g.strategy,
            options,
        });
    }

    let ms = Duration::from_millis(1);
    let discovery = DiscoveryConfig {
        enabled: raw.discovery.enabled.unwrap_or(true),
        interval: c.duration(
            "discovery.interval",
            raw.discovery.interval,
            defaults::DISCOVERY_INTERVAL,
            Duration::from_secs(1),
        ),
        timeout: c.duration(
            "discovery.timeout",
            raw.discovery.timeout,
            defaults::DISCOVERY_TIMEOUT,
            ms,
        ),
        concurrency: c.int(
            "discovery.concurrency",
            raw.discovery.concurrency,
            defaults::DISCOVERY_CONCURRENCY,
            1,
            256,
        ),
    };
    let health = HealthConfig {
        enabled: raw.health.enabled.unwrap_or(true),
        interval: c.duration(
            "health.interval",
            raw.health.interval,
            defaults::HEALTH_INTERVAL,
            ms,
        ),
        timeout: c.duration(
            "health.timeout",
            raw.health.timeout,
            defaults::HEALTH_TIMEOUT,
            ms,
        ),
    };
    let usage = UsageConfig {
        log: raw.usage.log.unwrap_or(true),
        retain_days: match raw.usage.retain_days {
            None => UsageConfig::default().retain_days,
            Some(n) if (0..=36_500).contains(&n) => n as u32,
            Some(n) => {
                c.err(
                    "usage.retain_days",
                    format!("must be between 0 (keep every file) and 36500, got {n}"),
                );
                0
            }
        },
    };
    let state_dir = raw.state.dir.map(PathBuf::from);
    if let Some(d) = &state_dir
        && !d.is_absolute()
    {
        c.err(
            "state.dir",
            format!("\"{}\" must be an absolute path", d.display()),
        );
    }
    // The admin listener exists only when `[admin]` is present (DESIGN.md §4).
    let admin = raw
        .admin
        .filter(|a| a.enabled != Some(false))
        .map(|a| {
        let listen = units::parse_listen(a.listen.as_deref().unwrap_or(defaults::ADMIN_LISTEN))
            .unwrap_or_else(|m| {
                c.err("admin.listen", m);
                units::parse_listen(defaults::ADMIN_LISTEN).expect("default admin listen parses")
            });
        let token = a.token.filter(|t| !t.is_empty());
        if let Some(t) = &token
            && (t.len() < 16 || t.bytes().any(|b| b.is_ascii_control() || b == b' '))
        {
            c.err("admin.token", "use at least 16 printable characters without spaces");
        }
        if token.is_none() && !listen.ip().is_loopback() {
            c.err(
                "admin.token",
                format!(
                    "required when admin.listen ({listen}) is not a loopback address: the admin API can change routing"
                ),
            );
        }
        AdminConfig {
            listen,
            token: token.map(Secret::new),
        }
    });

    let auth = build_auth(&mut c, raw.auth, &server);
    let cluster = raw.cluster.map(|raw| build_cluster(&mut c, raw, &server));

    let log = LogConfig {
        access: raw.log.access.unwrap_or(false),
        format: match raw.log.format.as_deref() {
            None | Some("logfmt") => LogFormat::Logfmt,
            Some("json") => LogFormat::Json,
            Some(other) => {
                c.err(
                    "log.format",
                    format!("\"{other}\" is not a format; use \"logfmt\" or \"json\""),
                );
                LogFormat::Logfmt
            }
        },
        level: match raw.log.level.as_deref() {
            None => tracing::Level::INFO,
            Some(l) => match l.to_ascii_lowercase().as_str() {
                "error" => tracing::Level::ERROR,
                "warn" => tracing::Level::WARN,
                "info" => tracing::Level::INFO,
                "debug" => tracing::Level::DEBUG,
                "trace" => tracing::Level::TRACE,
                _ => {
                    c.err(
                        "log.level",
                        format!("\"{l}\" is not a level; use error, warn, info, debug or trace"),
                    );
                    tracing::Level::INFO
                }
            },
        },
    };

    if c.problems.is_empty() {
        Ok(Config {
            server,
            providers,
            channels,
            routing,
            strategies,
            groups,
            pricing,
            discovery,
            health,
            state_dir,
            usage,
            admin,
            log,
            auth,
            cluster,
            source: Source::Inline,
        })
    } else {
        Err(ConfigError {
            origin: None,
            problems: c.problems,
        })
    }
}

fn build_auth(c: &mut Checker, a: raw::Auth, server: &ServerConfig) -> AuthConfig {
    let keys_file = a.keys_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    if let Some(f) = &keys_file
        && !f.is_absolute()
    {
        c.err(
            "auth.keys_file",
            format!("\"{}\" must be an absolute path", f.display()),
        );
    }
    let allow_unauthenticated = a.allow_unauthenticated.unwrap_or(false);
    let keys = client_keys(&a.keys, "auth.keys", &mut |path, m| c.err(path, m));
    if keys.is_empty()
        && keys_file.is_none()
        && !allow_unauthenticated
        && !server.listen.ip().is_loopback()
    {
        c.err(
            "auth",
            format!(
                "server.listen ({}) is not a loopback address and no client key is configured: \
                 add keys (`smart-ai-router keys add NAME` with [auth] keys_file, or [[auth.keys]]), \
                 or set auth.allow_unauthenticated = true to serve anyone who can reach it",
                server.listen
            ),
        );
    }
    AuthConfig {
        keys,
        allow_unauthenticated,
        keys_file,
    }
}

/// Validates client key entries (`[[auth.keys]]` or a keys file's `[[keys]]`), reporting each
/// problem under `base[i].key`.
fn client_keys(
    raw: &[raw::AuthKey],
    base: &str,
    err: &mut dyn FnMut(String, String),
) -> Vec<ClientKeyConfig> {
    let mut out: Vec<ClientKeyConfig> = Vec::with_capacity(raw.len());
    for (i, k) in raw.iter().enumerate() {
        let at = |f: &str| format!("{base}[{i}].{f}");
        let name = k.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
        {
            err(
                at("name"),
                "1 to 64 characters: letters, digits, - _ . @ (it appears in logs and metrics)"
                    .into(),
            );
            continue;
        }
        let Some(sha256) = crate::secret::parse_hex(k.sha256.trim()) else {
            err(
                at("sha256"),
                "64 hex digits: the SHA-256 of the key (`printf %s \"$KEY\" | sha256sum`), never the key itself".into(),
            );
            continue;
        };
        let expires_ms = match k.expires.as_deref() {
            None => None,
            Some(t) => match crate::clock::parse_time(t.trim()) {
                Some(ms) => Some(ms),
                None => {
                    err(
                        at("expires"),
                        format!("\"{t}\" is not a date (YYYY-MM-DD, UTC) or unix seconds"),
                    );
                    continue;
                }
            },
        };
        for m in &k.models {
            if let Err(e) = crate::expr::parse(m) {
                err(
                    at("models"),
                    format!("`{m}` is not a model expression: {e}"),
                );
            }
        }
        let limits = rate_spec(&mut |f, m| err(at(f), m), k.rps, k.rpm, k.tpm);
        let daily_budget = match k.daily_budget {
            None => None,
            Some(b) if b.is_finite() && b >= 0.0 => Some(b),
            Some(b) => {
                err(
                    at("daily_budget"),
                    format!("a non-negative amount in the [pricing] currency, got {b}"),
                );
                None
            }
        };
        if out.iter().any(|o| o.name == name) {
            err(at("name"), format!("\"{name}\" is used by another key"));
            continue;
        }
        if out.iter().any(|o| o.sha256 == sha256) {
            err(at("sha256"), "the same key is listed twice".into());
            continue;
        }
        out.push(ClientKeyConfig {
            name: name.to_string(),
            sha256,
            expires_ms,
            models: k.models.clone(),
            limits,
            daily_budget,
        });
    }
    out
}

/// Validates `rps`, `rpm` and `tpm` (of a client key or a channel), reporting by field name.
fn rate_spec(
    err: &mut dyn FnMut(&str, String),
    rps: Option<f64>,
    rpm: Option<i64>,
    tpm: Option<i64>,
) -> RateLimits {
    let mut limits = RateLimits::default();
    match rps {
        None => {}
        Some(r) if r.is_finite() && r > 0.0 && r <= 1e6 => limits.rps = Some(r),
        Some(r) => err("rps", format!("requests per second above 0, got {r}")),
    }
    for (field, v, slot) in [("rpm", rpm, &mut limits.rpm), ("tpm", tpm, &mut limits.tpm)] {
        match v {
            None => {}
            Some(n) if (1..=i64::from(u32::MAX)).contains(&n) => *slot = Some(n as u32),
            Some(n) => err(field, format!("a whole number from 1, got {n}")),
        }
    }
    limits
}

/// Reads a keys file (`[[keys]]` entries). A missing file has no keys (`keys add` creates it).
#[allow(clippy::disallowed_methods)] // control-side: read at (re)load, off the data plane
pub fn read_keys_file(path: &Path) -> Result<Vec<ClientKeyConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::one(
                Some(path.to_path_buf()),
                "",
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let file: raw::KeysFile = toml::from_str(&text).map_err(|e| {
        ConfigError::one(
            Some(path.to_path_buf()),
            "",
            format!("not a keys file: {}", e.message().trim()),
        )
    })?;
    let mut problems = Vec::new();
    let keys = client_keys(&file.keys, "keys", &mut |path, message| {
        problems.push(Problem { path, message })
    });
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(ConfigError {
            origin: Some(path.to_path_buf()),
            problems,
        })
    }
}

fn build_pricing(c: &mut Checker, p: raw::Pricing) -> PricingConfig {
    let currency = p
        .currency
        .unwrap_or_else(|| defaults::CURRENCY.to_string())
        .to_ascii_uppercase();
    let currency_ok = valid_currency(&currency);
    if !currency_ok {
        c.err(
            "pricing.currency",
            format!("\"{currency}\" is not a currency code like \"USD\""),
        );
    }
    let mut rates: Vec<(String, f64)> = vec![("USD".to_string(), 1.0)];
    let mut add = |c: &mut Checker, path: String, code: &str, rate: f64| {
        if rates.iter().any(|(k, _)| k.eq_ignore_ascii_case(code)) {
            c.err(path, format!("{code} is given twice"));
        } else {
            rates.push((code.to_ascii_uppercase(), rate));
        }
    };
    // A rate is a positive finite number under a currency code.
    let checked = |c: &mut Checker, path: &str, code: &str, rate: f64| -> bool {
        if !valid_currency(code) {
            c.err(path, "not a currency code like \"CNY\"");
            false
        } else if !(rate.is_finite() && rate > 0.0) {
            c.err(path, format!("rates are positive numbers, got {rate}"));
            false
        } else {
            true
        }
    };
    if p.rates.is_some() && p.fx.is_some() {
        c.err(
            "pricing.fx",
            "give either rates (units per USD) or fx (the older spelling, value in `currency`), not both",
        );
    }
    for (code, rate) in p.rates.unwrap_or_default() {
        let path = format!("pricing.rates.{code}");
        if !checked(c, &path, &code, rate) {
            continue;
        }
        if code.eq_ignore_ascii_case("USD") {
            // USD is the base every rate is counted in.
            if rate != 1.0 {
                c.err(
                    path,
                    format!("rates are units per USD, so USD is 1, got {rate}"),
                );
            }
            continue;
        }
        add(c, path, &code, rate);
    }
    if let Some(fx) = p.fx {
        // Backwards compatibility: `fx` says what one unit of each currency is worth in
        // `currency`. Rates per USD follow once `currency` itself has a USD rate: 1 when it is
        // USD, else fx's USD entry.
        let mut valid: Vec<(String, f64)> = Vec::new();
        for (code, rate) in fx {
            let path = format!("pricing.fx.{code}");
            if !checked(c, &path, &code, rate) {
                continue;
            }
            if code.eq_ignore_ascii_case(&currency) {
                if rate != 1.0 {
                    c.err(
                        path,
                        format!("{code} is `currency`: it is worth 1 of itself, got {rate}"),
                    );
                }
                continue;
            }
            valid.push((code, rate));
        }
        let own = if currency == "USD" {
            Some(1.0)
        } else {
            valid
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("USD"))
                .map(|(_, r)| *r)
        };
        match own {
            Some(own) => {
                for (code, worth) in valid {
                    if code.eq_ignore_ascii_case("USD") {
                        add(c, "pricing.fx.USD".into(), &currency, own);
                    } else {
                        add(c, format!("pricing.fx.{code}"), &code, own / worth);
                    }
                }
            }
            None if currency_ok => c.err(
                "pricing.fx",
                format!("fx needs a USD entry to relate {currency} to USD, e.g. fx = {{ USD = 7.1 }}, or use rates = {{ {currency} = 7.1 }}"),
            ),
            None => {}
        }
    }
    if currency_ok && !rates.iter().any(|(k, _)| *k == currency) {
        c.err(
            "pricing.currency",
            format!(
                "{currency} needs a rate: list and discovered prices are USD, so add [pricing] rates = {{ {currency} = <{currency} per USD> }}"
            ),
        );
    }
    let daily_budget = match p.daily_budget {
        Some(b) if b.is_finite() && b >= 0.0 => Some(b),
        Some(b) => {
            c.err(
                "pricing.daily_budget",
                format!("a non-negative amount in {currency} per day, got {b}"),
            );
            None
        }
        None => None,
    };
    PricingConfig {
        currency,
        rates,
        daily_budget,
    }
}

fn valid_currency(code: &str) -> bool {
    (3..=4).contains(&code.len()) && code.bytes().all(|b| b.is_ascii_alphabetic())
}

fn build_price(c: &mut Checker, path: &str, p: raw::Price) -> Option<Price> {
    let before = c.problems.len();
    let mut num = |k: &str, v: Option<f64>| -> Option<f64> {
        match v {
            Some(x) if x.is_finite() && x >= 0.0 => Some(x),
            Some(x) => {
                c.err(
                    format!("{path}.{k}"),
                    format!("prices are non-negative numbers per 1M tokens, got {x}"),
                );
                None
            }
            None => None,
        }
    };
    let input = num("input", p.input);
    let output = num("output", p.output);
    let cached = num("cached", p.cached);
    let cache_write = num("cache_write", p.cache_write);
    let (Some(input), Some(output)) = (input, output) else {
        if c.problems.len() == before {
            c.err(path, "give both input and output prices per 1M tokens, e.g. { input = 0.15, output = 0.6 }");
        }
        return None;
    };
    let currency = p
        .currency
        .unwrap_or_else(|| defaults::CURRENCY.to_string())
        .to_ascii_uppercase();
    if !valid_currency(&currency) {
        c.err(
            format!("{path}.currency"),
            format!("\"{currency}\" is not a currency code like \"USD\""),
        );
        return None;
    }
    Some(Price {
        input,
        output,
        cached,
        cache_write,
        currency,
    })
}

fn build_model_info(c: &mut Checker, path: &str, m: raw::ModelInfo) -> ModelInfo {
    let amount =
        |c: &mut Checker, key: &str, v: Option<raw::Amount>, context: bool| -> Option<u32> {
            let parsed = match v? {
                raw::Amount::Number(n) if n.is_finite() && n >= 0.0 => {
                    Ok(if context { n } else { n * 1000.0 } as u64)
                }
                raw::Amount::Number(n) => Err(format!("must be a non-negative number, got {n}")),
                raw::Amount::Text(t) if context => crate::expr::context_size(&t),
                raw::Amount::Text(t) => crate::expr::param_size(&t),
            };
            match parsed {
                Ok(v) if v <= u64::from(u32::MAX) => Some(v as u32),
                Ok(_) => {
                    c.err(format!("{path}.{key}"), "too large");
                    None
                }
                Err(e) => {
                    c.err(format!("{path}.{key}"), e);
                    None
                }
            }
        };
    let context = amount(c, "context", m.context, true);
    let params_m = amount(c, "params", m.params, false);
    let quality = match m.quality {
        None => None,
        Some(q) if (0.0..=1.0).contains(&q) => Some(q as f32),
        Some(q) => {
            c.err(
                format!("{path}.quality"),
                format!("quality is between 0 and 1, got {q}"),
            );
            None
        }
    };
    let pricing = m
        .pricing
        .and_then(|p| build_price(c, &format!("{path}.pricing"), p));
    ModelInfo {
        context,
        params_m,
        vision: m.vision,
        tools: m.tools,
        json: m.json,
        embedding: m.embedding,
        quality,
        pricing,
    }
}

fn build_server(c: &mut Checker, s: raw::Server) -> ServerConfig {
    let listen = match s.listen.as_deref() {
        None => units::parse_listen(defaults::LISTEN).expect("default listen parses"),
        Some(l) => units::parse_listen(l).unwrap_or_else(|m| {
            c.err("server.listen", m);
            units::parse_listen(defaults::LISTEN).expect("default listen parses")
        }),
    };
    let driver = match s.driver.as_deref() {
        None | Some("auto") => DriverChoice::Auto,
        Some("io_uring") | Some("iouring") => DriverChoice::IoUring,
        Some("legacy") | Some("epoll") => DriverChoice::Legacy,
        Some(other) => {
            c.err(
                "server.driver",
                format!("\"{other}\" is not a driver; use \"auto\", \"io_uring\" or \"legacy\""),
            );
            DriverChoice::Auto
        }
    };
    let cors = match s.cors_origins {
        None => Cors::Off,
        Some(list) if list.is_empty() => Cors::Off,
        Some(list) if list.iter().any(|o| o == "*") => Cors::Any,
        Some(list) => {
            for (i, o) in list.iter().enumerate() {
                if !(o.starts_with("http://") || o.starts_with("https://"))
                    || o.ends_with('/')
                    || o.bytes().any(|b| b <= b' ' || b == 0x7f)
                {
                    c.err(
                        format!("server.cors_origins[{i}]"),
                        format!("\"{o}\" is not an origin; write scheme://host[:port] without a path, or \"*\""),
                    );
                }
            }
            Cors::List(list)
        }
    };
    ServerConfig {
        listen,
        workers: c.int("server.workers", s.workers, defaults::WORKERS, 0, 1024),
        driver,
        pin_workers: s.pin_workers.unwrap_or(true),
        tick: c.duration(
            "server.tick",
            s.tick,
            defaults::TICK,
            Duration::from_millis(1),
        ),
        max_header_bytes: c.size(
            "server.max_header_bytes",
            s.max_header_bytes,
            defaults::MAX_HEADER_BYTES,
            1024,
            1 << 20,
        ) as usize,
        max_headers: c.int(
            "server.max_headers",
            s.max_headers,
            defaults::MAX_HEADERS,
            8,
            crate::h1::head::MAX_HEADERS as i64,
        ),
        max_body: c.size(
            "server.max_body",
            s.max_body,
            defaults::MAX_BODY,
            1024,
            1 << 30,
        ) as usize,
        max_buffered: c.size(
            "server.max_buffered",
            s.max_buffered,
            defaults::MAX_BUFFERED,
            1 << 20,
            1 << 40,
        ) as usize,
        max_connections: c.int(
            "server.max_connections",
            s.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            1 << 20,
        ),
        header_timeout: c.duration(
            "server.header_timeout",
            s.header_timeout,
            defaults::HEADER_TIMEOUT,
            Duration::from_millis(10),
        ),
        body_timeout: c.duration(
            "server.body_timeout",
            s.body_timeout,
            defaults::BODY_TIMEOUT,
            Duration::from_millis(10),
        ),
        idle_timeout: c.duration(
            "server.idle_timeout",
            s.idle_timeout,
            defaults::IDLE_TIMEOUT,
            Duration::from_millis(10),
        ),
        drain_timeout: c.duration(
            "server.drain_timeout",
            s.drain_timeout,
            defaults::DRAIN_TIMEOUT,
            Duration::ZERO,
        ),
        dns_refresh: c.duration(
            "server.dns_refresh",
            s.dns_refresh,
            defaults::DNS_REFRESH,
            Duration::from_secs(1),
        ),
        cors,
        hosts_file: match s.hosts_file.filter(|f| !f.is_empty()) {
            Some(f) if Path::new(&f).is_absolute() => Some(PathBuf::from(f)),
            Some(f) => {
                c.err(
                    "server.hosts_file",
                    format!("\"{f}\" must be an absolute path"),
                );
                None
            }
            None => None,
        },
        tls: s.tls.and_then(|t| {
            let file = |c: &mut Checker, k: &str, v: Option<String>| match v {
                Some(p) if Path::new(&p).is_absolute() => Some(PathBuf::from(p)),
                Some(p) => {
                    c.err(
                        format!("server.tls.{k}"),
                        format!("\"{p}\" must be an absolute path"),
                    );
                    None
                }
                None => {
                    c.err(
                        format!("server.tls.{k}"),
                        "required with [server.tls] (a PEM file)",
                    );
                    None
                }
            };
            let cert = file(c, "cert", t.cert);
            let key = file(c, "key", t.key);
            Some(TlsFiles {
                cert: cert?,
                key: key?,
            })
        }),
    }
}

fn build_provider(c: &mut Checker, id: String, p: raw::Provider) -> ProviderConfig {
    let at = |k: &str| format!("providers.{id}.{k}");
    if !valid_id(&id) {
        c.err(
            format!("providers.{id}"),
            "provider ids are 1-64 letters, digits, '.', '_' or '-'",
        );
    }
    let kind = p.kind.unwrap_or_else(|| "openai".to_string());
    let preset = presets::preset(&kind);
    if preset.is_none() {
        let known: Vec<&str> = presets::kinds().collect();
        let hint = closest(&kind, &known)
            .map(|k| format!("did you mean \"{k}\"? "))
            .unwrap_or_default();
        c.err(
            at("kind"),
            format!(
                "unknown kind \"{kind}\"; {hint}known kinds: {}",
                known.join(", ")
            ),
        );
    }
    let preset = preset.unwrap_or(&presets::PRESETS[0]);
    let base_url = match p.base_url {
        Some(u) => BaseUrl::parse(&u)
            .map_err(|m| c.err(at("base_url"), m))
            .ok(),
        None if preset.base_url.is_empty() => None,
        None => BaseUrl::parse(preset.base_url).ok(),
    };
    let chat_path = p.chat_path.unwrap_or_else(|| preset.chat_path.to_string());
    if !chat_path.starts_with('/') || chat_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        c.err(
            at("chat_path"),
            format!("\"{chat_path}\" must be a path starting with /"),
        );
    }
    let auth = match p.auth.as_deref() {
        None => preset.auth,
        Some(a) => AuthStyle::parse(a).unwrap_or_else(|| {
            c.err(
                at("auth"),
                format!(
                    "\"{a}\" is not an auth style; use \"bearer\", \"x-api-key\", \"api-key\" or \"x-goog-api-key\""
                ),
            );
            preset.auth
        }),
    };
    let mut headers: Vec<(String, String)> = preset
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in p.headers.unwrap_or_default() {
        if !is_token(&k) {
            c.err(at(&format!("headers.{k}")), "not a valid header name");
            continue;
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            c.err(
                at(&format!("headers.{k}")),
                "header values must not contain CR, LF or NUL",
            );
            continue;
        }
        if is_managed_header(&k) {
            c.err(
                at(&format!("headers.{k}")),
                "the gateway sets this header itself; remove it (auth goes in the channel's api_key)",
            );
            continue;
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    let mut forward_headers = Vec::new();
    for (i, h) in p
        .forward_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let name = h.strip_suffix('*').unwrap_or(&h);
        let key = at(&format!("forward_headers[{i}]"));
        if !(is_token(name) || h == "*") {
            c.err(
                key,
                format!("\"{h}\" is not a header name (or a prefix ending in *)"),
            );
        } else if crate::h1::forwarding::never_forwarded(h.as_bytes()) {
            c.err(
                key,
                format!(
                    "\"{h}\" is never forwarded: credentials and framing are the gateway's own"
                ),
            );
        } else {
            forward_headers.push(h.to_ascii_lowercase());
        }
    }
    let ca_file = p.ca_file.map(PathBuf::from);
    let models_path = p
        .models_path
        .unwrap_or_else(|| preset.models_path.to_string());
    if !models_path.starts_with('/') || models_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        c.err(
            at("models_path"),
            format!("\"{models_path}\" must be a path starting with /"),
        );
    }
    // An empty value means "direct", so `proxy = "${HTTPS_PROXY:-}"` works whether the
    // variable is set or not.
    let proxy = p.proxy.filter(|u| !u.trim().is_empty()).and_then(|u| {
        ProxyUrl::parse(u.trim())
            .map_err(|m| c.err(at("proxy"), m))
            .ok()
    });
    ProviderConfig {
        kind,
        family: preset.family,
        stream_usage: p.stream_usage.unwrap_or(preset.stream_usage),
        forward_headers,
        base_url,
        chat_path,
        auth,
        headers,
        ca_file,
        connect_timeout: c.duration(
            &at("connect_timeout"),
            p.connect_timeout,
            defaults::CONNECT_TIMEOUT,
            Duration::from_millis(1),
        ),
        first_byte_timeout: c.duration(
            &at("first_byte_timeout"),
            p.first_byte_timeout,
            defaults::FIRST_BYTE_TIMEOUT,
            Duration::from_millis(1),
        ),
        idle_timeout: c.duration(
            &at("idle_timeout"),
            p.idle_timeout,
            defaults::UPSTREAM_IDLE_TIMEOUT,
            Duration::from_millis(1),
        ),
        total_timeout: c.duration(
            &at("total_timeout"),
            p.total_timeout,
            defaults::TOTAL_TIMEOUT,
            Duration::from_millis(1),
        ),
        pool_max_idle: c.int(
            &at("pool_max_idle"),
            p.pool_max_idle,
            defaults::POOL_MAX_IDLE,
            0,
            65536,
        ),
        pool_idle_timeout: c.duration(
            &at("pool_idle_timeout"),
            p.pool_idle_timeout,
            defaults::POOL_IDLE_TIMEOUT,
            Duration::from_millis(1),
        ),
        models_path,
        proxy,
        id,
    }
}

fn build_channel(
    c: &mut Checker,
    i: usize,
    ch: raw::Channel,
    providers: &[ProviderConfig],
    ids: &mut HashSet<String>,
    discovery_on: bool,
) -> Option<ChannelConfig> {
    let at = |k: &str| format!("channels[{i}].{k}");
    let before = c.problems.len();
    let id = match ch.id {
        None => {
            c.err(
                at("id"),
                "required key is missing; give each channel a unique id",
            );
            String::new()
        }
        Some(id) if !valid_id(&id) => {
            c.err(
                at("id"),
                format!("\"{id}\": ids are 1-64 letters, digits, '.', '_' or '-'"),
            );
            id
        }
        Some(id) => {
            if !ids.insert(id.clone()) {
                c.err(
                    at("id"),
                    format!("\"{id}\" is used by another channel; ids must be unique"),
                );
            }
            id
        }
    };
    let provider = match ch.provider {
        None => {
            c.err(
                at("provider"),
                "required key is missing; name a [providers.ID] table",
            );
            None
        }
        Some(p) => match providers.iter().position(|x| x.id == p) {
            Some(idx) => Some(idx),
            None => {
                let known: Vec<&str> = providers.iter().map(|x| x.id.as_str()).collect();
                let hint = match closest(&p, &known) {
                    Some(k) => format!("did you mean \"{k}\"?"),
                    None if known.is_empty() => "add a [providers.ID] table".to_string(),
                    None => format!("defined providers: {}", known.join(", ")),
                };
                c.err(at("provider"), format!("no provider \"{p}\"; {hint}"));
                None
            }
        },
    };
    let api_key = ch.api_key.unwrap_or_default();
    if api_key.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        c.err(at("api_key"), "must not contain CR, LF or NUL");
    }
    let base_url = ch.base_url.and_then(|u| {
        BaseUrl::parse(&u)
            .map_err(|m| c.err(at("base_url"), m))
            .ok()
    });
    let models = ch.models.unwrap_or_default();
    if models.is_empty() && !(discovery_on && ch.discover.unwrap_or(true)) {
        c.err(
            at("models"),
            "list the models this channel serves, e.g. models = [\"gpt-4o-mini\"] (or leave discovery on to fetch them)",
        );
    }
    let mut seen = HashSet::new();
    for (j, m) in models.iter().enumerate() {
        if let Err(msg) = check_model_id(m) {
            c.err(format!("channels[{i}].models[{j}]"), msg);
        } else if !seen.insert(m.as_str()) {
            c.err(
                format!("channels[{i}].models[{j}]"),
                format!("\"{m}\" is listed twice"),
            );
        }
    }
    let aliases: Vec<(String, String)> = ch.aliases.unwrap_or_default().into_iter().collect();
    for (name, target) in &aliases {
        if let Err(msg) = check_model_id(name).and(check_model_id(target)) {
            c.err(at(&format!("aliases.{name}")), msg);
        }
    }
    let weight = ch.weight.unwrap_or(defaults::WEIGHT);
    if !(weight.is_finite() && weight > 0.0) {
        c.err(
            at("weight"),
            format!("must be a positive number, got {weight}"),
        );
    }
    let priority = match ch.priority {
        None => defaults::PRIORITY,
        Some(p) if (-1_000_000..=1_000_000).contains(&p) => p as i32,
        Some(p) => {
            c.err(
                at("priority"),
                format!("must be between -1000000 and 1000000, got {p}"),
            );
            0
        }
    };
    let tags: Vec<String> = ch
        .tags
        .unwrap_or_default()
        .into_iter()
        .map(|t| t.to_ascii_lowercase())
        .collect();
    let pricing = ch.pricing.and_then(|p| build_price(c, &at("pricing"), p));
    let mut model_info = Vec::new();
    for (m, info) in ch.model_info.unwrap_or_default() {
        let path = format!("channels[{i}].model_info.\"{m}\"");
        if !models.contains(&m) && !aliases.iter().any(|(_, t)| *t == m) {
            c.err(
                &path,
                format!("\"{m}\" is not one of this channel's models; list it in models first"),
            );
        }
        model_info.push((m, build_model_info(c, &path, info)));
    }
    let min_request_interval = c.duration(
        &at("min_request_interval"),
        ch.min_request_interval,
        Duration::ZERO,
        Duration::ZERO,
    );
    let max_concurrent = match ch.max_concurrent {
        None => None,
        Some(n) if (1..=1_000_000).contains(&n) => Some(n as u32),
        Some(n) => {
            c.err(
                at("max_concurrent"),
                format!("must be between 1 and 1000000, got {n}"),
            );
            None
        }
    };
    let limit = |c: &mut Checker, key: &str, v: Option<i64>| match v {
        None => None,
        Some(n) if n > 0 => Some(n as u64),
        Some(n) => {
            c.err(at(key), format!("must be a positive integer, got {n}"));
            None
        }
    };
    let limits = DailyLimits {
        requests: limit(c, "daily_request_limit", ch.daily_request_limit),
        tokens: limit(c, "daily_token_limit", ch.daily_token_limit),
        budget: match ch.daily_budget {
            None => None,
            Some(b) if b.is_finite() && b >= 0.0 => Some(b),
            Some(b) => {
                c.err(
                    at("daily_budget"),
                    format!("must be a non-negative number (in the [pricing] currency), got {b}"),
                );
                None
            }
        },
    };
    let rate = rate_spec(&mut |key, m| c.err(at(key), m), ch.rps, ch.rpm, ch.tpm);
    let mut extra_body = String::new();
    for (k, v) in ch.extra_body.unwrap_or_default() {
        if matches!(k.as_str(), "model" | "messages" | "stream") {
            c.err(
                at(&format!("extra_body.{k}")),
                "the gateway sets this field itself; remove it",
            );
            continue;
        }
        let mut out = Vec::new();
        crate::json::write_str(&mut out, &k);
        out.push(b':');
        toml_to_json(&v, &mut out);
        out.push(b',');
        extra_body.push_str(&String::from_utf8_lossy(&out));
    }
    if c.problems.len() != before {
        return None;
    }
    Some(ChannelConfig {
        limits,
        rate,
        extra_body,
        strip_think: ch.strip_think.unwrap_or(false),
        id,
        provider: provider?,
        api_key: Secret::new(api_key),
        base_url,
        models,
        aliases,
        tags,
        priority,
        weight,
        enabled: ch.enabled.unwrap_or(true),
        pricing,
        model_info,
        min_request_interval,
        max_concurrent,
        discover: ch.discover.unwrap_or(true),
    })
}

fn check_model_id(m: &str) -> Result<(), String> {
    if m.is_empty() || m.len() > 256 {
        return Err("model ids are 1-256 characters".into());
    }
    if m.chars().any(|c| c.is_control()) {
        return Err(format!(
            "\"{}\" contains control characters",
            m.escape_debug()
        ));
    }
    Ok(())
}

/// Validates `[cluster]`.
fn build_cluster(c: &mut Checker, raw: raw::Cluster, server: &ServerConfig) -> ClusterConfig {
    let redis = raw.redis.unwrap_or_default();
    if redis.is_empty() {
        c.err(
            "cluster.redis",
            "required: the Redis URL, e.g. \"redis://127.0.0.1:6379/0\" or \"${REDIS_URL}\"",
        );
    } else if ![
        "redis://",
        "rediss://",
        "redis+unix://",
        "unix://",
        "redis+sentinel://",
        "rediss+sentinel://",
        "redis+cluster://",
        "rediss+cluster://",
    ]
    .iter()
    .any(|s| redis.starts_with(s))
    {
        c.err(
            "cluster.redis",
            "use a redis://, rediss:// (TLS), redis+unix://, redis+sentinel://host:26379,…/service or redis+cluster://host:port,… URL",
        );
    } else if let Err(e) = crate::cluster::helper::Target::parse(&redis) {
        // Never repeats the URL (it may hold a password).
        c.err("cluster.redis", e);
    }
    let instance_id = match raw.instance_id {
        Some(id) => {
            if id.is_empty()
                || id.len() > 128
                || id.bytes().any(|b| {
                    b.is_ascii_whitespace() || b.is_ascii_control() || b"|{}@".contains(&b)
                })
            {
                c.err(
                    "cluster.instance_id",
                    "1-128 characters without spaces, control characters, '|', '@', '{' or '}'",
                );
            }
            id
        }
        None => format!("{}:{}", hostname(), server.listen.port()),
    };
    let prefix = raw
        .prefix
        .unwrap_or_else(|| defaults::CLUSTER_PREFIX.into());
    if !valid_id(&prefix) {
        c.err("cluster.prefix", "1-64 letters, digits, '.', '_' or '-'");
    }
    let sync_interval = c.duration(
        "cluster.sync_interval",
        raw.sync_interval,
        defaults::CLUSTER_SYNC,
        Duration::from_millis(10),
    );
    if sync_interval > Duration::from_secs(10) {
        c.err(
            "cluster.sync_interval",
            "at most 10s: shared cooldowns and limits lag by it",
        );
    }
    ClusterConfig {
        redis: Secret::new(redis),
        instance_id,
        sync_interval,
        prefix,
    }
}

/// The machine's host name (the kernel's), for the default instance id.
fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
        .replace(|c: char| c.is_ascii_whitespace() || "|{}@".contains(c), "-")
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// An HTTP token (header names).
pub fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Renders a TOML value as JSON (datetimes as strings).
fn toml_to_json(v: &toml::Value, out: &mut Vec<u8>) {
    match v {
        toml::Value::String(s) => crate::json::write_str(out, s),
        toml::Value::Integer(i) => out.extend_from_slice(i.to_string().as_bytes()),
        toml::Value::Float(f) if f.is_finite() => {
            out.extend_from_slice(format!("{f:?}").as_bytes())
        }
        toml::Value::Float(_) => out.extend_from_slice(b"null"),
        toml::Value::Boolean(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        toml::Value::Datetime(d) => crate::json::write_str(out, &d.to_string()),
        toml::Value::Array(a) => {
            out.push(b'[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                toml_to_json(x, out);
            }
            out.push(b']');
        }
        toml::Value::Table(t) => {
            out.push(b'{');
            for (i, (k, x)) in t.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                crate::json::write_str(out, k);
                out.push(b':');
                toml_to_json(x, out);
            }
            out.push(b'}');
        }
    }
}

fn is_managed_header(name: &str) -> bool {
    const MANAGED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "x-api-key",
        "api-key",
        "accept-encoding",
    ];
    MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

/// Model ids served by at least one enabled channel, de-duplicated, in first-seen order, with
/// the id of the provider that first offers it. Used for `/v1/models`.
pub fn model_owners(cfg: &Config) -> Vec<(String, String)> {
    let mut seen = BTreeMap::new();
    let mut out = Vec::new();
    for ch in cfg.channels.iter().filter(|c| c.enabled) {
        let owner = &cfg.providers[ch.provider].id;
        let names = ch.models.iter().chain(ch.aliases.iter().map(|(a, _)| a));
        for m in names {
            if seen.insert(m.clone(), ()).is_none() {
                out.push((m.clone(), owner.clone()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        }
    }

    fn problems(text: &str) -> Vec<Problem> {
        Config::parse(text, &env(&[])).unwrap_err().problems
    }

    const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:7601"
workers = 2                      # 0 = one per CPU in the affinity mask

[providers.up]
kind = "openai"                  # wire family or preset: openai, anthropic, gemini, azure, openrouter, groq, ollama, …
base_url = "http://127.0.0.1:9000/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-test"              # or "${OPENAI_API_KEY}"
models = ["gpt-4o-mini", "gpt-4o"]   # optional once discovery runs
"#;

    #[test]
    fn minimal_design_file_parses_exactly_as_written() {
        let c = Config::parse(MINIMAL, &env(&[])).unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:7601".parse().unwrap());
        assert_eq!(c.server.workers, 2);
        assert_eq!(c.providers.len(), 1);
        assert_eq!(c.providers[0].chat_path, "/chat/completions");
        let ch = &c.channels[0];
        assert_eq!(ch.id, "up-1");
        assert_eq!(ch.api_key.expose(), "sk-test");
        assert_eq!(ch.models, ["gpt-4o-mini", "gpt-4o"]);
        assert_eq!(c.channel_base_url(ch).unwrap().path, "/v1");
    }

    #[test]
    fn unknown_keys_name_the_path_and_suggest() {
        let p = problems("[server]\nlistn = \"127.0.0.1:1\"\n");
        assert_eq!(p[0].path, "server.listn");
        assert!(p[0].message.contains("did you mean `listen`"), "{p:?}");
        let p = problems("[providers.a]\nbase_url=\"http://x\"\nkindd=\"openai\"\n");
        assert_eq!(p[0].path, "providers.a.kindd");
        assert!(p[0].message.contains("`kind`"), "{p:?}");
        let p = problems("[[channels]]\nid=\"a\"\nprovder=\"x\"\n");
        assert_eq!(p[0].path, "channels[0].provder");
        let p = problems("[sever]\n");
        assert_eq!(p[0].path, "sever");
        assert!(p[0].message.contains("`server`"), "{p:?}");
    }

    #[test]
    fn forward_headers_take_names_and_prefixes_but_never_credentials() {
        let base = "[providers.a]\nkind = \"anthropic\"\nbase_url = \"http://x/v1\"\n";
        let c = Config::parse(
            &format!("{base}forward_headers = [\"Anthropic-Beta\", \"x-stainless-*\"]\n"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            c.providers[0].forward_headers,
            ["anthropic-beta", "x-stainless-*"]
        );
        let p = problems(&format!(
            "{base}forward_headers = [\"Authorization\", \"x-api-key\", \"bad header\", \"x-router-*\"]\n"
        ));
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers.a.forward_headers[0]",
                "providers.a.forward_headers[1]",
                "providers.a.forward_headers[2]",
                "providers.a.forward_headers[3]"
            ],
            "{p:?}"
        );
        assert!(p[0].message.contains("never forwarded"), "{p:?}");
    }

    #[test]
    fn a_syntax_error_names_the_place_but_never_quotes_the_line() {
        let p = problems("[[channels]]\nid = \"a\"\napi_key = \"sk-live-SECRET123 \n");
        let text = format!("{p:?}");
        assert!(text.contains("line 3"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
    }

    #[test]
    fn bad_values_are_all_reported_with_paths() {
        let p = problems(
            r#"
[server]
workers = -1
tick = 50
max_body = "lots"
driver = "fast"
[providers.a]
kind = "opena"
base_url = "ftp://x"
[[channels]]
id = "c"
provider = "b"
models = []
discover = false
"#,
        );
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "server.workers",
            "server.tick",
            "server.max_body",
            "server.driver",
            "providers.a.kind",
            "providers.a.base_url",
            "channels[0].provider",
            "channels[0].models",
        ] {
            assert!(paths.contains(&want), "missing {want} in {p:#?}");
        }
        let tick = p.iter().find(|p| p.path == "server.tick").unwrap();
        assert!(tick.message.contains("\"50s\""), "{tick:?}");
        let kind = p.iter().find(|p| p.path == "providers.a.kind").unwrap();
        assert!(kind.message.contains("did you mean \"openai\""), "{kind:?}");
    }

    #[test]
    fn env_vars_expand_with_defaults_and_missing_ones_name_the_key() {
        let text = r#"
[providers.up]
base_url = "${UP_URL:-http://127.0.0.1:9/v1}"
[[channels]]
id = "c"
provider = "up"
api_key = "${KEY}"
models = ["m"]
"#;
        let c = Config::parse(text, &env(&[("KEY", "sk-1")])).unwrap();
        assert_eq!(c.channels[0].api_key.expose(), "sk-1");
        assert_eq!(c.providers[0].base_url.as_ref().unwrap().port, 9);
        let p = problems(text);
        assert_eq!(p[0].path, "channels[0].api_key");
        assert!(p[0].message.contains("KEY is not set"), "{p:?}");
        assert_eq!(expand_vars("$${X}", &env(&[])).unwrap().unwrap(), "${X}");
    }

    #[test]
    fn duplicate_channel_ids_and_header_injection_are_rejected() {
        let p = problems(
            r#"
[providers.up]
base_url = "http://127.0.0.1:9"
headers = { "X-Ok" = "a\r\nInjected: 1", "Authorization" = "x" }
[[channels]]
id = "c"
provider = "up"
models = ["m"]
[[channels]]
id = "c"
provider = "up"
models = ["m"]
"#,
        );
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"providers.up.headers.X-Ok"), "{p:#?}");
        assert!(
            paths.contains(&"providers.up.headers.Authorization"),
            "{p:#?}"
        );
        assert!(paths.contains(&"channels[1].id"), "{p:#?}");
    }

    #[test]
    fn native_kinds_bring_their_family_path_and_auth() {
        let c = Config::parse(
            "[providers.a]\nkind = \"anthropic\"\n[providers.g]\nkind = \"gemini\"\n[[channels]]\nid=\"a\"\nprovider=\"a\"\nmodels=[\"m\"]\n[[channels]]\nid=\"g\"\nprovider=\"g\"\nmodels=[\"m\"]\n",
            &env(&[]),
        )
        .unwrap();
        let a = c.providers.iter().find(|p| p.id == "a").unwrap();
        assert_eq!(a.family, presets::Family::Anthropic);
        assert_eq!(a.chat_path, "/messages");
        assert_eq!(a.auth, AuthStyle::XApiKey);
        assert!(
            a.headers
                .iter()
                .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01")
        );
        let g = c.providers.iter().find(|p| p.id == "g").unwrap();
        assert_eq!(g.family, presets::Family::Gemini);
        assert_eq!(g.chat_path, "/models/{model}:generateContent");
        assert_eq!(g.auth, AuthStyle::GoogApiKey);
        assert_eq!(g.models_path, "/models?pageSize=1000");
    }

    #[test]
    fn presets_fill_base_url_and_auth() {
        let c = Config::parse(
            "[providers.g]\nkind = \"groq\"\n[providers.z]\nkind=\"azure\"\nbase_url=\"https://r.openai.azure.com/openai/deployments/d\"\n[[channels]]\nid=\"g\"\nprovider=\"g\"\nmodels=[\"m\"]\n",
            &env(&[]),
        )
        .unwrap();
        let g = c.providers.iter().find(|p| p.id == "g").unwrap();
        assert_eq!(
            g.base_url.as_ref().unwrap().to_url(),
            "https://api.groq.com/openai/v1"
        );
        let z = c.providers.iter().find(|p| p.id == "z").unwrap();
        assert_eq!(z.auth, AuthStyle::ApiKey);
    }

    #[test]
    fn environment_mode_uses_well_known_keys() {
        assert!(Config::from_environment(&env(&[])).is_none());
        let c = Config::from_environment(&env(&[
            ("OPENAI_API_KEY", "sk-a"),
            ("GROQ_API_KEY", "gsk-b"),
        ]))
        .unwrap();
        assert_eq!(
            c.source,
            Source::Environment(vec!["OPENAI_API_KEY".into(), "GROQ_API_KEY".into()])
        );
        assert_eq!(c.channels.len(), 2);
        assert!(c.channels[0].models.iter().any(|m| m == "gpt-4o-mini"));
        assert_eq!(c.channels[1].api_key.expose(), "gsk-b");
        // a key that could inject headers upstream is ignored
        let c = Config::from_environment(&env(&[
            ("OPENAI_API_KEY", "sk-a\r\nX-Injected: yes"),
            ("GROQ_API_KEY", "gsk-b"),
        ]))
        .unwrap();
        assert_eq!(c.channels.len(), 1);
        assert_eq!(c.channels[0].id, "groq");
    }

    #[test]
    fn a_file_without_channels_adopts_the_environments() {
        let text = "[server]\nlisten = \"${LISTEN:-127.0.0.1:7611}\"\n[admin]\n";
        let mut c = Config::parse(text, &env(&[])).unwrap();
        assert!(c.declares_no_channels());
        c.adopt_channels(Config::from_environment(&env(&[("GROQ_API_KEY", "gsk-b")])).unwrap());
        assert!(!c.declares_no_channels());
        assert_eq!(c.channels[0].id, "groq");
        assert_eq!(c.providers[c.channels[0].provider].id, "groq");
        // the file's own settings and source stay
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:7611");
        assert!(c.admin.is_some());
        assert_eq!(c.source, Source::Inline);
        let demo = Config::demo("127.0.0.1:9".parse().unwrap(), &["m"]);
        c.adopt_channels(demo);
        assert_eq!((c.channels.len(), c.channels[0].id.as_str()), (1, "demo"));
        // a provider alone is a declaration: the file keeps it as written
        let c = Config::parse("[providers.up]\nkind = \"openai\"\n", &env(&[])).unwrap();
        assert!(!c.declares_no_channels());
    }

    #[test]
    fn closest_is_bounded_and_finds_typos() {
        assert_eq!(closest("listn", &["listen", "workers"]), Some("listen"));
        assert_eq!(
            closest("gpt-4o-mnii", &["gpt-4o-mini", "gpt-4o"]),
            Some("gpt-4o-mini")
        );
        assert_eq!(closest("zzzzzz", &["listen"]), None);
        let huge = "x".repeat(1 << 20);
        assert_eq!(closest(&huge, &["x"]), None);
        let many: Vec<String> = (0..20_000).map(|i| format!("model-{i}")).collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        assert_eq!(closest("model-1234x", &refs), Some("model-1234"));
    }

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

    #[test]
    fn provider_proxy_is_validated_at_its_key_path() {
        let with = |proxy: &str| {
            MINIMAL.replace(
                "base_url = \"http://127.0.0.1:9000/v1\"",
                &format!("base_url = \"http://127.0.0.1:9000/v1\"\nproxy = \"{proxy}\""),
            )
        };
        let c = Config::parse(&with("socks5://u:secret-pw@127.0.0.1:1080"), &env(&[])).unwrap();
        let px = c.providers[0].proxy.as_ref().unwrap();
        assert_eq!((px.kind, px.port), (ProxyKind::Socks5, 1080));
        assert!(!format!("{c:?}").contains("secret-pw"));
        assert!(c.summary().contains("via socks5://***@127.0.0.1:1080"));
        assert!(!c.summary().contains("secret-pw"));
        // empty: direct (so an unset `${VAR:-}` turns the proxy off)
        let c = Config::parse(&with(""), &env(&[])).unwrap();
        assert!(c.providers[0].proxy.is_none());
        let p = problems(&with("ftp://u:secret-pw@h:21"));
        assert_eq!(p[0].path, "providers.up.proxy");
        assert!(!p[0].message.contains("secret-pw"), "{p:?}");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
        let c = Config::parse(MINIMAL, &env(&[])).unwrap();
        assert!(!format!("{c:?}").contains("sk-test"));
        assert!(!c.summary().contains("sk-test"));
    }

    fn pricing(table: &str) -> Result<PricingConfig, Vec<Problem>> {
        let text = format!("{MINIMAL}\n[pricing]\n{table}\n");
        Config::parse(&text, &env(&[]))
            .map(|c| c.pricing)
            .map_err(|e| e.problems)
    }

    #[test]
    fn pricing_rates_budget_and_the_older_fx_spelling() {
        let p = pricing("").unwrap();
        assert_eq!(
            (p.currency.as_str(), p.rates.clone(), p.daily_budget),
            ("USD", vec![("USD".to_string(), 1.0)], None)
        );
        let p = pricing("currency = \"cny\"\nrates = { CNY = 7.1, eur = 0.92 }\ndaily_budget = 50")
            .unwrap();
        assert_eq!(p.currency, "CNY");
        assert_eq!(p.rate("cny"), Some(7.1));
        assert_eq!(p.rate("EUR"), Some(0.92));
        assert_eq!(p.rate("USD"), Some(1.0));
        assert_eq!(p.rate("GBP"), None);
        assert_eq!(p.daily_budget, Some(50.0));
        assert!((p.daily_budget_usd().unwrap() - 50.0 / 7.1).abs() < 1e-12);
        assert!((p.from_usd(2.0) - 14.2).abs() < 1e-12);
        assert!((p.to_usd(0.92, "EUR").unwrap() - 1.0).abs() < 1e-12);
        // fx (one unit is worth this much of `currency`) still works, as rates per USD
        let p = pricing("fx = { CNY = 0.125 }").unwrap();
        assert_eq!(p.rate("CNY"), Some(8.0));
        let p = pricing("currency = \"CNY\"\nfx = { USD = 7.0, EUR = 7.7 }").unwrap();
        assert_eq!(p.rate("CNY"), Some(7.0));
        assert!((p.rate("EUR").unwrap() - 7.0 / 7.7).abs() < 1e-12);
        assert_eq!(p.from_usd(1.0), 7.0);
        // a price in a currency with a rate is accepted, its cache-write price kept
        let text = format!(
            "{MINIMAL}pricing = {{ input = 1, output = 2, cache_write = 1.25, currency = \"eur\" }}\n[pricing]\nrates = {{ EUR = 0.9 }}\n"
        );
        let c = Config::parse(&text, &env(&[])).unwrap();
        let price = c.channels[0].pricing.as_ref().unwrap();
        assert_eq!(
            (price.cache_write, price.currency.as_str()),
            (Some(1.25), "EUR")
        );
    }

    fn cluster(table: &str) -> Result<Option<ClusterConfig>, Vec<Problem>> {
        let text = format!("{MINIMAL}\n{table}\n");
        Config::parse(
            &text,
            &env(&[("REDIS_URL", "redis://:s3cret@10.0.0.5:6379/2")]),
        )
        .map(|c| c.cluster)
        .map_err(|e| e.problems)
    }

    #[test]
    fn cluster_defaults_env_urls_and_a_password_never_shown() {
        assert_eq!(cluster("").unwrap(), None, "alone without [cluster]");
        let c = cluster("[cluster]\nredis = \"${REDIS_URL}\"")
            .unwrap()
            .expect("cluster on");
        assert_eq!(c.sync_interval, Duration::from_millis(100));
        assert_eq!(c.prefix, "sar");
        assert!(c.instance_id.ends_with(":7601"), "{}", c.instance_id);
        assert_eq!(c.redis.expose(), "redis://:s3cret@10.0.0.5:6379/2");
        assert_eq!(c.redis_shown(), "redis://:***@10.0.0.5:6379/2");
        assert!(!format!("{c:?}").contains("s3cret"));
        let c = cluster(
            "[cluster]\nredis = \"rediss://u:p@r.example:6380\"\ninstance_id = \"gw-2\"\n\
             sync_interval = \"250ms\"\nprefix = \"prod-eu\"",
        )
        .unwrap()
        .expect("cluster on");
        assert_eq!(
            (c.instance_id.as_str(), c.sync_interval, c.prefix.as_str()),
            ("gw-2", Duration::from_millis(250), "prod-eu")
        );
        assert_eq!(c.redis_shown(), "rediss://u:***@r.example:6380");
        let c = cluster("[cluster]\nredis = \"redis+unix:///run/redis.sock?db=1&pass=s3cret\"")
            .unwrap()
            .expect("cluster on");
        assert_eq!(c.redis_shown(), "redis+unix:///run/redis.sock?***");
    }

    #[test]
    fn cluster_problems_name_their_keys() {
        let paths = |table: &str| -> Vec<String> {
            cluster(table)
                .unwrap_err()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert_eq!(paths("[cluster]"), ["cluster.redis"]);
        assert_eq!(paths("[cluster]\nredis = \"http://x\""), ["cluster.redis"]);
        assert_eq!(
            paths("[cluster]\nredis = \"redis://[::1\""),
            ["cluster.redis"]
        );
        assert_eq!(
            paths("[cluster]\nredis = \"redis+sentinel://s1:26379\""),
            ["cluster.redis"],
            "a sentinel URL names the service"
        );
        assert_eq!(
            paths("[cluster]\nredis = \"redis+cluster://\""),
            ["cluster.redis"]
        );
        for ok in [
            "redis+sentinel://:pw@s1:26379,s2:26379/mymaster/2",
            "rediss+sentinel://s1:26379/mymaster",
            "redis+cluster://n1:7000,n2:7001",
            "rediss+cluster://u:pw@n1:7000",
        ] {
            assert!(
                cluster(&format!("[cluster]\nredis = \"{ok}\"")).is_ok(),
                "{ok}"
            );
        }
        let url = "redis = \"redis://127.0.0.1\"";
        assert_eq!(
            paths(&format!("[cluster]\n{url}\ninstance_id = \"a b\"")),
            ["cluster.instance_id"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\ninstance_id = \"{{x}}\"")),
            ["cluster.instance_id"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nsync_interval = \"1ms\"")),
            ["cluster.sync_interval"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nsync_interval = \"1m\"")),
            ["cluster.sync_interval"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nprefix = \"a:b\"")),
            ["cluster.prefix"]
        );
        assert_eq!(
            paths(&format!("[cluster]\n{url}\nhosts = 1")),
            ["cluster.hosts"]
        );
    }

    #[test]
    fn pricing_problems_name_their_keys() {
        let paths = |table: &str| -> Vec<String> {
            pricing(table)
                .unwrap_err()
                .into_iter()
                .map(|p| p.path)
                .collect()
        };
        assert_eq!(paths("rates = { CNY = -7 }"), ["pricing.rates.CNY"]);
        assert_eq!(paths("rates = { CNY = nan }"), ["pricing.rates.CNY"]);
        assert_eq!(paths("rates = { \"C1\" = 7 }"), ["pricing.rates.C1"]);
        assert_eq!(paths("rates = { USD = 2 }"), ["pricing.rates.USD"]);
        assert_eq!(paths("rates = { CNY = 7, cny = 7 }"), ["pricing.rates.cny"]);
        assert_eq!(paths("daily_budget = -1"), ["pricing.daily_budget"]);
        assert_eq!(paths("daily_budget = inf"), ["pricing.daily_budget"]);
        assert_eq!(paths("currency = \"US$\""), ["pricing.currency"]);
        // the reporting currency needs a way to USD
        let p = pricing("currency = \"EUR\"").unwrap_err();
        assert_eq!(p[0].path, "pricing.currency");
        assert!(p[0].message.contains("rates = { EUR ="), "{p:?}");
        assert_eq!(
            paths("currency = \"EUR\"\nfx = { CNY = 0.13 }"),
            ["pricing.fx", "pricing.currency"]
        );
        assert_eq!(paths("fx = { CNY = 0 }"), ["pricing.fx.CNY"]);
        assert_eq!(paths("fx = { USD = 2 }"), ["pricing.fx.USD"]);
        assert_eq!(
            paths("rates = { CNY = 7 }\nfx = { CNY = 0.14 }"),
            ["pricing.fx", "pricing.fx.CNY"]
        );
        let p = pricing("budget = 1").unwrap_err();
        assert_eq!(p[0].path, "pricing.budget");
        assert!(p[0].message.contains("daily_budget"), "{p:?}");
        // prices: a currency without a rate, and cache-write prices, name the key
        let p = problems(&format!(
            "{MINIMAL}model_info = {{ \"gpt-4o\" = {{ pricing = {{ input = 1, output = 2, cache_write = -1 }} }} }}\n"
        ));
        assert_eq!(
            p[0].path,
            "channels[0].model_info.\"gpt-4o\".pricing.cache_write"
        );
        let p = problems(&format!(
            "{MINIMAL}pricing = {{ input = 1, output = 2, currency = \"EUR\" }}\n"
        ));
        assert_eq!(p[0].path, "channels[0].pricing.currency");
        assert!(p[0].message.contains("rates = { EUR = "), "{p:?}");
    }
}
