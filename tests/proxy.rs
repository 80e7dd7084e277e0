//! Proxying end to end over real sockets, on both drivers: JSON and SSE relay, keep-alive
//! reuse, pipelining, chunked bodies, byte-exact field passthrough, failover, stream cuts,
//! client disconnects and HTTPS upstreams.

#![allow(clippy::disallowed_methods)] // tests block on sockets and channels

mod common;

use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{MockConfig, MockEvent};

both_drivers!(
    json_completion_is_relayed_with_router_headers,
    first_sse_event_reaches_the_client_while_the_upstream_holds_the_rest,
    sequential_requests_on_one_connection_reuse_one_upstream_connection,
    pipelined_requests_are_answered_in_order,
    chunked_request_bodies_are_decoded_and_forwarded,
    every_field_passes_through_and_only_model_is_rewritten,
    failover_on_500_tries_the_next_channel,
    failover_on_connect_refused_tries_the_next_channel,
    all_attempts_failing_gives_502_naming_each,
    a_last_429_is_the_gateways_own_with_retry_after,
    client_errors_are_returned_without_failover,
    upstream_cut_mid_stream_ends_with_an_error_event_and_no_done,
    client_disconnect_mid_stream_closes_the_upstream_connection,
    close_delimited_upstream_streams_are_relayed,
    https_upstream_with_a_private_ca,
    http10_clients_get_close_delimited_streams,
    unknown_model_is_404_naming_what_is_available,
    first_byte_timeouts_fail_over_and_end_in_504,
    stream_silence_beyond_the_idle_timeout_is_a_cut,
    stale_pooled_connections_are_retried_on_a_fresh_one,
    shutdown_drains_in_flight_streams,
    stray_bytes_on_an_idle_pooled_connection_never_answer_a_request,
    a_client_leaving_before_the_first_byte_closes_the_upstream,
    the_stream_ends_at_done_even_if_the_upstream_lingers,
    upstream_auth_failures_become_502_without_leaking_the_body,
);

fn json_completion_is_relayed_with_router_headers(driver: &str) {
    let m = mock_models(&["gpt-4o-mini"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["gpt-4o-mini"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("x-request-id", "client-id-42")],
        &chat_body("gpt-4o-mini", false),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("up-1"));
    assert_eq!(r.header("x-router-provider"), Some("up"));
    assert_eq!(r.header("x-router-model"), Some("gpt-4o-mini"));
    assert_eq!(r.header("x-router-requested-model"), Some("gpt-4o-mini"));
    assert_eq!(r.header("x-router-attempts"), Some("1"));
    assert_eq!(
        r.header("x-request-id"),
        Some("client-id-42"),
        "a sane client id is echoed"
    );
    assert!(r.header("date").is_some());
    let v = r.json();
    assert_eq!(v["object"].as_str(), Some("chat.completion"));
    assert!(
        v["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .contains("mock")
    );
    // the upstream saw our request id and the channel's key
    let ev = drain(&m);
    let rec = requests(&ev)[0];
    assert_eq!(rec.header("x-request-id"), Some("client-id-42"));
    assert_eq!(rec.header("authorization"), Some("Bearer sk-channel"));
    // an insane client id is replaced
    let r = c.post(
        "/v1/chat/completions",
        &[("x-request-id", "bad id with spaces")],
        &chat_body("gpt-4o-mini", false),
    );
    assert!(r.header("x-request-id").unwrap().starts_with("req_"));
}

fn first_sse_event_reaches_the_client_while_the_upstream_holds_the_rest(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    c.send(&post_bytes(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "2")],
        &chat_body("m", true),
    ));
    let (status, headers) = c.read_head();
    assert_eq!(status, 200);
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert!(h("content-type").unwrap().starts_with("text/event-stream"));
    assert_eq!(h("transfer-encoding"), Some("chunked"));
    // The mock sent two events and now holds; both must arrive before the gate opens (the read
    // timeout fails the test otherwise).
    let mut early = Vec::new();
    while sse_data(&early).len() < 2 {
        early.extend(c.read_chunk().expect("stream still open"));
    }
    assert!(m.requests() == 1);
    m.open_gate();
    let mut rest = Vec::new();
    while let Some(chunk) = c.read_chunk() {
        rest.extend(chunk);
    }
    let all: Vec<String> = sse_data(&early)
        .into_iter()
        .chain(sse_data(&rest))
        .collect();
    assert_eq!(
        all.iter().filter(|d| *d == "[DONE]").count(),
        1,
        "exactly one [DONE]"
    );
    assert_eq!(all.last().map(String::as_str), Some("[DONE]"));
    assert!(all.len() >= 10, "all upstream events arrive: {all:?}");
}

fn sequential_requests_on_one_connection_reuse_one_upstream_connection(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(
        driver,
        &format!("[server]\nworkers = 1\n{}", one_channel(m.addr(), &["m"])),
    );
    let mut c = Client::connect(gw.local_addr());
    for i in 0..10 {
        let stream = i % 2 == 1;
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
    }
    let ev = drain(&m);
    assert_eq!(requests(&ev).len(), 10);
    assert_eq!(
        connections(&ev),
        1,
        "ten sequential requests share one upstream connection"
    );
}

fn pipelined_requests_are_answered_in_order(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let mut all = Vec::new();
    for i in 0..3 {
        all.extend(post_bytes(
            "/v1/chat/completions",
            &[
                ("x-request-id", &format!("pipe-{i}")),
                ("x-mock-latency-ms", &format!("{}", 30 - i * 10)),
            ],
            &chat_body("m", false),
        ));
    }
    all.extend_from_slice(b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n");
    c.send(&all);
    for i in 0..3 {
        let r = c.read_response();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("x-request-id"), Some(format!("pipe-{i}").as_str()));
    }
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(r.text().contains("\"status\""));
}

fn chunked_request_bodies_are_decoded_and_forwarded(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let body = chat_body("m", false);
    let (a, b) = body.split_at(10);
    let mut raw =
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
            .to_vec();
    raw.extend(format!("{:x};ext=1\r\n{a}\r\n", a.len()).as_bytes());
    let mut c = Client::connect(gw.local_addr());
    c.send(&raw);
    std::thread::sleep(Duration::from_millis(50));
    c.send(format!("{:x}\r\n{b}\r\n0\r\n\r\n", b.len()).as_bytes());
    let r = c.read_response();
    assert_eq!(r.status, 200, "{}", r.text());
    let ev = drain(&m);
    let rec = requests(&ev)[0];
    assert_eq!(
        rec.body,
        body.as_bytes(),
        "the de-chunked body is forwarded"
    );
    assert_eq!(
        rec.header("content-length"),
        Some(body.len().to_string().as_str())
    );
    assert!(rec.header("transfer-encoding").is_none());
    // Expect: 100-continue gets the interim response before the body is sent.
    let mut c = Client::connect(gw.local_addr());
    c.send(format!("POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nExpect: 100-continue\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
    let (status, _) = c.read_head();
    assert_eq!(status, 100);
    c.send(body.as_bytes());
    assert_eq!(c.read_response().status, 200);
}

fn every_field_passes_through_and_only_model_is_rewritten(driver: &str) {
    let m = mock_models(&["upstream-model"]);
    let cfg = format!(
        r#"
[providers.up]
base_url = "http://{}/v1"
headers = {{ "X-Provider-Extra" = "from-config" }}

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-channel"
models = ["upstream-model"]
aliases = {{ "my-alias" = "upstream-model" }}
"#,
        m.addr()
    );
    let gw = gateway(driver, &cfg);
    let body = r#"{
  "model" : "my-alias",
  "messages": [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": [{"type": "text", "text": "what \"model\" are you?"}]},
    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{\"model\":\"x\"}"}}]},
    {"role": "tool", "tool_call_id": "call_1", "content": "42"}
  ],
  "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"model": {"type": "string"}}}}}],
  "response_format": {"type": "json_object"},
  "stop": ["\n\n", "END"],
  "seed": 7,
  "logit_bias": {"50256": -100},
  "n": 2,
  "user": "u-1",
  "temperature": 0.25,
  "stream_options": {"include_usage": true},
  "x_unknown_field": {"nested": [1, 2.5e3, true, null]},
  "unicode": "é漢🙂\u00e9"
}"#;
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[
            ("Authorization", "Bearer client-key-must-not-leak"),
            ("OpenAI-Organization", "org-1"),
            ("anthropic-beta", "tools-2024"),
            ("x-provider-extra", "from-client"),
            ("x-router-strategy", "cost_first"),
            ("Connection", "keep-alive, X-Hop"),
            ("X-Hop", "must-not-pass"),
        ],
        body,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-model"), Some("upstream-model"));
    assert_eq!(r.header("x-router-requested-model"), Some("my-alias"));
    let ev = drain(&m);
    let rec = requests(&ev)[0];
    // Byte-exact except the model value.
    let expected = body.replacen("\"my-alias\"", "\"upstream-model\"", 1);
    assert_eq!(String::from_utf8_lossy(&rec.body), expected);
    assert_eq!(rec.header("authorization"), Some("Bearer sk-channel"));
    // Client headers beyond the allow-list stay behind unless the provider lists them.
    assert_eq!(rec.header("openai-organization"), None);
    assert_eq!(rec.header("anthropic-beta"), None);
    assert_eq!(
        rec.header("x-provider-extra"),
        Some("from-config"),
        "config wins"
    );
    assert_eq!(
        rec.headers
            .iter()
            .filter(|(n, _)| n == "x-provider-extra")
            .count(),
        1
    );
    assert!(
        rec.header("x-router-strategy").is_none(),
        "router headers are not forwarded"
    );
    assert!(
        rec.header("x-hop").is_none(),
        "headers named in Connection are hop-by-hop"
    );
    assert_eq!(rec.header("host"), Some(m.addr().to_string().as_str()));
    assert_eq!(rec.header("accept-encoding"), Some("identity"));
    assert_eq!(rec.target, "/v1/chat/completions");
}

fn two_channels(first: std::net::SocketAddr, second: std::net::SocketAddr) -> String {
    format!(
        r#"
[providers.a]
base_url = "http://{first}/v1"
[providers.b]
base_url = "http://{second}/v1"

[[channels]]
id = "a"
provider = "a"
api_key = "sk-a"
models = ["m"]
priority = 10

[[channels]]
id = "b"
provider = "b"
api_key = "sk-b"
models = ["m"]
"#
    )
}

fn failover_on_500_tries_the_next_channel(driver: &str) {
    let bad = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let good = mock_models(&["m"]);
    // A 1 ms cooldown: the failing channel is half-open again by the next request.
    let cfg = format!(
        "[routing]\ncooldown_base = \"1ms\"\n{}",
        two_channels(bad.addr(), good.addr())
    );
    let gw = gateway(driver, &cfg);
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true] {
        std::thread::sleep(Duration::from_millis(20));
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-router-channel"), Some("b"));
        assert_eq!(r.header("x-router-attempts"), Some("2"));
        if stream {
            let data = sse_data(&r.body);
            assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
        }
    }
    assert_eq!(
        bad.requests(),
        2,
        "the higher-priority channel was tried first each time"
    );
}

fn failover_on_connect_refused_tries_the_next_channel(driver: &str) {
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let good = mock_models(&["m"]);
    let gw = gateway(driver, &two_channels(closed, good.addr()));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-channel"), Some("b"));
}

fn all_attempts_failing_gives_502_naming_each(driver: &str) {
    let a = mock(MockConfig {
        status: Some(503),
        ..Default::default()
    });
    let closed: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let gw = gateway(driver, &two_channels(a.addr(), closed));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", true));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_error");
    let msg = r.text();
    assert!(
        msg.contains("a: HTTP 503") && msg.contains("b: connect failed"),
        "{msg}"
    );
    // A reset connection counts as a failed attempt too.
    let reset = mock(MockConfig {
        fault: Some(smart_ai_router::mock::Fault::Reset),
        ..Default::default()
    });
    let good = mock_models(&["m"]);
    let gw = gateway(driver, &two_channels(reset.addr(), good.addr()));
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-attempts"), Some("2"));
}

fn a_last_429_is_the_gateways_own_with_retry_after(driver: &str) {
    let a = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let b = mock(MockConfig {
        status: Some(429),
        retry_after: Some(7),
        ..Default::default()
    });
    let gw = gateway(driver, &two_channels(a.addr(), b.addr()));
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 429, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("7"));
    // The gateway's own OpenAI-shaped body: the provider's names the operator's account.
    let body = r.json();
    assert_eq!(body["error"]["code"].as_str(), Some("rate_limit_exceeded"));
    assert_eq!(body["error"]["type"].as_str(), Some("rate_limit_error"));
    assert!(!r.text().contains("injected status 429"), "{}", r.text());
    // and it says what happened
    assert_eq!(r.header("x-router-attempts"), Some("2"));
    assert_eq!(r.header("x-router-channel"), Some("b"));
    assert_eq!(r.header("x-router-requested-model"), Some("m"));
    assert!(r.header("x-router-overhead-ms").is_some());
    assert!(r.header("x-request-id").is_some());
}

fn client_errors_are_returned_without_failover(driver: &str) {
    let a = mock(MockConfig {
        status: Some(400),
        ..Default::default()
    });
    let b = mock_models(&["m"]);
    let gw = gateway(driver, &two_channels(a.addr(), b.addr()));
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 400);
    assert_eq!(
        b.requests(),
        0,
        "a 400 is the client's problem: no failover"
    );
    assert_eq!(r.header("x-router-channel"), Some("a"));
}

fn upstream_cut_mid_stream_ends_with_an_error_event_and_no_done(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-cut-after", "3")],
        &chat_body("m", true),
    );
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert_eq!(
        data.len(),
        4,
        "three upstream events then the error event: {data:?}"
    );
    assert!(data[3].contains("upstream_stream_cut"), "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"), "no fake [DONE]");
    // the client connection is still usable
    assert_eq!(c.get("/health").status, 200);
}

fn client_disconnect_mid_stream_closes_the_upstream_connection(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    c.send(&post_bytes(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "1")],
        &chat_body("m", true),
    ));
    c.read_head();
    assert!(c.read_chunk().is_some());
    drop(c);
    // The gate stays closed: the mock only sees the close if the gateway closed the upstream.
    let seen = wait_event(&m, Duration::from_secs(5), |e| {
        matches!(e, MockEvent::PeerClosedWhileHeld)
    });
    assert!(
        seen.is_some(),
        "the gateway closed the upstream connection when the client left"
    );
}

fn close_delimited_upstream_streams_are_relayed(driver: &str) {
    let m = mock(MockConfig {
        close_delimited: true,
        ..Default::default()
    });
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..2 {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", true));
        let data = sse_data(&r.body);
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
        assert!(!data.iter().any(|d| d.contains("error")));
    }
}

fn https_upstream_with_a_private_ca(driver: &str) {
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into()),
        )
        .unwrap();
    let m = mock(MockConfig {
        tls: Some(std::sync::Arc::new(server)),
        ..Default::default()
    });
    let dir = std::env::temp_dir().join(format!("sar-tls-{}-{}", std::process::id(), free_port()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.pem()).unwrap();
    let cfg = |with_ca: bool| {
        format!(
            r#"
[providers.tls]
base_url = "https://localhost:{}/v1"
{}
[[channels]]
id = "tls-1"
provider = "tls"
api_key = "sk"
models = ["m"]
"#,
            m.addr().port(),
            if with_ca {
                format!("ca_file = \"{}\"", ca_path.display())
            } else {
                String::new()
            }
        )
    };
    let gw = gateway(driver, &cfg(true));
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true, false] {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let ev = drain(&m);
    assert!(requests(&ev).len() == 3);
    // Without the CA the certificate is not trusted: verification is on.
    let gw = gateway(driver, &cfg(false));
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("TLS"), "{}", r.text());
    let _ = std::fs::remove_dir_all(dir);
}

fn http10_clients_get_close_delimited_streams(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let body = chat_body("m", true);
    let mut c = Client::connect(gw.local_addr());
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert!(
        r.header("transfer-encoding").is_none(),
        "no chunked for HTTP/1.0"
    );
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
    // and a non-streamed HTTP/1.0 request closes after the answer
    let mut c = Client::connect(gw.local_addr());
    c.send(b"GET /health HTTP/1.0\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed());
    // HTTP/1.0 with keep-alive stays open
    let mut c = Client::connect(gw.local_addr());
    c.send(b"GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    let r = c.read_response();
    assert_eq!(r.header("connection"), Some("keep-alive"));
    c.send(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    assert_eq!(c.read_response().status, 200);
}

fn unknown_model_is_404_naming_what_is_available(driver: &str) {
    let m = mock_models(&["gpt-4o-mini"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["gpt-4o-mini", "gpt-4o"]));
    let r = Client::connect(gw.local_addr()).post(
        "/v1/chat/completions",
        &[],
        &chat_body("gpt-4o-mnii", false),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.error_code(), "model_not_found");
    let t = r.text();
    assert!(
        t.contains("gpt-4o-mnii")
            && t.contains("Did you mean `gpt-4o-mini`")
            && t.contains("Available"),
        "{t}"
    );
    assert_eq!(m.requests(), 0);
}

fn first_byte_timeouts_fail_over_and_end_in_504(driver: &str) {
    let slow = mock(MockConfig {
        latency: Duration::from_secs(3),
        ..Default::default()
    });
    let good = mock_models(&["m"]);
    let cfg = two_channels(slow.addr(), good.addr()).replacen(
        "[providers.a]\n",
        "[providers.a]\nfirst_byte_timeout = \"200ms\"\n",
        1,
    );
    // A 1 ms cooldown, so the second request tries the slow channel again (half-open).
    let gw = gateway(
        driver,
        &format!("[routing]\ncooldown_base = \"1ms\"\n{cfg}"),
    );
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..2 {
        std::thread::sleep(Duration::from_millis(20)); // past the 1 ms cooldown
        let started = std::time::Instant::now();
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-router-channel"), Some("b"));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the slow channel was abandoned at its timeout"
        );
    }
    // a timed-out connection is never reused: each attempt on `a` opened its own
    let ev = drain(&slow);
    assert_eq!(connections(&ev), 2);
    // alone, the slow channel ends in a 504
    let cfg = one_channel(slow.addr(), &["m"]).replacen(
        "[providers.up]\n",
        "[providers.up]\nfirst_byte_timeout = \"200ms\"\n",
        1,
    );
    let gw = gateway(driver, &cfg);
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_timeout");
}

fn stream_silence_beyond_the_idle_timeout_is_a_cut(driver: &str) {
    let m = mock_models(&["m"]);
    let cfg = one_channel(m.addr(), &["m"]).replacen(
        "[providers.up]\n",
        "[providers.up]\nidle_timeout = \"300ms\"\n",
        1,
    );
    let gw = gateway(driver, &cfg);
    let mut c = Client::connect(gw.local_addr());
    // the gate is never opened: the upstream goes silent after two events
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "2")],
        &chat_body("m", true),
    );
    let data = sse_data(&r.body);
    assert_eq!(data.len(), 3, "{data:?}");
    assert!(
        data[2].contains("upstream_stream_cut") && data[2].contains("sent nothing"),
        "{data:?}"
    );
}

fn stale_pooled_connections_are_retried_on_a_fresh_one(driver: &str) {
    let m = mock(MockConfig {
        drop_after_response: true,
        ..Default::default()
    });
    let gw = gateway(
        driver,
        &format!("[server]\nworkers = 1\n{}", one_channel(m.addr(), &["m"])),
    );
    let mut c = Client::connect(gw.local_addr());
    for i in 0..4 {
        std::thread::sleep(Duration::from_millis(20)); // let the upstream's close land
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", i % 2 == 0));
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(
            r.header("x-router-attempts"),
            Some("1"),
            "a dead pooled connection is not a failed attempt"
        );
    }
    assert_eq!(m.requests(), 4);
}

fn shutdown_drains_in_flight_streams(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(
        driver,
        &format!(
            "[server]\ndrain_timeout = \"5s\"\n{}",
            one_channel(m.addr(), &["m"])
        ),
    );
    let addr = gw.local_addr();
    let mut c = Client::connect(addr);
    c.send(&post_bytes(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "1")],
        &chat_body("m", true),
    ));
    c.read_head();
    assert!(c.read_chunk().is_some());
    let stopper = std::thread::spawn(move || gw.shutdown());
    // new connections are no longer accepted once the workers drain
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(addr).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "listeners close on shutdown"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    m.open_gate();
    let mut rest = Vec::new();
    while let Some(chunk) = c.read_chunk() {
        rest.extend(chunk);
    }
    assert_eq!(
        sse_data(&rest).last().map(String::as_str),
        Some("[DONE]"),
        "the in-flight stream finished"
    );
    stopper.join().unwrap();
}

fn stray_bytes_on_an_idle_pooled_connection_never_answer_a_request(driver: &str) {
    for (late_408, late_200) in [(true, false), (false, true)] {
        stray_bytes_case(driver, late_408, late_200);
    }
}

fn stray_bytes_case(driver: &str, late_408: bool, late_200: bool) {
    let m = mock(MockConfig {
        late_408,
        late_200,
        chunks: 40, // long enough to echo the user's words
        ..Default::default()
    });
    let gw = gateway(
        driver,
        &format!("[server]\nworkers = 1\n{}", one_channel(m.addr(), &["m"])),
    );
    let mut c = Client::connect(gw.local_addr());
    for who in ["alice", "bob", "carol", "dave"] {
        let body = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{who}"}}]}}"#);
        let r = c.post("/v1/chat/completions", &[], &body);
        assert_eq!(r.status, 200, "{who}: {}", r.text());
        assert!(
            r.text().contains(&format!("You said: {who}")),
            "{who} got someone else's answer: {}",
            r.text()
        );
        std::thread::sleep(Duration::from_millis(120)); // the stray 408 arrives meanwhile
    }
}

fn a_client_leaving_before_the_first_byte_closes_the_upstream(driver: &str) {
    let m = mock_models(&["m"]);
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    for stream in [false, true] {
        let mut c = Client::connect(gw.local_addr());
        c.send(&post_bytes(
            "/v1/chat/completions",
            &[("x-mock-latency-ms", "5000")],
            &chat_body("m", stream),
        ));
        std::thread::sleep(Duration::from_millis(100));
        drop(c);
        // The mock would answer after 5 s; it sees the close long before only if the gateway
        // closed the upstream connection when the client left.
        let seen = wait_event(&m, Duration::from_secs(3), |e| {
            matches!(e, MockEvent::PeerClosedWhileHeld)
        });
        assert!(
            seen.is_some(),
            "stream={stream}: upstream closed when the client left"
        );
    }
}

fn the_stream_ends_at_done_even_if_the_upstream_lingers(driver: &str) {
    let m = mock(MockConfig {
        chunks: 2,
        ..Default::default()
    });
    let gw = gateway(driver, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    // role + 2 content + finish + the usage chunk the gateway asked for + [DONE] = 6 events;
    // the mock then holds its last chunk forever
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "6")],
        &chat_body("m", true),
    );
    let data = sse_data(&r.body);
    assert!(
        !data.iter().any(|d| d.contains("\"usage\"")),
        "the client did not ask for usage: {data:?}"
    );
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert!(
        !data.iter().any(|d| d.contains("error")),
        "no error after [DONE]: {data:?}"
    );
    let cache_control = r
        .headers
        .iter()
        .filter(|(n, _)| n == "cache-control")
        .count();
    assert_eq!(
        cache_control, 1,
        "one cache-control header: {:?}",
        r.headers
    );
}

fn upstream_auth_failures_become_502_without_leaking_the_body(driver: &str) {
    let a = mock(MockConfig {
        status: Some(401),
        ..Default::default()
    });
    let gw = gateway(driver, &one_channel(a.addr(), &["m"]));
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.error_code(), "upstream_auth_failed");
    assert!(
        !r.text().contains("injected"),
        "the provider's text stays behind: {}",
        r.text()
    );
}
