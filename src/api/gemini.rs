//! Gemini ingress (README "Endpoints"): which paths are Gemini's — everything under
//! `/v1beta/`, and `/v1/models/{model}:{action}` — and the answers the gateway makes itself
//! for them: `GET …/models` and `GET …/models/{model}` in Gemini's `Model` shape, and
//! `:countTokens` from the gateway's own estimate. `:generateContent`,
//! `:streamGenerateContent`, `:embedContent` and `:batchEmbedContents` go on to proxying
//! (`super::handle`).
//!
//! Invariants: every answer on a Gemini path is Gemini-shaped, errors included (the route's
//! family is Gemini, judged on the head). `GET /v1/models` and `GET /v1/models/{id}` stay
//! OpenAI's, except for a client that speaks Gemini — its key in `x-goog-api-key` or `?key=`
//! and no `Authorization: Bearer` — which is what google-genai sends with its default
//! `api_version` (`v1`). An action is the part after the path's last `:`, so model ids with
//! a colon (`qwen2:7b`) still work. Not here: the translations (`providers::gemini`).

use crate::error::{Error, Kind, truncate};
use crate::h1::head::{Method, RequestHead};
use crate::json;
use crate::providers::gemini;
use crate::server::{Exchange, Request};
use crate::snapshot::Snapshot;
use crate::worker::Worker;

/// What a Gemini path asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// `POST …/models/{model}:generateContent`.
    Generate,
    /// `POST …/models/{model}:streamGenerateContent` (`alt=sse`).
    Stream,
    /// `POST …/models/{model}:countTokens`: the gateway's estimate.
    CountTokens,
    /// `POST …/models/{model}:embedContent`.
    Embed,
    /// `POST …/models/{model}:batchEmbedContents`.
    BatchEmbed,
    /// `GET …/models`.
    Models,
    /// `GET …/models/{model}`.
    Model,
    /// A Gemini path the gateway does not serve (an unknown `:action`, another collection):
    /// refused on the head with a Gemini-shaped 404.
    Unknown,
}

impl Action {
    /// Whether the action reads a model from the path (and so is judged against the key's
    /// allowance on the head).
    pub(crate) fn names_model(self) -> bool {
        matches!(
            self,
            Action::Generate
                | Action::Stream
                | Action::CountTokens
                | Action::Embed
                | Action::BatchEmbed
        )
    }

    /// Whether the action is read-only (`GET`/`HEAD`), not `POST`.
    pub(crate) fn is_get(self) -> bool {
        matches!(self, Action::Models | Action::Model)
    }
}

/// The actions by the name a path ends with.
const ACTIONS: &[(&[u8], Action)] = &[
    (b"generateContent", Action::Generate),
    (b"streamGenerateContent", Action::Stream),
    (b"countTokens", Action::CountTokens),
    (b"embedContent", Action::Embed),
    (b"batchEmbedContents", Action::BatchEmbed),
];

/// The methods a Gemini path serves, for an `Allow` header and 405 messages.
pub(crate) const SERVED: &str = "generateContent, streamGenerateContent, countTokens, \
     embedContent and batchEmbedContents";

/// The path after its API version: `(true, rest)` under `/v1beta`, `(false, rest)` under `/v1`.
fn versioned(path: &[u8]) -> Option<(bool, &[u8])> {
    let beta = |p: &[u8]| p.is_empty() || p.starts_with(b"/");
    if let Some(rest) = path.strip_prefix(b"/v1beta").filter(|p| beta(p)) {
        return Some((true, rest));
    }
    path.strip_prefix(b"/v1")
        .filter(|p| p.starts_with(b"/"))
        .map(|rest| (false, rest))
}

/// The model part and the action name of `…/models/{model}:{action}` (`None` without a `:`).
fn split_action(tail: &[u8]) -> (&[u8], Option<&[u8]>) {
    match memchr::memrchr(b':', tail) {
        Some(i) => (&tail[..i], Some(&tail[i + 1..])),
        None => (tail, None),
    }
}

/// Whether the client presents its key the way Gemini clients do (`x-goog-api-key` or
/// `?key=`) and not as a bearer token: such a client gets Gemini's shape on `GET /v1/models`.
pub(crate) fn speaks_gemini(head: &RequestHead, buf: &[u8]) -> bool {
    head.header(buf, b"authorization").is_none()
        && (head.header(buf, b"x-goog-api-key").is_some()
            || crate::auth::query_key(&buf[head.target.clone()]).is_some())
}

/// The Gemini action of a request, or `None` when the path is not Gemini's (then it is an
/// OpenAI path, or unknown). `gemini_client`: [`speaks_gemini`].
pub(crate) fn action(method: Method, path: &[u8], gemini_client: bool) -> Option<Action> {
    let (beta, rest) = versioned(path)?;
    let get = matches!(method, Method::Get | Method::Head);
    if rest == b"/models" || rest == b"/models/" {
        return (beta || gemini_client).then_some(Action::Models);
    }
    let Some(tail) = rest.strip_prefix(b"/models/").filter(|t| !t.is_empty()) else {
        return beta.then_some(Action::Unknown);
    };
    let (model, name) = split_action(tail);
    if let Some(name) = name
        && !model.is_empty()
        && let Some((_, a)) = ACTIONS.iter().find(|(n, _)| *n == name)
    {
        return Some(*a);
    }
    if get {
        // `GET …/models/{id}` (a colon in it is part of the id).
        (beta || gemini_client).then_some(Action::Model)
    } else if beta || name.is_some() {
        // A POST to `…/models/{model}:{unknown}` is Gemini's, on `/v1` too (OpenAI has no
        // POST there); `POST /v1/models/{id}` stays OpenAI's 405.
        Some(Action::Unknown)
    } else {
        None
    }
}

/// The model of a Gemini path (percent-decoded, without a `models/` prefix): the part before
/// the action, or the whole tail for `GET …/models/{model}`.
pub(crate) fn model_of(path: &[u8], action: Action) -> String {
    let tail = versioned(path)
        .and_then(|(_, rest)| rest.strip_prefix(b"/models/"))
        .unwrap_or(b"");
    let model = if action == Action::Model {
        tail
    } else {
        split_action(tail).0
    };
    crate::h1::percent_decode(model)
}

/// The 404 for a Gemini path the gateway does not serve.
pub(crate) fn unknown(method: &str, path: &[u8]) -> Error {
    Error::new(
        404,
        Kind::InvalidRequest,
        "unknown_url",
        format!(
            "{method} {} is not served by this gateway; on Gemini paths it serves GET \
             /v1beta/models, GET /v1beta/models/{{model}} and POST \
             /v1beta/models/{{model}}:{{method}} for {SERVED} (also under /v1).",
            truncate(&String::from_utf8_lossy(path), 200)
        ),
    )
}

/// One model as Gemini lists it: its token limits are the largest of the entries serving it,
/// and it is an embedding model when any of them is.
fn listed(snap: &Snapshot, name: &str, out: &mut Vec<u8>) {
    let (mut input, mut output, mut embedding) = (0u32, 0u32, false);
    for &i in snap.catalog.lookup(name).unwrap_or(&[]) {
        if let Some(e) = snap.catalog.entries.get(i as usize) {
            input = input.max(e.context);
            output = output.max(e.max_output);
            embedding |= e.caps.contains(crate::expr::Caps::EMBEDDING);
        }
    }
    gemini::model_json(out, name, input, output, embedding);
}

/// `GET …/models`: `{"models":[…]}`, only what the key may use (as `/v1/models`). Every model
/// fits one page, so there is no `nextPageToken`.
pub(crate) async fn models(snap: &Snapshot, req: &Request<'_>, ex: &mut Exchange<'_>) {
    let names = snap.catalog.names();
    let mut b = Vec::with_capacity(16 + names.len() * 200);
    b.extend_from_slice(b"{\"models\":[");
    let mut first = true;
    for name in names.iter() {
        if !snap.catalog.name_allowed(name, req.allowed()) {
            continue;
        }
        if !first {
            b.push(b',');
        }
        first = false;
        listed(snap, name, &mut b);
    }
    b.extend_from_slice(b"]}");
    ex.out.send_json(200, &b).await
}

/// `GET …/models/{model}`: one `Model`, or a 404 when no channel serves it for this key.
pub(crate) async fn model(snap: &Snapshot, req: &Request<'_>, ex: &mut Exchange<'_>) {
    let id = model_of(req.path(), Action::Model);
    let id = id.strip_prefix("models/").unwrap_or(&id);
    let known =
        snap.catalog.model_json(id).is_some() && snap.catalog.name_allowed(id, req.allowed());
    if !known {
        let e = Error::new(
            404,
            Kind::InvalidRequest,
            "model_not_found",
            format!(
                "The model `{}` does not exist or no channel serves it; GET /v1beta/models lists the available models.",
                truncate(id, 200)
            ),
        );
        return ex.out.send_error(&e).await;
    }
    let mut b = Vec::with_capacity(256);
    listed(snap, id, &mut b);
    ex.out.send_json(200, &b).await
}

/// `POST …/models/{model}:countTokens`: `{"totalTokens":n}`, the estimate routing uses for the
/// same request (`providers::openai::ingress::extract`'s `prompt_tokens`, as
/// `/v1/messages/count_tokens` answers it for Anthropic clients).
pub(crate) async fn count_tokens(worker: &Worker, req: &Request<'_>, ex: &mut Exchange<'_>) {
    let model = model_of(req.path(), Action::CountTokens);
    let estimate = gemini::count_tokens_request(req.body, &model).and_then(|canonical| {
        let mut scratch = worker.json.borrow_mut();
        crate::providers::openai::ingress::extract(&canonical, &mut scratch)
    });
    match estimate {
        Ok(f) => {
            let mut b = Vec::with_capacity(32);
            b.extend_from_slice(b"{\"totalTokens\":");
            json::write_u64(&mut b, u64::from(f.prompt_tokens));
            b.push(b'}');
            ex.out.send_json(200, &b).await
        }
        Err(e) => ex.out.send_error(&e).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gemini_paths() {
        let post = |p: &[u8]| action(Method::Post, p, false);
        let get = |p: &[u8], g| action(Method::Get, p, g);
        for prefix in ["/v1beta", "/v1"] {
            let p = |s: &str| format!("{prefix}/models/{s}").into_bytes();
            assert_eq!(post(&p("m:generateContent")), Some(Action::Generate));
            assert_eq!(post(&p("m:streamGenerateContent")), Some(Action::Stream));
            assert_eq!(post(&p("m:countTokens")), Some(Action::CountTokens));
            assert_eq!(post(&p("m:embedContent")), Some(Action::Embed));
            assert_eq!(post(&p("m:batchEmbedContents")), Some(Action::BatchEmbed));
            assert_eq!(post(&p("qwen2:7b:generateContent")), Some(Action::Generate));
            assert_eq!(post(&p("m:explode")), Some(Action::Unknown));
            // The wrong method on an action is still Gemini's (a Gemini-shaped 405).
            assert_eq!(get(&p("m:generateContent"), false), Some(Action::Generate));
        }
        assert_eq!(get(b"/v1beta/models", false), Some(Action::Models));
        assert_eq!(get(b"/v1beta/models/m", false), Some(Action::Model));
        assert_eq!(get(b"/v1beta/models/qwen2:7b", false), Some(Action::Model));
        assert_eq!(get(b"/v1beta/files", false), Some(Action::Unknown));
        assert_eq!(post(b"/v1beta/models/m"), Some(Action::Unknown));
        // OpenAI's own, unless the client speaks Gemini.
        assert_eq!(get(b"/v1/models", false), None);
        assert_eq!(get(b"/v1/models/m", false), None);
        assert_eq!(get(b"/v1/models/qwen2:7b", false), None);
        assert_eq!(get(b"/v1/models", true), Some(Action::Models));
        assert_eq!(get(b"/v1/models/m", true), Some(Action::Model));
        assert_eq!(post(b"/v1/models/m"), None);
        assert_eq!(post(b"/v1/chat/completions"), None);
        assert_eq!(post(b"/v1betax/models/m:generateContent"), None);
        assert_eq!(post(b"/v1/models/:generateContent"), Some(Action::Unknown));
    }

    #[test]
    fn models_of_paths() {
        let m = |p: &[u8], a| model_of(p, a);
        assert_eq!(
            m(b"/v1beta/models/a%2Fb:generateContent", Action::Generate),
            "a/b"
        );
        assert_eq!(
            m(b"/v1/models/qwen2:7b:countTokens", Action::CountTokens),
            "qwen2:7b"
        );
        assert_eq!(m(b"/v1beta/models/qwen2:7b", Action::Model), "qwen2:7b");
    }
}
