//! `encode_request`, `decode_response`, `StreamDecoder` and `decode_error`.

use super::*;

// ---- encode_request ----

#[test]
fn encode_hoists_system_maps_params_and_drops_unknown_fields() {
    let got = enc(r#"{
            "model": "gpt-4o",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
                {"role": "user", "content": "Hello, Claude"}
            ],
            "max_completion_tokens": 1024, "max_tokens": 7,
            "temperature": 1.5, "top_p": 0.9, "stop": "END", "stream": true, "user": "user-42",
            "frequency_penalty": 0.5, "logit_bias": {"1": 2}, "seed": 7,
            "response_format": {"type": "text"}, "stream_options": {"include_usage": true}
        }"#)
    .unwrap();
    let want = json!({
        "model": "claude-sonnet-4-5",
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [{"role": "user", "content": "Hello, Claude"}],
        "max_tokens": 1024,
        "temperature": 1.0,
        "top_p": 0.9,
        "stop_sequences": ["END"],
        "stream": true,
        "metadata": {"user_id": "user-42"},
    });
    assert_eq!(got, want);
}

#[test]
fn encode_defaults_and_stop_lists() {
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],"stop":["a","","b"]}"#).unwrap();
    assert_eq!(
        got,
        json!({
            "model": "claude-sonnet-4-5",
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": DEFAULT_MAX_TOKENS,
            "stop_sequences": ["a", "b"],
        })
    );
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],"max_tokens":300,"temperature":0.2,"stop":null,"tools":[]}"#).unwrap();
    assert_eq!(got["max_tokens"], 300);
    assert_eq!(got["temperature"], 0.2);
    assert!(got.get("stop_sequences").is_none() && got.get("tools").is_none());
}

#[test]
fn encode_images_from_data_and_http_urls() {
    let got = enc(r#"{"messages":[{"role":"user","content":[
            {"type":"text","text":"What is in these images?"},
            {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQSkZJRg=="}},
            {"type":"image_url","image_url":{"url":"https://upload.wikimedia.org/a.jpg","detail":"high"}}
        ]}]}"#)
        .unwrap();
    assert_eq!(
        got["messages"],
        json!([{"role": "user", "content": [
            {"type": "text", "text": "What is in these images?"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4AAQSkZJRg=="}},
            {"type": "image", "source": {"type": "url", "url": "https://upload.wikimedia.org/a.jpg"}}
        ]}])
    );
    let img = |url: &str| {
        format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{url}"}}}}]}}]}}"#
        )
    };
    assert_eq!(enc_err(&img("data:image/png,abc")), "invalid_image_url");
    assert_eq!(enc_err(&img("data:;base64,abc")), "invalid_image_url");
    assert_eq!(enc_err(&img("data:image/png;base64,")), "invalid_image_url");
    assert_eq!(enc_err(&img("ftp://host/x.png")), "invalid_image_url");
    assert_eq!(
        enc_err(
            r#"{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{}}]}]}"#
        ),
        "unsupported_content"
    );
}

#[test]
fn encode_tool_conversation_merges_results_and_turns() {
    let got = enc(r#"{"messages":[
            {"role":"user","content":"What's the weather in Paris and London?"},
            {"role":"assistant","content":"Let me check.","tool_calls":[
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"Paris\"}"}},
                {"id":"call_2","type":"function","function":{"name":"get_weather","arguments":"{\"location\":\"London\"}"}}]},
            {"role":"tool","tool_call_id":"call_1","content":"18C, sunny"},
            {"role":"tool","tool_call_id":"call_2","content":[{"type":"text","text":"12C, rain"}]},
            {"role":"user","content":"Thanks; which is warmer?"},
            {"role":"user","content":"Answer briefly."}],
            "tools":[
                {"type":"function","function":{"name":"get_weather","description":"Get the current weather","parameters":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}},
                {"type":"function","function":{"name":"now"}}],
            "tool_choice":"required","parallel_tool_calls":false}"#)
        .unwrap();
    let want = json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [
            {"role": "user", "content": "What's the weather in Paris and London?"},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"location": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"location": "London"}}
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "18C, sunny"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": [{"type": "text", "text": "12C, rain"}]},
                {"type": "text", "text": "Thanks; which is warmer?"},
                {"type": "text", "text": "Answer briefly."}
            ]}
        ],
        "tools": [
            {"name": "get_weather", "description": "Get the current weather",
             "input_schema": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}}
        ],
        "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
    });
    assert_eq!(got, want);
}

#[test]
fn encode_drops_empty_messages_and_keeps_alternation() {
    let got = enc(r#"{"messages":[
            {"role":"user","content":"a"},
            {"role":"assistant","content":""},
            {"role":"user","content":[{"type":"text","text":"b"}]},
            {"role":"assistant","content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":""}}]}]}"#)
        .unwrap();
    assert_eq!(
        got["messages"],
        json!([
            {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "f", "input": {}}]}
        ])
    );
}

#[test]
fn encode_tool_choice_variants() {
    let with = |choice: &str| {
        enc(&format!(
            r#"{{"messages":[{{"role":"user","content":"x"}}],"tools":[{{"type":"function","function":{{"name":"f"}}}}]{choice}}}"#
        ))
    };
    assert_eq!(
        with(r#","tool_choice":"auto""#).unwrap()["tool_choice"],
        json!({"type": "auto"})
    );
    assert_eq!(
        with(r#","tool_choice":"none","parallel_tool_calls":false"#).unwrap()["tool_choice"],
        json!({"type": "none"})
    );
    assert_eq!(
        with(r#","tool_choice":{"type":"function","function":{"name":"f"}}"#).unwrap()["tool_choice"],
        json!({"type": "tool", "name": "f"})
    );
    assert_eq!(
        with(r#","parallel_tool_calls":false"#).unwrap()["tool_choice"],
        json!({"type": "auto", "disable_parallel_tool_use": true})
    );
    assert!(with("").unwrap().get("tool_choice").is_none());
    assert!(
        with(r#","parallel_tool_calls":true"#)
            .unwrap()
            .get("tool_choice")
            .is_none()
    );
    assert_eq!(
        with(r#","tool_choice":"sometimes""#).unwrap_err().code,
        "invalid_tool_choice"
    );
    assert_eq!(
        with(r#","tool_choice":{"type":"function"}"#)
            .unwrap_err()
            .code,
        "invalid_tool_choice"
    );
    // tool_choice without tools is not sent (Anthropic rejects it).
    let got = enc(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"auto"}"#).unwrap();
    assert!(got.get("tool_choice").is_none());
}

#[test]
fn encode_rejects_client_mistakes() {
    let call = |args: &str| {
        format!(
            r#"{{"messages":[{{"role":"assistant","tool_calls":[{{"id":"c","type":"function","function":{{"name":"f","arguments":{args}}}}}]}}]}}"#
        )
    };
    assert_eq!(enc_err(&call(r#""{not json""#)), "invalid_tool_arguments");
    assert_eq!(enc_err(&call(r#""[1,2]""#)), "invalid_tool_arguments");
    assert_eq!(enc_err(&call("5")), "invalid_tool_arguments");
    assert_eq!(
        enc(&call(r#"{"a":1}"#)).unwrap()["messages"][0]["content"][0]["input"],
        json!({"a": 1})
    );
    assert_eq!(
        enc_err(
            r#"{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f"}}]}]}"#
        ),
        "invalid_tool_calls"
    );
    assert_eq!(
        enc_err(r#"{"messages":[{"role":"tool","content":"x"}]}"#),
        "invalid_tool_message"
    );
    assert_eq!(
        enc_err(r#"{"messages":[{"role":"function","content":"x"}]}"#),
        "invalid_role"
    );
    assert_eq!(
        enc_err(r#"{"messages":[{"content":"x"}]}"#),
        "invalid_messages"
    );
    assert_eq!(enc_err(r#"[1]"#), "invalid_body");
    assert_eq!(enc_err(r#"{"model":"m"}"#), "missing_messages");
    assert_eq!(enc_err(r#"{"messages":{}}"#), "invalid_messages");
    assert_eq!(
        enc_err(r#"{"messages":[],"max_tokens":0}"#),
        "invalid_max_tokens"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"max_completion_tokens":"9"}"#),
        "invalid_max_tokens"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"reasoning_effort":"max"}"#),
        "invalid_reasoning_effort"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"response_format":{"type":"yaml"}}"#),
        "invalid_response_format"
    );
    assert_eq!(enc_err(r#"{"messages":[],"stop":[1]}"#), "invalid_stop");
    assert_eq!(
        enc_err(r#"{"messages":[],"temperature":"hot"}"#),
        "invalid_parameter"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"stream":"yes"}"#),
        "invalid_stream"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"tools":[{"type":"web_search_preview"}]}"#),
        "unsupported_tool"
    );
    assert_eq!(
        enc_err(r#"{"messages":[],"tools":[{"type":"function","function":{}}]}"#),
        "invalid_tools"
    );
    assert_eq!(
        enc_err(r#"{"messages":[{"role":"system","content":[{"type":"image_url"}]}]}"#),
        "invalid_content"
    );
}

// ---- decode_response ----

fn dec(body: &str) -> Result<(OwnedValue, Usage), String> {
    let mut out = Vec::new();
    let u = decode_response(body.as_bytes(), 1_700_000_000, None, &mut out)?;
    Ok((val_bytes(&out), u))
}

#[test]
fn decode_text_response() {
    let (got, usage) = dec(r#"{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant",
            "content":[{"type":"text","text":"Hi! My name is Claude."}],"model":"claude-sonnet-4-5-20250929",
            "stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":2095,"output_tokens":503}}"#)
        .unwrap();
    let want = json!({
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "claude-sonnet-4-5-20250929",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hi! My name is Claude."},
                     "logprobs": null, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 2095, "completion_tokens": 503, "total_tokens": 2598,
                  "prompt_tokens_details": {"cached_tokens": 0}},
    });
    assert_eq!(got, want);
    assert_eq!(
        usage,
        Usage {
            prompt: 2095,
            completion: 503,
            cached: 0,
            cache_write: 0
        }
    );
}

#[test]
fn decode_tool_use_thinking_and_cache_usage() {
    let (got, usage) = dec(r#"{"id":"msg_01Aq9w938a90dw8q","type":"message","role":"assistant","model":"claude-sonnet-4-5",
            "content":[
                {"type":"thinking","thinking":"The user wants weather.","signature":"EqQB"},
                {"type":"redacted_thinking","data":"xx"},
                {"type":"text","text":"I'll check "},
                {"type":"text","text":"that."},
                {"type":"tool_use","id":"toolu_01A09q90qw90lq917835lq9","name":"get_weather","input":{"location":"San Francisco, CA"}}],
            "stop_reason":"tool_use","stop_sequence":null,
            "usage":{"input_tokens":100,"cache_read_input_tokens":2000,"cache_creation_input_tokens":300,"output_tokens":50}}"#)
        .unwrap();
    let want = json!({
        "id": "msg_01Aq9w938a90dw8q",
        "object": "chat.completion",
        "created": 1_700_000_000u64,
        "model": "claude-sonnet-4-5",
        "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {
            "role": "assistant",
            "content": "I'll check that.",
            "reasoning_content": "The user wants weather.",
            "tool_calls": [{"id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"location\":\"San Francisco, CA\"}"}}]
        }}],
        "usage": {"prompt_tokens": 2400, "completion_tokens": 50, "total_tokens": 2450,
                  "prompt_tokens_details": {"cached_tokens": 2000, "cache_write_tokens": 300}},
    });
    assert_eq!(got, want);
    assert_eq!(
        usage,
        Usage {
            prompt: 2400,
            completion: 50,
            cached: 2000,
            cache_write: 300
        }
    );
    // Only a tool call: content is null, as OpenAI sends it.
    let (got, _) = dec(r#"{"type":"message","id":"m","model":"c","content":[{"type":"tool_use","id":"t","name":"n","input":{}}],"stop_reason":"tool_use"}"#).unwrap();
    assert!(got["choices"][0]["message"]["content"].is_null());
    assert_eq!(
        got["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
        "{}"
    );
}

#[test]
fn decode_stop_reasons() {
    for (stop, finish) in [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
    ] {
        let body = format!(r#"{{"type":"message","content":[],"stop_reason":"{stop}"}}"#);
        assert_eq!(
            dec(&body).unwrap().0["choices"][0]["finish_reason"],
            finish,
            "{stop}"
        );
    }
}

#[test]
fn decode_rejects_non_messages() {
    assert!(dec("not json").is_err());
    assert!(
        dec(r#"{"type":"message"}"#)
            .unwrap_err()
            .contains("content")
    );
    assert!(dec(r#"{"type":"completion","content":[]}"#).is_err());
    let e = dec(r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#)
        .unwrap_err();
    assert_eq!(e, "Anthropic overloaded_error: Overloaded");
}

// ---- StreamDecoder ----

fn decode_stream(events: &[(&str, &str)]) -> (Vec<OwnedValue>, Vec<bool>, StreamDecoder) {
    let mut d = StreamDecoder::new(1_700_000_000);
    let mut out = Vec::new();
    let done = events
        .iter()
        .map(|(n, data)| d.event(n.as_bytes(), data.as_bytes(), &mut out).unwrap())
        .collect();
    (openai_events(&out), done, d)
}

fn chunk(delta: OwnedValue, finish: Option<&str>) -> OwnedValue {
    json!({
        "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000u64,
        "model": "claude-opus-4-1",
        "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
    })
}

#[test]
fn stream_decode_text() {
    let (chunks, done, d) = decode_stream(&[
        ("message_start", START),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
        ),
        ("ping", r#"{"type": "ping"}"#),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"!"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":15}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    assert_eq!(
        done,
        [false, false, false, false, false, false, false, true]
    );
    let want = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"content": "Hello"}), None),
        chunk(json!({"content": "!"}), None),
        chunk(json!({}), Some("stop")),
        json!({
            "id": "msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000u64,
            "model": "claude-opus-4-1",
            "choices": [],
            "usage": {"prompt_tokens": 25, "completion_tokens": 15, "total_tokens": 40,
                      "prompt_tokens_details": {"cached_tokens": 0}},
        }),
    ];
    assert_eq!(chunks, want);
    assert_eq!(
        d.usage(),
        Some(Usage {
            prompt: 25,
            completion: 15,
            cached: 0,
            cache_write: 0
        })
    );
}

#[test]
fn stream_decode_tools_count_calls_not_blocks() {
    let (chunks, done, d) = decode_stream(&[
        ("message_start", START),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Need weather."}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"EqQB"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":0}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"Okay"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":1}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_01T1x1fJ34qAmk2tNTrN7Up6","name":"get_weather","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":""}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"location\":"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":" \"San Francisco, CA\"}"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":2}"#,
        ),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":3,"content_block":{"type":"tool_use","id":"toolu_2","name":"get_time","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{}"}}"#,
        ),
        (
            "content_block_stop",
            r#"{"type":"content_block_stop","index":3}"#,
        ),
        ("some_future_event", r#"{"type":"some_future_event","x":1}"#),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use","stop_sequence":null},"usage":{"output_tokens":89}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ]);
    assert_eq!(done.last(), Some(&true));
    let want = vec![
        chunk(json!({"role": "assistant", "content": ""}), None),
        chunk(json!({"reasoning_content": "Need weather."}), None),
        chunk(json!({"content": "Okay"}), None),
        chunk(
            json!({"tool_calls": [{"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6", "type": "function",
                                          "function": {"name": "get_weather", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"location\":"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 0, "function": {"arguments": " \"San Francisco, CA\"}"}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "id": "toolu_2", "type": "function",
                                          "function": {"name": "get_time", "arguments": ""}}]}),
            None,
        ),
        chunk(
            json!({"tool_calls": [{"index": 1, "function": {"arguments": "{}"}}]}),
            None,
        ),
        chunk(json!({}), Some("tool_calls")),
    ];
    assert_eq!(chunks[..want.len()], want[..]);
    assert_eq!(chunks.len(), want.len() + 1);
    assert_eq!(chunks[want.len()]["usage"]["completion_tokens"], 89);
    assert_eq!(d.usage().unwrap().completion, 89);
}

#[test]
fn stream_decode_cache_usage_and_missing_message_delta() {
    let start = r#"{"type":"message_start","message":{"id":"m","model":"c","usage":{"input_tokens":10,"cache_read_input_tokens":90,"cache_creation_input_tokens":5,"output_tokens":1}}}"#;
    let mut d = StreamDecoder::new(5);
    assert_eq!(d.usage(), None);
    let mut out = Vec::new();
    assert!(!d.event(b"", start.as_bytes(), &mut out).unwrap());
    // No `type` in the payload: the event name decides.
    assert!(d.event(b"message_stop", b"{}", &mut out).unwrap());
    let chunks = openai_events(&out);
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        chunks[2]["usage"],
        json!({"prompt_tokens": 105, "completion_tokens": 1, "total_tokens": 106,
                   "prompt_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 5}})
    );
    assert_eq!(
        d.usage(),
        Some(Usage {
            prompt: 105,
            completion: 1,
            cached: 90,
            cache_write: 5
        })
    );
    // After the end nothing more is written.
    let before = out.len();
    assert!(d.event(b"ping", br#"{"type":"ping"}"#, &mut out).unwrap());
    assert_eq!(out.len(), before);
}

#[test]
fn stream_decode_errors() {
    let mut d = StreamDecoder::new(0);
    let mut out = Vec::new();
    let e = d
        .event(
            b"error",
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
            &mut out,
        )
        .unwrap_err();
    assert_eq!(e.message(), "Anthropic overloaded_error: Overloaded");
    assert_eq!(e.fault(), Fault::Reported);
    assert!(
        d.event(b"content_block_delta", b"{\"type\":", &mut out)
            .is_err()
    );
    assert!(d.event(b"error", b"", &mut out).is_err());
    assert!(!d.event(b"ping", b"", &mut out).unwrap());
    assert!(out.is_empty());
}

// ---- decode_error ----

fn derr(status: u16, body: &str) -> OwnedValue {
    let mut out = Vec::new();
    decode_error(status, body.as_bytes(), &mut out);
    val_bytes(&out)
}

#[test]
fn decode_error_bodies() {
    assert_eq!(
        derr(
            404,
            r#"{"type":"error","error":{"type":"not_found_error","message":"The requested resource could not be found."}}"#
        ),
        json!({"error": {"message": "The requested resource could not be found.", "type": "invalid_request_error", "param": null, "code": "not_found_error"}})
    );
    assert_eq!(
        derr(
            529,
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
        ),
        json!({"error": {"message": "Overloaded", "type": "server_error", "param": null, "code": "overloaded_error"}})
    );
    assert_eq!(
        derr(
            429,
            r#"{"error":{"type":"rate_limit_error","message":"slow"}}"#
        )["error"]["type"],
        "rate_limit_error"
    );
    assert_eq!(derr(401, "{}")["error"]["type"], "authentication_error");
    assert_eq!(derr(403, "{}")["error"]["type"], "permission_error");
    assert_eq!(
        derr(502, "<html>Bad \"Gateway\"</html>"),
        json!({"error": {"message": "The Anthropic upstream returned HTTP 502: <html>Bad \"Gateway\"</html>",
                             "type": "server_error", "param": null, "code": "upstream_error"}})
    );
    assert_eq!(
        derr(503, "")["error"]["message"],
        "The Anthropic upstream returned HTTP 503."
    );
    let mut out = Vec::new();
    decode_error(500, &[0xff, 0xfe, b'\n', 0], &mut out);
    assert!(
        val_bytes(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("HTTP 500")
    );
}

#[test]
fn decode_failures_say_what_was_wrong() {
    let fault = |body: &[u8]| {
        decode_response(body, 1, None, &mut Vec::new())
            .unwrap_err()
            .fault()
    };
    assert_eq!(fault(b"not json"), Fault::Syntax);
    assert_eq!(fault(br#"{"type":"message"}"#), Fault::Shape);
    assert_eq!(
        fault(br#"{"type":"error","error":{"type":"api_error","message":"x"}}"#),
        Fault::Reported
    );
    let e = decode_response(b"{}", 1, None, &mut Vec::new()).unwrap_err();
    assert_eq!(String::from(e.clone()), e.to_string());
}

// ---- field fidelity: response_format as a forced tool, reasoning_effort as thinking ----

#[test]
fn encode_json_schema_as_a_forced_tool_and_json_object_as_any_object() {
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],
        "response_format":{"type":"json_schema","json_schema":{"name":"person","strict":true,
        "schema":{"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}}}"#)
    .unwrap();
    assert_eq!(
        got["tools"],
        json!([{"name": "person", "description": "Answer with JSON that matches this schema.",
            "input_schema": {"type":"object","properties":{"name":{"type":"string"}},"required":["name"]}}])
    );
    assert_eq!(
        got["tool_choice"],
        json!({"type": "tool", "name": "person"})
    );
    // A name Anthropic would refuse as a tool name, and json_object.
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],
        "response_format":{"type":"json_schema","json_schema":{"name":"a b","schema":{"type":"object"}}}}"#)
    .unwrap();
    assert_eq!(
        got["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );
    let got = enc(
        r#"{"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"json_object"}}"#,
    )
    .unwrap();
    assert_eq!(got["tools"][0]["input_schema"], json!({"type": "object"}));
    assert_eq!(
        got["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );
    // Beside the client's own tools: some tool must be called, theirs or the answer.
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],
        "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
        "response_format":{"type":"json_object"}}"#)
    .unwrap();
    assert_eq!(got["tools"].as_array().unwrap().len(), 2);
    assert_eq!(got["tool_choice"], json!({"type": "any"}));
    // text is no structured answer.
    let got =
        enc(r#"{"messages":[{"role":"user","content":"Hi"}],"response_format":{"type":"text"}}"#)
            .unwrap();
    assert!(got.get("tools").is_none());
}

#[test]
fn encode_reasoning_effort_as_thinking_with_room_above_the_budget() {
    let got = enc(
        r#"{"messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"medium",
        "max_tokens":1000,"temperature":0.2,"top_p":0.5}"#,
    )
    .unwrap();
    assert_eq!(
        got["thinking"],
        json!({"type": "enabled", "budget_tokens": 4096})
    );
    assert_eq!(got["max_tokens"], json!(5096));
    assert!(got.get("temperature").is_none() && got.get("top_p").is_none());
    let got =
        enc(r#"{"messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"high"}"#).unwrap();
    assert_eq!(got["thinking"]["budget_tokens"], json!(16384));
    assert_eq!(got["max_tokens"], json!(4096 + 16384));
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"low","max_tokens":9000}"#)
        .unwrap();
    assert_eq!(got["thinking"]["budget_tokens"], json!(1024));
    assert_eq!(got["max_tokens"], json!(9000));
    for effort in ["minimal", "none"] {
        let got = enc(&format!(
            r#"{{"messages":[{{"role":"user","content":"Hi"}}],"reasoning_effort":"{effort}"}}"#
        ))
        .unwrap();
        assert!(got.get("thinking").is_none(), "{effort}");
    }
    // A forced tool (a structured answer) and a tool loop leave thinking out.
    let got = enc(
        r#"{"messages":[{"role":"user","content":"Hi"}],"reasoning_effort":"low",
        "response_format":{"type":"json_object"}}"#,
    )
    .unwrap();
    assert!(got.get("thinking").is_none());
    let got = enc(r#"{"messages":[{"role":"user","content":"Hi"},
        {"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"f","arguments":"{}"}}]},
        {"role":"tool","tool_call_id":"c1","content":"ok"}],
        "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],
        "reasoning_effort":"low"}"#)
    .unwrap();
    assert!(got.get("thinking").is_none());
}

#[test]
fn decode_the_json_tool_input_as_the_answer_text() {
    let body = r#"{"id":"msg_1","type":"message","role":"assistant","model":"claude",
        "content":[{"type":"tool_use","id":"toolu_1","name":"person","input":{"name":"Ada"}}],
        "stop_reason":"tool_use","usage":{"input_tokens":5,"output_tokens":7}}"#;
    let mut out = Vec::new();
    decode_response(body.as_bytes(), 1, Some("person"), &mut out).unwrap();
    let v = val_bytes(&out);
    assert_eq!(
        v["choices"][0]["message"]["content"],
        json!(r#"{"name":"Ada"}"#)
    );
    assert!(v["choices"][0]["message"].get("tool_calls").is_none());
    assert_eq!(v["choices"][0]["finish_reason"], json!("stop"));
    // Without the name it is an ordinary tool call.
    let mut out = Vec::new();
    decode_response(body.as_bytes(), 1, None, &mut out).unwrap();
    let v = val_bytes(&out);
    assert_eq!(v["choices"][0]["finish_reason"], json!("tool_calls"));
}

#[test]
fn stream_decode_the_json_tool_input_as_content_deltas() {
    let mut d = StreamDecoder::new(1).answering_json(Some("person".into()));
    let mut out = Vec::new();
    for (n, data) in [
        ("message_start", START),
        (
            "content_block_start",
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"person","input":{}}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"name\":"}}"#,
        ),
        (
            "content_block_delta",
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"\"Ada\"}"}}"#,
        ),
        (
            "message_delta",
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
        ),
        ("message_stop", r#"{"type":"message_stop"}"#),
    ] {
        d.event(n.as_bytes(), data.as_bytes(), &mut out).unwrap();
    }
    let chunks: Vec<OwnedValue> = openai_events(&out)
        .into_iter()
        .filter(|c| c["choices"].as_array().is_some_and(|a| !a.is_empty()))
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]["delta"]
                .get("content")
                .and_then(|t| t.as_str())
        })
        .collect();
    assert_eq!(text, r#"{"name":"Ada"}"#);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none())
    );
    let finish: Vec<&str> = chunks
        .iter()
        .filter_map(|c| {
            c["choices"][0]
                .get("finish_reason")
                .and_then(|f| f.as_str())
        })
        .collect();
    assert_eq!(finish, ["stop"]);
}
