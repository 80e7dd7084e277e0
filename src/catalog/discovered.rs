//! What a provider's model list says about its models: the formats providers use, read into one
//! shape, and written back as the discovery cache's JSON.
//!
//! Accepted bodies: `{"data": [...]}` (OpenAI, OpenRouter, Groq …), a bare list (of objects or
//! of id strings), and `{"models": [...]}` (Ollama `/api/tags`, Gemini). Per model: the id from
//! `id`, `name` (Gemini's `models/` prefix dropped) or `model`; context from `context_length`,
//! `context_window`, `max_context_length`, `inputTokenLimit` or `top_provider.context_length`;
//! output limit from `max_completion_tokens`, `max_output_tokens`, `outputTokenLimit` or
//! `top_provider.max_completion_tokens`; OpenRouter-style `pricing` (USD per token, as strings
//! or numbers) kept per 1M tokens; `architecture.input_modalities` / `input_modalities`
//! containing `image` → vision; `supported_parameters` with `tools` → tools, with
//! `response_format` or `structured_outputs` → JSON mode.
//!
//! The discovery cache stores lists in its own line format ([`to_cache`], [`from_cache`]).
//!
//! Invariants: pure functions; malformed entries are skipped, never fatal; ids are validated
//! like configured ones (1–256 characters, no control characters).

use std::collections::HashMap;
use std::sync::Arc;

use simd_json::prelude::*;

/// One discovered model.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Discovered {
    /// The model id.
    pub id: Box<str>,
    /// Context length in tokens.
    pub context: Option<u32>,
    /// Longest completion in tokens.
    pub max_output: Option<u32>,
    /// USD per 1M (prompt, completion) tokens.
    pub price: Option<(f64, f64)>,
    /// Takes images.
    pub vision: Option<bool>,
    /// Calls tools.
    pub tools: Option<bool>,
    /// JSON mode.
    pub json: Option<bool>,
}

/// Discovered models per channel id.
pub(crate) type DiscoveryMap = HashMap<String, Arc<[Discovered]>>;

/// Reads a model-list response body.
pub fn parse(body: &[u8]) -> Result<Vec<Discovered>, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_borrowed_value(&mut copy).map_err(|e| format!("not JSON: {e}"))?;
    let list = if let Some(a) = v.as_array() {
        a
    } else if let Some(a) = v.get("data").and_then(|d| d.as_array()) {
        a
    } else if let Some(a) = v.get("models").and_then(|d| d.as_array()) {
        a
    } else {
        return Err("expected {\"data\": [...]}, {\"models\": [...]} or a list".into());
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list {
        if let Some(d) = model(item) {
            out.push(d);
        }
    }
    Ok(out)
}

fn num(v: Option<&simd_json::BorrowedValue<'_>>) -> Option<f64> {
    let v = v?;
    v.as_f64()
        .or_else(|| v.as_u64().map(|n| n as f64))
        .or_else(|| v.as_i64().map(|n| n as f64))
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .filter(|x| x.is_finite() && *x >= 0.0)
}

fn tokens(v: Option<&simd_json::BorrowedValue<'_>>) -> Option<u32> {
    num(v)
        .filter(|x| *x >= 1.0)
        .map(|x| x.min(f64::from(u32::MAX)) as u32)
}

fn strings_contain(v: Option<&simd_json::BorrowedValue<'_>>, words: &[&str]) -> Option<bool> {
    let a = v?.as_array()?;
    Some(
        a.iter()
            .filter_map(|x| x.as_str())
            .any(|s| words.iter().any(|w| s.eq_ignore_ascii_case(w))),
    )
}

fn model(item: &simd_json::BorrowedValue<'_>) -> Option<Discovered> {
    let id = if let Some(s) = item.as_str() {
        s.to_string()
    } else {
        let raw = ["id", "name", "model"]
            .iter()
            .find_map(|k| item.get(*k).and_then(|v| v.as_str()))?;
        raw.strip_prefix("models/").unwrap_or(raw).to_string()
    };
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return None;
    }
    let top = item.get("top_provider");
    let context = [
        "context_length",
        "context_window",
        "max_context_length",
        "inputTokenLimit",
    ]
    .iter()
    .find_map(|k| tokens(item.get(*k)))
    .or_else(|| tokens(top.and_then(|t| t.get("context_length"))));
    let max_output = [
        "max_completion_tokens",
        "max_output_tokens",
        "outputTokenLimit",
    ]
    .iter()
    .find_map(|k| tokens(item.get(*k)))
    .or_else(|| tokens(top.and_then(|t| t.get("max_completion_tokens"))));
    let price = item.get("pricing").and_then(|p| {
        let prompt = num(p.get("prompt"))?;
        let completion = num(p.get("completion"))?;
        Some((prompt * 1e6, completion * 1e6))
    });
    let modalities = item
        .get("architecture")
        .and_then(|a| a.get("input_modalities"))
        .or_else(|| item.get("input_modalities"));
    let params = item.get("supported_parameters");
    Some(Discovered {
        id: id.into(),
        context,
        max_output,
        price,
        vision: strings_contain(modalities, &["image"]),
        tools: strings_contain(params, &["tools"]),
        json: strings_contain(params, &["response_format", "structured_outputs"]),
    })
}

/// First line of a cache file (the format's name and version).
const CACHE_HEADER: &str = "# smart-ai-router discovery cache v1: id, context, max output, USD per 1M input, USD per 1M output, vision, tools, json (- unknown)";

/// The cache form of a model list: a header line, then one line per model with eight
/// tab-separated fields (read back by [`from_cache`]). Not JSON on purpose: a warm restart
/// reads thousands of entries before serving, and this reads ~10× faster. Ids never contain a
/// tab or a newline (control characters are refused at parse time).
pub(crate) fn to_cache(models: &[Discovered]) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut t = String::with_capacity(CACHE_HEADER.len() + 1 + models.len() * 64);
    t.push_str(CACHE_HEADER);
    t.push('\n');
    let flag = |f: Option<bool>| match f {
        None => "-",
        Some(true) => "1",
        Some(false) => "0",
    };
    for m in models {
        let num = |n: Option<u32>| n.map_or("-".to_string(), |n| n.to_string());
        let (pin, pout) = m
            .price
            .map_or(("-".to_string(), "-".to_string()), |(i, o)| {
                (i.to_string(), o.to_string())
            });
        let _ = writeln!(
            t,
            "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
            m.id,
            num(m.context),
            num(m.max_output),
            pin,
            pout,
            flag(m.vision),
            flag(m.tools),
            flag(m.json)
        );
    }
    t.into_bytes()
}

/// Reads a cache file written by [`to_cache`]; malformed lines are skipped, a wrong header is
/// an error.
pub(crate) fn from_cache(bytes: &[u8]) -> Result<Vec<Discovered>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
    let mut lines = text.lines();
    if lines.next() != Some(CACHE_HEADER) {
        return Err("not a v1 discovery cache file".into());
    }
    let flag = |f: &str| match f {
        "1" => Some(true),
        "0" => Some(false),
        _ => None,
    };
    let mut out = Vec::new();
    for line in lines {
        let f: Vec<&str> = line.split('\t').collect();
        let [id, ctx, max_out, pin, pout, vision, tools, json] = f[..] else {
            continue;
        };
        if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
            continue;
        }
        let price = match (pin.parse::<f64>(), pout.parse::<f64>()) {
            (Ok(i), Ok(o)) if i.is_finite() && o.is_finite() && i >= 0.0 && o >= 0.0 => {
                Some((i, o))
            }
            _ => None,
        };
        out.push(Discovered {
            id: id.into(),
            context: ctx.parse().ok().filter(|&n| n > 0),
            max_output: max_out.parse().ok().filter(|&n| n > 0),
            price,
            vision: flag(vision),
            tools: flag(tools),
            json: flag(json),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_openrouter_style() {
        let body = br#"{"object":"list","data":[
            {"id":"gpt-4o-mini","object":"model","owned_by":"openai"},
            {"id":"qwen/qwen3-30b-a3b:free","context_length":40960,
             "pricing":{"prompt":"0.00000015","completion":"0.0000006"},
             "architecture":{"input_modalities":["text","image"]},
             "top_provider":{"max_completion_tokens":8192},
             "supported_parameters":["tools","tool_choice","response_format"]},
            {"object":"model"}, {"id":""}
        ]}"#;
        let m = parse(body).unwrap();
        assert_eq!(m.len(), 2, "entries without an id are skipped");
        assert_eq!(&*m[0].id, "gpt-4o-mini");
        let q = &m[1];
        assert_eq!(q.context, Some(40960));
        assert_eq!(q.max_output, Some(8192));
        let (p, c) = q.price.unwrap();
        assert!((p - 0.15).abs() < 1e-9 && (c - 0.6).abs() < 1e-9);
        assert_eq!(
            (q.vision, q.tools, q.json),
            (Some(true), Some(true), Some(true))
        );
    }

    #[test]
    fn bare_lists_ollama_and_gemini() {
        assert_eq!(parse(br#"["a","b"]"#).unwrap().len(), 2);
        assert_eq!(&*parse(br#"[{"id":"x"}]"#).unwrap()[0].id, "x");
        let ollama = br#"{"models":[{"name":"qwen3:8b","model":"qwen3:8b","size":5}]}"#;
        assert_eq!(&*parse(ollama).unwrap()[0].id, "qwen3:8b");
        let gemini = br#"{"models":[{"name":"models/gemini-2.0-flash","inputTokenLimit":1048576,"outputTokenLimit":8192}]}"#;
        let g = &parse(gemini).unwrap()[0];
        assert_eq!(
            (&*g.id, g.context, g.max_output),
            ("gemini-2.0-flash", Some(1_048_576), Some(8192))
        );
        assert!(parse(b"{}").is_err());
        assert!(parse(b"nope").is_err());
    }

    #[test]
    fn cache_form_round_trips() {
        let m = vec![
            Discovered {
                id: "a\"b/c:free".into(),
                context: Some(128_000),
                max_output: Some(4096),
                price: Some((2.5, 10.0)),
                vision: Some(true),
                tools: Some(true),
                json: Some(false),
            },
            Discovered {
                id: "plain".into(),
                ..Default::default()
            },
        ];
        let back = from_cache(&to_cache(&m)).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[0].id, m[0].id);
        assert_eq!(back[0].context, m[0].context);
        assert_eq!(back[0].vision, Some(true));
        assert_eq!(back[0].tools, Some(true));
        assert_eq!(back[0].json, Some(false));
        let (p, c) = back[0].price.unwrap();
        assert!((p - 2.5).abs() < 1e-9 && (c - 10.0).abs() < 1e-9);
        assert_eq!(back[1], m[1]);
        assert!(from_cache(b"{\"data\": []}").is_err());
        // a line with a wrong field count is skipped, the rest survive
        let mut text = to_cache(&m);
        text.extend_from_slice(b"broken\tline\n");
        assert_eq!(from_cache(&text).unwrap().len(), 2);
    }
}
