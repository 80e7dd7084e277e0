//! One worker's gauges block: what a worker knows of itself (connections, requests, bytes held,
//! event-loop lag, stream gaps), stored once per tick and read by `GET /metrics`, and the
//! families rendered from every worker's block.

use std::sync::atomic::{AtomicU64, Ordering};

use super::text::{Kind, Text};
use super::{Buckets, Histogram, LATENCY_BUCKETS, LocalHistogram};

/// One worker's gauges as of its last tick: written once per tick by that worker (relaxed
/// stores), read by the control thread for `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct Gauges {
    /// Open client connections.
    pub(crate) connections: AtomicU64,
    /// Requests being handled.
    pub(crate) in_flight: AtomicU64,
    /// SSE streams being relayed.
    pub(crate) streams: AtomicU64,
    /// Bytes of request and response bodies held.
    pub(crate) buffered: AtomicU64,
    /// Requests refused 503 `overloaded` because `max_buffered` was reached.
    pub(crate) overloaded: AtomicU64,
    /// Requests handled since start.
    pub(crate) requests: AtomicU64,
    /// How late the tick timer fired, in microseconds: the event loop's lag (a task that
    /// holds the core delays every other).
    pub(crate) loop_lag_us: AtomicU64,
    /// The largest lag seen since start, in microseconds.
    pub(crate) loop_lag_max_us: AtomicU64,
    /// Gaps between consecutive events relayed on a stream: bucket counts (+Inf last).
    pub(crate) gap_counts: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of those gaps, microseconds.
    pub(crate) gap_sum_us: AtomicU64,
}

impl Gauges {
    /// The stream-gap histogram as (bucket counts, sum in seconds).
    pub(crate) fn gaps(&self) -> (Buckets, f64) {
        let counts = std::array::from_fn(|i| self.gap_counts[i].load(Ordering::Relaxed));
        (counts, self.gap_sum_us.load(Ordering::Relaxed) as f64 / 1e6)
    }

    /// Copies a worker's stream-gap histogram into the block (relaxed stores, on the tick).
    pub(crate) fn store_gaps(&self, gaps: &LocalHistogram) {
        for (a, c) in self.gap_counts.iter().zip(&gaps.counts) {
            a.store(c.get(), Ordering::Relaxed);
        }
        self.gap_sum_us.store(gaps.sum_us.get(), Ordering::Relaxed);
    }
}

/// The per-worker families, from every worker's block (by worker id): the counters and gauges
/// labelled `worker`, the loop lag (`stat="last"|"max"`), and the stream-gap histogram summed
/// over the workers.
pub(crate) fn render_workers(text: &mut Text, gauges: &[Gauges]) {
    type Pick = fn(&Gauges) -> &AtomicU64;
    let families: [(&str, Kind, &str, Pick); 6] = [
        (
            "smart_router_worker_connections",
            Kind::Gauge,
            "Open client connections per worker (as of its last tick).",
            |g| &g.connections,
        ),
        (
            "smart_router_worker_in_flight",
            Kind::Gauge,
            "Requests being handled per worker.",
            |g| &g.in_flight,
        ),
        (
            "smart_router_worker_streams",
            Kind::Gauge,
            "SSE streams being relayed per worker.",
            |g| &g.streams,
        ),
        (
            "smart_router_worker_requests_total",
            Kind::Counter,
            "Requests handled per worker since start.",
            |g| &g.requests,
        ),
        (
            "smart_router_worker_buffered_bytes",
            Kind::Gauge,
            "Bytes of request and response bodies a worker holds (bounded by server.max_buffered).",
            |g| &g.buffered,
        ),
        (
            "smart_router_worker_overloaded_total",
            Kind::Counter,
            "Requests a worker answered 503 overloaded because server.max_buffered was reached.",
            |g| &g.overloaded,
        ),
    ];
    for (name, kind, help, pick) in families {
        text.family(name, kind, help);
        for (i, g) in gauges.iter().enumerate() {
            text.sample(name, &[("worker", &i)], pick(g).load(Ordering::Relaxed));
        }
    }
    let lag = "smart_router_worker_loop_lag_seconds";
    text.family(
        lag,
        Kind::Gauge,
        "How late each worker's tick timer fired (event-loop lag); `max` since start.",
    );
    for (i, g) in gauges.iter().enumerate() {
        let last = g.loop_lag_us.load(Ordering::Relaxed) as f64 / 1e6;
        let max = g.loop_lag_max_us.load(Ordering::Relaxed) as f64 / 1e6;
        text.sample(lag, &[("worker", &i), ("stat", &"last")], last);
        text.sample(lag, &[("worker", &i), ("stat", &"max")], max);
    }
    let gap = "smart_router_stream_event_gap_seconds";
    text.family(
        gap,
        Kind::Histogram,
        "Time between consecutive event batches relayed to a streaming client (every worker).",
    );
    let mut counts: Buckets = [0; LATENCY_BUCKETS.len() + 1];
    let mut sum = 0.0;
    for g in gauges {
        let (c, s) = g.gaps();
        for (a, b) in counts.iter_mut().zip(c) {
            *a += b;
        }
        sum += s;
    }
    text.histogram(gap, &[], &Histogram::from_parts(counts, sum));
}
