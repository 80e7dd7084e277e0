//! The Gemini family's tests: helpers shared by both directions, the round trip, and
//! robustness; each direction's own tests sit in `upstream` and `ingress`.

use super::embed::*;
use super::ingress::*;
use super::upstream::*;
use super::wire::*;
use crate::error::{Error, Kind};
use crate::providers::Fault;
use crate::providers::openai::wire::kind_for_status;
use crate::providers::shared::parse;
use crate::tokens::Usage;
use simd_json::OwnedValue as Json;
use simd_json::json;
use simd_json::prelude::*;

fn j(bytes: &[u8]) -> Json {
    parse(bytes).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(bytes)))
}

fn js(s: &str) -> Json {
    j(s.as_bytes())
}

fn encode(chat: &str) -> Json {
    let mut out = Vec::new();
    encode_request(&js(chat), &mut out).unwrap();
    j(&out)
}

fn encode_err(chat: &str) -> Error {
    let mut out = Vec::new();
    encode_request(&js(chat), &mut out).unwrap_err()
}

/// Splits SSE output into its JSON payloads, checking every event's framing.
fn events(out: &[u8], end: &str) -> Vec<Json> {
    let text = std::str::from_utf8(out).unwrap();
    assert!(text.is_empty() || text.ends_with(end), "{text:?}");
    text.split(end)
        .filter(|e| !e.is_empty())
        .map(|e| js(e.strip_prefix("data: ").unwrap()))
        .collect()
}

mod embed;
mod ingress;
mod upstream;

#[test]
fn round_trip_openai_to_gemini_and_back() {
    let original = js(r#"{"model":"gemini-2.0-flash","messages":[
            {"role":"system","content":"You are a weather bot."},
            {"role":"user","content":[{"type":"text","text":"Weather here?"},
                {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]},
            {"role":"assistant","content":null,"tool_calls":[
                {"id":"call_0","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"},
                 "extra_content":{"google":{"thought_signature":"c2ln"}}},
                {"id":"call_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Rome\"}"}}]},
            {"role":"tool","tool_call_id":"call_0","content":"{\"temp\":21}"},
            {"role":"tool","tool_call_id":"call_1","content":"sunny"},
            {"role":"assistant","content":"Paris 21, Rome sunny."},
            {"role":"user","content":"Thanks!"}],
          "temperature":0.2,"max_tokens":256,"stop":["END"],
          "tools":[{"type":"function","function":{"name":"get_weather","description":"Current weather",
            "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],
          "tool_choice":"required"}"#);
    let mut gemini = Vec::new();
    encode_request(&original, &mut gemini).unwrap();
    let back = j(&ingress_request(&gemini, "gemini-2.0-flash", false).unwrap());
    // Ids do not travel (Gemini pairs calls and results by name); ingress re-mints them as
    // `call_<n>` in call order, which is how the original named them. The first call
    // carries its own signature, so no skip-validation one is added: the only difference
    // from the original is the explicit `stream`.
    let mut want = original.clone();
    if let Some(o) = want.as_object_mut() {
        o.insert("stream".into(), false.into());
    }
    assert_eq!(back, want);
}

/// Truncations and corruptions of valid bodies must come back as errors, never panics.
#[test]
fn no_input_panics() {
    let samples: [&[u8]; 6] = [
            br#"{"contents":[{"role":"model","parts":[{"functionCall":{"name":"f","args":{"a":[1,{"b":null}]}},"thoughtSignature":"s"}]},{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"x":1}}},{"inlineData":{"mimeType":"image/png","data":"AA=="}}]}],"tools":[{"functionDeclarations":[{"name":"f","parameters":{"type":"OBJECT","properties":{"a":{"type":"ARRAY","items":{"type":"STRING"}}}}}]}],"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f","g"]}}}"#,
            br#"{"candidates":[{"content":{"parts":[{"text":"a","thought":true},{"functionCall":{"name":"f","args":{}}}]},"finishReason":"STOP","index":0}],"usageMetadata":{"promptTokenCount":1,"candidatesTokenCount":2},"promptFeedback":{"blockReason":"SAFETY"}}"#,
            br#"{"id":"c","model":"m","choices":[{"index":0,"delta":{"content":"x","tool_calls":[{"index":0,"id":"i","function":{"name":"f","arguments":"{}"}}]},"message":{"content":"y","tool_calls":[{"id":"i","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1}}"#,
            br#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:;base64,"}},{"type":"text","text":"\u00e9"}]},{"role":"assistant","tool_calls":[{"id":"i","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"i","content":"{\"a\":1}"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":["object","null"],"properties":{"a":{"const":1}}}}}],"tool_choice":{"type":"function"},"stop":[1]}"#,
            br#"{"requests":[{"model":"models/m","content":{"parts":[{"text":"a"},{"text":"b"}]},"outputDimensionality":8},{"content":{"parts":[{"text":"c"}]},"outputDimensionality":8}],"generateContentRequest":{"contents":[{"parts":[{"text":"x"}]}]}}"#,
            br#"{"object":"list","data":[{"object":"embedding","index":1,"embedding":[0.5,-1e-3]},{"index":0,"embedding":[1,2]}],"usage":{"prompt_tokens":3,"total_tokens":3}}"#,
        ];
    let mut variants: Vec<Vec<u8>> = Vec::new();
    for s in samples {
        for cut in 0..=s.len() {
            variants.push(s.get(..cut).unwrap_or(s).to_vec());
        }
        for (k, _) in s.iter().enumerate().step_by(7) {
            for b in [b'"', b'{', b']', b'0', 0xff] {
                let mut v = s.to_vec();
                if let Some(x) = v.get_mut(k) {
                    *x = b;
                }
                variants.push(v);
            }
        }
    }
    for v in &variants {
        let mut out = Vec::new();
        let _ = ingress_request(v, "m", true);
        let _ = count_tokens_request(v, "m");
        let _ = embed_request(v, "m", true);
        let _ = embed_request(v, "m", false);
        let _ = egress_embeddings(v, true, &mut out);
        let _ = egress_embeddings(v, false, &mut out);
        let _ = decode_response(v, "m", "i", 0, &mut out);
        let _ = egress_response(v, &mut out);
        decode_error(500, v, &mut out);
        let mut d = StreamDecoder::new("m", "i", 0);
        let _ = d.event(v, &mut out);
        d.finish(&mut out);
        let mut e = StreamEncoder::new();
        let _ = e.chunk(v, &mut out);
        e.finish(&mut out);
        if let Ok(chat) = parse(v) {
            let _ = encode_request(&chat, &mut out);
        }
    }
}
