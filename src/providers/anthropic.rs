//! Anthropic Messages wire family: pure translation between the gateway's canonical form
//! (OpenAI chat completions) and Anthropic's Messages API (`/v1/messages`), in both directions.
//!
//! * Upstream: the gateway speaking to an Anthropic provider. [`encode_request`] turns an OpenAI
//!   request into a Messages request; [`decode_response`], [`StreamDecoder`] and
//!   [`decode_error`] turn the answer back into OpenAI bodies, chunks and errors.
//! * Ingress: an Anthropic-format client speaking to the gateway. [`ingress_request`] turns its
//!   request into OpenAI form (what routing and every adapter understand); [`egress_response`],
//!   [`StreamEncoder`] and [`error_body`] turn the gateway's OpenAI answer into what the client
//!   expects; [`count_tokens`] serves `/v1/messages/count_tokens` from the gateway's estimate.
//!
//! Invariants: no I/O, no clock, no globals: time comes in as `created`, bytes in and out are
//! buffers. Nothing panics on any input: bodies come from clients and upstreams, so every field
//! is read through `Option` and a bad shape becomes a 400 (client mistakes) or an `Err(String)`
//! (upstream mistakes). Client mistakes are reported before anything is sent upstream, since
//! Anthropic rejects what it does not know (unknown fields, empty text blocks, bad data URLs).
//! Not here: HTTP, headers, routing, retries (`proxy`, `upstream`), SSE framing of the input
//! (the caller splits events and hands over `event:` and `data:` fields).

use std::borrow::Cow;

use simd_json::OwnedValue;
use simd_json::json;
use simd_json::prelude::*;

use crate::api::chat::estimate;
use crate::error::{Error, Kind};
use crate::json as jw;
use crate::providers::Usage;

// ---- Upstream: gateway (OpenAI form) -> Anthropic provider ----

/// Default `max_tokens` when the OpenAI request gave none (Anthropic requires it).
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
/// The `anthropic-version` header value the gateway sends.
pub const API_VERSION: &str = "2023-06-01";

/// Separator between system texts joined into Anthropic's single top-level `system` and back.
const SYSTEM_JOIN: &str = "\n\n";

/// Encodes an OpenAI chat-completions request (already parsed; router-only fields removed) as an
/// Anthropic Messages request body for `model`. Client mistakes -> Err(Error 400, clear message).
pub fn encode_request(chat: &OwnedValue, model: &str, out: &mut Vec<u8>) -> Result<(), Error> {
    let Some(req) = chat.as_object() else {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object with `model` and `messages`.",
        ));
    };
    let messages = match req.get("messages") {
        Some(m) => m.as_array().ok_or_else(|| {
            bad(
                "invalid_messages",
                "`messages` must be an array of chat messages.",
            )
        })?,
        None => {
            return Err(bad(
                "missing_messages",
                "You must provide `messages`, an array of chat messages.",
            ));
        }
    };

    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    for (i, msg) in messages.iter().enumerate() {
        let role = msg.get("role").and_then(|r| r.as_str()).ok_or_else(|| {
            bad(
                "invalid_messages",
                format!(
                    "messages[{i}].role must be a string: system, developer, user, assistant or tool."
                ),
            )
        })?;
        match role {
            // Anthropic has one top-level system prompt; instructions given mid-conversation
            // still belong there rather than being dropped.
            "system" | "developer" => {
                let text = system_text(msg.get("content"), i)?;
                if !text.is_empty() {
                    system.push(text);
                }
            }
            "user" => {
                let blocks = content_blocks(msg.get("content"), i)?;
                push_turn(&mut turns, Role::User, blocks);
            }
            "assistant" => {
                let blocks = assistant_blocks(msg, i)?;
                push_turn(&mut turns, Role::Assistant, blocks);
            }
            "tool" => {
                let block = tool_result_block(msg, i)?;
                // Tool results travel in a user turn; consecutive ones (and the user text that
                // follows them) merge into one, results first, as Anthropic requires.
                push_turn(&mut turns, Role::User, vec![block]);
            }
            other => {
                return Err(bad(
                    "invalid_role",
                    format!(
                        "messages[{i}].role `{}` is not supported; use system, developer, user, assistant or tool.",
                        crate::error::truncate(other, 40)
                    ),
                ));
            }
        }
    }

    let max_tokens = match present(req.get("max_completion_tokens"))
        .or_else(|| present(req.get("max_tokens")))
    {
        None => DEFAULT_MAX_TOKENS,
        Some(v) => v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "invalid_max_tokens",
                "`max_tokens` / `max_completion_tokens` must be a positive integer.",
            )
        })?,
    };
    if let Some(n) = present(req.get("n")).and_then(|n| n.as_u64())
        && n > 1
    {
        return Err(bad(
            "unsupported_n",
            "Anthropic models return one choice per request; send `n` = 1 or leave it out.",
        ));
    }

    let messages: Vec<OwnedValue> = turns.into_iter().map(Turn::into_json).collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
    });
    if !system.is_empty() {
        set(&mut body, "system", system.join(SYSTEM_JOIN).into());
    }
    if let Some(t) = present(req.get("temperature")) {
        let t = number(t, "temperature")?;
        // OpenAI allows 0..2, Anthropic 0..1: clamp rather than fail a request that was valid
        // where it was written (the routing decided the provider, not the client).
        set(&mut body, "temperature", t.clamp(0.0, 1.0).into());
    }
    if let Some(p) = present(req.get("top_p")) {
        set(&mut body, "top_p", number(p, "top_p")?.into());
    }
    let stops = stop_list(req.get("stop"))?;
    if !stops.is_empty() {
        set(&mut body, "stop_sequences", stops.into());
    }
    if let Some(s) = present(req.get("stream")) {
        let s = s
            .as_bool()
            .ok_or_else(|| bad("invalid_stream", "`stream` must be a boolean."))?;
        set(&mut body, "stream", s.into());
    }
    let tools = match present(req.get("tools")) {
        None => Vec::new(),
        Some(t) => {
            let list = t
                .as_array()
                .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
            list.iter()
                .enumerate()
                .map(|(j, t)| encode_tool(t, j))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    // Anthropic rejects `tool_choice` without tools, so it only goes along with them.
    if !tools.is_empty() {
        let mut choice = match present(req.get("tool_choice")) {
            None => None,
            Some(c) => Some(encode_tool_choice(c)?),
        };
        if present(req.get("parallel_tool_calls")).and_then(|p| p.as_bool()) == Some(false) {
            let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
            if c.get("type").and_then(|t| t.as_str()) != Some("none") {
                set(c, "disable_parallel_tool_use", true.into());
            }
        }
        set(&mut body, "tools", tools.into());
        if let Some(c) = choice {
            set(&mut body, "tool_choice", c);
        }
    }
    if let Some(user) = req.get("user").and_then(|u| u.as_str())
        && !user.is_empty()
    {
        set(&mut body, "metadata", json!({"user_id": user}));
    }
    out.extend_from_slice(body.encode().as_bytes());
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    User,
    Assistant,
}

/// One Anthropic message being assembled; same-role neighbours merge into one.
#[derive(Debug)]
struct Turn {
    role: Role,
    blocks: Vec<OwnedValue>,
}

impl Turn {
    fn into_json(self) -> OwnedValue {
        let role = match self.role {
            Role::User => "user",
            Role::Assistant => "assistant",
        };
        json!({"role": role, "content": collapse_blocks(self.blocks)})
    }
}

/// A lone text block is written as a plain string (the common, most compatible form).
fn collapse_blocks(blocks: Vec<OwnedValue>) -> OwnedValue {
    if blocks.len() == 1
        && let Some(text) = blocks
            .first()
            .filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("text"))
            .and_then(|b| b.get("text"))
            .and_then(|t| t.as_str())
    {
        return text.into();
    }
    blocks.into()
}

/// Appends blocks as a turn, merging into the previous turn of the same role (Anthropic wants
/// user and assistant to alternate). Empty turns are dropped: Anthropic rejects empty content.
fn push_turn(turns: &mut Vec<Turn>, role: Role, blocks: Vec<OwnedValue>) {
    if blocks.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.blocks.extend(blocks),
        _ => turns.push(Turn { role, blocks }),
    }
}

/// The text of a system/developer message: a string or text parts, joined.
fn system_text(content: Option<&OwnedValue>, i: usize) -> Result<String, Error> {
    let Some(content) = present(content) else {
        return Ok(String::new());
    };
    if let Some(s) = content.as_str() {
        return Ok(s.to_string());
    }
    let parts = content.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content must be a string or an array of text parts."),
        )
    })?;
    let mut texts = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.get("text").and_then(|t| t.as_str()) {
            Some(t) if !t.is_empty() => texts.push(t),
            Some(_) => {}
            None => {
                return Err(bad(
                    "invalid_content",
                    format!("messages[{i}].content[{j}]: system messages take only text parts."),
                ));
            }
        }
    }
    Ok(texts.join(SYSTEM_JOIN))
}

/// User (and tool-result) content as Anthropic blocks: text and images.
fn content_blocks(content: Option<&OwnedValue>, i: usize) -> Result<Vec<OwnedValue>, Error> {
    let Some(content) = present(content) else {
        return Ok(Vec::new());
    };
    if let Some(s) = content.as_str() {
        return Ok(text_block(s).into_iter().collect());
    }
    let parts = content.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content must be a string or an array of content parts."),
        )
    })?;
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.get("type").and_then(|t| t.as_str()) {
            Some("text") => {
                let text = part.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
                    bad(
                        "invalid_content",
                        format!("messages[{i}].content[{j}].text must be a string."),
                    )
                })?;
                blocks.extend(text_block(text));
            }
            Some("image_url") => {
                let image = part.get("image_url");
                let url = image
                    .and_then(|u| u.as_str())
                    .or_else(|| image.and_then(|u| u.get("url")).and_then(|u| u.as_str()))
                    .ok_or_else(|| {
                        bad(
                            "invalid_content",
                            format!("messages[{i}].content[{j}].image_url.url must be a string."),
                        )
                    })?;
                blocks.push(image_block(url, i, j)?);
            }
            other => {
                return Err(bad(
                    "unsupported_content",
                    format!(
                        "messages[{i}].content[{j}]: content part type `{}` cannot be sent to Anthropic models; use text or image_url parts.",
                        crate::error::truncate(other.unwrap_or("(missing)"), 40)
                    ),
                ));
            }
        }
    }
    Ok(blocks)
}

/// A text block, or nothing for empty text (Anthropic rejects empty text blocks).
fn text_block(text: &str) -> Option<OwnedValue> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// An OpenAI image URL (data URL or http(s)) as an Anthropic image block.
fn image_block(url: &str, i: usize, j: usize) -> Result<OwnedValue, Error> {
    if let Some(rest) = url.strip_prefix("data:") {
        let parsed = rest.split_once(',').and_then(|(meta, data)| {
            let mime = meta.strip_suffix(";base64")?;
            // Parameters before `;base64` (e.g. `;charset=…`) are not part of the media type.
            let mime = mime.split(';').next().unwrap_or(mime);
            (!mime.is_empty() && !data.is_empty()).then_some((mime, data))
        });
        let Some((mime, data)) = parsed else {
            return Err(bad(
                "invalid_image_url",
                format!(
                    "messages[{i}].content[{j}]: image data URLs must look like data:<mime>;base64,<data>."
                ),
            ));
        };
        return Ok(json!({
            "type": "image",
            "source": {"type": "base64", "media_type": mime, "data": data},
        }));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Ok(json!({"type": "image", "source": {"type": "url", "url": url}}));
    }
    Err(bad(
        "invalid_image_url",
        format!("messages[{i}].content[{j}]: an image URL must be http(s) or a base64 data URL."),
    ))
}

/// An assistant message as blocks: its text, then one `tool_use` per tool call.
fn assistant_blocks(msg: &OwnedValue, i: usize) -> Result<Vec<OwnedValue>, Error> {
    let mut blocks = Vec::new();
    if let Some(content) = present(msg.get("content")) {
        if let Some(s) = content.as_str() {
            blocks.extend(text_block(s));
        } else if let Some(parts) = content.as_array() {
            for (j, part) in parts.iter().enumerate() {
                let text = part
                    .get("text")
                    .or_else(|| part.get("refusal"))
                    .and_then(|t| t.as_str())
                    .ok_or_else(|| {
                        bad(
                            "invalid_content",
                            format!(
                                "messages[{i}].content[{j}]: assistant content parts must be text."
                            ),
                        )
                    })?;
                blocks.extend(text_block(text));
            }
        } else {
            return Err(bad(
                "invalid_content",
                format!("messages[{i}].content must be a string, an array of text parts, or null."),
            ));
        }
    }
    if let Some(calls) = present(msg.get("tool_calls")) {
        let calls = calls.as_array().ok_or_else(|| {
            bad(
                "invalid_tool_calls",
                format!("messages[{i}].tool_calls must be an array."),
            )
        })?;
        for (j, call) in calls.iter().enumerate() {
            blocks.push(tool_use_block(call, i, j)?);
        }
    }
    Ok(blocks)
}

fn tool_use_block(call: &OwnedValue, i: usize, j: usize) -> Result<OwnedValue, Error> {
    let where_ = || format!("messages[{i}].tool_calls[{j}]");
    let id = call
        .get("id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_tool_calls",
                format!("{}.id must be a non-empty string.", where_()),
            )
        })?;
    let function = call.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_tool_calls",
                format!("{}.function.name must be a non-empty string.", where_()),
            )
        })?;
    let input = match present(function.and_then(|f| f.get("arguments"))) {
        None => json!({}),
        Some(args) if args.is_object() => args.clone(),
        Some(args) => {
            let s = args.as_str().ok_or_else(|| {
                bad(
                    "invalid_tool_arguments",
                    format!("{}.function.arguments must be a JSON string.", where_()),
                )
            })?;
            if s.trim().is_empty() {
                // Clients send "" for a call without arguments.
                json!({})
            } else {
                parse(s.as_bytes())
                    .ok()
                    .filter(|v| v.is_object())
                    .ok_or_else(|| {
                        bad(
                            "invalid_tool_arguments",
                            format!(
                                "{}.function.arguments must be a JSON object encoded as a string, e.g. \"{{\\\"city\\\":\\\"Paris\\\"}}\".",
                                where_()
                            ),
                        )
                    })?
            }
        }
    };
    Ok(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
}

fn tool_result_block(msg: &OwnedValue, i: usize) -> Result<OwnedValue, Error> {
    let id = msg
        .get("tool_call_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_tool_message",
                format!("messages[{i}].tool_call_id must name the tool call this message answers."),
            )
        })?;
    let mut block = json!({"type": "tool_result", "tool_use_id": id});
    // A string stays a string; parts become text and image blocks (tool results take both).
    let content = match present(msg.get("content")) {
        None => None,
        Some(c) => match c.as_str() {
            Some(s) => (!s.is_empty()).then(|| s.into()),
            None => {
                let blocks = content_blocks(Some(c), i)?;
                (!blocks.is_empty()).then(|| blocks.into())
            }
        },
    };
    if let Some(c) = content {
        set(&mut block, "content", c);
    }
    Ok(block)
}

fn encode_tool(tool: &OwnedValue, j: usize) -> Result<OwnedValue, Error> {
    let kind = tool
        .get("type")
        .and_then(|t| t.as_str())
        .unwrap_or("function");
    if kind != "function" {
        return Err(bad(
            "unsupported_tool",
            format!(
                "tools[{j}]: tool type `{}` cannot be sent to Anthropic models; only function tools can.",
                crate::error::truncate(kind, 40)
            ),
        ));
    }
    let function = tool.get("function");
    let name = function
        .and_then(|f| f.get("name"))
        .and_then(|n| n.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_tools",
                format!("tools[{j}].function.name must be a non-empty string."),
            )
        })?;
    // Anthropic requires an object schema; a function without parameters takes none.
    let schema = present(function.and_then(|f| f.get("parameters")))
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut out = json!({"name": name, "input_schema": schema});
    if let Some(d) = function
        .and_then(|f| f.get("description"))
        .and_then(|d| d.as_str())
    {
        set(&mut out, "description", d.into());
    }
    Ok(out)
}

fn encode_tool_choice(choice: &OwnedValue) -> Result<OwnedValue, Error> {
    let invalid = || {
        bad(
            "invalid_tool_choice",
            "`tool_choice` must be \"auto\", \"required\", \"none\" or {\"type\":\"function\",\"function\":{\"name\":…}}.",
        )
    };
    match choice.as_str() {
        Some("auto") => Ok(json!({"type": "auto"})),
        Some("required") => Ok(json!({"type": "any"})),
        Some("none") => Ok(json!({"type": "none"})),
        Some(_) => Err(invalid()),
        None => {
            let name = choice
                .get("function")
                .and_then(|f| f.get("name"))
                .and_then(|n| n.as_str())
                .filter(|s| !s.is_empty())
                .ok_or_else(invalid)?;
            Ok(json!({"type": "tool", "name": name}))
        }
    }
}

/// OpenAI `stop` (a string or an array of strings) as a list; empty strings are dropped.
fn stop_list(stop: Option<&OwnedValue>) -> Result<Vec<OwnedValue>, Error> {
    let invalid = || {
        bad(
            "invalid_stop",
            "`stop` must be a string or an array of strings.",
        )
    };
    let Some(stop) = present(stop) else {
        return Ok(Vec::new());
    };
    if let Some(s) = stop.as_str() {
        return Ok(if s.is_empty() {
            Vec::new()
        } else {
            vec![s.into()]
        });
    }
    let list = stop.as_array().ok_or_else(invalid)?;
    let mut out = Vec::with_capacity(list.len());
    for s in list {
        let s = s.as_str().ok_or_else(invalid)?;
        if !s.is_empty() {
            out.push(s.into());
        }
    }
    Ok(out)
}

/// Decodes a non-streamed Anthropic response into an OpenAI `chat.completion` body.
/// `created` is the unix time to stamp. Err(message) when the body is not a valid message.
pub fn decode_response(body: &[u8], created: u64, out: &mut Vec<u8>) -> Result<Usage, String> {
    let v = parse(body).map_err(|e| format!("Anthropic response is not valid JSON: {e}"))?;
    match v.get("type").and_then(|t| t.as_str()) {
        None | Some("message") => {}
        Some("error") => return Err(upstream_error_message(&v)),
        Some(other) => {
            return Err(format!(
                "Anthropic response has type `{}`, expected `message`",
                crate::error::truncate(other, 40)
            ));
        }
    }
    let content = v
        .get("content")
        .and_then(|c| c.as_array())
        .ok_or("Anthropic response has no `content` array")?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    for block in content {
        match block.get("type").and_then(|t| t.as_str()) {
            // Blocks concatenate with no separator, exactly as their streamed deltas would.
            Some("text") => text.push_str(str_field(block, "text")),
            Some("thinking") => reasoning.push_str(str_field(block, "thinking")),
            Some("tool_use") => {
                let arguments = block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), |i| i.encode());
                calls.push(json!({
                    "id": str_field(block, "id"),
                    "type": "function",
                    "function": {"name": str_field(block, "name"), "arguments": arguments},
                }));
            }
            // redacted_thinking, server tool blocks and future types have no OpenAI form.
            _ => {}
        }
    }
    let mut raw = RawUsage::default();
    raw.read(v.get("usage"));
    let usage = raw.usage();
    let content = if text.is_empty() && !calls.is_empty() {
        OwnedValue::null()
    } else {
        text.into()
    };
    let mut message = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        set(&mut message, "tool_calls", calls.into());
    }
    if !reasoning.is_empty() {
        set(&mut message, "reasoning_content", reasoning.into());
    }
    let finish = openai_finish(v.get("stop_reason").and_then(|s| s.as_str()));
    let body = json!({
        "id": str_field(&v, "id"),
        "object": "chat.completion",
        "created": created,
        "model": str_field(&v, "model"),
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": openai_usage(&usage),
    });
    out.extend_from_slice(body.encode().as_bytes());
    Ok(usage)
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn openai_finish(stop: Option<&str>) -> &'static str {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        // end_turn, stop_sequence, pause_turn, and anything newer: the turn ended normally.
        _ => "stop",
    }
}

/// Anthropic's usage counters as reported (input excludes cache reads and writes).
#[derive(Debug, Clone, Copy, Default)]
struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl RawUsage {
    /// Takes every counter present in `u` (later events carry cumulative totals).
    fn read(&mut self, u: Option<&OwnedValue>) {
        let Some(u) = u else { return };
        let get = |k: &str| u.get(k).and_then(|n| n.as_u64());
        if let Some(n) = get("input_tokens") {
            self.input = n;
        }
        if let Some(n) = get("output_tokens") {
            self.output = n;
        }
        if let Some(n) = get("cache_read_input_tokens") {
            self.cache_read = n;
        }
        if let Some(n) = get("cache_creation_input_tokens") {
            self.cache_creation = n;
        }
    }

    fn usage(&self) -> Usage {
        Usage {
            prompt: self
                .input
                .saturating_add(self.cache_read)
                .saturating_add(self.cache_creation),
            completion: self.output,
            cached: self.cache_read,
            cache_write: self.cache_creation,
        }
    }
}

/// OpenAI's usage object. `prompt_tokens_details.cache_write_tokens` (not an OpenAI field;
/// clients ignore it) appears only when a cache was written, so the Anthropic egress can give
/// it back as `cache_creation_input_tokens`.
fn openai_usage(u: &Usage) -> OwnedValue {
    let mut details = json!({"cached_tokens": u.cached});
    if u.cache_write > 0 {
        set(&mut details, "cache_write_tokens", u.cache_write.into());
    }
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt.saturating_add(u.completion),
        "prompt_tokens_details": details,
    })
}

/// Translates an Anthropic SSE event stream into OpenAI `chat.completion.chunk` SSE events.
#[derive(Debug)]
pub struct StreamDecoder {
    created: u64,
    id: String,
    model: String,
    usage: RawUsage,
    usage_seen: bool,
    /// (content block index, tool call index) for every `tool_use` block so far: OpenAI numbers
    /// tool calls 0, 1, … whatever text or thinking blocks sit between them.
    tool_blocks: Vec<(u64, u64)>,
    finish_sent: bool,
    done: bool,
}

impl StreamDecoder {
    /// A decoder for one response; `created` is the unix time stamped on every chunk.
    pub fn new(created: u64) -> Self {
        StreamDecoder {
            created,
            id: String::new(),
            model: String::new(),
            usage: RawUsage::default(),
            usage_seen: false,
            tool_blocks: Vec::new(),
            finish_sent: false,
            done: false,
        }
    }

    /// Feeds one SSE event: `name` is its `event:` field (may be empty), `data` its `data:`
    /// payload. Appends zero or more complete OpenAI events (`data: {json}\n\n`) to `out`.
    /// Returns Ok(true) once the message is finished (`message_stop`); by then the final usage
    /// chunk (`"choices":[]` plus `usage`) has been appended. The caller appends `data: [DONE]`.
    /// An `error` event or malformed JSON -> Err(message).
    pub fn event(&mut self, name: &[u8], data: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        if self.done {
            return Ok(true);
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            if name == b"error" {
                return Err("Anthropic stream sent an error event without details".to_string());
            }
            return Ok(false);
        }
        let v =
            parse(data).map_err(|e| format!("Anthropic stream event is not valid JSON: {e}"))?;
        // The payload's own `type` is authoritative; the `event:` name is a fallback for
        // senders that leave it out.
        let kind = v
            .get("type")
            .and_then(|t| t.as_str())
            .or_else(|| std::str::from_utf8(name).ok())
            .unwrap_or("");
        match kind {
            "message_start" => {
                let msg = v.get("message");
                if let Some(id) = msg.and_then(|m| m.get("id")).and_then(|s| s.as_str()) {
                    self.id = id.to_string();
                }
                if let Some(model) = msg.and_then(|m| m.get("model")).and_then(|s| s.as_str()) {
                    self.model = model.to_string();
                }
                if let Some(u) = msg.and_then(|m| m.get("usage")) {
                    self.usage.read(Some(u));
                    self.usage_seen = true;
                }
                self.push(out, json!({"role": "assistant", "content": ""}), None);
            }
            "content_block_start" => {
                let index = v.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
                let block = v.get("content_block");
                match block.and_then(|b| b.get("type")).and_then(|t| t.as_str()) {
                    Some("tool_use") => {
                        let call = self.tool_blocks.len() as u64;
                        self.tool_blocks.push((index, call));
                        let id = block.map_or("", |b| str_field(b, "id"));
                        let name = block.map_or("", |b| str_field(b, "name"));
                        let delta = json!({"tool_calls": [{
                            "index": call,
                            "id": id,
                            "type": "function",
                            "function": {"name": name, "arguments": ""},
                        }]});
                        self.push(out, delta, None);
                    }
                    Some("text") => {
                        let text = block.map_or("", |b| str_field(b, "text"));
                        if !text.is_empty() {
                            self.push(out, json!({"content": text}), None);
                        }
                    }
                    Some("thinking") => {
                        let text = block.map_or("", |b| str_field(b, "thinking"));
                        if !text.is_empty() {
                            self.push(out, json!({"reasoning_content": text}), None);
                        }
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let index = v.get("index").and_then(|i| i.as_u64()).unwrap_or(0);
                let delta = v.get("delta");
                let field = |k: &str| delta.map_or("", |d| str_field(d, k));
                match delta.and_then(|d| d.get("type")).and_then(|t| t.as_str()) {
                    Some("text_delta") if !field("text").is_empty() => {
                        self.push(out, json!({"content": field("text")}), None);
                    }
                    Some("thinking_delta") if !field("thinking").is_empty() => {
                        self.push(out, json!({"reasoning_content": field("thinking")}), None);
                    }
                    Some("input_json_delta") if !field("partial_json").is_empty() => {
                        // Deltas of blocks that are not function tools (server tools) have no
                        // OpenAI tool call to attach to and are skipped.
                        if let Some(&(_, call)) =
                            self.tool_blocks.iter().find(|(block, _)| *block == index)
                        {
                            let delta = json!({"tool_calls": [{
                                "index": call,
                                "function": {"arguments": field("partial_json")},
                            }]});
                            self.push(out, delta, None);
                        }
                    }
                    // signature_delta, citations_delta, empty deltas, future types.
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    self.usage.read(Some(u));
                    self.usage_seen = true;
                }
                let stop = v
                    .get("delta")
                    .and_then(|d| d.get("stop_reason"))
                    .and_then(|s| s.as_str());
                self.push(out, json!({}), Some(openai_finish(stop)));
                self.finish_sent = true;
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.push(out, json!({}), Some("stop"));
                    self.finish_sent = true;
                }
                let chunk = json!({
                    "id": self.id.as_str(),
                    "object": "chat.completion.chunk",
                    "created": self.created,
                    "model": self.model.as_str(),
                    "choices": [],
                    "usage": openai_usage(&self.usage.usage()),
                });
                push_data(out, &chunk);
                self.done = true;
                return Ok(true);
            }
            "error" => return Err(upstream_error_message(&v)),
            // ping, content_block_stop, and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    /// Usage seen so far (input from message_start, output from message_delta).
    pub fn usage(&self) -> Option<Usage> {
        self.usage_seen.then(|| self.usage.usage())
    }

    fn push(&self, out: &mut Vec<u8>, delta: OwnedValue, finish: Option<&str>) {
        let chunk = json!({
            "id": self.id.as_str(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_str(),
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        });
        push_data(out, &chunk);
    }
}

/// Rewrites an Anthropic error body (`{"type":"error","error":{"type","message"}}`) as an
/// OpenAI-shaped error body `{"error":{"message","type","param":null,"code"}}`. Unparseable
/// input still yields a valid OpenAI error naming the status.
pub fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {
    let parsed = parse(body).ok();
    let err = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = err.and_then(|e| e.get("type")).and_then(|t| t.as_str());
    let message = err.and_then(|e| e.get("message")).and_then(|m| m.as_str());
    let message: Cow<'_, str> = match message {
        Some(m) => m.into(),
        None => {
            let text = String::from_utf8_lossy(body);
            let snippet = crate::error::truncate(text.trim(), 200);
            if snippet.is_empty() {
                format!("The Anthropic upstream returned HTTP {status}.").into()
            } else {
                format!("The Anthropic upstream returned HTTP {status}: {snippet}").into()
            }
        }
    };
    out.extend_from_slice(b"{\"error\":{\"message\":");
    jw::write_str(out, &message);
    out.extend_from_slice(b",\"type\":");
    jw::write_str(out, openai_kind(status).as_str());
    out.extend_from_slice(b",\"param\":null,\"code\":");
    jw::write_str(out, kind.unwrap_or("upstream_error"));
    out.extend_from_slice(b"}}");
}

/// The OpenAI error family for an HTTP status.
fn openai_kind(status: u16) -> Kind {
    match status {
        401 => Kind::Authentication,
        403 => Kind::Permission,
        429 => Kind::RateLimit,
        400..=499 => Kind::InvalidRequest,
        // 5xx, 529, and error bodies that came with a success status: the upstream failed.
        _ => Kind::Server,
    }
}

/// "type: message" from an Anthropic error body, or a generic line.
fn upstream_error_message(v: &OwnedValue) -> String {
    let err = v.get("error");
    let kind = err
        .and_then(|e| e.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("error");
    let message = err
        .and_then(|e| e.get("message"))
        .and_then(|m| m.as_str())
        .unwrap_or("no message");
    format!("Anthropic {kind}: {message}")
}

// ---- Ingress: Anthropic-format client -> gateway (OpenAI form) ----

/// Translates an Anthropic Messages request into an OpenAI chat-completions body (what routing
/// and every adapter understand). Keeps `model` as given. A streaming request also gets
/// `"stream_options":{"include_usage":true}`. Client mistakes -> Err(Error 400).
pub fn ingress_request(body: &[u8]) -> Result<Vec<u8>, Error> {
    let v = parse_client(body)?;
    let Some(req) = v.as_object() else {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object with `model`, `max_tokens` and `messages`.",
        ));
    };
    let model = match req.get("model") {
        None => {
            return Err(bad(
                "missing_model",
                "You must provide a `model` parameter.",
            ));
        }
        Some(m) => m.as_str().filter(|s| !s.is_empty()).ok_or_else(|| {
            bad(
                "invalid_model",
                "`model` must be a non-empty string, e.g. \"claude-sonnet-4-5\".",
            )
        })?,
    };
    let messages = match req.get("messages") {
        None => {
            return Err(bad(
                "missing_messages",
                "You must provide `messages`, an array of user and assistant messages.",
            ));
        }
        Some(m) => m.as_array().ok_or_else(|| {
            bad(
                "invalid_messages",
                "`messages` must be an array of user and assistant messages.",
            )
        })?,
    };
    let max_tokens = match present(req.get("max_tokens")) {
        None => {
            return Err(bad(
                "missing_max_tokens",
                "`max_tokens` is required: the most tokens to generate, e.g. 1024.",
            ));
        }
        Some(n) => n.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "invalid_max_tokens",
                "`max_tokens` must be a positive integer.",
            )
        })?,
    };

    let mut msgs: Vec<OwnedValue> = Vec::with_capacity(messages.len() + 1);
    if let Some(system) = present(req.get("system")) {
        let text = ingress_system(system)?;
        if !text.is_empty() {
            msgs.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let content = present(m.get("content")).ok_or_else(|| {
            bad(
                "invalid_content",
                format!("messages[{i}].content must be a string or an array of content blocks."),
            )
        })?;
        match m.get("role").and_then(|r| r.as_str()) {
            Some("user") => ingress_user(content, i, &mut msgs)?,
            Some("assistant") => ingress_assistant(content, i, &mut msgs)?,
            _ => {
                return Err(bad(
                    "invalid_role",
                    format!(
                        "messages[{i}].role must be \"user\" or \"assistant\"; put system instructions in the top-level `system`."
                    ),
                ));
            }
        }
    }

    let mut out = json!({"model": model, "messages": msgs, "max_tokens": max_tokens});
    for key in ["temperature", "top_p"] {
        if let Some(x) = present(req.get(key)) {
            if !x.is_number() {
                return Err(bad(
                    "invalid_parameter",
                    format!("`{key}` must be a number."),
                ));
            }
            set(&mut out, key, x.clone());
        }
    }
    if let Some(stops) = present(req.get("stop_sequences")) {
        let invalid = || {
            bad(
                "invalid_stop_sequences",
                "`stop_sequences` must be an array of strings.",
            )
        };
        let list = stops.as_array().ok_or_else(invalid)?;
        if list.iter().any(|s| s.as_str().is_none()) {
            return Err(invalid());
        }
        if !list.is_empty() {
            set(&mut out, "stop", stops.clone());
        }
    }
    let tools = match present(req.get("tools")) {
        None => Vec::new(),
        Some(t) => {
            let list = t
                .as_array()
                .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
            list.iter()
                .enumerate()
                .map(|(j, t)| ingress_tool(t, j))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    if !tools.is_empty() {
        set(&mut out, "tools", tools.into());
        if let Some(choice) = present(req.get("tool_choice")) {
            let invalid = || {
                bad(
                    "invalid_tool_choice",
                    "`tool_choice.type` must be auto, any, tool (with `name`) or none.",
                )
            };
            let mapped = match choice.get("type").and_then(|t| t.as_str()) {
                Some("auto") => "auto".into(),
                Some("any") => "required".into(),
                Some("none") => "none".into(),
                Some("tool") => {
                    let name = choice
                        .get("name")
                        .and_then(|n| n.as_str())
                        .filter(|s| !s.is_empty())
                        .ok_or_else(invalid)?;
                    json!({"type": "function", "function": {"name": name}})
                }
                _ => return Err(invalid()),
            };
            set(&mut out, "tool_choice", mapped);
            if choice
                .get("disable_parallel_tool_use")
                .and_then(|d| d.as_bool())
                == Some(true)
            {
                set(&mut out, "parallel_tool_calls", false.into());
            }
        }
    }
    if let Some(user) = req
        .get("metadata")
        .and_then(|m| m.get("user_id"))
        .and_then(|u| u.as_str())
        && !user.is_empty()
    {
        set(&mut out, "user", user.into());
    }
    if let Some(stream) = present(req.get("stream")) {
        let stream = stream
            .as_bool()
            .ok_or_else(|| bad("invalid_stream", "`stream` must be a boolean."))?;
        set(&mut out, "stream", stream.into());
        if stream {
            // The Anthropic stream ends with usage; OpenAI upstreams only send it when asked.
            set(&mut out, "stream_options", json!({"include_usage": true}));
        }
    }
    Ok(out.encode().into_bytes())
}

/// The top-level `system`: a string or text blocks, joined.
fn ingress_system(system: &OwnedValue) -> Result<String, Error> {
    if let Some(s) = system.as_str() {
        return Ok(s.to_string());
    }
    let invalid = || {
        bad(
            "invalid_system",
            "`system` must be a string or an array of text blocks.",
        )
    };
    let blocks = system.as_array().ok_or_else(invalid)?;
    let mut texts = Vec::with_capacity(blocks.len());
    for b in blocks {
        let text = b.get("text").and_then(|t| t.as_str()).ok_or_else(invalid)?;
        if !text.is_empty() {
            texts.push(text);
        }
    }
    Ok(texts.join(SYSTEM_JOIN))
}

/// A user turn: its tool results become `tool` messages first (OpenAI puts them right after the
/// assistant's calls), then a user message with the rest.
fn ingress_user(content: &OwnedValue, i: usize, msgs: &mut Vec<OwnedValue>) -> Result<(), Error> {
    if let Some(s) = content.as_str() {
        msgs.push(json!({"role": "user", "content": s}));
        return Ok(());
    }
    let blocks = content.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content must be a string or an array of content blocks."),
        )
    })?;
    // Images returned by tools: OpenAI tool messages carry text only, so they go first in the
    // user message that follows, next to the results they came with.
    let mut lifted = Vec::new();
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(|t| t.as_str()) {
            Some("text") => parts.push(json!({"type": "text", "text": block_text(b, i, j)?})),
            Some("image") => parts.push(image_part(b, i, j)?),
            Some("tool_result") => {
                let (msg, images) = tool_message(b, i, j)?;
                msgs.push(msg);
                lifted.extend(images);
            }
            Some("thinking" | "redacted_thinking") => {}
            other => return Err(unsupported_block(other, i, j)),
        }
    }
    lifted.extend(parts);
    if !lifted.is_empty() {
        msgs.push(json!({"role": "user", "content": collapse_parts(lifted)}));
    }
    Ok(())
}

/// A lone text part is written as a plain string (accepted by every OpenAI-compatible server).
fn collapse_parts(parts: Vec<OwnedValue>) -> OwnedValue {
    if parts.len() == 1
        && let Some(text) = parts
            .first()
            .filter(|p| p.get("type").and_then(|t| t.as_str()) == Some("text"))
            .and_then(|p| p.get("text"))
            .and_then(|t| t.as_str())
    {
        return text.into();
    }
    parts.into()
}

fn ingress_assistant(
    content: &OwnedValue,
    i: usize,
    msgs: &mut Vec<OwnedValue>,
) -> Result<(), Error> {
    if let Some(s) = content.as_str() {
        msgs.push(json!({"role": "assistant", "content": s}));
        return Ok(());
    }
    let blocks = content.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content must be a string or an array of content blocks."),
        )
    })?;
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(|t| t.as_str()) {
            Some("text") => text.push_str(block_text(b, i, j)?),
            Some("tool_use") => {
                let field = |k: &str| {
                    b.get(k)
                        .and_then(|v| v.as_str())
                        .filter(|s| !s.is_empty())
                        .ok_or_else(|| {
                            bad(
                                "invalid_content",
                                format!(
                                    "messages[{i}].content[{j}].{k} must be a non-empty string."
                                ),
                            )
                        })
                };
                let arguments =
                    present(b.get("input")).map_or_else(|| "{}".to_string(), |x| x.encode());
                calls.push(json!({
                    "id": field("id")?,
                    "type": "function",
                    "function": {"name": field("name")?, "arguments": arguments},
                }));
            }
            // Thinking is bound to Anthropic signatures; other providers cannot take it back.
            Some("thinking" | "redacted_thinking") => {}
            other => return Err(unsupported_block(other, i, j)),
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let content = if text.is_empty() {
        OwnedValue::null()
    } else {
        text.into()
    };
    let mut msg = json!({"role": "assistant", "content": content});
    if !calls.is_empty() {
        set(&mut msg, "tool_calls", calls.into());
    }
    msgs.push(msg);
    Ok(())
}

/// A `tool_result` block as an OpenAI `tool` message, plus the images it carried.
fn tool_message(
    b: &OwnedValue,
    i: usize,
    j: usize,
) -> Result<(OwnedValue, Vec<OwnedValue>), Error> {
    let id = b
        .get("tool_use_id")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_content",
                format!("messages[{i}].content[{j}].tool_use_id must be a non-empty string."),
            )
        })?;
    let mut texts: Vec<&str> = Vec::new();
    let mut images = Vec::new();
    match present(b.get("content")) {
        None => {}
        Some(c) if c.as_str().is_some() => texts.extend(c.as_str()),
        Some(c) => {
            let inner = c.as_array().ok_or_else(|| {
                bad(
                    "invalid_content",
                    format!(
                        "messages[{i}].content[{j}].content must be a string or an array of text and image blocks."
                    ),
                )
            })?;
            for x in inner {
                match x.get("type").and_then(|t| t.as_str()) {
                    Some("text") => texts.push(block_text(x, i, j)?),
                    Some("image") => images.push(image_part(x, i, j)?),
                    other => return Err(unsupported_block(other, i, j)),
                }
            }
        }
    }
    let text = texts.join("\n");
    // OpenAI has no error flag on tool messages: say it in the text the model reads.
    let text = if b.get("is_error").and_then(|e| e.as_bool()) == Some(true) {
        if text.is_empty() {
            "Error".to_string()
        } else {
            format!("Error: {text}")
        }
    } else {
        text
    };
    Ok((
        json!({"role": "tool", "tool_call_id": id, "content": text}),
        images,
    ))
}

fn block_text(b: &OwnedValue, i: usize, j: usize) -> Result<&str, Error> {
    b.get("text").and_then(|t| t.as_str()).ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content[{j}].text must be a string."),
        )
    })
}

/// An Anthropic image block as an OpenAI `image_url` part.
fn image_part(b: &OwnedValue, i: usize, j: usize) -> Result<OwnedValue, Error> {
    let source = b.get("source");
    let field = |k: &str| source.and_then(|s| s.get(k)).and_then(|v| v.as_str());
    let url = match field("type") {
        Some("base64") => match (field("media_type"), field("data")) {
            (Some(mime), Some(data)) if !mime.is_empty() => format!("data:{mime};base64,{data}"),
            _ => {
                return Err(bad(
                    "invalid_content",
                    format!(
                        "messages[{i}].content[{j}].source needs `media_type` and `data` strings."
                    ),
                ));
            }
        },
        Some("url") => field("url")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| {
                bad(
                    "invalid_content",
                    format!("messages[{i}].content[{j}].source.url must be a string."),
                )
            })?
            .to_string(),
        _ => {
            return Err(bad(
                "unsupported_content",
                format!(
                    "messages[{i}].content[{j}]: image sources must be base64 or url through this gateway."
                ),
            ));
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

fn unsupported_block(kind: Option<&str>, i: usize, j: usize) -> Error {
    bad(
        "unsupported_content",
        format!(
            "messages[{i}].content[{j}]: content block type `{}` is not supported through this gateway; use text, image, tool_use and tool_result.",
            crate::error::truncate(kind.unwrap_or("(missing)"), 40)
        ),
    )
}

fn ingress_tool(t: &OwnedValue, j: usize) -> Result<OwnedValue, Error> {
    if let Some(kind) = t.get("type").and_then(|k| k.as_str())
        && kind != "custom"
    {
        return Err(bad(
            "unsupported_tool",
            format!(
                "tools[{j}]: Anthropic server tool `{}` cannot be routed through this gateway; only custom tools (name, description, input_schema) can.",
                crate::error::truncate(kind, 40)
            ),
        ));
    }
    let name = t
        .get("name")
        .and_then(|n| n.as_str())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_tools",
                format!("tools[{j}].name must be a non-empty string."),
            )
        })?;
    let schema = present(t.get("input_schema"))
        .cloned()
        .unwrap_or_else(|| json!({"type": "object", "properties": {}}));
    let mut function = json!({"name": name, "parameters": schema});
    if let Some(d) = t.get("description").and_then(|d| d.as_str()) {
        set(&mut function, "description", d.into());
    }
    Ok(json!({"type": "function", "function": function}))
}

/// Rewrites an OpenAI `chat.completion` body as an Anthropic `message` body.
pub fn egress_response(openai: &[u8], out: &mut Vec<u8>) -> Result<Usage, String> {
    let v = parse(openai).map_err(|e| format!("chat completion is not valid JSON: {e}"))?;
    if let Some(e) = v.get("error") {
        return Err(format!(
            "chat completion carries an error: {}",
            e.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
        ));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
        .ok_or("chat completion has no choices")?;
    let msg = choice
        .get("message")
        .ok_or("chat completion choice has no message")?;
    let mut blocks = Vec::new();
    if let Some(r) = reasoning_of(msg) {
        // No signature exists for thinking that did not come from Anthropic; clients that
        // send it back get it dropped by `ingress_request`.
        blocks.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    let text = message_text(msg.get("content"));
    if !text.is_empty() {
        blocks.push(json!({"type": "text", "text": text}));
    }
    let mut has_tools = false;
    if let Some(calls) = msg.get("tool_calls").and_then(|c| c.as_array()) {
        for call in calls {
            let f = call.get("function");
            let args = f.map_or("", |f| str_field(f, "arguments"));
            let input = if args.trim().is_empty() {
                json!({})
            } else {
                // A call the client would run with made-up input is worse than a failed answer.
                parse(args.as_bytes())
                    .ok()
                    .filter(|x| x.is_object())
                    .ok_or("tool call arguments are not a JSON object")?
            };
            blocks.push(json!({
                "type": "tool_use",
                "id": str_field(call, "id"),
                "name": f.map_or("", |f| str_field(f, "name")),
                "input": input,
            }));
            has_tools = true;
        }
    }
    let usage = read_openai_usage(v.get("usage"));
    let stop = anthropic_stop(
        choice.get("finish_reason").and_then(|f| f.as_str()),
        has_tools,
    );
    let body = json!({
        "id": message_id(str_field(&v, "id")),
        "type": "message",
        "role": "assistant",
        "model": str_field(&v, "model"),
        "content": blocks,
        "stop_reason": stop,
        "stop_sequence": null,
        "usage": anthropic_usage(&usage),
    });
    out.extend_from_slice(body.encode().as_bytes());
    Ok(usage)
}

/// Reasoning text in either spelling OpenAI-compatible servers use.
fn reasoning_of(v: &OwnedValue) -> Option<&str> {
    v.get("reasoning_content")
        .and_then(|r| r.as_str())
        .or_else(|| v.get("reasoning").and_then(|r| r.as_str()))
        .filter(|r| !r.is_empty())
}

/// OpenAI message content (a string, or text parts) as one string.
fn message_text(content: Option<&OwnedValue>) -> String {
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

/// An Anthropic message id from an OpenAI completion id.
fn message_id(openai_id: &str) -> String {
    if openai_id.starts_with("msg_") {
        return openai_id.to_string();
    }
    let rest = openai_id.strip_prefix("chatcmpl-").unwrap_or(openai_id);
    if rest.is_empty() {
        "msg_gateway".to_string()
    } else {
        format!("msg_{rest}")
    }
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
fn anthropic_stop(finish: Option<&str>, has_tools: bool) -> &'static str {
    match finish {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        // Some servers say "stop" after tool calls; Anthropic clients key on tool_use to run
        // the tools, so the calls decide.
        _ if has_tools => "tool_use",
        _ => "end_turn",
    }
}

fn read_openai_usage(u: Option<&OwnedValue>) -> Usage {
    let Some(u) = u else {
        return Usage::default();
    };
    let get = |v: Option<&OwnedValue>, k: &str| v.and_then(|v| v.get(k)).and_then(|n| n.as_u64());
    let details = u.get("prompt_tokens_details");
    Usage {
        prompt: get(Some(u), "prompt_tokens").unwrap_or(0),
        completion: get(Some(u), "completion_tokens").unwrap_or(0),
        cached: get(details, "cached_tokens").unwrap_or(0),
        cache_write: get(details, "cache_write_tokens").unwrap_or(0),
    }
}

/// Anthropic's usage object: its `input_tokens` excludes cache reads and writes.
fn anthropic_usage(u: &Usage) -> OwnedValue {
    json!({
        "input_tokens": u.prompt.saturating_sub(u.cached).saturating_sub(u.cache_write),
        "output_tokens": u.completion,
        "cache_read_input_tokens": u.cached,
        "cache_creation_input_tokens": u.cache_write,
    })
}

/// The content block the encoder has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u64),
    Thinking(u64),
    Tool(u64),
}

/// Turns OpenAI chunk events into a correct Anthropic SSE event sequence.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    done: bool,
    next_index: u64,
    open: Option<Open>,
    /// (OpenAI tool call index, content block index) for every call seen.
    tools: Vec<(u64, u64)>,
    finish: Option<String>,
    usage: Option<Usage>,
}

impl StreamEncoder {
    /// An encoder for one response.
    pub fn new() -> Self {
        Self::default()
    }

    /// One OpenAI chunk (the JSON after `data: `; never `[DONE]`). Appends Anthropic events
    /// (`event: <type>\ndata: {json}\n\n`) to `out`.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if self.done {
            return Ok(());
        }
        let v = parse(data).map_err(|e| format!("chat completion chunk is not valid JSON: {e}"))?;
        if let Some(e) = v.get("error") {
            return Err(format!(
                "upstream stream error: {}",
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("no message")
            ));
        }
        if let Some(u) = present(v.get("usage")) {
            self.usage = Some(read_openai_usage(Some(u)));
        }
        if !self.started {
            self.start(str_field(&v, "id"), str_field(&v, "model"), out);
        }
        // One choice is asked for; others (n > 1) have no place in an Anthropic message.
        let Some(choice) = v.get("choices").and_then(|c| c.as_array()).and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(|i| i.as_u64()).unwrap_or(0) == 0)
        }) else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(r) = reasoning_of(delta) {
                let index = self.ensure_open(Open::Thinking, "thinking", out);
                self.delta(index, json!({"type": "thinking_delta", "thinking": r}), out);
            }
            if let Some(text) = delta.get("content").and_then(|c| c.as_str())
                && !text.is_empty()
            {
                let index = self.ensure_open(Open::Text, "text", out);
                self.delta(index, json!({"type": "text_delta", "text": text}), out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(|c| c.as_array()) {
                for (pos, call) in calls.iter().enumerate() {
                    self.tool_call(call, pos as u64, out);
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(|f| f.as_str()) {
            self.finish = Some(f.to_string());
        }
        Ok(())
    }

    /// The stream ended: closes any open content block, then `message_delta` (stop_reason,
    /// usage) and `message_stop`. Idempotent (second call appends nothing).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        self.close(out);
        let stop = anthropic_stop(self.finish.as_deref(), !self.tools.is_empty());
        let mut usage = json!({"output_tokens": self.usage.map_or(0, |u| u.completion)});
        if let Some(u) = self.usage {
            let full = anthropic_usage(&u);
            for key in [
                "input_tokens",
                "cache_read_input_tokens",
                "cache_creation_input_tokens",
            ] {
                if let Some(n) = full.get(key) {
                    set(&mut usage, key, n.clone());
                }
            }
        }
        emit(
            out,
            "message_delta",
            &json!({
                "type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": usage,
            }),
        );
        emit(out, "message_stop", &json!({"type": "message_stop"}));
        self.done = true;
    }

    /// A failure mid-stream: appends an `event: error` with an Anthropic-shaped error.
    pub fn error(&mut self, err: &Error, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&error_body(err));
        out.extend_from_slice(b"\n\n");
        // An Anthropic stream ends at its error event: nothing may follow it.
        self.done = true;
    }

    /// Usage seen in the chunks.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        let input = self.usage.map_or(0, |u| {
            u.prompt
                .saturating_sub(u.cached)
                .saturating_sub(u.cache_write)
        });
        emit(
            out,
            "message_start",
            &json!({
                "type": "message_start",
                "message": {
                    "id": message_id(id),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": null,
                    "stop_sequence": null,
                    "usage": {"input_tokens": input, "output_tokens": 0},
                },
            }),
        );
        self.started = true;
    }

    /// Makes sure a block of this kind is the open one (closing another), returns its index.
    fn ensure_open(&mut self, make: fn(u64) -> Open, kind: &str, out: &mut Vec<u8>) -> u64 {
        if let Some(open) = self.open {
            let index = match open {
                Open::Text(i) | Open::Thinking(i) | Open::Tool(i) => i,
            };
            if open == make(index) {
                return index;
            }
        }
        self.close(out);
        let index = self.next_index;
        self.next_index += 1;
        let block = if kind == "thinking" {
            json!({"type": "thinking", "thinking": "", "signature": ""})
        } else {
            json!({"type": "text", "text": ""})
        };
        emit(
            out,
            "content_block_start",
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.open = Some(make(index));
        index
    }

    fn tool_call(&mut self, call: &OwnedValue, pos: u64, out: &mut Vec<u8>) {
        let openai_index = call.get("index").and_then(|i| i.as_u64()).unwrap_or(pos);
        let function = call.get("function");
        let known = self
            .tools
            .iter()
            .find(|(o, _)| *o == openai_index)
            .map(|(_, b)| *b);
        let index = match known {
            // A later fragment of a call whose block is no longer open (servers that
            // interleave parallel calls): it still goes to that call's block index, which is
            // how Anthropic clients assemble blocks.
            Some(b) => b,
            None => {
                self.close(out);
                let index = self.next_index;
                self.next_index += 1;
                let id = call
                    .get("id")
                    .and_then(|i| i.as_str())
                    .filter(|s| !s.is_empty())
                    .map_or_else(|| format!("toolu_{index}"), str::to_string);
                let name = function.map_or("", |f| str_field(f, "name"));
                emit(
                    out,
                    "content_block_start",
                    &json!({
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "tool_use", "id": id, "name": name, "input": {}},
                    }),
                );
                self.tools.push((openai_index, index));
                self.open = Some(Open::Tool(index));
                index
            }
        };
        let args = function.map_or("", |f| str_field(f, "arguments"));
        if !args.is_empty() {
            self.delta(
                index,
                json!({"type": "input_json_delta", "partial_json": args}),
                out,
            );
        }
    }

    fn delta(&self, index: u64, delta: OwnedValue, out: &mut Vec<u8>) {
        emit(
            out,
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            let index = match open {
                Open::Text(i) | Open::Thinking(i) | Open::Tool(i) => i,
            };
            emit(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }
}

/// The Anthropic error `type` for an HTTP status.
pub fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// The Anthropic-shaped error body for a gateway error:
/// `{"type":"error","error":{"type":<anthropic type for the status>,"message":…}}`.
pub fn error_body(err: &Error) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + err.message.len());
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    jw::write_str(&mut out, error_type(err.status));
    out.extend_from_slice(b",\"message\":");
    jw::write_str(&mut out, &err.message);
    out.extend_from_slice(b"}}");
    out
}

/// `/v1/messages/count_tokens`: `{"input_tokens":n}` estimated with `crate::api::chat::estimate`
/// (text bytes of system + messages + tool definitions, counts of messages, images, tools).
pub fn count_tokens(body: &[u8]) -> Result<Vec<u8>, Error> {
    let v = parse_client(body)?;
    let messages = v
        .get("messages")
        .and_then(|m| m.as_array())
        .ok_or_else(|| {
            bad(
                "invalid_messages",
                "`messages` must be an array of user and assistant messages.",
            )
        })?;
    let mut text: u64 = 0;
    let mut images: u32 = 0;
    if let Some(system) = v.get("system") {
        count_content(system, &mut text, &mut images);
    }
    for m in messages {
        if let Some(c) = m.get("content") {
            count_content(c, &mut text, &mut images);
        }
    }
    let tools = v.get("tools").and_then(|t| t.as_array());
    for t in tools.into_iter().flatten() {
        text += str_field(t, "name").len() as u64 + str_field(t, "description").len() as u64;
        if let Some(schema) = t.get("input_schema") {
            text += schema.encode().len() as u64;
        }
    }
    let n = estimate(
        text,
        u32::try_from(messages.len()).unwrap_or(u32::MAX),
        images,
        u32::try_from(tools.map_or(0, Vec::len)).unwrap_or(u32::MAX),
    );
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(b"{\"input_tokens\":");
    jw::write_u64(&mut out, u64::from(n));
    out.push(b'}');
    Ok(out)
}

/// Adds the text bytes and images of Anthropic content (a string or blocks, nested in tool
/// results) to the counters.
fn count_content(c: &OwnedValue, text: &mut u64, images: &mut u32) {
    if let Some(s) = c.as_str() {
        *text += s.len() as u64;
        return;
    }
    for b in c.as_array().into_iter().flatten() {
        match b.get("type").and_then(|t| t.as_str()) {
            Some("image") => *images = images.saturating_add(1),
            Some("tool_use") => {
                *text += str_field(b, "name").len() as u64;
                if let Some(input) = b.get("input") {
                    *text += input.encode().len() as u64;
                }
            }
            Some("tool_result") => {
                if let Some(inner) = b.get("content") {
                    count_content(inner, text, images);
                }
            }
            _ => *text += str_field(b, "text").len() as u64,
        }
    }
}

// ---- Shared helpers ----

/// Parses a copy of `bytes` (simd-json rewrites its input).
fn parse(bytes: &[u8]) -> Result<OwnedValue, simd_json::Error> {
    let mut copy = bytes.to_vec();
    simd_json::to_owned_value(&mut copy)
}

/// Parses a client's body, or the 400 that says why it could not be.
fn parse_client(body: &[u8]) -> Result<OwnedValue, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "empty_body",
            "The request body is empty; send a JSON object with `model`, `max_tokens` and `messages`.",
        ));
    }
    parse(body).map_err(|e| {
        bad(
            "invalid_json",
            format!("We could not parse the JSON body of your request ({e}); send a JSON object."),
        )
    })
}

fn bad(code: &'static str, message: impl Into<Cow<'static, str>>) -> Error {
    Error::bad_request(code, message)
}

/// The value unless it is absent or `null` (both mean "not given").
fn present(v: Option<&OwnedValue>) -> Option<&OwnedValue> {
    v.filter(|v| !v.is_null())
}

/// A string member, or "" when absent or not a string.
fn str_field<'v>(v: &'v OwnedValue, key: &str) -> &'v str {
    v.get(key).and_then(|s| s.as_str()).unwrap_or("")
}

fn number(v: &OwnedValue, key: &str) -> Result<f64, Error> {
    v.cast_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| bad("invalid_parameter", format!("`{key}` must be a number.")))
}

/// Sets `key` on an object value (a no-op on anything else, which callers never pass).
fn set(target: &mut OwnedValue, key: &str, value: OwnedValue) {
    if let Some(o) = target.as_object_mut() {
        o.insert(key.to_string(), value);
    }
}

/// Appends an OpenAI SSE event.
fn push_data(out: &mut Vec<u8>, v: &OwnedValue) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.encode().as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Appends an Anthropic SSE event.
fn emit(out: &mut Vec<u8>, name: &str, v: &OwnedValue) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(v.encode().as_bytes());
    out.extend_from_slice(b"\n\n");
}
