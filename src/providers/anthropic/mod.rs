//! The Anthropic Messages family (`/v1/messages`): pure translation between the gateway's
//! canonical form (OpenAI chat completions) and Anthropic's Messages API, in both directions.
//!
//! * `upstream`: the gateway speaking to an Anthropic provider: [`encode_request`],
//!   `decode_response`, `StreamDecoder`, `decode_error`.
//! * `ingress`: an Anthropic-format client speaking to the gateway: [`ingress_request`],
//!   `egress_response`, `StreamEncoder`, [`count_tokens`].
//! * `wire`: what both share: usage counters, stop reasons, the error type for a status and
//!   `error_body`, SSE event framing.
//!
//! Invariants: no I/O, no clock, no globals: time comes in as `created`, bytes in and out are
//! buffers. Nothing panics on any input: bodies come from clients and upstreams, so every field
//! is read through `Option` and a bad shape becomes a 400 (client mistakes) or an `Err`
//! (upstream mistakes). Not here: HTTP, headers, routing, retries (`proxy`, `upstream`).

pub(crate) mod ingress;
pub(crate) mod upstream;
pub(crate) mod wire;

pub(crate) use ingress::{StreamEncoder, egress_response};
pub use ingress::{count_tokens, ingress_request};
pub use upstream::encode_request;
pub(crate) use upstream::{StreamDecoder, decode_error, decode_response, json_tool};
pub(crate) use wire::error_body;

#[cfg(test)]
mod tests;
