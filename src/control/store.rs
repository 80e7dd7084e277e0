//! The state directory (`[state] dir`): the discovery cache and the admin overrides, so a
//! restart serves at once from what it knew and keeps what an operator changed.
//!
//! Layout: `discovery/<channel id>-<16 hex of SHA-256(api key, NUL, base URL)>.tsv` (the
//! model list, one line per model: `catalog::discovered::to_cache`) and `overrides.json`. A changed key or endpoint
//! gives a new file name, so a list fetched with one key or from one endpoint is never served
//! for another.
//!
//! Invariants: no file ever contains an API key (only a hash prefix in the name). Writes are
//! atomic (temp file, fsync, rename, fsync of the directory) and happen on a helper thread,
//! never on the control loop; a caller that must know a write is durable (admin overrides,
//! shutdown) waits for its acknowledgement. A corrupt or unreadable file is reported and
//! ignored, never fatal.

#![allow(clippy::disallowed_methods)] // file I/O belongs here (helper thread and start-up)

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use simd_json::prelude::*;

use crate::catalog::discovered::{self, Discovered, DiscoveryMap};
use crate::channel::{ChannelOverride, Overrides};
use crate::config::Config;
use crate::json;

/// Work for the writer thread.
#[derive(Debug)]
enum Job {
    /// Write a file atomically; acknowledge when durable, if asked.
    Write(PathBuf, Vec<u8>, Option<Sender<()>>),
    /// Append to a file (usage lines), creating it.
    Append(PathBuf, Vec<u8>),
    /// Delete usage files of days before this one (`YYYY-MM-DD`, compared as text).
    Prune(String),
    /// Acknowledge once every earlier write is done.
    Barrier(Sender<()>),
}

/// The state directory and its writer thread.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    dir: Option<PathBuf>,
    writes: Option<Sender<Job>>,
}

impl Store {
    /// `dir` for reading only (the offline `route` command): nothing is created or written.
    pub(crate) fn read_only(dir: Option<PathBuf>) -> Store {
        Store { dir, writes: None }
    }

    /// Opens `dir` (creating it); `None` or an unusable directory means nothing persists.
    pub(crate) fn open(dir: Option<PathBuf>) -> Store {
        let Some(dir) = dir else {
            return Store {
                dir: None,
                writes: None,
            };
        };
        if let Err(e) = private_dir(&dir)
            .and_then(|()| private_dir(&dir.join("discovery")))
            .and_then(|()| private_dir(&dir.join("usage")))
        {
            tracing::warn!(dir = %dir.display(), error = %e, "state dir unusable; nothing will persist");
            return Store {
                dir: None,
                writes: None,
            };
        }
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let dir_for_prune = dir.join("usage");
        let spawned = std::thread::Builder::new()
            .name("sar-store".into())
            .spawn(move || {
                while let Ok(job) = rx.recv() {
                    match job {
                        Job::Write(path, bytes, ack) => {
                            if let Err(e) = write_atomic(&path, &bytes) {
                                tracing::warn!(path = %path.display(), error = %e, "cannot write state file");
                            }
                            if let Some(a) = ack {
                                let _ = a.send(());
                            }
                        }
                        Job::Append(path, bytes) => {
                            if let Err(e) = append(&path, &bytes) {
                                tracing::warn!(path = %path.display(), error = %e, "cannot append usage records");
                            }
                        }
                        Job::Prune(before) => prune_usage(&dir_for_prune, &before),
                        Job::Barrier(ack) => {
                            let _ = ack.send(());
                        }
                    }
                }
            });
        Store {
            writes: spawned.ok().map(|_| tx),
            dir: Some(dir),
        }
    }

    /// The directory, if state persists.
    pub(crate) fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    fn discovery_path(&self, channel: &str, key: &str, base_url: &str) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join("discovery")
                .join(format!("{channel}-{}.tsv", cache_key(key, base_url))),
        )
    }

    /// Every cached model list for the channels of `cfg` (blocking: call at start-up or on a
    /// reload). Files are read and parsed on every CPU at once: a warm restart of a large
    /// deployment is dominated by this.
    pub(crate) fn load_discovery(&self, cfg: &Config) -> DiscoveryMap {
        let jobs: Vec<(&str, PathBuf)> = cfg
            .channels
            .iter()
            .filter_map(|ch| {
                let base = cfg.channel_base_url(ch)?.to_url();
                Some((
                    ch.id.as_str(),
                    self.discovery_path(&ch.id, ch.api_key.expose(), &base)?,
                ))
            })
            .collect();
        let threads = std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .clamp(1, 8)
            .min(jobs.len().div_ceil(8).max(1));
        let chunk = jobs.len().div_ceil(threads).max(1);
        let mut out = DiscoveryMap::new();
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| {
                    scope.spawn(move || {
                        part.iter()
                            .filter_map(|(id, path)| load_one(id, path))
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            for h in handles {
                out.extend(h.join().unwrap_or_default());
            }
        });
        out
    }

    /// Queues a channel's model list for writing.
    pub(crate) fn save_discovery(
        &self,
        channel: &str,
        key: &str,
        base_url: &str,
        models: &[Discovered],
    ) {
        if let (Some(path), Some(w)) = (self.discovery_path(channel, key, base_url), &self.writes) {
            let _ = w.send(Job::Write(path, discovered::to_cache(models), None));
        }
    }

    /// The saved overrides (blocking: call at start-up).
    pub(crate) fn load_overrides(&self) -> Overrides {
        let Some(path) = self.dir.as_ref().map(|d| d.join("overrides.json")) else {
            return Overrides::default();
        };
        let Ok(bytes) = std::fs::read(&path) else {
            return Overrides::default();
        };
        match parse_overrides(&bytes) {
            Some(o) => o,
            None => {
                tracing::warn!(path = %path.display(), "corrupt overrides file ignored");
                Overrides::default()
            }
        }
    }

    /// Queues the overrides for writing; the receiver fires once they are durable (none when
    /// nothing persists).
    pub(crate) fn save_overrides(&self, o: &Overrides) -> Option<Receiver<()>> {
        let (dir, w) = (self.dir.as_ref()?, self.writes.as_ref()?);
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.send(Job::Write(
            dir.join("overrides.json"),
            overrides_json(o),
            Some(tx),
        ))
        .ok()?;
        Some(rx)
    }

    /// Appends usage lines to the day's file (`usage/YYYY-MM-DD.jsonl`).
    pub(crate) fn append_usage(&self, day: &str, lines: Vec<u8>) {
        let (Some(dir), Some(w)) = (&self.dir, &self.writes) else {
            return;
        };
        let path = dir.join("usage").join(format!("{day}.jsonl"));
        let _ = w.send(Job::Append(path, lines));
    }

    /// Deletes usage files older than `days` days before `today_ms` (on the writer thread).
    pub(crate) fn prune_usage(&self, today_ms: u64, days: u32) {
        let Some(w) = &self.writes else {
            return;
        };
        if days == 0 {
            return;
        }
        let cutoff = today_ms.saturating_sub(u64::from(days) * 86_400_000);
        let _ = w.send(Job::Prune(crate::clock::day(cutoff)));
    }

    /// The saved daily counters (blocking: call at start-up).
    pub(crate) fn load_counters(&self) -> Option<Vec<u8>> {
        std::fs::read(self.dir.as_ref()?.join("usage").join("counters.json")).ok()
    }

    /// Queues the daily counters for writing (atomically).
    pub(crate) fn save_counters(&self, bytes: Vec<u8>) {
        let (Some(dir), Some(w)) = (&self.dir, &self.writes) else {
            return;
        };
        let _ = w.send(Job::Write(
            dir.join("usage").join("counters.json"),
            bytes,
            None,
        ));
    }

    /// The usage file of a day, if state persists.
    pub(crate) fn usage_file(&self, day: &str) -> Option<PathBuf> {
        Some(
            self.dir
                .as_ref()?
                .join("usage")
                .join(format!("{day}.jsonl")),
        )
    }

    /// Fires once every write queued before it is done (shutdown waits for this).
    pub(crate) fn flush(&self) -> Option<Receiver<()>> {
        let w = self.writes.as_ref()?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        w.send(Job::Barrier(tx)).ok()?;
        Some(rx)
    }
}

/// One channel's cached list, if its file exists and parses.
fn load_one(id: &str, path: &Path) -> Option<(String, Arc<[Discovered]>)> {
    let bytes = std::fs::read(path).ok()?;
    match discovered::from_cache(&bytes) {
        Ok(models) => Some((id.to_string(), Arc::from(models))),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "corrupt discovery cache ignored");
            None
        }
    }
}

/// 16 hex digits of SHA-256(`key`, NUL, `base_url`): identifies the key and endpoint without
/// revealing the key.
pub(crate) fn cache_key(key: &str, base_url: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(key.as_bytes());
    h.update([0u8]);
    h.update(base_url.as_bytes());
    h.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Removes `YYYY-MM-DD.jsonl` files of days before `before`.
fn prune_usage(dir: &Path, before: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(day) = name.to_str().and_then(|n| n.strip_suffix(".jsonl")) else {
            continue;
        };
        if day.len() == 10 && crate::clock::parse_time(day).is_some() && day < before {
            match std::fs::remove_file(e.path()) {
                Ok(()) => tracing::info!(file = %e.path().display(), "old usage file removed"),
                Err(err) => {
                    tracing::warn!(file = %e.path().display(), error = %err, "cannot remove old usage file")
                }
            }
        }
    }
}

/// Creates `dir` (and its parents) readable by the gateway's user only (0700), and tightens
/// an existing one: usage files name clients, models and spend; the discovery cache names
/// every channel.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let meta = std::fs::metadata(dir)?;
    if meta.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Every state file is created 0600 (owner only), whatever the process umask.
fn private_file() -> std::fs::OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut o = std::fs::OpenOptions::new();
    o.mode(0o600);
    o
}

fn append(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt;
    let mut f = private_file().create(true).append(true).open(path)?;
    // A file an older version created with the umask's mode is tightened on its next write.
    if f.metadata()?.permissions().mode() & 0o077 != 0 {
        f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    f.write_all(bytes)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    {
        let mut f = private_file()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    // The rename itself is durable only once the directory is synced.
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// `{"channels":{"id":{"enabled":false,"priority":5}}}`
pub(crate) fn overrides_json(o: &Overrides) -> Vec<u8> {
    let mut b = b"{\"channels\":{".to_vec();
    for (i, (id, ov)) in o.channels.iter().enumerate() {
        if i > 0 {
            b.push(b',');
        }
        json::write_key(&mut b, id);
        b.push(b'{');
        let mut first = true;
        if let Some(e) = ov.enabled {
            b.extend_from_slice(if e {
                b"\"enabled\":true"
            } else {
                b"\"enabled\":false"
            });
            first = false;
        }
        if let Some(p) = ov.priority {
            if !first {
                b.push(b',');
            }
            b.extend_from_slice(b"\"priority\":");
            b.extend_from_slice(itoa::Buffer::new().format(p).as_bytes());
        }
        b.push(b'}');
    }
    b.extend_from_slice(b"}}");
    b
}

fn parse_overrides(bytes: &[u8]) -> Option<Overrides> {
    let mut copy = bytes.to_vec();
    let v = simd_json::to_owned_value(&mut copy).ok()?;
    let mut channels = BTreeMap::new();
    for (id, ov) in v.get("channels")?.as_object()? {
        let enabled = ov.get("enabled").and_then(|x| x.as_bool());
        let priority = ov
            .get("priority")
            .and_then(|x| x.as_i64())
            .map(|p| p.clamp(-1_000_000, 1_000_000) as i32);
        channels.insert(id.to_string(), ChannelOverride { enabled, priority });
    }
    Some(Overrides { channels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pruning_removes_only_old_daily_usage_files() {
        let dir = std::env::temp_dir().join(format!("sar-prune-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in [
            "2026-01-01.jsonl",
            "2026-11-25.jsonl",
            "counters.json",
            "notes.jsonl",
        ] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        prune_usage(&dir, "2026-06-01");
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["2026-11-25.jsonl", "counters.json", "notes.jsonl"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn state_files_and_directories_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let dir = std::env::temp_dir().join(format!("sar-private-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("usage")).unwrap();
        std::fs::set_permissions(dir.join("usage"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        let old = dir.join("usage").join("2026-01-01.jsonl");
        std::fs::write(&old, b"{}\n").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        let _store = Store::open(Some(dir.clone()));
        for d in [dir.clone(), dir.join("usage"), dir.join("discovery")] {
            assert_eq!(mode(&d), 0o700, "{}", d.display());
        }
        write_atomic(&dir.join("overrides.json"), b"{}").unwrap();
        append(&dir.join("usage").join("2026-01-02.jsonl"), b"{}\n").unwrap();
        append(&old, b"{}\n").unwrap();
        for f in [
            "overrides.json",
            "usage/2026-01-02.jsonl",
            "usage/2026-01-01.jsonl",
        ] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn overrides_round_trip() {
        let mut o = Overrides::default();
        o.channels.insert(
            "a".into(),
            ChannelOverride {
                enabled: Some(false),
                priority: Some(5),
            },
        );
        o.channels.insert(
            "b".into(),
            ChannelOverride {
                enabled: None,
                priority: Some(-2),
            },
        );
        assert_eq!(parse_overrides(&overrides_json(&o)), Some(o));
        assert_eq!(parse_overrides(b"{garbage"), None);
    }

    #[test]
    fn cache_keys_hide_the_key_and_follow_the_endpoint() {
        let h = cache_key("sk-live-secret", "https://a.example/v1");
        assert_eq!(h.len(), 16);
        assert!(!h.contains("secret"));
        assert_ne!(h, cache_key("sk-live-other", "https://a.example/v1"));
        assert_ne!(h, cache_key("sk-live-secret", "https://b.example/v1"));
    }
}
