//! The `keys` subcommand: creates, lists and revokes client keys in the keys file
//! (`[auth] keys_file`, or `--keys-file`).
//!
//! Invariants: a new key is printed once, on stdout, and only its SHA-256 is written; the file
//! is replaced atomically (written beside it, then renamed) with mode 0600, and what is written
//! is read back through the same validation the gateway applies before the command reports
//! success. Runs from the command line only, never in the gateway.
#![allow(clippy::disallowed_methods)] // CLI-side: file I/O is the point

use std::io::Write;
use std::path::Path;

use crate::config::raw::{AuthKey as Entry, KeysFile as File};
use crate::config::read_keys_file;

/// Limits for a new key (`keys add --rps/--rpm/--tpm`).
#[derive(Debug, Clone, Copy, Default)]
pub struct NewLimits {
    /// Requests per second.
    pub rps: Option<f64>,
    /// Requests per minute.
    pub rpm: Option<i64>,
    /// Tokens per minute.
    pub tpm: Option<i64>,
    /// Spend per UTC day, `[pricing]` currency.
    pub daily_budget: Option<f64>,
}

const HEADER: &str = "\
# smart-ai-router client keys, managed by `smart-ai-router keys add|list|revoke`.
# Only the SHA-256 of each key is stored: a key is shown once, when it is created.
# Running gateways read this file at start and on every reload (SIGHUP, POST /admin/reload).
";

fn load(path: &Path) -> Result<File, String> {
    match std::fs::read_to_string(path) {
        Ok(t) => toml::from_str(&t).map_err(|e| format!("{}: {}", path.display(), e.message())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(File::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

fn render(f: &File) -> String {
    let q = |s: &str| {
        let mut b = Vec::with_capacity(s.len() + 2);
        crate::json::write_str(&mut b, s);
        String::from_utf8(b).unwrap_or_default()
    };
    let mut out = String::from(HEADER);
    for k in &f.keys {
        out.push_str("\n[[keys]]\n");
        out.push_str(&format!("name = {}\n", q(&k.name)));
        out.push_str(&format!("sha256 = {}\n", q(&k.sha256)));
        if let Some(e) = &k.expires {
            out.push_str(&format!("expires = {}\n", q(e)));
        }
        if !k.models.is_empty() {
            let list: Vec<String> = k.models.iter().map(|m| q(m)).collect();
            out.push_str(&format!("models = [{}]\n", list.join(", ")));
        }
        if let Some(v) = k.rps {
            out.push_str(&format!("rps = {v:?}\n"));
        }
        if let Some(v) = k.rpm {
            out.push_str(&format!("rpm = {v}\n"));
        }
        if let Some(v) = k.tpm {
            out.push_str(&format!("tpm = {v}\n"));
        }
        if let Some(v) = k.daily_budget {
            out.push_str(&format!("daily_budget = {v:?}\n"));
        }
    }
    out
}

fn save(path: &Path, f: &File) -> Result<(), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    if let Some(d) = dir {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    let tmp = path.with_extension("toml.tmp");
    let mut w = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    w.write_all(render(f).as_bytes())
        .and_then(|()| w.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    drop(w);
    take_directory_owner(&tmp, dir.unwrap_or(Path::new(".")));
    // The same checks the gateway applies, before the file takes the real name.
    if let Err(e) = read_keys_file(&tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e.to_string());
    }
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot replace {}: {e}", path.display()))
}

/// Gives `file` the owner and group of `dir` when they differ: `sudo smart-ai-router keys add`
/// on a keys file in the service's state directory (owned by its `DynamicUser`) must leave a
/// file the service can read, not a root-owned 0600 one. Only root may give a file away; for
/// anyone else the call fails and the file stays theirs (what they can read already).
fn take_directory_owner(file: &Path, dir: &Path) {
    use std::os::unix::fs::MetadataExt;
    let (Ok(d), Ok(f)) = (std::fs::metadata(dir), std::fs::metadata(file)) else {
        return;
    };
    if (d.uid(), d.gid()) != (f.uid(), f.gid()) {
        let _ = std::os::unix::fs::chown(file, Some(d.uid()), Some(d.gid()));
    }
}

/// A new random key: `sk-sar-` and 48 hex digits (192 bits from the operating system's
/// CSPRNG, through `getrandom`).
fn generate() -> Result<String, String> {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness from the OS: {e}"))?;
    let mut key = String::from("sk-sar-");
    for b in bytes {
        key.push_str(&format!("{b:02x}"));
    }
    Ok(key)
}

/// `keys add`: a new key named `name`; returns the key (to print once).
pub fn add(
    path: &Path,
    name: &str,
    models: &[String],
    expires: Option<&str>,
    limits: NewLimits,
) -> Result<String, String> {
    if let Some(e) = expires {
        let at = crate::clock::parse_time(e.trim()).ok_or_else(|| {
            format!("--expires \"{e}\" is not a date (YYYY-MM-DD, UTC) or unix seconds")
        })?;
        if at <= crate::clock::now_ms() {
            return Err(format!(
                "--expires \"{e}\" is in the past: the key would be refused from its first use"
            ));
        }
    }
    let mut f = load(path)?;
    if f.keys.iter().any(|k| k.name == name) {
        return Err(format!(
            "a key named \"{name}\" exists in {}; revoke it first or choose another name",
            path.display()
        ));
    }
    let key = generate()?;
    f.keys.push(Entry {
        name: name.to_string(),
        sha256: crate::secret::hex(&crate::secret::digest(key.as_bytes())),
        expires: expires.map(str::to_string),
        models: models.to_vec(),
        rps: limits.rps,
        rpm: limits.rpm,
        tpm: limits.tpm,
        daily_budget: limits.daily_budget,
    });
    save(path, &f)?;
    Ok(key)
}

/// `keys revoke`: removes the key named `name`.
pub fn revoke(path: &Path, name: &str) -> Result<(), String> {
    let mut f = load(path)?;
    let before = f.keys.len();
    f.keys.retain(|k| k.name != name);
    if f.keys.len() == before {
        return Err(format!("no key named \"{name}\" in {}", path.display()));
    }
    save(path, &f)
}

/// `keys list`: one line per key (name, digest prefix, expiry, allowance); never a key.
pub fn list(path: &Path) -> Result<String, String> {
    let f = load(path)?;
    let mut out = String::new();
    if f.keys.is_empty() {
        out.push_str(&format!("no keys in {}\n", path.display()));
        return Ok(out);
    }
    out.push_str(&format!(
        "{:<24} {:<14} {:<12} {:<22} models\n",
        "name", "sha256", "expires", "limits"
    ));
    for k in &f.keys {
        let mut limits = Vec::new();
        if let Some(v) = k.rps {
            limits.push(format!("{v} rps"));
        }
        if let Some(v) = k.rpm {
            limits.push(format!("{v} rpm"));
        }
        if let Some(v) = k.tpm {
            limits.push(format!("{v} tpm"));
        }
        if let Some(v) = k.daily_budget {
            limits.push(format!("{v}/day"));
        }
        out.push_str(&format!(
            "{:<24} {:<14} {:<12} {:<22} {}\n",
            k.name,
            format!("{}…", k.sha256.get(..12).unwrap_or(&k.sha256)),
            k.expires.as_deref().unwrap_or("never"),
            if limits.is_empty() {
                "none".to_string()
            } else {
                limits.join(", ")
            },
            if k.models.is_empty() {
                "any".to_string()
            } else {
                k.models.join(", ")
            }
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_list_revoke_round_trip_through_the_gateways_own_reader() {
        let dir = std::env::temp_dir().join(format!("sar-keys-{}", std::process::id()));
        let path = dir.join("keys.toml");
        let _ = std::fs::remove_dir_all(&dir);
        let a = add(&path, "team-a", &[], None, NewLimits::default()).expect("add a");
        let b = add(
            &path,
            "team-b",
            &["gpt-4o".into(), "tag:free".into()],
            Some("2030-01-01"),
            NewLimits {
                rpm: Some(60),
                ..NewLimits::default()
            },
        )
        .expect("add b");
        assert!(a.starts_with("sk-sar-") && a.len() == 7 + 48 && a != b);
        assert!(
            add(&path, "team-a", &[], None, NewLimits::default()).is_err(),
            "duplicate name"
        );
        let keys = read_keys_file(&path).expect("valid file");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].sha256, crate::secret::digest(a.as_bytes()));
        assert_eq!(keys[1].models, vec!["gpt-4o", "tag:free"]);
        assert!(keys[1].expires_ms.is_some());
        assert_eq!(keys[1].limits.rpm, Some(60));
        let text = std::fs::read_to_string(&path).expect("file");
        assert!(
            !text.contains(&a) && !text.contains(&b),
            "keys never stored"
        );
        let shown = list(&path).expect("list");
        assert!(shown.contains("team-b") && !shown.contains(&b));
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        revoke(&path, "team-a").expect("revoke");
        assert!(revoke(&path, "team-a").is_err());
        assert_eq!(read_keys_file(&path).expect("valid").len(), 1);
        // Bad input is refused before the file is replaced.
        assert!(add(&path, "bad name!", &[], None, NewLimits::default()).is_err());
        assert!(add(&path, "c", &["tag:".into()], None, NewLimits::default()).is_err());
        assert!(add(&path, "d", &[], Some("someday"), NewLimits::default()).is_err());
        let past = add(&path, "e", &[], Some("2020-01-01"), NewLimits::default());
        assert!(
            past.as_ref().is_err_and(|e| e.contains("in the past")),
            "{past:?}"
        );
        assert_eq!(read_keys_file(&path).expect("still valid").len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_keys_file_belongs_to_its_directorys_owner() {
        use std::os::unix::fs::MetadataExt;
        let root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
        let dir = std::env::temp_dir().join(format!("sar-keys-owner-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // A service's state directory, owned by its (dynamic) user.
        let (uid, gid) = if root { (65534, 65534) } else { (0, 0) };
        let given = std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).is_ok();
        let path = dir.join("keys.toml");
        add(&path, "svc", &[], None, NewLimits::default()).expect("add");
        let m = std::fs::metadata(&path).unwrap();
        if given {
            assert_eq!(
                (m.uid(), m.gid()),
                (uid, gid),
                "the service can read its keys"
            );
        }
        assert_eq!(m.mode() & 0o777, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
