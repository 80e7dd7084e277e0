//! Usage totals per UTC day for `GET /admin/usage?scope=fleet`: this instance's totals per
//! group (total, channel, model, provider, key) and name, counted from usage records; what
//! changed since the last push goes out; a restarted instance reads its own totals back.
//!
//! Invariants: totals go out as absolute values (a repeated push is harmless); a failed round's
//! changes are marked again; yesterday's last changes still go out under yesterday's key.
//! Not here: the record format (`usage`), the usage files (`control::store`).

use std::collections::HashMap;
use std::time::Instant;

use super::helper::Writes;
use super::quota::Seen;
use super::{Fleet, schema};
use crate::usage::{Record, Totals};

/// Usage groups kept per day.
const GROUPS: [&str; 5] = ["total", "channel", "model", "provider", "key"];

/// A usage group (index into [`GROUPS`]) and a name in it.
pub(super) type Named = (u8, Box<str>);

/// Today's usage totals of this instance, per group and name, with what changed since the
/// last push.
#[derive(Debug, Default)]
pub(super) struct Usage {
    pub(super) day: u64,
    pub(super) groups: [HashMap<Box<str>, Totals>; 5],
    /// Per group, the names changed since the last push (looked up by `&str`: no allocation
    /// per record once a name is marked).
    pub(super) dirty: [std::collections::HashSet<Box<str>>; 5],
}

impl Usage {
    pub(super) fn touch(&mut self, g: u8, name: &str) -> &mut Totals {
        let dirty = &mut self.dirty[g as usize];
        if !dirty.contains(name) {
            dirty.insert(name.into());
        }
        let map = &mut self.groups[g as usize];
        if !map.contains_key(name) {
            map.insert(name.into(), Totals::default());
        }
        map.get_mut(name).expect("inserted above")
    }

    fn fields(&self, g: u8, name: &str) -> Vec<(String, f64)> {
        let t = self.groups[g as usize]
            .get(name)
            .cloned()
            .unwrap_or_default();
        let group = GROUPS[g as usize];
        t.metrics()
            .into_iter()
            .map(|(m, v)| (schema::usage_field(group, name, m), v))
            .collect()
    }

    /// The changed fields, taken (they go back with [`Usage::retake`] if the round fails).
    pub(super) fn take(&mut self) -> (Vec<(String, f64)>, Vec<Named>) {
        let names: Vec<Named> = self
            .dirty
            .iter_mut()
            .enumerate()
            .flat_map(|(g, d)| d.drain().map(move |n| (g as u8, n)))
            .collect();
        let fields = names.iter().flat_map(|(g, n)| self.fields(*g, n)).collect();
        (fields, names)
    }

    pub(super) fn retake(&mut self, names: Vec<Named>) {
        for (g, n) in names {
            self.dirty[g as usize].insert(n);
        }
    }

    pub(super) fn mark_all(&mut self) {
        let all: Vec<Named> = self
            .groups
            .iter()
            .enumerate()
            .flat_map(|(g, m)| m.keys().map(move |k| (g as u8, k.clone())))
            .collect();
        self.retake(all);
    }
}

impl Fleet {
    /// Counts one usage record into today's totals.
    pub(crate) fn count(&mut self, r: &Record) {
        let day = r.unix_ms / 86_400_000;
        if day < self.usage.day {
            return;
        }
        if day > self.usage.day {
            // Yesterday's last changes still go out, under yesterday's key.
            let (fields, _) = self.usage.take();
            self.leftover.push(Writes {
                day: crate::clock::day(self.usage.day * 86_400_000),
                quota: false,
                fields,
            });
            self.usage = Usage {
                day,
                ..Usage::default()
            };
        }
        let one = Totals::of(r);
        let add = |t: &mut Totals| t.add(&one);
        let now = Instant::now();
        self.seen.any = Some(now);
        if let Some(k) = &r.client {
            Seen::mark(&mut self.seen.keys, k, now);
        }
        if !r.channel().is_empty() {
            Seen::mark(&mut self.seen.channels, r.channel(), now);
        }
        add(self.usage.touch(0, ""));
        add(self.usage.touch(1, r.channel()));
        add(self.usage.touch(2, r.model()));
        add(self.usage.touch(3, r.provider()));
        if let Some(k) = &r.client {
            add(self.usage.touch(4, k));
        }
    }

    pub(super) fn restore_usage(&mut self, field: &str, v: f64) {
        let Some((group, name, metric)) = schema::parse_usage_field(field) else {
            return;
        };
        let Some(g) = GROUPS.iter().position(|x| *x == group) else {
            return;
        };
        self.usage
            .touch(g as u8, name)
            .merge_metric(metric, v, f64::max);
    }
}
