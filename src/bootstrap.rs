//! Start and stop order: choose the driver, raise the file-descriptor limit, bind every
//! listener (failing clearly if the address is taken), read TLS roots, build the first
//! snapshot, start N pinned workers holding it, then the control thread. Shutdown goes the
//! other way: control tells workers to drain, workers finish in-flight requests, threads join.
//!
//! Invariants: listeners are bound before any thread starts (a start either fully succeeds or
//! fails with one message); every worker holds a snapshot before its first accept.

#![allow(clippy::disallowed_methods)] // start-up may block (file reads, thread joins)

use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::control::{self, Control, Slot};
use crate::snapshot::{Resolved, Snapshot};
use crate::worker::{self, Board, runtime};

/// A running gateway.
#[derive(Debug)]
pub struct Gateway {
    addr: SocketAddr,
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
pub fn worker_cores(configured: usize, pin: bool) -> (usize, Vec<Option<core_affinity::CoreId>>) {
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

/// Starts the gateway for `cfg`.
pub fn start(cfg: Config) -> Result<Gateway, String> {
    let driver = runtime::choose(cfg.server.driver)?;
    let (n, pins) = worker_cores(cfg.server.workers, cfg.server.pin_workers);
    raise_fd_limit();
    let listeners = worker::listener::bind(cfg.server.listen, n)?;
    let addr = listeners[0].local_addr().map_err(|e| e.to_string())?;
    let tls = control::build_tls(&cfg)?;
    let first = Arc::new(Snapshot::build(&cfg, 1, &Resolved::new(), &tls, n, 1));
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
        workers.push(worker::spawn(setup, driver.clone()).map_err(|e| e.to_string())?);
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
    if Snapshot::hosts_to_resolve(&cfg).is_empty() {
        // Nothing to resolve: ready as soon as start() returns.
        board.set_resolved();
    }
    let (req_tx, req_rx) = crossbeam_channel::unbounded();
    let control = Control::new(control::Setup {
        cfg,
        first,
        workers: n,
        tls,
        slots,
        requests: req_rx,
        reports: report_rx,
        board: board.clone(),
    })
    .spawn()
    .map_err(|e| e.to_string())?;
    Ok(Gateway {
        addr,
        requests: req_tx,
        control: Some(control),
        workers,
        board,
    })
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
