//! Ids, environment-variable references and numbers as the gateway wants them: ids sanitized
//! to its rule and made unique, `$VAR` read as `${VAR}`, seconds as duration strings.

use std::collections::HashSet;

/// Our id rule (1-64 letters, digits, '.', '_' or '-'): other characters become '-', runs of
/// '-' collapse, and an id with nothing left becomes `fallback`.
pub(super) fn sanitize_id(wanted: &str, fallback: &str) -> String {
    let mut out = String::new();
    for c in wanted.trim().chars() {
        if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let trimmed: String = out.trim_matches('-').chars().take(64).collect();
    let trimmed = trimmed.trim_end_matches('-');
    if trimmed.is_empty() {
        fallback.chars().take(64).collect()
    } else {
        trimmed.to_string()
    }
}

/// `id`, or `id-2`, `id-3`, … when taken; records the one returned.
pub(super) fn unique_id(id: &str, taken: &mut HashSet<String>) -> String {
    let mut candidate = id.to_string();
    let mut n = 2;
    while taken.contains(&candidate) {
        let suffix = format!("-{n}");
        let stem: String = id.chars().take(64 - suffix.len()).collect();
        candidate = format!("{stem}{suffix}");
        n += 1;
    }
    taken.insert(candidate.clone());
    candidate
}

/// `openrouter` → `OPENROUTER`, for suggested `${…_API_KEY}` names.
pub(super) fn env_stem(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

pub(super) fn is_env_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `${VAR}` or `${VAR:-default}` as written, and `$VAR` (a shell habit the original sent
/// verbatim) as `${VAR}`; `None` for anything else.
pub(super) fn env_reference(s: &str) -> Option<String> {
    if let Some(inner) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
        let name = inner.split_once(":-").map_or(inner, |(n, _)| n);
        return (is_env_name(name) && !inner.contains(['{', '}'])).then(|| s.to_string());
    }
    let name = s.strip_prefix('$')?;
    let upper = name
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    (upper && name.bytes().next().is_some_and(|b| !b.is_ascii_digit()))
        .then(|| format!("${{{name}}}"))
}

/// Seconds as a duration string: whole seconds as "3s", fractions as milliseconds.
pub(super) fn seconds_to_duration(s: f64) -> String {
    if s.fract() == 0.0 && s < 1e12 {
        format!("{}s", s as u64)
    } else {
        format!("{}ms", (s * 1000.0).round().max(1.0) as u64)
    }
}

/// Rounds away float noise from unit conversion (0.0000004 × 1e6 = 0.39999999999999997).
pub(super) fn tidy(x: f64) -> f64 {
    format!("{x:.11e}").parse().unwrap_or(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_ids_are_sanitized_and_unique() {
        assert_eq!(sanitize_id("Claude 3.5 / main", "x"), "Claude-3.5-main");
        assert_eq!(sanitize_id("渠道", "channel-3"), "channel-3");
        assert_eq!(sanitize_id(&"a".repeat(80), "x").len(), 64);
        let mut taken = HashSet::new();
        assert_eq!(unique_id("a", &mut taken), "a");
        assert_eq!(unique_id("a", &mut taken), "a-2");
        assert_eq!(unique_id("a", &mut taken), "a-3");
        let long = "b".repeat(64);
        unique_id(&long, &mut taken);
        assert_eq!(unique_id(&long, &mut taken).len(), 64);
    }

    #[test]
    fn import_env_references_and_escapes() {
        assert_eq!(
            env_reference("${OPENAI_API_KEY}").as_deref(),
            Some("${OPENAI_API_KEY}")
        );
        assert_eq!(env_reference("${K:-sk-x}").as_deref(), Some("${K:-sk-x}"));
        assert_eq!(env_reference("$GROQ_KEY").as_deref(), Some("${GROQ_KEY}"));
        assert_eq!(env_reference("sk-abc"), None);
        assert_eq!(env_reference("${not a name}"), None);
        assert_eq!(env_reference("$lower"), None);
    }
}
