//! `smart-ai-router route EXPR`: the dry-run ranking of a model expression against the
//! snapshot a gateway would start from (config, resolved addresses, the discovery cache and
//! admin overrides of its state dir), as a table or as `POST /v1/route`'s JSON.
//!
//! Invariants: never sends a request, never writes the state dir; leaves no round-robin state.

use std::fmt::Write as _;

use crate::expr::Caps;
use crate::routing;
use crate::snapshot::Snapshot;

/// What to rank.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    /// The model expression.
    pub expr: &'a str,
    /// Capabilities the request would need (`--needs`).
    pub needs: Caps,
    /// A strategy by name (`--strategy`).
    pub strategy: Option<&'a str>,
    /// JSON (`--json`) rather than a table.
    pub json: bool,
}

/// The snapshot a gateway with `cfg` would start from: the addresses resolved so far, the TLS
/// settings, and its state dir's discovery cache and admin overrides (read only: nothing is
/// created or written).
pub fn starting_snapshot(
    cfg: &crate::config::Config,
    resolved: &crate::channel::Resolved,
    tls: &crate::channel::TlsConfigs,
) -> Snapshot {
    let store = crate::control::store::Store::read_only(cfg.state_dir.clone());
    let discovered = store.load_discovery(cfg);
    let overrides = store.load_overrides();
    Snapshot::build_with(cfg, 1, resolved, tls, 1, 1, &discovered, &overrides)
}

/// The ranking of `q` on `snap`, rendered; `Err` says why nothing could be ranked.
pub fn render(snap: &Snapshot, q: &Query<'_>) -> Result<String, String> {
    let options = crate::strategy::Options::default();
    let ask = routing::Ask {
        endpoint: crate::presets::Endpoint::Chat,
        model: q.expr,
        needs: q.needs,
        prompt_tokens: 1000,
        max_tokens: None,
        stream: false,
        strategy: q.strategy,
        options: &options,
        allowed: None,
        fields: crate::presets::Fields::NONE,
    };
    let arena = bumpalo::Bump::new();
    let now = std::time::Instant::now();
    let mut local = routing::Local::default();
    let ranking = routing::rank(snap, &mut local, &ask, now, &arena, true)
        .map_err(|e| e.into_error().message.to_string())?;
    if q.json {
        let doc = crate::api::route::render(snap, q.expr, &ranking, now);
        return Ok(format!("{}\n", String::from_utf8_lossy(&doc)));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "route `{}` · strategy {} · {} candidate(s), {} filtered out (estimate: 1000 prompt tokens)",
        q.expr,
        ranking.strategy,
        ranking.candidates.len(),
        ranking.rejected.len()
    );
    if !ranking.candidates.is_empty() {
        let _ = writeln!(
            out,
            "  {:>2}  {:<16} {:<40} {:>4} {:>6}   cost  speed qual  rel   ctx   par  free local",
            "#", "channel", "model", "prio", "score"
        );
    }
    for (i, c) in ranking.candidates.iter().enumerate() {
        let e = &snap.catalog.entries[c.entry as usize];
        let ch = &snap.channels[e.channel as usize];
        let s = &c.scores;
        let _ = writeln!(
            out,
            "  {:>2}  {:<16} {:<40} {:>4} {:>6.3}  {:.2}  {:.2}  {:.2}  {:.2}  {:.2}  {:.2}  {:.0}    {:.0}",
            i + 1,
            ch.id,
            e.model,
            ch.priority,
            c.score,
            s.cost,
            s.speed,
            s.quality,
            s.reliability,
            s.context,
            s.parameters,
            s.free,
            s.local
        );
    }
    for r in ranking.rejected.iter() {
        let e = &snap.catalog.entries[r.entry as usize];
        let ch = &snap.channels[e.channel as usize];
        let _ = writeln!(
            out,
            "  filtered: {}/{} — {}",
            ch.id,
            e.model,
            r.reason.describe(now)
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::discovered::Discovered;
    use crate::config::Config;

    /// One channel that lists no models: only discovery (or its cache) knows them.
    const DISCOVERY_ONLY: &str = r#"
[providers.up]
kind = "openai"
base_url = "http://127.0.0.1:9/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-x"
"#;

    fn snapshot(cache: &[&str]) -> Snapshot {
        let cfg = Config::parse(DISCOVERY_ONLY, &|_: &str| None).expect("valid");
        let tls = crate::control::build_tls(&cfg).expect("tls");
        let mut discovered = crate::catalog::DiscoveryMap::new();
        if !cache.is_empty() {
            let models: Vec<Discovered> = cache
                .iter()
                .map(|id| Discovered {
                    id: (*id).into(),
                    ..Discovered::default()
                })
                .collect();
            discovered.insert("up-1".to_string(), models.into());
        }
        let overrides = crate::channel::Overrides::default();
        let resolved = crate::channel::Resolved::new();
        Snapshot::build_with(&cfg, 1, &resolved, &tls, 1, 1, &discovered, &overrides)
    }

    fn query(expr: &str) -> Query<'_> {
        Query {
            expr,
            needs: Caps::NONE,
            strategy: None,
            json: false,
        }
    }

    #[test]
    fn a_discovery_only_channel_routes_from_the_cache() {
        let text = render(&snapshot(&["gpt-4o-mini", "o3"]), &query("gpt-4o-mini")).unwrap();
        assert!(text.contains("1 candidate(s)"), "{text}");
        assert!(
            text.contains("up-1") && text.contains("gpt-4o-mini"),
            "{text}"
        );
        let without = render(&snapshot(&[]), &query("gpt-4o-mini")).unwrap_err();
        assert!(without.contains("does not exist"), "{without}");
    }

    #[test]
    fn an_empty_one_tag_query_says_what_excluded_it() {
        let snap = snapshot(&["gpt-4o-mini", "o3"]);
        let e = render(&snap, &query("tag:gpt,!4o")).unwrap_err();
        assert!(e.contains("excluded by the query's other terms"), "{e}");
        assert!(!e.contains("no model has all of them"), "{e}");
        let e = render(&snap, &query("tag:gpt,o3")).unwrap_err();
        assert!(e.contains("but no model has all of them"), "{e}");
    }
}
