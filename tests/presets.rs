//! Every provider preset on the wire: with one channel per `kind` on the mock (the base URL
//! given the way the provider documents it, host swapped for the mock's), a chat request
//! through the gateway must reach the preset's path (version prefixes such as zhipu's
//! `/api/paas/v4` kept, Gemini's and Azure's `{model}` filled in, Azure's `api-version` query
//! kept), carry the channel's key in the preset's auth header and nowhere else, and carry the
//! preset's extra headers. Also: the preset list covers at least 19 kinds, and the default base
//! URLs are the documented ones.
//!
//! Expectations are written out by hand in [`EXPECTED`] rather than derived from `PRESETS`, so a
//! wrong preset fails here instead of agreeing with itself. Not here: what each family's body
//! looks like (`families.rs`), discovery and probes (`models_path`).

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::net::SocketAddr;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::mock::{MockConfig, Recorded};
use smart_ai_router::presets::{Family, PRESETS, Preset, preset};

const DRIVER: &str = "io_uring_or_auto";

/// A key the client sends in every auth header the gateway knows; it must never reach an
/// upstream (the gateway authenticates upstream with the channel's key only).
const CLIENT_SECRET: &str = "client-secret-must-not-leak";

/// What one preset must put on the wire.
struct Expect {
    kind: &'static str,
    /// The path of the base URL as the provider documents it (empty: the resource root).
    base_path: &'static str,
    /// The chat request's path for model `m-<kind>`, non-streamed.
    path: &'static str,
    /// The same, streamed (differs for Gemini only).
    stream_path: &'static str,
    /// The `api-version` query parameter, when the provider wants one.
    api_version: Option<&'static str>,
    /// The (lower-case) header carrying the key.
    auth: &'static str,
    /// Extra headers the provider wants (lower-case names, exact values).
    headers: &'static [(&'static str, &'static str)],
}

const BEARER: &str = "authorization";

const fn openai_like(kind: &'static str, base_path: &'static str, path: &'static str) -> Expect {
    Expect {
        kind,
        base_path,
        path,
        stream_path: path,
        api_version: None,
        auth: BEARER,
        headers: &[],
    }
}

/// One entry per preset kind, from the providers' API documentation.
const EXPECTED: &[Expect] = &[
    openai_like("openai", "/v1", "/v1/chat/completions"),
    Expect {
        kind: "anthropic",
        base_path: "/v1",
        path: "/v1/messages",
        stream_path: "/v1/messages",
        api_version: None,
        auth: "x-api-key",
        headers: &[("anthropic-version", "2023-06-01")],
    },
    Expect {
        kind: "gemini",
        base_path: "/v1beta",
        path: "/v1beta/models/m-gemini:generateContent",
        stream_path: "/v1beta/models/m-gemini:streamGenerateContent",
        api_version: None,
        auth: "x-goog-api-key",
        headers: &[],
    },
    // OpenRouter's app attribution headers.
    Expect {
        headers: &[
            (
                "http-referer",
                "https://github.com/smart-ai-router/smart-ai-router",
            ),
            ("x-title", "smart-ai-router"),
        ],
        ..openai_like("openrouter", "/api/v1", "/api/v1/chat/completions")
    },
    openai_like("groq", "/openai/v1", "/openai/v1/chat/completions"),
    openai_like("deepseek", "/v1", "/v1/chat/completions"),
    openai_like("siliconflow", "/v1", "/v1/chat/completions"),
    openai_like("mistral", "/v1", "/v1/chat/completions"),
    openai_like("together", "/v1", "/v1/chat/completions"),
    openai_like(
        "fireworks",
        "/inference/v1",
        "/inference/v1/chat/completions",
    ),
    openai_like("xai", "/v1", "/v1/chat/completions"),
    openai_like("perplexity", "", "/chat/completions"),
    openai_like("moonshot", "/v1", "/v1/chat/completions"),
    openai_like("zhipu", "/api/paas/v4", "/api/paas/v4/chat/completions"),
    openai_like("doubao", "/api/v3", "/api/v3/chat/completions"),
    openai_like("volcengine", "/api/v3", "/api/v3/chat/completions"),
    openai_like(
        "dashscope",
        "/compatible-mode/v1",
        "/compatible-mode/v1/chat/completions",
    ),
    Expect {
        kind: "azure",
        base_path: "",
        path: "/openai/deployments/m-azure/chat/completions",
        stream_path: "/openai/deployments/m-azure/chat/completions",
        api_version: Some("2024-10-21"),
        auth: "api-key",
        headers: &[],
    },
    openai_like("ollama", "/v1", "/v1/chat/completions"),
    openai_like("lmstudio", "/v1", "/v1/chat/completions"),
    openai_like("vllm", "/v1", "/v1/chat/completions"),
];

/// Every header that can carry a key to some provider.
const AUTH_HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-goog-api-key"];

fn expected(kind: &str) -> Option<&'static Expect> {
    EXPECTED.iter().find(|e| e.kind == kind)
}

fn model(kind: &str) -> String {
    format!("m-{kind}")
}

fn key(kind: &str) -> String {
    format!("key-{kind}")
}

/// One provider (id `p-<kind>`) and one channel (`c-<kind>`, model `m-<kind>`) per preset, all
/// on the mock at `addr`.
fn all_presets(addr: SocketAddr) -> String {
    let mut t = String::new();
    for p in PRESETS {
        let base = expected(p.kind).map_or("/v1", |e| e.base_path);
        let k = p.kind;
        t.push_str(&format!(
            "\n[providers.p-{k}]\nkind = \"{k}\"\nbase_url = \"http://{addr}{base}\"\n\
             \n[[channels]]\nid = \"c-{k}\"\nprovider = \"p-{k}\"\napi_key = \"{}\"\nmodels = [\"{}\"]\n",
            key(k),
            model(k),
        ));
    }
    t
}

/// What is wrong with the one upstream request `sent` for preset `p` (empty: nothing).
fn wire_problems(
    p: &Preset,
    e: &Expect,
    sent: &Recorded,
    stream: bool,
    addr: SocketAddr,
) -> Vec<String> {
    let mut bad = Vec::new();
    let mut check = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    let want_path = if stream { e.stream_path } else { e.path };
    check(sent.method == "POST", format!("method {}", sent.method));
    check(
        sent.path() == want_path,
        format!("path {:?}, want {want_path:?}", sent.path()),
    );
    check(
        sent.query("api-version") == e.api_version,
        format!(
            "api-version {:?}, want {:?}",
            sent.query("api-version"),
            e.api_version
        ),
    );
    let want_alt = (stream && p.family == Family::Gemini).then_some("sse");
    check(
        sent.query("alt") == want_alt,
        format!("alt {:?}, want {want_alt:?}", sent.query("alt")),
    );
    check(
        sent.query("key").is_none(),
        format!("key in the query: {}", sent.target),
    );
    check(
        sent.header("host") == Some(addr.to_string().as_str()),
        format!("host {:?}", sent.header("host")),
    );

    // The channel's key in the preset's header, in its format; no other auth header at all.
    let want_auth = if e.auth == BEARER {
        format!("Bearer {}", key(p.kind))
    } else {
        key(p.kind)
    };
    check(
        sent.header(e.auth) == Some(want_auth.as_str()),
        format!("{}: {:?}, want {want_auth:?}", e.auth, sent.header(e.auth)),
    );
    for h in AUTH_HEADERS.iter().filter(|h| **h != e.auth) {
        check(
            sent.header(h).is_none(),
            format!("unexpected {h}: {:?}", sent.header(h)),
        );
    }
    let auth_count = sent.headers.iter().filter(|(n, _)| n == e.auth).count();
    check(
        auth_count == 1,
        format!("{} sent {auth_count} times", e.auth),
    );
    for (n, v) in &sent.headers {
        check(
            !v.contains(CLIENT_SECRET),
            format!("the client's key reached the upstream in {n}"),
        );
    }

    // The provider's extra headers, and whatever else the preset declares.
    for (n, v) in e.headers {
        let got = sent.header(n);
        check(got == Some(*v), format!("{n}: {got:?}, want {v:?}"));
        let count = sent.headers.iter().filter(|(h, _)| h == n).count();
        check(count == 1, format!("{n} sent {count} times"));
    }
    for (n, v) in p.headers {
        let got = sent.header(&n.to_ascii_lowercase());
        check(got == Some(*v), format!("{n}: {got:?}, want {v:?}"));
    }

    // The upstream model id: in the path for Gemini and Azure (checked above), in the body
    // for the rest.
    if p.family != Family::Gemini {
        let body_model = sent
            .json()
            .and_then(|b| b.get("model").and_then(|m| m.as_str()).map(String::from));
        check(
            body_model.as_deref() == Some(model(p.kind).as_str()),
            format!("body model {body_model:?}"),
        );
    }
    // Usage for streams is asked of OpenAI-family upstreams only where the preset allows the
    // field (some compatibles reject unknown fields).
    if stream && p.family == Family::OpenAi {
        let asked = sent.json().and_then(|b| {
            b.get("stream_options")
                .and_then(|o| o.get("include_usage"))
                .and_then(|u| u.as_bool())
        });
        let want = p.stream_usage.then_some(true);
        check(
            asked == want,
            format!("stream_options.include_usage {asked:?}, want {want:?}"),
        );
    }
    bad
}

#[test]
fn every_preset_sends_its_path_auth_and_headers() {
    let m = mock(MockConfig {
        chunks: 2,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &all_presets(m.addr()));
    let mut c = Client::connect(gw.local_addr());
    let client_auth = format!("Bearer {CLIENT_SECRET}");
    // The client's own key in every auth header the gateway drops.
    let client_headers = [
        ("Authorization", client_auth.as_str()),
        ("x-api-key", CLIENT_SECRET),
        ("api-key", CLIENT_SECRET),
        ("x-goog-api-key", CLIENT_SECRET),
    ];
    let mut failures = Vec::new();
    for p in PRESETS {
        let Some(e) = expected(p.kind) else {
            failures.push(format!("{}: no expectation in EXPECTED", p.kind));
            continue;
        };
        for stream in [false, true] {
            let _ = drain(&m);
            let r = c.post(
                "/v1/chat/completions",
                &client_headers,
                &chat_body(&model(p.kind), stream),
            );
            let label = format!("{} ({})", p.kind, if stream { "streamed" } else { "plain" });
            if r.status != 200 {
                failures.push(format!("{label}: status {}: {}", r.status, r.text()));
                continue;
            }
            let channel = format!("c-{}", p.kind);
            if r.header("x-router-channel") != Some(channel.as_str()) {
                failures.push(format!(
                    "{label}: served by {:?}",
                    r.header("x-router-channel")
                ));
            }
            let events = drain(&m);
            let sent = requests(&events);
            let [one] = sent.as_slice() else {
                failures.push(format!("{label}: {} upstream requests, want 1", sent.len()));
                continue;
            };
            for problem in wire_problems(p, e, one, stream, m.addr()) {
                failures.push(format!("{label}: {problem}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn presets_cover_at_least_19_kinds_each_with_an_expectation() {
    assert!(PRESETS.len() >= 19, "only {} presets", PRESETS.len());
    let mut kinds: Vec<&str> = PRESETS.iter().map(|p| p.kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert_eq!(kinds.len(), PRESETS.len(), "duplicate kinds");
    let missing: Vec<&str> = PRESETS
        .iter()
        .map(|p| p.kind)
        .filter(|k| expected(k).is_none())
        .collect();
    assert!(
        missing.is_empty(),
        "presets without an expectation: {missing:?}"
    );
    let stale: Vec<&str> = EXPECTED
        .iter()
        .map(|e| e.kind)
        .filter(|k| preset(k).is_none())
        .collect();
    assert!(stale.is_empty(), "expectations without a preset: {stale:?}");
}

#[test]
fn default_base_urls_are_the_documented_ones() {
    let documented = [
        ("openai", "https://api.openai.com/v1"),
        ("anthropic", "https://api.anthropic.com/v1"),
        ("gemini", "https://generativelanguage.googleapis.com/v1beta"),
        ("openrouter", "https://openrouter.ai/api/v1"),
        ("groq", "https://api.groq.com/openai/v1"),
        ("mistral", "https://api.mistral.ai/v1"),
        ("xai", "https://api.x.ai/v1"),
        ("perplexity", "https://api.perplexity.ai"),
        ("zhipu", "https://open.bigmodel.cn/api/paas/v4"),
        ("doubao", "https://ark.cn-beijing.volces.com/api/v3"),
        (
            "dashscope",
            "https://dashscope.aliyuncs.com/compatible-mode/v1",
        ),
        ("ollama", "http://127.0.0.1:11434/v1"),
        // Azure has no shared endpoint: every resource has its own host.
        ("azure", ""),
    ];
    for (kind, url) in documented {
        let p = preset(kind).unwrap_or_else(|| panic!("no preset {kind}"));
        assert_eq!(p.base_url, url, "{kind}");
    }
    // The base paths the wire test gives are the documented ones, so what it sees is what a
    // real deployment sends.
    for e in EXPECTED {
        let Some(p) = preset(e.kind) else { continue };
        let path = p
            .base_url
            .split_once("://")
            .map_or("", |(_, rest)| rest.find('/').map_or("", |i| &rest[i..]));
        assert_eq!(path, e.base_path, "{}", e.kind);
    }
}

/// A client's own credentials stay between it and the gateway, in every header a provider reads
/// a key from and in Gemini's `?key=` query, whatever format the client speaks.
#[test]
fn a_clients_key_never_reaches_an_upstream() {
    let m = mock(MockConfig {
        chunks: 2,
        ..Default::default()
    });
    let gw = gateway(DRIVER, &all_presets(m.addr()));
    let mut c = Client::connect(gw.local_addr());
    let client_auth = format!("Bearer {CLIENT_SECRET}");
    let every_auth_header = [
        ("Authorization", client_auth.as_str()),
        ("x-api-key", CLIENT_SECRET),
        ("api-key", CLIENT_SECRET),
        ("x-goog-api-key", CLIENT_SECRET),
    ];
    let gemini_body = r#"{"contents":[{"role":"user","parts":[{"text":"hello"}]}]}"#;
    let mut failures = Vec::new();
    for kind in ["openai", "anthropic", "gemini"] {
        let openai = chat_body(&model(kind), false);
        let gemini_path = format!("/v1beta/models/{}:generateContent", model(kind));
        let gemini_query = format!("{gemini_path}?key={CLIENT_SECRET}");
        let asks = [
            ("openai client", "/v1/chat/completions", openai.as_str()),
            ("gemini client", gemini_path.as_str(), gemini_body),
            ("gemini client, ?key=", gemini_query.as_str(), gemini_body),
        ];
        for (who, path, body) in asks {
            let _ = drain(&m);
            let r = c.post(path, &every_auth_header, body);
            let label = format!("{who} -> {kind}");
            if r.status != 200 {
                failures.push(format!("{label}: status {}: {}", r.status, r.text()));
                continue;
            }
            let events = drain(&m);
            for sent in requests(&events) {
                if sent.target.contains(CLIENT_SECRET) {
                    failures.push(format!("{label}: in the target {}", sent.target));
                }
                for (n, v) in &sent.headers {
                    if v.contains(CLIENT_SECRET) {
                        failures.push(format!("{label}: in header {n}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
