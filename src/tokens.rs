//! Token counts: an answer's [`Usage`] as providers report it, and the gateway's own estimates
//! where nothing is reported — a request's prompt before it is sent (to check context windows
//! and rank costs), and an answer's completion from its text when the upstream sent no usage.
//!
//! Invariants: pure arithmetic and byte scans; estimates are a quarter of the bytes plus fixed
//! amounts per message, image and tool — fast, within tens of percent of real tokenizers for
//! English and code, and the same rule everywhere (the mock upstream uses it too).

/// Token usage of one answer, in OpenAI's terms: `prompt` counts every input token, cached
/// ones included; `cached` (read from a prompt cache) and `cache_write` (written to one) are
/// parts of `prompt`, priced differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens.
    pub prompt: u64,
    /// Output tokens (reasoning included).
    pub completion: u64,
    /// Input tokens served from a prompt cache.
    pub cached: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write: u64,
}

/// Tokens counted per image part (a high-detail image tile budget; images are routed by
/// capability, so this only feeds the context check and the cost estimate).
pub(crate) const IMAGE_TOKENS: u32 = 765;
/// Tokens counted per tool definition.
pub(crate) const TOOL_TOKENS: u32 = 100;
/// Tokens of framing per message.
pub(crate) const MESSAGE_TOKENS: u32 = 4;

/// The prompt-token estimate: a quarter of the bytes of message text, plus fixed amounts per
/// message, image and tool. Fast and within tens of percent of real tokenizers for English and
/// code; it only has to decide context fits and rank costs.
pub(crate) fn estimate(text_bytes: u64, messages: u32, images: u32, tools: u32) -> u32 {
    let t = text_bytes.div_ceil(4)
        + u64::from(messages) * u64::from(MESSAGE_TOKENS)
        + u64::from(images) * u64::from(IMAGE_TOKENS)
        + u64::from(tools) * u64::from(TOOL_TOKENS);
    t.min(u64::from(u32::MAX)) as u32
}

/// Bytes of completion text in an OpenAI-form answer or chunk: the string values of
/// `content`, `reasoning_content`, `reasoning`, `arguments`, `refusal` and `text` members, at
/// any depth (escapes counted as written). One pass over the document's strings; used to
/// estimate the completion of an answer that carries no usage.
pub(crate) fn completion_text_bytes(doc: &[u8]) -> u64 {
    const KEYS: [&[u8]; 6] = [
        b"content",
        b"reasoning_content",
        b"reasoning",
        b"arguments",
        b"refusal",
        b"text",
    ];
    let skip_ws = |mut j: usize| {
        while doc.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        j
    };
    // The index of the quote closing the string whose first byte is at `from`.
    let string_end = |from: usize| {
        let mut j = from;
        loop {
            let k = memchr::memchr2(b'"', b'\\', doc.get(j..)?)?;
            j += k;
            if doc[j] == b'\\' {
                j += 2;
            } else {
                return Some(j);
            }
        }
    };
    let mut total = 0u64;
    let mut i = 0;
    while let Some(q) = doc.get(i..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let start = i + q + 1;
        let Some(end) = string_end(start) else {
            break;
        };
        let colon = skip_ws(end + 1);
        if doc.get(colon) != Some(&b':') {
            i = end + 1;
            continue;
        }
        let value = skip_ws(colon + 1);
        if KEYS.contains(&&doc[start..end]) && doc.get(value) == Some(&b'"') {
            let Some(value_end) = string_end(value + 1) else {
                break;
            };
            total += (value_end - value - 1) as u64;
            i = value_end + 1;
        } else {
            i = value;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completion_text_is_the_string_values_of_text_members() {
        assert_eq!(
            completion_text_bytes(
                br#"{"choices":[{"message":{"role":"assistant","content":"Hello","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#
            ),
            5 + 9
        );
        assert_eq!(
            completion_text_bytes(br#"{"content" : null, "text": "abc"}"#),
            3
        );
        assert_eq!(
            completion_text_bytes(br#"{"model":"content","x":"content"}"#),
            0
        );
        assert_eq!(completion_text_bytes(br#"{"content":"unterminated"#), 0);
        assert_eq!(completion_text_bytes(b""), 0);
    }
}
