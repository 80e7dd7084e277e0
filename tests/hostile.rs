//! A hostile upstream (the mock's knobs) against the gateway, on both drivers: a stream that
//! ends without its family's terminator is a cut (an `upstream_stream_cut` error event, no
//! `[DONE]`, a usage record with an error status) on the passthrough, usage-stripped and
//! translated paths; a 2xx JSON answer that does not parse fails over (502 when alone) unless it
//! is larger than `server.max_validated_body`; `gzip` and `deflate` answers are decoded, whole
//! and streamed, errors included; any other `Content-Encoding` fails over.
//!
//! One test per row of README's failure matrix that these behaviours add; each states what it
//! protects. Faults meant for one channel only come from its provider's configured `headers`
//! (which always reach that upstream); faults for every attempt come from the client's
//! `x-mock-*` headers. No timing is asserted.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;

both_drivers!(
    a_passthrough_stream_without_done_is_a_cut_recorded_as_an_error,
    an_anthropic_stream_without_message_stop_reaches_an_openai_client_as_a_cut,
    an_openai_stream_without_done_reaches_an_anthropic_client_as_a_cut,
    a_gemini_stream_without_finish_reason_is_a_cut,
    the_usage_stripped_path_needs_the_upstreams_done,
    truncated_json_fails_over_to_the_next_channel,
    truncated_json_on_a_lone_channel_is_a_502,
    a_body_over_max_validated_body_streams_through_unvalidated,
    gzip_answers_are_decoded_whole_streamed_and_as_errors,
    deflate_answers_are_decoded,
    other_encodings_fail_over,
);

/// A provider table: `kind` with the mock at `addr`, and `headers` (TOML inline table body)
/// sent on every request to it.
fn provider(id: &str, kind: &str, addr: SocketAddr, headers: &str) -> String {
    let base = if kind == "gemini" { "v1beta" } else { "v1" };
    let headers = if headers.is_empty() {
        String::new()
    } else {
        format!("headers = {{ {headers} }}\n")
    };
    format!("[providers.{id}]\nkind = \"{kind}\"\nbase_url = \"http://{addr}/{base}\"\n{headers}\n")
}

/// A channel of `provider` serving `models`, tried before lower priorities.
fn channel(id: &str, provider: &str, models: &[&str], priority: i64) -> String {
    let models: Vec<String> = models.iter().map(|m| format!("\"{m}\"")).collect();
    format!(
        "[[channels]]\nid = \"{id}\"\nprovider = \"{provider}\"\napi_key = \"sk-{id}\"\n\
         models = [{}]\npriority = {priority}\n\n",
        models.join(", ")
    )
}

/// A mock answering `chunks` words.
fn upstream(chunks: usize) -> smart_ai_router::mock::MockHandle {
    mock(MockConfig {
        chunks,
        ..Default::default()
    })
}

fn post(
    gw: &smart_ai_router::bootstrap::Gateway,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Response {
    Client::connect(gw.local_addr()).post(path, headers, body)
}

/// A streamed chat body that asks for the usage chunk itself (so an OpenAI-family answer is
/// relayed byte for byte: the passthrough path).
fn chat_with_usage(model: &str) -> String {
    format!(
        r#"{{"model":"{model}","stream":true,"stream_options":{{"include_usage":true}},"messages":[{{"role":"user","content":"hello"}}]}}"#
    )
}

fn anthropic_body(model: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"{model}","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"hello"}}]}}"#
    )
}

fn parse(s: &str) -> simd_json::OwnedValue {
    let mut b = s.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
}

/// The OpenAI-client stream ended with the cut error event and no `[DONE]`, after some content.
fn assert_openai_cut(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let data = sse_data(&r.body);
    assert!(
        !data.iter().any(|d| d == "[DONE]"),
        "no [DONE] after a cut: {data:?}"
    );
    let last = parse(data.last().expect("some events"));
    assert_eq!(
        last["error"]["code"].as_str(),
        Some("upstream_stream_cut"),
        "{data:?}"
    );
    assert!(
        data.iter().any(|d| d.contains("Hello")),
        "the content before the cut was relayed: {data:?}"
    );
}

/// The stream ended with `[DONE]` and no error (the same path without the fault).
fn assert_openai_done(r: &Response) {
    assert_eq!(r.status, 200, "{}", r.text());
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(!data.iter().any(|d| d.contains("\"error\"")), "{data:?}");
}

/// The day's usage records, once `n` were written.
fn usage_lines(dir: &Path, n: usize) -> Vec<String> {
    eventually(Duration::from_secs(5), "usage records written", || {
        let day = std::fs::read_dir(dir.join("usage"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))?;
        let text = std::fs::read_to_string(day).ok()?;
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
}

/// Protects: a chunked stream that completes without `[DONE]` is not a clean end. The client
/// gets the `upstream_stream_cut` event and no `[DONE]`; the usage record says 502 (so
/// `/admin/usage` counts an error), and the metric counts a `stream_cut`.
fn a_passthrough_stream_without_done_is_a_cut_recorded_as_an_error(driver: &str) {
    let dir = temp_dir("hostile-cut");
    let m = upstream(4);
    let text = format!(
        "{}{}[state]\ndir = \"{}\"\n",
        provider("up", "openai", m.addr(), ""),
        channel("up-1", "up", &["m"], 0),
        dir.display()
    );
    let gw = gateway(driver, &text);
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "no-done")],
        &chat_with_usage("m"),
    );
    assert_openai_cut(&r);
    // The usage chunk itself went through unchanged: this was the passthrough path.
    assert!(sse_data(&r.body).iter().any(|d| d.contains("\"usage\"")));

    let summary = eventually(Duration::from_secs(5), "the cut is summarised", || {
        let s = admin(&gw, "GET", "/admin/usage", None, "").json();
        (s["total"]["requests"].as_u64() == Some(1)).then_some(s)
    });
    assert_eq!(summary["total"]["errors"].as_u64(), Some(1), "{summary:?}");
    let lines = usage_lines(&dir, 1);
    assert!(lines[0].contains("\"status\":502"), "{}", lines[0]);
    assert!(lines[0].contains("\"channel\":\"up-1\""), "{}", lines[0]);
    let metrics = admin(&gw, "GET", "/metrics", None, "").text();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("smart_router_upstream_errors_total")
                && l.contains("kind=\"stream_cut\"")),
        "{metrics}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Protects: the gateway writes `[DONE]` for a translated stream only after the upstream's
/// own `message_stop`, never just because the Anthropic upstream's framing ended.
fn an_anthropic_stream_without_message_stop_reaches_an_openai_client_as_a_cut(driver: &str) {
    let m = upstream(4);
    let text = format!(
        "{}{}",
        provider("a", "anthropic", m.addr(), ""),
        channel("a-1", "a", &["claude-x"], 0)
    );
    let gw = gateway(driver, &text);
    let body = chat_body("claude-x", true);
    assert_openai_done(&post(&gw, "/v1/chat/completions", &[], &body));
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "no-done")],
        &body,
    );
    assert_openai_cut(&r);
}

/// Protects: an Anthropic client gets `message_stop` only when the OpenAI upstream sent
/// `[DONE]`; otherwise its stream ends with an `error` event.
fn an_openai_stream_without_done_reaches_an_anthropic_client_as_a_cut(driver: &str) {
    let m = upstream(4);
    let text = format!(
        "{}{}",
        provider("o", "openai", m.addr(), ""),
        channel("o-1", "o", &["gpt-x"], 0)
    );
    let gw = gateway(driver, &text);
    let names = |r: &Response| -> Vec<String> {
        String::from_utf8_lossy(&r.body)
            .lines()
            .filter_map(|l| l.strip_prefix("event: ").map(str::to_string))
            .collect()
    };
    let body = anthropic_body("gpt-x", true);
    let whole = post(&gw, "/v1/messages", &[], &body);
    assert_eq!(whole.status, 200, "{}", whole.text());
    assert_eq!(
        names(&whole).last().map(String::as_str),
        Some("message_stop")
    );
    let r = post(&gw, "/v1/messages", &[("x-mock-fault", "no-done")], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = names(&r);
    assert!(!ev.iter().any(|e| e == "message_stop"), "{ev:?}");
    assert_eq!(ev.last().map(String::as_str), Some("error"), "{ev:?}");
    assert!(
        r.text().contains("upstream_stream_cut") || r.text().contains("broke off"),
        "{}",
        r.text()
    );
}

/// Protects: a Gemini stream (no terminal event of its own) is complete only once a candidate
/// carried `finishReason`; one that just stops is a cut.
fn a_gemini_stream_without_finish_reason_is_a_cut(driver: &str) {
    let m = upstream(4);
    let text = format!(
        "{}{}",
        provider("g", "gemini", m.addr(), ""),
        channel("g-1", "g", &["gemini-x"], 0)
    );
    let gw = gateway(driver, &text);
    let body = chat_body("gemini-x", true);
    assert_openai_done(&post(&gw, "/v1/chat/completions", &[], &body));
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "no-done")],
        &body,
    );
    assert_openai_cut(&r);
}

/// Protects: on the path where the gateway asked for the usage chunk itself (and strips it),
/// its `[DONE]` follows the upstream's `[DONE]`, never a stream that just ended.
fn the_usage_stripped_path_needs_the_upstreams_done(driver: &str) {
    let m = upstream(4);
    let text = format!(
        "{}{}",
        provider("up", "openai", m.addr(), ""),
        channel("up-1", "up", &["m"], 0)
    );
    let gw = gateway(driver, &text);
    // The client did not ask for usage: the gateway injects include_usage and strips the chunk.
    let body = chat_body("m", true);
    let whole = post(&gw, "/v1/chat/completions", &[], &body);
    assert_openai_done(&whole);
    assert!(
        !sse_data(&whole.body)
            .iter()
            .any(|d| d.contains("\"usage\"")),
        "the usage chunk was the gateway's: this is the stripped path"
    );
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "no-done")],
        &body,
    );
    assert_openai_cut(&r);
}

/// Protects: a 200 whose framing is exact but whose JSON is cut is a failed attempt, not an
/// answer: the next channel answers.
fn truncated_json_fails_over_to_the_next_channel(driver: &str) {
    let bad = upstream(8);
    let good = upstream(8);
    let text = format!(
        "{}{}{}{}",
        provider(
            "bad",
            "openai",
            bad.addr(),
            "\"x-mock-fault\" = \"truncated-json\""
        ),
        provider("good", "openai", good.addr(), ""),
        channel("bad-1", "bad", &["m"], 10),
        channel("good-1", "good", &["m"], 0)
    );
    let gw = gateway(driver, &text);
    let r = post(&gw, "/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("good-1"));
    assert_eq!(r.header("x-router-attempts"), Some("2"));
    assert_eq!(r.json()["object"].as_str(), Some("chat.completion"));
    assert_eq!(
        requests(&drain(&bad)).len(),
        1,
        "the bad channel was tried first"
    );
}

/// Protects: with no other candidate, a truncated 200 becomes the gateway's own OpenAI-shaped
/// 502 naming the attempt, never a 200 with half a document.
fn truncated_json_on_a_lone_channel_is_a_502(driver: &str) {
    let m = upstream(8);
    let text = format!(
        "{}{}",
        provider("up", "openai", m.addr(), ""),
        channel("up-1", "up", &["m"], 0)
    );
    let gw = gateway(driver, &text);
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "truncated-json")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_error");
    let v = r.json();
    assert_eq!(v["error"]["type"].as_str(), Some("server_error"));
    let msg = v["error"]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("up-1") && msg.contains("not valid JSON"),
        "{msg}"
    );
}

/// Protects: validation stops at `server.max_validated_body`; a larger answer is relayed as
/// the upstream sent it (documented), while a smaller broken one still fails.
fn a_body_over_max_validated_body_streams_through_unvalidated(driver: &str) {
    // 400 words make a ~3 KiB answer: half of it is still over 1 KiB.
    let m = upstream(400);
    let text = format!(
        "[server]\nmax_validated_body = \"1KiB\"\n\n{}{}",
        provider("up", "openai", m.addr(), ""),
        channel("up-1", "up", &["m", "n"], 0)
    );
    let gw = gateway(driver, &text);
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "truncated-json")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body.len() > 1024, "{}", r.body.len());
    let mut b = r.body.clone();
    assert!(
        simd_json::to_owned_value(&mut b).is_err(),
        "relayed as sent, unvalidated"
    );
    assert!(
        r.text().starts_with("{\"id\":\"chatcmpl-mock-"),
        "{}",
        r.text()
    );
    // Under the limit the same fault is caught (the mock's garbage body is 22 bytes).
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-fault", "garbage")],
        &chat_body("n", false),
    );
    assert_eq!(r.status, 502, "{}", r.text());
}

/// Protects: an upstream that ignores `Accept-Encoding: identity` and answers gzip is
/// decoded — whole answers, SSE event by event, translated streams, and error bodies — and
/// the client never sees `Content-Encoding`.
fn gzip_answers_are_decoded_whole_streamed_and_as_errors(driver: &str) {
    let m = upstream(6);
    let text = format!(
        "{}{}{}{}",
        provider("up", "openai", m.addr(), ""),
        provider("a", "anthropic", m.addr(), ""),
        channel("up-1", "up", &["m"], 0),
        channel("a-1", "a", &["claude-x"], 0)
    );
    let gw = gateway(driver, &text);
    let gz = [("x-mock-encoding", "gzip")];
    let r = post(&gw, "/v1/chat/completions", &gz, &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-encoding"), None);
    assert!(
        r.json()["choices"][0]["message"]["content"]
            .as_str()
            .is_some_and(|t| t.starts_with("Hello")),
        "{}",
        r.text()
    );
    // Streams: passthrough, usage-stripped and translated.
    for (model, body) in [
        ("m", chat_with_usage("m")),
        ("m", chat_body("m", true)),
        ("claude-x", chat_body("claude-x", true)),
    ] {
        let r = post(&gw, "/v1/chat/completions", &gz, &body);
        assert_eq!(r.header("content-encoding"), None, "{model}");
        assert_openai_done(&r);
        let text: String = sse_data(&r.body)
            .iter()
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| {
                let v = parse(d);
                let choice = v["choices"].as_array()?.first()?;
                choice["delta"].get("content")?.as_str().map(str::to_string)
            })
            .collect();
        assert!(text.starts_with("Hello from the"), "{model}: {text:?}");
    }
    // A gzip error body returned as-is (a 400) and one kept from a failed attempt (the last
    // 429) both reach the client readable.
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[("x-mock-encoding", "gzip"), ("x-mock-status", "400")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.header("content-encoding"), None);
    assert!(
        r.json()["error"]["message"].as_str().is_some(),
        "{}",
        r.text()
    );
    let r = post(
        &gw,
        "/v1/chat/completions",
        &[
            ("x-mock-encoding", "gzip"),
            ("x-mock-status", "429"),
            ("x-mock-retry-after", "3"),
        ],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 429);
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.json()["error"]["type"].as_str(), Some("rate_limit_error"));
}

/// Protects: `deflate` (zlib, as HTTP means it) is decoded as well, whole and streamed.
fn deflate_answers_are_decoded(driver: &str) {
    let m = upstream(6);
    let text = format!(
        "{}{}",
        provider("up", "openai", m.addr(), ""),
        channel("up-1", "up", &["m"], 0)
    );
    let gw = gateway(driver, &text);
    let h = [("x-mock-encoding", "deflate")];
    let r = post(&gw, "/v1/chat/completions", &h, &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-encoding"), None);
    assert_eq!(r.json()["object"].as_str(), Some("chat.completion"));
    assert_openai_done(&post(
        &gw,
        "/v1/chat/completions",
        &h,
        &chat_with_usage("m"),
    ));
}

/// Protects: an answer in a coding the gateway does not decode (`br`) is never relayed as
/// bytes the client cannot read: the attempt fails over (502 when nothing else is left).
fn other_encodings_fail_over(driver: &str) {
    let br = upstream(6);
    let good = upstream(6);
    let text = format!(
        "{}{}{}{}{}",
        provider("br", "openai", br.addr(), "\"x-mock-encoding\" = \"br\""),
        provider("good", "openai", good.addr(), ""),
        channel("br-1", "br", &["m"], 10),
        channel("good-1", "good", &["m"], 0),
        channel("br-2", "br", &["alone"], 0)
    );
    let gw = gateway(driver, &text);
    let r = post(&gw, "/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("good-1"));
    assert_eq!(r.json()["object"].as_str(), Some("chat.completion"));
    let r = post(&gw, "/v1/chat/completions", &[], &chat_body("alone", true));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("Content-Encoding"), "{}", r.text());
    // The mock saw both br requests; the gateway never relayed their bytes.
    let mut seen = drain(&br);
    seen.retain(|e| matches!(e, smart_ai_router::mock::MockEvent::Request(_)));
    assert_eq!(seen.len(), 2);
}
