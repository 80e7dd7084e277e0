//! The mock's Google Gemini wire (`POST …/models/{model}:generateContent` and
//! `…:streamGenerateContent`): routing by path, request checks, `GenerateContentResponse`
//! bodies, the streamed events and the error shape, as pure functions of an [`Ask`].
//!
//! What the real API does and the mock copies: the model comes from the path, not the body; the
//! key comes in `x-goog-api-key` or `?key=` (none: 403 `PERMISSION_DENIED`, a wrong one: 400
//! `INVALID_ARGUMENT` with reason `API_KEY_INVALID`); `contents` must be a non-empty array of
//! `user` / `model` turns with parts. With `?alt=sse` a stream is `data: {response}\r\n\r\n`
//! events, each with a text part, the last also with `finishReason` and `usageMetadata`;
//! without it the same responses come as one JSON array. Function calls arrive whole, in one
//! part, with `finishReason: STOP`. A 429 says when to retry in a `RetryInfo` detail of the
//! body, not in a header. `promptTokenCount` includes `cachedContentTokenCount`.
//!
//! Invariants: never panics on any body or path; output is built as JSON values and encoded.
//! Not here: sockets, pacing, faults (the parent module).

use simd_json::prelude::*;
use simd_json::{OwnedValue, json};

use super::ask::{Ask, TOOL_TOKENS};
use super::{Req, path_of, query_param};
use crate::providers::gemini;

/// A Gemini call as its path names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Call {
    /// The model from `…/models/{model}:…`.
    pub(super) model: String,
    /// `streamGenerateContent` rather than `generateContent`.
    pub(super) stream: bool,
    /// `?alt=sse`: stream as server-sent events rather than one JSON array.
    pub(super) sse: bool,
}

impl Call {
    /// The call `target` names, or `None` when it is not a Gemini generate path.
    pub(super) fn of(target: &str) -> Option<Call> {
        let (prefix, last) = path_of(target).rsplit_once('/')?;
        if !prefix.ends_with("/models") {
            return None;
        }
        let (model, method) = last.split_once(':')?;
        let stream = match method {
            "generateContent" => false,
            "streamGenerateContent" => true,
            _ => return None,
        };
        if model.is_empty() {
            return None;
        }
        Some(Call {
            model: model.to_string(),
            stream,
            sse: query_param(target, "alt") == Some("sse"),
        })
    }
}

/// The key a request carries the Gemini way: `x-goog-api-key`, else `?key=`.
pub(super) fn key_of(req: &Req) -> Option<&str> {
    req.header("x-goog-api-key")
        .or_else(|| query_param(&req.target, "key"))
}

/// Google's error body for `status` (the gateway's own shape and status table, so the mock and
/// the gateway name statuses alike), with `details` when there are any.
fn error_value(status: u16, msg: &str, details: Vec<OwnedValue>) -> OwnedValue {
    let mut body = gemini::wire::error_value(status, msg);
    if !details.is_empty()
        && let Some(error) = body.get_mut("error")
    {
        let _ = error.insert("details", OwnedValue::from(details));
    }
    body
}

/// An error body: `{"error":{"code","message","status"}}`, with a `RetryInfo` detail when
/// `retry_after` (seconds) is given.
pub(super) fn error_json(status: u16, msg: &str, retry_after: Option<u32>) -> Vec<u8> {
    let details = retry_after
        .map(|s| {
            json!({
                "@type": "type.googleapis.com/google.rpc.RetryInfo",
                "retryDelay": format!("{s}s"),
            })
        })
        .into_iter()
        .collect();
    error_value(status, msg, details).encode().into_bytes()
}

/// The refusal for a request without the key `want` (see the module doc for the statuses).
pub(super) fn refuse(key: Option<&str>, want: Option<&str>) -> Option<(u16, Vec<u8>)> {
    let want = want?;
    match key {
        None => Some((
            403,
            error_json(
                403,
                "the request carries no API key (x-goog-api-key header or key parameter)",
                None,
            ),
        )),
        Some(k) if k != want => {
            let detail = json!({
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "API_KEY_INVALID",
                "domain": "googleapis.com",
            });
            let body = error_value(400, "API key not valid", vec![detail]);
            Some((400, body.encode().into_bytes()))
        }
        Some(_) => None,
    }
}

/// A field by its JSON (camelCase) name or its proto (snake_case) name: the API takes both.
fn field<'v>(v: &'v OwnedValue, camel: &str, snake: &str) -> Option<&'v OwnedValue> {
    v.get(camel).or_else(|| v.get(snake))
}

fn parts_of(content: &OwnedValue) -> &[OwnedValue] {
    content
        .get("parts")
        .and_then(|p| p.as_array())
        .map_or(&[], Vec::as_slice)
}

/// Reads and checks a request body for `call`; `Err` is the message of a 400.
pub(super) fn parse(body: &[u8], call: &Call) -> Result<Ask, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy)
        .map_err(|e| format!("Invalid JSON payload received: {e}"))?;
    if v.as_object().is_none() {
        return Err("Invalid JSON payload received: expected an object".into());
    }
    let contents = v
        .get("contents")
        .and_then(|c| c.as_array())
        .filter(|c| !c.is_empty())
        .ok_or("GenerateContentRequest.contents: contents is not specified")?;
    for (i, c) in contents.iter().enumerate() {
        match c.get("role").map(|r| r.as_str()) {
            None | Some(Some("user" | "model")) => {}
            Some(_) => {
                return Err(format!(
                    "GenerateContentRequest.contents[{i}].role: use a valid role: user, model"
                ));
            }
        }
        if parts_of(c).is_empty() {
            return Err(format!(
                "GenerateContentRequest.contents[{i}].parts: contents.parts must not be empty"
            ));
        }
    }
    let max_tokens = field(&v, "generationConfig", "generation_config")
        .and_then(|g| field(g, "maxOutputTokens", "max_output_tokens"))
        .and_then(|m| m.as_u64());
    let answered = contents.last().is_some_and(|c| {
        parts_of(c)
            .iter()
            .any(|p| field(p, "functionResponse", "function_response").is_some())
    });
    let tool = if answered {
        None
    } else {
        v.get("tools")
            .and_then(|t| t.as_array())
            .and_then(|tools| {
                tools.iter().find_map(|t| {
                    field(t, "functionDeclarations", "function_declarations")
                        .and_then(|d| d.as_array())
                        .and_then(|d| d.first())
                })
            })
            .and_then(|d| d.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
    };
    // A turn without a role is the user's.
    let last_user = contents
        .as_slice()
        .iter()
        .rev()
        .find(|c| c.get("role").and_then(|r| r.as_str()).unwrap_or("user") == "user")
        .map(|c| {
            parts_of(c)
                .iter()
                .filter_map(|p| p.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    // JSON output (`responseMimeType`): a value `responseSchema` / `responseJsonSchema`
    // accepts, or an object when there is no schema.
    let config = field(&v, "generationConfig", "generation_config");
    let json = config
        .and_then(|g| field(g, "responseMimeType", "response_mime_type"))
        .and_then(|m| m.as_str())
        .filter(|m| *m == "application/json")
        .map(|_| {
            config
                .and_then(|g| {
                    field(g, "responseSchema", "response_schema")
                        .or_else(|| field(g, "responseJsonSchema", "response_json_schema"))
                })
                .map_or_else(
                    || "{\"answer\":\"mock\"}".to_string(),
                    super::schema::instance,
                )
        });
    Ok(Ask {
        model: call.model.clone(),
        stream: call.stream,
        tool,
        last_user,
        json,
        prompt_tokens: Ask::estimate_prompt(body),
        max_tokens,
        ..Ask::default()
    })
}

fn usage(ask: &Ask, output: u64) -> OwnedValue {
    let mut u = json!({
        "promptTokenCount": ask.prompt_tokens,
        "candidatesTokenCount": output,
        "totalTokenCount": ask.prompt_tokens.saturating_add(output),
    });
    // The API leaves the field out when nothing came from a cache.
    if let Some(cached) = ask.cached.filter(|c| *c > 0) {
        let _ = u.insert("cachedContentTokenCount", cached);
    }
    u
}

/// One `GenerateContentResponse` with `parts`; the finish reason and usage go on the last one.
fn response(ask: &Ask, id: u64, parts: OwnedValue, end: Option<(&str, u64)>) -> OwnedValue {
    let mut candidate = json!({
        "content": {"parts": parts, "role": "model"},
        "index": 0,
    });
    if let Some((finish, _)) = end {
        let _ = candidate.insert("finishReason", finish);
    }
    let mut r = json!({
        "candidates": [candidate],
        "modelVersion": ask.model.as_str(),
        "responseId": format!("mock-{id}"),
    });
    if let Some((_, output)) = end {
        let _ = r.insert("usageMetadata", usage(ask, output));
    }
    r
}

fn function_call(tool: &str) -> OwnedValue {
    json!([{"functionCall": {"name": tool, "args": {"location": "Paris"}}}])
}

fn finish(capped: bool) -> &'static str {
    if capped { "MAX_TOKENS" } else { "STOP" }
}

/// A non-streamed answer: `n` words of text (fewer when `maxOutputTokens` cuts it) or one
/// function call.
pub(super) fn response_json(ask: &Ask, id: u64, n: usize) -> Vec<u8> {
    let r = match &ask.tool {
        Some(tool) => response(ask, id, function_call(tool), Some(("STOP", TOOL_TOKENS))),
        None => {
            let (pieces, capped) = ask.text_pieces(n);
            let text = pieces.concat();
            let parts = json!([{"text": text.trim_end()}]);
            response(ask, id, parts, Some((finish(capped), pieces.len() as u64)))
        }
    };
    r.encode().into_bytes()
}

/// A streamed answer's events: SSE (`sse`) or the pieces of one JSON array (the last event is
/// then the closing `]`). Unless `finished`, no event carries `finishReason` (nor the usage
/// that comes with it): a stream the upstream never completed.
pub(super) fn stream_events(
    ask: &Ask,
    id: u64,
    n: usize,
    sse: bool,
    finished: bool,
) -> Vec<Vec<u8>> {
    let responses: Vec<OwnedValue> = match &ask.tool {
        Some(tool) => vec![response(
            ask,
            id,
            function_call(tool),
            Some(("STOP", TOOL_TOKENS)).filter(|_| finished),
        )],
        None => {
            let (pieces, capped) = ask.text_pieces(n);
            let output = pieces.len() as u64;
            let last = pieces.len().saturating_sub(1);
            pieces
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    let end = (finished && i == last).then_some((finish(capped), output));
                    response(ask, id, json!([{ "text": w }]), end)
                })
                .collect()
        }
    };
    let mut ev: Vec<Vec<u8>> = responses
        .iter()
        .enumerate()
        .map(|(i, r)| {
            if sse {
                format!("data: {}\r\n\r\n", r.encode()).into_bytes()
            } else {
                let sep = if i == 0 { "[" } else { ",\r\n" };
                format!("{sep}{}", r.encode()).into_bytes()
            }
        })
        .collect();
    if !sse {
        ev.push(b"]".to_vec());
    }
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(model: &str, stream: bool) -> Call {
        Call {
            model: model.into(),
            stream,
            sse: stream,
        }
    }

    fn json_of(bytes: &[u8]) -> OwnedValue {
        let mut b = bytes.to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    /// The response of each SSE event, checking the framing on the way.
    fn sse_responses(events: &[Vec<u8>]) -> Vec<OwnedValue> {
        events
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap();
                let data = text
                    .strip_prefix("data: ")
                    .and_then(|t| t.strip_suffix("\r\n\r\n"))
                    .unwrap_or_else(|| panic!("event framing: {text:?}"));
                json_of(data.as_bytes())
            })
            .collect()
    }

    const BASIC: &str = r#"{"systemInstruction":{"parts":[{"text":"be brief"}]},"contents":[{"role":"user","parts":[{"text":"hi"},{"text":"there"}]}]}"#;

    #[test]
    fn routes_generate_paths_only() {
        let c = Call::of("/v1beta/models/gemini-2.0-flash:generateContent").unwrap();
        assert_eq!(c, call("gemini-2.0-flash", false));
        let c = Call::of("/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key=k")
            .unwrap();
        assert_eq!(c, call("gemini-2.0-flash", true));
        let c = Call::of("/x/v1/models/g:streamGenerateContent").unwrap();
        assert!(c.stream && !c.sse);
        for other in [
            "/v1beta/models",
            "/v1beta/models/g",
            "/v1beta/models/g:countTokens",
            "/v1beta/models/:generateContent",
            "/v1beta/things/g:generateContent",
            "/v1/chat/completions",
            "",
        ] {
            assert_eq!(Call::of(other), None, "{other}");
        }
    }

    #[test]
    fn parse_reads_the_basics() {
        let a = parse(BASIC.as_bytes(), &call("g", false)).unwrap();
        assert_eq!(a.model, "g");
        assert!(!a.stream);
        assert_eq!(a.last_user, "hi there");
        assert_eq!(a.tool, None);
        assert_eq!(a.max_tokens, None);
        assert_eq!(a.prompt_tokens, BASIC.len() as u64 / 4);
    }

    #[test]
    fn parse_reads_tools_and_limits_in_either_spelling() {
        let body = r#"{"contents":[{"parts":[{"text":"weather?"}]}],
            "tools":[{"googleSearch":{}},{"functionDeclarations":[{"name":"get_weather","parameters":{"type":"object"}}]}],
            "generationConfig":{"maxOutputTokens":3}}"#;
        let a = parse(body.as_bytes(), &call("g", true)).unwrap();
        assert!(a.stream);
        assert_eq!(a.tool.as_deref(), Some("get_weather"));
        assert_eq!(a.max_tokens, Some(3));
        assert_eq!(a.last_user, "weather?");
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"function_declarations":[{"name":"f"}]}],
            "generation_config":{"max_output_tokens":2}}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        assert_eq!(a.tool.as_deref(), Some("f"));
        assert_eq!(a.max_tokens, Some(2));
    }

    #[test]
    fn a_function_response_gets_a_text_answer() {
        let body = r#"{"contents":[
            {"role":"user","parts":[{"text":"weather?"}]},
            {"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{}}}]},
            {"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"t":20}}}]}],
            "tools":[{"functionDeclarations":[{"name":"get_weather"}]}]}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        assert_eq!(a.tool, None);
    }

    #[test]
    fn parse_refuses_what_the_api_refuses() {
        for (body, needle) in [
            ("nope", "Invalid JSON"),
            ("[]", "Invalid JSON"),
            ("{}", "contents is not specified"),
            (r#"{"contents":[]}"#, "contents is not specified"),
            (r#"{"contents":{"parts":[]}}"#, "contents is not specified"),
            (
                r#"{"contents":[{"role":"system","parts":[{"text":"x"}]}]}"#,
                "contents[0].role",
            ),
            (
                r#"{"contents":[{"role":"user","parts":[{"text":"x"}]},{"role":"assistant","parts":[{"text":"y"}]}]}"#,
                "contents[1].role",
            ),
            (r#"{"contents":[{"role":"user"}]}"#, "contents[0].parts"),
            (
                r#"{"contents":[{"role":"user","parts":[]}]}"#,
                "contents[0].parts",
            ),
        ] {
            let err = parse(body.as_bytes(), &call("g", false))
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn errors_have_the_google_shape() {
        for (status, name) in [
            (400, "INVALID_ARGUMENT"),
            (403, "PERMISSION_DENIED"),
            (404, "NOT_FOUND"),
            (429, "RESOURCE_EXHAUSTED"),
            (500, "INTERNAL"),
            (503, "UNAVAILABLE"),
            (504, "DEADLINE_EXCEEDED"),
        ] {
            let v = json_of(&error_json(status, "boom", None));
            assert_eq!(v["error"]["code"], status);
            assert_eq!(v["error"]["status"], name);
            assert_eq!(v["error"]["message"], "boom");
            assert!(v["error"].get("details").is_none());
        }
        let v = json_of(&error_json(429, "slow down", Some(7)));
        let d = &v["error"]["details"][0];
        assert_eq!(d["@type"], "type.googleapis.com/google.rpc.RetryInfo");
        assert_eq!(d["retryDelay"], "7s");
    }

    #[test]
    fn refuse_mirrors_missing_and_wrong_keys() {
        assert!(refuse(None, None).is_none());
        assert!(refuse(Some("k"), Some("k")).is_none());
        let (st, body) = refuse(None, Some("k")).unwrap();
        assert_eq!(st, 403);
        assert_eq!(json_of(&body)["error"]["status"], "PERMISSION_DENIED");
        let (st, body) = refuse(Some("x"), Some("k")).unwrap();
        assert_eq!(st, 400);
        let v = json_of(&body);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["details"][0]["reason"], "API_KEY_INVALID");
    }

    #[test]
    fn a_response_has_text_finish_and_usage() {
        let a = parse(BASIC.as_bytes(), &call("g", false))
            .unwrap()
            .with_cache(Some(2), 0);
        let v = json_of(&response_json(&a, 5, 4));
        let c = &v["candidates"][0];
        assert_eq!(c["content"]["role"], "model");
        assert_eq!(
            c["content"]["parts"][0]["text"],
            "Hello from the smart-ai-router"
        );
        assert_eq!(c["finishReason"], "STOP");
        assert_eq!(v["modelVersion"], "g");
        assert_eq!(v["responseId"], "mock-5");
        let u = &v["usageMetadata"];
        assert_eq!(u["promptTokenCount"], a.prompt_tokens);
        assert_eq!(u["candidatesTokenCount"], 4);
        assert_eq!(u["totalTokenCount"], a.prompt_tokens + 4);
        assert_eq!(u["cachedContentTokenCount"], 2);
        let plain = parse(BASIC.as_bytes(), &call("g", false)).unwrap();
        let v = json_of(&response_json(&plain, 5, 4));
        assert!(v["usageMetadata"].get("cachedContentTokenCount").is_none());
    }

    #[test]
    fn max_output_tokens_cuts_the_answer() {
        let body =
            r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"maxOutputTokens":2}}"#;
        let a = parse(body.as_bytes(), &call("g", true)).unwrap();
        let v = json_of(&response_json(&a, 1, 10));
        assert_eq!(v["candidates"][0]["finishReason"], "MAX_TOKENS");
        assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 2);
        assert_eq!(
            sse_responses(&stream_events(&a, 1, 10, true, true)).len(),
            2
        );
    }

    #[test]
    fn a_tool_request_gets_a_function_call() {
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"get_weather"}]}]}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        let v = json_of(&response_json(&a, 1, 8));
        let c = &v["candidates"][0];
        assert_eq!(c["finishReason"], "STOP");
        let fc = &c["content"]["parts"][0]["functionCall"];
        assert_eq!(fc["name"], "get_weather");
        assert_eq!(fc["args"]["location"], "Paris");
        let s = sse_responses(&stream_events(&a, 1, 8, true, true));
        assert_eq!(s.len(), 1);
        assert_eq!(
            s[0]["candidates"][0]["content"]["parts"][0]["functionCall"]["name"],
            "get_weather"
        );
        assert_eq!(s[0]["usageMetadata"]["candidatesTokenCount"], TOOL_TOKENS);
    }

    #[test]
    fn the_sse_stream_ends_with_finish_and_usage() {
        let a = parse(BASIC.as_bytes(), &call("g", true)).unwrap();
        let s = sse_responses(&stream_events(&a, 3, 3, true, true));
        assert_eq!(s.len(), 3);
        let mut text = String::new();
        for (i, r) in s.iter().enumerate() {
            let c = &r["candidates"][0];
            assert_eq!(c["content"]["role"], "model");
            text.push_str(c["content"]["parts"][0]["text"].as_str().unwrap());
            let last = i == s.len() - 1;
            assert_eq!(c.get("finishReason").is_some(), last, "event {i}");
            assert_eq!(r.get("usageMetadata").is_some(), last, "event {i}");
        }
        assert_eq!(text, "Hello from the ");
        assert_eq!(s[2]["candidates"][0]["finishReason"], "STOP");
        assert_eq!(s[2]["usageMetadata"]["candidatesTokenCount"], 3);
    }

    #[test]
    fn without_alt_sse_the_stream_is_one_json_array() {
        let a = parse(BASIC.as_bytes(), &call("g", true)).unwrap();
        let events = stream_events(&a, 3, 3, false, true);
        assert_eq!(events.len(), 4);
        let whole = json_of(&events.concat());
        let items = whole.as_array().unwrap();
        assert_eq!(items.len(), 3);
        assert_eq!(items[2]["candidates"][0]["finishReason"], "STOP");
    }

    #[test]
    fn json_output_answers_a_schema_instance_whole_and_streamed() {
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{
            "responseMimeType":"application/json",
            "responseSchema":{"type":"OBJECT","properties":{"n":{"type":"INTEGER"}}}}}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        let v = json_of(&response_json(&a, 1, 8));
        let text = v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap();
        assert_eq!(text, r#"{"n":1}"#);
        let a = parse(body.as_bytes(), &call("g", true)).unwrap();
        let text: String = sse_responses(&stream_events(&a, 1, 3, true, true))
            .iter()
            .map(|r| {
                r["candidates"][0]["content"]["parts"][0]["text"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(text, r#"{"n":1}"#);
        // responseJsonSchema, and JSON without a schema.
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{
            "responseMimeType":"application/json","responseJsonSchema":{"type":"object","properties":{"s":{"type":"string"}}}}}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        assert_eq!(a.json.as_deref(), Some(r#"{"s":"mock"}"#));
        let body = r#"{"contents":[{"parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json"}}"#;
        let a = parse(body.as_bytes(), &call("g", false)).unwrap();
        assert_eq!(a.json.as_deref(), Some(r#"{"answer":"mock"}"#));
    }
}
