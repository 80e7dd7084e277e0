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

use crate::error::{Error, Kind};
use crate::json as jw;
use crate::tokens::Usage;
use crate::tokens::estimate;

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

/// `/v1/messages/count_tokens`: `{"input_tokens":n}` estimated with `crate::tokens::estimate`
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

#[cfg(test)]
mod tests {
    use super::*;

    fn val(s: &str) -> OwnedValue {
        simd_json::to_owned_value(&mut s.as_bytes().to_vec()).unwrap()
    }

    fn val_bytes(b: &[u8]) -> OwnedValue {
        simd_json::to_owned_value(&mut b.to_vec()).unwrap()
    }

    fn enc(req: &str) -> Result<OwnedValue, Error> {
        let mut out = Vec::new();
        encode_request(&val(req), "claude-sonnet-4-5", &mut out)?;
        Ok(val_bytes(&out))
    }

    fn enc_err(req: &str) -> &'static str {
        let e = enc(req).unwrap_err();
        assert_eq!(e.status, 400, "{e}");
        e.code
    }

    fn ingress(req: &str) -> Result<OwnedValue, Error> {
        ingress_request(req.as_bytes()).map(|b| val_bytes(&b))
    }

    fn ingress_err(req: &str) -> &'static str {
        let e = ingress(req).unwrap_err();
        assert_eq!(e.status, 400, "{e}");
        e.code
    }

    /// Splits OpenAI SSE output into its JSON payloads.
    fn openai_events(out: &[u8]) -> Vec<OwnedValue> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|e| val(e.strip_prefix("data: ").unwrap()))
            .collect()
    }

    /// Splits Anthropic SSE output into (event name, payload), checking the name matches the
    /// payload's `type`.
    fn anthropic_events(out: &[u8]) -> Vec<(String, OwnedValue)> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
        text.split_terminator("\n\n")
            .map(|e| {
                let (head, data) = e.split_once('\n').unwrap();
                let name = head.strip_prefix("event: ").unwrap().to_string();
                let v = val(data.strip_prefix("data: ").unwrap());
                assert_eq!(v["type"].as_str(), Some(name.as_str()));
                (name, v)
            })
            .collect()
    }

    // ---- encode_request ----

    #[test]
    fn encode_hoists_system_maps_params_and_drops_unknown_fields() {
        let got = enc(r#"{
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello, Claude"}
            ],
            "max_completion_tokens": 1024, "max_tokens": 7,
            "temperature": 1.5, "top_p": 0.9, "stop": "END", "stream": true, "user": "user-42",
            "frequency_penalty": 0.5, "logit_bias": {"1": 2}, "seed": 7,
            "response_format": {"type": "text"}, "stream_options": {"include_usage": true}
        }"#)
        .unwrap();
        let want = json!({
            "model": "claude-sonnet-4-5",
            "system": "You are terse.\n\nAnswer in French.",
            "messages": [{"role": "user", "content": "Hello, Claude"}],
            "max_tokens": 1024,
            "temperature": 1.0,
            "top_p": 0.9,
            "stop_sequences": ["END"],
            "stream": true,
            "metadata": {"user_id": "user-42"},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn encode_defaults_and_stop_lists() {
        let got =
            enc(r#"{"messages":[{"role":"user","content":"Hi"}],"stop":["a","","b"]}"#).unwrap();
        assert_eq!(
            got,
            json!({
                "model": "claude-sonnet-4-5",
                "messages": [{"role": "user", "content": "Hi"}],
                "max_tokens": DEFAULT_MAX_TOKENS,
                "stop_sequences": ["a", "b"],
            })
        );
        let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":300,"temperature":0.2,"stop":null,"tools":[]}"#).unwrap();
        assert_eq!(got["max_tokens"], 300);
        assert_eq!(got["temperature"], 0.2);
        assert!(got.get("stop_sequences").is_none() && got.get("tools").is_none());
    }

    #[test]
    fn encode_images_from_data_and_http_urls() {
        let got = enc(r#"{"messages":[{"role":"user","content":[
            {"type":"text","text":"What is in these images?"},
            {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/a.jpg","detail":"high"}}
        ]}]}"#)
        .unwrap();
        assert_eq!(
            got["messages"],
            json!([{"role": "user", "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
                {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}}
            ]}])
        );
        let img = |url: &str| {
            format!(
                r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{url}"}}}}]}}]}}"#
            )
        };
        assert_eq!(enc_err(&img("data:image/png,abc")), "invalid_image_url");
        assert_eq!(enc_err(&img("data:;base64,abc")), "invalid_image_url");
        assert_eq!(enc_err(&img("data:image/png;base64,")), "invalid_image_url");
        assert_eq!(enc_err(&img("ftp://host/x.png")), "invalid_image_url");
        assert_eq!(
            enc_err(
                r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#
            ),
            "unsupported_content"
        );
    }

    #[test]
    fn encode_tool_conversation_merges_results_and_turns() {
        let got = enc(r#"{"messages":[
            {"role":"user","content":"What's the weather in Paris and London?"},
            {"role":"assistant","content":"Let me check.","tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},
                {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"London\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"18C, sunny"},
            {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12C, rain"}]},
            {"role":"user","content":"Thanks; which is warmer?"},
            {"role":"user","content":"Answer briefly."}],
            "tools":[
                {"type":"function","function":{"name":"get_weather","description":"Get the current weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}},
                {"type":"function","function":{"name":"now"}}],
            "tool_choice":"required","parallel_tool_calls":false}"#)
        .unwrap();
        let want = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": "user", "content": "What's the weather in Paris and London?"},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me check."},
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                    {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "London"}}
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                    {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12C, rain"}]},
                    {"type": "text", "text": "Thanks; which is warmer?"},
                    {"type": "text", "text": "Answer briefly."}
                ]}
            ],
            "tools": [
                {"name": "get_weather", "description": "Get the current weather",
                 "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}
            ],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn encode_drops_empty_messages_and_keeps_alternation() {
        let got = enc(r#"{"messages":[
            {"role":"user","content":"a"},
            {"role":"assistant","content":""},
            {"role":"user","content":[{"type":"text","text":"b"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":""}}]}]}"#)
        .unwrap();
        assert_eq!(
            got["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]}
            ])
        );
    }

    #[test]
    fn encode_tool_choice_variants() {
        let with = |choice: &str| {
            enc(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"function","function":{{"name":"f"}}}}]{choice}}}"#
            ))
        };
        assert_eq!(
            with(r#","tool_choice":"auto""#).unwrap()["tool_choice"],
            json!({"type": "auto"})
        );
        assert_eq!(
            with(r#","tool_choice":"none","parallel_tool_calls":false"#).unwrap()["tool_choice"],
            json!({"type": "none"})
        );
        assert_eq!(
            with(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#).unwrap()["tool_choice"],
            json!({"type": "tool", "name": "f"})
        );
        assert_eq!(
            with(r#","parallel_tool_calls":false"#).unwrap()["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
        assert!(with("").unwrap().get("tool_choice").is_none());
        assert!(
            with(r#","parallel_tool_calls":true"#)
                .unwrap()
                .get("tool_choice")
                .is_none()
        );
        assert_eq!(
            with(r#","tool_choice":"sometimes""#).unwrap_err().code,
            "invalid_tool_choice"
        );
        assert_eq!(
            with(r#","tool_choice":{"type":"function"}"#)
                .unwrap_err()
                .code,
            "invalid_tool_choice"
        );
        // tool_choice without tools is not sent (Anthropic rejects it).
        let got =
            enc(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}"#).unwrap();
        assert!(got.get("tool_choice").is_none());
    }

    #[test]
    fn encode_rejects_client_mistakes() {
        let call = |args: &str| {
            format!(
                r#"{{"messages":[{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":{args}}}}}]}}]}}"#
            )
        };
        assert_eq!(enc_err(&call(r#""{not json""#)), "invalid_tool_arguments");
        assert_eq!(enc_err(&call(r#""[1,2]""#)), "invalid_tool_arguments");
        assert_eq!(enc_err(&call("5")), "invalid_tool_arguments");
        assert_eq!(
            enc(&call(r#"{"a":1}"#)).unwrap()["messages"][0]["content"][0]["input"],
            json!({"a": 1})
        );
        assert_eq!(
            enc_err(
                r#"{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f"}}]}]}"#
            ),
            "invalid_tool_calls"
        );
        assert_eq!(
            enc_err(r#"{"messages":[{"role":"tool","content":"x"}]}"#),
            "invalid_tool_message"
        );
        assert_eq!(
            enc_err(r#"{"messages":[{"role":"function","content":"x"}]}"#),
            "invalid_role"
        );
        assert_eq!(
            enc_err(r#"{"messages":[{"content":"x"}]}"#),
            "invalid_messages"
        );
        assert_eq!(enc_err(r#"[1]"#), "invalid_body");
        assert_eq!(enc_err(r#"{"model":"m"}"#), "missing_messages");
        assert_eq!(enc_err(r#"{"messages":{}}"#), "invalid_messages");
        assert_eq!(
            enc_err(r#"{"messages":[],"max_tokens":0}"#),
            "invalid_max_tokens"
        );
        assert_eq!(
            enc_err(r#"{"messages":[],"max_completion_tokens":"9"}"#),
            "invalid_max_tokens"
        );
        assert_eq!(enc_err(r#"{"messages":[],"n":2}"#), "unsupported_n");
        assert_eq!(enc_err(r#"{"messages":[],"stop":[1]}"#), "invalid_stop");
        assert_eq!(
            enc_err(r#"{"messages":[],"temperature":"hot"}"#),
            "invalid_parameter"
        );
        assert_eq!(
            enc_err(r#"{"messages":[],"stream":"yes"}"#),
            "invalid_stream"
        );
        assert_eq!(
            enc_err(r#"{"messages":[],"tools":[{"type":"web_search_preview"}]}"#),
            "unsupported_tool"
        );
        assert_eq!(
            enc_err(r#"{"messages":[],"tools":[{"type":"function","function":{}}]}"#),
            "invalid_tools"
        );
        assert_eq!(
            enc_err(r#"{"messages":[{"role":"system","content":[{"type":"image_url"}]}]}"#),
            "invalid_content"
        );
    }

    // ---- decode_response ----

    fn dec(body: &str) -> Result<(OwnedValue, Usage), String> {
        let mut out = Vec::new();
        let u = decode_response(body.as_bytes(), 1_700_000_000, &mut out)?;
        Ok((val_bytes(&out), u))
    }

    #[test]
    fn decode_text_response() {
        let (got, usage) = dec(r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",
            "content":[{"type":"text","text":"Hi! My name is Claude."}],"model":"claude-sonnet-4-5-20250929",
            "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503}}"#)
        .unwrap();
        let want = json!({
            "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "claude-sonnet-4-5-20250929",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude."},
                         "logprobs": null, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598,
                      "prompt_tokens_details": {"cached_tokens": 0}},
        });
        assert_eq!(got, want);
        assert_eq!(
            usage,
            Usage {
                prompt: 2095,
                completion: 503,
                cached: 0,
                cache_write: 0
            }
        );
    }

    #[test]
    fn decode_tool_use_thinking_and_cache_usage() {
        let (got, usage) = dec(r#"{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[
                {"type":"thinking","thinking":"The user wants weather.","signature":"EqQB"},
                {"type":"redacted_thinking","data":"xx"},
                {"type":"text","text":"I'll check "},
                {"type":"text","text":"that."},
                {"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":100,"cache_read_input_tokens":2000,"cache_creation_input_tokens":300,"output_tokens":50}}"#)
        .unwrap();
        let want = json!({
            "id": "msg_01Aq9w938a90dw8q",
            "object": "chat.completion",
            "created": 1_700_000_000u64,
            "model": "claude-sonnet-4-5",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
                "role": "assistant",
                "content": "I'll check that.",
                "reasoning_content": "The user wants weather.",
                "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}}]
            }}],
            "usage": {"prompt_tokens": 2400, "completion_tokens": 50, "total_tokens": 2450,
                      "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 300}},
        });
        assert_eq!(got, want);
        assert_eq!(
            usage,
            Usage {
                prompt: 2400,
                completion: 50,
                cached: 2000,
                cache_write: 300
            }
        );
        // Only a tool call: content is null, as OpenAI sends it.
        let (got, _) = dec(r#"{"type":"message","id":"m","model":"c","content":[{"type":"tool_use","id":"t","name":"n","input":{}}],"stop_reason":"tool_use"}"#).unwrap();
        assert!(got["choices"][0]["message"]["content"].is_null());
        assert_eq!(
            got["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
    }

    #[test]
    fn decode_stop_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let body = format!(r#"{{"type":"message","content":[],"stop_reason":"{stop}"}}"#);
            assert_eq!(
                dec(&body).unwrap().0["choices"][0]["finish_reason"],
                finish,
                "{stop}"
            );
        }
    }

    #[test]
    fn decode_rejects_non_messages() {
        assert!(dec("not json").is_err());
        assert!(
            dec(r#"{"type":"message"}"#)
                .unwrap_err()
                .contains("content")
        );
        assert!(dec(r#"{"type":"completion","content":[]}"#).is_err());
        let e =
            dec(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
                .unwrap_err();
        assert_eq!(e, "Anthropic overloaded_error: Overloaded");
    }

    // ---- StreamDecoder ----

    fn decode_stream(events: &[(&str, &str)]) -> (Vec<OwnedValue>, Vec<bool>, StreamDecoder) {
        let mut d = StreamDecoder::new(1_700_000_000);
        let mut out = Vec::new();
        let done = events
            .iter()
            .map(|(n, data)| d.event(n.as_bytes(), data.as_bytes(), &mut out).unwrap())
            .collect();
        (openai_events(&out), done, d)
    }

    fn chunk(delta: OwnedValue, finish: Option<&str>) -> OwnedValue {
        json!({
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u64,
            "model": "claude-opus-4-1",
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    }

    const START: &str = r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-opus-4-1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;

    #[test]
    fn stream_decode_text() {
        let (chunks, done, d) = decode_stream(&[
            ("message_start", START),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            ),
            ("ping", r#"{"type": "ping"}"#),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        assert_eq!(
            done,
            [false, false, false, false, false, false, false, true]
        );
        let want = vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"content": "Hello"}), None),
            chunk(json!({"content": "!"}), None),
            chunk(json!({}), Some("stop")),
            json!({
                "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000u64,
                "model": "claude-opus-4-1",
                "choices": [],
                "usage": {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40,
                          "prompt_tokens_details": {"cached_tokens": 0}},
            }),
        ];
        assert_eq!(chunks, want);
        assert_eq!(
            d.usage(),
            Some(Usage {
                prompt: 25,
                completion: 15,
                cached: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn stream_decode_tools_count_calls_not_blocks() {
        let (chunks, done, d) = decode_stream(&[
            ("message_start", START),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need weather."}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":0}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":1}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":2}"#,
            ),
            (
                "content_block_start",
                r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}}"#,
            ),
            (
                "content_block_delta",
                r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
            ),
            (
                "content_block_stop",
                r#"{"type":"content_block_stop","index":3}"#,
            ),
            ("some_future_event", r#"{"type":"some_future_event","x":1}"#),
            (
                "message_delta",
                r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
            ),
            ("message_stop", r#"{"type":"message_stop"}"#),
        ]);
        assert_eq!(done.last(), Some(&true));
        let want = vec![
            chunk(json!({"role": "assistant", "content": ""}), None),
            chunk(json!({"reasoning_content": "Need weather."}), None),
            chunk(json!({"content": "Okay"}), None),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                          "function": {"name": "get_weather", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function",
                                          "function": {"name": "get_time", "arguments": ""}}]}),
                None,
            ),
            chunk(
                json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
                None,
            ),
            chunk(json!({}), Some("tool_calls")),
        ];
        assert_eq!(chunks[..want.len()], want[..]);
        assert_eq!(chunks.len(), want.len() + 1);
        assert_eq!(chunks[want.len()]["usage"]["completion_tokens"], 89);
        assert_eq!(d.usage().unwrap().completion, 89);
    }

    #[test]
    fn stream_decode_cache_usage_and_missing_message_delta() {
        let start = r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":1}}}"#;
        let mut d = StreamDecoder::new(5);
        assert_eq!(d.usage(), None);
        let mut out = Vec::new();
        assert!(!d.event(b"", start.as_bytes(), &mut out).unwrap());
        // No `type` in the payload: the event name decides.
        assert!(d.event(b"message_stop", b"{}", &mut out).unwrap());
        let chunks = openai_events(&out);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(
            chunks[2]["usage"],
            json!({"prompt_tokens": 105, "completion_tokens": 1, "total_tokens": 106,
                   "prompt_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 5}})
        );
        assert_eq!(
            d.usage(),
            Some(Usage {
                prompt: 105,
                completion: 1,
                cached: 90,
                cache_write: 5
            })
        );
        // After the end nothing more is written.
        let before = out.len();
        assert!(d.event(b"ping", br#"{"type":"ping"}"#, &mut out).unwrap());
        assert_eq!(out.len(), before);
    }

    #[test]
    fn stream_decode_errors() {
        let mut d = StreamDecoder::new(0);
        let mut out = Vec::new();
        let e = d
            .event(
                b"error",
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
                &mut out,
            )
            .unwrap_err();
        assert_eq!(e, "Anthropic overloaded_error: Overloaded");
        assert!(
            d.event(b"content_block_delta", b"{\"type\":", &mut out)
                .is_err()
        );
        assert!(d.event(b"error", b"", &mut out).is_err());
        assert!(!d.event(b"ping", b"", &mut out).unwrap());
        assert!(out.is_empty());
    }

    // ---- decode_error ----

    fn derr(status: u16, body: &str) -> OwnedValue {
        let mut out = Vec::new();
        decode_error(status, body.as_bytes(), &mut out);
        val_bytes(&out)
    }

    #[test]
    fn decode_error_bodies() {
        assert_eq!(
            derr(
                404,
                r#"{"type":"error","error":{"type":"not_found_error","message":"The requested resource could not be found."}}"#
            ),
            json!({"error": {"message": "The requested resource could not be found.", "type": "invalid_request_error", "param": null, "code": "not_found_error"}})
        );
        assert_eq!(
            derr(
                529,
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
        );
        assert_eq!(
            derr(
                429,
                r#"{"error":{"type":"rate_limit_error","message":"slow"}}"#
            )["error"]["type"],
            "rate_limit_error"
        );
        assert_eq!(derr(401, "{}")["error"]["type"], "authentication_error");
        assert_eq!(derr(403, "{}")["error"]["type"], "permission_error");
        assert_eq!(
            derr(502, "<html>Bad \"Gateway\"</html>"),
            json!({"error": {"message": "The Anthropic upstream returned HTTP 502: <html>Bad \"Gateway\"</html>",
                             "type": "server_error", "param": null, "code": "upstream_error"}})
        );
        assert_eq!(
            derr(503, "")["error"]["message"],
            "The Anthropic upstream returned HTTP 503."
        );
        let mut out = Vec::new();
        decode_error(500, &[0xff, 0xfe, b'\n', 0], &mut out);
        assert!(
            val_bytes(&out)["error"]["message"]
                .as_str()
                .unwrap()
                .contains("HTTP 500")
        );
    }

    // ---- ingress_request ----

    #[test]
    fn ingress_minimal_docs_example() {
        let got = ingress(r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, world"}]}"#).unwrap();
        assert_eq!(
            got,
            json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
                   "messages": [{"role": "user", "content": "Hello, world"}]})
        );
    }

    #[test]
    fn ingress_full_request() {
        let got = ingress(r#"{
            "model": "claude-sonnet-4-5", "max_tokens": 2048,
            "system": [{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}},
                       {"type":"text","text":"Be brief."}],
            "messages": [
                {"role":"user","content":[
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                    {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
                    {"type":"text","text":"Compare these and check the weather."}]},
                {"role":"assistant","content":[
                    {"type":"thinking","thinking":"Two images...","signature":"sig"},
                    {"type":"text","text":"Checking."},
                    {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}},
                    {"type":"tool_use","id":"toolu_2","name":"screenshot","input":{}}]},
                {"role":"user","content":[
                    {"type":"text","text":"Here you go."},
                    {"type":"tool_result","tool_use_id":"toolu_1","content":"Timeout","is_error":true},
                    {"type":"tool_result","tool_use_id":"toolu_2","content":[
                        {"type":"text","text":"Screen:"},
                        {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]}]},
                {"role":"assistant","content":"Done."}
            ],
            "stop_sequences": ["\n\nHuman:"], "temperature": 0.3, "top_p": 0.8, "top_k": 5,
            "tools": [{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}},
                      {"type":"custom","name":"screenshot","input_schema":{"type":"object"}}],
            "tool_choice": {"type":"tool","name":"get_weather","disable_parallel_tool_use":true},
            "metadata": {"user_id":"u-1"}, "stream": true,
            "thinking": {"type":"enabled","budget_tokens":1024}, "service_tier": "auto"
        }"#)
        .unwrap();
        let want = json!({
            "model": "claude-sonnet-4-5",
            "max_tokens": 2048,
            "messages": [
                {"role": "system", "content": "You are a helpful assistant.\n\nBe brief."},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                    {"type": "text", "text": "Compare these and check the weather."}]},
                {"role": "assistant", "content": "Checking.", "tool_calls": [
                    {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                    {"id": "toolu_2", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: Timeout"},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "Screen:"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                    {"type": "text", "text": "Here you go."}]},
                {"role": "assistant", "content": "Done."}
            ],
            "stop": ["\n\nHuman:"],
            "temperature": 0.3,
            "top_p": 0.8,
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object"}}}
            ],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "parallel_tool_calls": false,
            "user": "u-1",
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        assert_eq!(got, want);
    }

    #[test]
    fn ingress_tool_choice_and_tool_only_turns() {
        let with = |choice: &str| {
            ingress(&format!(
                r#"{{"model":"m","max_tokens":5,"messages":[],"tools":[{{"name":"f","input_schema":{{"type":"object"}}}}],"tool_choice":{choice}}}"#
            ))
        };
        assert_eq!(with(r#"{"type":"auto"}"#).unwrap()["tool_choice"], "auto");
        assert_eq!(
            with(r#"{"type":"any"}"#).unwrap()["tool_choice"],
            "required"
        );
        assert_eq!(with(r#"{"type":"none"}"#).unwrap()["tool_choice"], "none");
        assert!(
            with(r#"{"type":"auto"}"#)
                .unwrap()
                .get("parallel_tool_calls")
                .is_none()
        );
        assert_eq!(
            with(r#"{"type":"maybe"}"#).unwrap_err().code,
            "invalid_tool_choice"
        );
        assert_eq!(
            with(r#"{"type":"tool"}"#).unwrap_err().code,
            "invalid_tool_choice"
        );
        // A user turn of only tool results yields only tool messages; an assistant turn of only
        // a tool call has null content; a thinking-only turn disappears.
        let got = ingress(r#"{"model":"m","max_tokens":5,"stream":false,"messages":[
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1]}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]},
            {"role":"assistant","content":[{"type":"redacted_thinking","data":"x"}]}]}"#)
        .unwrap();
        assert_eq!(
            got["messages"],
            json!([
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1]}"}}]},
                {"role": "tool", "tool_call_id": "t", "content": ""}
            ])
        );
        assert_eq!(got["stream"], false);
        assert!(got.get("stream_options").is_none());
    }

    #[test]
    fn ingress_validates() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        assert_eq!(ingress_err(""), "empty_body");
        assert_eq!(ingress_err("{nope"), "invalid_json");
        assert_eq!(ingress_err("[]"), "invalid_body");
        assert_eq!(
            ingress_err(&format!(r#"{{"max_tokens":5,{msgs}}}"#)),
            "missing_model"
        );
        assert_eq!(
            ingress_err(&format!(r#"{{"model":5,"max_tokens":5,{msgs}}}"#)),
            "invalid_model"
        );
        assert_eq!(
            ingress_err(&format!(r#"{{"model":"","max_tokens":5,{msgs}}}"#)),
            "invalid_model"
        );
        assert_eq!(
            ingress_err(r#"{"model":"m","max_tokens":5}"#),
            "missing_messages"
        );
        assert_eq!(
            ingress_err(r#"{"model":"m","max_tokens":5,"messages":"hi"}"#),
            "invalid_messages"
        );
        assert_eq!(
            ingress_err(&format!(r#"{{"model":"m",{msgs}}}"#)),
            "missing_max_tokens"
        );
        for bad_max in ["0", "-1", "1.5", "\"10\""] {
            assert_eq!(
                ingress_err(&format!(r#"{{"model":"m","max_tokens":{bad_max},{msgs}}}"#)),
                "invalid_max_tokens",
                "{bad_max}"
            );
        }
        let one = |m: &str| {
            ingress_err(&format!(
                r#"{{"model":"m","max_tokens":5,"messages":[{m}]}}"#
            ))
        };
        assert_eq!(one(r#"{"role":"system","content":"x"}"#), "invalid_role");
        assert_eq!(one(r#"{"role":"user"}"#), "invalid_content");
        assert_eq!(one(r#"{"role":"user","content":5}"#), "invalid_content");
        assert_eq!(
            one(
                r#"{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"x"}}]}"#
            ),
            "unsupported_content"
        );
        assert_eq!(
            one(
                r#"{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}"#
            ),
            "unsupported_content"
        );
        assert_eq!(
            one(
                r#"{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}"#
            ),
            "invalid_content"
        );
        assert_eq!(
            one(r#"{"role":"user","content":[{"type":"tool_result","content":"x"}]}"#),
            "invalid_content"
        );
        assert_eq!(
            one(r#"{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}"#),
            "invalid_content"
        );
        assert_eq!(
            one(r#"{"role":"user","content":[{"type":"text"}]}"#),
            "invalid_content"
        );
        let top =
            |extra: &str| ingress_err(&format!(r#"{{"model":"m","max_tokens":5,{msgs},{extra}}}"#));
        assert_eq!(top(r#""system":5"#), "invalid_system");
        assert_eq!(top(r#""stop_sequences":"x""#), "invalid_stop_sequences");
        assert_eq!(top(r#""temperature":"hot""#), "invalid_parameter");
        assert_eq!(top(r#""stream":1"#), "invalid_stream");
        assert_eq!(
            top(r#""tools":[{"type":"web_search_20250305","name":"web_search"}]"#),
            "unsupported_tool"
        );
        assert_eq!(
            top(r#""tools":[{"description":"no name"}]"#),
            "invalid_tools"
        );
    }

    // ---- egress_response ----

    fn egress(body: &str) -> Result<(OwnedValue, Usage), String> {
        let mut out = Vec::new();
        let u = egress_response(body.as_bytes(), &mut out)?;
        Ok((val_bytes(&out), u))
    }

    #[test]
    fn egress_text_response() {
        let (got, usage) = egress(r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,
            "model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},
            "logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
            "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#)
        .unwrap();
        let want = json!({
            "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
            "type": "message",
            "role": "assistant",
            "model": "gpt-4.1-2025-04-14",
            "content": [{"type": "text", "text": "Hello! How can I assist you today?"}],
            "stop_reason": "end_turn",
            "stop_sequence": null,
            "usage": {"input_tokens": 19, "output_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
        });
        assert_eq!(got, want);
        assert_eq!(
            usage,
            Usage {
                prompt: 19,
                completion: 10,
                cached: 0,
                cache_write: 0
            }
        );
    }

    #[test]
    fn egress_tools_reasoning_and_cache() {
        let (got, usage) = egress(r#"{"id":"chatcmpl-abc","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant",
            "reasoning_content":"Think first.","content":null,"tool_calls":[
            {"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Boston, MA\"}"}},
            {"id":"call_def","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":40,"cache_write_tokens":10}}}"#)
        .unwrap();
        let want = json!({
            "id": "msg_abc",
            "type": "message",
            "role": "assistant",
            "model": "deepseek-reasoner",
            "content": [
                {"type": "thinking", "thinking": "Think first.", "signature": ""},
                {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Boston, MA"}},
                {"type": "tool_use", "id": "call_def", "name": "now", "input": {}}
            ],
            "stop_reason": "tool_use",
            "stop_sequence": null,
            "usage": {"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 10},
        });
        assert_eq!(got, want);
        assert_eq!(
            usage,
            Usage {
                prompt: 100,
                completion: 20,
                cached: 40,
                cache_write: 10
            }
        );
    }

    #[test]
    fn egress_stop_reasons_and_failures() {
        let with = |finish: &str, tools: &str| {
            egress(&format!(
                r#"{{"id":"x","model":"m","choices":[{{"message":{{"content":"t"{tools}}},"finish_reason":{finish}}}]}}"#
            ))
            .unwrap()
            .0["stop_reason"]
                .as_str()
                .unwrap()
                .to_string()
        };
        let call = r#","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]"#;
        assert_eq!(with(r#""stop""#, ""), "end_turn");
        assert_eq!(with("null", ""), "end_turn");
        assert_eq!(with(r#""length""#, ""), "max_tokens");
        assert_eq!(with(r#""tool_calls""#, call), "tool_use");
        assert_eq!(with(r#""stop""#, call), "tool_use");
        assert_eq!(with(r#""content_filter""#, ""), "refusal");
        assert!(egress("nope").is_err());
        assert!(egress(r#"{"choices":[]}"#).is_err());
        assert!(
            egress(r#"{"error":{"message":"bad"}}"#)
                .unwrap_err()
                .contains("bad")
        );
        assert!(egress(r#"{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}}]}"#).is_err());
        // Missing usage and id still give a valid message.
        let (got, usage) = egress(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#).unwrap();
        assert_eq!(got["id"], "msg_gateway");
        assert_eq!(got["content"], json!([{"type": "text", "text": "ab"}]));
        assert_eq!(usage, Usage::default());
    }

    // ---- StreamEncoder ----

    fn encode_stream(chunks: &[&str]) -> (Vec<(String, OwnedValue)>, StreamEncoder) {
        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        for c in chunks {
            e.chunk(c.as_bytes(), &mut out).unwrap();
        }
        e.finish(&mut out);
        let len = out.len();
        e.finish(&mut out);
        assert_eq!(out.len(), len, "finish is idempotent");
        (anthropic_events(&out), e)
    }

    #[test]
    fn stream_encode_text() {
        let (events, e) = encode_stream(&[
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
            r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":4}}}"#,
        ]);
        let want = vec![
            json!({"type": "message_start", "message": {"id": "msg_123", "type": "message", "role": "assistant",
                "model": "gpt-4o-mini", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 12, "input_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}}),
            json!({"type": "message_stop"}),
        ];
        let got: Vec<OwnedValue> = events.into_iter().map(|(_, v)| v).collect();
        assert_eq!(got, want);
        assert_eq!(
            e.usage(),
            Some(Usage {
                prompt: 9,
                completion: 12,
                cached: 4,
                cache_write: 0
            })
        );
    }

    #[test]
    fn stream_encode_reasoning_text_and_tools() {
        let c = |delta: &str, finish: &str| {
            format!(
                r#"{{"id":"chatcmpl-9","model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
            )
        };
        let chunks = [
            c(
                r#"{"role":"assistant","reasoning_content":"Let me think"}"#,
                "null",
            ),
            c(r#"{"reasoning_content":" more"}"#, "null"),
            c(r#"{"content":"Checking."}"#, "null"),
            c(
                r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
                "null",
            ),
            c(
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]}"#,
                "null",
            ),
            c(
                r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
                "null",
            ),
            c(
                r#"{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}"#,
                "null",
            ),
            c("{}", r#""tool_calls""#),
        ];
        let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let (events, e) = encode_stream(&refs);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let v: Vec<&OwnedValue> = events.iter().map(|(_, v)| v).collect();
        assert_eq!(v[0]["message"]["id"], "msg_9");
        assert_eq!(
            *v[1],
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
        );
        assert_eq!(
            v[2]["delta"],
            json!({"type": "thinking_delta", "thinking": "Let me think"})
        );
        assert_eq!(
            v[3]["delta"],
            json!({"type": "thinking_delta", "thinking": " more"})
        );
        assert_eq!(*v[4], json!({"type": "content_block_stop", "index": 0}));
        assert_eq!(v[5]["index"], 1);
        assert_eq!(
            v[6],
            &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}})
        );
        assert_eq!(
            *v[8],
            json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}})
        );
        assert_eq!(
            *v[9],
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}})
        );
        assert_eq!(v[10]["delta"]["partial_json"], "\"Paris\"}");
        assert_eq!(v[12]["content_block"]["id"], "call_2");
        assert_eq!(v[12]["index"], 3);
        assert_eq!(v[13]["delta"]["partial_json"], "{}");
        assert_eq!(*v[14], json!({"type": "content_block_stop", "index": 3}));
        assert_eq!(
            *v[15],
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 0}})
        );
        assert_eq!(e.usage(), None);
    }

    #[test]
    fn stream_encode_empty_and_errors() {
        let (events, _) = encode_stream(&[]);
        let got: Vec<OwnedValue> = events.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            got,
            vec![
                json!({"type": "message_start", "message": {"id": "msg_gateway", "type": "message", "role": "assistant",
                    "model": "", "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}}),
                json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}}),
                json!({"type": "message_stop"}),
            ]
        );

        let mut e = StreamEncoder::default();
        let mut out = Vec::new();
        e.chunk(
            br#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(e.chunk(b"{oops", &mut out).is_err());
        assert!(
            e.chunk(br#"{"error":{"message":"upstream died"}}"#, &mut out)
                .unwrap_err()
                .contains("upstream died")
        );
        e.error(
            &Error::new(429, Kind::RateLimit, "rate_limited", "slow down"),
            &mut out,
        );
        let len = out.len();
        e.finish(&mut out);
        assert_eq!(out.len(), len, "nothing follows an error event");
        let events = anthropic_events(&out);
        assert_eq!(
            events.last().unwrap().1,
            json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
        );
        assert_eq!(events.len(), 4, "start, block start, delta, error");
    }

    // ---- error_body ----

    #[test]
    fn error_types_by_status() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (405, "invalid_request_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (502, "api_error"),
            (503, "api_error"),
            (529, "overloaded_error"),
        ] {
            assert_eq!(error_type(status), kind, "{status}");
        }
        let body = error_body(&Error::bad_request("invalid_json", "bad \"json\""));
        assert_eq!(
            std::str::from_utf8(&body).unwrap(),
            r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad \"json\""}}"#
        );
        assert_eq!(
            val_bytes(&error_body(&Error::overloaded("busy")))["error"]["type"],
            "api_error"
        );
    }

    // ---- count_tokens ----

    #[test]
    fn count_tokens_estimate() {
        let body = r#"{"model":"claude","system":"You are a scientist","messages":[
            {"role":"user","content":"Hello, Claude"},
            {"role":"assistant","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"calc","input":{"a":1}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"42"},
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
                {"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}],
            "tools":[{"name":"calc","description":"Adds","input_schema":{"type":"object"}}]}"#;
        // Text bytes: 19 system + 13 + 2 + (4 + 7) tool_use + 2 result + (4 + 4 + 17) tool = 72.
        assert_eq!(estimate(72, 3, 2, 1), 1660);
        assert_eq!(
            count_tokens(body.as_bytes()).unwrap(),
            br#"{"input_tokens":1660}"#
        );
        assert_eq!(
            count_tokens(br#"{"model":"m","messages":[]}"#).unwrap(),
            br#"{"input_tokens":0}"#
        );
        assert_eq!(
            count_tokens(br#"{"model":"m"}"#).unwrap_err().code,
            "invalid_messages"
        );
        assert_eq!(count_tokens(b"{").unwrap_err().code, "invalid_json");
        assert_eq!(count_tokens(b" ").unwrap_err().code, "empty_body");
    }

    // ---- Round trip ----

    #[test]
    fn round_trip_openai_to_anthropic_and_back() {
        // Already in the normal form both directions produce, so the trip must be exact.
        let original = r#"{
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "You are a travel agent."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Where were these taken? Also check the weather there."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/eiffel.jpg"}}]},
                {"role": "assistant", "content": "Both are Paris.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
                {"role": "user", "content": "Great, thanks."},
                {"role": "assistant", "content": "You're welcome."}
            ],
            "max_tokens": 512,
            "temperature": 0.5,
            "top_p": 0.95,
            "stop": ["~~~"],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "user-7",
            "stream": true,
            "stream_options": {"include_usage": true}
        }"#;
        let mut anthropic = Vec::new();
        encode_request(&val(original), "claude-sonnet-4-5", &mut anthropic).unwrap();
        let mid = val_bytes(&anthropic);
        assert_eq!(mid["system"], "You are a travel agent.");
        assert_eq!(
            mid["messages"].as_array().unwrap().len(),
            4,
            "tool results merge with the user turn"
        );
        let back = val_bytes(&ingress_request(&anthropic).unwrap());
        assert_eq!(back, val(original));
    }

    // ---- Robustness ----

    #[test]
    fn never_panics_on_garbage_or_truncated_input() {
        let samples = [
            START,
            r#"{"type":"message","content":[{"type":"tool_use"},{"type":"text","text":5}],"usage":{"input_tokens":-1}}"#,
            r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]}"#,
            r#"{"messages":[{"role":"assistant","content":[1,2],"tool_calls":[{"function":null}]}],"tools":[null],"stop":{}}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":"x","function":5},null]},"finish_reason":7}],"usage":{"prompt_tokens":"a"}}"#,
            r#"{"type":"content_block_delta","index":-3,"delta":{"type":"input_json_delta","partial_json":7}}"#,
            "null",
            "[]",
            "\"x\"",
            "1e999",
            "{}",
            "",
            "\u{0}",
        ];
        for s in samples {
            for end in 0..=s.len() {
                let Some(prefix) = s.get(..end) else { continue };
                let b = prefix.as_bytes();
                let mut out = Vec::new();
                if let Ok(v) = simd_json::to_owned_value(&mut b.to_vec()) {
                    let _ = encode_request(&v, "m", &mut out);
                }
                let _ = decode_response(b, 0, &mut out);
                let _ = StreamDecoder::new(0).event(b"", b, &mut out);
                decode_error(500, b, &mut out);
                let _ = ingress_request(b);
                let _ = egress_response(b, &mut out);
                let mut e = StreamEncoder::new();
                let _ = e.chunk(b, &mut out);
                e.finish(&mut out);
                let _ = count_tokens(b);
            }
        }
    }
}
