//! Provider wire families and presets: what `kind = "…"` means for a provider's base URL, chat
//! path and auth header, and which environment variables build channels when no config exists.
//!
//! Invariants: pure data and pure functions: no I/O, no clock, no allocation on the request
//! path. A preset only fills what the config left out; the config always wins.
//! Not here: sending requests (`proxy`, `upstream`). Native translation for non-OpenAI wire
//! families (Anthropic, Gemini) arrives with its own file per family; until then those kinds are
//! rejected at config load rather than spoken wrongly.

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
}

impl AuthStyle {
    /// Parses the config spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "bearer" => Some(AuthStyle::Bearer),
            "x-api-key" => Some(AuthStyle::XApiKey),
            "api-key" => Some(AuthStyle::ApiKey),
            _ => None,
        }
    }

    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthStyle::Bearer => "bearer",
            AuthStyle::XApiKey => "x-api-key",
            AuthStyle::ApiKey => "api-key",
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
    /// Path appended to the base URL for chat completions.
    pub chat_path: &'static str,
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

/// Every OpenAI-compatible preset. Order matters for config-less start: channels are built in
/// this order and, at equal priority, tried in it.
pub const PRESETS: &[Preset] = &[
    Preset {
        kind: "openai",
        base_url: "https://api.openai.com/v1",
        chat_path: CHAT,
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
        kind: "openrouter",
        base_url: "https://openrouter.ai/api/v1",
        chat_path: CHAT,
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
        chat_path: CHAT,
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
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("DEEPSEEK_API_KEY"),
        env_models: &["deepseek-chat", "deepseek-reasoner"],
        headers: &[],
    },
    Preset {
        kind: "siliconflow",
        base_url: "https://api.siliconflow.cn/v1",
        chat_path: CHAT,
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
        chat_path: CHAT,
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
        chat_path: CHAT,
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
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("FIREWORKS_API_KEY"),
        env_models: &["accounts/fireworks/models/llama-v3p3-70b-instruct"],
        headers: &[],
    },
    Preset {
        kind: "xai",
        base_url: "https://api.x.ai/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("XAI_API_KEY"),
        env_models: &["grok-3", "grok-3-mini"],
        headers: &[],
    },
    Preset {
        kind: "perplexity",
        base_url: "https://api.perplexity.ai",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("PERPLEXITY_API_KEY"),
        env_models: &["sonar", "sonar-pro"],
        headers: &[],
    },
    Preset {
        kind: "moonshot",
        base_url: "https://api.moonshot.cn/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("MOONSHOT_API_KEY"),
        env_models: &["moonshot-v1-8k", "moonshot-v1-32k", "moonshot-v1-128k"],
        headers: &[],
    },
    Preset {
        kind: "zhipu",
        base_url: "https://open.bigmodel.cn/api/paas/v4",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("ZHIPU_API_KEY"),
        env_models: &["glm-4-flash", "glm-4-plus"],
        headers: &[],
    },
    Preset {
        kind: "doubao",
        base_url: "https://ark.cn-beijing.volces.com/api/v3",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("ARK_API_KEY"),
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "volcengine",
        base_url: "https://ark.cn-beijing.volces.com/api/v3",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "dashscope",
        base_url: "https://dashscope.aliyuncs.com/compatible-mode/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: Some("DASHSCOPE_API_KEY"),
        env_models: &["qwen-plus", "qwen-turbo", "qwen-max"],
        headers: &[],
    },
    Preset {
        kind: "azure",
        base_url: "",
        chat_path: CHAT,
        auth: AuthStyle::ApiKey,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "ollama",
        base_url: "http://127.0.0.1:11434/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "lmstudio",
        base_url: "http://127.0.0.1:1234/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
    Preset {
        kind: "vllm",
        base_url: "http://127.0.0.1:8000/v1",
        chat_path: CHAT,
        auth: AuthStyle::Bearer,
        env_key: None,
        env_models: &[],
        headers: &[],
    },
];

/// Kinds that name a real wire family this build cannot speak yet.
pub const NATIVE_PENDING: &[&str] = &["anthropic", "gemini"];

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
