//! Orders the channels that may serve one request: the candidate list `proxy` walks on failover.
//!
//! This is the core issue's routing: exact model ids and aliases, enabled channels with resolved
//! addresses, highest `priority` tier first, and a per-worker rotation inside a tier so tied
//! channels share the load. Scoring strategies, tag queries, capability filters and cooldowns
//! extend this module without changing its contract.
//!
//! Invariants: pure and synchronous: no I/O, no clock, no logging; the caller passes the
//! rotation counter. Never allocates when `out` has capacity.
//! Not here: sending anything (`proxy`), building the index (`catalog`).

use crate::error::{Error, Kind};
use crate::snapshot::Snapshot;

/// One planned attempt: a channel index and the upstream model id to send.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'s> {
    /// Index into `Snapshot::channels`.
    pub channel: usize,
    /// Model id the upstream expects.
    pub model: &'s str,
}

/// Fills `out` with the candidates for `model` in the order to try them. `rotation` spreads
/// requests over channels of equal priority.
pub fn plan<'s>(
    snap: &'s Snapshot,
    model: &str,
    rotation: u64,
    out: &mut Vec<Attempt<'s>>,
) -> Result<(), Error> {
    out.clear();
    let Some(cands) = snap.catalog.lookup(model) else {
        return Err(not_found(snap, model));
    };
    for c in cands {
        let ch = &snap.channels[c.channel as usize];
        if ch.enabled && !ch.endpoint.addrs.is_empty() {
            out.push(Attempt {
                channel: c.channel as usize,
                model: &c.upstream_model,
            });
        }
    }
    if out.is_empty() {
        return Err(unusable(snap, model, cands));
    }
    // Stable sort keeps config order inside a tier; then rotate each tier.
    out.sort_by_key(|a| std::cmp::Reverse(snap.channels[a.channel].priority));
    let mut start = 0;
    while start < out.len() {
        let prio = snap.channels[out[start].channel].priority;
        let end = out[start..]
            .iter()
            .position(|a| snap.channels[a.channel].priority != prio)
            .map_or(out.len(), |n| start + n);
        let tier = &mut out[start..end];
        if tier.len() > 1 {
            tier.rotate_left((rotation % tier.len() as u64) as usize);
        }
        start = end;
    }
    out.truncate(snap.routing.max_attempts);
    Ok(())
}

fn not_found(snap: &Snapshot, model: &str) -> Error {
    let names = snap.catalog.names();
    let shown = crate::error::truncate(model, 200);
    let mut msg = format!("The model `{shown}` does not exist or no channel serves it.");
    let refs: Vec<&str> = names.iter().map(|n| &**n).collect();
    if names.len() <= 20_000
        && let Some(close) = crate::config::closest(model, &refs)
    {
        msg.push_str(&format!(" Did you mean `{close}`?"));
    }
    if names.is_empty() {
        msg.push_str(" No channel serves any model: check the config's channels.");
    } else {
        let list: Vec<&str> = refs.iter().take(10).copied().collect();
        msg.push_str(&format!(" Available: {}", list.join(", ")));
        if names.len() > 10 {
            msg.push_str(&format!(
                " … ({} in all; GET /v1/models lists them)",
                names.len()
            ));
        }
        msg.push('.');
    }
    Error::new(404, Kind::InvalidRequest, "model_not_found", msg)
}

fn unusable(snap: &Snapshot, model: &str, cands: &[crate::catalog::Candidate]) -> Error {
    let reasons: Vec<String> = cands
        .iter()
        .map(|c| {
            let ch = &snap.channels[c.channel as usize];
            let why = if !ch.enabled {
                "disabled"
            } else {
                "upstream address not resolved yet"
            };
            format!("{}: {why}", ch.id)
        })
        .collect();
    Error::new(
        503,
        Kind::Server,
        "no_usable_channel",
        format!(
            "No channel can serve `{}` right now ({}).",
            crate::error::truncate(model, 200),
            reasons.join("; ")
        ),
    )
}
