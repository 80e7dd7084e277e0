//! Scale-out: several gateway instances behave as one through a shared Redis (`[cluster]`).
//! This is the control thread's side of it ([`Fleet`]); the Redis client runs on a helper
//! thread ([`helper`]); the key schema is [`schema`].
//!
//! Once per `sync_interval` the control thread sends the helper one round that pushes what
//! changed here and pulls what the fleet did:
//!
//! * **health**: every cooldown or recovery the merged live state took since the last round
//!   (not ones adopted from the fleet) goes out — at once, in an early round, when it happened
//!   here; the fleet's changes come back and are adopted where newer (the same
//!   later-`updated`-wins rule workers use), then published at once. A cooldown decided on one
//!   instance reaches every worker of every instance within one sync interval plus a tick.
//! * **rate limits**: this instance's demand per limited key and channel (requests/s) goes
//!   out; its share of each fleet-wide rate is its demand over everyone's (each plus a floor),
//!   written to the [`ShareBoard`] the workers already split by. No request waits on Redis.
//! * **daily quotas and budgets**: this instance's counters go out as absolute values; the
//!   fleet's sums come back. Near a limit the instances spend *grants*: slices of the limit
//!   handed out atomically by a Lua script, so together they overshoot by at most the last
//!   request each admits (see [`Fleet::spent`]); demand seen in usage records (refused
//!   requests included) decides who asks and who gives back.
//! * **usage**: per-day totals per key, channel, model and provider, summed over the fleet
//!   for `GET /admin/usage?scope=fleet`.
//!
//! Redis down or slow: rounds fail, the instance serves on local state (rate shares fall back
//! to the whole limit, quotas to the last known fleet sums plus local counts), the metric
//! `smart_router_cluster_connected` reads 0, and the helper reconnects with backoff. The first
//! round on a new connection pushes everything again (absolute values: idempotent) and reads the
//! whole health table: that is the reconciliation.
//!
//! Invariants: only the control thread calls in here, never blocking (channels to the helper
//! are polled); at most one round is in flight; nothing here waits for Redis. Not here: Redis
//! I/O (`helper`), enforcement (`routing`, `proxy`, `limits`).

pub mod helper;
pub mod schema;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::config::{ClusterConfig, Config};
use crate::ledger::{self, Judge, Ledger};
use crate::limits::{ShareBoard, TRACKED_KEYS, channel_slot, key_slot};
use crate::live::Merger;
use crate::live::health::Health;
use crate::snapshot::Snapshot;
use crate::usage::{Record, Totals};

use helper::{Ask, Job, Reply, Round, Writes};
use schema::{Clock, Keys};

/// Demand floor per instance, requests/s: an idle instance keeps a small share so the first
/// request that lands on it is not refused while the shares catch up.
const DEMAND_FLOOR: f64 = 0.25;

/// How long Redis may be unreachable before rate shares fall back to the whole limit.
const SHARES_GRACE: Duration = Duration::from_secs(2);

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

/// Usage groups kept per day.
const GROUPS: [&str; 5] = ["total", "channel", "model", "provider", "key"];

/// One limited counter's grant.
#[derive(Debug, Clone)]
struct Grant {
    /// What this instance holds today (none: not asked yet).
    held: Option<f64>,
    /// Granted to the whole fleet today, as of the last answer.
    total: f64,
    /// Own count at the previous round, when that was, and its smoothed growth per second.
    last_own: f64,
    last_at: Instant,
    rate: f64,
    /// Last time a grant came in, and last time one was asked for.
    granted: Option<Instant>,
    asked: Option<Instant>,
    /// Last ask that could not be met in full.
    starved: Option<Instant>,
}

/// This instance's health view as last exchanged with the fleet, indexed like the live state.
#[derive(Debug, Default)]
struct Synced {
    snap: Option<Arc<Snapshot>>,
    channels: Vec<Health>,
    entries: Vec<Health>,
    channel_ix: HashMap<Box<str>, usize>,
    entry_ix: HashMap<(Box<str>, Box<str>), usize>,
}

/// A usage group (index into [`GROUPS`]) and a name in it.
type Named = (u8, Box<str>);

/// Today's usage totals of this instance, per group and name, with what changed since the
/// last push.
#[derive(Debug, Default)]
struct Usage {
    day: u64,
    groups: [HashMap<Box<str>, Totals>; 5],
    /// Per group, the names changed since the last push (looked up by `&str`: no allocation
    /// per record once a name is marked).
    dirty: [std::collections::HashSet<Box<str>>; 5],
}

impl Usage {
    fn touch(&mut self, g: u8, name: &str) -> &mut Totals {
        let dirty = &mut self.dirty[g as usize];
        if !dirty.contains(name) {
            dirty.insert(name.into());
        }
        let map = &mut self.groups[g as usize];
        if !map.contains_key(name) {
            map.insert(name.into(), Totals::default());
        }
        map.get_mut(name).expect("inserted above")
    }

    fn fields(&self, g: u8, name: &str) -> Vec<(String, f64)> {
        let t = self.groups[g as usize]
            .get(name)
            .cloned()
            .unwrap_or_default();
        let group = GROUPS[g as usize];
        t.metrics()
            .into_iter()
            .map(|(m, v)| (schema::usage_field(group, name, m), v))
            .collect()
    }

    /// The changed fields, taken (they go back with [`Usage::retake`] if the round fails).
    fn take(&mut self) -> (Vec<(String, f64)>, Vec<Named>) {
        let names: Vec<Named> = self
            .dirty
            .iter_mut()
            .enumerate()
            .flat_map(|(g, d)| d.drain().map(move |n| (g as u8, n)))
            .collect();
        let fields = names.iter().flat_map(|(g, n)| self.fields(*g, n)).collect();
        (fields, names)
    }

    fn retake(&mut self, names: Vec<Named>) {
        for (g, n) in names {
            self.dirty[g as usize].insert(n);
        }
    }

    fn mark_all(&mut self) {
        let all: Vec<Named> = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, m)| m.keys().map(move |k| (g as u8, k.clone())))
            .collect();
        self.retake(all);
    }
}

/// When records last showed demand, for the grants: a limited counter whose scope has seen
/// requests lately (refused ones included) asks for more; one that has not gives back.
#[derive(Debug, Default)]
struct Seen {
    any: Option<Instant>,
    keys: HashMap<Box<str>, Instant>,
    channels: HashMap<Box<str>, Instant>,
}

impl Seen {
    fn mark(map: &mut HashMap<Box<str>, Instant>, name: &str, now: Instant) {
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

/// What the round in flight carried, to settle when its reply comes.
#[derive(Debug, Default)]
struct Sent {
    quota: Vec<(String, f64)>,
    usage: Vec<Named>,
    usage_day: u64,
    health: Vec<(bool, usize, Health)>,
    asks: Vec<(String, f64, f64)>,
    demand: Vec<(usize, String, f64)>,
    restore: bool,
    /// The UTC day (days since the epoch) the round's fleet sums are for.
    day: u64,
    /// Yesterday's last usage writes, put back if the round fails.
    leftover: Vec<Writes>,
}

/// This instance's share of one fleet-wide rate, as of the last round.
#[derive(Debug, Clone)]
pub struct Share {
    /// `key|<name>` or `ch|<id>`.
    pub field: String,
    /// This instance's demand, requests/s.
    pub mine: f64,
    /// The other instances' demand, requests/s.
    pub theirs: f64,
    /// The share this instance runs at.
    pub share: f64,
}

/// The control thread's view of the fleet.
#[derive(Debug)]
pub struct Fleet {
    /// Settings.
    pub cfg: ClusterConfig,
    keys: Keys,
    jobs: Sender<Job>,
    replies: Receiver<Reply>,
    sent: Option<Sent>,
    next_round: Instant,
    last_sent: Option<Instant>,
    /// When the round in flight was sent, how long it may take, and whether the helper is
    /// still busy with one given up on.
    sent_at: Option<Instant>,
    deadline: Duration,
    stuck: bool,
    /// The last round succeeded.
    pub connected: bool,
    down_since: Option<Instant>,
    shares_local: bool,
    /// Live instances, this one included, as of the last round.
    pub instances: Vec<String>,
    restored: bool,
    /// Rounds that succeeded and failed.
    pub rounds: (u64, u64),
    /// Round-trip time of the last successful round.
    pub last_rtt: Option<Duration>,
    /// When the last round succeeded.
    pub last_ok: Option<SystemTime>,
    /// The latest failure, in words (never the URL).
    pub last_error: Option<String>,
    /// Rate shares as of the last round.
    pub shares: Vec<Share>,
    synced: Synced,
    push_all_health: bool,
    push_all_quota: bool,
    /// Health changes from the fleet waiting for the catalog generation they name.
    pending_health: Vec<(String, String)>,
    /// When records last showed demand (refused requests included): any, per key, per channel.
    seen: Seen,
    reregister: bool,
    usage: Usage,
    quota_day: u64,
    quota_pushed: HashMap<String, f64>,
    fleet_quota: HashMap<String, f64>,
    grants: HashMap<String, Grant>,
    leftover: Vec<Writes>,
}

impl Fleet {
    /// Starts the helper thread; `None` (logged) when it cannot start.
    pub fn start(cfg: &ClusterConfig) -> Option<Fleet> {
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let (reply_tx, replies) = crossbeam_channel::unbounded();
        let keys = Keys::new(&cfg.prefix);
        let timeout =
            (cfg.sync_interval * 5).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let settings = helper::Settings {
            url: cfg.redis.expose().to_string(),
            instance: cfg.instance_id.clone(),
            keys: keys.clone(),
            timeout,
        };
        if let Err(e) = helper::spawn(settings, job_rx, reply_tx) {
            tracing::error!(error = %e, "cluster: cannot start the helper thread; running alone");
            return None;
        }
        let now_ms = crate::clock::now_ms();
        tracing::info!(
            instance = %cfg.instance_id,
            redis = %cfg.redis_shown(),
            sync_ms = cfg.sync_interval.as_millis() as u64,
            "cluster: sharing state through Redis"
        );
        Some(Fleet {
            cfg: cfg.clone(),
            keys,
            jobs,
            replies,
            sent: None,
            next_round: Instant::now(),
            last_sent: None,
            sent_at: None,
            deadline: timeout * 4 + cfg.sync_interval,
            stuck: false,
            connected: false,
            down_since: Some(Instant::now()),
            shares_local: true,
            instances: Vec::new(),
            restored: false,
            rounds: (0, 0),
            last_rtt: None,
            last_ok: None,
            last_error: None,
            shares: Vec::new(),
            synced: Synced::default(),
            push_all_health: true,
            push_all_quota: false,
            pending_health: Vec::new(),
            seen: Seen::default(),
            reregister: false,
            usage: Usage {
                day: now_ms / 86_400_000,
                ..Usage::default()
            },
            quota_day: now_ms / 86_400_000,
            quota_pushed: HashMap::new(),
            fleet_quota: HashMap::new(),
            grants: HashMap::new(),
            leftover: Vec::new(),
        })
    }

    /// Counts one usage record into today's totals.
    pub fn count(&mut self, r: &Record) {
        let day = r.unix_ms / 86_400_000;
        if day < self.usage.day {
            return;
        }
        if day > self.usage.day {
            // Yesterday's last changes still go out, under yesterday's key.
            let (fields, _) = self.usage.take();
            self.leftover.push(Writes {
                day: crate::clock::day(self.usage.day * 86_400_000),
                quota: false,
                fields,
            });
            self.usage = Usage {
                day,
                ..Usage::default()
            };
        }
        let one = Totals::of(r);
        let add = |t: &mut Totals| t.add(&one);
        let now = Instant::now();
        self.seen.any = Some(now);
        if let Some(k) = &r.client {
            Seen::mark(&mut self.seen.keys, k, now);
        }
        if !r.channel().is_empty() {
            Seen::mark(&mut self.seen.channels, r.channel(), now);
        }
        add(self.usage.touch(0, ""));
        add(self.usage.touch(1, r.channel()));
        add(self.usage.touch(2, r.model()));
        add(self.usage.touch(3, r.provider()));
        if let Some(k) = &r.client {
            add(self.usage.touch(4, k));
        }
    }

    /// Called every control loop turn: settles a finished round, applies what it brought, and
    /// sends the next one when due. True when the published state must change (health adopted
    /// or quota inputs moved).
    pub fn poll(
        &mut self,
        merger: &mut Merger,
        ledger: &mut Ledger,
        current: &Arc<Snapshot>,
        cfg: &Config,
        shares: &ShareBoard,
        now: Instant,
    ) {
        loop {
            match self.replies.try_recv() {
                // The late answer of a round given up on: the helper is free again.
                Ok(_) if self.stuck => self.stuck = false,
                Ok(reply) => self.settle(reply, merger, ledger, current, shares, now),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    if self.connected {
                        tracing::error!("cluster: the helper thread stopped; running alone");
                        self.down_since = Some(now);
                        ledger.dirty = true;
                    }
                    self.connected = false;
                    self.sent = None;
                    break;
                }
            }
        }
        // A round the helper is stuck in (a black-holed Redis, a sentinel that never answers)
        // counts as failed once its deadline passes: the instance goes local instead of
        // judging on stale grants; no new round is sent until the helper answers.
        if self.sent_at.is_some_and(|t| {
            self.sent.is_some() && now.saturating_duration_since(t) > self.deadline
        }) {
            self.stuck = true;
            let e = format!("no answer from Redis within {:?}", self.deadline);
            self.settle(Reply::Failed(e), merger, ledger, current, shares, now);
        }
        if !self.connected
            && !self.shares_local
            && self.down_since.is_some_and(|t| now - t >= SHARES_GRACE)
        {
            // Local-only: each instance enforces the whole rate until Redis is back.
            for slot in 0..TRACKED_KEYS {
                shares.set_fleet(slot, 1.0);
            }
            self.shares_local = true;
        }
        // A health change of this instance goes out at once (not at the next interval), so it
        // reaches the fleet within one sync interval of the others' pulls; at most one such
        // early round per quarter of an interval, so a flapping channel cannot flood Redis.
        let early = merger.changed_here
            && self
                .last_sent
                .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.sync_interval / 4);
        if self.sent.is_none() && !self.stuck && (now >= self.next_round || early) {
            self.next_round = now + self.cfg.sync_interval;
            self.last_sent = Some(now);
            self.sent_at = Some(now);
            merger.changed_here = false;
            self.send(merger, ledger, current, cfg, shares);
        }
    }

    fn send(
        &mut self,
        merger: &Merger,
        ledger: &mut Ledger,
        current: &Arc<Snapshot>,
        cfg: &Config,
        shares: &ShareBoard,
    ) {
        let clock = Clock::now();
        let today = clock.unix_ms / 86_400_000;
        let day = crate::clock::day(clock.unix_ms);
        let mut sent = Sent {
            restore: !self.restored,
            usage_day: self.usage.day,
            day: today,
            ..Sent::default()
        };
        let mut round = Round {
            now_ms: clock.unix_ms,
            day,
            day_ttl_ms: (u64::from(cfg.usage.retain_days.max(1)) + 1) * 86_400_000,
            demand_ttl_ms: (self.cfg.sync_interval.as_millis() as u64 * 3).max(2_000),
            restore: !self.restored,
            others: self
                .instances
                .iter()
                .filter(|i| **i != self.cfg.instance_id)
                .cloned()
                .collect(),
            ..Round::default()
        };
        round.health = self.health_out(merger, current, &clock, &mut sent);
        // Counters go out only once this instance's own totals were read back: pushing fresh
        // zeros after a restart would overwrite what it had counted.
        if self.restored {
            if ledger.day != self.quota_day {
                // A new day: yesterday's sums and grants say nothing about today's limits.
                self.quota_day = ledger.day;
                self.quota_pushed.clear();
                self.fleet_quota.clear();
                self.grants.clear();
            }
            let all = std::mem::take(&mut self.push_all_quota);
            let changed: Vec<(String, f64)> = ledger
                .counters()
                .into_iter()
                .filter(|(k, v)| all || self.quota_pushed.get(k) != Some(v))
                .collect();
            if !changed.is_empty() {
                round.writes.push(Writes {
                    day: crate::clock::day(ledger.day * 86_400_000),
                    quota: true,
                    fields: changed.clone(),
                });
            }
            sent.quota = changed;
            let (fields, names) = self.usage.take();
            if !fields.is_empty() {
                round.writes.push(Writes {
                    day: crate::clock::day(self.usage.day * 86_400_000),
                    quota: false,
                    fields,
                });
            }
            sent.usage = names;
            sent.leftover = self.leftover.clone();
            round.writes.append(&mut self.leftover);
            if ledger.day == today {
                round.asks = self.asks(ledger, cfg, current, &mut sent);
            }
        }
        round.demand = Some(self.demand_out(current, shares, &mut sent));
        self.sent = Some(sent);
        if self.jobs.send(Job::Round(Box::new(round))).is_err() {
            self.sent = None;
        }
    }

    /// Health states that changed here since they were last exchanged.
    fn health_out(
        &mut self,
        merger: &Merger,
        current: &Arc<Snapshot>,
        clock: &Clock,
        sent: &mut Sent,
    ) -> Vec<(String, String, bool)> {
        let live = merger.view();
        if live.generation != current.catalog.generation {
            return Vec::new();
        }
        self.follow(current, live);
        let all = std::mem::take(&mut self.push_all_health);
        let mut out = Vec::new();
        let me = self.cfg.instance_id.as_str();
        let differs =
            |a: &Health, b: &Health| (a.until, a.failures, a.why) != (b.until, b.failures, b.why);
        let unhealthy = |h: &Health| h.failures > 0 || h.until.is_some();
        for (i, h) in live.channels.iter().enumerate() {
            if differs(h, &self.synced.channels[i]) || (all && unhealthy(h)) {
                let f = schema::health_field(&current.channels[i].id, None);
                out.push((f, schema::encode_health(h, clock, me), !unhealthy(h)));
                sent.health.push((true, i, *h));
            }
        }
        for (i, e) in live.entries.iter().enumerate() {
            let h = &e.health;
            if differs(h, &self.synced.entries[i]) || (all && unhealthy(h)) {
                let entry = &current.catalog.entries[i];
                let f = schema::health_field(
                    &current.channels[entry.channel as usize].id,
                    Some(&entry.model),
                );
                out.push((f, schema::encode_health(h, clock, me), !unhealthy(h)));
                sent.health.push((false, i, *h));
            }
        }
        out
    }

    /// Re-indexes the exchanged view for a new catalog generation, by channel id and model.
    fn follow(&mut self, current: &Arc<Snapshot>, live: &crate::live::Live) {
        let same = self
            .synced
            .snap
            .as_ref()
            .is_some_and(|s| s.catalog.generation == live.generation);
        if same {
            return;
        }
        let old = std::mem::take(&mut self.synced);
        let channel_ix: HashMap<Box<str>, usize> = current
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let entry_ix: HashMap<(Box<str>, Box<str>), usize> = current
            .catalog
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    (
                        current.channels[e.channel as usize].id.clone(),
                        e.model.clone(),
                    ),
                    i,
                )
            })
            .collect();
        let mut channels = vec![Health::default(); live.channels.len()];
        let mut entries = vec![Health::default(); live.entries.len()];
        for (id, &j) in &old.channel_ix {
            if let Some(&i) = channel_ix.get(id)
                && let Some(h) = old.channels.get(j)
                && i < channels.len()
            {
                channels[i] = *h;
            }
        }
        for (key, &j) in &old.entry_ix {
            if let Some(&i) = entry_ix.get(key)
                && let Some(h) = old.entries.get(j)
                && i < entries.len()
            {
                entries[i] = *h;
            }
        }
        self.synced = Synced {
            snap: Some(current.clone()),
            channels,
            entries,
            channel_ix,
            entry_ix,
        };
    }

    /// This instance's demand per limited key and channel, requests/s.
    fn demand_out(
        &self,
        current: &Snapshot,
        shares: &ShareBoard,
        sent: &mut Sent,
    ) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for i in 0..current.clients.len() as u32 {
            let Some(c) = current.clients.get(i) else {
                continue;
            };
            let slot = key_slot(i as usize);
            if c.limits.any() && slot < TRACKED_KEYS {
                let field = format!("key|{}", c.name);
                let d = f64::from(shares.demand(slot));
                sent.demand.push((slot, field.clone(), d));
                out.push((field, d));
            }
        }
        for (i, ch) in current.channels.iter().enumerate() {
            let slot = channel_slot(i);
            if ch.rate.any() && slot < TRACKED_KEYS {
                let field = format!("ch|{}", ch.id);
                let d = f64::from(shares.demand(slot));
                sent.demand.push((slot, field.clone(), d));
                out.push((field, d));
            }
        }
        out
    }

    /// Grants to ask for (or give back) this round.
    fn asks(
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

    fn settle(
        &mut self,
        reply: Reply,
        merger: &mut Merger,
        ledger: &mut Ledger,
        current: &Arc<Snapshot>,
        shares: &ShareBoard,
        now: Instant,
    ) {
        let Some(sent) = self.sent.take() else {
            return;
        };
        let p = match reply {
            Reply::Failed(e) => {
                self.rounds.1 += 1;
                if self.connected {
                    self.down_since = Some(now);
                    // Quotas are judged differently without Redis (the estimate alone).
                    ledger.dirty = true;
                }
                self.connected = false;
                self.last_error = Some(e);
                // Nothing it carried can be assumed written: it goes out again (health and
                // quota counters still differ from what was last exchanged; usage is re-marked).
                if sent.usage_day == self.usage.day {
                    self.usage.retake(sent.usage);
                }
                let mut leftover = sent.leftover;
                leftover.append(&mut self.leftover);
                self.leftover = leftover;
                return;
            }
            Reply::Done(p) => p,
        };
        self.rounds.0 += 1;
        let was_connected = self.connected;
        self.connected = true;
        self.down_since = None;
        self.shares_local = false;
        self.last_rtt = Some(p.rtt);
        self.last_ok = Some(SystemTime::now());
        for (f, v) in sent.quota {
            self.quota_pushed.insert(f, v);
        }
        let same_generation = self
            .synced
            .snap
            .as_ref()
            .is_some_and(|s| s.catalog.generation == merger.generation());
        if same_generation {
            for (channel, i, h) in &sent.health {
                let list = if *channel {
                    &mut self.synced.channels
                } else {
                    &mut self.synced.entries
                };
                if let Some(s) = list.get_mut(*i) {
                    *s = *h;
                }
            }
        }
        if p.fresh {
            // A new connection: Redis may have restarted empty. Push everything again (what
            // was pushed stays known: the fleet's sums count it until they are read anew).
            self.reregister = true;
            self.push_all_quota = true;
            self.usage.mark_all();
            self.push_all_health = true;
        }
        if let Some((quota, usage)) = &p.restored {
            for (f, v) in quota {
                ledger.raise(f, *v);
            }
            for (f, v) in usage {
                self.restore_usage(f, *v);
            }
            self.restored = true;
        } else if sent.restore {
            self.restored = true;
        }
        self.instances = p.instances.clone();
        let clock = Clock::now();
        for (f, v) in &p.health {
            // On joining (a fresh read of the whole table) only running cooldowns matter; an
            // expired one would put a channel half-open here for nothing.
            let running = schema::decode_health(v, &clock)
                .is_some_and(|(h, _)| h.until.is_some_and(|u| u > clock.at));
            if !p.fresh || running {
                self.pending_health.push((f.clone(), v.clone()));
            }
        }
        // Bounded: a catalog that never settles must not grow this without end (the oldest
        // changes go; a full read on the next connection would bring back what matters).
        let excess = self
            .pending_health
            .len()
            .saturating_sub(schema::LOG_CAP as usize);
        self.pending_health.drain(..excess);
        self.adopt(merger, current);
        // Rate shares.
        let others = self.instances.len().saturating_sub(1) as f64;
        self.shares.clear();
        for (slot, field, mine) in &sent.demand {
            let theirs = p.demand.get(field).copied().unwrap_or(0.0);
            let share =
                (mine + DEMAND_FLOOR) / (mine + DEMAND_FLOOR + theirs + others * DEMAND_FLOOR);
            shares.set_fleet(*slot, share as f32);
            self.shares.push(Share {
                field: field.clone(),
                mine: *mine,
                theirs,
                share,
            });
        }
        // Quotas.
        for ((counter, before, want), (held, total)) in sent.asks.iter().zip(&p.grants) {
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
        let quota = if sent.day == ledger.day {
            p.quota.clone()
        } else {
            HashMap::new()
        };
        if self.fleet_quota != quota || !sent.asks.is_empty() || !was_connected {
            self.fleet_quota = quota;
            ledger.dirty = true;
        }
    }

    /// Adopts the fleet's health changes that are newer than what this instance knows. During
    /// a catalog rebuild (the merger ahead of the published catalog) they wait for the next turn.
    fn adopt(&mut self, merger: &mut Merger, current: &Arc<Snapshot>) {
        if self.pending_health.is_empty() || merger.generation() != current.catalog.generation {
            return;
        }
        self.follow(current, merger.view());
        let clock = Clock::now();
        for (f, v) in std::mem::take(&mut self.pending_health) {
            let (f, v) = (f.as_str(), v.as_str());
            let Some((h, who)) = schema::decode_health(v, &clock) else {
                continue;
            };
            if who == self.cfg.instance_id {
                continue;
            }
            match schema::parse_health_field(f) {
                Some((c, None)) => {
                    if let Some(&i) = self.synced.channel_ix.get(c)
                        && merger.adopt_channel(i, h)
                    {
                        self.synced.channels[i] = h;
                        tracing::debug!(
                            channel = c,
                            from = who,
                            why = h.why.as_str(),
                            "cluster: adopted channel health"
                        );
                    }
                }
                Some((c, Some(m))) => {
                    if let Some(&i) = self.synced.entry_ix.get(&(c.into(), m.into()))
                        && merger.adopt_entry(i, h)
                    {
                        self.synced.entries[i] = h;
                    }
                }
                None => {}
            }
        }
    }

    fn restore_usage(&mut self, field: &str, v: f64) {
        let Some((group, name, metric)) = schema::parse_usage_field(field) else {
            return;
        };
        let Some(g) = GROUPS.iter().position(|x| *x == group) else {
            return;
        };
        self.usage
            .touch(g as u8, name)
            .merge_metric(metric, v, f64::max);
    }

    /// Asks the helper for the fleet's usage totals over `days` (answered on `Receiver`).
    pub fn usage_query(
        &self,
        days: Vec<String>,
    ) -> Option<Receiver<Result<HashMap<String, f64>, String>>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs.send(Job::Usage(days, tx)).ok()?;
        Some(rx)
    }

    /// Every grant this instance asked for today: (counter, held, granted to the fleet).
    pub fn grants(&self) -> Vec<(String, f64, f64)> {
        let mut out: Vec<(String, f64, f64)> = self
            .grants
            .iter()
            .filter_map(|(k, g)| Some((k.clone(), g.held?, g.total)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The key schema in use.
    pub fn keys(&self) -> &Keys {
        &self.keys
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fleet() -> Fleet {
        let cfg = ClusterConfig {
            redis: crate::config::Secret::new("redis://127.0.0.1:1/0"),
            instance_id: "me".into(),
            sync_interval: Duration::from_millis(100),
            prefix: "t".into(),
        };
        Fleet::start(&cfg).expect("helper thread starts")
    }

    fn grant(held: f64, total: f64) -> Grant {
        Grant {
            held: Some(held),
            total,
            last_own: 0.0,
            last_at: Instant::now(),
            rate: 0.0,
            granted: None,
            asked: None,
            starved: None,
        }
    }

    #[test]
    fn a_quota_is_spent_on_the_fleets_estimate_or_on_a_used_up_grant_once_all_is_granted() {
        let mut f = fleet();
        // Alone so far: own counts decide.
        assert!(!f.spent("cost", 0.9, 1.0));
        assert!(f.spent("cost", 1.0, 1.0));
        // The fleet's sum included 0.3 of ours; others spent 0.5: 0.5 + own.
        f.quota_pushed.insert("cost".into(), 0.3);
        f.fleet_quota.insert("cost".into(), 0.8);
        assert!((f.total("cost", 0.4) - 0.9).abs() < 1e-9);
        assert!(!f.spent("cost", 0.4, 1.0));
        assert!(f.spent("cost", 0.5, 1.0));
        // Connected, some of the limit still ungranted: the estimate alone decides.
        f.connected = true;
        f.grants.insert("cost".into(), grant(0.2, 0.7));
        assert!(!f.spent("cost", 0.3, 1.0));
        // Everything granted: this instance stops at what it holds …
        f.grants.insert("cost".into(), grant(0.35, 1.0));
        assert!(!f.spent("cost", 0.3, 1.0));
        assert!(f.spent("cost", 0.35, 1.0));
        // … but only while Redis answers; away from it, the estimate again.
        f.connected = false;
        assert!(!f.spent("cost", 0.35, 1.0));
    }

    #[test]
    fn usage_changes_go_out_once_and_again_after_a_failed_round() {
        let mut f = fleet();
        let mut u = Usage::default();
        u.touch(1, "ch-1").requests += 2;
        u.touch(1, "ch-1").cost += 0.5;
        u.touch(4, "team").requests += 1;
        let (fields, names) = u.take();
        assert_eq!(
            names.len(),
            2,
            "one entry per (group, name), however often touched"
        );
        assert!(fields.contains(&("channel|ch-1|requests".to_string(), 2.0)));
        assert!(fields.contains(&("channel|ch-1|cost".to_string(), 0.5)));
        assert!(fields.contains(&("key|team|requests".to_string(), 1.0)));
        assert!(u.take().0.is_empty(), "nothing changed since");
        u.retake(names);
        assert_eq!(
            u.take().0.len(),
            12,
            "a failed round's changes go out again"
        );
        // A restarted instance reads its own totals back and keeps the larger.
        f.usage.touch(2, "m").requests = 3;
        f.restore_usage("model|m|requests", 10.0);
        f.restore_usage("model|m|requests", 1.0);
        f.restore_usage("nonsense", 1.0);
        assert_eq!(f.usage.groups[2]["m"].requests, 10);
    }
}
