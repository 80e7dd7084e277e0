//! The Google Gemini family (Generative Language API v1beta, `models/{model}:generateContent`
//! and `:streamGenerateContent?alt=sse`): pure translation between the gateway's canonical form
//! (OpenAI chat completions) and Gemini's bodies, in both directions.
//!
//! * `upstream`: the gateway calling a Gemini provider: [`encode_request`],
//!   `decode_response`, `StreamDecoder`, `decode_error`.
//! * `ingress`: a Gemini-format client calling the gateway: [`ingress_request`],
//!   `egress_response`, `StreamEncoder`.
//! * `embed`: a Gemini-format client's `:embedContent`/`:batchEmbedContents` as an OpenAI
//!   embeddings request ([`embed_request`]) and the answer back (`egress_embeddings`).
//! * `wire`: what both share: member spellings, usage metadata, finish reasons, status
//!   names and `error_body`, schemas, function calls.
//!
//! Invariants: pure functions and plain state machines: no I/O, no clock, no globals. Bodies
//! come from clients and upstreams, so nothing here panics on any input: bad input is a 400 on
//! the request side and an `Err` on the answer side. Canonical-form convention: Gemini's
//! `thoughtSignature` on a function call travels in the OpenAI tool call as
//! `extra_content.google.thought_signature` (the spelling Google's own OpenAI-compatible
//! endpoint uses), so multi-turn tool use with thinking models survives a round trip through
//! OpenAI-shaped clients. Not here: URLs, auth headers, picking the upstream, pricing.

pub(crate) mod embed;
pub(crate) mod ingress;
pub(crate) mod upstream;
pub(crate) mod wire;

pub(crate) use embed::egress_embeddings;
pub use embed::embed_request;
pub(crate) use ingress::{StreamEncoder, egress_response};
pub use ingress::{count_tokens_request, ingress_request};
pub use upstream::encode_request;
pub(crate) use upstream::{StreamDecoder, decode_error, decode_response};
pub(crate) use wire::{error_body, model_json};

#[cfg(test)]
mod tests;
