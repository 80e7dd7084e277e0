//! Anthropic Messages wire facts both directions share: the usage counters and their object,
//! the stop reasons against the canonical [`Finish`], the error type for a status and the
//! error body, and the SSE event framing (`event: <type>\ndata: {json}\n\n`).
//!
//! Invariants: the tables follow Anthropic's documentation (docs.anthropic.com, "Errors",
//! "Handling stop reasons"); the mock upstream uses them too, so the mock and the gateway
//! cannot drift apart. Not here: translating requests or answers (`upstream`, `ingress`).

use simd_json::OwnedValue;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;
use crate::json as jw;
use crate::providers::openai::wire::Finish;
use crate::tokens::Usage;

/// Default `max_tokens` when the OpenAI request gave none (Anthropic requires it).
pub(crate) const DEFAULT_MAX_TOKENS: u64 = 4096;

/// Separator between system texts joined into Anthropic's single top-level `system` and back.
pub(crate) const SYSTEM_JOIN: &str = "\n\n";

/// Anthropic's usage counters as reported (input excludes cache reads and writes).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawUsage {
    input: u64,
    output: u64,
    cache_read: u64,
    cache_creation: u64,
}

impl RawUsage {
    /// Takes every counter present in `u` (later events carry cumulative totals).
    pub(crate) fn read(&mut self, u: Option<&OwnedValue>) {
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

    /// The counters in the gateway's terms: the prompt includes cache reads and writes.
    pub(crate) fn usage(&self) -> Usage {
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

/// Anthropic's `input_tokens` for a usage: the prompt without cache reads and writes.
pub(crate) fn input_tokens(u: &Usage) -> u64 {
    u.prompt
        .saturating_sub(u.cached)
        .saturating_sub(u.cache_write)
}

/// Anthropic's usage object.
pub(crate) fn usage_object(u: &Usage) -> OwnedValue {
    json!({
        "input_tokens": input_tokens(u),
        "output_tokens": u.completion,
        "cache_read_input_tokens": u.cached,
        "cache_creation_input_tokens": u.cache_write,
    })
}

/// Anthropic `stop_reason` -> the canonical finish.
pub(crate) fn finish_of(stop: Option<&str>) -> Finish {
    match stop {
        Some("max_tokens" | "model_context_window_exceeded") => Finish::Length,
        Some("tool_use") => Finish::ToolCalls,
        Some("refusal") => Finish::ContentFilter,
        // end_turn, stop_sequence, pause_turn, and anything newer: the turn ended normally.
        _ => Finish::Stop,
    }
}

/// The canonical finish (`None`: unknown or absent) -> Anthropic `stop_reason`.
pub(crate) fn stop_reason(finish: Option<Finish>, has_tools: bool) -> &'static str {
    match finish {
        Some(Finish::Length) => "max_tokens",
        Some(Finish::ToolCalls) => "tool_use",
        Some(Finish::ContentFilter) => "refusal",
        // Some servers say "stop" after tool calls; Anthropic clients key on tool_use to run
        // the tools, so the calls decide.
        _ if has_tools => "tool_use",
        _ => "end_turn",
    }
}

/// An Anthropic `message` object: the whole answer, or (with empty `content` and no stop
/// reason) the one a stream's `message_start` carries.
pub(crate) fn message(
    id: &str,
    model: &str,
    content: OwnedValue,
    stop_reason: Option<&str>,
    usage: OwnedValue,
) -> OwnedValue {
    json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": null,
        "usage": usage,
    })
}

/// The data of a stream's `message_start` event: the message so far, without content.
pub(crate) fn message_start(id: &str, model: &str, usage: OwnedValue) -> OwnedValue {
    json!({
        "type": "message_start",
        "message": message(id, model, json!([]), None, usage),
    })
}

/// The Anthropic error `type` for an HTTP status, as Anthropic's error documentation lists
/// them (the mock upstream answers with the same table).
pub(crate) fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        500..=599 => "api_error",
        _ => "invalid_request_error",
    }
}

/// An Anthropic error body: `{"type":"error","error":{"type":<type for the status>,"message"}}`.
pub(crate) fn error_json(status: u16, message: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + message.len());
    out.extend_from_slice(b"{\"type\":\"error\",\"error\":{\"type\":");
    jw::write_str(&mut out, error_type(status));
    out.extend_from_slice(b",\"message\":");
    jw::write_str(&mut out, message);
    out.extend_from_slice(b"}}");
    out
}

/// The Anthropic-shaped error body for a gateway error (see [`error_json`]).
pub(crate) fn error_body(err: &Error) -> Vec<u8> {
    error_json(err.status, &err.message)
}

/// Appends an Anthropic SSE event.
pub(crate) fn emit(out: &mut Vec<u8>, name: &str, v: &OwnedValue) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(v.encode().as_bytes());
    out.extend_from_slice(b"\n\n");
}
