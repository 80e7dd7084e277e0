//! Ranks the catalog entries that may serve one request: resolve the model expression to
//! entries, drop those a filter rules out (recording why), score the rest with the request's
//! strategy, order them (priority tier first, then score; near-ties spread by smooth weighted
//! round-robin on channel `weight`), and hand `proxy` the order to try them in.
//!
//! Filters, in order: channel disabled · address not resolved · provider excluded · embedding
//! model · missing capability (vision if the request has images, tools if it has tools, JSON
//! mode if asked, plus `required_capabilities`) · context smaller than the estimated prompt
//! tokens plus `max_tokens` · price above `max_cost_per_1k` (the larger of input and output
//! price per 1K tokens; unknown prices fail a cap) · channel or model cooling down · half-open
//! trial already in flight on this worker · `min_request_interval` · `max_concurrent` (its
//! share per worker).
//!
//! Invariants: pure and synchronous: the caller passes `now`, the worker's [`Local`] view and
//! a `bumpalo` arena reset per request; ranking never touches the heap (proved by a
//! counting-allocator test) and never does I/O or logging.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bumpalo::Bump;
use bumpalo::collections::Vec as BVec;

use crate::catalog::Entry;
use crate::catalog::select::{match_query, reachable_tags, size_ok};
use crate::error::{Error, Kind};
use crate::expr::Caps;
use crate::expr::{self, Expr};
use crate::live::health::{Health, Outcome, State, Why};
use crate::live::{Live, apply_outcome};
use crate::snapshot::Snapshot;
use crate::strategy::{self as score, Options, SubScores, Weights};

/// Output tokens assumed when a request sets no `max_tokens` (for cost estimates).
pub(crate) const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// What routing needs to know about one request.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    /// The model expression.
    pub model: &'a str,
    /// Capabilities the body needs.
    pub needs: Caps,
    /// Estimated prompt tokens.
    pub prompt_tokens: u32,
    /// `max_tokens` / `max_completion_tokens`.
    pub max_tokens: Option<u32>,
    /// Streaming (speed uses time to first token).
    pub stream: bool,
    /// Strategy named by the request.
    pub strategy: Option<&'a str>,
    /// Router options from the request.
    pub options: &'a Options,
    /// The entries the client's key may reach (`None`: every one); see [`allowance`].
    pub allowed: Option<&'a [u64]>,
}

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
    /// Cooling down.
    Cooling {
        /// Until then.
        until: Instant,
        /// What took it out of rotation.
        why: Why,
    },
    /// A half-open trial is already in flight on this worker.
    TrialInFlight,
    /// Used less than `min_request_interval` ago.
    MinInterval,
    /// At its `max_concurrent` share.
    Busy,
}

impl Reason {
    /// Short text for messages and the dry run.
    pub(crate) fn describe(&self, now: Instant) -> String {
        match self {
            Reason::Disabled => "disabled".into(),
            Reason::QuotaSpent => "daily quota spent (resets 00:00 UTC)".into(),
            Reason::Unresolved => "upstream address not resolved yet".into(),
            Reason::Excluded => "provider excluded".into(),
            Reason::Embedding => "embedding model".into(),
            Reason::NotEmbedding => "not an embedding model".into(),
            Reason::Lacks(c) => format!("lacks {}", c.first_name()),
            Reason::Context { need, have } => {
                format!("context {have} tokens < {need} needed")
            }
            Reason::PriceCap => "above max_cost_per_1k".into(),
            Reason::PriceUnknown => "price unknown (max_cost_per_1k set)".into(),
            Reason::Cooling { until, why } => format!(
                "cooling down for {:.1}s ({})",
                until.saturating_duration_since(now).as_secs_f64(),
                why.as_str()
            ),
            Reason::TrialInFlight => "half-open trial in flight".into(),
            Reason::MinInterval => "min_request_interval".into(),
            Reason::Busy => "max_concurrent reached".into(),
        }
    }
}

/// A ranked candidate.
#[derive(Debug, Clone, Copy)]
pub struct Scored {
    /// Entry index.
    pub entry: u32,
    /// Its channel's priority tier.
    pub priority: i32,
    /// Weighted total in [0, 1].
    pub score: f32,
    /// The sub-scores.
    pub scores: SubScores,
    /// This attempt is the channel's half-open trial.
    pub half_open: bool,
}

/// A matched entry that was filtered out.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rejected {
    /// Entry index.
    pub entry: u32,
    /// Why the entry is not a candidate.
    pub reason: Reason,
}

/// The outcome of ranking one request.
#[derive(Debug)]
pub struct Ranking<'b> {
    /// The strategy used.
    pub strategy: &'b str,
    /// Candidates in the order to try them.
    pub candidates: BVec<'b, Scored>,
    /// Matched entries that were filtered out.
    pub(crate) rejected: BVec<'b, Rejected>,
    /// Entries the expression matched (candidates before truncation plus rejected).
    pub matched: usize,
}

/// The worker's own view, overlaid on the published live state: its latest outcomes (applied
/// at once, before the control thread republishes), half-open trials, last use and in-flight
/// counts per channel, and the weighted round-robin state.
#[derive(Debug, Default)]
pub struct Local {
    generation: u64,
    channels: Vec<Health>,
    entries: Vec<Health>,
    trials: Vec<bool>,
    last_used: Vec<Option<Instant>>,
    in_flight: Vec<u32>,
    /// Smooth weighted round-robin "current weight" per channel.
    swrr: Vec<f32>,
}

impl Local {
    /// Resets the view when the catalog changed shape.
    pub(crate) fn sync(&mut self, snap: &Snapshot) {
        let g = snap.catalog.generation;
        let (nc, ne) = (snap.channels.len(), snap.catalog.entries.len());
        if self.generation != g || self.channels.len() != nc || self.entries.len() != ne {
            *self = Local {
                generation: g,
                channels: vec![Health::default(); nc],
                entries: vec![Health::default(); ne],
                trials: vec![false; nc],
                last_used: vec![None; nc],
                in_flight: vec![0; nc],
                swrr: vec![0.0; nc],
            };
        }
    }

    fn channel_health(&self, live: &Live, c: usize) -> Health {
        newer(self.channels.get(c), live.channels.get(c))
    }

    fn entry_health(&self, live: &Live, e: usize) -> Health {
        newer(self.entries.get(e), live.entries.get(e).map(|x| &x.health))
    }

    /// Applies an outcome at once (the control thread will merge the same report).
    pub(crate) fn record(
        &mut self,
        snap: &Snapshot,
        entry: u32,
        outcome: Outcome,
        started: Instant,
        at: Instant,
        until_midnight: Duration,
    ) {
        // An attempt that began on an older catalog says nothing about this one's indices.
        if snap.catalog.generation != self.generation {
            return;
        }
        let e = entry as usize;
        let Some(c) = snap.catalog.entries.get(e).map(|x| x.channel as usize) else {
            return;
        };
        let mut ch = self.channel_health(&snap.live, c);
        let mut en = self.entry_health(&snap.live, e);
        apply_outcome(
            &mut ch,
            &mut en,
            outcome,
            started,
            at,
            &snap.routing.cooldown,
            until_midnight,
        );
        self.channels[c] = ch;
        self.entries[e] = en;
    }

    /// An attempt on `channel` of catalog `generation` starts.
    pub(crate) fn begin(&mut self, generation: u64, channel: u32, half_open: bool, now: Instant) {
        if generation != self.generation {
            return;
        }
        let c = channel as usize;
        if let Some(n) = self.in_flight.get_mut(c) {
            *n += 1;
        }
        if let Some(t) = self.last_used.get_mut(c) {
            *t = Some(now);
        }
        if half_open && let Some(t) = self.trials.get_mut(c) {
            *t = true;
        }
    }

    /// An attempt on `channel` of catalog `generation` ended.
    pub(crate) fn end(&mut self, generation: u64, channel: u32, half_open: bool) {
        if generation != self.generation {
            return;
        }
        let c = channel as usize;
        if let Some(n) = self.in_flight.get_mut(c) {
            *n = n.saturating_sub(1);
        }
        if half_open && let Some(t) = self.trials.get_mut(c) {
            *t = false;
        }
    }
}

fn newer(a: Option<&Health>, b: Option<&Health>) -> Health {
    match (a, b) {
        (Some(a), Some(b)) => {
            if a.updated > b.updated {
                *a
            } else {
                *b
            }
        }
        (Some(x), None) | (None, Some(x)) => *x,
        (None, None) => Health::default(),
    }
}

impl Ranking<'_> {
    /// The 503 for a ranking whose every match was filtered out (`None` when some survived).
    pub(crate) fn unusable(
        &self,
        snap: &Snapshot,
        model: &str,
        now: Instant,
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
        Some(RouteError::Unusable(unusable(
            snap,
            model,
            &self.rejected,
            now,
        )))
    }
}

/// Why ranking produced no candidate list.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// The expression does not parse, or names an unknown strategy (400).
    Invalid(String),
    /// Nothing matches the expression (404).
    NotFound(String),
    /// Entries matched but every one was filtered out (503).
    Unusable(String),
    /// Entries matched, but the client's key may use none of them (403).
    Forbidden(String),
}

impl RouteError {
    /// The client-facing error.
    pub(crate) fn into_error(self) -> Error {
        match self {
            RouteError::Invalid(m) => {
                Error::new(400, Kind::InvalidRequest, "invalid_model_expression", m)
            }
            RouteError::NotFound(m) => Error::new(404, Kind::InvalidRequest, "model_not_found", m),
            RouteError::Unusable(m) => Error::new(503, Kind::Server, "no_usable_channel", m),
            RouteError::Forbidden(m) => Error::new(403, Kind::Permission, "model_not_allowed", m),
        }
    }
}

/// Ranks the candidates for `ask`. `dry_run` leaves the round-robin state untouched. When
/// entries matched but every one was filtered out, the ranking has no candidates and lists the
/// rejections (see [`Ranking::unusable`]).
pub fn rank<'b>(
    snap: &Snapshot,
    local: &mut Local,
    ask: &Ask<'_>,
    now: Instant,
    arena: &'b Bump,
    dry_run: bool,
) -> Result<Ranking<'b>, RouteError> {
    local.sync(snap);
    let cat = &*snap.catalog;
    let parsed = expr::parse(ask.model).map_err(|e| {
        RouteError::Invalid(format!(
            "Cannot read the model expression `{}`: {e}.",
            short(ask.model)
        ))
    })?;

    // Resolve a group to its query, strategy and options.
    let mut strategy_name = ask.strategy;
    let mut group_options = None;
    let resolved = match parsed {
        Expr::Group(name) => {
            let g = cat.group(name).ok_or_else(|| {
                let known: Vec<&str> = cat.group_names().collect();
                RouteError::NotFound(format!(
                    "No group `{}` is configured{}.",
                    short(name),
                    if known.is_empty() {
                        "; add one as [groups.\"auto:NAME\"] with a query".to_string()
                    } else {
                        format!("; configured groups: {}", known.join(", "))
                    }
                ))
            })?;
            strategy_name = strategy_name.or(g.config.strategy.as_deref());
            group_options = Some(&g.config.options);
            expr::parse(&g.query)
                .map_err(|e| RouteError::Invalid(format!("group `{}`: {e}", g.name)))?
        }
        other => other,
    };
    let strategy = strategy_name.unwrap_or(&snap.routing.default_strategy);
    let mut weights = weights_for(snap, strategy).ok_or_else(|| {
        RouteError::Invalid(format!(
            "Unknown strategy `{}`; built-in: {}{}.",
            short(strategy),
            score::BUILTIN
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", "),
            if snap.strategies.is_empty() {
                String::new()
            } else {
                format!(
                    "; configured: {}",
                    snap.strategies
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        ))
    })?;

    // Effective options: the request's, tightened by the group's.
    let opts = ask.options;
    let required = ask
        .needs
        .union(opts.required)
        .union(group_options.map_or(Caps::NONE, |g| g.required));
    let max_cost = match (
        opts.max_cost_per_1k,
        group_options.and_then(|g| g.max_cost_per_1k),
    ) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if opts
        .prefer_local
        .or(group_options.and_then(|g| g.prefer_local))
        == Some(true)
    {
        weights = weights.preferring_local();
    }
    let excluded = |provider: &str| {
        opts.exclude_providers
            .iter()
            .chain(
                group_options
                    .iter()
                    .flat_map(|g| g.exclude_providers.iter()),
            )
            .any(|x| x.eq_ignore_ascii_case(provider))
    };

    // Matching entries as a bitset in the arena.
    let words = arena.alloc_slice_fill_copy(cat.all().len(), 0u64);
    let mut size_misses = 0usize;
    let filters = match &resolved {
        Expr::Name(name) => {
            if let Some(ids) = cat.lookup(name) {
                for &i in ids {
                    words[i as usize / 64] |= 1 << (i % 64);
                }
            } else if let Some(t) = cat.tag(name) {
                words.copy_from_slice(cat.posting(t).words());
            } else {
                return Err(RouteError::NotFound(not_found_name(
                    snap,
                    name,
                    ask.allowed,
                )));
            }
            None
        }
        Expr::Query(q) => {
            match_query(cat, q, words, ask.allowed).map_err(RouteError::NotFound)?;
            Some(q)
        }
        Expr::Group(_) => {
            return Err(RouteError::Invalid(
                "a group's query cannot be another group".into(),
            ));
        }
    };

    if let Some(allowed) = ask.allowed {
        let matched = words.iter().any(|&w| w != 0);
        for (w, a) in words.iter_mut().zip(allowed) {
            *w &= a;
        }
        if matched && words.iter().all(|&w| w == 0) {
            return Err(RouteError::Forbidden(format!(
                "This API key may not use `{}`; its allowance does not include any model that matches.",
                short(ask.model)
            )));
        }
    }

    let tokens_needed = ask
        .prompt_tokens
        .saturating_add(ask.max_tokens.unwrap_or(0));
    let mut candidates = BVec::with_capacity_in(16, arena);
    let mut rejected = BVec::new_in(arena);
    let live = &*snap.live;
    let verdicts = arena.alloc_slice_fill_copy(snap.channels.len(), None::<Result<bool, Reason>>);
    crate::catalog::tags::for_each_bit(words, |i| {
        let e = &cat.entries[i];
        if let Some(q) = filters
            && !size_ok(e, q)
        {
            size_misses += 1;
            return;
        }
        let c = e.channel as usize;
        let channel =
            *verdicts[c].get_or_insert_with(|| channel_verdict(snap, local, c, &excluded, now));
        let reason = channel.and_then(|channel_half_open| {
            entry_verdict(snap, local, e, i, required, tokens_needed, max_cost, now)
                .map(|entry_half_open| channel_half_open || entry_half_open)
        });
        match reason {
            Err(r) => rejected.push(Rejected {
                entry: i as u32,
                reason: r,
            }),
            Ok(half_open) => {
                let s = sub_scores(e, live.entries.get(i), ask);
                candidates.push(Scored {
                    entry: i as u32,
                    priority: snap.channels[e.channel as usize].priority,
                    score: weights.total(&s),
                    scores: s,
                    half_open,
                });
            }
        }
    });

    if candidates.is_empty() && rejected.is_empty() {
        let mut msg = format!("No model matches `{}`", short(ask.model));
        if size_misses > 0 {
            let _ = write!(
                msg,
                ": {size_misses} matched the tags but not the size filters"
            );
        } else if let Some(q) = filters {
            // Say how many models each tag has, so the empty intersection is visible.
            let counts: Vec<(&str, usize)> = q
                .pos
                .iter()
                .map(|t| (*t, cat.tag(t).map_or(0, |id| cat.posting(id).count())))
                .collect();
            let said: Vec<String> = counts
                .iter()
                .map(|(t, n)| format!("`{}` has {n}", short(t)))
                .collect();
            match counts.as_slice() {
                [] => {}
                [(t, 0)] => {
                    let _ = write!(msg, ": no model has the tag `{}`", short(t));
                }
                [(_, n)] => {
                    let _ = write!(
                        msg,
                        ": its {n} model(s) are all excluded by the query's other terms"
                    );
                }
                _ if counts.iter().any(|(_, n)| *n == 0) => {
                    let _ = write!(msg, ": {}", said.join(", "));
                }
                _ => {
                    let _ = write!(msg, ": {}, but no model has all of them", said.join(", "));
                }
            }
        }
        msg.push('.');
        return Err(RouteError::NotFound(msg));
    }

    // Order: priority tier first (higher first), then score; entry index keeps it
    // deterministic. A request only needs its first `max_attempts` candidates, so outside a dry
    // run the order is built by selection (O(n)) rather than a full sort.
    let by_rank = |a: &Scored, b: &Scored| {
        b.priority
            .cmp(&a.priority)
            .then(b.score.total_cmp(&a.score))
            .then(a.entry.cmp(&b.entry))
    };
    let matched = candidates.len() + rejected.len();
    if dry_run || candidates.len() <= 1 {
        candidates.sort_unstable_by(by_rank);
    } else {
        // Near-ties of the best are spread by smooth weighted round-robin on channel weight.
        let best = (0..candidates.len())
            .min_by(|&a, &b| by_rank(&candidates[a], &candidates[b]))
            .unwrap_or(0);
        let top = candidates[best];
        let eps = snap.routing.tie_epsilon;
        let tied = |s: &Scored| s.priority == top.priority && s.score >= top.score - eps;
        // Round-robin state is per channel: a channel serving several tied models still gets
        // its weight once, and sends its best-ranked tied model.
        let best_of = arena.alloc_slice_fill_copy(snap.channels.len(), u32::MAX);
        for (k, s) in candidates.iter().enumerate() {
            if tied(s) {
                let c = cat.entries[s.entry as usize].channel as usize;
                let cur = best_of[c];
                if cur == u32::MAX || by_rank(s, &candidates[cur as usize]).is_lt() {
                    best_of[c] = k as u32;
                }
            }
        }
        let mut total = 0.0f32;
        let mut chosen = best;
        let mut chosen_channel = usize::MAX;
        let mut chosen_cw = f32::NEG_INFINITY;
        for (c, &k) in best_of.iter().enumerate() {
            if k == u32::MAX {
                continue;
            }
            let w = snap.channels[c].weight as f32;
            total += w;
            local.swrr[c] += w;
            if local.swrr[c] > chosen_cw {
                chosen_cw = local.swrr[c];
                chosen = k as usize;
                chosen_channel = c;
            }
        }
        if chosen_channel != usize::MAX {
            local.swrr[chosen_channel] -= total;
        }
        candidates.swap(0, chosen);
        // Spares beyond max_attempts: the proxy skips the other models of a channel that
        // failed as a whole during the request.
        let limit = (snap.routing.max_attempts + 8).min(20);
        let rest = &mut candidates[1..];
        if limit >= 2 && limit - 1 < rest.len() {
            rest.select_nth_unstable_by(limit - 2, by_rank);
        }
        let keep = rest.len().min(limit.saturating_sub(1));
        rest[..keep].sort_unstable_by(by_rank);
        candidates.truncate(keep + 1);
    }
    Ok(Ranking {
        strategy: arena.alloc_str(strategy),
        candidates,
        rejected,
        matched,
    })
}

fn weights_for(snap: &Snapshot, name: &str) -> Option<Weights> {
    score::builtin(name).or_else(|| {
        snap.strategies
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.weights)
    })
}

/// The channel-level verdict for a candidate: everything that depends only on the channel
/// (computed once per channel per request, however many of its models matched).
fn channel_verdict(
    snap: &Snapshot,
    local: &Local,
    c: usize,
    excluded: &impl Fn(&str) -> bool,
    now: Instant,
) -> Result<bool, Reason> {
    let ch = &snap.channels[c];
    if !ch.enabled {
        return Err(Reason::Disabled);
    }
    if ch.endpoint.addrs.is_empty() {
        return Err(Reason::Unresolved);
    }
    if excluded(&ch.provider) {
        return Err(Reason::Excluded);
    }
    if snap.quota.channel_spent(c) {
        return Err(Reason::QuotaSpent);
    }
    let h = local.channel_health(&snap.live, c);
    let half_open = match h.state(now) {
        State::Cooling(until) => return Err(Reason::Cooling { until, why: h.why }),
        State::HalfOpen => true,
        State::Ok => false,
    };
    if half_open && local.trials.get(c).copied().unwrap_or(false) {
        return Err(Reason::TrialInFlight);
    }
    if !ch.min_request_interval.is_zero()
        && let Some(Some(last)) = local.last_used.get(c)
        && now.saturating_duration_since(*last) < ch.min_request_interval
    {
        return Err(Reason::MinInterval);
    }
    if let Some(share) = ch.max_concurrent_per_worker
        && local.in_flight.get(c).copied().unwrap_or(0) >= share
    {
        return Err(Reason::Busy);
    }
    Ok(half_open)
}

/// The entry-level checks, after its channel passed.
#[allow(clippy::too_many_arguments)]
fn entry_verdict(
    snap: &Snapshot,
    local: &Local,
    e: &Entry,
    i: usize,
    required: Caps,
    tokens_needed: u32,
    max_cost: Option<f64>,
    now: Instant,
) -> Result<bool, Reason> {
    // Embedding requests ask for EMBEDDING; chat requests never can (Caps::parse refuses it).
    match (
        e.caps.contains(Caps::EMBEDDING),
        required.contains(Caps::EMBEDDING),
    ) {
        (true, false) => return Err(Reason::Embedding),
        (false, true) => return Err(Reason::NotEmbedding),
        _ => {}
    }
    let missing = required.missing_from(e.caps);
    if !missing.is_empty() {
        return Err(Reason::Lacks(missing));
    }
    if e.context != 0 && e.context < tokens_needed {
        return Err(Reason::Context {
            need: tokens_needed,
            have: e.context,
        });
    }
    if let Some(cap) = max_cost {
        match e.price {
            None => return Err(Reason::PriceUnknown),
            Some(p) if p.input.max(p.output) / 1000.0 > cap => return Err(Reason::PriceCap),
            Some(_) => {}
        }
    }
    let h = local.entry_health(&snap.live, i);
    match h.state(now) {
        State::Cooling(until) => Err(Reason::Cooling { until, why: h.why }),
        // One trial at a time per channel, whether the channel or this model is half-open.
        State::HalfOpen
            if local
                .trials
                .get(e.channel as usize)
                .copied()
                .unwrap_or(false) =>
        {
            Err(Reason::TrialInFlight)
        }
        State::HalfOpen => Ok(true),
        State::Ok => Ok(false),
    }
}

fn sub_scores(e: &Entry, live: Option<&crate::live::EntryLive>, ask: &Ask<'_>) -> SubScores {
    let cost = e.price.map(|p| {
        (f64::from(ask.prompt_tokens) * p.input
            + f64::from(ask.max_tokens.unwrap_or(DEFAULT_OUTPUT_TOKENS)) * p.output)
            / 1_000_000.0
    });
    let (speed_ms, reliability) = match live {
        Some(l) => {
            let ms = if ask.stream { l.ttft_ms } else { l.latency_ms };
            ((!ms.is_nan()).then_some(ms), l.success)
        }
        None => (None, 1.0),
    };
    SubScores {
        cost: score::cost_score(cost),
        speed: score::speed_score(speed_ms),
        quality: e.quality,
        reliability,
        context: e.context_score,
        parameters: e.parameter_score,
        free: if e.free { 1.0 } else { 0.0 },
        local: if e.local { 1.0 } else { 0.0 },
    }
}

fn short(s: &str) -> &str {
    crate::error::truncate(s, 200)
}

/// The 404 text for a model name nothing serves, with suggestions among the names the
/// client's key may use (`allowed`; never a model outside its allowance).
fn not_found_name(snap: &Snapshot, name: &str, allowed: Option<&[u64]>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Resolved;
    use crate::config::Config;
    use crate::snapshot::Snapshot;
    use std::sync::Arc;

    const CFG: &str = r#"
[routing]
tie_epsilon = 0.0001
[strategies.mine]
quality = 1.0
[groups."auto:cheap-qwen"]
query = "tag:qwen"
strategy = "cost_first"
exclude_providers = ["pricey"]
[providers.cheap]
base_url = "http://203.0.113.1:1/v1"
[providers.pricey]
base_url = "http://203.0.113.2:2/v1"
[providers.local]
kind = "ollama"
base_url = "http://127.0.0.1:3/v1"
[providers.offline]
base_url = "http://203.0.113.4:4/v1"
[[channels]]
id = "cheap"
provider = "cheap"
models = ["gpt-4o-mini", "qwen/qwen3-30b-a3b:free", "text-embedding-3-small"]
pricing = { input = 0.15, output = 0.6 }
aliases = { "fast" = "gpt-4o-mini" }
[[channels]]
id = "pricey"
provider = "pricey"
models = ["gpt-4o", "gpt-4o-mini", "qwen/qwen3-235b-a22b"]
pricing = { input = 2.5, output = 10.0 }
model_info = { "qwen/qwen3-235b-a22b" = { context = "128k", vision = false, tools = false } }
[[channels]]
id = "local"
provider = "local"
models = ["qwen3:8b"]
[[channels]]
id = "offline"
provider = "offline"
enabled = false
models = ["gpt-4o"]
"#;

    fn snap(text: &str) -> Snapshot {
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        Snapshot::build(&cfg, 1, &Resolved::new(), &Default::default(), 1, 1)
    }

    #[derive(Debug)]
    struct R {
        channels: Vec<String>,
        models: Vec<String>,
        rejected: Vec<(String, Reason)>,
        strategy: String,
    }

    fn rank_with(
        s: &Snapshot,
        local: &mut Local,
        model: &str,
        needs: Caps,
        options: &Options,
        strategy: Option<&str>,
    ) -> Result<R, RouteError> {
        let arena = Bump::new();
        let ask = Ask {
            model,
            needs,
            prompt_tokens: 1000,
            max_tokens: None,
            stream: false,
            strategy,
            options,
            allowed: None,
        };
        let r = rank(s, local, &ask, Instant::now(), &arena, false)?;
        let name = |e: u32| {
            let en = &s.catalog.entries[e as usize];
            (
                s.channels[en.channel as usize].id.to_string(),
                en.model.to_string(),
            )
        };
        Ok(R {
            channels: r.candidates.iter().map(|c| name(c.entry).0).collect(),
            models: r.candidates.iter().map(|c| name(c.entry).1).collect(),
            rejected: r
                .rejected
                .iter()
                .map(|x| (name(x.entry).0, x.reason))
                .collect(),
            strategy: r.strategy.to_string(),
        })
    }

    fn r(s: &Snapshot, model: &str) -> R {
        rank_with(
            s,
            &mut Local::default(),
            model,
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap()
    }

    #[test]
    fn exact_ids_aliases_and_segments() {
        let s = snap(CFG);
        let x = r(&s, "gpt-4o-mini");
        assert_eq!(x.channels.len(), 2);
        assert_eq!(
            x.channels[0], "cheap",
            "balanced prefers the cheaper equal model"
        );
        let x = r(&s, "fast");
        assert_eq!(
            (x.channels.clone(), x.models),
            (vec!["cheap".to_string()], vec!["gpt-4o-mini".to_string()])
        );
        // a segment of an id works like a one-tag query
        let x = r(&s, "qwen3");
        assert_eq!(x.models.len(), 3, "{:?}", x.models);
        // disabled channels are matched but filtered, with the reason
        let x = r(&s, "gpt-4o");
        assert_eq!(x.channels, ["pricey"]);
        assert!(
            x.rejected
                .iter()
                .any(|(c, r)| c == "offline" && *r == Reason::Disabled)
        );
    }

    #[test]
    fn an_exact_id_wins_over_an_alias_and_prefixes_are_prefixes() {
        let text = r#"
[providers.x]
base_url = "http://203.0.113.1:1/v1"
[providers.y]
base_url = "http://203.0.113.2:2/v1"
[[channels]]
id = "x"
provider = "x"
models = ["gpt-4o", "meta-llama/llama-3.1-70b-instruct", "meta-llama/llama-3.1-8b-instruct"]
[[channels]]
id = "y"
provider = "y"
models = ["gpt-4o-2024-08-06"]
aliases = { "gpt-4o" = "gpt-4o-2024-08-06", "only-alias" = "gpt-4o-2024-08-06" }
"#;
        let s = snap(text);
        assert_eq!(r(&s, "gpt-4o").channels, ["x"], "exact id first");
        assert_eq!(r(&s, "only-alias").channels, ["y"], "else the alias");
        assert_eq!(
            r(&s, "llama-3.1->8b").models,
            ["meta-llama/llama-3.1-70b-instruct"]
        );
        assert_eq!(r(&s, "llama-3.1->=8b").models.len(), 2);
        // excluding by provider id only (every provider here has kind "openai")
        let ex = Options {
            exclude_providers: vec!["openai".into()],
            ..Default::default()
        };
        let x = rank_with(&s, &mut Local::default(), "gpt-4o", Caps::NONE, &ex, None).unwrap();
        assert_eq!(x.channels, ["x"]);
        // an empty intersection says how many models each tag has
        let e = rank_with(
            &s,
            &mut Local::default(),
            "tag:llama,gpt",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("`llama` has 2") && m.contains("`gpt` has 2")),
            "{e:?}"
        );
        let e = rank_with(
            &s,
            &mut Local::default(),
            "mistral->7b",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("starts with `mistral`")),
            "{e:?}"
        );
    }

    #[test]
    fn tag_queries_negations_and_size_filters() {
        let s = snap(CFG);
        assert_eq!(r(&s, "tag:qwen3,free").models, ["qwen/qwen3-30b-a3b:free"]);
        assert_eq!(r(&s, "TAG:Qwen3,!free").models.len(), 2);
        assert_eq!(r(&s, "tag:qwen,>=30b").models.len(), 2);
        assert_eq!(r(&s, "qwen3->30b").models, ["qwen/qwen3-235b-a22b"]);
        assert_eq!(r(&s, "qwen3->=30b").models.len(), 2, ">= includes 30b");
        assert_eq!(r(&s, "tag:qwen,ctx>=100k").models, ["qwen/qwen3-235b-a22b"]);
        assert_eq!(r(&s, "tag:local").channels, ["local"]);
        let e = rank_with(
            &s,
            &mut Local::default(),
            "tag:qwen,>=1000b",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("size filters")),
            "{e:?}"
        );
    }

    #[test]
    fn unknown_names_and_tags_are_404_with_the_closest() {
        let s = snap(CFG);
        let e = rank_with(
            &s,
            &mut Local::default(),
            "gpt-4o-mnii",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("`gpt-4o-mini`")),
            "{e:?}"
        );
        let e = rank_with(
            &s,
            &mut Local::default(),
            "tag:qwne",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("Closest tag: `qwen`")),
            "{e:?}"
        );
        let e = rank_with(
            &s,
            &mut Local::default(),
            "tag:a,,b",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(matches!(e, RouteError::Invalid(_)));
        let e = rank_with(
            &s,
            &mut Local::default(),
            "auto:nope",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::NotFound(m) if m.contains("auto:cheap-qwen")),
            "{e:?}"
        );
        let e = rank_with(
            &s,
            &mut Local::default(),
            "gpt-4o",
            Caps::NONE,
            &Options::default(),
            Some("fastest"),
        )
        .unwrap_err();
        assert!(
            matches!(&e, RouteError::Invalid(m) if m.contains("Unknown strategy")),
            "{e:?}"
        );
    }

    #[test]
    fn capability_context_price_and_provider_filters() {
        let s = snap(CFG);
        let mut l = Local::default();
        let x = rank_with(
            &s,
            &mut l,
            "tag:qwen",
            Caps::TOOLS,
            &Options::default(),
            None,
        )
        .unwrap();
        assert!(!x.models.contains(&"qwen/qwen3-235b-a22b".to_string()));
        assert!(
            x.rejected
                .iter()
                .any(|(c, r)| c == "pricey" && *r == Reason::Lacks(Caps::TOOLS))
        );
        let x = rank_with(
            &s,
            &mut l,
            "gpt-4o-mini",
            Caps::VISION,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(x.channels.len(), 2, "gpt-4o-mini takes images");
        let x = rank_with(
            &s,
            &mut l,
            "tag:qwen3",
            Caps::VISION,
            &Options::default(),
            None,
        )
        .unwrap();
        assert!(x.channels.is_empty() && x.rejected.len() == 3);
        let x = rank_with(
            &s,
            &mut l,
            "text-embedding-3-small",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(x.rejected[0].1, Reason::Embedding);
        // price cap: per 1K tokens, the larger of input and output
        let cap = Options {
            max_cost_per_1k: Some(0.001),
            ..Default::default()
        };
        let x = rank_with(&s, &mut l, "gpt-4o-mini", Caps::NONE, &cap, None).unwrap();
        assert_eq!(x.channels, ["cheap"]);
        assert!(
            x.rejected
                .iter()
                .any(|(c, r)| c == "pricey" && *r == Reason::PriceCap)
        );
        let ex = Options {
            exclude_providers: vec!["CHEAP".into()],
            ..Default::default()
        };
        let x = rank_with(&s, &mut l, "gpt-4o-mini", Caps::NONE, &ex, None).unwrap();
        assert_eq!(x.channels, ["pricey"]);
        // context: a request bigger than the window is filtered
        let arena = Bump::new();
        let opts = Options::default();
        let ask = Ask {
            model: "qwen/qwen3-235b-a22b",
            needs: Caps::NONE,
            prompt_tokens: 120_000,
            max_tokens: Some(10_000),
            stream: false,
            strategy: None,
            options: &opts,
            allowed: None,
        };
        let rk = rank(&s, &mut l, &ask, Instant::now(), &arena, false).unwrap();
        assert!(matches!(
            rk.rejected[0].reason,
            Reason::Context {
                need: 130_000,
                have: 128_000
            }
        ));
        let err = rk
            .unusable(&s, "qwen/qwen3-235b-a22b", Instant::now())
            .unwrap();
        assert!(
            matches!(&err, RouteError::Unusable(m) if m.contains("context 128000 tokens < 130000 needed")),
            "{err:?}"
        );
    }

    #[test]
    fn strategies_decide_the_order() {
        let s = snap(CFG);
        let mut l = Local::default();
        let none = Options::default();
        assert_eq!(
            rank_with(
                &s,
                &mut l,
                "tag:qwen",
                Caps::NONE,
                &none,
                Some("quality_first")
            )
            .unwrap()
            .models[0],
            "qwen/qwen3-235b-a22b"
        );
        assert_eq!(
            rank_with(
                &s,
                &mut l,
                "tag:qwen",
                Caps::NONE,
                &none,
                Some("free_first")
            )
            .unwrap()
            .models[0],
            "qwen/qwen3-30b-a3b:free"
        );
        // `qwen3:8b` has the tag qwen3 (not qwen)
        assert_eq!(
            rank_with(
                &s,
                &mut l,
                "tag:qwen3",
                Caps::NONE,
                &none,
                Some("local_first")
            )
            .unwrap()
            .models[0],
            "qwen3:8b"
        );
        assert_eq!(
            rank_with(
                &s,
                &mut l,
                "tag:qwen3",
                Caps::NONE,
                &none,
                Some("quality_first")
            )
            .unwrap()
            .models[0],
            "qwen/qwen3-235b-a22b"
        );
        let prefer = Options {
            prefer_local: Some(true),
            ..Default::default()
        };
        assert_eq!(
            rank_with(
                &s,
                &mut l,
                "tag:qwen3",
                Caps::NONE,
                &prefer,
                Some("quality_first")
            )
            .unwrap()
            .models[0],
            "qwen3:8b"
        );
        // a user-defined strategy
        let x = rank_with(&s, &mut l, "gpt-4o-mini", Caps::NONE, &none, Some("mine")).unwrap();
        assert_eq!(x.strategy, "mine");
        // a group brings its query, strategy and filters
        let x = rank_with(&s, &mut l, "auto:cheap-qwen", Caps::NONE, &none, None).unwrap();
        assert_eq!(x.strategy, "cost_first");
        assert!(
            !x.channels.contains(&"pricey".to_string()),
            "the group excludes pricey"
        );
        assert_eq!(x.models[0], "qwen/qwen3-30b-a3b:free");
    }

    #[test]
    fn speed_uses_live_latency() {
        let s = snap(CFG);
        let mini: Vec<usize> = s
            .catalog
            .entries
            .iter()
            .enumerate()
            .filter(|(_, e)| &*e.model == "gpt-4o-mini")
            .map(|(i, _)| i)
            .collect();
        let mut live = (*s.live).clone();
        live.entries[mini[0]].latency_ms = 3000.0; // cheap is slow
        live.entries[mini[1]].latency_ms = 100.0;
        let s = s.with_live(2, Arc::new(live));
        let x = rank_with(
            &s,
            &mut Local::default(),
            "gpt-4o-mini",
            Caps::NONE,
            &Options::default(),
            Some("speed_first"),
        )
        .unwrap();
        assert_eq!(x.channels[0], "pricey");
        let x = rank_with(
            &s,
            &mut Local::default(),
            "gpt-4o-mini",
            Caps::NONE,
            &Options::default(),
            Some("cost_first"),
        )
        .unwrap();
        assert_eq!(x.channels[0], "cheap", "weights are not ignored");
    }

    #[test]
    fn priority_tiers_come_first() {
        let s = snap(&CFG.replace("id = \"pricey\"\n", "id = \"pricey\"\npriority = 5\n"));
        let x = r(&s, "gpt-4o-mini");
        assert_eq!(
            x.channels,
            ["pricey", "cheap"],
            "the higher tier wins over a better score"
        );
    }

    #[test]
    fn cooldowns_half_open_trials_intervals_and_concurrency() {
        let s = snap(&CFG.replace(
            "id = \"cheap\"\n",
            "id = \"cheap\"\nmin_request_interval = \"10s\"\nmax_concurrent = 1\n",
        ));
        let mut l = Local::default();
        let now = Instant::now();
        let entry = s.catalog.lookup("fast").unwrap()[0];
        l.sync(&s);
        l.record(&s, entry, Outcome::Transient, now, now, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "gpt-4o-mini",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(x.channels, ["pricey"]);
        assert!(matches!(
            x.rejected[0].1,
            Reason::Cooling {
                why: Why::Failing,
                ..
            }
        ));
        // after the cooldown: half-open, one trial at a time
        let later = now + Duration::from_secs(5);
        let arena = Bump::new();
        let opts = Options::default();
        let ask = Ask {
            model: "fast",
            needs: Caps::NONE,
            prompt_tokens: 10,
            max_tokens: None,
            stream: false,
            strategy: None,
            options: &opts,
            allowed: None,
        };
        let rk = rank(&s, &mut l, &ask, later, &arena, false).unwrap();
        assert!(rk.candidates[0].half_open);
        l.begin(1, 0, true, later);
        let rk = rank(&s, &mut l, &ask, later, &arena, false).unwrap();
        assert!(rk.candidates.is_empty());
        assert_eq!(rk.rejected[0].reason, Reason::TrialInFlight);
        l.end(1, 0, true);
        // a success heals; the channel was just used, so min_request_interval applies
        l.record(&s, entry, Outcome::Success, later, later, Duration::ZERO);
        let rk = rank(
            &s,
            &mut l,
            &ask,
            later + Duration::from_secs(1),
            &arena,
            false,
        )
        .unwrap();
        assert_eq!(rk.rejected[0].reason, Reason::MinInterval);
        let rk = rank(
            &s,
            &mut l,
            &ask,
            later + Duration::from_secs(11),
            &arena,
            false,
        )
        .unwrap();
        assert!(!rk.candidates.is_empty() && !rk.candidates[0].half_open);
        l.begin(1, 0, false, later + Duration::from_secs(11));
        let rk = rank(
            &s,
            &mut l,
            &ask,
            later + Duration::from_secs(30),
            &arena,
            false,
        )
        .unwrap();
        assert_eq!(
            rk.rejected[0].reason,
            Reason::Busy,
            "max_concurrent = 1 with one in flight"
        );
        // a 404 cools only that model of the channel
        let mut l = Local::default();
        l.sync(&s);
        let qwen = s.catalog.lookup("qwen/qwen3-30b-a3b:free").unwrap()[0];
        let t = Instant::now();
        l.record(&s, qwen, Outcome::ModelMissing, t, t, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "qwen/qwen3-30b-a3b:free",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert!(
            matches!(
                x.rejected[0].1,
                Reason::Cooling {
                    why: Why::ModelMissing,
                    ..
                }
            ),
            "{x:?}"
        );
        let x = rank_with(&s, &mut l, "fast", Caps::NONE, &Options::default(), None).unwrap();
        assert_eq!(
            x.channels,
            ["cheap"],
            "the channel's other models still serve"
        );
    }

    #[test]
    fn near_ties_spread_by_weight() {
        let text = r#"
[providers.a]
base_url = "http://127.0.0.1:1/v1"
[providers.b]
base_url = "http://127.0.0.1:2/v1"
[[channels]]
id = "a"
provider = "a"
models = ["m"]
weight = 3.0
[[channels]]
id = "b"
provider = "b"
models = ["m"]
"#;
        let s = snap(text);
        let mut l = Local::default();
        let mut firsts = Vec::new();
        for _ in 0..8 {
            let x = rank_with(&s, &mut l, "m", Caps::NONE, &Options::default(), None).unwrap();
            assert_eq!(x.channels.len(), 2, "both stay in the failover list");
            firsts.push(x.channels[0].clone());
        }
        assert_eq!(firsts.iter().filter(|c| *c == "a").count(), 6, "{firsts:?}");
        // a channel serving two tied models still counts its weight once
        let two = r#"
[providers.a]
base_url = "http://203.0.113.1:1/v1"
[providers.b]
base_url = "http://203.0.113.2:2/v1"
[[channels]]
id = "a"
provider = "a"
models = ["foo-1", "foo-2"]
[[channels]]
id = "b"
provider = "b"
models = ["foo-1"]
weight = 2.0
"#;
        let s = snap(two);
        let mut l = Local::default();
        let mut b = 0;
        for _ in 0..30 {
            let x =
                rank_with(&s, &mut l, "tag:foo", Caps::NONE, &Options::default(), None).unwrap();
            if x.channels[0] == "b" {
                b += 1;
            }
        }
        assert_eq!(b, 20, "b has 2/3 of the weight");
        assert!(
            firsts[..4].contains(&"b".to_string()),
            "smooth: b gets its turn every 4: {firsts:?}"
        );
    }
}
