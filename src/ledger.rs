//! The day's usage counters, for quotas and budgets: requests, tokens and spend per channel and
//! the gateway's total spend, for the current UTC day. Fed from usage records on the control
//! thread; decides which quotas are spent ([`Quota`]); survives restarts through
//! `usage/counters.json` in the state dir.
//!
//! Invariants: counters belong to one UTC day and reset when a record or the clock reaches the
//! next; a record from an earlier day (in flight at midnight) counts for nothing; counters are
//! keyed by channel id, so a reload that reorders channels keeps them.
//! Pure: no I/O, no threads; the counters' JSON goes to and from the state dir through
//! `control`'s store. Whether a counter is spent is asked of a `Judge`: `Alone` for a lone
//! gateway, `cluster::Fleet` in a fleet — which is why the ledger sits below both `cluster`
//! and `control` (the pure core layer), and names neither.
//! Not here: writing the usage log (`control` hands lines to the store), enforcement on the
//! data plane (`routing` reads `Snapshot::quota`, `proxy` the global budget), the fleet's sums
//! and grants (`cluster`).

use std::collections::HashMap;

use simd_json::prelude::*;

use crate::channel::Channel;
use crate::config::Config;
use crate::json::Writer;
use crate::snapshot::Quota;
use crate::usage::Record;

const DAY_MS: u64 = 86_400_000;

/// The fleet name of the gateway's spend.
pub(crate) const GLOBAL_COST: &str = "cost";

/// The fleet name of a channel's counter (`requests`, `tokens`, `cost`).
pub(crate) fn channel_counter(id: &str, metric: &str) -> String {
    format!("ch|{id}|{metric}")
}

/// The fleet name of a client key's spend.
pub(crate) fn key_counter(name: &str) -> String {
    format!("key|{name}|cost")
}

/// What a counter's fleet name (from [`GLOBAL_COST`], [`channel_counter`], [`key_counter`])
/// counts.
#[cfg(feature = "cluster")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CounterOf<'n> {
    /// The gateway's spend.
    Global,
    /// A client key's spend.
    Key(&'n str),
    /// A channel's `requests`, `tokens` or `cost`.
    Channel(&'n str, &'n str),
}

#[cfg(feature = "cluster")]
impl<'n> CounterOf<'n> {
    /// Reads a counter's fleet name back.
    pub(crate) fn parse(name: &'n str) -> Option<CounterOf<'n>> {
        if name == GLOBAL_COST {
            return Some(CounterOf::Global);
        }
        if let Some(key) = name
            .strip_prefix("key|")
            .and_then(|k| k.strip_suffix("|cost"))
        {
            return Some(CounterOf::Key(key));
        }
        let (id, metric) = name.strip_prefix("ch|")?.rsplit_once('|')?;
        Some(CounterOf::Channel(id, metric))
    }
}

/// Decides whether a counter has reached its limit.
pub(crate) trait Judge {
    /// True when counter `name`, of which this instance counted `own`, has reached `limit`.
    fn spent(&self, name: &str, own: f64, limit: f64) -> bool;
    /// The counter's total as far as known (for messages).
    fn total(&self, name: &str, own: f64) -> f64;
}

/// A gateway alone: its own counts are the whole story.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Alone;

impl Judge for Alone {
    fn spent(&self, _: &str, own: f64, limit: f64) -> bool {
        own >= limit
    }
    fn total(&self, _: &str, own: f64) -> f64 {
        own
    }
}

/// Every limited counter of a config and snapshot, with its daily limit.
pub(crate) fn limited(cfg: &Config, channels: &[Channel]) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(b) = cfg.pricing.daily_budget {
        out.push((GLOBAL_COST.to_string(), b));
    }
    for ch in channels {
        let l = &ch.limits;
        if let Some(n) = l.requests {
            out.push((channel_counter(&ch.id, "requests"), n as f64));
        }
        if let Some(n) = l.tokens {
            out.push((channel_counter(&ch.id, "tokens"), n as f64));
        }
        if let Some(b) = l.budget {
            out.push((channel_counter(&ch.id, "cost"), b));
        }
    }
    for k in &cfg.auth.keys {
        if let Some(b) = k.daily_budget {
            out.push((key_counter(&k.name), b));
        }
    }
    out
}

/// One channel's counters for the day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Counter {
    /// Requests sent on the channel.
    pub(crate) requests: u64,
    /// Prompt plus completion tokens.
    pub(crate) tokens: u64,
    /// Spend, configured currency.
    pub(crate) cost: f64,
}

/// The current day's counters.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ledger {
    /// Days since the Unix epoch (UTC) the counters are for.
    pub(crate) day: u64,
    /// By channel id.
    pub(crate) channels: HashMap<String, Counter>,
    /// The gateway's spend today.
    pub(crate) cost: f64,
    /// Spend today by client key name.
    pub(crate) clients: HashMap<String, f64>,
    /// Changed since the last save.
    pub(crate) dirty: bool,
}

impl Ledger {
    /// An empty ledger for the day of `now_ms`.
    pub(crate) fn new(now_ms: u64) -> Ledger {
        Ledger {
            day: now_ms / DAY_MS,
            ..Ledger::default()
        }
    }

    /// Starts a new day when `now_ms` is past the ledger's; true when it did.
    pub(crate) fn roll(&mut self, now_ms: u64) -> bool {
        let day = now_ms / DAY_MS;
        if day <= self.day {
            return false;
        }
        *self = Ledger {
            day,
            dirty: true,
            ..Ledger::default()
        };
        true
    }

    /// Counts one usage record.
    pub(crate) fn add(&mut self, r: &Record) {
        self.roll(r.unix_ms);
        let id = r.channel();
        if r.unix_ms / DAY_MS != self.day || id.is_empty() {
            return;
        }
        if let (Some(name), Some(cost)) = (&r.client, r.cost) {
            match self.clients.get_mut(&**name) {
                Some(c) => *c += cost,
                None => {
                    self.clients.insert(name.to_string(), cost);
                }
            }
        }
        if !self.channels.contains_key(id) {
            self.channels.insert(id.to_string(), Counter::default());
        }
        let Some(c) = self.channels.get_mut(id) else {
            return;
        };
        c.requests += 1;
        c.tokens = c.tokens.saturating_add(r.total_tokens());
        let cost = r.cost.unwrap_or(0.0);
        c.cost += cost;
        self.cost += cost;
        self.dirty = true;
    }

    /// Which quotas are spent, for the channels of a snapshot, as `judge` sees them (alone:
    /// [`Alone`]; in a fleet, `cluster::Fleet`).
    pub(crate) fn quota(&self, cfg: &Config, channels: &[Channel], judge: &dyn Judge) -> Quota {
        let spent = |ch: &Channel| {
            let c = self.channels.get(&*ch.id).copied().unwrap_or_default();
            let l = &ch.limits;
            let over = |metric: &str, own: f64, limit: Option<f64>| {
                limit.is_some_and(|n| judge.spent(&channel_counter(&ch.id, metric), own, n))
            };
            over("requests", c.requests as f64, l.requests.map(|n| n as f64))
                || over("tokens", c.tokens as f64, l.tokens.map(|n| n as f64))
                || over("cost", c.cost, l.budget)
        };
        let global = cfg
            .pricing
            .daily_budget
            .filter(|b| judge.spent(GLOBAL_COST, self.cost, *b))
            .map(|b| {
                format!(
                    "The gateway's daily budget of {b} {} is spent ({:.4} today); it resets at 00:00 UTC.",
                    cfg.pricing.currency,
                    judge.total(GLOBAL_COST, self.cost)
                )
                .into()
            });
        let clients = cfg
            .auth
            .keys
            .iter()
            .map(|k| {
                let own = self.clients.get(&k.name).copied().unwrap_or(0.0);
                let counter = key_counter(&k.name);
                k.daily_budget.filter(|b| judge.spent(&counter, own, *b)).map(|b| {
                    format!(
                        "The daily budget of key `{}` ({b} {}) is spent ({:.4} today); it resets at 00:00 UTC.",
                        k.name,
                        cfg.pricing.currency,
                        judge.total(&counter, own)
                    )
                    .into()
                })
            })
            .collect();
        Quota {
            limited: !limited(cfg, channels).is_empty(),
            channels: channels.iter().map(spent).collect(),
            global,
            clients,
        }
    }

    /// Every counter by its fleet name (`cluster`), with this instance's value today.
    #[cfg(feature = "cluster")]
    pub(crate) fn counters(&self) -> Vec<(String, f64)> {
        let mut out = Vec::with_capacity(self.channels.len() * 3 + self.clients.len() + 1);
        out.push((GLOBAL_COST.to_string(), self.cost));
        for (id, c) in &self.channels {
            out.push((channel_counter(id, "requests"), c.requests as f64));
            out.push((channel_counter(id, "tokens"), c.tokens as f64));
            out.push((channel_counter(id, "cost"), c.cost));
        }
        for (name, cost) in &self.clients {
            out.push((key_counter(name), *cost));
        }
        out
    }

    /// Raises counter `name` to at least `value` (this instance's own count read back from the
    /// fleet after a restart that lost the local file). True when it changed.
    #[cfg(feature = "cluster")]
    pub(crate) fn raise(&mut self, name: &str, value: f64) -> bool {
        fn up<T: PartialOrd + Copy>(slot: &mut T, v: T) -> bool {
            let higher = v > *slot;
            if higher {
                *slot = v;
            }
            higher
        }
        if !value.is_finite() || value <= 0.0 {
            return false;
        }
        let changed = match CounterOf::parse(name) {
            Some(CounterOf::Global) => up(&mut self.cost, value),
            Some(CounterOf::Key(key)) => {
                up(self.clients.entry(key.to_string()).or_default(), value)
            }
            Some(CounterOf::Channel(id, metric)) => {
                let c = self.channels.entry(id.to_string()).or_default();
                match metric {
                    "requests" => up(&mut c.requests, value as u64),
                    "tokens" => up(&mut c.tokens, value as u64),
                    "cost" => up(&mut c.cost, value),
                    _ => false,
                }
            }
            None => false,
        };
        self.dirty |= changed;
        changed
    }

    /// The counters as a JSON document (`usage/counters.json`).
    pub(crate) fn to_json(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.obj();
        w.key("day").str(&crate::clock::day(self.day * DAY_MS));
        w.key("cost").num_exact(self.cost);
        w.key("channels").obj();
        let mut ids: Vec<&String> = self.channels.keys().collect();
        ids.sort();
        for id in ids {
            let c = self.channels[id];
            w.key(id).obj();
            w.key("requests").uint(c.requests);
            w.key("tokens").uint(c.tokens);
            w.key("cost").num_exact(c.cost);
            w.end_obj();
        }
        w.end_obj();
        w.key("clients").obj();
        let mut names: Vec<&String> = self.clients.keys().collect();
        names.sort();
        for name in names {
            w.key(name).num_exact(self.clients[name]);
        }
        w.end_obj().end_obj();
        w.out
    }

    /// Counters saved for the day of `now_ms`, if `bytes` holds them (another day's are stale).
    pub(crate) fn from_json(bytes: &[u8], now_ms: u64) -> Option<Ledger> {
        let mut copy = bytes.to_vec();
        let v = simd_json::to_owned_value(&mut copy).ok()?;
        let day = crate::clock::parse_time(v.get("day")?.as_str()?)? / DAY_MS;
        if day != now_ms / DAY_MS {
            return None;
        }
        let mut l = Ledger::new(now_ms);
        // Loaded counters have not been judged against the limits yet.
        l.dirty = true;
        l.cost = v.get("cost").and_then(|c| c.as_f64()).unwrap_or(0.0);
        for (id, c) in v.get("channels")?.as_object()?.iter() {
            l.channels.insert(
                id.to_string(),
                Counter {
                    requests: c.get("requests").and_then(|x| x.as_u64()).unwrap_or(0),
                    tokens: c.get("tokens").and_then(|x| x.as_u64()).unwrap_or(0),
                    cost: c.get("cost").and_then(|x| x.as_f64()).unwrap_or(0.0),
                },
            );
        }
        if let Some(clients) = v.get("clients").and_then(|c| c.as_object()) {
            for (name, cost) in clients.iter() {
                l.clients
                    .insert(name.to_string(), cost.as_f64().unwrap_or(0.0));
            }
        }
        Some(l)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::Usage;

    fn record(channel: &str, ms: u64, tokens: u64, cost: f64) -> Record {
        Record {
            unix_ms: ms,
            request_id: crate::h1::RequestId::parse(b"r").unwrap(),
            endpoint: "chat",
            names: crate::usage::Names::Owned {
                channel: channel.into(),
                provider: "p".into(),
                model: "m".into(),
            },
            requested: "m".into(),
            usage: Some(Usage {
                prompt: tokens,
                completion: 0,
                cached: 0,
                cache_write: 0,
            }),
            estimated_prompt: 0,
            usage_estimated: false,
            cost: Some(cost),
            latency_ms: 1.0,
            ttft_ms: None,
            overhead_ms: None,
            trace_id: None,
            client: None,
            status: 200,
            attempts: 1,
            stream: false,
            trace: None,
        }
    }

    #[test]
    fn counters_reset_at_utc_midnight_and_ignore_yesterday() {
        let day = 20_000 * DAY_MS;
        let mut l = Ledger::new(day + 5);
        l.add(&record("a", day + 10, 100, 0.5));
        l.add(&record("a", day + 20, 50, 0.25));
        assert_eq!(l.channels["a"].requests, 2);
        assert_eq!(l.channels["a"].tokens, 150);
        assert!((l.cost - 0.75).abs() < 1e-12);
        // The next day starts from zero; a late record of the day before counts for nothing.
        l.add(&record("a", day + DAY_MS + 1, 10, 0.1));
        assert_eq!(l.channels["a"].requests, 1);
        l.add(&record("a", day + 30, 10, 0.1));
        assert_eq!(l.channels["a"].requests, 1);
        assert!(!l.roll(day + DAY_MS + 2));
        assert!(l.roll(day + 2 * DAY_MS));
        assert!(l.channels.is_empty());
    }

    #[test]
    fn counters_survive_a_save_for_the_same_day_only() {
        let day = 20_000 * DAY_MS;
        let mut l = Ledger::new(day);
        l.add(&record("a\"b", day + 1, 7, 0.125));
        let saved = l.to_json();
        let back = Ledger::from_json(&saved, day + 1000).unwrap();
        assert_eq!(back.channels["a\"b"], l.channels["a\"b"]);
        assert!((back.cost - 0.125).abs() < 1e-12);
        assert!(Ledger::from_json(&saved, day + DAY_MS).is_none());
        assert!(Ledger::from_json(b"{oops", day).is_none());
    }
}
