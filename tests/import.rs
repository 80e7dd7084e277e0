//! `smart-ai-router import`: a `router_config.yaml` of the Python original becomes a TOML config
//! that validates; what maps carries over (priorities with their meaning, tags, aliases, prices
//! converted to per 1M tokens, env-var keys, daily limits, the budget, the client token as its
//! SHA-256); every key that does not is named in the report; no key or token value is ever
//! reported; and the binary's output streams and exit codes.

#![cfg(feature = "import")]
#![allow(clippy::disallowed_methods)] // tests read fixtures, write temp files and run the binary

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use smart_ai_router::cmd::import::{Conversion, convert};
use smart_ai_router::config::{ChannelConfig, Config};

const BIN: &str = env!("CARGO_BIN_EXE_smart-ai-router");

/// Literal secrets in the fixture: they may go into the TOML, never into the report.
const FIXTURE_SECRETS: &[&str] = &[
    "sk-or-v1-fixture-literal-0123456789abcdef",
    "sar-fixture-client-token-abcdefghijkl",
];

fn fixture_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/router_config.yaml")
}

fn fixture() -> Conversion {
    let yaml = std::fs::read_to_string(fixture_path()).expect("fixture exists");
    convert(&yaml).expect("the fixture converts")
}

/// Every `${VAR}` the converted fixture references, set to a value naming the variable (long
/// enough for the admin token rule).
fn env(name: &str) -> Option<String> {
    Some(format!("value-of-{name}"))
}

fn parse(toml: &str) -> Config {
    Config::parse(toml, &env)
        .unwrap_or_else(|e| panic!("converted TOML must validate: {e}\n{toml}"))
}

fn channel<'a>(cfg: &'a Config, id: &str) -> &'a ChannelConfig {
    cfg.channels
        .iter()
        .find(|c| c.id == id)
        .unwrap_or_else(|| panic!("channel {id} in the converted config"))
}

fn reported(conv: &Conversion, path: &str) -> bool {
    let prefix = format!("{path}: ");
    conv.report.iter().any(|l| l.starts_with(&prefix))
}

#[test]
fn fixture_converts_to_a_config_that_validates_with_values_carried_over() {
    let conv = fixture();
    let cfg = parse(&conv.toml);
    assert_eq!(
        cfg.channels.len(),
        8,
        "every channel is kept, the duplicate id renamed"
    );

    let main = channel(&cfg, "openai_main");
    assert_eq!(
        main.priority, 1,
        "original priority 0 (lower was better) is above the default"
    );
    assert_eq!(main.tags, ["cloud", "premium"]);
    assert_eq!(
        main.aliases,
        [("fast".to_string(), "gpt-4o-mini".to_string())]
    );
    assert_eq!(
        main.models,
        ["gpt-4o-mini", "gpt-4o"],
        "model_name first, then configured_models"
    );
    assert_eq!(main.weight, 2.0);
    assert_eq!(main.api_key.expose(), "value-of-OPENAI_API_KEY");
    let price = main
        .pricing
        .as_ref()
        .expect("cost_per_token becomes pricing");
    assert_eq!(
        (price.input, price.output, price.currency.as_str()),
        (0.15, 0.6, "USD")
    );
    assert_eq!(cfg.providers[main.provider].kind, "openai");
    assert_eq!(
        cfg.channel_base_url(main).unwrap().to_url(),
        "https://api.openai.com/v1",
        "the /v1 the original appended at request time is in the base URL"
    );

    let claude = channel(&cfg, "Claude-3.5-main");
    assert_eq!(
        claude.api_key.expose(),
        "value-of-ANTHROPIC_API_KEY",
        "api_key_env → ${{VAR}}"
    );
    let price = claude.pricing.as_ref().unwrap();
    assert_eq!((price.input, price.output), (3.0, 15.0), "per 1K × 1000");
    let anthropic = &cfg.providers[claude.provider];
    assert_eq!(
        anthropic.kind, "openai",
        "Anthropic through its OpenAI-compatible endpoint"
    );
    assert_eq!(
        anthropic.base_url.as_ref().unwrap().to_url(),
        "https://api.anthropic.com/v1"
    );

    let free = channel(&cfg, "openrouter_1");
    assert_eq!(
        free.priority, -2,
        "original priority 3 ranks below the default"
    );
    assert_eq!(free.min_request_interval, Duration::from_secs(3));
    assert_eq!(
        free.api_key.expose(),
        FIXTURE_SECRETS[0],
        "literal keys are carried over"
    );
    let openrouter = &cfg.providers[free.provider];
    assert_eq!(openrouter.kind, "openrouter");
    assert!(
        openrouter
            .headers
            .iter()
            .any(|(k, v)| k == "X-Title" && v == "My App"),
        "extra_params.site_title → X-Title: {:?}",
        openrouter.headers
    );

    let local = channel(&cfg, "ollama_local");
    assert_eq!(cfg.providers[local.provider].kind, "ollama");
    assert_eq!(
        cfg.channel_base_url(local).unwrap().to_url(),
        "http://localhost:11434/v1"
    );

    let disabled = channel(&cfg, "burn_gpt4o");
    assert!(!disabled.enabled);
    assert_eq!(disabled.priority, -1);
    assert_eq!(
        disabled.tags,
        ["cloud"],
        "merge keys (<<: *cloud) are applied"
    );
    assert_eq!(disabled.pricing.as_ref().unwrap().output, 6.0);

    let sf = channel(&cfg, "sf_main");
    let price = sf.pricing.as_ref().unwrap();
    assert_eq!(
        (price.input, price.output),
        (0.28, 0.28),
        "0.4 per 1M × currency_exchange rate 0.7"
    );

    let doubao = channel(&cfg, "doubao_ep");
    let provider = &cfg.providers[doubao.provider];
    assert_eq!(
        (provider.id.as_str(), provider.kind.as_str()),
        ("doubao", "doubao")
    );
    assert_eq!(
        cfg.channel_base_url(doubao).unwrap().to_url(),
        "https://ark.cn-beijing.volces.com/api/v3",
        "the provider's real version path, not the original's /api/v1"
    );
    assert_eq!(
        doubao.aliases,
        [(
            "doubao-1.5-pro-256k".to_string(),
            "ep-20250203083646-2szv9".to_string()
        )]
    );

    let backup = channel(&cfg, "openai_main-2");
    assert_eq!(
        backup.priority, 0,
        "the original's default priority 1 is ours 0"
    );

    assert_eq!(
        cfg.server.listen.to_string(),
        "127.0.0.1:7601",
        "0.0.0.0 is not carried over"
    );
    assert_eq!(cfg.routing.default_strategy, "cost_first_imported");
    assert_eq!(cfg.routing.max_attempts, 3);
    let st = cfg
        .strategies
        .iter()
        .find(|s| s.name == "cost_first_imported")
        .expect("sorting_strategies.cost_first is imported");
    assert_eq!((st.weights.cost, st.weights.parameters), (0.4, 0.25));
    assert_eq!(cfg.discovery.interval, Duration::from_secs(6 * 3600));
    assert_eq!(
        (main.limits.requests, disabled.limits.requests),
        (Some(500), Some(1000)),
        "daily_limit → daily_request_limit, merge keys included"
    );
    assert_eq!(
        cfg.pricing.daily_budget,
        Some(100.0),
        "cost_control.global_daily_budget → [pricing] daily_budget"
    );
    assert_eq!(cfg.auth.keys.len(), 1, "auth.api_token → one client key");
    assert_eq!(
        (cfg.auth.keys[0].name.as_str(), cfg.auth.keys[0].sha256),
        (
            "imported",
            smart_ai_router::secret::digest(FIXTURE_SECRETS[1].as_bytes())
        ),
        "kept by its SHA-256"
    );
    assert!(
        !conv.toml.contains(FIXTURE_SECRETS[1]),
        "the client token is never written, only its digest"
    );
    let admin = cfg.admin.as_ref().expect("admin API stays on");
    assert_eq!(
        admin.token.as_ref().map(|t| t.expose()),
        Some("value-of-ROUTER_ADMIN_TOKEN")
    );
}

#[test]
fn report_names_every_key_that_did_not_carry_over() {
    let conv = fixture();
    let dropped = [
        "system",
        "server.request_timeout",
        "x-cloud-defaults",
        "providers.openai.rate_limit",
        "providers.openai.capabilities",
        "providers.anthropic.auth_type",
        "channels[0].capabilities",
        "channels[1].performance",
        "routing.model_filters",
        "routing.error_handling",
        "routing.health_check_interval",
        "routing.error_cooldown_period",
        "caching",
        "monitoring",
        "cost_control.alert_threshold",
        "clean_thinking_chains",
        "tasks.pricing_discovery",
        "tasks.health_check",
    ];
    let changed = [
        "server.host",
        "auth.enabled",
        "auth.api_token",
        "channels[0].daily_limit",
        "channels[4].daily_limit",
        "cost_control.global_daily_budget",
        "server.max_request_size",
        "providers.anthropic.adapter_class",
        "channels[0].cost_per_token",
        "channels[0].priority",
        "channels[0].weight",
        "channels[1].id",
        "channels[1].pricing",
        "channels[2].api_key",
        "channels[2].priority",
        "channels[5].currency_exchange",
        "channels[6].provider",
        "channels[6].base_url",
        "channels[7].id",
        "routing.default_strategy",
        "routing.sorting_strategies.cost_first",
    ];
    for path in dropped.iter().chain(&changed) {
        assert!(
            reported(&conv, path),
            "no report line for {path}:\n{:#?}",
            conv.report
        );
    }
    let line = |path: &str| {
        conv.report
            .iter()
            .find(|l| l.starts_with(&format!("{path}: ")))
            .unwrap()
            .clone()
    };
    assert!(line("channels[0].daily_limit").contains("daily_request_limit = 500"));
    assert!(line("cost_control.global_daily_budget").contains("daily_budget = 100.0"));
    assert!(line("auth.api_token").contains("SHA-256"));
    assert!(line("channels[1].id").contains("Claude-3.5-main"));
    assert!(line("channels[7].id").contains("openai_main-2"));
    assert!(line("channels[0].cost_per_token").contains("0.15"));
    // Keys that mapped cleanly are not reported.
    for quiet in [
        "channels[0].tags",
        "channels[0].model_aliases",
        "channels[3].tags",
    ] {
        assert!(!reported(&conv, quiet), "{quiet} carried over as is");
    }
}

#[test]
fn report_never_contains_a_key_or_token() {
    let conv = fixture();
    for secret in FIXTURE_SECRETS {
        for line in &conv.report {
            assert!(
                !line.contains(secret),
                "a secret leaked into the report: {line}"
            );
        }
    }
    assert!(
        conv.report
            .iter()
            .any(|l| l.starts_with("channels[2].api_key: ") && l.contains("${OPENROUTER_API_KEY}")),
        "a literal key is flagged with a ${{VAR}} suggestion: {:#?}",
        conv.report
    );

    // Every other place a secret can sit: a literal admin token, a literal key beside
    // api_key_env, an auth header the gateway manages, a key with a control character.
    let yaml = r#"
auth:
  api_token: "client-token-0123456789"
  admin: { admin_token: "admin-token-0123456789" }
providers:
  p:
    name: p
    adapter_class: OpenAIAdapter
    base_url: https://proxy.example.com
    default_headers: { Authorization: "Bearer header-secret-0123456789" }
channels:
  - { id: a, name: A, provider: p, model_name: m, api_key: "sk-literal-0123456789", api_key_env: P_KEY }
  - { id: b, name: B, provider: p, model_name: m, api_key: "sk-control-0123456789\u0001" }
  - { id: c, name: C, provider: p, model_name: m, api_key: "sk-plain-0123456789" }
"#;
    let conv = convert(yaml).unwrap();
    for secret in [
        "client-token-0123456789",
        "admin-token-0123456789",
        "header-secret-0123456789",
        "sk-literal-0123456789",
        "sk-control-0123456789",
        "sk-plain-0123456789",
    ] {
        for line in &conv.report {
            assert!(
                !line.contains(secret),
                "a secret leaked into the report: {line}"
            );
        }
    }
    let cfg = parse(&conv.toml);
    assert_eq!(
        channel(&cfg, "a").api_key.expose(),
        "value-of-P_KEY",
        "api_key_env wins"
    );
    assert!(
        !channel(&cfg, "b").enabled,
        "an unusable key disables the channel"
    );
    assert_eq!(channel(&cfg, "c").api_key.expose(), "sk-plain-0123456789");
    assert_eq!(
        cfg.admin.unwrap().token.unwrap().expose(),
        "admin-token-0123456789"
    );
    assert!(
        !conv.toml.contains("header-secret"),
        "a managed auth header is dropped, not written"
    );
}

#[test]
fn literal_text_survives_variable_expansion() {
    // The original never expanded "${…}"; our loader does in every string, so a literal "${"
    // in a key, a model id or a tag must come out escaped.
    let yaml = "providers:\n  p: {name: p, adapter_class: OpenAIAdapter, base_url: https://x.example}\n\
                channels:\n  - {id: a, name: A, provider: p, model_name: 'm${x}', api_key: 'sk-a${b}c', tags: ['t${y}']}\n";
    let conv = convert(yaml).unwrap();
    let cfg = Config::parse(&conv.toml, &|_: &str| None).expect("no variable is referenced");
    let a = channel(&cfg, "a");
    assert_eq!(a.api_key.expose(), "sk-a${b}c");
    assert_eq!(a.models, ["m${x}"]);
    assert_eq!(a.tags, ["t${y}"]);
}

#[test]
fn routing_switches_and_empty_keys() {
    let yaml = "providers:\n  p: {name: p, adapter_class: OpenAIAdapter, base_url: https://x.example}\n\
                channels:\n  - {id: a, name: A, provider: p, model_name: m, api_key: ''}\n\
                routing: {default_strategy: speed_optimized, enable_fallback: false, max_retry_attempts: 5}\n";
    let conv = convert(yaml).unwrap();
    let cfg = parse(&conv.toml);
    assert_eq!(
        cfg.routing.max_attempts, 1,
        "enable_fallback: false → one attempt"
    );
    assert_eq!(cfg.routing.default_strategy, "speed_first");
    assert!(
        !channel(&cfg, "a").enabled,
        "the original skipped channels without a key"
    );
    assert!(reported(&conv, "channels[0].api_key"));
    assert!(reported(&conv, "routing.max_retry_attempts"));
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .output()
        .expect("the binary runs")
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sar-import-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn binary_prints_toml_on_stdout_and_the_report_on_stderr() {
    let fixture = fixture_path();
    let out = run(&["import", fixture.to_str().unwrap()]);
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        out.status.success(),
        "exit 0 even with dropped keys: {stderr}"
    );
    let cfg = parse(&stdout);
    assert_eq!(channel(&cfg, "openai_main").priority, 1);
    assert!(
        stderr.contains("import: channels[0].daily_limit: → daily_request_limit = 500"),
        "{stderr}"
    );
    assert!(
        stderr.contains("import: routing.model_filters: dropped"),
        "{stderr}"
    );
    for secret in FIXTURE_SECRETS {
        assert!(!stderr.contains(secret), "a secret on stderr");
    }
}

#[test]
fn binary_writes_the_toml_to_out_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = temp_dir("out");
    let target = dir.join("config.toml");
    let _ = std::fs::remove_file(&target);
    let fixture = fixture_path();
    let out = run(&[
        "import",
        fixture.to_str().unwrap(),
        "-o",
        target.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "the TOML goes to the file, not stdout"
    );
    assert!(stderr.contains("import: channels[1].id:"), "{stderr}");
    let text = std::fs::read_to_string(&target).unwrap();
    parse(&text);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "literal keys may be inside: mode {mode:o}");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn binary_exits_1_for_a_missing_file_or_malformed_yaml_and_2_for_usage() {
    let out = run(&["import", "/nonexistent/router_config.yaml"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot read /nonexistent/router_config.yaml"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());

    let dir = temp_dir("bad");
    let bad = dir.join("router_config.yaml");
    std::fs::write(
        &bad,
        "providers:\n  openai: {name: openai\nchannels:\n  - id: x\n",
    )
    .unwrap();
    let out = run(&["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("not valid YAML at line"),
        "the message says what and where: {stderr}"
    );
    assert!(out.stdout.is_empty(), "no half-converted TOML");

    std::fs::write(&bad, "- just\n- a list\n").unwrap();
    let out = run(&["import", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a mapping"));
    let _ = std::fs::remove_dir_all(dir);

    let out = run(&["import"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("import needs the YAML file"));
}
