//! Google Gemini wire family (stub until the adapter lands; signatures are final).
#![allow(
    missing_docs,
    clippy::new_without_default,
    clippy::ptr_arg,
    unused_variables
)]
use crate::error::Error;
use crate::providers::Usage;
pub fn encode_request(chat: &simd_json::OwnedValue, out: &mut Vec<u8>) -> Result<(), Error> {
    Err(Error::internal("stub"))
}
pub fn decode_response(
    body: &[u8],
    model: &str,
    id: &str,
    created: u64,
    out: &mut Vec<u8>,
) -> Result<Usage, String> {
    Err("stub".into())
}
#[derive(Debug)]
pub struct StreamDecoder;
impl StreamDecoder {
    pub fn new(model: &str, id: &str, created: u64) -> Self {
        StreamDecoder
    }
    pub fn event(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        Err("stub".into())
    }
    pub fn finish(&mut self, out: &mut Vec<u8>) {}
    pub fn finished(&self) -> bool {
        false
    }
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn decode_error(status: u16, body: &[u8], out: &mut Vec<u8>) {}
pub fn ingress_request(body: &[u8], model: &str, stream: bool) -> Result<Vec<u8>, Error> {
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
    pub fn usage(&self) -> Option<Usage> {
        None
    }
}
pub fn error_body(err: &Error) -> Vec<u8> {
    err.body()
}
