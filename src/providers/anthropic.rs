//! Anthropic Messages wire family (stub until the adapter lands; signatures are final).
#![allow(
    missing_docs,
    clippy::new_without_default,
    clippy::ptr_arg,
    unused_variables
)]
use crate::error::Error;
use crate::providers::Usage;
pub const DEFAULT_MAX_TOKENS: u64 = 4096;
pub const API_VERSION: &str = "2023-06-01";
pub fn encode_request(
    chat: &simd_json::OwnedValue,
    model: &str,
    out: &mut Vec<u8>,
) -> Result<(), Error> {
    Err(Error::internal("stub"))
}
pub fn decode_response(body: &[u8], created: u64, out: &mut Vec<u8>) -> Result<Usage, String> {
    Err("stub".into())
}
#[derive(Debug)]
pub struct StreamDecoder;
impl StreamDecoder {
    pub fn new(created: u64) -> Self {
        StreamDecoder
    }
    pub fn event(&mut self, name: &[u8], data: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        Err("stub".into())
    }
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {}
pub fn ingress_request(body: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error::internal("stub"))
}
pub fn egress_response(openai: &[u8], out: &mut Vec<u8>) -> Result<Usage, String> {
    Err("stub".into())
}
#[derive(Debug)]
pub struct StreamEncoder;
impl StreamEncoder {
    pub fn new() -> Self {
        StreamEncoder
    }
    pub fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        Err("stub".into())
    }
    pub fn finish(&mut self, out: &mut Vec<u8>) {}
    pub fn error(&mut self, err: &Error, out: &mut Vec<u8>) {}
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn error_body(err: &Error) -> Vec<u8> {
    err.body()
}
pub fn count_tokens(body: &[u8]) -> Result<Vec<u8>, Error> {
    Err(Error::internal("stub"))
}
