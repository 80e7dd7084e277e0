//! The status page on the admin listener, over real sockets: sign-in (401/redirect without
//! credentials, the session cookie's flags, a wrong token refused), the page and its JSON
//! feed by cookie or bearer, CSRF on cookie-authenticated writes (403 without it), cross-origin
//! writes refused, HTML escaping of config text, channels and their states named in the
//! server-rendered HTML, sign-out, and the page open on a tokenless loopback listener.
//! The browser half (a real headless Chromium clicking "Disable") is `scripts/browser-test.sh`.

#![allow(clippy::disallowed_methods)] // tests block on sockets

mod common;

use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::bootstrap::Gateway;

const DRIVER: &str = "io_uring_or_auto";
const TOKEN: &str = "status-token-0123456789";

/// Two channels on one mock (one with a model name full of markup) and a third on a dead
/// port, the admin API with a token.
fn start(token: Option<&str>) -> (Gateway, smart_ai_router::mock::MockHandle) {
    let m = mock_models(&["gpt-4o-mini", "evil<b>\"&'model"]);
    let dead = free_port();
    let admin = match token {
        Some(t) => format!("[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{t}\"\n"),
        None => "[admin]\nlisten = \"127.0.0.1:0\"\n".into(),
    };
    let toml = format!(
        r#"
[providers.up]
kind = "openai"
base_url = "http://{mock}/v1"

[providers.gone]
kind = "openai"
base_url = "http://127.0.0.1:{dead}/v1"

[[channels]]
id = "alpha"
provider = "up"
api_key = "sk-alpha-secret"
models = ["gpt-4o-mini", "evil<b>\"&'model"]

[[channels]]
id = "beta"
provider = "up"
api_key = "sk-beta-secret"
models = ["gpt-4o-mini"]

[[channels]]
id = "gamma"
provider = "gone"
api_key = "sk-gamma-secret"
models = ["only-on-gamma"]

{admin}
"#,
        mock = m.addr()
    );
    (gateway(DRIVER, &toml), m)
}

/// One raw request to the admin listener with the given headers.
fn send(gw: &Gateway, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Response {
    let mut c = Client::connect(gw.admin_addr().expect("admin listener"));
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if method != "GET" {
        req.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    c.send(req.as_bytes());
    c.read_response()
}

/// Signs in; the `Cookie` header value and the page's CSRF token.
fn sign_in(gw: &Gateway) -> (String, String) {
    let r = send(
        gw,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 303, "{}", r.text());
    assert_eq!(r.header("location"), Some("/"));
    let set = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    let cookie = set.split(';').next().unwrap().trim().to_string();
    let page = send(gw, "GET", "/", &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.text());
    let html = page.text();
    let at = html
        .find("name=\"csrf-token\" content=\"")
        .expect("csrf meta")
        + 27;
    let csrf = html[at..at + 64].to_string();
    assert!(csrf.bytes().all(|b| b.is_ascii_hexdigit()), "{csrf}");
    (cookie, csrf)
}

fn channel_state(gw: &Gateway, id: &str) -> String {
    let r = admin(gw, "GET", &format!("/admin/channels/{id}"), Some(TOKEN), "");
    r.json()["state"].as_str().unwrap().to_string()
}

#[test]
fn without_credentials_the_page_sends_to_the_sign_in_form() {
    let (gw, _m) = start(Some(TOKEN));
    let r = send(&gw, "GET", "/", &[], "");
    assert_eq!(r.status, 303);
    assert_eq!(r.header("location"), Some("/login"));
    let r = send(&gw, "GET", "/status.json", &[], "");
    assert_eq!(r.status, 401);
    assert!(r.header("www-authenticate").is_some());
    let form = send(&gw, "GET", "/login", &[], "");
    assert_eq!(form.status, 200);
    let html = form.text();
    assert!(
        html.contains("<form method=\"post\" action=\"/login\""),
        "{html}"
    );
    assert!(html.contains("type=\"password\""));
    assert!(form.header("content-security-policy").is_some());
    // The assets are public (the form needs its stylesheet) and embedded.
    let css = send(&gw, "GET", "/static/status.css", &[], "");
    assert_eq!(css.status, 200);
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    let js = send(&gw, "GET", "/static/status.js", &[], "");
    assert_eq!(js.status, 200);
    assert!(js.text().contains("/status.json"));
    assert_eq!(send(&gw, "GET", "/static/nope.js", &[], "").status, 404);
    // A bogus cookie is no credential.
    let r = send(
        &gw,
        "GET",
        "/status.json",
        &[("Cookie", "sar_admin_session=00ff")],
        "",
    );
    assert_eq!(r.status, 401);
    // The admin API itself still wants credentials.
    assert_eq!(send(&gw, "GET", "/admin/channels", &[], "").status, 401);
}

#[test]
fn sign_in_sets_a_strict_http_only_session_cookie() {
    let (gw, _m) = start(Some(TOKEN));
    let wrong = send(
        &gw,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        "token=not-the-token-at-all",
    );
    assert_eq!(wrong.status, 401);
    assert!(wrong.header("set-cookie").is_none());
    assert!(wrong.text().contains("not valid"));
    let r = send(
        &gw,
        "POST",
        "/login",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        &format!("token={TOKEN}"),
    );
    assert_eq!(r.status, 303);
    let set = r.header("set-cookie").expect("set-cookie");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is not the token: {set}");
    assert!(!r.header("location").unwrap().contains(TOKEN));
    let (cookie, _) = sign_in(&gw);
    let feed = send(&gw, "GET", "/status.json", &[("Cookie", &cookie)], "");
    assert_eq!(feed.status, 200, "{}", feed.text());
    assert_eq!(feed.json()["access"].as_str(), Some("session"));
    // Signing out ends the session.
    let out = send(&gw, "POST", "/logout", &[("Cookie", &cookie)], "");
    assert_eq!(out.status, 303);
    assert!(out.header("set-cookie").unwrap().contains("Max-Age=0"));
    let r = send(&gw, "GET", "/status.json", &[("Cookie", &cookie)], "");
    assert_eq!(r.status, 401);
}

#[test]
fn cookie_writes_need_the_csrf_token_and_bearer_ones_do_not() {
    let (gw, _m) = start(Some(TOKEN));
    let (cookie, csrf) = sign_in(&gw);
    // Cookie alone: refused, nothing changes.
    let r = send(
        &gw,
        "POST",
        "/admin/channels/beta/disable",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.error_code(), "csrf_token_required");
    let r = send(
        &gw,
        "POST",
        "/admin/channels/beta/disable",
        &[("Cookie", &cookie), ("x-csrf-token", &"0".repeat(64))],
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(channel_state(&gw, "beta"), "ok");
    // Cookie + CSRF: done, and the page then says so.
    let r = send(
        &gw,
        "POST",
        "/admin/channels/beta/disable",
        &[("Cookie", &cookie), ("x-csrf-token", &csrf)],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["state"].as_str(), Some("disabled"));
    let page = send(&gw, "GET", "/", &[("Cookie", &cookie)], "").text();
    let row = &page[page.find("data-channel=\"beta\"").unwrap()..];
    assert!(
        row.starts_with("data-channel=\"beta\" data-state=\"disabled\""),
        "{row}"
    );
    // A cross-origin write is refused even with both.
    let r = send(
        &gw,
        "POST",
        "/admin/channels/beta/enable",
        &[
            ("Cookie", &cookie),
            ("x-csrf-token", &csrf),
            ("Origin", "http://evil.example"),
        ],
        "",
    );
    assert_eq!(r.status, 403);
    assert_eq!(r.error_code(), "cross_origin");
    // Bearer: no CSRF needed, for the feed and for writes.
    let auth = format!("Bearer {TOKEN}");
    let feed = send(&gw, "GET", "/status.json", &[("Authorization", &auth)], "");
    assert_eq!(feed.status, 200);
    assert_eq!(feed.json()["access"].as_str(), Some("bearer"));
    let r = send(
        &gw,
        "POST",
        "/admin/channels/beta/enable",
        &[("authorization", &format!("bEaReR {TOKEN}"))],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(channel_state(&gw, "beta"), "ok");
    // A wrong bearer beside a good cookie is still wrong.
    let r = send(
        &gw,
        "GET",
        "/status.json",
        &[
            ("Cookie", &cookie),
            ("Authorization", "Bearer nope-nope-nope-nope"),
        ],
        "",
    );
    assert_eq!(r.status, 401);
}

#[test]
fn the_page_names_every_channel_and_its_state_escaped() {
    let (gw, _m) = start(Some(TOKEN));
    // gamma's upstream refuses connections: it cools down.
    let r = Client::connect(gw.local_addr()).post(
        "/v1/chat/completions",
        &[],
        &chat_body("only-on-gamma", false),
    );
    assert!(r.status >= 500, "{} {}", r.status, r.text());
    assert_eq!(
        admin(&gw, "POST", "/admin/channels/beta/disable", Some(TOKEN), "").status,
        200
    );
    // Traffic for the windows.
    for _ in 0..3 {
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[],
            &chat_body("gpt-4o-mini", false),
        );
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let auth = format!("Bearer {TOKEN}");
    let feed = eventually(Duration::from_secs(5), "the records merged", || {
        let f = send(&gw, "GET", "/status.json", &[("Authorization", &auth)], "").json();
        let n = f["snapshot"]["traffic"]["window"]["1m"]["requests"].as_u64()?;
        (n >= 4).then_some(f)
    });
    let chans = feed["channels"].as_array().unwrap();
    let state = |id: &str| {
        chans
            .iter()
            .find(|c| c["id"].as_str() == Some(id))
            .and_then(|c| c["state"].as_str())
            .unwrap()
            .to_string()
    };
    assert_eq!(state("alpha"), "ok");
    assert_eq!(state("beta"), "disabled");
    assert_eq!(state("gamma"), "cooling");
    let alpha = chans
        .iter()
        .find(|c| c["id"].as_str() == Some("alpha"))
        .unwrap();
    let w = &alpha["window"]["1m"];
    assert_eq!(w["requests"].as_u64(), Some(3), "{w:?}");
    assert!(w["latency_p50_ms"].as_f64().is_some(), "{w:?}");
    assert!(feed["usage"]["channels"].as_array().unwrap().len() >= 2);
    // The same figures are in the admin API.
    let a = admin(&gw, "GET", "/admin/channels/alpha", Some(TOKEN), "").json();
    assert_eq!(a["window"]["1m"]["requests"].as_u64(), Some(3));

    let page = send(&gw, "GET", "/", &[("Authorization", &auth)], "");
    assert_eq!(page.status, 200);
    assert!(
        page.header("content-type")
            .unwrap()
            .starts_with("text/html")
    );
    let html = page.text();
    for id in ["alpha", "beta", "gamma"] {
        assert!(html.contains(&format!("data-channel=\"{id}\"")), "{id}");
    }
    assert!(html.contains("data-state=\"ok\""));
    assert!(html.contains(">healthy<"));
    assert!(html.contains(">disabled<"));
    assert!(
        html.contains(">cooling<") && html.contains(" until "),
        "cooling and until when"
    );
    assert!(
        html.contains("evil&lt;b&gt;&quot;&amp;&#39;model"),
        "escaped model name"
    );
    assert!(!html.contains("evil<b>"), "no raw markup from config");
    for secret in [
        "sk-alpha-secret",
        "sk-beta-secret",
        "sk-gamma-secret",
        TOKEN,
    ] {
        assert!(!html.contains(secret), "{secret} on the page");
        assert!(!feed.to_string().contains(secret), "{secret} in the feed");
    }
    assert!(html.contains("<script src=\"/static/status.js\">"));
    assert!(!html.contains("<script>"), "no inline script");
}

#[test]
fn without_a_token_the_loopback_page_is_open() {
    let (gw, _m) = start(None);
    let page = send(&gw, "GET", "/", &[], "");
    assert_eq!(page.status, 200, "{}", page.text());
    assert!(page.text().contains("data-channel=\"alpha\""));
    // Nothing to sign in to.
    let r = send(&gw, "GET", "/login", &[], "");
    assert_eq!((r.status, r.header("location")), (303, Some("/")));
    let feed = send(&gw, "GET", "/status.json", &[], "");
    assert_eq!(feed.json()["access"].as_str(), Some("open"));
    // Cross-origin writes are refused here too; same-origin ones work.
    let r = send(
        &gw,
        "POST",
        "/admin/channels/alpha/disable",
        &[("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(r.status, 403);
    let r = send(
        &gw,
        "POST",
        "/admin/channels/alpha/disable",
        &[("Origin", "http://admin")],
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
}
