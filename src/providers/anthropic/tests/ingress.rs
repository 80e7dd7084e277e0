//! `ingress_request`, `egress_response`, `StreamEncoder`, the error body and `count_tokens`.

use super::*;

// ---- ingress_request ----

#[test]
fn ingress_minimal_docs_example() {
    let got = ingress(r#"{"model":"claude-sonnet-4-5","max_tokens":1024,"messages":[{"role":"user","content":"Hello, world"}]}"#).unwrap();
    assert_eq!(
        got,
        json!({"model": "claude-sonnet-4-5", "max_tokens": 1024,
                   "messages": [{"role": "user", "content": "Hello, world"}]})
    );
}

#[test]
fn ingress_full_request() {
    let got = ingress(r#"{
            "model": "claude-sonnet-4-5", "max_tokens": 2048,
            "system": [{"type":"text","text":"You are a helpful assistant.","cache_control":{"type":"ephemeral"}},
                       {"type":"text","text":"Be brief."}],
            "messages": [
                {"role":"user","content":[
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},
                    {"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}},
                    {"type":"text","text":"Compare these and check the weather."}]},
                {"role":"assistant","content":[
                    {"type":"thinking","thinking":"Two images...","signature":"sig"},
                    {"type":"text","text":"Checking."},
                    {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}},
                    {"type":"tool_use","id":"toolu_2","name":"screenshot","input":{}}]},
                {"role":"user","content":[
                    {"type":"text","text":"Here you go."},
                    {"type":"tool_result","tool_use_id":"toolu_1","content":"Timeout","is_error":true},
                    {"type":"tool_result","tool_use_id":"toolu_2","content":[
                        {"type":"text","text":"Screen:"},
                        {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]}]},
                {"role":"assistant","content":"Done."}
            ],
            "stop_sequences": ["\n\nHuman:"], "temperature": 0.3, "top_p": 0.8, "top_k": 5,
            "tools": [{"name":"get_weather","description":"Weather now","input_schema":{"type":"object","properties":{"location":{"type":"string"}}}},
                      {"type":"custom","name":"screenshot","input_schema":{"type":"object"}}],
            "tool_choice": {"type":"tool","name":"get_weather","disable_parallel_tool_use":true},
            "metadata": {"user_id":"u-1"}, "stream": true,
            "thinking": {"type":"enabled","budget_tokens":1024}, "service_tier": "auto"
        }"#)
        .unwrap();
    let want = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 2048,
        "messages": [
            // A cache breakpoint keeps the system prompt in parts (OpenRouter and Anthropic
            // upstreams honour it; other providers get it without the member).
            {"role": "system", "content": [
                {"type": "text", "text": "You are a helpful assistant.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be brief."}]},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
                {"type": "text", "text": "Compare these and check the weather."}]},
            {"role": "assistant", "content": "Checking.", "tool_calls": [
                {"id": "toolu_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"location\":\"Paris\"}"}},
                {"id": "toolu_2", "type": "function", "function": {"name": "screenshot", "arguments": "{}"}}]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "Error: Timeout"},
            {"role": "tool", "tool_call_id": "toolu_2", "content": "Screen:"},
            {"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/"}},
                {"type": "text", "text": "Here you go."}]},
            {"role": "assistant", "content": "Done."}
        ],
        "stop": ["\n\nHuman:"],
        "temperature": 0.3,
        "top_p": 0.8,
        "tools": [
            {"type": "function", "function": {"name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"location": {"type": "string"}}}}},
            {"type": "function", "function": {"name": "screenshot", "parameters": {"type": "object"}}}
        ],
        "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
        "parallel_tool_calls": false,
        "user": "u-1",
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    assert_eq!(got, want);
}

#[test]
fn ingress_tool_choice_and_tool_only_turns() {
    let with = |choice: &str| {
        ingress(&format!(
            r#"{{"model":"m","max_tokens":5,"messages":[],"tools":[{{"name":"f","input_schema":{{"type":"object"}}}}],"tool_choice":{choice}}}"#
        ))
    };
    assert_eq!(with(r#"{"type":"auto"}"#).unwrap()["tool_choice"], "auto");
    assert_eq!(
        with(r#"{"type":"any"}"#).unwrap()["tool_choice"],
        "required"
    );
    assert_eq!(with(r#"{"type":"none"}"#).unwrap()["tool_choice"], "none");
    assert!(
        with(r#"{"type":"auto"}"#)
            .unwrap()
            .get("parallel_tool_calls")
            .is_none()
    );
    assert_eq!(
        with(r#"{"type":"maybe"}"#).unwrap_err().code,
        "invalid_tool_choice"
    );
    assert_eq!(
        with(r#"{"type":"tool"}"#).unwrap_err().code,
        "invalid_tool_choice"
    );
    // A user turn of only tool results yields only tool messages; an assistant turn of only
    // a tool call has null content; a thinking-only turn disappears.
    let got = ingress(r#"{"model":"m","max_tokens":5,"stream":false,"messages":[
            {"role":"assistant","content":[{"type":"tool_use","id":"t","name":"f","input":{"a":[1]}}]},
            {"role":"user","content":[{"type":"tool_result","tool_use_id":"t"}]},
            {"role":"assistant","content":[{"type":"redacted_thinking","data":"x"}]}]}"#)
        .unwrap();
    assert_eq!(
        got["messages"],
        json!([
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{\"a\":[1]}"}}]},
            {"role": "tool", "tool_call_id": "t", "content": ""}
        ])
    );
    assert_eq!(got["stream"], false);
    assert!(got.get("stream_options").is_none());
}

#[test]
fn ingress_validates() {
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    assert_eq!(ingress_err(""), "empty_body");
    assert_eq!(ingress_err("{nope"), "invalid_json");
    assert_eq!(ingress_err("[]"), "invalid_body");
    assert_eq!(
        ingress_err(&format!(r#"{{"max_tokens":5,{msgs}}}"#)),
        "missing_model"
    );
    assert_eq!(
        ingress_err(&format!(r#"{{"model":5,"max_tokens":5,{msgs}}}"#)),
        "invalid_model"
    );
    assert_eq!(
        ingress_err(&format!(r#"{{"model":"","max_tokens":5,{msgs}}}"#)),
        "invalid_model"
    );
    assert_eq!(
        ingress_err(r#"{"model":"m","max_tokens":5}"#),
        "missing_messages"
    );
    assert_eq!(
        ingress_err(r#"{"model":"m","max_tokens":5,"messages":"hi"}"#),
        "invalid_messages"
    );
    assert_eq!(
        ingress_err(&format!(r#"{{"model":"m",{msgs}}}"#)),
        "missing_max_tokens"
    );
    for bad_max in ["0", "-1", "1.5", "\"10\""] {
        assert_eq!(
            ingress_err(&format!(r#"{{"model":"m","max_tokens":{bad_max},{msgs}}}"#)),
            "invalid_max_tokens",
            "{bad_max}"
        );
    }
    let one = |m: &str| {
        ingress_err(&format!(
            r#"{{"model":"m","max_tokens":5,"messages":[{m}]}}"#
        ))
    };
    assert_eq!(one(r#"{"role":"system","content":"x"}"#), "invalid_role");
    assert_eq!(one(r#"{"role":"user"}"#), "invalid_content");
    assert_eq!(one(r#"{"role":"user","content":5}"#), "invalid_content");
    assert_eq!(
        one(
            r#"{"role":"user","content":[{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"x"}}]}"#
        ),
        "unsupported_content"
    );
    assert_eq!(
        one(
            r#"{"role":"user","content":[{"type":"image","source":{"type":"file","file_id":"f"}}]}"#
        ),
        "unsupported_content"
    );
    assert_eq!(
        one(
            r#"{"role":"user","content":[{"type":"image","source":{"type":"base64","data":"x"}}]}"#
        ),
        "invalid_content"
    );
    assert_eq!(
        one(r#"{"role":"user","content":[{"type":"tool_result","content":"x"}]}"#),
        "invalid_content"
    );
    assert_eq!(
        one(r#"{"role":"assistant","content":[{"type":"tool_use","name":"f","input":{}}]}"#),
        "invalid_content"
    );
    assert_eq!(
        one(r#"{"role":"user","content":[{"type":"text"}]}"#),
        "invalid_content"
    );
    let top =
        |extra: &str| ingress_err(&format!(r#"{{"model":"m","max_tokens":5,{msgs},{extra}}}"#));
    assert_eq!(top(r#""system":5"#), "invalid_system");
    assert_eq!(top(r#""stop_sequences":"x""#), "invalid_stop_sequences");
    assert_eq!(top(r#""temperature":"hot""#), "invalid_parameter");
    assert_eq!(top(r#""stream":1"#), "invalid_stream");
    assert_eq!(
        top(r#""tools":[{"type":"web_search_20250305","name":"web_search"}]"#),
        "unsupported_tool"
    );
    assert_eq!(
        top(r#""tools":[{"description":"no name"}]"#),
        "invalid_tools"
    );
}

// ---- egress_response ----

fn egress(body: &str) -> Result<(OwnedValue, Usage), String> {
    let mut out = Vec::new();
    let u = egress_response(body.as_bytes(), &mut out)?;
    Ok((val_bytes(&out), u))
}

#[test]
fn egress_text_response() {
    let (got, usage) = egress(r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion","created":1741569952,
            "model":"gpt-4.1-2025-04-14","choices":[{"index":0,"message":{"role":"assistant","content":"Hello! How can I assist you today?","refusal":null,"annotations":[]},
            "logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":19,"completion_tokens":10,"total_tokens":29,
            "prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#)
        .unwrap();
    let want = json!({
        "id": "msg_B9MBs8CjcvOU2jLn4n570S5qMJKcT",
        "type": "message",
        "role": "assistant",
        "model": "gpt-4.1-2025-04-14",
        "content": [{"type": "text", "text": "Hello! How can I assist you today?"}],
        "stop_reason": "end_turn",
        "stop_sequence": null,
        "usage": {"input_tokens": 19, "output_tokens": 10, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0},
    });
    assert_eq!(got, want);
    assert_eq!(
        usage,
        Usage {
            prompt: 19,
            completion: 10,
            cached: 0,
            cache_write: 0
        }
    );
}

#[test]
fn egress_tools_reasoning_and_cache() {
    let (got, usage) = egress(r#"{"id":"chatcmpl-abc","model":"deepseek-reasoner","choices":[{"index":0,"message":{"role":"assistant",
            "reasoning_content":"Think first.","content":null,"tool_calls":[
            {"id":"call_abc","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Boston, MA\"}"}},
            {"id":"call_def","type":"function","function":{"name":"now","arguments":""}}]},"finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":100,"completion_tokens":20,"prompt_tokens_details":{"cached_tokens":40,"cache_write_tokens":10}}}"#)
        .unwrap();
    let want = json!({
        "id": "msg_abc",
        "type": "message",
        "role": "assistant",
        "model": "deepseek-reasoner",
        "content": [
            {"type": "thinking", "thinking": "Think first.", "signature": ""},
            {"type": "tool_use", "id": "call_abc", "name": "get_weather", "input": {"location": "Boston, MA"}},
            {"type": "tool_use", "id": "call_def", "name": "now", "input": {}}
        ],
        "stop_reason": "tool_use",
        "stop_sequence": null,
        "usage": {"input_tokens": 50, "output_tokens": 20, "cache_read_input_tokens": 40, "cache_creation_input_tokens": 10},
    });
    assert_eq!(got, want);
    assert_eq!(
        usage,
        Usage {
            prompt: 100,
            completion: 20,
            cached: 40,
            cache_write: 10
        }
    );
}

#[test]
fn egress_stop_reasons_and_failures() {
    let with = |finish: &str, tools: &str| {
        egress(&format!(
                r#"{{"id":"x","model":"m","choices":[{{"message":{{"content":"t"{tools}}},"finish_reason":{finish}}}]}}"#
            ))
            .unwrap()
            .0["stop_reason"]
                .as_str()
                .unwrap()
                .to_string()
    };
    let call = r#","tool_calls":[{"id":"c","function":{"name":"f","arguments":"{}"}}]"#;
    assert_eq!(with(r#""stop""#, ""), "end_turn");
    assert_eq!(with("null", ""), "end_turn");
    assert_eq!(with(r#""length""#, ""), "max_tokens");
    assert_eq!(with(r#""tool_calls""#, call), "tool_use");
    assert_eq!(with(r#""stop""#, call), "tool_use");
    assert_eq!(with(r#""content_filter""#, ""), "refusal");
    assert!(egress("nope").is_err());
    assert!(egress(r#"{"choices":[]}"#).is_err());
    assert!(
        egress(r#"{"error":{"message":"bad"}}"#)
            .unwrap_err()
            .contains("bad")
    );
    assert!(egress(r#"{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}}]}"#).is_err());
    // Missing usage and id still give a valid message.
    let (got, usage) = egress(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#).unwrap();
    assert_eq!(got["id"], "msg_gateway");
    assert_eq!(got["content"], json!([{"type": "text", "text": "ab"}]));
    assert_eq!(usage, Usage::default());
}

// ---- StreamEncoder ----

fn encode_stream(chunks: &[&str]) -> (Vec<(String, OwnedValue)>, StreamEncoder) {
    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    for c in chunks {
        e.chunk(c.as_bytes(), &mut out).unwrap();
    }
    e.finish(&mut out);
    let len = out.len();
    e.finish(&mut out);
    assert_eq!(out.len(), len, "finish is idempotent");
    (anthropic_events(&out), e)
}

#[test]
fn stream_encode_text() {
    let (events, e) = encode_stream(&[
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{"content":"!"},"logprobs":null,"finish_reason":null}]}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}"#,
        r#"{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":4}}}"#,
    ]);
    let want = vec![
        json!({"type": "message_start", "message": {"id": "msg_123", "type": "message", "role": "assistant",
                "model": "gpt-4o-mini", "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "!"}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
                "usage": {"output_tokens": 12, "input_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 0}}),
        json!({"type": "message_stop"}),
    ];
    let got: Vec<OwnedValue> = events.into_iter().map(|(_, v)| v).collect();
    assert_eq!(got, want);
    assert_eq!(
        e.usage(),
        Some(Usage {
            prompt: 9,
            completion: 12,
            cached: 4,
            cache_write: 0
        })
    );
}

#[test]
fn stream_encode_reasoning_text_and_tools() {
    let c = |delta: &str, finish: &str| {
        format!(
            r#"{{"id":"chatcmpl-9","model":"m","choices":[{{"index":0,"delta":{delta},"finish_reason":{finish}}}]}}"#
        )
    };
    let chunks = [
        c(
            r#"{"role":"assistant","reasoning_content":"Let me think"}"#,
            "null",
        ),
        c(r#"{"reasoning_content":" more"}"#, "null"),
        c(r#"{"content":"Checking."}"#, "null"),
        c(
            r#"{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get_weather","arguments":""}}]}"#,
            "null",
        ),
        c(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"location\":"}}]}"#,
            "null",
        ),
        c(
            r#"{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}"#,
            "null",
        ),
        c(
            r#"{"tool_calls":[{"index":1,"id":"call_2","type":"function","function":{"name":"get_time","arguments":"{}"}}]}"#,
            "null",
        ),
        c("{}", r#""tool_calls""#),
    ];
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let (events, e) = encode_stream(&refs);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let v: Vec<&OwnedValue> = events.iter().map(|(_, v)| v).collect();
    assert_eq!(v[0]["message"]["id"], "msg_9");
    assert_eq!(
        *v[1],
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
    );
    assert_eq!(
        v[2]["delta"],
        json!({"type": "thinking_delta", "thinking": "Let me think"})
    );
    assert_eq!(
        v[3]["delta"],
        json!({"type": "thinking_delta", "thinking": " more"})
    );
    assert_eq!(*v[4], json!({"type": "content_block_stop", "index": 0}));
    assert_eq!(v[5]["index"], 1);
    assert_eq!(
        v[6],
        &json!({"type": "content_block_delta", "index": 1, "delta": {"type": "text_delta", "text": "Checking."}})
    );
    assert_eq!(
        *v[8],
        json!({"type": "content_block_start", "index": 2,
            "content_block": {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}}})
    );
    assert_eq!(
        *v[9],
        json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{\"location\":"}})
    );
    assert_eq!(v[10]["delta"]["partial_json"], "\"Paris\"}");
    assert_eq!(v[12]["content_block"]["id"], "call_2");
    assert_eq!(v[12]["index"], 3);
    assert_eq!(v[13]["delta"]["partial_json"], "{}");
    assert_eq!(*v[14], json!({"type": "content_block_stop", "index": 3}));
    assert_eq!(
        *v[15],
        json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null}, "usage": {"output_tokens": 0}})
    );
    assert_eq!(e.usage(), None);
}

#[test]
fn stream_encode_empty_and_errors() {
    let (events, _) = encode_stream(&[]);
    let got: Vec<OwnedValue> = events.into_iter().map(|(_, v)| v).collect();
    assert_eq!(
        got,
        vec![
            json!({"type": "message_start", "message": {"id": "msg_gateway", "type": "message", "role": "assistant",
                    "model": "", "content": [], "stop_reason": null, "stop_sequence": null,
                    "usage": {"input_tokens": 0, "output_tokens": 0}}}),
            json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null}, "usage": {"output_tokens": 0}}),
            json!({"type": "message_stop"}),
        ]
    );

    let mut e = StreamEncoder::default();
    let mut out = Vec::new();
    e.chunk(
        br#"{"id":"x","model":"m","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
        &mut out,
    )
    .unwrap();
    assert!(e.chunk(b"{oops", &mut out).is_err());
    assert!(
        e.chunk(br#"{"error":{"message":"upstream died"}}"#, &mut out)
            .unwrap_err()
            .message()
            .contains("upstream died")
    );
    e.error(
        &Error::new(429, Kind::RateLimit, "rate_limited", "slow down"),
        &mut out,
    );
    let len = out.len();
    e.finish(&mut out);
    assert_eq!(out.len(), len, "nothing follows an error event");
    let events = anthropic_events(&out);
    assert_eq!(
        events.last().unwrap().1,
        json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}})
    );
    assert_eq!(events.len(), 4, "start, block start, delta, error");
}

// ---- error_body ----

#[test]
fn error_types_by_status() {
    for (status, kind) in [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (405, "invalid_request_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
    ] {
        assert_eq!(error_type(status), kind, "{status}");
    }
    let body = error_body(&Error::bad_request("invalid_json", "bad \"json\""));
    assert_eq!(
        std::str::from_utf8(&body).unwrap(),
        r#"{"type":"error","error":{"type":"invalid_request_error","message":"bad \"json\""}}"#
    );
    assert_eq!(
        val_bytes(&error_body(&Error::overloaded("busy")))["error"]["type"],
        "api_error"
    );
}

// ---- count_tokens ----

#[test]
fn count_tokens_estimate() {
    let body = r#"{"model":"claude","system":"You are a scientist","messages":[
            {"role":"user","content":"Hello, Claude"},
            {"role":"assistant","content":[{"type":"text","text":"Hi"},{"type":"tool_use","id":"t","name":"calc","input":{"a":1}}]},
            {"role":"user","content":[
                {"type":"tool_result","tool_use_id":"t","content":[{"type":"text","text":"42"},
                    {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AAAA"}}]},
                {"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}],
            "tools":[{"name":"calc","description":"Adds","input_schema":{"type":"object"}}]}"#;
    // Text bytes: 19 system + 13 + 2 + (4 + 7) tool_use + 2 result + (4 + 4 + 17) tool = 72.
    assert_eq!(estimate(72, 3, 2, 1), 1660);
    assert_eq!(
        count_tokens(body.as_bytes()).unwrap(),
        br#"{"input_tokens":1660}"#
    );
    assert_eq!(
        count_tokens(br#"{"model":"m","messages":[]}"#).unwrap(),
        br#"{"input_tokens":0}"#
    );
    assert_eq!(
        count_tokens(br#"{"model":"m"}"#).unwrap_err().code,
        "invalid_messages"
    );
    assert_eq!(count_tokens(b"{").unwrap_err().code, "invalid_json");
    assert_eq!(count_tokens(b" ").unwrap_err().code, "empty_body");
}
