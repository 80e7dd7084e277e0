//! Live state: health at its three scopes — channel, (channel, model), (channel, endpoint) —
//! and per-entry latency, time to first token and success rate as EWMAs. Workers report
//! outcomes; the control thread merges them here and publishes the result inside the next
//! snapshot.
//!
//! Invariants: a published [`Live`] is immutable and indexed like the catalog of the same
//! `generation`; reports for another generation are ignored. Health merges apply the same pure
//! transition ([`apply_outcome`]) a worker applied locally, at the report's own timestamp, so
//! both views agree. Counts are never dropped: reports travel on an unbounded channel.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::CooldownPolicy;
use crate::presets::Endpoint;
pub(crate) mod health;

use health::{Health, Outcome, Scope};

/// Smoothing of latency and TTFT averages (weight of the newest sample).
pub(crate) const LATENCY_ALPHA: f32 = 0.2;
/// Smoothing of the success rate (weight of the newest outcome).
pub(crate) const SUCCESS_ALPHA: f32 = 0.1;

/// Live facts about one catalog entry.
#[derive(Debug, Clone, Copy)]
pub struct EntryLive {
    /// Model-level health (404s).
    pub(crate) health: Health,
    /// EWMA of whole-exchange latency in ms (NaN: no sample yet).
    pub latency_ms: f32,
    /// EWMA of time to first byte in ms (NaN: no sample yet).
    pub ttft_ms: f32,
    /// EWMA of success (1 healthy, 0 failing); starts at 1.
    pub success: f32,
    /// Samples seen.
    pub samples: u32,
}

impl Default for EntryLive {
    fn default() -> Self {
        EntryLive {
            health: Health::default(),
            latency_ms: f32::NAN,
            ttft_ms: f32::NAN,
            success: 1.0,
            samples: 0,
        }
    }
}

/// The last model of a channel that failed transiently, while its backoff window runs: a
/// second model failing inside it shows the channel, not the model, is the problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Strike {
    /// The entry that failed.
    pub entry: u32,
    /// When.
    pub at: Instant,
    /// The end of its cooldown window.
    pub until: Instant,
}

/// Live facts about one channel: its own health, its endpoints' and its last strike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ChannelLive {
    /// Channel-level health (its key, its host, a second failing model).
    pub health: Health,
    /// (channel, endpoint) health, indexed by [`Endpoint::index`]: endpoints the provider
    /// does not serve.
    pub endpoints: [Health; Endpoint::COUNT],
    /// The running strike, if any (see [`Strike`]).
    pub strike: Option<Strike>,
}

impl ChannelLive {
    /// The endpoint's health.
    pub(crate) fn endpoint(&self, e: Endpoint) -> &Health {
        &self.endpoints[e.index()]
    }

    /// The strike still counting at `at`: inside its window, and after the channel's last
    /// change (a success, a channel cooldown or an admin clear ends it).
    fn strike_at(&self, at: Instant) -> Option<Strike> {
        self.strike
            .filter(|s| s.until > at && self.health.updated.is_none_or(|u| s.at > u))
    }

    /// Overlays two views field by field: the later update of each scope wins.
    pub(crate) fn newer(a: &ChannelLive, b: &ChannelLive) -> ChannelLive {
        let pick = |x: &Health, y: &Health| if x.updated > y.updated { *x } else { *y };
        let mut out = ChannelLive {
            health: pick(&a.health, &b.health),
            endpoints: [Health::default(); Endpoint::COUNT],
            strike: match (a.strike, b.strike) {
                (Some(x), Some(y)) => Some(if x.at > y.at { x } else { y }),
                (x, y) => x.or(y),
            },
        };
        for (i, h) in out.endpoints.iter_mut().enumerate() {
            *h = pick(&a.endpoints[i], &b.endpoints[i]);
        }
        out
    }

    /// Heals every scope as of `now` (an admin clear): the newer `updated` wins over every
    /// other view.
    fn healed(now: Instant) -> ChannelLive {
        let h = Health {
            updated: Some(now),
            ..Health::default()
        };
        ChannelLive {
            health: h,
            endpoints: [h; Endpoint::COUNT],
            strike: None,
        }
    }
}

/// The published live state.
#[derive(Debug, Clone, Default)]
pub struct Live {
    /// Catalog generation these indices belong to.
    pub generation: u64,
    /// Channel facts, indexed like `Snapshot::channels`.
    pub(crate) channels: Box<[ChannelLive]>,
    /// Entry facts, indexed like `Catalog::entries`.
    pub entries: Box<[EntryLive]>,
}

impl Live {
    /// Fresh state for a catalog.
    pub(crate) fn new(generation: u64, channels: usize, entries: usize) -> Live {
        Live {
            generation,
            channels: vec![ChannelLive::default(); channels].into(),
            entries: vec![EntryLive::default(); entries].into(),
        }
    }
}

/// One attempt's outcome, from a worker, with the payload `U` the worker sends along (the
/// request's usage record: `usage::Report`; live state never looks at it).
#[derive(Debug, Clone)]
pub(crate) struct Report<U> {
    /// Catalog generation of the indices.
    pub generation: u64,
    /// Channel index.
    pub channel: u32,
    /// Entry index.
    pub entry: u32,
    /// When the attempt started.
    pub started: Instant,
    /// When the outcome was observed.
    pub at: Instant,
    /// Time from `at` to the next UTC midnight, as the observer read it (402 cooldowns).
    pub until_midnight: Duration,
    /// Health meaning, if any.
    pub outcome: Option<Judged>,
    /// Whole-exchange latency.
    pub latency_ms: Option<f32>,
    /// Time to the response head.
    pub ttft_ms: Option<f32>,
    /// How the attempt failed, as a metric label (`head_timeout`, `status_5xx` …), if it did.
    pub failure: Option<&'static str>,
    /// The request's usage record (on usage-only reports: generation 0, no outcome). Taken
    /// by the control thread before the generation check, so a rebuild never loses one.
    pub usage: Option<Box<U>>,
}

/// An outcome with its scope and the request's endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Judged {
    /// What happened.
    pub outcome: Outcome,
    /// What it is about (a success heals the channel, the model and the endpoint).
    pub scope: Scope,
    /// The endpoint the request called.
    pub endpoint: Endpoint,
}

/// Applies one judged outcome to a channel and one of its entries (the transition both
/// workers and the control thread use). A transient failure of a model escalates to the
/// channel when another model of the channel failed within its window.
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_outcome(
    channel: &mut ChannelLive,
    entry_index: u32,
    entry: &mut Health,
    j: Judged,
    started: Instant,
    at: Instant,
    policy: &CooldownPolicy,
    until_midnight: Duration,
) {
    let o = j.outcome;
    match (o, j.scope) {
        (Outcome::Success, _) => {
            channel.health.apply(o, started, at, policy, until_midnight);
            channel.endpoints[j.endpoint.index()].apply(o, started, at, policy, until_midnight);
            entry.apply(o, started, at, policy, until_midnight);
        }
        (_, Scope::Channel) => channel.health.apply(o, started, at, policy, until_midnight),
        (_, Scope::Endpoint) => {
            channel.endpoints[j.endpoint.index()].apply(o, started, at, policy, until_midnight)
        }
        (_, Scope::Model) => {
            entry.apply(o, started, at, policy, until_midnight);
            if o != Outcome::Transient {
                return;
            }
            match channel.strike_at(at) {
                Some(s) if s.entry != entry_index => {
                    channel.health.apply(o, started, at, policy, until_midnight);
                    channel.strike = None;
                }
                _ => {
                    channel.strike = Some(Strike {
                        entry: entry_index,
                        at,
                        until: entry.until.unwrap_or(at),
                    })
                }
            }
        }
    }
}

/// The control thread's mutable copy of the live state.
#[derive(Debug)]
pub(crate) struct Merger {
    live: Live,
    /// Channel index of each entry (for clearing a channel's model cooldowns).
    owners: Box<[u32]>,
    policy: CooldownPolicy,
    /// A health state changed since the last publication (publish now).
    pub health_changed: bool,
    /// A health state changed here (a report, a probe, an admin clear; not an adoption from
    /// the fleet) since the fleet last took note (`cluster`).
    pub changed_here: bool,
    /// Only averages changed (publish on the next tick).
    pub stats_changed: bool,
}

impl Merger {
    /// A merger over `live`; `owners[i]` is the channel of entry `i`.
    pub(crate) fn new(live: Live, owners: Box<[u32]>, policy: CooldownPolicy) -> Merger {
        Merger {
            live,
            owners,
            policy,
            health_changed: false,
            changed_here: false,
            stats_changed: false,
        }
    }

    /// Merges one report.
    pub(crate) fn apply<U>(&mut self, r: &Report<U>) {
        if r.generation != self.live.generation {
            return;
        }
        let (Some(ch), Some(en)) = (
            self.live.channels.get_mut(r.channel as usize),
            self.live.entries.get_mut(r.entry as usize),
        ) else {
            return;
        };
        if let Some(j) = r.outcome {
            let before = (*ch, en.health);
            apply_outcome(
                ch,
                r.entry,
                &mut en.health,
                j,
                r.started,
                r.at,
                &self.policy,
                r.until_midnight,
            );
            let after = (*ch, en.health);
            // A success on an already healthy pair only refreshes `updated`: not worth a
            // publication of its own (nor is a new strike: it only matters to the next report).
            let moved = |c: &ChannelLive, e: &Health| {
                let mut key = [(None, 0); Endpoint::COUNT + 2];
                key[0] = (c.health.until, c.health.failures);
                key[1] = (e.until, e.failures);
                for (k, h) in key[2..].iter_mut().zip(c.endpoints.iter()) {
                    *k = (h.until, h.failures);
                }
                key
            };
            self.health_changed |= moved(&before.0, &before.1) != moved(&after.0, &after.1);
            // For the fleet, only what moves a cooldown matters (another failure of a scope
            // already out only counts up).
            let cooldowns = |c: &ChannelLive, e: &Health| {
                let mut key = [(None, health::Why::Healthy); Endpoint::COUNT + 2];
                key[0] = (c.health.until, c.health.why);
                key[1] = (e.until, e.why);
                for (k, h) in key[2..].iter_mut().zip(c.endpoints.iter()) {
                    *k = (h.until, h.why);
                }
                key
            };
            self.changed_here |= cooldowns(&before.0, &before.1) != cooldowns(&after.0, &after.1);
            let ok = matches!(j.outcome, Outcome::Success);
            en.success = en.success * (1.0 - SUCCESS_ALPHA) + if ok { SUCCESS_ALPHA } else { 0.0 };
            self.stats_changed = true;
        }
        if let Some(ms) = r.latency_ms {
            en.latency_ms = ewma(en.latency_ms, ms);
            en.samples = en.samples.saturating_add(1);
            self.stats_changed = true;
        }
        if let Some(ms) = r.ttft_ms {
            en.ttft_ms = ewma(en.ttft_ms, ms);
            self.stats_changed = true;
        }
    }

    /// Applies a control-plane observation (discovery or a health probe) to a channel only:
    /// a probe says nothing about any one model.
    ///
    /// A model list cannot say a quota or a credit is back, so it never ends a 429 or 402
    /// cooldown; and a probe that merely timed out never replaces a stronger reason (401/403,
    /// 402, 429) whose cooldown is still running — the channel keeps being probed as such.
    pub(crate) fn apply_channel(
        &mut self,
        channel: usize,
        outcome: Outcome,
        started: Instant,
        at: Instant,
    ) {
        use health::Why;
        let Some(ch) = self.live.channels.get_mut(channel).map(|c| &mut c.health) else {
            return;
        };
        let cooling = ch.until.is_some_and(|u| u > at);
        match outcome {
            Outcome::Success if cooling && matches!(ch.why, Why::RateLimited | Why::NoCredit) => {
                return;
            }
            Outcome::Transient
                if cooling && matches!(ch.why, Why::Auth | Why::NoCredit | Why::RateLimited) =>
            {
                return;
            }
            _ => {}
        }
        let before = *ch;
        ch.apply(outcome, started, at, &self.policy, Duration::ZERO);
        if (before.until, before.failures) != (ch.until, ch.failures) {
            self.health_changed = true;
            self.changed_here = true;
        }
    }

    /// Clears the cooldowns of one channel — every scope: its own, its endpoints', its
    /// models', and its strike — (`Some(i)`) or of everything, as of `now`: the newer
    /// `updated` wins over every worker's local view.
    pub(crate) fn clear(&mut self, channel: Option<usize>, now: Instant) -> usize {
        let healed = Health {
            updated: Some(now),
            ..Health::default()
        };
        let bad = |h: &Health| usize::from(h.failures > 0 || h.until.is_some());
        let mut cleared = 0;
        for (i, c) in self.live.channels.iter_mut().enumerate() {
            if channel.is_none_or(|x| x == i) {
                cleared += bad(&c.health) + c.endpoints.iter().map(bad).sum::<usize>();
                *c = ChannelLive::healed(now);
            }
        }
        for (e, owner) in self.live.entries.iter_mut().zip(self.owners.iter()) {
            if channel.is_none_or(|c| c == *owner as usize) {
                cleared += bad(&e.health);
                e.health = healed;
            }
        }
        self.health_changed = true;
        self.changed_here = true;
        cleared
    }

    #[cfg(feature = "cluster")]
    /// Adopts a channel health state decided elsewhere (another instance of the fleet) when
    /// it is newer than the merged one; true when it was.
    pub(crate) fn adopt_channel(&mut self, channel: usize, h: Health) -> bool {
        match self.live.channels.get_mut(channel) {
            Some(c) if h.updated > c.health.updated => {
                c.health = h;
                self.health_changed = true;
                true
            }
            _ => false,
        }
    }

    #[cfg(feature = "cluster")]
    /// Adopts a (channel, endpoint) health state decided elsewhere when it is newer; true
    /// when it was.
    pub(crate) fn adopt_endpoint(&mut self, channel: usize, endpoint: Endpoint, h: Health) -> bool {
        match self.live.channels.get_mut(channel) {
            Some(c) if h.updated > c.endpoint(endpoint).updated => {
                c.endpoints[endpoint.index()] = h;
                self.health_changed = true;
                true
            }
            _ => false,
        }
    }

    #[cfg(feature = "cluster")]
    /// Adopts an entry health state decided elsewhere when it is newer; true when it was.
    pub(crate) fn adopt_entry(&mut self, entry: usize, h: Health) -> bool {
        match self.live.entries.get_mut(entry) {
            Some(e) if h.updated > e.health.updated => {
                e.health = h;
                self.health_changed = true;
                true
            }
            _ => false,
        }
    }

    /// The merged (possibly unpublished) state.
    pub(crate) fn view(&self) -> &Live {
        &self.live
    }

    /// The state to publish; clears the change flags.
    pub(crate) fn publish(&mut self) -> Arc<Live> {
        self.health_changed = false;
        self.stats_changed = false;
        Arc::new(self.live.clone())
    }

    #[cfg(feature = "cluster")]
    /// The generation merged.
    pub(crate) fn generation(&self) -> u64 {
        self.live.generation
    }
}

fn ewma(old: f32, sample: f32) -> f32 {
    if old.is_nan() {
        sample
    } else {
        old * (1.0 - LATENCY_ALPHA) + sample * LATENCY_ALPHA
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CooldownPolicy {
        CooldownPolicy {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            retry_after_max: Duration::from_secs(30),
            auth: Duration::from_secs(3600),
            model_missing: Duration::from_secs(600),
        }
    }

    fn report(outcome: Option<Outcome>, latency: Option<f32>) -> Report<()> {
        let scope = match outcome {
            Some(Outcome::ModelMissing | Outcome::Transient) => Scope::Model,
            _ => Scope::Channel,
        };
        let outcome = outcome.map(|outcome| Judged {
            outcome,
            scope,
            endpoint: Endpoint::Chat,
        });
        Report {
            generation: 1,
            channel: 0,
            entry: 1,
            started: Instant::now(),
            at: Instant::now(),
            until_midnight: Duration::ZERO,
            outcome,
            latency_ms: latency,
            ttft_ms: None,
            failure: None,
            usage: None,
        }
    }

    #[test]
    fn a_model_list_never_ends_a_quota_cooldown_nor_masks_a_key_rejection() {
        use health::Why;
        let t0 = Instant::now();
        let mut m = Merger::new(Live::new(1, 2, 0), Box::new([]), policy());
        // channel 0 out of credit, channel 1 out on 401
        m.live.channels[0].health.apply(
            Outcome::NoCredit,
            t0,
            t0,
            &policy(),
            Duration::from_secs(600),
        );
        m.live.channels[1]
            .health
            .apply(Outcome::Auth, t0, t0, &policy(), Duration::ZERO);
        let later = t0 + Duration::from_millis(10);
        m.apply_channel(0, Outcome::Success, later, later);
        assert_eq!(m.view().channels[0].health.why, Why::NoCredit);
        assert!(m.view().channels[0].health.until.is_some_and(|u| u > later));
        // a probe timeout keeps the 401 reason, so the channel keeps being probed for a fix
        m.apply_channel(1, Outcome::Transient, later, later);
        assert_eq!(m.view().channels[1].health.why, Why::Auth);
        // and a successful probe (the key works again) heals it
        m.apply_channel(1, Outcome::Success, later, later);
        assert_eq!(m.view().channels[1].health.failures, 0);
        assert!(m.health_changed);
    }

    #[test]
    fn merges_health_and_averages() {
        let mut m = Merger::new(Live::new(1, 1, 2), vec![0, 0].into(), policy());
        m.apply(&report(Some(Outcome::Transient), None));
        assert!(m.health_changed);
        let live = m.publish();
        assert_eq!(live.entries[1].health.failures, 1, "a 5xx is the model's");
        assert_eq!(live.channels[0].health.failures, 0);
        assert!(live.entries[1].success < 1.0);
        m.apply(&report(Some(Outcome::Success), Some(100.0)));
        m.apply(&report(None, Some(200.0)));
        let live = m.publish();
        assert_eq!(live.entries[1].health.failures, 0, "healed");
        assert!((live.entries[1].latency_ms - 120.0).abs() < 1e-3);
        // model-level outcomes stay on the entry
        m.apply(&report(Some(Outcome::ModelMissing), None));
        let live = m.publish();
        assert_eq!(live.channels[0].health.failures, 0);
        assert_eq!(live.entries[1].health.failures, 1);
        // reports for another catalog generation are ignored
        let mut stale = report(Some(Outcome::Transient), None);
        stale.generation = 7;
        m.apply(&stale);
        assert!(!m.health_changed);
    }

    #[test]
    fn a_clear_heals_every_scope_and_ends_the_strike() {
        let mut m = Merger::new(Live::new(1, 1, 2), vec![0, 0].into(), policy());
        let mut r = report(Some(Outcome::Transient), None);
        r.entry = 0;
        m.apply(&r);
        assert!(m.view().channels[0].strike.is_some());
        let mut lacks = report(None, None);
        lacks.outcome = Some(Judged {
            outcome: Outcome::Unsupported,
            scope: Scope::Endpoint,
            endpoint: Endpoint::Responses,
        });
        m.apply(&lacks);
        assert_eq!(
            m.view().channels[0].endpoint(Endpoint::Responses).failures,
            1
        );
        assert_eq!(
            m.view().channels[0].health.failures,
            0,
            "chat is unaffected"
        );
        assert_eq!(m.clear(None, Instant::now()), 2);
        let c = m.view().channels[0];
        assert_eq!(c.endpoint(Endpoint::Responses).failures, 0);
        assert_eq!(c.strike, None);
        // so a second model failing now is a first strike, not an escalation
        m.apply(&report(Some(Outcome::Transient), None));
        assert_eq!(m.view().channels[0].health.failures, 0);
    }
}
