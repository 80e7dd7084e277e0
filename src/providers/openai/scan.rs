//! Reading the top level of an OpenAI JSON body without parsing it: where each member's key and
//! value sit in the original bytes, so the gateway can rewrite `model`, drop router fields and
//! find `stream_options` or `usage` while forwarding every other byte unchanged.
//!
//! Invariants: never panics and never reads out of bounds on any input; runs on bodies that
//! simd-json already validated (on anything else the answers are merely unspecified). Not here:
//! deciding what to edit (`ingress`, `proxy`), parsing values.

use std::ops::Range;

use simd_json::prelude::*;

/// One top-level member of a JSON object, as byte ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// Where the member starts (its key's opening quote).
    pub(crate) start: usize,
    /// The key's bytes between the quotes (still escaped).
    pub(crate) key: Range<usize>,
    /// The value.
    pub(crate) value: Range<usize>,
}

/// The top-level members of a JSON object, in order (duplicates included: every copy of
/// `model` gets rewritten, so no parser downstream can pick a stale one).
pub(crate) fn top_level_members(json: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut i = skip_ws(json, 0);
    if json.get(i) != Some(&b'{') {
        return out;
    }
    i += 1;
    loop {
        i = skip_ws(json, i);
        match json.get(i) {
            Some(b'"') => {}
            _ => return out,
        }
        let start = i;
        let Some(key_end) = skip_string(json, i) else {
            return out;
        };
        let key = start + 1..key_end - 1;
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return out;
        }
        i = skip_ws(json, i + 1);
        let value_start = i;
        let Some(value_end) = skip_value(json, i) else {
            return out;
        };
        out.push(Member {
            start,
            key,
            value: value_start..value_end,
        });
        i = skip_ws(json, value_end);
        match json.get(i) {
            Some(b',') => i += 1,
            _ => return out,
        }
    }
}

/// True when a member key (raw bytes between the quotes, possibly escaped) is `key`.
pub(crate) fn key_matches(raw: &[u8], key: &[u8]) -> bool {
    if !raw.contains(&b'\\') {
        return raw == key;
    }
    // Escaped key (e.g. "mod\u0065l"): unescape the simple cases.
    let mut s = String::with_capacity(raw.len() + 2);
    s.push('"');
    s.push_str(std::str::from_utf8(raw).unwrap_or(""));
    s.push('"');
    let mut bytes = s.into_bytes();
    match simd_json::to_owned_value(&mut bytes) {
        Ok(v) => v.as_str().is_some_and(|k| k.as_bytes() == key),
        Err(_) => false,
    }
}

fn skip_ws(json: &[u8], mut i: usize) -> usize {
    while matches!(json.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// `i` at an opening quote; returns the index after the closing quote.
fn skip_string(json: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        let k = memchr::memchr2(b'"', b'\\', json.get(j..)?)?;
        j += k;
        if json[j] == b'\\' {
            j += 2;
        } else {
            return Some(j + 1);
        }
    }
}

pub(crate) fn skip_value(json: &[u8], i: usize) -> Option<usize> {
    match json.get(i)? {
        b'"' => skip_string(json, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match json.get(j)? {
                    b'"' => {
                        j = skip_string(json, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(&b) = json.get(j) {
                if matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}
