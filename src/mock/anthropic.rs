//! The mock's Anthropic Messages wire (`POST …/messages`): request checks, the `message`
//! object, the streamed event sequence and the error shape, as pure functions of an [`Ask`].
//!
//! What the real API does and the mock copies: the key comes in `x-api-key` only and an
//! `anthropic-version` header is required; `max_tokens`, `model` and a non-empty `messages`
//! array are required, and a `system` role inside `messages` is refused (system text is a
//! top-level field). A stream is `message_start`, `content_block_start`, `ping`,
//! `content_block_delta` × n, `content_block_stop`, `message_delta` (stop reason and the final
//! output token count), `message_stop`, each as `event: X\ndata: {…}\n\n`. Input usage arrives
//! in `message_start` only, split as Anthropic does: `input_tokens` excludes the cached parts.
//!
//! Invariants: never panics on any body; output is built as JSON values and encoded, so text
//! from the request is always escaped. Not here: sockets, pacing, faults (the parent module).

use simd_json::prelude::*;
use simd_json::{OwnedValue, json};

use super::ask::{Ask, TOOL_ARG_PARTS, TOOL_TOKENS};
use crate::providers::anthropic;

/// An error body: `{"type":"error","error":{"type":…,"message":…}}`, typed by the gateway's
/// own table (Anthropic's documented one), so the mock and the gateway cannot drift apart.
pub(super) fn error_json(status: u16, msg: &str) -> Vec<u8> {
    anthropic::wire::error_json(status, msg)
}

/// The refusal for a request whose headers the API rejects before reading the body: a missing
/// or wrong `x-api-key` (when `want` is set; other auth headers do not count) is a 401, a
/// missing `anthropic-version` a 400.
pub(super) fn refuse(
    key: Option<&str>,
    version: Option<&str>,
    want: Option<&str>,
) -> Option<(u16, Vec<u8>)> {
    if let Some(want) = want {
        match key {
            None => return Some((401, error_json(401, "x-api-key header is missing"))),
            Some(k) if k != want => return Some((401, error_json(401, "invalid x-api-key"))),
            Some(_) => {}
        }
    }
    if version.is_none_or(|v| v.trim().is_empty()) {
        return Some((
            400,
            error_json(400, "anthropic-version: header is required"),
        ));
    }
    None
}

/// The concatenated text of a message's `content` (a string, or blocks of which the `text`
/// ones count).
fn text_of(content: Option<&OwnedValue>) -> String {
    let Some(c) = content else {
        return String::new();
    };
    if let Some(s) = c.as_str() {
        return s.to_string();
    }
    c.as_array()
        .map(|blocks| {
            blocks
                .iter()
                .filter(|b| b.get("type").and_then(|t| t.as_str()) == Some("text"))
                .filter_map(|b| b.get("text").and_then(|t| t.as_str()))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// Whether a message carries a `tool_result` block (the answer to an earlier tool call).
fn has_tool_result(message: &OwnedValue) -> bool {
    message
        .get("content")
        .and_then(|c| c.as_array())
        .is_some_and(|blocks| {
            blocks
                .iter()
                .any(|b| b.get("type").and_then(|t| t.as_str()) == Some("tool_result"))
        })
}

/// Reads and checks a Messages request body; `Err` is the message of a 400.
pub(super) fn parse(body: &[u8]) -> Result<Ask, String> {
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy)
        .map_err(|e| format!("the request body is not valid JSON: {e}"))?;
    if v.as_object().is_none() {
        return Err("the request body must be a JSON object".into());
    }
    let model = match v.get("model") {
        None => return Err("model: Field required".into()),
        Some(m) => m
            .as_str()
            .ok_or("model: Input should be a valid string")?
            .to_string(),
    };
    let max_tokens = match v.get("max_tokens") {
        None => return Err("max_tokens: Field required".into()),
        Some(m) => m
            .as_u64()
            .filter(|n| *n >= 1)
            .ok_or("max_tokens: Input should be an integer of at least 1")?,
    };
    let messages = match v.get("messages") {
        None => return Err("messages: Field required".into()),
        Some(m) => m
            .as_array()
            .ok_or("messages: Input should be a valid list")?,
    };
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, m) in messages.iter().enumerate() {
        match m.get("role").and_then(|r| r.as_str()) {
            Some("user" | "assistant") => {}
            Some("system") => {
                return Err(format!(
                    "messages.{i}.role: \"system\" is not a message role; \
                     pass system text in the top-level `system` field"
                ));
            }
            _ => {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
    }
    let stream = v.get("stream").and_then(|s| s.as_bool()).unwrap_or(false);
    let answered = messages.last().is_some_and(has_tool_result);
    // The tool to call: the one `tool_choice` forces, else the first declared. A forced tool
    // with an `input_schema` (how structured output is asked of Claude) gets an input its
    // schema accepts; any other call gets the mock's fixed arguments.
    let tools = v.get("tools").and_then(|t| t.as_array());
    let forced = v
        .get("tool_choice")
        .filter(|c| c.get("type").and_then(|t| t.as_str()) == Some("tool"))
        .and_then(|c| c.get("name"))
        .and_then(|n| n.as_str())
        .and_then(|name| {
            tools.and_then(|t| {
                t.iter()
                    .find(|t| t.get("name").and_then(|n| n.as_str()) == Some(name))
            })
        });
    let chosen = if answered {
        None
    } else {
        forced.or_else(|| tools.and_then(|t| t.first()))
    };
    let tool = chosen
        .and_then(|t| t.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_string);
    let json = forced
        .filter(|_| !answered)
        .and_then(|t| t.get("input_schema"))
        .map(super::schema::instance);
    let last_user = messages
        .as_slice()
        .iter()
        .rev()
        .find(|m| m.get("role").and_then(|r| r.as_str()) == Some("user"))
        .map(|m| text_of(m.get("content")))
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Ok(Ask {
        model,
        stream,
        tool,
        last_user,
        json,
        prompt_tokens: Ask::estimate_prompt(body),
        max_tokens: Some(max_tokens),
        ..Ask::default()
    })
}

/// Usage in Anthropic's split: `input_tokens` is what was neither read from nor written to
/// the cache, so the three input fields add up to the prompt.
fn usage(ask: &Ask, output: u64) -> OwnedValue {
    let cached = ask.cached.unwrap_or(0);
    let input = ask
        .prompt_tokens
        .saturating_sub(cached)
        .saturating_sub(ask.cache_write);
    json!({
        "input_tokens": input,
        "output_tokens": output,
        "cache_creation_input_tokens": ask.cache_write,
        "cache_read_input_tokens": cached,
    })
}

fn message_id(id: u64) -> String {
    format!("msg_mock_{id}")
}

fn tool_use_id(id: u64) -> String {
    format!("toolu_mock_{id}")
}

/// The tool input, as the object the non-streamed answer carries: a schema instance for a
/// forced tool with an `input_schema`, else the fixed arguments.
fn tool_input(ask: &Ask) -> OwnedValue {
    ask.json
        .as_ref()
        .and_then(|j| simd_json::to_owned_value(&mut j.clone().into_bytes()).ok())
        .unwrap_or_else(|| json!({"location": "Paris"}))
}

/// A non-streamed answer: one `message` object with a text block (`n` words, fewer when
/// `max_tokens` cuts it) or a `tool_use` block.
pub(super) fn message_json(ask: &Ask, id: u64, n: usize) -> Vec<u8> {
    let (content, stop_reason, output) = match &ask.tool {
        Some(tool) => (
            json!([{
                "type": "tool_use",
                "id": tool_use_id(id),
                "name": tool.as_str(),
                "input": tool_input(ask),
            }]),
            "tool_use",
            TOOL_TOKENS,
        ),
        None => {
            let (pieces, capped) = ask.text_pieces(n);
            let text = pieces.concat();
            let stop = if capped { "max_tokens" } else { "end_turn" };
            (
                json!([{"type": "text", "text": text.trim_end()}]),
                stop,
                pieces.len() as u64,
            )
        }
    };
    anthropic::wire::message(
        &message_id(id),
        &ask.model,
        content,
        Some(stop_reason),
        usage(ask, output),
    )
    .encode()
    .into_bytes()
}

/// One SSE event: `event: {kind}\ndata: {json}\n\n`.
fn event(kind: &str, data: &OwnedValue) -> Vec<u8> {
    format!("event: {kind}\ndata: {}\n\n", data.encode()).into_bytes()
}

/// A streamed answer's events, in the API's order (see the module doc).
pub(super) fn stream_events(ask: &Ask, id: u64, n: usize) -> Vec<Vec<u8>> {
    let mut ev = Vec::new();
    // The API reports a token or so of output at the start; the real count comes in
    // `message_delta` and replaces it (it is cumulative, not an increment).
    let start = anthropic::wire::message_start(&message_id(id), &ask.model, usage(ask, 1));
    ev.push(event("message_start", &start));
    let (block, deltas, stop_reason, output) = match &ask.tool {
        Some(tool) => {
            let parts: Vec<String> = match &ask.json {
                Some(_) => super::ask::words(ask, 3),
                None => TOOL_ARG_PARTS.iter().map(|p| p.to_string()).collect(),
            };
            let deltas: Vec<OwnedValue> = parts
                .into_iter()
                .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                .collect();
            let block = json!({
                "type": "tool_use",
                "id": tool_use_id(id),
                "name": tool.as_str(),
                "input": {},
            });
            (block, deltas, "tool_use", TOOL_TOKENS)
        }
        None => {
            let (pieces, capped) = ask.text_pieces(n);
            let output = pieces.len() as u64;
            let deltas = pieces
                .into_iter()
                .map(|w| json!({"type": "text_delta", "text": w}))
                .collect();
            let stop = if capped { "max_tokens" } else { "end_turn" };
            (json!({"type": "text", "text": ""}), deltas, stop, output)
        }
    };
    ev.push(event(
        "content_block_start",
        &json!({"type": "content_block_start", "index": 0, "content_block": block}),
    ));
    ev.push(event("ping", &json!({"type": "ping"})));
    for delta in deltas {
        ev.push(event(
            "content_block_delta",
            &json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    ev.push(event(
        "content_block_stop",
        &json!({"type": "content_block_stop", "index": 0}),
    ));
    ev.push(event(
        "message_delta",
        &json!({
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": null},
            "usage": {"output_tokens": output},
        }),
    ));
    ev.push(event("message_stop", &json!({"type": "message_stop"})));
    ev
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(body: &str) -> Result<Ask, String> {
        parse(body.as_bytes())
    }

    fn json_of(bytes: &[u8]) -> OwnedValue {
        let mut b = bytes.to_vec();
        simd_json::to_owned_value(&mut b).unwrap()
    }

    /// (event name, parsed data) of each SSE event, checking the framing on the way.
    fn split(events: &[Vec<u8>]) -> Vec<(String, OwnedValue)> {
        events
            .iter()
            .map(|e| {
                let text = std::str::from_utf8(e).unwrap();
                assert!(text.ends_with("\n\n"), "event framing: {text:?}");
                let (first, rest) = text.split_once('\n').unwrap();
                let name = first.strip_prefix("event: ").unwrap().to_string();
                let data = rest.trim_end().strip_prefix("data: ").unwrap();
                let v = json_of(data.as_bytes());
                assert_eq!(v.get("type").and_then(|t| t.as_str()), Some(name.as_str()));
                (name, v)
            })
            .collect()
    }

    const BASIC: &str = r#"{"model":"claude-x","max_tokens":100,"system":"be brief","messages":[{"role":"user","content":"hi there"}]}"#;

    #[test]
    fn parse_reads_the_basics() {
        let a = parsed(BASIC).unwrap();
        assert_eq!(a.model, "claude-x");
        assert!(!a.stream);
        assert_eq!(a.max_tokens, Some(100));
        assert_eq!(a.last_user, "hi there");
        assert_eq!(a.tool, None);
        assert_eq!(a.prompt_tokens, BASIC.len() as u64 / 4);
    }

    #[test]
    fn parse_reads_text_blocks_and_the_first_tool() {
        let a = parsed(
            r#"{"model":"m","max_tokens":5,"stream":true,"tools":[{"name":"get_weather","input_schema":{"type":"object"}},{"name":"other"}],
               "messages":[{"role":"user","content":[{"type":"text","text":"weather"},{"type":"image","source":{}},{"type":"text","text":"in Paris?"}]}]}"#,
        )
        .unwrap();
        assert!(a.stream);
        assert_eq!(a.tool.as_deref(), Some("get_weather"));
        assert_eq!(a.last_user, "weather in Paris?");
    }

    #[test]
    fn a_tool_result_gets_a_text_answer() {
        let a = parsed(
            r#"{"model":"m","max_tokens":5,"tools":[{"name":"get_weather"}],"messages":[
                {"role":"user","content":"weather?"},
                {"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":"sunny"}]}]}"#,
        )
        .unwrap();
        assert_eq!(a.tool, None);
    }

    #[test]
    fn parse_refuses_what_the_api_refuses() {
        for (body, needle) in [
            ("not json", "not valid JSON"),
            ("[1]", "JSON object"),
            (r#"{"max_tokens":5,"messages":[]}"#, "model: Field required"),
            (
                r#"{"model":"m","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":"many","messages":[{"role":"user","content":"x"}]}"#,
                "max_tokens",
            ),
            (
                r#"{"model":"m","max_tokens":5}"#,
                "messages: Field required",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":{}}"#,
                "valid list",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[]}"#,
                "at least one",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"},{"role":"user","content":"y"}]}"#,
                "messages.0.role",
            ),
            (
                r#"{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"y"},{"role":"tool","content":"x"}]}"#,
                "messages.1.role",
            ),
        ] {
            let err = parsed(body)
                .err()
                .unwrap_or_else(|| panic!("accepted {body}"));
            assert!(err.contains(needle), "{body}: {err}");
        }
    }

    #[test]
    fn refuse_checks_key_then_version() {
        let status = |r: Option<(u16, Vec<u8>)>| r.map(|(s, _)| s);
        assert_eq!(
            status(refuse(Some("k"), Some("2023-06-01"), Some("k"))),
            None
        );
        assert_eq!(status(refuse(None, Some("2023-06-01"), None)), None);
        assert_eq!(
            status(refuse(None, Some("2023-06-01"), Some("k"))),
            Some(401)
        );
        assert_eq!(
            status(refuse(Some("x"), Some("2023-06-01"), Some("k"))),
            Some(401)
        );
        assert_eq!(status(refuse(Some("k"), None, Some("k"))), Some(400));
        assert_eq!(status(refuse(None, None, None)), Some(400));
        let (_, body) = refuse(Some("x"), None, Some("k")).unwrap();
        let v = json_of(&body);
        assert_eq!(v["error"]["type"], "authentication_error");
    }

    #[test]
    fn errors_have_the_anthropic_shape() {
        for (status, kind) in [
            (400, "invalid_request_error"),
            (401, "authentication_error"),
            (403, "permission_error"),
            (404, "not_found_error"),
            (413, "request_too_large"),
            (429, "rate_limit_error"),
            (500, "api_error"),
            (503, "api_error"),
            (529, "overloaded_error"),
        ] {
            let v = json_of(&error_json(status, "boom \"quoted\""));
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], kind, "{status}");
            assert_eq!(v["error"]["message"], "boom \"quoted\"");
        }
    }

    #[test]
    fn a_message_has_text_usage_and_stop_reason() {
        let a = parsed(BASIC).unwrap().with_cache(Some(3), 2);
        let v = json_of(&message_json(&a, 7, 4));
        assert_eq!(v["id"], "msg_mock_7");
        assert_eq!(v["type"], "message");
        assert_eq!(v["role"], "assistant");
        assert_eq!(v["model"], "claude-x");
        assert_eq!(v["stop_reason"], "end_turn");
        assert!(v["stop_sequence"].is_null());
        let content = v["content"].as_array().unwrap();
        assert_eq!(content.len(), 1);
        assert_eq!(content[0]["type"], "text");
        assert_eq!(content[0]["text"], "Hello from the smart-ai-router");
        let u = &v["usage"];
        assert_eq!(u["output_tokens"], 4);
        assert_eq!(u["cache_read_input_tokens"], 3);
        assert_eq!(u["cache_creation_input_tokens"], 2);
        assert_eq!(u["input_tokens"], a.prompt_tokens - 5);
    }

    #[test]
    fn max_tokens_cuts_the_answer() {
        let a =
            parsed(r#"{"model":"m","max_tokens":2,"messages":[{"role":"user","content":"x"}]}"#)
                .unwrap();
        let v = json_of(&message_json(&a, 1, 10));
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["usage"]["output_tokens"], 2);
        let s = split(&stream_events(&a, 1, 10));
        let deltas = s.iter().filter(|(n, _)| n == "content_block_delta").count();
        assert_eq!(deltas, 2);
        let (_, md) = s.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(md["delta"]["stop_reason"], "max_tokens");
    }

    #[test]
    fn a_tool_request_gets_a_tool_use_block() {
        let a = parsed(
            r#"{"model":"m","max_tokens":50,"tools":[{"name":"get_weather"}],"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        let v = json_of(&message_json(&a, 2, 8));
        assert_eq!(v["stop_reason"], "tool_use");
        let block = &v["content"][0];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["id"], "toolu_mock_2");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["input"]["location"], "Paris");
        assert_eq!(v["usage"]["output_tokens"], TOOL_TOKENS);
    }

    #[test]
    fn the_text_stream_follows_the_api_sequence() {
        let a = parsed(BASIC).unwrap();
        let s = split(&stream_events(&a, 9, 3));
        let names: Vec<&str> = s.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "ping",
                "content_block_delta",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop",
            ]
        );
        let start = &s[0].1["message"];
        assert_eq!(start["id"], "msg_mock_9");
        assert_eq!(start["model"], "claude-x");
        assert_eq!(start["content"].as_array().map(Vec::len), Some(0));
        assert_eq!(start["usage"]["input_tokens"], a.prompt_tokens);
        assert_eq!(s[1].1["content_block"]["type"], "text");
        let text: String = s[3..6]
            .iter()
            .map(|(_, v)| {
                assert_eq!(v["delta"]["type"], "text_delta");
                assert_eq!(v["index"], 0);
                v["delta"]["text"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(text, "Hello from the ");
        assert_eq!(s[7].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(s[7].1["usage"]["output_tokens"], 3);
    }

    #[test]
    fn the_tool_stream_sends_json_in_pieces() {
        let a = parsed(
            r#"{"model":"m","max_tokens":50,"stream":true,"tools":[{"name":"get_weather"}],"messages":[{"role":"user","content":"x"}]}"#,
        )
        .unwrap();
        let s = split(&stream_events(&a, 4, 8));
        let block = &s[1].1["content_block"];
        assert_eq!(block["type"], "tool_use");
        assert_eq!(block["name"], "get_weather");
        assert_eq!(block["id"], "toolu_mock_4");
        let parts: Vec<String> = s
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, v)| {
                assert_eq!(v["delta"]["type"], "input_json_delta");
                v["delta"]["partial_json"].as_str().unwrap().to_string()
            })
            .collect();
        assert!(parts.len() >= 2);
        let input = json_of(parts.concat().as_bytes());
        assert_eq!(input["location"], "Paris");
        let (_, md) = s.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
        assert_eq!(md["usage"]["output_tokens"], TOOL_TOKENS);
    }

    #[test]
    fn a_forced_tool_with_a_schema_gets_an_instance_of_it() {
        let body = r#"{"model":"m","max_tokens":50,"stream":true,
            "tools":[{"name":"get_weather","input_schema":{"type":"object"}},
                     {"name":"person","input_schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}}}}],
            "tool_choice":{"type":"tool","name":"person"},
            "messages":[{"role":"user","content":"x"}]}"#;
        let a = parsed(body).unwrap();
        assert_eq!(a.tool.as_deref(), Some("person"));
        let v = json_of(&message_json(&a, 2, 8));
        let block = &v["content"][0];
        assert_eq!(block["name"], "person");
        assert_eq!(block["input"], json!({"name": "mock", "age": 1}));
        let s = split(&stream_events(&a, 4, 8));
        let parts: Vec<String> = s
            .iter()
            .filter(|(n, _)| n == "content_block_delta")
            .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect();
        assert!(parts.len() >= 2);
        assert_eq!(parts.concat(), r#"{"name":"mock","age":1}"#);
    }
}
