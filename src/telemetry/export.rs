//! The exporter thread: receives span batches from the control thread, encodes each as one
//! `ExportTraceServiceRequest` (protobuf or JSON, gzip if asked) and POSTs it over HTTP/1.1
//! with a `Content-Length` (never chunked), one connection per export, within `timeout`.
//!
//! Invariants: a failed export drops its batch and counts it (no retry: the next batch is
//! already coming); errors are logged without header values; the thread ends when the control
//! thread drops its sender.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;

use crossbeam_channel::Receiver;
use prost::Message as _;

use super::Drops;
use super::otlp::{
    AnyValue, ExportTraceServiceRequest, InstrumentationScope, KeyValue, Resource, ResourceSpans,
    ScopeSpans, Span, Value,
};
use crate::config::{OtlpProtocol, Scheme, TelemetryConfig};

/// Starts the thread.
pub(super) fn spawn(
    cfg: TelemetryConfig,
    rx: Receiver<Vec<Span>>,
    drops: Arc<Drops>,
) -> std::io::Result<()> {
    let tls = match cfg.endpoint.scheme {
        Scheme::Https => Some(
            crate::channel::tls::ClientTls::new(None)
                .map_err(std::io::Error::other)?
                .config,
        ),
        Scheme::Http => None,
    };
    std::thread::Builder::new()
        .name("sar-otlp".into())
        .spawn(move || {
            while let Ok(batch) = rx.recv() {
                let n = batch.len();
                let body = encode(&cfg, batch);
                if let Err(e) = post(&cfg, tls.as_ref(), &body) {
                    drops.drop_spans(n, &format_args!("export failed: {e}"));
                }
            }
        })
        .map(|_| ())
}

/// One export request's body, compressed when configured.
pub(crate) fn encode(cfg: &TelemetryConfig, spans: Vec<Span>) -> Vec<u8> {
    let s = |v: &str| {
        Some(AnyValue {
            value: Some(Value::StringValue(v.to_string())),
        })
    };
    let attr = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: s(v),
    };
    let req = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    attr("service.name", &cfg.service_name),
                    attr("service.version", crate::VERSION),
                    attr("telemetry.sdk.name", "smart-ai-router"),
                    attr("telemetry.sdk.language", "rust"),
                ],
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "smart-ai-router".into(),
                    version: crate::VERSION.into(),
                }),
                spans,
            }],
        }],
    };
    let body = match cfg.protocol {
        OtlpProtocol::Protobuf => req.encode_to_vec(),
        OtlpProtocol::Json => req.to_json().to_string().into_bytes(),
    };
    if !cfg.gzip {
        return body;
    }
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    match gz.write_all(&body).and_then(|()| gz.finish()) {
        Ok(z) => z,
        Err(_) => body,
    }
}

/// POSTs `body`; `Ok` on a 2xx answer.
fn post(
    cfg: &TelemetryConfig,
    tls: Option<&Arc<rustls::ClientConfig>>,
    body: &[u8],
) -> Result<(), String> {
    let ep = &cfg.endpoint;
    let addr = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", ep.host))?
        .next()
        .ok_or_else(|| format!("{} has no address", ep.host))?;
    let tcp = TcpStream::connect_timeout(&addr, cfg.timeout)
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_read_timeout(Some(cfg.timeout))
        .and_then(|()| tcp.set_write_timeout(Some(cfg.timeout)))
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let mut head = Vec::with_capacity(512);
    let host = if ep.host.contains(':') {
        format!("[{}]", ep.host)
    } else {
        ep.host.clone()
    };
    let _ = write!(
        head,
        "POST {} HTTP/1.1\r\nHost: {host}:{}\r\nUser-Agent: smart-ai-router/{}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        cfg.path,
        ep.port,
        crate::VERSION,
        match cfg.protocol {
            OtlpProtocol::Protobuf => "application/x-protobuf",
            OtlpProtocol::Json => "application/json",
        },
        body.len()
    );
    if cfg.gzip {
        head.extend_from_slice(b"Content-Encoding: gzip\r\n");
    }
    for (k, v) in &cfg.headers {
        crate::h1::write_header(&mut head, k.as_bytes(), v.expose().as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    let answer = match tls {
        None => exchange(tcp, &head, body),
        Some(config) => {
            let name = rustls_pki_types::ServerName::try_from(ep.host.clone())
                .map_err(|e| format!("bad TLS name {}: {e}", ep.host))?;
            let conn = rustls::ClientConnection::new(config.clone(), name)
                .map_err(|e| format!("TLS: {e}"))?;
            exchange(rustls::StreamOwned::new(conn, tcp), &head, body)
        }
    }
    .map_err(|e| format!("exchange with {addr}: {e}"))?;
    let status = answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok());
    match status {
        Some(s) if (200..300).contains(&s) => Ok(()),
        Some(s) => Err(format!("the collector answered {s}")),
        None => Err("the collector's answer is not HTTP".into()),
    }
}

/// Writes the request, reads the answer (to its end, at most 64 KiB).
fn exchange(mut io: impl Read + Write, head: &[u8], body: &[u8]) -> std::io::Result<Vec<u8>> {
    io.write_all(head)?;
    io.write_all(body)?;
    io.flush()?;
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match io.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() >= 64 * 1024 || complete(&answer) {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what came is the answer.
            Err(_) if !answer.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    Ok(answer)
}

/// The answer's head is in and its `Content-Length` body with it (no wait for the close).
fn complete(answer: &[u8]) -> bool {
    let Some(end) = memchr::memmem::find(answer, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .is_some_and(|n| answer.len() >= end + 4 + n)
}
