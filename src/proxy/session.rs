//! One proxied request's session: the state its phases share (admit → plan → attempt → relay →
//! finish) and its finish — the usage record — written once, by `Drop`, however the request
//! ends (an answer, a refusal, every attempt failing, the client leaving, a panic unwinding).
//!
//! Invariants: every request that reached `proxy::forward` leaves exactly one usage record; a
//! request whose client left before anything was sent is recorded with status 499 (as nginx
//! logs it), a stream the upstream cut (or left without its terminator) with 502 whatever its
//! head said; token limits settle the real usage against the estimate charged on admission.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use arrayvec::{ArrayString, ArrayVec};

use super::Call;
use super::failure::Kept;
use crate::channel::Channel;
use crate::error::Error;
use crate::server::{Request, Responder};
use crate::snapshot::Snapshot;
use crate::tokens::Usage;
use crate::worker::Worker;

/// A request in flight through the proxy. Its phases fill in `names`, `attempt` and `at`; the
/// usage record is written when it drops.
pub(super) struct Session<'a, 'o> {
    worker: &'a Worker,
    req: &'a Request<'a>,
    call: &'a Call<'a>,
    /// The client's response.
    pub(super) out: &'a mut Responder<'o>,
    /// The channel and entry the record names.
    pub(super) names: crate::usage::Names,
    /// What the attempts yielded.
    pub(super) attempt: Attempted,
    /// The instant token limits settle at.
    pub(super) at: Instant,
    /// The request's trace, with `[telemetry]` on (sampled or not: the `traceparent` sent
    /// upstream names it either way).
    pub(super) trace: Option<crate::trace::Context>,
    /// What a sampled request's spans need beyond its record (none: not sampled).
    pub(super) spans: Option<Box<Spans>>,
}

/// A sampled request's span data gathered while it runs (`usage::Traced` once it ends).
pub(super) struct Spans {
    /// The attempts made so far.
    tried: Vec<Tried>,
    /// The strategy that ordered the candidates.
    pub(super) strategy: Option<Box<str>>,
    channels: std::sync::Arc<[Channel]>,
    catalog: std::sync::Arc<crate::catalog::Catalog>,
    /// The client's body (`capture_content`).
    content: Option<Box<[u8]>>,
}

/// One upstream attempt of a sampled request, as it goes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Tried {
    pub(super) span_id: [u8; 8],
    pub(super) started: Instant,
    /// Set by [`Session::tried`].
    pub(super) ended: Instant,
    pub(super) channel: u32,
    pub(super) entry: u32,
    pub(super) status: u16,
    pub(super) failure: Option<&'static str>,
}

/// The most of a client's body kept for `capture_content` (64 KiB).
const MAX_CONTENT: usize = 64 * 1024;

impl<'a, 'o> Session<'a, 'o> {
    /// A session for `req`, answered through `out`.
    pub(super) fn new(
        worker: &'a Worker,
        req: &'a Request<'a>,
        call: &'a Call<'a>,
        out: &'a mut Responder<'o>,
    ) -> Self {
        Session {
            worker,
            req,
            call,
            out,
            names: crate::usage::Names::None,
            attempt: Attempted::NONE,
            at: req.received,
            trace: None,
            spans: None,
        }
    }

    /// Starts the request's trace (`[telemetry]` on): the client's `traceparent` decides
    /// whether it is sampled, else `traces.ratio`. Only a sampled request allocates.
    pub(super) fn begin_trace(&mut self, snap: &Snapshot, traces: crate::snapshot::Traces) {
        let worker = self.worker;
        let ctx =
            crate::trace::Context::begin(self.req.header(b"traceparent"), traces.ratio, || {
                worker.random()
            });
        if ctx.sampled {
            let body = self.call.native.unwrap_or(self.call.body);
            self.spans = Some(Box::new(Spans {
                tried: Vec::new(),
                strategy: None,
                channels: snap.channels.clone(),
                catalog: snap.catalog.clone(),
                content: traces
                    .capture_content
                    .then(|| body[..body.len().min(MAX_CONTENT)].into()),
            }));
        }
        self.trace = Some(ctx);
    }

    /// Records an upstream attempt of a sampled request, ended now.
    pub(super) fn tried(&mut self, mut t: Tried) {
        if let Some(sp) = self.spans.as_mut() {
            t.ended = Instant::now();
            sp.tried.push(t);
        }
    }

    /// The worker serving the request.
    pub(super) fn worker(&self) -> &'a Worker {
        self.worker
    }

    /// The request.
    pub(super) fn req(&self) -> &'a Request<'a> {
        self.req
    }
}

impl Session<'_, '_> {
    /// Answers with a gateway-made error: the error body (in the client's family), the
    /// `x-router-*` facts of what happened before it (`trail`), and `extra` (Retry-After,
    /// rate-limit headers).
    pub(super) async fn refuse(&mut self, e: &Error, extra: &Extra, trail: &Trail<'_>) {
        let mut attempts = itoa::Buffer::new();
        let mut overhead = ArrayString::<24>::new();
        let spent = self.req.received.elapsed().saturating_sub(trail.upstream);
        let _ = write!(overhead, "{:.3}", spent.as_secs_f64() * 1000.0);
        let mut headers: ArrayVec<(&[u8], &[u8]), 12> = ArrayVec::new();
        headers.push((
            b"x-router-requested-model",
            self.call.features.model.as_bytes(),
        ));
        headers.push((
            b"x-router-attempts",
            attempts.format(trail.attempts).as_bytes(),
        ));
        headers.push((b"x-router-overhead-ms", overhead.as_bytes()));
        if let Some(c) = trail.last_channel {
            headers.push((b"x-router-channel", c.as_bytes()));
        }
        if trail.panic {
            headers.push((b"x-router-panic", b"1"));
        }
        for (n, v) in extra.0.iter() {
            let _ = headers.try_push((n, v.as_bytes()));
        }
        self.out.send_error_with(e, &headers).await;
    }

    /// Relays an upstream's failed answer as it came (the last attempt's 404, already in the
    /// client's family), with the `x-router-*` facts.
    pub(super) async fn relay_kept(&mut self, k: &Kept, trail: &Trail<'_>) {
        let out = &mut *self.out;
        out.begin(k.status);
        for (n, v) in &k.headers {
            if !n.eq_ignore_ascii_case(b"content-type") {
                out.header(n, v);
            }
        }
        out.header(
            b"x-router-requested-model",
            self.call.features.model.as_bytes(),
        );
        out.header(
            b"x-router-attempts",
            itoa::Buffer::new().format(trail.attempts).as_bytes(),
        );
        if let Some(c) = trail.last_channel {
            out.header(b"x-router-channel", c.as_bytes());
        }
        if trail.panic {
            out.header(b"x-router-panic", b"1");
        }
        let ct = k
            .headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
            .map_or(&b"application/json"[..], |(_, v)| v.as_slice());
        out.body(ct, &k.body).await
    }
}

/// What happened before a gateway-made answer, for its `x-router-*` headers.
#[derive(Debug, Clone, Copy)]
pub(super) struct Trail<'a> {
    /// Attempts made.
    pub(super) attempts: usize,
    /// The last channel tried.
    pub(super) last_channel: Option<&'a str>,
    /// Time spent waiting on upstreams (the rest of the elapsed time is overhead).
    pub(super) upstream: Duration,
    /// The attempts were panic attempts.
    pub(super) panic: bool,
}

impl Trail<'_> {
    /// Nothing was tried.
    pub(super) const NONE: Trail<'static> = Trail {
        attempts: 0,
        last_channel: None,
        upstream: Duration::ZERO,
        panic: false,
    };
}

/// Headers a gateway-made answer adds (a few, with short values).
#[derive(Debug, Default)]
pub(super) struct Extra(ArrayVec<(&'static [u8], ArrayString<24>), 4>);

impl Extra {
    /// Adds a header (dropped if there is no room or the value is too long).
    pub(super) fn with(mut self, name: &'static [u8], value: impl std::fmt::Display) -> Self {
        let mut v = ArrayString::new();
        if write!(v, "{value}").is_ok() {
            let _ = self.0.try_push((name, v));
        }
        self
    }

    /// Adds `Retry-After` (whole seconds, rounded up), if the wait is known.
    pub(super) fn retry_after(self, wait: Option<Duration>) -> Self {
        match wait {
            Some(d) => self.with(b"retry-after", crate::routing::retry_after_secs(d)),
            None => self,
        }
    }
}

impl Drop for Session<'_, '_> {
    fn drop(&mut self) {
        record(self);
    }
}

/// What a request's attempts yielded, for its usage record.
pub(super) struct Attempted {
    pub(super) usage: Option<Usage>,
    /// `usage` is the gateway's estimate.
    pub(super) estimated: bool,
    pub(super) cost: Option<f64>,
    pub(super) ttft: Option<f32>,
    pub(super) attempts: usize,
    pub(super) overhead: Option<f32>,
    /// The status the record gives, when not the one the client's head carried: a stream
    /// the upstream cut after its 200 went out is an error (502), as its error event says.
    pub(super) status: Option<u16>,
}

impl Attempted {
    pub(super) fn new(
        usage: Option<Usage>,
        cost: Option<f64>,
        ttft: Option<f32>,
        attempts: usize,
    ) -> Self {
        Attempted {
            usage,
            estimated: false,
            cost,
            ttft,
            attempts,
            overhead: None,
            status: None,
        }
    }

    pub(super) const NONE: Attempted = Attempted {
        usage: None,
        estimated: false,
        cost: None,
        ttft: None,
        attempts: 0,
        overhead: None,
        status: None,
    };
}

/// The usage-record names of a channel (and the entry that answered, if one did).
pub(super) fn names(snap: &Snapshot, channel: u32, entry: Option<u32>) -> crate::usage::Names {
    crate::usage::Names::Snapshot {
        channels: snap.channels.clone(),
        catalog: snap.catalog.clone(),
        channel,
        entry,
    }
}

/// Queues the session's usage record (once: `Drop` calls it).
fn record(s: &mut Session<'_, '_>) {
    let (worker, req, features) = (s.worker, s.req, s.call.features);
    let names = std::mem::replace(&mut s.names, crate::usage::Names::None);
    let attempt = std::mem::replace(&mut s.attempt, Attempted::NONE);
    let at = s.at;
    let trace = s.trace;
    let traced = s.spans.take().and_then(|sp| {
        let ctx = trace?;
        Some(Box::new(traced(*sp, ctx, req, s.call)))
    });
    // A token limit pays what the answer really used (the estimate was charged on admission).
    if let Some(u) = attempt.usage {
        let used = u.prompt.saturating_add(u.completion);
        let mut limits = worker.limits.borrow_mut();
        if let Some(c) = req.client
            && c.limits.tpm.is_some()
        {
            limits.settle(c.index, features.prompt_tokens, used, at);
        }
        if let crate::usage::Names::Snapshot {
            channels, channel, ..
        } = &names
            && channels
                .get(*channel as usize)
                .is_some_and(|ch| ch.rate.tpm.is_some())
        {
            limits.settle_channel(*channel, features.prompt_tokens, used, at);
        }
    }
    worker.record_usage(
        crate::usage::Record {
            unix_ms: crate::clock::now_ms(),
            request_id: s.out.request_id,
            endpoint: s.call.endpoint.record_name(s.call.client),
            names,
            requested: features.model.clone(),
            usage: attempt.usage,
            usage_estimated: attempt.estimated,
            estimated_prompt: features.prompt_tokens,
            cost: attempt.cost,
            latency_ms: ms(req.received.elapsed()),
            ttft_ms: attempt.ttft,
            overhead_ms: attempt.overhead,
            trace_id: match trace {
                // The gateway's trace (the client's, or the one it began) names the record.
                Some(t) => hex32(&t.trace_id),
                None => req.header(b"traceparent").and_then(crate::usage::trace_id),
            },
            client: req.client.map(|c| c.name.clone()),
            status: match (attempt.status, s.out.status) {
                (Some(st), _) => st,
                (None, 0) => 499,
                (None, st) => st,
            },
            attempts: attempt.attempts.min(255) as u8,
            stream: features.stream,
            trace: traced,
        },
        at,
    );
}

/// A trace id as the record's 32 lower-case hex digits.
fn hex32(id: &[u8; 16]) -> Option<[u8; 32]> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 32];
    for (i, b) in id.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
    Some(out)
}

/// A sampled request's span data, its instants turned into Unix nanoseconds (read once).
fn traced(
    sp: Spans,
    context: crate::trace::Context,
    req: &Request<'_>,
    call: &Call<'_>,
) -> crate::usage::Traced {
    let now = Instant::now();
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let unix_ns =
        |i: Instant| now_ns.saturating_sub(now.saturating_duration_since(i).as_nanos() as u64);
    crate::usage::Traced {
        context,
        start_ns: unix_ns(req.received),
        end_ns: now_ns,
        operation: match call.endpoint {
            crate::presets::Endpoint::Chat | crate::presets::Endpoint::Responses => "chat",
            crate::presets::Endpoint::Embeddings => "embeddings",
            crate::presets::Endpoint::Completions => "text_completion",
        },
        strategy: sp.strategy,
        max_tokens: call.features.max_tokens,
        temperature: call.features.temperature,
        attempts: sp
            .tried
            .iter()
            .map(|t| crate::usage::AttemptSpan {
                span_id: t.span_id,
                start_ns: unix_ns(t.started),
                end_ns: unix_ns(t.ended),
                channel: t.channel,
                entry: t.entry,
                status: t.status,
                failure: t.failure,
            })
            .collect(),
        channels: Some(sp.channels),
        catalog: Some(sp.catalog),
        content: sp
            .content
            .map(|b| String::from_utf8_lossy(&b).into_owned().into_boxed_str()),
    }
}

pub(super) fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

/// Appends `x-router-cost` (in the configured currency).
pub(super) fn write_cost(out: &mut Responder<'_>, cost: f64) {
    let mut v = ArrayString::<32>::new();
    let _ = write!(v, "{cost:.8}");
    out.header(b"x-router-cost", v.as_bytes());
}

/// Response-header facts about the attempt that answered.
pub(crate) struct Info<'a> {
    pub(crate) channel: &'a Channel,
    /// The entry's price (per 1M tokens).
    pub(crate) price: Option<&'a crate::catalog::EntryPrice>,
    /// The id to stamp on translated answers.
    pub(crate) id: &'a str,
    /// Unix time to stamp on translated answers.
    pub(crate) created: u64,
    /// Configured currency per USD.
    pub(crate) cost_rate: f64,
    pub(crate) model: &'a str,
    pub(crate) requested: &'a str,
    pub(crate) attempts: usize,
    pub(crate) started: Instant,
    pub(crate) strategy: &'a str,
    pub(crate) score: f32,
    /// When the whole request had been received.
    pub(crate) received: Instant,
    /// Time spent waiting on upstreams before this response's head arrived.
    pub(crate) upstream: Duration,
    /// A panic attempt (`x-router-panic: 1`).
    pub(crate) panic: bool,
    /// `server.max_validated_body`: 2xx answers up to this size are parsed before relaying.
    pub(crate) max_validated: usize,
}

impl Info<'_> {
    /// The cost of `usage` at this entry's price, in the configured currency.
    pub(crate) fn cost(&self, usage: &Usage) -> Option<f64> {
        self.price
            .map(|p| crate::pricing::cost(p, usage) * self.cost_rate)
    }

    /// Writes the `x-router-*` headers; `more_upstream` is upstream time after the head (the
    /// body of a whole response) that is not gateway overhead either.
    pub(crate) fn write_headers(
        &self,
        out: &mut crate::server::Responder<'_>,
        more_upstream: Duration,
    ) -> Duration {
        out.header(b"x-router-channel", self.channel.id.as_bytes());
        out.header(b"x-router-provider", self.channel.provider.as_bytes());
        out.header(b"x-router-model", self.model.as_bytes());
        out.header(b"x-router-requested-model", self.requested.as_bytes());
        out.header(b"x-router-strategy", self.strategy.as_bytes());
        let mut v = ArrayString::<24>::new();
        let _ = write!(v, "{:.3}", self.score);
        out.header(b"x-router-score", v.as_bytes());
        out.header(
            b"x-router-attempts",
            itoa::Buffer::new().format(self.attempts).as_bytes(),
        );
        if self.panic {
            out.header(b"x-router-panic", b"1");
        }
        let overhead = self
            .received
            .elapsed()
            .saturating_sub(self.upstream + more_upstream);
        v.clear();
        let _ = write!(v, "{:.3}", overhead.as_secs_f64() * 1000.0);
        out.header(b"x-router-overhead-ms", v.as_bytes());
        overhead
    }
}
