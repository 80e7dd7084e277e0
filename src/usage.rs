//! Usage records: what each request consumed and cost, as workers report it and the control
//! thread keeps it — one JSON line per request in a file per UTC day, daily counters for budgets
//! and quotas, and the summaries `GET /admin/usage` answers.
//!
//! Invariants: a record is built on the worker and travels with the attempt's report (the
//! unbounded report channel: never dropped, DESIGN.md §2); only the control thread's store
//! writes files. Building one costs the worker two small allocations (the record and the
//! requested model): names are read through the snapshot's shared channel and catalog lists,
//! and lines are formatted without intermediate strings; a request `[telemetry]` sampled adds
//! one box of span data ([`Traced`]). Costs are in the configured currency.
//! Records hold no secrets (ids only).
//! Not here: pricing data (`pricing`), capturing usage from answers (`proxy::transcode`).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::Arc;

use simd_json::prelude::*;

use crate::catalog::Catalog;
use crate::channel::Channel;
use crate::clock::write_rfc3339_ms;
use crate::h1::RequestId;
use crate::json;
use crate::tokens::Usage;

/// What a worker sends the control thread about a request: its health outcome and its usage
/// record.
pub(crate) type Report = crate::live::Report<Record>;

/// Which channel and model a record is about.
#[derive(Debug, Clone)]
pub(crate) enum Names {
    /// No attempt was made.
    None,
    /// Indices into the snapshot's shared lists (cheap to send: two reference counts).
    Snapshot {
        /// The snapshot's channels.
        channels: Arc<[Channel]>,
        /// The snapshot's catalog.
        catalog: Arc<Catalog>,
        /// Channel index.
        channel: u32,
        /// Entry index of the model that answered (`None`: the attempt failed before one did).
        entry: Option<u32>,
    },
    /// Plain names (tests).
    #[cfg(test)]
    Owned {
        /// Channel id.
        channel: Box<str>,
        /// Provider id.
        provider: Box<str>,
        /// Upstream model.
        model: Box<str>,
    },
}

/// One request's usage record.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    /// Unix time of the answer, in milliseconds.
    pub unix_ms: u64,
    /// The request id (`x-request-id`).
    pub request_id: RequestId,
    /// Endpoint family and path (`chat`, `messages`, `embeddings` …).
    pub endpoint: &'static str,
    /// Channel, provider and upstream model.
    pub names: Names,
    /// The model (or expression) the client asked for.
    pub requested: Box<str>,
    /// Token counts; `None` when no answer was relayed (the prompt is then estimated).
    pub usage: Option<Usage>,
    /// `usage` is the gateway's estimate: the answer carried none (the prompt as estimated on
    /// admission, the completion from the text relayed).
    pub usage_estimated: bool,
    /// The gateway's prompt estimate (used when `usage` is `None`).
    pub estimated_prompt: u32,
    /// Cost in the configured currency (`None`: no price known).
    pub cost: Option<f64>,
    /// Whole request latency.
    pub latency_ms: f32,
    /// Time to the answering upstream's response head.
    pub ttft_ms: Option<f32>,
    /// The gateway's own time (`x-router-overhead-ms`), when an answer was relayed.
    pub overhead_ms: Option<f32>,
    /// The W3C trace id (32 lower-case hex digits): with `[telemetry]` on the request's trace
    /// (the client's or a new one), else the client's `traceparent`'s, if valid.
    pub trace_id: Option<[u8; 32]>,
    /// The name of the client key that made the request (never the key).
    pub client: Option<std::sync::Arc<str>>,
    /// HTTP status the client got.
    pub status: u16,
    /// Upstream attempts made.
    pub attempts: u8,
    /// The answer was streamed (SSE).
    pub stream: bool,
    /// Span data, when `[telemetry]` sampled the request (`telemetry` exports it).
    pub trace: Option<Box<Traced>>,
}

/// A sampled request's span data beyond its record: built on the worker only for traced
/// requests, turned into OTLP spans by the control thread (`telemetry`).
#[derive(Debug, Clone)]
pub(crate) struct Traced {
    /// Trace id, the client's span (parent) and the gateway's server span.
    pub context: crate::trace::Context,
    /// Unix nanoseconds: the request received, the answer's end.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// The GenAI operation name (`chat`, `embeddings`, `text_completion`).
    pub operation: &'static str,
    /// The strategy that ordered the candidates (none: nothing was planned).
    pub strategy: Option<Box<str>>,
    /// `max_tokens` as asked.
    pub max_tokens: Option<u32>,
    /// `temperature` as asked.
    pub temperature: Option<f32>,
    /// One per upstream attempt, in order.
    pub attempts: Vec<AttemptSpan>,
    /// The channel list attempts index into (the snapshot's).
    pub channels: Option<Arc<[Channel]>>,
    /// The catalog attempts' entries index into.
    pub catalog: Option<Arc<Catalog>>,
    /// The request's messages (`capture_content`), JSON as the client sent it.
    pub content: Option<Box<str>>,
}

/// One upstream attempt of a traced request (a CLIENT span).
#[derive(Debug, Clone, Copy)]
pub(crate) struct AttemptSpan {
    /// The span id (the parent in the `traceparent` sent upstream).
    pub span_id: [u8; 8],
    /// Unix nanoseconds: request sent (about to be), outcome known.
    pub start_ns: u64,
    /// See `start_ns`.
    pub end_ns: u64,
    /// Channel index.
    pub channel: u32,
    /// Catalog entry index.
    pub entry: u32,
    /// The upstream's HTTP status (0: none came).
    pub status: u16,
    /// How it failed, as a metric label (`connect_failed`, `status_5xx`, `stream_cut` …).
    pub failure: Option<&'static str>,
}

impl Traced {
    /// An attempt's channel id and provider kind, and its entry's upstream model.
    pub(crate) fn attempt_names(&self, a: &AttemptSpan) -> (&str, &str, &str, &str) {
        let ch = self
            .channels
            .as_ref()
            .and_then(|c| c.get(a.channel as usize));
        let model = self
            .catalog
            .as_ref()
            .and_then(|c| c.entries.get(a.entry as usize))
            .map_or("", |e| &e.model);
        match ch {
            Some(c) => (&c.id, &c.provider, &c.kind, model),
            None => ("", "", "", model),
        }
    }
}

impl Record {
    /// Channel id (empty when no attempt was made).
    pub(crate) fn channel(&self) -> &str {
        match &self.names {
            Names::None => "",
            Names::Snapshot {
                channels, channel, ..
            } => channels.get(*channel as usize).map_or("", |c| &c.id),
            #[cfg(test)]
            Names::Owned { channel, .. } => channel,
        }
    }

    /// Provider id.
    pub(crate) fn provider(&self) -> &str {
        match &self.names {
            Names::None => "",
            Names::Snapshot {
                channels, channel, ..
            } => channels.get(*channel as usize).map_or("", |c| &c.provider),
            #[cfg(test)]
            Names::Owned { provider, .. } => provider,
        }
    }

    /// The upstream model that answered (empty when none did).
    pub(crate) fn model(&self) -> &str {
        match &self.names {
            Names::None | Names::Snapshot { entry: None, .. } => "",
            Names::Snapshot {
                catalog,
                entry: Some(e),
                ..
            } => catalog.entries.get(*e as usize).map_or("", |e| &e.model),
            #[cfg(test)]
            Names::Owned { model, .. } => model,
        }
    }

    /// Prompt tokens, measured or estimated.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.usage
            .map_or(u64::from(self.estimated_prompt), |u| u.prompt)
    }

    /// Prompt plus completion tokens (completion 0 when unknown).
    pub(crate) fn total_tokens(&self) -> u64 {
        self.prompt_tokens()
            .saturating_add(self.usage.map_or(0, |u| u.completion))
    }

    /// Appends the record as one JSON line (no intermediate allocations).
    pub(crate) fn write_line(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"ts\":\"");
        write_rfc3339_ms(out, self.unix_ms);
        out.extend_from_slice(b"\",\"unix_ms\":");
        json::write_u64(out, self.unix_ms);
        let strings = [
            ("request_id", self.request_id.as_str()),
            ("endpoint", self.endpoint),
            ("channel", self.channel()),
            ("provider", self.provider()),
            ("model_requested", &self.requested),
            ("model", self.model()),
        ];
        for (k, v) in strings {
            out.push(b',');
            json::write_key(out, k);
            json::write_str(out, v);
        }
        let uint = |out: &mut Vec<u8>, k: &str, v: u64| {
            out.push(b',');
            json::write_key(out, k);
            json::write_u64(out, v);
        };
        match self.usage {
            Some(u) => {
                uint(out, "prompt_tokens", u.prompt);
                uint(out, "completion_tokens", u.completion);
                uint(out, "cached_tokens", u.cached);
                uint(out, "cache_write_tokens", u.cache_write);
                out.extend_from_slice(if self.usage_estimated {
                    b",\"usage_estimated\":true"
                } else {
                    b",\"usage_estimated\":false"
                });
            }
            None => {
                uint(out, "prompt_tokens", u64::from(self.estimated_prompt));
                out.extend_from_slice(b",\"completion_tokens\":null,\"usage_estimated\":true");
            }
        }
        out.extend_from_slice(b",\"cost\":");
        write_f64(out, self.cost);
        out.extend_from_slice(b",\"latency_ms\":");
        write_ms(out, Some(self.latency_ms));
        out.extend_from_slice(b",\"ttft_ms\":");
        write_ms(out, self.ttft_ms);
        out.extend_from_slice(b",\"overhead_ms\":");
        write_ms(out, self.overhead_ms);
        if let Some(t) = &self.trace_id {
            out.extend_from_slice(b",\"trace_id\":\"");
            out.extend_from_slice(t);
            out.push(b'"');
        }
        if let Some(k) = &self.client {
            out.push(b',');
            json::write_key(out, "key");
            json::write_str(out, k);
        }
        uint(out, "status", u64::from(self.status));
        uint(out, "attempts", u64::from(self.attempts));
        out.extend_from_slice(if self.stream {
            b",\"stream\":true}\n"
        } else {
            b",\"stream\":false}\n"
        });
    }
}

/// The trace id of a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`), if it is valid
/// (lower-case hex, not all zeros).
pub(crate) fn trace_id(traceparent: &[u8]) -> Option<[u8; 32]> {
    let v = traceparent.trim_ascii();
    if v.len() < 55 || v[2] != b'-' || v[35] != b'-' || v[52] != b'-' {
        return None;
    }
    let hex = |s: &[u8]| {
        s.iter()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
    };
    let (version, id, parent, flags) = (&v[..2], &v[3..35], &v[36..52], &v[53..55]);
    if !hex(version) || version == b"ff" || !hex(id) || !hex(parent) || !hex(flags) {
        return None;
    }
    if id.iter().all(|&b| b == b'0') || parent.iter().all(|&b| b == b'0') {
        return None;
    }
    // Version 00 is exactly 55 bytes; later versions may append fields after a dash.
    if v.len() > 55 && (version == b"00" || v[55] != b'-') {
        return None;
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(id);
    Some(out)
}

/// A number at full precision, `null` when absent or not finite.
fn write_f64(out: &mut Vec<u8>, v: Option<f64>) {
    match v.filter(|v| v.is_finite()) {
        Some(v) => {
            let _ = write!(out, "{v}");
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// Milliseconds to the microsecond, `null` when absent or not finite (integer arithmetic:
/// float formatting with a precision is slow).
fn write_ms(out: &mut Vec<u8>, v: Option<f32>) {
    match v.filter(|v| v.is_finite() && *v >= 0.0) {
        Some(v) => {
            let us = (f64::from(v) * 1000.0).round() as u64;
            json::write_u64(out, us / 1000);
            out.push(b'.');
            let frac = us % 1000;
            out.push(b'0' + (frac / 100) as u8);
            out.push(b'0' + (frac / 10 % 10) as u8);
            out.push(b'0' + (frac % 10) as u8);
        }
        None => out.extend_from_slice(b"null"),
    }
}

/// What `/admin/usage` groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupBy {
    /// Channel id.
    Channel,
    /// Upstream model.
    Model,
    /// Provider id.
    Provider,
    /// Client key name.
    Key,
}

impl GroupBy {
    /// Parses the query spelling.
    pub(crate) fn parse(s: &str) -> Option<GroupBy> {
        match s {
            "channel" => Some(GroupBy::Channel),
            "model" => Some(GroupBy::Model),
            "provider" => Some(GroupBy::Provider),
            "key" => Some(GroupBy::Key),
            _ => None,
        }
    }

    /// The record field (and the query spelling) it groups by.
    pub(crate) fn field(self) -> &'static str {
        match self {
            GroupBy::Channel => "channel",
            GroupBy::Model => "model",
            GroupBy::Provider => "provider",
            GroupBy::Key => "key",
        }
    }
}

/// Totals of a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Totals {
    /// Requests counted.
    pub requests: u64,
    /// Requests answered with a non-2xx status.
    pub errors: u64,
    /// Prompt tokens (estimated where the answer had no usage).
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cached prompt tokens.
    pub cached_tokens: u64,
    /// Cost (configured currency).
    pub cost: f64,
}

#[cfg(feature = "cluster")]
/// The names of the [`Totals`] metrics, as the admin API and the fleet's Redis keys spell them.
pub(crate) const METRICS: [&str; 6] = [
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "cost",
];

impl Totals {
    /// One request's totals (its prompt estimated where the answer had no usage).
    pub(crate) fn of(r: &Record) -> Totals {
        Totals {
            requests: 1,
            errors: u64::from(!(200..300).contains(&r.status)),
            prompt_tokens: r.prompt_tokens(),
            completion_tokens: r.usage.map_or(0, |u| u.completion),
            cached_tokens: r.usage.map_or(0, |u| u.cached),
            cost: r.cost.unwrap_or(0.0),
        }
    }

    /// Adds `o` (token counts saturate).
    pub(crate) fn add(&mut self, o: &Totals) {
        self.requests += o.requests;
        self.errors += o.errors;
        self.prompt_tokens = self.prompt_tokens.saturating_add(o.prompt_tokens);
        self.completion_tokens = self.completion_tokens.saturating_add(o.completion_tokens);
        self.cached_tokens = self.cached_tokens.saturating_add(o.cached_tokens);
        self.cost += o.cost;
    }

    #[cfg(feature = "cluster")]
    /// Every metric by its name ([`METRICS`] order).
    pub(crate) fn metrics(&self) -> [(&'static str, f64); 6] {
        let v = [
            self.requests as f64,
            self.errors as f64,
            self.prompt_tokens as f64,
            self.completion_tokens as f64,
            self.cached_tokens as f64,
            self.cost,
        ];
        std::array::from_fn(|i| (METRICS[i], v[i]))
    }

    #[cfg(feature = "cluster")]
    /// Combines metric `name` with `v` through `f` (a sum, or the larger of the two); false
    /// for a name that is not a metric.
    pub(crate) fn merge_metric(&mut self, name: &str, v: f64, f: fn(f64, f64) -> f64) -> bool {
        let whole = |x: &mut u64| *x = f(*x as f64, v) as u64;
        match name {
            "requests" => whole(&mut self.requests),
            "errors" => whole(&mut self.errors),
            "prompt_tokens" => whole(&mut self.prompt_tokens),
            "completion_tokens" => whole(&mut self.completion_tokens),
            "cached_tokens" => whole(&mut self.cached_tokens),
            "cost" => self.cost = f(self.cost, v),
            _ => return false,
        }
        true
    }
}

/// A usage summary over a time range.
#[derive(Debug, Clone, Default)]
pub(crate) struct Summary {
    /// Per group key.
    pub groups: BTreeMap<String, Totals>,
    /// The totals over every group.
    pub total: Totals,
    /// Lines that did not parse (a torn last line after a crash, say).
    pub skipped: u64,
}

impl Summary {
    /// Adds the JSON lines of one file whose records fall in `[since, until)`.
    pub(crate) fn add_lines(&mut self, text: &[u8], since: u64, until: u64, by: GroupBy) {
        for line in text.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let mut copy = line.to_vec();
            let Ok(v) = simd_json::to_owned_value(&mut copy) else {
                self.skipped += 1;
                continue;
            };
            let Some(ts) = v.get("unix_ms").and_then(|x| x.as_u64()) else {
                self.skipped += 1;
                continue;
            };
            if ts < since || ts >= until {
                continue;
            }
            let group = v
                .get(by.field())
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string();
            let n = |k: &str| v.get(k).and_then(|x| x.as_u64()).unwrap_or(0);
            let status = n("status");
            let t = Totals {
                requests: 1,
                errors: u64::from(!(200..300).contains(&status)),
                prompt_tokens: n("prompt_tokens"),
                completion_tokens: n("completion_tokens"),
                cached_tokens: n("cached_tokens"),
                cost: v.get("cost").and_then(|x| x.as_f64()).unwrap_or(0.0),
            };
            self.groups.entry(group).or_default().add(&t);
            self.total.add(&t);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(channel: &str, usage: Option<Usage>, cost: Option<f64>, ms: u64) -> Record {
        Record {
            unix_ms: ms,
            request_id: RequestId::parse(b"req_1").unwrap(),
            endpoint: "chat",
            names: Names::Owned {
                channel: channel.into(),
                provider: "p".into(),
                model: "m\"x".into(),
            },
            requested: "auto:fast".into(),
            usage,
            estimated_prompt: 9,
            usage_estimated: false,
            cost,
            latency_ms: 12.5,
            ttft_ms: Some(3.0),
            overhead_ms: Some(0.05),
            trace_id: None,
            client: None,
            status: 200,
            attempts: 1,
            stream: true,
            trace: None,
        }
    }

    #[test]
    fn trace_ids_come_only_from_valid_traceparents() {
        let ok = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id(ok).as_ref().map(|t| &t[..]),
            Some(&b"4bf92f3577b34da6a3ce929d0e0e4736"[..])
        );
        assert!(trace_id(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01").is_none());
        assert!(trace_id(b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01").is_none());
        assert!(trace_id(b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").is_none());
        assert!(trace_id(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_none());
        assert!(trace_id(b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x").is_some());
        assert!(trace_id(b"garbage").is_none());
    }

    #[test]
    fn lines_parse_back_into_summaries() {
        let u = Usage {
            prompt: 100,
            completion: 20,
            cached: 40,
            cache_write: 0,
        };
        let mut text = Vec::new();
        record("a", Some(u), Some(0.5), 1_000).write_line(&mut text);
        record("a", None, None, 2_000).write_line(&mut text);
        record("b", Some(u), Some(0.25), 3_000).write_line(&mut text);
        record("b", Some(u), Some(1.0), 9_000).write_line(&mut text);
        text.extend_from_slice(b"{\"torn\":");
        let mut s = Summary::default();
        s.add_lines(&text, 0, 5_000, GroupBy::Channel);
        assert_eq!(s.skipped, 1);
        assert_eq!(s.total.requests, 3);
        let a = &s.groups["a"];
        assert_eq!(
            (a.requests, a.prompt_tokens, a.completion_tokens),
            (2, 109, 20)
        );
        assert!((a.cost - 0.5).abs() < 1e-12);
        assert_eq!(s.groups["b"].cached_tokens, 40);
        assert!((s.total.cost - 0.75).abs() < 1e-12);
    }
}
