//! Wire families end to end, against the mock speaking each format on real sockets: an OpenAI
//! client reaches Anthropic and Gemini upstreams, an Anthropic-format client (`/v1/messages`)
//! and a Gemini-format client (`/v1beta/models/…`) reach any upstream — plain and streamed, with
//! tools — errors come back in the client's own shape, and usage is counted from every format.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;

const DRIVER: &str = "io_uring_or_auto";

/// One channel per family, all on the same mock: `gpt-x` (OpenAI), `claude-x` (Anthropic),
/// `gemini-x` (Gemini).
fn three_families(addr: SocketAddr) -> String {
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

[[channels]]
id = "o-1"
provider = "o"
api_key = "sk-openai"
models = ["gpt-x"]
pricing = {{ input = 1.0, output = 2.0 }}

[[channels]]
id = "a-1"
provider = "a"
api_key = "sk-ant-key"
models = ["claude-x"]
pricing = {{ input = 3.0, output = 15.0 }}

[[channels]]
id = "g-1"
provider = "g"
api_key = "g-key"
models = ["gemini-x"]
pricing = {{ input = 0.5, output = 1.5 }}
"#
    )
}

fn setup() -> (
    smart_ai_router::mock::MockHandle,
    smart_ai_router::bootstrap::Gateway,
) {
    let m = mock(MockConfig {
        chunks: 3,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &three_families(m.addr()));
    (m, gw)
}

/// `(event name, data)` of every SSE event (LF or CRLF framed).
fn events(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .map(|e| {
            let mut name = String::new();
            let mut data = String::new();
            for line in e.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    name = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data.push_str(v);
                }
            }
            (name, data)
        })
        .collect()
}

fn parse(s: &str) -> simd_json::OwnedValue {
    let mut b = s.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
}

const TOOLS: &str = r#""tools":[{"type":"function","function":{"name":"get_weather","description":"Weather for a city","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}]"#;

fn openai_chat(model: &str, stream: bool, tools: bool) -> String {
    format!(
        r#"{{"model":"{model}","stream":{stream},"messages":[{{"role":"system","content":"Be brief."}},{{"role":"user","content":"Weather in Paris?"}}]{}{}}}"#,
        if tools { "," } else { "" },
        if tools { TOOLS } else { "" }
    )
}

/// Concatenated `delta.content` and the assembled tool-call arguments of an OpenAI stream,
/// its finish reason, and its usage chunk.
fn assemble(
    data: &[String],
) -> (
    String,
    String,
    Option<String>,
    Option<simd_json::OwnedValue>,
) {
    let (mut text, mut args, mut finish, mut usage) = (String::new(), String::new(), None, None);
    for d in data.iter().filter(|d| *d != "[DONE]") {
        let v = parse(d);
        assert_eq!(v["object"].as_str(), Some("chat.completion.chunk"), "{d}");
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            usage = Some(u.clone());
        }
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
    (text, args, finish, usage)
}

#[test]
fn an_openai_client_reaches_an_anthropic_upstream() {
    let (m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &openai_chat("claude-x", false, false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("a-1"));
    let v = r.json();
    assert_eq!(v["object"].as_str(), Some("chat.completion"));
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(v["choices"][0]["finish_reason"].as_str(), Some("stop"));
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!(prompt > 0 && completion > 0);
    let cost: f64 = r.header("x-router-cost").unwrap().parse().unwrap();
    let want = (prompt as f64 * 3.0 + completion as f64 * 15.0) / 1e6;
    assert!((cost - want).abs() < 1e-9, "{cost} vs {want}");
    let upstream = drain(&m);
    let sent = requests(&upstream)[0];
    assert_eq!(sent.path(), "/v1/messages");
    let header = |n: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-api-key"), Some("sk-ant-key"));
    assert_eq!(header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(header("authorization"), None);
    let body = sent.json().unwrap();
    assert_eq!(body["system"].as_str(), Some("Be brief."));
    assert_eq!(body["model"].as_str(), Some("claude-x"));
    assert!(body["max_tokens"].as_u64().is_some());

    // Streamed, with a tool: OpenAI chunks with the call's arguments, then the usage chunk the
    // client asked for, then [DONE].
    let body = openai_chat("claude-x", true, true).replacen(
        "\"stream\":true",
        "\"stream\":true,\"stream_options\":{\"include_usage\":true}",
        1,
    );
    let r = c.post("/v1/chat/completions", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let (_, args, finish, usage) = assemble(&data);
    assert_eq!(finish.as_deref(), Some("tool_calls"), "{data:?}");
    let args = parse(&args);
    assert!(args.as_object().is_some(), "arguments assemble into JSON");
    let usage = usage.expect("usage chunk");
    assert!(usage["completion_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn an_openai_client_reaches_a_gemini_upstream() {
    let (m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &openai_chat("gemini-x", false, false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert!(
        !v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let upstream = drain(&m);
    let sent = requests(&upstream)[0];
    assert_eq!(sent.path(), "/v1beta/models/gemini-x:generateContent");
    let header = |n: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("x-goog-api-key"), Some("g-key"));
    let body = sent.json().unwrap();
    assert_eq!(
        body["systemInstruction"]["parts"][0]["text"].as_str(),
        Some("Be brief.")
    );

    // Streamed without asking for usage: text deltas, no usage chunk, [DONE] added by the
    // gateway (Gemini streams just end).
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &openai_chat("gemini-x", true, false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let (text, _, finish, usage) = assemble(&data);
    assert!(!text.is_empty(), "{data:?}");
    assert_eq!(finish.as_deref(), Some("stop"));
    assert!(
        usage.is_none(),
        "the client did not ask for usage: {data:?}"
    );
    let upstream = drain(&m);
    let sent = requests(&upstream)[0];
    assert_eq!(sent.path(), "/v1beta/models/gemini-x:streamGenerateContent");
    assert_eq!(sent.query("alt"), Some("sse"));

    // A tool call, streamed.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &openai_chat("gemini-x", true, true),
    );
    let (_, args, finish, _) = assemble(&sse_data(&r.body));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
    assert!(parse(&args).as_object().is_some());
}

fn messages_body(model: &str, stream: bool, tools: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":256,"stream":{stream},"system":"Be brief.","messages":[{{"role":"user","content":[{{"type":"text","text":"Weather in Paris?"}}]}}]{}}}"#,
        if tools {
            r#","tools":[{"name":"get_weather","description":"Weather for a city","input_schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}]"#
        } else {
            ""
        }
    )
}

/// Checks an Anthropic event stream's order and returns (text, tool input JSON, stop reason,
/// output tokens).
fn anthropic_stream(body: &[u8]) -> (String, String, String, u64) {
    let evs = events(body);
    let names: Vec<&str> = evs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"), "{names:?}");
    assert_eq!(names.last(), Some(&"message_stop"), "{names:?}");
    assert_eq!(names[names.len() - 2], "message_delta", "{names:?}");
    let (mut text, mut input, mut stop, mut out) = (String::new(), String::new(), String::new(), 0);
    let mut open: Option<u64> = None;
    for (name, data) in &evs {
        let v = parse(data);
        assert_eq!(v["type"].as_str(), Some(name.as_str()), "{data}");
        match name.as_str() {
            "content_block_start" => {
                assert!(open.is_none(), "blocks do not overlap: {names:?}");
                open = v["index"].as_u64();
            }
            "content_block_delta" => {
                assert_eq!(v["index"].as_u64(), open, "{data}");
                let d = &v["delta"];
                match d["type"].as_str() {
                    Some("text_delta") => text.push_str(d["text"].as_str().unwrap()),
                    Some("input_json_delta") => input.push_str(d["partial_json"].as_str().unwrap()),
                    other => panic!("unexpected delta {other:?}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(v["index"].as_u64(), open);
                open = None;
            }
            "message_delta" => {
                stop = v["delta"]["stop_reason"].as_str().unwrap().to_string();
                out = v["usage"]["output_tokens"].as_u64().unwrap();
            }
            _ => {}
        }
    }
    assert!(open.is_none(), "every block closed");
    (text, input, stop, out)
}

#[test]
fn an_anthropic_client_reaches_every_family() {
    let (m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    for model in ["gpt-x", "claude-x", "gemini-x"] {
        let r = c.post(
            "/v1/messages",
            &[("anthropic-version", "2023-06-01")],
            &messages_body(model, false, false),
        );
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let v = r.json();
        assert_eq!(v["type"].as_str(), Some("message"), "{model}");
        assert_eq!(v["role"].as_str(), Some("assistant"));
        assert_eq!(v["content"][0]["type"].as_str(), Some("text"));
        assert!(!v["content"][0]["text"].as_str().unwrap().is_empty());
        assert_eq!(v["stop_reason"].as_str(), Some("end_turn"), "{model}");
        assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0, "{model}");
        assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0, "{model}");

        let r = c.post("/v1/messages", &[], &messages_body(model, true, false));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        // (an Anthropic channel's stream is relayed with its own content type)
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("text/event-stream")),
            "{:?}",
            r.header("content-type")
        );
        let (text, _, stop, out) = anthropic_stream(&r.body);
        assert!(!text.is_empty(), "{model}");
        assert_eq!(stop, "end_turn", "{model}");
        assert!(out > 0, "{model}: output tokens reported");

        let r = c.post("/v1/messages", &[], &messages_body(model, true, true));
        let (_, input, stop, _) = anthropic_stream(&r.body);
        assert_eq!(stop, "tool_use", "{model}");
        assert!(parse(&input).as_object().is_some(), "{model}: {input}");
    }
    // The OpenAI upstream was asked in the OpenAI form.
    let upstream = drain(&m);
    assert!(
        requests(&upstream)
            .iter()
            .any(|r| r.path() == "/v1/chat/completions")
    );
}

#[test]
fn a_gemini_client_reaches_an_openai_upstream() {
    let (_m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    let body = r#"{"systemInstruction":{"parts":[{"text":"Be brief."}]},"contents":[{"role":"user","parts":[{"text":"Hello"}]}],"generationConfig":{"maxOutputTokens":64}}"#;
    let r = c.post("/v1beta/models/gpt-x:generateContent", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let cand = &v["candidates"][0];
    assert_eq!(cand["content"]["role"].as_str(), Some("model"));
    assert!(
        !cand["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .is_empty()
    );
    assert_eq!(cand["finishReason"].as_str(), Some("STOP"));
    assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);

    let r = c.post(
        "/v1beta/models/gpt-x:streamGenerateContent?alt=sse",
        &[],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let evs = events(&r.body);
    assert!(evs.len() >= 2, "{evs:?}");
    let last = parse(&evs.last().unwrap().1);
    assert_eq!(last["candidates"][0]["finishReason"].as_str(), Some("STOP"));
    assert!(
        last["usageMetadata"]["candidatesTokenCount"]
            .as_u64()
            .unwrap()
            > 0
    );
}

#[test]
fn errors_come_back_in_the_clients_shape() {
    let (_m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    // A bad Anthropic request: Anthropic-shaped 400.
    let r = c.post("/v1/messages", &[], r#"{"model":"claude-x","messages":[]}"#);
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["type"].as_str(), Some("error"));
    assert_eq!(v["error"]["type"].as_str(), Some("invalid_request_error"));
    // An unknown model on /v1/messages: Anthropic-shaped 404.
    let r = c.post("/v1/messages", &[], &messages_body("nope", false, false));
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.json()["error"]["type"].as_str(), Some("not_found_error"));
    // An Anthropic upstream's 400 reaches an OpenAI client OpenAI-shaped.
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-status", "400")],
        &openai_chat("claude-x", false, false),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.json()["error"]["message"].as_str().is_some(),
        "{}",
        r.text()
    );
    // Gemini ingress errors are Gemini-shaped.
    let r = c.post(
        "/v1beta/models/gpt-x:generateContent",
        &[],
        r#"{"contents":[]}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let v = r.json();
    assert_eq!(v["error"]["code"].as_u64(), Some(400));
    assert_eq!(v["error"]["status"].as_str(), Some("INVALID_ARGUMENT"));
    // Text completions need an OpenAI-compatible channel: the Anthropic one cannot serve them.
    let r = c.post(
        "/v1/completions",
        &[],
        r#"{"model":"claude-x","prompt":"hi"}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "endpoint_not_served");
    // count_tokens estimates.
    let r = c.post(
        "/v1/messages/count_tokens",
        &[],
        &messages_body("claude-x", false, false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["input_tokens"].as_u64().unwrap() > 0);
}

#[test]
fn usage_is_counted_from_every_format() {
    let (_m, gw) = setup();
    let mut c = Client::connect(gw.local_addr());
    let mut want = 0u64;
    for model in ["gpt-x", "claude-x", "gemini-x"] {
        let r = c.post(
            "/v1/chat/completions",
            &[],
            &openai_chat(model, false, false),
        );
        let v = r.json();
        want += v["usage"]["completion_tokens"].as_u64().unwrap();
        // Streams count too, though this client never sees the usage chunk.
        let r = c.post(
            "/v1/chat/completions",
            &[],
            &openai_chat(model, true, false),
        );
        assert_eq!(r.status, 200);
    }
    let s = eventually(Duration::from_secs(5), "six records", || {
        let s = admin(&gw, "GET", "/admin/usage?group_by=provider", None, "").json();
        (s["total"]["requests"].as_u64() == Some(6)).then_some(s)
    });
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 3, "{s:?}");
    for g in groups {
        assert_eq!(g["requests"].as_u64(), Some(2), "{g:?}");
        assert!(g["cost"].as_f64().unwrap() > 0.0, "{g:?}");
    }
    // Streams and whole answers of the same prompt produce the same completion count.
    assert_eq!(
        s["total"]["completion_tokens"].as_u64(),
        Some(2 * want),
        "{s:?}"
    );
}

#[test]
fn channel_extra_body_and_think_stripping() {
    let m = mock(MockConfig {
        chunks: 20,
        ..Default::default()
    });
    let toml = format!(
        r#"{}
extra_body = {{ enable_thinking = false, top_k = 5, tags = ["a", 1.5] }}
strip_think = true
"#,
        three_families(m.addr())
            .replace(
                "models = [\"claude-x\"]",
                "models = [\"claude-x\"]\nextra_body = { top_k = 7 }"
            )
            .trim_end()
    );
    let gw = gateway(DRIVER, &toml);
    let mut c = Client::connect(gw.local_addr());
    let body = r#"{"model":"gemini-x","top_k":9,"messages":[{"role":"user","content":"<think>plan</think>ok"}]}"#;
    // gemini-x is on g-1, the channel with strip_think and the extra members.
    let r = c.post("/v1/chat/completions", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    let content = r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("You said: ok "), "{content}");
    assert!(!content.contains("think"), "{content}");
    let upstream = drain(&m);
    let sent = requests(&upstream)[0].json().unwrap();
    assert_eq!(sent["enable_thinking"].as_bool(), Some(false), "{sent:?}");
    assert_eq!(sent["tags"][1].as_f64(), Some(1.5));

    // Without strip_think (the OpenAI channel) the answer is untouched, unless the request
    // asks; the client's own member wins over the channel's extra one.
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &body.replace("gemini-x", "gpt-x"),
    );
    assert!(
        r.text().contains("\\u003cthink\\u003e") || r.text().contains("<think>"),
        "{}",
        r.text()
    );
    let asked = body
        .replace("gemini-x", "gpt-x")
        .replacen('{', "{\"strip_think\":true,", 1);
    let r = c.post("/v1/chat/completions", &[], &asked);
    assert!(!r.text().contains("think"), "{}", r.text());
    let upstream = drain(&m);
    let sent = requests(&upstream)[1].body.clone();
    assert!(
        !String::from_utf8_lossy(&sent).contains("strip_think"),
        "router field removed"
    );
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &body.replace("gemini-x", "claude-x"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let upstream = drain(&m);
    let sent = requests(&upstream)[0].json().unwrap();
    assert_eq!(
        sent["top_k"].as_u64(),
        Some(7),
        "Anthropic channel's extra member: {sent:?}"
    );
}

#[test]
fn only_allowed_client_headers_reach_each_family() {
    let m = mock(MockConfig::default());
    // The Anthropic provider opts into `anthropic-beta` (and the mock's knobs).
    let cfg = three_families(m.addr()).replace(
        "kind = \"anthropic\"\n",
        "kind = \"anthropic\"\nforward_headers = [\"anthropic-beta\", \"x-mock-*\"]\n",
    );
    let gw = gateway(DRIVER, &cfg);
    let mut c = Client::connect(gw.local_addr());
    let sent = [
        ("Accept", "application/json"),
        ("User-Agent", "OpenAI/Python 1.99.0"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
        ("tracestate", "k=v"),
        ("Idempotency-Key", "idem-1"),
        ("x-request-id", "client-req-1"),
        ("OpenAI-Organization", "org-operator-2"),
        ("OpenAI-Project", "proj-9"),
        ("OpenAI-Beta", "assistants=v2"),
        ("anthropic-beta", "prompt-caching-2024-07-31"),
        ("anthropic-version", "2099-01-01"),
        ("x-stainless-os", "Linux"),
        ("x-custom", "anything"),
        ("Cookie", "session=1"),
    ];
    let allowed = [
        "accept",
        "user-agent",
        "traceparent",
        "tracestate",
        "idempotency-key",
    ];
    let dropped = [
        "openai-organization",
        "openai-project",
        "openai-beta",
        "x-stainless-os",
        "x-custom",
        "cookie",
    ];
    for model in ["gpt-x", "claude-x", "gemini-x"] {
        let _ = drain(&m);
        let r = c.post("/v1/chat/completions", &sent, &chat_body(model, false));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let ev = drain(&m);
        let rec = requests(&ev)[0];
        for h in allowed {
            let want = sent
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(h))
                .map(|(_, v)| *v);
            assert_eq!(rec.header(h), want, "{model}: {h} is on the allow-list");
        }
        assert_eq!(rec.header("x-request-id"), Some("client-req-1"), "{model}");
        for h in dropped {
            assert_eq!(rec.header(h), None, "{model}: {h} must stay behind");
        }
        let beta = rec.header("anthropic-beta");
        if model == "claude-x" {
            assert_eq!(
                beta,
                Some("prompt-caching-2024-07-31"),
                "listed by the provider"
            );
            assert_eq!(
                rec.header("anthropic-version"),
                Some("2023-06-01"),
                "the provider's version wins"
            );
        } else {
            assert_eq!(beta, None, "{model}: not listed by its provider");
        }
        assert!(
            rec.header("authorization")
                .is_none_or(|v| !v.contains("client")),
            "{model}"
        );
    }
    // The operator's account limits never reach the client.
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-ratelimit-reset", "1s")],
        &chat_body("claude-x", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.headers
            .iter()
            .all(|(n, _)| !n.starts_with("x-ratelimit-")),
        "{:?}",
        r.headers
    );
}
