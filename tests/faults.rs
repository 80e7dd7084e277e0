//! Fault injection against the mock upstream: for each way a provider can break, what the
//! client sees (the matrix in README "Failure matrix"), that the channel's health reflects it,
//! that other traffic on the same gateway is unaffected, and that repeating the faults leaks
//! no file descriptors.
//!
//! The gateway under test has two channels: `bad` (the mock driven by `x-mock-*` headers into
//! each fault) serving model `m`, and `good` serving model `ok`; a third mock that resets
//! every connection serves model `rst`. Timeouts are short and configured (first byte 400 ms,
//! idle 400 ms): behaviour in time is checked with generous margins, never with races.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::time::{Duration, Instant};

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{Fault, MockConfig};

const DRIVER: &str = "io_uring_or_auto";

struct Rig {
    gw: smart_ai_router::bootstrap::Gateway,
    _mocks: Vec<smart_ai_router::mock::MockHandle>,
}

fn rig() -> Rig {
    let bad = mock(MockConfig::default());
    let good = mock(MockConfig::default());
    let rst = mock(MockConfig {
        fault: Some(Fault::Reset),
        ..Default::default()
    });
    let provider = |id: &str, m: &smart_ai_router::mock::MockHandle| {
        format!(
            "[providers.{id}]\nkind = \"openai\"\nbase_url = \"http://{}/v1\"\n\
             first_byte_timeout = \"400ms\"\nidle_timeout = \"400ms\"\ntotal_timeout = \"5s\"\n\n",
            m.addr()
        )
    };
    let channel = |id: &str, model: &str| {
        format!(
            "[[channels]]\nid = \"{id}\"\nprovider = \"{id}\"\napi_key = \"sk-x\"\nmodels = [\"{model}\"]\n\n"
        )
    };
    let text = format!(
        "[routing]\ncooldown_base = \"100ms\"\ncooldown_max = \"200ms\"\n\n{}{}{}{}{}{}",
        provider("bad", &bad),
        provider("good", &good),
        provider("rst", &rst),
        channel("bad", "m"),
        channel("good", "ok"),
        channel("rst", "rst"),
    );
    Rig {
        gw: gateway(DRIVER, &text),
        _mocks: vec![bad, good, rst],
    }
}

fn fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// Sends one request; while the channel is still cooling from the previous fault (a 503
/// `no_usable_channel`), waits and sends it again, so each case meets its own fault.
fn post(rig: &Rig, model: &str, stream: bool, fault: &[(&str, &str)]) -> (Response, Duration) {
    send(
        rig,
        "/v1/chat/completions",
        &chat_body(model, stream),
        fault,
        true,
    )
}

fn send(
    rig: &Rig,
    path: &str,
    body: &str,
    headers: &[(&str, &str)],
    wait_cooling: bool,
) -> (Response, Duration) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let t = Instant::now();
        let r = Client::connect(rig.gw.local_addr()).post(path, headers, body);
        let cooling = r.status == 503 && r.text().contains("cooling down");
        if !cooling || !wait_cooling || Instant::now() > deadline {
            return (r, t.elapsed());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn healthy_neighbour(rig: &Rig) {
    let (r, _) = post(rig, "ok", false, &[]);
    assert_eq!(r.status, 200, "other traffic unaffected: {}", r.text());
    let (r, _) = post(rig, "ok", true, &[]);
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));
}

fn channel_state(rig: &Rig, id: &str) -> String {
    let r = admin(&rig.gw, "GET", &format!("/admin/channels/{id}"), None, "");
    r.json()["state"].as_str().unwrap_or("?").to_string()
}

/// One pass over the matrix; returns nothing, asserts everything.
fn matrix(rig: &Rig) {
    // 1. Reset before any byte: 502 naming the channel; the channel cools down.
    let (r, _) = post(rig, "rst", false, &[]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("rst"), "{}", r.text());
    healthy_neighbour(rig);

    // 2. A close mid-body (Content-Length not reached): nothing was sent yet, so the client
    //    gets a clean 502, never half a JSON document.
    let (r, _) = post(rig, "m", false, &[("x-mock-fault", "truncate")]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    healthy_neighbour(rig);

    // 3. Cut mid-stream: the events so far, then an error event, and no [DONE].
    let (r, _) = post(rig, "m", true, &[("x-mock-cut-after", "2")]);
    assert_eq!(r.status, 200);
    let data = sse_data(&r.body);
    assert!(
        data.last().is_some_and(|d| d.contains("\"error\"")),
        "{data:?}"
    );
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    healthy_neighbour(rig);

    // 4. Slow first byte beyond first_byte_timeout: 504 after ~400 ms, not later.
    let (r, took) = post(rig, "m", false, &[("x-mock-latency-ms", "3000")]);
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(took < Duration::from_millis(2_500), "{took:?}");
    healthy_neighbour(rig);

    // 5. A slow drip within the idle timeout is a healthy stream.
    let (r, _) = post(
        rig,
        "m",
        true,
        &[("x-mock-interval-ms", "100"), ("x-mock-chunks", "4")],
    );
    assert_eq!(sse_data(&r.body).last().map(String::as_str), Some("[DONE]"));

    // 6. Silence mid-stream beyond idle_timeout: an error event, no [DONE].
    let (r, took) = post(
        rig,
        "m",
        true,
        &[("x-mock-interval-ms", "3000"), ("x-mock-chunks", "3")],
    );
    let data = sse_data(&r.body);
    assert!(
        data.last().is_some_and(|d| d.contains("\"error\"")),
        "{data:?}"
    );
    assert!(took < Duration::from_millis(2_500), "{took:?}");
    healthy_neighbour(rig);

    // 7. A 2xx that is not JSON from an OpenAI-family upstream: validated before the client
    //    sees a byte, so it is a failed attempt — here the only candidate, so a 502, never a
    //    200 with garbage. Streamed events pass as they come (garbage included, then its
    //    [DONE]): only their terminator is checked.
    let (r, _) = post(rig, "m", false, &[("x-mock-fault", "garbage")]);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("not valid JSON"), "{}", r.text());
    healthy_neighbour(rig);
    let (r, _) = post(rig, "m", true, &[("x-mock-fault", "garbage")]);
    let data = sse_data(&r.body);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");

    // 8. Not JSON where the gateway must translate (Anthropic ingress → OpenAI upstream): a
    //    502 in the Anthropic error shape, not a crash and not a half answer.
    let body = r#"{"model":"m","max_tokens":16,"messages":[{"role":"user","content":"hi"}]}"#;
    let (r, _) = send(
        rig,
        "/v1/messages",
        body,
        &[("x-mock-fault", "garbage")],
        true,
    );
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.json()["type"].as_str(), Some("error"), "{}", r.text());

    // 9. A large answer (8 MiB) arrives whole and valid.
    let (r, _) = post(rig, "m", false, &[("x-mock-fault", "huge:8388608")]);
    assert_eq!(r.status, 200);
    assert!(r.body.len() >= 8_000_000, "{}", r.body.len());
    assert_eq!(r.json()["object"].as_str(), Some("chat.completion"));
    healthy_neighbour(rig);
}

#[test]
fn every_fault_gives_a_documented_answer_and_leaks_nothing() {
    let rig = rig();
    healthy_neighbour(&rig);
    matrix(&rig);
    // The model whose exchanges reset was taken out (a reset mid-exchange is the model's
    // until a second model of the channel fails too); the healthy channel never was.
    let (r, _) = post(&rig, "rst", false, &[]);
    assert!(r.status == 502 || r.status == 503, "{}", r.text());
    let cooling = admin(&rig.gw, "GET", "/admin/cooldowns", None, "").json();
    assert!(
        cooling["data"].as_array().unwrap().iter().any(|c| {
            c["channel"].as_str() == Some("rst") && c["model"].as_str() == Some("rst")
        }),
        "{cooling:?}"
    );
    assert_eq!(channel_state(&rig, "good"), "ok");
    settled(&rig.gw);
    let before = fds();
    for _ in 0..3 {
        matrix(&rig);
    }
    settled(&rig.gw);
    let after = eventually(Duration::from_secs(5), "descriptors back", || {
        let n = fds();
        (n <= before + 4).then_some(n)
    });
    assert!(after <= before + 4, "fds {before} -> {after}");
}

/// A DNS change: the channel's host name moves to another address (`[server] hosts_file`,
/// re-read at every `dns_refresh`). New upstream connections go to the new address within a
/// refresh, and the client sees no error while it happens. The old upstream closes every
/// connection after answering, so each request opens a fresh one and shows where it goes.
#[test]
fn a_dns_change_moves_new_connections_without_a_client_error() {
    let dir = temp_dir("dns-change");
    let port = free_port();
    let old = mock(MockConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 2], port)),
        drop_after_response: true,
        ..Default::default()
    });
    let new = mock(MockConfig {
        listen: std::net::SocketAddr::from(([127, 0, 0, 3], port)),
        ..Default::default()
    });
    let hosts = dir.join("hosts");
    let point = |ip: &str| {
        std::fs::write(dir.join("hosts.tmp"), format!("# test\n{ip} up.test\n")).unwrap();
        std::fs::rename(dir.join("hosts.tmp"), &hosts).unwrap();
    };
    point("127.0.0.2");
    let text = format!(
        "[server]\nhosts_file = \"{}\"\ndns_refresh = \"1s\"\n\n\
         [providers.up]\nkind = \"openai\"\nbase_url = \"http://up.test:{port}/v1\"\n\n\
         [[channels]]\nid = \"up\"\nprovider = \"up\"\napi_key = \"k\"\nmodels = [\"m\"]\n",
        hosts.display()
    );
    let gw = gateway(DRIVER, &text);
    let ok = || {
        Client::connect(gw.local_addr())
            .post("/v1/chat/completions", &[], &chat_body("m", false))
            .status
            == 200
    };
    eventually(Duration::from_secs(5), "first resolution", || {
        ok().then_some(())
    });
    assert!(old.requests() > 0 && new.requests() == 0);

    point("127.0.0.3");
    let mut statuses = Vec::new();
    eventually(
        Duration::from_secs(10),
        "traffic on the new address",
        || {
            statuses.push(ok());
            (new.requests() > 0).then_some(())
        },
    );
    assert!(
        statuses.iter().all(|&s| s),
        "no client error during the change"
    );
    let before = old.requests();
    for _ in 0..10 {
        assert!(ok());
    }
    assert_eq!(
        old.requests(),
        before,
        "the old address gets no new connection"
    );
}
