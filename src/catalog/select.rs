//! Selecting a catalog's entries by model expression: a name (id, alias, else a tag), a tag
//! query with negations, prefixes and size filters, or an `auto:` group's query. Routing ranks
//! what this selects; client keys' allowances are made of it.
//!
//! Invariants: pure functions over an immutable [`Catalog`] writing into caller-provided
//! bitsets (one bit per entry); no allocation except [`allowance`]'s scratch and the error
//! texts; an error never names a tag outside the caller's allowance.

use std::fmt::Write as _;

use super::{Catalog, Entry};
use crate::expr::{self, Dim, Expr, Query};

/// Adds to `words` (a bitset over `cat`'s entries) every entry the expression `expr` matches:
/// an id or alias, a tag, a `tag:` query with its size filters, or an `auto:` group's query.
/// How a client key's `models` allowance becomes the set routing intersects with. An
/// expression that does not parse or matches nothing adds nothing (config validation reports
/// the former; the latter may match once discovery finds the model).
pub(crate) fn allowance(cat: &Catalog, expr: &str, words: &mut [u64]) {
    let Ok(parsed) = expr::parse(expr) else {
        return;
    };
    let group_query;
    let resolved = match parsed {
        Expr::Group(name) => {
            let Some(g) = cat.group(name) else { return };
            group_query = g.query.clone();
            match expr::parse(&group_query) {
                Ok(Expr::Group(_)) | Err(_) => return,
                Ok(e) => e,
            }
        }
        e => e,
    };
    match resolved {
        Expr::Name(name) => {
            if let Some(ids) = cat.lookup(name) {
                for &i in ids {
                    if let Some(w) = words.get_mut(i as usize / 64) {
                        *w |= 1 << (i % 64);
                    }
                }
            } else if let Some(t) = cat.tag(name) {
                for (w, p) in words.iter_mut().zip(cat.posting(t).words()) {
                    *w |= p;
                }
            }
        }
        Expr::Query(q) => {
            let mut found = vec![0u64; words.len()];
            if match_query(cat, &q, &mut found, None).is_ok() {
                tags_for_each(&found, |i| {
                    if size_ok(&cat.entries[i], &q) {
                        words[i / 64] |= 1 << (i % 64);
                    }
                });
            }
        }
        Expr::Group(_) => {}
    }
}

fn tags_for_each(words: &[u64], f: impl FnMut(usize)) {
    super::tags::for_each_bit(words, f);
}

/// ANDs the query's positive tags (most selective first) and removes negatives.
/// A tag the catalog lacks is an error naming the closest tag a key limited to `allowed` may
/// reach.
pub(crate) fn match_query(
    cat: &Catalog,
    q: &Query<'_>,
    words: &mut [u64],
    allowed: Option<&[u64]>,
) -> Result<(), String> {
    let mut pos: arrayvec::ArrayVec<(u32, u32), { expr::MAX_TERMS }> = arrayvec::ArrayVec::new();
    for t in &q.pos {
        match cat.tag(t) {
            Some(id) => pos.push((cat.posting(id).count() as u32, id)),
            None => return Err(unknown_tag(cat, t, allowed)),
        }
    }
    pos.sort_unstable();
    match pos.first() {
        Some(&(_, id)) => words.copy_from_slice(cat.posting(id).words()),
        None => words.copy_from_slice(cat.all()),
    }
    for &(_, id) in pos.iter().skip(1) {
        for (w, p) in words.iter_mut().zip(cat.posting(id).words()) {
            *w &= p;
        }
    }
    for t in &q.neg {
        if let Some(id) = cat.tag(t) {
            for (w, p) in words.iter_mut().zip(cat.posting(id).words()) {
                *w &= !p;
            }
        }
    }
    for prefix in &q.prefixes {
        let mut any = false;
        for (wi, w) in words.iter_mut().enumerate() {
            let mut bits = *w;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let e = &cat.entries[wi * 64 + b];
                if has_prefix(&e.model, prefix) {
                    any = true;
                } else {
                    *w &= !(1 << b);
                }
            }
        }
        if !any {
            return Err(format!(
                "No model id starts with `{}` (the part before `->`/`-<`).",
                short(prefix)
            ));
        }
    }
    Ok(())
}

/// True when `id`, or its part after the last `/`, starts with `prefix` (ASCII case folded).
fn has_prefix(id: &str, prefix: &str) -> bool {
    let starts = |s: &str| {
        s.len() >= prefix.len()
            && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
    };
    starts(id) || id.rsplit_once('/').is_some_and(|(_, tail)| starts(tail))
}

/// Whether `e` passes the query's parameter and context filters (an unknown size fails any).
pub(crate) fn size_ok(e: &Entry, q: &Query<'_>) -> bool {
    q.filters.iter().all(|f| {
        let value = match f.dim {
            Dim::Params => u64::from(e.params_m),
            Dim::Context => u64::from(e.context),
        };
        value != 0 && f.cmp.holds(value, f.value)
    })
}

/// The tags of entries a key limited to `allowed` may use (every tag for `None`): suggestions
/// never name what lies outside a key's allowance.
pub(crate) fn reachable_tags<'c>(cat: &'c Catalog, allowed: Option<&[u64]>) -> Vec<&'c str> {
    cat.tag_names()
        .filter(|t| {
            let Some(allowed) = allowed else {
                return true;
            };
            cat.tag(t).is_some_and(|id| {
                cat.posting(id)
                    .words()
                    .iter()
                    .zip(allowed)
                    .any(|(p, a)| p & a != 0)
            })
        })
        .collect()
}

fn unknown_tag(cat: &Catalog, tag: &str, allowed: Option<&[u64]>) -> String {
    let tags = reachable_tags(cat, allowed);
    let mut msg = format!("No model has the tag `{}`.", short(tag));
    if let Some(close) = crate::config::closest(&tag.to_ascii_lowercase(), &tags) {
        let _ = write!(msg, " Closest tag: `{close}`.");
    }
    msg
}

fn short(s: &str) -> &str {
    crate::error::truncate(s, 200)
}
