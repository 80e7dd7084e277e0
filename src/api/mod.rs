//! The HTTP surface (DESIGN.md §4a): dispatch by path and method, the gateway's own endpoints
//! (`/`, `/health`, `/v1/models`, CORS preflight), and the entry into proxying for
//! `/v1/chat/completions` and the other ingress dialects (`gemini` has the Gemini paths).
//!
//! Invariants: every answer goes through the exchange's `Responder` (so `Date`, `x-request-id`,
//! CORS and `Connection` are always right); unknown paths are 404 and known paths with the wrong
//! method 405, OpenAI-shaped (Gemini-shaped on Gemini paths). Paths are also accepted without
//! the `/v1` prefix. Not here: upstream I/O (`proxy`), head/body reading (`server`).

pub(crate) mod gemini;
pub(crate) mod route;

use std::rc::Rc;

use crate::error::Error;
use crate::h1::head::Method;
use crate::json;
use crate::providers::openai::ingress as chat;
use crate::providers::{Family, anthropic};
use crate::proxy::Endpoint;
use crate::server::{Admitted, Exchange, Refusal, Request};
use crate::snapshot::Snapshot;
use crate::worker::{SnapshotRef, Worker};

/// What a request is for, decided on its head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// `OPTIONS`: a CORS preflight.
    Preflight,
    /// `GET /`.
    Root,
    Health,
    Models,
    Model,
    ChatCompletions,
    Embeddings,
    Completions,
    Responses,
    /// `/v1/responses/{id}` (retrieve, delete, cancel, input items): the gateway stores none.
    StoredResponse,
    /// Anthropic Messages ingress.
    Messages,
    CountTokens,
    /// Gemini ingress: `/v1beta/…` and `/v1/models/{model}:{action}` (see [`gemini`]).
    Gemini(gemini::Action),
    /// An OpenAI endpoint this gateway does not serve (yet): a documented 404.
    Unsupported,
    DryRun,
}

impl Route {
    fn allows(self, m: Method) -> bool {
        match self {
            Route::Preflight => true,
            Route::Root | Route::Health | Route::Models | Route::Model => {
                matches!(m, Method::Get | Method::Head)
            }
            Route::Gemini(a) if a.is_get() => matches!(m, Method::Get | Method::Head),
            Route::Unsupported | Route::StoredResponse | Route::Gemini(gemini::Action::Unknown) => {
                true
            }
            _ => m == Method::Post,
        }
    }
    /// The wire family of the route's errors.
    pub(crate) fn family(self) -> Family {
        match self {
            Route::Messages | Route::CountTokens => Family::Anthropic,
            Route::Gemini(_) => Family::Gemini,
            _ => Family::OpenAi,
        }
    }

    fn allow_header(self) -> &'static str {
        match self {
            Route::Root | Route::Health | Route::Models | Route::Model => "GET, HEAD, OPTIONS",
            Route::Gemini(a) if a.is_get() => "GET, HEAD, OPTIONS",
            _ => "POST, OPTIONS",
        }
    }
}

/// The path without its `/v1` prefix.
/// OpenAI endpoints answered with a documented 404 (README: Endpoints).
const UNSUPPORTED: &[&[u8]] = &[
    b"/images/generations",
    b"/images/edits",
    b"/images/variations",
    b"/audio/speech",
    b"/audio/transcriptions",
    b"/audio/translations",
    b"/files",
    b"/uploads",
    b"/batches",
    b"/fine_tuning/jobs",
    b"/moderations",
    b"/assistants",
    b"/threads",
    b"/vector_stores",
    b"/realtime/sessions",
];

fn unversioned(path: &[u8]) -> &[u8] {
    path.strip_prefix(b"/v1")
        .filter(|p| p.starts_with(b"/"))
        .unwrap_or(path)
}

fn route(path: &[u8]) -> Option<Route> {
    let p = unversioned(path);
    match p {
        b"/" if path == b"/" => Some(Route::Root),
        b"/health" if path == b"/health" => Some(Route::Health),
        b"/models" => Some(Route::Models),
        b"/chat/completions" => Some(Route::ChatCompletions),
        b"/embeddings" => Some(Route::Embeddings),
        b"/completions" => Some(Route::Completions),
        b"/responses" => Some(Route::Responses),
        _ if p.starts_with(b"/responses/") => Some(Route::StoredResponse),
        b"/messages" => Some(Route::Messages),
        b"/messages/count_tokens" => Some(Route::CountTokens),
        b"/route" => Some(Route::DryRun),
        _ if UNSUPPORTED
            .iter()
            .any(|u| p == *u || (p.starts_with(u) && p.get(u.len()) == Some(&b'/'))) =>
        {
            Some(Route::Unsupported)
        }
        _ if p.starts_with(b"/models/") && p.len() > 8 => Some(Route::Model),
        _ => None,
    }
}

/// Judges a request on its head (DESIGN §9, "auth before body"): the route and method, then
/// the client key and — where the head names the model (Gemini paths) — the key's allowance.
/// Runs before the body is read, so a caller without a valid key never makes the gateway
/// buffer a byte of its body.
fn judge_head<'s>(
    snap: &'s Snapshot,
    head: &crate::h1::head::RequestHead,
    buf: &[u8],
) -> Result<Admitted<'s, Route>, Refusal> {
    let path = head.path(buf);
    let refuse = |error: Error, family, headers| {
        Err(Refusal {
            error,
            family,
            headers: [headers],
        })
    };
    if head.method == Method::Options {
        return Ok(Admitted {
            route: Route::Preflight,
            client: None,
            family: Family::OpenAi,
        });
    }
    let method = || String::from_utf8_lossy(&buf[head.method_text.clone()]).into_owned();
    let gemini_client = gemini::speaks_gemini(head, buf);
    let r = match gemini::action(head.method, path, gemini_client) {
        Some(gemini::Action::Unknown) => {
            return refuse(gemini::unknown(&method(), path), Family::Gemini, (b"", b""));
        }
        Some(a) => Some(Route::Gemini(a)),
        None => route(path),
    };
    let Some(r) = r else {
        let e = Error::unknown_route(&method(), &String::from_utf8_lossy(path));
        return refuse(e, Family::OpenAi, (b"", b""));
    };
    let family = r.family();
    if !r.allows(head.method) {
        let e =
            Error::method_not_allowed(&method(), &String::from_utf8_lossy(path), r.allow_header());
        return refuse(e, family, (b"allow", r.allow_header().as_bytes()));
    }
    if matches!(r, Route::Root | Route::Health) {
        return Ok(Admitted {
            route: r,
            client: None,
            family,
        });
    }
    let client = match authenticate(snap, head, buf, r) {
        Ok(c) => c,
        Err(e) => return refuse(e, family, (b"www-authenticate", b"Bearer")),
    };
    if let Route::Gemini(a) = r
        && a.names_model()
        && let Some(allowed) = client.and_then(|c| c.allowed.as_deref())
    {
        let model = gemini::model_of(path, a);
        if let Some(e) = outside_allowance(snap, &model, allowed) {
            return refuse(e, family, (b"", b""));
        }
    }
    Ok(Admitted {
        route: r,
        client,
        family,
    })
}

/// The 403 for a model expression that matches entries, none of which `allowed` includes
/// (`None` when some is allowed, or when nothing matches: routing then says 404).
fn outside_allowance(snap: &Snapshot, model: &str, allowed: &[u64]) -> Option<Error> {
    let mut matched = vec![0u64; allowed.len()];
    crate::catalog::select::allowance(&snap.catalog, model, &mut matched);
    let any = matched.iter().any(|w| *w != 0);
    let reachable = matched.iter().zip(allowed).any(|(m, a)| m & a != 0);
    (any && !reachable).then(|| {
        crate::routing::RouteError::Forbidden(format!(
            "This API key may not use `{}`; its allowance does not include any model that matches.",
            crate::error::truncate(model, 200)
        ))
        .into_error()
    })
}

/// The gateway's API as the server's [`crate::server::Handler`]: [`judge_head`] on the head,
/// [`handle`] on the whole request.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Gateway;

impl crate::server::Handler for Gateway {
    type Route = Route;

    fn judge<'s>(
        &self,
        snap: &'s Snapshot,
        head: &crate::h1::head::RequestHead,
        buf: &[u8],
    ) -> Result<Admitted<'s, Route>, Refusal> {
        judge_head(snap, head, buf)
    }

    async fn handle(
        &self,
        worker: &Rc<Worker>,
        snap: &SnapshotRef,
        req: &Request<'_>,
        route: Route,
        ex: &mut Exchange<'_>,
    ) {
        handle(worker, snap, req, route, ex).await
    }
}

/// Answers one request that [`judge_head`] admitted (`req.client` is its key).
async fn handle(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    r: Route,
    ex: &mut Exchange<'_>,
) {
    let path = req.path();
    ex.out.errors_as = r.family();
    match r {
        Route::Preflight => preflight(req, ex).await,
        Route::Root => {
            let mut b = Vec::with_capacity(64);
            b.extend_from_slice(b"{\"name\":\"smart-ai-router\",\"version\":");
            json::write_str(&mut b, crate::VERSION);
            b.push(b'}');
            ex.out.send_json(200, &b).await
        }
        Route::Health => health(worker, snap, ex).await,
        Route::Models => match req.allowed() {
            None => ex.out.send_json(200, snap.catalog.models_json()).await,
            Some(allowed) => {
                let body = snap.catalog.models_json_for(allowed);
                ex.out.send_json(200, &body).await
            }
        },
        Route::Model => {
            let id = crate::h1::percent_decode(&unversioned(path)[b"/models/".len()..]);
            let listed = snap
                .catalog
                .model_json(&id)
                .filter(|_| snap.catalog.name_allowed(&id, req.allowed()));
            match listed {
                Some(body) => ex.out.send_json(200, body).await,
                None => {
                    let e = Error::new(
                        404,
                        crate::error::Kind::InvalidRequest,
                        "model_not_found",
                        format!(
                            "The model `{}` does not exist or no channel serves it; GET /v1/models lists the available models.",
                            crate::error::truncate(&id, 200)
                        ),
                    );
                    ex.out.send_error(&e).await
                }
            }
        }
        Route::DryRun => {
            let features = {
                let mut scratch = worker.json.borrow_mut();
                chat::extract(req.body, &mut scratch)
            };
            let doc = features.and_then(|f| dry_run(worker, snap, req, &f));
            match doc {
                Ok(body) => ex.out.send_json(200, &body).await,
                Err(e) => ex.out.send_error(&e).await,
            }
        }
        Route::ChatCompletions => openai(worker, snap, req, ex, Endpoint::Chat).await,
        Route::Embeddings => openai(worker, snap, req, ex, Endpoint::Embeddings).await,
        Route::Completions => openai(worker, snap, req, ex, Endpoint::Completions).await,
        Route::Responses => responses(worker, snap, req, ex).await,
        Route::StoredResponse => {
            let e = Error::new(
                404,
                crate::error::Kind::InvalidRequest,
                "response_not_found",
                "This gateway keeps no responses: it routes each request to whichever channel is best at the time, so a stored response cannot be retrieved, cancelled or deleted through it. Send the whole conversation as `input` (see README: Responses API).",
            );
            ex.out.send_error(&e).await
        }
        Route::Messages => match anthropic::ingress_request(req.body) {
            Ok(body) => translated(worker, snap, req, &body, Family::Anthropic, ex).await,
            Err(e) => ex.out.send_error(&e).await,
        },
        Route::CountTokens => match anthropic::count_tokens(req.body) {
            Ok(body) => ex.out.send_json(200, &body).await,
            Err(e) => ex.out.send_error(&e).await,
        },
        Route::Gemini(a) => match a {
            gemini::Action::Models => gemini::models(snap, req, ex).await,
            gemini::Action::Model => gemini::model(snap, req, ex).await,
            gemini::Action::CountTokens => gemini::count_tokens(worker, req, ex).await,
            gemini::Action::Embed | gemini::Action::BatchEmbed => {
                let model = gemini::model_of(path, a);
                let batch = a == gemini::Action::BatchEmbed;
                match crate::providers::gemini::embed_request(req.body, &model, batch) {
                    Ok(body) => {
                        let client = (Family::Gemini, batch);
                        openai_form(worker, snap, req, ex, &body, Endpoint::Embeddings, client)
                            .await
                    }
                    Err(e) => ex.out.send_error(&e).await,
                }
            }
            // Unknown is refused on the head; answered the same here all the same.
            gemini::Action::Unknown => {
                let m = String::from_utf8_lossy(&req.buf[req.head.method_text.clone()]);
                ex.out.send_error(&gemini::unknown(&m, path)).await
            }
            gemini::Action::Generate | gemini::Action::Stream => {
                let model = gemini::model_of(path, a);
                let stream = a == gemini::Action::Stream;
                match crate::providers::gemini::ingress_request(req.body, &model, stream) {
                    Ok(body) => translated(worker, snap, req, &body, Family::Gemini, ex).await,
                    Err(e) => ex.out.send_error(&e).await,
                }
            }
        },
        Route::Unsupported => {
            let e = Error::new(
                404,
                crate::error::Kind::InvalidRequest,
                "unsupported_endpoint",
                format!(
                    "{} is not served by this gateway yet; it serves /v1/chat/completions, \
                     /v1/completions, /v1/embeddings, /v1/responses, /v1/messages and /v1/models.",
                    String::from_utf8_lossy(path)
                ),
            );
            ex.out.send_error(&e).await
        }
    }
}

/// The request's client key, checked against the snapshot's: `Ok(None)` when the gateway has
/// no keys (open), `Ok(Some(i))` for a valid key, else the 401 to send. Gemini clients may
/// send their key as `?key=` instead of a header.
fn authenticate<'s>(
    snap: &'s Snapshot,
    head: &crate::h1::head::RequestHead,
    buf: &[u8],
    r: Route,
) -> Result<Option<&'s crate::auth::Client>, Error> {
    use crate::auth::Verdict;
    let gemini = matches!(r, Route::Gemini(_));
    let presented = crate::auth::presented(|n| head.header(buf, n)).or_else(|| {
        gemini
            .then(|| crate::auth::query_key(&buf[head.target.clone()]))
            .flatten()
    });
    let why = match snap.clients.check(presented, crate::clock::now_ms()) {
        Verdict::Open => return Ok(None),
        Verdict::Key(i) => return Ok(snap.clients.get(i)),
        Verdict::Missing if gemini => {
            "No API key was sent; send one as `x-goog-api-key: KEY` (or `?key=KEY`, or `Authorization: Bearer KEY`)."
        }
        Verdict::Missing => {
            "No API key was sent; send one as `Authorization: Bearer KEY` (or `x-api-key: KEY`)."
        }
        Verdict::Unknown => "The API key is not valid for this gateway.",
        Verdict::Expired(_) => "The API key has expired.",
    };
    Err(Error::new(
        401,
        crate::error::Kind::Authentication,
        "invalid_api_key",
        why,
    ))
}

/// An OpenAI-format request: routed with the client's own bytes.
async fn openai(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    ex: &mut Exchange<'_>,
    endpoint: Endpoint,
) {
    let client = (Family::OpenAi, false);
    openai_form(worker, snap, req, ex, req.body, endpoint, client).await
}

/// A request in OpenAI's form for `endpoint` — the client's own bytes, or a translation
/// (a Gemini embeddings request) — answered in `client.0`'s family; `client.1`: the Gemini
/// embeddings request was a batch.
async fn openai_form(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    ex: &mut Exchange<'_>,
    body: &[u8],
    endpoint: Endpoint,
    client: (Family, bool),
) {
    let features = {
        let mut scratch = worker.json.borrow_mut();
        chat::extract(body, &mut scratch)
    };
    match features {
        Ok(mut f) => {
            if endpoint == Endpoint::Embeddings {
                f.needs = crate::expr::Caps::EMBEDDING;
                f.stream = false;
            }
            let call = crate::proxy::Call {
                body,
                features: &f,
                client: client.0,
                endpoint,
                native: None,
                responses: None,
                embedding_batch: client.1,
            };
            crate::proxy::forward(worker, snap, req, call, ex).await
        }
        Err(e) => ex.out.send_error(&e).await,
    }
}

/// `POST /v1/responses`: passed through to providers serving the Responses API natively,
/// translated to chat completions for every other channel. A request the translation cannot
/// express (a built-in tool, a stored item) still reaches native channels as it is.
async fn responses(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    ex: &mut Exchange<'_>,
) {
    let ingress = match crate::providers::openai::responses::ingress_request(req.body) {
        Ok(i) => i,
        Err(e) if e.code.starts_with("unsupported_") => {
            return openai(worker, snap, req, ex, Endpoint::Responses).await;
        }
        Err(e) => return ex.out.send_error(&e).await,
    };
    let features = {
        let mut scratch = worker.json.borrow_mut();
        chat::extract(&ingress.chat, &mut scratch)
    };
    match features {
        Ok(f) => {
            let call = crate::proxy::Call {
                body: &ingress.chat,
                features: &f,
                client: Family::OpenAi,
                endpoint: Endpoint::Responses,
                native: Some(req.body),
                responses: Some(&ingress),
                embedding_batch: false,
            };
            crate::proxy::forward(worker, snap, req, call, ex).await
        }
        Err(e) => ex.out.send_error(&e).await,
    }
}

/// A request ingress translated to the OpenAI form, answered in the client's `family`.
async fn translated(
    worker: &Rc<Worker>,
    snap: &SnapshotRef,
    req: &Request<'_>,
    body: &[u8],
    family: Family,
    ex: &mut Exchange<'_>,
) {
    let features = {
        let mut scratch = worker.json.borrow_mut();
        chat::extract(body, &mut scratch)
    };
    match features {
        Ok(f) => {
            let call = crate::proxy::Call {
                body,
                features: &f,
                client: family,
                endpoint: Endpoint::Chat,
                // A channel of the client's own family gets the client's own bytes.
                native: Some(req.body),
                responses: None,
                embedding_batch: false,
            };
            crate::proxy::forward(worker, snap, req, call, ex).await
        }
        Err(e) => ex.out.send_error(&e).await,
    }
}

/// Ranks without sending anything (no round-robin or trial state changes).
fn dry_run(
    worker: &Worker,
    snap: &crate::snapshot::Snapshot,
    req: &Request<'_>,
    f: &chat::Features,
) -> Result<Vec<u8>, Error> {
    let options = crate::proxy::options_with_headers(req, &f.options)?;
    let endpoint = match req.header(b"x-router-endpoint") {
        None => Endpoint::Chat,
        Some(v) => std::str::from_utf8(v)
            .ok()
            .and_then(|v| Endpoint::parse(v.trim()))
            .ok_or_else(|| {
                Error::bad_request(
                    "invalid_router_header",
                    "x-router-endpoint must be chat, embeddings, completions or responses.",
                )
            })?,
    };
    let now = std::time::Instant::now();
    let mut local = worker.routing.borrow_mut();
    let mut arena = worker.arena.borrow_mut();
    arena.reset();
    let ask = crate::routing::Ask {
        model: &f.model,
        needs: f.needs,
        prompt_tokens: f.prompt_tokens,
        max_tokens: f.max_tokens,
        stream: f.stream,
        strategy: crate::proxy::strategy_of(req, f),
        options: &options,
        allowed: req.allowed(),
        endpoint,
        fields: f.fields,
    };
    let ranking = crate::routing::rank(snap, &mut local, &ask, now, &arena, true)
        .map_err(crate::routing::RouteError::into_error)?;
    Ok(route::render(snap, &f.model, &ranking, now))
}

async fn health(worker: &Worker, snap: &Snapshot, ex: &mut Exchange<'_>) {
    let board = &worker.board;
    let ready = board.ready();
    let mut b = Vec::with_capacity(256);
    b.extend_from_slice(b"{\"status\":");
    json::write_str(&mut b, if ready { "ok" } else { "starting" });
    b.extend_from_slice(b",\"workers\":");
    json::write_u64(&mut b, board.workers() as u64);
    b.extend_from_slice(b",\"driver\":");
    json::write_str(&mut b, board.driver.driver.as_str());
    b.extend_from_slice(b",\"driver_reason\":");
    json::write_str(&mut b, &board.driver.reason);
    b.extend_from_slice(b",\"epoch\":");
    json::write_u64(&mut b, snap.epoch);
    b.extend_from_slice(b",\"channels\":");
    json::write_u64(&mut b, snap.channels.len() as u64);
    b.extend_from_slice(b",\"mode\":");
    json::write_str(&mut b, snap.mode.as_str());
    b.extend_from_slice(b",\"worker\":");
    json::write_u64(&mut b, worker.id as u64);
    b.extend_from_slice(b",\"version\":");
    json::write_str(&mut b, crate::VERSION);
    b.push(b'}');
    ex.out.send_json(if ready { 200 } else { 503 }, &b).await
}

async fn preflight(req: &Request<'_>, ex: &mut Exchange<'_>) {
    ex.out.begin(204);
    ex.out.header(b"allow", b"GET, HEAD, POST, OPTIONS");
    if req.header(b"origin").is_some() {
        ex.out
            .header(b"access-control-allow-methods", b"GET, HEAD, POST, OPTIONS");
        let asked = req
            .header(b"access-control-request-headers")
            .filter(|h| h.len() <= 1024 && h.iter().all(|&b| b.is_ascii_graphic() || b == b' '));
        ex.out.header(
            b"access-control-allow-headers",
            asked.unwrap_or(b"authorization, content-type, x-request-id"),
        );
        ex.out.header(b"access-control-max-age", b"600");
    }
    ex.out.body(b"", b"").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_with_and_without_v1() {
        assert_eq!(route(b"/v1/chat/completions"), Some(Route::ChatCompletions));
        assert_eq!(route(b"/chat/completions"), Some(Route::ChatCompletions));
        assert_eq!(route(b"/v1/models"), Some(Route::Models));
        assert_eq!(route(b"/v1/models/openai/gpt-4o"), Some(Route::Model));
        assert_eq!(route(b"/v1/models/"), None);
        assert_eq!(route(b"/"), Some(Route::Root));
        assert_eq!(route(b"/v1/"), None);
        assert_eq!(route(b"/health"), Some(Route::Health));
        assert_eq!(route(b"/v1/health"), None);
        assert_eq!(route(b"/v1x/models"), None);
        assert_eq!(route(b"/v1/route"), Some(Route::DryRun));
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(
            crate::h1::percent_decode(b"openai%2Fgpt-4o"),
            "openai/gpt-4o"
        );
        assert_eq!(crate::h1::percent_decode(b"a%zz%4"), "a%zz%4");
    }
}
