//! `GET /metrics`: the Prometheus text document — the request metrics merged from usage
//! records (`control::metrics`), the workers' gauges blocks (`metrics::render_workers`), then
//! the families only the control thread knows: build info, snapshot epochs, channel health and
//! cooldowns, the day's spend and budget, and the fleet link with `[cluster]`.
//!
//! Invariants: label values come from config and the catalog (channel, provider ids) or fixed
//! sets (reasons, results), never from client text; rendering only reads state.
//! Not here: the text format itself (`metrics::text`), recording (workers, `control::metrics`).

use std::fmt::Display;
use std::time::Instant;

use super::super::Ctl;
use crate::live::health::State as HealthState;
use crate::metrics::text::{Kind, Text};

/// `GET /metrics`: request metrics from usage records, the workers' gauges, then the control
/// thread's own state.
pub(super) fn render(ctl: &Ctl) -> String {
    let st = ctl.st.borrow();
    let mut text = Text::with_capacity(16 * 1024);
    st.metrics.render(&mut text, &st.cfg.pricing.currency);
    let name = "smart_router_telemetry_dropped_spans_total";
    text.family(
        name,
        Kind::Counter,
        "Trace spans dropped: the collector down or slow, or the queue full ([telemetry]).",
    );
    text.sample(
        name,
        &[],
        st.spans_dropped
            .spans
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    let name = "smart_router_build_info";
    text.family(
        name,
        Kind::Gauge,
        "Always 1: the version and the I/O driver in use.",
    );
    let labels = [
        ("version", &crate::VERSION as &dyn Display),
        ("driver", &ctl.board.driver.driver.as_str()),
    ];
    text.sample(name, &labels, 1);
    let name = "smart_router_snapshot_epoch";
    text.family(
        name,
        Kind::Gauge,
        "Snapshot epoch each worker routes by (worker=\"control\": the latest published).",
    );
    text.sample(name, &[("worker", &"control")], st.current.epoch);
    for (i, e) in ctl.board.epochs().iter().enumerate() {
        text.sample(name, &[("worker", &i)], e);
    }
    crate::metrics::render_workers(&mut text, &ctl.board.gauges);
    let now = Instant::now();
    let live = st.merger.view();
    let up = "smart_router_channel_up";
    text.family(
        up,
        Kind::Gauge,
        "1 when the channel takes traffic (enabled, not cooling down, daily quota left).",
    );
    let mut cooling = Vec::new();
    for (i, ch) in st.current.channels.iter().enumerate() {
        let health = live.channels.get(i).map(|c| c.health).unwrap_or_default();
        let state = health.state(now);
        let taking = ch.enabled
            && !matches!(state, HealthState::Cooling(_))
            && !st.current.quota.channel_spent(i);
        text.sample(
            up,
            &[("channel", &ch.id), ("provider", &ch.provider)],
            u8::from(taking),
        );
        let left = match state {
            HealthState::Cooling(until) => until.saturating_duration_since(now).as_secs_f64(),
            _ => 0.0,
        };
        cooling.push((i, health.why.as_str(), left));
    }
    let name = "smart_router_channel_cooldown_seconds";
    text.family(
        name,
        Kind::Gauge,
        "Seconds left of the channel's cooldown (0 when none), with the reason of the last change.",
    );
    for (i, why, left) in cooling {
        let ch = &st.current.channels[i];
        let labels = [
            ("channel", &ch.id as &dyn Display),
            ("provider", &ch.provider),
            ("reason", &why),
        ];
        text.sample(name, &labels, left);
    }
    let name = "smart_router_daily_cost";
    text.family(
        name,
        Kind::Gauge,
        "Spend so far this UTC day, in the configured currency (resets at 00:00 UTC).",
    );
    text.sample(
        name,
        &[("currency", &st.cfg.pricing.currency)],
        st.ledger.cost,
    );
    let name = "smart_router_budget_exhausted";
    text.family(
        name,
        Kind::Gauge,
        "1 when the global [pricing] daily_budget is spent (requests answer 429).",
    );
    text.sample(name, &[], u8::from(st.current.quota.global.is_some()));
    #[cfg(feature = "cluster")]
    if let Some(f) = &*ctl.cluster.borrow() {
        let name = "smart_router_cluster_connected";
        text.family(
            name,
            Kind::Gauge,
            "1 while the last sync round with the fleet's Redis succeeded; 0: serving on local state.",
        );
        text.sample(name, &[], u8::from(f.connected));
        let name = "smart_router_cluster_instances";
        text.family(
            name,
            Kind::Gauge,
            "Live instances of the fleet (heartbeat within 60 s), this one included, as of the last round.",
        );
        text.sample(name, &[], f.instances.len());
        let name = "smart_router_cluster_rounds_total";
        text.family(name, Kind::Counter, "Sync rounds with Redis, by result.");
        text.sample(name, &[("result", &"ok")], f.rounds.0);
        text.sample(name, &[("result", &"failed")], f.rounds.1);
        let name = "smart_router_cluster_round_seconds";
        text.family(
            name,
            Kind::Gauge,
            "Round-trip time of the last successful sync round.",
        );
        text.sample(name, &[], f.last_rtt.map_or(0.0, |d| d.as_secs_f64()));
    }
    text.finish()
}
