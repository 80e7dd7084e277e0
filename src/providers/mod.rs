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
