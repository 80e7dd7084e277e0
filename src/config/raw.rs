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
    pub log: Log,
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
    pub max_connections: Option<i64>,
    pub header_timeout: Option<DurationValue>,
    pub body_timeout: Option<DurationValue>,
    pub idle_timeout: Option<DurationValue>,
    pub drain_timeout: Option<DurationValue>,
    pub dns_refresh: Option<DurationValue>,
    pub cors_origins: Option<Vec<String>>,
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
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Routing {
    pub max_attempts: Option<i64>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct Log {
    pub format: Option<String>,
    pub level: Option<String>,
}
