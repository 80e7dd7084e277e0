//! Client authentication: which callers may use the gateway, under which name, and for which
//! models.
//!
//! Keys are never stored: the config and the keys file hold the SHA-256 of each key
//! (`sha256 = "<64 hex>"`), and a request's key is hashed and looked up by digest. The lookup is
//! a hash-map probe on the digest followed by a constant-time comparison of all 32 bytes: the
//! time it takes depends on the digest of what the caller sent, never on how much of a real
//! key it matched (finding a digest's preimage is what SHA-256 makes infeasible).
//!
//! A key may carry an expiry (refused from that instant on) and an allowance of model
//! expressions (ids, aliases, `tag:` queries, `auto:` groups). The allowance is evaluated
//! against each snapshot's catalog into a bitset of the entries the key may reach
//! ([`Clients::build`]); routing intersects a request's matches with it, so a key limited to
//! `tag:free` cannot reach a paid model through `auto:` or a bare tag either.
//!
//! Invariants: the key itself is never kept, logged or printed; records and metrics carry the
//! key's `name`. Pure and synchronous (the keys file is read by `config`, off the data plane).
//! Not here: rate limits (`limits`), budgets (`ledger`).

use std::collections::HashMap;
use std::sync::Arc;

use crate::catalog::Catalog;
use crate::config::ClientKeyConfig;
use crate::secret::{digest, same};

/// One client key as the data plane sees it.
#[derive(Debug)]
pub(crate) struct Client {
    /// The name records, logs and metrics carry.
    pub name: Arc<str>,
    digest: [u8; 32],
    /// Unix milliseconds from which the key is refused.
    pub expires_ms: Option<u64>,
    /// Catalog entries the key may reach (`None`: every one).
    pub allowed: Option<Box<[u64]>>,
    /// Its index in [`Clients`] (the limiter's key).
    pub index: u32,
    /// Its rate limits.
    pub limits: crate::config::RateLimits,
}

/// Every client key of one snapshot.
#[derive(Debug, Default)]
pub(crate) struct Clients {
    keys: Vec<Client>,
    by_digest: HashMap<[u8; 32], u32>,
    /// True when requests must carry a key (at least one is configured).
    pub required: bool,
}

/// What a request's credentials amount to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// No keys are configured: the gateway is open (loopback or `allow_unauthenticated`).
    Open,
    /// A valid key: its index in [`Clients`].
    Key(u32),
    /// No key was presented.
    Missing,
    /// A key was presented that is not configured.
    Unknown,
    /// A configured key past its expiry.
    Expired(u32),
}

impl Clients {
    /// The keys of `cfg`, with each allowance resolved against `catalog`. Expressions that
    /// match nothing today (a model not discovered yet) simply allow nothing until they do.
    pub(crate) fn build(keys: &[ClientKeyConfig], catalog: &Catalog) -> Clients {
        let mut out = Clients {
            keys: Vec::with_capacity(keys.len()),
            by_digest: HashMap::with_capacity(keys.len()),
            required: !keys.is_empty(),
        };
        for k in keys {
            let allowed = (!k.models.is_empty()).then(|| {
                let mut words = vec![0u64; catalog.all().len()];
                for e in &k.models {
                    crate::catalog::select::allowance(catalog, e, &mut words);
                }
                words.into_boxed_slice()
            });
            let i = out.keys.len() as u32;
            // A digest listed twice keeps its first name (config validation refuses duplicates
            // within one source; the keys file may repeat a config key).
            out.by_digest.entry(k.sha256).or_insert(i);
            out.keys.push(Client {
                name: k.name.as_str().into(),
                digest: k.sha256,
                expires_ms: k.expires_ms,
                allowed,
                index: i,
                limits: k.limits,
            });
        }
        out
    }

    /// The key with index `i`.
    pub(crate) fn get(&self, i: u32) -> Option<&Client> {
        self.keys.get(i as usize)
    }

    /// Number of keys.
    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    /// Judges the key a request presented (`None`: none) at `now_ms`.
    pub(crate) fn check(&self, presented: Option<&[u8]>, now_ms: u64) -> Verdict {
        if !self.required {
            return Verdict::Open;
        }
        let Some(key) = presented.filter(|k| !k.is_empty()) else {
            return Verdict::Missing;
        };
        let d = digest(key);
        match self.by_digest.get(&d) {
            Some(&i) if same(&self.keys[i as usize].digest, &d) => {
                match self.keys[i as usize].expires_ms {
                    Some(t) if now_ms >= t => Verdict::Expired(i),
                    _ => Verdict::Key(i),
                }
            }
            _ => Verdict::Unknown,
        }
    }
}

/// The key a request carries: `Authorization: Bearer …` (OpenAI), `x-api-key` (Anthropic) or
/// `x-goog-api-key` (Gemini), first found in that order.
pub(crate) fn presented<'a>(header: impl Fn(&[u8]) -> Option<&'a [u8]>) -> Option<&'a [u8]> {
    if let Some(v) = header(b"authorization") {
        let v = trim(v);
        if v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ") {
            return Some(trim(&v[7..]));
        }
    }
    header(b"x-api-key")
        .or_else(|| header(b"x-goog-api-key"))
        .map(trim)
}

/// The `key` parameter of a request target's query (`/v1beta/…:generateContent?key=…`), as
/// Gemini clients send their key.
pub(crate) fn query_key(target: &[u8]) -> Option<&[u8]> {
    let q = &target[target.iter().position(|&b| b == b'?')? + 1..];
    q.split(|&b| b == b'&')
        .find_map(|kv| kv.strip_prefix(b"key="))
        .filter(|v| !v.is_empty())
}

fn trim(v: &[u8]) -> &[u8] {
    v.trim_ascii()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str, secret: &str, expires_ms: Option<u64>) -> ClientKeyConfig {
        ClientKeyConfig {
            name: name.into(),
            sha256: digest(secret.as_bytes()),
            expires_ms,
            models: Vec::new(),
            limits: Default::default(),
            daily_budget: None,
        }
    }

    fn clients(keys: &[ClientKeyConfig]) -> Clients {
        let cfg = crate::config::Config::parse("", &|_: &str| None).expect("empty config");
        let catalog = Catalog::build(
            &cfg,
            &[],
            crate::channel::Mode::Config,
            1,
            &Default::default(),
        );
        Clients::build(keys, &catalog)
    }

    #[test]
    fn verdicts() {
        let c = clients(&[key("a", "sk-a", None), key("old", "sk-old", Some(1_000))]);
        assert!(c.required);
        assert_eq!(c.check(Some(b"sk-a"), 5_000), Verdict::Key(0));
        assert_eq!(c.check(Some(b"sk-old"), 999), Verdict::Key(1));
        assert_eq!(c.check(Some(b"sk-old"), 1_000), Verdict::Expired(1));
        assert_eq!(c.check(Some(b"sk-b"), 0), Verdict::Unknown);
        assert_eq!(c.check(Some(b""), 0), Verdict::Missing);
        assert_eq!(c.check(None, 0), Verdict::Missing);
        assert_eq!(clients(&[]).check(None, 0), Verdict::Open);
        assert_eq!(&*c.get(1).expect("key").name, "old");
    }

    #[test]
    fn presented_key_from_each_family_header() {
        let from = |pairs: &'static [(&'static [u8], &'static [u8])]| {
            presented(|n: &[u8]| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| *v))
        };
        assert_eq!(
            from(&[(b"authorization", b"Bearer  sk-1 ")]),
            Some(&b"sk-1"[..])
        );
        assert_eq!(
            from(&[(b"authorization", b"bearer sk-1")]),
            Some(&b"sk-1"[..])
        );
        assert_eq!(from(&[(b"x-api-key", b"sk-2")]), Some(&b"sk-2"[..]));
        assert_eq!(from(&[(b"x-goog-api-key", b"g-3")]), Some(&b"g-3"[..]));
        // Basic auth is not a bearer key; x-api-key is then used if present.
        assert_eq!(
            from(&[(b"authorization", b"Basic abc"), (b"x-api-key", b"sk-4")]),
            Some(&b"sk-4"[..])
        );
        assert_eq!(from(&[(b"authorization", b"Basic abc")]), None);
        assert_eq!(from(&[]), None);
    }
}
