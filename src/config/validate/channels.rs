//! `[[channels]]`: one provider endpoint, one key, its models; with per-model facts
//! (`model_info`), quotas, rate limits and the JSON members added to every request body.

use std::collections::HashSet;
use std::time::Duration;

use super::pricing::price;
use super::{Checker, rate_spec, raw, valid_id};
use crate::config::{
    BaseUrl, ChannelConfig, DailyLimits, ModelInfo, ProviderConfig, closest, defaults,
};
use crate::secret::Secret;

/// Every `[[channels]]` entry that validates, in file order; then each must have a base URL of
/// its own or its provider's.
pub(super) fn channels(
    c: &mut Checker,
    raw: Vec<raw::Channel>,
    providers: &[ProviderConfig],
    discovery_on: bool,
) -> Vec<ChannelConfig> {
    let mut channels = Vec::new();
    let mut ids = HashSet::new();
    for (i, ch) in raw.into_iter().enumerate() {
        if let Some(ch) = channel(c, i, ch, providers, &mut ids, discovery_on) {
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
    channels
}

/// One `[[channels]]` entry, or `None` when it has a problem (reported).
fn channel(
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
    let pricing = ch.pricing.and_then(|p| price(c, &at("pricing"), p));
    let mut model_info = Vec::new();
    for (m, info) in ch.model_info.unwrap_or_default() {
        let path = format!("channels[{i}].model_info.\"{m}\"");
        if !models.contains(&m) && !aliases.iter().any(|(_, t)| *t == m) {
            c.err(
                &path,
                format!("\"{m}\" is not one of this channel's models; list it in models first"),
            );
        }
        model_info.push((m, model_facts(c, &path, info)));
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

/// A model id or alias: 1-256 characters, none of them control characters.
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

/// `model_info."MODEL"`: what config says about one model (context, size, capabilities,
/// quality, price).
fn model_facts(c: &mut Checker, path: &str, m: raw::ModelInfo) -> ModelInfo {
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
        .and_then(|p| price(c, &format!("{path}.pricing"), p));
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
