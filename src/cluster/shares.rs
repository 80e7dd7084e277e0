//! Rate shares: this instance's demand per limited client key and channel goes out each round;
//! its share of each fleet-wide rate is its demand over everyone's (each plus a floor), written
//! to the `ShareBoard` the workers already split their buckets by. Without Redis for
//! [`SHARES_GRACE`], every instance enforces the whole rate again.
//!
//! Invariants: no request waits on Redis: workers read their share from the board; an idle
//! instance keeps [`DEMAND_FLOOR`] of demand, so its first request is not refused while the
//! shares catch up. Not here: the limiters (`limits`), Redis I/O (`helper`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{Fleet, Sent};
use crate::limits::{ShareBoard, TRACKED_KEYS, channel_slot, key_slot};
use crate::snapshot::Snapshot;

/// Demand floor per instance, requests/s: an idle instance keeps a small share so the first
/// request that lands on it is not refused while the shares catch up.
const DEMAND_FLOOR: f64 = 0.25;

/// How long Redis may be unreachable before rate shares fall back to the whole limit.
const SHARES_GRACE: Duration = Duration::from_secs(2);

/// This instance's share of one fleet-wide rate, as of the last round.
#[derive(Debug, Clone)]
pub(crate) struct Share {
    /// `key|<name>` or `ch|<id>`.
    pub(crate) field: String,
    /// This instance's demand, requests/s.
    pub(crate) mine: f64,
    /// The other instances' demand, requests/s.
    pub(crate) theirs: f64,
    /// The share this instance runs at.
    pub(crate) share: f64,
}

impl Fleet {
    /// This instance's demand per limited key and channel, requests/s.
    pub(super) fn demand_out(
        &self,
        current: &Snapshot,
        shares: &ShareBoard,
        sent: &mut Sent,
    ) -> Vec<(String, f64)> {
        let mut out = Vec::new();
        for i in 0..current.clients.len() as u32 {
            let Some(c) = current.clients.get(i) else {
                continue;
            };
            let slot = key_slot(i as usize);
            if c.limits.any() && slot < TRACKED_KEYS {
                let field = format!("key|{}", c.name);
                let d = f64::from(shares.demand(slot));
                sent.demand.push((slot, field.clone(), d));
                out.push((field, d));
            }
        }
        for (i, ch) in current.channels.iter().enumerate() {
            let slot = channel_slot(i);
            if ch.rate.any() && slot < TRACKED_KEYS {
                let field = format!("ch|{}", ch.id);
                let d = f64::from(shares.demand(slot));
                sent.demand.push((slot, field.clone(), d));
                out.push((field, d));
            }
        }
        out
    }

    /// Sets this instance's share of every limited rate from the demand a round carried and
    /// the others' demand it brought back.
    pub(super) fn apply_shares(
        &mut self,
        sent: &[(usize, String, f64)],
        theirs: &HashMap<String, f64>,
        shares: &ShareBoard,
    ) {
        let others = self.instances.len().saturating_sub(1) as f64;
        self.shares.clear();
        for (slot, field, mine) in sent {
            let theirs = theirs.get(field).copied().unwrap_or(0.0);
            let share =
                (mine + DEMAND_FLOOR) / (mine + DEMAND_FLOOR + theirs + others * DEMAND_FLOOR);
            shares.set_fleet(*slot, share as f32);
            self.shares.push(Share {
                field: field.clone(),
                mine: *mine,
                theirs,
                share,
            });
        }
    }

    /// Local-only after [`SHARES_GRACE`] without Redis: each instance enforces the whole rate
    /// until Redis is back.
    pub(super) fn shares_alone(&mut self, shares: &ShareBoard, now: Instant) {
        if !self.connected
            && !self.shares_local
            && self.down_since.is_some_and(|t| now - t >= SHARES_GRACE)
        {
            for slot in 0..TRACKED_KEYS {
                shares.set_fleet(slot, 1.0);
            }
            self.shares_local = true;
        }
    }
}
