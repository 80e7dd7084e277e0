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
//!   suggests a `${VAR}` reference instead. The client token (`auth.api_token`) is the
//!   exception: the config keeps client keys as SHA-256 digests, so only its digest is written.
//! * [`convert`] returns TOML only after [`Config::parse`] accepted it (with every `${VAR}`
//!   standing in as set); anything else is an error, never a half-valid file.
//! * Every key of the YAML is accounted for: mapped, kept as a TOML comment (display names),
//!   reported, or passed over only when its value already is this gateway's behaviour
//!   (`debug: false`, `auth.enabled: false`, `auth_type: bearer`, …). Unknown keys are reported,
//!   never silently dropped as the original did.
//!
//! # Layout
//! [`convert`] and the conversion state are here; each part of the YAML has its file
//! (`providers`, `channels`, `server` with `auth`, `routing` with `tasks`), `render` writes the
//! TOML, `yaml` reads the YAML leniently, `values` shapes ids, `${VAR}` references and numbers.
//!
//! # Not here
//! * No I/O: text in, text out. `main` reads the YAML and writes the TOML.
//! * The original's bugs are not carried over: priorities keep their meaning (lower was better
//!   there, higher is better here), native Anthropic/Gemini providers use their OpenAI-compatible
//!   endpoints instead of receiving OpenAI requests on a native path, and version paths such as
//!   `/api/v3` are no longer turned into `/api/v3/v1`.

mod channels;
mod providers;
mod render;
mod routing;
mod server;
mod values;
mod yaml;

use std::collections::HashSet;

use yaml_rust2::{Yaml, YamlLoader};

use crate::config::Config;
use yaml::{apply_merge_keys, as_bool, describe, key, key_text, yaml_error};

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
            "cost_control" => im.cost_control(v),
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

/// The name the original's `auth.api_token` gets as a client key (in logs, metrics, records).
const IMPORTED_KEY: &str = "imported";

/// Secrets shorter than this are not redacted from messages (a key like "ollama" would mangle
/// every provider name); the report never includes key values in the first place.
const REDACT_MIN_LEN: usize = 8;

/// A `[providers.ID]` table to write, and what channels may call it by.
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

/// A `[[channels]]` table to write (values already converted; `None`: the key is left out).
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
    /// The original's `daily_limit` (requests per UTC day).
    daily_request_limit: Option<i64>,
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
    pricing: Vec<String>,
    /// `[[auth.keys]]`: name and the SHA-256 of the key, in hex (never the key).
    client_keys: Vec<(String, String)>,
}

impl Importer {
    fn note(&mut self, path: &str, message: impl AsRef<str>) {
        self.report.push(format!("{path}: {}", message.as_ref()));
    }

    /// `v` as a mapping; anything else is reported at `path` (`is a list, not a mapping;
    /// dropped`) and gives `None`.
    fn mapping<'y>(&mut self, path: &str, v: &'y Yaml) -> Option<&'y yaml_rust2::yaml::Hash> {
        let h = v.as_hash();
        if h.is_none() {
            self.note(path, format!("is {}, not a mapping; dropped", describe(v)));
        }
        h
    }

    fn remember_secret(&mut self, s: &str) {
        if s.len() >= REDACT_MIN_LEN {
            self.secrets.push(s.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
