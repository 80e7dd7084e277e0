//! Ranks the catalog entries that may serve one request: resolve the model expression to
//! entries, drop those a filter rules out (recording why, see `filter`), score the rest with
//! the request's strategy, order them (priority tier first, then score; near-ties spread by
//! smooth weighted round-robin on channel `weight`), and hand `proxy` the order to try them in.
//!
//! Filters: channel disabled · provider excluded · embedding model · missing capability
//! (vision if the request has images, tools if it has tools, JSON mode if asked, plus
//! `required_capabilities`) · a family that cannot express a field the request sets
//! (`logprobs`, `n` > 1, …; unless the provider's `on_unsupported = "drop"`) · price above `max_cost_per_1k` (the larger of input and output
//! price per 1K tokens; unknown prices fail a cap) · context smaller than the estimated prompt
//! tokens plus `max_tokens` · address not resolved · daily quota spent · endpoint not served ·
//! channel or model cooling down · `min_request_interval` · `max_concurrent` (its share per
//! worker) · half-open trial already in flight on this worker.
//!
//! When nothing passes:
//! * **panic routing** — if some candidates are out only for a transient reason (a backoff
//!   after 5xx/timeouts/connect errors, or a trial in flight), they are tried anyway, soonest
//!   recovery first, at most `panic_max_in_flight` per channel per worker (Envoy's healthy
//!   panic threshold: a lone channel that hiccuped once must not turn one error into fifty);
//! * **context** — if context is the only reason left, the largest-context candidate is tried
//!   when the estimate is within `context_margin` of it, else the request is a 400
//!   `context_length_exceeded` (what OpenAI answers and context-window fallbacks look for);
//! * otherwise `refusal` says why (429 when only rate limits are left, else 503).
//!
//! Invariants: pure and synchronous: the caller passes `now`, the worker's [`Local`] view and
//! a `bumpalo` arena reset per request; ranking never touches the heap (proved by a
//! counting-allocator test) and never does I/O or logging.

mod filter;
mod local;
mod refusal;

use std::fmt::Write as _;
use std::time::Instant;

use bumpalo::Bump;
use bumpalo::collections::Vec as BVec;

use crate::catalog::Entry;
use crate::catalog::select::{match_query, size_ok};
use crate::expr::Caps;
use crate::expr::{self, Expr};
use crate::presets::{Endpoint, Fields};
use crate::snapshot::Snapshot;
use crate::strategy::{self as score, Options, SubScores, Weights};
use filter::{Needs, Tier};

pub(crate) use filter::{Reason, Rejected};
pub use local::Attempt;
pub use local::Local;
pub use refusal::RouteError;
pub(crate) use refusal::retry_after_secs;
use refusal::{not_found_name, short};

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
    /// The endpoint called (a channel may lack it).
    pub endpoint: Endpoint,
    /// Request fields only some families can express (`logprobs`, `n` > 1, …).
    pub fields: Fields,
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
    /// What kind of attempt it is: in rotation, a half-open trial, or a panic attempt.
    pub attempt: Attempt,
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
    /// The candidates are panic attempts (every one was out for a transient reason).
    pub panic: bool,
    /// Panic routing would try some, but each of their channels is at
    /// `panic_max_in_flight` on this worker: the caller may wait for a slot.
    pub panic_full: bool,
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

    let needs = Needs {
        caps: required,
        tokens: ask
            .prompt_tokens
            .saturating_add(ask.max_tokens.unwrap_or(0)),
        max_cost,
    };
    let mut candidates = BVec::with_capacity_in(16, arena);
    let mut rejected = BVec::new_in(arena);
    let standings = arena.alloc_slice_fill_copy(snap.channels.len(), None);
    let mut standing = |c: usize, local: &Local| {
        *standings[c].get_or_insert_with(|| {
            filter::channel_standing(
                snap,
                local,
                c,
                ask.endpoint,
                (ask.fields, ask.stream),
                &excluded,
                now,
            )
        })
    };
    crate::catalog::tags::for_each_bit(words, |i| {
        let e = &cat.entries[i];
        if let Some(q) = filters
            && !size_ok(e, q)
        {
            size_misses += 1;
            return;
        }
        let ch = standing(e.channel as usize, local);
        match filter::judge(snap, local, &ch, e, i, &needs, now) {
            Err(r) => rejected.push(Rejected {
                entry: i as u32,
                reason: r,
            }),
            Ok(half_open) => candidates.push(scored(snap, e, i, ask, &weights, trial(half_open))),
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

    let mut panic = false;
    let mut panic_full = false;
    if candidates.is_empty() {
        let left = |r: &&Rejected| r.reason.tier() != Tier::Permanent;
        if rejected.iter().filter(left).count() == 0 {
            // Context is the only reason left (if it is one at all): the largest-context
            // candidate decides, unless the prompt is clearly too large for it.
            let largest = rejected
                .iter()
                .filter_map(|r| match r.reason {
                    Reason::Context { have, .. } => Some((have, r.entry)),
                    _ => None,
                })
                .max_by_key(|&(have, entry)| (have, std::cmp::Reverse(entry)));
            if let Some((have, entry)) = largest {
                let limit = f64::from(have) * (1.0 + f64::from(snap.routing.context_margin));
                if f64::from(needs.tokens) > limit {
                    return Err(RouteError::ContextExceeded {
                        have,
                        prompt: ask.prompt_tokens,
                        completion: ask.max_tokens.unwrap_or(0),
                        param: match ask.endpoint {
                            Endpoint::Chat => "messages",
                            Endpoint::Completions => "prompt",
                            Endpoint::Embeddings | Endpoint::Responses => "input",
                        },
                    });
                }
                let i = entry as usize;
                let e = &cat.entries[i];
                let ch = standing(e.channel as usize, local);
                let k = rejected.iter().position(|r| r.entry == entry).unwrap_or(0);
                match filter::entry_after_permanent(snap, local, &ch, e, i, now) {
                    Ok(half_open) => {
                        rejected.remove(k);
                        candidates.push(scored(snap, e, i, ask, &weights, trial(half_open)));
                    }
                    Err(r) => rejected[k].reason = r,
                }
            }
        }
    }
    if candidates.is_empty() && snap.routing.panic.enabled {
        // Soonest recovery first (a trial in flight is about to answer: now).
        let mut order = BVec::new_in(arena);
        for r in rejected
            .iter()
            .filter(|r| r.reason.tier() == Tier::Transient)
        {
            let i = r.entry as usize;
            let e = &cat.entries[i];
            let c = e.channel as usize;
            if local.panics.get(c).copied().unwrap_or(0) >= snap.routing.panic.max_in_flight {
                panic_full = true;
                continue;
            }
            let s = scored(snap, e, i, ask, &weights, Attempt::Panic);
            order.push((r.reason.ends(now).unwrap_or(now), s));
        }
        order.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(by_rank(&a.1, &b.1)));
        candidates.extend(order.iter().take(20).map(|(_, s)| *s));
        panic = !candidates.is_empty();
        panic_full &= !panic;
    }

    // Order: priority tier first (higher first), then score; entry index keeps it
    // deterministic. A request only needs its first `max_attempts` candidates, so outside a dry
    // run the order is built by selection (O(n)) rather than a full sort.
    let matched = candidates.len() + rejected.len();
    if panic {
        // Already in the order of recovery.
    } else if dry_run || candidates.len() <= 1 {
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
        panic,
        panic_full,
    })
}

/// The ranking order: priority tier first (higher first), then score; the entry index keeps
/// it deterministic.
fn by_rank(a: &Scored, b: &Scored) -> std::cmp::Ordering {
    b.priority
        .cmp(&a.priority)
        .then(b.score.total_cmp(&a.score))
        .then(a.entry.cmp(&b.entry))
}

fn trial(half_open: bool) -> Attempt {
    if half_open {
        Attempt::Trial
    } else {
        Attempt::Normal
    }
}

/// Entry `i` as a candidate, scored.
fn scored(
    snap: &Snapshot,
    e: &Entry,
    i: usize,
    ask: &Ask<'_>,
    weights: &Weights,
    attempt: Attempt,
) -> Scored {
    let s = sub_scores(e, snap.live.entries.get(i), ask);
    Scored {
        entry: i as u32,
        priority: snap.channels[e.channel as usize].priority,
        score: weights.total(&s),
        scores: s,
        attempt,
    }
}

fn weights_for(snap: &Snapshot, name: &str) -> Option<Weights> {
    score::builtin(name).or_else(|| {
        snap.strategies
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.weights)
    })
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
#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Resolved;
    use crate::config::Config;
    use crate::live::Judged;
    use crate::live::health::{Outcome, Scope, Why};
    use crate::snapshot::Snapshot;
    use std::sync::Arc;
    use std::time::Duration;

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
            endpoint: Endpoint::Chat,
            fields: Fields::NONE,
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
            endpoint: Endpoint::Chat,
            fields: Fields::NONE,
        };
        // (within 10 % of the only model's window: it is tried, and the upstream decides)
        let rk = rank(&s, &mut l, &ask, Instant::now(), &arena, false).unwrap();
        assert_eq!(rk.candidates.len(), 1);
        // with a smaller model beside it, that one is filtered with the reason
        let ask = Ask {
            model: "tag:qwen",
            ..ask
        };
        let rk = rank(&s, &mut l, &ask, Instant::now(), &arena, true).unwrap();
        assert!(
            rk.rejected
                .iter()
                .any(|r| matches!(r.reason, Reason::Context { need: 130_000, .. })),
            "{:?}",
            rk.rejected
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

    fn judged(outcome: Outcome, scope: Scope) -> Judged {
        Judged {
            outcome,
            scope,
            endpoint: Endpoint::Chat,
        }
    }

    fn ask<'a>(model: &'a str, opts: &'a Options) -> Ask<'a> {
        Ask {
            model,
            needs: Caps::NONE,
            prompt_tokens: 10,
            max_tokens: None,
            stream: false,
            strategy: None,
            options: opts,
            allowed: None,
            endpoint: Endpoint::Chat,
            fields: Fields::NONE,
        }
    }

    #[test]
    fn cooldowns_half_open_trials_intervals_and_concurrency() {
        let s = snap(
            &CFG.replace(
                "id = \"cheap\"\n",
                "id = \"cheap\"\nmin_request_interval = \"10s\"\nmax_concurrent = 1\n",
            )
            .replace("[routing]\n", "[routing]\npanic_routing = false\n"),
        );
        let mut l = Local::default();
        let now = Instant::now();
        let entry = s.catalog.lookup("fast").unwrap()[0];
        l.sync(&s);
        let failed = judged(Outcome::Transient, Scope::Model);
        l.record(&s, entry, failed, now, now, Duration::ZERO);
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
        let ask = ask("fast", &opts);
        let rk = rank(&s, &mut l, &ask, later, &arena, false).unwrap();
        assert_eq!(rk.candidates[0].attempt, Attempt::Trial);
        l.begin(1, 0, Attempt::Trial, later);
        let rk = rank(&s, &mut l, &ask, later, &arena, false).unwrap();
        assert!(rk.candidates.is_empty());
        // (the trial just used the channel: its min_request_interval, a lasting reason, is
        // what is reported rather than the trial in flight)
        assert!(matches!(rk.rejected[0].reason, Reason::MinInterval { .. }));
        l.end(1, 0, Attempt::Trial);
        // a success heals; the channel was just used, so min_request_interval applies
        let ok = judged(Outcome::Success, Scope::Model);
        l.record(&s, entry, ok, later, later, Duration::ZERO);
        let rk = rank(
            &s,
            &mut l,
            &ask,
            later + Duration::from_secs(1),
            &arena,
            false,
        )
        .unwrap();
        assert!(matches!(rk.rejected[0].reason, Reason::MinInterval { .. }));
        let rk = rank(
            &s,
            &mut l,
            &ask,
            later + Duration::from_secs(11),
            &arena,
            false,
        )
        .unwrap();
        assert!(!rk.candidates.is_empty() && rk.candidates[0].attempt == Attempt::Normal);
        l.begin(1, 0, Attempt::Normal, later + Duration::from_secs(11));
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
        let missing = judged(Outcome::ModelMissing, Scope::Model);
        l.record(&s, qwen, missing, t, t, Duration::ZERO);
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
    fn one_models_failure_leaves_the_channels_other_models_and_two_bench_the_channel() {
        let s = snap(CFG);
        let mut l = Local::default();
        l.sync(&s);
        let t = Instant::now();
        let mini = s.catalog.lookup("fast").unwrap()[0];
        let qwen = s.catalog.lookup("qwen/qwen3-30b-a3b:free").unwrap()[0];
        let failed = judged(Outcome::Transient, Scope::Model);
        l.record(&s, mini, failed, t, t, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "qwen/qwen3-30b-a3b:free",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(
            x.channels,
            ["cheap"],
            "a 5xx of gpt-4o-mini says nothing about qwen"
        );
        // a second model failing within the first's window: the channel is the problem
        let t2 = t + Duration::from_millis(100);
        l.record(&s, qwen, failed, t2, t2, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "text-embedding-3-small",
            Caps::EMBEDDING,
            &Options::default(),
            None,
        );
        let rejected = x.unwrap().rejected;
        assert!(
            matches!(
                rejected[0].1,
                Reason::Cooling {
                    why: Why::Failing,
                    ..
                }
            ),
            "the whole channel is out: {rejected:?}"
        );
        // the same model failing twice stays the model's
        let mut l = Local::default();
        l.sync(&s);
        l.record(&s, mini, failed, t, t, Duration::ZERO);
        l.record(&s, mini, failed, t2, t2, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "qwen/qwen3-30b-a3b:free",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(x.channels, ["cheap"]);
        // and a success in between ends the strike
        let mut l = Local::default();
        l.sync(&s);
        l.record(&s, mini, failed, t, t, Duration::ZERO);
        let ok = judged(Outcome::Success, Scope::Model);
        let t1 = t + Duration::from_millis(50);
        l.record(&s, qwen, ok, t1, t1, Duration::ZERO);
        let emb = s.catalog.lookup("text-embedding-3-small").unwrap()[0];
        l.record(&s, emb, failed, t2, t2, Duration::ZERO);
        let x = rank_with(
            &s,
            &mut l,
            "qwen/qwen3-30b-a3b:free",
            Caps::NONE,
            &Options::default(),
            None,
        )
        .unwrap();
        assert_eq!(x.channels, ["cheap"], "the channel served in between");
    }

    #[test]
    fn an_endpoint_the_provider_lacks_leaves_its_chat_alone() {
        let s = snap(CFG);
        let mut l = Local::default();
        l.sync(&s);
        let t = Instant::now();
        let mini = s.catalog.lookup("fast").unwrap()[0];
        let lacks = Judged {
            outcome: Outcome::Unsupported,
            scope: Scope::Endpoint,
            endpoint: Endpoint::Responses,
        };
        l.record(&s, mini, lacks, t, t, Duration::ZERO);
        let arena = Bump::new();
        let opts = Options::default();
        let chat = ask("gpt-4o-mini", &opts);
        let rk = rank(&s, &mut l, &chat, t, &arena, true).unwrap();
        assert_eq!(rk.candidates.len(), 2, "chat is unaffected");
        let responses = Ask {
            endpoint: Endpoint::Responses,
            fields: Fields::NONE,
            ..chat
        };
        let rk = rank(&s, &mut l, &responses, t, &arena, true).unwrap();
        assert_eq!(rk.candidates.len(), 1);
        assert!(matches!(
            rk.rejected[0].reason,
            Reason::Unsupported {
                endpoint: Endpoint::Responses,
                ..
            }
        ));
        // re-checked (one trial) after model_missing_cooldown
        let later = t + Duration::from_secs(3601);
        let rk = rank(&s, &mut l, &responses, later, &arena, true).unwrap();
        let cheap = rk.candidates.iter().find(|c| c.entry == mini).unwrap();
        assert_eq!(cheap.attempt, Attempt::Trial);
    }

    #[test]
    fn panic_routing_tries_transient_failures_soonest_first_and_caps_them() {
        let text = r#"
[routing]
panic_max_in_flight = 2
[providers.a]
base_url = "http://127.0.0.1:1/v1"
[providers.b]
base_url = "http://127.0.0.1:2/v1"
[[channels]]
id = "a"
provider = "a"
models = ["m"]
[[channels]]
id = "b"
provider = "b"
models = ["m"]
"#;
        let s = snap(text);
        let mut l = Local::default();
        l.sync(&s);
        let t = Instant::now();
        let (a, b) = (
            s.catalog.lookup("m").unwrap()[0],
            s.catalog.lookup("m").unwrap()[1],
        );
        let failed = judged(Outcome::Transient, Scope::Model);
        // b fails once (1 s backoff), a twice (2 s): b recovers first
        l.record(&s, a, failed, t, t, Duration::ZERO);
        l.record(&s, a, failed, t, t, Duration::ZERO);
        l.record(&s, b, failed, t, t, Duration::ZERO);
        let arena = Bump::new();
        let opts = Options::default();
        let m = ask("m", &opts);
        let rk = rank(&s, &mut l, &m, t, &arena, false).unwrap();
        assert!(rk.panic);
        let order: Vec<u32> = rk.candidates.iter().map(|c| c.entry).collect();
        assert_eq!(order, [b, a], "soonest recovery first");
        assert!(rk.candidates.iter().all(|c| c.attempt == Attempt::Panic));
        // the cap: two panic attempts in flight on each channel, then nothing to try yet
        for c in [0, 1] {
            l.begin(1, c, Attempt::Panic, t);
            l.begin(1, c, Attempt::Panic, t);
        }
        let rk = rank(&s, &mut l, &m, t, &arena, false).unwrap();
        assert!(rk.candidates.is_empty() && rk.panic_full && !rk.panic);
        l.end(1, 1, Attempt::Panic);
        let rk = rank(&s, &mut l, &m, t, &arena, false).unwrap();
        assert_eq!(rk.candidates.len(), 1, "a slot freed on b");
        // never over a rate limit, a key rejection or a missing model
        let mut l = Local::default();
        l.sync(&s);
        let limited = judged(
            Outcome::RateLimited(Some(Duration::from_secs(30))),
            Scope::Channel,
        );
        l.record(&s, a, limited, t, t, Duration::ZERO);
        l.record(
            &s,
            b,
            judged(Outcome::Auth, Scope::Channel),
            t,
            t,
            Duration::ZERO,
        );
        let rk = rank(&s, &mut l, &m, t, &arena, false).unwrap();
        assert!(rk.candidates.is_empty() && !rk.panic_full);
        // switched off
        let off = snap(&text.replace("[routing]\n", "[routing]\npanic_routing = false\n"));
        let mut l = Local::default();
        l.sync(&off);
        l.record(&off, a, failed, t, t, Duration::ZERO);
        l.record(&off, b, failed, t, t, Duration::ZERO);
        let rk = rank(&off, &mut l, &m, t, &arena, false).unwrap();
        assert!(rk.candidates.is_empty());
    }

    #[test]
    fn only_rate_limits_left_is_a_429_with_the_soonest_retry_after() {
        let text = r#"
[providers.a]
base_url = "http://127.0.0.1:1/v1"
[providers.b]
base_url = "http://127.0.0.1:2/v1"
[[channels]]
id = "a"
provider = "a"
models = ["m"]
[[channels]]
id = "b"
provider = "b"
models = ["m", "vision-only"]
model_info = { "m" = { vision = false } }
"#;
        let s = snap(text);
        let mut l = Local::default();
        l.sync(&s);
        let t = Instant::now();
        let a = s.catalog.lookup("m").unwrap()[0];
        let b = s.catalog.lookup("m").unwrap()[1];
        let limited = |secs| {
            judged(
                Outcome::RateLimited(Some(Duration::from_millis(secs))),
                Scope::Channel,
            )
        };
        l.record(&s, a, limited(12_300), t, t, Duration::ZERO);
        l.record(&s, b, limited(30_000), t, t, Duration::ZERO);
        let arena = Bump::new();
        let opts = Options::default();
        let rk = rank(&s, &mut l, &ask("m", &opts), t, &arena, false).unwrap();
        let e = rk
            .unusable(&s, "m", t, t + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(e.retry_after(), Some(Duration::from_millis(12_300)));
        assert_eq!(retry_after_secs(e.retry_after().unwrap()), 13, "rounded up");
        assert_eq!(e.into_error().status, 429);
        // one candidate out for a key rejection: not only rate limits, so 503 (with the
        // soonest known recovery)
        l.record(
            &s,
            a,
            judged(Outcome::Auth, Scope::Channel),
            t,
            t,
            Duration::ZERO,
        );
        let rk = rank(&s, &mut l, &ask("m", &opts), t, &arena, false).unwrap();
        let e = rk
            .unusable(&s, "m", t, t + Duration::from_secs(3600))
            .unwrap();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        assert_eq!(e.into_error().status, 503);
    }

    #[test]
    fn a_prompt_beyond_every_context_is_a_400_unless_within_the_margin() {
        let text = r#"
[providers.a]
base_url = "http://127.0.0.1:1/v1"
[[channels]]
id = "a"
provider = "a"
models = ["small", "large"]
model_info = { "small" = { context = 1000 }, "large" = { context = 8000 } }
"#;
        let s = snap(text);
        let mut l = Local::default();
        let arena = Bump::new();
        let opts = Options::default();
        let t = Instant::now();
        let mut big = ask("tag:a", &opts);
        big.prompt_tokens = 9000;
        big.max_tokens = Some(500);
        let err = rank(&s, &mut l, &big, t, &arena, false).unwrap_err();
        assert_eq!(
            err,
            RouteError::ContextExceeded {
                have: 8000,
                prompt: 9000,
                completion: 500,
                param: "messages"
            }
        );
        let e = err.into_error();
        assert_eq!(
            (e.status, e.code, e.param),
            (400, "context_length_exceeded", Some("messages"))
        );
        // the estimate within 10 % of the largest: that model is tried, the upstream decides
        big.prompt_tokens = 8300;
        let rk = rank(&s, &mut l, &big, t, &arena, false).unwrap();
        let large = s.catalog.lookup("large").unwrap()[0];
        assert_eq!(
            rk.candidates.iter().map(|c| c.entry).collect::<Vec<_>>(),
            [large]
        );
        // the param follows the endpoint
        big.prompt_tokens = 20_000;
        big.endpoint = Endpoint::Completions;
        match rank(&s, &mut l, &big, t, &arena, false).unwrap_err() {
            RouteError::ContextExceeded { param, .. } => assert_eq!(param, "prompt"),
            e => panic!("{e:?}"),
        }
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

    #[test]
    fn fields_a_family_lacks_route_elsewhere_or_are_a_400_naming_the_channels() {
        let text = |drop: &str| {
            format!(
                r#"
[providers.o]
base_url = "http://127.0.0.1:1/v1"
[providers.a]
kind = "anthropic"
base_url = "http://127.0.0.1:2/v1"
{drop}
[providers.g]
kind = "gemini"
base_url = "http://127.0.0.1:3/v1beta"
[[channels]]
id = "oa"
provider = "o"
models = ["m"]
[[channels]]
id = "an"
provider = "a"
models = ["m"]
[[channels]]
id = "ge"
provider = "g"
models = ["m"]
"#
            )
        };
        let s = snap(&text(""));
        let opts = Options::default();
        let arena = Bump::new();
        let mut l = Local::default();
        let t = Instant::now();
        let logprobs = Ask {
            fields: Fields::LOGPROBS,
            ..ask("m", &opts)
        };
        let rk = rank(&s, &mut l, &logprobs, t, &arena, true).unwrap();
        let ids: Vec<&str> = rk
            .candidates
            .iter()
            .map(|c| &*s.channels[s.catalog.entries[c.entry as usize].channel as usize].id)
            .collect();
        assert_eq!(ids, ["oa"]);
        assert!(rk.rejected.iter().all(|r| matches!(
            r.reason,
            Reason::Unexpressible {
                fields: Fields::LOGPROBS,
                ..
            }
        )));
        // `n` > 1: Gemini has it whole, not streamed.
        let n = Ask {
            fields: Fields::N,
            ..ask("m", &opts)
        };
        assert_eq!(
            rank(&s, &mut l, &n, t, &arena, true)
                .unwrap()
                .candidates
                .len(),
            2
        );
        let n_stream = Ask { stream: true, ..n };
        assert_eq!(
            rank(&s, &mut l, &n_stream, t, &arena, true)
                .unwrap()
                .candidates
                .len(),
            1
        );
        // Only the families that lack it: a 400 naming the field, the channels and families.
        let s2 = snap(&text("").replace(
            "models = [\"m\"]\n[[channels]]\nid = \"an\"",
            "models = [\"x\"]\n[[channels]]\nid = \"an\"",
        ));
        let rk = rank(&s2, &mut l, &logprobs, t, &arena, true).unwrap();
        let err = rk.unusable(&s2, "m", t, t).unwrap().into_error();
        assert_eq!(err.status, 400);
        assert_eq!(err.code, "unsupported_parameter");
        assert_eq!(err.param, Some("logprobs"));
        assert!(err.message.contains("an (anthropic)"), "{}", err.message);
        assert!(err.message.contains("ge (gemini)"), "{}", err.message);
        // A provider that drops what it lacks keeps its channels.
        let s3 = snap(&text("on_unsupported = \"drop\""));
        let rk = rank(&s3, &mut l, &logprobs, t, &arena, true).unwrap();
        assert_eq!(rk.candidates.len(), 2);
    }
}
