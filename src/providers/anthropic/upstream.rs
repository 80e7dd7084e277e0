//! The gateway speaking to an Anthropic provider: [`encode_request`] turns a canonical
//! (OpenAI chat-completions) request into a Messages request; [`decode_response`],
//! [`StreamDecoder`] and [`decode_error`] turn the answer back into OpenAI bodies, chunks and
//! errors.
//!
//! Invariants: client mistakes are reported as 400s before anything is sent upstream, since
//! Anthropic rejects what it does not know (unknown fields, empty text blocks, bad data URLs);
//! an answer that cannot be translated is an `Err` with a message for the log, never a panic.
//! Not here: HTTP, headers, SSE framing of the input (the caller splits events and hands over
//! `event:` and `data:` fields).

use std::borrow::Cow;

use simd_json::OwnedValue;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;
use crate::providers::TranslateError;
use crate::providers::openai::wire::{
    Finish, chunk, completion, kind_for_status, push_event, tool_call, usage_object, write_error,
};
use crate::providers::shared::{
    Turn, bad, collapse_text, object_of_str, parse, parse_data_url, present, push_turn, set,
    str_field, stream_flag, tool_list,
};
use crate::tokens::Usage;

use super::wire::{DEFAULT_MAX_TOKENS, RawUsage, SYSTEM_JOIN, finish_of};

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

    let mut system: Vec<OwnedValue> = Vec::new();
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
                system.extend(system_blocks(msg.get("content"), i)?);
            }
            "user" => {
                let blocks = content_blocks(msg.get("content"), i)?;
                push_turn(&mut turns, "user", blocks);
            }
            "assistant" => {
                let blocks = assistant_blocks(msg, i)?;
                push_turn(&mut turns, "assistant", blocks);
            }
            "tool" => {
                let block = tool_result_block(msg, i)?;
                // Tool results travel in a user turn; consecutive ones (and the user text that
                // follows them) merge into one, results first, as Anthropic requires.
                push_turn(&mut turns, "user", vec![block]);
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
    // `n` > 1, `logprobs` and the other fields Anthropic lacks never get here unless the
    // provider drops them (`on_unsupported = "drop"`): routing keeps such requests away.
    let json_tool = json_tool(chat)?;
    let effort = present(req.get("reasoning_effort"))
        .map(|e| {
            e.as_str().and_then(thinking_budget).ok_or_else(|| {
                bad(
                    "invalid_reasoning_effort",
                    "`reasoning_effort` must be none, minimal, low, medium or high.",
                )
            })
        })
        .transpose()?;
    let in_tool_loop = messages
        .last()
        .and_then(|m| m.get("role"))
        .and_then(|r| r.as_str())
        == Some("tool");

    let messages: Vec<OwnedValue> = turns.into_iter().map(message_of).collect();
    let mut body = json!({
        "model": model,
        "messages": messages,
        "max_tokens": max_tokens,
    });
    if system.iter().any(|b| b.get("cache_control").is_some()) {
        // A cache breakpoint needs the block form: one text block per system text.
        set(&mut body, "system", system.into());
    } else if !system.is_empty() {
        let texts: Vec<&str> = system
            .iter()
            .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
            .collect();
        set(&mut body, "system", texts.join(SYSTEM_JOIN).into());
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
        let s = stream_flag(s)?;
        set(&mut body, "stream", s.into());
    }
    let mut tools = tool_list(req.get("tools"), encode_tool)?;
    let client_tools = !tools.is_empty();
    if let Some(t) = &json_tool {
        tools.push(json!({
            "name": t.name.as_str(),
            "description": t.description.as_str(),
            "input_schema": t.schema.clone(),
        }));
    }
    let mut forced = false;
    // Anthropic rejects `tool_choice` without tools, so it only goes along with them.
    if !tools.is_empty() {
        let mut choice = match present(req.get("tool_choice")) {
            None => None,
            Some(c) => Some(encode_tool_choice(c)?),
        };
        if let Some(t) = &json_tool {
            // The answer comes as the JSON tool's input: forced when it is the only tool;
            // beside the client's own, some tool must be called (theirs, or the answer).
            let kind = choice
                .as_ref()
                .and_then(|c| c.get("type"))
                .and_then(|k| k.as_str());
            if !client_tools || kind == Some("none") {
                choice = Some(json!({"type": "tool", "name": t.name.as_str()}));
            } else if matches!(kind, None | Some("auto")) {
                choice = Some(json!({"type": "any"}));
            }
        }
        forced = choice
            .as_ref()
            .and_then(|c| c.get("type"))
            .and_then(|k| k.as_str())
            .is_some_and(|k| matches!(k, "any" | "tool"));
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
    // Extended thinking: Anthropic refuses it with a forced tool, and in a tool loop wants the
    // earlier turn's thinking blocks back (the canonical form has none), so it is left out then.
    if let Some(Some(budget)) = effort
        && !forced
        && !in_tool_loop
    {
        set(
            &mut body,
            "thinking",
            json!({"type": "enabled", "budget_tokens": budget}),
        );
        // `max_tokens` counts the thinking too and must exceed the budget: the answer keeps
        // the room the client asked for on top of it.
        if max_tokens <= budget {
            set(&mut body, "max_tokens", (max_tokens + budget).into());
        }
        // Thinking requires the default temperature and a top_p of at least 0.95.
        if let Some(o) = body.as_object_mut() {
            o.remove("temperature");
            o.remove("top_p");
        }
    }
    out.extend_from_slice(body.encode().as_bytes());
    Ok(())
}

/// Extended-thinking budget for an OpenAI `reasoning_effort` (README "Field fidelity"):
/// `Some(None)` for efforts that mean no thinking, `None` for a value that is not one.
fn thinking_budget(effort: &str) -> Option<Option<u64>> {
    match effort {
        "none" | "minimal" => Some(None),
        "low" => Some(Some(1024)),
        "medium" => Some(Some(4096)),
        "high" => Some(Some(16384)),
        _ => None,
    }
}

/// Name of the tool that carries a structured answer when the request asks for none.
const JSON_TOOL: &str = "json_response";

/// The tool that carries a `response_format` answer on Anthropic (which has no JSON mode):
/// forced, its `input_schema` the schema, its input returned as the message's text.
#[derive(Debug)]
pub(crate) struct JsonTool {
    /// The schema's name when it is a valid tool name, else `json_response`.
    pub(crate) name: String,
    description: String,
    schema: OwnedValue,
}

/// The JSON tool a request's `response_format` asks for: `json_schema` → its schema,
/// `json_object` → any object; `text` or none → `None`.
pub(crate) fn json_tool(chat: &OwnedValue) -> Result<Option<JsonTool>, Error> {
    let Some(rf) = present(chat.get("response_format")) else {
        return Ok(None);
    };
    let invalid = || {
        bad(
            "invalid_response_format",
            "`response_format.type` must be text, json_object or json_schema.",
        )
    };
    match rf.get("type").and_then(|t| t.as_str()) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonTool {
            name: JSON_TOOL.into(),
            description: "Answer with a JSON object.".into(),
            schema: json!({"type": "object"}),
        })),
        Some("json_schema") => {
            let spec = rf.get("json_schema");
            let name = spec
                .and_then(|s| s.get("name"))
                .and_then(|n| n.as_str())
                .filter(|n| {
                    (1..=64).contains(&n.len())
                        && n.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
                })
                .unwrap_or(JSON_TOOL);
            let description = spec
                .and_then(|s| s.get("description"))
                .and_then(|d| d.as_str())
                .unwrap_or("Answer with JSON that matches this schema.");
            let schema = present(spec.and_then(|s| s.get("schema")))
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"}));
            Ok(Some(JsonTool {
                name: name.into(),
                description: description.into(),
                schema,
            }))
        }
        _ => Err(invalid()),
    }
}

/// A system/developer message as Anthropic text blocks (a string or text parts; empty texts
/// left out), each part's `cache_control` kept.
fn system_blocks(content: Option<&OwnedValue>, i: usize) -> Result<Vec<OwnedValue>, Error> {
    let Some(content) = present(content) else {
        return Ok(Vec::new());
    };
    if let Some(s) = content.as_str() {
        return Ok(text_block(s).into_iter().collect());
    }
    let parts = content.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{i}].content must be a string or an array of text parts."),
        )
    })?;
    let mut blocks = Vec::with_capacity(parts.len());
    for (j, part) in parts.iter().enumerate() {
        match part.get("text").and_then(|t| t.as_str()) {
            Some(t) if !t.is_empty() => blocks.extend(
                text_block(t).map(|b| crate::providers::shared::with_cache_control(b, part)),
            ),
            Some(_) => {}
            None => {
                return Err(bad(
                    "invalid_content",
                    format!("messages[{i}].content[{j}]: system messages take only text parts."),
                ));
            }
        }
    }
    Ok(blocks)
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
                blocks.extend(
                    text_block(text).map(|b| crate::providers::shared::with_cache_control(b, part)),
                );
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
                blocks.push(crate::providers::shared::with_cache_control(
                    image_block(url, i, j)?,
                    part,
                ));
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
    if url.starts_with("data:") {
        // Anthropic rejects an image without data.
        let parsed = parse_data_url(url).filter(|(_, data)| !data.is_empty());
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
            object_of_str(s).ok_or_else(|| {
                bad(
                    "invalid_tool_arguments",
                    format!(
                        "{}.function.arguments must be a JSON object encoded as a string, e.g. \"{{\\\"city\\\":\\\"Paris\\\"}}\".",
                        where_()
                    ),
                )
            })?
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
/// `created` is the unix time to stamp; `json_tool` names the tool that carries a
/// `response_format` answer (see [`json_tool`]): its input becomes the message's text, finished
/// by `stop`. Err(message) when the body is not a valid message.
pub(crate) fn decode_response(
    body: &[u8],
    created: u64,
    json_tool: Option<&str>,
    out: &mut Vec<u8>,
) -> Result<Usage, TranslateError> {
    let v = parse(body).map_err(|e| {
        TranslateError::syntax(format!("Anthropic response is not valid JSON: {e}"))
    })?;
    match v.get("type").and_then(|t| t.as_str()) {
        None | Some("message") => {}
        Some("error") => return Err(TranslateError::reported(upstream_error_message(&v))),
        Some(other) => {
            return Err(TranslateError::shape(format!(
                "Anthropic response has type `{}`, expected `message`",
                crate::error::truncate(other, 40)
            )));
        }
    }
    let content = v
        .get("content")
        .and_then(|c| c.as_array())
        .ok_or_else(|| TranslateError::shape("Anthropic response has no `content` array"))?;
    let mut text = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut answer: Option<String> = None;
    for block in content {
        match block.get("type").and_then(|t| t.as_str()) {
            // Blocks concatenate with no separator, exactly as their streamed deltas would.
            Some("text") => text.push_str(str_field(block, "text")),
            Some("thinking") => reasoning.push_str(str_field(block, "thinking")),
            Some("tool_use")
                if json_tool.is_some_and(|n| n == str_field(block, "name")) && answer.is_none() =>
            {
                answer = Some(
                    block
                        .get("input")
                        .map_or_else(|| "{}".to_string(), |i| i.encode()),
                );
            }
            Some("tool_use") => {
                let arguments = block
                    .get("input")
                    .map_or_else(|| "{}".to_string(), |i| i.encode());
                calls.push(tool_call(
                    str_field(block, "id"),
                    str_field(block, "name"),
                    arguments,
                ));
            }
            // redacted_thinking, server tool blocks and future types have no OpenAI form.
            _ => {}
        }
    }
    let mut raw = RawUsage::default();
    raw.read(v.get("usage"));
    let usage = raw.usage();
    // A structured answer is the whole content: text around it would make it invalid JSON.
    let answered = answer.is_some() && calls.is_empty();
    if let Some(a) = answer {
        text = a;
    }
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
    let mut finish = finish_of(v.get("stop_reason").and_then(|s| s.as_str()));
    if answered && finish == Finish::ToolCalls {
        finish = Finish::Stop;
    }
    let finish = finish.as_str();
    let body = completion(
        str_field(&v, "id"),
        created,
        str_field(&v, "model"),
        json!([{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}]),
        usage_object(&usage, None),
    );
    out.extend_from_slice(body.encode().as_bytes());
    Ok(usage)
}

/// Translates an Anthropic SSE event stream into OpenAI `chat.completion.chunk` SSE events.
#[derive(Debug)]
pub(crate) struct StreamDecoder {
    created: u64,
    id: String,
    model: String,
    usage: RawUsage,
    usage_seen: bool,
    /// (content block index, tool call index) for every `tool_use` block so far: OpenAI numbers
    /// tool calls 0, 1, … whatever text or thinking blocks sit between them.
    tool_blocks: Vec<(u64, u64)>,
    /// The tool that carries a `response_format` answer, and the content block that calls it:
    /// its input arrives as content deltas.
    json_tool: Option<String>,
    json_block: Option<u64>,
    finish_sent: bool,
    done: bool,
}

impl StreamDecoder {
    /// A decoder for one response; `created` is the unix time stamped on every chunk.
    pub(crate) fn new(created: u64) -> Self {
        StreamDecoder {
            created,
            id: String::new(),
            model: String::new(),
            usage: RawUsage::default(),
            usage_seen: false,
            tool_blocks: Vec::new(),
            json_tool: None,
            json_block: None,
            finish_sent: false,
            done: false,
        }
    }

    /// The request asked for a structured answer through the tool `name` ([`json_tool`]): its
    /// input is streamed as the message's content, finished by `stop`.
    pub(crate) fn answering_json(mut self, name: Option<String>) -> Self {
        self.json_tool = name;
        self
    }

    /// Feeds one SSE event: `name` is its `event:` field (may be empty), `data` its `data:`
    /// payload. Appends zero or more complete OpenAI events (`data: {json}\n\n`) to `out`.
    /// Returns Ok(true) once the message is finished (`message_stop`); by then the final usage
    /// chunk (`"choices":[]` plus `usage`) has been appended. The caller appends `data: [DONE]`.
    /// An `error` event or malformed JSON -> Err(message).
    pub(crate) fn event(
        &mut self,
        name: &[u8],
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TranslateError> {
        if self.done {
            return Ok(true);
        }
        if data.iter().all(u8::is_ascii_whitespace) {
            if name == b"error" {
                return Err(TranslateError::reported(
                    "Anthropic stream sent an error event without details",
                ));
            }
            return Ok(false);
        }
        let v = parse(data).map_err(|e| {
            TranslateError::syntax(format!("Anthropic stream event is not valid JSON: {e}"))
        })?;
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
                let name = block.map_or("", |b| str_field(b, "name"));
                match block.and_then(|b| b.get("type")).and_then(|t| t.as_str()) {
                    Some("tool_use")
                        if self.json_block.is_none() && self.json_tool.as_deref() == Some(name) =>
                    {
                        self.json_block = Some(index);
                    }
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
                    Some("input_json_delta")
                        if !field("partial_json").is_empty() && self.json_block == Some(index) =>
                    {
                        self.push(out, json!({"content": field("partial_json")}), None);
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
                let mut finish = finish_of(stop);
                if self.json_block.is_some()
                    && self.tool_blocks.is_empty()
                    && finish == Finish::ToolCalls
                {
                    finish = Finish::Stop;
                }
                self.push(out, json!({}), Some(finish));
                self.finish_sent = true;
            }
            "message_stop" => {
                if !self.finish_sent {
                    self.push(out, json!({}), Some(Finish::Stop));
                    self.finish_sent = true;
                }
                let usage = usage_object(&self.usage.usage(), None);
                let chunk = chunk(&self.id, self.created, &self.model, json!([]), Some(usage));
                push_event(out, &chunk);
                self.done = true;
                return Ok(true);
            }
            "error" => return Err(TranslateError::reported(upstream_error_message(&v))),
            // ping, content_block_stop, and event types added after this was written.
            _ => {}
        }
        Ok(false)
    }

    /// Usage seen so far (input from message_start, output from message_delta).
    ///
    /// The proxy takes a stream's usage from here, the native counts (cache reads and writes
    /// included), rather than from the canonical chunks, which have no cache-write field.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage_seen.then(|| self.usage.usage())
    }

    fn push(&self, out: &mut Vec<u8>, delta: OwnedValue, finish: Option<Finish>) {
        let finish = finish.map(Finish::as_str);
        let choices =
            json!([{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]);
        push_event(
            out,
            &chunk(&self.id, self.created, &self.model, choices, None),
        );
    }
}

/// Rewrites an Anthropic error body (`{"type":"error","error":{"type","message"}}`) as an
/// OpenAI-shaped error body `{"error":{"message","type","param":null,"code"}}`. Unparseable
/// input still yields a valid OpenAI error naming the status.
pub(crate) fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {
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
    write_error(
        out,
        &message,
        kind_for_status(status),
        kind.unwrap_or("upstream_error"),
    );
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

fn number(v: &OwnedValue, key: &str) -> Result<f64, Error> {
    v.cast_f64()
        .filter(|x| x.is_finite())
        .ok_or_else(|| bad("invalid_parameter", format!("`{key}` must be a number.")))
}

/// One Anthropic message of the merged turns; a lone text block is written as a plain string
/// (the common, most compatible form).
fn message_of(turn: Turn) -> OwnedValue {
    json!({"role": turn.role, "content": collapse_text(turn.parts)})
}
