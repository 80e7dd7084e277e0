//! Daily quotas and budgets across the fleet: this instance's counters go out as absolute
//! values and the fleet's sums come back; near a limit the instances spend *grants*, slices of
//! the limit handed out atomically by a Lua script (`helper`), so together they overshoot by at
//! most the last request each admits. Demand seen in usage records (refused requests included)
//! decides who asks and who gives back. `Fleet` is the `ledger::Judge` of a gateway in a fleet.
//!
//! Invariants: sums of another UTC day judge nothing; while Redis is away, or some of a limit
//! is still ungranted, only the estimate (fleet sum plus own count since) decides. Not here:
//! counting (`ledger`), enforcement (`routing`, `proxy`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::helper::{Ask, Pulled};
use super::{Fleet, Sent};
use crate::config::Config;
use crate::ledger::{self, Judge, Ledger};
use crate::snapshot::Snapshot;

/// A grant is asked for when less than half of one is left; one is at least this much of the
/// limit divided among the live instances …
const GRANT_SHARE: f64 = 0.25;
/// … or this long of this instance's recent spending, whichever is more.
const GRANT_HORIZON: Duration = Duration::from_secs(2);
/// An instance that has not spent on a counter for this long gives its unspent grant back
/// once the fleet has nothing left to grant.
const IDLE_RETURN: Duration = Duration::from_secs(1);
/// An instance blocked on a limit the fleet has all granted looks for returned slices this
/// often even without requests (a channel out for the day sees none).
const PROBE_ASK: Duration = Duration::from_secs(5);

/// Whether the fleet has been granted all of `limit` (within rounding).
fn all_granted(total: f64, limit: f64) -> bool {
    total >= limit * (1.0 - 1e-9)
}

/// One limited counter's grant.
#[derive(Debug, Clone)]
pub(super) struct Grant {
    /// What this instance holds today (none: not asked yet).
    pub(super) held: Option<f64>,
    /// Granted to the whole fleet today, as of the last answer.
    pub(super) total: f64,
    /// Own count at the previous round, when that was, and its smoothed growth per second.
    pub(super) last_own: f64,
    pub(super) last_at: Instant,
    pub(super) rate: f64,
    /// Last time a grant came in, and last time one was asked for.
    pub(super) granted: Option<Instant>,
    pub(super) asked: Option<Instant>,
    /// Last ask that could not be met in full.
    pub(super) starved: Option<Instant>,
}

/// When records last showed demand, for the grants: a limited counter whose scope has seen
/// requests lately (refused ones included) asks for more; one that has not gives back.
#[derive(Debug, Default)]
pub(super) struct Seen {
    pub(super) any: Option<Instant>,
    pub(super) keys: HashMap<Box<str>, Instant>,
    pub(super) channels: HashMap<Box<str>, Instant>,
}

impl Seen {
    pub(super) fn mark(map: &mut HashMap<Box<str>, Instant>, name: &str, now: Instant) {
        match map.get_mut(name) {
            Some(t) => *t = now,
            None => {
                map.insert(name.into(), now);
            }
        }
    }

    /// When counter `name` (a quota field) last saw demand.
    fn last(&self, name: &str) -> Option<Instant> {
        match ledger::CounterOf::parse(name)? {
            ledger::CounterOf::Global => self.any,
            ledger::CounterOf::Key(key) => self.keys.get(key).copied(),
            ledger::CounterOf::Channel(id, _) => self.channels.get(id).copied(),
        }
    }
}

impl Fleet {
    /// Grants to ask for (or give back) this round.
    pub(super) fn asks(
        &mut self,
        ledger: &Ledger,
        cfg: &Config,
        current: &Snapshot,
        sent: &mut Sent,
    ) -> Vec<Ask> {
        let now = Instant::now();
        let own: HashMap<String, f64> = ledger.counters().into_iter().collect();
        let n = self.instances.len().max(1) as f64;
        let mut out = Vec::new();
        for (counter, limit) in ledger::limited(cfg, &current.channels) {
            let mine = own.get(&counter).copied().unwrap_or(0.0);
            let recent = self
                .seen
                .last(&counter)
                .is_some_and(|t| now.saturating_duration_since(t) < IDLE_RETURN);
            let g = self.grants.entry(counter.clone()).or_insert(Grant {
                held: None,
                total: 0.0,
                last_own: mine,
                last_at: now,
                rate: 0.0,
                granted: None,
                asked: None,
                starved: None,
            });
            // Per second, not per round: early rounds come at any time.
            let dt = now.saturating_duration_since(g.last_at).as_secs_f64();
            if dt >= 0.01 {
                let per_s = (mine - g.last_own).max(0.0) / dt;
                let alpha = 1.0 - (-dt / GRANT_HORIZON.as_secs_f64()).exp();
                g.rate += alpha * (per_s - g.rate);
                g.last_own = mine;
                g.last_at = now;
            }
            let chunk = (limit * GRANT_SHARE / n)
                .max(g.rate * GRANT_HORIZON.as_secs_f64())
                .min(limit)
                .max(f64::MIN_POSITIVE);
            // What this instance holds is read every round; until the first read, wait.
            let Some(held) = g.held else {
                continue;
            };
            let left = held - mine;
            let scarce = all_granted(g.total, limit);
            let since =
                |t: Option<Instant>| t.map_or(Duration::MAX, |t| now.saturating_duration_since(t));
            // When the fleet had nothing left, ask again once a second, not every round.
            let starved = since(g.starved) < Duration::from_secs(1);
            let want = if self.reregister && held > 0.0 {
                // A new connection: a Redis that restarted empty learns what this one holds.
                0.0
            } else if left < chunk / 2.0
                && !starved
                && (recent || (scarce && since(g.asked) >= PROBE_ASK))
            {
                // Running low with demand (ahead, so the next grant is there in time; what
                // was spent beyond the grant is covered too); or, blocked while everything
                // is granted, a look now and then for slices given back.
                chunk + (-left).max(0.0)
            } else if left > 0.0 && scarce && !recent && since(g.granted) >= IDLE_RETURN {
                // Idle while the fleet has nothing left: give the rest back to the busy.
                -left
            } else {
                continue;
            };
            if want > 0.0 {
                g.asked = Some(now);
            }
            sent.asks.push((counter.clone(), held, want));
            out.push(Ask {
                counter,
                held,
                want,
                limit,
            });
        }
        self.reregister = false;
        out
    }

    /// Applies a round's answers to the grants it asked for (`asks`: counter, held before,
    /// wanted), the day's grant table, and the fleet's quota sums of UTC day `day` (marking the
    /// ledger for judging when they moved).
    pub(super) fn apply_grants(
        &mut self,
        asks: &[(String, f64, f64)],
        day: u64,
        p: &Pulled,
        ledger: &mut Ledger,
        was_connected: bool,
        now: Instant,
    ) {
        for ((counter, before, want), (held, total)) in asks.iter().zip(&p.grants) {
            if let Some(g) = self.grants.get_mut(counter) {
                g.starved = (*want > 0.0 && held - before < want * 0.999).then_some(now);
                if held > before {
                    g.granted = Some(now);
                }
                g.held = Some(*held);
                g.total = *total;
            }
        }
        // The day's grants as read after the asks: the fleet's totals, and what this instance
        // holds when it did not know yet (after a restart).
        for (counter, g) in &mut self.grants {
            g.total = p.granted.get(counter).copied().unwrap_or(0.0);
            // Redis says what this instance holds (a slice taken back from it, a give-back
            // whose answer was lost); a missing field (Redis lost its data) keeps ours, which
            // the next ask registers again.
            let mine = format!("{counter}@{}", self.cfg.instance_id);
            match p.granted.get(&mine) {
                Some(v) => g.held = Some(*v),
                None if g.held.is_none() => g.held = Some(0.0),
                None => {}
            }
        }
        // Sums of another day (a round that crossed midnight) judge nothing.
        let quota = if day == ledger.day {
            p.quota.clone()
        } else {
            HashMap::new()
        };
        if self.fleet_quota != quota || !asks.is_empty() || !was_connected {
            self.fleet_quota = quota;
            ledger.dirty = true;
        }
    }

    /// Every grant this instance asked for today: (counter, held, granted to the fleet).
    pub(crate) fn grants(&self) -> Vec<(String, f64, f64)> {
        let mut out: Vec<(String, f64, f64)> = self
            .grants
            .iter()
            .filter_map(|(k, g)| Some((k.clone(), g.held?, g.total)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Judge for Fleet {
    /// A counter is spent when the fleet's last known sum plus what this instance counted
    /// since reaches the limit; and, once the whole limit has been granted, for an instance
    /// that has used up its grant: the instances together stay within the limit but for the
    /// last request each admitted. While some of the limit is still ungranted (instances ask
    /// ahead, before they run out) and while Redis is away, only the estimate decides.
    fn spent(&self, name: &str, own: f64, limit: f64) -> bool {
        if self.total(name, own) >= limit {
            return true;
        }
        match self.grants.get(name) {
            Some(g) if self.connected && all_granted(g.total, limit) => {
                g.held.is_some_and(|held| own >= held)
            }
            _ => false,
        }
    }

    fn total(&self, name: &str, own: f64) -> f64 {
        let pushed = self.quota_pushed.get(name).copied().unwrap_or(0.0);
        let fleet = self.fleet_quota.get(name).copied().unwrap_or(pushed);
        (fleet - pushed).max(0.0) + own
    }
}
