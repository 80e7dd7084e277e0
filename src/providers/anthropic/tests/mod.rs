//! The Anthropic family's tests: helpers shared by both directions, round trips, and
//! robustness; each direction's own tests sit in `upstream` and `ingress`.

use super::ingress::*;
use super::upstream::*;
use super::wire::*;
use crate::error::{Error, Kind};
use crate::providers::Fault;
use crate::tokens::{Usage, estimate};
use simd_json::OwnedValue;
use simd_json::json;
use simd_json::prelude::*;

fn val(s: &str) -> OwnedValue {
    simd_json::to_owned_value(&mut s.as_bytes().to_vec()).unwrap()
}

fn val_bytes(b: &[u8]) -> OwnedValue {
    simd_json::to_owned_value(&mut b.to_vec()).unwrap()
}

fn enc(req: &str) -> Result<OwnedValue, Error> {
    let mut out = Vec::new();
    encode_request(&val(req), "claude-sonnet-4-5", &mut out)?;
    Ok(val_bytes(&out))
}

fn enc_err(req: &str) -> &'static str {
    let e = enc(req).unwrap_err();
    assert_eq!(e.status, 400, "{e}");
    e.code
}

fn ingress(req: &str) -> Result<OwnedValue, Error> {
    ingress_request(req.as_bytes()).map(|b| val_bytes(&b))
}

fn ingress_err(req: &str) -> &'static str {
    let e = ingress(req).unwrap_err();
    assert_eq!(e.status, 400, "{e}");
    e.code
}

/// Splits OpenAI SSE output into its JSON payloads.
fn openai_events(out: &[u8]) -> Vec<OwnedValue> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|e| val(e.strip_prefix("data: ").unwrap()))
        .collect()
}

/// Splits Anthropic SSE output into (event name, payload), checking the name matches the
/// payload's `type`.
fn anthropic_events(out: &[u8]) -> Vec<(String, OwnedValue)> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with("\n\n"), "{text}");
    text.split_terminator("\n\n")
        .map(|e| {
            let (head, data) = e.split_once('\n').unwrap();
            let name = head.strip_prefix("event: ").unwrap().to_string();
            let v = val(data.strip_prefix("data: ").unwrap());
            assert_eq!(v["type"].as_str(), Some(name.as_str()));
            (name, v)
        })
        .collect()
}

/// A `message_start` event as Anthropic sends it.
const START: &str = r#"{"type":"message_start","message":{"id":"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY","type":"message","role":"assistant","content":[],"model":"claude-opus-4-1","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,"output_tokens":1}}}"#;

mod ingress;
mod upstream;

// ---- Round trip ----

#[test]
fn round_trip_openai_to_anthropic_and_back() {
    // Already in the normal form both directions produce, so the trip must be exact.
    let original = r#"{
            "model": "claude-sonnet-4-5",
            "messages": [
                {"role": "system", "content": "You are a travel agent."},
                {"role": "user", "content": [
                    {"type": "text", "text": "Where were these taken? Also check the weather there."},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/eiffel.jpg"}}]},
                {"role": "assistant", "content": "Both are Paris.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
                {"role": "tool", "tool_call_id": "call_2", "content": "14:05"},
                {"role": "user", "content": "Great, thanks."},
                {"role": "assistant", "content": "You're welcome."}
            ],
            "max_tokens": 512,
            "temperature": 0.5,
            "top_p": 0.95,
            "stop": ["~~~"],
            "tools": [
                {"type": "function", "function": {"name": "get_weather", "description": "Current weather",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}},
                {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}}
            ],
            "tool_choice": "required",
            "parallel_tool_calls": false,
            "user": "user-7",
            "stream": true,
            "stream_options": {"include_usage": true}
        }"#;
    let mut anthropic = Vec::new();
    encode_request(&val(original), "claude-sonnet-4-5", &mut anthropic).unwrap();
    let mid = val_bytes(&anthropic);
    assert_eq!(mid["system"], "You are a travel agent.");
    assert_eq!(
        mid["messages"].as_array().unwrap().len(),
        4,
        "tool results merge with the user turn"
    );
    let back = val_bytes(&ingress_request(&anthropic).unwrap());
    assert_eq!(back, val(original));
}

// ---- Robustness ----

#[test]
fn never_panics_on_garbage_or_truncated_input() {
    let samples = [
        START,
        r#"{"type":"message","content":[{"type":"tool_use"},{"type":"text","text":5}],"usage":{"input_tokens":-1}}"#,
        r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":[{"type":"image"}]}]}]}"#,
        r#"{"messages":[{"role":"assistant","content":[1,2],"tool_calls":[{"function":null}]}],"tools":[null],"stop":{}}"#,
        r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":"x","function":5},null]},"finish_reason":7}],"usage":{"prompt_tokens":"a"}}"#,
        r#"{"type":"content_block_delta","index":-3,"delta":{"type":"input_json_delta","partial_json":7}}"#,
        "null",
        "[]",
        "\"x\"",
        "1e999",
        "{}",
        "",
        "\u{0}",
    ];
    for s in samples {
        for end in 0..=s.len() {
            let Some(prefix) = s.get(..end) else { continue };
            let b = prefix.as_bytes();
            let mut out = Vec::new();
            if let Ok(v) = simd_json::to_owned_value(&mut b.to_vec()) {
                let _ = encode_request(&v, "m", &mut out);
            }
            let _ = decode_response(b, 0, None, &mut out);
            let _ = StreamDecoder::new(0).event(b"", b, &mut out);
            decode_error(500, b, &mut out);
            let _ = ingress_request(b);
            let _ = egress_response(b, &mut out);
            let mut e = StreamEncoder::new();
            let _ = e.chunk(b, &mut out);
            e.finish(&mut out);
            let _ = count_tokens(b);
        }
    }
}
