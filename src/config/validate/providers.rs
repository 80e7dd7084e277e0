//! `[providers.ID]`: a wire family or preset, where it lives, how it authenticates, which
//! headers it adds and forwards, its timeouts, pool and outbound proxy.

use std::path::PathBuf;
use std::time::Duration;

use super::{Checker, raw, valid_id};
use crate::config::{BaseUrl, ProviderConfig, ProxyUrl, closest, defaults};
use crate::presets::{self, AuthStyle};

/// One `[providers.ID]` table (a wrong `kind` falls back to the first preset so the other keys
/// are still checked).
pub(super) fn provider(c: &mut Checker, id: String, p: raw::Provider) -> ProviderConfig {
    let at = |k: &str| format!("providers.{id}.{k}");
    if !valid_id(&id) {
        c.err(
            format!("providers.{id}"),
            "provider ids are 1-64 letters, digits, '.', '_' or '-'",
        );
    }
    let kind = p.kind.unwrap_or_else(|| "openai".to_string());
    let preset = presets::preset(&kind);
    if preset.is_none() {
        let known: Vec<&str> = presets::kinds().collect();
        let hint = closest(&kind, &known)
            .map(|k| format!("did you mean \"{k}\"? "))
            .unwrap_or_default();
        c.err(
            at("kind"),
            format!(
                "unknown kind \"{kind}\"; {hint}known kinds: {}",
                known.join(", ")
            ),
        );
    }
    let preset = preset.unwrap_or(&presets::PRESETS[0]);
    let base_url = match p.base_url {
        Some(u) => BaseUrl::parse(&u)
            .map_err(|m| c.err(at("base_url"), m))
            .ok(),
        None if preset.base_url.is_empty() => None,
        None => BaseUrl::parse(preset.base_url).ok(),
    };
    let chat_path = p.chat_path.unwrap_or_else(|| preset.chat_path.to_string());
    let responses = match p.responses {
        Some(true) if preset.family != presets::Family::OpenAi => {
            c.err(
                at("responses"),
                "only OpenAI-family providers can serve the Responses API natively; leave it out (requests are translated)",
            );
            false
        }
        Some(r) => r,
        None => presets::speaks_responses(&kind),
    };
    let drop_unsupported = match p.on_unsupported.as_deref() {
        None | Some("error") => false,
        Some("drop") => true,
        Some(other) => {
            c.err(
                at("on_unsupported"),
                format!("\"{other}\" is not a choice; use \"error\" (refuse requests this family cannot express) or \"drop\" (send them without the field)"),
            );
            false
        }
    };
    if !chat_path.starts_with('/') || chat_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        c.err(
            at("chat_path"),
            format!("\"{chat_path}\" must be a path starting with /"),
        );
    }
    let auth = match p.auth.as_deref() {
        None => preset.auth,
        Some(a) => AuthStyle::parse(a).unwrap_or_else(|| {
            c.err(
                at("auth"),
                format!(
                    "\"{a}\" is not an auth style; use \"bearer\", \"x-api-key\", \"api-key\" or \"x-goog-api-key\""
                ),
            );
            preset.auth
        }),
    };
    let mut headers: Vec<(String, String)> = preset
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for (k, v) in p.headers.unwrap_or_default() {
        if !is_token(&k) {
            c.err(at(&format!("headers.{k}")), "not a valid header name");
            continue;
        }
        if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            c.err(
                at(&format!("headers.{k}")),
                "header values must not contain CR, LF or NUL",
            );
            continue;
        }
        if is_managed_header(&k) {
            c.err(
                at(&format!("headers.{k}")),
                "the gateway sets this header itself; remove it (auth goes in the channel's api_key)",
            );
            continue;
        }
        headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&k));
        headers.push((k, v));
    }
    let mut forward_headers = Vec::new();
    for (i, h) in p
        .forward_headers
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let name = h.strip_suffix('*').unwrap_or(&h);
        let key = at(&format!("forward_headers[{i}]"));
        if !(is_token(name) || h == "*") {
            c.err(
                key,
                format!("\"{h}\" is not a header name (or a prefix ending in *)"),
            );
        } else if crate::h1::forwarding::never_forwarded(h.as_bytes()) {
            c.err(
                key,
                format!(
                    "\"{h}\" is never forwarded: credentials and framing are the gateway's own"
                ),
            );
        } else {
            forward_headers.push(h.to_ascii_lowercase());
        }
    }
    let ca_file = p.ca_file.map(PathBuf::from);
    let models_path = p
        .models_path
        .unwrap_or_else(|| preset.models_path.to_string());
    if !models_path.starts_with('/') || models_path.bytes().any(|b| b <= b' ' || b == 0x7f) {
        c.err(
            at("models_path"),
            format!("\"{models_path}\" must be a path starting with /"),
        );
    }
    // An empty value means "direct", so `proxy = "${HTTPS_PROXY:-}"` works whether the
    // variable is set or not.
    let proxy = p.proxy.filter(|u| !u.trim().is_empty()).and_then(|u| {
        ProxyUrl::parse(u.trim())
            .map_err(|m| c.err(at("proxy"), m))
            .ok()
    });
    ProviderConfig {
        kind,
        family: preset.family,
        stream_usage: p.stream_usage.unwrap_or(preset.stream_usage),
        responses,
        drop_unsupported,
        forward_headers,
        base_url,
        chat_path,
        auth,
        headers,
        ca_file,
        connect_timeout: c.duration(
            &at("connect_timeout"),
            p.connect_timeout,
            defaults::CONNECT_TIMEOUT,
            Duration::from_millis(1),
        ),
        first_byte_timeout: c.duration(
            &at("first_byte_timeout"),
            p.first_byte_timeout,
            defaults::FIRST_BYTE_TIMEOUT,
            Duration::from_millis(1),
        ),
        idle_timeout: c.duration(
            &at("idle_timeout"),
            p.idle_timeout,
            defaults::UPSTREAM_IDLE_TIMEOUT,
            Duration::from_millis(1),
        ),
        total_timeout: c.duration(
            &at("total_timeout"),
            p.total_timeout,
            defaults::TOTAL_TIMEOUT,
            Duration::from_millis(1),
        ),
        pool_max_idle: c.int(
            &at("pool_max_idle"),
            p.pool_max_idle,
            defaults::POOL_MAX_IDLE,
            0,
            65536,
        ),
        pool_idle_timeout: c.duration(
            &at("pool_idle_timeout"),
            p.pool_idle_timeout,
            defaults::POOL_IDLE_TIMEOUT,
            Duration::from_millis(1),
        ),
        models_path,
        proxy,
        id,
    }
}

/// An HTTP token (header names).
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Headers the gateway sets itself on upstream requests (framing, the host, credentials, the
/// encoding it can read): refused in `[providers.ID] headers`, and dropped by `import`.
pub(crate) fn is_managed_header(name: &str) -> bool {
    const MANAGED: &[&str] = &[
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "authorization",
        "x-api-key",
        "api-key",
        "accept-encoding",
    ];
    MANAGED.iter().any(|m| m.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use crate::config::test_support::{MINIMAL, env, problems};
    use crate::config::{Config, ProxyKind};
    use crate::presets::{self, AuthStyle};

    #[test]
    fn forward_headers_take_names_and_prefixes_but_never_credentials() {
        let base = "[providers.a]\nkind = \"anthropic\"\nbase_url = \"http://x/v1\"\n";
        let c = Config::parse(
            &format!("{base}forward_headers = [\"Anthropic-Beta\", \"x-stainless-*\"]\n"),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(
            c.providers[0].forward_headers,
            ["anthropic-beta", "x-stainless-*"]
        );
        let p = problems(&format!(
            "{base}forward_headers = [\"Authorization\", \"x-api-key\", \"bad header\", \"x-router-*\"]\n"
        ));
        let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "providers.a.forward_headers[0]",
                "providers.a.forward_headers[1]",
                "providers.a.forward_headers[2]",
                "providers.a.forward_headers[3]"
            ],
            "{p:?}"
        );
        assert!(p[0].message.contains("never forwarded"), "{p:?}");
    }

    #[test]
    fn native_kinds_bring_their_family_path_and_auth() {
        let c = Config::parse(
            "[providers.a]\nkind = \"anthropic\"\n[providers.g]\nkind = \"gemini\"\n[[channels]]\nid=\"a\"\nprovider=\"a\"\nmodels=[\"m\"]\n[[channels]]\nid=\"g\"\nprovider=\"g\"\nmodels=[\"m\"]\n",
            &env(&[]),
        )
        .unwrap();
        let a = c.providers.iter().find(|p| p.id == "a").unwrap();
        assert_eq!(a.family, presets::Family::Anthropic);
        assert_eq!(a.chat_path, "/messages");
        assert_eq!(a.auth, AuthStyle::XApiKey);
        assert!(
            a.headers
                .iter()
                .any(|(k, v)| k == "anthropic-version" && v == "2023-06-01")
        );
        let g = c.providers.iter().find(|p| p.id == "g").unwrap();
        assert_eq!(g.family, presets::Family::Gemini);
        assert_eq!(g.chat_path, "/models/{model}:generateContent");
        assert_eq!(g.auth, AuthStyle::GoogApiKey);
        assert_eq!(g.models_path, "/models?pageSize=1000");
    }

    #[test]
    fn presets_fill_base_url_and_auth() {
        let c = Config::parse(
            "[providers.g]\nkind = \"groq\"\n[providers.z]\nkind=\"azure\"\nbase_url=\"https://r.openai.azure.com/openai/deployments/d\"\n[[channels]]\nid=\"g\"\nprovider=\"g\"\nmodels=[\"m\"]\n",
            &env(&[]),
        )
        .unwrap();
        let g = c.providers.iter().find(|p| p.id == "g").unwrap();
        assert_eq!(
            g.base_url.as_ref().unwrap().to_url(),
            "https://api.groq.com/openai/v1"
        );
        let z = c.providers.iter().find(|p| p.id == "z").unwrap();
        assert_eq!(z.auth, AuthStyle::ApiKey);
    }

    #[test]
    fn provider_proxy_is_validated_at_its_key_path() {
        let with = |proxy: &str| {
            MINIMAL.replace(
                "base_url = \"http://127.0.0.1:9000/v1\"",
                &format!("base_url = \"http://127.0.0.1:9000/v1\"\nproxy = \"{proxy}\""),
            )
        };
        let c = Config::parse(&with("socks5://u:secret-pw@127.0.0.1:1080"), &env(&[])).unwrap();
        let px = c.providers[0].proxy.as_ref().unwrap();
        assert_eq!((px.kind, px.port), (ProxyKind::Socks5, 1080));
        assert!(!format!("{c:?}").contains("secret-pw"));
        assert!(c.summary().contains("via socks5://***@127.0.0.1:1080"));
        assert!(!c.summary().contains("secret-pw"));
        // empty: direct (so an unset `${VAR:-}` turns the proxy off)
        let c = Config::parse(&with(""), &env(&[])).unwrap();
        assert!(c.providers[0].proxy.is_none());
        let p = problems(&with("ftp://u:secret-pw@h:21"));
        assert_eq!(p[0].path, "providers.up.proxy");
        assert!(!p[0].message.contains("secret-pw"), "{p:?}");
    }
}
