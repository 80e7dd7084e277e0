//! Same family = passthrough, on both drivers: an Anthropic client reaching an Anthropic
//! channel, and a Gemini client reaching a Gemini channel, send their own bytes — only `model`
//! rewritten and router fields removed — so prompt caching (`cache_control`), `thinking` and
//! its signatures, `top_k`, `metadata`, `is_error` and every unknown field survive; answers come
//! back as the upstream sent them, their native usage (cache reads and writes) priced. Also:
//! router fields in an Anthropic body, `request-id` on Anthropic answers, the header policy
//! for `anthropic-beta`, and the GOAWAY an HTTP/2 client gets.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{MockConfig, MockHandle};

both_drivers!(
    an_anthropic_client_on_an_anthropic_channel_sends_its_own_bytes,
    an_anthropic_stream_on_an_anthropic_channel_is_relayed_as_sent_and_priced_with_its_cache,
    a_gemini_client_on_a_gemini_channel_sends_its_own_bytes,
    router_fields_in_an_anthropic_body_route_and_never_reach_the_upstream,
    an_http2_client_is_told_to_use_http11,
    cache_breakpoints_cross_families_where_the_target_caches,
);

fn config(addr: SocketAddr) -> String {
    format!(
        r#"
[providers.o]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.a]
kind = "anthropic"
base_url = "http://{addr}/v1"
forward_headers = ["anthropic-beta", "x-mock-*"]

[providers.g]
kind = "gemini"
base_url = "http://{addr}/v1beta"

[[channels]]
id = "a-1"
provider = "a"
api_key = "sk-ant-key"
models = ["claude-x"]
pricing = {{ input = 3.0, output = 15.0, cached = 0.3, cache_write = 3.75 }}

[[channels]]
id = "o-1"
provider = "o"
api_key = "sk-openai"
models = ["claude-x"]
priority = -1

[[channels]]
id = "g-1"
provider = "g"
api_key = "g-key"
models = ["gemini-x"]
"#
    )
}

fn setup(driver: &str) -> (MockHandle, smart_ai_router::bootstrap::Gateway) {
    let m = mock(MockConfig {
        record: true,
        chunks: 3,
        ..Default::default()
    });
    let gw = gateway(driver, &config(m.addr()));
    (m, gw)
}

/// A Messages body with everything the OpenAI translation used to lose, and a router field.
fn rich_messages(stream: bool) -> String {
    format!(
        r#"{{"model":"claude-x","max_tokens":64,"stream":{stream},
"system":[{{"type":"text","text":"You are terse.","cache_control":{{"type":"ephemeral"}}}}],
"thinking":{{"type":"enabled","budget_tokens":1024}},"top_k":5,"metadata":{{"user_id":"u-1"}},
"messages":[{{"role":"user","content":[{{"type":"text","text":"hi","cache_control":{{"type":"ephemeral","ttl":"1h"}}}}]}},
{{"role":"assistant","content":[{{"type":"thinking","thinking":"hm","signature":"c2lnbmVk"}},{{"type":"tool_use","id":"t1","name":"f","input":{{}}}}]}},
{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","is_error":true,"content":"boom"}}]}}],
"tools":[{{"name":"f","description":"d","input_schema":{{"type":"object"}}}}],
"x_future_field":{{"a":[1,2]}},"exclude_providers":["nobody"]}}"#
    )
}

/// The body and headers of the upstream request to a path containing `path_part`.
fn upstream(m: &MockHandle, path_part: &str) -> (Vec<u8>, Vec<(String, String)>) {
    let events = drain(m);
    let reqs = requests(&events);
    let r = reqs
        .iter()
        .find(|r| r.target.contains(path_part))
        .unwrap_or_else(|| panic!("no upstream request to {path_part}: {reqs:?}"));
    (r.body.clone(), r.headers.clone())
}

fn upstream_body(m: &MockHandle, path_part: &str) -> Vec<u8> {
    upstream(m, path_part).0
}

fn an_anthropic_client_on_an_anthropic_channel_sends_its_own_bytes(driver: &str) {
    let (m, gw) = setup(driver);
    let body = rich_messages(false);
    drain(&m);
    let r = Client::connect(gw.local_addr()).post(
        "/v1/messages",
        &[
            ("anthropic-version", "2099-01-01"),
            ("anthropic-beta", "prompt-caching-2024-07-31"),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("a-1"));
    // Byte for byte, but for the router field.
    let (sent, headers) = upstream(&m, "/messages");
    let expected = body.replace(r#","exclude_providers":["nobody"]"#, "");
    assert_eq!(String::from_utf8_lossy(&sent), expected);
    // The header policy: anthropic-beta reaches it (the provider lists it); the provider's
    // anthropic-version wins over the client's.
    let header = |name: &str| {
        headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect::<Vec<_>>()
    };
    assert_eq!(header("anthropic-beta"), ["prompt-caching-2024-07-31"]);
    assert_eq!(header("anthropic-version"), ["2023-06-01"]);
    // The answer is the upstream's, with the gateway's request id where the SDK reads it.
    let v = r.json();
    assert_eq!(v["type"].as_str(), Some("message"));
    assert!(v["usage"]["input_tokens"].as_u64().is_some());
    assert_eq!(r.header("request-id"), r.header("x-request-id"));
    assert!(r.header("request-id").is_some());
}

fn an_anthropic_stream_on_an_anthropic_channel_is_relayed_as_sent_and_priced_with_its_cache(
    driver: &str,
) {
    let (m, gw) = setup(driver);
    let body = rich_messages(true);
    drain(&m);
    let r = Client::connect(gw.local_addr()).post(
        "/v1/messages",
        &[
            ("x-mock-cached-tokens", "200"),
            ("x-mock-cache-write-tokens", "400"),
        ],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("event: message_stop"), "{text}");
    assert!(
        text.contains("\"cache_creation_input_tokens\":400"),
        "{text}"
    );
    let sent = upstream_body(&m, "/messages");
    assert!(!String::from_utf8_lossy(&sent).contains("exclude_providers"));
    assert!(String::from_utf8_lossy(&sent).contains("\"signature\":\"c2lnbmVk\""));
    // Priced from the native counts: cache writes at their own price.
    let start = text
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("message_start"))
        .unwrap();
    let v = simd_json::to_owned_value(&mut start.as_bytes()[6..].to_vec()).unwrap();
    let u = &v["message"]["usage"];
    let input = u["input_tokens"].as_u64().unwrap() as f64;
    let read = u["cache_read_input_tokens"].as_u64().unwrap() as f64;
    let write = u["cache_creation_input_tokens"].as_u64().unwrap() as f64;
    let output: f64 = text
        .lines()
        .rfind(|l| l.starts_with("data: ") && l.contains("message_delta"))
        .map(|l| {
            let v = simd_json::to_owned_value(&mut l.as_bytes()[6..].to_vec()).unwrap();
            v["usage"]["output_tokens"].as_u64().unwrap() as f64
        })
        .unwrap();
    let expected = (input * 3.0 + read * 0.3 + write * 3.75 + output * 15.0) / 1e6;
    let cost = eventually(Duration::from_secs(3), "usage counted", || {
        let u = admin(&gw, "GET", "/admin/usage", None, "").json();
        let c = u["total"]["cost"].as_f64()?;
        (c > 0.0).then_some(c)
    });
    assert!(
        (cost - expected).abs() < 1e-9,
        "cost {cost} vs {expected} (input {input}, read {read}, write {write}, output {output})"
    );
}

fn a_gemini_client_on_a_gemini_channel_sends_its_own_bytes(driver: &str) {
    let (m, gw) = setup(driver);
    let body = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}],"cachedContent":"cachedContents/abc","safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}],"generationConfig":{"topK":3,"seed":7},"x_future":true,"strategy":"cost_first"}"#;
    drain(&m);
    let r = Client::connect(gw.local_addr()).post(
        "/v1beta/models/gemini-x:generateContent",
        &[("x-mock-cached-tokens", "5")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = upstream_body(&m, ":generateContent");
    let expected = body.replace(r#","strategy":"cost_first""#, "");
    assert_eq!(String::from_utf8_lossy(&sent), expected);
    let v = r.json();
    assert!(v["candidates"].as_array().is_some(), "{}", r.text());
    assert_eq!(
        v["usageMetadata"]["cachedContentTokenCount"].as_u64(),
        Some(5)
    );
    // Streamed: relayed as sent, ended by the upstream's own finishReason.
    let r = Client::connect(gw.local_addr()).post(
        "/v1beta/models/gemini-x:streamGenerateContent?alt=sse",
        &[],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("finishReason"), "{}", r.text());
}

fn router_fields_in_an_anthropic_body_route_and_never_reach_the_upstream(driver: &str) {
    let (m, gw) = setup(driver);
    // The Anthropic channel ranks first; the body's own exclude_providers sends the request to
    // the OpenAI channel serving the same model (translated, so the field is read from the
    // translation and removed there too).
    let body = r#"{"model":"claude-x","max_tokens":16,"messages":[{"role":"user","content":"hi"}],"exclude_providers":["a"]}"#;
    drain(&m);
    let r = Client::connect(gw.local_addr()).post("/v1/messages", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("o-1"));
    let sent = upstream_body(&m, "/chat/completions");
    assert!(
        !String::from_utf8_lossy(&sent).contains("exclude_providers"),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    // Errors on Anthropic's endpoint carry its request-id too.
    let r = Client::connect(gw.local_addr()).post("/v1/messages", &[], "{");
    assert_eq!(r.status, 400);
    assert!(r.header("request-id").is_some());
}

fn an_http2_client_is_told_to_use_http11(driver: &str) {
    let (_m, gw) = setup(driver);
    let mut s = std::net::TcpStream::connect(gw.local_addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .unwrap();
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    // SETTINGS (empty), then GOAWAY: last stream 0, error HTTP_1_1_REQUIRED (0xd).
    assert_eq!(got.len(), 26, "{got:?}");
    assert_eq!(&got[..9], &[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    assert_eq!(&got[9..18], &[0, 0, 8, 7, 0, 0, 0, 0, 0]);
    assert_eq!(&got[18..], &[0, 0, 0, 0, 0, 0, 0, 0xd]);
}

/// Across families, a prompt-cache breakpoint (`cache_control`) survives where the target
/// caches: an Anthropic client's reach an OpenRouter channel on the chat content parts, an
/// OpenAI client's content parts reach an Anthropic channel as block breakpoints (the system
/// prompt in block form); a provider that would refuse the member gets the request without it.
fn cache_breakpoints_cross_families_where_the_target_caches(driver: &str) {
    let m = mock(MockConfig {
        record: true,
        ..Default::default()
    });
    let addr = m.addr();
    let gw = gateway(
        driver,
        &format!(
            r#"
[providers.or]
kind = "openrouter"
base_url = "http://{addr}/v1"

[providers.oa]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.an]
kind = "anthropic"
base_url = "http://{addr}/v1"

[providers.ge]
kind = "gemini"
base_url = "http://{addr}/v1beta"

[[channels]]
id = "ge-1"
provider = "ge"
api_key = "k"
models = ["gemini-x"]

[[channels]]
id = "or-1"
provider = "or"
api_key = "k"
models = ["or-model"]

[[channels]]
id = "oa-1"
provider = "oa"
api_key = "k"
models = ["oa-model"]

[[channels]]
id = "an-1"
provider = "an"
api_key = "k"
models = ["claude-x"]
"#
        ),
    );
    let messages = |model: &str| {
        format!(
            r#"{{"model":"{model}","max_tokens":64,
"system":[{{"type":"text","text":"Long instructions.","cache_control":{{"type":"ephemeral"}}}},{{"type":"text","text":"More."}}],
"messages":[{{"role":"user","content":[{{"type":"text","text":"a long document","cache_control":{{"type":"ephemeral"}}}},{{"type":"text","text":"question"}}]}}]}}"#
        )
    };
    let parts_with_breakpoints = |v: &simd_json::OwnedValue| -> usize {
        v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|m| m.get("content").and_then(|c| c.as_array()))
            .flatten()
            .filter(|p| p.get("cache_control").is_some())
            .count()
    };

    // Anthropic client → OpenRouter: the breakpoints ride on the chat content parts.
    drain(&m);
    let r = Client::connect(gw.local_addr()).post(
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &messages("or-model"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let mut sent = upstream_body(&m, "/chat/completions");
    let v = simd_json::to_owned_value(&mut sent).unwrap();
    assert_eq!(parts_with_breakpoints(&v), 2, "{v}");
    assert_eq!(
        v["messages"][0]["content"][0]["cache_control"]["type"].as_str(),
        Some("ephemeral"),
        "the system breakpoint: {v}"
    );

    // Anthropic client → a provider without them: the same request, without the member.
    let r = Client::connect(gw.local_addr()).post(
        "/v1/messages",
        &[("anthropic-version", "2023-06-01")],
        &messages("oa-model"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = upstream_body(&m, "/chat/completions");
    assert!(
        memchr_find(&sent, b"cache_control").is_none(),
        "{}",
        String::from_utf8_lossy(&sent)
    );
    let mut sent = sent;
    let v = simd_json::to_owned_value(&mut sent).unwrap();
    assert_eq!(
        v["messages"][1]["content"][0]["text"].as_str(),
        Some("a long document")
    );

    // OpenAI client (content parts with breakpoints, OpenRouter style) → Anthropic blocks.
    let chat = r#"{"model":"claude-x","messages":[
{"role":"system","content":[{"type":"text","text":"Long instructions.","cache_control":{"type":"ephemeral"}}]},
{"role":"user","content":[{"type":"text","text":"a long document","cache_control":{"type":"ephemeral","ttl":"1h"}},{"type":"text","text":"question"}]}]}"#;
    let r = Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], chat);
    assert_eq!(r.status, 200, "{}", r.text());
    let mut sent = upstream_body(&m, "/messages");
    let v = simd_json::to_owned_value(&mut sent).unwrap();
    assert_eq!(
        v["system"][0]["text"].as_str(),
        Some("Long instructions."),
        "{v}"
    );
    assert_eq!(
        v["system"][0]["cache_control"]["type"].as_str(),
        Some("ephemeral")
    );
    let blocks = v["messages"][0]["content"].as_array().unwrap();
    assert_eq!(
        blocks[0]["cache_control"]["ttl"].as_str(),
        Some("1h"),
        "{v}"
    );
    assert!(blocks[1].get("cache_control").is_none());
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
