//! Hot reload (`SIGHUP`, `POST /admin/reload`): re-read the config, validate it, resolve any
//! new upstream host, then rebuild and publish one snapshot.
//!
//! Invariants: a config that fails validation changes nothing (its errors are returned and
//! logged; the old one keeps serving). Listeners are never closed: settings bound at start
//! (listen addresses, worker count, driver, tick, state dir, logging) keep their running values
//! and are reported as needing a restart. In-flight requests finish on the snapshot they
//! started with (workers swap snapshots between requests). Live state carries over by channel
//! id and (channel id, model), except a channel whose key changed starts healthy. Admin
//! overrides survive. Reloads are serialized, and one returns once every worker runs the new
//! snapshot (or after [`super::PROPAGATION_WAIT`]).

use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use super::{Ctl, LastReload, POLL, build_tls, start_telemetry};
use crate::catalog::DiscoveryMap;
use crate::config::Config;

/// Re-reads the config (the file, or the environment) with any command-line overrides.
pub type Loader = Box<dyn Fn() -> Result<Config, Vec<String>> + Send>;

/// Reloads remembered for the admin API and the status page.
pub(crate) const RELOAD_HISTORY: usize = 5;

/// Longest a reload waits for new upstream host names to resolve.
const RESOLVE_WAIT: Duration = Duration::from_secs(5);

/// What an applied reload did.
#[derive(Debug, Clone)]
pub struct ReloadReport {
    /// The epoch of the snapshot it published.
    pub epoch: u64,
    /// Its catalog generation.
    pub generation: u64,
    /// Channels now configured.
    pub channels: usize,
    /// (channel, model) entries now routable.
    pub entries: usize,
    /// Changed settings that only a restart applies.
    pub restart_required: Vec<String>,
}

/// Runs one reload (waiting for a running one to finish first). The reload is a task of its
/// own: a caller that stops waiting (an admin client that hung up) never leaves it half done.
pub(crate) async fn reload(ctl: &Rc<Ctl>) -> Result<ReloadReport, Vec<String>> {
    let c = ctl.clone();
    monoio::spawn(async move { run(&c).await }).await
}

/// Clears the reloading flag and tells systemd the reload is over, however `run` ends.
struct Reloading<'a>(&'a Ctl);

impl Drop for Reloading<'_> {
    fn drop(&mut self) {
        self.0.reloading.set(false);
        crate::notify::ready();
    }
}

async fn run(ctl: &Rc<Ctl>) -> Result<ReloadReport, Vec<String>> {
    while ctl.reloading.get() {
        monoio::time::sleep(POLL).await;
    }
    ctl.reloading.set(true);
    let guard = Reloading(ctl);
    crate::notify::reloading();
    let result = apply(ctl).await;
    if let Ok(r) = &result {
        super::propagated(ctl, r.epoch).await;
    }
    drop(guard);
    let mut st = ctl.st.borrow_mut();
    match &result {
        Ok(r) => {
            st.reloads.0 += 1;
            st.restart_required = r.restart_required.clone();
            tracing::info!(
                epoch = r.epoch,
                channels = r.channels,
                entries = r.entries,
                restart_required = %r.restart_required.join("; "),
                "config reloaded"
            );
        }
        Err(errors) => {
            st.reloads.1 += 1;
            tracing::warn!(errors = %errors.join("; "), "config reload rejected; the previous config keeps serving");
        }
    }
    let last = LastReload {
        at: SystemTime::now(),
        errors: result.as_ref().err().cloned().unwrap_or_default(),
    };
    if st.reload_history.len() >= RELOAD_HISTORY {
        st.reload_history.remove(0);
    }
    st.reload_history.push(last.clone());
    st.last_reload = Some(last);
    result
}

async fn apply(ctl: &Rc<Ctl>) -> Result<ReloadReport, Vec<String>> {
    let Some(loader) = &ctl.loader else {
        return Err(vec![
            "nothing to re-read: this gateway runs from an inline or demo config (start it with --config FILE)".into(),
        ]);
    };
    let mut new = loader()?;
    let tls = build_tls(&new).map_err(|e| vec![e])?;
    let restart_required = keep_bound_settings(&ctl.st.borrow().cfg, &mut new);
    // The running admin listener may be non-loopback while the new file says loopback: it
    // must not lose its token before the restart that moves it.
    if let Some(a) = &new.admin
        && !a.listen.ip().is_loopback()
        && a.token.is_none()
    {
        return Err(vec![format!(
            "admin.token: required while the admin API listens on {} (a restart applies the new admin.listen)",
            a.listen
        )]);
    }

    // New host names resolve before the snapshot that needs them is published, so no request
    // meets a channel without addresses.
    let hosts = crate::channel::hosts_to_resolve(&new);
    let missing: Vec<(String, u16)> = {
        let st = ctl.st.borrow();
        hosts
            .iter()
            .filter(|h| !st.resolved.contains_key(*h))
            .cloned()
            .collect()
    };
    if !missing.is_empty() {
        {
            let mut st = ctl.st.borrow_mut();
            for h in &missing {
                st.dns_failed.remove(h);
            }
        }
        ctl.resolve(missing.clone(), new.server.hosts_file.clone());
        // Until every new host has an answer, success or failure.
        let deadline = Instant::now() + RESOLVE_WAIT;
        while Instant::now() < deadline
            && missing.iter().any(|h| {
                let st = ctl.st.borrow();
                !st.resolved.contains_key(h) && !st.dns_failed.contains(h)
            })
        {
            monoio::time::sleep(POLL).await;
        }
    }

    let cached = ctl.store.load_discovery(&new);
    let mut undiscovered = Vec::new();
    let report = {
        let mut st = ctl.st.borrow_mut();
        let st = &mut *st;
        // Model lists: kept for a channel with the same key, else from the cache, else fetched.
        let mut discovered = DiscoveryMap::new();
        for ch in &new.channels {
            // Same key and same endpoint: the list still describes this channel.
            let base = |c: &Config, x: &crate::config::ChannelConfig| {
                c.channel_base_url(x).map(|u| u.to_url())
            };
            let same_key = st.cfg.channels.iter().any(|o| {
                o.id == ch.id && o.api_key == ch.api_key && base(&st.cfg, o) == base(&new, ch)
            });
            if let Some(d) = st.discovered.get(&ch.id).filter(|_| same_key) {
                discovered.insert(ch.id.clone(), d.clone());
            } else if let Some(d) = cached.get(&ch.id) {
                discovered.insert(ch.id.clone(), d.clone());
            } else if ch.discover {
                undiscovered.push(ch.id.clone());
            }
        }
        let now = Instant::now();
        if new.discovery.enabled && !st.cfg.discovery.enabled {
            st.next_discovery = Some(now);
        } else if !new.discovery.enabled {
            st.next_discovery = None;
        }
        if new.health.enabled && !st.cfg.health.enabled {
            st.next_probe = Some(now);
        } else if !new.health.enabled {
            st.next_probe = None;
        }
        st.discovered = discovered;
        st.hosts = hosts;
        st.tls = tls;
        if new.telemetry != st.cfg.telemetry {
            // The queued spans go to the old collector first; its thread ends with its sender.
            if let Some(t) = st.telemetry.as_mut() {
                t.poll(now, true);
            }
            st.telemetry = start_telemetry(&new, &st.spans_dropped);
        }
        st.cfg = new;
        ctl.rebuild(st);
        ReloadReport {
            epoch: st.current.epoch,
            generation: st.current.catalog.generation,
            channels: st.current.channels.len(),
            entries: st.current.catalog.entries.len(),
            restart_required,
        }
    };
    if !undiscovered.is_empty() && ctl.st.borrow().cfg.discovery.enabled {
        ctl.want_discovery(Some(undiscovered));
    }
    Ok(report)
}

/// Settings bound at start keep their running values in `new`; returns what changed.
fn keep_bound_settings(old: &Config, new: &mut Config) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, from: String, to: String| {
        out.push(format!("{what}: {from} → {to} (needs a restart)"));
    };
    if old.server.listen != new.server.listen {
        note(
            "server.listen",
            old.server.listen.to_string(),
            new.server.listen.to_string(),
        );
        new.server.listen = old.server.listen;
    }
    if old.server.workers != new.server.workers {
        note(
            "server.workers",
            old.server.workers.to_string(),
            new.server.workers.to_string(),
        );
        new.server.workers = old.server.workers;
    }
    if old.server.driver != new.server.driver {
        note(
            "server.driver",
            format!("{:?}", old.server.driver),
            format!("{:?}", new.server.driver),
        );
        new.server.driver = old.server.driver;
    }
    if old.server.pin_workers != new.server.pin_workers {
        note(
            "server.pin_workers",
            old.server.pin_workers.to_string(),
            new.server.pin_workers.to_string(),
        );
        new.server.pin_workers = old.server.pin_workers;
    }
    if old.server.tick != new.server.tick {
        note(
            "server.tick",
            format!("{:?}", old.server.tick),
            format!("{:?}", new.server.tick),
        );
        new.server.tick = old.server.tick;
    }
    if old.state_dir != new.state_dir {
        let show = |d: &Option<std::path::PathBuf>| {
            d.as_ref()
                .map_or("none".into(), |p| p.display().to_string())
        };
        note("state.dir", show(&old.state_dir), show(&new.state_dir));
        new.state_dir = old.state_dir.clone();
    }
    let listen = |c: &Config| {
        c.admin
            .as_ref()
            .map_or("off".into(), |a| a.listen.to_string())
    };
    if listen(old) != listen(new) {
        note("admin.listen", listen(old), listen(new));
        match (&old.admin, &mut new.admin) {
            // The token still changes at once.
            (Some(o), Some(n)) => n.listen = o.listen,
            _ => new.admin = old.admin.clone(),
        }
    }
    if old.cluster != new.cluster {
        let show = |c: &Option<crate::config::ClusterConfig>| {
            c.as_ref().map_or("off".into(), |c| {
                format!(
                    "{} on {} every {:?}",
                    c.instance_id,
                    c.redis_shown(),
                    c.sync_interval
                )
            })
        };
        note("cluster", show(&old.cluster), show(&new.cluster));
        new.cluster = old.cluster.clone();
    }
    if old.log.format != new.log.format || old.log.level != new.log.level {
        note(
            "log",
            format!("{:?}/{}", old.log.format, old.log.level),
            format!("{:?}/{}", new.log.format, new.log.level),
        );
        new.log = old.log.clone();
    }
    out
}
