//! `GET /metrics` on the admin listener: Prometheus text that a real parser accepts, with
//! counters and histograms that move as requests are made, channel state, build info and
//! epochs — and no secret anywhere in it.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::time::Duration;

use common::*;
use prometheus_parse::{Sample, Scrape, Value};
use smart_ai_router::mock::MockConfig;

const DRIVER: &str = "io_uring_or_auto";

fn scrape(gw: &smart_ai_router::bootstrap::Gateway) -> (Scrape, String) {
    let r = admin(gw, "GET", "/metrics", None, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        r.header("content-type")
    );
    let text = r.text();
    let lines = text.lines().map(|l| Ok(l.to_string()));
    (Scrape::parse(lines).expect("Prometheus text parses"), text)
}

fn find<'a>(s: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Sample> {
    s.samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
}

fn counter(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(s, name, labels).map(|x| &x.value) {
        Some(Value::Counter(v)) | Some(Value::Gauge(v)) | Some(Value::Untyped(v)) => *v,
        other => panic!("{name} {labels:?}: {other:?}"),
    }
}

#[test]
fn metrics_parse_and_move_with_traffic() {
    let m = mock(MockConfig::default());
    let gw = gateway(
        DRIVER,
        &format!(
            "{}pricing = {{ input = 1.0, output = 2.0 }}\n",
            one_channel(m.addr(), &["m"])
        ),
    );
    let (before, _) = scrape(&gw);
    assert_eq!(
        counter(&before, "smart_router_channel_up", &[("channel", "up-1")]),
        1.0
    );
    assert!(
        find(
            &before,
            "smart_router_build_info",
            &[("driver", "io_uring")]
        )
        .or_else(|| find(&before, "smart_router_build_info", &[("driver", "legacy")]))
        .is_some()
    );
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true, false] {
        assert_eq!(
            c.post("/v1/chat/completions", &[], &chat_body("m", stream))
                .status,
            200
        );
    }
    let (after, text) = eventually(Duration::from_secs(5), "three requests counted", || {
        let (s, text) = scrape(&gw);
        let labels = [("channel", "up-1"), ("model", "m"), ("status", "200")];
        (find(&s, "smart_router_requests_total", &labels).is_some()
            && counter(&s, "smart_router_requests_total", &labels) == 3.0)
            .then_some((s, text))
    });
    let labels = [("channel", "up-1"), ("model", "m")];
    assert!(counter(&after, "smart_router_prompt_tokens_total", &labels) > 0.0);
    assert!(counter(&after, "smart_router_completion_tokens_total", &labels) > 0.0);
    assert!(counter(&after, "smart_router_cost_total", &labels) > 0.0);
    match &find(&after, "smart_router_request_duration_seconds", &labels)
        .expect("latency histogram")
        .value
    {
        Value::Histogram(h) => {
            let last = h.last().expect("buckets");
            assert_eq!(last.count, 3.0, "{h:?}");
        }
        other => panic!("{other:?}"),
    }
    match &find(&after, "smart_router_gateway_overhead_seconds", &[])
        .expect("overhead histogram")
        .value
    {
        Value::Histogram(h) => assert_eq!(h.last().unwrap().count, 3.0),
        other => panic!("{other:?}"),
    }
    assert!(counter(&after, "smart_router_snapshot_epoch", &[("worker", "0")]) >= 1.0);
    assert!(!text.contains("sk-channel"), "no key in metrics");
}

#[test]
fn metrics_need_the_admin_token_when_one_is_set() {
    let m = mock(MockConfig::default());
    let gw = gateway(
        DRIVER,
        &format!(
            "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"metrics-token-0123456789\"\n",
            one_channel(m.addr(), &["m"])
        ),
    );
    assert_eq!(admin(&gw, "GET", "/metrics", None, "").status, 401);
    let r = admin(&gw, "GET", "/metrics", Some("metrics-token-0123456789"), "");
    assert_eq!(r.status, 200);
    assert_eq!(admin(&gw, "POST", "/metrics", None, "").status, 401);
    let r = admin(
        &gw,
        "POST",
        "/metrics",
        Some("metrics-token-0123456789"),
        "",
    );
    assert_eq!(r.status, 405);
}

#[test]
fn a_w3c_traceparent_goes_upstream_and_into_the_usage_record() {
    let dir = temp_dir("trace");
    let m = mock(MockConfig::default());
    let gw = gateway(
        DRIVER,
        &format!(
            "{}\n[state]\ndir = \"{}\"\n\n[log]\naccess = true\n",
            one_channel(m.addr(), &["m"]),
            dir.display()
        ),
    );
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = Client::connect(gw.local_addr()).post(
        "/v1/chat/completions",
        &[("traceparent", tp), ("tracestate", "vendor=x")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 200);
    let upstream = drain(&m);
    let sent = requests(&upstream)[0];
    let header = |n: &str| {
        sent.headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("traceparent"), Some(tp));
    assert_eq!(header("tracestate"), Some("vendor=x"));
    let line = eventually(Duration::from_secs(5), "usage line", || {
        let entries = std::fs::read_dir(dir.join("usage")).ok()?;
        entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
            .find_map(|p| std::fs::read_to_string(p).ok().filter(|t| !t.is_empty()))
    });
    assert!(
        line.contains("\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\""),
        "{line}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

fn sum(s: &Scrape, name: &str) -> f64 {
    s.samples
        .iter()
        .filter(|x| x.metric == name)
        .map(|x| match x.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

#[test]
fn worker_gauges_follow_a_live_stream() {
    let m = mock(MockConfig {
        chunks: 4,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    c.send(&post_bytes(
        "/v1/chat/completions",
        &[("x-mock-hold-after", "2")],
        &chat_body("m", true),
    ));
    let (status, _) = c.read_head();
    assert_eq!(status, 200);
    eventually(
        Duration::from_secs(5),
        "one stream and one request in flight",
        || {
            let (s, _) = scrape(&gw);
            (sum(&s, "smart_router_worker_streams") == 1.0
                && sum(&s, "smart_router_worker_in_flight") == 1.0
                && sum(&s, "smart_router_worker_connections") >= 1.0)
                .then_some(())
        },
    );
    m.open_gate();
    while c.read_chunk().is_some() {}
    let (s, _) = eventually(Duration::from_secs(5), "the stream ended", || {
        let (s, t) = scrape(&gw);
        (sum(&s, "smart_router_worker_streams") == 0.0).then_some((s, t))
    });
    assert!(sum(&s, "smart_router_worker_requests_total") >= 1.0);
    // The hold split the stream in two batches at least: one gap was measured.
    let gaps = eventually(Duration::from_secs(5), "a stream gap recorded", || {
        let (s, _) = scrape(&gw);
        match &find(&s, "smart_router_stream_event_gap_seconds", &[])?.value {
            Value::Histogram(h) => (h.last()?.count >= 1.0).then_some(h.last()?.count),
            _ => None,
        }
    });
    assert!(gaps >= 1.0);
    assert!(
        find(
            &s,
            "smart_router_worker_loop_lag_seconds",
            &[("stat", "max")]
        )
        .is_some()
    );
}

#[test]
fn failed_upstream_attempts_are_counted_by_how_they_failed() {
    let m = mock(MockConfig::default());
    let gw = gateway(DRIVER, &one_channel(m.addr(), &["m"]));
    let mut c = Client::connect(gw.local_addr());
    let r = c.post(
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        &chat_body("m", false),
    );
    assert_eq!(r.status, 502, "{}", r.text());
    let labels = [
        ("channel", "up-1"),
        ("provider", "up"),
        ("kind", "status_5xx"),
    ];
    eventually(Duration::from_secs(5), "the 500 attempt counted", || {
        let (s, _) = scrape(&gw);
        (find(&s, "smart_router_upstream_errors_total", &labels).is_some()
            && counter(&s, "smart_router_upstream_errors_total", &labels) == 1.0)
            .then_some(())
    });
}
