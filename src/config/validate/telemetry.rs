//! `[telemetry]`: OpenTelemetry traces over OTLP/HTTP. Off without an `otlp_endpoint`.
//!
//! Invariants: header values (collector credentials) become [`Secret`]s and no problem message
//! repeats one; the endpoint's path gets `/v1/traces` unless it already ends with it.

use std::time::Duration;

use super::providers::{is_managed_header, is_token};
use super::{Checker, raw};
use crate::config::{BaseUrl, OtlpProtocol, TelemetryConfig, defaults};
use crate::secret::Secret;

/// Longest `export_interval`: spans reach the collector within a few seconds of their request.
const MAX_EXPORT_INTERVAL: Duration = Duration::from_secs(5);

/// Validates `[telemetry]`; `None` when it has no `otlp_endpoint` (telemetry off).
pub(super) fn telemetry(c: &mut Checker, raw: raw::Telemetry) -> Option<TelemetryConfig> {
    let protocol = match raw.protocol.as_deref() {
        None | Some("http/protobuf") => OtlpProtocol::Protobuf,
        Some("http/json") => OtlpProtocol::Json,
        Some(p) => {
            c.err(
                "telemetry.protocol",
                format!("\"http/protobuf\" or \"http/json\", got \"{p}\" (gRPC is not offered)"),
            );
            OtlpProtocol::Protobuf
        }
    };
    let sample_ratio = match raw.sample_ratio {
        None => defaults::TELEMETRY_SAMPLE_RATIO,
        Some(r) if (0.0..=1.0).contains(&r) => r,
        Some(r) => {
            c.err(
                "telemetry.sample_ratio",
                format!("a share from 0 to 1, got {r}"),
            );
            defaults::TELEMETRY_SAMPLE_RATIO
        }
    };
    let service_name = raw
        .service_name
        .unwrap_or_else(|| defaults::TELEMETRY_SERVICE_NAME.into());
    if service_name.is_empty() {
        c.err("telemetry.service_name", "must not be empty");
    }
    let mut headers = Vec::new();
    for (k, v) in raw.headers.unwrap_or_default() {
        let at = format!("telemetry.headers.{k}");
        if !is_token(&k) {
            c.err(at, "not a valid header name");
        } else if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            c.err(at, "header values must not contain CR, LF or NUL");
        } else if is_managed_header(&k) && !k.eq_ignore_ascii_case("authorization") {
            c.err(at, "the exporter sets this header itself; remove it");
        } else {
            headers.push((k, Secret::new(v)));
        }
    }
    let export_interval = c.duration(
        "telemetry.export_interval",
        raw.export_interval,
        defaults::TELEMETRY_EXPORT_INTERVAL,
        Duration::from_millis(10),
    );
    if export_interval > MAX_EXPORT_INTERVAL {
        c.err(
            "telemetry.export_interval",
            "at most 5s: spans should reach the collector within seconds",
        );
    }
    let timeout = c.duration(
        "telemetry.timeout",
        raw.timeout,
        defaults::TELEMETRY_TIMEOUT,
        Duration::from_millis(10),
    );
    let max_queue = c.int(
        "telemetry.max_queue",
        raw.max_queue,
        defaults::TELEMETRY_MAX_QUEUE,
        1,
        1 << 20,
    );
    let gzip = match raw.compression.as_deref() {
        None | Some("none") => false,
        Some("gzip") => true,
        Some(other) => {
            c.err(
                "telemetry.compression",
                format!("\"none\" or \"gzip\", got \"{other}\""),
            );
            false
        }
    };
    let url = raw.otlp_endpoint?;
    let endpoint = match BaseUrl::parse(&url) {
        Ok(u) => u,
        Err(e) => {
            c.err("telemetry.otlp_endpoint", e);
            return None;
        }
    };
    let path = if endpoint.path.ends_with("/v1/traces") {
        endpoint.path.clone()
    } else {
        format!("{}/v1/traces", endpoint.path)
    };
    Some(TelemetryConfig {
        endpoint,
        path,
        protocol,
        service_name,
        sample_ratio,
        headers,
        export_interval,
        timeout,
        max_queue,
        capture_content: raw.capture_content.unwrap_or(false),
        gzip,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::test_support::{MINIMAL, env};
    use crate::config::{Config, OtlpProtocol, Problem, TelemetryConfig};

    fn telemetry(table: &str) -> Result<Option<TelemetryConfig>, Vec<Problem>> {
        let text = format!("{MINIMAL}\n{table}\n");
        Config::parse(&text, &env(&[("OTLP_TOKEN", "Bearer t0ps3cret")]))
            .map(|c| c.telemetry)
            .map_err(|e| e.problems)
    }

    #[test]
    fn off_without_an_endpoint_defaults_and_secret_headers() {
        assert_eq!(telemetry("").unwrap(), None);
        assert_eq!(telemetry("[telemetry]\nsample_ratio = 0.5").unwrap(), None);
        let t = telemetry(
            "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"\n\
             headers = { authorization = \"${OTLP_TOKEN}\" }",
        )
        .unwrap()
        .expect("on");
        assert_eq!(t.path, "/v1/traces");
        assert_eq!(
            (t.endpoint.host.as_str(), t.endpoint.port),
            ("127.0.0.1", 4318)
        );
        assert_eq!(t.protocol, OtlpProtocol::Protobuf);
        assert_eq!(t.service_name, "smart-ai-router");
        assert_eq!(t.sample_ratio, 1.0);
        assert_eq!(t.export_interval, Duration::from_secs(2));
        assert!(!t.capture_content && !t.gzip);
        assert_eq!(t.headers[0].1.expose(), "Bearer t0ps3cret");
        assert!(!format!("{t:?}").contains("t0ps3cret"));
        let t = telemetry(
            "[telemetry]\notlp_endpoint = \"https://otel.example/base/v1/traces\"\n\
             protocol = \"http/json\"\ncompression = \"gzip\"\nexport_interval = \"100ms\"",
        )
        .unwrap()
        .expect("on");
        assert_eq!(t.path, "/base/v1/traces");
        assert_eq!(t.protocol, OtlpProtocol::Json);
        assert!(t.gzip);
    }

    #[test]
    fn bad_values_are_named() {
        let p = telemetry(
            "[telemetry]\notlp_endpoint = \"grpc://x:4317\"\nprotocol = \"grpc\"\n\
             sample_ratio = 2.0\nexport_interval = \"10s\"\ncompression = \"zstd\"\n\
             headers = { \"bad name\" = \"v\" }",
        )
        .unwrap_err();
        let paths: Vec<_> = p.iter().map(|p| p.path.as_str()).collect();
        for key in [
            "telemetry.protocol",
            "telemetry.sample_ratio",
            "telemetry.export_interval",
            "telemetry.compression",
            "telemetry.headers.bad name",
            "telemetry.otlp_endpoint",
        ] {
            assert!(paths.contains(&key), "{key} in {paths:?}");
        }
    }
}
