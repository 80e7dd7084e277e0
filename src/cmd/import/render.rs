//! The TOML the conversion writes: sections in a fixed order, providers then channels, each
//! with a comment naming where it came from; and the TOML spellings of strings, keys and floats.

use std::fmt::Write as _;

use super::Importer;

impl Importer {
    pub(super) fn render(&self) -> String {
        let mut out = String::from(
            "# Converted by `smart-ai-router import` from the Python smart-ai-router's\n\
             # router_config.yaml. Every key that did not carry over as it was is listed in the\n\
             # report printed with it; review those lines, then run\n\
             # `smart-ai-router check --config FILE`. Prices are per 1M tokens; base URLs include\n\
             # the version path (the original appended /v1 at request time).\n",
        );
        let section = |out: &mut String, header: &str, lines: &[String]| {
            if !lines.is_empty() {
                let _ = writeln!(out, "\n[{header}]");
                for l in lines {
                    let _ = writeln!(out, "{l}");
                }
            }
        };
        section(&mut out, "server", &self.server);
        section(&mut out, "routing", &self.routing);
        for (name, weights) in &self.strategies {
            let lines: Vec<String> = weights
                .iter()
                .map(|(f, w)| format!("{f} = {}", toml_float(*w)))
                .collect();
            section(&mut out, &format!("strategies.{}", toml_key(name)), &lines);
        }
        section(&mut out, "pricing", &self.pricing);
        section(&mut out, "discovery", &self.discovery);
        section(&mut out, "admin", &self.admin);
        for (name, sha256) in &self.client_keys {
            let _ = writeln!(
                out,
                "\n[[auth.keys]]\nname = {}\nsha256 = {}",
                toml_str(name),
                toml_str(sha256)
            );
        }

        for p in &self.providers {
            let _ = writeln!(out, "\n# {}", one_line(&p.comment));
            let _ = writeln!(out, "[providers.{}]", toml_key(&p.id));
            let _ = writeln!(out, "kind = {}", toml_str(p.kind));
            if let Some(u) = &p.base_url {
                let _ = writeln!(out, "base_url = {}", toml_text(u));
            }
            if let Some(a) = p.auth {
                let _ = writeln!(out, "auth = {}", toml_str(a));
            }
            if !p.headers.is_empty() {
                let _ = writeln!(out, "headers = {}", inline_table(&p.headers));
            }
        }

        for c in &self.channels {
            let _ = writeln!(out, "\n# {}", one_line(&c.comment));
            out.push_str("[[channels]]\n");
            let _ = writeln!(out, "id = {}", toml_str(&c.id));
            let _ = writeln!(
                out,
                "provider = {}",
                toml_str(&self.providers[c.provider].id)
            );
            if let Some(k) = &c.api_key {
                let _ = writeln!(out, "api_key = {}", toml_str(k));
            }
            if let Some(u) = &c.base_url {
                let _ = writeln!(out, "base_url = {}", toml_text(u));
            }
            if !c.models.is_empty() {
                let list: Vec<String> = c.models.iter().map(|m| toml_text(m)).collect();
                let _ = writeln!(out, "models = [{}]", list.join(", "));
            }
            if !c.aliases.is_empty() {
                let _ = writeln!(out, "aliases = {}", inline_table(&c.aliases));
            }
            if !c.tags.is_empty() {
                let list: Vec<String> = c.tags.iter().map(|t| toml_text(t)).collect();
                let _ = writeln!(out, "tags = [{}]", list.join(", "));
            }
            if let Some(p) = c.priority {
                let _ = writeln!(out, "priority = {p}");
            }
            if let Some(w) = c.weight {
                let _ = writeln!(out, "weight = {}", toml_float(w));
            }
            if !c.enabled {
                out.push_str("enabled = false\n");
            }
            if let Some((i, o)) = c.pricing {
                let _ = writeln!(
                    out,
                    "pricing = {{ input = {}, output = {}, currency = \"USD\" }}",
                    toml_float(i),
                    toml_float(o)
                );
            }
            if let Some(d) = &c.min_request_interval {
                let _ = writeln!(out, "min_request_interval = {}", toml_str(d));
            }
            if let Some(n) = c.daily_request_limit {
                let _ = writeln!(out, "daily_request_limit = {n}");
            }
        }
        out
    }
}

/// A TOML string value holding text the original took literally: our loader expands `${VAR}`
/// in every string value, so `${` is written as its escape `$${`.
pub(super) fn toml_text(s: &str) -> String {
    toml_str(&s.replace("${", "$${"))
}

/// A TOML basic string, as is: for keys, generated values and `${VAR}` references.
pub(super) fn toml_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A bare key when TOML allows one, else a quoted key (model ids have dots and slashes).
fn toml_key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        k.to_string()
    } else {
        toml_str(k)
    }
}

/// A TOML float: always with a fraction or exponent so it never reads as an integer, and in
/// exponent form when plain digits would run long.
pub(super) fn toml_float(x: f64) -> String {
    let s = if x != 0.0 && !(1e-6..1e16).contains(&x.abs()) {
        format!("{x:e}")
    } else {
        format!("{x}")
    };
    if s.contains(['.', 'e', 'E']) {
        s
    } else {
        format!("{s}.0")
    }
}

fn inline_table(pairs: &[(String, String)]) -> String {
    let items: Vec<String> = pairs
        .iter()
        .map(|(k, v)| format!("{} = {}", toml_str(k), toml_text(v)))
        .collect();
    format!("{{ {} }}", items.join(", "))
}

/// Comments are one line: a display name with a newline would end the comment early.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::import::values::{seconds_to_duration, tidy};

    #[test]
    fn import_numbers_render_as_toml_floats() {
        assert_eq!(toml_float(tidy(0.0000004 * 1e6)), "0.4");
        assert_eq!(toml_float(tidy(0.00000015 * 1e6)), "0.15");
        assert_eq!(toml_float(150.0), "150.0");
        assert_eq!(toml_float(1e308), "1e308");
        assert_eq!(toml_float(2.5e-9), "2.5e-9");
        assert_eq!(seconds_to_duration(3.0), "3s");
        assert_eq!(seconds_to_duration(0.5), "500ms");
        assert_eq!(toml_str("a\"b\\c\n\u{1}"), "\"a\\\"b\\\\c\\n\\u0001\"");
        assert_eq!(toml_key("gpt-4o"), "gpt-4o");
        assert_eq!(toml_key("qwen3:8b"), "\"qwen3:8b\"");
    }
}
