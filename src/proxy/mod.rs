//! One proxied request's lifecycle, in phases: **admit** (budgets and the key's rate limits),
//! **plan** (rank the candidates), then for each candidate until one answers **attempt**
//! (build the upstream request — the original body, only `model` rewritten, or a
//! translation — send it over a pooled connection, read the head) and **relay** (whole, or SSE
//! event by event); **finish** is the session's usage record, written when it drops.
//!
//! Invariants:
//! * Failover happens only before the first byte reached the client; a stream that breaks later
//!   ends with an SSE error event and no `[DONE]`.
//! * A failed attempt on a *reused* pooled connection that produced no response byte is retried
//!   once on a fresh connection (the server may have closed it while idle); this does not count
//!   as an attempt.
//! * A connection returns to the pool only after a complete, keep-alive response.
//! * The client going away mid-stream closes the upstream connection at once.
//! * What an attempt's outcome does to health is `live::health::verdict`, and nothing else.
//!
//! Not here: choosing candidates (`routing`), sockets and TLS (`upstream`), HTTP heads
//! (`h1`), response writing (`server::response`).

mod admission;
mod attempt;
mod failure;
mod plan;
mod relay;
mod session;
/// Public (not just crate-visible) so the fuzz targets in `fuzz/` and the corpus replay test can
/// drive the real upstream → client translation; nothing outside the crate needs it otherwise.
pub mod transcode;

use std::rc::Rc;
use std::time::{Duration, Instant};

use arrayvec::ArrayVec;

use crate::channel::Channel;
use crate::error::{Error, Kind};
use crate::live::health::{Event, verdict};
use crate::providers::Family;
use crate::providers::openai::ingress::Features;
use crate::server::response::ClientGuard;
use crate::server::{Exchange, Request};
use crate::snapshot::Snapshot;
use crate::worker::{Observed, SnapshotRef, Worker};
use failure::Failure;
use plan::{Plan, Planned, Slot};
use session::{Attempted, Info, Session, ms, names};

pub(crate) use plan::{options_with_headers, strategy_of};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest non-streamed upstream response body relayed.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept from a failed attempt (returned if it was the last one).
const MAX_ERROR_BODY: usize = 64 * 1024;

/// The OpenAI endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Endpoint {
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

/// What to proxy: the request's OpenAI form, what was read from it, and the endpoint and
/// family its answer goes back in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Call<'a> {
    /// The OpenAI form of the body (the client's own bytes, or what ingress translated them
    /// to).
    pub body: &'a [u8],
    /// What routing and proxying need from it.
    pub features: &'a Features,
    /// The family the answer goes back in.
    pub client: Family,
    /// The endpoint.
    pub endpoint: Endpoint,
}

/// Proxies one request and answers it through `ex`.
pub(crate) async fn forward(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    call: Call<'_>,
    ex: &mut Exchange<'_>,
) {
    let Exchange { out, input } = ex;
    let mut s = Session::new(worker, req, &call, out);
    // Admit.
    if let Some(refused) = admission::admission(worker, snap, req, call.features) {
        return admission::refuse(s.out, refused).await;
    }
    // Plan.
    let now = Instant::now();
    s.at = now;
    let plan = match plan::plan(worker, snap, req, call.features, now) {
        Ok(p) => p,
        Err(e) => {
            admission::refund(worker, req, call.features);
            return s.out.send_error(&e).await;
        }
    };
    // Attempt and relay, candidate after candidate.
    let mut guard = ClientGuard::new(input);
    let mut attempts = Attempts::new(&call, worker);
    for p in plan.attempts.iter() {
        if attempts.made >= snap.routing.max_attempts {
            break;
        }
        match attempt(&mut s, &mut attempts, &mut guard, snap, &plan, p, now).await {
            Step::Skipped => {}
            Step::Done => return guard.finish().await,
            Step::Failed(channel, failure) => {
                tracing::debug!(
                    channel = %snap.channels[channel as usize].id,
                    kind = failure.label(),
                    failure = %failure.describe(),
                    "attempt failed"
                );
                attempts.failures.push((channel as usize, failure));
            }
        }
    }
    guard.finish().await;
    // Every candidate failed or was skipped.
    s.names = match attempts.failures.last() {
        Some((c, _)) => names(snap, *c as u32, None),
        None => crate::usage::Names::None,
    };
    s.attempt = Attempted::new(None, None, None, attempts.made);
    let made = attempts.made;
    if made == 0 {
        admission::refund(worker, req, call.features);
    }
    if let (0, Some((d, c))) = (made, attempts.channel_limited) {
        // Every candidate is at its provider's rate limit on this worker: the client may
        // retry when the first has room.
        let what = format!("channel {}", snap.channels[c as usize].id);
        admission::rate_limited(s.out, &what, &d).await;
    } else if made == 0 && call.endpoint != Endpoint::Chat {
        // Every candidate was skipped: none of their providers serves this endpoint.
        let e = Error::new(
            404,
            Kind::InvalidRequest,
            "endpoint_not_served",
            format!(
                "No channel serving `{}` offers {}: it needs an OpenAI-compatible provider{}.",
                crate::error::truncate(&call.features.model, 200),
                call.endpoint.path(),
                if call.endpoint == Endpoint::Responses {
                    " that speaks the Responses API (openai, openrouter, xai)"
                } else {
                    ""
                }
            ),
        );
        s.out.send_error(&e).await;
    } else {
        failure::give_up(snap, &call.features.model, attempts.failures, s.out).await;
    }
}

/// What the attempts of one request share.
struct Attempts<'c> {
    call: &'c Call<'c>,
    /// The upstream request being built and sent (reused across attempts).
    outgoing: Vec<u8>,
    /// The parsed request, for upstreams of another family (parsed once, on first need).
    parsed: Option<simd_json::OwnedValue>,
    /// Translated answers' `created` stamp: the tick's clock is precise enough.
    created: u64,
    failures: Vec<(usize, Failure)>,
    /// Channels that failed as a whole in this request: their other models are skipped.
    failed_channels: ArrayVec<u32, 20>,
    /// Time spent waiting on upstreams so far (the rest is gateway overhead).
    upstream: Duration,
    /// Attempts made.
    made: usize,
    /// The soonest a channel skipped for its own rate limit has room again.
    channel_limited: Option<(crate::limits::Denied, u32)>,
}

impl<'c> Attempts<'c> {
    fn new(call: &'c Call<'c>, worker: &Worker) -> Self {
        Attempts {
            call,
            outgoing: Vec::with_capacity(call.body.len() + 1024),
            parsed: None,
            created: worker.unix_secs(),
            failures: Vec::new(),
            failed_channels: ArrayVec::new(),
            upstream: Duration::ZERO,
            made: 0,
            channel_limited: None,
        }
    }
}

/// How one candidate went.
enum Step {
    /// Not tried (its channel failed earlier, does not serve the endpoint, or is at its rate
    /// limit).
    Skipped,
    /// The request is answered (or the client left): no more attempts.
    Done,
    /// It failed before anything reached the client: the next candidate may answer.
    Failed(u32, Failure),
}

/// One candidate: attempt, then relay; every way out reports the health event once.
async fn attempt(
    s: &mut Session<'_, '_>,
    a: &mut Attempts<'_>,
    guard: &mut ClientGuard<'_, '_>,
    snap: &Snapshot,
    plan: &Plan,
    p: &Planned,
    now: Instant,
) -> Step {
    let (worker, call) = (s.worker(), a.call);
    let entry = &snap.catalog.entries[p.entry as usize];
    let ch: &Channel = &snap.channels[entry.channel as usize];
    if a.failed_channels.contains(&entry.channel) || !call.endpoint.served_by(ch) {
        return Step::Skipped;
    }
    if ch.rate.any() {
        let admitted = worker.limits.borrow_mut().admit_channel(
            entry.channel,
            call.features.prompt_tokens,
            now,
        );
        if let Err(d) = admitted {
            if a.channel_limited
                .is_none_or(|(s, _)| d.retry_after < s.retry_after)
            {
                a.channel_limited = Some((d, entry.channel));
            }
            return Step::Skipped;
        }
    }
    a.made += 1;
    let injected = match attempt::build_request(
        &mut a.outgoing,
        ch,
        s.req(),
        call,
        &mut a.parsed,
        &entry.model,
        s.out.request_id.as_bytes(),
    ) {
        Ok(i) => i,
        Err(e) => {
            if a.made == 1 {
                admission::refund(worker, s.req(), call.features);
            }
            s.out.send_error(&e).await;
            s.names = names(snap, entry.channel, None);
            s.attempt = Attempted::new(None, None, None, a.made - 1);
            s.at = now;
            return Step::Done;
        }
    };
    let started = Instant::now();
    let generation = snap.catalog.generation;
    let _slot = Slot::take(worker, generation, entry.channel, p.half_open, started);
    let report = |event: Event, latency_ms, ttft_ms, failure: Option<&'static str>| {
        let v = verdict(event);
        let seen = Observed {
            entry: p.entry,
            outcome: v.outcome,
            started,
            latency_ms,
            ttft_ms,
            failure,
        };
        worker.report(snap, seen);
        v.whole_channel
    };
    let answered = |s: &mut Session<'_, '_>, attempt: Attempted| {
        s.names = names(snap, entry.channel, Some(p.entry));
        s.attempt = attempt;
        s.at = started;
    };
    let Some(result) = guard
        .run(std::pin::pin!(attempt::attempt_once(
            worker,
            ch,
            &mut a.outgoing,
            started
        )))
        .await
    else {
        tracing::debug!(channel = %ch.id, "client left while waiting for the upstream");
        answered(s, Attempted::new(None, None, None, a.made));
        return Step::Done;
    };
    let to_head = started.elapsed();
    let (failure, whole_channel) = match result {
        Err(e) => {
            let whole = report(Event::Broken, None, None, Some(e.label()));
            (Failure::Upstream(e), whole)
        }
        Ok((conn, head)) if failure::fails_over(head.status) => {
            let retry_after = head
                .header(&conn.buf, b"retry-after")
                .and_then(|v| crate::h1::parse_retry_after(v, crate::clock::unix_secs()));
            let Some(mut kept) = guard
                .run(std::pin::pin!(attempt::read_kept(worker, ch, conn, &head)))
                .await
            else {
                answered(s, Attempted::new(None, None, None, a.made));
                return Step::Done;
            };
            let mut reshaped = Vec::new();
            transcode::error_body(
                ch.family,
                call.client,
                kept.status,
                &kept.body,
                &mut reshaped,
            );
            if !reshaped.is_empty() {
                kept.body = reshaped;
                kept.headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(b"content-type"));
            }
            let event = Event::Status {
                status: head.status,
                retry_after,
                names_model: failure::mentions(&kept.body, &entry.model),
            };
            let failed = Failure::Status(kept);
            let whole = report(event, None, None, Some(failed.label()));
            (failed, whole)
        }
        Ok((conn, head)) => {
            let quota_reset = attempt::quota_exhausted(&head, &conn.buf);
            let rid = s.out.request_id;
            let id = rid.as_str();
            let info = Info {
                channel: ch,
                price: entry.price.as_ref(),
                id,
                created: a.created,
                cost_rate: snap.cost_rate,
                model: &entry.model,
                requested: &call.features.model,
                attempts: a.made,
                started,
                strategy: &plan.strategy,
                score: p.score,
                received: s.req().received,
                upstream: a.upstream + to_head,
                max_validated: snap.server.max_validated_body,
            };
            let status = head.status;
            // A usage chunk the client did not ask for is the gateway's: counted, not shown.
            let strip_usage = call.client == Family::OpenAi
                && call.features.stream
                && call.features.usage_asked != Some(true)
                && (ch.family != Family::OpenAi || injected);
            let mut tc = transcode::Transcode::new(
                ch.family,
                call.client,
                strip_usage,
                &entry.model,
                id,
                a.created,
            );
            tc.strip_think = call.features.strip_think || ch.strip_think;
            let relayed = relay::respond(worker, conn, head, &info, s.out, guard, &mut tc).await;
            let latency = Some(ms(started.elapsed()));
            let ttft = Some(ms(to_head));
            if !matches!(relayed, relay::Outcome::FailedUnsent(_)) {
                // A 2xx answer always has a usage: its own, or the gateway's estimate (an
                // upstream that sends none cannot make requests free).
                let (usage, estimated) = if (200..300).contains(&status) {
                    let (u, estimated) = tc.usage_or_estimate(call.features.prompt_tokens);
                    (Some(u), estimated)
                } else {
                    (tc.usage(), false)
                };
                let cost = usage.and_then(|u| info.cost(&u));
                let mut attempt = Attempted::new(usage, cost, ttft, a.made);
                attempt.estimated = estimated;
                attempt.overhead = tc.overhead.map(ms);
                answered(s, attempt);
            }
            match relayed {
                relay::Outcome::Complete => {
                    let event = Event::Answered {
                        status,
                        quota_reset,
                    };
                    report(event, latency, ttft, None);
                    return Step::Done;
                }
                relay::Outcome::Broken => {
                    // The client got a 200 head, then an error event: the record says error.
                    s.attempt.status = Some(502);
                    report(Event::Broken, latency, None, Some("stream_cut"));
                    return Step::Done;
                }
                relay::Outcome::ClientGone => {
                    report(Event::ClientGone, None, ttft, None);
                    return Step::Done;
                }
                relay::Outcome::FailedUnsent(e) => {
                    // Nothing reached the client yet: the next candidate may still answer.
                    let whole = report(Event::Broken, None, None, Some(e.label()));
                    (Failure::Upstream(e), whole)
                }
            }
        }
    };
    a.upstream += started.elapsed();
    if whole_channel {
        let _ = a.failed_channels.try_push(entry.channel);
    }
    Step::Failed(entry.channel, failure)
}
