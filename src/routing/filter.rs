//! The filters of one ranking: why a matched entry is not a candidate ([`Reason`]), judged in
//! three tiers so the reason recorded is always the most lasting one:
//!
//! 1. **permanent** for this request — the channel is disabled or excluded, the model lacks a
//!    capability, is above the price cap, or its context is too small;
//! 2. **waiting** on something only time or an operator fixes — a rate-limit, auth, credit or
//!    model-missing cooldown, an endpoint the provider lacks, a spent daily quota,
//!    `min_request_interval`, `max_concurrent`, an unresolved host;
//! 3. **transient** — a backoff cooldown after 5xx/timeouts/connect errors, or a half-open
//!    trial already in flight: the only kind panic routing may override.
//!
//! An entry reported transient therefore passed every other check.
//!
//! Invariants: pure and synchronous (the caller passes `now`); the channel part is computed
//! once per channel per request ([`channel_standing`]), however many of its models matched.

use std::time::Instant;

use super::local::Local;
use crate::catalog::Entry;
use crate::expr::Caps;
use crate::live::health::{State, Why};
use crate::presets::{Endpoint, Family, Fields};
use crate::snapshot::Snapshot;

/// Why a matched entry is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Reason {
    /// The channel is disabled.
    Disabled,
    /// Its host name has no address yet.
    Unresolved,
    /// Its provider is excluded by the request.
    Excluded,
    /// The channel's daily request, token or budget limit is reached.
    QuotaSpent,
    /// An embedding model (never serves chat).
    Embedding,
    /// Not an embedding model (an embeddings request).
    NotEmbedding,
    /// It lacks these capabilities.
    Lacks(Caps),
    /// Its family cannot express these request fields, and its provider refuses rather than
    /// drops them (`on_unsupported = "error"`).
    Unexpressible {
        /// The channel's family.
        family: Family,
        /// The fields it lacks.
        fields: Fields,
    },
    /// Its context is smaller than the request needs.
    Context {
        /// Tokens the request needs.
        need: u32,
        /// Tokens the model has.
        have: u32,
    },
    /// Above the price cap.
    PriceCap,
    /// A price cap is set and the price is unknown.
    PriceUnknown,
    /// The provider was found not to serve the request's endpoint.
    Unsupported {
        /// The endpoint.
        endpoint: Endpoint,
        /// Re-checked then.
        until: Instant,
    },
    /// Cooling down.
    Cooling {
        /// Until then.
        until: Instant,
        /// What took it out of rotation.
        why: Why,
    },
    /// A half-open trial is already in flight on this worker (of a scope out for `0`).
    TrialInFlight(Why),
    /// Used less than `min_request_interval` ago.
    MinInterval {
        /// Usable again then.
        until: Instant,
    },
    /// At its `max_concurrent` share.
    Busy,
}

/// How lasting a [`Reason`] is (see the module doc).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tier {
    /// Nothing but a different request fixes it.
    Permanent,
    /// A provider's or the gateway's own limit on the rate of use: a 429 when it is all
    /// that is left.
    RateLimited,
    /// Time or an operator fixes it.
    Waiting,
    /// A backoff or a trial in flight: panic routing may override it.
    Transient,
}

impl Reason {
    /// Its tier.
    pub(crate) fn tier(&self) -> Tier {
        match self {
            Reason::Disabled
            | Reason::Excluded
            | Reason::Embedding
            | Reason::NotEmbedding
            | Reason::Lacks(_)
            | Reason::Unexpressible { .. }
            | Reason::Context { .. }
            | Reason::PriceCap
            | Reason::PriceUnknown => Tier::Permanent,
            Reason::Cooling {
                why: Why::RateLimited,
                ..
            }
            | Reason::QuotaSpent
            | Reason::MinInterval { .. }
            | Reason::Busy => Tier::RateLimited,
            Reason::Cooling { why, .. } | Reason::TrialInFlight(why) if why.is_transient() => {
                Tier::Transient
            }
            Reason::Unresolved
            | Reason::Unsupported { .. }
            | Reason::Cooling { .. }
            | Reason::TrialInFlight(_) => Tier::Waiting,
        }
    }

    /// When it ends, if the gateway knows (a daily quota ends at `midnight`).
    pub(crate) fn ends(&self, midnight: Instant) -> Option<Instant> {
        match *self {
            Reason::Cooling { until, .. }
            | Reason::Unsupported { until, .. }
            | Reason::MinInterval { until } => Some(until),
            Reason::QuotaSpent => Some(midnight),
            _ => None,
        }
    }

    /// Short text for messages and the dry run.
    pub(crate) fn describe(&self, now: Instant) -> String {
        let secs = |t: Instant| t.saturating_duration_since(now).as_secs_f64();
        match self {
            Reason::Disabled => "disabled".into(),
            Reason::QuotaSpent => "daily quota spent (resets 00:00 UTC)".into(),
            Reason::Unresolved => "upstream address not resolved yet".into(),
            Reason::Excluded => "provider excluded".into(),
            Reason::Embedding => "embedding model".into(),
            Reason::NotEmbedding => "not an embedding model".into(),
            Reason::Lacks(c) => format!("lacks {}", c.first_name()),
            Reason::Unexpressible { family, fields } => format!(
                "{} family cannot express {}",
                family.as_str(),
                fields.params()
            ),
            Reason::Context { need, have } => {
                format!("context {have} tokens < {need} needed")
            }
            Reason::PriceCap => "above max_cost_per_1k".into(),
            Reason::PriceUnknown => "price unknown (max_cost_per_1k set)".into(),
            Reason::Unsupported { endpoint, until } => format!(
                "provider does not serve {} (re-checked in {:.0}s)",
                endpoint.path(),
                secs(*until)
            ),
            Reason::Cooling { until, why } => {
                format!("cooling down for {:.1}s ({})", secs(*until), why.as_str())
            }
            Reason::TrialInFlight(why) => format!("half-open trial in flight ({})", why.as_str()),
            Reason::MinInterval { until } => {
                format!("min_request_interval ({:.1}s left)", secs(*until))
            }
            Reason::Busy => "max_concurrent reached".into(),
        }
    }
}

/// A matched entry that was filtered out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected {
    /// Entry index.
    pub entry: u32,
    /// Why the entry is not a candidate.
    pub reason: Reason,
}

/// The channel part of every entry's verdict, one reason per tier.
#[derive(Debug, Clone, Copy)]
pub(super) struct ChannelStanding {
    permanent: Option<Reason>,
    waiting: Option<Reason>,
    transient: Option<Reason>,
    /// The channel's (or the endpoint's) cooldown ended: an attempt is its trial.
    half_open: bool,
}

/// Judges channel `c` for a request to `endpoint` asking for `asked` (the family-specific
/// fields, and whether it streams) at `now`.
pub(super) fn channel_standing(
    snap: &Snapshot,
    local: &Local,
    c: usize,
    endpoint: Endpoint,
    asked: (Fields, bool),
    excluded: &impl Fn(&str) -> bool,
    now: Instant,
) -> ChannelStanding {
    let ch = &snap.channels[c];
    let mut s = ChannelStanding {
        permanent: None,
        waiting: None,
        transient: None,
        half_open: false,
    };
    if !ch.enabled {
        s.permanent = Some(Reason::Disabled);
        return s;
    }
    if excluded(&ch.provider) {
        s.permanent = Some(Reason::Excluded);
        return s;
    }
    let (fields, stream) = asked;
    let lacks = ch.family.lacks(fields, stream);
    if !lacks.is_empty() && !ch.drop_unsupported {
        s.permanent = Some(Reason::Unexpressible {
            family: ch.family,
            fields: lacks,
        });
        return s;
    }
    let live = local.channel_live(&snap.live, c);
    let trial_in_flight = local.trials.get(c).copied().unwrap_or(false);
    let ep = live.endpoint(endpoint);
    s.waiting = if ch.endpoint.addrs.is_empty() {
        Some(Reason::Unresolved)
    } else if snap.quota.channel_spent(c) {
        Some(Reason::QuotaSpent)
    } else {
        match ep.state(now) {
            State::Cooling(until) => Some(Reason::Unsupported { endpoint, until }),
            // One re-check of the endpoint at a time; the others wait for its answer.
            State::HalfOpen if trial_in_flight => Some(Reason::Unsupported {
                endpoint,
                until: now,
            }),
            State::HalfOpen => {
                s.half_open = true;
                None
            }
            State::Ok => None,
        }
    };
    let h = live.health;
    let state = h.state(now);
    if s.waiting.is_none() {
        s.waiting = match state {
            State::Cooling(until) if !h.why.is_transient() => {
                Some(Reason::Cooling { until, why: h.why })
            }
            _ => None,
        };
    }
    if s.waiting.is_none()
        && !ch.min_request_interval.is_zero()
        && let Some(Some(last)) = local.last_used.get(c)
        && now.saturating_duration_since(*last) < ch.min_request_interval
    {
        s.waiting = Some(Reason::MinInterval {
            until: *last + ch.min_request_interval,
        });
    }
    if s.waiting.is_none()
        && let Some(share) = ch.max_concurrent_per_worker
        && local.in_flight.get(c).copied().unwrap_or(0) >= share
    {
        s.waiting = Some(Reason::Busy);
    }
    match state {
        State::Cooling(until) if h.why.is_transient() => {
            s.transient = Some(Reason::Cooling { until, why: h.why });
        }
        State::HalfOpen => s.half_open = true,
        _ => {}
    }
    if s.waiting.is_none() && s.transient.is_none() && s.half_open && trial_in_flight {
        let r = Reason::TrialInFlight(h.why);
        if h.why.is_transient() {
            s.transient = Some(r);
        } else {
            s.waiting = Some(r);
        }
    }
    s
}

/// What a request asks of an entry beyond its channel.
#[derive(Debug, Clone, Copy)]
pub(super) struct Needs {
    pub(super) caps: Caps,
    /// Prompt plus completion tokens.
    pub(super) tokens: u32,
    pub(super) max_cost: Option<f64>,
}

/// The entry's permanent checks, context last (so a context rejection means everything else
/// about the model fits).
pub(super) fn entry_permanent(e: &Entry, needs: &Needs) -> Option<Reason> {
    // Embedding requests ask for EMBEDDING; chat requests never can (Caps::parse refuses it).
    match (
        e.caps.contains(Caps::EMBEDDING),
        needs.caps.contains(Caps::EMBEDDING),
    ) {
        (true, false) => return Some(Reason::Embedding),
        (false, true) => return Some(Reason::NotEmbedding),
        _ => {}
    }
    let missing = needs.caps.missing_from(e.caps);
    if !missing.is_empty() {
        return Some(Reason::Lacks(missing));
    }
    if let Some(cap) = needs.max_cost {
        match e.price {
            None => return Some(Reason::PriceUnknown),
            Some(p) if p.input.max(p.output) / 1000.0 > cap => return Some(Reason::PriceCap),
            Some(_) => {}
        }
    }
    if e.context != 0 && e.context < needs.tokens {
        return Some(Reason::Context {
            need: needs.tokens,
            have: e.context,
        });
    }
    None
}

/// The rest of an entry's verdict once its permanent checks passed: the channel's waiting
/// reason, the model's cooldown, then the transient ones. `Ok(true)`: the attempt is a
/// half-open trial.
pub(super) fn entry_after_permanent(
    snap: &Snapshot,
    local: &Local,
    ch: &ChannelStanding,
    e: &Entry,
    i: usize,
    now: Instant,
) -> Result<bool, Reason> {
    if let Some(r) = ch.waiting {
        return Err(r);
    }
    let h = local.entry_health(&snap.live, i);
    let state = h.state(now);
    if let State::Cooling(until) = state
        && !h.why.is_transient()
    {
        return Err(Reason::Cooling { until, why: h.why });
    }
    if let Some(r) = ch.transient {
        return Err(r);
    }
    match state {
        State::Cooling(until) => Err(Reason::Cooling { until, why: h.why }),
        // One trial at a time per channel, whether the channel or this model is half-open.
        State::HalfOpen
            if local
                .trials
                .get(e.channel as usize)
                .copied()
                .unwrap_or(false) =>
        {
            Err(Reason::TrialInFlight(h.why))
        }
        State::HalfOpen => Ok(true),
        State::Ok => Ok(ch.half_open),
    }
}

/// The whole verdict of entry `i` (see the module doc for the order).
pub(super) fn judge(
    snap: &Snapshot,
    local: &Local,
    ch: &ChannelStanding,
    e: &Entry,
    i: usize,
    needs: &Needs,
    now: Instant,
) -> Result<bool, Reason> {
    if let Some(r) = ch.permanent.or_else(|| entry_permanent(e, needs)) {
        return Err(r);
    }
    entry_after_permanent(snap, local, ch, e, i, now)
}
