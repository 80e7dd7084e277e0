//! HTTP/1.1 framing shared by the downstream server, the upstream client, the admin API and the
//! mock upstream: request and response heads (httparse, recorded as offsets into the connection
//! buffer), chunked transfer-coding, SSE event boundaries, status reason phrases, response
//! heads written into a buffer, and the one async request reader ([`read`]).
//!
//! Hand-written on purpose: this is the hot path of every request, and each piece works on the
//! connection's own buffer without copying or allocating per header.
//!
//! Invariants: everything but [`read`] is pure functions over byte slices: no I/O, no
//! allocation proportional to untrusted sizes, no panics on any input (the parsers are fuzz
//! targets); [`read`] only appends to a caller's buffer through monoio's `AsyncReadRent`.
//! Framing ambiguities that enable request smuggling (conflicting `Content-Length`,
//! `Content-Length` with `Transfer-Encoding`, a transfer-coding other than `chunked`) are
//! errors, never guesses.
//! Not here: sockets and listeners, timeouts, limits policy (callers pass limits in).

use crate::clock::{civil_from_days, days_from_civil};

pub mod chunked;
pub mod forwarding;
pub mod head;
pub(crate) mod read;
pub mod sse;

pub use read::read_into;
pub(crate) use read::{READ_RESERVE, ReadError, read_body, read_request_head};

/// The reason phrase for a status code (RFC 9110), or `""` for unknown codes.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        402 => "Payment Required",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        417 => "Expectation Failed",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        529 => "Site Overloaded",
        _ => "",
    }
}

/// Appends `HTTP/1.1 <status> <reason>\r\n`.
pub(crate) fn write_status_line(out: &mut Vec<u8>, status: u16) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason(status).as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends `name: value\r\n`.
pub(crate) fn write_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a whole response with a known-length body: the status line, `content-length`,
/// `headers` in order (names as given), the blank line, then `body`.
pub(crate) fn write_response(
    out: &mut Vec<u8>,
    status: u16,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
) {
    out.reserve(
        body.len()
            + 64
            + headers
                .iter()
                .map(|(n, v)| n.len() + v.len() + 4)
                .sum::<usize>(),
    );
    write_status_line(out, status);
    write_header(
        out,
        b"content-length",
        itoa::Buffer::new().format(body.len()).as_bytes(),
    );
    for (name, value) in headers {
        write_header(out, name, value);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
}

/// True for headers that describe one hop only and must never be forwarded (RFC 9110 §7.6.1),
/// plus `proxy-*` credentials.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: &[&[u8]] = &[
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    ];
    HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// True when a comma-separated header value contains `token` (case-insensitive).
pub(crate) fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
}

/// Formats an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for `Date` headers.
pub(crate) fn http_date(unix_secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = unix_secs / 86400;
    let secs = unix_secs % 86400;
    let (year, month, day) = civil_from_days(days as i64);
    let (year, month, day) = (year as u64, month as usize, u64::from(day));
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[5..7].copy_from_slice(&two(day));
    out[8..11].copy_from_slice(MONTHS[month - 1]);
    out[12..14].copy_from_slice(&two(year / 100));
    out[14..16].copy_from_slice(&two(year % 100));
    out[17..19].copy_from_slice(&two(secs / 3600));
    out[20..22].copy_from_slice(&two(secs / 60 % 60));
    out[23..25].copy_from_slice(&two(secs % 60));
    out
}

/// The request id echoed in `x-request-id`: the client's when it is sane, else generated.
#[derive(Clone, Copy)]
pub(crate) struct RequestId {
    buf: [u8; 128],
    len: u8,
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl RequestId {
    /// A generated id: `req_` and 24 hex digits.
    pub(crate) fn generated(hex: &[u8; 24]) -> RequestId {
        let mut id = RequestId {
            buf: [0; 128],
            len: 28,
        };
        id.buf[..4].copy_from_slice(b"req_");
        id.buf[4..28].copy_from_slice(hex);
        id
    }

    /// `v` as an id if it is 1–128 characters of `[A-Za-z0-9._:-]`.
    pub(crate) fn parse(v: &[u8]) -> Option<RequestId> {
        let ok = !v.is_empty()
            && v.len() <= 128
            && v.iter()
                .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
        if !ok {
            return None;
        }
        let mut id = RequestId {
            buf: [0; 128],
            len: v.len() as u8,
        };
        id.buf[..v.len()].copy_from_slice(v);
        Some(id)
    }

    /// The id bytes.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len as usize]
    }

    /// The id as text (always ASCII).
    pub(crate) fn as_str(&self) -> &str {
        std::str::from_utf8(self.as_bytes()).unwrap_or("")
    }
}

/// Parses a `Retry-After` value: delay seconds, or an IMF-fixdate compared with `now_unix`.
pub(crate) fn parse_retry_after(value: &[u8], now_unix: u64) -> Option<std::time::Duration> {
    let v = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(std::time::Duration::from_secs(secs));
    }
    // "Sun, 06 Nov 1994 08:49:37 GMT"
    let b = v.as_bytes();
    if b.len() != 29 || &b[26..] != b"GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| std::str::from_utf8(&b[r]).ok()?.parse::<i64>().ok();
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let day = u32::try_from(num(5..7)?).ok()?;
    let month = MONTHS.iter().position(|m| &b[8..11] == *m)? as u32 + 1;
    let year = num(12..16)?;
    let (h, mi, s) = (num(17..19)?, num(20..22)?, num(23..25)?);
    let days = days_from_civil(year, month, day);
    let at = days * 86_400 + h * 3600 + mi * 60 + s;
    Some(std::time::Duration::from_secs(
        (at - now_unix as i64).max(0) as u64,
    ))
}

/// Decodes `%XX` escapes of a request target component (invalid UTF-8 becomes U+FFFD; a broken
/// escape stays as written). On the request path, yet through the `percent-encoding` crate: it
/// decodes the same way and allocates once, where the hand-written loop it replaced allocated
/// twice.
pub(crate) fn percent_decode(raw: &[u8]) -> String {
    percent_encoding::percent_decode(raw)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn retry_after_forms() {
        use std::time::Duration;
        assert_eq!(parse_retry_after(b"7", 0), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:47 GMT", 784_111_777),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT", 784_111_900),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after(b"soon", 0), None);
    }

    #[test]
    fn http_dates() {
        assert_eq!(&http_date(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&http_date(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&http_date(1_709_251_199), b"Thu, 29 Feb 2024 23:59:59 GMT");
    }

    use super::*;

    #[test]
    fn tokens_in_lists() {
        assert!(has_token(b"keep-alive, Upgrade", b"upgrade"));
        assert!(!has_token(b"keep-alive", b"close"));
        assert!(is_hop_by_hop(b"Transfer-Encoding"));
        assert!(!is_hop_by_hop(b"content-type"));
    }

    #[test]
    fn whole_responses() {
        let mut v = Vec::new();
        write_response(
            &mut v,
            404,
            &[(b"content-type", b"application/json")],
            b"{}",
        );
        assert_eq!(
            v,
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
        );
    }

    #[test]
    fn status_lines() {
        let mut v = Vec::new();
        write_status_line(&mut v, 431);
        assert_eq!(v, b"HTTP/1.1 431 Request Header Fields Too Large\r\n");
    }
}
