//! The gateway's client-facing error: an HTTP status, an OpenAI error `type`, a stable
//! machine-readable `code`, and a message that says what to fix.
//!
//! Invariants: every error a client of an OpenAI endpoint sees is rendered by [`Error::body`]
//! as `{"error":{"message","type","param","code"}}`; constructing an error never logs (the layer
//! that handles it decides). `metric_label` is low-cardinality (the `code`).
//! Not here: classification of upstream failures for failover (`proxy`), which ends in one of
//! these when every attempt failed.

use std::borrow::Cow;
use std::fmt;

use crate::json;

/// OpenAI's error `type` families.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The request was malformed or cannot be served as asked (4xx).
    InvalidRequest,
    /// Missing or wrong credentials (401).
    Authentication,
    /// The credentials may not do this (403).
    Permission,
    /// Too many requests (429).
    RateLimit,
    /// The gateway or every upstream failed (5xx).
    Server,
}

impl Kind {
    /// The OpenAI `type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::InvalidRequest => "invalid_request_error",
            Kind::Authentication => "authentication_error",
            Kind::Permission => "permission_error",
            Kind::RateLimit => "rate_limit_error",
            Kind::Server => "server_error",
        }
    }
}

/// A client-facing error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// HTTP status code.
    pub status: u16,
    /// OpenAI error type.
    pub kind: Kind,
    /// Stable machine-readable code (also the metric label).
    pub code: &'static str,
    /// Human-readable message naming what was wrong and how to fix it.
    pub message: Cow<'static, str>,
    /// The request field at fault, if one is (`param`).
    pub param: Option<&'static str>,
}

impl Error {
    /// A new error.
    pub fn new(
        status: u16,
        kind: Kind,
        code: &'static str,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Error {
            status,
            kind,
            code,
            message: message.into(),
            param: None,
        }
    }

    /// The same error naming the request field at fault.
    pub fn with_param(mut self, param: &'static str) -> Self {
        self.param = Some(param);
        self
    }

    /// 400 with `invalid_request_error`.
    pub fn bad_request(code: &'static str, message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(400, Kind::InvalidRequest, code, message)
    }

    /// 404 for an unknown path.
    pub fn unknown_route(method: &str, path: &str) -> Self {
        Self::new(
            404,
            Kind::InvalidRequest,
            "unknown_url",
            format!(
                "Unknown request URL: {method} {}. See the README for the endpoints this gateway serves.",
                truncate(path, 200)
            ),
        )
    }

    /// 405 for a known path with the wrong method.
    pub fn method_not_allowed(method: &str, path: &str, allow: &str) -> Self {
        Self::new(
            405,
            Kind::InvalidRequest,
            "method_not_allowed",
            format!(
                "Method {method} is not allowed on {}; use {allow}.",
                truncate(path, 200)
            ),
        )
    }

    /// 500 for a bug caught at the connection boundary.
    pub fn internal(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(500, Kind::Server, "internal_error", message)
    }

    /// 503 for a gateway that cannot take more work right now.
    pub fn overloaded(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(503, Kind::Server, "overloaded", message)
    }

    /// The low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        self.code
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(96 + self.message.len());
        self.write_body(&mut out);
        out
    }

    /// Appends the OpenAI-shaped JSON body to `out`.
    pub fn write_body(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"error\":{\"message\":");
        json::write_str(out, &self.message);
        out.extend_from_slice(b",\"type\":");
        json::write_str(out, self.kind.as_str());
        out.extend_from_slice(b",\"param\":");
        match self.param {
            Some(p) => json::write_str(out, p),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"code\":");
        json::write_str(out, self.code);
        out.extend_from_slice(b"}}");
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for Error {}

/// Shortens untrusted text quoted back in messages, on a char boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_openai_shaped_and_escaped() {
        let e = Error::bad_request("invalid_json", "bad \"quote\"");
        assert_eq!(
            String::from_utf8(e.body()).unwrap(),
            r#"{"error":{"message":"bad \"quote\"","type":"invalid_request_error","param":null,"code":"invalid_json"}}"#
        );
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
