//! The day's usage counters, for quotas and budgets: requests, tokens and spend per channel and
//! the gateway's total spend, for the current UTC day. Fed from usage records on the control
//! thread; decides which quotas are spent ([`Quota`]); survives restarts through
//! `usage/counters.json` in the state dir.
//!
//! Invariants: counters belong to one UTC day and reset when a record or the clock reaches the
//! next; a record from an earlier day (in flight at midnight) counts for nothing; counters are
//! keyed by channel id, so a reload that reorders channels keeps them.
//! Not here: writing the usage log (`control` hands lines to the store), enforcement on the
//! data plane (`routing` reads `Snapshot::quota`, `proxy` the global budget).

use std::collections::HashMap;

use simd_json::prelude::*;

use crate::config::Config;
use crate::json::Writer;
use crate::snapshot::{Channel, Quota};
use crate::usage::Record;

const DAY_MS: u64 = 86_400_000;

/// One channel's counters for the day.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counter {
    /// Requests sent on the channel.
    pub requests: u64,
    /// Prompt plus completion tokens.
    pub tokens: u64,
    /// Spend, configured currency.
    pub cost: f64,
}

/// The current day's counters.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    /// Days since the Unix epoch (UTC) the counters are for.
    pub day: u64,
    /// By channel id.
    pub channels: HashMap<String, Counter>,
    /// The gateway's spend today.
    pub cost: f64,
    /// Spend today by client key name.
    pub clients: HashMap<String, f64>,
    /// Changed since the last save.
    pub dirty: bool,
}

impl Ledger {
    /// An empty ledger for the day of `now_ms`.
    pub fn new(now_ms: u64) -> Ledger {
        Ledger {
            day: now_ms / DAY_MS,
            ..Ledger::default()
        }
    }

    /// Starts a new day when `now_ms` is past the ledger's; true when it did.
    pub fn roll(&mut self, now_ms: u64) -> bool {
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
    pub fn add(&mut self, r: &Record) {
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

    /// Which quotas are spent, for the channels of a snapshot.
    pub fn quota(&self, cfg: &Config, channels: &[Channel]) -> Quota {
        let spent = |ch: &Channel| {
            let Some(c) = self.channels.get(&*ch.id) else {
                return false;
            };
            let l = &ch.limits;
            l.requests.is_some_and(|n| c.requests >= n)
                || l.tokens.is_some_and(|n| c.tokens >= n)
                || l.budget.is_some_and(|b| c.cost >= b)
        };
        let global = cfg
            .pricing
            .daily_budget
            .filter(|b| self.cost >= *b)
            .map(|b| {
                format!(
                    "The gateway's daily budget of {b} {} is spent ({:.4} today); it resets at 00:00 UTC.",
                    cfg.pricing.currency, self.cost
                )
                .into()
            });
        let clients = cfg
            .auth
            .keys
            .iter()
            .map(|k| {
                let spent = self.clients.get(&k.name).copied().unwrap_or(0.0);
                k.daily_budget.filter(|b| spent >= *b).map(|b| {
                    format!(
                        "The daily budget of key `{}` ({b} {}) is spent ({spent:.4} today); it resets at 00:00 UTC.",
                        k.name, cfg.pricing.currency
                    )
                    .into()
                })
            })
            .collect();
        Quota {
            channels: channels.iter().map(spent).collect(),
            global,
            clients,
        }
    }

    /// The counters as a JSON document (`usage/counters.json`).
    pub fn to_json(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.obj();
        w.key("day").str(&crate::usage::day(self.day * DAY_MS));
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
    pub fn from_json(bytes: &[u8], now_ms: u64) -> Option<Ledger> {
        let mut copy = bytes.to_vec();
        let v = simd_json::to_owned_value(&mut copy).ok()?;
        let day = crate::usage::parse_time(v.get("day")?.as_str()?)? / DAY_MS;
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
    use crate::providers::Usage;

    fn record(channel: &str, ms: u64, tokens: u64, cost: f64) -> Record {
        Record {
            unix_ms: ms,
            request_id: crate::server::response::RequestId::parse(b"r").unwrap(),
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
            cost: Some(cost),
            latency_ms: 1.0,
            ttft_ms: None,
            overhead_ms: None,
            trace_id: None,
            client: None,
            status: 200,
            attempts: 1,
            stream: false,
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
