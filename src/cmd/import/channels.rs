//! `channels:` → `[[channels]]`: ids, base URL and provider, models and aliases, tags,
//! priority (inverted: the original preferred lower numbers), weight, keys (a `${VAR}`
//! reference or a literal, never reported), prices converted to per 1M tokens.

use yaml_rust2::Yaml;

use super::providers::convert_base_url;
use super::render::toml_float;
use super::values::{
    env_reference, env_stem, is_env_name, sanitize_id, seconds_to_duration, tidy, unique_id,
};
use super::yaml::{as_bool, as_int, describe, is_empty_map, key, key_text, number, text};
use super::{ChannelOut, Importer, MAX_INTERVAL_SECS, ORIGINAL_DEFAULT_PRIORITY};
use crate::config::BaseUrl;

impl Importer {
    pub(super) fn channels(&mut self, v: &Yaml) {
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
        let Some(h) = self.mapping(&path, v) else {
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
            daily_request_limit: None,
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
                "daily_limit" => match as_int(val) {
                    Some(n) if n > 0 => {
                        out.daily_request_limit = Some(n);
                        self.note(
                            &at,
                            format!("→ daily_request_limit = {n}, now enforced: after {n} requests in a UTC day the channel leaves rotation until midnight (the original never counted them)"),
                        );
                    }
                    _ => self.note(&at, "not a positive whole number of requests; dropped"),
                },
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
                    if let Some(lit) = &literal
                        && env_reference(lit).is_none()
                    {
                        self.remember_secret(lit);
                        self.note(
                            &format!("{path}.api_key"),
                            format!("channel \"{id}\": literal key not carried over; api_key_env ({name}) is used instead"),
                        );
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
}
