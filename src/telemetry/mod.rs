//! OpenTelemetry traces over OTLP/HTTP (`[telemetry]`): the control thread turns the span data
//! that sampled requests' usage records carry into spans ([`spans`]), queues them, and every
//! `export_interval` hands a batch to the exporter thread ([`export`]), which encodes it
//! (protobuf or JSON, [`otlp`]) and POSTs it to the collector.
//!
//! Invariants: nothing here runs on a worker — workers only fill `usage::Traced` on sampled
//! requests and send it with the record they already send. The control thread never waits on
//! the collector: batches go through a one-slot channel with `try_send`; when the slot is taken
//! (the exporter is still posting) or the queue is at `max_queue`, spans are dropped and
//! counted (`smart_router_telemetry_dropped_spans_total`), with one WARN line a minute at most.
//! Header values (collector credentials) are never logged.
//! Not here: the sampling decision and the upstream `traceparent` (`trace`, `proxy`).

#![allow(clippy::disallowed_methods)] // the exporter thread blocks on its channel and socket: it is no worker

mod export;
pub mod otlp;
mod spans;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};

use crate::config::TelemetryConfig;
use crate::usage::Record;

/// Spans dropped so far and the time of the last warning about it (shared with the exporter).
#[derive(Debug, Default)]
pub(crate) struct Drops {
    /// Spans dropped (queue full, exporter busy, export failed).
    pub(crate) spans: AtomicU64,
    /// Unix seconds of the last WARN line (one a minute at most).
    warned: AtomicU64,
}

impl Drops {
    /// Counts `n` dropped spans, and says so at most once a minute (`why` never holds a secret).
    pub(crate) fn drop_spans(&self, n: usize, why: &dyn std::fmt::Display) {
        let total = self.spans.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
        let now = crate::clock::unix_secs();
        let last = self.warned.load(Ordering::Relaxed);
        if (last == 0 || now >= last + 60)
            && self
                .warned
                .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(dropped_total = total, reason = %why, "telemetry: spans dropped");
        }
    }
}

/// The control thread's side of telemetry: the queue and the handle on the exporter thread.
#[derive(Debug)]
pub(crate) struct Telemetry {
    queue: Vec<otlp::Span>,
    max_queue: usize,
    interval: Duration,
    next_export: Instant,
    tx: Sender<Vec<otlp::Span>>,
    drops: Arc<Drops>,
}

impl Telemetry {
    /// Starts the exporter thread for `cfg`; dropped spans are counted in `drops`.
    pub(crate) fn start(cfg: &TelemetryConfig, drops: Arc<Drops>) -> std::io::Result<Telemetry> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        export::spawn(cfg.clone(), rx, drops.clone())?;
        tracing::info!(
            endpoint = %format_args!(
                "{}://{}:{}{}",
                if cfg.endpoint.scheme == crate::config::Scheme::Https { "https" } else { "http" },
                cfg.endpoint.host,
                cfg.endpoint.port,
                cfg.path
            ),
            sample_ratio = cfg.sample_ratio,
            "telemetry: exporting traces over OTLP/HTTP"
        );
        Ok(Telemetry {
            queue: Vec::new(),
            max_queue: cfg.max_queue,
            interval: cfg.export_interval,
            next_export: Instant::now() + cfg.export_interval,
            tx,
            drops,
        })
    }

    /// Queues the spans of a record, if its request was sampled.
    pub(crate) fn add(&mut self, r: &Record) {
        let Some(t) = &r.trace else {
            return;
        };
        let n = 1 + t.attempts.len();
        if self.queue.len() + n > self.max_queue {
            self.drops.drop_spans(n, &"queue full (max_queue)");
            return;
        }
        spans::spans(r, t, &mut self.queue);
    }

    /// Hands the queued spans to the exporter when the interval is up (`force`: now).
    pub(crate) fn poll(&mut self, now: Instant, force: bool) {
        if !force && now < self.next_export {
            return;
        }
        self.next_export = now + self.interval;
        if self.queue.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.queue);
        match self.tx.try_send(batch) {
            Ok(()) => {}
            Err(TrySendError::Full(b)) => self.drops.drop_spans(
                b.len(),
                &"the collector is slow: the last export is still running",
            ),
            Err(TrySendError::Disconnected(b)) => self
                .drops
                .drop_spans(b.len(), &"the exporter thread is gone"),
        }
    }
}
