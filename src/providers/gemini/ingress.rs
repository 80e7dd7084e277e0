//! A Gemini-format client calling the gateway: [`ingress_request`] turns its
//! `GenerateContentRequest` into a canonical (OpenAI chat-completions) request;
//! [`egress_response`], [`StreamEncoder`] and [`super::error_body`] turn the gateway's
//! canonical answers into Gemini ones.
//!
//! Invariants: client mistakes are 400s; function results are paired with the calls they
//! answer (by id, else by name) so the canonical conversation keeps OpenAI's order; a stream
//! written for the client always ends with one event carrying `finishReason` and
//! `usageMetadata`. Not here: the URL's model and `alt=sse` (the caller passes them), HTTP.

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::owned::Object;
use simd_json::prelude::*;

use crate::error::{Error, truncate};
use crate::providers::TranslateError;
use crate::providers::openai::wire::{Counts, Finish, read_usage};
use crate::providers::shared::{
    arguments_object, bad, field, first_choice, object_of_str, parse, parse_client, sse_data,
};
use crate::tokens::Usage;

use super::upstream::content_text;
use super::wire::{
    SSE_END, call_id, error_message, finish_reason, function_call_part, gemini_usage,
    is_blank_or_done, member, member_str, openai_call, signature_of, to_json_schema,
};

/// What a Gemini client is told about an empty body.
const EMPTY_BODY: &str =
    "The request body is empty; send a GenerateContentRequest with `contents`.";

/// A function call of the latest model turn still waiting for its result.
struct Pending {
    name: String,
    id: String,
}

/// OpenAI content parts for one Gemini media part.
fn openai_media(part: &Json, at: usize) -> Result<Option<Json>, Error> {
    if let Some(inline) = member(part, "inlineData", "inline_data") {
        let mime = member_str(inline, "mimeType", "mime_type").unwrap_or("");
        let data = inline.get_str("data").unwrap_or("");
        let lower = mime.to_ascii_lowercase();
        let url = format!("data:{mime};base64,{data}");
        return match lower.as_str() {
            m if m.starts_with("image/") => Ok(Some(
                json!({"type": "image_url", "image_url": {"url": url}}),
            )),
            "audio/wav" | "audio/x-wav" | "audio/wave" => Ok(Some(
                json!({"type": "input_audio", "input_audio": {"data": data, "format": "wav"}}),
            )),
            "audio/mp3" | "audio/mpeg" => Ok(Some(
                json!({"type": "input_audio", "input_audio": {"data": data, "format": "mp3"}}),
            )),
            "application/pdf" => Ok(Some(
                json!({"type": "file", "file": {"filename": "document.pdf", "file_data": url}}),
            )),
            _ => Err(bad(
                "unsupported_content",
                format!(
                    "contents[{at}]: inline data of type `{}` cannot be translated; send images, \
                     WAV/MP3 audio or PDF.",
                    truncate(mime, 60)
                ),
            )),
        };
    }
    if let Some(file) = member(part, "fileData", "file_data") {
        let mime = member_str(file, "mimeType", "mime_type").unwrap_or("");
        let uri = member_str(file, "fileUri", "file_uri").unwrap_or("");
        if uri.is_empty() || !(mime.is_empty() || mime.starts_with("image/")) {
            return Err(bad(
                "unsupported_content",
                format!("contents[{at}]: only image fileData with a fileUri can be translated."),
            ));
        }
        return Ok(Some(
            json!({"type": "image_url", "image_url": {"url": uri}}),
        ));
    }
    Ok(None)
}

/// An OpenAI tool message's content for a Gemini `response`: the text it wrapped, or the JSON.
fn tool_content(response: Option<&Json>) -> String {
    let Some(r) = response else {
        return String::new();
    };
    if let Some(o) = r.as_object()
        && o.len() == 1
        && let Some(text) = o.get("content").and_then(|c| c.as_str())
    {
        return text.to_owned();
    }
    r.encode()
}

/// The canonical (OpenAI chat) form of a `:countTokens` body, for the gateway's own estimate:
/// its `generateContentRequest` when it has one, else the body itself (`contents`, and
/// `systemInstruction`/`tools` when given), translated as [`ingress_request`] does.
pub fn count_tokens_request(body: &[u8], model: &str) -> Result<Vec<u8>, Error> {
    let v = parse_client(body, EMPTY_BODY, ".")?;
    match member(&v, "generateContentRequest", "generate_content_request") {
        Some(inner) if inner.as_object().is_some() => {
            ingress_request(inner.encode().as_bytes(), model, false)
        }
        _ => ingress_request(body, model, false),
    }
}

/// Translates a GenerateContentRequest for `model` into an OpenAI chat-completions body with
/// `"model": model` and `stream` set; streaming also gets `stream_options.include_usage`.
///
/// Function results become `tool` messages placed right after the assistant message that made
/// the calls (OpenAI requires that order), with the `tool_call_id` of the call they answer
/// (by `id` when given, else the earliest unanswered call of the same name). Calls without an
/// id get `call_<n>`. Only function tools translate; other Gemini tools are a 400.
pub fn ingress_request(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, Error> {
    let v = parse_client(body, EMPTY_BODY, ".")?;
    if v.as_object().is_none() {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object with `contents`.",
        ));
    }
    let contents = member(&v, "contents", "contents")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty())
        .ok_or_else(|| {
            bad(
                "invalid_contents",
                "`contents` must be a non-empty array of {role, parts} objects.",
            )
        })?;

    let mut messages: Vec<Json> = Vec::new();
    if let Some(sys) = member(&v, "systemInstruction", "system_instruction") {
        let texts: Vec<&str> = sys
            .get("parts")
            .and_then(|p| p.as_array())
            .into_iter()
            .flatten()
            .filter_map(|p| p.get_str("text"))
            .collect();
        let text = texts.join("\n");
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }

    let mut pending: Vec<Pending> = Vec::new();
    let mut next_call = 0u64;
    for (at, content) in contents.iter().enumerate() {
        let parts = content
            .get("parts")
            .and_then(|p| p.as_array())
            .ok_or_else(|| {
                bad(
                    "invalid_contents",
                    format!("contents[{at}].parts must be an array of parts."),
                )
            })?;
        match content.get_str("role").unwrap_or("user") {
            "model" => {
                pending.clear();
                let mut text = String::new();
                let mut calls = Vec::new();
                for part in parts.iter() {
                    if let Some(fc) = member(part, "functionCall", "function_call") {
                        let name =
                            fc.get_str("name")
                                .filter(|n| !n.is_empty())
                                .ok_or_else(|| {
                                    bad(
                                        "invalid_contents",
                                        format!("contents[{at}]: a functionCall needs a name."),
                                    )
                                })?;
                        let id = call_id(fc, &mut next_call);
                        calls.push(openai_call(part, fc, name, &id));
                        pending.push(Pending {
                            name: name.to_owned(),
                            id,
                        });
                    } else if let Some(t) = part.get_str("text") {
                        // Thoughts are the model's own scratch work, not part of the answer.
                        if part.get("thought").and_then(|x| x.as_bool()) != Some(true) {
                            text.push_str(t);
                        }
                    }
                }
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut m = Object::default();
                m.insert("role".into(), "assistant".into());
                let content = if text.is_empty() {
                    Json::null()
                } else {
                    text.into()
                };
                m.insert("content".into(), content);
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), Json::from(calls));
                }
                messages.push(Json::from(m));
            }
            "user" | "function" | "tool" => {
                let mut user: Vec<Json> = Vec::new();
                let mut text_only = true;
                for part in parts.iter() {
                    if let Some(fr) = member(part, "functionResponse", "function_response") {
                        let name = fr.get_str("name").unwrap_or("");
                        let by_id = fr.get_str("id").filter(|i| !i.is_empty());
                        let slot = match by_id {
                            Some(id) => pending.iter().position(|p| p.id == id),
                            None => pending.iter().position(|p| p.name == name),
                        };
                        let id = match (slot, by_id) {
                            (Some(k), _) => pending.remove(k).id,
                            (None, Some(id)) => id.to_owned(),
                            (None, None) => {
                                let id = format!("call_{next_call}");
                                next_call += 1;
                                id
                            }
                        };
                        messages.push(json!({
                            "role": "tool",
                            "tool_call_id": id,
                            "content": tool_content(fr.get("response").filter(|r| !r.is_null()))
                        }));
                    } else if let Some(t) = part.get_str("text") {
                        if !t.is_empty() {
                            user.push(json!({"type": "text", "text": t}));
                        }
                    } else if let Some(media) = openai_media(part, at)? {
                        text_only = false;
                        user.push(media);
                    } else if member(part, "functionCall", "function_call").is_some() {
                        return Err(bad(
                            "invalid_contents",
                            format!("contents[{at}]: functionCall parts belong in model turns."),
                        ));
                    } else if member(part, "thoughtSignature", "thought_signature").is_none() {
                        return Err(bad(
                            "unsupported_content",
                            format!(
                                "contents[{at}]: unsupported part; use text, inlineData, \
                                 fileData or functionResponse."
                            ),
                        ));
                    }
                }
                if user.is_empty() {
                    continue;
                }
                let content = match user.as_slice() {
                    [only] if text_only => only.get("text").cloned().unwrap_or_default(),
                    _ => Json::from(user),
                };
                messages.push(json!({"role": "user", "content": content}));
            }
            other => {
                return Err(bad(
                    "invalid_contents",
                    format!(
                        "contents[{at}].role must be user or model, got `{}`.",
                        truncate(other, 40)
                    ),
                ));
            }
        }
    }

    let mut req = Object::default();
    req.insert("model".into(), model.into());
    req.insert("messages".into(), Json::from(messages));
    req.insert("stream".into(), stream.into());
    if stream {
        req.insert("stream_options".into(), json!({"include_usage": true}));
    }
    if let Some(g) = member(&v, "generationConfig", "generation_config") {
        ingress_generation(g, &mut req)?;
    }
    let (tools, allowed) = ingress_tools(&v)?;
    if let Some(choice) = allowed.choice {
        req.insert("tool_choice".into(), choice);
    }
    if !tools.is_empty() {
        let tools: Vec<Json> = match &allowed.only {
            Some(names) => tools
                .into_iter()
                .filter(|t| {
                    t.get("function")
                        .and_then(|f| f.get_str("name"))
                        .is_some_and(|n| names.iter().any(|a| a == n))
                })
                .collect(),
            None => tools,
        };
        req.insert("tools".into(), Json::from(tools));
    }
    Ok(Json::from(req).encode().into_bytes())
}

/// Copies a numeric Gemini parameter into an OpenAI request.
fn copy_gemini_number(
    g: &Json,
    camel: &str,
    snake: &str,
    dst: &mut Object,
    to: &str,
) -> Result<(), Error> {
    if let Some(v) = member(g, camel, snake) {
        if v.cast_f64().is_none() {
            return Err(bad(
                "invalid_parameter",
                format!("generationConfig.{camel} must be a number."),
            ));
        }
        dst.insert(to.into(), v.clone());
    }
    Ok(())
}

fn ingress_generation(g: &Json, req: &mut Object) -> Result<(), Error> {
    copy_gemini_number(g, "temperature", "temperature", req, "temperature")?;
    copy_gemini_number(g, "topP", "top_p", req, "top_p")?;
    copy_gemini_number(g, "maxOutputTokens", "max_output_tokens", req, "max_tokens")?;
    copy_gemini_number(g, "candidateCount", "candidate_count", req, "n")?;
    copy_gemini_number(g, "seed", "seed", req, "seed")?;
    copy_gemini_number(
        g,
        "presencePenalty",
        "presence_penalty",
        req,
        "presence_penalty",
    )?;
    copy_gemini_number(
        g,
        "frequencyPenalty",
        "frequency_penalty",
        req,
        "frequency_penalty",
    )?;
    if let Some(stop) = member(g, "stopSequences", "stop_sequences").and_then(|s| s.as_array()) {
        let list: Vec<Json> = stop
            .iter()
            .filter_map(|s| s.as_str())
            .map(Json::from)
            .collect();
        if !list.is_empty() {
            req.insert("stop".into(), Json::from(list));
        }
    }
    if member_str(g, "responseMimeType", "response_mime_type") == Some("application/json") {
        let schema = member(g, "responseSchema", "response_schema")
            .map(to_json_schema)
            .or_else(|| member(g, "responseJsonSchema", "response_json_schema").cloned());
        let format = match schema {
            Some(schema) => json!({
                "type": "json_schema",
                "json_schema": {"name": "response", "schema": schema}
            }),
            None => json!({"type": "json_object"}),
        };
        req.insert("response_format".into(), format);
    }
    Ok(())
}

/// What `toolConfig` asks for in OpenAI terms.
#[derive(Default)]
struct Allowed {
    choice: Option<Json>,
    /// ANY mode restricted to several functions: OpenAI cannot name a subset, so the tool
    /// list itself is narrowed and the choice is `required`.
    only: Option<Vec<String>>,
}

fn ingress_tools(v: &Json) -> Result<(Vec<Json>, Allowed), Error> {
    let mut tools = Vec::new();
    if let Some(list) = member(v, "tools", "tools") {
        let list = list
            .as_array()
            .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
        for (k, tool) in list.iter().enumerate() {
            let Some(decls) = member(tool, "functionDeclarations", "function_declarations") else {
                return Err(bad(
                    "unsupported_tool",
                    format!(
                        "tools[{k}]: only functionDeclarations can be served through this \
                         gateway (no built-in Google tools)."
                    ),
                ));
            };
            for (j, d) in decls.as_array().into_iter().flatten().enumerate() {
                let name = d.get_str("name").filter(|n| !n.is_empty()).ok_or_else(|| {
                    bad(
                        "invalid_tools",
                        format!("tools[{k}].functionDeclarations[{j}] needs a name."),
                    )
                })?;
                let mut f = Object::default();
                f.insert("name".into(), name.into());
                if let Some(desc) = d.get_str("description") {
                    f.insert("description".into(), desc.into());
                }
                let params = member(d, "parameters", "parameters")
                    .map(to_json_schema)
                    .or_else(|| {
                        member(d, "parametersJsonSchema", "parameters_json_schema").cloned()
                    });
                if let Some(p) = params {
                    f.insert("parameters".into(), p);
                }
                tools.push(json!({"type": "function", "function": f}));
            }
        }
    }
    let mut allowed = Allowed::default();
    let config = member(v, "toolConfig", "tool_config")
        .and_then(|t| member(t, "functionCallingConfig", "function_calling_config"));
    if let Some(config) = config {
        let mode = config
            .get_str("mode")
            .unwrap_or("AUTO")
            .to_ascii_uppercase();
        let names: Vec<String> = member(config, "allowedFunctionNames", "allowed_function_names")
            .and_then(|n| n.as_array())
            .into_iter()
            .flatten()
            .filter_map(|n| n.as_str())
            .map(str::to_owned)
            .collect();
        allowed.choice = Some(match mode.as_str() {
            "NONE" => "none".into(),
            "ANY" => match names.as_slice() {
                [] => "required".into(),
                [one] => json!({"type": "function", "function": {"name": one.as_str()}}),
                _ => {
                    allowed.only = Some(names);
                    "required".into()
                }
            },
            _ => "auto".into(),
        });
    }
    Ok((tools, allowed))
}

/// A Gemini `functionCall` part for an OpenAI tool call.
fn call_part(call: &Json) -> Option<Json> {
    let function = call.get("function")?;
    let name = function.get_str("name").filter(|n| !n.is_empty())?;
    let args = arguments_object(function.get("arguments"))?;
    Some(function_call_part(
        call.get_str("id"),
        name,
        args,
        signature_of(call),
    ))
}

/// Rewrites an OpenAI `chat.completion` body as a GenerateContentResponse (appended to `out`).
pub(crate) fn egress_response(openai: &[u8], out: &mut Vec<u8>) -> Result<Usage, TranslateError> {
    let v = parse(openai)
        .map_err(|e| TranslateError::syntax(format!("OpenAI response is not JSON: {e}")))?;
    if let Some(msg) = error_message(&v) {
        return Err(TranslateError::reported(format!("upstream error: {msg}")));
    }
    let choices = v
        .get("choices")
        .and_then(|c| c.as_array())
        .ok_or_else(|| TranslateError::shape("OpenAI response has no `choices` array"))?;
    let mut candidates = Vec::with_capacity(choices.len());
    for (pos, choice) in choices.iter().enumerate() {
        let msg = choice.get("message");
        let mut parts = Vec::new();
        if let Some(r) = msg
            .and_then(|m| m.get_str("reasoning_content"))
            .filter(|r| !r.is_empty())
        {
            parts.push(json!({"text": r, "thought": true}));
        }
        let text = msg
            .and_then(|m| content_text(m.get("content"), pos).ok())
            .filter(|t| !t.is_empty())
            .or_else(|| msg.and_then(|m| m.get_str("refusal")).map(str::to_owned))
            .unwrap_or_default();
        if !text.is_empty() {
            parts.push(json!({ "text": text }));
        }
        let calls = msg
            .and_then(|m| field(m, "tool_calls"))
            .and_then(|c| c.as_array());
        for call in calls.into_iter().flatten() {
            parts.push(call_part(call).ok_or_else(|| {
                TranslateError::shape(
                    "OpenAI tool call without a function name or with arguments that are not a JSON object",
                )
            })?);
        }
        let mut cand = Object::default();
        cand.insert("content".into(), json!({"role": "model", "parts": parts}));
        if let Some(reason) = choice.get_str("finish_reason") {
            cand.insert(
                "finishReason".into(),
                finish_reason(Finish::parse(reason)).into(),
            );
        }
        let index = choice
            .get("index")
            .and_then(|i| i.as_u64())
            .unwrap_or(pos as u64);
        cand.insert("index".into(), index.into());
        candidates.push(Json::from(cand));
    }
    let counts = field(&v, "usage").map(read_usage).unwrap_or_default();
    let mut doc = Object::default();
    doc.insert("candidates".into(), Json::from(candidates));
    doc.insert("usageMetadata".into(), gemini_usage(&counts));
    if let Some(m) = v.get_str("model") {
        doc.insert("modelVersion".into(), m.into());
    }
    if let Some(id) = v.get_str("id") {
        doc.insert("responseId".into(), id.into());
    }
    out.extend_from_slice(Json::from(doc).encode().as_bytes());
    Ok(counts.usage)
}

/// A tool call being assembled from OpenAI's argument fragments.
#[derive(Debug, Default)]
struct PartialCall {
    index: u64,
    id: String,
    name: String,
    arguments: String,
    signature: Option<String>,
}

/// OpenAI chunk events -> Gemini SSE events (`data: {GenerateContentResponse}\r\n\r\n`).
///
/// Text and reasoning deltas become one event each. Gemini sends function calls whole, so
/// tool-call fragments are collected and sent as one event when `finish_reason` arrives. The
/// last event carries `finishReason` and `usageMetadata` together (as Gemini's does); it waits
/// for the usage chunk or [`StreamEncoder::finish`]. Follows choice 0.
#[derive(Debug, Default)]
pub(crate) struct StreamEncoder {
    model: String,
    id: String,
    calls: Vec<PartialCall>,
    /// Gemini finish reason seen, final event not yet written.
    finish: Option<&'static str>,
    counts: Option<Counts>,
    /// The final event was written.
    done: bool,
}

impl StreamEncoder {
    /// An encoder for one stream.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    fn envelope(&self, candidate: Option<Json>, usage: Option<Json>) -> Json {
        let mut doc = Object::default();
        if let Some(c) = candidate {
            doc.insert("candidates".into(), Json::from(vec![c]));
        }
        if let Some(u) = usage {
            doc.insert("usageMetadata".into(), u);
        }
        if !self.model.is_empty() {
            doc.insert("modelVersion".into(), self.model.as_str().into());
        }
        if !self.id.is_empty() {
            doc.insert("responseId".into(), self.id.as_str().into());
        }
        Json::from(doc)
    }

    fn parts_event(&self, parts: Vec<Json>, out: &mut Vec<u8>) {
        let cand = json!({"content": {"role": "model", "parts": parts}, "index": 0});
        sse_data(out, &self.envelope(Some(cand), None), SSE_END);
    }

    /// Sends the collected tool calls as one event. `strict`: arguments that are not a JSON
    /// object are an error; otherwise (stream end) they are sent as an empty object.
    fn flush_calls(&mut self, strict: bool, out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if self.calls.is_empty() {
            return Ok(());
        }
        let calls = std::mem::take(&mut self.calls);
        let mut parts = Vec::with_capacity(calls.len());
        for c in &calls {
            let args = match object_of_str(&c.arguments) {
                Some(a) => a,
                None if strict => {
                    return Err(TranslateError::shape(format!(
                        "tool call `{}` streamed arguments that are not a JSON object",
                        truncate(&c.name, 60)
                    )));
                }
                None => Json::from(Object::default()),
            };
            parts.push(function_call_part(
                Some(&c.id),
                &c.name,
                args,
                c.signature.as_deref(),
            ));
        }
        self.parts_event(parts, out);
        Ok(())
    }

    fn final_event(&mut self, out: &mut Vec<u8>) {
        self.done = true;
        let cand = json!({
            "content": {"role": "model", "parts": [{"text": ""}]},
            "finishReason": self.finish.unwrap_or("STOP"),
            "index": 0
        });
        let usage = gemini_usage(&self.counts.unwrap_or_default());
        let doc = self.envelope(Some(cand), Some(usage));
        sse_data(out, &doc, SSE_END);
    }

    /// One OpenAI chunk payload (the JSON after `data: `). Appends zero or more Gemini events.
    pub(crate) fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if self.done || is_blank_or_done(data) {
            return Ok(());
        }
        let v = parse(data)
            .map_err(|e| TranslateError::syntax(format!("OpenAI chunk is not JSON: {e}")))?;
        if let Some(msg) = error_message(&v) {
            return Err(TranslateError::reported(format!(
                "upstream stream error: {msg}"
            )));
        }
        if self.model.is_empty()
            && let Some(m) = v.get_str("model")
        {
            self.model = m.to_owned();
        }
        if self.id.is_empty()
            && let Some(i) = v.get_str("id")
        {
            self.id = i.to_owned();
        }
        if let Some(u) = field(&v, "usage") {
            self.counts = Some(read_usage(u));
        }
        let choice = first_choice(v.get("choices"));
        if let Some(choice) = choice {
            if let Some(delta) = field(choice, "delta") {
                let mut parts = Vec::new();
                if let Some(r) = delta.get_str("reasoning_content").filter(|r| !r.is_empty()) {
                    parts.push(json!({"text": r, "thought": true}));
                }
                if let Some(t) = delta.get_str("content").filter(|t| !t.is_empty()) {
                    parts.push(json!({ "text": t }));
                }
                if !parts.is_empty() {
                    self.parts_event(parts, out);
                }
                let tool_calls = field(delta, "tool_calls").and_then(|t| t.as_array());
                for tc in tool_calls.into_iter().flatten() {
                    self.collect_call(tc);
                }
            }
            if let Some(reason) = choice.get_str("finish_reason") {
                self.finish = Some(finish_reason(Finish::parse(reason)));
                self.flush_calls(true, out)?;
            }
        }
        if self.finish.is_some() && self.counts.is_some() {
            self.final_event(out);
        }
        Ok(())
    }

    fn collect_call(&mut self, tc: &Json) {
        let index = tc
            .get("index")
            .and_then(|i| i.as_u64())
            .unwrap_or(self.calls.len() as u64);
        let found = self.calls.iter().position(|c| c.index == index);
        let pos = match found {
            Some(p) => p,
            None => {
                self.calls.push(PartialCall {
                    index,
                    ..PartialCall::default()
                });
                self.calls.len() - 1
            }
        };
        let Some(call) = self.calls.get_mut(pos) else {
            return;
        };
        // Some servers repeat the id and name on every fragment: keep the first.
        if call.id.is_empty()
            && let Some(id) = tc.get_str("id")
        {
            call.id = id.to_owned();
        }
        let function = tc.get("function");
        if call.name.is_empty()
            && let Some(name) = function.and_then(|f| f.get_str("name"))
        {
            call.name = name.to_owned();
        }
        if let Some(a) = function.and_then(|f| f.get_str("arguments")) {
            call.arguments.push_str(a);
        }
        if call.signature.is_none()
            && let Some(sig) = signature_of(tc)
        {
            call.signature = Some(sig.to_owned());
        }
    }

    /// Stream end; emits a last event carrying usageMetadata if it was not sent yet (with any
    /// tool calls still collected before it, and `finishReason` STOP when none arrived).
    /// Ends the client's stream; calling it again writes nothing more.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        // Lenient flush: the stream is over and there is no caller left to fail.
        let _ = self.flush_calls(false, out);
        self.final_event(out);
    }

    /// Usage from the upstream's usage chunk, once seen.
    ///
    /// Only the tests read it: the proxy takes every answer's usage from the canonical
    /// chunks (`openai::openai_usage`).
    #[cfg(test)]
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage)
    }
}
