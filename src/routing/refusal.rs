//! What a client hears when ranking yields no candidate: the route errors (400 for an
//! expression that does not parse, 404 for a name nothing serves, 403 for a model outside the
//! key's allowance, 400 `context_length_exceeded`, 429 when only rate limits stand in the way,
//! 503 otherwise) with messages that name every rejected candidate and why, and the
//! `Retry-After` a client should honour.
//!
//! Invariants: a message never names a model outside the client key's allowance; untrusted
//! text is shortened before it is quoted; every 429 and every 503 with a known recovery time
//! carries a retry-after.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use super::Ranking;
use super::filter::{Reason, Rejected, Tier};
use crate::catalog::select::reachable_tags;
use crate::error::{Error, Kind};
use crate::snapshot::Snapshot;

impl Ranking<'_> {
    /// The 503 for a ranking whose every match was filtered out (`None` when some survived).
    ///
    /// When every candidate left (those not ruled out for good) is at a rate limit, it is a
    /// 429; otherwise a 503. Either carries the soonest recovery it knows (`midnight`: when a
    /// spent daily quota resets).
    pub(crate) fn unusable(
        &self,
        snap: &Snapshot,
        model: &str,
        now: Instant,
        midnight: Instant,
    ) -> Option<RouteError> {
        if !self.candidates.is_empty() {
            return None;
        }
        // Every match is the wrong kind of model (chat vs embeddings): the client's mistake.
        let wrong_kind = |want: Reason| {
            !self.rejected.is_empty() && self.rejected.iter().all(|r| r.reason == want)
        };
        if wrong_kind(Reason::NotEmbedding) {
            return Some(RouteError::NotFound(format!(
                "`{}` is not an embedding model; /v1/embeddings needs one (e.g. text-embedding-3-small).",
                short(model)
            )));
        }
        if wrong_kind(Reason::Embedding) {
            return Some(RouteError::NotFound(format!(
                "`{}` is an embedding model; send it to /v1/embeddings.",
                short(model)
            )));
        }
        // Only fields some families lack stand in the way (whatever else was ruled out for
        // good): the client asked for something no candidate can give.
        if self
            .rejected
            .iter()
            .all(|r| r.reason.tier() == Tier::Permanent)
            && let Some(e) = unexpressible(snap, model, &self.rejected)
        {
            return Some(e);
        }
        let message = unusable(snap, model, &self.rejected, now);
        let left = || {
            self.rejected
                .iter()
                .filter(|r| r.reason.tier() != Tier::Permanent)
        };
        // Every channel left lacks the endpoint: no retry soon will help.
        if left().next().is_some() && left().all(|r| matches!(r.reason, Reason::Unsupported { .. }))
        {
            return Some(RouteError::EndpointNotServed(message));
        }
        let soonest = left()
            .filter_map(|r| r.reason.ends(midnight))
            .min()
            .map(|t| t.saturating_duration_since(now));
        let rate_limited =
            left().next().is_some() && left().all(|r| r.reason.tier() == Tier::RateLimited);
        Some(if rate_limited {
            RouteError::RateLimited {
                message,
                // `max_concurrent` frees up without a known time: a second is a fair guess.
                retry_after: soonest.unwrap_or(Duration::from_secs(1)),
            }
        } else {
            RouteError::Unusable {
                message,
                retry_after: soonest,
            }
        })
    }
}

/// Why ranking produced no candidate list.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// The expression does not parse, or names an unknown strategy (400).
    Invalid(String),
    /// Nothing matches the expression (404).
    NotFound(String),
    /// Entries matched but every one was filtered out (503), with the soonest known recovery.
    Unusable {
        /// What stood in the way of each candidate.
        message: String,
        /// When the first of them recovers, if known.
        retry_after: Option<Duration>,
    },
    /// Every candidate left is at a rate limit: a provider's (429 cooldown) or the gateway's
    /// own (daily quota, `min_request_interval`, `max_concurrent`) (429).
    RateLimited {
        /// What stood in the way of each candidate.
        message: String,
        /// When the first of them has room again.
        retry_after: Duration,
    },
    /// The prompt is larger than every candidate's context, beyond the margin (400).
    ContextExceeded {
        /// The largest context among the candidates.
        have: u32,
        /// Estimated prompt tokens.
        prompt: u32,
        /// The completion tokens asked for.
        completion: u32,
        /// The request field at fault (`messages`, `prompt` or `input`).
        param: &'static str,
    },
    /// Entries matched, but the client's key may use none of them (403).
    Forbidden(String),
    /// Every channel left was found not to serve the endpoint (404).
    EndpointNotServed(String),
    /// The request sets a field no candidate's family can express, and none drops it (400
    /// `unsupported_parameter`).
    UnsupportedParameter {
        /// The request parameter at fault (`logprobs`, `n`, …).
        param: &'static str,
        /// Which channels lack it, and their families.
        message: String,
    },
}

impl RouteError {
    /// The client-facing error.
    pub(crate) fn into_error(self) -> Error {
        match self {
            RouteError::Invalid(m) => {
                Error::new(400, Kind::InvalidRequest, "invalid_model_expression", m)
            }
            RouteError::NotFound(m) => Error::new(404, Kind::InvalidRequest, "model_not_found", m),
            RouteError::Unusable { message, .. } => {
                Error::new(503, Kind::Server, "no_usable_channel", message)
            }
            RouteError::RateLimited { message, .. } => {
                Error::new(429, Kind::RateLimit, "rate_limit_exceeded", message)
            }
            RouteError::ContextExceeded {
                have,
                prompt,
                completion,
                param,
            } => Error::new(
                400,
                Kind::InvalidRequest,
                "context_length_exceeded",
                format!(
                    "This model's maximum context length is {have} tokens. However, you requested about {} tokens ({prompt} in the {param}, {completion} in the completion; the prompt is the gateway's estimate). Please reduce the length of the {param} or completion.",
                    prompt.saturating_add(completion)
                ),
            )
            .with_param(param),
            RouteError::Forbidden(m) => Error::new(403, Kind::Permission, "model_not_allowed", m),
            RouteError::EndpointNotServed(m) => {
                Error::new(404, Kind::InvalidRequest, "endpoint_not_served", m)
            }
            RouteError::UnsupportedParameter { param, message } => {
                Error::new(400, Kind::InvalidRequest, "unsupported_parameter", message)
                    .with_param(param)
            }
        }
    }

    /// The `Retry-After` the answer carries, if any.
    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            RouteError::Unusable { retry_after, .. } => *retry_after,
            RouteError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// `Retry-After` seconds for a wait: whole seconds, rounded up, at least 1.
pub(crate) fn retry_after_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

pub(super) fn short(s: &str) -> &str {
    crate::error::truncate(s, 200)
}

/// The 404 text for a model name nothing serves, with suggestions among the names the
/// client's key may use (`allowed`; never a model outside its allowance).
pub(super) fn not_found_name(snap: &Snapshot, name: &str, allowed: Option<&[u64]>) -> String {
    let cat = &snap.catalog;
    let mut msg = format!(
        "The model `{}` does not exist or no channel serves it.",
        short(name)
    );
    let names: Vec<&str> = cat
        .names()
        .iter()
        .map(|n| &**n)
        .filter(|n| cat.name_allowed(n, allowed))
        .collect();
    let tags = reachable_tags(cat, allowed);
    if let Some(close) = crate::config::closest(name, &names) {
        let _ = write!(msg, " Did you mean `{close}`?");
    } else if let Some(close) = crate::config::closest(&name.to_ascii_lowercase(), &tags) {
        let _ = write!(msg, " Closest tag: `{close}` (try `tag:{close}`).");
    }
    if names.is_empty() {
        msg.push_str(" No channel serves any model: check the config's channels.");
    } else {
        let list: Vec<&str> = names.iter().take(10).copied().collect();
        let _ = write!(msg, " Available: {}", list.join(", "));
        if names.len() > 10 {
            let _ = write!(
                msg,
                " … ({} in all; GET /v1/models lists them)",
                names.len()
            );
        }
        msg.push('.');
    }
    msg
}

/// The 400 for fields no candidate's family can express, naming each such channel and its
/// family (`None` when no rejection was for that).
fn unexpressible(snap: &Snapshot, model: &str, rejected: &[Rejected]) -> Option<RouteError> {
    let mut all = crate::presets::Fields::NONE;
    let mut seen: Vec<u32> = Vec::new();
    let mut names = String::new();
    for r in rejected {
        let Reason::Unexpressible { family, fields } = r.reason else {
            continue;
        };
        all = all.union(fields);
        let channel = snap.catalog.entries[r.entry as usize].channel;
        if seen.contains(&channel) {
            continue;
        }
        seen.push(channel);
        if seen.len() <= 12 {
            if !names.is_empty() {
                names.push_str(", ");
            }
            let ch = &snap.channels[channel as usize];
            let _ = write!(names, "{} ({})", ch.id, family.as_str());
        }
    }
    if all.is_empty() {
        return None;
    }
    if seen.len() > 12 {
        let _ = write!(names, ", … {} more", seen.len() - 12);
    }
    Some(RouteError::UnsupportedParameter {
        param: all.first_param(),
        message: format!(
            "`{}` cannot be honoured for `{}`: no channel left can express it, and none may drop it ({names}; only OpenAI-family channels have it, Gemini also `n` when not streamed). Remove the parameter, or set on_unsupported = \"drop\" on the provider to send the request without it.",
            all.params(),
            short(model),
        ),
    })
}

fn unusable(snap: &Snapshot, model: &str, rejected: &[Rejected], now: Instant) -> String {
    let mut msg = format!(
        "No channel can serve `{}` right now: {} candidate{}: ",
        short(model),
        rejected.len(),
        if rejected.len() == 1 { "" } else { "s" }
    );
    for (k, r) in rejected.iter().take(12).enumerate() {
        let e = &snap.catalog.entries[r.entry as usize];
        let ch = &snap.channels[e.channel as usize];
        if k > 0 {
            msg.push_str("; ");
        }
        let _ = write!(msg, "{}/{} {}", ch.id, e.model, r.reason.describe(now));
    }
    if rejected.len() > 12 {
        let _ = write!(msg, "; … {} more", rejected.len() - 12);
    }
    msg.push('.');
    msg
}
