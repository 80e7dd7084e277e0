//! Metrics below the threads that record them: the latency buckets every exported histogram
//! shares, the worker-local histogram a worker records into, the per-worker gauges block it
//! stores once per tick ([`Gauges`], with the families rendered from it), the control thread's
//! histogram, the Prometheus text-format writer `GET /metrics` is rendered with (`text`), and
//! the windowed histograms (last 1 and 5 minutes) every percentile the gateway shows is read
//! from (`window`).
//!
//! Invariants: recording never allocates, locks or blocks: a worker's [`LocalHistogram`] is
//! plain cells only its thread touches, and [`Gauges`] are relaxed atomics a worker stores
//! once per tick (never per request) and the control thread reads. Every histogram uses the
//! same `LATENCY_BUCKETS`, so per-worker counts add up bucket by bucket. Label values are
//! escaped by the writer, so no value can break a sample line.
//! Not here: what is measured and when (`worker`, `proxy`; the usage-record metrics of
//! `control::metrics`), families that read control state (the admin API's `prometheus`),
//! serving the text (the admin listener). This module names only leaf modules: workers record
//! into it, so it sits below them. `pub` only where `worker`'s public `Board` and `Stats` show
//! it ([`Gauges`], [`LocalHistogram`]); the rest is the crate's.

mod gauges;
pub(crate) mod text;
pub(crate) mod window;

use std::cell::Cell;
use std::time::Duration;

pub(crate) use gauges::Gauges;
pub(crate) use gauges::render_workers;

/// Histogram bucket upper bounds in seconds (Prometheus `le`), shared by every latency
/// histogram the gateway exports.
pub(crate) const LATENCY_BUCKETS: [f64; 18] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Bucket counts of one histogram: one per [`LATENCY_BUCKETS`] bound (not cumulative), then
/// the `+Inf` bucket.
pub(crate) type Buckets = [u64; LATENCY_BUCKETS.len() + 1];

/// The bucket `secs` falls in (the last, `+Inf`, past every bound).
fn bucket(secs: f64) -> usize {
    LATENCY_BUCKETS
        .iter()
        .position(|b| secs <= *b)
        .unwrap_or(LATENCY_BUCKETS.len())
}

/// A worker-local histogram of durations (plain cells: only its worker touches it). The worker
/// copies it to its [`Gauges`] on the tick (`Gauges::store_gaps`).
#[derive(Debug, Default)]
pub(crate) struct LocalHistogram {
    counts: [Cell<u64>; LATENCY_BUCKETS.len() + 1],
    sum_us: Cell<u64>,
}

impl LocalHistogram {
    /// Records one duration: two cell updates, no allocation.
    pub(crate) fn observe(&self, d: Duration) {
        let i = bucket(d.as_secs_f64());
        self.counts[i].set(self.counts[i].get() + 1);
        let us = d.as_micros().min(u128::from(u64::MAX)) as u64;
        self.sum_us.set(self.sum_us.get().saturating_add(us));
    }
}

/// A histogram of seconds on the control thread, made cumulative when rendered
/// ([`text::Text::histogram`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Histogram {
    /// Per bucket (not cumulative), plus +Inf at the end.
    counts: Buckets,
    sum: f64,
    count: u64,
}

impl Histogram {
    /// Records one observation in seconds (non-finite or negative ones are ignored).
    pub(crate) fn observe(&mut self, secs: f64) {
        if !secs.is_finite() || secs < 0.0 {
            return;
        }
        self.counts[bucket(secs)] += 1;
        self.sum += secs;
        self.count += 1;
    }

    /// A histogram from bucket counts (not cumulative, +Inf last) and their sum in seconds.
    pub(crate) fn from_parts(counts: Buckets, sum: f64) -> Histogram {
        Histogram {
            count: counts.iter().sum(),
            counts,
            sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_and_control_histograms_share_the_buckets() {
        let local = LocalHistogram::default();
        local.observe(Duration::from_micros(70));
        local.observe(Duration::from_secs(100));
        let g = Gauges::default();
        g.store_gaps(&local);
        let (counts, sum) = g.gaps();
        let mut h = Histogram::default();
        h.observe(0.000_07);
        h.observe(100.0);
        let merged = Histogram::from_parts(counts, sum);
        assert_eq!((merged.counts, merged.count), (h.counts, h.count));
        assert!(
            (merged.sum - h.sum).abs() < 1e-9,
            "{} vs {}",
            merged.sum,
            h.sum
        );
    }
}
