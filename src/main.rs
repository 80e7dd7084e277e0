//! The `smart-ai-router` binary: parse the command line, pick the config (file, environment
//! keys, or demo mode), start logging and the gateway, and wait for a signal.

#![allow(clippy::disallowed_methods)] // main may block: it only waits for signals

use std::process::ExitCode;

use smart_ai_router::cli::{self, Command};
use smart_ai_router::config::{Config, ConfigError, ProcessEnv, units};
use smart_ai_router::{bootstrap, logging, mock};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Models the demo channel serves.
const DEMO_MODELS: &[&str] = &["demo-model", "gpt-4o-mini", "gpt-4o"];

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args().skip(1)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match cli.command.clone() {
        Command::Help => {
            print!("{}", cli::USAGE);
            ExitCode::SUCCESS
        }
        Command::Version => {
            println!("smart-ai-router {}", smart_ai_router::VERSION);
            ExitCode::SUCCESS
        }
        Command::Check => check(&cli),
        Command::MockUpstream(args) => mock_upstream(&cli, args),
        Command::Run => run(&cli),
    }
}

fn config_path(cli: &cli::Cli) -> Option<std::path::PathBuf> {
    cli.config.clone().or_else(|| {
        std::env::var_os("SMART_AI_ROUTER_CONFIG")
            .filter(|v| !v.is_empty())
            .map(Into::into)
    })
}

fn apply_overrides(cfg: &mut Config, cli: &cli::Cli) -> Result<(), String> {
    if let Some(l) = &cli.listen {
        cfg.server.listen = units::parse_listen(l).map_err(|e| format!("--listen: {e}"))?;
    }
    if let Some(w) = cli.workers {
        cfg.server.workers = w;
    }
    Ok(())
}

fn check(cli: &cli::Cli) -> ExitCode {
    let Some(path) = config_path(cli) else {
        eprintln!("error: `check` needs a config file: --config FILE (or SMART_AI_ROUTER_CONFIG)");
        return ExitCode::from(2);
    };
    match Config::load_file(&path, &ProcessEnv) {
        Ok(mut cfg) => {
            if let Err(e) = apply_overrides(&mut cfg, cli) {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
            println!("config {} is valid", path.display());
            print!("{}", cfg.summary());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{e}");
            ExitCode::from(1)
        }
    }
}

fn wait_for_signal() -> Option<i32> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).ok()?;
    for s in signals.forever() {
        if s == SIGHUP {
            tracing::info!("SIGHUP: config reload arrives with the control-plane work; ignored");
            continue;
        }
        return Some(s);
    }
    None
}

fn mock_upstream(cli: &cli::Cli, args: cli::MockArgs) -> ExitCode {
    let _guard = logging::init(&Config::empty().log);
    let listen = match cli.listen.as_deref().map(units::parse_listen).transpose() {
        Ok(l) => l.unwrap_or_else(|| "127.0.0.1:9000".parse().expect("valid")),
        Err(e) => {
            eprintln!("error: --listen: {e}");
            return ExitCode::from(2);
        }
    };
    let d = mock::MockConfig::default();
    let cfg = mock::MockConfig {
        listen,
        models: args.models,
        latency: args.latency.unwrap_or(d.latency),
        chunks: args.chunks.unwrap_or(d.chunks),
        interval: args.interval.unwrap_or(d.interval),
        status: args.status,
        retry_after: args.retry_after,
        fault: args.reset.then_some(mock::Fault::Reset),
        workers: cli.workers.filter(|w| *w > 0).unwrap_or(1),
        ..d
    };
    match mock::start(cfg) {
        Ok(h) => {
            println!("mock upstream listening on http://{}/v1", h.addr());
            wait_for_signal();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot start the mock upstream: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cli: &cli::Cli) -> ExitCode {
    let mut demo_mock = None;
    let cfg: Result<Config, ConfigError> = match config_path(cli) {
        Some(path) => Config::load_file(&path, &ProcessEnv),
        None => match Config::from_environment(&ProcessEnv) {
            Some(cfg) => Ok(cfg),
            None => match mock::start(mock::MockConfig {
                models: DEMO_MODELS.iter().map(|m| m.to_string()).collect(),
                chunks: 12,
                interval: std::time::Duration::from_millis(30),
                ..Default::default()
            }) {
                Ok(h) => {
                    let cfg = Config::demo(h.addr(), DEMO_MODELS);
                    demo_mock = Some(h);
                    Ok(cfg)
                }
                Err(e) => {
                    eprintln!("error: cannot start the demo mock upstream: {e}");
                    return ExitCode::from(1);
                }
            },
        },
    };
    let mut cfg = match cfg {
        Ok(c) => c,
        Err(e) => {
            eprint!("{e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = apply_overrides(&mut cfg, cli) {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let _guard = logging::init(&cfg.log);
    let gateway = match bootstrap::start(cfg.clone()) {
        Ok(g) => g,
        Err(e) => {
            tracing::error!("cannot start: {e}");
            eprintln!("error: {e}");
            return ExitCode::from(1);
        }
    };
    banner(&cfg, &gateway, demo_mock.as_ref());
    let sig = wait_for_signal();
    tracing::info!(signal = ?sig, "shutting down: draining in-flight requests");
    gateway.shutdown();
    tracing::info!("stopped");
    ExitCode::SUCCESS
}

fn banner(cfg: &Config, g: &bootstrap::Gateway, demo: Option<&mock::MockHandle>) {
    let board = g.board();
    tracing::info!(
        version = smart_ai_router::VERSION,
        listen = %g.local_addr(),
        workers = board.workers(),
        driver = board.driver.driver.as_str(),
        driver_reason = %board.driver.reason,
        channels = cfg.channels.len(),
        "smart-ai-router started"
    );
    match &cfg.source {
        smart_ai_router::config::Source::Demo => tracing::info!(
            mock = %demo.map(|d| d.addr().to_string()).unwrap_or_default(),
            "DEMO MODE: no config and no provider keys in the environment; serving the built-in \
             mock upstream (models: demo-model, gpt-4o-mini, gpt-4o). Set OPENAI_API_KEY or pass \
             --config to serve real providers"
        ),
        smart_ai_router::config::Source::Environment(vars) => tracing::info!(
            vars = %vars.join(","),
            "no config file: channels built from provider keys in these environment variables"
        ),
        smart_ai_router::config::Source::File(p) => {
            tracing::info!(config = %p.display(), "config loaded")
        }
        smart_ai_router::config::Source::Inline => {}
    }
    for line in cfg.summary().lines() {
        tracing::info!("{line}");
    }
}
