//! The gateway calling a Gemini provider (Generative Language API v1beta,
//! `models/{model}:generateContent` and `:streamGenerateContent?alt=sse`): [`encode_request`]
//! turns a canonical (OpenAI chat-completions) request into a `GenerateContentRequest`;
//! [`decode_response`], [`StreamDecoder`] and [`decode_error`] turn Gemini's answers back into
//! OpenAI ones.
//!
//! Invariants: client mistakes are 400s found before anything is sent; an answer that cannot be
//! translated is an `Err` with a message for the log. Tool-call ids do not travel upstream
//! (Gemini pairs calls and results by function name); thought signatures do.
//! Not here: URLs, auth headers, splitting the upstream byte stream into SSE `data:` payloads,
//! `data: [DONE]`.

use std::collections::HashMap;

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::owned::Object;
use simd_json::prelude::*;

use crate::error::{Error, Kind, truncate};
use crate::providers::TranslateError;
use crate::providers::openai::wire::{
    Counts, Finish, chunk, completion, kind_for_status, push_event, usage_object, write_error,
};
use crate::providers::shared::{
    Turn, arguments_object, bad, field, first_choice, parse, parse_data_url, push_turn,
};
use crate::tokens::Usage;

use super::wire::{
    SKIP_SIGNATURE, call_id, error_message, finish_of, function_call_part, gemini_parameters,
    grpc_status, is_blank_or_done, member, member_str, openai_call, read_gemini_usage,
    signature_of, to_gemini_schema,
};

/// MIME type from a URL's extension; images are what OpenAI `image_url` parts carry, so an
/// unknown extension is taken for a JPEG.
fn guess_mime(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    let last = path.rsplit('/').next().unwrap_or(path);
    let ext = last.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "heic" => "image/heic",
        "heif" => "image/heif",
        "pdf" => "application/pdf",
        "mp3" => "audio/mp3",
        "wav" => "audio/wav",
        "mp4" => "video/mp4",
        _ => "image/jpeg",
    }
}

/// A Gemini media part for a URL: inline bytes for a data URL, a file reference otherwise.
fn media_part(url: &str, at: usize) -> Result<Json, Error> {
    if url.starts_with("data:") {
        let (mime, data) = parse_data_url(url).ok_or_else(|| {
            bad(
                "invalid_image_url",
                format!(
                    "messages[{at}]: a data URL must look like data:<mime type>;base64,<data>."
                ),
            )
        })?;
        return Ok(json!({"inlineData": {"mimeType": mime, "data": data}}));
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    if lower.starts_with("https://") || lower.starts_with("http://") {
        return Ok(json!({"fileData": {"mimeType": guess_mime(url), "fileUri": url}}));
    }
    Err(bad(
        "invalid_image_url",
        format!(
            "messages[{at}]: image URLs must be http(s) or base64 data URLs, got `{}`.",
            truncate(url, 40)
        ),
    ))
}

/// The text of OpenAI `content`: a string, or its text (and refusal) parts joined.
pub(crate) fn content_text(content: Option<&Json>, at: usize) -> Result<String, Error> {
    match content {
        None => Ok(String::new()),
        Some(c) if c.is_null() => Ok(String::new()),
        Some(c) => {
            if let Some(s) = c.as_str() {
                return Ok(s.to_owned());
            }
            let parts = c.as_array().ok_or_else(|| {
                bad(
                    "invalid_content",
                    format!("messages[{at}].content must be a string or an array of parts."),
                )
            })?;
            let mut text = String::new();
            for p in parts.iter() {
                match p.get_str("type") {
                    Some("text") => text.push_str(p.get_str("text").unwrap_or("")),
                    Some("refusal") => text.push_str(p.get_str("refusal").unwrap_or("")),
                    other => {
                        return Err(bad(
                            "invalid_content",
                            format!(
                                "messages[{at}]: only text parts are allowed here, got `{}`.",
                                truncate(other.unwrap_or("(none)"), 40)
                            ),
                        ));
                    }
                }
            }
            Ok(text)
        }
    }
}

/// Gemini parts of a user message's content.
fn user_parts(content: Option<&Json>, at: usize) -> Result<Vec<Json>, Error> {
    let Some(c) = content.filter(|c| !c.is_null()) else {
        return Ok(Vec::new());
    };
    if let Some(s) = c.as_str() {
        return Ok(if s.is_empty() {
            Vec::new()
        } else {
            vec![json!({ "text": s })]
        });
    }
    let list = c.as_array().ok_or_else(|| {
        bad(
            "invalid_content",
            format!("messages[{at}].content must be a string or an array of parts."),
        )
    })?;
    let mut parts = Vec::with_capacity(list.len());
    for p in list.iter() {
        match p.get_str("type") {
            Some("text") => {
                let text = p.get_str("text").unwrap_or("");
                if !text.is_empty() {
                    parts.push(json!({ "text": text }));
                }
            }
            Some("image_url") => {
                let url = p
                    .get("image_url")
                    .and_then(|i| i.as_str().or_else(|| i.get_str("url")))
                    .ok_or_else(|| {
                        bad(
                            "invalid_image_url",
                            format!("messages[{at}]: an image_url part needs image_url.url."),
                        )
                    })?;
                parts.push(media_part(url, at)?);
            }
            Some("input_audio") => {
                let audio = p.get("input_audio");
                let data = audio.and_then(|a| a.get_str("data"));
                let format = audio.and_then(|a| a.get_str("format"));
                let (Some(data), Some(format)) = (data, format) else {
                    return Err(bad(
                        "invalid_content",
                        format!(
                            "messages[{at}]: an input_audio part needs input_audio.data and .format."
                        ),
                    ));
                };
                let mime = format!("audio/{}", format.to_ascii_lowercase());
                parts.push(json!({"inlineData": {"mimeType": mime, "data": data}}));
            }
            Some("file") => {
                let data_url = p.get("file").and_then(|f| f.get_str("file_data"));
                match data_url.and_then(parse_data_url) {
                    Some((mime, data)) => {
                        parts.push(json!({"inlineData": {"mimeType": mime, "data": data}}))
                    }
                    None => {
                        return Err(bad(
                            "unsupported_content",
                            format!(
                                "messages[{at}]: file parts must carry file.file_data as a base64 \
                                 data URL; uploaded file ids cannot be sent to Gemini."
                            ),
                        ));
                    }
                }
            }
            other => {
                return Err(bad(
                    "unsupported_content",
                    format!(
                        "messages[{at}]: content part type `{}` is not supported for Gemini; use \
                         text, image_url, input_audio or file.",
                        truncate(other.unwrap_or("(none)"), 40)
                    ),
                ));
            }
        }
    }
    Ok(parts)
}

/// Gemini parts of an assistant message; records each tool call's name under its id so later
/// tool results can name the function (Gemini matches results by name).
fn assistant_parts(
    msg: &Json,
    at: usize,
    call_names: &mut HashMap<String, String>,
) -> Result<Vec<Json>, Error> {
    let mut parts = Vec::new();
    let text = content_text(msg.get("content"), at)?;
    if !text.is_empty() {
        parts.push(json!({ "text": text }));
    }
    if let Some(fc) = field(msg, "function_call") {
        // The legacy single-call form: no id, results come back as `function` messages.
        let name = fc
            .get_str("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    "invalid_tool_calls",
                    format!("messages[{at}].function_call needs a name."),
                )
            })?;
        let args = arguments_object(fc.get("arguments")).ok_or_else(|| {
            bad(
                "invalid_tool_arguments",
                format!("messages[{at}].function_call.arguments must be a JSON object string."),
            )
        })?;
        parts.push(function_call_part(None, name, args, Some(SKIP_SIGNATURE)));
    }
    let Some(calls) = field(msg, "tool_calls") else {
        return Ok(parts);
    };
    let calls = calls.as_array().ok_or_else(|| {
        bad(
            "invalid_tool_calls",
            format!("messages[{at}].tool_calls must be an array."),
        )
    })?;
    for (k, call) in calls.iter().enumerate() {
        let function = call.get("function");
        let name = function
            .and_then(|f| f.get_str("name"))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                bad(
                    "invalid_tool_calls",
                    format!("messages[{at}].tool_calls[{k}] needs function.name."),
                )
            })?;
        let args =
            arguments_object(function.and_then(|f| f.get("arguments"))).ok_or_else(|| {
                bad(
                    "invalid_tool_arguments",
                    format!(
                        "messages[{at}].tool_calls[{k}].function.arguments must be a JSON object \
                     encoded as a string."
                    ),
                )
            })?;
        if let Some(id) = call.get_str("id") {
            call_names.insert(id.to_owned(), name.to_owned());
        }
        // Gemini validates the signature of the first call of a step only.
        let signature = signature_of(call).or((k == 0).then_some(SKIP_SIGNATURE));
        parts.push(function_call_part(None, name, args, signature));
    }
    Ok(parts)
}

/// A tool result's `response`: the content itself when it is a JSON object, else wrapped.
fn tool_response(text: &str) -> Json {
    match parse(text.as_bytes()) {
        Ok(v) if v.as_object().is_some() => v,
        _ => json!({ "content": text }),
    }
}

/// Copies a numeric OpenAI parameter into `dst` under Gemini's name.
fn copy_number(chat: &Json, from: &str, dst: &mut Object, to: &str) -> Result<(), Error> {
    if let Some(v) = field(chat, from) {
        if v.cast_f64().is_none() {
            return Err(bad(
                "invalid_parameter",
                format!("`{from}` must be a number."),
            ));
        }
        dst.insert(to.into(), v.clone());
    }
    Ok(())
}

/// `thinkingBudget` for an OpenAI `reasoning_effort`: Google's own mapping for its
/// OpenAI-compatible endpoint (README "Field fidelity"); `None` for a value that is not one.
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "none" => Some(0),
        "minimal" | "low" => Some(1024),
        "medium" => Some(8192),
        "high" => Some(24576),
        _ => None,
    }
}

fn generation_config(chat: &Json) -> Result<Object, Error> {
    let mut g = Object::default();
    copy_number(chat, "temperature", &mut g, "temperature")?;
    copy_number(chat, "top_p", &mut g, "topP")?;
    copy_number(chat, "top_k", &mut g, "topK")?;
    if field(chat, "max_completion_tokens").is_some() {
        copy_number(chat, "max_completion_tokens", &mut g, "maxOutputTokens")?;
    } else {
        copy_number(chat, "max_tokens", &mut g, "maxOutputTokens")?;
    }
    // Several candidates are translated only whole: a stream follows the first, so a
    // streamed `n` (which reaches here only with `on_unsupported = "drop"`) is left out.
    let streamed = field(chat, "stream").and_then(|s| s.as_bool()) == Some(true);
    if !streamed {
        copy_number(chat, "n", &mut g, "candidateCount")?;
    }
    if let Some(effort) = field(chat, "reasoning_effort") {
        let budget = effort.as_str().and_then(thinking_budget).ok_or_else(|| {
            bad(
                "invalid_reasoning_effort",
                "`reasoning_effort` must be none, minimal, low, medium or high.",
            )
        })?;
        g.insert("thinkingConfig".into(), json!({ "thinkingBudget": budget }));
    }
    copy_number(chat, "seed", &mut g, "seed")?;
    copy_number(chat, "presence_penalty", &mut g, "presencePenalty")?;
    copy_number(chat, "frequency_penalty", &mut g, "frequencyPenalty")?;
    if let Some(stop) = field(chat, "stop") {
        let list: Vec<Json> = if let Some(s) = stop.as_str() {
            vec![s.into()]
        } else if let Some(a) = stop.as_array() {
            a.iter()
                .filter_map(|s| s.as_str())
                .map(Json::from)
                .collect()
        } else {
            return Err(bad(
                "invalid_parameter",
                "`stop` must be a string or an array of strings.",
            ));
        };
        if !list.is_empty() {
            g.insert("stopSequences".into(), Json::from(list));
        }
    }
    if let Some(rf) = field(chat, "response_format") {
        match rf.get_str("type") {
            Some("text") => {}
            Some("json_object") => {
                g.insert("responseMimeType".into(), "application/json".into());
            }
            Some("json_schema") => {
                g.insert("responseMimeType".into(), "application/json".into());
                if let Some(schema) = rf.get("json_schema").and_then(|j| field(j, "schema")) {
                    g.insert("responseSchema".into(), to_gemini_schema(schema));
                }
            }
            _ => {
                return Err(bad(
                    "invalid_response_format",
                    "`response_format.type` must be text, json_object or json_schema.",
                ));
            }
        }
    }
    Ok(g)
}

/// `tools` (and the legacy `functions`) as one Gemini tool of function declarations.
fn function_declarations(chat: &Json) -> Result<Vec<Json>, Error> {
    let mut decls = Vec::new();
    let mut add = |f: &Json, what: &str| -> Result<(), Error> {
        let name = f
            .get_str("name")
            .filter(|n| !n.is_empty())
            .ok_or_else(|| bad("invalid_tools", format!("{what} needs a name.")))?;
        let mut d = Object::default();
        d.insert("name".into(), name.into());
        if let Some(desc) = f.get_str("description") {
            d.insert("description".into(), desc.into());
        }
        if let Some(p) = field(f, "parameters").and_then(gemini_parameters) {
            d.insert("parameters".into(), p);
        }
        decls.push(Json::from(d));
        Ok(())
    };
    if let Some(tools) = field(chat, "tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| bad("invalid_tools", "`tools` must be an array."))?;
        for (k, t) in tools.iter().enumerate() {
            match (t.get_str("type"), t.get("function")) {
                (Some("function"), Some(f)) => add(f, &format!("tools[{k}].function"))?,
                _ => {
                    return Err(bad(
                        "unsupported_tool",
                        format!("tools[{k}]: only function tools can be sent to Gemini."),
                    ));
                }
            }
        }
    }
    if let Some(functions) = field(chat, "functions").and_then(|f| f.as_array()) {
        for (k, f) in functions.iter().enumerate() {
            add(f, &format!("functions[{k}]"))?;
        }
    }
    Ok(decls)
}

/// `tool_choice` (or the legacy `function_call`) as `toolConfig`.
fn tool_config(chat: &Json) -> Result<Option<Json>, Error> {
    let Some(choice) = field(chat, "tool_choice").or_else(|| field(chat, "function_call")) else {
        return Ok(None);
    };
    let config = match choice.as_str() {
        Some("auto") => json!({"mode": "AUTO"}),
        Some("none") => json!({"mode": "NONE"}),
        Some("required") => json!({"mode": "ANY"}),
        Some(_) => {
            return Err(bad(
                "invalid_tool_choice",
                "`tool_choice` must be auto, none, required or {\"type\":\"function\",\"function\":{\"name\":…}}.",
            ));
        }
        None => {
            let name = choice
                .get("function")
                .and_then(|f| f.get_str("name"))
                .or_else(|| choice.get_str("name"))
                .ok_or_else(|| {
                    bad(
                        "invalid_tool_choice",
                        "`tool_choice` naming a function needs function.name.",
                    )
                })?;
            json!({"mode": "ANY", "allowedFunctionNames": [name]})
        }
    };
    Ok(Some(json!({ "functionCallingConfig": config })))
}

/// Encodes an OpenAI chat-completions request (already parsed; router-only fields removed) as a
/// Gemini GenerateContentRequest body (the model goes in the URL, not the body). The body is
/// appended to `out`.
///
/// Tool-call ids do not travel (Gemini pairs calls and results by function name); a tool call's
/// `extra_content.google.thought_signature` does, and the first call of an assistant message
/// without one gets Gemini's documented skip-validation signature. JSON Schemas are reduced to
/// what Gemini's `Schema` accepts.
pub fn encode_request(chat: &Json, out: &mut Vec<u8>) -> Result<(), Error> {
    if chat.as_object().is_none() {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object with `model` and `messages`.",
        ));
    }
    let messages = field(chat, "messages")
        .and_then(|m| m.as_array())
        .ok_or_else(|| {
            bad(
                "invalid_messages",
                "`messages` must be an array of messages.",
            )
        })?;
    let mut system: Vec<Json> = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    let mut call_names: HashMap<String, String> = HashMap::new();
    for (at, msg) in messages.iter().enumerate() {
        let role = msg.get_str("role").ok_or_else(|| {
            bad(
                "invalid_messages",
                format!("messages[{at}] needs a string `role`."),
            )
        })?;
        match role {
            "system" | "developer" => {
                let text = content_text(msg.get("content"), at)?;
                if !text.is_empty() {
                    system.push(json!({ "text": text }));
                }
            }
            "user" => push_turn(&mut turns, "user", user_parts(msg.get("content"), at)?),
            "assistant" => {
                let parts = assistant_parts(msg, at, &mut call_names)?;
                push_turn(&mut turns, "model", parts);
            }
            "tool" | "function" => {
                let by_id = msg
                    .get_str("tool_call_id")
                    .and_then(|id| call_names.get(id))
                    .map(String::as_str);
                let name = by_id.or_else(|| msg.get_str("name")).ok_or_else(|| {
                    bad(
                        "invalid_tool_message",
                        format!(
                            "messages[{at}]: `tool_call_id` does not match any earlier \
                             assistant tool call, so the function cannot be named."
                        ),
                    )
                })?;
                let text = content_text(msg.get("content"), at)?;
                let part =
                    json!({"functionResponse": {"name": name, "response": tool_response(&text)}});
                push_turn(&mut turns, "user", vec![part]);
            }
            other => {
                return Err(bad(
                    "invalid_messages",
                    format!(
                        "messages[{at}]: unknown role `{}`; use system, developer, user, \
                         assistant or tool.",
                        truncate(other, 40)
                    ),
                ));
            }
        }
    }
    if turns.is_empty() {
        return Err(bad(
            "invalid_messages",
            "`messages` must contain at least one non-empty user or assistant message.",
        ));
    }

    let mut body = Object::default();
    let contents: Vec<Json> = turns
        .into_iter()
        .map(|t| json!({"role": t.role, "parts": t.parts}))
        .collect();
    body.insert("contents".into(), Json::from(contents));
    if !system.is_empty() {
        body.insert("systemInstruction".into(), json!({ "parts": system }));
    }
    let g = generation_config(chat)?;
    if !g.is_empty() {
        body.insert("generationConfig".into(), Json::from(g));
    }
    let decls = function_declarations(chat)?;
    if !decls.is_empty() {
        body.insert("tools".into(), json!([{ "functionDeclarations": decls }]));
    }
    if let Some(tc) = tool_config(chat)? {
        body.insert("toolConfig".into(), tc);
    }
    out.extend_from_slice(Json::from(body).encode().as_bytes());
    Ok(())
}

/// What one Gemini candidate's parts say, in OpenAI terms.
#[derive(Default)]
struct Said {
    text: String,
    reasoning: String,
    calls: Vec<Json>,
}

/// Reads a candidate's parts; tool calls without a Gemini id get `call_<n>` with `n` counted
/// by `next_call`.
fn read_parts(candidate: &Json, next_call: &mut u64) -> Said {
    let mut said = Said::default();
    let parts = candidate
        .get("content")
        .and_then(|c| c.get("parts"))
        .and_then(|p| p.as_array());
    for part in parts.into_iter().flatten() {
        if let Some(text) = part.get_str("text") {
            if part.get("thought").and_then(|t| t.as_bool()) == Some(true) {
                said.reasoning.push_str(text);
            } else {
                said.text.push_str(text);
            }
        } else if let Some(fc) = member(part, "functionCall", "function_call") {
            let name = fc.get_str("name").unwrap_or("");
            let id = call_id(fc, next_call);
            said.calls.push(openai_call(part, fc, name, &id));
        }
    }
    said
}

/// Decodes a GenerateContentResponse into an OpenAI `chat.completion` body (appended to `out`).
/// `model` is the model asked for (used when the response has no `modelVersion`), `id` the
/// completion id to use when the response has no `responseId`.
///
/// Every candidate becomes a choice. A prompt blocked by `promptFeedback` (no candidates)
/// becomes one empty choice finished by `content_filter`.
pub(crate) fn decode_response(
    body: &[u8],
    model: &str,
    id: &str,
    created: u64,
    out: &mut Vec<u8>,
) -> Result<Usage, TranslateError> {
    let v = parse(body)
        .map_err(|e| TranslateError::syntax(format!("Gemini response is not JSON: {e}")))?;
    if v.as_object().is_none() {
        return Err(TranslateError::shape(
            "Gemini response is not a JSON object",
        ));
    }
    if let Some(msg) = error_message(&v) {
        return Err(TranslateError::reported(format!("Gemini error: {msg}")));
    }
    let counts = member(&v, "usageMetadata", "usage_metadata")
        .map(read_gemini_usage)
        .unwrap_or_default();
    let model = member_str(&v, "modelVersion", "model_version").unwrap_or(model);
    let id = member_str(&v, "responseId", "response_id").unwrap_or(id);

    let mut choices = Vec::new();
    let candidates = v
        .get("candidates")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty());
    if let Some(candidates) = candidates {
        let mut next_call = 0;
        for (pos, c) in candidates.iter().enumerate() {
            let said = read_parts(c, &mut next_call);
            let has_calls = !said.calls.is_empty();
            let reason = member_str(c, "finishReason", "finish_reason");
            let finish = finish_of(reason, has_calls).as_str();
            let mut message = Object::default();
            message.insert("role".into(), "assistant".into());
            let content = if said.text.is_empty() && has_calls {
                Json::null()
            } else {
                said.text.into()
            };
            message.insert("content".into(), content);
            if !said.reasoning.is_empty() {
                message.insert("reasoning_content".into(), said.reasoning.into());
            }
            if has_calls {
                message.insert("tool_calls".into(), Json::from(said.calls));
            }
            let index = c
                .get("index")
                .and_then(|i| i.as_u64())
                .unwrap_or(pos as u64);
            choices.push(json!({
                "index": index,
                "message": message,
                "finish_reason": finish
            }));
        }
    } else if member(&v, "promptFeedback", "prompt_feedback").is_some() {
        choices.push(json!({
            "index": 0,
            "message": {"role": "assistant", "content": ""},
            "finish_reason": Finish::ContentFilter.as_str()
        }));
    } else {
        return Err(TranslateError::shape(
            "Gemini response has neither candidates nor promptFeedback",
        ));
    }
    let usage = usage_object(&counts.usage, Some(counts.reasoning));
    let doc = completion(id, created, model, Json::from(choices), usage);
    out.extend_from_slice(doc.encode().as_bytes());
    Ok(counts.usage)
}

/// Translates Gemini SSE (`alt=sse`: each `data:` is a GenerateContentResponse) into OpenAI
/// chunks. Follows the first candidate (Gemini streams one unless asked for more).
#[derive(Debug)]
pub(crate) struct StreamDecoder {
    model: String,
    id: String,
    created: u64,
    /// A chunk was written, so `delta.role` was sent and the id/model are fixed.
    started: bool,
    /// Tool calls sent so far: the index of the next one.
    calls: u64,
    /// A chunk with `finish_reason` was written.
    finish_sent: bool,
    /// A candidate (or a prompt block) carried a finish reason.
    finished: bool,
    counts: Option<Counts>,
    /// `finish` ran.
    done: bool,
}

impl StreamDecoder {
    /// A decoder for one stream; `model` and `id` are used until the first event names its own
    /// `modelVersion` / `responseId`.
    pub(crate) fn new(model: &str, id: &str, created: u64) -> Self {
        StreamDecoder {
            model: model.to_owned(),
            id: id.to_owned(),
            created,
            started: false,
            calls: 0,
            finish_sent: false,
            finished: false,
            counts: None,
            done: false,
        }
    }

    fn chunk(&mut self, mut delta: Object, finish: Option<Finish>, out: &mut Vec<u8>) {
        if !self.started {
            delta.insert("role".into(), "assistant".into());
            self.started = true;
        }
        let finish = finish.map(Finish::as_str);
        let choices = json!([{"index": 0, "delta": delta, "finish_reason": finish}]);
        push_event(
            out,
            &chunk(&self.id, self.created, &self.model, choices, None),
        );
    }

    fn send_finish(&mut self, reason: Finish, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(Object::default(), Some(reason), out);
        }
    }

    /// One SSE `data:` payload. Appends zero or more OpenAI events (`data: {json}\n\n`).
    pub(crate) fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        if is_blank_or_done(data) {
            return Ok(());
        }
        let v = parse(data)
            .map_err(|e| TranslateError::syntax(format!("Gemini stream event is not JSON: {e}")))?;
        if let Some(msg) = error_message(&v) {
            return Err(TranslateError::reported(format!(
                "Gemini stream error: {msg}"
            )));
        }
        if !self.started {
            if let Some(m) = member_str(&v, "modelVersion", "model_version") {
                self.model = m.to_owned();
            }
            if let Some(i) = member_str(&v, "responseId", "response_id") {
                self.id = i.to_owned();
            }
        }
        if let Some(meta) = member(&v, "usageMetadata", "usage_metadata") {
            self.counts = Some(read_gemini_usage(meta));
        }
        let candidate = first_choice(v.get("candidates"));
        let Some(candidate) = candidate else {
            if member(&v, "promptFeedback", "prompt_feedback")
                .is_some_and(|f| member(f, "blockReason", "block_reason").is_some())
            {
                self.finished = true;
                self.send_finish(Finish::ContentFilter, out);
            }
            return Ok(());
        };
        if self.finish_sent {
            // Nothing may follow a finish chunk but usage.
            return Ok(());
        }
        let mut next_call = self.calls;
        let said = read_parts(candidate, &mut next_call);
        let mut delta = Object::default();
        if !said.text.is_empty() {
            delta.insert("content".into(), said.text.into());
        }
        if !said.reasoning.is_empty() {
            delta.insert("reasoning_content".into(), said.reasoning.into());
        }
        if !said.calls.is_empty() {
            let calls: Vec<Json> = said
                .calls
                .into_iter()
                .zip(self.calls..)
                .map(|(mut call, index)| {
                    if let Some(o) = call.as_object_mut() {
                        o.insert("index".into(), index.into());
                    }
                    call
                })
                .collect();
            delta.insert("tool_calls".into(), Json::from(calls));
        }
        self.calls = next_call;
        if !delta.is_empty() {
            self.chunk(delta, None, out);
        }
        if let Some(reason) = member_str(candidate, "finishReason", "finish_reason") {
            self.finished = true;
            self.send_finish(finish_of(Some(reason), self.calls > 0), out);
        }
        Ok(())
    }

    /// The upstream stream ended cleanly: appends the finish chunk if none was sent yet and the
    /// final usage chunk (`"choices":[]` plus `usage`, zeros when Gemini reported none).
    /// Idempotent. Caller appends `data: [DONE]`.
    pub(crate) fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        let reason = if self.calls > 0 {
            Finish::ToolCalls
        } else {
            Finish::Stop
        };
        self.send_finish(reason, out);
        let counts = self.counts.unwrap_or_default();
        let usage = usage_object(&counts.usage, Some(counts.reasoning));
        let doc = chunk(&self.id, self.created, &self.model, json!([]), Some(usage));
        push_event(out, &doc);
    }

    /// True once a candidate carried a finishReason (or the prompt was blocked).
    pub(crate) fn finished(&self) -> bool {
        self.finished
    }

    /// Usage from the last `usageMetadata` seen.
    ///
    /// The proxy takes a stream's usage from here, the native counts (cache reads and writes
    /// included), rather than from the canonical chunks, which have no cache-write field.
    pub(crate) fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage)
    }
}

/// Rewrites a Gemini error body (`{"error":{"code","message","status"}}`) as an OpenAI error body
/// `{"error":{"message","type","param":null,"code"}}` (appended to `out`). The `type` follows the
/// HTTP status, the `code` is Gemini's status name in lower case. Unparseable input still yields
/// a valid one.
pub(crate) fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {
    let parsed = parse(body).ok();
    // `streamGenerateContent` without `alt=sse` wraps the error in an array.
    let err = parsed.as_ref().and_then(|v| {
        field(v, "error").or_else(|| {
            v.as_array()
                .and_then(|a| a.first())
                .and_then(|f| field(f, "error"))
        })
    });
    let message = match err
        .and_then(|e| e.get_str("message"))
        .filter(|m| !m.is_empty())
    {
        Some(m) => m.to_owned(),
        None => {
            let text = std::str::from_utf8(body).unwrap_or("").trim();
            if text.is_empty() {
                format!("The Gemini upstream answered HTTP {status}.")
            } else {
                format!(
                    "The Gemini upstream answered HTTP {status}: {}",
                    truncate(text, 200)
                )
            }
        }
    };
    // Gemini answers a bad API key with 400 INVALID_ARGUMENT; the detail says what it is.
    let bad_key = err
        .and_then(|e| e.get("details"))
        .and_then(|d| d.as_array())
        .is_some_and(|d| {
            d.iter()
                .any(|x| x.get_str("reason") == Some("API_KEY_INVALID"))
        });
    let (kind, code) = if bad_key {
        (Kind::Authentication, "invalid_api_key".to_owned())
    } else {
        let name = err
            .and_then(|e| e.get_str("status"))
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| grpc_status(status));
        (kind_for_status(status), name.to_ascii_lowercase())
    };
    write_error(out, &message, kind, &code);
}
