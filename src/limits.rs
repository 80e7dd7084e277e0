//! Client rate limits (`rps`, `rpm`, `tpm` per client key), enforced by each worker on its own
//! without locks, and a share split that keeps the sum over workers at the configured rate.
//!
//! Each limit is a token bucket: it refills at the configured rate and holds at most one
//! period's worth (`rpm` tokens for `rpm`, one second's for `rps`). A request takes one token
//! from each request bucket; `tpm` takes the prompt estimate on admission and the difference to
//! the real total when the answer's usage is known (the bucket may go negative, which holds
//! the next requests back until it refills: what a request really cost is always paid).
//!
//! The split: worker `i` runs every bucket at `share_i` of the rate and capacity. Once per tick
//! each worker publishes how many requests each limited key brought it (a smoothed rate, in
//! [`ShareBoard`]) and recomputes its share as its demand over the sum of all workers'
//! (each term plus a small floor, so an idle worker can still admit the first request that
//! lands on it). Every worker reads the same numbers, so the shares sum to one and the fleet
//! of workers admits the configured rate whichever worker the kernel hands a connection to.
//! Error: the demand estimate lags a tick (50 ms); the floor lends idle workers a few percent.
//!
//! Invariants: no allocation, lock or atomic per request (atomics only on the tick); time is
//! an argument (tests drive buckets with their own instants). Not here: daily budgets
//! (`ledger`), channel limits (routing filters).

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::auth::Clients;
use crate::config::RateLimits;

/// Demand slots on the board: client keys (by index in the snapshot's [`Clients`]) take the
/// first half, channels (by index) the second; keys or channels beyond their half split their
/// rate evenly across workers.
pub(crate) const TRACKED_KEYS: usize = 1024;
const CHANNEL_SLOTS: usize = TRACKED_KEYS / 2;

/// Share floor, in requests per second added to every worker's demand (so an idle worker can
/// admit the first request that lands on it). Per second, not per tick: with a short tick a
/// per-tick floor would lend idle workers a large part of a busy worker's rate.
const FLOOR: f32 = 0.25;

/// A token bucket running at some share of a configured rate.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: f64,
    cap: f64,
    share: f64,
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket refilling `per_period` tokens every `period`, at `share` of that.
    pub(crate) fn new(per_period: f64, period: Duration, share: f64, now: Instant) -> Bucket {
        let mut b = Bucket {
            rate: per_period / period.as_secs_f64(),
            cap: per_period,
            share: 1.0,
            tokens: per_period,
            last: now,
        };
        b.set_share(share, now);
        b
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now.max(self.last);
        self.tokens = (self.tokens + dt * self.rate * self.share).min(self.cap_now());
    }

    /// This worker's capacity: its share of the configured burst, at least one token (a
    /// request must fit somewhere).
    fn cap_now(&self) -> f64 {
        (self.cap * self.share).max(1.0_f64.min(self.cap))
    }

    /// Changes the share: the refill rate and the capacity follow it; what the bucket holds
    /// does not scale (only the new capacity caps it). Scaling up would turn an idle worker's
    /// full bucket at a small share into a second burst when traffic moves to it; scaling down
    /// would lose tokens every time demand wobbles.
    pub(crate) fn set_share(&mut self, share: f64, now: Instant) {
        self.refill(now);
        let share = share.clamp(0.0, 1.0);
        self.share = share;
        self.tokens = self.tokens.min(self.cap_now());
    }

    #[cfg(test)]
    /// Takes `n` tokens if there are `n` (or, for `n` of zero, if the bucket is not in debt).
    pub(crate) fn try_take(&mut self, n: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= n.max(f64::MIN_POSITIVE) || (n <= 0.0 && self.tokens >= 0.0) {
            self.tokens -= n;
            true
        } else {
            false
        }
    }

    /// Takes `n` tokens whatever the balance (a debt is repaid by refilling).
    pub(crate) fn charge(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens -= n;
    }

    /// Gives back `n` tokens taken for a request the gateway then refused (never above the
    /// capacity).
    pub(crate) fn refund(&mut self, n: f64, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens + n).min(self.cap_now());
    }

    /// How long until `n` tokens are there.
    pub(crate) fn wait(&self, n: f64) -> Duration {
        let missing = n - self.tokens;
        let rate = self.rate * self.share;
        if missing <= 0.0 {
            Duration::ZERO
        } else if rate <= 0.0 {
            Duration::from_secs(60)
        } else {
            Duration::from_secs_f64((missing / rate).min(3600.0))
        }
    }

    #[cfg(test)]
    /// Whole tokens available now (for `x-ratelimit-remaining-*`).
    pub(crate) fn remaining(&self) -> u64 {
        self.tokens.max(0.0) as u64
    }

    /// The configured limit per period (for `x-ratelimit-limit-*`).
    pub(crate) fn limit(&self) -> u64 {
        self.cap as u64
    }
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Which {
    /// `rps` or `rpm`.
    Requests,
    /// `tpm`.
    Tokens,
}

/// A refusal: what to tell the client.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Denied {
    /// The limit that refused.
    pub which: Which,
    /// When a retry can succeed.
    pub retry_after: Duration,
    /// The configured limit per period.
    pub limit: u64,
    /// The period's name for the message.
    pub per: &'static str,
}

#[derive(Debug)]
struct KeyBuckets {
    per_second: Option<Bucket>,
    per_minute: Option<Bucket>,
    tokens: Option<Bucket>,
    /// Requests this key brought since the last tick.
    demand: u32,
}

impl KeyBuckets {
    fn new(spec: RateLimits, share: f64, now: Instant) -> KeyBuckets {
        let minute = Duration::from_secs(60);
        KeyBuckets {
            per_second: spec
                .rps
                .map(|r| Bucket::new(r, Duration::from_secs(1), share, now)),
            per_minute: spec
                .rpm
                .map(|r| Bucket::new(f64::from(r), minute, share, now)),
            tokens: spec
                .tpm
                .map(|t| Bucket::new(f64::from(t), minute, share, now)),
            demand: 0,
        }
    }

    fn set_share(&mut self, share: f64, now: Instant) {
        for b in [&mut self.per_second, &mut self.per_minute, &mut self.tokens]
            .into_iter()
            .flatten()
        {
            b.set_share(share, now);
        }
    }
}

/// Smoothed per-worker demand of each tracked key, written once per tick by each worker, and
/// this instance's share of each key's fleet-wide rate, written by the control thread
/// (`[cluster]`; 1 when alone).
#[derive(Debug)]
pub(crate) struct ShareBoard {
    /// `[worker][key]`: smoothed requests per second (an `f32`'s bits).
    demand: Box<[Box<[AtomicU32]>]>,
    /// `[key]`: this instance's share of the fleet's rate (an `f32`'s bits).
    fleet: Box<[AtomicU32]>,
}

impl ShareBoard {
    /// A board for `workers` workers.
    pub(crate) fn new(workers: usize) -> ShareBoard {
        ShareBoard {
            demand: (0..workers.max(1))
                .map(|_| (0..TRACKED_KEYS).map(|_| AtomicU32::new(0)).collect())
                .collect(),
            fleet: (0..TRACKED_KEYS)
                .map(|_| AtomicU32::new(1.0f32.to_bits()))
                .collect(),
        }
    }

    #[cfg(feature = "cluster")]
    /// This instance's smoothed demand on slot `slot`, in requests per second.
    pub(crate) fn demand(&self, slot: usize) -> f32 {
        if slot >= TRACKED_KEYS {
            return 0.0;
        }
        (0..self.demand.len()).map(|w| self.get(w, slot)).sum()
    }

    #[cfg(any(test, feature = "cluster"))]
    /// Sets this instance's share of slot `slot`'s fleet-wide rate (clamped to 0..=1).
    pub(crate) fn set_fleet(&self, slot: usize, share: f32) {
        if let Some(f) = self.fleet.get(slot) {
            f.store(share.clamp(0.0, 1.0).to_bits(), Ordering::Relaxed);
        }
    }

    /// This instance's share of slot `slot`'s fleet-wide rate.
    pub(crate) fn fleet(&self, slot: usize) -> f32 {
        self.fleet
            .get(slot)
            .map_or(1.0, |f| f32::from_bits(f.load(Ordering::Relaxed)))
    }

    fn get(&self, worker: usize, key: usize) -> f32 {
        f32::from_bits(self.demand[worker][key].load(Ordering::Relaxed))
    }

    fn set(&self, worker: usize, key: usize, v: f32) {
        self.demand[worker][key].store(v.to_bits(), Ordering::Relaxed);
    }

    /// Worker `worker`'s share of key `key`, from everyone's published demand.
    pub(crate) fn share(&self, worker: usize, key: usize) -> f64 {
        let n = self.demand.len();
        if key >= TRACKED_KEYS {
            return 1.0 / n as f64;
        }
        if n <= 1 {
            return f64::from(self.fleet(key));
        }
        let total: f32 = (0..n).map(|w| self.get(w, key) + FLOOR).sum();
        f64::from((self.get(worker, key) + FLOOR) / total * self.fleet(key))
    }
}

/// One worker's limiter: buckets per limited key and per limited channel of the current
/// snapshot.
#[derive(Debug)]
pub(crate) struct Limiter {
    worker: usize,
    board: Arc<ShareBoard>,
    clients: Option<Arc<Clients>>,
    keys: Vec<Option<KeyBuckets>>,
    channel_set: Option<Arc<[crate::channel::Channel]>>,
    channels: Vec<Option<KeyBuckets>>,
    last_tick: Option<Instant>,
}

/// Time constant of the demand average: a few ticks at the default 50 ms, whatever the tick.
const SMOOTHING_S: f32 = 0.15;

/// The new smoothed demand (requests/s) from the previous one and `n` requests in `dt_s`.
fn smoothed(prev: f32, n: u32, dt_s: f32) -> f32 {
    let alpha = 1.0 - (-dt_s / SMOOTHING_S).exp();
    prev + alpha * (n as f32 / dt_s - prev)
}

/// The board slot of key `i` (past the keys' half: none, an even split).
pub(crate) fn key_slot(i: usize) -> usize {
    if i < CHANNEL_SLOTS { i } else { usize::MAX }
}

/// The board slot of channel `i`.
pub(crate) fn channel_slot(i: usize) -> usize {
    if i < CHANNEL_SLOTS {
        CHANNEL_SLOTS + i
    } else {
        usize::MAX
    }
}

/// Buckets for a new list of keys or channels, `(name, limits)` in order: one whose name and
/// limits are unchanged keeps its buckets (a reload does not refill them), a new one starts
/// full at this worker's `share` of its slot.
fn carry_over<'n>(
    mut old: Vec<(&'n str, RateLimits, KeyBuckets)>,
    new: impl Iterator<Item = (&'n str, RateLimits)>,
    share: impl Fn(usize) -> f64,
    now: Instant,
) -> Vec<Option<KeyBuckets>> {
    new.enumerate()
        .map(|(i, (name, spec))| {
            if !spec.any() {
                return None;
            }
            let kept = old
                .iter()
                .position(|(n, s, _)| *n == name && *s == spec)
                .map(|p| old.swap_remove(p).2);
            Some(kept.unwrap_or_else(|| KeyBuckets::new(spec, share(i), now)))
        })
        .collect()
}

/// Takes one request (and `tokens` estimated tokens) from a key's or channel's buckets, or
/// says which refused; nothing is taken when one refuses.
fn admit_in(kb: &mut KeyBuckets, tokens: u32, now: Instant) -> Result<(), Denied> {
    kb.demand = kb.demand.saturating_add(1);
    let deny = |b: &Bucket, which, n: f64, per| Denied {
        which,
        retry_after: b.wait(n),
        limit: b.limit(),
        per,
    };
    for (b, per) in [
        (&mut kb.per_second, "second"),
        (&mut kb.per_minute, "minute"),
    ] {
        if let Some(b) = b {
            b.refill(now);
            if b.tokens < 1.0 {
                return Err(deny(b, Which::Requests, 1.0, per));
            }
        }
    }
    if let Some(b) = &mut kb.tokens {
        b.refill(now);
        // Admitted while not in debt; the prompt estimate is charged now.
        if b.tokens <= 0.0 {
            return Err(deny(b, Which::Tokens, 1.0, "minute"));
        }
    }
    for b in [&mut kb.per_second, &mut kb.per_minute]
        .into_iter()
        .flatten()
    {
        b.charge(1.0, now);
    }
    if let Some(b) = &mut kb.tokens {
        b.charge(f64::from(tokens), now);
    }
    Ok(())
}

impl Limiter {
    /// Worker `worker`'s limiter, publishing on `board`.
    pub(crate) fn new(worker: usize, board: Arc<ShareBoard>) -> Limiter {
        Limiter {
            worker,
            board,
            clients: None,
            keys: Vec::new(),
            channel_set: None,
            channels: Vec::new(),
            last_tick: None,
        }
    }

    /// Follows a new channel set: a channel that kept its id and limits keeps its buckets.
    pub(crate) fn sync_channels(
        &mut self,
        channels: &Arc<[crate::channel::Channel]>,
        now: Instant,
    ) {
        if self
            .channel_set
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, channels))
        {
            return;
        }
        let prev = self.channel_set.take();
        let old = match &prev {
            Some(p) => self
                .channels
                .drain(..)
                .zip(p.iter())
                .filter_map(|(kb, ch)| Some((&*ch.id, ch.rate, kb?)))
                .collect(),
            None => Vec::new(),
        };
        let (worker, board) = (self.worker, &self.board);
        self.channels = carry_over(
            old,
            channels.iter().map(|ch| (&*ch.id, ch.rate)),
            |i| board.share(worker, channel_slot(i)),
            now,
        );
        self.channel_set = Some(channels.clone());
    }

    /// Takes a request from channel `c`'s limits, or says when it has room again.
    pub(crate) fn admit_channel(
        &mut self,
        c: u32,
        tokens: u32,
        now: Instant,
    ) -> Result<(), Denied> {
        match self.channels.get_mut(c as usize) {
            Some(Some(kb)) => admit_in(kb, tokens, now),
            _ => Ok(()),
        }
    }

    /// Charges channel `c` the difference between a request's real tokens and its estimate.
    pub(crate) fn settle_channel(&mut self, c: u32, estimated: u32, actual: u64, now: Instant) {
        if let Some(Some(kb)) = self.channels.get_mut(c as usize)
            && let Some(b) = &mut kb.tokens
        {
            b.charge(actual as f64 - f64::from(estimated), now);
        }
    }

    /// Follows a new set of keys (a reload): limits of keys that kept their name keep their
    /// buckets; new ones start full.
    pub(crate) fn sync(&mut self, clients: &Arc<Clients>, now: Instant) {
        if self
            .clients
            .as_ref()
            .is_some_and(|c| Arc::ptr_eq(c, clients))
        {
            return;
        }
        let prev = self.clients.take();
        let old = match &prev {
            Some(p) => self
                .keys
                .drain(..)
                .enumerate()
                .filter_map(|(i, kb)| {
                    let c = p.get(i as u32)?;
                    Some((&*c.name, c.limits, kb?))
                })
                .collect(),
            None => Vec::new(),
        };
        let (worker, board) = (self.worker, &self.board);
        self.keys = carry_over(
            old,
            (0..clients.len() as u32)
                .filter_map(|i| clients.get(i))
                .map(|c| (&*c.name, c.limits)),
            |i| board.share(worker, key_slot(i)),
            now,
        );
        self.clients = Some(clients.clone());
    }

    /// Admits a request of key `key` with `tokens` estimated prompt tokens, or says why not.
    /// Nothing is taken from any bucket when one refuses.
    pub(crate) fn admit(&mut self, key: u32, tokens: u32, now: Instant) -> Result<(), Denied> {
        match self.keys.get_mut(key as usize) {
            Some(Some(kb)) => admit_in(kb, tokens, now),
            _ => Ok(()),
        }
    }

    /// Gives back what admitting a request took from `rpm` and `tpm` when the gateway itself
    /// then refused it (a model outside the key's allowance, nothing usable, a bad body): a
    /// request that reached no upstream costs the client none of its per-minute allowance.
    /// `rps` keeps it: that limit is flood protection, and a flood of refusals is a flood.
    pub(crate) fn refund(&mut self, key: u32, tokens: u32, now: Instant) {
        if let Some(Some(kb)) = self.keys.get_mut(key as usize) {
            if let Some(b) = &mut kb.per_minute {
                b.refund(1.0, now);
            }
            if let Some(b) = &mut kb.tokens {
                b.refund(f64::from(tokens), now);
            }
        }
    }

    /// Charges the difference between a request's real token count and its estimate.
    pub(crate) fn settle(&mut self, key: u32, estimated: u32, actual: u64, now: Instant) {
        if let Some(Some(kb)) = self.keys.get_mut(key as usize)
            && let Some(b) = &mut kb.tokens
        {
            b.charge(actual as f64 - f64::from(estimated), now);
        }
    }

    /// Once per tick: publishes this worker's smoothed demand per key and takes its new share.
    pub(crate) fn tick(&mut self, now: Instant) {
        let dt = self
            .last_tick
            .map_or(0.05, |t| now.saturating_duration_since(t).as_secs_f32())
            .max(1e-3);
        self.last_tick = Some(now);
        let (worker, board) = (self.worker, &self.board);
        let slots = self
            .keys
            .iter_mut()
            .enumerate()
            .map(|(i, kb)| (key_slot(i), kb))
            .chain(
                self.channels
                    .iter_mut()
                    .enumerate()
                    .map(|(i, kb)| (channel_slot(i), kb)),
            );
        for (slot, kb) in slots {
            let Some(kb) = kb else { continue };
            if slot < TRACKED_KEYS {
                board.set(
                    worker,
                    slot,
                    smoothed(board.get(worker, slot), kb.demand, dt),
                );
            }
            kb.demand = 0;
            // Other workers' demand is at most a tick old: the smoothing makes that immaterial.
            kb.set_share(board.share(worker, slot), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn bucket_refills_at_its_rate_and_caps_at_its_burst() {
        let t0 = Instant::now();
        let mut b = Bucket::new(60.0, Duration::from_secs(60), 1.0, t0);
        for _ in 0..60 {
            assert!(b.try_take(1.0, t0));
        }
        assert!(!b.try_take(1.0, t0), "burst spent");
        assert_eq!(b.wait(1.0), Duration::from_secs(1));
        assert!(!b.try_take(1.0, at(t0, 990)));
        assert!(b.try_take(1.0, at(t0, 1_000)), "one per second comes back");
        // A long idle time refills to the cap, not beyond.
        assert!(b.try_take(60.0, at(t0, 1_000_000)));
        assert!(!b.try_take(1.0, at(t0, 1_000_000)));
    }

    #[test]
    fn a_half_share_runs_at_half_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(10.0, Duration::from_secs(1), 0.5, t0);
        let mut taken = 0;
        for ms in (0..10_000).step_by(10) {
            if b.try_take(1.0, at(t0, ms)) {
                taken += 1;
            }
        }
        // 5 burst + 5/s for ~10 s.
        assert!((52..=56).contains(&taken), "{taken}");
    }

    #[test]
    fn shares_follow_demand_and_sum_to_one() {
        let board = ShareBoard::new(2);
        assert_eq!(board.share(0, 3), 0.5);
        board.set(0, 3, 30.0);
        board.set(1, 3, 10.0);
        let (a, b) = (board.share(0, 3), board.share(1, 3));
        assert!((a + b - 1.0).abs() < 1e-6);
        assert!((a - 0.75).abs() < 0.01, "{a}");
        // All demand (30/s) on one worker: it gets all but the idle one's floor.
        board.set(1, 3, 0.0);
        assert!(board.share(0, 3) > 0.98, "{}", board.share(0, 3));
        // This instance's share of a fleet-wide rate scales every worker's.
        board.set_fleet(3, 0.5);
        assert!((board.share(0, 3) + board.share(1, 3) - 0.5).abs() < 1e-6);
        board.set_fleet(3, 1.0);
        assert_eq!(ShareBoard::new(1).share(0, 7), 1.0);
        assert_eq!(board.share(0, TRACKED_KEYS + 1), 0.5);
    }

    #[test]
    fn traffic_moving_to_an_idle_worker_brings_no_second_burst() {
        // Worker 1 sat idle with a full bucket at a small share; the traffic moves to it and
        // its share grows: it holds what it held, not a busy worker's burst.
        let t0 = Instant::now();
        let mut idle = Bucket::new(600.0, Duration::from_secs(60), 0.02, t0);
        assert_eq!(idle.remaining(), 12);
        idle.set_share(0.98, t0);
        assert_eq!(idle.remaining(), 12);
        // It refills at its new share of the rate: 9.8/s.
        assert_eq!(idle.wait(22.0), Duration::from_secs_f64(10.0 / 9.8));
    }

    #[test]
    fn a_token_debt_holds_requests_back_until_it_is_repaid() {
        let t0 = Instant::now();
        let mut b = Bucket::new(600.0, Duration::from_secs(60), 1.0, t0); // 10 tokens/s
        b.charge(1_000.0, t0); // a request used far more than estimated
        assert!(!b.try_take(0.0, t0));
        assert!(b.wait(0.0) > Duration::from_secs(39));
        assert!(b.try_take(0.0, at(t0, 40_000)));
    }

    #[test]
    fn a_worker_fleet_admits_the_configured_rate_whichever_worker_gets_the_traffic() {
        // Two workers, rpm 600 (10/s); 80 % of requests land on worker 0, offered at 40/s:
        // together they admit 10/s ± 10 % once the initial burst is spent (by ~20 s).
        let board = Arc::new(ShareBoard::new(2));
        let t0 = Instant::now();
        let spec = RateLimits {
            rpm: Some(600),
            ..RateLimits::default()
        };
        let mut ws: Vec<KeyBuckets> = (0..2).map(|_| KeyBuckets::new(spec, 0.5, t0)).collect();
        let mut admitted = 0u32;
        let mut sustained = 0u32;
        for (n, ms) in (0..60_000u64).step_by(25).enumerate() {
            let now = at(t0, ms);
            let w = if n % 5 == 4 { 1 } else { 0 };
            ws[w].demand += 1;
            if ws[w].per_minute.as_mut().expect("rpm").try_take(1.0, now) {
                admitted += 1;
                if ms >= 30_000 {
                    sustained += 1;
                }
            }
            if ms % 50 == 0 {
                for (i, kb) in ws.iter_mut().enumerate() {
                    board.set(i, 0, smoothed(board.get(i, 0), kb.demand, 0.05));
                    kb.demand = 0;
                }
                for (i, kb) in ws.iter_mut().enumerate() {
                    kb.set_share(board.share(i, 0), now);
                }
            }
        }
        // Once the burst is spent, 10/s for the last 30 s; over the whole minute, never more
        // than the rate plus one burst of 600 (less: the worker that gets 20 % of the traffic
        // holds only its share of the burst).
        assert!(
            (f64::from(sustained) - 300.0).abs() <= 30.0,
            "sustained {sustained}"
        );
        assert!((850..=1_200).contains(&admitted), "admitted {admitted}");
    }
}
