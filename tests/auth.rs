//! Client authentication against real sockets: with client keys configured, every API request
//! needs one (Bearer, x-api-key, x-goog-api-key or Gemini's `?key=`); a missing, unknown or
//! expired key is a 401 in the caller's own error shape, a model outside the key's allowance a
//! 403; `/health` stays open; usage records and metrics carry the key's name and never the
//! key; keys added to the keys file with `keys add` are accepted after a reload and revoked
//! ones refused.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;
use smart_ai_router::secret::{digest, hex};

const DRIVER: &str = "io_uring_or_auto";

fn keyed(mock: std::net::SocketAddr, state: &std::path::Path) -> String {
    format!(
        r#"{}
[[channels]]
id = "free-1"
provider = "up"
api_key = "sk-up"
models = ["cheap"]
tags = ["free"]

[state]
dir = "{}"

[[auth.keys]]
name = "team-a"
sha256 = "{}"

[[auth.keys]]
name = "free-only"
sha256 = "{}"
models = ["tag:free"]

[[auth.keys]]
name = "old"
sha256 = "{}"
expires = "2001-01-01"
"#,
        one_channel(mock, &["m"]).trim_end(),
        state.display(),
        hex(&digest(b"sk-team-a")),
        hex(&digest(b"sk-free")),
        hex(&digest(b"sk-old")),
    )
}

/// A non-streamed chat request for model `m` with `key` as its Bearer token.
fn post(c: &mut Client, key: &str) -> Response {
    c.post(
        "/v1/chat/completions",
        &[("authorization", &format!("Bearer {key}"))],
        &chat_body("m", false),
    )
}

#[test]
fn keys_gate_every_api_route_in_the_callers_error_shape() {
    let dir = temp_dir("client-auth");
    let m = mock(MockConfig::default());
    let gw = gateway(DRIVER, &keyed(m.addr(), &dir));
    let mut c = Client::connect(gw.local_addr());
    // A refused request's body is never read: its connection closes after the answer.
    let refused = |path: &str, headers: &[(&str, &str)], body: &str| {
        let mut c = Client::connect(gw.local_addr());
        let r = c.post(path, headers, body);
        assert!(
            c.is_closed(),
            "a refused request with a body closes its connection"
        );
        r
    };

    // No key, an unknown key, an expired key: 401, OpenAI-shaped, with a challenge.
    for (headers, says) in [
        (vec![], "No API key"),
        (vec![("authorization", "Bearer sk-nope")], "not valid"),
        (vec![("authorization", "Bearer sk-old")], "expired"),
    ] {
        let r = refused("/v1/chat/completions", &headers, &chat_body("m", false));
        assert_eq!(r.status, 401, "{}", r.text());
        assert_eq!(r.error_code(), "invalid_api_key");
        assert_eq!(
            r.json()["error"]["type"].as_str(),
            Some("authentication_error")
        );
        assert!(r.text().contains(says), "{}", r.text());
        assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        assert!(
            !r.text().contains("sk-"),
            "the key is never echoed: {}",
            r.text()
        );
    }
    assert_eq!(m.requests(), 0, "nothing reached the upstream");

    // The same key works as Bearer and as x-api-key; /v1/models needs it too.
    let ok = c.post(
        "/v1/chat/completions",
        &[("authorization", "Bearer sk-team-a")],
        &chat_body("m", false),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    let ok = c.post(
        "/v1/chat/completions",
        &[("x-api-key", "sk-team-a")],
        &chat_body("m", true),
    );
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(c.get("/v1/models").status, 401);
    assert_eq!(c.get("/health").status, 200, "health stays open");

    // Anthropic ingress: its own error shape; Gemini ingress: ?key= works.
    let body = r#"{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = refused("/v1/messages", &[], body);
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["type"].as_str(), Some("error"), "{}", r.text());
    assert_eq!(
        c.post("/v1/messages", &[("x-api-key", "sk-team-a")], body)
            .status,
        200
    );
    let gem = r#"{"contents":[{"role":"user","parts":[{"text":"hi"}]}]}"#;
    assert_eq!(
        refused("/v1beta/models/m:generateContent", &[], gem).status,
        401
    );
    let r = c.post("/v1beta/models/m:generateContent?key=sk-team-a", &[], gem);
    assert_eq!(r.status, 200, "{}", r.text());

    // An allowance of tag:free: the free model yes, the paid one 403, whatever it is called.
    let free = [("authorization", "Bearer sk-free")];
    assert_eq!(
        c.post("/v1/chat/completions", &free, &chat_body("cheap", false))
            .status,
        200
    );
    for model in ["m", "tag:up,!free"] {
        let r = c.post("/v1/chat/completions", &free, &chat_body(model, false));
        assert_eq!(r.status, 403, "{model}: {}", r.text());
        assert_eq!(r.error_code(), "model_not_allowed");
    }
    // An expression that also reaches an allowed model is served by that one only.
    for model in ["tag:up", "tag:UP"] {
        let r = c.post("/v1/chat/completions", &free, &chat_body(model, false));
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        assert_eq!(r.json()["model"].as_str(), Some("cheap"), "{model}");
    }

    // Records and metrics carry the key's name, never a key.
    let text = eventually(Duration::from_secs(5), "usage lines", || {
        let files: Vec<_> = std::fs::read_dir(dir.join("usage"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .collect();
        let t = std::fs::read_to_string(files.first()?).ok()?;
        (t.lines().count() >= 6).then_some(t)
    });
    assert!(text.contains("\"key\":\"team-a\""), "{text}");
    assert!(text.contains("\"key\":\"free-only\""), "{text}");
    assert!(
        !text.contains("sk-team-a") && !text.contains("sk-free"),
        "{text}"
    );
    let metrics = admin(&gw, "GET", "/metrics", None, "").text();
    assert!(
        metrics.contains("smart_router_client_requests_total{key=\"team-a\",status=\"200\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("smart_router_client_requests_total{key=\"free-only\",status=\"403\"}"),
        "{metrics}"
    );
    assert!(!metrics.contains("sk-team-a"));
}

#[test]
fn a_public_listener_needs_keys_or_an_explicit_opt_out() {
    let text = "[server]\nlisten = \"0.0.0.0:0\"\n";
    let e = smart_ai_router::config::Config::parse(text, &|_: &str| None)
        .expect_err("open on all interfaces without keys");
    assert!(e.to_string().contains("allow_unauthenticated"), "{e}");
    let ok = format!("{text}[auth]\nallow_unauthenticated = true\n");
    assert!(smart_ai_router::config::Config::parse(&ok, &|_: &str| None).is_ok());
    let keyed = format!(
        "{text}[[auth.keys]]\nname = \"a\"\nsha256 = \"{}\"\n",
        hex(&digest(b"k"))
    );
    assert!(smart_ai_router::config::Config::parse(&keyed, &|_: &str| None).is_ok());
    // A key, not its digest, in `sha256` is refused with the fix.
    let raw = format!("{text}[[auth.keys]]\nname = \"a\"\nsha256 = \"sk-secret\"\n");
    let e = smart_ai_router::config::Config::parse(&raw, &|_: &str| None).expect_err("not hex");
    assert!(e.to_string().contains("auth.keys[0].sha256"), "{e}");
    assert!(!e.to_string().contains("sk-secret"), "{e}");
}

#[test]
fn the_keys_file_is_read_at_start_and_on_reload() {
    let dir = temp_dir("keys-file");
    let keys = dir.join("keys.toml");
    let first =
        smart_ai_router::cmd::keys::add(&keys, "ci", &[], None, Default::default()).expect("add");
    let m = mock(MockConfig::default());
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        test_config(
            DRIVER,
            &format!(
                "{}\n[auth]\nkeys_file = \"{}\"\n",
                one_channel(m.addr(), &["m"]).trim_end(),
                keys.display()
            ),
        ),
    )
    .unwrap();
    let cfg = smart_ai_router::config::Config::load_file(&config, &|_: &str| None).expect("valid");
    assert_eq!(cfg.auth.keys.len(), 1);
    let gw = smart_ai_router::bootstrap::start(cfg).expect("starts");
    let mut c = Client::connect(gw.local_addr());
    // A 401 closes the connection (its body was never read): each request gets its own.
    let post = |_: &mut Client, k: &str| post(&mut Client::connect(gw.local_addr()), k).status;
    assert_eq!(post(&mut c, &first), 200);
    let second =
        smart_ai_router::cmd::keys::add(&keys, "ci-2", &[], None, Default::default()).expect("add");
    assert_eq!(post(&mut c, &second), 401, "not before a reload");
    smart_ai_router::cmd::keys::revoke(&keys, "ci").expect("revoke");
    gw.reload().expect("reload");
    settled(&gw);
    assert_eq!(post(&mut c, &second), 200);
    assert_eq!(post(&mut c, &first), 401, "revoked");
}

#[test]
fn a_keys_rate_limits_answer_429_with_retry_after_and_ratelimit_headers() {
    let m = mock(MockConfig::default());
    let text = format!(
        "[server]\nworkers = 1\n{}\n[[auth.keys]]\nname = \"slow\"\nsha256 = \"{}\"\nrpm = 2\n\n\
         [[auth.keys]]\nname = \"thrifty\"\nsha256 = \"{}\"\ntpm = 30\n\n\
         [[auth.keys]]\nname = \"free\"\nsha256 = \"{}\"\n",
        one_channel(m.addr(), &["m"]).trim_end(),
        hex(&digest(b"sk-slow")),
        hex(&digest(b"sk-thrifty")),
        hex(&digest(b"sk-free")),
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    assert_eq!(post(&mut c, "sk-slow").status, 200);
    assert_eq!(post(&mut c, "sk-slow").status, 200);
    let r = post(&mut c, "sk-slow");
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.error_code(), "rate_limit_exceeded");
    assert!(r.text().contains("2 requests per minute"), "{}", r.text());
    let retry: u64 = r
        .header("retry-after")
        .expect("retry-after")
        .parse()
        .unwrap();
    assert!(
        (1..=31).contains(&retry),
        "one token back within 30 s: {retry}"
    );
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
    assert_eq!(r.header("x-ratelimit-remaining-requests"), Some("0"));
    assert!(r.header("x-ratelimit-reset-requests").is_some());
    // Another key is not affected.
    assert_eq!(post(&mut c, "sk-free").status, 200);

    // tpm: the mock's answer uses ~27 tokens; the bucket goes into debt and holds the next.
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(post(&mut c, "sk-thrifty").status);
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    let r = post(&mut c, "sk-thrifty");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("x-ratelimit-limit-tokens"), Some("30"));
}

#[test]
fn a_channel_at_its_rate_limit_is_skipped_then_429_when_none_has_room() {
    let limited = mock(MockConfig::default());
    let spare = mock(MockConfig::default());
    let text = format!(
        "[server]\nworkers = 1\n\n\
         [providers.limited]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
         [providers.spare]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
         [[channels]]\nid = \"limited\"\nprovider = \"limited\"\napi_key = \"k\"\nmodels = [\"m\", \"solo\"]\npriority = 5\nrpm = 2\n\n\
         [[channels]]\nid = \"spare\"\nprovider = \"spare\"\napi_key = \"k\"\nmodels = [\"m\"]\n",
        limited.addr(),
        spare.addr()
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    let channel_of = |r: &Response| r.header("x-router-channel").unwrap_or("").to_string();
    let a = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    let b = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(
        (channel_of(&a), channel_of(&b)),
        ("limited".into(), "limited".into())
    );
    // Its two requests this minute are spent: the next goes to the spare channel…
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(channel_of(&r), "spare");
    // …and a model only it serves gets a 429 saying when to retry.
    let r = c.post("/v1/chat/completions", &[], &chat_body("solo", false));
    assert_eq!(r.status, 429, "{}", r.text());
    assert!(r.text().contains("channel limited"), "{}", r.text());
    assert!(r.header("retry-after").is_some());
    assert_eq!(r.header("x-ratelimit-limit-requests"), Some("2"));
}

#[test]
fn an_upstream_that_reports_its_quota_spent_is_rested_until_its_reset() {
    let first = mock(MockConfig::default());
    let second = mock(MockConfig::default());
    let text = format!(
        "[server]\nworkers = 1\n\n\
         [providers.first]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
         [providers.second]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\n\
         [[channels]]\nid = \"first\"\nprovider = \"first\"\napi_key = \"k\"\nmodels = [\"m\"]\npriority = 5\n\n\
         [[channels]]\nid = \"second\"\nprovider = \"second\"\napi_key = \"k\"\nmodels = [\"m\"]\n",
        first.addr(),
        second.addr()
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-ratelimit-reset", "30s")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200, "the answer itself is relayed");
    assert_eq!(r.header("x-router-channel"), Some("first"));
    // The first channel said its quota is spent for 30 s: traffic moves on at once.
    let r = eventually(Duration::from_secs(5), "second channel serves", || {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
        (r.header("x-router-channel") == Some("second")).then_some(r)
    });
    assert_eq!(r.status, 200);
    // The control thread's view follows on its next merge of worker reports.
    eventually(Duration::from_secs(5), "first channel cooling", || {
        let ch = admin(&gw, "GET", "/admin/channels/first", None, "").json();
        (ch["state"].as_str() == Some("cooling")).then_some(())
    });
}

#[test]
fn a_keys_daily_budget_once_spent_answers_429_until_midnight() {
    let m = mock(MockConfig::default());
    let text = format!(
        "{}pricing = {{ input = 1000.0, output = 1000.0 }}\n\n\
         [[auth.keys]]\nname = \"capped\"\nsha256 = \"{}\"\ndaily_budget = 0.01\n\n\
         [[auth.keys]]\nname = \"open\"\nsha256 = \"{}\"\n",
        one_channel(m.addr(), &["m"]).trim_start(),
        hex(&digest(b"sk-capped")),
        hex(&digest(b"sk-open")),
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    // ~27 tokens at 1000 per 1M tokens is ~0.027: one request spends the 0.01 budget.
    assert_eq!(post(&mut c, "sk-capped").status, 200);
    let r = eventually(Duration::from_secs(5), "budget spent", || {
        let r = post(&mut c, "sk-capped");
        (r.status == 429).then_some(r)
    });
    assert_eq!(r.error_code(), "budget_exhausted");
    assert!(r.text().contains("capped"), "{}", r.text());
    let retry: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!(retry <= 86_400);
    assert_eq!(post(&mut c, "sk-open").status, 200, "other keys unaffected");
}

#[test]
fn streams_that_decline_usage_still_spend_the_keys_budget() {
    let m = mock(MockConfig::default());
    // ~50 tokens a stream at 1000 per 1M tokens is ~0.05: the budget allows about 3.
    let text = format!(
        "{}pricing = {{ input = 1000.0, output = 1000.0 }}\n\n\
         [[auth.keys]]\nname = \"capped\"\nsha256 = \"{}\"\ndaily_budget = 0.12\n",
        one_channel(m.addr(), &["m"]).trim_start(),
        hex(&digest(b"sk-capped")),
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    let auth = [("authorization", "Bearer sk-capped")];
    let declines = [
        r#""stream_options":{"include_usage":false},"#,
        r#""stream_options":{},"#,
        r#""stream_options":null,"#,
        r#""stream_options":{"include_usage":true},"stream_options":null,"#,
    ];
    let mut served = 0;
    for i in 0..30 {
        let body = format!(
            r#"{{"model":"m","stream":true,{}"messages":[{{"role":"user","content":"hello"}}]}}"#,
            declines[i % declines.len()]
        );
        let r = c.post("/v1/chat/completions", &auth, &body);
        match r.status {
            200 => served += 1,
            429 => assert_eq!(r.error_code(), "budget_exhausted"),
            s => panic!("unexpected {s}: {}", r.text()),
        }
        // Let the control thread judge the budget on each record (what a real client's pace
        // gives it anyway); the bound under a burst is the cluster tests' business.
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        (2..=4).contains(&served),
        "{served} of 30 streams that declined usage were served; the budget allows about 3"
    );
}

#[test]
fn refusals_cost_rps_but_not_rpm_and_a_key_sees_only_its_models() {
    let m = mock(MockConfig::default());
    // One worker: the key's whole rpm is in one bucket (workers split it by demand).
    let text = format!(
        "[server]\nworkers = 1\n{}\n[[channels]]\nid = \"free-1\"\nprovider = \"up\"\napi_key = \"k\"\n\
         models = [\"cheap\"]\ntags = [\"free\"]\n\n\
         [[auth.keys]]\nname = \"narrow\"\nsha256 = \"{}\"\nmodels = [\"tag:free\"]\nrpm = 2\n\n\
         [[auth.keys]]\nname = \"unlimited\"\nsha256 = \"{}\"\nmodels = [\"tag:free\"]\n",
        one_channel(m.addr(), &["m", "secret-model"]).trim_end(),
        hex(&digest(b"sk-narrow")),
        hex(&digest(b"sk-unlimited")),
    );
    let gw = gateway(DRIVER, &text);
    let mut c = Client::connect(gw.local_addr());
    let auth = [("authorization", "Bearer sk-narrow")];
    // Five requests the gateway refuses itself (a model outside the allowance, a bad body)…
    for _ in 0..4 {
        let r = c.post("/v1/chat/completions", &auth, &chat_body("m", false));
        assert_eq!(r.status, 403, "{}", r.text());
    }
    let r = c.post(
        "/v1/chat/completions",
        &auth,
        r#"{"model":"cheap","stream":"x"}"#,
    );
    assert_eq!(r.status, 400, "{}", r.text());
    // …leave the key's two requests a minute untouched.
    for i in 0..2 {
        let r = c.post("/v1/chat/completions", &auth, &chat_body("cheap", false));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let r = c.post("/v1/chat/completions", &auth, &chat_body("cheap", false));
    assert_eq!(r.status, 429, "the third served request is over rpm");

    // The model list and the 404's suggestions name only what the key may use.
    let mut g = Client::connect(gw.local_addr());
    g.send(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-narrow\r\n\r\n");
    let list = g.read_response();
    assert_eq!(list.status, 200);
    let ids: Vec<String> = list.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["cheap"]);
    g.send(
        b"GET /v1/models/secret-model HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-narrow\r\n\r\n",
    );
    assert_eq!(g.read_response().status, 404);
    let unlimited = [("authorization", "Bearer sk-unlimited")];
    let r = c.post(
        "/v1/chat/completions",
        &unlimited,
        &chat_body("secret-modl", false),
    );
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(!r.text().contains("secret-model"), "{}", r.text());
}
