//! The operators' status page on the admin listener: `GET /` (HTML rendered here, readable
//! without scripts), `GET /status.json` (the feed its script refreshes it from every few
//! seconds), `GET /static/…` (its stylesheet and script, embedded in the binary), and the
//! sign-in form (`GET`/`POST /login`, `POST /logout`). The page's buttons call the existing
//! admin API (`/admin/channels/{id}/disable`, `/admin/cooldowns/{id}`, `/admin/reload`, …)
//! with the session's CSRF token; nothing here changes routing.
//!
//! Invariants: every text that reaches HTML goes through [`esc`] (channel ids, model names and
//! reasons come from config and discovery); the page and the feed show only what the admin
//! views show (no key, only fingerprints) and the same figures: the feed is built from
//! `views`, `usage::today` and `fleet`, and the HTML is rendered from the feed's own JSON, so
//! the two cannot disagree. The CSRF token is written into a `<meta>` tag, never a URL. No
//! inline script or style: the content security policy (`admin::Answer::html`) allows this
//! listener's assets only. Works offline: no CDN, no framework.
//! Not here: credentials and sessions (`admin`, `session`), the figures (`views`,
//! `metrics::window`).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::rc::Rc;

use serde::Serialize;
use serde_json::Value;

use super::super::Ctl;
use super::session::{self, Sessions};
use super::{Access, Answer, Req, serialize, usage, views};
use crate::error::Error;

const CSS: &str = include_str!("assets/status.css");
const JS: &str = include_str!("assets/status.js");

/// Answers the page's paths; `None` for every other path (the admin API's).
pub(super) fn handle(
    ctl: &Rc<Ctl>,
    req: &Req,
    access: &Access,
    sessions: &RefCell<Sessions>,
) -> Option<Answer> {
    let m = req.method.as_str();
    let answer = match (m, req.path.as_str()) {
        ("GET", "/") => page(ctl, access),
        ("GET", "/status.json") => feed(ctl, access).map_or_else(Answer::error, Answer::json),
        ("GET", "/login") if token_required(ctl) => Answer::html(200, login_page(None)),
        ("GET" | "POST", "/login") if !token_required(ctl) => Answer::redirect("/"),
        ("POST", "/login") => login(ctl, req, sessions),
        ("POST", "/logout") => {
            if let Some(c) = &req.cookie {
                sessions.borrow_mut().close(c);
            }
            let mut a = Answer::redirect("/login");
            a.extra.push((b"set-cookie", session::clear_cookie()));
            a
        }
        ("GET", "/static/status.css") => Answer::ok(b"text/css; charset=utf-8", CSS.into()),
        ("GET", "/static/status.js") => Answer::ok(b"text/javascript; charset=utf-8", JS.into()),
        ("GET", p) if p.starts_with("/static/") => Answer::error(Error::unknown_route(m, p)),
        (_, p @ ("/" | "/status.json")) => Answer::error(Error::method_not_allowed(m, p, "GET")),
        (_, p @ "/login") => Answer::error(Error::method_not_allowed(m, p, "GET, POST")),
        (_, p @ "/logout") => Answer::error(Error::method_not_allowed(m, p, "POST")),
        _ => return None,
    };
    Some(answer)
}

fn token_required(ctl: &Ctl) -> bool {
    let st = ctl.st.borrow();
    st.cfg.admin.as_ref().is_some_and(|a| a.token.is_some())
}

/// `POST /login` (`token=…`, form-urlencoded): a session cookie and 303 to the page, or the
/// form again with 401.
fn login(ctl: &Ctl, req: &Req, sessions: &RefCell<Sessions>) -> Answer {
    let given = form_field(&req.body, "token").unwrap_or_default();
    let token = {
        let st = ctl.st.borrow();
        st.cfg.admin.as_ref().and_then(|a| a.token.clone())
    };
    let Some(token) = token else {
        return Answer::redirect("/");
    };
    let expected = token.expose().as_bytes();
    if !crate::secret::same(given.trim().as_bytes(), expected) {
        tracing::warn!("status page sign-in refused: wrong admin token");
        return Answer::html(401, login_page(Some("That token is not valid.")));
    }
    let Some(s) = sessions
        .borrow_mut()
        .open(expected, std::time::Instant::now())
    else {
        return Answer::error(Error::internal("no randomness for a session id"));
    };
    tracing::info!("status page sign-in");
    let mut a = Answer::redirect("/");
    a.extra.push((b"set-cookie", s.set_cookie()));
    a
}

/// A field of a form-urlencoded body (`+` is a space, `%XX` a byte).
fn form_field(body: &[u8], name: &str) -> Option<String> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let eq = pair.iter().position(|b| *b == b'=').unwrap_or(pair.len());
        if &pair[..eq] != name.as_bytes() {
            return None;
        }
        let raw: Vec<u8> = pair[(eq + 1).min(pair.len())..]
            .iter()
            .map(|b| if *b == b'+' { b' ' } else { *b })
            .collect();
        Some(crate::h1::percent_decode(&raw))
    })
}

/// The feed: `{"version","driver","now_unix","access","snapshot","channels","usage","cluster"}`.
#[derive(Serialize)]
struct Feed<'a> {
    version: &'static str,
    driver: &'static str,
    now_unix: f64,
    /// How this request was let in: `session`, `bearer` or `open` (no admin token).
    access: &'static str,
    snapshot: views::SnapshotView<'a>,
    channels: Vec<ChannelRow<'a>>,
    usage: usage::TodayView<'a>,
    /// This instance's view of the fleet with `[cluster]` (`null` alone).
    cluster: Option<Value>,
}

/// A channel as `/admin/channels/{id}` shows it, with its model names.
#[derive(Serialize)]
struct ChannelRow<'a> {
    #[serde(flatten)]
    channel: views::ChannelView<'a>,
    model_names: Vec<&'a str>,
}

/// The feed as a JSON value (the page renders from it too).
fn feed_value(ctl: &Ctl, access: &Access) -> Result<Value, Error> {
    let st = ctl.st.borrow();
    let snap = &st.current;
    let channels = (0..snap.channels.len())
        .map(|i| ChannelRow {
            channel: views::channel(&st, i),
            model_names: snap
                .catalog
                .entries
                .iter()
                .filter(|e| e.channel as usize == i)
                .map(|e| &*e.model)
                .collect(),
        })
        .collect();
    #[cfg(feature = "cluster")]
    let cluster = match &*ctl.cluster.borrow() {
        Some(f) => super::fleet::cluster(Some(f))
            .ok()
            .and_then(|v| serde_json::to_value(v).ok()),
        None => None,
    };
    #[cfg(not(feature = "cluster"))]
    let cluster = None;
    let doc = Feed {
        version: crate::VERSION,
        driver: ctl.board.driver.driver.as_str(),
        now_unix: crate::clock::now_ms() as f64 / 1000.0,
        access: match access {
            Access::Session { .. } => "session",
            Access::Bearer => "bearer",
            Access::Open | Access::Public => "open",
        },
        snapshot: views::snapshot(ctl, &st),
        channels,
        usage: usage::today(&st),
        cluster,
    };
    serde_json::to_value(&doc).map_err(|e| Error::internal(format!("cannot write the feed: {e}")))
}

fn feed(ctl: &Ctl, access: &Access) -> Result<Vec<u8>, Error> {
    serialize(&feed_value(ctl, access)?)
}

/// `GET /`: the whole page, every section rendered from the feed.
fn page(ctl: &Ctl, access: &Access) -> Answer {
    let doc = match feed_value(ctl, access) {
        Ok(d) => d,
        Err(e) => return Answer::error(e),
    };
    let csrf = match access {
        Access::Session { csrf } => csrf.as_str(),
        _ => "",
    };
    let mut h = String::with_capacity(32 * 1024);
    head(&mut h, "smart-ai-router status", csrf);
    let _ = write!(
        h,
        "<header><h1>smart-ai-router</h1><p id=\"meta\">{}</p>",
        meta(&doc)
    );
    if csrf.is_empty() {
        h.push_str("</header>");
    } else {
        h.push_str(
            "<form method=\"post\" action=\"/logout\"><button type=\"submit\">Sign out</button></form></header>",
        );
    }
    h.push_str("<div id=\"flash\" role=\"status\" aria-live=\"polite\"></div>");
    let _ = write!(
        h,
        "<section><h2>Gateway</h2><div id=\"gateway\">{}</div></section>",
        gateway(&doc)
    );
    let _ = write!(
        h,
        "<section><h2>Channels</h2><div id=\"channels\">{}</div></section>",
        channels(&doc)
    );
    let _ = write!(
        h,
        "<section><h2>Usage today</h2><div id=\"usage\">{}</div></section>",
        usage_tables(&doc)
    );
    let _ = write!(
        h,
        "<section><h2>Config and reloads</h2><div id=\"system\">{}</div>\
         <p class=\"actions\"><button type=\"button\" data-action=\"reload\">Reload config</button> \
         <button type=\"button\" data-action=\"discover\">Refresh discovery</button></p></section>",
        system(&doc)
    );
    let _ = write!(
        h,
        "<section id=\"fleet\"{}><h2>Fleet</h2><div id=\"cluster\">{}</div></section>",
        if doc["cluster"].is_null() {
            " hidden"
        } else {
            ""
        },
        cluster(&doc)
    );
    h.push_str("<script src=\"/static/status.js\"></script></body></html>");
    Answer::html(200, h)
}

/// The sign-in form (`error`: why the last try failed).
fn login_page(error: Option<&str>) -> String {
    let mut h = String::with_capacity(2048);
    head(&mut h, "smart-ai-router: sign in", "");
    h.push_str("<main class=\"login\"><h1>smart-ai-router</h1>");
    if let Some(e) = error {
        let _ = write!(h, "<p class=\"error\" role=\"alert\">{}</p>", esc(e));
    }
    h.push_str(
        "<form method=\"post\" action=\"/login\"><label for=\"token\">Admin token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required autofocus>\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">The <code>[admin] token</code> of the gateway's config. Scripts and API \
         clients may send it as <code>Authorization: Bearer</code> instead.</p></main></body></html>",
    );
    h
}

fn head(h: &mut String, title: &str, csrf: &str) {
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"csrf-token\" content=\"{}\"><title>{}</title>\
         <link rel=\"stylesheet\" href=\"/static/status.css\"></head><body>",
        esc(csrf),
        esc(title)
    );
}

/// HTML-escapes text for element content and quoted attributes.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A value as escaped text (`–` for null).
fn text(v: &Value) -> String {
    match v {
        Value::Null => "–".into(),
        Value::String(s) => esc(s),
        v => esc(&v.to_string()),
    }
}

/// A number with `digits` decimals (`–` for null).
fn num(v: &Value, digits: usize) -> String {
    v.as_f64()
        .map_or_else(|| "–".into(), |x| format!("{x:.digits$}"))
}

/// Unix seconds as `HH:MM:SS` UTC.
fn clock(v: &Value) -> String {
    let Some(t) = v.as_f64() else {
        return "–".into();
    };
    let s = (t.max(0.0) as u64) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

fn meta(doc: &Value) -> String {
    format!(
        "v{} · {} · epoch {} · updated {} UTC",
        text(&doc["version"]),
        text(&doc["driver"]),
        text(&doc["snapshot"]["epoch"]),
        clock(&doc["now_unix"])
    )
}

fn gateway(doc: &Value) -> String {
    let t = &doc["snapshot"]["traffic"];
    let mut h = String::from("<dl class=\"cards\">");
    for (label, v) in [
        ("in flight", text(&t["in_flight"])),
        ("streams", text(&t["streams"])),
        ("connections", text(&t["connections"])),
    ] {
        let _ = write!(h, "<div><dt>{label}</dt><dd>{v}</dd></div>");
    }
    for span in ["1m", "5m"] {
        let w = &t["window"][span];
        let _ = write!(
            h,
            "<div><dt>req/s ({span})</dt><dd>{}</dd></div>\
             <div><dt>errors ({span})</dt><dd>{}</dd></div>\
             <div><dt>latency p50/p99 ({span})</dt><dd>{} / {} ms</dd></div>\
             <div><dt>overhead p50/p99 ({span})</dt><dd>{} / {} ms</dd></div>",
            num(&w["requests_per_s"], 2),
            percent(&w["error_rate"]),
            num(&w["latency_p50_ms"], 1),
            num(&w["latency_p99_ms"], 1),
            num(&w["overhead_p50_ms"], 2),
            num(&w["overhead_p99_ms"], 2),
        );
    }
    h.push_str("</dl>");
    h
}

/// An amount of money: 4 decimals, 6 below a cent (`–` for null).
fn money(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x != 0.0 && x.abs() < 0.01 => format!("{x:.6}"),
        _ => num(v, 4),
    }
}

fn percent(v: &Value) -> String {
    v.as_f64()
        .map_or_else(|| "–".into(), |x| format!("{:.1}%", x * 100.0))
}

/// A channel's state in words: healthy, cooling (why, until when), half-open, disabled, and
/// the endpoints and models out of rotation.
fn state(c: &Value) -> String {
    let h = &c["health"];
    let s = c["state"].as_str().unwrap_or("");
    let mut out = match s {
        "ok" => "<span class=\"badge ok\">healthy</span>".to_string(),
        "disabled" => "<span class=\"badge disabled\">disabled</span>".to_string(),
        "half_open" => format!(
            "<span class=\"badge half_open\">half-open</span> <span class=\"why\">{}</span>",
            text(&h["reason"])
        ),
        "cooling" => format!(
            "<span class=\"badge cooling\">cooling</span> <span class=\"why\">{} until {} UTC ({}s)</span>",
            text(&h["reason"]),
            clock(&h["until_unix"]),
            num(&h["remaining_s"], 0)
        ),
        other => format!("<span class=\"badge\">{}</span>", esc(other)),
    };
    if let Some(eps) = c["endpoint_cooldowns"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<String> = eps.iter().map(|e| text(&e["endpoint"])).collect();
        let _ = write!(
            out,
            "<div class=\"why\">endpoint unsupported: {}</div>",
            names.join(", ")
        );
    }
    if let Some(ms) = c["model_cooldowns"].as_array().filter(|a| !a.is_empty()) {
        let names: Vec<String> = ms.iter().map(|m| text(&m["model"])).collect();
        let _ = write!(
            out,
            "<div class=\"why\">models out: {}</div>",
            names.join(", ")
        );
    }
    out
}

fn span_stats(w: &Value) -> String {
    format!(
        "{} req/s · {} err<br>lat {} / {} ms<br>ttft {} / {} ms",
        num(&w["requests_per_s"], 2),
        percent(&w["error_rate"]),
        num(&w["latency_p50_ms"], 0),
        num(&w["latency_p99_ms"], 0),
        num(&w["ttft_p50_ms"], 0),
        num(&w["ttft_p99_ms"], 0)
    )
}

fn channels(doc: &Value) -> String {
    let mut h = String::from(
        "<table class=\"channels\"><thead><tr><th>Channel</th><th>State</th><th>Models</th>\
         <th>Last 1 min</th><th>Last 5 min</th><th>Actions</th></tr></thead><tbody>",
    );
    for c in doc["channels"].as_array().into_iter().flatten() {
        let id = text(&c["id"]);
        let models: Vec<String> = c["model_names"]
            .as_array()
            .into_iter()
            .flatten()
            .map(text)
            .collect();
        let shown = if models.len() > 6 {
            format!(
                "{} <span class=\"muted\">+{} more</span>",
                models[..6].join(", "),
                models.len() - 6
            )
        } else {
            models.join(", ")
        };
        let enabled = c["enabled"].as_bool().unwrap_or(true);
        let _ = write!(
            h,
            "<tr data-channel=\"{id}\" data-state=\"{}\"><td data-label=\"Channel\"><b>{id}</b>\
             <div class=\"muted\">{} · priority {}</div></td>\
             <td data-label=\"State\" class=\"state\">{}</td><td data-label=\"Models\">{shown}</td>\
             <td data-label=\"1 min\">{}</td><td data-label=\"5 min\">{}</td>\
             <td data-label=\"Actions\" class=\"actions\">\
             <button type=\"button\" data-action=\"{}\" data-channel=\"{id}\">{}</button> \
             <button type=\"button\" data-action=\"clear\" data-channel=\"{id}\">Clear cooldown</button> \
             <button type=\"button\" data-action=\"priority\" data-channel=\"{id}\">Priority…</button></td></tr>",
            text(&c["state"]),
            text(&c["provider"]),
            text(&c["priority"]),
            state(c),
            span_stats(&c["window"]["1m"]),
            span_stats(&c["window"]["5m"]),
            if enabled { "disable" } else { "enable" },
            if enabled { "Disable" } else { "Enable" },
        );
    }
    h.push_str("</tbody></table>");
    h
}

/// Today's totals by key, channel and model, each with inline SVG bars (cost, or requests
/// when nothing cost anything).
fn usage_tables(doc: &Value) -> String {
    let u = &doc["usage"];
    let mut h = format!(
        "<p class=\"muted\">UTC day {} since this process started; currency {}.</p><div class=\"usage\">",
        text(&u["day"]),
        text(&u["currency"])
    );
    for (title, field) in [
        ("By key", "keys"),
        ("By channel", "channels"),
        ("By model", "models"),
    ] {
        let rows = u[field].as_array().map(Vec::as_slice).unwrap_or_default();
        let by_cost = rows.iter().any(|r| r["cost"].as_f64().unwrap_or(0.0) > 0.0);
        let metric = if by_cost { "cost" } else { "requests" };
        let max = rows
            .iter()
            .filter_map(|r| r[metric].as_f64())
            .fold(0.0, f64::max);
        let _ = write!(
            h,
            "<table class=\"totals\"><caption>{title}</caption><thead><tr><th>Name</th><th>Req</th>\
             <th>Err</th><th>Tokens</th><th>Cost</th><th>{metric}</th></tr></thead><tbody>"
        );
        if rows.is_empty() {
            h.push_str("<tr><td colspan=\"6\" class=\"muted\">no requests yet</td></tr>");
        }
        for r in rows {
            let tokens = r["prompt_tokens"].as_u64().unwrap_or(0)
                + r["completion_tokens"].as_u64().unwrap_or(0);
            let w = if max > 0.0 {
                (r[metric].as_f64().unwrap_or(0.0) / max * 100.0).round()
            } else {
                0.0
            };
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{tokens}</td><td>{}</td><td>\
                 <svg class=\"bar\" viewBox=\"0 0 100 10\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"{metric}\">\
                 <rect width=\"{w}\" height=\"10\"></rect></svg></td></tr>",
                text(&r["key"]),
                text(&r["requests"]),
                text(&r["errors"]),
                money(&r["cost"])
            );
        }
        h.push_str("</tbody></table>");
    }
    h.push_str("</div>");
    h
}

fn system(doc: &Value) -> String {
    let s = &doc["snapshot"];
    let r = &s["reloads"];
    let mut h = format!(
        "<dl class=\"facts\"><dt>Epoch</dt><dd>{} (generation {})</dd><dt>Config</dt><dd>{}</dd>\
         <dt>Channels</dt><dd>{} ({} enabled), {} models</dd><dt>Uptime</dt><dd>{} s</dd>\
         <dt>Discovery</dt><dd>{}</dd><dt>Reloads</dt><dd>{} applied, {} rejected</dd></dl>",
        text(&s["epoch"]),
        text(&s["generation"]),
        text(&s["config"]),
        text(&s["channels"]),
        text(&s["channels_enabled"]),
        text(&s["models"]),
        num(&s["uptime_s"], 0),
        if s["discovery"]["running"].as_bool() == Some(true) {
            "running"
        } else if s["discovery"]["enabled"].as_bool() == Some(true) {
            "idle"
        } else {
            "off"
        },
        text(&r["applied"]),
        text(&r["rejected"]),
    );
    let recent = r["recent"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    if !recent.is_empty() {
        h.push_str("<ul class=\"reloads\">");
        for x in recent.iter().rev() {
            let errors: Vec<String> = x["errors"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            let _ = write!(
                h,
                "<li>{} UTC: {}</li>",
                clock(&x["at_unix"]),
                if x["ok"].as_bool() == Some(true) {
                    "applied".to_string()
                } else {
                    format!("rejected: {}", errors.join("; "))
                }
            );
        }
        h.push_str("</ul>");
    }
    h
}

fn cluster(doc: &Value) -> String {
    let c = &doc["cluster"];
    if c.is_null() {
        return String::new();
    }
    let instances: Vec<String> = c["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .map(text)
        .collect();
    format!(
        "<dl class=\"facts\"><dt>This instance</dt><dd>{}</dd><dt>Redis</dt><dd>{} ({})</dd>\
         <dt>Instances</dt><dd>{}</dd><dt>Sync rounds</dt><dd>{} ok, {} failed, last {} ms</dd>\
         <dt>Last error</dt><dd>{}</dd></dl>",
        text(&c["instance_id"]),
        text(&c["redis"]),
        if c["connected"].as_bool() == Some(true) {
            "connected"
        } else {
            "disconnected"
        },
        instances.join(", "),
        text(&c["rounds_ok"]),
        text(&c["rounds_failed"]),
        num(&c["last_round_ms"], 1),
        text(&c["last_error"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\" onclick='y'>&</a>"),
            "&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
    }

    #[test]
    fn form_fields_decode() {
        assert_eq!(
            form_field(b"a=1&token=ab%2Bc+d", "token").as_deref(),
            Some("ab+c d")
        );
        assert_eq!(form_field(b"tokenx=1", "token"), None);
        assert_eq!(form_field(b"token", "token").as_deref(), Some(""));
    }

    #[test]
    fn state_words() {
        let c = serde_json::json!({
            "state": "cooling",
            "health": {"reason": "<b>", "until_unix": 3661.0, "remaining_s": 5.0},
            "endpoint_cooldowns": [{"endpoint": "responses"}],
            "model_cooldowns": []
        });
        let s = state(&c);
        assert!(s.contains("cooling") && s.contains("&lt;b&gt;") && s.contains("01:01:01"));
        assert!(s.contains("endpoint unsupported: responses"), "{s}");
    }
}
