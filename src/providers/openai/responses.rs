//! An OpenAI Responses API client (`POST /v1/responses`) on a channel that does not serve the
//! Responses API itself: [`ingress_request`] turns its request into the canonical chat form
//! every family understands (plus the [`Echo`] of what the answer repeats back);
//! [`egress_response`] and [`StreamEncoder`] turn the canonical answer into a `response`
//! object or the event sequence the official SDKs parse.
//!
//! Invariants: stateless — nothing is stored, so what needs server-side state
//! (`previous_response_id`, `background`) is reported by [`Ingress::needs_native`] for the
//! caller to route to a native channel or refuse; the event sequence is always well formed
//! (`response.created` and `response.in_progress` first, every item added before its deltas and
//! done once, `sequence_number`s increasing by one, exactly one terminal event:
//! `response.completed`, `response.incomplete` or `response.failed`).
//! Not here: HTTP, the SSE framing of the canonical input, native passthrough (`proxy`).

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;
use crate::providers::TranslateError;
use crate::providers::openai::wire::{Finish, read_usage};
use crate::providers::shared::{
    bad, first_choice, message_text, parse, parse_client, present, reasoning_of, set, str_field,
};
use crate::tokens::Usage;

/// What an empty body is told.
const EMPTY_BODY: &str = "The request body is empty; send a JSON object with `model` and `input`.";

/// What the answer repeats from the request (the Responses API echoes its parameters).
#[derive(Debug, Clone)]
pub struct Echo {
    fields: Json,
}

impl Echo {
    fn get(&self, key: &str) -> Option<&Json> {
        self.fields.get(key)
    }
}

/// A translated Responses request.
#[derive(Debug)]
pub struct Ingress {
    /// The canonical chat-completions body.
    pub chat: Vec<u8>,
    /// What the answer echoes.
    pub echo: Echo,
    /// The request needs server-side state (`previous_response_id`, `background`): only a
    /// channel serving the Responses API natively can take it.
    pub needs_native: Option<&'static str>,
}

/// Translates a Responses request into a chat-completions body. Client mistakes and what a
/// translation cannot express are 400s naming the field.
pub fn ingress_request(body: &[u8]) -> Result<Ingress, Error> {
    let v = parse_client(body, EMPTY_BODY, "; send a JSON object.")?;
    let Some(req) = v.as_object() else {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object with `model` and `input`.",
        ));
    };
    let model = req
        .get("model")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty())
        .ok_or_else(|| bad("missing_model", "You must provide a `model` parameter."))?;
    let mut messages: Vec<Json> = Vec::new();
    if let Some(i) = present(req.get("instructions")) {
        let text = i
            .as_str()
            .ok_or_else(|| bad("invalid_instructions", "`instructions` must be a string."))?;
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    match present(req.get("input")) {
        None => {
            return Err(bad(
                "missing_input",
                "You must provide `input`: a string or an array of input items.",
            ));
        }
        Some(i) if i.as_str().is_some() => {
            messages.push(json!({"role": "user", "content": i.as_str().unwrap_or("")}));
        }
        Some(i) => {
            let items = i.as_array().ok_or_else(|| {
                bad(
                    "invalid_input",
                    "`input` must be a string or an array of input items.",
                )
            })?;
            for (k, item) in items.iter().enumerate() {
                input_item(item, k, &mut messages)?;
            }
        }
    }
    let mut chat = json!({"model": model, "messages": messages});
    if let Some(tools) = present(req.get("tools")) {
        let list = tools
            .as_array()
            .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
        let mut out = Vec::with_capacity(list.len());
        for (k, t) in list.iter().enumerate() {
            out.push(tool(t, k)?);
        }
        if !out.is_empty() {
            set(&mut chat, "tools", out.into());
        }
    }
    if let Some(choice) = present(req.get("tool_choice")) {
        set(&mut chat, "tool_choice", tool_choice(choice)?);
    }
    if let Some(format) = present(req.get("text").and_then(|t| t.get("format")))
        && let Some(rf) = response_format(format)?
    {
        set(&mut chat, "response_format", rf);
    }
    if let Some(effort) = req
        .get("reasoning")
        .and_then(|r| r.get("effort"))
        .and_then(|e| e.as_str())
    {
        set(&mut chat, "reasoning_effort", effort.into());
    }
    if let Some(n) = present(req.get("max_output_tokens")) {
        let n = n.as_u64().filter(|n| *n > 0).ok_or_else(|| {
            bad(
                "invalid_max_output_tokens",
                "`max_output_tokens` must be a positive integer.",
            )
        })?;
        set(&mut chat, "max_tokens", n.into());
    }
    for key in ["temperature", "top_p", "parallel_tool_calls", "user"] {
        if let Some(x) = present(req.get(key)) {
            set(&mut chat, key, x.clone());
        }
    }
    let stream = match present(req.get("stream")) {
        None => false,
        Some(s) => crate::providers::shared::stream_flag(s)?,
    };
    if stream {
        set(&mut chat, "stream", true.into());
        set(&mut chat, "stream_options", json!({"include_usage": true}));
    }
    // Router fields mean the same in every ingress body.
    for key in super::ingress::ROUTER_FIELDS {
        if let Some(x) = req.get(*key) {
            set(&mut chat, key, x.clone());
        }
    }
    let needs_native = if present(req.get("previous_response_id")).is_some() {
        Some("previous_response_id")
    } else if req.get("background").and_then(|b| b.as_bool()) == Some(true) {
        Some("background")
    } else {
        None
    };
    let mut echo = json!({});
    for key in [
        "instructions",
        "max_output_tokens",
        "metadata",
        "parallel_tool_calls",
        "reasoning",
        "temperature",
        "text",
        "tool_choice",
        "tools",
        "top_p",
        "user",
    ] {
        if let Some(x) = present(req.get(key)) {
            set(&mut echo, key, x.clone());
        }
    }
    Ok(Ingress {
        chat: chat.encode().into_bytes(),
        echo: Echo { fields: echo },
        needs_native,
    })
}

/// One input item: a message, a function call the model made, or its output.
fn input_item(item: &Json, k: usize, messages: &mut Vec<Json>) -> Result<(), Error> {
    let kind = item.get("type").and_then(|t| t.as_str());
    match kind {
        None | Some("message") => {
            let role = match item.get("role").and_then(|r| r.as_str()) {
                Some("developer" | "system") => "system",
                Some(r @ ("user" | "assistant")) => r,
                _ => {
                    return Err(bad(
                        "invalid_role",
                        format!("input[{k}].role must be user, assistant, system or developer."),
                    ));
                }
            };
            let content = message_content(item.get("content"), k)?;
            messages.push(json!({"role": role, "content": content}));
        }
        Some("function_call") => {
            let call = json!({
                "id": str_field(item, "call_id"),
                "type": "function",
                "function": {
                    "name": str_field(item, "name"),
                    "arguments": str_field(item, "arguments"),
                },
            });
            // Consecutive calls belong to one assistant turn.
            match messages.last_mut() {
                Some(m)
                    if m.get("role").and_then(|r| r.as_str()) == Some("assistant")
                        && m.get("tool_calls").is_some() =>
                {
                    if let Some(list) = m.get_mut("tool_calls").and_then(|l| l.as_array_mut()) {
                        list.push(call);
                    }
                }
                _ => messages.push(json!({
                    "role": "assistant",
                    "content": null,
                    "tool_calls": [call],
                })),
            }
        }
        Some("function_call_output") => {
            let output = match item.get("output") {
                Some(o) if o.as_str().is_some() => o.as_str().unwrap_or("").to_string(),
                Some(o) => o.as_array().map_or_else(
                    || o.encode(),
                    |parts| {
                        parts
                            .iter()
                            .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                            .collect()
                    },
                ),
                None => String::new(),
            };
            messages.push(json!({
                "role": "tool",
                "tool_call_id": str_field(item, "call_id"),
                "content": output,
            }));
        }
        // Reasoning a native model produced cannot be replayed to another one.
        Some("reasoning") => {}
        Some(other) => {
            return Err(bad(
                "unsupported_input_item",
                format!(
                    "input[{k}] is a `{}` item, which needs a provider serving the Responses API natively; this gateway translates messages, function_call and function_call_output items.",
                    crate::error::truncate(other, 40)
                ),
            ));
        }
    }
    Ok(())
}

/// A message's content as chat content: a string, or text and image parts.
fn message_content(content: Option<&Json>, k: usize) -> Result<Json, Error> {
    let Some(c) = content else {
        return Ok("".into());
    };
    if let Some(s) = c.as_str() {
        return Ok(s.into());
    }
    let parts = c.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("input[{k}].content must be a string or an array of content parts."),
        )
    })?;
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(|t| t.as_str()) {
            Some("input_text" | "output_text" | "text") => {
                out.push(json!({"type": "text", "text": str_field(p, "text")}));
            }
            Some("input_image") => {
                let url = p.get("image_url").and_then(|u| u.as_str()).ok_or_else(|| {
                    bad(
                        "unsupported_content",
                        format!(
                            "input[{k}].content[{j}]: only images given by `image_url` (a URL or a data URL) are translated; file ids need a native provider."
                        ),
                    )
                })?;
                let mut image = json!({"url": url});
                if let Some(d) = p.get("detail").and_then(|d| d.as_str()) {
                    set(&mut image, "detail", d.into());
                }
                out.push(json!({"type": "image_url", "image_url": image}));
            }
            Some("refusal") => {
                out.push(json!({"type": "text", "text": str_field(p, "refusal")}));
            }
            other => {
                return Err(bad(
                    "unsupported_content",
                    format!(
                        "input[{k}].content[{j}] is of type `{}`, which is not translated; use input_text or input_image.",
                        crate::error::truncate(other.unwrap_or("(none)"), 40)
                    ),
                ));
            }
        }
    }
    Ok(out.into())
}

/// A Responses function tool as a chat tool; other tool types need a native provider.
fn tool(t: &Json, k: usize) -> Result<Json, Error> {
    match t.get("type").and_then(|t| t.as_str()) {
        Some("function") => {
            let mut function = json!({"name": str_field(t, "name")});
            for key in ["description", "parameters", "strict"] {
                if let Some(x) = present(t.get(key)) {
                    set(&mut function, key, x.clone());
                }
            }
            Ok(json!({"type": "function", "function": function}))
        }
        other => Err(bad(
            "unsupported_tool",
            format!(
                "tools[{k}] is a `{}` tool, which needs a provider serving the Responses API natively; function tools are translated.",
                crate::error::truncate(other.unwrap_or("(none)"), 40)
            ),
        )
        .with_param("tools")),
    }
}

fn tool_choice(choice: &Json) -> Result<Json, Error> {
    if let Some(s) = choice.as_str() {
        return match s {
            "auto" | "none" | "required" => Ok(s.into()),
            _ => Err(bad(
                "invalid_tool_choice",
                "`tool_choice` must be auto, none, required or a function.",
            )),
        };
    }
    match choice.get("type").and_then(|t| t.as_str()) {
        Some("function") => Ok(json!({
            "type": "function",
            "function": {"name": str_field(choice, "name")},
        })),
        _ => Err(bad(
            "invalid_tool_choice",
            "`tool_choice` must be auto, none, required or {\"type\":\"function\",\"name\":…}.",
        )),
    }
}

/// `text.format` as chat's `response_format` (`None` for plain text).
fn response_format(format: &Json) -> Result<Option<Json>, Error> {
    match format.get("type").and_then(|t| t.as_str()) {
        Some("text") | None => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = json!({"name": str_field(format, "name")});
            for key in ["schema", "strict", "description"] {
                if let Some(x) = present(format.get(key)) {
                    set(&mut schema, key, x.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        Some(_) => Err(bad(
            "invalid_text_format",
            "`text.format.type` must be text, json_object or json_schema.",
        )),
    }
}

/// A `resp_…` id from a canonical completion id.
fn response_id(chat_id: &str) -> String {
    let rest = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    if rest.is_empty() {
        "resp_gateway".into()
    } else {
        format!("resp_{rest}")
    }
}

/// The Responses usage object.
fn usage_object(u: &Usage, reasoning: u64) -> Json {
    json!({
        "input_tokens": u.prompt,
        "input_tokens_details": {"cached_tokens": u.cached},
        "output_tokens": u.completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": u.prompt.saturating_add(u.completion),
    })
}

/// Why an answer is incomplete, from its finish reason.
fn incomplete(finish: Option<Finish>) -> Option<&'static str> {
    match finish {
        Some(Finish::Length) => Some("max_output_tokens"),
        Some(Finish::ContentFilter) => Some("content_filter"),
        _ => None,
    }
}

/// A `response` object.
#[allow(clippy::too_many_arguments)]
fn response(
    id: &str,
    created: u64,
    model: &str,
    status: &str,
    output: Json,
    usage: Option<Json>,
    reason: Option<&str>,
    echo: &Echo,
) -> Json {
    let text: String = output
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|i| i.get("type").and_then(|t| t.as_str()) == Some("message"))
                .flat_map(|i| {
                    i.get("content")
                        .and_then(|c| c.as_array())
                        .into_iter()
                        .flatten()
                })
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect()
        })
        .unwrap_or_default();
    let or = |key: &str, default: Json| echo.get(key).cloned().unwrap_or(default);
    json!({
        "id": id,
        "object": "response",
        "created_at": created,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": reason.map_or(Json::null(), |r| json!({"reason": r})),
        "instructions": or("instructions", Json::null()),
        "max_output_tokens": or("max_output_tokens", Json::null()),
        "metadata": or("metadata", json!({})),
        "model": model,
        "output": output,
        "output_text": text,
        "parallel_tool_calls": or("parallel_tool_calls", true.into()),
        "previous_response_id": null,
        "reasoning": or("reasoning", json!({"effort": null, "summary": null})),
        "store": false,
        "temperature": or("temperature", 1.0.into()),
        "text": or("text", json!({"format": {"type": "text"}})),
        "tool_choice": or("tool_choice", "auto".into()),
        "tools": or("tools", json!([])),
        "top_p": or("top_p", 1.0.into()),
        "truncation": "disabled",
        "usage": usage.unwrap_or_else(Json::null),
        "user": or("user", Json::null()),
    })
}

/// Rewrites a canonical `chat.completion` body as a Responses `response` object.
pub fn egress_response(
    chat: &[u8],
    echo: &Echo,
    created: u64,
    out: &mut Vec<u8>,
) -> Result<Usage, TranslateError> {
    let v = parse(chat)
        .map_err(|e| TranslateError::syntax(format!("chat completion is not valid JSON: {e}")))?;
    if let Some(e) = v.get("error") {
        return Err(TranslateError::reported(format!(
            "chat completion carries an error: {}",
            e.get("message")
                .and_then(|m| m.as_str())
                .unwrap_or("no message")
        )));
    }
    let choice = first_choice(v.get("choices"))
        .ok_or_else(|| TranslateError::shape("chat completion has no choices"))?;
    let msg = choice
        .get("message")
        .ok_or_else(|| TranslateError::shape("chat completion choice has no message"))?;
    let rid = response_id(str_field(&v, "id"));
    let mut output = Vec::new();
    if let Some(r) = reasoning_of(msg) {
        output.push(reasoning_item(&format!("rs_{rid}"), r));
    }
    let text = message_text(msg.get("content"));
    if !text.is_empty() {
        output.push(message_item(&format!("msg_{rid}"), &text, "completed"));
    }
    if let Some(calls) = msg.get("tool_calls").and_then(|c| c.as_array()) {
        for (k, call) in calls.iter().enumerate() {
            let f = call.get("function");
            output.push(function_item(
                &format!("fc_{rid}_{k}"),
                str_field(call, "id"),
                f.map_or("", |f| str_field(f, "name")),
                f.map_or("", |f| str_field(f, "arguments")),
                "completed",
            ));
        }
    }
    let counts = v.get("usage").map(read_usage).unwrap_or_default();
    let finish = choice
        .get("finish_reason")
        .and_then(|f| f.as_str())
        .and_then(Finish::parse);
    let reason = incomplete(finish);
    let doc = response(
        &rid,
        created,
        str_field(&v, "model"),
        if reason.is_some() {
            "incomplete"
        } else {
            "completed"
        },
        output.into(),
        Some(usage_object(&counts.usage, counts.reasoning)),
        reason,
        echo,
    );
    out.extend_from_slice(doc.encode().as_bytes());
    Ok(counts.usage)
}

fn message_item(id: &str, text: &str, status: &str) -> Json {
    json!({
        "type": "message",
        "id": id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    })
}

fn function_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Json {
    json!({
        "type": "function_call",
        "id": id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    })
}

fn reasoning_item(id: &str, summary: &str) -> Json {
    json!({
        "type": "reasoning",
        "id": id,
        "summary": [{"type": "summary_text", "text": summary}],
    })
}

/// An output item being streamed.
#[derive(Debug)]
enum Item {
    Reasoning {
        id: String,
        text: String,
    },
    Message {
        id: String,
        text: String,
    },
    Function {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
        /// The canonical tool-call index.
        index: u64,
    },
}

/// Turns canonical chunk events into the Responses event sequence.
#[derive(Debug)]
pub struct StreamEncoder {
    echo: Echo,
    created: u64,
    seq: u64,
    id: String,
    model: String,
    started: bool,
    done: bool,
    /// Finished items, in output order.
    finished: Vec<Json>,
    /// The item being streamed (its output index is `finished.len()`).
    open: Option<Item>,
    /// Function calls already closed, by canonical index (late deltas for them are dropped).
    closed_calls: Vec<u64>,
    finish: Option<Finish>,
    usage: Option<Usage>,
    reasoning_tokens: u64,
}

impl StreamEncoder {
    /// An encoder for one response, echoing `echo`.
    pub fn new(echo: Echo, created: u64) -> Self {
        StreamEncoder {
            echo,
            created,
            seq: 0,
            id: String::new(),
            model: String::new(),
            started: false,
            done: false,
            finished: Vec::new(),
            open: None,
            closed_calls: Vec::new(),
            finish: None,
            usage: None,
            reasoning_tokens: 0,
        }
    }

    fn emit(&mut self, kind: &str, mut v: Json, out: &mut Vec<u8>) {
        set(&mut v, "type", kind.into());
        set(&mut v, "sequence_number", self.seq.into());
        self.seq += 1;
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\ndata: ");
        out.extend_from_slice(v.encode().as_bytes());
        out.extend_from_slice(b"\n\n");
    }

    fn snapshot(&self, status: &str, reason: Option<&str>) -> Json {
        let mut output = self.finished.clone();
        if let Some(item) = &self.open {
            output.push(item_json(item, "in_progress"));
        }
        let usage = self.usage.map(|u| usage_object(&u, self.reasoning_tokens));
        response(
            &self.id,
            self.created,
            &self.model,
            status,
            output.into(),
            usage,
            reason,
            &self.echo,
        )
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        self.started = true;
        self.id = response_id(id);
        self.model = model.to_string();
        let r = self.snapshot("in_progress", None);
        self.emit("response.created", json!({"response": r}), out);
        let r = self.snapshot("in_progress", None);
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    /// One canonical chunk (the JSON after `data: `; never `[DONE]`).
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
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
            let c = read_usage(u);
            self.usage = Some(c.usage);
            self.reasoning_tokens = c.reasoning;
        }
        if !self.started {
            self.start(str_field(&v, "id"), str_field(&v, "model"), out);
        }
        let Some(choice) = first_choice(v.get("choices")) else {
            return Ok(());
        };
        if let Some(delta) = choice.get("delta") {
            if let Some(r) = reasoning_of(delta) {
                self.reasoning_delta(r, out);
            }
            if let Some(text) = delta.get("content").and_then(|c| c.as_str())
                && !text.is_empty()
            {
                self.text_delta(text, out);
            }
            if let Some(calls) = delta.get("tool_calls").and_then(|c| c.as_array()) {
                for (pos, call) in calls.iter().enumerate() {
                    self.call_delta(call, pos as u64, out);
                }
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(|f| f.as_str()) {
            self.finish = Finish::parse(f);
        }
        Ok(())
    }

    fn output_index(&self) -> u64 {
        self.finished.len() as u64
    }

    fn reasoning_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Item::Reasoning { .. })) {
            self.close(out);
            let id = format!("rs_{}_{}", self.id, self.output_index());
            let item = json!({"type": "reasoning", "id": id.as_str(), "summary": []});
            let at = self.output_index();
            self.emit(
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
                out,
            );
            self.emit(
                "response.reasoning_summary_part.added",
                json!({"item_id": id.as_str(), "output_index": at, "summary_index": 0,
                       "part": {"type": "summary_text", "text": ""}}),
                out,
            );
            self.open = Some(Item::Reasoning {
                id,
                text: String::new(),
            });
        }
        let at = self.output_index();
        if let Some(Item::Reasoning { id, text: t }) = &mut self.open {
            t.push_str(text);
            let id = id.clone();
            self.emit(
                "response.reasoning_summary_text.delta",
                json!({"item_id": id, "output_index": at, "summary_index": 0, "delta": text}),
                out,
            );
        }
    }

    fn text_delta(&mut self, text: &str, out: &mut Vec<u8>) {
        if !matches!(self.open, Some(Item::Message { .. })) {
            self.close(out);
            let id = format!("msg_{}_{}", self.id, self.output_index());
            let at = self.output_index();
            let item = json!({"type": "message", "id": id.as_str(), "status": "in_progress",
                              "role": "assistant", "content": []});
            self.emit(
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
                out,
            );
            self.emit(
                "response.content_part.added",
                json!({"item_id": id.as_str(), "output_index": at, "content_index": 0,
                       "part": {"type": "output_text", "text": "", "annotations": []}}),
                out,
            );
            self.open = Some(Item::Message {
                id,
                text: String::new(),
            });
        }
        let at = self.output_index();
        if let Some(Item::Message { id, text: t }) = &mut self.open {
            t.push_str(text);
            let id = id.clone();
            self.emit(
                "response.output_text.delta",
                json!({"item_id": id, "output_index": at, "content_index": 0,
                       "delta": text, "logprobs": []}),
                out,
            );
        }
    }

    fn call_delta(&mut self, call: &Json, pos: u64, out: &mut Vec<u8>) {
        let index = call.get("index").and_then(|i| i.as_u64()).unwrap_or(pos);
        if self.closed_calls.contains(&index) {
            return;
        }
        let f = call.get("function");
        let fragment = f.map_or("", |f| str_field(f, "arguments"));
        let same = matches!(&self.open, Some(Item::Function { index: i, .. }) if *i == index);
        if !same {
            self.close(out);
            let id = format!("fc_{}_{}", self.id, self.output_index());
            let call_id = str_field(call, "id").to_string();
            let name = f.map_or("", |f| str_field(f, "name")).to_string();
            let at = self.output_index();
            let item = function_item(&id, &call_id, &name, "", "in_progress");
            self.emit(
                "response.output_item.added",
                json!({"output_index": at, "item": item}),
                out,
            );
            self.open = Some(Item::Function {
                id,
                call_id,
                name,
                arguments: String::new(),
                index,
            });
        }
        if fragment.is_empty() {
            return;
        }
        let at = self.output_index();
        if let Some(Item::Function { id, arguments, .. }) = &mut self.open {
            arguments.push_str(fragment);
            let id = id.clone();
            self.emit(
                "response.function_call_arguments.delta",
                json!({"item_id": id, "output_index": at, "delta": fragment}),
                out,
            );
        }
    }

    /// Closes the open item with its `.done` events.
    fn close(&mut self, out: &mut Vec<u8>) {
        let Some(item) = self.open.take() else {
            return;
        };
        let at = self.output_index();
        match &item {
            Item::Reasoning { id, text } => {
                self.emit(
                    "response.reasoning_summary_text.done",
                    json!({"item_id": id.as_str(), "output_index": at, "summary_index": 0,
                           "text": text.as_str()}),
                    out,
                );
                self.emit(
                    "response.reasoning_summary_part.done",
                    json!({"item_id": id.as_str(), "output_index": at, "summary_index": 0,
                           "part": {"type": "summary_text", "text": text.as_str()}}),
                    out,
                );
            }
            Item::Message { id, text } => {
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id.as_str(), "output_index": at, "content_index": 0,
                           "text": text.as_str(), "logprobs": []}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id.as_str(), "output_index": at, "content_index": 0,
                           "part": {"type": "output_text", "text": text.as_str(),
                                    "annotations": []}}),
                    out,
                );
            }
            Item::Function {
                id,
                arguments,
                index,
                ..
            } => {
                self.closed_calls.push(*index);
                self.emit(
                    "response.function_call_arguments.done",
                    json!({"item_id": id.as_str(), "output_index": at,
                           "arguments": arguments.as_str()}),
                    out,
                );
            }
        }
        let done = item_json(&item, "completed");
        self.emit(
            "response.output_item.done",
            json!({"output_index": at, "item": done.clone()}),
            out,
        );
        self.finished.push(done);
    }

    /// The upstream finished: closes the open item, then `response.completed` (or
    /// `response.incomplete`). Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        self.close(out);
        let reason = incomplete(self.finish);
        let (kind, status) = if reason.is_some() {
            ("response.incomplete", "incomplete")
        } else {
            ("response.completed", "completed")
        };
        let r = self.snapshot(status, reason);
        self.emit(kind, json!({"response": r}), out);
        self.done = true;
    }

    /// A failure mid-stream: `response.failed` with the error (nothing may follow it).
    pub fn error(&mut self, err: &Error, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if !self.started {
            self.start("", "", out);
        }
        let mut r = self.snapshot("failed", None);
        set(
            &mut r,
            "error",
            json!({"code": err.code, "message": err.message.as_ref()}),
        );
        self.emit("response.failed", json!({"response": r}), out);
        self.done = true;
    }
}

fn item_json(item: &Item, status: &str) -> Json {
    match item {
        Item::Reasoning { id, text } => reasoning_item(id, text),
        Item::Message { id, text } => message_item(id, text, status),
        Item::Function {
            id,
            call_id,
            name,
            arguments,
            ..
        } => function_item(id, call_id, name, arguments, status),
    }
}

/// True when an SSE event of a native Responses stream ends it (`response.completed`,
/// `response.incomplete`, `response.failed`): such streams send no `[DONE]`.
pub(crate) fn is_terminal_event(name: &[u8], data: &[u8]) -> bool {
    const TERMINAL: [&[u8]; 3] = [
        b"response.completed",
        b"response.incomplete",
        b"response.failed",
    ];
    if TERMINAL.contains(&name) {
        return true;
    }
    // Servers that send no `event:` line still say the type in the data.
    TERMINAL.iter().any(|t| {
        let mut pattern = Vec::with_capacity(t.len() + 10);
        pattern.extend_from_slice(b"\"type\":\"");
        pattern.extend_from_slice(t);
        pattern.push(b'"');
        memchr::memmem::find(data, &pattern).is_some()
    })
}

#[cfg(test)]
mod tests;
