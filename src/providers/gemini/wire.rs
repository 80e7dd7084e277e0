//! Gemini wire facts both directions share: proto-JSON member spellings, the usage metadata,
//! finish reasons against the canonical [`Finish`], the gRPC status names Google pairs with
//! HTTP statuses, JSON Schema <-> Gemini `Schema`, function calls and their thought
//! signatures, the error body, and a `Model` as `GET /v1beta/models` lists it.
//!
//! Invariants: Gemini's proto-JSON accepts both lowerCamel and snake_case member names, so every
//! member read from a Gemini body accepts both spellings ([`member`]); what is written uses
//! lowerCamel. The status table follows Google's `google.rpc.Code` HTTP mapping and is the one
//! the mock upstream answers with. Not here: translating requests or answers (`upstream`,
//! `ingress`).

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::owned::Object;
use simd_json::prelude::*;

use crate::error::Error;
use crate::providers::openai::wire::{Counts, Finish, tool_call};
use crate::providers::shared::{field, set};
use crate::tokens::Usage;

/// Signature Gemini documents as "skip validation", sent on a function call that carries none
/// (history produced by another model or a client that dropped it); Gemini 3 rejects a current
/// turn's function call without any signature.
pub(crate) const SKIP_SIGNATURE: &str = "skip_thought_signature_validator";

/// Separator after each SSE event written for Gemini clients (what Google's endpoint sends).
pub(crate) const SSE_END: &[u8] = b"\r\n\r\n";

/// A member that is present and not null, under either proto-JSON spelling.
pub(crate) fn member<'a>(v: &'a Json, camel: &str, snake: &str) -> Option<&'a Json> {
    v.get(camel)
        .filter(|x| !x.is_null())
        .or_else(|| v.get(snake).filter(|x| !x.is_null()))
}

/// A string member under either spelling.
pub(crate) fn member_str<'a>(v: &'a Json, camel: &str, snake: &str) -> Option<&'a str> {
    member(v, camel, snake).and_then(|x| x.as_str())
}

/// True for an SSE payload that carries nothing to translate.
pub(crate) fn is_blank_or_done(data: &[u8]) -> bool {
    let trimmed = data.trim_ascii();
    trimmed.is_empty() || trimmed == b"[DONE]"
}

/// The `message` of an error object inside an answer, if the answer is one.
pub(crate) fn error_message(v: &Json) -> Option<String> {
    let err = field(v, "error")?;
    Some(
        err.get_str("message")
            .map(str::to_owned)
            .unwrap_or_else(|| err.encode()),
    )
}

/// The thought signature an OpenAI tool call carries in `extra_content.google`.
pub(crate) fn signature_of(tool_call: &Json) -> Option<&str> {
    field(tool_call, "extra_content")
        .and_then(|e| field(e, "google"))
        .and_then(|g| g.get_str("thought_signature"))
}

/// The canonical form's `extra_content` carrying a Gemini thought signature (the spelling
/// Google's own OpenAI-compatible endpoint uses).
pub(crate) fn extra_content(signature: &str) -> Json {
    json!({"google": {"thought_signature": signature}})
}

/// Gemini `usageMetadata` JSON; `candidatesTokenCount` excludes thoughts, as Gemini counts.
pub(crate) fn gemini_usage(c: &Counts) -> Json {
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
pub(crate) fn read_gemini_usage(meta: &Json) -> Counts {
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

/// Gemini `finishReason` -> the canonical finish. A normal stop after function calls is a
/// tool-call finish, which is what OpenAI clients wait for before running tools.
pub(crate) fn finish_of(reason: Option<&str>, has_calls: bool) -> Finish {
    match reason {
        Some("MAX_TOKENS") => Finish::Length,
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY",
        ) => Finish::ContentFilter,
        Some("STOP") | None if has_calls => Finish::ToolCalls,
        _ => Finish::Stop,
    }
}

/// The canonical finish (`None`: a reason OpenAI does not define) -> Gemini `finishReason`.
pub(crate) fn finish_reason(finish: Option<Finish>) -> &'static str {
    match finish {
        Some(Finish::Stop | Finish::ToolCalls) => "STOP",
        Some(Finish::Length) => "MAX_TOKENS",
        Some(Finish::ContentFilter) => "SAFETY",
        None => "OTHER",
    }
}

/// The status name (`google.rpc.Code`) Google pairs with an HTTP status. Google's table maps
/// codes to statuses (500 INTERNAL, 501 UNIMPLEMENTED, 503 UNAVAILABLE, 504
/// DEADLINE_EXCEEDED, …), not back, and has no entry for 502. A 502 from the gateway means the
/// upstream failed and a retry may succeed, which is UNAVAILABLE's meaning (and what gRPC's
/// own HTTP-to-status mapping gives 502), not INTERNAL's "something is broken here". Any other
/// 4xx is FAILED_PRECONDITION, anything else UNKNOWN.
pub(crate) fn grpc_status(status: u16) -> &'static str {
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
pub(crate) fn to_gemini_schema(s: &Json) -> Json {
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
pub(crate) fn gemini_parameters(p: &Json) -> Option<Json> {
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
pub(crate) fn to_json_schema(s: &Json) -> Json {
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

/// A Gemini error body `{"error":{"code":status,"message","status":<grpc_status>}}` as a value
/// (the mock adds `details` to it).
pub(crate) fn error_value(status: u16, message: &str) -> Json {
    json!({"error": {
        "code": status,
        "message": message,
        "status": grpc_status(status)
    }})
}

/// Gemini-shaped error body for a gateway error (see [`error_value`]): 400 INVALID_ARGUMENT,
/// 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED, 500
/// INTERNAL, 502 and 503 UNAVAILABLE, 504 DEADLINE_EXCEEDED.
pub(crate) fn error_body(err: &Error) -> Vec<u8> {
    error_value(err.status, &err.message).encode().into_bytes()
}

/// The id of a Gemini function call in the canonical form: its own, or `call_<n>` with `n`
/// counted by `next_call` (which counts every call, with an id or not).
pub(crate) fn call_id(fc: &Json, next_call: &mut u64) -> String {
    let id = match fc.get_str("id").filter(|id| !id.is_empty()) {
        Some(id) => id.to_owned(),
        None => format!("call_{next_call}"),
    };
    *next_call += 1;
    id
}

/// A Gemini `functionCall` part (`fc` inside `part`) as a canonical tool call; its thought
/// signature travels in `extra_content`.
pub(crate) fn openai_call(part: &Json, fc: &Json, name: &str, id: &str) -> Json {
    let args = fc
        .get("args")
        .filter(|a| !a.is_null())
        .map_or_else(|| "{}".to_owned(), |a| a.encode());
    let mut call = tool_call(id, name, args);
    if let Some(sig) = member_str(part, "thoughtSignature", "thought_signature") {
        set(&mut call, "extra_content", extra_content(sig));
    }
    call
}

/// A Gemini `functionCall` part; the id goes along only where Gemini takes it (answers to
/// Gemini clients), never upstream, where Gemini pairs calls and results by name.
pub(crate) fn function_call_part(
    id: Option<&str>,
    name: &str,
    args: Json,
    signature: Option<&str>,
) -> Json {
    let mut fc = Object::default();
    if let Some(id) = id.filter(|i| !i.is_empty()) {
        fc.insert("id".into(), id.into());
    }
    fc.insert("name".into(), name.into());
    fc.insert("args".into(), args);
    let mut part = Object::default();
    part.insert("functionCall".into(), Json::from(fc));
    if let Some(sig) = signature {
        part.insert("thoughtSignature".into(), sig.into());
    }
    Json::from(part)
}

/// One Gemini `Model` for `GET /v1beta/models` (appended to `out`): `name` as
/// `models/{name}`, the methods an embedding model or a generative one serves, and the token
/// limits when known (0: left out).
pub(crate) fn model_json(out: &mut Vec<u8>, name: &str, input: u32, output: u32, embedding: bool) {
    use crate::json as jw;
    out.extend_from_slice(b"{\"name\":");
    jw::write_str(out, &format!("models/{name}"));
    out.extend_from_slice(b",\"baseModelId\":");
    jw::write_str(out, name);
    out.extend_from_slice(b",\"version\":\"gateway\",\"displayName\":");
    jw::write_str(out, name);
    for (key, n) in [("inputTokenLimit", input), ("outputTokenLimit", output)] {
        if n > 0 {
            out.push(b',');
            jw::write_key(out, key);
            jw::write_u64(out, u64::from(n));
        }
    }
    out.extend_from_slice(if embedding {
        b",\"supportedGenerationMethods\":[\"embedContent\",\"batchEmbedContents\"]}"
    } else {
        b",\"supportedGenerationMethods\":[\"generateContent\",\"streamGenerateContent\",\"countTokens\"]}"
    });
}
