//! The OpenAI chat-completions family: the gateway's canonical form is this family's wire, so
//! its upstream side is the client's bytes with targeted edits and its ingress side reads what
//! routing needs without translating anything.
//!
//! * [`ingress`]: the client's body: features for routing and the edits for forwarding.
//! * `upstream`: the usage of an answer, read without parsing it.
//! * `scan`: where the top-level members of a JSON body sit in its bytes.

pub mod ingress;
pub mod responses;
pub(crate) mod scan;
pub(crate) mod upstream;
pub(crate) mod wire;

pub(crate) use upstream::openai_usage;
