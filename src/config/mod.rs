//! TOML → validated [`Config`], as a pipeline (sozu's file → builder → config): the text is
//! parsed into a TOML table, `${VAR}` references are expanded ([`env`]), the table is read into a
//! serde mirror that denies unknown keys (`raw`), and `validate` turns that into the typed parts
//! of [`model`], applying [`defaults`] and collecting every problem with its key path and fix.
//! Also the two config-less modes: channels from provider environment variables, and demo mode.
//!
//! ```text
//!   text ─► toml::Table ─► env::expand_table raw::Root ─► validate::build ─► Config
//!                 └──────────── ConfigError { problems: [Problem { path, message }] } ◄──┘
//! ```
//!
//! Invariants: the rest of the program sees only validated types (`Duration`, `SocketAddr`,
//! [`BaseUrl`], [`Secret`]), never raw TOML. API keys live in [`Secret`], which never prints.
//! Not here: reading files on a worker (only `bootstrap`/`control` call [`Config::load_file`]),
//! DNS resolution (`control`), snapshot building (`snapshot`).

pub mod defaults;
mod env;
mod model;
mod proxy_url;
pub(crate) mod raw;
#[cfg(feature = "cluster")]
mod redis_url;
#[cfg(test)]
mod test_support;
pub mod units;
mod validate;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use env::{Env, ProcessEnv};
pub use model::*;
pub use proxy_url::{ProxyKind, ProxyUrl};
#[cfg(feature = "cluster")]
pub(crate) use redis_url::RedisUrl;
pub use units::{BaseUrl, Scheme};
pub(crate) use validate::read_keys_file;
/// What `import` checks a header against before it writes one.
#[cfg(feature = "import")]
pub(crate) use validate::{is_managed_header, is_token};

use crate::presets;
pub use crate::secret::Secret;

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
    /// `[server]`: the client listener, limits and timeouts.
    pub server: ServerConfig,
    /// `[providers.*]`, sorted by id.
    pub providers: Vec<ProviderConfig>,
    /// `[[channels]]`, in file order.
    pub channels: Vec<ChannelConfig>,
    /// `[routing]`: attempts, ties and cooldowns.
    pub routing: RoutingConfig,
    /// `[strategies.*]`, user-defined.
    pub strategies: Vec<StrategyConfig>,
    /// `[groups."auto:*"]`: named model expressions.
    pub groups: Vec<GroupConfig>,
    /// `[pricing]`: reporting currency, exchange rates, the daily budget.
    pub pricing: PricingConfig,
    /// `[discovery]`: model lists fetched from providers.
    pub discovery: DiscoveryConfig,
    /// `[health]`: recovery probes.
    pub health: HealthConfig,
    /// `[state] dir`: discovery cache and admin overrides (none: nothing persists).
    pub state_dir: Option<PathBuf>,
    /// `[usage]`: the per-request usage log.
    pub usage: UsageConfig,
    /// `[admin]`: present (and not `enabled = false`) turns the admin API on.
    pub admin: Option<AdminConfig>,
    /// `[log]`: format, level, access lines.
    pub log: LogConfig,
    /// `[auth]`: client keys.
    pub auth: AuthConfig,
    /// `[cluster]`: shared state through Redis (none: this instance alone).
    pub cluster: Option<ClusterConfig>,
    /// `[telemetry]`: OTLP trace export (none: off).
    pub telemetry: Option<TelemetryConfig>,
    /// Where it came from (a file, the environment, demo mode).
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
    fn merge_keys_file(&mut self) -> Result<(), ConfigError> {
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
        env::expand_table(&mut table, "", env, &mut problems);
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
        let mut cfg = validate::build(raw)?;
        if cfg.state_dir.is_none() {
            cfg.state_dir = env::default_state_dir(env);
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
            channels.push(plain_channel(
                preset.kind,
                providers.len() - 1,
                Secret::new(key.trim()),
                preset.env_models,
                &[],
            ));
        }
        if channels.is_empty() {
            return None;
        }
        let mut cfg = Self::empty();
        cfg.providers = providers;
        cfg.channels = channels;
        cfg.source = Source::Environment(used);
        cfg.state_dir = env::default_state_dir(env);
        Some(cfg)
    }

    /// Demo mode: one channel on the built-in mock upstream at `mock`.
    pub fn demo(mock: SocketAddr, models: &[&str]) -> Config {
        let base = BaseUrl::parse(&format!("http://{mock}/v1")).ok();
        let preset = presets::preset("openai").expect("openai preset exists");
        let mut cfg = Self::empty();
        cfg.providers = vec![provider_from_preset("demo", preset, base)];
        cfg.channels = vec![plain_channel(
            "demo",
            0,
            Secret::new("demo-key"),
            models,
            &["demo", "free"],
        )];
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
        validate::build(raw::Root::default()).expect("defaults validate")
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

/// A channel of a config-less mode (environment or demo): these models and tags, every other
/// setting at its default.
fn plain_channel(
    id: &str,
    provider: usize,
    api_key: Secret,
    models: &[&str],
    tags: &[&str],
) -> ChannelConfig {
    ChannelConfig {
        id: id.to_string(),
        provider,
        api_key,
        base_url: None,
        models: models.iter().map(|m| m.to_string()).collect(),
        aliases: Vec::new(),
        tags: tags.iter().map(|t| t.to_string()).collect(),
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
    }
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
        responses: presets::speaks_responses(preset.kind),
        drop_unsupported: false,
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
pub(crate) fn closest<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
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

#[cfg(test)]
mod tests {
    use super::test_support::{MINIMAL, env, problems};
    use super::*;

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
    fn a_syntax_error_names_the_place_but_never_quotes_the_line() {
        let p = problems("[[channels]]\nid = \"a\"\napi_key = \"sk-live-SECRET123 \n");
        let text = format!("{p:?}");
        assert!(text.contains("line 3"), "{text}");
        assert!(!text.contains("SECRET"), "{text}");
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
    fn secrets_never_print() {
        let s = Secret::new("sk-live-123");
        assert_eq!(format!("{s:?} {s}"), "\"***\" ***");
        let c = Config::parse(MINIMAL, &env(&[])).unwrap();
        assert!(!format!("{c:?}").contains("sk-test"));
        assert!(!c.summary().contains("sk-test"));
    }
}
