//! `encode_request`, `decode_response`, `StreamDecoder` and `decode_error`.

use super::*;

#[test]
fn encode_roles_system_merging_and_generation_config() {
    let got = encode(
        r#"{"model":"gemini-2.0-flash","stream":true,"messages":[
                {"role":"system","content":"You are a cat."},
                {"role":"developer","content":[{"type":"text","text":"Answer briefly."}]},
                {"role":"user","content":"Hello"},
                {"role":"user","content":[{"type":"text","text":"Are you there?"}]},
                {"role":"assistant","content":"Meow."},
                {"role":"user","content":"Why?"}],
              "temperature":0.7,"top_p":0.9,"max_tokens":100,"max_completion_tokens":200,
              "stop":"END","n":2,"seed":42,"presence_penalty":0.5,"frequency_penalty":0.25,
              "response_format":{"type":"json_object"}}"#,
    );
    let want = js(r#"{
            "systemInstruction":{"parts":[{"text":"You are a cat."},{"text":"Answer briefly."}]},
            "contents":[
                {"role":"user","parts":[{"text":"Hello"},{"text":"Are you there?"}]},
                {"role":"model","parts":[{"text":"Meow."}]},
                {"role":"user","parts":[{"text":"Why?"}]}],
            "generationConfig":{"temperature":0.7,"topP":0.9,"maxOutputTokens":200,
                "stopSequences":["END"],"seed":42,"presencePenalty":0.5,
                "frequencyPenalty":0.25,"responseMimeType":"application/json"}}"#);
    assert_eq!(
        got, want,
        "a stream follows one candidate: no candidateCount"
    );
    // max_tokens alone, stop as a list, no config members at all.
    let got =
        encode(r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":5,"stop":["a","b"]}"#);
    assert_eq!(
        got["generationConfig"],
        js(r#"{"maxOutputTokens":5,"stopSequences":["a","b"]}"#)
    );
    let got = encode(r#"{"messages":[{"role":"user","content":"x"}]}"#);
    assert_eq!(
        got,
        js(r#"{"contents":[{"role":"user","parts":[{"text":"x"}]}]}"#)
    );
}

#[test]
fn encode_images_audio_and_files() {
    let got = encode(
        r#"{"messages":[{"role":"user","content":[
                {"type":"text","text":"Compare"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},
                {"type":"image_url","image_url":{"url":"https://example.com/a/cat.WEBP?size=2#x","detail":"high"}},
                {"type":"image_url","image_url":"http://example.com/photo"},
                {"type":"input_audio","input_audio":{"data":"UklGRg==","format":"wav"}},
                {"type":"file","file":{"filename":"a.pdf","file_data":"data:application/pdf;base64,JVBERi0="}}
            ]}]}"#,
    );
    let want = js(r#"[
            {"text":"Compare"},
            {"inlineData":{"mimeType":"image/png","data":"iVBORw0KGgo="}},
            {"fileData":{"mimeType":"image/webp","fileUri":"https://example.com/a/cat.WEBP?size=2#x"}},
            {"fileData":{"mimeType":"image/jpeg","fileUri":"http://example.com/photo"}},
            {"inlineData":{"mimeType":"audio/wav","data":"UklGRg=="}},
            {"inlineData":{"mimeType":"application/pdf","data":"JVBERi0="}}]"#);
    assert_eq!(got["contents"][0]["parts"], want);

    for bad_url in ["ftp://example.com/a.png", "data:image/png,notbase64"] {
        let e = encode_err(&format!(
            r#"{{"messages":[{{"role":"user","content":[{{"type":"image_url","image_url":{{"url":"{bad_url}"}}}}]}}]}}"#
        ));
        assert_eq!((e.status, e.code), (400, "invalid_image_url"), "{bad_url}");
    }
    let e = encode_err(
        r#"{"messages":[{"role":"user","content":[{"type":"file","file":{"file_id":"file-1"}}]}]}"#,
    );
    assert_eq!(e.code, "unsupported_content");
    let e = encode_err(r#"{"messages":[{"role":"user","content":[{"type":"video","video":{}}]}]}"#);
    assert_eq!(e.code, "unsupported_content");
}

#[test]
fn encode_tool_calls_results_and_declarations() {
    let got = encode(
        r#"{"messages":[
                {"role":"user","content":"Weather in Paris and London?"},
                {"role":"assistant","content":null,"tool_calls":[
                    {"id":"call_a","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                     "extra_content":{"google":{"thought_signature":"sig-a"}}},
                    {"id":"call_b","type":"function","function":{"name":"get_time","arguments":"{\"city\":\"London\"}"}}]},
                {"role":"tool","tool_call_id":"call_a","content":"{\"temp\":21}"},
                {"role":"tool","tool_call_id":"call_b","content":"noon"},
                {"role":"user","content":"Thanks"},
                {"role":"assistant","content":"Calling again.","tool_calls":[
                    {"id":"call_c","type":"function","function":{"name":"get_time","arguments":""}}]},
                {"role":"tool","tool_call_id":"call_c","content":[{"type":"text","text":"[1,2]"}]}],
              "tools":[
                {"type":"function","function":{"name":"get_weather","description":"Weather for a city",
                  "parameters":{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
                    "properties":{"city":{"type":"string","description":"City name"}},
                    "required":["city"],"additionalProperties":false}}},
                {"type":"function","function":{"name":"get_time","parameters":{"type":"object","properties":{}}}}],
              "tool_choice":{"type":"function","function":{"name":"get_weather"}}}"#,
    );
    let want = js(r#"{
            "contents":[
                {"role":"user","parts":[{"text":"Weather in Paris and London?"}]},
                {"role":"model","parts":[
                    {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"sig-a"},
                    {"functionCall":{"name":"get_time","args":{"city":"London"}}}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"get_weather","response":{"temp":21}}},
                    {"functionResponse":{"name":"get_time","response":{"content":"noon"}}},
                    {"text":"Thanks"}]},
                {"role":"model","parts":[
                    {"text":"Calling again."},
                    {"functionCall":{"name":"get_time","args":{}},"thoughtSignature":"skip_thought_signature_validator"}]},
                {"role":"user","parts":[
                    {"functionResponse":{"name":"get_time","response":{"content":"[1,2]"}}}]}],
            "tools":[{"functionDeclarations":[
                {"name":"get_weather","description":"Weather for a city","parameters":{"type":"object",
                  "properties":{"city":{"type":"string","description":"City name"}},"required":["city"]}},
                {"name":"get_time"}]}],
            "toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}}}"#);
    assert_eq!(got, want);
}

#[test]
fn encode_tool_choice_modes_and_legacy_functions() {
    for (choice, mode) in [("auto", "AUTO"), ("none", "NONE"), ("required", "ANY")] {
        let got = encode(&format!(
            r#"{{"messages":[{{"role":"user","content":"x"}}],"tool_choice":"{choice}"}}"#
        ));
        assert_eq!(
            got["toolConfig"],
            json!({"functionCallingConfig": {"mode": mode}}),
            "{choice}"
        );
    }
    let got = encode(
        r#"{"messages":[{"role":"user","content":"x"},
                {"role":"assistant","function_call":{"name":"f","arguments":"{}"}},
                {"role":"function","name":"f","content":"done"}],
              "functions":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}],
              "function_call":{"name":"f"}}"#,
    );
    assert_eq!(
        got["tools"],
        js(
            r#"[{"functionDeclarations":[{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}]}]"#
        )
    );
    assert_eq!(
        got["toolConfig"],
        js(r#"{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}}"#)
    );
    assert_eq!(
        got["contents"],
        js(r#"[{"role":"user","parts":[{"text":"x"}]},
                {"role":"model","parts":[{"functionCall":{"name":"f","args":{}},
                    "thoughtSignature":"skip_thought_signature_validator"}]},
                {"role":"user","parts":[{"functionResponse":{"name":"f","response":{"content":"done"}}}]}]"#)
    );
    let e = encode_err(r#"{"messages":[{"role":"user","content":"x"}],"tool_choice":"sometimes"}"#);
    assert_eq!(e.code, "invalid_tool_choice");
}

#[test]
fn encode_json_schema_is_reduced_to_gemini_schema() {
    let got = encode(
        r#"{"messages":[{"role":"user","content":"x"}],
              "response_format":{"type":"json_schema","json_schema":{"name":"r","strict":true,"schema":{
                "type":"object","additionalProperties":false,"$defs":{},
                "properties":{
                    "name":{"type":["string","null"],"minLength":1},
                    "kind":{"const":"cat"},
                    "tags":{"type":"array","items":{"type":"string","additionalProperties":false}},
                    "either":{"oneOf":[{"type":"integer","exclusiveMinimum":0},{"type":"string"}]}},
                "required":["name","kind","tags","either"]}}}}"#,
    );
    let want = js(r#"{"responseMimeType":"application/json","responseSchema":{
            "type":"object",
            "properties":{
                "name":{"type":"string","nullable":true,"minLength":1},
                "kind":{"type":"string","enum":["cat"]},
                "tags":{"type":"array","items":{"type":"string"}},
                "either":{"anyOf":[{"type":"integer"},{"type":"string"}]}},
            "required":["name","kind","tags","either"]}}"#);
    assert_eq!(got["generationConfig"], want);
}

#[test]
fn encode_rejects_what_gemini_cannot_take() {
    let cases = [
        (r#"{"model":"m"}"#, "invalid_messages"),
        (r#"[]"#, "invalid_body"),
        (
            r#"{"messages":[{"role":"system","content":"only rules"}]}"#,
            "invalid_messages",
        ),
        (
            r#"{"messages":[{"content":"no role"}]}"#,
            "invalid_messages",
        ),
        (
            r#"{"messages":[{"role":"robot","content":"x"}]}"#,
            "invalid_messages",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{not json"}}]}]}"#,
            "invalid_tool_arguments",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}"#,
            "invalid_tool_arguments",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"nowhere","content":"r"}]}"#,
            "invalid_tool_message",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"temperature":"hot"}"#,
            "invalid_parameter",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}"#,
            "unsupported_tool",
        ),
        (
            r#"{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"yaml"}}"#,
            "invalid_response_format",
        ),
        (
            r#"{"messages":[{"role":"user","content":42}]}"#,
            "invalid_content",
        ),
    ];
    for (body, code) in cases {
        let e = encode_err(body);
        assert_eq!(
            (e.status, e.kind, e.code),
            (400, Kind::InvalidRequest, code),
            "{body}"
        );
    }
}

#[test]
fn decode_text_thoughts_and_usage() {
    let body = br#"{"candidates":[{"content":{"parts":[
                {"text":"Let me think.","thought":true},{"text":"Hello"},{"text":" world"}],
                "role":"model"},"finishReason":"STOP","index":0}],
            "usageMetadata":{"promptTokenCount":10,"candidatesTokenCount":5,"totalTokenCount":25,
                "thoughtsTokenCount":10,"cachedContentTokenCount":4},
            "modelVersion":"gemini-2.5-flash","responseId":"resp-1"}"#;
    let mut out = Vec::new();
    let usage = decode_response(body, "asked", "chatcmpl-x", 1700000000, &mut out).unwrap();
    assert_eq!(
        usage,
        Usage {
            prompt: 10,
            completion: 15,
            cached: 4,
            cache_write: 0
        }
    );
    let want = js(
        r#"{"id":"resp-1","object":"chat.completion","created":1700000000,
            "model":"gemini-2.5-flash",
            "choices":[{"index":0,"message":{"role":"assistant","content":"Hello world",
                "reasoning_content":"Let me think."},"finish_reason":"stop"}],
            "usage":{"prompt_tokens":10,"completion_tokens":15,"total_tokens":25,
                "prompt_tokens_details":{"cached_tokens":4},
                "completion_tokens_details":{"reasoning_tokens":10}}}"#,
    );
    assert_eq!(j(&out), want);
}

#[test]
fn decode_function_calls_and_fallback_ids() {
    let body = br#"{"candidates":[{"content":{"role":"model","parts":[
                {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"},
                {"functionCall":{"id":"fc-9","name":"get_time"}}]},
            "finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":20,"candidatesTokenCount":8,"totalTokenCount":28}}"#;
    let mut out = Vec::new();
    let usage = decode_response(body, "gemini-2.0-flash", "chatcmpl-7", 5, &mut out).unwrap();
    assert_eq!((usage.prompt, usage.completion, usage.cached), (20, 8, 0));
    let want = js(
        r#"{"id":"chatcmpl-7","object":"chat.completion","created":5,
            "model":"gemini-2.0-flash",
            "choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
                "content":null,"tool_calls":[
                {"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                 "extra_content":{"google":{"thought_signature":"c2ln"}}},
                {"id":"fc-9","type":"function","function":{"name":"get_time","arguments":"{}"}}]}}],
            "usage":{"prompt_tokens":20,"completion_tokens":8,"total_tokens":28,
                "prompt_tokens_details":{"cached_tokens":0},
                "completion_tokens_details":{"reasoning_tokens":0}}}"#,
    );
    assert_eq!(j(&out), want);
}

#[test]
fn decode_finish_reasons() {
    let cases = [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("OTHER", "stop"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("LANGUAGE", "stop"),
    ];
    for (gemini, openai) in cases {
        let body = format!(
            r#"{{"candidates":[{{"content":{{"role":"model","parts":[{{"text":"x"}}]}},"finishReason":"{gemini}"}}]}}"#
        );
        let mut out = Vec::new();
        decode_response(body.as_bytes(), "m", "i", 0, &mut out).unwrap();
        assert_eq!(j(&out)["choices"][0]["finish_reason"], openai, "{gemini}");
    }
    // Function calls cut off by the token limit stay `length`.
    let body = br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"f","args":{}}}]},"finishReason":"MAX_TOKENS"}]}"#;
    let mut out = Vec::new();
    decode_response(body, "m", "i", 0, &mut out).unwrap();
    assert_eq!(j(&out)["choices"][0]["finish_reason"], "length");
}

#[test]
fn decode_blocked_prompt_and_bad_bodies() {
    let body = br#"{"promptFeedback":{"blockReason":"SAFETY","safetyRatings":[]},
            "usageMetadata":{"promptTokenCount":7,"totalTokenCount":7},"modelVersion":"gemini-2.0-flash"}"#;
    let mut out = Vec::new();
    let usage = decode_response(body, "m", "chatcmpl-1", 9, &mut out).unwrap();
    assert_eq!((usage.prompt, usage.completion), (7, 0));
    let got = j(&out);
    assert_eq!(
        got["choices"],
        js(
            r#"[{"index":0,"message":{"role":"assistant","content":""},"finish_reason":"content_filter"}]"#
        )
    );
    assert_eq!(got["model"], "gemini-2.0-flash");

    for body in [
        &b"not json"[..],
        b"[]",
        b"{}",
        br#"{"error":{"code":500,"message":"boom","status":"INTERNAL"}}"#,
    ] {
        let mut out = Vec::new();
        assert!(decode_response(body, "m", "i", 0, &mut out).is_err());
    }
}

#[test]
fn stream_decode_text_calls_finish_and_usage() {
    let mut d = StreamDecoder::new("asked", "chatcmpl-s", 77);
    let mut out = Vec::new();
    let evs: [&[u8]; 5] = [
            br#"{"candidates":[{"content":{"parts":[{"text":"Hel"}],"role":"model"},"index":0}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":1,"totalTokenCount":4},"modelVersion":"gemini-2.0-flash","responseId":"r1"}"#,
            br#"{"candidates":[{"content":{"parts":[{"text":"lo","thought":false}],"role":"model"},"index":0}],"responseId":"other"}"#,
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"a","args":{"x":1}}}],"role":"model"}}]}"#,
            br#"{"candidates":[{"content":{"parts":[{"functionCall":{"name":"b","args":{}}}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":9,"totalTokenCount":12}}"#,
            b"  ",
        ];
    for e in evs {
        d.event(e, &mut out).unwrap();
    }
    assert!(d.finished());
    d.finish(&mut out);
    let len = out.len();
    d.finish(&mut out);
    assert_eq!(out.len(), len, "finish is idempotent");

    let got = events(&out, "\n\n");
    let chunk = |choices: &str| {
        js(&format!(
            r#"{{"id":"r1","object":"chat.completion.chunk","created":77,"model":"gemini-2.0-flash","choices":{choices}}}"#
        ))
    };
    let want = vec![
        chunk(r#"[{"index":0,"delta":{"role":"assistant","content":"Hel"},"finish_reason":null}]"#),
        chunk(r#"[{"index":0,"delta":{"content":"lo"},"finish_reason":null}]"#),
        chunk(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_0","type":"function","function":{"name":"a","arguments":"{\"x\":1}"}}]},"finish_reason":null}]"#,
        ),
        chunk(
            r#"[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_1","type":"function","function":{"name":"b","arguments":"{}"}}]},"finish_reason":null}]"#,
        ),
        chunk(r#"[{"index":0,"delta":{},"finish_reason":"tool_calls"}]"#),
        js(
            r#"{"id":"r1","object":"chat.completion.chunk","created":77,"model":"gemini-2.0-flash","choices":[],
                "usage":{"prompt_tokens":3,"completion_tokens":9,"total_tokens":12,
                "prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}}"#,
        ),
    ];
    assert_eq!(got, want);
    assert_eq!(
        d.usage(),
        Some(Usage {
            prompt: 3,
            completion: 9,
            cached: 0,
            cache_write: 0
        })
    );
}

#[test]
fn stream_decode_thoughts_length_and_unfinished_streams() {
    let mut d = StreamDecoder::new("m", "id", 1);
    let mut out = Vec::new();
    d.event(
        br#"{"candidates":[{"content":{"parts":[{"text":"hmm","thought":true}]}}]}"#,
        &mut out,
    )
    .unwrap();
    d.event(
        br#"{"candidates":[{"content":{"parts":[{"text":"ok"}]},"finishReason":"MAX_TOKENS"}]}"#,
        &mut out,
    )
    .unwrap();
    let got = events(&out, "\n\n");
    assert_eq!(
        got[0]["choices"][0]["delta"],
        js(r#"{"role":"assistant","reasoning_content":"hmm"}"#)
    );
    assert_eq!(got[1]["choices"][0]["delta"], js(r#"{"content":"ok"}"#));
    assert_eq!(got[2]["choices"][0]["finish_reason"], "length");
    assert_eq!(got.len(), 3);

    // The upstream ended without a finishReason: finish supplies one, and a zero usage.
    let mut d = StreamDecoder::new("m", "id", 1);
    let mut out = Vec::new();
    d.event(
        br#"{"candidates":[{"content":{"parts":[{"text":"par"}]}}]}"#,
        &mut out,
    )
    .unwrap();
    assert!(!d.finished());
    d.finish(&mut out);
    let got = events(&out, "\n\n");
    assert_eq!(got.len(), 3);
    assert_eq!(got[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(got[2]["usage"]["total_tokens"], 0);
    assert_eq!(d.usage(), None);

    // A blocked prompt: the only chunk carries the role and content_filter.
    let mut d = StreamDecoder::new("m", "id", 1);
    let mut out = Vec::new();
    d.event(br#"{"promptFeedback":{"blockReason":"PROHIBITED_CONTENT"},"usageMetadata":{"promptTokenCount":4}}"#, &mut out)
            .unwrap();
    assert!(d.finished());
    let got = events(&out, "\n\n");
    assert_eq!(
        got[0]["choices"],
        js(r#"[{"index":0,"delta":{"role":"assistant"},"finish_reason":"content_filter"}]"#)
    );
    assert_eq!(d.usage().map(|u| u.prompt), Some(4));

    let mut d = StreamDecoder::new("m", "id", 1);
    let mut out = Vec::new();
    let e = d
        .event(
            br#"{"error":{"code":503,"message":"overloaded","status":"UNAVAILABLE"}}"#,
            &mut out,
        )
        .unwrap_err();
    assert!(e.message().contains("overloaded"), "{e}");
    assert_eq!(e.fault(), Fault::Reported);
    assert!(d.event(b"{trunc", &mut out).is_err());
    assert!(out.is_empty());
}

#[test]
fn decode_error_bodies() {
    let mut out = Vec::new();
    decode_error(
            429,
            br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#,
            &mut out,
        );
    assert_eq!(
        j(&out),
        js(
            r#"{"error":{"message":"Resource has been exhausted (e.g. check quota).","type":"rate_limit_error","param":null,"code":"resource_exhausted"}}"#
        )
    );

    let mut out = Vec::new();
    decode_error(
            400,
            br#"{"error":{"code":400,"message":"API key not valid. Please pass a valid API key.","status":"INVALID_ARGUMENT",
                "details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"API_KEY_INVALID","domain":"googleapis.com"}]}}"#,
            &mut out,
        );
    assert_eq!(
        j(&out),
        js(
            r#"{"error":{"message":"API key not valid. Please pass a valid API key.","type":"authentication_error","param":null,"code":"invalid_api_key"}}"#
        )
    );

    let mut out = Vec::new();
    decode_error(
        404,
        br#"[{"error":{"code":404,"message":"models/x is not found","status":"NOT_FOUND"}}]"#,
        &mut out,
    );
    assert_eq!(
        j(&out),
        js(
            r#"{"error":{"message":"models/x is not found","type":"invalid_request_error","param":null,"code":"not_found"}}"#
        )
    );

    let mut out = Vec::new();
    decode_error(502, b"<html>Bad \"Gateway\"</html>", &mut out);
    assert_eq!(
        j(&out),
        js(
            r#"{"error":{"message":"The Gemini upstream answered HTTP 502: <html>Bad \"Gateway\"</html>","type":"server_error","param":null,"code":"unavailable"}}"#
        )
    );

    let mut out = Vec::new();
    decode_error(403, &[0xff, 0xfe], &mut out);
    assert_eq!(
        j(&out),
        js(
            r#"{"error":{"message":"The Gemini upstream answered HTTP 403.","type":"permission_error","param":null,"code":"permission_denied"}}"#
        )
    );
}

#[test]
fn encode_n_whole_reasoning_effort_and_json_schema() {
    let got = encode(
        r#"{"messages":[{"role":"user","content":"x"}],"n":3,"reasoning_effort":"medium",
            "response_format":{"type":"json_schema","json_schema":{"name":"p","schema":
            {"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],
             "additionalProperties":false}}}}"#,
    );
    let g = &got["generationConfig"];
    assert_eq!(g["candidateCount"], js("3"));
    assert_eq!(g["thinkingConfig"], js(r#"{"thinkingBudget":8192}"#));
    assert_eq!(g["responseMimeType"], js(r#""application/json""#));
    assert_eq!(
        g["responseSchema"]["properties"]["a"]["type"],
        js(r#""integer""#)
    );
    for (effort, budget) in [
        ("none", 0),
        ("minimal", 1024),
        ("low", 1024),
        ("high", 24576),
    ] {
        let got = encode(&format!(
            r#"{{"messages":[{{"role":"user","content":"x"}}],"reasoning_effort":"{effort}"}}"#
        ));
        assert_eq!(
            got["generationConfig"]["thinkingConfig"]["thinkingBudget"],
            js(&budget.to_string()),
            "{effort}"
        );
    }
    assert_eq!(
        encode_err(r#"{"messages":[{"role":"user","content":"x"}],"reasoning_effort":9}"#).code,
        "invalid_reasoning_effort"
    );
}
