//! Translation between the gateway's canonical form (OpenAI chat completions) and each wire
//! family, in both directions: the gateway speaking to a provider (`upstream`: canonical
//! request → provider request, provider answer, whole or streamed → canonical) and a client
//! speaking to the gateway (`ingress`: client dialect ↔ canonical).
//!
//! ```text
//! providers/
//!   openai/     the canonical form's own family: ingress (the client body reader: features
//!               for routing, byte edits for forwarding), upstream (usage of an answer without
//!               a parse), scan (top-level members of a JSON body), wire (the canonical
//!               vocabulary: finish reasons, usage object, error type and body, envelopes)
//!   anthropic/  Messages API: wire, upstream, ingress (and count_tokens)
//!   gemini/     generateContent: wire, upstream, ingress
//!   shared.rs   what every translating family uses: value access, turn merging, data URLs,
//!               tool-call arguments, SSE data events
//! ```
//!
//! A family's `wire.rs` holds its own vocabulary and tables, mapped onto `openai::wire`'s;
//! nothing is written twice. The families' `mod.rs` re-export what the rest of the crate calls,
//! so callers name `anthropic::encode_request`, `gemini::StreamDecoder`, ….
//!
//! Invariants: pure functions and plain state machines: no I/O, no clock, no globals, no
//! allocation on the request path beyond the translated bytes; nothing panics on any input.
//! A client's mistake is a 400 ([`crate::error::Error`]); an answer that cannot be translated
//! is a [`TranslateError`]. This module sits in the core layer: it uses leaf and model modules
//! (`json`, `error`, `tokens`, `expr`, `strategy`, `presets`) and never the data plane. Not
//! here: what a provider kind means (`presets`), sending requests (`proxy`, `upstream`).

pub mod anthropic;
pub mod gemini;
pub mod openai;
pub(crate) mod shared;

pub use crate::presets::Family;

/// Why an answer could not be translated: an upstream's answer on its way to the canonical
/// form, or the canonical answer on its way to a client. The request side does not use it:
/// a client's mistake there is a 400 ([`crate::error::Error`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    fault: Fault,
    message: String,
}

/// What was wrong with the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Not JSON: a body or one stream event that does not parse.
    Syntax,
    /// JSON the translation cannot use: a member missing or of the wrong type, tool-call
    /// arguments that are not an object.
    Shape,
    /// The answer reports an error itself (an error body with a success status, an `error`
    /// stream event).
    Reported,
}

impl TranslateError {
    /// An answer that is not JSON; `message` says which and the parser's words.
    pub(crate) fn syntax(message: impl Into<String>) -> Self {
        Self::new(Fault::Syntax, message)
    }

    /// An answer of a shape the translation cannot use.
    pub(crate) fn shape(message: impl Into<String>) -> Self {
        Self::new(Fault::Shape, message)
    }

    /// An answer that reports an error; `message` quotes it.
    pub(crate) fn reported(message: impl Into<String>) -> Self {
        Self::new(Fault::Reported, message)
    }

    fn new(fault: Fault, message: impl Into<String>) -> Self {
        TranslateError {
            fault,
            message: message.into(),
        }
    }

    /// What was wrong.
    pub fn fault(&self) -> Fault {
        self.fault
    }

    /// What to log: which answer, and what was wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TranslateError {}

/// The message alone, for callers that carry failures as text (`proxy::transcode`'s API).
impl From<TranslateError> for String {
    fn from(e: TranslateError) -> String {
        e.message
    }
}
