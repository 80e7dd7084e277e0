//! The health exchange of a round: which cooldowns and recoveries of this instance go out
//! (changed since last exchanged, or all of them on a new connection), and which of the fleet's
//! are adopted (newer by the later-`updated`-wins rule), at every scope — channel, (channel,
//! endpoint), (channel, model) — indexed by channel id and model so a catalog rebuild keeps
//! them.
//!
//! Invariants: only changes decided here go out (adopted ones were the fleet's already); the
//! fleet's changes wait while a rebuild has the merger ahead of the published catalog, and at
//! most `schema::LOG_CAP` of them wait. Not here: Redis I/O (`helper`), the health rules
//! (`live::health`).

use std::collections::HashMap;
use std::sync::Arc;

use super::{Fleet, Sent, schema};
use crate::live::Merger;
use crate::live::health::Health;
use crate::presets::Endpoint;
use crate::snapshot::Snapshot;
use schema::{Clock, Target};

/// Which exchanged state a health value is, by index into the live state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Slot {
    Channel(usize),
    Endpoint(usize, Endpoint),
    Entry(usize),
}

/// This instance's health view as last exchanged with the fleet, indexed like the live state.
#[derive(Debug, Default)]
pub(super) struct Synced {
    pub(super) snap: Option<Arc<Snapshot>>,
    pub(super) channels: Vec<Health>,
    pub(super) endpoints: Vec<[Health; Endpoint::COUNT]>,
    pub(super) entries: Vec<Health>,
    pub(super) channel_ix: HashMap<Box<str>, usize>,
    pub(super) entry_ix: HashMap<(Box<str>, Box<str>), usize>,
}

impl Fleet {
    /// Health states that changed here since they were last exchanged.
    pub(super) fn health_out(
        &mut self,
        merger: &Merger,
        current: &Arc<Snapshot>,
        clock: &Clock,
        sent: &mut Sent,
    ) -> Vec<(String, String, bool)> {
        let live = merger.view();
        if live.generation != current.catalog.generation {
            return Vec::new();
        }
        self.follow(current, live);
        let all = std::mem::take(&mut self.push_all_health);
        let mut out = Vec::new();
        let me = self.cfg.instance_id.as_str();
        let differs =
            |a: &Health, b: &Health| (a.until, a.failures, a.why) != (b.until, b.failures, b.why);
        let unhealthy = |h: &Health| h.failures > 0 || h.until.is_some();
        for (i, c) in live.channels.iter().enumerate() {
            let id = &*current.channels[i].id;
            let h = &c.health;
            if differs(h, &self.synced.channels[i]) || (all && unhealthy(h)) {
                let f = schema::health_field(Target::Channel(id));
                out.push((f, schema::encode_health(h, clock, me), !unhealthy(h)));
                sent.health.push((Slot::Channel(i), *h));
            }
            for e in Endpoint::ALL {
                let h = c.endpoint(e);
                if differs(h, &self.synced.endpoints[i][e.index()]) || (all && unhealthy(h)) {
                    let f = schema::health_field(Target::Endpoint(id, e));
                    out.push((f, schema::encode_health(h, clock, me), !unhealthy(h)));
                    sent.health.push((Slot::Endpoint(i, e), *h));
                }
            }
        }
        for (i, e) in live.entries.iter().enumerate() {
            let h = &e.health;
            if differs(h, &self.synced.entries[i]) || (all && unhealthy(h)) {
                let entry = &current.catalog.entries[i];
                let f = schema::health_field(Target::Model(
                    &current.channels[entry.channel as usize].id,
                    &entry.model,
                ));
                out.push((f, schema::encode_health(h, clock, me), !unhealthy(h)));
                sent.health.push((Slot::Entry(i), *h));
            }
        }
        out
    }

    /// Re-indexes the exchanged view for a new catalog generation, by channel id and model.
    fn follow(&mut self, current: &Arc<Snapshot>, live: &crate::live::Live) {
        let same = self
            .synced
            .snap
            .as_ref()
            .is_some_and(|s| s.catalog.generation == live.generation);
        if same {
            return;
        }
        let old = std::mem::take(&mut self.synced);
        let channel_ix: HashMap<Box<str>, usize> = current
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (c.id.clone(), i))
            .collect();
        let entry_ix: HashMap<(Box<str>, Box<str>), usize> = current
            .catalog
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                (
                    (
                        current.channels[e.channel as usize].id.clone(),
                        e.model.clone(),
                    ),
                    i,
                )
            })
            .collect();
        let mut channels = vec![Health::default(); live.channels.len()];
        let mut endpoints = vec![[Health::default(); Endpoint::COUNT]; live.channels.len()];
        let mut entries = vec![Health::default(); live.entries.len()];
        for (id, &j) in &old.channel_ix {
            if let Some(&i) = channel_ix.get(id)
                && let Some(h) = old.channels.get(j)
                && i < channels.len()
            {
                channels[i] = *h;
                endpoints[i] = old.endpoints[j];
            }
        }
        for (key, &j) in &old.entry_ix {
            if let Some(&i) = entry_ix.get(key)
                && let Some(h) = old.entries.get(j)
                && i < entries.len()
            {
                entries[i] = *h;
            }
        }
        self.synced = Synced {
            snap: Some(current.clone()),
            channels,
            endpoints,
            entries,
            channel_ix,
            entry_ix,
        };
    }

    /// Records the health states a successful round carried as exchanged (unless the catalog
    /// changed since: the next round compares against the re-indexed view).
    pub(super) fn record_exchanged(&mut self, sent: &[(Slot, Health)], merger: &Merger) {
        let same_generation = self
            .synced
            .snap
            .as_ref()
            .is_some_and(|s| s.catalog.generation == merger.generation());
        if same_generation {
            for (slot, h) in sent {
                let s = match *slot {
                    Slot::Channel(i) => self.synced.channels.get_mut(i),
                    Slot::Endpoint(i, e) => {
                        self.synced.endpoints.get_mut(i).map(|x| &mut x[e.index()])
                    }
                    Slot::Entry(i) => self.synced.entries.get_mut(i),
                };
                if let Some(s) = s {
                    *s = *h;
                }
            }
        }
    }

    /// Queues the fleet's health changes a round brought (on joining, only running cooldowns)
    /// and adopts what it can.
    pub(super) fn take_fleet_health(
        &mut self,
        pulled: &[(String, String)],
        fresh: bool,
        merger: &mut Merger,
        current: &Arc<Snapshot>,
    ) {
        let clock = Clock::now();
        for (f, v) in pulled {
            // On joining (a fresh read of the whole table) only running cooldowns matter; an
            // expired one would put a channel half-open here for nothing.
            let running = schema::decode_health(v, &clock)
                .is_some_and(|(h, _)| h.until.is_some_and(|u| u > clock.at));
            if !fresh || running {
                self.pending_health.push((f.clone(), v.clone()));
            }
        }
        // Bounded: a catalog that never settles must not grow this without end (the oldest
        // changes go; a full read on the next connection would bring back what matters).
        let excess = self
            .pending_health
            .len()
            .saturating_sub(schema::LOG_CAP as usize);
        self.pending_health.drain(..excess);
        self.adopt(merger, current);
    }

    /// Adopts the fleet's health changes that are newer than what this instance knows. During
    /// a catalog rebuild (the merger ahead of the published catalog) they wait for the next turn.
    fn adopt(&mut self, merger: &mut Merger, current: &Arc<Snapshot>) {
        if self.pending_health.is_empty() || merger.generation() != current.catalog.generation {
            return;
        }
        self.follow(current, merger.view());
        let clock = Clock::now();
        for (f, v) in std::mem::take(&mut self.pending_health) {
            let (f, v) = (f.as_str(), v.as_str());
            let Some((h, who)) = schema::decode_health(v, &clock) else {
                continue;
            };
            if who == self.cfg.instance_id {
                continue;
            }
            match schema::parse_health_field(f) {
                Some(Target::Channel(c)) => {
                    if let Some(&i) = self.synced.channel_ix.get(c)
                        && merger.adopt_channel(i, h)
                    {
                        self.synced.channels[i] = h;
                        tracing::debug!(
                            channel = c,
                            from = who,
                            why = h.why.as_str(),
                            "cluster: adopted channel health"
                        );
                    }
                }
                Some(Target::Endpoint(c, e)) => {
                    if let Some(&i) = self.synced.channel_ix.get(c)
                        && merger.adopt_endpoint(i, e, h)
                    {
                        self.synced.endpoints[i][e.index()] = h;
                    }
                }
                Some(Target::Model(c, m)) => {
                    if let Some(&i) = self.synced.entry_ix.get(&(c.into(), m.into()))
                        && merger.adopt_entry(i, h)
                    {
                        self.synced.entries[i] = h;
                    }
                }
                None => {}
            }
        }
    }
}
