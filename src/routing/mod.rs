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

pub mod expr;
pub mod health;
pub mod score;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use bumpalo::Bump;
use bumpalo::collections::Vec as BVec;

use crate::catalog::{Caps, Catalog, Entry};
use crate::error::{Error, Kind};
use crate::live::{Live, apply_outcome};
use crate::snapshot::Snapshot;
use expr::{Dim, Expr, Query};
use health::{Health, Outcome, State, Why};
use score::{SubScores, Weights};

/// Output tokens assumed when a request sets no `max_tokens` (for cost estimates).
pub const DEFAULT_OUTPUT_TOKENS: u32 = 256;

/// Router options: from the request (body fields or `x-router-*` headers) or a group.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Options {
    /// Capabilities every candidate must have.
    pub required: Caps,
    /// Price cap: USD per 1K tokens, compared with the larger of input and output price.
    pub max_cost_per_1k: Option<f64>,
    /// Prefer local endpoints.
    pub prefer_local: Option<bool>,
    /// Provider ids (or kinds) never to use.
    pub exclude_providers: Vec<String>,
}

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
}

/// Why a matched entry is not a candidate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reason {
    /// The channel is disabled.
    Disabled,
    /// Its host name has no address yet.
    Unresolved,
    /// Its provider is excluded by the request.
    Excluded,
    /// An embedding model (never serves chat).
    Embedding,
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
        /// Why.
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
    pub fn describe(&self, now: Instant) -> String {
        match self {
            Reason::Disabled => "disabled".into(),
            Reason::Unresolved => "upstream address not resolved yet".into(),
            Reason::Excluded => "provider excluded".into(),
            Reason::Embedding => "embedding model".into(),
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
    /// Weighted total in [0, 1].
    pub score: f32,
    /// The sub-scores.
    pub scores: SubScores,
    /// This attempt is the channel's half-open trial.
    pub half_open: bool,
}

/// A matched entry that was filtered out.
#[derive(Debug, Clone, Copy)]
pub struct Rejected {
    /// Entry index.
    pub entry: u32,
    /// Why.
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
    pub rejected: BVec<'b, Rejected>,
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
    swrr: Vec<f32>,
}

impl Local {
    /// Resets the view when the catalog changed shape.
    pub fn sync(&mut self, snap: &Snapshot) {
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
                swrr: vec![0.0; ne],
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
    pub fn record(
        &mut self,
        snap: &Snapshot,
        entry: u32,
        outcome: Outcome,
        at: Instant,
        until_midnight: Duration,
    ) {
        self.sync(snap);
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
            at,
            &snap.routing.cooldown,
            until_midnight,
        );
        self.channels[c] = ch;
        self.entries[e] = en;
    }

    /// An attempt on `channel` starts.
    pub fn begin(&mut self, channel: u32, half_open: bool, now: Instant) {
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

    /// An attempt on `channel` ended.
    pub fn end(&mut self, channel: u32, half_open: bool) {
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

/// Why ranking produced no candidate list.
#[derive(Debug, Clone, PartialEq)]
pub enum RouteError {
    /// The expression does not parse, or names an unknown strategy (400).
    Invalid(String),
    /// Nothing matches the expression (404).
    NotFound(String),
    /// Entries matched but every one was filtered out (503).
    Unusable(String),
}

impl RouteError {
    /// The client-facing error.
    pub fn into_error(self) -> Error {
        match self {
            RouteError::Invalid(m) => {
                Error::new(400, Kind::InvalidRequest, "invalid_model_expression", m)
            }
            RouteError::NotFound(m) => Error::new(404, Kind::InvalidRequest, "model_not_found", m),
            RouteError::Unusable(m) => Error::new(503, Kind::Server, "no_usable_channel", m),
        }
    }
}

/// Ranks the candidates for `ask`. `dry_run` leaves the round-robin state untouched.
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
    let excluded = |provider: &str, kind: &str| {
        opts.exclude_providers
            .iter()
            .chain(
                group_options
                    .iter()
                    .flat_map(|g| g.exclude_providers.iter()),
            )
            .any(|x| x.eq_ignore_ascii_case(provider) || x.eq_ignore_ascii_case(kind))
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
                return Err(RouteError::NotFound(not_found_name(snap, name)));
            }
            None
        }
        Expr::Query(q) => {
            match_query(cat, q, words).map_err(RouteError::NotFound)?;
            Some(q)
        }
        Expr::Group(_) => {
            return Err(RouteError::Invalid(
                "a group's query cannot be another group".into(),
            ));
        }
    };

    let tokens_needed = ask
        .prompt_tokens
        .saturating_add(ask.max_tokens.unwrap_or(0));
    let mut candidates = BVec::with_capacity_in(16, arena);
    let mut rejected = BVec::new_in(arena);
    let live = &*snap.live;
    tags_for_each(words, |i| {
        let e = &cat.entries[i];
        if let Some(q) = filters
            && !size_ok(e, q)
        {
            size_misses += 1;
            return;
        }
        let reason = filter(
            snap,
            local,
            e,
            i,
            required,
            tokens_needed,
            max_cost,
            &excluded,
            now,
        );
        match reason {
            Err(r) => rejected.push(Rejected {
                entry: i as u32,
                reason: r,
            }),
            Ok(half_open) => {
                let s = sub_scores(e, live.entries.get(i), ask, snap);
                candidates.push(Scored {
                    entry: i as u32,
                    score: weights.total(&s),
                    scores: s,
                    half_open,
                });
            }
        }
    });

    if candidates.is_empty() {
        if rejected.is_empty() {
            return Err(RouteError::NotFound(format!(
                "No model matches `{}`{}.",
                short(ask.model),
                if size_misses > 0 {
                    format!(" ({size_misses} matched the tags but not the size filters)")
                } else {
                    String::new()
                }
            )));
        }
        return Err(RouteError::Unusable(unusable(
            snap, ask.model, &rejected, now,
        )));
    }

    // Priority tier first (higher first), then score; entry index keeps it deterministic.
    let prio = |s: &Scored| snap.channels[cat.entries[s.entry as usize].channel as usize].priority;
    candidates.sort_unstable_by(|a, b| {
        prio(b)
            .cmp(&prio(a))
            .then(b.score.total_cmp(&a.score))
            .then(a.entry.cmp(&b.entry))
    });
    // Spread near-ties by smooth weighted round-robin on channel weight.
    let eps = snap.routing.tie_epsilon;
    let mut start = 0;
    while start < candidates.len() {
        let top = candidates[start];
        let mut end = start + 1;
        while end < candidates.len()
            && prio(&candidates[end]) == prio(&top)
            && candidates[end].score >= top.score - eps
        {
            end += 1;
        }
        if end - start > 1 && !dry_run {
            let weight = |s: &Scored| {
                snap.channels[cat.entries[s.entry as usize].channel as usize].weight as f32
            };
            let group = &mut candidates[start..end];
            let total: f32 = group.iter().map(weight).sum();
            let mut best = 0;
            for (k, s) in group.iter().enumerate() {
                let cw = &mut local.swrr[s.entry as usize];
                *cw += weight(s);
                if *cw > local.swrr[group[best].entry as usize] {
                    best = k;
                }
            }
            local.swrr[group[best].entry as usize] -= total;
            group[..=best].rotate_right(1);
        }
        start = end;
    }
    Ok(Ranking {
        strategy: arena.alloc_str(strategy),
        candidates,
        rejected,
    })
}

fn tags_for_each(words: &[u64], f: impl FnMut(usize)) {
    crate::catalog::tags::for_each_bit(words, f);
}

fn weights_for(snap: &Snapshot, name: &str) -> Option<Weights> {
    score::builtin(name).or_else(|| {
        snap.strategies
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.weights)
    })
}

/// ANDs the query's positive tags (most selective first) and removes negatives.
fn match_query(cat: &Catalog, q: &Query<'_>, words: &mut [u64]) -> Result<(), String> {
    let mut pos: arrayvec::ArrayVec<(u32, u32), { expr::MAX_TERMS }> = arrayvec::ArrayVec::new();
    for t in &q.pos {
        match cat.tag(t) {
            Some(id) => pos.push((cat.posting(id).count() as u32, id)),
            None => return Err(unknown_tag(cat, t)),
        }
    }
    pos.sort_unstable();
    match pos.first() {
        Some(&(_, id)) => words.copy_from_slice(cat.posting(id).words()),
        None => words.copy_from_slice(cat.all()),
    }
    for &(_, id) in pos.iter().skip(1) {
        for (w, p) in words.iter_mut().zip(cat.posting(id).words()) {
            *w &= p;
        }
    }
    for t in &q.neg {
        if let Some(id) = cat.tag(t) {
            for (w, p) in words.iter_mut().zip(cat.posting(id).words()) {
                *w &= !p;
            }
        }
    }
    Ok(())
}

fn size_ok(e: &Entry, q: &Query<'_>) -> bool {
    q.filters.iter().all(|f| {
        let value = match f.dim {
            Dim::Params => u64::from(e.params_m),
            Dim::Context => u64::from(e.context),
        };
        value != 0 && f.cmp.holds(value, f.value)
    })
}

#[allow(clippy::too_many_arguments)]
fn filter(
    snap: &Snapshot,
    local: &Local,
    e: &Entry,
    i: usize,
    required: Caps,
    tokens_needed: u32,
    max_cost: Option<f64>,
    excluded: &impl Fn(&str, &str) -> bool,
    now: Instant,
) -> Result<bool, Reason> {
    let c = e.channel as usize;
    let ch = &snap.channels[c];
    if !ch.enabled {
        return Err(Reason::Disabled);
    }
    if ch.endpoint.addrs.is_empty() {
        return Err(Reason::Unresolved);
    }
    if excluded(&ch.provider, &ch.kind) {
        return Err(Reason::Excluded);
    }
    if e.caps.contains(Caps::EMBEDDING) {
        return Err(Reason::Embedding);
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
    let mut half_open = false;
    for h in [
        local.channel_health(&snap.live, c),
        local.entry_health(&snap.live, i),
    ] {
        match h.state(now) {
            State::Cooling(until) => return Err(Reason::Cooling { until, why: h.why }),
            State::HalfOpen => half_open = true,
            State::Ok => {}
        }
    }
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

fn sub_scores(
    e: &Entry,
    live: Option<&crate::live::EntryLive>,
    ask: &Ask<'_>,
    _snap: &Snapshot,
) -> SubScores {
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
        context: score::context_score(e.context),
        parameters: score::parameter_score(e.params_m),
        free: if e.free { 1.0 } else { 0.0 },
        local: if e.local { 1.0 } else { 0.0 },
    }
}

fn short(s: &str) -> &str {
    crate::error::truncate(s, 200)
}

fn not_found_name(snap: &Snapshot, name: &str) -> String {
    let cat = &snap.catalog;
    let mut msg = format!(
        "The model `{}` does not exist or no channel serves it.",
        short(name)
    );
    let names: Vec<&str> = cat.names().iter().map(|n| &**n).collect();
    let tags: Vec<&str> = cat.tag_names().collect();
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

fn unknown_tag(cat: &Catalog, tag: &str) -> String {
    let tags: Vec<&str> = cat.tag_names().collect();
    let mut msg = format!("No model has the tag `{}`.", short(tag));
    if let Some(close) = crate::config::closest(&tag.to_ascii_lowercase(), &tags) {
        let _ = write!(msg, " Closest tag: `{close}`.");
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
