//! The `model` field's expression language (DESIGN.md §5): exact ids and aliases, tag queries
//! with negations, parameter and context size filters, `prefix->8b` comparisons and `auto:`
//! groups; and the capability names requests and key allowances use ([`Caps`]).
//!
//! ```text
//! expr   := "auto:" NAME                      a configured group
//!         | ("tag:" | "tags:") terms          a tag query (prefix case-insensitive)
//!         | term ("," term)+                   a bare comma list is a tag query
//!         | PREFIX CMPOP SIZE                  `qwen3->8b`: tag PREFIX and parameters CMP SIZE
//!         | NAME                               exact id, else alias, else a one-segment query
//! terms  := term ("," term)*
//! term   := "!" TAG | CMP SIZE | "ctx" CMP SIZE | PREFIX CMPOP SIZE | TAG
//! CMP    := ">=" | "<=" | ">" | "<" | "="      CMPOP := "->=" | "-<=" | "->" | "-<"
//! SIZE   := number + unit: parameters `b` (billions) or `m` (millions);
//!           context (after `ctx`) `k` (thousands) or `m` (millions) of tokens
//! ```
//!
//! Invariants: parsing borrows the input and never allocates on success (fixed-capacity
//! vectors); every error names the term and what was expected. Operators are matched longest
//! first, so `->=` is ≥ (the original read it as >).

use arrayvec::ArrayVec;

/// Most positive, negative or filter terms in one query.
pub(crate) const MAX_TERMS: usize = 16;

/// Model capabilities, as a small bit set.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Caps(u8);

impl Caps {
    /// No capability.
    pub const NONE: Caps = Caps(0);
    /// Image input.
    pub const VISION: Caps = Caps(1);
    /// Tool / function calling.
    pub const TOOLS: Caps = Caps(2);
    /// JSON mode (`response_format`).
    pub const JSON: Caps = Caps(4);
    /// An embedding model (never serves chat).
    pub const EMBEDDING: Caps = Caps(8);

    /// Names, as in `required_capabilities`.
    pub const NAMES: &[(&'static str, Caps)] = &[
        ("vision", Caps::VISION),
        ("tools", Caps::TOOLS),
        ("function_calling", Caps::TOOLS),
        ("json", Caps::JSON),
        ("json_mode", Caps::JSON),
        ("embedding", Caps::EMBEDDING),
    ];

    /// A capability a chat request can require, by name (`embedding` is not one: embedding
    /// models never serve chat).
    pub fn parse(name: &str) -> Option<Caps> {
        Caps::NAMES
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.trim()))
            .map(|(_, c)| *c)
            .filter(|c| *c != Caps::EMBEDDING)
    }
    /// Both sets.
    pub fn union(self, other: Caps) -> Caps {
        Caps(self.0 | other.0)
    }
    /// True when every capability of `other` is in `self`.
    pub fn contains(self, other: Caps) -> bool {
        self.0 & other.0 == other.0
    }
    /// Capabilities of `self` missing from `have`.
    pub fn missing_from(self, have: Caps) -> Caps {
        Caps(self.0 & !have.0)
    }
    /// True when empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    /// The first capability's name (for messages).
    pub fn first_name(self) -> &'static str {
        for (n, c) in [
            ("vision", Caps::VISION),
            ("tools", Caps::TOOLS),
            ("json mode", Caps::JSON),
            ("embedding", Caps::EMBEDDING),
        ] {
            if self.contains(c) {
                return n;
            }
        }
        "none"
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `=`
    Eq,
}

impl Cmp {
    /// Whether `value` satisfies `self target`.
    pub(crate) fn holds(self, value: u64, target: u64) -> bool {
        match self {
            Cmp::Gt => value > target,
            Cmp::Ge => value >= target,
            Cmp::Lt => value < target,
            Cmp::Le => value <= target,
            Cmp::Eq => value == target,
        }
    }
}

/// What a size filter compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dim {
    /// Parameter count, in millions.
    Params,
    /// Context length, in tokens.
    Context,
}

/// A size filter: models whose `dim` is unknown never match it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SizeFilter {
    /// Parameters or context.
    pub dim: Dim,
    /// How the size compares with `value`.
    pub cmp: Cmp,
    /// Millions of parameters, or tokens.
    pub value: u64,
}

/// A tag query.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query<'a> {
    /// Tags every match has (as written; matched case-insensitively).
    pub pos: ArrayVec<&'a str, MAX_TERMS>,
    /// Tags no match has.
    pub neg: ArrayVec<&'a str, MAX_TERMS>,
    /// Id prefixes every match has (`qwen3->8b`: the id, or its part after the vendor's `/`,
    /// starts with `qwen3`).
    pub prefixes: ArrayVec<&'a str, MAX_TERMS>,
    /// Size filters.
    pub filters: ArrayVec<SizeFilter, MAX_TERMS>,
}

/// A parsed model expression. (The query variant is large on purpose: it lives on the stack so
/// parsing never allocates.)
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum Expr<'a> {
    /// An exact model id or alias (falling back to a one-segment tag query).
    Name(&'a str),
    /// A tag query.
    Query(Query<'a>),
    /// `auto:NAME`: the configured group (the full `auto:NAME` text).
    Group(&'a str),
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len()
        && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()))
    .then(|| &s[prefix.len()..])
}

/// Parses a `model` value.
pub fn parse(input: &str) -> Result<Expr<'_>, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err("the model expression is empty".into());
    }
    if strip_prefix_ci(s, "auto:").is_some() {
        if s.len() == 5 {
            return Err("`auto:` needs a group name, e.g. `auto:fast`".into());
        }
        return Ok(Expr::Group(s));
    }
    let terms = strip_prefix_ci(s, "tags:").or_else(|| strip_prefix_ci(s, "tag:"));
    if let Some(t) = terms {
        return parse_terms(t).map(Expr::Query);
    }
    let lone_filter = s.starts_with(['>', '<', '='])
        || strip_prefix_ci(s, "ctx").is_some_and(|r| r.starts_with(['>', '<', '=']));
    if s.contains(',') || lone_filter || comparison(s).is_some() {
        return parse_terms(s).map(Expr::Query);
    }
    Ok(Expr::Name(s))
}

/// Finds a `prefix->N` style comparison: (prefix, operator, size text).
fn comparison(term: &str) -> Option<(&str, Cmp, &str)> {
    for (op, cmp) in [
        ("->=", Cmp::Ge),
        ("-<=", Cmp::Le),
        ("->", Cmp::Gt),
        ("-<", Cmp::Lt),
    ] {
        if let Some(i) = term.find(op) {
            // `qwen3 ->8b` means the prefix `qwen3`: no id starts with `qwen3 ` (found by
            // fuzzing: query terms are trimmed everywhere else).
            let prefix = term[..i].trim_end();
            let size = &term[i + op.len()..];
            if !prefix.is_empty() && size.bytes().next().is_some_and(|b| b.is_ascii_digit()) {
                return Some((prefix, cmp, size));
            }
        }
    }
    None
}

fn parse_terms(list: &str) -> Result<Query<'_>, String> {
    let mut q = Query::default();
    for raw in list.split(',') {
        let term = raw.trim();
        if term.is_empty() {
            return Err(format!(
                "`{list}` has an empty term; separate tags with single commas, e.g. `tag:free,qwen3`"
            ));
        }
        let full = || format!("`{term}`: too many terms (at most {MAX_TERMS} of each kind)");
        if let Some(neg) = term.strip_prefix('!') {
            let neg = neg.trim();
            if neg.is_empty() || neg.starts_with(['>', '<', '=', '!']) {
                return Err(format!(
                    "`{term}`: `!` must be followed by a tag, e.g. `!local`"
                ));
            }
            q.neg.try_push(neg).map_err(|_| full())?;
        } else if let Some(rest) = strip_prefix_ci(term, "ctx")
            && rest.starts_with(['>', '<', '='])
        {
            let (cmp, size) = operator(rest)
                .ok_or_else(|| format!("`{term}`: expected ctx>=, ctx<=, ctx>, ctx< or ctx="))?;
            let value = context_size(size).map_err(|e| format!("`{term}`: {e}"))?;
            q.filters
                .try_push(SizeFilter {
                    dim: Dim::Context,
                    cmp,
                    value,
                })
                .map_err(|_| full())?;
        } else if term.starts_with(['>', '<', '=']) {
            let (cmp, size) = operator(term)
                .ok_or_else(|| format!("`{term}`: expected >=, <=, >, < or = before a size"))?;
            let value = param_size(size).map_err(|e| format!("`{term}`: {e}"))?;
            q.filters
                .try_push(SizeFilter {
                    dim: Dim::Params,
                    cmp,
                    value,
                })
                .map_err(|_| full())?;
        } else if let Some((prefix, cmp, size)) = comparison(term) {
            let value = param_size(size).map_err(|e| format!("`{term}`: {e}"))?;
            q.prefixes.try_push(prefix).map_err(|_| full())?;
            q.filters
                .try_push(SizeFilter {
                    dim: Dim::Params,
                    cmp,
                    value,
                })
                .map_err(|_| full())?;
        } else {
            q.pos.try_push(term).map_err(|_| full())?;
        }
    }
    if q.pos.is_empty() && q.neg.is_empty() && q.prefixes.is_empty() && q.filters.is_empty() {
        return Err("the tag query has no terms".into());
    }
    Ok(q)
}

fn operator(s: &str) -> Option<(Cmp, &str)> {
    for (op, cmp) in [
        (">=", Cmp::Ge),
        ("<=", Cmp::Le),
        (">", Cmp::Gt),
        ("<", Cmp::Lt),
        ("=", Cmp::Eq),
    ] {
        if let Some(rest) = s.strip_prefix(op) {
            return Some((cmp, rest.trim()));
        }
    }
    None
}

fn number_and_unit(s: &str) -> Result<(f64, &str), String> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let n: f64 = s[..end]
        .parse()
        .map_err(|_| format!("cannot read a number in `{s}`"))?;
    if !n.is_finite() {
        return Err(format!("`{s}` is not a finite size"));
    }
    Ok((n, s[end..].trim()))
}

/// A parameter count in millions: `30b`, `1.5b`, `500m` (a bare number means billions).
pub fn param_size(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s)?;
    // Units compared case-insensitively in place: parsing never allocates.
    let scale = if unit.is_empty() || unit.eq_ignore_ascii_case("b") {
        1000.0
    } else if unit.eq_ignore_ascii_case("m") {
        1.0
    } else if unit.eq_ignore_ascii_case("t") {
        1_000_000.0
    } else {
        return Err(format!(
            "unknown parameter unit `{unit}`; use `b` (billions) or `m` (millions), e.g. `>=30b`"
        ));
    };
    Ok((n * scale).round() as u64)
}

/// A context length in tokens: `128k`, `1m`, `200000`.
pub fn context_size(s: &str) -> Result<u64, String> {
    let (n, unit) = number_and_unit(s)?;
    let scale = if unit.is_empty() {
        1.0
    } else if unit.eq_ignore_ascii_case("k") {
        1000.0
    } else if unit.eq_ignore_ascii_case("m") {
        1_000_000.0
    } else {
        return Err(format!(
            "unknown context unit `{unit}`; use `k` or `m` tokens, e.g. `ctx>=128k`"
        ));
    };
    Ok((n * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query<'_> {
        match parse(s).unwrap() {
            Expr::Query(q) => q,
            other => panic!("{s}: {other:?}"),
        }
    }

    #[test]
    fn exact_names_stay_names() {
        assert_eq!(parse("gpt-4o-mini").unwrap(), Expr::Name("gpt-4o-mini"));
        assert_eq!(
            parse(" openai/gpt-4o ").unwrap(),
            Expr::Name("openai/gpt-4o")
        );
        assert_eq!(
            parse("qwen/qwen3-30b-a3b:free").unwrap(),
            Expr::Name("qwen/qwen3-30b-a3b:free")
        );
    }

    #[test]
    fn tag_prefixes_are_case_insensitive_and_negations_work() {
        let x = q("TAG:free,Qwen3,!local");
        assert_eq!(&x.pos[..], &["free", "Qwen3"]);
        assert_eq!(&x.neg[..], &["local"]);
        assert_eq!(q("tags:a").pos[0], "a");
        assert_eq!(&q("tag:!local").neg[..], &["local"]);
    }

    #[test]
    fn bare_comma_lists_are_queries() {
        let x = q("qwen3, free");
        assert_eq!(&x.pos[..], &["qwen3", "free"]);
    }

    #[test]
    fn size_filters_with_correct_operators() {
        let x = q("tag:qwen,>=30b");
        assert_eq!(
            x.filters[0],
            SizeFilter {
                dim: Dim::Params,
                cmp: Cmp::Ge,
                value: 30_000
            }
        );
        let x = q("tag:x,<500m,>1.5b");
        assert_eq!(
            x.filters[0],
            SizeFilter {
                dim: Dim::Params,
                cmp: Cmp::Lt,
                value: 500
            }
        );
        assert_eq!(x.filters[1].value, 1500);
        let x = q("tag:claude,ctx>=200k");
        assert_eq!(
            x.filters[0],
            SizeFilter {
                dim: Dim::Context,
                cmp: Cmp::Ge,
                value: 200_000
            }
        );
        assert_eq!(q("tag:x,ctx<1m").filters[0].value, 1_000_000);
    }

    #[test]
    fn prefix_comparisons_keep_or_equal() {
        for (s, cmp) in [
            ("qwen3->8b", Cmp::Gt),
            ("qwen3->=8b", Cmp::Ge),
            ("qwen3-<8b", Cmp::Lt),
            ("qwen3-<=8b", Cmp::Le),
        ] {
            let x = q(s);
            assert_eq!(&x.prefixes[..], &["qwen3"], "{s}");
            assert_eq!(
                x.filters[0],
                SizeFilter {
                    dim: Dim::Params,
                    cmp,
                    value: 8000
                },
                "{s}"
            );
        }
        assert_eq!(&q("qwen3 \t->8b").prefixes[..], &["qwen3"]);
        assert_eq!(&q("tag:free, qwen3 -<=8b").prefixes[..], &["qwen3"]);
        // a dash followed by a letter is just part of a name
        assert_eq!(
            parse("claude-3-haiku").unwrap(),
            Expr::Name("claude-3-haiku")
        );
    }

    #[test]
    fn a_lone_filter_is_a_query() {
        assert_eq!(q(">=14b").filters[0].value, 14_000);
        assert_eq!(q("ctx>=32k").filters[0].dim, Dim::Context);
    }

    #[test]
    fn groups() {
        assert_eq!(parse("auto:fast").unwrap(), Expr::Group("auto:fast"));
        assert_eq!(parse("AUTO:Fast").unwrap(), Expr::Group("AUTO:Fast"));
        assert!(parse("auto:").is_err());
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("tag:").unwrap_err().contains("empty term"));
        assert!(parse("a,,b").unwrap_err().contains("empty term"));
        assert!(parse("tag:!").unwrap_err().contains("`!` must be followed"));
        assert!(
            parse("tag:>=lots")
                .unwrap_err()
                .contains("cannot read a number")
        );
        assert!(
            parse("tag:>=30q")
                .unwrap_err()
                .contains("unknown parameter unit")
        );
        assert!(
            parse("tag:ctx>=12x")
                .unwrap_err()
                .contains("unknown context unit")
        );
        let many = format!("tag:{}", vec!["a"; MAX_TERMS + 1].join(","));
        assert!(parse(&many).unwrap_err().contains("too many terms"));
    }
}
