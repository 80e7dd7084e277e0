//! Request and response heads, parsed with httparse and kept as offsets into the caller's
//! buffer so the head can stay where it was read (no copy, no allocation per header).
//!
//! Invariants: a returned head's ranges are valid for the buffer it was parsed from; body framing
//! is decided here once (`Body`), with smuggling-prone combinations rejected.

use std::mem::MaybeUninit;
use std::ops::Range;

/// Hard cap on request headers, whatever the config says.
pub(crate) const MAX_HEADERS: usize = 256;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Body {
    /// No body.
    None,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Close,
}

/// A header as two ranges into the buffer.
#[derive(Debug, Clone)]
pub struct Header {
    /// Name bytes.
    pub name: Range<usize>,
    /// Value bytes.
    pub value: Range<usize>,
}

/// Request methods the gateway distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET`: the gateway's own documents (`/health`, `/v1/models`).
    Get,
    /// `HEAD`: a `GET` answered without its body.
    Head,
    /// `POST`: every proxied API call.
    Post,
    /// `OPTIONS`: CORS preflights.
    Options,
    /// Anything else (answered with 405 or 404).
    Other,
}

/// A parsed request head.
#[derive(Debug, Clone)]
pub struct RequestHead {
    /// The method, when it is one the gateway serves (see `method_text` for any other).
    pub method: Method,
    /// Where the method's text is in the buffer (any method, for messages).
    pub method_text: Range<usize>,
    /// Request target (path and query).
    pub target: Range<usize>,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// All headers in order.
    pub headers: Vec<Header>,
    /// Length of the head including the blank line.
    pub len: usize,
    /// Body framing.
    pub body: Body,
    /// Whether the connection may stay open after this exchange.
    pub keep_alive: bool,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Why a head was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Head larger than the limit (431).
    TooLarge,
    /// More headers than the limit (431).
    TooManyHeaders,
    /// Not HTTP/1.x (400), with what was wrong.
    Malformed(&'static str),
    /// Ambiguous or unsupported framing (400), with what was wrong.
    Framing(&'static str),
    /// An `Expect` other than `100-continue` (417).
    Expectation,
}

impl RequestHead {
    /// Parses a request head from the start of `buf`. `Ok(None)` means more bytes are needed.
    /// At most `max_headers` headers (capped at [`MAX_HEADERS`]) and `max_bytes` bytes.
    pub fn parse(
        buf: &[u8],
        max_headers: usize,
        max_bytes: usize,
    ) -> Result<Option<RequestHead>, HeadError> {
        // Uninitialised scratch: no per-request memset of the whole header array.
        let mut scratch = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req
            .parse_with_uninit_headers(buf, &mut scratch[..max_headers.min(MAX_HEADERS)])
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                if buf.len() > max_bytes {
                    return Err(HeadError::TooLarge);
                }
                // httparse accepts a few leading CRLFs; anything else must look like a method.
                if let Some(&b) = buf.iter().find(|&&b| b != b'\r' && b != b'\n')
                    && !b.is_ascii_uppercase()
                {
                    return Err(HeadError::Malformed(
                        "request line must start with a method",
                    ));
                }
                return Ok(None);
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(httparse::Error::Version) => {
                return Err(HeadError::Malformed(
                    "only HTTP/1.0 and HTTP/1.1 are served",
                ));
            }
            Err(_) => return Err(HeadError::Malformed("malformed request head")),
        };
        if len > max_bytes {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        let off = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let method_str = req.method.unwrap_or("");
        // The rule a partial head is held to above, so the verdict on a head never depends on
        // how its bytes were split across reads (fuzzing found `get / HTTP/1.1` accepted whole
        // but refused when its first read ended inside the head).
        if !method_str.starts_with(|c: char| c.is_ascii_uppercase()) {
            return Err(HeadError::Malformed(
                "request line must start with a method",
            ));
        }
        let method = match method_str {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        };
        let method_text = off(method_str.as_bytes());
        let target = off(req.path.unwrap_or("").as_bytes());
        let minor_version = req.version.unwrap_or(1);

        let mut headers = Vec::with_capacity(req.headers.len());
        let mut content_length: Option<u64> = None;
        let mut chunked = false;
        let mut te_seen = false;
        let mut conn_close = false;
        let mut conn_keep_alive = false;
        let mut expect_continue = false;
        let mut host_count = 0;
        for h in req.headers.iter() {
            let name = h.name.as_bytes();
            let value = h.value;
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_content_length(value)
                    .ok_or(HeadError::Framing("invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::Framing("conflicting Content-Length headers"));
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te_seen = true;
                // Only a single, final `chunked` is accepted: anything else is either
                // unsupported (gzip) or a smuggling attempt (`chunked, identity`).
                let mut codings = value
                    .split(|&b| b == b',')
                    .map(|t| t.trim_ascii())
                    .filter(|t| !t.is_empty());
                match (codings.next(), codings.next()) {
                    (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") && !chunked => {
                        chunked = true
                    }
                    _ => {
                        return Err(HeadError::Framing(
                            "only `Transfer-Encoding: chunked` is accepted",
                        ));
                    }
                }
            } else if name.eq_ignore_ascii_case(b"connection") {
                conn_close |= super::has_token(value, b"close");
                conn_keep_alive |= super::has_token(value, b"keep-alive");
            } else if name.eq_ignore_ascii_case(b"expect") {
                if value.trim_ascii().eq_ignore_ascii_case(b"100-continue") {
                    expect_continue = true;
                } else {
                    return Err(HeadError::Expectation);
                }
            } else if name.eq_ignore_ascii_case(b"host") {
                host_count += 1;
            }
            headers.push(Header {
                name: off(name),
                value: off(value),
            });
        }
        if host_count > 1 {
            return Err(HeadError::Framing("more than one Host header"));
        }
        if te_seen && content_length.is_some() {
            return Err(HeadError::Framing(
                "both Content-Length and Transfer-Encoding are present",
            ));
        }
        if te_seen && minor_version == 0 {
            return Err(HeadError::Framing("HTTP/1.0 requests cannot be chunked"));
        }
        let body = if chunked {
            Body::Chunked
        } else {
            match content_length {
                Some(0) | None => Body::None,
                Some(n) => Body::Length(n),
            }
        };
        let keep_alive = if minor_version == 0 {
            conn_keep_alive && !conn_close
        } else {
            !conn_close
        };
        Ok(Some(RequestHead {
            method,
            method_text,
            target,
            minor_version,
            headers,
            len,
            body,
            keep_alive,
            expect_continue: expect_continue && minor_version == 1,
        }))
    }

    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(name))
            .map(|h| &buf[h.value.clone()])
    }

    /// The path part of the target (before `?`).
    pub fn path<'b>(&self, buf: &'b [u8]) -> &'b [u8] {
        let t = &buf[self.target.clone()];
        match memchr::memchr(b'?', t) {
            Some(i) => &t[..i],
            None => t,
        }
    }
}

/// A parsed response head.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    /// Status code.
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Headers in order.
    pub headers: Vec<Header>,
    /// Length of the head including the blank line.
    pub len: usize,
    /// Body framing.
    pub body: Body,
    /// Whether the connection may be reused afterwards.
    pub keep_alive: bool,
    /// `Content-Type: text/event-stream`.
    pub event_stream: bool,
}

impl ResponseHead {
    /// Parses a response head from the start of `buf`. `Ok(None)` means more bytes are needed.
    /// `request_was_head` makes the body empty whatever the headers say.
    pub fn parse(
        buf: &[u8],
        max_bytes: usize,
        request_was_head: bool,
    ) -> Result<Option<ResponseHead>, HeadError> {
        let mut scratch = [httparse::EMPTY_HEADER; 128];
        let mut resp = httparse::Response::new(&mut scratch);
        let len = match resp.parse(buf) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) => {
                return if buf.len() > max_bytes {
                    Err(HeadError::TooLarge)
                } else {
                    Ok(None)
                };
            }
            Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooManyHeaders),
            Err(_) => return Err(HeadError::Malformed("malformed response head")),
        };
        let base = buf.as_ptr() as usize;
        let off = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let status = resp.code.unwrap_or(0);
        let minor_version = resp.version.unwrap_or(1);
        let mut headers = Vec::with_capacity(resp.headers.len());
        let mut content_length = None;
        let mut chunked = false;
        let mut te_seen = false;
        let mut conn_close = minor_version == 0;
        let mut event_stream = false;
        for h in resp.headers.iter() {
            let name = h.name.as_bytes();
            let value = h.value;
            if name.eq_ignore_ascii_case(b"content-length") {
                let n = parse_content_length(value)
                    .ok_or(HeadError::Framing("invalid Content-Length"))?;
                if content_length.is_some_and(|c| c != n) {
                    return Err(HeadError::Framing("conflicting Content-Length headers"));
                }
                content_length = Some(n);
            } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
                te_seen = true;
                chunked = value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"chunked"));
            } else if name.eq_ignore_ascii_case(b"connection") {
                if super::has_token(value, b"close") {
                    conn_close = true;
                } else if super::has_token(value, b"keep-alive") {
                    conn_close = false;
                }
            } else if name.eq_ignore_ascii_case(b"content-type") {
                event_stream = value
                    .trim_ascii_start()
                    .get(..17)
                    .is_some_and(|v| v.eq_ignore_ascii_case(b"text/event-stream"));
            }
            headers.push(Header {
                name: off(name),
                value: off(value),
            });
        }
        let no_body =
            request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
        let body = if no_body {
            Body::None
        } else if te_seen {
            // RFC 9112 §6.3: Transfer-Encoding overrides Content-Length; a final coding other than
            // chunked means close-delimited. Such a connection is never reused.
            if chunked { Body::Chunked } else { Body::Close }
        } else {
            match content_length {
                Some(0) => Body::None,
                Some(n) => Body::Length(n),
                None => Body::Close,
            }
        };
        let keep_alive =
            !(conn_close || (te_seen && content_length.is_some())) && body != Body::Close;
        Ok(Some(ResponseHead {
            status,
            minor_version,
            headers,
            len,
            body,
            keep_alive,
            event_stream,
        }))
    }

    /// The first value of header `name` (case-insensitive).
    pub(crate) fn header<'b>(&self, buf: &'b [u8], name: &[u8]) -> Option<&'b [u8]> {
        self.headers
            .iter()
            .find(|h| buf[h.name.clone()].eq_ignore_ascii_case(name))
            .map(|h| &buf[h.value.clone()])
    }
}

fn parse_content_length(v: &[u8]) -> Option<u64> {
    let v = v.trim_ascii();
    if v.is_empty() || v.len() > 15 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    v.iter().try_fold(0u64, |acc, &d| {
        acc.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(raw: &[u8]) -> Result<Option<RequestHead>, HeadError> {
        RequestHead::parse(raw, 16, 16 * 1024)
    }

    #[test]
    fn parses_a_post_with_length() {
        let raw =
            b"POST /v1/chat/completions?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n{}";
        let h = req(raw).unwrap().unwrap();
        assert_eq!(h.method, Method::Post);
        assert_eq!(h.path(raw), b"/v1/chat/completions");
        assert_eq!(h.body, Body::Length(12));
        assert!(h.keep_alive);
        assert_eq!(h.header(raw, b"HOST"), Some(&b"a"[..]));
        assert_eq!(h.len, raw.len() - 2);
    }

    #[test]
    fn partial_heads_wait_and_oversized_ones_fail() {
        assert!(req(b"GET / HTTP/1.1\r\nHost: a\r\n").unwrap().is_none());
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &[b'a'; 2000]].concat();
        assert_eq!(
            RequestHead::parse(&big, 16, 1024).unwrap_err(),
            HeadError::TooLarge
        );
    }

    #[test]
    fn smuggling_shapes_are_rejected() {
        for raw in [
            &b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        ] {
            assert!(
                matches!(req(raw), Err(HeadError::Framing(_))),
                "{}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn garbage_is_malformed_early() {
        assert!(matches!(
            req(b"\x16\x03\x01\x02"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(req(b"hello"), Err(HeadError::Malformed(_))));
        // The same verdict whole or cut short (the fuzzer's h1_head split-invariance check).
        for raw in [
            &b"get / HTTP/1.1\r\n\r\n"[..],
            b"\r\nxGET / HTTP/1.1\r\n\r\n",
        ] {
            assert!(matches!(req(raw), Err(HeadError::Malformed(_))));
            assert!(matches!(req(&raw[..3]), Err(HeadError::Malformed(_))));
        }
        assert!(matches!(
            req(b"GET / HTTP/2.0\r\n\r\n"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn too_many_headers() {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..20 {
            raw.extend_from_slice(format!("X-{i}: v\r\n").as_bytes());
        }
        raw.extend_from_slice(b"\r\n");
        assert_eq!(req(&raw).unwrap_err(), HeadError::TooManyHeaders);
    }

    #[test]
    fn http10_keep_alive_rules_and_expect() {
        let h = req(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!h.keep_alive);
        let h = req(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.keep_alive);
        let h = req(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        let h = req(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(h.expect_continue);
        assert_eq!(
            req(b"POST / HTTP/1.1\r\nExpect: magic\r\n\r\n").unwrap_err(),
            HeadError::Expectation
        );
    }

    #[test]
    fn response_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\n\r\n";
        let h = ResponseHead::parse(raw, 8192, false).unwrap().unwrap();
        assert_eq!(h.body, Body::Chunked);
        assert!(h.event_stream && h.keep_alive);
        let h = ResponseHead::parse(b"HTTP/1.1 200 OK\r\n\r\n", 8192, false)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::Close);
        assert!(!h.keep_alive);
        let h = ResponseHead::parse(b"HTTP/1.1 204 No Content\r\n\r\n", 8192, false)
            .unwrap()
            .unwrap();
        assert_eq!(h.body, Body::None);
        assert!(h.keep_alive);
        let h = ResponseHead::parse(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n", 8192, false)
            .unwrap()
            .unwrap();
        assert!(!h.keep_alive);
        assert!(
            ResponseHead::parse(b"HTTP/1.1 200 OK\r\nContent-", 8192, false)
                .unwrap()
                .is_none()
        );
        assert!(ResponseHead::parse(b"SSH-2.0\r\n\r\n", 8192, false).is_err());
    }
}
