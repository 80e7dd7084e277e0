//! Between the upstream's wire family and the client's: every answer goes upstream form →
//! canonical OpenAI form → client form, using the pure adapters in `providers`. The usage of
//! every answer is captured on the way (from the canonical form), and a usage chunk the gateway
//! asked for on the client's behalf is dropped before the client sees it.
//!
//! Invariants: an OpenAI upstream answering an OpenAI client whose usage chunk is not stripped
//! is relayed byte for byte (the zero-copy path: [`Transcode::passthrough`]); only whole SSE
//! events are fed in; the client's stream is closed once (`[DONE]`, or the client family's
//! terminal events, or an error event), however the upstream ends; the client's terminator
//! follows the upstream's own (`ended`), never an upstream that just stopped.
//! Not here: reading or writing sockets (`relay`), translation rules (`providers`).

use crate::error::{Error, Kind};
use crate::h1::sse;
use crate::providers::openai::openai_usage;
use crate::providers::openai::responses;
use crate::providers::{Family, TranslateError, anthropic, gemini};
use crate::tokens::{self, Usage};

/// Upstream-side decoder state.
#[derive(Debug)]
enum Decoder {
    OpenAi,
    Anthropic(anthropic::StreamDecoder),
    Gemini(gemini::StreamDecoder),
}

/// Client-side encoder state.
#[derive(Debug)]
enum Encoder {
    OpenAi,
    Anthropic(anthropic::StreamEncoder),
    Gemini(gemini::StreamEncoder),
    /// An OpenAI Responses API client on a channel without it (translated from chat).
    Responses(Box<responses::StreamEncoder>),
}

/// One answer's translation.
#[derive(Debug)]
pub struct Transcode {
    upstream: Family,
    client: Family,
    /// The gateway added `stream_options.include_usage`: the usage-only chunk is not the
    /// client's to see.
    strip_usage: bool,
    decoder: Decoder,
    encoder: Encoder,
    usage: Option<Usage>,
    /// Completion text relayed so far, in bytes (content, reasoning, tool-call arguments,
    /// refusals): what the completion is estimated from when the answer carries no usage.
    text_bytes: u64,
    /// Remove `<think>…</think>` blocks from whole answers.
    pub strip_think: bool,
    /// The gateway's own time before the client's head went out (`x-router-overhead-ms`).
    pub overhead: Option<std::time::Duration>,
    /// The upstream signalled its end (`[DONE]`, `message_stop`, a Responses terminal event).
    ended: bool,
    /// The upstream is a native Responses API stream (it ends with `response.completed` and
    /// friends, not `[DONE]`).
    native_responses: bool,
    /// What a translated Responses answer echoes.
    echo: Option<responses::Echo>,
    /// A Gemini embeddings client: `Some(batch)` turns an OpenAI embeddings answer into
    /// Gemini's (`batch`: `{"embeddings":[…]}`, else `{"embedding":…}`).
    gemini_embeddings: Option<bool>,
    /// The Anthropic tool that carries a `response_format` answer (returned as text).
    json_tool: Option<String>,
    created: u64,
    closed: bool,
    data: Vec<u8>,
    mid: Vec<u8>,
}

impl Transcode {
    /// A translation from `upstream` to `client`; `model`, `id` and `created` stamp chunks that
    /// the upstream's family does not carry.
    pub fn new(
        upstream: Family,
        client: Family,
        strip_usage: bool,
        model: &str,
        id: &str,
        created: u64,
    ) -> Transcode {
        Transcode {
            upstream,
            client,
            strip_usage,
            decoder: match upstream {
                Family::OpenAi => Decoder::OpenAi,
                Family::Anthropic => Decoder::Anthropic(anthropic::StreamDecoder::new(created)),
                Family::Gemini => Decoder::Gemini(gemini::StreamDecoder::new(model, id, created)),
            },
            encoder: match client {
                Family::OpenAi => Encoder::OpenAi,
                Family::Anthropic => Encoder::Anthropic(anthropic::StreamEncoder::new()),
                Family::Gemini => Encoder::Gemini(gemini::StreamEncoder::new()),
            },
            usage: None,
            text_bytes: 0,
            strip_think: false,
            overhead: None,
            ended: false,
            closed: false,
            native_responses: false,
            echo: None,
            gemini_embeddings: None,
            json_tool: None,
            created,
            data: Vec::new(),
            mid: Vec::new(),
        }
    }

    /// Answers an OpenAI Responses API client: the canonical answer becomes a `response`
    /// object or its event sequence.
    pub fn answering_responses(mut self, echo: &responses::Echo) -> Transcode {
        self.encoder = Encoder::Responses(Box::new(responses::StreamEncoder::new(
            echo.clone(),
            self.created,
        )));
        self.echo = Some(echo.clone());
        self
    }

    /// Answers a Gemini `:embedContent` (`batch == false`) or `:batchEmbedContents` client from
    /// an OpenAI embeddings answer.
    pub fn answering_gemini_embeddings(mut self, batch: bool) -> Transcode {
        self.gemini_embeddings = Some(batch);
        self
    }

    /// The request asked an Anthropic upstream for a structured answer through the tool
    /// `name` (`anthropic::json_tool`): its input is the answer's text.
    pub fn answering_json(mut self, name: Option<String>) -> Transcode {
        if let Decoder::Anthropic(d) = std::mem::replace(&mut self.decoder, Decoder::OpenAi) {
            self.decoder = Decoder::Anthropic(d.answering_json(name.clone()));
        }
        self.json_tool = name;
        self
    }

    /// The upstream serves the Responses API natively (passthrough; its streams end with a
    /// terminal event, not `[DONE]`).
    pub fn native_responses(mut self) -> Transcode {
        self.native_responses = true;
        self
    }

    /// True when upstream bytes reach the client unchanged: the client speaks the upstream's
    /// family (and, for OpenAI, sees the usage chunk it asked for).
    pub fn passthrough(&self) -> bool {
        self.upstream == self.client
            && !self.strip_usage
            && !matches!(self.encoder, Encoder::Responses(_))
    }

    /// Usage seen so far.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    /// The answer's usage, or (flagged `true`) an estimate when it carried none: the prompt
    /// as the gateway estimated it, the completion from the text relayed (a quarter of its
    /// bytes, the rule the prompt estimate uses). Budgets, quotas and token limits then act on
    /// the estimate instead of on nothing.
    pub(crate) fn usage_or_estimate(&self, prompt_estimate: u32) -> (Usage, bool) {
        match self.usage {
            Some(u) => (u, false),
            None => (
                Usage {
                    prompt: u64::from(prompt_estimate),
                    completion: self.text_bytes.div_ceil(4),
                    ..Usage::default()
                },
                true,
            ),
        }
    }

    /// The upstream's family.
    pub(crate) fn upstream(&self) -> Family {
        self.upstream
    }

    /// True once the upstream's stream said it is complete, in its family's own way: `[DONE]`
    /// (OpenAI), `message_stop` (Anthropic), a candidate with a `finishReason` (Gemini, whose
    /// streams have no terminal event). Only then may the client's terminator follow.
    pub fn ended(&self) -> bool {
        self.ended || matches!(&self.decoder, Decoder::Gemini(d) if d.finished())
    }

    /// Watches passthrough events for the usage, the completion text and the upstream's own
    /// terminator (the bytes go out unchanged). Returns `true` once the upstream sent its
    /// terminal event (`[DONE]`, `message_stop`; a Gemini stream has none and ends with its
    /// framing, see [`Transcode::ended`]). OpenAI events are only scanned; other families' are
    /// decoded (into a scratch buffer nobody sends) for their native usage — cache reads and
    /// writes included — and their end.
    pub fn observe(&mut self, events: &[u8]) -> bool {
        let mut at = 0;
        while let Some(name) = sse::next_event(events, &mut at, &mut self.data) {
            match &mut self.decoder {
                Decoder::OpenAi => {
                    if self.data == b"[DONE]"
                        || (self.native_responses && responses::is_terminal_event(name, &self.data))
                    {
                        self.ended = true;
                        if self.data == b"[DONE]" {
                            continue;
                        }
                    }
                    self.text_bytes += tokens::completion_text_bytes(&self.data);
                    // `"usage"` (not `"usage":{`): some upstreams put a space after the colon.
                    if memchr::memmem::find(&self.data, b"\"usage\"").is_some()
                        && let Some(u) = openai_usage(&self.data)
                    {
                        self.usage = Some(u);
                    }
                }
                Decoder::Anthropic(d) => {
                    if self.data.is_empty() {
                        continue;
                    }
                    self.mid.clear();
                    // An event the decoder cannot read is still relayed as the upstream sent
                    // it: the client speaks this family and judges it itself.
                    if let Ok(done) = d.event(name, &self.data, &mut self.mid) {
                        self.ended |= done;
                    }
                    self.text_bytes += tokens::completion_text_bytes(&self.mid);
                    self.usage = d.usage().or(self.usage);
                }
                Decoder::Gemini(d) => {
                    if self.data.is_empty() {
                        continue;
                    }
                    self.mid.clear();
                    let _ = d.event(&self.data, &mut self.mid);
                    self.text_bytes += tokens::completion_text_bytes(&self.mid);
                    self.usage = d.usage().or(self.usage);
                }
            }
        }
        self.ended
    }

    /// True once the client's stream was closed (terminator or error event sent).
    pub fn closed(&self) -> bool {
        self.closed
    }

    /// Translates whole upstream SSE events, appending the client's bytes to `out`. Returns
    /// `true` once the upstream's stream is complete (the client's stream is then closed);
    /// after that nothing more is produced.
    pub fn events(&mut self, events: &[u8], out: &mut Vec<u8>) -> Result<bool, String> {
        if self.closed {
            return Ok(true);
        }
        let mut at = 0;
        while let Some(name) = sse::next_event(events, &mut at, &mut self.data) {
            if self.data.is_empty() {
                continue;
            }
            let data = std::mem::take(&mut self.data);
            let r = self.event(name, &data, out);
            self.data = data;
            if r? {
                self.ended = true;
                self.close(out);
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn event(
        &mut self,
        name: &[u8],
        data: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<bool, TranslateError> {
        let mut mid = std::mem::take(&mut self.mid);
        mid.clear();
        let r = match &mut self.decoder {
            Decoder::OpenAi => {
                self.mid = mid;
                if data == b"[DONE]" {
                    return Ok(true);
                }
                return self.chunk(data, out).map(|()| false);
            }
            Decoder::Anthropic(d) => d.event(name, data, &mut mid),
            Decoder::Gemini(d) => d.event(data, &mut mid).map(|()| false),
        };
        let r = r.and_then(|done| self.chunks(&mid, out).map(|()| done));
        self.mid = mid;
        // The native counts win over the canonical chunk's (which cannot say cache writes).
        let native = match &self.decoder {
            Decoder::Anthropic(d) => d.usage(),
            Decoder::Gemini(d) => d.usage(),
            Decoder::OpenAi => None,
        };
        if native.is_some() {
            self.usage = native;
        }
        r
    }

    /// Feeds canonical events (`data: {chunk}\n\n` …) to the client encoder.
    fn chunks(&mut self, canonical: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let mut at = 0;
        let mut data = Vec::new();
        while sse::next_event(canonical, &mut at, &mut data).is_some() {
            if data.is_empty() || data == b"[DONE]" {
                continue;
            }
            self.chunk(&data, out)?;
        }
        Ok(())
    }

    /// One canonical chunk (JSON) to the client.
    fn chunk(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), TranslateError> {
        let usage = if memchr::memmem::find(data, b"\"usage\"").is_some() {
            openai_usage(data)
        } else {
            None
        };
        if usage.is_some() {
            self.usage = usage;
        }
        self.text_bytes += tokens::completion_text_bytes(data);
        match &mut self.encoder {
            Encoder::OpenAi => {
                if self.strip_usage && usage.is_some() && is_usage_only(data) {
                    return Ok(());
                }
                sse::write_data(out, data);
                Ok(())
            }
            Encoder::Anthropic(e) => e.chunk(data, out),
            Encoder::Gemini(e) => e.chunk(data, out),
            Encoder::Responses(e) => e.chunk(data, out),
        }
    }

    /// The upstream's framing ended cleanly after the upstream said it was complete
    /// ([`Transcode::ended`]; Gemini streams end with the framing after their `finishReason`):
    /// flushes the decoder and closes the client's stream. A stream that ended without saying
    /// so is a cut (`relay` sends [`Transcode::stream_error`] instead).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.closed {
            return;
        }
        if let Decoder::Gemini(d) = &mut self.decoder {
            let mut mid = std::mem::take(&mut self.mid);
            mid.clear();
            d.finish(&mut mid);
            // A chunk the encoder cannot take is dropped; the stream still closes properly.
            let _ = self.chunks(&mid, out);
            self.mid = mid;
        }
        self.close(out);
    }

    /// Closes the client's stream in its family's way (once).
    fn close(&mut self, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        match &mut self.encoder {
            Encoder::OpenAi => out.extend_from_slice(b"data: [DONE]\n\n"),
            Encoder::Anthropic(e) => e.finish(out),
            Encoder::Gemini(e) => e.finish(out),
            Encoder::Responses(e) => e.finish(out),
        }
    }

    /// A stream that broke off: the client family's error event (the stream then just ends).
    pub fn stream_error(&mut self, err: &Error, out: &mut Vec<u8>) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        match &mut self.encoder {
            Encoder::OpenAi => {
                let mut body = Vec::with_capacity(160);
                err.write_body(&mut body);
                sse::write_data(out, &body);
            }
            Encoder::Anthropic(e) => e.error(err, out),
            Encoder::Gemini(_) => sse::write_data(out, &gemini::error_body(err)),
            Encoder::Responses(e) => e.error(err, out),
        }
    }

    /// A whole 2xx body: decodes it to the canonical form and encodes it for the client.
    /// Passthrough bodies are only read for usage (`out` stays empty: send the original).
    pub fn body(
        &mut self,
        body: &[u8],
        model: &str,
        id: &str,
        created: u64,
        out: &mut Vec<u8>,
    ) -> Result<(), String> {
        let translated_responses = matches!(self.encoder, Encoder::Responses(_));
        if let Some(batch) = self.gemini_embeddings {
            self.usage = openai_usage(body);
            gemini::egress_embeddings(body, batch, out)?;
            return Ok(());
        }
        if self.upstream == Family::OpenAi
            && self.client == Family::OpenAi
            && !self.strip_think
            && !translated_responses
        {
            self.usage = openai_usage(body);
            if self.usage.is_none() {
                self.text_bytes = tokens::completion_text_bytes(body);
            }
            return Ok(());
        }
        if self.upstream == self.client && self.upstream != Family::OpenAi && !translated_responses
        {
            // Same family: relayed as it came; decoded only for its native usage.
            let mut scratch = Vec::new();
            self.usage = Some(match self.upstream {
                Family::Anthropic => anthropic::decode_response(body, created, None, &mut scratch)?,
                _ => gemini::decode_response(body, model, id, created, &mut scratch)?,
            });
            return Ok(());
        }
        let mut canonical = Vec::new();
        let canonical: &[u8] = match self.upstream {
            Family::OpenAi => {
                self.usage = openai_usage(body);
                body
            }
            Family::Anthropic => {
                self.usage = Some(anthropic::decode_response(
                    body,
                    created,
                    self.json_tool.as_deref(),
                    &mut canonical,
                )?);
                &canonical
            }
            Family::Gemini => {
                self.usage = Some(gemini::decode_response(
                    body,
                    model,
                    id,
                    created,
                    &mut canonical,
                )?);
                &canonical
            }
        };
        if self.usage.is_none() {
            self.text_bytes = tokens::completion_text_bytes(canonical);
        }
        let mut stripped = Vec::new();
        let canonical = if self.strip_think {
            strip_think_blocks(canonical, &mut stripped);
            &stripped
        } else {
            canonical
        };
        if let Some(echo) = &self.echo {
            responses::egress_response(canonical, echo, created, out)?;
            return Ok(());
        }
        match self.client {
            Family::OpenAi => out.extend_from_slice(canonical),
            Family::Anthropic => {
                anthropic::egress_response(canonical, out)?;
            }
            Family::Gemini => {
                gemini::egress_response(canonical, out)?;
            }
        }
        Ok(())
    }
}

impl Transcode {
    /// An upstream error body, in the client's family (empty `out`: send the original).
    pub(crate) fn error(&self, status: u16, body: &[u8], out: &mut Vec<u8>) {
        error_body(self.upstream, self.client, status, body, out);
    }
}

/// An upstream error body in the client's family (`out` stays empty when no change is
/// needed: send the original).
pub fn error_body(upstream: Family, client: Family, status: u16, body: &[u8], out: &mut Vec<u8>) {
    if upstream == client {
        return;
    }
    let mut canonical = Vec::new();
    let canonical: &[u8] = match upstream {
        Family::OpenAi => body,
        Family::Anthropic => {
            anthropic::decode_error(status, body, &mut canonical);
            &canonical
        }
        Family::Gemini => {
            gemini::decode_error(status, body, &mut canonical);
            &canonical
        }
    };
    match client {
        Family::OpenAi => out.extend_from_slice(canonical),
        Family::Anthropic => {
            out.extend_from_slice(&anthropic::error_body(&openai_error(status, canonical)))
        }
        Family::Gemini => {
            out.extend_from_slice(&gemini::error_body(&openai_error(status, canonical)))
        }
    }
}

/// Rewrites a `chat.completion` with every choice's content stripped of reasoning blocks
/// (`<think>…</think>`, `<thinking>…</thinking>`); nothing else of the text changes. A body
/// that does not parse is copied as is.
fn strip_think_blocks(canonical: &[u8], out: &mut Vec<u8>) {
    use simd_json::prelude::*;
    let mut copy = canonical.to_vec();
    let Ok(mut v) = simd_json::to_owned_value(&mut copy) else {
        out.extend_from_slice(canonical);
        return;
    };
    let mut changed = false;
    if let Some(choices) = v.get_mut("choices").and_then(|c| c.as_array_mut()) {
        for choice in choices.iter_mut() {
            let Some(content) = choice.get_mut("message").and_then(|m| m.get_mut("content")) else {
                continue;
            };
            if let Some(text) = content.as_str()
                && let Some(clean) = without_think(text)
            {
                *content = clean.into();
                changed = true;
            }
        }
    }
    if changed {
        out.extend_from_slice(v.encode().as_bytes());
    } else {
        out.extend_from_slice(canonical);
    }
}

/// `text` without its reasoning blocks, or `None` when it has none. An unclosed block is kept
/// (it is not known to be reasoning).
pub(crate) fn without_think(text: &str) -> Option<String> {
    const TAGS: [(&str, &str); 2] = [("<think>", "</think>"), ("<thinking>", "</thinking>")];
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let mut changed = false;
    loop {
        let next = TAGS
            .iter()
            .filter_map(|(open, close)| rest.find(open).map(|i| (i, *open, *close)))
            .min_by_key(|(i, _, _)| *i);
        let Some((i, open, close)) = next else {
            break;
        };
        let Some(j) = rest[i + open.len()..].find(close) else {
            break;
        };
        out.push_str(&rest[..i]);
        rest = &rest[i + open.len() + j + close.len()..];
        changed = true;
    }
    out.push_str(rest);
    changed.then_some(out)
}

/// True for a usage-only chunk (the one `include_usage` adds: `choices` empty or absent),
/// judged on the parsed event, whatever its spacing. Runs only on chunks that carry usage.
fn is_usage_only(data: &[u8]) -> bool {
    use simd_json::prelude::*;
    let mut copy = data.to_vec();
    let Ok(v) = simd_json::to_borrowed_value(&mut copy) else {
        return false;
    };
    match v.get("choices") {
        None => true,
        Some(c) => c.is_null() || c.as_array().is_some_and(|a| a.is_empty()),
    }
}

/// The gateway error an OpenAI-form upstream error body describes (message kept).
fn openai_error(status: u16, body: &[u8]) -> Error {
    use simd_json::prelude::*;
    let mut copy = body.to_vec();
    let message = simd_json::to_owned_value(&mut copy)
        .ok()
        .and_then(|v| {
            v.get("error")
                .and_then(|e| e.get("message"))
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("The upstream answered HTTP {status}."));
    let kind = match status {
        401 => Kind::Authentication,
        403 => Kind::Permission,
        429 => Kind::RateLimit,
        s if s >= 500 => Kind::Server,
        _ => Kind::InvalidRequest,
    };
    Error::new(status, kind, "upstream_error", message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasoning_blocks_go_and_every_other_character_stays() {
        assert_eq!(
            without_think("<think>plan\n</think>\n\nAnswer:  42 \n").as_deref(),
            Some("\n\nAnswer:  42 \n")
        );
        assert_eq!(
            without_think("a<thinking>x</thinking>b<think>y</think>c").as_deref(),
            Some("abc")
        );
        assert_eq!(without_think("no tags here"), None);
        assert_eq!(without_think("<think>never closed"), None);
        let mut out = Vec::new();
        strip_think_blocks(
            br#"{"choices":[{"index":0,"message":{"role":"assistant","content":"<think>hm</think>Hi"}}],"usage":{"prompt_tokens":1}}"#,
            &mut out,
        );
        let mut v = out.clone();
        let v = simd_json::to_owned_value(&mut v).unwrap();
        use simd_json::prelude::*;
        assert_eq!(v["choices"][0]["message"]["content"].as_str(), Some("Hi"));
        assert_eq!(v["usage"]["prompt_tokens"].as_u64(), Some(1));
    }

    #[test]
    fn injected_usage_chunk_is_stripped_but_counted() {
        let mut t = Transcode::new(Family::OpenAi, Family::OpenAi, true, "m", "id", 1);
        assert!(!t.passthrough());
        let mut out = Vec::new();
        let up = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
                   data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":2}}\n\n\
                   data: [DONE]\n\n";
        assert_eq!(t.events(up, &mut out), Ok(true));
        assert_eq!(
            out,
            b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n"
        );
        assert_eq!(t.usage().map(|u| (u.prompt, u.completion)), Some((3, 2)));
    }

    #[test]
    fn usage_only_chunks_are_recognised_whatever_their_spacing() {
        let mut t = Transcode::new(Family::OpenAi, Family::OpenAi, true, "m", "id", 1);
        let mut out = Vec::new();
        let up = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\n\
                   data: {\"id\": \"x\", \"choices\": [ ], \"usage\": {\"prompt_tokens\": 3, \"completion_tokens\": 2}}\n\n\
                   data: [DONE]\n\n";
        assert_eq!(t.events(up, &mut out), Ok(true));
        assert_eq!(
            out, b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: [DONE]\n\n",
            "the usage-only chunk written with spaces must not reach a client that did not ask"
        );
        assert_eq!(t.usage().map(|u| (u.prompt, u.completion)), Some((3, 2)));
        // A chunk with content and usage (some providers put usage on the last delta) stays.
        assert!(!is_usage_only(
            br#"{"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":1}}"#
        ));
        assert!(is_usage_only(br#"{"usage":{"prompt_tokens":1}}"#));
    }

    #[test]
    fn an_answer_without_usage_is_estimated_from_its_text() {
        let mut t = Transcode::new(Family::OpenAi, Family::OpenAi, true, "m", "id", 1);
        let mut out = Vec::new();
        let up = b"data: {\"choices\":[{\"delta\":{\"content\":\"0123456789abcdef\"}}]}\n\n\
                   data: {\"choices\":[{\"delta\":{\"tool_calls\":[{\"function\":{\"arguments\":\"{}{}\"}}]}}]}\n\n\
                   data: [DONE]\n\n";
        assert_eq!(t.events(up, &mut out), Ok(true));
        assert_eq!(t.usage(), None);
        let (u, estimated) = t.usage_or_estimate(40);
        assert!(estimated);
        assert_eq!(
            (u.prompt, u.completion),
            (40, 5),
            "20 bytes of text → 5 tokens"
        );
        // Passthrough streams are metered the same way.
        let mut p = Transcode::new(Family::OpenAi, Family::OpenAi, false, "m", "id", 1);
        p.observe(b"data: {\"choices\":[{\"delta\":{\"content\":\"abcdefgh\"}}]}\n\n");
        assert_eq!(
            p.usage_or_estimate(1),
            (
                Usage {
                    prompt: 1,
                    completion: 2,
                    ..Usage::default()
                },
                true
            )
        );
    }

    #[test]
    fn passthrough_observes_usage_without_changing_bytes() {
        let mut t = Transcode::new(Family::OpenAi, Family::OpenAi, false, "m", "id", 1);
        assert!(t.passthrough());
        t.observe(
            b"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":1}}\n\n",
        );
        assert_eq!(t.usage().map(|u| u.prompt), Some(7));
    }
}
