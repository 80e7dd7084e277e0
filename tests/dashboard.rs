//! The Grafana dashboard shipped in `configs/grafana/smart-ai-router.json` against a live
//! `GET /metrics`: it is a well-formed dashboard (datasource variable, `channel` and
//! `provider` variables, unique panel ids, a query in every panel), and every
//! `smart_router_*` metric its queries name is exported by the gateway, with every label its
//! selectors match on. A metric renamed in `src/` or misspelled in the JSON fails here instead
//! of leaving a panel silently empty.

#![allow(clippy::disallowed_methods)] // tests block on sockets and read a file

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::*;
use simd_json::OwnedValue;
use simd_json::prelude::*;
use smart_ai_router::mock::MockConfig;

const DRIVER: &str = "io_uring_or_auto";

const DASHBOARD: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/configs/grafana/smart-ai-router.json"
);

const PREFIX: &str = "smart_router_";

fn dashboard() -> OwnedValue {
    let mut bytes = std::fs::read(DASHBOARD).unwrap_or_else(|e| panic!("reading {DASHBOARD}: {e}"));
    simd_json::to_owned_value(&mut bytes).unwrap_or_else(|e| panic!("{DASHBOARD} as JSON: {e}"))
}

/// Every query string in the dashboard, wherever it sits: `expr` of panel targets (rows
/// included), and `definition` / `query` of template variables.
fn queries(v: &OwnedValue, out: &mut Vec<String>) {
    if let Some(o) = v.as_object() {
        for (k, x) in o.iter() {
            match x.as_str() {
                Some(s) if matches!(k.as_str(), "expr" | "definition" | "query") => {
                    out.push(s.to_string())
                }
                _ => queries(x, out),
            }
        }
    } else if let Some(a) = v.as_array() {
        for x in a {
            queries(x, out);
        }
    }
}

/// One metric named in a query, with the label names its selector (or `label_values`) uses.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct MetricRef {
    name: String,
    labels: Vec<String>,
    query: String,
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn skip_ws(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && s[i].is_ascii_whitespace() {
        i += 1;
    }
    i
}

fn name_end(s: &[u8], mut i: usize) -> usize {
    while i < s.len() && is_name_byte(s[i]) {
        i += 1;
    }
    i
}

/// Parses `{a="x", b=~"y", c!="z"}` (PromQL matchers, or the exposition format's labels)
/// starting at the `{`; returns the label names and the index after the `}`.
fn label_names(s: &[u8], open: usize) -> Result<(Vec<String>, usize), String> {
    let text = String::from_utf8_lossy(s);
    let mut names = Vec::new();
    let mut i = skip_ws(s, open + 1);
    loop {
        if s.get(i) == Some(&b'}') {
            return Ok((names, i + 1));
        }
        let end = name_end(s, i);
        if end == i {
            return Err(format!("a label name expected at byte {i} of `{text}`"));
        }
        names.push(String::from_utf8_lossy(&s[i..end]).into_owned());
        i = skip_ws(s, end);
        i += match (s.get(i), s.get(i + 1)) {
            (Some(b'=' | b'!'), Some(b'~')) | (Some(b'!'), Some(b'=')) => 2,
            (Some(b'='), _) => 1,
            _ => return Err(format!("a matcher expected at byte {i} of `{text}`")),
        };
        i = skip_ws(s, i);
        let quote = match s.get(i) {
            Some(q @ (b'"' | b'\'' | b'`')) => *q,
            _ => return Err(format!("a quoted value expected at byte {i} of `{text}`")),
        };
        i += 1;
        while i < s.len() && s[i] != quote {
            i += if s[i] == b'\\' { 2 } else { 1 };
        }
        if i >= s.len() {
            return Err(format!("an unterminated value in `{text}`"));
        }
        i = skip_ws(s, i + 1);
        match s.get(i) {
            Some(b',') => i = skip_ws(s, i + 1),
            Some(b'}') => {}
            _ => return Err(format!("`,` or `}}` expected at byte {i} of `{text}`")),
        }
    }
}

/// Every `smart_router_*` metric a query names, with its selector's label names; for
/// `label_values(metric, label)` the label too.
fn metric_refs(query: &str) -> Result<Vec<MetricRef>, String> {
    let s = query.as_bytes();
    let mut refs = Vec::new();
    let mut i = 0;
    while let Some(at) = query[i..].find(PREFIX).map(|p| p + i) {
        let end = name_end(s, at);
        if at > 0 && is_name_byte(s[at - 1]) {
            // Inside a longer name (`x_smart_router_…`): not one of ours.
            i = end;
            continue;
        }
        let name = query[at..end].to_string();
        let mut labels = Vec::new();
        i = skip_ws(s, end);
        if s.get(i) == Some(&b'{') {
            let (names, next) = label_names(s, i)?;
            labels = names;
            i = skip_ws(s, next);
        }
        if query[..at].trim_end().ends_with("label_values(") && s.get(i) == Some(&b',') {
            let from = skip_ws(s, i + 1);
            let to = name_end(s, from);
            labels.push(query[from..to].to_string());
            i = to;
        }
        refs.push(MetricRef {
            name,
            labels,
            query: query.to_string(),
        });
    }
    Ok(refs)
}

/// What a scrape exports: every sample name with the label names seen on it, and the
/// histogram families (`# TYPE … histogram`).
#[derive(Debug, Default)]
struct Exported {
    samples: BTreeMap<String, BTreeSet<String>>,
    histograms: BTreeSet<String>,
}

fn exported(text: &str) -> Exported {
    let mut e = Exported::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split_whitespace();
            if let (Some(name), Some("histogram")) = (parts.next(), parts.next()) {
                e.histograms.insert(name.to_string());
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let s = line.as_bytes();
        let end = name_end(s, 0);
        let labels = e.samples.entry(line[..end].to_string()).or_default();
        if s.get(end) == Some(&b'{') {
            let (names, _) = label_names(s, end).unwrap_or_else(|err| panic!("scrape: {err}"));
            labels.extend(names);
        }
    }
    e
}

/// What is wrong with `refs` against a scrape: names not exported (a histogram's family
/// counts only through its `_bucket`, `_sum` and `_count` samples) and labels a metric
/// doesn't carry.
fn problems(refs: &[MetricRef], e: &Exported) -> Vec<String> {
    let mut out = BTreeSet::new();
    for r in refs {
        let labels = match e.samples.get(&r.name) {
            Some(l) => l,
            None => {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suffix| r.name.strip_suffix(suffix));
                if family.is_some_and(|f| e.histograms.contains(f)) {
                    // A histogram with no series yet: its samples' labels are unknown.
                    continue;
                }
                let hint = if e.histograms.contains(&r.name) {
                    " (a histogram: query its _bucket, _sum or _count)"
                } else {
                    ""
                };
                out.insert(format!(
                    "`{}` is not exported{hint}, in: {}",
                    r.name, r.query
                ));
                continue;
            }
        };
        for l in &r.labels {
            if !labels.contains(l) {
                out.insert(format!(
                    "`{}` has no label `{l}` (it has {labels:?}), in: {}",
                    r.name, r.query
                ));
            }
        }
    }
    out.into_iter().collect()
}

/// Sum of the samples named `name` whose line holds every `k="v"` of `labels`.
fn value(text: &str, name: &str, labels: &[&str]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter(|l| labels.iter().all(|kv| l.contains(kv)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The value at `path` (object keys), if there is one.
fn at<'a>(v: &'a OwnedValue, path: &[&str]) -> Option<&'a OwnedValue> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

/// The string at `path`, if there is one.
fn str_at<'a>(v: &'a OwnedValue, path: &[&str]) -> Option<&'a str> {
    at(v, path).and_then(|x| x.as_str())
}

fn panels(d: &OwnedValue) -> Vec<&OwnedValue> {
    let mut out = Vec::new();
    for p in at(d, &["panels"])
        .and_then(|x| x.as_array())
        .expect("`panels` is an array")
    {
        out.push(p);
        // A collapsed row holds its panels.
        if let Some(inner) = p.get("panels").and_then(|x| x.as_array()) {
            out.extend(inner.iter());
        }
    }
    out
}

#[test]
fn the_dashboard_is_a_grafana_dashboard() {
    let dash = dashboard();
    let d = &dash;
    assert!(d.as_object().is_some(), "the dashboard is a JSON object");
    assert!(
        at(d, &["schemaVersion"])
            .and_then(|x| x.as_u64())
            .is_some_and(|v| v >= 36),
        "schemaVersion {:?}",
        d.get("schemaVersion")
    );
    for key in ["title", "uid"] {
        assert!(
            str_at(d, &[key]).is_some_and(|s| !s.is_empty()),
            "`{key}` is set"
        );
    }
    let vars = at(d, &["templating", "list"])
        .and_then(|x| x.as_array())
        .expect("templating.list is an array");
    let var = |name: &str| {
        vars.iter()
            .find(|v| str_at(v, &["name"]) == Some(name))
            .unwrap_or_else(|| panic!("a `{name}` template variable"))
    };
    let ds = var("datasource");
    assert_eq!(str_at(ds, &["type"]), Some("datasource"));
    assert_eq!(str_at(ds, &["query"]), Some("prometheus"));
    for name in ["channel", "provider"] {
        let v = var(name);
        assert_eq!(str_at(v, &["type"]), Some("query"), "`{name}`");
        let def = str_at(v, &["definition"]).unwrap_or_default();
        assert!(
            def.starts_with("label_values(") && def.contains(&format!(", {name})")),
            "`{name}` lists the `{name}` label: {def}"
        );
        assert_eq!(str_at(v, &["datasource", "uid"]), Some("${datasource}"));
    }

    let panels = panels(d);
    let mut ids = BTreeSet::new();
    let mut graphs = 0;
    for p in &panels {
        let title = str_at(p, &["title"]).unwrap_or_default().to_string();
        assert!(!title.is_empty(), "every panel has a title: {p:?}");
        let id = at(p, &["id"])
            .and_then(|x| x.as_u64())
            .unwrap_or_else(|| panic!("`{title}`: id"));
        assert!(ids.insert(id), "`{title}`: panel id {id} is unique");
        let (x, w) = (
            at(p, &["gridPos", "x"])
                .and_then(|x| x.as_u64())
                .unwrap_or(99),
            at(p, &["gridPos", "w"])
                .and_then(|x| x.as_u64())
                .unwrap_or(0),
        );
        assert!(
            w >= 1 && x + w <= 24 && at(p, &["gridPos", "h"]).and_then(|x| x.as_u64()).is_some(),
            "`{title}`: gridPos inside the 24 columns"
        );
        if str_at(p, &["type"]) == Some("row") {
            continue;
        }
        graphs += 1;
        assert_eq!(
            str_at(p, &["datasource", "uid"]),
            Some("${datasource}"),
            "`{title}` queries the chosen datasource"
        );
        let targets = at(p, &["targets"])
            .and_then(|x| x.as_array())
            .unwrap_or_else(|| panic!("`{title}`: targets"));
        assert!(!targets.is_empty(), "`{title}` has a query");
        let mut ref_ids = BTreeSet::new();
        for t in targets {
            assert!(
                str_at(t, &["expr"]).is_some_and(|e| e.contains(PREFIX) && metric_refs(e).is_ok()),
                "`{title}`: every target queries a smart_router_ metric: {t:?}"
            );
            assert!(
                ref_ids.insert(str_at(t, &["refId"]).unwrap_or_default().to_string()),
                "`{title}`: refIds are unique"
            );
        }
    }
    assert!(graphs >= 20, "{graphs} panels");
}

#[test]
fn every_metric_the_dashboard_queries_is_exported() {
    let mut qs = Vec::new();
    queries(&dashboard(), &mut qs);
    let refs: Vec<MetricRef> = qs
        .iter()
        .flat_map(|q| metric_refs(q).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let names: BTreeSet<&str> = refs.iter().map(|r| r.name.as_str()).collect();
    assert!(names.len() >= 20, "the dashboard's metrics: {names:?}");

    // Traffic through one channel, streamed and not, so every histogram has series.
    let m = mock(MockConfig {
        chunks: 4,
        interval: Duration::from_millis(20),
        ..Default::default()
    });
    let gw = gateway(
        DRIVER,
        &format!(
            "{}pricing = {{ input = 1.0, output = 2.0 }}\n",
            one_channel(m.addr(), &["m"])
        ),
    );
    let mut c = Client::connect(gw.local_addr());
    for stream in [false, true, false, true] {
        let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let text = eventually(
        Duration::from_secs(5),
        "four requests and a stream gap in /metrics",
        || {
            let r = admin(&gw, "GET", "/metrics", None, "");
            assert_eq!(r.status, 200, "{}", r.text());
            let text = r.text();
            let ok = value(
                &text,
                "smart_router_requests_total",
                &["channel=\"up-1\"", "status=\"200\""],
            ) == 4.0
                && value(&text, "smart_router_request_duration_seconds_count", &[]) == 4.0
                && value(&text, "smart_router_stream_event_gap_seconds_count", &[]) >= 1.0;
            ok.then_some(text)
        },
    );
    let e = exported(&text);
    let found = problems(&refs, &e);
    assert!(
        found.is_empty(),
        "the dashboard queries what /metrics doesn't export:\n{}\n\nexported: {:?}",
        found.join("\n"),
        e.samples.keys().collect::<Vec<_>>()
    );

    // The check bites: a misspelled name, a histogram family without its suffix, and a label
    // the metric doesn't carry are each reported.
    for bad in [
        "sum(rate(smart_router_requests_totl[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(smart_router_request_duration_seconds[5m])))",
        "rate(smart_router_fallbacks_total{channel=~\"$channel\"}[5m])",
        "label_values(smart_router_channel_up, chanel)",
    ] {
        let refs = metric_refs(bad).expect("parses");
        assert_eq!(problems(&refs, &e).len(), 1, "{bad} is caught");
    }
}
