//! The mock upstream's native Anthropic Messages and Gemini wires, over real sockets with a raw
//! HTTP/1.1 client: non-streamed and streamed answers, tool calls, errors, auth, the fault
//! knobs, request recording, and the cached-token usage knob (OpenAI path too).

#![allow(clippy::disallowed_methods)] // tests block on sockets and channels

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use simd_json::OwnedValue;
use simd_json::prelude::*;
use smart_ai_router::mock::{Fault, MockConfig, MockHandle};

const KEY: &str = "sk-mock-test";
const VERSION: (&str, &str) = ("anthropic-version", "2023-06-01");
const AKEY: (&str, &str) = ("x-api-key", KEY);
const GKEY: (&str, &str) = ("x-goog-api-key", KEY);

fn keyed_mock(models: &[&str]) -> MockHandle {
    mock(MockConfig {
        models: models.iter().map(|m| m.to_string()).collect(),
        require_key: Some(KEY.into()),
        ..Default::default()
    })
}

fn parse(bytes: &[u8]) -> OwnedValue {
    let mut b = bytes.to_vec();
    simd_json::to_owned_value(&mut b)
        .unwrap_or_else(|e| panic!("JSON ({e}): {}", String::from_utf8_lossy(bytes)))
}

fn str_at<'v>(v: &'v OwnedValue, path: &[&str]) -> &'v str {
    let mut cur = v;
    for p in path {
        cur = cur
            .get(*p)
            .unwrap_or_else(|| panic!("no {p} in {}", v.encode()));
    }
    cur.as_str()
        .unwrap_or_else(|| panic!("{path:?} not a string in {}", v.encode()))
}

/// Anthropic SSE: (event name, data) per event, checking each `data.type` names its event.
fn anthropic_events(body: &[u8]) -> Vec<(String, OwnedValue)> {
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with("\n\n"), "unterminated stream: {text:?}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let (first, data) = e.split_once('\n').expect("two lines per event");
            let name = first
                .strip_prefix("event: ")
                .expect("event line")
                .to_string();
            let data = parse(data.strip_prefix("data: ").expect("data line").as_bytes());
            assert_eq!(str_at(&data, &["type"]), name);
            (name, data)
        })
        .collect()
}

/// Gemini SSE: the `GenerateContentResponse` of each `data: …\r\n\r\n` event.
fn gemini_events(body: &[u8]) -> Vec<OwnedValue> {
    let text = String::from_utf8_lossy(body);
    assert!(text.ends_with("\r\n\r\n"), "unterminated stream: {text:?}");
    text.split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| parse(e.strip_prefix("data: ").expect("data line").as_bytes()))
        .collect()
}

fn anthropic_body(model: &str, stream: bool, extra: &str) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":256,"stream":{stream},"system":"be brief",{extra}"messages":[{{"role":"user","content":"hello claude"}}]}}"#
    )
}

const WEATHER_TOOL: &str = r#""tools":[{"name":"get_weather","description":"weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}}],"#;

#[test]
fn anthropic_message_is_a_message_object_and_is_recorded() {
    let m = keyed_mock(&["claude-test"]);
    let body = anthropic_body("claude-test", false, "");
    let r = Client::connect(m.addr()).post("/v1/messages", &[AKEY, VERSION], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let v = r.json();
    assert!(str_at(&v, &["id"]).starts_with("msg_"));
    assert_eq!(str_at(&v, &["type"]), "message");
    assert_eq!(str_at(&v, &["role"]), "assistant");
    assert_eq!(str_at(&v, &["model"]), "claude-test");
    assert_eq!(str_at(&v, &["stop_reason"]), "end_turn");
    let block = &v["content"][0];
    assert_eq!(str_at(block, &["type"]), "text");
    assert!(str_at(block, &["text"]).starts_with("Hello from the smart-ai-router mock"));
    assert_eq!(v["usage"]["input_tokens"], body.len() as u64 / 4);
    assert_eq!(v["usage"]["output_tokens"], 8);
    // The request is recorded with its path, headers and body.
    let reqs = drain(&m);
    let rec = requests(&reqs);
    let rec = rec.last().expect("recorded");
    assert_eq!(rec.method, "POST");
    assert_eq!(rec.path(), "/v1/messages");
    assert_eq!(rec.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(rec.body, body.as_bytes());
    assert_eq!(rec.json().and_then(|j| j.get_u64("max_tokens")), Some(256));
    assert_eq!(m.requests(), 1);
}

#[test]
fn anthropic_stream_is_the_real_event_sequence() {
    let m = keyed_mock(&[]);
    let body = anthropic_body("claude-test", true, "");
    let r = Client::connect(m.addr()).post(
        "/v1/messages",
        &[AKEY, VERSION, ("x-mock-chunks", "4")],
        &body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let ev = anthropic_events(&r.body);
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &ev[0].1["message"];
    assert!(str_at(start, &["id"]).starts_with("msg_"));
    assert_eq!(start["usage"]["input_tokens"], body.len() as u64 / 4);
    let text: String = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(str_at(d, &["delta", "type"]), "text_delta");
            str_at(d, &["delta", "text"]).to_string()
        })
        .collect();
    assert_eq!(text, "Hello from the smart-ai-router ");
    assert_eq!(str_at(&ev[8].1, &["delta", "stop_reason"]), "end_turn");
    assert_eq!(ev[8].1["usage"]["output_tokens"], 4);
}

#[test]
fn anthropic_tools_get_a_tool_use_block() {
    let m = keyed_mock(&[]);
    let headers = [AKEY, VERSION];
    let mut c = Client::connect(m.addr());
    let r = c.post(
        "/v1/messages",
        &headers,
        &anthropic_body("claude-test", false, WEATHER_TOOL),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(str_at(&v, &["stop_reason"]), "tool_use");
    let block = &v["content"][0];
    assert_eq!(str_at(block, &["type"]), "tool_use");
    assert_eq!(str_at(block, &["name"]), "get_weather");
    assert!(str_at(block, &["id"]).starts_with("toolu_"));
    assert_eq!(str_at(block, &["input", "location"]), "Paris");

    // Streamed, on the same keep-alive connection: the input arrives as JSON pieces.
    let r = c.post(
        "/v1/messages",
        &headers,
        &anthropic_body("claude-test", true, WEATHER_TOOL),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = anthropic_events(&r.body);
    assert_eq!(
        str_at(&ev[1].1, &["content_block", "type"]),
        "tool_use",
        "{:?}",
        ev[1]
    );
    let pieces: Vec<String> = ev
        .iter()
        .filter(|(n, _)| n == "content_block_delta")
        .map(|(_, d)| {
            assert_eq!(str_at(d, &["delta", "type"]), "input_json_delta");
            str_at(d, &["delta", "partial_json"]).to_string()
        })
        .collect();
    assert!(pieces.len() >= 2, "{pieces:?}");
    assert_eq!(
        str_at(&parse(pieces.concat().as_bytes()), &["location"]),
        "Paris"
    );
    let (_, delta) = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
    assert_eq!(str_at(delta, &["delta", "stop_reason"]), "tool_use");
    assert_eq!(ev.last().unwrap().0, "message_stop");
}

#[test]
fn anthropic_auth_and_version_are_checked() {
    let m = keyed_mock(&[]);
    let body = anthropic_body("claude-test", false, "");
    let mut c = Client::connect(m.addr());
    let error_type = |r: &Response| str_at(&r.json(), &["error", "type"]).to_string();
    for headers in [
        &[VERSION][..],
        &[VERSION, ("x-api-key", "wrong")][..],
        // A bearer token is the OpenAI way, not Anthropic's.
        &[VERSION, ("authorization", "Bearer sk-mock-test")][..],
    ] {
        let r = c.post("/v1/messages", headers, &body);
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
        assert_eq!(str_at(&r.json(), &["type"]), "error");
        assert_eq!(error_type(&r), "authentication_error");
    }
    let r = c.post("/v1/messages", &[AKEY], &body);
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(error_type(&r), "invalid_request_error");
    assert!(str_at(&r.json(), &["error", "message"]).contains("anthropic-version"));
    // Without `require_key` any key (or none) is fine, but the version is still required.
    let open = mock(MockConfig::default());
    let mut c = Client::connect(open.addr());
    assert_eq!(c.post("/v1/messages", &[VERSION], &body).status, 200);
    assert_eq!(c.post("/v1/messages", &[], &body).status, 400);
}

#[test]
fn anthropic_requests_are_validated_like_the_api() {
    let m = keyed_mock(&["claude-test"]);
    let mut c = Client::connect(m.addr());
    let headers = [AKEY, VERSION];
    for (body, needle) in [
        (
            r#"{"model":"claude-test","messages":[{"role":"user","content":"x"}]}"#,
            "max_tokens",
        ),
        (r#"{"model":"claude-test","max_tokens":10}"#, "messages"),
        (
            r#"{"model":"claude-test","max_tokens":10,"messages":[{"role":"system","content":"rules"},{"role":"user","content":"x"}]}"#,
            "system",
        ),
        ("{not json", "JSON"),
    ] {
        let r = c.post("/v1/messages", &headers, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let v = r.json();
        assert_eq!(str_at(&v, &["error", "type"]), "invalid_request_error");
        assert!(str_at(&v, &["error", "message"]).contains(needle), "{body}");
    }
    let r = c.post(
        "/v1/messages",
        &headers,
        &anthropic_body("other", false, ""),
    );
    assert_eq!(r.status, 404);
    assert_eq!(str_at(&r.json(), &["error", "type"]), "not_found_error");
}

#[test]
fn anthropic_injected_statuses_come_in_anthropic_shape() {
    let m = keyed_mock(&[]);
    let mut c = Client::connect(m.addr());
    let body = anthropic_body("claude-test", true, "");
    let r = c.post(
        "/v1/messages",
        &[
            AKEY,
            VERSION,
            ("x-mock-status", "429"),
            ("x-mock-retry-after", "3"),
        ],
        &body,
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("3"));
    let v = r.json();
    assert_eq!(str_at(&v, &["type"]), "error");
    assert_eq!(str_at(&v, &["error", "type"]), "rate_limit_error");
    let r = c.post(
        "/v1/messages",
        &[AKEY, VERSION, ("x-mock-status", "529")],
        &body,
    );
    assert_eq!(r.status, 529);
    assert_eq!(str_at(&r.json(), &["error", "type"]), "overloaded_error");
    // The config knob too.
    let down = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let r = Client::connect(down.addr()).post("/v1/messages", &[VERSION], &body);
    assert_eq!(r.status, 500);
    assert_eq!(str_at(&r.json(), &["error", "type"]), "api_error");
}

fn gemini_body(extra: &str) -> String {
    format!(
        r#"{{"systemInstruction":{{"parts":[{{"text":"be brief"}}]}},{extra}"contents":[{{"role":"user","parts":[{{"text":"hello gemini"}}]}}]}}"#
    )
}

const GEMINI_TOOL: &str = r#""tools":[{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"object"}}]}],"#;

#[test]
fn gemini_generate_content_answers_for_the_model_in_the_path() {
    let m = keyed_mock(&["gemini-test"]);
    let body = gemini_body("");
    let path = "/v1beta/models/gemini-test:generateContent";
    let r = Client::connect(m.addr()).post(path, &[GKEY], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let cand = &v["candidates"][0];
    assert_eq!(str_at(cand, &["content", "role"]), "model");
    assert!(
        cand["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .contains("(gemini-test)")
    );
    assert_eq!(str_at(cand, &["finishReason"]), "STOP");
    assert_eq!(str_at(&v, &["modelVersion"]), "gemini-test");
    assert!(!str_at(&v, &["responseId"]).is_empty());
    let u = &v["usageMetadata"];
    let prompt = body.len() as u64 / 4;
    assert_eq!(u["promptTokenCount"], prompt);
    assert_eq!(u["candidatesTokenCount"], 8);
    assert_eq!(u["totalTokenCount"], prompt + 8);
    // The key may come as a query parameter instead; the request is recorded with it.
    let r = Client::connect(m.addr()).post(&format!("{path}?key={KEY}"), &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let reqs = drain(&m);
    let rec = requests(&reqs);
    let rec = rec.last().expect("recorded");
    assert_eq!(rec.path(), path);
    assert_eq!(rec.query("key"), Some(KEY));
    assert_eq!(rec.body, body.as_bytes());
    assert_eq!(m.requests(), 2);
}

#[test]
fn gemini_sse_stream_ends_with_finish_reason_and_usage() {
    let m = keyed_mock(&[]);
    let r = Client::connect(m.addr()).post(
        "/v1beta/models/gemini-test:streamGenerateContent?alt=sse",
        &[GKEY, ("x-mock-chunks", "3")],
        &gemini_body(""),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("text/event-stream")
    );
    let ev = gemini_events(&r.body);
    assert_eq!(ev.len(), 3);
    let mut text = String::new();
    for (i, e) in ev.iter().enumerate() {
        let cand = &e["candidates"][0];
        text.push_str(cand["content"]["parts"][0]["text"].as_str().unwrap());
        let last = i == ev.len() - 1;
        assert_eq!(cand.get("finishReason").is_some(), last);
        assert_eq!(e.get("usageMetadata").is_some(), last);
    }
    assert_eq!(text, "Hello from the ");
    assert_eq!(str_at(&ev[2], &["modelVersion"]), "gemini-test");
    assert_eq!(ev[2]["usageMetadata"]["candidatesTokenCount"], 3);
}

#[test]
fn gemini_stream_without_alt_sse_is_one_json_array() {
    let m = keyed_mock(&[]);
    let r = Client::connect(m.addr()).post(
        "/v1beta/models/gemini-test:streamGenerateContent",
        &[GKEY, ("x-mock-chunks", "2")],
        &gemini_body(""),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .unwrap()
            .starts_with("application/json")
    );
    let v = r.json();
    let items = v.as_array().expect("an array");
    assert_eq!(items.len(), 2);
    assert_eq!(items[1]["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn gemini_tools_get_a_function_call() {
    let m = keyed_mock(&[]);
    let mut c = Client::connect(m.addr());
    let r = c.post(
        "/v1beta/models/gemini-test:generateContent",
        &[GKEY],
        &gemini_body(GEMINI_TOOL),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let call = &v["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(str_at(call, &["name"]), "get_weather");
    assert_eq!(str_at(call, &["args", "location"]), "Paris");
    let r = c.post(
        "/v1beta/models/gemini-test:streamGenerateContent?alt=sse",
        &[GKEY],
        &gemini_body(GEMINI_TOOL),
    );
    let ev = gemini_events(&r.body);
    let last = ev.last().unwrap();
    let call = &last["candidates"][0]["content"]["parts"][0]["functionCall"];
    assert_eq!(str_at(call, &["name"]), "get_weather");
    assert_eq!(last["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn gemini_auth_validation_and_errors_come_in_google_shape() {
    let m = keyed_mock(&["gemini-test"]);
    let mut c = Client::connect(m.addr());
    let path = "/v1beta/models/gemini-test:generateContent";
    let status_name = |r: &Response| str_at(&r.json(), &["error", "status"]).to_string();
    let r = c.post(path, &[], &gemini_body(""));
    assert_eq!(
        (r.status, status_name(&r).as_str()),
        (403, "PERMISSION_DENIED")
    );
    let r = c.post(path, &[("x-goog-api-key", "wrong")], &gemini_body(""));
    assert_eq!(
        (r.status, status_name(&r).as_str()),
        (400, "INVALID_ARGUMENT")
    );
    assert_eq!(r.json()["error"]["details"][0]["reason"], "API_KEY_INVALID");
    // A bearer token is not how Gemini takes its key.
    let r = c.post(
        path,
        &[("authorization", "Bearer sk-mock-test")],
        &gemini_body(""),
    );
    assert_eq!(r.status, 403);
    let r = c.post(path, &[GKEY], r#"{"contents":[]}"#);
    assert_eq!(
        (r.status, status_name(&r).as_str()),
        (400, "INVALID_ARGUMENT")
    );
    assert_eq!(r.json()["error"]["code"], 400);
    let r = c.post(
        path,
        &[GKEY],
        r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#,
    );
    assert_eq!(r.status, 400);
    let r = c.post(
        "/v1beta/models/other:generateContent",
        &[GKEY],
        &gemini_body(""),
    );
    assert_eq!((r.status, status_name(&r).as_str()), (404, "NOT_FOUND"));
    // An injected 429 says when to retry in the body, as Gemini does.
    let r = c.post(
        path,
        &[GKEY, ("x-mock-status", "429"), ("x-mock-retry-after", "5")],
        &gemini_body(""),
    );
    assert_eq!(
        (r.status, status_name(&r).as_str()),
        (429, "RESOURCE_EXHAUSTED")
    );
    let detail = &r.json()["error"]["details"][0];
    assert_eq!(str_at(detail, &["retryDelay"]), "5s");
    assert_eq!(r.header("retry-after"), None);
    let r = c.post(path, &[GKEY, ("x-mock-status", "503")], &gemini_body(""));
    assert_eq!((r.status, status_name(&r).as_str()), (503, "UNAVAILABLE"));
}

/// Sends one request on a fresh raw connection and reads until the mock closes it.
fn raw_until_close(m: &MockHandle, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut s = TcpStream::connect(m.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(&post_bytes(path, headers, body)).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn cut_after_ends_both_streams_without_the_last_chunk() {
    let m = keyed_mock(&[]);
    let raw = raw_until_close(
        &m,
        "/v1/messages",
        &[AKEY, VERSION, ("x-mock-cut-after", "4")],
        &anthropic_body("claude-test", true, ""),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("event: ping"));
    assert_eq!(text.matches("event: content_block_delta").count(), 1);
    assert!(!text.contains("message_stop"));
    assert!(!text.ends_with("0\r\n\r\n"));

    let raw = raw_until_close(
        &m,
        "/v1beta/models/g:streamGenerateContent?alt=sse",
        &[GKEY, ("x-mock-cut-after", "2")],
        &gemini_body(""),
    );
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert_eq!(text.matches("data: ").count(), 2);
    assert!(!text.contains("finishReason"));
    assert!(!text.ends_with("0\r\n\r\n"));
}

#[test]
fn hold_after_keeps_an_anthropic_stream_until_the_gate_opens() {
    let m = keyed_mock(&[]);
    let mut c = Client::connect(m.addr());
    c.send(&post_bytes(
        "/v1/messages",
        &[AKEY, VERSION, ("x-mock-hold-after", "3")],
        &anthropic_body("claude-test", true, ""),
    ));
    let (status, _) = c.read_head();
    assert_eq!(status, 200);
    // message_start, content_block_start, ping: then the mock holds.
    for want in ["message_start", "content_block_start", "ping"] {
        let chunk = c.read_chunk().expect("an event");
        assert!(
            String::from_utf8_lossy(&chunk).starts_with(&format!("event: {want}\n")),
            "{want}"
        );
    }
    // The rest only comes once the gate opens, 150 ms from now.
    let waited = Instant::now();
    let (rest, held_for) = std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(150));
            m.open_gate();
        });
        let mut rest = c.read_chunk().expect("the first delta");
        let held_for = waited.elapsed();
        while let Some(chunk) = c.read_chunk() {
            rest.extend_from_slice(&chunk);
        }
        (rest, held_for)
    });
    assert!(held_for >= Duration::from_millis(140), "{held_for:?}");
    let rest = String::from_utf8_lossy(&rest);
    assert!(rest.starts_with("event: content_block_delta"), "{rest}");
    assert!(rest.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
}

#[test]
fn latency_interval_reset_and_close_delimited_apply_to_the_new_formats() {
    let m = keyed_mock(&[]);
    let mut c = Client::connect(m.addr());
    let t = Instant::now();
    let r = c.post(
        "/v1beta/models/g:generateContent",
        &[GKEY, ("x-mock-latency-ms", "120")],
        &gemini_body(""),
    );
    assert_eq!(r.status, 200);
    assert!(t.elapsed() >= Duration::from_millis(120));
    let t = Instant::now();
    let r = c.post(
        "/v1/messages",
        &[
            AKEY,
            VERSION,
            ("x-mock-chunks", "3"),
            ("x-mock-interval-ms", "20"),
        ],
        &anthropic_body("claude-test", true, ""),
    );
    assert_eq!(anthropic_events(&r.body).len(), 9);
    // 8 gaps between 9 events.
    assert!(
        t.elapsed() >= Duration::from_millis(160),
        "{:?}",
        t.elapsed()
    );

    let closing = mock(MockConfig {
        close_delimited: true,
        ..Default::default()
    });
    let raw = raw_until_close(
        &closing,
        "/v1/messages",
        &[VERSION, ("x-mock-chunks", "2")],
        &anthropic_body("claude-test", true, ""),
    );
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(!head.to_ascii_lowercase().contains("transfer-encoding"));
    assert_eq!(anthropic_events(body.as_bytes()).len(), 8);

    let reset = mock(MockConfig {
        fault: Some(Fault::Reset),
        ..Default::default()
    });
    for path in ["/v1/messages", "/v1beta/models/g:generateContent"] {
        let mut s = TcpStream::connect(reset.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(&post_bytes(path, &[VERSION], &gemini_body("")))
            .unwrap();
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        assert!(out.is_empty(), "{path}: {}", String::from_utf8_lossy(&out));
        assert!(
            r.is_err_and(|e| e.kind() == std::io::ErrorKind::ConnectionReset),
            "{path}"
        );
    }
}

#[test]
fn cached_token_knobs_reach_every_usage_shape() {
    let m = mock(MockConfig::default());
    let mut c = Client::connect(m.addr());
    let cached = ("x-mock-cached-tokens", "300");
    // OpenAI: prompt_tokens includes the cached part, given in prompt_tokens_details.
    let r = c.post(
        "/v1/chat/completions",
        &[cached],
        &chat_body("gpt-test", false),
    );
    let u = &r.json()["usage"];
    assert_eq!(u["prompt_tokens"], 300);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 300);
    let r = c.post("/v1/chat/completions", &[], &chat_body("gpt-test", false));
    assert!(r.json()["usage"].get("prompt_tokens_details").is_none());
    // Streamed with include_usage, the usage chunk carries it.
    let body = r#"{"model":"gpt-test","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = c.post("/v1/chat/completions", &[cached], body);
    let text = r.text();
    let usage_line = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .rfind(|d| d.contains("\"usage\""))
        .expect("a usage chunk");
    let v = parse(usage_line.as_bytes());
    assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 300);

    // Anthropic: input_tokens is the uncached rest; reads and writes are their own fields.
    let r = c.post(
        "/v1/messages",
        &[VERSION, cached, ("x-mock-cache-write-tokens", "50")],
        &anthropic_body("claude-test", true, ""),
    );
    let ev = anthropic_events(&r.body);
    let u = &ev[0].1["message"]["usage"];
    assert_eq!(u["cache_read_input_tokens"], 300);
    assert_eq!(u["cache_creation_input_tokens"], 50);
    assert_eq!(u["input_tokens"], 0);

    // Gemini: promptTokenCount includes cachedContentTokenCount.
    let r = c.post(
        "/v1beta/models/g:generateContent",
        &[cached],
        &gemini_body(""),
    );
    let u = &r.json()["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 300);
    assert_eq!(u["cachedContentTokenCount"], 300);
}

#[test]
fn model_lists_accept_each_providers_key_header() {
    let m = keyed_mock(&["a"]);
    let mut c = Client::connect(m.addr());
    for header in [
        format!("x-goog-api-key: {KEY}"),
        format!("x-api-key: {KEY}\r\nanthropic-version: 2023-06-01"),
        format!("authorization: Bearer {KEY}"),
    ] {
        c.send(format!("GET /v1/models HTTP/1.1\r\nHost: m\r\n{header}\r\n\r\n").as_bytes());
        assert_eq!(c.read_response().status, 200, "{header}");
    }
    c.send(format!("GET /v1beta/models?key={KEY} HTTP/1.1\r\nHost: m\r\n\r\n").as_bytes());
    assert_eq!(c.read_response().status, 200);
    c.send(b"GET /v1/models HTTP/1.1\r\nHost: m\r\n\r\n");
    assert_eq!(c.read_response().status, 401);
}

/// One chat request in one wire format: (format name, path, headers, body).
type Call = (
    &'static str,
    String,
    Vec<(&'static str, &'static str)>,
    String,
);

/// The three chat wires, each as a request to model `model`.
fn each_format(model: &str, stream: bool) -> Vec<Call> {
    let gemini_path = if stream {
        format!("/v1beta/models/{model}:streamGenerateContent?alt=sse")
    } else {
        format!("/v1beta/models/{model}:generateContent")
    };
    vec![
        (
            "openai",
            "/v1/chat/completions".to_string(),
            vec![],
            chat_body(model, stream),
        ),
        (
            "anthropic",
            "/v1/messages".to_string(),
            vec![VERSION],
            anthropic_body(model, stream, ""),
        ),
        ("gemini", gemini_path, vec![], gemini_body("")),
    ]
}

fn with<'a>(base: &[(&'a str, &'a str)], more: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    base.iter().chain(more).copied().collect()
}

#[test]
fn hostile_statuses_come_in_every_format() {
    let m = mock(MockConfig {
        model_status: vec![("sick".into(), 503)],
        ..Default::default()
    });
    for (name, path, headers, body) in each_format("m", false) {
        // 429 with a chosen Retry-After: a header, or Gemini's RetryInfo in the body.
        let h = with(
            &headers,
            &[("x-mock-status", "429"), ("x-mock-retry-after", "17")],
        );
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.status, 429, "{name}");
        if name == "gemini" {
            assert_eq!(r.json()["error"]["details"][0]["retryDelay"], "17s");
        } else {
            assert_eq!(r.header("retry-after"), Some("17"), "{name}");
        }
        // N failures then success, counted per key.
        let key = format!("fail-{name}");
        let h = with(
            &headers,
            &[("x-mock-fail-times", "2"), ("x-mock-fail-key", &key)],
        );
        let statuses: Vec<u16> = (0..3)
            .map(|_| Client::connect(m.addr()).post(&path, &h, &body).status)
            .collect();
        assert_eq!(statuses, [503, 503, 200], "{name}");
        // One model's 5xx (config) and another's by header; other models answer.
        let (_, sick_path, _, sick_body) = each_format("sick", false)
            .into_iter()
            .find(|f| f.0 == name)
            .unwrap();
        let r = Client::connect(m.addr()).post(&sick_path, &headers, &sick_body);
        assert_eq!(r.status, 503, "{name}: {}", r.text());
        let r = Client::connect(m.addr()).post(&path, &headers, &body);
        assert_eq!(r.status, 200, "{name}: {}", r.text());
        let h = with(&headers, &[("x-mock-status-model", "m=500")]);
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.status, 500, "{name}: {}", r.text());
        // A path this provider lacks: 404, and the body names the path, not the model.
        let h = with(
            &headers,
            &[(
                "x-mock-missing-paths",
                "/messages,/chat/completions,:generateContent",
            )],
        );
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.status, 404, "{name}");
        assert!(
            !r.text().contains("\"m\"") && !r.text().contains("`m`"),
            "{name}: {}",
            r.text()
        );
    }
    let r = Client::connect(m.addr()).post(
        "/v1/responses",
        &[("x-mock-missing-paths", "/responses")],
        r#"{"model":"m","input":"hi"}"#,
    );
    assert_eq!(r.status, 404);
    assert_eq!(
        r.json()["error"]["message"],
        "Invalid URL (POST /v1/responses)"
    );
}

#[test]
fn hostile_bodies_come_in_every_format() {
    let m = mock(MockConfig::default());
    for (name, path, headers, body) in each_format("m", true) {
        // No terminator: the chunked framing ends cleanly, the format's end is missing.
        let h = with(&headers, &[("x-mock-fault", "no-done")]);
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.status, 200, "{name}");
        let text = r.text();
        assert!(text.contains("Hello"), "{name}: {text}");
        for end in ["[DONE]", "message_stop", "finishReason"] {
            assert!(!text.contains(end), "{name}: {end} in {text}");
        }
        // The same stream gzip-encoded decodes to the usual events.
        let h = with(&headers, &[("x-mock-encoding", "gzip")]);
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.header("content-encoding"), Some("gzip"), "{name}");
        let plain = gunzip(&r.body);
        let ended = ["[DONE]", "message_stop", "finishReason"]
            .iter()
            .any(|e| find(&plain, e.as_bytes()).is_some());
        assert!(ended, "{name}: {}", String::from_utf8_lossy(&plain));
    }
    for (name, path, headers, body) in each_format("m", false) {
        // Half a document, exactly framed.
        let h = with(&headers, &[("x-mock-fault", "truncated-json")]);
        let r = Client::connect(m.addr()).post(&path, &h, &body);
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(
            r.header("content-length"),
            Some(r.body.len().to_string().as_str())
        );
        let mut b = r.body.clone();
        assert!(
            simd_json::to_owned_value(&mut b).is_err(),
            "{name}: {}",
            r.text()
        );
        // Whole answers in each encoding.
        for enc in ["gzip", "deflate", "br"] {
            let h = with(&headers, &[("x-mock-encoding", enc)]);
            let r = Client::connect(m.addr()).post(&path, &h, &body);
            assert_eq!(r.status, 200, "{name} {enc}");
            assert_eq!(r.header("content-encoding"), Some(enc));
            let plain = match enc {
                "gzip" => gunzip(&r.body),
                "deflate" => {
                    let mut out = Vec::new();
                    flate2::read::ZlibDecoder::new(&r.body[..])
                        .read_to_end(&mut out)
                        .unwrap();
                    out
                }
                _ => r.body.clone(),
            };
            parse(&plain);
        }
    }
}

fn gunzip(b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(b)
        .read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("gzip ({e}): {:?}", &b[..b.len().min(40)]));
    out
}
