//! Routing through the whole gateway, on both drivers: expressions and router fields end to
//! end, failover with cooldowns (500, 429 + Retry-After, 401), streams failing over only
//! before their first byte, cooldown agreement across workers, and the dry run.
//! Time behaviour uses short configured cooldowns with generous margins.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;

both_drivers!(
    expressions_and_router_fields_route_end_to_end,
    a_failing_channel_cools_down_then_gets_a_half_open_trial,
    retry_after_keeps_a_rate_limited_channel_out_for_that_long,
    a_rejected_key_takes_the_channel_out,
    streams_fail_over_before_the_first_byte_but_never_after,
    cooldowns_reach_every_worker_within_a_tick,
    the_dry_run_explains_every_decision,
    filtered_out_candidates_give_503_with_reasons,
);

fn cfg(a: std::net::SocketAddr, b: std::net::SocketAddr, routing: &str) -> String {
    format!(
        r#"
[routing]
{routing}
[providers.a]
base_url = "http://{a}/v1"
[providers.b]
base_url = "http://{b}/v1"

[[channels]]
id = "a"
provider = "a"
api_key = "sk-a"
models = ["m", "qwen/qwen3-32b"]
priority = 10

[[channels]]
id = "b"
provider = "b"
api_key = "sk-b"
models = ["m", "gpt-4o-mini"]
pricing = {{ input = 0.15, output = 0.6 }}
"#
    )
}

fn chat(c: &mut Client, model: &str, stream: bool, headers: &[(&str, &str)]) -> Response {
    c.post("/v1/chat/completions", headers, &chat_body(model, stream))
}

fn expressions_and_router_fields_route_end_to_end(driver: &str) {
    let a = mock_models(&[]);
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), ""));
    let mut c = Client::connect(gw.local_addr());
    // a tag query picks the model that carries the tags, and the upstream gets its real id
    let r = chat(&mut c, "tag:qwen3,32b", false, &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-model"), Some("qwen/qwen3-32b"));
    assert_eq!(r.header("x-router-requested-model"), Some("tag:qwen3,32b"));
    let ev = drain(&a);
    assert!(
        String::from_utf8_lossy(&requests(&ev)[0].body).contains("\"model\":\"qwen/qwen3-32b\"")
    );
    // router fields in the body are honoured and stripped; headers override them
    let body = r#"{"model":"m","strategy":"cost_first","messages":[{"role":"user","content":"hi"}],"exclude_providers":["a"]}"#;
    let r = c.post("/v1/chat/completions", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-router-channel"),
        Some("b"),
        "provider a excluded"
    );
    assert_eq!(r.header("x-router-strategy"), Some("cost_first"));
    let score: f64 = r.header("x-router-score").unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&score));
    let ev = drain(&b);
    let forwarded = String::from_utf8_lossy(&requests(&ev)[0].body).into_owned();
    assert_eq!(
        forwarded,
        r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#
    );
    let r = chat(
        &mut c,
        "m",
        false,
        &[
            ("x-router-exclude-providers", "b"),
            ("x-router-strategy", "speed_first"),
        ],
    );
    assert_eq!(r.header("x-router-channel"), Some("a"));
    assert_eq!(r.header("x-router-strategy"), Some("speed_first"));
    // bad expressions and strategies are 400s that say what is wrong
    let r = chat(&mut c, "tag:a,,b", false, &[]);
    assert_eq!(r.status, 400);
    assert_eq!(r.error_code(), "invalid_model_expression");
    let r = chat(&mut c, "m", false, &[("x-router-strategy", "fastest")]);
    assert_eq!(r.status, 400);
    assert!(r.text().contains("Unknown strategy"), "{}", r.text());
    let r = chat(&mut c, "tag:qwn", false, &[]);
    assert_eq!(r.status, 404);
    assert!(r.text().contains("Closest tag: `qwen`"), "{}", r.text());
}

fn a_failing_channel_cools_down_then_gets_a_half_open_trial(driver: &str) {
    let a = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let b = mock_models(&[]);
    let gw = gateway(
        driver,
        &cfg(
            a.addr(),
            b.addr(),
            "cooldown_base = \"400ms\"\ncooldown_max = \"10s\"",
        )
        .replace("[server]", "")
        .replacen("[routing]", "[server]\nworkers = 1\n[routing]", 1),
    );
    let mut c = Client::connect(gw.local_addr());
    let r = chat(&mut c, "m", false, &[]);
    assert_eq!((r.status, r.header("x-router-attempts")), (200, Some("2")));
    // cooling down: straight to b, a sees nothing
    let r = chat(&mut c, "m", false, &[]);
    assert_eq!(
        (r.header("x-router-channel"), r.header("x-router-attempts")),
        (Some("b"), Some("1"))
    );
    assert_eq!(a.requests(), 1);
    // after the cooldown: one half-open trial, which fails and backs off longer (800 ms)
    std::thread::sleep(Duration::from_millis(600));
    let r = chat(&mut c, "m", false, &[]);
    assert_eq!(r.header("x-router-attempts"), Some("2"));
    assert_eq!(a.requests(), 2);
    std::thread::sleep(Duration::from_millis(500));
    chat(&mut c, "m", false, &[]);
    assert_eq!(
        a.requests(),
        2,
        "the second backoff (800 ms) is longer than the first"
    );
}

fn retry_after_keeps_a_rate_limited_channel_out_for_that_long(driver: &str) {
    let a = mock(MockConfig {
        status: Some(429),
        retry_after: Some(1),
        ..Default::default()
    });
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), "cooldown_base = \"50ms\""));
    let mut c = Client::connect(gw.local_addr());
    let started = Instant::now();
    assert_eq!(
        chat(&mut c, "m", false, &[]).header("x-router-channel"),
        Some("b")
    );
    std::thread::sleep(Duration::from_millis(300));
    chat(&mut c, "m", false, &[]);
    assert_eq!(a.requests(), 1, "Retry-After: 1 outlasts the 50 ms backoff");
    std::thread::sleep(Duration::from_millis(1300).saturating_sub(started.elapsed()));
    chat(&mut c, "m", false, &[]);
    assert_eq!(a.requests(), 2, "back in rotation once Retry-After passed");
}

fn a_rejected_key_takes_the_channel_out(driver: &str) {
    let a = mock(MockConfig {
        status: Some(401),
        ..Default::default()
    });
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), "cooldown_base = \"10ms\""));
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..5 {
        let r = chat(&mut c, "m", false, &[]);
        assert_eq!(r.header("x-router-channel"), Some("b"));
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        a.requests(),
        1,
        "a 401 keeps the channel out (auth_cooldown), not a short backoff"
    );
    let r = Client::connect(gw.local_addr()).post("/v1/route", &[], &chat_body("m", false));
    assert!(r.text().contains("API key rejected"), "{}", r.text());
}

fn streams_fail_over_before_the_first_byte_but_never_after(driver: &str) {
    let a = mock(MockConfig {
        status: Some(503),
        ..Default::default()
    });
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), ""));
    let r = chat(&mut Client::connect(gw.local_addr()), "m", true, &[]);
    assert_eq!(r.header("x-router-channel"), Some("b"));
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    // a stream that breaks after its first event is not retried elsewhere
    let a = mock_models(&[]);
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), ""));
    let mut c = Client::connect(gw.local_addr());
    let r = chat(&mut c, "m", true, &[("x-mock-cut-after", "2")]);
    let data = sse_data(&r.body);
    assert!(
        data.last().unwrap().contains("upstream_stream_cut"),
        "{data:?}"
    );
    assert_eq!(b.requests(), 0, "no failover once bytes reached the client");
    // and the cut counts against the channel: the next request (same worker) avoids it
    let r = chat(&mut c, "m", false, &[]);
    assert_eq!(r.header("x-router-channel"), Some("b"));
}

fn cooldowns_reach_every_worker_within_a_tick(driver: &str) {
    let a = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let b = mock_models(&[]);
    let text = cfg(a.addr(), b.addr(), "cooldown_base = \"30s\"");
    let gw = gateway(
        driver,
        &format!("[server]\nworkers = 2\ntick = \"20ms\"\n{text}"),
    );
    // One keep-alive connection per worker (a connection stays on the worker that accepted it).
    let worker_of = |c: &mut Client| c.get("/health").json()["worker"].as_u64().unwrap();
    let mut first = Client::connect(gw.local_addr());
    let w0 = worker_of(&mut first);
    let mut other = None;
    for _ in 0..200 {
        let mut c = Client::connect(gw.local_addr());
        if worker_of(&mut c) != w0 {
            other = Some(c);
            break;
        }
    }
    let mut other = other.expect("the kernel spreads connections over both workers");
    // The failure is seen on worker w0 ...
    let r = chat(&mut first, "m", false, &[]);
    assert_eq!(r.header("x-router-attempts"), Some("2"));
    // ... and, a few ticks later, the other worker skips the channel too.
    std::thread::sleep(Duration::from_millis(200));
    let r = chat(&mut other, "m", false, &[]);
    assert_eq!(
        r.header("x-router-attempts"),
        Some("1"),
        "the cooldown propagated"
    );
    assert_eq!(a.requests(), 1);
}

fn the_dry_run_explains_every_decision(driver: &str) {
    let a = mock_models(&[]);
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), ""));
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
    let r = Client::connect(gw.local_addr()).post(
        "/v1/route",
        &[("x-router-strategy", "cost_first")],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"].as_str(), Some("m"));
    assert_eq!(v["strategy"].as_str(), Some("cost_first"));
    assert_eq!(
        v["candidates"].as_array().unwrap().len(),
        0,
        "`m` gives no hint of vision"
    );
    let rejected = v["rejected"].as_array().unwrap();
    assert_eq!(rejected.len(), 2);
    assert!(
        rejected
            .iter()
            .all(|x| x["reason"].as_str() == Some("lacks vision")),
        "{}",
        r.text()
    );
    let r = Client::connect(gw.local_addr()).post("/v1/route", &[], &chat_body("m", false));
    let v = r.json();
    let cands = v["candidates"].as_array().unwrap();
    assert_eq!(cands.len(), 2);
    assert_eq!(cands[0]["channel"].as_str(), Some("a"), "priority 10 first");
    assert_eq!(cands[0]["priority"].as_i64(), Some(10));
    for k in [
        "cost",
        "speed",
        "quality",
        "reliability",
        "context",
        "parameters",
        "free",
        "local",
    ] {
        assert!(
            cands[0]["scores"][k].as_f64().is_some(),
            "score {k}: {}",
            r.text()
        );
    }
    assert_eq!(
        a.requests() + b.requests(),
        0,
        "a dry run calls no upstream"
    );
}

fn filtered_out_candidates_give_503_with_reasons(driver: &str) {
    let a = mock_models(&[]);
    let b = mock_models(&[]);
    let gw = gateway(driver, &cfg(a.addr(), b.addr(), ""));
    let body = r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}"#;
    let r = Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], body);
    assert_eq!(r.status, 503);
    assert_eq!(r.error_code(), "no_usable_channel");
    assert!(
        r.text().contains("2 candidates") && r.text().contains("lacks vision"),
        "{}",
        r.text()
    );
}
