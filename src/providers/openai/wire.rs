//! The canonical vocabulary: the pieces of OpenAI's chat-completions wire that every other
//! family translates to and from: finish reasons, the usage object, the error type for a
//! status and the error body, tool calls, and the `chat.completion` / `chat.completion.chunk`
//! envelopes. Each is written once here, so a family maps only its own side of a table.
//!
//! Invariants: the shapes are exactly what OpenAI sends (member order included, since tests
//! and clients compare bodies); builders take values and never fail. Not here: a family's own
//! vocabulary (its `wire.rs`), reading request bodies (`ingress`).

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Kind;
use crate::json as jw;
use crate::tokens::Usage;

use crate::providers::shared::set;

/// Why a choice ended, as OpenAI's `finish_reason` says it. Each family maps its own reasons
/// onto these and back; what a family has no word for is `None` on the way back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// The model ended its turn (or hit a stop sequence).
    Stop,
    /// The output token limit cut the answer.
    Length,
    /// The turn ended to let the client run tool calls.
    ToolCalls,
    /// A safety system withheld or cut the answer.
    ContentFilter,
}

impl Finish {
    /// The `finish_reason` string.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::ToolCalls => "tool_calls",
            Finish::ContentFilter => "content_filter",
        }
    }

    /// A `finish_reason` string; the legacy `function_call` is a tool-call finish. `None` for
    /// anything else.
    pub(crate) fn parse(reason: &str) -> Option<Finish> {
        match reason {
            "stop" => Some(Finish::Stop),
            "length" => Some(Finish::Length),
            "tool_calls" | "function_call" => Some(Finish::ToolCalls),
            "content_filter" => Some(Finish::ContentFilter),
            _ => None,
        }
    }
}

/// Token counts as an OpenAI usage object carries them: the gateway's [`Usage`] plus the
/// reasoning part of the completion (which OpenAI counts inside `completion_tokens`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Prompt, completion, cache reads and writes.
    pub(crate) usage: Usage,
    /// `completion_tokens_details.reasoning_tokens`.
    pub(crate) reasoning: u64,
}

/// Reads an OpenAI usage object. `prompt_tokens_details.cache_write_tokens` is the gateway's
/// own member (see [`usage_object`]); absent counters are zero.
pub(crate) fn read_usage(u: &Json) -> Counts {
    let n = |v: Option<&Json>, k: &str| v.and_then(|v| v.get(k)).and_then(|n| n.as_u64());
    let prompt_details = u.get("prompt_tokens_details");
    Counts {
        usage: Usage {
            prompt: n(Some(u), "prompt_tokens").unwrap_or(0),
            completion: n(Some(u), "completion_tokens").unwrap_or(0),
            cached: n(prompt_details, "cached_tokens").unwrap_or(0),
            cache_write: n(prompt_details, "cache_write_tokens").unwrap_or(0),
        },
        reasoning: n(u.get("completion_tokens_details"), "reasoning_tokens").unwrap_or(0),
    }
}

/// OpenAI's usage object. `prompt_tokens_details.cache_write_tokens` (not an OpenAI member;
/// clients ignore it) appears only when a cache was written, so an Anthropic client can get it
/// back as `cache_creation_input_tokens`; `completion_tokens_details` only when `reasoning` is
/// given (a family that reports reasoning apart).
pub(crate) fn usage_object(u: &Usage, reasoning: Option<u64>) -> Json {
    let mut details = json!({"cached_tokens": u.cached});
    if u.cache_write > 0 {
        set(&mut details, "cache_write_tokens", u.cache_write.into());
    }
    let mut usage = json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt.saturating_add(u.completion),
        "prompt_tokens_details": details,
    });
    if let Some(r) = reasoning {
        set(
            &mut usage,
            "completion_tokens_details",
            json!({"reasoning_tokens": r}),
        );
    }
    usage
}

/// The OpenAI error type for an upstream's HTTP status.
pub(crate) fn kind_for_status(status: u16) -> Kind {
    match status {
        401 => Kind::Authentication,
        403 => Kind::Permission,
        429 => Kind::RateLimit,
        400..=499 => Kind::InvalidRequest,
        // 5xx, 529, and error bodies that came with a success status: the upstream failed.
        _ => Kind::Server,
    }
}

/// Appends an OpenAI error body `{"error":{"message","type","param":null,"code"}}`.
pub(crate) fn write_error(out: &mut Vec<u8>, message: &str, kind: Kind, code: &str) {
    out.extend_from_slice(b"{\"error\":{\"message\":");
    jw::write_str(out, message);
    out.extend_from_slice(b",\"type\":");
    jw::write_str(out, kind.as_str());
    out.extend_from_slice(b",\"param\":null,\"code\":");
    jw::write_str(out, code);
    out.extend_from_slice(b"}}");
}

/// One OpenAI tool call of a message (`arguments` is the JSON text of the input).
pub(crate) fn tool_call(id: &str, name: &str, arguments: String) -> Json {
    json!({
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    })
}

/// A whole `chat.completion` document.
pub(crate) fn completion(id: &str, created: u64, model: &str, choices: Json, usage: Json) -> Json {
    json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": choices,
        "usage": usage,
    })
}

/// A `chat.completion.chunk` document; `usage` is given only on the usage chunk (whose
/// `choices` is empty).
pub(crate) fn chunk(
    id: &str,
    created: u64,
    model: &str,
    choices: Json,
    usage: Option<Json>,
) -> Json {
    let mut doc = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": model,
        "choices": choices,
    });
    if let Some(u) = usage {
        set(&mut doc, "usage", u);
    }
    doc
}

/// Appends one OpenAI SSE event: `data: {json}\n\n`.
pub(crate) fn push_event(out: &mut Vec<u8>, v: &Json) {
    crate::providers::shared::sse_data(out, v, b"\n\n");
}
