//! YAML access, lenient the way PyYAML was (YAML 1.1 `yes`/`no`, numbers written as strings),
//! YAML 1.1 merge keys, and parser errors as messages that say where.

use yaml_rust2::{ScanError, Yaml};

pub(super) fn key(k: &str) -> Yaml {
    Yaml::String(k.to_string())
}

pub(super) fn key_text(k: &Yaml) -> String {
    text(k).unwrap_or_else(|| format!("<{}>", describe(k)))
}

/// A scalar as text (numbers too: model ids and keys can look like numbers).
pub(super) fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) | Yaml::Real(s) => Some(s.clone()),
        Yaml::Integer(i) => Some(i.to_string()),
        Yaml::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn number(v: &Yaml) -> Option<f64> {
    match v {
        Yaml::Integer(i) => Some(*i as f64),
        Yaml::Real(_) => v.as_f64(),
        Yaml::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|x: &f64| x.is_finite())
}

pub(super) fn as_int(v: &Yaml) -> Option<i64> {
    match v {
        Yaml::Integer(i) => Some(*i),
        _ => number(v)
            .filter(|x| x.fract() == 0.0 && x.abs() < 9e15)
            .map(|x| x as i64),
    }
}

pub(super) fn as_bool(v: &Yaml) -> Option<bool> {
    match v {
        Yaml::Boolean(b) => Some(*b),
        Yaml::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "y" => Some(true),
            "false" | "no" | "off" | "n" => Some(false),
            _ => None,
        },
        _ => None,
    }
}

pub(super) fn is_empty_map(v: &Yaml) -> bool {
    v.is_null() || v.as_hash().is_some_and(|h| h.is_empty())
}

pub(super) fn describe(v: &Yaml) -> &'static str {
    match v {
        Yaml::Real(_) | Yaml::Integer(_) => "a number",
        Yaml::String(_) => "a string",
        Yaml::Boolean(_) => "a boolean",
        Yaml::Array(_) => "a list",
        Yaml::Hash(_) => "a mapping",
        Yaml::Null => "empty",
        Yaml::Alias(_) | Yaml::BadValue => "unreadable",
    }
}

/// Resolves YAML 1.1 merge keys (`<<: *defaults`), which PyYAML honoured and YAML 1.2 parsers
/// leave as a plain `<<` key: the mapping's own keys win over merged ones.
pub(super) fn apply_merge_keys(v: Yaml) -> Yaml {
    match v {
        Yaml::Array(items) => Yaml::Array(items.into_iter().map(apply_merge_keys).collect()),
        Yaml::Hash(h) => {
            let mut own = yaml_rust2::yaml::Hash::new();
            let mut merged = Vec::new();
            for (k, val) in h {
                if k.as_str() == Some("<<") {
                    match apply_merge_keys(val) {
                        Yaml::Hash(m) => merged.push(m),
                        Yaml::Array(list) => {
                            merged.extend(list.into_iter().filter_map(Yaml::into_hash))
                        }
                        _ => {}
                    }
                } else {
                    own.insert(k, apply_merge_keys(val));
                }
            }
            for m in merged {
                for (k, val) in m {
                    if !own.contains_key(&k) {
                        own.insert(k, val);
                    }
                }
            }
            Yaml::Hash(own)
        }
        other => other,
    }
}

/// "not valid YAML at line 3, column 5: …", with the duplicate-key message's key as written
/// rather than as the parser's Rust value (`String("id")`).
pub(super) fn yaml_error(e: &ScanError) -> String {
    let info = e.info();
    let info = match info.strip_suffix(": duplicated key in mapping") {
        Some(k) => {
            let k = k
                .strip_prefix("String(")
                .and_then(|k| k.strip_suffix(')'))
                .unwrap_or(k);
            format!("duplicate key {k} in a mapping")
        }
        None => info.to_string(),
    };
    format!(
        "not valid YAML at line {}, column {}: {info}",
        e.marker().line(),
        e.marker().col() + 1
    )
}

#[cfg(test)]
mod tests {
    use yaml_rust2::YamlLoader;

    use super::*;

    #[test]
    fn import_merge_keys_fill_missing_keys_only() {
        let docs = YamlLoader::load_from_str(
            "base: &b {enabled: false, tags: [x]}\nch: {<<: *b, tags: [y]}\n",
        )
        .unwrap();
        let root = apply_merge_keys(docs.into_iter().next().unwrap());
        let ch = &root["ch"];
        assert_eq!(ch["enabled"].as_bool(), Some(false));
        assert_eq!(ch["tags"][0].as_str(), Some("y"));
        assert!(ch.as_hash().unwrap().get(&key("<<")).is_none());
    }
}
