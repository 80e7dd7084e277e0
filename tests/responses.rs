//! The OpenAI Responses API on every channel, on both drivers: passed through to a provider
//! that serves it natively (its stream ends at `response.completed`, not `[DONE]`), translated
//! to chat completions for OpenAI-compatible, Anthropic and Gemini channels — whole answers and
//! the event sequence, function tools with a tool-output turn, `text.format` json_schema —, and
//! the stateless limits named.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::net::SocketAddr;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{MockConfig, MockHandle};

both_drivers!(
    a_native_provider_gets_the_request_as_is,
    every_other_family_answers_through_the_translation,
    a_translated_stream_is_the_event_sequence_sdks_parse,
    function_tools_and_a_tool_output_turn_are_translated,
    stored_state_is_refused_by_name,
);

fn config(addr: SocketAddr) -> String {
    format!(
        r#"
[providers.native]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.compat]
kind = "groq"
base_url = "http://{addr}/compat/v1"

[providers.anth]
kind = "anthropic"
base_url = "http://{addr}/v1"

[providers.gem]
kind = "gemini"
base_url = "http://{addr}/v1beta"

[[channels]]
id = "native-1"
provider = "native"
api_key = "sk-n"
models = ["n-model"]
pricing = {{ input = 1.0, output = 2.0 }}

[[channels]]
id = "compat-1"
provider = "compat"
api_key = "sk-c"
models = ["c-model"]

[[channels]]
id = "anth-1"
provider = "anth"
api_key = "sk-a"
models = ["a-model"]

[[channels]]
id = "gem-1"
provider = "gem"
api_key = "sk-g"
models = ["g-model"]
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

fn post(gw: &smart_ai_router::bootstrap::Gateway, body: &str) -> Response {
    Client::connect(gw.local_addr()).post("/v1/responses", &[], body)
}

fn targets(m: &MockHandle) -> Vec<(String, Vec<u8>)> {
    requests(&drain(m))
        .iter()
        .map(|r| (r.target.clone(), r.body.clone()))
        .collect()
}

/// Every event of an SSE body as (event name, data).
fn events(body: &[u8]) -> Vec<(String, simd_json::OwnedValue)> {
    String::from_utf8_lossy(body)
        .replace("\r\n", "\n")
        .split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = d.to_string();
                }
            }
            let v = simd_json::to_owned_value(&mut data.clone().into_bytes())
                .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {data}"));
            (name, v)
        })
        .collect()
}

fn a_native_provider_gets_the_request_as_is(driver: &str) {
    let (m, gw) = setup(driver);
    drain(&m);
    let body = r#"{"model":"n-model","input":"hi","store":false,"include":["reasoning.encrypted_content"],"x_future":1}"#;
    let r = post(&gw, body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("native-1"));
    let sent = targets(&m);
    assert_eq!(sent.len(), 1);
    assert!(sent[0].0.ends_with("/v1/responses"), "{}", sent[0].0);
    assert_eq!(String::from_utf8_lossy(&sent[0].1), body, "byte for byte");
    let v = r.json();
    assert_eq!(v["object"].as_str(), Some("response"));
    assert!(v["usage"]["input_tokens"].as_u64().is_some());
    // Streamed: relayed as sent; it ends with response.completed (no [DONE]), which is a clean
    // end, not a cut.
    let stream = r#"{"model":"n-model","input":"hi","stream":true}"#;
    let r = post(&gw, stream);
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = events(&r.body);
    assert_eq!(ev.last().unwrap().0, "response.completed", "{}", r.text());
    assert!(!r.text().contains("upstream_stream_cut"), "{}", r.text());
    assert!(!r.text().contains("[DONE]"));
    // A cut native stream (no response.completed) is a cut.
    let r = Client::connect(gw.local_addr()).post(
        "/v1/responses",
        &[("x-mock-fault", "no-done")],
        stream,
    );
    assert!(r.text().contains("upstream_stream_cut"), "{}", r.text());
}

fn every_other_family_answers_through_the_translation(driver: &str) {
    let (m, gw) = setup(driver);
    for (model, channel, path) in [
        ("c-model", "compat-1", "/compat/v1/chat/completions"),
        ("a-model", "anth-1", "/v1/messages"),
        ("g-model", "gem-1", ":generateContent"),
    ] {
        drain(&m);
        let body = format!(
            r#"{{"model":"{model}","instructions":"be brief","input":[{{"role":"user","content":[{{"type":"input_text","text":"hello"}}]}}],"max_output_tokens":100,"text":{{"format":{{"type":"json_schema","name":"out","schema":{{"type":"object","properties":{{"a":{{"type":"string"}}}}}}}}}},"metadata":{{"k":"v"}}}}"#
        );
        let r = post(&gw, &body);
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.header("x-router-channel"), Some(channel));
        let sent = targets(&m);
        assert!(
            sent.iter().any(|(t, _)| t.contains(path)),
            "{model}: {:?}",
            sent.iter().map(|(t, _)| t).collect::<Vec<_>>()
        );
        let v = r.json();
        assert_eq!(v["object"].as_str(), Some("response"), "{model}");
        assert_eq!(v["status"].as_str(), Some("completed"), "{model}");
        assert_eq!(v["output"][0]["type"].as_str(), Some("message"), "{model}");
        assert_eq!(
            v["output"][0]["content"][0]["type"].as_str(),
            Some("output_text")
        );
        assert!(!v["output_text"].as_str().unwrap().is_empty(), "{model}");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}");
        assert_eq!(v["instructions"].as_str(), Some("be brief"));
        assert_eq!(v["metadata"]["k"].as_str(), Some("v"));
        assert_eq!(v["text"]["format"]["type"].as_str(), Some("json_schema"));
    }
    // The compatible provider got the schema as chat's response_format.
    drain(&m);
    post(
        &gw,
        r#"{"model":"c-model","input":"x","text":{"format":{"type":"json_schema","name":"o","schema":{"type":"object"}}}}"#,
    );
    let sent = targets(&m);
    let chat = String::from_utf8_lossy(&sent[0].1).to_string();
    assert!(chat.contains("\"response_format\""), "{chat}");
    assert!(chat.contains("\"json_schema\""), "{chat}");
}

fn a_translated_stream_is_the_event_sequence_sdks_parse(driver: &str) {
    let (_m, gw) = setup(driver);
    for model in ["c-model", "a-model", "g-model"] {
        let r = post(
            &gw,
            &format!(r#"{{"model":"{model}","input":"hello","stream":true}}"#),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let ev = events(&r.body);
        let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(kinds[0], "response.created", "{model}: {kinds:?}");
        assert_eq!(kinds[1], "response.in_progress");
        assert!(kinds.contains(&"response.output_text.delta"), "{kinds:?}");
        assert_eq!(*kinds.last().unwrap(), "response.completed", "{kinds:?}");
        for (n, (_, data)) in ev.iter().enumerate() {
            assert_eq!(data["sequence_number"].as_u64(), Some(n as u64), "{model}");
        }
        let done = &ev.last().unwrap().1["response"];
        assert!(
            done["usage"]["output_tokens"].as_u64().unwrap() > 0,
            "{model}"
        );
        let text: String = ev
            .iter()
            .filter(|(k, _)| k == "response.output_text.delta")
            .map(|(_, d)| d["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(done["output_text"].as_str(), Some(text.as_str()), "{model}");
    }
    // A cut upstream ends with response.failed.
    let r = Client::connect(gw.local_addr()).post(
        "/v1/responses",
        &[("x-mock-cut-after", "2")],
        r#"{"model":"c-model","input":"hello","stream":true}"#,
    );
    let ev = events(&r.body);
    let (kind, data) = ev.last().unwrap();
    assert_eq!(kind, "response.failed", "{}", r.text());
    assert_eq!(data["response"]["status"].as_str(), Some("failed"));
}

fn function_tools_and_a_tool_output_turn_are_translated(driver: &str) {
    let (m, gw) = setup(driver);
    let tools = r#""tools":[{"type":"function","name":"get_weather","description":"w","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]"#;
    for model in ["c-model", "a-model", "g-model"] {
        let r = post(
            &gw,
            &format!(
                r#"{{"model":"{model}","input":"weather in Paris?",{tools},"tool_choice":"required"}}"#
            ),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        let call = v["output"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["type"].as_str() == Some("function_call"))
            .unwrap_or_else(|| panic!("{model}: no function_call in {}", r.text()))
            .clone();
        assert_eq!(call["name"].as_str(), Some("get_weather"));
        let call_id = call["call_id"].as_str().unwrap().to_string();
        let args = call["arguments"].as_str().unwrap().to_string();
        // The second turn: the call and its output go back as items.
        drain(&m);
        let turn = format!(
            r#"{{"model":"{model}","input":[{{"role":"user","content":"weather in Paris?"}},{{"type":"function_call","call_id":"{call_id}","name":"get_weather","arguments":{}}},{{"type":"function_call_output","call_id":"{call_id}","output":"sunny"}}],{tools}}}"#,
            simd_json::OwnedValue::from(args.as_str()).encode()
        );
        let r = post(&gw, &turn);
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let sent = String::from_utf8_lossy(&targets(&m)[0].1).to_string();
        assert!(sent.contains("sunny"), "{model}: {sent}");
        // (Gemini pairs a result with its call by name: it has no call ids)
        assert!(
            sent.contains(&call_id) || (model == "g-model" && sent.contains("functionResponse")),
            "{model}: {sent}"
        );
    }
}

fn stored_state_is_refused_by_name(driver: &str) {
    let (_m, gw) = setup(driver);
    let r = post(
        &gw,
        r#"{"model":"c-model","input":"more","previous_response_id":"resp_123"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"].as_str(), Some("unsupported_parameter"));
    assert_eq!(v["error"]["param"].as_str(), Some("previous_response_id"));
    // A native channel takes it.
    let r = post(
        &gw,
        r#"{"model":"n-model","input":"more","previous_response_id":"resp_123"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // Nothing is stored to retrieve.
    let r = Client::connect(gw.local_addr()).get("/v1/responses/resp_123");
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "response_not_found");
}
