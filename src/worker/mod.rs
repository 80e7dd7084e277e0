//! One worker per core: a pinned thread running a monoio event loop with its own listener,
//! its own snapshot slot, upstream pool and JSON scratch buffers. Connections accepted here are
//! served here to the end.
//!
//! Invariants: all state is `!Send` (`Rc`, `Cell`, `RefCell`) and lives on this thread; the
//! only cross-thread paths are the crossbeam receivers polled with `try_recv` on the tick and
//! the [`Board`] atomics written once per tick. No locks, no blocking calls, no DNS, no files.
//! Not here: request semantics (`server`, `api`, `proxy`).

pub(crate) mod listener;
pub mod runtime;

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;

use crate::metrics::{Gauges, LocalHistogram};
use crate::providers::openai::ingress::JsonScratch;
use crate::snapshot::Snapshot;
use crate::upstream::Pool;
use crate::usage::Report;
use runtime::Chosen;

/// A worker's handle on the current snapshot. The extra `Rc` layer is deliberate: cloning it
/// per request is a plain increment on this core, where cloning the `Arc` would bounce one
/// shared cache line between all cores.
#[allow(clippy::redundant_allocation)]
pub(crate) type SnapshotRef = Rc<Arc<Snapshot>>;

/// Commands from the control thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    /// Stop accepting, finish in-flight requests within the drain timeout, exit.
    Shutdown,
}

/// Cross-thread view of every worker, for `/health`: the epoch each holds (0 = not started).
#[derive(Debug)]
pub struct Board {
    epochs: Box<[AtomicU64]>,
    /// Per-worker gauges, by worker id.
    pub(crate) gauges: Box<[Gauges]>,
    stopped: Box<[AtomicBool]>,
    resolved: AtomicBool,
    /// The driver every worker runs.
    pub driver: Chosen,
    /// Per-worker demand of rate-limited client keys (the limiters' share split).
    pub(crate) shares: Arc<crate::limits::ShareBoard>,
}

impl Board {
    /// A board for `n` workers.
    pub(crate) fn new(n: usize, driver: Chosen) -> Board {
        Board {
            epochs: (0..n).map(|_| AtomicU64::new(0)).collect(),
            gauges: (0..n).map(|_| Gauges::default()).collect(),
            stopped: (0..n).map(|_| AtomicBool::new(false)).collect(),
            resolved: AtomicBool::new(false),
            driver,
            shares: Arc::new(crate::limits::ShareBoard::new(n)),
        }
    }
    /// True once every worker has stopped (after flushing its last reports).
    pub(crate) fn all_stopped(&self) -> bool {
        self.stopped.iter().all(|s| s.load(Ordering::Acquire))
    }
    fn set_stopped(&self, worker: usize) {
        self.stopped[worker].store(true, Ordering::Release);
    }
    /// Marks the first round of upstream name resolution as finished.
    pub(crate) fn set_resolved(&self) {
        self.resolved.store(true, Ordering::Relaxed);
    }
    /// True once every worker holds a snapshot and upstream names had their first resolution
    /// round: before that, `/health` says `starting`.
    pub(crate) fn ready(&self) -> bool {
        self.resolved.load(Ordering::Relaxed) && self.min_epoch() > 0
    }
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.epochs.len()
    }
    fn set(&self, worker: usize, epoch: u64) {
        self.epochs[worker].store(epoch, Ordering::Relaxed);
    }
    /// Every worker's current snapshot epoch, by worker id.
    pub(crate) fn epochs(&self) -> Vec<u64> {
        self.epochs
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .collect()
    }
    /// The lowest epoch any worker holds (0 while one is still starting).
    pub(crate) fn min_epoch(&self) -> u64 {
        self.epochs
            .iter()
            .map(|e| e.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    }
}

/// Everything a worker thread needs at start.
#[derive(Debug)]
pub(crate) struct Setup {
    /// Worker index.
    pub id: usize,
    /// Its listener (bound by bootstrap).
    pub listener: std::net::TcpListener,
    /// The first snapshot.
    pub snapshot: Arc<Snapshot>,
    /// Later snapshots (latest wins).
    pub snapshots: Receiver<Arc<Snapshot>>,
    /// Commands from the control thread (shutdown).
    pub commands: Receiver<Command>,
    /// Shared health board.
    pub board: Arc<Board>,
    /// CPU to pin to.
    pub core: Option<core_affinity::CoreId>,
    /// Outcome report batches to the control thread.
    pub reports: crossbeam_channel::Sender<Vec<Report>>,
}

/// Per-worker counters (plain cells: only this thread touches them).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Open client connections.
    pub connections: Cell<usize>,
    /// Requests being handled.
    pub in_flight: Cell<usize>,
    /// Requests handled since start.
    pub requests: Cell<u64>,
    /// SSE streams being relayed.
    pub streams: Cell<usize>,
    /// Gaps between consecutive events relayed on a stream.
    pub gaps: LocalHistogram,
    /// Bytes of request and response bodies held right now (`server.max_buffered`).
    pub buffered: Cell<usize>,
    /// Requests refused because `buffered` was at `max_buffered`.
    pub overloaded: Cell<u64>,
}

/// A share of a worker's `buffered` bytes, released when dropped (however the request ends).
#[derive(Debug)]
pub(crate) struct Held<'w> {
    on: &'w Cell<usize>,
    n: usize,
}

impl Held<'_> {
    /// Raises the share to `n` bytes (never lowers it: the buffers keep their capacity).
    pub(crate) fn grow_to(&mut self, n: usize) {
        if n > self.n {
            self.on.set(self.on.get() + (n - self.n));
            self.n = n;
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.on.set(self.on.get().saturating_sub(self.n));
    }
}

/// The per-core state shared by this worker's tasks.
#[derive(Debug)]
pub(crate) struct Worker {
    /// Worker index.
    pub id: usize,
    snapshot: RefCell<SnapshotRef>,
    /// Upstream connections.
    pub pool: Pool,
    /// simd-json buffers reused across requests.
    pub json: RefCell<JsonScratch>,
    /// This worker's connection, request and stream counters.
    pub stats: Stats,
    /// Set when shutting down: connections close after their current request.
    pub draining: Cell<bool>,
    /// Shared health view.
    pub board: Arc<Board>,
    /// This worker's routing view (cooldown overlay, trials, in-flight counts, round-robin).
    pub routing: RefCell<crate::routing::Local>,
    /// Arena for ranking, reset per request.
    pub arena: RefCell<bumpalo::Bump>,
    /// Client rate limits: this worker's buckets.
    pub limits: RefCell<crate::limits::Limiter>,
    reports: crossbeam_channel::Sender<Vec<Report>>,
    /// Snapshots from the control thread (the tick loop polls them; so does a request under a
    /// daily limit, see [`Worker::refresh_if_limited`]).
    snapshots: Receiver<Arc<Snapshot>>,
    /// Reports waiting for the next tick (successes and samples; failures go at once).
    pending: RefCell<Vec<Report>>,
    seq: Cell<u64>,
    salt: u64,
    date: Cell<[u8; 29]>,
    date_secs: Cell<u64>,
}

impl Worker {
    /// A worker holding `snapshot`.
    pub(crate) fn new(
        id: usize,
        snapshot: Arc<Snapshot>,
        board: Arc<Board>,
        reports: crossbeam_channel::Sender<Vec<Report>>,
        snapshots: Receiver<Arc<Snapshot>>,
    ) -> Worker {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let salt = (now.as_nanos() as u64) ^ ((id as u64) << 56) ^ u64::from(std::process::id());
        let mut limiter = crate::limits::Limiter::new(id, board.shares.clone());
        limiter.sync(&snapshot.clients, Instant::now());
        limiter.sync_channels(&snapshot.channels, Instant::now());
        Worker {
            id,
            snapshot: RefCell::new(Rc::new(snapshot)),
            pool: Pool::new(),
            json: RefCell::new(JsonScratch::default()),
            stats: Stats::default(),
            draining: Cell::new(false),
            board,
            routing: RefCell::new(crate::routing::Local::default()),
            arena: RefCell::new(bumpalo::Bump::new()),
            limits: RefCell::new(limiter),
            reports,
            snapshots,
            pending: RefCell::new(Vec::new()),
            seq: Cell::new(0),
            salt: mix(salt),
            date: Cell::new(crate::h1::http_date(now.as_secs())),
            date_secs: Cell::new(now.as_secs()),
        }
    }

    /// The current snapshot (a non-atomic `Rc` clone).
    pub(crate) fn snapshot(&self) -> SnapshotRef {
        self.snapshot.borrow().clone()
    }

    /// Under a daily limit, installs a snapshot that arrived since the last tick before a
    /// request is dispatched: a quota the control thread found spent stops the next request,
    /// not the ones of the rest of the tick (the overshoot bound of DESIGN's quotas). One
    /// `try_recv` per request, and only when a limit is configured.
    pub(crate) fn refresh_if_limited(&self) {
        if !self.snapshot.borrow().quota.limited {
            return;
        }
        let mut latest = None;
        while let Ok(s) = self.snapshots.try_recv() {
            latest = Some(s);
        }
        if let Some(s) = latest {
            self.install(s);
        }
    }

    /// Installs a newer snapshot.
    pub(crate) fn install(&self, s: Arc<Snapshot>) {
        self.board.set(self.id, s.epoch);
        {
            let mut limits = self.limits.borrow_mut();
            limits.sync(&s.clients, Instant::now());
            limits.sync_channels(&s.channels, Instant::now());
        }
        *self.snapshot.borrow_mut() = Rc::new(s);
    }

    /// A pseudo-random number (retry jitter; not for secrets).
    pub(crate) fn random(&self) -> u64 {
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        mix(self.salt.rotate_left(17) ^ n)
    }

    /// A fresh request id: 24 hex digits, unique per process run and worker.
    pub(crate) fn request_id(&self) -> [u8; 24] {
        let n = self.seq.get().wrapping_add(1);
        self.seq.set(n);
        let v = mix(self.salt ^ n);
        let mut out = [0u8; 24];
        let hex = b"0123456789abcdef";
        for (i, b) in out[..8].iter_mut().enumerate() {
            *b = hex[((self.salt >> (60 - 4 * i)) & 0xf) as usize];
        }
        for (i, b) in out[8..].iter_mut().enumerate() {
            *b = hex[((v >> (60 - 4 * i)) & 0xf) as usize];
        }
        out
    }

    /// Holds `n` more bytes of bodies for as long as the returned share lives.
    pub(crate) fn hold(&self, n: usize) -> Held<'_> {
        let mut h = Held {
            on: &self.stats.buffered,
            n: 0,
        };
        h.grow_to(n);
        h
    }

    /// Whether a new request needing `n` body bytes fits under `limit`: it does when the bytes
    /// already held plus `n` stay within it, and always when nothing is held (one request
    /// larger than the limit is still served, alone).
    pub(crate) fn has_room(&self, n: usize, limit: usize) -> bool {
        let held = self.stats.buffered.get();
        held == 0 || held.saturating_add(n) <= limit
    }

    /// The cached `Date` header value (refreshed on the tick).
    pub(crate) fn date(&self) -> [u8; 29] {
        self.date.get()
    }

    /// Records an attempt's outcome: applied to this worker's routing view at once, and sent
    /// to the control thread, which merges it and republishes to every worker.
    pub(crate) fn report(&self, snap: &Snapshot, seen: Observed) {
        let Observed {
            entry,
            outcome,
            started,
            latency_ms,
            ttft_ms,
            failure,
        } = seen;
        // Cooldowns run from when the outcome is known, not from when the attempt began: a
        // timeout longer than the backoff would otherwise leave no cooldown at all.
        let at = Instant::now();
        let until_midnight = crate::clock::until_utc_midnight(self.date_secs.get());
        let Some(e) = snap.catalog.entries.get(entry as usize) else {
            return;
        };
        if let Some(o) = outcome {
            self.routing
                .borrow_mut()
                .record(snap, entry, o, started, at, until_midnight);
        }
        let report = Report {
            generation: snap.catalog.generation,
            channel: e.channel,
            entry,
            started,
            at,
            until_midnight,
            outcome,
            latency_ms,
            ttft_ms,
            failure,
            usage: None,
        };
        let urgent = outcome.is_some_and(|j| j.outcome != crate::live::health::Outcome::Success);
        self.pending.borrow_mut().push(report);
        // A failure changes health: other workers must learn it within a tick, so it goes
        // now (with everything queued before it, keeping order); the rest waits for the tick.
        if urgent {
            self.flush_reports();
        }
    }

    /// Copies this worker's counters to the board (relaxed stores, once per tick).
    fn publish_gauges(&self, lag: Duration) {
        let Some(g) = self.board.gauges.get(self.id) else {
            return;
        };
        let s = &self.stats;
        g.connections
            .store(s.connections.get() as u64, Ordering::Relaxed);
        g.in_flight
            .store(s.in_flight.get() as u64, Ordering::Relaxed);
        g.streams.store(s.streams.get() as u64, Ordering::Relaxed);
        g.buffered.store(s.buffered.get() as u64, Ordering::Relaxed);
        g.overloaded.store(s.overloaded.get(), Ordering::Relaxed);
        g.requests.store(s.requests.get(), Ordering::Relaxed);
        let us = lag.as_micros().min(u128::from(u64::MAX)) as u64;
        g.loop_lag_us.store(us, Ordering::Relaxed);
        if us > g.loop_lag_max_us.load(Ordering::Relaxed) {
            g.loop_lag_max_us.store(us, Ordering::Relaxed);
        }
        g.store_gaps(&s.gaps);
    }

    /// Unix seconds as of the last tick (for stamps that need no sub-tick precision).
    pub(crate) fn unix_secs(&self) -> u64 {
        self.date_secs.get()
    }

    /// Queues a request's usage record for the control thread (sent with the next batch).
    /// `at` is any instant the caller already has (usage reports carry no timing).
    pub(crate) fn record_usage(&self, record: crate::usage::Record, at: Instant) {
        let queued = {
            let mut pending = self.pending.borrow_mut();
            pending.push(Report {
                generation: 0,
                channel: u32::MAX,
                entry: u32::MAX,
                started: at,
                at,
                until_midnight: Duration::ZERO,
                outcome: None,
                latency_ms: None,
                ttft_ms: None,
                failure: None,
                usage: Some(Box::new(record)),
            });
            pending.len()
        };
        // Small batches: the control thread formats them while they are still in this core's
        // cache, in short bursts that barely delay this worker (it shares the core).
        // Under a daily limit the record goes now: the control thread judges the limit on it.
        if queued >= USAGE_BATCH || self.snapshot.borrow().quota.limited {
            self.flush_reports();
        }
    }

    /// Sends the queued reports to the control thread as one batch. The channel is
    /// unbounded: sending never blocks and never drops (DESIGN.md §2.8).
    pub(crate) fn flush_reports(&self) {
        let mut pending = self.pending.borrow_mut();
        if pending.is_empty() {
            return;
        }
        let batch = std::mem::replace(&mut *pending, Vec::with_capacity(256));
        let _ = self.reports.send(batch);
    }

    fn refresh_clock(&self) {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if secs != self.date_secs.get() {
            self.date_secs.set(secs);
            self.date.set(crate::h1::http_date(secs));
        }
    }
}

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser: request ids must not be guessable from each other.
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// What an attempt showed about its (channel, model) entry, for [`Worker::report`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Observed {
    /// The catalog entry tried.
    pub(crate) entry: u32,
    /// Its health outcome and scope, if it has one.
    pub(crate) outcome: Option<crate::live::Judged>,
    /// When the attempt started.
    pub(crate) started: Instant,
    /// The whole exchange, when it completed.
    pub(crate) latency_ms: Option<f32>,
    /// Time to the response head.
    pub(crate) ttft_ms: Option<f32>,
    /// The label of how it failed (`head_timeout`, `status_5xx` …), if it did.
    pub(crate) failure: Option<&'static str>,
}

/// Reports queued before a batch goes to the control thread without waiting for the tick.
const USAGE_BATCH: usize = 128;

impl Worker {
    /// The worker of `setup`, holding its first snapshot, and its listener registered with
    /// this thread's event loop (`None`, logged, when the listener cannot be registered).
    pub(crate) fn open(setup: Setup) -> Option<Opened> {
        let Setup {
            id,
            listener,
            snapshot,
            snapshots,
            commands,
            board,
            core: _,
            reports,
        } = setup;
        let listener = match monoio::net::TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(worker = id, error = %e, "cannot register listener");
                return None;
            }
        };
        let tick = snapshot.server.tick;
        let worker = Rc::new(Worker::new(
            id,
            snapshot.clone(),
            board,
            reports,
            snapshots.clone(),
        ));
        worker.install(snapshot);
        Some(Opened {
            worker,
            listener,
            snapshots,
            commands,
            tick,
        })
    }

    /// Draining, once the listener is closed: in-flight requests get the drain timeout, then
    /// the pools close, the last reports go out and the board learns this worker stopped.
    pub(crate) async fn drain(&self) {
        self.draining.set(true);
        let deadline = Instant::now() + self.snapshot().server.drain_timeout;
        while self.stats.in_flight.get() > 0 && Instant::now() < deadline {
            monoio::time::sleep(Duration::from_millis(5)).await;
        }
        self.pool.clear();
        self.flush_reports();
        self.board.set_stopped(self.id);
        tracing::debug!(worker = self.id, "worker stopped");
    }
}

/// A worker ready to run: its state, its listener, and what its tick loop polls.
#[derive(Debug)]
pub(crate) struct Opened {
    /// The worker's state.
    pub(crate) worker: Rc<Worker>,
    /// Its listener, registered with this thread's event loop.
    pub(crate) listener: monoio::net::TcpListener,
    /// Later snapshots.
    pub(crate) snapshots: Receiver<Arc<Snapshot>>,
    /// Commands from the control thread.
    pub(crate) commands: Receiver<Command>,
    /// The tick period.
    pub(crate) tick: Duration,
}

/// The worker's housekeeping, once per tick until a shutdown command: publish gauges, run the
/// rate limiters' share exchange, install the latest snapshot, sweep idle upstream
/// connections, refresh the cached clock, flush reports.
pub(crate) async fn tick_loop(
    worker: Rc<Worker>,
    snapshots: Receiver<Arc<Snapshot>>,
    commands: Receiver<Command>,
    tick: Duration,
) {
    let mut due = Instant::now() + tick;
    loop {
        monoio::time::sleep(tick).await;
        let woke = Instant::now();
        worker.publish_gauges(woke.saturating_duration_since(due));
        worker.limits.borrow_mut().tick(woke);
        due = woke + tick;
        let mut latest = None;
        while let Ok(s) = snapshots.try_recv() {
            latest = Some(s);
        }
        if let Some(s) = latest {
            worker.install(s);
        }
        let now = Instant::now();
        worker.pool.sweep(now);
        worker.refresh_clock();
        worker.flush_reports();
        match commands.try_recv() {
            Ok(Command::Shutdown) | Err(crossbeam_channel::TryRecvError::Disconnected) => return,
            Err(crossbeam_channel::TryRecvError::Empty) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_are_released_however_a_request_ends() {
        let buffered = Cell::new(0);
        {
            let mut h = Held {
                on: &buffered,
                n: 0,
            };
            h.grow_to(100);
            h.grow_to(50);
            assert_eq!(buffered.get(), 100, "a share never shrinks while held");
            let _other = Held {
                on: &buffered,
                n: 0,
            };
        }
        assert_eq!(buffered.get(), 0);
    }
}
