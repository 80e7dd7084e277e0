//! The control plane against real sockets: model discovery of every list format, the
//! discovery cache across restarts (and that it never holds a key), key validation and
//! recovery through reload, cooldown → probe → healthy, reload under load, and the admin API
//! (auth, redaction, overrides that survive reloads and restarts, cooldowns, snapshot).

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::*;
use simd_json::prelude::*;
use smart_ai_router::bootstrap::{self, Gateway};
use smart_ai_router::config::Config;
use smart_ai_router::mock::{ListFormat, MockConfig};

const DRIVER: &str = "io_uring_or_auto";
const TOKEN: &str = "admin-token-0123456789";

/// Writes the test config for `toml` to `dir/config.toml` and starts a gateway from the file
/// (so reloads re-read it).
fn gateway_from_file(dir: &Path, toml: &str) -> (Gateway, PathBuf) {
    let path = write_config(dir, toml);
    let cfg = Config::load_file(&path, &|_: &str| None).expect("test config is valid");
    (bootstrap::start(cfg).expect("gateway starts"), path)
}

fn write_config(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("config.toml");
    let text = test_config(DRIVER, toml);
    // Atomic, like an editor's save: a reload never reads half a file.
    let tmp = dir.join("config.toml.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

fn channel(id: &str, mock: std::net::SocketAddr, key: &str, models: &[&str]) -> String {
    let models = models
        .iter()
        .map(|m| format!("\"{m}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[providers.{id}]
kind = "openai"
base_url = "http://{mock}/v1"

[[channels]]
id = "{id}"
provider = "{id}"
api_key = "{key}"
models = [{models}]
"#
    )
}

fn listed_models(gw: &Gateway) -> Vec<String> {
    let mut c = Client::connect(gw.local_addr());
    c.get("/v1/models").json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect()
}

fn admin_channel(gw: &Gateway, id: &str, token: Option<&str>) -> simd_json::OwnedValue {
    let r = admin(gw, "GET", &format!("/admin/channels/{id}"), token, "");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

fn chat(gw: &Gateway, model: &str, stream: bool) -> Response {
    Client::connect(gw.local_addr()).post("/v1/chat/completions", &[], &chat_body(model, stream))
}

#[test]
fn discovery_reads_every_list_format() {
    for (format, names) in [
        (ListFormat::Data, ["d-one", "d-two"]),
        (ListFormat::OpenRouter, ["vendor/r-one", "vendor/r-two"]),
        (ListFormat::Bare, ["b-one", "b-two"]),
        (ListFormat::Models, ["g-one", "g-two"]),
    ] {
        let m = mock(MockConfig {
            models: names.iter().map(|s| s.to_string()).collect(),
            list_format: format,
            ..Default::default()
        });
        // No configured models: everything routable comes from discovery.
        let toml = format!(
            "{}\n[discovery]\nenabled = true\n",
            channel("up", m.addr(), "sk-up", &[])
        );
        let gw = gateway(DRIVER, &toml);
        let listed = eventually(Duration::from_secs(5), "discovered models listed", || {
            let l = listed_models(&gw);
            (l.len() == 2).then_some(l)
        });
        assert_eq!(listed, names, "{format:?}");
        let r = chat(&gw, names[1], false);
        assert_eq!(r.status, 200, "{format:?}: {}", r.text());
        let ch = admin_channel(&gw, "up", None);
        assert_eq!(ch["discovery"]["ok"].as_bool(), Some(true), "{format:?}");
        assert_eq!(ch["discovered_models"].as_u64(), Some(2));
    }
}

#[test]
fn discovered_metadata_reaches_routing() {
    // OpenRouter-style metadata says the model takes images; nothing else could know it.
    let m = mock(MockConfig {
        models: vec!["acme/opaque-1".into()],
        list_format: ListFormat::OpenRouter,
        ..Default::default()
    });
    let toml = format!(
        "{}\n[discovery]\nenabled = true\n",
        channel("up", m.addr(), "sk-up", &[])
    );
    let gw = gateway(DRIVER, &toml);
    eventually(Duration::from_secs(5), "discovery", || {
        (listed_models(&gw).len() == 1).then_some(())
    });
    let vision = r#"{"model":"acme/opaque-1","messages":[{"role":"user","content":[{"type":"text","text":"what is this"},{"type":"image_url","image_url":{"url":"data:image/png;base64,AAAA"}}]}],"max_tokens":20000}"#;
    let r = Client::connect(gw.local_addr()).post("/v1/route", &[], vision);
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        v["candidates"].as_array().unwrap().len(),
        1,
        "vision and a 20k output fit the discovered limits: {}",
        r.text()
    );
}

#[test]
fn a_restart_serves_the_cache_while_the_provider_is_down_and_no_file_holds_a_key() {
    let dir = temp_dir("cache");
    let state = dir.join("state");
    let key = "sk-live-cache-secret-123456";
    let m = mock(MockConfig {
        models: vec!["cached-a".into(), "cached-b".into()],
        ..Default::default()
    });
    let toml = |addr: std::net::SocketAddr| {
        format!(
            "{}\n[discovery]\nenabled = true\n\n[state]\ndir = \"{}\"\n",
            channel("up", addr, key, &[]),
            state.display()
        )
    };
    let gw = gateway(DRIVER, &toml(m.addr()));
    eventually(Duration::from_secs(5), "discovery", || {
        (listed_models(&gw).len() == 2).then_some(())
    });
    gw.shutdown();
    // The cache holds the list and nothing of the key.
    let files: Vec<PathBuf> = eventually(Duration::from_secs(5), "cache written", || {
        let f: Vec<PathBuf> = std::fs::read_dir(state.join("discovery"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "tsv"))
            .collect();
        (!f.is_empty()).then_some(f)
    });
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(text.contains("cached-a"), "{text}");
        assert!(
            !text.contains(key) && !text.contains("cache-secret"),
            "{text}"
        );
        assert!(!f.to_string_lossy().contains("secret"), "{}", f.display());
    }
    // The provider is down. The restart still lists and routes the cached models from its
    // first snapshot.
    m.set_down(true);
    let gw = gateway(DRIVER, &toml(m.addr()));
    assert_eq!(listed_models(&gw), ["cached-a", "cached-b"]);
    let r = Client::connect(gw.local_addr()).post("/v1/route", &[], &chat_body("cached-b", false));
    assert_eq!(
        r.json()["candidates"].as_array().unwrap().len(),
        1,
        "{}",
        r.text()
    );
    // The failed refresh is reported and keeps the cached list.
    let ch = eventually(Duration::from_secs(5), "discovery attempt", || {
        let ch = admin_channel(&gw, "up", None);
        // Before the first attempt the channel has no `discovery` object yet.
        let ok = ch
            .get("discovery")
            .and_then(|d| d.get("ok"))
            .and_then(|v| v.as_bool());
        (ok == Some(false)).then_some(ch)
    });
    assert_eq!(ch["discovered_models"].as_u64(), Some(2));
    assert_eq!(listed_models(&gw).len(), 2);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_corrupt_cache_file_is_ignored() {
    let dir = temp_dir("corrupt");
    let state = dir.join("state");
    std::fs::create_dir_all(state.join("discovery")).unwrap();
    let m = mock_models(&["configured"]);
    let toml = format!(
        "{}\n[state]\ndir = \"{}\"\n",
        channel("up", m.addr(), "sk-x", &["configured"]),
        state.display()
    );
    // Whatever the file name, garbage in the cache directory must not stop the start.
    for name in ["up-0000000000000000.tsv", "up-garbage.tsv"] {
        std::fs::write(state.join("discovery").join(name), b"{\"data\": [oops").unwrap();
    }
    std::fs::write(state.join("overrides.json"), b"not json").unwrap();
    let gw = gateway(DRIVER, &toml);
    assert_eq!(listed_models(&gw), ["configured"]);
    assert_eq!(chat(&gw, "configured", false).status, 200);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_rejected_key_goes_out_at_start_and_comes_back_after_a_reload_fixes_it() {
    let dir = temp_dir("auth");
    let m = mock(MockConfig {
        models: vec!["m".into()],
        require_key: Some("sk-good".into()),
        ..Default::default()
    });
    let body = |key: &str| {
        format!(
            "{}\n[discovery]\nenabled = true\n\n[state]\ndir = \"{}\"\n",
            channel("up", m.addr(), key, &["m"]),
            dir.join("state").display()
        )
    };
    let (gw, _) = gateway_from_file(&dir, &body("sk-bad"));
    // Key validation at start: discovery's 401 takes the channel out before any user request.
    let ch = eventually(Duration::from_secs(5), "channel out on 401", || {
        let ch = admin_channel(&gw, "up", None);
        (ch["state"].as_str() == Some("cooling")).then_some(ch)
    });
    assert_eq!(ch["health"]["reason"].as_str(), Some("API key rejected"));
    settled(&gw);
    let before = m.requests();
    let r = chat(&gw, "m", false);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(m.requests(), before, "a channel out on 401 gets no traffic");
    // Fix the key in the file and reload: the channel is back at once.
    write_config(&dir, &body("sk-good"));
    let report = gw.reload().expect("reload applies");
    assert!(
        report.restart_required.is_empty(),
        "{:?}",
        report.restart_required
    );
    let r = chat(&gw, "m", false);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(admin_channel(&gw, "up", None)["state"].as_str(), Some("ok"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_cooled_down_channel_is_healed_by_a_probe_without_user_traffic() {
    let m = mock_models(&["m"]);
    let toml = format!(
        "{}\n[routing]\ncooldown_base = \"300ms\"\nmax_attempts = 1\nsame_channel_retries = 0\n\n[health]\nenabled = true\ninterval = \"100ms\"\ntimeout = \"2s\"\n",
        channel("up", m.addr(), "sk-x", &["m", "m2"])
    );
    let gw = gateway(DRIVER, &toml);
    // Upstream 503s on two of its models put the channel in cooldown.
    for model in ["m", "m2"] {
        let r = Client::connect(gw.local_addr()).post(
            "/v1/chat/completions",
            &[("x-mock-status", "503")],
            &chat_body(model, false),
        );
        assert_ne!(r.status, 200, "{}", r.text());
    }
    let ch = eventually(Duration::from_secs(2), "cooldown visible", || {
        let ch = admin_channel(&gw, "up", None);
        (ch["state"].as_str() == Some("cooling")).then_some(ch)
    });
    assert_eq!(ch["health"]["reason"].as_str(), Some("failing"));
    let requests = m.requests();
    // The cooldown ends (half-open) and a probe, not a user, proves the channel is back.
    let ch = eventually(Duration::from_secs(5), "probe heals", || {
        let ch = admin_channel(&gw, "up", None);
        (ch["state"].as_str() == Some("ok") && ch["health"]["failures"].as_u64() == Some(0))
            .then_some(ch)
    });
    assert_eq!(ch["probe"]["ok"].as_bool(), Some(true), "{ch:?}");
    assert_eq!(m.requests(), requests, "no chat request was needed to heal");
    assert_eq!(chat(&gw, "m", false).status, 200);
}

#[test]
fn reloads_under_load_fail_no_request() {
    let dir = temp_dir("reload");
    let a = mock(MockConfig {
        models: vec!["m".into()],
        chunks: 6,
        interval: Duration::from_millis(15),
        ..Default::default()
    });
    let b = mock(MockConfig {
        models: vec!["m".into()],
        chunks: 6,
        interval: Duration::from_millis(15),
        ..Default::default()
    });
    let valid = |n: usize| {
        // Alternate which channel leads and add an alias, so every reload changes routing.
        format!(
            "{}{}\n[[channels]]\nid = \"b2\"\nprovider = \"b\"\napi_key = \"k\"\nmodels = [\"m\"]\npriority = {}\naliases = {{ \"alias-{n}\" = \"m\" }}\n\n[state]\ndir = \"{}\"\n",
            channel("a", a.addr(), "k", &["m"]),
            channel("b", b.addr(), "k", &["m"]),
            if n.is_multiple_of(2) { 5 } else { -5 },
            dir.join("state").display()
        )
    };
    let (gw, _) = gateway_from_file(&dir, &valid(0));
    let gw = Arc::new(gw);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut load = Vec::new();
    for t in 0..4 {
        let (gw, stop, ok, failed) = (gw.clone(), stop.clone(), ok.clone(), failed.clone());
        load.push(std::thread::spawn(move || {
            let mut c = Client::connect(gw.local_addr());
            // Bounded: stops with the reloads, and after at most 2,000 requests.
            for i in 0..2000 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let stream = (i + t) % 2 == 0;
                let r = c.post("/v1/chat/completions", &[], &chat_body("m", stream));
                let good = r.status == 200
                    && (!stream || sse_data(&r.body).last().map(String::as_str) == Some("[DONE]"));
                if good {
                    ok.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                    eprintln!("failed: {} {}", r.status, r.text());
                }
                if r.header("connection") == Some("close") {
                    c = Client::connect(gw.local_addr());
                }
            }
        }));
    }
    let mut applied = 0;
    for n in 1..=20 {
        std::thread::sleep(Duration::from_millis(30));
        if n % 4 == 0 {
            // Invalid: a channel naming a provider that does not exist.
            write_config(
                &dir,
                &format!(
                    "{}\n[[channels]]\nid = \"x\"\nprovider = \"nope\"\nmodels = [\"m\"]\n",
                    valid(n)
                ),
            );
            let errors = gw.reload().expect_err("an invalid config is rejected");
            assert!(errors.iter().any(|e| e.contains("nope")), "{errors:?}");
        } else {
            write_config(&dir, &valid(n));
            gw.reload().expect("a valid config applies");
            applied += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    assert_eq!(applied, 15);
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during reloads"
    );
    assert!(
        ok.load(Ordering::SeqCst) > 20,
        "the load ran alongside the reloads"
    );
    let snap = admin(&gw, "GET", "/admin/snapshot", None, "").json();
    assert_eq!(snap["reloads"]["applied"].as_u64(), Some(15));
    assert_eq!(snap["reloads"]["rejected"].as_u64(), Some(5));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn admin_requires_the_token_and_never_shows_a_key() {
    let m = mock_models(&["m"]);
    let key = "sk-admin-test-secret-key";
    let toml = format!(
        "{}\n[admin]\nlisten = \"127.0.0.1:0\"\ntoken = \"{TOKEN}\"\n",
        channel("up", m.addr(), key, &["m"])
    );
    let gw = gateway(DRIVER, &toml);
    let none = admin(&gw, "GET", "/admin/channels", None, "");
    assert_eq!(none.status, 401);
    assert_eq!(none.error_code(), "missing_admin_token");
    assert!(none.header("www-authenticate").is_some());
    let wrong = admin(
        &gw,
        "GET",
        "/admin/channels",
        Some("admin-token-0123456780"),
        "",
    );
    assert_eq!(wrong.status, 401);
    assert_eq!(wrong.error_code(), "invalid_admin_token");
    for path in ["/admin/channels", "/admin/snapshot", "/admin/cooldowns"] {
        let r = admin(&gw, "GET", path, Some(TOKEN), "");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert!(
            !r.text().contains("secret"),
            "{path} leaks the key: {}",
            r.text()
        );
        assert!(!r.text().contains(TOKEN), "{path} leaks the token");
    }
    let ch = admin_channel(&gw, "up", Some(TOKEN));
    let fp = ch["key_fingerprint"].as_str().unwrap();
    assert!(
        fp.starts_with("sha256:") && fp.len() == "sha256:".len() + 8,
        "{fp}"
    );
    // Unknown paths and wrong methods are OpenAI-shaped errors.
    assert_eq!(
        admin(&gw, "GET", "/admin/nope", Some(TOKEN), "").status,
        404
    );
    assert_eq!(
        admin(&gw, "DELETE", "/admin/snapshot", Some(TOKEN), "").status,
        405
    );
}

#[test]
fn overrides_steer_routing_and_survive_reload_and_restart() {
    let dir = temp_dir("overrides");
    let a = mock_models(&["m"]);
    let b = mock_models(&["m"]);
    let toml = format!(
        "{}{}\n[state]\ndir = \"{}\"\n",
        channel("a", a.addr(), "k", &["m"]),
        channel("b", b.addr(), "k", &["m"]),
        dir.join("state").display()
    );
    let (gw, _) = gateway_from_file(&dir, &toml);
    let served_by = |gw: &Gateway| {
        chat(gw, "m", false)
            .header("x-router-channel")
            .map(str::to_string)
    };
    // Priority: b first.
    let r = admin(
        &gw,
        "PUT",
        "/admin/channels/b/priority",
        None,
        r#"{"priority": 10}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["priority"].as_i64(), Some(10));
    assert_eq!(r.json()["overrides"]["priority"].as_i64(), Some(10));
    assert_eq!(served_by(&gw).as_deref(), Some("b"));
    // Disable b: a serves.
    let r = admin(&gw, "POST", "/admin/channels/b/disable", None, "");
    assert_eq!(r.json()["state"].as_str(), Some("disabled"));
    assert_eq!(served_by(&gw).as_deref(), Some("a"));
    // Bad bodies and unknown channels.
    let bad = admin(
        &gw,
        "PUT",
        "/admin/channels/b/priority",
        None,
        r#"{"priority": "high"}"#,
    );
    assert_eq!(bad.status, 400);
    assert_eq!(bad.error_code(), "invalid_priority");
    assert_eq!(
        admin(&gw, "POST", "/admin/channels/zzz/disable", None, "").status,
        404
    );
    // Survives a reload...
    gw.reload().expect("reload");
    let ch = admin_channel(&gw, "b", None);
    assert_eq!(ch["enabled"].as_bool(), Some(false));
    assert_eq!(ch["config"]["enabled"].as_bool(), Some(true));
    assert_eq!(served_by(&gw).as_deref(), Some("a"));
    // ...and a restart (the state dir).
    gw.shutdown();
    let (gw, _) = gateway_from_file(&dir, &toml);
    let ch = admin_channel(&gw, "b", None);
    assert_eq!(ch["overrides"]["enabled"].as_bool(), Some(false));
    assert_eq!(ch["overrides"]["priority"].as_i64(), Some(10));
    assert_eq!(served_by(&gw).as_deref(), Some("a"));
    // Enable: b leads again on its overridden priority; clearing restores the config.
    admin(&gw, "POST", "/admin/channels/b/enable", None, "");
    assert_eq!(served_by(&gw).as_deref(), Some("b"));
    let r = admin(&gw, "DELETE", "/admin/channels/b/overrides", None, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["overrides"].is_null());
    assert_eq!(admin_channel(&gw, "b", None)["priority"].as_i64(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cooldowns_are_listed_with_reason_and_expiry_and_can_be_cleared() {
    let m = mock_models(&["m"]);
    let toml = format!(
        "{}\n[routing]\ncooldown_base = \"60s\"\nmax_attempts = 1\npanic_routing = false\n",
        channel("up", m.addr(), "sk-x", &["m"])
    );
    let gw = gateway(DRIVER, &toml);
    let r = Client::connect(gw.local_addr()).post(
        "/v1/chat/completions",
        &[("x-mock-status", "500")],
        &chat_body("m", false),
    );
    assert_ne!(r.status, 200, "{}", r.text());
    let list = eventually(Duration::from_secs(2), "cooldown listed", || {
        let l = admin(&gw, "GET", "/admin/cooldowns", None, "").json();
        (!l["data"].as_array().unwrap().is_empty()).then_some(l)
    });
    let c = &list["data"][0];
    assert_eq!(c["channel"].as_str(), Some("up"));
    // a 500 is the model's, not the channel's
    assert_eq!(c["scope"].as_str(), Some("model"));
    assert_eq!(c["model"].as_str(), Some("m"));
    assert_eq!(c["health"]["reason"].as_str(), Some("failing"));
    let left = c["health"]["remaining_s"].as_f64().unwrap();
    assert!(left > 30.0 && left <= 60.0, "{left}");
    assert!(c["health"]["until_unix"].as_f64().unwrap() > 1.7e9);
    settled(&gw);
    assert_eq!(chat(&gw, "m", false).status, 503, "cooling down");
    let r = admin(&gw, "DELETE", "/admin/cooldowns/up", None, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["cleared"].as_u64(), Some(1));
    // Cleared on every worker within a tick.
    eventually(Duration::from_secs(2), "cleared everywhere", || {
        (chat(&gw, "m", false).status == 200).then_some(())
    });
    assert!(
        admin(&gw, "GET", "/admin/cooldowns", None, "").json()["data"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn snapshot_reports_epochs_counts_and_timings() {
    let m = mock_models(&["m"]);
    let gw = gateway(DRIVER, &channel("up", m.addr(), "k", &["m"]));
    let r = admin(&gw, "POST", "/admin/channels/up/disable", None, "");
    assert_eq!(r.status, 200);
    let snap = eventually(Duration::from_secs(2), "propagated", || {
        let s = admin(&gw, "GET", "/admin/snapshot", None, "").json();
        s["propagation_ms"].as_f64().is_some().then_some(s)
    });
    let epoch = snap["epoch"].as_u64().unwrap();
    assert!(epoch >= 2);
    assert_eq!(snap["channels"].as_u64(), Some(1));
    assert_eq!(snap["channels_enabled"].as_u64(), Some(0));
    assert_eq!(snap["entries"].as_u64(), Some(1));
    assert!(snap["build_ms"].as_f64().unwrap() > 0.0);
    let workers = snap["workers"].as_array().unwrap();
    assert_eq!(workers.len(), gw.board().workers());
    assert!(workers.iter().all(|w| w["epoch"].as_u64() == Some(epoch)));
    // Reload without a file: rejected, and said why.
    let r = admin(&gw, "POST", "/admin/reload", None, "");
    assert_eq!(r.status, 422);
    assert!(r.text().contains("nothing to re-read"), "{}", r.text());
}

#[test]
fn a_hanging_provider_never_delays_the_others() {
    // Accepts connections (the kernel does) and never answers.
    let hang = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let fine = mock_models(&["fast-model"]);
    let toml = format!(
        "{}{}\n[discovery]\nenabled = true\ntimeout = \"20s\"\nconcurrency = 2\n",
        channel("hang", hang.local_addr().unwrap(), "k", &["slow-model"]),
        channel("fine", fine.addr(), "k", &[])
    );
    let t = std::time::Instant::now();
    let gw = gateway(DRIVER, &toml);
    // Serving at once from config, before any discovery answer.
    assert!(listed_models(&gw).iter().any(|m| m == "slow-model"));
    eventually(
        Duration::from_secs(3),
        "fine discovered despite hang",
        || {
            listed_models(&gw)
                .iter()
                .any(|m| m == "fast-model")
                .then_some(())
        },
    );
    assert!(t.elapsed() < Duration::from_secs(10));
    drop(hang);
}
