//! `providers:` → `[providers.ID]`: the kind (from the adapter class, the URL's host, then the
//! names), the base URL with the version path the original appended at request time, the auth
//! style and headers; and the implicit provider the original made for a channel naming none.

use yaml_rust2::Yaml;

use super::values::{sanitize_id, unique_id};
use super::yaml::{describe, key, key_text, text};
use super::{Importer, ProviderOut};
use crate::config::BaseUrl;
use crate::presets::{self, PRESETS};

/// Native APIs the original named, with the OpenAI-compatible endpoint each also serves. The
/// original sent them OpenAI requests, so such providers become `kind = "openai"` there: the
/// same wire format, at a path that takes it (`kind = "anthropic"`/`"gemini"` would speak the
/// native APIs instead).
const COMPAT_BASES: &[(&str, &str)] = &[
    ("Anthropic", "https://api.anthropic.com/v1"),
    (
        "Gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
    ),
];

impl Importer {
    pub(super) fn providers(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("providers", v) else {
            return;
        };
        for (k, p) in h {
            self.provider(&key_text(k), p);
        }
    }

    fn provider(&mut self, yaml_key: &str, v: &Yaml) {
        let path = format!("providers.{yaml_key}");
        let Some(h) = self.mapping(&path, v) else {
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
                                 endpoint, the wire format the original spoke (kind = \"{}\" speaks \
                                 {native}'s native API)",
                                native.to_ascii_lowercase()
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
        let Some(h) = self.mapping(at, v) else {
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
    pub(super) fn provider_for_channel(
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
}

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
    if let Some(n) = pick.native
        && let Some((_, b)) = COMPAT_BASES.iter().find(|(label, _)| *label == n)
    {
        return b;
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
pub(super) fn convert_base_url(raw: &str) -> Result<(String, Option<String>), String> {
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
}
