//! Request metrics from the usage records the control thread already receives (requests,
//! fallbacks, tokens, cost, per client key; latency, time to first byte and gateway overhead
//! histograms), rendered into `GET /metrics` through the [`crate::metrics`] text writer.
//!
//! Invariants: nothing here runs on a worker — the data plane pays only for the usage record it
//! already sends; label values come from config (channel, provider, upstream model from the
//! catalog, client key names from `[auth]`) or small fixed sets (status code, endpoint), never
//! from client-chosen text, so cardinality is bounded by the config; counters only grow (a
//! reload keeps them).
//!
//! Beside the Prometheus families it keeps what the status page and `/admin/channels` show
//! live: [`Recent`] (per channel and gateway-wide requests, errors and p50/p99 over the last 1
//! and 5 minutes, from `metrics::window`) and [`Today`] (the UTC day's totals per client key,
//! channel and model since this process started; `/admin/usage` reads the files for the rest).
//!
//! Not here: the workers' own gauges (connections, in flight, loop lag, stream gaps: stored by
//! each worker once per tick in its `metrics::Gauges` block and rendered from there), families
//! of control state (channel health, epochs, budgets, cluster: the admin API's `prometheus`).

use std::collections::{BTreeMap, HashMap};

use crate::metrics::Histogram;
use crate::metrics::text::{Kind, Text};
use crate::metrics::window::Window;
use crate::usage::{Record, Totals};

const DAY_MS: u64 = 86_400_000;

/// One channel's windows: whole-request latency (with errors: non-2xx answers, as
/// `/admin/usage` counts them) and time to first byte.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelWindows {
    /// Every answer the channel gave, its latency and whether it was an error.
    pub(crate) latency: Window,
    /// Answers with a first-byte time.
    pub(crate) ttft: Window,
}

/// The last minutes of traffic, per channel and for the gateway (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct Recent {
    /// By channel id (config ids: bounded by the config; a removed channel's entry stays
    /// until a restart, it only costs memory).
    pub(crate) channels: HashMap<String, ChannelWindows>,
    /// Every answer, channel or not.
    pub(crate) requests: Window,
    /// Gateway overhead (`x-router-overhead-ms`).
    pub(crate) overhead: Window,
}

impl Recent {
    /// Windows that count their rates from `now_ms` (the control thread's start).
    pub(crate) fn since(now_ms: u64) -> Recent {
        Recent {
            channels: HashMap::new(),
            requests: Window::since(now_ms),
            overhead: Window::since(now_ms),
        }
    }

    fn add(&mut self, r: &Record, now_ms: u64) {
        let error = !(200..300).contains(&r.status);
        let latency = f64::from(r.latency_ms);
        self.requests.observe(now_ms, latency, error);
        if let Some(o) = r.overhead_ms {
            self.overhead.observe(now_ms, f64::from(o), false);
        }
        let channel = r.channel();
        if channel.is_empty() {
            return;
        }
        let w = match self.channels.get_mut(channel) {
            Some(w) => w,
            None => self
                .channels
                .entry(channel.to_string())
                .or_insert_with(|| ChannelWindows {
                    latency: Window::since(now_ms),
                    ttft: Window::since(now_ms),
                }),
        };
        w.latency.observe(now_ms, latency, error);
        if let Some(t) = r.ttft_ms {
            w.ttft.observe(now_ms, f64::from(t), false);
        }
    }
}

/// The UTC day's totals by client key, channel and model, from the records merged since this
/// process started (reset at 00:00 UTC).
#[derive(Debug, Default)]
pub(crate) struct Today {
    /// Days since the Unix epoch.
    pub(crate) day: u64,
    /// By client key name (`""`: requests without a key).
    pub(crate) keys: BTreeMap<String, Totals>,
    /// By channel id (`""`: requests that reached no channel).
    pub(crate) channels: BTreeMap<String, Totals>,
    /// By upstream model.
    pub(crate) models: BTreeMap<String, Totals>,
}

impl Today {
    /// Starts a new day when `now_ms` is past this one.
    pub(crate) fn roll(&mut self, now_ms: u64) {
        let day = now_ms / DAY_MS;
        if day != self.day {
            *self = Today {
                day,
                ..Today::default()
            };
        }
    }

    fn add(&mut self, r: &Record, now_ms: u64) {
        self.roll(now_ms);
        let t = Totals::of(r);
        let key = r.client.as_deref().unwrap_or("");
        for (map, name) in [
            (&mut self.keys, key),
            (&mut self.channels, r.channel()),
            (&mut self.models, r.model()),
        ] {
            match map.get_mut(name) {
                Some(x) => x.add(&t),
                None => {
                    map.insert(name.to_string(), t.clone());
                }
            }
        }
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
pub(crate) struct Metrics {
    /// Keyed by (channel, provider, model); requests that reached no channel use empty names.
    traffic: BTreeMap<(String, String, String), Traffic>,
    fallbacks: u64,
    ttft: Histogram,
    overhead: Histogram,
    records: u64,
    /// By client key name (configured names only: bounded by the config), then status.
    clients: BTreeMap<String, ClientTraffic>,
    /// Failed upstream attempts by (channel, provider, kind): kinds are a fixed set of labels.
    upstream_errors: BTreeMap<(String, String, &'static str), u64>,
    /// The last minutes, for the status page and `/admin/channels`.
    pub(crate) recent: Recent,
    /// Today's totals, for the status page.
    pub(crate) today: Today,
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
    /// Counts one failed upstream attempt on `channel` (`kind`: its label).
    pub(crate) fn upstream_error(&mut self, channel: &str, provider: &str, kind: &'static str) {
        let key = (channel.to_string(), provider.to_string(), kind);
        *self.upstream_errors.entry(key).or_default() += 1;
    }

    /// Metrics whose windows count their rates from `now_ms` (the control thread's start).
    pub(crate) fn since(now_ms: u64) -> Metrics {
        Metrics {
            recent: Recent::since(now_ms),
            today: Today {
                day: now_ms / DAY_MS,
                ..Today::default()
            },
            ..Metrics::default()
        }
    }

    /// Counts one usage record merged at wall time `now_ms`.
    pub(crate) fn add(&mut self, r: &Record, now_ms: u64) {
        self.recent.add(r, now_ms);
        self.today.add(r, now_ms);
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

    /// Renders the request metrics' families (`currency`: the `currency` label of costs).
    pub(crate) fn render(&self, text: &mut Text, currency: &str) {
        let name = "smart_router_requests_total";
        text.family(
            name,
            Kind::Counter,
            "Requests answered, by channel, provider, upstream model, endpoint and status.",
        );
        for ((c, p, m), t) in &self.traffic {
            for ((endpoint, status), n) in &t.requests {
                let labels = [
                    ("channel", c as &dyn std::fmt::Display),
                    ("provider", p),
                    ("model", m),
                    ("endpoint", endpoint),
                    ("status", status),
                ];
                text.sample(name, &labels, n);
            }
        }
        if !self.clients.is_empty() {
            let name = "smart_router_client_requests_total";
            text.family(
                name,
                Kind::Counter,
                "Requests by client key name (never the key) and status.",
            );
            for (key, k) in &self.clients {
                for (status, n) in &k.requests {
                    text.sample(name, &[("key", key), ("status", status)], n);
                }
            }
            let name = "smart_router_client_tokens_total";
            text.family(
                name,
                Kind::Counter,
                "Tokens by client key name and direction (prompt, completion).",
            );
            for (key, k) in &self.clients {
                for (dir, v) in [
                    ("prompt", k.prompt_tokens),
                    ("completion", k.completion_tokens),
                ] {
                    text.sample(name, &[("key", key), ("direction", &dir)], v);
                }
            }
            let name = "smart_router_client_cost_total";
            text.family(
                name,
                Kind::Counter,
                "Cost by client key name in the configured currency (label `currency`).",
            );
            for (key, k) in &self.clients {
                text.sample(name, &[("key", key), ("currency", &currency)], k.cost);
            }
        }
        let name = "smart_router_fallbacks_total";
        text.family(
            name,
            Kind::Counter,
            "Upstream attempts beyond the first (failovers).",
        );
        text.sample(name, &[], self.fallbacks);
        let name = "smart_router_upstream_errors_total";
        text.family(
            name,
            Kind::Counter,
            "Failed upstream attempts by how they failed: `<stage>_<cause>` (connect_failed, \
             head_timeout, body_closed …), status_4xx, status_5xx, stream_cut.",
        );
        for ((channel, provider, kind), n) in &self.upstream_errors {
            let labels: [(&str, &dyn std::fmt::Display); 3] =
                [("channel", channel), ("provider", provider), ("kind", kind)];
            text.sample(name, &labels, *n);
        }
        type Pick = fn(&Traffic) -> u64;
        let tokens: [(&str, &str, Pick); 3] = [
            (
                "smart_router_prompt_tokens_total",
                "Prompt tokens reported by upstreams (cached ones included).",
                |t| t.prompt_tokens,
            ),
            (
                "smart_router_completion_tokens_total",
                "Completion tokens reported by upstreams.",
                |t| t.completion_tokens,
            ),
            (
                "smart_router_cached_tokens_total",
                "Prompt tokens served from a provider's prompt cache.",
                |t| t.cached_tokens,
            ),
        ];
        for (name, help, pick) in tokens {
            text.family(name, Kind::Counter, help);
            for ((c, p, m), t) in &self.traffic {
                text.sample(
                    name,
                    &[("channel", c), ("provider", p), ("model", m)],
                    pick(t),
                );
            }
        }
        let name = "smart_router_cost_total";
        text.family(
            name,
            Kind::Counter,
            "Cost of answered requests in the configured currency (label `currency`).",
        );
        for ((c, p, m), t) in &self.traffic {
            let labels = [
                ("channel", c as &dyn std::fmt::Display),
                ("provider", p),
                ("model", m),
                ("currency", &currency),
            ];
            text.sample(name, &labels, t.cost);
        }
        let name = "smart_router_request_duration_seconds";
        text.family(
            name,
            Kind::Histogram,
            "Whole request time, from the request received to the answer's end.",
        );
        for ((c, p, m), t) in &self.traffic {
            text.histogram(
                name,
                &[("channel", c), ("provider", p), ("model", m)],
                &t.latency,
            );
        }
        let name = "smart_router_upstream_first_byte_seconds";
        text.family(
            name,
            Kind::Histogram,
            "Time from sending to the answering upstream's response head (time to first token for streams).",
        );
        text.histogram(name, &[], &self.ttft);
        let name = "smart_router_gateway_overhead_seconds";
        text.family(
            name,
            Kind::Histogram,
            "Time spent in the gateway itself before the answer's head went out (x-router-overhead-ms).",
        );
        text.histogram(name, &[], &self.overhead);
        let name = "smart_router_usage_records_total";
        text.family(
            name,
            Kind::Counter,
            "Usage records merged by the control thread (one per request).",
        );
        text.sample(name, &[], self.records);
    }
}
