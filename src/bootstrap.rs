//! Start and stop order: choose the driver, raise the file-descriptor limit, bind every
//! listener (client API and admin API, failing clearly if an address is taken), read TLS
//! roots, open the state dir and load the discovery cache and admin overrides, build the first
//! snapshot from them (so a restart serves its cached catalog at once), start N pinned workers
//! holding it, then the control thread. Shutdown goes the other way: control tells workers to
//! drain, workers finish in-flight requests, threads join.
//!
//! Invariants: listeners are bound before any thread starts (a start either fully succeeds or
//! fails with one message); every worker holds a snapshot before its first accept.

#![allow(clippy::disallowed_methods)] // start-up may block (file reads, thread joins)

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::channel::Resolved;
use crate::config::Config;
use crate::control::{self, Loader, ReloadReport, Slot};
use crate::snapshot::Snapshot;
use crate::worker::{self, Board, runtime};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
    admin: Option<SocketAddr>,
    requests: Sender<control::Request>,
    control: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    board: Arc<Board>,
}

impl Gateway {
    /// The client API address (with the real port when configured with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin API address, when it is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Reloads the config (as `SIGHUP` does) and waits for the outcome.
    pub fn reload(&self) -> Result<ReloadReport, Vec<String>> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self
            .requests
            .send(control::Request::Reload(Some(tx)))
            .is_err()
        {
            return Err(vec!["the control thread has stopped".into()]);
        }
        rx.recv()
            .unwrap_or_else(|_| Err(vec!["the control thread has stopped".into()]))
    }

    /// Asks for a reload without waiting (the signal handler's path).
    pub fn request_reload(&self) {
        let _ = self.requests.send(control::Request::Reload(None));
    }

    /// The health board (driver, epochs).
    pub fn board(&self) -> &Board {
        &self.board
    }

    /// Drains and stops every thread; returns when they have exited.
    pub fn shutdown(mut self) {
        let _ = self.requests.send(control::Request::Shutdown);
        self.join_all();
    }

    fn join_all(&mut self) {
        if let Some(c) = self.control.take() {
            let _ = c.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if self.control.is_some() {
            let _ = self.requests.send(control::Request::Shutdown);
            self.join_all();
        }
    }
}

/// Number of workers for `configured` (0 = one per CPU in the affinity mask), and the cores to
/// pin them to.
pub(crate) fn worker_cores(
    configured: usize,
    pin: bool,
) -> (usize, Vec<Option<core_affinity::CoreId>>) {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let n = if configured > 0 {
        configured
    } else if !cores.is_empty() {
        cores.len()
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    let pins = (0..n)
        .map(|i| (pin && !cores.is_empty()).then(|| cores[i % cores.len()]))
        .collect();
    (n, pins)
}

/// The default reload source for `cfg`: its file, or the environment it was built from.
pub fn default_loader(cfg: &Config) -> Option<Loader> {
    use crate::config::{ProcessEnv, Source};
    match &cfg.source {
        Source::File(path) => {
            let path = path.clone();
            Some(Box::new(move || {
                Config::load_file(&path, &ProcessEnv).map_err(|e| problems(&e))
            }))
        }
        Source::Environment(_) => Some(Box::new(|| {
            Config::from_environment(&ProcessEnv)
                .ok_or_else(|| vec!["no provider key is set in the environment any more".into()])
        })),
        Source::Inline | Source::Demo => None,
    }
}

/// A config error as one line per problem.
pub(crate) fn problems(e: &crate::config::ConfigError) -> Vec<String> {
    e.to_string()
        .lines()
        .skip(1)
        .map(|l| l.trim_start_matches("  - ").to_string())
        .collect()
}

/// Starts the gateway for `cfg`, reloading from its source.
pub fn start(cfg: Config) -> Result<Gateway, String> {
    let loader = default_loader(&cfg);
    start_with(cfg, loader)
}

/// Starts the gateway for `cfg`; `loader` re-reads the config on reload.
pub fn start_with(cfg: Config, loader: Option<Loader>) -> Result<Gateway, String> {
    let driver = runtime::choose(cfg.server.driver)?;
    let (n, pins) = worker_cores(cfg.server.workers, cfg.server.pin_workers);
    raise_fd_limit();
    let listeners = worker::listener::bind(cfg.server.listen, n)?;
    let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let admin = match &cfg.admin {
        None => None,
        Some(a) => Some(bind_admin(a.listen)?),
    };
    let admin_addr = match &admin {
        Some(l) => Some(l.local_addr().map_err(|e| e.to_string())?),
        None => None,
    };
    let tls = control::build_tls(&cfg)?;
    let store = control::store::Store::open(cfg.state_dir.clone());
    let discovered = store.load_discovery(&cfg);
    let overrides = store.load_overrides();
    if !discovered.is_empty() || !overrides.channels.is_empty() {
        tracing::info!(
            cached_channels = discovered.len(),
            overrides = overrides.channels.len(),
            "state dir loaded"
        );
    }
    let first = Arc::new(Snapshot::build_with(
        &cfg,
        1,
        &Resolved::new(),
        &tls,
        n,
        1,
        &discovered,
        &overrides,
    ));
    let board = Arc::new(Board::new(n, driver.clone()));
    let (report_tx, report_rx) = crossbeam_channel::unbounded();

    let mut slots = Vec::with_capacity(n);
    let mut workers = Vec::with_capacity(n);
    for (id, (listener, core)) in listeners.into_iter().zip(pins).enumerate() {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let (cmd_tx, cmd_rx) = crossbeam_channel::unbounded();
        let setup = worker::Setup {
            id,
            listener,
            snapshot: first.clone(),
            snapshots: rx.clone(),
            commands: cmd_rx,
            board: board.clone(),
            core,
            reports: report_tx.clone(),
        };
        workers.push(
            crate::server::accept::spawn::<crate::api::Gateway>(setup, driver.clone())
                .map_err(|e| e.to_string())?,
        );
        slots.push(Slot {
            tx,
            rx,
            commands: cmd_tx,
        });
    }
    if let Err(e) = wait_until_serving(&board, &workers) {
        for slot in &slots {
            let _ = slot.commands.send(worker::Command::Shutdown);
        }
        return Err(e);
    }
    if crate::channel::hosts_to_resolve(&cfg).is_empty() {
        // Nothing to resolve: ready as soon as start() returns.
        board.set_resolved();
    }
    let (req_tx, req_rx) = crossbeam_channel::unbounded();
    let control = control::spawn(control::Setup {
        cfg,
        first,
        workers: n,
        driver,
        tls,
        slots,
        requests: req_rx,
        reports: report_rx,
        board: board.clone(),
        discovered,
        overrides,
        store,
        admin,
        loader,
    })
    .map_err(|e| e.to_string())?;
    Ok(Gateway {
        addr,
        admin: admin_addr,
        requests: req_tx,
        control: Some(control),
        workers,
        board,
    })
}

/// Binds the admin API listener (non-blocking, for the control loop).
fn bind_admin(addr: SocketAddr) -> Result<std::net::TcpListener, String> {
    let l = std::net::TcpListener::bind(addr).map_err(|e| {
        format!(
            "cannot listen for the admin API on {addr}: {e} (set [admin] listen, or [admin] enabled = false)"
        )
    })?;
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(l)
}

/// Waits until every worker holds its first snapshot (and so accepts), failing if one exits.
fn wait_until_serving(board: &Board, workers: &[JoinHandle<()>]) -> Result<(), String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while board.min_epoch() == 0 {
        if let Some(i) = workers.iter().position(|w| w.is_finished()) {
            return Err(format!("worker {i} failed to start (see the log above)"));
        }
        if std::time::Instant::now() > deadline {
            return Err("workers did not start within 10 s".into());
        }
        std::thread::sleep(std::time::Duration::from_micros(200));
    }
    Ok(())
}

/// Raises `RLIMIT_NOFILE` to its hard limit: a proxied stream holds two descriptors.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
}
