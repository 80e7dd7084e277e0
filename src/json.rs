//! Hand-written JSON output for the small documents the gateway renders itself (errors,
//! `/health`, `/v1/models`, SSE error events, the mock upstream's answers, the admin API).
//!
//! Invariants: every string goes through [`write_str`], which escapes per RFC 8259, so no input
//! (model ids, upstream messages, header values) can break out of a JSON string.
//! Not here: parsing (simd-json in `api`), or serialising request bodies (they pass through).

/// Appends `s` as a JSON string literal, quotes included.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    // Most strings (ids, model names) need no escaping: copy them whole.
    if !bytes
        .iter()
        .any(|&b| b < 0x20 || b == b'"' || b == b'\\' || b == 0x7f)
    {
        out.extend_from_slice(bytes);
        out.push(b'"');
        return;
    }
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f | 0x7f => {
                out.extend_from_slice(&bytes[start..i]);
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(b >> 4) as usize]);
                out.push(HEX[(b & 0xf) as usize]);
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(escape);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends an unsigned integer.
pub(crate) fn write_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Appends `"key":` (the key is escaped).
pub(crate) fn write_key(out: &mut Vec<u8>, key: &str) {
    write_str(out, key);
    out.push(b':');
}

/// Writes nested objects and arrays with commas placed automatically (the admin API's
/// documents). Numbers that are not finite are written as `null`.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    /// The document so far.
    pub out: Vec<u8>,
    /// Per open container: no element written yet.
    fresh: Vec<bool>,
    /// A key was just written: the next value needs no comma.
    after_key: bool,
}

impl Writer {
    /// An empty document.
    pub(crate) fn new() -> Writer {
        Writer::default()
    }

    fn value(&mut self) {
        if self.after_key {
            self.after_key = false;
        } else if let Some(f) = self.fresh.last_mut() {
            if *f {
                *f = false;
            } else {
                self.out.push(b',');
            }
        }
    }

    /// `"k":` inside an object.
    pub(crate) fn key(&mut self, k: &str) -> &mut Writer {
        self.value();
        write_key(&mut self.out, k);
        self.after_key = true;
        self
    }

    /// Opens an object.
    pub(crate) fn obj(&mut self) -> &mut Writer {
        self.value();
        self.out.push(b'{');
        self.fresh.push(true);
        self
    }

    /// Closes an object.
    pub(crate) fn end_obj(&mut self) -> &mut Writer {
        self.fresh.pop();
        self.out.push(b'}');
        self
    }

    /// A string.
    pub(crate) fn str(&mut self, v: &str) -> &mut Writer {
        self.value();
        write_str(&mut self.out, v);
        self
    }

    /// An unsigned integer.
    pub(crate) fn uint(&mut self, v: u64) -> &mut Writer {
        self.value();
        write_u64(&mut self.out, v);
        self
    }

    /// A number at full precision (shortest round-trip form; `null` when not finite): money.
    pub(crate) fn num_exact(&mut self, v: f64) -> &mut Writer {
        if !v.is_finite() {
            return self.null();
        }
        self.value();
        self.out.extend_from_slice(format!("{v}").as_bytes());
        self
    }

    /// `null`.
    pub(crate) fn null(&mut self) -> &mut Writer {
        self.value();
        self.out.extend_from_slice(b"null");
        self
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn writer_places_commas() {
        let mut w = Writer::new();
        w.obj().key("a").uint(1).key("b").str("x");
        w.key("c").obj().end_obj().key("d").null().end_obj();
        assert_eq!(
            String::from_utf8(w.out).unwrap(),
            r#"{"a":1,"b":"x","c":{},"d":null}"#
        );
    }

    use super::*;

    fn s(v: &str) -> String {
        let mut out = Vec::new();
        write_str(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn escapes_quotes_backslashes_and_controls() {
        assert_eq!(s("plain"), "\"plain\"");
        assert_eq!(s("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(s("l1\nl2\r\t"), "\"l1\\nl2\\r\\t\"");
        assert_eq!(s("\u{1}x\u{7f}"), "\"\\u0001x\\u007f\"");
        assert_eq!(s("é漢"), "\"é漢\"");
    }
}
