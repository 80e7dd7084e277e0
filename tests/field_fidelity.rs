//! No silent drops across families (README "Field fidelity"), end to end against the mock on
//! real sockets: `response_format` reaches Anthropic as a forced tool and Gemini as a response
//! schema, and the client gets the JSON as the message's text, whole and streamed;
//! `reasoning_effort` becomes Anthropic thinking and a Gemini thinking budget; fields a family
//! lacks (`logprobs`, `n` > 1) route to a channel that has them, are a 400
//! `unsupported_parameter` naming the field and the channels when none does, and are dropped
//! for a provider with `on_unsupported = "drop"`.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::net::SocketAddr;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{MockConfig, MockHandle};

both_drivers!(
    json_schema_reaches_anthropic_as_a_forced_tool,
    json_schema_reaches_gemini_as_a_response_schema,
    logprobs_with_only_anthropic_is_a_400_naming_the_field,
    logprobs_route_to_the_openai_channel,
    a_dropping_provider_serves_without_the_field,
    reasoning_effort_reaches_both_families,
    n_above_one_needs_a_family_that_answers_it,
);

/// `gpt-x` (OpenAI), `claude-x` (Anthropic), `gemini-x` (Gemini), `both` (OpenAI and
/// Anthropic), `claude-drop` (an Anthropic provider with `on_unsupported = "drop"`).
fn families(addr: SocketAddr) -> String {
    format!(
        r#"
[providers.o]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.a]
kind = "anthropic"
base_url = "http://{addr}/v1"

[providers.g]
kind = "gemini"
base_url = "http://{addr}/v1beta"

[providers.d]
kind = "anthropic"
base_url = "http://{addr}/v1"
on_unsupported = "drop"

[[channels]]
id = "o-1"
provider = "o"
api_key = "sk-openai"
models = ["gpt-x", "both"]

[[channels]]
id = "a-1"
provider = "a"
api_key = "sk-ant"
models = ["claude-x", "both"]

[[channels]]
id = "g-1"
provider = "g"
api_key = "g-key"
models = ["gemini-x"]

[[channels]]
id = "d-1"
provider = "d"
api_key = "sk-ant-drop"
models = ["claude-drop"]
"#
    )
}

fn setup(driver: &str) -> (MockHandle, smart_ai_router::bootstrap::Gateway) {
    let m = mock(MockConfig {
        chunks: 4,
        ..Default::default()
    });
    let gw = gateway(driver, &families(m.addr()));
    (m, gw)
}

fn parse(s: &str) -> simd_json::OwnedValue {
    let mut b = s.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
}

const SCHEMA: &str = r#"{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"],"additionalProperties":false}"#;

fn structured(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Who?"}}],
            "response_format":{{"type":"json_schema","json_schema":{{"name":"person","strict":true,"schema":{SCHEMA}}}}}}}"#
    )
}

fn chat(model: &str, stream: bool, extra: &str) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"user","content":"Hi"}}]{extra}}}"#
    )
}

/// Concatenated `delta.content`, tool-call argument bytes, and the finish reason of an OpenAI
/// stream.
fn assemble(body: &[u8]) -> (String, String, Option<String>) {
    let (mut text, mut args, mut finish) = (String::new(), String::new(), None);
    let data = sse_data(body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    for d in data.iter().filter(|d| *d != "[DONE]") {
        let v = parse(d);
        let Some(c) = v["choices"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        if let Some(t) = c["delta"].get("content").and_then(|t| t.as_str()) {
            text.push_str(t);
        }
        if let Some(calls) = c["delta"].get("tool_calls").and_then(|t| t.as_array()) {
            for call in calls {
                if let Some(a) = call["function"].get("arguments").and_then(|a| a.as_str()) {
                    args.push_str(a);
                }
            }
        }
        if let Some(f) = c.get("finish_reason").and_then(|f| f.as_str()) {
            finish = Some(f.to_string());
        }
    }
    (text, args, finish)
}

/// The one request the mock received since the last drain, as JSON.
fn sent(m: &MockHandle) -> simd_json::OwnedValue {
    let events = drain(m);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 1, "one upstream request");
    reqs[0].json().expect("a JSON body")
}

fn json_schema_reaches_anthropic_as_a_forced_tool(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &structured("claude-x", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = sent(&m);
    assert_eq!(body["tools"][0]["name"].as_str(), Some("person"));
    assert_eq!(body["tools"][0]["input_schema"], parse(SCHEMA));
    assert_eq!(
        body["tool_choice"],
        parse(r#"{"type":"tool","name":"person"}"#)
    );
    let v = r.json();
    let message = &v["choices"][0]["message"];
    let text = message["content"].as_str().expect("the JSON as text");
    assert_eq!(parse(text), parse(r#"{"name":"mock","age":1}"#));
    assert!(message.get("tool_calls").is_none(), "{v:?}");
    assert_eq!(v["choices"][0]["finish_reason"].as_str(), Some("stop"));

    // Streamed: the tool's input_json_delta pieces become content deltas.
    let r = c.post("/v1/chat/completions", &[], &structured("claude-x", true));
    assert_eq!(r.status, 200, "{}", r.text());
    let (text, args, finish) = assemble(&r.body);
    assert_eq!(parse(&text), parse(r#"{"name":"mock","age":1}"#), "{text}");
    assert_eq!(args, "");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert_eq!(sent(&m)["tool_choice"]["name"].as_str(), Some("person"));
}

fn json_schema_reaches_gemini_as_a_response_schema(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &structured("gemini-x", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = sent(&m);
    let g = &body["generationConfig"];
    assert_eq!(g["responseMimeType"].as_str(), Some("application/json"));
    assert_eq!(
        g["responseSchema"]["properties"]["age"]["type"].as_str(),
        Some("integer")
    );
    let v = r.json();
    let text = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert_eq!(parse(text), parse(r#"{"name":"mock","age":1}"#));
    assert_eq!(v["choices"][0]["finish_reason"].as_str(), Some("stop"));

    let r = c.post("/v1/chat/completions", &[], &structured("gemini-x", true));
    assert_eq!(r.status, 200, "{}", r.text());
    let (text, _, finish) = assemble(&r.body);
    assert_eq!(parse(&text), parse(r#"{"name":"mock","age":1}"#), "{text}");
    assert_eq!(finish.as_deref(), Some("stop"));
    drain(&m);
}

fn logprobs_with_only_anthropic_is_a_400_naming_the_field(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    for extra in [
        r#","logprobs":true"#,
        r#","logprobs":true,"top_logprobs":3"#,
    ] {
        let r = c.post("/v1/chat/completions", &[], &chat("claude-x", false, extra));
        assert_eq!(r.status, 400, "{}", r.text());
        assert_eq!(r.error_code(), "unsupported_parameter");
        let v = r.json();
        assert_eq!(v["error"]["param"].as_str(), Some("logprobs"));
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("a-1 (anthropic)"), "{msg}");
        assert!(msg.contains("on_unsupported"), "{msg}");
    }
    // `logprobs: false` asks for nothing.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("claude-x", false, r#","logprobs":false"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let events = drain(&m);
    assert_eq!(
        requests(&events).len(),
        1,
        "the refused requests never left"
    );
}

fn logprobs_route_to_the_openai_channel(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..4 {
        let r = c.post(
            "/v1/chat/completions",
            &[],
            &chat("both", false, r#","logprobs":true,"top_logprobs":2"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-router-channel"), Some("o-1"));
        let body = sent(&m);
        assert_eq!(body["logprobs"].as_bool(), Some(true));
        assert_eq!(body["top_logprobs"].as_u64(), Some(2));
    }
}

fn a_dropping_provider_serves_without_the_field(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true] {
        let r = c.post(
            "/v1/chat/completions",
            &[],
            &chat("claude-drop", stream, r#","logprobs":true,"n":2"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-router-channel"), Some("d-1"));
        let body = sent(&m);
        assert!(
            body.get("logprobs").is_none() && body.get("n").is_none(),
            "{body:?}"
        );
    }
}

fn reasoning_effort_reaches_both_families(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    let effort = r#","reasoning_effort":"high","max_tokens":1000"#;
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("claude-x", false, effort),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = sent(&m);
    assert_eq!(
        body["thinking"],
        parse(r#"{"type":"enabled","budget_tokens":16384}"#)
    );
    assert_eq!(body["max_tokens"].as_u64(), Some(17384));
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("gemini-x", false, effort),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = sent(&m);
    assert_eq!(
        body["generationConfig"]["thinkingConfig"]["thinkingBudget"].as_u64(),
        Some(24576)
    );
    // A value no family knows is the client's 400 before anything is sent.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("claude-x", false, r#","reasoning_effort":"extreme""#),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.error_code(), "invalid_reasoning_effort");
    assert!(requests(&drain(&m)).is_empty());
}

fn n_above_one_needs_a_family_that_answers_it(driver: &str) {
    let (m, gw) = setup(driver);
    let mut c = Client::connect(gw.local_addr());
    // Gemini answers several candidates whole.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("gemini-x", false, r#","n":2"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        sent(&m)["generationConfig"]["candidateCount"].as_u64(),
        Some(2)
    );
    // Not streamed (its stream follows one), nor Anthropic at all.
    for (model, stream, family) in [
        ("gemini-x", true, "g-1 (gemini)"),
        ("claude-x", false, "a-1 (anthropic)"),
    ] {
        let r = c.post(
            "/v1/chat/completions",
            &[],
            &chat(model, stream, r#","n":2"#),
        );
        assert_eq!(r.status, 400, "{}", r.text());
        let v = r.json();
        assert_eq!(v["error"]["code"].as_str(), Some("unsupported_parameter"));
        assert_eq!(v["error"]["param"].as_str(), Some("n"));
        assert!(
            v["error"]["message"].as_str().unwrap().contains(family),
            "{v:?}"
        );
    }
    // OpenAI-family channels pass it through.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat("both", true, r#","n":2"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("o-1"));
    assert_eq!(sent(&m)["n"].as_u64(), Some(2));
}
