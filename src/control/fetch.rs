//! Discovery rounds and health probes: both `GET` a channel's model list, with bounded
//! concurrency and a per-channel timeout, and turn the answer into catalog data (discovery)
//! and channel health (both).
//!
//! * Discovery: every enabled channel with `discover = true`, at start and every
//!   `[discovery] interval` (±10 % jitter). A list that differs from the known one is saved to
//!   the state dir and triggers one coalesced catalog rebuild. A failed fetch, or an empty
//!   list, keeps what was known (cache or config).
//! * Probes, every `[health] interval`: channels cooling down after failures whose cooldown
//!   ended (half-open), channels out on 401/403 (every round: the key may have been fixed),
//!   and healthy channels with no success for an interval (catches a revoked key or a dead
//!   host before a user request does). Rate-limited and out-of-credit channels are left to
//!   their cooldowns: a model list cannot tell whether they recovered.
//!
//! Outcomes: 2xx heals (if the fetch started after the last failure, and never a running 429
//! or 402 cooldown), 401/403 is `Auth`, connect errors, timeouts and 5xx are `Transient`
//! (probes only: a discovery failure is not a reason to stop routing, and a timeout never
//! replaces a stronger running reason); other statuses (404 for a provider without a model
//! list, 429) change nothing. Rounds wait for the first DNS round; a channel without
//! addresses is skipped, not failed. A discovery round that missed a channel is retried
//! within [`RETRY_AFTER_FAILURE`].
//!
//! Invariants: channels that share an endpoint and credentials are fetched once. A result is
//! applied to the channel with the same id *and* key fingerprint in the current snapshot; one
//! for a channel a reload removed or re-keyed is dropped. Never logs a key.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::http::{self, GetError};
use super::{Ctl, Fetch, State, jittered};
use crate::catalog::discovered;
use crate::live::health::{Outcome, State as HealthState, Why};
use crate::snapshot::Snapshot;

/// Which kind of round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Discovery,
    Probe,
}

/// After a round in which some channel could not be fetched, the next one comes this soon
/// (or at the configured interval, if shorter): a provider that was down at start is not left
/// undiscovered for hours.
pub(crate) const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(60);

/// Starts the rounds that are due (called by the main loop every turn).
pub(crate) fn schedule(ctl: &Rc<Ctl>, now: Instant) {
    // Nothing before the first DNS round has answered: a fetch without addresses proves
    // nothing and would count as a failure.
    if !ctl.board.ready() {
        return;
    }
    let (discover, probe) = {
        let st = ctl.st.borrow();
        let discover = !ctl.discovering.get()
            && (st.discovery_wanted.is_some() || st.next_discovery.is_some_and(|t| now >= t));
        let probe = !ctl.probing.get() && st.next_probe.is_some_and(|t| now >= t);
        (discover, probe)
    };
    if discover {
        let only = {
            let mut st = ctl.st.borrow_mut();
            st.next_discovery = None;
            st.discovery_wanted.take().filter(|ids| !ids.is_empty())
        };
        ctl.discovering.set(true);
        let c = ctl.clone();
        monoio::spawn(async move {
            let complete = round(&c, Kind::Discovery, only).await;
            c.discovering.set(false);
            let mut st = c.st.borrow_mut();
            if st.cfg.discovery.enabled {
                let mut wait = st.cfg.discovery.interval;
                if !complete {
                    wait = wait.min(RETRY_AFTER_FAILURE);
                }
                st.next_discovery = Some(Instant::now() + jittered(wait));
            }
        });
    }
    if probe {
        ctl.st.borrow_mut().next_probe = None;
        ctl.probing.set(true);
        let c = ctl.clone();
        monoio::spawn(async move {
            round(&c, Kind::Probe, None).await;
            c.probing.set(false);
            let mut st = c.st.borrow_mut();
            if st.cfg.health.enabled {
                st.next_probe = Some(Instant::now() + st.cfg.health.interval);
            }
        });
    }
}

/// A channel to fetch, by identity (the snapshot may change while the round runs).
type Target = (Box<str>, Box<str>);

/// Channels to fetch (id, key fingerprint), grouped by identical request (endpoint + head
/// with credentials).
fn groups(st: &State, kind: Kind, only: Option<&[String]>, now: Instant) -> Vec<Vec<Target>> {
    let snap = &st.current;
    let live = st.merger.view();
    let interval = st.cfg.health.interval;
    let mut index: HashMap<(&str, &[u8]), usize> = HashMap::new();
    let mut out: Vec<Vec<Target>> = Vec::new();
    for (i, ch) in snap.channels.iter().enumerate() {
        if !ch.enabled || only.is_some_and(|ids| !ids.iter().any(|id| **id == *ch.id)) {
            continue;
        }
        let wanted = match kind {
            Kind::Discovery => ch.discover,
            Kind::Probe => {
                let h = live.channels.get(i).map(|c| c.health).unwrap_or_default();
                match (h.state(now), h.why) {
                    (_, Why::RateLimited | Why::NoCredit) => false,
                    (_, Why::Auth) => true,
                    (HealthState::HalfOpen, _) => true,
                    (HealthState::Cooling(_), _) => false,
                    (HealthState::Ok, _) => {
                        h.updated.is_none_or(|u| now.duration_since(u) >= interval)
                    }
                }
            }
        };
        if !wanted {
            continue;
        }
        let key = (&*ch.endpoint.key, &*ch.models_head);
        let target = (ch.id.clone(), ch.key_fingerprint.clone());
        match index.get(&key) {
            Some(&g) => out[g].push(target),
            None => {
                index.insert(key, out.len());
                out.push(vec![target]);
            }
        }
    }
    out
}

/// One round: `concurrency` tasks pull groups from a queue until it is empty. Each fetch uses
/// the channel as the current snapshot has it (addresses resolved meanwhile included). True
/// when every channel was fetched successfully.
async fn round(ctl: &Rc<Ctl>, kind: Kind, only: Option<Vec<String>>) -> bool {
    let now = Instant::now();
    let (jobs, timeout, concurrency) = {
        let st = ctl.st.borrow();
        let (timeout, concurrency) = match kind {
            Kind::Discovery => (st.cfg.discovery.timeout, st.cfg.discovery.concurrency),
            Kind::Probe => (st.cfg.health.timeout, st.cfg.discovery.concurrency),
        };
        (
            groups(&st, kind, only.as_deref(), now),
            timeout,
            concurrency.max(1),
        )
    };
    if jobs.is_empty() {
        return true;
    }
    tracing::debug!(kind = ?kind, groups = jobs.len(), "fetch round");
    let n = concurrency.min(jobs.len());
    let queue = Rc::new(RefCell::new(VecDeque::from(jobs)));
    let complete = Rc::new(Cell::new(true));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let (ctl, queue, complete) = (ctl.clone(), queue.clone(), complete.clone());
        tasks.push(monoio::spawn(async move {
            loop {
                let Some(group) = queue.borrow_mut().pop_front() else {
                    break;
                };
                let Some((snap, i)) = current(&ctl, &group[0]) else {
                    continue;
                };
                let ch = &snap.channels[i];
                if ch.endpoint.addrs.is_empty() {
                    // Not resolved (yet, or any more): not a failure of the channel.
                    complete.set(false);
                    continue;
                }
                let started = Instant::now();
                let result = http::get_models(&ctl.pool, ch, timeout).await;
                if !matches!(&result, Ok((s, _)) if (200..300).contains(s)) {
                    complete.set(false);
                }
                let mut st = ctl.st.borrow_mut();
                for target in &group {
                    apply(&ctl, &mut st, kind, target, started, &result);
                }
            }
        }));
    }
    for t in tasks {
        t.await;
    }
    complete.get()
}

/// The current snapshot and the index of `target` in it (same id and key), if still there.
fn current(ctl: &Ctl, target: &Target) -> Option<(Arc<Snapshot>, usize)> {
    let st = ctl.st.borrow();
    let i = Ctl::channel_index(&st, &target.0)
        .filter(|&i| st.current.channels[i].key_fingerprint == target.1)?;
    Some((st.current.clone(), i))
}

/// Applies one fetch result to the channel `target`.
fn apply(
    ctl: &Ctl,
    st: &mut State,
    kind: Kind,
    target: &Target,
    started: Instant,
    result: &Result<(u16, Vec<u8>), GetError>,
) {
    let id = &*target.0;
    // The same channel with the same key in the current snapshot, or nothing to do.
    let Some(cur) =
        Ctl::channel_index(st, id).filter(|&c| st.current.channels[c].key_fingerprint == target.1)
    else {
        return;
    };
    let at = Instant::now();
    let ms = at.duration_since(started).as_secs_f32() * 1000.0;
    let mut fetch = Fetch {
        at: SystemTime::now(),
        ok: false,
        status: None,
        detail: String::new(),
        ms,
        models: None,
    };
    let outcome = match result {
        Ok((status, body)) if (200..300).contains(status) => {
            fetch.status = Some(*status);
            if kind == Kind::Discovery {
                match discovered::parse(body) {
                    // An empty list is more likely a provider hiccup than a channel with no
                    // models: it never erases what is known.
                    Ok(models) if models.is_empty() => {
                        fetch.ok = true;
                        fetch.models = Some(0);
                        fetch.detail = "empty model list; keeping the known models".into();
                    }
                    Ok(models) => {
                        fetch.ok = true;
                        fetch.models = Some(models.len());
                        fetch.detail = format!("{} models", models.len());
                        let models: Arc<[discovered::Discovered]> = models.into();
                        if st.discovered.get(id) != Some(&models) {
                            if let Some(c) = st.cfg.channels.iter().find(|c| c.id == id)
                                && let Some(base) = st.cfg.channel_base_url(c)
                            {
                                ctl.store.save_discovery(
                                    id,
                                    c.api_key.expose(),
                                    &base.to_url(),
                                    &models,
                                );
                            }
                            st.discovered.insert(id.to_string(), models);
                            st.rebuild_due = true;
                        }
                    }
                    Err(e) => fetch.detail = format!("unreadable model list: {e}"),
                }
            } else {
                fetch.ok = true;
                fetch.detail = "ok".into();
            }
            Some(Outcome::Success)
        }
        Ok((status, _)) => {
            fetch.status = Some(*status);
            fetch.detail = format!("HTTP {status}");
            match status {
                401 | 403 => {
                    fetch.detail = format!("HTTP {status}: the provider rejected the key");
                    Some(Outcome::Auth)
                }
                s if *s >= 500 && kind == Kind::Probe => Some(Outcome::Transient),
                _ => None,
            }
        }
        Err(e) => {
            fetch.detail = e.to_string();
            (kind == Kind::Probe).then_some(Outcome::Transient)
        }
    };
    if !fetch.ok {
        tracing::warn!(channel = %id, kind = ?kind, result = %fetch.detail, "model list fetch failed");
    }
    if let Some(o) = outcome {
        st.merger.apply_channel(cur, o, started, at);
    }
    let status = st.status.entry(id.to_string()).or_default();
    match kind {
        Kind::Discovery => status.discovery = Some(fetch),
        Kind::Probe => status.probe = Some(fetch),
    }
}
