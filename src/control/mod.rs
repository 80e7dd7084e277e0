//! The control thread: owns the config, resolves upstream host names (on helper threads, every
//! address, re-resolved every `server.dns_refresh`), builds immutable snapshots and publishes
//! them to every worker (latest wins), and relays shutdown.
//!
//! Invariants: workers never wait on this thread: publication is a non-blocking `try_send` into
//! a one-slot channel per worker (an older unread snapshot is dropped first). A failed
//! re-resolution keeps the previous addresses. Blocking work (getaddrinfo, file reads) happens
//! here or on helper threads, never on a worker.
//! Not here: request handling of any kind.

#![allow(clippy::disallowed_methods)] // the control plane may block: it is not a worker

pub mod dns;
pub mod http;
pub mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::config::{Config, Scheme};
use crate::live::{Merger, Report};
use crate::snapshot::{Resolved, Snapshot, TlsConfigs};
use crate::upstream::tls::ClientTls;
use crate::worker::{Board, Command};

/// Longest the control loop sleeps when it has no timed work.
const IDLE_WAIT: Duration = Duration::from_secs(3600);

/// Requests to the control thread.
#[derive(Debug)]
pub enum Request {
    /// Drain workers and stop.
    Shutdown,
}

/// One worker's snapshot slot: the sender, and a receiver clone used to discard an unread
/// older snapshot so the newest always fits.
#[derive(Debug)]
pub struct Slot {
    /// Sends to the worker.
    pub tx: Sender<Arc<Snapshot>>,
    /// Drains the worker's unread snapshot.
    pub rx: Receiver<Arc<Snapshot>>,
    /// Commands to the worker.
    pub commands: Sender<Command>,
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
    Ok(out)
}

/// The control thread's state.
pub struct Control {
    cfg: Config,
    current: Arc<Snapshot>,
    workers: usize,
    resolved: Resolved,
    tls: TlsConfigs,
    slots: Vec<Slot>,
    requests: Receiver<Request>,
    reports: Receiver<Vec<Report>>,
    merger: Merger,
    board: Arc<Board>,
}

impl std::fmt::Debug for Control {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("epoch", &self.current.epoch)
            .finish_non_exhaustive()
    }
}

/// What the control thread is given at start.
#[derive(Debug)]
pub struct Setup {
    /// The validated config.
    pub cfg: Config,
    /// The snapshot every worker started with.
    pub first: Arc<Snapshot>,
    /// Worker count.
    pub workers: usize,
    /// TLS settings per provider.
    pub tls: TlsConfigs,
    /// One slot per worker.
    pub slots: Vec<Slot>,
    /// Requests (shutdown).
    pub requests: Receiver<Request>,
    /// Worker outcome report batches.
    pub reports: Receiver<Vec<Report>>,
    /// The health board.
    pub board: Arc<Board>,
}

impl Control {
    /// Control state after bootstrap published `first`.
    pub fn new(setup: Setup) -> Control {
        let live = (*setup.first.live).clone();
        Control {
            merger: Merger::new(live, setup.cfg.routing.cooldown),
            cfg: setup.cfg,
            current: setup.first,
            workers: setup.workers,
            resolved: Resolved::new(),
            tls: setup.tls,
            slots: setup.slots,
            requests: setup.requests,
            reports: setup.reports,
            board: setup.board,
        }
    }

    /// Runs the control loop on a new thread.
    pub fn spawn(self) -> std::io::Result<std::thread::JoinHandle<()>> {
        std::thread::Builder::new()
            .name("sar-control".into())
            .spawn(move || self.run())
    }

    fn publish(&mut self, next: Snapshot) {
        let snap = Arc::new(next);
        for slot in &self.slots {
            slot.publish(snap.clone());
        }
        tracing::debug!(epoch = snap.epoch, "snapshot published");
        self.current = snap;
    }

    /// New endpoints after DNS: same catalog and live state.
    fn publish_endpoints(&mut self) {
        let epoch = self.current.epoch + 1;
        let fresh = Snapshot::build(
            &self.cfg,
            epoch,
            &self.resolved,
            &self.tls,
            self.workers,
            self.current.catalog.generation,
        );
        let next = self.current.with_channels(epoch, &fresh);
        self.publish(next);
    }

    /// New live state after worker reports.
    fn publish_live(&mut self) {
        let epoch = self.current.epoch + 1;
        let live = self.merger.publish();
        let next = self.current.with_live(epoch, live);
        self.publish(next);
    }

    fn run(mut self) {
        let hosts = Snapshot::hosts_to_resolve(&self.cfg);
        // Hosts still unanswered in the first round; /health says `starting` until it is 0.
        let mut first_round = hosts.len();
        if first_round == 0 {
            self.board.set_resolved();
        }
        let resolver = dns::Resolver::start();
        let refresh = self.cfg.server.dns_refresh;
        let tick = self.cfg.server.tick;
        let mut next_resolve = Instant::now();
        // Averages changed: publish no later than this (health changes publish at once).
        let mut stats_due: Option<Instant> = None;
        loop {
            let now = Instant::now();
            if !hosts.is_empty() && now >= next_resolve {
                resolver.resolve(hosts.clone());
                next_resolve = now + refresh;
            }
            if stats_due.is_some_and(|t| now >= t) {
                stats_due = None;
                self.publish_live();
            }
            // Sleep until the next timed job; with none, only messages wake this thread.
            let mut wake = now + IDLE_WAIT;
            if !hosts.is_empty() {
                wake = wake.min(next_resolve);
            }
            if let Some(t) = stats_due {
                wake = wake.min(t);
            }
            let wait = wake
                .saturating_duration_since(now)
                .max(Duration::from_millis(1));
            crossbeam_channel::select! {
                recv(self.requests) -> r => match r {
                    Ok(Request::Shutdown) | Err(_) => break,
                },
                recv(self.reports) -> r => {
                    if let Ok(first) = r {
                        self.merge_reports(first);
                        if self.merger.health_changed {
                            stats_due = None;
                            self.publish_live();
                        } else if self.merger.stats_changed && stats_due.is_none() {
                            stats_due = Some(Instant::now() + tick);
                        }
                    }
                },
                recv(resolver.results()) -> r => {
                    if let Ok(batch) = r {
                        let answered = batch.len();
                        if self.merge(batch) {
                            self.publish_endpoints();
                        }
                        if first_round > 0 {
                            first_round = first_round.saturating_sub(answered);
                            if first_round == 0 {
                                self.board.set_resolved();
                            }
                        }
                    }
                },
                default(wait) => {},
            }
        }
        for slot in &self.slots {
            let _ = slot.commands.send(Command::Shutdown);
        }
        // Counts are never dropped: merge every report until each worker has flushed its last
        // ones and stopped, bounded by the drain time.
        let deadline = Instant::now() + self.cfg.server.drain_timeout + Duration::from_secs(5);
        loop {
            let stopped = self.board.all_stopped();
            while let Ok(batch) = self.reports.try_recv() {
                for r in &batch {
                    self.merger.apply(r);
                }
            }
            if stopped || Instant::now() >= deadline {
                break;
            }
            let _ = self
                .reports
                .recv_timeout(Duration::from_millis(5))
                .map(|batch| {
                    for r in &batch {
                        self.merger.apply(r);
                    }
                });
        }
    }

    /// Merges `first` and every batch already queued behind it.
    fn merge_reports(&mut self, first: Vec<Report>) {
        for r in &first {
            self.merger.apply(r);
        }
        while let Ok(batch) = self.reports.try_recv() {
            for r in &batch {
                self.merger.apply(r);
            }
        }
    }

    /// Merges resolver answers; true when any address set changed.
    fn merge(&mut self, batch: Vec<dns::Answer>) -> bool {
        let mut changed = false;
        for a in batch {
            match a.addrs {
                Ok(addrs) if !addrs.is_empty() => {
                    let key = (a.host.clone(), a.port);
                    if self.resolved.get(&key) != Some(&addrs) {
                        tracing::info!(host = %a.host, addrs = ?addrs, "upstream resolved");
                        self.resolved.insert(key, addrs);
                        changed = true;
                    }
                }
                Ok(_) => tracing::warn!(host = %a.host, "upstream host resolved to no address"),
                Err(e) => {
                    tracing::warn!(host = %a.host, error = %e, "cannot resolve upstream host; keeping previous addresses")
                }
            }
        }
        changed
    }
}
