//! `ingress_request`, `egress_response`, `StreamEncoder` and the error body.

use super::*;

fn ingress(body: &str, stream: bool) -> Json {
    j(&ingress_request(body.as_bytes(), "gemini-2.0-flash", stream).unwrap())
}

#[test]
fn ingress_snake_case_request_with_media_tools_and_config() {
    let got = ingress(
        r#"{"system_instruction":{"parts":[{"text":"You are a cat."},{"text":"Be brief."}]},
              "contents":[
                {"role":"user","parts":[{"text":"What is in this picture?"},
                    {"inline_data":{"mime_type":"image/jpeg","data":"/9j/4AAQ"}}]},
                {"role":"model","parts":[{"text":"thinking","thought":true},
                    {"functionCall":{"name":"lookup","args":{"q":"cat"}},"thoughtSignature":"c2ln"}]},
                {"role":"user","parts":[{"functionResponse":{"name":"lookup","response":{"result":"a cat"}}}]},
                {"parts":[{"text":"And this?"},{"file_data":{"mime_type":"image/png","file_uri":"https://example.com/b.png"}}]}],
              "generation_config":{"temperature":1,"topP":0.5,"topK":40,"maxOutputTokens":50,
                "stopSequences":["x"],"candidateCount":1,"seed":3,"presencePenalty":0.1,"frequencyPenalty":0.2,
                "responseMimeType":"application/json",
                "responseSchema":{"type":"OBJECT","properties":{"a":{"type":"STRING","nullable":true}},"propertyOrdering":["a"]}},
              "tools":[{"functionDeclarations":[{"name":"lookup","description":"Look things up",
                "parameters":{"type":"OBJECT","properties":{"q":{"type":"STRING"}},"required":["q"]}}]}],
              "toolConfig":{"functionCallingConfig":{"mode":"AUTO"}},
              "safetySettings":[{"category":"HARM_CATEGORY_HARASSMENT","threshold":"BLOCK_NONE"}]}"#,
        true,
    );
    let want = js(
        r#"{"model":"gemini-2.0-flash","stream":true,"stream_options":{"include_usage":true},
            "messages":[
                {"role":"system","content":"You are a cat.\nBe brief."},
                {"role":"user","content":[{"type":"text","text":"What is in this picture?"},
                    {"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/4AAQ"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_0","type":"function",
                    "function":{"name":"lookup","arguments":"{\"q\":\"cat\"}"},
                    "extra_content":{"google":{"thought_signature":"c2ln"}}}]},
                {"role":"tool","tool_call_id":"call_0","content":"{\"result\":\"a cat\"}"},
                {"role":"user","content":[{"type":"text","text":"And this?"},
                    {"type":"image_url","image_url":{"url":"https://example.com/b.png"}}]}],
            "temperature":1,"top_p":0.5,"max_tokens":50,"stop":["x"],"n":1,"seed":3,
            "presence_penalty":0.1,"frequency_penalty":0.2,
            "response_format":{"type":"json_schema","json_schema":{"name":"response","schema":
                {"type":"object","properties":{"a":{"type":["string","null"]}}}}},
            "tools":[{"type":"function","function":{"name":"lookup","description":"Look things up",
                "parameters":{"type":"object","properties":{"q":{"type":"string"}},"required":["q"]}}}],
            "tool_choice":"auto"}"#,
    );
    assert_eq!(got, want);
}

#[test]
fn ingress_pairs_results_with_calls_and_orders_tool_messages_first() {
    let got = ingress(
        r#"{"contents":[
                {"role":"user","parts":[{"text":"go"}]},
                {"role":"model","parts":[
                    {"functionCall":{"name":"f","args":{"n":1}}},
                    {"functionCall":{"id":"given","name":"g","args":{}}},
                    {"functionCall":{"name":"f","args":{"n":2}}}]},
                {"role":"user","parts":[
                    {"text":"here you are"},
                    {"functionResponse":{"id":"given","name":"g","response":{"content":"G"}}},
                    {"functionResponse":{"name":"f","response":{"output":1}}},
                    {"functionResponse":{"name":"f","response":{"output":2}}},
                    {"functionResponse":{"name":"orphan","response":{}}}]}],
              "generationConfig":{"responseMimeType":"application/json"},
              "tools":[{"function_declarations":[{"name":"f"},{"name":"g"},{"name":"h"}]}],
              "tool_config":{"function_calling_config":{"mode":"ANY","allowed_function_names":["f","g"]}}}"#,
        false,
    );
    let want = js(r#"{"model":"gemini-2.0-flash","stream":false,
            "messages":[
                {"role":"user","content":"go"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_0","type":"function","function":{"name":"f","arguments":"{\"n\":1}"}},
                    {"id":"given","type":"function","function":{"name":"g","arguments":"{}"}},
                    {"id":"call_2","type":"function","function":{"name":"f","arguments":"{\"n\":2}"}}]},
                {"role":"tool","tool_call_id":"given","content":"G"},
                {"role":"tool","tool_call_id":"call_0","content":"{\"output\":1}"},
                {"role":"tool","tool_call_id":"call_2","content":"{\"output\":2}"},
                {"role":"tool","tool_call_id":"call_3","content":"{}"},
                {"role":"user","content":"here you are"}],
            "response_format":{"type":"json_object"},
            "tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"g"}}],
            "tool_choice":"required"}"#);
    assert_eq!(got, want);

    let got = ingress(
        r#"{"contents":[{"parts":[{"text":"x"}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}},
                "tools":[{"functionDeclarations":[{"name":"f"}]}]}"#,
        false,
    );
    assert_eq!(
        got["tool_choice"],
        js(r#"{"type":"function","function":{"name":"f"}}"#)
    );
    let got = ingress(
        r#"{"contents":[{"parts":[{"text":"x"}]}],"toolConfig":{"functionCallingConfig":{"mode":"NONE"}}}"#,
        false,
    );
    assert_eq!(got["tool_choice"], "none");
}

#[test]
fn ingress_rejects_bad_requests() {
    let cases = [
        ("", "empty_body"),
        ("{nope", "invalid_json"),
        ("[1]", "invalid_body"),
        ("{}", "invalid_contents"),
        (r#"{"contents":[]}"#, "invalid_contents"),
        (r#"{"contents":{"role":"user"}}"#, "invalid_contents"),
        (r#"{"contents":[{"role":"user"}]}"#, "invalid_contents"),
        (
            r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#,
            "invalid_contents",
        ),
        (
            r#"{"contents":[{"parts":[{"inlineData":{"mimeType":"video/mp4","data":"AA"}}]}]}"#,
            "unsupported_content",
        ),
        (
            r#"{"contents":[{"parts":[{"fileData":{"mimeType":"application/pdf","fileUri":"gs://b/x.pdf"}}]}]}"#,
            "unsupported_content",
        ),
        (
            r#"{"contents":[{"parts":[{"executableCode":{"code":"1"}}]}]}"#,
            "unsupported_content",
        ),
        (
            r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"googleSearch":{}}]}"#,
            "unsupported_tool",
        ),
        (
            r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"temperature":"warm"}}"#,
            "invalid_parameter",
        ),
    ];
    for (body, code) in cases {
        let e = ingress_request(body.as_bytes(), "m", false).unwrap_err();
        assert_eq!((e.status, e.code), (400, code), "{body}");
    }
}

#[test]
fn egress_full_completion() {
    let body = br#"{"id":"chatcmpl-9","object":"chat.completion","created":1,"model":"gpt-4o",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Sunny.",
                "reasoning_content":"check","tool_calls":[{"id":"call_1","type":"function",
                "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                "finish_reason":"tool_calls"}],
            "usage":{"prompt_tokens":30,"completion_tokens":12,"total_tokens":42,
                "prompt_tokens_details":{"cached_tokens":10},
                "completion_tokens_details":{"reasoning_tokens":2}}}"#;
    let mut out = Vec::new();
    let usage = egress_response(body, &mut out).unwrap();
    assert_eq!(
        usage,
        Usage {
            prompt: 30,
            completion: 12,
            cached: 10,
            cache_write: 0
        }
    );
    let want = js(r#"{"candidates":[{"content":{"role":"model","parts":[
                {"text":"check","thought":true},{"text":"Sunny."},
                {"functionCall":{"id":"call_1","name":"get_weather","args":{"city":"Paris"}}}]},
                "finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":30,"candidatesTokenCount":10,"totalTokenCount":42,
                "cachedContentTokenCount":10,"thoughtsTokenCount":2},
            "modelVersion":"gpt-4o","responseId":"chatcmpl-9"}"#);
    assert_eq!(j(&out), want);

    for (openai, gemini) in [
        ("stop", "STOP"),
        ("length", "MAX_TOKENS"),
        ("tool_calls", "STOP"),
        ("content_filter", "SAFETY"),
    ] {
        let body = format!(
            r#"{{"choices":[{{"index":0,"message":{{"role":"assistant","content":"x"}},"finish_reason":"{openai}"}}],"usage":{{"prompt_tokens":1,"completion_tokens":1}}}}"#
        );
        let mut out = Vec::new();
        egress_response(body.as_bytes(), &mut out).unwrap();
        let got = j(&out);
        assert_eq!(got["candidates"][0]["finishReason"], gemini, "{openai}");
        assert_eq!(
            got["usageMetadata"],
            js(r#"{"promptTokenCount":1,"candidatesTokenCount":1,"totalTokenCount":2}"#)
        );
    }

    for body in [
            &b"nope"[..],
            br#"{"error":{"message":"quota","type":"rate_limit_error"}}"#,
            br#"{"id":"x"}"#,
            br#"{"choices":[{"message":{"tool_calls":[{"id":"c","function":{"name":"f","arguments":"{oops"}}]}}]}"#,
        ] {
            let mut out = Vec::new();
            assert!(egress_response(body, &mut out).is_err());
        }
}

#[test]
fn stream_encode_text_tool_calls_and_final_usage() {
    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    let head = r#""id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o""#;
    let chunks = [
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":""}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"content":"Hel"}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"content":"lo"}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"call_1","type":"function","function":{{"name":"f","arguments":""}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":"{{\"a\""}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"function":{{"arguments":":1}}"}}}}]}},"finish_reason":null}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[{{"index":0,"delta":{{}},"finish_reason":"tool_calls"}}]}}"#
        ),
        format!(
            r#"{{{head},"choices":[],"usage":{{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}}}"#
        ),
        "[DONE]".to_owned(),
    ];
    for c in &chunks {
        e.chunk(c.as_bytes(), &mut out).unwrap();
    }
    let len = out.len();
    e.finish(&mut out);
    e.finish(&mut out);
    assert_eq!(out.len(), len, "the usage chunk already closed the stream");
    let tail = r#","modelVersion":"gpt-4o","responseId":"chatcmpl-1"}"#;
    let want: Vec<Json> = [
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"Hel"}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":"lo"}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"functionCall":{"id":"call_1","name":"f","args":{"a":1}}}]},"index":0}]"#,
            r#"{"candidates":[{"content":{"role":"model","parts":[{"text":""}]},"finishReason":"STOP","index":0}],
                "usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":7,"totalTokenCount":12}"#,
        ]
        .iter()
        .map(|s| js(&format!("{s}{tail}")))
        .collect();
    assert_eq!(events(&out, "\r\n\r\n"), want);
    assert_eq!(
        e.usage(),
        Some(Usage {
            prompt: 5,
            completion: 7,
            cached: 0,
            cache_write: 0
        })
    );
}

#[test]
fn stream_encode_finish_without_usage_and_errors() {
    let mut e = StreamEncoder::default();
    let mut out = Vec::new();
    e.chunk(
            br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"reasoning_content":"r","content":"t"}}]}"#,
            &mut out,
        )
        .unwrap();
    e.chunk(
        br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}"#,
        &mut out,
    )
    .unwrap();
    assert_eq!(e.usage(), None);
    e.finish(&mut out);
    let got = events(&out, "\r\n\r\n");
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0]["candidates"][0]["content"]["parts"],
        js(r#"[{"text":"r","thought":true},{"text":"t"}]"#)
    );
    assert_eq!(got[1]["candidates"][0]["finishReason"], "MAX_TOKENS");
    assert_eq!(got[1]["usageMetadata"]["totalTokenCount"], 0);

    let mut e = StreamEncoder::new();
    let mut out = Vec::new();
    let bad_args = br#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"x","function":{"name":"f","arguments":"{"}}]},"finish_reason":"tool_calls"}]}"#;
    assert!(e.chunk(bad_args, &mut out).is_err());
    assert!(
        e.chunk(br#"{"error":{"message":"upstream died"}}"#, &mut out)
            .unwrap_err()
            .message()
            .contains("upstream died")
    );
    assert!(e.chunk(b"{", &mut out).is_err());
}

#[test]
fn error_body_uses_grpc_status_names() {
    let cases = [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ];
    for (status, name) in cases {
        let err = Error::new(status, kind_for_status(status), "x", "what \"went\" wrong");
        assert_eq!(
            j(&error_body(&err)),
            json!({"error": {"code": status, "message": "what \"went\" wrong", "status": name}})
        );
    }
}
