//! Admission: the budgets (the gateway's and the client key's) and the key's rate limits,
//! checked before any routing work; the answers for a refusal; and the refund of `rpm`/`tpm`
//! for a request the gateway itself refuses after admitting it.
//!
//! Invariants: an admitted request has taken its tokens from the key's buckets; nothing is
//! taken when a bucket refuses; refusals carry `Retry-After` and OpenAI's `x-ratelimit-*`.

use super::session::Extra;
use crate::error::{Error, Kind};
use crate::providers::openai::ingress::Features;
use crate::server::Request;
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

/// The 429 for a client key (or a channel) over one of its limits, with `Retry-After` and the
/// `x-ratelimit-*` headers OpenAI clients read.
pub(super) fn rate_limited(what_for: &str, d: &crate::limits::Denied) -> (Error, Extra) {
    use crate::limits::Which;
    let (what, names): (_, [&'static [u8]; 3]) = match d.which {
        Which::Requests => (
            "requests",
            [
                b"x-ratelimit-limit-requests",
                b"x-ratelimit-remaining-requests",
                b"x-ratelimit-reset-requests",
            ],
        ),
        Which::Tokens => (
            "tokens",
            [
                b"x-ratelimit-limit-tokens",
                b"x-ratelimit-remaining-tokens",
                b"x-ratelimit-reset-tokens",
            ],
        ),
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
    let extra = Extra::default()
        .retry_after(Some(d.retry_after))
        .with(names[0], d.limit)
        .with(names[1], 0)
        .with(
            names[2],
            format_args!("{:.3}s", d.retry_after.as_secs_f64()),
        );
    (e, extra)
}

/// The answer to a refused request.
pub(super) fn refusal(refused: Refused<'_>) -> (Error, Extra) {
    match refused {
        Refused::Budget(why) => {
            let e = Error::new(429, Kind::RateLimit, "budget_exhausted", why.to_string());
            let wait = crate::clock::until_utc_midnight(crate::clock::unix_secs());
            (e, Extra::default().retry_after(Some(wait)))
        }
        Refused::RateLimited(key, d) => rate_limited(&format!("key `{key}`"), &d),
    }
}
