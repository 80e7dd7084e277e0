use super::*;

fn v(bytes: &[u8]) -> Json {
    parse(bytes).unwrap()
}

fn chat_of(body: &str) -> (Json, Ingress) {
    let i = ingress_request(body.as_bytes()).unwrap();
    (v(&i.chat), i)
}

#[test]
fn a_string_input_with_instructions_becomes_two_messages() {
    let (c, i) = chat_of(
        r#"{"model":"m","instructions":"be brief","input":"hi","max_output_tokens":50,"temperature":0.2,"reasoning":{"effort":"low"},"strategy":"cost_first"}"#,
    );
    assert_eq!(c["messages"][0]["role"], "system");
    assert_eq!(c["messages"][0]["content"], "be brief");
    assert_eq!(c["messages"][1]["role"], "user");
    assert_eq!(c["messages"][1]["content"], "hi");
    assert_eq!(c["max_tokens"], 50);
    assert_eq!(c["temperature"], 0.2);
    assert_eq!(c["reasoning_effort"], "low");
    assert_eq!(c["strategy"], "cost_first", "router fields carried over");
    assert!(c.get("stream").is_none());
    assert!(i.needs_native.is_none());
}

#[test]
fn items_function_calls_and_outputs_become_a_tool_turn() {
    let (c, _) = chat_of(
        r#"{"model":"m","stream":true,"input":[
        {"role":"developer","content":"sys"},
        {"type":"message","role":"user","content":[{"type":"input_text","text":"weather?"},{"type":"input_image","image_url":"data:image/png;base64,AA","detail":"low"}]},
        {"type":"function_call","call_id":"c1","name":"get","arguments":"{\"city\":\"P\"}"},
        {"type":"function_call","call_id":"c2","name":"get","arguments":"{}"},
        {"type":"function_call_output","call_id":"c1","output":"sunny"},
        {"type":"reasoning","id":"rs_1","summary":[]}
        ],
        "tools":[{"type":"function","name":"get","parameters":{"type":"object"},"strict":true}],
        "tool_choice":{"type":"function","name":"get"},
        "text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"},"strict":true}}}"#,
    );
    let m = c["messages"].as_array().unwrap();
    assert_eq!(m[0]["role"], "system");
    assert_eq!(m[1]["content"][1]["type"], "image_url");
    assert_eq!(m[1]["content"][1]["image_url"]["detail"], "low");
    assert_eq!(m[2]["role"], "assistant");
    assert_eq!(m[2]["tool_calls"].as_array().unwrap().len(), 2, "one turn");
    assert_eq!(m[2]["tool_calls"][0]["id"], "c1");
    assert_eq!(m[3]["role"], "tool");
    assert_eq!(m[3]["tool_call_id"], "c1");
    assert_eq!(m[3]["content"], "sunny");
    assert_eq!(m.len(), 4, "reasoning items are not replayed");
    assert_eq!(c["tools"][0]["function"]["name"], "get");
    assert_eq!(c["tools"][0]["function"]["strict"], true);
    assert_eq!(c["tool_choice"]["function"]["name"], "get");
    assert_eq!(c["response_format"]["type"], "json_schema");
    assert_eq!(c["response_format"]["json_schema"]["name"], "w");
    assert_eq!(c["stream"], true);
    assert_eq!(c["stream_options"]["include_usage"], true);
}

#[test]
fn state_and_unknown_tools_are_named() {
    let i =
        ingress_request(br#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#).unwrap();
    assert_eq!(i.needs_native, Some("previous_response_id"));
    let i = ingress_request(br#"{"model":"m","input":"x","background":true}"#).unwrap();
    assert_eq!(i.needs_native, Some("background"));
    let e = ingress_request(br#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#)
        .unwrap_err();
    assert_eq!((e.status, e.code), (400, "unsupported_tool"));
    assert!(e.message.contains("web_search"));
    let e = ingress_request(br#"{"model":"m"}"#).unwrap_err();
    assert_eq!(e.code, "missing_input");
    let e = ingress_request(br#"{"model":"m","input":[{"type":"item_reference","id":"x"}]}"#)
        .unwrap_err();
    assert_eq!(e.code, "unsupported_input_item");
    assert!(ingress_request(b"").is_err());
    assert!(ingress_request(b"[1]").is_err());
}

fn echo() -> Echo {
    ingress_request(br#"{"model":"m","input":"x","instructions":"be brief","temperature":0.5}"#)
        .unwrap()
        .echo
}

#[test]
fn a_whole_answer_becomes_a_response_with_items_and_usage() {
    let chat = br#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"up-m",
      "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant","content":"Let me check.","reasoning_content":"think",
      "tool_calls":[{"id":"call_1","type":"function","function":{"name":"get","arguments":"{\"a\":1}"}}]}}],
      "usage":{"prompt_tokens":10,"completion_tokens":5,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":4},"completion_tokens_details":{"reasoning_tokens":2}}}"#;
    let mut out = Vec::new();
    let u = egress_response(chat, &echo(), 77, &mut out).unwrap();
    assert_eq!((u.prompt, u.completion, u.cached), (10, 5, 4));
    let r = v(&out);
    assert_eq!(r["object"], "response");
    assert_eq!(r["id"], "resp_9");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["created_at"], 77);
    assert_eq!(r["model"], "up-m");
    assert_eq!(r["instructions"], "be brief");
    assert_eq!(r["temperature"], 0.5);
    let o = r["output"].as_array().unwrap();
    assert_eq!(o[0]["type"], "reasoning");
    assert_eq!(o[1]["type"], "message");
    assert_eq!(o[1]["content"][0]["type"], "output_text");
    assert_eq!(o[1]["content"][0]["text"], "Let me check.");
    assert_eq!(o[2]["type"], "function_call");
    assert_eq!(o[2]["call_id"], "call_1");
    assert_eq!(o[2]["arguments"], "{\"a\":1}");
    assert_eq!(r["output_text"], "Let me check.");
    assert_eq!(r["usage"]["input_tokens"], 10);
    assert_eq!(r["usage"]["output_tokens"], 5);
    assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 4);
    assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 2);
    // cut by the token limit: incomplete, with the reason
    let cut = br#"{"id":"x","choices":[{"finish_reason":"length","message":{"content":"abc"}}]}"#;
    let mut out = Vec::new();
    egress_response(cut, &echo(), 1, &mut out).unwrap();
    let r = v(&out);
    assert_eq!(r["status"], "incomplete");
    assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
    assert!(egress_response(b"{", &echo(), 1, &mut Vec::new()).is_err());
}

/// Every event of `out` as (type, data).
fn events(out: &[u8]) -> Vec<(String, Json)> {
    let text = String::from_utf8(out.to_vec()).unwrap();
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            let mut lines = e.lines();
            let name = lines.next().unwrap().strip_prefix("event: ").unwrap();
            let data = lines.next().unwrap().strip_prefix("data: ").unwrap();
            (name.to_string(), v(data.as_bytes()))
        })
        .collect()
}

#[test]
fn a_stream_is_the_event_sequence_sdks_parse() {
    let mut e = StreamEncoder::new(echo(), 5);
    let mut out = Vec::new();
    for chunk in [
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":"Hel"}}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]}}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"a\":"}}]}}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"1}"}}]}}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        r#"{"id":"chatcmpl-1","model":"up","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}"#,
    ] {
        e.chunk(chunk.as_bytes(), &mut out).unwrap();
    }
    e.finish(&mut out);
    e.finish(&mut out);
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (n, (kind, data)) in ev.iter().enumerate() {
        assert_eq!(data["sequence_number"], n as u64, "{kind}");
        assert_eq!(data["type"].as_str(), Some(kind.as_str()));
    }
    assert_eq!(ev[6].1["text"], "Hello");
    assert_eq!(ev[12].1["arguments"], "{\"a\":1}");
    let done = &ev[14].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"].as_array().unwrap().len(), 2);
    assert_eq!(done["output"][1]["call_id"], "call_1");
    assert_eq!(done["usage"]["output_tokens"], 4);
    assert_eq!(done["output_text"], "Hello");
}

#[test]
fn a_broken_stream_ends_with_response_failed_and_nothing_after() {
    let mut e = StreamEncoder::new(echo(), 5);
    let mut out = Vec::new();
    e.chunk(
        br#"{"id":"c","model":"up","choices":[{"index":0,"delta":{"content":"a"}}]}"#,
        &mut out,
    )
    .unwrap();
    let err = Error::new(
        502,
        crate::error::Kind::Server,
        "upstream_stream_cut",
        "cut",
    );
    e.error(&err, &mut out);
    e.finish(&mut out);
    let ev = events(&out);
    let (kind, data) = ev.last().unwrap();
    assert_eq!(kind, "response.failed");
    assert_eq!(data["response"]["status"], "failed");
    assert_eq!(data["response"]["error"]["code"], "upstream_stream_cut");
    // an empty stream that finishes is still a whole sequence
    let mut e = StreamEncoder::new(echo(), 5);
    let mut out = Vec::new();
    e.finish(&mut out);
    let kinds: Vec<String> = events(&out).into_iter().map(|(k, _)| k).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.completed"
        ]
    );
}

#[test]
fn native_streams_end_at_their_terminal_event() {
    assert!(is_terminal_event(b"response.completed", b"{}"));
    assert!(is_terminal_event(
        b"",
        br#"{"type":"response.failed","x":1}"#
    ));
    assert!(!is_terminal_event(
        b"response.output_text.delta",
        br#"{"delta":"response.completed"}"#
    ));
}
