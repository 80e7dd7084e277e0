//! The OpenAI dialect's ingress: what the gateway reads from a client's chat-completions (or
//! completions, embeddings) body before routing it: the model expression, `stream`, the
//! capabilities the body needs, a prompt estimate, the router-only fields, and the edits that
//! turn the client's bytes into the upstream's (the `model` value, router fields,
//! `stream_options`). The canonical form is this dialect, so there is no translation here.
//!
//! Invariants: the body is forwarded byte for byte except the [`Edit`]s returned; simd-json
//! parses a padded copy (it rewrites its input while unescaping) held in the worker's
//! [`JsonScratch`]; the byte scanner (`super::scan`) runs only on bodies simd-json has
//! already validated, and nothing here panics on any input. Client mistakes are 400s
//! ([`Error`]). Not here: routing on the features (`routing`), applying the edits (`proxy`).

use std::ops::Range;

use simd_json::prelude::*;

use crate::error::{Error, Kind};
use crate::expr::Caps;
use crate::presets::Fields;
use crate::strategy::Options;
use crate::tokens::estimate;

use super::scan::{Member, key_matches, top_level_members};

/// simd-json's reusable buffers, one set per worker.
pub struct JsonScratch {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch {
            input: Vec::new(),
            buffers: simd_json::Buffers::new(4096),
            tape: simd_json::Tape::null(),
        }
    }
}

impl std::fmt::Debug for JsonScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonScratch")
            .field("input_capacity", &self.input.capacity())
            .finish_non_exhaustive()
    }
}

/// A targeted edit of the forwarded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Edit {
    /// Replace a top-level `model` value with the upstream's model id.
    Model(Range<usize>),
    /// Remove a router-only member (with one adjacent comma).
    Remove(Range<usize>),
    /// A top-level `stream_options` member (with one adjacent comma, like `Remove`): dropped
    /// when the gateway writes its own (it always wants the usage of a stream), else kept
    /// verbatim. Its range is laid out like a removal's, so keeping any subset of these
    /// verbatim still leaves the members joined by single commas.
    StreamOptions(Range<usize>),
}

impl Edit {
    /// The byte range edited.
    pub fn range(&self) -> &Range<usize> {
        match self {
            Edit::Model(r) | Edit::Remove(r) | Edit::StreamOptions(r) => r,
        }
    }
}

/// The request features routing and proxying need.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// The `model` value (a model id or expression).
    pub model: Box<str>,
    /// `stream: true`.
    pub stream: bool,
    /// Edits of the original body, sorted, non-overlapping.
    pub edits: Vec<Edit>,
    /// Capabilities the body needs (images → vision, tools → tools, JSON response format).
    pub needs: Caps,
    /// Estimated prompt tokens (see [`estimate`]).
    pub prompt_tokens: u32,
    /// `max_tokens` or `max_completion_tokens`.
    pub max_tokens: Option<u32>,
    /// `temperature`, if a number (for the request's trace span).
    pub temperature: Option<f32>,
    /// Router-only `strategy` field.
    pub strategy: Option<Box<str>>,
    /// Router-only option fields.
    pub options: Options,
    /// `stream_options.include_usage` as the client sent it (`None`: no `stream_options`).
    /// With duplicate `stream_options` members the last one counts, as in most JSON parsers.
    pub usage_asked: Option<bool>,
    /// The value of the last top-level `stream_options` member when it is an object: its
    /// members other than `include_usage` are carried into the one the gateway writes.
    pub stream_options: Option<Range<usize>>,
    /// Router-only `strip_think`: remove `<think>…</think>` blocks from a whole answer.
    pub strip_think: bool,
    /// Fields only some families can honour (`logprobs`, `n` > 1, …): routing keeps the
    /// request to channels that have them ([`crate::presets::Family::lacks`]).
    pub fields: Fields,
}

/// Router-only body fields: accepted, applied, and removed before forwarding.
pub const ROUTER_FIELDS: &[&str] = &[
    "strategy",
    "required_capabilities",
    "max_cost_per_1k",
    "prefer_local",
    "exclude_providers",
    "strip_think",
];

/// Largest body kept in the scratch buffer between requests (larger ones are freed after use).
const KEEP_SCRATCH: usize = 1 << 20;

/// Checks that `body` is one well-formed JSON document (an upstream's whole 2xx answer, before
/// the client sees a byte of it), parsing into the worker's reused scratch: nothing is built
/// or kept. `Err` says what is wrong.
pub(crate) fn validate(body: &[u8], scratch: &mut JsonScratch) -> Result<(), String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err("the body is empty".into());
    }
    let len = body.len();
    scratch.input.clear();
    scratch.input.reserve(len + simd_json::INPUT_PADDING);
    scratch.input.extend_from_slice(body);
    scratch.input.resize(len + simd_json::INPUT_PADDING, 0);
    let mut tape = std::mem::replace(&mut scratch.tape, simd_json::Tape::null()).reset();
    let parsed =
        simd_json::fill_tape_padded(&mut scratch.input, len, &mut scratch.buffers, &mut tape)
            .map_err(|e| e.to_string());
    scratch.tape = tape.reset();
    if scratch.input.capacity() > KEEP_SCRATCH {
        // A large answer's working set is not kept for good (as for large requests).
        *scratch = JsonScratch::default();
    }
    parsed
}

/// Reads the features of a chat-completions body, or the 400 that explains what is wrong.
pub fn extract(body: &[u8], scratch: &mut JsonScratch) -> Result<Features, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "empty_body",
            "The request body is empty; send a JSON object with `model` and `messages`.",
        ));
    }
    let len = body.len();
    scratch.input.clear();
    scratch.input.reserve(len + simd_json::INPUT_PADDING);
    scratch.input.extend_from_slice(body);
    scratch.input.resize(len + simd_json::INPUT_PADDING, 0);
    let mut tape = std::mem::replace(&mut scratch.tape, simd_json::Tape::null()).reset();
    let parsed =
        simd_json::fill_tape_padded(&mut scratch.input, len, &mut scratch.buffers, &mut tape);
    let result = match parsed {
        Err(e) => Err(Error::bad_request(
            "invalid_json",
            format!(
                "We could not parse the JSON body of your request ({e}). Send a JSON object, \
                 e.g. {{\"model\": \"gpt-4o-mini\", \"messages\": [...]}}."
            ),
        )),
        Ok(()) => read_features(&tape),
    };
    scratch.tape = tape.reset();
    if scratch.input.capacity() > KEEP_SCRATCH {
        // simd-json's buffers grew with the body too: a worker must not keep a large
        // request's working set for good.
        *scratch = JsonScratch::default();
    }
    let mut f = result?;
    f.edits = member_edits(body, true, &mut |value| {
        // The last copy is the one a JSON parser keeps.
        f.usage_asked = stream_options_usage(&body[value.clone()]);
        f.stream_options = (body.get(value.start) == Some(&b'{')).then(|| value.clone());
    });
    if !f.edits.iter().any(|e| matches!(e, Edit::Model(_))) {
        // simd-json saw the key but the scanner did not: refuse rather than forward unedited.
        return Err(Error::bad_request(
            "invalid_json",
            "The `model` field could not be located in the request body.",
        ));
    }
    // Members come in order and removals never reach into a kept member: already sorted and
    // disjoint.
    Ok(f)
}

/// The edits that turn a client's body in its own family (an Anthropic or Gemini request sent
/// on to a channel of the same family) into the upstream's: the top-level `model` value
/// replaced, router fields removed. Everything else stays byte for byte.
pub(crate) fn native_edits(body: &[u8]) -> Vec<Edit> {
    member_edits(body, false, &mut |_| {})
}

/// The top-level members of `body` to edit: `model` (replaced), router fields (removed) and,
/// with `stream_options`, the client's `stream_options` (its value range goes to `seen`).
fn member_edits(
    body: &[u8],
    stream_options: bool,
    seen: &mut dyn FnMut(&Range<usize>),
) -> Vec<Edit> {
    let members = top_level_members(body);
    let is_router = |m: &Member| {
        ROUTER_FIELDS
            .iter()
            .any(|k| key_matches(&body[m.key.clone()], k.as_bytes()))
    };
    let is_stream_options =
        |m: &Member| stream_options && key_matches(&body[m.key.clone()], b"stream_options");
    let removable = |m: &Member| is_router(m) || is_stream_options(m);
    let last_kept = (0..members.len()).rev().find(|&i| !removable(&members[i]));
    let mut edits = Vec::new();
    for (i, m) in members.iter().enumerate() {
        if key_matches(&body[m.key.clone()], b"model") {
            edits.push(Edit::Model(m.value.clone()));
        } else if removable(m) {
            // Kept members must stay joined by single commas: before the last kept member a
            // removed one takes its trailing comma; after it, its leading one.
            let range = match last_kept {
                Some(k) if i < k => m.start..members[i + 1].start,
                Some(_) => members[i - 1].value.end..m.value.end,
                None => m.start..m.value.end,
            };
            if is_stream_options(m) {
                seen(&m.value);
                edits.push(Edit::StreamOptions(range));
            } else {
                edits.push(Edit::Remove(range));
            }
        }
    }
    edits
}

fn read_features(tape: &simd_json::Tape<'_>) -> Result<Features, Error> {
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Err(Error::bad_request(
            "invalid_body",
            "The request body must be a JSON object with `model` and `messages`.",
        ));
    };
    let model: Box<str> = match obj.get("model") {
        None => {
            return Err(param_error(
                "missing_model",
                "You must provide a `model` parameter.",
            ));
        }
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => s.into(),
            Some(_) => return Err(param_error("invalid_model", "`model` must not be empty.")),
            None => {
                return Err(param_error(
                    "invalid_model",
                    "`model` must be a string, e.g. \"gpt-4o-mini\".",
                ));
            }
        },
    };
    let stream = match obj.get("stream") {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| param_error("invalid_stream", "`stream` must be a boolean."))?,
    };

    let strip_think = match obj.get("strip_think") {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            param_error("invalid_strip_think", "`strip_think` must be a boolean.")
        })?,
    };

    let mut needs = Caps::NONE;
    let (mut text, mut messages, mut images) = (0u64, 0u32, 0u32);
    if let Some(list) = obj.get("messages").and_then(|m| m.as_array()) {
        for msg in list.iter() {
            messages += 1;
            match msg.get("content") {
                Some(c) if c.as_str().is_some() => text += c.as_str().map_or(0, |s| s.len() as u64),
                Some(c) => {
                    if let Some(parts) = c.as_array() {
                        for part in parts.iter() {
                            match part.get("type").and_then(|t| t.into_string()) {
                                Some("image_url" | "input_image" | "image") => {
                                    needs = needs.union(Caps::VISION);
                                    images += 1;
                                }
                                _ => {
                                    text += part
                                        .get("text")
                                        .and_then(|t| t.into_string())
                                        .map_or(0, |s| s.len() as u64)
                                }
                            }
                        }
                    }
                }
                None => {}
            }
        }
    }
    // Embeddings (`input`) and text completions (`prompt`): a string or a list of strings.
    for key in ["input", "prompt"] {
        match obj.get(key) {
            Some(v) if v.as_str().is_some() => text += v.as_str().map_or(0, |s| s.len() as u64),
            Some(v) => {
                if let Some(list) = v.as_array() {
                    for item in list.iter() {
                        text += item.into_string().map_or(0, |s| s.len() as u64);
                    }
                }
            }
            None => {}
        }
    }
    let non_empty_array = |key: &str| {
        obj.get(key)
            .and_then(|t| t.as_array())
            .map_or(0, |a| a.len())
    };
    let tools = non_empty_array("tools") + non_empty_array("functions");
    if tools > 0 {
        needs = needs.union(Caps::TOOLS);
    }
    if let Some(kind) = obj
        .get("response_format")
        .and_then(|r| r.get("type"))
        .and_then(|t| t.into_string())
        && matches!(kind, "json_object" | "json_schema")
    {
        needs = needs.union(Caps::JSON);
    }
    let fields = family_fields(&obj);
    let max_tokens = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| obj.get(k).and_then(|v| v.as_u64()))
        .map(|n| n.min(u64::from(u32::MAX)) as u32);
    let temperature = obj
        .get("temperature")
        .and_then(|v| v.as_f64().or_else(|| v.as_u64().map(|n| n as f64)))
        .map(|t| t as f32);

    // Router-only fields.
    let strategy = match obj.get("strategy") {
        None => None,
        Some(v) if v.is_null() => None,
        Some(v) => Some(
            v.as_str()
                .ok_or_else(|| {
                    param_error(
                        "invalid_strategy",
                        "`strategy` must be a string, e.g. \"cost_first\".",
                    )
                })?
                .into(),
        ),
    };
    let mut options = Options::default();
    if let Some(v) = obj.get("required_capabilities") {
        for name in string_list(v, "required_capabilities")? {
            options.required = options.required.union(Caps::parse(name).ok_or_else(|| {
                Error::bad_request(
                    "invalid_required_capabilities",
                    format!("`required_capabilities`: unknown capability `{}`; use vision, tools or json.", crate::error::truncate(name, 50)),
                )
            })?);
        }
    }
    if let Some(v) = obj.get("max_cost_per_1k").filter(|v| !v.is_null()) {
        let x = v
            .as_f64()
            .or_else(|| v.as_u64().map(|u| u as f64))
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| {
                param_error(
                    "invalid_max_cost_per_1k",
                    "`max_cost_per_1k` must be a non-negative number (USD per 1K tokens).",
                )
            })?;
        options.max_cost_per_1k = Some(x);
    }
    if let Some(v) = obj.get("prefer_local").filter(|v| !v.is_null()) {
        options.prefer_local = Some(v.as_bool().ok_or_else(|| {
            param_error("invalid_prefer_local", "`prefer_local` must be a boolean.")
        })?);
    }
    if let Some(v) = obj.get("exclude_providers") {
        options.exclude_providers = string_list(v, "exclude_providers")?
            .into_iter()
            .map(str::to_string)
            .collect();
    }

    Ok(Features {
        model,
        stream,
        edits: Vec::new(),
        needs,
        prompt_tokens: estimate(text, messages, images, tools as u32),
        max_tokens,
        temperature,
        strategy,
        options,
        usage_asked: None,
        stream_options: None,
        strip_think,
        fields,
    })
}

/// The fields of a chat body that only some families can honour (README "Field fidelity").
fn family_fields(obj: &simd_json::tape::Object<'_, '_>) -> Fields {
    let present = |k: &str| obj.get(k).filter(|v| !v.is_null());
    let mut fields = Fields::NONE;
    if present("logprobs").and_then(|v| v.as_bool()) == Some(true)
        || present("top_logprobs").is_some()
    {
        fields = fields.union(Fields::LOGPROBS);
    }
    if present("n").and_then(|v| v.as_u64()).is_some_and(|n| n > 1) {
        fields = fields.union(Fields::N);
    }
    if present("logit_bias")
        .and_then(|v| v.as_object())
        .is_some_and(|o| !o.is_empty())
    {
        fields = fields.union(Fields::LOGIT_BIAS);
    }
    let audio_out = present("modalities")
        .and_then(|v| v.as_array())
        .is_some_and(|a| a.iter().any(|m| m.into_string() == Some("audio")));
    if audio_out || present("audio").is_some() {
        fields = fields.union(Fields::AUDIO);
    }
    if present("web_search_options").is_some() {
        fields = fields.union(Fields::WEB_SEARCH);
    }
    fields
}

/// `include_usage` of a `stream_options` value: `None` for `null`, `Some(true)` only for an
/// object whose (last) `include_usage` is `true`.
fn stream_options_usage(value: &[u8]) -> Option<bool> {
    if value == b"null" {
        return None;
    }
    let asked = top_level_members(value)
        .into_iter()
        .rev()
        .find(|m| key_matches(&value[m.key.clone()], b"include_usage"))
        .is_some_and(|m| &value[m.value] == b"true");
    Some(asked)
}

/// A list of strings given as a JSON array or a comma-separated string.
fn string_list<'v>(v: simd_json::tape::Value<'_, 'v>, key: &str) -> Result<Vec<&'v str>, Error> {
    if v.is_null() {
        return Ok(Vec::new());
    }
    if let Some(s) = v.into_string() {
        return Ok(s
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect());
    }
    if let Some(a) = v.as_array() {
        let mut out = Vec::with_capacity(a.len());
        for item in a.iter() {
            match item.into_string() {
                Some(s) => out.push(s),
                None => break,
            }
        }
        if out.len() == a.len() {
            return Ok(out);
        }
    }
    Err(Error::bad_request(
        "invalid_router_field",
        format!("`{key}` must be a list of strings."),
    ))
}

fn param_error(code: &'static str, msg: &'static str) -> Error {
    Error::new(400, Kind::InvalidRequest, code, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(body: &str) -> Result<Features, Error> {
        extract(body.as_bytes(), &mut JsonScratch::default())
    }

    fn models(body: &str, f: &Features) -> Vec<String> {
        f.edits
            .iter()
            .filter_map(|e| match e {
                Edit::Model(r) => Some(body[r.clone()].to_string()),
                Edit::Remove(_) | Edit::StreamOptions(_) => None,
            })
            .collect()
    }

    #[test]
    fn validate_accepts_whole_documents_only() {
        let mut scratch = JsonScratch::default();
        let mut ok = |b: &str| validate(b.as_bytes(), &mut scratch).is_ok();
        assert!(ok(r#"{"id":"x","choices":[{"message":{"content":"hi"}}]}"#));
        assert!(ok(" [1, 2.5, \"\\u00e9\", null] \n"));
        for bad in [
            "",
            "  \n",
            r#"{"id":"x","choices":[{"mess"#,
            r#"{"id": not json <html>"#,
            "{} {}",
            "{}x",
            "<html>502</html>",
        ] {
            assert!(!ok(bad), "{bad:?}");
        }
        // Invalid UTF-8 inside a string is not JSON either.
        assert!(validate(b"{\"a\":\"\xff\"}", &mut JsonScratch::default()).is_err());
    }

    #[test]
    fn reads_model_stream_and_spans() {
        let body =
            r#"{"messages":[{"role":"user","content":"model"}],"model":"gpt-4o","stream":true}"#;
        let f = ex(body).unwrap();
        assert_eq!(&*f.model, "gpt-4o");
        assert!(f.stream);
        assert_eq!(models(body, &f), ["\"gpt-4o\""]);
        assert_eq!(f.needs, Caps::NONE);
    }

    #[test]
    fn nested_model_keys_are_not_top_level() {
        let body = r#"{"tools":[{"model":"x"}],"meta":{"model":"y"},"model" : "z"}"#;
        let f = ex(body).unwrap();
        assert_eq!(models(body, &f), ["\"z\""]);
    }

    #[test]
    fn escaped_values_and_duplicate_keys() {
        let body = r#"{"model":"a\"b","mod\u0065l":"gpt"}"#;
        let f = ex(body).unwrap();
        assert_eq!(models(body, &f).len(), 2);
    }

    #[test]
    fn needs_and_token_estimates() {
        let body = r#"{"model":"m","max_tokens":300,"response_format":{"type":"json_object"},
            "tools":[{"type":"function","function":{"name":"f"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"12345678"},{"type":"image_url","image_url":{"url":"data:x"}}]},
                        {"role":"assistant","content":null,"tool_calls":[]}]}"#;
        let f = ex(body).unwrap();
        assert!(
            f.needs.contains(Caps::VISION)
                && f.needs.contains(Caps::TOOLS)
                && f.needs.contains(Caps::JSON)
        );
        assert_eq!(f.max_tokens, Some(300));
        assert_eq!(
            f.prompt_tokens,
            2 + 2 * crate::tokens::MESSAGE_TOKENS
                + crate::tokens::IMAGE_TOKENS
                + crate::tokens::TOOL_TOKENS
        );
        let f = ex(r#"{"model":"m","tools":[],"max_completion_tokens":5}"#).unwrap();
        assert!(
            !f.needs.contains(Caps::TOOLS),
            "an empty tools list needs nothing"
        );
        assert_eq!(f.max_tokens, Some(5));
    }

    #[test]
    fn router_fields_are_read_and_removed() {
        let body = r#"{"strategy":"cost_first","model":"m","prefer_local":true,"messages":[],"exclude_providers":["a","b"],"max_cost_per_1k":0.5,"required_capabilities":"vision, tools"}"#;
        let f = ex(body).unwrap();
        assert_eq!(f.strategy.as_deref(), Some("cost_first"));
        assert_eq!(f.options.prefer_local, Some(true));
        assert_eq!(f.options.exclude_providers, ["a", "b"]);
        assert_eq!(f.options.max_cost_per_1k, Some(0.5));
        assert!(
            f.options.required.contains(Caps::VISION) && f.options.required.contains(Caps::TOOLS)
        );
        // apply the edits the way the proxy does
        let mut out = String::new();
        let mut at = 0;
        for e in &f.edits {
            let r = e.range();
            out.push_str(&body[at..r.start]);
            if let Edit::Model(_) = e {
                out.push_str("\"up\"");
            }
            at = r.end;
        }
        out.push_str(&body[at..]);
        assert_eq!(out, r#"{"model":"up","messages":[]}"#);
        // a router field last, after kept members, takes its leading comma
        let body2 = r#"{"model":"m", "messages":[] , "strategy":"x"}"#;
        let f2 = ex(body2).unwrap();
        let Edit::Remove(r) = &f2.edits[1] else {
            panic!()
        };
        assert_eq!(
            format!("{}{}", &body2[..r.start], &body2[r.end..]),
            r#"{"model":"m", "messages":[]}"#
        );
        let v: simd_json::OwnedValue = simd_json::to_owned_value(&mut out.into_bytes()).unwrap();
        assert_eq!(v["model"].as_str(), Some("up"));
    }

    #[test]
    fn precise_errors() {
        assert_eq!(ex("").unwrap_err().code, "empty_body");
        assert_eq!(ex("{bad").unwrap_err().code, "invalid_json");
        assert_eq!(ex("[1,2]").unwrap_err().code, "invalid_body");
        assert_eq!(ex(r#"{"messages":[]}"#).unwrap_err().code, "missing_model");
        assert_eq!(ex(r#"{"model":5}"#).unwrap_err().code, "invalid_model");
        assert_eq!(ex(r#"{"model":""}"#).unwrap_err().code, "invalid_model");
        assert_eq!(
            ex(r#"{"model":"m","stream":"yes"}"#).unwrap_err().code,
            "invalid_stream"
        );
        assert!(!ex(r#"{"model":"m","stream":null}"#).unwrap().stream);
        assert_eq!(
            ex(r#"{"model":"m","strategy":1}"#).unwrap_err().code,
            "invalid_strategy"
        );
        assert_eq!(
            ex(r#"{"model":"m","max_cost_per_1k":-1}"#)
                .unwrap_err()
                .code,
            "invalid_max_cost_per_1k"
        );
        assert_eq!(
            ex(r#"{"model":"m","required_capabilities":["x"]}"#)
                .unwrap_err()
                .code,
            "invalid_required_capabilities"
        );
        assert_eq!(
            ex(r#"{"model":"m","exclude_providers":[1]}"#)
                .unwrap_err()
                .code,
            "invalid_router_field"
        );
    }

    #[test]
    fn scanner_survives_garbage() {
        for s in [
            "",
            "{",
            "{\"a",
            "{\"a\":",
            "{\"a\":[",
            "{\"model\":\"x",
            "\"x\"",
            "{\"a\":1,}",
        ] {
            let _ = top_level_members(s.as_bytes());
        }
    }

    #[test]
    fn fields_only_some_families_express_are_read() {
        let f = |extra: &str| {
            ex(&format!(r#"{{"model":"m","messages":[]{extra}}}"#))
                .unwrap()
                .fields
        };
        assert_eq!(f(""), Fields::NONE);
        assert_eq!(
            f(r#","logprobs":false,"n":1,"logit_bias":{}"#),
            Fields::NONE
        );
        assert_eq!(f(r#","logprobs":null,"audio":null"#), Fields::NONE);
        assert_eq!(f(r#","logprobs":true"#), Fields::LOGPROBS);
        assert_eq!(f(r#","top_logprobs":2"#), Fields::LOGPROBS);
        assert_eq!(f(r#","n":3"#), Fields::N);
        assert_eq!(f(r#","logit_bias":{"50256":-100}"#), Fields::LOGIT_BIAS);
        assert_eq!(f(r#","modalities":["text","audio"]"#), Fields::AUDIO);
        assert_eq!(f(r#","modalities":["text"]"#), Fields::NONE);
        assert_eq!(f(r#","web_search_options":{}"#), Fields::WEB_SEARCH);
        let both = f(r#","n":2,"logprobs":true"#);
        assert_eq!(both.first_param(), "logprobs");
        assert_eq!(both.params(), "logprobs, n");
    }
}
