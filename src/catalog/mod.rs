//! The immutable index of every (channel, model) pair — an *entry* — inside a snapshot: each
//! entry's tags, capabilities, context, parameters, price, quality and free/local flags; exact
//! ids and aliases → entries; tag → entry bitsets; `auto:` groups; pre-rendered model listings.
//!
//! Where entry facts come from, in order: the channel's `model_info` in config, then (with the
//! control-plane work) discovery data, then the heuristics of [`specs`]. Prices likewise: config
//! (the model's, then the channel's), then discovery, then — for a remote endpoint — the bundled
//! list prices of [`crate::pricing`]; a local endpoint without a stated price costs nothing.
//! Entry prices are USD whatever currency config states them in, so routing compares like with
//! like.
//!
//! Invariants: built once per config/discovery change by the control thread; lookups on workers
//! are hash probes and bitset reads and never allocate. Entry and channel indices are stable
//! for a given `generation` (live state and worker reports are keyed by them).
//! Not here: ranking (`routing`), live health (`live`).

pub mod discovered;
pub(crate) mod select;
pub(crate) mod specs;
pub(crate) mod tags;

use std::collections::HashMap;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::channel::{Channel, Mode};
use crate::config::{Config, GroupConfig, ModelInfo, Price, PricingConfig};
use crate::expr::Caps;
use crate::json;
pub(crate) use discovered::{Discovered, DiscoveryMap};
use tags::{Bitset, Interner, TagId};

/// An entry's prices in USD per 1M tokens (input, output, cache read, cache write); the cost of
/// an answer is [`crate::pricing::cost`].
pub(crate) type EntryPrice = crate::pricing::Price;

/// One (channel, model) pair.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Index into `Snapshot::channels`.
    pub channel: u32,
    /// The model id the upstream expects.
    pub model: Box<str>,
    /// What the model can take and do (vision, tools, JSON mode, embeddings).
    pub caps: Caps,
    /// Context length in tokens (0: unknown).
    pub context: u32,
    /// Longest answer in tokens, when discovery reported it (0: unknown).
    pub max_output: u32,
    /// Parameters in millions (0: unknown).
    pub params_m: u32,
    /// Price, when known.
    pub(crate) price: Option<EntryPrice>,
    /// Quality prior in [0, 1].
    pub quality: f32,
    /// Zero price, `:free` id or a channel tagged `free`.
    pub free: bool,
    /// Loopback or private-network endpoint.
    pub local: bool,
    /// Sorted tag ids.
    pub tags: Box<[TagId]>,
    /// Context sub-score (static per entry, precomputed).
    pub context_score: f32,
    /// Parameter sub-score (static per entry, precomputed).
    pub parameter_score: f32,
}

/// An `auto:` group, ready to evaluate.
#[derive(Debug, Clone)]
pub(crate) struct Group {
    /// `auto:NAME`.
    pub name: Box<str>,
    /// The model expression it stands for.
    pub query: Box<str>,
    /// Its configuration (strategy, filters).
    pub config: GroupConfig,
}

/// Channels × models, indexed.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Changes whenever entry or channel indices could change (config reload, discovery).
    pub generation: u64,
    /// Every (channel, model) pair.
    pub entries: Box<[Entry]>,
    tags: Interner,
    postings: Box<[Bitset]>,
    all: Option<Bitset>,
    by_id: HashMap<Box<str>, Box<[u32]>>,
    by_alias: HashMap<Box<str>, Box<[u32]>>,
    groups: HashMap<Box<str>, Group>,
    names: Box<[Box<str>]>,
    models_json: Box<[u8]>,
    model_json: HashMap<Box<str>, Box<[u8]>>,
}

impl Catalog {
    /// Indexes `channels` (already built from `cfg`, same order).
    pub(crate) fn build(
        cfg: &Config,
        channels: &[Channel],
        mode: Mode,
        generation: u64,
        discovered: &DiscoveryMap,
    ) -> Catalog {
        let mut entries: Vec<Entry> = Vec::new();
        let mut interner = Interner::default();
        // The id heuristics depend on the id alone, and most ids are served by many channels:
        // each distinct id is analysed once per build (a 3,400-pair rebuild is dominated by it).
        let mut facts: HashMap<&str, IdFacts> = HashMap::new();
        let flag_tags =
            ["free", "local", "vision", "tools", "embedding"].map(|t| interner.intern(t));
        let mut by_id: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut by_alias: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        // Listing: de-duplicated as it grows (first owner wins, config order).
        let mut listing: Vec<(Box<str>, Box<str>)> = Vec::new();
        let mut listed_names: std::collections::HashSet<&str> = std::collections::HashSet::new();
        for (ci, (ch_cfg, ch)) in cfg.channels.iter().zip(channels).enumerate() {
            let provider = &cfg.providers[ch_cfg.provider];
            let local = cfg.channel_base_url(ch_cfg).is_some_and(|u| u.is_private());
            let channel_free = ch_cfg.tags.iter().any(|t| t == "free");
            // Every model the channel serves: configured ones, discovered ones, and alias
            // targets it does not list.
            let found: &[Discovered] = match discovered.get(&ch_cfg.id) {
                Some(d) if ch_cfg.discover => d,
                _ => &[],
            };
            let mut models: Vec<&str> = ch_cfg.models.iter().map(String::as_str).collect();
            let configured = models.len();
            let mut seen: std::collections::HashSet<&str> = models.iter().copied().collect();
            let found_by_id: HashMap<&str, &Discovered> =
                found.iter().map(|d| (&*d.id, d)).collect();
            for d in found {
                if seen.insert(&d.id) {
                    models.push(&d.id);
                }
            }
            for (_, target) in &ch_cfg.aliases {
                if seen.insert(target) {
                    models.push(target);
                }
            }
            let channel_first = entries.len();
            let mut channel_tags: Vec<TagId> = ch_cfg
                .tags
                .iter()
                .map(|t| interner.intern(&t.to_ascii_lowercase()))
                .collect();
            channel_tags.push(interner.intern(&provider.id.to_ascii_lowercase()));
            channel_tags.push(interner.intern(&provider.kind.to_ascii_lowercase()));
            for (k, model) in models.into_iter().enumerate() {
                let id_facts = facts
                    .entry(model)
                    .or_insert_with(|| IdFacts::of(model, &mut interner));
                let info = ch_cfg
                    .model_info
                    .iter()
                    .find(|(m, _)| m == model)
                    .map(|(_, i)| i);
                let entry_index = entries.len() as u32;
                let disc = found_by_id.get(model).copied();
                let mut e = entry(
                    ci as u32,
                    model,
                    id_facts,
                    info,
                    disc,
                    ch_cfg.pricing.as_ref(),
                    local,
                    channel_free,
                    &cfg.pricing,
                );
                let mut t: Vec<TagId> = id_facts.tags.to_vec();
                t.extend_from_slice(&channel_tags);
                for (alias, target) in &ch_cfg.aliases {
                    if target == model {
                        let mut words = Vec::new();
                        tags::from_model_id(alias, &mut words);
                        words.push(alias.clone());
                        t.extend(
                            words
                                .iter()
                                .map(|w| interner.intern(&w.to_ascii_lowercase())),
                        );
                    }
                }
                for (flag, tag) in [
                    e.free,
                    e.local,
                    e.caps.contains(Caps::VISION),
                    e.caps.contains(Caps::TOOLS),
                    e.caps.contains(Caps::EMBEDDING),
                ]
                .into_iter()
                .zip(flag_tags)
                {
                    if flag {
                        t.push(tag);
                    }
                }
                if let Some(class) = tags::size_class(e.params_m) {
                    t.push(interner.intern(class));
                }
                t.sort_unstable();
                t.dedup();
                e.tags = t.into();
                match by_id.get_mut(model) {
                    Some(list) => list.push(entry_index),
                    None => {
                        by_id.insert(model.into(), vec![entry_index]);
                    }
                }
                let listed = k < configured || disc.is_some();
                if ch.enabled && listed && listed_names.insert(model) {
                    listing.push((model.into(), listing_owner(mode, ch)));
                }
                entries.push(e);
            }
            for (alias, target) in &ch_cfg.aliases {
                let target_index = (channel_first..entries.len())
                    .find(|&i| entries[i].channel == ci as u32 && &*entries[i].model == target);
                if let Some(i) = target_index {
                    by_alias
                        .entry(alias.as_str().into())
                        .or_default()
                        .push(i as u32);
                }
                if ch.enabled && listed_names.insert(alias) {
                    listing.push((alias.as_str().into(), listing_owner(mode, ch)));
                }
            }
        }

        let n = entries.len();
        let mut postings = vec![Bitset::new(n); interner.len()];
        for (i, e) in entries.iter().enumerate() {
            for &t in e.tags.iter() {
                postings[t as usize].insert(i);
            }
        }
        let mut all = Bitset::new(n);
        for i in 0..n {
            all.insert(i);
        }

        let groups = cfg
            .groups
            .iter()
            .map(|g| {
                (
                    g.name.to_ascii_lowercase().into_boxed_str(),
                    Group {
                        name: g.name.as_str().into(),
                        query: g.query.as_str().into(),
                        config: g.clone(),
                    },
                )
            })
            .collect();

        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut models_json = Vec::with_capacity(64 + listing.len() * 80);
        models_json.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
        let mut model_json = HashMap::with_capacity(listing.len());
        for (i, (name, owner)) in listing.iter().enumerate() {
            let mut one = Vec::with_capacity(80);
            one.extend_from_slice(b"{\"id\":");
            json::write_str(&mut one, name);
            one.extend_from_slice(b",\"object\":\"model\",\"created\":");
            json::write_u64(&mut one, created);
            one.extend_from_slice(b",\"owned_by\":");
            json::write_str(&mut one, owner);
            one.push(b'}');
            if i > 0 {
                models_json.push(b',');
            }
            models_json.extend_from_slice(&one);
            model_json.insert(name.clone(), one.into_boxed_slice());
        }
        models_json.extend_from_slice(b"]}");

        Catalog {
            generation,
            entries: entries.into(),
            tags: interner,
            postings: postings.into(),
            all: Some(all),
            by_id: boxed(by_id),
            by_alias: boxed(by_alias),
            groups,
            names: listing.into_iter().map(|(n, _)| n).collect(),
            models_json: models_json.into(),
            model_json,
        }
    }

    /// Entries serving `name`: channels that serve that exact model id, else channels with an
    /// alias of that name (DESIGN.md §5: an exact id wins over an alias).
    pub(crate) fn lookup(&self, name: &str) -> Option<&[u32]> {
        self.by_id
            .get(name)
            .or_else(|| self.by_alias.get(name))
            .map(|c| &**c)
    }

    /// The tag id of `tag` (case-insensitive).
    pub(crate) fn tag(&self, tag: &str) -> Option<TagId> {
        self.tags.get(tag)
    }

    /// Entries carrying tag `id`.
    pub(crate) fn posting(&self, id: TagId) -> &Bitset {
        &self.postings[id as usize]
    }

    /// Every entry.
    pub(crate) fn all(&self) -> &[u64] {
        self.all.as_ref().map_or(&[], |b| b.words())
    }

    /// Every tag's text.
    pub(crate) fn tag_names(&self) -> impl Iterator<Item = &str> {
        self.tags.names()
    }

    /// An `auto:` group (case-insensitive).
    pub(crate) fn group(&self, name: &str) -> Option<&Group> {
        if name.len() > 128 {
            return None;
        }
        let mut buf = [0u8; 128];
        let folded = &mut buf[..name.len()];
        folded.copy_from_slice(name.as_bytes());
        folded.make_ascii_lowercase();
        self.groups.get(std::str::from_utf8(folded).ok()?)
    }

    /// Configured group names.
    pub(crate) fn group_names(&self) -> impl Iterator<Item = &str> {
        self.groups.values().map(|g| &*g.name)
    }

    /// The `/v1/models` body.
    pub(crate) fn models_json(&self) -> &[u8] {
        &self.models_json
    }

    /// The `/v1/models/{id}` body.
    pub(crate) fn model_json(&self, id: &str) -> Option<&[u8]> {
        self.model_json.get(id).map(|b| &**b)
    }

    /// Client-facing model ids of enabled channels.
    pub(crate) fn names(&self) -> &[Box<str>] {
        &self.names
    }

    /// Whether a client key whose allowance is `allowed` (a bitset over the entries; `None`:
    /// every entry) may use the model id or alias `name`.
    pub(crate) fn name_allowed(&self, name: &str, allowed: Option<&[u64]>) -> bool {
        let Some(allowed) = allowed else {
            return true;
        };
        self.lookup(name).is_some_and(|ids| {
            ids.iter().any(|&i| {
                allowed
                    .get(i as usize / 64)
                    .is_some_and(|w| w & (1 << (i % 64)) != 0)
            })
        })
    }

    /// The `/v1/models` body for a key limited to `allowed`: only the models it may use.
    pub(crate) fn models_json_for(&self, allowed: &[u64]) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.names.len() * 80);
        out.extend_from_slice(b"{\"object\":\"list\",\"data\":[");
        let mut first = true;
        for name in self.names.iter() {
            if !self.name_allowed(name, Some(allowed)) {
                continue;
            }
            if let Some(one) = self.model_json.get(name) {
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(one);
            }
        }
        out.extend_from_slice(b"]}");
        out
    }
}

fn boxed(m: HashMap<Box<str>, Vec<u32>>) -> HashMap<Box<str>, Box<[u32]>> {
    m.into_iter()
        .map(|(k, v)| (k, v.into_boxed_slice()))
        .collect()
}

fn listing_owner(mode: Mode, ch: &Channel) -> Box<str> {
    if mode == Mode::Demo {
        "demo".into()
    } else {
        ch.provider.clone()
    }
}

/// A configured price in USD; `None` when its currency has no rate (config validation rejects
/// that, so only a hand-built config gets here: the next source is asked instead of guessing).
fn to_usd(p: &Price, pricing: &PricingConfig) -> Option<EntryPrice> {
    let per_usd = pricing.rate(&p.currency)?;
    Some(p.per_million().scaled(1.0 / per_usd))
}

/// What the id heuristics say about one model id.
struct IdFacts {
    embedding: bool,
    vision: bool,
    tools: bool,
    context: u32,
    params_m: u32,
    quality: f32,
    free_id: bool,
    /// The bundled list price (USD).
    listed: Option<EntryPrice>,
    /// Tags derived from the id.
    tags: Box<[TagId]>,
}

impl IdFacts {
    fn of(model: &str, interner: &mut Interner) -> IdFacts {
        let mut words = Vec::new();
        tags::from_model_id(model, &mut words);
        let lower = model.to_ascii_lowercase();
        IdFacts {
            embedding: specs::is_embedding(model),
            vision: specs::has_vision(model),
            tools: specs::has_tools(model),
            context: specs::context_tokens(model),
            params_m: specs::params_millions(model),
            quality: specs::quality(model),
            free_id: lower.ends_with(":free") || lower.contains("-free"),
            listed: crate::pricing::lookup(model).map(|l| l.price),
            tags: words
                .iter()
                .map(|w| interner.intern(&w.to_ascii_lowercase()))
                .collect(),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn entry(
    channel: u32,
    model: &str,
    id: &IdFacts,
    info: Option<&ModelInfo>,
    disc: Option<&Discovered>,
    channel_price: Option<&Price>,
    local: bool,
    channel_free: bool,
    pricing: &PricingConfig,
) -> Entry {
    let mut caps = Caps::NONE;
    let embedding = info.and_then(|i| i.embedding).unwrap_or(id.embedding);
    // Config first, then discovery, then the id heuristics.
    let vision = info
        .and_then(|i| i.vision)
        .or(disc.and_then(|d| d.vision))
        .unwrap_or(id.vision);
    let tools = info
        .and_then(|i| i.tools)
        .or(disc.and_then(|d| d.tools))
        .unwrap_or(id.tools);
    let json_mode = info
        .and_then(|i| i.json)
        .or(disc.and_then(|d| d.json))
        .unwrap_or(tools);
    for (flag, c) in [
        (embedding, Caps::EMBEDDING),
        (vision, Caps::VISION),
        (tools, Caps::TOOLS),
        (json_mode, Caps::JSON),
    ] {
        if flag {
            caps = caps.union(c);
        }
    }
    // Config (the model's, then the channel's), then discovery (USD already), then the
    // bundled list price. List prices are what the provider charges for its hosted API: a
    // local endpoint serving a model of the same name does not charge them.
    let price = info
        .and_then(|i| i.pricing.as_ref())
        .or(channel_price)
        .and_then(|p| to_usd(p, pricing))
        .or_else(|| {
            disc.and_then(|d| d.price)
                .map(|(input, output)| EntryPrice {
                    input,
                    output,
                    cached: None,
                    cache_write: None,
                })
        })
        .or(if local { None } else { id.listed });
    let free =
        channel_free || id.free_id || price.is_some_and(|p| p.input == 0.0 && p.output == 0.0);
    // A local endpoint without a configured price costs nothing per token.
    let price = price.or(local.then_some(EntryPrice::FREE));
    Entry {
        channel,
        model: model.into(),
        caps,
        context: info
            .and_then(|i| i.context)
            .or(disc.and_then(|d| d.context))
            .unwrap_or(id.context),
        max_output: disc.and_then(|d| d.max_output).unwrap_or(0),
        params_m: info.and_then(|i| i.params_m).unwrap_or(id.params_m),
        // A `:free` id or a channel tagged `free` costs nothing, whatever the channel's price.
        price: if free { Some(EntryPrice::FREE) } else { price },
        quality: info.and_then(|i| i.quality).unwrap_or(id.quality),
        free,
        local,
        tags: Box::new([]),
        context_score: 0.0,
        parameter_score: 0.0,
    }
    .with_static_scores()
}

impl Entry {
    fn with_static_scores(mut self) -> Entry {
        self.context_score = crate::strategy::context_score(self.context);
        self.parameter_score = crate::strategy::parameter_score(self.params_m);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::Overrides;
    use crate::snapshot::Snapshot;
    use std::sync::Arc;

    const CFG: &str = r#"
[pricing]
currency = "CNY"
rates = { CNY = 8.0 }
[providers.remote]
base_url = "http://203.0.113.1:1/v1"
[providers.local]
kind = "ollama"
base_url = "http://127.0.0.1:3/v1"
[[channels]]
id = "remote"
provider = "remote"
models = ["openai/gpt-4o-2024-08-06", "claude-3-5-haiku-20241022", "gpt-4o-mini", "found", "mystery", "deepseek/deepseek-chat:free"]
model_info = { "gpt-4o-mini" = { pricing = { input = 1.6, output = 6.4, cached = 0.8, currency = "CNY" } } }
[[channels]]
id = "local"
provider = "local"
models = ["gpt-4o", "llama3.2:3b"]
[[channels]]
id = "usd-channel"
provider = "remote"
models = ["claude-3-5-haiku"]
pricing = { input = 2.0, output = 4.0, cache_write = 3.0 }
"#;

    fn catalog(text: &str, discovered: &DiscoveryMap) -> Arc<Catalog> {
        let cfg = Config::parse(text, &|_: &str| None).unwrap();
        Snapshot::build_with(
            &cfg,
            1,
            &Default::default(),
            &Default::default(),
            1,
            1,
            discovered,
            &Overrides::default(),
        )
        .catalog
    }

    fn price(c: &Catalog, channel: u32, model: &str) -> Option<EntryPrice> {
        c.entries
            .iter()
            .find(|e| e.channel == channel && &*e.model == model)
            .unwrap_or_else(|| panic!("no entry {channel}/{model}"))
            .price
    }

    #[test]
    fn prices_come_from_config_then_discovery_then_the_bundled_table_in_usd() {
        let mut discovered = DiscoveryMap::new();
        discovered.insert(
            "remote".into(),
            Arc::from(vec![
                Discovered {
                    id: "found".into(),
                    price: Some((0.5, 1.5)),
                    ..Default::default()
                },
                // discovery wins over the bundled table
                Discovered {
                    id: "claude-3-5-haiku-20241022".into(),
                    price: Some((0.7, 3.5)),
                    ..Default::default()
                },
            ]),
        );
        let c = catalog(CFG, &discovered);
        // bundled, through prefix and snapshot normalisation, with cache prices
        let gpt4o = price(&c, 0, "openai/gpt-4o-2024-08-06").unwrap();
        assert_eq!(
            (gpt4o.input, gpt4o.output, gpt4o.cached, gpt4o.cache_write),
            (2.5, 10.0, Some(1.25), None)
        );
        // config in CNY becomes USD (8 CNY per USD), cache price included
        let mini = price(&c, 0, "gpt-4o-mini").unwrap();
        assert_eq!(
            (mini.input, mini.output, mini.cached, mini.cache_write),
            (0.2, 0.8, Some(0.1), None)
        );
        // discovery beats the bundled table, and its prices are USD already
        let haiku = price(&c, 0, "claude-3-5-haiku-20241022").unwrap();
        assert_eq!((haiku.input, haiku.output, haiku.cached), (0.7, 3.5, None));
        assert_eq!(price(&c, 0, "found").unwrap().input, 0.5);
        // unknown everywhere: unknown
        assert_eq!(price(&c, 0, "mystery"), None);
        // a `:free` id costs nothing even though the paid model is listed
        assert!(
            price(&c, 0, "deepseek/deepseek-chat:free")
                .unwrap()
                .is_free()
        );
        // a local endpoint never takes a provider's list price
        assert!(price(&c, 1, "gpt-4o").unwrap().is_free());
        assert!(price(&c, 1, "llama3.2:3b").unwrap().is_free());
        // a channel price wins over the bundled one and carries its cache-write price
        let usd = price(&c, 2, "claude-3-5-haiku").unwrap();
        assert_eq!(
            (usd.input, usd.output, usd.cached, usd.cache_write),
            (2.0, 4.0, None, Some(3.0))
        );
        // without discovery the bundled price (with Anthropic's cache prices) fills in
        let c = catalog(CFG, &DiscoveryMap::new());
        let haiku = price(&c, 0, "claude-3-5-haiku-20241022").unwrap();
        assert_eq!(
            (haiku.input, haiku.output, haiku.cached, haiku.cache_write),
            (0.8, 4.0, Some(0.08), Some(1.0))
        );
        assert!(
            !c.entries
                .iter()
                .any(|e| e.free && &*e.model == "gpt-4o-mini")
        );
    }

    #[test]
    fn an_entry_cost_is_usd_and_reports_in_the_configured_currency() {
        let cfg = Config::parse(CFG, &|_: &str| None).unwrap();
        let c = catalog(CFG, &DiscoveryMap::new());
        let p = price(&c, 0, "gpt-4o-mini").unwrap();
        let usage = crate::tokens::Usage {
            prompt: 1_000_000,
            completion: 500_000,
            cached: 400_000,
            cache_write: 0,
        };
        let usd = crate::pricing::cost(&p, &usage);
        // 600k at 0.2 + 400k at 0.1 + 500k at 0.8 (USD per 1M)
        assert!((usd - (0.12 + 0.04 + 0.4)).abs() < 1e-12, "{usd}");
        let cny = cfg.pricing.from_usd(usd);
        assert!((cny - usd * 8.0).abs() < 1e-12, "{cny}");
    }
}
