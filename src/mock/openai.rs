//! The OpenAI chat-completions format of the mock: reading a request, and writing whole
//! answers, stream chunks and the usage chunk (`stream_options.include_usage`, or not, as
//! `x-mock-usage` says).

use simd_json::prelude::*;

use super::ask::{Ask, TOOL_ARG_PARTS, TOOL_ARGS, TOOL_TOKENS, UsageStyle, words};
use super::now_secs;
use crate::json;

pub(super) fn parse_ask(body: &[u8]) -> Result<Ask, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy).map_err(|e| format!("invalid JSON: {e}"))?;
    let model = v
        .get("model")
        .and_then(|m| m.as_str())
        .ok_or("missing model")?
        .to_string();
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let include_usage = v
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(|u| u.as_bool())
        .unwrap_or(false);
    let messages = v.get("messages").and_then(|m| m.as_array());
    let last_is_tool = messages
        .and_then(|m| m.last())
        .and_then(|m| m.get("role"))
        .and_then(|r| r.as_str())
        == Some("tool");
    let tool = if last_is_tool {
        None
    } else {
        v.get("tools")
            .and_then(|t| t.as_array())
            .and_then(|t| t.first())
            .and_then(|t| t.get("function"))
            .and_then(|f| f.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    };
    let last_user = messages
        .and_then(|m| {
            m.iter()
                .filter(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
                .last()
        })
        .and_then(|m| m.get("content"))
        .and_then(|c| c.as_str())
        .unwrap_or("")
        .chars()
        .take(200)
        .collect();
    let json =
        v.get("response_format")
            .and_then(|f| match f.get("type").and_then(|t| t.as_str()) {
                Some("json_schema") => Some(
                    f.get("json_schema")
                        .and_then(|j| j.get("schema"))
                        .map_or_else(|| "{}".to_string(), super::schema::instance),
                ),
                Some("json_object") => Some("{\"answer\":\"mock\"}".to_string()),
                _ => None,
            });
    Ok(Ask {
        model,
        stream,
        include_usage,
        tool,
        last_user,
        json,
        prompt_tokens: Ask::estimate_prompt(body),
        ..Ask::default()
    })
}

pub(super) fn completion_json(ask: &Ask, id: u64, n: usize) -> Vec<u8> {
    let mut b = Vec::with_capacity(512);
    b.extend_from_slice(b"{\"id\":\"chatcmpl-mock-");
    json::write_u64(&mut b, id);
    b.extend_from_slice(b"\",\"object\":\"chat.completion\",\"created\":");
    json::write_u64(&mut b, now_secs());
    b.extend_from_slice(b",\"model\":");
    json::write_str(&mut b, &ask.model);
    b.extend_from_slice(b",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",");
    let completion_tokens = match &ask.tool {
        Some(tool) => {
            b.extend_from_slice(b"\"content\":null,\"tool_calls\":[{\"id\":\"call_mock_1\",\"type\":\"function\",\"function\":{\"name\":");
            json::write_str(&mut b, tool);
            b.extend_from_slice(b",\"arguments\":");
            json::write_str(&mut b, TOOL_ARGS);
            b.extend_from_slice(b"}}]},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]");
            TOOL_TOKENS
        }
        None => {
            let text: String = words(ask, n).concat();
            b.extend_from_slice(b"\"content\":");
            json::write_str(&mut b, text.trim_end());
            b.extend_from_slice(b"},\"logprobs\":null,\"finish_reason\":\"stop\"}]");
            n as u64
        }
    };
    if ask.usage != UsageStyle::None {
        write_usage(&mut b, ask, completion_tokens);
    }
    b.push(b'}');
    b
}

pub(super) fn write_usage(b: &mut Vec<u8>, ask: &Ask, completion: u64) {
    let prompt = ask.prompt_tokens;
    b.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    json::write_u64(b, prompt);
    b.extend_from_slice(b",\"completion_tokens\":");
    json::write_u64(b, completion);
    b.extend_from_slice(b",\"total_tokens\":");
    json::write_u64(b, prompt.saturating_add(completion));
    if let Some(cached) = ask.cached {
        b.extend_from_slice(b",\"prompt_tokens_details\":{\"cached_tokens\":");
        json::write_u64(b, cached);
        b.push(b'}');
    }
    b.push(b'}');
}

pub(super) fn chunk_event(
    ask: &Ask,
    id: u64,
    created: u64,
    choices: &[u8],
    usage: Option<u64>,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"data: {\"id\":\"chatcmpl-mock-");
    json::write_u64(&mut b, id);
    b.extend_from_slice(b"\",\"object\":\"chat.completion.chunk\",\"created\":");
    json::write_u64(&mut b, created);
    b.extend_from_slice(b",\"model\":");
    json::write_str(&mut b, &ask.model);
    b.extend_from_slice(b",\"choices\":");
    if ask.usage == UsageStyle::Spaced && choices == b"[]" {
        b.extend_from_slice(b" [ ] ");
    } else {
        b.extend_from_slice(choices);
    }
    if let Some(completion) = usage {
        write_usage(&mut b, ask, completion);
    }
    b.extend_from_slice(b"}\n\n");
    b
}

pub(super) fn stream_events(ask: &Ask, id: u64, n: usize) -> Vec<Vec<u8>> {
    let created = now_secs();
    let mut ev = Vec::new();
    ev.push(chunk_event(
        ask,
        id,
        created,
        br#"[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]"#,
        None,
    ));
    let finish: &[u8];
    let completion;
    match &ask.tool {
        Some(tool) => {
            let mut c = br#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_mock_1","type":"function","function":{"name":"#.to_vec();
            json::write_str(&mut c, tool);
            c.extend_from_slice(br#","arguments":""}}]},"logprobs":null,"finish_reason":null}]"#);
            ev.push(chunk_event(ask, id, created, &c, None));
            for part in TOOL_ARG_PARTS {
                let mut c =
                    br#"[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"#
                        .to_vec();
                json::write_str(&mut c, part);
                c.extend_from_slice(br#"}}]},"logprobs":null,"finish_reason":null}]"#);
                ev.push(chunk_event(ask, id, created, &c, None));
            }
            finish = br#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]"#;
            completion = TOOL_TOKENS;
        }
        None => {
            for w in words(ask, n) {
                let mut c = br#"[{"index":0,"delta":{"content":"#.to_vec();
                json::write_str(&mut c, &w);
                c.extend_from_slice(br#"},"logprobs":null,"finish_reason":null}]"#);
                ev.push(chunk_event(ask, id, created, &c, None));
            }
            finish = br#"[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]"#;
            completion = n as u64;
        }
    }
    ev.push(chunk_event(ask, id, created, finish, None));
    if ask.include_usage {
        ev.push(chunk_event(ask, id, created, b"[]", Some(completion)));
    }
    ev.push(b"data: [DONE]\n\n".to_vec());
    ev
}

/// `POST …/embeddings`: one vector per input (a string or a list of strings), `dimensions`
/// long (default 8), each value derived from the input's bytes so equal inputs embed equally;
/// usage counts a token per 4 bytes. A body without `input` is a 400.
pub(super) fn embeddings_json(body: &[u8]) -> (u16, Vec<u8>) {
    let mut copy = body.to_vec();
    let Ok(v) = simd_json::to_owned_value(&mut copy) else {
        return (400, super::error_json(400, "invalid JSON"));
    };
    let inputs: Vec<&str> = match v.get("input") {
        Some(i) if i.as_str().is_some() => i.as_str().into_iter().collect(),
        Some(i) => i
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .collect(),
        None => Vec::new(),
    };
    if inputs.is_empty() {
        return (
            400,
            super::error_json(400, "'input' is a required property"),
        );
    }
    let dims = v
        .get("dimensions")
        .and_then(|d| d.as_u64())
        .unwrap_or(8)
        .clamp(1, 4096);
    let model = v.get("model").and_then(|m| m.as_str()).unwrap_or("");
    let mut b = Vec::with_capacity(64 + inputs.len() * (dims as usize) * 8);
    b.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
    let mut tokens = 0u64;
    for (i, text) in inputs.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        tokens += (text.len() as u64).div_ceil(4).max(1);
        b.extend_from_slice(b"{\"object\":\"embedding\",\"index\":");
        json::write_u64(&mut b, i as u64);
        b.extend_from_slice(b",\"embedding\":[");
        let seed = text
            .bytes()
            .fold(7u64, |h, c| h.wrapping_mul(31) ^ u64::from(c));
        for d in 0..dims {
            if d > 0 {
                b.push(b',');
            }
            // A value in (-1, 1) with a few decimals, from the seed and the position.
            let n = (seed.wrapping_add(d.wrapping_mul(2654435761)) % 2001) as i64 - 1000;
            b.extend_from_slice(format!("{:.3}", n as f64 / 1000.5).as_bytes());
        }
        b.extend_from_slice(b"]}");
    }
    b.extend_from_slice(b"],\"model\":");
    json::write_str(&mut b, model);
    b.extend_from_slice(b",\"usage\":{\"prompt_tokens\":");
    json::write_u64(&mut b, tokens);
    b.extend_from_slice(b",\"total_tokens\":");
    json::write_u64(&mut b, tokens);
    b.extend_from_slice(b"}}");
    (200, b)
}
