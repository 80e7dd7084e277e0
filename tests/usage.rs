//! Usage capture and accounting against real sockets: the gateway asks streamed OpenAI-family
//! upstreams for usage and hides that chunk unless the client asked, prices whole answers in
//! `x-router-cost`, writes one usage record per request to the day's JSONL file, and
//! `GET /admin/usage` sums them; embeddings route only to embedding models; unsupported
//! OpenAI endpoints answer a documented 404.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;

const DRIVER: &str = "io_uring_or_auto";

fn priced(addr: std::net::SocketAddr, state: &std::path::Path) -> String {
    format!(
        r#"{}
pricing = {{ input = 2.0, output = 8.0 }}

[state]
dir = "{}"
"#,
        one_channel(addr, &["m", "text-embedding-3-small"]).trim_end(),
        state.display()
    )
}

#[test]
fn streamed_usage_is_requested_upstream_and_shown_only_when_asked() {
    let m = mock(MockConfig {
        chunks: 3,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", true));
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    assert!(!data.iter().any(|d| d.contains("\"usage\"")), "{data:?}");
    let upstream = drain(&m);
    let sent = &requests(&upstream)[0].body;
    assert!(
        find(sent, b"\"stream_options\":{\"include_usage\":true}").is_some(),
        "{}",
        String::from_utf8_lossy(sent)
    );

    let body = r#"{"model":"m","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"hi"}]}"#;
    let r = c.post("/v1/chat/completions", &[], body);
    let data = sse_data(&r.body);
    assert!(
        data.iter()
            .any(|d| d.contains("\"usage\"") && d.contains("\"choices\":[]")),
        "the client asked for usage: {data:?}"
    );
}

/// The upstream body of the only request the mock saw since the last drain.
fn forwarded_body(m: &smart_ai_router::mock::MockHandle) -> String {
    let upstream = drain(m);
    let reqs = requests(&upstream);
    assert_eq!(reqs.len(), 1);
    String::from_utf8_lossy(&reqs[0].body).into_owned()
}

#[test]
fn a_stream_always_asks_for_usage_whatever_the_client_says() {
    let m = mock(MockConfig {
        chunks: 3,
        record: true,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
    for options in [
        r#""stream_options":{"include_usage":false}"#,
        r#""stream_options":{}"#,
        r#""stream_options":null"#,
        r#""stream_options":{"include_usage":true},"stream_options":null"#,
        r#""stream_options" : { "include_obfuscation" : false , "include_usage" : false }"#,
    ] {
        let body = format!(r#"{{"model":"m","stream":true,{options},{msgs}}}"#);
        let r = c.post("/v1/chat/completions", &[], &body);
        assert_eq!(r.status, 200, "{options}: {}", r.text());
        let data = sse_data(&r.body);
        assert!(
            !data.iter().any(|d| d.contains("\"usage\"")),
            "{options}: the client did not ask for usage: {data:?}"
        );
        let sent = forwarded_body(&m);
        assert_eq!(
            sent.matches("\"stream_options\"").count(),
            1,
            "{options}: exactly one stream_options upstream: {sent}"
        );
        assert!(
            sent.contains(r#""stream_options":{"include_usage":true"#),
            "{options}: {sent}"
        );
        let mut copy = sent.clone().into_bytes();
        let v = simd_json::to_owned_value(&mut copy).expect("valid JSON upstream");
        assert_eq!(v["stream_options"]["include_usage"].as_bool(), Some(true));
        if options.contains("include_obfuscation") {
            assert_eq!(
                v["stream_options"]["include_obfuscation"].as_bool(),
                Some(false),
                "the client's other stream options are kept: {sent}"
            );
        }
    }
    // A client that asks keeps getting its usage chunk.
    let body = format!(
        r#"{{"model":"m","stream":true,"stream_options":{{"include_usage":true}},{msgs}}}"#
    );
    let r = c.post("/v1/chat/completions", &[], &body);
    assert!(sse_data(&r.body).iter().any(|d| d.contains("\"usage\"")));
    let _ = drain(&m);
    // A non-streamed request's stream_options (an error upstream, if any) are the client's.
    let body = format!(r#"{{"model":"m","stream_options":{{"include_usage":false}},{msgs}}}"#);
    let r = c.post("/v1/chat/completions", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(forwarded_body(&m).contains(r#""stream_options":{"include_usage":false}"#));
}

#[test]
fn a_usage_chunk_written_with_spaces_is_still_hidden() {
    let m = mock(MockConfig {
        chunks: 3,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-usage", "spaced")],
        &chat_body("m", true),
    );
    assert_eq!(r.status, 200);
    // What `for chunk in stream: chunk.choices[0]` needs: every chunk has a choice.
    for d in sse_data(&r.body) {
        if d == "[DONE]" {
            continue;
        }
        let mut b = d.clone().into_bytes();
        let v = simd_json::to_owned_value(&mut b).expect("JSON chunk");
        assert!(
            v["choices"].as_array().is_some_and(|a| !a.is_empty()),
            "a chunk without choices reached a client that did not ask for usage: {d}"
        );
    }
}

#[test]
fn answers_without_usage_are_estimated_priced_and_marked() {
    let dir = temp_dir("usage-estimated");
    let m = mock(MockConfig {
        chunks: 40,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &priced(m.addr(), &dir));
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true] {
        let r = c.post(
            "/v1/chat/completions",
            &[("x-mock-usage", "none")],
            &chat_body("m", stream),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let summary = eventually(Duration::from_secs(5), "two records", || {
        let s = admin(&gw, "GET", "/admin/usage", None, "").json();
        (s["total"]["requests"].as_u64() == Some(2)).then_some(s)
    });
    // 40 words of mock text, ~6 bytes each: about 60 tokens per answer by bytes / 4.
    let completion = summary["total"]["completion_tokens"].as_u64().unwrap();
    assert!((80..=200).contains(&completion), "{summary:?}");
    assert!(
        summary["total"]["cost"].as_f64().unwrap() > 0.0,
        "{summary:?}"
    );
    let text = eventually(Duration::from_secs(5), "two lines written", || {
        let day = std::fs::read_dir(dir.join("usage"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "jsonl"))?;
        let text = std::fs::read_to_string(day).ok()?;
        (text.lines().count() == 2).then_some(text)
    });
    for line in text.lines() {
        assert!(line.contains("\"usage_estimated\":true"), "{line}");
        assert!(!line.contains("\"completion_tokens\":null"), "{line}");
        assert!(!line.contains("\"cost\":null"), "{line}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn usage_records_reach_the_daily_file_and_the_admin_summary() {
    let dir = temp_dir("usage");
    let m = mock(MockConfig::default());
    let gw = gateway(DRIVER, &priced(m.addr(), &dir));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let prompt = v["usage"]["prompt_tokens"].as_u64().unwrap();
    let completion = v["usage"]["completion_tokens"].as_u64().unwrap();
    let expected = (prompt as f64 * 2.0 + completion as f64 * 8.0) / 1e6;
    let header: f64 = r
        .header("x-router-cost")
        .expect("x-router-cost")
        .parse()
        .unwrap();
    assert!((header - expected).abs() < 1e-9, "{header} vs {expected}");
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", true));
    assert_eq!(r.status, 200);

    let summary = eventually(Duration::from_secs(5), "two records summarised", || {
        let s = admin(&gw, "GET", "/admin/usage?group_by=model", None, "").json();
        (s["total"]["requests"].as_u64() == Some(2)).then_some(s)
    });
    let groups = summary["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 1, "{summary:?}");
    assert_eq!(groups[0]["key"].as_str(), Some("m"));
    // The stream's request is longer (the gateway added stream_options), so the mock counts
    // more prompt tokens for it; both are measured, not estimated.
    let total_prompt = summary["total"]["prompt_tokens"].as_u64().unwrap();
    assert!(total_prompt > 2 * prompt, "{summary:?}");
    assert_eq!(
        summary["total"]["completion_tokens"].as_u64(),
        Some(2 * completion)
    );
    let cost = summary["total"]["cost"].as_f64().unwrap();
    let all = (total_prompt as f64 * 2.0 + 2.0 * completion as f64 * 8.0) / 1e6;
    assert!((cost - all).abs() < 1e-12, "{cost} vs {all}");
    assert_eq!(summary["currency"].as_str(), Some("USD"));

    let files: Vec<_> = std::fs::read_dir(dir.join("usage"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    for line in &lines {
        assert!(line.contains("\"channel\":\"up-1\"") && line.contains("\"status\":200"));
        assert!(line.contains("\"usage_estimated\":false"), "{line}");
    }
    assert!(!text.contains("sk-channel"), "no key in usage records");

    let bad = admin(&gw, "GET", "/admin/usage?group_by=colour", None, "");
    assert_eq!(bad.status, 400, "{}", bad.text());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn embeddings_route_to_embedding_models_only() {
    let m = mock(MockConfig::default());
    let gw = gateway(
        DRIVER,
        &one_channel(m.addr(), &["m", "text-embedding-3-small"]),
    );
    let mut c = Client::connect(gw.local_addr());
    // A chat model is not an embedding model, and the other way round.
    let r = c.post("/v1/embeddings", &[], r#"{"model":"m","input":"hello"}"#);
    assert_eq!(r.status, 404, "{}", r.text());
    let r = c.post(
        "/v1/chat/completions",
        &[],
        &chat_body("text-embedding-3-small", false),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(drain(&m).is_empty());
    let r = c.post(
        "/v1/embeddings",
        &[],
        r#"{"model":"text-embedding-3-small","input":"hello"}"#,
    );
    let upstream = drain(&m);
    let reqs = requests(&upstream);
    assert_eq!(reqs.len(), 1, "{}", r.text());
    assert!(
        reqs[0].target.ends_with("/v1/embeddings"),
        "{}",
        reqs[0].target
    );
}

#[test]
fn unsupported_openai_endpoints_answer_a_documented_404() {
    let m = mock(MockConfig::default());
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    for path in ["/v1/images/generations", "/v1/audio/speech", "/v1/files"] {
        let r = c.post(path, &[], "{}");
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.error_code(), "unsupported_endpoint", "{path}");
    }
}

/// Two channels for `m`: `cap-1` first (priority) with daily limits, `spare-1` behind it.
fn capped(
    addr: std::net::SocketAddr,
    state: &std::path::Path,
    limits: &str,
    global: &str,
) -> String {
    format!(
        r#"
[providers.up]
kind = "openai"
base_url = "http://{addr}/v1"

[[channels]]
id = "cap-1"
provider = "up"
api_key = "sk-a"
models = ["m"]
priority = 10
pricing = {{ input = 1000.0, output = 1000.0 }}
{limits}

[[channels]]
id = "spare-1"
provider = "up"
api_key = "sk-b"
models = ["m"]

[state]
dir = "{}"
{global}
"#,
        state.display()
    )
}

/// The channels a dry run would try for `m`, and why the others are out.
fn route(gw: &smart_ai_router::bootstrap::Gateway) -> simd_json::OwnedValue {
    Client::connect(gw.local_addr())
        .post("/v1/route", &[], &chat_body("m", false))
        .json()
}

fn spent(gw: &smart_ai_router::bootstrap::Gateway) -> bool {
    let r = route(gw);
    r["rejected"].as_array().is_some_and(|a| {
        a.iter().any(|x| {
            x["channel"].as_str() == Some("cap-1")
                && x["reason"]
                    .as_str()
                    .is_some_and(|s| s.contains("daily quota"))
        })
    })
}

#[test]
fn a_channel_leaves_rotation_when_its_daily_quota_is_spent_even_after_a_restart() {
    let dir = temp_dir("quota");
    let m = mock(MockConfig::default());
    let toml = capped(m.addr(), &dir, "daily_request_limit = 2", "");
    let gw = gateway(DRIVER, &toml);
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..2 {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
        assert_eq!(r.header("x-router-channel"), Some("cap-1"));
    }
    eventually(Duration::from_secs(5), "cap-1 spent", || {
        spent(&gw).then_some(())
    });
    settled(&gw);
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-router-channel"), Some("spare-1"));
    gw.shutdown();
    let saved = std::fs::read_to_string(dir.join("usage/counters.json")).unwrap();
    assert!(saved.contains("\"cap-1\":{\"requests\":2"), "{saved}");

    // The counters survive the restart: cap-1 stays out for the rest of the day.
    let gw = gateway(DRIVER, &toml);
    eventually(Duration::from_secs(5), "cap-1 still spent", || {
        spent(&gw).then_some(())
    });
    settled(&gw);
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.header("x-router-channel"), Some("spare-1"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn token_and_budget_limits_spend_a_channel_too() {
    for limit in ["daily_token_limit = 5", "daily_budget = 0.001"] {
        let dir = temp_dir("quota-kind");
        let m = mock(MockConfig::default());
        let gw = gateway(DRIVER, &capped(m.addr(), &dir, limit, ""));
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[],
            &chat_body("m", false),
        );
        assert_eq!(r.header("x-router-channel"), Some("cap-1"), "{limit}");
        eventually(Duration::from_secs(5), limit, || spent(&gw).then_some(()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn a_spent_global_budget_answers_429_until_midnight() {
    let dir = temp_dir("budget");
    let m = mock(MockConfig::default());
    let gw = gateway(
        DRIVER,
        &capped(m.addr(), &dir, "", "\n[pricing]\ndaily_budget = 0.01\n"),
    );
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    let r = eventually(Duration::from_secs(5), "budget spent", || {
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[],
            &chat_body("m", false),
        );
        (r.status == 429).then_some(r)
    });
    assert_eq!(r.error_code(), "budget_exhausted");
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=86_400).contains(&retry), "{retry}");
    assert!(r.text().contains("resets at 00:00 UTC"), "{}", r.text());
    // Anthropic-format clients get the same refusal in their own shape (on whichever worker
    // takes the connection, once it adopted the snapshot).
    let r = eventually(Duration::from_secs(5), "429 on /v1/messages", || {
        let r = Client::connect(gw.local_addr()).post(
            "/v1/messages",
            &[],
            r#"{"model":"m","max_tokens":10,"messages":[{"role":"user","content":"hi"}]}"#,
        );
        (r.status == 429).then_some(r)
    });
    assert_eq!(r.json()["error"]["type"].as_str(), Some("rate_limit_error"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_client_that_leaves_before_the_answer_is_still_recorded() {
    let dir = temp_dir("usage-gone");
    let m = mock(MockConfig {
        latency: Duration::from_millis(400),
        ..Default::default()
    });
    let gw = gateway(DRIVER, &priced(m.addr(), &dir));
    {
        let mut c = Client::connect(gw.local_addr());
        c.send(&post_bytes(
            "/v1/chat/completions",
            &[],
            &chat_body("m", false),
        ));
        std::thread::sleep(Duration::from_millis(60));
        // dropped: the client goes away while the upstream is still thinking
    }
    let s = eventually(
        Duration::from_secs(5),
        "the abandoned request recorded",
        || {
            let s = admin(&gw, "GET", "/admin/usage", None, "").json();
            (s["total"]["requests"].as_u64() == Some(1)).then_some(s)
        },
    );
    assert_eq!(s["total"]["errors"].as_u64(), Some(1), "{s:?}");
    let text = std::fs::read_dir(dir.join("usage"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect::<String>();
    assert!(text.contains("\"status\":499"), "{text}");
    assert!(text.contains("\"channel\":\"up-1\""), "{text}");
    // Times beyond year 9999 are refused, not overflowed.
    let r = admin(
        &gw,
        "GET",
        "/admin/usage?since=18446744073709000&until=18446744073709551",
        None,
        "",
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let _ = std::fs::remove_dir_all(&dir);
}
