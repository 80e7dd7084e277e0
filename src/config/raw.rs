//! The serde mirror of the TOML file: every table denies unknown keys, every value is optional
//! so defaults live in one place (`config::defaults`) and validation can name each key.
//!
//! Invariants: nothing here leaves `config`; no defaults, no validation, no I/O.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A size may be written as a string with units or a bare integer of bytes.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum SizeValue {
    Bytes(i64),
    Text(String),
}

/// A duration must carry a unit; the integer form exists only to give a precise error.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum DurationValue {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Root {
    #[serde(default)]
    pub server: Server,
    #[serde(default)]
    pub providers: BTreeMap<String, Provider>,
    #[serde(default)]
    pub channels: Vec<Channel>,
    #[serde(default)]
    pub routing: Routing,
    #[serde(default)]
    pub strategies: BTreeMap<String, Strategy>,
    #[serde(default)]
    pub groups: BTreeMap<String, Group>,
    #[serde(default)]
    pub pricing: Pricing,
    #[serde(default)]
    pub discovery: Discovery,
    #[serde(default)]
    pub health: Health,
    #[serde(default)]
    pub state: State,
    #[serde(default)]
    pub usage: Usage,
    pub admin: Option<Admin>,
    #[serde(default)]
    pub log: Log,
    #[serde(default)]
    pub auth: Auth,
    pub cluster: Option<Cluster>,
    pub telemetry: Option<Telemetry>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Telemetry {
    pub otlp_endpoint: Option<String>,
    pub protocol: Option<String>,
    pub service_name: Option<String>,
    pub sample_ratio: Option<f64>,
    pub headers: Option<BTreeMap<String, String>>,
    pub export_interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub max_queue: Option<i64>,
    pub capture_content: Option<bool>,
    pub compression: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Cluster {
    pub redis: Option<String>,
    pub instance_id: Option<String>,
    pub sync_interval: Option<DurationValue>,
    pub prefix: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Auth {
    pub allow_unauthenticated: Option<bool>,
    pub keys_file: Option<String>,
    #[serde(default)]
    pub keys: Vec<AuthKey>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(crate) struct AuthKey {
    pub(crate) name: String,
    pub(crate) sha256: String,
    pub(crate) expires: Option<String>,
    #[serde(default)]
    pub(crate) models: Vec<String>,
    pub(crate) rps: Option<f64>,
    pub(crate) rpm: Option<i64>,
    pub(crate) tpm: Option<i64>,
    pub(crate) daily_budget: Option<f64>,
}

/// A keys file (`[auth] keys_file`): `[[keys]]` entries shaped like `[[auth.keys]]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(crate) struct KeysFile {
    #[serde(default)]
    pub(crate) keys: Vec<AuthKey>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Usage {
    pub log: Option<bool>,
    pub retain_days: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Discovery {
    pub enabled: Option<bool>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
    pub concurrency: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Health {
    pub enabled: Option<bool>,
    pub interval: Option<DurationValue>,
    pub timeout: Option<DurationValue>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct State {
    pub dir: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Admin {
    pub enabled: Option<bool>,
    pub listen: Option<String>,
    pub token: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Server {
    pub listen: Option<String>,
    pub workers: Option<i64>,
    pub driver: Option<String>,
    pub pin_workers: Option<bool>,
    pub tick: Option<DurationValue>,
    pub max_header_bytes: Option<SizeValue>,
    pub max_headers: Option<i64>,
    pub max_body: Option<SizeValue>,
    pub max_buffered: Option<SizeValue>,
    pub max_validated_body: Option<SizeValue>,
    pub max_connections: Option<i64>,
    pub header_timeout: Option<DurationValue>,
    pub body_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
    pub drain_timeout: Option<DurationValue>,
    pub dns_refresh: Option<DurationValue>,
    pub cors_origins: Option<Vec<String>>,
    pub tls: Option<ServerTls>,
    pub hosts_file: Option<String>,
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct ServerTls {
    pub cert: Option<String>,
    pub key: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Provider {
    pub kind: Option<String>,
    pub base_url: Option<String>,
    pub chat_path: Option<String>,
    pub auth: Option<String>,
    pub headers: Option<BTreeMap<String, String>>,
    pub ca_file: Option<String>,
    pub connect_timeout: Option<DurationValue>,
    pub first_byte_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
    pub total_timeout: Option<DurationValue>,
    pub pool_max_idle: Option<i64>,
    pub pool_idle_timeout: Option<DurationValue>,
    pub models_path: Option<String>,
    pub stream_usage: Option<bool>,
    pub responses: Option<bool>,
    pub on_unsupported: Option<String>,
    pub forward_headers: Option<Vec<String>>,
    pub proxy: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Channel {
    pub id: Option<String>,
    pub provider: Option<String>,
    pub api_key: Option<String>,
    pub base_url: Option<String>,
    pub models: Option<Vec<String>>,
    pub aliases: Option<BTreeMap<String, String>>,
    pub tags: Option<Vec<String>>,
    pub priority: Option<i64>,
    pub weight: Option<f64>,
    pub enabled: Option<bool>,
    pub pricing: Option<Price>,
    pub model_info: Option<BTreeMap<String, ModelInfo>>,
    pub min_request_interval: Option<DurationValue>,
    pub max_concurrent: Option<i64>,
    pub daily_request_limit: Option<i64>,
    pub daily_token_limit: Option<i64>,
    pub daily_budget: Option<f64>,
    pub extra_body: Option<toml::Table>,
    pub strip_think: Option<bool>,
    pub discover: Option<bool>,
    pub rps: Option<f64>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
}

/// Prices per 1M tokens.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct Price {
    pub input: Option<f64>,
    pub output: Option<f64>,
    pub cached: Option<f64>,
    pub cache_write: Option<f64>,
    pub currency: Option<String>,
}

/// A number of tokens or parameters, as a number or a string with a unit.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub(super) enum Amount {
    Number(f64),
    Text(String),
}

#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct ModelInfo {
    pub context: Option<Amount>,
    pub params: Option<Amount>,
    pub vision: Option<bool>,
    pub tools: Option<bool>,
    pub json: Option<bool>,
    pub embedding: Option<bool>,
    pub quality: Option<f64>,
    pub pricing: Option<Price>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Routing {
    pub max_attempts: Option<i64>,
    pub default_strategy: Option<String>,
    pub tie_epsilon: Option<f64>,
    pub cooldown_base: Option<DurationValue>,
    pub cooldown_max: Option<DurationValue>,
    pub retry_after_max: Option<DurationValue>,
    pub auth_cooldown: Option<DurationValue>,
    pub model_missing_cooldown: Option<DurationValue>,
    pub panic_routing: Option<bool>,
    pub panic_max_in_flight: Option<i64>,
    pub panic_wait: Option<DurationValue>,
    pub same_channel_retries: Option<i64>,
    pub retry_backoff: Option<DurationValue>,
    pub context_margin: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Strategy {
    pub cost: Option<f64>,
    pub speed: Option<f64>,
    pub quality: Option<f64>,
    pub reliability: Option<f64>,
    pub context: Option<f64>,
    pub parameters: Option<f64>,
    pub free: Option<f64>,
    pub local: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Group {
    pub query: Option<String>,
    pub strategy: Option<String>,
    pub max_cost_per_1k: Option<f64>,
    pub required_capabilities: Option<Vec<String>>,
    pub prefer_local: Option<bool>,
    pub exclude_providers: Option<Vec<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Pricing {
    pub currency: Option<String>,
    /// Units of each currency per 1 USD.
    pub rates: Option<BTreeMap<String, f64>>,
    /// The older spelling: one unit of each currency is worth this much of `currency`.
    pub fx: Option<BTreeMap<String, f64>>,
    pub daily_budget: Option<f64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Log {
    pub format: Option<String>,
    pub level: Option<String>,
    pub access: Option<bool>,
}
