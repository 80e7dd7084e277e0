//! Admission: the budgets (the gateway's and the client key's) and the key's rate limits,
//! checked before any routing work; the answers for a refusal; and the refund of `rpm`/`tpm`
//! for a request the gateway itself refuses after admitting it.
//!
//! Invariants: an admitted request has taken its tokens from the key's buckets; nothing is
//! taken when a bucket refuses; refusals carry `Retry-After` and OpenAI's `x-ratelimit-*`.

use crate::error::{Error, Kind};
use crate::providers::openai::ingress::Features;
use crate::server::{Request, Responder};
use crate::snapshot::Snapshot;
use crate::worker::Worker;

/// Why a request is refused before routing.
pub(super) enum Refused<'s> {
    /// A daily budget is spent: the gateway's, or the client key's.
    Budget(&'s str),
    /// The client key is over one of its rate limits.
    RateLimited(&'s str, crate::limits::Denied),
}

/// The budgets and the key's rate limits, checked before any routing work (an admitted
/// request has taken its tokens from the key's buckets).
pub(super) fn admission<'s>(
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
pub(super) fn refund(worker: &Worker, req: &Request<'_>, features: &Features) {
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
pub(super) async fn rate_limited(
    out: &mut Responder<'_>,
    what_for: &str,
    d: &crate::limits::Denied,
) {
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

/// Answers a refused request.
pub(super) async fn refuse(out: &mut Responder<'_>, refused: Refused<'_>) {
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
}
