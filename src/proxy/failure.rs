//! How an attempt failed, typed: what broke ([`Cause`]), at which stage of the exchange
//! ([`Stage`]), and whether the connection was a reused pooled one — with a low-cardinality
//! label for metrics and logs — or which upstream status moved the request on ([`Kept`]).
//! And what the client gets when every attempt failed ([`give_up`]). What a failure does to
//! health is decided by `live::health::verdict`.
//!
//! Invariants: a failure's text is its detail as the upstream or the socket said it, never a
//! credential (connect errors name the proxy by address only); the label is one of a fixed set.
//! Not here: the decision itself (`live::health`), relaying (`relay`).

use std::time::Duration;

use super::session::Extra;
use crate::error::{Error, Kind};
use crate::live::health::Event;
use crate::snapshot::Snapshot;
use crate::upstream::ConnectError;

/// Where in the exchange an attempt broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Opening the connection (TCP, proxy tunnel, TLS).
    Connect,
    /// Writing the request.
    Send,
    /// Waiting for, or reading, the response head.
    Head,
    /// Reading a whole response body.
    Body,
    /// Relaying a stream (before its first event reached the client).
    Stream,
}

/// What broke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cause {
    /// The endpoint has no resolved address yet.
    NoAddress,
    /// Refused, unreachable or reset while connecting.
    Connect,
    /// The TLS handshake failed.
    Tls,
    /// The outbound proxy failed or refused the tunnel.
    Proxy,
    /// The connection closed or reset before the response was complete.
    Closed,
    /// Bytes that are not the HTTP (or event stream) they should be.
    Malformed,
    /// Silence past a deadline.
    Timeout,
    /// An answer larger than the gateway relays.
    TooLarge,
    /// An answer in a `Content-Encoding` the gateway does not decode (anything but `gzip`,
    /// `deflate` and `identity`): the upstream ignored `Accept-Encoding: identity`, which says
    /// nothing about its health.
    Encoding,
}

/// A failed attempt that produced no usable response.
#[derive(Debug)]
pub(super) struct UpstreamError {
    /// What broke.
    pub(super) cause: Cause,
    /// The stage of the exchange it broke in.
    pub(super) stage: Stage,
    /// On a pooled connection reused from an earlier exchange.
    pub(super) reused: bool,
    /// What the socket or the upstream said (shown in the 502 that names every attempt).
    pub(super) detail: String,
}

impl UpstreamError {
    pub(super) fn new(cause: Cause, stage: Stage, detail: impl Into<String>) -> UpstreamError {
        UpstreamError {
            cause,
            stage,
            reused: false,
            detail: detail.into(),
        }
    }

    /// A connect failure.
    pub(super) fn connect(e: ConnectError) -> UpstreamError {
        let cause = match &e {
            ConnectError::NoAddress => Cause::NoAddress,
            ConnectError::Io(_) => Cause::Connect,
            ConnectError::Timeout => Cause::Timeout,
            ConnectError::Tls(_) => Cause::Tls,
            ConnectError::ProxyIo(_) | ConnectError::Proxy(_) => Cause::Proxy,
        };
        UpstreamError::new(cause, Stage::Connect, e.to_string())
    }

    /// The metric and log label: `<stage>_<cause>`, e.g. `head_timeout`, `connect_tls`, with
    /// `_reused` when a pooled connection failed (a stale keep-alive, not the upstream).
    pub(super) fn label(&self) -> &'static str {
        if self.reused && self.cause == Cause::Closed {
            return match self.stage {
                Stage::Send => "send_failed_reused",
                _ => "head_closed_reused",
            };
        }
        use Cause as C;
        use Stage as S;
        match (self.stage, self.cause) {
            (_, C::NoAddress) => "connect_no_address",
            (S::Stream, C::Encoding) => "stream_encoding",
            (_, C::Encoding) => "body_encoding",
            (S::Connect, C::Timeout) => "connect_timeout",
            (S::Connect, C::Tls) => "connect_tls",
            (S::Connect, C::Proxy) => "connect_proxy",
            (S::Connect, _) => "connect_failed",
            (S::Send, _) => "send_failed",
            (S::Head, C::Timeout) => "head_timeout",
            (S::Head, C::Malformed) => "head_malformed",
            (S::Head, _) => "head_closed",
            (S::Body, C::Timeout) => "body_timeout",
            (S::Body, C::TooLarge) => "body_too_large",
            (S::Body, C::Malformed) => "body_malformed",
            (S::Body, _) => "body_closed",
            (S::Stream, C::Timeout) => "stream_timeout",
            (S::Stream, C::Malformed) => "stream_malformed",
            (S::Stream, _) => "stream_closed",
        }
    }

    /// Whether the failure was a timeout (the client then gets 504 when it was the last).
    pub(super) fn timed_out(&self) -> bool {
        self.cause == Cause::Timeout
    }

    /// What it means for health: the channel could not be reached (connecting, or sending
    /// before any answer), or the exchange broke after that.
    /// An answer in an encoding the gateway cannot read says nothing about health (no
    /// cooldown), though the channel would answer the same way again.
    pub(super) fn event(&self) -> Event {
        match (self.cause, self.stage) {
            (Cause::Encoding, _) => Event::Unreadable,
            (_, Stage::Connect | Stage::Send) => Event::Unreachable,
            (_, Stage::Head | Stage::Body | Stage::Stream) => Event::Broken,
        }
    }
}

/// A failed attempt's response kept in case it was the last (returned as-is for 404/429).
#[derive(Debug)]
pub(super) struct Kept {
    pub(super) status: u16,
    pub(super) headers: Vec<(Vec<u8>, Vec<u8>)>,
    pub(super) body: Vec<u8>,
    /// Its `Retry-After`, if any.
    pub(super) retry_after: Option<Duration>,
}

/// How one attempt failed.
#[derive(Debug)]
pub(super) enum Failure {
    /// No usable response.
    Upstream(UpstreamError),
    /// An upstream status that moves to the next candidate.
    Status(Kept),
}

impl Failure {
    /// The metric and log label (`status_4xx`/`status_5xx` for statuses).
    pub(super) fn label(&self) -> &'static str {
        match self {
            Failure::Upstream(e) => e.label(),
            Failure::Status(k) if k.status >= 500 => "status_5xx",
            Failure::Status(_) => "status_4xx",
        }
    }

    /// Whether the same channel may be tried again at once (when it is the last one left): the
    /// connection was refused or reset before the request went out, or the answer was a 502 or
    /// 503 — never a timeout or a 504, after which the provider may still be working (and
    /// billing) on the first request.
    pub(super) fn worth_retrying_here(&self) -> bool {
        match self {
            Failure::Upstream(e) => matches!(
                (e.stage, e.cause),
                (Stage::Connect, Cause::Connect) | (Stage::Send, Cause::Closed)
            ),
            Failure::Status(k) => matches!(k.status, 502 | 503),
        }
    }

    /// The text the final 502 gives for this attempt.
    pub(super) fn describe(&self) -> String {
        match self {
            Failure::Upstream(e) => e.detail.clone(),
            Failure::Status(k) => format!("HTTP {}", k.status),
        }
    }
}

/// Statuses that move the request to the next candidate (DESIGN.md §6).
pub(super) fn fails_over(status: u16) -> bool {
    matches!(status, 401 | 402 | 403 | 404 | 429) || status >= 500
}

/// True when an upstream error body names `model` (so a 404 is about that model, not the
/// path): the id as a whole word — not inside a longer id (`gpt-4o` in `gpt-4o-mini`) nor
/// inside a word (`m` in `message`). `/` and `:` bound it (`models/gemini-2.0-flash`).
pub(super) fn mentions(body: &[u8], model: &str) -> bool {
    let id = model.as_bytes();
    if id.is_empty() {
        return false;
    }
    let part_of_id = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.');
    memchr::memmem::find_iter(body, id).any(|at| {
        let before = at.checked_sub(1).map(|i| body[i]);
        let after = body.get(at + id.len()).copied();
        !before.is_some_and(part_of_id) && !after.is_some_and(part_of_id)
    })
}

/// What the client gets when every attempt failed.
#[derive(Debug)]
pub(super) enum GiveUp {
    /// The last attempt's 404, as the upstream said it (in the client's family): an unknown
    /// model is the client's business.
    Relay(Kept),
    /// The gateway's own answer.
    Answer(Error, Extra),
}

/// Every attempt failed: the last upstream 404 as-is; a 429 when the last was rate limited
/// (the gateway's own body: the provider's names the operator's account); else 502 (504 after
/// a timeout).
pub(super) fn give_up(snap: &Snapshot, model: &str, failures: Vec<(usize, Failure)>) -> GiveUp {
    let summary: Vec<String> = failures
        .iter()
        .map(|(c, f)| format!("{}: {}", snap.channels[*c].id, f.describe()))
        .collect();
    tracing::warn!(model, attempts = failures.len(), failures = %summary.join("; "), "all attempts failed");
    // The soonest any rate-limited attempt said it has room again.
    let soonest_room = failures
        .iter()
        .filter_map(|(_, f)| match f {
            Failure::Status(k) if k.status == 429 => {
                Some(k.retry_after.unwrap_or(snap.routing.cooldown.base))
            }
            _ => None,
        })
        .min();
    let Some((_, last)) = failures.into_iter().last() else {
        let e = Error::new(502, Kind::Server, "upstream_error", "No attempt was made.");
        return GiveUp::Answer(e, Extra::default());
    };
    let model = crate::error::truncate(model, 200);
    match last {
        Failure::Status(k) if k.status == 404 => GiveUp::Relay(k),
        Failure::Status(k) if k.status == 429 => {
            let wait = soonest_room.unwrap_or(snap.routing.cooldown.base);
            let e = Error::new(
                429,
                Kind::RateLimit,
                "rate_limit_exceeded",
                format!(
                    "Every channel tried for `{model}` is rate limited by its provider ({}). Retry after {:.1} s.",
                    summary.join("; "),
                    wait.as_secs_f64()
                ),
            );
            GiveUp::Answer(e, Extra::default().retry_after(Some(wait)))
        }
        last => {
            // 401/402/403 describe the *gateway's* key, not the client's: relaying them would
            // tell the client its own credentials are wrong and leak the provider's text about
            // ours. They become a 502 naming the channel.
            let (status, code, hint) = match &last {
                Failure::Upstream(e) if e.timed_out() => (504, "upstream_timeout", ""),
                Failure::Status(k) if matches!(k.status, 401 | 403) => (
                    502,
                    "upstream_auth_failed",
                    " The provider rejected the channel's API key; check its api_key.",
                ),
                Failure::Status(k) if k.status == 402 => (
                    502,
                    "upstream_quota_exhausted",
                    " The provider reports the channel's credit or quota is exhausted.",
                ),
                _ => (502, "upstream_error", ""),
            };
            let e = Error::new(
                status,
                Kind::Server,
                code,
                format!(
                    "Every upstream attempt for `{model}` failed ({}).{hint}",
                    summary.join("; ")
                ),
            );
            GiveUp::Answer(e, Extra::default())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_failure_reaches_health_as_its_event() {
        let e = |cause, stage| UpstreamError::new(cause, stage, "x").event();
        assert_eq!(e(Cause::Connect, Stage::Connect), Event::Unreachable);
        assert_eq!(e(Cause::Tls, Stage::Connect), Event::Unreachable);
        assert_eq!(e(Cause::Closed, Stage::Send), Event::Unreachable);
        assert_eq!(e(Cause::Timeout, Stage::Head), Event::Broken);
        assert_eq!(e(Cause::Malformed, Stage::Body), Event::Broken);
        assert_eq!(e(Cause::Encoding, Stage::Body), Event::Unreadable);
        assert_eq!(e(Cause::Encoding, Stage::Stream), Event::Unreadable);
    }

    #[test]
    fn a_body_names_the_model_only_as_a_whole_id() {
        assert!(mentions(b"The model `gpt-4o` does not exist", "gpt-4o"));
        assert!(mentions(b"{\"message\":\"model: claude-x\"}", "claude-x"));
        assert!(mentions(
            b"models/gemini-2.0-flash is not found",
            "gemini-2.0-flash"
        ));
        assert!(mentions(b"gpt-4o", "gpt-4o"));
        assert!(!mentions(
            b"The model `gpt-4o-mini` does not exist",
            "gpt-4o"
        ));
        assert!(!mentions(b"{\"message\":\"Invalid URL\"}", "m"));
        assert!(!mentions(b"anything", ""));
    }

    #[test]
    fn labels_name_the_stage_and_the_cause() {
        let e = |cause, stage| UpstreamError::new(cause, stage, "x");
        assert_eq!(e(Cause::Timeout, Stage::Head).label(), "head_timeout");
        assert_eq!(e(Cause::Tls, Stage::Connect).label(), "connect_tls");
        assert_eq!(e(Cause::TooLarge, Stage::Body).label(), "body_too_large");
        assert_eq!(e(Cause::Closed, Stage::Stream).label(), "stream_closed");
        assert_eq!(e(Cause::Encoding, Stage::Body).label(), "body_encoding");
        assert_eq!(e(Cause::Encoding, Stage::Stream).label(), "stream_encoding");
        assert_eq!(e(Cause::Malformed, Stage::Body).label(), "body_malformed");
        let stale = UpstreamError {
            reused: true,
            ..e(Cause::Closed, Stage::Head)
        };
        assert_eq!(stale.label(), "head_closed_reused");
        let slow = UpstreamError {
            reused: true,
            ..e(Cause::Timeout, Stage::Head)
        };
        assert_eq!(slow.label(), "head_timeout");
        assert!(slow.timed_out());
        assert_eq!(
            UpstreamError::connect(crate::upstream::ConnectError::Timeout).label(),
            "connect_timeout"
        );
    }
}
