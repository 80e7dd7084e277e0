//! Prometheus metrics, first step: everything derivable from the usage records the control
//! thread already receives (requests, fallbacks, tokens, cost, latency, time to first byte and
//! gateway overhead histograms), plus state the control thread owns (snapshot epochs per
//! worker, channel health, build info). Rendered as the Prometheus text format by
//! `GET /metrics` on the admin listener.
//!
//! Invariants: nothing here runs on a worker — the data plane pays only for the usage record it
//! already sends; label values come from config (channel, provider, upstream model from the
//! catalog, client key names from `[auth]`) or small fixed sets (status code, endpoint), never
//! from client-chosen text, so cardinality is bounded by the config; counters only grow (a
//! reload keeps them).
//! Not here: worker-local gauges (in-flight, connections, loop lag) — a later step.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::usage::Record;

use crate::worker::LATENCY_BUCKETS as BUCKETS;

/// A cumulative-on-render histogram of seconds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    /// Per bucket (not cumulative), plus +Inf at the end.
    counts: [u64; BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation in seconds (non-finite or negative ones are ignored).
    pub fn observe(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// A histogram from bucket counts (not cumulative, +Inf last), their sum and count.
    pub fn from_parts(counts: [u64; BUCKETS.len() + 1], sum: f64) -> Histogram {
        Histogram {
            count: counts.iter().sum(),
            counts,
            sum,
        }
    }

    /// Renders the histogram's `_bucket`, `_sum` and `_count` lines.
    pub fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c;
            let le = BUCKETS
                .get(i)
                .map_or_else(|| "+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(
                out,
                "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {cumulative}"
            );
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Per (channel, provider, model) traffic.
#[derive(Debug, Clone, Default)]
struct Traffic {
    /// By (endpoint, status).
    requests: BTreeMap<(&'static str, u16), u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cached_tokens: u64,
    cost: f64,
    latency: Histogram,
}

/// The merged metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Keyed by (channel, provider, model); requests that reached no channel use empty names.
    traffic: BTreeMap<(String, String, String), Traffic>,
    fallbacks: u64,
    ttft: Histogram,
    overhead: Histogram,
    records: u64,
    /// By client key name (configured names only: bounded by the config), then status.
    clients: BTreeMap<String, ClientTraffic>,
}

/// Per client key traffic.
#[derive(Debug, Clone, Default)]
struct ClientTraffic {
    requests: BTreeMap<u16, u64>,
    prompt_tokens: u64,
    completion_tokens: u64,
    cost: f64,
}

impl Metrics {
    /// Counts one usage record.
    pub fn add(&mut self, r: &Record) {
        self.records += 1;
        let key = (
            r.channel().to_string(),
            r.provider().to_string(),
            r.model().to_string(),
        );
        let t = match self.traffic.get_mut(&key) {
            Some(t) => t,
            None => self.traffic.entry(key).or_default(),
        };
        *t.requests.entry((r.endpoint, r.status)).or_default() += 1;
        if let Some(u) = r.usage {
            t.prompt_tokens = t.prompt_tokens.saturating_add(u.prompt);
            t.completion_tokens = t.completion_tokens.saturating_add(u.completion);
            t.cached_tokens = t.cached_tokens.saturating_add(u.cached);
        }
        t.cost += r.cost.unwrap_or(0.0);
        t.latency.observe(f64::from(r.latency_ms) / 1000.0);
        if let Some(name) = &r.client {
            let k = match self.clients.get_mut(&**name) {
                Some(k) => k,
                None => self.clients.entry(name.to_string()).or_default(),
            };
            *k.requests.entry(r.status).or_default() += 1;
            if let Some(u) = r.usage {
                k.prompt_tokens = k.prompt_tokens.saturating_add(u.prompt);
                k.completion_tokens = k.completion_tokens.saturating_add(u.completion);
            }
            k.cost += r.cost.unwrap_or(0.0);
        }
        self.fallbacks += u64::from(r.attempts.saturating_sub(1));
        if let Some(v) = r.ttft_ms {
            self.ttft.observe(f64::from(v) / 1000.0);
        }
        if let Some(v) = r.overhead_ms {
            self.overhead.observe(f64::from(v) / 1000.0);
        }
    }

    /// Renders the request metrics (Prometheus text format 0.0.4).
    pub fn render(&self, out: &mut String, currency: &str) {
        let label = |c: &str, p: &str, m: &str| {
            format!(
                "channel=\"{}\",provider=\"{}\",model=\"{}\"",
                escape(c),
                escape(p),
                escape(m)
            )
        };
        header(
            out,
            "smart_router_requests_total",
            "counter",
            "Requests answered, by channel, provider, upstream model, endpoint and status.",
        );
        for ((c, p, m), t) in &self.traffic {
            for ((endpoint, status), n) in &t.requests {
                let _ = writeln!(
                    out,
                    "smart_router_requests_total{{{},endpoint=\"{endpoint}\",status=\"{status}\"}} {n}",
                    label(c, p, m)
                );
            }
        }
        if !self.clients.is_empty() {
            header(
                out,
                "smart_router_client_requests_total",
                "counter",
                "Requests by client key name (never the key) and status.",
            );
            for (name, k) in &self.clients {
                for (status, n) in &k.requests {
                    let _ = writeln!(
                        out,
                        "smart_router_client_requests_total{{key=\"{}\",status=\"{status}\"}} {n}",
                        escape(name)
                    );
                }
            }
            header(
                out,
                "smart_router_client_tokens_total",
                "counter",
                "Tokens by client key name and direction (prompt, completion).",
            );
            for (name, k) in &self.clients {
                for (dir, v) in [
                    ("prompt", k.prompt_tokens),
                    ("completion", k.completion_tokens),
                ] {
                    let _ = writeln!(
                        out,
                        "smart_router_client_tokens_total{{key=\"{}\",direction=\"{dir}\"}} {v}",
                        escape(name)
                    );
                }
            }
            header(
                out,
                "smart_router_client_cost_total",
                "counter",
                "Cost by client key name in the configured currency (label `currency`).",
            );
            for (name, k) in &self.clients {
                let _ = writeln!(
                    out,
                    "smart_router_client_cost_total{{key=\"{}\",currency=\"{}\"}} {}",
                    escape(name),
                    escape(currency),
                    k.cost
                );
            }
        }
        header(
            out,
            "smart_router_fallbacks_total",
            "counter",
            "Upstream attempts beyond the first (failovers).",
        );
        let _ = writeln!(out, "smart_router_fallbacks_total {}", self.fallbacks);
        for (name, help, pick) in [
            (
                "smart_router_prompt_tokens_total",
                "Prompt tokens reported by upstreams (cached ones included).",
                0,
            ),
            (
                "smart_router_completion_tokens_total",
                "Completion tokens reported by upstreams.",
                1,
            ),
            (
                "smart_router_cached_tokens_total",
                "Prompt tokens served from a provider's prompt cache.",
                2,
            ),
        ] {
            header(out, name, "counter", help);
            for ((c, p, m), t) in &self.traffic {
                let v = [t.prompt_tokens, t.completion_tokens, t.cached_tokens][pick];
                let _ = writeln!(out, "{name}{{{}}} {v}", label(c, p, m));
            }
        }
        header(
            out,
            "smart_router_cost_total",
            "counter",
            "Cost of answered requests in the configured currency (label `currency`).",
        );
        for ((c, p, m), t) in &self.traffic {
            let _ = writeln!(
                out,
                "smart_router_cost_total{{{},currency=\"{}\"}} {}",
                label(c, p, m),
                escape(currency),
                t.cost
            );
        }
        header(
            out,
            "smart_router_request_duration_seconds",
            "histogram",
            "Whole request time, from the request received to the answer's end.",
        );
        for ((c, p, m), t) in &self.traffic {
            t.latency.render(
                out,
                "smart_router_request_duration_seconds",
                &label(c, p, m),
            );
        }
        header(
            out,
            "smart_router_upstream_first_byte_seconds",
            "histogram",
            "Time from sending to the answering upstream's response head (time to first token for streams).",
        );
        self.ttft
            .render(out, "smart_router_upstream_first_byte_seconds", "");
        header(
            out,
            "smart_router_gateway_overhead_seconds",
            "histogram",
            "Time spent in the gateway itself before the answer's head went out (x-router-overhead-ms).",
        );
        self.overhead
            .render(out, "smart_router_gateway_overhead_seconds", "");
        header(
            out,
            "smart_router_usage_records_total",
            "counter",
            "Usage records merged by the control thread (one per request).",
        );
        let _ = writeln!(out, "smart_router_usage_records_total {}", self.records);
    }
}

/// `# HELP` and `# TYPE` lines.
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// A label value escaped per the text format (backslash, quote, newline).
pub fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for ch in v.chars() {
        match ch {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_end_at_inf() {
        let mut h = Histogram::default();
        h.observe(0.000_07);
        h.observe(0.3);
        h.observe(100.0);
        h.observe(f64::NAN);
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.0001\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"30\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
