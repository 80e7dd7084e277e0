//! Gemini ingress end to end, on both drivers, against the mock speaking each family on real
//! sockets: `:generateContent`, `:streamGenerateContent`, `:countTokens`, `:embedContent`,
//! `:batchEmbedContents`, `GET …/models` and `GET …/models/{m}` under `/v1beta` and `/v1`
//! (google-genai's default), through OpenAI-, Anthropic- and Gemini-family channels; every
//! error on a Gemini path Gemini-shaped (unknown actions and paths, methods, auth, models);
//! `GET /v1/models` staying OpenAI's for OpenAI clients.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::net::SocketAddr;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::bootstrap::Gateway;
use smart_ai_router::mock::{MockConfig, MockHandle};
use smart_ai_router::secret::{digest, hex};

/// One chat channel per family on the same mock (`gpt-x`, `claude-x`, `gemini-x`), and an
/// embedding model on the OpenAI one.
fn three_families(addr: SocketAddr) -> String {
    format!(
        r#"
[providers.o]
kind = "openai"
base_url = "http://{addr}/v1"

[providers.a]
kind = "anthropic"
base_url = "http://{addr}/v1"

[providers.g]
kind = "gemini"
base_url = "http://{addr}/v1beta"

[[channels]]
id = "o-1"
provider = "o"
api_key = "sk-openai"
models = ["gpt-x", "text-embedding-3-small"]

[[channels]]
id = "a-1"
provider = "a"
api_key = "sk-ant-key"
models = ["claude-x"]

[[channels]]
id = "g-1"
provider = "g"
api_key = "g-key"
models = ["gemini-x"]
"#
    )
}

const MODELS: [&str; 3] = ["gpt-x", "claude-x", "gemini-x"];
const PREFIXES: [&str; 2] = ["/v1beta", "/v1"];
const GEN: &str = r#"{"systemInstruction":{"parts":[{"text":"Be brief."}]},"contents":[{"role":"user","parts":[{"text":"Hello there"}]}],"generationConfig":{"maxOutputTokens":64}}"#;

fn setup(driver: &str, keys: &str) -> (MockHandle, Gateway) {
    let m = mock(MockConfig {
        chunks: 3,
        ..Default::default()
    });
    let gw = gateway(driver, &format!("{}{keys}", three_families(m.addr())));
    (m, gw)
}

/// A POST on a connection of its own (a request refused on its head closes its connection:
/// its body was never read).
fn post(gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    Client::connect(gw.local_addr()).post(path, headers, body)
}

/// A GET with extra headers, on a connection of its own.
fn get(gw: &Gateway, path: &str, headers: &[(&str, &str)]) -> Response {
    let mut c = Client::connect(gw.local_addr());
    let mut raw = format!("GET {path} HTTP/1.1\r\nHost: gw\r\n");
    for (n, v) in headers {
        raw.push_str(&format!("{n}: {v}\r\n"));
    }
    raw.push_str("\r\n");
    c.send(raw.as_bytes());
    c.read_response()
}

/// Asserts a Gemini-shaped error of `status` with its gRPC status name.
fn gemini_error(r: &Response, status: u16, name: &str) {
    assert_eq!(r.status, status, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["error"]["code"].as_u64(),
        Some(u64::from(status)),
        "{}",
        r.text()
    );
    assert_eq!(v["error"]["status"].as_str(), Some(name), "{}", r.text());
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(
        v["error"].get("type").is_none(),
        "not OpenAI-shaped: {}",
        r.text()
    );
}

fn parse(s: &str) -> simd_json::OwnedValue {
    let mut b = s.as_bytes().to_vec();
    simd_json::to_owned_value(&mut b).unwrap_or_else(|e| panic!("{e}: {s}"))
}

fn generate_and_stream_on_v1_and_v1beta_through_every_family(driver: &str) {
    let (m, gw) = setup(driver, "");
    for prefix in PREFIXES {
        for model in MODELS {
            let r = post(
                &gw,
                &format!("{prefix}/models/{model}:generateContent"),
                &[],
                GEN,
            );
            assert_eq!(r.status, 200, "{prefix} {model}: {}", r.text());
            let v = r.json();
            let cand = &v["candidates"][0];
            assert_eq!(
                cand["content"]["role"].as_str(),
                Some("model"),
                "{}",
                r.text()
            );
            assert!(
                cand["content"]["parts"][0]["text"]
                    .as_str()
                    .is_some_and(|t| !t.is_empty())
            );
            assert_eq!(cand["finishReason"].as_str(), Some("STOP"));
            assert!(v["usageMetadata"]["promptTokenCount"].as_u64().unwrap() > 0);
            assert_eq!(r.header("x-router-model"), Some(model));

            let r = post(
                &gw,
                &format!("{prefix}/models/{model}:streamGenerateContent?alt=sse"),
                &[],
                GEN,
            );
            assert_eq!(r.status, 200, "{prefix} {model}: {}", r.text());
            let data = sse_data(
                String::from_utf8_lossy(&r.body)
                    .replace("\r\n", "\n")
                    .as_bytes(),
            );
            assert!(data.len() >= 2, "{data:?}");
            let last = parse(data.last().unwrap());
            assert_eq!(last["candidates"][0]["finishReason"].as_str(), Some("STOP"));
            assert!(
                last["usageMetadata"]["candidatesTokenCount"]
                    .as_u64()
                    .unwrap()
                    > 0
            );
        }
    }
    // The Gemini channel got the client's own request on its own API, whatever the client's
    // version prefix was.
    let events = drain(&m);
    let sent: Vec<&str> = requests(&events).iter().map(|r| r.path()).collect();
    assert_eq!(
        sent.iter()
            .filter(|p| **p == "/v1beta/models/gemini-x:generateContent")
            .count(),
        2,
        "{sent:?}"
    );
    assert!(sent.contains(&"/v1/chat/completions"), "{sent:?}");
    assert!(sent.contains(&"/v1/messages"), "{sent:?}");
}

fn count_tokens_answers_the_gateways_estimate(driver: &str) {
    let (m, gw) = setup(driver, "");
    let short = r#"{"contents":[{"role":"user","parts":[{"text":"Hello"}]}]}"#;
    let long = format!(
        r#"{{"contents":[{{"role":"user","parts":[{{"text":"{}"}}]}}]}}"#,
        "lorem ipsum ".repeat(200)
    );
    let wrapped = r#"{"generateContentRequest":{"model":"models/gpt-x","contents":[{"role":"user","parts":[{"text":"Hello"}]}]}}"#;
    for prefix in PREFIXES {
        for model in MODELS {
            let path = format!("{prefix}/models/{model}:countTokens");
            let r = post(&gw, &path, &[], short);
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            let n = r.json()["totalTokens"].as_u64().unwrap();
            assert!(n > 0, "{}", r.text());
            let r = post(&gw, &path, &[], wrapped);
            assert_eq!(r.json()["totalTokens"].as_u64(), Some(n), "{}", r.text());
            let r = post(&gw, &path, &[], &long);
            assert!(
                r.json()["totalTokens"].as_u64().unwrap() > n + 400,
                "{}",
                r.text()
            );
        }
    }
    // The gateway answers itself: nothing reached an upstream.
    assert!(requests(&drain(&m)).is_empty());
    let r = post(&gw, "/v1beta/models/gpt-x:countTokens", &[], "{}");
    gemini_error(&r, 400, "INVALID_ARGUMENT");
}

fn embeddings_are_translated_for_embedding_channels(driver: &str) {
    let (m, gw) = setup(driver, "");
    let one = r#"{"model":"models/text-embedding-3-small","content":{"parts":[{"text":"hello"}]},"taskType":"RETRIEVAL_QUERY"}"#;
    let batch = r#"{"requests":[{"model":"models/text-embedding-3-small","content":{"parts":[{"text":"a"}]},"outputDimensionality":4},{"model":"models/text-embedding-3-small","content":{"parts":[{"text":"b"}]},"outputDimensionality":4}]}"#;
    for prefix in PREFIXES {
        let r = post(
            &gw,
            &format!("{prefix}/models/text-embedding-3-small:embedContent"),
            &[],
            one,
        );
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        let v = r.json();
        assert_eq!(
            v["embedding"]["values"].as_array().map(Vec::len),
            Some(8),
            "{}",
            r.text()
        );
        let r = post(
            &gw,
            &format!("{prefix}/models/text-embedding-3-small:batchEmbedContents"),
            &[],
            batch,
        );
        assert_eq!(r.status, 200, "{prefix}: {}", r.text());
        let v = r.json();
        let list = v["embeddings"].as_array().unwrap();
        assert_eq!(list.len(), 2, "{}", r.text());
        assert!(
            list.iter()
                .all(|e| e["values"].as_array().map(Vec::len) == Some(4))
        );
        assert_ne!(list[0], list[1], "one vector per input, in order");
    }
    // What reached the OpenAI channel: its /embeddings with the inputs and dimensions.
    let events = drain(&m);
    let reqs = requests(&events);
    assert_eq!(reqs.len(), 4);
    assert!(
        reqs.iter().all(|r| r.path() == "/v1/embeddings"),
        "{reqs:?}"
    );
    let sent = reqs[1].json().unwrap();
    assert_eq!(sent["model"].as_str(), Some("text-embedding-3-small"));
    assert_eq!(sent["input"].as_array().map(Vec::len), Some(2));
    assert_eq!(sent["dimensions"].as_u64(), Some(4));

    // A chat model is no embedding model (on any family), nor the other way round.
    for model in MODELS {
        let r = post(
            &gw,
            &format!("/v1beta/models/{model}:embedContent"),
            &[],
            one,
        );
        gemini_error(&r, 404, "NOT_FOUND");
    }
    let r = post(
        &gw,
        "/v1beta/models/text-embedding-3-small:generateContent",
        &[],
        GEN,
    );
    gemini_error(&r, 404, "NOT_FOUND");
    // Bad bodies and upstream errors come back Gemini-shaped.
    let r = post(
        &gw,
        "/v1beta/models/text-embedding-3-small:embedContent",
        &[],
        r#"{"content":{"parts":[]}}"#,
    );
    gemini_error(&r, 400, "INVALID_ARGUMENT");
    let r = post(
        &gw,
        "/v1/models/text-embedding-3-small:embedContent",
        &[("x-mock-status", "400")],
        one,
    );
    gemini_error(&r, 400, "INVALID_ARGUMENT");
}

fn models_are_listed_in_gemini_shape(driver: &str) {
    let (_m, gw) = setup(driver, "");
    let gemini_list = |r: &Response| {
        assert_eq!(r.status, 200, "{}", r.text());
        let v = r.json();
        let models = v["models"].as_array().unwrap().clone();
        assert!(v.get("data").is_none(), "{}", r.text());
        models
    };
    let r = get(&gw, "/v1beta/models", &[]);
    let models = gemini_list(&r);
    let names: Vec<&str> = models.iter().filter_map(|m| m["name"].as_str()).collect();
    for model in MODELS.iter().chain(&["text-embedding-3-small"]) {
        assert!(
            names.contains(&format!("models/{model}").as_str()),
            "{names:?}"
        );
    }
    let methods = |name: &str| -> Vec<String> {
        let m = models
            .iter()
            .find(|m| m["name"].as_str() == Some(name))
            .unwrap();
        assert_eq!(m["displayName"].as_str(), name.strip_prefix("models/"));
        m["supportedGenerationMethods"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect()
    };
    assert!(methods("models/gpt-x").contains(&"generateContent".to_owned()));
    assert!(methods("models/gpt-x").contains(&"countTokens".to_owned()));
    assert!(methods("models/text-embedding-3-small").contains(&"embedContent".to_owned()));

    let r = get(&gw, "/v1beta/models/gemini-x", &[]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["name"].as_str(), Some("models/gemini-x"));
    let r = get(&gw, "/v1beta/models/nope", &[]);
    gemini_error(&r, 404, "NOT_FOUND");

    // /v1/models stays OpenAI's for OpenAI clients...
    for headers in [&[][..], &[("authorization", "Bearer x")][..]] {
        let r = get(&gw, "/v1/models", headers);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["object"].as_str(), Some("list"), "{}", r.text());
        let r = get(&gw, "/v1/models/gpt-x", headers);
        assert_eq!(r.json()["id"].as_str(), Some("gpt-x"), "{}", r.text());
        let r = get(&gw, "/v1/models/nope", headers);
        assert_eq!(r.status, 404);
        assert_eq!(r.error_code(), "model_not_found");
    }
    // ...and is Gemini's for a client presenting its key the Gemini way (google-genai's
    // default api_version is v1).
    let goog = [("x-goog-api-key", "anything")];
    let r = get(&gw, "/v1/models", &goog);
    assert_eq!(gemini_list(&r).len(), models.len());
    let r = get(&gw, "/v1/models?key=anything", &[]);
    assert_eq!(gemini_list(&r).len(), models.len());
    let r = get(&gw, "/v1/models/claude-x", &goog);
    assert_eq!(
        r.json()["name"].as_str(),
        Some("models/claude-x"),
        "{}",
        r.text()
    );
    let r = get(&gw, "/v1/models/nope", &goog);
    gemini_error(&r, 404, "NOT_FOUND");
}

fn errors_are_gemini_shaped_on_every_gemini_path(driver: &str) {
    let (m, gw) = setup(driver, "");
    for prefix in PREFIXES {
        // An unknown action.
        let r = post(&gw, &format!("{prefix}/models/gpt-x:explode"), &[], GEN);
        gemini_error(&r, 404, "NOT_FOUND");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("countTokens")
        );
        // The wrong method on an action.
        let r = get(&gw, &format!("{prefix}/models/gpt-x:generateContent"), &[]);
        gemini_error(&r, 405, "FAILED_PRECONDITION");
        assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
        // An unknown model; a body that is not a GenerateContentRequest.
        let r = post(
            &gw,
            &format!("{prefix}/models/nope:generateContent"),
            &[],
            GEN,
        );
        gemini_error(&r, 404, "NOT_FOUND");
        let r = post(
            &gw,
            &format!("{prefix}/models/gpt-x:generateContent"),
            &[],
            "{",
        );
        gemini_error(&r, 400, "INVALID_ARGUMENT");
        // An upstream's error, from each family.
        for model in MODELS {
            let r = post(
                &gw,
                &format!("{prefix}/models/{model}:generateContent"),
                &[("x-mock-status", "400")],
                GEN,
            );
            gemini_error(&r, 400, "INVALID_ARGUMENT");
        }
    }
    // Other Gemini collections, and the wrong method on the model list.
    let r = get(&gw, "/v1beta/files", &[]);
    gemini_error(&r, 404, "NOT_FOUND");
    let r = post(&gw, "/v1beta/models", &[], "{}");
    gemini_error(&r, 405, "FAILED_PRECONDITION");
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = post(&gw, "/v1beta/models/gpt-x", &[], "{}");
    gemini_error(&r, 404, "NOT_FOUND");
    // OpenAI paths keep OpenAI's shape: POST /v1/models/{id} is still a 405 there.
    let r = post(&gw, "/v1/models/gpt-x", &[], "{}");
    assert_eq!(r.status, 405, "{}", r.text());
    assert_eq!(r.error_code(), "method_not_allowed");
    drop(m);
}

fn auth_is_judged_on_the_head_in_gemini_shape(driver: &str) {
    let keys = format!(
        "\n[[auth.keys]]\nname = \"team\"\nsha256 = \"{}\"\n\n\
         [[auth.keys]]\nname = \"gpt-only\"\nsha256 = \"{}\"\nmodels = [\"gpt-x\"]\n",
        hex(&digest(b"sk-team")),
        hex(&digest(b"sk-gpt")),
    );
    let (m, gw) = setup(driver, &keys);
    for prefix in PREFIXES {
        for action in ["generateContent", "countTokens", "embedContent"] {
            let path = format!("{prefix}/models/gpt-x:{action}");
            let r = post(&gw, &path, &[], GEN);
            gemini_error(&r, 401, "UNAUTHENTICATED");
            assert!(
                r.json()["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("x-goog-api-key"),
                "{}",
                r.text()
            );
            let r = post(&gw, &path, &[("x-goog-api-key", "sk-wrong")], GEN);
            gemini_error(&r, 401, "UNAUTHENTICATED");
        }
        let r = post(
            &gw,
            &format!("{prefix}/models/gpt-x:generateContent"),
            &[("x-goog-api-key", "sk-team")],
            GEN,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let r = post(
            &gw,
            &format!("{prefix}/models/gpt-x:countTokens?key=sk-team"),
            &[],
            GEN,
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let r = get(&gw, "/v1beta/models", &[]);
    gemini_error(&r, 401, "UNAUTHENTICATED");
    let r = get(&gw, "/v1/models", &[("x-goog-api-key", "sk-wrong")]);
    gemini_error(&r, 401, "UNAUTHENTICATED");

    // Refused on the head: a missing key never makes the gateway wait for the body.
    let mut raw = Client::connect(gw.local_addr());
    raw.send(
        b"POST /v1/models/gpt-x:generateContent HTTP/1.1\r\nHost: gw\r\n\
          Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    );
    let r = raw.read_response();
    gemini_error(&r, 401, "UNAUTHENTICATED");

    // A key's allowance: listed models, single models, and actions on the head.
    let limited = [("x-goog-api-key", "sk-gpt")];
    let r = get(&gw, "/v1beta/models", &limited);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    assert_eq!(names, ["models/gpt-x"]);
    let r = get(&gw, "/v1/models/claude-x", &limited);
    gemini_error(&r, 404, "NOT_FOUND");
    for action in ["generateContent", "countTokens"] {
        let r = post(&gw, &format!("/v1/models/claude-x:{action}"), &limited, GEN);
        gemini_error(&r, 403, "PERMISSION_DENIED");
    }
    let r = post(&gw, "/v1/models/gpt-x:generateContent", &limited, GEN);
    assert_eq!(r.status, 200, "{}", r.text());
    drop(m);
}

both_drivers!(
    generate_and_stream_on_v1_and_v1beta_through_every_family,
    count_tokens_answers_the_gateways_estimate,
    embeddings_are_translated_for_embedding_channels,
    models_are_listed_in_gemini_shape,
    errors_are_gemini_shaped_on_every_gemini_path,
    auth_is_judged_on_the_head_in_gemini_shape,
);
