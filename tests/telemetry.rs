//! `[telemetry]`: OTLP/HTTP trace export. A tiny collector (a std listener thread) decodes what
//! the gateway posts — protobuf through the crate's own `telemetry::otlp` types, or the OTLP
//! JSON mapping — and the tests check the GenAI spans of a chat, a stream, a failover and an
//! error, parent-based sampling, the `traceparent` sent upstream, and a collector that is down.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use prost::Message as _;
use smart_ai_router::mock::MockConfig;
use smart_ai_router::telemetry::otlp::{
    ExportTraceServiceRequest, KIND_CLIENT, KIND_SERVER, STATUS_ERROR, Span, Value,
};

/// One export as the collector saw it.
struct Export {
    headers: Vec<(String, String)>,
    request: ExportTraceServiceRequest,
}

struct Collector {
    addr: SocketAddr,
    rx: mpsc::Receiver<Export>,
    spans: Vec<Span>,
    exports: Vec<Vec<(String, String)>>,
}

impl Collector {
    fn start() -> Collector {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { continue };
                let _ = c.set_read_timeout(Some(Duration::from_secs(10)));
                let mut buf = Vec::new();
                let mut chunk = [0u8; 8192];
                let (head_end, len) = loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break (0, None);
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Some(end) = find(&buf, b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        let len = head.lines().find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("content-length")
                                .then(|| v.trim().parse::<usize>().ok())?
                        });
                        break (end + 4, len);
                    }
                };
                let Some(len) = len else { continue };
                while buf.len() < head_end + len {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
                let headers: Vec<(String, String)> = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
                    .collect();
                let header = |n: &str| {
                    headers
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.as_str())
                };
                let mut body = buf[head_end..head_end + len].to_vec();
                if header("content-encoding") == Some("gzip") {
                    let mut out = Vec::new();
                    flate2::read::GzDecoder::new(&body[..])
                        .read_to_end(&mut out)
                        .expect("gzip body");
                    body = out;
                }
                let request = if header("content-type") == Some("application/json") {
                    let v: serde_json::Value = serde_json::from_slice(&body).expect("JSON body");
                    ExportTraceServiceRequest::from_json(&v).expect("OTLP JSON")
                } else {
                    assert_eq!(header("content-type"), Some("application/x-protobuf"));
                    ExportTraceServiceRequest::decode(&body[..]).expect("OTLP protobuf")
                };
                assert!(header("transfer-encoding").is_none(), "never chunked");
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                if tx.send(Export { headers, request }).is_err() {
                    return;
                }
            }
        });
        Collector {
            addr,
            rx,
            spans: Vec::new(),
            exports: Vec::new(),
        }
    }

    /// Collects until `done` holds for the spans received so far (generous deadline).
    fn until(&mut self, what: &str, done: impl Fn(&[Span]) -> bool) -> &[Span] {
        let deadline = Instant::now() + Duration::from_secs(15);
        while !done(&self.spans) {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "timed out waiting for {what}: {:#?}",
                self.spans
            );
            if let Ok(e) = self.rx.recv_timeout(left.min(Duration::from_millis(100))) {
                self.spans.extend(e.request.spans().cloned());
                self.exports.push(e.headers);
            }
        }
        &self.spans
    }
}

fn telemetry(collector: SocketAddr, extra: &str) -> String {
    format!(
        "\n[telemetry]\notlp_endpoint = \"http://{collector}\"\nexport_interval = \"100ms\"\n{extra}\n"
    )
}

fn s(span: &Span, k: &str) -> Option<String> {
    match span.attr(k)? {
        Value::StringValue(v) => Some(v.clone()),
        Value::IntValue(i) => Some(i.to_string()),
        Value::BoolValue(b) => Some(b.to_string()),
        Value::DoubleValue(d) => Some(d.to_string()),
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn by_request<'a>(spans: &'a [Span], request_id: &str) -> Option<&'a Span> {
    spans.iter().find(|s| {
        s.kind == KIND_SERVER
            && self::s(s, "smart_router.request_id").as_deref() == Some(request_id)
    })
}

fn children<'a>(spans: &'a [Span], server: &Span) -> Vec<&'a Span> {
    spans
        .iter()
        .filter(|s| s.kind == KIND_CLIENT && s.parent_span_id == server.span_id)
        .collect()
}

fn upstream_traceparent(m: &smart_ai_router::mock::MockHandle) -> Vec<String> {
    let events = drain(m);
    requests(&events)
        .iter()
        .filter_map(|r| {
            r.headers
                .iter()
                .find(|(k, _)| k == "traceparent")
                .map(|(_, v)| v.clone())
        })
        .collect()
}

fn a_chat_is_one_server_span_and_one_client_span(driver: &str) {
    let mut col = Collector::start();
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "{}{}",
            one_channel(m.addr(), &["m"]),
            telemetry(
                col.addr,
                "headers = { authorization = \"Bearer collector-secret\" }"
            )
        ),
    );
    let body = r#"{"model":"m","max_tokens":50,"temperature":0.5,"messages":[{"role":"user","content":"hi"}]}"#;
    let r = Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], body);
    assert_eq!(r.status, 200, "{}", r.text());
    let rid = r.header("x-request-id").unwrap().to_string();
    let spans = col.until("the chat's spans", |sp| {
        by_request(sp, &rid).is_some_and(|srv| !children(sp, srv).is_empty())
    });
    let srv = by_request(spans, &rid).unwrap();
    assert_eq!(srv.name, "chat m");
    assert!(
        srv.parent_span_id.is_empty(),
        "no client parent: a root span"
    );
    for (k, v) in [
        ("gen_ai.operation.name", "chat"),
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "m"),
        ("gen_ai.response.model", "m"),
        ("gen_ai.request.max_tokens", "50"),
        ("gen_ai.request.temperature", "0.5"),
        ("smart_router.channel", "up-1"),
        ("smart_router.attempts", "1"),
        ("http.response.status_code", "200"),
        ("smart_router.stream", "false"),
    ] {
        assert_eq!(s(srv, k).as_deref(), Some(v), "{k}: {srv:#?}");
    }
    for k in [
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "smart_router.overhead_ms",
        "smart_router.strategy",
    ] {
        assert!(srv.attr(k).is_some(), "{k}: {srv:#?}");
    }
    assert!(srv.attr("error.type").is_none() && srv.status.is_none());
    assert!(
        srv.attr("gen_ai.input.messages").is_none(),
        "no content by default"
    );
    assert!(srv.start_time_unix_nano > 0 && srv.end_time_unix_nano >= srv.start_time_unix_nano);
    let kids = children(spans, srv);
    assert_eq!(kids.len(), 1);
    let c = kids[0];
    assert_eq!(c.trace_id, srv.trace_id);
    assert_eq!(c.name, "chat m");
    assert_eq!(s(c, "http.response.status_code").as_deref(), Some("200"));
    assert_eq!(s(c, "smart_router.channel").as_deref(), Some("up-1"));
    // The upstream's parent is the attempt's span, in the gateway's trace.
    let tp = upstream_traceparent(&m);
    assert_eq!(
        tp,
        vec![format!("00-{}-{}-01", hex(&c.trace_id), hex(&c.span_id))]
    );
    // The collector got the configured header.
    assert!(col.exports.iter().any(|h| {
        h.iter()
            .any(|(k, v)| k == "authorization" && v == "Bearer collector-secret")
    }));
}

fn a_stream_in_json_with_gzip(driver: &str) {
    let mut col = Collector::start();
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "{}{}",
            one_channel(m.addr(), &["m"]),
            telemetry(
                col.addr,
                "protocol = \"http/json\"\ncompression = \"gzip\"\ncapture_content = true"
            )
        ),
    );
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", true));
    assert_eq!(r.status, 200);
    let rid = r.header("x-request-id").unwrap().to_string();
    let spans = col.until("the stream's spans", |sp| by_request(sp, &rid).is_some());
    let srv = by_request(spans, &rid).unwrap();
    assert_eq!(s(srv, "smart_router.stream").as_deref(), Some("true"));
    assert!(srv.attr("gen_ai.usage.output_tokens").is_some(), "{srv:#?}");
    let content = s(srv, "gen_ai.input.messages").expect("captured messages");
    assert!(
        content.starts_with('[') && content.contains("\"role\""),
        "{content}"
    );
    assert_eq!(children(spans, srv).len(), 1);
}

fn a_failover_is_two_client_spans_under_one_server_span(driver: &str) {
    let mut col = Collector::start();
    let bad = mock(MockConfig {
        status: Some(500),
        ..Default::default()
    });
    let good = mock_models(&["m"]);
    let gw = gateway(
        driver,
        &format!(
            r#"
[providers.a]
base_url = "http://{}/v1"
[providers.b]
base_url = "http://{}/v1"

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
{}"#,
            bad.addr(),
            good.addr(),
            telemetry(col.addr, "")
        ),
    );
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-router-attempts"), Some("2"));
    let rid = r.header("x-request-id").unwrap().to_string();
    let spans = col.until("the failover's spans", |sp| {
        by_request(sp, &rid).is_some_and(|srv| children(sp, srv).len() == 2)
    });
    let srv = by_request(spans, &rid).unwrap();
    assert_eq!(s(srv, "smart_router.attempts").as_deref(), Some("2"));
    assert_eq!(s(srv, "smart_router.channel").as_deref(), Some("b"));
    let mut kids = children(spans, srv);
    kids.sort_by_key(|k| k.start_time_unix_nano);
    assert_eq!(s(kids[0], "smart_router.channel").as_deref(), Some("a"));
    assert_eq!(
        s(kids[0], "http.response.status_code").as_deref(),
        Some("500")
    );
    assert_eq!(s(kids[0], "error.type").as_deref(), Some("status_5xx"));
    assert_eq!(kids[0].status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    assert_eq!(s(kids[1], "smart_router.channel").as_deref(), Some("b"));
    assert!(kids[1].attr("error.type").is_none());
    // Each upstream saw its own attempt's span as the parent.
    assert_eq!(
        upstream_traceparent(&bad),
        vec![format!(
            "00-{}-{}-01",
            hex(&srv.trace_id),
            hex(&kids[0].span_id)
        )]
    );
    assert_eq!(
        upstream_traceparent(&good),
        vec![format!(
            "00-{}-{}-01",
            hex(&srv.trace_id),
            hex(&kids[1].span_id)
        )]
    );
}

fn an_error_sets_error_type_and_status(driver: &str) {
    let mut col = Collector::start();
    let m = mock(MockConfig {
        status: Some(503),
        ..Default::default()
    });
    let gw = gateway(
        driver,
        &format!(
            "[routing]\nsame_channel_retries = 0\n{}{}",
            one_channel(m.addr(), &["m"]),
            telemetry(col.addr, "")
        ),
    );
    let r =
        Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body("m", false));
    assert!(r.status >= 500, "{}", r.status);
    let rid = r.header("x-request-id").unwrap().to_string();
    let spans = col.until("the error's spans", |sp| by_request(sp, &rid).is_some());
    let srv = by_request(spans, &rid).unwrap();
    assert_eq!(
        s(srv, "http.response.status_code"),
        Some(r.status.to_string())
    );
    assert!(srv.attr("error.type").is_some(), "{srv:#?}");
    assert_eq!(srv.status.as_ref().map(|s| s.code), Some(STATUS_ERROR));
    let kids = children(spans, srv);
    assert!(!kids.is_empty());
    assert!(
        kids.iter()
            .all(|k| s(k, "error.type").as_deref() == Some("status_5xx"))
    );
}

const PARENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn sampling_follows_the_client_parent_then_the_ratio(driver: &str) {
    let mut col = Collector::start();
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "{}{}",
            one_channel(m.addr(), &["m"]),
            telemetry(col.addr, "sample_ratio = 0.0")
        ),
    );
    // One connection: the requests' records leave the same worker in order.
    let mut c = Client::connect(gw.local_addr());
    let unsampled = "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-00f067aa0ba902b7-00";
    let r = c.post(
        "/v1/chat/completions",
        &[("traceparent", unsampled)],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200);
    let tp = upstream_traceparent(&m);
    assert_eq!(tp.len(), 1);
    assert!(
        tp[0].starts_with("00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-") && tp[0].ends_with("-00"),
        "the unsampled trace goes on, unsampled: {}",
        tp[0]
    );
    assert!(
        !tp[0].contains("00f067aa0ba902b7"),
        "the gateway's span is the parent"
    );
    // No parent, ratio 0: not traced.
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200);
    let unparented = r.header("x-request-id").unwrap().to_string();
    let tp = upstream_traceparent(&m);
    assert!(tp[0].ends_with("-00"), "{}", tp[0]);
    // A sampled parent: always traced, in its trace, under its span.
    let sampled = format!("00-{PARENT_TRACE}-00f067aa0ba902b7-01");
    let r = c.post(
        "/v1/chat/completions",
        &[("traceparent", &sampled)],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200);
    let rid = r.header("x-request-id").unwrap().to_string();
    let spans = col.until("the sampled request's spans", |sp| {
        by_request(sp, &rid).is_some_and(|srv| !children(sp, srv).is_empty())
    });
    let srv = by_request(spans, &rid).unwrap();
    assert_eq!(hex(&srv.trace_id), PARENT_TRACE);
    assert_eq!(hex(&srv.parent_span_id), "00f067aa0ba902b7");
    let kid = children(spans, srv)[0];
    assert_eq!(
        upstream_traceparent(&m),
        vec![format!("00-{PARENT_TRACE}-{}-01", hex(&kid.span_id))]
    );
    // The earlier requests were handed over first and exported nothing.
    assert!(
        spans.iter().all(|s| hex(&s.trace_id) == PARENT_TRACE),
        "only the sampled trace: {spans:#?}"
    );
    assert!(by_request(spans, &unparented).is_none());
}

fn a_collector_that_is_down_costs_spans_not_requests(driver: &str) {
    let closed: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let m = mock(MockConfig::default());
    let gw = gateway(
        driver,
        &format!(
            "{}{}",
            one_channel(m.addr(), &["m"]),
            telemetry(closed, "timeout = \"200ms\"")
        ),
    );
    let mut c = Client::connect(gw.local_addr());
    for _ in 0..5 {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
        assert_eq!(r.status, 200);
    }
    eventually(Duration::from_secs(15), "dropped spans counted", || {
        let r = admin(&gw, "GET", "/metrics", None, "");
        let text = r.text();
        let line = text
            .lines()
            .find(|l| l.starts_with("smart_router_telemetry_dropped_spans_total"))?;
        let n: f64 = line.rsplit(' ').next()?.parse().ok()?;
        (n >= 1.0).then_some(())
    });
    let r = c.post("/v1/chat/completions", &[], &chat_body("m", false));
    assert_eq!(r.status, 200, "requests go on");
}

both_drivers!(
    a_chat_is_one_server_span_and_one_client_span,
    a_stream_in_json_with_gzip,
    a_failover_is_two_client_spans_under_one_server_span,
    an_error_sets_error_type_and_status,
    sampling_follows_the_client_parent_then_the_ratio,
    a_collector_that_is_down_costs_spans_not_requests,
);
