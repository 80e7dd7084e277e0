//! Helpers every translating family uses, written once: reading JSON values that clients and
//! upstreams send (absent and `null` alike), merging turns for APIs that want user and model
//! turns to alternate, data URLs, tool-call arguments, and SSE `data:` events.
//!
//! Invariants: nothing here panics on any value; parsing works on a copy (simd-json rewrites
//! its input). Not here: any one family's vocabulary (its `wire.rs`), the canonical shapes
//! (`openai::wire`).

use std::borrow::Cow;

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;

/// Parses a copy of `bytes` (simd-json rewrites its input while unescaping).
pub(crate) fn parse(bytes: &[u8]) -> Result<Json, simd_json::Error> {
    let mut copy = bytes.to_vec();
    simd_json::to_owned_value(&mut copy)
}

/// Parses a client's body, or the 400 that says why it could not be: `empty` is the message
/// for a blank body, `hint` follows the parser's own words (e.g. "; send a JSON object.").
pub(crate) fn parse_client(body: &[u8], empty: &'static str, hint: &str) -> Result<Json, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad("empty_body", empty));
    }
    parse(body).map_err(|e| {
        bad(
            "invalid_json",
            format!("We could not parse the JSON body of your request ({e}){hint}"),
        )
    })
}

/// A 400 for a client's mistake.
pub(crate) fn bad(code: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
    Error::bad_request(code, message)
}

/// The value unless it is absent or `null` (both mean "not given").
pub(crate) fn present(v: Option<&Json>) -> Option<&Json> {
    v.filter(|v| !v.is_null())
}

/// A member that is present and not `null`.
pub(crate) fn field<'v>(v: &'v Json, key: &str) -> Option<&'v Json> {
    present(v.get(key))
}

/// A string member, or "" when absent or not a string.
pub(crate) fn str_field<'v>(v: &'v Json, key: &str) -> &'v str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or("")
}

/// Sets `key` on an object value (a no-op on anything else, which callers never pass).
pub(crate) fn set(target: &mut Json, key: &str, value: Json) {
    if let Some(o) = target.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

/// The choice (or candidate) with `index` 0 of an answer's list: the one a client with one
/// choice follows. A missing `index` counts as 0.
pub(crate) fn first_choice(list: Option<&Json>) -> Option<&Json> {
    list.and_then(|c| c.as_array())?
        .iter()
        .find(|c| c.get("index").and_then(|i| i.as_u64()).unwrap_or(0) == 0)
}

/// A request's `tools` (absent or `null`: none), each through `tool` with its index; anything
/// but an array is the 400 `invalid_tools`.
pub(crate) fn tool_list(
    tools: Option<&Json>,
    tool: impl Fn(&Json, usize) -> Result<Json, Error>,
) -> Result<Vec<Json>, Error> {
    let Some(t) = present(tools) else {
        return Ok(Vec::new());
    };
    let list = t
        .as_array()
        .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
    list.iter().enumerate().map(|(j, t)| tool(t, j)).collect()
}

/// A request's `stream` flag, or the 400 `invalid_stream` when it is not a boolean.
pub(crate) fn stream_flag(stream: &Json) -> Result<bool, Error> {
    stream
        .as_bool()
        .ok_or_else(|| bad("invalid_stream", "`stream` must be a boolean."))
}

/// One message of a conversation being assembled for an API that wants roles to alternate.
#[derive(Debug)]
pub(crate) struct Turn {
    /// The role as the target API spells it.
    pub(crate) role: &'static str,
    /// Its content blocks or parts, in order.
    pub(crate) parts: Vec<Json>,
}

/// Appends parts as a turn of `role`, merging into the previous turn when it has the same role
/// (Anthropic and Gemini want user and model turns to alternate; OpenAI allows runs of one
/// role, and tool results travel in user turns). Empty turns are dropped: both reject empty
/// content.
pub(crate) fn push_turn(turns: &mut Vec<Turn>, role: &'static str, parts: Vec<Json>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

/// A lone text part (`{"type":"text","text":…}`) as a plain string, the most compatible form;
/// anything else as the list.
pub(crate) fn collapse_text(parts: Vec<Json>) -> Json {
    if parts.len() == 1
        && let Some(text) = parts
            .first()
            .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
            .filter(|p| p.get("cache_control").is_none())
            .and_then(|p| p.get("text"))
            .and_then(|t| t.as_str())
    {
        return text.into();
    }
    parts.into()
}

/// `part` with the `cache_control` of `from` (an Anthropic block or a canonical content part),
/// if it has one: a prompt-cache breakpoint survives translation where the target caches.
pub(crate) fn with_cache_control(mut part: Json, from: &Json) -> Json {
    if let Some(c) = from.get("cache_control") {
        set(&mut part, "cache_control", c.clone());
    }
    part
}

/// `data:<mime>[;params];base64,<data>` -> (mime, data); parameters before `;base64` (e.g.
/// `;charset=…`) are not part of the media type. `None` for anything else or an empty type.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let mime = meta.split(';').next().unwrap_or(meta);
    (!mime.is_empty()).then_some((mime, data))
}

/// Tool-call arguments (JSON text) as the object a family's tool input needs; blank text means
/// no arguments. `None` when the text is not a JSON object.
pub(crate) fn object_of_str(arguments: &str) -> Option<Json> {
    if arguments.trim().is_empty() {
        // Clients send "" for a call without arguments.
        return Some(json!({}));
    }
    parse(arguments.as_bytes()).ok().filter(|v| v.is_object())
}

/// An OpenAI tool call's `arguments` member as an object: absent or `null` is no arguments, an
/// object already parsed is taken as is, a string is parsed ([`object_of_str`]). `None` for
/// anything else.
pub(crate) fn arguments_object(arguments: Option<&Json>) -> Option<Json> {
    match present(arguments) {
        None => Some(json!({})),
        Some(a) if a.is_object() => Some(a.clone()),
        Some(a) => object_of_str(a.as_str()?),
    }
}

/// Appends one SSE event `data: {json}` followed by `end` (`\n\n`, or `\r\n\r\n` where the
/// original API sends that).
pub(crate) fn sse_data(out: &mut Vec<u8>, v: &Json, end: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.encode().as_bytes());
    out.extend_from_slice(end);
}

/// Reasoning text in either spelling OpenAI-compatible servers use.
pub(crate) fn reasoning_of(v: &Json) -> Option<&str> {
    v.get("reasoning_content")
        .and_then(|r| r.as_str())
        .or_else(|| v.get("reasoning").and_then(|r| r.as_str()))
        .filter(|r| !r.is_empty())
}

/// OpenAI message content (a string, or text parts) as one string.
pub(crate) fn message_text(content: Option<&Json>) -> String {
    match content {
        Some(c) if c.as_str().is_some() => c.as_str().unwrap_or("").to_string(),
        Some(c) => c.as_array().map_or_else(String::new, |parts| {
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect()
        }),
        None => String::new(),
    }
}
