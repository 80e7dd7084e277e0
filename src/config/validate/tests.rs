//! Problems across tables: every wrong value of a file is reported at once, each under its key
//! path.

use crate::config::test_support::problems;

#[test]
fn bad_values_are_all_reported_with_paths() {
    let p = problems(
        r#"
[server]
workers = -1
tick = 50
max_body = "lots"
driver = "fast"
[providers.a]
kind = "opena"
base_url = "ftp://x"
on_unsupported = "ignore"
[[channels]]
id = "c"
provider = "b"
models = []
discover = false
"#,
    );
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    for want in [
        "server.workers",
        "server.tick",
        "server.max_body",
        "server.driver",
        "providers.a.kind",
        "providers.a.base_url",
        "providers.a.on_unsupported",
        "channels[0].provider",
        "channels[0].models",
    ] {
        assert!(paths.contains(&want), "missing {want} in {p:#?}");
    }
    let tick = p.iter().find(|p| p.path == "server.tick").unwrap();
    assert!(tick.message.contains("\"50s\""), "{tick:?}");
    let kind = p.iter().find(|p| p.path == "providers.a.kind").unwrap();
    assert!(kind.message.contains("did you mean \"openai\""), "{kind:?}");
}

#[test]
fn duplicate_channel_ids_and_header_injection_are_rejected() {
    let p = problems(
        r#"
[providers.up]
base_url = "http://127.0.0.1:9"
headers = { "X-Ok" = "a\r\nInjected: 1", "Authorization" = "x" }
[[channels]]
id = "c"
provider = "up"
models = ["m"]
[[channels]]
id = "c"
provider = "up"
models = ["m"]
"#,
    );
    let paths: Vec<&str> = p.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains(&"providers.up.headers.X-Ok"), "{p:#?}");
    assert!(
        paths.contains(&"providers.up.headers.Authorization"),
        "{p:#?}"
    );
    assert!(paths.contains(&"channels[1].id"), "{p:#?}");
}
