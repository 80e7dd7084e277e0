//! Tags: extraction from model ids (DESIGN.md §5), interning to small integer ids, and bitsets
//! over catalog entries so a multi-tag query is a few word-wise ANDs.
//!
//! Tags of a model = its id split on `/ : @ - _ ,` (lower-cased, parts longer than one
//! character) ∪ whole segments split on `/ : @` (e.g. `qwen3-30b-a3b`), with a trailing date
//! (`-20240307`, `-2024-08-06`) also dropped into its own segment tag ∪ the channel's `tags` ∪
//! the provider id and kind ∪ the tags of every alias naming the model ∪ derived tags: `free`,
//! `local`, `vision`, `tools`, `embedding`, and a size class `small` (< 15B parameters),
//! `medium` (15–100B) or `large` (> 100B) when the size is known.
//!
//! Invariants: tag text is lower-case ASCII-folded; ids are dense `0..len`; lookups never
//! allocate (the query side folds case into a stack buffer).

use std::collections::HashMap;

/// A tag's interned id.
pub(crate) type TagId = u32;

/// Adds the tags of a model id to `out` (lower-cased, de-duplicated by the caller).
pub(crate) fn from_model_id(id: &str, out: &mut Vec<String>) {
    let lower = id.to_ascii_lowercase();
    for part in lower.split(['/', ':', '@', '-', '_', ',']) {
        if part.len() > 1 {
            out.push(part.to_string());
        }
    }
    for seg in lower.split(['/', ':', '@']) {
        if seg.len() >= 3 && seg.contains(['-', '_', '.']) {
            out.push(seg.to_string());
            if let Some(undated) = strip_date(seg)
                && undated.len() >= 3
            {
                out.push(undated.to_string());
            }
        }
    }
}

/// `claude-3-haiku-20240307` → `claude-3-haiku`; `gpt-4o-2024-08-06` → `gpt-4o`.
fn strip_date(seg: &str) -> Option<&str> {
    let b = seg.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    if b.len() > 9 && b[b.len() - 9] == b'-' && digits(&b[b.len() - 8..]) {
        return Some(&seg[..seg.len() - 9]);
    }
    if b.len() > 11
        && b[b.len() - 11] == b'-'
        && digits(&b[b.len() - 10..b.len() - 6])
        && b[b.len() - 6] == b'-'
        && digits(&b[b.len() - 5..b.len() - 3])
        && b[b.len() - 3] == b'-'
        && digits(&b[b.len() - 2..])
    {
        return Some(&seg[..seg.len() - 11]);
    }
    None
}

/// The size class tag for a parameter count in millions (0: none).
pub(crate) fn size_class(params_m: u32) -> Option<&'static str> {
    match params_m {
        0 => None,
        1..15_000 => Some("small"),
        15_000..=100_000 => Some("medium"),
        _ => Some("large"),
    }
}

/// Interned tag names.
#[derive(Debug, Default)]
pub(crate) struct Interner {
    ids: HashMap<Box<str>, TagId>,
    names: Vec<Box<str>>,
}

/// Longest tag looked up through the allocation-free path.
const MAX_LOOKUP: usize = 128;

impl Interner {
    /// The id of `tag` (already lower-case), interning it if new.
    pub(crate) fn intern(&mut self, tag: &str) -> TagId {
        if let Some(&id) = self.ids.get(tag) {
            return id;
        }
        let id = self.names.len() as TagId;
        self.names.push(tag.into());
        self.ids.insert(tag.into(), id);
        id
    }

    /// The id of `tag`, folding ASCII case without allocating.
    pub(crate) fn get(&self, tag: &str) -> Option<TagId> {
        if tag.len() > MAX_LOOKUP {
            return None;
        }
        let mut buf = [0u8; MAX_LOOKUP];
        let folded = &mut buf[..tag.len()];
        folded.copy_from_slice(tag.as_bytes());
        folded.make_ascii_lowercase();
        let folded = std::str::from_utf8(folded).ok()?;
        self.ids.get(folded).copied()
    }

    /// Number of tags.
    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }

    /// All tag names.
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|n| &**n)
    }
}

/// A fixed-size bitset over catalog entries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bitset(Box<[u64]>);

impl Bitset {
    /// An empty set for `n` entries.
    pub(crate) fn new(n: usize) -> Bitset {
        Bitset(vec![0; n.div_ceil(64)].into_boxed_slice())
    }
    /// Adds entry `i`.
    pub(crate) fn insert(&mut self, i: usize) {
        self.0[i / 64] |= 1 << (i % 64);
    }
    /// True when entry `i` is in the set.
    #[cfg(test)]
    pub(crate) fn contains(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }
    /// Number of entries in the set.
    pub(crate) fn count(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
    /// The words.
    pub(crate) fn words(&self) -> &[u64] {
        &self.0
    }
}

/// Calls `f` for every set bit of `words`, in ascending order.
pub(crate) fn for_each_bit(words: &[u64], mut f: impl FnMut(usize)) {
    for (wi, &w) in words.iter().enumerate() {
        let mut w = w;
        while w != 0 {
            let b = w.trailing_zeros() as usize;
            f(wi * 64 + b);
            w &= w - 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(id: &str) -> Vec<String> {
        let mut v = Vec::new();
        from_model_id(id, &mut v);
        v.dedup();
        v
    }

    #[test]
    fn extraction_matches_the_documented_examples() {
        let t = tags("qwen/qwen3-30b-a3b:free");
        for want in ["qwen", "qwen3", "30b", "a3b", "free", "qwen3-30b-a3b"] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        let t = tags("anthropic/claude-3-haiku-20240307");
        for want in [
            "anthropic",
            "claude",
            "haiku",
            "claude-3-haiku-20240307",
            "claude-3-haiku",
        ] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        assert!(!t.iter().any(|x| x == "3"), "single characters are dropped");
        let t = tags("Qwen/Qwen2.5-72B-Instruct");
        for want in ["qwen", "qwen2.5", "72b", "instruct", "qwen2.5-72b-instruct"] {
            assert!(t.iter().any(|x| x == want), "{want} in {t:?}");
        }
        let t = tags("gpt-4o-2024-08-06");
        assert!(t.iter().any(|x| x == "gpt-4o"), "{t:?}");
    }

    #[test]
    fn interning_folds_case_on_lookup() {
        let mut i = Interner::default();
        let a = i.intern("qwen3");
        assert_eq!(i.intern("qwen3"), a);
        assert_eq!(i.get("QWEN3"), Some(a));
        assert_eq!(i.get("nope"), None);
        assert_eq!(i.get(&"x".repeat(500)), None);
    }

    #[test]
    fn bitsets() {
        let mut b = Bitset::new(130);
        b.insert(0);
        b.insert(64);
        b.insert(129);
        assert!(b.contains(64) && !b.contains(63) && !b.contains(1000));
        assert_eq!(b.count(), 3);
        let mut seen = Vec::new();
        for_each_bit(b.words(), |i| seen.push(i));
        assert_eq!(seen, [0, 64, 129]);
        assert_eq!(size_class(8000), Some("small"));
        assert_eq!(size_class(70_000), Some("medium"));
        assert_eq!(size_class(0), None);
    }
}
