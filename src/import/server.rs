//! `server:` → `[server]` (the listen address, CORS origins, the body limit) and `auth:` →
//! `[admin] token`.

use yaml_rust2::Yaml;

use super::Importer;
use super::render::{toml_str, toml_text};
use super::values::env_reference;
use super::yaml::{as_bool, as_int, describe, key, key_text, text};

impl Importer {
    pub(super) fn server(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "server",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        let host = h.get(&key("host")).and_then(text);
        let port = h.get(&key("port")).and_then(|p| {
            let n = as_int(p);
            if n.is_none() {
                self.note(
                    "server.port",
                    format!("is {}, not a port; 7601 used", describe(p)),
                );
            }
            n
        });
        if host.is_some() || port.is_some() {
            let port = match port {
                Some(p) if (1..=65535).contains(&p) => p,
                Some(p) => {
                    self.note("server.port", format!("{p} is not a port; 7601 used"));
                    7601
                }
                None => 7601,
            };
            let host = host.unwrap_or_else(|| "0.0.0.0".to_string());
            let ip = if host.eq_ignore_ascii_case("localhost") {
                Some(std::net::IpAddr::from([127, 0, 0, 1]))
            } else {
                host.trim_matches(['[', ']'])
                    .parse::<std::net::IpAddr>()
                    .ok()
            };
            let ip = match ip {
                Some(ip) if ip.is_unspecified() => {
                    self.note(
                        "server.host",
                        format!("\"{host}\" → 127.0.0.1: this build has no client API keys, so listening on every interface would lend your provider keys to the network; set [server] listen to open it"),
                    );
                    std::net::IpAddr::from([127, 0, 0, 1])
                }
                Some(ip) => ip,
                None => {
                    self.note(
                        "server.host",
                        format!("\"{host}\" is not an IP address; 127.0.0.1 used"),
                    );
                    std::net::IpAddr::from([127, 0, 0, 1])
                }
            };
            let listen = std::net::SocketAddr::new(ip, port as u16);
            self.server
                .push(format!("listen = {}", toml_str(&listen.to_string())));
        }
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("server.{k}");
            match k.as_str() {
                "host" | "port" => {}
                "cors_origins" => {
                    let Some(items) = val.as_vec() else {
                        self.note(&at, format!("is {}, not a list; dropped", describe(val)));
                        continue;
                    };
                    let mut origins = Vec::new();
                    for (j, o) in items.iter().enumerate() {
                        match text(o) {
                            Some(o) if o == "*" || is_origin(&o) => origins.push(o),
                            Some(o) if is_origin(o.trim_end_matches('/')) => {
                                origins.push(o.trim_end_matches('/').to_string())
                            }
                            _ => self.note(
                                &format!("{at}[{j}]"),
                                "not an origin (scheme://host[:port] or \"*\"); dropped",
                            ),
                        }
                    }
                    let list: Vec<String> = origins.iter().map(|o| toml_text(o)).collect();
                    self.server.push(format!("cors_origins = [{}]", list.join(", ")));
                }
                "max_request_size" => match as_int(val) {
                    Some(n) if (1024..=1 << 30).contains(&n) => {
                        self.server.push(format!("max_body = {n}"));
                        self.note(
                            &at,
                            format!("→ max_body = {n} bytes, now enforced (the original never checked it)"),
                        );
                    }
                    _ => self.note(&at, "not a size between 1 KiB and 1 GiB; dropped"),
                },
                "debug" => {
                    if as_bool(val) == Some(true) {
                        self.note(&at, "dropped: set [log] level = \"debug\" for verbose logs");
                    }
                }
                "request_timeout" => self.note(
                    &at,
                    "dropped: timeouts are per provider (total_timeout, default 600s; first_byte_timeout, default 120s)",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    pub(super) fn auth(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "auth",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("auth.{k}");
            match k.as_str() {
                "enabled" => {
                    if as_bool(val) == Some(true) {
                        self.note(
                            &at,
                            "dropped: client API tokens are not in this build yet; keep the gateway on loopback (the original never enforced them either)",
                        );
                    }
                }
                "api_token" => {
                    if let Some(t) = text(val) {
                        self.remember_secret(&t);
                    }
                    self.note(&at, "dropped: client API tokens are not in this build yet");
                }
                "admin" => self.admin(val),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn admin(&mut self, v: &Yaml) {
        let Some(h) = v.as_hash() else {
            self.note(
                "auth.admin",
                format!("is {}, not a mapping; dropped", describe(v)),
            );
            return;
        };
        // `enabled` switched token checking, not the admin API; ours checks whenever a token is
        // set (and needs one off loopback), so `enabled: false` means: carry no token.
        let checking = h.get(&key("enabled")).and_then(as_bool) != Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("auth.admin.{k}");
            match k.as_str() {
                "enabled" => {}
                "admin_token" => {
                    let Some(t) = text(val)
                        .map(|t| t.trim().to_string())
                        .filter(|t| !t.is_empty())
                    else {
                        continue;
                    };
                    if !checking {
                        self.remember_secret(&t);
                        self.note(
                            &at,
                            "dropped: auth.admin.enabled is false; the admin API stays on loopback without a token",
                        );
                        continue;
                    }
                    if let Some(reference) = env_reference(&t) {
                        self.admin.push(format!("token = {}", toml_str(&reference)));
                        self.note(
                            &at,
                            "→ [admin] token, now enforced (the original never checked it): send it as Authorization: Bearer",
                        );
                        continue;
                    }
                    self.remember_secret(&t);
                    if t.len() < 16 || t.bytes().any(|b| b.is_ascii_control() || b == b' ') {
                        self.note(
                            &at,
                            "dropped: admin tokens need 16+ printable characters without spaces; the admin API stays on loopback without one",
                        );
                    } else {
                        self.admin
                            .push(format!("token = {}", toml_str(&t.replace("${", "$${"))));
                        self.note(
                            &at,
                            "literal token carried over to [admin] token, now enforced (the original never checked it); consider token = \"${ADMIN_TOKEN}\"",
                        );
                    }
                }
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }
}

fn is_origin(o: &str) -> bool {
    (o.starts_with("http://") || o.starts_with("https://"))
        && !o.ends_with('/')
        && !o.bytes().any(|b| b <= b' ' || b == 0x7f)
}
