//! The control thread: owns the config and everything derived from it, and keeps the workers'
//! snapshots true while providers change. It runs its own monoio event loop with these tasks:
//!
//! * the main loop (every `POLL`): shutdown and reload requests, worker reports merged into
//!   live state (a health change publishes at once, averages within a tick), DNS answers, and
//!   a coalesced catalog rebuild when discovery, a reload or an admin override changed it;
//! * discovery rounds (`discovery`): every channel's model list, bounded concurrency;
//! * health probes (`probe`): recovery checks for channels out of rotation and idle ones;
//! * the admin API (`admin`) on its own listener; reloads (`reload`).
//!
//! Invariants: workers never wait on this thread: publication is a non-blocking `try_send` into
//! a one-slot channel per worker (an older unread snapshot is dropped first). Blocking work
//! (getaddrinfo, state-file writes) runs on helper threads, so a slow resolver or disk never
//! delays probes or the admin API. State lives in one `RefCell` borrowed only between awaits.
//! A failed re-resolution keeps the previous addresses.
//! Not here: request handling of any kind.

#![allow(clippy::disallowed_methods)] // the control plane may block briefly: it is not a worker

pub(crate) mod admin;
pub mod dns;
pub(crate) mod fetch;
pub(crate) mod http;
pub(crate) mod metrics;
pub(crate) mod reload;
pub(crate) mod store;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TryRecvError, TrySendError};

use crate::catalog::DiscoveryMap;
use crate::channel::tls::ClientTls;
use crate::channel::{Overrides, Resolved, TlsConfigs};
use crate::config::{Config, Scheme};
use crate::ledger;
use crate::live::Merger;
use crate::snapshot::Snapshot;
use crate::upstream::Pool;
use crate::usage::Report;
use crate::worker::runtime::Chosen;
use crate::worker::{Board, Command};

pub use reload::{Loader, ReloadReport};

/// Ring size of the control loop: a few dozen fetches and admin connections at most.
const CONTROL_RING_ENTRIES: u32 = 128;

/// How often the main loop looks for work (reports, requests, DNS answers, due rounds).
pub(crate) const POLL: Duration = Duration::from_millis(5);

/// Requests to the control thread.
#[derive(Debug)]
pub(crate) enum Request {
    /// Drain workers and stop.
    Shutdown,
    /// Re-read the config; the outcome goes to the sender, if any.
    Reload(Option<Sender<Result<ReloadReport, Vec<String>>>>),
}

/// One worker's snapshot slot: the sender, and a receiver clone used to discard an unread
/// older snapshot so the newest always fits.
#[derive(Debug)]
pub(crate) struct Slot {
    /// Sends to the worker.
    pub(crate) tx: Sender<Arc<Snapshot>>,
    /// Drains the worker's unread snapshot.
    pub(crate) rx: Receiver<Arc<Snapshot>>,
    /// Commands to the worker.
    pub(crate) commands: Sender<Command>,
}

impl Slot {
    fn publish(&self, s: Arc<Snapshot>) {
        let mut s = s;
        loop {
            match self.tx.try_send(s) {
                Ok(()) | Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(back)) => {
                    let _ = self.rx.try_recv();
                    s = back;
                }
            }
        }
    }
}

/// TLS client settings for every provider with an https base URL.
pub fn build_tls(cfg: &Config) -> Result<TlsConfigs, String> {
    let mut out = HashMap::new();
    for p in &cfg.providers {
        let https = cfg.channels.iter().any(|ch| {
            ch.provider < cfg.providers.len()
                && cfg.providers[ch.provider].id == p.id
                && cfg
                    .channel_base_url(ch)
                    .is_some_and(|u| u.scheme == Scheme::Https)
        });
        if !https {
            continue;
        }
        let pem = match &p.ca_file {
            None => None,
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                format!(
                    "providers.{}.ca_file: cannot read {}: {e}",
                    p.id,
                    path.display()
                )
            })?),
        };
        let tls = ClientTls::new(pem.as_deref())
            .map_err(|e| format!("providers.{}.ca_file: {e}", p.id))?;
        out.insert(p.id.clone(), tls);
    }
    let inbound = match &cfg.server.tls {
        None => None,
        Some(f) => Some(
            crate::server::stream::server_config(&f.cert, &f.key)
                .map_err(|e| format!("server.tls: {e}"))?,
        ),
    };
    Ok(TlsConfigs {
        upstream: out,
        inbound,
    })
}

/// What the control thread is given at start.
pub(crate) struct Setup {
    /// The validated config.
    pub(crate) cfg: Config,
    /// The snapshot every worker started with.
    pub(crate) first: Arc<Snapshot>,
    /// Worker count.
    pub(crate) workers: usize,
    /// The event-loop driver (the control loop runs the same one).
    pub(crate) driver: Chosen,
    /// TLS settings per provider.
    pub(crate) tls: TlsConfigs,
    /// One slot per worker.
    pub(crate) slots: Vec<Slot>,
    /// Requests (shutdown, reload).
    pub(crate) requests: Receiver<Request>,
    /// Worker outcome report batches.
    pub(crate) reports: Receiver<Vec<Report>>,
    /// The health board.
    pub(crate) board: Arc<Board>,
    /// Model lists from the discovery cache (already in `first`).
    pub(crate) discovered: DiscoveryMap,
    /// Admin overrides from the state dir (already in `first`).
    pub(crate) overrides: Overrides,
    /// The state directory.
    pub(crate) store: store::Store,
    /// The bound admin listener, if the admin API is on.
    pub(crate) admin: Option<std::net::TcpListener>,
    /// Re-reads the config on reload (none: nothing to re-read).
    pub(crate) loader: Option<Loader>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup")
            .field("epoch", &self.first.epoch)
            .finish_non_exhaustive()
    }
}

/// Starts the control thread.
pub(crate) fn spawn(setup: Setup) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("sar-control".into())
        .spawn(move || {
            let driver = setup.driver.clone();
            let ctl = Rc::new(Ctl::new(setup));
            if let Err(e) = crate::worker::runtime::block_on_with(
                &driver,
                CONTROL_RING_ENTRIES,
                run(ctl.clone()),
            ) {
                // No event loop: still stop the workers, or the process would hang on join.
                tracing::error!(error = %e, "control event loop failed to start");
                ctl.stop_workers_blocking();
            }
        })
}

/// The last fetch (discovery or probe) of a channel, for the admin API.
#[derive(Debug, Clone)]
pub(crate) struct Fetch {
    /// When it finished.
    pub(crate) at: SystemTime,
    /// Whether it succeeded.
    pub(crate) ok: bool,
    /// HTTP status, if one came back.
    pub(crate) status: Option<u16>,
    /// What happened, in words (never a key).
    pub(crate) detail: String,
    /// How long it took.
    pub(crate) ms: f32,
    /// Models found (discovery).
    pub(crate) models: Option<usize>,
}

/// What the control plane knows about a channel beyond the snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct ChannelStatus {
    /// Last discovery fetch.
    pub(crate) discovery: Option<Fetch>,
    /// Last health probe.
    pub(crate) probe: Option<Fetch>,
}

/// The outcome of the latest reload, for the admin API.
#[derive(Debug, Clone)]
pub(crate) struct LastReload {
    /// When it finished (wall clock, for `at_unix`).
    pub(crate) at: SystemTime,
    /// The errors that rejected it (empty: applied).
    pub(crate) errors: Vec<String>,
}

/// Everything the control thread owns and changes.
#[derive(Debug)]
pub(crate) struct State {
    /// The config in force.
    pub(crate) cfg: Config,
    /// The last published snapshot.
    pub(crate) current: Arc<Snapshot>,
    /// Worker count.
    pub(crate) workers: usize,
    /// Resolved upstream addresses.
    pub(crate) resolved: Resolved,
    /// TLS client settings per provider.
    pub(crate) tls: TlsConfigs,
    /// Discovered model lists by channel id.
    pub(crate) discovered: DiscoveryMap,
    /// Admin overrides.
    pub(crate) overrides: Overrides,
    /// Merged live state (ahead of `current.live` until published).
    pub(crate) merger: Merger,
    /// Host names to re-resolve.
    pub(crate) hosts: Vec<(String, u16)>,
    /// Host names whose latest lookup failed (a reload stops waiting for them).
    pub(crate) dns_failed: std::collections::HashSet<(String, u16)>,
    /// The catalog must be rebuilt (coalesced: one rebuild per loop turn).
    pub(crate) rebuild_due: bool,
    /// Averages changed: publish no later than this.
    pub(crate) stats_due: Option<Instant>,
    /// Per-channel fetch results.
    pub(crate) status: HashMap<String, ChannelStatus>,
    /// Time the last catalog rebuild took.
    pub(crate) build_time: Duration,
    /// Epoch and time of a publication not yet adopted by every worker.
    pub(crate) propagating: Option<(u64, Instant)>,
    /// How long the last publication took to reach every worker.
    pub(crate) propagation: Option<Duration>,
    /// Publications so far.
    pub(crate) publications: u64,
    /// Next discovery round.
    pub(crate) next_discovery: Option<Instant>,
    /// Channels an operator or a reload asked to (re)discover (empty list: all).
    pub(crate) discovery_wanted: Option<Vec<String>>,
    /// Next probe round.
    pub(crate) next_probe: Option<Instant>,
    /// Reloads applied and rejected so far.
    pub(crate) reloads: (u64, u64),
    /// The latest reload.
    pub(crate) last_reload: Option<LastReload>,
    /// The latest few reloads, oldest first (at most `RELOAD_HISTORY`).
    pub(crate) reload_history: Vec<LastReload>,
    /// Changes the running gateway could not apply (need a restart), from the last reload.
    pub(crate) restart_required: Vec<String>,
    /// Usage records merged but not yet handed to the store, by UTC day number.
    pub(crate) usage_lines: std::collections::BTreeMap<u64, Vec<u8>>,
    /// Today's counters for quotas and budgets.
    pub(crate) ledger: ledger::Ledger,
    /// When the counters may next be saved (at most once a second).
    pub(crate) next_counters_save: Instant,
    /// The UTC day (days since the epoch) old usage files were last pruned on.
    pub(crate) pruned_day: u64,
    /// Request metrics merged from usage records (`GET /metrics`).
    pub(crate) metrics: metrics::Metrics,
    /// `[telemetry]`: the span queue and exporter (none: off).
    pub(crate) telemetry: Option<crate::telemetry::Telemetry>,
    /// Spans dropped so far (kept across reloads that restart the exporter).
    pub(crate) spans_dropped: Arc<crate::telemetry::Drops>,
}

/// The control thread's shared context (single-threaded: `Rc` + `RefCell`).
pub(crate) struct Ctl {
    /// Mutable state.
    pub(crate) st: RefCell<State>,
    /// Upstream connections for discovery and probes.
    pub(crate) pool: Pool,
    /// Worker epochs and readiness.
    pub(crate) board: Arc<Board>,
    slots: Vec<Slot>,
    requests: Receiver<Request>,
    reports: Receiver<Vec<Report>>,
    /// The state directory.
    pub(crate) store: store::Store,
    resolver: dns::Resolver,
    admin: RefCell<Option<std::net::TcpListener>>,
    loader: Option<Loader>,
    /// A reload is running (reloads are serialized).
    pub(crate) reloading: Cell<bool>,
    /// A discovery round is running.
    pub(crate) discovering: Cell<bool>,
    /// A probe round is running.
    pub(crate) probing: Cell<bool>,
    /// The acknowledgement of the admin API's latest overrides write (awaited before it
    /// answers).
    pub(crate) pending_save: Cell<Option<Receiver<()>>>,
    /// When the control thread started.
    pub(crate) started: Instant,
    /// The fleet, with `[cluster]` (borrowed only between awaits, like `st`).
    #[cfg(feature = "cluster")]
    pub(crate) cluster: RefCell<Option<crate::cluster::Fleet>>,
}

impl std::fmt::Debug for Ctl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ctl")
            .field("epoch", &self.st.borrow().current.epoch)
            .finish_non_exhaustive()
    }
}

impl Ctl {
    fn new(setup: Setup) -> Ctl {
        let now = Instant::now();
        let live = (*setup.first.live).clone();
        let owners = owners(&setup.first);
        let cfg = setup.cfg;
        let next_discovery = cfg.discovery.enabled.then_some(now);
        // Discovery validates every key at start; without it, the first probe round does.
        let next_probe = cfg.health.enabled.then(|| {
            if cfg.discovery.enabled {
                now + cfg.health.interval
            } else {
                now
            }
        });
        setup
            .store
            .prune_usage(crate::clock::now_ms(), cfg.usage.retain_days);
        let spans_dropped = Arc::new(crate::telemetry::Drops::default());
        let state = State {
            telemetry: start_telemetry(&cfg, &spans_dropped),
            spans_dropped,
            merger: Merger::new(live, owners, cfg.routing.cooldown),
            hosts: crate::channel::hosts_to_resolve(&cfg),
            dns_failed: std::collections::HashSet::new(),
            current: setup.first,
            workers: setup.workers,
            resolved: Resolved::new(),
            tls: setup.tls,
            discovered: setup.discovered,
            overrides: setup.overrides,
            rebuild_due: false,
            stats_due: None,
            status: HashMap::new(),
            build_time: Duration::ZERO,
            propagating: None,
            propagation: None,
            publications: 0,
            next_discovery,
            discovery_wanted: None,
            next_probe,
            reloads: (0, 0),
            last_reload: None,
            reload_history: Vec::new(),
            restart_required: Vec::new(),
            usage_lines: Default::default(),
            ledger: setup
                .store
                .load_counters()
                .and_then(|b| ledger::Ledger::from_json(&b, crate::clock::now_ms()))
                .unwrap_or_else(|| ledger::Ledger::new(crate::clock::now_ms())),
            next_counters_save: now,
            pruned_day: crate::clock::now_ms() / 86_400_000,
            metrics: metrics::Metrics::since(crate::clock::now_ms()),
            cfg,
        };
        // The first loop turn judges the quotas (the first snapshot carries none).
        let mut state = state;
        state.ledger.dirty = true;
        #[cfg(feature = "cluster")]
        let cluster = RefCell::new(cfg_cluster(&state.cfg));
        Ctl {
            st: RefCell::new(state),
            pool: Pool::new(),
            board: setup.board,
            slots: setup.slots,
            requests: setup.requests,
            reports: setup.reports,
            store: setup.store,
            resolver: dns::Resolver::start(),
            admin: RefCell::new(setup.admin),
            loader: setup.loader,
            reloading: Cell::new(false),
            discovering: Cell::new(false),
            probing: Cell::new(false),
            pending_save: Cell::new(None),
            started: now,
            #[cfg(feature = "cluster")]
            cluster,
        }
    }

    /// Publishes `next` to every worker.
    fn publish(&self, st: &mut State, next: Snapshot) {
        let snap = Arc::new(next);
        for slot in &self.slots {
            slot.publish(snap.clone());
        }
        tracing::debug!(epoch = snap.epoch, "snapshot published");
        st.propagating = Some((snap.epoch, Instant::now()));
        st.publications += 1;
        st.current = snap;
    }

    /// Publishes the merged live state (health or averages changed).
    fn publish_live(&self, st: &mut State) {
        let epoch = st.current.epoch + 1;
        let live = st.merger.publish();
        let next = st.current.with_live(epoch, live);
        st.stats_due = None;
        self.publish(st, next);
    }

    /// New endpoints after DNS: same catalog and live state.
    fn publish_endpoints(&self, st: &mut State) {
        let epoch = st.current.epoch + 1;
        let fresh = Snapshot::build_with(
            &st.cfg,
            epoch,
            &st.resolved,
            &st.tls,
            st.workers,
            st.current.catalog.generation,
            &st.discovered,
            &st.overrides,
        );
        let next = st.current.with_channels(epoch, &fresh);
        self.publish(st, next);
    }

    /// Rebuilds channels and catalog (new generation), carrying live state over by channel id
    /// and (channel id, model), and publishes.
    pub(crate) fn rebuild(&self, st: &mut State) {
        // Reports already queued belong to the outgoing generation: merge them first, or the
        // new merger would drop them.
        self.merge_reports(st);
        let t = Instant::now();
        let epoch = st.current.epoch + 1;
        // Merged but unpublished health must not be lost in the carry-over.
        let merged = st
            .current
            .with_live(st.current.epoch, Arc::new(st.merger.view().clone()));
        let mut next = Snapshot::build_with(
            &st.cfg,
            epoch,
            &st.resolved,
            &st.tls,
            st.workers,
            st.current.catalog.generation + 1,
            &st.discovered,
            &st.overrides,
        );
        let live = merged.live_carried_into(&next);
        next.live = Arc::new(live.clone());
        next.quota = Arc::new(self.quota(st, &next.channels));
        st.merger = Merger::new(live, owners(&next), st.cfg.routing.cooldown);
        st.build_time = t.elapsed();
        st.rebuild_due = false;
        st.stats_due = None;
        tracing::info!(
            epoch,
            generation = next.catalog.generation,
            channels = next.channels.len(),
            entries = next.catalog.entries.len(),
            build_us = st.build_time.as_micros() as u64,
            "catalog rebuilt"
        );
        self.publish(st, next);
    }

    /// Index of the channel `id` in the current snapshot.
    pub(crate) fn channel_index(st: &State, id: &str) -> Option<usize> {
        st.current.channels.iter().position(|c| &*c.id == id)
    }

    /// Which quotas are spent: by this instance's counters alone, or as the fleet sees them.
    fn quota(&self, st: &State, channels: &[crate::channel::Channel]) -> crate::snapshot::Quota {
        #[cfg(feature = "cluster")]
        if let Some(fleet) = &*self.cluster.borrow() {
            return st.ledger.quota(&st.cfg, channels, fleet);
        }
        st.ledger.quota(&st.cfg, channels, &ledger::Alone)
    }

    /// One sync step with the fleet (`[cluster]`): settles a finished round, sends the next.
    #[cfg(feature = "cluster")]
    fn sync_cluster(&self, st: &mut State, now: Instant) {
        let mut fleet = self.cluster.borrow_mut();
        let Some(fleet) = fleet.as_mut() else {
            return;
        };
        fleet.poll(
            &mut st.merger,
            &mut st.ledger,
            &st.current,
            &st.cfg,
            &self.board.shares,
            now,
        );
    }

    /// Merges every queued report batch.
    fn merge_reports(&self, st: &mut State) {
        #[cfg(feature = "cluster")]
        let mut fleet = self.cluster.borrow_mut();
        let now_ms = crate::clock::now_ms();
        while let Ok(batch) = self.reports.try_recv() {
            for r in batch {
                if let Some(u) = r.usage {
                    #[cfg(feature = "cluster")]
                    if let Some(f) = fleet.as_mut() {
                        f.count(&u);
                    }
                    if st.cfg.usage.log {
                        let day = u.unix_ms / 86_400_000;
                        u.write_line(st.usage_lines.entry(day).or_default());
                    }
                    st.ledger.add(&u);
                    st.metrics.add(&u, now_ms);
                    if st.cfg.log.access {
                        access_log(&u);
                    }
                    if let Some(t) = st.telemetry.as_mut() {
                        t.add(&u);
                    }
                    continue;
                }
                if let Some(kind) = r.failure
                    && r.generation == st.current.catalog.generation
                    && let Some(ch) = st.current.channels.get(r.channel as usize)
                {
                    st.metrics.upstream_error(&ch.id, &ch.provider, kind);
                }
                st.merger.apply(&r);
            }
        }
        // Handed to the store every loop turn: the file is at most one turn behind.
        for (day, lines) in std::mem::take(&mut st.usage_lines) {
            self.store
                .append_usage(&crate::clock::day(day * 86_400_000), lines);
        }
    }

    /// Publishes the quotas the ledger says are spent, when that changed (a record spent one,
    /// or a new UTC day restored them), and saves the counters at most once a second.
    fn apply_quota(&self, st: &mut State, now: Instant) {
        let today = crate::clock::now_ms();
        st.ledger.roll(today);
        // Records may have rolled the ledger already: prune by the clock's day, once a day.
        if today / 86_400_000 > st.pruned_day {
            st.pruned_day = today / 86_400_000;
            self.store.prune_usage(today, st.cfg.usage.retain_days);
        }
        if !st.ledger.dirty {
            return;
        }
        let quota = self.quota(st, &st.current.channels);
        if *st.current.quota != quota {
            for (i, spent) in quota.channels.iter().enumerate() {
                if *spent && !st.current.quota.channel_spent(i) {
                    tracing::warn!(channel = %st.current.channels[i].id, "daily quota spent; the channel is out until 00:00 UTC");
                }
            }
            if let Some(why) = &quota.global
                && st.current.quota.global.is_none()
            {
                tracing::warn!(reason = %why, "global daily budget spent; requests answer 429");
            }
            let epoch = st.current.epoch + 1;
            let next = st.current.with_quota(epoch, Arc::new(quota));
            self.publish(st, next);
        }
        if now >= st.next_counters_save {
            st.ledger.dirty = false;
            st.next_counters_save = now + Duration::from_secs(1);
            self.store.save_counters(st.ledger.to_json());
        }
    }

    /// Merges resolver answers; true when any address set changed. Returns hosts answered.
    fn merge_dns(&self, st: &mut State) -> (bool, usize) {
        let mut changed = false;
        let mut answered = 0;
        while let Ok(batch) = self.resolver.results().try_recv() {
            for a in batch {
                answered += 1;
                match a.addrs {
                    Ok(addrs) if !addrs.is_empty() => {
                        let key = (a.host.clone(), a.port);
                        st.dns_failed.remove(&key);
                        if st.resolved.get(&key) != Some(&addrs) {
                            tracing::info!(host = %a.host, addrs = ?addrs, "upstream resolved");
                            st.resolved.insert(key, addrs);
                            changed = true;
                        }
                    }
                    Ok(_) => {
                        tracing::warn!(host = %a.host, "upstream host resolved to no address");
                        st.dns_failed.insert((a.host, a.port));
                    }
                    Err(e) => {
                        tracing::warn!(host = %a.host, error = %e, "cannot resolve upstream host; keeping previous addresses");
                        st.dns_failed.insert((a.host, a.port));
                    }
                }
            }
        }
        (changed, answered)
    }

    /// Starts resolving `hosts` on helper threads (`hosts_file` first: `[server] hosts_file`).
    pub(crate) fn resolve(
        &self,
        hosts: Vec<(String, u16)>,
        hosts_file: Option<std::path::PathBuf>,
    ) {
        if !hosts.is_empty() {
            self.resolver.resolve(hosts, hosts_file);
        }
    }

    /// Asks for a discovery round (all channels, or these ids) as soon as none is running.
    pub(crate) fn want_discovery(&self, ids: Option<Vec<String>>) {
        let mut st = self.st.borrow_mut();
        st.discovery_wanted = match (st.discovery_wanted.take(), ids) {
            (Some(mut a), Some(b)) if !a.is_empty() => {
                a.extend(b);
                Some(a)
            }
            (Some(_), _) | (None, None) => Some(Vec::new()),
            (None, Some(b)) => Some(b),
        };
    }

    /// Stops the workers when no event loop could be built.
    fn stop_workers_blocking(&self) {
        for slot in &self.slots {
            let _ = slot.commands.send(Command::Shutdown);
        }
    }
}

/// Longest an admin change or a reload waits for every worker to adopt its snapshot.
pub(crate) const PROPAGATION_WAIT: Duration = Duration::from_secs(2);

/// Waits until every worker holds snapshot `epoch` or a later one (bounded).
pub(crate) async fn propagated(ctl: &Ctl, epoch: u64) {
    let deadline = Instant::now() + PROPAGATION_WAIT;
    while ctl.board.min_epoch() < epoch && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
    track_propagation(&mut ctl.st.borrow_mut(), &ctl.board);
}

/// Records how long the pending publication took to reach every worker, once it has.
fn track_propagation(st: &mut State, board: &Board) {
    if let Some((epoch, at)) = st.propagating
        && board.min_epoch() >= epoch
    {
        st.propagation = Some(at.elapsed());
        st.propagating = None;
    }
}

/// The fleet link, when `[cluster]` is configured and its helper thread starts.
#[cfg(feature = "cluster")]
fn cfg_cluster(cfg: &Config) -> Option<crate::cluster::Fleet> {
    cfg.cluster.as_ref().and_then(crate::cluster::Fleet::start)
}

/// Channel index of every catalog entry.
fn owners(s: &Snapshot) -> Box<[u32]> {
    s.catalog.entries.iter().map(|e| e.channel).collect()
}

/// Up to ±10 % of `d`, from a per-call random seed (no crate needed for this).
pub(crate) fn jittered(d: Duration) -> Duration {
    use std::hash::{BuildHasher, Hasher};
    let r = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    let frac = (r % 2001) as f64 / 1000.0 - 1.0; // [-1, 1]
    d.mul_f64(1.0 + 0.1 * frac)
}

async fn run(ctl: Rc<Ctl>) {
    if let Some(l) = ctl.admin.borrow_mut().take() {
        match monoio::net::TcpListener::from_std(l) {
            Ok(l) => {
                monoio::spawn(admin::serve(ctl.clone(), l));
            }
            Err(e) => tracing::error!(error = %e, "admin API listener unusable"),
        }
    }
    // Hosts still unanswered in the first round; /health says `starting` until it is 0.
    let mut first_round = {
        let st = ctl.st.borrow();
        ctl.resolve(st.hosts.clone(), st.cfg.server.hosts_file.clone());
        st.hosts.len()
    };
    if first_round == 0 {
        ctl.board.set_resolved();
    }
    let mut next_resolve = Instant::now() + ctl.st.borrow().cfg.server.dns_refresh;
    'main: loop {
        loop {
            match ctl.requests.try_recv() {
                Ok(Request::Shutdown) | Err(TryRecvError::Disconnected) => break 'main,
                Ok(Request::Reload(reply)) => {
                    let c = ctl.clone();
                    monoio::spawn(async move {
                        let r = reload::reload(&c).await;
                        if let Some(tx) = reply {
                            let _ = tx.send(r);
                        }
                    });
                }
                Err(TryRecvError::Empty) => break,
            }
        }
        let now = Instant::now();
        {
            let mut st = ctl.st.borrow_mut();
            let st = &mut *st;
            ctl.merge_reports(st);
            if let Some(t) = st.telemetry.as_mut() {
                t.poll(now, false);
            }
            #[cfg(feature = "cluster")]
            ctl.sync_cluster(st, now);
            ctl.apply_quota(st, now);
            if st.merger.health_changed {
                ctl.publish_live(st);
            } else if st.merger.stats_changed && st.stats_due.is_none() {
                st.stats_due = Some(now + st.cfg.server.tick);
            }
            if st.stats_due.is_some_and(|t| now >= t) {
                ctl.publish_live(st);
            }
            let (changed, answered) = ctl.merge_dns(st);
            if changed {
                ctl.publish_endpoints(st);
            }
            if first_round > 0 && answered > 0 {
                first_round = first_round.saturating_sub(answered);
                if first_round == 0 {
                    ctl.board.set_resolved();
                }
            }
            if now >= next_resolve {
                ctl.resolve(st.hosts.clone(), st.cfg.server.hosts_file.clone());
                next_resolve = now + st.cfg.server.dns_refresh;
            }
            if st.rebuild_due {
                ctl.rebuild(st);
            }
            track_propagation(st, &ctl.board);
        }
        fetch::schedule(&ctl, now);
        monoio::time::sleep(POLL).await;
    }
    shutdown(&ctl).await;
}

/// Tells every worker to drain, then merges reports until each has flushed its last ones and
/// stopped (counts are never dropped), bounded by the drain time.
async fn shutdown(ctl: &Ctl) {
    crate::notify::stopping();
    for slot in &ctl.slots {
        let _ = slot.commands.send(Command::Shutdown);
    }
    let drain = ctl.st.borrow().cfg.server.drain_timeout;
    let deadline = Instant::now() + drain + Duration::from_secs(5);
    loop {
        let stopped = ctl.board.all_stopped();
        ctl.merge_reports(&mut ctl.st.borrow_mut());
        if stopped || Instant::now() >= deadline {
            break;
        }
        monoio::time::sleep(POLL).await;
    }
    {
        let mut st = ctl.st.borrow_mut();
        ctl.store.save_counters(st.ledger.to_json());
        // The last spans go to the exporter (best effort: the process may exit first).
        if let Some(t) = st.telemetry.as_mut() {
            t.poll(Instant::now(), true);
        }
    }
    // Every queued state write (overrides, discovery lists) lands before the process exits.
    if let Some(done) = ctl.store.flush() {
        written(&done, Duration::from_secs(5)).await;
    }
}

/// The exporter for `cfg`'s `[telemetry]`, if on (a thread that cannot start is logged and
/// leaves telemetry off: requests never depend on it).
pub(crate) fn start_telemetry(
    cfg: &Config,
    drops: &Arc<crate::telemetry::Drops>,
) -> Option<crate::telemetry::Telemetry> {
    let t = cfg.telemetry.as_ref()?;
    match crate::telemetry::Telemetry::start(t, drops.clone()) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::error!(error = %e, "telemetry: the exporter could not start; traces are off");
            None
        }
    }
}

/// One `access` log line for a request (from its usage record: never written by a worker).
fn access_log(u: &crate::usage::Record) {
    let trace = u
        .trace_id
        .as_ref()
        .and_then(|t| std::str::from_utf8(t).ok())
        .unwrap_or("");
    tracing::info!(
        target: "access",
        request_id = u.request_id.as_str(),
        endpoint = u.endpoint,
        status = u.status,
        channel = u.channel(),
        provider = u.provider(),
        model_requested = &*u.requested,
        model = u.model(),
        attempts = u.attempts,
        latency_ms = u.latency_ms,
        ttft_ms = u.ttft_ms.unwrap_or(-1.0),
        overhead_ms = u.overhead_ms.unwrap_or(-1.0),
        prompt_tokens = u.prompt_tokens(),
        completion_tokens = u.usage.map_or(0, |x| x.completion),
        cost = u.cost.unwrap_or(0.0),
        stream = u.stream,
        trace_id = trace,
        "request"
    );
}

/// Waits (bounded) for a state-store acknowledgement.
pub(crate) async fn written(done: &Receiver<()>, within: Duration) {
    let deadline = Instant::now() + within;
    while done.try_recv().is_err() && Instant::now() < deadline {
        monoio::time::sleep(Duration::from_millis(1)).await;
    }
}
