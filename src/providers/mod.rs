//! Provider wire families and presets: what `kind = "…"` means for a provider's base URL, chat
//! path and auth header, and which environment variables build channels when no config exists.
//!
//! Invariants: pure data and pure functions: no I/O, no clock, no allocation on the request
//! path. A preset only fills what the config left out; the config always wins.
//! Native wire families translate in their own file ([`anthropic`], [`gemini`]): request encode,
//! response decode, SSE decode/encode and error mapping, all pure.
//! Not here: sending requests (`proxy`, `upstream`).

pub mod anthropic;
pub mod gemini;

/// The wire format a provider speaks; picks the adapter that translates to and from the
/// gateway's canonical form (OpenAI chat completions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    /// OpenAI chat completions (and every compatible preset): bodies pass through.
    OpenAi,
    /// Anthropic Messages (`/v1/messages`).
    Anthropic,
    /// Google Gemini (`generateContent` / `streamGenerateContent`).
    Gemini,
}

/// Token usage of one answer, in OpenAI's terms: `prompt` counts every input token, cached
/// ones included; `cached` (read from a prompt cache) and `cache_write` (written to one) are
/// parts of `prompt`, priced differently.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// All input tokens.
    pub prompt: u64,
    /// Output tokens (reasoning included).
    pub completion: u64,
    /// Input tokens served from a prompt cache.
    pub cached: u64,
    /// Input tokens written to a prompt cache.
    pub cache_write: u64,
}

/// How a provider expects the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthStyle {
    /// `Authorization: Bearer <key>` (OpenAI and most compatibles).
    Bearer,
    /// `x-api-key: <key>` (Anthropic style).
    XApiKey,
    /// `api-key: <key>` (Azure OpenAI style).
    ApiKey,
    /// `x-goog-api-key: <key>` (Google Gemini style).
    GoogApiKey,
}

impl AuthStyle {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bearer" => Some(AuthStyle::Bearer),
            "x-api-key" => Some(AuthStyle::XApiKey),
            "api-key" => Some(AuthStyle::ApiKey),
            "x-goog-api-key" => Some(AuthStyle::GoogApiKey),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStyle::Bearer => "bearer",
            AuthStyle::XApiKey => "x-api-key",
            AuthStyle::ApiKey => "api-key",
            AuthStyle::GoogApiKey => "x-goog-api-key",
        }
    }

    /// The header name carrying the key.
    pub fn header(self) -> &'static str {
        match self {
            AuthStyle::Bearer => "Authorization",
            AuthStyle::XApiKey => "x-api-key",
            AuthStyle::ApiKey => "api-key",
            AuthStyle::GoogApiKey => "x-goog-api-key",
        }
    }
}

/// A known provider kind and the defaults it brings.
#[derive(Debug, Clone, Copy)]
pub struct Preset {
    /// The `kind` spelling in config.
    pub kind: &'static str,
    /// Default base URL (empty: the config must give one).
    pub base_url: &'static str,
    /// Wire family (which adapter translates requests and answers).
    pub family: Family,
    /// Path appended to the base URL for chat completions; `{model}` is replaced by the
    /// upstream model id (Gemini, Azure deployments).
    pub chat_path: &'static str,
    /// Path of the model list under the base URL.
    pub models_path: &'static str,
    /// Whether `stream_options.include_usage` may be added to streamed OpenAI-family requests
    /// (some compatibles reject unknown fields).
    pub stream_usage: bool,
    /// Default auth header style.
    pub auth: AuthStyle,
    /// Environment variable holding a key, for config-less start.
    pub env_key: Option<&'static str>,
    /// Well-known chat models served when the channel comes from the environment (until
    /// discovery replaces the list).
    pub env_models: &'static [&'static str],
    /// Extra headers the provider wants on every request.
    pub headers: &'static [(&'static str, &'static str)],
}

const CHAT: &str = "/chat/completions";
const MODELS: &str = "/models";

/// Every OpenAI-compatible preset. Order matters for config-less start: channels are built in
/// this order and, at equal priority, tried in it.
pub const PRESETS: &[Preset] = &[
    Preset {
        kind: "openai",
        base_url: "https://api.openai.com/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("OPENAI_API_KEY"),
        env_models: &[
            "gpt-4o",
            "gpt-4o-mini",
            "gpt-4.1",
            "gpt-4.1-mini",
            "gpt-4.1-nano",
            "o3-mini",
            "o4-mini",
        ],
        headers: &[],
    },
    Preset {
        kind: "anthropic",
        base_url: "https://api.anthropic.com/v1",
        family: Family::Anthropic,
        chat_path: "/messages",
        models_path: MODELS,
        stream_usage: false,
        auth: AuthStyle::XApiKey,
        env_key: Some("ANTHROPIC_API_KEY"),
        env_models: &[
            "claude-sonnet-4-20250514",
            "claude-opus-4-20250514",
            "claude-3-7-sonnet-20250219",
            "claude-3-5-haiku-20241022",
        ],
        headers: &[("anthropic-version", "2023-06-01")],
    },
    Preset {
        kind: "gemini",
        base_url: "https://generativelanguage.googleapis.com/v1beta",
        family: Family::Gemini,
        chat_path: "/models/{model}:generateContent",
        models_path: "/models?pageSize=1000",
        stream_usage: false,
        auth: AuthStyle::GoogApiKey,
        env_key: Some("GEMINI_API_KEY"),
        env_models: &["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"],
        headers: &[],
    },
    Preset {
        kind: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("OPENROUTER_API_KEY"),
        env_models: &[
            "openai/gpt-4o-mini",
            "openai/gpt-4o",
            "anthropic/claude-3.5-sonnet",
            "google/gemini-2.0-flash-001",
            "meta-llama/llama-3.3-70b-instruct",
            "deepseek/deepseek-chat",
            "qwen/qwen-2.5-72b-instruct",
        ],
        headers: &[
            (
                "HTTP-Referer",
                "https://github.com/smart-ai-router/smart-ai-router",
            ),
            ("X-Title", "smart-ai-router"),
        ],
    },
    Preset {
        kind: "groq",
        base_url: "https://api.groq.com/openai/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("GROQ_API_KEY"),
        env_models: &[
            "llama-3.3-70b-versatile",
            "llama-3.1-8b-instant",
            "gemma2-9b-it",
            "qwen-qwq-32b",
        ],
        headers: &[],
    },
    Preset {
        kind: "deepseek",
        base_url: "https://api.deepseek.com/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("DEEPSEEK_API_KEY"),
        env_models: &["deepseek-chat", "deepseek-reasoner"],
        headers: &[],
    },
    Preset {
        kind: "siliconflow",
        base_url: "https://api.siliconflow.cn/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("SILICONFLOW_API_KEY"),
        env_models: &[
            "Qwen/Qwen2.5-7B-Instruct",
            "Qwen/Qwen2.5-72B-Instruct",
            "deepseek-ai/DeepSeek-V3",
            "THUDM/glm-4-9b-chat",
        ],
        headers: &[],
    },
    Preset {
        kind: "mistral",
        base_url: "https://api.mistral.ai/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: false,
        auth: AuthStyle::Bearer,
        env_key: Some("MISTRAL_API_KEY"),
        env_models: &[
            "mistral-small-latest",
            "mistral-large-latest",
            "codestral-latest",
        ],
        headers: &[],
    },
    Preset {
        kind: "together",
        base_url: "https://api.together.xyz/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("TOGETHER_API_KEY"),
        env_models: &[
            "meta-llama/Llama-3.3-70B-Instruct-Turbo",
            "Qwen/Qwen2.5-72B-Instruct-Turbo",
        ],
        headers: &[],
    },
    Preset {
        kind: "fireworks",
        base_url: "https://api.fireworks.ai/inference/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("FIREWORKS_API_KEY"),
        env_models: &["accounts/fireworks/models/llama-v3p3-70b-instruct"],
        headers: &[],
    },
    Preset {
        kind: "xai",
        base_url: "https://api.x.ai/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("XAI_API_KEY"),
        env_models: &["grok-3", "grok-3-mini"],
        headers: &[],
    },
    Preset {
        kind: "perplexity",
        base_url: "https://api.perplexity.ai",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: false,
        auth: AuthStyle::Bearer,
        env_key: Some("PERPLEXITY_API_KEY"),
        env_models: &["sonar", "sonar-pro"],
        headers: &[],
    },
    Preset {
        kind: "moonshot",
        base_url: "https://api.moonshot.cn/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("MOONSHOT_API_KEY"),
        env_models: &["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k"],
        headers: &[],
    },
    Preset {
        kind: "zhipu",
        base_url: "https://open.bigmodel.cn/api/paas/v4",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("ZHIPU_API_KEY"),
        env_models: &["glm-4-flash", "glm-4-plus"],
        headers: &[],
    },
    Preset {
        kind: "doubao",
        base_url: "https://ark.cn-beijing.volces.com/api/v3",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("ARK_API_KEY"),
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "volcengine",
        base_url: "https://ark.cn-beijing.volces.com/api/v3",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "dashscope",
        base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: Some("DASHSCOPE_API_KEY"),
        env_models: &["qwen-plus", "qwen-turbo", "qwen-max"],
        headers: &[],
    },
    Preset {
        kind: "azure",
        base_url: "",
        family: Family::OpenAi,
        chat_path: "/openai/deployments/{model}/chat/completions?api-version=2024-10-21",
        models_path: "/openai/models?api-version=2024-10-21",
        stream_usage: true,
        auth: AuthStyle::ApiKey,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "lmstudio",
        base_url: "http://127.0.0.1:1234/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: false,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        family: Family::OpenAi,
        chat_path: CHAT,
        models_path: MODELS,
        stream_usage: true,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
];

/// Whether a provider kind serves OpenAI's Responses API (`/responses`).
pub fn speaks_responses(kind: &str) -> bool {
    matches!(kind, "openai" | "openrouter" | "xai")
}

/// Looks up a preset by its `kind` spelling.
pub fn preset(kind: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.kind == kind)
}

/// All kind spellings, for error messages.
pub fn kinds() -> impl Iterator<Item = &'static str> {
    PRESETS.iter().map(|p| p.kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_unique_and_well_formed() {
        let mut seen = std::collections::HashSet::new();
        for p in PRESETS {
            assert!(seen.insert(p.kind), "duplicate preset {}", p.kind);
            assert!(p.chat_path.starts_with('/'), "{}", p.kind);
            assert!(p.models_path.starts_with('/'), "{}", p.kind);
            assert_eq!(
                p.chat_path.contains("{model}"),
                matches!(p.family, Family::Gemini) || p.kind == "azure",
                "{}",
                p.kind
            );
            assert!(
                p.base_url.is_empty()
                    || p.base_url.starts_with("https://")
                    || p.base_url.starts_with("http://127.0.0.1"),
                "{}",
                p.kind
            );
            assert!(!p.base_url.ends_with('/'), "{}", p.kind);
        }
        assert!(PRESETS.len() >= 17);
    }

    #[test]
    fn version_paths_are_kept_not_forced_to_v1() {
        assert_eq!(
            preset("zhipu").unwrap().base_url,
            "https://open.bigmodel.cn/api/paas/v4"
        );
        assert_eq!(
            preset("doubao").unwrap().base_url,
            "https://ark.cn-beijing.volces.com/api/v3"
        );
    }
}

/// The usage of an OpenAI-form document (a `chat.completion`, a usage chunk, a Responses API
/// answer): reads the last key-position `"usage":{…}` object only, without parsing the document
/// or allocating. `None` when there is none (or it is `null`).
pub fn openai_usage(doc: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\":";
    // The usage object sits near the end of a document: walk back over `u`s (cheaper than
    // building a substring searcher for one short scan).
    for u in memchr::memrchr_iter(b'u', doc) {
        let Some(i) = u.checked_sub(1) else {
            break;
        };
        if !doc[i..].starts_with(KEY) {
            continue;
        }
        // A quote inside a JSON string is always escaped: `"usage":` preceded by a backslash
        // is text, not a key.
        if i > 0 && doc[i - 1] == b'\\' {
            continue;
        }
        let rest = &doc[i + KEY.len()..];
        let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
        let Some(len) = object_len(&rest[skip..]) else {
            continue;
        };
        let obj = &rest[skip..skip + len];
        // Chat and completions say prompt/completion; the Responses API says input/output.
        let prompt =
            number_at(obj, b"\"prompt_tokens\":").or_else(|| number_at(obj, b"\"input_tokens\":"));
        let completion = number_at(obj, b"\"completion_tokens\":")
            .or_else(|| number_at(obj, b"\"output_tokens\":"));
        if prompt.is_none() && completion.is_none() {
            return None;
        }
        let prompt = prompt.unwrap_or(0);
        let cached = number_at(obj, b"\"cached_tokens\":").unwrap_or(0);
        return Some(Usage {
            prompt,
            completion: completion.unwrap_or(0),
            cached: cached.min(prompt),
            cache_write: 0,
        });
    }
    None
}

/// Bytes of completion text in an OpenAI-form answer or chunk: the string values of
/// `content`, `reasoning_content`, `reasoning`, `arguments`, `refusal` and `text` members, at
/// any depth (escapes counted as written). One pass over the document's strings; used to
/// estimate the completion of an answer that carries no usage.
pub fn completion_text_bytes(doc: &[u8]) -> u64 {
    const KEYS: [&[u8]; 6] = [
        b"content",
        b"reasoning_content",
        b"reasoning",
        b"arguments",
        b"refusal",
        b"text",
    ];
    let skip_ws = |mut j: usize| {
        while doc.get(j).is_some_and(u8::is_ascii_whitespace) {
            j += 1;
        }
        j
    };
    // The index of the quote closing the string whose first byte is at `from`.
    let string_end = |from: usize| {
        let mut j = from;
        loop {
            let k = memchr::memchr2(b'"', b'\\', doc.get(j..)?)?;
            j += k;
            if doc[j] == b'\\' {
                j += 2;
            } else {
                return Some(j);
            }
        }
    };
    let mut total = 0u64;
    let mut i = 0;
    while let Some(q) = doc.get(i..).and_then(|rest| memchr::memchr(b'"', rest)) {
        let start = i + q + 1;
        let Some(end) = string_end(start) else {
            break;
        };
        let colon = skip_ws(end + 1);
        if doc.get(colon) != Some(&b':') {
            i = end + 1;
            continue;
        }
        let value = skip_ws(colon + 1);
        if KEYS.contains(&&doc[start..end]) && doc.get(value) == Some(&b'"') {
            let Some(value_end) = string_end(value + 1) else {
                break;
            };
            total += (value_end - value - 1) as u64;
            i = value_end + 1;
        } else {
            i = value;
        }
    }
    total
}

/// The unsigned integer after the first `key` (a `"name":` pattern) in `obj`.
fn number_at(obj: &[u8], key: &[u8]) -> Option<u64> {
    // The object is short: checking at each quote beats setting up a substring searcher.
    let at = memchr::memchr_iter(b'"', obj).find(|&i| obj[i..].starts_with(key))? + key.len();
    let rest = &obj[at..];
    let skip = rest.iter().take_while(|b| b.is_ascii_whitespace()).count();
    let digits = rest[skip..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 19 {
        return None;
    }
    std::str::from_utf8(&rest[skip..skip + digits])
        .ok()?
        .parse()
        .ok()
}

/// Length of the JSON object at the start of `s` (strings skipped, braces balanced), or `None`
/// when `s` does not start with a complete object.
fn object_len(s: &[u8]) -> Option<usize> {
    if s.first() != Some(&b'{') {
        return None;
    }
    let (mut depth, mut in_str, mut escaped) = (0usize, false, false);
    for (i, &b) in s.iter().enumerate() {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod usage_tests {
    use super::*;

    #[test]
    fn usage_is_read_from_the_usage_object_only() {
        let doc = br#"{"id":"x","choices":[{"message":{"content":"say \"usage\":{\"prompt_tokens\":99}"}}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        assert_eq!(
            openai_usage(doc),
            Some(Usage {
                prompt: 12,
                completion: 5,
                cached: 4,
                cache_write: 0
            })
        );
        assert_eq!(openai_usage(br#"{"choices":[],"usage":null}"#), None);
        assert_eq!(openai_usage(br#"{"usage":{"prompt_tokens":1"#), None);
        assert_eq!(openai_usage(b"not json"), None);
    }

    #[test]
    fn completion_text_is_the_string_values_of_text_members() {
        assert_eq!(
            completion_text_bytes(
                br#"{"choices":[{"message":{"role":"assistant","content":"Hello","tool_calls":[{"function":{"name":"f","arguments":"{\"a\":1}"}}]}}]}"#
            ),
            5 + 9
        );
        assert_eq!(
            completion_text_bytes(br#"{"content" : null, "text": "abc"}"#),
            3
        );
        assert_eq!(
            completion_text_bytes(br#"{"model":"content","x":"content"}"#),
            0
        );
        assert_eq!(completion_text_bytes(br#"{"content":"unterminated"#), 0);
        assert_eq!(completion_text_bytes(b""), 0);
    }
}
