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
use crate::live::Judged;
use crate::live::health::{Event, Scope, verdict};
use crate::providers::Family;
use crate::providers::openai::ingress::Features;
use crate::server::response::ClientGuard;
use crate::server::{Exchange, Request};
use crate::snapshot::Snapshot;
use crate::worker::{Observed, SnapshotRef, Worker};
use failure::Failure;
use plan::{Plan, Planless, Planned, Slot};
use session::{Attempted, Extra, Info, Session, Trail, ms, names};

pub(crate) use plan::{options_with_headers, strategy_of};

/// Largest upstream response head accepted.
const MAX_RESPONSE_HEAD: usize = 64 * 1024;
/// Largest non-streamed upstream response body relayed.
const MAX_RESPONSE_BODY: usize = 64 * 1024 * 1024;
/// Largest error body kept from a failed attempt (returned if it was the last one).
const MAX_ERROR_BODY: usize = 64 * 1024;

pub(crate) use crate::presets::Endpoint;

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
    /// The client's own body when it is not the chat-completions form (`body` is then a
    /// translation): what a channel speaking the client's own API gets, with only the
    /// documented edits.
    pub native: Option<&'a [u8]>,
    /// A Responses API request: its translation (for channels without the API).
    pub responses: Option<&'a crate::providers::openai::responses::Ingress>,
    /// A Gemini embeddings request was a batch (`:batchEmbedContents`): its answer is
    /// `{"embeddings":[…]}`, not `{"embedding":…}`.
    pub embedding_batch: bool,
}

impl Call<'_> {
    /// The client's own bytes go to `ch`: it speaks the client's API (same family; or, for
    /// the Responses API, a provider serving it natively whose endpoint is not known to be
    /// missing, `responses_ok`). No translation either way.
    fn native_for(&self, ch: &Channel, responses_ok: bool) -> Option<&[u8]> {
        match self.endpoint {
            Endpoint::Responses => self.native.filter(|_| ch.responses && responses_ok),
            _ => self
                .native
                .filter(|_| ch.family == self.client && ch.family != Family::OpenAi),
        }
    }

    /// The endpoint called on the provider: a Responses request translated for a channel
    /// without the API goes to its chat completions.
    fn wire_endpoint(&self, native: bool) -> Endpoint {
        match self.endpoint {
            Endpoint::Responses if !native && self.responses.is_some() => Endpoint::Chat,
            e => e,
        }
    }

    /// The Responses field that needs server-side state, if the request has one: only a
    /// native channel can take it.
    fn needs_native(&self) -> Option<&'static str> {
        self.responses.and_then(|r| r.needs_native)
    }

    /// The endpoint routing judges channels by: a translatable Responses request can go to any
    /// channel's chat (a provider found without `/responses` still serves it translated).
    fn routing_endpoint(&self) -> Endpoint {
        match self.endpoint {
            Endpoint::Responses if self.responses.is_some() && self.needs_native().is_none() => {
                Endpoint::Chat
            }
            e => e,
        }
    }

    /// Whether `ch` can take this request at all.
    fn served_by(&self, ch: &Channel) -> bool {
        match self.endpoint {
            Endpoint::Responses if self.needs_native().is_some() || self.responses.is_none() => {
                ch.responses
            }
            // Translated to chat: every channel.
            Endpoint::Responses => true,
            e => e.served(ch.family, ch.path.is_some(), &ch.kind),
        }
    }
}

/// How often a request waiting for a panic slot plans again.
const PANIC_POLL: Duration = Duration::from_millis(10);

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
    if let Some(traces) = snap.traces {
        s.begin_trace(snap, traces);
    }
    // Admit.
    if let Some(refused) = admission::admission(worker, snap, req, call.features) {
        let (e, extra) = admission::refusal(refused);
        return s.refuse(&e, &extra, &Trail::NONE).await;
    }
    // Plan; when panic routing has candidates but no free slot, wait for one (or for the
    // first success to heal them) up to `panic_wait`.
    let mut now = Instant::now();
    let give_up_waiting = now + snap.routing.panic.wait;
    let plan = loop {
        let may_wait = now < give_up_waiting;
        match plan::plan(
            worker,
            snap,
            req,
            call.features,
            call.routing_endpoint(),
            now,
            may_wait,
        ) {
            Ok(p) => break p,
            Err(Planless::PanicFull) => {
                monoio::time::sleep(PANIC_POLL).await;
                now = Instant::now();
            }
            Err(Planless::Refused(e, retry_after)) => {
                admission::refund(worker, req, call.features);
                let extra = Extra::default().retry_after(retry_after);
                return s.refuse(&e, &extra, &Trail::NONE).await;
            }
        }
    };
    s.at = now;
    if let Some(sp) = s.spans.as_mut() {
        sp.strategy = Some(plan.strategy.as_str().into());
    }
    // Attempt and relay, candidate after candidate.
    let mut guard = ClientGuard::new(input);
    let mut attempts = Attempts::new(&call, worker, plan.panic);
    let max = snap.routing.max_attempts;
    for (k, p) in plan.attempts.iter().enumerate() {
        if attempts.made >= max {
            break;
        }
        let first = Instant::now();
        let mut retries = 0;
        attempts.translating = false;
        loop {
            let retry = retries > 0 || attempts.translating;
            match attempt(
                &mut s,
                &mut attempts,
                &mut guard,
                snap,
                &plan,
                p,
                now,
                retry,
            )
            .await
            {
                Step::Skipped => {}
                Step::Done => return guard.finish().await,
                Step::Failed(channel, failure) => {
                    tracing::debug!(
                        channel = %snap.channels[channel as usize].id,
                        kind = failure.label(),
                        failure = %failure.describe(),
                        retry,
                        "attempt failed"
                    );
                    let translate = std::mem::take(&mut attempts.translate_here);
                    let again = translate
                        || (retries < snap.routing.same_channel_retries
                            && failure.worth_retrying_here()
                            && attempts.last_left(snap, &plan.attempts[k + 1..], max)
                            && retry_in_time(snap, channel, first));
                    attempts.failures.push((channel as usize, failure));
                    if translate {
                        // Not a retry of the same thing: no pause, no retry budget spent.
                        attempts.failures.pop();
                        attempts.translating = true;
                        continue;
                    }
                    if again {
                        retries += 1;
                        let pause = jittered(snap.routing.retry_backoff, worker);
                        if !pause.is_zero() {
                            monoio::time::sleep(pause).await;
                        }
                        continue;
                    }
                }
            }
            break;
        }
    }
    guard.finish().await;
    // Every candidate failed or was skipped.
    let last = attempts.failures.last().map(|(c, _)| *c as u32);
    s.names = match last {
        Some(c) => names(snap, c, None),
        None => crate::usage::Names::None,
    };
    s.attempt = Attempted::new(None, None, None, attempts.made);
    let made = attempts.made;
    if made == 0 {
        admission::refund(worker, req, call.features);
    }
    let trail = Trail {
        attempts: made,
        last_channel: last.map(|c| &*snap.channels[c as usize].id),
        upstream: attempts.upstream,
        panic: plan.panic,
    };
    if let (0, Some((d, c))) = (made, attempts.channel_limited) {
        // Every candidate is at its provider's rate limit on this worker: the client may
        // retry when the first has room.
        let what = format!("channel {}", snap.channels[c as usize].id);
        let (e, extra) = admission::rate_limited(&what, &d);
        s.refuse(&e, &extra, &trail).await;
    } else if made == 0 && call.endpoint != Endpoint::Chat {
        // Every candidate was skipped: none of their providers serves this endpoint.
        let model = crate::error::truncate(&call.features.model, 200);
        let e = match call.needs_native() {
            // Stateless translation cannot continue a stored conversation.
            Some(field) => Error::new(
                400,
                Kind::InvalidRequest,
                "unsupported_parameter",
                format!(
                    "`{field}` needs server-side state, which only a provider serving the Responses API natively keeps (`responses = true`: openai, openrouter, xai); no channel serving `{model}` is one. Send the whole conversation as `input` instead."
                ),
            )
            .with_param(field),
            None => Error::new(
                404,
                Kind::InvalidRequest,
                "endpoint_not_served",
                format!(
                    "No channel serving `{model}` offers {}: it needs an OpenAI-compatible provider{}.",
                    call.endpoint.path(),
                    if call.endpoint == Endpoint::Responses {
                        " that speaks the Responses API (openai, openrouter, xai)"
                    } else {
                        ""
                    }
                ),
            ),
        };
        s.refuse(&e, &Extra::default(), &trail).await;
    } else {
        match failure::give_up(snap, &call.features.model, attempts.failures) {
            failure::GiveUp::Relay(kept) => s.relay_kept(&kept, &trail).await,
            failure::GiveUp::Answer(e, extra) => s.refuse(&e, &extra, &trail).await,
        }
    }
}

/// Whether a same-channel retry still fits the channel's `total_timeout`, counted from the
/// first try.
fn retry_in_time(snap: &Snapshot, channel: u32, first: Instant) -> bool {
    let total = snap.channels[channel as usize].timeouts.total;
    first.elapsed() + snap.routing.retry_backoff < total
}

/// Full jitter: a uniform pause in [0, `backoff`] (retries of many requests spread out
/// instead of hitting a recovering upstream together).
fn jittered(backoff: Duration, worker: &Worker) -> Duration {
    let nanos = backoff.as_nanos() as u64;
    if nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(worker.random() % (nanos + 1))
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
    /// Attempts made (same-channel retries are not attempts).
    made: usize,
    /// The soonest a channel skipped for its own rate limit has room again.
    channel_limited: Option<(crate::limits::Denied, u32)>,
    /// The plan's candidates are panic attempts.
    panic: bool,
    /// The last attempt met a native Responses endpoint the provider lacks, for a request
    /// its chat completions can serve: try the same channel again, translated.
    translate_here: bool,
    /// This (same-channel) attempt is that translation.
    translating: bool,
}

impl<'c> Attempts<'c> {
    fn new(call: &'c Call<'c>, worker: &Worker, panic: bool) -> Self {
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
            panic,
            translate_here: false,
            translating: false,
        }
    }

    /// True when no candidate after this one would be tried: the attempts are used up, or
    /// every later one would be skipped (its channel failed as a whole, or lacks the endpoint).
    fn last_left(&self, snap: &Snapshot, later: &[Planned], max: usize) -> bool {
        self.made >= max
            || later.iter().all(|p| {
                let e = &snap.catalog.entries[p.entry as usize];
                let ch = &snap.channels[e.channel as usize];
                self.failed_channels.contains(&e.channel) || !self.call.served_by(ch)
            })
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

/// One candidate (or, `retry`, the same candidate again), as [`try_candidate`] runs it; a
/// sampled request records the attempt's span once it is over.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    s: &mut Session<'_, '_>,
    a: &mut Attempts<'_>,
    guard: &mut ClientGuard<'_, '_>,
    snap: &Snapshot,
    plan: &Plan,
    p: &Planned,
    now: Instant,
    retry: bool,
) -> Step {
    let seen = std::cell::Cell::new(None);
    let step = try_candidate(s, a, guard, snap, plan, p, now, retry, &seen).await;
    if let Some(t) = seen.get() {
        s.tried(t);
    }
    step
}

/// One candidate (or, `retry`, the same candidate again): attempt, then relay; every way out
/// reports the health event once. A sampled request's attempt is described in `seen`.
#[allow(clippy::too_many_arguments)]
async fn try_candidate(
    s: &mut Session<'_, '_>,
    a: &mut Attempts<'_>,
    guard: &mut ClientGuard<'_, '_>,
    snap: &Snapshot,
    plan: &Plan,
    p: &Planned,
    now: Instant,
    retry: bool,
    seen: &std::cell::Cell<Option<session::Tried>>,
) -> Step {
    let (worker, call) = (s.worker(), a.call);
    let entry = &snap.catalog.entries[p.entry as usize];
    let ch: &Channel = &snap.channels[entry.channel as usize];
    if !retry && (a.failed_channels.contains(&entry.channel) || !call.served_by(ch)) {
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
    if !retry {
        a.made += 1;
    }
    // A provider with the Responses API natively gets the client's request as is, unless it
    // was found not to serve it after all: then the translation.
    let responses_ok = call.endpoint != Endpoint::Responses
        || (!a.translating
            && worker.routing.borrow().endpoint_open(
                snap,
                entry.channel,
                Endpoint::Responses,
                now,
            ));
    let native = call.native_for(ch, responses_ok);
    let wire = call.wire_endpoint(native.is_some());
    // With telemetry on, the upstream's parent is this attempt's span.
    let span_id = s
        .trace
        .map(|_| crate::trace::span_id(&mut || worker.random()));
    let traceparent = s.trace.zip(span_id).map(|(t, id)| t.header(&id));
    let injected = match attempt::build_request(
        &mut a.outgoing,
        ch,
        s.req(),
        call,
        &mut a.parsed,
        &entry.model,
        s.out.request_id.as_bytes(),
        native,
        traceparent.as_ref().map(|h| h.as_bytes()),
    ) {
        Ok(i) => i,
        Err(e) => {
            if a.made == 1 {
                admission::refund(worker, s.req(), call.features);
            }
            s.names = names(snap, entry.channel, None);
            s.attempt = Attempted::new(None, None, None, a.made - 1);
            s.at = now;
            let trail = Trail {
                attempts: a.made - 1,
                last_channel: Some(&ch.id),
                upstream: a.upstream,
                panic: a.panic,
            };
            s.refuse(&e, &Extra::default(), &trail).await;
            return Step::Done;
        }
    };
    let started = Instant::now();
    if let Some(span_id) = span_id.filter(|_| s.spans.is_some()) {
        seen.set(Some(session::Tried {
            span_id,
            started,
            ended: started,
            channel: entry.channel,
            entry: p.entry,
            status: 0,
            failure: None,
        }));
    }
    let generation = snap.catalog.generation;
    let _slot = Slot::take(worker, generation, entry.channel, p.attempt, started);
    let report = |event: Event, latency_ms, ttft_ms, failure: Option<&'static str>| {
        if let Some(mut t) = seen.get() {
            if let Event::Status { status, .. } | Event::Answered { status, .. } = event {
                t.status = status;
            }
            t.failure = failure;
            seen.set(Some(t));
        }
        let v = verdict(event);
        let seen = Observed {
            entry: p.entry,
            outcome: v.outcome.map(|outcome| Judged {
                outcome,
                scope: v.scope,
                endpoint: wire,
            }),
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
    if let (Ok((_, head)), Some(mut t)) = (&result, seen.get()) {
        t.status = head.status;
        seen.set(Some(t));
    }
    let (failure, whole_channel) = match result {
        Err(e) => {
            let whole = report(e.event(), None, None, Some(e.label()));
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
            kept.retry_after = retry_after;
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
            // A provider found without the Responses API it was thought to have: the same
            // channel serves the request translated, at once.
            a.translate_here = native.is_some()
                && call.endpoint == Endpoint::Responses
                && call.routing_endpoint() == Endpoint::Chat
                && verdict(event).scope == Scope::Endpoint;
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
                panic: a.panic,
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
            if ch.family == Family::Anthropic && native.is_none() {
                // The tool a structured answer comes back through (as the request was encoded).
                let tool = a
                    .parsed
                    .as_ref()
                    .and_then(|v| crate::providers::anthropic::json_tool(v).ok().flatten());
                tc = tc.answering_json(tool.map(|t| t.name));
            }
            tc = match (call.responses, native.is_some()) {
                (Some(r), false) => tc.answering_responses(&r.echo),
                (_, true) if call.endpoint == Endpoint::Responses => tc.native_responses(),
                _ => tc,
            };
            if call.endpoint == Endpoint::Embeddings && call.client == Family::Gemini {
                tc = tc.answering_gemini_embeddings(call.embedding_batch);
            }
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
                    let whole = report(e.event(), None, None, Some(e.label()));
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
