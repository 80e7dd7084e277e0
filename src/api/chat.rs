//! What the gateway reads from a chat-completions body: the model expression, `stream`, and
//! where the `model` value sits in the original bytes so only it is rewritten on the way out.
//!
//! simd-json parses a padded copy (it rewrites its input while unescaping); the original bytes
//! are forwarded. The top-level scanner that finds `model` runs only on bodies simd-json has
//! already validated, and never panics on anything.

use std::ops::Range;

use simd_json::prelude::*;

use crate::error::{Error, Kind};

/// simd-json's reusable buffers, one set per worker.
pub struct JsonScratch {
    input: Vec<u8>,
    buffers: simd_json::Buffers,
    tape: simd_json::Tape<'static>,
}

impl Default for JsonScratch {
    fn default() -> Self {
        JsonScratch {
            input: Vec::new(),
            buffers: simd_json::Buffers::new(4096),
            tape: simd_json::Tape::null(),
        }
    }
}

impl std::fmt::Debug for JsonScratch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonScratch")
            .field("input_capacity", &self.input.capacity())
            .finish_non_exhaustive()
    }
}

/// The request features routing and proxying need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Features {
    /// The `model` value (a model id or expression).
    pub model: Box<str>,
    /// `stream: true`.
    pub stream: bool,
    /// Byte ranges of every top-level `model` value (quotes included) in the original body.
    pub model_spans: Vec<Range<usize>>,
}

/// Largest body kept in the scratch buffer between requests (larger ones are freed after use).
const KEEP_SCRATCH: usize = 1 << 20;

/// Reads the features of a chat-completions body, or the 400 that explains what is wrong.
pub fn extract(body: &[u8], scratch: &mut JsonScratch) -> Result<Features, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::bad_request(
            "empty_body",
            "The request body is empty; send a JSON object with `model` and `messages`.",
        ));
    }
    let len = body.len();
    scratch.input.clear();
    scratch.input.reserve(len + simd_json::INPUT_PADDING);
    scratch.input.extend_from_slice(body);
    scratch.input.resize(len + simd_json::INPUT_PADDING, 0);
    let mut tape = std::mem::replace(&mut scratch.tape, simd_json::Tape::null()).reset();
    let parsed =
        simd_json::fill_tape_padded(&mut scratch.input, len, &mut scratch.buffers, &mut tape);
    let result = match parsed {
        Err(e) => Err(Error::bad_request(
            "invalid_json",
            format!(
                "We could not parse the JSON body of your request ({e}). Send a JSON object, \
                 e.g. {{\"model\": \"gpt-4o-mini\", \"messages\": [...]}}."
            ),
        )),
        Ok(()) => read_features(&tape),
    };
    scratch.tape = tape.reset();
    if scratch.input.capacity() > KEEP_SCRATCH {
        scratch.input = Vec::new();
    }
    let (model, stream) = result?;
    let model_spans = top_level_spans(body, b"model");
    if model_spans.is_empty() {
        // simd-json saw the key but the scanner did not: refuse rather than forward unedited.
        return Err(Error::bad_request(
            "invalid_json",
            "The `model` field could not be located in the request body.",
        ));
    }
    Ok(Features {
        model,
        stream,
        model_spans,
    })
}

fn read_features(tape: &simd_json::Tape<'_>) -> Result<(Box<str>, bool), Error> {
    let root = tape.as_value();
    let Some(obj) = root.as_object() else {
        return Err(Error::bad_request(
            "invalid_body",
            "The request body must be a JSON object with `model` and `messages`.",
        ));
    };
    let model: Box<str> = match obj.get("model") {
        None => {
            return Err(param_error(
                "missing_model",
                "You must provide a `model` parameter.",
            ));
        }
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => s.into(),
            Some(_) => return Err(param_error("invalid_model", "`model` must not be empty.")),
            None => {
                return Err(param_error(
                    "invalid_model",
                    "`model` must be a string, e.g. \"gpt-4o-mini\".",
                ));
            }
        },
    };
    let stream = match obj.get("stream") {
        None => false,
        Some(v) if v.is_null() => false,
        Some(v) => v.as_bool().ok_or_else(|| {
            Error::new(
                400,
                Kind::InvalidRequest,
                "invalid_stream",
                "`stream` must be a boolean.",
            )
        })?,
    };
    Ok((model, stream))
}

fn param_error(code: &'static str, msg: &'static str) -> Error {
    Error::new(400, Kind::InvalidRequest, code, msg)
}

/// Byte ranges of the values of top-level members named `key` in a JSON object (duplicates
/// included: every copy gets rewritten, so no parser downstream can pick a stale one).
pub fn top_level_spans(json: &[u8], key: &[u8]) -> Vec<Range<usize>> {
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
        let key_start = i + 1;
        let Some(key_end) = skip_string(json, i) else {
            return out;
        };
        let raw_key = &json[key_start..key_end - 1];
        i = skip_ws(json, key_end);
        if json.get(i) != Some(&b':') {
            return out;
        }
        i = skip_ws(json, i + 1);
        let value_start = i;
        let Some(value_end) = skip_value(json, i) else {
            return out;
        };
        if key_matches(raw_key, key) {
            out.push(value_start..value_end);
        }
        i = skip_ws(json, value_end);
        match json.get(i) {
            Some(b',') => i += 1,
            _ => return out,
        }
    }
}

fn key_matches(raw: &[u8], key: &[u8]) -> bool {
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

fn skip_value(json: &[u8], i: usize) -> Option<usize> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(body: &str) -> Result<Features, Error> {
        extract(body.as_bytes(), &mut JsonScratch::default())
    }

    #[test]
    fn reads_model_stream_and_spans() {
        let body =
            r#"{"messages":[{"role":"user","content":"model"}],"model":"gpt-4o","stream":true}"#;
        let f = ex(body).unwrap();
        assert_eq!(&*f.model, "gpt-4o");
        assert!(f.stream);
        assert_eq!(&body[f.model_spans[0].clone()], "\"gpt-4o\"");
    }

    #[test]
    fn nested_model_keys_are_not_top_level() {
        let body = r#"{"tools":[{"model":"x"}],"meta":{"model":"y"},"model" : "z"}"#;
        let f = ex(body).unwrap();
        assert_eq!(f.model_spans.len(), 1);
        assert_eq!(&body[f.model_spans[0].clone()], "\"z\"");
    }

    #[test]
    fn escaped_values_and_duplicate_keys() {
        let body = r#"{"model":"a\"b","mod\u0065l":"gpt"}"#;
        let f = ex(body).unwrap();
        assert_eq!(f.model_spans.len(), 2);
    }

    #[test]
    fn precise_errors() {
        assert_eq!(ex("").unwrap_err().code, "empty_body");
        assert_eq!(ex("{bad").unwrap_err().code, "invalid_json");
        assert_eq!(ex("[1,2]").unwrap_err().code, "invalid_body");
        assert_eq!(ex(r#"{"messages":[]}"#).unwrap_err().code, "missing_model");
        assert_eq!(ex(r#"{"model":5}"#).unwrap_err().code, "invalid_model");
        assert_eq!(ex(r#"{"model":""}"#).unwrap_err().code, "invalid_model");
        assert_eq!(
            ex(r#"{"model":"m","stream":"yes"}"#).unwrap_err().code,
            "invalid_stream"
        );
        assert!(!ex(r#"{"model":"m","stream":null}"#).unwrap().stream);
    }

    #[test]
    fn scanner_survives_garbage() {
        for s in [
            "",
            "{",
            "{\"a",
            "{\"a\":",
            "{\"a\":[",
            "{\"model\":\"x",
            "\"x\"",
            "{\"a\":1,}",
        ] {
            let _ = top_level_spans(s.as_bytes(), b"model");
        }
    }
}
