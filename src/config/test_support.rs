//! What the config tests share: an injected environment, the minimal file of DESIGN.md §4,
//! and the problems a text yields.

use super::{Config, Problem};

/// An environment holding exactly `vars`.
pub(crate) fn env(
    vars: &'static [(&'static str, &'static str)],
) -> impl Fn(&str) -> Option<String> {
    move |n| {
        vars.iter()
            .find(|(k, _)| *k == n)
            .map(|(_, v)| v.to_string())
    }
}

/// The problems of a text that must not validate (with no variable set).
pub(crate) fn problems(text: &str) -> Vec<Problem> {
    Config::parse(text, &env(&[])).unwrap_err().problems
}

/// The minimal file of DESIGN.md §4, exactly as written there.
pub(crate) const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:7601"
workers = 2                      # 0 = one per CPU in the affinity mask

[providers.up]
kind = "openai"                  # wire family or preset: openai, anthropic, gemini, azure, openrouter, groq, ollama, …
base_url = "http://127.0.0.1:9000/v1"

[[channels]]
id = "up-1"
provider = "up"
api_key = "sk-test"              # or "${OPENAI_API_KEY}"
models = ["gpt-4o-mini", "gpt-4o"]   # optional once discovery runs
"#;
