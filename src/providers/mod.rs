//! Translation between the gateway's canonical form (OpenAI chat completions) and each wire
//! family: the native families translate in their own file ([`anthropic`], [`gemini`]):
//! request encode, response decode, SSE decode/encode and error mapping; the OpenAI family
//! ([`openai`]) reads client bodies and the usage of answers.
//!
//! Invariants: pure functions: no I/O, no clock, no allocation on the request path beyond the
//! translated bytes. Not here: what a provider kind means (`presets`), sending requests
//! (`proxy`, `upstream`).

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub(crate) mod shared;

pub use crate::presets::Family;
