//! Server-sent events framing: where complete events end in a byte buffer, and whether an event
//! batch carries the OpenAI terminator `data: [DONE]`.
//!
//! Invariants: events are forwarded whole (never split), so an error event the gateway appends
//! after an upstream cut can never be glued to half an event. LF and CRLF line endings are both
//! understood (the spec also allows lone CR; no LLM provider sends it).

/// The end (exclusive) of the last complete event in `buf`, searching from `from` (a position at
/// or before the start of any incomplete event). `None` when no event is complete.
pub fn complete_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut end = None;
    let mut i = from.saturating_sub(2);
    while let Some(j) = memchr::memchr(b'\n', &buf[i..]) {
        let nl = i + j;
        // A blank line: "\n\n" or "\n\r\n".
        match buf.get(nl + 1) {
            Some(b'\n') => {
                end = Some(nl + 2);
                i = nl + 2;
            }
            Some(b'\r') if buf.get(nl + 2) == Some(&b'\n') => {
                end = Some(nl + 3);
                i = nl + 3;
            }
            _ => i = nl + 1,
        }
        if i >= buf.len() {
            break;
        }
    }
    end
}

/// True when `events` (whole events) contain a `data: [DONE]` line.
pub fn has_done(events: &[u8]) -> bool {
    let finder = memchr::memmem::Finder::new(b"[DONE]");
    let mut start = 0;
    while let Some(i) = finder.find(&events[start..]) {
        let at = start + i;
        let line_start = events[..at]
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |p| p + 1);
        let prefix = &events[line_start..at];
        let rest = &events[at + 6..];
        let line_end_ok = rest.first().is_none_or(|&b| b == b'\n' || b == b'\r');
        if line_end_ok && (prefix == b"data: " || prefix == b"data:") {
            return true;
        }
        start = at + 6;
    }
    false
}

/// Appends `data: <payload>\n\n`. A payload with line breaks (an upstream event of several
/// `data:` lines, relayed) gets one `data:` line per line, as SSE carries them, so the client
/// reads back exactly `payload` (found by fuzzing: the lines after the first went out without
/// a field name and were lost).
pub fn write_data(out: &mut Vec<u8>, payload: &[u8]) {
    if memchr::memchr(b'\n', payload).is_none() {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(payload);
        out.extend_from_slice(b"\n\n");
        return;
    }
    for line in payload.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out.push(b'\n');
}

/// Reads the next event of `block` (whole events) from `*at`: returns its `event:` name (empty
/// when absent) and fills `data` with its `data:` lines joined by `\n` (empty for an event
/// with no data, such as a comment). `None` at the end of the block.
pub fn next_event<'a>(block: &'a [u8], at: &mut usize, data: &mut Vec<u8>) -> Option<&'a [u8]> {
    data.clear();
    let mut name: &[u8] = b"";
    let mut lines = 0;
    let mut saw_any = false;
    while *at < block.len() {
        let rest = &block[*at..];
        let (line, used) = match memchr::memchr(b'\n', rest) {
            Some(i) => (&rest[..i], i + 1),
            None => (rest, rest.len()),
        };
        *at += used;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            if saw_any {
                return Some(name);
            }
            continue;
        }
        saw_any = true;
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"event" => name = value,
            b"data" => {
                if lines > 0 {
                    data.push(b'\n');
                }
                data.extend_from_slice(value);
                lines += 1;
            }
            _ => {}
        }
    }
    saw_any.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_into_name_and_joined_data() {
        let b = b"event: message_start\ndata: {\"a\":1}\n\n: comment\n\ndata: x\r\ndata: y\r\n\r\n";
        let (mut at, mut data) = (0, Vec::new());
        assert_eq!(
            next_event(b, &mut at, &mut data),
            Some(&b"message_start"[..])
        );
        assert_eq!(data, b"{\"a\":1}");
        assert_eq!(next_event(b, &mut at, &mut data), Some(&b""[..]));
        assert!(data.is_empty());
        assert_eq!(next_event(b, &mut at, &mut data), Some(&b""[..]));
        assert_eq!(data, b"x\ny");
        assert_eq!(next_event(b, &mut at, &mut data), None);
    }

    #[test]
    fn finds_the_last_complete_event() {
        let b = b"data: a\n\ndata: b\n\ndata: c";
        assert_eq!(complete_end(b, 0), Some(18));
        assert_eq!(complete_end(b"data: a\n", 0), None);
        assert_eq!(complete_end(b"data: a\r\n\r\nx", 0), Some(11));
        // a boundary split across two reads is found when scanning resumes near the old end
        let b = b"data: a\n\n";
        assert_eq!(complete_end(b, 8), Some(9));
        assert_eq!(complete_end(b": keepalive\n\n", 0), Some(13));
    }

    #[test]
    fn multi_line_data_round_trips() {
        for payload in [&b"{\"a\":\n1}"[..], b"x\n\ny", b"\n", b"plain"] {
            let mut out = Vec::new();
            write_data(&mut out, payload);
            assert_eq!(complete_end(&out, 0), Some(out.len()));
            let (mut at, mut data) = (0, Vec::new());
            assert_eq!(next_event(&out, &mut at, &mut data), Some(&b""[..]));
            assert_eq!(data, payload);
            assert_eq!(at, out.len());
        }
    }

    #[test]
    fn done_only_as_a_data_line() {
        assert!(has_done(b"data: [DONE]\n\n"));
        assert!(has_done(b"data: {}\n\ndata:[DONE]\r\n\r\n"));
        assert!(!has_done(b"data: {\"content\":\"[DONE]\"}\n\n"));
        assert!(!has_done(b"data: x [DONE]\n\n"));
    }
}
