//! The validated configuration's parts: one type per table (`[server]` → [`ServerConfig`], …),
//! each holding only checked values (`Duration`, `SocketAddr`, [`BaseUrl`], [`Secret`]) and the
//! defaults already applied. [`Config`](super::Config) holds them all.
//!
//! Invariants: a value of these types came out of `validate` (or a config-less mode in
//! `super`), so the rest of the program never re-checks it. Not here: parsing or validation
//! (`raw`, `validate`), defaults (`defaults`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{BaseUrl, ProxyUrl};
use crate::presets::{self, AuthStyle};
use crate::secret::Secret;

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
    pub(crate) fn any(&self) -> bool {
        self.rps.is_some() || self.rpm.is_some() || self.tpm.is_some()
    }
}

/// `[server]`: the client API listener, its workers and driver, request limits and timeouts,
/// CORS, HTTPS files and DNS refresh.
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
    /// Largest non-streamed 2xx answer parsed as JSON before the client sees a byte (an
    /// invalid one fails over); larger ones are relayed unvalidated.
    pub max_validated_body: usize,
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
    /// Which browser origins may call the API (`cors_origins`).
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

/// `[providers.ID]`: one upstream API — its wire family, where it is, how it authenticates,
/// its timeouts, pool and outbound proxy.
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
    /// Whether the provider serves the Responses API itself (`/responses` is then passed
    /// through; otherwise it is translated to chat completions).
    pub responses: bool,
    /// `on_unsupported = "drop"`: a request field this provider's family cannot express
    /// (`logprobs`, `n` > 1, …; README "Field fidelity") is dropped for its channels, which
    /// stay candidates; `"error"` (the default) keeps such requests away from them.
    pub drop_unsupported: bool,
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
    /// Deadline for the whole exchange, request sent to last byte received.
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

/// `[discovery]`: fetching each channel's model list from its provider.
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
    /// How often channels out of rotation are probed.
    pub interval: Duration,
    /// How long one probe may take.
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
    pub(crate) fn redis_shown(&self) -> String {
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
    /// The key's `rps`, `rpm` and `tpm`.
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
    /// Address of the admin listener (loopback by default).
    pub listen: SocketAddr,
    /// Bearer token (none: loopback only).
    pub token: Option<Secret>,
}

/// Prices per 1M tokens in `currency`.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    /// Per 1M prompt tokens.
    pub input: f64,
    /// Per 1M completion tokens.
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
    pub(crate) fn per_million(&self) -> crate::pricing::Price {
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
    /// Accepts images in messages.
    pub vision: Option<bool>,
    /// Supports tool calls.
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
    /// Index into [`Config::providers`](super::Config::providers).
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

/// How long channels cool down after failures (DESIGN.md §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CooldownPolicy {
    /// First backoff after a transient failure; doubles per consecutive failure.
    pub base: Duration,
    /// Longest backoff, however many failures in a row.
    pub max: Duration,
    /// Longest `Retry-After` honoured.
    pub retry_after_max: Duration,
    /// How long a channel stays out after a 401/403.
    pub auth: Duration,
    /// How long a (channel, model) stays out after a 404 naming the model.
    pub model_missing: Duration,
}

/// `[routing]`: how many candidates a request tries, ties, and cooldowns after failures.
#[derive(Debug, Clone)]
pub struct RoutingConfig {
    /// Candidates tried per request.
    pub max_attempts: usize,
    /// Strategy when the request names none.
    pub default_strategy: String,
    /// Scores this close are tied and spread by weight.
    pub tie_epsilon: f32,
    /// How long channels stay out after each kind of failure.
    pub cooldown: CooldownPolicy,
    /// When every candidate is out only for a transient reason (DESIGN §6).
    pub panic: PanicPolicy,
    /// Retries on the last candidate left after a connect refusal, a reset before the request
    /// was sent, or a 502/503 (never after a timeout or a 504).
    pub same_channel_retries: usize,
    /// The backoff before such a retry (full jitter: uniform in [0, backoff]).
    pub retry_backoff: Duration,
    /// How far a prompt estimate may exceed the largest context before the gateway answers
    /// 400 `context_length_exceeded` itself (a fraction: 0.1 = 10 %).
    pub context_margin: f32,
}

/// `[routing] panic_*`: Envoy's healthy-panic threshold for one channel list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PanicPolicy {
    /// On (`panic_routing`).
    pub enabled: bool,
    /// Panic attempts in flight per channel per worker.
    pub max_in_flight: u32,
    /// How long a request over that cap waits for a slot.
    pub wait: Duration,
}

/// `[strategies.NAME]`: a user-defined weight vector.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategyConfig {
    /// The table name, as requests and groups name the strategy.
    pub name: String,
    /// The sub-score weights (unset ones are 0).
    pub weights: crate::strategy::Weights,
}

/// `[groups."auto:NAME"]`: a name for a model expression, with its strategy and filters.
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
    /// Most spend per day, in `currency` (none: no budget); once spent, requests answer 429
    /// until 00:00 UTC (the control thread's ledger judges it).
    pub daily_budget: Option<f64>,
}

impl PricingConfig {
    /// Units of `code` per 1 USD (case-insensitive), if known.
    pub(crate) fn rate(&self, code: &str) -> Option<f64> {
        self.rates
            .iter()
            .find(|(c, _)| c.eq_ignore_ascii_case(code))
            .map(|(_, r)| *r)
    }

    /// `amount` of `code` in USD, if the rate is known.
    pub(crate) fn to_usd(&self, amount: f64, code: &str) -> Option<f64> {
        self.rate(code).map(|r| amount / r)
    }

    /// `usd` in the reporting currency.
    #[allow(clippy::wrong_self_convention)] // "from USD" into `currency`, not a constructor
    pub(crate) fn from_usd(&self, usd: f64) -> f64 {
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

/// `[log]`: how the gateway logs.
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Text (`logfmt`) or JSON lines.
    pub format: LogFormat,
    /// Least severe level printed.
    pub level: tracing::Level,
    /// One `access` line per request (written by the control thread from usage records).
    pub access: bool,
}

/// `[telemetry] protocol`: how spans are encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OtlpProtocol {
    /// `http/protobuf` (`application/x-protobuf`).
    Protobuf,
    /// `http/json` (`application/json`, the OTLP JSON mapping).
    Json,
}

/// `[telemetry]`: OpenTelemetry traces exported over OTLP/HTTP (present only with an
/// `otlp_endpoint`).
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// The collector (scheme, host, port); `path` is where spans are posted.
    pub endpoint: BaseUrl,
    /// `<otlp_endpoint>/v1/traces`, or the endpoint's own path when it already ends so.
    pub path: String,
    /// Wire encoding.
    pub protocol: OtlpProtocol,
    /// The resource's `service.name`.
    pub service_name: String,
    /// Share of requests without a client `traceparent` that are traced, in [0, 1].
    pub sample_ratio: f64,
    /// Headers sent with every export (collector auth): values are secrets, never logged.
    pub headers: Vec<(String, Secret)>,
    /// How often queued spans are posted.
    pub export_interval: Duration,
    /// Deadline of one export POST.
    pub timeout: Duration,
    /// Most spans queued for the next export.
    pub max_queue: usize,
    /// Put the request's messages on the server span (`gen_ai.input.messages`).
    pub capture_content: bool,
    /// gzip the export bodies.
    pub gzip: bool,
}
