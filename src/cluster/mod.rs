//! Scale-out: several gateway instances behave as one through a shared Redis (`[cluster]`).
//! This is the control thread's side of it (`Fleet`: the rounds, here); the Redis client runs
//! on a helper thread ([`helper`]); the key schema is [`schema`]. What a round carries is kept
//! by topic: `health` (the exchanged cooldowns), `shares` (rate shares), `quota` (grants and
//! the fleet's sums: `Fleet` judges counters for the `ledger`), `usage` (day totals).
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
//!   request each admits (see `Fleet::spent`); demand seen in usage records (refused
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

mod health;
mod quota;
mod shares;
mod usage;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::config::{ClusterConfig, Config};
use crate::ledger::Ledger;
use crate::limits::ShareBoard;
use crate::live::Merger;
use crate::live::health::Health;
use crate::snapshot::Snapshot;

use health::Synced;
use helper::{Job, Reply, Round, Writes};
use quota::{Grant, Seen};
use schema::{Clock, Keys};
pub(crate) use shares::Share;
use usage::{Named, Usage};

/// What the round in flight carried, to settle when its reply comes.
#[derive(Debug, Default)]
struct Sent {
    quota: Vec<(String, f64)>,
    usage: Vec<Named>,
    usage_day: u64,
    health: Vec<(health::Slot, Health)>,
    asks: Vec<(String, f64, f64)>,
    demand: Vec<(usize, String, f64)>,
    restore: bool,
    /// The UTC day (days since the epoch) the round's fleet sums are for.
    day: u64,
    /// Yesterday's last usage writes, put back if the round fails.
    leftover: Vec<Writes>,
}

/// The control thread's view of the fleet.
#[derive(Debug)]
pub(crate) struct Fleet {
    /// The `[cluster]` settings in force (from the config at start).
    pub(crate) cfg: ClusterConfig,
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
    pub(crate) connected: bool,
    down_since: Option<Instant>,
    shares_local: bool,
    /// Live instances, this one included, as of the last round.
    pub(crate) instances: Vec<String>,
    restored: bool,
    /// Rounds that succeeded and failed.
    pub(crate) rounds: (u64, u64),
    /// Round-trip time of the last successful round.
    pub(crate) last_rtt: Option<Duration>,
    /// When the last round succeeded.
    pub(crate) last_ok: Option<SystemTime>,
    /// The latest failure, in words (never the URL).
    pub(crate) last_error: Option<String>,
    /// Rate shares as of the last round.
    pub(crate) shares: Vec<Share>,
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
    pub(crate) fn start(cfg: &ClusterConfig) -> Option<Fleet> {
        let (jobs, job_rx) = crossbeam_channel::unbounded();
        let (reply_tx, replies) = crossbeam_channel::unbounded();
        let keys = Keys::new(&cfg.prefix);
        let timeout =
            (cfg.sync_interval * 5).clamp(Duration::from_millis(200), Duration::from_secs(2));
        let settings = helper::Settings {
            url: cfg.redis.expose().to_string(),
            instance: cfg.instance_id.clone(),
            keys,
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

    /// Called every control loop turn: settles a finished round, applies what it brought, and
    /// sends the next one when due. True when the published state must change (health adopted
    /// or quota inputs moved).
    pub(crate) fn poll(
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
        self.shares_alone(shares, now);
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

    /// Settles the round in flight with its reply: a failure puts what it carried back; an
    /// answer records what was exchanged and applies what the fleet did (health, restored
    /// counters, rate shares, grants and quota sums).
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
        self.record_exchanged(&sent.health, merger);
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
        self.take_fleet_health(&p.health, p.fresh, merger, current);
        self.apply_shares(&sent.demand, &p.demand, shares);
        self.apply_grants(&sent.asks, sent.day, &p, ledger, was_connected, now);
    }

    /// Asks the helper for the fleet's usage totals over `days` (answered on `Receiver`).
    pub(crate) fn usage_query(
        &self,
        days: Vec<String>,
    ) -> Option<Receiver<Result<HashMap<String, f64>, String>>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.jobs.send(Job::Usage(days, tx)).ok()?;
        Some(rx)
    }
}

#[cfg(test)]
mod tests;
