//! Windowed latency histograms: the one percentile system behind the status page and the
//! admin API's `window` figures — requests, errors and p50/p99 over the last minute and the
//! last five minutes.
//!
//! A [`Window`] is a ring of [`SLOTS`] sub-windows of [`SLOT_MS`] each (five minutes in all).
//! Each slot holds fixed logarithmic buckets ([`BUCKETS`]: four per octave of microseconds,
//! 1 µs to ~134 s, so a percentile read at a bucket's geometric middle is within ±9 % of the
//! truth), a count and an error count. A slot is reused when the clock moves past it, so old
//! observations fall out without any sweep; reading a span sums its live slots.
//!
//! Why not `LATENCY_BUCKETS`: those 18 bounds are the Prometheus export's contract (dashboards
//! and `histogram_quantile` read them) and too coarse for a p50 an operator can act on; these
//! finer buckets are only ever read as percentiles here.
//!
//! Invariants: recording is O(1), never allocates after the first observation and never
//! panics; times are the caller's (wall milliseconds), so tests drive it with any clock. It is
//! fed on the control thread from the usage records workers already send (one per request,
//! never dropped): workers pay nothing for it.
//! Not here: what is recorded (`control::metrics`), the documents that show it (admin views).

/// Length of one sub-window, milliseconds.
pub(crate) const SLOT_MS: u64 = 10_000;
/// Sub-windows kept: five minutes.
pub(crate) const SLOTS: usize = 30;
/// Logarithmic buckets: four per octave of microseconds, the last one open-ended.
pub(crate) const BUCKETS: usize = 4 * 27 + 1;

/// The bucket of a duration in microseconds: `floor(4·log2(us))`, capped.
fn bucket(us: f64) -> usize {
    if us.is_nan() || us <= 1.0 {
        return 0;
    }
    ((us.log2() * 4.0) as usize).min(BUCKETS - 1)
}

/// A bucket's geometric middle, milliseconds.
fn middle_ms(i: usize) -> f64 {
    2f64.powf((i as f64 + 0.5) / 4.0) / 1000.0
}

/// One sub-window.
#[derive(Debug, Clone)]
struct Slot {
    /// Which sub-window (wall ms / [`SLOT_MS`]) the counts belong to.
    at: u64,
    count: u32,
    errors: u32,
    counts: [u32; BUCKETS],
}

/// Requests, errors and latency percentiles over one span.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Summary {
    /// Observations in the span.
    pub(crate) count: u64,
    /// Observations marked as errors.
    pub(crate) errors: u64,
    /// Observations per second over the span (the part of it the window has existed).
    pub(crate) rate: f64,
    /// Median, milliseconds (`NaN` without observations).
    pub(crate) p50_ms: f64,
    /// 99th percentile, milliseconds (`NaN` without observations).
    pub(crate) p99_ms: f64,
}

impl Summary {
    /// Errors over observations (`NaN` without any).
    pub(crate) fn error_rate(&self) -> f64 {
        if self.count == 0 {
            f64::NAN
        } else {
            self.errors as f64 / self.count as f64
        }
    }
}

/// A rotating five-minute histogram (see the module docs).
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// Empty until the first observation; then [`SLOTS`] slots.
    slots: Vec<Slot>,
    /// When the window was created (first observation or [`Window::since`]), wall ms: a rate
    /// is over the part of the span the window has existed.
    since_ms: u64,
}

impl Window {
    /// An empty window that counts its rates from `now_ms`.
    pub(crate) fn since(now_ms: u64) -> Window {
        Window {
            slots: Vec::new(),
            since_ms: now_ms,
        }
    }

    /// Records one observation of `ms` milliseconds at wall time `now_ms` (`error`: it
    /// counts towards the error rate). A `NaN` or negative duration counts without a latency.
    pub(crate) fn observe(&mut self, now_ms: u64, ms: f64, error: bool) {
        if self.slots.is_empty() {
            if self.since_ms == 0 {
                self.since_ms = now_ms;
            }
            self.slots = vec![
                Slot {
                    at: u64::MAX,
                    count: 0,
                    errors: 0,
                    counts: [0; BUCKETS],
                };
                SLOTS
            ];
        }
        let at = now_ms / SLOT_MS;
        let slot = &mut self.slots[(at % SLOTS as u64) as usize];
        if slot.at != at {
            slot.at = at;
            slot.count = 0;
            slot.errors = 0;
            slot.counts = [0; BUCKETS];
        }
        slot.count = slot.count.saturating_add(1);
        slot.errors = slot.errors.saturating_add(u32::from(error));
        if ms.is_finite() && ms >= 0.0 {
            let b = &mut slot.counts[bucket(ms * 1000.0)];
            *b = b.saturating_add(1);
        }
    }

    /// The last `span_ms` (rounded up to whole sub-windows, the current one included) as of
    /// `now_ms`.
    pub(crate) fn summary(&self, now_ms: u64, span_ms: u64) -> Summary {
        let cur = now_ms / SLOT_MS;
        let n = span_ms.div_ceil(SLOT_MS).clamp(1, SLOTS as u64);
        let first = (cur + 1).saturating_sub(n);
        let mut counts = [0u64; BUCKETS];
        let (mut count, mut errors) = (0u64, 0u64);
        for s in self.slots.iter().filter(|s| s.at >= first && s.at <= cur) {
            count += u64::from(s.count);
            errors += u64::from(s.errors);
            for (a, b) in counts.iter_mut().zip(s.counts.iter()) {
                *a += u64::from(*b);
            }
        }
        // The span covered: from the older of its start and the window's creation.
        let start = (first * SLOT_MS).max(self.since_ms);
        let secs = (now_ms.saturating_sub(start) as f64 / 1000.0).max(1.0);
        Summary {
            count,
            errors,
            rate: count as f64 / secs,
            p50_ms: percentile(&counts, 0.5),
            p99_ms: percentile(&counts, 0.99),
        }
    }
}

/// The `q` quantile of bucket counts, milliseconds (`NaN` when empty).
fn percentile(counts: &[u64; BUCKETS], q: f64) -> f64 {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, c) in counts.iter().enumerate() {
        seen += c;
        if seen >= rank {
            return middle_ms(i);
        }
    }
    middle_ms(BUCKETS - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= b * 0.1
    }

    #[test]
    fn percentiles_are_within_a_bucket() {
        let mut w = Window::since(0);
        let t = 1_000_000;
        for i in 1..=100 {
            w.observe(t, f64::from(i), i > 95);
        }
        let s = w.summary(t, 60_000);
        assert_eq!((s.count, s.errors), (100, 5));
        assert!(close(s.p50_ms, 50.0), "{}", s.p50_ms);
        assert!(close(s.p99_ms, 99.0), "{}", s.p99_ms);
        assert!((s.error_rate() - 0.05).abs() < 1e-9);
    }

    #[test]
    fn old_slots_fall_out_of_the_one_minute_span() {
        let mut w = Window::since(0);
        let t0 = 10 * SLOT_MS * 1000;
        w.observe(t0, 5.0, false);
        let later = t0 + 2 * 60_000;
        w.observe(later, 500.0, false);
        let one = w.summary(later, 60_000);
        assert_eq!(one.count, 1);
        assert!(close(one.p50_ms, 500.0));
        let five = w.summary(later, 300_000);
        assert_eq!(five.count, 2);
        // A slot reused after the ring wrapped starts empty.
        let wrapped = t0 + SLOTS as u64 * SLOT_MS;
        w.observe(wrapped, 1.0, true);
        assert_eq!(w.summary(wrapped, 300_000).count, 2);
        assert!(w.summary(wrapped + 600_000, 300_000).p50_ms.is_nan());
    }

    #[test]
    fn rates_count_only_the_time_the_window_existed() {
        let mut w = Window::since(100_000);
        for _ in 0..10 {
            w.observe(105_000, 1.0, false);
        }
        let s = w.summary(110_000, 60_000);
        assert!((s.rate - 1.0).abs() < 1e-9, "{}", s.rate);
    }

    #[test]
    fn extreme_values_do_not_panic() {
        let mut w = Window::default();
        for v in [f64::NAN, -1.0, 0.0, 1e-9, 1e12, f64::INFINITY] {
            w.observe(1, v, false);
        }
        let s = w.summary(1, 60_000);
        assert_eq!(s.count, 6);
        assert!(s.p99_ms.is_finite());
    }
}
