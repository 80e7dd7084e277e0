//! The bodies of smart-ai-router's fuzz targets, one function per target.
//!
//! Shared by two callers, so a corpus file means the same thing to both:
//! * `fuzz/fuzz_targets/<name>.rs`: libFuzzer calls `<name>(data)` (this file is the fuzz
//!   crate's library);
//! * the main crate's `tests/fuzz_corpus.rs`, which includes this file as a module
//!   (`#[path]`) and replays every file of `fuzz/corpus/<name>/` and `fuzz/regressions/<name>/`
//!   through [`TARGETS`] as an ordinary test.
//!
//! It may therefore use only `smart_ai_router`'s public API, `simd_json` and `std` (what both
//! crates depend on). Every function takes arbitrary bytes, must never panic, and asserts
//! invariants beyond "no panic": bounds, split-invariance (the same verdict whatever the read
//! sizes), round trips, and well-formed output of the translators.
//!
//! Targets whose behaviour has a mode take it from the first input byte (the "selector"); the
//! rest is the payload. Seed files under `fuzz/corpus/` follow the same layout.

use simd_json::prelude::*;
use smart_ai_router::error::{Error, Kind};
use smart_ai_router::expr::{self, Cmp, Dim, Expr};
use smart_ai_router::h1::chunked::{self, Decoder};
use smart_ai_router::h1::head::{Body, Method, RequestHead, ResponseHead};
use smart_ai_router::h1::sse;
use smart_ai_router::providers::openai::ingress::{self as chat, Edit, JsonScratch, ROUTER_FIELDS};
use smart_ai_router::providers::openai::responses;
use smart_ai_router::providers::{Family, anthropic, gemini};
use smart_ai_router::proxy::transcode::{self, Transcode};

/// A target body: arbitrary bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// Every target, by the name of its `fuzz_targets/` file and corpus directory.
pub const TARGETS: &[(&str, Target)] = &[
    ("h1_head", h1_head),
    ("chunked", chunked),
    ("sse", sse),
    ("chat_features", chat_features),
    ("model_expr", model_expr),
    ("request_translate", request_translate),
    ("anthropic_stream", anthropic_stream),
    ("gemini_stream", gemini_stream),
    ("openai_stream", openai_stream),
    ("anthropic_response", anthropic_response),
    ("gemini_response", gemini_response),
    ("openai_response", openai_response),
    ("header_policy", header_policy),
    ("responses_translate", responses_translate),
];

/// Split points for "the same answer whatever the read sizes" checks: a deterministic run of
/// piece lengths 1..=13 that depends on the input length (so it varies between inputs).
fn pieces(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut at = 0;
    let mut k = data.len();
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        k = k.wrapping_mul(7).wrapping_add(3);
        let n = (1 + k % 13).min(data.len() - at);
        let piece = &data[at..at + n];
        at += n;
        Some(piece)
    })
}

fn parse_json(bytes: &[u8]) -> Option<simd_json::OwnedValue> {
    let mut copy = bytes.to_vec();
    simd_json::to_owned_value(&mut copy).ok()
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

// ---- HTTP/1.1 heads ----

const HEAD_MAX_HEADERS: usize = 24;
const HEAD_MAX_BYTES: usize = 2048;

/// `RequestHead::parse` and `ResponseHead::parse` on the same bytes.
pub fn h1_head(data: &[u8]) {
    request_head(data);
    for was_head in [false, true] {
        response_head(data, was_head);
    }
}

fn in_head(r: &std::ops::Range<usize>, len: usize) -> bool {
    r.start <= r.end && r.end <= len
}

fn request_head(data: &[u8]) {
    let parsed = RequestHead::parse(data, HEAD_MAX_HEADERS, HEAD_MAX_BYTES);
    let h = match parsed {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(
                data.len() <= HEAD_MAX_BYTES,
                "an oversized partial head must be refused"
            );
            return;
        }
        Err(_) => return,
    };
    // The head lies within the input and the limits, and every range lies within the head.
    assert!(h.len <= data.len() && h.len <= HEAD_MAX_BYTES);
    assert!(data[..h.len].ends_with(b"\n"));
    assert!(h.headers.len() <= HEAD_MAX_HEADERS);
    assert!(in_head(&h.method_text, h.len) && in_head(&h.target, h.len));
    assert!(h.minor_version <= 1);
    for hd in &h.headers {
        assert!(in_head(&hd.name, h.len) && in_head(&hd.value, h.len));
    }
    let method = &data[h.method_text.clone()];
    let expected = match method {
        b"GET" => Method::Get,
        b"HEAD" => Method::Head,
        b"POST" => Method::Post,
        b"OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    assert_eq!(h.method, expected);
    assert!(data[h.target.clone()].starts_with(h.path(data)));
    // Framing: no smuggling-prone combination is ever accepted.
    let named = |n: &[u8]| -> Vec<&[u8]> {
        h.headers
            .iter()
            .filter(|hd| data[hd.name.clone()].eq_ignore_ascii_case(n))
            .map(|hd| data[hd.value.clone()].trim_ascii())
            .collect()
    };
    // Content-Length values compare as numbers: `5` and `05` agree.
    let number = |v: &[u8]| {
        v.iter().try_fold(0u64, |n, &d| {
            n.checked_mul(10)?
                .checked_add(u64::from(d.checked_sub(b'0')?))
        })
    };
    let te = named(b"transfer-encoding").len();
    let cl: Vec<Option<u64>> = named(b"content-length").into_iter().map(number).collect();
    assert!(
        te == 0 || cl.is_empty(),
        "Content-Length with Transfer-Encoding"
    );
    assert!(te <= 1, "several Transfer-Encoding headers accepted");
    assert!(
        cl.windows(2).all(|w| w[0] == w[1]),
        "conflicting Content-Length"
    );
    assert!(named(b"host").len() <= 1);
    match h.body {
        Body::Chunked => assert!(te == 1 && h.minor_version == 1),
        Body::Length(n) => assert!(n > 0 && te == 0 && !cl.is_empty()),
        Body::None => assert!(te == 0),
        Body::Close => panic!("a request body is never close-delimited"),
    }
    assert!(!h.expect_continue || h.minor_version == 1);
    // The verdict depends on the head's bytes only: what follows it changes nothing, and a
    // prefix of it is "need more bytes" (a head split across reads is not refused).
    let again = RequestHead::parse(&data[..h.len], HEAD_MAX_HEADERS, HEAD_MAX_BYTES)
        .expect("the head alone parses")
        .expect("the head alone is complete");
    assert_eq!(
        (again.len, again.body, again.keep_alive),
        (h.len, h.body, h.keep_alive)
    );
    for cut in [h.len - 1, h.len / 2, 1] {
        let p = RequestHead::parse(&data[..cut], HEAD_MAX_HEADERS, HEAD_MAX_BYTES);
        assert!(
            matches!(p, Ok(None)),
            "a prefix ({cut} of {} bytes) of a complete head gave {p:?}",
            h.len
        );
    }
}

fn response_head(data: &[u8], was_head: bool) {
    let h = match ResponseHead::parse(data, HEAD_MAX_BYTES, was_head) {
        Ok(Some(h)) => h,
        Ok(None) => {
            assert!(data.len() <= HEAD_MAX_BYTES);
            return;
        }
        Err(_) => return,
    };
    assert!(h.len <= data.len());
    for hd in &h.headers {
        assert!(in_head(&hd.name, h.len) && in_head(&hd.value, h.len));
    }
    if was_head || (100..200).contains(&h.status) || h.status == 204 || h.status == 304 {
        assert_eq!(h.body, Body::None);
    }
    if h.body == Body::Close {
        assert!(
            !h.keep_alive,
            "a close-delimited body cannot be followed on the connection"
        );
    }
    if let Body::Length(n) = h.body {
        assert!(n > 0);
    }
}

// ---- chunked transfer-coding ----

/// The chunked decoder: bounds, split-invariance and an encode → decode round trip.
pub fn chunked(data: &[u8]) {
    let mut whole = Decoder::new();
    let mut out = Vec::new();
    let r = whole.decode(data, &mut out);
    match r {
        Ok(n) => {
            assert!(n <= data.len());
            assert!(out.len() <= n, "decoded more than it consumed");
            if !whole.is_done() {
                assert_eq!(n, data.len(), "an unfinished body consumes all its input");
            }
        }
        Err(_) => assert!(out.len() <= data.len()),
    }
    // Fed in small pieces: the same bytes, the same end, the same verdict.
    let mut split = Decoder::new();
    let mut out2 = Vec::new();
    let mut consumed = 0;
    let mut r2 = Ok(0);
    for piece in pieces(data) {
        match split.decode(piece, &mut out2) {
            Ok(n) => {
                assert!(n <= piece.len());
                consumed += n;
                if split.is_done() {
                    break;
                }
                assert_eq!(n, piece.len());
            }
            Err(e) => {
                r2 = Err(e);
                break;
            }
        }
    }
    match (r, r2) {
        (Ok(n), Ok(_)) => {
            assert_eq!(n, consumed, "consumed differs when split");
            assert_eq!(out, out2, "payload differs when split");
            assert_eq!(whole.is_done(), split.is_done());
        }
        (Err(_), Err(_)) => {}
        (a, b) => panic!("whole {a:?} but split {:?}", b.map(|_| consumed)),
    }
    // Round trip: any payload, chunked at the piece sizes, decodes to itself.
    let mut framed = Vec::new();
    for piece in pieces(data) {
        chunked::write_chunk(&mut framed, piece);
    }
    framed.extend_from_slice(chunked::LAST_CHUNK);
    let mut d = Decoder::new();
    let mut back = Vec::new();
    let n = d.decode(&framed, &mut back).expect("own framing decodes");
    assert!(d.is_done() && n == framed.len());
    assert_eq!(back, data);
}

// ---- server-sent events ----

/// SSE framing: event boundaries found incrementally (as the relay scans) equal those of a
/// whole-buffer scan; event parsing stays in bounds; `write_data` round-trips.
pub fn sse(data: &[u8]) {
    let whole = sse::complete_end(data, 0);
    if let Some(e) = whole {
        assert!(e <= data.len());
        assert!(data[..e].ends_with(b"\n\n") || data[..e].ends_with(b"\n\r\n"));
        events_in_bounds(&data[..e]);
    }
    // The relay's loop: append a read, look for complete events from where the last scan
    // stopped, forward and drain them.
    let mut pending = Vec::new();
    let mut scan_from = 0;
    let mut forwarded = 0;
    for piece in pieces(data) {
        pending.extend_from_slice(piece);
        if let Some(e) = sse::complete_end(&pending, scan_from) {
            assert!(e <= pending.len());
            forwarded += e;
            pending.drain(..e);
        }
        scan_from = pending.len();
    }
    assert_eq!(
        whole.unwrap_or(0),
        forwarded,
        "incremental scanning found other event boundaries"
    );
    // `write_data(X)` reads back as X, line breaks included (a lone CR is not a line break
    // here, and a CR before an LF is stripped: keep CRs out).
    let payload: Vec<u8> = data.iter().copied().filter(|&b| b != b'\r').collect();
    let mut framed = Vec::new();
    sse::write_data(&mut framed, &payload);
    assert_eq!(sse::complete_end(&framed, 0), Some(framed.len()));
    let (mut at, mut got) = (0, Vec::new());
    assert_eq!(sse::next_event(&framed, &mut at, &mut got), Some(&b""[..]));
    assert_eq!(got, payload);
    assert_eq!(sse::next_event(&framed, &mut at, &mut got), None);
}

/// Walks the events of `block`: positions only grow and stay in bounds; an event whose data is
/// exactly `[DONE]` is seen by `has_done`.
fn events_in_bounds(block: &[u8]) {
    let done = sse::has_done(block);
    if done {
        assert!(block.windows(6).any(|w| w == b"[DONE]"));
    }
    let (mut at, mut data) = (0, Vec::new());
    let mut last = 0;
    while let Some(name) = sse::next_event(block, &mut at, &mut data) {
        assert!(at > last && at <= block.len(), "next_event did not advance");
        assert!(name.len() + data.len() <= block.len());
        if data == b"[DONE]" {
            assert!(done, "a [DONE] event that has_done misses");
        }
        last = at;
    }
    assert_eq!(at, block.len());
}

// ---- chat request features ----

/// `providers::openai::ingress::extract`: deterministic with a reused scratch; the edits it returns, applied,
/// give valid JSON whose every top-level `model` is the new id and with no router-only field;
/// extracting from the edited body gives the same features.
pub fn chat_features(data: &[u8]) {
    let mut scratch = JsonScratch::default();
    let r = chat::extract(data, &mut scratch);
    assert_eq!(
        r,
        chat::extract(data, &mut scratch),
        "scratch reuse changed the answer"
    );
    let Ok(f) = r else { return };
    assert!(!f.model.is_empty());
    let mut at = 0;
    let mut edited = Vec::with_capacity(data.len());
    for e in &f.edits {
        let r = e.range();
        assert!(
            at <= r.start && r.start <= r.end && r.end <= data.len(),
            "edits {:?}",
            f.edits
        );
        edited.extend_from_slice(&data[at..r.start]);
        match e {
            Edit::Model(_) => edited.extend_from_slice(b"\"x\""),
            // Kept verbatim here; the dropped variant is checked below.
            Edit::StreamOptions(_) => edited.extend_from_slice(&data[r.clone()]),
            Edit::Remove(_) => {}
        }
        at = r.end;
    }
    edited.extend_from_slice(&data[at..]);
    // Dropping every stream_options member (what the proxy does before writing its own)
    // leaves valid JSON without one.
    let mut dropped = Vec::with_capacity(data.len());
    let mut from = 0;
    for e in &f.edits {
        let r = e.range();
        dropped.extend_from_slice(&data[from..r.start]);
        if let Edit::Model(_) = e {
            dropped.extend_from_slice(b"\"x\"");
        }
        from = r.end;
    }
    dropped.extend_from_slice(&data[from..]);
    let w = parse_json(&dropped).unwrap_or_else(|| {
        panic!(
            "body without stream_options is not JSON: {}",
            lossy(&dropped)
        )
    });
    assert!(
        !w.as_object()
            .expect("an object")
            .contains_key("stream_options"),
        "{}",
        lossy(&dropped)
    );
    let v = parse_json(&edited)
        .unwrap_or_else(|| panic!("edited body is not JSON: {}", lossy(&edited)));
    let obj = v.as_object().expect("still an object");
    assert_eq!(obj.get("model").and_then(|m| m.as_str()), Some("x"));
    for k in ROUTER_FIELDS {
        assert!(
            !obj.contains_key(*k),
            "router field `{k}` left in {}",
            lossy(&edited)
        );
    }
    let g = chat::extract(&edited, &mut scratch)
        .unwrap_or_else(|e| panic!("edited body refused: {e:?}: {}", lossy(&edited)));
    assert_eq!(&*g.model, "x");
    assert!(
        g.edits
            .iter()
            .all(|e| matches!(e, Edit::Model(_) | Edit::StreamOptions(_)))
    );
    assert_eq!(
        (
            g.stream,
            g.needs,
            g.prompt_tokens,
            g.max_tokens,
            g.usage_asked
        ),
        (
            f.stream,
            f.needs,
            f.prompt_tokens,
            f.max_tokens,
            f.usage_asked
        )
    );
}

// ---- model expressions ----

/// `expr::parse`: names and groups are the trimmed input; query terms are non-empty,
/// trimmed slices of the input within the term limits; a query without prefix terms
/// round-trips through its canonical spelling.
pub fn model_expr(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let _ = expr::param_size(s);
    let _ = expr::context_size(s);
    let within = |t: &str| {
        let (p, b) = (t.as_ptr() as usize, s.as_ptr() as usize);
        p >= b && p + t.len() <= b + s.len()
    };
    match expr::parse(s) {
        Err(e) => assert!(!e.is_empty()),
        Ok(Expr::Name(n)) => assert!(!n.is_empty() && n == s.trim()),
        Ok(Expr::Group(g)) => {
            assert_eq!(g, s.trim());
            assert!(g.len() > 5 && g[..5].eq_ignore_ascii_case("auto:"));
        }
        Ok(Expr::Query(q)) => {
            let terms = q.pos.iter().chain(&q.neg).chain(&q.prefixes);
            for t in terms {
                assert!(!t.is_empty() && *t == t.trim() && within(t), "term {t:?}");
            }
            assert!(!(q.pos.is_empty() && q.neg.is_empty() && q.filters.is_empty()));
            if q.prefixes.is_empty() {
                let mut spelled = String::from("tag:");
                let mut sep = "";
                for t in &q.pos {
                    spelled += &format!("{sep}{t}");
                    sep = ",";
                }
                for t in &q.neg {
                    spelled += &format!("{sep}!{t}");
                    sep = ",";
                }
                for f in &q.filters {
                    let op = match f.cmp {
                        Cmp::Gt => ">",
                        Cmp::Ge => ">=",
                        Cmp::Lt => "<",
                        Cmp::Le => "<=",
                        Cmp::Eq => "=",
                    };
                    spelled += &match f.dim {
                        Dim::Params => format!("{sep}{op}{}m", f.value),
                        Dim::Context => format!("{sep}ctx{op}{}", f.value),
                    };
                    sep = ",";
                }
                match expr::parse(&spelled) {
                    Ok(Expr::Query(back)) => assert_eq!(back, q, "{spelled:?}"),
                    other => panic!("{spelled:?} from {s:?} reads back as {other:?}"),
                }
            }
        }
    }
}

// ---- client request translation (Anthropic / Gemini ingress, upstream encoders) ----

/// The request translators. Selector `% 4`: 0 Anthropic ingress, 1 Anthropic `count_tokens`,
/// 2 Gemini ingress, 3 the OpenAI → Anthropic and → Gemini encoders. In mode 2, `(sel >> 3) % 3`
/// picks `:generateContent` (bit 2: streaming), `:countTokens` or `:embedContent` (bit 2:
/// `:batchEmbedContents`). Whatever ingress accepts is a chat request the gateway's own
/// extraction accepts (an embeddings request for embeddings), and every translated body is
/// JSON.
pub fn request_translate(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 4 {
        0 => {
            if let Ok(chat_body) = anthropic::ingress_request(body) {
                ingress_is_a_chat_request(&chat_body, None);
            }
        }
        1 => {
            if let Ok(out) = anthropic::count_tokens(body) {
                let v = parse_json(&out).expect("count_tokens answers JSON");
                assert!(v.get("input_tokens").and_then(|n| n.as_u64()).is_some());
            }
        }
        2 => match (sel >> 3) % 3 {
            0 => {
                if let Ok(chat_body) = gemini::ingress_request(body, "m", sel & 4 != 0) {
                    ingress_is_a_chat_request(&chat_body, Some("m"));
                }
            }
            1 => {
                if let Ok(chat_body) = gemini::count_tokens_request(body, "m") {
                    ingress_is_a_chat_request(&chat_body, Some("m"));
                }
            }
            _ => {
                let batch = sel & 4 != 0;
                if let Ok(req) = gemini::embed_request(body, "m", batch) {
                    let v = parse_json(&req).unwrap_or_else(|| {
                        panic!("embed_request produced invalid JSON: {}", lossy(&req))
                    });
                    assert_eq!(v.get("model").and_then(|m| m.as_str()), Some("m"));
                    let input = v.get("input").expect("an embeddings request has an input");
                    assert_eq!(input.as_array().is_some(), batch, "{}", lossy(&req));
                    let f = chat::extract(&req, &mut JsonScratch::default())
                        .unwrap_or_else(|e| panic!("embeddings request refused by extract: {e:?}"));
                    assert_eq!(&*f.model, "m");
                }
            }
        },
        _ => {
            if let Some(v) = parse_json(body) {
                encode_upstream(&v);
            }
        }
    }
}

fn ingress_is_a_chat_request(chat_body: &[u8], model: Option<&str>) {
    let v = parse_json(chat_body)
        .unwrap_or_else(|| panic!("ingress produced invalid JSON: {}", lossy(chat_body)));
    let f = chat::extract(chat_body, &mut JsonScratch::default()).unwrap_or_else(|e| {
        panic!(
            "ingress output refused by extract: {e:?}: {}",
            lossy(chat_body)
        )
    });
    if let Some(m) = model {
        assert_eq!(&*f.model, m);
    }
    encode_upstream(&v);
}

fn encode_upstream(v: &simd_json::OwnedValue) {
    let mut out = Vec::new();
    if anthropic::encode_request(v, "m", &mut out).is_ok() {
        assert!(
            parse_json(&out).is_some(),
            "Anthropic request: {}",
            lossy(&out)
        );
    }
    out.clear();
    if gemini::encode_request(v, &mut out).is_ok() {
        assert!(
            parse_json(&out).is_some(),
            "Gemini request: {}",
            lossy(&out)
        );
    }
}

// ---- upstream answers → client answers (proxy::transcode) ----

const FAMILIES: [Family; 3] = [Family::OpenAi, Family::Anthropic, Family::Gemini];

/// An Anthropic upstream's SSE stream, relayed to the client family the selector names.
pub fn anthropic_stream(data: &[u8]) {
    stream(Family::Anthropic, data);
}

/// A Gemini upstream's SSE stream, relayed to the client family the selector names.
pub fn gemini_stream(data: &[u8]) {
    stream(Family::Gemini, data);
}

/// An OpenAI-family upstream's SSE stream, relayed to the client family the selector names.
pub fn openai_stream(data: &[u8]) {
    stream(Family::OpenAi, data);
}

/// Drives a [`Transcode`] the way `proxy::relay` does: whole events only, in read-sized
/// batches; a translation error cuts the stream with an error event; a clean end flushes
/// what is left and finishes when the upstream said it was complete (`ended`), else it is a
/// cut too. Selector: `% 3` client family (OpenAI, Anthropic, Gemini), bit 2
/// the gateway asked for usage (strip the usage chunk), bit 3 the stream is cut at the end
/// instead of ending cleanly. The client must get a well-formed stream of its family.
fn stream(upstream: Family, data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let client = FAMILIES[usize::from(sel % 3)];
    let mut tc = Transcode::new(upstream, client, sel & 4 != 0, "m", "id", 1);
    let cut_at_end = sel & 8 != 0;
    let mut out = Vec::new();
    let mut pending = Vec::new();
    let mut scan_from = 0;
    let mut failed = false;
    let mut done = false;
    if tc.passthrough() {
        // Bytes go out unchanged; only usage is watched.
        for piece in pieces(body) {
            pending.extend_from_slice(piece);
            if let Some(e) = sse::complete_end(&pending, scan_from) {
                tc.observe(&pending[..e]);
                pending.drain(..e);
            }
            scan_from = pending.len();
        }
        return;
    }
    for piece in pieces(body) {
        pending.extend_from_slice(piece);
        if let Some(e) = sse::complete_end(&pending, scan_from) {
            match tc.events(&pending[..e], &mut out) {
                Ok(true) => done = true,
                Ok(false) => {}
                Err(m) => {
                    assert!(!m.is_empty());
                    failed = true;
                }
            }
            pending.drain(..e);
        }
        scan_from = pending.len();
        if done || failed {
            break;
        }
    }
    if failed || (cut_at_end && !done) {
        let err = Error::new(502, Kind::Server, "upstream_stream_cut", "cut");
        tc.stream_error(&err, &mut out);
    } else if !done {
        if !pending.is_empty() {
            pending.extend_from_slice(b"\n\n");
            let _ = tc.events(&pending, &mut out);
        }
        if tc.ended() {
            tc.finish(&mut out);
        } else {
            // The framing ended without the upstream's terminator: a cut, never a `[DONE]`.
            let err = Error::new(502, Kind::Server, "upstream_stream_cut", "no terminator");
            tc.stream_error(&err, &mut out);
        }
    }
    assert!(tc.closed(), "the client's stream was left open");
    // Closed means closed: nothing more comes out.
    let len = out.len();
    tc.finish(&mut out);
    let _ = tc.events(b"data: {}\n\n", &mut out);
    assert_eq!(out.len(), len, "output after the stream was closed");
    // An OpenAI upstream's chunks reach an OpenAI client as they came (garbage included):
    // what the client reads back must be some upstream event's data. Up to CRs: SSE cannot
    // carry a CR in data (a lone CR is a line break to the spec, and h1::sse documents it as
    // outside what it handles), so a value ending in CR loses it to the CRLF of its line.
    let relayed = (upstream == Family::OpenAi && client == Family::OpenAi).then(|| {
        let mut datas = Vec::new();
        let end = sse::complete_end(body, 0).unwrap_or(0);
        let (mut at, mut data) = (0, Vec::new());
        while sse::next_event(&body[..end], &mut at, &mut data).is_some() {
            datas.push(data.clone());
        }
        // The clean end flushes an unterminated last event too.
        let mut rest = body[end..].to_vec();
        rest.extend_from_slice(b"\n\n");
        at = 0;
        while sse::next_event(&rest, &mut at, &mut data).is_some() {
            datas.push(data.clone());
        }
        datas
    });
    client_stream_is_well_formed(client, &out, relayed.as_deref());
}

fn same_but_cr(a: &[u8], b: &[u8]) -> bool {
    a.iter()
        .filter(|&&c| c != b'\r')
        .eq(b.iter().filter(|&&c| c != b'\r'))
}

/// The client's stream is whole SSE events of its family, closed exactly once: OpenAI chunks
/// (JSON, or an OpenAI upstream's event data relayed unchanged) end with `[DONE]` or an error
/// event; Anthropic events follow the Messages stream grammar
/// (one `message_start`; content blocks opened, filled and closed in index order; one
/// `message_delta`; `message_stop` or `error` last); Gemini events are JSON objects.
fn client_stream_is_well_formed(client: Family, out: &[u8], relayed: Option<&[Vec<u8>]>) {
    let text = || lossy(out);
    assert_eq!(
        sse::complete_end(out, 0),
        Some(out.len()),
        "torn events: {}",
        text()
    );
    let (mut at, mut data) = (0, Vec::new());
    let mut events: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    while let Some(name) = sse::next_event(out, &mut at, &mut data) {
        events.push((name.to_vec(), data.clone()));
    }
    let n = events.len();
    assert!(n > 0, "nothing was sent");
    let json_of = |d: &[u8]| {
        let v = parse_json(d).unwrap_or_else(|| panic!("event data is not JSON: {}", text()));
        assert!(
            v.as_object().is_some(),
            "event data is not an object: {}",
            text()
        );
        v
    };
    match client {
        Family::OpenAi => {
            for (i, (name, d)) in events.iter().enumerate() {
                assert!(name.is_empty());
                if d == b"[DONE]" {
                    assert_eq!(i, n - 1, "[DONE] before the end: {}", text());
                } else if relayed.is_some_and(|up| up.iter().any(|u| same_but_cr(u, d))) {
                    // Relayed unchanged.
                } else {
                    let v = json_of(d);
                    if v.get("error").is_some() {
                        assert_eq!(i, n - 1, "events after an error: {}", text());
                    }
                }
            }
        }
        Family::Gemini => {
            for (i, (_, d)) in events.iter().enumerate() {
                assert!(d != b"[DONE]", "a Gemini stream has no [DONE]");
                if json_of(d).get("error").is_some() {
                    assert_eq!(i, n - 1, "events after an error: {}", text());
                }
            }
        }
        Family::Anthropic => anthropic_grammar(&events, &text),
    }
}

fn anthropic_grammar(events: &[(Vec<u8>, Vec<u8>)], text: &dyn Fn() -> String) {
    let mut started = false;
    let mut open: Option<u64> = None;
    let mut next_index = 0u64;
    // Indices of tool_use blocks: a later fragment of a call whose block was closed (an
    // upstream interleaving parallel calls) still goes to that block's index, by design
    // (Anthropic SDKs assemble blocks by index); text and thinking go to the open block only.
    let mut tool_blocks = Vec::new();
    let mut delta_sent = false;
    let n = events.len();
    for (i, (name, d)) in events.iter().enumerate() {
        let name = std::str::from_utf8(name).expect("event names are text");
        let v = parse_json(d).unwrap_or_else(|| panic!("event data is not JSON: {}", text()));
        assert_eq!(
            v.get("type").and_then(|t| t.as_str()),
            Some(name),
            "event name and type differ: {}",
            text()
        );
        let index = v.get("index").and_then(|x| x.as_u64());
        let last = i == n - 1;
        match name {
            "error" => assert!(last, "events after an error: {}", text()),
            "message_start" => {
                assert!(!started, "two message_start: {}", text());
                started = true;
            }
            "ping" => assert!(started),
            "content_block_start" => {
                assert!(started && open.is_none() && !delta_sent, "{}", text());
                assert_eq!(
                    index,
                    Some(next_index),
                    "block index out of order: {}",
                    text()
                );
                open = index;
                next_index += 1;
                let kind = v.get("content_block").and_then(|b| b.get("type"));
                if kind.and_then(|t| t.as_str()) == Some("tool_use") {
                    tool_blocks.extend(index);
                }
            }
            "content_block_delta" => {
                let to_open = open.is_some() && open == index;
                let to_tool = index.is_some_and(|x| tool_blocks.contains(&x));
                assert!(
                    !delta_sent && (to_open || to_tool),
                    "delta outside its block: {}",
                    text()
                )
            }
            "content_block_stop" => {
                assert!(
                    open.is_some() && open == index,
                    "stop of a closed block: {}",
                    text()
                );
                open = None;
            }
            "message_delta" => {
                assert!(started && open.is_none() && !delta_sent, "{}", text());
                delta_sent = true;
            }
            "message_stop" => {
                assert!(delta_sent && last, "message_stop misplaced: {}", text());
            }
            other => panic!("unknown Anthropic event `{other}`: {}", text()),
        }
    }
}

/// An Anthropic upstream's whole answer and error body, translated for the selected client.
pub fn anthropic_response(data: &[u8]) {
    response(Family::Anthropic, data);
}

/// A Gemini upstream's whole answer and error body, translated for the selected client.
pub fn gemini_response(data: &[u8]) {
    response(Family::Gemini, data);
}

/// An OpenAI-family upstream's whole answer and error body, translated for the selected client.
pub fn openai_response(data: &[u8]) {
    response(Family::OpenAi, data);
}

/// `Transcode::body` and `transcode::error_body`. Selector: `% 3` client family, bit 3 strip
/// `<think>` blocks, bits 4..=6 the error status. What comes out is JSON of the client's
/// family (or empty: "send the original").
fn response(upstream: Family, data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    let client = FAMILIES[usize::from(sel % 3)];
    let mut tc = Transcode::new(upstream, client, false, "m", "id", 1);
    tc.strip_think = sel & 8 != 0;
    let mut out = Vec::new();
    // Same family: relayed as sent (OpenAI's unless think blocks are stripped), read for usage.
    let unchanged = upstream == client && (upstream != Family::OpenAi || !tc.strip_think);
    match tc.body(body, "m", "id", 1, &mut out) {
        Ok(()) if unchanged => assert!(out.is_empty()),
        Ok(()) => {
            if upstream != Family::OpenAi {
                assert!(tc.usage().is_some(), "a decoded answer has usage");
            }
            if !(upstream == Family::OpenAi && client == Family::OpenAi) {
                let v = parse_json(&out)
                    .unwrap_or_else(|| panic!("translated answer is not JSON: {}", lossy(&out)));
                assert!(v.as_object().is_some());
            }
        }
        Err(m) => assert!(!m.is_empty()),
    }
    const STATUSES: [u16; 8] = [400, 401, 403, 404, 429, 500, 503, 529];
    let status = STATUSES[usize::from(sel >> 4) % STATUSES.len()];
    let mut err = Vec::new();
    transcode::error_body(upstream, client, status, body, &mut err);
    if upstream == client {
        assert!(err.is_empty());
        return;
    }
    // Between families, any body (even garbage) becomes a valid error of the client's family.
    let v =
        parse_json(&err).unwrap_or_else(|| panic!("translated error is not JSON: {}", lossy(&err)));
    let e = v.get("error").expect("an error member");
    if client == Family::Anthropic {
        assert_eq!(v.get("type").and_then(|t| t.as_str()), Some("error"));
    }
    if client == Family::OpenAi {
        assert!(e.get("message").and_then(|m| m.as_str()).is_some());
    }
}

// ---- header policy ----

/// `h1::forwarding`: the first line is a client header name, the other lines a provider's
/// `forward_headers`. Credentials, framing and router headers never go upstream whatever the
/// list says; a forwarded name is on the allow-list or named by an entry; the verdict ignores
/// case; an upstream's `x-ratelimit-*`, cookies and hop-by-hop headers never reach a client;
/// and config validation never accepts an entry that names a never-forwarded header.
pub fn header_policy(data: &[u8]) {
    use smart_ai_router::h1::forwarding::{
        ALLOWED, forward_request, forward_response, never_forwarded,
    };
    let mut lines = data.split(|&b| b == b'\n');
    let name = lines.next().unwrap_or_default();
    let entries: Vec<String> = lines
        .take(8)
        .map(|l| String::from_utf8_lossy(l).to_ascii_lowercase())
        .collect();
    let list: Vec<Box<str>> = entries.iter().map(|e| e.as_str().into()).collect();
    let verdict = forward_request(name, &list);
    assert_eq!(
        verdict,
        forward_request(&name.to_ascii_uppercase(), &list),
        "case changed the verdict for {}",
        lossy(name)
    );
    const SECRET: &[&str] = &[
        "authorization",
        "x-api-key",
        "api-key",
        "x-goog-api-key",
        "proxy-authorization",
        "cookie",
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
    ];
    if SECRET
        .iter()
        .any(|s| s.as_bytes().eq_ignore_ascii_case(name))
        || name.len() >= 9 && name[..9].eq_ignore_ascii_case(b"x-router-")
    {
        assert!(!verdict, "{} was forwarded", lossy(name));
        assert!(never_forwarded(name));
    }
    if verdict {
        let lower = name.to_ascii_lowercase();
        let named = ALLOWED.iter().any(|a| a.as_bytes() == lower.as_slice())
            || entries.iter().any(|e| match e.strip_suffix('*') {
                Some(p) => lower.starts_with(p.as_bytes()),
                None => e.as_bytes() == lower.as_slice(),
            });
        assert!(named, "{} forwarded without being listed", lossy(name));
    }
    if name.len() >= 12 && name[..12].eq_ignore_ascii_case(b"x-ratelimit-")
        || name.eq_ignore_ascii_case(b"set-cookie")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
    {
        assert!(
            !forward_response(name),
            "{} reached the client",
            lossy(name)
        );
    }
    // Validation: whatever it accepts is forwardable.
    let quoted: Vec<String> = entries
        .iter()
        .map(|e| {
            let mut q = Vec::new();
            smart_ai_router::json::write_str(&mut q, e);
            String::from_utf8_lossy(&q).into_owned()
        })
        .collect();
    let toml = format!(
        "[providers.p]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nforward_headers = [{}]\n",
        quoted.join(", ")
    );
    if let Ok(cfg) = smart_ai_router::config::Config::parse(&toml, &|_: &str| None) {
        for h in &cfg.providers[0].forward_headers {
            assert!(!never_forwarded(h.as_bytes()), "validation accepted {h}");
        }
    }
}

// ---- the Responses API on channels without it (providers::openai::responses) ----

/// The Responses translation, by the selector: 0 — a client's Responses request becomes a
/// chat request the chat reader accepts, with the same model, and only the stateful fields
/// need a native channel; 1 — a canonical chat answer becomes a `response` object whose usage
/// adds up; 2 — canonical chunks (the payload's lines) become a well-formed event sequence,
/// ending in `response.failed` when a chunk is refused.
pub fn responses_translate(data: &[u8]) {
    let Some((&sel, body)) = data.split_first() else {
        return;
    };
    match sel % 3 {
        0 => {
            if let Ok(i) = responses::ingress_request(body) {
                let v = parse_json(body).expect("an accepted request is JSON");
                let model = v.get("model").and_then(|m| m.as_str()).expect("model");
                ingress_is_a_chat_request(&i.chat, Some(model));
                if let Some(field) = i.needs_native {
                    assert!(
                        matches!(field, "previous_response_id" | "background"),
                        "{field}"
                    );
                }
            }
        }
        1 => {
            let mut out = Vec::new();
            if let Ok(u) = responses::egress_response(body, &responses_echo(), 1, &mut out) {
                let v = parse_json(&out)
                    .unwrap_or_else(|| panic!("response is not JSON: {}", lossy(&out)));
                assert_eq!(v.get("object").and_then(|o| o.as_str()), Some("response"));
                let status = v.get("status").and_then(|s| s.as_str()).unwrap_or("");
                assert!(matches!(status, "completed" | "incomplete"), "{status}");
                let usage = v.get("usage").expect("usage");
                let tokens = |k: &str| usage.get(k).and_then(|n| n.as_u64()).unwrap_or(0);
                assert_eq!(tokens("input_tokens"), u.prompt);
                assert_eq!(
                    tokens("total_tokens"),
                    tokens("input_tokens") + tokens("output_tokens")
                );
            }
        }
        _ => {
            let mut enc = responses::StreamEncoder::new(responses_echo(), 1);
            let mut out = Vec::new();
            let mut refused = false;
            for line in body.split(|b| *b == b'\n') {
                if enc.chunk(line, &mut out).is_err() {
                    let err = Error::new(502, Kind::Server, "upstream_stream_cut", "refused");
                    enc.error(&err, &mut out);
                    refused = true;
                    break;
                }
            }
            enc.finish(&mut out);
            responses_events_well_formed(&out, refused);
        }
    }
}

/// The echo of a minimal request, for the answer-side modes.
fn responses_echo() -> responses::Echo {
    responses::ingress_request(br#"{"model":"m","input":"x"}"#)
        .expect("a minimal request translates")
        .echo
}

/// `response.created` and `response.in_progress` first, sequence numbers from 0 rising by
/// one, every event's data a JSON object of its own type, exactly one terminal event, last.
fn responses_events_well_formed(out: &[u8], refused: bool) {
    let text = std::str::from_utf8(out).expect("events are UTF-8");
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    let mut kinds = Vec::with_capacity(events.len());
    for (seq, e) in events.iter().enumerate() {
        let (head, data) = e.split_once("\ndata: ").expect("event and data lines");
        let kind = head.strip_prefix("event: ").expect("an event line");
        let v = parse_json(data.as_bytes()).unwrap_or_else(|| panic!("data is not JSON: {data}"));
        assert_eq!(v.get("type").and_then(|t| t.as_str()), Some(kind));
        assert_eq!(
            v.get("sequence_number").and_then(|n| n.as_u64()),
            Some(seq as u64)
        );
        kinds.push(kind);
    }
    assert!(kinds.len() >= 3, "{kinds:?}");
    assert_eq!(&kinds[..2], ["response.created", "response.in_progress"]);
    let terminal = |k: &str| {
        matches!(
            k,
            "response.completed" | "response.incomplete" | "response.failed"
        )
    };
    assert_eq!(kinds.iter().filter(|k| terminal(k)).count(), 1, "{kinds:?}");
    let last = kinds[kinds.len() - 1];
    assert!(terminal(last), "{kinds:?}");
    assert_eq!(last == "response.failed", refused, "{kinds:?}");
}
