//! `GET /admin/cluster`: this instance's view of the fleet (`[cluster]`, the `cluster` cargo
//! feature): its id, its Redis (the password shown as `***`), round times, rate shares and
//! quota grants.

use serde::{Serialize, Serializer};

use super::views::rounded;
use crate::error::Error;

/// A JSON object whose member names come from data (counter names), in the order given.
#[derive(Debug)]
struct Members<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Members<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
    }
}

/// This instance's share of one fleet-wide rate.
#[derive(Debug, Serialize)]
struct ShareView {
    share: f64,
    demand: f64,
    demand_others: f64,
}

/// A limited counter's grant.
#[derive(Debug, Serialize)]
struct GrantView {
    held: f64,
    granted_fleet: f64,
}

/// `GET /admin/cluster`.
#[derive(Debug, Serialize)]
pub(super) struct ClusterView<'a> {
    instance_id: &'a str,
    redis: String,
    prefix: &'a str,
    sync_interval_ms: u64,
    connected: bool,
    instances: &'a [String],
    rounds_ok: u64,
    rounds_failed: u64,
    last_round_ms: Option<f64>,
    last_error: Option<&'a str>,
    rate_shares: Members<ShareView>,
    grants: Members<GrantView>,
}

/// This instance's view of the fleet (`[cluster]`); 404 without one.
pub(super) fn cluster(f: Option<&crate::cluster::Fleet>) -> Result<ClusterView<'_>, Error> {
    let Some(f) = f else {
        return Err(super::not_found(
            "no [cluster] section: this instance runs alone",
        ));
    };
    Ok(ClusterView {
        instance_id: &f.cfg.instance_id,
        redis: f.cfg.redis_shown(),
        prefix: &f.cfg.prefix,
        sync_interval_ms: f.cfg.sync_interval.as_millis() as u64,
        connected: f.connected,
        instances: &f.instances,
        rounds_ok: f.rounds.0,
        rounds_failed: f.rounds.1,
        last_round_ms: f.last_rtt.map(|d| rounded(d.as_secs_f64() * 1000.0)),
        last_error: f.last_error.as_deref(),
        rate_shares: Members(
            f.shares
                .iter()
                .map(|sh| {
                    let view = ShareView {
                        share: rounded(sh.share),
                        demand: rounded(sh.mine),
                        demand_others: rounded(sh.theirs),
                    };
                    (sh.field.clone(), view)
                })
                .collect(),
        ),
        grants: Members(
            f.grants()
                .into_iter()
                .map(|(counter, held, total)| {
                    let view = GrantView {
                        held,
                        granted_fleet: total,
                    };
                    (counter, view)
                })
                .collect(),
        ),
    })
}
