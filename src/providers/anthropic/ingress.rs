//! An Anthropic-format client speaking to the gateway: [`ingress_request`] turns its Messages
//! request into the canonical (OpenAI chat-completions) form that routing and every upstream
//! family understand; [`egress_response`], [`StreamEncoder`] and [`super::error_body`] turn the
//! gateway's canonical answer into what the client expects; [`count_tokens`] serves
//! `/v1/messages/count_tokens` from the gateway's estimate.
//!
//! Invariants: client mistakes are 400s in Anthropic's words; the event sequence written for a
//! stream is always well formed (`message_start` first, blocks opened before their deltas and
//! closed once, `message_delta` and `message_stop` last, nothing after an `error` event).
//! Not here: HTTP, the SSE framing of the canonical input (the caller hands over `data:`
//! payloads).

use simd_json::OwnedValue;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;
use crate::json as jw;
use crate::providers::TranslateError;
use crate::providers::openai::wire::{Finish, read_usage, tool_call};
use crate::providers::shared::{
    bad, collapse_text, first_choice, message_text, object_of_str, parse, parse_client, present,
    reasoning_of, set, str_field, stream_flag, tool_list, with_cache_control,
};
use crate::tokens::{Usage, estimate};

use super::wire::{
    SYSTEM_JOIN, emit, error_body, input_tokens, message, message_start, stop_reason, usage_object,
};

/// What an Anthropic client is told about an empty body.
const EMPTY_BODY: &str =
    "The request body is empty; send a JSON object with `model`, `max_tokens` and `messages`.";

/// What follows the parser's words about a body that is not JSON.
const NOT_JSON_HINT: &str = "; send a JSON object.";

/// Translates an Anthropic Messages request into an OpenAI chat-completions body (what routing
/// and every adapter understand). Keeps `model` as given. A streaming request also gets
/// `"stream_options":{"include_usage":true}`. Client mistakes -> Err(Error 400).
pub fn ingress_request(body: &[u8]) -> Result<Vec<u8>, Error> {
    let v = parse_client(body, EMPTY_BODY, NOT_JSON_HINT)?;
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
    if let Some(system) = present(req.get("system"))
        && let Some(content) = ingress_system(system)?
    {
        msgs.push(json!({"role": "system", "content": content}));
    }
    for (i, m) in messages.iter().enumerate() {
        let invalid = || {
            bad(
                "invalid_content",
                format!("messages[{i}].content must be a string or an array of content blocks."),
            )
        };
        let content = present(m.get("content")).ok_or_else(invalid)?;
        let role = match m.get("role").and_then(|r| r.as_str()) {
            Some(role @ ("user" | "assistant")) => role,
            _ => {
                return Err(bad(
                    "invalid_role",
                    format!(
                        "messages[{i}].role must be \"user\" or \"assistant\"; put system instructions in the top-level `system`."
                    ),
                ));
            }
        };
        if let Some(s) = content.as_str() {
            msgs.push(json!({"role": role, "content": s}));
            continue;
        }
        let blocks = content.as_array().ok_or_else(invalid)?;
        if role == "user" {
            ingress_user(blocks, i, &mut msgs)?;
        } else {
            ingress_assistant(blocks, i, &mut msgs)?;
        }
    }

    let mut out = json!({"model": model, "messages": msgs, "max_tokens": max_tokens});
    // Router fields mean the same in every ingress body: carried over for routing to read
    // (and remove before any upstream sees them).
    for key in crate::providers::openai::ingress::ROUTER_FIELDS {
        if let Some(v) = req.get(*key) {
            set(&mut out, key, v.clone());
        }
    }
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
    let tools = tool_list(req.get("tools"), ingress_tool)?;
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
        let stream = stream_flag(stream)?;
        set(&mut out, "stream", stream.into());
        if stream {
            // The Anthropic stream ends with usage; OpenAI upstreams only send it when asked.
            set(&mut out, "stream_options", json!({"include_usage": true}));
        }
    }
    Ok(out.encode().into_bytes())
}

/// The top-level `system` as a system message's content: a string or text blocks, joined —
/// or, when a block marks a prompt-cache breakpoint (`cache_control`), text parts that keep
/// it. None when it holds no text.
fn ingress_system(system: &OwnedValue) -> Result<Option<OwnedValue>, Error> {
    if let Some(s) = system.as_str() {
        return Ok((!s.is_empty()).then(|| s.into()));
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
            texts.push((text, b));
        }
    }
    if texts.is_empty() {
        return Ok(None);
    }
    if texts.iter().any(|(_, b)| b.get("cache_control").is_some()) {
        let parts: Vec<OwnedValue> = texts
            .iter()
            .map(|(t, b)| with_cache_control(json!({"type": "text", "text": *t}), b))
            .collect();
        return Ok(Some(parts.into()));
    }
    let joined: Vec<&str> = texts.iter().map(|(t, _)| *t).collect();
    Ok(Some(joined.join(SYSTEM_JOIN).into()))
}

/// The blocks of a user turn: its tool results become `tool` messages first (OpenAI puts them
/// right after the assistant's calls), then a user message with the rest.
fn ingress_user(blocks: &[OwnedValue], i: usize, msgs: &mut Vec<OwnedValue>) -> Result<(), Error> {
    // Images returned by tools: OpenAI tool messages carry text only, so they go first in the
    // user message that follows, next to the results they came with.
    let mut lifted = Vec::new();
    let mut parts = Vec::with_capacity(blocks.len());
    for (j, b) in blocks.iter().enumerate() {
        match b.get("type").and_then(|t| t.as_str()) {
            Some("text") => parts.push(with_cache_control(
                json!({"type": "text", "text": block_text(b, i, j)?}),
                b,
            )),
            Some("image") => parts.push(with_cache_control(image_part(b, i, j)?, b)),
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
        msgs.push(json!({"role": "user", "content": collapse_text(lifted)}));
    }
    Ok(())
}

/// The blocks of an assistant turn: its text and tool calls as one assistant message;
/// thinking is dropped.
fn ingress_assistant(
    blocks: &[OwnedValue],
    i: usize,
    msgs: &mut Vec<OwnedValue>,
) -> Result<(), Error> {
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
                calls.push(tool_call(field("id")?, field("name")?, arguments));
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
pub(crate) fn egress_response(openai: &[u8], out: &mut Vec<u8>) -> Result<Usage, TranslateError> {
    let v = parse(openai)
        .map_err(|e| TranslateError::syntax(format!("chat completion is not valid JSON: {e}")))?;
    if let Some(e) = v.get("error") {
        return Err(TranslateError::reported(format!(
            "chat completion carries an error: {}",
            e.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
        )));
    }
    let choice = v
        .get("choices")
        .and_then(|c| c.as_array())
        .and_then(|c| c.first())
        .ok_or_else(|| TranslateError::shape("chat completion has no choices"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| TranslateError::shape("chat completion choice has no message"))?;
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
            // A call the client would run with made-up input is worse than a failed answer.
            let input = object_of_str(args).ok_or_else(|| {
                TranslateError::shape("tool call arguments are not a JSON object")
            })?;
            blocks.push(json!({
                "type": "tool_use",
                "id": str_field(call, "id"),
                "name": f.map_or("", |f| str_field(f, "name")),
                "input": input,
            }));
            has_tools = true;
        }
    }
    let usage = v
        .get("usage")
        .map(|u| read_usage(u).usage)
        .unwrap_or_default();
    let finish = choice.get("finish_reason").and_then(|f| f.as_str());
    let stop = stop_reason(finish.and_then(Finish::parse), has_tools);
    let body = message(
        &message_id(str_field(&v, "id")),
        str_field(&v, "model"),
        blocks.into(),
        Some(stop),
        usage_object(&usage),
    );
    out.extend_from_slice(body.encode().as_bytes());
    Ok(usage)
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

/// The content block the encoder has open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u64),
    Thinking(u64),
    Tool(u64),
}

/// Turns OpenAI chunk events into a correct Anthropic SSE event sequence.
#[derive(Debug, Default)]
pub(crate) struct StreamEncoder {
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
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// One OpenAI chunk (the JSON after `data: `; never `[DONE]`). Appends Anthropic events
    /// (`event: <type>\ndata: {json}\n\n`) to `out`.
    pub(crate) fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if self.done {
            return Ok(());
        }
        let v = parse(data).map_err(|e| {
            TranslateError::syntax(format!("chat completion chunk is not valid JSON: {e}"))
        })?;
        if let Some(e) = v.get("error") {
            return Err(TranslateError::reported(format!(
                "upstream stream error: {}",
                e.get("message")
                    .and_then(|m| m.as_str())
                    .unwrap_or("no message")
            )));
        }
        if let Some(u) = present(v.get("usage")) {
            self.usage = Some(read_usage(u).usage);
        }
        if !self.started {
            self.start(str_field(&v, "id"), str_field(&v, "model"), out);
        }
        // One choice is asked for; others (n > 1) have no place in an Anthropic message.
        let Some(choice) = first_choice(v.get("choices")) else {
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
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        self.close(out);
        let finish = self.finish.as_deref().and_then(Finish::parse);
        let stop = stop_reason(finish, !self.tools.is_empty());
        let mut usage = json!({"output_tokens": self.usage.map_or(0, |u| u.completion)});
        if let Some(u) = self.usage {
            let full = usage_object(&u);
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
    pub(crate) fn error(&mut self, err: &Error, out: &mut Vec<u8>) {
        out.extend_from_slice(b"event: error\ndata: ");
        out.extend_from_slice(&error_body(err));
        out.extend_from_slice(b"\n\n");
        // An Anthropic stream ends at its error event: nothing may follow it.
        self.done = true;
    }

    /// Usage seen in the chunks.
    ///
    /// Only the tests read it: the proxy takes every answer's usage from the canonical
    /// chunks (`openai::openai_usage`).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.usage
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        let input = self.usage.map_or(0, |u| input_tokens(&u));
        let usage = json!({"input_tokens": input, "output_tokens": 0});
        emit(
            out,
            "message_start",
            &message_start(&message_id(id), model, usage),
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

/// `/v1/messages/count_tokens`: `{"input_tokens":n}` estimated with `crate::tokens::estimate`
/// (text bytes of system + messages + tool definitions, counts of messages, images, tools).
pub fn count_tokens(body: &[u8]) -> Result<Vec<u8>, Error> {
    let v = parse_client(body, EMPTY_BODY, NOT_JSON_HINT)?;
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
