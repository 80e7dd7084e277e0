//! The OpenAI family upstream: the canonical form is this family's own wire, so a request goes
//! out as the client's bytes with the `proxy`'s targeted edits and an answer needs no decoding.
//! What remains is reading the usage of an answer — whole or one SSE event — without parsing it
//! ([`openai_usage`]), which every relayed OpenAI-form answer pays for.
//!
//! Invariants: no allocation and no parse on the answer path; never panics on any bytes. Not
//! here: the edits of the request body (`proxy`, from [`super::ingress::Edit`]s).

use crate::tokens::Usage;

use super::scan::skip_value;

/// The usage of an OpenAI-form document (a `chat.completion`, a usage chunk, a Responses API
/// answer): reads the last key-position `"usage":{…}` object only, without parsing the document
/// or allocating. `None` when there is none (or it is `null`).
pub(crate) fn openai_usage(doc: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\":";
    // The usage object sits near the end of a document: walk back over `u`s (cheaper than
    // building a substring searcher for one short scan).
    for u in memchr::memrchr_iter(b'u', doc) {
        let Some(i) = u.checked_sub(1) else {
            break;
        };
        if !doc[i..].starts_with(KEY) {
            continue;
        }
        // A quote inside a JSON string is always escaped: `"usage":` preceded by a backslash
        // is text, not a key.
        if i > 0 && doc[i - 1] == b'\\' {
            continue;
        }
        let rest = &doc[i + KEY.len()..];
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let Some(len) = object_len(&rest[skip..]) else {
            continue;
        };
        let obj = &rest[skip..skip + len];
        // Chat and completions say prompt/completion; the Responses API says input/output.
        let prompt =
            number_at(obj, b"\"prompt_tokens\":").or_else(|| number_at(obj, b"\"input_tokens\":"));
        let completion = number_at(obj, b"\"completion_tokens\":")
            .or_else(|| number_at(obj, b"\"output_tokens\":"));
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let prompt = prompt.unwrap_or(0);
        let cached = number_at(obj, b"\"cached_tokens\":").unwrap_or(0);
        return Some(Usage {
            prompt,
            completion: completion.unwrap_or(0),
            cached: cached.min(prompt),
            cache_write: 0,
        });
    }
    None
}

/// Length of the JSON object at the start of `s` (strings skipped, brackets balanced), or
/// `None` when `s` does not start with a complete object.
fn object_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'{') {
        return None;
    }
    skip_value(s, 0)
}

/// The unsigned integer after the first `key` (a `"name":` pattern) in `obj`.
fn number_at(obj: &[u8], key: &[u8]) -> Option<u64> {
    // The object is short: checking at each quote beats setting up a substring searcher.
    let at = memchr::memchr_iter(b'"', obj).find(|&i| obj[i..].starts_with(key))? + key.len();
    let rest = &obj[at..];
    let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let digits = rest[skip..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&rest[skip..skip + digits])
        .ok()?
        .parse()
        .ok()
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn usage_is_read_from_the_usage_object_only() {
        let doc = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":99}"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            openai_usage(doc),
            Some(Usage {
                prompt: 12,
                completion: 5,
                cached: 4,
                cache_write: 0
            })
        );
        assert_eq!(openai_usage(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(openai_usage(br#"{"usage":{"prompt_tokens":1"#), None);
        assert_eq!(openai_usage(b"not json"), None);
    }
}
