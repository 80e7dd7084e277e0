//! The admin API's read-only documents: channels, cooldowns, the snapshot and the cluster, as
//! `#[derive(Serialize)]` views borrowed from the control state and written with serde_json.
//! Field names, order and shapes are the README's "Admin API" table.
//!
//! Invariants: a view only borrows and copies: building one changes no state. No view holds an
//! API key or a password: a channel shows its key's fingerprint, the cluster its Redis URL with
//! the password masked. Durations and rates are rounded to 3 decimals ([`rounded`]); money is
//! exact; a value that is not a finite number is `null`.
//! Traffic over the last 1 and 5 minutes (`window` of a channel, `traffic` of the snapshot)
//! is read from `metrics::window` through [`windows`]: the status page shows the same figures.
//! Not here: routing requests and changing state (`routes`), usage totals (`usage`).

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::super::{Ctl, Fetch, State};
use crate::live::health::{Health, State as HealthState};
use crate::metrics::window::{Summary, Window};
use crate::presets::Endpoint;

/// Rounded to 3 decimals (milliseconds of a second, microseconds of a millisecond): what the
/// admin documents show of times and rates. `NaN` stays `NaN` and is written `null`.
pub(super) fn rounded(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Seconds since the Unix epoch, with fractions (0 before it).
fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// `{"object":"list","data":[…]}`.
#[derive(Debug, Serialize)]
pub(super) struct List<T> {
    object: &'static str,
    data: Vec<T>,
}

impl<T> List<T> {
    fn of(data: Vec<T>) -> List<T> {
        List {
            object: "list",
            data,
        }
    }
}

/// A health state: `{"state","reason","failures","remaining_s","until_unix"}`.
#[derive(Debug, Serialize)]
struct HealthView {
    state: &'static str,
    reason: &'static str,
    failures: u16,
    /// Seconds left of a cooldown (`null` when not cooling).
    remaining_s: Option<f64>,
    /// When the cooldown ends, Unix seconds (`null` when not cooling).
    until_unix: Option<f64>,
}

impl HealthView {
    fn of(h: &Health, now: Instant, wall: SystemTime) -> HealthView {
        let (state, left) = match h.state(now) {
            HealthState::Ok => ("ok", None),
            HealthState::HalfOpen => ("half_open", None),
            HealthState::Cooling(t) => ("cooling", Some(t.duration_since(now))),
        };
        HealthView {
            state,
            reason: h.why.as_str(),
            failures: h.failures,
            remaining_s: left.map(|l| rounded(l.as_secs_f64())),
            until_unix: left.map(|l| rounded(unix(wall + l))),
        }
    }
}

/// The last discovery or probe fetch of a channel.
#[derive(Debug, Serialize)]
struct FetchView<'a> {
    at_unix: f64,
    ok: bool,
    status: Option<u16>,
    detail: &'a str,
    ms: f64,
    /// Models found (discovery only: absent for probes).
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<usize>,
}

impl<'a> FetchView<'a> {
    fn of(f: &'a Fetch) -> FetchView<'a> {
        FetchView {
            at_unix: rounded(unix(f.at)),
            ok: f.ok,
            status: f.status,
            detail: &f.detail,
            ms: rounded(f64::from(f.ms)),
            models: f.models,
        }
    }
}

/// The config file's values for a channel (`null`s when the channel is not in it).
#[derive(Debug, Serialize)]
struct ConfigView {
    enabled: Option<bool>,
    priority: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    models: Option<usize>,
}

/// An operator's overrides of a channel.
#[derive(Debug, Serialize)]
struct OverridesView {
    enabled: Option<bool>,
    priority: Option<i32>,
}

/// A (channel, model) entry that failed lately or is cooling down.
#[derive(Debug, Serialize)]
struct ModelCooldown<'a> {
    model: &'a str,
    health: HealthView,
}

/// An endpoint of a channel out of rotation.
#[derive(Debug, Serialize)]
struct EndpointCooldown {
    endpoint: &'static str,
    health: HealthView,
}

/// A channel's traffic averages over its entries (`null` without samples).
#[derive(Debug, Serialize)]
struct StatsView {
    samples: u64,
    latency_ms: f64,
    ttft_ms: f64,
    success_rate: f64,
}

/// The spans every windowed figure is shown over: (name, milliseconds).
const SPANS: [(&str, u64); 2] = [("1m", 60_000), ("5m", 300_000)];

/// One span of a channel's traffic: requests, errors (non-2xx), whole-request latency and
/// time to first byte percentiles (`null` without samples).
#[derive(Debug, Serialize)]
pub(super) struct WindowView {
    requests: u64,
    requests_per_s: f64,
    errors: u64,
    error_rate: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    ttft_p50_ms: f64,
    ttft_p99_ms: f64,
}

/// Requests, errors and percentiles of `latency` (and `ttft`) over each of [`SPANS`], as of
/// `now_ms`: `{"1m":{…},"5m":{…}}`.
pub(super) fn windows(
    latency: Option<&Window>,
    ttft: Option<&Window>,
    now_ms: u64,
) -> std::collections::BTreeMap<&'static str, WindowView> {
    let sum = |w: Option<&Window>, span| {
        w.map(|w| w.summary(now_ms, span)).unwrap_or(Summary {
            p50_ms: f64::NAN,
            p99_ms: f64::NAN,
            ..Summary::default()
        })
    };
    SPANS
        .iter()
        .map(|&(name, span)| {
            let (l, t) = (sum(latency, span), sum(ttft, span));
            let view = WindowView {
                requests: l.count,
                requests_per_s: rounded(l.rate),
                errors: l.errors,
                error_rate: rounded(l.error_rate()),
                latency_p50_ms: rounded(l.p50_ms),
                latency_p99_ms: rounded(l.p99_ms),
                ttft_p50_ms: rounded(t.p50_ms),
                ttft_p99_ms: rounded(t.p99_ms),
            };
            (name, view)
        })
        .collect()
}

/// The gateway's own traffic: open connections, requests in flight and streams (summed over
/// the workers' last ticks), and over each span requests, errors, latency and gateway
/// overhead (`ttft_*` of a span here is the overhead: time spent in the gateway).
#[derive(Debug, Serialize)]
pub(super) struct TrafficView {
    connections: u64,
    in_flight: u64,
    streams: u64,
    requests_total: u64,
    window: std::collections::BTreeMap<&'static str, TrafficSpan>,
}

/// One span of the gateway's traffic.
#[derive(Debug, Serialize)]
pub(super) struct TrafficSpan {
    requests: u64,
    requests_per_s: f64,
    errors: u64,
    error_rate: f64,
    latency_p50_ms: f64,
    latency_p99_ms: f64,
    overhead_p50_ms: f64,
    overhead_p99_ms: f64,
}

fn traffic(ctl: &Ctl, st: &State) -> TrafficView {
    use std::sync::atomic::Ordering::Relaxed;
    let g = &ctl.board.gauges;
    let total = |f: fn(&crate::metrics::Gauges) -> u64| g.iter().map(f).sum::<u64>();
    let now_ms = crate::clock::now_ms();
    let r = &st.metrics.recent;
    TrafficView {
        connections: total(|g| g.connections.load(Relaxed)),
        in_flight: total(|g| g.in_flight.load(Relaxed)),
        streams: total(|g| g.streams.load(Relaxed)),
        requests_total: total(|g| g.requests.load(Relaxed)),
        window: windows(Some(&r.requests), Some(&r.overhead), now_ms)
            .into_iter()
            .map(|(k, w)| {
                let span = TrafficSpan {
                    requests: w.requests,
                    requests_per_s: w.requests_per_s,
                    errors: w.errors,
                    error_rate: w.error_rate,
                    latency_p50_ms: w.latency_p50_ms,
                    latency_p99_ms: w.latency_p99_ms,
                    overhead_p50_ms: w.ttft_p50_ms,
                    overhead_p99_ms: w.ttft_p99_ms,
                };
                (k, span)
            })
            .collect(),
    }
}

/// One channel: identity, state, config and overrides, health, entries and fetches.
#[derive(Debug, Serialize)]
pub(super) struct ChannelView<'a> {
    id: &'a str,
    provider: &'a str,
    kind: &'a str,
    endpoint: String,
    key_fingerprint: String,
    state: &'static str,
    enabled: bool,
    priority: i32,
    weight: f64,
    config: ConfigView,
    overrides: Option<OverridesView>,
    health: HealthView,
    /// Endpoints the provider was found not to serve (re-checked after
    /// `model_missing_cooldown`).
    endpoint_cooldowns: Vec<EndpointCooldown>,
    model_cooldowns: Vec<ModelCooldown<'a>>,
    models: u64,
    discovered_models: u64,
    stats: StatsView,
    /// Traffic over the last 1 and 5 minutes.
    window: std::collections::BTreeMap<&'static str, WindowView>,
    discovery: Option<FetchView<'a>>,
    probe: Option<FetchView<'a>>,
}

/// Every channel, `{"object":"list","data":[…]}`.
pub(super) fn channels(st: &State) -> List<ChannelView<'_>> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    List::of(
        (0..st.current.channels.len())
            .map(|i| channel_at(st, i, now, wall))
            .collect(),
    )
}

/// The channel at index `i` of the current snapshot (an index from `Ctl::channel_index`).
pub(super) fn channel(st: &State, i: usize) -> ChannelView<'_> {
    channel_at(st, i, Instant::now(), SystemTime::now())
}

fn channel_at(st: &State, i: usize, now: Instant, wall: SystemTime) -> ChannelView<'_> {
    let snap = &st.current;
    let live = st.merger.view();
    let ch = &snap.channels[i];
    let cfg = st.cfg.channels.iter().find(|c| *c.id == *ch.id);
    let chl = live.channels.get(i).copied().unwrap_or_default();
    let health = chl.health;
    let state = if !ch.enabled {
        "disabled"
    } else {
        match health.state(now) {
            HealthState::Ok => "ok",
            HealthState::HalfOpen => "half_open",
            HealthState::Cooling(_) => "cooling",
        }
    };
    let scheme = match ch.endpoint.scheme {
        crate::config::Scheme::Http => "http",
        crate::config::Scheme::Https => "https",
    };
    // Entries of this channel: models, model cooldowns, stats (averages weighted by samples).
    let (mut models, mut samples, mut lat, mut ttft, mut succ) = (0u64, 0u64, 0f64, 0f64, 0f64);
    let (mut lat_n, mut ttft_n) = (0u64, 0u64);
    let mut model_cooldowns = Vec::new();
    for (e, el) in snap.catalog.entries.iter().zip(live.entries.iter()) {
        if e.channel as usize != i {
            continue;
        }
        models += 1;
        samples += u64::from(el.samples);
        succ += f64::from(el.success);
        if !el.latency_ms.is_nan() {
            lat += f64::from(el.latency_ms) * f64::from(el.samples.max(1));
            lat_n += u64::from(el.samples.max(1));
        }
        if !el.ttft_ms.is_nan() {
            ttft += f64::from(el.ttft_ms) * f64::from(el.samples.max(1));
            ttft_n += u64::from(el.samples.max(1));
        }
        if el.health.failures > 0 || el.health.until.is_some_and(|t| t > now) {
            model_cooldowns.push(ModelCooldown {
                model: &e.model,
                health: HealthView::of(&el.health, now, wall),
            });
        }
    }
    let mean = |sum: f64, n: u64| if n > 0 { sum / n as f64 } else { f64::NAN };
    let status = st.status.get(&*ch.id);
    ChannelView {
        id: &ch.id,
        provider: &ch.provider,
        kind: &ch.kind,
        endpoint: format!("{scheme}://{}", ch.endpoint.authority),
        key_fingerprint: format!("sha256:{}", ch.key_fingerprint),
        state,
        enabled: ch.enabled,
        priority: ch.priority,
        weight: rounded(ch.weight),
        config: ConfigView {
            enabled: cfg.map(|c| c.enabled),
            priority: cfg.map(|c| c.priority),
            models: cfg.map(|c| c.models.len()),
        },
        overrides: st.overrides.channels.get(&*ch.id).map(|o| OverridesView {
            enabled: o.enabled,
            priority: o.priority,
        }),
        health: HealthView::of(&health, now, wall),
        endpoint_cooldowns: Endpoint::ALL
            .into_iter()
            .filter(|e| chl.endpoint(*e).state(now) != HealthState::Ok)
            .map(|e| EndpointCooldown {
                endpoint: e.as_str(),
                health: HealthView::of(chl.endpoint(e), now, wall),
            })
            .collect(),
        model_cooldowns,
        models,
        discovered_models: st.discovered.get(&*ch.id).map_or(0, |d| d.len() as u64),
        stats: StatsView {
            samples,
            latency_ms: rounded(mean(lat, lat_n)),
            ttft_ms: rounded(mean(ttft, ttft_n)),
            success_rate: rounded(mean(succ, models)),
        },
        window: {
            let w = st.metrics.recent.channels.get(&*ch.id);
            windows(
                w.map(|w| &w.latency),
                w.map(|w| &w.ttft),
                crate::clock::now_ms(),
            )
        },
        discovery: status.and_then(|s| s.discovery.as_ref()).map(FetchView::of),
        probe: status.and_then(|s| s.probe.as_ref()).map(FetchView::of),
    }
}

/// A cooldown in effect or half-open: a channel's (`model` and `endpoint` null), a (channel,
/// endpoint)'s or a (channel, model)'s.
#[derive(Debug, Serialize)]
pub(super) struct CooldownView<'a> {
    channel: &'a str,
    scope: &'static str,
    endpoint: Option<&'static str>,
    model: Option<&'a str>,
    health: HealthView,
}

/// Every cooldown in effect or half-open, at every scope.
pub(super) fn cooldowns(st: &State) -> List<CooldownView<'_>> {
    let (now, wall) = (Instant::now(), SystemTime::now());
    let snap = &st.current;
    let live = st.merger.view();
    let mut data = Vec::new();
    for (i, (ch, c)) in snap.channels.iter().zip(live.channels.iter()).enumerate() {
        if c.health.state(now) != HealthState::Ok {
            data.push(CooldownView {
                channel: &ch.id,
                scope: "channel",
                endpoint: None,
                model: None,
                health: HealthView::of(&c.health, now, wall),
            });
        }
        for e in Endpoint::ALL {
            let h = c.endpoint(e);
            if h.state(now) != HealthState::Ok {
                data.push(CooldownView {
                    channel: &ch.id,
                    scope: "endpoint",
                    endpoint: Some(e.as_str()),
                    model: None,
                    health: HealthView::of(h, now, wall),
                });
            }
        }
        for (e, el) in snap.catalog.entries.iter().zip(live.entries.iter()) {
            if e.channel as usize == i && el.health.state(now) != HealthState::Ok {
                data.push(CooldownView {
                    channel: &ch.id,
                    scope: "model",
                    endpoint: None,
                    model: Some(&e.model),
                    health: HealthView::of(&el.health, now, wall),
                });
            }
        }
    }
    List::of(data)
}

/// A worker and the snapshot epoch it routes by.
#[derive(Debug, Serialize)]
struct WorkerView {
    id: usize,
    epoch: u64,
}

/// A periodic round (discovery, probes): on or off, when the next is due.
#[derive(Debug, Serialize)]
struct RoundView {
    enabled: bool,
    /// Discovery only: a round is running now.
    #[serde(skip_serializing_if = "Option::is_none")]
    running: Option<bool>,
    next_in_s: Option<f64>,
}

/// The latest reload.
#[derive(Debug, Serialize)]
struct LastReloadView<'a> {
    at_unix: f64,
    ok: bool,
    errors: &'a [String],
}

/// Reloads so far.
#[derive(Debug, Serialize)]
struct ReloadsView<'a> {
    applied: u64,
    rejected: u64,
    last: Option<LastReloadView<'a>>,
    /// The latest few, oldest first.
    recent: Vec<LastReloadView<'a>>,
    restart_required: &'a [String],
}

/// `GET /admin/snapshot`.
#[derive(Debug, Serialize)]
pub(super) struct SnapshotView<'a> {
    epoch: u64,
    generation: u64,
    channels: usize,
    channels_enabled: usize,
    entries: usize,
    models: usize,
    build_ms: f64,
    propagation_ms: Option<f64>,
    publications: u64,
    workers: Vec<WorkerView>,
    uptime_s: f64,
    config: String,
    state_dir: Option<String>,
    discovery: RoundView,
    health: RoundView,
    reloads: ReloadsView<'a>,
    /// The gateway's traffic: connections, in flight, streams, the last 1 and 5 minutes.
    traffic: TrafficView,
}

/// Epoch, generation, counts, build and propagation times, per-worker epochs, rounds, reloads.
pub(super) fn snapshot<'a>(ctl: &Ctl, st: &'a State) -> SnapshotView<'a> {
    let snap = &st.current;
    let now = Instant::now();
    let mut names: Vec<&str> = snap.catalog.entries.iter().map(|e| &*e.model).collect();
    names.sort_unstable();
    names.dedup();
    let next_in =
        |t: Option<Instant>| t.map(|t| rounded(t.saturating_duration_since(now).as_secs_f64()));
    SnapshotView {
        epoch: snap.epoch,
        generation: snap.catalog.generation,
        channels: snap.channels.len(),
        channels_enabled: snap.channels.iter().filter(|c| c.enabled).count(),
        entries: snap.catalog.entries.len(),
        models: names.len(),
        build_ms: rounded(st.build_time.as_secs_f64() * 1000.0),
        propagation_ms: st.propagation.map(|p| rounded(p.as_secs_f64() * 1000.0)),
        publications: st.publications,
        workers: ctl
            .board
            .epochs()
            .into_iter()
            .enumerate()
            .map(|(id, epoch)| WorkerView { id, epoch })
            .collect(),
        uptime_s: rounded(now.duration_since(ctl.started).as_secs_f64()),
        config: match &st.cfg.source {
            crate::config::Source::File(p) => format!("file {}", p.display()),
            crate::config::Source::Inline => "inline".into(),
            crate::config::Source::Environment(v) => format!("environment ({})", v.join(", ")),
            crate::config::Source::Demo => "demo".into(),
        },
        state_dir: ctl.store.dir().map(|d| d.display().to_string()),
        discovery: RoundView {
            enabled: st.cfg.discovery.enabled,
            running: Some(ctl.discovering.get()),
            next_in_s: next_in(st.next_discovery),
        },
        health: RoundView {
            enabled: st.cfg.health.enabled,
            running: None,
            next_in_s: next_in(st.next_probe),
        },
        reloads: ReloadsView {
            applied: st.reloads.0,
            rejected: st.reloads.1,
            last: st.last_reload.as_ref().map(|r| LastReloadView {
                at_unix: rounded(unix(r.at)),
                ok: r.errors.is_empty(),
                errors: &r.errors,
            }),
            recent: st
                .reload_history
                .iter()
                .map(|r| LastReloadView {
                    at_unix: rounded(unix(r.at)),
                    ok: r.errors.is_empty(),
                    errors: &r.errors,
                })
                .collect(),
            restart_required: &st.restart_required,
        },
        traffic: traffic(ctl, st),
    }
}
