//! The worker thread's front door: spawn the thread (pinned, on the chosen driver), accept
//! connections on its listener (answering 503 over `max_connections`, backing off when
//! accepting fails), run each connection under a panic guard, and drain on shutdown.
//!
//! Invariants: one accept loop per worker, on its own `SO_REUSEPORT` listener; a panic while
//! serving one connection costs that connection only; accept failures (out of descriptors)
//! never spin and are logged at most once a second. Requests are the [`Handler`]'s business.

use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use super::{ClientStream, Handler};
use crate::worker::runtime::{self, Chosen};
use crate::worker::{Opened, Setup, Worker, tick_loop};

/// Starts a worker thread.
pub(crate) fn spawn<H: Handler + Default + 'static>(
    setup: Setup,
    driver: Chosen,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("sar-worker-{}", setup.id))
        .spawn(move || {
            if let Some(core) = setup.core
                && !core_affinity::set_for_current(core)
            {
                tracing::warn!(
                    worker = setup.id,
                    core = core.id,
                    "could not pin worker to its CPU"
                );
            }
            let id = setup.id;
            match runtime::block_on(&driver, run::<H>(setup)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::error!(worker = id, error = %e, "worker runtime failed to start")
                }
            }
        })
}

async fn run<H: Handler + Default + 'static>(setup: Setup) {
    let Some(Opened {
        worker,
        listener,
        snapshots,
        commands,
        tick,
    }) = Worker::open(setup)
    else {
        return;
    };
    let handler = Rc::new(H::default());
    monoio::select! {
        _ = accept_loop(worker.clone(), listener, handler) => {}
        _ = tick_loop(worker.clone(), snapshots, commands, tick) => {}
    }
    // The listener is closed (dropped with accept_loop); idle keep-alive connections close
    // with the runtime once the drain is over.
    worker.drain().await;
}

async fn accept_loop<H: Handler + 'static>(
    worker: Rc<Worker>,
    listener: monoio::net::TcpListener,
    handler: Rc<H>,
) {
    let mut failing = AcceptFailures::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => {
                failing.recovered(worker.id);
                x
            }
            Err(e) => {
                // EMFILE/ENFILE/ENOBUFS: out of descriptors or memory. Back off (longer while
                // it lasts) instead of spinning, and log once a second with a count.
                let wait = failing.failed(worker.id, &e);
                monoio::time::sleep(wait).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let max = worker.snapshot().server.max_connections;
        if worker.stats.connections.get() >= max {
            monoio::spawn(super::reject_overloaded(stream, worker.clone()));
            continue;
        }
        monoio::spawn(serve_guarded(worker.clone(), stream, peer, handler.clone()));
    }
}

/// Accept errors in a row: the back-off and the once-a-second log line.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// Failures since the last log line.
    unlogged: u64,
    /// Failures in a row.
    streak: u32,
    last_log: Option<Instant>,
}

impl AcceptFailures {
    /// Records a failure; returns how long to wait before accepting again (10 ms, doubling
    /// while failures continue, at most 1 s).
    fn failed(&mut self, worker: usize, e: &std::io::Error) -> Duration {
        self.unlogged += 1;
        self.streak = self.streak.saturating_add(1);
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
        {
            tracing::warn!(
                worker,
                error = %e,
                failures = self.unlogged,
                "accept failing; backing off (out of file descriptors? raise LimitNOFILE)"
            );
            self.unlogged = 0;
            self.last_log = Some(now);
        }
        let shift = self.streak.saturating_sub(1).min(7);
        Duration::from_millis(10 << shift).min(Duration::from_secs(1))
    }

    /// An accept succeeded: says how many failures went unlogged since the last line.
    fn recovered(&mut self, worker: usize) {
        if self.streak == 0 {
            return;
        }
        if self.unlogged > 0 {
            tracing::warn!(worker, failures = self.unlogged, "accept failed; recovered");
        }
        *self = AcceptFailures::default();
    }
}

async fn serve_guarded<H: Handler + 'static>(
    worker: Rc<Worker>,
    stream: monoio::net::TcpStream,
    peer: SocketAddr,
    handler: Rc<H>,
) {
    let stats = &worker.stats;
    stats.connections.set(stats.connections.get() + 1);
    let tls = worker.snapshot().inbound_tls.clone();
    let stream = match tls {
        None => ClientStream::Plain(stream),
        Some(cfg) => {
            // The handshake is part of the head: it gets the head's deadline.
            let deadline = worker.snapshot().server.header_timeout;
            let acceptor = monoio_rustls::TlsAcceptor::from(cfg);
            // Boxed: the handshake's state would otherwise enlarge every connection's task.
            let handshake = Box::pin(acceptor.accept(stream));
            match monoio::time::timeout(deadline, handshake).await {
                Ok(Ok(tls)) => ClientStream::Tls(Box::new(tls)),
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                    stats.connections.set(stats.connections.get() - 1);
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "TLS handshake timed out");
                    stats.connections.set(stats.connections.get() - 1);
                    return;
                }
            }
        }
    };
    let result = CatchUnwind(Box::pin(super::serve(&worker, stream, &*handler))).await;
    stats.connections.set(stats.connections.get() - 1);
    if result.is_err() {
        tracing::error!(worker = worker.id, %peer, "connection task panicked; connection closed");
    }
}

/// Runs a future, turning a panic inside it into `Err(())` so one bad request cannot take the
/// core's other connections down with it.
struct CatchUnwind<F>(Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let fut = self.0.as_mut();
        match std::panic::catch_unwind(AssertUnwindSafe(|| fut.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_failures_back_off_and_log_at_most_once_a_second() {
        let mut f = AcceptFailures::default();
        let e = std::io::Error::from_raw_os_error(24); // EMFILE
        let waits: Vec<u64> = (0..10)
            .map(|_| f.failed(0, &e).as_millis() as u64)
            .collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        // The first failure was logged at once; the nine after it wait for the next second.
        assert_eq!(f.unlogged, 9);
        f.recovered(0);
        assert_eq!((f.streak, f.unlogged), (0, 0));
        assert_eq!(f.failed(0, &e), Duration::from_millis(10));
    }
}
