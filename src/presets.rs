//! Provider kinds: what `kind = "…"` means for a provider — its wire family, default base URL,
//! chat and model-list paths, auth header, whether it takes `stream_options`, extra headers —
//! and which environment variables build channels when no config exists.
//!
//! Invariants: pure data and pure functions: no I/O, no clock. A preset only fills what the
//! config left out; the config always wins. Not here: translating between families
//! (`providers`).

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

impl Family {
    /// Its name in messages and the README's field table: `openai`, `anthropic`, `gemini`.
    pub fn as_str(self) -> &'static str {
        match self {
            Family::OpenAi => "openai",
            Family::Anthropic => "anthropic",
            Family::Gemini => "gemini",
        }
    }

    /// The request fields of `asked` this family's translation cannot express (README "Field
    /// fidelity"). A channel of the family is no candidate for such a request unless its
    /// provider says `on_unsupported = "drop"`. `stream`: Gemini answers several candidates
    /// only whole (its stream translation follows the first).
    pub fn lacks(self, asked: Fields, stream: bool) -> Fields {
        let have = match self {
            Family::OpenAi => Fields::ALL,
            Family::Anthropic => Fields::NONE,
            Family::Gemini if stream => Fields::NONE,
            Family::Gemini => Fields::N,
        };
        Fields(asked.0 & !have.0)
    }
}

/// OpenAI chat fields that only some families can honour, as a small bit set: a request that
/// asks for one is routed to channels whose family has it (or whose provider drops what it
/// lacks), never silently answered without it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Fields(u8);

impl Fields {
    /// Nothing family-specific.
    pub const NONE: Fields = Fields(0);
    /// `logprobs: true` or `top_logprobs`.
    pub const LOGPROBS: Fields = Fields(1);
    /// `n` above 1.
    pub const N: Fields = Fields(2);
    /// A non-empty `logit_bias`.
    pub const LOGIT_BIAS: Fields = Fields(4);
    /// Audio output: `modalities` with `"audio"`, or `audio`.
    pub const AUDIO: Fields = Fields(8);
    /// `web_search_options` (OpenAI's search models).
    pub const WEB_SEARCH: Fields = Fields(16);
    /// Every one.
    pub const ALL: Fields = Fields(31);

    /// Each field with the request parameter it stands for.
    const PARAMS: [(Fields, &'static str); 5] = [
        (Fields::LOGPROBS, "logprobs"),
        (Fields::N, "n"),
        (Fields::LOGIT_BIAS, "logit_bias"),
        (Fields::AUDIO, "modalities"),
        (Fields::WEB_SEARCH, "web_search_options"),
    ];

    /// Both sets.
    pub fn union(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    /// True when empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// True when every field of `other` is in `self`.
    pub fn contains(self, other: Fields) -> bool {
        self.0 & other.0 == other.0
    }

    /// The request parameter of the first field (`param` of the 400), `""` when empty.
    pub fn first_param(self) -> &'static str {
        Fields::PARAMS
            .iter()
            .find(|(f, _)| self.contains(*f) && !f.is_empty())
            .map_or("", |(_, p)| p)
    }

    /// The parameters, comma-separated, for messages.
    pub fn params(self) -> String {
        let names: Vec<&str> = Fields::PARAMS
            .iter()
            .filter(|(f, _)| self.contains(*f))
            .map(|(_, p)| *p)
            .collect();
        names.join(", ")
    }
}

/// The OpenAI API a request calls: routing, health (an endpoint a channel lacks is its own
/// scope) and the proxy all key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `/chat/completions`: every family, translated as needed.
    Chat,
    /// `/embeddings`: OpenAI-family channels, passed through.
    Embeddings,
    /// `/completions` (legacy text completions): OpenAI-family channels, passed through.
    Completions,
    /// `/responses`: channels whose provider speaks the Responses API, passed through.
    Responses,
}

impl Endpoint {
    /// How many there are (per-channel endpoint state is an array indexed by [`Endpoint::index`]).
    pub(crate) const COUNT: usize = 4;
    /// Every endpoint, in index order.
    pub(crate) const ALL: [Endpoint; Endpoint::COUNT] = [
        Endpoint::Chat,
        Endpoint::Embeddings,
        Endpoint::Completions,
        Endpoint::Responses,
    ];

    /// Its index in per-channel endpoint state.
    pub(crate) fn index(self) -> usize {
        self as usize
    }

    /// The path under a channel's base URL.
    pub(crate) fn path(self) -> &'static str {
        match self {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Embeddings => "/embeddings",
            Endpoint::Completions => "/completions",
            Endpoint::Responses => "/responses",
        }
    }

    /// The short name admin views, the cluster sync and the dry run use.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Endpoint::Chat => "chat",
            Endpoint::Embeddings => "embeddings",
            Endpoint::Completions => "completions",
            Endpoint::Responses => "responses",
        }
    }

    /// Parses [`Endpoint::as_str`].
    pub(crate) fn parse(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// The name usage records give it (with the client's family for chat).
    pub(crate) fn record_name(self, client: Family) -> &'static str {
        match (self, client) {
            (Endpoint::Chat, Family::OpenAi) => "chat",
            (Endpoint::Chat, Family::Anthropic) => "messages",
            (Endpoint::Chat, Family::Gemini) => "gemini",
            (e, _) => e.as_str(),
        }
    }

    /// Whether a provider of `kind` speaking `family` (with a custom chat path template or
    /// not) can serve it at all; a channel that can may still lack it (see `live::health`).
    pub(crate) fn served(self, family: Family, custom_path: bool, kind: &str) -> bool {
        match self {
            Endpoint::Chat => true,
            Endpoint::Embeddings | Endpoint::Completions => {
                family == Family::OpenAi && !custom_path
            }
            Endpoint::Responses => {
                family == Family::OpenAi && !custom_path && speaks_responses(kind)
            }
        }
    }
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
pub(crate) fn speaks_responses(kind: &str) -> bool {
    matches!(kind, "openai" | "openrouter" | "xai")
}

/// Whether an OpenAI-family provider takes Anthropic's `cache_control` on chat content parts
/// (OpenRouter passes it to the models that cache). Others reject unknown part members, so a
/// translated request loses them there.
pub(crate) fn takes_cache_control(kind: &str) -> bool {
    kind == "openrouter"
}

/// Looks up a preset by its `kind` spelling.
pub fn preset(kind: &str) -> Option<&'static Preset> {
    PRESETS.iter().find(|p| p.kind == kind)
}

/// All kind spellings, for error messages.
pub(crate) fn kinds() -> impl Iterator<Item = &'static str> {
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
