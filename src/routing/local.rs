//! The worker's own view of health and load, overlaid on the published live state: its
//! latest outcomes (applied at once, before the control thread republishes), half-open trials,
//! panic attempts, last use and in-flight counts per channel, and the weighted round-robin
//! state.
//!
//! Invariants: indexed like the snapshot's catalog of `generation`, and reset when the catalog
//! changes shape; an overlay never hides a newer published state (the later `updated` wins,
//! scope by scope). Touched only by its worker's thread.

use std::time::{Duration, Instant};

use crate::live::health::Health;
use crate::live::{ChannelLive, Judged, Live, apply_outcome};
use crate::snapshot::Snapshot;

/// The worker's own view (see the module doc).
#[derive(Debug, Default)]
pub struct Local {
    generation: u64,
    channels: Vec<ChannelLive>,
    entries: Vec<Health>,
    pub(super) trials: Vec<bool>,
    pub(super) last_used: Vec<Option<Instant>>,
    pub(super) in_flight: Vec<u32>,
    /// Panic attempts in flight per channel (capped by `panic_max_in_flight`).
    pub(super) panics: Vec<u32>,
    /// Smooth weighted round-robin "current weight" per channel.
    pub(super) swrr: Vec<f32>,
}

impl Local {
    /// Resets the view when the catalog changed shape.
    pub(crate) fn sync(&mut self, snap: &Snapshot) {
        let g = snap.catalog.generation;
        let (nc, ne) = (snap.channels.len(), snap.catalog.entries.len());
        if self.generation != g || self.channels.len() != nc || self.entries.len() != ne {
            *self = Local {
                generation: g,
                channels: vec![ChannelLive::default(); nc],
                entries: vec![Health::default(); ne],
                trials: vec![false; nc],
                last_used: vec![None; nc],
                in_flight: vec![0; nc],
                panics: vec![0; nc],
                swrr: vec![0.0; nc],
            };
        }
    }

    pub(super) fn channel_live(&self, live: &Live, c: usize) -> ChannelLive {
        match (self.channels.get(c), live.channels.get(c)) {
            (Some(a), Some(b)) => ChannelLive::newer(a, b),
            (Some(x), None) | (None, Some(x)) => *x,
            (None, None) => ChannelLive::default(),
        }
    }

    pub(super) fn entry_health(&self, live: &Live, e: usize) -> Health {
        newer(self.entries.get(e), live.entries.get(e).map(|x| &x.health))
    }

    /// Whether `endpoint` of channel `c` may be tried at `now` (not cooling after the provider
    /// was found not to serve it).
    pub(crate) fn endpoint_open(
        &self,
        snap: &Snapshot,
        c: u32,
        endpoint: crate::presets::Endpoint,
        now: Instant,
    ) -> bool {
        let live = self.channel_live(&snap.live, c as usize);
        !matches!(
            live.endpoint(endpoint).state(now),
            crate::live::health::State::Cooling(_)
        )
    }

    /// Applies an outcome at once (the control thread will merge the same report).
    pub(crate) fn record(
        &mut self,
        snap: &Snapshot,
        entry: u32,
        outcome: Judged,
        started: Instant,
        at: Instant,
        until_midnight: Duration,
    ) {
        // An attempt that began on an older catalog says nothing about this one's indices.
        if snap.catalog.generation != self.generation {
            return;
        }
        let e = entry as usize;
        let Some(c) = snap.catalog.entries.get(e).map(|x| x.channel as usize) else {
            return;
        };
        let mut ch = self.channel_live(&snap.live, c);
        let mut en = self.entry_health(&snap.live, e);
        apply_outcome(
            &mut ch,
            entry,
            &mut en,
            outcome,
            started,
            at,
            &snap.routing.cooldown,
            until_midnight,
        );
        self.channels[c] = ch;
        self.entries[e] = en;
    }

    /// An attempt on `channel` of catalog `generation` starts.
    pub(crate) fn begin(&mut self, generation: u64, channel: u32, kind: Attempt, now: Instant) {
        if generation != self.generation {
            return;
        }
        let c = channel as usize;
        if let Some(n) = self.in_flight.get_mut(c) {
            *n += 1;
        }
        if let Some(t) = self.last_used.get_mut(c) {
            *t = Some(now);
        }
        match kind {
            Attempt::Trial => {
                if let Some(t) = self.trials.get_mut(c) {
                    *t = true;
                }
            }
            Attempt::Panic => {
                if let Some(n) = self.panics.get_mut(c) {
                    *n += 1;
                }
            }
            Attempt::Normal => {}
        }
    }

    /// An attempt on `channel` of catalog `generation` ended.
    pub(crate) fn end(&mut self, generation: u64, channel: u32, kind: Attempt) {
        if generation != self.generation {
            return;
        }
        let c = channel as usize;
        if let Some(n) = self.in_flight.get_mut(c) {
            *n = n.saturating_sub(1);
        }
        match kind {
            Attempt::Trial => {
                if let Some(t) = self.trials.get_mut(c) {
                    *t = false;
                }
            }
            Attempt::Panic => {
                if let Some(n) = self.panics.get_mut(c) {
                    *n = n.saturating_sub(1);
                }
            }
            Attempt::Normal => {}
        }
    }
}

/// What kind of attempt holds a channel slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// In rotation.
    Normal,
    /// The half-open trial of a channel, model or endpoint whose cooldown ended (one per
    /// worker).
    Trial,
    /// A panic attempt on a candidate out for a transient reason (capped per worker).
    Panic,
}

fn newer(a: Option<&Health>, b: Option<&Health>) -> Health {
    match (a, b) {
        (Some(a), Some(b)) => {
            if a.updated > b.updated {
                *a
            } else {
                *b
            }
        }
        (Some(x), None) | (None, Some(x)) => *x,
        (None, None) => Health::default(),
    }
}
