//! The one immutable value the control thread publishes to every worker: channels with their
//! pre-resolved upstream endpoints and pre-rendered request heads, the model catalog, and the
//! server and routing settings workers apply.
//!
//! Invariants: a `Snapshot` has no interior mutability and is `Send + Sync` (asserted below);
//! it is built only by [`Snapshot::build`] on the control thread and replaced whole, stamped
//! with a strictly increasing `epoch`. Workers wrap it once in an `Rc` per publication and never
//! clone the `Arc` per request.
//! Not here: DNS (the caller passes resolved addresses), file reads other than `ca_file` (done
//! by the control thread that calls `build`), any per-request work.

use std::sync::Arc;

use crate::catalog::{Catalog, DiscoveryMap};
use crate::channel::{Channel, Mode, Overrides, Resolved, TlsConfigs};
use crate::config::{Config, RoutingConfig, ServerConfig, StrategyConfig};
use crate::live::Live;

/// The published state. Its parts are shared `Arc`s, so a new epoch that only changes live
/// health re-uses the channels and the catalog.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Strictly increasing publication number (1 for the first).
    pub epoch: u64,
    /// Where the channels came from.
    pub(crate) mode: Mode,
    /// Downstream server settings (limits, timeouts, CORS).
    pub server: ServerConfig,
    /// Routing and failover settings.
    pub routing: RoutingConfig,
    /// User-defined strategies.
    pub strategies: Arc<[StrategyConfig]>,
    /// Channels, in config order.
    pub(crate) channels: Arc<[Channel]>,
    /// Entries, tags, groups and model listings.
    pub catalog: Arc<Catalog>,
    /// Health and live averages, indexed like the catalog.
    pub live: Arc<Live>,
    /// Units of the configured currency per USD (entry prices are USD; costs are reported in
    /// the configured currency).
    pub cost_rate: f64,
    /// Daily quotas spent (set by the control thread from its usage ledger).
    pub(crate) quota: Arc<Quota>,
    /// Client keys, with their allowances resolved against this catalog.
    pub(crate) clients: Arc<crate::auth::Clients>,
    /// TLS of the client listener (`[server.tls]`): accepted connections do a handshake.
    pub inbound_tls: Option<Arc<rustls::ServerConfig>>,
    /// `[telemetry]`, as workers apply it (none: off, the client's `traceparent` goes
    /// upstream unchanged).
    pub(crate) traces: Option<Traces>,
}

/// What workers need of `[telemetry]`: whether to trace a request and what to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Traces {
    /// Share of requests without a client `traceparent` that are traced.
    pub ratio: f64,
    /// Keep the request's messages on its span.
    pub capture_content: bool,
}

/// Which daily quotas are spent for the current UTC day.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Quota {
    /// By channel index: the channel's request, token or budget limit is reached.
    pub channels: Box<[bool]>,
    /// The global `[pricing] daily_budget` is spent: why, for the 429.
    pub global: Option<Box<str>>,
    /// By client key index: the key's `daily_budget` is spent (why, for the 429).
    pub clients: Box<[Option<Box<str>>]>,
    /// Some daily limit is configured: workers hand usage records over at once instead of
    /// on the tick, so a limit is judged on counts at most a control-loop turn old.
    pub limited: bool,
}

impl Quota {
    /// True when channel `i` is out for the day.
    pub(crate) fn channel_spent(&self, i: usize) -> bool {
        self.channels.get(i).copied().unwrap_or(false)
    }

    /// Why client key `i` may spend nothing more today, if it may not.
    pub(crate) fn client_spent(&self, i: u32) -> Option<&str> {
        self.clients.get(i as usize).and_then(|w| w.as_deref())
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Snapshot>();
};

impl Snapshot {
    /// Builds a snapshot from a validated config, the addresses resolved so far and the TLS
    /// settings per provider, for `workers` workers, with catalog `generation` and fresh live
    /// state. Channels whose host is not resolved yet get no addresses (they are skipped by
    /// routing until a later snapshot has them).
    pub fn build(
        cfg: &Config,
        epoch: u64,
        resolved: &Resolved,
        tls: &TlsConfigs,
        workers: usize,
        generation: u64,
    ) -> Snapshot {
        Self::build_with(
            cfg,
            epoch,
            resolved,
            tls,
            workers,
            generation,
            &DiscoveryMap::new(),
            &Overrides::default(),
        )
    }

    /// [`Snapshot::build`] with discovered models and admin overrides.
    #[allow(clippy::too_many_arguments)]
    pub fn build_with(
        cfg: &Config,
        epoch: u64,
        resolved: &Resolved,
        tls: &TlsConfigs,
        workers: usize,
        generation: u64,
        discovered: &DiscoveryMap,
        overrides: &Overrides,
    ) -> Snapshot {
        let channels = crate::channel::build(cfg, resolved, tls, workers, overrides);
        let mode = crate::channel::mode_of(cfg);
        let catalog = Catalog::build(cfg, &channels, mode, generation, discovered);
        let live = Live::new(generation, channels.len(), catalog.entries.len());
        let clients = crate::auth::Clients::build(&cfg.auth.keys, &catalog);
        Snapshot {
            epoch,
            mode,
            server: cfg.server.clone(),
            routing: cfg.routing.clone(),
            strategies: cfg.strategies.clone().into(),
            channels: channels.into(),
            catalog: Arc::new(catalog),
            live: Arc::new(live),
            cost_rate: cfg.pricing.from_usd(1.0),
            quota: Arc::new(Quota::default()),
            clients: Arc::new(clients),
            inbound_tls: tls.inbound.clone(),
            traces: cfg.telemetry.as_ref().map(|t| Traces {
                ratio: t.sample_ratio,
                capture_content: t.capture_content,
            }),
        }
    }

    /// Fresh live state for `new`, keeping what `old` (this snapshot) knew about the same
    /// channels (by id) and the same (channel, model) pairs: a reload or a discovery refresh
    /// must not forget a cooldown or the latency averages.
    pub fn live_carried_into(&self, new: &Snapshot) -> Live {
        let old = self;
        let mut live = Live::new(
            new.catalog.generation,
            new.channels.len(),
            new.catalog.entries.len(),
        );
        let old_channel: std::collections::HashMap<&str, usize> = old
            .channels
            .iter()
            .enumerate()
            .map(|(i, c)| (&*c.id, i))
            .collect();
        for (i, c) in new.channels.iter().enumerate() {
            // A new key is a fresh start: its predecessor's 401 says nothing about it.
            if let Some(&j) = old_channel.get(&*c.id)
                && old.channels[j].key_fingerprint == c.key_fingerprint
                && let Some(h) = old.live.channels.get(j)
            {
                // A strike names an entry of the old catalog: it starts over.
                live.channels[i] = crate::live::ChannelLive { strike: None, ..*h };
            }
        }
        let old_entry: std::collections::HashMap<(&str, &str), usize> = old
            .catalog
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| ((&*old.channels[e.channel as usize].id, &*e.model), i))
            .collect();
        for (i, e) in new.catalog.entries.iter().enumerate() {
            let key = (&*new.channels[e.channel as usize].id, &*e.model);
            if let Some(&j) = old_entry.get(&key)
                && let Some(x) = old.live.entries.get(j)
            {
                live.entries[i] = *x;
            }
        }
        live
    }

    /// The same snapshot with new quota state, as epoch `epoch`.
    pub(crate) fn with_quota(&self, epoch: u64, quota: Arc<Quota>) -> Snapshot {
        Snapshot {
            epoch,
            quota,
            ..self.clone()
        }
    }

    /// The same snapshot with new live state, as epoch `epoch`.
    pub(crate) fn with_live(&self, epoch: u64, live: Arc<Live>) -> Snapshot {
        Snapshot {
            epoch,
            live,
            ..self.clone()
        }
    }

    /// The same config with new endpoints (after DNS), keeping catalog and live state.
    pub(crate) fn with_channels(&self, epoch: u64, fresh: &Snapshot) -> Snapshot {
        Snapshot {
            epoch,
            channels: fresh.channels.clone(),
            ..self.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(text: &str) -> Snapshot {
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        let tls = crate::control::build_tls(&cfg).unwrap();
        Snapshot::build(&cfg, 7, &Resolved::new(), &tls, 1, 1)
    }

    fn head(s: &Snapshot, i: usize) -> String {
        String::from_utf8(s.channels[i].request_head.to_vec()).unwrap()
    }

    #[test]
    fn request_heads_follow_each_auth_style_and_keep_version_paths() {
        let s = build(
            r#"
[providers.b]
base_url = "http://127.0.0.1:9/v1"
[providers.x]
base_url = "http://127.0.0.1:9/anthropic-compatible"
auth = "x-api-key"
[providers.z]
kind = "azure"
base_url = "http://127.0.0.1:9/openai/deployments/gpt4o"
headers = { "X-Extra" = "1" }
[providers.v3]
kind = "doubao"
base_url = "http://[::1]:8443/api/v3"
[[channels]]
id = "b"
provider = "b"
api_key = "kb"
models = ["m"]
[[channels]]
id = "x"
provider = "x"
api_key = "kx"
models = ["m"]
[[channels]]
id = "z"
provider = "z"
api_key = "kz"
models = ["m"]
[[channels]]
id = "v3"
provider = "v3"
models = ["m"]
"#,
        );
        assert_eq!(s.epoch, 7);
        assert_eq!(
            head(&s, 0),
            "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Bearer kb\r\n"
        );
        assert!(head(&s, 1).contains("\r\nx-api-key: kx\r\n"));
        assert!(head(&s, 1).starts_with("POST /anthropic-compatible/chat/completions "));
        assert!(head(&s, 2).contains("\r\napi-key: kz\r\nX-Extra: 1\r\n"));
        assert_eq!(
            &*s.channels[2].managed_headers,
            &["x-extra".into()] as &[Box<str>]
        );
        // keyless channel: no auth header at all; IPv6 authority bracketed
        assert_eq!(
            head(&s, 3),
            "POST /api/v3/chat/completions HTTP/1.1\r\nHost: [::1]:8443\r\n"
        );
        assert_eq!(
            &*s.channels[3].endpoint.addrs,
            &["[::1]:8443".parse().unwrap()]
        );
        // the same authority shares one endpoint (and so one pool)
        assert!(Arc::ptr_eq(
            &s.channels[0].endpoint,
            &s.channels[1].endpoint
        ));
        // secrets do not appear in Debug output
        assert!(!format!("{s:?}").contains("kb"));
    }

    #[test]
    fn proxied_endpoints_connect_to_the_proxy_and_key_their_pool_by_it() {
        let text = r#"
[providers.a]
base_url = "https://api.example.com/v1"
proxy = "http://u:pw@proxy.internal:3128"
[providers.b]
base_url = "https://api.example.com/v1"
proxy = "socks5h://127.0.0.1:1080"
[providers.c]
base_url = "https://api.example.com/v1"
[[channels]]
id = "a"
provider = "a"
models = ["m"]
[[channels]]
id = "b"
provider = "b"
models = ["m"]
[[channels]]
id = "c"
provider = "c"
models = ["m"]
"#;
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        // the proxy's name is resolved instead of the upstream's behind it; the literal
        // SOCKS proxy needs no resolving; the direct provider still needs the upstream's
        assert_eq!(
            crate::channel::hosts_to_resolve(&cfg),
            vec![
                ("api.example.com".to_string(), 443),
                ("proxy.internal".to_string(), 3128)
            ]
        );
        let tls = crate::control::build_tls(&cfg).unwrap();
        let mut r = Resolved::new();
        r.insert(
            ("proxy.internal".into(), 3128),
            vec!["192.0.2.9:3128".parse().unwrap()],
        );
        let s = Snapshot::build(&cfg, 1, &r, &tls, 1, 1);
        let ep = |i: usize| &s.channels[i].endpoint;
        assert_eq!(&*ep(0).addrs, &["192.0.2.9:3128".parse().unwrap()]);
        assert_eq!(&*ep(1).addrs, &["127.0.0.1:1080".parse().unwrap()]);
        assert!(ep(2).addrs.is_empty(), "the direct upstream waits for DNS");
        assert_eq!(
            ep(0).tunnel.as_ref().map(|t| t.proxy()),
            Some("proxy.internal:3128")
        );
        assert!(ep(2).tunnel.is_none());
        assert_eq!(&*ep(0).authority, "api.example.com");
        assert!(
            ep(0).tls.is_some(),
            "TLS still runs end to end, over the tunnel"
        );
        // three pools: same upstream, different ways there
        assert_ne!(ep(0).key, ep(1).key);
        assert_ne!(ep(0).key, ep(2).key);
        assert!(!format!("{s:?}").contains("pw@"));
        assert!(!format!("{:?}", ep(0)).contains("Basic"));
    }

    #[test]
    fn host_names_wait_for_the_resolver() {
        let text = r#"
[providers.p]
base_url = "https://api.example.com/v1"
[[channels]]
id = "c"
provider = "p"
models = ["m"]
"#;
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        assert_eq!(
            crate::channel::hosts_to_resolve(&cfg),
            vec![("api.example.com".to_string(), 443)]
        );
        let tls = crate::control::build_tls(&cfg).unwrap();
        let s = Snapshot::build(&cfg, 1, &Resolved::new(), &tls, 1, 1);
        assert!(s.channels[0].endpoint.addrs.is_empty());
        assert!(s.channels[0].endpoint.tls.is_some());
        let mut r = Resolved::new();
        r.insert(
            ("api.example.com".into(), 443),
            vec![
                "192.0.2.1:443".parse().unwrap(),
                "192.0.2.2:443".parse().unwrap(),
            ],
        );
        let s = Snapshot::build(&cfg, 2, &r, &tls, 1, 1);
        assert_eq!(
            s.channels[0].endpoint.addrs.len(),
            2,
            "every address is kept"
        );
    }
}
