//! Google Gemini wire family (Generative Language API v1beta, `models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`): translation between the gateway's canonical form
//! (OpenAI chat completions JSON) and Gemini's bodies, in both directions.
//!
//! * Upstream: the gateway calls a Gemini provider. [`encode_request`] turns a chat-completions
//!   request into a `GenerateContentRequest`; [`decode_response`], [`StreamDecoder`] and
//!   [`decode_error`] turn Gemini's answers back into OpenAI ones.
//! * Ingress: a Gemini-format client calls the gateway. [`ingress_request`] turns its
//!   `GenerateContentRequest` into a chat-completions request; [`egress_response`],
//!   [`StreamEncoder`] and [`error_body`] turn the gateway's OpenAI answers into Gemini ones.
//!
//! Invariants: pure functions and plain state machines: no I/O, no clock, no globals. Bodies come
//! from clients and upstreams, so nothing here panics on any input: bad input is a 400
//! ([`Error`]) on the request side and an `Err(String)` on the answer side. simd-json rewrites
//! what it parses, so every parse works on a copy. Gemini's proto-JSON accepts both lowerCamel
//! and snake_case member names, so every member read from a Gemini body accepts both spellings;
//! what this module writes uses lowerCamel.
//!
//! Canonical-form conventions: Gemini's `thoughtSignature` on a function call travels in the
//! OpenAI tool call as `extra_content.google.thought_signature` (the spelling Google's own
//! OpenAI-compatible endpoint uses), so multi-turn tool use with thinking models survives a
//! round trip through OpenAI-shaped clients.
//!
//! Not here: URLs, auth headers, splitting the upstream byte stream into SSE `data:` payloads,
//! `data: [DONE]`, picking the upstream, or pricing.

use std::collections::HashMap;

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::owned::Object;
use simd_json::prelude::*;

use crate::error::{Error, Kind, truncate};
use crate::tokens::Usage;

/// Signature Gemini documents as "skip validation", sent on a function call that carries none
/// (history produced by another model or a client that dropped it); Gemini 3 rejects a current
/// turn's function call without any signature.
const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Separator after each SSE event written for Gemini clients (what Google's endpoint sends).
const GEMINI_SSE_END: &[u8] = b"\r\n\r\n";

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

/// Parses a copy of `bytes` (simd-json rewrites its input while unescaping).
fn parse(bytes: &[u8]) -> Result<Json, String> {
    let mut copy = bytes.to_vec();
    simd_json::to_owned_value(&mut copy).map_err(|e| e.to_string())
}

/// A member that is present and not null, under either proto-JSON spelling.
fn member<'a>(v: &'a Json, camel: &str, snake: &str) -> Option<&'a Json> {
    v.get(camel)
        .filter(|x| !x.is_null())
        .or_else(|| v.get(snake).filter(|x| !x.is_null()))
}

/// A string member under either spelling.
fn member_str<'a>(v: &'a Json, camel: &str, snake: &str) -> Option<&'a str> {
    member(v, camel, snake).and_then(|x| x.as_str())
}

/// A present, non-null member of an OpenAI body.
fn field<'a>(v: &'a Json, key: &str) -> Option<&'a Json> {
    v.get(key).filter(|x| !x.is_null())
}

fn is_number(v: &Json) -> bool {
    v.cast_f64().is_some()
}

fn bad(code: &'static str, message: impl Into<std::borrow::Cow<'static, str>>) -> Error {
    Error::bad_request(code, message)
}

/// Appends one SSE event.
fn sse(out: &mut Vec<u8>, v: &Json, end: &[u8]) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.encode().as_bytes());
    out.extend_from_slice(end);
}

/// True for an SSE payload that carries nothing to translate.
fn is_blank_or_done(data: &[u8]) -> bool {
    let trimmed = data.trim_ascii();
    trimmed.is_empty() || trimmed == b"[DONE]"
}

/// The `message` of an error object inside an answer, if the answer is one.
fn error_message(v: &Json) -> Option<String> {
    let err = field(v, "error")?;
    Some(
        err.get_str("message")
            .map(str::to_owned)
            .unwrap_or_else(|| err.encode()),
    )
}

/// Parses tool-call `arguments` into the object Gemini's `args` needs. An empty string means no
/// arguments; an object already parsed is accepted as is.
fn args_object(arguments: Option<&Json>) -> Option<Json> {
    match arguments {
        None => Some(Json::from(Object::default())),
        Some(a) if a.is_null() => Some(Json::from(Object::default())),
        Some(a) if a.as_object().is_some() => Some(a.clone()),
        Some(a) => {
            let s = a.as_str()?;
            if s.trim().is_empty() {
                return Some(Json::from(Object::default()));
            }
            parse(s.as_bytes()).ok().filter(|v| v.as_object().is_some())
        }
    }
}

/// The thought signature an OpenAI tool call carries in `extra_content.google`.
fn signature_of(tool_call: &Json) -> Option<&str> {
    field(tool_call, "extra_content")
        .and_then(|e| field(e, "google"))
        .and_then(|g| g.get_str("thought_signature"))
}

fn extra_content(signature: &str) -> Json {
    json!({"google": {"thought_signature": signature}})
}

/// Token counts in both vocabularies: `usage` in the gateway's terms, plus the reasoning part
/// of `usage.completion` (Gemini reports it apart, OpenAI inside).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    usage: Usage,
    reasoning: u64,
}

/// OpenAI `usage` JSON.
fn openai_usage(c: &Counts) -> Json {
    json!({
        "prompt_tokens": c.usage.prompt,
        "completion_tokens": c.usage.completion,
        "total_tokens": c.usage.prompt.saturating_add(c.usage.completion),
        "prompt_tokens_details": {"cached_tokens": c.usage.cached},
        "completion_tokens_details": {"reasoning_tokens": c.reasoning}
    })
}

/// Gemini `usageMetadata` JSON; `candidatesTokenCount` excludes thoughts, as Gemini counts.
fn gemini_usage(c: &Counts) -> Json {
    let mut m = Object::default();
    m.insert("promptTokenCount".into(), c.usage.prompt.into());
    m.insert(
        "candidatesTokenCount".into(),
        c.usage.completion.saturating_sub(c.reasoning).into(),
    );
    m.insert(
        "totalTokenCount".into(),
        c.usage.prompt.saturating_add(c.usage.completion).into(),
    );
    if c.usage.cached > 0 {
        m.insert("cachedContentTokenCount".into(), c.usage.cached.into());
    }
    if c.reasoning > 0 {
        m.insert("thoughtsTokenCount".into(), c.reasoning.into());
    }
    Json::from(m)
}

/// Reads Gemini `usageMetadata`.
fn read_gemini_usage(meta: &Json) -> Counts {
    let n = |camel: &str, snake: &str| member(meta, camel, snake).and_then(|v| v.as_u64());
    let candidates = n("candidatesTokenCount", "candidates_token_count").unwrap_or(0);
    let thoughts = n("thoughtsTokenCount", "thoughts_token_count").unwrap_or(0);
    Counts {
        usage: Usage {
            prompt: n("promptTokenCount", "prompt_token_count").unwrap_or(0),
            completion: candidates.saturating_add(thoughts),
            cached: n("cachedContentTokenCount", "cached_content_token_count").unwrap_or(0),
            cache_write: 0,
        },
        reasoning: thoughts,
    }
}

/// Reads OpenAI `usage`.
fn read_openai_usage(u: &Json) -> Counts {
    let n = |v: Option<&Json>| v.and_then(|x| x.as_u64()).unwrap_or(0);
    Counts {
        usage: Usage {
            prompt: n(u.get("prompt_tokens")),
            completion: n(u.get("completion_tokens")),
            cached: n(u
                .get("prompt_tokens_details")
                .and_then(|d| d.get("cached_tokens"))),
            cache_write: 0,
        },
        reasoning: n(u
            .get("completion_tokens_details")
            .and_then(|d| d.get("reasoning_tokens"))),
    }
}

/// Gemini `finishReason` -> OpenAI `finish_reason`. A normal stop after function calls is
/// `tool_calls`, which is what OpenAI clients wait for before running tools.
fn openai_finish(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => "content_filter",
        Some("STOP") | None if has_calls => "tool_calls",
        _ => "stop",
    }
}

/// OpenAI `finish_reason` -> Gemini `finishReason`.
fn gemini_finish(reason: &str) -> &'static str {
    match reason {
        "stop" | "tool_calls" | "function_call" => "STOP",
        "length" => "MAX_TOKENS",
        "content_filter" => "SAFETY",
        _ => "OTHER",
    }
}

/// The gRPC status name Google uses for an HTTP status.
fn grpc_status(status: u16) -> &'static str {
    match status {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        500 => "INTERNAL",
        501 => "UNIMPLEMENTED",
        502 | 503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        s if (400..500).contains(&s) => "FAILED_PRECONDITION",
        _ => "UNKNOWN",
    }
}

fn kind_for_status(status: u16) -> Kind {
    match status {
        401 => Kind::Authentication,
        403 => Kind::Permission,
        429 => Kind::RateLimit,
        400..=499 => Kind::InvalidRequest,
        _ => Kind::Server,
    }
}

// ---------------------------------------------------------------------------------------------
// JSON Schema <-> Gemini Schema
// ---------------------------------------------------------------------------------------------

/// Keywords of Gemini's `Schema` (an OpenAPI 3.0 subset) copied as they are; the API rejects
/// a request naming any member it does not know (`$schema`, `additionalProperties`, `$ref`…),
/// which JSON Schemas from OpenAI clients and MCP tools routinely carry.
const SCHEMA_KEEP: &[&str] = &[
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "propertyOrdering",
    "default",
    "minimum",
    "maximum",
];

/// A JSON Schema as a Gemini `Schema`: unknown keywords dropped, `type: [t, "null"]` as
/// `type: t, nullable: true`, `oneOf` as `anyOf`, a string `const` as a one-value `enum`.
fn to_gemini_schema(s: &Json) -> Json {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let mut o = Object::default();
    for (k, v) in obj.iter() {
        match k.as_str() {
            "type" => {
                if let Some(list) = v.as_array() {
                    let mut nullable = false;
                    let mut first = None;
                    for t in list.iter().filter_map(|t| t.as_str()) {
                        if t == "null" {
                            nullable = true;
                        } else if first.is_none() {
                            first = Some(t);
                        }
                    }
                    if let Some(t) = first {
                        o.insert("type".into(), t.into());
                    }
                    if nullable {
                        o.insert("nullable".into(), true.into());
                    }
                } else {
                    o.insert("type".into(), v.clone());
                }
            }
            "properties" => {
                if let Some(props) = v.as_object() {
                    let mut p = Object::default();
                    for (name, sub) in props.iter() {
                        p.insert(name.clone(), to_gemini_schema(sub));
                    }
                    o.insert("properties".into(), Json::from(p));
                }
            }
            "items" => {
                o.insert("items".into(), to_gemini_schema(v));
            }
            "anyOf" | "oneOf" => {
                if let Some(list) = v.as_array() {
                    let mapped: Vec<Json> = list.iter().map(to_gemini_schema).collect();
                    o.insert("anyOf".into(), Json::from(mapped));
                }
            }
            // A non-string `const` has no Gemini equivalent and is dropped.
            "const" if v.as_str().is_some() => {
                o.insert("enum".into(), Json::from(vec![v.clone()]));
            }
            key if SCHEMA_KEEP.contains(&key) => {
                o.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    if o.contains_key("enum") && !o.contains_key("type") {
        o.insert("type".into(), "string".into());
    }
    Json::from(o)
}

/// Function parameters for Gemini, or `None` for a function without any: Gemini rejects an
/// OBJECT schema whose `properties` is empty.
fn gemini_parameters(p: &Json) -> Option<Json> {
    let schema = to_gemini_schema(p);
    let is_object = schema
        .get_str("type")
        .is_some_and(|t| t.eq_ignore_ascii_case("object"));
    let empty = schema
        .get("properties")
        .and_then(|x| x.as_object())
        .is_none_or(|x| x.is_empty());
    if schema.as_object().is_none() || (is_object && empty) {
        None
    } else {
        Some(schema)
    }
}

/// A Gemini `Schema` as JSON Schema: types lowercased (Gemini accepts `OBJECT`, JSON Schema does
/// not), `nullable: true` as a `"null"` type, Gemini-only `propertyOrdering` dropped.
fn to_json_schema(s: &Json) -> Json {
    let Some(obj) = s.as_object() else {
        return s.clone();
    };
    let nullable = obj.get("nullable").and_then(|n| n.as_bool()) == Some(true);
    let mut o = Object::default();
    for (k, v) in obj.iter() {
        match k.as_str() {
            "type" => {
                let t = v.as_str().map(str::to_ascii_lowercase);
                match (t, nullable) {
                    (Some(t), true) => o.insert("type".into(), json!([t, "null"])),
                    (Some(t), false) => o.insert("type".into(), t.into()),
                    (None, _) => o.insert("type".into(), v.clone()),
                };
            }
            "nullable" | "propertyOrdering" => {}
            "properties" => {
                if let Some(props) = v.as_object() {
                    let mut p = Object::default();
                    for (name, sub) in props.iter() {
                        p.insert(name.clone(), to_json_schema(sub));
                    }
                    o.insert("properties".into(), Json::from(p));
                }
            }
            "items" => {
                o.insert("items".into(), to_json_schema(v));
            }
            "anyOf" => {
                if let Some(list) = v.as_array() {
                    let mapped: Vec<Json> = list.iter().map(to_json_schema).collect();
                    o.insert("anyOf".into(), Json::from(mapped));
                }
            }
            _ => {
                o.insert(k.clone(), v.clone());
            }
        }
    }
    Json::from(o)
}

// ---------------------------------------------------------------------------------------------
// Media
// ---------------------------------------------------------------------------------------------

/// `data:<mime>[;params];base64,<data>` -> (mime, data).
fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let meta = meta.strip_suffix(";base64")?;
    let mime = meta.split(';').next().unwrap_or(meta);
    (!mime.is_empty()).then_some((mime, data))
}

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

// ---------------------------------------------------------------------------------------------
// Upstream: OpenAI request -> Gemini request
// ---------------------------------------------------------------------------------------------

/// One Gemini `Content` being built.
struct Turn {
    role: &'static str,
    parts: Vec<Json>,
}

/// Appends parts as a turn of `role`, merging into the previous turn when it has the same role
/// (Gemini wants user and model turns to alternate; OpenAI allows runs of one role).
fn push_turn(turns: &mut Vec<Turn>, role: &'static str, parts: Vec<Json>) {
    if parts.is_empty() {
        return;
    }
    match turns.last_mut() {
        Some(last) if last.role == role => last.parts.extend(parts),
        _ => turns.push(Turn { role, parts }),
    }
}

/// The text of OpenAI `content`: a string, or its text (and refusal) parts joined.
fn content_text(content: Option<&Json>, at: usize) -> Result<String, Error> {
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
        let args = args_object(fc.get("arguments")).ok_or_else(|| {
            bad(
                "invalid_tool_arguments",
                format!("messages[{at}].function_call.arguments must be a JSON object string."),
            )
        })?;
        parts.push(json!({
            "functionCall": {"name": name, "args": args},
            "thoughtSignature": SKIP_SIGNATURE
        }));
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
        let args = args_object(function.and_then(|f| f.get("arguments"))).ok_or_else(|| {
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
        let mut part = Object::default();
        part.insert("functionCall".into(), json!({"name": name, "args": args}));
        // Gemini validates the signature of the first call of a step only.
        let signature = signature_of(call).or((k == 0).then_some(SKIP_SIGNATURE));
        if let Some(sig) = signature {
            part.insert("thoughtSignature".into(), sig.into());
        }
        parts.push(Json::from(part));
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
        if !is_number(v) {
            return Err(bad(
                "invalid_parameter",
                format!("`{from}` must be a number."),
            ));
        }
        dst.insert(to.into(), v.clone());
    }
    Ok(())
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
    copy_number(chat, "n", &mut g, "candidateCount")?;
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

// ---------------------------------------------------------------------------------------------
// Upstream: Gemini response -> OpenAI response
// ---------------------------------------------------------------------------------------------

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
            let args = fc
                .get("args")
                .filter(|a| !a.is_null())
                .map_or_else(|| "{}".to_owned(), |a| a.encode());
            let id = match fc.get_str("id").filter(|id| !id.is_empty()) {
                Some(id) => id.to_owned(),
                None => format!("call_{next_call}"),
            };
            *next_call += 1;
            let mut call = Object::default();
            call.insert("id".into(), id.into());
            call.insert("type".into(), "function".into());
            call.insert("function".into(), json!({"name": name, "arguments": args}));
            if let Some(sig) = member_str(part, "thoughtSignature", "thought_signature") {
                call.insert("extra_content".into(), extra_content(sig));
            }
            said.calls.push(Json::from(call));
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
pub fn decode_response(
    body: &[u8],
    model: &str,
    id: &str,
    created: u64,
    out: &mut Vec<u8>,
) -> Result<Usage, String> {
    let v = parse(body).map_err(|e| format!("Gemini response is not JSON: {e}"))?;
    if v.as_object().is_none() {
        return Err("Gemini response is not a JSON object".into());
    }
    if let Some(msg) = error_message(&v) {
        return Err(format!("Gemini error: {msg}"));
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
            let finish = openai_finish(member_str(c, "finishReason", "finish_reason"), has_calls);
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
            "finish_reason": "content_filter"
        }));
    } else {
        return Err("Gemini response has neither candidates nor promptFeedback".into());
    }
    let doc = json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": openai_usage(&counts)
    });
    out.extend_from_slice(doc.encode().as_bytes());
    Ok(counts.usage)
}

/// Translates Gemini SSE (`alt=sse`: each `data:` is a GenerateContentResponse) into OpenAI
/// chunks. Follows the first candidate (Gemini streams one unless asked for more).
#[derive(Debug)]
pub struct StreamDecoder {
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
    pub fn new(model: &str, id: &str, created: u64) -> Self {
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

    fn chunk(&mut self, mut delta: Object, finish: Option<&str>, out: &mut Vec<u8>) {
        if !self.started {
            delta.insert("role".into(), "assistant".into());
            self.started = true;
        }
        let doc = json!({
            "id": self.id.as_str(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_str(),
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
        });
        sse(out, &doc, b"\n\n");
    }

    fn send_finish(&mut self, reason: &str, out: &mut Vec<u8>) {
        if !self.finish_sent {
            self.finish_sent = true;
            self.chunk(Object::default(), Some(reason), out);
        }
    }

    /// One SSE `data:` payload. Appends zero or more OpenAI events (`data: {json}\n\n`).
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if is_blank_or_done(data) {
            return Ok(());
        }
        let v = parse(data).map_err(|e| format!("Gemini stream event is not JSON: {e}"))?;
        if let Some(msg) = error_message(&v) {
            return Err(format!("Gemini stream error: {msg}"));
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
        let candidate = v
            .get("candidates")
            .and_then(|c| c.as_array())
            .and_then(|c| {
                c.iter()
                    .find(|x| x.get("index").and_then(|i| i.as_u64()).unwrap_or(0) == 0)
            });
        let Some(candidate) = candidate else {
            if member(&v, "promptFeedback", "prompt_feedback")
                .is_some_and(|f| member(f, "blockReason", "block_reason").is_some())
            {
                self.finished = true;
                self.send_finish("content_filter", out);
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
            let mapped = openai_finish(Some(reason), self.calls > 0);
            self.send_finish(mapped, out);
        }
        Ok(())
    }

    /// The upstream stream ended cleanly: appends the finish chunk if none was sent yet and the
    /// final usage chunk (`"choices":[]` plus `usage`, zeros when Gemini reported none).
    /// Idempotent. Caller appends `data: [DONE]`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.done = true;
        let reason = if self.calls > 0 { "tool_calls" } else { "stop" };
        self.send_finish(reason, out);
        let doc = json!({
            "id": self.id.as_str(),
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model.as_str(),
            "choices": [],
            "usage": openai_usage(&self.counts.unwrap_or_default())
        });
        sse(out, &doc, b"\n\n");
    }

    /// True once a candidate carried a finishReason (or the prompt was blocked).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Usage from the last `usageMetadata` seen.
    pub fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage)
    }
}

/// Rewrites a Gemini error body (`{"error":{"code","message","status"}}`) as an OpenAI error body
/// `{"error":{"message","type","param":null,"code"}}` (appended to `out`). The `type` follows the
/// HTTP status, the `code` is Gemini's status name in lower case. Unparseable input still yields
/// a valid one.
pub fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {
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
    let doc = json!({"error": {
        "message": message,
        "type": kind.as_str(),
        "param": null,
        "code": code
    }});
    out.extend_from_slice(doc.encode().as_bytes());
}

// ---------------------------------------------------------------------------------------------
// Ingress: Gemini request -> OpenAI request
// ---------------------------------------------------------------------------------------------

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

/// Translates a GenerateContentRequest for `model` into an OpenAI chat-completions body with
/// `"model": model` and `stream` set; streaming also gets `stream_options.include_usage`.
///
/// Function results become `tool` messages placed right after the assistant message that made
/// the calls (OpenAI requires that order), with the `tool_call_id` of the call they answer
/// (by `id` when given, else the earliest unanswered call of the same name). Calls without an
/// id get `call_<n>`. Only function tools translate; other Gemini tools are a 400.
pub fn ingress_request(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(bad(
            "empty_body",
            "The request body is empty; send a GenerateContentRequest with `contents`.",
        ));
    }
    let v = parse(body).map_err(|e| {
        bad(
            "invalid_json",
            format!("We could not parse the JSON body of your request ({e})."),
        )
    })?;
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
                        let id = match fc.get_str("id").filter(|i| !i.is_empty()) {
                            Some(id) => id.to_owned(),
                            None => format!("call_{next_call}"),
                        };
                        next_call += 1;
                        let args = fc
                            .get("args")
                            .filter(|a| !a.is_null())
                            .map_or_else(|| "{}".to_owned(), |a| a.encode());
                        let mut call = Object::default();
                        call.insert("id".into(), id.as_str().into());
                        call.insert("type".into(), "function".into());
                        call.insert("function".into(), json!({"name": name, "arguments": args}));
                        if let Some(sig) = member_str(part, "thoughtSignature", "thought_signature")
                        {
                            call.insert("extra_content".into(), extra_content(sig));
                        }
                        calls.push(Json::from(call));
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
        if !is_number(v) {
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

// ---------------------------------------------------------------------------------------------
// Ingress: OpenAI response -> Gemini response
// ---------------------------------------------------------------------------------------------

/// A Gemini `functionCall` part for an OpenAI tool call.
fn function_call_part(call: &Json) -> Option<Json> {
    let function = call.get("function")?;
    let name = function.get_str("name").filter(|n| !n.is_empty())?;
    let args = args_object(function.get("arguments"))?;
    let mut fc = Object::default();
    if let Some(id) = call.get_str("id").filter(|i| !i.is_empty()) {
        fc.insert("id".into(), id.into());
    }
    fc.insert("name".into(), name.into());
    fc.insert("args".into(), args);
    let mut part = Object::default();
    part.insert("functionCall".into(), Json::from(fc));
    if let Some(sig) = signature_of(call) {
        part.insert("thoughtSignature".into(), sig.into());
    }
    Some(Json::from(part))
}

/// Rewrites an OpenAI `chat.completion` body as a GenerateContentResponse (appended to `out`).
pub fn egress_response(openai: &[u8], out: &mut Vec<u8>) -> Result<Usage, String> {
    let v = parse(openai).map_err(|e| format!("OpenAI response is not JSON: {e}"))?;
    if let Some(msg) = error_message(&v) {
        return Err(format!("upstream error: {msg}"));
    }
    let choices = v
        .get("choices")
        .and_then(|c| c.as_array())
        .ok_or("OpenAI response has no `choices` array")?;
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
            parts.push(function_call_part(call).ok_or(
                "OpenAI tool call without a function name or with arguments that are not a JSON object",
            )?);
        }
        let mut cand = Object::default();
        cand.insert("content".into(), json!({"role": "model", "parts": parts}));
        if let Some(reason) = choice.get_str("finish_reason") {
            cand.insert("finishReason".into(), gemini_finish(reason).into());
        }
        let index = choice
            .get("index")
            .and_then(|i| i.as_u64())
            .unwrap_or(pos as u64);
        cand.insert("index".into(), index.into());
        candidates.push(Json::from(cand));
    }
    let counts = field(&v, "usage")
        .map(read_openai_usage)
        .unwrap_or_default();
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
pub struct StreamEncoder {
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
    pub fn new() -> Self {
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
        sse(out, &self.envelope(Some(cand), None), GEMINI_SSE_END);
    }

    /// Sends the collected tool calls as one event. `strict`: arguments that are not a JSON
    /// object are an error; otherwise (stream end) they are sent as an empty object.
    fn flush_calls(&mut self, strict: bool, out: &mut Vec<u8>) -> Result<(), String> {
        if self.calls.is_empty() {
            return Ok(());
        }
        let calls = std::mem::take(&mut self.calls);
        let mut parts = Vec::with_capacity(calls.len());
        for c in &calls {
            let raw = Json::from(c.arguments.as_str());
            let args = match args_object(Some(&raw)) {
                Some(a) => a,
                None if strict => {
                    return Err(format!(
                        "tool call `{}` streamed arguments that are not a JSON object",
                        truncate(&c.name, 60)
                    ));
                }
                None => Json::from(Object::default()),
            };
            let mut fc = Object::default();
            if !c.id.is_empty() {
                fc.insert("id".into(), c.id.as_str().into());
            }
            fc.insert("name".into(), c.name.as_str().into());
            fc.insert("args".into(), args);
            let mut part = Object::default();
            part.insert("functionCall".into(), Json::from(fc));
            if let Some(sig) = &c.signature {
                part.insert("thoughtSignature".into(), sig.as_str().into());
            }
            parts.push(Json::from(part));
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
        sse(out, &doc, GEMINI_SSE_END);
    }

    /// One OpenAI chunk payload (the JSON after `data: `). Appends zero or more Gemini events.
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if self.done || is_blank_or_done(data) {
            return Ok(());
        }
        let v = parse(data).map_err(|e| format!("OpenAI chunk is not JSON: {e}"))?;
        if let Some(msg) = error_message(&v) {
            return Err(format!("upstream stream error: {msg}"));
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
            self.counts = Some(read_openai_usage(u));
        }
        let choice = v.get("choices").and_then(|c| c.as_array()).and_then(|c| {
            c.iter()
                .find(|x| x.get("index").and_then(|i| i.as_u64()).unwrap_or(0) == 0)
        });
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
                self.finish = Some(gemini_finish(reason));
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
    /// Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        // Lenient flush: the stream is over and there is no caller left to fail.
        let _ = self.flush_calls(false, out);
        self.final_event(out);
    }

    /// Usage from the upstream's usage chunk, once seen.
    pub fn usage(&self) -> Option<Usage> {
        self.counts.map(|c| c.usage)
    }
}

/// Gemini-shaped error body for a gateway error: `{"error":{"code":status,"message","status":<GRPC
/// status name>}}` (400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404
/// NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500 INTERNAL, 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED).
pub fn error_body(err: &Error) -> Vec<u8> {
    json!({"error": {
        "code": err.status,
        "message": err.message.as_ref(),
        "status": grpc_status(err.status)
    }})
    .encode()
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn j(bytes: &[u8]) -> Json {
        parse(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
    }

    fn js(s: &str) -> Json {
        j(s.as_bytes())
    }

    fn encode(chat: &str) -> Json {
        let mut out = Vec::new();
        encode_request(&js(chat), &mut out).unwrap();
        j(&out)
    }

    fn encode_err(chat: &str) -> Error {
        let mut out = Vec::new();
        encode_request(&js(chat), &mut out).unwrap_err()
    }

    /// Splits SSE output into its JSON payloads, checking every event's framing.
    fn events(out: &[u8], end: &str) -> Vec<Json> {
        let text = std::str::from_utf8(out).unwrap();
        assert!(text.is_empty() || text.ends_with(end), "{text:?}");
        text.split(end)
            .filter(|e| !e.is_empty())
            .map(|e| js(e.strip_prefix("data: ").unwrap()))
            .collect()
    }

    #[test]
    fn encode_roles_system_merging_and_generation_config() {
        let got = encode(
            r#"{"model":"gemini-2.0-flash","stream":true,"messages":[
                {"role":"system","content":"You are a cat."},
                {"role":"developer","content":[{"type":"text","text":"Answer briefly."}]},
                {"role":"user","content":"Hello"},
                {"role":"user","content":[{"type":"text","text":"Are you there?"}]},
                {"role":"assistant","content":"Meow."},
                {"role":"user","content":"Why?"}],
              "temperature":0.7,"top_p":0.9,"max_tokens":100,"max_completion_tokens":200,
              "stop":"END","n":2,"seed":42,"presence_penalty":0.5,"frequency_penalty":0.25,
              "response_format":{"type":"json_object"}}"#,
        );
        let want = js(r#"{
            "systemInstruction":{"parts":[{"text":"You are a cat."},{"text":"Answer briefly."}]},
            "contents":[
                {"role":"user","parts":[{"text":"Hello"},{"text":"Are you there?"}]},
                {"role":"model","parts":[{"text":"Meow."}]},
                {"role":"user","parts":[{"text":"Why?"}]}],
            "generationConfig":{"temperature":0.7,"topP":0.9,"maxOutputTokens":200,
                "stopSequences":["END"],"candidateCount":2,"seed":42,"presencePenalty":0.5,
                "frequencyPenalty":0.25,"responseMimeType":"application/json"}}"#);
        assert_eq!(got, want);
        // max_tokens alone, stop as a list, no config members at all.
        let got = encode(
            r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":5,"stop":["a","b"]}"#,
        );
        assert_eq!(
            got["generationConfig"],
            js(r#"{"maxOutputTokens":5,"stopSequences":["a","b"]}"#)
        );
        let got = encode(r#"{"messages":[{"role":"user","content":"x"}]}"#);
        assert_eq!(
            got,
            js(r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}]}"#)
        );
    }

    #[test]
    fn encode_images_audio_and_files() {
        let got = encode(
            r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"Compare"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
                {"type":"image_url","image_url":{"url":"https://example.com/a/cat.WEBP?size=2#x","detail":"high"}},
                {"type":"image_url","image_url":"http://example.com/photo"},
                {"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}},
                {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}
            ]}]}"#,
        );
        let want = js(r#"[
            {"text":"Compare"},
            {"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}},
            {"fileData":{"mimeType":"image/webp","fileUri":"https://example.com/a/cat.WEBP?size=2#x"}},
            {"fileData":{"mimeType":"image/jpeg","fileUri":"http://example.com/photo"}},
            {"inlineData":{"mimeType":"audio/wav","data":"UklGRg=="}},
            {"inlineData":{"mimeType":"application/pdf","data":"JVBERi0="}}]"#);
        assert_eq!(got["contents"][0]["parts"], want);

        for bad_url in ["ftp://example.com/a.png", "data:image/png,notbase64"] {
            let e = encode_err(&format!(
                r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{bad_url}"}}}}]}}]}}"#
            ));
            assert_eq!((e.status, e.code), (400, "invalid_image_url"), "{bad_url}");
        }
        let e = encode_err(
            r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
        );
        assert_eq!(e.code, "unsupported_content");
        let e =
            encode_err(r#"{"messages":[{"role":"user","content":[{"type":"video","video":{}}]}]}"#);
        assert_eq!(e.code, "unsupported_content");
    }

    #[test]
    fn encode_tool_calls_results_and_declarations() {
        let got = encode(
            r#"{"messages":[
                {"role":"user","content":"Weather in Paris and London?"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                     "extra_content":{"google":{"thought_signature":"sig-a"}}},
                    {"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"city\":\"London\"}"}}]},
                {"role":"tool","tool_call_id":"call_a","content":"{\"temp\":21}"},
                {"role":"tool","tool_call_id":"call_b","content":"noon"},
                {"role":"user","content":"Thanks"},
                {"role":"assistant","content":"Calling again.","tool_calls":[
                    {"id":"call_c","type":"function","function":{"name":"get_time","arguments":""}}]},
                {"role":"tool","tool_call_id":"call_c","content":[{"type":"text","text":"[1,2]"}]}],
              "tools":[
                {"type":"function","function":{"name":"get_weather","description":"Weather for a city",
                  "parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
                    "properties":{"city":{"type":"string","description":"City name"}},
                    "required":["city"],"additionalProperties":false}}},
                {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}],
              "tool_choice":{"type":"function","function":{"name":"get_weather"}}}"#,
        );
        let want = js(r#"{
            "contents":[
                {"role":"user","parts":[{"text":"Weather in Paris and London?"}]},
                {"role":"model","parts":[
                    {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"sig-a"},
                    {"functionCall":{"name":"get_time","args":{"city":"London"}}}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"get_weather","response":{"temp":21}}},
                    {"functionResponse":{"name":"get_time","response":{"content":"noon"}}},
                    {"text":"Thanks"}]},
                {"role":"model","parts":[
                    {"text":"Calling again."},
                    {"functionCall":{"name":"get_time","args":{}},"thoughtSignature":"skip_thought_signature_validator"}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"get_time","response":{"content":"[1,2]"}}}]}],
            "tools":[{"functionDeclarations":[
                {"name":"get_weather","description":"Weather for a city","parameters":{"type":"object",
                  "properties":{"city":{"type":"string","description":"City name"}},"required":["city"]}},
                {"name":"get_time"}]}],
            "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}}}"#);
        assert_eq!(got, want);
    }

    #[test]
    fn encode_tool_choice_modes_and_legacy_functions() {
        for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
            let got = encode(&format!(
                r#"{{"messages":[{{"role":"user","content":"x"}}],"tool_choice":"{choice}"}}"#
            ));
            assert_eq!(
                got["toolConfig"],
                json!({"functionCallingConfig": {"mode": mode}}),
                "{choice}"
            );
        }
        let got = encode(
            r#"{"messages":[{"role":"user","content":"x"},
                {"role":"assistant","function_call":{"name":"f","arguments":"{}"}},
                {"role":"function","name":"f","content":"done"}],
              "functions":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}],
              "function_call":{"name":"f"}}"#,
        );
        assert_eq!(
            got["tools"],
            js(
                r#"[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}]}]"#
            )
        );
        assert_eq!(
            got["toolConfig"],
            js(r#"{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}}"#)
        );
        assert_eq!(
            got["contents"],
            js(r#"[{"role":"user","parts":[{"text":"x"}]},
                {"role":"model","parts":[{"functionCall":{"name":"f","args":{}},
                    "thoughtSignature":"skip_thought_signature_validator"}]},
                {"role":"user","parts":[{"functionResponse":{"name":"f","response":{"content":"done"}}}]}]"#)
        );
        let e =
            encode_err(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#);
        assert_eq!(e.code, "invalid_tool_choice");
    }

    #[test]
    fn encode_json_schema_is_reduced_to_gemini_schema() {
        let got = encode(
            r#"{"messages":[{"role":"user","content":"x"}],
              "response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{
                "type":"object","additionalProperties":false,"$defs":{},
                "properties":{
                    "name":{"type":["string","null"],"minLength":1},
                    "kind":{"const":"cat"},
                    "tags":{"type":"array","items":{"type":"string","additionalProperties":false}},
                    "either":{"oneOf":[{"type":"integer","exclusiveMinimum":0},{"type":"string"}]}},
                "required":["name","kind","tags","either"]}}}}"#,
        );
        let want = js(r#"{"responseMimeType":"application/json","responseSchema":{
            "type":"object",
            "properties":{
                "name":{"type":"string","nullable":true,"minLength":1},
                "kind":{"type":"string","enum":["cat"]},
                "tags":{"type":"array","items":{"type":"string"}},
                "either":{"anyOf":[{"type":"integer"},{"type":"string"}]}},
            "required":["name","kind","tags","either"]}}"#);
        assert_eq!(got["generationConfig"], want);
    }

    #[test]
    fn encode_rejects_what_gemini_cannot_take() {
        let cases = [
            (r#"{"model":"m"}"#, "invalid_messages"),
            (r#"[]"#, "invalid_body"),
            (
                r#"{"messages":[{"role":"system","content":"only rules"}]}"#,
                "invalid_messages",
            ),
            (
                r#"{"messages":[{"content":"no role"}]}"#,
                "invalid_messages",
            ),
            (
                r#"{"messages":[{"role":"robot","content":"x"}]}"#,
                "invalid_messages",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#,
                "invalid_tool_arguments",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
                "invalid_tool_arguments",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"nowhere","content":"r"}]}"#,
                "invalid_tool_message",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
                "invalid_parameter",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}"#,
                "unsupported_tool",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
                "invalid_response_format",
            ),
            (
                r#"{"messages":[{"role":"user","content":42}]}"#,
                "invalid_content",
            ),
        ];
        for (body, code) in cases {
            let e = encode_err(body);
            assert_eq!(
                (e.status, e.kind, e.code),
                (400, Kind::InvalidRequest, code),
                "{body}"
            );
        }
    }

    #[test]
    fn decode_text_thoughts_and_usage() {
        let body = br#"{"candidates":[{"content":{"parts":[
                {"text":"Let me think.","thought":true},{"text":"Hello"},{"text":" world"}],
                "role":"model"},"finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"totalTokenCount":25,
                "thoughtsTokenCount":10,"cachedContentTokenCount":4},
            "modelVersion":"gemini-2.5-flash","responseId":"resp-1"}"#;
        let mut out = Vec::new();
        let usage = decode_response(body, "asked", "chatcmpl-x", 1700000000, &mut out).unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt: 10,
                completion: 15,
                cached: 4,
                cache_write: 0
            }
        );
        let want = js(
            r#"{"id":"resp-1","object":"chat.completion","created":1700000000,
            "model":"gemini-2.5-flash",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello world",
                "reasoning_content":"Let me think."},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":10,"completion_tokens":15,"total_tokens":25,
                "prompt_tokens_details":{"cached_tokens":4},
                "completion_tokens_details":{"reasoning_tokens":10}}}"#,
        );
        assert_eq!(j(&out), want);
    }

    #[test]
    fn decode_function_calls_and_fallback_ids() {
        let body = br#"{"candidates":[{"content":{"role":"model","parts":[
                {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},
                {"functionCall":{"id":"fc-9","name":"get_time"}}]},
            "finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":8,"totalTokenCount":28}}"#;
        let mut out = Vec::new();
        let usage = decode_response(body, "gemini-2.0-flash", "chatcmpl-7", 5, &mut out).unwrap();
        assert_eq!((usage.prompt, usage.completion, usage.cached), (20, 8, 0));
        let want = js(
            r#"{"id":"chatcmpl-7","object":"chat.completion","created":5,
            "model":"gemini-2.0-flash",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
                "content":null,"tool_calls":[
                {"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                 "extra_content":{"google":{"thought_signature":"c2ln"}}},
                {"id":"fc-9","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}],
            "usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28,
                "prompt_tokens_details":{"cached_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":0}}}"#,
        );
        assert_eq!(j(&out), want);
    }

    #[test]
    fn decode_finish_reasons() {
        let cases = [
            ("STOP", "stop"),
            ("MAX_TOKENS", "length"),
            ("SAFETY", "content_filter"),
            ("RECITATION", "content_filter"),
            ("BLOCKLIST", "content_filter"),
            ("PROHIBITED_CONTENT", "content_filter"),
            ("SPII", "content_filter"),
            ("OTHER", "stop"),
            ("MALFORMED_FUNCTION_CALL", "stop"),
            ("LANGUAGE", "stop"),
        ];
        for (gemini, openai) in cases {
            let body = format!(
                r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"x"}}]}},"finishReason":"{gemini}"}}]}}"#
            );
            let mut out = Vec::new();
            decode_response(body.as_bytes(), "m", "i", 0, &mut out).unwrap();
            assert_eq!(j(&out)["choices"][0]["finish_reason"], openai, "{gemini}");
        }
        // Function calls cut off by the token limit stay `length`.
        let body = br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]},"finishReason":"MAX_TOKENS"}]}"#;
        let mut out = Vec::new();
        decode_response(body, "m", "i", 0, &mut out).unwrap();
        assert_eq!(j(&out)["choices"][0]["finish_reason"], "length");
    }

    #[test]
    fn decode_blocked_prompt_and_bad_bodies() {
        let body = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},
            "usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash"}"#;
        let mut out = Vec::new();
        let usage = decode_response(body, "m", "chatcmpl-1", 9, &mut out).unwrap();
        assert_eq!((usage.prompt, usage.completion), (7, 0));
        let got = j(&out);
        assert_eq!(
            got["choices"],
            js(
                r#"[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]"#
            )
        );
        assert_eq!(got["model"], "gemini-2.0-flash");

        for body in [
            &b"not json"[..],
            b"[]",
            b"{}",
            br#"{"error":{"code":500,"message":"boom","status":"INTERNAL"}}"#,
        ] {
            let mut out = Vec::new();
            assert!(decode_response(body, "m", "i", 0, &mut out).is_err());
        }
    }

    #[test]
    fn stream_decode_text_calls_finish_and_usage() {
        let mut d = StreamDecoder::new("asked", "chatcmpl-s", 77);
        let mut out = Vec::new();
        let evs: [&[u8]; 5] = [
            br#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4},"modelVersion":"gemini-2.0-flash","responseId":"r1"}"#,
            br#"{"candidates":[{"content":{"parts":[{"text":"lo","thought":false}],"role":"model"},"index":0}],"responseId":"other"}"#,
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{"x":1}}}],"role":"model"}}]}"#,
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"b","args":{}}}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":9,"totalTokenCount":12}}"#,
            b"  ",
        ];
        for e in evs {
            d.event(e, &mut out).unwrap();
        }
        assert!(d.finished());
        d.finish(&mut out);
        let len = out.len();
        d.finish(&mut out);
        assert_eq!(out.len(), len, "finish is idempotent");

        let got = events(&out, "\n\n");
        let chunk = |choices: &str| {
            js(&format!(
                r#"{{"id":"r1","object":"chat.completion.chunk","created":77,"model":"gemini-2.0-flash","choices":{choices}}}"#
            ))
        };
        let want = vec![
            chunk(
                r#"[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]"#,
            ),
            chunk(r#"[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]"#),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}}]},"finish_reason":null}]"#,
            ),
            chunk(
                r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":null}]"#,
            ),
            chunk(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
            js(
                r#"{"id":"r1","object":"chat.completion.chunk","created":77,"model":"gemini-2.0-flash","choices":[],
                "usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12,
                "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
            ),
        ];
        assert_eq!(got, want);
        assert_eq!(
            d.usage(),
            Some(Usage {
                prompt: 3,
                completion: 9,
                cached: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn stream_decode_thoughts_length_and_unfinished_streams() {
        let mut d = StreamDecoder::new("m", "id", 1);
        let mut out = Vec::new();
        d.event(
            br#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true}]}}]}"#,
            &mut out,
        )
        .unwrap();
        d.event(
            br#"{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"MAX_TOKENS"}]}"#,
            &mut out,
        )
        .unwrap();
        let got = events(&out, "\n\n");
        assert_eq!(
            got[0]["choices"][0]["delta"],
            js(r#"{"role":"assistant","reasoning_content":"hmm"}"#)
        );
        assert_eq!(got[1]["choices"][0]["delta"], js(r#"{"content":"ok"}"#));
        assert_eq!(got[2]["choices"][0]["finish_reason"], "length");
        assert_eq!(got.len(), 3);

        // The upstream ended without a finishReason: finish supplies one, and a zero usage.
        let mut d = StreamDecoder::new("m", "id", 1);
        let mut out = Vec::new();
        d.event(
            br#"{"candidates":[{"content":{"parts":[{"text":"par"}]}}]}"#,
            &mut out,
        )
        .unwrap();
        assert!(!d.finished());
        d.finish(&mut out);
        let got = events(&out, "\n\n");
        assert_eq!(got.len(), 3);
        assert_eq!(got[1]["choices"][0]["finish_reason"], "stop");
        assert_eq!(got[2]["usage"]["total_tokens"], 0);
        assert_eq!(d.usage(), None);

        // A blocked prompt: the only chunk carries the role and content_filter.
        let mut d = StreamDecoder::new("m", "id", 1);
        let mut out = Vec::new();
        d.event(br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":4}}"#, &mut out)
            .unwrap();
        assert!(d.finished());
        let got = events(&out, "\n\n");
        assert_eq!(
            got[0]["choices"],
            js(r#"[{"index":0,"delta":{"role":"assistant"},"finish_reason":"content_filter"}]"#)
        );
        assert_eq!(d.usage().map(|u| u.prompt), Some(4));

        let mut d = StreamDecoder::new("m", "id", 1);
        let mut out = Vec::new();
        let e = d
            .event(
                br#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
                &mut out,
            )
            .unwrap_err();
        assert!(e.contains("overloaded"), "{e}");
        assert!(d.event(b"{trunc", &mut out).is_err());
        assert!(out.is_empty());
    }

    #[test]
    fn decode_error_bodies() {
        let mut out = Vec::new();
        decode_error(
            429,
            br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
            &mut out,
        );
        assert_eq!(
            j(&out),
            js(
                r#"{"error":{"message":"Resource has been exhausted (e.g. check quota).","type":"rate_limit_error","param":null,"code":"resource_exhausted"}}"#
            )
        );

        let mut out = Vec::new();
        decode_error(
            400,
            br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
            &mut out,
        );
        assert_eq!(
            j(&out),
            js(
                r#"{"error":{"message":"API key not valid. Please pass a valid API key.","type":"authentication_error","param":null,"code":"invalid_api_key"}}"#
            )
        );

        let mut out = Vec::new();
        decode_error(
            404,
            br#"[{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}]"#,
            &mut out,
        );
        assert_eq!(
            j(&out),
            js(
                r#"{"error":{"message":"models/x is not found","type":"invalid_request_error","param":null,"code":"not_found"}}"#
            )
        );

        let mut out = Vec::new();
        decode_error(502, b"<html>Bad \"Gateway\"</html>", &mut out);
        assert_eq!(
            j(&out),
            js(
                r#"{"error":{"message":"The Gemini upstream answered HTTP 502: <html>Bad \"Gateway\"</html>","type":"server_error","param":null,"code":"unavailable"}}"#
            )
        );

        let mut out = Vec::new();
        decode_error(403, &[0xff, 0xfe], &mut out);
        assert_eq!(
            j(&out),
            js(
                r#"{"error":{"message":"The Gemini upstream answered HTTP 403.","type":"permission_error","param":null,"code":"permission_denied"}}"#
            )
        );
    }

    fn ingress(body: &str, stream: bool) -> Json {
        j(&ingress_request(body.as_bytes(), "gemini-2.0-flash", stream).unwrap())
    }

    #[test]
    fn ingress_snake_case_request_with_media_tools_and_config() {
        let got = ingress(
            r#"{"system_instruction":{"parts":[{"text":"You are a cat."},{"text":"Be brief."}]},
              "contents":[
                {"role":"user","parts":[{"text":"What is in this picture?"},
                    {"inline_data":{"mime_type":"image/jpeg","data":"/9j/4AAQ"}}]},
                {"role":"model","parts":[{"text":"thinking","thought":true},
                    {"functionCall":{"name":"lookup","args":{"q":"cat"}},"thoughtSignature":"c2ln"}]},
                {"role":"user","parts":[{"functionResponse":{"name":"lookup","response":{"result":"a cat"}}}]},
                {"parts":[{"text":"And this?"},{"file_data":{"mime_type":"image/png","file_uri":"https://example.com/b.png"}}]}],
              "generation_config":{"temperature":1,"topP":0.5,"topK":40,"maxOutputTokens":50,
                "stopSequences":["x"],"candidateCount":1,"seed":3,"presencePenalty":0.1,"frequencyPenalty":0.2,
                "responseMimeType":"application/json",
                "responseSchema":{"type":"OBJECT","properties":{"a":{"type":"STRING","nullable":true}},"propertyOrdering":["a"]}},
              "tools":[{"functionDeclarations":[{"name":"lookup","description":"Look things up",
                "parameters":{"type":"OBJECT","properties":{"q":{"type":"STRING"}},"required":["q"]}}]}],
              "toolConfig":{"functionCallingConfig":{"mode":"AUTO"}},
              "safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]}"#,
            true,
        );
        let want = js(
            r#"{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},
            "messages":[
                {"role":"system","content":"You are a cat.\nBe brief."},
                {"role":"user","content":[{"type":"text","text":"What is in this picture?"},
                    {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function",
                    "function":{"name":"lookup","arguments":"{\"q\":\"cat\"}"},
                    "extra_content":{"google":{"thought_signature":"c2ln"}}}]},
                {"role":"tool","tool_call_id":"call_0","content":"{\"result\":\"a cat\"}"},
                {"role":"user","content":[{"type":"text","text":"And this?"},
                    {"type":"image_url","image_url":{"url":"https://example.com/b.png"}}]}],
            "temperature":1,"top_p":0.5,"max_tokens":50,"stop":["x"],"n":1,"seed":3,
            "presence_penalty":0.1,"frequency_penalty":0.2,
            "response_format":{"type":"json_schema","json_schema":{"name":"response","schema":
                {"type":"object","properties":{"a":{"type":["string","null"]}}}}},
            "tools":[{"type":"function","function":{"name":"lookup","description":"Look things up",
                "parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],
            "tool_choice":"auto"}"#,
        );
        assert_eq!(got, want);
    }

    #[test]
    fn ingress_pairs_results_with_calls_and_orders_tool_messages_first() {
        let got = ingress(
            r#"{"contents":[
                {"role":"user","parts":[{"text":"go"}]},
                {"role":"model","parts":[
                    {"functionCall":{"name":"f","args":{"n":1}}},
                    {"functionCall":{"id":"given","name":"g","args":{}}},
                    {"functionCall":{"name":"f","args":{"n":2}}}]},
                {"role":"user","parts":[
                    {"text":"here you are"},
                    {"functionResponse":{"id":"given","name":"g","response":{"content":"G"}}},
                    {"functionResponse":{"name":"f","response":{"output":1}}},
                    {"functionResponse":{"name":"f","response":{"output":2}}},
                    {"functionResponse":{"name":"orphan","response":{}}}]}],
              "generationConfig":{"responseMimeType":"application/json"},
              "tools":[{"function_declarations":[{"name":"f"},{"name":"g"},{"name":"h"}]}],
              "tool_config":{"function_calling_config":{"mode":"ANY","allowed_function_names":["f","g"]}}}"#,
            false,
        );
        let want = js(r#"{"model":"gemini-2.0-flash","stream":false,
            "messages":[
                {"role":"user","content":"go"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_0","type":"function","function":{"name":"f","arguments":"{\"n\":1}"}},
                    {"id":"given","type":"function","function":{"name":"g","arguments":"{}"}},
                    {"id":"call_2","type":"function","function":{"name":"f","arguments":"{\"n\":2}"}}]},
                {"role":"tool","tool_call_id":"given","content":"G"},
                {"role":"tool","tool_call_id":"call_0","content":"{\"output\":1}"},
                {"role":"tool","tool_call_id":"call_2","content":"{\"output\":2}"},
                {"role":"tool","tool_call_id":"call_3","content":"{}"},
                {"role":"user","content":"here you are"}],
            "response_format":{"type":"json_object"},
            "tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"g"}}],
            "tool_choice":"required"}"#);
        assert_eq!(got, want);

        let got = ingress(
            r#"{"contents":[{"parts":[{"text":"x"}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}},
                "tools":[{"functionDeclarations":[{"name":"f"}]}]}"#,
            false,
        );
        assert_eq!(
            got["tool_choice"],
            js(r#"{"type":"function","function":{"name":"f"}}"#)
        );
        let got = ingress(
            r#"{"contents":[{"parts":[{"text":"x"}]}],"toolConfig":{"functionCallingConfig":{"mode":"NONE"}}}"#,
            false,
        );
        assert_eq!(got["tool_choice"], "none");
    }

    #[test]
    fn ingress_rejects_bad_requests() {
        let cases = [
            ("", "empty_body"),
            ("{nope", "invalid_json"),
            ("[1]", "invalid_body"),
            ("{}", "invalid_contents"),
            (r#"{"contents":[]}"#, "invalid_contents"),
            (r#"{"contents":{"role":"user"}}"#, "invalid_contents"),
            (r#"{"contents":[{"role":"user"}]}"#, "invalid_contents"),
            (
                r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#,
                "invalid_contents",
            ),
            (
                r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"video/mp4","data":"AA"}}]}]}"#,
                "unsupported_content",
            ),
            (
                r#"{"contents":[{"parts":[{"fileData":{"mimeType":"application/pdf","fileUri":"gs://b/x.pdf"}}]}]}"#,
                "unsupported_content",
            ),
            (
                r#"{"contents":[{"parts":[{"executableCode":{"code":"1"}}]}]}"#,
                "unsupported_content",
            ),
            (
                r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"googleSearch":{}}]}"#,
                "unsupported_tool",
            ),
            (
                r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"temperature":"warm"}}"#,
                "invalid_parameter",
            ),
        ];
        for (body, code) in cases {
            let e = ingress_request(body.as_bytes(), "m", false).unwrap_err();
            assert_eq!((e.status, e.code), (400, code), "{body}");
        }
    }

    #[test]
    fn egress_full_completion() {
        let body = br#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Sunny.",
                "reasoning_content":"check","tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                "finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,
                "prompt_tokens_details":{"cached_tokens":10},
                "completion_tokens_details":{"reasoning_tokens":2}}}"#;
        let mut out = Vec::new();
        let usage = egress_response(body, &mut out).unwrap();
        assert_eq!(
            usage,
            Usage {
                prompt: 30,
                completion: 12,
                cached: 10,
                cache_write: 0
            }
        );
        let want = js(r#"{"candidates":[{"content":{"role":"model","parts":[
                {"text":"check","thought":true},{"text":"Sunny."},
                {"functionCall":{"id":"call_1","name":"get_weather","args":{"city":"Paris"}}}]},
                "finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":10,"totalTokenCount":42,
                "cachedContentTokenCount":10,"thoughtsTokenCount":2},
            "modelVersion":"gpt-4o","responseId":"chatcmpl-9"}"#);
        assert_eq!(j(&out), want);

        for (openai, gemini) in [
            ("stop", "STOP"),
            ("length", "MAX_TOKENS"),
            ("tool_calls", "STOP"),
            ("content_filter", "SAFETY"),
        ] {
            let body = format!(
                r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"x"}},"finish_reason":"{openai}"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#
            );
            let mut out = Vec::new();
            egress_response(body.as_bytes(), &mut out).unwrap();
            let got = j(&out);
            assert_eq!(got["candidates"][0]["finishReason"], gemini, "{openai}");
            assert_eq!(
                got["usageMetadata"],
                js(r#"{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}"#)
            );
        }

        for body in [
            &b"nope"[..],
            br#"{"error":{"message":"quota","type":"rate_limit_error"}}"#,
            br#"{"id":"x"}"#,
            br#"{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}}]}"#,
        ] {
            let mut out = Vec::new();
            assert!(egress_response(body, &mut out).is_err());
        }
    }

    #[test]
    fn stream_encode_text_tool_calls_and_final_usage() {
        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        let head =
            r#""id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o""#;
        let chunks = [
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"content":"Hel"}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"content":"lo"}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"f","arguments":""}}}}]}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"a\""}}}}]}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":":1}}"}}}}]}},"finish_reason":null}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls"}}]}}"#
            ),
            format!(
                r#"{{{head},"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}}}"#
            ),
            "[DONE]".to_owned(),
        ];
        for c in &chunks {
            e.chunk(c.as_bytes(), &mut out).unwrap();
        }
        let len = out.len();
        e.finish(&mut out);
        e.finish(&mut out);
        assert_eq!(out.len(), len, "the usage chunk already closed the stream");
        let tail = r#","modelVersion":"gpt-4o","responseId":"chatcmpl-1"}"#;
        let want: Vec<Json> = [
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"id":"call_1","name":"f","args":{"a":1}}}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],
                "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7,"totalTokenCount":12}"#,
        ]
        .iter()
        .map(|s| js(&format!("{s}{tail}")))
        .collect();
        assert_eq!(events(&out, "\r\n\r\n"), want);
        assert_eq!(
            e.usage(),
            Some(Usage {
                prompt: 5,
                completion: 7,
                cached: 0,
                cache_write: 0
            })
        );
    }

    #[test]
    fn stream_encode_finish_without_usage_and_errors() {
        let mut e = StreamEncoder::default();
        let mut out = Vec::new();
        e.chunk(
            br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"reasoning_content":"r","content":"t"}}]}"#,
            &mut out,
        )
        .unwrap();
        e.chunk(
            br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
            &mut out,
        )
        .unwrap();
        assert_eq!(e.usage(), None);
        e.finish(&mut out);
        let got = events(&out, "\r\n\r\n");
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0]["candidates"][0]["content"]["parts"],
            js(r#"[{"text":"r","thought":true},{"text":"t"}]"#)
        );
        assert_eq!(got[1]["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(got[1]["usageMetadata"]["totalTokenCount"], 0);

        let mut e = StreamEncoder::new();
        let mut out = Vec::new();
        let bad_args = br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x","function":{"name":"f","arguments":"{"}}]},"finish_reason":"tool_calls"}]}"#;
        assert!(e.chunk(bad_args, &mut out).is_err());
        assert!(
            e.chunk(br#"{"error":{"message":"upstream died"}}"#, &mut out)
                .unwrap_err()
                .contains("upstream died")
        );
        assert!(e.chunk(b"{", &mut out).is_err());
    }

    #[test]
    fn error_body_uses_grpc_status_names() {
        let cases = [
            (400, "INVALID_ARGUMENT"),
            (401, "UNAUTHENTICATED"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ];
        for (status, name) in cases {
            let err = Error::new(status, kind_for_status(status), "x", "what \"went\" wrong");
            assert_eq!(
                j(&error_body(&err)),
                json!({"error": {"code": status, "message": "what \"went\" wrong", "status": name}})
            );
        }
    }

    #[test]
    fn round_trip_openai_to_gemini_and_back() {
        let original = js(r#"{"model":"gemini-2.0-flash","messages":[
            {"role":"system","content":"You are a weather bot."},
            {"role":"user","content":[{"type":"text","text":"Weather here?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                 "extra_content":{"google":{"thought_signature":"c2ln"}}},
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
            {"role":"tool","tool_call_id":"call_0","content":"{\"temp\":21}"},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"},
            {"role":"assistant","content":"Paris 21, Rome sunny."},
            {"role":"user","content":"Thanks!"}],
          "temperature":0.2,"max_tokens":256,"stop":["END"],
          "tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather",
            "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
          "tool_choice":"required"}"#);
        let mut gemini = Vec::new();
        encode_request(&original, &mut gemini).unwrap();
        let back = j(&ingress_request(&gemini, "gemini-2.0-flash", false).unwrap());
        // Ids do not travel (Gemini pairs calls and results by name); ingress re-mints them as
        // `call_<n>` in call order, which is how the original named them. The first call
        // carries its own signature, so no skip-validation one is added: the only difference
        // from the original is the explicit `stream`.
        let mut want = original.clone();
        if let Some(o) = want.as_object_mut() {
            o.insert("stream".into(), false.into());
        }
        assert_eq!(back, want);
    }

    /// Truncations and corruptions of valid bodies must come back as errors, never panics.
    #[test]
    fn no_input_panics() {
        let samples: [&[u8]; 4] = [
            br#"{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":[1,{"b":null}]}},"thoughtSignature":"s"}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"x":1}}},{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":"ARRAY","items":{"type":"STRING"}}}}}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f","g"]}}}"#,
            br#"{"candidates":[{"content":{"parts":[{"text":"a","thought":true},{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2},"promptFeedback":{"blockReason":"SAFETY"}}"#,
            br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0,"id":"i","function":{"name":"f","arguments":"{}"}}]},"message":{"content":"y","tool_calls":[{"id":"i","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#,
            br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:;base64,"}},{"type":"text","text":"\u00e9"}]},{"role":"assistant","tool_calls":[{"id":"i","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"i","content":"{\"a\":1}"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":["object","null"],"properties":{"a":{"const":1}}}}}],"tool_choice":{"type":"function"},"stop":[1]}"#,
        ];
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for s in samples {
            for cut in 0..=s.len() {
                variants.push(s.get(..cut).unwrap_or(s).to_vec());
            }
            for (k, _) in s.iter().enumerate().step_by(7) {
                for b in [b'"', b'{', b']', b'0', 0xff] {
                    let mut v = s.to_vec();
                    if let Some(x) = v.get_mut(k) {
                        *x = b;
                    }
                    variants.push(v);
                }
            }
        }
        for v in &variants {
            let mut out = Vec::new();
            let _ = ingress_request(v, "m", true);
            let _ = decode_response(v, "m", "i", 0, &mut out);
            let _ = egress_response(v, &mut out);
            decode_error(500, v, &mut out);
            let mut d = StreamDecoder::new("m", "i", 0);
            let _ = d.event(v, &mut out);
            d.finish(&mut out);
            let mut e = StreamEncoder::new();
            let _ = e.chunk(v, &mut out);
            e.finish(&mut out);
            if let Ok(chat) = parse(v) {
                let _ = encode_request(&chat, &mut out);
            }
        }
    }
}
