//! The admin API's router: method and path to a view, a change, `/metrics` or a reload, with
//! 404 for unknown paths and 405 (with `Allow`) for known paths asked with the wrong method.
//! The changes live here: overrides (enable, disable, priority, clear), cooldowns cleared, a
//! discovery round asked for.
//!
//! Invariants: a change is persisted (overrides) and adopted by every worker (bounded by
//! `PROPAGATION_WAIT`) before it is answered; a body is parsed as a copy and checked in full
//! before anything changes; the state is borrowed only between awaits.
//! Not here: reading requests and credentials (`admin`), the documents' shapes (`views`,
//! `usage`), the metric families (`prometheus`).

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Instant;

use serde::Serialize;
use simd_json::prelude::*;

use super::super::Ctl;
use super::session::Sessions;
use super::{Access, Answer, Req, not_found, serialize, usage, views};
use crate::error::{Error, Kind};

/// Answers a request whose credentials the connection accepted: the status page's paths
/// first, then the admin API (which a request let in without credentials never reaches).
pub(super) async fn handle(
    ctl: &Rc<Ctl>,
    req: Req,
    access: Access,
    sessions: &RefCell<Sessions>,
) -> Answer {
    if let Some(a) = super::status::handle(ctl, &req, &access, sessions) {
        return a;
    }
    if matches!(access, Access::Public) {
        return Answer::error(Error::unknown_route(&req.method, &req.path));
    }
    let parts: Vec<String> = req
        .path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .map(|p| crate::h1::percent_decode(p.as_bytes()))
        .collect();
    let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
    let m = req.method.as_str();
    let epoch_before = ctl.st.borrow().current.epoch;
    let result = match (m, parts.as_slice()) {
        ("GET", ["admin", "channels"]) => serialize(&views::channels(&ctl.st.borrow())),
        ("GET", ["admin", "channels", id]) => {
            let st = ctl.st.borrow();
            match Ctl::channel_index(&st, id) {
                Some(i) => serialize(&views::channel(&st, i)),
                None => Err(not_found(&format!("no channel `{id}`"))),
            }
        }
        ("POST", ["admin", "channels", id, "enable"]) => {
            set_override(ctl, id, |o| o.enabled = Some(true))
        }
        ("POST", ["admin", "channels", id, "disable"]) => {
            set_override(ctl, id, |o| o.enabled = Some(false))
        }
        ("PUT", ["admin", "channels", id, "priority"]) => match priority(&req.body) {
            Ok(p) => set_override(ctl, id, |o| o.priority = Some(p)),
            Err(e) => Err(e),
        },
        ("DELETE", ["admin", "channels", id, "overrides"]) => clear_overrides(ctl, id),
        ("GET", ["admin", "cooldowns"]) => serialize(&views::cooldowns(&ctl.st.borrow())),
        ("DELETE", ["admin", "cooldowns"]) => clear_cooldowns(ctl, None),
        ("DELETE", ["admin", "cooldowns", id]) => {
            let i = Ctl::channel_index(&ctl.st.borrow(), id);
            match i {
                Some(i) => clear_cooldowns(ctl, Some(i)),
                None => Err(not_found(&format!("no channel `{id}`"))),
            }
        }
        ("POST", ["admin", "discovery", "refresh"]) => refresh(ctl, &req.body),
        ("GET", ["admin", "snapshot"]) => serialize(&views::snapshot(ctl, &ctl.st.borrow())),
        ("GET", ["metrics"]) => return Answer::metrics(super::prometheus::render(ctl)),
        ("GET", ["admin", "usage"]) => usage::usage(ctl, &req.query).await,
        #[cfg(feature = "cluster")]
        ("GET", ["admin", "cluster"]) => {
            super::fleet::cluster(ctl.cluster.borrow().as_ref()).and_then(|v| serialize(&v))
        }
        #[cfg(not(feature = "cluster"))]
        ("GET", ["admin", "cluster"]) => Err(not_found(
            "no [cluster] section: this instance runs alone (this build has no `cluster` feature)",
        )),
        ("POST", ["admin", "reload"]) => return reload(ctl).await,
        _ if known_path(&parts) => Err(Error::method_not_allowed(m, &req.path, allowed(&parts))),
        _ => Err(Error::unknown_route(m, &req.path)),
    };
    // A change answers once it is durable and every worker routes by it.
    let saved = ctl.pending_save.take();
    if let Some(done) = saved {
        super::super::written(&done, super::super::PROPAGATION_WAIT).await;
    }
    let epoch = ctl.st.borrow().current.epoch;
    if epoch != epoch_before {
        super::super::propagated(ctl, epoch).await;
    }
    match result {
        Ok(doc) => Answer::json(doc),
        Err(e) => Answer::error(e),
    }
}

fn known_path(parts: &[&str]) -> bool {
    matches!(
        parts,
        ["admin", "channels"]
            | ["admin", "channels", _]
            | [
                "admin",
                "channels",
                _,
                "enable" | "disable" | "priority" | "overrides"
            ]
            | ["admin", "cooldowns"]
            | ["admin", "cooldowns", _]
            | ["admin", "discovery", "refresh"]
            | ["admin", "snapshot"]
            | ["admin", "usage"]
            | ["admin", "cluster"]
            | ["admin", "reload"]
            | ["metrics"]
    )
}

fn allowed(parts: &[&str]) -> &'static str {
    match parts {
        ["admin", "channels"]
        | ["admin", "channels", _]
        | ["admin", "snapshot"]
        | ["admin", "usage"]
        | ["admin", "cluster"]
        | ["metrics"] => "GET",
        ["admin", "channels", _, "priority"] => "PUT",
        ["admin", "channels", _, "overrides"] | ["admin", "cooldowns", _] => "DELETE",
        ["admin", "cooldowns"] => "GET, DELETE",
        _ => "POST",
    }
}

/// `POST /admin/reload`: the reload's report, or 422 `config_rejected` naming every problem.
async fn reload(ctl: &Rc<Ctl>) -> Answer {
    /// `{"status":"reloaded",…}`.
    #[derive(Serialize)]
    struct Reloaded<'a> {
        status: &'static str,
        epoch: u64,
        generation: u64,
        channels: usize,
        entries: usize,
        restart_required: &'a [String],
    }
    match super::super::reload::reload(ctl).await {
        Ok(r) => {
            let doc = serialize(&Reloaded {
                status: "reloaded",
                epoch: r.epoch,
                generation: r.generation,
                channels: r.channels,
                entries: r.entries,
                restart_required: &r.restart_required,
            });
            doc.map_or_else(Answer::error, Answer::json)
        }
        Err(errors) => Answer::error(Error::new(
            422,
            Kind::InvalidRequest,
            "config_rejected",
            format!(
                "config rejected, the previous one keeps serving: {}",
                errors.join("; ")
            ),
        )),
    }
}

/// `{"priority": N}` with N an integer in ±1,000,000.
fn priority(body: &[u8]) -> Result<i32, Error> {
    let bad = || {
        Error::bad_request(
            "invalid_priority",
            "send {\"priority\": N} with N an integer between -1000000 and 1000000",
        )
    };
    let mut copy = body.to_vec();
    let v = simd_json::to_owned_value(&mut copy).map_err(|_| bad())?;
    let p = v.get("priority").and_then(|p| p.as_i64()).ok_or_else(bad)?;
    if !(-1_000_000..=1_000_000).contains(&p) {
        return Err(bad());
    }
    Ok(p as i32)
}

/// Changes channel `id`'s overrides, saves them, rebuilds; answers with the channel.
fn set_override(
    ctl: &Rc<Ctl>,
    id: &str,
    change: impl FnOnce(&mut crate::channel::ChannelOverride),
) -> Result<Vec<u8>, Error> {
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    if !st.cfg.channels.iter().any(|c| c.id == id) {
        return Err(not_found(&format!("no channel `{id}` in the config")));
    }
    change(st.overrides.channels.entry(id.to_string()).or_default());
    ctl.pending_save
        .set(ctl.store.save_overrides(&st.overrides));
    ctl.rebuild(st);
    tracing::info!(channel = id, "admin override set");
    let i = Ctl::channel_index(st, id).ok_or_else(|| not_found(id))?;
    serialize(&views::channel(st, i))
}

/// Drops channel `id`'s overrides; answers with the channel back on its config.
fn clear_overrides(ctl: &Rc<Ctl>, id: &str) -> Result<Vec<u8>, Error> {
    /// A channel no longer in the snapshot: `{"id":…,"overrides":null}`.
    #[derive(Serialize)]
    struct Gone<'a> {
        id: &'a str,
        overrides: Option<()>,
    }
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    if st.overrides.channels.remove(id).is_none() {
        return Err(not_found(&format!("channel `{id}` has no overrides")));
    }
    ctl.pending_save
        .set(ctl.store.save_overrides(&st.overrides));
    ctl.rebuild(st);
    tracing::info!(channel = id, "admin overrides cleared");
    match Ctl::channel_index(st, id) {
        Some(i) => serialize(&views::channel(st, i)),
        None => serialize(&Gone {
            id,
            overrides: None,
        }),
    }
}

/// Makes every channel (`None`) or one and its models healthy at once: `{"cleared","epoch"}`.
fn clear_cooldowns(ctl: &Rc<Ctl>, channel: Option<usize>) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Cleared {
        cleared: usize,
        epoch: u64,
    }
    let mut st = ctl.st.borrow_mut();
    let st = &mut *st;
    let cleared = st.merger.clear(channel, Instant::now());
    ctl.publish_live(st);
    tracing::info!(cleared, "admin cleared cooldowns");
    serialize(&Cleared {
        cleared,
        epoch: st.current.epoch,
    })
}

/// Asks for a discovery round (every channel, or `{"channels": [ids]}`):
/// `{"status":"started","running":…}`.
fn refresh(ctl: &Rc<Ctl>, body: &[u8]) -> Result<Vec<u8>, Error> {
    #[derive(Serialize)]
    struct Started {
        status: &'static str,
        running: bool,
    }
    let ids = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let mut copy = body.to_vec();
        let bad = || {
            Error::bad_request(
                "invalid_body",
                "send nothing, or {\"channels\": [\"id\", …]}",
            )
        };
        let v = simd_json::to_owned_value(&mut copy).map_err(|_| bad())?;
        let list = v
            .get("channels")
            .and_then(|c| c.as_array())
            .ok_or_else(bad)?;
        let ids: Vec<String> = list
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect();
        let st = ctl.st.borrow();
        if let Some(unknown) = ids.iter().find(|id| Ctl::channel_index(&st, id).is_none()) {
            return Err(not_found(&format!("no channel `{unknown}`")));
        }
        Some(ids)
    };
    ctl.want_discovery(ids);
    serialize(&Started {
        status: "started",
        running: ctl.discovering.get(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_bodies() {
        assert_eq!(priority(br#"{"priority": 5}"#).unwrap(), 5);
        assert_eq!(priority(br#"{"priority": -3}"#).unwrap(), -3);
        assert!(priority(br#"{"priority": "high"}"#).is_err());
        assert!(priority(br#"{"priority": 1e12}"#).is_err());
        assert!(priority(b"not json").is_err());
    }
}
