//! The failure model end to end, on both drivers, against the mock's hostile knobs: each
//! upstream error judged at its true scope (endpoint, model, channel), rate limits answered as
//! rate limits, panic routing for a lone channel that hiccuped, same-channel retries, context
//! overflow as a 400, and gateway-made answers that say what happened.

#![allow(clippy::disallowed_methods)] // tests block on sockets and threads

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::bootstrap::Gateway;
use smart_ai_router::mock::MockConfig;

both_drivers!(
    a_provider_lacking_an_endpoint_loses_only_that_endpoint,
    one_models_5xx_leaves_the_channels_other_models_and_two_bench_the_channel,
    a_429_cooldown_is_answered_as_a_429_with_the_time_left,
    a_503_with_a_known_recovery_says_when,
    a_lone_channel_survives_a_transient_5xx_under_concurrency,
    the_last_channel_left_is_retried_after_a_503_but_never_after_a_504,
    a_prompt_beyond_every_context_is_a_400_in_the_ingress_shape,
    gateway_made_errors_say_what_happened,
);

fn config(mock: std::net::SocketAddr, models: &[&str], extra: &str) -> String {
    format!("{}\n{extra}", one_channel(mock, models))
}

fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    Client::connect(gw.local_addr()).post(path, headers, body)
}

fn chat(gw: &Gateway, model: &str, headers: &[(&str, &str)]) -> Response {
    post(
        gw,
        "/v1/chat/completions",
        headers,
        &chat_body(model, false),
    )
}

fn cooldowns(gw: &Gateway) -> Vec<simd_json::OwnedValue> {
    let l = admin(gw, "GET", "/admin/cooldowns", None, "").json();
    l["data"].as_array().unwrap().clone()
}

fn a_provider_lacking_an_endpoint_loses_only_that_endpoint(driver: &str) {
    let m = mock(MockConfig {
        models: vec!["m".into()],
        missing_paths: vec!["/responses".into()],
        ..Default::default()
    });
    let gw = gateway(driver, &config(m.addr(), &["m"], ""));
    let paths = |m: &smart_ai_router::mock::MockHandle| -> Vec<String> {
        requests(&drain(m))
            .iter()
            .map(|r| r.path().to_string())
            .collect()
    };
    let responses = r#"{"model":"m","input":"hello"}"#;
    // The OpenAI channel is asked natively first; its 404 cools only (channel, /responses), and
    // the same request is served translated to its chat completions.
    let r = post(&gw, "/v1/responses", &[], responses);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["object"].as_str(), Some("response"));
    assert_eq!(
        paths(&m),
        ["/v1/responses", "/v1/chat/completions"],
        "native first, then translated"
    );
    // Chat on the same channel is unaffected.
    let r = chat(&gw, "m", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    // The endpoint is out on that channel: visible, and not asked again.
    let c = eventually(Duration::from_secs(2), "endpoint cooldown listed", || {
        cooldowns(&gw)
            .into_iter()
            .find(|c| c["scope"].as_str() == Some("endpoint"))
    });
    assert_eq!(c["endpoint"].as_str(), Some("responses"));
    assert_eq!(c["channel"].as_str(), Some("up-1"));
    assert_eq!(cooldowns(&gw).len(), 1, "nothing else is cooling");
    settled(&gw);
    drain(&m);
    let r = post(&gw, "/v1/responses", &[], responses);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        paths(&m),
        ["/v1/chat/completions"],
        "the provider's /responses was not asked again"
    );
    // A request only the native API can serve has nowhere to go.
    let before = m.requests();
    let r = post(
        &gw,
        "/v1/responses",
        &[],
        r#"{"model":"m","input":"hello","previous_response_id":"resp_1"}"#,
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert_eq!(r.error_code(), "endpoint_not_served");
    assert_eq!(m.requests(), before, "the provider was not asked again");
    // The dry run says why.
    let dry = post(
        &gw,
        "/v1/route",
        &[("x-router-endpoint", "responses")],
        &chat_body("m", false),
    );
    assert_eq!(dry.status, 200, "{}", dry.text());
    let reason = dry.json()["rejected"][0]["reason"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(reason.contains("does not serve /responses"), "{reason}");
    // Clearing cooldowns clears the endpoint scope too.
    admin(&gw, "DELETE", "/admin/cooldowns", None, "");
    assert!(cooldowns(&gw).is_empty());
}

fn one_models_5xx_leaves_the_channels_other_models_and_two_bench_the_channel(driver: &str) {
    let m = mock(MockConfig {
        models: vec!["m1".into(), "m2".into(), "m3".into()],
        model_status: vec![("m1".into(), 500), ("m2".into(), 500)],
        ..Default::default()
    });
    let gw = gateway(
        driver,
        &config(
            m.addr(),
            &["m1", "m2", "m3"],
            "[routing]\ncooldown_base = \"30s\"\n",
        ),
    );
    assert_eq!(chat(&gw, "m1", &[]).status, 502);
    // m1's 500 says nothing about m3 on the same channel.
    let r = chat(&gw, "m3", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-panic"), None);
    let listed = eventually(Duration::from_secs(2), "m1 listed", || {
        let l = cooldowns(&gw);
        (!l.is_empty()).then_some(l)
    });
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["scope"].as_str(), Some("model"));
    assert_eq!(listed[0]["model"].as_str(), Some("m1"));
    // m1 again: cooling, and nothing else can serve it, but out only for a transient reason:
    // panic routing tries it (and says so); it fails again.
    settled(&gw);
    let r = chat(&gw, "m1", &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("x-router-panic"), Some("1"));
    // A second model failing within m1's window (no success in between): the channel is the
    // problem.
    assert_eq!(chat(&gw, "m2", &[]).status, 502);
    let ch = eventually(Duration::from_secs(2), "channel benched", || {
        let ch = admin(&gw, "GET", "/admin/channels/up-1", None, "").json();
        (ch["state"].as_str() == Some("cooling")).then_some(ch)
    });
    assert_eq!(ch["health"]["reason"].as_str(), Some("failing"));
    // Out only for a transient reason, and nothing else left: panic routing tries m3 on it,
    // and its success heals the channel.
    settled(&gw);
    let r = chat(&gw, "m3", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-panic"), Some("1"));
    eventually(
        Duration::from_secs(2),
        "healed by the panic success",
        || {
            let ch = admin(&gw, "GET", "/admin/channels/up-1", None, "").json();
            (ch["state"].as_str() == Some("ok")).then_some(())
        },
    );
}

fn a_429_cooldown_is_answered_as_a_429_with_the_time_left(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &config(m.addr(), &["m"], ""));
    let r = chat(
        &gw,
        "m",
        &[("x-mock-status", "429"), ("x-mock-retry-after", "30")],
    );
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert!(
        !r.text().contains("injected"),
        "the provider's body stays private: {}",
        r.text()
    );
    settled(&gw);
    let before = m.requests();
    let r = chat(&gw, "m", &[]);
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert_eq!(r.json()["error"]["type"].as_str(), Some("rate_limit_error"));
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((28..=30).contains(&wait), "Retry-After {wait}");
    assert_eq!(
        m.requests(),
        before,
        "the gateway answered for the provider"
    );
    assert_eq!(r.header("x-router-attempts"), Some("0"));
}

fn a_503_with_a_known_recovery_says_when(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(
        driver,
        &config(m.addr(), &["m"], "[routing]\nauth_cooldown = \"600s\"\n"),
    );
    let r = chat(&gw, "m", &[("x-mock-status", "401")]);
    assert_eq!(r.status, 502, "{}", r.text());
    settled(&gw);
    let r = chat(&gw, "m", &[]);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.error_code(), "no_usable_channel");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((590..=600).contains(&wait), "Retry-After {wait}");
}

fn a_lone_channel_survives_a_transient_5xx_under_concurrency(driver: &str) {
    let m = mock(MockConfig {
        models: vec!["m".into()],
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let gw = Arc::new(gateway(driver, &config(m.addr(), &["m"], "")));
    // The first request meets one 500 (not retried on the channel: only 502/503 are).
    let key = format!("lone-{driver}");
    let first = chat(
        &gw,
        "m",
        &[
            ("x-mock-fail-times", "1"),
            ("x-mock-fail-key", &key),
            ("x-mock-status", "500"),
        ],
    );
    assert_eq!(first.status, 502, "{}", first.text());
    // Right after it, 50 concurrent requests on the (now cooling) lone channel.
    let n = 50;
    let start = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let (gw, start) = (gw.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                chat(&gw, "m", &[]).status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let ok = statuses.iter().filter(|s| **s == 200).count();
    eprintln!("{driver}: {ok}/{n} succeeded after a transient 5xx on a lone channel");
    assert_eq!(ok, n, "{statuses:?}");
}

fn the_last_channel_left_is_retried_after_a_503_but_never_after_a_504(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &config(m.addr(), &["m"], ""));
    let key = format!("retry-{driver}");
    let before = m.requests();
    let r = chat(
        &gw,
        "m",
        &[("x-mock-fail-times", "1"), ("x-mock-fail-key", &key)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("x-router-attempts"),
        Some("1"),
        "a retry is not an attempt"
    );
    assert_eq!(m.requests(), before + 2);
    // A 504: the provider may still be working (and billing) on it: no retry.
    let key = format!("no-retry-{driver}");
    let before = m.requests();
    let r = chat(
        &gw,
        "m",
        &[
            ("x-mock-fail-times", "1"),
            ("x-mock-fail-key", &key),
            ("x-mock-status", "504"),
        ],
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(m.requests(), before + 1);
    // Switched off.
    let gw = gateway(
        driver,
        &config(m.addr(), &["m"], "[routing]\nsame_channel_retries = 0\n"),
    );
    let key = format!("off-{driver}");
    let r = chat(
        &gw,
        "m",
        &[("x-mock-fail-times", "1"), ("x-mock-fail-key", &key)],
    );
    assert_eq!(r.status, 502, "{}", r.text());
}

fn a_prompt_beyond_every_context_is_a_400_in_the_ingress_shape(driver: &str) {
    let m = mock_models(&["small"]);
    let gw = gateway(
        driver,
        &format!(
            "{}model_info = {{ \"small\" = {{ context = 1000 }} }}\n",
            one_channel(m.addr(), &["small"])
        ),
    );
    // ~2,500 tokens of prompt for a 1,000-token model: the client's mistake, not a 503.
    let long = "word ".repeat(2000);
    let body = format!(r#"{{"model":"small","messages":[{{"role":"user","content":"{long}"}}]}}"#);
    let before = m.requests();
    let r = post(&gw, "/v1/chat/completions", &[], &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["error"]["code"].as_str(), Some("context_length_exceeded"));
    assert_eq!(e["error"]["type"].as_str(), Some("invalid_request_error"));
    assert_eq!(e["error"]["param"].as_str(), Some("messages"));
    assert!(e["error"]["message"].as_str().unwrap().contains("1000"));
    assert_eq!(m.requests(), before, "no upstream was asked");
    // Anthropic's ingress gets Anthropic's shape.
    let body = format!(
        r#"{{"model":"small","max_tokens":16,"messages":[{{"role":"user","content":"{long}"}}]}}"#
    );
    let r = post(&gw, "/v1/messages", &[], &body);
    assert_eq!(r.status, 400, "{}", r.text());
    let e = r.json();
    assert_eq!(e["type"].as_str(), Some("error"));
    assert_eq!(e["error"]["type"].as_str(), Some("invalid_request_error"));
    // Within the 10 % margin the estimate may be wrong: the model is tried.
    let near = "word ".repeat(840);
    let body = format!(r#"{{"model":"small","messages":[{{"role":"user","content":"{near}"}}]}}"#);
    let r = post(&gw, "/v1/chat/completions", &[], &body);
    assert_eq!(r.status, 200, "{}", r.text());
}

fn gateway_made_errors_say_what_happened(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(
        driver,
        &config(
            m.addr(),
            &["m"],
            "[server]\ncors_origins = [\"https://app.example\"]\n",
        ),
    );
    let r = chat(
        &gw,
        "m",
        &[("x-mock-status", "500"), ("origin", "https://app.example")],
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.header("x-request-id").is_some());
    assert_eq!(r.header("x-router-requested-model"), Some("m"));
    assert_eq!(r.header("x-router-attempts"), Some("1"));
    assert_eq!(r.header("x-router-channel"), Some("up-1"));
    let overhead: f64 = r.header("x-router-overhead-ms").unwrap().parse().unwrap();
    assert!(overhead >= 0.0);
    let exposed = r.header("access-control-expose-headers").unwrap_or("");
    assert!(exposed.contains("x-router-panic"), "{exposed}");
    // A route error before any attempt says so too.
    let r = chat(&gw, "no-such-model", &[]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-router-requested-model"), Some("no-such-model"));
    assert_eq!(r.header("x-router-attempts"), Some("0"));
}
