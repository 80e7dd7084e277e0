//! Where environment variables enter the config: `${VAR}` and `${VAR:-default}` expansion in
//! every string value of the TOML (before it is read into `raw`), the [`Env`] source (injectable
//! so tests never call `set_var`), and the default state directory.
//!
//! Invariants: a missing variable without a default is a [`Problem`] naming the key, never an
//! empty string; `$${` stays a literal `${`. Not here: the config-less mode that builds channels
//! from provider keys (`Config::from_environment`).

use std::path::PathBuf;

use super::Problem;

/// A source of environment variables (injectable so tests never call `set_var`).
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name)
    }
}

/// `$XDG_STATE_HOME/smart-ai-router`, else `$HOME/.local/state/smart-ai-router`, else none.
pub(super) fn default_state_dir(env: &dyn Env) -> Option<PathBuf> {
    let base = env
        .var("XDG_STATE_HOME")
        .filter(|v| v.starts_with('/'))
        .map(PathBuf::from)
        .or_else(|| {
            env.var("HOME")
                .filter(|v| v.starts_with('/'))
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("smart-ai-router"))
}

pub(super) fn expand_table(
    table: &mut toml::Table,
    path: &str,
    env: &dyn Env,
    out: &mut Vec<Problem>,
) {
    for (k, v) in table.iter_mut() {
        let p = if path.is_empty() {
            k.clone()
        } else {
            format!("{path}.{k}")
        };
        expand_value(v, &p, env, out);
    }
}

fn expand_value(v: &mut toml::Value, path: &str, env: &dyn Env, out: &mut Vec<Problem>) {
    match v {
        toml::Value::String(s) => match expand_vars(s, env) {
            Ok(Some(n)) => *s = n,
            Ok(None) => {}
            Err(m) => out.push(Problem {
                path: path.to_string(),
                message: m,
            }),
        },
        toml::Value::Array(a) => {
            for (i, item) in a.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), env, out);
            }
        }
        toml::Value::Table(t) => expand_table(t, path, env, out),
        _ => {}
    }
}

/// Expands `${VAR}` and `${VAR:-default}`; `$${` is a literal `${`. `Ok(None)` = unchanged.
fn expand_vars(s: &str, env: &dyn Env) -> Result<Option<String>, String> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest.as_bytes()[i - 1] == b'$' {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unclosed ${{ in \"{s}\"; write ${{VAR}}"))?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!(
                "\"${{{inner}}}\" is not a variable reference; names are letters, digits and _"
            ));
        }
        match (env.var(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "environment variable {name} is not set; export it, or write ${{{name}:-default}}"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::config::test_support::{env, problems};

    #[test]
    fn env_vars_expand_with_defaults_and_missing_ones_name_the_key() {
        let text = r#"
[providers.up]
base_url = "${UP_URL:-http://127.0.0.1:9/v1}"
[[channels]]
id = "c"
provider = "up"
api_key = "${KEY}"
models = ["m"]
"#;
        let c = Config::parse(text, &env(&[("KEY", "sk-1")])).unwrap();
        assert_eq!(c.channels[0].api_key.expose(), "sk-1");
        assert_eq!(c.providers[0].base_url.as_ref().unwrap().port, 9);
        let p = problems(text);
        assert_eq!(p[0].path, "channels[0].api_key");
        assert!(p[0].message.contains("KEY is not set"), "{p:?}");
        assert_eq!(expand_vars("$${X}", &env(&[])).unwrap().unwrap(), "${X}");
    }
}
