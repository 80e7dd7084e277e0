//! One proxied request's lifecycle: plan the candidates, and for each until one answers: build
//! the upstream request (original body, only `model` rewritten), send it over a pooled
//! connection, classify the answer (DESIGN.md §6), and relay it — whole, or SSE event by event.
//!
//! Invariants:
//! * Failover happens only before the first byte reached the client; a stream that breaks later
//!   ends with an SSE error event and no `[DONE]`.
//! * A failed attempt on a *reused* pooled connection that produced no response byte is retried
//!   once on a fresh connection (the server may have closed it while idle); this does not count
//!   as an attempt.
//! * A connection returns to the pool only after a complete, keep-alive response.
//! * The client going away mid-stream closes the upstream connection at once.
//!
//! Not here: choosing candidates (`routing`), sockets and TLS (`upstream`), HTTP heads
//! (`h1`), response writing (`server::response`).

mod relay;
/// Public (not just crate-visible) so the fuzz targets in `fuzz/` and the corpus replay test can
/// drive the real upstream → client translation; nothing outside the crate needs it otherwise.
pub mod transcode;

use std::fmt::Write as _;
use std::rc::Rc;
use std::time::{Duration, Instant};

use arrayvec::{ArrayString, ArrayVec};

use crate::error::{Error, Kind};
use crate::h1::head::ResponseHead;
use crate::json;
use crate::providers::openai::ingress::{Edit, Features};
use crate::providers::openai::scan::{key_matches, top_level_members};
use crate::providers::{Family, anthropic, gemini};
use crate::routing;
use crate::routing::health::Outcome;
use crate::server::response::ClientGuard;
use crate::server::{Exchange, Request, Responder};
use crate::snapshot::{Channel, Snapshot};
use crate::tokens::Usage;
use crate::upstream::{Conn, ConnectError};
use crate::worker::{SnapshotRef, Worker};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest non-streamed upstream response body relayed.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept from a failed attempt (returned if it was the last one).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// How one attempt failed.
#[derive(Debug)]
enum Failure {
    Connect(ConnectError),
    /// The connection broke before a complete response head (reset, EOF, bad head).
    Broken(String),
    Timeout(&'static str),
    /// An upstream status that moves to the next candidate; its response is kept in case it
    /// was the last.
    Status(Kept),
}

#[derive(Debug)]
struct Kept {
    status: u16,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl Failure {
    fn describe(&self) -> String {
        match self {
            Failure::Connect(e) => e.to_string(),
            Failure::Broken(m) => m.clone(),
            Failure::Timeout(what) => format!("{what} timed out"),
            Failure::Status(k) => format!("HTTP {}", k.status),
        }
    }
}

/// Statuses that move the request to the next candidate (DESIGN.md §6).
fn fails_over(status: u16) -> bool {
    matches!(status, 401 | 402 | 403 | 404 | 429) || status >= 500
}

/// One planned attempt, copied out of the routing arena.
#[derive(Debug, Clone, Copy)]
struct Planned {
    entry: u32,
    half_open: bool,
    score: f32,
}

/// The attempts to make, in order, and the strategy that ordered them.
#[derive(Debug)]
struct Plan {
    attempts: ArrayVec<Planned, 20>,
    strategy: ArrayString<64>,
}

/// Ranks the candidates (synchronously, in the worker's arena) and copies out the attempts.
fn plan(
    worker: &Worker,
    snap: &Snapshot,
    features: &Features,
    options: &crate::strategy::Options,
    strategy: Option<&str>,
    allowed: Option<&[u64]>,
    now: Instant,
) -> Result<Plan, Error> {
    let mut local = worker.routing.borrow_mut();
    let mut arena = worker.arena.borrow_mut();
    arena.reset();
    let ask = routing::Ask {
        model: &features.model,
        needs: features.needs,
        prompt_tokens: features.prompt_tokens,
        max_tokens: features.max_tokens,
        stream: features.stream,
        strategy,
        options,
        allowed,
    };
    let ranking = routing::rank(snap, &mut local, &ask, now, &arena, false)
        .map_err(routing::RouteError::into_error)?;
    if let Some(e) = ranking.unusable(snap, &features.model, now) {
        return Err(e.into_error());
    }
    let mut attempts = ArrayVec::new();
    // Spares beyond max_attempts: the loop skips the other models of a channel that failed
    // as a whole during this request.
    for c in ranking.candidates.iter().take(20) {
        attempts.push(Planned {
            entry: c.entry,
            half_open: c.half_open,
            score: c.score,
        });
    }
    let mut name = ArrayString::new();
    let _ = name.try_push_str(crate::error::truncate(ranking.strategy, 64));
    Ok(Plan {
        attempts,
        strategy: name,
    })
}

/// Router options from the body, overridden by `x-router-*` request headers.
pub fn options_with_headers(
    req: &Request<'_>,
    body: &crate::strategy::Options,
) -> Result<crate::strategy::Options, Error> {
    let mut o = body.clone();
    let text = |name: &[u8]| {
        req.header(name)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
    };
    if let Some(v) = text(b"x-router-prefer-local") {
        o.prefer_local = Some(match v.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" => true,
            "0" | "false" | "no" => false,
            _ => {
                return Err(Error::bad_request(
                    "invalid_router_header",
                    "x-router-prefer-local must be true or false.",
                ));
            }
        });
    }
    if let Some(v) = text(b"x-router-max-cost-per-1k") {
        let x = v
            .parse::<f64>()
            .ok()
            .filter(|x| x.is_finite() && *x >= 0.0)
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_router_header",
                    "x-router-max-cost-per-1k must be a non-negative number (USD per 1K tokens).",
                )
            })?;
        o.max_cost_per_1k = Some(x);
    }
    if let Some(v) = text(b"x-router-exclude-providers") {
        o.exclude_providers = v
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(v) = text(b"x-router-required-capabilities") {
        o.required = crate::expr::Caps::NONE;
        for name in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let cap = crate::expr::Caps::parse(name).ok_or_else(|| {
                Error::bad_request(
                    "invalid_router_header",
                    format!(
                        "x-router-required-capabilities: unknown capability `{}`; use vision, tools or json.",
                        crate::error::truncate(name, 50)
                    ),
                )
            })?;
            o.required = o.required.union(cap);
        }
    }
    Ok(o)
}

/// The strategy named by the `x-router-strategy` header, else the body's `strategy`.
pub fn strategy_of<'a>(req: &'a Request<'_>, features: &'a Features) -> Option<&'a str> {
    req.header(b"x-router-strategy")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or(features.strategy.as_deref())
}

/// Releases a channel's per-worker slot (in-flight count, half-open trial) when an attempt
/// ends, however it ends.
struct Slot<'w> {
    worker: &'w Worker,
    generation: u64,
    channel: u32,
    half_open: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.worker
            .routing
            .borrow_mut()
            .end(self.generation, self.channel, self.half_open);
    }
}

/// The OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/chat/completions`: every family, translated as needed.
    Chat,
    /// `/embeddings`: OpenAI-family channels, passed through.
    Embeddings,
    /// `/completions` (legacy text completions): OpenAI-family channels, passed through.
    Completions,
    /// `/responses`: channels whose provider speaks the Responses API, passed through.
    Responses,
}

impl Endpoint {
    /// The path under the channel's base URL.
    fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
        }
    }

    /// The name usage records give it (with the client's family for chat).
    fn name(self, client: Family) -> &'static str {
        match (self, client) {
            (Endpoint::Chat, Family::OpenAi) => "chat",
            (Endpoint::Chat, Family::Anthropic) => "messages",
            (Endpoint::Chat, Family::Gemini) => "gemini",
            (Endpoint::Embeddings, _) => "embeddings",
            (Endpoint::Completions, _) => "completions",
            (Endpoint::Responses, _) => "responses",
        }
    }

    /// Whether `ch` can serve this endpoint.
    fn served_by(self, ch: &Channel) -> bool {
        match self {
            Endpoint::Chat => true,
            Endpoint::Embeddings | Endpoint::Completions => {
                ch.family == Family::OpenAi && ch.path.is_none()
            }
            Endpoint::Responses => {
                ch.family == Family::OpenAi
                    && ch.path.is_none()
                    && crate::presets::speaks_responses(&ch.kind)
            }
        }
    }
}

/// Proxies a request: `body` is its OpenAI form (the client's own bytes, or what ingress
/// translated them to) and `client` the family the answer goes back in.
#[allow(clippy::too_many_arguments)]
pub async fn forward(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    body: &[u8],
    features: &Features,
    client: Family,
    endpoint: Endpoint,
    ex: &mut Exchange<'_>,
) {
    let Exchange { out, input } = ex;
    if let Some(refused) = admission(worker, snap, req, features) {
        match refused {
            Refused::Budget(why) => {
                let e = Error::new(429, Kind::RateLimit, "budget_exhausted", why.to_string());
                let secs = crate::clock::until_utc_midnight(crate::clock::unix_secs()).as_secs();
                let mut b = itoa::Buffer::new();
                out.send_error_with(&e, &[(b"retry-after", b.format(secs).as_bytes())])
                    .await;
            }
            Refused::RateLimited(key, d) => {
                rate_limited(out, &format!("key `{key}`"), &d).await;
            }
        }
        let names = crate::usage::Names::None;
        return record(
            worker,
            req,
            features,
            endpoint,
            client,
            out,
            names,
            Attempted::NONE,
            req.received,
        );
    }
    let now = Instant::now();
    let planned = options_with_headers(req, &features.options).and_then(|o| {
        plan(
            worker,
            snap,
            features,
            &o,
            strategy_of(req, features),
            req.allowed(),
            now,
        )
    });
    let plan = match planned {
        Ok(p) => p,
        Err(e) => {
            refund(worker, req, features);
            out.send_error(&e).await;
            let names = crate::usage::Names::None;
            return record(
                worker,
                req,
                features,
                endpoint,
                client,
                out,
                names,
                Attempted::NONE,
                now,
            );
        }
    };
    let generation = snap.catalog.generation;
    let mut guard = ClientGuard::new(input);
    let mut outgoing = Vec::with_capacity(body.len() + 1024);
    // The parsed request, for upstreams of another family (parsed once, on first need).
    let mut parsed: Option<simd_json::OwnedValue> = None;
    // Translated answers' `created` stamp: the tick's clock is precise enough.
    let created = worker.unix_secs();
    let mut failures: Vec<(usize, Failure)> = Vec::new();
    // Channels that failed as a whole in this request: their other models are skipped.
    let mut failed_channels: ArrayVec<u32, 20> = ArrayVec::new();
    // Time spent waiting on upstreams so far (the rest is gateway overhead).
    let mut upstream = Duration::ZERO;
    let mut made = 0;
    // The soonest a channel skipped for its own rate limit has room again.
    let mut channel_limited: Option<(crate::limits::Denied, u32)> = None;
    for p in plan.attempts.iter() {
        if made >= snap.routing.max_attempts {
            break;
        }
        let entry = &snap.catalog.entries[p.entry as usize];
        if failed_channels.contains(&entry.channel)
            || !endpoint.served_by(&snap.channels[entry.channel as usize])
        {
            continue;
        }
        if snap.channels[entry.channel as usize].rate.any() {
            let admitted = worker.limits.borrow_mut().admit_channel(
                entry.channel,
                features.prompt_tokens,
                now,
            );
            if let Err(d) = admitted {
                if channel_limited.is_none_or(|(s, _)| d.retry_after < s.retry_after) {
                    channel_limited = Some((d, entry.channel));
                }
                continue;
            }
        }
        made += 1;
        let ch = &snap.channels[entry.channel as usize];
        let injected = match build_request(
            &mut outgoing,
            ch,
            req,
            body,
            &mut parsed,
            features,
            endpoint,
            &entry.model,
            out.request_id.as_bytes(),
        ) {
            Ok(i) => i,
            Err(e) => {
                guard.finish().await;
                if made == 1 {
                    refund(worker, req, features);
                }
                out.send_error(&e).await;
                let names = names(snap, entry.channel, None);
                let attempt = Attempted::new(None, None, None, made - 1);
                return record(
                    worker, req, features, endpoint, client, out, names, attempt, now,
                );
            }
        };
        let started = Instant::now();
        worker
            .routing
            .borrow_mut()
            .begin(generation, entry.channel, p.half_open, started);
        let _slot = Slot {
            worker,
            generation,
            channel: entry.channel,
            half_open: p.half_open,
        };
        let Some(result) = guard
            .run(std::pin::pin!(attempt_once(
                worker,
                ch,
                &mut outgoing,
                started
            )))
            .await
        else {
            tracing::debug!(channel = %ch.id, "client left while waiting for the upstream");
            let names = names(snap, entry.channel, Some(p.entry));
            let attempt = Attempted::new(None, None, None, made);
            record(
                worker, req, features, endpoint, client, out, names, attempt, started,
            );
            return guard.finish().await;
        };
        let to_head = started.elapsed();
        let failure = match result {
            Err(f) => {
                worker.report(snap, p.entry, Some(Outcome::Transient), started, None, None);
                f
            }
            Ok((conn, head)) if fails_over(head.status) => {
                let retry_after = head
                    .header(&conn.buf, b"retry-after")
                    .and_then(|v| crate::h1::parse_retry_after(v, crate::clock::unix_secs()));
                let Some(mut kept) = guard
                    .run(std::pin::pin!(read_kept(worker, ch, conn, &head)))
                    .await
                else {
                    let names = names(snap, entry.channel, Some(p.entry));
                    let attempt = Attempted::new(None, None, None, made);
                    record(
                        worker, req, features, endpoint, client, out, names, attempt, started,
                    );
                    return guard.finish().await;
                };
                let mut reshaped = Vec::new();
                transcode::error_body(ch.family, client, kept.status, &kept.body, &mut reshaped);
                if !reshaped.is_empty() {
                    kept.body = reshaped;
                    kept.headers
                        .retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type"));
                }
                let outcome = match head.status {
                    // Only a 404 that names the model takes that model out; any other 404
                    // (a wrong chat_path, say) is the channel failing.
                    404 if !mentions(&kept.body, &entry.model) => Some(Outcome::Transient),
                    s => Outcome::of_status(s, retry_after),
                };
                worker.report(snap, p.entry, outcome, started, None, None);
                Failure::Status(kept)
            }
            Ok((conn, head)) => {
                let exhausted = quota_exhausted(&head, &conn.buf);
                let rid = out.request_id;
                let id = rid.as_str();
                let info = Info {
                    channel: ch,
                    price: entry.price.as_ref(),
                    id,
                    created,
                    cost_rate: snap.cost_rate,
                    model: &entry.model,
                    requested: &features.model,
                    attempts: made,
                    started,
                    strategy: &plan.strategy,
                    score: p.score,
                    received: req.received,
                    upstream: upstream + to_head,
                };
                let status = head.status;
                // A usage chunk the client did not ask for is the gateway's: counted, not shown.
                let strip_usage = client == Family::OpenAi
                    && features.stream
                    && features.usage_asked != Some(true)
                    && (ch.family != Family::OpenAi || injected);
                let mut tc = transcode::Transcode::new(
                    ch.family,
                    client,
                    strip_usage,
                    &entry.model,
                    id,
                    created,
                );
                tc.strip_think = features.strip_think || ch.strip_think;
                let outcome =
                    relay::respond(worker, ch, conn, head, &info, out, &mut guard, &mut tc).await;
                let latency = Some(ms(started.elapsed()));
                let ttft = Some(ms(to_head));
                if !matches!(outcome, relay::Outcome::FailedUnsent(_)) {
                    // A 2xx answer always has a usage: its own, or the gateway's estimate
                    // (an upstream that sends none cannot make requests free).
                    let (usage, estimated) = if (200..300).contains(&status) {
                        let (u, estimated) = tc.usage_or_estimate(features.prompt_tokens);
                        (Some(u), estimated)
                    } else {
                        (tc.usage(), false)
                    };
                    let cost = usage.and_then(|u| info.cost(&u));
                    let names = names(snap, entry.channel, Some(p.entry));
                    let mut attempt = Attempted::new(usage, cost, ttft, made);
                    attempt.estimated = estimated;
                    attempt.overhead = tc.overhead.map(ms);
                    record(
                        worker, req, features, endpoint, client, out, names, attempt, started,
                    );
                }
                match outcome {
                    relay::Outcome::Complete => {
                        // An answer that says the provider's quota is spent takes the channel
                        // out until the reset it names, as a 429 with Retry-After would.
                        let health = match exhausted {
                            Some(reset) => Some(Outcome::RateLimited(Some(reset))),
                            None => Outcome::of_status(status, None),
                        };
                        worker.report(snap, p.entry, health, started, latency, ttft);
                        return guard.finish().await;
                    }
                    relay::Outcome::Broken => {
                        let transient = Some(Outcome::Transient);
                        worker.report(snap, p.entry, transient, started, latency, None);
                        return guard.finish().await;
                    }
                    relay::Outcome::ClientGone => {
                        worker.report(snap, p.entry, None, started, None, ttft);
                        return guard.finish().await;
                    }
                    relay::Outcome::FailedUnsent(why) => {
                        // Nothing reached the client yet: the next candidate may still answer.
                        let transient = Some(Outcome::Transient);
                        worker.report(snap, p.entry, transient, started, None, None);
                        match why {
                            relay::Unsent::Timeout => Failure::Timeout("response body"),
                            relay::Unsent::Broken(m) => Failure::Broken(m),
                        }
                    }
                }
            }
        };
        tracing::debug!(channel = %ch.id, failure = %failure.describe(), "attempt failed");
        upstream += started.elapsed();
        if !matches!(&failure, Failure::Status(k) if k.status == 404) {
            let _ = failed_channels.try_push(entry.channel);
        }
        failures.push((entry.channel as usize, failure));
    }
    guard.finish().await;
    let names = match failures.last() {
        Some((c, _)) => names(snap, *c as u32, None),
        None => crate::usage::Names::None,
    };
    if made == 0 {
        refund(worker, req, features);
    }
    if let (0, Some((d, c))) = (made, channel_limited) {
        // Every candidate is at its provider's rate limit on this worker: the client may
        // retry when the first has room.
        rate_limited(
            out,
            &format!("channel {}", snap.channels[c as usize].id),
            &d,
        )
        .await;
    } else if made == 0 && endpoint != Endpoint::Chat {
        // Every candidate was skipped: none of their providers serves this endpoint.
        let e = Error::new(
            404,
            Kind::InvalidRequest,
            "endpoint_not_served",
            format!(
                "No channel serving `{}` offers {}: it needs an OpenAI-compatible provider{}.",
                crate::error::truncate(&features.model, 200),
                endpoint.path(),
                if endpoint == Endpoint::Responses {
                    " that speaks the Responses API (openai, openrouter, xai)"
                } else {
                    ""
                }
            ),
        );
        out.send_error(&e).await;
    } else {
        give_up(snap, &features.model, failures, out).await;
    }
    let attempt = Attempted::new(None, None, None, made);
    record(
        worker, req, features, endpoint, client, out, names, attempt, now,
    );
}

/// What a request's attempts yielded, for its usage record.
struct Attempted {
    usage: Option<Usage>,
    /// `usage` is the gateway's estimate.
    estimated: bool,
    cost: Option<f64>,
    ttft: Option<f32>,
    attempts: usize,
    overhead: Option<f32>,
}

impl Attempted {
    fn new(usage: Option<Usage>, cost: Option<f64>, ttft: Option<f32>, attempts: usize) -> Self {
        Attempted {
            usage,
            estimated: false,
            cost,
            ttft,
            attempts,
            overhead: None,
        }
    }

    const NONE: Attempted = Attempted {
        usage: None,
        estimated: false,
        cost: None,
        ttft: None,
        attempts: 0,
        overhead: None,
    };
}

/// When an upstream answer says its rate limit is spent (`x-ratelimit-remaining-requests` or
/// `-tokens` is 0), how long until it resets (`x-ratelimit-reset-*`, Go-style durations such as
/// `6m0s`, `1.5s`, `20ms`; one second when absent or unreadable).
fn quota_exhausted(head: &crate::h1::head::ResponseHead, buf: &[u8]) -> Option<Duration> {
    let spent = |kind: &str| {
        head.header(buf, format!("x-ratelimit-remaining-{kind}").as_bytes())
            .is_some_and(|v| v.trim_ascii() == b"0")
            .then(|| {
                head.header(buf, format!("x-ratelimit-reset-{kind}").as_bytes())
                    .and_then(go_duration)
                    .unwrap_or(Duration::from_secs(1))
            })
    };
    match (spent("requests"), spent("tokens")) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

/// A Go-style duration (`1h2m3.5s`, `20ms`, `450us`) or bare seconds.
fn go_duration(v: &[u8]) -> Option<Duration> {
    let s = std::str::from_utf8(v).ok()?.trim();
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(86_400.0)));
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .filter(|&n| n > 0)?;
        let value: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total.min(86_400.0)))
}

/// Why a request is refused before routing.
enum Refused<'s> {
    /// A daily budget is spent: the gateway's, or the client key's.
    Budget(&'s str),
    /// The client key is over one of its rate limits.
    RateLimited(&'s str, crate::limits::Denied),
}

/// The budgets and the key's rate limits, checked before any routing work (an admitted
/// request has taken its tokens from the key's buckets).
fn admission<'s>(
    worker: &Worker,
    snap: &'s Snapshot,
    req: &Request<'s>,
    features: &Features,
) -> Option<Refused<'s>> {
    let spent = snap
        .quota
        .global
        .as_deref()
        .or_else(|| req.client.and_then(|c| snap.quota.client_spent(c.index)));
    if let Some(why) = spent {
        return Some(Refused::Budget(why));
    }
    let c = req.client?;
    let admitted = worker
        .limits
        .borrow_mut()
        .admit(c.index, features.prompt_tokens, req.received);
    admitted.err().map(|d| Refused::RateLimited(&c.name, d))
}

/// A request the gateway refused after admitting it (nothing reached an upstream) gives back
/// what it took from its key's `rpm` and `tpm` (see [`crate::limits::Limiter::refund`]).
fn refund(worker: &Worker, req: &Request<'_>, features: &Features) {
    if let Some(c) = req.client
        && c.limits.any()
    {
        worker
            .limits
            .borrow_mut()
            .refund(c.index, features.prompt_tokens, req.received);
    }
}

/// The 429 for a client key over one of its limits, with `Retry-After` and the
/// `x-ratelimit-*` headers OpenAI clients read.
async fn rate_limited(out: &mut Responder<'_>, what_for: &str, d: &crate::limits::Denied) {
    use crate::limits::Which;
    let (what, kind) = match d.which {
        Which::Requests => ("requests", "requests"),
        Which::Tokens => ("tokens", "tokens"),
    };
    let e = Error::new(
        429,
        Kind::RateLimit,
        "rate_limit_exceeded",
        format!(
            "Rate limit reached for {}: {} {what} per {}. Retry after {:.1} s.",
            crate::error::truncate(what_for, 80),
            d.limit,
            d.per,
            d.retry_after.as_secs_f64()
        ),
    );
    let secs = d.retry_after.as_secs() + u64::from(d.retry_after.subsec_nanos() > 0);
    let mut retry = itoa::Buffer::new();
    let mut limit = itoa::Buffer::new();
    let reset = format!("{:.3}s", d.retry_after.as_secs_f64());
    let names: [&[u8]; 3] = match kind {
        "requests" => [
            b"x-ratelimit-limit-requests",
            b"x-ratelimit-remaining-requests",
            b"x-ratelimit-reset-requests",
        ],
        _ => [
            b"x-ratelimit-limit-tokens",
            b"x-ratelimit-remaining-tokens",
            b"x-ratelimit-reset-tokens",
        ],
    };
    out.send_error_with(
        &e,
        &[
            (b"retry-after", retry.format(secs.max(1)).as_bytes()),
            (names[0], limit.format(d.limit).as_bytes()),
            (names[1], b"0"),
            (names[2], reset.as_bytes()),
        ],
    )
    .await;
}

/// The usage-record names of a channel (and the entry that answered, if one did).
fn names(snap: &Snapshot, channel: u32, entry: Option<u32>) -> crate::usage::Names {
    crate::usage::Names::Snapshot {
        channels: snap.channels.clone(),
        catalog: snap.catalog.clone(),
        channel,
        entry,
    }
}

/// Queues the request's usage record; every way out of [`forward`] leaves one (a client that
/// left before anything was sent is recorded with status 499, as nginx logs it).
#[allow(clippy::too_many_arguments)]
fn record(
    worker: &Worker,
    req: &Request<'_>,
    features: &Features,
    endpoint: Endpoint,
    client: Family,
    out: &Responder<'_>,
    names: crate::usage::Names,
    attempt: Attempted,
    at: Instant,
) {
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
            request_id: out.request_id,
            endpoint: endpoint.name(client),
            names,
            requested: features.model.clone(),
            usage: attempt.usage,
            usage_estimated: attempt.estimated,
            estimated_prompt: features.prompt_tokens,
            cost: attempt.cost,
            latency_ms: ms(req.received.elapsed()),
            ttft_ms: attempt.ttft,
            overhead_ms: attempt.overhead,
            trace_id: req.header(b"traceparent").and_then(crate::usage::trace_id),
            client: req.client.map(|c| c.name.clone()),
            status: if out.status == 0 { 499 } else { out.status },
            attempts: attempt.attempts.min(255) as u8,
            stream: features.stream,
        },
        at,
    );
}

/// True when an upstream error body names `model` (so a 404 is about that model).
fn mentions(body: &[u8], model: &str) -> bool {
    !model.is_empty() && memchr::memmem::find(body, model.as_bytes()).is_some()
}

fn ms(d: Duration) -> f32 {
    d.as_secs_f32() * 1000.0
}

/// Appends `x-router-cost` (in the configured currency).
fn write_cost(out: &mut Responder<'_>, cost: f64) {
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

/// Builds the upstream request into `out`: the channel's head, forwarded client headers, and
/// the body in the channel's family. OpenAI-family bodies are the client's bytes with targeted
/// edits (model, router fields, and `stream_options` when the gateway wants the usage); other
/// families get a translation of the parsed request. Returns whether `stream_options` was
/// added; a request the channel's family cannot express is the client's 400.
#[allow(clippy::too_many_arguments)]
fn build_request(
    out: &mut Vec<u8>,
    ch: &Channel,
    req: &Request<'_>,
    body: &[u8],
    parsed: &mut Option<simd_json::OwnedValue>,
    f: &Features,
    endpoint: Endpoint,
    model: &str,
    request_id: &[u8],
) -> Result<bool, Error> {
    out.clear();
    let mut translated = Vec::new();
    // Usage is never optional: every stream that can carry it asks for it, whatever the
    // client sent (`false`, `{}`, `null`, duplicates); the client's other `stream_options`
    // members are kept inside the one the gateway writes.
    let inject = ch.family == Family::OpenAi
        && matches!(endpoint, Endpoint::Chat | Endpoint::Completions)
        && f.stream
        && ch.stream_usage;
    if ch.family != Family::OpenAi {
        if parsed.is_none() {
            let mut copy = body.to_vec();
            *parsed = Some(simd_json::to_owned_value(&mut copy).map_err(|e| {
                Error::bad_request(
                    "invalid_json",
                    format!("The request body is not valid JSON ({e})."),
                )
            })?);
        }
        if let Some(v) = parsed.as_ref() {
            match ch.family {
                Family::Anthropic => anthropic::encode_request(v, model, &mut translated)?,
                Family::Gemini => gemini::encode_request(v, &mut translated)?,
                Family::OpenAi => {}
            }
        }
    }
    match &ch.path {
        _ if endpoint != Endpoint::Chat => {
            out.extend_from_slice(b"POST ");
            out.extend_from_slice(ch.base_path.as_bytes());
            out.extend_from_slice(endpoint.path().as_bytes());
            out.extend_from_slice(b" HTTP/1.1\r\n");
            out.extend_from_slice(&ch.request_head[ch.credentials_at..]);
        }
        Some(t) => {
            t.write_line(out, model, f.stream);
            out.extend_from_slice(&ch.request_head);
        }
        None => out.extend_from_slice(&ch.request_head),
    }
    out.extend_from_slice(
        b"Content-Type: application/json\r\nAccept-Encoding: identity\r\nx-request-id: ",
    );
    out.extend_from_slice(request_id);
    out.extend_from_slice(b"\r\n");
    let named_by_connection = |name: &[u8]| {
        req.head.headers.iter().any(|h| {
            req.buf[h.name.clone()].eq_ignore_ascii_case(b"connection")
                && crate::h1::has_token(&req.buf[h.value.clone()], name)
        })
    };
    for h in &req.head.headers {
        let name = &req.buf[h.name.clone()];
        if !crate::h1::forwarding::forward_request(name, &ch.forward_headers)
            || named_by_connection(name)
            || ch
                .managed_headers
                .iter()
                .any(|m| m.as_bytes().eq_ignore_ascii_case(name))
        {
            continue;
        }
        crate::h1::write_header(out, name, &req.buf[h.value.clone()]);
    }
    if ch.family != Family::OpenAi {
        let brace = object_start(&translated).filter(|_| !ch.extra_body.is_empty());
        let extra = if brace.is_some() {
            ch.extra_body.len()
        } else {
            0
        };
        out.extend_from_slice(b"Content-Length: ");
        out.extend_from_slice(
            itoa::Buffer::new()
                .format(translated.len() + extra)
                .as_bytes(),
        );
        out.extend_from_slice(b"\r\n\r\n");
        match brace {
            Some(b) => {
                out.extend_from_slice(&translated[..=b]);
                out.extend_from_slice(&ch.extra_body);
                out.extend_from_slice(&translated[b + 1..]);
            }
            None => out.extend_from_slice(&translated),
        }
        return Ok(false);
    }
    let mut quoted = Vec::with_capacity(model.len() + 2);
    json::write_str(&mut quoted, model);
    let usage_member = if inject {
        stream_usage_member(body, f.stream_options.clone())
    } else {
        Vec::new()
    };
    // The client's `stream_options` stay verbatim unless the gateway writes its own.
    let dropped = |e: &Edit| match e {
        Edit::StreamOptions(_) => inject,
        Edit::Model(_) | Edit::Remove(_) => true,
    };
    let mut len = body.len();
    for e in f.edits.iter().filter(|e| dropped(e)) {
        len -= e.range().len();
        if let Edit::Model(_) = e {
            len += quoted.len();
        }
    }
    // A channel's extra members are chat parameters: other endpoints reject unknown fields.
    let extra: &[u8] = if endpoint == Endpoint::Chat {
        &ch.extra_body
    } else {
        b""
    };
    // The body is a JSON object with members (extract checked): added members go right after
    // its `{`, each with its comma, so the client's own members (later) win.
    let prefix_len = extra.len() + usage_member.len();
    let brace = object_start(body).filter(|_| prefix_len > 0);
    if brace.is_some() {
        len += prefix_len;
    }
    out.extend_from_slice(b"Content-Length: ");
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    let mut at = 0;
    if let Some(b) = brace {
        out.extend_from_slice(&body[..=b]);
        out.extend_from_slice(extra);
        out.extend_from_slice(&usage_member);
        at = b + 1;
    }
    for e in f.edits.iter().filter(|e| dropped(e)) {
        let r = e.range();
        out.extend_from_slice(&body[at..r.start]);
        if let Edit::Model(_) = e {
            out.extend_from_slice(&quoted);
        }
        at = r.end;
    }
    out.extend_from_slice(&body[at..]);
    Ok(inject && brace.is_some())
}

/// The `"stream_options":{"include_usage":true,…},` member the gateway writes at the start of a
/// streamed OpenAI-family body, carrying the other members of the client's own object
/// (`stream_options` holds that object's range in `body`).
fn stream_usage_member(body: &[u8], client: Option<std::ops::Range<usize>>) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(b"\"stream_options\":{\"include_usage\":true");
    if let Some(r) = client {
        let value = &body[r];
        for member in top_level_members(value) {
            if !key_matches(&value[member.key.clone()], b"include_usage") {
                m.push(b',');
                m.extend_from_slice(&value[member.start..member.value.end]);
            }
        }
    }
    m.extend_from_slice(b"},");
    m
}

/// The position of the `{` opening a JSON object that has at least one member (so members
/// with trailing commas can follow it).
fn object_start(body: &[u8]) -> Option<usize> {
    let b = body.iter().position(|c| !c.is_ascii_whitespace())?;
    if body[b] != b'{' {
        return None;
    }
    let next = body[b + 1..].iter().find(|c| !c.is_ascii_whitespace())?;
    (*next != b'}').then_some(b)
}

/// Sends the request and reads the response head, retrying once on a fresh connection when a
/// reused one turns out dead.
async fn attempt_once(
    worker: &Worker,
    ch: &Channel,
    outgoing: &mut Vec<u8>,
    started: Instant,
) -> Result<(Conn, ResponseHead), Failure> {
    let ep = &ch.endpoint;
    let t = ch.timeouts;
    let mut conn = match worker.pool.take_idle(ep, started) {
        Some(c) => c,
        None => worker
            .pool
            .connect(ep, t.connect)
            .await
            .map_err(Failure::Connect)?,
    };
    let mut retried = false;
    loop {
        let budget = t.first_byte.min(t.total.saturating_sub(started.elapsed()));
        let data = std::mem::take(outgoing);
        let r = monoio::time::timeout(budget, send_and_read_head(&mut conn, data)).await;
        let stale = match r {
            Ok((Ok(head), data)) => {
                *outgoing = data;
                // A 408 on a reused connection is the server timing out the idle connection,
                // not an answer to this request.
                if head.status == 408 && conn.reused && !retried {
                    true
                } else {
                    return Ok((conn, head));
                }
            }
            Ok((Err(e), data)) => {
                *outgoing = data;
                if conn.reused && !retried && conn.buf.is_empty() {
                    true
                } else {
                    return Err(Failure::Broken(e));
                }
            }
            Err(_) => {
                // The request buffer was inside the cancelled future; a timeout moves on to
                // another channel, whose request is built afresh.
                *outgoing = Vec::new();
                return Err(Failure::Timeout("first byte"));
            }
        };
        debug_assert!(stale);
        // A pooled connection the server had closed or timed out: one fresh retry, which does
        // not count as an attempt.
        retried = true;
        conn = worker
            .pool
            .connect(ep, t.connect)
            .await
            .map_err(Failure::Connect)?;
    }
}

async fn send_and_read_head(
    conn: &mut Conn,
    data: Vec<u8>,
) -> (Result<ResponseHead, String>, Vec<u8>) {
    let (w, data) = conn.write_all(data).await;
    if let Err(e) = w {
        return (Err(format!("write failed: {e}")), data);
    }
    loop {
        match ResponseHead::parse(&conn.buf, MAX_RESPONSE_HEAD, false) {
            Ok(Some(h)) if h.status == 101 => {
                return (Err("unexpected protocol switch (101)".to_string()), data);
            }
            Ok(Some(h)) if (100..200).contains(&h.status) => {
                // Interim response (e.g. 100 Continue): skip it.
                conn.buf.drain(..h.len);
                continue;
            }
            Ok(Some(h)) => return (Ok(h), data),
            Ok(None) => {}
            Err(e) => return (Err(format!("bad response head: {e:?}")), data),
        }
        match conn.read_more().await {
            Ok(0) => {
                return (Err("connection closed before a response".to_string()), data);
            }
            Ok(_) => {}
            Err(e) => return (Err(format!("read failed: {e}")), data),
        }
    }
}

/// Reads a failed attempt's body (bounded) so it can be returned if no later attempt answers;
/// pools the connection when it was read cleanly.
async fn read_kept(worker: &Worker, ch: &Channel, mut conn: Conn, head: &ResponseHead) -> Kept {
    let mut headers: Vec<(Vec<u8>, Vec<u8>)> = relay::forwarded(&conn.buf, head)
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect();
    if let Some(ct) = head.header(&conn.buf, b"content-type") {
        headers.push((b"content-type".to_vec(), ct.to_vec()));
    }
    let status = head.status;
    let mut body = Vec::new();
    let deadline = Instant::now() + ch.timeouts.idle.min(Duration::from_secs(10));
    let exact =
        crate::upstream::body::read_body(&mut conn, head, &mut body, MAX_ERROR_BODY, deadline)
            .await;
    if matches!(exact, Ok(true)) && head.keep_alive {
        worker.pool.put(&ch.endpoint, conn, Instant::now());
    }
    Kept {
        status,
        headers,
        body,
    }
}

/// Every attempt failed: the last upstream 4xx as-is, else 502 (504 after a timeout).
async fn give_up(
    snap: &Snapshot,
    model: &str,
    failures: Vec<(usize, Failure)>,
    out: &mut Responder<'_>,
) {
    let summary: Vec<String> = failures
        .iter()
        .map(|(c, f)| format!("{}: {}", snap.channels[*c].id, f.describe()))
        .collect();
    tracing::warn!(model, attempts = failures.len(), failures = %summary.join("; "), "all attempts failed");
    let Some((_, last)) = failures.into_iter().last() else {
        let e = Error::new(502, Kind::Server, "upstream_error", "No attempt was made.");
        return out.send_error(&e).await;
    };
    match last {
        // A rate limit or an unknown model is the client's business: relayed as it came.
        Failure::Status(k) if matches!(k.status, 404 | 429) => {
            out.begin(k.status);
            for (n, v) in &k.headers {
                if !n.eq_ignore_ascii_case(b"content-type") {
                    out.header(n, v);
                }
            }
            let ct = k
                .headers
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(b"content-type"))
                .map_or(&b"application/json"[..], |(_, v)| v.as_slice());
            out.body(ct, &k.body).await
        }
        last => {
            // 401/402/403 describe the *gateway's* key, not the client's: relaying them would
            // tell the client its own credentials are wrong and leak the provider's text about
            // ours. They become a 502 naming the channel.
            let (status, code, hint) = match &last {
                Failure::Timeout(_) | Failure::Connect(ConnectError::Timeout) => {
                    (504, "upstream_timeout", "")
                }
                Failure::Status(k) if matches!(k.status, 401 | 403) => (
                    502,
                    "upstream_auth_failed",
                    " The provider rejected the channel's API key; check its api_key.",
                ),
                Failure::Status(k) if k.status == 402 => (
                    502,
                    "upstream_quota_exhausted",
                    " The provider reports the channel's credit or quota is exhausted.",
                ),
                _ => (502, "upstream_error", ""),
            };
            let e = Error::new(
                status,
                Kind::Server,
                code,
                format!(
                    "Every upstream attempt for `{}` failed ({}).{hint}",
                    crate::error::truncate(model, 200),
                    summary.join("; ")
                ),
            );
            out.send_error(&e).await
        }
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;

    #[test]
    fn go_durations_as_providers_send_them() {
        let d = |s: &str| go_duration(s.as_bytes());
        assert_eq!(d("1s"), Some(Duration::from_secs(1)));
        assert_eq!(d("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(d("1m30.5s"), Some(Duration::from_secs_f64(90.5)));
        assert_eq!(d("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(d("2"), Some(Duration::from_secs(2)));
        assert_eq!(d("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(d("soon"), None);
        assert_eq!(d("5x"), None);
        assert_eq!(d("-1"), None);
    }

    #[test]
    fn a_spent_quota_names_its_reset() {
        let head = |h: &str| {
            let raw = format!("HTTP/1.1 200 OK\r\ncontent-length: 0\r\n{h}\r\n");
            let parsed = crate::h1::head::ResponseHead::parse(raw.as_bytes(), 8192, false)
                .expect("valid")
                .expect("complete");
            quota_exhausted(&parsed, raw.as_bytes())
        };
        assert_eq!(head("x-ratelimit-remaining-requests: 5\r\n"), None);
        assert_eq!(
            head("x-ratelimit-remaining-requests: 0\r\nx-ratelimit-reset-requests: 6m0s\r\n"),
            Some(Duration::from_secs(360))
        );
        assert_eq!(
            head("x-ratelimit-remaining-tokens: 0\r\n"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(head(""), None);
    }
}
