//! The process's own tables: `[server]` (listener, limits, timeouts, CORS, TLS files),
//! `[admin]`, `[log]`, `[state]`, `[usage]`, `[discovery]` and `[health]`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{Checker, raw, units};
use crate::config::{
    AdminConfig, Cors, DiscoveryConfig, DriverChoice, HealthConfig, LogConfig, LogFormat,
    ServerConfig, TlsFiles, UsageConfig, defaults,
};
use crate::secret::Secret;

/// `[server]`.
pub(super) fn server(c: &mut Checker, s: raw::Server) -> ServerConfig {
    let listen = match s.listen.as_deref() {
        None => units::parse_listen(defaults::LISTEN).expect("default listen parses"),
        Some(l) => units::parse_listen(l).unwrap_or_else(|m| {
            c.err("server.listen", m);
            units::parse_listen(defaults::LISTEN).expect("default listen parses")
        }),
    };
    let driver = match s.driver.as_deref() {
        None | Some("auto") => DriverChoice::Auto,
        Some("io_uring") | Some("iouring") => DriverChoice::IoUring,
        Some("legacy") | Some("epoll") => DriverChoice::Legacy,
        Some(other) => {
            c.err(
                "server.driver",
                format!("\"{other}\" is not a driver; use \"auto\", \"io_uring\" or \"legacy\""),
            );
            DriverChoice::Auto
        }
    };
    let cors = match s.cors_origins {
        None => Cors::Off,
        Some(list) if list.is_empty() => Cors::Off,
        Some(list) if list.iter().any(|o| o == "*") => Cors::Any,
        Some(list) => {
            for (i, o) in list.iter().enumerate() {
                if !(o.starts_with("http://") || o.starts_with("https://"))
                    || o.ends_with('/')
                    || o.bytes().any(|b| b <= b' ' || b == 0x7f)
                {
                    c.err(
                        format!("server.cors_origins[{i}]"),
                        format!("\"{o}\" is not an origin; write scheme://host[:port] without a path, or \"*\""),
                    );
                }
            }
            Cors::List(list)
        }
    };
    ServerConfig {
        listen,
        workers: c.int("server.workers", s.workers, defaults::WORKERS, 0, 1024),
        driver,
        pin_workers: s.pin_workers.unwrap_or(true),
        tick: c.duration(
            "server.tick",
            s.tick,
            defaults::TICK,
            Duration::from_millis(1),
        ),
        max_header_bytes: c.size(
            "server.max_header_bytes",
            s.max_header_bytes,
            defaults::MAX_HEADER_BYTES,
            1024,
            1 << 20,
        ) as usize,
        max_headers: c.int(
            "server.max_headers",
            s.max_headers,
            defaults::MAX_HEADERS,
            8,
            crate::h1::head::MAX_HEADERS as i64,
        ),
        max_body: c.size(
            "server.max_body",
            s.max_body,
            defaults::MAX_BODY,
            1024,
            1 << 30,
        ) as usize,
        max_buffered: c.size(
            "server.max_buffered",
            s.max_buffered,
            defaults::MAX_BUFFERED,
            1 << 20,
            1 << 40,
        ) as usize,
        // 0 turns validation off; above the 64 MiB relay cap it would mean nothing.
        max_validated_body: c.size(
            "server.max_validated_body",
            s.max_validated_body,
            defaults::MAX_VALIDATED_BODY,
            0,
            64 << 20,
        ) as usize,
        max_connections: c.int(
            "server.max_connections",
            s.max_connections,
            defaults::MAX_CONNECTIONS,
            1,
            1 << 20,
        ),
        header_timeout: c.duration(
            "server.header_timeout",
            s.header_timeout,
            defaults::HEADER_TIMEOUT,
            Duration::from_millis(10),
        ),
        body_timeout: c.duration(
            "server.body_timeout",
            s.body_timeout,
            defaults::BODY_TIMEOUT,
            Duration::from_millis(10),
        ),
        idle_timeout: c.duration(
            "server.idle_timeout",
            s.idle_timeout,
            defaults::IDLE_TIMEOUT,
            Duration::from_millis(10),
        ),
        drain_timeout: c.duration(
            "server.drain_timeout",
            s.drain_timeout,
            defaults::DRAIN_TIMEOUT,
            Duration::ZERO,
        ),
        dns_refresh: c.duration(
            "server.dns_refresh",
            s.dns_refresh,
            defaults::DNS_REFRESH,
            Duration::from_secs(1),
        ),
        cors,
        hosts_file: match s.hosts_file.filter(|f| !f.is_empty()) {
            Some(f) if Path::new(&f).is_absolute() => Some(PathBuf::from(f)),
            Some(f) => {
                c.err(
                    "server.hosts_file",
                    format!("\"{f}\" must be an absolute path"),
                );
                None
            }
            None => None,
        },
        tls: s.tls.and_then(|t| {
            let file = |c: &mut Checker, k: &str, v: Option<String>| match v {
                Some(p) if Path::new(&p).is_absolute() => Some(PathBuf::from(p)),
                Some(p) => {
                    c.err(
                        format!("server.tls.{k}"),
                        format!("\"{p}\" must be an absolute path"),
                    );
                    None
                }
                None => {
                    c.err(
                        format!("server.tls.{k}"),
                        "required with [server.tls] (a PEM file)",
                    );
                    None
                }
            };
            let cert = file(c, "cert", t.cert);
            let key = file(c, "key", t.key);
            Some(TlsFiles {
                cert: cert?,
                key: key?,
            })
        }),
    }
}

/// `[discovery]`.
pub(super) fn discovery(c: &mut Checker, d: raw::Discovery) -> DiscoveryConfig {
    let ms = Duration::from_millis(1);
    DiscoveryConfig {
        enabled: d.enabled.unwrap_or(true),
        interval: c.duration(
            "discovery.interval",
            d.interval,
            defaults::DISCOVERY_INTERVAL,
            Duration::from_secs(1),
        ),
        timeout: c.duration(
            "discovery.timeout",
            d.timeout,
            defaults::DISCOVERY_TIMEOUT,
            ms,
        ),
        concurrency: c.int(
            "discovery.concurrency",
            d.concurrency,
            defaults::DISCOVERY_CONCURRENCY,
            1,
            256,
        ),
    }
}

/// `[health]`.
pub(super) fn health(c: &mut Checker, h: raw::Health) -> HealthConfig {
    let ms = Duration::from_millis(1);
    HealthConfig {
        enabled: h.enabled.unwrap_or(true),
        interval: c.duration("health.interval", h.interval, defaults::HEALTH_INTERVAL, ms),
        timeout: c.duration("health.timeout", h.timeout, defaults::HEALTH_TIMEOUT, ms),
    }
}

/// `[usage]`.
pub(super) fn usage(c: &mut Checker, u: raw::Usage) -> UsageConfig {
    UsageConfig {
        log: u.log.unwrap_or(true),
        retain_days: match u.retain_days {
            None => UsageConfig::default().retain_days,
            Some(n) if (0..=36_500).contains(&n) => n as u32,
            Some(n) => {
                c.err(
                    "usage.retain_days",
                    format!("must be between 0 (keep every file) and 36500, got {n}"),
                );
                0
            }
        },
    }
}

/// `[state] dir`.
pub(super) fn state_dir(c: &mut Checker, s: raw::State) -> Option<PathBuf> {
    let state_dir = s.dir.map(PathBuf::from);
    if let Some(d) = &state_dir
        && !d.is_absolute()
    {
        c.err(
            "state.dir",
            format!("\"{}\" must be an absolute path", d.display()),
        );
    }
    state_dir
}

/// `[admin]` (not `enabled = false`): the admin listener exists only when the table is present
/// (DESIGN.md §4).
pub(super) fn admin(c: &mut Checker, a: raw::Admin) -> AdminConfig {
    let listen = units::parse_listen(a.listen.as_deref().unwrap_or(defaults::ADMIN_LISTEN))
        .unwrap_or_else(|m| {
            c.err("admin.listen", m);
            units::parse_listen(defaults::ADMIN_LISTEN).expect("default admin listen parses")
        });
    let token = a.token.filter(|t| !t.is_empty());
    if let Some(t) = &token
        && (t.len() < 16 || t.bytes().any(|b| b.is_ascii_control() || b == b' '))
    {
        c.err(
            "admin.token",
            "use at least 16 printable characters without spaces",
        );
    }
    if token.is_none() && !listen.ip().is_loopback() {
        c.err(
            "admin.token",
            format!(
                "required when admin.listen ({listen}) is not a loopback address: the admin API can change routing"
            ),
        );
    }
    AdminConfig {
        listen,
        token: token.map(Secret::new),
    }
}

/// `[log]`.
pub(super) fn log(c: &mut Checker, l: raw::Log) -> LogConfig {
    LogConfig {
        access: l.access.unwrap_or(false),
        format: match l.format.as_deref() {
            None | Some("logfmt") => LogFormat::Logfmt,
            Some("json") => LogFormat::Json,
            Some(other) => {
                c.err(
                    "log.format",
                    format!("\"{other}\" is not a format; use \"logfmt\" or \"json\""),
                );
                LogFormat::Logfmt
            }
        },
        level: match l.level.as_deref() {
            None => tracing::Level::INFO,
            Some(l) => match l.to_ascii_lowercase().as_str() {
                "error" => tracing::Level::ERROR,
                "warn" => tracing::Level::WARN,
                "info" => tracing::Level::INFO,
                "debug" => tracing::Level::DEBUG,
                "trace" => tracing::Level::TRACE,
                _ => {
                    c.err(
                        "log.level",
                        format!("\"{l}\" is not a level; use error, warn, info, debug or trace"),
                    );
                    tracing::Level::INFO
                }
            },
        },
    }
}
