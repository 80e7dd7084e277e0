//! Who may call the client API: `[auth]`, its `[[auth.keys]]`, and the keys file that
//! `keys add|list|revoke` keep (`[[keys]]` entries of the same shape).

use std::path::{Path, PathBuf};

use super::{Checker, rate_spec, raw};
use crate::config::{AuthConfig, ClientKeyConfig, ConfigError, Problem, ServerConfig};

/// `[auth]` and its `[[auth.keys]]` (the keys file is read later, by `Config::load_file`).
pub(super) fn auth(c: &mut Checker, a: raw::Auth, server: &ServerConfig) -> AuthConfig {
    let keys_file = a.keys_file.filter(|f| !f.is_empty()).map(PathBuf::from);
    if let Some(f) = &keys_file
        && !f.is_absolute()
    {
        c.err(
            "auth.keys_file",
            format!("\"{}\" must be an absolute path", f.display()),
        );
    }
    let allow_unauthenticated = a.allow_unauthenticated.unwrap_or(false);
    let keys = client_keys(&a.keys, "auth.keys", &mut |path, m| c.err(path, m));
    if keys.is_empty()
        && keys_file.is_none()
        && !allow_unauthenticated
        && !server.listen.ip().is_loopback()
    {
        c.err(
            "auth",
            format!(
                "server.listen ({}) is not a loopback address and no client key is configured: \
                 add keys (`smart-ai-router keys add NAME` with [auth] keys_file, or [[auth.keys]]), \
                 or set auth.allow_unauthenticated = true to serve anyone who can reach it",
                server.listen
            ),
        );
    }
    AuthConfig {
        keys,
        allow_unauthenticated,
        keys_file,
    }
}

/// Validates client key entries (`[[auth.keys]]` or a keys file's `[[keys]]`), reporting each
/// problem under `base[i].key`.
fn client_keys(
    raw: &[raw::AuthKey],
    base: &str,
    err: &mut dyn FnMut(String, String),
) -> Vec<ClientKeyConfig> {
    let mut out: Vec<ClientKeyConfig> = Vec::with_capacity(raw.len());
    for (i, k) in raw.iter().enumerate() {
        let at = |f: &str| format!("{base}[{i}].{f}");
        let name = k.name.trim();
        if name.is_empty()
            || name.len() > 64
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
        {
            err(
                at("name"),
                "1 to 64 characters: letters, digits, - _ . @ (it appears in logs and metrics)"
                    .into(),
            );
            continue;
        }
        let Some(sha256) = crate::secret::parse_hex(k.sha256.trim()) else {
            err(
                at("sha256"),
                "64 hex digits: the SHA-256 of the key (`printf %s \"$KEY\" | sha256sum`), never the key itself".into(),
            );
            continue;
        };
        let expires_ms = match k.expires.as_deref() {
            None => None,
            Some(t) => match crate::clock::parse_time(t.trim()) {
                Some(ms) => Some(ms),
                None => {
                    err(
                        at("expires"),
                        format!("\"{t}\" is not a date (YYYY-MM-DD, UTC) or unix seconds"),
                    );
                    continue;
                }
            },
        };
        for m in &k.models {
            if let Err(e) = crate::expr::parse(m) {
                err(
                    at("models"),
                    format!("`{m}` is not a model expression: {e}"),
                );
            }
        }
        let limits = rate_spec(&mut |f, m| err(at(f), m), k.rps, k.rpm, k.tpm);
        let daily_budget = match k.daily_budget {
            None => None,
            Some(b) if b.is_finite() && b >= 0.0 => Some(b),
            Some(b) => {
                err(
                    at("daily_budget"),
                    format!("a non-negative amount in the [pricing] currency, got {b}"),
                );
                None
            }
        };
        if out.iter().any(|o| o.name == name) {
            err(at("name"), format!("\"{name}\" is used by another key"));
            continue;
        }
        if out.iter().any(|o| o.sha256 == sha256) {
            err(at("sha256"), "the same key is listed twice".into());
            continue;
        }
        out.push(ClientKeyConfig {
            name: name.to_string(),
            sha256,
            expires_ms,
            models: k.models.clone(),
            limits,
            daily_budget,
        });
    }
    out
}

/// Reads a keys file (`[[keys]]` entries). A missing file has no keys (`keys add` creates it).
#[allow(clippy::disallowed_methods)] // control-side: read at (re)load, off the data plane
pub(crate) fn read_keys_file(path: &Path) -> Result<Vec<ClientKeyConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => {
            return Err(ConfigError::one(
                Some(path.to_path_buf()),
                "",
                format!("cannot read {}: {e}", path.display()),
            ));
        }
    };
    let file: raw::KeysFile = toml::from_str(&text).map_err(|e| {
        ConfigError::one(
            Some(path.to_path_buf()),
            "",
            format!("not a keys file: {}", e.message().trim()),
        )
    })?;
    let mut problems = Vec::new();
    let keys = client_keys(&file.keys, "keys", &mut |path, message| {
        problems.push(Problem { path, message })
    });
    if problems.is_empty() {
        Ok(keys)
    } else {
        Err(ConfigError {
            origin: Some(path.to_path_buf()),
            problems,
        })
    }
}
