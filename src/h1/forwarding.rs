//! Which headers cross the gateway (DESIGN §4a, §9): the client's request headers that reach
//! an upstream, and the upstream's response headers that reach the client.
//!
//! Requests: an allow-list. Beside it the gateway writes its own `Content-Type`,
//! `Accept-Encoding: identity`, `x-request-id`, the channel's credentials and the provider's
//! configured `headers`; everything else a client sends — notably `OpenAI-Organization`,
//! `OpenAI-Project`, `OpenAI-Beta`, `anthropic-beta`, `x-stainless-*`, cookies — stays behind
//! unless the provider lists it in `forward_headers` (names, or prefixes ending in `*`). Those
//! headers choose which of the operator's accounts pays, or opt into costlier features: the
//! operator decides, not the client. Credentials, framing and the gateway's own headers are
//! never forwarded, listed or not (config validation refuses listing them).
//!
//! Responses: the upstream's headers pass except framing and content coding (the gateway
//! decodes), hop-by-hop, identity (`server`, `date`), cookies, CORS, and facts about the operator's provider account (organisation,
//! project, auth challenges, `x-ratelimit-*`: the account's limits are not the client's).
//!
//! Pure functions over header names; no allocation.

/// Client request headers forwarded to every upstream.
pub const ALLOWED: &[&str] = &[
    "accept",
    "user-agent",
    "traceparent",
    "tracestate",
    "idempotency-key",
];

/// Request headers never forwarded, whatever `forward_headers` says: the channel's
/// credentials and the headers the gateway writes itself.
const NEVER: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "api-key",
    "x-goog-api-key",
    "content-length",
    "content-type",
    "accept-encoding",
    "expect",
    "x-request-id",
    "cookie",
];

/// True when the client's request header `name` goes upstream on a provider that lists
/// `forward` (lower-case names, or prefixes ending in `*`). Hop-by-hop headers (and those the
/// client's `Connection` names) are the caller's to drop as well.
pub fn forward_request(name: &[u8], forward: &[Box<str>]) -> bool {
    if never_forwarded(name) {
        return false;
    }
    ALLOWED
        .iter()
        .any(|a| a.as_bytes().eq_ignore_ascii_case(name))
        || forward.iter().any(|f| listed(f, name))
}

/// True for a header the gateway never forwards from a client (credentials, framing, its own).
pub fn never_forwarded(name: &[u8]) -> bool {
    super::is_hop_by_hop(name)
        || NEVER
            .iter()
            .any(|n| n.as_bytes().eq_ignore_ascii_case(name))
        || starts_with_ci(name, b"x-router-")
}

/// Whether a `forward_headers` entry (a lower-case name, or a prefix ending in `*`) names
/// `name`.
fn listed(entry: &str, name: &[u8]) -> bool {
    match entry.strip_suffix('*') {
        Some(prefix) => starts_with_ci(name, prefix.as_bytes()),
        None => entry.as_bytes().eq_ignore_ascii_case(name),
    }
}

/// True for upstream response headers passed on to the client.
pub fn forward_response(name: &[u8]) -> bool {
    const DROP: &[&[u8]] = &[
        b"content-length",
        b"content-type",
        // The gateway decodes every answer it relays (or refuses it): what the client gets is
        // never encoded, whatever the upstream sent.
        b"content-encoding",
        b"date",
        b"server",
        b"x-request-id",
        // The gateway's id (on Anthropic ingress) replaces the provider's.
        b"request-id",
        b"set-cookie",
        b"alt-svc",
        b"www-authenticate",
        b"openai-organization",
        b"openai-project",
        b"anthropic-organization-id",
    ];
    !(super::is_hop_by_hop(name)
        || DROP.iter().any(|d| d.eq_ignore_ascii_case(name))
        || starts_with_ci(name, b"access-control-")
        || starts_with_ci(name, b"x-router-")
        || starts_with_ci(name, b"x-ratelimit-")
        || starts_with_ci(name, b"anthropic-ratelimit-"))
}

fn starts_with_ci(name: &[u8], prefix: &[u8]) -> bool {
    name.len() >= prefix.len() && name[..prefix.len()].eq_ignore_ascii_case(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(v: &[&str]) -> Vec<Box<str>> {
        v.iter().map(|s| (*s).into()).collect()
    }

    #[test]
    fn the_allow_list_and_nothing_else_by_default() {
        for name in [
            "Accept",
            "user-agent",
            "TRACEPARENT",
            "tracestate",
            "Idempotency-Key",
        ] {
            assert!(forward_request(name.as_bytes(), &[]), "{name}");
        }
        for name in [
            "OpenAI-Organization",
            "OpenAI-Project",
            "OpenAI-Beta",
            "anthropic-beta",
            "anthropic-version",
            "x-stainless-os",
            "x-custom",
            "Cookie",
            "Authorization",
            "x-api-key",
            "x-goog-api-key",
            "x-router-strategy",
            "Connection",
            "Transfer-Encoding",
            "Content-Length",
        ] {
            assert!(!forward_request(name.as_bytes(), &[]), "{name}");
        }
    }

    #[test]
    fn a_provider_may_list_more_but_never_credentials() {
        let f = list(&["anthropic-beta", "x-stainless-*"]);
        assert!(forward_request(b"Anthropic-Beta", &f));
        assert!(forward_request(b"X-Stainless-Lang", &f));
        assert!(!forward_request(b"openai-organization", &f));
        let greedy = list(&["*", "authorization", "x-api-key"]);
        assert!(forward_request(b"openai-organization", &greedy));
        assert!(!forward_request(b"authorization", &greedy));
        assert!(!forward_request(b"x-api-key", &greedy));
        assert!(!forward_request(b"host", &greedy));
        assert!(!forward_request(b"keep-alive", &greedy));
    }

    #[test]
    fn the_operators_account_facts_stay_behind() {
        for name in [
            "x-ratelimit-remaining-requests",
            "X-RateLimit-Reset-Tokens",
            "anthropic-ratelimit-requests-remaining",
            "openai-organization",
            "Set-Cookie",
            "content-length",
        ] {
            assert!(!forward_response(name.as_bytes()), "{name}");
        }
        for name in ["openai-processing-ms", "x-upstream-thing", "cache-control"] {
            assert!(forward_response(name.as_bytes()), "{name}");
        }
    }
}
