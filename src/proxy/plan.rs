//! The plan of a request: its router options (body fields overridden by `x-router-*`
//! headers), the ranked candidates copied out of the routing arena (or why there are none, with
//! the `Retry-After` to give), and the per-worker slot an attempt holds on its channel.
//!
//! Invariants: ranking runs synchronously in the worker's arena (no allocation but the plan's
//! fixed-capacity copy); a channel's slot (in-flight count, half-open trial) is released
//! however its attempt ends.

use std::time::{Duration, Instant};

use arrayvec::{ArrayString, ArrayVec};

use crate::error::Error;
use crate::presets::Endpoint;
use crate::providers::openai::ingress::Features;
use crate::routing::{self, Attempt};
use crate::server::Request;
use crate::snapshot::Snapshot;
use crate::worker::Worker;

/// One planned attempt, copied out of the routing arena.
#[derive(Debug, Clone, Copy)]
pub(super) struct Planned {
    pub(super) entry: u32,
    pub(super) attempt: Attempt,
    pub(super) score: f32,
}

/// The attempts to make, in order, and the strategy that ordered them.
#[derive(Debug)]
pub(super) struct Plan {
    pub(super) attempts: ArrayVec<Planned, 20>,
    pub(super) strategy: ArrayString<64>,
    /// The attempts are panic attempts (`x-router-panic: 1`).
    pub(super) panic: bool,
}

/// Why a request has no plan.
#[derive(Debug)]
pub(super) enum Planless {
    /// The answer to give, with its `Retry-After` if the gateway knows when to retry.
    Refused(Error, Option<Duration>),
    /// Panic routing would try candidates whose channels are all at `panic_max_in_flight`:
    /// plan again when a slot frees (or the first success heals them).
    PanicFull,
}

impl From<Error> for Planless {
    fn from(e: Error) -> Self {
        Planless::Refused(e, None)
    }
}

impl From<routing::RouteError> for Planless {
    fn from(e: routing::RouteError) -> Self {
        let after = e.retry_after();
        Planless::Refused(e.into_error(), after)
    }
}

/// Ranks the candidates (synchronously, in the worker's arena) and copies out the attempts.
#[allow(clippy::too_many_arguments)]
fn rank(
    worker: &Worker,
    snap: &Snapshot,
    features: &Features,
    options: &crate::strategy::Options,
    strategy: Option<&str>,
    allowed: Option<&[u64]>,
    endpoint: Endpoint,
    now: Instant,
    may_wait: bool,
) -> Result<Plan, Planless> {
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
        endpoint,
        fields: features.fields,
    };
    let ranking = routing::rank(snap, &mut local, &ask, now, &arena, false)?;
    if ranking.panic_full && may_wait {
        return Err(Planless::PanicFull);
    }
    let midnight = now + crate::clock::until_utc_midnight(worker.unix_secs());
    if let Some(e) = ranking.unusable(snap, &features.model, now, midnight) {
        return Err(e.into());
    }
    let mut attempts = ArrayVec::new();
    // Spares beyond max_attempts: the loop skips the other models of a channel that failed
    // as a whole during this request.
    for c in ranking.candidates.iter().take(20) {
        attempts.push(Planned {
            entry: c.entry,
            attempt: c.attempt,
            score: c.score,
        });
    }
    let mut name = ArrayString::new();
    let _ = name.try_push_str(crate::error::truncate(ranking.strategy, 64));
    Ok(Plan {
        attempts,
        strategy: name,
        panic: ranking.panic,
    })
}

/// The plan for `req`: its options, then its ranking at `now`. With `may_wait`, a ranking
/// whose panic candidates have no free slot is [`Planless::PanicFull`] (plan again soon);
/// without, it is the 503 it would be.
pub(super) fn plan(
    worker: &Worker,
    snap: &Snapshot,
    req: &Request<'_>,
    features: &Features,
    endpoint: Endpoint,
    now: Instant,
    may_wait: bool,
) -> Result<Plan, Planless> {
    let options = options_with_headers(req, &features.options)?;
    rank(
        worker,
        snap,
        features,
        &options,
        strategy_of(req, features),
        req.allowed(),
        endpoint,
        now,
        may_wait,
    )
}

/// Router options from the body, overridden by `x-router-*` request headers.
pub(crate) fn options_with_headers(
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
pub(crate) fn strategy_of<'a>(req: &'a Request<'_>, features: &'a Features) -> Option<&'a str> {
    req.header(b"x-router-strategy")
        .and_then(|v| std::str::from_utf8(v).ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .or(features.strategy.as_deref())
}

/// Releases a channel's per-worker slot (in-flight count, half-open trial, panic attempt)
/// when an attempt ends, however it ends.
pub(super) struct Slot<'w> {
    worker: &'w Worker,
    generation: u64,
    channel: u32,
    attempt: Attempt,
}

impl<'w> Slot<'w> {
    /// Takes channel `channel`'s slot for an attempt starting at `started`.
    pub(super) fn take(
        worker: &'w Worker,
        generation: u64,
        channel: u32,
        attempt: Attempt,
        started: Instant,
    ) -> Slot<'w> {
        worker
            .routing
            .borrow_mut()
            .begin(generation, channel, attempt, started);
        Slot {
            worker,
            generation,
            channel,
            attempt,
        }
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.worker
            .routing
            .borrow_mut()
            .end(self.generation, self.channel, self.attempt);
    }
}
