//! What one mock request asked for and how the mock will misbehave answering it: the
//! `x-mock-*` knobs over [`super::MockConfig`], the request's model, streaming, tool and
//! usage wishes ([`Ask`]), and the answer text every format shares.
//!
//! Invariants: knobs are capped (a stray value never makes the mock allocate without bound);
//! every format estimates prompt tokens the same way.

use std::time::Duration;

use super::{MockConfig, Req};

/// The most content events `x-mock-chunks` can ask for.
pub(super) const MAX_CHUNKS: u64 = 100_000;

/// The per-request behaviour: `x-mock-*` headers over [`MockConfig`].
pub(super) struct Knobs {
    pub(super) latency: Duration,
    pub(super) status: Option<u16>,
    pub(super) retry_after: Option<u32>,
    pub(super) chunks: usize,
    pub(super) interval: Duration,
    pub(super) cut_after: Option<usize>,
    pub(super) hold_after: Option<usize>,
    pub(super) cached: Option<u64>,
    pub(super) cache_write: u64,
    pub(super) fault: Option<BodyFault>,
    /// `x-mock-ratelimit-reset: 2s`: answer with `x-ratelimit-remaining-requests: 0` and this
    /// reset (a provider whose quota the request just spent).
    pub(super) ratelimit_reset: Option<String>,
    /// `x-mock-usage`: how the OpenAI format reports usage.
    pub(super) usage: UsageStyle,
    /// `x-mock-fail-times: N` (or `MockConfig::fail_times`): the first N requests of the
    /// `x-mock-fail-key` counter answer `status` (default 503), later ones answer normally.
    pub(super) fail_times: u64,
    /// `x-mock-fail-key`: which counter `fail_times` counts on (empty: the mock's shared one).
    pub(super) fail_key: String,
    /// `x-mock-status-model: name=503,other=500` over `MockConfig::model_status`: requests for
    /// these models answer that status.
    pub(super) model_status: Vec<(String, u16)>,
    /// `x-mock-encoding`: the `Content-Encoding` every answer is sent with.
    pub(super) encoding: Option<Encoding>,
}

/// `x-mock-encoding`: a `Content-Encoding` sent whatever the request's `Accept-Encoding`
/// says (the gateway asks for `identity`; some providers ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Encoding {
    /// `gzip`: RFC 1952, one member, flushed after every stream event.
    Gzip,
    /// `deflate`: the zlib format (RFC 1950), as HTTP's `deflate` means.
    Deflate,
    /// `br`: the bytes as they are, only labelled Brotli (a coding the gateway must refuse,
    /// so what the bytes are does not matter).
    Br,
}

impl Encoding {
    pub(super) fn parse(v: &str) -> Option<Encoding> {
        match v.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Encoding::Gzip),
            "deflate" => Some(Encoding::Deflate),
            "br" => Some(Encoding::Br),
            _ => None,
        }
    }

    /// The header value.
    pub(super) fn name(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Deflate => "deflate",
            Encoding::Br => "br",
        }
    }
}

/// `x-mock-status-model`: `name=status` pairs, comma-separated; pairs that do not parse are
/// ignored (the status is the text after the last `=`, so a name may hold `=`).
pub(super) fn parse_model_status(v: &str) -> Vec<(String, u16)> {
    v.split(',')
        .filter_map(|pair| {
            let (name, status) = pair.trim().rsplit_once('=')?;
            let status = status.trim().parse::<u16>().ok()?;
            let name = name.trim();
            (!name.is_empty() && (100..=599).contains(&status)).then(|| (name.to_string(), status))
        })
        .collect()
}

/// `x-mock-usage`: how (whether) OpenAI-format answers carry usage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) enum UsageStyle {
    /// As OpenAI does: in whole answers, and in a usage-only chunk when asked.
    #[default]
    Normal,
    /// `none`: never (a compatible provider that ignores `stream_options`).
    None,
    /// `spaced`: the usage-only chunk written with whitespace (`"choices": [ ]`).
    Spaced,
}

/// `x-mock-fault`: a broken answer body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyFault {
    /// `garbage`: a 200 whose JSON body (or every SSE event) is not JSON.
    Garbage,
    /// `truncate`: a 200 whose `Content-Length` promises twice what is sent before the close.
    Truncate,
    /// `huge:N`: a valid answer padded to N bytes (capped at 256 MiB).
    Huge(usize),
    /// `no-done`: a stream whose HTTP framing ends cleanly but without the format's own
    /// terminator (no `data: [DONE]`, no `message_stop`, no final `finishReason`).
    NoDone,
    /// `truncated-json`: a non-streamed 200 whose framing is exact (`Content-Length` is what
    /// is sent) but whose JSON is the first half of the answer.
    TruncatedJson,
}

impl BodyFault {
    pub(super) fn parse(v: &str) -> Option<BodyFault> {
        match v {
            "garbage" => Some(BodyFault::Garbage),
            "truncate" => Some(BodyFault::Truncate),
            "no-done" => Some(BodyFault::NoDone),
            "truncated-json" => Some(BodyFault::TruncatedJson),
            _ => v
                .strip_prefix("huge:")
                .and_then(|n| n.parse::<usize>().ok())
                .map(|n| BodyFault::Huge(n.min(256 << 20))),
        }
    }
}

impl Knobs {
    pub(super) fn read(req: &Req, cfg: &MockConfig) -> Knobs {
        Knobs {
            latency: req
                .header_num("x-mock-latency-ms")
                .map(Duration::from_millis)
                .unwrap_or(cfg.latency),
            status: req
                .header_num("x-mock-status")
                .and_then(|n| u16::try_from(n).ok())
                .or(cfg.status),
            retry_after: req
                .header_num("x-mock-retry-after")
                .and_then(|n| u32::try_from(n).ok())
                .or(cfg.retry_after),
            // Capped: a stray huge value must not make the mock allocate without bound.
            chunks: req.header_num("x-mock-chunks").map_or(cfg.chunks, |n| {
                usize::try_from(n.min(MAX_CHUNKS)).unwrap_or(1)
            }),
            interval: req
                .header_num("x-mock-interval-ms")
                .map(Duration::from_millis)
                .unwrap_or(cfg.interval),
            cut_after: req
                .header_num("x-mock-cut-after")
                .and_then(|n| usize::try_from(n).ok()),
            hold_after: req
                .header_num("x-mock-hold-after")
                .and_then(|n| usize::try_from(n).ok()),
            cached: req.header_num("x-mock-cached-tokens"),
            cache_write: req.header_num("x-mock-cache-write-tokens").unwrap_or(0),
            fault: req.header("x-mock-fault").and_then(BodyFault::parse),
            ratelimit_reset: req.header("x-mock-ratelimit-reset").map(str::to_string),
            usage: match req.header("x-mock-usage") {
                Some("none") => UsageStyle::None,
                Some("spaced") => UsageStyle::Spaced,
                _ => UsageStyle::Normal,
            },
            fail_times: req
                .header_num("x-mock-fail-times")
                .unwrap_or(cfg.fail_times),
            fail_key: req.header("x-mock-fail-key").unwrap_or("").to_string(),
            model_status: req
                .header("x-mock-status-model")
                .map(parse_model_status)
                .unwrap_or_else(|| cfg.model_status.clone()),
            encoding: req.header("x-mock-encoding").and_then(Encoding::parse),
        }
    }

    /// The status injected for requests naming `model` (with or without Gemini's `models/`).
    pub(super) fn status_for(&self, model: &str) -> Option<u16> {
        let bare = model.strip_prefix("models/").unwrap_or(model);
        self.model_status
            .iter()
            .find(|(m, _)| m.strip_prefix("models/").unwrap_or(m) == bare)
            .map(|(_, s)| *s)
    }
}

/// What a chat request asked for, in any format.
#[derive(Debug, Clone, Default)]
pub(super) struct Ask {
    pub(super) model: String,
    pub(super) stream: bool,
    pub(super) include_usage: bool,
    /// The tool to call: the first one declared, unless the conversation already ends with a
    /// tool result (then the mock answers in text, as a model would).
    pub(super) tool: Option<String>,
    pub(super) last_user: String,
    pub(super) prompt_tokens: u64,
    /// The request's output cap (Anthropic `max_tokens`, Gemini `maxOutputTokens`); a text
    /// answer longer than this stops early with the format's "max tokens" reason. The OpenAI
    /// path leaves it unset, as it always has.
    pub(super) max_tokens: Option<u64>,
    /// Prompt tokens read from a cache (`x-mock-cached-tokens`); `Some` even when 0, so the
    /// OpenAI path only adds `prompt_tokens_details` when asked.
    pub(super) cached: Option<u64>,
    /// Prompt tokens written to a cache (`x-mock-cache-write-tokens`).
    pub(super) cache_write: u64,
    /// `x-mock-usage` (OpenAI format only).
    pub(super) usage: UsageStyle,
    /// The request asked for structured output: the answer is this JSON text (a value its
    /// schema accepts) instead of the greeting.
    pub(super) json: Option<String>,
}

impl Ask {
    /// Every format estimates input tokens alike: a quarter of the body bytes, at least 1.
    pub(super) fn estimate_prompt(body: &[u8]) -> u64 {
        (body.len() as u64 / 4).max(1)
    }

    /// Applies the cache knobs; the prompt grows to hold them, because every format counts
    /// cached tokens as part of the input.
    pub(super) fn with_cache(mut self, cached: Option<u64>, cache_write: u64) -> Ask {
        self.cached = cached;
        self.cache_write = cache_write;
        let floor = cached.unwrap_or(0).saturating_add(cache_write);
        self.prompt_tokens = self.prompt_tokens.max(floor);
        self
    }

    /// The text answer's pieces (one per stream event) and whether the output cap cut it.
    pub(super) fn text_pieces(&self, n: usize) -> (Vec<String>, bool) {
        let mut w = words(self, n);
        let cap = self.max_tokens.map_or(usize::MAX, |m| {
            usize::try_from(m.max(1)).unwrap_or(usize::MAX)
        });
        let capped = w.len() > cap;
        w.truncate(cap);
        (w, capped)
    }
}

/// The arguments every mock tool call carries, whole …
pub(super) const TOOL_ARGS: &str = "{\"location\": \"Paris\"}";
/// … and in the pieces streams send them in (at least two, so clients must reassemble).
pub(super) const TOOL_ARG_PARTS: [&str; 2] = ["{\"location\"", ": \"Paris\"}"];
/// The completion tokens a tool call counts for.
pub(super) const TOOL_TOKENS: u64 = 8;

/// Whether `model` is served (an empty list serves any; Gemini callers may prefix `models/`).
pub(super) fn serves(cfg: &MockConfig, model: &str) -> bool {
    let bare = model.strip_prefix("models/").unwrap_or(model);
    cfg.models.is_empty()
        || cfg
            .models
            .iter()
            .any(|m| m == model || m.strip_prefix("models/").unwrap_or(m) == bare)
}

pub(super) fn words(ask: &Ask, n: usize) -> Vec<String> {
    if let Some(json) = &ask.json {
        // In up to n pieces, split on character boundaries, so streams reassemble it.
        let chars: Vec<char> = json.chars().collect();
        let n = n.clamp(1, chars.len().max(1));
        let size = chars.len().div_ceil(n).max(1);
        return chars.chunks(size).map(|c| c.iter().collect()).collect();
    }
    let base = format!(
        "Hello from the smart-ai-router mock upstream ({}). You said: {}",
        ask.model, ask.last_user
    );
    let mut words: Vec<String> = base.split(' ').map(|w| format!("{w} ")).collect();
    while words.len() < n {
        words.push("lorem ".into());
    }
    words.truncate(n.max(1));
    words
}
