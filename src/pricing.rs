//! Token prices and what an answer costs: the bundled list-price table
//! (`configs/pricing.toml`, compiled in), looking a model id up in it, and the cost arithmetic
//! over a [`Usage`].
//!
//! Units: a [`Price`] is per 1M tokens in one currency. The bundled table is USD, catalog
//! entries carry USD (routing compares prices in one currency), and reporting converts USD to
//! the `[pricing]` currency with [`crate::config::PricingConfig::from_usd`].
//!
//! Invariants: the table is parsed and validated once, on first use; every price in it is
//! finite and non-negative. A bundled file that fails validation (a build that skipped the unit
//! test) degrades to an empty table with one error log, never a panic. Lookups are pure and
//! allocate a lower-cased copy of the id: they run when a catalog is built, not per request.
//! Not here: where an entry's price comes from (config, discovery, this table: `catalog`),
//! budget enforcement, or the `[pricing]` config table itself (`config`).

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::tokens::Usage;

/// Prices per 1M tokens, in one currency (USD unless a caller says otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Price {
    /// Prompt tokens neither read from nor written to a prompt cache.
    pub input: f64,
    /// Completion tokens (reasoning included).
    pub output: f64,
    /// Prompt tokens read from a prompt cache (`None`: billed as `input`).
    pub cached: Option<f64>,
    /// Prompt tokens written to a prompt cache (`None`: billed as `input`).
    pub cache_write: Option<f64>,
}

impl Price {
    /// Nothing per token (local endpoints, free channels and `:free` ids).
    pub(crate) const FREE: Price = Price {
        input: 0.0,
        output: 0.0,
        cached: None,
        cache_write: None,
    };

    /// The price of a cache-read token.
    pub(crate) fn cached_or_input(&self) -> f64 {
        self.cached.unwrap_or(self.input)
    }

    /// The price of a cache-write token.
    pub(crate) fn cache_write_or_input(&self) -> f64 {
        self.cache_write.unwrap_or(self.input)
    }

    /// Every price times `factor` (a currency conversion).
    pub(crate) fn scaled(self, factor: f64) -> Price {
        Price {
            input: self.input * factor,
            output: self.output * factor,
            cached: self.cached.map(|p| p * factor),
            cache_write: self.cache_write.map(|p| p * factor),
        }
    }

    /// True when no token costs anything.
    #[cfg(test)]
    pub(crate) fn is_free(&self) -> bool {
        self.input == 0.0
            && self.output == 0.0
            && self.cached_or_input() == 0.0
            && self.cache_write_or_input() == 0.0
    }
}

/// What `usage` costs at `price`, in `price`'s currency.
///
/// `usage.prompt` counts every input token; its `cached` part is billed at the cache-read price
/// and its `cache_write` part at the cache-write price (each the input price when the model has
/// none), the rest of the prompt at the input price and `completion` at the output price. An
/// upstream reporting more cache tokens than prompt tokens is believed on the cache counts (they
/// are the specific ones) and billed nothing more at the input price.
pub(crate) fn cost(price: &Price, usage: &Usage) -> f64 {
    let plain = usage
        .prompt
        .saturating_sub(usage.cached)
        .saturating_sub(usage.cache_write);
    let per_million = plain as f64 * price.input
        + usage.cached as f64 * price.cached_or_input()
        + usage.cache_write as f64 * price.cache_write_or_input()
        + usage.completion as f64 * price.output;
    per_million / 1_000_000.0
}

/// One model of the bundled table.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Listed {
    /// The id the table lists it under (lower case, no prefix, no snapshot suffix).
    pub model: Box<str>,
    /// List price in USD per 1M tokens.
    pub price: Price,
    /// The table section: the provider whose list price it is.
    pub provider: Box<str>,
    /// The pricing page the price was taken from.
    pub source: Box<str>,
    /// The date the price was read (`YYYY-MM-DD`).
    pub as_of: Box<str>,
}

/// A parsed, validated price table.
#[derive(Debug, Default)]
pub(crate) struct Table {
    rows: Vec<Listed>,
    /// Every id and alias → index into `rows`.
    by_id: HashMap<Box<str>, usize>,
}

/// The bundled table's text, as compiled in.
pub(crate) const BUNDLED: &str = include_str!("../configs/pricing.toml");

/// The bundled table, parsed on first use.
pub(crate) fn bundled() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        Table::parse(BUNDLED).unwrap_or_else(|e| {
            tracing::error!(error = %e, "bundled price table is invalid; no list prices");
            Table::default()
        })
    })
}

/// The bundled list price of `model`, by [`Table::lookup`].
pub(crate) fn lookup(model: &str) -> Option<&'static Listed> {
    bundled().lookup(model)
}

/// Variant tags after a `:` that name the same model at the same list price (OpenRouter's
/// routing and moderation variants). Anything else after a colon (`llama3.2:3b`, `:online`
/// with its search fee) names a different model or price and is kept.
const SAME_MODEL_TAGS: &[&str] = &["free", "beta", "nitro", "floor", "thinking", "extended"];

/// Longest id looked up: longer ones are not model ids.
const MAX_ID: usize = 256;

/// `model` lower-cased, without a `provider/` or `models/` prefix (whatever precedes the last
/// `/`), a same-model variant tag (`:free`, `:beta`, …) or a Vertex-style `@version`. Snapshot
/// suffixes are kept: [`Table::lookup`] tries the id with them first.
pub(crate) fn normalise(model: &str) -> String {
    let lower = model.trim().to_ascii_lowercase();
    let mut id = lower.rsplit_once('/').map_or(lower.as_str(), |(_, m)| m);
    if let Some((base, tag)) = id.rsplit_once(':')
        && SAME_MODEL_TAGS.contains(&tag)
    {
        id = base;
    }
    if let Some((base, version)) = id.rsplit_once('@')
        && (version == "latest" || (!version.is_empty() && all_digits(version)))
    {
        id = base;
    }
    id.to_string()
}

/// `id` without one trailing snapshot marker, or `None` when it ends in none: `-latest`,
/// `-YYYY-MM-DD`, or a last `-` segment of 8 (`YYYYMMDD`), 4 (`MMDD`/`YYMM`) or 3 (`001`)
/// digits.
fn strip_snapshot(id: &str) -> Option<&str> {
    if let Some(base) = id.strip_suffix("-latest") {
        return Some(base);
    }
    let (rest, last) = id.rsplit_once('-')?;
    if !all_digits(last) {
        return None;
    }
    match last.len() {
        8 | 4 | 3 => Some(rest),
        // `-YYYY-MM-DD`: the day, then the month and year segments before it.
        2 => {
            let (rest, month) = rest.rsplit_once('-')?;
            let (base, year) = rest.rsplit_once('-')?;
            (month.len() == 2 && year.len() == 4 && all_digits(month) && all_digits(year))
                .then_some(base)
        }
        _ => None,
    }
}

fn all_digits(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_digit())
}

impl Table {
    /// Parses and validates a table in the `configs/pricing.toml` format. The error names the
    /// key path of the first problem.
    pub(crate) fn parse(text: &str) -> Result<Table, String> {
        let raw: RawTable = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
        if raw.currency != "USD" {
            return Err(format!(
                "currency: the table is in USD, got \"{}\"",
                raw.currency
            ));
        }
        let mut table = Table::default();
        for (provider, section) in raw.providers {
            let at = format!("providers.{provider}");
            check_source(&format!("{at}.source"), &section.source)?;
            check_date(&format!("{at}.as_of"), &section.as_of)?;
            for (model, e) in section.models {
                let at = format!("{at}.models.\"{model}\"");
                for (key, value) in [
                    ("input", Some(e.input)),
                    ("output", Some(e.output)),
                    ("cached", e.cached),
                    ("cache_write", e.cache_write),
                ] {
                    if let Some(v) = value
                        && !(v.is_finite() && v >= 0.0)
                    {
                        return Err(format!(
                            "{at}.{key}: prices are non-negative numbers, got {v}"
                        ));
                    }
                }
                let source = e.source.unwrap_or_else(|| section.source.clone());
                let as_of = e.as_of.unwrap_or_else(|| section.as_of.clone());
                check_source(&format!("{at}.source"), &source)?;
                check_date(&format!("{at}.as_of"), &as_of)?;
                let index = table.rows.len();
                for (i, id) in std::iter::once(&model).chain(&e.aliases).enumerate() {
                    let path = if i == 0 {
                        at.clone()
                    } else {
                        format!("{at}.aliases")
                    };
                    check_id(&path, id)?;
                    if table.by_id.insert(id.as_str().into(), index).is_some() {
                        return Err(format!("{path}: \"{id}\" is listed twice"));
                    }
                }
                table.rows.push(Listed {
                    model: model.into(),
                    price: Price {
                        input: e.input,
                        output: e.output,
                        cached: e.cached,
                        cache_write: e.cache_write,
                    },
                    provider: provider.as_str().into(),
                    source: source.into(),
                    as_of: as_of.into(),
                });
            }
        }
        Ok(table)
    }

    /// The row for `model`: its [`normalise`]d id exactly, else that id without one snapshot
    /// suffix after another (`claude-3-5-sonnet-20241022` → `claude-3-5-sonnet`,
    /// `gpt-4o-2024-08-06` → `gpt-4o`), so a snapshot with its own row keeps its own price.
    pub(crate) fn lookup(&self, model: &str) -> Option<&Listed> {
        if model.len() > MAX_ID {
            return None;
        }
        let id = normalise(model);
        let mut at = id.as_str();
        // A few markers at most (`-2024-08-06` is one); the bound keeps odd ids cheap.
        for _ in 0..4 {
            if let Some(&i) = self.by_id.get(at) {
                return self.rows.get(i);
            }
            at = strip_snapshot(at)?;
        }
        None
    }

    #[cfg(test)]
    /// Every row, in table order.
    pub(crate) fn rows(&self) -> &[Listed] {
        &self.rows
    }

    #[cfg(test)]
    /// Number of models.
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }
}

/// An id the lookup can reach: what [`normalise`] leaves, lower case, no spaces.
fn check_id(path: &str, id: &str) -> Result<(), String> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID
        && normalise(id) == id
        && !id.contains(['/', ':', '@'])
        && !id
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path}: \"{id}\" is not a lower-case model id without prefix, tag or spaces"
        ))
    }
}

fn check_source(path: &str, url: &str) -> Result<(), String> {
    if url.starts_with("https://") && url.len() > "https://".len() {
        Ok(())
    } else {
        Err(format!("{path}: an https:// pricing page, got \"{url}\""))
    }
}

fn check_date(path: &str, date: &str) -> Result<(), String> {
    let b = date.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = date.get(r)?;
        all_digits(s).then(|| s.parse().ok()).flatten()
    };
    let ok = b.len() == 10
        && b.get(4) == Some(&b'-')
        && b.get(7) == Some(&b'-')
        && num(0..4).is_some_and(|y| y >= 2020)
        && num(5..7).is_some_and(|m| (1..=12).contains(&m))
        && num(8..10).is_some_and(|d| (1..=31).contains(&d));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{path}: a date like \"2025-12-01\", got \"{date}\""
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTable {
    currency: String,
    #[serde(default)]
    providers: BTreeMap<String, RawSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSection {
    source: String,
    as_of: String,
    #[serde(default)]
    models: BTreeMap<String, RawModel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    input: f64,
    output: f64,
    cached: Option<f64>,
    cache_write: Option<f64>,
    #[serde(default)]
    aliases: Vec<String>,
    source: Option<String>,
    as_of: Option<String>,
    // Read so the file can say what a price leaves out; not used by the arithmetic.
    #[allow(dead_code)]
    note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(prompt: u64, completion: u64, cached: u64, cache_write: u64) -> Usage {
        Usage {
            prompt,
            completion,
            cached,
            cache_write,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1.0)
    }

    #[test]
    fn the_bundled_table_parses_and_every_price_is_sane() {
        let t = Table::parse(BUNDLED).unwrap();
        assert!(t.len() >= 40, "{} models", t.len());
        for row in t.rows() {
            let p = row.price;
            for v in [
                p.input,
                p.output,
                p.cached_or_input(),
                p.cache_write_or_input(),
            ] {
                assert!(v.is_finite() && v >= 0.0, "{row:?}");
            }
            // A cache read never costs more than a plain input token; a write never less.
            assert!(p.cached_or_input() <= p.input, "{row:?}");
            assert!(p.cache_write_or_input() >= p.input, "{row:?}");
            assert!(row.source.starts_with("https://"), "{row:?}");
        }
        // Every provider the brief names is covered.
        for id in [
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o1",
            "o3",
            "o3-mini",
            "o4-mini",
            "gpt-5",
            "gpt-5-mini",
            "text-embedding-3-small",
            "text-embedding-3-large",
            "claude-3-5-sonnet",
            "claude-3-7-sonnet",
            "claude-3-5-haiku",
            "claude-sonnet-4",
            "claude-opus-4",
            "gemini-1.5-pro",
            "gemini-1.5-flash",
            "gemini-2.0-flash",
            "gemini-2.5-pro",
            "gemini-2.5-flash",
            "deepseek-chat",
            "deepseek-reasoner",
            "mistral-large",
            "llama-3.3-70b-versatile",
            "qwen-plus",
            "grok-3",
        ] {
            assert!(t.lookup(id).is_some(), "{id} missing");
        }
        // and the lazily parsed copy is the same table
        assert_eq!(bundled().len(), t.len());
    }

    #[test]
    fn lookups_fold_case_prefixes_tags_and_snapshots() {
        let t = bundled();
        let id = |m: &str| t.lookup(m).map(|l| &*l.model);
        assert_eq!(id("GPT-4o"), Some("gpt-4o"));
        assert_eq!(id("openai/gpt-4o-mini"), Some("gpt-4o-mini"));
        assert_eq!(id("models/gemini-1.5-pro"), Some("gemini-1.5-pro"));
        assert_eq!(id("google/gemini-2.0-flash-001"), Some("gemini-2.0-flash"));
        assert_eq!(id("gemini-1.5-pro-002"), Some("gemini-1.5-pro"));
        assert_eq!(id("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(id("o3-mini-2025-01-31"), Some("o3-mini"));
        assert_eq!(id("claude-3-5-sonnet-20241022"), Some("claude-3-5-sonnet"));
        assert_eq!(id("claude-3-5-sonnet-latest"), Some("claude-3-5-sonnet"));
        assert_eq!(id("claude-3-7-sonnet@20250219"), Some("claude-3-7-sonnet"));
        assert_eq!(id("claude-sonnet-4-20250514"), Some("claude-sonnet-4"));
        assert_eq!(id("claude-opus-4-1-20250805"), Some("claude-opus-4-1"));
        assert_eq!(id("anthropic/claude-3.5-sonnet"), Some("claude-3-5-sonnet"));
        assert_eq!(
            id("anthropic/claude-3.7-sonnet:thinking"),
            Some("claude-3-7-sonnet")
        );
        assert_eq!(id("deepseek/deepseek-chat:free"), Some("deepseek-chat"));
        assert_eq!(id("mistral-large-latest"), Some("mistral-large"));
        assert_eq!(id("mistral-small-2503"), Some("mistral-small"));
        assert_eq!(id("grok-4-0709"), Some("grok-4"));
        assert_eq!(id("  O4-Mini  "), Some("o4-mini"));
        // a snapshot priced differently keeps its own row
        let first = t.lookup("openai/gpt-4o-2024-05-13").unwrap();
        assert_eq!(
            (first.model.as_ref(), first.price.input),
            ("gpt-4o-2024-05-13", 5.0)
        );
        assert_eq!(t.lookup("gpt-4o-2024-11-20").unwrap().price.input, 2.5);
        // a tag that changes the model or price, and unknown ids, find nothing
        assert_eq!(id("llama3.2:3b"), None);
        assert_eq!(id("openai/gpt-4o:online"), None);
        assert_eq!(id("gpt-4o-mini-tts"), None);
        assert_eq!(id("gpt-4o-realtime-preview"), None);
        assert_eq!(id("unknown-model-2024-08-06"), None);
        assert_eq!(id(""), None);
        assert_eq!(id("/"), None);
        assert_eq!(id("-latest-latest-latest-latest-latest"), None);
        assert_eq!(id(&"gpt-4o".repeat(100)), None);
        // the lookup is by whole id, never by prefix
        assert_eq!(id("gpt-4"), None);
        assert_eq!(id("o3-pro"), None);
    }

    #[test]
    fn normalise_keeps_what_changes_the_model() {
        assert_eq!(normalise("OpenRouter/OpenAI/GPT-4o:beta"), "gpt-4o");
        assert_eq!(normalise("qwen2.5-coder:32b"), "qwen2.5-coder:32b");
        assert_eq!(normalise("gemini-1.5-pro@002"), "gemini-1.5-pro");
        assert_eq!(normalise("x@preview"), "x@preview");
        assert_eq!(normalise("gpt-4o-2024-08-06"), "gpt-4o-2024-08-06");
        assert_eq!(strip_snapshot("a-2024-08-06"), Some("a"));
        assert_eq!(strip_snapshot("a-20241022"), Some("a"));
        assert_eq!(strip_snapshot("a-0125"), Some("a"));
        assert_eq!(strip_snapshot("a-001"), Some("a"));
        assert_eq!(strip_snapshot("a-latest"), Some("a"));
        assert_eq!(strip_snapshot("claude-opus-4-1"), None);
        assert_eq!(strip_snapshot("a-08-06"), None);
        assert_eq!(strip_snapshot("mini"), None);
    }

    #[test]
    fn cost_bills_each_kind_of_token_at_its_price() {
        let claude = Price {
            input: 3.0,
            output: 15.0,
            cached: Some(0.30),
            cache_write: Some(3.75),
        };
        // 10k prompt of which 6k cache reads and 2k cache writes, 1k completion
        let c = cost(&claude, &usage(10_000, 1_000, 6_000, 2_000));
        let want = (2_000.0 * 3.0 + 6_000.0 * 0.30 + 2_000.0 * 3.75 + 1_000.0 * 15.0) / 1e6;
        assert!(close(c, want), "{c} vs {want}");
        // no cache prices: cache tokens cost the input price
        let plain = Price {
            input: 2.0,
            output: 8.0,
            cached: None,
            cache_write: None,
        };
        let c = cost(&plain, &usage(10_000, 1_000, 6_000, 2_000));
        assert!(close(c, (10_000.0 * 2.0 + 1_000.0 * 8.0) / 1e6), "{c}");
        // no usage costs nothing; free costs nothing
        assert_eq!(cost(&claude, &Usage::default()), 0.0);
        assert_eq!(
            cost(&Price::FREE, &usage(1_000_000, 1_000_000, 10, 10)),
            0.0
        );
        assert!(Price::FREE.is_free() && !claude.is_free());
        // cache counts above the prompt are believed; nothing is billed twice or negative
        let c = cost(&claude, &usage(100, 0, 150, 50));
        assert!(close(c, (150.0 * 0.30 + 50.0 * 3.75) / 1e6), "{c}");
        // huge counts stay finite
        assert!(cost(&claude, &usage(u64::MAX, u64::MAX, u64::MAX, u64::MAX)).is_finite());
        // a converted price converts the cost by the same factor
        let cny = claude.scaled(7.1);
        let u = usage(10_000, 1_000, 6_000, 2_000);
        assert!(close(cost(&cny, &u), cost(&claude, &u) * 7.1));
        assert_eq!(cny.cached, Some(0.30 * 7.1));
    }

    #[test]
    fn invalid_tables_name_the_key() {
        let section = |models: &str| {
            format!(
                "currency = \"USD\"\n[providers.x]\nsource = \"https://x.example/p\"\nas_of = \"2025-01-02\"\n[providers.x.models]\n{models}\n"
            )
        };
        assert!(Table::parse(&section("\"m\" = { input = 1, output = 2 }")).is_ok());
        for (models, want) in [
            (
                "\"m\" = { input = -1, output = 2 }",
                "providers.x.models.\"m\".input",
            ),
            (
                "\"m\" = { input = 1, output = nan }",
                "providers.x.models.\"m\".output",
            ),
            (
                "\"m\" = { input = 1, output = 2, cached = inf }",
                "providers.x.models.\"m\".cached",
            ),
            (
                "\"M\" = { input = 1, output = 2 }",
                "providers.x.models.\"M\"",
            ),
            (
                "\"a/m\" = { input = 1, output = 2 }",
                "providers.x.models.\"a/m\"",
            ),
            (
                "\"m\" = { input = 1, output = 2 }\n\"n\" = { input = 1, output = 2, aliases = [\"m\"] }",
                "providers.x.models.\"n\".aliases",
            ),
            (
                "\"m\" = { input = 1, output = 2, as_of = \"2025-13-01\" }",
                "providers.x.models.\"m\".as_of",
            ),
            (
                "\"m\" = { input = 1, output = 2, source = \"http://x\" }",
                "providers.x.models.\"m\".source",
            ),
        ] {
            let e = Table::parse(&section(models)).unwrap_err();
            assert!(e.starts_with(want), "{models}: {e}");
        }
        let e = Table::parse("currency = \"EUR\"").unwrap_err();
        assert!(e.starts_with("currency"), "{e}");
        let e = Table::parse(&section("\"m\" = { input = 1, output = 2, extra = 1 }")).unwrap_err();
        assert!(e.contains("extra"), "{e}");
    }
}
