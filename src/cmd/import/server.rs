//! The gateway-wide tables: `server:` → `[server]` (the listen address, CORS origins, the body
//! limit), `auth:` → a client key (`[[auth.keys]]`, by its SHA-256) and `[admin] token`, and
//! `cost_control:` → `[pricing] daily_budget`.

use yaml_rust2::Yaml;

use super::render::{toml_float, toml_str, toml_text};
use super::values::env_reference;
use super::yaml::{as_bool, as_int, describe, key, key_text, number, text};
use super::{IMPORTED_KEY, Importer};

impl Importer {
    pub(super) fn server(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("server", v) else {
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
                        format!("\"{host}\" → 127.0.0.1: listening on every interface lends your provider keys to whoever can reach the port; set [server] listen to open it once client keys ([[auth.keys]]) are in place"),
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
        let Some(h) = self.mapping("auth", v) else {
            return;
        };
        // `enabled` switched the (never installed) token check; ours checks whenever a client
        // key is configured, so the token is carried only when checking was asked for.
        let enabled = h.get(&key("enabled")).and_then(as_bool) == Some(true);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("auth.{k}");
            match k.as_str() {
                "enabled" => {}
                "api_token" => self.api_token(&at, val, enabled),
                "admin" => self.admin(val),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
        if enabled && self.client_keys.is_empty() {
            self.note(
                "auth.enabled",
                "true, but no api_token carried over, so no client key is configured: add one with \
                 `smart-ai-router keys add NAME` (the gateway then requires it; it stays on loopback meanwhile)",
            );
        } else if enabled {
            self.note(
                "auth.enabled",
                "true → every request needs a client key ([[auth.keys]]), now enforced (the original never checked)",
            );
        }
    }

    /// `auth.api_token` → a client key. The config keeps only a key's SHA-256, so the token is
    /// hashed here; its value is never reported, and it is not written anywhere.
    fn api_token(&mut self, at: &str, v: &Yaml, enabled: bool) {
        let Some(token) = text(v)
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
        else {
            if !v.is_null() {
                self.note(at, format!("is {}, not a token; dropped", describe(v)));
            }
            return;
        };
        self.remember_secret(&token);
        if !enabled {
            self.note(
                at,
                "not carried over: auth.enabled is not true, so the original served without it; \
                 to require it, add it as a client key with `smart-ai-router keys add NAME`",
            );
        } else if env_reference(&token).is_some() {
            self.note(
                at,
                "not carried over: the config keeps a client key's SHA-256, and a ${VAR} cannot be \
                 hashed here; add the key with `smart-ai-router keys add NAME`, or as [[auth.keys]] \
                 with sha256 = the output of `printf %s \"$VAR\" | sha256sum`",
            );
        } else if token.chars().any(char::is_control) {
            self.note(at, "the token has control characters; dropped");
        } else {
            let sha256 = crate::secret::hex(&crate::secret::digest(token.as_bytes()));
            self.client_keys.push((IMPORTED_KEY.to_string(), sha256));
            self.note(
                at,
                format!(
                    "→ [[auth.keys]] name = \"{IMPORTED_KEY}\", by its SHA-256 (the config keeps only the \
                     digest; the token is not written): clients send it as before, as Authorization: \
                     Bearer (or x-api-key), now enforced (the original never checked it)"
                ),
            );
        }
    }

    /// `cost_control:` → `[pricing] daily_budget`, which stops requests (429) for the rest of the
    /// UTC day once spent; the original never enforced its budget at all.
    pub(super) fn cost_control(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("cost_control", v) else {
            return;
        };
        let currency = h
            .get(&key("currency"))
            .and_then(text)
            .map(|c| c.trim().to_ascii_uppercase())
            .filter(|c| !c.is_empty() && c != "USD");
        let enforce = h
            .get(&key("auto_disable_on_budget_exceeded"))
            .and_then(as_bool)
            != Some(false);
        for (k, val) in h {
            let k = key_text(k);
            let at = format!("cost_control.{k}");
            match k.as_str() {
                "global_daily_budget" => match number(val) {
                    Some(b) if b >= 0.0 && !enforce => self.note(
                        &at,
                        format!(
                            "not carried over: auto_disable_on_budget_exceeded is false, and [pricing] \
                             daily_budget = {} would stop requests once spent; set it yourself if that is wanted",
                            toml_float(b)
                        ),
                    ),
                    Some(b) if b >= 0.0 => match &currency {
                        Some(cur) => self.note(
                            &at,
                            format!(
                                "not carried over: the budget is in {cur}, which needs its rate per USD; add \
                                 [pricing] currency = \"{cur}\", rates = {{ {cur} = <{cur} per USD> }} and \
                                 daily_budget = {}",
                                toml_float(b)
                            ),
                        ),
                        None => {
                            self.pricing
                                .push(format!("daily_budget = {}", toml_float(b)));
                            self.note(
                                &at,
                                format!(
                                    "→ [pricing] daily_budget = {} (USD per UTC day), now enforced: once it is \
                                     spent, requests answer 429 until 00:00 UTC (the original never enforced it)",
                                    toml_float(b)
                                ),
                            );
                        }
                    },
                    _ => self.note(&at, "not a non-negative amount; dropped"),
                },
                "currency" => {
                    if let Some(cur) = &currency {
                        self.note(
                            &at,
                            format!(
                                "\"{cur}\" not carried over: costs are reported in USD unless [pricing] \
                                 currency and its rate per USD (rates = {{ {cur} = … }}) are set"
                            ),
                        );
                    }
                }
                // Explained with the budget; `true` is what the budget does here anyway.
                "auto_disable_on_budget_exceeded" => {}
                "alert_threshold" => self.note(
                    &at,
                    "dropped: there is no alert at a share of the budget; GET /metrics has the day's \
                     spend (smart_router_daily_cost) and smart_router_budget_exhausted",
                ),
                _ => self.note(&at, "not supported, dropped"),
            }
        }
    }

    fn admin(&mut self, v: &Yaml) {
        let Some(h) = self.mapping("auth.admin", v) else {
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
