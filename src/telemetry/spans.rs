//! A usage record with span data → OTLP spans, per the OpenTelemetry GenAI semantic
//! conventions: one SERVER span for the request (`{operation} {requested model}`) and one CLIENT
//! span per upstream attempt, its child (`{operation} {upstream model}`).
//!
//! Invariants: attribute values come from the record (config names, the catalog, counts) — the
//! client's content only with `capture_content`; nothing here does I/O. 4xx and 5xx answers
//! are errors: `error.type` plus status ERROR (a gateway request that did not get an answer
//! failed as a GenAI operation, whatever HTTP server conventions say of 4xx).

use super::otlp::{KIND_CLIENT, KIND_SERVER, KeyValue, STATUS_ERROR, Span, Status, Value};
use crate::usage::{Record, Traced};

/// The spans of one traced request: the server span first, then one per attempt.
pub(crate) fn spans(r: &Record, t: &Traced, out: &mut Vec<Span>) {
    let ctx = &t.context;
    let op = t.operation;
    let mut a: Vec<KeyValue> = Vec::with_capacity(24);
    let s = |v: &str| Value::StringValue(v.to_string());
    a.push(KeyValue::new("gen_ai.operation.name", s(op)));
    let last = t.attempts.last().map(|x| t.attempt_names(x));
    if let Some((_, _, kind, _)) = last.filter(|l| !l.2.is_empty()) {
        a.push(KeyValue::new(
            "gen_ai.provider.name",
            s(provider_name(kind)),
        ));
    }
    a.push(KeyValue::new("gen_ai.request.model", s(&r.requested)));
    if !r.model().is_empty() {
        a.push(KeyValue::new("gen_ai.response.model", s(r.model())));
    }
    if let Some(u) = r.usage {
        a.push(KeyValue::new("gen_ai.usage.input_tokens", int(u.prompt)));
        a.push(KeyValue::new(
            "gen_ai.usage.output_tokens",
            int(u.completion),
        ));
        a.push(KeyValue::new(
            "smart_router.usage_estimated",
            Value::BoolValue(r.usage_estimated),
        ));
    }
    if let Some(m) = t.max_tokens {
        a.push(KeyValue::new(
            "gen_ai.request.max_tokens",
            int(u64::from(m)),
        ));
    }
    if let Some(x) = t.temperature {
        a.push(KeyValue::new(
            "gen_ai.request.temperature",
            Value::DoubleValue(f64::from(x)),
        ));
    }
    if !r.channel().is_empty() {
        a.push(KeyValue::new("smart_router.channel", s(r.channel())));
        a.push(KeyValue::new("smart_router.provider", s(r.provider())));
    }
    a.push(KeyValue::new(
        "smart_router.attempts",
        int(u64::from(r.attempts)),
    ));
    if let Some(o) = r.overhead_ms {
        a.push(KeyValue::new(
            "smart_router.overhead_ms",
            Value::DoubleValue(f64::from(o)),
        ));
    }
    if let Some(c) = r.cost {
        a.push(KeyValue::new("smart_router.cost", Value::DoubleValue(c)));
    }
    if let Some(st) = &t.strategy {
        a.push(KeyValue::new("smart_router.strategy", s(st)));
    }
    a.push(KeyValue::new("smart_router.endpoint", s(r.endpoint)));
    a.push(KeyValue::new(
        "smart_router.request_id",
        s(r.request_id.as_str()),
    ));
    a.push(KeyValue::new(
        "smart_router.stream",
        Value::BoolValue(r.stream),
    ));
    if let Some(k) = &r.client {
        a.push(KeyValue::new("smart_router.client", s(k)));
    }
    a.push(KeyValue::new(
        "http.response.status_code",
        int(u64::from(r.status)),
    ));
    if let Some(c) = &t.content {
        a.push(KeyValue::new("gen_ai.input.messages", s(&messages(c))));
    }
    let status = (r.status >= 400).then(|| {
        // The last attempt's failure says more than the status, when the answer is its.
        let kind = t
            .attempts
            .last()
            .and_then(|x| x.failure)
            .filter(|_| r.status >= 500)
            .map_or_else(|| r.status.to_string(), str::to_string);
        a.push(KeyValue::new(
            "error.type",
            Value::StringValue(kind.clone()),
        ));
        Status {
            message: kind,
            code: STATUS_ERROR,
        }
    });
    out.push(Span {
        trace_id: ctx.trace_id.to_vec(),
        span_id: ctx.span_id.to_vec(),
        parent_span_id: ctx.parent.map_or_else(Vec::new, |p| p.to_vec()),
        name: format!("{op} {}", r.requested),
        kind: KIND_SERVER,
        start_time_unix_nano: t.start_ns,
        end_time_unix_nano: t.end_ns,
        attributes: a,
        status,
    });
    for x in &t.attempts {
        let (channel, provider, kind, model) = t.attempt_names(x);
        let mut a = vec![
            KeyValue::new("gen_ai.operation.name", s(op)),
            KeyValue::new("gen_ai.provider.name", s(provider_name(kind))),
            KeyValue::new("gen_ai.request.model", s(model)),
            KeyValue::new("smart_router.channel", s(channel)),
            KeyValue::new("smart_router.provider", s(provider)),
        ];
        if x.status != 0 {
            a.push(KeyValue::new(
                "http.response.status_code",
                int(u64::from(x.status)),
            ));
        }
        let status = x.failure.map(|f| {
            a.push(KeyValue::new("error.type", s(f)));
            Status {
                message: f.to_string(),
                code: STATUS_ERROR,
            }
        });
        out.push(Span {
            trace_id: ctx.trace_id.to_vec(),
            span_id: x.span_id.to_vec(),
            parent_span_id: ctx.span_id.to_vec(),
            name: format!("{op} {model}"),
            kind: KIND_CLIENT,
            start_time_unix_nano: x.start_ns,
            end_time_unix_nano: x.end_ns.max(x.start_ns),
            attributes: a,
            status,
        });
    }
}

fn int(v: u64) -> Value {
    Value::IntValue(v.min(i64::MAX as u64) as i64)
}

/// `gen_ai.provider.name` of a provider kind: the conventions' well-known values where one
/// exists, else the kind itself.
fn provider_name(kind: &str) -> &str {
    match kind {
        "gemini" => "gcp.gemini",
        "azure" => "azure.ai.openai",
        "xai" => "x_ai",
        "mistral" => "mistral_ai",
        k => k,
    }
}

/// The input messages of a captured body: its `messages` (chat, Anthropic), `contents`
/// (Gemini), `input` (Responses, embeddings) or `prompt` (completions) member, as JSON; the
/// body as it came when it is not JSON (or was cut at the capture limit).
fn messages(body: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return body.to_string();
    };
    ["messages", "contents", "input", "prompt"]
        .iter()
        .find_map(|k| v.get(k))
        .map_or_else(|| body.to_string(), |m| m.to_string())
}
