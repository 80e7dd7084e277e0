//! Inbound TLS: with `[server.tls]` the client listener speaks HTTPS (rustls, TLS 1.2 and 1.3,
//! ALPN `http/1.1`). A client that trusts the generated CA verifies the gateway and is served,
//! JSON and streams alike, over keep-alive; one that does not trust it fails the handshake; a
//! reload after the files changed serves the new certificate to new connections.

#![allow(clippy::disallowed_methods)] // tests block on sockets and files

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use common::*;
use smart_ai_router::config::Config;
use smart_ai_router::mock::MockConfig;

const DRIVER: &str = "io_uring_or_auto";

struct Ca {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl Ca {
    fn new() -> Ca {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        Ca { issuer }
    }

    /// Writes a leaf for `localhost` signed by this CA to `dir/cert.pem` and `dir/key.pem`.
    fn leaf_into(&self, dir: &Path) {
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        std::fs::write(dir.join("cert.pem.tmp"), leaf.pem()).unwrap();
        std::fs::write(dir.join("key.pem.tmp"), key.serialize_pem()).unwrap();
        std::fs::rename(dir.join("cert.pem.tmp"), dir.join("cert.pem")).unwrap();
        std::fs::rename(dir.join("key.pem.tmp"), dir.join("key.pem")).unwrap();
    }

    fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.issuer.der().clone()).unwrap();
        client_with(roots)
    }
}

fn client_with(roots: rustls::RootCertStore) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut c = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(c)
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

fn connect(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> std::io::Result<Tls> {
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(5)))?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(cfg, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Drive the handshake now, so a verification failure shows here.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One request on `tls`; returns status and body (Content-Length or chunked bodies).
fn exchange(tls: &mut Tls, raw: &[u8]) -> (u16, Vec<u8>) {
    tls.write_all(raw).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status: u16 = head[9..12].parse().unwrap();
            let body = &buf[end + 4..];
            if let Some(l) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            {
                let n: usize = l.trim().parse().unwrap();
                if body.len() >= n {
                    return (status, body[..n].to_vec());
                }
            } else if head.contains("transfer-encoding: chunked")
                && find(body, b"\r\n0\r\n\r\n").is_some()
            {
                return (status, body.to_vec());
            }
        }
        let n = tls.read(&mut chunk).unwrap();
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn clients_verify_the_gateway_and_a_reload_rotates_its_certificate() {
    let dir = temp_dir("inbound-tls");
    let ca = Ca::new();
    ca.leaf_into(&dir);
    let m = mock(MockConfig::default());
    let text = test_config(
        DRIVER,
        &format!(
            "{}\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            one_channel(m.addr(), &["m"]).trim_end(),
            dir.join("cert.pem").display(),
            dir.join("key.pem").display()
        ),
    )
    .replacen("[server]\n", "[server]\nworkers = 1\n", 1);
    let path = dir.join("config.toml");
    std::fs::write(&path, &text).unwrap();
    let cfg = Config::load_file(&path, &|_: &str| None).expect("valid config");
    let gw = smart_ai_router::bootstrap::start(cfg).expect("starts");

    let mut tls = connect(gw.local_addr(), ca.client()).expect("the CA verifies the gateway");
    assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    let (status, body) = exchange(&mut tls, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    // Keep-alive on the same TLS connection: JSON, then a stream, then JSON.
    for stream in [false, true, false] {
        let (status, body) = exchange(
            &mut tls,
            &post_bytes("/v1/chat/completions", &[], &chat_body("m", stream)),
        );
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
        if stream {
            assert!(find(&body, b"data: [DONE]").is_some());
        } else {
            assert!(find(&body, b"chat.completion").is_some());
        }
    }

    // TLS 1.2 clients are served too.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.issuer.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls12 = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut old = connect(gw.local_addr(), Arc::new(tls12)).expect("TLS 1.2");
    assert_eq!(
        old.conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    let (status, _) = exchange(&mut old, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);

    // A client without the CA refuses the gateway's certificate.
    let stranger = client_with(rustls::RootCertStore::empty());
    assert!(connect(gw.local_addr(), stranger).is_err());
    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = std::net::TcpStream::connect(gw.local_addr()).unwrap();
    plain
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    plain
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let _ = plain.read_to_end(&mut got);
    assert!(!got.starts_with(b"HTTP/1.1 200"), "{got:?}");

    // Rotate: a new CA's leaf in the same files, then a reload.
    let ca2 = Ca::new();
    ca2.leaf_into(&dir);
    gw.reload().expect("reload");
    settled(&gw);
    let mut tls2 = connect(gw.local_addr(), ca2.client()).expect("the new certificate");
    let (status, _) = exchange(
        &mut tls2,
        b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n",
    );
    assert_eq!(status, 200);
    assert!(
        connect(gw.local_addr(), ca.client()).is_err(),
        "new connections no longer get the old certificate"
    );
    // The connection opened before the reload keeps working.
    let (status, _) = exchange(&mut tls, b"GET /health HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(status, 200);
}

#[test]
fn unreadable_or_mismatched_tls_files_are_config_errors() {
    let dir = temp_dir("inbound-tls-bad");
    let ca = Ca::new();
    ca.leaf_into(&dir);
    std::fs::write(
        dir.join("other-key.pem"),
        rcgen::KeyPair::generate().unwrap().serialize_pem(),
    )
    .unwrap();
    let cfg = |cert: &str, key: &str| {
        let text = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n\n[server.tls]\ncert = \"{}\"\nkey = \"{}\"\n",
            dir.join(cert).display(),
            dir.join(key).display()
        );
        let c = Config::parse(&text, &|_: &str| None).expect("parses");
        smart_ai_router::control::build_tls(&c).map(|_| ())
    };
    assert!(cfg("cert.pem", "key.pem").is_ok());
    let e = cfg("missing.pem", "key.pem").unwrap_err();
    assert!(e.contains("server.tls") && e.contains("missing.pem"), "{e}");
    let e = cfg("cert.pem", "other-key.pem").unwrap_err();
    assert!(e.contains("server.tls"), "{e}");
    let e = Config::parse("[server.tls]\ncert = \"rel.pem\"\n", &|_: &str| None).unwrap_err();
    let e = e.to_string();
    assert!(
        e.contains("server.tls.cert") && e.contains("server.tls.key"),
        "{e}"
    );
}
