//! Gemini embeddings ingress: a client's `:embedContent` or `:batchEmbedContents` body becomes
//! an OpenAI `/embeddings` request ([`embed_request`]), and the OpenAI answer becomes Gemini's
//! `{"embedding":{"values":[…]}}` or `{"embeddings":[{"values":[…]}, …]}`
//! ([`egress_embeddings`]).
//!
//! Invariants: one Gemini `Content` is one input (the text of its parts, joined by newlines);
//! the answer keeps the requests' order (OpenAI's `index`, not the array order); a part that is
//! not text is a 400, as is a batch whose requests ask for different `outputDimensionality`.
//! `taskType` and `title` have no OpenAI counterpart and are not sent. Not here: routing to an
//! embedding channel, HTTP (the caller passes the URL's model).

use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::prelude::*;

use crate::error::Error;
use crate::providers::TranslateError;
use crate::providers::shared::{bad, parse, parse_client};

use super::wire::{error_message, member};

/// What a Gemini embeddings client is told about an empty body.
const EMPTY_BODY: &str = "The request body is empty; send an EmbedContentRequest with `content` \
     (or a BatchEmbedContentsRequest with `requests`).";

/// The text of one Gemini `Content` (`{"parts":[{"text":…}]}`), its parts joined by newlines.
fn content_text(content: Option<&Json>, at: &str) -> Result<String, Error> {
    let parts = content
        .and_then(|c| c.get("parts"))
        .and_then(|p| p.as_array())
        .ok_or_else(|| {
            bad(
                "invalid_content",
                format!("{at}`content` must be an object with a `parts` array."),
            )
        })?;
    let mut text = String::new();
    for part in parts {
        let Some(t) = part.get_str("text") else {
            return Err(bad(
                "unsupported_content",
                format!("{at}only text parts can be embedded through this gateway."),
            ));
        };
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(t);
    }
    if text.is_empty() {
        return Err(bad(
            "invalid_content",
            format!("{at}`content` has no text to embed."),
        ));
    }
    Ok(text)
}

/// The `outputDimensionality` of one request, if given (a positive integer).
fn dimensions(req: &Json, at: &str) -> Result<Option<u64>, Error> {
    match member(req, "outputDimensionality", "output_dimensionality") {
        None => Ok(None),
        Some(v) if v.is_null() => Ok(None),
        Some(v) => v.as_u64().filter(|&n| n > 0).map(Some).ok_or_else(|| {
            bad(
                "invalid_output_dimensionality",
                format!("{at}`outputDimensionality` must be a positive integer."),
            )
        }),
    }
}

/// Translates an `EmbedContentRequest` (`batch == false`) or a `BatchEmbedContentsRequest`
/// (`batch == true`) for `model` into an OpenAI embeddings body: `input` is one string for a
/// single request and an array (in request order) for a batch; `outputDimensionality`
/// becomes `dimensions`. The per-request `model` of a batch is not read: the URL's wins.
pub fn embed_request(body: &[u8], model: &str, batch: bool) -> Result<Vec<u8>, Error> {
    let v = parse_client(body, EMPTY_BODY, ".")?;
    if v.as_object().is_none() {
        return Err(bad(
            "invalid_body",
            "The request body must be a JSON object.",
        ));
    }
    let (input, dims) = if batch {
        let requests = v
            .get("requests")
            .and_then(|r| r.as_array())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| {
                bad(
                    "invalid_requests",
                    "`requests` must be a non-empty array of EmbedContentRequest objects.",
                )
            })?;
        let mut texts = Vec::with_capacity(requests.len());
        let mut dims = None;
        for (i, r) in requests.iter().enumerate() {
            let at = format!("requests[{i}]: ");
            texts.push(Json::from(content_text(r.get("content"), &at)?));
            let d = dimensions(r, &at)?;
            if i > 0 && d != dims {
                return Err(bad(
                    "invalid_output_dimensionality",
                    "Every request of a batch must ask for the same `outputDimensionality`.",
                ));
            }
            dims = d;
        }
        (Json::from(texts), dims)
    } else {
        let text = content_text(v.get("content"), "")?;
        (Json::from(text), dimensions(&v, "")?)
    };
    let mut req = json!({"model": model, "input": input, "encoding_format": "float"});
    if let (Some(d), Some(o)) = (dims, req.as_object_mut()) {
        o.insert("dimensions".into(), d.into());
    }
    Ok(req.encode().into_bytes())
}

/// Rewrites an OpenAI embeddings answer (`{"data":[{"index","embedding":[…]}]}`) as Gemini's
/// (appended to `out`): `{"embedding":{"values":[…]}}` for a single request, else
/// `{"embeddings":[{"values":[…]}, …]}` in the order of `index`.
pub(crate) fn egress_embeddings(
    openai: &[u8],
    batch: bool,
    out: &mut Vec<u8>,
) -> Result<(), TranslateError> {
    let v = parse(openai)
        .map_err(|e| TranslateError::syntax(format!("OpenAI response is not JSON: {e}")))?;
    if let Some(msg) = error_message(&v) {
        return Err(TranslateError::reported(format!("upstream error: {msg}")));
    }
    let data = v
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| TranslateError::shape("OpenAI embeddings answer has no `data` array"))?;
    let mut items: Vec<(u64, &Json)> = Vec::with_capacity(data.len());
    for (pos, d) in data.iter().enumerate() {
        let values = d
            .get("embedding")
            .filter(|e| e.as_array().is_some())
            .ok_or_else(|| {
                TranslateError::shape(
                    "OpenAI embedding is not an array of numbers (base64 is not translated)",
                )
            })?;
        let index = d
            .get("index")
            .and_then(|i| i.as_u64())
            .unwrap_or(pos as u64);
        items.push((index, values));
    }
    items.sort_by_key(|(i, _)| *i);
    let doc = if batch {
        let list: Vec<Json> = items
            .into_iter()
            .map(|(_, values)| json!({"values": values.clone()}))
            .collect();
        json!({ "embeddings": list })
    } else {
        let (_, values) = items
            .first()
            .ok_or_else(|| TranslateError::shape("OpenAI embeddings answer has no embedding"))?;
        json!({"embedding": {"values": (*values).clone()}})
    };
    out.extend_from_slice(doc.encode().as_bytes());
    Ok(())
}
