//! `smart-ai-router import`: turns the Python original's `router_config.yaml` into this gateway's
//! TOML config, and lists every YAML key that did not carry over unchanged.
//!
//! The original keeps a `providers:` map, a `channels:` list and a few tables (`server`, `auth`,
//! `routing`, `tasks`, …). Each key is either mapped onto the TOML contract of `config::raw`
//! (converting units: prices per token or per 1K tokens become per 1M, seconds become duration
//! strings, base URLs gain the version path the original appended at request time) or named in
//! the report with the reason, one line per key, as `yaml.path: what happened`.
//!
//! # Invariants
//! * The report never contains an API key or token value: literal secrets are carried into the
//!   TOML (the user asked for a working config) but the report only says that they were, and
//!   suggests a `${VAR}` reference instead.
//! * [`convert`] returns TOML only after [`Config::parse`] accepted it (with every `${VAR}`
//!   standing in as set); anything else is an error, never a half-valid file.
//! * Every key of the YAML is accounted for: mapped, kept as a TOML comment (display names),
//!   reported, or passed over only when its value already is this gateway's behaviour
//!   (`debug: false`, `auth.enabled: false`, `auth_type: bearer`, …). Unknown keys are reported,
//!   never silently dropped as the original did.
//!
//! # Not here
//! * No I/O: text in, text out. `main` reads the YAML and writes the TOML.
//! * The original's bugs are not carried over: priorities keep their meaning (lower was better
//!   there, higher is better here), native Anthropic/Gemini providers use their OpenAI-compatible
//!   endpoints instead of receiving OpenAI requests on a native path, and version paths such as
//!   `/api/v3` are no longer turned into `/api/v3/v1`.

use std::collections::HashSet;
use std::fmt::Write as _;

use yaml_rust2::{ScanError, Yaml, YamlLoader};

use crate::config::{BaseUrl, Config};
use crate::presets::{self, PRESETS};

/// A converted config: TOML text that validates, and what did not carry over as it was.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    /// The TOML config.
    pub toml: String,
    /// One line per dropped or changed YAML key, `yaml.path: what happened and why`.
    pub report: Vec<String>,
}

/// Converts the text of the original's `router_config.yaml`.
///
/// Errors (a message for the user, naming the line when the YAML is malformed): the text is not
/// YAML, is empty, its top level is not a mapping, or — a bug in this converter — the generated
/// TOML does not validate.
pub fn convert(yaml: &str) -> Result<Conversion, String> {
    let docs = YamlLoader::load_from_str(yaml).map_err(|e| yaml_error(&e))?;
    let mut docs = docs.into_iter();
    let Some(root) = docs.next() else {
        return Err("the file holds no YAML document; expected the original's \
                    router_config.yaml with providers: and channels:"
            .into());
    };
    let root = apply_merge_keys(root);
    let Yaml::Hash(root) = root else {
        return Err(format!(
            "the top level is {}, not a mapping; expected the original's router_config.yaml \
             with providers: and channels:",
            describe(&root)
        ));
    };
    let mut im = Importer::default();
    if docs.next().is_some() {
        im.note(
            "---",
            "only the first YAML document is read; the others were dropped",
        );
    }

    // Channels name their provider, so providers come first whatever the key order.
    if let Some(p) = root.get(&key("providers")) {
        im.providers(p);
    }
    match root.get(&key("channels")) {
        Some(c) => im.channels(c),
        None => im.note(
            "channels",
            "missing: the config has no channels; add [[channels]] tables",
        ),
    }
    for (k, v) in &root {
        let name = key_text(k);
        match name.as_str() {
            "providers" | "channels" => {}
            "system" => im.note(
                "system",
                "dropped: name, version and storage_mode have no meaning here",
            ),
            "server" => im.server(v),
            "auth" => im.auth(v),
            "routing" => im.routing(v),
            "tasks" => im.tasks(v),
            "caching" => im.note("caching", "dropped: the gateway does not cache responses"),
            "monitoring" => im.note(
                "monitoring",
                "dropped: metrics and health are always on; set [log] level for verbosity",
            ),
            "cost_control" => im.note(
                "cost_control",
                "dropped: budgets are not in this build (the original never enforced them either)",
            ),
            "clean_thinking_chains" => {
                if as_bool(v) != Some(false) {
                    im.note(
                        "clean_thinking_chains",
                        "dropped: answers pass through unchanged (reasoning blocks are not \
                         stripped, and whitespace is never collapsed)",
                    );
                }
            }
            _ => im.note(&name, "not supported, dropped"),
        }
    }

    let toml = im.render();
    let redact = |s: &str| -> String {
        im.secrets.iter().fold(s.to_string(), |acc, secret| {
            acc.replace(secret.as_str(), "***")
        })
    };
    // Every ${VAR} stands in as set: the structure is checked here, the environment at start.
    if let Err(e) = Config::parse(&toml, &|_: &str| Some(PLACEHOLDER.to_string())) {
        return Err(redact(&format!(
            "the converted config does not validate (a bug in import; please report it):\n{e}"
        )));
    }
    let report = im.report.iter().map(|l| redact(l)).collect();
    Ok(Conversion { toml, report })
}

/// What `${VAR}` expands to while the output is validated: long and plain enough for every rule
/// that checks a value (the admin token needs 16 printable characters).
const PLACEHOLDER: &str = "import-placeholder-value";

/// The original's default channel priority; it maps to ours (0).
const ORIGINAL_DEFAULT_PRIORITY: i64 = 1;

/// The longest `min_request_interval` carried over: longer is a typo, not a rate limit.
const MAX_INTERVAL_SECS: f64 = 365.0 * 86400.0;

/// Secrets shorter than this are not redacted from messages (a key like "ollama" would mangle
/// every provider name); the report never includes key values in the first place.
const REDACT_MIN_LEN: usize = 8;

/// Native APIs the original named, with the OpenAI-compatible endpoint each also serves. This
/// build speaks only the OpenAI wire format, so such providers become `kind = "openai"` there.
const COMPAT_BASES: &[(&str, &str)] = &[
    ("Anthropic", "https://api.anthropic.com/v1"),
    (
        "Gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
    ),
];

#[derive(Debug)]
struct ProviderOut {
    /// The key under `providers:` (what channels name).
    yaml_key: String,
    /// Its `name:` (channels sometimes use it instead of the key).
    name: Option<String>,
    /// For a provider made for channels naming one that `providers:` lacks: that name.
    implicit_for: Option<String>,
    id: String,
    kind: &'static str,
    base_url: Option<String>,
    auth: Option<&'static str>,
    headers: Vec<(String, String)>,
    comment: String,
}

#[derive(Debug)]
struct ChannelOut {
    comment: String,
    id: String,
    provider: usize,
    /// Ready for TOML: a `${VAR}` reference or a literal with `${` escaped.
    api_key: Option<String>,
    base_url: Option<String>,
    models: Vec<String>,
    aliases: Vec<(String, String)>,
    tags: Vec<String>,
    priority: Option<i64>,
    weight: Option<f64>,
    enabled: bool,
    pricing: Option<(f64, f64)>,
    min_request_interval: Option<String>,
}

/// The conversion in progress: the report so far and the TOML sections, each a list of
/// rendered `key = value` lines.
#[derive(Debug, Default)]
struct Importer {
    report: Vec<String>,
    /// Literal secrets seen, so that no message can echo them by accident.
    secrets: Vec<String>,
    providers: Vec<ProviderOut>,
    provider_ids: HashSet<String>,
    channels: Vec<ChannelOut>,
    channel_ids: HashSet<String>,
    server: Vec<String>,
    routing: Vec<String>,
    strategies: Vec<(String, Vec<(&'static str, f64)>)>,
    discovery: Vec<String>,
    admin: Vec<String>,
}

impl Importer {
    fn note(&mut self, path: &str, message: impl AsRef<str>) {
        self.report.push(format!("{path}: {}", message.as_ref()));
    }

    fn remember_secret(&mut self, s: &str) {
        if s.len() >= REDACT_MIN_LEN {
            self.secrets.push(s.to_string());
        }
    }

    // -----------------------------------------------------------------------------------------
    // providers

    fn providers(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "providers",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        for (k, p) in h {
            self.provider(&key_text(k), p);
        }
    }

    fn provider(&mut self, yaml_key: &str, v: &Yaml) {
        let path = format!("providers.{yaml_key}");
        let Some(h) = v.as_hash() else {
            self.note(&path, format!("is {}, not a mapping; dropped", describe(v)));
            return;
        };
        let field = |k: &str| h.get(&key(k));
        let name = field("name").and_then(text);
        let adapter = field("adapter_class").and_then(text).unwrap_or_default();
        let id = self.provider_id(yaml_key, &path);

        let mut base_url = None;
        let mut parsed = None;
        match field("base_url") {
            None => {}
            Some(u) => match text(u).map(|s| convert_base_url(&s)) {
                Some(Ok((url, note))) => {
                    if let Some(n) = note {
                        self.note(&format!("{path}.base_url"), n);
                    }
                    parsed = BaseUrl::parse(&url).ok();
                    base_url = Some(url);
                }
                Some(Err(e)) => self.note(&format!("{path}.base_url"), format!("dropped: {e}")),
                None => self.note(
                    &format!("{path}.base_url"),
                    format!("is {}, not a URL; dropped", describe(u)),
                ),
            },
        }
        let names: Vec<&str> = [Some(yaml_key), name.as_deref()]
            .into_iter()
            .flatten()
            .collect();
        let pick = pick_kind(&adapter, &names, parsed.as_ref());
        if base_url.is_none() {
            base_url = Some(default_base(&pick).to_string());
        }
        let mut out = ProviderOut {
            yaml_key: yaml_key.to_string(),
            name: name.clone(),
            implicit_for: None,
            id,
            kind: pick.kind,
            base_url,
            auth: None,
            headers: Vec::new(),
            comment: format!("providers.{yaml_key}"),
        };

        for (k, val) in h {
            let k = key_text(k);
            let at = format!("{path}.{k}");
            match k.as_str() {
                "name" | "base_url" => {}
                "display_name" => {
                    if let Some(d) = text(val).filter(|d| !d.is_empty()) {
                        out.comment = format!("{} ({d})", out.comment);
                    }
                }
                "adapter_class" => {
                    let known = ["openai", "anthropic", "groq", "openrouter"]
                        .contains(&adapter_name(&adapter).as_str());
                    if let Some(native) = pick.native {
                        self.note(
                            &at,
                            format!(
                                "{adapter} → kind = \"openai\" at {native}'s OpenAI-compatible \
                                 endpoint (this build has no native {native} adapter yet)"
                            ),
                        );
                    } else if !known {
                        self.note(
                            &at,
                            format!(
                                "\"{adapter}\" is not an adapter the original had (it fell back \
                                 to OpenAI); kind = \"{}\"",
                                pick.kind
                            ),
                        );
                    }
                }
                "auth_type" => match text(val).as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("bearer") => {}
                    Some(style @ ("x-api-key" | "api-key")) if pick.native.is_none() => {
                        out.auth = Some(if style == "x-api-key" {
                            "x-api-key"
                        } else {
                            "api-key"
                        });
                        self.note(
                            &at,
                            format!(
                                "auth = \"{style}\" is now honoured (the original's adapters \
                                 always sent Authorization: Bearer); remove it if the upstream \
                                 answers 401"
                            ),
                        );
                    }
                    Some(style @ ("x-api-key" | "api-key")) => self.note(
                        &at,
                        format!(
                            "\"{style}\" dropped: the OpenAI-compatible endpoint takes \
                             Authorization: Bearer"
                        ),
                    ),
                    _ => self.note(
                        &at,
                        "not an auth style (bearer, x-api-key, api-key); dropped, bearer is used",
                    ),
                },
                "rate_limit" => self.note(
                    &at,
                    "dropped: no per-provider request rate here; see the channels' \
                     min_request_interval and max_concurrent (the original ignored it too)",
                ),
                "capabilities" => self.note(
                    &at,
                    "dropped: capabilities are per model here (channels' model_info.\"MODEL\" \
                     vision/tools); the original only displayed them",
                ),
                "default_headers" | "headers" => {
                    if let Some(hs) = val.as_hash() {
                        for (hk, hv) in hs {
                            let name = key_text(hk);
                            let value = text(hv).unwrap_or_default();
                            self.add_header(&mut out, &format!("{at}.{name}"), &name, &value);
                        }
                    } else {
                        self.note(&at, format!("is {}, not a mapping; dropped", describe(val)));
                    }
                }
                "organization" => match text(val) {
                    Some(org) => self.add_header(&mut out, &at, "OpenAI-Organization", &org),
                    None => self.note(&at, "not a string; dropped"),
                },
                "extra_params" => self.extra_params(&mut out, &at, val),
                "api_version" => self.note(
                    &at,
                    "dropped: only the native Anthropic API takes a version header",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
        self.providers.push(out);
    }

    /// The original's OpenRouter adapter sent `extra_params.site_url`/`site_title` as the
    /// `HTTP-Referer`/`X-Title` headers; the rest shaped request bodies.
    fn extra_params(&mut self, out: &mut ProviderOut, at: &str, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(at, format!("is {}, not a mapping; dropped", describe(v)));
            return;
        };
        for (k, val) in h {
            let k = key_text(k);
            let path = format!("{at}.{k}");
            match (k.as_str(), text(val)) {
                ("site_url", Some(u)) => self.add_header(out, &path, "HTTP-Referer", &u),
                ("site_title", Some(t)) => self.add_header(out, &path, "X-Title", &t),
                _ => self.note(
                    &path,
                    "dropped: request bodies pass through as the client sent them",
                ),
            }
        }
    }

    /// Adds a header if the validator will take it. Values are never echoed: a header may hold
    /// a credential.
    fn add_header(&mut self, out: &mut ProviderOut, path: &str, name: &str, value: &str) {
        if !crate::config::is_token(name) {
            self.note(path, "not a valid header name; dropped");
        } else if crate::config::is_managed_header(name) {
            self.remember_secret(value);
            self.note(
                path,
                "dropped: the gateway sets this header itself (keys go in the channel's api_key)",
            );
        } else if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            self.note(path, "value has CR, LF or NUL; dropped");
        } else {
            out.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
            out.headers.push((name.to_string(), value.to_string()));
        }
    }

    fn provider_id(&mut self, wanted: &str, path: &str) -> String {
        let clean = sanitize_id(wanted, "provider");
        let id = unique_id(&clean, &mut self.provider_ids);
        if id != wanted {
            let why = if clean != wanted {
                "ids are 1-64 letters, digits, '.', '_' or '-'"
            } else {
                "another provider already uses it"
            };
            self.note(path, format!("renamed to [providers.{id}] ({why})"));
        }
        id
    }

    /// The provider a channel names: by key, else by `name:`, else a new one made the way the
    /// original did (an OpenAI-compatible provider, here at the channel's own base URL).
    fn provider_for_channel(
        &mut self,
        path: &str,
        wanted: Option<&str>,
        base: Option<&str>,
    ) -> usize {
        if let Some(w) = wanted {
            if let Some(i) = self.providers.iter().position(|p| p.yaml_key == w) {
                return i;
            }
            if let Some(i) = self
                .providers
                .iter()
                .position(|p| p.name.as_deref() == Some(w))
            {
                let id = self.providers[i].id.clone();
                self.note(
                    &format!("{path}.provider"),
                    format!("\"{w}\" is a provider's name, not its key; uses [providers.{id}]"),
                );
                return i;
            }
        }
        let wanted_name = wanted.unwrap_or("openai");
        if let Some(i) = self
            .providers
            .iter()
            .position(|p| p.implicit_for.as_deref() == Some(wanted_name))
        {
            return i;
        }
        let parsed = base.and_then(|b| BaseUrl::parse(b).ok());
        let pick = pick_kind("", &[wanted_name], parsed.as_ref());
        let id = unique_id(
            &sanitize_id(wanted_name, "provider"),
            &mut self.provider_ids,
        );
        let base_url = base.map_or_else(|| default_base(&pick).to_string(), str::to_string);
        let message = match wanted {
            Some(w) => format!(
                "\"{w}\" is not under providers:; added [providers.{id}] (kind = \"{}\", at {base_url}) as the original's implicit OpenAI-compatible provider",
                pick.kind
            ),
            None => format!(
                "missing; added [providers.{id}] (kind = \"{}\", at {base_url}) as the original's implicit OpenAI-compatible provider",
                pick.kind
            ),
        };
        self.note(&format!("{path}.provider"), message);
        self.providers.push(ProviderOut {
            yaml_key: String::new(),
            name: None,
            implicit_for: Some(wanted_name.to_string()),
            id,
            kind: pick.kind,
            base_url: Some(base_url),
            auth: None,
            headers: Vec::new(),
            comment: format!("implicit provider \"{wanted_name}\""),
        });
        self.providers.len() - 1
    }

    // -----------------------------------------------------------------------------------------
    // channels

    fn channels(&mut self, v: &Yaml) {
        let Some(list) = v.as_vec() else {
            self.note(
                "channels",
                format!("is {}, not a list; dropped", describe(v)),
            );
            return;
        };
        for (i, ch) in list.iter().enumerate() {
            self.channel(i, ch);
        }
    }

    fn channel(&mut self, i: usize, v: &Yaml) {
        let path = format!("channels[{i}]");
        let Some(h) = v.as_hash() else {
            self.note(&path, format!("is {}, not a mapping; dropped", describe(v)));
            return;
        };
        let field = |k: &str| h.get(&key(k));

        let yaml_id = field("id").and_then(text);
        let name = field("name").and_then(text);
        let wanted = yaml_id
            .clone()
            .or_else(|| name.clone())
            .unwrap_or_else(|| format!("channel-{i}"));
        let clean = sanitize_id(&wanted, &format!("channel-{i}"));
        let id = unique_id(&clean, &mut self.channel_ids);
        match &yaml_id {
            None => self.note(&format!("{path}.id"), format!("missing; named \"{id}\"")),
            Some(y) if *y != id => {
                let why = if clean != *y {
                    "ids are 1-64 letters, digits, '.', '_' or '-'"
                } else {
                    "another channel already uses it; ids must be unique"
                };
                self.note(
                    &format!("{path}.id"),
                    format!("\"{y}\" renamed to \"{id}\" ({why})"),
                );
            }
            Some(_) => {}
        }

        // Base URL before the provider: an implicit provider is made at the channel's URL.
        let mut base = None;
        let mut base_note = None;
        match field("base_url") {
            None | Some(Yaml::Null) => {}
            Some(Yaml::Array(urls)) => {
                if let Some(first) = urls.first().and_then(text) {
                    match convert_base_url(&first) {
                        Ok((url, n)) => {
                            base = Some(url);
                            base_note = n;
                        }
                        Err(e) => {
                            self.note(&format!("{path}.base_url[0]"), format!("dropped: {e}"))
                        }
                    }
                }
                if urls.len() > 1 {
                    self.note(
                        &format!("{path}.base_url"),
                        "only the first URL is used: one base_url per channel (add a channel per URL to fail over between them)",
                    );
                }
            }
            Some(u) => match text(u).map(|s| convert_base_url(&s)) {
                Some(Ok((url, n))) => {
                    base = Some(url);
                    base_note = n;
                }
                Some(Err(e)) => self.note(&format!("{path}.base_url"), format!("dropped: {e}")),
                None => self.note(
                    &format!("{path}.base_url"),
                    format!("is {}, not a URL; dropped", describe(u)),
                ),
            },
        }
        let wanted_provider = field("provider").and_then(text);
        let provider =
            self.provider_for_channel(&path, wanted_provider.as_deref(), base.as_deref());
        // The same URL as the provider's needs no override; a note about it was reported
        // with the provider, unless the provider was just made from this channel's URL.
        if base.is_some() && base == self.providers[provider].base_url {
            base = None;
            if self.providers[provider].implicit_for.is_none() {
                base_note = None;
            }
        }
        if let Some(n) = base_note {
            self.note(&format!("{path}.base_url"), n);
        }

        let mut models: Vec<String> = Vec::new();
        match field("model_name").map(|m| (m, text(m))) {
            None => {}
            Some((_, Some(m))) if m.eq_ignore_ascii_case("auto") => self.note(
                &format!("{path}.model_name"),
                "\"auto\" is not a model id; dropped (discovery lists the channel's models)",
            ),
            Some((_, Some(m))) => self.push_model(&mut models, &format!("{path}.model_name"), m),
            Some((m, None)) => self.note(
                &format!("{path}.model_name"),
                format!("is {}, not a model id; dropped", describe(m)),
            ),
        }
        if let Some(list) = field("configured_models") {
            match list.as_vec() {
                Some(items) => {
                    for (j, m) in items.iter().enumerate() {
                        let at = format!("{path}.configured_models[{j}]");
                        match text(m) {
                            Some(m) => self.push_model(&mut models, &at, m),
                            None => self
                                .note(&at, format!("is {}, not a model id; dropped", describe(m))),
                        }
                    }
                }
                None if list.is_null() => {}
                None => self.note(
                    &format!("{path}.configured_models"),
                    format!("is {}, not a list; dropped", describe(list)),
                ),
            }
        }

        let provider_id = self.providers[provider].id.clone();
        let local = base
            .as_deref()
            .or(self.providers[provider].base_url.as_deref())
            .and_then(|u| BaseUrl::parse(u).ok())
            .is_some_and(|u| u.is_private());
        let (api_key, key_usable) = self.api_key(
            &path,
            &id,
            &provider_id,
            local,
            field("api_key"),
            field("api_key_env"),
        );
        let pricing = self.channel_pricing(
            &path,
            field("cost_per_token"),
            field("pricing"),
            field("currency_exchange"),
        );

        let mut out = ChannelOut {
            comment: match &name {
                Some(n) if !n.is_empty() => format!("{path} \"{n}\""),
                _ => path.clone(),
            },
            id: id.clone(),
            provider,
            api_key,
            base_url: base,
            models,
            aliases: Vec::new(),
            tags: Vec::new(),
            priority: None,
            weight: None,
            enabled: true,
            pricing,
            min_request_interval: None,
        };

        for (k, val) in h {
            let k = key_text(k);
            let at = format!("{path}.{k}");
            match k.as_str() {
                "id" | "name" | "provider" | "base_url" | "model_name" | "configured_models"
                | "api_key" | "api_key_env" | "cost_per_token" | "pricing"
                | "currency_exchange" => {}
                "enabled" => match as_bool(val) {
                    Some(e) => out.enabled = e,
                    None => self.note(&at, format!("is {}, not true/false; dropped", describe(val))),
                },
                "priority" => match as_int(val) {
                    Some(p) => {
                        let ours = (ORIGINAL_DEFAULT_PRIORITY - p).clamp(-1_000_000, 1_000_000);
                        if ours != 0 {
                            out.priority = Some(ours);
                        }
                        if p != ORIGINAL_DEFAULT_PRIORITY {
                            self.note(
                                &at,
                                format!(
                                    "{p} → priority = {ours} (the original preferred lower numbers, and only as a soft hint; here higher is tried first and lower tiers serve on failover)"
                                ),
                            );
                        }
                    }
                    None => self.note(&at, format!("is {}, not an integer; dropped", describe(val))),
                },
                "weight" => match number(val) {
                    Some(w) if w.is_finite() && w > 0.0 => {
                        if w != 1.0 {
                            out.weight = Some(w);
                            self.note(
                                &at,
                                format!("→ weight = {}, now honoured: the channel's share among equally scored candidates (the original ignored it)", toml_float(w)),
                            );
                        }
                    }
                    _ => self.note(&at, "weights are positive numbers; dropped"),
                },
                "tags" => out.tags = self.tags(&at, val),
                "model_aliases" => out.aliases = self.aliases(&at, val),
                "min_request_interval" => match number(val) {
                    Some(s) if s > 0.0 && s <= MAX_INTERVAL_SECS => {
                        out.min_request_interval = Some(seconds_to_duration(s));
                    }
                    Some(0.0) => {}
                    _ => self.note(&at, "not a number of seconds between 0 and a year; dropped"),
                },
                "daily_limit" => self.note(
                    &at,
                    "dropped: daily limits are not in this build (the original never enforced them)",
                ),
                "capabilities" => self.note(
                    &at,
                    "dropped: capabilities are per model here (model_info.\"MODEL\" vision/tools); the original only displayed them",
                ),
                "performance" => self.note(
                    &at,
                    "dropped: speed is measured live from latency and time to first token",
                ),
                "fallback_urls" => self.note(
                    &at,
                    "dropped: one base_url per channel (add a channel per URL to fail over between them)",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
        if !key_usable {
            let suggestion = format!("${{{}_API_KEY}}", env_stem(&provider_id));
            let message = if out.enabled {
                out.enabled = false;
                format!(
                    "channel \"{id}\" has no usable key, so it is disabled (the original skipped it too); set api_key = \"{suggestion}\" and enable it"
                )
            } else {
                format!(
                    "channel \"{id}\" has no usable key; set api_key = \"{suggestion}\" before enabling it"
                )
            };
            self.note(&format!("{path}.api_key"), message);
        }
        self.channels.push(out);
    }

    fn push_model(&mut self, models: &mut Vec<String>, at: &str, m: String) {
        let m = m.trim().to_string();
        if m.is_empty() || m.len() > 256 || m.chars().any(char::is_control) {
            self.note(
                at,
                "not a model id (1-256 characters, no control characters); dropped",
            );
        } else if !models.contains(&m) {
            models.push(m);
        }
    }

    /// The key for TOML, and whether the channel has one at all. Values are never reported.
    fn api_key(
        &mut self,
        path: &str,
        id: &str,
        provider_id: &str,
        local: bool,
        key: Option<&Yaml>,
        key_env: Option<&Yaml>,
    ) -> (Option<String>, bool) {
        let suggestion = format!("${{{}_API_KEY}}", env_stem(provider_id));
        let literal = key.and_then(text).filter(|k| !k.trim().is_empty());
        if let Some(env) = key_env {
            match text(env).filter(|n| is_env_name(n)) {
                Some(name) => {
                    if let Some(lit) = &literal {
                        if env_reference(lit).is_none() {
                            self.remember_secret(lit);
                            self.note(
                                &format!("{path}.api_key"),
                                format!("channel \"{id}\": literal key not carried over; api_key_env ({name}) is used instead"),
                            );
                        }
                    }
                    return (Some(format!("${{{name}}}")), true);
                }
                None => self.note(
                    &format!("{path}.api_key_env"),
                    "not an environment variable name (letters, digits, _); dropped",
                ),
            }
        }
        let Some(k) = literal else {
            return (None, false);
        };
        let k = k.trim().to_string();
        if let Some(reference) = env_reference(&k) {
            if reference != k {
                self.note(
                    &format!("{path}.api_key"),
                    format!("channel \"{id}\": ${} read as the environment variable reference {reference}", &k[1..]),
                );
            }
            return (Some(reference), true);
        }
        self.remember_secret(&k);
        if k.chars().any(char::is_control) {
            self.note(
                &format!("{path}.api_key"),
                format!("channel \"{id}\": the key has control characters; dropped, set api_key = \"{suggestion}\""),
            );
            return (None, false);
        }
        let advice = if local {
            format!(
                "a local server usually ignores it: remove it, or use api_key = \"{suggestion}\""
            )
        } else {
            format!("consider api_key = \"{suggestion}\" with the key exported instead")
        };
        self.note(
            &format!("{path}.api_key"),
            format!("channel \"{id}\": literal api_key carried over; {advice}"),
        );
        // A literal "${" would be read as a variable reference: "$${" is the escape.
        (Some(k.replace("${", "$${")), true)
    }

    /// The channel's price per 1M tokens from `cost_per_token` (USD per token, what the
    /// original billed first) or `pricing` (per 1K tokens, its fallback), times
    /// `currency_exchange.rate` as the original applied it.
    fn channel_pricing(
        &mut self,
        path: &str,
        per_token: Option<&Yaml>,
        per_1k: Option<&Yaml>,
        exchange: Option<&Yaml>,
    ) -> Option<(f64, f64)> {
        let mut price = None;
        if let Some(c) = per_token.filter(|c| !is_empty_map(c)) {
            let at = format!("{path}.cost_per_token");
            match c.as_hash() {
                Some(h) => {
                    let mut side = |name: &str| -> f64 {
                        match h.get(&key(name)).map(number) {
                            Some(Some(x)) if x.is_finite() && x >= 0.0 => x,
                            Some(_) => {
                                self.note(
                                    &format!("{at}.{name}"),
                                    "not a non-negative number; 0 used",
                                );
                                0.0
                            }
                            None => {
                                self.note(
                                    &format!("{at}.{name}"),
                                    "missing; 0 used, as the original billed it",
                                );
                                0.0
                            }
                        }
                    };
                    let input = tidy(side("input") * 1e6);
                    let output = tidy(side("output") * 1e6);
                    for (k, _) in h {
                        let k = key_text(k);
                        if k != "input" && k != "output" {
                            self.note(&format!("{at}.{k}"), "not supported, dropped");
                        }
                    }
                    self.note(
                        &at,
                        format!(
                            "converted from USD per token to pricing per 1M tokens: input {}, output {}",
                            toml_float(input),
                            toml_float(output)
                        ),
                    );
                    price = Some((input, output));
                }
                None => self.note(&at, format!("is {}, not a mapping; dropped", describe(c))),
            }
        }
        if let Some(p) = per_1k.filter(|p| !is_empty_map(p)) {
            let at = format!("{path}.pricing");
            match p.as_hash() {
                Some(_) if price.is_some() => self.note(
                    &at,
                    "dropped: cost_per_token is set and wins, as in the original's billing",
                ),
                Some(h) => {
                    // The original's defaults when a side is missing: $0.001 / $0.002 per 1K.
                    let mut side = |name: &str, default: f64| -> f64 {
                        match h.get(&key(name)).map(number) {
                            Some(Some(x)) if x.is_finite() && x >= 0.0 => x,
                            Some(_) => {
                                self.note(&format!("{at}.{name}"), format!("not a non-negative number; the original's default {default} per 1K used"));
                                default
                            }
                            None => {
                                self.note(
                                    &format!("{at}.{name}"),
                                    format!(
                                        "missing; the original's default {default} per 1K used"
                                    ),
                                );
                                default
                            }
                        }
                    };
                    let input = tidy(side("input_cost_per_1k", 0.001) * 1e3);
                    let output = tidy(side("output_cost_per_1k", 0.002) * 1e3);
                    for (k, _) in h {
                        let k = key_text(k);
                        if k != "input_cost_per_1k" && k != "output_cost_per_1k" {
                            self.note(&format!("{at}.{k}"), "not supported, dropped");
                        }
                    }
                    self.note(
                        &at,
                        format!(
                            "converted from USD per 1K tokens to per 1M tokens: input {}, output {}",
                            toml_float(input),
                            toml_float(output)
                        ),
                    );
                    price = Some((input, output));
                }
                None => self.note(&at, format!("is {}, not a mapping; dropped", describe(p))),
            }
        }
        if let Some(x) = exchange.filter(|x| !x.is_null()) {
            let at = format!("{path}.currency_exchange");
            let rate = x
                .as_hash()
                .and_then(|h| h.get(&key("rate")))
                .and_then(number);
            match (rate, price) {
                (Some(r), Some((i, o)))
                    if r > 0.0 && (i * r).is_finite() && (o * r).is_finite() =>
                {
                    let (i, o) = (tidy(i * r), tidy(o * r));
                    price = Some((i, o));
                    self.note(
                        &at,
                        format!(
                            "rate {} applied to the prices as the original did (input {}, output {} per 1M, still USD; if they are really in another currency, set pricing.currency and [pricing] fx)",
                            toml_float(r),
                            toml_float(i),
                            toml_float(o)
                        ),
                    );
                }
                (Some(r), None) if r > 0.0 => self.note(
                    &at,
                    "dropped: the channel has no price for the rate to apply to",
                ),
                (Some(r), Some(_)) if r > 0.0 => {
                    self.note(
                        &at,
                        "the prices times this rate are out of range; prices dropped",
                    );
                    price = None;
                }
                _ => self.note(&at, "no positive rate; dropped"),
            }
        }
        match price {
            Some((i, o)) if !(i.is_finite() && o.is_finite()) => {
                self.note(path, "prices out of range after conversion; dropped");
                None
            }
            p => p,
        }
    }

    fn tags(&mut self, at: &str, v: &Yaml) -> Vec<String> {
        let raw: Vec<Option<String>> = match v {
            Yaml::Array(items) => items.iter().map(text).collect(),
            Yaml::Null => Vec::new(),
            other => match text(other) {
                Some(s) => s.split(',').map(|t| Some(t.to_string())).collect(),
                None => {
                    self.note(at, format!("is {}, not a list; dropped", describe(other)));
                    return Vec::new();
                }
            },
        };
        let mut tags = Vec::new();
        for (j, t) in raw.into_iter().enumerate() {
            match t.map(|t| t.trim().to_ascii_lowercase()) {
                Some(t) if !t.is_empty() => {
                    if !tags.contains(&t) {
                        tags.push(t);
                    }
                }
                _ => self.note(&format!("{at}[{j}]"), "not a tag; dropped"),
            }
        }
        tags
    }

    fn aliases(&mut self, at: &str, v: &Yaml) -> Vec<(String, String)> {
        let Some(h) = v.as_hash() else {
            if !v.is_null() {
                self.note(at, format!("is {}, not a mapping; dropped", describe(v)));
            }
            return Vec::new();
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, target) in h {
            let alias = key_text(k).trim().to_string();
            let path = format!("{at}.{alias}");
            let valid =
                |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
            match text(target).map(|t| t.trim().to_string()) {
                Some(t) if valid(&alias) && valid(&t) => {
                    if alias != t && !out.iter().any(|(a, _)| *a == alias) {
                        out.push((alias, t));
                    }
                }
                _ => self.note(&path, "not a model id → model id pair; dropped"),
            }
        }
        out
    }

    // -----------------------------------------------------------------------------------------
    // server, auth, routing, tasks

    fn server(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "server",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        let host = h.get(&key("host")).and_then(text);
        let port = h.get(&key("port")).and_then(|p| {
            let n = as_int(p);
            if n.is_none() {
                self.note(
                    "server.port",
                    format!("is {}, not a port; 7601 used", describe(p)),
                );
            }
            n
        });
        if host.is_some() || port.is_some() {
            let port = match port {
                Some(p) if (1..=65535).contains(&p) => p,
                Some(p) => {
                    self.note("server.port", format!("{p} is not a port; 7601 used"));
                    7601
                }
                None => 7601,
            };
            let host = host.unwrap_or_else(|| "0.0.0.0".to_string());
            let ip = if host.eq_ignore_ascii_case("localhost") {
                Some(std::net::IpAddr::from([127, 0, 0, 1]))
            } else {
                host.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .ok()
            };
            let ip = match ip {
                Some(ip) if ip.is_unspecified() => {
                    self.note(
                        "server.host",
                        format!("\"{host}\" → 127.0.0.1: this build has no client API keys, so listening on every interface would lend your provider keys to the network; set [server] listen to open it"),
                    );
                    std::net::IpAddr::from([127, 0, 0, 1])
                }
                Some(ip) => ip,
                None => {
                    self.note(
                        "server.host",
                        format!("\"{host}\" is not an IP address; 127.0.0.1 used"),
                    );
                    std::net::IpAddr::from([127, 0, 0, 1])
                }
            };
            let listen = std::net::SocketAddr::new(ip, port as u16);
            self.server
                .push(format!("listen = {}", toml_str(&listen.to_string())));
        }
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("server.{k}");
            match k.as_str() {
                "host" | "port" => {}
                "cors_origins" => {
                    let Some(items) = val.as_vec() else {
                        self.note(&at, format!("is {}, not a list; dropped", describe(val)));
                        continue;
                    };
                    let mut origins = Vec::new();
                    for (j, o) in items.iter().enumerate() {
                        match text(o) {
                            Some(o) if o == "*" || is_origin(&o) => origins.push(o),
                            Some(o) if is_origin(o.trim_end_matches('/')) => {
                                origins.push(o.trim_end_matches('/').to_string())
                            }
                            _ => self.note(
                                &format!("{at}[{j}]"),
                                "not an origin (scheme://host[:port] or \"*\"); dropped",
                            ),
                        }
                    }
                    let list: Vec<String> = origins.iter().map(|o| toml_text(o)).collect();
                    self.server.push(format!("cors_origins = [{}]", list.join(", ")));
                }
                "max_request_size" => match as_int(val) {
                    Some(n) if (1024..=1 << 30).contains(&n) => {
                        self.server.push(format!("max_body = {n}"));
                        self.note(
                            &at,
                            format!("→ max_body = {n} bytes, now enforced (the original never checked it)"),
                        );
                    }
                    _ => self.note(&at, "not a size between 1 KiB and 1 GiB; dropped"),
                },
                "debug" => {
                    if as_bool(val) == Some(true) {
                        self.note(&at, "dropped: set [log] level = \"debug\" for verbose logs");
                    }
                }
                "request_timeout" => self.note(
                    &at,
                    "dropped: timeouts are per provider (total_timeout, default 600s; first_byte_timeout, default 120s)",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn auth(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "auth",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("auth.{k}");
            match k.as_str() {
                "enabled" => {
                    if as_bool(val) == Some(true) {
                        self.note(
                            &at,
                            "dropped: client API tokens are not in this build yet; keep the gateway on loopback (the original never enforced them either)",
                        );
                    }
                }
                "api_token" => {
                    if let Some(t) = text(val) {
                        self.remember_secret(&t);
                    }
                    self.note(&at, "dropped: client API tokens are not in this build yet");
                }
                "admin" => self.admin(val),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn admin(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "auth.admin",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        // `enabled` switched token checking, not the admin API; ours checks whenever a token is
        // set (and needs one off loopback), so `enabled: false` means: carry no token.
        let checking = h.get(&key("enabled")).and_then(as_bool) != Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("auth.admin.{k}");
            match k.as_str() {
                "enabled" => {}
                "admin_token" => {
                    let Some(t) = text(val)
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                    else {
                        continue;
                    };
                    if !checking {
                        self.remember_secret(&t);
                        self.note(
                            &at,
                            "dropped: auth.admin.enabled is false; the admin API stays on loopback without a token",
                        );
                        continue;
                    }
                    if let Some(reference) = env_reference(&t) {
                        self.admin.push(format!("token = {}", toml_str(&reference)));
                        self.note(
                            &at,
                            "→ [admin] token, now enforced (the original never checked it): send it as Authorization: Bearer",
                        );
                        continue;
                    }
                    self.remember_secret(&t);
                    if t.len() < 16 || t.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                        self.note(
                            &at,
                            "dropped: admin tokens need 16+ printable characters without spaces; the admin API stays on loopback without one",
                        );
                    } else {
                        self.admin
                            .push(format!("token = {}", toml_str(&t.replace("${", "$${"))));
                        self.note(
                            &at,
                            "literal token carried over to [admin] token, now enforced (the original never checked it); consider token = \"${ADMIN_TOKEN}\"",
                        );
                    }
                }
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn routing(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "routing",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        // Strategies first: default_strategy may name one.
        let mut imported: Vec<(String, String)> = Vec::new();
        if let Some(s) = h.get(&key("sorting_strategies")) {
            imported = self.sorting_strategies(s);
        }
        let no_fallback = h.get(&key("enable_fallback")).and_then(as_bool) == Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("routing.{k}");
            match k.as_str() {
                "sorting_strategies" => {}
                "default_strategy" => {
                    let Some(name) = text(val) else {
                        self.note(&at, "not a strategy name; dropped");
                        continue;
                    };
                    let (ours, why) = if let Some((_, new)) = imported.iter().find(|(o, _)| *o == name) {
                        (new.clone(), Some(format!("your sorting_strategies.{name} weights")))
                    } else {
                        match name.as_str() {
                            "balanced" | "cost_first" | "free_first" | "local_first" => {
                                (name.clone(), None)
                            }
                            "speed_optimized" => ("speed_first".to_string(), Some("the built-in equivalent".to_string())),
                            "quality_optimized" => ("quality_first".to_string(), Some("the built-in equivalent".to_string())),
                            "cost_optimized" => {
                                if !self.strategies.iter().any(|(n, _)| n == "cost_optimized") {
                                    // The original's weights for it: cost .7, reliability .2, speed .1.
                                    self.strategies.push((
                                        "cost_optimized".to_string(),
                                        vec![("cost", 0.7), ("speed", 0.1), ("reliability", 0.2)],
                                    ));
                                }
                                ("cost_optimized".to_string(), Some("[strategies.cost_optimized] with the original's weights".to_string()))
                            }
                            _ => ("cost_first".to_string(), Some("the original's fallback for unknown names".to_string())),
                        }
                    };
                    self.routing.push(format!("default_strategy = {}", toml_text(&ours)));
                    if let Some(why) = why {
                        self.note(&at, format!("\"{name}\" → \"{ours}\" ({why})"));
                    }
                }
                "enable_fallback" => {
                    if no_fallback {
                        self.routing.push("max_attempts = 1".to_string());
                        self.note(
                            &at,
                            "false → max_attempts = 1, now honoured (the original always failed over)",
                        );
                    }
                }
                "max_retry_attempts" => {
                    if no_fallback {
                        self.note(&at, "dropped: enable_fallback is false (max_attempts = 1)");
                        continue;
                    }
                    match as_int(val) {
                        Some(n) if n >= 1 => {
                            let n = n.min(20);
                            self.routing.push(format!("max_attempts = {n}"));
                            self.note(
                                &at,
                                format!("→ max_attempts = {n}, now honoured (the original tried every candidate)"),
                            );
                        }
                        _ => self.note(&at, "not a positive integer; dropped"),
                    }
                }
                "health_check_interval" => self.note(
                    &at,
                    "dropped: health probes run per [health] interval (the original ignored this key)",
                ),
                "error_cooldown_period" => self.note(
                    &at,
                    "dropped: failures back off per [routing] cooldown_base/cooldown_max and Retry-After (the original ignored this key)",
                ),
                "model_filters" => self.note(
                    &at,
                    "dropped: embedding models are never routed to chat; context and size filters go in the model expression (e.g. tag:qwen,>=30b) or an [groups.\"auto:NAME\"] query",
                ),
                "error_handling" => self.note(
                    &at,
                    "dropped: how each upstream status is handled is fixed (429 waits Retry-After, 401/403 take the channel out, 5xx back off)",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    /// `sorting_strategies: {name: [{field, weight, order}]}` → `[strategies.NAME]`; returns
    /// (original name, our name) for each imported one. Names of our built-ins get a suffix:
    /// the validator keeps built-in weights fixed.
    fn sorting_strategies(&mut self, v: &Yaml) -> Vec<(String, String)> {
        let at = "routing.sorting_strategies";
        let Some(h) = v.as_hash() else {
            self.note(at, format!("is {}, not a mapping; dropped", describe(v)));
            return Vec::new();
        };
        let mut imported = Vec::new();
        for (k, list) in h {
            let name = key_text(k);
            let path = format!("{at}.{name}");
            let Some(items) = list.as_vec() else {
                self.note(&path, format!("is {}, not a list; dropped", describe(list)));
                continue;
            };
            let mut weights: Vec<(&'static str, f64)> = Vec::new();
            for (j, item) in items.iter().enumerate() {
                let item_at = format!("{path}[{j}]");
                let field = item
                    .as_hash()
                    .and_then(|h| h.get(&key("field")))
                    .and_then(text);
                let weight = item
                    .as_hash()
                    .and_then(|h| h.get(&key("weight")))
                    .and_then(number);
                let order = item
                    .as_hash()
                    .and_then(|h| h.get(&key("order")))
                    .and_then(text)
                    .unwrap_or_else(|| "desc".to_string());
                let ours = field.as_deref().and_then(score_name);
                match (ours, weight) {
                    (Some(_), _) if !order.eq_ignore_ascii_case("desc") => self.note(
                        &item_at,
                        format!("order \"{order}\" dropped: sub-scores only count higher as better"),
                    ),
                    (Some(f), Some(w)) if w.is_finite() && w >= 0.0 => {
                        match weights.iter_mut().find(|(n, _)| *n == f) {
                            Some((_, total)) => *total += w,
                            None => weights.push((f, w)),
                        }
                    }
                    (Some(_), _) => self.note(&item_at, "weight is not a non-negative number; dropped"),
                    (None, _) => self.note(
                        &item_at,
                        format!(
                            "field {:?} is not a sub-score (cost, speed, quality, reliability, context, parameter, free, local); dropped",
                            field.unwrap_or_default()
                        ),
                    ),
                }
            }
            if weights.iter().all(|(_, w)| *w <= 0.0) {
                self.note(&path, "no positive weight left; dropped");
                continue;
            }
            let mut ours = if crate::strategy::builtin(&name).is_some() {
                format!("{name}_imported")
            } else {
                name.clone()
            };
            while self.strategies.iter().any(|(n, _)| *n == ours) {
                ours.push('_');
            }
            weights.sort_by_key(|(f, _)| SCORE_ORDER.iter().position(|s| s == f));
            self.strategies.push((ours.clone(), weights));
            self.note(
                &path,
                format!(
                    "→ [strategies.{ours}], now honoured (the original ignored custom strategies)"
                ),
            );
            imported.push((name, ours));
        }
        imported
    }

    fn tasks(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "tasks",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("tasks.{k}");
            match k.as_str() {
                "model_discovery" => self.discovery_task(&at, val),
                "health_check" => self.note(
                    &at,
                    "dropped: channels out of rotation are probed per [health] interval",
                ),
                "api_key_validation" => self.note(
                    &at,
                    "dropped: a 401/403 takes the channel out until a probe passes",
                ),
                "pricing_discovery" | "siliconflow_pricing" | "doubao_pricing" => self.note(
                    &at,
                    "dropped: prices come from the config and from provider model lists",
                ),
                "cache_cleanup" | "stats_report" => self.note(&at, "dropped: no such job here"),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn discovery_task(&mut self, at: &str, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(at, format!("is {}, not a mapping; dropped", describe(v)));
            return;
        };
        let disabled = h.get(&key("enabled")).and_then(as_bool) == Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let path = format!("{at}.{k}");
            match k.as_str() {
                "enabled" => {
                    if !disabled {
                        continue;
                    }
                    let bare: Vec<&str> = self
                        .channels
                        .iter()
                        .filter(|c| c.models.is_empty() && c.aliases.is_empty())
                        .map(|c| c.id.as_str())
                        .collect();
                    if bare.is_empty() {
                        self.discovery.push("enabled = false".to_string());
                        self.note(&path, "false → [discovery] enabled = false, now honoured");
                    } else {
                        let list = bare.join(", ");
                        self.note(
                            &path,
                            format!("false not carried over: channels {list} list no models, so discovery stays on"),
                        );
                    }
                }
                "interval_hours" | "interval_minutes" => match number(val) {
                    Some(n) if n.is_finite() && n > 0.0 => {
                        let unit = if k == "interval_hours" { "h" } else { "m" };
                        let value = format!("{}{unit}", toml_float(n).trim_end_matches(".0"));
                        self.discovery.retain(|l| !l.starts_with("interval"));
                        self.discovery
                            .push(format!("interval = {}", toml_str(&value)));
                        self.note(
                            &path,
                            format!("→ [discovery] interval = \"{value}\", now honoured"),
                        );
                    }
                    _ => self.note(&path, "not a positive number; dropped"),
                },
                "run_on_startup" => {
                    if as_bool(val) == Some(false) && !disabled {
                        self.note(&path, "dropped: discovery always runs at start");
                    }
                }
                _ => self.note(&path, "not supported, dropped"),
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // output

    fn render(&self) -> String {
        let mut out = String::from(
            "# Converted by `smart-ai-router import` from the Python smart-ai-router's\n\
             # router_config.yaml. Every key that did not carry over as it was is listed in the\n\
             # report printed with it; review those lines, then run\n\
             # `smart-ai-router check --config FILE`. Prices are per 1M tokens; base URLs include\n\
             # the version path (the original appended /v1 at request time).\n",
        );
        let section = |out: &mut String, header: &str, lines: &[String]| {
            if !lines.is_empty() {
                let _ = writeln!(out, "\n[{header}]");
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
            }
        };
        section(&mut out, "server", &self.server);
        section(&mut out, "routing", &self.routing);
        for (name, weights) in &self.strategies {
            let lines: Vec<String> = weights
                .iter()
                .map(|(f, w)| format!("{f} = {}", toml_float(*w)))
                .collect();
            section(&mut out, &format!("strategies.{}", toml_key(name)), &lines);
        }
        section(&mut out, "discovery", &self.discovery);
        section(&mut out, "admin", &self.admin);

        for p in &self.providers {
            let _ = writeln!(out, "\n# {}", one_line(&p.comment));
            let _ = writeln!(out, "[providers.{}]", toml_key(&p.id));
            let _ = writeln!(out, "kind = {}", toml_str(p.kind));
            if let Some(u) = &p.base_url {
                let _ = writeln!(out, "base_url = {}", toml_text(u));
            }
            if let Some(a) = p.auth {
                let _ = writeln!(out, "auth = {}", toml_str(a));
            }
            if !p.headers.is_empty() {
                let _ = writeln!(out, "headers = {}", inline_table(&p.headers));
            }
        }

        for c in &self.channels {
            let _ = writeln!(out, "\n# {}", one_line(&c.comment));
            out.push_str("[[channels]]\n");
            let _ = writeln!(out, "id = {}", toml_str(&c.id));
            let _ = writeln!(
                out,
                "provider = {}",
                toml_str(&self.providers[c.provider].id)
            );
            if let Some(k) = &c.api_key {
                let _ = writeln!(out, "api_key = {}", toml_str(k));
            }
            if let Some(u) = &c.base_url {
                let _ = writeln!(out, "base_url = {}", toml_text(u));
            }
            if !c.models.is_empty() {
                let list: Vec<String> = c.models.iter().map(|m| toml_text(m)).collect();
                let _ = writeln!(out, "models = [{}]", list.join(", "));
            }
            if !c.aliases.is_empty() {
                let _ = writeln!(out, "aliases = {}", inline_table(&c.aliases));
            }
            if !c.tags.is_empty() {
                let list: Vec<String> = c.tags.iter().map(|t| toml_text(t)).collect();
                let _ = writeln!(out, "tags = [{}]", list.join(", "));
            }
            if let Some(p) = c.priority {
                let _ = writeln!(out, "priority = {p}");
            }
            if let Some(w) = c.weight {
                let _ = writeln!(out, "weight = {}", toml_float(w));
            }
            if !c.enabled {
                out.push_str("enabled = false\n");
            }
            if let Some((i, o)) = c.pricing {
                let _ = writeln!(
                    out,
                    "pricing = {{ input = {}, output = {}, currency = \"USD\" }}",
                    toml_float(i),
                    toml_float(o)
                );
            }
            if let Some(d) = &c.min_request_interval {
                let _ = writeln!(out, "min_request_interval = {}", toml_str(d));
            }
        }
        out
    }
}

// ---------------------------------------------------------------------------------------------
// providers: kinds and base URLs

/// The kind chosen for a provider of the original, and the native API it stood for when this
/// build reaches that API through its OpenAI-compatible endpoint instead.
#[derive(Debug, Clone, Copy)]
struct Pick {
    kind: &'static str,
    native: Option<&'static str>,
}

/// Picks a preset `kind` from the adapter class, the URL's host, then the provider's names.
fn pick_kind(adapter: &str, names: &[&str], url: Option<&BaseUrl>) -> Pick {
    let plain = |kind: &'static str| Pick { kind, native: None };
    let native = |n: &'static str| Pick {
        kind: "openai",
        native: Some(n),
    };
    match adapter_name(adapter).as_str() {
        "anthropic" => return native("Anthropic"),
        "gemini" | "google" => return native("Gemini"),
        "openrouter" => return plain("openrouter"),
        "groq" => return plain("groq"),
        "siliconflow" => return plain("siliconflow"),
        _ => {}
    }
    if let Some(u) = url {
        for (label, base) in COMPAT_BASES {
            if BaseUrl::parse(base).is_ok_and(|b| b.host == u.host) {
                return native(label);
            }
        }
        let same_host = PRESETS.iter().find(|p| {
            BaseUrl::parse(p.base_url).is_ok_and(|b| b.host == u.host && b.port == u.port)
        });
        if let Some(p) = same_host {
            return plain(p.kind);
        }
        if u.is_loopback() {
            match u.port {
                11434 => return plain("ollama"),
                1234 => return plain("lmstudio"),
                8000 => return plain("vllm"),
                _ => {}
            }
        }
    }
    for n in names {
        let n = n.to_ascii_lowercase();
        if let Some(p) = presets::preset(&n) {
            return plain(p.kind);
        }
        if n.contains("ollama") {
            return plain("ollama");
        }
        if n.contains("lmstudio") || n.contains("lm_studio") || n.contains("lm-studio") {
            return plain("lmstudio");
        }
        if url.is_none() && n.contains("anthropic") {
            return native("Anthropic");
        }
    }
    plain("openai")
}

/// `OpenRouterAdapter` → `openrouter`: the original matched case-insensitively, suffix optional.
fn adapter_name(adapter: &str) -> String {
    let a = adapter.trim().to_ascii_lowercase();
    a.strip_suffix("adapter").unwrap_or(&a).to_string()
}

/// The base URL a provider gets when the YAML gave none (the original's implicit provider
/// pointed at OpenAI).
fn default_base(pick: &Pick) -> &'static str {
    if let Some(n) = pick.native {
        if let Some((_, b)) = COMPAT_BASES.iter().find(|(label, _)| *label == n) {
            return b;
        }
    }
    presets::preset(pick.kind)
        .map(|p| p.base_url)
        .filter(|b| !b.is_empty())
        .unwrap_or("https://api.openai.com/v1")
}

/// The base URL as this gateway wants it, version path included, from one the original
/// appended `/v1/chat/completions` to (unless it already ended in `/v1`). A known API base
/// under the URL wins ("https://openrouter.ai/api" → ".../api/v1", Doubao's ".../api" →
/// ".../api/v3"); a URL with its own version segment is kept. The message, when there is one,
/// says how the upstream URL differs from what the original called.
fn convert_base_url(raw: &str) -> Result<(String, Option<String>), String> {
    let parsed = BaseUrl::parse(raw.trim())?;
    let url = parsed.to_url();
    let original = if url.ends_with("/v1") {
        url.clone()
    } else {
        format!("{url}/v1")
    };
    let known = PRESETS
        .iter()
        .map(|p| p.base_url)
        .chain(COMPAT_BASES.iter().map(|(_, b)| *b))
        .filter(|b| !b.is_empty())
        .find(|b| {
            b.strip_prefix(url.as_str())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        });
    let ours = match known {
        Some(b) => b.to_string(),
        None if has_version_segment(&parsed.path) => url.clone(),
        None => original.clone(),
    };
    let note = (ours != original).then(|| {
        format!(
            "the original called {original}/chat/completions; this config calls \
             {ours}/chat/completions, the provider's API"
        )
    });
    Ok((ours, note))
}

/// True when a path segment is an API version such as `v1`, `v3` or `v1beta`.
fn has_version_segment(path: &str) -> bool {
    path.split('/').any(|s| {
        let mut b = s.bytes();
        matches!(b.next(), Some(b'v' | b'V'))
            && matches!(b.next(), Some(d) if d.is_ascii_digit())
            && b.all(|c| c.is_ascii_alphanumeric())
    })
}

fn is_origin(o: &str) -> bool {
    (o.starts_with("http://") || o.starts_with("https://"))
        && !o.ends_with('/')
        && !o.bytes().any(|b| b <= b' ' || b == 0x7f)
}

// ---------------------------------------------------------------------------------------------
// ids, keys, numbers

/// Our id rule (1-64 letters, digits, '.', '_' or '-'): other characters become '-', runs of
/// '-' collapse, and an id with nothing left becomes `fallback`.
fn sanitize_id(wanted: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in wanted.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(64).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        fallback.chars().take(64).collect()
    } else {
        trimmed.to_string()
    }
}

/// `id`, or `id-2`, `id-3`, … when taken; records the one returned.
fn unique_id(id: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = id.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        let stem: String = id.chars().take(64 - suffix.len()).collect();
        candidate = format!("{stem}{suffix}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// `openrouter` → `OPENROUTER`, for suggested `${…_API_KEY}` names.
fn env_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `${VAR}` or `${VAR:-default}` as written, and `$VAR` (a shell habit the original sent
/// verbatim) as `${VAR}`; `None` for anything else.
fn env_reference(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        let name = inner.split_once(":-").map_or(inner, |(n, _)| n);
        return (is_env_name(name) && !inner.contains(['{', '}'])).then(|| s.to_string());
    }
    let name = s.strip_prefix('$')?;
    let upper = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    (upper && name.bytes().next().is_some_and(|b| !b.is_ascii_digit()))
        .then(|| format!("${{{name}}}"))
}

/// Seconds as a duration string: whole seconds as "3s", fractions as milliseconds.
fn seconds_to_duration(s: f64) -> String {
    if s.fract() == 0.0 && s < 1e12 {
        format!("{}s", s as u64)
    } else {
        format!("{}ms", (s * 1000.0).round().max(1.0) as u64)
    }
}

/// Rounds away float noise from unit conversion (0.0000004 × 1e6 = 0.39999999999999997).
fn tidy(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

/// Sub-score names in the order `[strategies.*]` lists them.
const SCORE_ORDER: &[&str] = &[
    "cost",
    "speed",
    "quality",
    "reliability",
    "context",
    "parameters",
    "free",
    "local",
];

/// The original's `cost_score`, `parameter_score`, … → our sub-score name.
fn score_name(field: &str) -> Option<&'static str> {
    let f = field.trim().to_ascii_lowercase();
    let f = f.strip_suffix("_score").unwrap_or(&f);
    match f {
        "parameter" | "parameters" | "params" => Some("parameters"),
        other => SCORE_ORDER.iter().find(|s| **s == other).copied(),
    }
}

// ---------------------------------------------------------------------------------------------
// YAML access: lenient the way PyYAML was (YAML 1.1 `yes`/`no`, numbers written as strings)

fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

fn key_text(k: &Yaml) -> String {
    text(k).unwrap_or_else(|| format!("<{}>", describe(k)))
}

/// A scalar as text (numbers too: model ids and keys can look like numbers).
fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn number(v: &Yaml) -> Option<f64> {
    match v {
        Yaml::Integer(i) => Some(*i as f64),
        Yaml::Real(_) => v.as_f64(),
        Yaml::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

fn as_int(v: &Yaml) -> Option<i64> {
    match v {
        Yaml::Integer(i) => Some(*i),
        _ => number(v)
            .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
            .map(|x| x as i64),
    }
}

fn as_bool(v: &Yaml) -> Option<bool> {
    match v {
        Yaml::Boolean(b) => Some(*b),
        Yaml::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Some(true),
            "false" | "no" | "off" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

fn is_empty_map(v: &Yaml) -> bool {
    v.is_null() || v.as_hash().is_some_and(|h| h.is_empty())
}

fn describe(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Null => "empty",
        Yaml::Alias(_) | Yaml::BadValue => "unreadable",
    }
}

/// Resolves YAML 1.1 merge keys (`<<: *defaults`), which PyYAML honoured and YAML 1.2 parsers
/// leave as a plain `<<` key: the mapping's own keys win over merged ones.
fn apply_merge_keys(v: Yaml) -> Yaml {
    match v {
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(apply_merge_keys).collect()),
        Yaml::Hash(h) => {
            let mut own = yaml_rust2::yaml::Hash::new();
            let mut merged = Vec::new();
            for (k, val) in h {
                if k.as_str() == Some("<<") {
                    match apply_merge_keys(val) {
                        Yaml::Hash(m) => merged.push(m),
                        Yaml::Array(list) => {
                            merged.extend(list.into_iter().filter_map(Yaml::into_hash))
                        }
                        _ => {}
                    }
                } else {
                    own.insert(k, apply_merge_keys(val));
                }
            }
            for m in merged {
                for (k, val) in m {
                    if !own.contains_key(&k) {
                        own.insert(k, val);
                    }
                }
            }
            Yaml::Hash(own)
        }
        other => other,
    }
}

/// "not valid YAML at line 3, column 5: …", with the duplicate-key message's key as written
/// rather than as the parser's Rust value (`String("id")`).
fn yaml_error(e: &ScanError) -> String {
    let info = e.info();
    let info = match info.strip_suffix(": duplicated key in mapping") {
        Some(k) => {
            let k = k
                .strip_prefix("String(")
                .and_then(|k| k.strip_suffix(')'))
                .unwrap_or(k);
            format!("duplicate key {k} in a mapping")
        }
        None => info.to_string(),
    };
    format!(
        "not valid YAML at line {}, column {}: {info}",
        e.marker().line(),
        e.marker().col() + 1
    )
}

// ---------------------------------------------------------------------------------------------
// TOML output

/// A TOML string value holding text the original took literally: our loader expands `${VAR}`
/// in every string value, so `${` is written as its escape `$${`.
fn toml_text(s: &str) -> String {
    toml_str(&s.replace("${", "$${"))
}

/// A TOML basic string, as is: for keys, generated values and `${VAR}` references.
fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bare key when TOML allows one, else a quoted key (model ids have dots and slashes).
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        toml_str(k)
    }
}

/// A TOML float: always with a fraction or exponent so it never reads as an integer, and in
/// exponent form when plain digits would run long.
fn toml_float(x: f64) -> String {
    let s = if x != 0.0 && !(1e-6..1e16).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    };
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn inline_table(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_text(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Comments are one line: a display name with a newline would end the comment early.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_base_urls_gain_the_path_the_original_appended() {
        let conv = |u: &str| convert_base_url(u).unwrap();
        assert_eq!(
            conv("https://api.openai.com"),
            ("https://api.openai.com/v1".into(), None)
        );
        assert_eq!(
            conv("https://openrouter.ai/api/"),
            ("https://openrouter.ai/api/v1".into(), None)
        );
        assert_eq!(
            conv("https://burn.hair"),
            ("https://burn.hair/v1".into(), None)
        );
        assert_eq!(
            conv("http://localhost:11434"),
            ("http://localhost:11434/v1".into(), None)
        );
        // Version paths the original broke by appending /v1 are kept, and said so.
        let (url, note) = conv("https://ark.cn-beijing.volces.com/api");
        assert_eq!(url, "https://ark.cn-beijing.volces.com/api/v3");
        assert!(note.unwrap().contains("/api/v1/chat/completions"));
        let (url, note) = conv("https://example.com/api/paas/v4");
        assert_eq!(url, "https://example.com/api/paas/v4");
        assert!(note.is_some());
        assert!(convert_base_url("ftp://x").is_err());
    }

    #[test]
    fn import_kinds_follow_adapter_host_then_name() {
        let url = |u: &str| BaseUrl::parse(u).unwrap();
        let k = |a: &str, n: &str, u: Option<&str>| pick_kind(a, &[n], u.map(url).as_ref()).kind;
        assert_eq!(k("OpenRouterAdapter", "x", None), "openrouter");
        assert_eq!(
            k("OpenAIAdapter", "x", Some("https://api.groq.com/openai")),
            "groq"
        );
        assert_eq!(
            k("OpenAIAdapter", "x", Some("http://localhost:11434")),
            "ollama"
        );
        assert_eq!(
            k("OpenAIAdapter", "deepseek", Some("https://proxy.example")),
            "deepseek"
        );
        assert_eq!(
            k("OpenAIAdapter", "mine", Some("https://proxy.example")),
            "openai"
        );
        let a = pick_kind("AnthropicAdapter", &["claude"], None);
        assert_eq!((a.kind, a.native), ("openai", Some("Anthropic")));
    }

    #[test]
    fn import_ids_are_sanitized_and_unique() {
        assert_eq!(sanitize_id("Claude 3.5 / main", "x"), "Claude-3.5-main");
        assert_eq!(sanitize_id("渠道", "channel-3"), "channel-3");
        assert_eq!(sanitize_id(&"a".repeat(80), "x").len(), 64);
        let mut taken = HashSet::new();
        assert_eq!(unique_id("a", &mut taken), "a");
        assert_eq!(unique_id("a", &mut taken), "a-2");
        assert_eq!(unique_id("a", &mut taken), "a-3");
        let long = "b".repeat(64);
        unique_id(&long, &mut taken);
        assert_eq!(unique_id(&long, &mut taken).len(), 64);
    }

    #[test]
    fn import_env_references_and_escapes() {
        assert_eq!(
            env_reference("${OPENAI_API_KEY}").as_deref(),
            Some("${OPENAI_API_KEY}")
        );
        assert_eq!(env_reference("${K:-sk-x}").as_deref(), Some("${K:-sk-x}"));
        assert_eq!(env_reference("$GROQ_KEY").as_deref(), Some("${GROQ_KEY}"));
        assert_eq!(env_reference("sk-abc"), None);
        assert_eq!(env_reference("${not a name}"), None);
        assert_eq!(env_reference("$lower"), None);
    }

    #[test]
    fn import_numbers_render_as_toml_floats() {
        assert_eq!(toml_float(tidy(0.0000004 * 1e6)), "0.4");
        assert_eq!(toml_float(tidy(0.00000015 * 1e6)), "0.15");
        assert_eq!(toml_float(150.0), "150.0");
        assert_eq!(toml_float(1e308), "1e308");
        assert_eq!(toml_float(2.5e-9), "2.5e-9");
        assert_eq!(seconds_to_duration(3.0), "3s");
        assert_eq!(seconds_to_duration(0.5), "500ms");
        assert_eq!(toml_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(toml_key("gpt-4o"), "gpt-4o");
        assert_eq!(toml_key("qwen3:8b"), "\"qwen3:8b\"");
    }

    #[test]
    fn import_merge_keys_fill_missing_keys_only() {
        let docs = YamlLoader::load_from_str(
            "base: &b {enabled: false, tags: [x]}\nch: {<<: *b, tags: [y]}\n",
        )
        .unwrap();
        let root = apply_merge_keys(docs.into_iter().next().unwrap());
        let ch = &root["ch"];
        assert_eq!(ch["enabled"].as_bool(), Some(false));
        assert_eq!(ch["tags"][0].as_str(), Some("y"));
        assert!(ch.as_hash().unwrap().get(&key("<<")).is_none());
    }

    #[test]
    fn import_rejects_what_is_not_a_config() {
        assert!(convert("").unwrap_err().contains("no YAML document"));
        assert!(convert("- a\n- b\n").unwrap_err().contains("not a mapping"));
        let e = convert("channels: [\n  - id: x\n").unwrap_err();
        assert!(e.starts_with("not valid YAML at line 2, column 3"), "{e}");
        let e = convert("a: 1\na: 2\n").unwrap_err();
        assert!(e.contains("duplicate key \"a\""), "{e}");
    }

    #[test]
    fn import_minimal_channel_validates() {
        let c = convert(
            "providers:\n  openai: {name: openai, adapter_class: OpenAIAdapter, base_url: https://api.openai.com}\n\
             channels:\n  - {id: a, name: A, provider: openai, model_name: gpt-4o-mini, api_key: '${K}'}\n",
        )
        .unwrap();
        assert!(c.report.is_empty(), "{:?}", c.report);
        assert!(c.toml.contains("api_key = \"${K}\""), "{}", c.toml);
    }
}
